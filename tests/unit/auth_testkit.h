/* Helpers shared by the test_auth_*.c files: a fresh auth database with cheap argon2 costs,
 * the clock override, a log capture and a scan of the database files for plain-text secrets. */
#ifndef WEFT_AUTH_TESTKIT_H
#define WEFT_AUTH_TESTKIT_H

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "auth_internal.h"
#include "base.h"

#define AK_UNUSED __attribute__((unused))

/* Cheap argon2 (t=1, 64 KiB) keeps the tests fast; the code paths are the same. */
AK_UNUSED static void ak_config(auth_config_t *c)
{
    auth_config_init(c);
    c->argon_t = 1;
    c->argon_m_kib = 64;
    c->argon_p = 1;
}

/* <WEFT_TEST_TMP>/<name>/weft.db, malloc'ed; the folder is fresh. */
AK_UNUSED static char *ak_db_path(const char *name)
{
    char *dir = tu_fresh_dir(name);
    size_t n = strlen(dir) + 16;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/weft.db", dir);
    free(dir);
    return p;
}

AK_UNUSED static auth_t *ak_open(const char *path, const auth_config_t *cfg)
{
    auth_config_t c;
    if (!cfg) {
        ak_config(&c);
        cfg = &c;
    }
    auth_t *a = NULL;
    assert_int_equal(auth_open(path, cfg, &a), 0);
    assert_non_null(a);
    return a;
}

AK_UNUSED static double ak_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

AK_UNUSED static double ak_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs one SQL statement on its own connection; returns the SQLite code. */
AK_UNUSED static int ak_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    sqlite3_close(db);
    return rc;
}

/* The first column of the first row of a query on its own connection; -1 on failure. */
AK_UNUSED static int64_t ak_sql_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t v = -1;
    if (sqlite3_open(path, &db) == SQLITE_OK && sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* True when needle occurs in path, path-wal or path-journal (whichever exist). */
AK_UNUSED static bool ak_file_contains(const char *path, const char *needle)
{
    static const char *const suffix[] = {"", "-wal", "-journal"};
    bool found = false;
    size_t nl = strlen(needle);
    for (int i = 0; i < 3 && !found; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        char *data = NULL;
        size_t n = 0;
        if (base_read_file(p, 1u << 28, &data, &n) != 0)
            continue;
        found = memmem(data, n, needle, nl) != NULL;
        free(data);
    }
    return found;
}

AK_UNUSED static char ak_logged[16384];

AK_UNUSED static void ak_capture_log(base_log_level_t lvl, const char *file, int line, const char *msg)
{
    size_t used = strlen(ak_logged);
    snprintf(ak_logged + used, sizeof ak_logged - used, "%s\n", msg);
}

AK_UNUSED static void ak_capture_start(void)
{
    ak_logged[0] = '\0';
    base_log_threshold = BASE_LOG_DEBUG;
    base_log_set_sink(ak_capture_log);
}

AK_UNUSED static void ak_capture_stop(void)
{
    base_log_set_sink(NULL);
    base_log_threshold = BASE_LOG_INFO;
}

#endif
