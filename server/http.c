/* Loop thread. HTTP/1.1 connections on libuv with llhttp: accept, parse (keep-alive,
 * pipelining, chunked bodies, Expect: 100-continue), limits and timers, responses written in
 * request order, WebSocket hand-over, graceful stop.
 *
 * Lifecycle of a connection: it is freed only in the close callback of the last of its two
 * handles (tcp + timer), so every callback may keep using it until then. Closing "after the
 * response" goes through shutdown + a short linger in which input is read and dropped: a
 * close() with unread input makes the kernel send RST, which can destroy the response (a 413
 * answered while the client is still sending its body) before the client reads it. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "app.h"
#include "http.h"

#define HTTP_READ_CHUNK 65536
#define HTTP_LINGER_MS 2000u
/* Parsing pauses while this much output is unsent, so pipelined requests for big responses
 * cannot make the server buffer max_pipelined of them for a client that does not read. */
#define HTTP_MAX_PENDING_BYTES (1u << 20)

typedef struct http_state_s http_state_t;

/* One uv_write in flight: a response (head + body) or raw bytes. */
typedef struct http_wreq_s {
    uv_write_t w;             /* first: the callback casts back */
    struct http_wreq_s *next;
    srv_conn_t *c;
    char *head;               /* owned */
    char *body;               /* owned, may be NULL */
    size_t bytes;
    bool is_response;         /* counts toward max_pipelined */
} http_wreq_t;

struct srv_conn_s {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    llhttp_t parser;
    http_state_t *h;
    srv_conn_t *prev, *next;
    int open_handles;
    char peer[64];

    /* Input parsed ahead was stopped at (back-pressure): kept here until writes drain. */
    char *rbuf;
    size_t rlen, roff;

    /* The request being assembled. */
    http_req_t req;
    base_buf_t url, hname, hval;
    size_t hcap;
    bool in_head;             /* a message began and its headers are not complete */
    bool in_body;             /* headers complete, body still arriving */
    bool dispatching;
    size_t head_prev;         /* head bytes seen in earlier chunks */
    const char *head_mark;    /* where the head starts in the current chunk */

    /* An error found inside an llhttp callback (answered once execute returns). */
    int fail_status;
    const char *fail_type;
    const char *fail_msg;

    /* Writes in flight, oldest first (libuv completes them in order). */
    http_wreq_t *wq_head, *wq_tail;
    size_t unsent_res;
    size_t pending;
    size_t wq_mark;           /* libuv's queued bytes when progress was last seen */

    bool reading;
    bool no_more;    /* no further requests: close once the queued writes are out */
    bool peer_eof;
    bool lingering;
    bool closing;    /* uv_close called */
    bool detached;
    http_detach_t det;
};

struct http_state_s {
    srv_t *s;
    uv_loop_t *loop;
    uv_tcp_t listener;
    bool listener_open;
    bool stopped;
    http_limits_t lim;
    http_handler_cb handler;
    srv_conn_t *conns;
    size_t n_conns;
    int port;
    bool shared_busy;
    char shared[HTTP_READ_CHUNK]; /* read buffer shared by all connections (reads are serial) */
};

static void conn_close_now(srv_conn_t *c);
static void conn_check_done(srv_conn_t *c);
static void conn_update_reading(srv_conn_t *c);
static void conn_process_rbuf(srv_conn_t *c);

/* ------------------------------------------------------------------ small helpers */

static const char *status_reason(int code) {
    switch (code) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return code < 200 ? "Informational" : code < 300 ? "OK" : code < 400 ? "Redirect"
                    : code < 500 ? "Client Error" : "Server Error";
    }
}

static void req_clear(http_req_t *r) {
    free(r->target);
    free(r->path);
    free(r->query);
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    base_buf_free(&r->body);
    for (size_t i = 0; i < r->n_params && i < 4; i++)
        free(r->params[i]);
    srv_conn_t *conn = r->conn;
    memset(r, 0, sizeof *r);
    r->conn = conn;
}

static bool conn_leftover(const srv_conn_t *c) {
    return c->roff < c->rlen;
}

static bool conn_backpressured(const srv_conn_t *c) {
    return c->unsent_res >= c->h->lim.max_pipelined || c->pending > HTTP_MAX_PENDING_BYTES;
}

static void conn_drop_rbuf(srv_conn_t *c) {
    free(c->rbuf);
    c->rbuf = NULL;
    c->rlen = c->roff = 0;
}

static void timer_start(srv_conn_t *c, unsigned ms);

/* ------------------------------------------------------------------ writing */

static void on_write(uv_write_t *w, int status) {
    http_wreq_t *wr = (http_wreq_t *)w;
    srv_conn_t *c = wr->c;
    /* Unlink: normally the head, but do not rely on it. */
    http_wreq_t **pp = &c->wq_head, *prev = NULL;
    while (*pp && *pp != wr) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = wr->next;
        if (c->wq_tail == wr)
            c->wq_tail = prev;
    }
    c->pending -= wr->bytes;
    if (wr->is_response)
        c->unsent_res--;
    free(wr->head);
    free(wr->body);
    free(wr);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close_now(c);
        return;
    }
    /* Progress: a client that reads its answers is not idle. */
    c->wq_mark = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (!c->in_head && !c->detached && !c->lingering)
        timer_start(c, c->h->lim.idle_timeout_ms);
    if (!c->detached && !c->no_more && conn_leftover(c) && !conn_backpressured(c))
        conn_process_rbuf(c);
    conn_check_done(c);
    conn_update_reading(c);
}

/* Takes head and body (malloc'ed) whatever happens. */
static void conn_write(srv_conn_t *c, char *head, size_t head_len, char *body, size_t body_len,
                       bool is_response) {
    /* After the shutdown nothing more can go out (a socket owner may still try). */
    if (c->closing || c->lingering) {
        free(head);
        free(body);
        return;
    }
    http_wreq_t *wr = calloc(1, sizeof *wr);
    if (!wr) {
        free(head);
        free(body);
        conn_close_now(c);
        return;
    }
    wr->c = c;
    wr->head = head;
    wr->body = body;
    wr->bytes = head_len + body_len;
    wr->is_response = is_response;
    /* uv_buf_t lengths are unsigned int: a body over 4 GiB goes out in 1 GiB slices. */
    const size_t slice = (size_t)1 << 30;
    size_t nb = 1 + (body_len + slice - 1) / slice;
    uv_buf_t small[3], *bufs = nb <= 3 ? small : malloc(nb * sizeof *bufs);
    int rc = UV_ENOMEM;
    if (bufs) {
        unsigned n = 0;
        if (head_len)
            bufs[n++] = uv_buf_init(head, (unsigned)head_len);
        for (size_t off = 0; off < body_len; off += slice)
            bufs[n++] = uv_buf_init(body + off, (unsigned)(body_len - off < slice ? body_len - off : slice));
        rc = n ? uv_write(&wr->w, (uv_stream_t *)&c->tcp, bufs, n, on_write) : UV_EINVAL;
        if (bufs != small)
            free(bufs);
    }
    if (rc < 0) {
        free(head);
        free(body);
        free(wr);
        conn_close_now(c);
        return;
    }
    if (c->wq_tail)
        c->wq_tail->next = wr;
    else
        c->wq_head = wr;
    c->wq_tail = wr;
    c->pending += wr->bytes;
    if (is_response)
        c->unsent_res++;
    c->wq_mark = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
}

/* Serialises res (its body is taken) and queues it. */
static void conn_send_response(srv_conn_t *c, http_res_t *res, bool head_only, bool close) {
    int st = res->status;
    bool no_body = head_only || st == 204 || st == 304 || (st >= 100 && st < 200);
    base_buf_t h = BASE_BUF_INIT;
    int rc = base_buf_printf(&h, "HTTP/1.1 %d %s\r\nServer: weft\r\n", st, status_reason(st));
    if (rc == 0 && st != 204 && st != 304 && st >= 200)
        rc = base_buf_printf(&h, "Content-Length: %zu\r\n", res->body.len);
    if (rc == 0 && res->content_type)
        rc = base_buf_printf(&h, "Content-Type: %s\r\n", res->content_type);
    if (rc == 0)
        rc = base_buf_printf(&h, "Connection: %s\r\n", close ? "close" : "keep-alive");
    if (rc == 0 && res->headers.len)
        rc = base_buf_append(&h, res->headers.data, res->headers.len);
    if (rc == 0)
        rc = base_buf_puts(&h, "\r\n");
    if (rc != 0) {
        base_buf_free(&h);
        conn_close_now(c);
        return;
    }
    size_t head_len = h.len;
    char *head = base_buf_take(&h);
    char *body = NULL;
    size_t body_len = 0;
    if (!no_body && res->body.len) {
        body_len = res->body.len;
        body = base_buf_take(&res->body);
        if (!body) {
            free(head);
            conn_close_now(c);
            return;
        }
    }
    conn_write(c, head, head_len, body, body_len, true);
}

static void res_free(http_res_t *res) {
    base_buf_free(&res->headers);
    base_buf_free(&res->body);
}

/* Answers an error and stops reading requests: the rest of the stream cannot be trusted. */
static void conn_send_error(srv_conn_t *c, int status, const char *type, const char *msg) {
    if (c->closing)
        return;
    http_res_t res = {0};
    http_res_error(&res, status, type, msg);
    conn_send_response(c, &res, false, true);
    res_free(&res);
    c->no_more = true;
    c->in_head = c->in_body = false;
    if (!c->closing)
        timer_start(c, c->h->lim.idle_timeout_ms);
    conn_check_done(c);
    conn_update_reading(c);
}

/* ------------------------------------------------------------------ closing */

static void http_state_maybe_free(http_state_t *h) {
    if (h->stopped && !h->listener_open && h->n_conns == 0) {
        if (h->s->http == h)
            h->s->http = NULL;
        free(h);
    }
}

static void on_conn_closed(uv_handle_t *hd) {
    srv_conn_t *c = hd->data;
    if (--c->open_handles > 0)
        return;
    http_state_t *h = c->h;
    if (c->detached && c->det.on_close) {
        void (*cb)(void *) = c->det.on_close;
        c->det.on_close = NULL;
        cb(c->det.ud);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    h->n_conns--;
    req_clear(&c->req);
    base_buf_free(&c->url);
    base_buf_free(&c->hname);
    base_buf_free(&c->hval);
    conn_drop_rbuf(c);
    free(c);
    http_state_maybe_free(h);
}

static void conn_close_impl(srv_conn_t *c, bool reset) {
    if (c->closing)
        return;
    c->closing = true;
    c->no_more = true;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    uv_timer_stop(&c->timer);
    /* After a shutdown libuv refuses a reset; a plain close is then the only way. */
    if (!reset || c->lingering || uv_tcp_close_reset(&c->tcp, on_conn_closed) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void conn_close_now(srv_conn_t *c) {
    conn_close_impl(c, false);
}

/* Drops the connection with RST: queued output is discarded at once instead of lingering in
 * the kernel for a peer that does not read it. */
static void conn_abort(srv_conn_t *c) {
    conn_close_impl(c, true);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    srv_conn_t *c = req->data;
    if (status < 0)
        conn_close_now(c); /* no-op when already closing (ECANCELED) */
}

/* All queued bytes are out and nothing more will be sent: FIN, then drain until EOF. */
static void conn_finish(srv_conn_t *c) {
    if (c->closing || c->lingering)
        return;
    if (c->peer_eof) {
        conn_close_now(c);
        return;
    }
    c->lingering = true;
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        conn_close_now(c);
        return;
    }
    timer_start(c, HTTP_LINGER_MS);
    conn_update_reading(c);
}

static void conn_check_done(srv_conn_t *c) {
    if (c->closing || c->dispatching || c->wq_head)
        return;
    if (c->no_more)
        conn_finish(c);
    else if (c->peer_eof && !conn_leftover(c) && !c->detached)
        conn_close_now(c);
}

/* ------------------------------------------------------------------ timers */

static void on_timer(uv_timer_t *t) {
    srv_conn_t *c = t->data;
    if (c->closing)
        return;
    if (c->lingering) {
        conn_close_now(c);
        return;
    }
    if (c->detached)
        return;
    if (c->in_head || c->in_body) {
        /* The slow-loris case: the head (or a body) did not arrive in time. */
        conn_send_error(c, 408, "request_timeout",
                        c->in_head ? "request headers not received in time"
                                   : "request body not received in time");
        return;
    }
    if (c->wq_head) {
        /* One big response completes in one callback: a client still draining it (the
         * kernel queue shrank) is slow, not stuck. */
        size_t q = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
        if (q < c->wq_mark) {
            c->wq_mark = q;
            timer_start(c, c->h->lim.idle_timeout_ms);
            return;
        }
    }
    /* Idle keep-alive (nothing to lose), or a client that does not read its answers. */
    if (c->wq_head)
        conn_abort(c);
    else
        conn_close_now(c);
}

static void timer_start(srv_conn_t *c, unsigned ms) {
    if (c->closing)
        return;
    uv_timer_start(&c->timer, on_timer, ms ? ms : 1, 0);
}

/* ------------------------------------------------------------------ llhttp callbacks */

static int fail_cb(srv_conn_t *c, int status, const char *type, const char *msg) {
    if (!c->fail_status) {
        c->fail_status = status;
        c->fail_type = type;
        c->fail_msg = msg;
    }
    return -1;
}

/* Counts raw head bytes up to `end` (inside the chunk being parsed). */
static int head_account(srv_conn_t *c, const char *at, size_t len) {
    if (!c->in_head)
        return 0;
    if (!c->head_mark)
        c->head_mark = at;
    size_t n = c->head_prev + (size_t)(at + len - c->head_mark);
    if (n > c->h->lim.max_header_bytes)
        return fail_cb(c, 431, "request_header_fields_too_large", "request headers are too large");
    return 0;
}

static int cb_message_begin(llhttp_t *p) {
    srv_conn_t *c = p->data;
    req_clear(&c->req);
    c->url.len = c->hname.len = c->hval.len = 0;
    c->hcap = 0;
    c->in_head = true;
    c->in_body = false;
    c->head_prev = 0;
    c->head_mark = NULL;
    timer_start(c, c->h->lim.header_timeout_ms);
    return 0;
}

static int cb_method(llhttp_t *p, const char *at, size_t len) {
    return head_account(p->data, at, len);
}

static int cb_version(llhttp_t *p, const char *at, size_t len) {
    return head_account(p->data, at, len);
}

static int cb_url(llhttp_t *p, const char *at, size_t len) {
    srv_conn_t *c = p->data;
    if (head_account(c, at, len))
        return -1;
    if (c->url.len + len > c->h->lim.max_url_bytes)
        return fail_cb(c, 414, "uri_too_long", "request URL is too long");
    if (base_buf_append(&c->url, at, len))
        return fail_cb(c, 500, "server_error", "out of memory");
    return 0;
}

static int cb_header_field(llhttp_t *p, const char *at, size_t len) {
    srv_conn_t *c = p->data;
    if (head_account(c, at, len))
        return -1;
    if (base_buf_append(&c->hname, at, len))
        return fail_cb(c, 500, "server_error", "out of memory");
    return 0;
}

static int cb_header_value(llhttp_t *p, const char *at, size_t len) {
    srv_conn_t *c = p->data;
    if (head_account(c, at, len))
        return -1;
    if (base_buf_append(&c->hval, at, len))
        return fail_cb(c, 500, "server_error", "out of memory");
    return 0;
}

static char *str_trim_dup(const char *s, size_t n) {
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    char *o = malloc(n + 1);
    if (o) {
        memcpy(o, s, n);
        o[n] = '\0';
    }
    return o;
}

/* RFC 9110 token characters. llhttp built without LLHTTP_STRICT_MODE lets spaces and other
 * separators into header names; they are refused here instead. */
static bool is_token(const char *s, size_t n) {
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              (ch && strchr("!#$%&'*+-.^_`|~", ch))))
            return false;
    }
    return true;
}

static int cb_header_value_complete(llhttp_t *p) {
    srv_conn_t *c = p->data;
    http_req_t *r = &c->req;
    if (!is_token(c->hname.data, c->hname.len))
        return fail_cb(c, 400, "bad_request", "Invalid header token");
    if (r->n_headers == c->hcap) {
        size_t cap = c->hcap ? c->hcap * 2 : 16;
        http_header_t *nh = realloc(r->headers, cap * sizeof *nh);
        if (!nh)
            return fail_cb(c, 500, "server_error", "out of memory");
        r->headers = nh;
        c->hcap = cap;
    }
    char *name = str_trim_dup(c->hname.data ? c->hname.data : "", c->hname.len);
    char *value = str_trim_dup(c->hval.data ? c->hval.data : "", c->hval.len);
    if (!name || !value) {
        free(name);
        free(value);
        return fail_cb(c, 500, "server_error", "out of memory");
    }
    for (char *q = name; *q; q++)
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q - 'A' + 'a');
    r->headers[r->n_headers].name = name;
    r->headers[r->n_headers].value = value;
    r->n_headers++;
    c->hname.len = c->hval.len = 0;
    return 0;
}

/* Splits the request-target into path and query (absolute-form loses scheme and host). */
static int req_split_target(http_req_t *r) {
    const char *t = r->target;
    if (strncmp(t, "http://", 7) == 0 || strncmp(t, "https://", 8) == 0) {
        const char *slash = strchr(strstr(t, "//") + 2, '/');
        t = slash ? slash : "/";
    }
    size_t plen = strcspn(t, "?#");
    r->path = strndup(t, plen);
    if (t[plen] == '?') {
        const char *q = t + plen + 1;
        r->query = strndup(q, strcspn(q, "#"));
    } else {
        r->query = strdup("");
    }
    return r->path && r->query ? 0 : BASE_E_NOMEM;
}

static int cb_headers_complete(llhttp_t *p) {
    srv_conn_t *c = p->data;
    http_req_t *r = &c->req;
    c->in_head = false;
    if (p->http_major != 1)
        return fail_cb(c, 505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served");
    r->method_id = p->method;
    r->method = llhttp_method_name((llhttp_method_t)p->method);
    r->target = base_buf_take(&c->url);
    if (!r->target || req_split_target(r))
        return fail_cb(c, 500, "server_error", "out of memory");
    r->http_minor = p->http_minor;
    r->keep_alive = llhttp_should_keep_alive(p) != 0;
    r->upgrade = (p->flags & F_UPGRADE) && (p->flags & F_CONNECTION_UPGRADE);
    r->conn = c;
    memcpy(r->peer, c->peer, sizeof r->peer);
    bool has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->h->lim.max_body_bytes)
        return fail_cb(c, 413, "request_too_large", "request body is too large");
    if (has_body) {
        const char *expect = http_req_header(r, "expect");
        if (expect && strcasecmp(expect, "100-continue") == 0 && r->http_minor >= 1) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            char *copy = malloc(sizeof cont - 1);
            if (!copy)
                return fail_cb(c, 500, "server_error", "out of memory");
            memcpy(copy, cont, sizeof cont - 1);
            conn_write(c, copy, sizeof cont - 1, NULL, 0, false);
        }
        c->in_body = true;
    }
    timer_start(c, c->h->lim.idle_timeout_ms);
    return 0;
}

static int cb_body(llhttp_t *p, const char *at, size_t len) {
    srv_conn_t *c = p->data;
    if (c->req.body.len + len > c->h->lim.max_body_bytes)
        return fail_cb(c, 413, "request_too_large", "request body is too large");
    if (base_buf_append(&c->req.body, at, len))
        return fail_cb(c, 500, "server_error", "out of memory");
    return 0;
}

static int cb_message_complete(llhttp_t *p) {
    srv_conn_t *c = p->data;
    c->in_head = c->in_body = false;
    /* Pause so the request is dispatched outside llhttp and the caller knows exactly where
     * it ended (an upgrade hands the remaining bytes over). */
    return HPE_PAUSED;
}

static const llhttp_settings_t http_settings = {
    .on_message_begin = cb_message_begin,
    .on_method = cb_method,
    .on_url = cb_url,
    .on_version = cb_version,
    .on_header_field = cb_header_field,
    .on_header_value = cb_header_value,
    .on_header_value_complete = cb_header_value_complete,
    .on_headers_complete = cb_headers_complete,
    .on_body = cb_body,
    .on_message_complete = cb_message_complete,
};

/* ------------------------------------------------------------------ dispatch and parsing */

static void conn_dispatch(srv_conn_t *c) {
    http_state_t *h = c->h;
    http_req_t *req = &c->req;
    http_res_t res = {0};
    c->dispatching = true;
    h->handler(h->s, req, &res);
    c->dispatching = false;
    if (!c->detached && !c->closing) {
        if (res.status == 0)
            http_res_error(&res, 500, "server_error", "the handler gave no response");
        bool close = res.close || !req->keep_alive || h->stopped || c->no_more;
        conn_send_response(c, &res, req->method_id == HTTP_HEAD, close);
        if (close)
            c->no_more = true;
    }
    res_free(&res);
    req_clear(req);
}

/* Parses requests from data until it is used up, parsing must pause (back-pressure, the
 * connection stops or is handed over) or an error is answered. Returns the bytes used. */
static size_t conn_parse(srv_conn_t *c, const char *data, size_t len) {
    size_t off = 0;
    while (off < len && !c->no_more && !c->detached && !c->closing) {
        if (conn_backpressured(c))
            break;
        const char *chunk = data + off;
        size_t n = len - off;
        c->head_mark = c->in_head ? chunk : NULL;
        llhttp_errno_t err = llhttp_execute(&c->parser, chunk, n);
        size_t used = n;
        if (err != HPE_OK) {
            const char *pos = llhttp_get_error_pos(&c->parser);
            if (pos && pos >= chunk && pos <= chunk + n)
                used = (size_t)(pos - chunk);
        }
        if (err == HPE_OK && c->in_head && c->head_mark) {
            /* The head continues in the next read: carry what this chunk held. */
            c->head_prev += (size_t)(chunk + used - c->head_mark);
            if (c->head_prev > c->h->lim.max_header_bytes) {
                conn_send_error(c, 431, "request_header_fields_too_large",
                                "request headers are too large");
                return len;
            }
        }
        off += used;
        if (err == HPE_OK)
            continue;
        if (err == HPE_PAUSED) {
            llhttp_resume(&c->parser);
            conn_dispatch(c);
            continue;
        }
        if (err == HPE_PAUSED_UPGRADE) {
            /* An upgrade request the handler did not take over: keep speaking HTTP. */
            llhttp_resume_after_upgrade(&c->parser);
            continue;
        }
        if (c->fail_status)
            conn_send_error(c, c->fail_status, c->fail_type, c->fail_msg);
        else
            conn_send_error(c, 400, "bad_request", llhttp_get_error_reason(&c->parser));
        return len;
    }
    return off;
}

static void conn_deliver_detached(srv_conn_t *c, const char *data, size_t n) {
    if (n && c->detached && !c->closing && !c->no_more && c->det.on_read)
        c->det.on_read(c->det.ud, data, n);
}

static void conn_process_rbuf(srv_conn_t *c) {
    size_t used = conn_parse(c, c->rbuf + c->roff, c->rlen - c->roff);
    c->roff += used;
    if (c->detached && conn_leftover(c)) {
        /* The bytes stay owned by rbuf while on_read runs; freed after. */
        size_t n = c->rlen - c->roff;
        c->roff = c->rlen;
        conn_deliver_detached(c, c->rbuf + c->rlen - n, n);
    }
    if (!conn_leftover(c) || c->no_more)
        conn_drop_rbuf(c);
}

static void conn_on_data(srv_conn_t *c, const char *data, size_t n) {
    if (c->closing || c->no_more || c->lingering)
        return; /* draining before close */
    if (c->detached) {
        conn_deliver_detached(c, data, n);
        return;
    }
    if (conn_leftover(c)) {
        /* Not expected (reading stops while bytes wait) but keep the order if it happens. */
        char *nb = realloc(c->rbuf, c->rlen + n);
        if (!nb) {
            conn_close_now(c);
            return;
        }
        memcpy(nb + c->rlen, data, n);
        c->rbuf = nb;
        c->rlen += n;
        conn_process_rbuf(c);
    } else {
        size_t used = conn_parse(c, data, n);
        if (used < n) {
            if (c->detached) {
                conn_deliver_detached(c, data + used, n - used);
            } else if (!c->no_more && !c->closing) {
                c->rbuf = malloc(n - used);
                if (!c->rbuf) {
                    conn_close_now(c);
                    return;
                }
                memcpy(c->rbuf, data + used, n - used);
                c->rlen = n - used;
                c->roff = 0;
            }
        }
    }
    if (c->in_body)
        timer_start(c, c->h->lim.idle_timeout_ms);
}

/* ------------------------------------------------------------------ reading */

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf) {
    srv_conn_t *c = hd->data;
    http_state_t *h = c->h;
    if (!h->shared_busy) {
        h->shared_busy = true;
        *buf = uv_buf_init(h->shared, sizeof h->shared);
        return;
    }
    char *p = malloc(HTTP_READ_CHUNK);
    *buf = uv_buf_init(p, p ? HTTP_READ_CHUNK : 0);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    srv_conn_t *c = st->data;
    http_state_t *h = c->h;
    if (nread > 0) {
        conn_on_data(c, buf->base, (size_t)nread);
    } else if (nread < 0 && !c->closing) {
        /* libuv stops reading by itself after EOF. */
        c->reading = false;
        if (nread != UV_EOF || c->detached || c->lingering) {
            conn_close_now(c);
        } else {
            c->peer_eof = true;
            c->in_head = c->in_body = false; /* an unfinished request will never complete */
            /* Requests already buffered are still answered; then the connection closes. */
            if (!conn_leftover(c))
                c->no_more = true;
        }
    }
    if (buf->base == h->shared)
        h->shared_busy = false;
    else
        free(buf->base);
    if (!c->closing) {
        conn_check_done(c);
        conn_update_reading(c);
    }
}

static void conn_update_reading(srv_conn_t *c) {
    if (c->closing)
        return;
    bool want;
    if (c->peer_eof)
        want = false;
    else if (c->lingering || c->detached || c->no_more)
        want = true;
    else
        want = !conn_leftover(c) && !conn_backpressured(c);
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_close_now(c);
            return;
        }
        c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* ------------------------------------------------------------------ accepting */

static void on_refused_closed(uv_handle_t *hd) {
    free(hd);
}

static void peer_name(uv_tcp_t *tcp, char *out, size_t outsz) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    out[0] = '\0';
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    char ip[48] = "";
    int port = 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof ip);
        port = ntohs(a->sin_port);
        snprintf(out, outsz, "%s:%d", ip, port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        snprintf(out, outsz, "[%s]:%d", ip, port);
    }
}

static void on_connection(uv_stream_t *server, int status) {
    http_state_t *h = server->data;
    if (status < 0 || h->stopped)
        return;
    if (h->n_conns >= h->lim.max_conns) {
        /* Over the cap: take it off the backlog and close it without a word. */
        uv_tcp_t *t = malloc(sizeof *t);
        if (!t)
            return;
        uv_tcp_init(h->loop, t);
        uv_accept(server, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, on_refused_closed);
        return;
    }
    srv_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->h = h;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    c->req.conn = c;
    llhttp_init(&c->parser, HTTP_REQUEST, &http_settings);
    c->parser.data = c;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close_now(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    peer_name(&c->tcp, c->peer, sizeof c->peer);
    /* Until the first byte of a request: a connection that says nothing is a slow client. */
    timer_start(c, c->h->lim.header_timeout_ms);
    conn_update_reading(c);
}

static void on_listener_closed(uv_handle_t *hd) {
    http_state_t *h = hd->data;
    h->listener_open = false;
    http_state_maybe_free(h);
}

int http_listen(srv_t *s, uv_loop_t *loop, const char *addr, int port, const http_limits_t *lim,
                http_handler_cb handler) {
    if (!s || !loop || !addr || !handler || port < 0 || port > 65535 || s->http)
        return BASE_E_INVAL;
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } sa;
    if (uv_ip4_addr(addr, port, &sa.in4) != 0 && uv_ip6_addr(addr, port, &sa.in6) != 0)
        return BASE_E_INVAL;
    http_state_t *h = calloc(1, sizeof *h);
    if (!h)
        return BASE_E_NOMEM;
    h->s = s;
    h->loop = loop;
    h->handler = handler;
    if (lim)
        h->lim = *lim;
    else
        http_limits_init(&h->lim);
    if (h->lim.max_pipelined == 0)
        h->lim.max_pipelined = 1;
    int rc = uv_tcp_init(loop, &h->listener);
    if (rc < 0) {
        free(h);
        return rc;
    }
    h->listener.data = h;
    h->listener_open = true;
    rc = uv_tcp_bind(&h->listener, &sa.sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, 511, on_connection);
    if (rc < 0) {
        /* The handle is closed on the loop; the state goes with it. */
        h->stopped = true;
        uv_close((uv_handle_t *)&h->listener, on_listener_closed);
        return rc;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &len) == 0)
        h->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    s->http = h;
    return 0;
}

void http_stop(srv_t *s) {
    http_state_t *h = s ? s->http : NULL;
    if (!h || h->stopped)
        return;
    h->stopped = true;
    uv_close((uv_handle_t *)&h->listener, on_listener_closed);
    for (srv_conn_t *c = h->conns, *next; c; c = next) {
        next = c->next;
        /* Handed-over sockets belong to their new owner, who closes them. */
        if (c->detached || c->closing || c->dispatching)
            continue;
        if (c->in_head && !c->in_body && !c->wq_head) {
            /* A request head still arriving was never acknowledged: dropping it loses nothing,
             * and waiting for it would let a slow client hold up the shutdown. */
            conn_close_now(c);
            continue;
        }
        if (c->in_body)
            continue; /* answered (with Connection: close) when the request completes */
        conn_drop_rbuf(c);
        if (!c->wq_head && !c->lingering) {
            conn_close_now(c); /* idle keep-alive: nothing in flight */
            continue;
        }
        c->no_more = true;
        conn_check_done(c);
    }
    /* The state is freed once the listener and every connection have closed. */
    http_state_maybe_free(h);
}

size_t http_conn_count(const srv_t *s) {
    const http_state_t *h = s ? s->http : NULL;
    return h ? h->n_conns : 0;
}

int http_bound_port(const srv_t *s) {
    const http_state_t *h = s ? s->http : NULL;
    return h && h->listener_open && !h->stopped ? h->port : -1;
}

/* ------------------------------------------------------------------ hand-over and raw IO */

int http_conn_detach(srv_conn_t *c, const http_detach_t *d) {
    if (!c || !d || c->closing || c->detached || c->no_more)
        return BASE_E_INVAL;
    c->detached = true;
    c->det = *d;
    uv_timer_stop(&c->timer);
    return 0;
}

size_t http_conn_write_raw(srv_conn_t *c, const void *data, size_t n) {
    if (!c || c->closing)
        return 0;
    if (n) {
        char *copy = malloc(n);
        if (!copy) {
            conn_close_now(c);
            return 0;
        }
        memcpy(copy, data, n);
        conn_write(c, copy, n, NULL, 0, false);
    }
    return c->pending;
}

size_t http_conn_pending_bytes(const srv_conn_t *c) {
    return c ? c->pending : 0;
}

void http_conn_close(srv_conn_t *c, bool abort) {
    if (!c || c->closing)
        return;
    if (abort) {
        conn_abort(c);
        return;
    }
    c->no_more = true;
    conn_check_done(c);
    conn_update_reading(c);
}
