/* The values SD nodes pass each other: MODEL/CLIP/VAE objects over a loaded checkpoint,
 * CONDITIONING lists and LATENT dicts (shapes as ComfyUI's, sd15-reference.md §3.4). */
#include <stdlib.h>
#include <string.h>

#include "sd/sd_nodes.h"

static const char TAG_MODEL[] = "MODEL", TAG_CLIP[] = "CLIP", TAG_VAE[] = "VAE";

static void free_model(void *p)
{
    sdn_model_t *m = p;
    sdn_ckpt_unref(m->ck);
    free(m);
}

static void free_clip(void *p)
{
    sdn_clip_t *c = p;
    sdn_ckpt_unref(c->ck);
    free(c);
}

static void free_vae(void *p)
{
    sdn_vae_t *v = p;
    sdn_ckpt_unref(v->ck);
    free(v);
}

node_value_t *sdn_model_value(sdn_ckpt_t *ck)
{
    sdn_model_t *m = calloc(1, sizeof *m);
    if (!m) {
        sdn_ckpt_unref(ck);
        return NULL;
    }
    m->ck = ck;
    return node_value_object(m, free_model, TAG_MODEL);
}

node_value_t *sdn_clip_value(sdn_ckpt_t *ck, int layer)
{
    sdn_clip_t *c = calloc(1, sizeof *c);
    if (!c) {
        sdn_ckpt_unref(ck);
        return NULL;
    }
    c->ck = ck;
    c->layer_idx = layer;
    return node_value_object(c, free_clip, TAG_CLIP);
}

node_value_t *sdn_vae_value(sdn_ckpt_t *ck)
{
    sdn_vae_t *v = calloc(1, sizeof *v);
    if (!v) {
        sdn_ckpt_unref(ck);
        return NULL;
    }
    v->ck = ck;
    return node_value_object(v, free_vae, TAG_VAE);
}

static void *in_object(const node_ctx_t *ctx, const char *name, const char *tag)
{
    const node_value_t *v = node_in(ctx, name);
    if (!v || v->kind != NODE_V_OBJECT || !v->u.obj.tag || strcmp(v->u.obj.tag, tag) != 0)
        return NULL;
    return v->u.obj.ptr;
}

const sdn_model_t *sdn_in_model(const node_ctx_t *ctx, const char *name)
{
    return in_object(ctx, name, TAG_MODEL);
}

const sdn_clip_t *sdn_in_clip(const node_ctx_t *ctx, const char *name)
{
    return in_object(ctx, name, TAG_CLIP);
}

const sdn_vae_t *sdn_in_vae(const node_ctx_t *ctx, const char *name)
{
    return in_object(ctx, name, TAG_VAE);
}

/* ------------------------------------------------------------------ CONDITIONING */

node_value_t *sdn_cond_value(ts_tensor_t *cond, ts_tensor_t *pooled)
{
    /* Constructors and setters take their arguments even when they fail. */
    node_value_t *c = node_value_tensor(cond), *p = pooled ? node_value_tensor(pooled) : node_value_none();
    node_value_t *list = node_value_list(1), *pair = node_value_list(2), *extra = node_value_dict(1);
    if (!c || !p || !list || !pair || !extra) {
        node_value_unref(c);
        node_value_unref(p);
        node_value_unref(extra);
        node_value_unref(pair);
        node_value_unref(list);
        return NULL;
    }
    if (node_value_dict_set(extra, 0, "pooled_output", p)) {
        node_value_unref(c);
        node_value_unref(extra);
        node_value_unref(pair);
        node_value_unref(list);
        return NULL;
    }
    node_value_list_set(pair, 0, c);
    node_value_list_set(pair, 1, extra);
    node_value_list_set(list, 0, pair);
    return list;
}

size_t sdn_cond_count(const node_value_t *v)
{
    return v && v->kind == NODE_V_LIST ? v->u.list.n : 0;
}

ts_tensor_t *sdn_cond_at(const node_value_t *v, size_t i)
{
    if (i >= sdn_cond_count(v))
        return NULL;
    const node_value_t *pair = v->u.list.items[i];
    if (!pair || pair->kind != NODE_V_LIST || pair->u.list.n < 1 || !pair->u.list.items[0] ||
        pair->u.list.items[0]->kind != NODE_V_TENSOR)
        return NULL;
    return pair->u.list.items[0]->u.t;
}

/* ------------------------------------------------------------------ LATENT */

node_value_t *sdn_latent_with_mask(const node_value_t *like, ts_tensor_t *samples, ts_tensor_t *mask)
{
    size_t extra = 0;
    bool like_dict = like && like->kind == NODE_V_DICT;
    if (like_dict)
        for (size_t i = 0; i < like->u.list.n; i++)
            if (strcmp(like->u.list.keys[i], "samples") && !(mask && !strcmp(like->u.list.keys[i], "noise_mask")))
                extra++;
    node_value_t *d = node_value_dict(1 + extra + (mask ? 1 : 0));
    node_value_t *s = node_value_tensor(samples);
    node_value_t *m = mask ? node_value_tensor(mask) : NULL;
    if (!d || !s || (mask && !m)) {
        node_value_unref(d);
        node_value_unref(s);
        node_value_unref(m);
        return NULL;
    }
    if (node_value_dict_set(d, 0, "samples", s)) {
        node_value_unref(d);
        node_value_unref(m);
        return NULL;
    }
    size_t k = 1;
    if (like_dict)
        for (size_t i = 0; i < like->u.list.n; i++) {
            const char *key = like->u.list.keys[i];
            if (!strcmp(key, "samples") || (mask && !strcmp(key, "noise_mask")))
                continue;
            if (node_value_dict_set(d, k++, key, node_value_ref(like->u.list.items[i]))) {
                node_value_unref(d);
                node_value_unref(m);
                return NULL;
            }
        }
    if (m && node_value_dict_set(d, k, "noise_mask", m)) {
        node_value_unref(d);
        return NULL;
    }
    return d;
}

node_value_t *sdn_latent_value(const node_value_t *like, ts_tensor_t *samples)
{
    return sdn_latent_with_mask(like, samples, NULL);
}

ts_tensor_t *sdn_latent_samples(const node_value_t *latent)
{
    const node_value_t *s = latent ? node_value_dict_get(latent, "samples") : NULL;
    return s && s->kind == NODE_V_TENSOR ? s->u.t : NULL;
}

int sdn_out_tensor(node_ctx_t *ctx, size_t i, ts_tensor_t *t)
{
    node_value_t *v = node_value_tensor(t);
    if (!v)
        return node_fail(ctx, "out of memory");
    node_set_out(ctx, i, v);
    return 0;
}

void sdn_swap(ts_tensor_t **t, ts_tensor_t *tmp)
{
    ts_free(*t);
    *t = tmp;
}
