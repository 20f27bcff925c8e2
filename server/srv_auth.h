/* Private to server/. Authentication in front of the routes: the route -> scope table
 * (router.c), the gate that turns a request's credentials into a principal (auth_gate.c),
 * the /auth routes (routes_auth.c), first-start bootstrap (auth_bootstrap.c) and the
 * `weft keys|users|audit|routes` commands (cli_auth.c). Loop thread unless stated. */
#ifndef WEFT_SRV_AUTH_H
#define WEFT_SRV_AUTH_H

#include <stdio.h>

#include "app.h"

/* The session cookie's name. */
#define SRV_SESSION_COOKIE "weft_session"
/* The WebSocket subprotocol that announces a key as the second offered protocol. */
#define SRV_WS_BEARER_PROTO "weft.bearer"

/* ------------------------------------------------------------------ route table (router.c) */

/* [{"method","path","scopes":[...],"public":bool}] for every route (paths without the /api
 * prefix, captures written {name}); new array, NULL on out of memory. */
json_t *srv_routes_json(void);

/* For requests authenticated by cookie: true when the Origin header is absent or names the
 * same host as Host (X-Forwarded-Host when trust_proxy); false for any other origin,
 * including opaque ones ("null"). */
bool srv__origin_same_host(const http_req_t *req, bool trust_proxy);

/* ------------------------------------------------------------------ the gate (auth_gate.c) */

/* The client's address for throttles and the audit log: the peer IP without its port, or
 * with trust_proxy the last hop of X-Forwarded-For (the one our proxy appended). */
void srv__client_ip(const srv_t *s, const http_req_t *req, char out[64]);

/* The value of the weft_session cookie (malloc'ed), NULL when absent. */
char *srv__session_cookie(const http_req_t *req);

/* The principal every request gets under --no-auth: admin "local". */
void srv__principal_noauth(auth_principal_t *p);

/* "key", "session", "noauth" or "none". */
const char *srv__via_name(auth_via_t v);

/* Authenticates req for a route that needs the scopes `need` (0 = any principal): sets
 * req->principal and returns true when the handler may run; otherwise res holds the answer
 * (401 auth_required / invalid_credentials, 403 forbidden / csrf, 429 rate_limited). */
bool srv_auth_gate(srv_t *s, http_req_t *req, http_res_t *res, auth_scopes_t need);

/* The credential the gate takes from req, by the same precedence (Bearer header, WebSocket
 * subprotocol pair on an upgrade, session cookie): a malloc'ed copy, NULL when none. */
char *srv__request_credential(const http_req_t *req);

/* Closes (1008) the WebSocket sockets opened with this browser session (ws_hub.c). */
void srv__ws_close_session(ws_hub_t *h, int64_t session_id);

/* Answers 429 with Retry-After. */
void srv__answer_rate(http_res_t *res, unsigned retry_after_s);

/* ------------------------------------------------------------------ /auth routes (routes_auth.c) */

void srv_h_auth_login(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_auth_logout(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_auth_me(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_auth_users_list(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_auth_users_add(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_auth_users_patch(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_auth_keys_list(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_auth_keys_create(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_auth_keys_revoke(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_auth_audit(srv_t *s, http_req_t *req, http_res_t *res);

/* ------------------------------------------------------------------ bootstrap (auth_bootstrap.c) */

/* A random password of n-1 URL-safe characters into out[n]. 0 or BASE_E_IO. */
int srv__random_password(char *out, size_t n);

/* On an empty user table: creates user "admin" with a random password and an admin key,
 * writes "<key>\n" to <base_dir>/admin.key (mode 0600, never through a symlink) and prints
 * both once to out. 0 when nothing was needed or all went well; a code with a message on
 * stderr otherwise. */
int srv_auth_bootstrap(auth_t *a, const char *base_dir, FILE *out);

/* ------------------------------------------------------------------ CLI (cli_auth.c) */

int srv_cmd_keys(int argc, char **argv);
int srv_cmd_users(int argc, char **argv);
int srv_cmd_audit(int argc, char **argv);
int srv_cmd_routes(int argc, char **argv);

#endif
