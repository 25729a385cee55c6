/*
 * hard_client — the hardening checks' client (tests/hardening_test.sh,
 * bench/hardening/run.sh): floods, memory bombs and big prompts beside
 * valid requests, over TCP on loopback.  Junk comes from its own loopback
 * address (127.0.0.2 and up, ZMQ's "tcp://SRC:0;DST" form) as a remote
 * attacker's would; valid clients connect from 127.0.0.1.
 *
 *   hard_client flood HOST PORT JUNK VALID BOUND_MS
 *       JUNK identities (one connection each) send 20 requests each and
 *       never read; then VALID clients send one request each at once.
 *       Every valid request must finish (no refusal); prints their p50 and
 *       p99 latency; fails if p99 is above BOUND_MS.
 *   hard_client bomb HOST PORT PID SECONDS BOUND_MIB BACK_MIB SETTLE_S
 *       4 connections send 1,000,000-byte text prompts and 4 MiB frames as
 *       fast as they go for SECONDS; PID's RssAnon is sampled every 10 ms:
 *       its rise above the baseline must stay under BOUND_MIB, and within
 *       SETTLE_S after the bomb it must be back within BACK_MIB.
 *   hard_client bigprompt HOST PORT SECONDS N BOUND_MS
 *       2 connections send 1,000,000-byte prompts (kept 4 in flight each)
 *       for SECONDS; meanwhile N 4-token requests one after another: each
 *       time to first token printed (p50, max); fails if max > BOUND_MS.
 *   hard_client steady HOST PORT RATE SECONDS
 *       (the soak) RATE requests a second of 16 prompt tokens and 16 out,
 *       for SECONDS; prints how many finished and failed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "link.h"
#include "msg.h"

static moe_link_ctx *ctx;
static const char *host;
static int port;

static moe_link *dial(const char *src)
{
    char ep[256];
    if (src) snprintf(ep, sizeof ep, "tcp://%s:0;%s:%d", src, host, port);
    else snprintf(ep, sizeof ep, "tcp://%s:%d", host, port);
    moe_link_opts o;
    moe_link_opts_default(&o, &moe__server_msg__descriptor);
    o.limits.max_frame = 8 << 20;
    o.sndhwm = 8;
    moe_link *l;
    moe_err err;
    if (moe_link_connect(&l, ctx, ep, &o, &err)) {
        fprintf(stderr, "connect %s: %s\n", ep, err.msg);
        exit(2);
    }
    /* every connection says hello first, junk included: the server serves
     * nothing before it, and an attacker can say hello as cheaply */
    Moe__Hello h = MOE__HELLO__INIT;
    h.has_protocol_version = true;
    h.protocol_version = MOE_PROTO_VERSION;
    h.client_name = (char *)"hard_client";
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_HELLO;
    m.hello = &h;
    if (moe_link_send(l, NULL, &m.base, 0, &err) != MOE_OK) {
        fprintf(stderr, "hello to %s: %s\n", ep, err.msg);
        exit(2);
    }
    return l;
}

/* MOE_OK, or MOE_LINK_AGAIN when the link is at its high-water mark. */
static int send_gen(moe_link *l, const char *id, const char *text, int max_tokens, int flags)
{
    Moe__GenerateRequest g = MOE__GENERATE_REQUEST__INIT;
    g.request_id = (char *)id;
    g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_TEXT;
    g.text = (char *)text;
    g.has_max_tokens = true;
    g.max_tokens = max_tokens;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_GENERATE;
    m.generate = &g;
    moe_err err;
    const int rc = moe_link_send(l, NULL, &m.base, flags, &err);
    if (rc == MOE_ERR) {
        fprintf(stderr, "send: %s\n", err.msg);
        exit(2);
    }
    return rc;
}

static void send_beat(moe_link *l)
{
    Moe__Heartbeat hb = MOE__HEARTBEAT__INIT;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_HEARTBEAT;
    m.heartbeat = &hb;
    moe_err err;
    moe_link_send(l, NULL, &m.base, MOE_LINK_DONTWAIT, &err);
}

/* What a request's answer said: 0 none yet, 1 first token, 2 finished, -1 refused / error. */
typedef struct answer {
    int kind;
    char id[64];
    char why[256];
} answer;

static bool poll_answer(moe_link *l, answer *a)
{
    moe_link_in in;
    moe_err err;
    if (moe_link_recv(l, &in, MOE_LINK_DONTWAIT, &err) != MOE_OK) return false;
    const Moe__ServerMsg *m = (const Moe__ServerMsg *)in.msg;
    a->kind = 0;
    if (in.code == MOE__CODE__OK && m) {
        switch (m->body_case) {
        case MOE__SERVER_MSG__BODY_CHUNK:
            a->kind = 1;
            snprintf(a->id, sizeof a->id, "%s", m->chunk->request_id ? m->chunk->request_id : "");
            break;
        case MOE__SERVER_MSG__BODY_FINISH:
            a->kind = m->finish->reason == MOE__END_REASON__END_ERROR ? -1 : 2;
            snprintf(a->id, sizeof a->id, "%s", m->finish->request_id ? m->finish->request_id : "");
            snprintf(a->why, sizeof a->why, "finish %s %s", moe_msg_end_name(m->finish->reason),
                     m->finish->message ? m->finish->message : "");
            break;
        case MOE__SERVER_MSG__BODY_ERROR:
            a->kind = -1;
            snprintf(a->id, sizeof a->id, "%s", m->error->request_id ? m->error->request_id : "");
            snprintf(a->why, sizeof a->why, "%s: %s", moe_msg_code_name(m->error->code),
                     m->error->message ? m->error->message : "");
            break;
        default: break;
        }
    }
    moe_link_in_clear(&in);
    return true;
}

static void nap(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static int cmp_d(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) of v[n], sorted here. */
static double quantile(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int k = (int)(q * n + 0.999999) - 1;
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

static long rss_anon_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld", &v) == 1) break;
    fclose(f);
    return v;
}

/* ---- flood ----------------------------------------------------------------------- */

static int flood(int n_junk, int n_valid, double bound_ms)
{
    moe_link **junk = calloc((size_t)n_junk, sizeof *junk);
    int junk_sent = 0;
    for (int i = 0; i < n_junk; i++) {
        junk[i] = dial("127.0.0.2");
        for (int k = 0; k < 20; k++) {
            char id[32];
            snprintf(id, sizeof id, "j%d", k);
            if (send_gen(junk[i], id, "junk junk junk", 64, MOE_LINK_DONTWAIT) == MOE_OK) junk_sent++;
        }
    }
    nap(0.5); /* the junk arrives first */
    moe_link **v = calloc((size_t)n_valid, sizeof *v);
    double *t0 = calloc((size_t)n_valid, sizeof *t0), *lat = calloc((size_t)n_valid, sizeof *lat);
    int *state = calloc((size_t)n_valid, sizeof *state);
    for (int i = 0; i < n_valid; i++) v[i] = dial(NULL);
    for (int i = 0; i < n_valid; i++) {
        t0[i] = moe_now();
        send_gen(v[i], "valid", "The capital of France is", 8, 0);
    }
    int done = 0, failed = 0;
    const double start = moe_now();
    double beat = start;
    while (done + failed < n_valid && moe_now() - start < 120) {
        bool any = false;
        for (int i = 0; i < n_valid; i++) {
            answer a;
            while (state[i] == 0 && poll_answer(v[i], &a)) {
                any = true;
                if (a.kind == 2) {
                    lat[done++] = (moe_now() - t0[i]) * 1e3;
                    state[i] = 1;
                } else if (a.kind == -1) {
                    fprintf(stderr, "valid request %d refused: %s\n", i, a.why);
                    state[i] = -1;
                    failed++;
                }
            }
        }
        if (moe_now() - beat > 0.5) {
            for (int i = 0; i < n_valid; i++) send_beat(v[i]);
            beat = moe_now();
        }
        if (!any) nap(0.001);
    }
    const int lost = n_valid - done - failed;
    printf("flood: %d junk identities sent %d requests; %d of %d valid requests served, %d refused, %d unanswered\n",
           n_junk, junk_sent, done, n_valid, failed, lost);
    int rc = 0;
    if (done) {
        const double p50 = quantile(lat, done, 0.5), p99 = quantile(lat, done, 0.99);
        printf("flood: valid request latency p50 %.1f ms, p99 %.1f ms (bound %.0f ms)\n", p50, p99, bound_ms);
        if (p99 > bound_ms) rc = 1;
    }
    if (done != n_valid) rc = 1;
    for (int i = 0; i < n_junk; i++) moe_link_close(junk[i]);
    for (int i = 0; i < n_valid; i++) moe_link_close(v[i]);
    free(junk), free(v), free(t0), free(lat), free(state);
    return rc;
}

/* ---- memory bomb -------------------------------------------------------------------- */

/* n bytes of made-up words (random letters: no piece repeats often enough
 * for the tokenizer's per-call cache to make it cheap). */
static char *big_text(size_t n)
{
    char *t = malloc(n + 1);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        t[i] = x % 7 == 0 ? ' ' : (char)('a' + x % 26);
    }
    t[n] = 0;
    return t;
}

static int bomb(int pid, double seconds, double bound_mib, double back_mib, double settle_s)
{
    const long base = rss_anon_kib(pid);
    if (base < 0) {
        fprintf(stderr, "no /proc/%d/status\n", pid);
        return 2;
    }
    char *text = big_text(1000000);
    const size_t raw_n = (size_t)4 << 20;
    char *raw = malloc(raw_n);
    memset(raw, 'x', raw_n);
    moe_link *b[4];
    const char *src[4] = {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"};
    for (int i = 0; i < 4; i++) b[i] = dial(src[i]);
    long high = base;
    long sent_prompts = 0, sent_raw = 0;
    const double t0 = moe_now();
    double t_sample = 0;
    unsigned k = 0;
    while (moe_now() - t0 < seconds) {
        for (int i = 0; i < 4; i++) {
            char id[32];
            snprintf(id, sizeof id, "b%u", k++);
            if (k % 2) {
                if (send_gen(b[i], id, text, 16, MOE_LINK_DONTWAIT) == MOE_OK) sent_prompts++;
            } else {
                moe_err err;
                if (moe_link_send_bytes(b[i], NULL, raw, raw_n, MOE_LINK_DONTWAIT, &err) == MOE_OK) sent_raw++;
            }
            answer a;
            while (poll_answer(b[i], &a)) {
            }
        }
        if (moe_now() - t_sample > 0.01) {
            const long r = rss_anon_kib(pid);
            if (r > high) high = r;
            t_sample = moe_now();
        }
    }
    for (int i = 0; i < 4; i++) moe_link_close(b[i]);
    const double t_end = moe_now();
    long now_kib = rss_anon_kib(pid);
    while (moe_now() - t_end < settle_s) {
        now_kib = rss_anon_kib(pid);
        if (now_kib > high) high = now_kib;
        if ((double)(now_kib - base) <= back_mib * 1024) break;
        nap(0.05);
    }
    const double back_after = moe_now() - t_end;
    printf("bomb: %.0f s, %ld prompts of 1,000,000 bytes and %ld frames of 4 MiB sent on 4 connections\n", seconds,
           sent_prompts, sent_raw);
    printf("bomb: RssAnon baseline %.1f MiB, high-water %.1f MiB (+%.1f, bound +%.0f), after %.2f s %.1f MiB (+%.1f, "
           "bound +%.0f)\n",
           base / 1024.0, high / 1024.0, (high - base) / 1024.0, bound_mib, back_after, now_kib / 1024.0,
           (now_kib - base) / 1024.0, back_mib);
    free(text);
    free(raw);
    int rc = 0;
    if ((double)(high - base) > bound_mib * 1024) rc = 1;
    if ((double)(now_kib - base) > back_mib * 1024) rc = 1;
    return rc;
}

/* ---- big prompts beside a small request ------------------------------------------------- */

/* The big prompts' two connections, each kept at 4 in flight while flooding. */
typedef struct big_flood {
    moe_link *b[2];
    const char *text;
    int in_flight[2];
    long sent, answered;
    unsigned k;
} big_flood;

static void big_feed(big_flood *f, bool flooding)
{
    for (int i = 0; i < 2; i++) {
        answer a;
        while (poll_answer(f->b[i], &a))
            if (a.kind == 2 || a.kind == -1) {
                f->in_flight[i]--;
                f->answered++;
            }
        while (flooding && f->in_flight[i] < 4) {
            char id[32];
            snprintf(id, sizeof id, "big%u", f->k++);
            if (send_gen(f->b[i], id, f->text, 16, MOE_LINK_DONTWAIT) != MOE_OK) break;
            f->in_flight[i]++;
            f->sent++;
        }
    }
}

static int bigprompt(double seconds, int n, double bound_ms)
{
    char *text = big_text(1000000);
    big_flood bf = {.b = {dial("127.0.0.2"), dial("127.0.0.3")}, .text = text};
    moe_link *s = dial(NULL);
    double *ttft = calloc((size_t)n, sizeof *ttft);
    int got = 0, bad = 0;
    const double t0 = moe_now();
    double beat = t0;
    double t_small = 0;
    /* the big prompts get going first; the small requests are spread over the flood */
    while (moe_now() - t0 < seconds || (got + bad < n && moe_now() - t0 < seconds + 60)) {
        const bool flooding = moe_now() - t0 < seconds;
        big_feed(&bf, flooding);
        if (moe_now() - t0 >= 0.5 && got + bad < n && moe_now() - t_small >= (seconds - 0.5) / n) {
            const double ts = t_small = moe_now();
            send_gen(s, "small", "Hello there friend", 4, 0);
            answer a = {0};
            while (moe_now() - ts < 30) {
                if (poll_answer(s, &a) && a.kind != 0) break;
                big_feed(&bf, flooding); /* the flood goes on while we wait */
                nap(0.0005);
            }
            if (a.kind == 1 || a.kind == 2) ttft[got++] = (moe_now() - ts) * 1e3;
            else {
                fprintf(stderr, "the small request got %s\n", a.kind ? a.why : "no answer in 30 s");
                bad++;
            }
            /* its remaining chunks and finish */
            const double tw = moe_now();
            while (a.kind != 2 && a.kind != -1 && moe_now() - tw < 30)
                if (!poll_answer(s, &a)) nap(0.001);
        }
        if (moe_now() - beat > 0.5) {
            send_beat(s);
            beat = moe_now();
        }
        nap(0.001);
    }
    printf("bigprompt: %ld prompts of 1,000,000 bytes sent (%ld answered) beside %d small requests\n", bf.sent, bf.answered,
           got + bad);
    int rc = bad ? 1 : 0;
    if (got) {
        double mx = 0;
        for (int i = 0; i < got; i++) mx = ttft[i] > mx ? ttft[i] : mx;
        const double p50 = quantile(ttft, got, 0.5);
        printf("bigprompt: small request TTFT p50 %.1f ms, max %.1f ms (bound %.0f ms)\n", p50, mx, bound_ms);
        if (mx > bound_ms) rc = 1;
    }
    moe_link_close(bf.b[0]);
    moe_link_close(bf.b[1]);
    moe_link_close(s);
    free(ttft);
    free(text);
    return rc;
}

/* ---- steady load (the soak) ------------------------------------------------------------- */

static int steady(double rate, double seconds)
{
    moe_link *l = dial(NULL);
    long sent = 0, done = 0, failed = 0;
    const double t0 = moe_now();
    double beat = t0;
    const char *prompt = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen";
    while (moe_now() - t0 < seconds || (done + failed < sent && moe_now() - t0 < seconds + 60)) {
        const double now = moe_now();
        if (now - t0 < seconds && sent < (long)((now - t0) * rate) + 1) {
            char id[32];
            snprintf(id, sizeof id, "s%ld", sent);
            if (send_gen(l, id, prompt, 16, MOE_LINK_DONTWAIT) == MOE_OK) sent++;
        }
        answer a;
        while (poll_answer(l, &a))
            if (a.kind == 2) done++;
            else if (a.kind == -1) {
                failed++;
                if (failed < 5) fprintf(stderr, "steady: %s\n", a.why);
            }
        if (now - beat > 0.5) {
            send_beat(l);
            beat = now;
        }
        nap(0.001);
    }
    printf("steady: %.1f requests/s for %.0f s: %ld sent, %ld finished, %ld failed in %.1f s\n", rate, seconds, sent, done,
           failed, moe_now() - t0);
    moe_link_close(l);
    return failed || done != sent;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: hard_client flood|bomb|bigprompt|steady HOST PORT ...\n");
        return 2;
    }
    host = argv[2];
    port = atoi(argv[3]);
    moe_err err;
    if (moe_link_ctx_init(&ctx, &err)) return 2;
    int rc = 2;
    if (!strcmp(argv[1], "flood") && argc == 7) rc = flood(atoi(argv[4]), atoi(argv[5]), atof(argv[6]));
    else if (!strcmp(argv[1], "bomb") && argc == 9)
        rc = bomb(atoi(argv[4]), atof(argv[5]), atof(argv[6]), atof(argv[7]), atof(argv[8]));
    else if (!strcmp(argv[1], "bigprompt") && argc == 7) rc = bigprompt(atof(argv[4]), atoi(argv[5]), atof(argv[6]));
    else if (!strcmp(argv[1], "steady") && argc == 6) rc = steady(atof(argv[4]), atof(argv[5]));
    else fprintf(stderr, "hard_client: bad arguments\n");
    moe_link_ctx_free(ctx);
    return rc;
}
