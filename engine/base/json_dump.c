/* JSON emitters: compact, Python json.dumps default, and indented. */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "json-internal.h"
#include "json.h"

/* Splits printf's "D.DDDDe[+-]XX" (no sign) into a digit string and its exponent. */
static void split_e(const char *t, char *digits, int *nd, int *exp10)
{
    *nd = 0;
    for (; *t && *t != 'e'; t++)
        if (*t != '.')
            digits[(*nd)++] = *t;
    digits[*nd] = '\0';
    *exp10 = atoi(t + 1);
}

/* At an exact power of two the doubles below are twice as dense as those above, so the
 * correctly rounded 16-digit text can miss while its neighbour reads back; Python's
 * shortest repr finds that neighbour. a > 0; digits holds 16 digits and gets the
 * replacement (17 digits after a carry, hence the exponent fix-up). */
static bool neighbour_16(double a, char *digits, int *nd, int *exp10)
{
    uint64_t m = strtoull(digits, NULL, 10);
    for (int up = 1; up >= 0; up--) {
        uint64_t mm = up ? m + 1 : m - 1;
        char cand[40];
        snprintf(cand, sizeof cand, "%" PRIu64 "e%d", mm, *exp10 - 15);
        if (strtod(cand, NULL) != a)
            continue;
        *nd = snprintf(digits, 24, "%" PRIu64, mm);
        *exp10 += *nd - 16;
        return true;
    }
    return false;
}

/* Shortest significant digits of a (finite, >= 0) that read back as a. For normal doubles,
 * when 15 digits read back, any shorter exact text is those with trailing zeros dropped
 * (15-digit steps are wider than the double's spacing); subnormals carry fewer bits, so
 * they search from 1 digit. */
static void shortest_digits(double a, char *digits, int *nd, int *exp10)
{
    char tmp[40];
    for (int prec = a < DBL_MIN ? 1 : 15; prec <= 16; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, a);
        split_e(tmp, digits, nd, exp10);
        if (strtod(tmp, NULL) == a)
            return;
    }
    if (neighbour_16(a, digits, nd, exp10))
        return;
    snprintf(tmp, sizeof tmp, "%.16e", a);
    split_e(tmp, digits, nd, exp10);
}

/* Formats d the way Python's repr(float) does: the shortest digits that read back as
 * the same double, fixed notation for decimal exponents in (-4, 16], else d[.ddd]e+XX.
 * out needs 32 bytes. */
static void format_double(double d, char *out)
{
    if (isnan(d)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(d)) {
        strcpy(out, d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    char *o = out;
    if (signbit(d))
        *o++ = '-';
    char digits[24];
    int nd, exp10;
    shortest_digits(fabs(d), digits, &nd, &exp10);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int decpt = exp10 + 1; /* value = 0.DIGITS * 10^decpt */
    if (decpt <= -4 || decpt > 16) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        int e = decpt - 1;
        sprintf(o, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
        return;
    }
    if (decpt <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -decpt; i++)
            *o++ = '0';
        memcpy(o, digits, (size_t)nd);
        o += nd;
    } else if (decpt >= nd) {
        memcpy(o, digits, (size_t)nd);
        o += nd;
        for (int i = nd; i < decpt; i++)
            *o++ = '0';
        *o++ = '.';
        *o++ = '0';
    } else {
        memcpy(o, digits, (size_t)decpt);
        o += decpt;
        *o++ = '.';
        memcpy(o, digits + decpt, (size_t)(nd - decpt));
        o += nd - decpt;
    }
    *o = '\0';
}

static int put_u_escape(base_buf_t *b, uint32_t unit)
{
    return base_buf_printf(b, "\\u%04" PRIx32, unit);
}

/* Writes a quoted string. ascii: escape everything outside printable ASCII like Python's
 * ensure_ascii. Invalid UTF-8 (possible only via json_new_stringn) becomes U+FFFD so the
 * output is always valid JSON. */
static int put_string(base_buf_t *b, const char *str, size_t len, bool ascii)
{
    const unsigned char *s = (const unsigned char *)str;
    int rc = base_buf_reserve(b, len + 2);
    if (rc)
        return rc;
    base_buf_putc(b, '"');
    size_t run = 0; /* bytes at s[i - run .. i) still to copy verbatim */
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && (c < 0x7F || (c == 0x7F && !ascii))) {
            i++, run++;
            continue;
        }
        if (c >= 0x80) {
            uint32_t cp;
            size_t k = json__utf8_decode(s + i, len - i, &cp);
            if (k && !ascii) {
                i += k, run += k;
                continue;
            }
            if ((rc = base_buf_append(b, s + i - run, run)))
                return rc;
            run = 0;
            if (!k) {
                cp = 0xFFFD;
                k = 1;
            }
            if (!ascii) {
                rc = base_buf_puts(b, "\xEF\xBF\xBD");
            } else if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;
                rc = put_u_escape(b, 0xD800 | (v >> 10));
                if (!rc)
                    rc = put_u_escape(b, 0xDC00 | (v & 0x3FF));
            } else {
                rc = put_u_escape(b, cp);
            }
            if (rc)
                return rc;
            i += k;
            continue;
        }
        if ((rc = base_buf_append(b, s + i - run, run)))
            return rc;
        run = 0;
        switch (c) {
        case '"': rc = base_buf_puts(b, "\\\""); break;
        case '\\': rc = base_buf_puts(b, "\\\\"); break;
        case '\n': rc = base_buf_puts(b, "\\n"); break;
        case '\r': rc = base_buf_puts(b, "\\r"); break;
        case '\t': rc = base_buf_puts(b, "\\t"); break;
        case '\b': rc = base_buf_puts(b, "\\b"); break;
        case '\f': rc = base_buf_puts(b, "\\f"); break;
        default: rc = put_u_escape(b, c); break;
        }
        if (rc)
            return rc;
        i++;
    }
    if ((rc = base_buf_append(b, s + len - run, run)))
        return rc;
    return base_buf_putc(b, '"');
}

static int put_newline_indent(base_buf_t *b, int level)
{
    int rc = base_buf_reserve(b, 1 + 2 * (size_t)level);
    if (rc)
        return rc;
    base_buf_putc(b, '\n');
    for (int i = 0; i < level; i++)
        base_buf_append(b, "  ", 2);
    return 0;
}

static int put_value(base_buf_t *b, const json_t *j, json_style_t style, int level)
{
    char num[40];
    switch (j->type) {
    case JSON_NULL:
        return base_buf_puts(b, "null");
    case JSON_BOOL:
        return base_buf_puts(b, j->u.b ? "true" : "false");
    case JSON_NUMBER:
        if (j->u.num.is_int)
            snprintf(num, sizeof num, "%s%" PRIu64, j->u.num.i.neg && j->u.num.i.mag ? "-" : "",
                     j->u.num.i.mag);
        else
            format_double(j->u.num.d, num);
        return base_buf_puts(b, num);
    case JSON_STRING:
        return put_string(b, j->u.str.s, j->u.str.len, style == JSON_PYTHON);
    case JSON_ARRAY:
    case JSON_OBJECT:
        break;
    }
    bool obj = j->type == JSON_OBJECT;
    int rc = base_buf_putc(b, obj ? '{' : '[');
    if (rc)
        return rc;
    for (size_t i = 0; i < j->u.list.n; i++) {
        if (i > 0 && (rc = base_buf_puts(b, style == JSON_PYTHON ? ", " : ",")))
            return rc;
        if (style == JSON_PRETTY && (rc = put_newline_indent(b, level + 1)))
            return rc;
        if (obj) {
            const char *k = j->u.list.keys[i];
            if ((rc = put_string(b, k, strlen(k), style == JSON_PYTHON)))
                return rc;
            if ((rc = base_buf_puts(b, style == JSON_COMPACT ? ":" : ": ")))
                return rc;
        }
        if ((rc = put_value(b, j->u.list.items[i], style, level + 1)))
            return rc;
    }
    if (style == JSON_PRETTY && j->u.list.n && (rc = put_newline_indent(b, level)))
        return rc;
    return base_buf_putc(b, obj ? '}' : ']');
}

char *json_dump(const json_t *j, json_style_t style)
{
    if (!j)
        return NULL;
    base_buf_t b = BASE_BUF_INIT;
    if (put_value(&b, j, style, 0)) {
        base_buf_free(&b);
        return NULL;
    }
    return base_buf_take(&b);
}
