/* ComfyUI's prompt weighting and 77-token chunking (sd15-reference §4.3; comfy/sd1_clip.py
 * token_weights / tokenize_with_weights), reproduced rule for rule:
 *
 * - "\(" and "\)" are literal parentheses: they are swapped for the two-byte markers
 *   NUL,1 / NUL,2 before parsing (the input, a C string, cannot hold a NUL) and back after.
 * - The text is cut into top-level "(...)" items and plain runs by a depth counter that
 *   ComfyUI lets go negative: a stray ")" makes the rest of the text (up to where the depth
 *   returns to zero) plain text, parentheses included; an unclosed "(" leaves "(..." as plain
 *   text. A group "(x)" gets weight * 1.1 (nesting compounds); "(x:w)" - the last ':' not at
 *   the start, followed by what Python's float() accepts - sets the weight to w instead.
 *   Groups are parsed again inside. Weights are computed in double, like Python, and
 *   stored as float.
 * - Every weighted segment is one token group; only " embedding:" / "\nembedding:" split a
 *   segment further. weft has no textual-inversion embeddings, so each "embedding:name" is
 *   handled as ComfyUI handles a missing one: the name is dropped with a warning and the
 *   words after it (plus any trailing commas of the name) form a group of their own.
 *   (Older ComfyUI versions split segments into space-separated words, each its own
 *   group; the current one, which this follows, does not.)
 * - Rows: BOS, then groups; a group that does not fit the row (76 tokens before EOS) is
 *   split across rows when it has >= 8 tokens, else the row is closed (EOS + padding) and
 *   the group starts the next one. The last row is closed the same way. Always >= 1 row.
 *
 * Nesting deeper than MAX_DEPTH is refused with BASE_E_RANGE (Python would hit its
 * recursion limit a little later; here it bounds the stack and the quadratic re-scan). */
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base.h"
#include "sd/sd.h"

#define MAX_DEPTH 256
#define LARGE_GROUP 8               /* ComfyUI max_word_length */
#define ROW_CONTENT (CLIPT_ROW - 1) /* tokens a row may hold before its EOS */

static const char EMBED[] = "embedding:";

/* ------------------------------------------------------------------ rows */

typedef struct {
    const clipt_t *tok;
    clipt_rows_t *out;
    size_t cap_rows;
    size_t len; /* tokens in the last row so far */
} rows_t;

static int row_new(rows_t *r)
{
    clipt_rows_t *o = r->out;
    if (o->rows == r->cap_rows) {
        size_t nc = r->cap_rows ? r->cap_rows * 2 : 2;
        int32_t *ids = realloc(o->ids, nc * CLIPT_ROW * sizeof *ids);
        if (ids)
            o->ids = ids;
        float *w = realloc(o->weights, nc * CLIPT_ROW * sizeof *w);
        if (w)
            o->weights = w;
        if (!ids || !w)
            return BASE_E_NOMEM;
        r->cap_rows = nc;
    }
    o->rows++;
    o->ids[(o->rows - 1) * CLIPT_ROW] = CLIPT_BOS;
    o->weights[(o->rows - 1) * CLIPT_ROW] = 1.0f;
    r->len = 1;
    return 0;
}

static void row_put(rows_t *r, int32_t id, float w)
{
    size_t at = (r->out->rows - 1) * CLIPT_ROW + r->len++;
    r->out->ids[at] = id;
    r->out->weights[at] = w;
}

/* EOS, then EOS padding to CLIPT_ROW. */
static void row_close(rows_t *r)
{
    while (r->len < CLIPT_ROW)
        row_put(r, CLIPT_EOS, 1.0f);
}

static int add_group(rows_t *r, const int32_t *ids, size_t n, float w)
{
    bool large = n >= LARGE_GROUP;
    while (n > 0) {
        if (r->len + n <= ROW_CONTENT) {
            for (size_t i = 0; i < n; i++)
                row_put(r, ids[i], w);
            return 0;
        }
        if (large) {
            size_t room = ROW_CONTENT - r->len;
            for (size_t i = 0; i < room; i++)
                row_put(r, ids[i], w);
            ids += room;
            n -= room;
        }
        row_close(r);
        int rc = row_new(r);
        if (rc)
            return rc;
    }
    return 0;
}

static int add_text(rows_t *r, const char *text, float w)
{
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = clipt_encode(r->tok, text, &ids, &n);
    if (!rc)
        rc = add_group(r, ids, n, w);
    free(ids);
    return rc;
}

/* ------------------------------------------------------------------ segments */

static bool py_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F);
}

/* An "embedding:..." word (s = after the prefix): drop the name as ComfyUI drops an
 * embedding it cannot find, and tokenise what follows it. */
static int add_embedding_word(rows_t *r, const char *s, size_t n, float w)
{
    size_t i = 0;
    while (i < n && py_space(s[i]))
        i++;
    if (i == n)
        return 0; /* ComfyUI raises IndexError on an empty name; nothing is sensible here */
    size_t name = i;
    while (i < n && !py_space(s[i]))
        i++;
    size_t name_len = i - name;
    /* ComfyUI retries without commas at both ends and then keeps name[len(stripped):]. */
    size_t a = name, b = name + name_len;
    while (a < b && s[a] == ',')
        a++;
    while (b > a && s[b - 1] == ',')
        b--;
    size_t stripped = b - a;
    BASE_LOG(WARN, "prompt: embedding:%.*s ignored (textual-inversion embeddings are not supported)",
             (int)name_len, s + name);

    base_buf_t left = BASE_BUF_INIT;
    int rc = 0;
    if (stripped < name_len) {
        rc = base_buf_append(&left, s + name + stripped, name_len - stripped);
        if (!rc)
            rc = base_buf_putc(&left, ' ');
    }
    bool first = true;
    while (!rc && i < n) {
        while (i < n && py_space(s[i]))
            i++;
        size_t k = i;
        while (i < n && !py_space(s[i]))
            i++;
        if (i > k) {
            if (!first)
                rc = base_buf_putc(&left, ' ');
            if (!rc)
                rc = base_buf_append(&left, s + k, i - k);
            first = false;
        }
    }
    if (!rc && left.len)
        rc = add_text(r, left.data, w);
    base_buf_free(&left);
    return rc;
}

/* One weighted segment (escaped bytes s[0..n)): unescape, split at embedding words, and
 * tokenise each part as a group. */
static int add_segment(rows_t *r, const char *s, size_t n, double weight)
{
    /* Out-of-range weights become infinities explicitly (the conversion would be UB). */
    float w = weight > FLT_MAX ? INFINITY : weight < -FLT_MAX ? -INFINITY : (float)weight;
    char *u = malloc(n + 1);
    if (!u)
        return BASE_E_NOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\0' && i + 1 < n && (s[i + 1] == 1 || s[i + 1] == 2)) {
            u[m++] = s[i + 1] == 1 ? ')' : '(';
            i++;
        } else {
            u[m++] = s[i];
        }
    }
    u[m] = '\0';
    int rc = 0;
    const size_t el = sizeof EMBED - 1;
    size_t start = 0;
    for (size_t i = 0; i <= m && !rc; i++) {
        bool cut = i < m && (u[i] == ' ' || u[i] == '\n') && strncmp(u + i + 1, EMBED, el) == 0;
        if (!cut && i < m)
            continue;
        if (i > start) {
            if (m - start >= el && strncmp(u + start, EMBED, el) == 0) {
                rc = add_embedding_word(r, u + start + el, i - start - el, w);
            } else {
                char save = u[i];
                u[i] = '\0';
                rc = add_text(r, u + start, w);
                u[i] = save;
            }
        }
        start = i + 1;
    }
    free(u);
    return rc;
}

/* Python's digitpart, digit (["_"] digit)*, from s[*i]: digits are copied to buf[*o].
 * Returns how many digits it copied. */
static size_t py_digits(const char *s, size_t n, size_t *i, char *buf, size_t *o)
{
    size_t cnt = 0;
    while (*i < n) {
        char c = s[*i];
        if (c >= '0' && c <= '9') {
            buf[(*o)++] = c;
            cnt++;
        } else if (!(c == '_' && cnt && *i + 1 < n && s[*i + 1] >= '0' && s[*i + 1] <= '9')) {
            break;
        }
        (*i)++;
    }
    return cnt;
}

/* Python's float() on s[0..n): surrounding whitespace, sign, digits with single underscores
 * between them, optional fraction and exponent, or inf/infinity/nan in any case. (Python
 * also takes non-ASCII decimal digits; this does not.) */
static bool py_float(const char *s, size_t n, double *out)
{
    while (n && py_space(*s))
        s++, n--;
    while (n && py_space(s[n - 1]))
        n--;
    if (!n)
        return false;
    size_t i = 0, o = 0;
    bool neg = false;
    if (s[0] == '+' || s[0] == '-')
        neg = s[i++] == '-';
    static const char *const named[] = {"inf", "infinity", "nan"};
    for (size_t k = 0; k < 3; k++) {
        if (n - i == strlen(named[k]) && strncasecmp(s + i, named[k], n - i) == 0) {
            *out = k == 2 ? NAN : (neg ? -INFINITY : INFINITY);
            return true;
        }
    }
    char *buf = malloc(n + 2);
    if (!buf)
        return false;
    if (neg)
        buf[o++] = '-';
    size_t digits = py_digits(s, n, &i, buf, &o);
    if (i < n && s[i] == '.') {
        buf[o++] = s[i++];
        digits += py_digits(s, n, &i, buf, &o);
    }
    bool ok = digits > 0;
    if (ok && i < n && (s[i] == 'e' || s[i] == 'E')) {
        buf[o++] = s[i++];
        if (i < n && (s[i] == '+' || s[i] == '-'))
            buf[o++] = s[i++];
        ok = py_digits(s, n, &i, buf, &o) > 0;
    }
    ok = ok && i == n;
    buf[o] = '\0';
    if (ok) {
        /* strtod_l with the C locale: the decimal point is '.' whatever setlocale did. */
        locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        *out = c ? strtod_l(buf, NULL, c) : strtod(buf, NULL);
        if (c)
            freelocale(c);
    }
    free(buf);
    return ok;
}

static int weighted(rows_t *r, const char *s, size_t n, double weight, int depth);

/* One item of the parenthesis split: a group is parsed again, anything else is a segment. */
static int item(rows_t *r, const char *s, size_t n, double weight, int depth)
{
    if (n < 2 || s[0] != '(' || s[n - 1] != ')')
        return add_segment(r, s, n, weight);
    s++;
    n -= 2;
    double w = weight * 1.1;
    size_t colon = n;
    for (size_t i = n; i-- > 0;)
        if (s[i] == ':') {
            colon = i;
            break;
        }
    double f;
    if (colon < n && colon > 0 && py_float(s + colon + 1, n - colon - 1, &f)) {
        w = f;
        n = colon;
    }
    return weighted(r, s, n, w, depth + 1);
}

/* ComfyUI parse_parentheses + token_weights: items are contiguous pieces of s. */
static int weighted(rows_t *r, const char *s, size_t n, double weight, int depth)
{
    if (depth > MAX_DEPTH)
        return BASE_E_RANGE;
    size_t start = 0;
    long long level = 0;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (s[i] == '(') {
            if (level == 0 && i > start) {
                rc = item(r, s + start, i - start, weight, depth);
                start = i;
            }
            level++;
        } else if (s[i] == ')') {
            if (--level == 0) {
                rc = item(r, s + start, i + 1 - start, weight, depth);
                start = i + 1;
            }
        }
    }
    if (!rc && start < n)
        rc = item(r, s + start, n - start, weight, depth);
    return rc;
}

int clipt_tokenize_weighted(const clipt_t *t, const char *prompt, clipt_rows_t *out)
{
    if (out)
        *out = (clipt_rows_t){0};
    if (!t || !prompt || !out)
        return BASE_E_INVAL;
    size_t len = strlen(prompt);
    char *esc = malloc(len + 1);
    if (!esc)
        return BASE_E_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (prompt[i] == '\\' && (prompt[i + 1] == ')' || prompt[i + 1] == '(')) {
            esc[n++] = '\0';
            esc[n++] = prompt[i + 1] == ')' ? 1 : 2;
            i++;
        } else {
            esc[n++] = prompt[i];
        }
    }
    rows_t r = {.tok = t, .out = out, .cap_rows = 0, .len = 0};
    int rc = row_new(&r);
    if (!rc)
        rc = weighted(&r, esc, n, 1.0, 0);
    free(esc);
    if (!rc)
        row_close(&r);
    if (rc)
        clipt_rows_free(out);
    return rc;
}

void clipt_rows_free(clipt_rows_t *r)
{
    if (!r)
        return;
    free(r->ids);
    free(r->weights);
    *r = (clipt_rows_t){0};
}
