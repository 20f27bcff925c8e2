/* The JSON DOM: builders, getters, mutation, clone and equality. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "json-internal.h"
#include "json.h"

size_t json__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0; /* continuation byte, overlong 2-byte lead, or beyond U+10FFFF */
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

size_t json__utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int json__list_grow(json_t *list)
{
    if (list->u.list.n < list->u.list.cap)
        return 0;
    size_t cap = list->u.list.cap ? list->u.list.cap * 2 : 4;
    if (cap > SIZE_MAX / sizeof(void *))
        return BASE_E_NOMEM;
    json_t **items = realloc(list->u.list.items, cap * sizeof *items);
    if (!items)
        return BASE_E_NOMEM;
    list->u.list.items = items;
    if (list->type == JSON_OBJECT) {
        char **keys = realloc(list->u.list.keys, cap * sizeof *keys);
        if (!keys)
            return BASE_E_NOMEM; /* items grew, harmless: cap stays the old value */
        list->u.list.keys = keys;
    }
    list->u.list.cap = cap;
    return 0;
}

static json_t *new_node(json_type_t type)
{
    json_t *j = calloc(1, sizeof *j);
    if (j)
        j->type = type;
    return j;
}

void json_free(json_t *j)
{
    if (!j)
        return;
    switch (j->type) {
    case JSON_STRING:
        free(j->u.str.s);
        break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        for (size_t i = 0; i < j->u.list.n; i++) {
            json_free(j->u.list.items[i]);
            if (j->u.list.keys)
                free(j->u.list.keys[i]);
        }
        free(j->u.list.items);
        free(j->u.list.keys);
        break;
    default:
        break;
    }
    free(j);
}

json_t *json_new_null(void)
{
    return new_node(JSON_NULL);
}

json_t *json_new_bool(bool b)
{
    json_t *j = new_node(JSON_BOOL);
    if (j)
        j->u.b = b;
    return j;
}

json_t *json_new_bint(base_int_t v)
{
    json_t *j = new_node(JSON_NUMBER);
    if (!j)
        return NULL;
    if (v.mag == 0)
        v.neg = false; /* one representation of zero keeps equality and dumping simple */
    j->u.num.is_int = true;
    j->u.num.i = v;
    j->u.num.d = base_int_to_double(v);
    return j;
}

json_t *json_new_int(int64_t v)
{
    return json_new_bint(base_int_from_i64(v));
}

json_t *json_new_uint(uint64_t v)
{
    return json_new_bint(base_int_from_u64(v));
}

json_t *json_new_real(double d)
{
    json_t *j = new_node(JSON_NUMBER);
    if (j) {
        j->u.num.is_int = false;
        j->u.num.d = d;
    }
    return j;
}

json_t *json_new_stringn(const char *s, size_t n)
{
    json_t *j = new_node(JSON_STRING);
    if (!j)
        return NULL;
    j->u.str.s = malloc(n + 1);
    if (!j->u.str.s) {
        free(j);
        return NULL;
    }
    if (n)
        memcpy(j->u.str.s, s, n);
    j->u.str.s[n] = '\0';
    j->u.str.len = n;
    return j;
}

json_t *json_new_string(const char *s)
{
    /* A NULL string is treated as "" rather than crashing the caller's builder chain. */
    return s ? json_new_stringn(s, strlen(s)) : json_new_stringn("", 0);
}

json_t *json_new_array(void)
{
    return new_node(JSON_ARRAY);
}

json_t *json_new_object(void)
{
    return new_node(JSON_OBJECT);
}

json_t *json_clone(const json_t *j)
{
    if (!j)
        return NULL;
    switch (j->type) {
    case JSON_NULL:
        return json_new_null();
    case JSON_BOOL:
        return json_new_bool(j->u.b);
    case JSON_NUMBER: {
        json_t *c = new_node(JSON_NUMBER);
        if (c)
            c->u.num = j->u.num;
        return c;
    }
    case JSON_STRING:
        return json_new_stringn(j->u.str.s, j->u.str.len);
    case JSON_ARRAY:
    case JSON_OBJECT:
        break;
    }
    json_t *c = new_node(j->type);
    if (!c)
        return NULL;
    size_t n = j->u.list.n;
    if (n) {
        c->u.list.items = calloc(n, sizeof *c->u.list.items);
        if (!c->u.list.items)
            goto fail;
        c->u.list.cap = n;
        if (j->type == JSON_OBJECT) {
            c->u.list.keys = calloc(n, sizeof *c->u.list.keys);
            if (!c->u.list.keys)
                goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_clone(j->u.list.items[i]);
        char *key = NULL;
        if (j->type == JSON_OBJECT && item) {
            key = strdup(j->u.list.keys[i]);
            if (!key) {
                json_free(item);
                item = NULL;
            }
        }
        if (!item)
            goto fail;
        c->u.list.items[i] = item;
        if (key)
            c->u.list.keys[i] = key;
        c->u.list.n = i + 1;
    }
    return c;
fail:
    json_free(c);
    return NULL;
}

int json_array_push(json_t *arr, json_t *value)
{
    if (!value)
        return BASE_E_NOMEM; /* a failed builder call passed straight in */
    if (!arr || arr->type != JSON_ARRAY) {
        json_free(value);
        return BASE_E_INVAL;
    }
    int rc = json__list_grow(arr);
    if (rc) {
        json_free(value);
        return rc;
    }
    arr->u.list.items[arr->u.list.n++] = value;
    return 0;
}

static ptrdiff_t find_key(const json_t *obj, const char *key)
{
    for (size_t i = 0; i < obj->u.list.n; i++)
        if (strcmp(obj->u.list.keys[i], key) == 0)
            return (ptrdiff_t)i;
    return -1;
}

int json_object_set(json_t *obj, const char *key, json_t *value)
{
    if (!value)
        return BASE_E_NOMEM;
    if (!obj || obj->type != JSON_OBJECT || !key) {
        json_free(value);
        return BASE_E_INVAL;
    }
    ptrdiff_t at = find_key(obj, key);
    if (at >= 0) {
        json_free(obj->u.list.items[at]);
        obj->u.list.items[at] = value;
        return 0;
    }
    char *k = strdup(key);
    if (!k || json__list_grow(obj)) {
        free(k);
        json_free(value);
        return BASE_E_NOMEM;
    }
    obj->u.list.keys[obj->u.list.n] = k;
    obj->u.list.items[obj->u.list.n] = value;
    obj->u.list.n++;
    return 0;
}

void json_object_del(json_t *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT || !key)
        return;
    ptrdiff_t at = find_key(obj, key);
    if (at < 0)
        return;
    json_free(obj->u.list.items[at]);
    free(obj->u.list.keys[at]);
    size_t tail = obj->u.list.n - (size_t)at - 1;
    memmove(&obj->u.list.items[at], &obj->u.list.items[at + 1], tail * sizeof(json_t *));
    memmove(&obj->u.list.keys[at], &obj->u.list.keys[at + 1], tail * sizeof(char *));
    obj->u.list.n--;
}

json_t *json_object_get(const json_t *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT || !key)
        return NULL;
    ptrdiff_t at = find_key(obj, key);
    return at >= 0 ? obj->u.list.items[at] : NULL;
}

size_t json_len(const json_t *j)
{
    if (!j || (j->type != JSON_ARRAY && j->type != JSON_OBJECT))
        return 0;
    return j->u.list.n;
}

json_t *json_at(const json_t *j, size_t i)
{
    if (i >= json_len(j))
        return NULL;
    return j->u.list.items[i];
}

const char *json_key_at(const json_t *obj, size_t i)
{
    if (!obj || obj->type != JSON_OBJECT || i >= obj->u.list.n)
        return NULL;
    return obj->u.list.keys[i];
}

bool json_is_string(const json_t *j)
{
    return j && j->type == JSON_STRING;
}

const char *json_str(const json_t *j)
{
    return json_is_string(j) ? j->u.str.s : NULL;
}

bool json_get_i64(const json_t *j, int64_t *out)
{
    if (!j || j->type != JSON_NUMBER || !j->u.num.is_int)
        return false;
    int64_t v;
    if (!base_int_to_i64(j->u.num.i, &v))
        return false;
    *out = v;
    return true;
}

bool json_get_u64(const json_t *j, uint64_t *out)
{
    if (!j || j->type != JSON_NUMBER || !j->u.num.is_int)
        return false;
    if (j->u.num.i.neg && j->u.num.i.mag)
        return false;
    *out = j->u.num.i.mag;
    return true;
}

bool json_get_double(const json_t *j, double *out)
{
    if (!j || j->type != JSON_NUMBER)
        return false;
    *out = j->u.num.d;
    return true;
}

static bool num_equal(const json_t *a, const json_t *b)
{
    if (a->u.num.is_int && b->u.num.is_int)
        return base_int_cmp(a->u.num.i, b->u.num.i) == 0;
    double x = a->u.num.d, y = b->u.num.d;
    if (isnan(x) || isnan(y))
        return isnan(x) && isnan(y); /* structural equality: a clone of NaN equals NaN */
    return x == y;
}

bool json_equal(const json_t *a, const json_t *b)
{
    if (a == b)
        return true;
    if (!a || !b || a->type != b->type)
        return false;
    switch (a->type) {
    case JSON_NULL:
        return true;
    case JSON_BOOL:
        return a->u.b == b->u.b;
    case JSON_NUMBER:
        return num_equal(a, b);
    case JSON_STRING:
        return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
    case JSON_ARRAY:
        if (a->u.list.n != b->u.list.n)
            return false;
        for (size_t i = 0; i < a->u.list.n; i++)
            if (!json_equal(a->u.list.items[i], b->u.list.items[i]))
                return false;
        return true;
    case JSON_OBJECT:
        /* Objects compare as mappings (key order ignored), like Python dicts. */
        if (a->u.list.n != b->u.list.n)
            return false;
        for (size_t i = 0; i < a->u.list.n; i++) {
            const json_t *other = (i < b->u.list.n && strcmp(a->u.list.keys[i], b->u.list.keys[i]) == 0)
                                      ? b->u.list.items[i]
                                      : json_object_get(b, a->u.list.keys[i]);
            if (!other || !json_equal(a->u.list.items[i], other))
                return false;
        }
        return true;
    }
    return false;
}
