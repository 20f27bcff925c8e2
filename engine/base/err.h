/* Any thread. The one error table of weft: every function that can fail returns 0 or a
 * negative code from this table. Codes are grouped in bands per layer so a log line tells
 * which layer failed: base -1..-999, graph -1000, node -2000 (models -2100), tensor -3000, engine -4000,
 * server -5000, auth -6000. Each row: name, HTTP status, message. */
#ifndef WEFT_BASE_ERR_H
#define WEFT_BASE_ERR_H

#define BASE_ERR_MAP(XX)                                                              \
    XX(OK, 0, 200, "success")                                                         \
    XX(NOMEM, -1, 500, "out of memory")                                               \
    XX(INVAL, -2, 400, "invalid argument")                                            \
    XX(IO, -3, 500, "input/output error")                                             \
    XX(NOENT, -4, 404, "no such file")                                                \
    XX(EXIST, -5, 409, "file already exists")                                         \
    XX(PATH, -6, 400, "path escapes its folder")                                      \
    XX(TOOBIG, -7, 413, "input too large")                                            \
    XX(JSON, -8, 400, "malformed JSON")                                               \
    XX(PNG, -9, 400, "malformed or unsupported PNG")                                  \
    XX(RANGE, -10, 400, "value out of range")                                         \
    XX(NOTSUP, -11, 501, "not supported")                                             \
    XX(INTERRUPTED, -12, 409, "interrupted")                                          \
    XX(GRAPH_FORMAT, -1000, 400, "malformed workflow")                                \
    XX(GRAPH_INVALID, -1001, 400, "workflow failed validation")                       \
    XX(GRAPH_NO_OUTPUTS, -1002, 400, "prompt has no outputs")                         \
    XX(GRAPH_UNKNOWN_CLASS, -1003, 400, "unknown node class")                         \
    XX(GRAPH_CYCLE, -1004, 400, "workflow contains a cycle")                          \
    XX(NODE_FAILED, -2000, 500, "node execution failed")                              \
    XX(NODE_INPUT, -2001, 400, "bad node input")                                      \
    XX(NODE_DUPLICATE, -2002, 500, "node class registered twice")                     \
    XX(MODEL_FORMAT, -2100, 400, "malformed model file")                              \
    XX(MODEL_LAYOUT, -2101, 400, "model tensors missing or of the wrong shape")       \
    XX(TOKENIZER, -2102, 500, "tokenizer files missing or malformed")                 \
    XX(TENSOR, -3000, 500, "tensor operation failed")                                 \
    XX(TENSOR_NOTSUP, -3001, 501, "tensor backend not available")                     \
    XX(ENGINE_BUSY, -4000, 409, "engine is busy")                                     \
    XX(AUTH_REQUIRED, -6000, 401, "authentication required")                          \
    XX(AUTH_INVALID, -6001, 401, "invalid credentials")                               \
    XX(AUTH_FORBIDDEN, -6002, 403, "not allowed")                                     \
    XX(AUTH_RATE, -6003, 429, "too many requests")                                    \
    XX(AUTH_QUOTA, -6004, 429, "quota exceeded")                                      \
    XX(AUTH_CSRF, -6005, 403, "missing or wrong CSRF token")

typedef enum {
#define BASE_ERR_ENUM_(name, code, http, msg) BASE_E_##name = (code),
    BASE_ERR_MAP(BASE_ERR_ENUM_)
#undef BASE_ERR_ENUM_
} base_err_t;

/* Static strings; never NULL (unknown codes give "unknown error"). */
const char *base_strerror(int code);
const char *base_err_name(int code);
/* HTTP status for a code, 500 for unknown ones. */
int base_err_http_status(int code);

#endif
