/* Two independent txt2img branches (the tiny random demo checkpoint, the real CLIP tokenizer
 * tables) run with one lane and with two: the images are bit-identical when every lane uses
 * the same number of intra-op threads, and within 1e-5 when the lanes divide the cores; the
 * events are ComfyUI's per node either way. (test_engine_lanes.c has the scheduling cases
 * with non-tensor nodes.) */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine.h"
#include "sd/sd.h"

enum { IMG = 64, PIX = IMG * IMG * 3 };

static char *g_base, *g_models;
static node_env_t g_env;
static node_registry_t *g_reg;
static float g_images[2][PIX]; /* what TGrab saw, by its "slot" input */
static int g_grabbed[2];

/* Output node: copies the IMAGE it gets to g_images[slot]. */
static int grab_exec(node_ctx_t *ctx)
{
    int64_t slot = node_in_i64(ctx, "slot");
    ts_tensor_t *t = node_in_tensor(ctx, "images");
    if (!t || slot < 0 || slot > 1 || ts_numel(t) != PIX)
        return node_fail(ctx, "TGrab: want a 1x%dx%dx3 image in slot 0 or 1", IMG, IMG);
    if (ts_to_host(t, TS_F32, g_images[slot], sizeof g_images[slot]))
        return node_fail_ts(ctx, "TGrab");
    g_grabbed[slot]++;
    json_t *ui = json_new_object(), *list = json_new_array();
    json_array_push(list, json_new_int(slot));
    json_object_set(ui, "slot", list);
    ctx->ui = ui;
    return 0;
}
static const node_input_t grab_in[] = {
    {.name = "images", .type = "IMAGE", .section = NODE_REQUIRED},
    {.name = "slot", .type = "INT", .section = NODE_REQUIRED},
};
static const node_def_t TGrab = {.name = "TGrab", .inputs = grab_in, .n_inputs = 2,
                                 .flags = NODE_OUTPUT_NODE, .execute = grab_exec};

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
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        assert_int_equal(fwrite(buf, 1, n, b), n);
    fclose(a);
    assert_int_equal(fclose(b), 0);
}

static int setup(void **state)
{
    assert_int_equal(ts_init(0), 0); /* intra-op threads = cores */
    g_base = tu_fresh_dir("engine_lanes_sd");
    g_models = join(g_base, "models");
    char *ck = join(g_models, "checkpoints"), *tok = join(g_models, "clip_tokenizer");
    assert_int_equal(mkdir(g_models, 0755), 0);
    assert_int_equal(mkdir(ck, 0755), 0);
    assert_int_equal(mkdir(tok, 0755), 0);
    char *file = join(ck, "tiny.safetensors"), err[512] = "";
    assert_int_equal(sd_demo_write(file, SD_DEMO_TINY, ST_F32, 1, err, sizeof err), 0);
    const char *names[] = {"vocab.json", "merges.txt"};
    for (int i = 0; i < 2; i++) {
        char from[1024];
        snprintf(from, sizeof from, "%s/nodes/sd/clip_tokenizer/%s", WEFT_SOURCE_DIR, names[i]);
        char *to = join(tok, names[i]);
        copy_file(from, to);
        free(to);
    }
    free(file);
    free(ck);
    free(tok);
    g_env = (node_env_t){.base_dir = g_base, .input_dir = g_base, .output_dir = g_base, .temp_dir = g_base,
                         .models_dir = g_models};
    assert_int_equal(node_registry_new(&g_reg), 0);
    assert_int_equal(node_registry_add_builtins(g_reg), 0);
    assert_int_equal(node_registry_add(g_reg, &TGrab), 0);
    return 0;
}

static int teardown(void **state)
{
    node_registry_free(g_reg);
    node_models_release();
    free(g_base);
    free(g_models);
    return 0;
}

/* Two txt2img branches sharing the checkpoint loader. */
#define BRANCH(s, k, seed, text)                                                                              \
    "\"" s "6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"" text "\", \"clip\": [\"4\", 1]}}," \
    "\"" s "7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"blurry\", \"clip\": [\"4\", 1]}},"   \
    "\"" s "5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 64, \"height\": 64, \"batch_size\": 1}}," \
    "\"" s "3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": " seed ", \"steps\": 4, \"cfg\": 7.5,"        \
    " \"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"4\", 0],"               \
    " \"positive\": [\"" s "6\", 0], \"negative\": [\"" s "7\", 0], \"latent_image\": [\"" s "5\", 0]}},"            \
    "\"" s "8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"" s "3\", 0], \"vae\": [\"4\", 2]}},"     \
    "\"" s "9\": {\"class_type\": \"TGrab\", \"inputs\": {\"images\": [\"" s "8\", 0], \"slot\": " k "}}"

static const char *TWO_BRANCHES =
    "{\"4\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": \"tiny.safetensors\"}}," BRANCH(
        "a", "0", "42", "a red fox in the snow") "," BRANCH("b", "1", "7", "a lighthouse at dusk") "}";

typedef struct {
    json_t *ev;
    pthread_mutex_t mu;
} rec_t;

static void on_event(void *ud, const char *type, json_t *data)
{
    rec_t *r = ud;
    pthread_mutex_lock(&r->mu); /* the engine never calls twice at once; this checks nothing breaks if it did */
    json_t *pair = json_new_array();
    json_array_push(pair, json_new_string(type));
    json_array_push(pair, data);
    json_array_push(r->ev, pair);
    pthread_mutex_unlock(&r->mu);
}

static int ev_index(const json_t *ev, const char *type, const char *node)
{
    for (size_t i = 0; i < json_len(ev); i++) {
        const json_t *pair = json_at(ev, i);
        const char *n = json_str(json_object_get(json_at(pair, 1), "node"));
        if (!strcmp(json_str(json_at(pair, 0)), type) && n && !strcmp(n, node))
            return (int)i;
    }
    return -1;
}

/* Runs the two branches on a fresh engine with `lanes` lanes; images land in out. */
static void run(unsigned lanes, unsigned lane_threads, float out[2][PIX])
{
    json_t *j = NULL;
    char err[256];
    assert_int_equal(json_parse(TWO_BRANCHES, strlen(TWO_BRANCHES), &j, err, sizeof err), 0);
    graph_t *g = NULL;
    assert_int_equal(graph_parse(j, &g, err, sizeof err), 0);
    json_free(j);
    graph_validation_t v = {0};
    int rc = graph_validate(g, g_reg, &g_env, NULL, &v);
    if (rc) {
        char *s = json_dump(v.node_errors, JSON_COMPACT);
        print_error("%s\n", s);
        free(s);
    }
    assert_int_equal(rc, 0);
    eng_config_t cfg = {.reg = g_reg, .env = &g_env, .lanes = lanes, .lane_threads = lane_threads};
    eng_t *e = NULL;
    assert_int_equal(eng_new(&cfg, &e), 0);
    rec_t rec = {.ev = json_new_array()};
    pthread_mutex_init(&rec.mu, NULL);
    eng_job_t job = {.prompt_id = "two", .graph = g, .prompt = v.prompt, .outputs = v.outputs,
                     .n_outputs = v.n_outputs, .on_event = on_event, .ud = &rec};
    eng_result_t r;
    memset(g_grabbed, 0, sizeof g_grabbed);
    rc = eng_execute(e, &job, &r);
    if (rc)
        print_error("%s: %s\n", r.error_node ? r.error_node : "-", r.error_message);
    assert_int_equal(rc, 0);
    assert_int_equal(g_grabbed[0], 1);
    assert_int_equal(g_grabbed[1], 1);
    memcpy(out, g_images, sizeof g_images);
    /* The loader and 6 nodes per branch, of which the two negative prompts and the two
     * empty latents are identical: their second copies come from the cache. */
    assert_int_equal(r.n_executed, 11);
    assert_int_equal(r.n_cached, 2);
    /* Per node: executing, its progress, executed; success last. */
    const char *samplers[] = {"a3", "b3"};
    for (int i = 0; i < 2; i++) {
        int ex = ev_index(rec.ev, "executing", samplers[i]), pr = ev_index(rec.ev, "progress", samplers[i]);
        assert_true(ex > 1 && pr > ex);
    }
    int ga = ev_index(rec.ev, "executed", "a9"), gb = ev_index(rec.ev, "executed", "b9");
    assert_true(ga > ev_index(rec.ev, "executing", "a9") && gb > ev_index(rec.ev, "executing", "b9"));
    assert_string_equal(json_str(json_at(json_at(rec.ev, json_len(rec.ev) - 1), 0)), "execution_success");
    eng_result_free(&r);
    json_free(rec.ev);
    pthread_mutex_destroy(&rec.mu);
    eng_free(e);
    graph_validation_free(&v);
    graph_free(g);
}

static float g_serial[2][PIX], g_par[2][PIX];

/* One intra-op thread everywhere: bit-identical. The serial run is on this thread, so its
 * budget is set here; the lanes get theirs from lane_threads. */
static void test_same_bits_same_threads(void **state)
{
    assert_int_equal(ts_set_thread_budget(1), 0);
    run(0, 0, g_serial);
    run(2, 1, g_par);
    assert_memory_equal(g_par, g_serial, sizeof g_serial);
    run(3, 1, g_par);
    assert_memory_equal(g_par, g_serial, sizeof g_serial);
    /* The two branches are different images (different seeds and prompts). */
    double diff = 0;
    for (int i = 0; i < PIX; i++)
        diff += fabs((double)g_serial[0][i] - g_serial[1][i]);
    assert_true(diff / PIX > 1e-3);
    for (int i = 0; i < PIX; i++)
        assert_true(g_serial[0][i] >= 0 && g_serial[0][i] <= 1);
}

/* Lanes dividing the cores between them (and one lane using all of them): the same images
 * within 1e-5. */
static void test_close_with_divided_threads(void **state)
{
    assert_int_equal(ts_set_thread_budget(2), 0);
    run(0, 0, g_serial);
    run(2, 0, g_par);
    double worst = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < PIX; i++)
            worst = fmax(worst, fabs((double)g_par[k][i] - g_serial[k][i]));
    print_message("largest difference, 2 lanes sharing 2 threads vs 1 lane with 2: %g\n", worst);
    assert_true(worst <= 1e-5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_bits_same_threads),
        cmocka_unit_test(test_close_with_divided_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
