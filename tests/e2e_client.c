/*
 * e2e_client — protocol-level checks against a running coordinator (real
 * sockets), driven by tests/e2e_test.sh:
 *
 *   e2e_client badinput EP      each bad input gets its own error code, and a
 *                               valid request right after it succeeds
 *   e2e_client stream EP        a long request streams: several chunks, the
 *                               first one well before the Finish, indices
 *                               without gaps
 *   e2e_client queuefull EP     (coordinator --queue 1, --max-running 1 and
 *                               one rank) long requests fill the rank and the
 *                               queue; one more is refused at once with
 *                               QUEUE_FULL
 *   e2e_client cancel EP        cancel mid-stream: Finish(cancelled) comes back
 *   e2e_client hold EP N        sends a long request, reads N chunks, prints
 *                               "holding" and then stops reading and sending
 *                               heartbeats forever (the test kills it)
 *   e2e_client slowreader EP    (coordinator --client-hwm 2) a request of
 *                               SLOW_TOKENS tokens; after the first chunk the
 *                               client reads nothing (heartbeats only) until
 *                               SIGUSR1, then reads the rest: every token
 *                               arrives, in order, no gap
 *   e2e_client many N EP        N concurrent streaming requests (prompt lengths
 *                               1..30, max tokens 8..47 and every 8th 600; greedy
 *                               and seeded; ignore_eos), request ids r0..r<N-1>;
 *                               prints every chunk as 'c REQ INDEX N_IDS T_US ids...'
 *                               (T_US: wall clock, microseconds) and every finish as
 *                               'f REQ REASON CODE TOKENS'; exit 0 when all finished
 *   e2e_client many N REQ K FILE EP  the same, and once request REQ has K tokens
 *                               (still running) sends the signals FILE lists
 *                               ('PID SIG' lines) and prints 'fault T_US FINISHED'
 *   e2e_client longrun EP N     one request of N tokens; prints "streaming"
 *                               at the first chunk and "finish <reason> <code>"
 *                               at the end (exit 0 on a normal finish)
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "link.h"
#include "msg.h"

static moe_link_ctx *ctx;
static moe_link *L;
static int n_fail, n_pass;

#define EXPECT(cond, ...)                                       \
    do {                                                        \
        if (cond) n_pass++;                                     \
        else {                                                  \
            n_fail++;                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                       \
            fputc('\n', stderr);                                \
        }                                                       \
    } while (0)

static void send_msg(Moe__ClientMsg *m)
{
    moe_err err;
    if (moe_link_send(L, NULL, &m->base, 0, &err) != MOE_OK) {
        fprintf(stderr, "send failed: %s\n", err.msg);
        exit(2);
    }
}

static void send_heartbeat(void)
{
    Moe__Heartbeat hb = MOE__HEARTBEAT__INIT;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_HEARTBEAT;
    m.heartbeat = &hb;
    send_msg(&m);
}

/* The next message that is not a heartbeat, within timeout_s (NULL on timeout).
 * A heartbeat goes out every 0.5 s across calls, so a client that always
 * has a chunk waiting (a long stream) is not taken for a silent one. */
static Moe__ServerMsg *next(double timeout_s, moe_link_in *in)
{
    const double t0 = moe_now();
    static double beat;
    if (beat == 0) beat = t0;
    for (;;) {
        moe_err err;
        memset(in, 0, sizeof *in);
        int rc = moe_link_recv(L, in, MOE_LINK_DONTWAIT, &err);
        const double now = moe_now();
        if (now - beat > 0.5) {
            send_heartbeat();
            beat = now;
        }
        if (rc == MOE_OK) {
            Moe__ServerMsg *m = (Moe__ServerMsg *)in->msg;
            if (in->code == MOE__CODE__OK && m && m->body_case != MOE__SERVER_MSG__BODY_HEARTBEAT) return m;
            moe_link_in_clear(in);
            continue;
        }
        if (now - t0 > timeout_s) return NULL;
        moe_link_poll_item pi = {.link = L};
        moe_link_poll(&pi, 1, 50, &err);
    }
}

static void hello(void)
{
    Moe__Hello h = MOE__HELLO__INIT;
    h.has_protocol_version = true;
    h.protocol_version = MOE_PROTO_VERSION;
    h.client_name = (char *)"e2e_client";
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_HELLO;
    m.hello = &h;
    send_msg(&m);
    moe_link_in in;
    Moe__ServerMsg *r = next(30, &in);
    EXPECT(r && r->body_case == MOE__SERVER_MSG__BODY_HELLO_REPLY, "no hello reply");
    if (r) moe_link_in_clear(&in);
}

/* A generate with ids 1..n_prompt and the given fields. */
static void generate(const char *id, const char *text, int n_prompt, int max_tokens, const Moe__Sampling *s)
{
    int32_t ids[64];
    for (int i = 0; i < n_prompt && i < 64; i++) ids[i] = 1 + i;
    Moe__TokenIds ti = MOE__TOKEN_IDS__INIT;
    ti.n_ids = (size_t)(n_prompt < 64 ? n_prompt : 64);
    ti.ids = ids;
    Moe__GenerateRequest g = MOE__GENERATE_REQUEST__INIT;
    g.request_id = (char *)id;
    if (text) {
        g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_TEXT;
        g.text = (char *)text;
    } else {
        g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_IDS;
        g.ids = &ti;
    }
    g.has_max_tokens = true;
    g.max_tokens = max_tokens;
    g.sampling = (Moe__Sampling *)s;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_GENERATE;
    m.generate = &g;
    send_msg(&m);
}

static void cancel(const char *id)
{
    Moe__Cancel c = MOE__CANCEL__INIT;
    c.request_id = (char *)id;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_CANCEL;
    m.cancel = &c;
    send_msg(&m);
}

/* Waits for an Error about id; returns its code (-1 if none came). */
static int expect_error(const char *id)
{
    moe_link_in in;
    Moe__ServerMsg *m = next(30, &in);
    int code = -1;
    if (m && m->body_case == MOE__SERVER_MSG__BODY_ERROR &&
        (!id || (m->error->request_id && !strcmp(m->error->request_id, id)))) {
        code = m->error->has_code ? (int)m->error->code : -1;
        EXPECT(m->error->message && m->error->message[0], "error without a message");
        printf("  %-12s -> %s: %s\n", id ? id : "(none)", moe_msg_code_name(code), m->error->message);
    } else {
        fprintf(stderr, "expected an error for %s, got %d\n", id ? id : "-", m ? (int)m->body_case : -1);
    }
    if (m) moe_link_in_clear(&in);
    return code;
}

/* Reads a request to its Finish: returns the reason (-1 on timeout). */
static int run_to_finish_from(const char *id, int next_index, int *n_chunks, int *n_tokens, double *t_first,
                              double *t_finish, int *code)
{
    const double t0 = moe_now();
    int chunks = 0;
    for (;;) {
        moe_link_in in;
        Moe__ServerMsg *m = next(120, &in);
        if (!m) return -1;
        int done = -2;
        if (m->body_case == MOE__SERVER_MSG__BODY_CHUNK && !strcmp(m->chunk->request_id, id)) {
            EXPECT(m->chunk->index == (uint32_t)next_index, "chunk index %u, expected %d", m->chunk->index, next_index);
            next_index = (int)m->chunk->index + (int)m->chunk->n_ids;
            if (chunks++ == 0 && t_first) *t_first = moe_now() - t0;
        } else if (m->body_case == MOE__SERVER_MSG__BODY_FINISH && !strcmp(m->finish->request_id, id)) {
            done = (int)m->finish->reason;
            if (code) *code = m->finish->has_code ? (int)m->finish->code : 0;
            if (t_finish) *t_finish = moe_now() - t0;
        } else if (m->body_case == MOE__SERVER_MSG__BODY_ERROR) {
            fprintf(stderr, "unexpected error: %s\n", m->error->message ? m->error->message : "");
            done = -1;
        }
        moe_link_in_clear(&in);
        if (done != -2) {
            if (n_chunks) *n_chunks = chunks;
            if (n_tokens) *n_tokens = next_index;
            return done;
        }
    }
}

static int run_to_finish(const char *id, int *n_chunks, int *n_tokens, double *t_first, double *t_finish, int *code)
{
    return run_to_finish_from(id, 0, n_chunks, n_tokens, t_first, t_finish, code);
}

static void valid_request_succeeds(int k)
{
    char id[32];
    snprintf(id, sizeof id, "ok%d", k);
    generate(id, NULL, 4, 3, NULL);
    int n = 0, reason = run_to_finish(id, NULL, &n, NULL, NULL, NULL);
    EXPECT(reason == MOE__END_REASON__END_LENGTH || reason == MOE__END_REASON__END_STOP,
           "valid request after a bad one ended with %d", reason);
}

static int badinput(void)
{
    hello();
    int k = 0;
    moe_err err;
    /* a frame that is not an envelope */
    moe_link_send_bytes(L, NULL, "\xff\xff\xff garbage", 12, 0, &err);
    EXPECT(expect_error(NULL) == MOE__CODE__MALFORMED_FRAME, "malformed frame");
    valid_request_succeeds(k++);
    /* a frame over the cap */
    size_t big = MOE_MSG_MAX_FRAME_DEFAULT + 100;
    char *junk = calloc(1, big);
    moe_link_send_bytes(L, NULL, junk, big, 0, &err);
    free(junk);
    EXPECT(expect_error(NULL) == MOE__CODE__OVERSIZED_FRAME, "oversized frame");
    valid_request_succeeds(k++);
    /* a wrong protocol version */
    Moe__Hello h = MOE__HELLO__INIT;
    h.has_protocol_version = true;
    h.protocol_version = 99;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_HELLO;
    m.hello = &h;
    send_msg(&m);
    EXPECT(expect_error(NULL) == MOE__CODE__BAD_VERSION, "wrong version");
    valid_request_succeeds(k++);
    /* empty prompt */
    generate("empty", "", 0, 4, NULL);
    EXPECT(expect_error("empty") == MOE__CODE__EMPTY_PROMPT, "empty prompt");
    valid_request_succeeds(k++);
    /* max tokens <= 0, and beyond the context */
    generate("max0", NULL, 4, 0, NULL);
    EXPECT(expect_error("max0") == MOE__CODE__BAD_MAX_TOKENS, "max tokens 0");
    valid_request_succeeds(k++);
    generate("maxneg", NULL, 4, -5, NULL);
    EXPECT(expect_error("maxneg") == MOE__CODE__BAD_MAX_TOKENS, "max tokens negative");
    valid_request_succeeds(k++);
    generate("maxctx", NULL, 4, 1 << 19, NULL);
    EXPECT(expect_error("maxctx") == MOE__CODE__BAD_MAX_TOKENS, "max tokens beyond the context");
    valid_request_succeeds(k++);
    /* NaN and negative temperature, top_p outside (0, 1] */
    Moe__Sampling s = MOE__SAMPLING__INIT;
    s.has_temperature = true;
    s.temperature = NAN;
    generate("nan", NULL, 4, 4, &s);
    EXPECT(expect_error("nan") == MOE__CODE__BAD_SAMPLING, "NaN temperature");
    valid_request_succeeds(k++);
    s.temperature = -1.0f;
    generate("negtemp", NULL, 4, 4, &s);
    EXPECT(expect_error("negtemp") == MOE__CODE__BAD_SAMPLING, "negative temperature");
    valid_request_succeeds(k++);
    Moe__Sampling p = MOE__SAMPLING__INIT;
    p.has_top_p = true;
    p.top_p = 0.0f;
    generate("topp0", NULL, 4, 4, &p);
    EXPECT(expect_error("topp0") == MOE__CODE__BAD_SAMPLING, "top_p 0");
    valid_request_succeeds(k++);
    p.top_p = 1.5f;
    generate("topp15", NULL, 4, 4, &p);
    EXPECT(expect_error("topp15") == MOE__CODE__BAD_SAMPLING, "top_p 1.5");
    valid_request_succeeds(k++);
    /* cancel of an id nobody sent */
    cancel("nobody");
    EXPECT(expect_error("nobody") == MOE__CODE__UNKNOWN_REQUEST, "unknown id on cancel");
    valid_request_succeeds(k++);
    /* a token id outside the vocabulary */
    Moe__TokenIds ti = MOE__TOKEN_IDS__INIT;
    int32_t bad_ids[2] = {1, 1 << 30};
    ti.n_ids = 2;
    ti.ids = bad_ids;
    Moe__GenerateRequest g = MOE__GENERATE_REQUEST__INIT;
    g.request_id = (char *)"badid";
    g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_IDS;
    g.ids = &ti;
    Moe__ClientMsg gm = MOE__CLIENT_MSG__INIT;
    gm.body_case = MOE__CLIENT_MSG__BODY_GENERATE;
    gm.generate = &g;
    send_msg(&gm);
    EXPECT(expect_error("badid") == MOE__CODE__BAD_REQUEST, "token id outside the vocabulary");
    valid_request_succeeds(k++);
    /* logprobs: more than 20 alternatives; prompt logprobs without logprobs;
     * max_tokens 0 that scores nothing; min_tokens out of range */
    g.request_id = (char *)"lp21";
    bad_ids[1] = 2;
    g.has_logprobs = true;
    g.logprobs = 21;
    send_msg(&gm);
    EXPECT(expect_error("lp21") == MOE__CODE__BAD_REQUEST, "logprobs 21");
    valid_request_succeeds(k++);
    g.request_id = (char *)"plp";
    g.has_logprobs = false;
    g.has_prompt_logprobs = g.prompt_logprobs = true;
    send_msg(&gm);
    EXPECT(expect_error("plp") == MOE__CODE__BAD_REQUEST, "prompt_logprobs without logprobs");
    valid_request_succeeds(k++);
    g.request_id = (char *)"score0";
    g.has_prompt_logprobs = g.prompt_logprobs = false;
    g.has_max_tokens = true;
    g.max_tokens = 0;
    send_msg(&gm);
    EXPECT(expect_error("score0") == MOE__CODE__BAD_MAX_TOKENS, "max_tokens 0 without prompt_logprobs");
    valid_request_succeeds(k++);
    Moe__Sampling mt = MOE__SAMPLING__INIT;
    mt.has_min_tokens = true;
    mt.min_tokens = -1;
    g.request_id = (char *)"minneg";
    g.max_tokens = 4;
    g.sampling = &mt;
    send_msg(&gm);
    EXPECT(expect_error("minneg") == MOE__CODE__BAD_SAMPLING, "min_tokens -1");
    valid_request_succeeds(k++);
    mt.min_tokens = 5; /* above max_tokens 4 */
    g.request_id = (char *)"minbig";
    send_msg(&gm);
    EXPECT(expect_error("minbig") == MOE__CODE__BAD_REQUEST, "min_tokens above max_tokens");
    valid_request_succeeds(k++);
    printf("badinput: %d bad inputs refused with their codes, %d valid requests after them succeeded\n", k, k);
    return n_fail ? 1 : 0;
}

static int stream(void)
{
    hello();
    generate("long", NULL, 8, 200, NULL);
    int chunks = 0, n = 0, code = 0;
    double t_first = 0, t_finish = 0;
    int reason = run_to_finish("long", &chunks, &n, &t_first, &t_finish, &code);
    printf("stream: %d tokens in %d chunks; first chunk after %.3f s, finish after %.3f s (reason %s)\n", n, chunks,
           t_first, t_finish, moe_msg_end_name(reason));
    EXPECT(reason == MOE__END_REASON__END_LENGTH || reason == MOE__END_REASON__END_STOP, "reason %d", reason);
    if (reason == MOE__END_REASON__END_LENGTH) EXPECT(n == 200, "%d tokens", n);
    EXPECT(chunks >= 2 && t_first < t_finish, "the first chunk did not come before the end");
    return n_fail ? 1 : 0;
}

static int queuefull(void)
{
    hello();
    generate("a", NULL, 8, 2000, NULL); /* runs */
    /* make sure a is running (its first chunk) before the others */
    for (;;) {
        moe_link_in in;
        Moe__ServerMsg *m = next(60, &in);
        EXPECT(m != NULL, "no chunk for a");
        if (!m) return 1;
        bool first = m->body_case == MOE__SERVER_MSG__BODY_CHUNK && !strcmp(m->chunk->request_id, "a");
        moe_link_in_clear(&in);
        if (first) break;
    }
    generate("b", NULL, 8, 2000, NULL); /* waits in the queue (bound 1) */
    const double t0 = moe_now();
    generate("c", NULL, 8, 4, NULL);
    int code = -1;
    for (;;) { /* skip a's chunks */
        moe_link_in in;
        Moe__ServerMsg *m = next(30, &in);
        if (!m) break;
        if (m->body_case == MOE__SERVER_MSG__BODY_ERROR) {
            code = m->error->has_code ? (int)m->error->code : -1;
            EXPECT(m->error->request_id && !strcmp(m->error->request_id, "c"), "error for another id");
            moe_link_in_clear(&in);
            break;
        }
        moe_link_in_clear(&in);
    }
    const double dt = moe_now() - t0;
    printf("queuefull: the extra request got %s after %.3f s\n", moe_msg_code_name(code), dt);
    EXPECT(code == MOE__CODE__QUEUE_FULL, "code %d", code);
    EXPECT(dt < 2.0, "the refusal took %.3f s", dt);
    cancel("a");
    cancel("b");
    return n_fail ? 1 : 0;
}

static int cancel_mid(void)
{
    hello();
    generate("c1", NULL, 8, 3000, NULL);
    int seen = 0;
    const double t0 = moe_now();
    for (;;) { /* stream for a while: long enough for the rank's heartbeat to show it */
        moe_link_in in;
        Moe__ServerMsg *m = next(60, &in);
        if (!m) break;
        if (m->body_case == MOE__SERVER_MSG__BODY_CHUNK) seen += (int)m->chunk->n_ids;
        moe_link_in_clear(&in);
        if (seen >= 3 && moe_now() - t0 > 1.5) break;
    }
    cancel("c1");
    int reason = run_to_finish_from("c1", seen, NULL, NULL, NULL, NULL, NULL);
    printf("cancel: after %d tokens, finish reason %s\n", seen, moe_msg_end_name(reason));
    EXPECT(reason == MOE__END_REASON__END_CANCELLED, "reason %d", reason);
    return n_fail ? 1 : 0;
}

static int hold(int n)
{
    hello();
    generate("h", NULL, 8, 100000 > 3000 ? 3000 : 100000, NULL);
    int seen = 0;
    while (seen < n) {
        moe_link_in in;
        Moe__ServerMsg *m = next(60, &in);
        if (!m) return 1;
        if (m->body_case == MOE__SERVER_MSG__BODY_CHUNK) seen++;
        moe_link_in_clear(&in);
    }
    printf("holding\n");
    fflush(stdout);
    for (;;) pause(); /* silent: no reads, no heartbeats */
}

/* Enough tokens that, however the coordinator groups them into chunks, the
 * whole answer outgrows every buffer between it and a client that does not
 * read (ZMQ's batches and high-water marks, the kernel's socket buffers). */
#define SLOW_TOKENS 3000

static volatile sig_atomic_t g_go;
static void on_go(int sig) { (void)sig; g_go = 1; }

static int slowreader(void)
{
    signal(SIGUSR1, on_go);
    hello();
    generate("slow", NULL, 8, SLOW_TOKENS, NULL);
    moe_link_in in;
    Moe__ServerMsg *m;
    int next_index = 0;
    while ((m = next(60, &in)) && m->body_case != MOE__SERVER_MSG__BODY_CHUNK) moe_link_in_clear(&in);
    EXPECT(m != NULL, "no first chunk");
    if (!m) return 1;
    next_index = (int)m->chunk->index + (int)m->chunk->n_ids;
    moe_link_in_clear(&in);
    /* stall: no reads, only heartbeats, while the server keeps generating,
     * until the test says the worker has sent every token (SIGUSR1): a
     * time-based stall proves nothing on a loaded machine */
    printf("slowreader: stalling\n");
    fflush(stdout);
    for (double t0 = moe_now(); !g_go && moe_now() - t0 < 60.0;) {
        send_heartbeat();
        usleep(100000);
    }
    EXPECT(g_go, "never told to read again");
    int chunks = 0;
    int reason = run_to_finish_from("slow", next_index, &chunks, &next_index, NULL, NULL, NULL);
    printf("slowreader: after the stall, %d more chunks; %d tokens in all, finish %s\n", chunks, next_index,
           moe_msg_end_name(reason));
    EXPECT(reason == MOE__END_REASON__END_LENGTH, "reason %d", reason);
    EXPECT(next_index == SLOW_TOKENS, "%d tokens arrived", next_index);
    return n_fail ? 1 : 0;
}

static int longrun(int n)
{
    hello();
    generate("lr", NULL, 8, n, NULL);
    int chunks = 0, tokens = 0, code = 0;
    double t_first = 0, t_finish = 0;
    /* print "streaming" at the first chunk so the test can act mid-stream */
    const double t0 = moe_now();
    int reason = -1;
    for (;;) {
        moe_link_in in;
        Moe__ServerMsg *m = next(120, &in);
        if (!m) break;
        if (m->body_case == MOE__SERVER_MSG__BODY_CHUNK) {
            if (chunks++ == 0) {
                t_first = moe_now() - t0;
                printf("streaming\n");
                fflush(stdout);
            }
            tokens = (int)m->chunk->index + (int)m->chunk->n_ids;
        } else if (m->body_case == MOE__SERVER_MSG__BODY_FINISH) {
            reason = (int)m->finish->reason;
            code = m->finish->has_code ? (int)m->finish->code : 0;
            printf("finish %s %s: %s (%d tokens, first chunk %.3f s)\n", moe_msg_end_name(reason),
                   moe_msg_code_name(code), m->finish->message ? m->finish->message : "", tokens, t_first);
            t_finish = moe_now() - t0;
            moe_link_in_clear(&in);
            break;
        } else if (m->body_case == MOE__SERVER_MSG__BODY_ERROR) {
            printf("error %s: %s\n", moe_msg_code_name(m->error->code), m->error->message);
            moe_link_in_clear(&in);
            return 1;
        }
        moe_link_in_clear(&in);
    }
    fflush(stdout);
    (void)t_finish;
    return reason == MOE__END_REASON__END_LENGTH || reason == MOE__END_REASON__END_STOP ? 0 : 1;
}

static double wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The fault of many(): once request `req` has k tokens (and while it runs),
 * the signals in FILE ('PID SIG' lines, written by the test when it knows
 * the pids) are sent, in order, and 'fault T_US FINISHED' printed. */
typedef struct fault_at {
    const char *req, *file;
    int k;
    bool done;
} fault_at;

static void maybe_fault(fault_at *fa, int got, int finished)
{
    if (!fa->req || fa->done || got < fa->k) return;
    FILE *f = fopen(fa->file, "r");
    if (!f) return; /* not written yet: at the next chunk */
    long pid, sig;
    int n = 0;
    const double t = wall_us();
    while (fscanf(f, "%ld %ld", &pid, &sig) == 2)
        if (pid > 1 && sig > 0 && sig < 64) n += kill((pid_t)pid, (int)sig) == 0;
    fclose(f);
    if (n == 0) return; /* an empty file (being written): at the next chunk */
    fa->done = true;
    printf("fault %.0f %d\n", t, finished);
}

static int many(int n, fault_at *fa)
{
    if (n < 1 || n > 4096) return 2;
    hello();
    for (int i = 0; i < n; i++) {
        int32_t ids[32];
        const int len = 1 + (i * 7) % 30;
        for (int j = 0; j < len; j++) ids[j] = 1 + (i * 13 + j * 31) % 399;
        Moe__TokenIds ti = MOE__TOKEN_IDS__INIT;
        ti.n_ids = (size_t)len;
        ti.ids = ids;
        Moe__Sampling sp = MOE__SAMPLING__INIT;
        sp.has_ignore_eos = sp.ignore_eos = true;
        if (i % 3 == 1) {
            sp.has_seed = sp.has_temperature = sp.has_top_p = true;
            sp.seed = 100 + (uint64_t)i, sp.temperature = 0.9f, sp.top_p = 0.95f;
        } else if (i % 3 == 2) {
            sp.has_seed = sp.has_temperature = sp.has_top_k = true;
            sp.seed = 7 * (uint64_t)i, sp.temperature = 1.1f, sp.top_k = 40;
        }
        char id[32];
        snprintf(id, sizeof id, "r%d", i);
        Moe__GenerateRequest g = MOE__GENERATE_REQUEST__INIT;
        g.request_id = id;
        g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_IDS;
        g.ids = &ti;
        g.has_max_tokens = true;
        g.max_tokens = i % 8 == 0 ? 600 : 8 + (i * 11) % 40;
        g.has_stream = g.stream = true;
        g.sampling = &sp;
        Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
        m.body_case = MOE__CLIENT_MSG__BODY_GENERATE;
        m.generate = &g;
        send_msg(&m);
    }
    int done = 0, got = 0;
    bool req_over = false;
    while (done < n) {
        moe_link_in in;
        Moe__ServerMsg *m = next(120, &in);
        if (!m) break;
        if (m->body_case == MOE__SERVER_MSG__BODY_CHUNK) {
            const Moe__TokenChunk *c = m->chunk;
            printf("c %s %u %zu %.0f", c->request_id ? c->request_id : "?", c->index, c->n_ids, wall_us());
            for (size_t k = 0; k < c->n_ids; k++) printf(" %d", c->ids[k]);
            putchar('\n');
            if (fa->req && c->request_id && !strcmp(c->request_id, fa->req)) got = (int)(c->index + c->n_ids);
            if (!req_over) maybe_fault(fa, got, done);
        } else if (m->body_case == MOE__SERVER_MSG__BODY_FINISH) {
            const Moe__Finish *f = m->finish;
            if (fa->req && f->request_id && !strcmp(f->request_id, fa->req)) req_over = true;
            printf("f %s %s %s %u\n", f->request_id ? f->request_id : "?",
                   moe_msg_end_name(f->has_reason ? (int)f->reason : -1),
                   moe_msg_code_name(f->has_code ? (int)f->code : 0),
                   f->usage && f->usage->has_completion_tokens ? f->usage->completion_tokens : 0);
            done++;
        } else if (m->body_case == MOE__SERVER_MSG__BODY_ERROR) {
            printf("e %s %s\n", m->error->request_id ? m->error->request_id : "?",
                   m->error->message ? m->error->message : "");
            done++;
        }
        fflush(stdout);
        moe_link_in_clear(&in);
    }
    EXPECT(done == n, "%d of %d requests ended", done, n);
    return done == n ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: e2e_client badinput|stream|queuefull|cancel|hold N|longrun N ENDPOINT\n");
        return 2;
    }
    const char *ep = argv[argc - 1];
    moe_err err;
    moe_link_opts o;
    moe_link_opts_default(&o, &moe__server_msg__descriptor);
    if (!strcmp(argv[1], "slowreader")) { /* little buffering on our side either */
        o.rcvhwm = 2;
        o.rcvbuf = 4096;
    }
    if (moe_link_ctx_init(&ctx, &err) || moe_link_connect(&L, ctx, ep, &o, &err)) {
        fprintf(stderr, "e2e_client: %s\n", err.msg);
        return 2;
    }
    int rc = 2;
    if (!strcmp(argv[1], "badinput")) rc = badinput();
    else if (!strcmp(argv[1], "stream")) rc = stream();
    else if (!strcmp(argv[1], "queuefull")) rc = queuefull();
    else if (!strcmp(argv[1], "cancel")) rc = cancel_mid();
    else if (!strcmp(argv[1], "slowreader")) rc = slowreader();
    else if (!strcmp(argv[1], "hold") && argc == 4) rc = hold(atoi(argv[2]));
    else if (!strcmp(argv[1], "longrun") && argc == 4) rc = longrun(atoi(argv[2]));
    else if (!strcmp(argv[1], "many") && (argc == 4 || argc == 7)) {
        fault_at fa = {0};
        if (argc == 7) fa = (fault_at){.req = argv[3], .k = atoi(argv[4]), .file = argv[5]};
        rc = many(atoi(argv[2]), &fa);
    }
    printf("e2e_client %s: %d checks passed, %d failed\n", argv[1], n_pass, n_fail);
    moe_link_close(L);
    moe_link_ctx_free(ctx);
    return rc;
}
