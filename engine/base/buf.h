/* Any thread (no shared state). Growable byte buffer, always NUL-terminated after len. */
#ifndef WEFT_BASE_BUF_H
#define WEFT_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char *data; /* owned; NULL until the first append */
    size_t len;
    size_t cap;
} base_buf_t;

#define BASE_BUF_INIT {NULL, 0, 0}

/* All return 0 or BASE_E_NOMEM; on failure the buffer is unchanged. */
int base_buf_reserve(base_buf_t *b, size_t extra);
int base_buf_append(base_buf_t *b, const void *p, size_t n);
int base_buf_puts(base_buf_t *b, const char *s);
int base_buf_putc(base_buf_t *b, char c);
int base_buf_printf(base_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int base_buf_vprintf(base_buf_t *b, const char *fmt, va_list ap);
/* Hands the data to the caller (who frees it; "" when empty) and resets b. NULL on OOM. */
char *base_buf_take(base_buf_t *b);
void base_buf_free(base_buf_t *b);

#endif
