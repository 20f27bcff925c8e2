/* Test-only node classes and helpers shared by test_engine_exec.c and test_engine_cache.c:
 * counting nodes, a fingerprinted "file" node, a slow node with progress, failing nodes and
 * an output node with UI, plus a recorder that turns the event stream into one line. */
#ifndef WEFT_ENGINE_TESTKIT_H
#define WEFT_ENGINE_TESTKIT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

/* Each test file uses a different subset. */
#define TK_UNUSED __attribute__((unused))

/* ------------------------------------------------------------------ node classes */

/* Atomic: with lanes (WEFT_TEST_LANES) independent nodes run on different threads. */
TK_UNUSED static atomic_int n_const, n_add, n_sink, n_file, n_slow, n_ni, n_show;
TK_UNUSED static const char *g_fp = "v1";      /* TFile's fingerprint */
TK_UNUSED static bool g_fp_fail;               /* TFile's is_changed fails */
TK_UNUSED static int64_t g_file_value = 100;   /* what TFile "reads" */
TK_UNUSED static atomic_bool g_slow_started;   /* TSlow reached its loop */
TK_UNUSED static unsigned g_slow_sleep_us;     /* TSlow sleeps this long per step */
TK_UNUSED static const json_t *g_expect_prompt, *g_expect_extra;

TK_UNUSED static void tk_reset_counts(void)
{
    n_const = n_add = n_sink = n_file = n_slow = n_ni = n_show = 0;
    g_fp = "v1";
    g_fp_fail = false;
    g_file_value = 100;
    atomic_store(&g_slow_started, false);
    g_slow_sleep_us = 0;
}

TK_UNUSED static const node_output_t tk_int_out[] = {{.type = "INT"}};

TK_UNUSED static int tconst_exec(node_ctx_t *ctx)
{
    n_const++;
    node_set_out(ctx, 0, node_value_i64(node_in_i64(ctx, "value")));
    return 0;
}
TK_UNUSED static const node_input_t tconst_in[] = {{.name = "value", .type = "INT", .section = NODE_REQUIRED}};
TK_UNUSED static const node_def_t tk_TConst = {.name = "TConst", .inputs = tconst_in, .n_inputs = 1,
                                     .outputs = tk_int_out, .n_outputs = 1, .execute = tconst_exec};

/* Same as TConst, but NODE_NOT_IDEMPOTENT: identical nodes must not share a result. */
TK_UNUSED static int tni_exec(node_ctx_t *ctx)
{
    n_ni++;
    node_set_out(ctx, 0, node_value_i64(node_in_i64(ctx, "value")));
    return 0;
}
TK_UNUSED static const node_def_t tk_TConstNI = {.name = "TConstNI", .inputs = tconst_in, .n_inputs = 1,
                                       .outputs = tk_int_out, .n_outputs = 1,
                                       .flags = NODE_NOT_IDEMPOTENT, .execute = tni_exec};

TK_UNUSED static int tadd_exec(node_ctx_t *ctx)
{
    n_add++;
    node_set_out(ctx, 0, node_value_i64(node_in_i64(ctx, "a") + node_in_i64(ctx, "b")));
    return 0;
}
TK_UNUSED static const node_input_t tadd_in[] = {
    {.name = "a", .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_FORCE_INPUT},
    {.name = "b", .type = "INT", .section = NODE_REQUIRED},
};
TK_UNUSED static const node_def_t tk_TAdd = {.name = "TAdd", .inputs = tadd_in, .n_inputs = 2,
                                   .outputs = tk_int_out, .n_outputs = 1, .execute = tadd_exec};

/* Output node: shows its value as UI {"value": [v]}. */
TK_UNUSED static int tsink_exec(node_ctx_t *ctx)
{
    n_sink++;
    json_t *ui = json_new_object(), *list = json_new_array();
    json_array_push(list, json_new_int(node_in_i64(ctx, "value")));
    json_object_set(ui, "value", list);
    ctx->ui = ui;
    return 0;
}
TK_UNUSED static const node_input_t tsink_in[] = {
    {.name = "value", .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_FORCE_INPUT},
};
TK_UNUSED static const node_def_t tk_TSink = {.name = "TSink", .inputs = tsink_in, .n_inputs = 1,
                                    .flags = NODE_OUTPUT_NODE, .execute = tsink_exec};

/* Output node without UI. */
TK_UNUSED static int tquiet_exec(node_ctx_t *ctx)
{
    n_sink++;
    return 0;
}
TK_UNUSED static const node_def_t tk_TQuiet = {.name = "TQuiet", .inputs = tsink_in, .n_inputs = 1,
                                               .flags = NODE_OUTPUT_NODE, .execute = tquiet_exec};

/* Not an output node, but shows UI {"seen": [v]} and passes its value on. */
TK_UNUSED static int tshow_exec(node_ctx_t *ctx)
{
    n_show++;
    int64_t v = node_in_i64(ctx, "value");
    json_t *ui = json_new_object(), *list = json_new_array();
    json_array_push(list, json_new_int(v));
    json_object_set(ui, "seen", list);
    ctx->ui = ui;
    node_set_out(ctx, 0, node_value_i64(v));
    return 0;
}
TK_UNUSED static const node_def_t tk_TShow = {.name = "TShow", .inputs = tsink_in, .n_inputs = 1,
                                              .outputs = tk_int_out, .n_outputs = 1,
                                              .execute = tshow_exec};

/* Reads "a file": the fingerprint and value come from globals. */
TK_UNUSED static int tfile_changed(const node_env_t *env, const node_args_t *args, base_buf_t *out)
{
    if (g_fp_fail)
        return BASE_E_IO;
    const char *name = json_str(node_args_get(args, "name"));
    return base_buf_printf(out, "%s:%s", name ? name : "?", g_fp);
}
TK_UNUSED static int tfile_exec(node_ctx_t *ctx)
{
    n_file++;
    node_set_out(ctx, 0, node_value_i64(g_file_value));
    return 0;
}
TK_UNUSED static const node_input_t tfile_in[] = {{.name = "name", .type = "STRING", .section = NODE_REQUIRED}};
TK_UNUSED static const node_def_t tk_TFile = {.name = "TFile", .inputs = tfile_in, .n_inputs = 1,
                                    .outputs = tk_int_out, .n_outputs = 1,
                                    .execute = tfile_exec, .is_changed = tfile_changed};

/* Loops "steps" times reporting progress; stops at an interrupt. */
TK_UNUSED static int tslow_exec(node_ctx_t *ctx)
{
    n_slow++;
    int64_t steps = node_in_i64(ctx, "steps");
    atomic_store(&g_slow_started, true);
    for (int64_t s = 1; s <= steps; s++) {
        int rc = node_progress(ctx, (uint64_t)s, (uint64_t)steps);
        if (rc)
            return rc;
        if (g_slow_sleep_us) {
            struct timespec ts = {0, (long)g_slow_sleep_us * 1000};
            nanosleep(&ts, NULL);
        }
    }
    node_set_out(ctx, 0, node_value_i64(steps + node_in_i64(ctx, "a")));
    return 0;
}
TK_UNUSED static const node_input_t tslow_in[] = {
    {.name = "steps", .type = "INT", .section = NODE_REQUIRED},
    {.name = "a", .type = "INT", .section = NODE_OPTIONAL, .flags = NODE_IN_FORCE_INPUT},
};
TK_UNUSED static const node_def_t tk_TSlow = {.name = "TSlow", .inputs = tslow_in, .n_inputs = 2,
                                    .outputs = tk_int_out, .n_outputs = 1, .execute = tslow_exec};

TK_UNUSED static int tfail_exec(node_ctx_t *ctx)
{
    ctx->err_type = "ValueError";
    return node_fail(ctx, "boom %lld", (long long)node_in_i64(ctx, "a"));
}
TK_UNUSED static const node_input_t tfail_in[] = {
    {.name = "a", .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_FORCE_INPUT},
    {.name = "label", .type = "STRING", .section = NODE_OPTIONAL},
};
TK_UNUSED static const node_def_t tk_TFail = {.name = "TFail", .inputs = tfail_in, .n_inputs = 2,
                                    .outputs = tk_int_out, .n_outputs = 1, .execute = tfail_exec};

/* Claims success without setting its output. */
TK_UNUSED static int tnoout_exec(node_ctx_t *ctx) { return 0; }
TK_UNUSED static const node_def_t tk_TNoOut = {.name = "TNoOut", .inputs = tfail_in, .n_inputs = 1,
                                     .outputs = tk_int_out, .n_outputs = 1,
                                     .execute = tnoout_exec};

/* Output node checking what the hidden inputs carry. */
TK_UNUSED static int thidden_exec(node_ctx_t *ctx)
{
    if (ctx->prompt != g_expect_prompt || ctx->extra_pnginfo != g_expect_extra)
        return node_fail(ctx, "hidden inputs not passed through");
    if (node_in(ctx, "prompt") || node_in(ctx, "unique_id"))
        return node_fail(ctx, "hidden inputs must not appear in ctx->in");
    json_t *ui = json_new_object(), *list = json_new_array();
    json_array_push(list, json_new_string(ctx->node_id));
    json_object_set(ui, "id", list);
    ctx->ui = ui;
    return 0;
}
TK_UNUSED static const node_input_t thidden_in[] = {
    {.name = "prompt", .type = "PROMPT", .section = NODE_HIDDEN},
    {.name = "extra_pnginfo", .type = "EXTRA_PNGINFO", .section = NODE_HIDDEN},
    {.name = "unique_id", .type = "UNIQUE_ID", .section = NODE_HIDDEN},
};
TK_UNUSED static const node_def_t tk_THidden = {.name = "THidden", .inputs = thidden_in, .n_inputs = 3,
                                      .flags = NODE_OUTPUT_NODE, .execute = thidden_exec};

TK_UNUSED static node_registry_t *tk_reg;
TK_UNUSED static const node_env_t tk_env = {"/nonexistent", "/nonexistent/input", "/nonexistent/output",
                                  "/nonexistent/temp", "/nonexistent/models"};

/* Last ERROR line the engine logged (tests assert on it instead of printing it). */
TK_UNUSED static char tk_last_log[1024];
TK_UNUSED static void tk_log_sink(base_log_level_t lvl, const char *file, int line, const char *msg)
{
    snprintf(tk_last_log, sizeof tk_last_log, "%s", msg);
}

TK_UNUSED static int tk_setup(void **state)
{
    base_log_set_sink(tk_log_sink);
    if (node_registry_new(&tk_reg))
        return -1;
    const node_def_t *defs[] = {&tk_TConst, &tk_TConstNI, &tk_TAdd,   &tk_TSink, &tk_TFile,
                                &tk_TSlow,  &tk_TFail,    &tk_TNoOut, &tk_THidden, &tk_TShow, &tk_TQuiet};
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        if (node_registry_add(tk_reg, defs[i]))
            return -1;
    return 0;
}

TK_UNUSED static int tk_teardown(void **state)
{
    node_registry_free(tk_reg);
    base_log_set_sink(NULL);
    return 0;
}

/* Lanes of the engines the tests make: WEFT_TEST_LANES=N runs every engine test with N lane
 * threads (default 0: nodes run on the calling thread). */
TK_UNUSED static unsigned tk_lanes(void)
{
    const char *v = getenv("WEFT_TEST_LANES");
    return v ? (unsigned)strtoul(v, NULL, 10) : 0;
}

TK_UNUSED static eng_t *tk_engine(void)
{
    eng_config_t cfg = {.reg = tk_reg, .env = &tk_env, .lanes = tk_lanes()};
    eng_t *e = NULL;
    assert_int_equal(eng_new(&cfg, &e), 0);
    assert_non_null(e);
    tk_reset_counts();
    return e;
}

/* ------------------------------------------------------------------ prompts */

typedef struct {
    graph_t *g;
    graph_validation_t v;
} tk_prompt_t;

/* Parses and validates an API prompt given as JSON text (single quotes become double). */
TK_UNUSED static void tk_prompt(tk_prompt_t *p, const char *text)
{
    char *t = strdup(text);
    assert_non_null(t);
    for (char *c = t; *c; c++)
        if (*c == '\'')
            *c = '"';
    json_t *j = NULL;
    char err[256];
    assert_int_equal(json_parse(t, strlen(t), &j, err, sizeof err), 0);
    free(t);
    memset(p, 0, sizeof *p);
    assert_int_equal(graph_parse(j, &p->g, err, sizeof err), 0);
    json_free(j);
    int rc = graph_validate(p->g, tk_reg, &tk_env, NULL, &p->v);
    if (rc) {
        char *s = json_dump(p->v.error, JSON_COMPACT), *n = json_dump(p->v.node_errors, JSON_COMPACT);
        print_error("validation failed: %s %s\n", s, n);
        free(s);
        free(n);
    }
    assert_int_equal(rc, 0);
}

TK_UNUSED static void tk_prompt_free(tk_prompt_t *p)
{
    graph_validation_free(&p->v);
    graph_free(p->g);
}

/* ------------------------------------------------------------------ event recorder */

typedef struct tk_rec_s tk_rec_t;
struct tk_rec_s {
    json_t *ev; /* [[type, data], ...] */
    eng_t *e;
    const char *pid;
    /* Called for each event before it is recorded (to interrupt at a chosen moment). */
    void (*hook)(tk_rec_t *rec, const char *type, const json_t *data);
    int hook_count;
    int nested_rc; /* what a nested eng_execute returned, when a hook tries one */
};

TK_UNUSED static void tk_on_event(void *ud, const char *type, json_t *data)
{
    tk_rec_t *rec = ud;
    if (rec->hook)
        rec->hook(rec, type, data);
    json_t *pair = json_new_array();
    json_array_push(pair, json_new_string(type));
    json_array_push(pair, data);
    json_array_push(rec->ev, pair);
}

TK_UNUSED static void tk_rec_init(tk_rec_t *rec, eng_t *e, const char *pid)
{
    memset(rec, 0, sizeof *rec);
    rec->ev = json_new_array();
    rec->e = e;
    rec->pid = pid;
}

TK_UNUSED static void tk_rec_free(tk_rec_t *rec)
{
    json_free(rec->ev);
    rec->ev = NULL;
}

/* Runs p on e with every validated output; the recorder gets the events. */
TK_UNUSED static int tk_run(eng_t *e, tk_prompt_t *p, const char *pid, tk_rec_t *rec, eng_result_t *r)
{
    json_free(rec->ev);
    rec->ev = json_new_array();
    rec->pid = pid;
    eng_job_t job = {.prompt_id = pid,
                     .graph = p->g,
                     .prompt = p->v.prompt,
                     .outputs = p->v.outputs,
                     .n_outputs = p->v.n_outputs,
                     .on_event = tk_on_event,
                     .ud = rec};
    return eng_execute(e, &job, r);
}

TK_UNUSED static const char *tk_ids(const json_t *arr, char *buf, size_t sz)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < json_len(arr) && o < sz; i++)
        o += (size_t)snprintf(buf + o, sz - o, "%s%s", i ? "," : "", json_str(json_at(arr, i)));
    return buf;
}

/* The event stream as one line, e.g. "start|cached[]|executing 1|executed 3|success". */
TK_UNUSED static const char *tk_summary(const tk_rec_t *rec)
{
    static char out[8192];
    char ids[1024];
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < json_len(rec->ev) && o < sizeof out; i++) {
        const char *type = json_str(json_at(json_at(rec->ev, i), 0));
        const json_t *d = json_at(json_at(rec->ev, i), 1);
        const char *sep = i ? "|" : "";
        if (!strcmp(type, "execution_start"))
            o += snprintf(out + o, sizeof out - o, "%sstart", sep);
        else if (!strcmp(type, "execution_cached"))
            o += snprintf(out + o, sizeof out - o, "%scached[%s]", sep,
                          tk_ids(json_object_get(d, "nodes"), ids, sizeof ids));
        else if (!strcmp(type, "executing"))
            o += snprintf(out + o, sizeof out - o, "%sexecuting %s", sep,
                          json_str(json_object_get(d, "node")));
        else if (!strcmp(type, "executed"))
            o += snprintf(out + o, sizeof out - o, "%sexecuted %s", sep,
                          json_str(json_object_get(d, "node")));
        else if (!strcmp(type, "progress")) {
            uint64_t v = 0, m = 0;
            json_get_u64(json_object_get(d, "value"), &v);
            json_get_u64(json_object_get(d, "max"), &m);
            o += snprintf(out + o, sizeof out - o, "%sprogress %llu/%llu", sep,
                          (unsigned long long)v, (unsigned long long)m);
        } else if (!strcmp(type, "execution_success"))
            o += snprintf(out + o, sizeof out - o, "%ssuccess", sep);
        else if (!strcmp(type, "execution_error"))
            o += snprintf(out + o, sizeof out - o, "%serror %s", sep,
                          json_str(json_object_get(d, "node_id")));
        else if (!strcmp(type, "execution_interrupted"))
            o += snprintf(out + o, sizeof out - o, "%sinterrupted %s", sep,
                          json_str(json_object_get(d, "node_id")));
        else
            o += snprintf(out + o, sizeof out - o, "%s%s", sep, type);
    }
    return out;
}

/* The data of the n-th event of a type (0-based), NULL when there is none. */
TK_UNUSED static const json_t *tk_event(const tk_rec_t *rec, const char *type, size_t n)
{
    for (size_t i = 0; i < json_len(rec->ev); i++) {
        const json_t *pair = json_at(rec->ev, i);
        if (!strcmp(json_str(json_at(pair, 0)), type) && n-- == 0)
            return json_at(pair, 1);
    }
    return NULL;
}

TK_UNUSED static void tk_assert_json(const json_t *j, const char *expect_compact)
{
    char *s = json_dump(j, JSON_COMPACT);
    assert_non_null(s);
    assert_string_equal(s, expect_compact);
    free(s);
}

#endif
