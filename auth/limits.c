/* Abuse limits kept in memory: token buckets per key, session or client address, and the
 * throttle on failed credentials per address. Both tables are bounded (least recently used
 * entries are evicted), so an attacker inventing addresses costs memory up to the cap and no
 * more. Evicting a bucket loses little: a bucket idle for burst/rate seconds is full again
 * anyway, the state a new entry starts in.
 *
 * Bucket names are "<kind>:<id>"; the kind picks the row of the table below:
 *
 *   kind       refill (requests/s)   burst   used for
 *   key:       20                    100     one API key (its public id)
 *   session:   20                    100     one browser session
 *   user:      20                    100     one user, across keys and sessions
 *   ip:        20                    100     one client address
 *   (other)    20                    100
 *
 * Failed credentials (wrong password, invalid key) per address: the 5th failure within 60 s
 * starts a wait of 2 s, and every further failure doubles it, up to 300 s. An address that
 * fails nothing for 15 minutes is forgiven. */
#include <math.h>
#include <string.h>

#include "auth_internal.h"

static const struct {
    const char *kind; /* prefix of the bucket name; "" matches everything */
    double rate, burst;
} rate_table[] = {
    {"key:", 20, 100}, {"session:", 20, 100}, {"user:", 20, 100}, {"ip:", 20, 100}, {"", 20, 100},
};

#define BUCKETS_CAP 4096
#define FAILS_CAP 4096
#define FAIL_WINDOW_S 60.0
#define FAIL_LIMIT 5
#define FAIL_FIRST_WAIT_S 2.0
#define FAIL_MAX_WAIT_S 300.0
#define FAIL_FORGET_S 900.0

int auth__limits_init(auth_t *a)
{
    int rc = auth__lru_init(&a->buckets, BUCKETS_CAP);
    if (!rc && (rc = auth__lru_init(&a->fails, FAILS_CAP)))
        auth__lru_free(&a->buckets);
    return rc;
}

void auth__limits_free(auth_t *a)
{
    auth__lru_free(&a->buckets);
    auth__lru_free(&a->fails);
}

static unsigned wait_s(double seconds)
{
    double w = ceil(seconds);
    return w < 1 ? 1 : w > 86400 ? 86400 : (unsigned)w;
}

/* Bucket entry state: a = tokens, b = time of the last refill, n = 1 once initialised. */
bool auth_rate_allow(auth_t *a, const char *bucket, double now_s, unsigned *retry_after_s)
{
    if (retry_after_s)
        *retry_after_s = 0;
    if (!a || !isfinite(now_s))
        return true;
    if (!bucket)
        bucket = "";
    size_t row = 0;
    while (strncmp(bucket, rate_table[row].kind, strlen(rate_table[row].kind)) != 0)
        row++;
    double rate = rate_table[row].rate, burst = rate_table[row].burst;
    auth__lru_entry_t *e = auth__lru_get(&a->buckets, bucket, true);
    if (!e->n) {
        e->n = 1;
        e->a = burst;
        e->b = now_s;
    }
    /* A clock that steps back refills nothing (and does not move the mark back). */
    if (now_s > e->b) {
        e->a = fmin(burst, e->a + (now_s - e->b) * rate);
        e->b = now_s;
    }
    if (e->a >= 1) {
        e->a -= 1;
        return true;
    }
    if (retry_after_s)
        *retry_after_s = wait_s((1 - e->a) / rate);
    return false;
}

/* Failure entry state: n = failures in the window, a = window start, b = last failure,
 * c = end of the current wait, d = waits imposed so far. */
static auth__lru_entry_t *fail_entry(auth_t *a, const char *ip, double now_s, bool create)
{
    auth__lru_entry_t *e = auth__lru_get(&a->fails, ip, create);
    if (e && e->n && now_s - e->b >= FAIL_FORGET_S) {
        e->n = 0;
        e->c = e->d = 0;
    }
    return e;
}

void auth_fail_note(auth_t *a, const char *ip, double now_s)
{
    if (!a || !ip || !isfinite(now_s))
        return;
    auth__lru_entry_t *e = fail_entry(a, ip, now_s, true);
    if (!e->n || now_s - e->a > FAIL_WINDOW_S) {
        e->n = 0;
        e->a = now_s;
    }
    e->n++;
    e->b = now_s;
    /* Once an address has been made to wait, every further failure doubles the wait until it
     * has been quiet long enough to be forgiven. */
    if (e->n >= FAIL_LIMIT || e->d > 0) {
        double w = fmin(FAIL_MAX_WAIT_S, FAIL_FIRST_WAIT_S * pow(2, fmin(e->d, 16)));
        e->c = fmax(e->c, now_s + w);
        e->d++;
    }
}

bool auth_throttled(auth_t *a, const char *ip, double now_s, unsigned *retry_after_s)
{
    if (retry_after_s)
        *retry_after_s = 0;
    if (!a || !ip || !isfinite(now_s))
        return false;
    auth__lru_entry_t *e = fail_entry(a, ip, now_s, false);
    if (!e || now_s >= e->c)
        return false;
    if (retry_after_s)
        *retry_after_s = wait_s(e->c - now_s);
    return true;
}
