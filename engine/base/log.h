/* Any thread. Levelled logging that costs one comparison when a level is off. */
#ifndef WEFT_BASE_LOG_H
#define WEFT_BASE_LOG_H

typedef enum { BASE_LOG_DEBUG, BASE_LOG_INFO, BASE_LOG_WARN, BASE_LOG_ERROR, BASE_LOG_OFF } base_log_level_t;

extern base_log_level_t base_log_threshold; /* default INFO; set once at startup */

/* Sink: receives the formatted line without trailing newline. Default writes to stderr
 * as "LEVEL file:line message". Tests may install a capture sink. */
typedef void (*base_log_sink_cb)(base_log_level_t lvl, const char *file, int line, const char *msg);
void base_log_set_sink(base_log_sink_cb sink); /* NULL restores the default */

void base_log_write(base_log_level_t lvl, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define BASE_LOG(lvl, ...)                                                                    \
    do {                                                                                      \
        if (BASE_LOG_##lvl >= base_log_threshold)                                             \
            base_log_write(BASE_LOG_##lvl, __FILE__, __LINE__, __VA_ARGS__);                  \
    } while (0)

#endif
