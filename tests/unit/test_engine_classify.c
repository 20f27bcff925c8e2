/* The classification workflows of workflows/ run end to end through the engine with weft's
 * real nodes: classify.ui.json converts to classify.api.json; classify.api.json classifies an
 * example PNG with the demo classifier (probabilities from tests/reference/resnet.py) and its
 * gates send the image to SaveImage when the threshold passes and to PreviewImage when it
 * fails; txt2img_classify.api.json generates an image with the tiny SD demo checkpoint and
 * routes it to exactly one of the two outputs, as its threshold decided. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "classify/classify.h"
#include "engine.h"
#include "image/png.h"
#include "sd/sd.h"

/* Probabilities of the demo classifier (seed 1) on the example PNG, printed by
 * /usr/bin/python3 tests/reference/resnet.py ("png_probs"). */
static const double png_probs[10] = {
    2.64225904e-08, 0.000258222357, 1.17859239e-21, 1.35851816e-14, 0.973324545, 0.0264162462,
    1.66322587e-16, 2.52013001e-09, 1.24942682e-24, 9.57577703e-07,
};

static node_registry_t *reg;
static node_env_t env;
static char *base, *models, *input, *output, *temp;

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s/%s", a, b);
    return s;
}

static void copy_file(const char *from, const char *to)
{
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(base_read_file(from, 1u << 26, &data, &len), 0);
    tu_write_file(to, data, len);
    free(data);
}

/* input/example.png: byte ((x*3 + y*5 + c*71) % 97) * 2, 400x300 RGB. */
static void write_example_png(void)
{
    const uint32_t w = 400, h = 300;
    uint8_t *px = malloc((size_t)w * h * 3);
    assert_non_null(px);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (uint32_t c = 0; c < 3; c++)
                px[((size_t)y * w + x) * 3 + c] = (uint8_t)(((x * 3 + y * 5 + c * 71) % 97) * 2);
    node_png_write_t pw = {.pixels = px, .width = w, .height = h, .channels = 3, .text = NULL, .n_text = 0,
                           .level = 1, .no_replace = false};
    char *p = join(input, "example.png"), err[256] = "";
    assert_int_equal(node_png_write_file(p, &pw, err, sizeof err), 0);
    free(p);
    free(px);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(ts_init(1), 0);
    base = tu_fresh_dir("classify_wf");
    models = join(base, "models");
    input = join(base, "input");
    output = join(base, "output");
    temp = join(base, "temp");
    assert_int_equal(base_path_mkdirs(base, "models/checkpoints"), 0);
    assert_int_equal(base_path_mkdirs(base, "models/classifiers"), 0);
    assert_int_equal(base_path_mkdirs(base, "models/clip_tokenizer"), 0);
    assert_int_equal(base_path_mkdirs(base, "input"), 0);
    assert_int_equal(base_path_mkdirs(base, "output"), 0);
    assert_int_equal(base_path_mkdirs(base, "temp"), 0);
    char err[512] = "", p[4096];
    snprintf(p, sizeof p, "%s/classifiers/weft-demo-classifier.safetensors", models);
    if (cls_demo_write(p, NULL, 1, err, sizeof err))
        fail_msg("%s", err);
    snprintf(p, sizeof p, "%s/checkpoints/weft-demo-tiny.safetensors", models);
    if (sd_demo_write(p, SD_DEMO_TINY, ST_F32, 1, err, sizeof err))
        fail_msg("%s", err);
    const char *tok[] = {"vocab.json", "merges.txt"};
    for (int i = 0; i < 2; i++) {
        char from[4096], to[4096];
        snprintf(from, sizeof from, "%s/nodes/sd/clip_tokenizer/%s", WEFT_SOURCE_DIR, tok[i]);
        snprintf(to, sizeof to, "%s/clip_tokenizer/%s", models, tok[i]);
        copy_file(from, to);
    }
    write_example_png();
    env = (node_env_t){.base_dir = base, .input_dir = input, .output_dir = output, .temp_dir = temp,
                       .models_dir = models};
    assert_int_equal(node_registry_new(&reg), 0);
    assert_int_equal(node_registry_add_builtins(reg), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    node_registry_free(reg);
    node_models_release();
    free(base);
    free(models);
    free(input);
    free(output);
    free(temp);
    return 0;
}

static json_t *load(const char *rel)
{
    char *text = tu_read_source(rel, NULL), err[256] = "";
    json_t *j = NULL;
    if (json_parse(text, strlen(text), &j, err, sizeof err))
        fail_msg("%s: %s", rel, err);
    free(text);
    return j;
}

/* Validates and runs an API prompt whose output nodes are want_outputs ("a,b,c");
 * returns the result (UI outputs by node id). */
static void run(const json_t *prompt, const char *want_outputs, eng_result_t *r)
{
    graph_t *g = NULL;
    char err[256] = "";
    assert_int_equal(graph_parse(prompt, &g, err, sizeof err), 0);
    graph_validation_t v;
    memset(&v, 0, sizeof v);
    if (graph_validate(g, reg, &env, NULL, &v)) {
        char *e = json_dump(v.node_errors, JSON_COMPACT), *e2 = json_dump(v.error, JSON_COMPACT);
        fail_msg("validation: %s %s", e2, e);
    }
    char outs[256] = "";
    for (size_t i = 0; i < v.n_outputs; i++)
        snprintf(outs + strlen(outs), sizeof outs - strlen(outs), "%s%s", i ? "," : "", v.outputs[i]);
    assert_string_equal(outs, want_outputs);
    eng_t *e = NULL;
    eng_config_t cfg = {.reg = reg, .env = &env};
    assert_int_equal(eng_new(&cfg, &e), 0);
    eng_job_t job = {.prompt_id = "p1", .graph = g, .prompt = v.prompt, .outputs = v.outputs,
                     .n_outputs = v.n_outputs};
    memset(r, 0, sizeof *r);
    if (eng_execute(e, &job, r))
        fail_msg("node %s failed: %s", r->error_node ? r->error_node : "?", r->error_message ? r->error_message : "");
    eng_free(e);
    graph_validation_free(&v);
    graph_free(g);
}

static const json_t *ui_of(const eng_result_t *r, const char *node, const char *key)
{
    const json_t *o = json_object_get(json_object_get(r->outputs, node), key);
    if (!o) {
        char *s = json_dump(r->outputs, JSON_COMPACT);
        fail_msg("no UI %s for node %s in %s", key, node, s);
    }
    return o;
}

static const char *text_of(const eng_result_t *r, const char *node)
{
    const json_t *t = ui_of(r, node, "text");
    assert_int_equal(json_len(t), 1);
    return json_str(json_at(t, 0));
}

/* Checks which of the two outputs got the image and that its file exists. */
static void expect_routed(const eng_result_t *r, const char *save, const char *preview, bool saved)
{
    const json_t *s = ui_of(r, save, "images"), *p = ui_of(r, preview, "images");
    assert_int_equal(json_len(s), saved ? 1 : 0);
    assert_int_equal(json_len(p), saved ? 0 : 1);
    const json_t *img = json_at(saved ? s : p, 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", saved ? output : temp, json_str(json_object_get(img, "subfolder")),
             json_str(json_object_get(img, "filename")));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_string_equal(json_str(json_object_get(img, "type")), saved ? "output" : "temp");
}

static void test_classify_ui_converts(void **state)
{
    (void)state;
    json_t *w = load("workflows/classify.ui.json"), *api = load("workflows/classify.api.json"), *p = NULL;
    char err[256] = "";
    assert_true(graph_is_ui_workflow(w));
    if (graph_convert_ui(w, reg, &env, &p, err, sizeof err))
        fail_msg("%s", err);
    if (!json_equal(p, api)) {
        char *got = json_dump(p, JSON_COMPACT);
        fail_msg("classify.ui.json converts to %s", got);
    }
    json_free(p);
    json_free(api);
    json_free(w);
}

static void test_classify_workflow(void **state)
{
    (void)state;
    json_t *api = load("workflows/classify.api.json");
    eng_result_t r;
    run(api, "3,6,8", &r);
    char want[256];
    snprintf(want, sizeof want, "deer: %.4f\ndog: %.4f\nautomobile: %.4f\ntruck: %.4f\nairplane: %.4f", png_probs[4],
             png_probs[5], png_probs[1], png_probs[9], png_probs[0]);
    assert_string_equal(want, "deer: 0.9733\ndog: 0.0264\nautomobile: 0.0003\ntruck: 0.0000\nairplane: 0.0000");
    assert_string_equal(text_of(&r, "3"), want);
    assert_string_equal(text_of(&r, "4"), "passed: deer 0.9733 >= 0.5000");
    expect_routed(&r, "6", "8", true);
    eng_result_free(&r);

    /* A stricter threshold fails: the image goes to the preview instead. */
    json_t *in4 = json_object_get(json_object_get(api, "4"), "inputs");
    assert_int_equal(json_object_set(in4, "threshold", json_new_real(0.99)), 0);
    run(api, "3,6,8", &r);
    assert_string_equal(text_of(&r, "4"), "failed: deer 0.9733 < 0.9900");
    expect_routed(&r, "6", "8", false);
    eng_result_free(&r);
    json_free(api);
}

static void set_int(json_t *api, const char *node, const char *name, int64_t v)
{
    json_t *in = json_object_get(json_object_get(api, node), "inputs");
    assert_non_null(json_object_get(in, name));
    assert_int_equal(json_object_set(in, name, json_new_int(v)), 0);
}

static void test_txt2img_classify_workflow(void **state)
{
    (void)state;
    json_t *api = load("workflows/txt2img_classify.api.json");
    /* Small and short: the routing is what this test is about. */
    set_int(api, "5", "width", 64);
    set_int(api, "5", "height", 64);
    set_int(api, "3", "steps", 2);
    eng_result_t r;
    run(api, "9,11,15", &r);
    const char *verdict = text_of(&r, "12");
    bool passed = strncmp(verdict, "passed: ", 8) == 0;
    assert_true(passed || strncmp(verdict, "failed: ", 8) == 0);
    expect_routed(&r, "9", "15", passed);
    /* The classification of the decoded image is listed with five labels. */
    const char *labels = text_of(&r, "11");
    size_t lines = 1;
    for (const char *c = labels; *c; c++)
        lines += *c == '\n';
    assert_int_equal(lines, 5);
    eng_result_free(&r);
    json_free(api);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_ui_converts),
        cmocka_unit_test(test_classify_workflow),
        cmocka_unit_test(test_txt2img_classify_workflow),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
