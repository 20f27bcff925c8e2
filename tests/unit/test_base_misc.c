#include "testutil.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"

static void test_buf(void **state)
{
    (void)state;
    base_buf_t b = BASE_BUF_INIT;
    /* Many small printfs force repeated growth; check every byte afterwards. */
    for (int i = 0; i < 10000; i++)
        assert_int_equal(base_buf_printf(&b, "%05d,", i), 0);
    assert_int_equal(b.len, 60000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[b.len], '\0');
    char want[8];
    for (int i = 0; i < 10000; i += 997) {
        snprintf(want, sizeof want, "%05d,", i);
        assert_memory_equal(b.data + 6 * i, want, 6);
    }
    base_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);

    /* One printf longer than the internal scratch space. */
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(base_buf_puts(&b, "<"), 0);
    assert_int_equal(base_buf_printf(&b, "%s|%d", big, -7), 0);
    assert_int_equal(b.len, 1 + 999 + 3);
    assert_memory_equal(b.data + 1000, "|-7", 4); /* includes the NUL */
    base_buf_free(&b);

    /* Binary data with NUL bytes, putc, reserve. */
    assert_int_equal(base_buf_append(&b, "a\0b", 3), 0);
    assert_int_equal(base_buf_putc(&b, 'c'), 0);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "a\0bc", 5);
    assert_int_equal(base_buf_reserve(&b, 1000), 0);
    assert_true(b.cap >= b.len + 1001);
    assert_int_equal(base_buf_reserve(&b, SIZE_MAX), BASE_E_NOMEM);
    assert_int_equal(b.len, 4); /* unchanged on failure */
    char *taken = base_buf_take(&b);
    assert_memory_equal(taken, "a\0bc", 5);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(taken);

    /* Empty buffer: append of nothing still gives a terminated string; take gives "". */
    assert_int_equal(base_buf_append(&b, "", 0), 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    base_buf_free(&b);
    taken = base_buf_take(&b);
    assert_string_equal(taken, "");
    free(taken);
}

static void test_map(void **state)
{
    (void)state;
    enum { N = 100000 };
    char(*keys)[16] = malloc(sizeof(*keys) * N);
    assert_non_null(keys);
    base_map_t m = BASE_MAP_INIT;
    void *v = NULL;
    assert_false(base_map_get(&m, "absent", &v));
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "node-%d", i);
        assert_int_equal(base_map_put(&m, keys[i], (void *)(intptr_t)(i + 1)), 0);
    }
    assert_int_equal(m.n, N);
    assert_true((m.cap & (m.cap - 1)) == 0);
    assert_true(m.n * 10 <= m.cap * 7);
    for (int i = 0; i < N; i++) {
        char probe[16]; /* a different pointer with the same text */
        snprintf(probe, sizeof probe, "node-%d", i);
        assert_true(base_map_get(&m, probe, &v));
        assert_int_equal((intptr_t)v, i + 1);
    }
    /* Replacing keeps the count. */
    for (int i = 0; i < N; i += 2)
        assert_int_equal(base_map_put(&m, keys[i], (void *)(intptr_t)-i), 0);
    assert_int_equal(m.n, N);
    assert_true(base_map_get(&m, "node-4", &v));
    assert_int_equal((intptr_t)v, -4);
    assert_true(base_map_get(&m, "node-5", &v));
    assert_int_equal((intptr_t)v, 6);
    assert_false(base_map_get(&m, "node-100000", &v));
    assert_false(base_map_get(&m, "", &v));
    assert_true(base_map_get(&m, "node-7", NULL));
    /* The empty string is an ordinary key. */
    assert_int_equal(base_map_put(&m, "", NULL), 0);
    v = (void *)1;
    assert_true(base_map_get(&m, "", &v));
    assert_null(v);
    base_map_free(&m);
    assert_int_equal(m.n, 0);
    assert_false(base_map_get(&m, "node-1", &v));
    free(keys);

    /* FNV-1a 64 reference values. */
    assert_true(base_hash_str("") == 0xcbf29ce484222325ULL);
    assert_true(base_hash_str("a") == 0xaf63dc4c8601ec8cULL);
    assert_true(base_hash_str("foobar") == 0x85944171f73967e8ULL);
}

typedef struct {
    int code;
    const char *name;
} code_row_t;

static void test_err_table(void **state)
{
    (void)state;
    static const code_row_t rows[] = {
#define ROW_(name, code, http, msg) {code, #name},
        BASE_ERR_MAP(ROW_)
#undef ROW_
    };
    size_t n = sizeof rows / sizeof rows[0];
    assert_true(n >= 20);
    for (size_t i = 0; i < n; i++) {
        int c = rows[i].code;
        assert_string_equal(base_err_name(c), rows[i].name);
        assert_true(strlen(base_strerror(c)) > 0);
        assert_string_not_equal(base_strerror(c), "unknown error");
        int http = base_err_http_status(c);
        if (http < 200 || http > 599)
            fail_msg("%s has HTTP status %d", rows[i].name, http);
        assert_true(c <= 0);
        for (size_t k = 0; k < i; k++)
            if (rows[k].code == c)
                fail_msg("%s and %s share code %d", rows[k].name, rows[i].name, c);
    }
    assert_int_equal(base_err_http_status(BASE_E_OK), 200);
    assert_int_equal(base_err_http_status(BASE_E_PATH), 400);
    assert_int_equal(base_err_http_status(BASE_E_NOENT), 404);
    assert_string_equal(base_strerror(BASE_E_JSON), "malformed JSON");
    assert_string_equal(base_strerror(-999999), "unknown error");
    assert_string_equal(base_strerror(12345), "unknown error");
    assert_string_equal(base_err_name(-999999), "UNKNOWN");
    assert_int_equal(base_err_http_status(-999999), 500);
}

static char captured[4096];
static int captured_count;
static base_log_level_t captured_lvl;
static int captured_line;

static void capture_sink(base_log_level_t lvl, const char *file, int line, const char *msg)
{
    captured_count++;
    captured_lvl = lvl;
    captured_line = line;
    snprintf(captured, sizeof captured, "%s|%s", file, msg);
}

static void test_log(void **state)
{
    (void)state;
    base_log_level_t saved = base_log_threshold;
    base_log_set_sink(capture_sink);
    base_log_threshold = BASE_LOG_INFO;
    captured_count = 0;
    BASE_LOG(DEBUG, "hidden %d", 1);
    assert_int_equal(captured_count, 0);
    BASE_LOG(WARN, "shown %d %s\n", 2, "x");
    assert_int_equal(captured_count, 1);
    assert_int_equal(captured_lvl, BASE_LOG_WARN);
    assert_true(captured_line > 0);
    assert_string_equal(captured, __FILE__ "|shown 2 x"); /* trailing newline dropped */

    /* Messages longer than the stack buffer arrive whole. */
    char big[1500];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    base_log_write(BASE_LOG_ERROR, "f.c", 9, "<%s>", big);
    assert_int_equal(captured_count, 2);
    assert_int_equal(strlen(captured), strlen("f.c|") + 1501);
    assert_int_equal(captured[strlen(captured) - 1], '>');

    base_log_threshold = BASE_LOG_OFF;
    BASE_LOG(ERROR, "off");
    assert_int_equal(captured_count, 2);

    /* The default sink writes "LEVEL file:line message" to stderr. */
    base_log_threshold = BASE_LOG_DEBUG;
    base_log_set_sink(NULL);
    char *dir = tu_fresh_dir("log");
    char path[4096];
    snprintf(path, sizeof path, "%s/stderr.txt", dir);
    fflush(stderr);
    int saved_fd = dup(2);
    FILE *f = fopen(path, "w+");
    assert_non_null(f);
    assert_true(dup2(fileno(f), 2) >= 0);
    base_log_write(BASE_LOG_WARN, "x.c", 12, "hello %s", "world");
    fflush(stderr);
    dup2(saved_fd, 2);
    close(saved_fd);
    fclose(f);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(base_read_file(path, 1000, &text, &len), 0);
    assert_string_equal(text, "WARN x.c:12 hello world\n");
    free(text);
    free(dir);
    base_log_threshold = saved;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_err_table),
        cmocka_unit_test(test_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
