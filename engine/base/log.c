#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

base_log_level_t base_log_threshold = BASE_LOG_INFO;

static const char *level_name(base_log_level_t lvl)
{
    switch (lvl) {
    case BASE_LOG_DEBUG: return "DEBUG";
    case BASE_LOG_INFO: return "INFO";
    case BASE_LOG_WARN: return "WARN";
    case BASE_LOG_ERROR: return "ERROR";
    default: return "LOG";
    }
}

static void default_sink(base_log_level_t lvl, const char *file, int line, const char *msg)
{
    /* One fprintf per line: stdio locks the stream per call, so lines from threads don't interleave. */
    fprintf(stderr, "%s %s:%d %s\n", level_name(lvl), file, line, msg);
}

/* Set at startup or by tests while other threads may be logging. */
static _Atomic(base_log_sink_cb) current_sink = default_sink;

void base_log_set_sink(base_log_sink_cb sink)
{
    atomic_store(&current_sink, sink ? sink : default_sink);
}

void base_log_write(base_log_level_t lvl, const char *file, int line, const char *fmt, ...)
{
    if (lvl < base_log_threshold || lvl >= BASE_LOG_OFF)
        return;
    char small[512];
    char *msg = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof small) {
        /* Long messages are rare (dumped JSON); fall back to the truncated text if OOM. */
        char *big = malloc((size_t)n + 1);
        if (big) {
            va_start(ap, fmt);
            vsnprintf(big, (size_t)n + 1, fmt, ap);
            va_end(ap);
            msg = big;
        }
    }
    /* A message ending in a newline would produce an empty line after it. */
    size_t len = (msg == small && (size_t)n >= sizeof small) ? sizeof small - 1 : (size_t)n;
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
        msg[--len] = '\0';
    base_log_sink_cb sink = atomic_load(&current_sink);
    sink(lvl, file ? file : "?", line, msg);
    if (msg != small)
        free(msg);
}
