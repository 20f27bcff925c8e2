/* The role -> scope table: the single source of truth for what each role may do. The README's
 * "Roles and scopes" table is this table in words. */
#include <stdio.h>
#include <string.h>

#include "auth.h"

#define S(name) AUTH_SCOPE(name)

static const struct {
    const char *name;
    auth_scopes_t scopes;
    unsigned per_day;    /* prompts per day, 0 = unlimited */
    unsigned max_queued; /* pending prompts at once, 0 = unlimited */
} roles[AUTH_ROLE_COUNT] = {
    [AUTH_ROLE_ADMIN] = {"admin", ((auth_scopes_t)1 << AUTH_SCOPE_COUNT) - 1, 0, 0},
    /* Submit any graph, manage and share workflows, upload, see every queue entry. */
    [AUTH_ROLE_EDITOR] = {"editor",
                          S(PROMPT_SUBMIT) | S(PROMPT_ANY_NODE) | S(QUEUE_READ) | S(QUEUE_READ_ANY) |
                              S(QUEUE_CANCEL) | S(HISTORY_READ) | S(HISTORY_WRITE) | S(OUTPUTS_READ) |
                              S(UPLOAD) | S(WORKFLOWS_READ) | S(WORKFLOWS_WRITE) | S(WORKFLOWS_SHARE) |
                              S(MODELS_READ) | S(SYSTEM_READ),
                          0, 200},
    /* Submit graphs of the allowed node classes; own prompts, outputs, uploads and workflows;
     * read what is shared. Uploading is allowed because a LoadImage graph needs an input. */
    [AUTH_ROLE_USER] = {"user",
                        S(PROMPT_SUBMIT) | S(QUEUE_READ) | S(QUEUE_CANCEL) | S(HISTORY_READ) |
                            S(HISTORY_WRITE) | S(OUTPUTS_READ) | S(UPLOAD) | S(WORKFLOWS_READ) |
                            S(WORKFLOWS_WRITE) | S(MODELS_READ) | S(SYSTEM_READ),
                        1000, 20},
    /* Read only: shared workflows and own history; no submission. */
    [AUTH_ROLE_VIEWER] = {"viewer",
                          S(QUEUE_READ) | S(HISTORY_READ) | S(OUTPUTS_READ) | S(WORKFLOWS_READ) |
                              S(MODELS_READ) | S(SYSTEM_READ),
                          0, 0},
};

static const char *const scope_names[AUTH_SCOPE_COUNT] = {
#define AUTH_SCOPE_NAME_(name, str) [AUTH_SCOPE_BIT_##name] = str,
    AUTH_SCOPE_MAP(AUTH_SCOPE_NAME_)
#undef AUTH_SCOPE_NAME_
};

const char *auth_role_name(auth_role_t r)
{
    return r < AUTH_ROLE_COUNT ? roles[r].name : "unknown";
}

int auth_role_from_name(const char *name, auth_role_t *out)
{
    for (int r = 0; name && r < AUTH_ROLE_COUNT; r++)
        if (!strcmp(name, roles[r].name)) {
            *out = (auth_role_t)r;
            return 0;
        }
    return BASE_E_INVAL;
}

auth_scopes_t auth_role_scopes(auth_role_t r)
{
    return r < AUTH_ROLE_COUNT ? roles[r].scopes : 0;
}

void auth_role_limits(auth_role_t r, unsigned *per_day, unsigned *max_queued)
{
    *per_day = r < AUTH_ROLE_COUNT ? roles[r].per_day : 0;
    *max_queued = r < AUTH_ROLE_COUNT ? roles[r].max_queued : 0;
}

const char *auth_scope_name(auth_scope_bit_t b)
{
    return b < AUTH_SCOPE_COUNT ? scope_names[b] : "unknown";
}

int auth_scopes_parse(const char *list, auth_scopes_t *out, char *err, size_t errsz)
{
    *out = 0;
    const char *p = list ? list : "";
    while (*p) {
        size_t n = strcspn(p, ",");
        while (n && (*p == ' ')) {
            p++;
            n--;
        }
        size_t m = n;
        while (m && p[m - 1] == ' ')
            m--;
        if (m) {
            int found = -1;
            for (int b = 0; b < AUTH_SCOPE_COUNT; b++)
                if (strlen(scope_names[b]) == m && !strncmp(scope_names[b], p, m))
                    found = b;
            if (found < 0) {
                snprintf(err, errsz, "unknown scope '%.*s'", (int)(m > 64 ? 64 : m), p);
                return BASE_E_INVAL;
            }
            *out |= (auth_scopes_t)1 << found;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

json_t *auth_scopes_json(auth_scopes_t s)
{
    json_t *a = json_new_array();
    for (int b = 0; a && b < AUTH_SCOPE_COUNT; b++)
        if (s & ((auth_scopes_t)1 << b))
            json_array_push(a, json_new_string(scope_names[b]));
    return a;
}
