#include "err.h"

#include <stddef.h>

typedef struct {
    int code;
    int http;
    const char *name;
    const char *msg;
} err_row_t;

static const err_row_t rows[] = {
#define BASE_ERR_ROW_(name, code, http, msg) {code, http, #name, msg},
    BASE_ERR_MAP(BASE_ERR_ROW_)
#undef BASE_ERR_ROW_
};

static const err_row_t *find(int code)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i].code == code)
            return &rows[i];
    return NULL;
}

const char *base_strerror(int code)
{
    const err_row_t *r = find(code);
    return r ? r->msg : "unknown error";
}

const char *base_err_name(int code)
{
    const err_row_t *r = find(code);
    return r ? r->name : "UNKNOWN";
}

int base_err_http_status(int code)
{
    const err_row_t *r = find(code);
    return r ? r->http : 500;
}
