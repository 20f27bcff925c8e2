#include "testutil.h"

#include "auth_testkit.h"

static auth_t *open_fresh(const char *name, char **path_out)
{
    char *path = ak_db_path(name);
    auth_t *a = ak_open(path, NULL);
    if (path_out)
        *path_out = path;
    else
        free(path);
    return a;
}

/* How many requests bucket b gets at time t before the first refusal. */
static int drain(auth_t *a, const char *b, double t, unsigned *retry)
{
    int n = 0;
    while (auth_rate_allow(a, b, t, retry) && n < 1000)
        n++;
    return n;
}

static void test_bucket_math(void **state)
{
    auth_t *a = open_fresh("rate", NULL);
    unsigned retry = 99;
    /* Burst 100, then refused with Retry-After 1 (one token takes 50 ms at 20/s). */
    assert_int_equal(drain(a, "key:abc", 1000.0, &retry), 100);
    assert_int_equal(retry, 1);
    /* Half a second refills 10 tokens. */
    assert_int_equal(drain(a, "key:abc", 1000.5, &retry), 10);
    /* 0.3125 s more: 6.25 tokens, so 6 requests and a quarter token left over; 1/32 s adds
     * 0.625 (not yet one), 1/128 s more completes it. (Binary fractions: exact arithmetic.) */
    assert_int_equal(drain(a, "key:abc", 1000.8125, &retry), 6);
    assert_int_equal(drain(a, "key:abc", 1000.84375, &retry), 0);
    assert_int_equal(retry, 1);
    assert_int_equal(drain(a, "key:abc", 1000.8515625, &retry), 1);
    /* A clock stepping back refills nothing. */
    assert_int_equal(drain(a, "key:abc", 990.0, &retry), 0);
    assert_int_equal(retry, 1);
    /* A long pause refills to the burst, never above it. */
    assert_int_equal(drain(a, "key:abc", 5000.0, &retry), 100);
    /* Allowed requests report no wait. */
    retry = 7;
    assert_true(auth_rate_allow(a, "key:abc", 6000.0, &retry));
    assert_int_equal(retry, 0);
    assert_true(auth_rate_allow(a, "key:abc", 6000.0, NULL));
    auth_close(a);
}

static void test_bucket_independence(void **state)
{
    auth_t *a = open_fresh("rate-ind", NULL);
    unsigned retry;
    assert_int_equal(drain(a, "ip:10.0.0.1", 50.0, &retry), 100);
    assert_int_equal(drain(a, "ip:10.0.0.2", 50.0, &retry), 100);
    assert_int_equal(drain(a, "key:10.0.0.1", 50.0, &retry), 100);
    assert_int_equal(drain(a, "session:1", 50.0, &retry), 100);
    assert_int_equal(drain(a, "other", 50.0, &retry), 100);
    assert_int_equal(drain(a, "ip:10.0.0.1", 50.0, &retry), 0);
    /* Long names are not truncated into one bucket. */
    char n1[300], n2[300];
    memset(n1, 'x', 299);
    n1[299] = '\0';
    memcpy(n2, n1, sizeof n1);
    n2[298] = 'y';
    assert_int_equal(drain(a, n1, 50.0, &retry), 100);
    assert_int_equal(drain(a, n2, 50.0, &retry), 100);
    assert_int_equal(drain(a, n1, 50.0, &retry), 0);
    /* NULL bucket or auth: allowed (nothing to count against), no crash. */
    assert_true(auth_rate_allow(a, NULL, 50.0, &retry));
    assert_true(auth_rate_allow(NULL, "ip:x", 50.0, &retry));
    auth_close(a);
}

static void test_bucket_bounded(void **state)
{
    auth_t *a = open_fresh("rate-lru", NULL);
    unsigned retry;
    assert_int_equal(drain(a, "ip:victim", 10.0, &retry), 100);
    assert_int_equal(drain(a, "ip:keeper", 10.0, &retry), 100);
    char b[64];
    for (int i = 0; i < 10000; i++) {
        snprintf(b, sizeof b, "ip:10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        assert_true(auth_rate_allow(a, b, 10.0, &retry));
        /* The keeper stays recently used, so it is never evicted. */
        if (i % 1000 == 0)
            assert_false(auth_rate_allow(a, "ip:keeper", 10.0, &retry));
    }
    /* The table never grew past its cap; the least recently used entry went first. */
    assert_true(a->buckets.n == a->buckets.cap);
    assert_int_equal(a->buckets.cap, 4096);
    assert_int_equal(drain(a, "ip:victim", 10.0, &retry), 100);
    assert_int_equal(drain(a, "ip:keeper", 10.0, &retry), 0);
    auth_close(a);
}

static void test_throttle(void **state)
{
    auth_t *a = open_fresh("throttle", NULL);
    unsigned retry = 99;
    const char *ip = "192.0.2.7";
    for (int i = 0; i < 4; i++) {
        auth_fail_note(a, ip, 100.0 + i);
        assert_false(auth_throttled(a, ip, 100.0 + i, &retry));
        assert_int_equal(retry, 0);
    }
    /* The 5th failure within 60 s: wait 2 s. */
    auth_fail_note(a, ip, 104.0);
    assert_true(auth_throttled(a, ip, 104.0, &retry));
    assert_int_equal(retry, 2);
    assert_true(auth_throttled(a, ip, 105.5, &retry));
    assert_int_equal(retry, 1);
    assert_false(auth_throttled(a, ip, 106.0, &retry));
    /* Other addresses are not affected. */
    assert_false(auth_throttled(a, "192.0.2.8", 104.0, &retry));
    /* Each further failure doubles the wait, up to five minutes. */
    double t = 106.0;
    const unsigned want[] = {4, 8, 16, 32, 64, 128, 256, 300, 300, 300};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        auth_fail_note(a, ip, t);
        assert_true(auth_throttled(a, ip, t, &retry));
        assert_int_equal(retry, want[i]);
        t += want[i];
        assert_false(auth_throttled(a, ip, t, &retry));
    }
    /* Fifteen quiet minutes forgive the address: one failure is just one failure again. */
    t += 900;
    assert_false(auth_throttled(a, ip, t, &retry));
    auth_fail_note(a, ip, t);
    assert_false(auth_throttled(a, ip, t, &retry));
    auth_close(a);
}

static void test_throttle_window(void **state)
{
    auth_t *a = open_fresh("throttle-window", NULL);
    unsigned retry;
    const char *ip = "2001:db8::1";
    /* Four failures, a pause longer than the window, four more: never throttled. */
    for (int i = 0; i < 4; i++)
        auth_fail_note(a, ip, 10.0 + i);
    for (int i = 0; i < 4; i++) {
        auth_fail_note(a, ip, 80.0 + i);
        assert_false(auth_throttled(a, ip, 80.0 + i, &retry));
    }
    auth_fail_note(a, ip, 84.0);
    assert_true(auth_throttled(a, ip, 84.0, &retry));
    assert_int_equal(retry, 2);
    /* NULL arguments are harmless. */
    auth_fail_note(a, NULL, 1.0);
    auth_fail_note(NULL, ip, 1.0);
    assert_false(auth_throttled(a, NULL, 1.0, &retry));
    assert_false(auth_throttled(NULL, ip, 1.0, &retry));
    /* Many addresses: memory stays bounded. */
    char b[64];
    for (int i = 0; i < 6000; i++) {
        snprintf(b, sizeof b, "198.51.%d.%d", i >> 8, i & 255);
        auth_fail_note(a, b, 90.0);
    }
    assert_int_equal(a->fails.n, a->fails.cap);
    auth_close(a);
}

static auth_principal_t principal_of(auth_t *a, const char *name)
{
    char *tok = NULL, *csrf = NULL;
    auth_principal_t p;
    assert_int_equal(auth_login(a, name, "correct horse", &tok, &csrf, &p), 0);
    free(tok);
    free(csrf);
    return p;
}

static void test_quota(void **state)
{
    char *path = NULL;
    auth_t *a = open_fresh("quota", &path);
    assert_int_equal(auth_user_add(a, "alice", "correct horse", AUTH_ROLE_USER, NULL), 0);
    assert_int_equal(auth_user_add(a, "root", "correct horse", AUTH_ROLE_ADMIN, NULL), 0);
    auth_principal_t alice = principal_of(a, "alice"), root = principal_of(a, "root");
    unsigned per_day = 0, max_queued = 0;
    auth_role_limits(AUTH_ROLE_USER, &per_day, &max_queued);
    assert_int_equal(per_day, 1000);

    double day1 = 20000 * 86400.0 + 3600; /* 01:00 UTC */
    assert_int_equal(auth_quota_take(a, &alice, day1), 0);
    assert_int_equal(ak_sql_int(path, "SELECT count FROM quota_usage"), 1);
    for (unsigned i = 1; i < per_day; i++)
        assert_int_equal(auth_quota_take(a, &alice, day1 + i), 0);
    assert_int_equal(auth_quota_take(a, &alice, day1 + 2000), BASE_E_AUTH_QUOTA);
    assert_int_equal(auth_quota_take(a, &alice, day1 + 2001), BASE_E_AUTH_QUOTA);
    /* Refusals do not count. */
    assert_int_equal(ak_sql_int(path, "SELECT count FROM quota_usage"), 1000);

    /* A restart does not hand out a fresh allowance. */
    auth_close(a);
    a = ak_open(path, NULL);
    assert_int_equal(auth_quota_take(a, &alice, day1 + 3000), BASE_E_AUTH_QUOTA);
    /* The last second of the day is still that day; the next UTC day starts at zero. */
    assert_int_equal(auth_quota_take(a, &alice, 20001 * 86400.0 - 0.001), BASE_E_AUTH_QUOTA);
    assert_int_equal(auth_quota_take(a, &alice, 20001 * 86400.0), 0);
    assert_int_equal(ak_sql_int(path, "SELECT count FROM quota_usage WHERE day = 20001"), 1);

    /* Unlimited roles are counted but never refused. */
    for (int i = 0; i < 1100; i++)
        assert_int_equal(auth_quota_take(a, &root, day1 + i), 0);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count FROM quota_usage WHERE user_id = %lld AND day = 20000",
             (long long)root.user_id);
    assert_int_equal(ak_sql_int(path, sql), 1100);

    /* A week later, old rows are dropped. */
    assert_int_equal(auth_quota_take(a, &alice, 20010 * 86400.0), 0);
    assert_int_equal(ak_sql_int(path, "SELECT count(*) FROM quota_usage WHERE day < 20003"), 0);

    /* No user row (--no-auth): nothing to count. Bad arguments are refused. */
    auth_principal_t none = {0};
    none.via = AUTH_VIA_NOAUTH;
    assert_int_equal(auth_quota_take(a, &none, day1), 0);
    assert_int_equal(auth_quota_take(a, NULL, day1), BASE_E_INVAL);
    assert_int_equal(auth_quota_take(a, &alice, -1), BASE_E_INVAL);
    assert_int_equal(auth_quota_take(NULL, &alice, day1), BASE_E_INVAL);
    auth_close(a);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_math),     cmocka_unit_test(test_bucket_independence),
        cmocka_unit_test(test_bucket_bounded),  cmocka_unit_test(test_throttle),
        cmocka_unit_test(test_throttle_window), cmocka_unit_test(test_quota),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
