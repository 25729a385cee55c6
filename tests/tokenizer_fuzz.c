/*
 * tokenizer_fuzz — libFuzzer target (clang tree, ctest label "fuzz").
 *
 * For any input: encoding (both pre-tokenizers, special matching on or
 * off, chosen by the first byte) gives ids in range that decode to exactly
 * the input; the streaming decoder's output is valid UTF-8 and equals the
 * input when that is valid UTF-8; the conversation JSON reader either fails
 * cleanly or yields messages both chat formats can render.  The
 * tokenizers are loaded once from $MOE_FIXTURES.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "gguf.h"
#include "tokenizer.h"
#include "unicode.h"

static moe_tokenizer *tok[2];
static moe_chat *chat[2];

#define REQUIRE(c)                                                               \
    do {                                                                         \
        if (!(c)) {                                                              \
            fprintf(stderr, "tokenizer_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                             \
        }                                                                        \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *dir = getenv("MOE_FIXTURES");
    REQUIRE(dir != NULL);
    const char *files[2] = {"tokenizer/deepseek-v3-vocab.gguf", "tokenizer/deepseek-llm-rules.gguf"};
    for (int i = 0; i < 2; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        moe_err err;
        moe_gguf *g = NULL;
        REQUIRE(moe_gguf_open(&g, path, &err) == MOE_OK);
        REQUIRE(moe_tokenizer_load(&tok[i], g, &err) == MOE_OK);
        REQUIRE(moe_chat_init_format(&chat[i], i ? MOE_CHAT_DEEPSEEK_V2 : MOE_CHAT_DEEPSEEK_V3, tok[i], &err) == 0);
        moe_gguf_close(g);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    unsigned mode = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    const moe_tokenizer *t = tok[mode & 1];
    unsigned flags = (mode & 2 ? MOE_TOK_SPECIAL : 0);
    moe_err err;
    moe_tokens ids = {0};
    REQUIRE(moe_tokenizer_encode(t, text, len, flags, &ids, &err) == MOE_OK);
    for (size_t i = 0; i < ids.n; i++) REQUIRE(ids.ids[i] >= 0 && ids.ids[i] < moe_tokenizer_n_vocab(t));
    char *dec = NULL;
    size_t dl = 0;
    REQUIRE(moe_tokenizer_decode(t, ids.ids, ids.n, &dec, &dl, &err) == MOE_OK);
    REQUIRE(dl == len && (len == 0 || memcmp(dec, text, len) == 0));
    free(dec);

    moe_tok_stream *s = NULL;
    REQUIRE(moe_tok_stream_init(&s, t, 0, &err) == MOE_OK);
    char *acc = malloc(3 * len + 8);
    size_t o = 0, l;
    const char *p;
    for (size_t i = 0; i < ids.n; i++) {
        REQUIRE(moe_tok_stream_push(s, ids.ids[i], &p, &l, &err) == MOE_OK);
        memcpy(acc + o, p, l);
        o += l;
    }
    moe_tok_stream_flush(s, &p, &l);
    memcpy(acc + o, p, l);
    o += l;
    REQUIRE(moe_utf8_valid_prefix((const unsigned char *)acc, o) == o);
    if (moe_utf8_valid_prefix((const unsigned char *)text, len) == len)
        REQUIRE(o == len && (len == 0 || memcmp(acc, text, len) == 0));
    free(acc);
    moe_tok_stream_free(s);
    moe_tokens_free(&ids);

    moe_chat_conv conv;
    if (moe_chat_conv_parse(&conv, text, len, &err) == MOE_OK) {
        for (int k = 0; k < 2; k++) {
            char *r = NULL;
            if (moe_chat_render(chat[k], conv.msgs, conv.n, conv.add_generation_prompt, &r, NULL, &err) == 0)
                free(r);
        }
        moe_chat_conv_free(&conv);
    }
    return 0;
}
