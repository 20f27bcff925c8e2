/* Private to server/ (the composition root: CLI now, HTTP server later). Main thread only. */
#ifndef WEFT_SRV_H
#define WEFT_SRV_H

#include "engine.h"
#include "graphs.h"
#include "nodes.h"

/* The base dir and its folders (architecture.md "Base directory"). */
typedef struct {
    node_env_t env; /* strings below are owned by this struct */
    char *base_dir, *input_dir, *output_dir, *temp_dir, *models_dir;
} srv_env_t;

/* Creates the base dir layout when missing. 0 or a base_err_t code with a message on stderr. */
int srv_env_open(srv_env_t *e, const char *base_dir);
void srv_env_close(srv_env_t *e);

/* A workflow read from a file: UI format, API format, a POST /prompt body, or a PNG carrying
 * "workflow"/"prompt" text chunks, turned into an API prompt. */
typedef struct {
    json_t *prompt;        /* owned: API format */
    json_t *extra_pnginfo; /* owned: {"workflow": <UI graph>} when the source had one, else NULL */
    const char *format;    /* static: "ui", "api", "png+ui", "png+api" */
} srv_workflow_t;

/* 0, or a code with a one-line message in err. */
int srv_workflow_load(const char *path, const node_registry_t *reg, const node_env_t *env,
                      srv_workflow_t *out, char *err, size_t errsz);
void srv_workflow_free(srv_workflow_t *w);

/* Terminal progress for `weft run`: an eng_event_cb writing to stderr. */
typedef struct {
    const graph_t *graph;
    size_t total;   /* nodes that will run or be reported cached */
    size_t done;
    bool tty;
    bool quiet;
} srv_progress_t;

void srv_progress_event(void *ud, const char *type, json_t *data);

int srv_cmd_run(int argc, char **argv);
int srv_cmd_validate(int argc, char **argv);
int srv_cmd_nodes(int argc, char **argv);
int srv_cmd_demo_model(int argc, char **argv);

#endif
