#include "testutil.h"

#include "auth_testkit.h"

static const char *PW = "correct horse";

static json_t *find_user(json_t *list, const char *name)
{
    for (size_t i = 0; i < json_len(list); i++)
        if (!strcmp(json_str(json_object_get(json_at(list, i), "name")), name))
            return json_at(list, i);
    return NULL;
}

static void login_ok(auth_t *a, const char *name, const char *pw, auth_principal_t *p)
{
    char *tok = NULL, *csrf = NULL;
    assert_int_equal(auth_login(a, name, pw, &tok, &csrf, p), 0);
    free(tok);
    free(csrf);
}

static int login_rc(auth_t *a, const char *name, const char *pw)
{
    char *tok = NULL, *csrf = NULL;
    auth_principal_t p;
    int rc = auth_login(a, name, pw, &tok, &csrf, &p);
    free(tok);
    free(csrf);
    return rc;
}

static void test_add_and_list(void **state)
{
    char *path = ak_db_path("add");
    auth_t *a = ak_open(path, NULL);
    assert_int_equal(auth_user_count(a), 0);
    int64_t id1 = 0, id2 = 0;
    assert_int_equal(auth_user_add(a, "alice", PW, AUTH_ROLE_USER, &id1), 0);
    assert_int_equal(auth_user_add(a, "bob", PW, AUTH_ROLE_ADMIN, &id2), 0);
    assert_true(id1 > 0);
    assert_int_equal(id2, id1 + 1);
    assert_int_equal(auth_user_add(a, "carol", PW, AUTH_ROLE_VIEWER, NULL), 0);
    assert_int_equal(auth_user_count(a), 3);

    json_t *list = auth_user_list(a);
    assert_non_null(list);
    assert_int_equal(json_len(list), 3);
    json_t *u = json_at(list, 0);
    int64_t v = 0;
    assert_true(json_get_i64(json_object_get(u, "id"), &v));
    assert_int_equal(v, id1);
    assert_string_equal(json_str(json_object_get(u, "name")), "alice");
    assert_string_equal(json_str(json_object_get(u, "role")), "user");
    assert_int_equal(json_object_get(u, "disabled")->type, JSON_BOOL);
    assert_false(json_object_get(u, "disabled")->u.b);
    assert_true(json_get_i64(json_object_get(u, "created"), &v));
    assert_true(v > 1600000000 && v <= (int64_t)ak_wall() + 1);
    assert_null(json_object_get(u, "pw_hash"));
    assert_string_equal(json_str(json_object_get(json_at(list, 1), "role")), "admin");
    assert_string_equal(json_str(json_object_get(json_at(list, 2), "role")), "viewer");
    /* The list never carries a hash. */
    char *text = json_dump(list, JSON_COMPACT);
    assert_null(strstr(text, "argon2"));
    free(text);
    json_free(list);

    auth_principal_t p;
    login_ok(a, "bob", PW, &p);
    assert_int_equal(p.user_id, id2);
    assert_string_equal(p.user, "bob");
    assert_int_equal(p.role, AUTH_ROLE_ADMIN);
    assert_int_equal(p.scopes, auth_role_scopes(AUTH_ROLE_ADMIN));
    auth_close(a);

    /* Stored as an argon2id hash with the configured costs; the password itself never. */
    assert_false(ak_file_contains(path, PW));
    assert_true(ak_file_contains(path, "$argon2id$v=19$m=64,t=1,p=1$"));
    free(path);
}

static void test_duplicate(void **state)
{
    char *path = ak_db_path("dup");
    auth_t *a = ak_open(path, NULL);
    int64_t id = 0;
    assert_int_equal(auth_user_add(a, "alice", PW, AUTH_ROLE_USER, &id), 0);
    assert_int_equal(auth_user_add(a, "alice", "other password", AUTH_ROLE_ADMIN, NULL), BASE_E_EXIST);
    /* Names differing only in case would let one user pass for another. */
    assert_int_equal(auth_user_add(a, "ALICE", PW, AUTH_ROLE_ADMIN, NULL), BASE_E_EXIST);
    assert_int_equal(auth_user_count(a), 1);
    /* The first one is unchanged. */
    auth_principal_t p;
    login_ok(a, "alice", PW, &p);
    assert_int_equal(p.role, AUTH_ROLE_USER);
    assert_int_equal(login_rc(a, "alice", "other password"), BASE_E_AUTH_INVALID);
    auth_close(a);
    free(path);
}

static void test_bad_names(void **state)
{
    char *path = ak_db_path("names");
    auth_t *a = ak_open(path, NULL);
    char n64[65], n63[64];
    memset(n64, 'a', 64);
    n64[64] = '\0';
    memset(n63, 'b', 63);
    n63[63] = '\0';
    const char *bad[] = {"",   n64,   "a b", "a/b", "a\\b", "caf\xc3\xa9", ".",
                         "..", "a\n", "a:b", "a@b", "'--",  "a\tb",        "\x7f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(auth_user_add(a, bad[i], PW, AUTH_ROLE_USER, NULL), BASE_E_INVAL);
    assert_int_equal(auth_user_add(a, NULL, PW, AUTH_ROLE_USER, NULL), BASE_E_INVAL);
    assert_int_equal(auth_user_count(a), 0);
    const char *good[] = {n63, "a", "A.b_c-D9", "...", "-x"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(auth_user_add(a, good[i], PW, AUTH_ROLE_USER, NULL), 0);
    assert_int_equal(auth_user_count(a), 5);
    /* A role outside the table. */
    assert_int_equal(auth_user_add(a, "zed", PW, AUTH_ROLE_COUNT, NULL), BASE_E_INVAL);
    assert_int_equal(auth_user_add(a, "zed", PW, (auth_role_t)-1, NULL), BASE_E_INVAL);
    assert_int_equal(auth_user_add(NULL, "zed", PW, AUTH_ROLE_USER, NULL), BASE_E_INVAL);
    auth_close(a);
    free(path);
}

static void test_bad_passwords(void **state)
{
    char *path = ak_db_path("passwords");
    auth_t *a = ak_open(path, NULL);
    char p1024[1025], p1025[1026];
    memset(p1024, 'x', 1024);
    p1024[1024] = '\0';
    memset(p1025, 'y', 1025);
    p1025[1025] = '\0';
    assert_int_equal(auth_user_add(a, "u1", NULL, AUTH_ROLE_USER, NULL), BASE_E_INVAL);
    assert_int_equal(auth_user_add(a, "u1", "", AUTH_ROLE_USER, NULL), BASE_E_INVAL);
    assert_int_equal(auth_user_add(a, "u1", "1234567", AUTH_ROLE_USER, NULL), BASE_E_INVAL);
    assert_int_equal(auth_user_add(a, "u1", p1025, AUTH_ROLE_USER, NULL), BASE_E_INVAL);
    assert_int_equal(auth_user_count(a), 0);
    assert_int_equal(auth_user_add(a, "u1", "12345678", AUTH_ROLE_USER, NULL), 0);
    assert_int_equal(auth_user_add(a, "u2", p1024, AUTH_ROLE_USER, NULL), 0);
    auth_principal_t p;
    login_ok(a, "u2", p1024, &p);
    assert_string_equal(p.user, "u2");
    assert_int_equal(login_rc(a, "u2", p1025), BASE_E_AUTH_INVALID);

    /* The rejection message explains the rule and never echoes the password. */
    ak_capture_start();
    assert_int_equal(auth_user_set_password(a, "u1", "short"), BASE_E_INVAL);
    ak_capture_stop();
    assert_non_null(strstr(ak_logged, "8 to 1024 bytes"));
    assert_null(strstr(ak_logged, "short"));
    auth_close(a);
    free(path);
}

static void test_passwd(void **state)
{
    char *path = ak_db_path("passwd");
    auth_t *a = ak_open(path, NULL);
    assert_int_equal(auth_user_add(a, "alice", PW, AUTH_ROLE_USER, NULL), 0);
    char *tok = NULL, *csrf = NULL;
    auth_principal_t p;
    assert_int_equal(auth_login(a, "alice", PW, &tok, &csrf, &p), 0);
    assert_int_equal(auth_verify_session(a, tok, &p), 0);

    assert_int_equal(auth_user_set_password(a, "alice", "new password 1"), 0);
    assert_int_equal(login_rc(a, "alice", PW), BASE_E_AUTH_INVALID);
    login_ok(a, "alice", "new password 1", &p);
    /* Sessions made with the old password end. */
    assert_int_equal(auth_verify_session(a, tok, &p), BASE_E_AUTH_INVALID);
    assert_int_equal(auth_user_set_password(a, "nobody", "new password 1"), BASE_E_NOENT);
    assert_int_equal(auth_user_set_password(a, "alice", "1234567"), BASE_E_INVAL);
    assert_int_equal(auth_user_set_password(a, "alice", NULL), BASE_E_INVAL);
    login_ok(a, "alice", "new password 1", &p);
    free(tok);
    free(csrf);
    auth_close(a);
    assert_false(ak_file_contains(path, "new password 1"));
    free(path);
}

static void test_role(void **state)
{
    char *path = ak_db_path("role");
    auth_t *a = ak_open(path, NULL);
    assert_int_equal(auth_user_add(a, "alice", PW, AUTH_ROLE_USER, NULL), 0);
    char *tok = NULL, *csrf = NULL, *key = NULL;
    auth_principal_t p;
    assert_int_equal(auth_login(a, "alice", PW, &tok, &csrf, &p), 0);
    assert_int_equal(auth_key_create(a, "alice", 0, 0, "k", &key, NULL), 0);
    assert_int_equal(auth_verify_key(a, key, &p), 0);
    assert_int_equal(p.scopes, auth_role_scopes(AUTH_ROLE_USER));
    assert_false(auth_has(&p, AUTH_SCOPE(QUEUE_READ_ANY)));

    assert_int_equal(auth_user_set_role(a, "alice", AUTH_ROLE_EDITOR), 0);
    json_t *list = auth_user_list(a);
    assert_string_equal(json_str(json_object_get(find_user(list, "alice"), "role")), "editor");
    json_free(list);
    /* Both the session and the (cached) key see the new role on the next request. */
    assert_int_equal(auth_verify_session(a, tok, &p), 0);
    assert_int_equal(p.role, AUTH_ROLE_EDITOR);
    assert_int_equal(p.scopes, auth_role_scopes(AUTH_ROLE_EDITOR));
    assert_int_equal(auth_verify_key(a, key, &p), 0);
    assert_int_equal(p.role, AUTH_ROLE_EDITOR);
    assert_true(auth_has(&p, AUTH_SCOPE(QUEUE_READ_ANY)));

    assert_int_equal(auth_user_set_role(a, "alice", AUTH_ROLE_VIEWER), 0);
    assert_int_equal(auth_verify_key(a, key, &p), 0);
    assert_int_equal(p.scopes, auth_role_scopes(AUTH_ROLE_VIEWER));
    assert_false(auth_has(&p, AUTH_SCOPE(PROMPT_SUBMIT)));

    assert_int_equal(auth_user_set_role(a, "nobody", AUTH_ROLE_ADMIN), BASE_E_NOENT);
    assert_int_equal(auth_user_set_role(a, "alice", AUTH_ROLE_COUNT), BASE_E_INVAL);
    free(tok);
    free(csrf);
    free(key);
    auth_close(a);
    free(path);
}

static void test_disable(void **state)
{
    char *path = ak_db_path("disable");
    auth_t *a = ak_open(path, NULL);
    assert_int_equal(auth_user_add(a, "alice", PW, AUTH_ROLE_USER, NULL), 0);
    assert_int_equal(auth_user_add(a, "bob", PW, AUTH_ROLE_USER, NULL), 0);
    char *tok = NULL, *csrf = NULL, *key = NULL, *btok = NULL, *bcsrf = NULL;
    auth_principal_t p;
    assert_int_equal(auth_login(a, "alice", PW, &tok, &csrf, &p), 0);
    assert_int_equal(auth_login(a, "bob", PW, &btok, &bcsrf, &p), 0);
    assert_int_equal(auth_key_create(a, "alice", 0, 0, NULL, &key, NULL), 0);
    assert_int_equal(auth_verify_key(a, key, &p), 0); /* now cached */

    assert_int_equal(auth_user_set_disabled(a, "alice", true), 0);
    json_t *list = auth_user_list(a);
    assert_true(json_object_get(find_user(list, "alice"), "disabled")->u.b);
    assert_false(json_object_get(find_user(list, "bob"), "disabled")->u.b);
    json_free(list);
    assert_int_equal(auth_verify_session(a, tok, &p), BASE_E_AUTH_INVALID);
    assert_int_equal(p.via, AUTH_VIA_NONE);
    assert_int_equal(auth_verify_key(a, key, &p), BASE_E_AUTH_INVALID);
    assert_int_equal(login_rc(a, "alice", PW), BASE_E_AUTH_INVALID);
    /* Other users are untouched. */
    assert_int_equal(auth_verify_session(a, btok, &p), 0);
    assert_string_equal(p.user, "bob");

    /* Enabling again restores login and keys, but not the ended sessions. */
    assert_int_equal(auth_user_set_disabled(a, "alice", false), 0);
    assert_int_equal(auth_verify_key(a, key, &p), 0);
    assert_int_equal(auth_verify_session(a, tok, &p), BASE_E_AUTH_INVALID);
    login_ok(a, "alice", PW, &p);
    assert_int_equal(auth_user_set_disabled(a, "nobody", true), BASE_E_NOENT);
    free(tok);
    free(csrf);
    free(btok);
    free(bcsrf);
    free(key);
    auth_close(a);
    free(path);
}

static void test_schema(void **state)
{
    char *path = ak_db_path("schema");
    /* weft.db is shared with the server's store: tables of others are left alone. */
    assert_int_equal(ak_sql(path, "CREATE TABLE schema_version (id INTEGER PRIMARY KEY, version INTEGER);"
                                  "INSERT INTO schema_version VALUES (1, 1);"),
                     SQLITE_OK);
    auth_t *a = ak_open(path, NULL);
    assert_int_equal(auth_user_add(a, "alice", PW, AUTH_ROLE_USER, NULL), 0);
    auth_close(a);
    /* Reopening keeps the data and migrates nothing. */
    a = ak_open(path, NULL);
    assert_int_equal(auth_user_count(a), 1);
    auth_close(a);
    assert_int_equal(ak_sql(path, "UPDATE schema_version SET version = 1 WHERE version = 1"), SQLITE_OK);

    /* A newer auth schema refuses to open, saying why. */
    assert_int_equal(ak_sql(path, "UPDATE auth_schema_version SET version = 99"), SQLITE_OK);
    auth_config_t c;
    ak_config(&c);
    a = (auth_t *)1;
    ak_capture_start();
    assert_int_equal(auth_open(path, &c, &a), BASE_E_NOTSUP);
    ak_capture_stop();
    assert_null(a);
    assert_non_null(strstr(ak_logged, "auth schema version 99 is newer"));

    /* Not a database at all. */
    char *dir = tu_fresh_dir("schema-junk");
    char junk[4096];
    snprintf(junk, sizeof junk, "%s/weft.db", dir);
    tu_write_file(junk, "this is not SQLite, just some text that is long enough to be a header......", 76);
    ak_capture_start();
    int rc = auth_open(junk, &c, &a);
    ak_capture_stop();
    assert_int_equal(rc, BASE_E_IO);
    assert_null(a);
    free(dir);

    /* Bad arguments and configurations. */
    assert_int_equal(auth_open(NULL, &c, &a), BASE_E_INVAL);
    assert_int_equal(auth_open("", &c, &a), BASE_E_INVAL);
    assert_int_equal(auth_open(path, &c, NULL), BASE_E_INVAL);
    auth_config_t bad = c;
    bad.argon_t = 0;
    ak_capture_start();
    assert_int_equal(auth_open(path, &bad, &a), BASE_E_INVAL);
    bad = c;
    bad.argon_m_kib = 4;
    assert_int_equal(auth_open(path, &bad, &a), BASE_E_INVAL);
    bad = c;
    bad.session_ttl_s = 0;
    assert_int_equal(auth_open(path, &bad, &a), BASE_E_INVAL);
    ak_capture_stop();
    auth_close(NULL);
    free(path);
}

static void test_defaults(void **state)
{
    auth_config_t c;
    memset(&c, 0xff, sizeof c);
    auth_config_init(&c);
    assert_int_equal(c.session_ttl_s, 7 * 24 * 3600);
    assert_int_equal(c.key_cache_ttl_s, 300);
    assert_int_equal(c.argon_t, 2);
    assert_int_equal(c.argon_m_kib, 19456);
    assert_int_equal(c.argon_p, 1);
    /* Opening with NULL uses the defaults (and the real argon2 cost, once). */
    char *path = ak_db_path("defaults");
    auth_t *a = NULL;
    assert_int_equal(auth_open(path, NULL, &a), 0);
    assert_int_equal(auth_user_add(a, "alice", PW, AUTH_ROLE_USER, NULL), 0);
    auth_close(a);
    assert_true(ak_file_contains(path, "$argon2id$v=19$m=19456,t=2,p=1$"));
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_list), cmocka_unit_test(test_duplicate),
        cmocka_unit_test(test_bad_names),    cmocka_unit_test(test_bad_passwords),
        cmocka_unit_test(test_passwd),       cmocka_unit_test(test_role),
        cmocka_unit_test(test_disable),      cmocka_unit_test(test_schema),
        cmocka_unit_test(test_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
