/* Private to server/. multipart/form-data (RFC 7578 over RFC 2046) parsed from a request body
 * held in memory. Pure: no I/O, no allocation of part bodies (they are spans into the body).
 * Any thread.
 *
 * Strict by design, every refusal is BASE_E_INVAL with a one-line reason:
 * - line endings must be CRLF (browsers, curl, requests and the npm clients all send CRLF;
 *   LF-only bodies are refused rather than guessed at);
 * - every part needs "Content-Disposition: form-data" with a name (RFC 7578 4.2);
 * - a body without its close delimiter ("--boundary--") is refused as truncated;
 * - at most MP_MAX_PARTS parts, header lines of at most MP_MAX_HEADER_LINE bytes, at most
 *   MP_MAX_PART_HEADERS bytes of headers per part; no folded or control-character headers.
 * The preamble and epilogue are ignored; transport padding after a delimiter is allowed.
 * filename* (RFC 5987) is not decoded: a part with only filename* has no filename. */
#ifndef WEFT_SRV_MULTIPART_H
#define WEFT_SRV_MULTIPART_H

#include <stddef.h>

#include "base.h"

#define MP_MAX_PARTS 64
#define MP_MAX_BOUNDARY 70             /* RFC 2046 */
#define MP_MAX_HEADER_LINE 1024        /* one header line of a part */
#define MP_MAX_PART_HEADERS (8u << 10) /* all header lines of one part */

typedef struct {
    char *name;          /* owned: Content-Disposition name, NULL when absent */
    char *filename;      /* owned: Content-Disposition filename, NULL when absent */
    char *content_type;  /* owned: the part's Content-Type value, NULL when absent */
    const char *data;    /* borrowed: points into the body given to mp_parse */
    size_t len;
} mp_part_t;

typedef struct {
    mp_part_t parts[MP_MAX_PARTS];
    size_t n;
} mp_form_t;

/* Copies the boundary parameter of a multipart/form-data Content-Type (quoted or not) into
 * out (NUL-terminated). 0 or BASE_E_INVAL with a message in err. */
int mp_boundary(const char *content_type, char *out, size_t outsz, char *err, size_t errsz);

/* Parses body[0..len) with the boundary of content_type. On success *f holds the parts
 * (names and types owned, bodies borrowed from body: keep body alive while f is used);
 * free with mp_form_free. On failure returns BASE_E_INVAL (or BASE_E_NOMEM) with a one-line
 * message in err and *f is empty. */
int mp_parse(const char *content_type, const char *body, size_t len, mp_form_t *f, char *err,
             size_t errsz);
void mp_form_free(mp_form_t *f);

/* First part named name, NULL when absent (borrowed). */
const mp_part_t *mp_form_get(const mp_form_t *f, const char *name);

#endif
