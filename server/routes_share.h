/* Private to server/. Workflow sharing and share links (routes_share.c). Loop thread.
 *
 *   POST   /weft/workflows/share          {"path", "users", "roles", "public"} -> 200 the same
 *   DELETE /weft/workflows/share?path=P   -> 204
 *   GET    /weft/workflows/shared         -> [{"owner", "path", "size", "modified"}]
 *   GET    /weft/workflows/shared/{owner}/{path}  -> the file (read only)
 *   POST   /weft/share_links              {"kind"?, "path", "folder"?, "expires_in_s"?}
 *                                         -> 201 {"id", "token", "url", "expires"}
 *          (kind "workflow" by default, or "output" with folder output/input/temp; expires_in_s
 *          default 7 days, at most 365; "expires_in" is accepted as its alias)
 *   GET    /weft/share_links              -> [{"id", "owner", "kind", "folder", "path",
 *                                              "created", "expires", "revoked"}]
 *   DELETE /weft/share_links/{id}         -> 204
 *   GET    /share/{token}                 -> the workflow or file, no principal needed
 *
 * Paths name files of the caller's library relative to its root ("workflows/a.json"); in a
 * URL the path is one segment, so its slashes are sent as %2F (like /userdata). Times are
 * unix seconds. Every refusal that could reveal someone else's file is a 404. */
#ifndef WEFT_SRV_ROUTES_SHARE_H
#define WEFT_SRV_ROUTES_SHARE_H

#include "app.h"

void srv_h_share_workflow(srv_t *s, http_req_t *req, http_res_t *res);    /* POST /weft/workflows/share */
void srv_h_unshare_workflow(srv_t *s, http_req_t *req, http_res_t *res);  /* DELETE /weft/workflows/share */
void srv_h_shared_list(srv_t *s, http_req_t *req, http_res_t *res);       /* GET /weft/workflows/shared */
void srv_h_shared_get(srv_t *s, http_req_t *req, http_res_t *res);        /* GET .../shared/{owner}/{path} */
void srv_h_share_link_create(srv_t *s, http_req_t *req, http_res_t *res); /* POST /weft/share_links */
void srv_h_share_link_list(srv_t *s, http_req_t *req, http_res_t *res);   /* GET /weft/share_links */
void srv_h_share_link_revoke(srv_t *s, http_req_t *req, http_res_t *res); /* DELETE /weft/share_links/{id} */
void srv_h_share_open(srv_t *s, http_req_t *req, http_res_t *res);        /* GET /share/{token}, public */

/* Longest and default lifetime of a share link. */
#define SHARE_LINK_MAX_S (365u * 24u * 3600u)
#define SHARE_LINK_DEFAULT_S (7u * 24u * 3600u)

#endif
