#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/png.h"
#include "srv.h"

#define WORKFLOW_MAX_BYTES (256u << 20)

static int from_json(json_t *j, const node_registry_t *reg, const node_env_t *env, bool from_png,
                     srv_workflow_t *out, char *err, size_t errsz)
{
    if (graph_is_ui_workflow(j)) {
        int rc = graph_convert_ui(j, reg, env, &out->prompt, err, errsz);
        if (rc) {
            json_free(j);
            return rc;
        }
        out->extra_pnginfo = json_new_object();
        if (!out->extra_pnginfo || json_object_set(out->extra_pnginfo, "workflow", j)) {
            json_free(out->prompt);
            out->prompt = NULL;
            return BASE_E_NOMEM;
        }
        out->format = from_png ? "png+ui" : "ui";
        return 0;
    }
    if (j->type != JSON_OBJECT) {
        snprintf(err, errsz, "not a workflow: expected a JSON object");
        json_free(j);
        return BASE_E_GRAPH_FORMAT;
    }
    /* A saved POST /prompt body: {"prompt": {...}, "extra_data": {"extra_pnginfo": {...}}}. */
    json_t *inner = json_object_get(j, "prompt");
    if (inner && inner->type == JSON_OBJECT) {
        out->prompt = json_clone(inner);
        json_t *ed = json_object_get(j, "extra_data");
        json_t *pi = ed ? json_object_get(ed, "extra_pnginfo") : NULL;
        if (pi && pi->type == JSON_OBJECT)
            out->extra_pnginfo = json_clone(pi);
        json_free(j);
        if (!out->prompt)
            return BASE_E_NOMEM;
    } else {
        out->prompt = j;
    }
    out->format = from_png ? "png+api" : "api";
    return 0;
}

static int parse_text(const char *text, size_t len, const char *what, json_t **out, char *err, size_t errsz)
{
    char jerr[256];
    int rc = json_parse(text, len, out, jerr, sizeof jerr);
    if (rc)
        snprintf(err, errsz, "%s: invalid JSON (%s)", what, jerr);
    return rc;
}

static int from_png(const char *path, const node_registry_t *reg, const node_env_t *env,
                    srv_workflow_t *out, char *err, size_t errsz)
{
    node_png_texts_t texts = {0};
    char perr[256] = "";
    int rc = node_png_read_text_file(path, &texts, perr, sizeof perr);
    if (rc) {
        snprintf(err, errsz, "%s: %s", path, perr[0] ? perr : base_strerror(rc));
        return rc;
    }
    /* Like the editor: the UI workflow first, the API prompt as a fallback. */
    const char *want[] = {"workflow", "prompt"};
    rc = BASE_E_GRAPH_FORMAT;
    snprintf(err, errsz, "%s: PNG carries no \"workflow\" or \"prompt\" text chunk", path);
    for (size_t w = 0; w < 2 && rc == BASE_E_GRAPH_FORMAT; w++) {
        for (size_t i = 0; i < texts.n; i++) {
            if (strcmp(texts.items[i].key, want[w]))
                continue;
            json_t *j = NULL;
            char what[64];
            snprintf(what, sizeof what, "PNG chunk \"%s\"", want[w]);
            rc = parse_text(texts.items[i].value, texts.items[i].value_len, what, &j, err, errsz);
            if (!rc)
                rc = from_json(j, reg, env, true, out, err, errsz);
            break;
        }
    }
    node_png_texts_free(&texts);
    return rc;
}

int srv_workflow_load(const char *path, const node_registry_t *reg, const node_env_t *env,
                      srv_workflow_t *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof *out);
    char *data = NULL;
    size_t len = 0;
    int rc = base_read_file(path, WORKFLOW_MAX_BYTES, &data, &len);
    if (rc) {
        snprintf(err, errsz, "%s: %s", path, base_strerror(rc));
        return rc;
    }
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 8 && !memcmp(data, sig, 8)) {
        free(data);
        return from_png(path, reg, env, out, err, errsz);
    }
    json_t *j = NULL;
    rc = parse_text(data, len, path, &j, err, errsz);
    free(data);
    if (rc)
        return rc;
    return from_json(j, reg, env, false, out, err, errsz);
}

void srv_workflow_free(srv_workflow_t *w)
{
    json_free(w->prompt);
    json_free(w->extra_pnginfo);
    memset(w, 0, sizeof *w);
}
