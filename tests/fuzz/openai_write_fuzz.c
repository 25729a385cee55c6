/*
 * openai_write_fuzz.c — libFuzzer target: the response and SSE writers
 * (coordinator/openai.c) fed with texts, token bytes and logprobs taken
 * from the input — any bytes, any floats (NaN, infinities), any ids.  Every
 * answer must be JSON that jansson reads back, every SSE event framed.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "openai.h"

static const uint8_t *g_data;
static size_t g_size;

/* Token id k's bytes: a window of the input (maybe not UTF-8). */
static const char *tok_text(void *ctx, int32_t id, size_t *len)
{
    (void)ctx;
    if (id < 0 || g_size == 0) return NULL;
    const size_t at = (size_t)id % g_size;
    *len = (g_size - at) < 5 ? g_size - at : 5;
    return (const char *)g_data + at;
}

static void check_json(const char *s)
{
    json_t *j = json_loads(s, JSON_ALLOW_NUL, NULL); /* a NUL in a text is written \u0000 */
    if (!j) abort();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_data = data;
    g_size = size;
    moe_token_logprobs lp[8];
    memset(lp, 0, sizeof lp);
    size_t p = 0;
    int n = 0;
    for (; n < 8 && p + 12 <= size; n++, p += 12) {
        memcpy(&lp[n].id, data + p, 4);
        memcpy(&lp[n].logprob, data + p + 4, 4);
        lp[n].n_top = data[p + 8] % (MOE_MAX_TOP_LOGPROBS + 1);
        for (int k = 0; k < lp[n].n_top; k++) {
            lp[n].top[k].id = (int32_t)(data[p + 9] * 31 + k);
            lp[n].top[k].logprob = (float)data[p + 10] - (float)k;
        }
    }
    const char *text = (const char *)data + p;
    const size_t text_len = size - p;
    for (int kind = 0; kind < 2; kind++) {
        moe_oai_render rd = {.kind = kind ? MOE_OAI_CHAT : MOE_OAI_COMPLETION, .id = "x", .created = 1,
                             .model = "m", .token_text = tok_text, .logprobs = size % 2};
        moe_oai_choice c = {.index = 0, .text = text, .text_len = text_len, .lp = lp, .n_lp = n,
                            .prompt_lp = lp, .n_prompt_lp = n / 2, .prompt_text = text, .prompt_text_len = text_len / 2,
                            .finish = size % 3 ? "stop" : NULL};
        moe_oai_usage u = {(long long)size, n, n / 2};
        char *s = moe_oai_response_json(&rd, &c, 1, &u);
        check_json(s);
        free(s);
        s = moe_oai_chunk_json(&rd, &c, size % 5 == 0);
        check_json(s);
        char *buf = NULL;
        size_t len = 0, cap = 0;
        moe_oai_sse(&buf, &len, &cap, s);
        if (len != strlen(s) + 8 || memcmp(buf, "data: ", 6) || memcmp(buf + len - 2, "\n\n", 2)) abort();
        free(buf);
        free(s);
        s = moe_oai_usage_chunk_json(&rd, &u);
        check_json(s);
        free(s);
    }
    moe_oai_error e;
    moe_oai_error_set(&e, 400, "c", "p", "%.*s", (int)(size < 300 ? size : 300), (const char *)data);
    char *s = moe_oai_error_json(&e);
    check_json(s);
    free(s);
    return 0;
}
