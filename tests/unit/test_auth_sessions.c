#include "testutil.h"

#include <unistd.h>

#include "auth_testkit.h"

static const char *PW = "correct horse";

typedef struct {
    char *path;
    auth_t *a;
    int64_t alice_id;
} fx_t;

static int setup(void **state)
{
    static int n;
    char name[32];
    snprintf(name, sizeof name, "sessions%d", n++);
    fx_t *f = calloc(1, sizeof *f);
    f->path = ak_db_path(name);
    f->a = ak_open(f->path, NULL);
    assert_int_equal(auth_user_add(f->a, "alice", PW, AUTH_ROLE_EDITOR, &f->alice_id), 0);
    assert_int_equal(auth_user_add(f->a, "bob", PW, AUTH_ROLE_VIEWER, NULL), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    auth_close(f->a);
    free(f->path);
    free(f);
    return 0;
}

static bool b64url_only(const char *s)
{
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == strlen(s);
}

static void test_login_verify_logout(void **state)
{
    fx_t *f = *state;
    char *tok = NULL, *csrf = NULL;
    auth_principal_t p, q;
    assert_int_equal(auth_login(f->a, "alice", PW, &tok, &csrf, &p), 0);
    assert_int_equal(strlen(tok), 43);  /* 32 bytes */
    assert_int_equal(strlen(csrf), 32); /* 24 bytes */
    assert_true(b64url_only(tok) && b64url_only(csrf));
    assert_int_equal(p.user_id, f->alice_id);
    assert_string_equal(p.user, "alice");
    assert_int_equal(p.role, AUTH_ROLE_EDITOR);
    assert_int_equal(p.scopes, auth_role_scopes(AUTH_ROLE_EDITOR));
    assert_int_equal(p.via, AUTH_VIA_SESSION);
    assert_true(p.session_id > 0);
    assert_string_equal(p.csrf, csrf);
    assert_string_equal(p.key_id, "");

    memset(&q, 0x55, sizeof q);
    assert_int_equal(auth_verify_session(f->a, tok, &q), 0);
    assert_memory_equal(&p, &q, sizeof p);

    /* A second login is a second, independent session. */
    char *tok2 = NULL, *csrf2 = NULL;
    assert_int_equal(auth_login(f->a, "alice", PW, &tok2, &csrf2, &q), 0);
    assert_string_not_equal(tok, tok2);
    assert_string_not_equal(csrf, csrf2);
    assert_true(q.session_id != p.session_id);

    assert_int_equal(auth_logout(f->a, tok), 0);
    memset(&q, 0x55, sizeof q);
    assert_int_equal(auth_verify_session(f->a, tok, &q), BASE_E_AUTH_INVALID);
    assert_int_equal(q.via, AUTH_VIA_NONE);
    assert_int_equal(q.scopes, 0);
    assert_int_equal(auth_logout(f->a, tok), BASE_E_AUTH_INVALID);
    assert_int_equal(auth_verify_session(f->a, tok2, &q), 0);
    assert_string_equal(q.csrf, csrf2);

    /* The principal argument is optional at login. */
    char *tok3 = NULL, *csrf3 = NULL;
    assert_int_equal(auth_login(f->a, "bob", PW, &tok3, &csrf3, NULL), 0);
    assert_int_equal(auth_verify_session(f->a, tok3, &q), 0);
    assert_string_equal(q.user, "bob");
    assert_int_equal(q.scopes, auth_role_scopes(AUTH_ROLE_VIEWER));
    free(tok);
    free(csrf);
    free(tok2);
    free(csrf2);
    free(tok3);
    free(csrf3);
}

static void test_wrong_password(void **state)
{
    fx_t *f = *state;
    char *tok = (char *)"x", *csrf = (char *)"y";
    auth_principal_t p;
    const char *bad[][2] = {{"alice", "wrong password"},
                            {"alice", ""},
                            {"nobody", PW},
                            {"ALICE", "wrong password"},
                            {"", PW},
                            {"a b", PW},
                            {"alice", "correct hors"},
                            {"alice", "correct horse "}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&p, 0x55, sizeof p);
        assert_int_equal(auth_login(f->a, bad[i][0], bad[i][1], &tok, &csrf, &p), BASE_E_AUTH_INVALID);
        assert_null(tok);
        assert_null(csrf);
        assert_int_equal(p.via, AUTH_VIA_NONE);
    }
    assert_int_equal(auth_login(f->a, NULL, PW, &tok, &csrf, &p), BASE_E_AUTH_INVALID);
    assert_int_equal(auth_login(f->a, "alice", NULL, &tok, &csrf, &p), BASE_E_AUTH_INVALID);
    assert_int_equal(auth_login(f->a, "alice", PW, NULL, &csrf, &p), BASE_E_INVAL);
    assert_int_equal(auth_login(NULL, "alice", PW, &tok, &csrf, &p), BASE_E_INVAL);
    /* Names compare without case, so the stored spelling comes back. */
    assert_int_equal(auth_login(f->a, "ALICE", PW, &tok, &csrf, &p), 0);
    assert_string_equal(p.user, "alice");
    free(tok);
    free(csrf);
}

static void test_expiry(void **state)
{
    char *path = ak_db_path("sessions-ttl");
    auth_config_t c;
    ak_config(&c);
    c.session_ttl_s = 1;
    auth_t *a = ak_open(path, &c);
    assert_int_equal(auth_user_add(a, "alice", PW, AUTH_ROLE_USER, NULL), 0);
    char *tok = NULL, *csrf = NULL;
    auth_principal_t p;
    assert_int_equal(auth_login(a, "alice", PW, &tok, &csrf, &p), 0);
    assert_int_equal(auth_verify_session(a, tok, &p), 0);
    usleep(1200 * 1000);
    assert_int_equal(auth_verify_session(a, tok, &p), BASE_E_AUTH_INVALID);
    assert_int_equal(p.via, AUTH_VIA_NONE);
    /* The expired row is gone, so logging out finds nothing. */
    assert_int_equal(auth_logout(a, tok), BASE_E_AUTH_INVALID);
    free(tok);
    free(csrf);
    /* A new login works, and expired rows are dropped as new ones are made. */
    assert_int_equal(auth_login(a, "alice", PW, &tok, &csrf, &p), 0);
    char *tok2 = NULL, *csrf2 = NULL;
    usleep(1100 * 1000);
    assert_int_equal(auth_login(a, "alice", PW, &tok2, &csrf2, &p), 0);
    /* Only the live session's row is left. */
    assert_int_equal(ak_sql_int(path, "SELECT count(*) FROM sessions"), 1);
    assert_int_equal(auth_verify_session(a, tok2, &p), 0);
    auth_close(a);
    free(tok);
    free(csrf);
    free(tok2);
    free(csrf2);
    free(path);
}

static void test_malformed_tokens(void **state)
{
    fx_t *f = *state;
    char *tok = NULL, *csrf = NULL;
    auth_principal_t p;
    assert_int_equal(auth_login(f->a, "alice", PW, &tok, &csrf, &p), 0);
    char m[10][128];
    int n = 0;
    snprintf(m[n++], sizeof m[0], "%s", "");
    snprintf(m[n++], sizeof m[0], "%.42s", tok);
    snprintf(m[n++], sizeof m[0], "%sA", tok);
    snprintf(m[n++], sizeof m[0], "%s=", tok);
    snprintf(m[n++], sizeof m[0], " %s", tok);
    snprintf(m[n++], sizeof m[0], "%s", tok);
    m[n - 1][5] = '+';
    snprintf(m[n++], sizeof m[0], "%s", tok);
    m[n - 1][5] = m[n - 1][5] == 'a' ? 'b' : 'a'; /* well formed, unknown */
    snprintf(m[n++], sizeof m[0], "%s", csrf);    /* the CSRF token is not a session */
    for (int i = 0; i < n; i++)
        assert_int_equal(auth_verify_session(f->a, m[i], &p), BASE_E_AUTH_INVALID);
    assert_int_equal(auth_verify_session(f->a, NULL, &p), BASE_E_AUTH_INVALID);
    assert_int_equal(auth_verify_session(f->a, tok, NULL), BASE_E_INVAL);
    assert_int_equal(auth_logout(f->a, NULL), BASE_E_AUTH_INVALID);
    assert_int_equal(auth_logout(f->a, m[6]), BASE_E_AUTH_INVALID);
    assert_int_equal(auth_verify_session(f->a, tok, &p), 0);
    free(tok);
    free(csrf);
}

static void test_role_and_disable(void **state)
{
    fx_t *f = *state;
    char *tok = NULL, *csrf = NULL;
    auth_principal_t p;
    assert_int_equal(auth_login(f->a, "alice", PW, &tok, &csrf, &p), 0);
    assert_int_equal(auth_user_set_role(f->a, "alice", AUTH_ROLE_USER), 0);
    assert_int_equal(auth_verify_session(f->a, tok, &p), 0);
    assert_int_equal(p.role, AUTH_ROLE_USER);
    assert_int_equal(p.scopes, auth_role_scopes(AUTH_ROLE_USER));
    assert_int_equal(auth_user_set_disabled(f->a, "alice", true), 0);
    assert_int_equal(auth_verify_session(f->a, tok, &p), BASE_E_AUTH_INVALID);
    free(tok);
    free(csrf);
    assert_int_equal(auth_login(f->a, "alice", PW, &tok, &csrf, &p), BASE_E_AUTH_INVALID);
}

static void test_no_token_in_db(void **state)
{
    fx_t *f = *state;
    char *tok[3], *csrf[3];
    auth_principal_t p;
    ak_capture_start();
    for (int i = 0; i < 3; i++) {
        assert_int_equal(auth_login(f->a, i ? "alice" : "bob", PW, &tok[i], &csrf[i], &p), 0);
        assert_int_equal(auth_verify_session(f->a, tok[i], &p), 0);
    }
    assert_int_equal(auth_logout(f->a, tok[2]), 0);
    ak_capture_stop();
    auth_close(f->a);
    f->a = NULL;
    assert_false(ak_file_contains(f->path, PW));
    for (int i = 0; i < 3; i++) {
        assert_false(ak_file_contains(f->path, tok[i]));
        assert_null(strstr(ak_logged, tok[i]));
        free(tok[i]);
        free(csrf[i]);
    }
    assert_null(strstr(ak_logged, PW));
    f->a = ak_open(f->path, NULL);
}

/* A session check is one indexed lookup, cheap enough for every request. */
static void test_verify_speed(void **state)
{
    fx_t *f = *state;
    char *tok = NULL, *csrf = NULL;
    auth_principal_t p;
    assert_int_equal(auth_login(f->a, "alice", PW, &tok, &csrf, &p), 0);
    double t0 = ak_mono();
    for (int i = 0; i < 1000; i++)
        assert_int_equal(auth_verify_session(f->a, tok, &p), 0);
    double d = ak_mono() - t0;
    print_message("1000 session verifications: %.2f ms\n", d * 1e3);
    assert_true(d < 0.5);
    free(tok);
    free(csrf);
}

/* Sessions survive a restart (they live in SQLite). */
static void test_persist(void **state)
{
    fx_t *f = *state;
    char *tok = NULL, *csrf = NULL;
    auth_principal_t p;
    assert_int_equal(auth_login(f->a, "alice", PW, &tok, &csrf, &p), 0);
    auth_close(f->a);
    f->a = ak_open(f->path, NULL);
    assert_int_equal(auth_verify_session(f->a, tok, &p), 0);
    assert_string_equal(p.csrf, csrf);
    free(tok);
    free(csrf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_login_verify_logout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_password, setup, teardown),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test_setup_teardown(test_malformed_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_role_and_disable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_token_in_db, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_speed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
