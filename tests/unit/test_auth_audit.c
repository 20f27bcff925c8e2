#include "testutil.h"

#include <ctype.h>
#include <dirent.h>

#include "auth_testkit.h"

static json_t *parse(const char *text)
{
    json_t *j = NULL;
    char err[128];
    assert_int_equal(json_parse(text, strlen(text), &j, err, sizeof err), 0);
    return j;
}

static int64_t id_at(json_t *list, size_t i)
{
    int64_t v = -1;
    assert_true(json_get_i64(json_object_get(json_at(list, i), "id"), &v));
    return v;
}

static void test_append_and_list(void **state)
{
    char *path = ak_db_path("audit");
    auth_t *a = ak_open(path, NULL);
    json_t *list = auth_audit_list(a, 0, 0);
    assert_non_null(list);
    assert_int_equal(json_len(list), 0);
    json_free(list);

    json_t *d = parse("{\"key_id\":\"abcdefghijkl\",\"n\":3,\"nested\":{\"ok\":true}}");
    a->now_override = 1700000000.25;
    assert_int_equal(auth_audit(a, "admin", "127.0.0.1", "key.create", "alice", d), 0);
    a->now_override = 0;
    assert_int_equal(auth_audit(a, NULL, NULL, "login.fail", NULL, NULL), 0);
    for (int i = 0; i < 8; i++) {
        char target[32];
        snprintf(target, sizeof target, "p%d", i);
        assert_int_equal(auth_audit(a, "bob", "::1", "prompt.submit", target, NULL), 0);
    }

    list = auth_audit_list(a, 100, 0);
    assert_int_equal(json_len(list), 10);
    /* Newest first, ids strictly decreasing. */
    for (size_t i = 1; i < json_len(list); i++)
        assert_true(id_at(list, i - 1) > id_at(list, i));
    assert_string_equal(json_str(json_object_get(json_at(list, 0), "target")), "p7");
    json_t *first = json_at(list, 9);
    assert_string_equal(json_str(json_object_get(first, "who")), "admin");
    assert_string_equal(json_str(json_object_get(first, "ip")), "127.0.0.1");
    assert_string_equal(json_str(json_object_get(first, "action")), "key.create");
    assert_string_equal(json_str(json_object_get(first, "target")), "alice");
    assert_true(json_equal(json_object_get(first, "detail"), d));
    int64_t t = 0;
    assert_true(json_get_i64(json_object_get(first, "time"), &t));
    assert_int_equal(t, 1700000000);
    json_t *second = json_at(list, 8);
    assert_int_equal(json_object_get(second, "who")->type, JSON_NULL);
    assert_int_equal(json_object_get(second, "ip")->type, JSON_NULL);
    assert_int_equal(json_object_get(second, "target")->type, JSON_NULL);
    assert_int_equal(json_object_get(second, "detail")->type, JSON_NULL);
    assert_string_equal(json_str(json_object_get(second, "action")), "login.fail");
    assert_true(json_get_i64(json_object_get(second, "time"), &t));
    assert_true(llabs(t - (int64_t)ak_wall()) <= 2);

    /* Paging: limit, then before_id = the last id seen, until the log is exhausted. */
    json_t *page = auth_audit_list(a, 3, 0);
    assert_int_equal(json_len(page), 3);
    size_t seen = 0;
    while (json_len(page)) {
        for (size_t i = 0; i < json_len(page); i++)
            assert_int_equal(id_at(page, i), id_at(list, seen + i));
        seen += json_len(page);
        int64_t last = id_at(page, json_len(page) - 1);
        json_free(page);
        page = auth_audit_list(a, 3, last);
        assert_non_null(page);
    }
    json_free(page);
    assert_int_equal(seen, 10);
    /* before_id in the middle; a negative limit means the default. */
    page = auth_audit_list(a, -1, id_at(list, 4));
    assert_int_equal(json_len(page), 5);
    assert_int_equal(id_at(page, 0), id_at(list, 5));
    json_free(page);
    json_free(list);

    /* The log survives a restart. */
    auth_close(a);
    a = ak_open(path, NULL);
    list = auth_audit_list(a, 1, 0);
    assert_int_equal(json_len(list), 1);
    assert_string_equal(json_str(json_object_get(json_at(list, 0), "target")), "p7");
    json_free(list);
    json_free(d);
    auth_close(a);
    free(path);
}

static void test_invalid(void **state)
{
    char *path = ak_db_path("audit-invalid");
    auth_t *a = ak_open(path, NULL);
    json_t *arr = parse("[1,2]");
    char big[1100];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ak_capture_start();
    assert_int_equal(auth_audit(a, "u", NULL, NULL, NULL, NULL), BASE_E_INVAL);
    assert_int_equal(auth_audit(a, "u", NULL, "", NULL, NULL), BASE_E_INVAL);
    assert_int_equal(auth_audit(a, "u", NULL, "x", NULL, arr), BASE_E_INVAL);
    assert_int_equal(auth_audit(a, big, NULL, "x", NULL, NULL), BASE_E_INVAL);
    assert_int_equal(auth_audit(a, "u", NULL, "x", big, NULL), BASE_E_INVAL);
    assert_int_equal(auth_audit(NULL, "u", NULL, "x", NULL, NULL), BASE_E_INVAL);
    /* A detail too large to be a log entry. */
    json_t *huge = json_new_object();
    for (int i = 0; i < 40; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        json_object_set(huge, k, json_new_string(big));
    }
    assert_int_equal(auth_audit(a, "u", NULL, "x", NULL, huge), BASE_E_TOOBIG);
    ak_capture_stop();
    json_t *list = auth_audit_list(a, 0, 0);
    assert_int_equal(json_len(list), 0);
    json_free(list);
    assert_null(auth_audit_list(NULL, 0, 0));
    json_free(arr);
    json_free(huge);
    auth_close(a);
    free(path);
}

/* The schema refuses to rewrite history, even from another connection. */
static void test_append_only(void **state)
{
    char *path = ak_db_path("audit-ro");
    auth_t *a = ak_open(path, NULL);
    assert_int_equal(auth_audit(a, "admin", NULL, "user.create", "alice", NULL), 0);
    auth_close(a);
    assert_int_equal(ak_sql(path, "UPDATE audit_log SET who = 'mallory'"), SQLITE_CONSTRAINT);
    assert_int_equal(ak_sql(path, "DELETE FROM audit_log"), SQLITE_CONSTRAINT);
    assert_int_equal(ak_sql(path, "INSERT OR REPLACE INTO audit_log (id, time, action) VALUES (1, 0, 'x')"),
                     SQLITE_CONSTRAINT);
    assert_int_equal(ak_sql_int(path, "SELECT count(*) FROM audit_log WHERE who = 'admin'"), 1);
    free(path);
}

/* Lower-cases s and folds runs of white space and quotes (string literal joins) to one space. */
static void squash(char *s)
{
    char *o = s, *start = s;
    bool space = false;
    for (; *s; s++) {
        if (isspace((unsigned char)*s) || *s == '"') {
            space = true;
            continue;
        }
        if (space && o != start)
            *o++ = ' ';
        space = false;
        *o++ = (char)tolower((unsigned char)*s);
    }
    *o = '\0';
}

/* No source file of auth/ or server/ holds an UPDATE or DELETE of audit_log. */
static void test_no_update_in_code(void **state)
{
    const char *dirs[] = {"auth", "server"};
    const char *banned[] = {"update audit_log", "delete from audit_log", "replace into audit_log",
                            "drop table audit_log", "drop trigger audit_log"};
    int scanned = 0;
    for (int d = 0; d < 2; d++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", WEFT_SOURCE_DIR, dirs[d]);
        DIR *dh = opendir(dir);
        assert_non_null(dh);
        struct dirent *e;
        while ((e = readdir(dh))) {
            size_t n = strlen(e->d_name);
            if (n < 3 || (strcmp(e->d_name + n - 2, ".c") && strcmp(e->d_name + n - 2, ".h")))
                continue;
            char rel[512];
            snprintf(rel, sizeof rel, "%s/%s", dirs[d], e->d_name);
            char *text = tu_read_source(rel, NULL);
            squash(text);
            for (size_t b = 0; b < sizeof banned / sizeof banned[0]; b++)
                if (strstr(text, banned[b]))
                    fail_msg("%s contains \"%s\"", rel, banned[b]);
            free(text);
            scanned++;
        }
        closedir(dh);
    }
    assert_true(scanned > 10);
    /* The check itself can fail. */
    char probe[] = "x = \"UPDATE \"\n  \"audit_log SET\"";
    squash(probe);
    assert_non_null(strstr(probe, "update audit_log"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_list),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_append_only),
        cmocka_unit_test(test_no_update_in_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
