/* The tensor shim's lane support (nodes/tensor/tensor.h, "lanes"): a thread's intra-op budget
 * is its own (OpenMP's per-thread setting, unlike at::set_num_threads), results computed on
 * two threads at once with the same budget are bit-identical to one thread's, and the CUDA
 * ordering calls are harmless no-ops on a CPU build. */
#include "testutil.h"

#include <pthread.h>
#include <string.h>

#include "err.h"
#include "tensor.h"

static const ts_device_t CPU = {TS_CPU, 0};

typedef struct {
    int budget;       /* 0 = leave the thread's default */
    int seen;         /* ts_get_num_threads() after setting it */
    int rc;
    float sums[8];    /* a group-norm reduction whose result depends on the split */
} job_t;

/* A reduction over a group norm of a fixed non-trivial input: with OpenMP the partial sums
 * are split by thread, so its bits depend on the thread count. */
static int compute(float *sums)
{
    enum { N = 2, C = 64, H = 48, W = 48 };
    static float data[N * C * H * W];
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++)
        data[i] = (float)((i * 2654435761u) % 1000) / 997.0f - 0.5f;
    ts_tensor_t *x = NULL, *y = NULL, *z = NULL;
    int rc = ts_from_host(&x, data, TS_F32, (const int64_t[]){N, C, H, W}, 4, CPU);
    if (!rc)
        rc = ts_group_norm(&y, x, 32, NULL, NULL, 1e-5);
    if (!rc)
        rc = ts_unary(&z, y, TS_UNARY_EXP);
    for (int k = 0; !rc && k < 8; k++) {
        ts_tensor_t *s = NULL;
        rc = ts_slice(&s, z, 1, k * 8, k * 8 + 8);
        double v = 0;
        if (!rc)
            rc = ts_reduce_all(s, TS_REDUCE_SUM, &v);
        sums[k] = (float)v;
        ts_free(s);
    }
    ts_free(x);
    ts_free(y);
    ts_free(z);
    return rc;
}

static void *run_job(void *arg)
{
    job_t *j = arg;
    if (j->budget && (j->rc = ts_set_thread_budget(j->budget)))
        return NULL;
    j->seen = ts_get_num_threads();
    j->rc = compute(j->sums);
    return NULL;
}

static void run_threads(job_t *jobs, int n)
{
    pthread_t th[4];
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&th[i], NULL, run_job, &jobs[i]), 0);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < n; i++)
        assert_int_equal(jobs[i].rc, 0);
}

static void test_budget_is_per_thread(void **state)
{
    assert_int_equal(ts_init(2), 0);
    assert_int_equal(ts_get_num_threads(), 2);
    job_t one = {.budget = 1}, three = {.budget = 3}, dflt = {0};
    run_threads(&one, 1);
    run_threads(&three, 1);
    run_threads(&dflt, 1);
    assert_int_equal(one.seen, 1);
    assert_int_equal(three.seen, 3);
    /* A new thread starts from the process-wide count, untouched by the budgets. */
    assert_int_equal(dflt.seen, 2);
    assert_int_equal(ts_get_num_threads(), 2);
    /* This thread's own budget changes only this thread. */
    assert_int_equal(ts_set_thread_budget(1), 0);
    assert_int_equal(ts_get_num_threads(), 1);
    run_threads(&dflt, 1);
    assert_int_equal(dflt.seen, 2);
    assert_int_equal(ts_set_thread_budget(2), 0);
    assert_int_equal(ts_get_num_threads(), 2);
    assert_int_equal(ts_set_thread_budget(0), BASE_E_INVAL);
    assert_int_equal(ts_set_thread_budget(-3), BASE_E_INVAL);
}

/* Two lanes at once with one thread each give the bits one thread alone gives; two threads
 * may split the sums differently, but only within float rounding. */
static void test_same_budget_same_bits(void **state)
{
    job_t alone = {.budget = 1};
    run_threads(&alone, 1);
    for (int rep = 0; rep < 3; rep++) {
        job_t pair[2] = {{.budget = 1}, {.budget = 1}};
        run_threads(pair, 2);
        assert_memory_equal(pair[0].sums, alone.sums, sizeof alone.sums);
        assert_memory_equal(pair[1].sums, alone.sums, sizeof alone.sums);
    }
    job_t wide = {.budget = 2};
    run_threads(&wide, 1);
    for (int k = 0; k < 8; k++) {
        /* exp of a unit-variance normalisation over 8 channels of 2x48x48: about 3.8e4 */
        assert_true(alone.sums[k] > 1e4f && alone.sums[k] < 1e5f);
        assert_float_equal(wide.sums[k], alone.sums[k], 1e-5 * alone.sums[k]);
    }
}

/* CPU: nothing to record or wait for, and the calls say so without failing. */
static void test_events_on_cpu(void **state)
{
    ts_event_t *ev = (ts_event_t *)1;
    assert_int_equal(ts_event_record(&ev), 0);
    assert_null(ev);
    assert_int_equal(ts_event_record(NULL), BASE_E_INVAL);
    assert_int_equal(ts_event_wait(NULL), 0);
    ts_event_free(NULL);
    ts_tensor_t *t = NULL;
    assert_int_equal(ts_zeros(&t, (const int64_t[]){2, 2}, 2, TS_F32, CPU), 0);
    assert_int_equal(ts_record_stream(t), 0);
    assert_int_equal(ts_record_stream(NULL), 0);
    ts_free(t);
    /* A lane's stream on CPU is a token that changes nothing. */
    ts_stream_t *s = NULL;
    assert_int_equal(ts_stream_new(&s, CPU), 0);
    assert_int_equal(ts_stream_set_current(s), 0);
    assert_int_equal(ts_event_record(&ev), 0);
    assert_null(ev);
    assert_int_equal(ts_stream_set_current(NULL), 0);
    ts_stream_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_is_per_thread),
        cmocka_unit_test(test_same_budget_same_bits),
        cmocka_unit_test(test_events_on_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
