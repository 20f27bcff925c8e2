/* Test-only node classes and JSON helpers shared by the test_graphs_*.c files. The
 * classes mimic ComfyUI's shapes (a KSampler-like node with a 64-bit seed, combos, an
 * upload-style loader with custom validation, output nodes) without any execution. */
#ifndef WEFT_GRAPHS_TESTKIT_H
#define WEFT_GRAPHS_TESTKIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphs.h"

#define TG_UNUSED __attribute__((unused))

/* J({...}) turns JSON written inline into a C string, so expected objects stay readable. */
#define J(...) #__VA_ARGS__

/* ------------------------------------------------------------------ JSON helpers */

TG_UNUSED static json_t *tg_parse(const char *text)
{
    json_t *j = NULL;
    char err[256];
    int rc = json_parse(text, strlen(text), &j, err, sizeof err);
    if (rc)
        print_message("bad test JSON: %s\n%s\n", err, text);
    assert_int_equal(rc, 0);
    return j;
}

/* Exact comparison, key order included: both sides go through the same compact dump. */
TG_UNUSED static void tg_expect_json(const json_t *got, const char *want_text)
{
    json_t *want = tg_parse(want_text);
    char *a = got ? json_dump(got, JSON_COMPACT) : strdup("(null)");
    char *b = json_dump(want, JSON_COMPACT);
    if (strcmp(a, b))
        print_message("got:  %s\nwant: %s\n", a, b);
    assert_string_equal(a, b);
    free(a);
    free(b);
    json_free(want);
}

/* ------------------------------------------------------------------ node classes */

/* Tables are kept one line per input for reading. */
/* clang-format off */

TG_UNUSED static const node_output_t tg_image_out[] = {{.type = "IMAGE"}};
TG_UNUSED static const node_output_t tg_mask_out[] = {{.type = "MASK"}};
TG_UNUSED static const node_output_t tg_two_out[] = {{.type = "IMAGE"}, {.type = "MASK"}};
TG_UNUSED static const node_output_t tg_int_out[] = {{.type = "INT"}};

/* TSource: an IMAGE from a width. */
TG_UNUSED static const node_input_t tg_source_in[] = {
    {.name = "width", .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,
     .idef = BASE_INT(512), .imin = BASE_INT(1), .imax = BASE_INT(16384), .istep = 8},
};
TG_UNUSED static const node_def_t tg_TSource = {.name = "TSource", .display_name = "Test Source",
                                                .inputs = tg_source_in, .n_inputs = 1,
                                                .outputs = tg_image_out, .n_outputs = 1};

/* TMask: a MASK, no inputs. TMulti: IMAGE and MASK. */
TG_UNUSED static const node_def_t tg_TMask = {.name = "TMask", .outputs = tg_mask_out, .n_outputs = 1};
TG_UNUSED static const node_def_t tg_TMulti = {.name = "TMulti", .outputs = tg_two_out, .n_outputs = 2};

/* TPass: IMAGE -> IMAGE. */
TG_UNUSED static const node_input_t tg_pass_in[] = {{.name = "image", .type = "IMAGE", .section = NODE_REQUIRED}};
TG_UNUSED static const node_def_t tg_TPass = {.name = "TPass", .inputs = tg_pass_in, .n_inputs = 1,
                                              .outputs = tg_image_out, .n_outputs = 1};

/* TSampler: KSampler-like widgets. */
TG_UNUSED static const char *const tg_samplers[] = {"euler", "euler_ancestral", "ddim", NULL};
TG_UNUSED static const node_input_t tg_sampler_in[] = {
    {.name = "image", .type = "IMAGE", .section = NODE_REQUIRED},
    {.name = "seed", .type = "INT", .section = NODE_REQUIRED,
     .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX | NODE_IN_CONTROL_AFTER_GENERATE, .idef = BASE_INT(0),
     .imin = BASE_INT(0), .imax = BASE_INT_U64MAX},
    {.name = "steps", .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,
     .idef = BASE_INT(20), .imin = BASE_INT(1), .imax = BASE_INT(10000)},
    {.name = "cfg", .type = "FLOAT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,
     .fdef = 8.0, .fmin = 0.0, .fmax = 100.0, .fstep = 0.1, .fround = 0.01},
    {.name = "sampler_name", .type = "COMBO", .section = NODE_REQUIRED, .options = tg_samplers},
    {.name = "denoise", .type = "FLOAT", .section = NODE_REQUIRED, .flags = NODE_IN_HAS_MIN | NODE_IN_HAS_MAX,
     .fdef = 1.0, .fmin = 0.0, .fmax = 1.0, .fstep = 0.01},
    {.name = "mask", .type = "MASK", .section = NODE_OPTIONAL},
    {.name = "label", .type = "STRING", .section = NODE_OPTIONAL, .sdef = ""},
    {.name = "flag", .type = "BOOLEAN", .section = NODE_OPTIONAL, .bdef = true},
};
TG_UNUSED static const node_def_t tg_TSampler = {.name = "TSampler", .display_name = "Test Sampler",
                                                 .inputs = tg_sampler_in, .n_inputs = 9,
                                                 .outputs = tg_image_out, .n_outputs = 1};

/* TBig: a combo of 25 options, summarised in errors. */
TG_UNUSED static const char *const tg_big_opts[] = {"o01", "o02", "o03", "o04", "o05", "o06", "o07", "o08", "o09",
                                                    "o10", "o11", "o12", "o13", "o14", "o15", "o16", "o17", "o18",
                                                    "o19", "o20", "o21", "o22", "o23", "o24", "o25", NULL};
TG_UNUSED static const node_input_t tg_big_in[] = {
    {.name = "choice", .type = "COMBO", .section = NODE_REQUIRED, .options = tg_big_opts},
};
TG_UNUSED static const node_def_t tg_TBig = {.name = "TBig", .inputs = tg_big_in, .n_inputs = 1,
                                             .outputs = tg_image_out, .n_outputs = 1};

/* TLoad: LoadImage-like; custom validation accepts files of the list and "sub/x.png". */
TG_UNUSED static const char *const tg_files[] = {"a.png", "b.png", NULL};
TG_UNUSED static int tg_load_validate(const node_env_t *env, const node_args_t *args, char *msg, size_t msgsz)
{
    const char *s = json_str(node_args_get(args, "image"));
    if (s && (!strcmp(s, "a.png") || !strcmp(s, "b.png") || !strcmp(s, "sub/x.png")))
        return 0;
    snprintf(msg, msgsz, "Invalid image file: %s", s ? s : "?");
    return 1;
}
TG_UNUSED static const char *const tg_load_validated[] = {"image", NULL};
TG_UNUSED static const node_input_t tg_load_in[] = {
    {.name = "image", .type = "COMBO", .section = NODE_REQUIRED, .flags = NODE_IN_IMAGE_UPLOAD, .options = tg_files},
};
TG_UNUSED static const node_def_t tg_TLoad = {.name = "TLoad", .display_name = "Test Load",
                                              .inputs = tg_load_in, .n_inputs = 1, .outputs = tg_two_out,
                                              .n_outputs = 2, .validate = tg_load_validate,
                                              .validate_inputs = tg_load_validated};

/* TSave / TPreview: output nodes. */
TG_UNUSED static const node_input_t tg_save_in[] = {
    {.name = "images", .type = "IMAGE", .section = NODE_REQUIRED},
    {.name = "filename_prefix", .type = "STRING", .section = NODE_REQUIRED, .sdef = "ComfyUI"},
    {.name = "prompt", .type = "PROMPT", .section = NODE_HIDDEN},
};
TG_UNUSED static const node_def_t tg_TSave = {.name = "TSave", .display_name = "Test Save",
                                              .inputs = tg_save_in, .n_inputs = 3, .flags = NODE_OUTPUT_NODE};
TG_UNUSED static const node_def_t tg_TPreview = {.name = "TPreview", .inputs = tg_save_in, .n_inputs = 1,
                                                 .flags = NODE_OUTPUT_NODE};

/* TAny: accepts anything on a "*" socket; TInt: an INT source; TNotIdem: id-sensitive. */
TG_UNUSED static const node_input_t tg_any_in[] = {{.name = "value", .type = "*", .section = NODE_REQUIRED}};
TG_UNUSED static const node_def_t tg_TAny = {.name = "TAny", .inputs = tg_any_in, .n_inputs = 1,
                                             .flags = NODE_OUTPUT_NODE};
TG_UNUSED static const node_input_t tg_int_in[] = {{.name = "value", .type = "INT", .section = NODE_REQUIRED}};
TG_UNUSED static const node_def_t tg_TInt = {.name = "TInt", .inputs = tg_int_in, .n_inputs = 1,
                                             .outputs = tg_int_out, .n_outputs = 1};
TG_UNUSED static const node_def_t tg_TNotIdem = {.name = "TNotIdem", .inputs = tg_int_in, .n_inputs = 1,
                                                 .outputs = tg_int_out, .n_outputs = 1,
                                                 .flags = NODE_NOT_IDEMPOTENT};

/* clang-format on */

TG_UNUSED static node_registry_t *tg_registry(void)
{
    static const node_def_t *const defs[] = {&tg_TSource,  &tg_TMask, &tg_TMulti, &tg_TPass,
                                             &tg_TSampler, &tg_TBig,  &tg_TLoad,  &tg_TSave,
                                             &tg_TPreview, &tg_TAny,  &tg_TInt,   &tg_TNotIdem};
    node_registry_t *r = NULL;
    assert_int_equal(node_registry_new(&r), 0);
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        assert_int_equal(node_registry_add(r, defs[i]), 0);
    return r;
}

/* Parses text as an API prompt and validates it; returns the validate code. */
TG_UNUSED static int tg_validate(const node_registry_t *reg, const char *text, const char *targets,
                                 graph_t **g, graph_validation_t *res)
{
    json_t *p = tg_parse(text), *t = targets ? tg_parse(targets) : NULL;
    char err[256];
    assert_int_equal(graph_parse(p, g, err, sizeof err), 0);
    int rc = graph_validate(*g, reg, NULL, t, res);
    json_free(p);
    json_free(t);
    return rc;
}

#endif
