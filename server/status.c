/* The queue status message. Kept alone in its file so tests of other server modules can
 * link their own. Loop thread. */
#include "app.h"

json_t *srv_status_json(srv_t *s)
{
    json_t *ei = json_new_object();
    if (!ei || json_object_set(ei, "queue_remaining", json_new_uint(srv_queue_remaining(&s->queue)))) {
        json_free(ei);
        return NULL;
    }
    json_t *st = json_new_object();
    if (!st || json_object_set(st, "exec_info", ei)) { /* set took ei */
        if (!st)
            json_free(ei);
        json_free(st);
        return NULL;
    }
    json_t *o = json_new_object();
    if (!o || json_object_set(o, "status", st)) {
        if (!o)
            json_free(st);
        json_free(o);
        return NULL;
    }
    return o;
}

void srv_broadcast_status(srv_t *s)
{
    if (!s->ws)
        return;
    json_t *st = srv_status_json(s);
    if (st)
        ws_send_json(s->ws, (ws_target_t){.client_id = NULL}, "status", st);
    json_free(st);
}
