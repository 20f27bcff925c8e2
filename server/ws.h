/* Private to server/. WebSocket endpoint (/ws and /api/ws): the upgrade handshake on our
 * llhttp request, framing by wslay, and the hub that routes events to sockets.
 * Loop thread only. */
#ifndef WEFT_SRV_WS_H
#define WEFT_SRV_WS_H

#include <stdbool.h>
#include <stddef.h>

#include "base.h"
#include "http.h"

typedef struct ws_hub_s ws_hub_t;

typedef struct {
    size_t max_msg_bytes;   /* largest client message accepted (1 MiB); bigger -> close 1009 */
    size_t max_queued_bytes; /* a socket whose unsent bytes exceed this is closed (slow reader),
                                default 64 MiB */
    unsigned ping_interval_ms; /* 0 = none; default 30 s */
} ws_limits_t;

void ws_limits_init(ws_limits_t *l);

int ws_hub_new(srv_t *s, const ws_limits_t *lim, ws_hub_t **out);
/* Closes every socket (close frame 1001 "going away"). The memory goes once the loop has
 * run the handles' and connections' close callbacks, so keep running the loop after. */
void ws_hub_free(ws_hub_t *h);
size_t ws_hub_count(const ws_hub_t *h);

/* Called by the router for GET /ws and /api/ws. Answers 400 itself when the handshake is not
 * a valid WebSocket upgrade; otherwise writes the 101, detaches the connection and registers
 * the socket under the clientId query parameter (or a fresh uuid4 hex). Several sockets may
 * share one client id: all of them receive that client's events. Query `prompt_id=<id>`
 * additionally subscribes the socket to that prompt's events whoever submitted it. On connect
 * the socket receives {"type":"status","data":{"status":{"exec_info":{"queue_remaining":N}},
 * "sid":"<sid>"}} and, when a prompt of this client (or the watched prompt) is running, the
 * current state from s->cur_* (executing, then progress when cur_max > 0). A watched prompt
 * that already finished has its stored lifecycle messages replayed, then executing with
 * node null. On success res->status is 101 and the HTTP layer writes nothing more. */
void ws_handle_upgrade(ws_hub_t *h, http_req_t *req, http_res_t *res);

/* Routing targets. */
typedef struct {
    const char *client_id; /* NULL = every socket (broadcast); "" = no client (watchers only) */
    const char *prompt_id; /* also deliver to sockets watching this prompt (may be NULL) */
    /* Isolation: when owner is set, only sockets whose principal is that user receive the
     * message, plus sockets whose principal holds every scope in any_scopes (when non-zero)
     * and --no-auth sockets. NULL = no owner filter (status broadcasts). */
    const char *owner;
    auth_scopes_t any_scopes;
} ws_target_t;

/* Sends {"type": type, "data": data} (data borrowed) as a text frame. */
void ws_send_json(ws_hub_t *h, ws_target_t to, const char *type, const json_t *data);
/* Sends a binary frame: 4-byte big-endian event type then payload. */
void ws_send_binary(ws_hub_t *h, ws_target_t to, uint32_t event, const void *payload, size_t n);

/* Sends a preview image of node_id: a type-4 frame (PREVIEW_IMAGE_WITH_METADATA) to sockets
 * that negotiated supports_preview_metadata, else type 1 (PREVIEW_IMAGE). format: 1 JPEG,
 * 2 PNG. */
void ws_send_preview(ws_hub_t *h, ws_target_t to, const char *node_id, const char *prompt_id,
                     uint32_t format, const void *img, size_t n);

/* Closes (1008 policy violation) every socket authenticated as user (when non-NULL) or with
 * the API key key_id (when non-NULL): revocation reaches open sockets at once. */
void ws_close_principal(ws_hub_t *h, const char *user, const char *key_id);

#endif
