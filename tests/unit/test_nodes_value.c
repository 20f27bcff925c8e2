#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "nodes.h"

static int obj_frees;
static void count_free(void *p)
{
    obj_frees++;
    free(p);
}

static void test_scalars(void **state)
{
    (void)state;
    node_value_t *v = node_value_i64(-42);
    assert_non_null(v);
    assert_int_equal(v->kind, NODE_V_INT);
    assert_true(v->u.i.neg);
    assert_int_equal(v->u.i.mag, 42);
    assert_int_equal(atomic_load(&v->refs), 1);
    node_value_unref(v);

    base_int_t negzero = {0, true};
    v = node_value_int(negzero);
    assert_false(v->u.i.neg);
    node_value_unref(v);

    v = node_value_float(0.25);
    assert_int_equal(v->kind, NODE_V_FLOAT);
    assert_true(v->u.f == 0.25);
    node_value_unref(v);

    v = node_value_bool(true);
    assert_int_equal(v->kind, NODE_V_BOOL);
    assert_true(v->u.b);
    node_value_unref(v);

    v = node_value_string("hello");
    assert_int_equal(v->kind, NODE_V_STRING);
    assert_string_equal(v->u.str.s, "hello");
    assert_int_equal(v->u.str.len, 5);
    node_value_unref(v);

    v = node_value_none();
    assert_int_equal(v->kind, NODE_V_NONE);
    node_value_unref(v);

    /* NULL is tolerated everywhere a value is released or referenced */
    node_value_unref(NULL);
    assert_null(node_value_ref(NULL));
}

static void test_refcount_nested(void **state)
{
    (void)state;
    obj_frees = 0;
    node_value_t *shared = node_value_string("shared");
    node_value_t *list = node_value_list(3);
    assert_non_null(list);
    assert_int_equal(list->u.list.n, 3);
    assert_null(list->u.list.keys);
    node_value_list_set(list, 0, node_value_ref(shared));
    node_value_list_set(list, 1, node_value_object(malloc(16), count_free, "MODEL"));
    /* slot 2 left empty: freeing must cope with NULL items */

    node_value_t *dict = node_value_dict(2);
    assert_non_null(dict->u.list.keys);
    assert_int_equal(node_value_dict_set(dict, 0, "samples", node_value_ref(list)), 0);
    assert_int_equal(node_value_dict_set(dict, 1, "tag", node_value_ref(shared)), 0);
    assert_int_equal(atomic_load(&shared->refs), 3);
    assert_int_equal(atomic_load(&list->refs), 2);

    assert_ptr_equal(node_value_dict_get(dict, "samples"), list);
    assert_ptr_equal(node_value_dict_get(dict, "tag"), shared);
    assert_null(node_value_dict_get(dict, "nope"));
    assert_null(node_value_dict_get(list, "samples")); /* a list has no keys */

    /* replacing a slot drops the old reference */
    assert_int_equal(node_value_dict_set(dict, 1, "tag2", node_value_i64(7)), 0);
    assert_int_equal(atomic_load(&shared->refs), 2);
    assert_null(node_value_dict_get(dict, "tag"));
    assert_int_equal(node_value_dict_get(dict, "tag2")->u.i.mag, 7);

    node_value_unref(list);
    assert_int_equal(obj_frees, 0); /* dict still holds the list */
    node_value_unref(dict);
    assert_int_equal(obj_frees, 1);
    assert_int_equal(atomic_load(&shared->refs), 1);
    node_value_unref(shared);
}

static void test_bad_slots(void **state)
{
    (void)state;
    obj_frees = 0;
    node_value_t *list = node_value_list(1);
    /* out of range: the item is released, not leaked (ASan checks) */
    node_value_list_set(list, 5, node_value_object(malloc(4), count_free, "X"));
    assert_int_equal(obj_frees, 1);
    assert_null(list->u.list.items[0]);
    assert_int_equal(node_value_dict_set(list, 0, "k", node_value_i64(1)), BASE_E_INVAL);
    node_value_t *dict = node_value_dict(1);
    assert_int_equal(node_value_dict_set(dict, 1, "k", node_value_i64(1)), BASE_E_INVAL);
    assert_int_equal(node_value_dict_set(dict, 0, NULL, node_value_i64(1)), BASE_E_INVAL);
    node_value_list_set(NULL, 0, node_value_i64(3));
    node_value_unref(dict);
    node_value_unref(list);

    node_value_t *empty = node_value_list(0);
    assert_non_null(empty);
    assert_int_equal(empty->u.list.n, 0);
    node_value_unref(empty);
}

static json_t *parse(const char *s)
{
    json_t *j = NULL;
    char err[128];
    assert_int_equal(json_parse(s, strlen(s), &j, err, sizeof err), 0);
    return j;
}

static void test_from_json(void **state)
{
    (void)state;
    json_t *j = parse("{\"seed\":18446744073709551615,\"neg\":-5,\"f\":1.5,\"whole\":2.0,"
                      "\"s\":\"a\\u0000b\",\"t\":true,\"n\":null,\"l\":[1,[2],{}]}");
    node_value_t *v = node_value_from_json(j);
    json_free(j);
    assert_non_null(v);
    assert_int_equal(v->kind, NODE_V_DICT);
    assert_int_equal(v->u.list.n, 8);
    assert_string_equal(v->u.list.keys[0], "seed");

    node_value_t *seed = node_value_dict_get(v, "seed");
    assert_int_equal(seed->kind, NODE_V_INT);
    assert_false(seed->u.i.neg);
    assert_true(seed->u.i.mag == UINT64_MAX);

    node_value_t *neg = node_value_dict_get(v, "neg");
    assert_int_equal(neg->kind, NODE_V_INT);
    assert_true(neg->u.i.neg);
    assert_int_equal(neg->u.i.mag, 5);

    assert_int_equal(node_value_dict_get(v, "f")->kind, NODE_V_FLOAT);
    assert_true(node_value_dict_get(v, "f")->u.f == 1.5);
    /* 2.0 is not an integer literal: it stays a FLOAT, as in Python */
    assert_int_equal(node_value_dict_get(v, "whole")->kind, NODE_V_FLOAT);

    node_value_t *s = node_value_dict_get(v, "s");
    assert_int_equal(s->kind, NODE_V_STRING);
    assert_int_equal(s->u.str.len, 3);
    assert_memory_equal(s->u.str.s, "a\0b", 4);

    assert_int_equal(node_value_dict_get(v, "t")->kind, NODE_V_BOOL);
    assert_true(node_value_dict_get(v, "t")->u.b);
    assert_int_equal(node_value_dict_get(v, "n")->kind, NODE_V_NONE);

    node_value_t *l = node_value_dict_get(v, "l");
    assert_int_equal(l->kind, NODE_V_LIST);
    assert_int_equal(l->u.list.n, 3);
    assert_int_equal(l->u.list.items[1]->kind, NODE_V_LIST);
    assert_int_equal(l->u.list.items[1]->u.list.items[0]->u.i.mag, 2);
    assert_int_equal(l->u.list.items[2]->kind, NODE_V_DICT);
    assert_int_equal(l->u.list.items[2]->u.list.n, 0);

    char *d = node_value_describe(v);
    assert_string_equal(d, "{'seed': 18446744073709551615, 'neg': -5, 'f': 1.5, 'whole': 2.0, "
                           "'s': 'a\\x00b', 't': True, 'n': None, 'l': [1, [2], {}]}");
    free(d);
    node_value_unref(v);

    assert_null(node_value_from_json(NULL));
}

static void test_describe(void **state)
{
    (void)state;
    struct {
        node_value_t *v;
        const char *want;
    } cases[] = {
        {node_value_none(), "None"},
        {node_value_i64(0), "0"},
        {node_value_i64(-3), "-3"},
        {node_value_float(0.1), "0.1"},
        {node_value_float(8.0), "8.0"},
        {node_value_float(-1e30), "-1e+30"},
        {node_value_bool(false), "False"},
        {node_value_string("it's"), "'it\\'s'"},
        {node_value_object(NULL, NULL, "VAE"), "<VAE>"},
        {node_value_object(NULL, NULL, NULL), "<object>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *d = node_value_describe(cases[i].v);
        assert_string_equal(d, cases[i].want);
        free(d);
        node_value_unref(cases[i].v);
    }
    char *d = node_value_describe(NULL);
    assert_string_equal(d, "None");
    free(d);

    /* long strings and long lists are cut */
    char big[200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    node_value_t *s = node_value_string(big);
    d = node_value_describe(s);
    assert_int_equal(strlen(d), 64 + 2 + 3);
    assert_string_equal(d + 65, "...'");
    free(d);
    node_value_unref(s);

    node_value_t *l = node_value_list(10);
    for (size_t i = 0; i < 10; i++)
        node_value_list_set(l, i, node_value_i64((int64_t)i));
    d = node_value_describe(l);
    assert_string_equal(d, "[0, 1, 2, 3, 4, 5, 6, 7, ... (10 items)]");
    free(d);
    node_value_unref(l);

    /* deep nesting is summarised rather than recursed into */
    node_value_t *deep = node_value_i64(1);
    for (int i = 0; i < 6; i++) {
        node_value_t *w = node_value_list(1);
        node_value_list_set(w, 0, deep);
        deep = w;
    }
    d = node_value_describe(deep);
    assert_string_equal(d, "[[[[[...]]]]]");
    free(d);
    node_value_unref(deep);
}

static void test_object_and_refs(void **state)
{
    (void)state;
    obj_frees = 0;
    node_value_t *o = node_value_object(malloc(8), count_free, "CLIP");
    assert_string_equal(o->u.obj.tag, "CLIP");
    assert_ptr_equal(node_value_ref(o), o);
    assert_ptr_equal(node_value_ref(o), o);
    assert_int_equal(atomic_load(&o->refs), 3);
    node_value_unref(o);
    node_value_unref(o);
    assert_int_equal(obj_frees, 0);
    node_value_unref(o);
    assert_int_equal(obj_frees, 1);
}

static void test_tensor(void **state)
{
    (void)state;
    ts_tensor_t *t = NULL;
    int64_t shape[3] = {1, 2, 3};
    ts_device_t cpu = {TS_CPU, 0};
    if (ts_zeros(&t, shape, 3, TS_F32, cpu) != 0)
        skip(); /* no tensor backend in this build */
    node_value_t *v = node_value_tensor(t);
    assert_int_equal(v->kind, NODE_V_TENSOR);
    assert_ptr_equal(v->u.t, t);
    node_value_t *d = node_value_dict(1);
    assert_int_equal(node_value_dict_set(d, 0, "samples", v), 0);
    char *s = node_value_describe(d);
    assert_string_equal(s, "{'samples': tensor[1, 2, 3] float32}");
    free(s);
    node_value_unref(d); /* releases the tensor; the sanitizer would flag a leak */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),       cmocka_unit_test(test_refcount_nested),
        cmocka_unit_test(test_bad_slots),     cmocka_unit_test(test_from_json),
        cmocka_unit_test(test_describe),      cmocka_unit_test(test_object_and_refs),
        cmocka_unit_test(test_tensor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
