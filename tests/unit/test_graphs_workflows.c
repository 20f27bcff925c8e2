/* The example workflows shipped in workflows/, checked against weft's real built-in
 * nodes: the valid ones convert and validate, the broken ones fail with the errors their
 * names promise (see workflows/README.md). */
#include "testutil.h"

#include "graphs_testkit.h"
#include "path.h"

/* The JSON written inline with J(...) is laid out by hand. */
/* clang-format off */

static node_registry_t *reg;
static node_env_t env;
static char *base;

static int setup(void **state)
{
    (void)state;
    base = tu_fresh_dir("wf");
    static char in[4096], out[4096], tmp[4096], models[4096];
    snprintf(in, sizeof in, "%s/input", base);
    snprintf(out, sizeof out, "%s/output", base);
    snprintf(tmp, sizeof tmp, "%s/temp", base);
    snprintf(models, sizeof models, "%s/models", base);
    env = (node_env_t){.base_dir = base, .input_dir = in, .output_dir = out, .temp_dir = tmp, .models_dir = models};
    assert_int_equal(node_registry_new(&reg), 0);
    assert_int_equal(node_registry_add_builtins(reg), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    node_registry_free(reg);
    free(base);
    return 0;
}

static json_t *load(const char *rel)
{
    char *text = tu_read_source(rel, NULL);
    json_t *j = tg_parse(text);
    free(text);
    return j;
}

typedef struct {
    int rc;
    graph_t *g;
    graph_validation_t res;
} outcome_t;

static void validate_json(const json_t *prompt, outcome_t *o)
{
    char err[256];
    assert_int_equal(graph_parse(prompt, &o->g, err, sizeof err), 0);
    o->rc = graph_validate(o->g, reg, &env, NULL, &o->res);
}

static void outcome_free(outcome_t *o)
{
    graph_validation_free(&o->res);
    graph_free(o->g);
}

static void expect_outputs(const outcome_t *o, const char *want)
{
    json_t *outs = json_new_array();
    for (size_t i = 0; i < o->res.n_outputs; i++)
        assert_int_equal(json_array_push(outs, json_new_string(o->res.outputs[i])), 0);
    tg_expect_json(outs, want);
    json_free(outs);
}

/* node_errors summarised as "id:type,type;id:type" in report order. */
static void expect_error_types(const outcome_t *o, const char *want)
{
    char got[1024] = "";
    const json_t *ne = o->res.node_errors;
    for (size_t i = 0; i < json_len(ne); i++) {
        if (i)
            strcat(got, ";");
        strcat(got, json_key_at(ne, i));
        strcat(got, ":");
        const json_t *errs = json_object_get(json_at(ne, i), "errors");
        for (size_t k = 0; k < json_len(errs); k++) {
            if (k)
                strcat(got, ",");
            strcat(got, json_str(json_object_get(json_at(errs, k), "type")));
        }
    }
    assert_string_equal(got, want);
}

static const char *error_details(const outcome_t *o, const char *node, size_t k)
{
    const json_t *errs = json_object_get(json_object_get(o->res.node_errors, node), "errors");
    return json_str(json_object_get(json_at(errs, k), "details"));
}

static void test_invert_api(void **state)
{
    (void)state;
    json_t *p = load("workflows/invert.api.json");
    assert_false(graph_is_ui_workflow(p));
    outcome_t o;
    validate_json(p, &o);
    assert_int_equal(o.rc, 0);
    expect_outputs(&o, J(["3"]));
    tg_expect_json(o.res.node_errors, "{}");
    /* Already in coerced form: validation leaves the prompt unchanged. */
    assert_true(json_equal(o.res.prompt, p));
    outcome_free(&o);
    json_free(p);
}

static void test_invert_ui(void **state)
{
    (void)state;
    json_t *w = load("workflows/invert.ui.json"), *api = load("workflows/invert.api.json"), *p;
    assert_true(graph_is_ui_workflow(w));
    char err[256];
    assert_int_equal(graph_convert_ui(w, reg, &env, &p, err, sizeof err), 0);
    /* The API file plus the branch whose ImageInvert is bypassed (its muted preview goes). */
    assert_int_equal(json_object_set(api, "9", tg_parse(J({"inputs": {"images": ["1", 0]},
                                                           "class_type": "PreviewImage",
                                                           "_meta": {"title": "Preview Image"}}))), 0);
    char *want = json_dump(api, JSON_COMPACT);
    tg_expect_json(p, want);
    free(want);
    outcome_t o;
    validate_json(p, &o);
    assert_int_equal(o.rc, 0);
    expect_outputs(&o, J(["3", "9"]));
    tg_expect_json(o.res.node_errors, "{}");
    outcome_free(&o);
    json_free(p);
    json_free(api);
    json_free(w);
}

static void test_batch_api(void **state)
{
    (void)state;
    json_t *p = load("workflows/batch.api.json");
    outcome_t o;
    validate_json(p, &o);
    assert_int_equal(o.rc, 0);
    expect_outputs(&o, J(["5", "6"]));
    tg_expect_json(o.res.node_errors, "{}");
    outcome_free(&o);
    json_free(p);
}

/* The Stable Diffusion workflows: the editor files convert to the API files, and both validate
 * once the demo checkpoint name and the source image exist (validation only lists files). */
static void sd_files(void)
{
    char p[4200];
    assert_int_equal(base_path_mkdirs(base, "models/checkpoints"), 0);
    assert_int_equal(base_path_mkdirs(base, "input"), 0);
    snprintf(p, sizeof p, "%s/checkpoints/weft-demo-tiny.safetensors", env.models_dir);
    tu_write_file(p, "x", 1);
    snprintf(p, sizeof p, "%s/example.png", env.input_dir);
    tu_write_file(p, "x", 1);
}

static void check_sd(const char *ui_file, const char *api_file, const char *outputs)
{
    sd_files();
    json_t *w = load(ui_file), *api = load(api_file), *p;
    char err[256];
    assert_int_equal(graph_convert_ui(w, reg, &env, &p, err, sizeof err), 0);
    if (!json_equal(p, api)) {
        char *got = json_dump(p, JSON_COMPACT);
        fail_msg("%s converts to %s", ui_file, got);
    }
    outcome_t o;
    validate_json(api, &o);
    if (o.rc) {
        char *e = json_dump(o.res.node_errors, JSON_COMPACT);
        fail_msg("%s: %s", api_file, e);
    }
    expect_outputs(&o, outputs);
    outcome_free(&o);
    json_free(p);
    json_free(api);
    json_free(w);
}

static void test_sd_txt2img(void **state)
{
    (void)state;
    check_sd("workflows/txt2img.ui.json", "workflows/txt2img.api.json", J(["9"]));
}

static void test_sd_img2img(void **state)
{
    (void)state;
    check_sd("workflows/img2img.ui.json", "workflows/img2img.api.json", J(["9"]));
}

static void test_broken_cycle(void **state)
{
    (void)state;
    json_t *p = load("workflows/broken/cycle.api.json");
    outcome_t o;
    validate_json(p, &o);
    assert_int_equal(o.rc, BASE_E_GRAPH_INVALID);
    expect_outputs(&o, "[]");
    expect_error_types(&o, "2:dependency_cycle;3:dependency_cycle");
    assert_string_equal(error_details(&o, "3", 0), "Node '3' is part of a dependency cycle of 2 nodes");
    tg_expect_json(json_object_get(json_object_get(o.res.node_errors, "2"), "dependent_outputs"), J(["4"]));
    assert_string_equal(json_str(json_object_get(o.res.error, "type")), "prompt_outputs_failed_validation");
    outcome_free(&o);
    json_free(p);
}

static void test_broken_missing_input(void **state)
{
    (void)state;
    json_t *p = load("workflows/broken/missing_input.api.json");
    outcome_t o;
    validate_json(p, &o);
    assert_int_equal(o.rc, BASE_E_GRAPH_INVALID);
    expect_outputs(&o, "[]");
    expect_error_types(&o, "1:required_input_missing;3:required_input_missing");
    assert_string_equal(error_details(&o, "1", 0), "height");
    assert_string_equal(error_details(&o, "3", 0), "images");
    tg_expect_json(o.res.error, J({"type": "prompt_outputs_failed_validation",
                                   "message": "Prompt outputs failed validation",
                                   "details": "Required input is missing: height\nRequired input is missing: images", "extra_info": {}}));
    outcome_free(&o);
    json_free(p);
}

static void test_broken_type_mismatch(void **state)
{
    (void)state;
    json_t *p = load("workflows/broken/type_mismatch.api.json");
    outcome_t o;
    validate_json(p, &o);
    assert_int_equal(o.rc, BASE_E_GRAPH_INVALID);
    expect_error_types(&o, "3:return_type_mismatch");
    assert_string_equal(error_details(&o, "3", 0), "width, received_type(IMAGE) mismatch input_type(INT)");
    outcome_free(&o);
    json_free(p);
}

static void test_broken_bad_value(void **state)
{
    (void)state;
    json_t *p = load("workflows/broken/bad_value.api.json");
    outcome_t o;
    validate_json(p, &o);
    assert_int_equal(o.rc, BASE_E_GRAPH_INVALID);
    expect_error_types(&o, "1:value_smaller_than_min,invalid_input_type,value_bigger_than_max;2:value_not_in_list");
    assert_string_equal(error_details(&o, "1", 1), "batch_size, two, invalid literal for int() with base 10: 'two'");
    assert_string_equal(error_details(&o, "2", 0),
                        "upscale_method: 'nearest' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']");
    const json_t *e = json_at(json_object_get(json_object_get(o.res.node_errors, "1"), "errors"), 2);
    assert_string_equal(json_str(json_object_get(e, "message")), "Value 16777216 bigger than max of 16777215");
    outcome_free(&o);
    json_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invert_api),
        cmocka_unit_test(test_invert_ui),
        cmocka_unit_test(test_batch_api),
        cmocka_unit_test(test_sd_txt2img),
        cmocka_unit_test(test_sd_img2img),
        cmocka_unit_test(test_broken_cycle),
        cmocka_unit_test(test_broken_missing_input),
        cmocka_unit_test(test_broken_type_mismatch),
        cmocka_unit_test(test_broken_bad_value),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
/* clang-format on */
