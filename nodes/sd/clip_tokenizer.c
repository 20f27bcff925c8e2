/* The CLIP byte-level BPE tokenizer (sd15-reference §4.1-§4.2): what Hugging Face's slow
 * CLIPTokenizer does when ftfy is not installed, which is how ComfyUI runs it.
 *
 * Pipeline per call: UTF-8 decode -> split out the literal special tokens (HF does this
 * before anything else) -> BERT-style cleaning (drop control/format/unassigned characters,
 * U+FFFD and NUL; whitespace to spaces; spaces around CJK ideographs) -> Python-style
 * lower-casing -> the CLIP pre-tokeniser regex, by hand -> bytes_to_unicode -> BPE -> ids.
 *
 * NFC normalisation is NOT done. It only matters for text that is not already in NFC:
 * accents typed as combining characters ("e" + U+0301 rather than "é") become a letter and a
 * mark symbol where HF would first compose them into one letter, and the few characters NFC
 * replaces (CJK compatibility ideographs, Greek oxia vowels, U+037E...) keep their own
 * bytes. Keyboards and browsers produce NFC, so ordinary prompts are unaffected.
 *
 * Character classes: letters are glibc's iswalpha() in C.UTF-8 minus the Unicode number and
 * mark categories (tables below) and two blocks of letter-like symbols; lower-casing is
 * towlower() plus Python's two special cases. Checked against Python's unicodedata for every
 * code point (Unicode 14.0 in both glibc 2.36 and Python 3.11): apart from NFC, all
 * tokenise alike (tests/reference/clip_bpe.py). Without the C.UTF-8 locale (newlocale
 * fails), only ASCII is lower-cased and every other non-number, non-mark character above
 * U+007F counts as a letter.
 *
 * Invalid UTF-8: each maximal invalid sequence is dropped, as HF drops U+FFFD (what a
 * lenient decoder would have put there); it does not split the word around it.
 *
 * No result cache: a word costs about a microsecond, and a cache would need a lock since one
 * tokenizer is shared by threads. The object is immutable after clipt_load. */
#include <limits.h>
#include <locale.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "base.h"
#include "sd/sd.h"

#define MAX_MERGES (49152 - 256 - 2) /* HF reads merges[1 : 49152-256-2+1] */
#define MAX_FILE_BYTES ((size_t)256 << 20)

static const char SOT[] = "<|startoftext|>";
static const char EOT[] = "<|endoftext|>";

struct clipt_s {
    base_map_t vocab;       /* symbol -> id (stored in the pointer); keys in vocab_keys */
    char *vocab_keys;       /* every symbol, NUL-separated, owned */
    base_map_t ranks;       /* "first second" -> merge rank; keys in merges_text */
    char *merges_text;      /* merges.txt with each line NUL-terminated in place, owned */
    int32_t sot_id, eot_id; /* vocab ids of the specials; eot is also HF's unknown token */
    locale_t loc;           /* C.UTF-8 LC_CTYPE, or (locale_t)0: ASCII rules */
    char bytesym[256][3];   /* bytes_to_unicode: byte -> its symbol in UTF-8 */
};

/* ------------------------------------------------------------------ Unicode tables */

typedef struct {
    uint32_t lo, hi;
} urange_t;

/* The tables are printed by tests/reference/clip_unicode_tables.py (Unicode 14.0).
 * \p{N} without the ASCII digits: glibc's iswdigit is ASCII-only and its iswalpha counts
 * the other digits as letters. 133 ranges. */
static const urange_t uni_number[] = {
    {0xB2, 0xB3},       {0xB9, 0xB9},       {0xBC, 0xBE},       {0x660, 0x669},     {0x6F0, 0x6F9},
    {0x7C0, 0x7C9},     {0x966, 0x96F},     {0x9E6, 0x9EF},     {0x9F4, 0x9F9},     {0xA66, 0xA6F},
    {0xAE6, 0xAEF},     {0xB66, 0xB6F},     {0xB72, 0xB77},     {0xBE6, 0xBF2},     {0xC66, 0xC6F},
    {0xC78, 0xC7E},     {0xCE6, 0xCEF},     {0xD58, 0xD5E},     {0xD66, 0xD78},     {0xDE6, 0xDEF},
    {0xE50, 0xE59},     {0xED0, 0xED9},     {0xF20, 0xF33},     {0x1040, 0x1049},   {0x1090, 0x1099},
    {0x1369, 0x137C},   {0x16EE, 0x16F0},   {0x17E0, 0x17E9},   {0x17F0, 0x17F9},   {0x1810, 0x1819},
    {0x1946, 0x194F},   {0x19D0, 0x19DA},   {0x1A80, 0x1A89},   {0x1A90, 0x1A99},   {0x1B50, 0x1B59},
    {0x1BB0, 0x1BB9},   {0x1C40, 0x1C49},   {0x1C50, 0x1C59},   {0x2070, 0x2070},   {0x2074, 0x2079},
    {0x2080, 0x2089},   {0x2150, 0x2182},   {0x2185, 0x2189},   {0x2460, 0x249B},   {0x24EA, 0x24FF},
    {0x2776, 0x2793},   {0x2CFD, 0x2CFD},   {0x3007, 0x3007},   {0x3021, 0x3029},   {0x3038, 0x303A},
    {0x3192, 0x3195},   {0x3220, 0x3229},   {0x3248, 0x324F},   {0x3251, 0x325F},   {0x3280, 0x3289},
    {0x32B1, 0x32BF},   {0xA620, 0xA629},   {0xA6E6, 0xA6EF},   {0xA830, 0xA835},   {0xA8D0, 0xA8D9},
    {0xA900, 0xA909},   {0xA9D0, 0xA9D9},   {0xA9F0, 0xA9F9},   {0xAA50, 0xAA59},   {0xABF0, 0xABF9},
    {0xFF10, 0xFF19},   {0x10107, 0x10133}, {0x10140, 0x10178}, {0x1018A, 0x1018B}, {0x102E1, 0x102FB},
    {0x10320, 0x10323}, {0x10341, 0x10341}, {0x1034A, 0x1034A}, {0x103D1, 0x103D5}, {0x104A0, 0x104A9},
    {0x10858, 0x1085F}, {0x10879, 0x1087F}, {0x108A7, 0x108AF}, {0x108FB, 0x108FF}, {0x10916, 0x1091B},
    {0x109BC, 0x109BD}, {0x109C0, 0x109CF}, {0x109D2, 0x109FF}, {0x10A40, 0x10A48}, {0x10A7D, 0x10A7E},
    {0x10A9D, 0x10A9F}, {0x10AEB, 0x10AEF}, {0x10B58, 0x10B5F}, {0x10B78, 0x10B7F}, {0x10BA9, 0x10BAF},
    {0x10CFA, 0x10CFF}, {0x10D30, 0x10D39}, {0x10E60, 0x10E7E}, {0x10F1D, 0x10F26}, {0x10F51, 0x10F54},
    {0x10FC5, 0x10FCB}, {0x11052, 0x1106F}, {0x110F0, 0x110F9}, {0x11136, 0x1113F}, {0x111D0, 0x111D9},
    {0x111E1, 0x111F4}, {0x112F0, 0x112F9}, {0x11450, 0x11459}, {0x114D0, 0x114D9}, {0x11650, 0x11659},
    {0x116C0, 0x116C9}, {0x11730, 0x1173B}, {0x118E0, 0x118F2}, {0x11950, 0x11959}, {0x11C50, 0x11C6C},
    {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x11FC0, 0x11FD4}, {0x12400, 0x1246E}, {0x16A60, 0x16A69},
    {0x16AC0, 0x16AC9}, {0x16B50, 0x16B59}, {0x16B5B, 0x16B61}, {0x16E80, 0x16E96}, {0x1D2E0, 0x1D2F3},
    {0x1D360, 0x1D378}, {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149}, {0x1E2F0, 0x1E2F9}, {0x1E8C7, 0x1E8CF},
    {0x1E950, 0x1E959}, {0x1EC71, 0x1ECAB}, {0x1ECAD, 0x1ECAF}, {0x1ECB1, 0x1ECB4}, {0x1ED01, 0x1ED2D},
    {0x1ED2F, 0x1ED3D}, {0x1F100, 0x1F10C}, {0x1FBF0, 0x1FBF9},
};
/* \p{M}: combining marks, which glibc counts as alphabetic and \p{L} does not. 299 ranges. */
static const urange_t uni_mark[] = {
    {0x300, 0x36F},     {0x483, 0x489},     {0x591, 0x5BD},     {0x5BF, 0x5BF},     {0x5C1, 0x5C2},
    {0x5C4, 0x5C5},     {0x5C7, 0x5C7},     {0x610, 0x61A},     {0x64B, 0x65F},     {0x670, 0x670},
    {0x6D6, 0x6DC},     {0x6DF, 0x6E4},     {0x6E7, 0x6E8},     {0x6EA, 0x6ED},     {0x711, 0x711},
    {0x730, 0x74A},     {0x7A6, 0x7B0},     {0x7EB, 0x7F3},     {0x7FD, 0x7FD},     {0x816, 0x819},
    {0x81B, 0x823},     {0x825, 0x827},     {0x829, 0x82D},     {0x859, 0x85B},     {0x898, 0x89F},
    {0x8CA, 0x8E1},     {0x8E3, 0x903},     {0x93A, 0x93C},     {0x93E, 0x94F},     {0x951, 0x957},
    {0x962, 0x963},     {0x981, 0x983},     {0x9BC, 0x9BC},     {0x9BE, 0x9C4},     {0x9C7, 0x9C8},
    {0x9CB, 0x9CD},     {0x9D7, 0x9D7},     {0x9E2, 0x9E3},     {0x9FE, 0x9FE},     {0xA01, 0xA03},
    {0xA3C, 0xA3C},     {0xA3E, 0xA42},     {0xA47, 0xA48},     {0xA4B, 0xA4D},     {0xA51, 0xA51},
    {0xA70, 0xA71},     {0xA75, 0xA75},     {0xA81, 0xA83},     {0xABC, 0xABC},     {0xABE, 0xAC5},
    {0xAC7, 0xAC9},     {0xACB, 0xACD},     {0xAE2, 0xAE3},     {0xAFA, 0xAFF},     {0xB01, 0xB03},
    {0xB3C, 0xB3C},     {0xB3E, 0xB44},     {0xB47, 0xB48},     {0xB4B, 0xB4D},     {0xB55, 0xB57},
    {0xB62, 0xB63},     {0xB82, 0xB82},     {0xBBE, 0xBC2},     {0xBC6, 0xBC8},     {0xBCA, 0xBCD},
    {0xBD7, 0xBD7},     {0xC00, 0xC04},     {0xC3C, 0xC3C},     {0xC3E, 0xC44},     {0xC46, 0xC48},
    {0xC4A, 0xC4D},     {0xC55, 0xC56},     {0xC62, 0xC63},     {0xC81, 0xC83},     {0xCBC, 0xCBC},
    {0xCBE, 0xCC4},     {0xCC6, 0xCC8},     {0xCCA, 0xCCD},     {0xCD5, 0xCD6},     {0xCE2, 0xCE3},
    {0xD00, 0xD03},     {0xD3B, 0xD3C},     {0xD3E, 0xD44},     {0xD46, 0xD48},     {0xD4A, 0xD4D},
    {0xD57, 0xD57},     {0xD62, 0xD63},     {0xD81, 0xD83},     {0xDCA, 0xDCA},     {0xDCF, 0xDD4},
    {0xDD6, 0xDD6},     {0xDD8, 0xDDF},     {0xDF2, 0xDF3},     {0xE31, 0xE31},     {0xE34, 0xE3A},
    {0xE47, 0xE4E},     {0xEB1, 0xEB1},     {0xEB4, 0xEBC},     {0xEC8, 0xECD},     {0xF18, 0xF19},
    {0xF35, 0xF35},     {0xF37, 0xF37},     {0xF39, 0xF39},     {0xF3E, 0xF3F},     {0xF71, 0xF84},
    {0xF86, 0xF87},     {0xF8D, 0xF97},     {0xF99, 0xFBC},     {0xFC6, 0xFC6},     {0x102B, 0x103E},
    {0x1056, 0x1059},   {0x105E, 0x1060},   {0x1062, 0x1064},   {0x1067, 0x106D},   {0x1071, 0x1074},
    {0x1082, 0x108D},   {0x108F, 0x108F},   {0x109A, 0x109D},   {0x135D, 0x135F},   {0x1712, 0x1715},
    {0x1732, 0x1734},   {0x1752, 0x1753},   {0x1772, 0x1773},   {0x17B4, 0x17D3},   {0x17DD, 0x17DD},
    {0x180B, 0x180D},   {0x180F, 0x180F},   {0x1885, 0x1886},   {0x18A9, 0x18A9},   {0x1920, 0x192B},
    {0x1930, 0x193B},   {0x1A17, 0x1A1B},   {0x1A55, 0x1A5E},   {0x1A60, 0x1A7C},   {0x1A7F, 0x1A7F},
    {0x1AB0, 0x1ACE},   {0x1B00, 0x1B04},   {0x1B34, 0x1B44},   {0x1B6B, 0x1B73},   {0x1B80, 0x1B82},
    {0x1BA1, 0x1BAD},   {0x1BE6, 0x1BF3},   {0x1C24, 0x1C37},   {0x1CD0, 0x1CD2},   {0x1CD4, 0x1CE8},
    {0x1CED, 0x1CED},   {0x1CF4, 0x1CF4},   {0x1CF7, 0x1CF9},   {0x1DC0, 0x1DFF},   {0x20D0, 0x20F0},
    {0x2CEF, 0x2CF1},   {0x2D7F, 0x2D7F},   {0x2DE0, 0x2DFF},   {0x302A, 0x302F},   {0x3099, 0x309A},
    {0xA66F, 0xA672},   {0xA674, 0xA67D},   {0xA69E, 0xA69F},   {0xA6F0, 0xA6F1},   {0xA802, 0xA802},
    {0xA806, 0xA806},   {0xA80B, 0xA80B},   {0xA823, 0xA827},   {0xA82C, 0xA82C},   {0xA880, 0xA881},
    {0xA8B4, 0xA8C5},   {0xA8E0, 0xA8F1},   {0xA8FF, 0xA8FF},   {0xA926, 0xA92D},   {0xA947, 0xA953},
    {0xA980, 0xA983},   {0xA9B3, 0xA9C0},   {0xA9E5, 0xA9E5},   {0xAA29, 0xAA36},   {0xAA43, 0xAA43},
    {0xAA4C, 0xAA4D},   {0xAA7B, 0xAA7D},   {0xAAB0, 0xAAB0},   {0xAAB2, 0xAAB4},   {0xAAB7, 0xAAB8},
    {0xAABE, 0xAABF},   {0xAAC1, 0xAAC1},   {0xAAEB, 0xAAEF},   {0xAAF5, 0xAAF6},   {0xABE3, 0xABEA},
    {0xABEC, 0xABED},   {0xFB1E, 0xFB1E},   {0xFE00, 0xFE0F},   {0xFE20, 0xFE2F},   {0x101FD, 0x101FD},
    {0x102E0, 0x102E0}, {0x10376, 0x1037A}, {0x10A01, 0x10A03}, {0x10A05, 0x10A06}, {0x10A0C, 0x10A0F},
    {0x10A38, 0x10A3A}, {0x10A3F, 0x10A3F}, {0x10AE5, 0x10AE6}, {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC},
    {0x10F46, 0x10F50}, {0x10F82, 0x10F85}, {0x11000, 0x11002}, {0x11038, 0x11046}, {0x11070, 0x11070},
    {0x11073, 0x11074}, {0x1107F, 0x11082}, {0x110B0, 0x110BA}, {0x110C2, 0x110C2}, {0x11100, 0x11102},
    {0x11127, 0x11134}, {0x11145, 0x11146}, {0x11173, 0x11173}, {0x11180, 0x11182}, {0x111B3, 0x111C0},
    {0x111C9, 0x111CC}, {0x111CE, 0x111CF}, {0x1122C, 0x11237}, {0x1123E, 0x1123E}, {0x112DF, 0x112EA},
    {0x11300, 0x11303}, {0x1133B, 0x1133C}, {0x1133E, 0x11344}, {0x11347, 0x11348}, {0x1134B, 0x1134D},
    {0x11357, 0x11357}, {0x11362, 0x11363}, {0x11366, 0x1136C}, {0x11370, 0x11374}, {0x11435, 0x11446},
    {0x1145E, 0x1145E}, {0x114B0, 0x114C3}, {0x115AF, 0x115B5}, {0x115B8, 0x115C0}, {0x115DC, 0x115DD},
    {0x11630, 0x11640}, {0x116AB, 0x116B7}, {0x1171D, 0x1172B}, {0x1182C, 0x1183A}, {0x11930, 0x11935},
    {0x11937, 0x11938}, {0x1193B, 0x1193E}, {0x11940, 0x11940}, {0x11942, 0x11943}, {0x119D1, 0x119D7},
    {0x119DA, 0x119E0}, {0x119E4, 0x119E4}, {0x11A01, 0x11A0A}, {0x11A33, 0x11A39}, {0x11A3B, 0x11A3E},
    {0x11A47, 0x11A47}, {0x11A51, 0x11A5B}, {0x11A8A, 0x11A99}, {0x11C2F, 0x11C36}, {0x11C38, 0x11C3F},
    {0x11C92, 0x11CA7}, {0x11CA9, 0x11CB6}, {0x11D31, 0x11D36}, {0x11D3A, 0x11D3A}, {0x11D3C, 0x11D3D},
    {0x11D3F, 0x11D45}, {0x11D47, 0x11D47}, {0x11D8A, 0x11D8E}, {0x11D90, 0x11D91}, {0x11D93, 0x11D97},
    {0x11EF3, 0x11EF6}, {0x16AF0, 0x16AF4}, {0x16B30, 0x16B36}, {0x16F4F, 0x16F4F}, {0x16F51, 0x16F87},
    {0x16F8F, 0x16F92}, {0x16FE4, 0x16FE4}, {0x16FF0, 0x16FF1}, {0x1BC9D, 0x1BC9E}, {0x1CF00, 0x1CF2D},
    {0x1CF30, 0x1CF46}, {0x1D165, 0x1D169}, {0x1D16D, 0x1D172}, {0x1D17B, 0x1D182}, {0x1D185, 0x1D18B},
    {0x1D1AA, 0x1D1AD}, {0x1D242, 0x1D244}, {0x1DA00, 0x1DA36}, {0x1DA3B, 0x1DA6C}, {0x1DA75, 0x1DA75},
    {0x1DA84, 0x1DA84}, {0x1DA9B, 0x1DA9F}, {0x1DAA1, 0x1DAAF}, {0x1E000, 0x1E006}, {0x1E008, 0x1E018},
    {0x1E01B, 0x1E021}, {0x1E023, 0x1E024}, {0x1E026, 0x1E02A}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF}, {0x1E8D0, 0x1E8D6}, {0x1E944, 0x1E94A}, {0xE0100, 0xE01EF},
};
/* Category Cf (format characters such as U+200B), dropped by the cleaner. 21 ranges. */
static const urange_t uni_format[] = {
    {0xAD, 0xAD},       {0x600, 0x605},     {0x61C, 0x61C},     {0x6DD, 0x6DD},     {0x70F, 0x70F},
    {0x890, 0x891},     {0x8E2, 0x8E2},     {0x180E, 0x180E},   {0x200B, 0x200F},   {0x202A, 0x202E},
    {0x2060, 0x2064},   {0x2066, 0x206F},   {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},   {0x110BD, 0x110BD},
    {0x110CD, 0x110CD}, {0x13430, 0x13438}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
    {0xE0020, 0xE007F},
};

static bool in_ranges(const urange_t *r, size_t n, uint32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < r[mid].lo)
            hi = mid;
        else if (c > r[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

#define IN_TABLE(t, c) in_ranges((t), sizeof(t) / sizeof((t)[0]), (c))

/* ------------------------------------------------------------------ character classes */

/* HF _is_whitespace (\t \n \r and category Zs), plus U+2028/U+2029, which the cleaner keeps
 * but Python's str.split() then treats as separators. */
static bool is_space(uint32_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* HF _is_control: category C* (Cc, Cf, Cs, Co, Cn) except \t \n \r. Cs cannot come out of
 * the decoder; Cn (unassigned) is what glibc puts in no class at all. */
static bool is_control(const clipt_t *t, uint32_t c)
{
    if (c < 0x20)
        return c != '\t' && c != '\n' && c != '\r';
    if (c >= 0x7F && c <= 0x9F)
        return true;
    if (c < 0xA0)
        return false;
    if (IN_TABLE(uni_format, c))
        return true;
    if ((c >= 0xE000 && c <= 0xF8FF) || c >= 0xF0000)
        return true; /* private use (Co); planes 15-16 are private use or noncharacters */
    if (t->loc && !iswprint_l((wint_t)c, t->loc) && !iswspace_l((wint_t)c, t->loc) &&
        !iswcntrl_l((wint_t)c, t->loc))
        return true; /* unassigned (Cn) */
    return false;
}

/* Spaces go around these (HF _tokenize_chinese_chars), so each is a word of its own. */
static bool is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) ||
           (c >= 0x2B820 && c <= 0x2CEAF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* \p{N} */
static bool is_number(uint32_t c)
{
    if (c < 0x80)
        return c >= '0' && c <= '9';
    return IN_TABLE(uni_number, c);
}

/* \p{L} */
static bool is_letter(const clipt_t *t, uint32_t c)
{
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (IN_TABLE(uni_number, c) || IN_TABLE(uni_mark, c))
        return false;
    if ((c >= 0x24B6 && c <= 0x24E9) || (c >= 0x1F130 && c <= 0x1F189))
        return false; /* circled and squared Latin letters: So, but alphabetic to glibc */
    if (!t->loc)
        return true;
    return iswalpha_l((wint_t)c, t->loc) != 0;
}

static bool is_cased(const clipt_t *t, uint32_t c)
{
    if (c < 0x80 || !t->loc)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    return iswupper_l((wint_t)c, t->loc) || iswlower_l((wint_t)c, t->loc);
}

/* Approximates Unicode's Case_Ignorable for the final-sigma rule: apostrophes, the word-
 * internal punctuation of Word_Break MidLetter/MidNumLet, and combining marks. */
static bool is_case_ignorable(uint32_t c)
{
    return c == '\'' || c == '.' || c == ':' || c == 0xB7 || c == 0x2019 || c == 0x2018 ||
           IN_TABLE(uni_mark, c);
}

/* ------------------------------------------------------------------ UTF-8 */

/* Decodes s[0..len) into out (room for len code points), dropping every maximal invalid
 * sequence (overlong forms, surrogates, > U+10FFFF, truncated or stray bytes). */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *out)
{
    size_t n = 0, i = 0;
    while (i < len) {
        unsigned char b = s[i];
        if (b < 0x80) {
            out[n++] = b;
            i++;
            continue;
        }
        size_t need;
        uint32_t c, min;
        if (b >= 0xC2 && b <= 0xDF) {
            need = 1, c = b & 0x1F, min = 0x80;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2, c = b & 0x0F, min = 0x800;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3, c = b & 0x07, min = 0x10000;
        } else {
            i++; /* stray continuation byte or a lead byte that is never valid */
            continue;
        }
        size_t k = 1;
        for (; k <= need && i + k < len && (s[i + k] & 0xC0) == 0x80; k++)
            c = (c << 6) | (s[i + k] & 0x3F);
        if (k <= need || c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
            i += k > 1 ? k : 1; /* skip the lead and the continuation bytes it claimed */
            continue;
        }
        out[n++] = c;
        i += k;
    }
    return n;
}

static size_t utf8_put(uint32_t c, char *o)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------ loading */

static int load_fail(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int load_fail(char *err, size_t errsz, const char *fmt, ...)
{
    if (err && errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
    }
    return BASE_E_TOKENIZER;
}

/* Whole file, NUL-terminated, into *out (malloc'ed). */
static int read_all(const char *path, char **out, size_t *len, char *err, size_t errsz)
{
    *out = NULL;
    int rc = base_read_file(path, MAX_FILE_BYTES, out, len);
    if (rc == BASE_E_NOMEM)
        return rc;
    if (rc == BASE_E_NOENT)
        return load_fail(err, errsz, "CLIP tokenizer file %s is missing", path);
    if (rc == BASE_E_TOOBIG)
        return load_fail(err, errsz, "CLIP tokenizer file %s is larger than %zu MB", path,
                         MAX_FILE_BYTES >> 20);
    if (rc)
        return load_fail(err, errsz, "CLIP tokenizer file %s cannot be read (%s)", path, base_strerror(rc));
    return 0;
}

static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/')
        p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

static int load_vocab(clipt_t *t, const char *path, char *err, size_t errsz)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_all(path, &text, &len, err, errsz);
    if (rc)
        return rc;
    json_t *j = NULL;
    char jerr[160];
    rc = json_parse(text, len, &j, jerr, sizeof jerr);
    free(text);
    if (rc == BASE_E_NOMEM)
        return rc;
    if (rc)
        return load_fail(err, errsz, "CLIP tokenizer file %s is not valid JSON: %s", path, jerr);
    if (j->type != JSON_OBJECT) {
        json_free(j);
        return load_fail(err, errsz, "CLIP tokenizer file %s must be a JSON object mapping symbols to ids",
                         path);
    }
    size_t n = json_len(j), total = 0;
    for (size_t i = 0; i < n; i++)
        total += strlen(json_key_at(j, i)) + 1;
    t->vocab_keys = malloc(total ? total : 1);
    if (!t->vocab_keys) {
        json_free(j);
        return BASE_E_NOMEM;
    }
    char *k = t->vocab_keys;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *key = json_key_at(j, i);
        int64_t id;
        if (!json_get_i64(json_at(j, i), &id) || id < 0 || id > INT32_MAX) {
            rc = load_fail(err, errsz,
                           "CLIP tokenizer file %s: the id of symbol \"%.60s\" (entry %zu) is not an "
                           "integer in 0..2147483647",
                           path, key, i + 1);
            break;
        }
        size_t kl = strlen(key) + 1;
        memcpy(k, key, kl);
        rc = base_map_put(&t->vocab, k, (void *)(intptr_t)id);
        k += kl;
    }
    json_free(j);
    if (rc)
        return rc;
    void *v;
    if (!base_map_get(&t->vocab, SOT, &v))
        return load_fail(err, errsz, "CLIP tokenizer file %s has no \"%s\" entry", path, SOT);
    t->sot_id = (int32_t)(intptr_t)v;
    if (!base_map_get(&t->vocab, EOT, &v))
        return load_fail(err, errsz, "CLIP tokenizer file %s has no \"%s\" entry", path, EOT);
    t->eot_id = (int32_t)(intptr_t)v;
    return 0;
}

/* merges.txt: an optional "#version" first line, then "first second" per line; blank lines
 * are skipped, CRLF is fine, lines after the first MAX_MERGES merges are ignored (like HF;
 * unlike HF, a file without the header keeps its first merge). Each line becomes a map key in
 * place, normalised to one space between the symbols. */
static int load_merges(clipt_t *t, const char *path, char *err, size_t errsz)
{
    size_t len = 0;
    int rc = read_all(path, &t->merges_text, &len, err, errsz);
    if (rc)
        return rc;
    char *p = t->merges_text, *end = p + len;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3; /* a UTF-8 byte order mark would otherwise hide the header */
    size_t lineno = 0, count = 0;
    bool first = true;
    while (p < end && count < MAX_MERGES) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        char *next = nl ? nl + 1 : end;
        lineno++;
        *le = '\0';
        while (le > p && (le[-1] == '\r' || le[-1] == ' ' || le[-1] == '\t'))
            *--le = '\0';
        while (p < le && (*p == ' ' || *p == '\t'))
            p++;
        if (p == le) {
            p = next;
            continue;
        }
        if (first && strncmp(p, "#version", 8) == 0) {
            first = false;
            p = next;
            continue;
        }
        first = false;
        char *a_end = p;
        while (a_end < le && *a_end != ' ' && *a_end != '\t')
            a_end++;
        char *b = a_end;
        while (b < le && (*b == ' ' || *b == '\t'))
            b++;
        char *b_end = b;
        while (b_end < le && *b_end != ' ' && *b_end != '\t')
            b_end++;
        if (b == le || b_end != le || memchr(p, '\0', (size_t)(le - p)))
            return load_fail(err, errsz,
                             "CLIP tokenizer file %s line %zu: expected two symbols separated by a "
                             "space, found \"%.60s\"",
                             path, lineno, p);
        if (b != a_end + 1) {
            memmove(a_end + 1, b, (size_t)(b_end - b));
            a_end[1 + (b_end - b)] = '\0';
        }
        *a_end = ' ';
        if ((rc = base_map_put(&t->ranks, p, (void *)(intptr_t)count)))
            return rc;
        count++;
        p = next;
    }
    return 0;
}

static void init_bytesym(clipt_t *t)
{
    /* bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
     * take U+0100.. in increasing byte order. */
    uint32_t extra = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = keep ? (uint32_t)b : 0x100 + extra++;
        size_t k = utf8_put(cp, t->bytesym[b]);
        t->bytesym[b][k] = '\0';
    }
}

int clipt_load(clipt_t **out, const char *dir, char *err, size_t errsz)
{
    if (err && errsz)
        err[0] = '\0';
    if (!out || !dir)
        return BASE_E_INVAL;
    *out = NULL;
    clipt_t *t = calloc(1, sizeof *t);
    if (!t)
        return BASE_E_NOMEM;
    init_bytesym(t);
    t->loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (!t->loc)
        t->loc = newlocale(LC_CTYPE_MASK, "C.utf8", (locale_t)0);
    if (!t->loc)
        BASE_LOG(WARN, "C.UTF-8 locale unavailable: the CLIP tokenizer lower-cases ASCII only");
    char *vp = join_path(dir, "vocab.json"), *mp = join_path(dir, "merges.txt");
    int rc = (!vp || !mp) ? BASE_E_NOMEM : 0;
    if (!rc)
        rc = load_vocab(t, vp, err, errsz);
    if (!rc)
        rc = load_merges(t, mp, err, errsz);
    free(vp);
    free(mp);
    if (rc) {
        if (rc == BASE_E_NOMEM && err && errsz)
            snprintf(err, errsz, "out of memory loading the CLIP tokenizer from %s", dir);
        clipt_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void clipt_free(clipt_t *t)
{
    if (!t)
        return;
    base_map_free(&t->vocab);
    base_map_free(&t->ranks);
    free(t->vocab_keys);
    free(t->merges_text);
    if (t->loc)
        freelocale(t->loc);
    free(t);
}

/* ------------------------------------------------------------------ encoding */

typedef struct {
    int32_t *v;
    size_t n, cap;
} idvec_t;

static int idvec_push(idvec_t *a, int32_t id)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv)
            return BASE_E_NOMEM;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = id;
    return 0;
}

/* Per-call scratch for BPE, grown to the longest word seen. Symbols are nodes of a linked
 * list over the initial byte symbols; node i covers word[start[i] .. start[next[i]]) (the
 * last one ends at wlen). */
typedef struct {
    int32_t rank; /* of the pair (node, its next) */
    uint32_t node;
    uint32_t ver; /* node's pair version when pushed; older entries are stale */
} bpe_entry_t;

typedef struct {
    char *word; /* the word's byte symbols + "</w>" */
    uint32_t *start;
    int32_t *next, *prev; /* -1 at the ends */
    int32_t *rank;        /* current rank of (i, next[i]); INT32_MAX when not a merge */
    uint32_t *ver;
    uint8_t *dead;
    uint32_t *merged; /* nodes that absorbed their right neighbour this round */
    bpe_entry_t *heap;
    size_t nheap;
    char *key;  /* lookup key */
    size_t cap; /* initial symbols the arrays are sized for */
} bpe_scratch_t;

static void scratch_free(bpe_scratch_t *s)
{
    free(s->word);
    free(s->start);
    free(s->next);
    free(s->prev);
    free(s->rank);
    free(s->ver);
    free(s->dead);
    free(s->merged);
    free(s->heap);
    free(s->key);
}

#define GROW(field, count)                                                                                   \
    do {                                                                                                     \
        void *p_ = realloc(s->field, (count) * sizeof *s->field);                                            \
        if (!p_)                                                                                             \
            return BASE_E_NOMEM;                                                                             \
        s->field = p_;                                                                                       \
    } while (0)

static int scratch_reserve(bpe_scratch_t *s, size_t nsym)
{
    if (nsym <= s->cap)
        return 0;
    size_t cap = nsym < 64 ? 64 : nsym;
    if (cap > UINT32_MAX / 4)
        return BASE_E_NOMEM;
    /* A byte symbol is at most 2 UTF-8 bytes; a key is two symbols, a space and a NUL. The
     * heap holds one entry per initial pair plus two per merge. */
    GROW(word, 2 * cap + 8);
    GROW(key, 2 * cap + 8);
    GROW(start, cap);
    GROW(next, cap);
    GROW(prev, cap);
    GROW(rank, cap);
    GROW(ver, cap);
    GROW(dead, cap);
    GROW(merged, cap);
    GROW(heap, 3 * cap);
    s->cap = cap;
    return 0;
}
#undef GROW

static bool entry_less(const bpe_entry_t *a, const bpe_entry_t *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->node < b->node;
}

static void heap_push(bpe_scratch_t *s, bpe_entry_t e)
{
    size_t i = s->nheap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!entry_less(&e, &s->heap[parent]))
            break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = e;
}

static bpe_entry_t heap_pop(bpe_scratch_t *s)
{
    bpe_entry_t top = s->heap[0], last = s->heap[--s->nheap];
    size_t i = 0, n = s->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && entry_less(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!entry_less(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n)
        s->heap[i] = last;
    return top;
}

static uint32_t node_end(const bpe_scratch_t *s, int32_t i, size_t wlen)
{
    return s->next[i] >= 0 ? s->start[s->next[i]] : (uint32_t)wlen;
}

/* Looks up the pair (i, next[i]) and queues it when it is a merge. */
static void rank_pair(const clipt_t *t, bpe_scratch_t *s, int32_t i, size_t wlen)
{
    s->ver[i]++;
    s->rank[i] = INT32_MAX;
    int32_t j = s->next[i];
    if (j < 0)
        return;
    uint32_t a = s->start[i], b = s->start[j], e = node_end(s, j, wlen);
    memcpy(s->key, s->word + a, b - a);
    s->key[b - a] = ' ';
    memcpy(s->key + (b - a) + 1, s->word + b, e - b);
    s->key[(b - a) + 1 + (e - b)] = '\0';
    void *v;
    if (!base_map_get(&t->ranks, s->key, &v))
        return;
    s->rank[i] = (int32_t)(intptr_t)v;
    heap_push(s, (bpe_entry_t){s->rank[i], (uint32_t)i, s->ver[i]});
}

/* One pre-tokenised piece (code points c[0..n), n > 0) as UTF-8 bytes through
 * bytes_to_unicode and BPE. CLIP's bpe() repeatedly takes the adjacent pair with the lowest
 * rank and merges every non-overlapping occurrence of it, left to right, in one round. Here
 * a heap ordered by (rank, position) hands out each round's occurrences in that order, and
 * pairs next to merged symbols are ranked again only after the round: O(n log n) where the
 * straightforward rescan is quadratic in the length of a word. */
static int bpe_piece(const clipt_t *t, bpe_scratch_t *s, const uint32_t *c, size_t n, idvec_t *ids)
{
    int rc = scratch_reserve(s, 4 * n);
    if (rc)
        return rc;
    size_t wlen = 0, nsym = 0;
    for (size_t i = 0; i < n; i++) {
        char u[4];
        size_t nb = utf8_put(c[i], u);
        for (size_t k = 0; k < nb; k++) {
            const char *sym = t->bytesym[(unsigned char)u[k]];
            size_t sl = strlen(sym);
            s->start[nsym++] = (uint32_t)wlen;
            memcpy(s->word + wlen, sym, sl);
            wlen += sl;
        }
    }
    memcpy(s->word + wlen, "</w>", 4);
    wlen += 4;
    s->nheap = 0;
    for (size_t i = 0; i < nsym; i++) {
        s->next[i] = i + 1 < nsym ? (int32_t)i + 1 : -1;
        s->prev[i] = (int32_t)i - 1;
        s->dead[i] = 0;
        s->ver[i] = 0;
    }
    for (size_t i = 0; i < nsym; i++)
        rank_pair(t, s, (int32_t)i, wlen);
    while (s->nheap) {
        int32_t best = s->heap[0].rank;
        size_t nmerged = 0;
        while (s->nheap && s->heap[0].rank == best) {
            bpe_entry_t e = heap_pop(s);
            int32_t l = (int32_t)e.node;
            /* stale entry, or the left symbol was the right half of this round's last merge */
            if (s->dead[l] || s->ver[l] != e.ver)
                continue;
            int32_t r = s->next[l];
            s->next[l] = s->next[r];
            if (s->next[r] >= 0)
                s->prev[s->next[r]] = l;
            s->dead[r] = 1;
            s->merged[nmerged++] = (uint32_t)l;
        }
        for (size_t k = 0; k < nmerged; k++) {
            int32_t l = (int32_t)s->merged[k];
            rank_pair(t, s, l, wlen);
            if (s->prev[l] >= 0)
                rank_pair(t, s, s->prev[l], wlen);
        }
    }
    for (int32_t i = 0; i >= 0; i = s->next[i]) {
        uint32_t a = s->start[i], e = node_end(s, i, wlen);
        memcpy(s->key, s->word + a, e - a);
        s->key[e - a] = '\0';
        void *v;
        int32_t id = base_map_get(&t->vocab, s->key, &v) ? (int32_t)(intptr_t)v : t->eot_id;
        if ((rc = idvec_push(ids, id)))
            return rc;
    }
    return 0;
}

static bool match_ascii(const uint32_t *c, size_t n, size_t i, const char *lit)
{
    for (size_t k = 0; lit[k]; k++)
        if (i + k >= n || c[i + k] != (unsigned char)lit[k])
            return false;
    return true;
}

/* Python's str.lower() of the cleaned text: towlower per character, plus the two special
 * casings Python applies (U+0130 -> "i" U+0307, and final sigma). out has room for n plus
 * one per U+0130. */
static size_t lower_text(const clipt_t *t, const uint32_t *in, size_t n, uint32_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (c < 0x80) {
            out[o++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        } else if (!t->loc) {
            out[o++] = c;
        } else if (c == 0x130) {
            out[o++] = 'i';
            out[o++] = 0x307;
        } else if (c == 0x3A3) {
            /* final sigma: after a cased letter and not before one (case-ignorable skipped) */
            size_t b = i;
            while (b > 0 && is_case_ignorable(in[b - 1]))
                b--;
            size_t f = i + 1;
            while (f < n && is_case_ignorable(in[f]))
                f++;
            bool final = b > 0 && is_cased(t, in[b - 1]) && !(f < n && is_cased(t, in[f]));
            out[o++] = final ? 0x3C2 : 0x3C3;
        } else {
            out[o++] = (uint32_t)towlower_l((wint_t)c, t->loc);
        }
    }
    return o;
}

/* Cleaning, lower-casing and pre-tokenising one chunk that holds no exact special token;
 * each piece goes through BPE. */
static int encode_chunk(const clipt_t *t, const uint32_t *in, size_t n, uint32_t *clean, uint32_t *low,
                        bpe_scratch_t *s, idvec_t *ids)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (is_space(c)) {
            clean[m++] = ' ';
        } else if (c == 0xFFFD || is_control(t, c)) {
            continue;
        } else if (is_cjk(c)) {
            clean[m++] = ' ';
            clean[m++] = c;
            clean[m++] = ' ';
        } else {
            clean[m++] = c;
        }
    }
    m = lower_text(t, clean, m, low);

    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    size_t i = 0;
    while (i < m) {
        uint32_t c = low[i];
        size_t j;
        if (c == ' ') {
            i++;
            continue;
        }
        if (c == '<' && (match_ascii(low, m, i, SOT) || match_ascii(low, m, i, EOT))) {
            bool sot = match_ascii(low, m, i, SOT);
            int rc = idvec_push(ids, sot ? t->sot_id : t->eot_id);
            if (rc)
                return rc;
            i += sot ? sizeof SOT - 1 : sizeof EOT - 1;
            continue;
        }
        j = i;
        if (c == '\'') {
            for (size_t k = 0; k < sizeof contractions / sizeof contractions[0]; k++)
                if (match_ascii(low, m, i, contractions[k])) {
                    j = i + strlen(contractions[k]);
                    break;
                }
        }
        if (j == i) {
            if (is_letter(t, c)) {
                for (j = i + 1; j < m && is_letter(t, low[j]); j++)
                    ;
            } else if (is_number(c)) {
                j = i + 1;
            } else {
                for (j = i + 1; j < m && low[j] != ' ' && !is_letter(t, low[j]) && !is_number(low[j]); j++)
                    ;
            }
        }
        int rc = bpe_piece(t, s, low + i, j - i, ids);
        if (rc)
            return rc;
        i = j;
    }
    return 0;
}

int clipt_encode(const clipt_t *t, const char *text, int32_t **ids, size_t *n)
{
    if (ids)
        *ids = NULL;
    if (n)
        *n = 0;
    if (!t || !text || !ids || !n)
        return BASE_E_INVAL;
    size_t len = strlen(text);
    if (len > SIZE_MAX / 16)
        return BASE_E_NOMEM;
    idvec_t out = {0};
    bpe_scratch_t s = {0};
    uint32_t *clean = NULL, *low = NULL;
    uint32_t *cps = malloc((len + 1) * sizeof *cps);
    int rc = cps ? 0 : BASE_E_NOMEM;
    size_t nc = 0;
    if (!rc) {
        nc = utf8_decode((const unsigned char *)text, len, cps);
        /* Cleaning adds two spaces per CJK ideograph, lower-casing one character per U+0130. */
        size_t ncjk = 0, n130 = 0;
        for (size_t i = 0; i < nc; i++) {
            ncjk += is_cjk(cps[i]);
            n130 += cps[i] == 0x130;
        }
        clean = malloc((nc + 2 * ncjk + 1) * sizeof *clean);
        low = malloc((nc + 2 * ncjk + n130 + 1) * sizeof *low);
        if (!clean || !low)
            rc = BASE_E_NOMEM;
    }
    /* HF splits the exact special-token strings out before cleaning. */
    size_t from = 0;
    for (size_t i = 0; i <= nc && !rc; i++) {
        bool sot = i < nc && cps[i] == '<' && match_ascii(cps, nc, i, SOT);
        bool eot = !sot && i < nc && cps[i] == '<' && match_ascii(cps, nc, i, EOT);
        if (!sot && !eot && i < nc)
            continue;
        if (i > from)
            rc = encode_chunk(t, cps + from, i - from, clean, low, &s, &out);
        if (!rc && (sot || eot))
            rc = idvec_push(&out, sot ? t->sot_id : t->eot_id);
        from = i + (sot ? sizeof SOT - 1 : eot ? sizeof EOT - 1 : 0);
        if (sot || eot)
            i = from - 1;
    }
    free(cps);
    free(clean);
    free(low);
    scratch_free(&s);
    if (!rc && !out.v && !(out.v = malloc(sizeof *out.v)))
        rc = BASE_E_NOMEM;
    if (rc) {
        free(out.v);
        return rc;
    }
    *ids = out.v;
    *n = out.n;
    return 0;
}
