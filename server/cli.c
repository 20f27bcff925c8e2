/* weft run / validate / nodes. Exit codes: 0 success, 1 the workflow failed (invalid, a node
 * failed), 2 usage or unreadable input, 130 interrupted. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srv.h"
#include "srv_uuid.h"

typedef struct {
    const char *base_dir;
    const char *file;
    bool json, quiet;
} cli_opts_t;

static int parse_opts(int argc, char **argv, bool want_file, cli_opts_t *o)
{
    *o = (cli_opts_t){.base_dir = "weft-data"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--base-dir") && i + 1 < argc)
            o->base_dir = argv[++i];
        else if (!strncmp(a, "--base-dir=", 11))
            o->base_dir = a + 11;
        else if (!strcmp(a, "--json"))
            o->json = true;
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q"))
            o->quiet = true;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "weft %s: unknown option '%s'\n", argv[0], a);
            return 2;
        } else if (want_file && !o->file)
            o->file = a;
        else {
            fprintf(stderr, "weft %s: unexpected argument '%s'\n", argv[0], a);
            return 2;
        }
    }
    if (want_file && !o->file) {
        fprintf(stderr, "usage: weft %s [--base-dir DIR] WORKFLOW\n", argv[0]);
        return 2;
    }
    return 0;
}

typedef struct {
    srv_env_t env;
    node_registry_t *reg;
} cli_ctx_t;

static int setup(cli_ctx_t *c, const cli_opts_t *o)
{
    memset(c, 0, sizeof *c);
    int rc = node_registry_new(&c->reg);
    if (!rc)
        rc = node_registry_add_builtins(c->reg);
    if (!rc)
        rc = srv_env_open(&c->env, o->base_dir);
    if (rc)
        fprintf(stderr, "weft: start-up failed: %s\n", base_strerror(rc));
    return rc;
}

static void teardown(cli_ctx_t *c)
{
    node_registry_free(c->reg);
    srv_env_close(&c->env);
}

static void print_json(FILE *f, const json_t *j)
{
    char *s = json_dump(j, JSON_PRETTY);
    if (s)
        fprintf(f, "%s\n", s);
    free(s);
}

/* ComfyUI's /prompt answer for a validation: error (null when valid), node_errors and, when
 * valid, the outputs that will run. */
static json_t *validation_body(const graph_validation_t *v, bool valid)
{
    json_t *body = json_new_object();
    if (!body)
        return NULL;
    json_object_set(body, "error", v->error ? json_clone(v->error) : json_new_null());
    json_object_set(body, "node_errors", v->node_errors ? json_clone(v->node_errors) : json_new_object());
    if (valid) {
        json_t *outs = json_new_array();
        for (size_t i = 0; outs && i < v->n_outputs; i++)
            json_array_push(outs, json_new_string(v->outputs[i]));
        json_object_set(body, "outputs", outs);
    }
    return body;
}

/* Loads and validates; prints the validation body to `report` when invalid, when some
 * outputs were dropped, or always when `always` is set. */
static int load_valid(cli_ctx_t *c, const cli_opts_t *o, srv_workflow_t *wf, graph_t **g,
                      graph_validation_t *v, FILE *report, bool always)
{
    char err[1024] = "";
    int rc = srv_workflow_load(o->file, c->reg, &c->env.env, wf, err, sizeof err);
    if (rc) {
        fprintf(stderr, "weft: %s\n", err);
        return 2;
    }
    rc = graph_parse(wf->prompt, g, err, sizeof err);
    if (rc) {
        fprintf(stderr, "weft: %s: %s\n", o->file, err);
        return 2;
    }
    rc = graph_validate(*g, c->reg, &c->env.env, NULL, v);
    if (always || rc || json_len(v->node_errors)) {
        json_t *body = validation_body(v, rc == 0);
        if (body)
            print_json(report, body);
        json_free(body);
    }
    return rc ? 1 : 0;
}

int srv_cmd_validate(int argc, char **argv)
{
    cli_opts_t o;
    int rc = parse_opts(argc, argv, true, &o);
    if (rc)
        return rc;
    cli_ctx_t c;
    if (setup(&c, &o))
        return 2;
    srv_workflow_t wf;
    graph_t *g = NULL;
    graph_validation_t v = {0};
    rc = load_valid(&c, &o, &wf, &g, &v, stdout, true);
    graph_validation_free(&v);
    graph_free(g);
    srv_workflow_free(&wf);
    teardown(&c);
    return rc;
}

int srv_cmd_nodes(int argc, char **argv)
{
    cli_opts_t o;
    int rc = parse_opts(argc, argv, false, &o);
    if (rc)
        return rc;
    cli_ctx_t c;
    if (setup(&c, &o))
        return 2;
    if (o.json) {
        json_t *info = node_registry_object_info(c.reg, &c.env.env);
        char *s = info ? json_dump(info, JSON_COMPACT) : NULL;
        if (s)
            printf("%s\n", s);
        free(s);
        json_free(info);
    } else {
        for (size_t i = 0; i < node_registry_count(c.reg); i++) {
            const node_def_t *d = node_registry_at(c.reg, i);
            printf("%-24s %-24s %s\n", d->name, d->display_name ? d->display_name : d->name,
                   d->category ? d->category : "sd");
        }
    }
    teardown(&c);
    return 0;
}

/* SIGINT/SIGTERM become an engine interrupt: a dedicated thread waits for them because
 * eng_interrupt takes a lock, which a signal handler must not. */
typedef struct {
    eng_t *eng;
    sigset_t set;
} sigwatch_t;

static void *sigwatch_main(void *arg)
{
    sigwatch_t *w = arg;
    int sig = 0;
    while (sigwait(&w->set, &sig) == 0) {
        if (sig == SIGUSR2) /* our own wake-up at exit */
            break;
        eng_interrupt(w->eng, NULL);
    }
    return NULL;
}

static void print_outputs(const json_t *outputs, const srv_env_t *env)
{
    for (size_t i = 0; i < json_len(outputs); i++) {
        const json_t *images = json_object_get(json_at(outputs, i), "images");
        for (size_t k = 0; k < json_len(images); k++) {
            const json_t *im = json_at(images, k);
            const char *type = json_str(json_object_get(im, "type"));
            const char *sub = json_str(json_object_get(im, "subfolder"));
            const char *dir = type && !strcmp(type, "temp") ? env->temp_dir : env->output_dir;
            printf("%s%s%s/%s\n", dir, sub && *sub ? "/" : "", sub ? sub : "",
                   json_str(json_object_get(im, "filename")));
        }
    }
}

int srv_cmd_run(int argc, char **argv)
{
    cli_opts_t o;
    int rc = parse_opts(argc, argv, true, &o);
    if (rc)
        return rc;
    /* Block the signals before any thread exists (ATen's pool inherits the mask), so only
     * the watcher thread below receives them. */
    sigwatch_t w = {0};
    sigemptyset(&w.set);
    sigaddset(&w.set, SIGINT);
    sigaddset(&w.set, SIGTERM);
    sigaddset(&w.set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &w.set, NULL);
    cli_ctx_t c;
    if (setup(&c, &o))
        return 2;
    if ((rc = ts_init(0)))
        fprintf(stderr, "weft: tensor backend: %s\n", ts_last_error());
    srv_workflow_t wf;
    graph_t *g = NULL;
    graph_validation_t v = {0};
    eng_t *eng = NULL;
    eng_result_t res = {0};
    rc = load_valid(&c, &o, &wf, &g, &v, stderr, false);
    if (rc)
        goto out;
    eng_config_t cfg = {.reg = c.reg, .env = &c.env.env};
    if (eng_new(&cfg, &eng)) {
        rc = 2;
        goto out;
    }
    size_t *order = NULL, n_order = 0;
    if (graph_prune(g, v.outputs, v.n_outputs, &order, &n_order) == 0)
        free(order);
    srv_progress_t prog = {.graph = g, .total = n_order, .tty = isatty(2), .quiet = o.quiet};
    char prompt_id[37];
    srv_uuid4(prompt_id);
    eng_job_t job = {.prompt_id = prompt_id, .graph = g, .prompt = v.prompt,
                     .extra_pnginfo = wf.extra_pnginfo, .outputs = v.outputs,
                     .n_outputs = v.n_outputs, .on_event = srv_progress_event, .ud = &prog};

    w.eng = eng;
    pthread_t th;
    bool watching = pthread_create(&th, NULL, sigwatch_main, &w) == 0;

    int st = eng_execute(eng, &job, &res);

    if (watching) {
        pthread_kill(th, SIGUSR2);
        pthread_join(th, NULL);
    }
    if (st == 0) {
        if (!o.quiet)
            fprintf(stderr, "done in %.1f ms: %zu executed, %zu cached\n", res.total_ms, res.n_executed,
                    res.n_cached);
        if (o.json)
            print_json(stdout, res.outputs);
        else
            print_outputs(res.outputs, &c.env);
        rc = 0;
    } else if (st == BASE_E_INTERRUPTED) {
        rc = 130;
    } else {
        fprintf(stderr, "weft: prompt failed at node #%s: %s\n", res.error_node ? res.error_node : "?",
                res.error_message ? res.error_message : base_strerror(st));
        rc = 1;
    }
out:
    eng_result_free(&res);
    eng_free(eng);
    graph_validation_free(&v);
    graph_free(g);
    srv_workflow_free(&wf);
    teardown(&c);
    return rc;
}
