#include "testutil.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"

typedef struct {
    char *root;    /* confined folder */
    char *outside; /* a sibling the tests try to reach */
    char *root_real;
} fix_t;

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static void must_symlink(const char *target, const char *dir, const char *name)
{
    char *p = join(dir, name);
    assert_int_equal(symlink(target, p), 0);
    free(p);
}

static void write_in(const char *dir, const char *name, const char *text)
{
    char *p = join(dir, name);
    tu_write_file(p, text, strlen(text));
    free(p);
}

static bool exists(const char *dir, const char *name)
{
    char *p = join(dir, name);
    struct stat st;
    bool r = lstat(p, &st) == 0;
    free(p);
    return r;
}

/* root/ sub/file.txt, link -> outside/secret, dirlink -> outside, inlink -> sub/file.txt,
 * dangle -> /nonexistent; outside/ secret. */
static int setup(void **state)
{
    fix_t *f = calloc(1, sizeof *f);
    f->root = tu_fresh_dir("root");
    f->outside = tu_fresh_dir("outside");
    write_in(f->outside, "secret", "s3cret");
    assert_int_equal(base_mkdir_p(f->root), 0);
    assert_int_equal(base_path_mkdirs(f->root, "sub"), 0);
    write_in(f->root, "sub/file.txt", "hello");
    char *secret = join(f->outside, "secret");
    must_symlink(secret, f->root, "link");
    free(secret);
    must_symlink(f->outside, f->root, "dirlink");
    must_symlink("sub/file.txt", f->root, "inlink");
    must_symlink("/nonexistent-weft-target/x", f->root, "dangle");
    must_symlink("../outside", f->root, "rellink");
    f->root_real = realpath(f->root, NULL);
    assert_non_null(f->root_real);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix_t *f = *state;
    free(f->root);
    free(f->outside);
    free(f->root_real);
    free(f);
    return 0;
}

static void test_check_rel(void **state)
{
    (void)state;
    static const char *refused[] = {"", "..", "../x", "a/..", "a/../../b", "a/../b", "/etc/passwd", "/",
                                    "a\\b", "..\\x", "x/../"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (base_path_check_rel(refused[i]) != BASE_E_PATH)
            fail_msg("\"%s\" was accepted", refused[i]);
    assert_int_equal(base_path_check_rel(NULL), BASE_E_PATH);
    static const char *accepted[] = {"a", "a/b.png", "./a//b", "..a", "a..", ".hidden", "a/.../b", "sub/"};
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++)
        if (base_path_check_rel(accepted[i]) != 0)
            fail_msg("\"%s\" was refused", accepted[i]);
}

static void expect_path(const fix_t *f, const char *rel, bool must_exist, const char *want_rel)
{
    char *out = NULL;
    int rc = base_path_resolve(f->root, rel, must_exist, &out);
    if (rc != 0)
        fail_msg("resolve(%s, %d): %s", rel, must_exist, base_strerror(rc));
    char *want = *want_rel ? join(f->root_real, want_rel) : strdup(f->root_real);
    assert_string_equal(out, want);
    free(want);
    free(out);
}

static void expect_rc(const fix_t *f, const char *rel, bool must_exist, int want)
{
    char *out = (char *)0x1;
    int rc = base_path_resolve(f->root, rel, must_exist, &out);
    if (rc != want)
        fail_msg("resolve(%s, %d) gave %s, want %s", rel, must_exist, base_err_name(rc), base_err_name(want));
    assert_ptr_equal(out, (char *)0x1);
}

static void test_resolve(void **state)
{
    fix_t *f = *state;
    /* Normal files, existing and new. */
    expect_path(f, "sub/file.txt", true, "sub/file.txt");
    expect_path(f, "./sub//file.txt", true, "sub/file.txt");
    expect_path(f, "sub/new.png", false, "sub/new.png");
    expect_path(f, "sub/file.txt", false, "sub/file.txt");
    expect_path(f, "top.png", false, "top.png");
    /* A symlink that stays inside is fine and resolves to its target. */
    expect_path(f, "inlink", true, "sub/file.txt");
    expect_path(f, "inlink", false, "inlink");

    /* Lexical refusals reach resolve too. */
    expect_rc(f, "../outside/secret", true, BASE_E_PATH);
    expect_rc(f, "sub/../../outside/secret", false, BASE_E_PATH);
    expect_rc(f, "/etc/passwd", true, BASE_E_PATH);
    expect_rc(f, "sub\\file.txt", true, BASE_E_PATH);
    expect_rc(f, "", false, BASE_E_PATH);

    /* Symlinks leading out. */
    expect_rc(f, "link", true, BASE_E_PATH);
    expect_rc(f, "link", false, BASE_E_PATH);
    expect_rc(f, "dirlink/secret", true, BASE_E_PATH);
    expect_rc(f, "dirlink/new.png", false, BASE_E_PATH);
    expect_rc(f, "rellink/new.png", false, BASE_E_PATH);
    expect_rc(f, "dangle", false, BASE_E_PATH);
    assert_false(exists(f->outside, "new.png"));

    /* Missing things. */
    expect_rc(f, "sub/none.txt", true, BASE_E_NOENT);
    expect_rc(f, "nodir/new.png", false, BASE_E_NOENT);
    expect_rc(f, "sub/file.txt/x", false, BASE_E_NOENT);
    char *out = NULL;
    assert_int_equal(base_path_resolve("/nonexistent-weft-root", "a", true, &out), BASE_E_NOENT);

    /* "." names root itself: fine to look at, not a name for a new file. */
    expect_path(f, ".", true, "");
    expect_rc(f, ".", false, BASE_E_PATH);

    /* A root given through a symlink is compared by its real path. */
    char *alias = join(f->outside, "rootalias");
    assert_int_equal(symlink(f->root, alias), 0);
    assert_int_equal(base_path_resolve(alias, "sub/file.txt", true, &out), 0);
    char *want = join(f->root_real, "sub/file.txt");
    assert_string_equal(out, want);
    free(want);
    free(out);
    free(alias);
}

static void test_mkdirs(void **state)
{
    fix_t *f = *state;
    assert_int_equal(base_path_mkdirs(f->root, "a/b/c"), 0);
    char *p = join(f->root, "a/b/c");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    free(p);
    /* Existing components, "." and double slashes are fine; "" is root itself. */
    assert_int_equal(base_path_mkdirs(f->root, "a/./b//d/"), 0);
    assert_true(exists(f->root, "a/b/d"));
    assert_int_equal(base_path_mkdirs(f->root, ""), 0);
    /* A symlinked component leading out is refused before anything is created beyond it. */
    assert_int_equal(base_path_mkdirs(f->root, "dirlink/x/y"), BASE_E_PATH);
    assert_false(exists(f->outside, "x"));
    assert_int_equal(base_path_mkdirs(f->root, "rellink/z"), BASE_E_PATH);
    assert_false(exists(f->outside, "z"));
    assert_int_equal(base_path_mkdirs(f->root, "../escape"), BASE_E_PATH);
    assert_int_equal(base_path_mkdirs(f->root, "/tmp/x"), BASE_E_PATH);
    /* A file in the way. */
    assert_int_equal(base_path_mkdirs(f->root, "sub/file.txt/x"), BASE_E_IO);
    assert_int_equal(base_path_mkdirs(f->root, "sub/file.txt"), BASE_E_IO);
    assert_int_equal(base_path_mkdirs("/nonexistent-weft-root", "a"), BASE_E_IO);
}

static void test_mkdir_p_and_read(void **state)
{
    fix_t *f = *state;
    char *deep = join(f->outside, "m/n/o");
    assert_int_equal(base_mkdir_p(deep), 0);
    assert_int_equal(base_mkdir_p(deep), 0); /* idempotent */
    free(deep);
    char *through_file = join(f->outside, "secret/sub");
    assert_int_equal(base_mkdir_p(through_file), BASE_E_IO);
    free(through_file);
    assert_int_equal(base_mkdir_p(""), BASE_E_INVAL);

    char *file = join(f->root, "sub/file.txt");
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(base_read_file(file, 5, &data, &len), 0);
    assert_int_equal(len, 5);
    assert_string_equal(data, "hello");
    free(data);
    data = NULL;
    assert_int_equal(base_read_file(file, 4, &data, &len), BASE_E_TOOBIG);
    assert_null(data);
    free(file);

    char *empty = join(f->outside, "empty");
    tu_write_file(empty, "", 0);
    assert_int_equal(base_read_file(empty, 0, &data, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal(data, "");
    free(data);
    free(empty);

    /* Files that report size 0 are read to EOF and limited all the same. */
    assert_int_equal(base_read_file("/proc/self/status", 1 << 20, &data, &len), 0);
    assert_true(len > 0 && strlen(data) == len);
    assert_non_null(strstr(data, "Name:"));
    free(data);
    data = NULL;
    assert_int_equal(base_read_file("/proc/self/status", 10, &data, &len), BASE_E_TOOBIG);
    assert_null(data);

    assert_int_equal(base_read_file("/nonexistent-weft-file", 10, &data, &len), BASE_E_NOENT);
    assert_int_equal(base_read_file(f->root, 10, &data, &len), BASE_E_IO);
    assert_null(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_rel),
        cmocka_unit_test_setup_teardown(test_resolve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mkdirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mkdir_p_and_read, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
