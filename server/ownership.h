/* Private to server/. Who may see what: the ownership checks the route handlers share, the
 * per-user library folders, the record of who made each file, the audit helper, and the file
 * serving that /view and share links have in common. Loop thread.
 *
 * A principal "owns" a prompt, file or workflow when its user name equals the recorded
 * owner. Things recorded without an owner (made before authentication existed, or placed on
 * disk by hand) belong to nobody: only scopes that say "any" reach them. */
#ifndef WEFT_SRV_OWNERSHIP_H
#define WEFT_SRV_OWNERSHIP_H

#include <stdbool.h>
#include <sys/stat.h>

#include "app.h"

/* The principal's user name; NULL when it has none. */
const char *own_user(const auth_principal_t *p);
/* p has a user name and it equals owner. */
bool own_is(const auth_principal_t *p, const char *owner);
/* own_is, or p holds every scope of any (any != 0). */
bool own_may(const auth_principal_t *p, const char *owner, auth_scopes_t any);

/* <base>/user/<user>: one user's workflow library and settings (malloc'ed). BASE_E_PATH for
 * a name that cannot be a folder of its own (empty, ".", "..", '/', control characters). */
int own_user_root(const srv_t *s, const char *user, char **out);

/* Appends an audit entry: who = the principal's user, ip = the peer. detail is taken (may be
 * NULL). Nothing happens without s->auth; a failure is logged, never answered. */
void own_audit(srv_t *s, const http_req_t *req, const char *action, const char *target, json_t *detail);

/* ------------------------------------------------------------------ submission policy */

/* own_policy.c. What the raw API prompt may use, checked before validation (so a forbidden
 * node's own validation never runs). Answers 400 in ComfyUI's validation shape (error type
 * prompt_outputs_failed_validation, one node_errors entry per offending node, with
 * dependent_outputs and class_type) and returns true when:
 *  - a node's class is flagged NODE_PRIVILEGED and p lacks prompt:any_node: an error of type
 *    forbidden_node_class, message "Node class not allowed for your role", details the class;
 *  - otherwise, a file-picking input (NODE_IN_IMAGE_UPLOAD, e.g. LoadImage's image) names a
 *    file p may not read (own_file_readable) and p lacks outputs:read:any: the error LoadImage
 *    gives for a missing file (custom_validation_failed, "<input> - Invalid image file:
 *    <name>"), input_config listing only what p may read, so the two cannot be told apart. */
bool own_refuse_forbidden_nodes(srv_t *s, const auth_principal_t *p, const json_t *prompt, http_res_t *res);
/* Per-role limits of the requesting user: 429 "too_many_queued" when its pending prompts
 * reach the role's max_queued, 429 "quota_exceeded" (with Retry-After) when the daily quota
 * is spent (auth_quota_take consumes one unit otherwise). true when it answered. */
bool own_refuse_limits(srv_t *s, const http_req_t *req, http_res_t *res);

/* Removes from object_info (node_registry_object_info's shape) the options of file-picking
 * inputs (those with "image_upload": true, e.g. LoadImage's list of input/) that p may not
 * read. Nothing is removed for outputs:read:any. For routes_system.c's /object_info. */
void own_filter_object_info(srv_t *s, const auth_principal_t *p, json_t *object_info);

/* ------------------------------------------------------------------ files */

/* The files table's path of name inside subfolder sub: "." and empty components dropped.
 * BASE_E_PATH for "..", a backslash, a control character or an empty name; *out malloc'ed. */
int own_file_path(const char *sub, const char *name, char **out);
/* p may read folder/path: p is its recorded owner, or p has outputs:read:any. */
bool own_file_readable(srv_t *s, const auth_principal_t *p, const char *folder, const char *path);
/* p may write over an existing folder/path: p is its recorded owner, or nobody is recorded
 * and p has outputs:read:any (files from before ownership belong to the admins). */
bool own_file_writable(srv_t *s, const auth_principal_t *p, const char *folder, const char *path);
/* Records every file a finished prompt's UI outputs name (objects with "filename",
 * "subfolder", "type" in any array of any node's output) as made by owner. Nothing for an
 * empty owner. own_record_ui: the same for one node's UI output (an "executed" event's
 * "output"), so the files can be viewed as soon as clients hear of them. */
void own_record_outputs(store_t *st, const char *owner, const char *prompt_id, const json_t *outputs,
                        double now_ms);
void own_record_ui(store_t *st, const char *owner, const char *prompt_id, const json_t *ui, double now_ms);

/* routes_files.c: answers with folder/path's bytes and /view's safe headers (nosniff,
 * sandbox CSP, active types as attachments); 404 when it is missing or outside its folder.
 * No ownership check: the caller decided. */
void srv__files_serve(srv_t *s, http_res_t *res, const char *folder, const char *path);

/* routes_files.c: folder/path is an existing regular file inside its folder. */
bool srv__files_exists(srv_t *s, const char *folder, const char *path);

/* routes_userdata.c: a library file of user (rel relative to that user's root, symlinks
 * followed only inside it). *data malloc'ed (data NULL: only checks it and fills st).
 * BASE_E_NOENT, BASE_E_PATH, BASE_E_INVAL for a malformed name, or an I/O code. */
int srv__userdata_read(srv_t *s, const char *user, const char *rel, char **data, size_t *len,
                       struct stat *st);
/* routes_userdata.c: rel normalized as the library names it ("a/./b" -> "a/b");
 * BASE_E_PATH/BASE_E_INVAL for names that leave the root or are empty. *out malloc'ed. */
int srv__userdata_norm(const char *rel, char **out);
/* Content-Type the library serves rel with (script-capable types as octet-stream). */
const char *srv__userdata_mime(const char *rel);

#endif
