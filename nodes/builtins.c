/* The list of nodes weft ships. One line per node table so a new node is a one-line change. */
#include "nodes.h"

int node_registry_add_builtins(node_registry_t *r)
{
    static const node_def_t *const defs[] = {
        &node_def_LoadImage,   &node_def_SaveImage,  &node_def_PreviewImage, &node_def_ImageScale,
        &node_def_ImageInvert, &node_def_ImageBatch, &node_def_EmptyImage,
        /* Stable Diffusion */
        &node_def_CheckpointLoaderSimple, &node_def_VAELoader, &node_def_CLIPTextEncode,
        &node_def_CLIPSetLastLayer, &node_def_ConditioningCombine, &node_def_EmptyLatentImage,
        &node_def_LatentUpscale, &node_def_LatentUpscaleBy, &node_def_SetLatentNoiseMask,
        &node_def_VAEDecode, &node_def_VAEEncode, &node_def_VAEDecodeTiled, &node_def_KSampler,
        &node_def_KSamplerAdvanced,
        &node_def_LoraLoader, &node_def_LoraLoaderModelOnly,
        /* Image classification */
        &node_def_ImageClassifierLoader, &node_def_ImageClassify, &node_def_ClassifierThreshold, &node_def_ImageGate,
    };
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        int rc = node_registry_add(r, defs[i]);
        if (rc)
            return rc;
    }
    return 0;
}
