/* Any thread (no shared state). weft's JSON DOM: a parser, builders and emitters.
 *
 * Why not cJSON: cJSON stores every number as a double, which rounds seeds above 2^53;
 * ComfyUI workflows carry seeds up to 2^64-1 that must round-trip exactly. This DOM keeps
 * integers exact (base_int_t) and the text of non-integer numbers' value as a double.
 * Objects keep their key order (ComfyUI's node order is the prompt's key order).
 *
 * Ownership: every json_t is a tree node owned by its parent; json_free() frees a root and
 * everything below it. Functions that take a json_t * "value" argument to insert take
 * ownership of it (even on failure). Getters return borrowed pointers valid while the
 * parent lives and is not modified. */
#ifndef WEFT_BASE_JSON_H
#define WEFT_BASE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bint.h"

typedef enum {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} json_type_t;

typedef struct json_s json_t;

struct json_s {
    json_type_t type;
    union {
        bool b;
        struct {
            bool is_int;   /* integer literal (no fraction/exponent) within +-(2^64-1) */
            base_int_t i;  /* exact value when is_int */
            double d;      /* always set (rounded for huge integers) */
        } num;
        struct {
            char *s;       /* owned, NUL-terminated; may contain NUL bytes (see len) */
            size_t len;
        } str;
        struct {
            json_t **items; /* owned */
            char **keys;    /* owned; NULL for arrays; parallel to items for objects */
            size_t n, cap;
        } list;
    } u;
};

/* Limits applied by json_parse: nesting depth. */
#define JSON_MAX_DEPTH 512

/* Parses exactly one JSON value (RFC 8259; UTF-8 validated; duplicate keys: last wins,
 * like Python) from text[0..len). On error returns BASE_E_JSON (or BASE_E_NOMEM) and writes
 * "line L column C: what" into err (if errsz > 0). *out is set only on success. */
int json_parse(const char *text, size_t len, json_t **out, char *err, size_t errsz);

void json_free(json_t *j); /* NULL is fine */

/* Builders: return NULL only on out of memory. */
json_t *json_new_null(void);
json_t *json_new_bool(bool b);
json_t *json_new_int(int64_t v);
json_t *json_new_uint(uint64_t v);
json_t *json_new_bint(base_int_t v);
json_t *json_new_real(double d); /* non-finite values are emitted as NaN/Infinity/-Infinity like Python */
json_t *json_new_string(const char *s);          /* copies */
json_t *json_new_stringn(const char *s, size_t n); /* copies n bytes */
json_t *json_new_array(void);
json_t *json_new_object(void);
json_t *json_clone(const json_t *j);

/* Insert: take ownership of value. Return 0 or BASE_E_NOMEM/BASE_E_INVAL. */
int json_array_push(json_t *arr, json_t *value);
/* Replaces the value of an existing key in place (keeps its position), else appends. */
int json_object_set(json_t *obj, const char *key, json_t *value);
/* Removes and frees key's value; no-op when absent. */
void json_object_del(json_t *obj, const char *key);

/* Getters (borrowed). NULL when j is not of the right type or the key/index is absent. */
json_t *json_object_get(const json_t *obj, const char *key);
size_t json_len(const json_t *arr_or_obj); /* 0 for other types */
json_t *json_at(const json_t *arr_or_obj, size_t i);
const char *json_key_at(const json_t *obj, size_t i);

bool json_is_string(const json_t *j);
const char *json_str(const json_t *j); /* NULL unless a string */
/* Exact integer extraction; false when j is not an integer number or out of range. */
bool json_get_i64(const json_t *j, int64_t *out);
bool json_get_u64(const json_t *j, uint64_t *out);
/* Any number as double; false when j is not a number. */
bool json_get_double(const json_t *j, double *out);

/* Deep structural equality (numbers: exact ints compare exactly, else by double). */
bool json_equal(const json_t *a, const json_t *b);

typedef enum {
    JSON_COMPACT, /* {"a":1,"b":[1,2]} */
    JSON_PYTHON,  /* {"a": 1, "b": [1, 2]} with non-ASCII as \uXXXX: Python json.dumps default,
                     what ComfyUI writes into PNG text chunks */
    JSON_PRETTY,  /* indented by 2, for humans */
} json_style_t;

/* Returns a malloc'ed NUL-terminated string (caller frees), NULL on out of memory.
 * Doubles use the shortest text that round-trips, with ".0" added to integral values
 * (Python repr), so 8.0 stays 8.0 and 0.1 stays 0.1. */
char *json_dump(const json_t *j, json_style_t style);

#endif
