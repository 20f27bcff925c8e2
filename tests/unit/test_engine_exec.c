/* The executor: event sequence and payloads, progress, interrupts, failures, hidden inputs,
 * bad jobs and a 100k-node chain. */
#include "testutil.h"

#include "engine_testkit.h"

#define CHAIN3 "{'1': {'class_type': 'TConst', 'inputs': {'value': 5}}," \
               " '2': {'class_type': 'TAdd', 'inputs': {'a': ['1', 0], 'b': 3}}," \
               " '3': {'class_type': 'TSink', 'inputs': {'value': ['2', 0]}}}"

static bool is_int(const json_t *j)
{
    int64_t v;
    return json_get_i64(j, &v) && v > 1600000000000LL;
}

static void test_event_sequence(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, CHAIN3);
    tk_rec_t rec;
    tk_rec_init(&rec, e, "p1");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "p1", &rec, &r), 0);
    assert_string_equal(tk_summary(&rec),
                        "start|cached[]|executing 1|executing 2|executing 3|executed 3|success");

    const json_t *d = tk_event(&rec, "execution_start", 0);
    assert_string_equal(json_str(json_object_get(d, "prompt_id")), "p1");
    assert_true(is_int(json_object_get(d, "timestamp")));
    assert_int_equal(json_len(d), 2);
    d = tk_event(&rec, "execution_cached", 0);
    assert_string_equal(json_key_at(d, 0), "nodes");
    assert_string_equal(json_str(json_object_get(d, "prompt_id")), "p1");
    assert_true(is_int(json_object_get(d, "timestamp")));
    tk_assert_json(tk_event(&rec, "executing", 1),
                   "{\"node\":\"2\",\"display_node\":\"2\",\"prompt_id\":\"p1\"}");
    tk_assert_json(tk_event(&rec, "executed", 0),
                   "{\"node\":\"3\",\"display_node\":\"3\",\"output\":{\"value\":[8]},"
                   "\"prompt_id\":\"p1\"}");
    d = tk_event(&rec, "execution_success", 0);
    assert_string_equal(json_str(json_object_get(d, "prompt_id")), "p1");
    assert_true(is_int(json_object_get(d, "timestamp")));

    assert_int_equal(r.status, 0);
    assert_null(r.error_node);
    assert_null(r.error_message);
    tk_assert_json(r.outputs, "{\"3\":{\"value\":[8]}}");
    assert_int_equal(json_len(r.messages), 3);
    assert_string_equal(json_str(json_at(json_at(r.messages, 0), 0)), "execution_start");
    assert_string_equal(json_str(json_at(json_at(r.messages, 1), 0)), "execution_cached");
    assert_string_equal(json_str(json_at(json_at(r.messages, 2), 0)), "execution_success");
    assert_true(json_equal(json_at(json_at(r.messages, 2), 1), d));
    assert_int_equal(r.n_executed, 3);
    assert_int_equal(r.n_cached, 0);
    assert_int_equal(r.n_timings, 3);
    assert_string_equal(r.timings[0].node_id, "1");
    assert_string_equal(r.timings[1].node_id, "2");
    assert_string_equal(r.timings[2].node_id, "3");
    assert_false(r.timings[2].cached);
    assert_true(r.timings[2].ms >= 0);
    assert_true(r.total_ms >= r.timings[0].ms);
    assert_int_equal(n_const, 1);
    assert_int_equal(n_add, 1);
    assert_int_equal(n_sink, 1);
    assert_int_equal(eng_cache_count(e), 3);

    eng_result_free(&r);
    assert_null(r.outputs);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

/* Without a callback the engine still fills the result. */
static void test_no_callback(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, CHAIN3);
    eng_job_t job = {.prompt_id = "q", .graph = p.g, .prompt = p.v.prompt,
                     .outputs = p.v.outputs, .n_outputs = p.v.n_outputs};
    eng_result_t r;
    assert_int_equal(eng_execute(e, &job, &r), 0);
    tk_assert_json(r.outputs, "{\"3\":{\"value\":[8]}}");
    assert_int_equal(json_len(r.messages), 3);
    eng_result_free(&r);
    tk_prompt_free(&p);
    eng_free(e);
}

static void test_progress_events(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, "{'1': {'class_type': 'TSlow', 'inputs': {'steps': 3}},"
                  " '2': {'class_type': 'TSink', 'inputs': {'value': ['1', 0]}}}");
    tk_rec_t rec;
    tk_rec_init(&rec, e, "p1");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "pp", &rec, &r), 0);
    assert_string_equal(tk_summary(&rec), "start|cached[]|executing 1|progress 1/3|progress 2/3|"
                                          "progress 3/3|executing 2|executed 2|success");
    tk_assert_json(tk_event(&rec, "progress", 1),
                   "{\"value\":2,\"max\":3,\"prompt_id\":\"pp\",\"node\":\"1\"}");
    tk_assert_json(r.outputs, "{\"2\":{\"value\":[3]}}");
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

/* ------------------------------------------------------------------ interrupts */

static void hook_interrupt_on_executing_2(tk_rec_t *rec, const char *type, const json_t *d)
{
    if (!strcmp(type, "executing") && !strcmp(json_str(json_object_get(d, "node")), "2"))
        eng_interrupt(rec->e, rec->pid);
}

static void test_interrupt_between_nodes(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, CHAIN3);
    tk_rec_t rec;
    tk_rec_init(&rec, e, "p1");
    rec.hook = hook_interrupt_on_executing_2;
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "p1", &rec, &r), BASE_E_INTERRUPTED);
    /* Node 2 was already running when the flag went up, so node 3 is the one stopped. */
    assert_string_equal(tk_summary(&rec),
                        "start|cached[]|executing 1|executing 2|interrupted 3");
    const json_t *d = tk_event(&rec, "execution_interrupted", 0);
    assert_string_equal(json_key_at(d, 0), "prompt_id");
    assert_string_equal(json_str(json_object_get(d, "prompt_id")), "p1");
    assert_string_equal(json_str(json_object_get(d, "node_id")), "3");
    assert_string_equal(json_str(json_object_get(d, "node_type")), "TSink");
    tk_assert_json(json_object_get(d, "executed"), "[\"1\",\"2\"]");
    assert_true(is_int(json_object_get(d, "timestamp")));
    assert_int_equal(json_len(d), 5);
    assert_int_equal(r.status, BASE_E_INTERRUPTED);
    assert_string_equal(r.error_node, "3");
    assert_int_equal(json_len(r.messages), 3);
    assert_string_equal(json_str(json_at(json_at(r.messages, 2), 0)), "execution_interrupted");
    tk_assert_json(r.outputs, "{}");
    assert_int_equal(n_sink, 0);
    eng_result_free(&r);

    /* The flag is cleared at the next start; what ran before stays cached. */
    rec.hook = NULL;
    assert_int_equal(tk_run(e, &p, "p2", &rec, &r), 0);
    assert_string_equal(tk_summary(&rec), "start|cached[1,2]|executing 3|executed 3|success");
    assert_int_equal(n_const, 1);
    assert_int_equal(n_add, 1);
    assert_int_equal(n_sink, 1);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

static void hook_interrupt_on_progress_3(tk_rec_t *rec, const char *type, const json_t *d)
{
    uint64_t v = 0;
    if (!strcmp(type, "progress") && json_get_u64(json_object_get(d, "value"), &v) && v == 3)
        eng_interrupt(rec->e, NULL);
}

#define SLOW_CHAIN "{'1': {'class_type': 'TConst', 'inputs': {'value': 1}}," \
                   " '2': {'class_type': 'TSlow', 'inputs': {'steps': 1000000, 'a': ['1', 0]}}," \
                   " '3': {'class_type': 'TSink', 'inputs': {'value': ['2', 0]}}}"

static void test_interrupt_inside_node(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, SLOW_CHAIN);
    tk_rec_t rec;
    tk_rec_init(&rec, e, "p1");
    rec.hook = hook_interrupt_on_progress_3;
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "p1", &rec, &r), BASE_E_INTERRUPTED);
    assert_string_equal(tk_summary(&rec), "start|cached[]|executing 1|executing 2|progress 1/1000000|"
                                          "progress 2/1000000|progress 3/1000000|interrupted 2");
    const json_t *d = tk_event(&rec, "execution_interrupted", 0);
    assert_string_equal(json_str(json_object_get(d, "node_type")), "TSlow");
    tk_assert_json(json_object_get(d, "executed"), "[\"1\"]");
    assert_int_equal(r.status, BASE_E_INTERRUPTED);
    assert_string_equal(r.error_node, "2");
    assert_int_equal(eng_cache_count(e), 1);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

typedef struct {
    eng_t *e;
    const char *id;
} interrupter_t;

static void *interrupter(void *arg)
{
    interrupter_t *it = arg;
    for (int i = 0; i < 20000 && !atomic_load(&g_slow_started); i++) {
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
    eng_interrupt(it->e, it->id);
    return NULL;
}

static void test_interrupt_from_thread(void **state)
{
    eng_t *e = tk_engine();
    g_slow_sleep_us = 100;
    tk_prompt_t p;
    tk_prompt(&p, SLOW_CHAIN);
    tk_rec_t rec;
    tk_rec_init(&rec, e, "p-thread");
    interrupter_t it = {e, "p-thread"};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, interrupter, &it), 0);
    eng_result_t r;
    int rc = tk_run(e, &p, "p-thread", &rec, &r);
    pthread_join(th, NULL);
    assert_int_equal(rc, BASE_E_INTERRUPTED);
    assert_string_equal(r.error_node, "2");
    const json_t *d = tk_event(&rec, "execution_interrupted", 0);
    assert_string_equal(json_str(json_object_get(d, "node_id")), "2");
    eng_result_free(&r);

    /* Next prompt runs normally. */
    g_slow_sleep_us = 0;
    tk_prompt_t q;
    tk_prompt(&q, "{'1': {'class_type': 'TSlow', 'inputs': {'steps': 2}},"
                  " '2': {'class_type': 'TSink', 'inputs': {'value': ['1', 0]}}}");
    assert_int_equal(tk_run(e, &q, "p-next", &rec, &r), 0);
    tk_assert_json(r.outputs, "{\"2\":{\"value\":[2]}}");
    eng_result_free(&r);
    tk_prompt_free(&q);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

static void hook_interrupt_other(tk_rec_t *rec, const char *type, const json_t *d)
{
    if (!strcmp(type, "executing"))
        eng_interrupt(rec->e, "some-other-prompt");
}

static void test_interrupt_other_prompt_ignored(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, CHAIN3);
    tk_rec_t rec;
    tk_rec_init(&rec, e, "p1");
    rec.hook = hook_interrupt_other;
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "p1", &rec, &r), 0);
    assert_string_equal(tk_summary(&rec),
                        "start|cached[]|executing 1|executing 2|executing 3|executed 3|success");
    eng_result_free(&r);

    /* An interrupt while idle is dropped too. */
    eng_interrupt(e, NULL);
    eng_interrupt(e, "p2");
    rec.hook = NULL;
    eng_cache_clear(e);
    assert_int_equal(tk_run(e, &p, "p2", &rec, &r), 0);
    assert_int_equal(n_sink, 2);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

static tk_prompt_t *g_nested_prompt;

static void hook_nested_execute(tk_rec_t *rec, const char *type, const json_t *d)
{
    if (strcmp(type, "executing"))
        return;
    tk_rec_t inner;
    tk_rec_init(&inner, rec->e, "nested");
    eng_result_t r;
    rec->nested_rc = tk_run(rec->e, g_nested_prompt, "nested", &inner, &r);
    assert_int_equal(json_len(inner.ev), 0);
    eng_result_free(&r);
    tk_rec_free(&inner);
}

/* One eng_execute at a time per engine. */
static void test_busy(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, CHAIN3);
    g_nested_prompt = &p;
    tk_rec_t rec;
    tk_rec_init(&rec, e, "p1");
    rec.hook = hook_nested_execute;
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "p1", &rec, &r), 0);
    assert_int_equal(rec.nested_rc, BASE_E_ENGINE_BUSY);
    assert_int_equal(n_const, 1);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

/* ------------------------------------------------------------------ failures */

#define FAIL_CHAIN "{'1': {'class_type': 'TConst', 'inputs': {'value': 5}}," \
                   " '2': {'class_type': 'TAdd', 'inputs': {'a': ['1', 0], 'b': 3}}," \
                   " '3': {'class_type': 'TFail', 'inputs': {'a': ['2', 0], 'label': 'x'}}," \
                   " '4': {'class_type': 'TSink', 'inputs': {'value': ['3', 0]}}}"

static void test_failing_node(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, FAIL_CHAIN);
    tk_rec_t rec;
    tk_rec_init(&rec, e, "pf");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "pf", &rec, &r), BASE_E_NODE_FAILED);
    assert_string_equal(tk_summary(&rec),
                        "start|cached[]|executing 1|executing 2|executing 3|error 3");
    const json_t *d = tk_event(&rec, "execution_error", 0);
    static const char *keys[] = {"prompt_id", "node_id", "node_type", "executed",
                                 "exception_message", "exception_type", "traceback",
                                 "current_inputs", "current_outputs", "timestamp"};
    assert_int_equal(json_len(d), 10);
    for (size_t i = 0; i < 10; i++)
        assert_string_equal(json_key_at(d, i), keys[i]);
    assert_string_equal(json_str(json_object_get(d, "prompt_id")), "pf");
    assert_string_equal(json_str(json_object_get(d, "node_id")), "3");
    assert_string_equal(json_str(json_object_get(d, "node_type")), "TFail");
    tk_assert_json(json_object_get(d, "executed"), "[\"1\",\"2\"]");
    assert_string_equal(json_str(json_object_get(d, "exception_message")), "boom 8\n");
    assert_string_equal(json_str(json_object_get(d, "exception_type")), "ValueError");
    tk_assert_json(json_object_get(d, "traceback"), "[]");
    tk_assert_json(json_object_get(d, "current_inputs"), "{\"a\":[8],\"label\":[\"x\"]}");
    tk_assert_json(json_object_get(d, "current_outputs"), "[\"1\",\"2\",\"3\",\"4\"]");
    assert_true(is_int(json_object_get(d, "timestamp")));

    assert_int_equal(r.status, BASE_E_NODE_FAILED);
    assert_string_equal(r.error_node, "3");
    assert_string_equal(r.error_message, "boom 8");
    assert_string_equal(tk_last_log, "prompt pf node 3 (TFail): boom 8");
    assert_int_equal(json_len(r.messages), 3);
    assert_string_equal(json_str(json_at(json_at(r.messages, 2), 0)), "execution_error");
    assert_int_equal(r.n_executed, 2);
    assert_int_equal(eng_cache_count(e), 2);
    eng_result_free(&r);

    /* Outputs produced before the failure stay cached. */
    assert_int_equal(tk_run(e, &p, "pf2", &rec, &r), BASE_E_NODE_FAILED);
    assert_string_equal(tk_summary(&rec), "start|cached[1,2]|executing 3|error 3");
    d = tk_event(&rec, "execution_error", 0);
    tk_assert_json(json_object_get(d, "executed"), "[]");
    assert_int_equal(n_const, 1);
    assert_int_equal(n_add, 1);
    assert_int_equal(r.n_cached, 2);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

/* UI produced before a failure is reported, and stays cached with the outputs. */
static void test_failure_keeps_earlier_ui(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, "{'1': {'class_type': 'TConst', 'inputs': {'value': 2}},"
                  " '2': {'class_type': 'TShow', 'inputs': {'value': ['1', 0]}},"
                  " '3': {'class_type': 'TFail', 'inputs': {'a': ['2', 0]}},"
                  " '4': {'class_type': 'TSink', 'inputs': {'value': ['3', 0]}}}");
    tk_rec_t rec;
    tk_rec_init(&rec, e, "pf");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "pf", &rec, &r), BASE_E_NODE_FAILED);
    assert_string_equal(tk_summary(&rec),
                        "start|cached[]|executing 1|executing 2|executed 2|executing 3|error 3");
    tk_assert_json(tk_event(&rec, "executed", 0),
                   "{\"node\":\"2\",\"display_node\":\"2\",\"output\":{\"seen\":[2]},"
                   "\"prompt_id\":\"pf\"}");
    tk_assert_json(r.outputs, "{\"2\":{\"seen\":[2]}}");
    eng_result_free(&r);

    /* Second time: 2 comes from the cache (not an output node, so no executed event), and
     * its UI is still part of the result. */
    assert_int_equal(tk_run(e, &p, "pf2", &rec, &r), BASE_E_NODE_FAILED);
    assert_string_equal(tk_summary(&rec), "start|cached[1,2]|executing 3|error 3");
    tk_assert_json(r.outputs, "{\"2\":{\"seen\":[2]}}");
    assert_int_equal(n_show, 1);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

static void test_missing_output(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, "{'1': {'class_type': 'TConst', 'inputs': {'value': 2}},"
                  " '2': {'class_type': 'TNoOut', 'inputs': {'a': ['1', 0]}},"
                  " '3': {'class_type': 'TSink', 'inputs': {'value': ['2', 0]}}}");
    tk_rec_t rec;
    tk_rec_init(&rec, e, "pm");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "pm", &rec, &r), BASE_E_NODE_FAILED);
    assert_string_equal(tk_summary(&rec), "start|cached[]|executing 1|executing 2|error 2");
    assert_string_equal(r.error_message, "TNoOut returned no value for output 0 (INT)");
    const json_t *d = tk_event(&rec, "execution_error", 0);
    assert_string_equal(json_str(json_object_get(d, "exception_type")), "RuntimeError");
    assert_int_equal(eng_cache_count(e), 1);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

static void test_hidden_inputs(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, "{'7': {'class_type': 'THidden', 'inputs': {}}}");
    json_t *extra = json_new_object();
    json_object_set(extra, "workflow", json_new_object());
    g_expect_prompt = p.v.prompt;
    g_expect_extra = extra;
    eng_job_t job = {.prompt_id = "ph", .graph = p.g, .prompt = p.v.prompt,
                     .extra_pnginfo = extra, .outputs = p.v.outputs, .n_outputs = p.v.n_outputs};
    eng_result_t r;
    int rc = eng_execute(e, &job, &r);
    if (rc)
        print_error("%s\n", r.error_message);
    assert_int_equal(rc, 0);
    tk_assert_json(r.outputs, "{\"7\":{\"id\":[\"7\"]}}");
    eng_result_free(&r);
    json_free(extra);
    tk_prompt_free(&p);
    eng_free(e);
}

static void test_bad_jobs(void **state)
{
    eng_t *e = tk_engine();
    eng_config_t cfg = {.reg = NULL, .env = &tk_env};
    eng_t *bad = (eng_t *)1;
    assert_int_equal(eng_new(&cfg, &bad), BASE_E_INVAL);
    assert_null(bad);
    assert_int_equal(eng_new(NULL, &bad), BASE_E_INVAL);
    assert_int_equal(eng_new(&cfg, NULL), BASE_E_INVAL);

    tk_prompt_t p;
    tk_prompt(&p, CHAIN3);
    tk_rec_t rec;
    tk_rec_init(&rec, e, "pb");
    eng_result_t r;
    assert_int_equal(eng_execute(e, NULL, &r), BASE_E_INVAL);
    assert_int_equal(r.status, BASE_E_INVAL);
    assert_non_null(r.error_message);
    eng_result_free(&r);
    assert_int_equal(eng_execute(e, NULL, NULL), BASE_E_INVAL);

    char *unknown[] = {"99"};
    eng_job_t job = {.prompt_id = "pb", .graph = p.g, .prompt = p.v.prompt,
                     .outputs = unknown, .n_outputs = 1, .on_event = tk_on_event, .ud = &rec};
    assert_int_equal(eng_execute(e, &job, &r), BASE_E_INVAL);
    assert_string_equal(r.error_message, "output node 99 is not in the prompt");
    assert_int_equal(json_len(rec.ev), 0);
    eng_result_free(&r);

    job.n_outputs = 0;
    assert_int_equal(eng_execute(e, &job, &r), BASE_E_GRAPH_NO_OUTPUTS);
    eng_result_free(&r);

    /* A graph that never went through validation (no defs) is refused, not run. */
    json_t *j = NULL;
    char err[128];
    const char *t = "{\"1\": {\"class_type\": \"TSink\", \"inputs\": {\"value\": [\"5\", 0]}}}";
    assert_int_equal(json_parse(t, strlen(t), &j, err, sizeof err), 0);
    graph_t *raw = NULL;
    assert_int_equal(graph_parse(j, &raw, err, sizeof err), 0);
    char *one[] = {"1"};
    eng_job_t job2 = {.prompt_id = "raw", .graph = raw, .outputs = one, .n_outputs = 1,
                      .on_event = tk_on_event, .ud = &rec};
    assert_int_equal(eng_execute(e, &job2, &r), BASE_E_INVAL);
    assert_string_equal(r.error_node, "1");
    assert_int_equal(json_len(rec.ev), 0);
    eng_result_free(&r);
    graph_free(raw);
    json_free(j);

    /* None of that disturbed the engine. */
    assert_int_equal(tk_run(e, &p, "pb", &rec, &r), 0);
    eng_result_free(&r);
    eng_result_free(NULL);
    eng_interrupt(NULL, NULL);
    eng_cache_clear(NULL);
    assert_int_equal(eng_cache_count(NULL), 0);
    eng_free(NULL);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

/* ------------------------------------------------------------------ scale */

/* 100k nodes in a chain: nothing recursive, result correct. */
static void test_long_chain(void **state)
{
    enum { N = 100000 };
    base_buf_t b = BASE_BUF_INIT;
    assert_int_equal(base_buf_puts(&b, "{\"0\": {\"class_type\": \"TConst\", \"inputs\": {\"value\": 1}}"), 0);
    for (int i = 1; i < N; i++)
        assert_int_equal(base_buf_printf(&b, ", \"%d\": {\"class_type\": \"TAdd\", \"inputs\": "
                                             "{\"a\": [\"%d\", 0], \"b\": 2}}", i, i - 1), 0);
    assert_int_equal(base_buf_printf(&b, ", \"sink\": {\"class_type\": \"TSink\", \"inputs\": "
                                         "{\"value\": [\"%d\", 0]}}}", N - 1), 0);
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, b.data);
    base_buf_free(&b);
    eng_job_t job = {.prompt_id = "long", .graph = p.g, .prompt = p.v.prompt,
                     .outputs = p.v.outputs, .n_outputs = p.v.n_outputs};
    eng_result_t r;
    assert_int_equal(eng_execute(e, &job, &r), 0);
    char expect[64];
    snprintf(expect, sizeof expect, "{\"sink\":{\"value\":[%d]}}", 1 + 2 * (N - 1));
    tk_assert_json(r.outputs, expect);
    assert_int_equal(r.n_executed, N + 1);
    assert_int_equal(n_add, N - 1);
    eng_result_free(&r);

    /* And once more, all from the cache. */
    assert_int_equal(eng_execute(e, &job, &r), 0);
    assert_int_equal(r.n_executed, 0);
    assert_int_equal(r.n_cached, N + 1);
    tk_assert_json(r.outputs, expect);
    eng_result_free(&r);
    tk_prompt_free(&p);
    eng_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_sequence),
        cmocka_unit_test(test_no_callback),
        cmocka_unit_test(test_progress_events),
        cmocka_unit_test(test_interrupt_between_nodes),
        cmocka_unit_test(test_interrupt_inside_node),
        cmocka_unit_test(test_interrupt_from_thread),
        cmocka_unit_test(test_interrupt_other_prompt_ignored),
        cmocka_unit_test(test_busy),
        cmocka_unit_test(test_failing_node),
        cmocka_unit_test(test_failure_keeps_earlier_ui),
        cmocka_unit_test(test_missing_output),
        cmocka_unit_test(test_hidden_inputs),
        cmocka_unit_test(test_bad_jobs),
        cmocka_unit_test(test_long_chain),
    };
    return cmocka_run_group_tests(tests, tk_setup, tk_teardown);
}
