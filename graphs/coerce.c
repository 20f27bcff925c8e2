/* Constant coercion with Python's int()/float()/str()/bool() semantics, because ComfyUI
 * stores the coerced value in the prompt (and history) and reports Python's exception
 * text when a conversion fails. Integers stay exact over the whole seed range. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "graphs-internal.h"

static bool py_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == '\x1c' ||
           c == '\x1d' || c == '\x1e' || c == '\x1f';
}

/* Trims Python whitespace; returns the inner span. */
static void strip(const char *s, size_t len, const char **b, const char **e)
{
    const char *p = s, *q = s + len;
    while (p < q && py_space(*p))
        p++;
    while (q > p && py_space(q[-1]))
        q--;
    *b = p;
    *e = q;
}

/* int(str) in base 10: sign, digits, single underscores between digits. 0 = ok,
 * 1 = syntax error, 2 = beyond the 64-bit magnitude weft keeps exactly. */
static int parse_py_int(const char *s, size_t len, base_int_t *out)
{
    const char *p, *e;
    strip(s, len, &p, &e);
    bool neg = false;
    if (p < e && (*p == '+' || *p == '-'))
        neg = *p++ == '-';
    if (p == e || !isdigit((unsigned char)*p))
        return 1;
    uint64_t mag = 0;
    bool overflow = false;
    for (; p < e; p++) {
        if (*p == '_') {
            if (p + 1 >= e || !isdigit((unsigned char)p[1]))
                return 1;
            continue;
        }
        if (!isdigit((unsigned char)*p))
            return 1;
        unsigned d = (unsigned)(*p - '0');
        if (mag > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            mag = mag * 10 + d;
    }
    if (overflow)
        return 2;
    out->mag = mag;
    out->neg = neg && mag != 0;
    return 0;
}

static bool ieq(const char *p, const char *e, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(e - p) == n && strncasecmp(p, word, n) == 0;
}

/* float(str): decimal literals with optional exponent and underscores between digits,
 * "inf"/"infinity"/"nan" in any case. Hex and C's "nan(...)" forms are refused.
 * 0 = ok, 1 = syntax error, BASE_E_NOMEM. */
static int parse_py_float(const char *s, size_t len, double *out)
{
    const char *p, *e;
    strip(s, len, &p, &e);
    const char *body = p;
    if (body < e && (*body == '+' || *body == '-'))
        body++;
    if (ieq(body, e, "inf") || ieq(body, e, "infinity") || ieq(body, e, "nan")) {
        double v = tolower((unsigned char)*body) == 'n' ? NAN : INFINITY;
        *out = *p == '-' ? -v : v;
        return 0;
    }
    /* Validate the grammar while copying without underscores for strtod. */
    size_t n = (size_t)(e - p);
    char *tmp = malloc(n + 1);
    if (!tmp)
        return BASE_E_NOMEM;
    size_t k = 0;
    const char *q = p;
    if (q < e && (*q == '+' || *q == '-'))
        tmp[k++] = *q++;
    int mant_digits = 0;
    bool ok = true;
    for (int part = 0; part < 2 && ok; part++) { /* integer part, then fraction */
        if (part == 1) {
            if (q < e && *q == '.')
                tmp[k++] = *q++;
            else
                break;
        }
        bool prev_digit = false;
        while (q < e && (isdigit((unsigned char)*q) || *q == '_')) {
            if (*q == '_') {
                if (!prev_digit || q + 1 >= e || !isdigit((unsigned char)q[1])) {
                    ok = false;
                    break;
                }
                q++;
                continue;
            }
            tmp[k++] = *q++;
            prev_digit = true;
            mant_digits++;
        }
    }
    if (ok && mant_digits == 0)
        ok = false;
    if (ok && q < e && (*q == 'e' || *q == 'E')) {
        tmp[k++] = *q++;
        if (q < e && (*q == '+' || *q == '-'))
            tmp[k++] = *q++;
        int exp_digits = 0;
        bool prev_digit = false;
        while (ok && q < e && (isdigit((unsigned char)*q) || *q == '_')) {
            if (*q == '_') {
                if (!prev_digit || q + 1 >= e || !isdigit((unsigned char)q[1]))
                    ok = false;
                q++;
                continue;
            }
            tmp[k++] = *q++;
            prev_digit = true;
            exp_digits++;
        }
        if (!exp_digits)
            ok = false;
    }
    if (ok && q != e)
        ok = false;
    tmp[k] = '\0';
    if (ok)
        *out = strtod(tmp, NULL); /* overflow gives +-inf like Python */
    free(tmp);
    return ok ? 0 : 1;
}

static int fail(char *msg, size_t msgsz, const char **exc_type, const char *type, const char *fmt,
                const char *arg)
{
    snprintf(msg, msgsz, fmt, arg);
    *exc_type = type;
    return 1;
}

/* "... with base 10: 'text'" needs repr(text); OOM degrades to a shorter message. */
static int fail_literal(char *msg, size_t msgsz, const char **exc_type, const char *prefix, const json_t *v)
{
    base_buf_t b = BASE_BUF_INIT;
    if (base_buf_puts(&b, prefix) || graph__py_repr_str(&b, v->u.str.s, v->u.str.len)) {
        base_buf_free(&b);
        return BASE_E_NOMEM;
    }
    snprintf(msg, msgsz, "%s", b.data);
    base_buf_free(&b);
    *exc_type = "ValueError";
    return 1;
}

static int to_int(const json_t *v, json_t **out, char *msg, size_t msgsz, const char **exc_type)
{
    base_int_t r;
    switch (v->type) {
    case JSON_BOOL:
        *out = json_new_int(v->u.b ? 1 : 0);
        return *out ? 0 : BASE_E_NOMEM;
    case JSON_NUMBER: {
        if (v->u.num.is_int) {
            r = v->u.num.i;
            break;
        }
        double d = v->u.num.d;
        if (isnan(d))
            return fail(msg, msgsz, exc_type, "ValueError", "%s", "cannot convert float NaN to integer");
        if (isinf(d))
            return fail(msg, msgsz, exc_type, "OverflowError", "%s",
                        "cannot convert float infinity to integer");
        d = trunc(d);
        if (fabs(d) >= 18446744073709551616.0)
            return fail(msg, msgsz, exc_type, "OverflowError", "%s",
                        "integer out of range (weft keeps integers within +-18446744073709551615)");
        r.mag = (uint64_t)fabs(d);
        r.neg = d < 0 && r.mag != 0;
        break;
    }
    case JSON_STRING: {
        int prc = parse_py_int(v->u.str.s, v->u.str.len, &r);
        if (prc == 1)
            return fail_literal(msg, msgsz, exc_type, "invalid literal for int() with base 10: ", v);
        if (prc == 2)
            return fail(msg, msgsz, exc_type, "OverflowError", "%s",
                        "integer out of range (weft keeps integers within +-18446744073709551615)");
        break;
    }
    default:
        return fail(msg, msgsz, exc_type, "TypeError",
                    "int() argument must be a string, a bytes-like object or a real number, not '%s'",
                    graph__py_type(v));
    }
    *out = json_new_bint(r);
    return *out ? 0 : BASE_E_NOMEM;
}

static int to_float(const json_t *v, json_t **out, char *msg, size_t msgsz, const char **exc_type)
{
    double d;
    switch (v->type) {
    case JSON_BOOL:
        d = v->u.b ? 1.0 : 0.0;
        break;
    case JSON_NUMBER:
        d = v->u.num.is_int ? base_int_to_double(v->u.num.i) : v->u.num.d;
        break;
    case JSON_STRING: {
        int prc = parse_py_float(v->u.str.s, v->u.str.len, &d);
        if (prc < 0)
            return prc;
        if (prc)
            return fail_literal(msg, msgsz, exc_type, "could not convert string to float: ", v);
        break;
    }
    default:
        return fail(msg, msgsz, exc_type, "TypeError",
                    "float() argument must be a string or a real number, not '%s'", graph__py_type(v));
    }
    *out = json_new_real(d);
    return *out ? 0 : BASE_E_NOMEM;
}

static bool truthy(const json_t *v)
{
    switch (v->type) {
    case JSON_NULL:
        return false;
    case JSON_BOOL:
        return v->u.b;
    case JSON_NUMBER:
        if (v->u.num.is_int)
            return v->u.num.i.mag != 0;
        return v->u.num.d != 0; /* NaN is truthy in Python too */
    case JSON_STRING:
        return v->u.str.len != 0;
    case JSON_ARRAY:
    case JSON_OBJECT:
        return v->u.list.n != 0;
    }
    return false;
}

int graph__coerce(const char *type, const json_t *v, json_t **out, char *msg, size_t msgsz,
                  const char **exc_type)
{
    *out = NULL;
    if (!type || !v)
        return 0;
    if (!strcmp(type, "INT"))
        return to_int(v, out, msg, msgsz, exc_type);
    if (!strcmp(type, "FLOAT"))
        return to_float(v, out, msg, msgsz, exc_type);
    if (!strcmp(type, "BOOLEAN")) {
        *out = json_new_bool(truthy(v));
        return *out ? 0 : BASE_E_NOMEM;
    }
    if (!strcmp(type, "STRING")) {
        if (v->type == JSON_STRING) {
            *out = json_clone(v);
            return *out ? 0 : BASE_E_NOMEM;
        }
        base_buf_t b = BASE_BUF_INIT;
        if (graph__py_str(&b, v) || base_buf_reserve(&b, 1)) {
            base_buf_free(&b);
            return BASE_E_NOMEM;
        }
        *out = json_new_stringn(b.data ? b.data : "", b.len);
        base_buf_free(&b);
        return *out ? 0 : BASE_E_NOMEM;
    }
    return 0;
}
