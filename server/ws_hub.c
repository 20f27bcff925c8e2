/* The WebSocket hub: every upgraded socket, its wslay context, routing of events to sockets,
 * back-pressure, liveness pings and the close handshake. Loop thread only.
 *
 * Memory rule: a socket is freed only where no code of ours is using it (busy == 0): by the
 * uv_check sweep, or directly by on_close once the hub is being freed. The HTTP layer
 * reports the end of a connection through on_close; until then the socket must stay alive
 * because the HTTP layer still holds it as user data. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "srv_auth.h"
#include "ws_internal.h"

/* Bytes the connection may hold unsent before we stop handing it frames: keeps the HTTP
 * layer's queue short, so what a slow reader costs shows in wslay's queue where we can
 * measure and cap it. */
#define WS_HIGH_WATER ((size_t)1 << 20)
/* How often open sockets' credentials are verified again: bounds how long a socket outlives
 * a revocation made by another process, a logout elsewhere or an expiry. A verified key is a
 * cache hit, a session one indexed row. */
#define WS_RECHECK_MS 2000
/* An output buffer larger than this is released once written (a big preview was sent). */
#define WS_OUT_KEEP ((size_t)64 << 10)

/* ------------------------------------------------------------------ bookkeeping */

static void sock_set_state(ws_sock_t *k, ws_state_t st)
{
    ws_hub_t *h = k->hub;
    if (k->state == st)
        return;
    if (k->state == WS_DEAD)
        h->n_dead--;
    if (st == WS_DEAD)
        h->n_dead++;
    k->state = st;
}

static void sock_set_blocked(ws_sock_t *k, bool b)
{
    if (k->blocked == b)
        return;
    k->blocked = b;
    if (b)
        k->hub->n_blocked++;
    else
        k->hub->n_blocked--;
}

static void sock_release(ws_sock_t *k)
{
    if (k->cred) {
        OPENSSL_cleanse(k->cred, strlen(k->cred));
        free(k->cred);
    }
    wslay_event_context_free(k->ctx);
    free(k->sid);
    free(k->watch);
    json_free(k->flags);
    base_buf_free(&k->out);
    free(k);
}

static void hub_maybe_release(ws_hub_t *h)
{
    if (h->freed && h->handles_open == 0 && h->head == NULL)
        free(h);
}

/* Unlinks and frees a linked socket whose connection is gone. */
static void sock_free(ws_sock_t *k)
{
    ws_hub_t *h = k->hub;
    sock_set_state(k, WS_CLOSING); /* drops it from the dead count */
    sock_set_blocked(k, false);
    if (k->prev)
        k->prev->next = k->next;
    else
        h->head = k->next;
    if (k->next)
        k->next->prev = k->prev;
    sock_release(k);
}

static size_t sock_unsent(const ws_sock_t *k)
{
    size_t n = wslay_event_get_queued_msg_length(k->ctx) + k->out.len;
    if (k->conn)
        n += http_conn_pending_bytes(k->conn);
    return n;
}

/* ------------------------------------------------------------------ closing */

static void sock_close(ws_sock_t *k, bool abort)
{
    if (k->state == WS_CLOSING || k->state == WS_DEAD)
        return;
    sock_set_state(k, WS_CLOSING);
    sock_set_blocked(k, false);
    if (k->conn) {
        /* A graceful close would wait for a peer that is not reading. */
        if (!abort && http_conn_pending_bytes(k->conn) >= WS_HIGH_WATER)
            abort = true;
        http_conn_close(k->conn, abort);
    }
}

/* Moves a socket along the close handshake once wslay's flags say where it stands. */
static void sock_settle(ws_sock_t *k)
{
    wslay_event_context_ptr c = k->ctx;
    if (k->state != WS_OPEN)
        return;
    /* Our close frame is out: either the peer's came first (handshake complete) or we failed
     * the connection (protocol error, message too big) and wslay stopped reading. wslay
     * queues a close frame only in those two cases, so there is nothing left to wait for;
     * the HTTP layer still drains the peer's last bytes before closing the TCP socket. */
    if (wslay_event_get_close_sent(c))
        sock_close(k, false);
    /* A fatal wslay error disabled writing without a close frame. */
    else if (!wslay_event_get_write_enabled(c))
        sock_close(k, true);
}

/* ------------------------------------------------------------------ output */

/* Hands wslay's frames to the connection while it is under the high-water mark.
 * 0, or -1 when wslay failed fatally. */
static int sock_flush(ws_sock_t *k)
{
    for (;;) {
        if (wslay_event_want_write(k->ctx) && wslay_event_send(k->ctx) < 0)
            return -1;
        if (k->out.len == 0)
            break;
        http_conn_write_raw(k->conn, k->out.data, k->out.len);
        k->out.len = 0;
        if (k->out.cap > WS_OUT_KEEP)
            base_buf_free(&k->out);
        if (!k->conn || !wslay_event_want_write(k->ctx) ||
            http_conn_pending_bytes(k->conn) >= WS_HIGH_WATER)
            break;
    }
    sock_set_blocked(k, wslay_event_want_write(k->ctx) != 0);
    return 0;
}

/* Flush, enforce the unsent-bytes cap, then advance the close handshake. Never frees k. */
static void sock_pump(ws_sock_t *k)
{
    if (k->state != WS_OPEN || !k->conn)
        return;
    k->busy++;
    if (sock_flush(k) < 0) {
        sock_close(k, true);
    } else if (k->conn && sock_unsent(k) > k->hub->lim.max_queued_bytes) {
        BASE_LOG(WARN, "ws: closing slow reader %s (%zu bytes unsent)", k->sid, sock_unsent(k));
        sock_close(k, true);
    } else {
        sock_settle(k);
    }
    k->busy--;
}

static void sock_queue(ws_sock_t *k, uint8_t opcode, const void *p, size_t n)
{
    struct wslay_event_msg m = {opcode, (const uint8_t *)p, n};
    if (k->state != WS_OPEN)
        return;
    k->busy++;
    int r = wslay_event_queue_msg(k->ctx, &m);
    if (r == WSLAY_ERR_NOMEM)
        sock_close(k, true);
    else if (r == 0)
        sock_pump(k); /* without a connection yet (greeting) this only queues */
    k->busy--;
}

void ws__send_text(ws_sock_t *k, const char *text, size_t n)
{
    sock_queue(k, WSLAY_TEXT_FRAME, text, n);
}

char *ws__message(const char *type, const json_t *data, size_t *len)
{
    base_buf_t b = BASE_BUF_INIT;
    json_t *t = json_new_string(type ? type : "");
    char *ts = t ? json_dump(t, JSON_COMPACT) : NULL;
    char *ds = data ? json_dump(data, JSON_COMPACT) : NULL;
    json_free(t);
    char *out = NULL;
    if (ts && (ds || !data) &&
        base_buf_printf(&b, "{\"type\":%s,\"data\":%s}", ts, ds ? ds : "null") == 0) {
        *len = b.len;
        out = base_buf_take(&b);
    }
    base_buf_free(&b);
    free(ts);
    free(ds);
    return out;
}

/* ------------------------------------------------------------------ wslay callbacks */

static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    ws_sock_t *k = ud;
    if (k->rd_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < k->rd_len ? len : k->rd_len;
    memcpy(buf, k->rd, n);
    k->rd += n;
    k->rd_len -= n;
    return (ssize_t)n;
}

static ssize_t cb_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    ws_sock_t *k = ud;
    if (!k->conn) {
        /* Not attached yet (greeting queued before the 101): keep the frames in wslay. */
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (k->out.len + http_conn_pending_bytes(k->conn) >= WS_HIGH_WATER) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (base_buf_append(&k->out, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void reply_feature_flags(ws_sock_t *k)
{
    srv_t *s = k->hub->s;
    json_t *d = json_new_object();
    if (!d)
        return;
    uint64_t max = (uint64_t)s->cfg.max_upload_mb * 1024u * 1024u;
    json_object_set(d, "supports_preview_metadata", json_new_bool(true));
    json_object_set(d, "max_upload_size", json_new_uint(max));
    size_t n = 0;
    char *msg = ws__message("feature_flags", d, &n);
    json_free(d);
    if (!msg)
        return;
    /* Inside wslay_event_recv: queue only; the caller pumps when recv returns. */
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)msg, n};
    wslay_event_queue_msg(k->ctx, &m);
    free(msg);
}

static void cb_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                   void *ud)
{
    ws_sock_t *k = ud;
    /* Like ComfyUI, only the first text message may negotiate; the rest is ignored. */
    if (a->opcode != WSLAY_TEXT_FRAME || k->got_text || k->state != WS_OPEN)
        return;
    k->got_text = true;
    json_t *j = NULL;
    if (json_parse((const char *)a->msg, a->msg_length, &j, NULL, 0) != 0)
        return;
    const char *type = json_str(json_object_get(j, "type"));
    if (type && strcmp(type, "feature_flags") == 0) {
        json_t *d = json_object_get(j, "data");
        json_free(k->flags);
        k->flags = d ? json_clone(d) : json_new_object();
        reply_feature_flags(k);
    }
    json_free(j);
}

/* ------------------------------------------------------------------ HTTP layer callbacks */

static void on_read(void *ud, const char *data, size_t n)
{
    ws_sock_t *k = ud;
    if (k->state != WS_OPEN)
        return;
    k->last_rx_ms = uv_now(k->hub->s->loop);
    if (!wslay_event_get_read_enabled(k->ctx))
        return; /* a close frame is queued; the connection closes once it is out */
    k->busy++;
    k->rd = data;
    k->rd_len = n;
    int r = wslay_event_recv(k->ctx);
    k->rd = NULL;
    k->rd_len = 0;
    if (r < 0)
        sock_close(k, true);
    else
        sock_pump(k);
    k->busy--;
}

static void idle_cb(uv_idle_t *i)
{
    (void)i;
}

static void on_close(void *ud)
{
    ws_sock_t *k = ud;
    ws_hub_t *h = k->hub;
    k->conn = NULL;
    sock_set_blocked(k, false);
    sock_set_state(k, WS_DEAD);
    if (h->freed) {
        if (k->busy == 0) {
            sock_free(k);
            hub_maybe_release(h);
        }
        return;
    }
    /* Freed by the sweep; the idle handle makes the loop come round to it soon. */
    uv_idle_start(&h->idle, idle_cb);
}

/* ------------------------------------------------------------------ sockets */

ws_sock_t *ws__sock_new(ws_hub_t *h, const char *sid, const char *watch)
{
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = cb_recv,
        .send_callback = cb_send,
        .on_msg_recv_callback = cb_msg,
    };
    ws_sock_t *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->hub = h;
    k->state = WS_OPEN;
    k->sid = strdup(sid);
    k->watch = watch ? strdup(watch) : NULL;
    if (!k->sid || (watch && !k->watch) || wslay_event_context_server_init(&k->ctx, &cbs, k) != 0) {
        sock_release(k);
        return NULL;
    }
    wslay_event_config_set_max_recv_msg_length(k->ctx, h->lim.max_msg_bytes);
    k->last_rx_ms = uv_now(h->s->loop);
    return k;
}

void ws__sock_discard(ws_sock_t *k)
{
    if (k)
        sock_release(k);
}

int ws__sock_attach(ws_sock_t *k, srv_conn_t *conn)
{
    ws_hub_t *h = k->hub;
    http_detach_t d = {on_read, on_close, k};
    k->next = h->head;
    if (h->head)
        h->head->prev = k;
    h->head = k;
    k->conn = conn;
    k->busy++;
    int rc = http_conn_detach(conn, &d);
    if (rc != 0) {
        k->conn = NULL;
        k->busy--;
        sock_free(k);
        return rc;
    }
    sock_pump(k); /* the greeting queued before the 101 */
    k->busy--;
    return 0;
}

/* ------------------------------------------------------------------ hub handles */

static void check_cb(uv_check_t *c)
{
    ws_hub_t *h = c->data;
    if (h->n_dead == 0 && h->n_blocked == 0) {
        uv_idle_stop(&h->idle);
        return;
    }
    ws_sock_t *next;
    for (ws_sock_t *k = h->head; k; k = next) {
        next = k->next;
        if (k->state == WS_DEAD) {
            if (k->busy == 0)
                sock_free(k);
        } else if (k->blocked && k->conn && http_conn_pending_bytes(k->conn) < WS_HIGH_WATER) {
            sock_pump(k);
        }
    }
    if (h->n_dead == 0)
        uv_idle_stop(&h->idle);
}

static void ping_cb(uv_timer_t *t)
{
    ws_hub_t *h = t->data;
    uint64_t now = uv_now(h->s->loop);
    uint64_t dead_after = 2 * (uint64_t)h->lim.ping_interval_ms;
    for (ws_sock_t *k = h->head; k; k = k->next) {
        if (k->state != WS_OPEN)
            continue;
        k->busy++;
        if (now - k->last_rx_ms >= dead_after) {
            BASE_LOG(INFO, "ws: closing unresponsive socket %s", k->sid);
            sock_close(k, true);
        } else {
            sock_queue(k, WSLAY_PING, NULL, 0);
        }
        k->busy--;
    }
}

/* Sends close 1008 and closes; the frame goes out first unless the peer is not reading. */
static void sock_close_policy(ws_sock_t *k, const char *why)
{
    k->busy++;
    wslay_event_queue_close(k->ctx, WSLAY_CODE_POLICY_VIOLATION, (const uint8_t *)why, strlen(why));
    bool failed = !k->conn || sock_flush(k) < 0;
    sock_close(k, failed || k->blocked);
    k->busy--;
}

static void recheck_cb(uv_timer_t *t)
{
    ws_hub_t *h = t->data;
    srv_t *s = h->s;
    if (!s->auth || s->cfg.no_auth)
        return;
    for (ws_sock_t *k = h->head; k; k = k->next) {
        if (k->state != WS_OPEN || !k->cred)
            continue;
        auth_principal_t p;
        int rc = k->principal.via == AUTH_VIA_KEY ? auth_verify_key(s->auth, k->cred, &p)
                                                   : auth_verify_session(s->auth, k->cred, &p);
        if (rc == BASE_E_NOMEM || rc == BASE_E_IO)
            continue; /* our trouble, not the client's: try again next round */
        /* Gone, or changed under the socket: its filters were computed for other scopes. */
        if (rc || p.scopes != k->principal.scopes || strcmp(p.user, k->principal.user)) {
            BASE_LOG(INFO, "ws: closing socket %s of %s: credentials no longer valid", k->sid, k->principal.user);
            sock_close_policy(k, rc ? "credentials revoked" : "credentials changed");
        }
    }
}

static void handle_closed_cb(uv_handle_t *hd)
{
    ws_hub_t *h = hd->data;
    h->handles_open--;
    hub_maybe_release(h);
}

void ws_limits_init(ws_limits_t *l)
{
    l->max_msg_bytes = (size_t)1 << 20;
    l->max_queued_bytes = (size_t)64 << 20;
    l->ping_interval_ms = 30000;
}

int ws_hub_new(srv_t *s, const ws_limits_t *lim, ws_hub_t **out)
{
    *out = NULL;
    if (!s || !s->loop)
        return BASE_E_INVAL;
    ws_hub_t *h = calloc(1, sizeof *h);
    if (!h)
        return BASE_E_NOMEM;
    h->s = s;
    ws_limits_init(&h->lim);
    if (lim)
        h->lim = *lim;
    if (h->lim.max_msg_bytes == 0)
        h->lim.max_msg_bytes = (size_t)1 << 20;
    if (h->lim.max_queued_bytes == 0)
        h->lim.max_queued_bytes = (size_t)64 << 20;
    /* These inits cannot fail for a live loop. */
    uv_check_init(s->loop, &h->check);
    uv_idle_init(s->loop, &h->idle);
    uv_timer_init(s->loop, &h->ping);
    uv_timer_init(s->loop, &h->recheck);
    h->handles_open = 4;
    h->check.data = h->idle.data = h->ping.data = h->recheck.data = h;
    uv_unref((uv_handle_t *)&h->recheck);
    uv_timer_start(&h->recheck, recheck_cb, WS_RECHECK_MS, WS_RECHECK_MS);
    /* The hub alone never keeps the loop running. */
    uv_unref((uv_handle_t *)&h->check);
    uv_unref((uv_handle_t *)&h->idle);
    uv_unref((uv_handle_t *)&h->ping);
    uv_check_start(&h->check, check_cb);
    if (h->lim.ping_interval_ms > 0)
        uv_timer_start(&h->ping, ping_cb, h->lim.ping_interval_ms, h->lim.ping_interval_ms);
    *out = h;
    return 0;
}

void ws_hub_free(ws_hub_t *h)
{
    if (!h || h->freed)
        return;
    h->freed = true;
    for (ws_sock_t *k = h->head; k; k = k->next) {
        k->busy++;
        if (k->state == WS_OPEN) {
            static const char reason[] = "server shutting down";
            wslay_event_queue_close(k->ctx, WSLAY_CODE_GOING_AWAY, (const uint8_t *)reason,
                                    sizeof reason - 1);
            bool failed = !k->conn || sock_flush(k) < 0;
            sock_close(k, failed || k->blocked);
        }
        k->busy--;
    }
    ws_sock_t *next;
    for (ws_sock_t *k = h->head; k; k = next) {
        next = k->next;
        if (k->state == WS_DEAD)
            sock_free(k);
    }
    uv_close((uv_handle_t *)&h->check, handle_closed_cb);
    uv_close((uv_handle_t *)&h->idle, handle_closed_cb);
    uv_close((uv_handle_t *)&h->ping, handle_closed_cb);
    uv_close((uv_handle_t *)&h->recheck, handle_closed_cb);
}

size_t ws_hub_count(const ws_hub_t *h)
{
    size_t n = 0;
    if (!h)
        return 0;
    for (const ws_sock_t *k = h->head; k; k = k->next)
        n += k->state == WS_OPEN;
    return n;
}

/* ------------------------------------------------------------------ routing */

bool ws__sock_sees(const ws_sock_t *k, const char *owner, auth_scopes_t any_scopes)
{
    if (!owner || k->principal.via == AUTH_VIA_NOAUTH)
        return true;
    if (k->principal.via != AUTH_VIA_NONE && strcmp(k->principal.user, owner) == 0)
        return true;
    return any_scopes && auth_has(&k->principal, any_scopes);
}

static bool sock_matches(const ws_sock_t *k, ws_target_t to)
{
    if (k->state != WS_OPEN)
        return false;
    /* Two users may pick the same clientId; the owner filter keeps their events apart. */
    if (!ws__sock_sees(k, to.owner, to.any_scopes))
        return false;
    if (!to.client_id)
        return true;
    if (strcmp(k->sid, to.client_id) == 0)
        return true;
    return to.prompt_id && k->watch && strcmp(k->watch, to.prompt_id) == 0;
}

static void hub_send(ws_hub_t *h, ws_target_t to, uint8_t opcode, const void *p, size_t n)
{
    /* sock_queue never frees a socket, so walking by k->next is safe. */
    for (ws_sock_t *k = h->head; k; k = k->next) {
        if (sock_matches(k, to))
            sock_queue(k, opcode, p, n);
    }
}

void ws_send_json(ws_hub_t *h, ws_target_t to, const char *type, const json_t *data)
{
    if (!h || h->freed || !type)
        return;
    size_t n = 0;
    char *msg = ws__message(type, data, &n);
    if (!msg) {
        BASE_LOG(ERROR, "ws: out of memory serialising a %s message", type);
        return;
    }
    hub_send(h, to, WSLAY_TEXT_FRAME, msg, n);
    free(msg);
}

void ws_send_binary(ws_hub_t *h, ws_target_t to, uint32_t event, const void *payload, size_t n)
{
    if (!h || h->freed || (n > 0 && !payload))
        return;
    unsigned char *buf = malloc(4 + n);
    if (!buf) {
        BASE_LOG(ERROR, "ws: out of memory for a %zu-byte binary frame", n);
        return;
    }
    buf[0] = (unsigned char)(event >> 24);
    buf[1] = (unsigned char)(event >> 16);
    buf[2] = (unsigned char)(event >> 8);
    buf[3] = (unsigned char)event;
    if (n)
        memcpy(buf + 4, payload, n);
    hub_send(h, to, WSLAY_BINARY_FRAME, buf, 4 + n);
    free(buf);
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

void ws_send_preview(ws_hub_t *h, ws_target_t to, const char *node_id, const char *prompt_id,
                     uint32_t format, const void *img, size_t n)
{
    if (!h || h->freed || !img || !n)
        return;
    json_t *meta = json_new_object();
    const char *nid = node_id ? node_id : "";
    if (!meta || json_object_set(meta, "node_id", json_new_string(nid)) ||
        json_object_set(meta, "prompt_id", json_new_string(prompt_id ? prompt_id : "")) ||
        json_object_set(meta, "display_node_id", json_new_string(nid)) ||
        json_object_set(meta, "parent_node_id", json_new_null()) ||
        json_object_set(meta, "real_node_id", json_new_string(nid)) ||
        json_object_set(meta, "image_type", json_new_string(format == 1 ? "image/jpeg" : "image/png"))) {
        json_free(meta);
        return;
    }
    char *mj = json_dump(meta, JSON_PYTHON);
    json_free(meta);
    size_t ml = mj ? strlen(mj) : 0;
    unsigned char *plain = malloc(8 + n), *tagged = mj ? malloc(8 + ml + n) : NULL;
    if (!plain || !tagged) {
        BASE_LOG(ERROR, "ws: out of memory for a %zu-byte preview", n);
        free(plain);
        free(tagged);
        free(mj);
        return;
    }
    put_be32(plain, 1);
    put_be32(plain + 4, format);
    memcpy(plain + 8, img, n);
    put_be32(tagged, 4);
    put_be32(tagged + 4, (uint32_t)ml);
    memcpy(tagged + 8, mj, ml);
    memcpy(tagged + 8 + ml, img, n);
    for (ws_sock_t *k = h->head; k; k = k->next) {
        if (!sock_matches(k, to))
            continue;
        const json_t *f = k->flags ? json_object_get(k->flags, "supports_preview_metadata") : NULL;
        bool meta_ok = f && f->type == JSON_BOOL && f->u.b;
        if (meta_ok)
            sock_queue(k, WSLAY_BINARY_FRAME, tagged, 8 + ml + n);
        else
            sock_queue(k, WSLAY_BINARY_FRAME, plain, 8 + n);
    }
    free(plain);
    free(tagged);
    free(mj);
}

/* Closes the open sockets one of user, key_id or session_id (when set) matches. */
static void close_matching(ws_hub_t *h, const char *user, const char *key_id, int64_t session_id)
{
    if (!h || h->freed)
        return;
    for (ws_sock_t *k = h->head; k; k = k->next) {
        const auth_principal_t *p = &k->principal;
        if (k->state != WS_OPEN || p->via == AUTH_VIA_NONE || p->via == AUTH_VIA_NOAUTH)
            continue;
        bool hit = (user && strcmp(p->user, user) == 0) ||
                   (key_id && p->via == AUTH_VIA_KEY && strcmp(p->key_id, key_id) == 0) ||
                   (session_id && p->via == AUTH_VIA_SESSION && p->session_id == session_id);
        if (!hit)
            continue;
        BASE_LOG(INFO, "ws: closing socket %s of %s: credentials revoked", k->sid, p->user);
        sock_close_policy(k, "credentials revoked");
    }
}

void ws_close_principal(ws_hub_t *h, const char *user, const char *key_id)
{
    if (user || key_id)
        close_matching(h, user, key_id, 0);
}

void srv__ws_close_session(ws_hub_t *h, int64_t session_id)
{
    if (session_id)
        close_matching(h, NULL, NULL, session_id);
}
