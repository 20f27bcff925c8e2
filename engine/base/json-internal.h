/* Private to engine/base: helpers shared by json.c, json_parse.c and json_dump.c. */
#ifndef WEFT_BASE_JSON_INTERNAL_H
#define WEFT_BASE_JSON_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"

/* Decodes one UTF-8 sequence from s[0..n) (n > 0) strictly: no overlongs, no encoded
 * surrogates, nothing above U+10FFFF. Returns its length (1..4) and sets *cp, or 0 when
 * the bytes are not valid UTF-8. */
size_t json__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Encodes cp (<= U+10FFFF, not a surrogate) into out; returns the length. */
size_t json__utf8_encode(uint32_t cp, char *out);

/* Makes room for at least one more item in an array or object (keys too for objects).
 * 0 or BASE_E_NOMEM. */
int json__list_grow(json_t *list);

#endif
