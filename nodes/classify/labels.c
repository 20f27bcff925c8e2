/* Class names for a classifier, from a file beside the model: one label per line, or a JSON
 * list (or torchvision's {"0": ["n01440764", "tench"], ...} index). Errors name the file and
 * line, because a labels file is typically written by hand. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "classify/classify.h"
#include "err.h"
#include "json.h"
#include "path.h"

#define LABELS_MAX_BYTES (64u << 20)
#define LABELS_MAX_COUNT 1000000

void cls_labels_free(cls_labels_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    free(l->path);
    memset(l, 0, sizeof *l);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static bool ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

static int push(cls_labels_t *l, size_t *cap, const char *s, size_t n)
{
    if (l->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        char **items = realloc(l->items, nc * sizeof *items);
        if (!items)
            return BASE_E_NOMEM;
        l->items = items;
        *cap = nc;
    }
    if (!(l->items[l->n] = strndup(s, n)))
        return BASE_E_NOMEM;
    l->n++;
    return 0;
}

/* ------------------------------------------------------------------ text */

static int parse_text(const char *path, const char *text, size_t len, cls_labels_t *l, char *err, size_t errsz)
{
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        len -= 3;
    }
    if (memchr(text, '\0', len)) {
        snprintf(err, errsz, "labels file %s is not text (it contains NUL bytes)", base_name(path));
        return BASE_E_MODEL_FORMAT;
    }
    /* Trailing blank lines (a final newline, an editor's extra ones) are not labels. */
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    size_t cap = 0, line = 0;
    const char *p = text, *end = text + len;
    while (len && p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        line++;
        const char *a = p, *b = e;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (a == b) {
            snprintf(err, errsz, "labels file %s: line %zu is empty (one label per line; every class of the "
                                 "model needs one)", base_name(path), line);
            return BASE_E_MODEL_FORMAT;
        }
        if (l->n >= LABELS_MAX_COUNT) {
            snprintf(err, errsz, "labels file %s has more than %d lines", base_name(path), LABELS_MAX_COUNT);
            return BASE_E_MODEL_FORMAT;
        }
        if (push(l, &cap, a, (size_t)(b - a)))
            return BASE_E_NOMEM;
        if (!nl)
            break;
        p = nl + 1;
    }
    if (!l->n) {
        snprintf(err, errsz, "labels file %s is empty", base_name(path));
        return BASE_E_MODEL_FORMAT;
    }
    return 0;
}

/* ------------------------------------------------------------------ JSON */

/* A label value: a string, or [id, name] of torchvision's class index (the name is used). */
static const char *json_label(const json_t *v)
{
    if (json_is_string(v))
        return json_str(v);
    if (v && v->type == JSON_ARRAY && json_len(v) == 2 && json_is_string(json_at(v, 1)))
        return json_str(json_at(v, 1));
    return NULL;
}

static int parse_json(const char *path, const char *text, size_t len, cls_labels_t *l, char *err, size_t errsz)
{
    json_t *j = NULL;
    char jerr[160];
    int rc = json_parse(text, len, &j, jerr, sizeof jerr);
    if (rc == BASE_E_NOMEM)
        return rc;
    if (rc) {
        snprintf(err, errsz, "labels file %s is not valid JSON: %s", base_name(path), jerr);
        return BASE_E_MODEL_FORMAT;
    }
    size_t n = json_len(j), cap = 0;
    bool obj = j->type == JSON_OBJECT;
    if ((j->type != JSON_ARRAY && !obj) || n == 0) {
        snprintf(err, errsz, "labels file %s must hold a non-empty JSON list of label strings", base_name(path));
        json_free(j);
        return BASE_E_MODEL_FORMAT;
    }
    for (size_t i = 0; !rc && i < n; i++) {
        const json_t *v = json_at(j, i);
        if (obj) {
            /* {"0": ..., "1": ...}: every index once, in any key order. */
            char want[32];
            snprintf(want, sizeof want, "%zu", i);
            v = json_object_get(j, want);
            if (!v) {
                snprintf(err, errsz, "labels file %s: the object has no key \"%s\" (keys must be 0 to %zu)",
                         base_name(path), want, n - 1);
                rc = BASE_E_MODEL_FORMAT;
                break;
            }
        }
        const char *s = json_label(v);
        if (!s || !*s) {
            if (obj)
                snprintf(err, errsz, "labels file %s: entry \"%zu\" is not a label string or [id, label] pair",
                         base_name(path), i);
            else
                snprintf(err, errsz, "labels file %s: item %zu of the list is not a non-empty string",
                         base_name(path), i);
            rc = BASE_E_MODEL_FORMAT;
            break;
        }
        rc = push(l, &cap, s, strlen(s));
    }
    json_free(j);
    return rc;
}

/* ------------------------------------------------------------------ files */

int cls_labels_load(const char *path, cls_labels_t *out, char *err, size_t errsz)
{
    if (!path || !out)
        return BASE_E_INVAL;
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    int rc = base_read_file(path, LABELS_MAX_BYTES, &text, &len);
    if (rc) {
        if (rc == BASE_E_TOOBIG)
            snprintf(err, errsz, "labels file %s is larger than %u MiB", base_name(path), LABELS_MAX_BYTES >> 20);
        else
            snprintf(err, errsz, "cannot read labels file %s: %s", base_name(path), base_strerror(rc));
        return rc;
    }
    if (ends_with_ci(path, ".json"))
        rc = parse_json(path, text, len, out, err, errsz);
    else
        rc = parse_text(path, text, len, out, err, errsz);
    free(text);
    if (!rc && !(out->path = strdup(path)))
        rc = BASE_E_NOMEM;
    if (rc == BASE_E_NOMEM)
        snprintf(err, errsz, "out of memory reading labels file %s", base_name(path));
    if (rc)
        cls_labels_free(out);
    return rc;
}

int cls_labels_for_model(const char *model_path, size_t num_classes, cls_labels_t *out, char *err,
                         size_t errsz)
{
    static const char *const suffixes[] = {".labels.txt", ".txt", ".labels.json", ".json"};
    if (!model_path || !out)
        return BASE_E_INVAL;
    memset(out, 0, sizeof *out);
    const char *name = base_name(model_path), *dot = strrchr(name, '.');
    size_t stem = dot && dot != name ? (size_t)(dot - model_path) : strlen(model_path);
    char cand[PATH_MAX];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        if ((size_t)snprintf(cand, sizeof cand, "%.*s%s", (int)stem, model_path, suffixes[i]) >= sizeof cand) {
            snprintf(err, errsz, "the model path is too long");
            return BASE_E_INVAL;
        }
        struct stat st;
        if (stat(cand, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        int rc = cls_labels_load(cand, out, err, errsz);
        if (rc)
            return rc;
        if (out->n != num_classes) {
            snprintf(err, errsz, "labels file %s has %zu labels but the classifier has %zu classes (one label per "
                                 "class, in class order)", base_name(cand), out->n, num_classes);
            cls_labels_free(out);
            return BASE_E_MODEL_FORMAT;
        }
        return 0;
    }
    int sn = (int)(stem - (size_t)(name - model_path));
    snprintf(err, errsz, "no labels file for %s: put the class names, one per line, in %.*s.labels.txt (or %.*s.txt, "
                         "or a JSON list in %.*s.labels.json or %.*s.json) beside it",
             name, sn, name, sn, name, sn, name, sn, name);
    return BASE_E_NOENT;
}
