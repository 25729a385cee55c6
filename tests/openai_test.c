/*
 * openai_test.c — the OpenAI API's JSON without a socket (coordinator/openai.h):
 * bodies to specs (every field, the seeds of n choices, a 400 naming each
 * bad field), and the writers fed with chunks and outcomes filled here:
 * completions' and chat's logprobs (top-N, the echoed prompt's first
 * position without one, -inf), stream chunks, the usage chunk, error
 * bodies, SSE framing, bytes that are not UTF-8.  Responses are parsed back
 * with jansson and compared field by field.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "openai.h"

static moe_msg_limits LIM;

static int parse(moe_oai_request *r, moe_oai_kind k, const char *body, moe_oai_error *e)
{
    return moe_oai_parse(r, k, body, strlen(body), &LIM, e);
}

static void test_completion_fields(void)
{
    moe_oai_request r;
    moe_oai_error e;
    const char *body = "{\"model\": \"m\", \"prompt\": \"hi\", \"max_tokens\": 7, \"temperature\": 0.5, \"top_p\": 0.9,"
                       " \"top_k\": 40, \"min_p\": 0.1, \"repetition_penalty\": 1.2, \"seed\": 10, \"stop\": [\"a\", \"bc\"],"
                       " \"n\": 3, \"echo\": true, \"logprobs\": 5, \"stream\": true,"
                       " \"stream_options\": {\"include_usage\": true}, \"ignore_eos\": true, \"min_tokens\": 2,"
                       " \"user\": \"u\", \"unknown_field\": {\"x\": 1}}";
    CHECK(parse(&r, MOE_OAI_COMPLETION, body, &e) == MOE_OK);
    CHECK(r.model && !strcmp(r.model, "m"));
    CHECK(r.spec.kind == MOE_PROMPT_TEXT && !strcmp(r.spec.text, "hi"));
    CHECK(r.spec.max_tokens == 7);
    CHECK(r.spec.sampling.temperature == 0.5f && r.spec.sampling.top_p == 0.9f && r.spec.sampling.top_k == 40);
    CHECK(r.spec.sampling.min_p == 0.1f && r.spec.sampling.repeat_penalty == 1.2f);
    CHECK(r.spec.n_stop == 2 && !strcmp(r.spec.stop[1], "bc"));
    CHECK(r.n == 3 && r.echo && r.include_usage && r.spec.stream);
    CHECK(r.spec.logprobs == 5 && r.spec.prompt_logprobs);
    CHECK(r.spec.ignore_eos && r.spec.min_tokens == 2);
    /* choice i runs seed + i */
    moe_request_spec s;
    moe_oai_choice_spec(&r, 2, "id-2", &s);
    CHECK(s.sampling.seed == 12 && (s.sampling.set & (1u << MOE_SP_SEED)) && !strcmp(s.id, "id-2"));
    moe_oai_choice_spec(&r, 0, "id-0", &s);
    CHECK(s.sampling.seed == 10);
    moe_oai_request_free(&r);

    /* defaults; no seed: each choice gets the server's fresh one */
    CHECK(parse(&r, MOE_OAI_COMPLETION, "{\"prompt\": [1, 2, 3], \"top_k\": -1, \"stop\": \"x\"}", &e) == MOE_OK);
    CHECK(r.spec.kind == MOE_PROMPT_IDS && r.spec.n_ids == 3 && r.spec.ids[2] == 3);
    CHECK(r.spec.max_tokens < 0 && r.spec.logprobs < 0 && !r.spec.stream && r.n == 1 && !r.seeded);
    CHECK(r.spec.sampling.top_k == 0 && r.spec.n_stop == 1 && !strcmp(r.spec.stop[0], "x"));
    moe_oai_choice_spec(&r, 1, "b", &s);
    CHECK(!(s.sampling.set & (1u << MOE_SP_SEED)));
    moe_oai_request_free(&r);

    /* scoring a prompt: echo + logprobs + max_tokens 0 */
    CHECK(parse(&r, MOE_OAI_COMPLETION, "{\"prompt\": \"a b\", \"echo\": true, \"logprobs\": 0, \"max_tokens\": 0}", &e) == MOE_OK);
    CHECK(r.spec.max_tokens == 0 && r.spec.prompt_logprobs && r.spec.logprobs == 0);
    moe_oai_request_free(&r);
}

static void test_chat_fields(void)
{
    moe_oai_request r;
    moe_oai_error e;
    const char *body = "{\"messages\": [{\"role\": \"developer\", \"content\": \"be brief\"},"
                       " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"he\"}, {\"type\": \"text\", \"text\": \"llo\"}]}],"
                       " \"max_tokens\": 3, \"max_completion_tokens\": 9, \"logprobs\": true, \"top_logprobs\": 4}";
    CHECK(parse(&r, MOE_OAI_CHAT, body, &e) == MOE_OK);
    CHECK(r.spec.kind == MOE_PROMPT_CHAT && r.spec.n_chat == 2 && r.spec.add_generation_prompt);
    CHECK(!strcmp(r.spec.chat[0].role, "system"));
    CHECK(r.spec.chat[1].content_len == 5 && !strcmp(r.spec.chat[1].content, "hello"));
    CHECK(r.spec.max_tokens == 9); /* max_completion_tokens wins */
    CHECK(r.spec.logprobs == 4 && !r.spec.prompt_logprobs);
    moe_oai_request_free(&r);
    CHECK(parse(&r, MOE_OAI_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": true}", &e) == MOE_OK);
    CHECK(r.spec.logprobs == 0);
    moe_oai_request_free(&r);
}

/* Each bad body: 400 (or 404) and the field named. */
static void test_errors(void)
{
    static const struct {
        moe_oai_kind k;
        const char *body, *param, *want;
    } cases[] = {
        {MOE_OAI_COMPLETION, "{}", "prompt", "prompt: is required"},
        {MOE_OAI_COMPLETION, "{\"prompt\": [1, 70000]}", "prompt", "outside the vocabulary"},
        {MOE_OAI_COMPLETION, "{\"prompt\": [[1]]}", "prompt", "several prompts"},
        {MOE_OAI_COMPLETION, "{\"prompt\": \"a\", \"max_tokens\": 0}", "max_tokens", "scoring"},
        {MOE_OAI_COMPLETION, "{\"prompt\": \"a\", \"max_tokens\": 2000000}", "max_tokens", "out of range"},
        {MOE_OAI_COMPLETION, "{\"prompt\": \"a\", \"temperature\": 1e9}", "temperature", "out of range"},
        {MOE_OAI_COMPLETION, "{\"prompt\": \"a\", \"seed\": -3}", "seed", "is negative"},
        {MOE_OAI_COMPLETION, "{\"prompt\": \"a\", \"n\": 17}", "n", "out of range"},
        {MOE_OAI_COMPLETION, "{\"prompt\": \"a\", \"logprobs\": 21}", "logprobs", "out of range"},
        {MOE_OAI_COMPLETION, "{\"prompt\": \"a\", \"stream_options\": {}}", "stream_options", "only with stream"},
        {MOE_OAI_COMPLETION, "{\"prompt\": \"a\", \"max_tokens\": 1, \"min_tokens\": 2}", "min_tokens", "more than max_tokens"},
        {MOE_OAI_CHAT, "{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}", "messages", "role must be"},
        {MOE_OAI_CHAT, "{\"messages\": [{\"role\": \"user\"}], \"top_logprobs\": 1}", "top_logprobs", "needs logprobs"},
        {MOE_OAI_COMPLETION, "{\"prompt\": ", "", "not valid JSON"},
        {MOE_OAI_COMPLETION, "\"prompt\"", "", "must be a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        moe_oai_request r;
        moe_oai_error e;
        CHECK_MSG(parse(&r, cases[i].k, cases[i].body, &e) == MOE_ERR, "%s", cases[i].body);
        CHECK_MSG(e.status == 400 && !strcmp(e.param, cases[i].param), "%s: %d '%s'", cases[i].body, e.status, e.param);
        CHECK_CONTAINS(e.message, cases[i].want);
        moe_oai_request_free(&r);
    }
    /* the error body's shape */
    moe_oai_error e;
    moe_oai_error_set(&e, 401, "invalid_api_key", NULL, "no key");
    char *s = moe_oai_error_json(&e);
    CHECK(!strcmp(s, "{\"error\":{\"message\":\"no key\",\"type\":\"authentication_error\",\"param\":null,\"code\":\"invalid_api_key\"}}"));
    free(s);
    moe_oai_error_from_code(&e, MOE__CODE__QUEUE_FULL, "full");
    CHECK(e.status == 429 && !strcmp(e.code, "queue_full"));
}

/* Token texts of the fake vocabulary: id 7 is a lone continuation byte. */
static const char *tok_text(void *ctx, int32_t id, size_t *len)
{
    (void)ctx;
    static const char *t[] = {"A", "b", "cd", "é", "e", "f", "g", "\x80"};
    if (id < 0 || id > 7) return NULL;
    *len = strlen(t[id]);
    return t[id];
}

static moe_token_logprobs lp(int32_t id, float v, int n_top)
{
    moe_token_logprobs x = {.id = id, .logprob = v, .n_top = n_top};
    for (int k = 0; k < n_top; k++) x.top[k] = (moe_logprob){.id = k, .logprob = -0.5f * (float)(k + 1)};
    return x;
}

static void test_write_completion(void)
{
    const moe_token_logprobs out[2] = {lp(2, -0.25f, 2), lp(7, -INFINITY, 1)};
    const moe_token_logprobs prompt[2] = {lp(0, NAN, 0), lp(1, -1.5f, 1)};
    moe_oai_render rd = {.kind = MOE_OAI_COMPLETION, .id = "cmpl-1", .created = 5, .model = "m",
                         .token_text = tok_text, .logprobs = true};
    moe_oai_choice c = {.index = 0, .text = "cd\xEF\xBF\xBD", .text_len = 5, .lp = out, .n_lp = 2,
                        .prompt_lp = prompt, .n_prompt_lp = 2, .prompt_text = "Ab", .prompt_text_len = 2,
                        .finish = "length"};
    moe_oai_usage u = {2, 2, 1};
    char *s = moe_oai_response_json(&rd, &c, 1, &u);
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    CHECK_MSG(j != NULL, "%s", s);
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(j, "object")), "text_completion"));
    CHECK(!strcmp(json_string_value(json_object_get(ch, "text")), "Abcd\xEF\xBF\xBD"));
    json_t *l = json_object_get(ch, "logprobs");
    json_t *toks = json_object_get(l, "tokens"), *lps = json_object_get(l, "token_logprobs");
    json_t *tops = json_object_get(l, "top_logprobs"), *offs = json_object_get(l, "text_offset");
    CHECK(json_array_size(toks) == 4 && json_array_size(lps) == 4 && json_array_size(tops) == 4);
    CHECK(!strcmp(json_string_value(json_array_get(toks, 2)), "cd"));
    CHECK(!strcmp(json_string_value(json_array_get(toks, 3)), "\xEF\xBF\xBD")); /* a lone 0x80 is not UTF-8 */
    CHECK(json_is_null(json_array_get(lps, 0)) && json_is_null(json_array_get(tops, 0))); /* the first prompt token */
    CHECK(json_real_value(json_array_get(lps, 1)) == -1.5 && json_real_value(json_array_get(lps, 2)) == -0.25);
    CHECK(json_is_null(json_array_get(lps, 3))); /* -inf: JSON has none */
    json_t *top2 = json_array_get(tops, 2);
    CHECK(json_object_size(top2) == 2 && json_real_value(json_object_get(top2, "A")) == -0.5 &&
          json_real_value(json_object_get(top2, "b")) == -1.0);
    CHECK(json_integer_value(json_array_get(offs, 0)) == 0 && json_integer_value(json_array_get(offs, 2)) == 2 &&
          json_integer_value(json_array_get(offs, 3)) == 4);
    CHECK(!strcmp(json_string_value(json_object_get(ch, "finish_reason")), "length"));
    CHECK(json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")) == 4);
    CHECK(json_integer_value(json_object_get(json_object_get(json_object_get(j, "usage"), "prompt_tokens_details"), "cached_tokens")) == 1);
    json_decref(j);
    free(s);
    /* a stream's later chunk continues the offsets */
    size_t end = 0;
    moe_oai_choice later = {.index = 0, .text = "cd", .text_len = 2, .lp = out, .n_lp = 1, .text_offset = 7,
                            .text_end = &end};
    s = moe_oai_chunk_json(&rd, &later, false);
    CHECK_MSG(strstr(s, "\"text_offset\":[7]") != NULL, "%s", s);
    CHECK(end == 9);
    free(s);
}

static void test_write_chat(void)
{
    const moe_token_logprobs out[1] = {lp(3, -0.125f, 2)};
    moe_oai_render rd = {.kind = MOE_OAI_CHAT, .id = "chatcmpl-1", .created = 5, .model = "m",
                         .token_text = tok_text, .logprobs = true};
    moe_oai_choice c = {.index = 1, .text = "\xC3\xA9", .text_len = 2, .lp = out, .n_lp = 1};
    char *s = moe_oai_chunk_json(&rd, &c, true);
    json_t *j = json_loads(s, 0, NULL);
    CHECK_MSG(j != NULL, "%s", s);
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(j, "object")), "chat.completion.chunk"));
    CHECK(json_integer_value(json_object_get(ch, "index")) == 1);
    json_t *d = json_object_get(ch, "delta");
    CHECK(!strcmp(json_string_value(json_object_get(d, "role")), "assistant"));
    CHECK(!strcmp(json_string_value(json_object_get(d, "content")), "\xC3\xA9"));
    CHECK(json_is_null(json_object_get(ch, "finish_reason")));
    json_t *e0 = json_array_get(json_object_get(json_object_get(ch, "logprobs"), "content"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(e0, "token")), "\xC3\xA9"));
    CHECK(json_real_value(json_object_get(e0, "logprob")) == -0.125);
    json_t *bytes = json_object_get(e0, "bytes");
    CHECK(json_array_size(bytes) == 2 && json_integer_value(json_array_get(bytes, 0)) == 0xC3);
    CHECK(json_array_size(json_object_get(e0, "top_logprobs")) == 2);
    json_decref(j);
    free(s);
    /* a later chunk: no role; the last one: finish_reason, no content */
    moe_oai_choice last = {.index = 0, .finish = "stop"};
    rd.logprobs = false;
    s = moe_oai_chunk_json(&rd, &last, false);
    CHECK_MSG(strstr(s, "\"delta\":{}") && strstr(s, "\"finish_reason\":\"stop\"") && strstr(s, "\"logprobs\":null"), "%s", s);
    free(s);
    moe_oai_usage u = {3, 4, 0};
    s = moe_oai_usage_chunk_json(&rd, &u);
    CHECK_MSG(strstr(s, "\"choices\":[]") && strstr(s, "\"total_tokens\":7"), "%s", s);
    /* SSE framing */
    char *buf = NULL;
    size_t len = 0, cap = 0;
    moe_oai_sse(&buf, &len, &cap, "{}");
    moe_oai_sse(&buf, &len, &cap, "[DONE]");
    CHECK(len == 24 && !memcmp(buf, "data: {}\n\ndata: [DONE]\n\n", 25));
    free(buf);
    free(s);
}

/* return_routed_experts: parsed into the spec, written as {shape, dtype,
 * first_moe_layer, data} per choice (the chunk of a stream too). */
static void test_routed(void)
{
    moe_oai_request r;
    moe_oai_error e;
    CHECK(parse(&r, MOE_OAI_COMPLETION,
                "{\"prompt\": \"hi\", \"return_routed_experts\": true, \"return_routed_expert_weights\": true}",
                &e) == MOE_OK);
    CHECK(r.spec.routed_experts && r.spec.routed_weights);
    moe_oai_request_free(&r);
    CHECK(parse(&r, MOE_OAI_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"return_routed_experts\": true}",
                &e) == MOE_OK);
    CHECK(r.spec.routed_experts && !r.spec.routed_weights);
    moe_oai_request_free(&r);
    CHECK(parse(&r, MOE_OAI_COMPLETION, "{\"prompt\": \"hi\", \"return_routed_experts\": 1}", &e) == MOE_ERR);
    CHECK(!strcmp(e.param, "return_routed_experts"));
    moe_oai_request_free(&r);
    CHECK(parse(&r, MOE_OAI_COMPLETION, "{\"prompt\": \"hi\", \"return_routed_expert_weights\": true}", &e) == MOE_ERR);
    CHECK(!strcmp(e.param, "return_routed_expert_weights"));
    moe_oai_request_free(&r);

    moe_oai_render rd = {.kind = MOE_OAI_CHAT, .id = "c-1", .created = 5, .model = "m"};
    const moe_oai_routed ro = {.rows = 2, .layers = 3, .top_k = 1, .first_moe_layer = 1, .ids_b64 = "AQACAAMABAAFAAYA",
                               .w_b64 = "AACAPwAAAEAAAEBAAACAQAAAoEAAAMBA"};
    moe_oai_choice c = {.index = 0, .text = "a", .text_len = 1, .finish = "stop", .routed = &ro};
    moe_oai_usage u = {1, 1, 0};
    for (int chunk = 0; chunk < 2; chunk++) {
        char *s = chunk ? moe_oai_chunk_json(&rd, &c, false) : moe_oai_response_json(&rd, &c, 1, &u);
        json_error_t je;
        json_t *j = json_loads(s, 0, &je);
        json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        json_t *ids = json_object_get(ch, "routed_experts"), *w = json_object_get(ch, "routed_expert_weights");
        CHECK_MSG(ids && w, "%s", s);
        json_t *shape = json_object_get(ids, "shape");
        CHECK(json_array_size(shape) == 3 && json_integer_value(json_array_get(shape, 0)) == 2 &&
              json_integer_value(json_array_get(shape, 1)) == 3 && json_integer_value(json_array_get(shape, 2)) == 1);
        CHECK(!strcmp(json_string_value(json_object_get(ids, "dtype")), "int16"));
        CHECK(!strcmp(json_string_value(json_object_get(w, "dtype")), "float32"));
        CHECK(json_integer_value(json_object_get(ids, "first_moe_layer")) == 1);
        CHECK(!strcmp(json_string_value(json_object_get(ids, "data")), ro.ids_b64));
        CHECK(!strcmp(json_string_value(json_object_get(w, "data")), ro.w_b64));
        json_decref(j);
        free(s);
    }
    c.routed = NULL;
    char *s = moe_oai_response_json(&rd, &c, 1, &u);
    CHECK_MSG(!strstr(s, "routed"), "%s", s);
    free(s);
}

int main(void)
{
    moe_msg_limits_default(&LIM);
    LIM.vocab_size = 1000;
    test_completion_fields();
    test_chat_fields();
    test_errors();
    test_write_completion();
    test_write_chat();
    test_routed();
    return check_summary("openai_test");
}
