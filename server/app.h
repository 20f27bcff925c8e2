/* Private to server/. The application object of `weft serve` and the pieces that share it:
 * configuration, the in-memory mirror of the pending queue, the worker thread that executes
 * prompts, the event bridge from the worker to the loop, and the router.
 *
 * Threads: the loop thread owns srv_t and everything in it except where a field says
 * otherwise; the worker threads (one per prompt that may run at once: --lanes) touch only
 * srv_queue_t (under its mutex), the engine, and srv_events_post. */
#ifndef WEFT_SRV_APP_H
#define WEFT_SRV_APP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "engine.h"
#include "http.h"
#include "srv.h"
#include "store.h"
#include "ws.h"

/* ------------------------------------------------------------------ configuration */

typedef struct {
    const char *listen;      /* default "127.0.0.1" */
    int port;                /* default 8188; 0 = ephemeral (the chosen port is printed) */
    const char *base_dir;    /* default "weft-data" */
    size_t max_upload_mb;    /* default 100 */
    bool previews;           /* --preview-method: latent previews while sampling (default on) */
    size_t model_memory_mb;  /* --model-memory: 0 = the default (half of RAM) */
    const char *frontend_dir; /* built editor files served at /; default "frontend/dist" if present */
    bool quiet;
    bool no_auth;             /* --no-auth: accepted only when listening on loopback */
    bool trust_proxy;         /* --trust-proxy: honour X-Forwarded-Host/-Proto in origin checks */
    unsigned lanes;           /* --lanes: executor threads, and prompts that may run at once */
    unsigned lanes_heavy;     /* --lanes-heavy: heavy nodes at once (0 = by the memory budget) */
    http_limits_t http;
    ws_limits_t ws;
} srv_config_t;

/* Defaults, then argv (after "serve"). 0, or 2 after printing usage/errors. */
int srv_config_parse(srv_config_t *c, int argc, char **argv);

/* ------------------------------------------------------------------ pending queue */

/* One queued or running prompt in memory. Owned by the queue until popped, then by the worker
 * until it posts SRV_EV_DONE, then by the loop thread which frees it. */
typedef struct srv_item_s {
    char *prompt_id;
    double number;
    int64_t seq;
    json_t *prompt;        /* coerced API prompt */
    json_t *extra_data;
    char **outputs;        /* output node ids to execute */
    size_t n_outputs;
    char *client_id;       /* may be NULL */
    graph_t *graph;        /* validated graph */
    double created_ms;
    char owner[64];        /* user that submitted it ("" = nobody: only "any" scopes see it) */
    unsigned run_cap;      /* prompts of its owner that may run at once (0 = no cap; by role) */
    bool executing;        /* popped and not yet through eng_execute (under the queue lock) */
} srv_item_t;

void srv_item_free(srv_item_t *it);

/* A user's turn in the fair order (queue.c): when one of their prompts last started. */
typedef struct {
    char owner[64];
    uint64_t served; /* 0 = never */
} srv_turn_t;

/* The pending queue runs fairly across users: the next prompt is the head of the user whose
 * prompt started least recently (round-robin; a user never served goes first), among users
 * below their role's cap of prompts running at once; within a user, (number, seq) order, so
 * `front` and explicit numbers are honoured. srv_queue_each lists pending items in exactly
 * the order they would start. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_item_t **items;    /* pending, kept ordered by (number, seq) */
    size_t n, cap;
    /* Started and not yet recorded as finished by the loop (srv__queue_finished), in start
     * order; borrowed views of the workers' items. */
    srv_item_t **runs;
    size_t n_runs, cap_runs;
    srv_item_t *running;   /* the most recently started of runs; NULL iff none */
    srv_turn_t *turns;     /* one per user seen */
    size_t n_turns, cap_turns;
    uint64_t tick;
    bool stopping;
} srv_queue_t;

int srv_queue_init(srv_queue_t *q);
void srv_queue_destroy(srv_queue_t *q); /* frees remaining items */
int srv_queue_push(srv_queue_t *q, srv_item_t *it);            /* takes it */
/* Removes pending items by id (NULL ids = all). Returns how many. */
size_t srv_queue_remove(srv_queue_t *q, const char *const *ids, size_t n_ids);
/* Worker: blocks until an item may start (the fair order, caps) or stop; NULL when stopping.
 * Adds it to the running items and makes it q->running. */
srv_item_t *srv_queue_pop(srv_queue_t *q);
/* Worker: it is through eng_execute; its owner's cap no longer counts it (it stays running
 * until the loop records the end). */
void srv_queue_executed(srv_queue_t *q, srv_item_t *it);
void srv_queue_done(srv_queue_t *q);                           /* q->running is no longer running */
size_t srv_queue_remaining(srv_queue_t *q);                    /* pending + running */
void srv_queue_stop(srv_queue_t *q);
/* Calls fn for each running item (in start order) then the pending items in the order they
 * would start, under the lock. */
void srv_queue_each(srv_queue_t *q, void (*fn)(void *ud, const srv_item_t *it, bool running), void *ud);
/* Prompts of one user that may run at once, by role (0 = no cap). */
unsigned srv_role_run_cap(auth_role_t role);

/* ------------------------------------------------------------------ worker -> loop events */

typedef enum {
    SRV_EV_STARTED, /* the worker took `item` (mark running in the store, broadcast status) */
    SRV_EV_ENGINE,  /* an engine event: type + data */
    SRV_EV_PREVIEW, /* a binary preview frame for the item's client */
    SRV_EV_DONE,    /* the prompt finished: result + item handed to the loop */
} srv_ev_kind_t;

typedef struct srv_ev_s {
    srv_ev_kind_t kind;
    srv_item_t *item;      /* STARTED: borrowed; DONE: owned by the event */
    char *prompt_id;       /* owned copy (routing) */
    char *client_id;       /* owned copy, may be NULL */
    char *type;            /* ENGINE: owned */
    json_t *data;          /* ENGINE: owned */
    uint32_t bin_type;     /* PREVIEW */
    base_buf_t bin;        /* PREVIEW: owned */
    eng_result_t result;   /* DONE: owned */
    char owner[64];        /* the prompt's owner (routing; "" = nobody) */
    struct srv_ev_s *next;
} srv_ev_t;

/* Any thread: appends and wakes the loop (uv_async_send coalesces; the loop drains all). */
void srv_events_post(srv_t *s, srv_ev_t *ev);

/* ------------------------------------------------------------------ the application */

struct srv_s {
    srv_config_t cfg;
    uv_loop_t *loop;
    srv_env_t env;
    node_registry_t *reg;
    eng_t *eng;              /* used by the worker threads; eng_interrupt from the loop */
    store_t *store;          /* the loop thread's connection */
    srv_queue_t queue;
    pthread_t *workers;      /* one per prompt that may run at once */
    unsigned n_workers;      /* started */
    ws_hub_t *ws;
    auth_t *auth;            /* users, keys, sessions, limits, audit (loop thread) */
    uv_async_t ev_async;
    pthread_mutex_t ev_mu;
    srv_ev_t *ev_head, *ev_tail;
    uv_signal_t sigint, sigterm;
    double counter;          /* ComfyUI's "number" for prompts without one */
    int64_t seq;
    /* Current state for reconnecting clients (loop thread): running prompt and node. */
    char *cur_prompt_id, *cur_client_id, *cur_node;
    uint64_t cur_value, cur_max;
    char cur_owner[64];      /* owner of the running prompt ("" = nobody; see srv_item_t.owner) */
    atomic_bool free_models, free_memory; /* POST /free flags, consumed by the worker */
    double started_ms;
    void *http;              /* http layer state (http.c) */
    bool stopping;
};

/* `weft serve`: runs until SIGINT/SIGTERM, then shuts down gracefully. Exit code. */
int srv_cmd_serve(int argc, char **argv);

/* Worker thread body (worker.c); several may run (--lanes). */
void *srv_worker_main(void *arg);

/* The request handler given to http_listen: routes to the handlers below, every route also
 * under /api (router.c). */
void srv_route(srv_t *s, http_req_t *req, http_res_t *res);

/* {"status": {"exec_info": {"queue_remaining": N}}} (new object). */
json_t *srv_status_json(srv_t *s);
/* Broadcasts status to every socket. */
void srv_broadcast_status(srv_t *s);

/* Route handlers (one file per group). */
void srv_h_prompt_post(srv_t *s, http_req_t *req, http_res_t *res);   /* routes_prompt.c */
void srv_h_prompt_get(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_queue_get(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_queue_post(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_interrupt(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_free(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_history_get(srv_t *s, http_req_t *req, http_res_t *res);   /* routes_history.c */
void srv_h_history_one(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_history_post(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_object_info(srv_t *s, http_req_t *req, http_res_t *res);   /* routes_system.c */
void srv_h_object_info_one(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_system_stats(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_features(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_embeddings(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_extensions(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_models(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_models_folder(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_health(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_static(srv_t *s, http_req_t *req, http_res_t *res);       /* static.c: / and files */
void srv_h_view(srv_t *s, http_req_t *req, http_res_t *res);          /* routes_files.c */
void srv_h_upload_image(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_upload_mask(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_userdata_list(srv_t *s, http_req_t *req, http_res_t *res); /* routes_userdata.c */
void srv_h_userdata_v2(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_userdata_get(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_userdata_post(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_userdata_delete(srv_t *s, http_req_t *req, http_res_t *res);
void srv_h_userdata_move(srv_t *s, http_req_t *req, http_res_t *res);

#endif
