#include <stdio.h>
#include <string.h>

#include "srv.h"

static const char *class_of(const srv_progress_t *p, const char *id)
{
    int64_t i = id ? graph_find(p->graph, id) : -1;
    return i >= 0 && p->graph->nodes[i].class_type ? p->graph->nodes[i].class_type : "?";
}

static void bar(const srv_progress_t *p, const char *node, uint64_t v, uint64_t max)
{
    enum { WIDTH = 30 };
    size_t fill = max ? (size_t)(WIDTH * (v > max ? max : v) / max) : WIDTH;
    char cells[WIDTH + 1];
    memset(cells, '#', fill);
    memset(cells + fill, '.', WIDTH - fill);
    cells[WIDTH] = 0;
    fprintf(stderr, "%s  %s [%s] %llu/%llu%s", p->tty ? "\r" : "", class_of(p, node), cells,
            (unsigned long long)v, (unsigned long long)max, p->tty ? "" : "\n");
    if (p->tty && v >= max)
        fputc('\n', stderr);
}

/* Why a line per node even on a TTY: node names are what users look for when a long
 * workflow stalls; only the step bar of a long node redraws in place. */
void srv_progress_event(void *ud, const char *type, json_t *data)
{
    srv_progress_t *p = ud;
    if (!p->quiet) {
        if (!strcmp(type, "execution_cached")) {
            size_t n = json_len(json_object_get(data, "nodes"));
            if (n)
                fprintf(stderr, "cached: %zu node%s\n", n, n == 1 ? "" : "s");
        } else if (!strcmp(type, "executing")) {
            const char *node = json_str(json_object_get(data, "node"));
            if (node) {
                p->done++;
                fprintf(stderr, "[%zu/%zu] #%s %s\n", p->done, p->total, node, class_of(p, node));
            }
        } else if (!strcmp(type, "progress")) {
            uint64_t v = 0, max = 0;
            json_get_u64(json_object_get(data, "value"), &v);
            json_get_u64(json_object_get(data, "max"), &max);
            bar(p, json_str(json_object_get(data, "node")), v, max);
        } else if (!strcmp(type, "execution_error")) {
            fprintf(stderr, "error in #%s %s: %s\n", json_str(json_object_get(data, "node_id")),
                    json_str(json_object_get(data, "node_type")),
                    json_str(json_object_get(data, "exception_message")));
        } else if (!strcmp(type, "execution_interrupted")) {
            fprintf(stderr, "interrupted at #%s\n", json_str(json_object_get(data, "node_id")));
        }
    }
    json_free(data);
}
