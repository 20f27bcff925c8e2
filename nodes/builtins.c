/* The list of nodes weft ships. One line per node table so a new node is a one-line change. */
#include "nodes.h"

int node_registry_add_builtins(node_registry_t *r)
{
    static const node_def_t *const defs[] = {
        &node_def_LoadImage,   &node_def_SaveImage,  &node_def_PreviewImage, &node_def_ImageScale,
        &node_def_ImageInvert, &node_def_ImageBatch, &node_def_EmptyImage,
    };
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        int rc = node_registry_add(r, defs[i]);
        if (rc)
            return rc;
    }
    return 0;
}
