/* Lanes benchmark (run by hand; figures go in the README, "Lanes").
 *
 *   lanes_bench [--reps 3] [--size 256] [--steps 8] [--lanes 2]
 *
 * Wall time, best of reps, of
 *   A. one prompt with two independent txt2img branches (one checkpoint loader, two
 *      text-encode/sample/decode branches), and
 *   B. two users' prompts (one txt2img branch each) submitted at once,
 * on 1 lane (everything on one thread, ATen using every core) and on N lanes (independent
 * work on N threads; the cores divided between busy lanes, or one thread per lane). The tiny
 * random demo checkpoint is written to a temp folder (the CLIP tokenizer is weft's built-in
 * one); the model is loaded once before timing, and every timed run starts from an empty
 * output cache.
 * Release build: build-rel/lanes_bench. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "sd/sd.h"

static node_registry_t *g_reg;
static node_env_t g_env;
static int g_size = 256, g_steps = 8;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int setup(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/weft-lanes-bench-%d", (int)getpid());
    char p[1024];
    if (mkdir(dir, 0755))
        return -1;
    snprintf(p, sizeof p, "%s/checkpoints", dir);
    if (mkdir(p, 0755))
        return -1;
    char err[512] = "";
    snprintf(p, sizeof p, "%s/checkpoints/tiny.safetensors", dir);
    if (sd_demo_write(p, SD_DEMO_TINY, ST_F32, 1, err, sizeof err)) {
        fprintf(stderr, "demo checkpoint: %s\n", err);
        return -1;
    }
    static char base[1024];
    snprintf(base, sizeof base, "%s", dir);
    g_env = (node_env_t){base, base, base, base, base};
    return 0;
}

/* One txt2img branch with node ids prefixed by p; it uses loader "4". */
static void branch(base_buf_t *b, const char *p, int seed, const char *text)
{
    base_buf_printf(b,
                    "\"%s6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"%s\", \"clip\": [\"4\", 1]}},"
                    "\"%s7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"blurry %s\", \"clip\": [\"4\", 1]}},"
                    "\"%s5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": %d, \"height\": %d, \"batch_size\": 1}},"
                    "\"%s3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": %d, \"steps\": %d, \"cfg\": 7.5,"
                    " \"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"4\", 0],"
                    " \"positive\": [\"%s6\", 0], \"negative\": [\"%s7\", 0], \"latent_image\": [\"%s5\", 0]}},"
                    "\"%s8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"%s3\", 0], \"vae\": [\"4\", 2]}},"
                    "\"%s9\": {\"class_type\": \"PreviewImage\", \"inputs\": {\"images\": [\"%s8\", 0]}}",
                    p, text, p, p, p, g_size, g_size, p, seed, g_steps, p, p, p, p, p, p, p);
}

typedef struct {
    graph_t *g;
    graph_validation_t v;
} prompt_t;

static int make_prompt(prompt_t *pr, int n_branches, int seed)
{
    base_buf_t b = BASE_BUF_INIT;
    base_buf_puts(&b, "{\"4\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": \"tiny.safetensors\"}}");
    const char *texts[] = {"a red fox in the snow", "a lighthouse at dusk"};
    for (int i = 0; i < n_branches; i++) {
        char p[8];
        snprintf(p, sizeof p, "%c", 'a' + i);
        base_buf_puts(&b, ",");
        branch(&b, p, seed + i, texts[i % 2]);
    }
    base_buf_puts(&b, "}");
    json_t *j = NULL;
    char err[256];
    memset(pr, 0, sizeof *pr);
    int rc = json_parse(b.data, b.len, &j, err, sizeof err) || graph_parse(j, &pr->g, err, sizeof err) ||
             graph_validate(pr->g, g_reg, &g_env, NULL, &pr->v);
    json_free(j);
    base_buf_free(&b);
    return rc;
}

static void free_prompt(prompt_t *pr)
{
    graph_validation_free(&pr->v);
    graph_free(pr->g);
}

static int run_prompt(eng_t *e, prompt_t *pr, const char *id)
{
    eng_job_t job = {.prompt_id = id, .graph = pr->g, .prompt = pr->v.prompt, .outputs = pr->v.outputs,
                     .n_outputs = pr->v.n_outputs};
    eng_result_t r;
    int rc = eng_execute(e, &job, &r);
    if (rc)
        fprintf(stderr, "%s: %s %s\n", id, r.error_node ? r.error_node : "-", r.error_message);
    eng_result_free(&r);
    return rc;
}

typedef struct {
    eng_t *e;
    prompt_t *pr;
    const char *id;
    int rc;
} user_t;

static void *user_main(void *arg)
{
    user_t *u = arg;
    u->rc = run_prompt(u->e, u->pr, u->id);
    return NULL;
}

/* Best wall time of reps runs of a scenario on an engine with `lanes` lanes. */
static double measure(int scenario, unsigned lanes, unsigned lane_threads, int calling_threads, int reps)
{
    eng_config_t cfg = {.reg = g_reg, .env = &g_env, .lanes = lanes > 1 ? lanes : 0,
                        .max_prompts = lanes > 1 ? lanes : 1, .lane_threads = lane_threads};
    eng_t *e = NULL;
    if (eng_new(&cfg, &e))
        return -1;
    ts_set_thread_budget(calling_threads);
    prompt_t two, u1, u2;
    if (make_prompt(&two, 2, 42) || make_prompt(&u1, 1, 42) || make_prompt(&u2, 1, 7)) {
        fprintf(stderr, "prompts do not validate\n");
        exit(1);
    }
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        eng_cache_clear(e);
        double t0 = now();
        int rc = 0;
        if (scenario == 0) {
            rc = run_prompt(e, &two, "two");
        } else if (lanes <= 1) {
            rc = run_prompt(e, &u1, "u1") || run_prompt(e, &u2, "u2");
        } else {
            user_t a = {e, &u1, "u1", 0}, b = {e, &u2, "u2", 0};
            pthread_t ta, tb;
            pthread_create(&ta, NULL, user_main, &a);
            pthread_create(&tb, NULL, user_main, &b);
            pthread_join(ta, NULL);
            pthread_join(tb, NULL);
            rc = a.rc || b.rc;
        }
        double t = now() - t0;
        if (rc)
            exit(1);
        if (t < best)
            best = t;
    }
    free_prompt(&two);
    free_prompt(&u1);
    free_prompt(&u2);
    eng_free(e);
    return best;
}

int main(int argc, char **argv)
{
    int reps = 3;
    unsigned lanes = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size"))
            g_size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps"))
            g_steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--lanes"))
            lanes = (unsigned)atoi(argv[i + 1]);
    }
    char dir[256];
    if (ts_init(0) || setup(dir, sizeof dir) || node_registry_new(&g_reg) || node_registry_add_builtins(g_reg)) {
        fprintf(stderr, "setup failed: %s\n", ts_last_error());
        return 1;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("lanes_bench: %dx%d, %d euler steps, tiny demo model, %ld cores, best of %d\n", g_size, g_size, g_steps,
           cores, reps);
    /* Warm up: load the model, page in libtorch. */
    measure(0, 1, 0, (int)cores, 1);
    const char *names[] = {"A. one prompt, two txt2img branches", "B. two users' prompts at once"};
    for (int s = 0; s < 2; s++) {
        /* The configurations take turns, rep by rep, so a busy moment of a shared machine
         * does not land on one of them only. */
        double one = 1e30, one1 = 1e30, par = 1e30, par1 = 1e30;
        for (int r = 0; r < reps; r++) {
            one = fmin(one, measure(s, 1, 0, (int)cores, 1));
            one1 = fmin(one1, measure(s, 1, 0, 1, 1));
            par = fmin(par, measure(s, lanes, 0, (int)cores, 1));
            par1 = fmin(par1, measure(s, lanes, 1, (int)cores, 1));
        }
        double best1 = fmin(one, one1);
        printf("%s\n", names[s]);
        printf("  1 lane, %ld intra-op threads      %7.2f s\n", cores, one);
        printf("  1 lane, 1 intra-op thread        %7.2f s\n", one1);
        printf("  %u lanes, cores divided           %7.2f s   %.2fx (%.2fx vs the faster 1-lane)\n", lanes, par,
               one / par, best1 / par);
        printf("  %u lanes, 1 thread each           %7.2f s   %.2fx (%.2fx vs the faster 1-lane)\n", lanes, par1,
               one / par1, best1 / par1);
    }
    node_registry_free(g_reg);
    node_models_release();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return 0;
}
