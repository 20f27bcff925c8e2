#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"

/* Line endings: only CRLF is accepted (RFC 7578 / RFC 2046). LF-only bodies are refused with
 * "multipart line endings must be CRLF" rather than guessed at. */

#define CT "multipart/form-data; boundary=XyZ"
#define CD(n) "Content-Disposition: form-data; name=\"" n "\"\r\n"
#define BODY(s) s, sizeof(s) - 1

typedef struct {
    const char *name, *filename, *ctype;
    const char *data;
    size_t len;
} want_part_t;

typedef struct {
    const char *label;
    const char *ctype;
    const char *body;
    size_t len;
    int rc;
    const char *err;  /* substring of the message when rc != 0 */
    size_t n;
    want_part_t parts[4];
} vec_t;

static const vec_t vecs[] = {
    {"simple one part", CT, BODY("--XyZ\r\n" CD("a") "\r\nhello\r\n--XyZ--\r\n"), 0, NULL, 1,
     {{"a", NULL, NULL, BODY("hello")}}},
    {"several parts with an empty value and a file", CT,
     BODY("--XyZ\r\n" CD("x") "\r\n1\r\n"
          "--XyZ\r\n" CD("empty") "\r\n\r\n"
          "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a b.png\"\r\n"
          "Content-Type: image/png\r\n\r\nPNGDATA\r\n--XyZ--"),
     0, NULL, 3,
     {{"x", NULL, NULL, BODY("1")},
      {"empty", NULL, NULL, BODY("")},
      {"image", "a b.png", "image/png", BODY("PNGDATA")}}},
    {"quoted boundary with a space, other params first", "Multipart/Form-Data; charset=utf-8; boundary=\"ab cd\"",
     BODY("--ab cd\r\n" CD("k") "\r\nv\r\n--ab cd--\r\n"), 0, NULL, 1, {{"k", NULL, NULL, BODY("v")}}},
    {"boundary with special characters", "multipart/form-data; boundary=\"'()+_,-./:=?\"",
     BODY("--'()+_,-./:=?\r\n" CD("k") "\r\nv\r\n--'()+_,-./:=?--"), 0, NULL, 1,
     {{"k", NULL, NULL, BODY("v")}}},
    {"CRLF inside file data", CT,
     BODY("--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"t.txt\"\r\n\r\n"
          "line1\r\nline2\r\n\r\n--XyZnot\r\n\r\n--XyZ--"),
     0, NULL, 1, {{"f", "t.txt", NULL, BODY("line1\r\nline2\r\n\r\n--XyZnot\r\n")}}},
    {"binary data with boundary look-alikes", CT,
     BODY("--XyZ\r\n" CD("b") "\r\n\x00\xff\r\n--Xy\r\n--XyZ-\r\n--XyZ \tX\r\n--XyZX--\x00\r\n--XyZ--"), 0, NULL, 1,
     {{"b", NULL, NULL, BODY("\x00\xff\r\n--Xy\r\n--XyZ-\r\n--XyZ \tX\r\n--XyZX--\x00")}}},
    {"transport padding, preamble and epilogue", CT,
     BODY("preamble\r\nmore\r\n--XyZ \t\r\n" CD("p") "\r\nq\r\n--XyZ--\r\nepilogue --XyZ\r\ngarbage"), 0, NULL, 1,
     {{"p", NULL, NULL, BODY("q")}}},
    {"escaped quotes and token values", CT,
     BODY("--XyZ\r\ncontent-disposition: FORM-DATA; NAME=field; filename=\"a\\\"b\\\\c.png\"; "
          "filename*=UTF-8''x.png\r\n\r\nz\r\n--XyZ--"),
     0, NULL, 1, {{"field", "a\"b\\c.png", NULL, BODY("z")}}},
    {"filename* alone gives no filename", CT,
     BODY("--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename*=UTF-8''x.png\r\n\r\nz\r\n--XyZ--"),
     0, NULL, 1, {{"f", NULL, NULL, BODY("z")}}},
    {"empty filename is kept empty", CT,
     BODY("--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\"\r\n\r\n\r\n--XyZ--"), 0, NULL, 1,
     {{"f", "", NULL, BODY("")}}},
    {"no parts", CT, BODY("--XyZ--\r\n"), 0, NULL, 0, {{0}}},

    {"missing final boundary", CT, BODY("--XyZ\r\n" CD("a") "\r\nhello"), BASE_E_INVAL, "no final boundary", 0, {{0}}},
    {"final boundary without its dashes", CT, BODY("--XyZ\r\n" CD("a") "\r\nhello\r\n--XyZ"), BASE_E_INVAL,
     "no final boundary", 0, {{0}}},
    {"truncated headers", CT, BODY("--XyZ\r\n" CD("a")), BASE_E_INVAL, "truncated", 0, {{0}}},
    {"no boundary parameter", "multipart/form-data", BODY("--XyZ--"), BASE_E_INVAL, "no boundary parameter", 0, {{0}}},
    {"not multipart", "application/json", BODY("{}"), BASE_E_INVAL, "not multipart/form-data", 0, {{0}}},
    {"no Content-Type", NULL, BODY("--XyZ--"), BASE_E_INVAL, "missing Content-Type", 0, {{0}}},
    {"empty boundary", "multipart/form-data; boundary=\"\"", BODY("----"), BASE_E_INVAL, "empty multipart boundary", 0,
     {{0}}},
    {"boundary over 70 characters",
     "multipart/form-data; boundary=12345678901234567890123456789012345678901234567890123456789012345678901",
     BODY("--"), BASE_E_INVAL, "longer than 70", 0, {{0}}},
    {"boundary with a forbidden character", "multipart/form-data; boundary=\"a<b\"", BODY("--a<b--"), BASE_E_INVAL,
     "RFC 2046", 0, {{0}}},
    {"boundary ending with a space", "multipart/form-data; boundary=\"ab \"", BODY("--ab --"), BASE_E_INVAL,
     "ends with a space", 0, {{0}}},
    {"body without a boundary line", CT, BODY("hello world"), BASE_E_INVAL, "no boundary line", 0, {{0}}},
    {"LF-only line endings", CT, BODY("--XyZ\nContent-Disposition: form-data; name=\"a\"\n\nv\n--XyZ--\n"),
     BASE_E_INVAL, "must be CRLF", 0, {{0}}},
    {"LF-only header lines", CT, BODY("--XyZ\r\nContent-Disposition: form-data; name=\"a\"\n\nv\r\n--XyZ--"),
     BASE_E_INVAL, "must be CRLF", 0, {{0}}},
    {"part without Content-Disposition", CT, BODY("--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--"),
     BASE_E_INVAL, "part 1 has no Content-Disposition", 0, {{0}}},
    {"part without headers", CT, BODY("--XyZ\r\n\r\nx\r\n--XyZ--"), BASE_E_INVAL, "no Content-Disposition", 0, {{0}}},
    {"Content-Disposition without name", CT,
     BODY("--XyZ\r\n" CD("a") "\r\n1\r\n--XyZ\r\nContent-Disposition: form-data; filename=\"x\"\r\n\r\nx\r\n--XyZ--"),
     BASE_E_INVAL, "part 2 has no name", 0, {{0}}},
    {"Content-Disposition not form-data", CT,
     BODY("--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--XyZ--"), BASE_E_INVAL,
     "not form-data", 0, {{0}}},
    {"unterminated quoted name", CT, BODY("--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--XyZ--"),
     BASE_E_INVAL, "malformed Content-Disposition", 0, {{0}}},
    {"header line without colon", CT, BODY("--XyZ\r\n" CD("a") "junk\r\n\r\nx\r\n--XyZ--"), BASE_E_INVAL,
     "malformed header line", 0, {{0}}},
    {"folded header line", CT, BODY("--XyZ\r\n" CD("a") " folded\r\n\r\nx\r\n--XyZ--"), BASE_E_INVAL, "folded", 0,
     {{0}}},
    {"control character in a header", CT, BODY("--XyZ\r\nContent-Disposition: form-data; name=\"a\x01\"\r\n\r\nx\r\n--XyZ--"),
     BASE_E_INVAL, "control character", 0, {{0}}},
    {"two Content-Disposition headers", CT, BODY("--XyZ\r\n" CD("a") CD("b") "\r\nx\r\n--XyZ--"), BASE_E_INVAL,
     "more than one Content-Disposition", 0, {{0}}},
};

static void check_vec(const vec_t *v)
{
    mp_form_t f;
    char err[256] = "";
    int rc = mp_parse(v->ctype, v->body, v->len, &f, err, sizeof err);
    if (rc != v->rc)
        fail_msg("%s: rc %d, want %d (%s)", v->label, rc, v->rc, err);
    if (rc) {
        if (!strstr(err, v->err))
            fail_msg("%s: message \"%s\" lacks \"%s\"", v->label, err, v->err);
        assert_int_equal(f.n, 0);
        return;
    }
    if (f.n != v->n)
        fail_msg("%s: %zu parts, want %zu", v->label, f.n, v->n);
    for (size_t i = 0; i < v->n; i++) {
        const want_part_t *w = &v->parts[i];
        const mp_part_t *p = &f.parts[i];
        assert_string_equal(p->name, w->name);
        if (w->filename)
            assert_string_equal(p->filename, w->filename);
        else
            assert_null(p->filename);
        if (w->ctype)
            assert_string_equal(p->content_type, w->ctype);
        else
            assert_null(p->content_type);
        if (p->len != w->len)
            fail_msg("%s: part %zu has %zu bytes, want %zu", v->label, i, p->len, w->len);
        assert_memory_equal(p->data, w->data, w->len);
        /* Bodies are spans into the request body, never copies. */
        assert_true(p->data >= v->body && p->data + p->len <= v->body + v->len);
    }
    mp_form_free(&f);
}

static void test_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++)
        check_vec(&vecs[i]);
}

static char *many_parts(size_t n, size_t *len)
{
    base_buf_t b = BASE_BUF_INIT;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(base_buf_printf(&b, "--XyZ\r\nContent-Disposition: form-data; name=\"f%zu\"\r\n\r\n%zu\r\n", i, i), 0);
    assert_int_equal(base_buf_puts(&b, "--XyZ--\r\n"), 0);
    *len = b.len;
    return base_buf_take(&b);
}

static void test_part_limit(void **state)
{
    (void)state;
    mp_form_t f;
    char err[256];
    size_t len;
    char *body = many_parts(MP_MAX_PARTS, &len);
    assert_int_equal(mp_parse(CT, body, len, &f, err, sizeof err), 0);
    assert_int_equal(f.n, 64);
    assert_string_equal(f.parts[63].name, "f63");
    assert_memory_equal(f.parts[63].data, "63", 2);
    assert_ptr_equal(mp_form_get(&f, "f7"), &f.parts[7]);
    assert_null(mp_form_get(&f, "f64"));
    mp_form_free(&f);
    free(body);

    body = many_parts(MP_MAX_PARTS + 1, &len);
    assert_int_equal(mp_parse(CT, body, len, &f, err, sizeof err), BASE_E_INVAL);
    assert_string_equal(err, "multipart body has more than 64 parts");
    assert_int_equal(f.n, 0);
    free(body);
}

static void test_header_limits(void **state)
{
    (void)state;
    mp_form_t f;
    char err[256];
    base_buf_t b = BASE_BUF_INIT;

    /* One line at the limit is fine, one byte more is not. */
    char filler[MP_MAX_HEADER_LINE + 2];
    memset(filler, 'a', sizeof filler);
    size_t pre = strlen("X-Pad: ");
    filler[MP_MAX_HEADER_LINE - pre] = '\0';
    assert_int_equal(base_buf_printf(&b, "--XyZ\r\n" CD("a") "X-Pad: %s\r\n\r\nv\r\n--XyZ--", filler), 0);
    assert_int_equal(mp_parse(CT, b.data, b.len, &f, err, sizeof err), 0);
    assert_int_equal(f.n, 1);
    mp_form_free(&f);
    base_buf_free(&b);
    filler[MP_MAX_HEADER_LINE - pre] = 'a';
    filler[MP_MAX_HEADER_LINE - pre + 1] = '\0';
    assert_int_equal(base_buf_printf(&b, "--XyZ\r\n" CD("a") "X-Pad: %s\r\n\r\nv\r\n--XyZ--", filler), 0);
    assert_int_equal(mp_parse(CT, b.data, b.len, &f, err, sizeof err), BASE_E_INVAL);
    assert_string_equal(err, "part 1: header line longer than 1024 bytes");
    base_buf_free(&b);

    /* A giant line with no end in sight. */
    assert_int_equal(base_buf_puts(&b, "--XyZ\r\nContent-Disposition: form-data; name=\""), 0);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(base_buf_putc(&b, 'n'), 0);
    assert_int_equal(mp_parse(CT, b.data, b.len, &f, err, sizeof err), BASE_E_INVAL);
    assert_string_equal(err, "part 1: header line longer than 1024 bytes");
    base_buf_free(&b);

    /* Many short lines adding up past 8 KiB. */
    assert_int_equal(base_buf_puts(&b, "--XyZ\r\n" CD("a")), 0);
    for (int i = 0; i < 200; i++)
        assert_int_equal(base_buf_printf(&b, "X-H%d: %040d\r\n", i, i), 0);
    assert_int_equal(base_buf_puts(&b, "\r\nv\r\n--XyZ--"), 0);
    assert_int_equal(mp_parse(CT, b.data, b.len, &f, err, sizeof err), BASE_E_INVAL);
    assert_string_equal(err, "part 1: headers larger than 8192 bytes");
    base_buf_free(&b);
}

static void test_boundary(void **state)
{
    (void)state;
    char out[MP_MAX_BOUNDARY + 1], err[128];
    assert_int_equal(mp_boundary("multipart/form-data;boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW", out,
                                 sizeof out, err, sizeof err),
                     0);
    assert_string_equal(out, "----WebKitFormBoundary7MA4YWxkTrZu0gW");
    assert_int_equal(mp_boundary("multipart/form-data; BOUNDARY = \"q\\\"x\" ;", out, sizeof out, err, sizeof err),
                     BASE_E_INVAL); /* '"' is not a bchar */
    assert_string_equal(err, "multipart boundary contains a character RFC 2046 does not allow");
    assert_int_equal(mp_boundary("multipart/form-data; BOUNDARY = \"q x\" ;", out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, "q x");
    assert_int_equal(mp_boundary("multipart/form-data; boundary", out, sizeof out, err, sizeof err), BASE_E_INVAL);
    assert_string_equal(err, "malformed Content-Type parameters");
    assert_int_equal(mp_boundary("multipart/form-datax; boundary=a", out, sizeof out, err, sizeof err), BASE_E_INVAL);
    char small[4];
    assert_int_equal(mp_boundary("multipart/form-data; boundary=abcd", small, sizeof small, err, sizeof err),
                     BASE_E_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_part_limit),
        cmocka_unit_test(test_header_limits),
        cmocka_unit_test(test_boundary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
