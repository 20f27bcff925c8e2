/* The worker threads: each takes a prompt from the queue (in the fair order), executes it
 * and takes the next. One worker per prompt that may run at once (--lanes): with lanes the
 * engine runs the nodes of every running prompt on its lane threads, and a worker only waits
 * for its prompt. Workers touch only the queue (under its lock), the engine and
 * srv_events_post: never the store or a socket. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app_internal.h"

static srv_ev_t *ev_new(srv_ev_kind_t kind, const srv_item_t *it)
{
    srv_ev_t *ev = calloc(1, sizeof *ev);
    if (!ev)
        return NULL;
    ev->kind = kind;
    memcpy(ev->owner, it->owner, sizeof ev->owner);
    ev->prompt_id = strdup(it->prompt_id);
    ev->client_id = it->client_id ? strdup(it->client_id) : NULL;
    if (!ev->prompt_id || (it->client_id && !ev->client_id)) {
        free(ev->prompt_id);
        free(ev->client_id);
        free(ev);
        return NULL;
    }
    return ev;
}

/* STARTED and DONE must reach the loop (the store row and the queue depend on them), so
 * running out of memory waits for memory instead of losing them. */
static srv_ev_t *ev_new_must(srv_ev_kind_t kind, const srv_item_t *it)
{
    srv_ev_t *ev;
    bool logged = false;
    while (!(ev = ev_new(kind, it))) {
        if (!logged)
            BASE_LOG(ERROR, "prompt %s: out of memory for a queue event; retrying", it->prompt_id);
        logged = true;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    return ev;
}

typedef struct {
    srv_t *s;
    const srv_item_t *it;
    srv_ev_t *terminal; /* execution_success/error/interrupted, held back to travel with DONE */
} run_ctx_t;

static bool is_terminal(const char *type)
{
    return !strcmp(type, "execution_success") || !strcmp(type, "execution_error") ||
           !strcmp(type, "execution_interrupted");
}

static void on_event(void *ud, const char *type, json_t *data)
{
    run_ctx_t *c = ud;
    srv_ev_t *ev = ev_new(SRV_EV_ENGINE, c->it);
    if (!ev || !(ev->type = strdup(type))) {
        BASE_LOG(WARN, "prompt %s: out of memory; %s event dropped", c->it->prompt_id, type);
        if (ev) {
            free(ev->prompt_id);
            free(ev->client_id);
            free(ev);
        }
        json_free(data);
        return;
    }
    ev->data = data;
    if (c->terminal) { /* keep the order if anything follows a terminal event */
        srv_events_post(c->s, c->terminal);
        c->terminal = NULL;
    }
    if (is_terminal(type))
        c->terminal = ev;
    else
        srv_events_post(c->s, ev);
}

/* A preview frame travels to the loop as the image bytes plus the ComfyUI type-4 metadata;
 * the loop picks type 1 or 4 per socket (ws_send_preview). */
static void on_preview(void *ud, const char *node_id, const void *png, size_t len)
{
    run_ctx_t *c = ud;
    srv_ev_t *ev = ev_new(SRV_EV_PREVIEW, c->it);
    if (!ev)
        return; /* a preview is best effort */
    ev->type = strdup(node_id ? node_id : "");
    if (!ev->type || base_buf_append(&ev->bin, png, len)) {
        free(ev->type);
        base_buf_free(&ev->bin);
        free(ev->prompt_id);
        free(ev->client_id);
        free(ev);
        return;
    }
    ev->bin_type = 2; /* PNG */
    srv_events_post(c->s, ev);
}

/* POST /free flags, consumed between prompts. With several workers other prompts may be
 * running: the engine and the model cache then keep what those hold. */
static void apply_free(srv_t *s)
{
    bool models = atomic_exchange(&s->free_models, false);
    bool memory = atomic_exchange(&s->free_memory, false);
    /* Cached outputs hold model handles, not weights: unloading models leaves the cache. */
    if (memory)
        eng_cache_clear(s->eng);
    if (models || memory)
        node_models_release();
}

void *srv_worker_main(void *arg)
{
    srv_t *s = arg;
    srv_item_t *it;
    while ((it = srv_queue_pop(&s->queue))) {
        apply_free(s);
        srv_ev_t *done = ev_new_must(SRV_EV_DONE, it);
        srv_ev_t *started = ev_new_must(SRV_EV_STARTED, it);
        started->item = it;
        srv_events_post(s, started);

        run_ctx_t c = {.s = s, .it = it};
        eng_job_t job = {
            .prompt_id = it->prompt_id,
            .graph = it->graph,
            .prompt = it->prompt,
            .extra_pnginfo = json_object_get(it->extra_data, "extra_pnginfo"),
            .outputs = it->outputs,
            .n_outputs = it->n_outputs,
            .on_event = on_event,
            .on_preview = s->cfg.previews ? on_preview : NULL,
            .ud = &c,
        };
        eng_execute(s->eng, &job, &done->result);
        srv_queue_executed(&s->queue, it);
        apply_free(s);
        done->item = it;
        /* q->running stays set until the loop has recorded the end (srv__queue_finished), so
         * queue_remaining counts the prompt until its history entry exists. The terminal
         * event travels in one chain with DONE: the loop then writes the history entry
         * before any client hears "execution_success". */
        if (c.terminal) {
            c.terminal->next = done;
            srv_events_post(s, c.terminal);
        } else {
            srv_events_post(s, done);
        }
    }
    return NULL;
}
