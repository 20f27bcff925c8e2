/* Refcounted node values. Counts are atomic because a cached output may be read by several
 * lanes at once; everything else is immutable after construction, so no locks. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodes.h"

static node_value_t *value_alloc(node_vkind_t kind)
{
    node_value_t *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    atomic_init(&v->refs, 1);
    v->kind = kind;
    return v;
}

node_value_t *node_value_none(void)
{
    return value_alloc(NODE_V_NONE);
}

node_value_t *node_value_int(base_int_t i)
{
    node_value_t *v = value_alloc(NODE_V_INT);
    if (v) {
        if (i.mag == 0)
            i.neg = false; /* one zero, so equality and printing never see "-0" */
        v->u.i = i;
    }
    return v;
}

node_value_t *node_value_i64(int64_t i)
{
    return node_value_int(base_int_from_i64(i));
}

node_value_t *node_value_float(double f)
{
    node_value_t *v = value_alloc(NODE_V_FLOAT);
    if (v)
        v->u.f = f;
    return v;
}

node_value_t *node_value_bool(bool b)
{
    node_value_t *v = value_alloc(NODE_V_BOOL);
    if (v)
        v->u.b = b;
    return v;
}

/* JSON strings may hold NUL bytes, so the length is carried explicitly. */
static node_value_t *value_stringn(const char *s, size_t len)
{
    node_value_t *v = value_alloc(NODE_V_STRING);
    if (!v)
        return NULL;
    v->u.str.s = malloc(len + 1);
    if (!v->u.str.s) {
        free(v);
        return NULL;
    }
    if (len)
        memcpy(v->u.str.s, s, len);
    v->u.str.s[len] = '\0';
    v->u.str.len = len;
    return v;
}

node_value_t *node_value_string(const char *s)
{
    if (!s)
        s = "";
    return value_stringn(s, strlen(s));
}

node_value_t *node_value_tensor(ts_tensor_t *t)
{
    node_value_t *v = value_alloc(NODE_V_TENSOR);
    if (!v) {
        ts_free(t);
        return NULL;
    }
    v->u.t = t;
    return v;
}

static node_value_t *value_seq(node_vkind_t kind, size_t n)
{
    if (n > SIZE_MAX / sizeof(void *))
        return NULL;
    node_value_t *v = value_alloc(kind);
    if (!v)
        return NULL;
    if (n) {
        v->u.list.items = calloc(n, sizeof *v->u.list.items);
        if (!v->u.list.items)
            goto fail;
        if (kind == NODE_V_DICT) {
            v->u.list.keys = calloc(n, sizeof *v->u.list.keys);
            if (!v->u.list.keys)
                goto fail;
        }
    }
    v->u.list.n = n;
    return v;
fail:
    free(v->u.list.items);
    free(v);
    return NULL;
}

node_value_t *node_value_list(size_t n)
{
    return value_seq(NODE_V_LIST, n);
}

node_value_t *node_value_dict(size_t n)
{
    return value_seq(NODE_V_DICT, n);
}

void node_value_list_set(node_value_t *list, size_t i, node_value_t *item)
{
    if (!list || (list->kind != NODE_V_LIST && list->kind != NODE_V_DICT) ||
        i >= list->u.list.n) {
        node_value_unref(item); /* ownership was promised, so drop it rather than leak */
        return;
    }
    node_value_unref(list->u.list.items[i]);
    list->u.list.items[i] = item;
}

int node_value_dict_set(node_value_t *dict, size_t i, const char *key, node_value_t *item)
{
    if (!dict || dict->kind != NODE_V_DICT || i >= dict->u.list.n || !key) {
        node_value_unref(item);
        return BASE_E_INVAL;
    }
    char *k = strdup(key);
    if (!k) {
        node_value_unref(item);
        return BASE_E_NOMEM;
    }
    free(dict->u.list.keys[i]);
    dict->u.list.keys[i] = k;
    node_value_unref(dict->u.list.items[i]);
    dict->u.list.items[i] = item;
    return 0;
}

node_value_t *node_value_dict_get(const node_value_t *dict, const char *key)
{
    if (!dict || dict->kind != NODE_V_DICT || !key)
        return NULL;
    for (size_t i = 0; i < dict->u.list.n; i++)
        if (dict->u.list.keys[i] && strcmp(dict->u.list.keys[i], key) == 0)
            return dict->u.list.items[i];
    return NULL;
}

node_value_t *node_value_object(void *ptr, void (*free_cb)(void *), const char *tag)
{
    node_value_t *v = value_alloc(NODE_V_OBJECT);
    if (!v) {
        if (free_cb)
            free_cb(ptr);
        return NULL;
    }
    v->u.obj.ptr = ptr;
    v->u.obj.free_cb = free_cb;
    v->u.obj.tag = tag;
    return v;
}

node_value_t *node_value_ref(node_value_t *v)
{
    if (v)
        atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    return v;
}

void node_value_unref(node_value_t *v)
{
    if (!v)
        return;
    /* acq_rel: the thread that frees must see every write made by the other holders. */
    if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
        return;
    switch (v->kind) {
    case NODE_V_STRING:
        free(v->u.str.s);
        break;
    case NODE_V_TENSOR:
        ts_free(v->u.t);
        break;
    case NODE_V_LIST:
    case NODE_V_DICT:
        for (size_t i = 0; i < v->u.list.n; i++) {
            node_value_unref(v->u.list.items[i]);
            if (v->u.list.keys)
                free(v->u.list.keys[i]);
        }
        free(v->u.list.items);
        free(v->u.list.keys);
        break;
    case NODE_V_OBJECT:
        if (v->u.obj.free_cb)
            v->u.obj.free_cb(v->u.obj.ptr);
        break;
    default:
        break;
    }
    free(v);
}

node_value_t *node_value_from_json(const json_t *j)
{
    if (!j)
        return NULL;
    switch (j->type) {
    case JSON_NULL:
        return node_value_none();
    case JSON_BOOL:
        return node_value_bool(j->u.b);
    case JSON_NUMBER:
        if (j->u.num.is_int)
            return node_value_int(j->u.num.i);
        return node_value_float(j->u.num.d);
    case JSON_STRING:
        return value_stringn(j->u.str.s ? j->u.str.s : "", j->u.str.s ? j->u.str.len : 0);
    case JSON_ARRAY: {
        node_value_t *l = node_value_list(j->u.list.n);
        if (!l)
            return NULL;
        for (size_t i = 0; i < j->u.list.n; i++) {
            node_value_t *item = node_value_from_json(j->u.list.items[i]);
            if (!item) {
                node_value_unref(l);
                return NULL;
            }
            node_value_list_set(l, i, item);
        }
        return l;
    }
    case JSON_OBJECT: {
        node_value_t *d = node_value_dict(j->u.list.n);
        if (!d)
            return NULL;
        for (size_t i = 0; i < j->u.list.n; i++) {
            node_value_t *item = node_value_from_json(j->u.list.items[i]);
            if (!item || node_value_dict_set(d, i, j->u.list.keys[i], item) != 0) {
                node_value_unref(d);
                return NULL;
            }
        }
        return d;
    }
    }
    return NULL;
}

/* ------------------------------------------------------------------ describe */

/* Error reports must stay readable, so long strings and big containers are cut short. */
#define DESCRIBE_MAX_STR 64
#define DESCRIBE_MAX_ITEMS 8
#define DESCRIBE_MAX_DEPTH 4

static const char *dtype_name(ts_dtype_t d)
{
    switch (d) {
    case TS_F32: return "float32";
    case TS_F16: return "float16";
    case TS_BF16: return "bfloat16";
    case TS_F64: return "float64";
    case TS_I64: return "int64";
    case TS_I32: return "int32";
    case TS_U8: return "uint8";
    case TS_BOOL: return "bool";
    }
    return "?";
}

/* Shortest %g text that reads back to the same double, like Python's repr. */
static int put_double(base_buf_t *b, double d)
{
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    if (strspn(tmp, "-0123456789") == strlen(tmp))
        strcat(tmp, ".0"); /* a float must not look like an int in a report */
    return base_buf_puts(b, tmp);
}

static int put_quoted(base_buf_t *b, const char *s, size_t len)
{
    int rc = base_buf_putc(b, '\'');
    size_t n = len > DESCRIBE_MAX_STR ? DESCRIBE_MAX_STR : len;
    for (size_t i = 0; i < n && !rc; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\'' || c == '\\')
            rc = base_buf_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            rc = base_buf_printf(b, "\\x%02x", c);
        else
            rc = base_buf_putc(b, (char)c);
    }
    if (!rc && n < len)
        rc = base_buf_puts(b, "...");
    if (!rc)
        rc = base_buf_putc(b, '\'');
    return rc;
}

static int describe(base_buf_t *b, const node_value_t *v, int depth)
{
    if (!v)
        return base_buf_puts(b, "None");
    switch (v->kind) {
    case NODE_V_NONE:
        return base_buf_puts(b, "None");
    case NODE_V_INT:
        return base_buf_printf(b, "%s%" PRIu64, v->u.i.neg && v->u.i.mag ? "-" : "", v->u.i.mag);
    case NODE_V_FLOAT:
        return put_double(b, v->u.f);
    case NODE_V_BOOL:
        return base_buf_puts(b, v->u.b ? "True" : "False");
    case NODE_V_STRING:
        return put_quoted(b, v->u.str.s, v->u.str.len);
    case NODE_V_TENSOR: {
        if (!v->u.t)
            return base_buf_puts(b, "tensor(null)");
        int64_t shape[TS_MAX_DIMS];
        int nd = ts_shape(v->u.t, shape);
        int rc = base_buf_puts(b, "tensor[");
        for (int i = 0; i < nd && i < TS_MAX_DIMS && !rc; i++)
            rc = base_buf_printf(b, "%s%" PRId64, i ? ", " : "", shape[i]);
        if (!rc)
            rc = base_buf_printf(b, "] %s", dtype_name(ts_dtype(v->u.t)));
        return rc;
    }
    case NODE_V_LIST:
    case NODE_V_DICT: {
        bool dict = v->kind == NODE_V_DICT;
        if (depth >= DESCRIBE_MAX_DEPTH)
            return base_buf_puts(b, dict ? "{...}" : "[...]");
        int rc = base_buf_putc(b, dict ? '{' : '[');
        size_t n = v->u.list.n;
        for (size_t i = 0; i < n && i < DESCRIBE_MAX_ITEMS && !rc; i++) {
            if (i)
                rc = base_buf_puts(b, ", ");
            if (!rc && dict) {
                const char *k = v->u.list.keys[i] ? v->u.list.keys[i] : "";
                rc = put_quoted(b, k, strlen(k));
                if (!rc)
                    rc = base_buf_puts(b, ": ");
            }
            if (!rc)
                rc = describe(b, v->u.list.items[i], depth + 1);
        }
        if (!rc && n > DESCRIBE_MAX_ITEMS)
            rc = base_buf_printf(b, ", ... (%zu items)", n);
        if (!rc)
            rc = base_buf_putc(b, dict ? '}' : ']');
        return rc;
    }
    case NODE_V_OBJECT:
        return base_buf_printf(b, "<%s>", v->u.obj.tag ? v->u.obj.tag : "object");
    }
    return base_buf_puts(b, "<?>");
}

char *node_value_describe(const node_value_t *v)
{
    base_buf_t b = BASE_BUF_INIT;
    if (describe(&b, v, 0) != 0) {
        base_buf_free(&b);
        return NULL;
    }
    return base_buf_take(&b);
}
