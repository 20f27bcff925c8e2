/* The CLIP tokenizer and ComfyUI prompt weighting (nodes/sd/clip_tokenizer.c,
 * nodes/sd/prompt_weights.c). Expected ids come from sd15-reference §4.2 and from the
 * independent Python implementation tests/reference/clip_bpe.py (unicodedata-based). */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base.h"
#include "sd/sd.h"

#define TOK_DIR WEFT_SOURCE_DIR "/nodes/sd/clip_tokenizer"
#define N_(a) (sizeof(a) / sizeof((a)[0]))

static clipt_t *g_tok;

static int setup(void **state)
{
    char err[512];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = clipt_load(&g_tok, TOK_DIR, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (rc) {
        fprintf(stderr, "clipt_load: %s\n", err);
        return -1;
    }
    printf("clipt_load: %.1f ms\n",
           (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
    return 0;
}

static int teardown(void **state)
{
    clipt_free(g_tok);
    g_tok = NULL;
    return 0;
}

static void expect_ids_tok(const clipt_t *t, const char *text, const int32_t *want, size_t nwant)
{
    int32_t *ids = NULL;
    size_t n = 99;
    assert_int_equal(clipt_encode(t, text, &ids, &n), 0);
    assert_non_null(ids);
    if (n != nwant) {
        fprintf(stderr, "\"%s\": %zu ids, expected %zu:", text, n, nwant);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(n, nwant);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], want[i]);
    free(ids);
}

#define EXPECT_IDS(text, ...)                                                                                \
    do {                                                                                                     \
        static const int32_t want_[] = {__VA_ARGS__};                                                        \
        expect_ids_tok(g_tok, text, want_, N_(want_));                                                       \
    } while (0)
#define EXPECT_NO_IDS(text) expect_ids_tok(g_tok, text, NULL, 0)

/* ------------------------------------------------------------------ §4.2 check values */

static void test_reference_ids(void **state)
{
    EXPECT_IDS("a photo of a cat", 320, 1125, 539, 320, 2368);
    EXPECT_IDS("A photograph of an astronaut riding a horse", 320, 8853, 539, 550, 18376, 6765, 320, 4558);
    EXPECT_IDS("masterpiece, best quality, 1girl", 12066, 267, 949, 3027, 267, 272, 1611);
    EXPECT_IDS("Hello  World!!", 3306, 1002, 748);
    EXPECT_IDS("don't", 847, 713);
    EXPECT_IDS("red", 736);
    EXPECT_NO_IDS("");
    EXPECT_NO_IDS("   \t\n ");

    /* whole rows: BOS + ids + EOS, padded with EOS to 77 */
    clipt_rows_t r;
    assert_int_equal(clipt_tokenize_weighted(g_tok, "a photo of a cat", &r), 0);
    assert_int_equal(r.rows, 1);
    static const int32_t head[] = {49406, 320, 1125, 539, 320, 2368, 49407};
    for (size_t i = 0; i < CLIPT_ROW; i++) {
        assert_int_equal(r.ids[i], i < N_(head) ? head[i] : CLIPT_EOS);
        assert_true(r.weights[i] == 1.0f);
    }
    clipt_rows_free(&r);
    assert_null(r.ids);

    assert_int_equal(clipt_tokenize_weighted(g_tok, "", &r), 0);
    assert_int_equal(r.rows, 1);
    assert_int_equal(r.ids[0], CLIPT_BOS);
    for (size_t i = 1; i < CLIPT_ROW; i++)
        assert_int_equal(r.ids[i], CLIPT_EOS);
    clipt_rows_free(&r);
}

/* Regex details and Unicode; ids from tests/reference/clip_bpe.py. */
static void test_pretokenizer_and_unicode(void **state)
{
    EXPECT_IDS("it's I'LL", 585, 568, 328, 1342);   /* contractions, case-folded */
    EXPECT_IDS("x<|endoftext|>y", 343, 49407, 344); /* literal special token */
    EXPECT_IDS("ab<|ENDOFTEXT|>", 3937, 49407);     /* via the regex, any case */
    /* the exact string is split out before the regex (HF), so a symbol run cannot swallow
     * its "<|"; the upper-case form is only seen by the regex, after "!<|" */
    EXPECT_IDS("!<|startoftext|>x", 256, 49406, 343);
    EXPECT_IDS("!<|ENDOFTEXT|>", 0, 27, 347, 40786, 4160, 91, 285);
    EXPECT_IDS("tab\tnew\nline", 14724, 686, 1148);
    EXPECT_IDS("HELLO, w\xc3\xb6rld", 3306, 267, 86, 31762, 730);
    EXPECT_IDS("abcd", 596, 4480);
    /* "café ünïcode 東京": accented letters; CJK ideographs become words of their own */
    EXPECT_IDS("caf\xc3\xa9 \xc3\xbcn\xc3\xaf"
               "code \xe6\x9d\xb1\xe4\xba\xac",
               15304, 6522, 77, 35689, 3217, 27667, 365, 21078, 361);
    /* Greek capitals with the final-sigma rule of Python's lower(): ΟΔΥΣΣΕΥΣ -> οδυσσευς */
    EXPECT_IDS("\xce\x9f\xce\x94\xce\xa5\xce\xa3\xce\xa3\xce\x95\xce\xa5\xce\xa3", 138, 123, 138, 112, 139,
               227, 139, 225, 139, 225, 138, 113, 139, 227, 139, 480);
    /* İstanbul: Python lowers U+0130 to "i" + U+0307 */
    EXPECT_IDS("\xc4\xb0stanbul", 328, 16384, 11231);
    EXPECT_IDS("\xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0", 38018, 13506, 23669, 27152, 39813, 27080);
    EXPECT_IDS("\xf0\x9f\x8e\xa8\xf0\x9f\x94\xa5", 31953, 3016); /* two emoji: one symbol run */
    /* NBSP is a space, ZERO WIDTH SPACE (Cf) is dropped: "a b" + "c" -> a, bc */
    EXPECT_IDS("a\xc2\xa0"
               "b\xe2\x80\x8b"
               "c",
               320, 2162);
    /* Arabic-Indic digits are single-digit pieces; '²' is a number too */
    EXPECT_IDS("\xd9\xa1\xd9\xa2\xd9\xa3 x\xc2\xb2", 149, 350, 149, 351, 149, 352, 343, 41175);

    /* stable: the same text gives the same ids every time */
    const char *text = "caf\xc3\xa9 \xc3\xbcn\xc3\xaf"
                       "code \xe6\x9d\xb1\xe4\xba\xac";
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    assert_int_equal(clipt_encode(g_tok, text, &a, &na), 0);
    assert_int_equal(clipt_encode(g_tok, text, &b, &nb), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    free(a);
    free(b);
}

/* Invalid UTF-8 sequences are dropped without splitting the word. */
static void test_invalid_utf8(void **state)
{
    EXPECT_IDS("ab\xff"
               "cd",
               596, 4480); /* stray byte */
    EXPECT_IDS("a\x80\xbf"
               "b\xc0\xaf"
               "cd",
               596, 4480); /* continuation bytes, overlong '/' */
    EXPECT_IDS("ab\xed\xa0\x80"
               "cd",
               596, 4480); /* UTF-16 surrogate */
    EXPECT_IDS("ab\xf4\x90\x80\x80"
               "cd",
               596, 4480);                 /* above U+10FFFF */
    EXPECT_IDS("abcd\xe6\x9d", 596, 4480); /* truncated at the end */
    EXPECT_IDS("ab\xe6\x9d"
               "cd",
               596, 4480); /* truncated in the middle */
    EXPECT_NO_IDS("\xff\xfe\xc3");

    /* random bytes: no crash, every id is a vocab id */
    uint64_t s = 0x9E3779B97F4A7C15ull;
    char buf[97];
    for (int k = 0; k < 3000; k++) {
        size_t n = (size_t)(k % 96);
        for (size_t i = 0; i < n; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            unsigned char c = (unsigned char)(s >> 24);
            buf[i] = (char)(c ? c : 'x');
        }
        buf[n] = '\0';
        int32_t *ids = NULL;
        size_t m = 0;
        assert_int_equal(clipt_encode(g_tok, buf, &ids, &m), 0);
        for (size_t i = 0; i < m; i++)
            assert_true(ids[i] >= 0 && ids[i] <= 49407);
        free(ids);
        clipt_rows_t r;
        assert_int_equal(clipt_tokenize_weighted(g_tok, buf, &r), 0);
        assert_true(r.rows >= 1);
        clipt_rows_free(&r);
    }
}

/* ------------------------------------------------------------------ weighting */

static void expect_row(const clipt_rows_t *r, size_t row, const int32_t *ids, const float *w, size_t n)
{
    assert_true(row < r->rows);
    const int32_t *ri = r->ids + row * CLIPT_ROW;
    const float *rw = r->weights + row * CLIPT_ROW;
    assert_int_equal(ri[0], CLIPT_BOS);
    assert_true(rw[0] == 1.0f);
    for (size_t i = 0; i < n; i++) {
        if (ri[1 + i] != ids[i] || rw[1 + i] != w[i])
            fprintf(stderr, "row %zu pos %zu: id %d w %.9g, expected %d w %.9g\n", row, i + 1, ri[1 + i],
                    (double)rw[1 + i], ids[i], (double)w[i]);
        assert_int_equal(ri[1 + i], ids[i]);
        assert_true(rw[1 + i] == w[i]);
    }
    for (size_t i = 1 + n; i < CLIPT_ROW; i++) {
        assert_int_equal(ri[i], CLIPT_EOS);
        assert_true(rw[i] == 1.0f);
    }
}

/* One-row prompt: ids and weights after BOS, then EOS + pads. */
#define EXPECT_ROW(prompt, ids_, w_)                                                                         \
    do {                                                                                                     \
        clipt_rows_t r_;                                                                                     \
        assert_int_equal(clipt_tokenize_weighted(g_tok, prompt, &r_), 0);                                    \
        assert_int_equal(r_.rows, 1);                                                                        \
        assert_int_equal(N_(ids_), N_(w_));                                                                  \
        expect_row(&r_, 0, ids_, w_, N_(ids_));                                                              \
        clipt_rows_free(&r_);                                                                                \
    } while (0)

static void test_weights(void **state)
{
    const float w11 = (float)1.1, w121 = (float)(1.1 * 1.1), w1331 = (float)(1.1 * 1.1 * 1.1);
    assert_true(fabsf(w121 - 1.21f) < 1e-6f);
    {
        static const int32_t ids[] = {320, 736, 2368};
        const float w[] = {1.0f, 1.5f, 1.0f};
        EXPECT_ROW("a (red:1.5) cat", ids, w);
    }
    {
        static const int32_t ids[] = {736};
        const float w1[] = {w11}, w2[] = {w121}, w3[] = {w1331}, w4[] = {1.5f}, w5[] = {1.3f};
        EXPECT_ROW("(red)", ids, w1);
        EXPECT_ROW("((red))", ids, w2);
        EXPECT_ROW("(((red)))", ids, w3);
        EXPECT_ROW("((red:1.5))", ids, w4); /* absolute, not 1.5 * 1.1 */
        EXPECT_ROW("(red: 1.3)", ids, w5);  /* float() strips spaces */
    }
    {
        /* nested weight inside a group, groups in sequence */
        static const int32_t ids[] = {320, 736, 2368, 320};
        const float w[] = {w11, 0.5f, w11, 1.0f};
        EXPECT_ROW("(a (red:0.5) cat) a", ids, w);
    }
    {
        /* escapes: literal parentheses, no weight */
        static const int32_t ids[] = {263, 736, 264};
        const float w[] = {1, 1, 1};
        EXPECT_ROW("\\(red\\)", ids, w);
        static const int32_t ids2[] = {263, 736, 281, 272, 269, 276, 264};
        const float w2[] = {1, 1, 1, 1, 1, 1, 1};
        EXPECT_ROW("\\(red:1.5\\)", ids2, w2);
        /* an escaped ')' inside a group stays text of the group */
        static const int32_t ids3[] = {736, 264};
        const float w3[] = {1.5f, 1.5f};
        EXPECT_ROW("(red\\):1.5)", ids3, w3);
    }
    {
        /* what after the last ':' is not a float: weight 1.1 and the text keeps the colon */
        static const int32_t ids[] = {736, 281, 5334};
        const float w[] = {w11, w11, w11};
        EXPECT_ROW("(red:abc)", ids, w);
        /* a ':' at the start does not count */
        static const int32_t ids2[] = {281, 272, 269, 276};
        const float w2[] = {w11, w11, w11, w11};
        EXPECT_ROW("(:1.5)", ids2, w2);
        /* Python float() forms: underscores, exponents, signs */
        static const int32_t one[] = {736};
        const float w3[] = {15.0f}, w4[] = {0.25f}, w5[] = {-0.5f}, w6[] = {0.5f};
        EXPECT_ROW("(red:1_5)", one, w3);
        EXPECT_ROW("(red:2.5e-1)", one, w4);
        EXPECT_ROW("(red:-.5)", one, w5);
        EXPECT_ROW("(red:5.e-1)", one, w6);
        /* the last ':' counts */
        EXPECT_ROW("(red:1.5:0.5)", ((const int32_t[]){736, 281, 272, 269, 276}),
                   ((const float[]){.5f, .5f, .5f, .5f, .5f}));
        /* "1__5" is not a Python float */
        EXPECT_ROW("(red:1__5)", ((const int32_t[]){736, 281, 272, 3838, 276}),
                   ((const float[]){w11, w11, w11, w11, w11}));
    }
    {
        /* unbalanced: a stray ')' makes the rest plain text (parentheses included) */
        static const int32_t ids[] = {320, 264, 263, 321, 264};
        const float w[] = {1, 1, 1, 1, 1};
        EXPECT_ROW("a) (b)", ids, w);
        /* an unclosed '(' is plain text */
        static const int32_t ids2[] = {320, 263, 321};
        const float w2[] = {1, 1, 1};
        EXPECT_ROW("a (b", ids2, w2);
        /* "(a (b)": the outer group closes at the end; the inner "(b" is plain inside it */
        static const int32_t ids3[] = {320, 263, 321};
        const float w3[] = {w11, w11, w11};
        EXPECT_ROW("(a (b)", ids3, w3);
        /* "()" contributes nothing */
        static const int32_t ids4[] = {320};
        const float w4[] = {1};
        EXPECT_ROW("()a", ids4, w4);
    }
    {
        /* square brackets mean nothing */
        static const int32_t ids[] = {314, 736, 316};
        const float w[] = {1, 1, 1};
        EXPECT_ROW("[red]", ids, w);
    }
    {
        /* embedding:name is dropped (no embeddings in weft) as ComfyUI drops a missing one;
         * the rest of the word and trailing commas of the name stay */
        static const int32_t ids[] = {320, 2368};
        const float w[] = {1, 1};
        EXPECT_ROW("a embedding:foo cat", ids, w);
        static const int32_t ids2[] = {320, 267, 2368};
        const float w2[] = {1, 1, 1};
        EXPECT_ROW("a embedding:foo, cat", ids2, w2);
        static const int32_t ids3[] = {2368};
        const float w3[] = {1.2f};
        EXPECT_ROW("(embedding:foo cat:1.2)", ids3, w3);
    }
}

/* 10 groups of 7 tokens (< 8: kept whole) per row, then a 60-token plain group (>= 8: split
 * to fill the row): 200 tokens in 3 rows. */
static void test_rows_200_tokens(void **state)
{
    static const int32_t seven[] = {320, 8853, 539, 550, 18376, 6765, 320}; /* "a photograph ... a" */
    static const int32_t eight[] = {12066, 267, 949, 3027, 267, 272, 1611, 267};
    static const int32_t tail4[] = {320, 1125, 539, 320};
    base_buf_t p = BASE_BUF_INIT;
    for (int i = 0; i < 20; i++)
        assert_int_equal(base_buf_puts(&p, "(a photograph of an astronaut riding a:1.2) "), 0);
    for (int i = 0; i < 7; i++)
        assert_int_equal(base_buf_puts(&p, "masterpiece, best quality, 1girl, "), 0);
    assert_int_equal(base_buf_puts(&p, "a photo of a"), 0);

    int32_t plain[60];
    for (int i = 0; i < 56; i++)
        plain[i] = eight[i % 8];
    memcpy(plain + 56, tail4, sizeof tail4);

    clipt_rows_t r;
    assert_int_equal(clipt_tokenize_weighted(g_tok, p.data, &r), 0);
    base_buf_free(&p);
    assert_int_equal(r.rows, 3);

    int32_t ids[75];
    float w[75];
    /* row 0: 70 weighted tokens, EOS at 71, pads 72..76 (group 11 did not fit: 71 + 7 > 76) */
    for (int i = 0; i < 70; i++)
        ids[i] = seven[i % 7], w[i] = 1.2f;
    expect_row(&r, 0, ids, w, 70);
    assert_int_equal(r.ids[71], CLIPT_EOS);
    /* row 1: 70 weighted tokens, then the first 5 of the large group, EOS at 76 */
    for (int i = 0; i < 5; i++)
        ids[70 + i] = plain[i], w[70 + i] = 1.0f;
    expect_row(&r, 1, ids, w, 75);
    /* row 2: the other 55, EOS at 56, pads */
    for (int i = 0; i < 55; i++)
        ids[i] = plain[5 + i], w[i] = 1.0f;
    expect_row(&r, 2, ids, w, 55);
    assert_int_equal(r.ids[2 * CLIPT_ROW + 56], CLIPT_EOS);
    clipt_rows_free(&r);
}

/* The 8-token boundary: a group of 8 is split to fill the row, a group of 7 moves whole. */
static void test_large_word_group(void **state)
{
    static const int32_t seven[] = {320, 8853, 539, 550, 18376, 6765, 320};
    static const int32_t eight[] = {12066, 267, 949, 3027, 267, 272, 1611, 267};
    static const int32_t super[] = {1642, 2857, 13093, 2076, 5868, 26850, 835, 639, 38466};
    EXPECT_IDS("supercalifragilisticexpialidocious", 1642, 2857, 13093, 2076, 5868, 26850, 835, 639, 38466);
    int32_t ids[75];
    float w[75];
    for (int i = 0; i < 70; i++)
        ids[i] = seven[i % 7], w[i] = 1.2f;

    const char *fill = "(a photograph of an astronaut riding a:1.2) ";
    base_buf_t p = BASE_BUF_INIT;
    for (int i = 0; i < 10; i++)
        assert_int_equal(base_buf_puts(&p, fill), 0);
    size_t base_len = p.len;

    /* a 9-token single word, weighted: 5 tokens end row 0, 4 start row 1 */
    assert_int_equal(base_buf_puts(&p, "(supercalifragilisticexpialidocious:1.3)"), 0);
    clipt_rows_t r;
    assert_int_equal(clipt_tokenize_weighted(g_tok, p.data, &r), 0);
    assert_int_equal(r.rows, 2);
    for (int i = 0; i < 5; i++)
        ids[70 + i] = super[i], w[70 + i] = 1.3f;
    expect_row(&r, 0, ids, w, 75);
    expect_row(&r, 1, super + 5, (const float[]){1.3f, 1.3f, 1.3f, 1.3f}, 4);
    clipt_rows_free(&r);

    /* exactly 8 tokens: large */
    p.len = base_len;
    assert_int_equal(base_buf_puts(&p, "(masterpiece, best quality, 1girl,:0.9)"), 0);
    assert_int_equal(clipt_tokenize_weighted(g_tok, p.data, &r), 0);
    assert_int_equal(r.rows, 2);
    for (int i = 0; i < 5; i++)
        ids[70 + i] = eight[i], w[70 + i] = 0.9f;
    expect_row(&r, 0, ids, w, 75);
    expect_row(&r, 1, eight + 5, (const float[]){0.9f, 0.9f, 0.9f}, 3);
    clipt_rows_free(&r);

    /* 7 tokens: small, row 0 closes after 70 and pads, the group starts row 1 */
    p.len = base_len;
    assert_int_equal(base_buf_puts(&p, "(masterpiece, best quality, 1girl:0.9)"), 0);
    assert_int_equal(clipt_tokenize_weighted(g_tok, p.data, &r), 0);
    assert_int_equal(r.rows, 2);
    expect_row(&r, 0, ids, w, 70);
    expect_row(&r, 1, eight, (const float[]){0.9f, 0.9f, 0.9f, 0.9f, 0.9f, 0.9f, 0.9f}, 7);
    clipt_rows_free(&r);
    base_buf_free(&p);

    /* one plain group of 300 tokens (digits are single pieces: "1</w>" = 272) fills 4 rows */
    char digits[301];
    for (int i = 0; i < 300; i++)
        digits[i] = '1';
    digits[300] = '\0';
    assert_int_equal(clipt_tokenize_weighted(g_tok, digits, &r), 0);
    assert_int_equal(r.rows, 4);
    for (int i = 0; i < 75; i++)
        ids[i] = 272, w[i] = 1.0f;
    for (size_t row = 0; row < 4; row++)
        expect_row(&r, row, ids, w, 75);
    clipt_rows_free(&r);
}

static void test_nesting_limit_and_args(void **state)
{
    char deep[2 * 300 + 2];
    /* 200 levels parse (weight 1.1^200 overflows nothing in float: ~1.9e8) */
    memset(deep, '(', 200);
    deep[200] = 'x';
    memset(deep + 201, ')', 200);
    deep[401] = '\0';
    clipt_rows_t r;
    assert_int_equal(clipt_tokenize_weighted(g_tok, deep, &r), 0);
    assert_int_equal(r.ids[1], 343);
    assert_true(fabsf(r.weights[1] / (float)pow(1.1, 200) - 1.0f) < 1e-5f);
    clipt_rows_free(&r);
    memset(deep, '(', 300);
    deep[300] = 'x';
    memset(deep + 301, ')', 300);
    deep[601] = '\0';
    assert_int_equal(clipt_tokenize_weighted(g_tok, deep, &r), BASE_E_RANGE);
    assert_null(r.ids);
    assert_int_equal(r.rows, 0);
    clipt_rows_free(&r);

    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(clipt_encode(NULL, "x", &ids, &n), BASE_E_INVAL);
    assert_int_equal(clipt_encode(g_tok, NULL, &ids, &n), BASE_E_INVAL);
    assert_int_equal(clipt_tokenize_weighted(g_tok, NULL, &r), BASE_E_INVAL);
    assert_int_equal(clipt_tokenize_weighted(NULL, "x", &r), BASE_E_INVAL);
    clipt_rows_free(NULL);
    clipt_free(NULL);
}

/* ------------------------------------------------------------------ loading */

static char *path_in(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char *p = path_in(dir, name);
    tu_write_file(p, text, strlen(text));
    free(p);
}

static void expect_load_error(const char *dir, const char *needle1, const char *needle2)
{
    clipt_t *t = (clipt_t *)1;
    char err[512];
    assert_int_equal(clipt_load(&t, dir, err, sizeof err), BASE_E_TOKENIZER);
    assert_null(t);
    if (!strstr(err, needle1) || (needle2 && !strstr(err, needle2)))
        fprintf(stderr, "message: %s\n", err);
    assert_non_null(strstr(err, needle1));
    if (needle2)
        assert_non_null(strstr(err, needle2));
}

/* bytes_to_unicode written out independently of the tokenizer: the 512 byte symbols in
 * vocab order, then the specials at their SD ids (sparse, as a demo vocab would be). */
static void write_byte_vocab(const char *dir, const char *extra)
{
    int order[256], n = 0;
    for (int b = 0x21; b <= 0x7E; b++)
        order[n++] = b;
    for (int b = 0xA1; b <= 0xAC; b++)
        order[n++] = b;
    for (int b = 0xAE; b <= 0xFF; b++)
        order[n++] = b;
    int cp[256];
    for (int i = 0; i < n; i++)
        cp[order[i]] = order[i];
    int extra_cp = 0x100;
    for (int b = 0; b < 256; b++) {
        bool listed = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        if (!listed) {
            order[n++] = b;
            cp[b] = extra_cp++;
        }
    }
    assert_int_equal(n, 256);
    base_buf_t j = BASE_BUF_INIT;
    assert_int_equal(base_buf_puts(&j, "{"), 0);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 256; i++) {
            /* JSON \u escapes keep the file ASCII; '"' and '\\' need escaping anyway */
            assert_int_equal(
                base_buf_printf(&j, "\"\\u%04x%s\": %d, ", cp[order[i]], pass ? "</w>" : "", pass * 256 + i),
                0);
        }
    if (extra)
        assert_int_equal(base_buf_puts(&j, extra), 0);
    assert_int_equal(base_buf_puts(&j, "\"<|startoftext|>\": 49406, \"<|endoftext|>\": 49407}"), 0);
    write_text(dir, "vocab.json", j.data);
    base_buf_free(&j);
}

static clipt_t *load_ok(const char *dir)
{
    clipt_t *t = NULL;
    char err[512] = "";
    int rc = clipt_load(&t, dir, err, sizeof err);
    if (rc)
        fprintf(stderr, "clipt_load(%s): %s\n", dir, err);
    assert_int_equal(rc, 0);
    return t;
}

static void test_zero_merge_tokenizer(void **state)
{
    char *dir = tu_fresh_dir("zero_merge");
    write_byte_vocab(dir, NULL);
    write_text(dir, "merges.txt", "#version: 0.2\n");
    clipt_t *t = load_ok(dir);
    /* byte symbols only: "a" = 64, "a</w>" = 320, "c" = 66, "t</w>" = 256 + 83 */
    static const int32_t want[] = {320, 66, 64, 339};
    expect_ids_tok(t, "A cat", want, N_(want));
    static const int32_t want2[] = {49406, 343, 49407}; /* "x" as a word, specials intact */
    expect_ids_tok(t, "<|startoftext|>x<|endoftext|>", want2, N_(want2));
    /* "é" = C3 A9: byte symbols in vocab order: 94 ASCII, 12 from A1..AC, then AE.. */
    static const int32_t want3[] = {94 + 12 + (0xC3 - 0xAE), 256 + 94 + (0xA9 - 0xA1)};
    expect_ids_tok(t, "\xc3\xa9", want3, N_(want3));
    clipt_rows_t r;
    assert_int_equal(clipt_tokenize_weighted(t, "(cat:1.5)", &r), 0);
    assert_int_equal(r.rows, 1);
    assert_int_equal(r.ids[1], 66);
    assert_int_equal(r.ids[3], 339);
    assert_int_equal(r.ids[4], CLIPT_EOS);
    assert_true(r.weights[2] == 1.5f);
    clipt_rows_free(&r);
    clipt_free(t);

    /* an empty merges file is as good */
    write_text(dir, "merges.txt", "");
    t = load_ok(dir);
    expect_ids_tok(t, "A cat", want, N_(want));
    clipt_free(t);
    free(dir);
}

static void test_merges_rules(void **state)
{
    char *dir = tu_fresh_dir("merges_rules");
    write_byte_vocab(dir, "\"ca\": 600, \"cat</w>\": 601, ");

    /* no "#version" header: the first line is a merge; CRLF and blank lines are fine */
    write_text(dir, "merges.txt", "c a\r\n\r\nca t</w>\r\n");
    clipt_t *t = load_ok(dir);
    static const int32_t cat[] = {601};
    expect_ids_tok(t, "cat", cat, N_(cat));
    static const int32_t ca[] = {600, 320}; /* "caa": ca + a</w> */
    expect_ids_tok(t, "caa", ca, N_(ca));
    clipt_free(t);

    /* a merged symbol missing from the vocab is HF's unknown token, <|endoftext|> */
    write_text(dir, "merges.txt", "#version: 0.2\nt a\n");
    t = load_ok(dir);
    static const int32_t unk[] = {49407, 344};
    expect_ids_tok(t, "tay", unk, N_(unk));
    clipt_free(t);

    /* only the first 48,894 merges count (and a byte order mark does not turn the header
     * into a merge that would push the last one out) */
    base_buf_t m = BASE_BUF_INIT;
    assert_int_equal(base_buf_puts(&m, "\xEF\xBB\xBF#version: 0.2\n"), 0);
    for (int i = 0; i < 48893; i++)
        assert_int_equal(base_buf_printf(&m, "q%d z%d\n", i, i), 0);
    size_t keep = m.len;
    assert_int_equal(base_buf_puts(&m, "c a\n"), 0); /* merge number 48,894: used */
    write_text(dir, "merges.txt", m.data);
    t = load_ok(dir);
    static const int32_t used[] = {600, 339};
    expect_ids_tok(t, "cat", used, N_(used));
    clipt_free(t);
    m.len = keep;
    assert_int_equal(base_buf_puts(&m, "q z\nc a\nthis line is not a merge\n"), 0); /* 48,895+: ignored */
    write_text(dir, "merges.txt", m.data);
    t = load_ok(dir);
    static const int32_t unused[] = {66, 64, 339};
    expect_ids_tok(t, "cat", unused, N_(unused));
    clipt_free(t);
    base_buf_free(&m);
    free(dir);
}

static void test_load_errors(void **state)
{
    char *dir = tu_fresh_dir("load_errors");
    expect_load_error(dir, "vocab.json", "missing");

    write_byte_vocab(dir, NULL);
    expect_load_error(dir, "merges.txt", "missing");

    write_text(dir, "merges.txt", "#version: 0.2\na b\nc d e\n");
    expect_load_error(dir, "merges.txt line 3", "c d e");
    write_text(dir, "merges.txt", "a b\nlonely\n");
    expect_load_error(dir, "merges.txt line 2", "lonely");

    write_text(dir, "merges.txt", "a b\n");
    write_text(dir, "vocab.json", "{\"a\": 1,\n \"b\": }");
    expect_load_error(dir, "vocab.json", "line 2");
    write_text(dir, "vocab.json", "[1, 2]");
    expect_load_error(dir, "vocab.json", "object");
    write_text(dir, "vocab.json", "{\"a\": 1.5, \"<|startoftext|>\": 2, \"<|endoftext|>\": 3}");
    expect_load_error(dir, "vocab.json", "\"a\"");
    write_text(dir, "vocab.json", "{\"a\": -1, \"<|startoftext|>\": 2, \"<|endoftext|>\": 3}");
    expect_load_error(dir, "vocab.json", "\"a\"");
    write_text(dir, "vocab.json", "{\"a\": 1, \"<|startoftext|>\": 2}");
    expect_load_error(dir, "vocab.json", "<|endoftext|>");
    write_text(dir, "vocab.json", "{}");
    expect_load_error(dir, "vocab.json", "<|startoftext|>");

    clipt_t *t = NULL;
    char err[64];
    assert_int_equal(clipt_load(&t, NULL, err, sizeof err), BASE_E_INVAL);
    assert_int_equal(clipt_load(NULL, dir, err, sizeof err), BASE_E_INVAL);
    /* a tiny message buffer truncates safely */
    char small[8];
    assert_int_equal(clipt_load(&t, "/nonexistent/dir", small, sizeof small), BASE_E_TOKENIZER);
    assert_int_equal(strlen(small), sizeof small - 1);
    free(dir);
}

/* ------------------------------------------------------------------ threads, speed */

typedef struct {
    const char *text;
    const int32_t *want;
    size_t nwant;
    int bad;
} thread_arg_t;

static void *encode_many(void *p)
{
    thread_arg_t *a = p;
    for (int k = 0; k < 300; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (clipt_encode(g_tok, a->text, &ids, &n) || n != a->nwant || memcmp(ids, a->want, n * sizeof *ids))
            a->bad++;
        free(ids);
    }
    return NULL;
}

static void test_threads_and_speed(void **state)
{
    static const char *const texts[] = {
        "A photograph of an astronaut riding a horse",
        "masterpiece, best quality, 1girl",
        "caf\xc3\xa9 \xc3\xbcn\xc3\xaf"
        "code \xe6\x9d\xb1\xe4\xba\xac",
        "Hello  World!!",
    };
    thread_arg_t args[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        assert_int_equal(clipt_encode(g_tok, texts[i], &ids, &n), 0);
        args[i] = (thread_arg_t){texts[i], ids, n, 0};
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, encode_many, &args[i]), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].bad, 0);
        free((void *)args[i].want);
    }

    /* a long prompt: 9 tokens x 1000 */
    base_buf_t p = BASE_BUF_INIT;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(base_buf_puts(&p, "a (photograph:1.2) of an astronaut riding a horse, "), 0);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    clipt_rows_t r;
    assert_int_equal(clipt_tokenize_weighted(g_tok, p.data, &r), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    printf("tokenize_weighted: 9,000 tokens in %.1f ms (%zu rows)\n", ms, r.rows);
    /* 120 rows (tests/reference/clip_bpe.py --rows): the 8-token plain groups split rows */
    assert_int_equal(r.rows, 120);
    size_t content = 0;
    for (size_t i = 0; i < r.rows; i++)
        for (size_t k = 1; k < CLIPT_ROW && r.ids[i * CLIPT_ROW + k] != CLIPT_EOS; k++)
            content++;
    assert_int_equal(content, 9000);
    clipt_rows_free(&r);
    base_buf_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_ids),          cmocka_unit_test(test_pretokenizer_and_unicode),
        cmocka_unit_test(test_invalid_utf8),           cmocka_unit_test(test_weights),
        cmocka_unit_test(test_rows_200_tokens),        cmocka_unit_test(test_large_word_group),
        cmocka_unit_test(test_nesting_limit_and_args), cmocka_unit_test(test_zero_merge_tokenizer),
        cmocka_unit_test(test_merges_rules),           cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_threads_and_speed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
