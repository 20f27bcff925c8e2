/* The output cache across prompts: reuse, partial re-execution, is_changed fingerprints,
 * classic eviction, shared identical sub-graphs, NOT_IDEMPOTENT and clearing. */
#include "testutil.h"

#include "engine_testkit.h"

#define CHAIN3(b) "{'1': {'class_type': 'TConst', 'inputs': {'value': 5}}," \
                  " '2': {'class_type': 'TAdd', 'inputs': {'a': ['1', 0], 'b': " #b "}}," \
                  " '3': {'class_type': 'TSink', 'inputs': {'value': ['2', 0]}}}"

static void test_reuse(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, CHAIN3(3));
    tk_rec_t rec;
    tk_rec_init(&rec, e, "a");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "a", &rec, &r), 0);
    eng_result_free(&r);

    /* Nothing runs; the output node re-sends its cached UI. */
    assert_int_equal(tk_run(e, &p, "b", &rec, &r), 0);
    assert_string_equal(tk_summary(&rec), "start|cached[1,2,3]|executed 3|success");
    tk_assert_json(tk_event(&rec, "executed", 0),
                   "{\"node\":\"3\",\"display_node\":\"3\",\"output\":{\"value\":[8]},"
                   "\"prompt_id\":\"b\"}");
    tk_assert_json(json_object_get(tk_event(&rec, "execution_cached", 0), "nodes"),
                   "[\"1\",\"2\",\"3\"]");
    assert_int_equal(n_const, 1);
    assert_int_equal(n_add, 1);
    assert_int_equal(n_sink, 1);
    assert_int_equal(r.n_executed, 0);
    assert_int_equal(r.n_cached, 3);
    assert_int_equal(r.n_timings, 3);
    assert_true(r.timings[0].cached && r.timings[1].cached && r.timings[2].cached);
    tk_assert_json(r.outputs, "{\"3\":{\"value\":[8]}}");
    assert_string_equal(json_str(json_at(json_at(r.messages, 2), 0)), "execution_success");
    tk_assert_json(json_object_get(json_at(json_at(r.messages, 1), 1), "nodes"),
                   "[\"1\",\"2\",\"3\"]");
    assert_int_equal(eng_cache_count(e), 3);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

/* An output node without UI sends no "executed" when it runs, and "output": null when it
 * is served from the cache. */
static void test_output_without_ui(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, "{'1': {'class_type': 'TConst', 'inputs': {'value': 5}},"
                  " '2': {'class_type': 'TQuiet', 'inputs': {'value': ['1', 0]}}}");
    tk_rec_t rec;
    tk_rec_init(&rec, e, "a");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "a", &rec, &r), 0);
    assert_string_equal(tk_summary(&rec), "start|cached[]|executing 1|executing 2|success");
    tk_assert_json(r.outputs, "{}");
    eng_result_free(&r);
    assert_int_equal(tk_run(e, &p, "b", &rec, &r), 0);
    assert_string_equal(tk_summary(&rec), "start|cached[1,2]|executed 2|success");
    tk_assert_json(tk_event(&rec, "executed", 0),
                   "{\"node\":\"2\",\"display_node\":\"2\",\"output\":null,\"prompt_id\":\"b\"}");
    assert_int_equal(n_sink, 1);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

static void test_partial_reexecution(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p, q;
    tk_prompt(&p, CHAIN3(3));
    tk_prompt(&q, CHAIN3(4));
    tk_rec_t rec;
    tk_rec_init(&rec, e, "a");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "a", &rec, &r), 0);
    eng_result_free(&r);

    /* Changing node 2's constant re-runs it and what depends on it, nothing upstream. */
    assert_int_equal(tk_run(e, &q, "b", &rec, &r), 0);
    assert_string_equal(tk_summary(&rec), "start|cached[1]|executing 2|executing 3|executed 3|success");
    tk_assert_json(r.outputs, "{\"3\":{\"value\":[9]}}");
    assert_int_equal(n_const, 1);
    assert_int_equal(n_add, 2);
    assert_int_equal(n_sink, 2);
    assert_int_equal(r.n_executed, 2);
    assert_int_equal(r.n_cached, 1);
    /* Classic mode: the first prompt's 2 and 3 were dropped. */
    assert_int_equal(eng_cache_count(e), 3);
    eng_result_free(&r);

    /* So going back recomputes them. */
    assert_int_equal(tk_run(e, &p, "c", &rec, &r), 0);
    assert_string_equal(tk_summary(&rec), "start|cached[1]|executing 2|executing 3|executed 3|success");
    assert_int_equal(n_add, 3);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    tk_prompt_free(&q);
    eng_free(e);
}

#define FILE_PROMPT "{'1': {'class_type': 'TFile', 'inputs': {'name': 'a.png'}}," \
                    " '2': {'class_type': 'TAdd', 'inputs': {'a': ['1', 0], 'b': 1}}," \
                    " '3': {'class_type': 'TSink', 'inputs': {'value': ['2', 0]}}}"

static void test_is_changed(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, FILE_PROMPT);
    tk_rec_t rec;
    tk_rec_init(&rec, e, "a");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "a", &rec, &r), 0);
    tk_assert_json(r.outputs, "{\"3\":{\"value\":[101]}}");
    eng_result_free(&r);

    /* Same fingerprint: cached. */
    assert_int_equal(tk_run(e, &p, "b", &rec, &r), 0);
    assert_string_equal(tk_summary(&rec), "start|cached[1,2,3]|executed 3|success");
    assert_int_equal(n_file, 1);
    eng_result_free(&r);

    /* The "file" changed: the reader and everything below re-run. */
    g_fp = "v2";
    g_file_value = 200;
    assert_int_equal(tk_run(e, &p, "c", &rec, &r), 0);
    assert_string_equal(tk_summary(&rec), "start|cached[]|executing 1|executing 2|executing 3|"
                                          "executed 3|success");
    tk_assert_json(r.outputs, "{\"3\":{\"value\":[201]}}");
    assert_int_equal(n_file, 2);
    assert_int_equal(n_add, 2);
    eng_result_free(&r);

    /* A failing is_changed means "always re-run". */
    g_fp_fail = true;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tk_run(e, &p, "d", &rec, &r), 0);
        assert_string_equal(tk_summary(&rec), "start|cached[]|executing 1|executing 2|"
                                              "executing 3|executed 3|success");
        eng_result_free(&r);
    }
    assert_int_equal(n_file, 4);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

/* Identical sub-graphs share one signature: the second copy reuses the first's result in
 * the same prompt (ComfyUI finds it in the cache when its turn comes). */
static void test_identical_subgraphs(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, "{'1': {'class_type': 'TConst', 'inputs': {'value': 7}},"
                  " '2': {'class_type': 'TConst', 'inputs': {'value': 7}},"
                  " '3': {'class_type': 'TSink', 'inputs': {'value': ['1', 0]}},"
                  " '4': {'class_type': 'TSink', 'inputs': {'value': ['2', 0]}}}");
    tk_rec_t rec;
    tk_rec_init(&rec, e, "a");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "a", &rec, &r), 0);
    assert_int_equal(n_const, 1);
    assert_int_equal(n_sink, 1);
    assert_int_equal(r.n_executed, 2);
    assert_int_equal(r.n_cached, 2);
    tk_assert_json(r.outputs, "{\"3\":{\"value\":[7]},\"4\":{\"value\":[7]}}");
    /* Both outputs report their UI. */
    assert_non_null(tk_event(&rec, "executed", 1));
    assert_null(tk_event(&rec, "executed", 2));
    assert_int_equal(eng_cache_count(e), 2);
    eng_result_free(&r);

    /* NOT_IDEMPOTENT: the node id enters the signature, so each copy runs. */
    tk_prompt_t q;
    tk_prompt(&q, "{'1': {'class_type': 'TConstNI', 'inputs': {'value': 7}},"
                  " '2': {'class_type': 'TConstNI', 'inputs': {'value': 7}},"
                  " '3': {'class_type': 'TSink', 'inputs': {'value': ['1', 0]}},"
                  " '4': {'class_type': 'TSink', 'inputs': {'value': ['2', 0]}}}");
    assert_int_equal(tk_run(e, &q, "b", &rec, &r), 0);
    assert_int_equal(n_ni, 2);
    assert_int_equal(n_sink, 3);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    tk_prompt_free(&q);
    eng_free(e);
}

/* Only the selected outputs and what they need run; others' cache entries come and go with
 * the prompts that use them. */
static void test_partial_outputs(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, "{'1': {'class_type': 'TConst', 'inputs': {'value': 1}},"
                  " '2': {'class_type': 'TSink', 'inputs': {'value': ['1', 0]}},"
                  " '3': {'class_type': 'TConst', 'inputs': {'value': 2}},"
                  " '4': {'class_type': 'TSink', 'inputs': {'value': ['3', 0]}}}");
    tk_rec_t rec;
    tk_rec_init(&rec, e, "a");
    char *only4[] = {"4"};
    eng_job_t job = {.prompt_id = "a", .graph = p.g, .prompt = p.v.prompt, .outputs = only4,
                     .n_outputs = 1, .on_event = tk_on_event, .ud = &rec};
    eng_result_t r;
    assert_int_equal(eng_execute(e, &job, &r), 0);
    assert_string_equal(tk_summary(&rec), "start|cached[]|executing 3|executing 4|executed 4|success");
    tk_assert_json(r.outputs, "{\"4\":{\"value\":[2]}}");
    assert_int_equal(eng_cache_count(e), 2);
    eng_result_free(&r);

    /* Everything: 3 and 4 are cached, 1 and 2 run. */
    json_free(rec.ev);
    rec.ev = json_new_array();
    job.outputs = p.v.outputs;
    job.n_outputs = p.v.n_outputs;
    assert_int_equal(eng_execute(e, &job, &r), 0);
    const char *s = tk_summary(&rec);
    assert_non_null(strstr(s, "start|cached[3,4]|"));
    assert_non_null(strstr(s, "executing 1|"));
    assert_non_null(strstr(s, "executing 2|executed 2"));
    assert_non_null(strstr(s, "executed 4"));
    assert_null(strstr(s, "executing 4"));
    tk_assert_json(r.outputs, "{\"2\":{\"value\":[1]},\"4\":{\"value\":[2]}}");
    assert_int_equal(n_const, 2);
    assert_int_equal(n_sink, 2);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

static void test_clear(void **state)
{
    eng_t *e = tk_engine();
    tk_prompt_t p;
    tk_prompt(&p, CHAIN3(3));
    tk_rec_t rec;
    tk_rec_init(&rec, e, "a");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "a", &rec, &r), 0);
    eng_result_free(&r);
    assert_int_equal(eng_cache_count(e), 3);
    eng_cache_clear(e);
    assert_int_equal(eng_cache_count(e), 0);
    assert_int_equal(tk_run(e, &p, "b", &rec, &r), 0);
    assert_string_equal(tk_summary(&rec),
                        "start|cached[]|executing 1|executing 2|executing 3|executed 3|success");
    assert_int_equal(n_const, 2);
    eng_result_free(&r);
    /* eng_free releases what is still cached (ASan checks). */
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

/* Cached values outlive the graph that made them and are shared, not copied. */
static void test_many_prompts_growth(void **state)
{
    eng_t *e = tk_engine();
    tk_rec_t rec;
    tk_rec_init(&rec, e, "a");
    for (int i = 0; i < 200; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "{'1': {'class_type': 'TConst', 'inputs': {'value': %d}},"
                 " '2': {'class_type': 'TSink', 'inputs': {'value': ['1', 0]}}}", i % 3);
        tk_prompt_t p;
        tk_prompt(&p, text);
        eng_result_t r;
        assert_int_equal(tk_run(e, &p, "x", &rec, &r), 0);
        assert_int_equal(eng_cache_count(e), 2);
        eng_result_free(&r);
        tk_prompt_free(&p);
    }
    assert_int_equal(n_const, 200);
    tk_rec_free(&rec);
    eng_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_output_without_ui),
        cmocka_unit_test(test_partial_reexecution),
        cmocka_unit_test(test_is_changed),
        cmocka_unit_test(test_identical_subgraphs),
        cmocka_unit_test(test_partial_outputs),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_many_prompts_growth),
    };
    return cmocka_run_group_tests(tests, tk_setup, tk_teardown);
}
