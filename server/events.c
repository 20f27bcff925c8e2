/* The bridge from the worker thread to the loop: a mutex-protected list plus uv_async, and
 * the loop-side handling of each event (store writes, current state, WebSocket routing). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app_internal.h"
#include "ownership.h"

double srv__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000);
}

json_t *srv__number_json(double number)
{
    if (number == (double)(int64_t)number && number > -9007199254740992.0 && number < 9007199254740992.0)
        return json_new_int((int64_t)number);
    return json_new_real(number);
}

void srv_events_post(srv_t *s, srv_ev_t *ev)
{
    /* ev may be a chain: it is appended whole, so its events reach the same drain. */
    srv_ev_t *tail = ev;
    while (tail->next)
        tail = tail->next;
    pthread_mutex_lock(&s->ev_mu);
    if (s->ev_tail)
        s->ev_tail->next = ev;
    else
        s->ev_head = ev;
    s->ev_tail = tail;
    pthread_mutex_unlock(&s->ev_mu);
    uv_async_send(&s->ev_async);
}

/* ------------------------------------------------------------------ routing */

/* Events ComfyUI sends to the submitting client only (dropped without one); the others
 * (progress, execution_interrupted) are broadcast when the prompt has no client. */
static bool client_only(const char *type)
{
    return strcmp(type, "progress") && strcmp(type, "execution_interrupted") && strcmp(type, "progress_state");
}

/* Only the prompt's owner (and queue:read:any) hears about it, whatever client id or prompt
 * a socket names: client ids are chosen by clients, so another user could pick the same. An
 * ownerless prompt ("") is heard by the "any" sockets only. */
static ws_target_t prompt_target(const char *owner, const char *client_id, const char *prompt_id)
{
    return (ws_target_t){.client_id = client_id, .prompt_id = prompt_id, .owner = owner ? owner : "",
                         .any_scopes = AUTH_SCOPE(QUEUE_READ_ANY)};
}

static void send_owned(srv_t *s, const char *owner, const char *client_id, const char *prompt_id,
                       const char *type, const json_t *data)
{
    if (!s->ws)
        return;
    /* Without a client, "" names no socket, so only the prompt's watchers receive it. */
    const char *to = client_id ? client_id : client_only(type) ? "" : NULL;
    ws_send_json(s->ws, prompt_target(owner, to, prompt_id), type, data);
}

void srv__send_prompt_event(srv_t *s, const char *client_id, const char *prompt_id, const char *type,
                            const json_t *data)
{
    /* Callers without the event at hand: the running prompt's owner, when it is that one. */
    bool cur = s->cur_prompt_id && prompt_id && !strcmp(s->cur_prompt_id, prompt_id);
    send_owned(s, cur ? s->cur_owner : "", client_id, prompt_id, type, data);
}

/* ------------------------------------------------------------------ loop side */

void srv__free_if_idle(srv_t *s)
{
    if (!s->eng)
        return;
    /* Nobody can start using the engine while we hold the queue lock with no running item. */
    pthread_mutex_lock(&s->queue.mu);
    if (!s->queue.running) {
        bool models = atomic_exchange(&s->free_models, false);
        bool memory = atomic_exchange(&s->free_memory, false);
        /* Cached outputs hold model handles, not weights: unloading models leaves the cache. */
        if (memory)
            eng_cache_clear(s->eng);
        if (models || memory)
            node_models_release();
    }
    pthread_mutex_unlock(&s->queue.mu);
}

static void set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? strdup(src) : NULL;
}

static void clear_current(srv_t *s)
{
    set_str(&s->cur_prompt_id, NULL);
    set_str(&s->cur_client_id, NULL);
    set_str(&s->cur_node, NULL);
    s->cur_value = s->cur_max = 0;
    s->cur_owner[0] = '\0';
}

static void on_started(srv_t *s, srv_ev_t *ev)
{
    clear_current(s);
    set_str(&s->cur_prompt_id, ev->prompt_id);
    set_str(&s->cur_client_id, ev->client_id);
    snprintf(s->cur_owner, sizeof s->cur_owner, "%s", ev->owner);
    srv_broadcast_status(s);
}

/* The prompt the "current state" describes (the one started last: with --lanes several run). */
static bool is_current(const srv_t *s, const char *prompt_id)
{
    return s->cur_prompt_id && prompt_id && !strcmp(s->cur_prompt_id, prompt_id);
}

static void on_engine(srv_t *s, srv_ev_t *ev)
{
    if (!ev->type || !ev->data)
        return;
    const json_t *node = json_object_get(ev->data, "node");
    if (!is_current(s, ev->prompt_id)) {
        /* Another running prompt: its events go out, the current state stays. */
    } else if (!strcmp(ev->type, "executing")) {
        set_str(&s->cur_node, json_str(node));
        s->cur_value = s->cur_max = 0;
    } else if (!strcmp(ev->type, "progress")) {
        if (json_str(node))
            set_str(&s->cur_node, json_str(node));
        uint64_t v = 0, m = 0;
        if (json_get_u64(json_object_get(ev->data, "value"), &v))
            s->cur_value = v;
        if (json_get_u64(json_object_get(ev->data, "max"), &m))
            s->cur_max = m;
    }
    send_owned(s, ev->owner, ev->client_id, ev->prompt_id, ev->type, ev->data);
}

/* node id -> {"node_id", "display_node", "parent_node": null, "real_node_id"} for every
 * node with UI output. */
static json_t *meta_of(const json_t *outputs)
{
    json_t *meta = json_new_object();
    for (size_t i = 0; meta && i < json_len(outputs); i++) {
        const char *id = json_key_at(outputs, i);
        json_t *m = json_new_object();
        if (!m || json_object_set(m, "node_id", json_new_string(id)) ||
            json_object_set(m, "display_node", json_new_string(id)) ||
            json_object_set(m, "parent_node", json_new_null()) ||
            json_object_set(m, "real_node_id", json_new_string(id))) {
            json_free(m);
            json_free(meta);
            return NULL;
        }
        if (json_object_set(meta, id, m)) { /* took m */
            json_free(meta);
            return NULL;
        }
    }
    return meta;
}

/* The store writes of an event; done for a whole batch before anything is sent, so that a
 * client told "execution_success" already finds the history entry. */
static void persist(srv_t *s, srv_ev_t *ev)
{
    int rc = 0;
    if (ev->kind == SRV_EV_STARTED) {
        rc = store_mark_running(s->store, ev->prompt_id, srv__now_ms());
    } else if (ev->kind == SRV_EV_ENGINE && ev->type && !strcmp(ev->type, "executed")) {
        /* Clients fetch a node's images when told it executed, before the prompt ends. */
        own_record_ui(s->store, ev->owner, ev->prompt_id, json_object_get(ev->data, "output"), srv__now_ms());
    } else if (ev->kind == SRV_EV_DONE) {
        eng_result_t *r = &ev->result;
        if (s->stopping && r->status == BASE_E_INTERRUPTED) {
            /* Interrupted by the shutdown, not by a client: it runs again next start. */
            rc = store_requeue(s->store, ev->prompt_id);
        } else {
            /* Again at the end, for outputs no "executed" event announced. */
            own_record_outputs(s->store, ev->owner, ev->prompt_id, r->outputs, srv__now_ms());
            json_t *meta = meta_of(r->outputs);
            json_t *empty_o = r->outputs ? NULL : json_new_object();
            json_t *empty_m = r->messages ? NULL : json_new_array();
            rc = store_finish(s->store, ev->prompt_id, r->status == 0 ? STORE_SUCCESS : STORE_ERROR,
                              srv__now_ms(), r->outputs ? r->outputs : empty_o,
                              r->messages ? r->messages : empty_m, meta,
                              r->status == 0 ? NULL
                              : r->error_message ? r->error_message
                                                 : base_strerror(r->status));
            json_free(meta);
            json_free(empty_o);
            json_free(empty_m);
        }
    }
    if (rc)
        BASE_LOG(ERROR, "prompt %s: cannot record its %s in the store: %s", ev->prompt_id,
                 ev->kind == SRV_EV_STARTED ? "start" : "end", base_strerror(rc));
}

static void on_done(srv_t *s, srv_ev_t *ev)
{
    /* The worker is idle (or about to wait) when the prompt was still the running one: a
     * /free that came while it ran can be applied now rather than before the next prompt. */
    if (srv__queue_finished(&s->queue, ev->item))
        srv__free_if_idle(s);
    if (is_current(s, ev->prompt_id))
        clear_current(s);
    srv_broadcast_status(s);
    json_t *d = json_new_object();
    if (d && !json_object_set(d, "node", json_new_null()) &&
        !json_object_set(d, "prompt_id", json_new_string(ev->prompt_id)))
        send_owned(s, ev->owner, ev->client_id, ev->prompt_id, "executing", d);
    json_free(d);
}

static void ev_free(srv_ev_t *ev)
{
    if (ev->kind == SRV_EV_DONE) {
        srv_item_free(ev->item);
        eng_result_free(&ev->result);
    }
    free(ev->prompt_id);
    free(ev->client_id);
    free(ev->type);
    json_free(ev->data);
    base_buf_free(&ev->bin);
    free(ev);
}

void srv__events_drain(srv_t *s)
{
    /* uv_async_send coalesces: take everything posted so far, and again until empty. */
    for (;;) {
        pthread_mutex_lock(&s->ev_mu);
        srv_ev_t *head = s->ev_head;
        s->ev_head = s->ev_tail = NULL;
        pthread_mutex_unlock(&s->ev_mu);
        if (!head)
            return;
        for (srv_ev_t *ev = head; ev; ev = ev->next)
            persist(s, ev);
        while (head) {
            srv_ev_t *ev = head;
            head = ev->next;
            switch (ev->kind) {
            case SRV_EV_STARTED:
                on_started(s, ev);
                break;
            case SRV_EV_ENGINE:
                on_engine(s, ev);
                break;
            case SRV_EV_PREVIEW:
                if (s->ws)
                    ws_send_preview(s->ws, prompt_target(ev->owner, ev->client_id, ev->prompt_id), ev->type,
                                    ev->prompt_id, ev->bin_type, ev->bin.data, ev->bin.len);
                break;
            case SRV_EV_DONE:
                on_done(s, ev);
                break;
            }
            ev_free(ev);
        }
    }
}
