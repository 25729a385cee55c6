/*
 * proto_msg_test — decoding and validation of the wire messages, without
 * sockets: each bad field gives its own code and a message naming it, both
 * when the message is checked as built and after an encode/decode trip
 * (so NaN and out-of-range values survive the wire and are caught there).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "msg.h"

static int n_cases;

/* Checks code and message of one validation case, directly and through the
 * wire (the request wrapped in a ClientMsg, encoded, decoded, checked). */
static void expect_code(const char *name, int got, int want, const char *msg, const char *want_msg)
{
    n_cases++;
    CHECK_MSG(got == want, "%s: code %s (%d), want %s (%d): %s", name, moe_msg_code_name(got), got,
              moe_msg_code_name(want), want, msg);
    if (want_msg && got == want) CHECK_CONTAINS(msg, want_msg);
}

static void expect_client(const char *name, const Moe__ClientMsg *m, const moe_msg_limits *lim, int want,
                          const char *want_msg)
{
    moe_err err = {{0}};
    int rc = moe_msg_check_client(m, lim, &err);
    expect_code(name, rc, want, err.msg, want_msg);

    uint8_t *buf;
    size_t len;
    moe_err e2 = {{0}};
    CHECK_MSG(moe_msg_encode(&m->base, 0, &buf, &len, &e2) == MOE_OK, "%s: encode: %s", name, e2.msg);
    ProtobufCMessage *d = NULL;
    int dc = moe_msg_decode(&moe__client_msg__descriptor, buf, len, lim, &d, &e2);
    CHECK_MSG(dc == MOE__CODE__OK, "%s: decode: %s", name, e2.msg);
    if (d) {
        moe_err e3 = {{0}};
        int rc2 = moe_msg_check(d, lim, &e3);
        CHECK_MSG(rc2 == rc && strcmp(e3.msg, err.msg) == 0, "%s: after the wire: %d \"%s\", before: %d \"%s\"", name,
                  rc2, e3.msg, rc, err.msg);
    }
    moe_msg_free(d);
    free(buf);
}

/* A valid generate request with room for every kind of bad field. */
typedef struct gen_fx {
    Moe__ClientMsg env;
    Moe__GenerateRequest r;
    Moe__Sampling s;
    Moe__TokenIds ids;
    int32_t idbuf[256];
    Moe__Chat chat;
    Moe__ChatMessage cm[4];
    Moe__ChatMessage *cmp[4];
    char *stops[32];
    int32_t stop_ids[32];
    char id[300];
    char text[300];
} gen_fx;

static void gen_reset(gen_fx *f)
{
    memset(f, 0, sizeof *f);
    f->env = (Moe__ClientMsg)MOE__CLIENT_MSG__INIT;
    f->r = (Moe__GenerateRequest)MOE__GENERATE_REQUEST__INIT;
    f->s = (Moe__Sampling)MOE__SAMPLING__INIT;
    f->ids = (Moe__TokenIds)MOE__TOKEN_IDS__INIT;
    f->chat = (Moe__Chat)MOE__CHAT__INIT;
    for (int i = 0; i < 4; i++) {
        f->cm[i] = (Moe__ChatMessage)MOE__CHAT_MESSAGE__INIT;
        f->cmp[i] = &f->cm[i];
    }
    f->env.body_case = MOE__CLIENT_MSG__BODY_GENERATE;
    f->env.generate = &f->r;
    strcpy(f->id, "req-1");
    f->r.request_id = f->id;
    strcpy(f->text, "Hello, world");
    f->r.prompt_case = MOE__GENERATE_REQUEST__PROMPT_TEXT;
    f->r.text = f->text;
    f->r.sampling = &f->s;
    f->s.has_temperature = 1;
    f->s.temperature = 0.7f;
    f->s.has_seed = 1;
    f->s.seed = 42;
    f->r.has_max_tokens = 1;
    f->r.max_tokens = 16;
    f->ids.ids = f->idbuf;
    f->chat.messages = f->cmp;
    f->r.stop = f->stops;
    f->r.stop_ids = f->stop_ids;
}

static void use_ids(gen_fx *f, size_t n)
{
    for (size_t i = 0; i < n; i++) f->idbuf[i] = (int32_t)(i % 7 + 1);
    f->ids.n_ids = n;
    f->r.prompt_case = MOE__GENERATE_REQUEST__PROMPT_IDS;
    f->r.ids = &f->ids;
}

static void use_chat(gen_fx *f, size_t n)
{
    static const char *roles[] = {"system", "user", "assistant", "user"};
    for (size_t i = 0; i < n; i++) {
        f->cm[i].role = (char *)roles[i];
        f->cm[i].content = (char *)"hi";
    }
    f->chat.n_messages = n;
    f->r.prompt_case = MOE__GENERATE_REQUEST__PROMPT_CHAT;
    f->r.chat = &f->chat;
}

#define GEN(name, setup, want, want_msg)                 \
    do {                                                 \
        gen_reset(&f);                                   \
        setup;                                           \
        expect_client(name, &f.env, &lim, want, want_msg); \
    } while (0)

static void test_generate(void)
{
    static gen_fx f;
    moe_msg_limits lim;
    moe_msg_limits_default(&lim);
    lim.vocab_size = 1000;
    const int OK = MOE__CODE__OK, SAMP = MOE__CODE__BAD_SAMPLING, BAD = MOE__CODE__BAD_REQUEST;

    GEN("valid text", (void)0, OK, NULL);
    GEN("no sampling at all", f.r.sampling = NULL, OK, NULL);
    GEN("greedy", f.s.temperature = 0.0f, OK, NULL);
    GEN("valid ids", use_ids(&f, 5), OK, NULL);
    GEN("valid chat", use_chat(&f, 3), OK, NULL);
    GEN("valid utf-8", strcpy(f.text, "h\xc3\xa9llo \xe2\x82\xac \xf0\x9d\x84\x9e"), OK, NULL);
    GEN("top_p 1 (edge)", (f.s.has_top_p = 1, f.s.top_p = 1.0f), OK, NULL);
    GEN("min_p 0 and 1 (edges)", (f.s.has_min_p = 1, f.s.min_p = 1.0f), OK, NULL);
    GEN("top_k 0", (f.s.has_top_k = 1, f.s.top_k = 0), OK, NULL);
    GEN("repeat_last_n -1", (f.s.has_repeat_last_n = 1, f.s.repeat_last_n = -1), OK, NULL);
    GEN("deadline", (f.r.has_deadline_ms = 1, f.r.deadline_ms = 1000), OK, NULL);

    /* sampling */
    GEN("temperature NaN", f.s.temperature = NAN, SAMP, "sampling.temperature is NaN");
    GEN("temperature negative", f.s.temperature = -1.0f, SAMP, "sampling.temperature = -1 is out of range [0, 1000]");
    GEN("temperature inf", f.s.temperature = INFINITY, SAMP, "sampling.temperature is infinite");
    GEN("temperature beyond the sampler's range", f.s.temperature = 5000.0f, SAMP,
        "sampling.temperature = 5000 is out of range [0, 1000]");
    GEN("top_p 0", (f.s.has_top_p = 1, f.s.top_p = 0.0f), SAMP, "sampling.top_p = 0 is out of range (0, 1]");
    GEN("top_p 1.5", (f.s.has_top_p = 1, f.s.top_p = 1.5f), SAMP, "sampling.top_p = 1.5 is out of range (0, 1]");
    GEN("top_p negative", (f.s.has_top_p = 1, f.s.top_p = -0.5f), SAMP, "sampling.top_p");
    GEN("top_p NaN", (f.s.has_top_p = 1, f.s.top_p = NAN), SAMP, "sampling.top_p is NaN");
    GEN("top_k negative", (f.s.has_top_k = 1, f.s.top_k = -3), SAMP, "sampling.top_k = -3 is out of range [0, ");
    GEN("min_p negative", (f.s.has_min_p = 1, f.s.min_p = -0.1f), SAMP, "sampling.min_p");
    GEN("min_p above 1", (f.s.has_min_p = 1, f.s.min_p = 1.1f), SAMP, "sampling.min_p");
    GEN("min_p NaN", (f.s.has_min_p = 1, f.s.min_p = NAN), SAMP, "sampling.min_p is NaN");
    GEN("repetition_penalty 0", (f.s.has_repetition_penalty = 1, f.s.repetition_penalty = 0.0f), SAMP,
        "sampling.repetition_penalty = 0 is out of range (0, 100]");
    GEN("repetition_penalty negative", (f.s.has_repetition_penalty = 1, f.s.repetition_penalty = -1.0f), SAMP,
        "repetition_penalty");
    GEN("repetition_penalty NaN", (f.s.has_repetition_penalty = 1, f.s.repetition_penalty = NAN), SAMP,
        "repetition_penalty is NaN");
    GEN("repetition_penalty beyond the sampler's range",
        (f.s.has_repetition_penalty = 1, f.s.repetition_penalty = 1000.0f), SAMP,
        "sampling.repetition_penalty = 1000 is out of range (0, 100]");
    GEN("repeat_last_n -2", (f.s.has_repeat_last_n = 1, f.s.repeat_last_n = -2), SAMP, "repeat_last_n = -2");

    /* prompt */
    GEN("empty text", f.text[0] = '\0', MOE__CODE__EMPTY_PROMPT, "text is empty");
    GEN("no prompt", f.r.prompt_case = MOE__GENERATE_REQUEST__PROMPT__NOT_SET, MOE__CODE__EMPTY_PROMPT, "no prompt");
    GEN("no ids", use_ids(&f, 0), MOE__CODE__EMPTY_PROMPT, "ids is empty");
    GEN("no chat messages", use_chat(&f, 0), MOE__CODE__EMPTY_PROMPT, "chat has no messages");
    GEN("id outside the vocabulary", (use_ids(&f, 4), f.idbuf[2] = 1000), BAD, "ids[2] = 1000 is outside the vocabulary");
    GEN("negative id", (use_ids(&f, 4), f.idbuf[3] = -1), BAD, "ids[3] = -1");
    GEN("overlong UTF-8", strcpy(f.text, "a\xc0\xaf"), BAD, "text is not valid UTF-8 (at byte 1)");
    GEN("surrogate", strcpy(f.text, "ab\xed\xa0\x80"), BAD, "not valid UTF-8 (at byte 2)");
    GEN("cut UTF-8", strcpy(f.text, "\xe2\x82"), BAD, "not valid UTF-8");
    GEN("above U+10FFFF", strcpy(f.text, "\xf4\x90\x80\x80"), BAD, "not valid UTF-8");
    GEN("stray continuation", strcpy(f.text, "\x80"), BAD, "not valid UTF-8");
    GEN("unknown role", (use_chat(&f, 2), f.cm[1].role = (char *)"wizard"), BAD,
        "chat.messages[1].role \"wizard\" is not");
    GEN("unknown role, quoted safely", (use_chat(&f, 1), f.cm[0].role = (char *)"\x01\"\xff"), BAD, "role \"???\"");
    GEN("missing role", (use_chat(&f, 2), f.cm[0].role = NULL), BAD, "chat.messages[0].role is missing");
    GEN("bad UTF-8 in chat", (use_chat(&f, 2), f.cm[1].content = (char *)"\xff"), BAD,
        "chat.messages[1].content is not valid UTF-8");
    GEN("chat message without content", (use_chat(&f, 2), f.cm[1].content = NULL), OK, NULL);

    /* max_tokens */
    GEN("max_tokens 0", f.r.max_tokens = 0, MOE__CODE__BAD_MAX_TOKENS, "max_tokens = 0 must be at least 1");
    GEN("max_tokens negative", f.r.max_tokens = -5, MOE__CODE__BAD_MAX_TOKENS, "max_tokens = -5");
    GEN("max_tokens above the cap", f.r.max_tokens = (1 << 20) + 1, MOE__CODE__BAD_MAX_TOKENS, "above the limit");
    GEN("max_tokens unset", f.r.has_max_tokens = 0, OK, NULL);

    /* logprobs, prompt logprobs, scoring, min_tokens, ignore_eos */
    GEN("logprobs 20", (f.r.has_logprobs = 1, f.r.logprobs = 20), OK, NULL);
    GEN("logprobs 21", (f.r.has_logprobs = 1, f.r.logprobs = 21), BAD, "generate: logprobs = 21 is above the limit of 20");
    GEN("prompt_logprobs alone", (f.r.has_prompt_logprobs = 1, f.r.prompt_logprobs = 1), BAD,
        "prompt_logprobs needs logprobs");
    GEN("prompt_logprobs false alone", (f.r.has_prompt_logprobs = 1, f.r.prompt_logprobs = 0), OK, NULL);
    GEN("scoring: max_tokens 0 with prompt_logprobs",
        (f.r.max_tokens = 0, f.r.has_logprobs = 1, f.r.has_prompt_logprobs = 1, f.r.prompt_logprobs = 1), OK, NULL);
    GEN("max_tokens 0 with logprobs only", (f.r.max_tokens = 0, f.r.has_logprobs = 1), MOE__CODE__BAD_MAX_TOKENS,
        "0 only scores a prompt");
    GEN("min_tokens 2^20", (f.r.sampling = &f.s, f.s.has_min_tokens = 1, f.s.min_tokens = 1 << 20), OK, NULL);
    GEN("min_tokens negative", (f.r.sampling = &f.s, f.s.has_min_tokens = 1, f.s.min_tokens = -1),
        MOE__CODE__BAD_SAMPLING, "sampling.min_tokens = -1 is out of range");
    GEN("ignore_eos", (f.r.sampling = &f.s, f.s.has_ignore_eos = 1, f.s.ignore_eos = 1), OK, NULL);

    /* request id */
    GEN("request id missing", f.r.request_id = NULL, BAD, "generate: request_id is missing");
    GEN("request id empty", f.id[0] = '\0', BAD, "request_id is empty");
    GEN("request id of 128 bytes", (memset(f.id, 'x', 128), f.id[128] = '\0'), OK, NULL);
    GEN("request id over-long", (memset(f.id, 'x', 129), f.id[129] = '\0'), BAD,
        "request_id is longer than 128 bytes");
    GEN("request id with a space", strcpy(f.id, "a b"), BAD, "request_id byte 1 (0x20)");
    GEN("request id with a control byte", strcpy(f.id, "a\n"), BAD, "request_id byte 1 (0x0a)");

    /* stops */
    static char *many[17];
    for (int i = 0; i < 17; i++) many[i] = (char *)"\n\n";
    GEN("16 stop strings", (f.r.stop = many, f.r.n_stop = 16), OK, NULL);
    GEN("too many stop strings", (f.r.stop = many, f.r.n_stop = 17), BAD, "17 stop strings, more than the limit of 16");
    GEN("empty stop string", (f.stops[0] = (char *)"", f.r.n_stop = 1), BAD, "stop[0] is empty");
    static char long_stop[300];
    memset(long_stop, 's', 257);
    GEN("over-long stop string", (f.stops[0] = (char *)"ok", f.stops[1] = long_stop, f.r.n_stop = 2), BAD,
        "stop[1] is longer than 256 bytes");
    GEN("stop string bad UTF-8", (f.stops[0] = (char *)"\xc3", f.r.n_stop = 1), BAD, "stop[0] is not valid UTF-8");
    GEN("too many stop ids", f.r.n_stop_ids = 9, BAD, "9 stop ids, more than the limit of 8");
    GEN("stop id outside the vocabulary", (f.stop_ids[0] = 5000, f.r.n_stop_ids = 1), BAD, "stop_ids[0] = 5000");

    /* deadline */
    GEN("deadline 0", (f.r.has_deadline_ms = 1, f.r.deadline_ms = 0), BAD, "deadline_ms = 0 is outside");
    GEN("deadline negative", (f.r.has_deadline_ms = 1, f.r.deadline_ms = -1), BAD, "deadline_ms = -1");
    GEN("deadline beyond a day", (f.r.has_deadline_ms = 1, f.r.deadline_ms = 86400001), BAD, "deadline_ms");

    /* limits that depend on the model and the server's flags */
    lim.max_context = 100;
    GEN("max_tokens beyond the context", f.r.max_tokens = 100, MOE__CODE__BAD_MAX_TOKENS,
        "does not fit the context of 100");
    GEN("ids + max_tokens beyond the context", (use_ids(&f, 60), f.r.max_tokens = 50), MOE__CODE__BAD_MAX_TOKENS,
        "60 prompt ids + max_tokens 50 exceed the context of 100");
    GEN("ids + max_tokens fill the context", (use_ids(&f, 60), f.r.max_tokens = 40), OK, NULL);
    GEN("ids fill the context", use_ids(&f, 100), MOE__CODE__PROMPT_TOO_LONG, "100 prompt ids leave no room");
    lim.max_context = 0;
    lim.max_text_len = 16;
    GEN("text too long", strcpy(f.text, "0123456789abcdefg"), MOE__CODE__PROMPT_TOO_LONG,
        "text is longer than 16 bytes");
    GEN("text at the limit", strcpy(f.text, "0123456789abcdef"), OK, NULL);
    GEN("chat contents too long in total",
        (use_chat(&f, 3), f.cm[0].content = (char *)"0123456789", f.cm[2].content = (char *)"0123456789"),
        MOE__CODE__PROMPT_TOO_LONG, "chat contents total more than 16 bytes");
    lim.max_text_len = (size_t)1 << 20;
    lim.max_chat_messages = 2;
    GEN("too many chat messages", use_chat(&f, 3), BAD, "chat has 3 messages, more than the limit of 2");
    lim.max_chat_messages = 1024;
    lim.max_ids = 10;
    GEN("too many prompt ids", use_ids(&f, 11), MOE__CODE__PROMPT_TOO_LONG, "11 prompt ids, more than the limit of 10");
}

static void test_other_client_bodies(void)
{
    moe_msg_limits lim;
    moe_msg_limits_default(&lim);
    Moe__ClientMsg env = MOE__CLIENT_MSG__INIT;
    Moe__Hello h = MOE__HELLO__INIT;
    env.body_case = MOE__CLIENT_MSG__BODY_HELLO;
    env.hello = &h;
    expect_client("hello without version", &env, &lim, MOE__CODE__BAD_VERSION, "protocol_version is missing");
    h.has_protocol_version = 1;
    h.protocol_version = 2;
    expect_client("hello version 2", &env, &lim, MOE__CODE__BAD_VERSION,
                  "protocol_version 2 is not supported (this side speaks 1)");
    h.protocol_version = 0;
    expect_client("hello version 0", &env, &lim, MOE__CODE__BAD_VERSION, "protocol_version 0");
    h.protocol_version = MOE_PROTO_VERSION;
    expect_client("hello version 1", &env, &lim, MOE__CODE__OK, NULL);
    static char name[300];
    memset(name, 'n', 257);
    h.client_name = name;
    expect_client("hello with an over-long name", &env, &lim, MOE__CODE__BAD_REQUEST, "client_name is longer");

    Moe__Cancel c = MOE__CANCEL__INIT;
    env.body_case = MOE__CLIENT_MSG__BODY_CANCEL;
    env.cancel = &c;
    expect_client("cancel without id", &env, &lim, MOE__CODE__BAD_REQUEST, "cancel: request_id is missing");
    c.request_id = (char *)"r9";
    expect_client("cancel", &env, &lim, MOE__CODE__OK, NULL);
    CHECK(moe_msg_request_id(&env, &lim) && strcmp(moe_msg_request_id(&env, &lim), "r9") == 0);
    c.request_id = (char *)"bad id";
    CHECK(moe_msg_request_id(&env, &lim) == NULL);

    Moe__Heartbeat hb = MOE__HEARTBEAT__INIT;
    env.body_case = MOE__CLIENT_MSG__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    expect_client("heartbeat", &env, &lim, MOE__CODE__OK, NULL);
    CHECK(moe_msg_request_id(&env, &lim) == NULL);
    /* the requests a client waits for, and the queue places in the echo */
    static char *hb_ids[MOE_MSG_MAX_HEARTBEAT_IDS + 1];
    static uint32_t hb_pos[MOE_MSG_MAX_HEARTBEAT_IDS + 1];
    for (int i = 0; i <= MOE_MSG_MAX_HEARTBEAT_IDS; i++) hb_ids[i] = (char *)"r1", hb_pos[i] = 1;
    hb.n_request_ids = 2;
    hb.request_ids = hb_ids;
    expect_client("heartbeat with ids", &env, &lim, MOE__CODE__OK, NULL);
    hb.n_request_ids = MOE_MSG_MAX_HEARTBEAT_IDS + 1;
    expect_client("heartbeat with too many ids", &env, &lim, MOE__CODE__BAD_REQUEST, "heartbeat: 4097 request ids (at most 4096)");
    char *bad_ids[] = {(char *)"r1", (char *)"bad id"};
    hb.n_request_ids = 2;
    hb.request_ids = bad_ids;
    expect_client("heartbeat with a bad id", &env, &lim, MOE__CODE__BAD_REQUEST, "heartbeat: request_id byte 3");
    hb.n_request_ids = 0;
    hb.n_queued_ids = 2;
    hb.queued_ids = hb_ids;
    hb.n_queue_positions = 1;
    hb.queue_positions = hb_pos;
    expect_client("heartbeat with unpaired queue places", &env, &lim, MOE__CODE__BAD_REQUEST, "heartbeat: 2 queued ids but 1 positions");
    hb.n_queue_positions = 2;
    expect_client("heartbeat with queue places", &env, &lim, MOE__CODE__OK, NULL);
    hb.n_queued_ids = hb.n_queue_positions = 0;

    /* An envelope built without a body: refused by the encoder and the check. */
    Moe__ClientMsg empty = MOE__CLIENT_MSG__INIT;
    moe_err err;
    uint8_t *buf;
    size_t len;
    CHECK(moe_msg_encode(&empty.base, 0, &buf, &len, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "has no body");
    expect_code("check of an empty envelope", moe_msg_check(&empty.base, &lim, &err), MOE__CODE__MALFORMED_FRAME,
                err.msg, "has no body");
}

/* Decodes bytes as a ClientMsg and checks the code. */
static void expect_decode(const char *name, const void *data, size_t len, const moe_msg_limits *lim, int want,
                          const char *want_msg)
{
    ProtobufCMessage *m = NULL;
    moe_err err = {{0}};
    int rc = moe_msg_decode(&moe__client_msg__descriptor, data, len, lim, &m, &err);
    expect_code(name, rc, want, err.msg, want_msg);
    CHECK_MSG((rc == MOE__CODE__OK) == (m != NULL), "%s: message iff OK", name);
    moe_msg_free(m);
}

static void test_decode(void)
{
    moe_msg_limits lim;
    moe_msg_limits_default(&lim);
    const int MAL = MOE__CODE__MALFORMED_FRAME;

    expect_decode("garbage", "\xff\xff\xff\xff\xff", 5, &lim, MAL, "is not a valid ClientMsg");
    expect_decode("empty frame", NULL, 0, &lim, MAL, "has no body");
    expect_decode("unknown field only", "\xf8\x06\x01", 3, &lim, MAL, "has no body");
    /* field 2 (generate), length 10, but only 2 bytes follow */
    expect_decode("cut frame", "\x12\x0a\x0a\x02", 4, &lim, MAL, "not a valid");
    /* a heartbeat, then field number 0 written as a padded varint */
    expect_decode("field number 0", "\x22\x00\x80\x00\x00", 5, &lim, MAL, "has a field numbered 0");
    /* the same inside a nested message (generate > sampling) */
    expect_decode("nested field number 0", "\x12\x07\x2a\x05\x18\x01\x80\x00\x00", 9, &lim, MAL,
                  "has a field numbered 0");
    /* field 1 as a varint where a message is expected */
    expect_decode("wrong wire type", "\x08\x01", 2, &lim, MAL, "not a valid");

    /* A real frame, then its copies: cut short and too big for the cap. */
    Moe__ClientMsg env = MOE__CLIENT_MSG__INIT;
    Moe__Cancel c = MOE__CANCEL__INIT;
    c.request_id = (char *)"abc";
    env.body_case = MOE__CLIENT_MSG__BODY_CANCEL;
    env.cancel = &c;
    uint8_t *buf;
    size_t len;
    moe_err err;
    CHECK(moe_msg_encode(&env.base, 0, &buf, &len, &err) == MOE_OK);
    expect_decode("valid", buf, len, &lim, MOE__CODE__OK, NULL);
    expect_decode("truncated", buf, len - 1, &lim, MAL, NULL);
    lim.max_frame = len - 1;
    expect_decode("one byte over the cap", buf, len, &lim, MOE__CODE__OVERSIZED_FRAME,
                  "is larger than the limit of");
    /* The cap is checked before parsing: garbage over the cap is "oversized". */
    expect_decode("garbage over the cap", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 12, &lim,
                  MOE__CODE__OVERSIZED_FRAME, "12 bytes is larger");
    uint8_t *buf2;
    size_t len2;
    CHECK(moe_msg_encode(&env.base, len - 1, &buf2, &len2, &err) == MOE_ERR && buf2 == NULL);
    CHECK_CONTAINS(err.msg, "larger than the frame limit");
    free(buf);
    moe_msg_limits_default(&lim);

    /* Known body plus an unknown field (a newer peer): accepted. */
    CHECK(moe_msg_encode(&env.base, 0, &buf, &len, &err) == MOE_OK);
    uint8_t ext[64];
    memcpy(ext, buf, len);
    memcpy(ext + len, "\xf8\x06\x07", 3);
    expect_decode("unknown extra field", ext, len + 3, &lim, MOE__CODE__OK, NULL);
    free(buf);

    /* The parser's memory is bounded: 2000 packed ids (1 byte each) need
     * 8 KB as int32; with a 4 KB budget the frame is refused. */
    static gen_fx f;
    gen_reset(&f);
    static int32_t ids[2000];
    for (int i = 0; i < 2000; i++) ids[i] = 1;
    use_ids(&f, 1);
    f.ids.ids = ids;
    f.ids.n_ids = 2000;
    CHECK(moe_msg_encode(&f.env.base, 0, &buf, &len, &err) == MOE_OK);
    expect_decode("ids within the budget", buf, len, &lim, MOE__CODE__OK, NULL);
    lim.max_decode_mem = 4096;
    expect_decode("ids beyond the memory budget", buf, len, &lim, MOE__CODE__OVERSIZED_FRAME,
                  "more than 4096 bytes of memory");
    free(buf);
    moe_msg_limits_default(&lim);

    /* An enum value outside the proto's list arrives as a number and is
     * refused by the check. */
    Moe__ServerMsg s = MOE__SERVER_MSG__INIT;
    Moe__Error e = MOE__ERROR__INIT;
    e.has_code = 1;
    e.code = (Moe__Code)999;
    s.body_case = MOE__SERVER_MSG__BODY_ERROR;
    s.error = &e;
    CHECK(moe_msg_encode(&s.base, 0, &buf, &len, &err) == MOE_OK);
    ProtobufCMessage *m;
    CHECK(moe_msg_decode(&moe__server_msg__descriptor, buf, len, NULL, &m, &err) == MOE__CODE__OK);
    expect_code("unknown error code", moe_msg_check(m, NULL, &err), MOE__CODE__BAD_REQUEST, err.msg,
                "code 999 is not an error code");
    moe_msg_free(m);
    free(buf);
}

static void expect_check(const char *name, const ProtobufCMessage *m, const moe_msg_limits *lim, int want,
                         const char *want_msg)
{
    moe_err err = {{0}};
    expect_code(name, moe_msg_check(m, lim, &err), want, err.msg, want_msg);
}

static void test_server_and_worker_bodies(void)
{
    moe_msg_limits lim;
    moe_msg_limits_default(&lim);
    lim.vocab_size = 100;
    const int OK = MOE__CODE__OK, BAD = MOE__CODE__BAD_REQUEST;

    Moe__ServerMsg s = MOE__SERVER_MSG__INIT;
    Moe__TokenChunk ch = MOE__TOKEN_CHUNK__INIT;
    int32_t ids[3] = {1, 2, 3};
    ch.request_id = (char *)"r";
    ch.ids = ids;
    ch.n_ids = 3;
    s.body_case = MOE__SERVER_MSG__BODY_CHUNK;
    s.chunk = &ch;
    expect_check("chunk without index", &s.base, &lim, BAD, "chunk: index is missing");
    ch.has_index = 1;
    expect_check("chunk", &s.base, &lim, OK, NULL);
    ids[1] = 100;
    expect_check("chunk id outside the vocabulary", &s.base, &lim, BAD, "chunk: ids[1] = 100");
    ids[1] = 2;

    /* logprobs in a chunk: one per id, each a log-probability with paired alternatives */
    Moe__TokenLogprobs tl[3], *tlp[3] = {&tl[0], &tl[1], &tl[2]};
    int32_t top_ids[21] = {0};
    float top_lps[21] = {0};
    for (int i = 0; i < 3; i++) {
        moe__token_logprobs__init(&tl[i]);
        tl[i].has_logprob = 1;
        tl[i].logprob = -1.5f;
    }
    ch.logprobs = tlp;
    ch.n_logprobs = 2;
    expect_check("chunk with 2 logprobs for 3 ids", &s.base, &lim, BAD, "chunk: 2 logprobs for 3 ids");
    ch.n_logprobs = 3;
    expect_check("chunk with logprobs", &s.base, &lim, OK, NULL);
    tl[1].logprob = 0.25f;
    expect_check("chunk logprob above 0", &s.base, &lim, BAD, "chunk: logprobs[1]: logprob 0.25 is not a log-probability");
    tl[1].logprob = NAN;
    expect_check("chunk logprob NaN", &s.base, &lim, BAD, "is not a log-probability");
    tl[1].logprob = -2.0f;
    tl[2].top_ids = top_ids;
    tl[2].top_logprobs = top_lps;
    tl[2].n_top_ids = 2;
    tl[2].n_top_logprobs = 1;
    expect_check("chunk alternatives unpaired", &s.base, &lim, BAD, "2 top_ids but 1 top_logprobs");
    tl[2].n_top_ids = tl[2].n_top_logprobs = 21;
    expect_check("chunk 21 alternatives", &s.base, &lim, BAD, "21 alternatives, more than the limit of 20");
    tl[2].n_top_ids = tl[2].n_top_logprobs = 20;
    expect_check("chunk 20 alternatives", &s.base, &lim, OK, NULL);
    top_ids[3] = 100;
    expect_check("chunk alternative outside the vocabulary", &s.base, &lim, BAD, "= 100 is outside the vocabulary");
    top_ids[3] = 0;
    tl[2].has_logprob = 0;
    expect_check("chunk logprob missing", &s.base, &lim, BAD, "chunk: logprobs[2]: logprob is missing");
    tl[2].has_logprob = 1;

    /* the prompt's logprobs to a client */
    Moe__PromptLogprobs pl = MOE__PROMPT_LOGPROBS__INIT;
    s.body_case = MOE__SERVER_MSG__BODY_PROMPT_LOGPROBS;
    s.prompt_logprobs = &pl;
    expect_check("prompt_logprobs without request id", &s.base, &lim, BAD, "prompt_logprobs: request_id is missing");
    pl.request_id = (char *)"r";
    pl.ids = ids;
    pl.n_ids = 3;
    pl.entries = tlp;
    pl.n_entries = 3;
    expect_check("prompt_logprobs without index", &s.base, &lim, BAD, "index is missing or 0");
    pl.has_index = 1;
    pl.index = 1;
    expect_check("prompt_logprobs", &s.base, &lim, OK, NULL);
    pl.n_entries = 2;
    expect_check("prompt_logprobs entries != ids", &s.base, &lim, BAD, "3 ids and 2 entries");
    pl.n_entries = 3;
    pl.index = 262143;
    expect_check("prompt_logprobs beyond the prompt limit", &s.base, &lim, BAD, "beyond the limit");
    pl.index = 1;

    Moe__Finish fin = MOE__FINISH__INIT;
    fin.request_id = (char *)"r";
    s.body_case = MOE__SERVER_MSG__BODY_FINISH;
    s.finish = &fin;
    expect_check("finish without reason", &s.base, &lim, BAD, "finish: reason is missing");
    fin.has_reason = 1;
    fin.reason = (Moe__EndReason)17;
    expect_check("finish with an unknown reason", &s.base, &lim, BAD, "reason 17 is not an end reason");
    fin.reason = MOE__END_REASON__END_LENGTH;
    expect_check("finish", &s.base, &lim, OK, NULL);

    Moe__Error e = MOE__ERROR__INIT;
    s.body_case = MOE__SERVER_MSG__BODY_ERROR;
    s.error = &e;
    expect_check("error without code", &s.base, &lim, BAD, "error: code is missing");
    e.has_code = 1;
    e.code = MOE__CODE__OK;
    expect_check("error with code OK", &s.base, &lim, BAD, "code 0 is not an error code");
    e.code = MOE__CODE__QUEUE_FULL;
    expect_check("error", &s.base, &lim, OK, NULL);

    Moe__HelloReply hr = MOE__HELLO_REPLY__INIT;
    s.body_case = MOE__SERVER_MSG__BODY_HELLO_REPLY;
    s.hello_reply = &hr;
    expect_check("hello_reply without version", &s.base, &lim, MOE__CODE__BAD_VERSION, "hello_reply: protocol_version");
    hr.has_protocol_version = 1;
    hr.protocol_version = 1;
    hr.has_vocab_size = 1;
    expect_check("hello_reply vocab 0", &s.base, &lim, BAD, "vocab_size is 0");
    hr.vocab_size = 100;
    expect_check("hello_reply", &s.base, &lim, OK, NULL);

    /* worker -> coordinator */
    Moe__WorkerMsg w = MOE__WORKER_MSG__INIT;
    Moe__WorkerHello wh = MOE__WORKER_HELLO__INIT;
    Moe__ModelIdentity mi = MOE__MODEL_IDENTITY__INIT;
    w.body_case = MOE__WORKER_MSG__BODY_HELLO;
    w.hello = &wh;
    wh.has_protocol_version = 1;
    wh.protocol_version = 7;
    expect_check("worker_hello version 7", &w.base, &lim, MOE__CODE__BAD_VERSION, "protocol_version 7");
    wh.protocol_version = 1;
    expect_check("worker_hello without n_ranks", &w.base, &lim, BAD, "n_ranks must be in [1, 4096]");
    wh.has_n_ranks = wh.has_rank = 1;
    wh.n_ranks = 2;
    wh.rank = 2;
    expect_check("worker_hello rank >= n_ranks", &w.base, &lim, BAD, "rank 2 is not below n_ranks 2");
    wh.rank = 1;
    wh.has_cache_tokens_total = wh.has_cache_tokens_free = 1;
    wh.cache_tokens_total = 10;
    wh.cache_tokens_free = 11;
    expect_check("worker_hello free > total", &w.base, &lim, BAD, "cache_tokens_free 11 is above");
    wh.cache_tokens_free = 10;
    expect_check("worker_hello without model", &w.base, &lim, BAD, "model is missing");
    wh.model = &mi;
    expect_check("worker_hello model vocab missing", &w.base, &lim, BAD, "model.vocab_size");
    mi.has_vocab_size = 1;
    mi.vocab_size = 100;
    expect_check("worker_hello", &w.base, &lim, OK, NULL);
    wh.kernels = (char *)"avx512";
    expect_check("worker_hello with its kernel set", &w.base, &lim, OK, NULL);
    wh.kernels = (char *)"a kernel set name far longer than thirty-two bytes";
    expect_check("worker_hello kernels too long", &w.base, &lim, BAD, "worker_hello: kernels");
    wh.kernels = NULL;

    Moe__Token t = MOE__TOKEN__INIT;
    w.body_case = MOE__WORKER_MSG__BODY_TOKEN;
    w.token = &t;
    expect_check("token without seq_id", &w.base, &lim, BAD, "token: seq_id is missing");
    t.has_seq_id = t.has_index = t.has_token = 1;
    t.token = 100;
    expect_check("token outside the vocabulary", &w.base, &lim, BAD, "token: token[0] = 100");
    t.token = 99;
    t.index = 1u << 20;
    expect_check("token index beyond max_tokens", &w.base, &lim, BAD, "index 1048576");
    t.index = 3;
    expect_check("token", &w.base, &lim, OK, NULL);
    t.logprobs = &tl[0];
    expect_check("token with logprobs", &w.base, &lim, OK, NULL);
    tl[0].logprob = 1.0f;
    expect_check("token with a positive logprob", &w.base, &lim, BAD, "token: logprobs: logprob 1 is not");
    tl[0].logprob = -1.0f;
    t.logprobs = NULL;

    w.body_case = MOE__WORKER_MSG__BODY_PROMPT_LOGPROBS;
    w.prompt_logprobs = &pl;
    expect_check("prompt_logprobs from a rank without seq_id", &w.base, &lim, BAD, "prompt_logprobs: seq_id is missing");
    pl.has_seq_id = 1;
    expect_check("prompt_logprobs from a rank", &w.base, &lim, OK, NULL);
    pl.index = 0;
    expect_check("prompt_logprobs at position 0", &w.base, &lim, BAD, "index is missing or 0");
    pl.index = 1;

    /* routed experts: 2 rows x 3 layers x 2 experts */
    uint8_t rid[24] = {0}, rw[48] = {0};
    for (int i = 0; i < 12; i++) rid[2 * i] = (uint8_t)i;
    Moe__RoutedExperts re = MOE__ROUTED_EXPERTS__INIT;
    w.body_case = MOE__WORKER_MSG__BODY_ROUTED_EXPERTS;
    w.routed_experts = &re;
    expect_check("routed_experts without seq_id", &w.base, &lim, BAD, "routed_experts: seq_id is missing");
    re.has_seq_id = re.seq_id = 1;
    expect_check("routed_experts without a shape", &w.base, &lim, BAD, "is missing");
    re.has_first = re.has_rows = re.has_moe_layers = re.has_top_k = re.has_first_moe_layer = 1;
    re.first = 5, re.rows = 2, re.moe_layers = 3, re.top_k = 2, re.first_moe_layer = 1;
    expect_check("routed_experts without ids", &w.base, &lim, BAD, "ids has 0 bytes, 12 int16 expected");
    re.has_ids = 1;
    re.ids = (ProtobufCBinaryData){.len = 23, .data = rid};
    expect_check("routed_experts with an odd byte", &w.base, &lim, BAD, "ids has 23 bytes");
    re.ids.len = 24;
    expect_check("routed_experts", &w.base, &lim, OK, NULL);
    rid[7] = 0x80; /* ids[3] = -32765 */
    expect_check("routed_experts with a negative id", &w.base, &lim, BAD, "ids[3] is");
    rid[7] = 0;
    re.has_weights = 1;
    re.weights = (ProtobufCBinaryData){.len = 44, .data = rw};
    expect_check("routed_experts weights short", &w.base, &lim, BAD, "weights has 44 bytes");
    re.weights.len = 48;
    expect_check("routed_experts with weights", &w.base, &lim, OK, NULL);
    rw[4 * 7 + 3] = 0x7f, rw[4 * 7 + 2] = 0x80; /* +inf */
    expect_check("routed_experts with an infinite weight", &w.base, &lim, BAD, "weights[7] is not finite");
    re.has_weights = 0;
    re.top_k = 65;
    expect_check("routed_experts top_k 65", &w.base, &lim, BAD, "top_k 65");
    re.top_k = 2, re.moe_layers = 0;
    expect_check("routed_experts no layers", &w.base, &lim, BAD, "0 MoE layers");
    re.moe_layers = 3, re.rows = 0;
    expect_check("routed_experts no rows", &w.base, &lim, BAD, "at least one row");
    /* first + rows far out: 2^32 - 1 + 2 rows of 6 ids overflow 32 bits, not 64 */
    re.rows = 2, re.first = UINT32_MAX;
    expect_check("routed_experts beyond the limit", &w.base, &lim, BAD, "at most 4194304 ids");
    re.first = 0;

    Moe__SeqEnd se = MOE__SEQ_END__INIT;
    w.body_case = MOE__WORKER_MSG__BODY_SEQ_END;
    w.seq_end = &se;
    se.has_seq_id = se.has_reason = 1;
    se.reason = (Moe__EndReason)-1;
    expect_check("seq_end unknown reason", &w.base, &lim, BAD, "reason -1");
    se.reason = MOE__END_REASON__END_STOP;
    expect_check("seq_end", &w.base, &lim, OK, NULL);

    Moe__WorkerHeartbeat wb = MOE__WORKER_HEARTBEAT__INIT;
    w.body_case = MOE__WORKER_MSG__BODY_HEARTBEAT;
    w.heartbeat = &wb;
    wb.has_rank = 1;
    expect_check("worker_heartbeat without free cache", &w.base, &lim, BAD, "cache_tokens_free is missing");
    wb.has_cache_tokens_free = 1;
    expect_check("worker_heartbeat", &w.base, &lim, OK, NULL);
    wb.rank = 5000;
    expect_check("worker_heartbeat rank", &w.base, &lim, BAD, "rank 5000");
    wb.rank = 1;
    /* a long step's announcement: up to a day */
    wb.has_step_expect_ms = 1;
    wb.step_expect_ms = MOE_MSG_MAX_STEP_EXPECT_MS;
    expect_check("worker_heartbeat step_expect_ms a day", &w.base, &lim, OK, NULL);
    wb.step_expect_ms = MOE_MSG_MAX_STEP_EXPECT_MS + 1;
    expect_check("worker_heartbeat step_expect_ms over a day", &w.base, &lim, BAD, "step_expect_ms 86400001 is above");
    wb.step_expect_ms = 0;

    /* a rank's figures: step buckets the protocol's, adding up to steps;
     * used cache within the pool; MoE layers within bounds */
    Moe__RankStats rs = MOE__RANK_STATS__INIT;
    wb.stats = &rs;
    expect_check("rank_stats empty", &w.base, &lim, OK, NULL);
    uint64_t counts[MOE_MSG_STEP_BOUNDS + 1] = {0};
    counts[0] = 2, counts[MOE_MSG_STEP_BOUNDS] = 1;
    rs.n_step_seconds_counts = MOE_MSG_STEP_BOUNDS;
    rs.step_seconds_counts = counts;
    expect_check("rank_stats bucket count", &w.base, &lim, BAD, "step time buckets");
    rs.n_step_seconds_counts = MOE_MSG_STEP_BOUNDS + 1;
    expect_check("rank_stats without steps", &w.base, &lim, BAD, "steps says");
    rs.has_steps = 1;
    rs.steps = 4;
    expect_check("rank_stats steps", &w.base, &lim, BAD, "hold 3 steps, steps says 4");
    rs.steps = 3;
    expect_check("rank_stats", &w.base, &lim, OK, NULL);
    counts[1] = UINT64_MAX;
    expect_check("rank_stats count overflow", &w.base, &lim, BAD, "overflow");
    counts[1] = 0;
    rs.has_step_seconds_sum = 1;
    rs.step_seconds_sum = NAN;
    expect_check("rank_stats NaN sum", &w.base, &lim, BAD, "step_seconds_sum");
    rs.step_seconds_sum = 0.5;
    rs.has_cache_blocks_used = 1;
    rs.cache_blocks_used = 3;
    expect_check("rank_stats used without total", &w.base, &lim, BAD, "cache_blocks_used 3");
    rs.has_cache_blocks_total = 1;
    rs.cache_blocks_total = 2;
    expect_check("rank_stats used above total", &w.base, &lim, BAD, "above cache_blocks_total 2");
    rs.cache_blocks_total = 3;
    rs.has_prefix_cache_queries = rs.has_prefix_cache_hits = 1;
    rs.prefix_cache_queries = 10;
    rs.prefix_cache_hits = 11;
    expect_check("rank_stats prefix hits above queries", &w.base, &lim, BAD, "above prefix_cache_queries 10");
    rs.prefix_cache_hits = 10;
    rs.has_spec_draft_tokens = rs.has_spec_accepted_tokens = 1;
    rs.spec_draft_tokens = 9;
    rs.spec_accepted_tokens = 10;
    expect_check("rank_stats accepted above drafted", &w.base, &lim, BAD, "above spec_draft_tokens 9");
    rs.spec_accepted_tokens = 5;
    uint64_t per_pos[5] = {3, 1, 0, 0, 0};
    rs.spec_accepted_per_pos = per_pos;
    rs.n_spec_accepted_per_pos = 2;
    expect_check("rank_stats accepted by position", &w.base, &lim, BAD, "sum to 4, not 5");
    rs.n_spec_accepted_per_pos = 5;
    expect_check("rank_stats draft positions", &w.base, &lim, BAD, "5 draft positions");
    per_pos[1] = 2;
    rs.n_spec_accepted_per_pos = 2;
    uint64_t layers[2] = {5, 6};
    rs.n_expert_tokens = 2;
    rs.expert_tokens = layers;
    rs.has_first_moe_layer = 1;
    rs.first_moe_layer = MOE_MSG_MAX_LAYERS - 1;
    expect_check("rank_stats layers", &w.base, &lim, BAD, "go past the limit");
    rs.first_moe_layer = UINT32_MAX;
    expect_check("rank_stats layers wrap", &w.base, &lim, BAD, "go past the limit");
    rs.first_moe_layer = 1;
    expect_check("rank_stats full", &w.base, &lim, OK, NULL);
    /* and through the wire: encoded, decoded, checked */
    {
        uint8_t *buf = NULL;
        size_t blen = 0;
        moe_err eerr;
        CHECK(moe_msg_encode(&w.base, 0, &buf, &blen, &eerr) == MOE_OK);
        ProtobufCMessage *d = NULL;
        CHECK(moe_msg_decode(&moe__worker_msg__descriptor, buf, blen, &lim, &d, &eerr) == MOE__CODE__OK);
        CHECK(d && moe_msg_check(d, &lim, &eerr) == MOE__CODE__OK);
        const Moe__RankStats *back = d ? ((const Moe__WorkerMsg *)d)->heartbeat->stats : NULL;
        CHECK(back && back->steps == 3 && back->n_expert_tokens == 2 && back->expert_tokens[1] == 6 &&
              back->cache_blocks_used == 3 && back->step_seconds_sum == 0.5);
        moe_msg_free(d);
        free(buf);
    }
    CHECK(moe_msg_step_bucket(0) == 0 && moe_msg_step_bucket(0.001) == 0 && moe_msg_step_bucket(0.0011) == 1 &&
          moe_msg_step_bucket(1e9) == MOE_MSG_STEP_BOUNDS && moe_msg_step_bucket(NAN) == MOE_MSG_STEP_BOUNDS);
    wb.stats = NULL;

    /* Field 5 was StepStats, removed and reserved: a peer that still
     * sends it gets a refusal, never a message without a body. */
    {
        ProtobufCMessage *d = NULL;
        moe_err derr = {{0}};
        int rc = moe_msg_decode(&moe__worker_msg__descriptor, "\x2a\x02\x08\x01", 4, &lim, &d, &derr);
        expect_code("old stats body (field 5)", rc, MOE__CODE__MALFORMED_FRAME, derr.msg, "has no body");
        CHECK(d == NULL);
    }

    /* coordinator -> worker */
    Moe__CoordMsg cm = MOE__COORD_MSG__INIT;
    Moe__Assign a = MOE__ASSIGN__INIT;
    Moe__Sampling sp = MOE__SAMPLING__INIT;
    int32_t prompt[4] = {1, 2, 3, 4}, emitted[4] = {5, 6, 7, 8}, stops[17] = {0};
    cm.body_case = MOE__COORD_MSG__BODY_ASSIGN;
    cm.assign = &a;
    a.has_seq_id = 1;
    expect_check("assign with an empty prompt", &cm.base, &lim, MOE__CODE__EMPTY_PROMPT, "assign: prompt is empty");
    a.prompt = prompt;
    a.n_prompt = 4;
    expect_check("assign without max_tokens", &cm.base, &lim, MOE__CODE__BAD_MAX_TOKENS, "max_tokens is missing");
    a.has_max_tokens = 1;
    a.max_tokens = 0;
    expect_check("assign max_tokens 0", &cm.base, &lim, MOE__CODE__BAD_MAX_TOKENS, "max_tokens = 0");
    a.max_tokens = 4;
    a.emitted = emitted;
    a.n_emitted = 4;
    expect_check("assign with all tokens emitted", &cm.base, &lim, BAD, "4 emitted tokens leave nothing");
    a.n_emitted = 3;
    expect_check("assign replay", &cm.base, &lim, OK, NULL);
    a.sampling = &sp;
    sp.has_top_p = 1;
    sp.top_p = 0.0f;
    expect_check("assign top_p 0", &cm.base, &lim, MOE__CODE__BAD_SAMPLING, "top_p = 0");
    sp.top_p = 0.5f;
    a.stop_ids = stops;
    a.n_stop_ids = 17;
    expect_check("assign with 17 stop ids", &cm.base, &lim, BAD, "17 stop ids");
    a.n_stop_ids = 16;
    expect_check("assign with 16 stop ids", &cm.base, &lim, OK, NULL);
    a.has_logprobs = 1;
    a.logprobs = 21;
    expect_check("assign logprobs 21", &cm.base, &lim, BAD, "assign: logprobs = 21 is above the limit of 20");
    a.logprobs = 5;
    expect_check("assign logprobs 5", &cm.base, &lim, OK, NULL);
    a.n_emitted = 0;
    a.max_tokens = 0;
    expect_check("assign max_tokens 0 without prompt_logprobs", &cm.base, &lim, MOE__CODE__BAD_MAX_TOKENS, "0 only scores");
    a.has_prompt_logprobs = a.prompt_logprobs = 1;
    expect_check("assign scoring a prompt", &cm.base, &lim, OK, NULL);
    a.has_logprobs = 0;
    expect_check("assign prompt_logprobs without logprobs", &cm.base, &lim, BAD, "prompt_logprobs needs logprobs");

    Moe__Release rel = MOE__RELEASE__INIT;
    cm.body_case = MOE__COORD_MSG__BODY_RELEASE;
    cm.release = &rel;
    expect_check("release without seq_id", &cm.base, &lim, BAD, "release: seq_id is missing");
    Moe__WorkerHelloReply whr = MOE__WORKER_HELLO_REPLY__INIT;
    cm.body_case = MOE__COORD_MSG__BODY_HELLO_REPLY;
    cm.hello_reply = &whr;
    expect_check("worker_hello_reply without version", &cm.base, &lim, MOE__CODE__BAD_VERSION, "protocol_version");

    /* live placement: SetPlacement and PlacementResult */
    Moe__SetPlacement spl = MOE__SET_PLACEMENT__INIT;
    cm.body_case = MOE__COORD_MSG__BODY_SET_PLACEMENT;
    cm.set_placement = &spl;
    spl.text = (char *)"* 0 0-7\n";
    expect_check("set_placement without id", &cm.base, &lim, BAD, "id is missing or 0");
    spl.has_id = true;
    spl.id = 3;
    expect_check("set_placement", &cm.base, &lim, OK, NULL);
    spl.text = (char *)"";
    expect_check("set_placement with no text", &cm.base, &lim, BAD, "text is empty");
    char *big = malloc(MOE_MSG_MAX_PLACEMENT_BYTES + 2);
    memset(big, '1', MOE_MSG_MAX_PLACEMENT_BYTES + 1);
    big[MOE_MSG_MAX_PLACEMENT_BYTES + 1] = 0;
    spl.text = big;
    expect_check("set_placement too long", &cm.base, &lim, BAD, "longer than");
    free(big);
    Moe__WorkerMsg wpm = MOE__WORKER_MSG__INIT;
    Moe__PlacementResult pr = MOE__PLACEMENT_RESULT__INIT;
    wpm.body_case = MOE__WORKER_MSG__BODY_PLACEMENT_RESULT;
    wpm.placement_result = &pr;
    expect_check("placement_result without id", &wpm.base, &lim, BAD, "id or ok is missing");
    pr.has_id = pr.has_ok = true;
    pr.id = 3;
    expect_check("placement_result", &wpm.base, &lim, OK, NULL);
    pr.has_balancedness_after = true;
    pr.balancedness_after = 1.5;
    expect_check("placement_result balancedness 1.5", &wpm.base, &lim, BAD, "not -1 or in [0, 1]");
    pr.balancedness_after = NAN;
    expect_check("placement_result balancedness NaN", &wpm.base, &lim, BAD, "not -1 or in [0, 1]");
    pr.balancedness_after = -1;
    expect_check("placement_result no load", &wpm.base, &lim, OK, NULL);
}

static void test_context_and_sampler(void)
{
    moe_msg_limits lim;
    moe_msg_limits_default(&lim);
    lim.max_context = 100;
    moe_err err = {{0}};
    expect_code("context: no prompt", moe_msg_check_context(0, 10, &lim, &err), MOE__CODE__EMPTY_PROMPT, err.msg,
                "no tokens");
    expect_code("context: max_tokens 0", moe_msg_check_context(10, 0, &lim, &err), MOE__CODE__BAD_MAX_TOKENS,
                err.msg, "max_tokens = 0");
    expect_code("context: max_tokens -1", moe_msg_check_context(10, -1, &lim, &err), MOE__CODE__BAD_MAX_TOKENS,
                err.msg, "max_tokens = -1");
    expect_code("context: prompt fills it", moe_msg_check_context(100, 1, &lim, &err), MOE__CODE__PROMPT_TOO_LONG,
                err.msg, "the context holds 100");
    expect_code("context: beyond", moe_msg_check_context(60, 41, &lim, &err), MOE__CODE__BAD_MAX_TOKENS, err.msg,
                "60 prompt tokens + max_tokens 41 exceed the context of 100");
    expect_code("context: exactly full", moe_msg_check_context(60, 40, &lim, &err), MOE__CODE__OK, err.msg, NULL);

    /* Wire parameters onto a sampler configuration. */
    moe_sampler_cfg cfg;
    moe_sampler_cfg_default(&cfg);
    cfg.stop[cfg.n_stop++] = 2; /* the model's EOS */
    Moe__Sampling s = MOE__SAMPLING__INIT;
    s.has_temperature = s.has_seed = s.has_top_k = 1;
    s.temperature = 0.8f;
    s.seed = 1234;
    s.top_k = 0; /* set to 0: explicit "off", not "unset" */
    int32_t stop_ids[2] = {2, 7};
    expect_code("sampler cfg", moe_msg_sampler_cfg(&s, stop_ids, 2, &cfg, &err), MOE__CODE__OK, err.msg, NULL);
    CHECK(cfg.temperature == 0.8f && cfg.seed == 1234 && cfg.top_k == 0);
    CHECK(cfg.top_p == 1.0f); /* unset: the default */
    /* through the sampler's table: what the wire set is marked set, the rest is not */
    CHECK(cfg.set == (1u << MOE_SP_TEMP | 1u << MOE_SP_SEED | 1u << MOE_SP_TOP_K));
    CHECK(cfg.n_stop == 2 && cfg.stop[0] == 2 && cfg.stop[1] == 7);
    int32_t many[16];
    for (int i = 0; i < 16; i++) many[i] = 100 + i;
    moe_sampler_cfg before = cfg;
    expect_code("sampler cfg: too many stop ids", moe_msg_sampler_cfg(NULL, many, 16, &cfg, &err),
                MOE__CODE__BAD_SAMPLING, err.msg, "more than 16 stop ids");
    CHECK(memcmp(&before, &cfg, sizeof cfg) == 0); /* untouched on error */
    s.has_top_p = 1;
    s.top_p = NAN;
    expect_code("sampler cfg: NaN", moe_msg_sampler_cfg(&s, NULL, 0, &cfg, &err), MOE__CODE__BAD_SAMPLING, err.msg,
                "top_p is NaN");
}

static void test_names(void)
{
    /* Every code has a distinct name and a number of its own. */
    const ProtobufCEnumDescriptor *d = &moe__code__descriptor;
    CHECK(d->n_values >= 17);
    for (unsigned i = 0; i < d->n_values; i++)
        for (unsigned k = i + 1; k < d->n_values; k++)
            CHECK(d->values[i].value != d->values[k].value && strcmp(d->values[i].name, d->values[k].name) != 0);
    CHECK(strcmp(moe_msg_code_name(MOE__CODE__QUEUE_FULL), "QUEUE_FULL") == 0);
    CHECK(strcmp(moe_msg_code_name(MOE__CODE__OVERSIZED_FRAME), "OVERSIZED_FRAME") == 0);
    CHECK(strcmp(moe_msg_code_name(12345), "UNKNOWN") == 0);
    CHECK(moe_msg_code_http_status(MOE__CODE__QUEUE_FULL) == 429);
    CHECK(moe_msg_code_http_status(MOE__CODE__OVERSIZED_FRAME) == 413);
    CHECK(moe_msg_code_http_status(MOE__CODE__BAD_SAMPLING) == 400);
    CHECK(moe_msg_code_http_status(MOE__CODE__DEADLINE_EXCEEDED) == 504);
    CHECK(strcmp(moe_msg_end_name(MOE__END_REASON__END_LENGTH), "length") == 0);
    CHECK(strcmp(moe_msg_end_name(99), "unknown") == 0);
}

int main(void)
{
    test_generate();
    test_other_client_bodies();
    test_decode();
    test_server_and_worker_bodies();
    test_context_and_sampler();
    test_names();
    printf("proto_msg_test: %d validation/decoding cases\n", n_cases);
    return check_summary("proto_msg_test");
}
