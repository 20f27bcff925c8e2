/* Loop thread. The request/response helpers of the HTTP layer that need no socket: header
 * lookup, percent-decoding, query parsing, response builders and the limits defaults. */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

const char *http_req_header(const http_req_t *r, const char *lower_name) {
    if (!r || !lower_name)
        return NULL;
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcmp(r->headers[i].name, lower_name) == 0)
            return r->headers[i].value;
    return NULL;
}

static int hex_val(char ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int http_pct_decode(const char *in, size_t n, bool plus_is_space, char **out) {
    *out = NULL;
    if (!in && n)
        return BASE_E_INVAL;
    char *o = malloc(n + 1);
    if (!o)
        return BASE_E_NOMEM;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        if (ch == '%') {
            if (n - i < 3) {
                free(o);
                return BASE_E_INVAL;
            }
            int a = hex_val(in[i + 1]), b = hex_val(in[i + 2]);
            /* A NUL byte would silently truncate every C string built from the value
             * (file names in particular), so it is refused rather than decoded. */
            if (a < 0 || b < 0 || (a == 0 && b == 0)) {
                free(o);
                return BASE_E_INVAL;
            }
            o[j++] = (char)(a * 16 + b);
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            o[j++] = ' ';
        } else if (ch == '\0') {
            free(o);
            return BASE_E_INVAL;
        } else {
            o[j++] = ch;
        }
    }
    o[j] = '\0';
    *out = o;
    return 0;
}

char *http_query_get(const http_req_t *r, const char *name) {
    if (!r || !r->query || !name)
        return NULL;
    size_t name_len = strlen(name);
    const char *p = r->query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', seg);
        size_t klen = eq ? (size_t)(eq - p) : seg;
        char *key = NULL;
        /* Keys are compared decoded, so "client%49d" matches "clientId" like aiohttp does. */
        if (klen && http_pct_decode(p, klen, true, &key) == 0) {
            bool match = strlen(key) == name_len && memcmp(key, name, name_len) == 0;
            free(key);
            if (match) {
                char *val = NULL;
                if (eq) {
                    if (http_pct_decode(eq + 1, seg - klen - 1, true, &val) != 0)
                        return NULL; /* a malformed first match is "absent", not a later one */
                } else {
                    val = strdup("");
                }
                return val;
            }
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    return NULL;
}

/* ------------------------------------------------------------------ responses */

void http_res_header(http_res_t *res, const char *name, const char *fmt, ...) {
    base_buf_t v = BASE_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    int rc = base_buf_vprintf(&v, fmt, ap);
    va_end(ap);
    if (rc != 0) {
        base_buf_free(&v);
        return;
    }
    size_t mark = res->headers.len;
    if (base_buf_puts(&res->headers, name) == 0 && base_buf_puts(&res->headers, ": ") == 0) {
        /* Values may carry user data (file names): CR/LF would let them forge headers. */
        bool ok = true;
        for (size_t i = 0; v.data && i < v.len && ok; i++) {
            char ch = v.data[i];
            if (ch == '\r' || ch == '\n' || ch == '\0')
                ch = ' ';
            ok = base_buf_putc(&res->headers, ch) == 0;
        }
        if (ok && base_buf_puts(&res->headers, "\r\n") == 0) {
            base_buf_free(&v);
            return;
        }
    }
    /* Out of memory: drop the partial line so the header block stays well formed. */
    res->headers.len = mark;
    if (res->headers.data)
        res->headers.data[mark] = '\0';
    base_buf_free(&v);
}

static void res_set_body(http_res_t *res, char *data, size_t n) {
    base_buf_free(&res->body);
    res->body.data = data;
    res->body.len = n;
    res->body.cap = n + 1;
}

void http_res_json(http_res_t *res, int status, json_t *body) {
    char *text = body ? json_dump(body, JSON_PYTHON) : NULL;
    json_free(body);
    if (!text) {
        /* Out of memory: still answer, with a fixed JSON error that needs no allocation. */
        static const char oom[] = "{\"error\": {\"type\": \"server_error\", \"message\": "
                                  "\"out of memory\", \"details\": \"\", \"extra_info\": {}}, "
                                  "\"node_errors\": {}}";
        base_buf_free(&res->body);
        base_buf_append(&res->body, oom, sizeof oom - 1);
        res->status = 500;
        res->content_type = "application/json";
        return;
    }
    res_set_body(res, text, strlen(text));
    res->status = status;
    res->content_type = "application/json; charset=utf-8";
}

void http_res_error(http_res_t *res, int status, const char *type, const char *message) {
    json_t *root = json_new_object(), *err = json_new_object();
    if (!root || !err) {
        json_free(root);
        json_free(err);
        http_res_json(res, status, NULL);
        return;
    }
    json_object_set(err, "type", json_new_string(type ? type : "error"));
    json_object_set(err, "message", json_new_string(message ? message : ""));
    json_object_set(err, "details", json_new_string(""));
    json_object_set(err, "extra_info", json_new_object());
    json_object_set(root, "error", err);
    json_object_set(root, "node_errors", json_new_object());
    http_res_json(res, status, root);
}

void http_res_empty(http_res_t *res, int status) {
    base_buf_free(&res->body);
    res->status = status;
    res->content_type = NULL;
}

void http_res_bytes(http_res_t *res, int status, const char *ctype, const void *data, size_t n) {
    base_buf_free(&res->body);
    if (n && base_buf_append(&res->body, data, n) != 0) {
        http_res_error(res, 500, "server_error", "out of memory");
        return;
    }
    res->status = status;
    res->content_type = ctype;
}

void http_limits_init(http_limits_t *l) {
    l->max_header_bytes = 32u * 1024u;
    l->max_url_bytes = 8u * 1024u;
    l->max_body_bytes = 100u * 1024u * 1024u;
    l->header_timeout_ms = 10000;
    l->idle_timeout_ms = 60000;
    l->max_conns = 1024;
    l->max_pipelined = 64;
}
