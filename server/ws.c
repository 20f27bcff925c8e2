/* The WebSocket upgrade on GET /ws and /api/ws: handshake checks (RFC 6455 section 4.2), the
 * 101 answer, and what a socket learns on connect (its sid, the queue, the running prompt,
 * and the outcome of a watched prompt that already finished). Loop thread only. */
#include <ctype.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app.h"
#include "srv_auth.h"
#include "srv_uuid.h"
#include "ws_internal.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_MAX_ID 128

/* True when the comma-separated header value list contains token (case-insensitive). */
static bool has_token(const char *list, const char *token)
{
    size_t tn = strlen(token);
    const char *p = list;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *end = e;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - p) == tn && strncasecmp(p, token, tn) == 0)
            return true;
        p = e;
    }
    return false;
}

/* The key must be the base64 of 16 bytes: 22 alphabet characters then "==". */
static bool valid_key(const char *key)
{
    if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return false;
    for (int i = 0; i < 22; i++) {
        unsigned char c = (unsigned char)key[i];
        if (!isalnum(c) && c != '+' && c != '/')
            return false;
    }
    return true;
}

/* Client and prompt ids come back in every message and log line: printable ASCII only. */
static bool valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > WS_MAX_ID)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    }
    return true;
}

static int accept_value(const char *key, char out[29])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char buf[24 + sizeof WS_GUID];
    size_t kn = strlen(key);
    memcpy(buf, key, kn);
    memcpy(buf + kn, WS_GUID, sizeof WS_GUID - 1);
    if (EVP_Digest(buf, kn + sizeof WS_GUID - 1, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return BASE_E_IO;
    EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 characters and a NUL */
    return 0;
}

/* ComfyUI mints uuid4().hex: the 32 hex digits without dashes. */
static int mint_sid(char out[33])
{
    char u[37];
    int rc = srv_uuid4(u);
    if (rc)
        return rc;
    size_t j = 0;
    for (size_t i = 0; u[i]; i++) {
        if (u[i] != '-')
            out[j++] = u[i];
    }
    out[j] = '\0';
    return 0;
}

static void greet_json(ws_sock_t *k, const char *type, json_t *data)
{
    size_t n = 0;
    char *msg = data ? ws__message(type, data, &n) : NULL;
    if (msg)
        ws__send_text(k, msg, n);
    free(msg);
    json_free(data);
}

static json_t *executing_json(const char *node, const char *prompt_id)
{
    json_t *d = json_new_object();
    if (!d)
        return NULL;
    json_object_set(d, "node", node ? json_new_string(node) : json_new_null());
    if (node)
        json_object_set(d, "display_node", json_new_string(node));
    json_object_set(d, "prompt_id", json_new_string(prompt_id));
    return d;
}

/* A watcher that connects after its prompt finished still learns the outcome: the stored
 * lifecycle messages, then the "prompt finished" signal. */
static void replay_finished(ws_sock_t *k, srv_t *s)
{
    store_prompt_t p;
    memset(&p, 0, sizeof p);
    if (!s->store || store_get(s->store, k->watch, &p) != 0)
        return;
    if (p.status == STORE_SUCCESS || p.status == STORE_ERROR) {
        size_t n = json_len(p.messages);
        for (size_t i = 0; i < n; i++) {
            const json_t *m = json_at(p.messages, i);
            const char *type = json_str(json_at(m, 0));
            if (json_len(m) != 2 || !type)
                continue;
            size_t len = 0;
            char *msg = ws__message(type, json_at(m, 1), &len);
            if (msg)
                ws__send_text(k, msg, len);
            free(msg);
        }
        greet_json(k, "executing", executing_json(NULL, k->watch));
    }
    store_prompt_free(&p);
}

/* Whether k's principal may follow prompt_id: its owner (from the store), or a principal
 * whose scopes reach every user's prompts. Unknown prompts and store errors say no unless
 * the scopes allow anyway. */
static bool may_see_prompt(const ws_sock_t *k, srv_t *s, const char *prompt_id, auth_scopes_t any)
{
    /* --no-auth, the any-scopes, or a hub driven without the router (tests). */
    if (k->principal.via == AUTH_VIA_NONE || k->principal.via == AUTH_VIA_NOAUTH || auth_has(&k->principal, any))
        return true;
    store_prompt_t p;
    memset(&p, 0, sizeof p);
    if (!s->store || store_get(s->store, prompt_id, &p) != 0)
        return false;
    bool ok = ws__sock_sees(k, p.owner, any);
    store_prompt_free(&p);
    return ok;
}

/* Queued before the 101 goes out and flushed right after it, so nothing can overtake it. */
static void greet(ws_sock_t *k, srv_t *s)
{
    json_t *st = srv_status_json(s);
    if (!st) {
        greet_json(k, "status", NULL);
        return;
    }
    json_object_set(st, "sid", json_new_string(k->sid));
    greet_json(k, "status", st);

    const char *pid = s->cur_prompt_id;
    bool mine = pid && ((s->cur_client_id && strcmp(s->cur_client_id, k->sid) == 0) ||
                        (k->watch && strcmp(k->watch, pid) == 0));
    /* Another user's prompt under the same clientId (or watched by id) stays invisible. */
    if (mine && !may_see_prompt(k, s, pid, AUTH_SCOPE(QUEUE_READ_ANY)))
        mine = false;
    /* Without a node, "executing" would read as node null = finished; say nothing yet. */
    if (mine && s->cur_node) {
        greet_json(k, "executing", executing_json(s->cur_node, pid));
        if (s->cur_max > 0) {
            json_t *d = json_new_object();
            if (d) {
                json_object_set(d, "value", json_new_uint(s->cur_value));
                json_object_set(d, "max", json_new_uint(s->cur_max));
                json_object_set(d, "prompt_id", json_new_string(pid));
                json_object_set(d, "node", json_new_string(s->cur_node));
            }
            greet_json(k, "progress", d);
        }
    }
    if (k->watch && !(pid && strcmp(k->watch, pid) == 0) &&
        may_see_prompt(k, s, k->watch, AUTH_SCOPE(HISTORY_READ_ANY)))
        replay_finished(k, s);
}

/* Reads an optional id query parameter: 0 with *out NULL when absent or empty (ComfyUI
 * treats an empty clientId as none), BASE_E_INVAL when malformed. */
static int query_id(const http_req_t *req, const char *name, char **out)
{
    *out = http_query_get(req, name);
    if (*out && !**out) {
        free(*out);
        *out = NULL;
    }
    if (*out && !valid_id(*out)) {
        free(*out);
        *out = NULL;
        return BASE_E_INVAL;
    }
    return 0;
}

void ws_handle_upgrade(ws_hub_t *h, http_req_t *req, http_res_t *res)
{
    char *sid = NULL, *watch = NULL;
    char minted[33], accept[29];
    base_buf_t head = BASE_BUF_INIT;

    if (!h || h->freed) {
        http_res_error(res, 503, "unavailable", "the WebSocket endpoint is shutting down");
        return;
    }
    if (!req->method || strcmp(req->method, "GET") != 0) {
        http_res_error(res, 400, "bad_request", "a WebSocket upgrade must be a GET request");
        return;
    }
    const char *upgrade = http_req_header(req, "upgrade");
    const char *connection = http_req_header(req, "connection");
    const char *version = http_req_header(req, "sec-websocket-version");
    const char *key = http_req_header(req, "sec-websocket-key");
    if (!upgrade || !has_token(upgrade, "websocket")) {
        http_res_error(res, 400, "bad_request", "missing or wrong Upgrade header (want websocket)");
        return;
    }
    if (!connection || !has_token(connection, "upgrade")) {
        http_res_error(res, 400, "bad_request", "the Connection header must contain \"upgrade\"");
        return;
    }
    if (!version || strcmp(version, "13") != 0) {
        http_res_error(res, 426, "upgrade_required", "unsupported WebSocket version (want 13)");
        http_res_header(res, "Sec-WebSocket-Version", "13");
        return;
    }
    if (!valid_key(key)) {
        http_res_error(res, 400, "bad_request",
                       "Sec-WebSocket-Key must be the base64 of 16 bytes");
        return;
    }
    if (query_id(req, "clientId", &sid) != 0) {
        http_res_error(res, 400, "bad_request", "clientId must be 1 to 128 printable ASCII characters");
        goto out;
    }
    if (query_id(req, "prompt_id", &watch) != 0) {
        http_res_error(res, 400, "bad_request", "prompt_id must be 1 to 128 printable ASCII characters");
        goto out;
    }
    if (!sid && mint_sid(minted) != 0) {
        http_res_error(res, 500, "internal_error", "could not mint a client id");
        goto out;
    }
    ws_sock_t *k = ws__sock_new(h, sid ? sid : minted, watch);
    if (k) {
        k->principal = req->principal;
        memset(k->principal.csrf, 0, sizeof k->principal.csrf);
        if (req->principal.via == AUTH_VIA_KEY || req->principal.via == AUTH_VIA_SESSION) {
            k->cred = srv__request_credential(req);
            if (!k->cred) { /* out of memory: a socket that cannot be re-checked is not kept */
                ws__sock_discard(k);
                k = NULL;
            }
        }
    }
    /* A browser that sent its key as the subprotocol pair "weft.bearer, <key>" needs one of
     * its offers selected back; never the key itself. */
    const char *proto = http_req_header(req, "sec-websocket-protocol");
    bool bearer_proto = proto && has_token(proto, SRV_WS_BEARER_PROTO);
    if (!k || accept_value(key, accept) != 0 ||
        base_buf_printf(&head,
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
                        accept, bearer_proto ? "Sec-WebSocket-Protocol: " SRV_WS_BEARER_PROTO "\r\n" : "") != 0) {
        ws__sock_discard(k);
        http_res_error(res, 500, "internal_error", "out of memory");
        goto out;
    }
    greet(k, h->s);
    if (k->state != WS_OPEN) { /* out of memory while queueing the greeting */
        ws__sock_discard(k);
        http_res_error(res, 500, "internal_error", "out of memory");
        goto out;
    }
    http_conn_write_raw(req->conn, head.data, head.len);
    /* From here on the connection is ours: the HTTP layer writes nothing for this request. */
    res->status = 101;
    int rc = ws__sock_attach(k, req->conn);
    if (rc != 0) {
        BASE_LOG(ERROR, "ws: could not take over the connection from %s: %s", req->peer,
                 base_strerror(rc));
        res->close = true;
        http_conn_close(req->conn, true);
    }
out:
    base_buf_free(&head);
    free(sid);
    free(watch);
}
