#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "nodes.h"

static const node_input_t inputs[] = {
    {.name = "seed", .type = "INT"},
    {.name = "steps", .type = "INT"},
    {.name = "cfg", .type = "FLOAT"},
    {.name = "flag", .type = "BOOLEAN"},
    {.name = "text", .type = "STRING"},
    {.name = "image", .type = "IMAGE"},
    {.name = "neg", .type = "INT"},
    {.name = "prompt", .type = "PROMPT", .section = NODE_HIDDEN},
};
static const node_output_t outputs[] = {{.type = "INT"}, {.type = "STRING"}};
static const node_def_t def = {
    .name = "CtxTest",
    .inputs = inputs,
    .n_inputs = sizeof inputs / sizeof inputs[0],
    .outputs = outputs,
    .n_outputs = 2,
};

typedef struct {
    node_value_t *in[8];
    node_value_t *out[2];
    node_ctx_t ctx;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->in[0] = node_value_int(base_int_from_u64(UINT64_MAX));
    f->in[1] = node_value_i64(20);
    f->in[2] = node_value_float(7.5);
    f->in[3] = node_value_bool(true);
    f->in[4] = node_value_string("a cat");
    f->in[5] = NULL; /* linked input not available: absent */
    f->in[6] = node_value_i64(-3);
    f->ctx.def = &def;
    f->ctx.node_id = "12";
    f->ctx.in = f->in;
    f->ctx.out = f->out;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    for (size_t i = 0; i < 8; i++)
        node_value_unref(f->in[i]);
    for (size_t i = 0; i < 2; i++)
        node_value_unref(f->out[i]);
    free(f);
    return 0;
}

static void test_accessors(void **state)
{
    fixture_t *f = *state;
    node_ctx_t *c = &f->ctx;
    assert_ptr_equal(node_in(c, "seed"), f->in[0]);
    assert_null(node_in(c, "image"));
    assert_null(node_in(c, "missing"));
    assert_null(node_in(c, NULL));
    assert_null(node_in(NULL, "seed"));

    assert_true(node_in_u64(c, "seed") == UINT64_MAX);
    assert_true(node_in_i64(c, "seed") == INT64_MAX); /* saturated */
    assert_int_equal(node_in_i64(c, "steps"), 20);
    assert_int_equal(node_in_u64(c, "steps"), 20);
    assert_int_equal(node_in_i64(c, "neg"), -3);
    assert_int_equal(node_in_u64(c, "neg"), 3); /* magnitude */
    assert_true(node_in_f64(c, "cfg") == 7.5);
    assert_true(node_in_f64(c, "steps") == 20.0); /* INT is accepted where a float is read */
    assert_true(node_in_f64(c, "text") == 0.0);
    assert_int_equal(node_in_i64(c, "cfg"), 0);  /* wrong kind */
    assert_true(node_in_bool(c, "flag"));
    assert_false(node_in_bool(c, "steps"));
    assert_string_equal(node_in_str(c, "text"), "a cat");
    assert_string_equal(node_in_str(c, "steps"), "");
    assert_string_equal(node_in_str(c, "missing"), "");
    assert_null(node_in_tensor(c, "image"));
    assert_null(node_in_tensor(c, "text"));
    assert_false(node_in_bool(c, "prompt"));

    /* a context without inputs yields defaults rather than crashing */
    node_ctx_t empty = {.def = &def};
    assert_null(node_in(&empty, "seed"));
    assert_int_equal(node_in_i64(&empty, "seed"), 0);
}

static void test_set_out(void **state)
{
    fixture_t *f = *state;
    node_ctx_t *c = &f->ctx;
    node_set_out(c, 0, node_value_i64(1));
    node_set_out(c, 0, node_value_i64(2)); /* replaces: the first is released */
    node_set_out(c, 1, node_value_string("x"));
    node_set_out(c, 2, node_value_string("out of range")); /* released, not stored */
    node_set_out(NULL, 0, node_value_i64(9));
    assert_int_equal(f->out[0]->u.i.mag, 2);
    assert_string_equal(f->out[1]->u.str.s, "x");
}

static void test_fail(void **state)
{
    fixture_t *f = *state;
    node_ctx_t *c = &f->ctx;
    assert_int_equal(node_fail(c, "bad %s: %d", "width", 7), BASE_E_NODE_FAILED);
    assert_string_equal(c->err, "bad width: 7");

    char longmsg[3000];
    memset(longmsg, 'y', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    assert_int_equal(node_fail(c, "%s", longmsg), BASE_E_NODE_FAILED);
    assert_int_equal(strlen(c->err), sizeof c->err - 1); /* truncated, terminated */

    assert_int_equal(node_fail(NULL, "x"), BASE_E_NODE_FAILED);

    assert_int_equal(node_fail_ts(c, "resize"), BASE_E_NODE_FAILED);
    assert_true(strncmp(c->err, "resize", 6) == 0);
}

typedef struct {
    int calls;
    const char *node_id;
    uint64_t value, max;
    void *engine;
} progress_log_t;

static void on_progress(void *engine, const char *node_id, uint64_t value, uint64_t max)
{
    progress_log_t *p = engine;
    p->calls++;
    p->engine = engine;
    p->node_id = node_id;
    p->value = value;
    p->max = max;
}

static void test_progress(void **state)
{
    fixture_t *f = *state;
    node_ctx_t *c = &f->ctx;
    /* no hooks at all: progress is a no-op */
    assert_int_equal(node_progress(c, 1, 2), 0);
    assert_false(node_interrupted(c));

    progress_log_t log = {0};
    atomic_bool stop;
    atomic_init(&stop, false);
    c->engine = &log;
    c->progress_cb = on_progress;
    c->interrupt = &stop;
    assert_int_equal(node_progress(c, 3, 20), 0);
    assert_int_equal(log.calls, 1);
    assert_ptr_equal(log.engine, &log);
    assert_string_equal(log.node_id, "12");
    assert_int_equal(log.value, 3);
    assert_int_equal(log.max, 20);
    assert_false(node_interrupted(c));

    atomic_store(&stop, true);
    assert_true(node_interrupted(c));
    assert_int_equal(node_progress(c, 4, 20), BASE_E_INTERRUPTED);
    assert_int_equal(log.calls, 2); /* the callback still ran */
    assert_int_equal(log.value, 4);

    c->progress_cb = NULL;
    assert_int_equal(node_progress(c, 5, 20), BASE_E_INTERRUPTED);
    assert_int_equal(log.calls, 2);
    assert_int_equal(node_progress(NULL, 5, 20), 0);
    assert_false(node_interrupted(NULL));
}

static void test_args(void **state)
{
    (void)state;
    json_t *seed = json_new_uint(UINT64_MAX);
    json_t *text = json_new_string("hi");
    const json_t *values[8] = {seed, NULL, NULL, NULL, text, NULL, NULL, NULL};
    node_args_t a = {.def = &def, .values = values};
    assert_ptr_equal(node_args_get(&a, "seed"), seed);
    assert_ptr_equal(node_args_get(&a, "text"), text);
    assert_null(node_args_get(&a, "steps"));
    assert_null(node_args_get(&a, "nope"));
    assert_null(node_args_get(NULL, "seed"));
    node_args_t none = {.def = &def};
    assert_null(node_args_get(&none, "seed"));
    json_free(seed);
    json_free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accessors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
        cmocka_unit_test(test_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
