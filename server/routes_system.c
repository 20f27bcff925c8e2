/* Read-only routes describing the server: node definitions, host and device memory, feature
 * flags, model folders, embeddings, frontend extensions and the health check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>

#include "app.h"
#include "ownership.h"

/* The ComfyUI release whose API weft answers like; clients gate features on it. */
#define SRV_COMFYUI_VERSION "0.3.64"
#define SRV_WEFT_VERSION "0.1.0"

/* ComfyUI's supported_pt_extensions. */
static const char *const pt_exts[] = {".ckpt",        ".pt",  ".pt2", ".bin", ".pth",
                                      ".safetensors", ".pkl", ".sft", NULL};
static const char *const yaml_exts[] = {".yaml", NULL};

/* The folder keys of GET /models, in ComfyUI's order (custom_nodes left out: weft has none). */
static const char *const model_folders[] = {
    "checkpoints",   "configs",          "loras",          "vae",
    "text_encoders", "diffusion_models", "clip_vision",    "style_models",
    "embeddings",    "diffusers",        "vae_approx",     "controlnet",
    "gligen",        "upscale_models",   "hypernetworks",  "photomaker",
    "classifiers",   "model_patches",    "audio_encoders", NULL};

static void reply_json_or_oom(http_res_t *res, json_t *j)
{
    if (j)
        http_res_json(res, 200, j);
    else
        http_res_error(res, 500, "out_of_memory", base_strerror(BASE_E_NOMEM));
}

void srv_h_object_info(srv_t *s, http_req_t *req, http_res_t *res)
{
    json_t *o = node_registry_object_info(s->reg, &s->env.env);
    /* LoadImage's file list must not show other users' uploads. */
    if (o)
        own_filter_object_info(s, &req->principal, o);
    reply_json_or_oom(res, o);
}

void srv_h_object_info_one(srv_t *s, http_req_t *req, http_res_t *res)
{
    json_t *o = json_new_object();
    const node_def_t *def = req->n_params > 0 ? node_registry_find(s->reg, req->params[0]) : NULL;
    if (o && def) {
        json_t *d = node_def_to_json(def, &s->env.env);
        if (!d || json_object_set(o, def->name, d)) {
            json_free(o);
            o = NULL;
        }
    }
    if (o)
        own_filter_object_info(s, &req->principal, o);
    reply_json_or_oom(res, o);
}

/* MemAvailable is what psutil reports as "available" (what ComfyUI shows as ram_free);
 * sysinfo's freeram leaves out reclaimable page cache and reads far too low. */
static bool mem_available(uint64_t *out)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return false;
    char line[256];
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            *out = (uint64_t)kb * 1024u;
            found = true;
            break;
        }
    }
    fclose(f);
    return found;
}

static void ram_info(uint64_t *total, uint64_t *avail)
{
    struct sysinfo si;
    *total = *avail = 0;
    if (sysinfo(&si) == 0) {
        *total = (uint64_t)si.totalram * si.mem_unit;
        *avail = (uint64_t)si.freeram * si.mem_unit;
    }
    mem_available(avail);
}

/* Sets every pair; false when any builder or insert failed (the object is then freed). */
static bool set_all(json_t *o, const char *const *keys, json_t **vals, size_t n)
{
    bool ok = o != NULL;
    for (size_t i = 0; i < n; i++) {
        if (ok && vals[i]) {
            if (json_object_set(o, keys[i], vals[i])) /* takes vals[i] even on failure */
                ok = false;
        } else {
            ok = false;
            json_free(vals[i]);
        }
    }
    return ok;
}

void srv_h_system_stats(srv_t *s, http_req_t *req, http_res_t *res)
{
    uint64_t total, avail;
    ram_info(&total, &avail);

    json_t *argv = json_new_array();
    if (argv &&
        (json_array_push(argv, json_new_string("weft")) || json_array_push(argv, json_new_string("serve")))) {
        json_free(argv);
        argv = NULL;
    }
    static const char *const sys_keys[] = {"os",
                                           "ram_total",
                                           "ram_free",
                                           "comfyui_version",
                                           "weft_version",
                                           "required_frontend_version",
                                           "python_version",
                                           "pytorch_version",
                                           "embedded_python",
                                           "argv"};
    json_t *sys_vals[] = {json_new_string("posix"),
                          json_new_uint(total),
                          json_new_uint(avail),
                          json_new_string(SRV_COMFYUI_VERSION),
                          json_new_string(SRV_WEFT_VERSION),
                          json_new_string(""),
                          json_new_string(""),
                          json_new_string(ts_backend_name()),
                          json_new_bool(false),
                          argv};
    json_t *sys = json_new_object();
    bool ok = set_all(sys, sys_keys, sys_vals, sizeof sys_vals / sizeof sys_vals[0]);

    /* A CPU build has one device: host memory. */
    static const char *const dev_keys[] = {
        "name", "type", "index", "vram_total", "vram_free", "torch_vram_total", "torch_vram_free"};
    json_t *dev_vals[] = {json_new_string("cpu"), json_new_string("cpu"), json_new_null(),
                          json_new_uint(total),   json_new_uint(avail),   json_new_uint(0),
                          json_new_uint(0)};
    json_t *dev = json_new_object();
    ok = set_all(dev, dev_keys, dev_vals, sizeof dev_vals / sizeof dev_vals[0]) && ok;

    json_t *devices = json_new_array();
    json_t *root = json_new_object();
    if (devices && dev) {
        ok = json_array_push(devices, dev) == 0 && ok;
        dev = NULL;
    }
    if (root && sys) {
        ok = json_object_set(root, "system", sys) == 0 && ok;
        sys = NULL;
    }
    if (root && devices) {
        ok = json_object_set(root, "devices", devices) == 0 && ok;
        devices = NULL;
    }
    /* weft's own: the models the cache holds in memory and its budget. */
    size_t files = 0, bytes = 0;
    node_models_stats(&files, &bytes);
    json_t *models = json_new_object();
    if (models && (json_object_set(models, "loaded", json_new_uint(files)) ||
                   json_object_set(models, "bytes", json_new_uint(bytes)) ||
                   json_object_set(models, "budget", json_new_uint(node_models_budget())))) {
        json_free(models);
        models = NULL;
    }
    if (root && models)
        ok = json_object_set(root, "models", models) == 0 && ok;
    else
        json_free(models);
    json_free(sys);
    json_free(dev);
    json_free(devices);
    if (!ok) {
        json_free(root);
        root = NULL;
    }
    reply_json_or_oom(res, root);
}

void srv_h_features(srv_t *s, http_req_t *req, http_res_t *res)
{
    json_t *o = json_new_object();
    if (o && (json_object_set(o, "supports_preview_metadata", json_new_bool(true)) ||
              json_object_set(o, "max_upload_size",
                              json_new_uint((uint64_t)s->cfg.max_upload_mb * 1024u * 1024u)))) {
        json_free(o);
        o = NULL;
    }
    reply_json_or_oom(res, o);
}

static char *join2(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* A JSON array of prefix + item (with the extension cut when strip_ext) for every listed
 * file. NULL on out of memory; *rc carries a listing error. */
static json_t *list_json(const char *dir, const char *const *exts, const char *prefix, bool strip_ext,
                         int *rc)
{
    node_strlist_t l;
    *rc = node_list_files(dir, exts, true, &l);
    if (*rc)
        return NULL;
    json_t *arr = json_new_array();
    base_buf_t b = BASE_BUF_INIT;
    for (size_t i = 0; arr && i < l.n; i++) {
        const char *name = l.items[i];
        size_t n = strlen(name);
        if (strip_ext) {
            /* Only a dot inside the last component starts the extension. */
            const char *slash = strrchr(name, '/');
            const char *dot = strrchr(name, '.');
            if (dot && (!slash || dot > slash + 1) && dot != name)
                n = (size_t)(dot - name);
        }
        b.len = 0;
        if (base_buf_puts(&b, prefix) || base_buf_append(&b, name, n) ||
            json_array_push(arr, json_new_stringn(b.data, b.len))) {
            json_free(arr);
            arr = NULL;
        }
    }
    if (!arr)
        *rc = BASE_E_NOMEM;
    base_buf_free(&b);
    node_strlist_free(&l);
    return arr;
}

static void reply_list(http_res_t *res, const char *dir, const char *const *exts, const char *prefix,
                       bool strip_ext)
{
    int rc;
    json_t *arr = dir ? list_json(dir, exts, prefix, strip_ext, &rc) : NULL;
    if (!dir)
        rc = BASE_E_NOMEM;
    if (arr)
        http_res_json(res, 200, arr);
    else
        http_res_error(res, base_err_http_status(rc), "list_failed", base_strerror(rc));
}

void srv_h_embeddings(srv_t *s, http_req_t *req, http_res_t *res)
{
    char *dir = join2(s->env.models_dir, "embeddings");
    reply_list(res, dir, pt_exts, "", true);
    free(dir);
}

void srv_h_extensions(srv_t *s, http_req_t *req, http_res_t *res)
{
    if (!s->cfg.frontend_dir || !*s->cfg.frontend_dir) {
        reply_json_or_oom(res, json_new_array());
        return;
    }
    static const char *const js[] = {".js", NULL};
    char *dir = join2(s->cfg.frontend_dir, "extensions");
    reply_list(res, dir, js, "/extensions/", false);
    free(dir);
}

void srv_h_models(srv_t *s, http_req_t *req, http_res_t *res)
{
    json_t *arr = json_new_array();
    for (size_t i = 0; arr && model_folders[i]; i++) {
        if (json_array_push(arr, json_new_string(model_folders[i]))) {
            json_free(arr);
            arr = NULL;
        }
    }
    reply_json_or_oom(res, arr);
}

void srv_h_models_folder(srv_t *s, http_req_t *req, http_res_t *res)
{
    const char *key = req->n_params > 0 ? req->params[0] : NULL;
    size_t i = 0;
    while (key && model_folders[i] && strcmp(model_folders[i], key) != 0)
        i++;
    if (!key || !model_folders[i]) {
        http_res_error(res, 404, "not_found", "unknown model folder");
        return;
    }
    const char *const *exts = pt_exts;
    if (strcmp(key, "configs") == 0)
        exts = yaml_exts;
    else if (strcmp(key, "classifiers") == 0)
        exts = NULL; /* weights and label files alike */
    /* key comes from the table above, never from the request, so the join cannot escape. */
    char *dir = join2(s->env.models_dir, model_folders[i]);
    reply_list(res, dir, exts, "", false);
    free(dir);
}

void srv_h_health(srv_t *s, http_req_t *req, http_res_t *res)
{
    json_t *o = json_new_object();
    if (o && json_object_set(o, "status", json_new_string("ok"))) {
        json_free(o);
        o = NULL;
    }
    reply_json_or_oom(res, o);
}
