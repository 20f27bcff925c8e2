/* Python-style rendering of values for validation messages. ComfyUI builds its messages
 * with f-strings, so "Value 0.5 smaller than min of 1.0" and "'x' not in ['a', 'b']" are
 * what clients (and their tests) expect to read. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphs-internal.h"

/* Deeper values are cut short: Python itself gives up on deep nesting (RecursionError). */
#define PY_MAX_DEPTH 256

int graph__py_float(base_buf_t *b, double d)
{
    if (isnan(d))
        return base_buf_puts(b, "nan");
    if (isinf(d))
        return base_buf_puts(b, d < 0 ? "-inf" : "inf");
    if (d == 0)
        return base_buf_puts(b, signbit(d) ? "-0.0" : "0.0");

    /* Shortest %e form that reads back as the same double. */
    char e[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, d);
        if (strtod(e, NULL) == d)
            break;
    }
    /* e = [-]D[.DDD]e[+-]XX: split into sign, digit string and decimal exponent. */
    const char *p = e;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < sizeof digits - 1)
            digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;

    int rc = neg ? base_buf_putc(b, '-') : 0;
    if (rc)
        return rc;
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            rc = base_buf_puts(b, "0.");
            for (int i = 0; !rc && i < -exp10 - 1; i++)
                rc = base_buf_putc(b, '0');
            return rc ? rc : base_buf_puts(b, digits);
        }
        size_t ip = (size_t)exp10 + 1; /* digits before the point */
        for (size_t i = 0; !rc && i < ip; i++)
            rc = base_buf_putc(b, i < nd ? digits[i] : '0');
        if (!rc)
            rc = base_buf_putc(b, '.');
        if (!rc)
            rc = nd > ip ? base_buf_puts(b, digits + ip) : base_buf_putc(b, '0');
        return rc;
    }
    rc = base_buf_putc(b, digits[0]);
    if (!rc && nd > 1)
        rc = base_buf_printf(b, ".%s", digits + 1);
    if (!rc)
        rc = base_buf_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    return rc;
}

/* Decodes one UTF-8 sequence at s (already validated by the JSON parser, but stay safe);
 * returns its length and stores the code point, or 0 for an invalid byte. */
static size_t utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t n = (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (!n || n > avail)
        return 0;
    uint32_t c = s[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    *cp = c;
    return n;
}

int graph__py_repr_str(base_buf_t *b, const char *s, size_t len)
{
    bool has_sq = memchr(s, '\'', len) != NULL, has_dq = memchr(s, '"', len) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    int rc = base_buf_putc(b, q);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; !rc && i < len;) {
        uint32_t cp;
        size_t n = utf8_decode(u + i, len - i, &cp);
        if (!n) { /* not UTF-8: show the byte like a bytes escape */
            rc = base_buf_printf(b, "\\x%02x", u[i]);
            i++;
            continue;
        }
        if (cp == '\\')
            rc = base_buf_puts(b, "\\\\");
        else if (cp == (uint32_t)q)
            rc = base_buf_printf(b, "\\%c", q);
        else if (cp == '\n')
            rc = base_buf_puts(b, "\\n");
        else if (cp == '\r')
            rc = base_buf_puts(b, "\\r");
        else if (cp == '\t')
            rc = base_buf_puts(b, "\\t");
        else if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD)
            rc = base_buf_printf(b, "\\x%02x", (unsigned)cp);
        else if (cp == 0x2028 || cp == 0x2029 || (cp >= 0xD800 && cp <= 0xDFFF))
            rc = base_buf_printf(b, "\\u%04x", (unsigned)cp);
        else
            rc = base_buf_append(b, s + i, n);
        i += n;
    }
    return rc ? rc : base_buf_putc(b, q);
}

static int put_int(base_buf_t *b, base_int_t v)
{
    return base_buf_printf(b, "%s%" PRIu64, v.neg && v.mag ? "-" : "", v.mag);
}

/* Iterative over containers would need a stack of cursors; the depth is capped instead so
 * a hostile document cannot exhaust the C stack. */
static int repr_at(base_buf_t *b, const json_t *j, int depth)
{
    if (!j)
        return base_buf_puts(b, "None");
    switch (j->type) {
    case JSON_NULL:
        return base_buf_puts(b, "None");
    case JSON_BOOL:
        return base_buf_puts(b, j->u.b ? "True" : "False");
    case JSON_NUMBER:
        return j->u.num.is_int ? put_int(b, j->u.num.i) : graph__py_float(b, j->u.num.d);
    case JSON_STRING:
        return graph__py_repr_str(b, j->u.str.s, j->u.str.len);
    case JSON_ARRAY:
    case JSON_OBJECT: {
        bool obj = j->type == JSON_OBJECT;
        if (depth >= PY_MAX_DEPTH)
            return base_buf_puts(b, obj ? "{...}" : "[...]");
        int rc = base_buf_putc(b, obj ? '{' : '[');
        for (size_t i = 0; !rc && i < j->u.list.n; i++) {
            if (i)
                rc = base_buf_puts(b, ", ");
            if (!rc && obj) {
                const char *k = j->u.list.keys[i];
                rc = graph__py_repr_str(b, k, strlen(k));
                if (!rc)
                    rc = base_buf_puts(b, ": ");
            }
            if (!rc)
                rc = repr_at(b, j->u.list.items[i], depth + 1);
        }
        return rc ? rc : base_buf_putc(b, obj ? '}' : ']');
    }
    }
    return 0;
}

int graph__py_repr(base_buf_t *b, const json_t *j)
{
    return repr_at(b, j, 0);
}

int graph__py_str(base_buf_t *b, const json_t *j)
{
    if (j && j->type == JSON_STRING)
        return base_buf_append(b, j->u.str.s, j->u.str.len);
    return repr_at(b, j, 0);
}

const char *graph__py_type(const json_t *j)
{
    if (!j)
        return "NoneType";
    switch (j->type) {
    case JSON_NULL:
        return "NoneType";
    case JSON_BOOL:
        return "bool";
    case JSON_NUMBER:
        return j->u.num.is_int ? "int" : "float";
    case JSON_STRING:
        return "str";
    case JSON_ARRAY:
        return "list";
    case JSON_OBJECT:
        return "dict";
    }
    return "object";
}
