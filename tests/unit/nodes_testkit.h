/* Running one node directly (no engine), for the node tests: inputs set by name, outputs,
 * UI, progress and preview counts recorded. Include after testutil.h. */
#ifndef WEFT_NODES_TESTKIT_H
#define WEFT_NODES_TESTKIT_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodes.h"

typedef struct {
    node_ctx_t ctx;
    node_value_t *in[16];
    node_value_t *out[4];
    atomic_bool intr;
    int progress_calls, previews;
    uint64_t last_value, last_max;
} nt_run_t;

static inline void nt_on_progress(void *engine, const char *node_id, uint64_t value, uint64_t max)
{
    nt_run_t *r = engine;
    (void)node_id;
    r->progress_calls++;
    r->last_value = value;
    r->last_max = max;
}

/* A preview hook that checks each preview is a PNG and counts it. */
static inline void nt_on_preview(void *engine, const char *node_id, const void *png, size_t len)
{
    nt_run_t *r = engine;
    (void)node_id;
    assert_true(len > 8);
    assert_memory_equal(png, "\x89PNG\r\n\x1a\n", 8);
    r->previews++;
}

static inline nt_run_t *nt_run_new(const node_def_t *def, const node_env_t *env, const char *node_id)
{
    nt_run_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    atomic_init(&r->intr, false);
    r->ctx.def = def;
    r->ctx.node_id = node_id;
    r->ctx.env = env;
    r->ctx.in = r->in;
    r->ctx.out = r->out;
    r->ctx.interrupt = &r->intr;
    r->ctx.engine = r;
    r->ctx.progress_cb = nt_on_progress;
    return r;
}

/* Sets input `name` (takes v). */
static inline void nt_set_in(nt_run_t *r, const char *name, node_value_t *v)
{
    int i = node_def_input_index(r->ctx.def, name);
    if (i < 0 || i >= 16)
        fail_msg("no input %s", name);
    assert_non_null(v);
    node_value_unref(r->in[i]);
    r->in[i] = v;
}

/* Runs the node, after dropping the outputs and UI of an earlier run. */
static inline int nt_exec(nt_run_t *r)
{
    r->ctx.err[0] = '\0';
    json_free(r->ctx.ui);
    r->ctx.ui = NULL;
    for (size_t i = 0; i < 4; i++) {
        node_value_unref(r->out[i]);
        r->out[i] = NULL;
    }
    return r->ctx.def->execute(&r->ctx);
}

/* A new reference to output i (which must exist). */
static inline node_value_t *nt_take_out(nt_run_t *r, size_t i)
{
    node_value_t *v = node_value_ref(r->out[i]);
    assert_non_null(v);
    return v;
}

static inline void nt_run_free(nt_run_t *r)
{
    for (size_t i = 0; i < 16; i++)
        node_value_unref(r->in[i]);
    for (size_t i = 0; i < 4; i++)
        node_value_unref(r->out[i]);
    json_free(r->ctx.ui);
    free(r);
}

/* "a/b" (malloc'ed). */
static inline char *nt_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s/%s", a, b);
    return s;
}

static inline void nt_copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    if (!a || !b)
        fail_msg("cannot copy %s to %s", from, to);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        assert_int_equal(fwrite(buf, 1, n, b), n);
    fclose(a);
    assert_int_equal(fclose(b), 0);
}

#endif
