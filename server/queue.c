/* The in-memory mirror of the pending queue, ordered by (number, seq) like ComfyUI's heap
 * (whose ties compare prompt ids; insertion order is the fairer tie-break). Any thread:
 * every access holds q->mu. */
#include <stdlib.h>
#include <string.h>

#include "app_internal.h"

void srv_item_free(srv_item_t *it)
{
    if (!it)
        return;
    free(it->prompt_id);
    json_free(it->prompt);
    json_free(it->extra_data);
    for (size_t i = 0; i < it->n_outputs; i++)
        free(it->outputs[i]);
    free(it->outputs);
    free(it->client_id);
    graph_free(it->graph);
    free(it);
}

int srv_queue_init(srv_queue_t *q)
{
    memset(q, 0, sizeof *q);
    if (pthread_mutex_init(&q->mu, NULL))
        return BASE_E_NOMEM;
    if (pthread_cond_init(&q->cv, NULL)) {
        pthread_mutex_destroy(&q->mu);
        return BASE_E_NOMEM;
    }
    return 0;
}

void srv_queue_destroy(srv_queue_t *q)
{
    for (size_t i = 0; i < q->n; i++)
        srv_item_free(q->items[i]);
    free(q->items);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    memset(q, 0, sizeof *q);
}

static bool before(const srv_item_t *a, const srv_item_t *b)
{
    return a->number < b->number || (a->number == b->number && a->seq < b->seq);
}

int srv_queue_push(srv_queue_t *q, srv_item_t *it)
{
    pthread_mutex_lock(&q->mu);
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        srv_item_t **items = realloc(q->items, cap * sizeof *items);
        if (!items) {
            pthread_mutex_unlock(&q->mu);
            srv_item_free(it);
            return BASE_E_NOMEM;
        }
        q->items = items;
        q->cap = cap;
    }
    /* First position whose item sorts after it (binary search keeps equal keys FIFO). */
    size_t lo = 0, hi = q->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (before(it, q->items[mid]))
            hi = mid;
        else
            lo = mid + 1;
    }
    memmove(q->items + lo + 1, q->items + lo, (q->n - lo) * sizeof *q->items);
    q->items[lo] = it;
    q->n++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static bool listed(const char *id, const char *const *ids, size_t n_ids)
{
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] && !strcmp(ids[i], id))
            return true;
    return false;
}

size_t srv__queue_take(srv_queue_t *q, const char *const *ids, size_t n_ids, srv_item_t ***out)
{
    *out = NULL;
    pthread_mutex_lock(&q->mu);
    size_t taken = 0;
    for (size_t i = 0; i < q->n; i++)
        if (!ids || listed(q->items[i]->prompt_id, ids, n_ids))
            taken++;
    srv_item_t **got = taken ? malloc(taken * sizeof *got) : NULL;
    if (!got) {
        pthread_mutex_unlock(&q->mu);
        return 0;
    }
    size_t k = 0, w = 0;
    for (size_t i = 0; i < q->n; i++) {
        srv_item_t *it = q->items[i];
        if (!ids || listed(it->prompt_id, ids, n_ids))
            got[k++] = it;
        else
            q->items[w++] = it;
    }
    q->n = w;
    pthread_mutex_unlock(&q->mu);
    *out = got;
    return taken;
}

size_t srv_queue_remove(srv_queue_t *q, const char *const *ids, size_t n_ids)
{
    srv_item_t **got;
    size_t n = srv__queue_take(q, ids, n_ids, &got);
    for (size_t i = 0; i < n; i++)
        srv_item_free(got[i]);
    free(got);
    return n;
}

srv_item_t *srv_queue_pop(srv_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    while (!q->n && !q->stopping)
        pthread_cond_wait(&q->cv, &q->mu);
    srv_item_t *it = NULL;
    if (!q->stopping) {
        it = q->items[0];
        memmove(q->items, q->items + 1, (q->n - 1) * sizeof *q->items);
        q->n--;
        q->running = it;
    }
    pthread_mutex_unlock(&q->mu);
    return it;
}

void srv_queue_done(srv_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    q->running = NULL;
    pthread_mutex_unlock(&q->mu);
}

bool srv__queue_finished(srv_queue_t *q, const srv_item_t *it)
{
    pthread_mutex_lock(&q->mu);
    bool was = q->running == it;
    if (was)
        q->running = NULL;
    pthread_mutex_unlock(&q->mu);
    return was;
}

size_t srv_queue_remaining(srv_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->n + (q->running ? 1 : 0);
    pthread_mutex_unlock(&q->mu);
    return n;
}

void srv_queue_stop(srv_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    q->stopping = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void srv_queue_each(srv_queue_t *q, void (*fn)(void *ud, const srv_item_t *it, bool running), void *ud)
{
    pthread_mutex_lock(&q->mu);
    if (q->running)
        fn(ud, q->running, true);
    for (size_t i = 0; i < q->n; i++)
        fn(ud, q->items[i], false);
    pthread_mutex_unlock(&q->mu);
}
