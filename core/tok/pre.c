/*
 * pre.c — pre-tokenizers: the split rules of each tokenizer.ggml.pre this
 * tokenizer knows, in one table keyed by that name.
 *
 * The split rules are hand-written scanners equivalent to the regular
 * expressions of the original tokenizers (backtracking, leftmost-first
 * alternation), each running in linear time over a piece.  A rule splits
 * every piece produced by the rules before it into its matches and the
 * text between them; what comes out of the last rule is BPE-merged.
 */
#include <stdio.h>
#include <string.h>

#include "tok_internal.h"
#include "unicode.h"

static void split_next(tok_enc *e, int stage, size_t a, size_t b);

#define CP(i) (e->cp[i])
#define FL(i) (e->fl[i])
#define IS_WS(i) ((FL(i) & MOE_UC_WS) != 0)
#define IS_CRLF(i) (CP(i) == '\r' || CP(i) == '\n')

/* Generic driver: match(e, p, b) returns the end (> p) of the match that
 * starts at p, or p if none starts there. */
#define DEFINE_ISOLATED_RULE(name, match_fn)                          \
    static void name(tok_enc *e, int stage, size_t a, size_t b)       \
    {                                                                 \
        size_t gap = a, p = a;                                        \
        while (p < b) {                                               \
            size_t m = match_fn(e, p, b);                             \
            if (m > p) {                                              \
                if (gap < p) split_next(e, stage + 1, gap, p); \
                split_next(e, stage + 1, p, m);                \
                gap = p = m;                                          \
            } else p++;                                               \
        }                                                             \
        if (gap < b) split_next(e, stage + 1, gap, b);         \
    }

/* --- deepseek-v3 (DeepSeek-V3 tokenizer.json), rule by rule:
 *   1  \p{N}{1,3}
 *   2  [\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+
 *   3  [!-/:-@[-`{-~][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
 *      | ' '?[\p{P}\p{S}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+          */

static size_t v3_digits(tok_enc *e, size_t p, size_t b)
{
    size_t q = p;
    while (q < b && q - p < 3 && (FL(q) & MOE_UC_N)) q++;
    return q;
}

static inline bool v3_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x3040 && c <= 0x30FF);
}

static size_t v3_cjk_run(tok_enc *e, size_t p, size_t b)
{
    size_t q = p;
    while (q < b && v3_cjk(CP(q))) q++;
    return q;
}

static inline bool ascii_punct(uint32_t c)
{
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}

static inline bool ascii_alpha(uint32_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

static size_t v3_words(tok_enc *e, size_t p, size_t b)
{
    size_t q;
    /* [!-/:-@[-`{-~][A-Za-z]+ */
    if (p + 1 < b && ascii_punct(CP(p)) && ascii_alpha(CP(p + 1))) {
        q = p + 2;
        while (q < b && ascii_alpha(CP(q))) q++;
        return q;
    }
    /* [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ */
    const uint8_t LM = MOE_UC_L | MOE_UC_M, LPS = MOE_UC_L | MOE_UC_P | MOE_UC_S;
    q = p;
    if (!(FL(p) & LPS) && !IS_CRLF(p) && p + 1 < b && (FL(p + 1) & LM)) q = p + 1;
    if (FL(q) & LM) {
        while (q < b && (FL(q) & LM)) q++;
        return q;
    }
    /* ' '?[\p{P}\p{S}]+[\r\n]* */
    const uint8_t PS = MOE_UC_P | MOE_UC_S;
    q = p;
    if (CP(q) == ' ' && q + 1 < b && (FL(q + 1) & PS)) q++;
    if (FL(q) & PS) {
        while (q < b && (FL(q) & PS)) q++;
        while (q < b && IS_CRLF(q)) q++;
        return q;
    }
    if (!IS_WS(p)) return p;
    /* The whitespace run W from p.  \s*[\r\n]+ backtracks to the last
     * CR/LF inside W; \s+(?!\S) gives all of W at the end of the piece and
     * all but its last character before a non-space; \s+ takes the one
     * remaining space before a non-space. */
    size_t w = p, last_crlf = 0;
    bool crlf = false;
    while (w < b && IS_WS(w)) {
        if (IS_CRLF(w)) crlf = true, last_crlf = w;
        w++;
    }
    if (crlf) return last_crlf + 1;
    if (w == b || w - p == 1) return w;
    return w - 1;
}

DEFINE_ISOLATED_RULE(v3_rule1, v3_digits)
DEFINE_ISOLATED_RULE(v3_rule2, v3_cjk_run)
DEFINE_ISOLATED_RULE(v3_rule3, v3_words)

/* --- deepseek-llm (DeepSeek LLM / V2), rule by rule:
 *   1  [\r\n]
 *   2  \s?[letters of the DeepSeek LLM class]+
 *   3  \s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+
 *   4  \s+$
 *   5  [\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+
 *   6  \p{N}+
 * The letter class is the literal one of the original pattern (a fixed
 * list of ranges, not a Unicode category), so it is spelled out here. */

static const uint32_t llm_letters[][2] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
    {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377},
    {0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
    {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
    {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
    {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
    {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787},
    {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

static bool llm_letter(uint32_t c)
{
    if (c < 0x80) return ascii_alpha(c);
    size_t lo = 0, hi = sizeof llm_letters / sizeof llm_letters[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < llm_letters[mid][0]) hi = mid;
        else if (c > llm_letters[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

static inline bool llm_punct(uint32_t c)
{
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x7E) || (c >= 0xFF01 && c <= 0xFF0F) ||
           (c >= 0xFF1A && c <= 0xFF5E) || (c >= 0x2018 && c <= 0x201F) || (c >= 0x3000 && c <= 0x3002);
}

static inline bool llm_cjk(uint32_t c)
{
    /* U+4E00-9FA5, U+0800-4E00, U+AC00-D7FF */
    return (c >= 0x800 && c <= 0x9FA5) || (c >= 0xAC00 && c <= 0xD7FF);
}

static size_t llm_crlf(tok_enc *e, size_t p, size_t b) { (void)b; return IS_CRLF(p) ? p + 1 : p; }

static size_t llm_letter_run(tok_enc *e, size_t p, size_t b)
{
    size_t q = p;
    if (IS_WS(q) && q + 1 < b && llm_letter(CP(q + 1))) q++;
    if (!llm_letter(CP(q))) return p;
    while (q < b && llm_letter(CP(q))) q++;
    return q;
}

static size_t llm_punct_run(tok_enc *e, size_t p, size_t b)
{
    size_t q = p;
    if (IS_WS(q) && q + 1 < b && llm_punct(CP(q + 1))) q++;
    if (!llm_punct(CP(q))) return p;
    while (q < b && llm_punct(CP(q))) q++;
    return q;
}

static size_t llm_cjk_run(tok_enc *e, size_t p, size_t b)
{
    size_t q = p;
    while (q < b && llm_cjk(CP(q))) q++;
    return q;
}

static size_t llm_number_run(tok_enc *e, size_t p, size_t b)
{
    size_t q = p;
    while (q < b && (FL(q) & MOE_UC_N)) q++;
    return q;
}

DEFINE_ISOLATED_RULE(llm_rule1, llm_crlf)
DEFINE_ISOLATED_RULE(llm_rule2, llm_letter_run)
DEFINE_ISOLATED_RULE(llm_rule3, llm_punct_run)
DEFINE_ISOLATED_RULE(llm_rule5, llm_cjk_run)
DEFINE_ISOLATED_RULE(llm_rule6, llm_number_run)

/* \s+$ can only match the trailing whitespace of the piece, and its
 * leftmost match is where that run starts: found with one backward scan
 * (a per-position forward check would be quadratic on long space runs). */
static void llm_rule4(tok_enc *e, int stage, size_t a, size_t b)
{
    size_t t = b;
    while (t > a && IS_WS(t - 1)) t--;
    if (t > a) split_next(e, stage + 1, a, t);
    if (t < b) split_next(e, stage + 1, t, b);
}

/* ------------------------------------------------ the table, by name */

static const tok_split_rule v3_rules[] = {v3_rule1, v3_rule2, v3_rule3, NULL};
static const tok_split_rule llm_rules[] = {llm_rule1, llm_rule2, llm_rule3, llm_rule4, llm_rule5, llm_rule6, NULL};

/* Indexed by moe_tok_pre.  A new pre-tokenizer is a row here (and an enum
 * value in tokenizer.h). */
static const struct pre_entry {
    const char *name; /* tokenizer.ggml.pre */
    const tok_split_rule *rules;
} pre_table[] = {
    [MOE_TOK_PRE_DEEPSEEK_V3] = {"deepseek-v3", v3_rules},
    [MOE_TOK_PRE_DEEPSEEK_LLM] = {"deepseek-llm", llm_rules},
};
#define N_PRE (sizeof pre_table / sizeof pre_table[0])

int moe_tok_pre_from_name(const char *s, size_t len, moe_tok_pre *out, moe_err *err)
{
    for (size_t i = 0; i < N_PRE; i++)
        if (strlen(pre_table[i].name) == len && memcmp(pre_table[i].name, s, len) == 0) {
            *out = (moe_tok_pre)i;
            return MOE_OK;
        }
    char names[256] = "";
    for (size_t i = 0, o = 0; i < N_PRE && o < sizeof names; i++)
        o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", i ? ", " : "", pre_table[i].name);
    return moe_err_set(err, "unsupported pre-tokenizer tokenizer.ggml.pre = '%.*s' (supported: %s)",
                       (int)(len > 64 ? 64 : len), s, names);
}

const tok_split_rule *moe_tok_pre_rules(moe_tok_pre pre)
{
    MOE_ASSERT((size_t)pre < N_PRE);
    return pre_table[pre].rules;
}

/* Runs rule `stage` on [a, b), or BPE once the rules are exhausted.  A
 * one-byte piece (a space, a punctuation mark: the commonest kind) is its
 * byte's token, pushed here without a call into bpe.c: that call costs a
 * few percent of encoding speed. */
static void split_next(tok_enc *e, int stage, size_t a, size_t b)
{
    if (e->rules[stage]) e->rules[stage](e, stage, a, b);
    else if (e->off[b] - e->off[a] == 1) tok_push(e->out, e->tok->byte_id[e->text[e->off[a]]]);
    else moe_tok_bpe_piece(e, a, b);
}

void moe_tok_pre_split(tok_enc *e, size_t a, size_t b) { split_next(e, 0, a, b); }
