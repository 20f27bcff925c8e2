/* `weft keys|users|audit|routes`: managing principals from the shell, on the same weft.db a
 * running server uses. Changes are audited (who "cli"). A running server sees them at its next
 * request: revoking or disabling bumps a state counter in the database that drops the
 * server's verified-key cache (whose entries otherwise live key_cache_ttl_s, 60 s); its open
 * WebSockets are re-verified every 2 s and closed (1008) once their credential fails. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app_internal.h"
#include "srv_auth.h"

#define CLI_MAX_ARGS 8
#define CLI_PASSWORD_MAX 1024

typedef struct {
    const char *base_dir, *user, *scopes, *expires_in, *label, *role, *limit, *before;
    bool password_stdin, json, help;
    const char *pos[CLI_MAX_ARGS]; /* positional arguments after the subcommand */
    int n_pos;
} cli_args_t;

static void usage_keys(FILE *f)
{
    fputs("usage: weft keys create --user NAME [--scopes a,b] [--expires-in SECONDS] [--label L]\n"
          "       weft keys list [--user NAME] [--json]\n"
          "       weft keys revoke ID\n"
          "\n"
          "  create prints the key once on stdout (it is stored hashed and cannot be shown again).\n"
          "  All take --base-dir DIR (default weft-data). A running server refuses a key revoked\n"
          "  here from its next request on, and closes WebSockets opened with it within 2 s.\n",
          f);
}

static void usage_users(FILE *f)
{
    fputs("usage: weft users add NAME [--role ROLE] [--password-stdin]\n"
          "       weft users list [--json]\n"
          "       weft users disable NAME | enable NAME\n"
          "       weft users passwd NAME --password-stdin\n"
          "       weft users role NAME ROLE\n"
          "\n"
          "  ROLE is admin, editor, user (default) or viewer. Without --password-stdin, add prints\n"
          "  a generated password once. All take --base-dir DIR (default weft-data).\n",
          f);
}

/* "--name value" or "--name=value". */
static bool opt(int argc, char **argv, int *i, const char *name, const char **out, const char *cmd)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n))
        return false;
    if (a[n] == '=') {
        *out = a + n + 1;
        return true;
    }
    if (a[n])
        return false;
    if (*i + 1 >= argc) {
        fprintf(stderr, "weft %s: %s needs a value\n", cmd, name);
        *out = NULL;
        return true;
    }
    *out = argv[++*i];
    return true;
}

/* 0, or 2 after printing what is wrong. */
static int parse_args(int argc, char **argv, int first, const char *cmd, cli_args_t *a)
{
    memset(a, 0, sizeof *a);
    a->base_dir = "weft-data";
    for (int i = first; i < argc; i++) {
        const char *s = argv[i], **slot = NULL, *v = NULL;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            a->help = true;
            continue;
        }
        if (!strcmp(s, "--password-stdin")) {
            a->password_stdin = true;
            continue;
        }
        if (!strcmp(s, "--json")) {
            a->json = true;
            continue;
        }
        static const char *const names[] = {"--base-dir", "--user",  "--scopes", "--expires-in",
                                            "--label",    "--role",  "--limit",  "--before"};
        const char **slots[] = {&a->base_dir, &a->user, &a->scopes, &a->expires_in,
                                &a->label,    &a->role, &a->limit,  &a->before};
        for (size_t k = 0; k < sizeof names / sizeof names[0] && !slot; k++)
            if (opt(argc, argv, &i, names[k], &v, cmd))
                slot = slots[k];
        if (slot) {
            if (!v)
                return 2;
            *slot = v;
            continue;
        }
        if (s[0] == '-' && s[1]) {
            fprintf(stderr, "weft %s: unknown option '%s'\n", cmd, s);
            return 2;
        }
        if (a->n_pos == CLI_MAX_ARGS) {
            fprintf(stderr, "weft %s: too many arguments\n", cmd);
            return 2;
        }
        a->pos[a->n_pos++] = s;
    }
    if (!*a->base_dir) {
        fprintf(stderr, "weft %s: --base-dir needs a folder\n", cmd);
        return 2;
    }
    return 0;
}

/* Opens <base>/weft.db; `create` makes the base dir when missing (first use before any
 * `weft serve`), otherwise a missing database is an error rather than a new empty one. */
static int open_auth(const cli_args_t *a, const char *cmd, bool create, auth_t **out)
{
    base_buf_t p = BASE_BUF_INIT;
    if (base_buf_printf(&p, "%s/weft.db", a->base_dir)) {
        fprintf(stderr, "weft %s: out of memory\n", cmd);
        return 1;
    }
    struct stat st;
    int rc = 0;
    if (stat(p.data, &st) != 0) {
        if (!create) {
            fprintf(stderr, "weft %s: no database at %s (wrong --base-dir?)\n", cmd, p.data);
            base_buf_free(&p);
            return 1;
        }
        if ((rc = base_mkdir_p(a->base_dir))) {
            fprintf(stderr, "weft %s: cannot create %s: %s\n", cmd, a->base_dir, base_strerror(rc));
            base_buf_free(&p);
            return 1;
        }
    }
    auth_config_t c;
    auth_config_init(&c);
    rc = auth_open(p.data, &c, out);
    if (rc)
        fprintf(stderr, "weft %s: cannot open %s: %s\n", cmd, p.data, base_strerror(rc));
    base_buf_free(&p);
    return rc ? 1 : 0;
}

static void cli_audit(auth_t *a, const char *action, const char *target, json_t *detail)
{
    int rc = auth_audit(a, "cli", NULL, action, target, detail);
    if (rc)
        fprintf(stderr, "weft: warning: could not write the audit entry: %s\n", base_strerror(rc));
    json_free(detail);
}

/* Reads one password line from stdin (trailing newline removed). */
static int read_password(char *buf, size_t cap, const char *cmd)
{
    size_t n = fread(buf, 1, cap - 1, stdin);
    if (ferror(stdin)) {
        fprintf(stderr, "weft %s: cannot read the password from stdin\n", cmd);
        return 1;
    }
    buf[n] = '\0';
    if (n == cap - 1 && getc(stdin) != EOF) {
        fprintf(stderr, "weft %s: the password is longer than %d bytes\n", cmd, CLI_PASSWORD_MAX);
        return 1;
    }
    char *nl = memchr(buf, '\n', n);
    if (nl) {
        *nl = '\0';
        n = (size_t)(nl - buf);
    }
    if (n && buf[n - 1] == '\r')
        buf[--n] = '\0';
    if (strlen(buf) != n) {
        fprintf(stderr, "weft %s: the password contains a NUL byte\n", cmd);
        return 1;
    }
    return 0;
}

static void print_json(const json_t *j)
{
    char *s = j ? json_dump(j, JSON_COMPACT) : NULL;
    if (s)
        printf("%s\n", s);
    free(s);
}

static void fmt_time(const json_t *v, char out[32])
{
    int64_t t = 0;
    if (!json_get_i64(v, &t) || t <= 0) {
        snprintf(out, 32, "-");
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "%lld", (long long)t);
}

/* ------------------------------------------------------------------ weft keys */

static int keys_create(auth_t *au, const cli_args_t *a)
{
    if (!a->user) {
        fprintf(stderr, "weft keys create: --user NAME is required\n");
        return 2;
    }
    auth_scopes_t scopes = 0;
    char err[160] = "";
    if (a->scopes && (auth_scopes_parse(a->scopes, &scopes, err, sizeof err) || !scopes)) {
        fprintf(stderr, "weft keys create: --scopes: %s\n", err[0] ? err : "name at least one scope");
        return 2;
    }
    int64_t expires = 0;
    if (a->expires_in) {
        char *end = NULL;
        long long n = strtoll(a->expires_in, &end, 10);
        if (!*a->expires_in || *end || n < 1 || n > 10LL * 366 * 24 * 3600) {
            fprintf(stderr, "weft keys create: --expires-in needs a number of seconds (1 to ten years)\n");
            return 2;
        }
        expires = (int64_t)time(NULL) + n;
    }
    char *key = NULL, id[32] = "";
    int rc = auth_key_create(au, a->user, scopes, expires, a->label ? a->label : "", &key, id);
    if (rc == BASE_E_NOENT) {
        fprintf(stderr, "weft keys create: no user '%s'\n", a->user);
        return 1;
    }
    if (rc == BASE_E_INVAL) {
        fprintf(stderr, "weft keys create: refused: '%s' must be enabled, the scopes part of its role and the label "
                        "short\n",
                a->user);
        return 1;
    }
    if (rc) {
        fprintf(stderr, "weft keys create: %s\n", base_strerror(rc));
        return 1;
    }
    printf("%s\n", key);
    fflush(stdout);
    fprintf(stderr, "weft: created key %s for '%s' (shown once; store it now)\n", id, a->user);
    OPENSSL_cleanse(key, strlen(key));
    free(key);
    json_t *d = json_new_object();
    if (d) {
        json_object_set(d, "user", json_new_string(a->user));
        json_object_set(d, "label", json_new_string(a->label ? a->label : ""));
    }
    cli_audit(au, "key_create", id, d);
    return 0;
}

static int keys_list(auth_t *au, const cli_args_t *a)
{
    json_t *list = auth_key_list(au, a->user);
    if (!list) {
        fprintf(stderr, "weft keys list: cannot read the keys\n");
        return 1;
    }
    if (a->json) {
        print_json(list);
    } else {
        printf("%-18s %-16s %-20s %-20s %-20s %-8s %s\n", "ID", "USER", "CREATED", "EXPIRES", "LAST USED", "REVOKED",
               "LABEL");
        for (size_t i = 0; i < json_len(list); i++) {
            const json_t *k = json_at(list, i);
            char c[32], e[32], l[32];
            fmt_time(json_object_get(k, "created"), c);
            fmt_time(json_object_get(k, "expires"), e);
            fmt_time(json_object_get(k, "last_used"), l);
            const char *id = json_str(json_object_get(k, "id")), *u = json_str(json_object_get(k, "user"));
            const char *lab = json_str(json_object_get(k, "label"));
            printf("%-18s %-16s %-20s %-20s %-20s %-8s %s\n", id ? id : "", u ? u : "", c, e, l,
                   srv__truthy(json_object_get(k, "revoked")) ? "yes" : "no", lab ? lab : "");
        }
    }
    json_free(list);
    return 0;
}

static int keys_revoke(auth_t *au, const cli_args_t *a)
{
    if (a->n_pos != 2) {
        fprintf(stderr, "weft keys revoke: give one key ID\n");
        return 2;
    }
    const char *id = a->pos[1];
    char owner[64] = "";
    if (auth_key_owner(au, id, owner) != 0)
        owner[0] = '\0';
    int rc = auth_key_revoke(au, id);
    if (rc == BASE_E_NOENT || rc == BASE_E_INVAL) {
        fprintf(stderr, "weft keys revoke: no key '%s'\n", id);
        return 1;
    }
    if (rc) {
        fprintf(stderr, "weft keys revoke: %s\n", base_strerror(rc));
        return 1;
    }
    printf("weft: revoked key %s\n", id);
    json_t *d = json_new_object();
    if (d)
        json_object_set(d, "user", json_new_string(owner));
    cli_audit(au, "key_revoke", id, d);
    return 0;
}

int srv_cmd_keys(int argc, char **argv)
{
    cli_args_t a;
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage_keys(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (parse_args(argc, argv, 1, "keys", &a)) {
        usage_keys(stderr);
        return 2;
    }
    if (a.help) {
        usage_keys(stdout);
        return 0;
    }
    const char *sub = a.n_pos ? a.pos[0] : "";
    bool create = !strcmp(sub, "create");
    if (!create && strcmp(sub, "list") && strcmp(sub, "revoke")) {
        fprintf(stderr, "weft keys: unknown subcommand '%s'\n\n", sub);
        usage_keys(stderr);
        return 2;
    }
    if ((create || !strcmp(sub, "list")) && a.n_pos != 1) {
        fprintf(stderr, "weft keys %s: unexpected argument '%s'\n", sub, a.pos[1]);
        return 2;
    }
    auth_t *au = NULL;
    int rc = open_auth(&a, "keys", false, &au);
    if (rc)
        return rc;
    rc = create ? keys_create(au, &a) : !strcmp(sub, "list") ? keys_list(au, &a) : keys_revoke(au, &a);
    auth_close(au);
    return rc;
}

/* ------------------------------------------------------------------ weft users */

static int user_error(const char *sub, const char *name, int rc)
{
    if (rc == BASE_E_NOENT)
        fprintf(stderr, "weft users %s: no user '%s'\n", sub, name);
    else if (rc == BASE_E_EXIST)
        fprintf(stderr, "weft users %s: user '%s' already exists\n", sub, name);
    else if (rc == BASE_E_INVAL)
        fprintf(stderr,
                "weft users %s: invalid: names are 1 to 63 of A-Z a-z 0-9 . _ -, passwords 8 to 1024 bytes\n", sub);
    else
        fprintf(stderr, "weft users %s: %s\n", sub, base_strerror(rc));
    return 1;
}

static int users_add(auth_t *au, const cli_args_t *a, const char *name)
{
    auth_role_t role = AUTH_ROLE_USER;
    if (a->role && auth_role_from_name(a->role, &role)) {
        fprintf(stderr, "weft users add: --role must be admin, editor, user or viewer\n");
        return 2;
    }
    char pw[CLI_PASSWORD_MAX + 2];
    bool generated = !a->password_stdin;
    int rc = generated ? srv__random_password(pw, 21) : read_password(pw, sizeof pw, "users add");
    if (rc)
        return 1;
    rc = auth_user_add(au, name, pw, role, NULL);
    if (!rc && generated)
        printf("weft: password for '%s' (shown once): %s\n", name, pw);
    OPENSSL_cleanse(pw, sizeof pw);
    if (rc)
        return user_error("add", name, rc);
    printf("weft: added user '%s' (%s)\n", name, auth_role_name(role));
    json_t *d = json_new_object();
    if (d)
        json_object_set(d, "role", json_new_string(auth_role_name(role)));
    cli_audit(au, "user_create", name, d);
    return 0;
}

static int users_list(auth_t *au, const cli_args_t *a)
{
    json_t *list = auth_user_list(au);
    if (!list) {
        fprintf(stderr, "weft users list: cannot read the users\n");
        return 1;
    }
    if (a->json) {
        print_json(list);
    } else {
        printf("%-24s %-8s %-9s %s\n", "NAME", "ROLE", "DISABLED", "CREATED");
        for (size_t i = 0; i < json_len(list); i++) {
            const json_t *u = json_at(list, i);
            char c[32];
            fmt_time(json_object_get(u, "created"), c);
            const char *n = json_str(json_object_get(u, "name")), *r = json_str(json_object_get(u, "role"));
            printf("%-24s %-8s %-9s %s\n", n ? n : "", r ? r : "",
                   srv__truthy(json_object_get(u, "disabled")) ? "yes" : "no", c);
        }
    }
    json_free(list);
    return 0;
}

int srv_cmd_users(int argc, char **argv)
{
    cli_args_t a;
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage_users(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (parse_args(argc, argv, 1, "users", &a)) {
        usage_users(stderr);
        return 2;
    }
    if (a.help) {
        usage_users(stdout);
        return 0;
    }
    static const struct {
        const char *name;
        int n_pos; /* positional arguments including the subcommand */
    } subs[] = {{"add", 2}, {"list", 1}, {"disable", 2}, {"enable", 2}, {"passwd", 2}, {"role", 3}};
    const char *sub = a.n_pos ? a.pos[0] : "";
    int want = -1;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (!strcmp(sub, subs[i].name))
            want = subs[i].n_pos;
    if (want < 0) {
        fprintf(stderr, "weft users: unknown subcommand '%s'\n\n", sub);
        usage_users(stderr);
        return 2;
    }
    if (a.n_pos != want) {
        fprintf(stderr, "weft users %s: wrong arguments\n\n", sub);
        usage_users(stderr);
        return 2;
    }
    if (!strcmp(sub, "passwd") && !a.password_stdin) {
        fprintf(stderr, "weft users passwd: give the new password on stdin with --password-stdin\n");
        return 2;
    }
    auth_role_t role = AUTH_ROLE_USER;
    if (!strcmp(sub, "role") && auth_role_from_name(a.pos[2], &role)) {
        fprintf(stderr, "weft users role: ROLE must be admin, editor, user or viewer\n");
        return 2;
    }
    auth_t *au = NULL;
    int rc = open_auth(&a, "users", !strcmp(sub, "add"), &au);
    if (rc)
        return rc;
    const char *name = a.n_pos > 1 ? a.pos[1] : NULL;
    if (!strcmp(sub, "add")) {
        rc = users_add(au, &a, name);
    } else if (!strcmp(sub, "list")) {
        rc = users_list(au, &a);
    } else if (!strcmp(sub, "disable") || !strcmp(sub, "enable")) {
        bool off = !strcmp(sub, "disable");
        if ((rc = auth_user_set_disabled(au, name, off))) {
            rc = user_error(sub, name, rc);
        } else {
            printf("weft: %s user '%s'\n", off ? "disabled" : "enabled", name);
            cli_audit(au, off ? "user_disable" : "user_enable", name, NULL);
        }
    } else if (!strcmp(sub, "passwd")) {
        char pw[CLI_PASSWORD_MAX + 2];
        if (read_password(pw, sizeof pw, "users passwd")) {
            rc = 1;
        } else {
            rc = auth_user_set_password(au, name, pw);
            rc = rc ? user_error(sub, name, rc) : 0;
            if (!rc) {
                printf("weft: changed the password of '%s'\n", name);
                cli_audit(au, "user_passwd", name, NULL);
            }
        }
        OPENSSL_cleanse(pw, sizeof pw);
    } else {
        if ((rc = auth_user_set_role(au, name, role))) {
            rc = user_error(sub, name, rc);
        } else {
            printf("weft: '%s' is now %s\n", name, auth_role_name(role));
            json_t *d = json_new_object();
            if (d)
                json_object_set(d, "to", json_new_string(auth_role_name(role)));
            cli_audit(au, "user_role", name, d);
        }
    }
    auth_close(au);
    return rc;
}

/* ------------------------------------------------------------------ weft audit, weft routes */

int srv_cmd_audit(int argc, char **argv)
{
    cli_args_t a;
    if (parse_args(argc, argv, 1, "audit", &a) || a.n_pos) {
        fprintf(stderr, "usage: weft audit [--limit N] [--before ID] [--base-dir DIR]\n");
        return 2;
    }
    if (a.help) {
        printf("usage: weft audit [--limit N] [--before ID] [--base-dir DIR]\n"
               "  prints the newest audit entries (default 100) as JSON lines, newest first\n");
        return 0;
    }
    long long limit = 100, before = 0;
    char *end = NULL;
    if (a.limit && ((limit = strtoll(a.limit, &end, 10)) < 1 || limit > 100000 || !*a.limit || *end)) {
        fprintf(stderr, "weft audit: --limit needs a number from 1 to 100000\n");
        return 2;
    }
    if (a.before && ((before = strtoll(a.before, &end, 10)) < 1 || !*a.before || *end)) {
        fprintf(stderr, "weft audit: --before needs an entry id (a positive number)\n");
        return 2;
    }
    auth_t *au = NULL;
    int rc = open_auth(&a, "audit", false, &au);
    if (rc)
        return rc;
    json_t *list = auth_audit_list(au, limit, before);
    if (!list) {
        fprintf(stderr, "weft audit: cannot read the audit log\n");
        rc = 1;
    }
    for (size_t i = 0; i < json_len(list); i++)
        print_json(json_at(list, i));
    json_free(list);
    auth_close(au);
    return rc;
}

int srv_cmd_routes(int argc, char **argv)
{
    cli_args_t a;
    if (parse_args(argc, argv, 1, "routes", &a) || a.n_pos) {
        fprintf(stderr, "usage: weft routes [--json]\n");
        return 2;
    }
    if (a.help) {
        printf("usage: weft routes [--json]\n"
               "  every route of weft serve (each also under /api) with the scopes it needs\n");
        return 0;
    }
    json_t *r = srv_routes_json();
    if (!r) {
        fprintf(stderr, "weft routes: out of memory\n");
        return 1;
    }
    if (a.json) {
        print_json(r);
    } else {
        for (size_t i = 0; i < json_len(r); i++) {
            const json_t *e = json_at(r, i), *sc = json_object_get(e, "scopes");
            printf("%-7s %-32s ", json_str(json_object_get(e, "method")), json_str(json_object_get(e, "path")));
            if (srv__truthy(json_object_get(e, "public")))
                printf("public");
            else if (!json_len(sc))
                printf("(any principal)");
            for (size_t k = 0; k < json_len(sc); k++)
                printf("%s%s", k ? "," : "", json_str(json_at(sc, k)));
            printf("\n");
        }
    }
    json_free(r);
    return 0;
}
