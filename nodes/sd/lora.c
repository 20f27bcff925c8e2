/* LoRA files for SD1.5 (sd15-reference.md §7): grouping a file's keys into modules, the key
 * maps from every spelling trainers use to the weights of the loaded UNet and CLIP, and the
 * merge W' = W + strength * (alpha / rank) * (up @ down) into a store that shares every
 * tensor it does not patch with its base.
 *
 * The maps are built from the loaded component's own weight names (not from a fixed list),
 * so they cover whatever the checkpoint has, the tiny demo layout as well as SD1.5's. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "map.h"
#include "sd/lora.h"

static int fail(char *err, size_t errsz, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errsz, int code, const char *fmt, ...)
{
    if (err && errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
    }
    return code;
}

static bool starts_with(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* ================================================================== reading a file */

enum { R_UP, R_DOWN, R_MID, R_ALPHA, R_DORA };

/* §7.4's spellings of the factors after the module name. */
static const struct {
    const char *suffix;
    int role;
} suffixes[] = {
    {".lora_up.weight", R_UP},
    {".lora_down.weight", R_DOWN},
    {".lora_mid.weight", R_MID},
    {"_lora.up.weight", R_UP}, /* diffusers attention processors: to_q_lora.up.weight */
    {"_lora.down.weight", R_DOWN},
    {".lora_B.weight", R_UP}, /* PEFT */
    {".lora_A.weight", R_DOWN},
    {".lora.up.weight", R_UP},
    {".lora.down.weight", R_DOWN},
    {".lora_B", R_UP},
    {".lora_A", R_DOWN},
    {".lora_linear_layer.up.weight", R_UP},
    {".lora_linear_layer.down.weight", R_DOWN},
    {".lora_B.default.weight", R_UP},
    {".lora_A.default.weight", R_DOWN},
    {".alpha", R_ALPHA},
    {".dora_scale", R_DORA},
};

static const st_tensor_t **slot_of(lora_mod_t *m, int role)
{
    switch (role) {
    case R_UP:
        return &m->up;
    case R_DOWN:
        return &m->down;
    case R_MID:
        return &m->mid;
    case R_ALPHA:
        return &m->alpha;
    default:
        return &m->dora;
    }
}

/* Appends a copy of s to a malloc'ed string list. */
static int push_str(char ***list, size_t *n, const char *s)
{
    char **l = realloc(*list, (*n + 1) * sizeof *l);
    if (!l)
        return BASE_E_NOMEM;
    *list = l;
    if (!(l[*n] = strdup(s)))
        return BASE_E_NOMEM;
    (*n)++;
    return 0;
}

void lora_free(lora_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->mods[i].name);
        free(l->mods[i].target);
    }
    for (size_t i = 0; i < l->n_unknown; i++)
        free(l->unknown[i]);
    free(l->unknown);
    free(l->mods);
    st_close(l->f);
    free(l);
}

/* The module of name[0..len), created on first sight. */
static int module_for(lora_t *l, base_map_t *index, size_t *cap, const char *name, size_t len,
                      lora_mod_t **out)
{
    char *copy = strndup(name, len);
    if (!copy)
        return BASE_E_NOMEM;
    void *v = NULL;
    if (base_map_get(index, copy, &v)) {
        free(copy);
        *out = &l->mods[(uintptr_t)v - 1];
        return 0;
    }
    if (l->n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        lora_mod_t *m = realloc(l->mods, c * sizeof *m);
        if (!m) {
            free(copy);
            return BASE_E_NOMEM;
        }
        l->mods = m;
        *cap = c;
    }
    /* The key is the module's own name string, which lives as long as l. */
    if (base_map_put(index, copy, (void *)(uintptr_t)(l->n + 1))) {
        free(copy);
        return BASE_E_NOMEM;
    }
    l->mods[l->n] = (lora_mod_t){.name = copy, .side = -1};
    *out = &l->mods[l->n++];
    return 0;
}

/* Keys that are no factor of any module (or a second spelling of a factor already seen). */
static int stray(lora_t *l, const char *key)
{
    return push_str(&l->unknown, &l->n_unknown, key);
}

int lora_open(lora_t **out, const char *path, char *err, size_t errsz)
{
    *out = NULL;
    lora_t *l = calloc(1, sizeof *l);
    if (!l)
        return fail(err, errsz, BASE_E_NOMEM, "out of memory reading the LoRA");
    int rc = st_open(&l->f, path, err, errsz);
    if (rc) {
        free(l);
        return rc;
    }
    base_map_t index = BASE_MAP_INIT;
    size_t cap = 0, complete = 0;
    for (size_t i = 0; !rc && i < st_count(l->f); i++) {
        const st_tensor_t *e = st_at(l->f, i);
        size_t best = 0, k = 0;
        for (size_t s = 0; s < sizeof suffixes / sizeof suffixes[0]; s++) {
            size_t sl = strlen(suffixes[s].suffix);
            if (sl > best && ends_with(e->name, suffixes[s].suffix) && strlen(e->name) > sl) {
                best = sl;
                k = s;
            }
        }
        if (!best) {
            rc = stray(l, e->name);
            continue;
        }
        lora_mod_t *m = NULL;
        if ((rc = module_for(l, &index, &cap, e->name, strlen(e->name) - best, &m)))
            break;
        const st_tensor_t **slot = slot_of(m, suffixes[k].role);
        if (*slot)
            rc = stray(l, e->name);
        else
            *slot = e;
    }
    base_map_free(&index);
    for (size_t i = 0; i < l->n; i++)
        complete += l->mods[i].up && l->mods[i].down;
    if (rc) {
        lora_free(l);
        return fail(err, errsz, rc, "out of memory reading the LoRA");
    }
    if (!complete) {
        lora_free(l);
        return fail(err, errsz, BASE_E_MODEL_FORMAT,
                    "not a LoRA file: no pair of up/down factors (keys ending in .lora_up.weight/"
                    ".lora_down.weight or .lora_B.weight/.lora_A.weight); LoHa, LoKr and full-weight "
                    "diffs are not supported");
    }
    *out = l;
    return 0;
}

/* ================================================================== key maps */

struct lora_keymap_s {
    base_map_t map; /* spelling -> index + 1 into targets; keys are entries of names */
    char **names;   /* owned spellings */
    size_t n, cap;
    char **targets; /* owned store names */
    size_t nt, capt;
};

void lora_keymap_free(lora_keymap_t *m)
{
    if (!m)
        return;
    base_map_free(&m->map);
    for (size_t i = 0; i < m->n; i++)
        free(m->names[i]);
    for (size_t i = 0; i < m->nt; i++)
        free(m->targets[i]);
    free(m->names);
    free(m->targets);
    free(m);
}

const char *lora_keymap_find(const lora_keymap_t *m, const char *module)
{
    void *v = NULL;
    if (!m || !module || !base_map_get(&m->map, module, &v))
        return NULL;
    return m->targets[(uintptr_t)v - 1];
}

static int add_target(lora_keymap_t *m, const char *name)
{
    if (m->nt == m->capt) {
        size_t c = m->capt ? 2 * m->capt : 256;
        char **t = realloc(m->targets, c * sizeof *t);
        if (!t)
            return BASE_E_NOMEM;
        m->targets = t;
        m->capt = c;
    }
    if (!(m->targets[m->nt] = strdup(name)))
        return BASE_E_NOMEM;
    m->nt++;
    return 0;
}

/* Maps spelling (prefix + body, with '.' turned into '_' in body when underscore) to the
 * newest target. A spelling already taken keeps its first target. */
static int alias(lora_keymap_t *m, const char *prefix, const char *body, bool underscore)
{
    size_t pl = strlen(prefix), bl = strlen(body);
    char *s = malloc(pl + bl + 1);
    if (!s)
        return BASE_E_NOMEM;
    memcpy(s, prefix, pl);
    for (size_t i = 0; i <= bl; i++)
        s[pl + i] = underscore && body[i] == '.' ? '_' : body[i];
    if (base_map_get(&m->map, s, NULL)) {
        free(s);
        return 0;
    }
    if (m->n == m->cap) {
        size_t c = m->cap ? 2 * m->cap : 1024;
        char **n = realloc(m->names, c * sizeof *n);
        if (!n) {
            free(s);
            return BASE_E_NOMEM;
        }
        m->names = n;
        m->cap = c;
    }
    if (base_map_put(&m->map, s, (void *)(uintptr_t)m->nt)) {
        free(s);
        return BASE_E_NOMEM;
    }
    m->names[m->n++] = s;
    return 0;
}

/* "…to_out.0" -> "…to_out" (diffusers processor names drop the Sequential index). */
static int alias_with_short_out(lora_keymap_t *m, const char *prefix, const char *body)
{
    int rc = alias(m, prefix, body, false);
    if (!rc && ends_with(body, ".to_out.0")) {
        char buf[512];
        size_t n = strlen(body) - 2;
        if (n < sizeof buf) {
            memcpy(buf, body, n);
            buf[n] = '\0';
            rc = alias(m, prefix, buf, false);
        }
    }
    return rc;
}

/* The §7.2 map, computed per name: ResBlock sub-modules. */
static const char *const resnet_subs[][2] = {
    {"in_layers.0", "norm1"},  {"in_layers.2", "conv1"},  {"emb_layers.1", "time_emb_proj"},
    {"out_layers.0", "norm2"}, {"out_layers.3", "conv2"}, {"skip_connection", "conv_shortcut"},
};

static const char *resnet_sub(const char *rest)
{
    for (size_t i = 0; i < sizeof resnet_subs / sizeof resnet_subs[0]; i++)
        if (!strcmp(rest, resnet_subs[i][0]))
            return resnet_subs[i][1];
    return NULL;
}

/* "<n>.<k>.<rest>" after a block prefix; false unless both numbers and a rest are there. */
static bool block_parts(const char *s, int *n, int *k, const char **rest)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || *end != '.' || a < 0 || a > 10000)
        return false;
    s = end + 1;
    long b = strtol(s, &end, 10);
    if (end == s || *end != '.' || b < 0 || b > 100 || !end[1])
        return false;
    *n = (int)a;
    *k = (int)b;
    *rest = end + 1;
    return true;
}

static bool put_name(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool put_name(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return k > 0 && (size_t)k < cap;
}

/* A ResBlock sub-module or a transformer path under a diffusers block name. */
static bool res_or_attn(char *buf, size_t cap, const char *block, int level, int i, bool res,
                        const char *rest)
{
    if (res) {
        const char *sub = resnet_sub(rest);
        return sub && put_name(buf, cap, "%s.%d.resnets.%d.%s", block, level, i, sub);
    }
    return put_name(buf, cap, "%s.%d.attentions.%d.%s", block, level, i, rest);
}

bool lora_unet_diffusers_name(const sd_unet_config_t *cfg, const char *ldm, char *buf, size_t cap)
{
    static const char *const fixed[][2] = {
        {"time_embed.0", "time_embedding.linear_1"},
        {"time_embed.2", "time_embedding.linear_2"},
        {"input_blocks.0.0", "conv_in"},
        {"out.0", "conv_norm_out"},
        {"out.2", "conv_out"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!strcmp(ldm, fixed[i][0]))
            return put_name(buf, cap, "%s", fixed[i][1]);
    int per = cfg->num_res_blocks + 1, n, k;
    const char *rest;
    if (per < 2)
        return false;
    if (starts_with(ldm, "input_blocks.") && block_parts(ldm + 13, &n, &k, &rest) && n >= 1) {
        int level = (n - 1) / per, i = (n - 1) % per;
        if (i == cfg->num_res_blocks) /* the level's Downsample */
            return k == 0 && (!strcmp(rest, "op") || starts_with(rest, "op.")) &&
                   put_name(buf, cap, "down_blocks.%d.downsamplers.0.conv%s", level, rest + 2);
        return k <= 1 && res_or_attn(buf, cap, "down_blocks", level, i, k == 0, rest);
    }
    if (starts_with(ldm, "middle_block.")) {
        char *end;
        long b = strtol(ldm + 13, &end, 10);
        if (end == ldm + 13 || *end != '.' || !end[1])
            return false;
        rest = end + 1;
        if (b == 1)
            return put_name(buf, cap, "mid_block.attentions.0.%s", rest);
        const char *sub = resnet_sub(rest);
        return (b == 0 || b == 2) && sub && put_name(buf, cap, "mid_block.resnets.%ld.%s", b / 2, sub);
    }
    if (starts_with(ldm, "output_blocks.") && block_parts(ldm + 14, &n, &k, &rest)) {
        int level = n / per, i = n % per;
        if (k >= 1 && (!strcmp(rest, "conv") || starts_with(rest, "conv."))) /* Upsample */
            return put_name(buf, cap, "up_blocks.%d.upsamplers.0.conv%s", level, rest + 4);
        return k <= 1 && res_or_attn(buf, cap, "up_blocks", level, i, k == 0, rest);
    }
    return false;
}

typedef struct {
    lora_keymap_t *m;
    const sd_unet_config_t *cfg;
} build_t;

/* Module path of a ".weight" store name in buf; false for other tensors (biases, ...). */
static bool module_path(const char *name, char *buf, size_t cap)
{
    size_t n = strlen(name);
    if (n <= 7 || strcmp(name + n - 7, ".weight") || n - 7 >= cap)
        return false;
    memcpy(buf, name, n - 7);
    buf[n - 7] = '\0';
    return true;
}

static int unet_names(void *ctx, const char *name, ts_tensor_t *t)
{
    (void)t;
    build_t *b = ctx;
    char p[512], d[512], proc[600];
    if (!module_path(name, p, sizeof p))
        return 0;
    int rc = add_target(b->m, name);
    if (!rc)
        rc = alias(b->m, "lora_unet_", p, true);
    if (!rc)
        rc = alias(b->m, "diffusion_model.", p, false);
    if (rc || !lora_unet_diffusers_name(b->cfg, p, d, sizeof d))
        return rc;
    if (!rc)
        rc = alias(b->m, "lora_unet_", d, true);
    if (!rc)
        rc = alias(b->m, "lycoris_", d, true);
    /* diffusers/PEFT: plain and ".processor." attention names, each with and without "unet." */
    const char *to = strstr(d, ".to_");
    if (to)
        snprintf(proc, sizeof proc, "%.*s.processor%s", (int)(to - d), d, to);
    for (int pre = 0; !rc && pre < 2; pre++) {
        rc = alias_with_short_out(b->m, pre ? "unet." : "", d);
        if (!rc && to)
            rc = alias_with_short_out(b->m, pre ? "unet." : "", proc);
    }
    return rc;
}

static int clip_names(void *ctx, const char *name, ts_tensor_t *t)
{
    (void)t;
    build_t *b = ctx;
    char p[512];
    if (!module_path(name, p, sizeof p))
        return 0;
    static const char *const plain[] = {"text_encoder.", "cond_stage_model.transformer.",
                                        "text_encoders.clip_l.transformer."};
    int rc = add_target(b->m, name);
    if (!rc)
        rc = alias(b->m, "lora_te_", p, true);
    if (!rc)
        rc = alias(b->m, "lora_te1_", p, true); /* SDXL-style naming, mapped to the SD1 CLIP too */
    for (size_t i = 0; !rc && i < sizeof plain / sizeof plain[0]; i++)
        rc = alias(b->m, plain[i], p, false);
    return rc;
}

static int keymap_build(lora_keymap_t **out, const sdw_t *w, sdw_each_fn fn, const sd_unet_config_t *cfg)
{
    *out = NULL;
    lora_keymap_t *m = calloc(1, sizeof *m);
    if (!m)
        return BASE_E_NOMEM;
    build_t b = {m, cfg};
    int rc = w ? sdw_each(w, fn, &b) : BASE_E_INVAL;
    if (rc) {
        lora_keymap_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int lora_keymap_unet(lora_keymap_t **out, const sd_unet_t *u)
{
    return keymap_build(out, sd_unet_weights(u), unet_names, sd_unet_config(u));
}

int lora_keymap_clip(lora_keymap_t **out, const sd_clip_t *c)
{
    return keymap_build(out, sd_clip_weights(c), clip_names, NULL);
}

/* ================================================================== binding */

static bool looks_text_encoder(const char *name)
{
    return starts_with(name, "lora_te") || starts_with(name, "text_encoder") ||
           starts_with(name, "cond_stage_model.");
}

static int unknown_keys(lora_t *l, const lora_mod_t *m, size_t *count)
{
    const st_tensor_t *keys[] = {m->up, m->down, m->mid, m->alpha, m->dora};
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i]) {
            if (count)
                (*count)++;
            else
                rc = push_str(&l->unknown, &l->n_unknown, keys[i]->name);
        }
    return rc;
}

int lora_bind(lora_t *l, const lora_keymap_t *unet, const lora_keymap_t *clip)
{
    l->matched[0] = l->matched[1] = 0;
    l->skipped_te = 0;
    size_t dora = 0;
    for (size_t i = 0; i < l->n; i++) {
        lora_mod_t *m = &l->mods[i];
        free(m->target);
        m->target = NULL;
        m->side = -1;
        const char *t = NULL;
        if (m->up && m->down && !m->dora) {
            if ((t = lora_keymap_find(unet, m->name)))
                m->side = LORA_UNET;
            else if ((t = lora_keymap_find(clip, m->name)))
                m->side = LORA_CLIP;
        }
        dora += m->dora != NULL;
        int rc = 0;
        if (t) {
            if (!(m->target = strdup(t)))
                return BASE_E_NOMEM;
            l->matched[m->side]++;
        } else if (!clip && m->up && m->down && looks_text_encoder(m->name)) {
            unknown_keys(l, m, &l->skipped_te);
        } else if ((rc = unknown_keys(l, m, NULL))) {
            return rc;
        }
    }
    if (dora)
        BASE_LOG(WARN, "LoRA: %zu DoRA module(s) (dora_scale) are not supported and were not applied", dora);
    return 0;
}

/* ================================================================== merging */

static int tensor_of(const lora_t *l, const st_tensor_t *e, ts_tensor_t **out, char *err, size_t errsz)
{
    return st_to_tensor(l->f, e, out, err, errsz);
}

static int64_t numel_of(const st_tensor_t *e, int from)
{
    int64_t n = 1;
    for (int i = from; i < e->ndim; i++)
        n *= e->shape[i];
    return n;
}

static void shape_text(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
}

static int mismatch(const lora_mod_t *m, const int64_t *shape, int ndim, char *err, size_t errsz)
{
    char w[128], u[128], d[128], x[128] = "";
    shape_text(w, sizeof w, shape, ndim);
    shape_text(u, sizeof u, m->up->shape, m->up->ndim);
    shape_text(d, sizeof d, m->down->shape, m->down->ndim);
    if (m->mid) {
        char mid[100];
        shape_text(mid, sizeof mid, m->mid->shape, m->mid->ndim);
        snprintf(x, sizeof x, ", mid %s", mid);
    }
    return fail(err, errsz, BASE_E_MODEL_LAYOUT,
                "LoRA module '%s' does not fit weight '%s' %s: up %s, down %s%s (is this LoRA for "
                "another model?)",
                m->name, m->target ? m->target : "?", w, u, d, x);
}

/* Checks the factor shapes against the weight; *rank = down's first dim. */
static bool shapes_fit(const lora_mod_t *m, const int64_t *shape, int ndim, int64_t *rank)
{
    const st_tensor_t *u = m->up, *d = m->down, *mid = m->mid;
    if (ndim < 2 || u->ndim < 2 || d->ndim < 2 || shape[0] < 1 || shape[1] < 1)
        return false;
    int64_t out = shape[0], rest = 1, r = d->shape[0], ru = u->shape[1];
    for (int i = 1; i < ndim; i++)
        rest *= shape[i];
    for (int i = 2; i < u->ndim; i++)
        if (u->shape[i] != 1)
            return false;
    if (u->shape[0] != out || r < 1 || ru < 1 || d->shape[1] != shape[1])
        return false;
    *rank = r;
    if (!mid)
        return ru == r && numel_of(d, 1) == rest;
    /* Tucker: 1x1 down/up around a [ru, r, kh, kw] core; the weight is [out, in, kh, kw]. */
    return ndim == 4 && mid->ndim == 4 && mid->shape[0] == ru && mid->shape[1] == r &&
           numel_of(d, 1) == shape[1] && mid->shape[2] == shape[2] && mid->shape[3] == shape[3];
}

/* a [.., ..] as a 2-D [rows, numel/rows] view. */
static int as2d(ts_tensor_t **out, const ts_tensor_t *t, int64_t rows)
{
    int64_t s[2] = {rows, rows ? ts_numel(t) / rows : 0};
    return ts_reshape(out, t, s, 2);
}

/* ΔW = up @ (mid ×) down, not yet scaled, shaped like the weight. */
static int product(const lora_t *l, const lora_mod_t *m, const int64_t *shape, int ndim, int64_t r,
                   ts_tensor_t **out, char *err, size_t errsz)
{
    ts_tensor_t *u = NULL, *d = NULL, *mid = NULL, *u2 = NULL, *d2 = NULL, *t = NULL, *t2 = NULL, *p = NULL;
    int64_t ru = m->up->shape[1];
    int rc = tensor_of(l, m->up, &u, err, errsz);
    if (!rc)
        rc = tensor_of(l, m->down, &d, err, errsz);
    if (!rc && m->mid)
        rc = tensor_of(l, m->mid, &mid, err, errsz);
    if (rc)
        goto out;
    if ((rc = as2d(&u2, u, shape[0])) || (rc = as2d(&d2, d, r)))
        goto tensor_fail;
    if (mid) {
        /* core[a, b, y, x] -> [a*kh*kw, b] so core @ down gives [a, y, x, in] -> [a, in, y, x]. */
        int64_t kh = shape[2], kw = shape[3], in = shape[1];
        int perm_core[4] = {0, 2, 3, 1}, perm_back[4] = {0, 3, 1, 2};
        int64_t s4[4] = {ru, kh, kw, in};
        if ((rc = ts_permute(&t, mid, perm_core, 4)) || (rc = as2d(&t2, t, ru * kh * kw)))
            goto tensor_fail;
        ts_free(t);
        t = NULL;
        if ((rc = ts_matmul(&t, t2, d2)))
            goto tensor_fail;
        ts_free(t2);
        t2 = NULL;
        if ((rc = ts_reshape(&t2, t, s4, 4)))
            goto tensor_fail;
        ts_free(t);
        t = NULL;
        if ((rc = ts_permute(&t, t2, perm_back, 4)))
            goto tensor_fail;
        ts_free(d2);
        d2 = NULL;
        if ((rc = as2d(&d2, t, ru)))
            goto tensor_fail;
    }
    if ((rc = ts_matmul(&p, u2, d2)) || (rc = ts_reshape(out, p, shape, ndim)))
        goto tensor_fail;
    goto out;
tensor_fail:
    fail(err, errsz, rc, "LoRA module '%s': %s", m->name, ts_last_error());
out:
    ts_free(u);
    ts_free(d);
    ts_free(mid);
    ts_free(u2);
    ts_free(d2);
    ts_free(t);
    ts_free(t2);
    ts_free(p);
    return rc;
}

/* alpha / rank, or 1 without an alpha. */
static int scale_of(const lora_t *l, const lora_mod_t *m, int64_t r, double *scale, char *err, size_t errsz)
{
    *scale = 1.0;
    if (!m->alpha)
        return 0;
    if (m->alpha->numel != 1)
        return fail(err, errsz, BASE_E_MODEL_FORMAT, "LoRA key '%s' should hold one number, not %lld",
                    m->alpha->name, (long long)m->alpha->numel);
    ts_tensor_t *t = NULL;
    double a = 0;
    int rc = tensor_of(l, m->alpha, &t, err, errsz);
    if (!rc && (rc = ts_reduce_all(t, TS_REDUCE_SUM, &a)))
        fail(err, errsz, rc, "LoRA key '%s': %s", m->alpha->name, ts_last_error());
    ts_free(t);
    if (!rc && !isfinite(a))
        rc = fail(err, errsz, BASE_E_MODEL_FORMAT, "LoRA key '%s' is not a finite number", m->alpha->name);
    if (!rc)
        *scale = a / (double)r;
    return rc;
}

/* The update and its scale separately, so the merge multiplies once by strength * scale. */
static int delta_parts(const lora_t *l, const lora_mod_t *m, const int64_t *shape, int ndim,
                       ts_tensor_t **out, double *scale, char *err, size_t errsz)
{
    int64_t r = 0;
    if (!m->up || !m->down || !shapes_fit(m, shape, ndim, &r))
        return m->up && m->down ? mismatch(m, shape, ndim, err, errsz)
                                : fail(err, errsz, BASE_E_INVAL, "LoRA module '%s' lacks a factor", m->name);
    int rc = scale_of(l, m, r, scale, err, errsz);
    return rc ? rc : product(l, m, shape, ndim, r, out, err, errsz);
}

int lora_apply(const lora_t *l, lora_side_t side, double strength, const sdw_t *base, sdw_t **out, char *err,
               size_t errsz)
{
    *out = NULL;
    sdw_t *s = NULL;
    if (sdw_share(&s, base))
        return fail(err, errsz, BASE_E_NOMEM, "out of memory patching the model");
    int rc = 0;
    for (size_t i = 0; !rc && i < l->n; i++) {
        const lora_mod_t *m = &l->mods[i];
        if (m->side != (int)side || !m->target)
            continue;
        /* A second module on the same weight patches the first one's result. */
        ts_tensor_t *w = sdw_get(s, m->target), *d = NULL, *nw = NULL;
        int64_t shape[TS_MAX_DIMS];
        int nd = w ? ts_shape(w, shape) : -1;
        double scale = 1;
        if (nd < 0) {
            rc = fail(err, errsz, BASE_E_MODEL_LAYOUT, "LoRA target '%s' is not in the model", m->target);
            break;
        }
        if ((rc = delta_parts(l, m, shape, nd, &d, &scale, err, errsz)))
            break;
        if ((rc = ts_add_scaled(&nw, w, d, strength * scale)))
            fail(err, errsz, rc, "LoRA module '%s': %s", m->name, ts_last_error());
        ts_free(d);
        if (!rc)
            rc = sdw_replace(s, m->target, nw);
    }
    if (rc) {
        sdw_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ================================================================== patched holders */

/* One loaded component: exactly one of the two is set. */
typedef struct {
    sd_unet_t *unet;
    sd_clip_t *clip;
} comp_t;

static comp_t comp_of(const sdn_ckpt_t *c, lora_side_t side)
{
    return side == LORA_UNET ? (comp_t){c->unet, NULL} : (comp_t){NULL, c->clip};
}

static const sdw_t *comp_weights(comp_t c)
{
    return c.unet ? sd_unet_weights(c.unet) : sd_clip_weights(c.clip);
}

static void comp_free(comp_t c)
{
    sd_unet_free(c.unet);
    sd_clip_free(c.clip);
}

/* Loads a patched store w (taken) as a component of like's kind and head layout. */
static int comp_load(sdw_t *w, comp_t like, comp_t *out, char *err, size_t errsz)
{
    char a[32], b[32];
    *out = (comp_t){NULL, NULL};
    if (like.unet) {
        /* The checkpoint metadata's head layout, as the base was loaded with it. */
        const sd_unet_config_t *cfg = sd_unet_config(like.unet);
        bool by_channels = cfg->num_head_channels > 0;
        snprintf(a, sizeof a, "%d", cfg->num_heads);
        snprintf(b, sizeof b, "%d", cfg->num_head_channels);
        return sd_unet_load(&out->unet, w, by_channels ? NULL : a, by_channels ? b : NULL, err, errsz);
    }
    snprintf(a, sizeof a, "%d", sd_clip_config(like.clip)->heads);
    return sd_clip_load(&out->clip, w, a, err, errsz);
}

/* base patched by l (bound for side) -> *out (a new component sharing base's tensors). */
static int comp_patch(const lora_t *l, lora_side_t side, double strength, comp_t base, comp_t *out, char *err,
                      size_t errsz)
{
    sdw_t *s = NULL;
    int rc = lora_apply(l, side, strength, comp_weights(base), &s, err, errsz);
    return rc ? rc : comp_load(s, base, out, err, errsz);
}

/* A holder's recipe: the LoRA applied on top of its parent. */
typedef struct {
    sdn_ckpt_t *parent; /* reference */
    lora_side_t side;
    double strength;
    char *path, *name; /* the LoRA file (resolved) and how the user named it */
} step_t;

static void step_free(void *p)
{
    step_t *s = p;
    if (!s)
        return;
    sdn_ckpt_unref(s->parent);
    free(s->path);
    free(s->name);
    free(s);
}

/* Bytes of the tensors of mine that are not the very tensors base holds under that name. */
typedef struct {
    base_map_t base; /* name -> tensor; keys borrowed from the base store */
    size_t bytes;
} own_t;

static int own_index(void *ctx, const char *name, ts_tensor_t *t)
{
    return base_map_put(&((own_t *)ctx)->base, name, t);
}

static int own_count(void *ctx, const char *name, ts_tensor_t *t)
{
    own_t *o = ctx;
    void *b = NULL;
    if (!base_map_get(&o->base, name, &b) || b != t)
        o->bytes += (size_t)ts_numel(t) * sizeof(float);
    return 0;
}

static size_t own_bytes(const sdw_t *mine, const sdw_t *base)
{
    own_t o = {BASE_MAP_INIT, 0};
    if (base && sdw_each(base, own_index, &o)) {
        base_map_free(&o.base);
        return sdw_bytes(mine);
    }
    sdw_each(mine, own_count, &o);
    base_map_free(&o.base);
    return o.bytes;
}

/* The component of a checkpoint file, loaded privately (the root of a chain that is not
 * resident; prefixes as the checkpoint loader finds them). */
static int load_root(const char *path, lora_side_t side, comp_t *out, char *err, size_t errsz)
{
    *out = (comp_t){NULL, NULL};
    st_file_t *f = NULL;
    int rc = st_open(&f, path, err, errsz);
    if (rc)
        return rc;
    const char *prefix = NULL;
    if (side == LORA_UNET)
        prefix = st_find(f, "model.diffusion_model.input_blocks.0.0.weight") ? "model.diffusion_model."
                 : st_find(f, "input_blocks.0.0.weight")                     ? ""
                                                                             : NULL;
    else if (st_find(f, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight") ||
             st_find(f, "cond_stage_model.transformer.embeddings.token_embedding.weight"))
        prefix = "cond_stage_model.transformer.";
    sdw_t *w = NULL;
    if (!prefix)
        rc = fail(err, errsz, BASE_E_MODEL_LAYOUT, "cannot rebuild the LoRA-patched model: %s has no %s",
                  path, side == LORA_UNET ? "UNet" : "CLIP text encoder");
    else if (!(rc = sdw_from_file(&w, f, prefix, err, errsz)))
        rc = side == LORA_UNET ? sd_unet_load(&out->unet, w, st_meta(f, "unet.num_heads"),
                                              st_meta(f, "unet.num_head_channels"), err, errsz)
                               : sd_clip_load(&out->clip, w, st_meta(f, "clip.num_heads"), err, errsz);
    st_close(f);
    return rc;
}

/* One step of a rebuild: the LoRA of s on top of base. */
static int replay(const step_t *s, comp_t base, comp_t *out, char *err, size_t errsz)
{
    lora_t *l = NULL;
    lora_keymap_t *m = NULL;
    int rc = lora_open(&l, s->path, err, errsz);
    if (!rc && (rc = base.unet ? lora_keymap_unet(&m, base.unet) : lora_keymap_clip(&m, base.clip)))
        fail(err, errsz, rc, "out of memory rebuilding a LoRA-patched model");
    if (!rc && (rc = lora_bind(l, s->side == LORA_UNET ? m : NULL, s->side == LORA_CLIP ? m : NULL)))
        fail(err, errsz, rc, "out of memory rebuilding a LoRA-patched model");
    if (!rc)
        rc = comp_patch(l, s->side, s->strength, base, out, err, errsz);
    lora_keymap_free(m);
    lora_free(l);
    return rc;
}

static int reload(sdn_ckpt_t *c, char *err, size_t errsz);

/* Rebuilds c after the cache unloaded it. Runs under the model cache lock (it calls reload
 * callbacks with the lock held), so residency and the components of the ancestors read here
 * cannot change meanwhile; nothing here takes that lock. */
static int reload(sdn_ckpt_t *c, char *err, size_t errsz)
{
    const step_t *s0 = c->reload_ctx;
    lora_side_t side = s0->side;
    /* Steps from c up to the nearest ancestor whose component is in memory, or to the root. */
    size_t n = 0, cap = 8;
    const step_t **steps = malloc(cap * sizeof *steps);
    if (!steps)
        return fail(err, errsz, BASE_E_NOMEM, "out of memory rebuilding a LoRA-patched model");
    const sdn_ckpt_t *h = c;
    comp_t have = {NULL, NULL};
    for (;;) {
        const step_t *s = h->reload_ctx;
        if (n == cap) {
            const step_t **g = realloc(steps, 2 * cap * sizeof *g);
            if (!g) {
                free(steps);
                return fail(err, errsz, BASE_E_NOMEM, "out of memory rebuilding a LoRA-patched model");
            }
            steps = g;
            cap *= 2;
        }
        steps[n++] = s;
        h = s->parent;
        have = h->resident ? comp_of(h, side) : (comp_t){NULL, NULL};
        if (have.unet || have.clip || h->reload != reload)
            break;
    }
    bool borrowed = have.unet || have.clip;
    comp_t cur = have;
    int rc = borrowed ? 0 : load_root(h->path, side, &cur, err, errsz);
    for (size_t i = n; !rc && i-- > 0;) {
        comp_t next;
        rc = replay(steps[i], cur, &next, err, errsz);
        if (!borrowed || i + 1 < n)
            comp_free(cur); /* an intermediate of ours; next holds what it needs */
        cur = rc ? (comp_t){NULL, NULL} : next;
    }
    free(steps);
    if (rc)
        return rc;
    c->unet = cur.unet;
    c->clip = cur.clip;
    c->bytes = own_bytes(comp_weights(cur), borrowed ? comp_weights(have) : NULL);
    c->shares_parent = borrowed && n == 1; /* built directly on the resident parent */
    return 0;
}

int lora_holder_new(sdn_ckpt_t *parent, const lora_t *l, lora_side_t side, double strength,
                    const char *lora_path, const char *lora_name, sdn_ckpt_t **out, char *err, size_t errsz)
{
    *out = NULL;
    comp_t base = comp_of(parent, side);
    if (!base.unet && !base.clip)
        return fail(err, errsz, BASE_E_INVAL, "the input has no %s to apply the LoRA to",
                    side == LORA_UNET ? "UNet" : "CLIP text encoder");
    char name[1024];
    snprintf(name, sizeof name, "%s + %s", parent->name, lora_name);
    step_t *s = calloc(1, sizeof *s);
    sdn_ckpt_t *c = s ? sdn_ckpt_new(parent->path, name) : NULL;
    if (!c || !(s->path = strdup(lora_path)) || !(s->name = strdup(lora_name))) {
        sdn_ckpt_unref(c);
        step_free(s);
        return fail(err, errsz, BASE_E_NOMEM, "out of memory patching the model");
    }
    s->parent = sdn_ckpt_ref(parent);
    s->side = side;
    s->strength = strength;
    c->reload = reload;
    c->reload_ctx = s;
    c->reload_ctx_free = step_free;
    c->have = side == LORA_UNET ? SDN_UNET : SDN_CLIP;
    comp_t mine;
    int rc = comp_patch(l, side, strength, base, &mine, err, errsz);
    if (rc) {
        sdn_ckpt_unref(c);
        return rc;
    }
    c->unet = mine.unet;
    c->clip = mine.clip;
    c->bytes = own_bytes(comp_weights(mine), comp_weights(base));
    c->parent = parent;
    c->shares_parent = true;
    sdn_ckpt_adopt(c);
    *out = c;
    return 0;
}
