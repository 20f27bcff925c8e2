/* Lanes: the executor threads that run independent ready nodes at once, shared by every
 * prompt the engine is running.
 *
 * One lock guards the scheduling state of every running prompt (ready FIFOs, dependency
 * counts, in-flight counts); it is never held while a node runs or an event is sent, so a
 * node's callbacks may call eng_interrupt. A lane that finishes a node releases its
 * consumers and picks its next node without sleeping; other lanes are woken only for the
 * extra work. Prompts take turns (the run a lane served goes to the back of the list), so a
 * big prompt does not hold every lane while another waits.
 *
 * Heavy nodes (NODE_HEAVY: samplers, VAE, model loads) count against a limit: one always
 * may run; another only while the model memory sampled after the last heavy node leaves
 * half of the budget free (or up to heavy_lanes when that is set). A lane that cannot take
 * the heavy node at the head of a FIFO takes the first light one behind it.
 *
 * Intra-op threads: a lane starting a node gets the cores divided by the busy lanes (or the
 * fixed lane_threads), applied through ts_set_thread_budget once libtorch is loaded (never
 * loading it), so busy lanes share the cores instead of each asking for all of them. On CUDA
 * each lane also makes its own stream current; outputs carry an event of that stream, which
 * a consumer on another lane waits for (executor.c). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine-internal.h"

/* How far past the head of a FIFO a lane looks for a light node when heavy ones wait. */
#define LOOKAHEAD 256

struct eng_pool_s {
    pthread_mutex_t mu;
    pthread_cond_t work; /* lanes wait here for ready nodes */
    pthread_cond_t done; /* callers of eng__pool_run wait here for their run */
    eng_run_t *runs;     /* running prompts, next to serve first */
    unsigned n_lanes, busy, heavy_busy;
    unsigned heavy_max;  /* 0 = decided by the memory sample */
    unsigned threads;    /* fixed budget per lane; 0 = divide cores */
    unsigned cores;
    bool mem_ok;         /* the last sample left room for a second heavy node */
    bool quit;
    void (*mem)(size_t *used, size_t *budget);
    eng_lane_t *lanes;
    pthread_t *tids;
    unsigned n_started;
};

static bool sample_mem(eng_pool_t *P)
{
    size_t used = 0, budget = 0;
    P->mem(&used, &budget);
    return budget == 0 || used <= budget / 2;
}

static bool heavy_allowed(const eng_pool_t *P)
{
    if (P->heavy_busy == 0)
        return true;
    if (P->heavy_max)
        return P->heavy_busy < P->heavy_max;
    return P->mem_ok;
}

/* Takes the next node a lane may run, serving runs in turn. Under P->mu. */
static bool pick(eng_pool_t *P, eng_run_t **out_run, size_t *out_node, bool *out_heavy)
{
    eng_run_t **link = &P->runs;
    for (eng_run_t *R = P->runs; R; link = &R->pool_next, R = R->pool_next) {
        if (R->stopping || R->ready_head == R->ready_tail)
            continue;
        size_t end = R->ready_tail - R->ready_head > LOOKAHEAD ? R->ready_head + LOOKAHEAD : R->ready_tail;
        for (size_t k = R->ready_head; k < end; k++) {
            size_t j = R->ready[k];
            bool heavy = eng__heavy(R, j);
            if (heavy && !heavy_allowed(P))
                continue;
            /* Out of the FIFO, keeping the others in order. */
            memmove(&R->ready[R->ready_head + 1], &R->ready[R->ready_head],
                    (k - R->ready_head) * sizeof *R->ready);
            R->ready_head++;
            /* This run goes to the back: the next pick serves another prompt first. */
            if (R->pool_next) {
                *link = R->pool_next;
                eng_run_t *t = *link;
                while (t->pool_next)
                    t = t->pool_next;
                t->pool_next = R;
                R->pool_next = NULL;
            }
            *out_run = R;
            *out_node = j;
            *out_heavy = heavy;
            return true;
        }
    }
    return false;
}

/* A lane's thread: its stream on CUDA, its share of the cores. Outside the lock. */
static void prepare_lane(eng_lane_t *L)
{
    if (!ts_loaded())
        return; /* nothing tensor-shaped ran yet: do not load libtorch for it */
    if (!L->stream_tried) {
        L->stream_tried = true;
        ts_device_t cuda = {TS_CUDA, 0};
        if (ts_cuda_available() && ts_stream_new(&L->stream, cuda) == 0 &&
            ts_stream_set_current(L->stream) != 0) {
            ts_stream_free(L->stream);
            L->stream = NULL;
        }
    }
    if (L->want_threads != L->threads && ts_set_thread_budget(L->want_threads) == 0)
        L->threads = L->want_threads;
}

/* Under P->mu: node j of R is done (rc 0) or stopped R. */
static void complete(eng_pool_t *P, eng_run_t *R, size_t j, int rc, bool heavy)
{
    R->in_flight--;
    P->busy--;
    if (heavy)
        P->heavy_busy--;
    if (rc) {
        R->stopping = true;
    } else {
        R->n_done++;
        const eng_nstate_t *s = &R->st[j];
        for (size_t c = s->cons_off; c < s->cons_off + s->n_cons; c++) {
            if (--R->st[R->cons[c]].indeg == 0)
                R->ready[R->ready_tail++] = R->cons[c];
        }
    }
    if (R->in_flight == 0 && (R->stopping || R->ready_head == R->ready_tail)) {
        R->finished = true;
        pthread_cond_broadcast(&P->done);
    }
}

/* Under P->mu: whether a sleeping lane could find something (heavy limits aside). */
static bool work_left(const eng_pool_t *P)
{
    for (const eng_run_t *R = P->runs; R; R = R->pool_next)
        if (!R->stopping && R->ready_head < R->ready_tail)
            return true;
    return false;
}

static void *lane_main(void *arg)
{
    eng_lane_t *L = arg;
    eng_pool_t *P = L->pool;
    pthread_mutex_lock(&P->mu);
    for (;;) {
        eng_run_t *R = NULL;
        size_t j = 0;
        bool heavy = false;
        while (!P->quit && !pick(P, &R, &j, &heavy))
            pthread_cond_wait(&P->work, &P->mu);
        if (P->quit)
            break;
        R->in_flight++;
        P->busy++;
        if (heavy)
            P->heavy_busy++;
        /* Wake one more lane while work is left: each woken lane does the same, so idle
         * lanes join one by one and a lane that finishes a node keeps going without a
         * wake-up. */
        if (P->busy < P->n_lanes && work_left(P))
            pthread_cond_signal(&P->work);
        unsigned share = P->cores / P->busy;
        L->want_threads = (int)(P->threads ? P->threads : share ? share : 1);
        pthread_mutex_unlock(&P->mu);

        prepare_lane(L);
        int rc = eng__process(R, j, L);
        /* Sampled here, outside the lock: the model cache holds its own lock during loads. */
        bool ok = heavy && !P->heavy_max ? sample_mem(P) : true;

        pthread_mutex_lock(&P->mu);
        if (heavy && !P->heavy_max)
            P->mem_ok = ok;
        complete(P, R, j, rc, heavy);
    }
    pthread_mutex_unlock(&P->mu);
    if (L->stream) {
        ts_stream_set_current(NULL);
        ts_stream_free(L->stream);
    }
    eng__lane_release(L);
    return NULL;
}

void eng__pool_run(eng_pool_t *P, eng_run_t *R)
{
    bool ok = P->heavy_max ? true : sample_mem(P);
    pthread_mutex_lock(&P->mu);
    if (!P->heavy_max && P->heavy_busy == 0)
        P->mem_ok = ok;
    if (R->ready_head == R->ready_tail) {
        pthread_mutex_unlock(&P->mu);
        return;
    }
    R->finished = false;
    R->pool_next = NULL;
    eng_run_t **tail = &P->runs;
    while (*tail)
        tail = &(*tail)->pool_next;
    *tail = R;
    pthread_cond_signal(&P->work);
    while (!R->finished)
        pthread_cond_wait(&P->done, &P->mu);
    for (eng_run_t **p = &P->runs; *p; p = &(*p)->pool_next) {
        if (*p == R) {
            *p = R->pool_next;
            break;
        }
    }
    pthread_mutex_unlock(&P->mu);
}

int eng__pool_new(const eng_pool_config_t *cfg, eng_pool_t **out)
{
    *out = NULL;
    eng_pool_t *P = calloc(1, sizeof *P);
    if (!P)
        return BASE_E_NOMEM;
    P->n_lanes = cfg->lanes;
    P->heavy_max = cfg->heavy;
    P->threads = cfg->threads;
    P->mem = cfg->mem;
    P->mem_ok = true;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    P->cores = cores > 0 ? (unsigned)cores : 1;
    P->lanes = calloc(P->n_lanes, sizeof *P->lanes);
    P->tids = calloc(P->n_lanes, sizeof *P->tids);
    if (!P->lanes || !P->tids || pthread_mutex_init(&P->mu, NULL)) {
        free(P->lanes);
        free(P->tids);
        free(P);
        return BASE_E_NOMEM;
    }
    if (pthread_cond_init(&P->work, NULL)) {
        pthread_mutex_destroy(&P->mu);
        free(P->lanes);
        free(P->tids);
        free(P);
        return BASE_E_NOMEM;
    }
    if (pthread_cond_init(&P->done, NULL)) {
        pthread_cond_destroy(&P->work);
        pthread_mutex_destroy(&P->mu);
        free(P->lanes);
        free(P->tids);
        free(P);
        return BASE_E_NOMEM;
    }
    for (unsigned i = 0; i < P->n_lanes; i++) {
        P->lanes[i].index = (int)i;
        P->lanes[i].pool = P;
        if (pthread_create(&P->tids[i], NULL, lane_main, &P->lanes[i])) {
            eng__pool_free(P);
            return BASE_E_NOMEM;
        }
        P->n_started++;
    }
    *out = P;
    return 0;
}

void eng__pool_free(eng_pool_t *P)
{
    if (!P)
        return;
    pthread_mutex_lock(&P->mu);
    P->quit = true;
    pthread_cond_broadcast(&P->work);
    pthread_mutex_unlock(&P->mu);
    for (unsigned i = 0; i < P->n_started; i++)
        pthread_join(P->tids[i], NULL);
    pthread_cond_destroy(&P->done);
    pthread_cond_destroy(&P->work);
    pthread_mutex_destroy(&P->mu);
    free(P->lanes);
    free(P->tids);
    free(P);
}
