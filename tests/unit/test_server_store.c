#include "testutil.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "store.h"

/* ---- helpers ---- */

static char logged[8192];

static void capture_log(base_log_level_t lvl, const char *file, int line, const char *msg)
{
    size_t used = strlen(logged);
    snprintf(logged + used, sizeof logged - used, "%s\n", msg);
}

static void capture_start(void)
{
    logged[0] = '\0';
    base_log_set_sink(capture_log);
}

static void capture_stop(void)
{
    base_log_set_sink(NULL);
}

static char *db_path(const char *dir)
{
    size_t n = strlen(dir) + 16;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/weft.db", dir);
    return p;
}

static json_t *parse(const char *text)
{
    json_t *j = NULL;
    char err[128];
    assert_int_equal(json_parse(text, strlen(text), &j, err, sizeof err), 0);
    return j;
}

static int enq(store_t *st, const char *id, double number, int64_t *seq)
{
    store_prompt_t p = {0};
    p.prompt_id = (char *)id;
    p.number = number;
    p.prompt = parse("{\"1\":{\"class_type\":\"SaveImage\",\"inputs\":{}}}");
    p.created_ms = 1000;
    int rc = store_enqueue(st, &p);
    if (seq)
        *seq = p.seq;
    json_free(p.prompt);
    return rc;
}

/* Runs and finishes id with SUCCESS and a one-node output. */
static void run_finish(store_t *st, const char *id, double t)
{
    assert_int_equal(store_mark_running(st, id, t), 0);
    json_t *out = parse("{\"9\":{\"images\":[]}}");
    assert_int_equal(store_finish(st, id, STORE_SUCCESS, t + 1, out, NULL, NULL, NULL), 0);
    json_free(out);
}

static void free_items(store_prompt_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_prompt_free(&items[i]);
    free(items);
}

/* Checks that items hold exactly the comma-separated ids, in order. */
static void expect_ids(store_prompt_t *items, size_t n, const char *want)
{
    char got[1024] = "";
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(got, ",");
        strcat(got, items[i].prompt_id);
    }
    assert_string_equal(got, want);
}

static void expect_pending(store_t *st, const char *want)
{
    store_prompt_t *items = NULL;
    size_t n = 99;
    assert_int_equal(store_list_pending(st, &items, &n), 0);
    expect_ids(items, n, want);
    free_items(items, n);
}

static void expect_page(store_t *st, int64_t max_items, int64_t offset, const char *want)
{
    store_prompt_t *items = NULL;
    size_t n = 99;
    assert_int_equal(store_history_page(st, max_items, offset, &items, &n), 0);
    expect_ids(items, n, want);
    free_items(items, n);
}

static store_t *open_fresh(const char *name, char **dir_out, char **path_out)
{
    char *dir = tu_fresh_dir(name);
    char *path = db_path(dir);
    store_t *st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    assert_non_null(st);
    *dir_out = dir;
    *path_out = path;
    return st;
}

/* One integer from a raw SQLite query on path (bypassing the store). */
static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* ---- tests ---- */

static void test_pending_order(void **state)
{
    char *dir, *path;
    store_t *st = open_fresh("order", &dir, &path);
    int64_t seq[5];
    assert_int_equal(enq(st, "a", 5, &seq[0]), 0);
    assert_int_equal(enq(st, "b", 1, &seq[1]), 0);
    assert_int_equal(enq(st, "c", 5, &seq[2]), 0);
    assert_int_equal(enq(st, "d", -1, &seq[3]), 0);
    assert_int_equal(enq(st, "e", 1, &seq[4]), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(seq[i], i + 1);
    /* number first, insertion order for ties */
    expect_pending(st, "d,b,e,a,c");

    store_prompt_t *items = NULL;
    size_t n = 0;
    assert_int_equal(store_list_pending(st, &items, &n), 0);
    assert_int_equal(n, 5);
    assert_true(items[0].number == -1.0);
    assert_int_equal(items[0].seq, 4);
    assert_int_equal(items[0].status, STORE_PENDING);
    assert_true(items[0].created_ms == 1000.0);
    assert_true(items[0].started_ms == 0.0 && items[0].finished_ms == 0.0);
    assert_null(items[0].outputs);
    assert_null(items[0].client_id);
    assert_non_null(json_object_get(items[0].prompt, "1"));
    free_items(items, n);
    assert_int_equal(store_history_count(st), 0);

    /* Bad arguments are refused without touching the database. */
    assert_int_equal(enq(st, "", 1, NULL), BASE_E_INVAL);
    assert_int_equal(enq(st, "nan", 0.0 / 0.0, NULL), BASE_E_INVAL);
    assert_int_equal(store_enqueue(st, NULL), BASE_E_INVAL);
    assert_int_equal(store_list_pending(st, NULL, &n), BASE_E_INVAL);
    store_close(st);
    store_t *st2 = (store_t *)1;
    assert_int_equal(store_open(NULL, &st2), BASE_E_INVAL);
    assert_null(st2);
    assert_int_equal(store_open("", &st2), BASE_E_INVAL);
    assert_int_equal(store_open(path, NULL), BASE_E_INVAL);
    assert_int_equal(store_open(path, &st2), 0);
    expect_pending(st2, "d,b,e,a,c");
    store_close(st2);
    store_close(NULL);
    free(path);
    free(dir);
}

static void test_duplicate_pending(void **state)
{
    char *dir, *path;
    store_t *st = open_fresh("dup", &dir, &path);
    assert_int_equal(enq(st, "x", 0, NULL), 0);
    assert_int_equal(enq(st, "x", 3, NULL), BASE_E_EXIST);
    assert_int_equal(store_mark_running(st, "x", 10), 0);
    assert_int_equal(enq(st, "x", 0, NULL), BASE_E_EXIST);
    store_prompt_t p;
    assert_int_equal(store_get(st, "x", &p), 0);
    assert_int_equal(p.status, STORE_RUNNING);
    assert_true(p.number == 0.0);
    assert_int_equal(p.seq, 1);
    store_prompt_free(&p);
    /* the failed enqueue did not leave a transaction open: writes still work */
    assert_int_equal(enq(st, "y", 0, NULL), 0);
    expect_pending(st, "y");
    store_close(st);
    free(path);
    free(dir);
}

static void test_running_finish_history(void **state)
{
    char *dir, *path;
    store_t *st = open_fresh("finish", &dir, &path);
    assert_int_equal(enq(st, "p1", 0, NULL), 0);
    assert_int_equal(enq(st, "p2", 0, NULL), 0);
    assert_int_equal(store_mark_running(st, "nope", 5), BASE_E_NOENT);
    assert_int_equal(store_mark_running(st, "p1", 1500), 0);
    assert_int_equal(store_mark_running(st, "p1", 1600), BASE_E_INVAL); /* not pending any more */
    expect_pending(st, "p2");

    json_t *outputs =
        parse("{\"9\":{\"images\":[{\"filename\":\"a.png\",\"subfolder\":\"\",\"type\":\"output\"}]}}");
    json_t *messages = parse("[[\"execution_start\",{\"prompt_id\":\"p1\",\"timestamp\":1500}],"
                             "[\"execution_success\",{\"prompt_id\":\"p1\",\"timestamp\":1700}]]");
    json_t *meta = parse(
        "{\"9\":{\"node_id\":\"9\",\"display_node\":\"9\",\"parent_node\":null,\"real_node_id\":\"9\"}}");
    assert_int_equal(store_finish(st, "nope", STORE_SUCCESS, 1700, outputs, messages, meta, NULL),
                     BASE_E_NOENT);
    assert_int_equal(store_finish(st, "p1", STORE_PENDING, 1700, outputs, messages, meta, NULL),
                     BASE_E_INVAL);
    assert_int_equal(store_finish(st, "p1", STORE_SUCCESS, 1700, outputs, messages, meta, NULL), 0);

    store_prompt_t p;
    assert_int_equal(store_get(st, "p1", &p), 0);
    assert_string_equal(p.prompt_id, "p1");
    assert_int_equal(p.status, STORE_SUCCESS);
    assert_true(p.started_ms == 1500.0 && p.finished_ms == 1700.0);
    assert_true(json_equal(p.outputs, outputs));
    assert_true(json_equal(p.messages, messages));
    assert_true(json_equal(p.meta, meta));
    assert_null(p.error);
    store_prompt_free(&p);
    assert_null(p.prompt_id); /* store_prompt_free zeroes */
    assert_int_equal(store_get(st, "nope", &p), BASE_E_NOENT);
    assert_null(p.prompt_id);

    /* A prompt can fail straight from pending (e.g. it never got to run). */
    assert_int_equal(store_finish(st, "p2", STORE_ERROR, 1800, NULL, NULL, NULL, "boom: ñ"), 0);
    assert_int_equal(store_get(st, "p2", &p), 0);
    assert_int_equal(p.status, STORE_ERROR);
    assert_string_equal(p.error, "boom: ñ");
    assert_null(p.outputs);
    store_prompt_free(&p);

    assert_int_equal(store_history_count(st), 2);
    expect_page(st, -1, 0, "p1,p2");
    expect_pending(st, "");
    json_free(outputs);
    json_free(messages);
    json_free(meta);
    store_close(st);
    free(path);
    free(dir);
}

static void test_history_paging(void **state)
{
    char *dir, *path;
    store_t *st = open_fresh("paging", &dir, &path);
    const char *ids[] = {"h1", "h2", "h3", "h4", "h5"};
    for (int i = 0; i < 5; i++)
        assert_int_equal(enq(st, ids[i], 0, NULL), 0);
    /* Completion order differs from submission order; history follows completion. */
    run_finish(st, "h3", 10);
    run_finish(st, "h1", 20);
    run_finish(st, "h5", 30);
    run_finish(st, "h2", 40);
    run_finish(st, "h4", 50);
    assert_int_equal(store_history_count(st), 5);

    expect_page(st, -1, 0, "h3,h1,h5,h2,h4");  /* all */
    expect_page(st, -1, -1, "h3,h1,h5,h2,h4"); /* all */
    expect_page(st, 2, -1, "h2,h4");           /* the last 2 */
    expect_page(st, 10, -1, "h3,h1,h5,h2,h4"); /* more than there are */
    expect_page(st, 0, -1, "");
    expect_page(st, 2, 1, "h1,h5"); /* skip 1, take 2 */
    expect_page(st, 2, 4, "h4");
    expect_page(st, 2, 5, "");
    expect_page(st, -1, 3, "h2,h4"); /* skip 3, take the rest */
    expect_page(st, 0, 0, "");

    store_prompt_t *items = (store_prompt_t *)1;
    size_t n = 7;
    assert_int_equal(store_history_page(st, 1, 0, NULL, &n), BASE_E_INVAL);
    assert_int_equal(store_history_page(NULL, 1, 0, &items, &n), BASE_E_INVAL);
    assert_null(items);
    assert_int_equal(n, 0);
    store_close(st);
    free(path);
    free(dir);
}

static void test_delete(void **state)
{
    char *dir, *path;
    store_t *st = open_fresh("delete", &dir, &path);
    const char *pend[] = {"a", "b", "c"}, *hist[] = {"h1", "h2", "h3"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(enq(st, hist[i], 0, NULL), 0);
        run_finish(st, hist[i], 10 * i);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(enq(st, pend[i], 0, NULL), 0);
    assert_int_equal(enq(st, "run", 0, NULL), 0);
    assert_int_equal(store_mark_running(st, "run", 99), 0);

    size_t n = 99;
    /* Only pending rows go, whatever other ids are passed (NULL entries are skipped). */
    const char *del1[] = {"b", "h1", "unknown", "run", NULL};
    assert_int_equal(store_delete_pending(st, del1, 5, &n), 0);
    assert_int_equal(n, 1);
    expect_pending(st, "a,c");
    expect_page(st, -1, 0, "h1,h2,h3");

    const char *del2[] = {"a", "h2", "run"};
    assert_int_equal(store_history_delete(st, del2, 3, &n), 0);
    assert_int_equal(n, 1);
    expect_page(st, -1, 0, "h1,h3");
    expect_pending(st, "a,c");

    /* ids given but none: nothing deleted. */
    assert_int_equal(store_delete_pending(st, del1, 0, &n), 0);
    assert_int_equal(n, 0);
    expect_pending(st, "a,c");

    assert_int_equal(store_delete_pending(st, NULL, 0, &n), 0);
    assert_int_equal(n, 2);
    expect_pending(st, "");
    expect_page(st, -1, 0, "h1,h3");
    assert_int_equal(store_history_delete(st, NULL, 0, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(store_history_count(st), 0);

    /* The running prompt survived both clears. */
    store_prompt_t p;
    assert_int_equal(store_get(st, "run", &p), 0);
    assert_int_equal(p.status, STORE_RUNNING);
    store_prompt_free(&p);
    assert_int_equal(store_delete_pending(st, NULL, 0, NULL), 0); /* n is optional */
    assert_int_equal(store_delete_pending(NULL, NULL, 0, &n), BASE_E_INVAL);
    store_close(st);
    free(path);
    free(dir);
}

static void test_replace_finished(void **state)
{
    char *dir, *path;
    store_t *st = open_fresh("replace", &dir, &path);
    assert_int_equal(enq(st, "r", 0, NULL), 0);
    assert_int_equal(enq(st, "other", 0, NULL), 0);
    run_finish(st, "r", 10);
    run_finish(st, "other", 20);
    expect_page(st, -1, 0, "r,other");

    store_prompt_t p = {0};
    p.prompt_id = "r";
    p.number = 7;
    p.prompt = parse("{\"5\":{\"class_type\":\"EmptyImage\",\"inputs\":{\"width\":64}}}");
    p.client_id = "client-2";
    assert_int_equal(store_enqueue(st, &p), 0);
    assert_int_equal(p.seq, 3);
    assert_int_equal(p.status, STORE_PENDING);

    /* The old history entry is gone; the row is the new pending prompt. */
    assert_int_equal(store_history_count(st), 1);
    expect_page(st, -1, 0, "other");
    expect_pending(st, "r");
    store_prompt_t got;
    assert_int_equal(store_get(st, "r", &got), 0);
    assert_int_equal(got.status, STORE_PENDING);
    assert_true(got.number == 7.0);
    assert_true(json_equal(got.prompt, p.prompt));
    assert_string_equal(got.client_id, "client-2");
    assert_null(got.outputs);
    assert_true(got.started_ms == 0.0 && got.finished_ms == 0.0);
    store_prompt_free(&got);
    json_free(p.prompt);

    /* Finishing again puts it last in completion order. */
    run_finish(st, "r", 30);
    expect_page(st, -1, 0, "other,r");
    store_close(st);
    free(path);
    free(dir);
}

static const char *const STOP_MSG = "weft stopped while this prompt was running";

static void check_recovered(store_t *st, const char *id, double now, size_t n_before)
{
    store_prompt_t p;
    assert_int_equal(store_get(st, id, &p), 0);
    assert_int_equal(p.status, STORE_ERROR);
    assert_string_equal(p.error, STOP_MSG);
    assert_true(p.finished_ms == now);
    assert_int_equal(json_len(p.messages), n_before + 1);
    char want[1024];
    snprintf(want, sizeof want,
             "[\"execution_error\",{\"prompt_id\":\"%s\",\"node_id\":null,\"node_type\":null,\"executed\":[],"
             "\"exception_message\":\"%s\",\"exception_type\":\"weft.ServerStopped\",\"traceback\":[],"
             "\"current_inputs\":{},\"current_outputs\":[],\"timestamp\":%lld}]",
             id, STOP_MSG, (long long)now);
    char *last = json_dump(json_at(p.messages, n_before), JSON_COMPACT);
    assert_string_equal(last, want); /* key order included */
    free(last);
    store_prompt_free(&p);
}

static void test_recover_running(void **state)
{
    char *dir, *path;
    store_t *st = open_fresh("recover", &dir, &path);
    store_prompt_t p = {0};
    p.prompt_id = "r1";
    p.prompt = parse("{}");
    p.messages = parse("[[\"execution_start\",{\"prompt_id\":\"r1\",\"timestamp\":1}]]");
    assert_int_equal(store_enqueue(st, &p), 0);
    json_free(p.prompt);
    json_free(p.messages);
    assert_int_equal(enq(st, "r2", 0, NULL), 0);
    assert_int_equal(enq(st, "r3", 0, NULL), 0);
    assert_int_equal(enq(st, "done", 0, NULL), 0);
    run_finish(st, "done", 5);
    assert_int_equal(store_mark_running(st, "r1", 100), 0);
    store_close(st); /* the process "dies" with r1 running */

    st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    size_t n = 99;
    capture_start();
    assert_int_equal(store_recover_running(st, STOP_MSG, 5000, &n), 0);
    capture_stop();
    assert_int_equal(n, 1);
    assert_non_null(strstr(logged, "1 prompt(s) were running"));
    check_recovered(st, "r1", 5000, 1);
    store_prompt_t got;
    assert_int_equal(store_get(st, "r1", &got), 0);
    assert_string_equal(json_str(json_at(json_at(got.messages, 0), 0)), "execution_start");
    store_prompt_free(&got);
    expect_pending(st, "r2,r3");
    expect_page(st, -1, 0, "done,r1"); /* recovered rows finish after everything earlier */

    assert_int_equal(store_recover_running(st, STOP_MSG, 6000, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_recover_running(st, NULL, 6000, &n), BASE_E_INVAL);

    /* A running row without messages gets a one-entry array. */
    assert_int_equal(store_mark_running(st, "r2", 7000), 0);
    assert_int_equal(store_recover_running(st, STOP_MSG, 8000, &n), 0);
    assert_int_equal(n, 1);
    check_recovered(st, "r2", 8000, 0);
    store_close(st);
    free(path);
    free(dir);
}

/* The real thing: a child process is killed with SIGKILL while a prompt runs. */
static void test_kill9(void **state)
{
    char *dir = tu_fresh_dir("kill9");
    char *path = db_path(dir);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        store_t *st = NULL;
        if (store_open(path, &st) || enq(st, "k1", 0, NULL) || enq(st, "k2", 0, NULL) ||
            enq(st, "k3", -5, NULL) || store_mark_running(st, "k3", 50))
            _exit(3);
        raise(SIGKILL);
        _exit(4);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);

    store_t *st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    expect_pending(st, "k1,k2");
    size_t n = 0;
    assert_int_equal(store_recover_running(st, STOP_MSG, 9000, &n), 0);
    assert_int_equal(n, 1);
    check_recovered(st, "k3", 9000, 0);
    store_close(st);
    free(path);
    free(dir);
}

static void test_json_round_trip(void **state)
{
    char *dir, *path;
    store_t *st = open_fresh("json", &dir, &path);
    const char *prompt_text =
        "{\"3\":{\"inputs\":{\"seed\":18446744073709551615,\"neg\":-9223372036854775808,\"cfg\":8.0,"
        "\"denoise\":0.1,\"text\":\"猫 café ✓ 😀 \\u0000 \\\"q\\\" \\\\ \\n\",\"big\":1e300,"
        "\"model\":[\"4\",0],\"flag\":true,\"none\":null},\"class_type\":\"KSampler\"},"
        "\"ü\":{\"inputs\":{},\"class_type\":\"Ünïcode\"}}";
    store_prompt_t p = {0};
    p.prompt_id = "ид-1";
    p.prompt = parse(prompt_text);
    p.extra_data = parse("{\"client_id\":\"клиент\",\"extra_pnginfo\":{\"workflow\":{\"nodes\":[]}}}");
    p.outputs_to_execute = parse("[\"3\",\"ü\"]");
    p.client_id = "клиент";
    p.owner = "owner-ß";
    p.number = -2.5;
    p.created_ms = 1712345678901.5;
    assert_int_equal(store_enqueue(st, &p), 0);
    store_close(st);

    /* Through a fresh connection, so nothing is served from memory. */
    st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    store_prompt_t got;
    assert_int_equal(store_get(st, "ид-1", &got), 0);
    assert_true(json_equal(got.prompt, p.prompt));
    char *a = json_dump(got.prompt, JSON_COMPACT), *b = json_dump(p.prompt, JSON_COMPACT);
    assert_string_equal(a, b); /* same text: key order, 8.0 stays 8.0 */
    free(a);
    free(b);
    uint64_t seed = 0;
    assert_true(json_get_u64(
        json_object_get(json_object_get(json_object_get(got.prompt, "3"), "inputs"), "seed"), &seed));
    assert_true(seed == UINT64_MAX);
    int64_t neg = 0;
    assert_true(json_get_i64(
        json_object_get(json_object_get(json_object_get(got.prompt, "3"), "inputs"), "neg"), &neg));
    assert_true(neg == INT64_MIN);
    const json_t *text = json_object_get(json_object_get(json_object_get(got.prompt, "3"), "inputs"), "text");
    assert_int_equal(text->u.str.len, strlen("猫 café ✓ 😀 ") + 1 + strlen(" \"q\" \\ \n"));
    assert_true(json_equal(got.extra_data, p.extra_data));
    assert_true(json_equal(got.outputs_to_execute, p.outputs_to_execute));
    assert_string_equal(got.client_id, "клиент");
    assert_string_equal(got.owner, "owner-ß");
    assert_true(got.number == -2.5);
    assert_true(got.created_ms == 1712345678901.5);

    /* History JSON too, through store_finish. */
    assert_int_equal(store_mark_running(st, "ид-1", 1), 0);
    json_t *outputs = parse("{\"3\":{\"seed\":[18446744073709551615],\"text\":[\"ø\"]}}");
    assert_int_equal(store_finish(st, "ид-1", STORE_SUCCESS, 2, outputs, NULL, NULL, NULL), 0);
    store_prompt_free(&got);
    assert_int_equal(store_get(st, "ид-1", &got), 0);
    assert_true(json_equal(got.outputs, outputs));
    assert_true(json_get_u64(json_at(json_object_get(json_object_get(got.outputs, "3"), "seed"), 0), &seed));
    assert_true(seed == UINT64_MAX);
    store_prompt_free(&got);
    json_free(outputs);
    json_free(p.prompt);
    json_free(p.extra_data);
    json_free(p.outputs_to_execute);
    store_close(st);

    /* Stored as compact JSON text. */
    assert_int_equal(raw_int(path, "SELECT instr(prompt, '\"seed\":18446744073709551615,') > 0 FROM prompts"),
                     1);
    free(path);
    free(dir);
}

static void test_schema_and_reopen(void **state)
{
    char *dir, *path;
    store_t *st = open_fresh("schema", &dir, &path);
    assert_int_equal(store_schema_version(st), 2);
    assert_int_equal(store_schema_version(NULL), BASE_E_INVAL);
    assert_int_equal(enq(st, "q1", 2, NULL), 0);
    assert_int_equal(enq(st, "q2", 1, NULL), 0);
    assert_int_equal(enq(st, "f1", 0, NULL), 0);
    run_finish(st, "f1", 10);
    store_close(st);

    assert_int_equal(raw_int(path, "SELECT version FROM schema_version"), 2);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM schema_version"), 1);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                                   "('prompts_pending', 'prompts_history', 'prompts_seq')"),
                     3);

    /* Reopening (no migration to run) keeps queue, history and the seq counter. */
    st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    assert_int_equal(store_schema_version(st), 2);
    expect_pending(st, "q2,q1");
    expect_page(st, -1, 0, "f1");
    int64_t seq = 0;
    assert_int_equal(enq(st, "q3", 1, &seq), 0);
    assert_int_equal(seq, 4);
    expect_pending(st, "q2,q3,q1");
    store_close(st);
    assert_int_equal(raw_int(path, "SELECT version FROM schema_version"), 2);
    free(path);
    free(dir);
}

static void test_wal_pragmas(void **state)
{
    char *dir, *path;
    store_t *st = open_fresh("pragmas", &dir, &path);
    /* WAL is a property of the file: any other connection sees it. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
    assert_int_equal(enq(st, "w", 0, NULL), 0);
    char wal[4096];
    snprintf(wal, sizeof wal, "%s-wal", path);
    struct stat sb;
    assert_int_equal(stat(wal, &sb), 0);
    assert_true(sb.st_size > 0);
    store_close(st);
    free(path);
    free(dir);
}

static void expect_refused(const char *path, int want_rc, const char *want_log)
{
    store_t *st = (store_t *)1;
    capture_start();
    int rc = store_open(path, &st);
    capture_stop();
    assert_int_equal(rc, want_rc);
    assert_null(st);
    if (!strstr(logged, want_log))
        fail_msg("log lacks \"%s\": %s", want_log, logged);
    assert_non_null(strstr(logged, path)); /* the message names the file */
}

static void test_bad_files(void **state)
{
    char *dir = tu_fresh_dir("badfiles");
    char path[4096];

    /* Not SQLite at all; the file is left as it was. */
    snprintf(path, sizeof path, "%s/text.db", dir);
    char text[2000];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + i % 26);
    tu_write_file(path, text, sizeof text);
    expect_refused(path, BASE_E_IO, "not a SQLite database");
    char *back = NULL;
    size_t len = 0;
    assert_int_equal(base_read_file(path, 1 << 20, &back, &len), 0);
    assert_int_equal(len, sizeof text);
    assert_memory_equal(back, text, sizeof text);
    free(back);

    /* A real weft database whose first page was overwritten after the header. */
    snprintf(path, sizeof path, "%s/garbage.db", dir);
    store_t *st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    assert_int_equal(enq(st, "g", 0, NULL), 0);
    store_close(st);
    char *db = NULL;
    assert_int_equal(base_read_file(path, 1 << 24, &db, &len), 0);
    assert_true(len >= 4096);
    for (size_t i = 100; i < 4096; i++)
        db[i] = (char)(0xA5 ^ (i * 7));
    tu_write_file(path, db, len);
    expect_refused(path, BASE_E_IO, "malformed");

    /* The same database cut short. */
    snprintf(path, sizeof path, "%s/truncated.db", dir);
    st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    for (int i = 0; i < 200; i++) {
        char id[16];
        snprintf(id, sizeof id, "t%d", i);
        assert_int_equal(enq(st, id, 0, NULL), 0);
    }
    store_close(st);
    free(db);
    assert_int_equal(base_read_file(path, 1 << 24, &db, &len), 0);
    assert_true(len > 3 * 4096);
    tu_write_file(path, db, 4096 + 100);
    expect_refused(path, BASE_E_IO, "malformed");
    free(db);

    /* Damage past the schema pages: open may succeed (a full integrity check at every start
     * would read the whole history), but reads then fail cleanly instead of crashing. */
    snprintf(path, sizeof path, "%s/deep.db", dir);
    st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    for (int i = 0; i < 300; i++) {
        char id[16];
        snprintf(id, sizeof id, "d%d", i);
        assert_int_equal(enq(st, id, 0, NULL), 0);
    }
    store_close(st);
    assert_int_equal(base_read_file(path, 1 << 24, &db, &len), 0);
    assert_true(len > 8 * 4096);
    for (size_t i = 2 * 4096; i < len; i++)
        db[i] = (char)(0x5A ^ (i * 13));
    tu_write_file(path, db, len);
    free(db);
    st = NULL;
    capture_start();
    assert_int_equal(store_open(path, &st), 0);
    store_prompt_t *items = (store_prompt_t *)1;
    size_t n = 7;
    assert_int_equal(store_list_pending(st, &items, &n), BASE_E_IO);
    assert_null(items);
    assert_int_equal(n, 0);
    assert_int_equal(store_history_count(st), BASE_E_IO);
    assert_int_equal(enq(st, "more", 0, NULL), BASE_E_IO);
    store_close(st);
    capture_stop();
    assert_non_null(strstr(logged, "list pending prompts: database disk image is malformed"));

    /* Some other program's SQLite file is not ours to add tables to. */
    snprintf(path, sizeof path, "%s/foreign.db", dir);
    raw_exec(path, "CREATE TABLE foo (x); INSERT INTO foo VALUES (42);");
    expect_refused(path, BASE_E_IO, "not a weft database");
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_master"), 1);
    assert_int_equal(raw_int(path, "SELECT x FROM foo"), 42);

    /* A folder where the file should be. */
    snprintf(path, sizeof path, "%s/adir", dir);
    assert_int_equal(base_mkdir_p(path), 0);
    capture_start();
    st = (store_t *)1;
    assert_int_equal(store_open(path, &st), BASE_E_IO);
    capture_stop();
    assert_null(st);
    assert_non_null(strstr(logged, "cannot open the database"));

    /* A stale WAL full of garbage (a crash mid-write) is ignored: its frames fail their
     * checksums, and the committed data stays. */
    snprintf(path, sizeof path, "%s/wal.db", dir);
    st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    assert_int_equal(enq(st, "w1", 0, NULL), 0);
    store_close(st);
    char wal[4200];
    snprintf(wal, sizeof wal, "%s-wal", path);
    tu_write_file(wal, text, sizeof text);
    st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    expect_pending(st, "w1");
    store_close(st);

    /* An empty file is an empty database. */
    snprintf(path, sizeof path, "%s/empty.db", dir);
    tu_write_file(path, "", 0);
    st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    assert_int_equal(store_schema_version(st), 2);
    store_close(st);
    free(dir);
}

static void test_future_schema(void **state)
{
    char *dir, *path;
    store_t *st = open_fresh("future", &dir, &path);
    assert_int_equal(enq(st, "keep", 0, NULL), 0);
    store_close(st);
    raw_exec(path, "UPDATE schema_version SET version = 99");
    expect_refused(path, BASE_E_NOTSUP, "schema version 99 is newer");
    /* Nothing was touched. */
    assert_int_equal(raw_int(path, "SELECT version FROM schema_version"), 99);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM prompts"), 1);

    /* A damaged version row. */
    raw_exec(path, "DELETE FROM schema_version");
    expect_refused(path, BASE_E_IO, "schema_version has no valid row");
    free(path);
    free(dir);
}

static void test_two_connections(void **state)
{
    char *dir, *path;
    store_t *a = open_fresh("two", &dir, &path);
    store_t *b = NULL;
    assert_int_equal(store_open(path, &b), 0);
    assert_int_equal(store_schema_version(b), 2);

    assert_int_equal(enq(a, "x", 0, NULL), 0);
    expect_pending(b, "x");
    assert_int_equal(store_mark_running(a, "x", 5), 0);
    store_prompt_t p;
    assert_int_equal(store_get(b, "x", &p), 0);
    assert_int_equal(p.status, STORE_RUNNING);
    store_prompt_free(&p);
    expect_pending(b, "");
    json_t *out = parse("{\"1\":{\"text\":[\"hi\"]}}");
    assert_int_equal(store_finish(a, "x", STORE_SUCCESS, 6, out, NULL, NULL, NULL), 0);
    json_free(out);
    assert_int_equal(store_history_count(b), 1);
    expect_page(b, -1, 0, "x");

    /* b writes, a reads; seq keeps counting across connections. */
    int64_t seq = 0;
    assert_int_equal(enq(b, "y", 0, &seq), 0);
    assert_int_equal(seq, 2);
    expect_pending(a, "y");
    assert_int_equal(enq(a, "y", 0, NULL), BASE_E_EXIST);
    store_close(b);
    store_close(a);
    free(path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pending_order),
        cmocka_unit_test(test_duplicate_pending),
        cmocka_unit_test(test_running_finish_history),
        cmocka_unit_test(test_history_paging),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_replace_finished),
        cmocka_unit_test(test_recover_running),
        cmocka_unit_test(test_kill9),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_schema_and_reopen),
        cmocka_unit_test(test_wal_pragmas),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_future_schema),
        cmocka_unit_test(test_two_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
