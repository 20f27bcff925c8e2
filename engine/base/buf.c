#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

int base_buf_reserve(base_buf_t *b, size_t extra)
{
    /* +1 keeps room for the terminating NUL the header promises. */
    if (extra > SIZE_MAX - b->len - 1)
        return BASE_E_NOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return BASE_E_NOMEM;
    if (!b->data)
        p[0] = '\0';
    b->data = p;
    b->cap = cap;
    return 0;
}

int base_buf_append(base_buf_t *b, const void *p, size_t n)
{
    int rc = base_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int base_buf_puts(base_buf_t *b, const char *s)
{
    return base_buf_append(b, s, strlen(s));
}

int base_buf_putc(base_buf_t *b, char c)
{
    return base_buf_append(b, &c, 1);
}

int base_buf_vprintf(base_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return BASE_E_INVAL;
    if ((size_t)n < sizeof small)
        return base_buf_append(b, small, (size_t)n);
    int rc = base_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_copy(ap2, ap);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
    return 0;
}

int base_buf_printf(base_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = base_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *base_buf_take(base_buf_t *b)
{
    char *p = b->data;
    if (!p) {
        p = malloc(1);
        if (!p)
            return NULL;
        p[0] = '\0';
    }
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void base_buf_free(base_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
