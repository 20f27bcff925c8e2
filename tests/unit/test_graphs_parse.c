/* graph_parse / graph_find / graph_free: what becomes a link, what stays a constant, and
 * which prompts are refused outright. */
#include "testutil.h"

#include "graphs_testkit.h"

/* The JSON written inline with J(...) is laid out by hand. */
/* clang-format off */

static graph_t *parse_ok(const char *text)
{
    json_t *p = tg_parse(text);
    graph_t *g = NULL;
    char err[256] = "unset";
    assert_int_equal(graph_parse(p, &g, err, sizeof err), 0);
    assert_string_equal(err, "");
    json_free(p);
    return g;
}

static void test_basic(void **state)
{
    (void)state;
    graph_t *g = parse_ok(J({
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]},
              "_meta": {"title": "Save it"}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 18446744073709551615, "cfg": 7.5}}
    }));
    assert_int_equal(g->n, 3);
    /* Prompt key order is kept. */
    assert_string_equal(g->nodes[0].id, "9");
    assert_string_equal(g->nodes[1].id, "8");
    assert_string_equal(g->nodes[2].id, "3");
    assert_string_equal(g->nodes[0].class_type, "SaveImage");
    assert_string_equal(g->nodes[0].title, "Save it");
    assert_null(g->nodes[1].title);

    const graph_input_t *in = &g->nodes[0].inputs[0];
    assert_string_equal(in->name, "filename_prefix");
    assert_false(in->is_link);
    assert_string_equal(json_str(in->value), "x");
    in = &g->nodes[0].inputs[1];
    assert_true(in->is_link);
    assert_string_equal(in->src_id, "8");
    assert_int_equal(in->src_slot, 0);
    assert_int_equal(in->src, 1);
    assert_null(in->value);

    /* A link to a node that is not there keeps src = -1 for validation to report. */
    in = &g->nodes[1].inputs[1];
    assert_true(in->is_link);
    assert_string_equal(in->src_id, "4");
    assert_int_equal(in->src_slot, 2);
    assert_int_equal(in->src, -1);

    /* The 64-bit seed stays exact. */
    in = &g->nodes[2].inputs[0];
    uint64_t seed = 0;
    assert_true(json_get_u64(in->value, &seed));
    assert_true(seed == UINT64_MAX);

    assert_int_equal(graph_find(g, "9"), 0);
    assert_int_equal(graph_find(g, "3"), 2);
    assert_int_equal(graph_find(g, "4"), -1);
    assert_int_equal(graph_find(g, NULL), -1);
    assert_int_equal(graph_find(NULL, "9"), -1);
    graph_free(g);
    graph_free(NULL);
}

static void test_link_shapes(void **state)
{
    (void)state;
    graph_t *g = parse_ok(J({
        "1": {"class_type": "A", "inputs": {
            "link": ["2", 1],
            "float_slot": ["2", 0.5],
            "int_first": [2, 0],
            "three": ["2", 0, 1],
            "one": ["2"],
            "wrapped": {"__value__": ["2", 0]},
            "negative": ["2", -1],
            "nothing": null}},
        "2": {"class_type": "B"}
    }));
    const graph_node_t *nd = &g->nodes[0];
    assert_int_equal(nd->n_inputs, 8);
    assert_true(nd->inputs[0].is_link);
    assert_int_equal(nd->inputs[0].src, 1);
    assert_int_equal(nd->inputs[0].src_slot, 1);
    for (int k = 1; k <= 5; k++) {
        assert_false(nd->inputs[k].is_link);
        assert_non_null(nd->inputs[k].value);
        assert_int_equal(nd->inputs[k].src, -1);
    }
    assert_int_equal(nd->inputs[1].value->type, JSON_ARRAY);
    assert_int_equal(nd->inputs[5].value->type, JSON_OBJECT); /* unwrapped only by validation */
    assert_true(nd->inputs[6].is_link); /* negative slots are links; validation refuses them */
    assert_int_equal(nd->inputs[6].src_slot, -1);
    assert_false(nd->inputs[7].is_link);
    assert_int_equal(nd->inputs[7].value->type, JSON_NULL);
    assert_int_equal(g->nodes[1].n_inputs, 0);
    graph_free(g);
}

static void test_odd_nodes_are_kept(void **state)
{
    (void)state;
    graph_t *g = parse_ok(J({
        "1": "not a node",
        "2": {"inputs": {"a": 1}},
        "3": {"class_type": 5, "inputs": []},
        "4": {"class_type": "X", "_meta": {"title": 7}},
        "5": {"class_type": "Y", "inputs": "nope"}
    }));
    assert_int_equal(g->n, 5);
    assert_null(g->nodes[0].class_type);
    assert_int_equal(g->nodes[0].n_inputs, 0);
    assert_null(g->nodes[1].class_type);
    assert_int_equal(g->nodes[1].n_inputs, 1);
    assert_string_equal(g->nodes[2].class_type, "5"); /* named with str() like ComfyUI */
    assert_int_equal(g->nodes[2].n_inputs, 0);
    assert_null(g->nodes[3].title);
    assert_int_equal(g->nodes[4].n_inputs, 0);
    graph_free(g);
}

static void test_refused(void **state)
{
    (void)state;
    const char *bad[] = {"[]", "null", "5", "\"prompt\"", "[{\"class_type\": \"A\"}]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *p = tg_parse(bad[i]);
        graph_t *g = (graph_t *)0x1;
        char err[256] = "";
        assert_int_equal(graph_parse(p, &g, err, sizeof err), BASE_E_GRAPH_FORMAT);
        assert_null(g);
        assert_string_equal(err, "the prompt must be a JSON object mapping node ids to nodes");
        json_free(p);
    }
    graph_t *g = (graph_t *)0x1;
    assert_int_equal(graph_parse(NULL, &g, NULL, 0), BASE_E_GRAPH_FORMAT);
    assert_null(g);
}

static void test_empty_prompt(void **state)
{
    (void)state;
    graph_t *g = parse_ok("{}");
    assert_int_equal(g->n, 0);
    assert_int_equal(graph_find(g, "1"), -1);
    graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_link_shapes),
        cmocka_unit_test(test_odd_nodes_are_kept),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_empty_prompt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
/* clang-format on */
