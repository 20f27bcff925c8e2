/* graph_convert_ui: editor workflows (litegraph 0.4 and schema 1) to API prompts, with
 * reroutes, primitives, notes, muted and bypassed nodes, control_after_generate values,
 * link-driven widgets and unknown node types. */
#include "testutil.h"

#include "graphs_testkit.h"

/* The JSON written inline with J(...) is laid out by hand. */
/* clang-format off */

static node_registry_t *reg;

static int setup(void **state)
{
    (void)state;
    reg = tg_registry();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    node_registry_free(reg);
    return 0;
}

static void expect_convert(const char *workflow, const char *want)
{
    json_t *w = tg_parse(workflow), *p = NULL;
    char err[256] = "unset";
    int rc = graph_convert_ui(w, reg, NULL, &p, err, sizeof err);
    if (rc)
        print_message("convert failed: %s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(err, "");
    tg_expect_json(p, want);
    json_free(p);
    json_free(w);
}

static void expect_refused(const char *workflow, const char *want_err)
{
    json_t *w = tg_parse(workflow), *p = (json_t *)0x1;
    char err[256] = "";
    assert_int_equal(graph_convert_ui(w, reg, NULL, &p, err, sizeof err), BASE_E_GRAPH_FORMAT);
    assert_null(p);
    assert_string_equal(err, want_err);
    json_free(w);
}

/* Everything at once, laid out as the editor saves it. */
static const char *full_workflow = J({
    "id": "0c1f5a2e-5b7d-4c52-9a62-1b9f4d7e8a10", "revision": 0, "last_node_id": 15, "last_link_id": 13,
    "nodes": [
        {"id": 2, "type": "TSampler", "title": "My Sampler", "pos": [400, 100], "size": [315, 262], "flags": {},
         "order": 5, "mode": 0,
         "inputs": [{"name": "image", "type": "IMAGE", "link": 2},
                    {"name": "mask", "shape": 7, "type": "MASK", "link": null},
                    {"name": "steps", "type": "INT", "widget": {"name": "steps"}, "link": 9}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [3, 4], "slot_index": 0}],
         "properties": {"Node name for S&R": "TSampler"},
         "widgets_values": [12345, "randomize", 20, 7.5, "euler", 1.0, "label text", false]},
        {"id": 1, "type": "TSource", "pos": [0, 0], "size": [315, 82], "flags": {}, "order": 1, "mode": 0,
         "inputs": [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 7}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1, 5, 12, 13], "slot_index": 0}],
         "properties": {}, "widgets_values": [64]},
        {"id": 8, "type": "Reroute", "pos": [300, 50], "size": [75, 26], "flags": {}, "order": 2, "mode": 0,
         "inputs": [{"name": "", "type": "*", "link": 1}],
         "outputs": [{"name": "", "type": "IMAGE", "links": [2]}],
         "properties": {"showOutputText": false, "horizontal": false}},
        {"id": 3, "type": "TSave", "pos": [800, 100], "size": [315, 270], "flags": {}, "order": 7, "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 3}], "outputs": [], "properties": {},
         "widgets_values": ["prefix"]},
        {"id": 4, "type": "TPreview", "pos": [800, 400], "size": [315, 270], "flags": {}, "order": 8, "mode": 2,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 4}], "outputs": [], "properties": {}},
        {"id": 5, "type": "TPass", "pos": [400, 500], "size": [200, 30], "flags": {}, "order": 3, "mode": 4,
         "inputs": [{"name": "image", "type": "IMAGE", "link": 5}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [6], "slot_index": 0}], "properties": {}},
        {"id": 6, "type": "TPreview", "pos": [700, 500], "size": [315, 270], "flags": {}, "order": 6, "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 6}], "outputs": [], "properties": {}},
        {"id": 7, "type": "PrimitiveNode", "pos": [-300, 0], "size": [210, 82], "flags": {}, "order": 0, "mode": 0,
         "inputs": [],
         "outputs": [{"name": "INT", "type": "INT", "widget": {"name": "width"}, "links": [7]}],
         "properties": {"Run widget replace on values": false}, "widgets_values": [128, "fixed"]},
        {"id": 9, "type": "TInt", "pos": [0, 300], "size": [200, 60], "flags": {}, "order": 0, "mode": 0,
         "inputs": [], "outputs": [{"name": "INT", "type": "INT", "links": [9]}], "properties": {},
         "widgets_values": [30]},
        {"id": 10, "type": "Note", "pos": [0, 600], "size": [300, 100], "flags": {}, "order": 0, "mode": 0,
         "inputs": [], "outputs": [], "properties": {}, "widgets_values": ["remember the milk"]},
        {"id": 12, "type": "TPass", "pos": [400, 700], "size": [200, 30], "flags": {}, "order": 3, "mode": 2,
         "inputs": [{"name": "image", "type": "IMAGE", "link": 13}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [10]}], "properties": {}},
        {"id": 11, "type": "TPreview", "pos": [700, 700], "size": [315, 270], "flags": {}, "order": 4, "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 10}], "outputs": [], "properties": {}},
        {"id": 13, "type": "TLoad", "pos": [0, 900], "size": [315, 314], "flags": {}, "order": 0, "mode": 0,
         "inputs": [], "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [11]},
                                   {"name": "MASK", "type": "MASK", "links": null}],
         "properties": {}, "widgets_values": ["a.png", "image"]},
        {"id": 14, "type": "TPreview", "pos": [400, 900], "size": [315, 270], "flags": {}, "order": 4, "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 11}], "outputs": [], "properties": {}},
        {"id": 15, "type": "CustomThing", "pos": [400, 1200], "size": [315, 100], "flags": {}, "order": 4, "mode": 0,
         "inputs": [{"name": "x", "type": "INT", "widget": {"name": "x"}, "link": null},
                    {"name": "img", "type": "IMAGE", "link": 12}],
         "outputs": [], "properties": {}, "widgets_values": [5]}
    ],
    "links": [[1, 1, 0, 8, 0, "*"], [2, 8, 0, 2, 0, "IMAGE"], [3, 2, 0, 3, 0, "IMAGE"], [4, 2, 0, 4, 0, "IMAGE"],
              [5, 1, 0, 5, 0, "IMAGE"], [6, 5, 0, 6, 0, "IMAGE"], [7, 7, 0, 1, 0, "INT"], [9, 9, 0, 2, 2, "INT"],
              [10, 12, 0, 11, 0, "IMAGE"], [11, 13, 0, 14, 0, "IMAGE"], [12, 1, 0, 15, 1, "IMAGE"],
              [13, 1, 0, 12, 0, "IMAGE"]],
    "groups": [], "config": {}, "extra": {"ds": {"scale": 1, "offset": [0, 0]}, "frontendVersion": "1.27.10"},
    "version": 0.4
});

static void test_full_workflow(void **state)
{
    (void)state;
    expect_convert(full_workflow, J({
        "1": {"inputs": {"width": 128}, "class_type": "TSource", "_meta": {"title": "Test Source"}},
        "2": {"inputs": {"seed": 12345, "steps": ["9", 0], "cfg": 7.5, "sampler_name": "euler", "denoise": 1.0,
                         "label": "label text", "flag": false, "image": ["1", 0]},
              "class_type": "TSampler", "_meta": {"title": "My Sampler"}},
        "3": {"inputs": {"filename_prefix": "prefix", "images": ["2", 0]}, "class_type": "TSave",
              "_meta": {"title": "Test Save"}},
        "6": {"inputs": {"images": ["1", 0]}, "class_type": "TPreview", "_meta": {"title": "TPreview"}},
        "9": {"inputs": {"value": 30}, "class_type": "TInt", "_meta": {"title": "TInt"}},
        "11": {"inputs": {}, "class_type": "TPreview", "_meta": {"title": "TPreview"}},
        "13": {"inputs": {"image": "a.png"}, "class_type": "TLoad", "_meta": {"title": "Test Load"}},
        "14": {"inputs": {"images": ["13", 0]}, "class_type": "TPreview", "_meta": {"title": "TPreview"}},
        "15": {"inputs": {"x": 5, "img": ["1", 0]}, "class_type": "CustomThing", "_meta": {"title": "CustomThing"}}
    }));
}

static void test_widget_values(void **state)
{
    (void)state;
    /* No control word after the seed: nothing is skipped. A missing tail takes defaults;
     * array values are wrapped. */
    expect_convert(J({"nodes": [{"id": 1, "type": "TSampler", "mode": 0, "inputs": [],
                                 "widgets_values": [5, 21, 7.0, "ddim"]},
                                {"id": 2, "type": "TSampler", "mode": 0,
                                 "widgets_values": [6, "fixed", 3, 2.0, "euler", 0.5, ["x", 1], true]},
                                {"id": 3, "type": "TSampler", "mode": 0},
                                {"id": 4, "type": "TSource", "mode": 0, "widgets_values": {"width": 32, "extra": 1}},
                                {"id": 5, "type": "TLoad", "mode": 0, "widgets_values": ["b.png"]}],
                      "links": []}),
                   J({"1": {"inputs": {"seed": 5, "steps": 21, "cfg": 7.0, "sampler_name": "ddim", "denoise": 1.0,
                                       "label": "", "flag": true},
                            "class_type": "TSampler", "_meta": {"title": "Test Sampler"}},
                      "2": {"inputs": {"seed": 6, "steps": 3, "cfg": 2.0, "sampler_name": "euler", "denoise": 0.5,
                                       "label": {"__value__": ["x", 1]}, "flag": true},
                            "class_type": "TSampler", "_meta": {"title": "Test Sampler"}},
                      "3": {"inputs": {"seed": 0, "steps": 20, "cfg": 8.0, "sampler_name": "euler", "denoise": 1.0,
                                       "label": "", "flag": true},
                            "class_type": "TSampler", "_meta": {"title": "Test Sampler"}},
                      "4": {"inputs": {"width": 32}, "class_type": "TSource", "_meta": {"title": "Test Source"}},
                      "5": {"inputs": {"image": "b.png"}, "class_type": "TLoad", "_meta": {"title": "Test Load"}}}));
}

static void test_bypass_rules(void **state)
{
    (void)state;
    /* Chains of bypassed nodes and reroutes; the bypassed TSampler passes its IMAGE input;
     * a bypassed node without an input of the wanted type drops the consumer's input, and
     * a PrimitiveNode behind a Reroute still gives its value. */
    expect_convert(J({"nodes": [
                          {"id": 1, "type": "TSource", "mode": 0, "widgets_values": [8]},
                          {"id": 2, "type": "TSampler", "mode": 4,
                           "inputs": [{"name": "image", "type": "IMAGE", "link": 1}, {"name": "mask", "type": "MASK", "link": null}],
                           "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}],
                           "widgets_values": [1, "fixed", 1, 1.0, "euler", 1.0, "", true]},
                          {"id": 3, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 2}],
                           "outputs": [{"name": "", "type": "IMAGE", "links": [3]}]},
                          {"id": 4, "type": "TPass", "mode": 4, "inputs": [{"name": "image", "type": "IMAGE", "link": 3}],
                           "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [4]}]},
                          {"id": 5, "type": "TPreview", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 4}]},
                          {"id": 6, "type": "TMulti", "mode": 4, "inputs": [],
                           "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [5]}, {"name": "MASK", "type": "MASK", "links": []}]},
                          {"id": 7, "type": "TPreview", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 5}]},
                          {"id": 8, "type": "PrimitiveNode", "mode": 0, "outputs": [{"name": "INT", "type": "INT", "links": [6]}],
                           "widgets_values": [99, "increment"]},
                          {"id": 9, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 6}],
                           "outputs": [{"name": "", "type": "INT", "links": [7]}]},
                          {"id": 10, "type": "TSource", "mode": 0,
                           "inputs": [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 7}],
                           "widgets_values": [1]},
                          {"id": 11, "type": "TPreview", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 99}]}],
                      "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"], [3, 3, 0, 4, 0, "IMAGE"],
                                [4, 4, 0, 5, 0, "IMAGE"], [5, 6, 0, 7, 0, "IMAGE"], [6, 8, 0, 9, 0, "INT"],
                                [7, 9, 0, 10, 0, "INT"]]}),
                   J({"1": {"inputs": {"width": 8}, "class_type": "TSource", "_meta": {"title": "Test Source"}},
                      "5": {"inputs": {"images": ["1", 0]}, "class_type": "TPreview", "_meta": {"title": "TPreview"}},
                      "7": {"inputs": {}, "class_type": "TPreview", "_meta": {"title": "TPreview"}},
                      "10": {"inputs": {"width": 99}, "class_type": "TSource", "_meta": {"title": "Test Source"}},
                      "11": {"inputs": {}, "class_type": "TPreview", "_meta": {"title": "TPreview"}}}));
}

static void test_schema_1_links(void **state)
{
    (void)state;
    expect_convert(J({"version": 1, "state": {"lastNodeId": 3, "lastLinkId": 2},
                      "nodes": [{"id": 1, "type": "TSource", "mode": 0, "widgets_values": [16]},
                                {"id": 2, "type": "TPass", "mode": 0, "inputs": [{"name": "image", "type": "IMAGE", "link": 1}]},
                                {"id": "x:3", "type": "TSave", "mode": 0, "title": "Keep",
                                 "inputs": [{"name": "images", "type": "IMAGE", "link": 2}], "widgets_values": ["out"]}],
                      "links": [{"id": 1, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "IMAGE"},
                                {"id": 2, "origin_id": 2, "origin_slot": 0, "target_id": "x:3", "target_slot": 0,
                                 "type": "IMAGE", "parentId": 4}]}),
                   J({"1": {"inputs": {"width": 16}, "class_type": "TSource", "_meta": {"title": "Test Source"}},
                      "2": {"inputs": {"image": ["1", 0]}, "class_type": "TPass", "_meta": {"title": "TPass"}},
                      "x:3": {"inputs": {"filename_prefix": "out", "images": ["2", 0]}, "class_type": "TSave",
                              "_meta": {"title": "Keep"}}}));
}

static void test_refused(void **state)
{
    (void)state;
    expect_refused("{}", "the workflow has no \"nodes\" array");
    expect_refused("[]", "the workflow has no \"nodes\" array");
    expect_refused(J({"nodes": {}}), "the workflow has no \"nodes\" array");
    expect_refused(J({"nodes": [5]}), "nodes[0] is not an object");
    expect_refused(J({"nodes": [{"type": "TSource"}]}), "nodes[0] has no id");
    expect_refused(J({"nodes": [{"id": 1.5, "type": "TSource"}]}),
                   "nodes[0] has an id that is neither an integer nor a string");
    expect_refused(J({"nodes": [{"id": 1}]}), "node 1 has no type");
    expect_refused(J({"nodes": [{"id": 1, "type": "A"}, {"id": "1", "type": "B"}]}), "node id 1 appears twice");
    expect_refused(J({"nodes": [{"id": 1, "type": "TSource"}], "links": {}}), "\"links\" is not an array");
    expect_refused(J({"nodes": [{"id": 1, "type": "TSource"}], "links": [[1, 1, 0, 7, 0, "IMAGE"]]}),
                   "link 1 refers to node 7, which is not in the workflow");
    expect_refused(J({"nodes": [{"id": 1, "type": "TSource"}], "links": [[1, 9, 0, 1, 0, "IMAGE"]]}),
                   "link 1 refers to node 9, which is not in the workflow");
    expect_refused(J({"nodes": [{"id": 1, "type": "TSource"}], "links": [[1, 1, 0]]}),
                   "links[0] is neither [id, origin, slot, target, slot, type] nor a link object");
    expect_refused(J({"nodes": [{"id": 1, "type": "TSource"}], "links": [["a", 1, 0, 1, 0]]}),
                   "links[0] has a malformed id or origin slot");
    expect_refused(J({"nodes": [{"id": 1, "type": "TSource"}],
                      "links": [[1, 1, 0, 1, 0, "X"], [1, 1, 0, 1, 0, "X"]]}),
                   "link id 1 appears twice");
    /* Reroutes feeding each other never reach a real output. */
    expect_refused(J({"nodes": [{"id": 1, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": 2}]},
                                {"id": 2, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": 1}]},
                                {"id": 3, "type": "TPreview", "inputs": [{"name": "images", "type": "IMAGE", "link": 3}]}],
                      "links": [[1, 1, 0, 2, 0, "*"], [2, 2, 0, 1, 0, "*"], [3, 1, 0, 3, 0, "IMAGE"]]}),
                   "links loop through Reroute or bypassed nodes (at node 1)");

    json_t *p = (json_t *)0x1;
    assert_int_equal(graph_convert_ui(NULL, reg, NULL, &p, NULL, 0), BASE_E_GRAPH_FORMAT);
    assert_null(p);
}

static void test_is_ui_workflow(void **state)
{
    (void)state;
    const char *yes[] = {J({"nodes": [], "links": []}), full_workflow};
    const char *no[] = {"{}", "[]", J({"nodes": [], "links": {}}), J({"nodes": {}, "links": []}),
                        J({"1": {"class_type": "TSource", "inputs": {}}})};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        json_t *j = tg_parse(yes[i]);
        assert_true(graph_is_ui_workflow(j));
        json_free(j);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        json_t *j = tg_parse(no[i]);
        assert_false(graph_is_ui_workflow(j));
        json_free(j);
    }
    assert_false(graph_is_ui_workflow(NULL));
}

/* The converted prompt is what validation then accepts. */
static void test_convert_then_validate(void **state)
{
    (void)state;
    json_t *w = tg_parse(full_workflow), *p;
    /* Mute the unknown node so the rest validates. */
    json_t *nodes = json_object_get(w, "nodes"), *last = json_at(nodes, json_len(nodes) - 1);
    assert_string_equal(json_str(json_object_get(last, "type")), "CustomThing");
    assert_int_equal(json_object_set(last, "mode", json_new_int(2)), 0);
    char err[256];
    assert_int_equal(graph_convert_ui(w, reg, NULL, &p, err, sizeof err), 0);
    graph_t *g;
    assert_int_equal(graph_parse(p, &g, err, sizeof err), 0);
    graph_validation_t res;
    assert_int_equal(graph_validate(g, reg, NULL, NULL, &res), 0);
    /* 11 lost its source (muted) and fails; the others run. */
    json_t *outs = json_new_array();
    for (size_t i = 0; i < res.n_outputs; i++)
        assert_int_equal(json_array_push(outs, json_new_string(res.outputs[i])), 0);
    tg_expect_json(outs, J(["3", "6", "14"]));
    tg_expect_json(json_object_get(json_object_get(res.node_errors, "11"), "errors"),
                   J([{"type": "required_input_missing", "message": "Required input is missing", "details": "images",
                       "extra_info": {"input_name": "images"}}]));
    json_free(outs);
    graph_validation_free(&res);
    graph_free(g);
    json_free(p);
    json_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_workflow),
        cmocka_unit_test(test_widget_values),
        cmocka_unit_test(test_bypass_rules),
        cmocka_unit_test(test_schema_1_links),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_is_ui_workflow),
        cmocka_unit_test(test_convert_then_validate),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
/* clang-format on */
