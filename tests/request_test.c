/*
 * request_test.c — the coordinator's request handling without a socket:
 * prompts to tokens and their checks, tokens in → chunks out, a stop
 * string split across tokens (held back, then cut), a non-streaming
 * request, and the end reasons' mapping to the wire and to codes.
 * Uses the tokenizer of the v3_mini fixture.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "chat.h"
#include "gguf.h"
#include "prep.h"
#include "request.h"
#include "tokenizer.h"

static moe_request_model M;

static void spec_text(moe_request_spec *s, const char *text)
{
    moe_request_spec_init(s);
    s->id = "r1";
    s->kind = MOE_PROMPT_TEXT;
    s->text = text;
    s->stream = true;
}

/* Text and ids prompts, the context check, the seed. */
static void test_prompts(void)
{
    moe_request_spec s;
    moe_tokens t = {0};
    moe_request *q = NULL;
    moe_err err = {{0}};

    spec_text(&s, "Hello world");
    CHECK(moe_request_new(&q, &t, &M, &s, &err) == MOE__CODE__OK);
    moe_tokens want = {0};
    CHECK(moe_tokenizer_encode(M.tok, "Hello world", 11, moe_tokenizer_add_bos(M.tok) ? MOE_TOK_BOS : 0, &want, &err) ==
          MOE_OK);
    CHECK(t.n == want.n && t.n > 0 && !memcmp(t.ids, want.ids, t.n * sizeof *t.ids));
    if (moe_tokenizer_add_bos(M.tok)) CHECK(t.ids[0] == moe_tokenizer_bos(M.tok));
    CHECK(q->max_tokens == M.default_max_tokens);
    CHECK(q->sampling.set & (1u << MOE_SP_SEED)); /* drawn here: a replay samples the same */
    moe_request_free(q);

    /* special-token texts are matched, as moe-run --prompt and moe-worker
     * --batch do (moe_tokenizer_encode_prompt) */
    size_t eos_len = 0;
    const char *eos_text = moe_tokenizer_token_str(M.tok, moe_tokenizer_eos(M.tok), &eos_len);
    char sp[128];
    CHECK(eos_text && eos_len > 0 && eos_len < 64);
    snprintf(sp, sizeof sp, "Hi %.*s there", (int)eos_len, eos_text);
    spec_text(&s, sp);
    moe_tokens_clear(&t);
    CHECK(moe_request_new(&q, &t, &M, &s, &err) == MOE__CODE__OK);
    bool has_eos = false;
    for (size_t i = 0; i < t.n; i++) has_eos |= t.ids[i] == moe_tokenizer_eos(M.tok);
    CHECK_MSG(has_eos, "the text of the EOS token was not matched as EOS");
    moe_request_free(q);

    /* ids as given; a seed given is kept */
    const int32_t ids[3] = {5, 6, 7};
    spec_text(&s, NULL);
    s.kind = MOE_PROMPT_IDS;
    s.ids = ids;
    s.n_ids = 3;
    s.max_tokens = 10;
    moe_sampler_cfg_set_seed(&s.sampling, 99);
    moe_tokens_clear(&t);
    CHECK(moe_request_new(&q, &t, &M, &s, &err) == MOE__CODE__OK);
    CHECK(t.n == 3 && t.ids[2] == 7 && q->max_tokens == 10 && q->sampling.seed == 99);
    moe_request_free(q);

    /* beyond the context: refused, and the prompt buffer is as it was */
    s.max_tokens = (int)M.lim.max_context;
    moe_tokens_clear(&t);
    CHECK(moe_request_new(&q, &t, &M, &s, &err) == MOE__CODE__BAD_MAX_TOKENS && q == NULL && t.n == 0);
    CHECK_CONTAINS(err.msg, "exceed the context");
    s.n_ids = 0;
    s.max_tokens = 1;
    CHECK(moe_request_new(&q, &t, &M, &s, &err) == MOE__CODE__EMPTY_PROMPT && q == NULL);

    /* chat: refused without a template, rendered with one */
    moe_chat_msg msg = {.role = "user", .content = "hi", .content_len = 2};
    spec_text(&s, NULL);
    s.kind = MOE_PROMPT_CHAT;
    s.chat = &msg;
    s.n_chat = 1;
    s.add_generation_prompt = true;
    moe_request_model nochat = M;
    nochat.chat = NULL;
    CHECK(moe_request_new(&q, &t, &nochat, &s, &err) == MOE__CODE__BAD_REQUEST && q == NULL);
    CHECK_CONTAINS(err.msg, "no chat template");
    CHECK(moe_request_new(&q, &t, &M, &s, &err) == MOE__CODE__OK);
    moe_tokens chat = {0};
    CHECK(moe_chat_tokenize(M.chat, M.tok, &msg, 1, true, &chat, &err) == MOE_OK);
    CHECK(t.n == chat.n && !memcmp(t.ids, chat.ids, t.n * sizeof *t.ids));
    moe_request_free(q);
    moe_tokens_free(&chat);
    moe_tokens_free(&want);
    moe_tokens_free(&t);
}

/* Feeds out[0..n) one token at a time, as a rank would, collecting what
 * the request hands out into got.  Returns how many tokens were fed. */
static int feed(moe_request *q, const int32_t *ids, int n, int stop_after, char *got, size_t cap, int *n_out)
{
    *n_out = 0;
    int fed = 0;
    for (int i = 0; i < n && q->end == MOE_END_NONE; i++) {
        *n_out = ++fed;
        moe_request_chunk ch;
        if (moe_request_next_chunk(q, ids, n_out, &ch)) {
            CHECK(ch.index == q->n_sent && ch.n_ids == *n_out - ch.index && strlen(ch.text) == ch.text_len);
            CHECK(strlen(got) + ch.text_len < cap);
            strcat(got, ch.text);
            moe_request_chunk_sent(q, &ch);
        }
        if (i == stop_after) return fed;
    }
    return fed;
}

/* A stop string that starts in one token and ends in the next: the text is
 * held back while it could still become the stop string, then cut, and the
 * tokens after the one that completed it are not the client's. */
static void test_stop_split(void)
{
    const char *text = " the quick brown fox jumps over the lazy dog and keeps running far away";
    moe_tokens t = {0};
    moe_err err = {{0}};
    CHECK(moe_tokenizer_encode(M.tok, text, strlen(text), 0, &t, &err) == MOE_OK);
    /* The stop string: the last byte of token k and the first of token
     * k+1, at a boundary with two bytes or more on each side, where it
     * occurs for the first time. */
    size_t off = 0, k = 0, len_k = 0, len_next = 0, at = 0;
    char stop[3] = {0};
    for (; k + 2 < t.n; k++, off += len_k) {
        moe_tokenizer_token_bytes(M.tok, t.ids[k], &len_k);
        moe_tokenizer_token_bytes(M.tok, t.ids[k + 1], &len_next);
        if (k == 0 || len_k < 2 || len_next < 2) continue;
        at = off + len_k - 1;
        stop[0] = text[at];
        stop[1] = text[at + 1];
        if (strstr(text, stop) == text + at) break;
    }
    CHECK_MSG(k + 2 < t.n, "no boundary found in %zu tokens", t.n);
    if (k + 2 >= t.n) return;
    const char *stops[1] = {stop};
    moe_request_spec s;
    spec_text(&s, "x");
    s.stop = stops;
    s.n_stop = 1;
    moe_tokens prompt = {0};
    moe_request *q;
    CHECK(moe_request_new(&q, &prompt, &M, &s, &err) == MOE__CODE__OK);

    char got[512] = "";
    int n_out;
    /* through token k: its last byte could start the stop string, so it waits */
    feed(q, t.ids, (int)t.n, (int)k, got, sizeof got, &n_out);
    CHECK(q->end == MOE_END_NONE && n_out == (int)k + 1);
    CHECK_MSG(strlen(got) == at && !strncmp(got, text, at), "held back: got \"%s\", want %zu bytes", got, at);
    CHECK(q->n_sent == n_out); /* ids go out even while their text waits */
    /* token k+1 completes it: the end, with the text before it */
    moe_request_chunk ch;
    n_out = (int)t.n; /* the rank sent more after it */
    CHECK(moe_request_next_chunk(q, t.ids, &n_out, &ch));
    CHECK(q->end == MOE_END_STOP);
    CHECK_MSG(n_out == (int)k + 2, "n_out %d, want %zu", n_out, k + 2);
    CHECK(ch.index == (int)k + 1 && ch.n_ids == 1 && ch.text_len == 0);
    moe_request_chunk_sent(q, &ch);
    CHECK(moe_request_finish_due(q, n_out));
    CHECK(!moe_request_next_chunk(q, t.ids, &n_out, &ch)); /* nothing more */
    moe_request_outcome f;
    moe_request_finish(q, 1, n_out, &f);
    CHECK(f.end == MOE_END_STOP && !strcmp(f.reason_name, "stop") && f.code == MOE__CODE__OK);
    CHECK(f.completion_tokens == (int)k + 2 && f.prompt_tokens == 1);
    moe_request_free(q);

    /* without the stop string everything comes out, byte for byte */
    spec_text(&s, "x");
    CHECK(moe_request_new(&q, &prompt, &M, &s, &err) == MOE__CODE__OK);
    got[0] = 0;
    feed(q, t.ids, (int)t.n, -1, got, sizeof got, &n_out);
    CHECK(!strcmp(got, text));
    moe_request_free(q);
    moe_tokens_free(&prompt);
    moe_tokens_free(&t);
}

/* A request with stop strings that ends on a stop token (not on one of its
 * strings) while the decoder holds an unfinished UTF-8 sequence: those bytes
 * still go out (as U+FFFD), as they do without stop strings. */
static void test_stop_token_flush(void)
{
    int32_t lead = -1;
    for (int32_t id = 0; id < moe_tokenizer_n_vocab(M.tok) && lead < 0; id++) {
        size_t len;
        const char *b = moe_tokenizer_token_bytes(M.tok, id, &len);
        if (len == 1 && (unsigned char)b[0] >= 0xE0 && (unsigned char)b[0] <= 0xEF) lead = id;
    }
    CHECK_MSG(lead >= 0, "the vocabulary has no lone 3-byte lead byte");
    if (lead < 0) return;
    static const char *const stops[] = {"never said"};
    for (int with_stops = 0; with_stops < 2; with_stops++) {
        moe_request_spec s;
        spec_text(&s, "x");
        s.stop = with_stops ? stops : NULL;
        s.n_stop = with_stops ? 1 : 0;
        moe_tokens prompt = {0};
        moe_request *q;
        moe_err err = {{0}};
        CHECK(moe_request_new(&q, &prompt, &M, &s, &err) == MOE__CODE__OK);
        char got[64] = "";
        int n_out = 0;
        feed(q, &lead, 1, -1, got, sizeof got, &n_out);
        CHECK(!strcmp(got, "")); /* an unfinished sequence waits */
        moe_request_end(q, MOE_END_STOP, 0, NULL); /* the rank sampled a stop token */
        moe_request_chunk ch;
        CHECK(moe_request_next_chunk(q, &lead, &n_out, &ch));
        CHECK_MSG(!strcmp(ch.text, "\xEF\xBF\xBD"), "stop token %s stop strings: got \"%s\"",
                  with_stops ? "with" : "without", ch.text);
        moe_request_free(q);
        moe_tokens_free(&prompt);
    }
}

/* Not streaming: nothing until the end, then one chunk with everything. */
static void test_no_stream(void)
{
    const char *text = " one two three";
    moe_tokens t = {0}, prompt = {0};
    moe_err err = {{0}};
    CHECK(moe_tokenizer_encode(M.tok, text, strlen(text), 0, &t, &err) == MOE_OK);
    moe_request_spec s;
    spec_text(&s, "x");
    s.stream = false;
    moe_request *q;
    CHECK(moe_request_new(&q, &prompt, &M, &s, &err) == MOE__CODE__OK);
    moe_request_chunk ch;
    int n_out = (int)t.n;
    CHECK(!moe_request_next_chunk(q, t.ids, &n_out, &ch));
    CHECK(!moe_request_finish_due(q, n_out));
    moe_request_end(q, MOE_END_LENGTH, 0, NULL);
    moe_request_end(q, MOE_END_CANCELLED, 0, "later"); /* the first reason wins */
    CHECK(moe_request_next_chunk(q, t.ids, &n_out, &ch));
    CHECK(ch.index == 0 && ch.n_ids == (int)t.n && !strcmp(ch.text, text));
    CHECK(!moe_request_finish_due(q, n_out)); /* not before the chunk is out */
    moe_request_chunk_sent(q, &ch);
    CHECK(moe_request_finish_due(q, n_out));
    moe_request_outcome f;
    moe_request_finish(q, (int)prompt.n, n_out, &f);
    CHECK(f.end == MOE_END_LENGTH && f.wire_reason == MOE__END_REASON__END_LENGTH && f.code == MOE__CODE__OK);
    CHECK(f.message == NULL);
    moe_request_free(q);
    moe_tokens_free(&prompt);
    moe_tokens_free(&t);
}

/* End reasons: to the wire and back, names, and the codes a Finish carries. */
static void test_end_reasons(void)
{
    static const struct {
        moe_end_reason why;
        const char *name;
    } all[] = {{MOE_END_STOP, "stop"},
               {MOE_END_LENGTH, "length"},
               {MOE_END_CANCELLED, "cancelled"},
               {MOE_END_DEADLINE, "deadline"},
               {MOE_END_ERROR, "error"}};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        CHECK(moe_request_end_from_wire(true, moe_request_end_to_wire(all[i].why)) == all[i].why);
        CHECK(!strcmp(moe_request_end_name(all[i].why), all[i].name));
        CHECK(!strcmp(moe_msg_end_name(moe_request_end_to_wire(all[i].why)), all[i].name));
    }
    CHECK(moe_request_end_from_wire(false, MOE__END_REASON__END_STOP) == MOE_END_ERROR); /* no reason given */
    CHECK(moe_request_end_from_wire(true, 99) == MOE_END_ERROR);

    moe_request_spec s;
    moe_tokens prompt = {0};
    moe_err err = {{0}};
    spec_text(&s, "x");
    moe_request *q;
    moe_request_outcome f;
    CHECK(moe_request_new(&q, &prompt, &M, &s, &err) == MOE__CODE__OK);
    moe_request_end(q, MOE_END_DEADLINE, 0, "deadline exceeded");
    moe_request_finish(q, 1, 0, &f);
    CHECK(f.code == MOE__CODE__DEADLINE_EXCEEDED && f.message && !strcmp(f.message, "deadline exceeded"));
    moe_request_free(q);
    CHECK(moe_request_new(&q, &prompt, &M, &s, &err) == MOE__CODE__OK);
    moe_request_end(q, MOE_END_ERROR, MOE__CODE__WORKER_LOST, "worker rank 1 was restarted");
    moe_request_finish(q, 1, 0, &f);
    CHECK(f.code == MOE__CODE__WORKER_LOST && !strcmp(f.message, "worker rank 1 was restarted"));
    CHECK(!strcmp(f.reason_name, "error"));
    moe_request_free(q);
    moe_tokens_free(&prompt);
}

/* Logprobs: the spec's checks, the scheduler's records into chunks and the
 * outcome, prompt positions kept in order only, max_tokens 0 scoring,
 * ignore_eos and min_tokens into what the rank runs. */
static void test_logprobs(void)
{
    moe_request_spec s;
    moe_tokens t = {0};
    moe_request *q = NULL;
    moe_err err = {{0}};
    const int32_t ids[4] = {5, 6, 7, 8};
    spec_text(&s, NULL);
    s.kind = MOE_PROMPT_IDS;
    s.ids = ids;
    s.n_ids = 4;
    s.max_tokens = 3;
    s.logprobs = 21;
    CHECK(moe_request_new(&q, &t, &M, &s, &err) == MOE__CODE__BAD_REQUEST && q == NULL);
    CHECK_CONTAINS(err.msg, "logprobs = 21 is above the limit of 20");
    s.logprobs = -1;
    s.prompt_logprobs = true;
    CHECK(moe_request_new(&q, &t, &M, &s, &err) == MOE__CODE__BAD_REQUEST);
    CHECK_CONTAINS(err.msg, "need logprobs");
    s.prompt_logprobs = false;
    s.max_tokens = 0;
    CHECK(moe_request_new(&q, &t, &M, &s, &err) == MOE__CODE__BAD_REQUEST);
    CHECK_CONTAINS(err.msg, "max_tokens 0");
    s.max_tokens = 3;
    s.min_tokens = 4;
    CHECK(moe_request_new(&q, &t, &M, &s, &err) == MOE__CODE__BAD_REQUEST);
    CHECK_CONTAINS(err.msg, "min_tokens = 4");
    s.min_tokens = 2;
    s.ignore_eos = true;
    s.logprobs = 2;
    s.prompt_logprobs = true;
    CHECK(moe_request_new(&q, &t, &M, &s, &err) == MOE__CODE__OK);
    CHECK(q->sampling.min_tokens == 2 && q->sampling.ignore_eos && (q->sampling.set >> MOE_SP_MIN_TOKENS & 1) &&
          (q->sampling.set >> MOE_SP_IGNORE_EOS & 1));

    /* the scheduler's record, as the worker side fills it */
    moe_sched *sc = NULL;
    moe_sched_limits sl = {.max_queue = 4, .max_running = 4};
    CHECK(moe_sched_init(&sc, 1, &sl, &err) == MOE_OK);
    moe_sched_rank_update(sc, 0, 1000);
    moe_req *r = NULL;
    bool full = false;
    CHECK(moe_sched_submit(sc, q, t.ids, (int)t.n, q->max_tokens, 0, &r, &full, &err) == MOE_OK);
    moe_sched_want_logprobs(r, q->logprobs, q->prompt_logprobs);
    moe_request_attach(q, r);
    moe_req *placed[1];
    CHECK(moe_sched_place(sc, placed, 1) == 1);
    moe_token_logprobs lp = {.id = 6, .logprob = -1.0f, .n_top = 2, .top = {{9, -0.5f}, {6, -1.0f}}};
    CHECK(!moe_sched_prompt_logprob(sc, r->id, 2, &lp)); /* position 1 is due first */
    CHECK(moe_sched_prompt_logprob(sc, r->id, 1, &lp));
    CHECK(!moe_sched_prompt_logprob(sc, r->id, 1, &lp)); /* a replay's repeat */
    lp.id = 99;
    CHECK(!moe_sched_prompt_logprob(sc, r->id, 2, &lp)); /* not the prompt's token */
    CHECK(!moe_sched_prompt_logprobs_done(r));
    lp.id = 7;
    CHECK(moe_sched_prompt_logprob(sc, r->id, 2, &lp));
    lp.id = 8;
    lp.logprob = -3.0f;
    CHECK(moe_sched_prompt_logprob(sc, r->id, 3, &lp));
    CHECK(!moe_sched_prompt_logprob(sc, r->id, 4, &lp)); /* past the prompt (a replay's emitted tokens) */
    CHECK(moe_sched_prompt_logprobs_done(r));
    moe_token_logprobs tk = {.id = 0, .logprob = -0.25f, .n_top = 1, .top = {{300, -0.25f}}};
    CHECK(moe_sched_token(sc, r->id, 0, 300, &tk));
    CHECK(moe_sched_token(sc, r->id, 1, 301, NULL)); /* none brought: NaN, never made up */
    moe_request_chunk ch;
    CHECK(moe_request_next_chunk(q, r->out, &r->n_out, &ch));
    CHECK(ch.n_ids == 2 && ch.logprobs && ch.logprobs[0].id == 300 && ch.logprobs[0].logprob == -0.25f &&
          ch.logprobs[0].n_top == 1 && ch.logprobs[1].id == 301 && ch.logprobs[1].logprob != ch.logprobs[1].logprob);
    moe_request_chunk_sent(q, &ch);
    CHECK(moe_sched_token(sc, r->id, 2, 302, &tk));
    CHECK(moe_request_next_chunk(q, r->out, &r->n_out, &ch));
    CHECK(ch.index == 2 && ch.n_ids == 1 && ch.logprobs && ch.logprobs[0].id == 302);
    moe_request_chunk_sent(q, &ch);
    moe_request_end(q, MOE_END_LENGTH, 0, NULL);
    moe_request_outcome f;
    moe_request_finish(q, r->n_prompt, r->n_out, &f);
    CHECK(f.prompt_ids && f.prompt_ids[3] == 8 && f.prompt_logprobs);
    CHECK(f.prompt_logprobs[0].n_top == 0 && f.prompt_logprobs[0].logprob != f.prompt_logprobs[0].logprob);
    CHECK(f.prompt_logprobs[3].id == 8 && f.prompt_logprobs[3].logprob == -3.0f && f.prompt_logprobs[1].n_top == 2);
    moe_sched_end(sc, r, MOE_END_LENGTH, NULL);
    moe_sched_forget(sc, r);
    moe_request_free(q);

    /* scoring: max_tokens 0, no chunk of ids, the prompt's logprobs */
    s.max_tokens = 0;
    s.min_tokens = 0;
    moe_tokens_clear(&t);
    CHECK(moe_request_new(&q, &t, &M, &s, &err) == MOE__CODE__OK && q->max_tokens == 0);
    CHECK(moe_sched_submit(sc, q, t.ids, (int)t.n, 0, 0, &r, &full, &err) == MOE_OK);
    moe_sched_want_logprobs(r, q->logprobs, q->prompt_logprobs);
    moe_request_attach(q, r);
    CHECK(moe_sched_place(sc, placed, 1) == 1);
    CHECK(!moe_sched_token(sc, r->id, 0, 300, &tk)); /* no token fits */
    moe_request_end(q, MOE_END_LENGTH, 0, NULL);
    moe_request_finish(q, r->n_prompt, r->n_out, &f);
    CHECK(f.completion_tokens == 0 && !strcmp(f.reason_name, "length") && f.prompt_logprobs == NULL); /* none came */
    moe_sched_end(sc, r, MOE_END_LENGTH, NULL);
    moe_sched_forget(sc, r);
    moe_request_free(q);

    /* a long non-streaming answer with logprobs: chunks of at most 1024 ids
     * (each fits a frame), the text whole in the last */
    moe_request_model big = M;
    big.lim.max_context = 4096;
    s.max_tokens = 2500;
    s.stream = false;
    s.prompt_logprobs = false;
    moe_tokens_clear(&t);
    CHECK(moe_request_new(&q, &t, &big, &s, &err) == MOE__CODE__OK);
    CHECK(moe_sched_submit(sc, q, t.ids, (int)t.n, 2500, 0, &r, &full, &err) == MOE_OK);
    moe_sched_want_logprobs(r, q->logprobs, false);
    moe_request_attach(q, r);
    moe_sched_rank_update(sc, 0, 10000);
    CHECK(moe_sched_place(sc, placed, 1) == 1);
    for (int i = 0; i < 2500; i++) CHECK_MSG(moe_sched_token(sc, r->id, i, 300 + i % 50, &tk), "token %d", i);
    CHECK(!moe_request_next_chunk(q, r->out, &r->n_out, &ch)); /* not streamed: nothing before the end */
    moe_request_end(q, MOE_END_LENGTH, 0, NULL);
    int sizes[4] = {0}, n_chunks = 0;
    size_t text_at_last = 0, text_before = 0;
    while (moe_request_next_chunk(q, r->out, &r->n_out, &ch) && n_chunks < 4) {
        CHECK(ch.logprobs && ch.index == (n_chunks ? sizes[0] * n_chunks : 0));
        sizes[n_chunks++] = ch.n_ids;
        if (ch.index + ch.n_ids == 2500) text_at_last = ch.text_len;
        else text_before += ch.text_len;
        moe_request_chunk_sent(q, &ch);
    }
    CHECK(n_chunks == 3 && sizes[0] == 1024 && sizes[1] == 1024 && sizes[2] == 452);
    CHECK(text_before == 0 && text_at_last > 0 && moe_request_finish_due(q, r->n_out));
    moe_sched_end(sc, r, MOE_END_LENGTH, NULL);
    moe_sched_forget(sc, r);
    moe_request_free(q);
    moe_sched_free(sc);
    moe_tokens_free(&t);
}

/* The prompt pool (prep.c) gives what moe_request_new on the loop gives,
 * from its own copy of the spec (the caller's buffers are scribbled over
 * right after submit), refuses past max_jobs, wakes the loop's poll. */
static void test_prep(void)
{
    moe_err err;
    moe_prep *p;
    CHECK(moe_prep_init(&p, 0, 4, &err) != 0);
    CHECK(moe_prep_init(&p, 2, 3, &err) == 0);
    char text[256], content[2][64], stop[16];
    snprintf(text, sizeof text, "Hello world, hello tokens");
    snprintf(content[0], sizeof content[0], "You are terse.");
    snprintf(content[1], sizeof content[1], "Say hi");
    snprintf(stop, sizeof stop, "bye");
    moe_chat_msg msgs[2] = {{.role = "system", .content = content[0], .content_len = strlen(content[0])},
                            {.role = "user", .content = content[1], .content_len = strlen(content[1])}};
    const char *stops[1] = {stop};
    moe_request_spec sp[3];
    for (int i = 0; i < 3; i++) moe_request_spec_init(&sp[i]);
    sp[0].id = "t";
    sp[0].kind = MOE_PROMPT_TEXT;
    sp[0].text = text;
    sp[0].stop = stops;
    sp[0].n_stop = 1;
    sp[1].id = "c";
    sp[1].kind = MOE_PROMPT_CHAT;
    sp[1].chat = msgs;
    sp[1].n_chat = 2;
    sp[1].add_generation_prompt = true;
    char *longer = malloc(4001);
    memset(longer, 'a', 4000);
    longer[4000] = 0;
    sp[2].id = "long";
    sp[2].kind = MOE_PROMPT_TEXT;
    sp[2].text = longer; /* far beyond max_context 64 */
    CHECK(moe_request_spec_bytes(&sp[0]) == strlen(text));
    CHECK(moe_request_spec_bytes(&sp[1]) == strlen(content[0]) + strlen(content[1]) + strlen("system") + strlen("user"));
    /* what the loop would make */
    moe_tokens want[2] = {{0}};
    for (int i = 0; i < 2; i++) {
        moe_request *q;
        CHECK(moe_request_new(&q, &want[i], &M, &sp[i], &err) == MOE__CODE__OK);
        moe_request_free(q);
    }
    moe_prep_job *j[3];
    for (int i = 0; i < 3; i++) CHECK((j[i] = moe_prep_submit(p, &sp[i], &M, &sp[i])) != NULL);
    CHECK(moe_prep_submit(p, &sp[0], &M, NULL) == NULL && moe_prep_pending(p) == 3);
    memset(text, 'x', sizeof text - 1); /* the jobs have their own copies */
    memset(content, 'y', sizeof content);
    memset(stop, 'z', sizeof stop - 1);
    memset(longer, 'b', 4000);
    int got = 0;
    const double t0 = moe_now();
    while (got < 3 && moe_now() - t0 < 20) {
        struct pollfd pf = {.fd = moe_prep_fd(p), .events = POLLIN};
        if (poll(&pf, 1, 1000) != 1) continue;
        for (moe_prep_job *d; (d = moe_prep_done(p));) {
            const moe_request_spec *which = d->owner;
            const int k = (int)(which - sp);
            if (k < 2) {
                CHECK(d->code == MOE__CODE__OK && d->q && d->toks.n == want[k].n &&
                      !memcmp(d->toks.ids, want[k].ids, want[k].n * sizeof *want[k].ids));
                CHECK(!strcmp(d->q->id, k ? "c" : "t"));
                if (k == 0) CHECK(d->q->n_stop == 1 && !strcmp(d->q->stop[0], "bye"));
            } else CHECK(d->code == MOE__CODE__PROMPT_TOO_LONG && !d->q);
            moe_prep_job_free(p, d);
            got++;
        }
    }
    CHECK(got == 3 && moe_prep_pending(p) == 0);
    /* freed with a job still in the pool: nothing leaks (ASan) */
    snprintf(text, sizeof text, "left behind");
    CHECK(moe_prep_submit(p, &sp[0], &M, NULL) != NULL);
    moe_prep_free(p);
    for (int i = 0; i < 2; i++) moe_tokens_free(&want[i]);
    free(longer);
    printf("request: large prompts prepared in the pool match the loop's, from their own copy\n");
}

int main(void)
{
    moe_gguf *g = NULL;
    moe_tokenizer *tok = NULL;
    moe_chat *chat = NULL;
    moe_err err = {{0}};
    if (moe_gguf_open(&g, fixture_path("models/v3_mini_f32.gguf"), &err) || moe_tokenizer_load(&tok, g, &err) ||
        moe_chat_init_format(&chat, MOE_CHAT_DEEPSEEK_V3, tok, &err)) {
        fprintf(stderr, "request_test: %s\n", err.msg);
        return 1;
    }
    M.tok = tok;
    M.chat = chat;
    M.default_max_tokens = 16;
    moe_msg_limits_default(&M.lim);
    M.lim.vocab_size = (uint32_t)moe_tokenizer_n_vocab(tok);
    M.lim.max_context = 64;
    test_prompts();
    test_stop_split();
    test_stop_token_flush();
    test_no_stream();
    test_end_reasons();
    test_logprobs();
    test_prep();
    moe_chat_free(chat);
    moe_tokenizer_free(tok);
    moe_gguf_close(g);
    return check_summary("request_test");
}
