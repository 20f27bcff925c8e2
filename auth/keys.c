/* API keys: "weft_<id>_<secret>". The id (12 base32 characters) is public: it names the key in
 * lists, logs and the audit log. The secret (32 random bytes, base64url) exists only in the
 * string handed to the caller once; the database keeps an argon2id hash of it.
 *
 * Verification order: strict parse (cheap rejection of anything that is not a key), the
 * verified-key cache, then the row and argon2id. A wrong secret, an unknown id, a revoked or
 * expired key and a disabled owner all run argon2 once and give BASE_E_AUTH_INVALID, so
 * neither the answer nor its timing says which. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_internal.h"
#include "log.h"

#define KEY_PREFIX "weft_"
#define KEY_PREFIX_LEN 5
#define KEY_ID_LEN 12
#define KEY_SECRET_BYTES 32
#define KEY_SECRET_LEN 43 /* unpadded base64url of 32 bytes */
#define KEY_LEN (KEY_PREFIX_LEN + KEY_ID_LEN + 1 + KEY_SECRET_LEN)
#define KEY_LABEL_MAX 128
/* last_used is written at most this often per key, so a busy key costs no write per request. */
#define KEY_TOUCH_EVERY_S 60.0

static const char id_chars[] = "abcdefghijklmnopqrstuvwxyz234567";

static bool id_ok(const char *id, size_t len)
{
    if (len != KEY_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!memchr(id_chars, id[i], 32) || id[i] == '\0')
            return false;
    return true;
}

static int make_id(char id[KEY_ID_LEN + 1])
{
    unsigned char raw[8];
    int rc = auth__random(raw, sizeof raw);
    if (rc)
        return rc;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | raw[i];
    for (int i = 0; i < KEY_ID_LEN; i++, v >>= 5)
        id[i] = id_chars[v & 31];
    id[KEY_ID_LEN] = '\0';
    return 0;
}

/* "a,b,c" scope names of s ("" for none), into a buffer big enough for every scope. */
static void scopes_text(auth_scopes_t s, char *buf, size_t bufsz)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int b = 0; b < AUTH_SCOPE_COUNT; b++)
        if (s & ((auth_scopes_t)1 << b))
            used += (size_t)snprintf(buf + used, used < bufsz ? bufsz - used : 0, "%s%s", used ? "," : "",
                                     auth_scope_name((auth_scope_bit_t)b));
}

static int check_label(const char *label)
{
    size_t n = strnlen(label, KEY_LABEL_MAX + 1);
    bool ok = n <= KEY_LABEL_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)label[i] >= 0x20 && label[i] != 0x7f;
    if (ok)
        return 0;
    BASE_LOG(WARN, "auth: a key label is at most %d characters, without control characters", KEY_LABEL_MAX);
    return BASE_E_INVAL;
}

static int insert_key(auth_t *a, const char *id, int64_t user_id, const char *label, const char *scopes,
                      const char *hash, int64_t created, int64_t expires, bool *collided)
{
    sqlite3_stmt *s = a->stmt[AUTH__KEY_ADD];
    int rc = 0;
    *collided = false;
    if (sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(s, 2, user_id) != SQLITE_OK ||
        sqlite3_bind_text(s, 3, label, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(s, 4, scopes, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(s, 5, hash, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(s, 6, created) != SQLITE_OK || sqlite3_bind_int64(s, 7, expires) != SQLITE_OK) {
        rc = auth__fail(a, "bind");
    } else if (sqlite3_step(s) != SQLITE_DONE) {
        if (sqlite3_extended_errcode(a->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
            *collided = true;
        else
            rc = auth__fail(a, "cannot store a key");
    }
    auth__done(s);
    return rc;
}

int auth_key_create(auth_t *a, const char *user, auth_scopes_t scopes, int64_t expires_s, const char *label,
                    char **key_out, char key_id[32])
{
    if (!a || !key_out)
        return BASE_E_INVAL;
    *key_out = NULL;
    if (key_id)
        key_id[0] = '\0';
    if (!label)
        label = "";
    int rc = check_label(label);
    if (rc)
        return rc;
    double now = auth__now(a);
    if (expires_s < 0 || (expires_s != 0 && (double)expires_s <= now)) {
        BASE_LOG(WARN, "auth: a key's expiry must be in the future (unix seconds), or 0 for never");
        return BASE_E_INVAL;
    }
    if (scopes >> AUTH_SCOPE_COUNT) {
        BASE_LOG(WARN, "auth: unknown scope bits in a new key");
        return BASE_E_INVAL;
    }
    auth__user_t u;
    if ((rc = auth__user_get(a, user, &u)))
        return rc;
    char *secret = NULL, *hash = NULL, *key = NULL;
    if (u.disabled) {
        BASE_LOG(WARN, "auth: user '%s' is disabled; enable it before creating keys", u.name);
        rc = BASE_E_INVAL;
        goto out;
    }
    /* A key narrows its owner's role, never widens it. */
    if (scopes & ~auth_role_scopes(u.role)) {
        BASE_LOG(WARN, "auth: a key of user '%s' may only carry scopes of the role '%s'", u.name,
                 auth_role_name(u.role));
        rc = BASE_E_INVAL;
        goto out;
    }
    char stext[1024];
    scopes_text(scopes, stext, sizeof stext);
    rc = BASE_E_NOMEM;
    if (!(secret = auth__random_b64url(KEY_SECRET_BYTES)) || !(key = malloc(KEY_LEN + 1)))
        goto out;
    if ((rc = auth__hash_secret(a, secret, &hash)))
        goto out;
    char id[KEY_ID_LEN + 1];
    /* 60 random bits make a collision practically impossible; retrying costs nothing. */
    bool collided = true;
    for (int attempt = 0; collided && attempt < 4; attempt++) {
        if ((rc = make_id(id)) ||
            (rc = insert_key(a, id, u.id, label, stext, hash, (int64_t)now, expires_s, &collided)))
            goto out;
    }
    if (collided) {
        rc = BASE_E_IO;
        goto out;
    }
    snprintf(key, KEY_LEN + 1, KEY_PREFIX "%s_%s", id, secret);
    if (key_id)
        snprintf(key_id, 32, "%s", id);
    *key_out = key;
    key = NULL;
out:
    if (secret)
        OPENSSL_cleanse(secret, strlen(secret));
    free(secret);
    free(key);
    free(hash);
    auth__user_clear(&u);
    return rc;
}

int auth_key_revoke(auth_t *a, const char *key_id)
{
    if (!a)
        return BASE_E_INVAL;
    if (!key_id || !id_ok(key_id, strnlen(key_id, KEY_ID_LEN + 1)))
        return BASE_E_NOENT;
    int rc = auth__tx_begin(a);
    if (rc)
        return rc;
    sqlite3_stmt *s = a->stmt[AUTH__KEY_REVOKE];
    if (sqlite3_bind_text(s, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK || sqlite3_step(s) != SQLITE_DONE)
        rc = auth__fail(a, "cannot revoke a key");
    else if (sqlite3_changes(a->db) == 0)
        rc = BASE_E_NOENT;
    auth__done(s);
    if (!rc)
        rc = auth__kc_bump(a);
    rc = auth__tx_end(a, rc);
    /* The cache is keyed by digests, not ids: forget everything so the revoked key's next
     * request goes to the database. */
    if (!rc)
        auth__kc_clear(a);
    return rc;
}

int auth_key_owner(auth_t *a, const char *key_id, char user[64])
{
    if (!a || !user)
        return BASE_E_INVAL;
    user[0] = '\0';
    if (!key_id || !id_ok(key_id, strnlen(key_id, KEY_ID_LEN + 1)))
        return BASE_E_NOENT;
    sqlite3_stmt *s = a->stmt[AUTH__KEY_OWNER];
    int rc;
    if (sqlite3_bind_text(s, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK) {
        rc = auth__fail(a, "bind");
    } else {
        int src = sqlite3_step(s);
        if (src == SQLITE_ROW) {
            auth__col_text(s, 0, user, 64);
            rc = 0;
        } else {
            rc = src == SQLITE_DONE ? BASE_E_NOENT : auth__fail(a, "cannot read a key");
        }
    }
    auth__done(s);
    return rc;
}

/* A stored scope list; a name this weft does not know makes the key unusable (logged). */
static int scopes_col(auth_t *a, const char *text, auth_scopes_t *out)
{
    char err[128];
    if (auth_scopes_parse(text, out, err, sizeof err) == 0)
        return 0;
    BASE_LOG(ERROR, "auth %s: a stored key has %s; the key is refused", a->path, err);
    return BASE_E_IO;
}

static json_t *key_row_json(auth_t *a, sqlite3_stmt *s)
{
    auth_scopes_t ks = 0;
    auth_role_t role;
    const char *stext = (const char *)sqlite3_column_text(s, 3);
    json_t *scopes = NULL;
    if (auth__role_col(a, s, 4, &role) == 0 && scopes_col(a, stext, &ks) == 0)
        scopes = auth_scopes_json(ks ? ks & auth_role_scopes(role) : auth_role_scopes(role));
    else
        scopes = json_new_array(); /* a damaged row grants nothing */
    const char *id = (const char *)sqlite3_column_text(s, 0);
    const char *user = (const char *)sqlite3_column_text(s, 1);
    const char *label = (const char *)sqlite3_column_text(s, 2);
    int64_t expires = sqlite3_column_int64(s, 6), last_used = sqlite3_column_int64(s, 7);
    json_t *o = json_new_object();
    if (!o || json_object_set(o, "id", json_new_string(id ? id : "")) ||
        json_object_set(o, "user", json_new_string(user ? user : "")) ||
        json_object_set(o, "label", json_new_string(label ? label : ""))) {
        json_free(scopes); /* not inserted yet */
        json_free(o);
        return NULL;
    }
    if (json_object_set(o, "scopes", scopes) ||
        json_object_set(o, "created", json_new_int(sqlite3_column_int64(s, 5))) ||
        json_object_set(o, "expires", expires ? json_new_int(expires) : json_new_null()) ||
        json_object_set(o, "last_used", last_used ? json_new_int(last_used) : json_new_null()) ||
        json_object_set(o, "revoked", json_new_bool(sqlite3_column_int(s, 8) != 0))) {
        json_free(o);
        return NULL;
    }
    return o;
}

json_t *auth_key_list(auth_t *a, const char *user)
{
    if (!a)
        return NULL;
    sqlite3_stmt *s = a->stmt[AUTH__KEY_LIST];
    json_t *arr = NULL;
    if ((user ? sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC) : sqlite3_bind_null(s, 1)) != SQLITE_OK) {
        auth__fail(a, "bind");
        goto out;
    }
    arr = json_new_array();
    int src = SQLITE_DONE;
    while (arr && (src = sqlite3_step(s)) == SQLITE_ROW)
        arr = auth__push_or_drop(arr, key_row_json(a, s));
    if (arr && src != SQLITE_DONE) {
        auth__fail(a, "cannot list keys");
        json_free(arr);
        arr = NULL;
    }
out:
    auth__done(s);
    return arr;
}

/* Writes last_used when the last write is a minute old. A failure only costs the figure. */
static void touch(auth_t *a, const char *id, double now, double *touched)
{
    if (now - *touched < KEY_TOUCH_EVERY_S)
        return;
    sqlite3_stmt *s = a->stmt[AUTH__KEY_TOUCH];
    if (sqlite3_bind_int64(s, 1, (int64_t)now) != SQLITE_OK ||
        sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC) != SQLITE_OK || sqlite3_step(s) != SQLITE_DONE)
        auth__fail(a, "cannot record a key's last use");
    else
        *touched = now;
    auth__done(s);
}

typedef struct {
    bool found, revoked, disabled;
    char *hash;
    char scopes[1024];
    int64_t expires, last_used, user_id;
    char user[64];
    char role[16];
} key_row_t;

static int read_key(auth_t *a, const char *id, key_row_t *r)
{
    sqlite3_stmt *s = a->stmt[AUTH__KEY_GET];
    int rc = 0;
    if (sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC) != SQLITE_OK) {
        rc = auth__fail(a, "bind");
        goto out;
    }
    int src = sqlite3_step(s);
    if (src == SQLITE_DONE)
        goto out;
    if (src != SQLITE_ROW) {
        rc = auth__fail(a, "cannot read a key");
        goto out;
    }
    const char *h = (const char *)sqlite3_column_text(s, 0);
    if (!(r->hash = strdup(h ? h : ""))) {
        rc = BASE_E_NOMEM;
        goto out;
    }
    r->found = true;
    auth__col_text(s, 1, r->scopes, sizeof r->scopes);
    r->expires = sqlite3_column_int64(s, 2);
    r->revoked = sqlite3_column_int(s, 3) != 0;
    r->last_used = sqlite3_column_int64(s, 4);
    r->user_id = sqlite3_column_int64(s, 5);
    auth__col_text(s, 6, r->user, sizeof r->user);
    auth__col_text(s, 7, r->role, sizeof r->role);
    r->disabled = sqlite3_column_int(s, 8) != 0;
out:
    /* Reset before argon2 runs, so the read transaction does not outlive the lookup. */
    auth__done(s);
    return rc;
}

int auth_verify_key(auth_t *a, const char *key, auth_principal_t *p)
{
    if (!p)
        return BASE_E_INVAL;
    memset(p, 0, sizeof *p);
    if (!a || !key || strnlen(key, KEY_LEN + 1) != KEY_LEN || memcmp(key, KEY_PREFIX, KEY_PREFIX_LEN) != 0 ||
        !id_ok(key + KEY_PREFIX_LEN, KEY_ID_LEN) || key[KEY_PREFIX_LEN + KEY_ID_LEN] != '_' ||
        !auth__b64url_canonical(key + KEY_PREFIX_LEN + KEY_ID_LEN + 1, KEY_SECRET_BYTES))
        return BASE_E_AUTH_INVALID;
    double now = auth__now(a);
    unsigned char digest[32];
    auth__sha256(key, KEY_LEN, digest);
    char id[KEY_ID_LEN + 1];
    memcpy(id, key + KEY_PREFIX_LEN, KEY_ID_LEN);
    id[KEY_ID_LEN] = '\0';
    auth__kc_sync(a);
    auth__kc_entry_t *hit = NULL;
    if (auth__kc_get(a, digest, now, &hit)) {
        *p = hit->p;
        touch(a, id, now, &hit->touched);
        return 0;
    }

    key_row_t r = {0};
    int rc = read_key(a, id, &r);
    if (rc) { /* the server's fault, not the client's: a 500, not a 401 */
        free(r.hash);
        return rc;
    }
    bool ok = auth__verify_secret(a, r.found ? r.hash : NULL, key + KEY_PREFIX_LEN + KEY_ID_LEN + 1);
    free(r.hash);
    const char *why = !r.found                                  ? "unknown id"
                      : !ok                                     ? "wrong secret"
                      : r.revoked                               ? "revoked"
                      : r.disabled                              ? "owner disabled"
                      : (r.expires && now >= (double)r.expires) ? "expired"
                                                                : NULL;
    auth_role_t role = AUTH_ROLE_VIEWER;
    auth_scopes_t ks = 0;
    if (!why && (auth_role_from_name(r.role, &role) || scopes_col(a, r.scopes, &ks)))
        why = "damaged row";
    if (why) {
        BASE_LOG(DEBUG, "auth: key %s refused (%s)", id, why);
        return BASE_E_AUTH_INVALID;
    }
    p->user_id = r.user_id;
    snprintf(p->user, sizeof p->user, "%s", r.user);
    p->role = role;
    p->scopes = ks ? ks & auth_role_scopes(role) : auth_role_scopes(role);
    p->via = AUTH_VIA_KEY;
    snprintf(p->key_id, sizeof p->key_id, "%s", id);
    double touched = (double)r.last_used;
    touch(a, id, now, &touched);
    double until = now + a->cfg.key_cache_ttl_s;
    if (r.expires && (double)r.expires < until)
        until = (double)r.expires;
    auth__kc_put(a, digest, p, until, touched);
    return 0;
}
