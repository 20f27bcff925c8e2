/* `weft serve` options: defaults first, then the command line (comfyui-api.md 11 names). */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"

static void usage(FILE *f)
{
    fputs("usage: weft serve [options]\n"
          "\n"
          "  --listen ADDR           address to bind (default 127.0.0.1; \"::\" or 0.0.0.0 for all)\n"
          "  --port N                port (default 8188; 0 picks a free one, printed at start)\n"
          "  --base-dir DIR          models/, input/, output/, temp/, user/ and weft.db (default weft-data)\n"
          "  --max-upload-size MB    largest request body accepted (default 100)\n"
          "  --preview-method M      latent previews while sampling: auto or latent2rgb (the\n"
          "                          default: a cheap latent-to-RGB projection) or none\n"
          "  --model-memory MB       memory for loaded models (default: half of RAM); the least\n"
          "                          recently used models not in use are unloaded to stay within it\n"
          "  --frontend DIR          editor files served at / (default frontend/dist when present)\n"
          "  --no-auth               no authentication: every request acts as admin \"local\";\n"
          "                          refused unless --listen is a loopback address\n"
          "  --trust-proxy           behind a reverse proxy: take the client address from\n"
          "                          X-Forwarded-For and the public host and scheme from\n"
          "                          X-Forwarded-Host/-Proto (only when the proxy sets them)\n"
          "  --lanes N               executor threads: independent nodes, and prompts of\n"
          "                          different users, run at once on up to N (1-64; default 1\n"
          "                          on CPU builds with fewer than 8 cores, else 2)\n"
          "  --lanes-heavy N         heavy nodes (samplers, VAE, model loads) at once; default 0:\n"
          "                          a second one starts only while the loaded models leave\n"
          "                          half of the model memory budget free\n"
          "  --quiet                 log warnings and errors only\n"
          "  --help\n",
          f);
}

/* A whole decimal integer in [lo, hi]. */
static bool parse_int(const char *s, long long lo, long long hi, long long *out)
{
    if (!s || !*s)
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool valid_addr(const char *a)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, a, buf) == 1 || inet_pton(AF_INET6, a, buf) == 1;
}

/* 127.0.0.0/8, ::1 and IPv4-mapped 127.x: addresses no other machine can reach. */
static bool is_loopback_addr(const char *a)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, a, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, a, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false;
}

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* "--name value" or "--name=value"; *i advances past a separate value. NULL when absent. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, bool *matched)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    *matched = false;
    if (strncmp(a, name, n))
        return NULL;
    if (a[n] == '=') {
        *matched = true;
        return a + n + 1;
    }
    if (a[n])
        return NULL;
    *matched = true;
    if (*i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

/* One lane where a second would only split the cores of a small CPU machine between two
 * samplers; two where there is room to overlap (a model load beside sampling, two users).
 * A CUDA build is known from the backend's static description (libtorch is not loaded). */
static unsigned default_lanes(void)
{
    if (strstr(ts_backend_name(), "(CUDA)"))
        return 2;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores >= 8 ? 2 : 1;
}

int srv_config_parse(srv_config_t *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    c->listen = "127.0.0.1";
    c->port = 8188;
    c->base_dir = "weft-data";
    c->max_upload_mb = 100;
    c->previews = true;
    c->frontend_dir = is_dir("frontend/dist") ? "frontend/dist" : NULL;
    c->lanes = default_lanes();
    http_limits_init(&c->http);
    ws_limits_init(&c->ws);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        bool m;
        long long n;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            c->quiet = true;
        } else if (!strcmp(a, "--no-auth")) {
            c->no_auth = true;
        } else if (!strcmp(a, "--trust-proxy")) {
            c->trust_proxy = true;
        } else if ((v = opt_value(argc, argv, &i, "--listen", &m)), m) {
            if (!v || !*v) {
                fprintf(stderr, "weft serve: --listen needs an address\n");
                return 2;
            }
            if (!strcmp(v, "localhost"))
                v = "127.0.0.1";
            if (!valid_addr(v)) {
                fprintf(stderr, "weft serve: --listen '%s' is not an IPv4 or IPv6 address\n", v);
                return 2;
            }
            c->listen = v;
        } else if ((v = opt_value(argc, argv, &i, "--port", &m)), m) {
            if (!parse_int(v, 0, 65535, &n)) {
                fprintf(stderr, "weft serve: --port needs a number from 0 to 65535%s%s%s\n", v ? " (got '" : "",
                        v ? v : "", v ? "')" : "");
                return 2;
            }
            c->port = (int)n;
        } else if ((v = opt_value(argc, argv, &i, "--base-dir", &m)), m) {
            if (!v || !*v) {
                fprintf(stderr, "weft serve: --base-dir needs a folder\n");
                return 2;
            }
            c->base_dir = v;
        } else if ((v = opt_value(argc, argv, &i, "--max-upload-size", &m)), m) {
            /* MB as ComfyUI counts them (MiB); bounded so the byte count cannot overflow. */
            if (!parse_int(v, 1, 1 << 20, &n)) {
                fprintf(stderr, "weft serve: --max-upload-size needs a whole number of MB from 1 to %d%s%s%s\n",
                        1 << 20, v ? " (got '" : "", v ? v : "", v ? "')" : "");
                return 2;
            }
            c->max_upload_mb = (size_t)n;
        } else if ((v = opt_value(argc, argv, &i, "--model-memory", &m)), m) {
            if (!parse_int(v, 1, 1ll << 30, &n)) {
                fprintf(stderr, "weft serve: --model-memory needs a whole number of MB%s%s%s\n", v ? " (got '" : "",
                        v ? v : "", v ? "')" : "");
                return 2;
            }
            c->model_memory_mb = (size_t)n;
        } else if ((v = opt_value(argc, argv, &i, "--preview-method", &m)), m) {
            if (v && (!strcmp(v, "auto") || !strcmp(v, "latent2rgb"))) {
                c->previews = true;
            } else if (v && !strcmp(v, "none")) {
                c->previews = false;
            } else {
                fprintf(stderr, "weft serve: --preview-method must be auto, latent2rgb or none%s%s%s\n",
                        v ? " (got '" : "", v ? v : "", v ? "')" : "");
                return 2;
            }
        } else if ((v = opt_value(argc, argv, &i, "--lanes", &m)), m) {
            if (!parse_int(v, 1, 64, &n)) {
                fprintf(stderr, "weft serve: --lanes needs a number from 1 to 64%s%s%s\n", v ? " (got '" : "",
                        v ? v : "", v ? "')" : "");
                return 2;
            }
            c->lanes = (unsigned)n;
        } else if ((v = opt_value(argc, argv, &i, "--lanes-heavy", &m)), m) {
            if (!parse_int(v, 0, 64, &n)) {
                fprintf(stderr, "weft serve: --lanes-heavy needs a number from 0 to 64%s%s%s\n",
                        v ? " (got '" : "", v ? v : "", v ? "')" : "");
                return 2;
            }
            c->lanes_heavy = (unsigned)n;
        } else if ((v = opt_value(argc, argv, &i, "--frontend", &m)), m) {
            if (!v || !*v) {
                fprintf(stderr, "weft serve: --frontend needs a folder\n");
                return 2;
            }
            if (!is_dir(v)) {
                fprintf(stderr, "weft serve: --frontend '%s' is not a folder\n", v);
                return 2;
            }
            c->frontend_dir = v;
        } else {
            fprintf(stderr, "weft serve: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (c->no_auth && !is_loopback_addr(c->listen)) {
        fprintf(stderr, "weft serve: --no-auth is only allowed when listening on loopback (use --listen 127.0.0.1)\n");
        return 2;
    }
    c->http.max_body_bytes = c->max_upload_mb << 20;
    return 0;
}
