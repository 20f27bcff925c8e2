/* The WebSocket endpoint over the real HTTP layer: a server loop in a thread, and a small
 * raw-socket client here (masked frames out, server frames parsed) so every byte on the wire
 * is checked. */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "app.h"

#define IO_TIMEOUT_MS 5000

/* ------------------------------------------------------------------ server in a thread */

typedef struct {
    uv_loop_t loop;
    srv_t s;
    uv_async_t async;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void (*fn)(void *);
    void *arg;
    bool done;
    int port;
} server_t;

static server_t S;

static void handler(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (strcmp(req->path, "/ws") == 0 || strcmp(req->path, "/api/ws") == 0)
        ws_handle_upgrade(s->ws, req, res);
    else
        http_res_error(res, 404, "not_found", "no such route");
}

static void async_cb(uv_async_t *a)
{
    pthread_mutex_lock(&S.mu);
    void (*fn)(void *) = S.fn;
    void *arg = S.arg;
    pthread_mutex_unlock(&S.mu);
    if (!fn)
        return;
    fn(arg);
    pthread_mutex_lock(&S.mu);
    S.fn = NULL;
    S.done = true;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
}

static void *loop_main(void *arg)
{
    uv_run(&S.loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Runs fn(arg) on the loop thread and waits for it (bounded). */
static void on_loop(void (*fn)(void *), void *arg)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&S.mu);
    S.fn = fn;
    S.arg = arg;
    S.done = false;
    pthread_mutex_unlock(&S.mu);
    uv_async_send(&S.async);
    pthread_mutex_lock(&S.mu);
    int rc = 0;
    while (!S.done && rc == 0)
        rc = pthread_cond_timedwait(&S.cv, &S.mu, &ts);
    bool done = S.done;
    pthread_mutex_unlock(&S.mu);
    assert_true(done);
}

static void server_start(const ws_limits_t *wl)
{
    memset(&S, 0, sizeof S);
    assert_int_equal(uv_loop_init(&S.loop), 0);
    pthread_mutex_init(&S.mu, NULL);
    pthread_cond_init(&S.cv, NULL);
    S.s.loop = &S.loop;
    S.s.cfg.max_upload_mb = 100;
    assert_int_equal(srv_queue_init(&S.s.queue), 0);
    http_limits_t hl;
    http_limits_init(&hl);
    assert_int_equal(http_listen(&S.s, &S.loop, "127.0.0.1", 0, &hl, handler), 0);
    S.port = http_bound_port(&S.s);
    assert_true(S.port > 0);
    ws_limits_t lim;
    ws_limits_init(&lim);
    assert_int_equal(ws_hub_new(&S.s, wl ? wl : &lim, &S.s.ws), 0);
    assert_int_equal(uv_async_init(&S.loop, &S.async, async_cb), 0);
    assert_int_equal(pthread_create(&S.th, NULL, loop_main, NULL), 0);
}

static void stop_fn(void *arg)
{
    ws_hub_free(S.s.ws);
    S.s.ws = NULL;
    http_stop(&S.s);
    uv_close((uv_handle_t *)&S.async, NULL);
}

/* Frees the hub and the listener; the loop thread ends once every handle has closed. */
static void server_stop_begin(void)
{
    on_loop(stop_fn, NULL);
}

static void server_stop_end(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 15;
    assert_int_equal(pthread_timedjoin_np(S.th, NULL, &ts), 0);
    assert_int_equal(uv_loop_close(&S.loop), 0);
    free(S.s.cur_prompt_id);
    free(S.s.cur_client_id);
    free(S.s.cur_node);
    srv_queue_destroy(&S.s.queue);
    pthread_mutex_destroy(&S.mu);
    pthread_cond_destroy(&S.cv);
}

static void server_stop(void)
{
    server_stop_begin();
    server_stop_end();
}

static void count_fn(void *arg)
{
    *(size_t *)arg = ws_hub_count(S.s.ws);
}

static size_t hub_count(void)
{
    size_t n = 0;
    on_loop(count_fn, &n);
    return n;
}

typedef struct {
    ws_target_t to;
    const char *type;
    json_t *data;
    uint32_t event;
    const void *bin;
    size_t bin_len;
} send_args_t;

static void send_fn(void *arg)
{
    send_args_t *a = arg;
    if (a->type)
        ws_send_json(S.s.ws, a->to, a->type, a->data);
    else
        ws_send_binary(S.s.ws, a->to, a->event, a->bin, a->bin_len);
}

/* Sends {"type": type, "data": <data_text>} through the hub on the loop thread. */
static void hub_send_json(const char *client, const char *prompt, const char *type, const char *data_text)
{
    send_args_t a = {{client, prompt, NULL, 0}, type, NULL, 0, NULL, 0};
    assert_int_equal(json_parse(data_text, strlen(data_text), &a.data, NULL, 0), 0);
    on_loop(send_fn, &a);
    json_free(a.data);
}

/* ------------------------------------------------------------------ raw client */

typedef struct {
    int fd;
    unsigned char *buf;
    size_t len, cap;
    int status;   /* HTTP status of the handshake answer */
    char *head;   /* the answer's head, NUL-terminated */
    char *body;   /* the answer's body (non-101), NUL-terminated */
} wc_t;

typedef struct {
    int op;
    bool fin;
    unsigned char *data; /* NUL-terminated copy */
    size_t len;
} frame_t;

static int cl_connect(int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)S.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void cl_write(wc_t *c, const void *p, size_t n)
{
    const char *q = p;
    while (n > 0) {
        ssize_t w = send(c->fd, q, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        assert_true(w > 0);
        q += w;
        n -= (size_t)w;
    }
}

/* Reads more bytes: >0 read, 0 EOF, -1 error (reset), -2 timeout. */
static int cl_fill(wc_t *c, int timeout_ms)
{
    struct pollfd p = {c->fd, POLLIN, 0};
    int r = poll(&p, 1, timeout_ms);
    if (r == 0)
        return -2;
    if (c->len + 65536 > c->cap) {
        c->cap = (c->len + 65536) * 2;
        c->buf = realloc(c->buf, c->cap);
        assert_non_null(c->buf);
    }
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
    if (n < 0)
        return -1;
    c->len += (size_t)n;
    return n > 0 ? 1 : 0;
}

static void cl_consume(wc_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Sends a request (raw head lines after the request line) and reads the answer's head and,
 * for a non-101 answer, its Content-Length body. */
static void cl_request(wc_t *c, const char *method, const char *target, const char *headers)
{
    char req[2048];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", method, target, headers);
    cl_write(c, req, strlen(req));
    char *end = NULL;
    for (;;) {
        if (c->len > 0) {
            c->buf[c->len] = 0;
            end = strstr((char *)c->buf, "\r\n\r\n");
            if (end)
                break;
        }
        assert_true(cl_fill(c, IO_TIMEOUT_MS) > 0);
    }
    size_t hl = (size_t)(end - (char *)c->buf) + 4;
    c->head = strndup((char *)c->buf, hl);
    cl_consume(c, hl);
    assert_int_equal(sscanf(c->head, "HTTP/1.1 %d", &c->status), 1);
    if (c->status != 101) {
        size_t clen = 0;
        const char *cl = strcasestr(c->head, "\r\ncontent-length:");
        if (cl)
            clen = strtoul(cl + 17, NULL, 10);
        while (c->len < clen)
            assert_true(cl_fill(c, IO_TIMEOUT_MS) > 0);
        c->body = strndup((char *)c->buf, clen);
        cl_consume(c, clen);
    }
}

#define STD_HEADERS                                                                           \
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"               \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

static wc_t *cl_open_ex(const char *target, int rcvbuf)
{
    wc_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fd = cl_connect(rcvbuf);
    cl_request(c, "GET", target, STD_HEADERS);
    assert_int_equal(c->status, 101);
    return c;
}

static wc_t *cl_open(const char *target)
{
    return cl_open_ex(target, 0);
}

static wc_t *cl_http(const char *method, const char *target, const char *headers)
{
    wc_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fd = cl_connect(0);
    cl_request(c, method, target, headers);
    return c;
}

static void cl_free(wc_t *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    free(c->head);
    free(c->body);
    free(c);
}

static void cl_send(wc_t *c, bool fin, int op, const void *p, size_t n)
{
    unsigned char h[14];
    size_t hl = 0;
    h[hl++] = (unsigned char)((fin ? 0x80 : 0) | (op & 0x0f));
    if (n < 126) {
        h[hl++] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (unsigned char)(n >> 8);
        h[hl++] = (unsigned char)n;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[hl++] = (unsigned char)((uint64_t)n >> (8 * i));
    }
    const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    memcpy(h + hl, mask, 4);
    hl += 4;
    unsigned char *f = malloc(hl + n + 1);
    assert_non_null(f);
    memcpy(f, h, hl);
    for (size_t i = 0; i < n; i++)
        f[hl + i] = ((const unsigned char *)p)[i] ^ mask[i % 4];
    cl_write(c, f, hl + n);
    free(f);
}

static void cl_send_text(wc_t *c, const char *s)
{
    cl_send(c, true, 1, s, strlen(s));
}

/* Next server frame: 1 got one, 0 EOF/reset before a frame, -2 timeout. */
static int cl_frame_try(wc_t *c, frame_t *f, int timeout_ms)
{
    memset(f, 0, sizeof *f);
    for (;;) {
        if (c->len >= 2) {
            size_t hl = 2;
            uint64_t n = c->buf[1] & 0x7f;
            assert_int_equal(c->buf[1] & 0x80, 0); /* server frames are never masked */
            if (n == 126)
                hl = 4;
            else if (n == 127)
                hl = 10;
            if (c->len >= hl) {
                if (n == 126) {
                    n = ((uint64_t)c->buf[2] << 8) | c->buf[3];
                } else if (n == 127) {
                    n = 0;
                    for (int i = 0; i < 8; i++)
                        n = (n << 8) | c->buf[2 + i];
                }
                if (c->len >= hl + n) {
                    f->fin = (c->buf[0] & 0x80) != 0;
                    f->op = c->buf[0] & 0x0f;
                    f->len = (size_t)n;
                    f->data = malloc(n + 1);
                    assert_non_null(f->data);
                    memcpy(f->data, c->buf + hl, n);
                    f->data[n] = 0;
                    cl_consume(c, hl + n);
                    return 1;
                }
            }
        }
        int r = cl_fill(c, timeout_ms);
        if (r == -2)
            return -2;
        if (r <= 0)
            return 0;
    }
}

static void cl_frame(wc_t *c, frame_t *f)
{
    assert_int_equal(cl_frame_try(c, f, IO_TIMEOUT_MS), 1);
}

/* Next frame must be a text message of this type; returns its parsed JSON (caller frees). */
static json_t *cl_expect(wc_t *c, const char *type)
{
    frame_t f;
    cl_frame(c, &f);
    assert_int_equal(f.op, 1);
    assert_true(f.fin);
    json_t *j = NULL;
    assert_int_equal(json_parse((char *)f.data, f.len, &j, NULL, 0), 0);
    free(f.data);
    assert_string_equal(json_str(json_object_get(j, "type")), type);
    assert_int_equal(json_len(j), 2);
    return j;
}

/* Pings and expects the pong next: proves nothing else was queued before it. */
static void cl_roundtrip(wc_t *c, const char *tag)
{
    frame_t f;
    cl_send(c, true, 9, tag, strlen(tag));
    cl_frame(c, &f);
    assert_int_equal(f.op, 10);
    assert_string_equal((char *)f.data, tag);
    free(f.data);
}

static uint16_t close_code(const frame_t *f)
{
    assert_int_equal(f->op, 8);
    assert_true(f->len >= 2);
    return (uint16_t)((f->data[0] << 8) | f->data[1]);
}

/* Reads until the server closes the TCP connection (EOF or reset); fails on timeout. */
static void cl_expect_eof(wc_t *c, int timeout_ms)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        c->len = 0;
        int r = cl_fill(c, timeout_ms);
        assert_int_not_equal(r, -2);
        if (r <= 0)
            return;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_true((t1.tv_sec - t0.tv_sec) * 1000 < timeout_ms + 1000);
    }
}

static json_t *expect_status(wc_t *c, const char *sid)
{
    json_t *j = cl_expect(c, "status");
    const json_t *d = json_object_get(j, "data");
    const char *got = json_str(json_object_get(d, "sid"));
    assert_non_null(got);
    if (sid)
        assert_string_equal(got, sid);
    /* The status object itself comes from srv_status_json: nothing is queued here. */
    uint64_t remaining = 99;
    assert_true(json_get_u64(
        json_object_get(json_object_get(json_object_get(d, "status"), "exec_info"), "queue_remaining"),
        &remaining));
    assert_int_equal(remaining, 0);
    assert_int_equal(json_len(d), 2);
    return j;
}

/* ------------------------------------------------------------------ tests */

static void test_accept_and_minted_sid(void **state)
{
    server_start(NULL);
    wc_t *c = cl_open("/ws");
    /* RFC 6455 section 1.3's example key and answer. */
    assert_non_null(strstr(c->head, "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_non_null(strcasestr(c->head, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strcasestr(c->head, "\r\nConnection: Upgrade\r\n"));
    json_t *j = expect_status(c, NULL);
    const char *sid = json_str(json_object_get(json_object_get(j, "data"), "sid"));
    assert_int_equal(strlen(sid), 32);
    for (size_t i = 0; i < 32; i++)
        assert_non_null(strchr("0123456789abcdef", sid[i]));
    /* A second socket gets a different id. */
    wc_t *c2 = cl_open("/api/ws");
    json_t *j2 = expect_status(c2, NULL);
    assert_string_not_equal(sid, json_str(json_object_get(json_object_get(j2, "data"), "sid")));
    assert_int_equal(hub_count(), 2);
    json_free(j);
    json_free(j2);
    cl_free(c);
    cl_free(c2);
    server_stop();
}

static void test_given_sid(void **state)
{
    server_start(NULL);
    wc_t *c = cl_open("/ws?clientId=abc%2D1&token=x");
    json_free(expect_status(c, "abc-1"));
    cl_roundtrip(c, "after-status");
    /* An empty clientId is none, as in ComfyUI: one is minted. */
    wc_t *c2 = cl_open("/ws?clientId=");
    json_t *j = expect_status(c2, NULL);
    assert_int_equal(strlen(json_str(json_object_get(json_object_get(j, "data"), "sid"))), 32);
    json_free(j);
    cl_free(c);
    cl_free(c2);
    server_stop();
}

static void test_status_text(void **state)
{
    server_start(NULL);
    wc_t *c = cl_open("/ws?clientId=abc");
    frame_t f;
    cl_frame(c, &f);
    assert_int_equal(f.op, 1);
    assert_string_equal((char *)f.data,
                        "{\"type\":\"status\",\"data\":{\"status\":{\"exec_info\":"
                        "{\"queue_remaining\":0}},\"sid\":\"abc\"}}");
    free(f.data);
    cl_free(c);
    server_stop();
}

static void test_feature_flags(void **state)
{
    server_start(NULL);
    wc_t *c = cl_open("/ws?clientId=ff");
    json_free(expect_status(c, "ff"));
    cl_send_text(c, "{\"type\":\"feature_flags\",\"data\":{\"supports_preview_metadata\":true}}");
    json_t *j = cl_expect(c, "feature_flags");
    const json_t *d = json_object_get(j, "data");
    assert_int_equal(json_len(d), 2);
    assert_int_equal(json_object_get(d, "supports_preview_metadata")->type, JSON_BOOL);
    assert_true(json_object_get(d, "supports_preview_metadata")->u.b);
    uint64_t max = 0;
    assert_true(json_get_u64(json_object_get(d, "max_upload_size"), &max));
    assert_int_equal(max, 104857600u);
    json_free(j);
    /* Only the first text message negotiates; a second one is ignored. */
    cl_send_text(c, "{\"type\":\"feature_flags\",\"data\":{}}");
    cl_roundtrip(c, "p1");
    cl_free(c);

    /* A first message that is not feature_flags uses up the negotiation. */
    c = cl_open("/ws");
    json_free(expect_status(c, NULL));
    cl_send_text(c, "{\"type\":\"hello\"}");
    cl_send_text(c, "{\"type\":\"feature_flags\",\"data\":{}}");
    cl_roundtrip(c, "p2");
    cl_free(c);
    server_stop();
}

static void test_ping_pong_and_ignored_input(void **state)
{
    server_start(NULL);
    wc_t *c = cl_open("/ws");
    json_free(expect_status(c, NULL));
    cl_roundtrip(c, "hello");
    cl_send(c, true, 9, "", 0);
    frame_t f;
    cl_frame(c, &f);
    assert_int_equal(f.op, 10);
    assert_int_equal(f.len, 0);
    free(f.data);
    /* Invalid JSON, binary frames and unsolicited pongs are ignored; the socket lives on. */
    cl_send_text(c, "not json {");
    cl_send_text(c, "[1,2");
    cl_send(c, true, 2, "\x00\x01\x02", 3);
    cl_send(c, true, 10, "x", 1);
    cl_send_text(c, "{\"type\":\"feature_flags\",\"data\":{}}"); /* not first any more */
    cl_roundtrip(c, "still-alive");
    assert_int_equal(hub_count(), 1);
    cl_free(c);
    server_stop();
}

static void test_client_close(void **state)
{
    server_start(NULL);
    wc_t *c = cl_open("/ws");
    json_free(expect_status(c, NULL));
    assert_int_equal(hub_count(), 1);
    const unsigned char payload[] = {0x03, 0xe8, 'b', 'y', 'e'}; /* 1000 "bye" */
    cl_send(c, true, 8, payload, sizeof payload);
    frame_t f;
    cl_frame(c, &f);
    assert_int_equal(close_code(&f), 1000);
    free(f.data);
    cl_expect_eof(c, IO_TIMEOUT_MS);
    assert_int_equal(hub_count(), 0);
    cl_free(c);
    server_stop();
}

static void test_fragmented_message(void **state)
{
    server_start(NULL);
    wc_t *c = cl_open("/ws");
    json_free(expect_status(c, NULL));
    const char *a = "{\"type\":\"feat", *b = "ure_fl", *z = "ags\",\"data\":{\"x\":1}}";
    cl_send(c, false, 1, a, strlen(a));
    /* A control frame may arrive between fragments. */
    cl_send(c, true, 9, "mid", 3);
    cl_send(c, false, 0, b, strlen(b));
    cl_send(c, true, 0, z, strlen(z));
    frame_t f;
    cl_frame(c, &f);
    assert_int_equal(f.op, 10);
    assert_string_equal((char *)f.data, "mid");
    free(f.data);
    json_free(cl_expect(c, "feature_flags"));
    cl_free(c);
    server_stop();
}

static void test_oversized_message(void **state)
{
    ws_limits_t lim;
    ws_limits_init(&lim);
    lim.max_msg_bytes = 1024;
    server_start(&lim);
    wc_t *c = cl_open("/ws");
    json_free(expect_status(c, NULL));
    /* At the limit is fine. */
    char *big = malloc(2001);
    assert_non_null(big);
    memset(big, 'a', 2000);
    big[2000] = 0;
    cl_send(c, true, 1, big, 1024);
    cl_roundtrip(c, "ok");
    /* Over it, also when only the fragments add up to too much. */
    cl_send(c, false, 1, big, 1000);
    cl_send(c, true, 0, big, 1000);
    frame_t f;
    cl_frame(c, &f);
    assert_int_equal(close_code(&f), 1009);
    free(f.data);
    cl_expect_eof(c, IO_TIMEOUT_MS);
    cl_free(c);

    c = cl_open("/ws");
    json_free(expect_status(c, NULL));
    cl_send(c, true, 1, big, 2000);
    cl_frame(c, &f);
    assert_int_equal(close_code(&f), 1009);
    free(f.data);
    cl_expect_eof(c, IO_TIMEOUT_MS);
    cl_free(c);
    free(big);
    assert_int_equal(hub_count(), 0);
    server_stop();
}

static void test_protocol_errors(void **state)
{
    server_start(NULL);
    /* An unmasked client frame is a protocol error: close 1002. */
    wc_t *c = cl_open("/ws");
    json_free(expect_status(c, NULL));
    const unsigned char unmasked[] = {0x81, 0x02, 'h', 'i'};
    cl_write(c, unmasked, sizeof unmasked);
    frame_t f;
    cl_frame(c, &f);
    assert_int_equal(close_code(&f), 1002);
    free(f.data);
    cl_expect_eof(c, IO_TIMEOUT_MS);
    cl_free(c);
    /* Invalid UTF-8 in a text message: close 1007. */
    c = cl_open("/ws");
    json_free(expect_status(c, NULL));
    cl_send(c, true, 1, "\xc3\x28", 2);
    cl_frame(c, &f);
    assert_int_equal(close_code(&f), 1007);
    free(f.data);
    cl_expect_eof(c, IO_TIMEOUT_MS);
    cl_free(c);
    server_stop();
}

static void expect_error(const char *method, const char *target, const char *headers, int status)
{
    wc_t *c = cl_http(method, target, headers);
    assert_int_equal(c->status, status);
    json_t *j = NULL;
    assert_non_null(c->body);
    assert_int_equal(json_parse(c->body, strlen(c->body), &j, NULL, 0), 0);
    assert_non_null(json_object_get(j, "error"));
    json_free(j);
    if (status == 426)
        assert_non_null(strcasestr(c->head, "\r\nSec-WebSocket-Version: 13\r\n"));
    cl_free(c);
}

static void test_bad_handshakes(void **state)
{
    server_start(NULL);
    const char *up = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    char h[512];
    /* Missing key, malformed keys. */
    snprintf(h, sizeof h, "%sSec-WebSocket-Version: 13\r\n", up);
    expect_error("GET", "/ws", h, 400);
    snprintf(h, sizeof h, "%sSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n", up);
    expect_error("GET", "/ws", h, 400);
    snprintf(h, sizeof h, "%sSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!!\r\n", up);
    expect_error("GET", "/ws", h, 400);
    /* Wrong or missing version: 426 naming the one we speak. */
    snprintf(h, sizeof h, "%sSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", up);
    expect_error("GET", "/ws", h, 426);
    snprintf(h, sizeof h, "%sSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", up);
    expect_error("GET", "/ws", h, 426);
    /* Not an upgrade at all, or the wrong one. */
    expect_error("GET", "/ws", "", 400);
    expect_error("GET", "/ws",
                 "Upgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", 400);
    expect_error("GET", "/ws",
                 "Upgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", 400);
    /* Not GET. */
    expect_error("POST", "/ws", STD_HEADERS "Content-Length: 0\r\n", 400);
    /* Bad ids. */
    char target[300];
    memset(target, 0, sizeof target);
    strcpy(target, "/ws?clientId=");
    memset(target + strlen(target), 'x', 129);
    expect_error("GET", target, STD_HEADERS, 400);
    expect_error("GET", "/ws?clientId=a%0Ab", STD_HEADERS, 400);
    expect_error("GET", "/ws?prompt_id=%7F", STD_HEADERS, 400);
    expect_error("GET", "/nope", STD_HEADERS, 404);
    /* Case and lists in the headers are fine. */
    wc_t *c = cl_http("GET", "/ws?clientId=ok",
                      "upgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
                      "sec-websocket-version: 13\r\nsec-websocket-key: AAAAAAAAAAAAAAAAAAAAAA==\r\n");
    assert_int_equal(c->status, 101);
    json_free(expect_status(c, "ok"));
    assert_int_equal(hub_count(), 1);
    cl_free(c);
    server_stop();
}

static void test_routing(void **state)
{
    server_start(NULL);
    wc_t *a1 = cl_open("/ws?clientId=alice");
    wc_t *a2 = cl_open("/ws?clientId=alice");
    wc_t *b = cl_open("/ws?clientId=bob");
    wc_t *w = cl_open("/ws?prompt_id=p1");
    json_free(expect_status(a1, "alice"));
    json_free(expect_status(a2, "alice"));
    json_free(expect_status(b, "bob"));
    json_free(expect_status(w, NULL));
    assert_int_equal(hub_count(), 4);

    /* To alice: both of her sockets, nobody else. */
    hub_send_json("alice", NULL, "executing", "{\"node\":\"3\",\"prompt_id\":\"p0\"}");
    wc_t *alice[] = {a1, a2};
    for (int i = 0; i < 2; i++) {
        json_t *j = cl_expect(alice[i], "executing");
        assert_string_equal(json_str(json_object_get(json_object_get(j, "data"), "node")), "3");
        json_free(j);
    }
    /* To alice about p1: the watcher too, each socket once. */
    hub_send_json("alice", "p1", "progress", "{\"value\":1,\"max\":2,\"prompt_id\":\"p1\",\"node\":\"3\"}");
    wc_t *p1[] = {a1, a2, w};
    for (int i = 0; i < 3; i++)
        json_free(cl_expect(p1[i], "progress"));
    /* A prompt without a client id still reaches its watchers. */
    hub_send_json("", "p1", "executed", "{\"node\":\"9\",\"output\":null,\"prompt_id\":\"p1\"}");
    json_free(cl_expect(w, "executed"));
    /* Broadcast: everyone. b's first message is this one, so it got nothing targeted. */
    hub_send_json(NULL, NULL, "status", "{\"status\":{\"exec_info\":{\"queue_remaining\":0}}}");
    wc_t *all[] = {a1, a2, b, w};
    for (int i = 0; i < 4; i++) {
        json_t *j = cl_expect(all[i], "status");
        assert_null(json_object_get(json_object_get(j, "data"), "sid"));
        json_free(j);
        cl_roundtrip(all[i], "end");
    }
    /* Binary: 4-byte big-endian type, then the payload. */
    send_args_t ba = {{"bob", NULL, NULL, 0}, NULL, NULL, 0x01020304u, "xyz", 3};
    on_loop(send_fn, &ba);
    frame_t f;
    cl_frame(b, &f);
    assert_int_equal(f.op, 2);
    assert_int_equal(f.len, 7);
    assert_memory_equal(f.data, "\x01\x02\x03\x04xyz", 7);
    free(f.data);
    cl_roundtrip(a1, "no-binary");
    /* Messages keep their order. */
    for (int i = 0; i < 20; i++) {
        char d[64];
        snprintf(d, sizeof d, "{\"value\":%d}", i);
        hub_send_json("bob", NULL, "progress", d);
    }
    for (int i = 0; i < 20; i++) {
        json_t *j = cl_expect(b, "progress");
        int64_t v = -1;
        assert_true(json_get_i64(json_object_get(json_object_get(j, "data"), "value"), &v));
        assert_int_equal(v, i);
        json_free(j);
    }
    /* data NULL is sent as null. */
    send_args_t na = {{"bob", NULL, NULL, 0}, "custom", NULL, 0, NULL, 0};
    on_loop(send_fn, &na);
    frame_t nf;
    cl_frame(b, &nf);
    assert_string_equal((char *)nf.data, "{\"type\":\"custom\",\"data\":null}");
    free(nf.data);
    cl_free(a1);
    cl_free(a2);
    cl_free(b);
    cl_free(w);
    server_stop();
}

static void set_state_fn(void *arg)
{
    srv_t *s = &S.s;
    free(s->cur_prompt_id);
    free(s->cur_client_id);
    free(s->cur_node);
    s->cur_prompt_id = strdup("p9");
    s->cur_client_id = strdup("carol");
    s->cur_node = strdup("5");
    s->cur_value = 3;
    s->cur_max = 10;
}

static void check_state(wc_t *c)
{
    json_t *j = cl_expect(c, "executing");
    const json_t *d = json_object_get(j, "data");
    assert_int_equal(json_len(d), 3);
    assert_string_equal(json_str(json_object_get(d, "node")), "5");
    assert_string_equal(json_str(json_object_get(d, "display_node")), "5");
    assert_string_equal(json_str(json_object_get(d, "prompt_id")), "p9");
    json_free(j);
    j = cl_expect(c, "progress");
    d = json_object_get(j, "data");
    int64_t v = 0, m = 0;
    assert_true(json_get_i64(json_object_get(d, "value"), &v));
    assert_true(json_get_i64(json_object_get(d, "max"), &m));
    assert_int_equal(v, 3);
    assert_int_equal(m, 10);
    assert_string_equal(json_str(json_object_get(d, "prompt_id")), "p9");
    assert_string_equal(json_str(json_object_get(d, "node")), "5");
    json_free(j);
}

static void test_current_state_on_connect(void **state)
{
    server_start(NULL);
    on_loop(set_state_fn, NULL);
    wc_t *c = cl_open("/ws?clientId=carol");
    json_free(expect_status(c, "carol"));
    check_state(c);
    cl_roundtrip(c, "end");
    wc_t *w = cl_open("/ws?prompt_id=p9");
    json_free(expect_status(w, NULL));
    check_state(w);
    cl_roundtrip(w, "end");
    /* Someone else's prompt: just the status. */
    wc_t *d = cl_open("/ws?clientId=dave&prompt_id=other");
    json_free(expect_status(d, "dave"));
    cl_roundtrip(d, "end");
    cl_free(c);
    cl_free(w);
    cl_free(d);
    server_stop();
}

static void set_store_fn(void *arg)
{
    S.s.store = arg;
}

static void enqueue(store_t *st, const char *id)
{
    store_prompt_t p;
    memset(&p, 0, sizeof p);
    p.prompt_id = (char *)id;
    p.number = 1;
    p.created_ms = 1000;
    p.prompt = json_new_object();
    assert_int_equal(store_enqueue(st, &p), 0);
    json_free(p.prompt);
}

static void test_replay_finished_prompt(void **state)
{
    char *dir = tu_fresh_dir("replay");
    char path[1024];
    snprintf(path, sizeof path, "%s/weft.db", dir);
    store_t *st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    enqueue(st, "p_done");
    assert_int_equal(store_mark_running(st, "p_done", 2000), 0);
    const char *msgs = "[[\"execution_start\",{\"prompt_id\":\"p_done\",\"timestamp\":1}],"
                       "[\"execution_cached\",{\"nodes\":[],\"prompt_id\":\"p_done\",\"timestamp\":2}],"
                       "[\"execution_success\",{\"prompt_id\":\"p_done\",\"timestamp\":3}]]";
    json_t *m = NULL;
    assert_int_equal(json_parse(msgs, strlen(msgs), &m, NULL, 0), 0);
    assert_int_equal(store_finish(st, "p_done", STORE_SUCCESS, 3000, NULL, m, NULL, NULL), 0);
    json_free(m);
    enqueue(st, "p_wait");

    server_start(NULL);
    on_loop(set_store_fn, st);
    /* A late watcher learns the whole outcome, ending with the "finished" signal. */
    wc_t *c = cl_open("/ws?clientId=late&prompt_id=p_done");
    json_free(expect_status(c, "late"));
    const char *types[] = {"execution_start", "execution_cached", "execution_success"};
    for (int i = 0; i < 3; i++) {
        json_t *j = cl_expect(c, types[i]);
        assert_string_equal(json_str(json_object_get(json_object_get(j, "data"), "prompt_id")), "p_done");
        json_free(j);
    }
    frame_t f;
    cl_frame(c, &f);
    assert_string_equal((char *)f.data,
                        "{\"type\":\"executing\",\"data\":{\"node\":null,\"prompt_id\":\"p_done\"}}");
    free(f.data);
    cl_roundtrip(c, "end");
    /* Pending and unknown prompts: nothing to replay yet. */
    wc_t *w = cl_open("/ws?prompt_id=p_wait");
    json_free(expect_status(w, NULL));
    cl_roundtrip(w, "end");
    wc_t *u = cl_open("/ws?prompt_id=nope");
    json_free(expect_status(u, NULL));
    cl_roundtrip(u, "end");
    cl_free(c);
    cl_free(w);
    cl_free(u);
    on_loop(set_store_fn, NULL);
    server_stop();
    store_close(st);
    free(dir);
}

static void test_slow_reader(void **state)
{
    ws_limits_t lim;
    ws_limits_init(&lim);
    lim.max_queued_bytes = 256 << 10;
    server_start(&lim);
    wc_t *slow = cl_open_ex("/ws?clientId=slow", 4096);
    wc_t *f1 = cl_open("/ws?clientId=f1");
    wc_t *f2 = cl_open("/ws?clientId=f2");
    json_free(expect_status(f1, "f1"));
    json_free(expect_status(f2, "f2"));
    assert_int_equal(hub_count(), 3);

    size_t n = 64 << 10;
    char *blob = malloc(n + 32);
    assert_non_null(blob);
    memset(blob, 'z', n);
    blob[n] = 0;
    char *text = malloc(n + 32);
    assert_non_null(text);
    snprintf(text, n + 32, "{\"b\":\"%s\"}", blob);
    json_t *data = NULL;
    assert_int_equal(json_parse(text, strlen(text), &data, NULL, 0), 0);
    send_args_t a = {{NULL, NULL, NULL, 0}, "blob", data, 0, NULL, 0};
    int closed_at = -1;
    /* The slow socket's kernel buffers fill first, then our queue; the fast ones read each
     * message as it comes and must never be closed. */
    for (int round = 0; round < 600 && closed_at < 0; round++) {
        on_loop(send_fn, &a);
        json_free(cl_expect(f1, "blob"));
        json_free(cl_expect(f2, "blob"));
        if (hub_count() == 2)
            closed_at = round;
    }
    assert_true(closed_at > 0);
    for (int round = 0; round < 5; round++) {
        on_loop(send_fn, &a);
        json_free(cl_expect(f1, "blob"));
        json_free(cl_expect(f2, "blob"));
    }
    assert_int_equal(hub_count(), 2);
    cl_roundtrip(f1, "alive");
    /* The slow socket was cut: reading it ends in EOF or a reset, not more data forever. */
    cl_expect_eof(slow, IO_TIMEOUT_MS);
    json_free(data);
    free(blob);
    free(text);
    cl_free(slow);
    cl_free(f1);
    cl_free(f2);
    server_stop();
}

static void test_ping_timeout(void **state)
{
    ws_limits_t lim;
    ws_limits_init(&lim);
    /* Long enough that a loaded machine still answers in time, short enough to be quick. */
    lim.ping_interval_ms = 250;
    server_start(&lim);
    wc_t *mute = cl_open("/ws?clientId=mute");
    wc_t *live = cl_open("/ws?clientId=live");
    json_free(expect_status(live, "live"));
    /* The live client answers every ping for a while; the mute one never says a thing. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int pings = 0;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms > 1600)
            break;
        frame_t f;
        int r = cl_frame_try(live, &f, 100);
        if (r == -2)
            continue;
        assert_int_equal(r, 1);
        assert_int_equal(f.op, 9);
        pings++;
        cl_send(live, true, 10, f.data, f.len);
        free(f.data);
    }
    assert_true(pings >= 3);
    assert_int_equal(hub_count(), 1);
    /* The mute one got its status and some pings, then the connection was cut. */
    json_free(expect_status(mute, "mute"));
    frame_t f;
    cl_frame(mute, &f);
    assert_int_equal(f.op, 9);
    free(f.data);
    cl_expect_eof(mute, IO_TIMEOUT_MS);
    cl_free(mute);
    cl_free(live);
    server_stop();
}

static void test_hub_free_says_going_away(void **state)
{
    server_start(NULL);
    wc_t *c = cl_open("/ws?clientId=bye");
    json_free(expect_status(c, "bye"));
    server_stop_begin();
    frame_t f;
    cl_frame(c, &f);
    assert_int_equal(close_code(&f), 1001);
    free(f.data);
    cl_expect_eof(c, IO_TIMEOUT_MS);
    cl_free(c);
    server_stop_end();
}

static void test_client_vanishes(void **state)
{
    server_start(NULL);
    /* Sockets dropped without a close frame (one mid-frame) are removed and freed. */
    wc_t *a = cl_open("/ws");
    wc_t *b = cl_open("/ws");
    json_free(expect_status(a, NULL));
    json_free(expect_status(b, NULL));
    const unsigned char partial[] = {0x81, 0xfe, 0x10};
    cl_write(b, partial, sizeof partial);
    assert_int_equal(hub_count(), 2);
    cl_free(a);
    cl_free(b);
    for (int i = 0; i < 200 && hub_count() > 0; i++)
        usleep(10000);
    assert_int_equal(hub_count(), 0);
    hub_send_json(NULL, NULL, "status", "{}"); /* nobody left: harmless */
    server_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_and_minted_sid),
        cmocka_unit_test(test_given_sid),
        cmocka_unit_test(test_status_text),
        cmocka_unit_test(test_feature_flags),
        cmocka_unit_test(test_ping_pong_and_ignored_input),
        cmocka_unit_test(test_client_close),
        cmocka_unit_test(test_fragmented_message),
        cmocka_unit_test(test_oversized_message),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_bad_handshakes),
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_current_state_on_connect),
        cmocka_unit_test(test_replay_finished_prompt),
        cmocka_unit_test(test_slow_reader),
        cmocka_unit_test(test_ping_timeout),
        cmocka_unit_test(test_hub_free_says_going_away),
        cmocka_unit_test(test_client_vanishes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
