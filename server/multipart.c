/* multipart/form-data (RFC 7578, framing from RFC 2046 section 5.1.1) over a body held in
 * memory. Strict on purpose: a request this parser refuses gets a 400 with the reason, so
 * every limit is checked before anything is allocated for it. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "multipart.h"

static int fail(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errsz, const char *fmt, ...)
{
    if (err && errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
    }
    return BASE_E_INVAL;
}

static bool is_ws(char c) { return c == ' ' || c == '\t'; }

/* RFC 2046 bchars (space allowed except last). */
static bool is_bchar(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("'()+_,-./:=? ", c) != NULL);
}

/* RFC 7230 tchar: header field names and parameter names. */
static bool is_tchar(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* ------------------------------------------------------------------ header parameters */

/* Cursor over a header value "type; a=b; c=\"d\"". */
typedef struct {
    const char *p, *end;
} cur_t;

static void skip_ws(cur_t *c)
{
    while (c->p < c->end && is_ws(*c->p))
        c->p++;
}

/* Reads a parameter value (token or quoted-string with backslash escapes) into a new
 * string. 0, BASE_E_INVAL (syntax) or BASE_E_NOMEM. */
static int read_value(cur_t *c, char **out)
{
    base_buf_t b = BASE_BUF_INIT;
    int rc = 0;
    if (c->p < c->end && *c->p == '"') {
        c->p++;
        for (;;) {
            if (c->p >= c->end) {
                rc = BASE_E_INVAL; /* unterminated quoted string */
                goto out;
            }
            char ch = *c->p++;
            if (ch == '"')
                break;
            if (ch == '\\') {
                if (c->p >= c->end) {
                    rc = BASE_E_INVAL;
                    goto out;
                }
                ch = *c->p++;
            }
            if (base_buf_putc(&b, ch)) {
                rc = BASE_E_NOMEM;
                goto out;
            }
        }
    } else {
        const char *s = c->p;
        while (c->p < c->end && *c->p != ';' && !is_ws(*c->p) && *c->p != '"')
            c->p++;
        if (c->p == s) {
            rc = BASE_E_INVAL;
            goto out;
        }
        if (base_buf_append(&b, s, (size_t)(c->p - s))) {
            rc = BASE_E_NOMEM;
            goto out;
        }
    }
    *out = base_buf_take(&b);
    if (!*out)
        rc = BASE_E_NOMEM;
out:
    base_buf_free(&b);
    return rc;
}

/* Reads "; name=value" pairs and calls fn for each. The value passed to fn is owned by fn.
 * 0, BASE_E_INVAL, BASE_E_NOMEM, or whatever fn returns. */
typedef int (*param_cb)(void *ud, const char *name, size_t name_len, char *value);

static int read_params(cur_t *c, param_cb fn, void *ud)
{
    for (;;) {
        skip_ws(c);
        if (c->p >= c->end)
            return 0;
        if (*c->p != ';')
            return BASE_E_INVAL;
        c->p++;
        skip_ws(c);
        if (c->p >= c->end)
            return 0; /* a trailing ';' is harmless */
        const char *name = c->p;
        while (c->p < c->end && is_tchar(*c->p))
            c->p++;
        size_t name_len = (size_t)(c->p - name);
        skip_ws(c);
        if (!name_len || c->p >= c->end || *c->p != '=')
            return BASE_E_INVAL;
        c->p++;
        skip_ws(c);
        char *value = NULL;
        int rc = read_value(c, &value);
        if (rc)
            return rc;
        if ((rc = fn(ud, name, name_len, value)))
            return rc;
    }
}

static bool name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* ------------------------------------------------------------------ boundary */

typedef struct {
    char *boundary; /* first one wins */
} ct_params_t;

static int ct_param(void *ud, const char *name, size_t n, char *value)
{
    ct_params_t *p = ud;
    if (name_is(name, n, "boundary") && !p->boundary)
        p->boundary = value;
    else
        free(value);
    return 0;
}

int mp_boundary(const char *content_type, char *out, size_t outsz, char *err, size_t errsz)
{
    if (!content_type)
        return fail(err, errsz, "missing Content-Type (expected multipart/form-data)");
    cur_t c = {content_type, content_type + strlen(content_type)};
    skip_ws(&c);
    const char *type = c.p;
    while (c.p < c.end && *c.p != ';' && !is_ws(*c.p))
        c.p++;
    if (!name_is(type, (size_t)(c.p - type), "multipart/form-data"))
        return fail(err, errsz, "Content-Type is not multipart/form-data");
    ct_params_t p = {NULL};
    int rc = read_params(&c, ct_param, &p);
    if (rc == BASE_E_NOMEM) {
        free(p.boundary);
        return rc;
    }
    if (rc) {
        free(p.boundary);
        return fail(err, errsz, "malformed Content-Type parameters");
    }
    if (!p.boundary)
        return fail(err, errsz, "multipart/form-data Content-Type has no boundary parameter");
    size_t n = strlen(p.boundary);
    rc = 0;
    if (n == 0)
        rc = fail(err, errsz, "empty multipart boundary");
    else if (n > MP_MAX_BOUNDARY)
        rc = fail(err, errsz, "multipart boundary longer than %d characters", MP_MAX_BOUNDARY);
    else if (p.boundary[n - 1] == ' ')
        rc = fail(err, errsz, "multipart boundary ends with a space");
    for (size_t i = 0; !rc && i < n; i++)
        if (!is_bchar(p.boundary[i]))
            rc = fail(err, errsz, "multipart boundary contains a character RFC 2046 does not allow");
    if (!rc && n + 1 > outsz)
        rc = fail(err, errsz, "multipart boundary too long for the buffer");
    if (!rc)
        memcpy(out, p.boundary, n + 1);
    free(p.boundary);
    return rc;
}

/* ------------------------------------------------------------------ body */

typedef struct {
    const char *body;
    size_t len;
    const char *bnd;
    size_t blen;
    char *err;
    size_t errsz;
} mp_t;

enum { DELIM_NO = 0, DELIM_PART = 1, DELIM_FINAL = 2, DELIM_LF = -1 };

/* p is just past "--boundary". A delimiter is followed by "--" (the close delimiter) or by
 * optional transport padding and CRLF; anything else means the bytes only looked like one.
 * *next is where the part's headers start. */
static int delim_kind(const mp_t *m, size_t p, size_t *next)
{
    if (p + 2 <= m->len && m->body[p] == '-' && m->body[p + 1] == '-')
        return DELIM_FINAL;
    while (p < m->len && is_ws(m->body[p]))
        p++;
    if (p < m->len && m->body[p] == '\n')
        return DELIM_LF;
    if (p + 2 <= m->len && m->body[p] == '\r' && m->body[p + 1] == '\n') {
        *next = p + 2;
        return DELIM_PART;
    }
    return DELIM_NO;
}

/* Finds the next "\r\n--boundary" delimiter at or after from. Returns its kind (DELIM_NO
 * when there is none); *at is where the CRLF starts. */
static int find_delim(const mp_t *m, size_t from, size_t *at, size_t *next)
{
    while (from < m->len) {
        const char *h = memmem(m->body + from, m->len - from, "\r\n--", 4);
        if (!h)
            return DELIM_NO;
        size_t i = (size_t)(h - m->body);
        if (i + 4 + m->blen <= m->len && memcmp(h + 4, m->bnd, m->blen) == 0) {
            int k = delim_kind(m, i + 4 + m->blen, next);
            if (k != DELIM_NO) {
                *at = i;
                return k;
            }
        }
        from = i + 1;
    }
    return DELIM_NO;
}

typedef struct {
    mp_part_t *part;
    bool seen_name, seen_filename;
} cd_params_t;

static int cd_param(void *ud, const char *name, size_t n, char *value)
{
    cd_params_t *p = ud;
    /* Repeated parameters: the first wins, so a later one cannot swap the file name. */
    if (name_is(name, n, "name") && !p->seen_name) {
        p->part->name = value;
        p->seen_name = true;
    } else if (name_is(name, n, "filename") && !p->seen_filename) {
        p->part->filename = value;
        p->seen_filename = true;
    } else {
        free(value); /* filename* and unknown parameters */
    }
    return 0;
}

static int dup_trimmed(const char *s, size_t n, char **out)
{
    while (n && is_ws(*s))
        s++, n--;
    while (n && is_ws(s[n - 1]))
        n--;
    *out = strndup(s, n);
    return *out ? 0 : BASE_E_NOMEM;
}

/* One header line of part number idx (1-based), without its CRLF. */
static int part_header(mp_t *m, size_t idx, const char *line, size_t n, mp_part_t *part,
                       bool *seen_cd)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)line[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return fail(m->err, m->errsz, "part %zu: control character in a header line", idx);
    }
    if (is_ws(line[0]))
        return fail(m->err, m->errsz, "part %zu: folded header lines are not supported", idx);
    const char *colon = memchr(line, ':', n);
    size_t name_len = colon ? (size_t)(colon - line) : 0;
    for (size_t i = 0; i < name_len; i++)
        if (!is_tchar(line[i]))
            name_len = 0;
    if (!name_len)
        return fail(m->err, m->errsz, "part %zu: malformed header line", idx);
    const char *value = colon + 1;
    size_t vlen = n - name_len - 1;
    if (name_is(line, name_len, "content-disposition")) {
        if (*seen_cd)
            return fail(m->err, m->errsz, "part %zu: more than one Content-Disposition", idx);
        *seen_cd = true;
        cur_t c = {value, value + vlen};
        skip_ws(&c);
        const char *type = c.p;
        while (c.p < c.end && *c.p != ';' && !is_ws(*c.p))
            c.p++;
        if (!name_is(type, (size_t)(c.p - type), "form-data"))
            return fail(m->err, m->errsz, "part %zu: Content-Disposition is not form-data", idx);
        cd_params_t p = {part, false, false};
        int rc = read_params(&c, cd_param, &p);
        if (rc == BASE_E_NOMEM)
            return rc;
        if (rc)
            return fail(m->err, m->errsz, "part %zu: malformed Content-Disposition parameters", idx);
        return 0;
    }
    if (name_is(line, name_len, "content-type") && !part->content_type)
        return dup_trimmed(value, vlen, &part->content_type);
    return 0; /* other headers (Content-Transfer-Encoding is deprecated by RFC 7578) */
}

/* Parses the headers of part idx starting at *pos; on success *pos is where its body starts. */
static int part_headers(mp_t *m, size_t idx, size_t *pos, mp_part_t *part)
{
    size_t p = *pos, total = 0;
    bool seen_cd = false;
    for (;;) {
        size_t avail = m->len - p;
        size_t look = avail < MP_MAX_HEADER_LINE + 2 ? avail : MP_MAX_HEADER_LINE + 2;
        const char *nl = memchr(m->body + p, '\n', look);
        if (!nl) {
            if (look == avail)
                return fail(m->err, m->errsz, "part %zu: headers are truncated (missing final boundary)", idx);
            return fail(m->err, m->errsz, "part %zu: header line longer than %d bytes", idx, MP_MAX_HEADER_LINE);
        }
        size_t e = (size_t)(nl - m->body);
        if (e == p || m->body[e - 1] != '\r')
            return fail(m->err, m->errsz, "multipart line endings must be CRLF");
        size_t n = e - 1 - p;
        if (n > MP_MAX_HEADER_LINE)
            return fail(m->err, m->errsz, "part %zu: header line longer than %d bytes", idx, MP_MAX_HEADER_LINE);
        total += n + 2;
        if (total > MP_MAX_PART_HEADERS)
            return fail(m->err, m->errsz, "part %zu: headers larger than %u bytes", idx, MP_MAX_PART_HEADERS);
        const char *line = m->body + p;
        p = e + 1;
        if (n == 0)
            break;
        int rc = part_header(m, idx, line, n, part, &seen_cd);
        if (rc)
            return rc;
    }
    /* RFC 7578 4.2: every part MUST name its field; a nameless part could only be dropped. */
    if (!seen_cd)
        return fail(m->err, m->errsz, "part %zu has no Content-Disposition header", idx);
    if (!part->name)
        return fail(m->err, m->errsz, "part %zu has no name parameter", idx);
    *pos = p;
    return 0;
}

static void part_free(mp_part_t *p)
{
    free(p->name);
    free(p->filename);
    free(p->content_type);
    memset(p, 0, sizeof *p);
}

void mp_form_free(mp_form_t *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        part_free(&f->parts[i]);
    f->n = 0;
}

int mp_parse(const char *content_type, const char *body, size_t len, mp_form_t *f, char *err,
             size_t errsz)
{
    memset(f, 0, sizeof *f);
    char bnd[MP_MAX_BOUNDARY + 1];
    int rc = mp_boundary(content_type, bnd, sizeof bnd, err, errsz);
    if (rc)
        return rc;
    if (!body)
        len = 0;
    mp_t m = {body, len, bnd, strlen(bnd), err, errsz};

    /* The first delimiter may open the body without a CRLF; otherwise a preamble precedes it. */
    size_t pos = 0, at = 0;
    int kind = DELIM_NO;
    if (len >= 2 + m.blen && body[0] == '-' && body[1] == '-' && memcmp(body + 2, bnd, m.blen) == 0)
        kind = delim_kind(&m, 2 + m.blen, &pos);
    if (kind == DELIM_NO)
        kind = find_delim(&m, 0, &at, &pos);
    if (kind == DELIM_NO)
        return fail(err, errsz, "multipart body has no boundary line");

    while (kind != DELIM_FINAL) {
        if (kind == DELIM_LF) {
            rc = fail(err, errsz, "multipart line endings must be CRLF");
            goto fail_out;
        }
        if (f->n == MP_MAX_PARTS) {
            rc = fail(err, errsz, "multipart body has more than %d parts", MP_MAX_PARTS);
            goto fail_out;
        }
        mp_part_t *part = &f->parts[f->n++];
        if ((rc = part_headers(&m, f->n, &pos, part)))
            goto fail_out;
        size_t start = pos;
        kind = find_delim(&m, start, &at, &pos);
        if (kind == DELIM_NO) {
            rc = fail(err, errsz, "multipart body has no final boundary");
            goto fail_out;
        }
        part->data = body + start;
        part->len = at - start;
    }
    return 0; /* the epilogue after the close delimiter is ignored */
fail_out:
    mp_form_free(f);
    return rc;
}

const mp_part_t *mp_form_get(const mp_form_t *f, const char *name)
{
    for (size_t i = 0; f && name && i < f->n; i++)
        if (f->parts[i].name && strcmp(f->parts[i].name, name) == 0)
            return &f->parts[i];
    return NULL;
}
