/* The pending queue's fair order (server/queue.c, issue 8): round-robin between users (a
 * batch of 50 does not starve a single prompt), `front` and numbers within a user, the
 * per-role cap of prompts running at once (and that only executing prompts count), /queue's
 * listing equal to the order prompts really start in, and several workers popping at once. */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app_internal.h"

static int64_t g_seq;

static srv_item_t *item(const char *id, const char *owner, double number, unsigned cap)
{
    srv_item_t *it = calloc(1, sizeof *it);
    assert_non_null(it);
    it->prompt_id = strdup(id);
    snprintf(it->owner, sizeof it->owner, "%s", owner);
    it->number = number;
    it->seq = ++g_seq;
    it->run_cap = cap;
    return it;
}

typedef struct {
    char s[4096];
} ids_t;

static void each_pending(void *ud, const srv_item_t *it, bool running)
{
    ids_t *o = ud;
    if (running)
        return;
    strcat(o->s, it->prompt_id);
    strcat(o->s, ",");
}

/* What GET /queue lists as pending, in order. */
static const char *listed(srv_queue_t *q, ids_t *o)
{
    o->s[0] = '\0';
    srv_queue_each(q, each_pending, o);
    return o->s;
}

/* Pops everything (no caps in play), finishing each as the worker and the loop would. */
static const char *drain(srv_queue_t *q, ids_t *o)
{
    o->s[0] = '\0';
    while (srv_queue_remaining(q)) {
        srv_item_t *it = srv_queue_pop(q);
        assert_non_null(it);
        strcat(o->s, it->prompt_id);
        strcat(o->s, ",");
        srv_queue_executed(q, it);
        assert_true(srv__queue_finished(q, it));
        srv_item_free(it);
    }
    return o->s;
}

static void test_round_robin(void **state)
{
    srv_queue_t q;
    assert_int_equal(srv_queue_init(&q), 0);
    char id[16];
    for (int i = 0; i < 50; i++) { /* alice's batch first */
        snprintf(id, sizeof id, "a%d", i);
        assert_int_equal(srv_queue_push(&q, item(id, "alice", i, 0)), 0);
    }
    assert_int_equal(srv_queue_push(&q, item("b0", "bob", 50, 0)), 0);
    assert_int_equal(srv_queue_push(&q, item("c0", "carol", 51, 0)), 0);
    assert_int_equal(srv_queue_push(&q, item("c1", "carol", 52, 0)), 0);
    ids_t l, d;
    listed(&q, &l);
    /* Nobody served yet: the earliest heads first, then one each in turn. */
    assert_true(!strncmp(l.s, "a0,b0,c0,a1,c1,a2,a3,a4,", 24));
    drain(&q, &d);
    assert_string_equal(d.s, l.s);
    srv_queue_destroy(&q);
}

/* A user who was served recently waits behind one who was not, whatever the numbers. */
static void test_turns_persist(void **state)
{
    srv_queue_t q;
    assert_int_equal(srv_queue_init(&q), 0);
    assert_int_equal(srv_queue_push(&q, item("a0", "alice", 0, 0)), 0);
    assert_int_equal(srv_queue_push(&q, item("a1", "alice", 1, 0)), 0);
    srv_item_t *it = srv_queue_pop(&q);
    assert_string_equal(it->prompt_id, "a0");
    /* bob arrives later with a larger number, and still goes before alice's second. */
    assert_int_equal(srv_queue_push(&q, item("b0", "bob", 9, 0)), 0);
    ids_t l, d;
    assert_string_equal(listed(&q, &l), "b0,a1,");
    srv_queue_executed(&q, it);
    assert_true(srv__queue_finished(&q, it));
    srv_item_free(it);
    assert_string_equal(drain(&q, &d), "b0,a1,");
    /* Alice had the last turn, so bob goes first even though alice's number is smaller. */
    assert_int_equal(srv_queue_push(&q, item("a2", "alice", 10, 0)), 0);
    assert_int_equal(srv_queue_push(&q, item("b1", "bob", 11, 0)), 0);
    assert_string_equal(listed(&q, &l), "b1,a2,");
    assert_string_equal(drain(&q, &d), "b1,a2,");
    srv_queue_destroy(&q);
}

/* `front` (a negative number) and explicit numbers order a user's own prompts only. */
static void test_front_within_user(void **state)
{
    srv_queue_t q;
    assert_int_equal(srv_queue_init(&q), 0);
    assert_int_equal(srv_queue_push(&q, item("a1", "alice", 1, 0)), 0);
    assert_int_equal(srv_queue_push(&q, item("a2", "alice", 2, 0)), 0);
    assert_int_equal(srv_queue_push(&q, item("b1", "bob", 3, 0)), 0);
    assert_int_equal(srv_queue_push(&q, item("b2", "bob", 4, 0)), 0);
    srv_item_t *first = srv_queue_pop(&q); /* a1: alice has had a turn */
    assert_string_equal(first->prompt_id, "a1");
    assert_int_equal(srv_queue_push(&q, item("bf", "bob", -10, 0)), 0);  /* bob: front */
    assert_int_equal(srv_queue_push(&q, item("af", "alice", -11, 0)), 0); /* alice: front */
    ids_t l, d;
    /* bob's front prompt leads bob's queue, alice's leads hers; turns alternate from bob. */
    assert_string_equal(listed(&q, &l), "bf,af,b1,a2,b2,");
    srv_queue_executed(&q, first);
    assert_true(srv__queue_finished(&q, first));
    srv_item_free(first);
    assert_string_equal(drain(&q, &d), "bf,af,b1,a2,b2,");
    srv_queue_destroy(&q);
}

typedef struct {
    srv_queue_t *q;
    srv_item_t *got;
} popper_t;

static void *popper(void *arg)
{
    popper_t *p = arg;
    p->got = srv_queue_pop(p->q);
    return NULL;
}

static void sleep_ms(int n)
{
    struct timespec ts = {0, (long)n * 1000000L};
    nanosleep(&ts, NULL);
}

/* Caps: a "user" runs one prompt at a time, so a second worker serves others meanwhile and
 * waits when only the capped user has prompts; the prompt counts until it is through the
 * engine, not until its history entry is written. */
static void test_role_cap(void **state)
{
    assert_int_equal(srv_role_run_cap(AUTH_ROLE_ADMIN), 0);
    assert_int_equal(srv_role_run_cap(AUTH_ROLE_EDITOR), 2);
    assert_int_equal(srv_role_run_cap(AUTH_ROLE_USER), 1);
    assert_int_equal(srv_role_run_cap(AUTH_ROLE_VIEWER), 1);

    srv_queue_t q;
    assert_int_equal(srv_queue_init(&q), 0);
    assert_int_equal(srv_queue_push(&q, item("u1", "ulla", 1, 1)), 0);
    assert_int_equal(srv_queue_push(&q, item("u2", "ulla", 2, 1)), 0);
    assert_int_equal(srv_queue_push(&q, item("u3", "ulla", 3, 1)), 0);
    assert_int_equal(srv_queue_push(&q, item("e1", "eddy", 4, 2)), 0);
    assert_int_equal(srv_queue_push(&q, item("e2", "eddy", 5, 2)), 0);
    assert_int_equal(srv_queue_push(&q, item("e3", "eddy", 6, 2)), 0);
    srv_item_t *w1 = srv_queue_pop(&q), *w2 = srv_queue_pop(&q), *w3 = srv_queue_pop(&q);
    assert_string_equal(w1->prompt_id, "u1");
    assert_string_equal(w2->prompt_id, "e1");
    assert_string_equal(w3->prompt_id, "e2"); /* ulla is at her cap: eddy again */
    assert_int_equal(srv_queue_remaining(&q), 6);

    /* A fourth worker: ulla and eddy are both at their caps. */
    popper_t p = {&q, NULL};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, popper, &p), 0);
    sleep_ms(50);
    pthread_mutex_lock(&q.mu);
    bool waiting = p.got == NULL;
    pthread_mutex_unlock(&q.mu);
    assert_true(waiting);
    /* u1 is through the engine (its history not written yet): ulla's next may start. */
    srv_queue_executed(&q, w1);
    pthread_join(th, NULL);
    assert_non_null(p.got);
    assert_string_equal(p.got->prompt_id, "u2");
    ids_t l;
    assert_string_equal(listed(&q, &l), "e3,u3,"); /* ulla just had a turn */
    /* Running: all four until the loop records their ends. */
    assert_int_equal(srv_queue_remaining(&q), 6);
    assert_true(srv__queue_finished(&q, w1));
    assert_ptr_equal(q.running, p.got);
    srv_item_free(w1);
    srv_item_t *all[] = {w2, w3, p.got};
    for (int i = 0; i < 3; i++) {
        srv_queue_executed(&q, all[i]);
        assert_true(srv__queue_finished(&q, all[i]));
        srv_item_free(all[i]);
    }
    assert_null(q.running);
    ids_t d;
    assert_string_equal(drain(&q, &d), "e3,u3,");
    srv_queue_destroy(&q);
}

/* Many small prompts from several users, popped by three workers at once: every prompt
 * runs once, each user's in their own order, and the start order is the listed order. */
typedef struct {
    srv_queue_t *q;
    pthread_mutex_t *mu;
    char *log;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    for (;;) {
        /* Logged under a lock around the pop, so the log is the order prompts started. */
        pthread_mutex_lock(w->mu);
        srv_item_t *it = srv_queue_pop(w->q);
        if (it) {
            strcat(w->log, it->prompt_id);
            strcat(w->log, ",");
        }
        pthread_mutex_unlock(w->mu);
        if (!it)
            break;
        sleep_ms(1); /* "executing": the others pop meanwhile */
        srv_queue_executed(w->q, it);
        srv__queue_finished(w->q, it);
        srv_item_free(it);
    }
    return NULL;
}

static void test_many_users_workers(void **state)
{
    srv_queue_t q;
    assert_int_equal(srv_queue_init(&q), 0);
    const char *users[] = {"u0", "u1", "u2", "u3"};
    const int counts[] = {20, 5, 1, 10};
    char id[32];
    int total = 0;
    for (int round = 0; round < 20; round++)
        for (int u = 0; u < 4; u++)
            if (round < counts[u]) {
                snprintf(id, sizeof id, "%s-%02d", users[u], round);
                assert_int_equal(srv_queue_push(&q, item(id, users[u], total, 0)), 0);
                total++;
            }
    ids_t l;
    listed(&q, &l);
    /* Round-robin until the small queues run out, then the rest in turn. */
    assert_true(!strncmp(l.s, "u0-00,u1-00,u2-00,u3-00,u0-01,u1-01,u3-01,u0-02,", 48));
    char log[4096] = "";
    pthread_mutex_t mu;
    pthread_mutex_init(&mu, NULL);
    worker_t w = {&q, &mu, log};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w), 0);
    for (int i = 0; i < 2000 && srv_queue_remaining(&q); i++)
        sleep_ms(1);
    srv_queue_stop(&q);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&mu);
    /* Uncapped workers start prompts in exactly the listed order. */
    assert_string_equal(log, l.s);
    assert_int_equal(srv_queue_remaining(&q), 0);
    srv_queue_destroy(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_turns_persist),
        cmocka_unit_test(test_front_within_user),
        cmocka_unit_test(test_role_cap),
        cmocka_unit_test(test_many_users_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
