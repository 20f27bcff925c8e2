/* The real weft binary on the shipped workflows, as a user runs it. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "base.h"
#include "image/png.h"

/* Runs weft with args (a shell fragment), captures stdout+stderr, returns the exit code. */
static int run_weft(const char *args, char **output)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>&1", WEFT_SOURCE_DIR, WEFT_BIN, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    base_buf_t b = BASE_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        assert_int_equal(base_buf_append(&b, chunk, n), 0);
    int st = pclose(p);
    *output = base_buf_take(&b);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_run_api_workflow_saves_png_with_metadata(void **state)
{
    char *dir = tu_fresh_dir("api");
    char args[16384], *out = NULL;
    snprintf(args, sizeof args, "run --base-dir '%s' workflows/invert.api.json", dir);
    int rc = run_weft(args, &out);
    if (rc != 0)
        fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    /* The saved file's path is printed; it carries the prompt chunk. */
    char *line = strstr(out, dir);
    assert_non_null(line);
    char path[4096];
    size_t len = strcspn(line, "\n");
    assert_true(len < sizeof path);
    memcpy(path, line, len);
    path[len] = 0;
    assert_non_null(strstr(path, "/output/"));
    assert_non_null(strstr(path, ".png"));
    node_png_texts_t texts = {0};
    char err[256];
    assert_int_equal(node_png_read_text_file(path, &texts, err, sizeof err), 0);
    assert_true(texts.n >= 1);
    assert_string_equal(texts.items[0].key, "prompt");
    json_t *j = NULL;
    assert_int_equal(json_parse(texts.items[0].value, texts.items[0].value_len, &j, err, sizeof err), 0);
    assert_int_equal(j->type, JSON_OBJECT);
    json_free(j);
    node_png_texts_free(&texts);

    /* The PNG itself is a workflow weft can run again. */
    snprintf(args, sizeof args, "run --base-dir '%s' '%s'", dir, path);
    free(out);
    rc = run_weft(args, &out);
    if (rc != 0)
        fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    free(out);
    free(dir);
}

static void test_run_ui_workflow(void **state)
{
    char *dir = tu_fresh_dir("ui");
    char args[16384], *out = NULL;
    snprintf(args, sizeof args, "run --base-dir '%s' workflows/invert.ui.json", dir);
    int rc = run_weft(args, &out);
    if (rc != 0)
        fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "/output/"));
    free(out);
    free(dir);
}

/* The batch workflow (two sources, scaling, a batch, a save and a preview) runs. */
static void test_run_batch_workflow_twice(void **state)
{
    char *dir = tu_fresh_dir("batch");
    char args[16384], *out = NULL;
    snprintf(args, sizeof args, "run --base-dir '%s' workflows/batch.api.json", dir);
    int rc = run_weft(args, &out);
    if (rc != 0)
        fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "/output/"));
    assert_non_null(strstr(out, "/temp/"));
    free(out);
    free(dir);
}

static void test_validate_reports_errors_as_json(void **state)
{
    char *out = NULL;
    int rc = run_weft("validate --base-dir '" WEFT_TEST_TMP "/scratch' workflows/broken/missing_input.api.json", &out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "\"node_errors\""));
    assert_non_null(strstr(out, "required_input_missing"));
    free(out);
    rc = run_weft("validate --base-dir '" WEFT_TEST_TMP "/scratch' workflows/broken/cycle.api.json", &out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "dependency_cycle"));
    free(out);
    rc = run_weft("validate --base-dir '" WEFT_TEST_TMP "/scratch' workflows/invert.api.json", &out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "\"outputs\""));
    free(out);
}

static void test_bad_files_give_clear_errors(void **state)
{
    char *dir = tu_fresh_dir("bad");
    char p1[4096], p2[4096], p3[4096], args[8192], *out = NULL;
    snprintf(p1, sizeof p1, "%s/bad.json", dir);
    tu_write_file(p1, "{\"1\": {\"class_type\": ", 21);
    snprintf(p2, sizeof p2, "%s/trunc.png", dir);
    tu_write_file(p2, "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
    snprintf(p3, sizeof p3, "%s/list.json", dir);
    tu_write_file(p3, "[1, 2, 3]", 9);

    snprintf(args, sizeof args, "run --base-dir '%s' '%s'", dir, p1);
    assert_int_equal(run_weft(args, &out), 2);
    assert_non_null(strstr(out, "invalid JSON"));
    free(out);
    snprintf(args, sizeof args, "run --base-dir '%s' '%s'", dir, p2);
    assert_int_equal(run_weft(args, &out), 2);
    assert_non_null(strstr(out, "trunc.png"));
    free(out);
    snprintf(args, sizeof args, "run --base-dir '%s' '%s'", dir, p3);
    assert_int_equal(run_weft(args, &out), 2);
    free(out);
    snprintf(args, sizeof args, "run --base-dir '%s' '%s/missing.json'", dir, dir);
    assert_int_equal(run_weft(args, &out), 2);
    assert_non_null(strstr(out, "no such file"));
    free(out);
    assert_int_equal(run_weft("frobnicate", &out), 2);
    free(out);
    free(dir);
}

static void test_nodes_lists_builtins(void **state)
{
    char *out = NULL;
    assert_int_equal(run_weft("nodes --base-dir '" WEFT_TEST_TMP "/scratch'", &out), 0);
    assert_non_null(strstr(out, "SaveImage"));
    assert_non_null(strstr(out, "LoadImage"));
    free(out);
    assert_int_equal(run_weft("nodes --json --base-dir '" WEFT_TEST_TMP "/scratch'", &out), 0);
    json_t *j = NULL;
    char err[256];
    assert_int_equal(json_parse(out, strlen(out), &j, err, sizeof err), 0);
    json_t *save = json_object_get(j, "SaveImage");
    assert_non_null(save);
    assert_true(json_object_get(save, "output_node")->u.b);
    json_free(j);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_api_workflow_saves_png_with_metadata),
        cmocka_unit_test(test_run_ui_workflow),
        cmocka_unit_test(test_run_batch_workflow_twice),
        cmocka_unit_test(test_validate_reports_errors_as_json),
        cmocka_unit_test(test_bad_files_give_clear_errors),
        cmocka_unit_test(test_nodes_lists_builtins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
