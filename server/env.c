#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

int srv_env_open(srv_env_t *e, const char *base_dir)
{
    memset(e, 0, sizeof *e);
    static const char *const dirs[] = {"input", "output", "temp", "models/checkpoints", "models/loras",
                                       "models/vae", "models/classifiers", "models/clip_tokenizer", "user"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char *p = join(base_dir, dirs[i]);
        int rc = p ? base_mkdir_p(p) : BASE_E_NOMEM;
        if (rc) {
            fprintf(stderr, "weft: cannot create %s: %s\n", p ? p : dirs[i], base_strerror(rc));
            free(p);
            return rc;
        }
        free(p);
    }
    e->base_dir = strdup(base_dir);
    e->input_dir = join(base_dir, "input");
    e->output_dir = join(base_dir, "output");
    e->temp_dir = join(base_dir, "temp");
    e->models_dir = join(base_dir, "models");
    if (!e->base_dir || !e->input_dir || !e->output_dir || !e->temp_dir || !e->models_dir) {
        srv_env_close(e);
        return BASE_E_NOMEM;
    }
    e->env = (node_env_t){e->base_dir, e->input_dir, e->output_dir, e->temp_dir, e->models_dir};
    return 0;
}

void srv_env_close(srv_env_t *e)
{
    free(e->base_dir);
    free(e->input_dir);
    free(e->output_dir);
    free(e->temp_dir);
    free(e->models_dir);
    memset(e, 0, sizeof *e);
}
