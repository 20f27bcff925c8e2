/* The daily prompt quota: one row per user and UTC day in quota_usage, so a restart does not
 * hand out a fresh allowance. The take is one statement: the upsert only increments while
 * the count is under the limit, so checking and counting cannot race with another process
 * (a CLI) using the same file. */
#include <math.h>

#include "auth_internal.h"
#include "log.h"

/* Rows older than this many days are dropped once per day; nothing reads them. */
#define QUOTA_KEEP_DAYS 7

static void purge_old(auth_t *a, int64_t day)
{
    if (a->quota_purged_day == day)
        return;
    sqlite3_stmt *s = a->stmt[AUTH__QUOTA_PURGE];
    if (sqlite3_bind_int64(s, 1, day - QUOTA_KEEP_DAYS) != SQLITE_OK || sqlite3_step(s) != SQLITE_DONE)
        auth__fail(a, "cannot drop old quota rows");
    else
        a->quota_purged_day = day;
    auth__done(s);
}

int auth_quota_take(auth_t *a, const auth_principal_t *p, double now_s)
{
    if (!a || !p || !isfinite(now_s) || now_s < 0)
        return BASE_E_INVAL;
    /* --no-auth and other principals without a user row have no quota to count against. */
    if (p->user_id <= 0)
        return 0;
    unsigned per_day = 0, max_queued = 0;
    auth_role_limits(p->role, &per_day, &max_queued);
    int64_t day = (int64_t)floor(now_s / 86400.0);
    purge_old(a, day);
    /* Unlimited roles are counted too: the figure is there if the role changes mid-day. */
    int64_t limit = per_day ? (int64_t)per_day : INT64_MAX;
    sqlite3_stmt *s = a->stmt[AUTH__QUOTA_TAKE];
    int rc = 0;
    if (sqlite3_bind_int64(s, 1, p->user_id) != SQLITE_OK || sqlite3_bind_int64(s, 2, day) != SQLITE_OK ||
        sqlite3_bind_int64(s, 3, limit) != SQLITE_OK || sqlite3_step(s) != SQLITE_DONE)
        rc = auth__fail(a, "cannot count a prompt against the quota");
    else if (sqlite3_changes(a->db) == 0)
        rc = BASE_E_AUTH_QUOTA;
    auth__done(s);
    return rc;
}
