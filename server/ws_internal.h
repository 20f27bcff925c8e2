/* Private to server/ws*.c. The hub's sockets and the helpers shared by the handshake (ws.c)
 * and the hub (ws_hub.c). Loop thread only. */
#ifndef WEFT_SRV_WS_INTERNAL_H
#define WEFT_SRV_WS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "ws.h"

/* A socket's life: OPEN while it exchanges frames; CLOSING after we asked the HTTP layer to
 * close it; DEAD once the HTTP layer reported the close (conn is gone, memory freed by the
 * next sweep). */
typedef enum { WS_OPEN, WS_CLOSING, WS_DEAD } ws_state_t;

typedef struct ws_sock_s {
    ws_hub_t *hub;              /* borrowed */
    srv_conn_t *conn;           /* borrowed; NULL once the HTTP layer reported the close */
    wslay_event_context_ptr ctx; /* owned */
    char *sid;                  /* owned; client ids are not secret, so events are also
                                   filtered by the principal's user (isolation) */
    auth_principal_t principal; /* who upgraded (csrf cleared); revocation closes by it */
    char *cred;                 /* owned, wiped on release: the key or session token the
                                   socket was opened with, re-verified periodically so a
                                   revocation by another process (the CLI) or an expiry
                                   also ends it; NULL under --no-auth */
    char *watch;                /* owned prompt id this socket also follows, or NULL */
    json_t *flags;              /* owned feature flags the client sent, or NULL */
    bool got_text;              /* only the first text message may negotiate flags */
    ws_state_t state;
    const char *rd;             /* bytes being handed to wslay by on_read (borrowed) */
    size_t rd_len;
    base_buf_t out;             /* frames wslay produced, not yet given to the connection */
    bool blocked;               /* frames wait for the connection to drain */
    uint64_t last_rx_ms;        /* uv_now of the last byte from the peer */
    int busy;                   /* >0 while our code uses this socket: never free it then */
    struct ws_sock_s *prev, *next;
} ws_sock_t;

struct ws_hub_s {
    srv_t *s;                   /* borrowed */
    ws_limits_t lim;
    ws_sock_t *head;            /* every socket not yet freed */
    size_t n_dead, n_blocked;
    uv_check_t check;           /* resumes blocked sockets and sweeps dead ones */
    uv_idle_t idle;             /* keeps the loop turning while something waits to be swept */
    uv_timer_t ping;            /* liveness pings */
    uv_timer_t recheck;         /* re-verifies the sockets' credentials */
    int handles_open;
    bool freed;                 /* ws_hub_free was called; memory goes with the last close */
};

/* Allocates a socket (state OPEN, not yet linked) with its wslay context. NULL on OOM. */
ws_sock_t *ws__sock_new(ws_hub_t *h, const char *sid, const char *watch);
/* Whether k's principal may see a message owned by owner (NULL = anyone): its own, what
 * any_scopes grant (when non-zero), or everything under --no-auth. */
bool ws__sock_sees(const ws_sock_t *k, const char *owner, auth_scopes_t any_scopes);
/* Frees an unlinked socket that never got a connection. */
void ws__sock_discard(ws_sock_t *k);
/* Links k into the hub and hands the connection over (http_conn_detach). 0 or an error, in
 * which case k is freed. */
int ws__sock_attach(ws_sock_t *k, srv_conn_t *conn);
/* Queues one text frame on k and flushes what the connection accepts. */
void ws__send_text(ws_sock_t *k, const char *text, size_t n);
/* {"type": type, "data": data} compactly; data NULL is sent as null. malloc'ed or NULL. */
char *ws__message(const char *type, const json_t *data, size_t *len);

#endif
