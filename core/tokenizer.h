/*
 * tokenizer.h — byte-level BPE tokenizer built from GGUF metadata
 * (tokenizer.ggml.model = "gpt2"), as used by DeepSeek-V2/V3.
 *
 * Encoding a text:
 *   1. optional added-token matching: the texts of control tokens (only with
 *      MOE_TOK_SPECIAL, like llama.cpp's parse_special) and user-defined
 *      tokens (always) become their ids, leftmost-longest; the text between
 *      them is encoded normally;
 *   2. pre-tokenization by the split rules named by tokenizer.ggml.pre
 *      ("deepseek-v3" or "deepseek-llm"), each rule splitting every piece
 *      produced so far into its matches and the text between them;
 *   3. each piece's bytes start as single-byte tokens and are merged by
 *      tokenizer.ggml.merges in rank order (lowest rank first, leftmost
 *      first among equals).
 *
 * Any byte string can be encoded.  A byte that is not part of well-formed
 * UTF-8 counts as one character of no Unicode category (like an unassigned
 * code point) for the split rules and is encoded as its byte token, so
 * decode(encode(x)) == x for every x (see docs/tokenizer.md).
 *
 * The handle is immutable after load and may be shared between threads;
 * the GGUF file may be closed after moe_tokenizer_load returns.  Encoding
 * allocates its working memory once per call (proportional to the input),
 * never per token; it is linear-ish in the input size (merge ranks are in a
 * hash table and long pieces are merged with a heap).
 */
#ifndef MOE_TOKENIZER_H
#define MOE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "gguf.h"

typedef struct moe_tokenizer moe_tokenizer;

/* Token types as stored in tokenizer.ggml.token_type (llama.cpp numbering). */
typedef enum {
    MOE_TOKTYPE_UNDEFINED = 0,
    MOE_TOKTYPE_NORMAL = 1,
    MOE_TOKTYPE_UNKNOWN = 2,
    MOE_TOKTYPE_CONTROL = 3,
    MOE_TOKTYPE_USER_DEFINED = 4,
    MOE_TOKTYPE_UNUSED = 5,
    MOE_TOKTYPE_BYTE = 6,
} moe_toktype;

/* Pre-tokenizers (split rules) this tokenizer implements. */
typedef enum {
    MOE_TOK_PRE_DEEPSEEK_V3 = 0,  /* "deepseek-v3": DeepSeek-V3, R1 */
    MOE_TOK_PRE_DEEPSEEK_LLM = 1, /* "deepseek-llm": DeepSeek LLM, V2, V2-Lite */
} moe_tok_pre;

/* A growable list of token ids.  Zero-initialise; free with moe_tokens_free. */
typedef struct moe_tokens {
    int32_t *ids;
    size_t n, cap;
} moe_tokens;

void moe_tokens_push(moe_tokens *t, int32_t id);
void moe_tokens_clear(moe_tokens *t); /* n = 0, keeps the memory */
void moe_tokens_free(moe_tokens *t);

/* Encode flags. */
enum {
    MOE_TOK_SPECIAL = 1u << 0, /* match control-token texts in the input */
    MOE_TOK_BOS = 1u << 1,     /* prepend BOS, unless the ids already start with it */
};

/* Builds a tokenizer from an opened GGUF file.  Unsupported models or
 * pre-tokenizers and malformed metadata are errors with a message. */
int moe_tokenizer_load(moe_tokenizer **out, const moe_gguf *g, moe_err *err);
void moe_tokenizer_free(moe_tokenizer *tok);

/* The vocabulary matches the model: one token per row of token_embd.weight
 * (its ne[1]; a file without that tensor passes).  The coordinator checks
 * its tokenizer so; moe_tokenizer_check_model is the same check for the
 * programs that need no tokenizer of their own (moe-run with ids,
 * moe-worker): it loads the file's tokenizer (every check of
 * moe_tokenizer_load: special ids inside the vocabulary, no string twice,
 * ...), compares, and frees it.  A file with no tokenizer at all passes:
 * only token ids can be used with it. */
int moe_tokenizer_check_embd(const moe_tokenizer *tok, const moe_gguf *g, moe_err *err);
int moe_tokenizer_check_model(const moe_gguf *g, moe_err *err);

/* The EOS id of a GGUF (tokenizer.ggml.eos_token_id), read without
 * building the vocabulary, so a worker can stop at EOS cheaply.  This is
 * the one place the key is read: moe_tokenizer_load uses it too.  *eos is
 * -1 when the file names none (no key, or the converters' -1 / 2^32-1);
 * a value that is not an integer, or not below n_vocab (> 0, the caller's
 * vocabulary size), is an error naming the key. */
int moe_tokenizer_eos_from_gguf(const moe_gguf *g, int32_t n_vocab, int32_t *eos, moe_err *err);

/* Appends the ids of text[0..len) to out (out is not cleared first). */
int moe_tokenizer_encode(const moe_tokenizer *tok, const char *text, size_t len, unsigned flags,
                         moe_tokens *out, moe_err *err);
/* A text prompt's ids, the same in every program (moe-run --prompt,
 * moe-worker --batch text: lines, the server's text requests): BOS as the
 * model file says, special-token texts matched (as they are in chat
 * messages rendered through the template). */
int moe_tokenizer_encode_prompt(const moe_tokenizer *tok, const char *text, size_t len, moe_tokens *out, moe_err *err);

/* Decodes ids into a newly allocated NUL-terminated byte string (free()
 * it): normal tokens give their bytes, control and user-defined tokens
 * their text, unused/unknown tokens nothing.  An id out of range is an
 * error.  The bytes are exactly what was encoded, even if not valid UTF-8. */
int moe_tokenizer_decode(const moe_tokenizer *tok, const int32_t *ids, size_t n, char **out,
                         size_t *out_len, moe_err *err);

/* The bytes one token decodes to (not NUL-terminated; *len may be 0);
 * NULL for an id out of range. */
const char *moe_tokenizer_token_bytes(const moe_tokenizer *tok, int32_t id, size_t *len);
/* The token's string as stored in the GGUF (byte-level form for normal
 * tokens, e.g. "Ġthe"); NULL for an id out of range. */
const char *moe_tokenizer_token_str(const moe_tokenizer *tok, int32_t id, size_t *len);
/* The id of a token whose stored string is exactly s[0..len), or -1. */
int32_t moe_tokenizer_find(const moe_tokenizer *tok, const char *s, size_t len);

int32_t moe_tokenizer_n_vocab(const moe_tokenizer *tok);
int32_t moe_tokenizer_bos(const moe_tokenizer *tok); /* -1 if the file names none */
int32_t moe_tokenizer_eos(const moe_tokenizer *tok); /* -1 if the file names none */
bool moe_tokenizer_add_bos(const moe_tokenizer *tok); /* tokenizer.ggml.add_bos_token */
moe_tok_pre moe_tokenizer_pre(const moe_tokenizer *tok);
moe_toktype moe_tokenizer_type(const moe_tokenizer *tok, int32_t id); /* UNDEFINED if out of range */
bool moe_tokenizer_is_control(const moe_tokenizer *tok, int32_t id);
/* End of generation: EOS, tokenizer.ggml.eot_token_id, or the <|EOT|> control token. */
bool moe_tokenizer_is_eog(const moe_tokenizer *tok, int32_t id);
/* GPT-2's byte-to-unicode map: the code point that stands for byte b
 * (0..255) in byte-level token and merge strings. */
uint32_t moe_tokenizer_byte_to_cp(unsigned b);

/* Longest token in bytes (sizes the streaming decoder's buffer). */
size_t moe_tokenizer_max_token_bytes(const moe_tokenizer *tok);

/*
 * Streaming detokenizer: feed ids one by one as they are generated; each
 * push returns the text that is now complete.  It never returns half a
 * UTF-8 character: an incomplete sequence at the end is held back until
 * the next token completes it, and moe_tok_stream_flush ends the stream.
 * Its output is always valid UTF-8: a byte sequence that can never become
 * valid (or is still incomplete at the flush) is replaced by U+FFFD, one
 * per maximal invalid subpart.  For valid text the concatenated output
 * equals moe_tokenizer_decode of the same ids.
 */
typedef struct moe_tok_stream moe_tok_stream;

enum { MOE_TOK_STREAM_SKIP_CONTROL = 1u << 0 }; /* print nothing for control tokens */

int moe_tok_stream_init(moe_tok_stream **out, const moe_tokenizer *tok, unsigned flags, moe_err *err);
void moe_tok_stream_free(moe_tok_stream *s);
/* *text points into the stream's buffer, valid until the next call. */
int moe_tok_stream_push(moe_tok_stream *s, int32_t id, const char **text, size_t *len, moe_err *err);
void moe_tok_stream_flush(moe_tok_stream *s, const char **text, size_t *len);
void moe_tok_stream_reset(moe_tok_stream *s);

/* The text a server's client gets for ids: the streaming decoder's output
 * with control tokens left out, whole (valid UTF-8, NUL-terminated).  moe-run
 * --text and moe-tokenize --decode --served print it. */
int moe_tokenizer_decode_served(const moe_tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len,
                                moe_err *err);

#endif
