/* The HTTP layer end to end: a libuv loop in a thread serves a test handler on 127.0.0.1
 * (ephemeral port); blocking client sockets with receive timeouts drive it. Every wait is
 * bounded (socket timeouts, bounded retry loops, a timed join of the loop thread). */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "http.h"

#define BIG_BODY (1024 * 1024)

/* ------------------------------------------------------------------ the server fixture */

typedef struct echo_s {
    srv_conn_t *c;
    struct echo_s *prev, *next;
} echo_t;

typedef struct {
    srv_t *s;
    uv_loop_t loop;
    uv_async_t stop_async;
    pthread_t th;
    http_limits_t lim;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready;
    int listen_rc, port;
    int loop_close_rc;
    bool http_freed;
    bool stop_from_handler_ok;
    echo_t *echoes;           /* loop thread */
    atomic_int ws_closed;
    atomic_int requests;
} fx_t;

static fx_t *g_fx; /* the handler's context: one server at a time */

static void echo_read(void *ud, const char *data, size_t n) {
    echo_t *e = ud;
    if (n >= 4 && memcmp(data, "QUIT", 4) == 0) {
        http_conn_close(e->c, false);
        return;
    }
    http_conn_write_raw(e->c, data, n);
}

static void echo_close(void *ud) {
    echo_t *e = ud;
    if (e->prev)
        e->prev->next = e->next;
    else
        g_fx->echoes = e->next;
    if (e->next)
        e->next->prev = e->prev;
    atomic_fetch_add(&g_fx->ws_closed, 1);
    free(e);
}

static void test_handler(srv_t *s, http_req_t *req, http_res_t *res) {
    fx_t *fx = g_fx;
    atomic_fetch_add(&fx->requests, 1);
    if (strcmp(req->path, "/echo") == 0) {
        json_t *o = json_new_object();
        json_object_set(o, "method", json_new_string(req->method));
        json_object_set(o, "path", json_new_string(req->path));
        json_object_set(o, "query", json_new_string(req->query));
        char *x = http_query_get(req, "x");
        json_object_set(o, "x", x ? json_new_string(x) : json_new_null());
        free(x);
        json_object_set(o, "len", json_new_uint(req->body.len));
        size_t bn = req->body.len > 64 ? 64 : req->body.len;
        json_object_set(o, "body", json_new_stringn(req->body.data ? req->body.data : "", bn));
        const char *tag = http_req_header(req, "x-tag");
        json_object_set(o, "tag", tag ? json_new_string(tag) : json_new_null());
        json_object_set(o, "minor", json_new_int(req->http_minor));
        json_object_set(o, "keep_alive", json_new_bool(req->keep_alive));
        json_object_set(o, "upgrade", json_new_bool(req->upgrade));
        json_object_set(o, "peer_ok", json_new_bool(strncmp(req->peer, "127.0.0.1:", 10) == 0));
        http_res_json(res, 200, o);
        http_res_header(res, "X-Test", "v=%d", 7);
    } else if (strcmp(req->path, "/big") == 0) {
        char *b = malloc(BIG_BODY);
        for (size_t i = 0; i < BIG_BODY; i++)
            b[i] = (char)('a' + i % 26);
        http_res_bytes(res, 200, "application/octet-stream", b, BIG_BODY);
        free(b);
    } else if (strcmp(req->path, "/close") == 0) {
        http_res_empty(res, 204);
        res->close = true;
    } else if (strcmp(req->path, "/nothing") == 0) {
        /* leaves res->status 0: the layer must answer 500 */
    } else if (strcmp(req->path, "/stop") == 0) {
        http_stop(s);
        fx->stop_from_handler_ok = http_bound_port(s) == -1;
        http_res_empty(res, 200);
    } else if (strcmp(req->path, "/ws") == 0 && req->upgrade) {
        static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n"
                                 "Connection: Upgrade\r\n\r\n";
        http_conn_write_raw(req->conn, sw, sizeof sw - 1);
        echo_t *e = calloc(1, sizeof *e);
        e->c = req->conn;
        http_detach_t d = {echo_read, echo_close, e};
        if (http_conn_detach(req->conn, &d) != 0) {
            free(e);
            http_res_error(res, 500, "server_error", "detach failed");
            return;
        }
        e->next = fx->echoes;
        if (fx->echoes)
            fx->echoes->prev = e;
        fx->echoes = e;
    } else {
        http_res_error(res, 404, "not_found", "no such route");
    }
}

static void on_stop_async(uv_async_t *a) {
    fx_t *fx = a->data;
    /* Handed-over sockets belong to the test: close them like the WebSocket hub would. */
    for (echo_t *e = fx->echoes; e; e = e->next)
        http_conn_close(e->c, true);
    http_stop(fx->s);
    uv_close((uv_handle_t *)&fx->stop_async, NULL);
}

static void *loop_main(void *arg) {
    fx_t *fx = arg;
    uv_loop_init(&fx->loop);
    uv_async_init(&fx->loop, &fx->stop_async, on_stop_async);
    fx->stop_async.data = fx;
    fx->listen_rc = http_listen(fx->s, &fx->loop, "127.0.0.1", 0, &fx->lim, test_handler);
    fx->port = http_bound_port(fx->s);
    pthread_mutex_lock(&fx->mu);
    fx->ready = true;
    pthread_cond_signal(&fx->cv);
    pthread_mutex_unlock(&fx->mu);
    if (fx->listen_rc == 0)
        uv_run(&fx->loop, UV_RUN_DEFAULT);
    else
        uv_close((uv_handle_t *)&fx->stop_async, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT); /* close callbacks of a failed start */
    fx->http_freed = fx->s->http == NULL;
    fx->loop_close_rc = uv_loop_close(&fx->loop);
    return NULL;
}

static fx_t *fx_start(const http_limits_t *lim) {
    fx_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    fx->s = calloc(1, sizeof *fx->s);
    assert_non_null(fx->s);
    if (lim)
        fx->lim = *lim;
    else
        http_limits_init(&fx->lim);
    pthread_mutex_init(&fx->mu, NULL);
    pthread_cond_init(&fx->cv, NULL);
    g_fx = fx;
    assert_int_equal(pthread_create(&fx->th, NULL, loop_main, fx), 0);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&fx->mu);
    while (!fx->ready)
        if (pthread_cond_timedwait(&fx->cv, &fx->mu, &dl) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&fx->mu);
    assert_true(fx->ready);
    assert_int_equal(fx->listen_rc, 0);
    assert_true(fx->port > 0);
    return fx;
}

static void fx_join(fx_t *fx) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 15;
    assert_int_equal(pthread_timedjoin_np(fx->th, NULL, &dl), 0);
    assert_true(fx->http_freed);
    assert_int_equal(fx->loop_close_rc, 0);
    pthread_mutex_destroy(&fx->mu);
    pthread_cond_destroy(&fx->cv);
    free(fx->s);
    g_fx = NULL;
    free(fx);
}

static void fx_stop(fx_t *fx) {
    uv_async_send(&fx->stop_async);
    fx_join(fx);
}

/* ------------------------------------------------------------------ the client */

typedef struct {
    int fd;
    size_t len;
    char buf[1 << 16];
} cli_t;

typedef struct {
    int status;
    char head[8192];
    char *body;
    size_t body_len;
} resp_t;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void set_timeout(int fd, int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Connected socket, or -1. */
static int cli_fd(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    set_timeout(fd, 5000);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static cli_t *cli_open(int port) {
    cli_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fd = cli_fd(port);
    assert_true(c->fd >= 0);
    return c;
}

static void cli_close(cli_t *c) {
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

static void cli_send(cli_t *c, const char *data, size_t n) {
    while (n) {
        ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        data += w;
        n -= (size_t)w;
    }
}

static void cli_sends(cli_t *c, const char *s) {
    cli_send(c, s, strlen(s));
}

/* Reads more into the buffer: bytes read, 0 on EOF, -1 on timeout/error. */
static ssize_t cli_fill(cli_t *c) {
    if (c->len == sizeof c->buf)
        return -1;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

static void cli_consume(cli_t *c, size_t n) {
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Header value (copied into out) by case-insensitive name; false when absent. */
static bool resp_header(const resp_t *r, const char *name, char *out, size_t outsz) {
    size_t nl = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    while (p && p[2] != '\r' && p[2]) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r");
            snprintf(out, outsz, "%.*s", (int)vl, v);
            return true;
        }
        p = strstr(line, "\r\n");
    }
    return false;
}

/* One response (no_body: a HEAD answer). 0, or -1 on EOF/timeout before it completed. */
static int cli_read(cli_t *c, resp_t *r, bool no_body) {
    memset(r, 0, sizeof *r);
    char *end;
    for (;;) {
        end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end)
            break;
        if (cli_fill(c) <= 0)
            return -1;
    }
    size_t hl = (size_t)(end - c->buf) + 4;
    if (hl >= sizeof r->head)
        return -1;
    memcpy(r->head, c->buf, hl);
    r->head[hl] = '\0';
    cli_consume(c, hl);
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1)
        return -1;
    char v[64];
    size_t cl = 0;
    if (!no_body && resp_header(r, "Content-Length", v, sizeof v))
        cl = strtoul(v, NULL, 10);
    r->body = malloc(cl + 1);
    while (r->body_len < cl) {
        if (!c->len && cli_fill(c) <= 0) {
            free(r->body);
            r->body = NULL;
            return -1;
        }
        size_t take = c->len < cl - r->body_len ? c->len : cl - r->body_len;
        memcpy(r->body + r->body_len, c->buf, take);
        r->body_len += take;
        cli_consume(c, take);
    }
    r->body[r->body_len] = '\0';
    return 0;
}

static void resp_free(resp_t *r) {
    free(r->body);
    r->body = NULL;
}

/* True when the server closed (EOF or reset) within ms with no further bytes. */
static bool cli_sees_close(cli_t *c, int ms) {
    set_timeout(c->fd, ms);
    if (c->len)
        return false;
    ssize_t n = recv(c->fd, c->buf, sizeof c->buf, 0);
    set_timeout(c->fd, 5000);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

static json_t *body_json(const resp_t *r) {
    json_t *j = NULL;
    char err[128];
    assert_int_equal(json_parse(r->body, r->body_len, &j, err, sizeof err), 0);
    return j;
}

static const char *jstr(const json_t *o, const char *k) {
    return json_str(json_object_get(o, k));
}

static int64_t jint(const json_t *o, const char *k) {
    int64_t v = -1;
    assert_true(json_get_i64(json_object_get(o, k), &v));
    return v;
}

/* Checks the JSON error shape and its type. */
static void assert_json_error(const resp_t *r, int status, const char *type) {
    assert_int_equal(r->status, status);
    char v[128];
    assert_true(resp_header(r, "Content-Type", v, sizeof v));
    assert_non_null(strstr(v, "application/json"));
    json_t *j = body_json(r);
    json_t *e = json_object_get(j, "error");
    assert_non_null(e);
    assert_string_equal(jstr(e, "type"), type);
    assert_non_null(jstr(e, "message"));
    assert_true(strlen(jstr(e, "message")) > 0);
    assert_non_null(json_object_get(j, "node_errors"));
    json_free(j);
}

/* GET path on c; status returned, body JSON in *out when asked. */
static int cli_get(cli_t *c, const char *path, json_t **out) {
    char req[512];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    cli_sends(c, req);
    resp_t r;
    assert_int_equal(cli_read(c, &r, false), 0);
    if (out)
        *out = body_json(&r);
    int st = r.status;
    resp_free(&r);
    return st;
}

/* ------------------------------------------------------------------ pure helpers */

static void test_pct_decode(void **state) {
    char *o = NULL;
    assert_int_equal(http_pct_decode("a%20b+c", 7, true, &o), 0);
    assert_string_equal(o, "a b c");
    free(o);
    assert_int_equal(http_pct_decode("a%20b+c", 7, false, &o), 0);
    assert_string_equal(o, "a b+c");
    free(o);
    assert_int_equal(http_pct_decode("%2Fx%2f", 7, false, &o), 0);
    assert_string_equal(o, "/x/");
    free(o);
    assert_int_equal(http_pct_decode("", 0, false, &o), 0);
    assert_string_equal(o, "");
    free(o);
    assert_int_equal(http_pct_decode("a%00b", 5, false, &o), BASE_E_INVAL);
    assert_null(o);
    assert_int_equal(http_pct_decode("a%2", 3, false, &o), BASE_E_INVAL);
    assert_int_equal(http_pct_decode("a%", 2, false, &o), BASE_E_INVAL);
    assert_int_equal(http_pct_decode("%zz", 3, false, &o), BASE_E_INVAL);
    assert_int_equal(http_pct_decode("%4g", 3, false, &o), BASE_E_INVAL);
    assert_null(o);
}

static void test_query_and_headers(void **state) {
    http_header_t hs[2] = {{"content-type", "text/plain"}, {"x-a", "1"}};
    http_req_t r = {0};
    r.query = "a=1&b=x%20y+z&a=2&empty=&flag&c%3D=3&bad=%zz";
    r.headers = hs;
    r.n_headers = 2;
    char *v = http_query_get(&r, "a");
    assert_string_equal(v, "1"); /* first match wins */
    free(v);
    v = http_query_get(&r, "b");
    assert_string_equal(v, "x y z");
    free(v);
    v = http_query_get(&r, "empty");
    assert_string_equal(v, "");
    free(v);
    v = http_query_get(&r, "flag");
    assert_string_equal(v, "");
    free(v);
    v = http_query_get(&r, "c=");
    assert_string_equal(v, "3");
    free(v);
    assert_null(http_query_get(&r, "bad"));
    assert_null(http_query_get(&r, "missing"));
    assert_null(http_query_get(&r, "fla"));
    r.query = "";
    assert_null(http_query_get(&r, "a"));
    assert_string_equal(http_req_header(&r, "x-a"), "1");
    assert_string_equal(http_req_header(&r, "content-type"), "text/plain");
    assert_null(http_req_header(&r, "x-b"));
}

static void test_res_builders(void **state) {
    http_res_t res = {0};
    http_res_error(&res, 413, "request_too_large", "too big");
    assert_int_equal(res.status, 413);
    assert_non_null(strstr(res.content_type, "application/json"));
    json_t *j = NULL;
    char err[64];
    assert_int_equal(json_parse(res.body.data, res.body.len, &j, err, sizeof err), 0);
    json_t *e = json_object_get(j, "error");
    assert_string_equal(jstr(e, "type"), "request_too_large");
    assert_string_equal(jstr(e, "message"), "too big");
    assert_string_equal(jstr(e, "details"), "");
    assert_int_equal(json_len(json_object_get(e, "extra_info")), 0);
    assert_int_equal(json_len(json_object_get(j, "node_errors")), 0);
    json_free(j);
    http_res_header(&res, "X-Name", "a\r\nSet-Cookie: %s", "x");
    assert_string_equal(res.headers.data, "X-Name: a  Set-Cookie: x\r\n");
    http_res_empty(&res, 204);
    assert_int_equal(res.status, 204);
    assert_int_equal(res.body.len, 0);
    assert_null(res.content_type);
    http_res_bytes(&res, 200, "text/plain", "hey", 3);
    assert_int_equal(res.body.len, 3);
    assert_string_equal(res.body.data, "hey");
    base_buf_free(&res.body);
    base_buf_free(&res.headers);
    http_limits_t l;
    http_limits_init(&l);
    assert_int_equal(l.max_header_bytes, 32 * 1024);
    assert_int_equal(l.max_url_bytes, 8 * 1024);
    assert_int_equal(l.max_body_bytes, 100 * 1024 * 1024);
    assert_int_equal(l.header_timeout_ms, 10000);
    assert_int_equal(l.idle_timeout_ms, 60000);
    assert_int_equal(l.max_conns, 1024);
    assert_int_equal(l.max_pipelined, 64);
}

static void test_listen_errors(void **state) {
    srv_t *s = calloc(1, sizeof *s);
    uv_loop_t loop;
    uv_loop_init(&loop);
    http_limits_t l;
    http_limits_init(&l);
    assert_int_equal(http_listen(s, &loop, "not-an-address", 0, &l, test_handler), BASE_E_INVAL);
    assert_int_equal(http_listen(s, &loop, "127.0.0.1", 70000, &l, test_handler), BASE_E_INVAL);
    assert_null(s->http);
    assert_int_equal(http_bound_port(s), -1);
    assert_int_equal(http_conn_count(s), 0);
    /* Two servers on one port: the second bind fails with libuv's code and leaks nothing. */
    assert_int_equal(http_listen(s, &loop, "127.0.0.1", 0, &l, test_handler), 0);
    int port = http_bound_port(s);
    assert_true(port > 0);
    srv_t *s2 = calloc(1, sizeof *s2);
    assert_int_equal(http_listen(s2, &loop, "127.0.0.1", port, &l, test_handler), UV_EADDRINUSE);
    assert_null(s2->http);
    http_stop(s);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_null(s->http);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(s2);
    free(s);
}

/* ------------------------------------------------------------------ served behaviour */

static void test_keep_alive(void **state) {
    fx_t *fx = fx_start(NULL);
    cli_t *c = cli_open(fx->port);
    for (int i = 0; i < 5; i++) {
        char req[256];
        snprintf(req, sizeof req,
                 "POST /echo?x=n%d&y=2 HTTP/1.1\r\nHost: t\r\nX-Tag:  tag%d \r\n"
                 "Content-Length: 3\r\n\r\nabc", i, i);
        cli_sends(c, req);
        resp_t r;
        assert_int_equal(cli_read(c, &r, false), 0);
        assert_int_equal(r.status, 200);
        char v[64];
        assert_true(resp_header(&r, "Connection", v, sizeof v));
        assert_string_equal(v, "keep-alive");
        assert_true(resp_header(&r, "Server", v, sizeof v));
        assert_string_equal(v, "weft");
        assert_true(resp_header(&r, "X-Test", v, sizeof v));
        assert_string_equal(v, "v=7");
        json_t *j = body_json(&r);
        char want[16];
        snprintf(want, sizeof want, "n%d", i);
        assert_string_equal(jstr(j, "x"), want);
        snprintf(want, sizeof want, "tag%d", i);
        assert_string_equal(jstr(j, "tag"), want); /* value trimmed */
        assert_string_equal(jstr(j, "method"), "POST");
        assert_string_equal(jstr(j, "path"), "/echo");
        assert_string_equal(jstr(j, "body"), "abc");
        assert_int_equal(jint(j, "len"), 3);
        assert_int_equal(jint(j, "minor"), 1);
        assert_true(json_object_get(j, "peer_ok")->u.b);
        json_free(j);
        resp_free(&r);
    }
    /* Unknown route: JSON 404 from the handler, connection still usable. */
    cli_sends(c, "GET /nope HTTP/1.1\r\n\r\n");
    resp_t r;
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_json_error(&r, 404, "not_found");
    resp_free(&r);
    /* A handler that sets no status gets a JSON 500. */
    cli_sends(c, "GET /nothing HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_json_error(&r, 500, "server_error");
    resp_free(&r);
    json_t *j = NULL;
    assert_int_equal(cli_get(c, "/echo?x=last", &j), 200);
    assert_string_equal(jstr(j, "x"), "last");
    json_free(j);
    cli_close(c);
    fx_stop(fx);
}

static void test_pipelined_1000(void **state) {
    fx_t *fx = fx_start(NULL);
    cli_t *c = cli_open(fx->port);
    base_buf_t all = BASE_BUF_INIT;
    for (int i = 0; i < 1000; i++)
        base_buf_printf(&all, "GET /echo?x=%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    cli_send(c, all.data, all.len); /* one write */
    base_buf_free(&all);
    for (int i = 0; i < 1000; i++) {
        resp_t r;
        assert_int_equal(cli_read(c, &r, false), 0);
        assert_int_equal(r.status, 200);
        json_t *j = body_json(&r);
        char want[16];
        snprintf(want, sizeof want, "%d", i);
        assert_string_equal(jstr(j, "x"), want);
        json_free(j);
        resp_free(&r);
    }
    assert_int_equal(atomic_load(&fx->requests), 1000);
    cli_close(c);
    fx_stop(fx);
}

/* Big responses pipelined past the limit: back-pressure pauses parsing, order is kept. */
static void test_pipelined_big(void **state) {
    http_limits_t l;
    http_limits_init(&l);
    l.max_pipelined = 2;
    fx_t *fx = fx_start(&l);
    cli_t *c = cli_open(fx->port);
    base_buf_t all = BASE_BUF_INIT;
    for (int i = 0; i < 12; i++)
        base_buf_puts(&all, i % 3 == 2 ? "GET /echo?x=e HTTP/1.1\r\n\r\n" : "GET /big HTTP/1.1\r\n\r\n");
    cli_send(c, all.data, all.len);
    base_buf_free(&all);
    for (int i = 0; i < 12; i++) {
        resp_t r;
        assert_int_equal(cli_read(c, &r, false), 0);
        assert_int_equal(r.status, 200);
        if (i % 3 == 2) {
            json_t *j = body_json(&r);
            assert_string_equal(jstr(j, "x"), "e");
            json_free(j);
        } else {
            assert_int_equal(r.body_len, BIG_BODY);
            assert_int_equal(r.body[0], 'a');
            assert_int_equal(r.body[BIG_BODY - 1], 'a' + (BIG_BODY - 1) % 26);
        }
        resp_free(&r);
    }
    cli_close(c);
    fx_stop(fx);
}

static void test_chunked_body(void **state) {
    fx_t *fx = fx_start(NULL);
    cli_t *c = cli_open(fx->port);
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n");
    usleep(50 * 1000); /* the body arrives in two reads */
    cli_sends(c, "6;ext=1\r\n world\r\n0\r\n\r\n");
    resp_t r;
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_int_equal(jint(j, "len"), 11);
    assert_string_equal(jstr(j, "body"), "hello world");
    json_free(j);
    resp_free(&r);
    /* Bad chunk size: 400 JSON with llhttp's reason, then close. */
    cli_sends(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n");
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_json_error(&r, 400, "bad_request");
    resp_free(&r);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);
    fx_stop(fx);
}

static void test_expect_continue(void **state) {
    http_limits_t l;
    http_limits_init(&l);
    l.max_body_bytes = 1024;
    fx_t *fx = fx_start(&l);
    cli_t *c = cli_open(fx->port);
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    const char want[] = "HTTP/1.1 100 Continue\r\n\r\n";
    while (c->len < sizeof want - 1)
        assert_true(cli_fill(c) > 0);
    assert_memory_equal(c->buf, want, sizeof want - 1);
    cli_consume(c, sizeof want - 1);
    cli_sends(c, "12345");
    resp_t r;
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_string_equal(jstr(j, "body"), "12345");
    json_free(j);
    resp_free(&r);
    /* Declared length over the limit: 413 at once, no 100, then close. */
    cli_sends(c, "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_json_error(&r, 413, "request_too_large");
    char v[32];
    assert_true(resp_header(&r, "Connection", v, sizeof v));
    assert_string_equal(v, "close");
    resp_free(&r);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);
    fx_stop(fx);
}

static void test_limits_413_431_414_400(void **state) {
    http_limits_t l;
    http_limits_init(&l);
    l.max_body_bytes = 1024;
    l.max_header_bytes = 2048;
    l.max_url_bytes = 512;
    fx_t *fx = fx_start(&l);
    resp_t r;

    /* 413: Content-Length over the limit, body being sent anyway. */
    cli_t *c = cli_open(fx->port);
    char *body = malloc(5000);
    memset(body, 'x', 5000);
    cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
    cli_send(c, body, 5000);
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_json_error(&r, 413, "request_too_large");
    resp_free(&r);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);

    /* 413: a chunked body that grows past the limit. */
    c = cli_open(fx->port);
    cli_sends(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        cli_sends(c, "3e8\r\n");
        cli_send(c, body, 1000);
        cli_sends(c, "\r\n");
    }
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_json_error(&r, 413, "request_too_large");
    resp_free(&r);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);

    /* Exactly at the limit is fine. */
    c = cli_open(fx->port);
    cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 1024\r\n\r\n");
    cli_send(c, body, 1024);
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    cli_close(c);
    free(body);

    /* 431: one huge header, in several reads. */
    c = cli_open(fx->port);
    cli_sends(c, "GET /echo HTTP/1.1\r\nX-Big: ");
    char chunk[1000];
    memset(chunk, 'h', sizeof chunk);
    for (int i = 0; i < 4; i++) {
        cli_send(c, chunk, sizeof chunk);
        usleep(10 * 1000);
    }
    cli_sends(c, "\r\n\r\n");
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_json_error(&r, 431, "request_header_fields_too_large");
    resp_free(&r);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);

    /* 431: many small headers in one write. */
    c = cli_open(fx->port);
    base_buf_t b = BASE_BUF_INIT;
    base_buf_puts(&b, "GET /echo HTTP/1.1\r\n");
    for (int i = 0; i < 400; i++)
        base_buf_printf(&b, "X-H%d: v\r\n", i);
    base_buf_puts(&b, "\r\n");
    cli_send(c, b.data, b.len);
    base_buf_free(&b);
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_json_error(&r, 431, "request_header_fields_too_large");
    resp_free(&r);
    cli_close(c);

    /* 414: long URL. */
    c = cli_open(fx->port);
    base_buf_puts(&b, "GET /echo?x=");
    for (int i = 0; i < 600; i++)
        base_buf_putc(&b, 'u');
    base_buf_puts(&b, " HTTP/1.1\r\n\r\n");
    cli_send(c, b.data, b.len);
    base_buf_free(&b);
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_json_error(&r, 414, "uri_too_long");
    resp_free(&r);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);

    /* 400: malformed request line; the message is llhttp's reason. */
    const char *bad[] = {"GARBAGE\r\n\r\n", "GET /echo HTTP/1.1 extra\r\n\r\n",
                         "GET /echo HTTP/1.1\r\nBad Header: x\r\n\r\n",
                         "POST /echo HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                         "GET /echo HTTP/3.7\r\n\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        c = cli_open(fx->port);
        cli_sends(c, bad[i]);
        assert_int_equal(cli_read(c, &r, false), 0);
        if (r.status != 400)
            fprintf(stderr, "bad[%zu] answered %d\n", i, r.status);
        assert_json_error(&r, 400, "bad_request");
        resp_free(&r);
        assert_true(cli_sees_close(c, 3000));
        cli_close(c);
    }
    /* A good request pipelined before a bad one is still answered first. */
    c = cli_open(fx->port);
    cli_sends(c, "GET /echo?x=ok HTTP/1.1\r\n\r\nBROKEN LINE\r\n\r\n");
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_json_error(&r, 400, "bad_request");
    resp_free(&r);
    cli_close(c);
    fx_stop(fx);
}

static void test_header_timeout(void **state) {
    http_limits_t l;
    http_limits_init(&l);
    l.header_timeout_ms = 300;
    fx_t *fx = fx_start(&l);
    /* Half a head, then silence. */
    cli_t *c = cli_open(fx->port);
    double t0 = now_ms();
    cli_sends(c, "GET /echo HTTP/1.1\r\nHost: t\r\nX-Slow:");
    resp_t r;
    assert_int_equal(cli_read(c, &r, false), 0);
    double dt = now_ms() - t0;
    assert_json_error(&r, 408, "request_timeout");
    resp_free(&r);
    assert_true(dt >= 250 && dt < 2000);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);
    /* Slow-loris trickle: a byte every 50 ms does not extend the deadline. */
    c = cli_open(fx->port);
    const char *head = "GET /echo HTTP/1.1\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    t0 = now_ms();
    bool answered = false;
    for (size_t i = 0; head[i] && now_ms() - t0 < 3000; i++) {
        if (send(c->fd, head + i, 1, MSG_NOSIGNAL) != 1)
            break;
        struct timeval tv = {0, 50 * 1000};
        setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            answered = true;
            break;
        }
        if (n == 0)
            break;
    }
    set_timeout(c->fd, 5000);
    dt = now_ms() - t0;
    assert_true(answered);
    assert_true(dt < 1500);
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_json_error(&r, 408, "request_timeout");
    resp_free(&r);
    cli_close(c);
    /* A connection that never says anything is closed too (no response). */
    c = cli_open(fx->port);
    t0 = now_ms();
    assert_true(cli_sees_close(c, 3000));
    assert_true(now_ms() - t0 < 2000);
    cli_close(c);
    fx_stop(fx);
}

static void test_idle_timeout(void **state) {
    http_limits_t l;
    http_limits_init(&l);
    l.idle_timeout_ms = 300;
    fx_t *fx = fx_start(&l);
    cli_t *c = cli_open(fx->port);
    assert_int_equal(cli_get(c, "/echo", NULL), 200);
    usleep(100 * 1000);
    assert_int_equal(cli_get(c, "/echo", NULL), 200); /* still open before the timeout */
    double t0 = now_ms();
    assert_true(cli_sees_close(c, 3000));
    double dt = now_ms() - t0;
    assert_true(dt >= 250 && dt < 2000);
    cli_close(c);
    fx_stop(fx);
}

/* A body that stalls gets 408; a client that never reads its answers is dropped. */
static void test_body_timeout_and_stuck_reader(void **state) {
    http_limits_t l;
    http_limits_init(&l);
    l.idle_timeout_ms = 300;
    fx_t *fx = fx_start(&l);
    cli_t *c = cli_open(fx->port);
    double t0 = now_ms();
    cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    resp_t r;
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_json_error(&r, 408, "request_timeout");
    resp_free(&r);
    assert_true(now_ms() - t0 < 2000);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);

    c = cli_open(fx->port);
    int small = 4096;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    base_buf_t all = BASE_BUF_INIT;
    for (int i = 0; i < 40; i++)
        base_buf_puts(&all, "GET /big HTTP/1.1\r\n\r\n");
    cli_send(c, all.data, all.len);
    base_buf_free(&all);
    usleep(1500 * 1000);
    /* Drain what was sent before the server gave up: far less than 40 MiB, then the end. */
    size_t got = 0;
    bool ended = false;
    t0 = now_ms();
    while (now_ms() - t0 < 5000) {
        ssize_t n = recv(c->fd, c->buf, sizeof c->buf, 0);
        if (n <= 0) {
            ended = n == 0 || errno == ECONNRESET;
            break;
        }
        got += (size_t)n;
    }
    if (!ended)
        fprintf(stderr, "stuck reader: got %zu bytes in %.0f ms, errno %d\n", got, now_ms() - t0, errno);
    assert_true(ended);
    assert_true(got < 40u * BIG_BODY);
    /* Parsing paused behind the unsent megabytes: beyond what the kernel's send buffer
     * (a few MiB) swallowed, the other requests were never run. */
    assert_true(atomic_load(&fx->requests) <= 10);
    cli_close(c);
    fx_stop(fx);
}

static void test_max_conns(void **state) {
    http_limits_t l;
    http_limits_init(&l);
    l.max_conns = 8;
    fx_t *fx = fx_start(&l);
    cli_t *cs[8];
    for (int i = 0; i < 8; i++) {
        cs[i] = cli_open(fx->port);
        assert_int_equal(cli_get(cs[i], "/echo", NULL), 200);
    }
    cli_t *extra = cli_open(fx->port);
    send(extra->fd, "GET /echo HTTP/1.1\r\n\r\n", 22, MSG_NOSIGNAL);
    assert_true(cli_sees_close(extra, 3000)); /* closed without a response */
    cli_close(extra);
    /* The 8 are still served. */
    for (int i = 0; i < 8; i++)
        assert_int_equal(cli_get(cs[i], "/echo", NULL), 200);
    /* A slot frees up when one leaves. */
    cli_close(cs[0]);
    bool ok = false;
    for (int attempt = 0; attempt < 100 && !ok; attempt++) {
        cli_t *n = cli_open(fx->port);
        if (send(n->fd, "GET /echo HTTP/1.1\r\n\r\n", 22, MSG_NOSIGNAL) == 22) {
            resp_t r;
            if (cli_read(n, &r, false) == 0) {
                ok = r.status == 200;
                resp_free(&r);
            }
        }
        cli_close(n);
        if (!ok)
            usleep(20 * 1000);
    }
    assert_true(ok);
    for (int i = 1; i < 8; i++)
        cli_close(cs[i]);
    fx_stop(fx);
}

static void test_500_concurrent(void **state) {
    enum { N = 500 };
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 2 * N + 64 && rl.rlim_max >= 2 * N + 64) {
        rl.rlim_cur = 2 * N + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    http_limits_t l;
    http_limits_init(&l);
    l.max_conns = 600;
    fx_t *fx = fx_start(&l);
    cli_t **cs = calloc(N, sizeof *cs);
    for (int i = 0; i < N; i++)
        cs[i] = cli_open(fx->port);
    for (int i = 0; i < N; i++) {
        char req[128];
        snprintf(req, sizeof req, "GET /echo?x=c%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
        cli_sends(cs[i], req);
    }
    for (int i = 0; i < N; i++) {
        resp_t r;
        assert_int_equal(cli_read(cs[i], &r, false), 0);
        assert_int_equal(r.status, 200);
        json_t *j = body_json(&r);
        char want[16];
        snprintf(want, sizeof want, "c%d", i);
        assert_string_equal(jstr(j, "x"), want);
        json_free(j);
        resp_free(&r);
    }
    for (int i = 0; i < N; i++)
        cli_close(cs[i]);
    free(cs);
    fx_stop(fx);
}

static void test_http10_close_head(void **state) {
    fx_t *fx = fx_start(NULL);
    resp_t r;
    char v[64];
    /* HTTP/1.0 without keep-alive: answered, then closed. */
    cli_t *c = cli_open(fx->port);
    cli_sends(c, "GET /echo?x=10 HTTP/1.0\r\n\r\n");
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_true(resp_header(&r, "Connection", v, sizeof v));
    assert_string_equal(v, "close");
    json_t *j = body_json(&r);
    assert_int_equal(jint(j, "minor"), 0);
    assert_false(json_object_get(j, "keep_alive")->u.b);
    json_free(j);
    resp_free(&r);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);
    /* HTTP/1.0 with keep-alive stays open. */
    c = cli_open(fx->port);
    cli_sends(c, "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_true(resp_header(&r, "Connection", v, sizeof v));
    assert_string_equal(v, "keep-alive");
    resp_free(&r);
    cli_sends(c, "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    cli_close(c);
    /* Connection: close in HTTP/1.1; pipelined requests after it are not answered. */
    c = cli_open(fx->port);
    cli_sends(c, "GET /echo HTTP/1.1\r\nConnection: close\r\n\r\nGET /echo HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_true(resp_header(&r, "Connection", v, sizeof v));
    assert_string_equal(v, "close");
    resp_free(&r);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);
    /* res->close from the handler; 204 has no Content-Length and no body. */
    c = cli_open(fx->port);
    cli_sends(c, "GET /close HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_int_equal(r.status, 204);
    assert_false(resp_header(&r, "Content-Length", v, sizeof v));
    assert_true(resp_header(&r, "Connection", v, sizeof v));
    assert_string_equal(v, "close");
    resp_free(&r);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);
    /* HEAD: the headers of GET (Content-Length of the body) and no body. */
    c = cli_open(fx->port);
    cli_sends(c, "HEAD /big HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_read(c, &r, true), 0);
    assert_int_equal(r.status, 200);
    assert_true(resp_header(&r, "Content-Length", v, sizeof v));
    assert_int_equal(strtoul(v, NULL, 10), BIG_BODY);
    assert_true(resp_header(&r, "Content-Type", v, sizeof v));
    assert_string_equal(v, "application/octet-stream");
    resp_free(&r);
    cli_sends(c, "HEAD /echo HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_read(c, &r, true), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* The next response starts right after the heads: no body bytes were sent. */
    json_t *jj = NULL;
    assert_int_equal(cli_get(c, "/echo?x=after", &jj), 200);
    assert_string_equal(jstr(jj, "x"), "after");
    assert_string_equal(jstr(jj, "method"), "GET");
    json_free(jj);
    cli_close(c);
    fx_stop(fx);
}

static void test_upgrade_detach(void **state) {
    fx_t *fx = fx_start(NULL);
    cli_t *c = cli_open(fx->port);
    /* The head and the first frame bytes in one write. */
    cli_sends(c, "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nHELLO");
    resp_t r;
    assert_int_equal(cli_read(c, &r, true), 0);
    assert_int_equal(r.status, 101);
    resp_free(&r);
    while (c->len < 5)
        assert_true(cli_fill(c) > 0);
    assert_int_equal(c->len, 5);
    assert_memory_equal(c->buf, "HELLO", 5);
    cli_consume(c, 5);
    /* Bytes that look like HTTP are not parsed any more. */
    cli_sends(c, "GET / HTTP/1.1\r\n\r\n");
    while (c->len < 18)
        assert_true(cli_fill(c) > 0);
    assert_memory_equal(c->buf, "GET / HTTP/1.1\r\n\r\n", 18);
    cli_consume(c, 18);
    /* Close requested by the new owner: queued bytes first, then the socket closes, even
     * when the client keeps its end open (the linger is bounded). */
    cli_sends(c, "QUIT");
    assert_true(cli_sees_close(c, 3000));
    double t0 = now_ms();
    while (atomic_load(&fx->ws_closed) < 1 && now_ms() - t0 < 6000)
        usleep(20 * 1000);
    assert_int_equal(atomic_load(&fx->ws_closed), 1);
    cli_close(c);

    /* An upgrade request the handler does not take over is a normal request. */
    c = cli_open(fx->port);
    cli_sends(c, "GET /echo?x=u HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
                 "GET /echo?x=v HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_string_equal(jstr(j, "x"), "u");
    assert_true(json_object_get(j, "upgrade")->u.b);
    json_free(j);
    resp_free(&r);
    assert_int_equal(cli_read(c, &r, false), 0);
    j = body_json(&r);
    assert_string_equal(jstr(j, "x"), "v");
    assert_false(json_object_get(j, "upgrade")->u.b);
    json_free(j);
    resp_free(&r);
    cli_close(c);

    /* A detached socket left open when the server stops: the owner closes it. */
    c = cli_open(fx->port);
    cli_sends(c, "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
    assert_int_equal(cli_read(c, &r, true), 0);
    assert_int_equal(r.status, 101);
    resp_free(&r);
    cli_sends(c, "ping");
    while (c->len < 4)
        assert_true(cli_fill(c) > 0);
    assert_memory_equal(c->buf, "ping", 4);
    cli_consume(c, 4);
    fx_t *f = fx;
    uv_async_send(&f->stop_async);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);
    atomic_int *closed = &f->ws_closed;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 15;
    assert_int_equal(pthread_timedjoin_np(f->th, NULL, &dl), 0);
    assert_int_equal(atomic_load(closed), 2); /* on_close once per detached socket */
    assert_true(f->http_freed);
    assert_int_equal(f->loop_close_rc, 0);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f->s);
    free(f);
    g_fx = NULL;
}

static void test_stop(void **state) {
    http_limits_t l;
    http_limits_init(&l);
    l.header_timeout_ms = 400;
    fx_t *fx = fx_start(&l);
    /* An idle keep-alive connection, one halfway through a head, one reading a big body. */
    cli_t *idle = cli_open(fx->port);
    assert_int_equal(cli_get(idle, "/echo", NULL), 200);
    cli_t *half = cli_open(fx->port);
    cli_sends(half, "GET /echo HTTP/1.1\r\nHost:");
    cli_t *big = cli_open(fx->port);
    cli_sends(big, "GET /big HTTP/1.1\r\n\r\n");
    /* Read only the beginning so the rest is still in flight. */
    while (!memmem(big->buf, big->len, "\r\n\r\n", 4))
        assert_true(cli_fill(big) > 0);
    usleep(50 * 1000);
    uv_async_send(&fx->stop_async);
    assert_true(cli_sees_close(idle, 3000));
    /* The in-flight response is delivered in full, then the socket closes. */
    resp_t r;
    assert_int_equal(cli_read(big, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, BIG_BODY);
    assert_int_equal(r.body[BIG_BODY - 1], 'a' + (BIG_BODY - 1) % 26);
    resp_free(&r);
    assert_true(cli_sees_close(big, 3000));
    /* New connections are refused. */
    assert_true(cli_fd(fx->port) < 0);
    /* A head still arriving was never acknowledged: stop drops it at once instead of
     * letting a slow client hold up the shutdown. */
    assert_true(cli_sees_close(half, 300));
    cli_close(idle);
    cli_close(half);
    cli_close(big);
    fx_join(fx);
}

/* A request that completes after stop is answered with Connection: close. */
static void test_stop_mid_request_and_from_handler(void **state) {
    fx_t *fx = fx_start(NULL);
    cli_t *c = cli_open(fx->port);
    cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 4\r\n\r\nab");
    usleep(100 * 1000);
    uv_async_send(&fx->stop_async);
    usleep(100 * 1000);
    cli_sends(c, "cd");
    resp_t r;
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    char v[32];
    assert_true(resp_header(&r, "Connection", v, sizeof v));
    assert_string_equal(v, "close");
    json_t *j = body_json(&r);
    assert_string_equal(jstr(j, "body"), "abcd");
    json_free(j);
    resp_free(&r);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);
    fx_join(fx);

    /* http_stop called by a handler: its own response still goes out. */
    fx = fx_start(NULL);
    c = cli_open(fx->port);
    cli_sends(c, "GET /stop HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_read(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_true(resp_header(&r, "Connection", v, sizeof v));
    assert_string_equal(v, "close");
    resp_free(&r);
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);
    assert_true(fx->stop_from_handler_ok);
    fx_stop(fx); /* the async still closes its own handle */
}

/* A client that half-closes after pipelining still gets every answer. */
static void test_half_close(void **state) {
    fx_t *fx = fx_start(NULL);
    cli_t *c = cli_open(fx->port);
    base_buf_t all = BASE_BUF_INIT;
    for (int i = 0; i < 200; i++)
        base_buf_printf(&all, "GET /echo?x=%d HTTP/1.1\r\n\r\n", i);
    cli_send(c, all.data, all.len);
    base_buf_free(&all);
    shutdown(c->fd, SHUT_WR);
    for (int i = 0; i < 200; i++) {
        resp_t r;
        assert_int_equal(cli_read(c, &r, false), 0);
        json_t *j = body_json(&r);
        char want[16];
        snprintf(want, sizeof want, "%d", i);
        assert_string_equal(jstr(j, "x"), want);
        json_free(j);
        resp_free(&r);
    }
    assert_true(cli_sees_close(c, 3000));
    cli_close(c);
    fx_stop(fx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_query_and_headers),
        cmocka_unit_test(test_res_builders),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_pipelined_1000),
        cmocka_unit_test(test_pipelined_big),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_limits_413_431_414_400),
        cmocka_unit_test(test_header_timeout),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_body_timeout_and_stuck_reader),
        cmocka_unit_test(test_max_conns),
        cmocka_unit_test(test_500_concurrent),
        cmocka_unit_test(test_http10_close_head),
        cmocka_unit_test(test_upgrade_detach),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_stop_mid_request_and_from_handler),
        cmocka_unit_test(test_half_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
