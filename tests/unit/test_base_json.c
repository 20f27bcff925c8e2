#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base.h"

static json_t *parse_ok(const char *text)
{
    json_t *j = NULL;
    char err[256];
    int rc = json_parse(text, strlen(text), &j, err, sizeof err);
    if (rc != 0)
        fail_msg("parse of %s failed: %s", text, err);
    assert_non_null(j);
    return j;
}

/* Parses text and dumps it in style; asserts the exact output. */
static void assert_dump(const char *text, json_style_t style, const char *want)
{
    json_t *j = parse_ok(text);
    char *got = json_dump(j, style);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    json_free(j);
}

static void test_seed_round_trip(void **state)
{
    (void)state;
    assert_dump("18446744073709551615", JSON_COMPACT, "18446744073709551615");
    assert_dump("-9223372036854775808", JSON_COMPACT, "-9223372036854775808");
    assert_dump("-18446744073709551615", JSON_COMPACT, "-18446744073709551615");
    assert_dump("{\"seed\": 18446744073709551615}", JSON_COMPACT, "{\"seed\":18446744073709551615}");

    json_t *j = parse_ok("18446744073709551615");
    assert_int_equal(j->type, JSON_NUMBER);
    assert_true(j->u.num.is_int);
    uint64_t u = 0;
    int64_t i = 0;
    assert_true(json_get_u64(j, &u));
    assert_true(u == UINT64_MAX);
    assert_false(json_get_i64(j, &i));
    json_free(j);

    j = parse_ok("-9223372036854775808");
    assert_true(json_get_i64(j, &i));
    assert_true(i == INT64_MIN);
    assert_false(json_get_u64(j, &u));
    json_free(j);

    /* One past 2^64-1 no longer fits: a double. */
    j = parse_ok("18446744073709551616");
    assert_false(j->u.num.is_int);
    assert_false(json_get_u64(j, &u));
    double d = 0;
    assert_true(json_get_double(j, &d));
    assert_true(d == 18446744073709551616.0);
    json_free(j);

    /* "-0" is the integer zero. */
    j = parse_ok("-0");
    assert_true(j->u.num.is_int);
    assert_true(json_get_i64(j, &i));
    assert_int_equal(i, 0);
    json_free(j);
    assert_dump("-0", JSON_COMPACT, "0");
    assert_dump("-0.0", JSON_COMPACT, "-0.0");

    /* Builders keep exact values too. */
    json_t *b = json_new_bint((base_int_t)BASE_INT_U64MAX);
    char *s = json_dump(b, JSON_COMPACT);
    assert_string_equal(s, "18446744073709551615");
    free(s);
    json_free(b);
    b = json_new_int(-42);
    s = json_dump(b, JSON_COMPACT);
    assert_string_equal(s, "-42");
    free(s);
    json_free(b);
}

static void test_python_style(void **state)
{
    (void)state;
    assert_dump("{\"a\":1,\"b\":[1.5,\"\xC3\xA9\"],\"c\":null}", JSON_PYTHON,
                "{\"a\": 1, \"b\": [1.5, \"\\u00e9\"], \"c\": null}");
    /* Compact keeps UTF-8 as is. */
    assert_dump("{\"a\":1,\"b\":[1.5,\"\xC3\xA9\"],\"c\":null}", JSON_COMPACT,
                "{\"a\":1,\"b\":[1.5,\"\xC3\xA9\"],\"c\":null}");
    /* Doubles: Python repr. Expected strings come from CPython's json.dumps. */
    assert_dump("[8.0, 0.1, 1e16, 1e-7, 1e15, 123456789012345678.0, -0.0, 0.0001, 1e-5]", JSON_PYTHON,
                "[8.0, 0.1, 1e+16, 1e-07, 1000000000000000.0, 1.2345678901234568e+17, -0.0, 0.0001, 1e-05]");
    assert_dump("[1.7976931348623157e308, 5e-324, 2.5e-5, 0.3333333333333333, 1e22, 100.0, 8]", JSON_PYTHON,
                "[1.7976931348623157e+308, 5e-324, 2.5e-05, 0.3333333333333333, 1e+22, 100.0, 8]");
    assert_dump("[NaN, Infinity, -Infinity]", JSON_PYTHON, "[NaN, Infinity, -Infinity]");
    /* Astral character as a surrogate pair; DEL and control characters escaped; "/" not. */
    assert_dump("\"\xF0\x9F\x98\x80\x7F\\u0001\\n\\\"\\\\\\/\xE2\x80\xA8\"", JSON_PYTHON,
                "\"\\ud83d\\ude00\\u007f\\u0001\\n\\\"\\\\/\\u2028\"");
    assert_dump("\"\\b\\f\\r\\t\\u001f\"", JSON_PYTHON, "\"\\b\\f\\r\\t\\u001f\"");
    /* Surrogate pair escapes decode to one 4-byte character. */
    json_t *j = parse_ok("\"\\ud83d\\ude00\"");
    assert_int_equal(j->u.str.len, 4);
    assert_memory_equal(j->u.str.s, "\xF0\x9F\x98\x80", 4);
    json_free(j);
    /* \u0000 stays in the string with its length. */
    j = parse_ok("\"a\\u0000b\"");
    assert_int_equal(j->u.str.len, 3);
    assert_memory_equal(j->u.str.s, "a\0b", 3);
    char *s = json_dump(j, JSON_COMPACT);
    assert_string_equal(s, "\"a\\u0000b\"");
    free(s);
    json_free(j);
    /* Builder doubles. */
    j = json_new_real(8.0);
    s = json_dump(j, JSON_PYTHON);
    assert_string_equal(s, "8.0");
    free(s);
    json_free(j);
}

static void test_pretty(void **state)
{
    (void)state;
    assert_dump("{\"a\":[1,{\"b\":[]}],\"c\":{}}", JSON_PRETTY,
                "{\n  \"a\": [\n    1,\n    {\n      \"b\": []\n    }\n  ],\n  \"c\": {}\n}");
}

typedef struct {
    const char *text;
    size_t len; /* 0: strlen(text) */
    const char *what; /* expected substring of the message */
} bad_case_t;

static void test_malformed(void **state)
{
    (void)state;
    static const bad_case_t cases[] = {
        {"", 0, "line 1 column 1: unexpected end of input"},
        {"   ", 0, "end of input"},
        {"{\"a\":1", 0, "end of input"},
        {"[1,2", 0, "end of input"},
        {"\"abc", 0, "unterminated string"},
        {"[1,2,]", 0, "line 1 column 6: trailing comma in array"},
        {"{\"a\":1,}", 0, "trailing comma in object"},
        {"{'a':1}", 0, "line 1 column 2: unexpected character '''"},
        {"['a']", 0, "unexpected character '''"},
        {"\"\\x\"", 0, "invalid escape"},
        {"\"\\u12\"", 0, "invalid \\u escape"},
        {"\"\\u12G4\"", 0, "invalid \\u escape"},
        {"\"\xC3\"", 0, "invalid UTF-8"},
        {"\"\xC0\xAF\"", 0, "invalid UTF-8"},          /* overlong '/' */
        {"\"\xED\xA0\x80\"", 0, "invalid UTF-8"},      /* surrogate encoded in UTF-8 */
        {"\"\xF4\x90\x80\x80\"", 0, "invalid UTF-8"},  /* above U+10FFFF */
        {"\"\xFF\"", 0, "invalid UTF-8"},
        {"\"\\ud800\"", 0, "lone high surrogate"},
        {"\"\\ud800\\u0041\"", 0, "lone high surrogate"},
        {"\"\\udc00\"", 0, "lone low surrogate"},
        {"01", 0, "leading zero"},
        {"[-01]", 0, "leading zero"},
        {"1.", 0, "digit after decimal point"},
        {"1e", 0, "digit in exponent"},
        {".5", 0, "unexpected character '.'"},
        {"+1", 0, "unexpected character '+'"},
        {"-", 0, "invalid number"},
        {"\"a\tb\"", 0, "control character"},
        {"\"a\nb\"", 0, "line 1 column 3: unescaped control character"},
        {"[1 2]", 0, "',' or ']'"},
        {"{\"a\" 1}", 0, "':'"},
        {"{1:2}", 0, "string key"},
        {"tru", 0, "unexpected character 't'"},
        {"nul", 0, "unexpected"},
        {"nan", 0, "unexpected"},
        {"-NaN", 0, "invalid number"},
        {"[1] x", 0, "line 1 column 5: unexpected data after the JSON value"},
        {"{}{}", 0, "unexpected data after"},
        {"[\n1,\n  x]", 0, "line 3 column 3: unexpected character 'x'"},
        {"[1]\0", 4, "unexpected data after"},
        {"\0", 1, "unexpected byte 0x00"},
        {"{\"a\\u0000b\":1}", 0, "object key contains"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case_t *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->text);
        json_t *j = (json_t *)0x1; /* must stay untouched on error */
        char err[256] = "unset";
        int rc = json_parse(c->text, len, &j, err, sizeof err);
        if (rc != BASE_E_JSON || j != (json_t *)0x1 || !strstr(err, c->what) || strncmp(err, "line ", 5) != 0)
            fail_msg("case %zu (%s): rc %d, err \"%s\", want \"%s\"", i, c->text, rc, err, c->what);
    }
}

static void test_depth_limit(void **state)
{
    (void)state;
    size_t n = 100000;
    char *deep = malloc(n);
    assert_non_null(deep);
    memset(deep, '[', n);
    json_t *j = NULL;
    char err[256];
    assert_int_equal(json_parse(deep, n, &j, err, sizeof err), BASE_E_JSON);
    assert_non_null(strstr(err, "line 1 column 513: nesting deeper than 512"));
    assert_null(j);

    /* Exactly JSON_MAX_DEPTH levels parse. */
    char *ok = malloc(2 * JSON_MAX_DEPTH);
    assert_non_null(ok);
    memset(ok, '[', JSON_MAX_DEPTH);
    memset(ok + JSON_MAX_DEPTH, ']', JSON_MAX_DEPTH);
    assert_int_equal(json_parse(ok, 2 * JSON_MAX_DEPTH, &j, err, sizeof err), 0);
    json_free(j);
    /* Objects count too. */
    for (size_t i = 0; i < n / 5; i++)
        memcpy(deep + 5 * i, "{\"a\":", 5);
    assert_int_equal(json_parse(deep, n, &j, err, sizeof err), BASE_E_JSON);
    assert_non_null(strstr(err, "nesting deeper"));
    free(ok);
    free(deep);
    /* Small or absent error buffers are fine. */
    assert_int_equal(json_parse("[", 1, &j, err, 4), BASE_E_JSON);
    assert_string_equal(err, "lin");
    assert_int_equal(json_parse("[", 1, &j, NULL, 0), BASE_E_JSON);
}

static void test_key_order_and_duplicates(void **state)
{
    (void)state;
    json_t *j = parse_ok("{\"z\":1,\"a\":2,\"m\":3}");
    assert_int_equal(json_len(j), 3);
    assert_string_equal(json_key_at(j, 0), "z");
    assert_string_equal(json_key_at(j, 1), "a");
    assert_string_equal(json_key_at(j, 2), "m");
    assert_null(json_key_at(j, 3));
    json_free(j);

    /* Last value wins at the first key's position. */
    assert_dump("{\"a\":1,\"b\":2,\"a\":3}", JSON_COMPACT, "{\"a\":3,\"b\":2}");
    assert_dump("{\"a\":[1],\"a\":{\"x\":null}}", JSON_COMPACT, "{\"a\":{\"x\":null}}");

    /* The same with more keys than the linear-scan threshold (hash-set path). */
    char text[2048] = "{";
    for (int i = 0; i < 40; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "\"k%d\":%d,", i, i);
    strcat(text, "\"k3\":\"three\",\"k39\":-1,\"k0\":true}");
    j = parse_ok(text);
    assert_int_equal(json_len(j), 40);
    assert_string_equal(json_key_at(j, 3), "k3");
    assert_string_equal(json_str(json_at(j, 3)), "three");
    int64_t v = 0;
    assert_true(json_get_i64(json_object_get(j, "k39"), &v));
    assert_int_equal(v, -1);
    assert_int_equal(json_object_get(j, "k0")->type, JSON_BOOL);
    assert_string_equal(json_key_at(j, 39), "k39");
    json_free(j);
}

static void test_build_and_mutate(void **state)
{
    (void)state;
    json_t *o = json_new_object();
    assert_int_equal(json_object_set(o, "b", json_new_int(1)), 0);
    assert_int_equal(json_object_set(o, "a", json_new_string("x")), 0);
    assert_int_equal(json_object_set(o, "c", json_new_array()), 0);
    assert_int_equal(json_array_push(json_object_get(o, "c"), json_new_bool(true)), 0);
    assert_int_equal(json_array_push(json_object_get(o, "c"), json_new_null()), 0);
    /* Replacement keeps the position. */
    assert_int_equal(json_object_set(o, "b", json_new_real(2.5)), 0);
    char *s = json_dump(o, JSON_COMPACT);
    assert_string_equal(s, "{\"b\":2.5,\"a\":\"x\",\"c\":[true,null]}");
    free(s);
    json_object_del(o, "a");
    json_object_del(o, "missing");
    s = json_dump(o, JSON_COMPACT);
    assert_string_equal(s, "{\"b\":2.5,\"c\":[true,null]}");
    free(s);
    /* Wrong container types: error, value freed (ASan would report a leak otherwise). */
    assert_int_equal(json_array_push(o, json_new_int(1)), BASE_E_INVAL);
    json_t *arr = json_object_get(o, "c");
    assert_int_equal(json_object_set(arr, "k", json_new_int(1)), BASE_E_INVAL);
    assert_int_equal(json_array_push(arr, NULL), BASE_E_NOMEM);
    /* Getters on wrong types. */
    assert_null(json_object_get(arr, "k"));
    assert_null(json_at(arr, 2));
    assert_null(json_key_at(arr, 0));
    assert_null(json_str(arr));
    assert_int_equal(json_len(json_at(arr, 0)), 0);
    double d;
    assert_false(json_get_double(arr, &d));
    int64_t i;
    assert_false(json_get_i64(json_object_get(o, "b"), &i));
    json_free(o);
    json_free(NULL);
}

static void test_clone_equal(void **state)
{
    (void)state;
    const char *text = "{\"a\":[1,2.5,\"s\\u0000t\",null,true,{\"x\":NaN}],\"seed\":18446744073709551615,\"e\":{}}";
    json_t *a = parse_ok(text);
    json_t *c = json_clone(a);
    assert_non_null(c);
    assert_true(json_equal(a, c));
    char *s1 = json_dump(a, JSON_COMPACT), *s2 = json_dump(c, JSON_COMPACT);
    assert_string_equal(s1, s2);
    free(s1);
    free(s2);
    /* Changing the clone does not touch the original, and equality notices. */
    assert_int_equal(json_object_set(json_at(json_object_get(c, "a"), 5), "x", json_new_int(1)), 0);
    assert_false(json_equal(a, c));
    json_free(c);

    json_t *b = parse_ok("{\"seed\":18446744073709551614,\"a\":[1,2.5,\"s\\u0000t\",null,true,{\"x\":NaN}],\"e\":{}}");
    assert_false(json_equal(a, b)); /* seeds differ by 1: a double compare would miss it */
    json_free(b);
    b = parse_ok("{\"e\":{},\"seed\":18446744073709551615,\"a\":[1,2.5,\"s\\u0000t\",null,true,{\"x\":NaN}]}");
    assert_true(json_equal(a, b)); /* key order does not matter */
    json_free(b);
    b = parse_ok("{\"e\":{},\"seed\":18446744073709551615,\"a\":[1,2.5,\"s\\u0000u\",null,true,{\"x\":NaN}]}");
    assert_false(json_equal(a, b)); /* bytes after the NUL count */
    json_free(b);
    json_free(a);

    json_t *x = parse_ok("1"), *y = parse_ok("1.0"), *z = parse_ok("[1]");
    assert_true(json_equal(x, y));
    assert_false(json_equal(x, z));
    assert_false(json_equal(x, NULL));
    json_free(x);
    json_free(y);
    json_free(z);
}

static void test_big_object(void **state)
{
    (void)state;
    size_t n = 100000;
    base_buf_t b = BASE_BUF_INIT;
    assert_int_equal(base_buf_putc(&b, '{'), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(base_buf_printf(&b, "%s\"key%zu\":%zu", i ? "," : "", i, i), 0);
    assert_int_equal(base_buf_putc(&b, '}'), 0);

    clock_t t0 = clock();
    json_t *j = NULL;
    char err[256];
    assert_int_equal(json_parse(b.data, b.len, &j, err, sizeof err), 0);
    char *out = json_dump(j, JSON_COMPACT);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_non_null(out);
    assert_string_equal(out, b.data);
    assert_int_equal(json_len(j), n);
    assert_string_equal(json_key_at(j, 77777), "key77777");
    /* Generous even under sanitizers; a quadratic duplicate check takes far longer. */
    if (secs > 5.0)
        fail_msg("100k-key parse+dump took %.2f s", secs);
    free(out);
    json_free(j);
    base_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_round_trip),
        cmocka_unit_test(test_python_style),
        cmocka_unit_test(test_pretty),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_key_order_and_duplicates),
        cmocka_unit_test(test_build_and_mutate),
        cmocka_unit_test(test_clone_equal),
        cmocka_unit_test(test_big_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
