/* Builders for ComfyUI's error objects; every validation error has the same four keys. */
#include <stdlib.h>
#include <string.h>

#include "graphs-internal.h"

bool graph__put(json_t *obj, const char *key, json_t *value)
{
    if (!value)
        return false;
    return json_object_set(obj, key, value) == 0;
}

bool graph__put_str(json_t *obj, const char *key, const char *s)
{
    return graph__put(obj, key, json_new_string(s ? s : ""));
}

json_t *graph__error(const char *type, const char *message, const char *details, json_t *extra)
{
    json_t *e = json_new_object();
    if (!extra)
        extra = json_new_object();
    if (!e || !extra || !graph__put_str(e, "type", type) || !graph__put_str(e, "message", message) ||
        !graph__put_str(e, "details", details)) {
        json_free(e);
        json_free(extra);
        return NULL;
    }
    if (!graph__put(e, "extra_info", extra)) {
        json_free(e);
        return NULL;
    }
    return e;
}

bool graph__append(json_t *obj, const char *key, json_t *value)
{
    if (!value)
        return false;
    if (!obj || obj->type != JSON_OBJECT || !key) {
        json_free(value);
        return false;
    }
    if (obj->u.list.n == obj->u.list.cap) {
        size_t cap = obj->u.list.cap ? obj->u.list.cap * 2 : 8;
        json_t **items = realloc(obj->u.list.items, cap * sizeof *items);
        if (items)
            obj->u.list.items = items;
        char **keys = items ? realloc(obj->u.list.keys, cap * sizeof *keys) : NULL;
        if (!keys) {
            json_free(value);
            return false;
        }
        obj->u.list.keys = keys;
        obj->u.list.cap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        json_free(value);
        return false;
    }
    obj->u.list.keys[obj->u.list.n] = k;
    obj->u.list.items[obj->u.list.n++] = value;
    return true;
}
