/* Private to the application core of `weft serve` (serve.c, queue.c, worker.c, events.c,
 * router.c, routes_prompt.c, routes_history.c) and its tests. Loop thread unless stated. */
#ifndef WEFT_SRV_APP_INTERNAL_H
#define WEFT_SRV_APP_INTERNAL_H

#include "app.h"

/* Any thread: milliseconds since the epoch. */
double srv__now_ms(void);

/* A queue priority as JSON: an integer when integral (what ComfyUI's counter gives),
 * else a real. NULL on out of memory. */
json_t *srv__number_json(double number);

/* Any thread: removes pending items by id (NULL ids = all) under the queue lock and hands
 * them to the caller (*out malloc'ed, NULL when none; caller frees each with srv_item_free
 * and the array with free). Returns how many. The running item is never taken. */
size_t srv__queue_take(srv_queue_t *q, const char *const *ids, size_t n_ids, srv_item_t ***out);

/* Loop thread, handling a DONE: clears q->running when it is still `it` (the worker has not
 * taken the next prompt yet) and returns whether it was; the worker is then idle. */
bool srv__queue_finished(srv_queue_t *q, const srv_item_t *it);

/* Applies pending POST /free flags now when no prompt runs (else the worker does later). */
void srv__free_if_idle(srv_t *s);

/* Runs every queued worker event (the async callback calls this; shutdown calls it once
 * more after the worker has been joined). */
void srv__events_drain(srv_t *s);

/* Largest prompt POST /prompt accepts, in nodes (bounds the work of one request). */
#define SRV_MAX_PROMPT_NODES 200000

/* Parses the request body as JSON whatever its Content-Type. On failure answers 400 JSON
 * (type "invalid_json", or "invalid_request" when want_object and it is not an object) and
 * returns false. *out is the caller's. */
bool srv__body_json(const http_req_t *req, http_res_t *res, bool want_object, json_t **out);

/* Python-like truthiness of a JSON value (false for NULL). */
bool srv__truthy(const json_t *j);

/* The history entry of a finished row (comfyui-api.md 7.2): {"prompt": [number, id, prompt,
 * extra_data, outputs_to_execute], "outputs", "status", "meta"}. New object, NULL on OOM. */
json_t *srv_history_entry_json(const store_prompt_t *p);

/* The queue tuple [number, id, prompt, extra_data, outputs_to_execute] (new array). */
json_t *srv__queue_tuple(double number, const char *id, const json_t *prompt, const json_t *extra_data,
                         char *const *outputs, size_t n_outputs);

/* Sends an execution event of the running prompt to whoever should see it
 * (comfyui-api.md 3.2 plus prompt watchers); data borrowed. */
void srv__send_prompt_event(srv_t *s, const char *client_id, const char *prompt_id, const char *type,
                            const json_t *data);

/* Why a prompt found pending at start-up no longer runs: a failed validation is recorded
 * as a finished ERROR row with `text` and an execution_error-like message. */
int srv__finish_invalid(store_t *st, const char *prompt_id, const char *text);

#endif
