/* The in-memory mirror of the pending queue and the fair order prompts start in. Any thread:
 * every access holds q->mu.
 *
 * Pending items are kept ordered by (number, seq) like ComfyUI's heap (whose ties compare
 * prompt ids; insertion order is the fairer tie-break). Across users the order is
 * round-robin: the next prompt to start is the head of the user whose prompt started least
 * recently (a user never served first), so one user's batch of 50 does not starve another's
 * single prompt; `front` and explicit numbers order a user's own prompts. A user may have at
 * most their role's cap of prompts executing at once (srv_role_run_cap); the others wait
 * while other users' prompts go ahead. With one owner this is exactly (number, seq). */
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

unsigned srv_role_run_cap(auth_role_t role)
{
    switch (role) {
    case AUTH_ROLE_ADMIN:
        return 0;
    case AUTH_ROLE_EDITOR:
        return 2;
    default:
        return 1;
    }
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
    free(q->runs);
    free(q->turns);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    memset(q, 0, sizeof *q);
}

static bool before(const srv_item_t *a, const srv_item_t *b)
{
    return a->number < b->number || (a->number == b->number && a->seq < b->seq);
}

/* Grows *arr (elements of size sz) to hold more than n. 0 or BASE_E_NOMEM. */
static int grow(void **arr, size_t *cap, size_t n, size_t sz)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c <= n)
        c *= 2;
    void *p = realloc(*arr, c * sz);
    if (!p)
        return BASE_E_NOMEM;
    *arr = p;
    *cap = c;
    return 0;
}

/* The user's turn record, added when first seen (NULL only on out of memory). */
static srv_turn_t *turn_of(srv_queue_t *q, const char *owner)
{
    for (size_t i = 0; i < q->n_turns; i++)
        if (!strcmp(q->turns[i].owner, owner))
            return &q->turns[i];
    if (grow((void **)&q->turns, &q->cap_turns, q->n_turns, sizeof *q->turns))
        return NULL;
    srv_turn_t *t = &q->turns[q->n_turns++];
    memset(t, 0, sizeof *t);
    snprintf(t->owner, sizeof t->owner, "%s", owner);
    return t;
}

int srv_queue_push(srv_queue_t *q, srv_item_t *it)
{
    pthread_mutex_lock(&q->mu);
    /* The turn record and room among the running now, so popping never needs memory. */
    if (grow((void **)&q->items, &q->cap, q->n, sizeof *q->items) ||
        grow((void **)&q->runs, &q->cap_runs, q->n + q->n_runs, sizeof *q->runs) || !turn_of(q, it->owner)) {
        pthread_mutex_unlock(&q->mu);
        srv_item_free(it);
        return BASE_E_NOMEM;
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
    pthread_cond_broadcast(&q->cv);
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

/* Prompts of owner still in eng_execute. */
static unsigned executing_of(const srv_queue_t *q, const char *owner)
{
    unsigned n = 0;
    for (size_t i = 0; i < q->n_runs; i++)
        if (q->runs[i]->executing && !strcmp(q->runs[i]->owner, owner))
            n++;
    return n;
}

/* Index in q->items of the prompt to start next, or SIZE_MAX when none may start. The first
 * item of each owner in (number, seq) order is its head; among the heads whose owner is
 * below its cap, the owner served least recently wins, and the earlier head on a tie. */
static size_t next_index(srv_queue_t *q)
{
    size_t best = SIZE_MAX;
    uint64_t best_served = 0;
    /* Owners already considered: their later items are not heads. Past 64 owners a later item
     * is considered again, which changes nothing: it has its head's turn and loses the tie. */
    const char *seen[64];
    size_t n_seen = 0;
    for (size_t i = 0; i < q->n; i++) {
        srv_item_t *it = q->items[i];
        bool dup = false;
        for (size_t k = 0; k < n_seen && !dup; k++)
            dup = !strcmp(seen[k], it->owner);
        if (dup)
            continue;
        if (n_seen < sizeof seen / sizeof seen[0])
            seen[n_seen++] = it->owner;
        if (it->run_cap && executing_of(q, it->owner) >= it->run_cap)
            continue;
        const srv_turn_t *t = turn_of(q, it->owner); /* exists since push */
        uint64_t served = t ? t->served : 0;
        if (best == SIZE_MAX || served < best_served) {
            best = i;
            best_served = served;
        }
    }
    return best;
}

static void runs_remove(srv_queue_t *q, size_t i)
{
    memmove(q->runs + i, q->runs + i + 1, (q->n_runs - i - 1) * sizeof *q->runs);
    q->n_runs--;
    q->running = q->n_runs ? q->runs[q->n_runs - 1] : NULL;
}

srv_item_t *srv_queue_pop(srv_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    srv_item_t *it = NULL;
    size_t i = SIZE_MAX;
    for (;;) {
        if (q->stopping)
            break;
        if (q->n && (i = next_index(q)) != SIZE_MAX)
            break;
        pthread_cond_wait(&q->cv, &q->mu);
    }
    if (!q->stopping) {
        it = q->items[i];
        memmove(q->items + i, q->items + i + 1, (q->n - i - 1) * sizeof *q->items);
        q->n--;
        srv_turn_t *t = turn_of(q, it->owner);
        if (t)
            t->served = ++q->tick;
        it->executing = true;
        q->runs[q->n_runs++] = it;
        q->running = it;
    }
    pthread_mutex_unlock(&q->mu);
    return it;
}

void srv_queue_executed(srv_queue_t *q, srv_item_t *it)
{
    pthread_mutex_lock(&q->mu);
    it->executing = false;
    pthread_cond_broadcast(&q->cv); /* its owner may start the next one */
    pthread_mutex_unlock(&q->mu);
}

void srv_queue_done(srv_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; q->running && i < q->n_runs; i++) {
        if (q->runs[i] == q->running) {
            runs_remove(q, i);
            break;
        }
    }
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

bool srv__queue_finished(srv_queue_t *q, const srv_item_t *it)
{
    pthread_mutex_lock(&q->mu);
    bool was = false;
    for (size_t i = 0; i < q->n_runs; i++) {
        if (q->runs[i] == it) {
            runs_remove(q, i);
            was = true;
            break;
        }
    }
    if (was)
        pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return was;
}

size_t srv_queue_remaining(srv_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->n + q->n_runs;
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

/* The pending items in the order they would start, ignoring caps (which depend on when
 * prompts finish): round-robin by each owner's last turn, as srv_queue_pop picks them. Fills
 * order[0..n) and returns true; false (out of memory) leaves the caller (number, seq). */
static bool fair_order(srv_queue_t *q, srv_item_t **order)
{
    typedef struct {
        const char *owner;
        uint64_t served;
        size_t next; /* index in q->items of its next item, or q->n when done */
    } cur_t;
    size_t n_cur = 0;
    cur_t *cur = q->n_turns ? malloc(q->n_turns * sizeof *cur) : NULL;
    if (!cur)
        return false;
    for (size_t i = 0; i < q->n; i++) {
        size_t k = 0;
        while (k < n_cur && strcmp(cur[k].owner, q->items[i]->owner))
            k++;
        if (k == n_cur && n_cur < q->n_turns) { /* its first item: the owner's head */
            const srv_turn_t *t = turn_of(q, q->items[i]->owner);
            cur[n_cur++] = (cur_t){q->items[i]->owner, t ? t->served : 0, i};
        }
    }
    uint64_t tick = q->tick;
    size_t out = 0;
    for (; out < q->n; out++) {
        size_t b = SIZE_MAX;
        for (size_t k = 0; k < n_cur; k++)
            if (cur[k].next < q->n &&
                (b == SIZE_MAX || cur[k].served < cur[b].served ||
                 (cur[k].served == cur[b].served && cur[k].next < cur[b].next)))
                b = k;
        if (b == SIZE_MAX) /* cannot happen: every pending owner has a turn since push */
            break;
        order[out] = q->items[cur[b].next];
        cur[b].served = ++tick;
        size_t i = cur[b].next + 1;
        while (i < q->n && strcmp(q->items[i]->owner, cur[b].owner))
            i++;
        cur[b].next = i;
    }
    free(cur);
    return out == q->n;
}

void srv_queue_each(srv_queue_t *q, void (*fn)(void *ud, const srv_item_t *it, bool running), void *ud)
{
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < q->n_runs; i++)
        fn(ud, q->runs[i], true);
    srv_item_t **order = q->n ? malloc(q->n * sizeof *order) : NULL;
    if (order && !fair_order(q, order)) {
        free(order);
        order = NULL;
    }
    for (size_t i = 0; i < q->n; i++)
        fn(ud, order ? order[i] : q->items[i], false);
    free(order);
    pthread_mutex_unlock(&q->mu);
}
