/* Lanes (engine/lanes.c): independent nodes really run at once, results and per-node event
 * order do not depend on the number of lanes, an error in one branch stops the prompt cleanly
 * (the other branch stops at its next interrupt point, nothing follows the error), interrupt
 * during parallel execution, heavy nodes against the memory budget, several prompts at once
 * sharing the cache, and /free while prompts run. Non-tensor nodes only, so the file also
 * runs under ThreadSanitizer (see README, "Lanes"). */
#include "testutil.h"

#include "engine_testkit.h"

#define CHAIN3 "{'1': {'class_type': 'TConst', 'inputs': {'value': 5}}," \
               " '2': {'class_type': 'TAdd', 'inputs': {'a': ['1', 0], 'b': 3}}," \
               " '3': {'class_type': 'TSink', 'inputs': {'value': ['2', 0]}}}"

/* ------------------------------------------------------------------ lane test nodes */

static atomic_int g_running, g_max_running; /* nodes of the gauge classes running at once */
static atomic_int g_heavy_running, g_max_heavy;
static atomic_int g_arrived;    /* TMeet: how many arrived */
static atomic_int g_spinning;   /* TSpin: how many are looping */
static atomic_int g_spin_done;  /* TSpin: how many finished without an interrupt */
static atomic_bool g_overlap;   /* a TLight ran while a heavy node ran */
static int g_heavy_expect = 1;  /* THeavy waits (bounded) until this many heavy nodes run */
static size_t g_mem_used, g_mem_budget;

static void lanes_reset(void)
{
    atomic_store(&g_running, 0);
    atomic_store(&g_max_running, 0);
    atomic_store(&g_heavy_running, 0);
    atomic_store(&g_max_heavy, 0);
    atomic_store(&g_arrived, 0);
    atomic_store(&g_spinning, 0);
    atomic_store(&g_spin_done, 0);
    atomic_store(&g_overlap, false);
    g_heavy_expect = 1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void gauge_in(atomic_int *now, atomic_int *max)
{
    int n = atomic_fetch_add(now, 1) + 1;
    int m = atomic_load(max);
    while (n > m && !atomic_compare_exchange_weak(max, &m, n))
        ;
}

/* Waits (at most 5 s) until `want` TMeet nodes have arrived: with fewer lanes than that, the
 * wait times out and the output says so (0 instead of a + 1). */
static int tmeet_exec(node_ctx_t *ctx)
{
    gauge_in(&g_running, &g_max_running);
    atomic_fetch_add(&g_arrived, 1);
    int want = (int)node_in_i64(ctx, "want");
    bool met = false;
    for (int i = 0; i < 5000 && !(met = atomic_load(&g_arrived) >= want); i++)
        sleep_ms(1);
    atomic_fetch_sub(&g_running, 1);
    node_set_out(ctx, 0, node_value_i64(met ? node_in_i64(ctx, "a") + 1 : 0));
    return 0;
}
static const node_input_t tmeet_in[] = {
    {.name = "want", .type = "INT", .section = NODE_REQUIRED},
    {.name = "label", .type = "STRING", .section = NODE_REQUIRED},
    {.name = "a", .type = "INT", .section = NODE_OPTIONAL, .flags = NODE_IN_FORCE_INPUT},
};
static const node_def_t tk_TMeet = {.name = "TMeet", .inputs = tmeet_in, .n_inputs = 3,
                                    .outputs = tk_int_out, .n_outputs = 1, .execute = tmeet_exec};

/* Reports progress every millisecond until interrupted (10 s at most). */
static int tspin_exec(node_ctx_t *ctx)
{
    atomic_fetch_add(&g_spinning, 1);
    for (uint64_t s = 1; s <= 10000; s++) {
        int rc = node_progress(ctx, s, 10000);
        if (rc)
            return rc;
        sleep_ms(1);
    }
    atomic_fetch_add(&g_spin_done, 1);
    node_set_out(ctx, 0, node_value_i64(node_in_i64(ctx, "label")));
    return 0;
}
static const node_input_t tspin_in[] = {{.name = "label", .type = "INT", .section = NODE_REQUIRED}};
static const node_def_t tk_TSpin = {.name = "TSpin", .inputs = tspin_in, .n_inputs = 1,
                                    .outputs = tk_int_out, .n_outputs = 1, .execute = tspin_exec};

/* Fails once a TSpin is looping (so the other branch is mid-node when the error comes). */
static int tfail_spin_exec(node_ctx_t *ctx)
{
    for (int i = 0; i < 5000 && !atomic_load(&g_spinning); i++)
        sleep_ms(1);
    ctx->err_type = "ValueError";
    return node_fail(ctx, "branch failed (spinning=%d)", atomic_load(&g_spinning));
}
static const node_def_t tk_TFailSpin = {.name = "TFailSpin", .inputs = tfail_in, .n_inputs = 2,
                                        .outputs = tk_int_out, .n_outputs = 1,
                                        .execute = tfail_spin_exec};

/* NODE_HEAVY: counts heavy nodes running at once, waiting (bounded) for g_heavy_expect. */
static int theavy_exec(node_ctx_t *ctx)
{
    gauge_in(&g_heavy_running, &g_max_heavy);
    for (int i = 0; i < 300 && atomic_load(&g_heavy_running) < g_heavy_expect; i++)
        sleep_ms(1);
    sleep_ms(40);
    atomic_fetch_sub(&g_heavy_running, 1);
    node_set_out(ctx, 0, node_value_i64(node_in_i64(ctx, "value")));
    return 0;
}
static const node_def_t tk_THeavy = {.name = "THeavy", .inputs = tconst_in, .n_inputs = 1,
                                     .outputs = tk_int_out, .n_outputs = 1, .flags = NODE_HEAVY,
                                     .execute = theavy_exec};

static int tlight_exec(node_ctx_t *ctx)
{
    for (int i = 0; i < 200 && !atomic_load(&g_overlap); i++) {
        if (atomic_load(&g_heavy_running))
            atomic_store(&g_overlap, true);
        sleep_ms(1);
    }
    node_set_out(ctx, 0, node_value_i64(node_in_i64(ctx, "value")));
    return 0;
}
static const node_def_t tk_TLight = {.name = "TLight", .inputs = tconst_in, .n_inputs = 1,
                                     .outputs = tk_int_out, .n_outputs = 1, .execute = tlight_exec};

/* (3a + b) mod 1000003, both linked: makes diamonds in the random graphs, and no two
 * operand orders give the same value. */
static int tadd2_exec(node_ctx_t *ctx)
{
    n_add++;
    node_set_out(ctx, 0, node_value_i64((node_in_i64(ctx, "a") * 3 + node_in_i64(ctx, "b")) % 1000003));
    return 0;
}
static const node_input_t tadd2_in[] = {
    {.name = "a", .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_FORCE_INPUT},
    {.name = "b", .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_FORCE_INPUT},
};
static const node_def_t tk_TAdd2 = {.name = "TAdd2", .inputs = tadd2_in, .n_inputs = 2,
                                    .outputs = tk_int_out, .n_outputs = 1, .execute = tadd2_exec};

static int lanes_setup(void **state)
{
    if (tk_setup(state))
        return -1;
    const node_def_t *defs[] = {&tk_TMeet, &tk_TSpin, &tk_TFailSpin, &tk_THeavy, &tk_TLight, &tk_TAdd2};
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        if (node_registry_add(tk_reg, defs[i]))
            return -1;
    return 0;
}

static void fake_mem(size_t *used, size_t *budget)
{
    *used = g_mem_used;
    *budget = g_mem_budget;
}

static eng_t *lanes_engine(unsigned lanes, unsigned max_prompts, unsigned heavy)
{
    eng_config_t cfg = {.reg = tk_reg, .env = &tk_env, .lanes = lanes, .max_prompts = max_prompts,
                        .heavy_lanes = heavy, .mem = fake_mem};
    eng_t *e = NULL;
    assert_int_equal(eng_new(&cfg, &e), 0);
    tk_reset_counts();
    lanes_reset();
    g_mem_used = 0;
    g_mem_budget = 0;
    return e;
}

/* ------------------------------------------------------------------ event checks */

/* Index of the first event of type about node (NULL = any node), from index `from`; -1. */
static int find_ev(const tk_rec_t *rec, const char *type, const char *node, size_t from)
{
    for (size_t i = from; i < json_len(rec->ev); i++) {
        const json_t *pair = json_at(rec->ev, i);
        const json_t *d = json_at(pair, 1);
        const char *n = json_str(json_object_get(d, "node"));
        if (!n)
            n = json_str(json_object_get(d, "node_id"));
        if (!strcmp(json_str(json_at(pair, 0)), type) && (!node || (n && !strcmp(n, node))))
            return (int)i;
    }
    return -1;
}

static int count_ev(const tk_rec_t *rec, const char *type)
{
    int n = 0;
    for (size_t i = 0; i < json_len(rec->ev); i++)
        if (!strcmp(json_str(json_at(json_at(rec->ev, i), 0)), type))
            n++;
    return n;
}

/* ComfyUI order, per prompt and per node: start and cached first, one terminal event last,
 * and for each node executing, then its progress, then executed. */
static void assert_well_ordered(const tk_rec_t *rec)
{
    size_t n = json_len(rec->ev);
    assert_true(n >= 3);
    assert_string_equal(json_str(json_at(json_at(rec->ev, 0), 0)), "execution_start");
    assert_string_equal(json_str(json_at(json_at(rec->ev, 1), 0)), "execution_cached");
    const char *last = json_str(json_at(json_at(rec->ev, n - 1), 0));
    assert_true(!strcmp(last, "execution_success") || !strcmp(last, "execution_error") ||
                !strcmp(last, "execution_interrupted"));
    assert_int_equal(count_ev(rec, "execution_success") + count_ev(rec, "execution_error") +
                         count_ev(rec, "execution_interrupted"),
                     1);
    for (size_t i = 2; i + 1 < n; i++) {
        const char *type = json_str(json_at(json_at(rec->ev, i), 0));
        const char *node = json_str(json_object_get(json_at(json_at(rec->ev, i), 1), "node"));
        assert_non_null(node);
        int ex = find_ev(rec, "executing", node, 0);
        if (!strcmp(type, "executing")) {
            assert_int_equal(ex, (int)i); /* each node starts once */
        } else if (!strcmp(type, "progress")) {
            assert_true(ex >= 0 && ex < (int)i);
            int done = find_ev(rec, "executed", node, 0);
            assert_true(done < 0 || done > (int)i);
        } else {
            assert_string_equal(type, "executed");
            assert_true(ex < (int)i); /* -1: replayed from the cache */
            assert_int_equal(find_ev(rec, "executed", node, i + 1), -1);
        }
    }
}

/* "type node" of every event, sorted: the event set, whatever the interleaving. */
static char *event_set(const tk_rec_t *rec)
{
    size_t n = json_len(rec->ev);
    char **lines = calloc(n + 1, sizeof *lines);
    assert_non_null(lines);
    for (size_t i = 0; i < n; i++) {
        const json_t *pair = json_at(rec->ev, i);
        const json_t *d = json_at(pair, 1);
        json_t *copy = json_clone(d);
        json_object_del(copy, "timestamp");
        char *body = json_dump(copy, JSON_COMPACT);
        json_free(copy);
        size_t len = strlen(body) + 64;
        lines[i] = malloc(len);
        snprintf(lines[i], len, "%s %s", json_str(json_at(pair, 0)), body);
        free(body);
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: small sets */
        for (size_t k = i; k > 0 && strcmp(lines[k - 1], lines[k]) > 0; k--) {
            char *t = lines[k];
            lines[k] = lines[k - 1];
            lines[k - 1] = t;
        }
    base_buf_t b = BASE_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        base_buf_puts(&b, lines[i]);
        base_buf_putc(&b, '\n');
        free(lines[i]);
    }
    free(lines);
    char *s = base_buf_take(&b);
    base_buf_free(&b);
    return s;
}

/* ------------------------------------------------------------------ tests */

/* Two independent branches run at the same time: each TMeet waits for the other. */
static void test_branches_run_together(void **state)
{
    eng_t *e = lanes_engine(2, 0, 0);
    tk_prompt_t p;
    tk_prompt(&p, "{'1': {'class_type': 'TMeet', 'inputs': {'want': 2, 'label': 'a'}},"
                  " '2': {'class_type': 'TMeet', 'inputs': {'want': 2, 'label': 'b'}},"
                  " '3': {'class_type': 'TAdd2', 'inputs': {'a': ['1', 0], 'b': ['2', 0]}},"
                  " '4': {'class_type': 'TSink', 'inputs': {'value': ['3', 0]}}}");
    tk_rec_t rec;
    tk_rec_init(&rec, e, "meet");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "meet", &rec, &r), 0);
    assert_int_equal(atomic_load(&g_max_running), 2);
    tk_assert_json(r.outputs, "{\"4\":{\"value\":[4]}}"); /* 3 * (0+1) + (0+1) */
    assert_well_ordered(&rec);
    assert_int_equal(r.n_executed, 4);
    /* Both meets started before either finished. */
    int e1 = find_ev(&rec, "executing", "1", 0), e2 = find_ev(&rec, "executing", "2", 0);
    int x3 = find_ev(&rec, "executing", "3", 0);
    assert_true(e1 >= 2 && e2 >= 2 && x3 > e1 && x3 > e2);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

/* A random DAG (diamonds, fans, progress) gives the same outputs, the same cache and the
 * same event set with 1 lane and with 2 or 4; per node the order is always ComfyUI's. */
static void random_dag(base_buf_t *b, unsigned seed, int n)
{
    uint64_t x = seed * 2654435761u + 1;
#define NEXT() (x = x * 6364136223846793005ULL + 1442695040888963407ULL, (unsigned)(x >> 33))
    base_buf_puts(b, "{\"0\": {\"class_type\": \"TConst\", \"inputs\": {\"value\": 1}}");
    for (int i = 1; i < n; i++) {
        unsigned kind = NEXT() % 6;
        int a = (int)(NEXT() % (unsigned)i), c = (int)(NEXT() % (unsigned)i);
        if (kind == 0)
            base_buf_printf(b, ", \"%d\": {\"class_type\": \"TConst\", \"inputs\": {\"value\": %d}}", i, i);
        else if (kind <= 2)
            base_buf_printf(b, ", \"%d\": {\"class_type\": \"TAdd\", \"inputs\": {\"a\": [\"%d\", 0], \"b\": %d}}", i,
                            a, i % 7);
        else if (kind <= 4)
            base_buf_printf(b, ", \"%d\": {\"class_type\": \"TAdd2\", \"inputs\": {\"a\": [\"%d\", 0], \"b\": [\"%d\", 0]}}",
                            i, a, c);
        else
            base_buf_printf(b, ", \"%d\": {\"class_type\": \"TSlow\", \"inputs\": {\"steps\": %d, \"a\": [\"%d\", 0]}}",
                            i, 1 + i % 3, a);
    }
    for (int i = n - 6; i < n; i++)
        base_buf_printf(b, ", \"s%d\": {\"class_type\": \"TSink\", \"inputs\": {\"value\": [\"%d\", 0]}}", i, i);
    base_buf_puts(b, "}");
#undef NEXT
}

static void test_same_results_any_lanes(void **state)
{
    for (unsigned seed = 1; seed <= 3; seed++) {
        base_buf_t b = BASE_BUF_INIT;
        random_dag(&b, seed, 400);
        tk_prompt_t p;
        tk_prompt(&p, b.data);
        base_buf_free(&b);
        char *out1 = NULL, *set1 = NULL;
        int adds1 = 0;
        size_t cache1 = 0, exec1 = 0;
        const unsigned lanes[] = {0, 2, 4, 4};
        for (size_t k = 0; k < sizeof lanes / sizeof lanes[0]; k++) {
            eng_t *e = lanes_engine(lanes[k], 0, 0);
            tk_rec_t rec;
            tk_rec_init(&rec, e, "dag");
            eng_result_t r;
            assert_int_equal(tk_run(e, &p, "dag", &rec, &r), 0);
            assert_well_ordered(&rec);
            char *out = json_dump(r.outputs, JSON_COMPACT), *set = event_set(&rec);
            if (!out1) {
                out1 = out;
                set1 = set;
                adds1 = atomic_load(&n_add);
                cache1 = eng_cache_count(e);
                exec1 = r.n_executed;
            } else {
                assert_string_equal(out, out1);
                assert_string_equal(set, set1);
                /* Duplicated sub-graphs still run once (they wait for their twin). */
                assert_int_equal(atomic_load(&n_add), adds1);
                assert_int_equal(eng_cache_count(e), cache1);
                assert_int_equal(r.n_executed, exec1);
                free(out);
                free(set);
            }
            /* Cached re-run: the same everywhere too. */
            eng_result_free(&r);
            assert_int_equal(tk_run(e, &p, "dag2", &rec, &r), 0);
            assert_int_equal(r.n_executed, 0);
            char *again = json_dump(r.outputs, JSON_COMPACT);
            assert_string_equal(again, out1);
            free(again);
            eng_result_free(&r);
            tk_rec_free(&rec);
            eng_free(e);
        }
        free(out1);
        free(set1);
        tk_prompt_free(&p);
    }
}

/* An error in one branch: the other branch's running node stops at its next interrupt point,
 * the error is the last event, and what ran stays cached. */
static void test_error_in_one_branch(void **state)
{
    eng_t *e = lanes_engine(2, 0, 0);
    tk_prompt_t p;
    tk_prompt(&p, "{'1': {'class_type': 'TConst', 'inputs': {'value': 5}},"
                  " '2': {'class_type': 'TFailSpin', 'inputs': {'a': ['1', 0]}},"
                  " '3': {'class_type': 'TSink', 'inputs': {'value': ['2', 0]}},"
                  " '4': {'class_type': 'TSpin', 'inputs': {'label': 9}},"
                  " '5': {'class_type': 'TSink', 'inputs': {'value': ['4', 0]}}}");
    tk_rec_t rec;
    tk_rec_init(&rec, e, "err");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "err", &rec, &r), BASE_E_NODE_FAILED);
    assert_well_ordered(&rec);
    size_t n = json_len(rec.ev);
    assert_string_equal(json_str(json_at(json_at(rec.ev, n - 1), 0)), "execution_error");
    const json_t *d = tk_event(&rec, "execution_error", 0);
    assert_string_equal(json_str(json_object_get(d, "node_id")), "2");
    assert_string_equal(json_str(json_object_get(d, "exception_message")), "branch failed (spinning=1)\n");
    assert_string_equal(json_str(json_object_get(d, "exception_type")), "ValueError");
    tk_assert_json(json_object_get(d, "current_inputs"), "{\"a\":[5]}");
    tk_assert_json(json_object_get(d, "executed"), "[\"1\"]");
    /* The spinning node was running, and stopped without reporting anything itself. */
    assert_true(find_ev(&rec, "executing", "4", 0) > 0);
    assert_int_equal(atomic_load(&g_spin_done), 0);
    assert_int_equal(count_ev(&rec, "execution_interrupted"), 0);
    assert_int_equal(find_ev(&rec, "executed", NULL, 0), -1);
    assert_int_equal(n_sink, 0);
    assert_int_equal(r.status, BASE_E_NODE_FAILED);
    assert_string_equal(r.error_node, "2");
    assert_int_equal(r.n_executed, 1);
    assert_int_equal(eng_cache_count(e), 1);
    assert_string_equal(tk_last_log, "prompt err node 2 (TFailSpin): branch failed (spinning=1)");
    eng_result_free(&r);

    /* The next prompt runs normally; the constant comes from the cache. */
    tk_prompt_t q;
    tk_prompt(&q, "{'1': {'class_type': 'TConst', 'inputs': {'value': 5}},"
                  " '2': {'class_type': 'TAdd', 'inputs': {'a': ['1', 0], 'b': 1}},"
                  " '3': {'class_type': 'TSink', 'inputs': {'value': ['2', 0]}}}");
    assert_int_equal(tk_run(e, &q, "ok", &rec, &r), 0);
    assert_string_equal(tk_summary(&rec), "start|cached[1]|executing 2|executing 3|executed 3|success");
    eng_result_free(&r);
    tk_prompt_free(&q);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

typedef struct {
    eng_t *e;
    const char *id;
    int want;
} spin_interrupter_t;

static void *interrupt_when_spinning(void *arg)
{
    spin_interrupter_t *it = arg;
    for (int i = 0; i < 5000 && atomic_load(&g_spinning) < it->want; i++)
        sleep_ms(1);
    sleep_ms(5);
    eng_interrupt(it->e, it->id);
    return NULL;
}

/* Interrupt while two branches are mid-node: both stop, one execution_interrupted, last. */
static void test_interrupt_parallel(void **state)
{
    eng_t *e = lanes_engine(3, 0, 0);
    tk_prompt_t p;
    tk_prompt(&p, "{'1': {'class_type': 'TSpin', 'inputs': {'label': 1}},"
                  " '2': {'class_type': 'TSink', 'inputs': {'value': ['1', 0]}},"
                  " '3': {'class_type': 'TSpin', 'inputs': {'label': 2}},"
                  " '4': {'class_type': 'TSink', 'inputs': {'value': ['3', 0]}},"
                  " '5': {'class_type': 'TConst', 'inputs': {'value': 3}}}");
    tk_rec_t rec;
    tk_rec_init(&rec, e, "int");
    spin_interrupter_t it = {e, "int", 2};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, interrupt_when_spinning, &it), 0);
    eng_result_t r;
    char *only[] = {"2", "4"};
    eng_job_t job = {.prompt_id = "int", .graph = p.g, .prompt = p.v.prompt, .outputs = only,
                     .n_outputs = 2, .on_event = tk_on_event, .ud = &rec};
    int rc = eng_execute(e, &job, &r);
    pthread_join(th, NULL);
    assert_int_equal(rc, BASE_E_INTERRUPTED);
    assert_well_ordered(&rec);
    assert_int_equal(count_ev(&rec, "execution_interrupted"), 1);
    const json_t *d = tk_event(&rec, "execution_interrupted", 0);
    const char *stopped = json_str(json_object_get(d, "node_id"));
    assert_true(!strcmp(stopped, "1") || !strcmp(stopped, "3"));
    tk_assert_json(json_object_get(d, "executed"), "[]");
    assert_true(find_ev(&rec, "progress", "1", 0) > 0 && find_ev(&rec, "progress", "3", 0) > 0);
    assert_int_equal(atomic_load(&g_spin_done), 0);
    assert_int_equal(n_sink, 0);
    assert_int_equal(r.status, BASE_E_INTERRUPTED);
    assert_string_equal(r.error_node, stopped);
    assert_int_equal(eng_cache_count(e), 0);
    eng_result_free(&r);

    /* An interrupt names one prompt: a later prompt starts with its flag cleared. */
    tk_prompt_t q;
    tk_prompt(&q, CHAIN3);
    assert_int_equal(tk_run(e, &q, "after", &rec, &r), 0);
    tk_assert_json(r.outputs, "{\"3\":{\"value\":[8]}}");
    eng_result_free(&r);
    tk_prompt_free(&q);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

#define HEAVY_GRAPH "{'1': {'class_type': 'THeavy', 'inputs': {'value': 1}}," \
                    " '2': {'class_type': 'THeavy', 'inputs': {'value': 2}}," \
                    " '3': {'class_type': 'TLight', 'inputs': {'value': 3}}," \
                    " '4': {'class_type': 'TSink', 'inputs': {'value': ['1', 0]}}," \
                    " '5': {'class_type': 'TSink', 'inputs': {'value': ['2', 0]}}," \
                    " '6': {'class_type': 'TSink', 'inputs': {'value': ['3', 0]}}}"

static int run_heavy(unsigned heavy_lanes, size_t used, size_t budget, int expect)
{
    eng_t *e = lanes_engine(3, 0, heavy_lanes);
    g_mem_used = used;
    g_mem_budget = budget;
    g_heavy_expect = expect;
    tk_prompt_t p;
    tk_prompt(&p, HEAVY_GRAPH);
    tk_rec_t rec;
    tk_rec_init(&rec, e, "heavy");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "heavy", &rec, &r), 0);
    assert_well_ordered(&rec);
    assert_int_equal(r.n_executed, 6);
    eng_result_free(&r);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
    return atomic_load(&g_max_heavy);
}

/* Heavy nodes: one at a time when the budget is tight (or --lanes-heavy 1), a light node runs
 * beside them meanwhile; two at once when the models leave room or the cap allows it. */
static void test_heavy_nodes(void **state)
{
    assert_int_equal(run_heavy(1, 0, 0, 2), 1);
    assert_true(atomic_load(&g_overlap));
    assert_int_equal(run_heavy(0, 60, 100, 2), 1); /* over half the budget in use */
    assert_true(atomic_load(&g_overlap));
    assert_int_equal(run_heavy(0, 50, 100, 2), 2); /* half free */
    assert_int_equal(run_heavy(0, 1000, 0, 2), 2); /* no budget */
    assert_int_equal(run_heavy(2, 1000, 100, 2), 2); /* an explicit cap ignores memory */
}

typedef struct {
    eng_t *e;
    tk_prompt_t *p;
    const char *id;
    tk_rec_t rec;
    eng_result_t r;
    int rc;
} bg_run_t;

static void *bg_run(void *arg)
{
    bg_run_t *b = arg;
    b->rc = tk_run(b->e, b->p, b->id, &b->rec, &b->r);
    return NULL;
}

/* Two prompts at once on one engine: they meet (so they really overlap), share the identical
 * constant's cache entry, and a /free while they run keeps what they hold. */
static void test_two_prompts_at_once(void **state)
{
    eng_t *e = lanes_engine(2, 2, 0);
    tk_prompt_t p1, p2;
    tk_prompt(&p1, "{'1': {'class_type': 'TConst', 'inputs': {'value': 7}},"
                   " '2': {'class_type': 'TMeet', 'inputs': {'want': 3, 'label': 'p1', 'a': ['1', 0]}},"
                   " '3': {'class_type': 'TSink', 'inputs': {'value': ['2', 0]}}}");
    tk_prompt(&p2, "{'1': {'class_type': 'TConst', 'inputs': {'value': 7}},"
                   " '2': {'class_type': 'TMeet', 'inputs': {'want': 3, 'label': 'p2', 'a': ['1', 0]}},"
                   " '3': {'class_type': 'TAdd', 'inputs': {'a': ['2', 0], 'b': 100}},"
                   " '4': {'class_type': 'TSink', 'inputs': {'value': ['3', 0]}}}");
    bg_run_t a = {.e = e, .p = &p1, .id = "A"}, b = {.e = e, .p = &p2, .id = "B"};
    tk_rec_init(&a.rec, e, "A");
    tk_rec_init(&b.rec, e, "B");
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, bg_run, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, bg_run, &b), 0);
    /* Both meets waiting (for each other and for this thread): drop the cache under them,
     * then let them go. */
    for (int i = 0; i < 5000 && atomic_load(&g_arrived) < 2; i++)
        sleep_ms(1);
    assert_int_equal(eng_cache_count(e), 1); /* the shared constant */
    eng_cache_clear(e);
    assert_int_equal(eng_cache_count(e), 1); /* held by both prompts */
    atomic_fetch_add(&g_arrived, 1);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, 0);
    assert_int_equal(atomic_load(&g_max_running), 2);
    tk_assert_json(a.r.outputs, "{\"3\":{\"value\":[8]}}");
    tk_assert_json(b.r.outputs, "{\"4\":{\"value\":[108]}}");
    assert_well_ordered(&a.rec);
    assert_well_ordered(&b.rec);
    /* One entry per signature: const (shared), 2 meets, add, 2 sinks. */
    assert_int_equal(eng_cache_count(e), 6);
    /* A third prompt alone sweeps everything it does not use: nothing stayed pinned. */
    tk_prompt_t p3;
    tk_prompt(&p3, CHAIN3);
    eng_result_t r3;
    assert_int_equal(tk_run(e, &p3, "C", &a.rec, &r3), 0);
    eng_result_free(&r3);
    assert_int_equal(eng_cache_count(e), 3);
    eng_cache_clear(e);
    assert_int_equal(eng_cache_count(e), 0);
    eng_result_free(&a.r);
    eng_result_free(&b.r);
    tk_rec_free(&a.rec);
    tk_rec_free(&b.rec);
    tk_prompt_free(&p1);
    tk_prompt_free(&p2);
    tk_prompt_free(&p3);
    eng_free(e);
}

/* max_prompts bounds the prompts at once, with lanes as without. */
static void test_busy_with_lanes(void **state)
{
    eng_t *e = lanes_engine(2, 1, 0);
    tk_prompt_t p;
    tk_prompt(&p, "{'1': {'class_type': 'TSpin', 'inputs': {'label': 1}},"
                  " '2': {'class_type': 'TSink', 'inputs': {'value': ['1', 0]}}}");
    bg_run_t a = {.e = e, .p = &p, .id = "A"};
    tk_rec_init(&a.rec, e, "A");
    pthread_t ta;
    assert_int_equal(pthread_create(&ta, NULL, bg_run, &a), 0);
    for (int i = 0; i < 5000 && !atomic_load(&g_spinning); i++)
        sleep_ms(1);
    tk_rec_t rec;
    tk_rec_init(&rec, e, "B");
    eng_result_t r;
    assert_int_equal(tk_run(e, &p, "B", &rec, &r), BASE_E_ENGINE_BUSY);
    assert_int_equal(json_len(rec.ev), 0);
    eng_result_free(&r);
    eng_interrupt(e, "B"); /* not running: ignored */
    eng_interrupt(e, NULL);
    pthread_join(ta, NULL);
    assert_int_equal(a.rc, BASE_E_INTERRUPTED);
    eng_result_free(&a.r);
    tk_rec_free(&a.rec);
    tk_rec_free(&rec);
    tk_prompt_free(&p);
    eng_free(e);
}

/* A wide fan on many lanes: every node runs once and the result is exact. */
static void test_wide_fan(void **state)
{
    enum { N = 3000 };
    base_buf_t b = BASE_BUF_INIT;
    base_buf_puts(&b, "{\"c\": {\"class_type\": \"TConst\", \"inputs\": {\"value\": 2}}");
    for (int i = 0; i < N; i++)
        base_buf_printf(&b, ", \"%d\": {\"class_type\": \"TAdd\", \"inputs\": {\"a\": [\"c\", 0], \"b\": %d}}", i, i);
    base_buf_puts(&b, ", \"t0\": {\"class_type\": \"TAdd2\", \"inputs\": {\"a\": [\"0\", 0], \"b\": [\"1\", 0]}}");
    for (int i = 2; i < N; i++)
        base_buf_printf(&b, ", \"t%d\": {\"class_type\": \"TAdd2\", \"inputs\": {\"a\": [\"t%d\", 0], \"b\": [\"%d\", 0]}}",
                        i - 1, i - 2, i);
    /* 64 copies of one slow sub-graph, ready at once: on any number of lanes it runs once
     * (ComfyUI finds the first copy's result in the cache). */
    for (int i = 0; i < 64; i++)
        base_buf_printf(&b, ", \"d%d\": {\"class_type\": \"TSlow\", \"inputs\": {\"a\": [\"c\", 0], \"steps\": 10}}"
                            ", \"ds%d\": {\"class_type\": \"TSink\", \"inputs\": {\"value\": [\"d%d\", 0]}}",
                        i, i, i);
    base_buf_printf(&b, ", \"sink\": {\"class_type\": \"TSink\", \"inputs\": {\"value\": [\"t%d\", 0]}}}", N - 2);
    tk_prompt_t p;
    tk_prompt(&p, b.data);
    base_buf_free(&b);
    int64_t expect = ((2 + 0) * 3 + (2 + 1)) % 1000003;
    for (int i = 2; i < N; i++)
        expect = (expect * 3 + (2 + i)) % 1000003;
    eng_t *e = lanes_engine(4, 0, 0);
    g_slow_sleep_us = 2000;
    eng_job_t job = {.prompt_id = "fan", .graph = p.g, .prompt = p.v.prompt, .outputs = p.v.outputs,
                     .n_outputs = p.v.n_outputs};
    eng_result_t r;
    assert_int_equal(eng_execute(e, &job, &r), 0);
    char want[96];
    snprintf(want, sizeof want, "\"sink\":{\"value\":[%lld]}}", (long long)expect);
    char *got = json_dump(r.outputs, JSON_COMPACT);
    assert_non_null(strstr(got, want));
    assert_non_null(strstr(got, "\"ds63\":{\"value\":[12]}"));
    free(got);
    assert_int_equal(atomic_load(&n_slow), 1);
    assert_int_equal(atomic_load(&n_add), 2 * N - 1);
    assert_int_equal(atomic_load(&n_sink), 2);
    assert_int_equal(r.n_executed, 2 * N + 1 + 2);
    assert_int_equal(r.n_cached, 2 * 63);
    eng_result_free(&r);
    tk_prompt_free(&p);
    eng_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_branches_run_together),
        cmocka_unit_test(test_same_results_any_lanes),
        cmocka_unit_test(test_error_in_one_branch),
        cmocka_unit_test(test_interrupt_parallel),
        cmocka_unit_test(test_heavy_nodes),
        cmocka_unit_test(test_two_prompts_at_once),
        cmocka_unit_test(test_busy_with_lanes),
        cmocka_unit_test(test_wide_fan),
    };
    return cmocka_run_group_tests(tests, lanes_setup, tk_teardown);
}
