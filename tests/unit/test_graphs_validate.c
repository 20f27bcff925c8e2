/* graph_validate / graph_check_request: every ComfyUI error type with its exact JSON,
 * coercion, partial execution targets, cycles and very long chains. */
#include "testutil.h"

#include <time.h>

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

/* Validates text and checks the whole outcome: return code, top-level error (NULL for
 * none), node_errors and surviving outputs (a JSON array). */
static void expect(const char *text, const char *targets, int want_rc, const char *want_error,
                   const char *want_node_errors, const char *want_outputs)
{
    graph_t *g = NULL;
    graph_validation_t res;
    int rc = tg_validate(reg, text, targets, &g, &res);
    if (want_error)
        tg_expect_json(res.error, want_error);
    else
        assert_null(res.error);
    tg_expect_json(res.node_errors, want_node_errors);
    json_t *outs = json_new_array();
    for (size_t i = 0; i < res.n_outputs; i++)
        assert_int_equal(json_array_push(outs, json_new_string(res.outputs[i])), 0);
    tg_expect_json(outs, want_outputs);
    json_free(outs);
    assert_non_null(res.prompt);
    assert_int_equal(rc, want_rc);
    graph_validation_free(&res);
    graph_free(g);
}

/* ------------------------------------------------------------------ success and coercion */

static void test_valid_prompt_is_coerced(void **state)
{
    (void)state;
    graph_t *g = NULL;
    graph_validation_t res;
    int rc = tg_validate(reg, J({
        "1": {"class_type": "TSource", "inputs": {"width": "64"}},
        "2": {"class_type": "TSampler", "inputs": {"image": ["1", 0], "seed": 18446744073709551615, "steps": 5.9,
              "cfg": "7", "sampler_name": "ddim", "denoise": true, "label": 1.5, "flag": "false",
              "extra": "ignored"}},
        "3": {"class_type": "TSave", "inputs": {"images": ["2", 0], "filename_prefix": {"__value__": [1, "a"]}},
              "_meta": {"title": "Out"}}
    }), NULL, &g, &res);
    assert_int_equal(rc, 0);
    assert_null(res.error);
    tg_expect_json(res.node_errors, "{}");
    assert_int_equal(res.n_outputs, 1);
    assert_string_equal(res.outputs[0], "3");
    tg_expect_json(res.prompt, J({
        "1": {"inputs": {"width": 64}, "class_type": "TSource"},
        "2": {"inputs": {"image": ["1", 0], "seed": 18446744073709551615, "steps": 5, "cfg": 7.0,
              "sampler_name": "ddim", "denoise": 1.0, "label": "1.5", "flag": true, "extra": "ignored"},
              "class_type": "TSampler"},
        "3": {"inputs": {"images": ["2", 0], "filename_prefix": "[1, 'a']"}, "class_type": "TSave",
              "_meta": {"title": "Out"}}
    }));
    /* The graph itself carries the coerced constants and the resolved classes. */
    assert_ptr_equal(g->nodes[1].def, &tg_TSampler);
    assert_int_equal(g->nodes[0].inputs[0].value->type, JSON_NUMBER);
    char *dump = json_dump(res.prompt, JSON_PYTHON);
    assert_non_null(strstr(dump, "\"seed\": 18446744073709551615,"));
    free(dump);
    graph_validation_free(&res);
    graph_validation_free(&res); /* freeing twice is harmless: it resets */
    graph_free(g);
}

/* One TSampler constant replaced by `value`; returns the coerced value's compact dump, or
 * the error's details when validation failed. */
static char *coerce(const char *input, const char *value)
{
    json_t *p = tg_parse(J({
        "1": {"class_type": "TSource", "inputs": {"width": 8}},
        "2": {"class_type": "TSampler", "inputs": {"image": ["1", 0], "seed": 0, "steps": 1, "cfg": 8,
              "sampler_name": "euler", "denoise": 1}},
        "3": {"class_type": "TSave", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}
    }));
    json_t *inputs = json_object_get(json_object_get(p, "2"), "inputs");
    assert_int_equal(json_object_set(inputs, input, tg_parse(value)), 0);
    graph_t *g;
    char err[256];
    assert_int_equal(graph_parse(p, &g, err, sizeof err), 0);
    graph_validation_t res;
    int rc = graph_validate(g, reg, NULL, NULL, &res);
    char *out;
    if (rc == 0) {
        out = json_dump(json_object_get(json_object_get(json_object_get(res.prompt, "2"), "inputs"), input),
                        JSON_COMPACT);
    } else {
        const json_t *err0 = json_at(json_object_get(json_object_get(res.node_errors, "2"), "errors"), 0);
        char buf[1024];
        snprintf(buf, sizeof buf, "%s|%s|%s", json_str(json_object_get(err0, "type")),
                 json_str(json_object_get(err0, "message")), json_str(json_object_get(err0, "details")));
        out = strdup(buf);
    }
    graph_validation_free(&res);
    graph_free(g);
    json_free(p);
    return out;
}

static void expect_coerce(const char *input, const char *value, const char *want)
{
    char *got = coerce(input, value);
    if (strcmp(got, want))
        print_message("%s = %s\n", input, value);
    assert_string_equal(got, want);
    free(got);
}

static void test_coercion(void **state)
{
    (void)state;
    /* INT -> int(v): exact, truncating, Python's string syntax. */
    expect_coerce("steps", "\"  12 \"", "12");
    expect_coerce("steps", "\"1_000\"", "1000");
    expect_coerce("steps", "\"+7\"", "7");
    expect_coerce("steps", "3.99", "3");
    expect_coerce("steps", "true", "1");
    expect_coerce("seed", "\"18446744073709551615\"", "18446744073709551615");
    expect_coerce("seed", "-0.5", "0");
    expect_coerce("steps", "\"5.5\"",
                  "invalid_input_type|Failed to convert an input value to a INT value|"
                  "steps, 5.5, invalid literal for int() with base 10: '5.5'");
    expect_coerce("steps", "\"1__0\"",
                  "invalid_input_type|Failed to convert an input value to a INT value|"
                  "steps, 1__0, invalid literal for int() with base 10: '1__0'");
    expect_coerce("steps", "\"it's\"",
                  "invalid_input_type|Failed to convert an input value to a INT value|"
                  "steps, it's, invalid literal for int() with base 10: \"it's\"");
    expect_coerce("steps", "{\"a\": [1, 2.5, null, true]}",
                  "invalid_input_type|Failed to convert an input value to a INT value|"
                  "steps, {'a': [1, 2.5, None, True]}, int() argument must be a string, a bytes-like object or "
                  "a real number, not 'dict'");
    expect_coerce("seed", "-1", "value_smaller_than_min|Value -1 smaller than min of 0|seed");
    expect_coerce("steps", "10001", "value_bigger_than_max|Value 10001 bigger than max of 10000|steps");
    /* FLOAT -> float(v). */
    expect_coerce("cfg", "\"1e1\"", "10.0");
    expect_coerce("cfg", "\" 2_5.5 \"", "25.5");
    expect_coerce("cfg", "7", "7.0");
    expect_coerce("cfg", "\"inf\"", "value_bigger_than_max|Value inf bigger than max of 100.0|cfg");
    expect_coerce("cfg", "\"-1e-7\"", "value_smaller_than_min|Value -1e-07 smaller than min of 0.0|cfg");
    expect_coerce("cfg", "1e300", "value_bigger_than_max|Value 1e+300 bigger than max of 100.0|cfg");
    expect_coerce("cfg", "\"0x10\"",
                  "invalid_input_type|Failed to convert an input value to a FLOAT value|"
                  "cfg, 0x10, could not convert string to float: '0x10'");
    expect_coerce("denoise", "{\"__value__\": [0.5]}",
                  "invalid_input_type|Failed to convert an input value to a FLOAT value|"
                  "denoise, [0.5], float() argument must be a string or a real number, not 'list'");
    /* STRING -> str(v), numbers written like Python. */
    expect_coerce("label", "true", "\"True\"");
    expect_coerce("label", "null", "\"None\"");
    expect_coerce("label", "1e16", "\"1e+16\"");
    expect_coerce("label", "123456.0", "\"123456.0\"");
    expect_coerce("label", "0.0001", "\"0.0001\"");
    expect_coerce("label", "-18446744073709551615", "\"-18446744073709551615\"");
    expect_coerce("label", "{\"__value__\": [\"a\\nb\", {\"k\": 0.1}]}", "\"['a\\\\nb', {'k': 0.1}]\"");
    /* BOOLEAN -> bool(v): Python truthiness ("false" is true). */
    expect_coerce("flag", "\"false\"", "true");
    expect_coerce("flag", "\"\"", "false");
    expect_coerce("flag", "0.0", "false");
    expect_coerce("flag", "{\"__value__\": []}", "false");
    expect_coerce("flag", "{\"x\": 1}", "true");
    /* A combo compares as a string; a number never matches. */
    expect_coerce("sampler_name", "1",
                  "value_not_in_list|Value not in list|sampler_name: '1' not in ['euler', 'euler_ancestral', 'ddim']");
}

/* ------------------------------------------------------------------ error types */

static void test_required_input_missing(void **state)
{
    (void)state;
    expect(J({"1": {"class_type": "TSave", "inputs": {"filename_prefix": "x"}}}), NULL, BASE_E_GRAPH_INVALID,
           J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "Required input is missing: images", "extra_info": {}}),
           J({"1": {"errors": [{"type": "required_input_missing", "message": "Required input is missing",
                                "details": "images", "extra_info": {"input_name": "images"}}],
                    "dependent_outputs": ["1"], "class_type": "TSave"}}),
           "[]");
    /* Optional inputs may be absent; a node without "inputs" is an empty one. */
    expect(J({"1": {"class_type": "TSource", "inputs": {"width": 8}}, "2": {"class_type": "TPreview"},
              "3": {"class_type": "TSampler", "inputs": {"image": ["1", 0], "seed": 1, "steps": 1, "cfg": 1,
                    "sampler_name": "euler", "denoise": 1}},
              "4": {"class_type": "TPreview", "inputs": {"images": ["3", 0]}}}),
           NULL, 0, NULL,
           J({"2": {"errors": [{"type": "required_input_missing", "message": "Required input is missing",
                                "details": "images", "extra_info": {"input_name": "images"}}],
                    "dependent_outputs": ["2"], "class_type": "TPreview"}}),
           J(["4"]));
}

static void test_bad_linked_input(void **state)
{
    (void)state;
    expect(J({"1": {"class_type": "TSource", "inputs": {"width": 8}},
              "2": {"class_type": "TSave", "inputs": {"images": ["1", 0, 1], "filename_prefix": "x"}}}),
           NULL, BASE_E_GRAPH_INVALID,
           J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "Bad linked input, must be a length-2 list of [node_id, slot_index]: images",
              "extra_info": {}}),
           J({"2": {"errors": [{"type": "bad_linked_input",
                                "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                "details": "images",
                                "extra_info": {"input_name": "images", "input_config": ["IMAGE", {}],
                                               "received_value": ["1", 0, 1]}}],
                    "dependent_outputs": ["2"], "class_type": "TSave"}}),
           "[]");
}

static void test_return_type_mismatch(void **state)
{
    (void)state;
    expect(J({"1": {"class_type": "TMask"}, "2": {"class_type": "TSave", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}), NULL, BASE_E_GRAPH_INVALID,
           J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "Return type mismatch between linked nodes: images, received_type(MASK) mismatch input_type(IMAGE)",
              "extra_info": {}}),
           J({"2": {"errors": [{"type": "return_type_mismatch", "message": "Return type mismatch between linked nodes",
                                "details": "images, received_type(MASK) mismatch input_type(IMAGE)",
                                "extra_info": {"input_name": "images", "input_config": ["IMAGE", {}],
                                               "received_type": "MASK", "linked_node": ["1", 0]}}],
                    "dependent_outputs": ["2"], "class_type": "TSave"}}),
           "[]");
    /* A combo only takes a wildcard source; the message shows the options like Python. */
    expect(J({"1": {"class_type": "TInt", "inputs": {"value": 1}}, "0": {"class_type": "TSource", "inputs": {"width": 8}},
              "2": {"class_type": "TSampler", "inputs": {"image": ["0", 0], "seed": 1, "steps": 1, "cfg": 1,
                    "sampler_name": ["1", 0], "denoise": 1}},
              "3": {"class_type": "TPreview", "inputs": {"images": ["2", 0]}}}),
           NULL, BASE_E_GRAPH_INVALID,
           J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "Return type mismatch between linked nodes: sampler_name, received_type(INT) mismatch input_type(['euler', 'euler_ancestral', 'ddim'])", "extra_info": {}}),
           J({"2": {"errors": [{"type": "return_type_mismatch", "message": "Return type mismatch between linked nodes",
                                "details": "sampler_name, received_type(INT) mismatch input_type(['euler', 'euler_ancestral', 'ddim'])",
                                "extra_info": {"input_name": "sampler_name",
                                               "input_config": [["euler", "euler_ancestral", "ddim"], {}],
                                               "received_type": "INT", "linked_node": ["1", 0]}}],
                    "dependent_outputs": ["3"], "class_type": "TSampler"}}),
           "[]");
    /* "*" takes anything; a second output slot is typed by its own entry. */
    expect(J({"1": {"class_type": "TMulti"}, "2": {"class_type": "TAny", "inputs": {"value": ["1", 1]}},
              "3": {"class_type": "TPreview", "inputs": {"images": ["1", 0]}}}),
           NULL, 0, NULL, "{}", J(["2", "3"]));
}

static void test_value_errors(void **state)
{
    (void)state;
    expect(J({"1": {"class_type": "TSource", "inputs": {"width": 0}},
              "2": {"class_type": "TSampler", "inputs": {"image": ["1", 0], "seed": -1, "steps": "abc", "cfg": null,
                    "sampler_name": "foo", "denoise": 1.5}},
              "3": {"class_type": "TSave", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}),
           NULL, BASE_E_GRAPH_INVALID,
           J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "Value 0 smaller than min of 1: width\nValue -1 smaller than min of 0: seed\nFailed to convert an input value to a INT value: steps, abc, invalid literal for int() with base 10: 'abc'\nFailed to convert an input value to a FLOAT value: cfg, None, float() argument must be a string or a real number, not 'NoneType'\nValue not in list: sampler_name: 'foo' not in ['euler', 'euler_ancestral', 'ddim']\nValue 1.5 bigger than max of 1.0: denoise", "extra_info": {}}),
           J({"1": {"errors": [{"type": "value_smaller_than_min", "message": "Value 0 smaller than min of 1",
                                "details": "width",
                                "extra_info": {"input_name": "width",
                                               "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 8}],
                                               "received_value": 0}}],
                    "dependent_outputs": ["3"], "class_type": "TSource"},
              "2": {"errors": [
                  {"type": "value_smaller_than_min", "message": "Value -1 smaller than min of 0", "details": "seed",
                   "extra_info": {"input_name": "seed",
                                  "input_config": ["INT", {"default": 0, "min": 0, "max": 18446744073709551615,
                                                           "control_after_generate": true}],
                                  "received_value": -1}},
                  {"type": "invalid_input_type", "message": "Failed to convert an input value to a INT value",
                   "details": "steps, abc, invalid literal for int() with base 10: 'abc'",
                   "extra_info": {"input_name": "steps", "input_config": ["INT", {"default": 20, "min": 1, "max": 10000}],
                                  "received_value": "abc",
                                  "exception_message": "invalid literal for int() with base 10: 'abc'"}},
                  {"type": "invalid_input_type", "message": "Failed to convert an input value to a FLOAT value",
                   "details": "cfg, None, float() argument must be a string or a real number, not 'NoneType'",
                   "extra_info": {"input_name": "cfg",
                                  "input_config": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1,
                                                             "round": 0.01}],
                                  "received_value": null,
                                  "exception_message": "float() argument must be a string or a real number, not 'NoneType'"}},
                  {"type": "value_not_in_list", "message": "Value not in list",
                   "details": "sampler_name: 'foo' not in ['euler', 'euler_ancestral', 'ddim']",
                   "extra_info": {"input_name": "sampler_name", "input_config": [["euler", "euler_ancestral", "ddim"], {}],
                                  "received_value": "foo"}},
                  {"type": "value_bigger_than_max", "message": "Value 1.5 bigger than max of 1.0", "details": "denoise",
                   "extra_info": {"input_name": "denoise",
                                  "input_config": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}],
                                  "received_value": 1.5}}],
                    "dependent_outputs": ["3"], "class_type": "TSampler"}}),
           "[]");
    /* More than 20 options: summarised, and no input_config. */
    expect(J({"1": {"class_type": "TBig", "inputs": {"choice": "zz"}},
              "2": {"class_type": "TPreview", "inputs": {"images": ["1", 0]}}}),
           NULL, BASE_E_GRAPH_INVALID,
           J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "Value not in list: choice: 'zz' not in (list of length 25)", "extra_info": {}}),
           J({"1": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                                "details": "choice: 'zz' not in (list of length 25)",
                                "extra_info": {"input_name": "choice", "input_config": null, "received_value": "zz"}}],
                    "dependent_outputs": ["2"], "class_type": "TBig"}}),
           "[]");
}

static void test_custom_validation(void **state)
{
    (void)state;
    expect(J({"1": {"class_type": "TLoad", "inputs": {"image": "missing.png"}},
              "2": {"class_type": "TPreview", "inputs": {"images": ["1", 0]}}}),
           NULL, BASE_E_GRAPH_INVALID,
           J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "Custom validation failed for node: image - Invalid image file: missing.png", "extra_info": {}}),
           J({"1": {"errors": [{"type": "custom_validation_failed", "message": "Custom validation failed for node",
                                "details": "image - Invalid image file: missing.png",
                                "extra_info": {"input_name": "image",
                                               "input_config": [["a.png", "b.png"], {"image_upload": true}],
                                               "received_value": "missing.png"}}],
                    "dependent_outputs": ["2"], "class_type": "TLoad"}}),
           "[]");
    /* Inputs the validator names skip the combo check: a file outside the list passes. */
    expect(J({"1": {"class_type": "TLoad", "inputs": {"image": "sub/x.png"}},
              "2": {"class_type": "TPreview", "inputs": {"images": ["1", 0]}}}),
           NULL, 0, NULL, "{}", J(["2"]));
}

static void test_dependency_cycle(void **state)
{
    (void)state;
    const char *err = J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                         "details": "Dependency cycle detected: Node '1' is part of a dependency cycle of 1 node", "extra_info": {}});
    expect(J({"1": {"class_type": "TPass", "inputs": {"image": ["3", 0]}},
              "2": {"class_type": "TPass", "inputs": {"image": ["1", 0]}},
              "3": {"class_type": "TPass", "inputs": {"image": ["2", 0]}},
              "4": {"class_type": "TSave", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
              "5": {"class_type": "TSource", "inputs": {"width": 8}},
              "6": {"class_type": "TPreview", "inputs": {"images": ["5", 0]}}}),
           NULL, 0, NULL,
           J({"1": {"errors": [{"type": "dependency_cycle", "message": "Dependency cycle detected",
                                "details": "Node '1' is part of a dependency cycle of 3 nodes",
                                "extra_info": {"cycle_nodes": ["1", "2", "3"]}}],
                    "dependent_outputs": ["4"], "class_type": "TPass"},
              "2": {"errors": [{"type": "dependency_cycle", "message": "Dependency cycle detected",
                                "details": "Node '2' is part of a dependency cycle of 3 nodes",
                                "extra_info": {"cycle_nodes": ["1", "2", "3"]}}],
                    "dependent_outputs": ["4"], "class_type": "TPass"},
              "3": {"errors": [{"type": "dependency_cycle", "message": "Dependency cycle detected",
                                "details": "Node '3' is part of a dependency cycle of 3 nodes",
                                "extra_info": {"cycle_nodes": ["1", "2", "3"]}}],
                    "dependent_outputs": ["4"], "class_type": "TPass"}}),
           J(["6"]));
    /* A node linked to itself. */
    expect(J({"1": {"class_type": "TPass", "inputs": {"image": ["1", 0]}}, "2": {"class_type": "TSave", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}), NULL,
           BASE_E_GRAPH_INVALID, err,
           J({"1": {"errors": [{"type": "dependency_cycle", "message": "Dependency cycle detected",
                                "details": "Node '1' is part of a dependency cycle of 1 node",
                                "extra_info": {"cycle_nodes": ["1"]}}],
                    "dependent_outputs": ["2"], "class_type": "TPass"}}),
           "[]");
}

static void test_dangling_links(void **state)
{
    (void)state;
    /* On an output itself: exception_during_validation. */
    expect(J({"1": {"class_type": "TSave", "inputs": {"images": ["99", 0], "filename_prefix": "x"}}}), NULL,
           BASE_E_GRAPH_INVALID,
           J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "Exception when validating node: Input 'images' of node '1' is linked to node '99', which does not exist",
              "extra_info": {}}),
           J({"1": {"errors": [{"type": "exception_during_validation", "message": "Exception when validating node",
                                "details": "Input 'images' of node '1' is linked to node '99', which does not exist",
                                "extra_info": {"exception_type": "KeyError", "traceback": []}}],
                    "dependent_outputs": ["1"], "class_type": "TSave"}}),
           "[]");
    /* Below an output: recorded once on the node, in the words of its first consumer. */
    expect(J({"1": {"class_type": "TPass", "inputs": {"image": ["99", 0]}}, "2": {"class_type": "TSave", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
              "3": {"class_type": "TPreview", "inputs": {"images": ["1", 0]}}}),
           NULL, BASE_E_GRAPH_INVALID,
           J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "Exception when validating inner node: Input 'image' of node '1' is linked to node '99', which does not exist", "extra_info": {}}),
           J({"1": {"errors": [{"type": "exception_during_inner_validation",
                                "message": "Exception when validating inner node",
                                "details": "Input 'image' of node '1' is linked to node '99', which does not exist",
                                "extra_info": {"input_name": "images", "input_config": ["IMAGE", {}],
                                               "exception_message": "Input 'image' of node '1' is linked to node '99', which does not exist",
                                               "exception_type": "KeyError", "traceback": [], "linked_node": ["1", 0]}}],
                    "dependent_outputs": ["2", "3"], "class_type": "TPass"}}),
           "[]");
    /* An output index the source does not have. */
    expect(J({"1": {"class_type": "TSource", "inputs": {"width": 8}},
              "2": {"class_type": "TSave", "inputs": {"images": ["1", 3], "filename_prefix": "x"}},
              "3": {"class_type": "TAny", "inputs": {"value": ["2", 0]}}}),
           NULL, BASE_E_GRAPH_INVALID,
           J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "Exception when validating node: Input 'images' of node '2' is linked to output 3 of node '1' (TSource), which has only 1 output\nException when validating node: Input 'value' of node '3' is linked to output 0 of node '2' (TSave), which has no outputs",
              "extra_info": {}}),
           J({"2": {"errors": [{"type": "exception_during_validation", "message": "Exception when validating node",
                                "details": "Input 'images' of node '2' is linked to output 3 of node '1' (TSource), which has only 1 output",
                                "extra_info": {"exception_type": "IndexError", "traceback": []}}],
                    "dependent_outputs": ["2"], "class_type": "TSave"},
              "3": {"errors": [{"type": "exception_during_validation", "message": "Exception when validating node",
                                "details": "Input 'value' of node '3' is linked to output 0 of node '2' (TSave), which has no outputs",
                                "extra_info": {"exception_type": "IndexError", "traceback": []}}],
                    "dependent_outputs": ["3"], "class_type": "TAny"}}),
           "[]");
    /* A two-element list that is not [string, integer]. The exception ends the node's
     * check, so the bad seed and the missing inputs after it are not reported (ComfyUI). */
    expect(J({"1": {"class_type": "TSource", "inputs": {"width": 8}},
              "2": {"class_type": "TSampler", "inputs": {"image": ["1", "0"], "seed": -5}},
              "3": {"class_type": "TPreview", "inputs": {"images": ["2", 0]}}}),
           NULL, BASE_E_GRAPH_INVALID,
           J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "Exception when validating inner node: Input 'image' of node '2' has a malformed link ['1', '0']: a link must be [node_id (string), output_index (integer)]", "extra_info": {}}),
           J({"2": {"errors": [{"type": "exception_during_inner_validation",
                                "message": "Exception when validating inner node",
                                "details": "Input 'image' of node '2' has a malformed link ['1', '0']: a link must be [node_id (string), output_index (integer)]",
                                "extra_info": {"input_name": "images", "input_config": ["IMAGE", {}],
                                               "exception_message": "Input 'image' of node '2' has a malformed link ['1', '0']: a link must be [node_id (string), output_index (integer)]",
                                               "exception_type": "TypeError", "traceback": [], "linked_node": ["2", 0]}}],
                    "dependent_outputs": ["3"], "class_type": "TSampler"}}),
           "[]");
    /* Links through inputs the class does not declare are followed too. */
    expect(J({"1": {"class_type": "TSource", "inputs": {"width": 8}},
              "2": {"class_type": "TSave", "inputs": {"images": ["1", 0], "filename_prefix": "x", "more": ["7", 0]}}}),
           NULL, BASE_E_GRAPH_INVALID,
           J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "Exception when validating node: Input 'more' of node '2' is linked to node '7', which does not exist",
              "extra_info": {}}),
           J({"2": {"errors": [{"type": "exception_during_validation", "message": "Exception when validating node",
                                "details": "Input 'more' of node '2' is linked to node '7', which does not exist",
                                "extra_info": {"exception_type": "KeyError", "traceback": []}}],
                    "dependent_outputs": ["2"], "class_type": "TSave"}}),
           "[]");
}

static void test_invalid_prompt(void **state)
{
    (void)state;
    expect(J({"1": {"class_type": "TSource", "inputs": {}}, "2": {"inputs": {}}, "3": {"class_type": "Nope"}}), NULL,
           BASE_E_GRAPH_INVALID,
           J({"type": "invalid_prompt", "message": "Cannot execute because a node is missing the class_type property.",
              "details": "Node ID '#2'", "extra_info": {}}),
           "{}", "[]");
    expect(J({"1": {"class_type": "TSource", "inputs": {}}, "x": 5}), NULL, BASE_E_GRAPH_INVALID,
           J({"type": "invalid_prompt", "message": "Cannot execute because a node is missing the class_type property.",
              "details": "Node ID '#x'", "extra_info": {}}),
           "{}", "[]");
    expect(J({"1": {"class_type": "Nope", "inputs": {}, "_meta": {"title": "My Node"}}, "2": {"inputs": {}}}), NULL,
           BASE_E_GRAPH_INVALID,
           J({"type": "invalid_prompt", "message": "Cannot execute because node Nope does not exist.",
              "details": "Node ID '#1'",
              "extra_info": {"node_id": "1", "class_type": "Nope", "node_title": "My Node"}}),
           "{}", "[]");
    expect(J({"7": {"class_type": 12}}), NULL, BASE_E_GRAPH_INVALID,
           J({"type": "invalid_prompt", "message": "Cannot execute because node 12 does not exist.",
              "details": "Node ID '#7'", "extra_info": {"node_id": "7", "class_type": "12", "node_title": "12"}}),
           "{}", "[]");
}

static void test_no_outputs(void **state)
{
    (void)state;
    const char *none = J({"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "",
                          "extra_info": {}});
    expect(J({"1": {"class_type": "TSource", "inputs": {"width": 8}}}), NULL, BASE_E_GRAPH_INVALID, none, "{}", "[]");
    expect("{}", NULL, BASE_E_GRAPH_INVALID, none, "{}", "[]");
}

static void test_partial_targets(void **state)
{
    (void)state;
    const char *p = J({"1": {"class_type": "TSource", "inputs": {"width": 8}},
                       "3": {"class_type": "TSave", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
                       "4": {"class_type": "TPreview", "inputs": {"images": ["1", 0]}},
                       "5": {"class_type": "TPreview", "inputs": {}}});
    const char *none = J({"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "",
                          "extra_info": {}});
    const char *e5 = J({"5": {"errors": [{"type": "required_input_missing", "message": "Required input is missing",
                                          "details": "images", "extra_info": {"input_name": "images"}}],
                              "dependent_outputs": ["5"], "class_type": "TPreview"}});
    expect(p, NULL, 0, NULL, e5, J(["3", "4"]));
    expect(p, "null", 0, NULL, e5, J(["3", "4"]));
    expect(p, J(["4"]), 0, NULL, "{}", J(["4"]));
    expect(p, J(["4", "3", "4"]), 0, NULL, "{}", J(["3", "4"]));
    expect(p, "[]", BASE_E_GRAPH_INVALID, none, "{}", "[]");
    expect(p, J(["1", 4, "99"]), BASE_E_GRAPH_INVALID, none, "{}", "[]");
    expect(p, J({"4": true}), BASE_E_GRAPH_INVALID, none, "{}", "[]");
    expect(p, J(["5"]), BASE_E_GRAPH_INVALID,
           J({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "Required input is missing: images", "extra_info": {}}),
           e5, "[]");
}

static void test_dependent_outputs(void **state)
{
    (void)state;
    /* One bad source under two outputs; a third output is fine, so the prompt passes. */
    expect(J({"1": {"class_type": "TSource", "inputs": {"width": 0}},
              "2": {"class_type": "TPass", "inputs": {"image": ["1", 0]}},
              "3": {"class_type": "TSave", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
              "4": {"class_type": "TPreview", "inputs": {"images": ["1", 0]}},
              "5": {"class_type": "TSource", "inputs": {"width": 16}},
              "6": {"class_type": "TPreview", "inputs": {"images": ["5", 0]}},
              "7": {"class_type": "TPreview", "inputs": {"images": ["2", 5]}}}),
           NULL, 0, NULL,
           J({"1": {"errors": [{"type": "value_smaller_than_min", "message": "Value 0 smaller than min of 1",
                                "details": "width",
                                "extra_info": {"input_name": "width",
                                               "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 8}],
                                               "received_value": 0}}],
                    "dependent_outputs": ["3", "4"], "class_type": "TSource"},
              "7": {"errors": [{"type": "exception_during_validation", "message": "Exception when validating node",
                                "details": "Input 'images' of node '7' is linked to output 5 of node '2' (TPass), which has only 1 output",
                                "extra_info": {"exception_type": "IndexError", "traceback": []}}],
                    "dependent_outputs": ["7"], "class_type": "TPreview"}}),
           J(["6"]));
}

/* ------------------------------------------------------------------ POST /prompt */

static void test_check_request(void **state)
{
    (void)state;
    const char *bodies[] = {"{}", J({"prompt_x": {}}), "[]", "null"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        json_t *b = tg_parse(bodies[i]);
        graph_t *g = (graph_t *)0x1;
        graph_validation_t res;
        assert_int_equal(graph_check_request(b, reg, NULL, &g, &res), BASE_E_GRAPH_INVALID);
        assert_null(g);
        tg_expect_json(res.error, J({"type": "no_prompt", "message": "No prompt provided",
                                     "details": "No prompt provided", "extra_info": {}}));
        tg_expect_json(res.node_errors, "{}");
        assert_null(res.prompt);
        graph_validation_free(&res);
        json_free(b);
    }
    json_t *b = tg_parse(J({"prompt": [1, 2]}));
    graph_t *g = (graph_t *)0x1;
    graph_validation_t res;
    assert_int_equal(graph_check_request(b, reg, NULL, &g, &res), BASE_E_GRAPH_FORMAT);
    assert_null(g);
    tg_expect_json(res.error, J({"type": "invalid_prompt", "message": "Cannot execute because the prompt is malformed.",
                                 "details": "the prompt must be a JSON object mapping node ids to nodes",
                                 "extra_info": {}}));
    graph_validation_free(&res);
    json_free(b);

    b = tg_parse(J({"prompt": {"1": {"class_type": "TSource", "inputs": {"width": 8}},
                               "2": {"class_type": "TPreview", "inputs": {"images": ["1", 0]}},
                               "3": {"class_type": "TPreview", "inputs": {"images": ["1", 0]}}},
                    "partial_execution_targets": ["3"], "client_id": "abc"}));
    assert_int_equal(graph_check_request(b, reg, NULL, &g, &res), 0);
    assert_non_null(g);
    assert_int_equal(g->n, 3);
    assert_int_equal(res.n_outputs, 1);
    assert_string_equal(res.outputs[0], "3");
    graph_validation_free(&res);
    graph_free(g);
    json_free(b);

    /* A failing prompt frees its graph. */
    b = tg_parse(J({"prompt": {"1": {"class_type": "TPreview", "inputs": {}}}}));
    g = (graph_t *)0x1;
    assert_int_equal(graph_check_request(b, reg, NULL, &g, &res), BASE_E_GRAPH_INVALID);
    assert_null(g);
    assert_string_equal(json_str(json_object_get(res.error, "type")), "prompt_outputs_failed_validation");
    graph_validation_free(&res);
    json_free(b);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    graph_validation_t res;
    assert_int_equal(graph_validate(NULL, reg, NULL, NULL, &res), BASE_E_INVAL);
    graph_validation_free(&res);
    graph_validation_free(NULL);
}

/* ------------------------------------------------------------------ scale */

/* "0": TSource, "1".."n-1": TPass chain, "n": TSave; with `bottom` replacing node 0's
 * inputs object when given. */
static char *chain_text(size_t n, const char *bottom)
{
    base_buf_t b = BASE_BUF_INIT;
    assert_int_equal(base_buf_printf(&b, "{\"0\": {\"class_type\": \"TSource\", \"inputs\": %s}",
                                     bottom ? bottom : "{\"width\": 8}"), 0);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(base_buf_printf(&b, ", \"%zu\": {\"class_type\": \"TPass\", \"inputs\": {\"image\": [\"%zu\", 0]}}",
                                         i, i - 1), 0);
    assert_int_equal(base_buf_printf(&b, ", \"%zu\": {\"class_type\": \"TSave\", \"inputs\": {\"images\": [\"%zu\", 0], "
                                         "\"filename_prefix\": \"x\"}}}", n, n - 1), 0);
    return base_buf_take(&b);
}

static void test_long_chain(void **state)
{
    (void)state;
    const size_t n = 100000;
    char *text = chain_text(n, NULL);
    clock_t t0 = clock();
    graph_t *g;
    graph_validation_t res;
    assert_int_equal(tg_validate(reg, text, NULL, &g, &res), 0);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    print_message("100k-node chain validated in %.2f s\n", secs);
    assert_int_equal(res.n_outputs, 1);
    assert_int_equal(json_len(res.prompt), n + 1);
    graph_validation_free(&res);
    graph_free(g);
    free(text);

    /* The error at the bottom makes the whole chain invalid without entries of its own. */
    text = chain_text(n, "{\"width\": -3}");
    assert_int_equal(tg_validate(reg, text, NULL, &g, &res), BASE_E_GRAPH_INVALID);
    assert_int_equal(json_len(res.node_errors), 1);
    const json_t *e = json_object_get(res.node_errors, "0");
    tg_expect_json(json_object_get(e, "dependent_outputs"), J(["100000"]));
    assert_string_equal(json_str(json_object_get(json_at(json_object_get(e, "errors"), 0), "message")),
                        "Value -3 smaller than min of 1");
    graph_validation_free(&res);
    graph_free(g);
    free(text);
}

static void test_long_cycle(void **state)
{
    (void)state;
    /* 3000 nodes in one cycle: every node is reported, each list capped at 256 ids. */
    const size_t n = 3000;
    char *text = chain_text(n, "{\"width\": 8}");
    /* Close the loop: node 1 reads from node n-1 instead of node 0. */
    char *at = strstr(text, "\"1\": {\"class_type\": \"TPass\", \"inputs\": {\"image\": [\"0\", 0]}}");
    assert_non_null(at);
    base_buf_t b = BASE_BUF_INIT;
    assert_int_equal(base_buf_append(&b, text, (size_t)(at - text)), 0);
    assert_int_equal(base_buf_printf(&b, "\"1\": {\"class_type\": \"TPass\", \"inputs\": {\"image\": [\"%zu\", 0]}}", n - 1),
                     0);
    assert_int_equal(base_buf_puts(&b, at + strlen("\"1\": {\"class_type\": \"TPass\", \"inputs\": {\"image\": [\"0\", 0]}}")),
                     0);
    free(text);
    graph_t *g;
    graph_validation_t res;
    assert_int_equal(tg_validate(reg, b.data, NULL, &g, &res), BASE_E_GRAPH_INVALID);
    assert_int_equal(json_len(res.node_errors), n - 1);
    const json_t *err = json_at(json_object_get(json_object_get(res.node_errors, "17"), "errors"), 0);
    assert_string_equal(json_str(json_object_get(err, "details")), "Node '17' is part of a dependency cycle of 2999 nodes");
    const json_t *ids = json_object_get(json_object_get(err, "extra_info"), "cycle_nodes");
    assert_int_equal(json_len(ids), 256);
    assert_string_equal(json_str(json_at(ids, 0)), "1");
    assert_string_equal(json_str(json_at(ids, 255)), "256");
    graph_validation_free(&res);
    graph_free(g);
    base_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_prompt_is_coerced),
        cmocka_unit_test(test_coercion),
        cmocka_unit_test(test_required_input_missing),
        cmocka_unit_test(test_bad_linked_input),
        cmocka_unit_test(test_return_type_mismatch),
        cmocka_unit_test(test_value_errors),
        cmocka_unit_test(test_custom_validation),
        cmocka_unit_test(test_dependency_cycle),
        cmocka_unit_test(test_dangling_links),
        cmocka_unit_test(test_invalid_prompt),
        cmocka_unit_test(test_no_outputs),
        cmocka_unit_test(test_partial_targets),
        cmocka_unit_test(test_dependent_outputs),
        cmocka_unit_test(test_check_request),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_long_chain),
        cmocka_unit_test(test_long_cycle),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
/* clang-format on */
