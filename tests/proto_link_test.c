/*
 * proto_link_test — the ZMQ link over real sockets (ipc:// in a per-test
 * temporary folder, and tcp://127.0.0.1 on an ephemeral port):
 *   - every message type of the four envelopes makes the round trip, field
 *     for field (the received message re-encodes to the same bytes), with
 *     unset optional fields still unset;
 *   - a malformed frame, an oversized frame and a wrong protocol version
 *     each get their own code, and a valid message right after succeeds;
 *   - ROUTER_MANDATORY: sending to an unknown identity is an error;
 *   - a reader that does not read gives back-pressure (MOE_LINK_AGAIN), and
 *     every message accepted before it arrives, in order;
 *   - an outbox (outbox.h) in front of such a reader never blocks: frames
 *     wait in it up to its bound, the next one is refused (MOE_OUTBOX_FULL),
 *     and once the reader reads, flushes deliver every accepted frame in
 *     order; a peer that is not there is MOE_LINK_UNREACHABLE;
 *   - DEALER identities, poll timeouts, endpoint helpers.
 * Nothing sleeps for readiness: every wait is a poll with a timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "link.h"
#include "outbox.h"

#define WAIT_MS 10000 /* the longest any single wait may take before the test fails */

static int n_roundtrips;

/* Waits for one frame on l (fails the check on timeout). */
static bool recv_one(moe_link *l, moe_link_in *in, moe_err *err)
{
    moe_link_poll_item it = {.link = l};
    int n = moe_link_poll(&it, 1, WAIT_MS, err);
    CHECK_MSG(n == 1, "poll: %d (%s)", n, n < 0 ? err->msg : "timeout");
    if (n != 1) return false;
    int rc = moe_link_recv(l, in, MOE_LINK_DONTWAIT, err);
    CHECK_MSG(rc == MOE_OK, "recv: %d %s", rc, err->msg);
    return rc == MOE_OK;
}

/* Sends m over from (to peer, if from is a ROUTER), receives it on dest and
 * checks it arrives intact: valid, and re-encoding to the same bytes. */
static ProtobufCMessage *trip(moe_link *from, const moe_link_peer *to, moe_link *dest, const ProtobufCMessage *m,
                              const char *name, moe_link_peer *sender)
{
    moe_err err = {{0}};
    int rc = moe_link_send(from, to, m, 0, &err);
    CHECK_MSG(rc == MOE_OK, "%s: send: %d %s", name, rc, err.msg);
    moe_link_in in;
    if (!recv_one(dest, &in, &err)) return NULL;
    CHECK_MSG(in.code == MOE__CODE__OK, "%s: received with code %s: %s", name, moe_msg_code_name(in.code), err.msg);
    uint8_t *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    CHECK(moe_msg_encode(m, 0, &a, &la, &err) == MOE_OK);
    if (in.msg) CHECK(moe_msg_encode(in.msg, 0, &b, &lb, &err) == MOE_OK);
    CHECK_MSG(in.msg && la == lb && la == in.len && memcmp(a, b, la) == 0, "%s: differs after the trip", name);
    free(a);
    free(b);
    if (sender) *sender = in.from;
    n_roundtrips++;
    return in.msg; /* the caller frees it */
}

/* ---- message builders -------------------------------------------------------- */

static Moe__ClientMsg client_hello(void)
{
    static Moe__Hello h = MOE__HELLO__INIT;
    h.has_protocol_version = 1;
    h.protocol_version = MOE_PROTO_VERSION;
    h.client_name = (char *)"proto_link_test";
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_HELLO;
    m.hello = &h;
    return m;
}

static void test_client_roundtrips(moe_link *srv, moe_link *cli, moe_link_peer *peer)
{
    moe_err err;
    /* hello (also tells the ROUTER side who the client is) */
    Moe__ClientMsg m = client_hello();
    moe_msg_free(trip(cli, NULL, srv, &m.base, "hello", peer));

    /* generate, text prompt, every field set */
    static Moe__Sampling s = MOE__SAMPLING__INIT;
    s.has_temperature = s.has_top_p = s.has_top_k = s.has_min_p = s.has_repetition_penalty = s.has_repeat_last_n =
        s.has_seed = 1;
    s.temperature = 0.7f;
    s.top_p = 0.9f;
    s.top_k = 40;
    s.min_p = 0.05f;
    s.repetition_penalty = 1.1f;
    s.repeat_last_n = 64;
    s.seed = 0xdeadbeefcafeULL;
    static char *stops[2] = {"\n\n", "User:"};
    static int32_t stop_ids[2] = {1, 2};
    static Moe__GenerateRequest g = MOE__GENERATE_REQUEST__INIT;
    g.request_id = (char *)"gen-1";
    g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_TEXT;
    g.text = (char *)"The capital of France is";
    g.sampling = &s;
    g.has_max_tokens = 1;
    g.max_tokens = 32;
    g.n_stop = 2;
    g.stop = stops;
    g.n_stop_ids = 2;
    g.stop_ids = stop_ids;
    g.has_stream = 1;
    g.stream = 0;
    g.has_deadline_ms = 1;
    g.deadline_ms = 5000;
    m.body_case = MOE__CLIENT_MSG__BODY_GENERATE;
    m.generate = &g;
    ProtobufCMessage *r = trip(cli, NULL, srv, &m.base, "generate text", NULL);
    if (r) {
        Moe__GenerateRequest *rg = ((Moe__ClientMsg *)r)->generate;
        CHECK(rg->sampling->has_top_p && rg->sampling->top_p == 0.9f && rg->sampling->seed == 0xdeadbeefcafeULL);
        CHECK(rg->has_stream && !rg->stream && strcmp(rg->stop[1], "User:") == 0);
    }
    moe_msg_free(r);

    /* generate, ids prompt, sampling partly set: presence survives */
    static Moe__Sampling s2 = MOE__SAMPLING__INIT;
    s2.has_top_k = 1;
    s2.top_k = 0; /* explicitly 0, not unset */
    static int32_t ids[5] = {10, 20, 30, 40, 50};
    static Moe__TokenIds ti = MOE__TOKEN_IDS__INIT;
    ti.n_ids = 5;
    ti.ids = ids;
    static Moe__GenerateRequest g2 = MOE__GENERATE_REQUEST__INIT;
    g2.request_id = (char *)"gen-2";
    g2.prompt_case = MOE__GENERATE_REQUEST__PROMPT_IDS;
    g2.ids = &ti;
    g2.sampling = &s2;
    m.generate = &g2;
    r = trip(cli, NULL, srv, &m.base, "generate ids", NULL);
    if (r) {
        Moe__GenerateRequest *rg = ((Moe__ClientMsg *)r)->generate;
        CHECK(rg->prompt_case == MOE__GENERATE_REQUEST__PROMPT_IDS && rg->ids->n_ids == 5 && rg->ids->ids[4] == 50);
        CHECK(!rg->sampling->has_top_p && !rg->sampling->has_temperature); /* unset means default */
        CHECK(rg->sampling->has_top_k && rg->sampling->top_k == 0);
        CHECK(!rg->has_max_tokens && !rg->has_stream && rg->stream); /* proto default: stream */
    }
    moe_msg_free(r);

    /* generate, chat prompt */
    static Moe__ChatMessage cm[2] = {MOE__CHAT_MESSAGE__INIT, MOE__CHAT_MESSAGE__INIT};
    static Moe__ChatMessage *cmp[2] = {&cm[0], &cm[1]};
    cm[0].role = (char *)"system";
    cm[0].content = (char *)"Be brief.";
    cm[1].role = (char *)"user";
    cm[1].content = (char *)"Why is the sky blue? \xe2\x98\x80";
    static Moe__Chat chat = MOE__CHAT__INIT;
    chat.n_messages = 2;
    chat.messages = cmp;
    chat.has_add_generation_prompt = 1;
    chat.add_generation_prompt = 1;
    static Moe__GenerateRequest g3 = MOE__GENERATE_REQUEST__INIT;
    g3.request_id = (char *)"gen-3";
    g3.prompt_case = MOE__GENERATE_REQUEST__PROMPT_CHAT;
    g3.chat = &chat;
    m.generate = &g3;
    r = trip(cli, NULL, srv, &m.base, "generate chat", NULL);
    if (r) CHECK(strcmp(((Moe__ClientMsg *)r)->generate->chat->messages[1]->role, "user") == 0);
    moe_msg_free(r);

    static Moe__Cancel c = MOE__CANCEL__INIT;
    c.request_id = (char *)"gen-1";
    m.body_case = MOE__CLIENT_MSG__BODY_CANCEL;
    m.cancel = &c;
    moe_msg_free(trip(cli, NULL, srv, &m.base, "cancel", NULL));

    static Moe__Heartbeat hb = MOE__HEARTBEAT__INIT;
    hb.has_seq = 1;
    hb.seq = 77;
    m.body_case = MOE__CLIENT_MSG__BODY_HEARTBEAT;
    m.heartbeat = &hb;
    moe_msg_free(trip(cli, NULL, srv, &m.base, "client heartbeat", NULL));
    (void)err;
}

static void test_server_roundtrips(moe_link *srv, moe_link *cli, const moe_link_peer *peer)
{
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;

    static Moe__HelloReply hr = MOE__HELLO_REPLY__INIT;
    hr.has_protocol_version = hr.has_vocab_size = hr.has_max_context = 1;
    hr.protocol_version = MOE_PROTO_VERSION;
    hr.model = (char *)"DeepSeek-V2-Lite-Chat";
    hr.vocab_size = 102400;
    hr.max_context = 32768;
    hr.server_name = (char *)"moe-coordinator";
    m.body_case = MOE__SERVER_MSG__BODY_HELLO_REPLY;
    m.hello_reply = &hr;
    moe_msg_free(trip(srv, peer, cli, &m.base, "hello_reply", NULL));

    static int32_t ids[3] = {5, 6, 7};
    static Moe__TokenChunk ch = MOE__TOKEN_CHUNK__INIT;
    ch.request_id = (char *)"gen-1";
    ch.n_ids = 3;
    ch.ids = ids;
    ch.text = (char *)" Paris.";
    ch.has_index = 1;
    ch.index = 12;
    m.body_case = MOE__SERVER_MSG__BODY_CHUNK;
    m.chunk = &ch;
    moe_msg_free(trip(srv, peer, cli, &m.base, "chunk", NULL));

    static Moe__Usage u = MOE__USAGE__INIT;
    u.has_prompt_tokens = u.has_completion_tokens = 1;
    u.prompt_tokens = 9;
    u.completion_tokens = 15;
    static Moe__Finish f = MOE__FINISH__INIT;
    f.request_id = (char *)"gen-1";
    f.has_reason = 1;
    f.reason = MOE__END_REASON__END_ERROR;
    f.usage = &u;
    f.has_code = 1;
    f.code = MOE__CODE__WORKER_LOST;
    f.message = (char *)"rank 1 stopped answering";
    m.body_case = MOE__SERVER_MSG__BODY_FINISH;
    m.finish = &f;
    moe_msg_free(trip(srv, peer, cli, &m.base, "finish", NULL));

    static Moe__Error e = MOE__ERROR__INIT;
    e.request_id = (char *)"gen-9";
    e.has_code = 1;
    e.code = MOE__CODE__QUEUE_FULL;
    e.message = (char *)"queue is full (1 queued)";
    m.body_case = MOE__SERVER_MSG__BODY_ERROR;
    m.error = &e;
    moe_msg_free(trip(srv, peer, cli, &m.base, "error", NULL));

    static Moe__Heartbeat hb = MOE__HEARTBEAT__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_HEARTBEAT;
    m.heartbeat = &hb;
    moe_msg_free(trip(srv, peer, cli, &m.base, "server heartbeat", NULL));
}

static void test_worker_roundtrips(moe_link *back, moe_link *rank)
{
    moe_link_peer peer;
    Moe__WorkerMsg m = MOE__WORKER_MSG__INIT;

    static Moe__ModelIdentity mi = MOE__MODEL_IDENTITY__INIT;
    mi.name = (char *)"tiny-deepseek2";
    mi.has_fingerprint = mi.has_vocab_size = mi.has_max_context = 1;
    mi.fingerprint = 0x0123456789abcdefULL;
    mi.vocab_size = 512;
    mi.max_context = 2048;
    static Moe__WorkerHello h = MOE__WORKER_HELLO__INIT;
    h.has_protocol_version = h.has_rank = h.has_n_ranks = h.has_cache_tokens_total = h.has_cache_tokens_free =
        h.has_job_id = 1;
    h.protocol_version = MOE_PROTO_VERSION;
    h.rank = 1;
    h.n_ranks = 2;
    h.cache_tokens_total = 65536;
    h.cache_tokens_free = 65000;
    h.model = &mi;
    h.job_id = 99;
    m.body_case = MOE__WORKER_MSG__BODY_HELLO;
    m.hello = &h;
    moe_msg_free(trip(rank, NULL, back, &m.base, "worker_hello", &peer));
    /* The rank connected with an identity of its choosing. */
    CHECK(peer.len == 6 && memcmp(peer.id, "rank-1", 6) == 0);

    static Moe__Token t = MOE__TOKEN__INIT;
    t.has_seq_id = t.has_index = t.has_token = 1;
    t.seq_id = 1ULL << 40;
    t.index = 3;
    t.token = 511;
    m.body_case = MOE__WORKER_MSG__BODY_TOKEN;
    m.token = &t;
    moe_msg_free(trip(rank, NULL, back, &m.base, "token", NULL));

    static Moe__SeqEnd se = MOE__SEQ_END__INIT;
    se.has_seq_id = se.has_reason = 1;
    se.seq_id = 1ULL << 40;
    se.reason = MOE__END_REASON__END_LENGTH;
    se.message = (char *)"";
    m.body_case = MOE__WORKER_MSG__BODY_SEQ_END;
    m.seq_end = &se;
    moe_msg_free(trip(rank, NULL, back, &m.base, "seq_end", NULL));

    static uint64_t active[3] = {1, 2, 1ULL << 40};
    static Moe__WorkerHeartbeat wh = MOE__WORKER_HEARTBEAT__INIT;
    wh.has_rank = wh.has_cache_tokens_free = 1;
    wh.rank = 1;
    wh.cache_tokens_free = 1000;
    wh.n_active = 3;
    wh.active = active;
    m.body_case = MOE__WORKER_MSG__BODY_HEARTBEAT;
    m.heartbeat = &wh;
    moe_msg_free(trip(rank, NULL, back, &m.base, "worker_heartbeat", NULL));

    static Moe__Error e = MOE__ERROR__INIT;
    e.has_code = 1;
    e.code = MOE__CODE__INTERNAL;
    e.message = (char *)"rank 1: out of cache";
    m.body_case = MOE__WORKER_MSG__BODY_ERROR;
    m.error = &e;
    moe_msg_free(trip(rank, NULL, back, &m.base, "worker error", NULL));

    /* coordinator -> worker */
    Moe__CoordMsg c = MOE__COORD_MSG__INIT;
    static Moe__WorkerHelloReply hr = MOE__WORKER_HELLO_REPLY__INIT;
    hr.has_protocol_version = 1;
    hr.protocol_version = MOE_PROTO_VERSION;
    c.body_case = MOE__COORD_MSG__BODY_HELLO_REPLY;
    c.hello_reply = &hr;
    moe_msg_free(trip(back, &peer, rank, &c.base, "worker_hello_reply", NULL));

    static int32_t prompt[4] = {1, 2, 3, 4}, stop_ids[1] = {2}, emitted[2] = {9, 8};
    static Moe__Sampling s = MOE__SAMPLING__INIT;
    s.has_temperature = s.has_seed = 1;
    s.temperature = 1.0f;
    s.seed = 7;
    static Moe__Assign a = MOE__ASSIGN__INIT;
    a.has_seq_id = a.has_max_tokens = 1;
    a.seq_id = 5;
    a.n_prompt = 4;
    a.prompt = prompt;
    a.sampling = &s;
    a.max_tokens = 16;
    a.n_stop_ids = 1;
    a.stop_ids = stop_ids;
    a.n_emitted = 2;
    a.emitted = emitted;
    c.body_case = MOE__COORD_MSG__BODY_ASSIGN;
    c.assign = &a;
    ProtobufCMessage *r = trip(back, &peer, rank, &c.base, "assign", NULL);
    if (r) CHECK(((Moe__CoordMsg *)r)->assign->n_emitted == 2 && ((Moe__CoordMsg *)r)->assign->emitted[1] == 8);
    moe_msg_free(r);

    static Moe__Release rel = MOE__RELEASE__INIT;
    rel.has_seq_id = 1;
    rel.seq_id = 5;
    c.body_case = MOE__COORD_MSG__BODY_RELEASE;
    c.release = &rel;
    moe_msg_free(trip(back, &peer, rank, &c.base, "release", NULL));

    static Moe__Heartbeat hb = MOE__HEARTBEAT__INIT;
    c.body_case = MOE__COORD_MSG__BODY_HEARTBEAT;
    c.heartbeat = &hb;
    moe_msg_free(trip(back, &peer, rank, &c.base, "coord heartbeat", NULL));

    static Moe__Error ce = MOE__ERROR__INIT;
    ce.has_code = 1;
    ce.code = MOE__CODE__BAD_VERSION;
    ce.message = (char *)"speak version 1";
    c.body_case = MOE__COORD_MSG__BODY_ERROR;
    c.error = &ce;
    moe_msg_free(trip(back, &peer, rank, &c.base, "coord error", NULL));
}

/* ---- bad frames ------------------------------------------------------------------ */

/* The server's answer to a refused frame: an Error with the code (as the
 * coordinator will do), received and checked by the client. */
static void answer_and_expect(moe_link *srv, moe_link *cli, const moe_link_in *in, const char *why, int want)
{
    moe_err err;
    Moe__Error e = MOE__ERROR__INIT;
    e.has_code = 1;
    e.code = (Moe__Code)in->code;
    e.message = (char *)why;
    e.request_id = (char *)moe_msg_request_id((const Moe__ClientMsg *)in->msg, NULL);
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_ERROR;
    m.error = &e;
    CHECK(moe_link_send(srv, &in->from, &m.base, MOE_LINK_DONTWAIT, &err) == MOE_OK);
    moe_link_in r;
    if (recv_one(cli, &r, &err)) {
        CHECK(r.code == MOE__CODE__OK);
        Moe__ServerMsg *sm = (Moe__ServerMsg *)r.msg;
        CHECK(sm && sm->body_case == MOE__SERVER_MSG__BODY_ERROR && (int)sm->error->code == want);
        moe_link_in_clear(&r);
    }
}

/* A valid hello right after a refused frame still works. */
static void expect_link_alive(moe_link *srv, moe_link *cli, const char *after)
{
    Moe__ClientMsg m = client_hello();
    char name[96];
    snprintf(name, sizeof name, "hello after %s", after);
    moe_msg_free(trip(cli, NULL, srv, &m.base, name, NULL));
}

static void test_bad_frames(moe_link *srv, moe_link *cli, size_t max_frame, size_t max_wire)
{
    moe_err err = {{0}};
    moe_link_in in;

    /* malformed */
    CHECK(moe_link_send_bytes(cli, NULL, "\xff\xff\xff\xff\xff\xff", 6, 0, &err) == MOE_OK);
    if (recv_one(srv, &in, &err)) {
        CHECK_MSG(in.code == MOE__CODE__MALFORMED_FRAME, "garbage: %s", moe_msg_code_name(in.code));
        CHECK(in.msg == NULL && in.len == 6);
        CHECK_CONTAINS(err.msg, "not a valid ClientMsg");
        answer_and_expect(srv, cli, &in, err.msg, MOE__CODE__MALFORMED_FRAME);
        moe_link_in_clear(&in);
    }
    expect_link_alive(srv, cli, "a malformed frame");

    /* empty frame: decodes to an envelope without a body */
    CHECK(moe_link_send_bytes(cli, NULL, NULL, 0, 0, &err) == MOE_OK);
    if (recv_one(srv, &in, &err)) {
        CHECK(in.code == MOE__CODE__MALFORMED_FRAME && in.len == 0);
        CHECK_CONTAINS(err.msg, "has no body");
        moe_link_in_clear(&in);
    }
    expect_link_alive(srv, cli, "an empty frame");

    /* oversized: one byte over the cap (and zeros: not even a valid frame,
     * which does not matter as the size is checked first) */
    size_t big = max_frame + 1;
    uint8_t *buf = moe_xcalloc(1, big);
    CHECK(moe_link_send_bytes(cli, NULL, buf, big, 0, &err) == MOE_OK);
    if (recv_one(srv, &in, &err)) {
        CHECK_MSG(in.code == MOE__CODE__OVERSIZED_FRAME, "oversized: %s", moe_msg_code_name(in.code));
        CHECK(in.len == big && in.msg == NULL);
        CHECK_CONTAINS(err.msg, "is larger than the limit of");
        answer_and_expect(srv, cli, &in, err.msg, MOE__CODE__OVERSIZED_FRAME);
        moe_link_in_clear(&in);
    }
    free(buf);
    expect_link_alive(srv, cli, "an oversized frame");

    /* An oversized frame just below the wire limit still arrives. */
    buf = moe_xcalloc(1, max_wire);
    CHECK(moe_link_send_bytes(cli, NULL, buf, max_wire, 0, &err) == MOE_OK);
    if (recv_one(srv, &in, &err)) {
        CHECK(in.code == MOE__CODE__OVERSIZED_FRAME && in.len == max_wire);
        moe_link_in_clear(&in);
    }
    free(buf);
    expect_link_alive(srv, cli, "a frame at the wire limit");

    /* The sender refuses to encode a message above its own cap. */
    static char text[4096];
    memset(text, 'a', sizeof text - 1);
    Moe__GenerateRequest g = MOE__GENERATE_REQUEST__INIT;
    g.request_id = (char *)"big";
    g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_TEXT;
    g.text = text;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_GENERATE;
    m.generate = &g;
    CHECK(moe_link_send(cli, NULL, &m.base, 0, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "larger than the frame limit");

    /* wrong protocol version: decoded, refused by the check, message kept */
    Moe__Hello h = MOE__HELLO__INIT;
    h.has_protocol_version = 1;
    h.protocol_version = 2;
    m.body_case = MOE__CLIENT_MSG__BODY_HELLO;
    m.hello = &h;
    CHECK(moe_link_send(cli, NULL, &m.base, 0, &err) == MOE_OK);
    if (recv_one(srv, &in, &err)) {
        CHECK_MSG(in.code == MOE__CODE__BAD_VERSION, "version 2: %s", moe_msg_code_name(in.code));
        CHECK(in.msg != NULL);
        CHECK_CONTAINS(err.msg, "protocol_version 2 is not supported");
        answer_and_expect(srv, cli, &in, err.msg, MOE__CODE__BAD_VERSION);
        moe_link_in_clear(&in);
    }
    expect_link_alive(srv, cli, "a wrong version");

    /* invalid field: the request id comes back in the error */
    Moe__Sampling s = MOE__SAMPLING__INIT;
    s.has_temperature = 1;
    s.temperature = -0.5f;
    g.request_id = (char *)"neg-temp";
    g.text = (char *)"hi";
    g.sampling = &s;
    m.body_case = MOE__CLIENT_MSG__BODY_GENERATE;
    m.generate = &g;
    CHECK(moe_link_send(cli, NULL, &m.base, 0, &err) == MOE_OK);
    if (recv_one(srv, &in, &err)) {
        CHECK(in.code == MOE__CODE__BAD_SAMPLING);
        CHECK_CONTAINS(err.msg, "sampling.temperature = -0.5 is out of range [0, 1000]");
        const char *id = moe_msg_request_id((const Moe__ClientMsg *)in.msg, NULL);
        CHECK(id && strcmp(id, "neg-temp") == 0);
        answer_and_expect(srv, cli, &in, err.msg, MOE__CODE__BAD_SAMPLING);
        moe_link_in_clear(&in);
    }
    expect_link_alive(srv, cli, "a bad temperature");
}

/* ---- ROUTER rules --------------------------------------------------------------- */

static void test_mandatory(moe_link *srv)
{
    moe_err err = {{0}};
    moe_link_peer ghost = {.len = 5, .id = {0, 1, 2, 3, 4}};
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
    Moe__Heartbeat hb = MOE__HEARTBEAT__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_HEARTBEAT;
    m.heartbeat = &hb;
    int rc = moe_link_send(srv, &ghost, &m.base, 0, &err);
    CHECK_MSG(rc == MOE_LINK_UNREACHABLE, "send to an unknown peer: %d %s", rc, err.msg);
    CHECK_CONTAINS(err.msg, "no connected peer");
    rc = moe_link_send(srv, &ghost, &m.base, MOE_LINK_DONTWAIT, &err);
    CHECK(rc == MOE_LINK_UNREACHABLE);
    CHECK(moe_link_send(srv, NULL, &m.base, 0, &err) == MOE_ERR); /* a ROUTER needs a peer */
    CHECK_CONTAINS(err.msg, "needs the peer");
}

/* A client that stops reading: the ROUTER's DONTWAIT sends end in
 * MOE_LINK_AGAIN, a blocking send times out, and every message accepted
 * before arrives, in order, once the client reads. */
static void test_back_pressure(moe_link_ctx *ctx, const char *endpoint)
{
    moe_err err = {{0}};
    moe_link_opts so, co;
    moe_link_opts_default(&so, &moe__client_msg__descriptor);
    so.sndhwm = 2;
    so.send_timeout_ms = 50;
    moe_link_opts_default(&co, &moe__server_msg__descriptor);
    co.rcvhwm = 2;
    moe_link *srv = NULL, *cli = NULL;
    CHECK(moe_link_bind(&srv, ctx, endpoint, &so, &err) == MOE_OK);
    if (!srv) return;
    CHECK(moe_link_connect(&cli, ctx, moe_link_endpoint(srv), &co, &err) == MOE_OK);
    moe_link_peer peer;
    Moe__ClientMsg hello = client_hello();
    moe_msg_free(trip(cli, NULL, srv, &hello.base, "hello (back-pressure)", &peer));

    /* 256 KiB chunks fill the pipes and the socket buffers quickly. */
    size_t text_len = 256 * 1024;
    char *text = moe_xmalloc(text_len + 1);
    memset(text, 'x', text_len);
    text[text_len] = '\0';
    Moe__TokenChunk ch = MOE__TOKEN_CHUNK__INIT;
    ch.request_id = (char *)"slow";
    ch.text = text;
    ch.has_index = 1;
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_CHUNK;
    m.chunk = &ch;
    int sent = 0, rc = MOE_OK;
    for (int i = 0; i < 100000; i++) {
        ch.index = (uint32_t)sent;
        rc = moe_link_send(srv, &peer, &m.base, MOE_LINK_DONTWAIT, &err);
        if (rc != MOE_OK) break;
        sent++;
    }
    CHECK_MSG(rc == MOE_LINK_AGAIN, "a reader that does not read: %d after %d sends (%s)", rc, sent, err.msg);
    CHECK_CONTAINS(err.msg, "back-pressure");
    double t0 = moe_now();
    ch.index = (uint32_t)sent;
    rc = moe_link_send(srv, &peer, &m.base, 0, &err); /* blocking, 50 ms timeout */
    double waited = moe_now() - t0;
    if (rc == MOE_OK) sent++; /* a pipe may have drained meanwhile; then it went through */
    CHECK_MSG(rc == MOE_LINK_AGAIN || rc == MOE_OK, "blocking send on a full peer: %d %s", rc, err.msg);
    if (rc == MOE_LINK_AGAIN) CHECK_MSG(waited >= 0.04, "send timeout after %.3f s", waited);

    /* Everything accepted arrives, in order, nothing lost. */
    int got = 0;
    bool in_order = true;
    while (got < sent) {
        moe_link_in in;
        if (!recv_one(cli, &in, &err)) break;
        Moe__ServerMsg *sm = (Moe__ServerMsg *)in.msg;
        if (in.code != MOE__CODE__OK || !sm || sm->chunk->index != (uint32_t)got) in_order = false;
        moe_link_in_clear(&in);
        got++;
    }
    CHECK_MSG(got == sent && in_order, "received %d of %d (in order: %d)", got, sent, in_order);
    printf("back-pressure after %d chunks of %zu KiB\n", sent, text_len / 1024);
    /* And sending works again, once the reader's progress has reached the
     * sender (libzmq passes it back asynchronously: a blocking send with
     * its 50 ms timeout, retried, waits for exactly that). */
    ch.index = (uint32_t)sent;
    t0 = moe_now();
    do rc = moe_link_send(srv, &peer, &m.base, 0, &err);
    while (rc == MOE_LINK_AGAIN && moe_now() - t0 < WAIT_MS / 1000.0);
    CHECK_MSG(rc == MOE_OK, "send after the reader caught up: %d %s", rc, err.msg);
    moe_link_in last;
    if (rc == MOE_OK && recv_one(cli, &last, &err)) {
        CHECK(last.code == MOE__CODE__OK && ((Moe__ServerMsg *)last.msg)->chunk->index == (uint32_t)sent);
        moe_link_in_clear(&last);
    }
    free(text);
    moe_link_close(cli);
    moe_link_close(srv);
}

/* The outbox in front of a reader that stops: nothing blocks, the bound
 * holds, and everything it accepted arrives in order once the reader reads. */
static void test_outbox(moe_link_ctx *ctx, const char *endpoint)
{
    moe_err err = {{0}};
    moe_link_opts so, co;
    moe_link_opts_default(&so, &moe__client_msg__descriptor);
    so.sndhwm = 1;
    so.sndbuf = 4096;
    moe_link_opts_default(&co, &moe__server_msg__descriptor);
    co.rcvhwm = 1;
    co.rcvbuf = 4096;
    moe_link *srv = NULL, *cli = NULL;
    CHECK(moe_link_bind(&srv, ctx, endpoint, &so, &err) == MOE_OK);
    if (!srv) return;
    CHECK(moe_link_connect(&cli, ctx, moe_link_endpoint(srv), &co, &err) == MOE_OK);
    moe_link_peer peer;
    Moe__ClientMsg hello = client_hello();
    moe_msg_free(trip(cli, NULL, srv, &hello.base, "hello (outbox)", &peer));

    const int64_t bound = 256 * 1024;
    moe_outbox *ob = moe_outbox_new(bound);
    char text[8192];
    memset(text, 'y', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    Moe__TokenChunk ch = MOE__TOKEN_CHUNK__INIT;
    ch.request_id = (char *)"ob";
    ch.text = text;
    ch.has_index = 1;
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_CHUNK;
    m.chunk = &ch;
    int accepted = 0, rc = MOE_OK;
    const double t0 = moe_now();
    for (int i = 0; i < 10000; i++) {
        ch.index = (uint32_t)accepted;
        rc = moe_outbox_send(ob, srv, &peer, &m.base, &err);
        if (rc != MOE_OK) break;
        accepted++;
    }
    const double took = moe_now() - t0;
    CHECK_MSG(rc == MOE_OUTBOX_FULL, "a reader that does not read: %d after %d frames (%s)", rc, accepted, err.msg);
    CHECK_CONTAINS(err.msg, "over the bound");
    CHECK_MSG(moe_outbox_frames(ob) > 0 && moe_outbox_bytes(ob) <= (size_t)bound, "%zu frames, %zu bytes wait (bound %lld)",
              moe_outbox_frames(ob), moe_outbox_bytes(ob), (long long)bound);
    CHECK_MSG(moe_outbox_bytes(ob) + sizeof text > (size_t)bound, "refused with room left: %zu bytes wait", moe_outbox_bytes(ob));
    CHECK_MSG(took < 2.0, "filling the outbox took %.2f s (a blocking send?)", took);
    /* a flush with the reader still stopped sends nothing new and keeps everything */
    const size_t waiting = moe_outbox_frames(ob);
    CHECK(moe_outbox_flush(ob, srv, &peer, &err) == MOE_OK && moe_outbox_frames(ob) <= waiting);

    /* The reader reads; flushes in between deliver the rest, in order. */
    int got = 0;
    bool in_order = true;
    const double t1 = moe_now();
    while (got < accepted && moe_now() - t1 < WAIT_MS / 1000.0) {
        CHECK(moe_outbox_flush(ob, srv, &peer, &err) == MOE_OK);
        moe_link_poll_item pi = {.link = cli};
        if (moe_link_poll(&pi, 1, 10, &err) <= 0) continue;
        moe_link_in in;
        while (got < accepted && moe_link_recv(cli, &in, MOE_LINK_DONTWAIT, &err) == MOE_OK) {
            Moe__ServerMsg *sm = (Moe__ServerMsg *)in.msg;
            if (in.code != MOE__CODE__OK || !sm || sm->chunk->index != (uint32_t)got) in_order = false;
            moe_link_in_clear(&in);
            got++;
        }
    }
    CHECK_MSG(got == accepted && in_order, "received %d of %d (in order: %d)", got, accepted, in_order);
    CHECK(moe_outbox_frames(ob) == 0 && moe_outbox_bytes(ob) == 0);
    printf("outbox: %d frames of %zu bytes accepted with a stopped reader, all delivered in order\n", accepted,
           sizeof text);

    /* a peer that is not there */
    moe_link_peer ghost = {.len = 5};
    memcpy(ghost.id, "ghost", 5);
    CHECK(moe_outbox_send(ob, srv, &ghost, &m.base, &err) == MOE_LINK_UNREACHABLE);
    CHECK(moe_outbox_frames(ob) == 0);
    moe_outbox_free(ob);
    moe_link_close(cli);
    moe_link_close(srv);
}

/* A frame above max_wire makes libzmq drop that one connection; the link
 * and its other peers go on. */
static void test_wire_limit(moe_link_ctx *ctx, moe_link *srv, size_t max_wire)
{
    moe_err err = {{0}};
    moe_link_opts co;
    moe_link_opts_default(&co, &moe__server_msg__descriptor);
    moe_link *rogue = NULL, *good = NULL;
    CHECK(moe_link_connect(&rogue, ctx, moe_link_endpoint(srv), &co, &err) == MOE_OK);
    CHECK(moe_link_connect(&good, ctx, moe_link_endpoint(srv), &co, &err) == MOE_OK);
    if (!rogue || !good) return;
    uint8_t *buf = moe_xcalloc(1, max_wire + 1);
    CHECK(moe_link_send_bytes(rogue, NULL, buf, max_wire + 1, 0, &err) == MOE_OK);
    free(buf);
    Moe__ClientMsg m = client_hello();
    moe_msg_free(trip(good, NULL, srv, &m.base, "hello beside a frame over the wire limit", NULL));
    /* Nothing else arrives: the huge frame was dropped, not delivered. */
    moe_link_poll_item it = {.link = srv};
    CHECK(moe_link_poll(&it, 1, 100, &err) == 0 && !it.in);
    moe_link_close(rogue);
    moe_link_close(good);
}

static void test_helpers(moe_link *tcp_srv) /* or an ipc one */
{
    moe_err err = {{0}};
    char buf[200];
    CHECK(moe_link_endpoint_ipc(buf, sizeof buf, "/tmp/x", "front", &err) == MOE_OK);
    CHECK(strcmp(buf, "ipc:///tmp/x/front") == 0);
    char dir[150];
    memset(dir, 'd', sizeof dir - 1);
    dir[sizeof dir - 1] = '\0';
    CHECK(moe_link_endpoint_ipc(buf, sizeof buf, dir, "front", &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "more than a socket path holds");
    CHECK(moe_link_endpoint_ipc(buf, 10, "/tmp/x", "front", &err) == MOE_ERR);

    int port = moe_link_port(tcp_srv);
    if (strncmp(moe_link_endpoint(tcp_srv), "tcp://", 6) == 0) {
        CHECK_MSG(port > 0 && port < 65536, "port %d of %s", port, moe_link_endpoint(tcp_srv));
        CHECK(strncmp(moe_link_endpoint(tcp_srv), "tcp://127.0.0.1:", 16) == 0);
        CHECK(strcmp(strrchr(moe_link_endpoint(tcp_srv), ':'), "*") != 0);
    } else {
        CHECK(port == -1);
    }

    moe_link_peer a = {.len = 3, .id = {1, 2, 0xab}}, b = a;
    CHECK(moe_link_peer_eq(&a, &b));
    b.id[2] = 0;
    CHECK(!moe_link_peer_eq(&a, &b));
    char hex[2 * MOE_LINK_PEER_MAX + 1];
    CHECK(strcmp(moe_link_peer_hex(&a, hex), "0102ab") == 0);

    /* poll with nothing to read times out with 0 */
    moe_link_poll_item it = {.link = tcp_srv};
    double t0 = moe_now();
    CHECK(moe_link_poll(&it, 1, 30, &err) == 0 && !it.in);
    CHECK(moe_now() - t0 >= 0.02);
    /* and a plain fd works beside links: a pipe with a byte in it */
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "x", 1) == 1);
    moe_link_poll_item two[2] = {{.link = tcp_srv}, {.link = NULL, .fd = p[0]}};
    CHECK(moe_link_poll(two, 2, WAIT_MS, &err) == 1 && !two[0].in && two[1].in);
    close(p[0]);
    close(p[1]);

    /* recv with DONTWAIT and nothing there */
    moe_link_in in;
    CHECK(moe_link_recv(tcp_srv, &in, MOE_LINK_DONTWAIT, &err) == MOE_LINK_AGAIN);

    /* option errors are errors, not aborts */
    moe_link_ctx *ctx;
    CHECK(moe_link_ctx_init(&ctx, &err) == MOE_OK);
    moe_link_opts o;
    moe_link_opts_default(&o, &moe__client_msg__descriptor);
    moe_link *l = NULL;
    o.identity = "";
    CHECK(moe_link_connect(&l, ctx, "tcp://127.0.0.1:1", &o, &err) == MOE_ERR && !l);
    CHECK_CONTAINS(err.msg, "identity must be 1..255 bytes");
    o.identity = "x";
    CHECK(moe_link_bind(&l, ctx, "tcp://127.0.0.1:*", &o, &err) == MOE_ERR && !l);
    o.identity = NULL;
    o.max_wire = o.limits.max_frame;
    CHECK(moe_link_bind(&l, ctx, "tcp://127.0.0.1:*", &o, &err) == MOE_ERR && !l);
    CHECK_CONTAINS(err.msg, "must be above limits.max_frame");
    o.max_wire = 0;
    CHECK(moe_link_bind(&l, ctx, "nonsense://where", &o, &err) == MOE_ERR && !l);
    CHECK_CONTAINS(err.msg, "nonsense://where: bind");
    o.recv_type = NULL;
    CHECK(moe_link_bind(&l, ctx, "tcp://127.0.0.1:*", &o, &err) == MOE_ERR && !l);

    /* a blocking receive with a timeout gives up with AGAIN */
    moe_link_opts_default(&o, &moe__client_msg__descriptor);
    o.recv_timeout_ms = 30;
    CHECK(moe_link_bind(&l, ctx, "tcp://127.0.0.1:*", &o, &err) == MOE_OK);
    if (l) {
        t0 = moe_now();
        CHECK(moe_link_recv(l, &in, 0, &err) == MOE_LINK_AGAIN);
        CHECK(moe_now() - t0 >= 0.02);
        moe_link_close(l);
    }
    moe_link_ctx_free(ctx);
}

/* Client and worker links over one transport, all the tests above. */
static void run_on(moe_link_ctx *ctx, const char *front_ep, const char *back_ep, const char *bp_ep, const char *ob_ep)
{
    moe_err err = {{0}};
    const size_t max_frame = 2048; /* small, so oversized frames are cheap */
    moe_link_opts so, co;
    moe_link_opts_default(&so, &moe__client_msg__descriptor);
    so.limits.max_frame = max_frame;
    moe_link_opts_default(&co, &moe__server_msg__descriptor);
    co.limits.max_frame = max_frame; /* also caps what the client encodes */
    moe_link *srv = NULL, *cli = NULL;
    CHECK_MSG(moe_link_bind(&srv, ctx, front_ep, &so, &err) == MOE_OK, "bind %s: %s", front_ep, err.msg);
    if (!srv) return;
    CHECK_MSG(moe_link_connect(&cli, ctx, moe_link_endpoint(srv), &co, &err) == MOE_OK, "connect: %s", err.msg);
    if (!cli) return;
    printf("front end on %s\n", moe_link_endpoint(srv));
    const size_t max_wire = 4 * max_frame + 64 * 1024; /* the default rule */

    moe_link_peer peer;
    test_client_roundtrips(srv, cli, &peer);
    test_server_roundtrips(srv, cli, &peer);
    test_bad_frames(srv, cli, max_frame, max_wire);
    test_mandatory(srv);
    test_wire_limit(ctx, srv, max_wire);
    test_helpers(srv);

    /* the worker side: a ROUTER back end, a DEALER rank with an identity */
    moe_link_opts bo, ro;
    moe_link_opts_default(&bo, &moe__worker_msg__descriptor);
    bo.router_handover = true;
    moe_link_opts_default(&ro, &moe__coord_msg__descriptor);
    ro.identity = "rank-1";
    moe_link *back = NULL, *rank = NULL;
    CHECK(moe_link_bind(&back, ctx, back_ep, &bo, &err) == MOE_OK);
    /* Before the rank connects, its identity is unknown to the back end. */
    moe_link_peer r1 = {.len = 6};
    memcpy(r1.id, "rank-1", 6);
    Moe__CoordMsg cm = MOE__COORD_MSG__INIT;
    Moe__Heartbeat hb = MOE__HEARTBEAT__INIT;
    cm.body_case = MOE__COORD_MSG__BODY_HEARTBEAT;
    cm.heartbeat = &hb;
    if (back) CHECK(moe_link_send(back, &r1, &cm.base, 0, &err) == MOE_LINK_UNREACHABLE);
    CHECK(moe_link_connect(&rank, ctx, moe_link_endpoint(back), &ro, &err) == MOE_OK);
    if (back && rank) test_worker_roundtrips(back, rank);

    moe_link_close(rank);
    moe_link_close(back);
    moe_link_close(cli);
    moe_link_close(srv);

    test_back_pressure(ctx, bp_ep);
    test_outbox(ctx, ob_ep);
}

int main(void)
{
    moe_err err = {{0}};
    char tmpl[] = "/tmp/moe-proto-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) {
        perror("mkdtemp");
        return 1;
    }
    moe_link_ctx *ctx = NULL;
    if (moe_link_ctx_init(&ctx, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }

    char front[256], back[256], bp[256], ob[256];
    CHECK(moe_link_endpoint_ipc(front, sizeof front, dir, "front", &err) == MOE_OK);
    CHECK(moe_link_endpoint_ipc(back, sizeof back, dir, "back", &err) == MOE_OK);
    CHECK(moe_link_endpoint_ipc(bp, sizeof bp, dir, "bp", &err) == MOE_OK);
    CHECK(moe_link_endpoint_ipc(ob, sizeof ob, dir, "ob", &err) == MOE_OK);
    run_on(ctx, front, back, bp, ob);
    run_on(ctx, MOE_LINK_TCP_LOOPBACK_ANY, MOE_LINK_TCP_LOOPBACK_ANY, MOE_LINK_TCP_LOOPBACK_ANY, MOE_LINK_TCP_LOOPBACK_ANY);

    moe_link_ctx_free(ctx);
    /* libzmq 4.3 leaves the socket files of closed ipc endpoints behind. */
    static const char *const files[] = {"front", "back", "bp", "ob"};
    for (size_t i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    CHECK_MSG(rmdir(dir) == 0, "rmdir %s", dir);
    printf("proto_link_test: %d round trips\n", n_roundtrips);
    return check_summary("proto_link_test");
}
