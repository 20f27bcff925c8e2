/* Private to server/. The HTTP/1.1 layer: connections on the libuv loop, llhttp parsing with
 * keep-alive and pipelining, limits and timeouts, responses written in request order.
 * Loop thread only. */
#ifndef WEFT_SRV_HTTP_H
#define WEFT_SRV_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "auth.h"
#include "base.h"

typedef struct srv_s srv_t;
typedef struct srv_conn_s srv_conn_t;

typedef struct {
    char *name;  /* owned, lower-cased */
    char *value; /* owned, surrounding whitespace trimmed */
} http_header_t;

typedef struct http_req_s {
    const char *method; /* static: "GET", "POST", ... */
    int method_id;      /* llhttp_method_t */
    char *target;       /* owned: the raw request-target */
    char *path;         /* owned: the raw path (still percent-encoded), no query */
    char *query;        /* owned: raw query without '?', "" when none */
    http_header_t *headers; /* owned */
    size_t n_headers;
    base_buf_t body;    /* owned: the de-chunked body */
    int http_minor;     /* 0 or 1 */
    bool keep_alive;
    bool upgrade;       /* Connection: upgrade + Upgrade header present */
    srv_conn_t *conn;   /* borrowed: the connection it arrived on */
    char peer[64];      /* remote address, for logs */
    /* Who sent it, set by the router's authentication step before any handler runs
     * (via == AUTH_VIA_NONE for the few routes that need no principal). */
    auth_principal_t principal;
    /* Route captures (percent-decoded, owned), set by the router. */
    char *params[4];
    size_t n_params;
} http_req_t;

/* Borrowed header value by lower-case name; NULL when absent (the first one wins). */
const char *http_req_header(const http_req_t *r, const char *lower_name);
/* Query parameter, percent-decoded ('+' is a space), malloc'ed; NULL when absent. */
char *http_query_get(const http_req_t *r, const char *name);
/* Percent-decodes n bytes; refuses %00 and bad escapes (BASE_E_INVAL). *out malloc'ed. */
int http_pct_decode(const char *in, size_t n, bool plus_is_space, char **out);

typedef struct http_res_s {
    int status;             /* 0 = no response yet */
    const char *content_type; /* static or NULL (no Content-Type) */
    base_buf_t headers;     /* extra "Name: value\r\n" lines */
    base_buf_t body;
    bool close;             /* close the connection after this response */
} http_res_t;

void http_res_header(http_res_t *res, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Takes ownership of body (freed here). application/json. */
void http_res_json(http_res_t *res, int status, json_t *body);
/* {"error": {"type": type, "message": message, "details": "", "extra_info": {}}, "node_errors": {}}:
 * every error weft answers is JSON (clients expect JSON also for 401/403/404/413/429). */
void http_res_error(http_res_t *res, int status, const char *type, const char *message);
/* Empty body with the status (ComfyUI answers many routes this way). */
void http_res_empty(http_res_t *res, int status);
void http_res_bytes(http_res_t *res, int status, const char *ctype, const void *data, size_t n);

/* Limits and timeouts (set from the command line; see srv_config_t). */
typedef struct {
    size_t max_header_bytes;   /* request line + headers, default 32 KiB */
    size_t max_url_bytes;      /* default 8 KiB */
    size_t max_body_bytes;     /* --max-upload-size MB; 413 beyond */
    unsigned header_timeout_ms; /* a request's headers must arrive within this, default 10 s */
    unsigned idle_timeout_ms;   /* keep-alive idle, default 60 s */
    size_t max_conns;           /* default 1024; beyond, new connections are closed at once */
    size_t max_pipelined;       /* requests parsed ahead of unanswered responses, default 64 */
} http_limits_t;

void http_limits_init(http_limits_t *l);

/* Called for every complete request, on the loop thread. It must set res->status (or hand
 * the connection over with http_conn_detach for a WebSocket upgrade). */
typedef void (*http_handler_cb)(srv_t *s, http_req_t *req, http_res_t *res);

/* Starts listening on addr:port ("127.0.0.1", "::", "0.0.0.0"). */
int http_listen(srv_t *s, uv_loop_t *loop, const char *addr, int port, const http_limits_t *lim,
                http_handler_cb handler);
/* Stops accepting; open connections finish their current response and close. Detached
 * (WebSocket) connections are left to their owner, which closes them. The layer's state is
 * freed (s->http = NULL) once the listener and every connection have closed on the loop. */
void http_stop(srv_t *s);
size_t http_conn_count(const srv_t *s);
/* The port actually bound (useful after port 0); -1 when not listening. */
int http_bound_port(const srv_t *s);

/* WebSocket hand-over: after the handler answered 101 itself through http_conn_write_raw,
 * it calls detach; the HTTP layer stops parsing and from then on passes every byte read to
 * on_read and calls on_close once when the socket closes. Bytes that arrived after the
 * upgrade request are delivered first. */
typedef struct {
    void (*on_read)(void *ud, const char *data, size_t n);
    void (*on_close)(void *ud);
    void *ud;
} http_detach_t;
int http_conn_detach(srv_conn_t *c, const http_detach_t *d);
/* Queues bytes on the socket. Returns the bytes now queued and unsent (for back-pressure). */
size_t http_conn_write_raw(srv_conn_t *c, const void *data, size_t n);
size_t http_conn_pending_bytes(const srv_conn_t *c);
/* Closes after the queued bytes are written (or at once when abort). */
void http_conn_close(srv_conn_t *c, bool abort);

#endif
