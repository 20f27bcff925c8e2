/* weft: the command line. Subcommands wire graphs, engine and nodes together; `weft serve`
 * runs the HTTP/WebSocket server. */
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "srv_auth.h"

static void usage(FILE *f)
{
    fputs("usage: weft <command> [options]\n"
          "\n"
          "commands:\n"
          "  run WORKFLOW       run a UI- or API-format workflow (or a PNG carrying one) headless\n"
          "  validate WORKFLOW  print the validation result as JSON; exit 1 when invalid\n"
          "  serve [options]    start the HTTP/WebSocket server (weft serve --help)\n"
          "  nodes [--json]     list node classes (--json: the /object_info document)\n"
          "  demo-model         write a random-weight SD1.5-layout checkpoint (weft demo-model --help)\n"
          "  keys ...           API keys: create, list, revoke (weft keys --help)\n"
          "  users ...          users: add, list, disable, enable, passwd, role (weft users --help)\n"
          "  audit [--limit N]  the audit log as JSON lines, newest first\n"
          "  routes [--json]    every server route and the scopes it needs\n"
          "\n"
          "common options:\n"
          "  --base-dir DIR     models/, input/, output/, temp/ live here (default ./weft-data)\n"
          "  --help, --version\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("weft 0.1.0 (%s)\n", ts_backend_name());
        return 0;
    }
    if (!strcmp(cmd, "serve"))
        return srv_cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "run"))
        return srv_cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "validate"))
        return srv_cmd_validate(argc - 1, argv + 1);
    if (!strcmp(cmd, "nodes"))
        return srv_cmd_nodes(argc - 1, argv + 1);
    if (!strcmp(cmd, "demo-model"))
        return srv_cmd_demo_model(argc - 1, argv + 1);
    if (!strcmp(cmd, "keys"))
        return srv_cmd_keys(argc - 1, argv + 1);
    if (!strcmp(cmd, "users"))
        return srv_cmd_users(argc - 1, argv + 1);
    if (!strcmp(cmd, "audit"))
        return srv_cmd_audit(argc - 1, argv + 1);
    if (!strcmp(cmd, "routes"))
        return srv_cmd_routes(argc - 1, argv + 1);
    fprintf(stderr, "weft: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}

#if defined(__SANITIZE_ADDRESS__)
/* libtorch's worker threads use dynamic TLS, which LeakSanitizer's exit-time scan of
 * intercepted __tls_get_addr blocks crashes on ("Tracer caught signal 11"); without the
 * interception leaks are still found. Read by the ASan runtime at start-up. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "intercept_tls_get_addr=0";
}
#endif
