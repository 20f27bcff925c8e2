/* Strict RFC 8259 parser (plus Python's NaN/Infinity literals, which ComfyUI emits). */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "json-internal.h"
#include "json.h"
#include "map.h"

/* Objects up to this many keys find duplicates by a linear scan; bigger ones use a hash
 * set so a 100k-key object stays linear overall. */
#define DUP_SCAN_MAX 16

typedef struct {
    const char *start, *p, *end;
    char *err;
    size_t errsz;
    int rc; /* 0 until the first error */
} parser_t;

/* Records the first error with a 1-based line and column (in characters) of at. */
static void fail_at(parser_t *ps, const char *at, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail_at(parser_t *ps, const char *at, int rc, const char *fmt, ...)
{
    if (ps->rc)
        return;
    ps->rc = rc;
    if (!ps->err || !ps->errsz)
        return;
    size_t line = 1, col = 1;
    for (const char *q = ps->start; q < at; q++) {
        if (*q == '\n')
            line++, col = 1;
        else if (((unsigned char)*q & 0xC0) != 0x80)
            col++;
    }
    int n = snprintf(ps->err, ps->errsz, "line %zu column %zu: ", line, col);
    if (n < 0 || (size_t)n >= ps->errsz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err + n, ps->errsz - (size_t)n, fmt, ap);
    va_end(ap);
}

#define FAIL(ps, at, ...) fail_at((ps), (at), BASE_E_JSON, __VA_ARGS__)
#define OOM(ps) fail_at((ps), (ps)->p, BASE_E_NOMEM, "out of memory")

static void skip_ws(parser_t *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

/* Describes the byte at p for error messages. */
static void fail_unexpected(parser_t *ps, const char *what)
{
    if (ps->p >= ps->end) {
        FAIL(ps, ps->p, "unexpected end of input, expected %s", what);
        return;
    }
    unsigned char c = (unsigned char)*ps->p;
    if (c >= 0x20 && c < 0x7F)
        FAIL(ps, ps->p, "unexpected character '%c', expected %s", c, what);
    else
        FAIL(ps, ps->p, "unexpected byte 0x%02X, expected %s", c, what);
}

static bool match_word(parser_t *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return false;
    ps->p += n;
    return true;
}

static json_t *parse_value(parser_t *ps, int depth);

static int hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Parses a string at ps->p (on the opening quote) into a malloc'ed buffer. Escapes never
 * produce more bytes than they take, so the raw span length bounds the output. */
static char *parse_string(parser_t *ps, size_t *out_len)
{
    const char *open = ps->p++;
    const char *q = ps->p;
    while (q < ps->end && *q != '"') {
        if (*q == '\\' && q + 1 < ps->end)
            q++;
        q++;
    }
    if (q >= ps->end) {
        FAIL(ps, open, "unterminated string");
        return NULL;
    }
    char *out = malloc((size_t)(q - ps->p) + 1);
    if (!out) {
        OOM(ps);
        return NULL;
    }
    size_t n = 0;
    const char *s = ps->p;
    while (s < q) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\') {
            const char *esc = s++;
            switch (*s) {
            case '"': out[n++] = '"'; s++; continue;
            case '\\': out[n++] = '\\'; s++; continue;
            case '/': out[n++] = '/'; s++; continue;
            case 'b': out[n++] = '\b'; s++; continue;
            case 'f': out[n++] = '\f'; s++; continue;
            case 'n': out[n++] = '\n'; s++; continue;
            case 'r': out[n++] = '\r'; s++; continue;
            case 't': out[n++] = '\t'; s++; continue;
            case 'u': break;
            default:
                FAIL(ps, esc, "invalid escape in string");
                goto fail;
            }
            uint32_t cp;
            if (q - s < 5 || hex4(s + 1, &cp) != 0) {
                FAIL(ps, esc, "invalid \\u escape (needs 4 hex digits)");
                goto fail;
            }
            s += 5;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                FAIL(ps, esc, "lone low surrogate \\u%04X in string", (unsigned)cp);
                goto fail;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (q - s < 6 || s[0] != '\\' || s[1] != 'u' || hex4(s + 2, &lo) != 0 || lo < 0xDC00 ||
                    lo > 0xDFFF) {
                    FAIL(ps, esc, "lone high surrogate \\u%04X in string", (unsigned)cp);
                    goto fail;
                }
                s += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            n += json__utf8_encode(cp, out + n);
        } else if (c < 0x20) {
            FAIL(ps, s, "unescaped control character 0x%02X in string", c);
            goto fail;
        } else if (c < 0x80) {
            out[n++] = (char)c;
            s++;
        } else {
            uint32_t cp;
            size_t k = json__utf8_decode((const unsigned char *)s, (size_t)(q - s), &cp);
            if (!k) {
                FAIL(ps, s, "invalid UTF-8 byte 0x%02X in string", c);
                goto fail;
            }
            memcpy(out + n, s, k);
            n += k;
            s += k;
        }
    }
    out[n] = '\0';
    ps->p = q + 1;
    *out_len = n;
    return out;
fail:
    free(out);
    return NULL;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static json_t *parse_number(parser_t *ps)
{
    const char *begin = ps->p, *s = ps->p;
    bool neg = false;
    if (s < ps->end && *s == '-')
        neg = true, s++;
    if (s >= ps->end || !is_digit(*s)) {
        FAIL(ps, begin, "invalid number");
        return NULL;
    }
    uint64_t mag = 0;
    bool fits = true;
    if (*s == '0') {
        s++;
        if (s < ps->end && is_digit(*s)) {
            FAIL(ps, begin, "leading zero in number");
            return NULL;
        }
    } else {
        while (s < ps->end && is_digit(*s)) {
            unsigned d = (unsigned)(*s - '0');
            if (mag > (UINT64_MAX - d) / 10)
                fits = false;
            else if (fits)
                mag = mag * 10 + d;
            s++;
        }
    }
    bool integral = true;
    if (s < ps->end && *s == '.') {
        integral = false;
        s++;
        if (s >= ps->end || !is_digit(*s)) {
            FAIL(ps, s, "expected digit after decimal point");
            return NULL;
        }
        while (s < ps->end && is_digit(*s))
            s++;
    }
    if (s < ps->end && (*s == 'e' || *s == 'E')) {
        integral = false;
        s++;
        if (s < ps->end && (*s == '+' || *s == '-'))
            s++;
        if (s >= ps->end || !is_digit(*s)) {
            FAIL(ps, s, "expected digit in exponent");
            return NULL;
        }
        while (s < ps->end && is_digit(*s))
            s++;
    }
    ps->p = s;
    if (integral && fits) {
        base_int_t v = {mag, neg && mag};
        json_t *j = json_new_bint(v);
        if (!j)
            OOM(ps);
        return j;
    }
    /* strtod needs a terminated copy: the input need not be NUL-terminated. */
    size_t n = (size_t)(s - begin);
    char small[64];
    char *copy = n < sizeof small ? small : malloc(n + 1);
    if (!copy) {
        OOM(ps);
        return NULL;
    }
    memcpy(copy, begin, n);
    copy[n] = '\0';
    double d = strtod(copy, NULL); /* ERANGE is fine: Python also gives inf / 0.0 */
    if (copy != small)
        free(copy);
    json_t *j = json_new_real(d);
    if (!j)
        OOM(ps);
    return j;
}

static json_t *parse_array(parser_t *ps, int depth)
{
    json_t *arr = json_new_array();
    if (!arr) {
        OOM(ps);
        return NULL;
    }
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return arr;
    }
    for (;;) {
        json_t *item = parse_value(ps, depth);
        if (!item)
            goto fail;
        if (json__list_grow(arr)) {
            json_free(item);
            OOM(ps);
            goto fail;
        }
        arr->u.list.items[arr->u.list.n++] = item;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ']') {
                FAIL(ps, ps->p, "trailing comma in array");
                goto fail;
            }
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return arr;
        }
        fail_unexpected(ps, "',' or ']' in array");
        goto fail;
    }
fail:
    json_free(arr);
    return NULL;
}

/* Index of key among obj's keys, or -1. Uses the hash set once it exists. */
static ptrdiff_t find_dup(const json_t *obj, const base_map_t *seen, const char *key)
{
    if (seen->cap) {
        void *v;
        return base_map_get(seen, key, &v) ? (ptrdiff_t)((uintptr_t)v - 1) : -1;
    }
    for (size_t i = 0; i < obj->u.list.n; i++)
        if (strcmp(obj->u.list.keys[i], key) == 0)
            return (ptrdiff_t)i;
    return -1;
}

static int remember_key(json_t *obj, base_map_t *seen, size_t idx)
{
    /* Values are index + 1 so that index 0 is not a NULL pointer. */
    if (seen->cap)
        return base_map_put(seen, obj->u.list.keys[idx], (void *)(uintptr_t)(idx + 1));
    if (obj->u.list.n <= DUP_SCAN_MAX)
        return 0;
    for (size_t i = 0; i < obj->u.list.n; i++) {
        int rc = base_map_put(seen, obj->u.list.keys[i], (void *)(uintptr_t)(i + 1));
        if (rc)
            return rc;
    }
    return 0;
}

static json_t *parse_object(parser_t *ps, int depth)
{
    base_map_t seen = BASE_MAP_INIT;
    json_t *obj = json_new_object();
    if (!obj) {
        OOM(ps);
        return NULL;
    }
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return obj;
    }
    for (;;) {
        if (ps->p >= ps->end || *ps->p != '"') {
            fail_unexpected(ps, "a string key in object");
            goto fail;
        }
        const char *key_at = ps->p;
        size_t key_len;
        char *key = parse_string(ps, &key_len);
        if (!key)
            goto fail;
        if (strlen(key) != key_len) {
            /* Keys are C strings everywhere in weft; refusing beats silently truncating. */
            FAIL(ps, key_at, "object key contains \\u0000");
            free(key);
            goto fail;
        }
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            free(key);
            fail_unexpected(ps, "':' after object key");
            goto fail;
        }
        ps->p++;
        json_t *item = parse_value(ps, depth);
        if (!item) {
            free(key);
            goto fail;
        }
        ptrdiff_t dup = find_dup(obj, &seen, key);
        if (dup >= 0) {
            /* Last value wins at the first key's position, like a Python dict. */
            free(key);
            json_free(obj->u.list.items[dup]);
            obj->u.list.items[dup] = item;
        } else {
            if (json__list_grow(obj)) {
                free(key);
                json_free(item);
                OOM(ps);
                goto fail;
            }
            size_t idx = obj->u.list.n++;
            obj->u.list.keys[idx] = key;
            obj->u.list.items[idx] = item;
            if (remember_key(obj, &seen, idx)) {
                OOM(ps);
                goto fail;
            }
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == '}') {
                FAIL(ps, ps->p, "trailing comma in object");
                goto fail;
            }
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            base_map_free(&seen);
            return obj;
        }
        fail_unexpected(ps, "',' or '}' in object");
        goto fail;
    }
fail:
    base_map_free(&seen);
    json_free(obj);
    return NULL;
}

static json_t *parse_value(parser_t *ps, int depth)
{
    skip_ws(ps);
    if (ps->p >= ps->end) {
        fail_unexpected(ps, "a value");
        return NULL;
    }
    json_t *j = NULL;
    const char *at = ps->p;
    switch (*ps->p) {
    case '{':
    case '[':
        if (depth >= JSON_MAX_DEPTH) {
            FAIL(ps, at, "nesting deeper than %d levels", JSON_MAX_DEPTH);
            return NULL;
        }
        return *ps->p == '{' ? parse_object(ps, depth + 1) : parse_array(ps, depth + 1);
    case '"': {
        size_t len;
        char *s = parse_string(ps, &len);
        if (!s)
            return NULL;
        j = calloc(1, sizeof *j);
        if (!j) {
            free(s);
            OOM(ps);
            return NULL;
        }
        j->type = JSON_STRING;
        j->u.str.s = s;
        j->u.str.len = len;
        return j;
    }
    case 't':
        if (match_word(ps, "true"))
            j = json_new_bool(true);
        break;
    case 'f':
        if (match_word(ps, "false"))
            j = json_new_bool(false);
        break;
    case 'n':
        if (match_word(ps, "null"))
            j = json_new_null();
        break;
    case 'N':
        if (match_word(ps, "NaN"))
            j = json_new_real(NAN);
        break;
    case 'I':
        if (match_word(ps, "Infinity"))
            j = json_new_real(INFINITY);
        break;
    case '-':
        if (match_word(ps, "-Infinity")) {
            j = json_new_real(-INFINITY);
            break;
        }
        return parse_number(ps);
    default:
        if (is_digit(*ps->p))
            return parse_number(ps);
        fail_unexpected(ps, "a value");
        return NULL;
    }
    if (ps->p == at) {
        fail_unexpected(ps, "a value");
        return NULL;
    }
    if (!j)
        OOM(ps);
    return j;
}

int json_parse(const char *text, size_t len, json_t **out, char *err, size_t errsz)
{
    parser_t ps = {text, text, text + len, err, errsz, 0};
    if (err && errsz)
        err[0] = '\0';
    if (!text) {
        ps.start = ps.p = ps.end = "";
    }
    json_t *j = parse_value(&ps, 0);
    if (j) {
        skip_ws(&ps);
        if (ps.p < ps.end) {
            FAIL(&ps, ps.p, "unexpected data after the JSON value");
            json_free(j);
            j = NULL;
        }
    }
    if (!j)
        return ps.rc ? ps.rc : BASE_E_JSON;
    *out = j;
    return 0;
}
