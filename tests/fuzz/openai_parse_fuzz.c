/*
 * openai_parse_fuzz.c — libFuzzer target: any bytes as a /v1/completions
 * and a /v1/chat/completions body (coordinator/openai.c).  A body is either
 * refused with a 400 naming a field, or parsed into a spec whose counts
 * and ids respect the limits; never a crash or a leak.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "openai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    moe_msg_limits lim;
    moe_msg_limits_default(&lim);
    lim.vocab_size = 1000;
    for (int k = 0; k < 2; k++) {
        moe_oai_request r;
        moe_oai_error e;
        if (moe_oai_parse(&r, k ? MOE_OAI_CHAT : MOE_OAI_COMPLETION, (const char *)data, size, &lim, &e) == MOE_OK) {
            if (r.n < 1 || r.n > MOE_OAI_MAX_N || r.spec.n_stop > lim.max_stop) abort();
            for (size_t i = 0; i < r.spec.n_ids; i++)
                if (r.spec.ids[i] < 0 || (uint32_t)r.spec.ids[i] >= lim.vocab_size) abort();
            for (size_t i = 0; i < r.spec.n_chat; i++)
                if (strlen(r.spec.chat[i].content) != r.spec.chat[i].content_len) abort();
            moe_request_spec s;
            moe_oai_choice_spec(&r, r.n - 1, "id", &s);
        } else {
            if (e.status != 400 && e.status != 404) abort();
            free(moe_oai_error_json(&e));
        }
        moe_oai_request_free(&r);
    }
    return 0;
}
