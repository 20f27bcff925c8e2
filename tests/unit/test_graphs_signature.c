/* graph_prune and graph_signatures: which nodes an execution needs, in what order, and
 * when two nodes may share a cache entry. */
#include "testutil.h"

#include <time.h>

#include "graphs_testkit.h"

/* The JSON written inline with J(...) is laid out by hand. */
/* clang-format off */

static node_registry_t *reg;

/* An INT node whose class asks for its id (hidden UNIQUE_ID), like ComfyUI's nodes that
 * take unique_id. */
static const node_input_t uid_in[] = {
    {.name = "value", .type = "INT", .section = NODE_REQUIRED},
    {.name = "unique_id", .type = "UNIQUE_ID", .section = NODE_HIDDEN},
};
static const node_def_t TUid = {.name = "TUid", .inputs = uid_in, .n_inputs = 2, .outputs = tg_int_out,
                                .n_outputs = 1};

static int setup(void **state)
{
    (void)state;
    reg = tg_registry();
    assert_int_equal(node_registry_add(reg, &TUid), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    node_registry_free(reg);
    return 0;
}

typedef struct {
    graph_t *g;
    graph_validation_t res;
    size_t *order, n_order;
    uint8_t (*sigs)[GRAPH_SIG_LEN];
} run_t;

/* Validates, prunes to the surviving outputs and signs. */
static void run(run_t *r, const char *text, const char *const *fingerprints)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(tg_validate(reg, text, NULL, &r->g, &r->res), 0);
    assert_int_equal(graph_prune(r->g, r->res.outputs, r->res.n_outputs, &r->order, &r->n_order), 0);
    r->sigs = calloc(r->g->n, sizeof *r->sigs);
    assert_non_null(r->sigs);
    assert_int_equal(graph_signatures(r->g, r->order, r->n_order, fingerprints, r->sigs), 0);
}

static void run_free(run_t *r)
{
    free(r->sigs);
    free(r->order);
    graph_validation_free(&r->res);
    graph_free(r->g);
}

static const uint8_t *sig(const run_t *r, const char *id)
{
    int64_t i = graph_find(r->g, id);
    assert_true(i >= 0);
    return r->sigs[i];
}

static bool same(const uint8_t *a, const uint8_t *b)
{
    return memcmp(a, b, GRAPH_SIG_LEN) == 0;
}

/* ------------------------------------------------------------------ prune */

static void expect_order(const run_t *r, const char *want)
{
    char got[256] = "";
    for (size_t i = 0; i < r->n_order; i++) {
        strcat(got, i ? "," : "");
        strcat(got, r->g->nodes[r->order[i]].id);
    }
    assert_string_equal(got, want);
}

static void test_prune_order(void **state)
{
    (void)state;
    run_t r;
    run(&r, J({"3": {"class_type": "TSave", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
               "2": {"class_type": "TPass", "inputs": {"image": ["1", 0]}},
               "1": {"class_type": "TSource", "inputs": {"width": 8}},
               "4": {"class_type": "TPreview", "inputs": {"images": ["1", 0]}},
               "5": {"class_type": "TSource", "inputs": {"width": 8}},
               "6": {"class_type": "TPass", "inputs": {"image": ["5", 0]}}}),
        NULL);
    /* Unused nodes (5, 6) are left out; the shared source comes once, first. */
    expect_order(&r, "1,2,3,4");
    run_free(&r);

    /* Only the listed outputs, in the listed order. */
    json_t *p = tg_parse(J({"1": {"class_type": "TSource", "inputs": {"width": 8}},
                            "2": {"class_type": "TPreview", "inputs": {"images": ["1", 0]}},
                            "3": {"class_type": "TSource", "inputs": {"width": 8}},
                            "4": {"class_type": "TPreview", "inputs": {"images": ["3", 0]}}}));
    graph_t *g;
    assert_int_equal(graph_parse(p, &g, NULL, 0), 0);
    char *outs[] = {"4", "2"};
    size_t *order, n;
    assert_int_equal(graph_prune(g, outs, 2, &order, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(order[0], 2);
    assert_int_equal(order[1], 3);
    assert_int_equal(order[2], 0);
    assert_int_equal(order[3], 1);
    free(order);
    assert_int_equal(graph_prune(g, outs, 0, &order, &n), 0);
    assert_int_equal(n, 0);
    free(order);
    char *unknown[] = {"9"};
    order = (size_t *)0x1;
    assert_int_equal(graph_prune(g, unknown, 1, &order, &n), BASE_E_INVAL);
    assert_null(order);
    assert_int_equal(graph_prune(NULL, outs, 1, &order, &n), BASE_E_INVAL);
    graph_free(g);
    json_free(p);
}

static void test_prune_errors(void **state)
{
    (void)state;
    json_t *p = tg_parse(J({"1": {"class_type": "TPass", "inputs": {"image": ["3", 0]}},
                            "2": {"class_type": "TPass", "inputs": {"image": ["1", 0]}},
                            "3": {"class_type": "TPass", "inputs": {"image": ["2", 0]}},
                            "4": {"class_type": "TPreview", "inputs": {"images": ["3", 0]}},
                            "5": {"class_type": "TPreview", "inputs": {"images": ["9", 0]}},
                            "6": {"class_type": "TPass", "inputs": {"image": ["6", 0]}}}));
    graph_t *g;
    assert_int_equal(graph_parse(p, &g, NULL, 0), 0);
    size_t *order = (size_t *)0x1, n = 7;
    char *cyc[] = {"4"}, *dangling[] = {"5"}, *self[] = {"6"};
    assert_int_equal(graph_prune(g, cyc, 1, &order, &n), BASE_E_GRAPH_CYCLE);
    assert_null(order);
    assert_int_equal(n, 0);
    assert_int_equal(graph_prune(g, dangling, 1, &order, &n), BASE_E_GRAPH_FORMAT);
    assert_int_equal(graph_prune(g, self, 1, &order, &n), BASE_E_GRAPH_CYCLE);
    graph_free(g);
    json_free(p);
}

/* ------------------------------------------------------------------ signatures */

static void test_ids_do_not_matter(void **state)
{
    (void)state;
    run_t a, b;
    run(&a, J({"1": {"class_type": "TSource", "inputs": {"width": 8}},
               "2": {"class_type": "TPass", "inputs": {"image": ["1", 0]}},
               "3": {"class_type": "TSave", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
               "4": {"class_type": "TSource", "inputs": {"width": 8}},
               "5": {"class_type": "TPass", "inputs": {"image": ["4", 0]}},
               "6": {"class_type": "TPreview", "inputs": {"images": ["5", 0]}}}),
        NULL);
    /* Same sub-graph under other ids, other key order and other input order. */
    run(&b, J({"30": {"class_type": "TSave", "inputs": {"filename_prefix": "x", "images": ["20", 0]}},
               "20": {"class_type": "TPass", "inputs": {"image": ["abc", 0]}},
               "abc": {"class_type": "TSource", "inputs": {"width": "8"}}}),
        NULL);
    assert_true(same(sig(&a, "1"), sig(&b, "abc")));
    assert_true(same(sig(&a, "2"), sig(&b, "20")));
    assert_true(same(sig(&a, "3"), sig(&b, "30")));
    /* Identical branches inside one prompt share signatures too. */
    assert_true(same(sig(&a, "1"), sig(&a, "4")));
    assert_true(same(sig(&a, "2"), sig(&a, "5")));
    /* Different classes over the same input differ. */
    assert_false(same(sig(&a, "3"), sig(&a, "6")));
    assert_false(same(sig(&a, "1"), sig(&a, "2")));
    run_free(&a);
    run_free(&b);
}

static void test_constant_change_propagates(void **state)
{
    (void)state;
    const char *fmt = J({"1": {"class_type": "TSource", "inputs": {"width": %d}},
                         "2": {"class_type": "TPass", "inputs": {"image": ["1", 0]}},
                         "3": {"class_type": "TSave", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
                         "4": {"class_type": "TSource", "inputs": {"width": 16}},
                         "5": {"class_type": "TPreview", "inputs": {"images": ["4", 0]}}});
    char t1[1024], t2[1024];
    snprintf(t1, sizeof t1, fmt, 8);
    snprintf(t2, sizeof t2, fmt, 9);
    run_t a, b;
    run(&a, t1, NULL);
    run(&b, t2, NULL);
    assert_false(same(sig(&a, "1"), sig(&b, "1")));
    assert_false(same(sig(&a, "2"), sig(&b, "2")));
    assert_false(same(sig(&a, "3"), sig(&b, "3")));
    assert_true(same(sig(&a, "4"), sig(&b, "4")));
    assert_true(same(sig(&a, "5"), sig(&b, "5")));
    run_free(&a);
    run_free(&b);

    /* The output slot is part of a link. */
    run(&a, J({"1": {"class_type": "TMulti"}, "2": {"class_type": "TAny", "inputs": {"value": ["1", 0]}}}), NULL);
    run(&b, J({"1": {"class_type": "TMulti"}, "2": {"class_type": "TAny", "inputs": {"value": ["1", 1]}}}), NULL);
    assert_true(same(sig(&a, "1"), sig(&b, "1")));
    assert_false(same(sig(&a, "2"), sig(&b, "2")));
    run_free(&a);
    run_free(&b);

    /* A constant and a link never collide, nor do int and float constants. */
    run(&a, J({"1": {"class_type": "TAny", "inputs": {"value": 1}}}), NULL);
    run(&b, J({"1": {"class_type": "TAny", "inputs": {"value": 1.0}}}), NULL);
    assert_false(same(sig(&a, "1"), sig(&b, "1")));
    run_free(&a);
    run_free(&b);
}

static void test_not_idempotent_and_unique_id(void **state)
{
    (void)state;
    run_t a, b;
    const char *text = J({"1": {"class_type": "TNotIdem", "inputs": {"value": 1}},
                          "2": {"class_type": "TNotIdem", "inputs": {"value": 1}},
                          "3": {"class_type": "TInt", "inputs": {"value": 1}},
                          "4": {"class_type": "TInt", "inputs": {"value": 1}},
                          "5": {"class_type": "TUid", "inputs": {"value": 1}},
                          "6": {"class_type": "TUid", "inputs": {"value": 1}},
                          "7": {"class_type": "TAny", "inputs": {"value": ["1", 0]}},
                          "8": {"class_type": "TAny", "inputs": {"value": ["2", 0]}},
                          "9": {"class_type": "TAny", "inputs": {"value": ["3", 0]}},
                          "10": {"class_type": "TAny", "inputs": {"value": ["4", 0]}},
                          "11": {"class_type": "TAny", "inputs": {"value": ["5", 0]}},
                          "12": {"class_type": "TAny", "inputs": {"value": ["6", 0]}}});
    run(&a, text, NULL);
    assert_false(same(sig(&a, "1"), sig(&a, "2")));
    assert_true(same(sig(&a, "3"), sig(&a, "4")));
    assert_false(same(sig(&a, "5"), sig(&a, "6")));
    assert_false(same(sig(&a, "7"), sig(&a, "8")));
    assert_true(same(sig(&a, "9"), sig(&a, "10")));
    /* Stable across runs. */
    run(&b, text, NULL);
    for (size_t i = 0; i < a.g->n; i++)
        assert_true(same(a.sigs[i], b.sigs[i]));
    run_free(&a);
    run_free(&b);
}

static void test_fingerprints(void **state)
{
    (void)state;
    const char *text = J({"1": {"class_type": "TLoad", "inputs": {"image": "a.png"}},
                          "2": {"class_type": "TPass", "inputs": {"image": ["1", 0]}},
                          "3": {"class_type": "TPreview", "inputs": {"images": ["2", 0]}},
                          "4": {"class_type": "TSource", "inputs": {"width": 8}},
                          "5": {"class_type": "TPreview", "inputs": {"images": ["4", 0]}}});
    const char *none[5] = {NULL}, *fa[5] = {"sha-a"}, *fb[5] = {"sha-b"}, *empty[5] = {""};
    run_t r0, ra, rb, ra2, re, rnull;
    run(&r0, text, none);
    run(&ra, text, fa);
    run(&rb, text, fb);
    run(&ra2, text, fa);
    run(&re, text, empty);
    run(&rnull, text, NULL);
    assert_false(same(sig(&r0, "1"), sig(&ra, "1")));
    assert_false(same(sig(&ra, "1"), sig(&rb, "1")));
    assert_false(same(sig(&ra, "3"), sig(&rb, "3")));
    assert_false(same(sig(&r0, "1"), sig(&re, "1"))); /* "" is a fingerprint, NULL is none */
    assert_true(same(sig(&ra, "3"), sig(&ra2, "3")));
    assert_true(same(sig(&r0, "3"), sig(&rnull, "3")));
    assert_true(same(sig(&ra, "5"), sig(&rb, "5")));
    run_free(&r0);
    run_free(&ra);
    run_free(&rb);
    run_free(&ra2);
    run_free(&re);
    run_free(&rnull);
}

static void test_signature_errors(void **state)
{
    (void)state;
    run_t r;
    run(&r, J({"1": {"class_type": "TSource", "inputs": {"width": 8}},
               "2": {"class_type": "TPreview", "inputs": {"images": ["1", 0]}}}),
        NULL);
    size_t backwards[] = {1, 0}, out_of_range[] = {0, 7};
    assert_int_equal(graph_signatures(r.g, backwards, 2, NULL, r.sigs), BASE_E_INVAL);
    assert_int_equal(graph_signatures(r.g, out_of_range, 2, NULL, r.sigs), BASE_E_INVAL);
    assert_int_equal(graph_signatures(NULL, backwards, 2, NULL, r.sigs), BASE_E_INVAL);
    assert_int_equal(graph_signatures(r.g, NULL, 0, NULL, r.sigs), 0);
    run_free(&r);
}

static void test_long_chain(void **state)
{
    (void)state;
    const size_t n = 100000;
    base_buf_t b = BASE_BUF_INIT;
    assert_int_equal(base_buf_puts(&b, "{\"0\": {\"class_type\": \"TSource\", \"inputs\": {\"width\": 8}}"), 0);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(base_buf_printf(&b, ", \"%zu\": {\"class_type\": \"TPass\", \"inputs\": {\"image\": [\"%zu\", 0]}}",
                                         i, i - 1), 0);
    assert_int_equal(base_buf_printf(&b, ", \"out\": {\"class_type\": \"TPreview\", \"inputs\": {\"images\": [\"%zu\", 0]}}}",
                                     n - 1), 0);
    clock_t t0 = clock();
    run_t r;
    run(&r, b.data, NULL);
    print_message("100k-node chain validated, pruned and signed in %.2f s\n",
                  (double)(clock() - t0) / CLOCKS_PER_SEC);
    assert_int_equal(r.n_order, n + 1);
    assert_int_equal(r.order[0], 0);
    assert_int_equal(r.order[n], n);
    /* Every link changes the signature: all of them differ. */
    assert_false(same(sig(&r, "0"), sig(&r, "1")));
    assert_false(same(sig(&r, "99998"), sig(&r, "99999")));
    run_free(&r);
    base_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prune_order),
        cmocka_unit_test(test_prune_errors),
        cmocka_unit_test(test_ids_do_not_matter),
        cmocka_unit_test(test_constant_change_propagates),
        cmocka_unit_test(test_not_idempotent_and_unique_id),
        cmocka_unit_test(test_fingerprints),
        cmocka_unit_test(test_signature_errors),
        cmocka_unit_test(test_long_chain),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
/* clang-format on */
