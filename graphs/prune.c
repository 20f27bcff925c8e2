/* graph_prune: the nodes an execution needs, sources first. An explicit stack keeps
 * arbitrarily long chains off the C stack (ComfyUI fails near 1,000 nodes). */
#include <stdlib.h>

#include "graphs-internal.h"

enum { WHITE, GREY, BLACK };

int graph_prune(const graph_t *g, char *const *outputs, size_t n_outputs, size_t **order, size_t *n_order)
{
    *order = NULL;
    *n_order = 0;
    if (!g || (n_outputs && !outputs))
        return BASE_E_INVAL;
    size_t n = g->n ? g->n : 1;
    unsigned char *color = calloc(n, 1);
    struct frame {
        size_t v, k; /* node, next input to look at */
    } *st = malloc(n * sizeof *st);
    size_t *out = malloc(n * sizeof *out), n_out = 0;
    int rc = color && st && out ? 0 : BASE_E_NOMEM;

    for (size_t oi = 0; !rc && oi < n_outputs; oi++) {
        int64_t o = graph_find(g, outputs[oi]);
        if (o < 0) {
            rc = BASE_E_INVAL;
            break;
        }
        if (color[o] != WHITE)
            continue;
        size_t depth = 0;
        color[o] = GREY;
        st[depth++] = (struct frame){(size_t)o, 0};
        while (!rc && depth) {
            struct frame *f = &st[depth - 1];
            const graph_node_t *nd = &g->nodes[f->v];
            if (f->k < nd->n_inputs) {
                const graph_input_t *in = &nd->inputs[f->k++];
                if (!in->is_link)
                    continue;
                if (in->src < 0 || (size_t)in->src >= g->n) {
                    rc = BASE_E_GRAPH_FORMAT; /* a dangling link: validation was skipped */
                } else if (color[in->src] == GREY) {
                    rc = BASE_E_GRAPH_CYCLE;
                } else if (color[in->src] == WHITE) {
                    color[in->src] = GREY;
                    st[depth++] = (struct frame){(size_t)in->src, 0};
                }
                continue;
            }
            color[f->v] = BLACK;
            out[n_out++] = f->v;
            depth--;
        }
    }
    free(color);
    free(st);
    if (rc) {
        free(out);
        return rc;
    }
    *order = out;
    *n_order = n_out;
    return 0;
}
