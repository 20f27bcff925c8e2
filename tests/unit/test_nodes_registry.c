#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nodes.h"

static int noop_execute(node_ctx_t *ctx)
{
    (void)ctx;
    return 0;
}

static const char *const sampler_opts[] = {"euler", "dpmpp_2m", NULL};

static const node_input_t ks_inputs[] = {
    {.name = "model", .type = "MODEL", .tooltip = "The model."},
    {.name = "seed",
     .type = "INT",
     .flags = NODE_IN_CONTROL_AFTER_GENERATE | NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,
     .idef = BASE_INT(0),
     .imin = BASE_INT(0),
     .imax = BASE_INT_U64MAX,
     .tooltip = "Seed."},
    {.name = "steps",
     .type = "INT",
     .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,
     .idef = BASE_INT(20),
     .imin = BASE_INT(1),
     .imax = BASE_INT(10000)},
    {.name = "cfg",
     .type = "FLOAT",
     .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,
     .fdef = 8.0,
     .fmin = 0.0,
     .fmax = 100.0,
     .fstep = 0.1,
     .fround = 0.01},
    {.name = "sampler_name", .type = "COMBO", .options = sampler_opts, .cdef = "euler"},
    {.name = "offset",
     .type = "INT",
     .flags = NODE_IN_HAS_MIN,
     .idef = BASE_INT(-8),
     .imin = BASE_INT(-64),
     .istep = 8},
    {.name = "exact", .type = "FLOAT", .flags = NODE_IN_ROUND_FALSE, .fdef = 0.5},
    {.name = "flag", .type = "BOOLEAN", .bdef = true, .tooltip = "A switch."},
    {.name = "note", .type = "STRING", .section = NODE_OPTIONAL,
     .flags = NODE_IN_MULTILINE | NODE_IN_DYNAMIC_PROMPTS, .sdef = ""},
    {.name = "any", .type = "*", .section = NODE_OPTIONAL},
    {.name = "prompt", .type = "PROMPT", .section = NODE_HIDDEN},
    {.name = "unique_id", .type = "UNIQUE_ID", .section = NODE_HIDDEN},
};

static const node_output_t ks_outputs[] = {
    {.type = "LATENT", .tooltip = "The denoised latent."},
    {.type = "IMAGE", .name = "preview", .is_list = true},
};

static const node_def_t ks_def = {
    .name = "KSamplerLike",
    .display_name = "KSampler (like)",
    .category = "sampling",
    .description = "Denoises.",
    .python_module = "comfy_extras.nodes_test",
    .inputs = ks_inputs,
    .n_inputs = sizeof ks_inputs / sizeof ks_inputs[0],
    .outputs = ks_outputs,
    .n_outputs = sizeof ks_outputs / sizeof ks_outputs[0],
    .flags = NODE_EXPERIMENTAL,
    .execute = noop_execute,
};

static const node_def_t min_def = {.name = "Minimal", .execute = noop_execute};

static const node_input_t out_inputs[] = {
    {.name = "images", .type = "IMAGE", .flags = NODE_IN_FORCE_INPUT},
    {.name = "prefix", .type = "STRING"},
};
static const node_def_t out_def = {
    .name = "Alpha",
    .inputs = out_inputs,
    .n_inputs = 2,
    .flags = NODE_OUTPUT_NODE | NODE_DEPRECATED,
    .execute = noop_execute,
};

static char *dump(json_t *j)
{
    assert_non_null(j);
    char *s = json_dump(j, JSON_COMPACT);
    json_free(j);
    assert_non_null(s);
    return s;
}

static void test_def_json(void **state)
{
    (void)state;
    char *s = dump(node_def_to_json(&ks_def, NULL));
    assert_string_equal(
        s,
        "{\"input\":{\"required\":{"
        "\"model\":[\"MODEL\",{\"tooltip\":\"The model.\"}],"
        "\"seed\":[\"INT\",{\"default\":0,\"min\":0,\"max\":18446744073709551615,"
        "\"control_after_generate\":true,\"tooltip\":\"Seed.\"}],"
        "\"steps\":[\"INT\",{\"default\":20,\"min\":1,\"max\":10000}],"
        "\"cfg\":[\"FLOAT\",{\"default\":8.0,\"min\":0.0,\"max\":100.0,\"step\":0.1,\"round\":0.01}],"
        "\"sampler_name\":[[\"euler\",\"dpmpp_2m\"],{\"default\":\"euler\"}],"
        "\"offset\":[\"INT\",{\"default\":-8,\"min\":-64,\"step\":8}],"
        "\"exact\":[\"FLOAT\",{\"default\":0.5,\"round\":false}],"
        "\"flag\":[\"BOOLEAN\",{\"default\":true,\"tooltip\":\"A switch.\"}]},"
        "\"optional\":{\"note\":[\"STRING\",{\"default\":\"\",\"multiline\":true,"
        "\"dynamicPrompts\":true}],\"any\":[\"*\"]},"
        "\"hidden\":{\"prompt\":\"PROMPT\",\"unique_id\":\"UNIQUE_ID\"}},"
        "\"input_order\":{\"required\":[\"model\",\"seed\",\"steps\",\"cfg\",\"sampler_name\","
        "\"offset\",\"exact\",\"flag\"],\"optional\":[\"note\",\"any\"],"
        "\"hidden\":[\"prompt\",\"unique_id\"]},"
        "\"output\":[\"LATENT\",\"IMAGE\"],\"output_is_list\":[false,true],"
        "\"output_name\":[\"LATENT\",\"preview\"],"
        "\"name\":\"KSamplerLike\",\"display_name\":\"KSampler (like)\","
        "\"description\":\"Denoises.\",\"python_module\":\"comfy_extras.nodes_test\","
        "\"category\":\"sampling\",\"output_node\":false,"
        "\"output_tooltips\":[\"The denoised latent.\",\"\"],\"experimental\":true}");
    free(s);

    s = dump(node_def_to_json(&min_def, NULL));
    assert_string_equal(s, "{\"input\":{\"required\":{}},\"input_order\":{\"required\":[]},"
                           "\"output\":[],\"output_is_list\":[],\"output_name\":[],"
                           "\"name\":\"Minimal\",\"display_name\":\"Minimal\","
                           "\"description\":\"\",\"python_module\":\"nodes\","
                           "\"category\":\"sd\",\"output_node\":false}");
    free(s);

    s = dump(node_def_to_json(&out_def, NULL));
    assert_string_equal(s, "{\"input\":{\"required\":{\"images\":[\"IMAGE\",{\"forceInput\":true}],"
                           "\"prefix\":[\"STRING\"]}},"
                           "\"input_order\":{\"required\":[\"images\",\"prefix\"]},"
                           "\"output\":[],\"output_is_list\":[],\"output_name\":[],"
                           "\"name\":\"Alpha\",\"display_name\":\"Alpha\","
                           "\"description\":\"\",\"python_module\":\"nodes\","
                           "\"category\":\"sd\",\"output_node\":true,\"deprecated\":true}");
    free(s);

    assert_null(node_def_to_json(NULL, NULL));
}

static void test_registry(void **state)
{
    (void)state;
    node_registry_t *r = NULL;
    assert_int_equal(node_registry_new(&r), 0);
    assert_int_equal(node_registry_count(r), 0);
    assert_null(node_registry_at(r, 0));
    assert_null(node_registry_find(r, "Minimal"));

    assert_int_equal(node_registry_add(r, &min_def), 0);
    assert_int_equal(node_registry_add(r, &ks_def), 0);
    assert_int_equal(node_registry_add(r, &out_def), 0);
    assert_int_equal(node_registry_add(r, &min_def), BASE_E_NODE_DUPLICATE);
    node_def_t same_name = {.name = "KSamplerLike"};
    assert_int_equal(node_registry_add(r, &same_name), BASE_E_NODE_DUPLICATE);
    node_def_t anon = {.name = ""};
    assert_int_equal(node_registry_add(r, &anon), BASE_E_INVAL);
    assert_int_equal(node_registry_add(r, NULL), BASE_E_INVAL);
    node_def_t broken = {.name = "Broken", .n_inputs = 2};
    assert_int_equal(node_registry_add(r, &broken), BASE_E_INVAL);

    assert_int_equal(node_registry_count(r), 3);
    assert_ptr_equal(node_registry_at(r, 0), &out_def);
    assert_ptr_equal(node_registry_at(r, 1), &ks_def);
    assert_ptr_equal(node_registry_at(r, 2), &min_def);
    assert_null(node_registry_at(r, 3));
    assert_ptr_equal(node_registry_find(r, "KSamplerLike"), &ks_def);
    assert_null(node_registry_find(r, "ksamplerlike"));
    assert_null(node_registry_find(r, NULL));

    char *s = dump(node_registry_object_info(r, NULL));
    assert_non_null(strstr(s, "{\"Alpha\":{\"input\":"));
    char *k = strstr(s, "\"KSamplerLike\":{"), *m = strstr(s, "\"Minimal\":{");
    assert_non_null(k);
    assert_non_null(m);
    assert_true(k < m);
    free(s);
    node_registry_free(r);
    node_registry_free(NULL);
}

static void test_many_sorted(void **state)
{
    (void)state;
    /* more than the initial capacity, inserted in reverse and shuffled order */
    enum { N = 100 };
    static char names[N][16];
    static node_def_t defs[N];
    node_registry_t *r = NULL;
    assert_int_equal(node_registry_new(&r), 0);
    for (int i = 0; i < N; i++) {
        int k = (i * 37) % N;
        snprintf(names[i], sizeof names[i], "Node%03d", k);
        defs[i].name = names[i];
        assert_int_equal(node_registry_add(r, &defs[i]), 0);
    }
    assert_int_equal(node_registry_count(r), N);
    for (int i = 0; i < N; i++) {
        char want[16];
        snprintf(want, sizeof want, "Node%03d", i);
        assert_string_equal(node_registry_at(r, (size_t)i)->name, want);
        assert_ptr_equal(node_registry_find(r, want), node_registry_at(r, (size_t)i));
    }
    node_registry_free(r);
}

static int images_fn(const node_env_t *env, node_strlist_t *out)
{
    static const char *const exts[] = {".png", ".jpg", NULL};
    return node_list_files(env->input_dir, exts, false, out);
}

static int failing_fn(const node_env_t *env, node_strlist_t *out)
{
    (void)env;
    out->items = calloc(1, sizeof *out->items);
    out->items[0] = strdup("half");
    out->n = 1;
    return BASE_E_IO;
}

static const node_input_t load_inputs[] = {
    {.name = "image", .type = "COMBO", .flags = NODE_IN_IMAGE_UPLOAD, .options_fn = images_fn},
    {.name = "bad", .type = "COMBO", .options_fn = failing_fn, .tooltip = "t"},
    {.name = "none", .type = "COMBO"},
};
static const node_def_t load_def = {
    .name = "LoadLike",
    .inputs = load_inputs,
    .n_inputs = 3,
    .execute = noop_execute,
};

static int warnings;
static char last_warning[256];
static void capture_log(base_log_level_t lvl, const char *file, int line, const char *msg)
{
    (void)file;
    (void)line;
    if (lvl == BASE_LOG_WARN) {
        warnings++;
        snprintf(last_warning, sizeof last_warning, "%s", msg);
    }
}

static void touch(const char *dir, const char *name)
{
    char p[8192];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    tu_write_file(p, "x", 1);
}

static void test_options_fn(void **state)
{
    (void)state;
    char *dir = tu_fresh_dir("combo");
    touch(dir, "b.png");
    touch(dir, "A.PNG");
    touch(dir, "c.jpg");
    touch(dir, "notes.txt");
    touch(dir, ".hidden.png");
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    assert_int_equal(base_mkdir_p(sub), 0);
    touch(sub, "deep.png");

    node_env_t env = {.base_dir = dir, .input_dir = dir};
    node_strlist_t opts;
    assert_int_equal(node_input_options(&load_inputs[0], &env, &opts), 0);
    assert_int_equal(opts.n, 3);
    assert_string_equal(opts.items[0], "A.PNG");
    assert_string_equal(opts.items[1], "b.png");
    assert_string_equal(opts.items[2], "c.jpg");
    node_strlist_free(&opts);
    assert_null(opts.items);
    assert_int_equal(opts.n, 0);

    /* a failing options_fn gives its error and no list (nothing leaks) */
    assert_int_equal(node_input_options(&load_inputs[1], &env, &opts), BASE_E_IO);
    assert_int_equal(opts.n, 0);
    assert_null(opts.items);
    assert_int_equal(node_input_options(&load_inputs[2], &env, &opts), 0);
    assert_int_equal(opts.n, 0);
    assert_int_equal(node_input_options(NULL, &env, &opts), BASE_E_INVAL);

    /* the failing options_fn shows an empty combo and a warning, not a failed request */
    warnings = 0;
    base_log_set_sink(capture_log);
    json_t *info = node_def_to_json(&load_def, &env);
    base_log_set_sink(NULL);
    assert_int_equal(warnings, 1);
    assert_non_null(strstr(last_warning, "bad"));
    char *s = dump(info);
    assert_string_equal(s, "{\"input\":{\"required\":{"
                           "\"image\":[[\"A.PNG\",\"b.png\",\"c.jpg\"],{\"image_upload\":true}],"
                           "\"bad\":[[],{\"tooltip\":\"t\"}],\"none\":[[]]}},"
                           "\"input_order\":{\"required\":[\"image\",\"bad\",\"none\"]},"
                           "\"output\":[],\"output_is_list\":[],\"output_name\":[],"
                           "\"name\":\"LoadLike\",\"display_name\":\"LoadLike\","
                           "\"description\":\"\",\"python_module\":\"nodes\","
                           "\"category\":\"sd\",\"output_node\":false}");
    free(s);

    /* static options are copied */
    assert_int_equal(node_input_options(&ks_inputs[4], NULL, &opts), 0);
    assert_int_equal(opts.n, 2);
    assert_string_equal(opts.items[1], "dpmpp_2m");
    assert_ptr_not_equal(opts.items[1], sampler_opts[1]);
    node_strlist_free(&opts);
    free(dir);
}

static void test_list_files(void **state)
{
    (void)state;
    char *dir = tu_fresh_dir("tree");
    char p[4096];
    touch(dir, "z.safetensors");
    touch(dir, "a.ckpt");
    touch(dir, "readme.md");
    snprintf(p, sizeof p, "%s/sd15", dir);
    assert_int_equal(base_mkdir_p(p), 0);
    touch(p, "m.SafeTensors");
    snprintf(p, sizeof p, "%s/sd15/inner", dir);
    assert_int_equal(base_mkdir_p(p), 0);
    touch(p, "x.ckpt");
    snprintf(p, sizeof p, "%s/.cache", dir);
    assert_int_equal(base_mkdir_p(p), 0);
    touch(p, "hidden.ckpt");
    /* a symlink loop must not hang or duplicate forever */
    snprintf(p, sizeof p, "%s/sd15/loop", dir);
    assert_int_equal(symlink("..", p), 0);

    static const char *const exts[] = {".ckpt", ".safetensors", NULL};
    node_strlist_t l;
    assert_int_equal(node_list_files(dir, exts, true, &l), 0);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.items[0], "a.ckpt");
    assert_string_equal(l.items[1], "sd15/inner/x.ckpt");
    assert_string_equal(l.items[2], "sd15/m.SafeTensors");
    assert_string_equal(l.items[3], "z.safetensors");
    node_strlist_free(&l);

    assert_int_equal(node_list_files(dir, exts, false, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0], "a.ckpt");
    assert_string_equal(l.items[1], "z.safetensors");
    node_strlist_free(&l);

    assert_int_equal(node_list_files(dir, NULL, false, &l), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[1], "readme.md");
    node_strlist_free(&l);

    snprintf(p, sizeof p, "%s/missing", dir);
    assert_int_equal(node_list_files(p, NULL, true, &l), 0);
    assert_int_equal(l.n, 0);
    assert_null(l.items);
    assert_int_equal(node_list_files(NULL, NULL, true, &l), BASE_E_INVAL);
    assert_int_equal(node_list_files(dir, NULL, true, NULL), BASE_E_INVAL);
    node_strlist_free(NULL);
    free(dir);
}

static void test_types_compatible(void **state)
{
    (void)state;
    struct {
        const char *recv, *exp;
        bool want;
    } cases[] = {
        {"IMAGE", "IMAGE", true},
        {"IMAGE", "LATENT", false},
        {"*", "LATENT", true},
        {"IMAGE", "*", true},
        {"*", "*", true},
        {"FLOAT,INT", "INT", true},
        {"INT", "FLOAT,INT", true},
        {"FLOAT, INT", "STRING ,INT", true},
        {"FLOAT,INT", "STRING,BOOLEAN", false},
        {"IMAGE,", "LATENT,", false},
        {"", "", true},
        {"", "IMAGE", false},
        {"image", "IMAGE", false},
        {"IMAGES", "IMAGE", false},
        {NULL, "IMAGE", false},
        {"IMAGE", NULL, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (node_types_compatible(cases[i].recv, cases[i].exp) != cases[i].want)
            fail_msg("case %zu: '%s' vs '%s' should be %d", i, cases[i].recv ? cases[i].recv : "(null)",
                     cases[i].exp ? cases[i].exp : "(null)", cases[i].want);
    }
}

static void test_input_index(void **state)
{
    (void)state;
    assert_int_equal(node_def_input_index(&ks_def, "model"), 0);
    assert_int_equal(node_def_input_index(&ks_def, "unique_id"), 11);
    assert_int_equal(node_def_input_index(&ks_def, "Model"), -1);
    assert_int_equal(node_def_input_index(&ks_def, NULL), -1);
    assert_int_equal(node_def_input_index(NULL, "model"), -1);
    assert_int_equal(node_def_input_index(&min_def, "model"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_def_json),      cmocka_unit_test(test_registry),
        cmocka_unit_test(test_many_sorted),   cmocka_unit_test(test_options_fn),
        cmocka_unit_test(test_list_files),    cmocka_unit_test(test_types_compatible),
        cmocka_unit_test(test_input_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
