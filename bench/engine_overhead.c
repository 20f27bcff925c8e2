/* Engine overhead per node: graph_parse + graph_validate + eng_execute of trivial nodes, for
 * chains and wide fans of 1k, 10k and 100k nodes, on a fresh engine (nothing cached).
 * Target: under 5 us per node at 10k, and 100k within 12x of 10k (linear growth). A second
 * run of the same prompt on the same engine (all cached) is shown for information.
 *
 * Run by hand from a Release build: build-rel/engine_overhead [reps] */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

/* ------------------------------------------------------------------ trivial nodes */

static const node_output_t int_out[] = {{.type = "INT"}};

static int const_exec(node_ctx_t *ctx)
{
    node_set_out(ctx, 0, node_value_i64(node_in_i64(ctx, "value")));
    return 0;
}
static const node_input_t const_in[] = {{.name = "value", .type = "INT", .section = NODE_REQUIRED}};
static const node_def_t BenchConst = {.name = "BenchConst", .inputs = const_in, .n_inputs = 1,
                                      .outputs = int_out, .n_outputs = 1, .execute = const_exec};

static int add_exec(node_ctx_t *ctx)
{
    node_set_out(ctx, 0, node_value_i64(node_in_i64(ctx, "a") + node_in_i64(ctx, "b")));
    return 0;
}
static const node_input_t add_in[] = {
    {.name = "a", .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_FORCE_INPUT},
    {.name = "b", .type = "INT", .section = NODE_REQUIRED},
};
static const node_def_t BenchAdd = {.name = "BenchAdd", .inputs = add_in, .n_inputs = 2,
                                    .outputs = int_out, .n_outputs = 1, .execute = add_exec};

static int64_t sink_total;
static int sink_exec(node_ctx_t *ctx)
{
    sink_total += node_in_i64(ctx, "value");
    return 0;
}
static const node_input_t sink_in[] = {
    {.name = "value", .type = "INT", .section = NODE_REQUIRED, .flags = NODE_IN_FORCE_INPUT},
};
static const node_def_t BenchSink = {.name = "BenchSink", .inputs = sink_in, .n_inputs = 1,
                                     .flags = NODE_OUTPUT_NODE, .execute = sink_exec};

/* ------------------------------------------------------------------ prompts */

/* Prompts are built as text and parsed, as the server receives them (json_object_set
 * would scan every key per insert). */
static void put(base_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(base_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = base_buf_puts(b, b->len > 1 ? ", " : "");
    if (!rc)
        rc = base_buf_vprintf(b, fmt, ap);
    va_end(ap);
    if (rc) {
        fprintf(stderr, "out of memory building the prompt\n");
        exit(1);
    }
}

#define CONST_FMT "\"%zu\": {\"class_type\": \"BenchConst\", \"inputs\": {\"value\": %zu}}"
#define ADD_FMT "\"%zu\": {\"class_type\": \"BenchAdd\", \"inputs\": {\"a\": [\"%zu\", 0], \"b\": %zu}}"
#define SINK_FMT "\"%zu\": {\"class_type\": \"BenchSink\", \"inputs\": {\"value\": [\"%zu\", 0]}}"

static json_t *parse_or_die(base_buf_t *b)
{
    json_t *j = NULL;
    char err[256];
    if (base_buf_putc(b, '}') || json_parse(b->data, b->len, &j, err, sizeof err)) {
        fprintf(stderr, "cannot parse the generated prompt\n");
        exit(1);
    }
    base_buf_free(b);
    return j;
}

/* Const -> Add x (n-2) -> Sink. */
static json_t *make_chain(size_t n)
{
    base_buf_t b = BASE_BUF_INIT;
    base_buf_putc(&b, '{');
    put(&b, CONST_FMT, (size_t)1, (size_t)1);
    for (size_t i = 2; i < n; i++)
        put(&b, ADD_FMT, i, i - 1, (size_t)1);
    put(&b, SINK_FMT, n, n - 1);
    return parse_or_die(&b);
}

/* One Const feeding k Adds, each with its own Sink: 1 + 2k nodes, k outputs. */
static json_t *make_fan(size_t n)
{
    size_t k = (n - 1) / 2;
    base_buf_t b = BASE_BUF_INIT;
    base_buf_putc(&b, '{');
    put(&b, CONST_FMT, (size_t)1, (size_t)1);
    for (size_t i = 0; i < k; i++) {
        put(&b, ADD_FMT, 2 + 2 * i, (size_t)1, i);
        put(&b, SINK_FMT, 3 + 2 * i, 2 + 2 * i);
    }
    return parse_or_die(&b);
}

/* ------------------------------------------------------------------ measuring */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static size_t n_events;
static void on_event(void *ud, const char *type, json_t *data)
{
    n_events++;
    json_free(data);
}

typedef struct {
    double parse, validate, exec, cached, total;
    size_t nodes;
} sample_t;

static int measure(const node_registry_t *reg, const node_env_t *env, const json_t *prompt,
                   sample_t *s)
{
    char err[256];
    graph_t *g = NULL;
    graph_validation_t v;
    memset(&v, 0, sizeof v);
    eng_t *e = NULL;
    eng_config_t cfg = {.reg = reg, .env = env};
    if (eng_new(&cfg, &e))
        return -1;

    double t0 = now_ms();
    int rc = graph_parse(prompt, &g, err, sizeof err);
    double t1 = now_ms();
    if (!rc)
        rc = graph_validate(g, reg, env, NULL, &v);
    double t2 = now_ms();
    eng_result_t r;
    memset(&r, 0, sizeof r);
    if (!rc) {
        eng_job_t job = {.prompt_id = "bench", .graph = g, .prompt = v.prompt,
                         .outputs = v.outputs, .n_outputs = v.n_outputs, .on_event = on_event};
        rc = eng_execute(e, &job, &r);
        double t3 = now_ms();
        s->parse = t1 - t0;
        s->validate = t2 - t1;
        s->exec = t3 - t2;
        s->total = t3 - t0;
        s->nodes = g->n;
        if (!rc) {
            eng_result_free(&r);
            double t4 = now_ms();
            rc = eng_execute(e, &job, &r);
            s->cached = now_ms() - t4;
            if (!rc && r.n_executed != 0)
                rc = -1;
        }
        if (rc)
            fprintf(stderr, "execute failed: %s\n", r.error_message ? r.error_message : "?");
        eng_result_free(&r);
    } else {
        fprintf(stderr, "parse/validate failed: %s\n", err);
    }
    graph_validation_free(&v);
    graph_free(g);
    eng_free(e);
    return rc;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    if (reps < 1)
        reps = 1;
    node_registry_t *reg = NULL;
    if (node_registry_new(&reg) || node_registry_add(reg, &BenchConst) ||
        node_registry_add(reg, &BenchAdd) || node_registry_add(reg, &BenchSink)) {
        fprintf(stderr, "cannot build the registry\n");
        return 1;
    }
    node_env_t env = {"/nonexistent", "/nonexistent/input", "/nonexistent/output",
                      "/nonexistent/temp", "/nonexistent/models"};
    static const size_t sizes[] = {1000, 10000, 100000};
    static const char *const shapes[] = {"chain", "fan"};
    double best_total[2][3] = {{0}};
    int failed = 0;

    printf("%-6s %7s %10s %11s %9s %11s %11s %10s\n", "shape", "nodes", "total_ms",
           "us_per_node", "parse_ms", "validate_ms", "execute_ms", "cached_ms");
    for (int sh = 0; sh < 2; sh++) {
        for (int si = 0; si < 3; si++) {
            json_t *prompt = sh == 0 ? make_chain(sizes[si]) : make_fan(sizes[si]);
            sample_t best = {0};
            for (int rep = 0; rep < reps; rep++) {
                sample_t s = {0};
                if (measure(reg, &env, prompt, &s)) {
                    failed = 1;
                    break;
                }
                if (rep == 0 || s.total < best.total)
                    best = s;
            }
            json_free(prompt);
            if (failed)
                break;
            best_total[sh][si] = best.total;
            printf("%-6s %7zu %10.2f %11.3f %9.2f %11.2f %11.2f %10.2f\n", shapes[sh],
                   best.nodes, best.total, best.total * 1e3 / (double)best.nodes, best.parse,
                   best.validate, best.exec, best.cached);
        }
    }
    if (!failed) {
        for (int sh = 0; sh < 2; sh++)
            printf("%s: 100k/10k total ratio %.2f (linear = 10, limit 12)\n", shapes[sh],
                   best_total[sh][2] / best_total[sh][1]);
    }
    printf("(best of %d; %zu events delivered; sink checksum %lld)\n", reps, n_events,
           (long long)sink_total);
    node_registry_free(reg);
    return failed;
}
