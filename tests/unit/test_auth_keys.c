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
    snprintf(name, sizeof name, "keys%d", n++);
    fx_t *f = calloc(1, sizeof *f);
    f->path = ak_db_path(name);
    f->a = ak_open(f->path, NULL);
    assert_int_equal(auth_user_add(f->a, "alice", PW, AUTH_ROLE_USER, &f->alice_id), 0);
    assert_int_equal(auth_user_add(f->a, "bob", PW, AUTH_ROLE_ADMIN, NULL), 0);
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

static json_t *find_key(json_t *list, const char *id)
{
    for (size_t i = 0; i < json_len(list); i++)
        if (!strcmp(json_str(json_object_get(json_at(list, i), "id")), id))
            return json_at(list, i);
    return NULL;
}

static void test_create_verify(void **state)
{
    fx_t *f = *state;
    char *key = NULL, id[32];
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, "laptop", &key, id), 0);
    /* weft_<12 base32>_<43 base64url> */
    assert_int_equal(strlen(key), 61);
    assert_memory_equal(key, "weft_", 5);
    assert_int_equal(strlen(id), 12);
    assert_memory_equal(key + 5, id, 12);
    assert_int_equal(key[17], '_');
    for (int i = 0; i < 12; i++)
        assert_non_null(strchr("abcdefghijklmnopqrstuvwxyz234567", id[i]));
    for (int i = 18; i < 61; i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", key[i]));

    auth_principal_t p;
    memset(&p, 0x55, sizeof p);
    assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    assert_int_equal(p.user_id, f->alice_id);
    assert_string_equal(p.user, "alice");
    assert_int_equal(p.role, AUTH_ROLE_USER);
    assert_int_equal(p.via, AUTH_VIA_KEY);
    assert_string_equal(p.key_id, id);
    assert_int_equal(p.session_id, 0);
    assert_string_equal(p.csrf, "");
    /* scopes 0 = everything the owner's role has. */
    assert_int_equal(p.scopes, auth_role_scopes(AUTH_ROLE_USER));

    char owner[64];
    assert_int_equal(auth_key_owner(f->a, id, owner), 0);
    assert_string_equal(owner, "alice");
    assert_int_equal(auth_key_owner(f->a, "aaaaaaaaaaaa", owner), BASE_E_NOENT);
    assert_int_equal(auth_key_owner(f->a, "not an id", owner), BASE_E_NOENT);
    assert_int_equal(auth_key_owner(f->a, NULL, owner), BASE_E_NOENT);

    /* Two keys never share an id or a secret. */
    char *key2 = NULL, id2[32];
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, NULL, &key2, id2), 0);
    assert_string_not_equal(id, id2);
    assert_memory_not_equal(key + 18, key2 + 18, 43);
    free(key2);
    free(key);
}

static void test_scopes(void **state)
{
    fx_t *f = *state;
    char *key = NULL;
    auth_principal_t p;
    auth_scopes_t want = AUTH_SCOPE(PROMPT_SUBMIT) | AUTH_SCOPE(QUEUE_READ);
    assert_int_equal(auth_key_create(f->a, "alice", want, 0, "ci", &key, NULL), 0);
    assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    assert_int_equal(p.scopes, want);
    assert_true(auth_has(&p, AUTH_SCOPE(PROMPT_SUBMIT)));
    assert_false(auth_has(&p, AUTH_SCOPE(UPLOAD)));

    /* A key cannot widen its owner's role... */
    char *bad = NULL;
    ak_capture_start();
    assert_int_equal(auth_key_create(f->a, "alice", AUTH_SCOPE(ADMIN_USERS), 0, NULL, &bad, NULL),
                     BASE_E_INVAL);
    assert_int_equal(auth_key_create(f->a, "alice", (auth_scopes_t)1 << 63, 0, NULL, &bad, NULL),
                     BASE_E_INVAL);
    ak_capture_stop();
    assert_null(bad);
    assert_non_null(strstr(ak_logged, "may only carry scopes of the role 'user'"));

    /* ...and when the role shrinks, the key shrinks with it: role scopes ∩ key scopes. */
    assert_int_equal(auth_user_set_role(f->a, "alice", AUTH_ROLE_VIEWER), 0);
    assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    assert_int_equal(p.scopes, AUTH_SCOPE(QUEUE_READ));
    assert_int_equal(p.role, AUTH_ROLE_VIEWER);
    free(key);

    /* An admin's key may carry admin scopes only. */
    assert_int_equal(auth_key_create(f->a, "bob", AUTH_SCOPE(ADMIN_KEYS), 0, NULL, &key, NULL), 0);
    assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    assert_int_equal(p.scopes, AUTH_SCOPE(ADMIN_KEYS));
    assert_false(auth_has(&p, AUTH_SCOPE(ADMIN_USERS)));
    free(key);
}

static void test_create_errors(void **state)
{
    fx_t *f = *state;
    char *key = NULL, id[32] = "x";
    ak_capture_start();
    assert_int_equal(auth_key_create(f->a, "nobody", 0, 0, NULL, &key, id), BASE_E_NOENT);
    assert_int_equal(auth_key_create(f->a, NULL, 0, 0, NULL, &key, id), BASE_E_NOENT);
    assert_int_equal(auth_key_create(f->a, "alice", 0, -5, NULL, &key, id), BASE_E_INVAL);
    assert_int_equal(auth_key_create(f->a, "alice", 0, (int64_t)ak_wall() - 10, NULL, &key, id),
                     BASE_E_INVAL);
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, "tab\there", &key, id), BASE_E_INVAL);
    char long_label[200];
    memset(long_label, 'l', 199);
    long_label[199] = '\0';
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, long_label, &key, id), BASE_E_INVAL);
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, NULL, NULL, id), BASE_E_INVAL);
    assert_int_equal(auth_user_set_disabled(f->a, "alice", true), 0);
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, NULL, &key, id), BASE_E_INVAL);
    ak_capture_stop();
    assert_null(key);
    assert_string_equal(id, "");
    json_t *list = auth_key_list(f->a, NULL);
    assert_int_equal(json_len(list), 0);
    json_free(list);
}

/* Flips s[i] to another character of the same alphabet. */
static void flip(char *s, size_t i)
{
    s[i] = s[i] == 'a' ? 'b' : 'a';
}

static void test_invalid(void **state)
{
    fx_t *f = *state;
    char *key = NULL, id[32];
    auth_principal_t p;
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, NULL, &key, id), 0);
    char k[128];

    /* Wrong secret (also after the right one is cached). */
    for (int round = 0; round < 2; round++) {
        snprintf(k, sizeof k, "%s", key);
        flip(k, 30);
        memset(&p, 0x55, sizeof p);
        assert_int_equal(auth_verify_key(f->a, k, &p), BASE_E_AUTH_INVALID);
        assert_int_equal(p.via, AUTH_VIA_NONE);
        assert_int_equal(p.scopes, 0);
        assert_string_equal(p.user, "");
        assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    }
    /* Unknown id with the right secret. */
    snprintf(k, sizeof k, "%s", key);
    flip(k, 8);
    assert_int_equal(auth_verify_key(f->a, k, &p), BASE_E_AUTH_INVALID);
    assert_int_equal(auth_verify_key(f->a, NULL, &p), BASE_E_AUTH_INVALID);
    assert_int_equal(auth_verify_key(f->a, key, NULL), BASE_E_INVAL);
    assert_int_equal(auth_verify_key(NULL, key, &p), BASE_E_AUTH_INVALID);

    /* Malformed strings: each a near miss of a real key. */
    char m[24][4200];
    int n = 0;
    snprintf(m[n++], sizeof m[0], "%s", "");
    snprintf(m[n++], sizeof m[0], "%s", "weft_");
    snprintf(m[n++], sizeof m[0], "%s", "weft");
    snprintf(m[n++], sizeof m[0], "Weft_%s", key + 5); /* prefix case */
    snprintf(m[n++], sizeof m[0], "weff_%s", key + 5); /* prefix */
    snprintf(m[n++], sizeof m[0], "Bearer %s", key);   /* header leftovers */
    snprintf(m[n++], sizeof m[0], " %s", key);         /* leading space */
    snprintf(m[n++], sizeof m[0], "%s\n", key);        /* trailing newline */
    snprintf(m[n++], sizeof m[0], "%s=", key);         /* padding */
    snprintf(m[n++], sizeof m[0], "%s", key);
    m[n - 1][60] = '\0';                                          /* secret one short */
    snprintf(m[n++], sizeof m[0], "%sA", key);                    /* secret one long */
    snprintf(m[n++], sizeof m[0], "weft_%.11s_%s", id, key + 18); /* id one short */
    snprintf(m[n++], sizeof m[0], "weft_%sa_%s", id, key + 18);   /* id one long */
    snprintf(m[n++], sizeof m[0], "%s", key);
    m[n - 1][6] = 'A'; /* id upper case */
    snprintf(m[n++], sizeof m[0], "%s", key);
    m[n - 1][6] = '0'; /* id digit outside base32 */
    snprintf(m[n++], sizeof m[0], "%s", key);
    m[n - 1][17] = '-'; /* separator */
    snprintf(m[n++], sizeof m[0], "%s", key);
    m[n - 1][40] = '+'; /* standard base64 */
    snprintf(m[n++], sizeof m[0], "%s", key);
    m[n - 1][40] = '/';
    snprintf(m[n++], sizeof m[0], "%s", key);
    m[n - 1][40] = '\xc3'; /* non-ASCII */
    snprintf(m[n++], sizeof m[0], "%s", key);
    /* Spare bits set in the last character: the same bytes spelled differently. */
    m[n - 1][60] = m[n - 1][60] == 'B' ? 'C' : 'B';
    snprintf(m[n++], sizeof m[0], "%s", key);
    memcpy(m[n - 1], "weft_", 5);
    memmove(m[n - 1] + 5, key + 18, 43); /* secret without id */
    m[n - 1][48] = '\0';
    memset(m[n], 'a', 4100); /* huge */
    m[n++][4100] = '\0';
    snprintf(m[n++], sizeof m[0], "%s", "weft_abcdefghijkl_");
    assert_true(n >= 15);
    for (int i = 0; i < n; i++) {
        int rc = auth_verify_key(f->a, m[i], &p);
        if (rc != BASE_E_AUTH_INVALID)
            fail_msg("malformed key #%d was not refused (%d)", i, rc);
        assert_int_equal(p.via, AUTH_VIA_NONE);
    }
    /* The real key still works: nothing above poisoned the cache. */
    assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    free(key);
}

static void test_revoke(void **state)
{
    fx_t *f = *state;
    char *key = NULL, *other = NULL, id[32], oid[32];
    auth_principal_t p;
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, NULL, &key, id), 0);
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, NULL, &other, oid), 0);
    assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    assert_int_equal(auth_verify_key(f->a, key, &p), 0); /* served from the cache */
    assert_int_equal(auth_key_revoke(f->a, id), 0);
    /* The very next verification fails although the key was cached. */
    assert_int_equal(auth_verify_key(f->a, key, &p), BASE_E_AUTH_INVALID);
    assert_int_equal(auth_verify_key(f->a, other, &p), 0);
    assert_int_equal(auth_key_revoke(f->a, id), 0); /* idempotent */
    assert_int_equal(auth_key_revoke(f->a, "aaaaaaaaaaaa"), BASE_E_NOENT);
    assert_int_equal(auth_key_revoke(f->a, "'; DROP TABLE api_keys; --"), BASE_E_NOENT);
    assert_int_equal(auth_key_revoke(f->a, NULL), BASE_E_NOENT);
    json_t *list = auth_key_list(f->a, "alice");
    assert_true(json_object_get(find_key(list, id), "revoked")->u.b);
    assert_false(json_object_get(find_key(list, oid), "revoked")->u.b);
    json_free(list);
    free(key);
    free(other);
}

/* A second process (the CLI) revokes, demotes or disables: the server's cached key notices on
 * its next verification. */
static void test_other_connection(void **state)
{
    fx_t *f = *state;
    auth_t *cli = ak_open(f->path, NULL);
    char *k1 = NULL, *k2 = NULL, id1[32];
    auth_principal_t p;
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, NULL, &k1, id1), 0);
    assert_int_equal(auth_key_create(f->a, "bob", 0, 0, NULL, &k2, NULL), 0);
    assert_int_equal(auth_verify_key(f->a, k1, &p), 0);
    assert_int_equal(auth_verify_key(f->a, k2, &p), 0);
    assert_int_equal(auth_verify_key(f->a, k2, &p), 0);

    assert_int_equal(auth_key_revoke(cli, id1), 0);
    assert_int_equal(auth_verify_key(f->a, k1, &p), BASE_E_AUTH_INVALID);
    assert_int_equal(auth_verify_key(f->a, k2, &p), 0);
    assert_int_equal(p.role, AUTH_ROLE_ADMIN);

    assert_int_equal(auth_user_set_role(cli, "bob", AUTH_ROLE_VIEWER), 0);
    assert_int_equal(auth_verify_key(f->a, k2, &p), 0);
    assert_int_equal(p.role, AUTH_ROLE_VIEWER);
    assert_int_equal(p.scopes, auth_role_scopes(AUTH_ROLE_VIEWER));

    assert_int_equal(auth_user_set_disabled(cli, "bob", true), 0);
    assert_int_equal(auth_verify_key(f->a, k2, &p), BASE_E_AUTH_INVALID);
    auth_close(cli);
    free(k1);
    free(k2);
}

static void test_expired(void **state)
{
    fx_t *f = *state;
    char *key = NULL, id[32];
    auth_principal_t p;
    double t0 = ak_wall();
    int64_t expires = (int64_t)t0 + 100;
    assert_int_equal(auth_key_create(f->a, "alice", 0, expires, NULL, &key, id), 0);
    f->a->now_override = t0;
    assert_int_equal(auth_verify_key(f->a, key, &p), 0); /* cached from here on */
    f->a->now_override = (double)expires - 0.5;
    assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    /* The cache entry never outlives the key. */
    f->a->now_override = (double)expires;
    assert_int_equal(auth_verify_key(f->a, key, &p), BASE_E_AUTH_INVALID);
    f->a->now_override = (double)expires + 3600;
    assert_int_equal(auth_verify_key(f->a, key, &p), BASE_E_AUTH_INVALID);
    json_t *list = auth_key_list(f->a, NULL);
    int64_t v = 0;
    assert_true(json_get_i64(json_object_get(find_key(list, id), "expires"), &v));
    assert_int_equal(v, expires);
    json_free(list);
    free(key);
}

static void test_disabled_owner(void **state)
{
    fx_t *f = *state;
    char *key = NULL;
    auth_principal_t p;
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, NULL, &key, NULL), 0);
    assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    assert_int_equal(auth_user_set_disabled(f->a, "alice", true), 0);
    assert_int_equal(auth_verify_key(f->a, key, &p), BASE_E_AUTH_INVALID);
    assert_int_equal(auth_verify_key(f->a, key, &p), BASE_E_AUTH_INVALID);
    free(key);
}

/* A password change of the owner also forgets the cached key (it is re-verified). */
static void test_cache_cleared_on_passwd(void **state)
{
    fx_t *f = *state;
    char *key = NULL, id[32];
    auth_principal_t p;
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, NULL, &key, id), 0);
    assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    /* Break the stored hash behind the cache's back: a cached key still verifies... */
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE api_keys SET hash = '$argon2id$broken' WHERE id = '%s'", id);
    assert_int_equal(ak_sql(f->path, sql), SQLITE_OK);
    assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    /* ...until something clears the cache; then the database decides. */
    assert_int_equal(auth_user_set_password(f->a, "alice", "another password"), 0);
    assert_int_equal(auth_verify_key(f->a, key, &p), BASE_E_AUTH_INVALID);
    free(key);
}

static void test_cache_speed(void **state)
{
    /* Real argon2 cost here, so "cached" and "argon2 ran" are far apart. */
    char *path = ak_db_path("keys-speed");
    auth_config_t c;
    auth_config_init(&c);
    auth_t *a = ak_open(path, &c);
    assert_int_equal(auth_user_add(a, "alice", PW, AUTH_ROLE_USER, NULL), 0);
    char *key = NULL;
    auth_principal_t p;
    assert_int_equal(auth_key_create(a, "alice", 0, 0, NULL, &key, NULL), 0);
    double t0 = ak_mono();
    assert_int_equal(auth_verify_key(a, key, &p), 0);
    double first = ak_mono() - t0;
    t0 = ak_mono();
    for (int i = 0; i < 1000; i++)
        assert_int_equal(auth_verify_key(a, key, &p), 0);
    double cached = ak_mono() - t0;
    assert_string_equal(p.user, "alice");
    print_message("1000 cached verifications: %.2f ms; one argon2 verification: %.2f ms\n", cached * 1e3,
                  first * 1e3);
    if (!(cached < 0.050 && cached < first))
        fail_msg("1000 cached verifications took %.1f ms, one argon2 verification %.1f ms", cached * 1e3,
                 first * 1e3);

    /* A failed verification costs about one argon2 whether or not the id exists. */
    char bad_secret[64], bad_id[64];
    snprintf(bad_secret, sizeof bad_secret, "%s", key);
    flip(bad_secret, 40);
    snprintf(bad_id, sizeof bad_id, "%s", key);
    flip(bad_id, 8);
    double best_secret = 1e9, best_id = 1e9;
    for (int i = 0; i < 3; i++) {
        t0 = ak_mono();
        assert_int_equal(auth_verify_key(a, bad_secret, &p), BASE_E_AUTH_INVALID);
        double d = ak_mono() - t0;
        best_secret = d < best_secret ? d : best_secret;
        t0 = ak_mono();
        assert_int_equal(auth_verify_key(a, bad_id, &p), BASE_E_AUTH_INVALID);
        d = ak_mono() - t0;
        best_id = d < best_id ? d : best_id;
    }
    print_message("failed verification: unknown id %.2f ms, wrong secret %.2f ms\n", best_id * 1e3,
                  best_secret * 1e3);
    if (!(best_id > 0.3 * best_secret && best_secret > 0.3 * best_id))
        fail_msg("unknown id %.2f ms vs wrong secret %.2f ms", best_id * 1e3, best_secret * 1e3);
    free(key);
    auth_close(a);
    free(path);
}

static void test_last_used(void **state)
{
    fx_t *f = *state;
    char *key = NULL, id[32];
    auth_principal_t p;
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, NULL, &key, id), 0);
    json_t *list = auth_key_list(f->a, "alice");
    assert_int_equal(json_object_get(find_key(list, id), "last_used")->type, JSON_NULL);
    json_free(list);

    double t0 = 1900000000.0;
    int64_t v = 0;
    f->a->now_override = t0;
    assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    list = auth_key_list(f->a, "alice");
    assert_true(json_get_i64(json_object_get(find_key(list, id), "last_used"), &v));
    assert_int_equal(v, (int64_t)t0);
    json_free(list);
    /* Within a minute: served without a write. */
    f->a->now_override = t0 + 59;
    assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    list = auth_key_list(f->a, "alice");
    assert_true(json_get_i64(json_object_get(find_key(list, id), "last_used"), &v));
    assert_int_equal(v, (int64_t)t0);
    json_free(list);
    /* A minute later: written again (still from the cache). */
    f->a->now_override = t0 + 61;
    assert_int_equal(auth_verify_key(f->a, key, &p), 0);
    list = auth_key_list(f->a, "alice");
    assert_true(json_get_i64(json_object_get(find_key(list, id), "last_used"), &v));
    assert_int_equal(v, (int64_t)t0 + 61);
    json_free(list);
    free(key);
}

static void test_list(void **state)
{
    fx_t *f = *state;
    char *k1 = NULL, *k2 = NULL, *k3 = NULL, id1[32], id2[32], id3[32];
    assert_int_equal(auth_key_create(f->a, "alice", 0, 0, "laptop", &k1, id1), 0);
    assert_int_equal(
        auth_key_create(f->a, "alice", AUTH_SCOPE(QUEUE_READ) | AUTH_SCOPE(HISTORY_READ), 0, "ro", &k2, id2),
        0);
    assert_int_equal(auth_key_create(f->a, "bob", 0, 0, "admin", &k3, id3), 0);

    json_t *all = auth_key_list(f->a, NULL);
    assert_int_equal(json_len(all), 3);
    json_t *alice = auth_key_list(f->a, "alice");
    assert_int_equal(json_len(alice), 2);
    json_t *none = auth_key_list(f->a, "nobody");
    assert_non_null(none);
    assert_int_equal(json_len(none), 0);

    json_t *e = find_key(alice, id2);
    assert_non_null(e);
    assert_string_equal(json_str(json_object_get(e, "user")), "alice");
    assert_string_equal(json_str(json_object_get(e, "label")), "ro");
    char *scopes = json_dump(json_object_get(e, "scopes"), JSON_COMPACT);
    assert_string_equal(scopes, "[\"queue:read\",\"history:read\"]");
    free(scopes);
    int64_t created = 0;
    assert_true(json_get_i64(json_object_get(e, "created"), &created));
    assert_true(llabs(created - (int64_t)ak_wall()) <= 2);
    assert_int_equal(json_object_get(e, "expires")->type, JSON_NULL);
    assert_int_equal(json_object_get(e, "revoked")->type, JSON_BOOL);
    /* A key with scopes 0 lists its role's scopes. */
    json_t *e1 = find_key(alice, id1);
    json_t *role = auth_scopes_json(auth_role_scopes(AUTH_ROLE_USER));
    assert_true(json_equal(json_object_get(e1, "scopes"), role));
    json_free(role);
    assert_string_equal(json_str(json_object_get(find_key(all, id3), "user")), "bob");

    /* No secret anywhere in the listing. */
    char *text = json_dump(all, JSON_COMPACT);
    assert_null(strstr(text, k1 + 18));
    assert_null(strstr(text, k2 + 18));
    assert_null(strstr(text, k3 + 18));
    assert_null(strstr(text, "argon2"));
    free(text);
    json_free(all);
    json_free(alice);
    json_free(none);
    free(k1);
    free(k2);
    free(k3);
}

static void test_no_secret_in_db(void **state)
{
    fx_t *f = *state;
    char *keys[4];
    auth_principal_t p;
    ak_capture_start();
    for (int i = 0; i < 4; i++) {
        assert_int_equal(auth_key_create(f->a, i % 2 ? "alice" : "bob", 0, 0, "k", &keys[i], NULL), 0);
        assert_int_equal(auth_verify_key(f->a, keys[i], &p), 0);
    }
    char wrong[64];
    snprintf(wrong, sizeof wrong, "%s", keys[0]);
    flip(wrong, 50);
    assert_int_equal(auth_verify_key(f->a, wrong, &p), BASE_E_AUTH_INVALID);
    ak_capture_stop();
    auth_close(f->a);
    f->a = NULL;
    for (int i = 0; i < 4; i++) {
        assert_false(ak_file_contains(f->path, keys[i] + 18)); /* the secret */
        assert_false(ak_file_contains(f->path, keys[i]));
        assert_null(strstr(ak_logged, keys[i] + 18));
        free(keys[i]);
    }
    assert_null(strstr(ak_logged, wrong + 18));
    f->a = ak_open(f->path, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scopes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disabled_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_cleared_on_passwd, setup, teardown),
        cmocka_unit_test(test_cache_speed),
        cmocka_unit_test_setup_teardown(test_last_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_secret_in_db, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
