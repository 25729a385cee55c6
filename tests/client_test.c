/*
 * client_test — moe-client (run as a subprocess from $MOE_BIN) against a
 * fake coordinator in this process: a real ROUTER (proto/link.h) on an
 * ipc:// path in a fresh temporary folder; only the coordinator's logic is
 * scripted.  Covered:
 *   - a streamed reply reassembled in order, the request's fields as sent
 *     (only the sampling fields set), hello first, --usage, --ids-out,
 *     --no-stream, --chat;
 *   - a chunk index gap or overlap: protocol error, Cancel sent, exit 1;
 *   - Error and Finish replies mapped to exit codes, a refused hello, the
 *     --timeout exit (3);
 *   - garbage and unexpected frames reported and ignored;
 *   - --file with --concurrency: never more in flight than allowed, replies
 *     out of order and interleaved, output in input order, escapes, per-line
 *     options, an error line, the summary; bad request lines reported in
 *     their places ("<line> error bad_line: ...") while the others run, and
 *     the file's stop strings and ids sent;
 *   - SIGINT: a Cancel for every request in flight, exit 130;
 *   - heartbeats while waiting;
 *   - bad flags, unreadable or empty request files (exit 2); --connect
 *     HOST:PORT taken as tcp://, other non-endpoints refused with a hint.
 * Nothing sleeps for readiness: the fake polls its socket and the child's
 * pipes, and every wait has a deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "link.h"

#define RUN_LIMIT_S 30.0 /* the longest one client run may take before the test fails */

static char g_bin[4096], g_dir[256], g_ep[512];

/* ---- the child process ------------------------------------------------------ */

typedef struct child {
    pid_t pid;
    int out_fd, err_fd;
    char *out, *err;
    size_t out_len, err_len;
    int status; /* exit code, or -1 (killed by a signal / not run) */
} child;

/* Bytes for the next child's stdin (NULL: /dev/null); small enough for a pipe's buffer. */
static const char *g_stdin;

static bool child_start(child *ch, const char *const *args)
{
    memset(ch, 0, sizeof *ch);
    ch->out = calloc(1, 1);
    ch->err = calloc(1, 1);
    ch->status = -1;
    int po[2], pe[2], pi[2];
    if (pipe(po) || pipe(pe) || pipe(pi)) return false;
    if (g_stdin) {
        ssize_t w = write(pi[1], g_stdin, strlen(g_stdin));
        CHECK(w == (ssize_t)strlen(g_stdin));
    }
    close(pi[1]);
    const char *argv[64];
    int n = 0;
    argv[n++] = g_bin;
    for (; args[n - 1] && n < 63; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    ch->pid = fork();
    if (ch->pid < 0) return false;
    if (ch->pid == 0) {
        dup2(pi[0], 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(pi[0]), close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        execv(g_bin, (char *const *)argv);
        _exit(127);
    }
    close(pi[0]);
    close(po[1]);
    close(pe[1]);
    /* Non-blocking, and read on every turn of the loop: a pipe at EOF
     * reports only POLLHUP, which the link's poll does not show as input. */
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(pe[0], F_SETFL, O_NONBLOCK);
    ch->out_fd = po[0];
    ch->err_fd = pe[0];
    return true;
}

/* Appends what is readable on *fd to *buf; closes *fd (-1) at EOF. */
static void child_read(int *fd, char **buf, size_t *len)
{
    char tmp[4096];
    ssize_t r;
    while ((r = read(*fd, tmp, sizeof tmp)) > 0) {
        *buf = realloc(*buf, *len + (size_t)r + 1);
        memcpy(*buf + *len, tmp, (size_t)r);
        *len += (size_t)r;
        (*buf)[*len] = 0;
    }
    if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        close(*fd);
        *fd = -1;
    }
}

static void child_free(child *ch)
{
    free(ch->out);
    free(ch->err);
    memset(ch, 0, sizeof *ch);
}

/* ---- the fake coordinator ---------------------------------------------------- */

typedef enum {
    SC_NONE,      /* answers nothing, not even the hello (flags, timeout) */
    SC_STREAM,    /* three chunks and Finish(length) */
    SC_ONE_CHUNK, /* one chunk [10 11 12] "x", Finish(stop) */
    SC_GAP,       /* index 0, then index 3 */
    SC_OVERLAP,   /* index 0 (2 ids), then index 1 */
    SC_REPLY,     /* answers the request with f->reply */
    SC_BAD_HELLO, /* refuses the hello (BAD_VERSION, no request id) */
    SC_GARBAGE,   /* junk and unexpected frames, then a good answer */
    SC_HEARTBEAT, /* answers after 3 heartbeats */
    SC_SIGINT,    /* one chunk, then the test sends SIGINT; Cancel -> Finish(cancelled) */
    SC_SIGINT_FILE, /* holds the requests; SIGINT once `hold` are in flight */
    SC_FILE,      /* holds `hold` requests, answers them in reverse order, interleaved */
    SC_FUZZ,      /* thousands of mutated server frames, then a good answer */
} scenario;

typedef enum { R_ERROR, R_FINISH } reply_kind;

typedef struct reply {
    reply_kind kind;
    int code;       /* Error code, or Finish code (0: unset) */
    int reason;     /* Finish */
    const char *msg;
} reply;

typedef struct fake {
    moe_link *srv;
    moe_link_peer peer;
    bool have_peer;
    scenario sc;
    reply rep;
    int hold, total;
    child ch;
    bool killed;
    int kill_sig;            /* SC_SIGINT: the signal to send (0: SIGINT) */
    bool silent_cancel;      /* Cancel gets no Finish; a second signal follows it */
    bool killed_twice;
    bool ignore_cancel;      /* Cancel gets no answer at all */
    bool in_cancel;          /* answering a Cancel (its sender may have left already) */
    /* what came in */
    int n_hello, n_gen, n_cancel, n_hb, n_hb_after_gen, n_bad, n_finished;
    int max_inflight;
    bool gen_before_hello;
    Moe__ClientMsg *gens[1024]; /* every generate, owned here (held[] points into it) */
    int n_gens;
    char cancels[16][32];
    Moe__ClientMsg *held[64];
    int n_held;
} fake;

static void fsend(fake *f, Moe__ServerMsg *m)
{
    moe_err err;
    int rc = moe_link_send(f->srv, &f->peer, &m->base, 0, &err);
    /* A client that gave up (timeout) sends its Cancel on the way out, and
     * a fuzzed one may end at any frame: the answer may find it gone. */
    bool gone_ok = (f->sc == SC_NONE || f->sc == SC_FUZZ || f->in_cancel) && rc == MOE_LINK_UNREACHABLE;
    CHECK_MSG(rc == MOE_OK || gone_ok, "fake send: %d %s", rc, err.msg);
}

static void send_chunk(fake *f, const char *id, const int32_t *ids, size_t n, const char *text, uint32_t index)
{
    Moe__TokenChunk c = MOE__TOKEN_CHUNK__INIT;
    c.request_id = (char *)id;
    c.ids = (int32_t *)ids;
    c.n_ids = n;
    c.text = (char *)text;
    c.has_index = 1;
    c.index = index;
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_CHUNK;
    m.chunk = &c;
    fsend(f, &m);
}

static void send_finish(fake *f, const char *id, int reason, int code, const char *msg, uint32_t np, uint32_t nc)
{
    Moe__Usage u = MOE__USAGE__INIT;
    u.has_prompt_tokens = u.has_completion_tokens = 1;
    u.prompt_tokens = np;
    u.completion_tokens = nc;
    Moe__Finish fi = MOE__FINISH__INIT;
    fi.request_id = (char *)id;
    fi.has_reason = 1;
    fi.reason = (Moe__EndReason)reason;
    if (code) fi.has_code = 1, fi.code = (Moe__Code)code;
    fi.message = (char *)msg;
    fi.usage = &u;
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_FINISH;
    m.finish = &fi;
    fsend(f, &m);
    f->n_finished++;
}

static void send_error(fake *f, const char *id, int code, const char *msg)
{
    Moe__Error e = MOE__ERROR__INIT;
    e.request_id = (char *)id;
    e.has_code = 1;
    e.code = (Moe__Code)code;
    e.message = (char *)msg;
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_ERROR;
    m.error = &e;
    fsend(f, &m);
    f->n_finished++;
}

static void send_hello_reply(fake *f)
{
    Moe__HelloReply h = MOE__HELLO_REPLY__INIT;
    h.has_protocol_version = 1;
    h.protocol_version = MOE_PROTO_VERSION;
    h.model = (char *)"fake-model";
    h.has_vocab_size = 1;
    h.vocab_size = 1000;
    h.has_max_context = 1;
    h.max_context = 4096;
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_HELLO_REPLY;
    m.hello_reply = &h;
    fsend(f, &m);
}

/* SC_FILE: the answer to one request.  An ids prompt gets its ids
 * reversed and the text "i<first id>\n\t<count>"; a text prompt gets one id
 * (its length) and the text "<prompt>!"; "fail me" is refused. */
static void file_answer_part(fake *f, Moe__GenerateRequest *g, int part)
{
    char text[512];
    int32_t ids[64];
    size_t n = 0;
    if (g->prompt_case == MOE__GENERATE_REQUEST__PROMPT_IDS) {
        for (size_t i = 0; i < g->ids->n_ids && n < 64; i++) ids[n++] = g->ids->ids[g->ids->n_ids - 1 - i];
        snprintf(text, sizeof text, "i%d\n\t%zu", (int)g->ids->ids[0], g->ids->n_ids);
    } else {
        if (!strcmp(g->text, "fail me")) {
            if (part == 0) send_error(f, g->request_id, MOE__CODE__QUEUE_FULL, "queue is full");
            return;
        }
        ids[n++] = (int32_t)strlen(g->text);
        snprintf(text, sizeof text, "%s!", g->text);
    }
    /* Two chunks: the first half of the ids with the first half of the text. */
    size_t ni = n / 2, nt = strlen(text) / 2;
    if (part == 0) {
        char t0[512];
        memcpy(t0, text, nt);
        t0[nt] = 0;
        send_chunk(f, g->request_id, ids, ni, t0, 0);
    } else if (part == 1) {
        send_chunk(f, g->request_id, ids + ni, n - ni, text + nt, (uint32_t)ni);
    } else {
        send_finish(f, g->request_id, MOE__END_REASON__END_STOP, 0, NULL, 3, (uint32_t)n);
    }
}

/* SC_FUZZ: every kind of server frame, encoded, then mutated at random
 * (bytes flipped, cut short, junk appended) and sent; most fail to decode
 * or validate, some decode into odd but valid messages (other ids, odd
 * indexes, a finish of the request).  The client may end early or late,
 * with 0 or 1, but never crash, hang or flood stderr. */
static void fuzz_frames(fake *f, const char *id)
{
    static const int32_t ids[] = {1, 2, 3};
    uint8_t *base[6];
    size_t blen[6];
    moe_err err;
    Moe__TokenChunk c = MOE__TOKEN_CHUNK__INIT;
    c.request_id = (char *)id;
    c.ids = (int32_t *)ids;
    c.n_ids = 3;
    c.text = (char *)"abc";
    c.has_index = 1;
    c.index = 0;
    Moe__Usage u = MOE__USAGE__INIT;
    u.has_prompt_tokens = u.has_completion_tokens = 1;
    Moe__Finish fi = MOE__FINISH__INIT;
    fi.request_id = (char *)"r1";
    fi.has_reason = fi.has_code = 1;
    fi.reason = MOE__END_REASON__END_ERROR;
    fi.code = MOE__CODE__INTERNAL;
    fi.usage = &u;
    fi.message = (char *)"m";
    Moe__Error e = MOE__ERROR__INIT;
    e.request_id = (char *)"r2";
    e.has_code = 1;
    e.code = MOE__CODE__QUEUE_FULL;
    Moe__HelloReply h = MOE__HELLO_REPLY__INIT;
    h.has_protocol_version = h.has_vocab_size = h.has_max_context = 1;
    h.protocol_version = MOE_PROTO_VERSION;
    h.vocab_size = h.max_context = 7;
    h.model = (char *)"m";
    Moe__Heartbeat hb = MOE__HEARTBEAT__INIT;
    Moe__ServerMsg m[6];
    for (int i = 0; i < 6; i++) moe__server_msg__init(&m[i]);
    m[0].body_case = MOE__SERVER_MSG__BODY_CHUNK, m[0].chunk = &c;
    m[1].body_case = MOE__SERVER_MSG__BODY_FINISH, m[1].finish = &fi;
    m[2].body_case = MOE__SERVER_MSG__BODY_ERROR, m[2].error = &e;
    m[3].body_case = MOE__SERVER_MSG__BODY_HELLO_REPLY, m[3].hello_reply = &h;
    m[4].body_case = MOE__SERVER_MSG__BODY_HEARTBEAT, m[4].heartbeat = &hb;
    Moe__TokenChunk c2 = c;
    c2.request_id = (char *)"r7";
    m[5].body_case = MOE__SERVER_MSG__BODY_CHUNK, m[5].chunk = &c2;
    for (int i = 0; i < 6; i++) CHECK(moe_msg_encode(&m[i].base, 0, &base[i], &blen[i], &err) == MOE_OK);
    uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(f->hold + 1);
    uint8_t buf[256];
    /* Fewer frames than the ROUTER's high-water mark (1000): a client that
     * already ended leaves them queued, and a blocking send to a full pipe
     * of a departed peer would never return. */
    for (int i = 0; i < 800; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int b = (int)(x % 6);
        size_t len = blen[b] < sizeof buf ? blen[b] : sizeof buf;
        memcpy(buf, base[b], len);
        int flips = (int)((x >> 8) % 4);
        for (int k = 0; k < flips; k++) buf[(x >> (16 + 8 * k)) % len] ^= (uint8_t)(1u << ((x >> (20 + k)) % 8));
        if ((x >> 40) % 5 == 0) len = (size_t)((x >> 44) % (len + 1));
        else if ((x >> 40) % 5 == 1)
            while (len < sizeof buf && (x >> (len % 48)) % 3) {
                buf[len] = (uint8_t)(x >> (len % 56));
                len++;
            }
        int rc = moe_link_send_bytes(f->srv, &f->peer, buf, len, 0, &err);
        if (rc == MOE_LINK_UNREACHABLE) break; /* the client is done already */
        if (rc != MOE_OK) {
            CHECK_MSG(0, "fuzz send: %s", err.msg);
            break;
        }
    }
    for (int i = 0; i < 6; i++) free(base[i]);
    static const int32_t ok[] = {42};
    send_chunk(f, id, ok, 1, "ok", 0);
    send_finish(f, id, MOE__END_REASON__END_STOP, 0, NULL, 1, 1);
}

static void on_generate(fake *f, Moe__ClientMsg *m)
{
    Moe__GenerateRequest *g = m->generate;
    const char *id = g->request_id;
    static const int32_t a[] = {1, 2, 3, 4, 5}, b[] = {10, 11, 12};
    switch (f->sc) {
    case SC_STREAM:
        send_chunk(f, id, a, 2, "Hel", 0);
        send_chunk(f, id, a + 2, 1, "lo,", 2);
        send_chunk(f, id, a + 3, 2, " world", 3);
        send_finish(f, id, MOE__END_REASON__END_LENGTH, 0, NULL, 2, 5);
        break;
    case SC_ONE_CHUNK:
        send_chunk(f, id, b, 3, "x", 0);
        send_finish(f, id, MOE__END_REASON__END_STOP, 0, NULL, 3, 3);
        break;
    case SC_GAP:
        send_chunk(f, id, a, 2, "ab", 0);
        send_chunk(f, id, a + 3, 1, "d", 3);
        send_chunk(f, id, a + 4, 1, "e", 4); /* after the gap: the client must stay quiet about it */
        break;
    case SC_OVERLAP:
        send_chunk(f, id, a, 2, "ab", 0);
        send_chunk(f, id, a + 1, 1, "b", 1);
        break;
    case SC_REPLY:
        if (f->rep.kind == R_ERROR) send_error(f, id, f->rep.code, f->rep.msg);
        else send_finish(f, id, f->rep.reason, f->rep.code, f->rep.msg, 1, 0);
        break;
    case SC_GARBAGE: {
        moe_err err;
        CHECK(moe_link_send_bytes(f->srv, &f->peer, "\xff\xff\xff\x01", 4, 0, &err) == MOE_OK);
        CHECK(moe_link_send_bytes(f->srv, &f->peer, "", 0, 0, &err) == MOE_OK);
        send_chunk(f, "r9", a, 1, "nope", 0);
        send_finish(f, "zz", MOE__END_REASON__END_STOP, 0, NULL, 1, 1);
        send_error(f, "r5", MOE__CODE__INTERNAL, "not yours");
        /* A chunk without its index fails validation on the client side. */
        Moe__TokenChunk c = MOE__TOKEN_CHUNK__INIT;
        c.request_id = (char *)id;
        c.text = (char *)"bad";
        Moe__ServerMsg m2 = MOE__SERVER_MSG__INIT;
        m2.body_case = MOE__SERVER_MSG__BODY_CHUNK;
        m2.chunk = &c;
        uint8_t *buf;
        size_t len;
        CHECK(moe_msg_encode(&m2.base, 0, &buf, &len, &err) == MOE_OK);
        CHECK(moe_link_send_bytes(f->srv, &f->peer, buf, len, 0, &err) == MOE_OK);
        free(buf);
        Moe__Heartbeat hb = MOE__HEARTBEAT__INIT;
        Moe__ServerMsg m3 = MOE__SERVER_MSG__INIT;
        m3.body_case = MOE__SERVER_MSG__BODY_HEARTBEAT;
        m3.heartbeat = &hb;
        fsend(f, &m3);
        send_hello_reply(f);
        send_chunk(f, id, a, 1, "ok", 0);
        send_finish(f, id, MOE__END_REASON__END_STOP, 0, NULL, 1, 1);
        send_finish(f, id, MOE__END_REASON__END_STOP, 0, NULL, 1, 1); /* a second finish */
        break;
    }
    case SC_SIGINT: send_chunk(f, id, a, 2, "Hel", 0); break;
    case SC_FUZZ: fuzz_frames(f, id); break;
    case SC_FILE:
    case SC_SIGINT_FILE:
        f->held[f->n_held++] = m;
        if (f->sc == SC_FILE && (f->n_held == f->hold || f->n_gen == f->total)) {
            /* Reverse order, interleaved: every first chunk, every second, every finish. */
            for (int part = 0; part < 3; part++)
                for (int i = f->n_held - 1; i >= 0; i--) file_answer_part(f, f->held[i]->generate, part);
            f->n_held = 0;
        }
        break;
    default: break;
    }
}

static void on_message(fake *f, Moe__ClientMsg *m, bool *keep)
{
    switch (m->body_case) {
    case MOE__CLIENT_MSG__BODY_HELLO:
        f->n_hello++;
        if (f->sc == SC_BAD_HELLO) send_error(f, NULL, MOE__CODE__BAD_VERSION, "protocol version 1 is not spoken here");
        else if (f->sc != SC_NONE) send_hello_reply(f);
        break;
    case MOE__CLIENT_MSG__BODY_GENERATE: {
        if (!f->n_hello) f->gen_before_hello = true;
        f->n_gen++;
        if (f->n_gens == 1024) {
            CHECK_MSG(0, "more requests than the fake keeps");
            break;
        }
        f->gens[f->n_gens++] = m;
        *keep = true;
        int inflight = f->n_gen - f->n_finished;
        if (inflight > f->max_inflight) f->max_inflight = inflight;
        if (f->sc == SC_HEARTBEAT) break;
        on_generate(f, m);
        break;
    }
    case MOE__CLIENT_MSG__BODY_CANCEL:
        if (f->n_cancel < 16) snprintf(f->cancels[f->n_cancel], sizeof f->cancels[0], "%s", m->cancel->request_id);
        f->n_cancel++;
        if (f->ignore_cancel) break;
        if (f->silent_cancel) {
            kill(f->ch.pid, SIGINT);
            f->killed_twice = true;
            break;
        }
        f->in_cancel = true;
        send_finish(f, m->cancel->request_id, MOE__END_REASON__END_CANCELLED, 0, NULL, 1, 1);
        f->in_cancel = false;
        break;
    case MOE__CLIENT_MSG__BODY_HEARTBEAT:
        f->n_hb++;
        if (f->n_gen) f->n_hb_after_gen++;
        if (f->sc == SC_HEARTBEAT && f->n_hb_after_gen == 3) {
            static const int32_t x[] = {7};
            const char *id = f->gens[0]->generate->request_id;
            send_chunk(f, id, x, 1, "hb", 0);
            send_finish(f, id, MOE__END_REASON__END_STOP, 0, NULL, 1, 1);
        }
        break;
    default: break;
    }
}

static void on_tick(fake *f)
{
    if (f->killed) return;
    if ((f->sc == SC_SIGINT && strstr(f->ch.out, "Hel")) || (f->sc == SC_SIGINT_FILE && f->n_gen == f->hold)) {
        kill(f->ch.pid, f->kill_sig ? f->kill_sig : SIGINT);
        f->killed = true;
    }
}

static void fake_reset(fake *f, scenario sc)
{
    for (int i = 0; i < f->n_gens; i++) moe_msg_free(&f->gens[i]->base);
    child_free(&f->ch);
    moe_link *srv = f->srv;
    memset(f, 0, sizeof *f);
    f->srv = srv;
    f->sc = sc;
}

/* Takes in and answers what the clients sent, waiting up to ms for the first. */
static void fake_pump(fake *f, int ms)
{
    moe_link_poll_item it = {.link = f->srv};
    moe_err err;
    if (moe_link_poll(&it, 1, ms, &err) < 0) CHECK_MSG(0, "poll: %s", err.msg);
    for (;;) {
        moe_link_in in;
        if (moe_link_recv(f->srv, &in, MOE_LINK_DONTWAIT, &err) != MOE_OK) break;
        /* The client of this run is the one whose hello came last; a
         * late frame of an earlier run's client is not part of this one. */
        bool hello = in.code == MOE__CODE__OK && ((Moe__ClientMsg *)in.msg)->body_case == MOE__CLIENT_MSG__BODY_HELLO;
        if (hello) f->peer = in.from, f->have_peer = true;
        if (!f->have_peer || !moe_link_peer_eq(&f->peer, &in.from)) {
            moe_link_in_clear(&in);
            continue;
        }
        bool keep = false;
        if (in.code != MOE__CODE__OK) f->n_bad++;
        else on_message(f, (Moe__ClientMsg *)in.msg, &keep);
        if (keep) in.msg = NULL; /* f->gens owns it now */
        moe_link_in_clear(&in);
    }
}

/* A message the client sent just before it exited may reach the fake after
 * the client's pipes closed (a loaded machine): wait for *count to reach
 * want, as long as a client run may take. */
static void fake_await(fake *f, const int *count, int want)
{
    const double deadline = moe_now() + RUN_LIMIT_S;
    while (*count < want && moe_now() < deadline) fake_pump(f, 100);
}

/* Runs the client with args while playing the coordinator; returns its exit code. */
static int fake_run(fake *f, const char *const *args)
{
    child *ch = &f->ch;
    if (!child_start(ch, args)) {
        CHECK_MSG(0, "cannot start %s", g_bin);
        return -1;
    }
    double deadline = moe_now() + RUN_LIMIT_S;
    while (ch->out_fd >= 0 || ch->err_fd >= 0) {
        moe_link_poll_item it[3];
        memset(it, 0, sizeof it);
        it[0].link = f->srv;
        int n = 1;
        if (ch->out_fd >= 0) it[n++].fd = ch->out_fd;
        if (ch->err_fd >= 0) it[n++].fd = ch->err_fd;
        moe_err err;
        if (moe_link_poll(it, n, 100, &err) < 0) CHECK_MSG(0, "poll: %s", err.msg);
        fake_pump(f, 0);
    if (ch->out_fd >= 0) child_read(&ch->out_fd, &ch->out, &ch->out_len);
        if (ch->err_fd >= 0) child_read(&ch->err_fd, &ch->err, &ch->err_len);
        on_tick(f);
        if (moe_now() > deadline) {
            CHECK_MSG(0, "the client did not finish within %.0f s; stderr: %s", RUN_LIMIT_S, ch->err);
            kill(ch->pid, SIGKILL);
            break;
        }
    }
    if (ch->out_fd >= 0) close(ch->out_fd);
    if (ch->err_fd >= 0) close(ch->err_fd);
    int st;
    while (waitpid(ch->pid, &st, 0) < 0 && errno == EINTR) {
    }
    ch->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    /* In a sanitizer build the client reports its own memory errors and leaks. */
    CHECK_MSG(!strstr(ch->err, "Sanitizer") && !strstr(ch->err, "runtime error"), "client stderr: %s", ch->err);
    return ch->status;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- the cases ---------------------------------------------------------------- */

static void test_stream(fake *f)
{
    fake_reset(f, SC_STREAM);
    int rc = fake_run(f, ARGS("--connect", g_ep, "--prompt", "Hi there", "--max-tokens", "5", "--temp", "0.5",
                              "--seed", "18446744073709551615", "--stop", "END", "--stop-id", "9", "--usage"));
    CHECK_MSG(rc == 0, "exit %d, stderr: %s", rc, f->ch.err);
    CHECK_MSG(!strcmp(f->ch.out, "Hello, world\n"), "stdout: '%s'", f->ch.out);
    CHECK_CONTAINS(f->ch.err, "finish: length prompt=2 completion=5");
    CHECK(f->n_hello == 1 && !f->gen_before_hello && f->n_gen == 1 && f->n_bad == 0);
    if (f->n_gens == 1) {
        Moe__GenerateRequest *g = f->gens[0]->generate;
        CHECK(g->prompt_case == MOE__GENERATE_REQUEST__PROMPT_TEXT && !strcmp(g->text, "Hi there"));
        CHECK(!strcmp(g->request_id, "r0"));
        CHECK(g->has_max_tokens && g->max_tokens == 5);
        CHECK(g->sampling && g->sampling->has_temperature && g->sampling->temperature == 0.5f);
        CHECK(g->sampling && g->sampling->has_seed && g->sampling->seed == UINT64_MAX);
        CHECK(g->sampling && !g->sampling->has_top_p && !g->sampling->has_top_k && !g->sampling->has_min_p &&
              !g->sampling->has_repetition_penalty && !g->sampling->has_repeat_last_n);
        CHECK(g->n_stop == 1 && !strcmp(g->stop[0], "END") && g->n_stop_ids == 1 && g->stop_ids[0] == 9);
        CHECK(!g->has_stream && !g->has_deadline_ms);
    }

    /* --ids, --ids-out, --no-stream, no sampling flags: no Sampling at all. */
    fake_reset(f, SC_ONE_CHUNK);
    rc = fake_run(f, ARGS("--connect", g_ep, "--ids", "5,6,7", "--ids-out", "--no-stream", "--deadline-ms", "1500"));
    CHECK_MSG(rc == 0, "exit %d, stderr: %s", rc, f->ch.err);
    CHECK_MSG(!strcmp(f->ch.out, "10 11 12\n"), "stdout: '%s'", f->ch.out);
    if (f->n_gens == 1) {
        Moe__GenerateRequest *g = f->gens[0]->generate;
        CHECK(g->prompt_case == MOE__GENERATE_REQUEST__PROMPT_IDS && g->ids->n_ids == 3 && g->ids->ids[2] == 7);
        CHECK(g->has_stream && !g->stream && !g->sampling && !g->has_max_tokens);
        CHECK(g->has_deadline_ms && g->deadline_ms == 1500);
    }

    /* --chat: the messages as in the file; add_generation_prompt only sent when false. */
    char path[600];
    snprintf(path, sizeof path, "%s/conv.json", g_dir);
    for (int k = 0; k < 2; k++) {
        FILE *jf = fopen(path, "w");
        fprintf(jf, "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                    "{\"role\":\"user\",\"content\":\"Hi \\\"add_generation_prompt\\\": \\u00e9\"}]%s}",
                k ? ", \"add_generation_prompt\" : false" : "");
        fclose(jf);
        fake_reset(f, SC_ONE_CHUNK);
        rc = fake_run(f, ARGS("--connect", g_ep, "--chat", path));
        CHECK_MSG(rc == 0 && !strcmp(f->ch.out, "x\n"), "exit %d, stdout '%s', stderr: %s", rc, f->ch.out, f->ch.err);
        if (f->n_gens == 1) {
            Moe__GenerateRequest *g = f->gens[0]->generate;
            CHECK(g->prompt_case == MOE__GENERATE_REQUEST__PROMPT_CHAT && g->chat->n_messages == 2);
            CHECK(!strcmp(g->chat->messages[0]->role, "system") && !strcmp(g->chat->messages[1]->role, "user"));
            CHECK(!strcmp(g->chat->messages[1]->content, "Hi \"add_generation_prompt\": \xc3\xa9"));
            if (k == 0) CHECK(!g->chat->has_add_generation_prompt);
            else CHECK(g->chat->has_add_generation_prompt && !g->chat->add_generation_prompt);
        }
    }
}

static void test_gaps(fake *f)
{
    fake_reset(f, SC_GAP);
    int rc = fake_run(f, ARGS("--connect", g_ep, "--prompt", "x"));
    CHECK_MSG(rc == 1, "gap: exit %d", rc);
    CHECK_MSG(!strcmp(f->ch.out, "ab\n"), "gap: stdout '%s'", f->ch.out);
    CHECK_CONTAINS(f->ch.err, "chunk index 3 where 2 was due (a gap)");
    CHECK_CONTAINS(f->ch.err, "error protocol_error");
    fake_await(f, &f->n_cancel, 1);
    CHECK(f->n_cancel == 1 && !strcmp(f->cancels[0], "r0"));
    CHECK_MSG(!strstr(f->ch.err, "not in flight"), "late messages of a cancelled request reported: %s", f->ch.err);

    /* No finish after the cancel: the client waits a short while, not forever. */
    fake_reset(f, SC_GAP);
    f->ignore_cancel = true;
    double t0 = moe_now();
    rc = fake_run(f, ARGS("--connect", g_ep, "--prompt", "x"));
    fake_await(f, &f->n_cancel, 1);
    CHECK_MSG(rc == 1 && f->n_cancel == 1, "gap, silent server: exit %d", rc);
    CHECK_MSG(moe_now() - t0 < 10, "gap, silent server: %.1f s", moe_now() - t0);

    /* More tokens than max_tokens. */
    fake_reset(f, SC_STREAM);
    rc = fake_run(f, ARGS("--connect", g_ep, "--prompt", "x", "--max-tokens", "4"));
    fake_await(f, &f->n_cancel, 1);
    CHECK_MSG(rc == 1 && f->n_cancel == 1, "too many tokens: exit %d", rc);
    CHECK_CONTAINS(f->ch.err, "5 tokens, more than the 4 asked for");
    CHECK_MSG(!strcmp(f->ch.out, "Hello,\n"), "too many tokens: stdout '%s'", f->ch.out);

    fake_reset(f, SC_OVERLAP);
    rc = fake_run(f, ARGS("--connect", g_ep, "--ids", "1", "--ids-out"));
    CHECK_MSG(rc == 1, "overlap: exit %d", rc);
    CHECK_MSG(!strcmp(f->ch.out, "1 2\n"), "overlap: stdout '%s'", f->ch.out);
    CHECK_CONTAINS(f->ch.err, "chunk index 1 where 2 was due (an overlap)");
    fake_await(f, &f->n_cancel, 1);
    CHECK(f->n_cancel == 1);
}

static void test_replies(fake *f)
{
    static const struct {
        reply rep;
        int exit;
        const char *err;
    } cases[] = {
        {{R_ERROR, MOE__CODE__QUEUE_FULL, 0, "queue is full"}, 1, "error queue_full: queue is full"},
        {{R_ERROR, MOE__CODE__BAD_SAMPLING, 0, "sampling.top_p = 2"}, 1, "error bad_sampling: sampling.top_p = 2"},
        {{R_FINISH, 0, MOE__END_REASON__END_DEADLINE, NULL}, 1, "error deadline_exceeded"},
        {{R_FINISH, MOE__CODE__WORKER_LOST, MOE__END_REASON__END_ERROR, "rank 1 lost"}, 1,
         "error worker_lost: rank 1 lost"},
        {{R_FINISH, 0, MOE__END_REASON__END_CANCELLED, NULL}, 1, "error cancelled"},
        {{R_FINISH, 0, MOE__END_REASON__END_STOP, NULL}, 0, "finish: stop prompt=1 completion=0"},
        {{R_FINISH, 0, MOE__END_REASON__END_LENGTH, NULL}, 0, "finish: length"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fake_reset(f, SC_REPLY);
        f->rep = cases[i].rep;
        int rc = fake_run(f, ARGS("--connect", g_ep, "--prompt", "x", "--usage"));
        CHECK_MSG(rc == cases[i].exit, "case %zu: exit %d, want %d; stderr: %s", i, rc, cases[i].exit, f->ch.err);
        CHECK_CONTAINS(f->ch.err, cases[i].err);
    }

    fake_reset(f, SC_BAD_HELLO);
    int rc = fake_run(f, ARGS("--connect", g_ep, "--prompt", "x"));
    CHECK_MSG(rc == 1, "bad hello: exit %d", rc);
    CHECK_CONTAINS(f->ch.err, "bad_version");

    /* Nothing comes back: the timeout exit; heartbeats do not count as answers. */
    fake_reset(f, SC_NONE);
    double t0 = moe_now();
    rc = fake_run(f, ARGS("--connect", g_ep, "--prompt", "x", "--timeout", "0.3", "--heartbeat-ms", "50"));
    CHECK_MSG(rc == 3, "timeout: exit %d", rc);
    CHECK_CONTAINS(f->ch.err, "error timeout: no answer from ipc://");

    CHECK(moe_now() - t0 >= 0.3);
    CHECK(f->n_gen == 1 && f->n_hb >= 2);

    /* Silence after a hello reply reads differently. */
    fake_reset(f, SC_HEARTBEAT);
    rc = fake_run(f, ARGS("--connect", g_ep, "--prompt", "x", "--timeout", "0.2", "--heartbeat-ms", "1000"));
    CHECK_MSG(rc == 3, "timeout after hello: exit %d", rc);
    CHECK_CONTAINS(f->ch.err, "error timeout: no answer from the server for 0.2 s (heartbeat echoes do not count)");
}

static void test_garbage(fake *f)
{
    fake_reset(f, SC_GARBAGE);
    int rc = fake_run(f, ARGS("--connect", g_ep, "--prompt", "x", "-v"));
    CHECK_MSG(rc == 0, "garbage: exit %d, stderr: %s", rc, f->ch.err);
    CHECK_MSG(!strcmp(f->ch.out, "ok\n"), "garbage: stdout '%s'", f->ch.out);
    CHECK_CONTAINS(f->ch.err, "bad frame from the server");
    CHECK_CONTAINS(f->ch.err, "chunk for request 'r9', which is not in flight (ignored)");
    CHECK_CONTAINS(f->ch.err, "finish for request 'zz'");
    CHECK_CONTAINS(f->ch.err, "request 'r5'");
    CHECK_CONTAINS(f->ch.err, "index is missing");
    CHECK_CONTAINS(f->ch.err, "model fake-model");
}

static void test_fuzz(fake *f)
{
    int capped = 0;
    for (int k = 0; k < 6; k++) {
        fake_reset(f, SC_FUZZ);
        f->hold = k; /* the seed */
        int rc = fake_run(f, k % 2 ? ARGS("--connect", g_ep, "--ids", "5", "--ids-out", "-v")
                               : ARGS("--connect", g_ep, "--prompt", "x"));
        CHECK_MSG(rc == 0 || rc == 1, "fuzz: exit %d, stderr: %s", rc, f->ch.err);
        int lines = 0;
        for (const char *p = f->ch.err; *p; p++) lines += *p == '\n';
        CHECK_MSG(lines <= 30, "fuzz: %d lines on stderr:\n%s", lines, f->ch.err);
        capped += strstr(f->ch.err, "further warnings are not shown") != NULL;
    }
    CHECK_MSG(capped > 0, "no run reached the warning cap");
}

static void test_heartbeat(fake *f)
{
    fake_reset(f, SC_HEARTBEAT);
    int rc = fake_run(f, ARGS("--connect", g_ep, "--prompt", "x", "--heartbeat-ms", "20"));
    CHECK_MSG(rc == 0, "heartbeat: exit %d, stderr: %s", rc, f->ch.err);
    CHECK(!strcmp(f->ch.out, "hb\n"));
    CHECK_MSG(f->n_hb_after_gen >= 3, "%d heartbeats after the request", f->n_hb_after_gen);
}

static void test_sigint(fake *f)
{
    fake_reset(f, SC_SIGINT);
    int rc = fake_run(f, ARGS("--connect", g_ep, "--prompt", "x"));
    CHECK_MSG(rc == 130, "sigint: exit %d, stderr: %s", rc, f->ch.err);
    CHECK(f->killed);
    CHECK_MSG(!strcmp(f->ch.out, "Hel\n"), "sigint: stdout '%s'", f->ch.out);
    fake_await(f, &f->n_cancel, 1);
    CHECK(f->n_cancel == 1 && !strcmp(f->cancels[0], "r0"));

    /* SIGTERM does the same, with its own exit status. */
    fake_reset(f, SC_SIGINT);
    f->kill_sig = SIGTERM;
    rc = fake_run(f, ARGS("--connect", g_ep, "--prompt", "x"));
    CHECK_MSG(rc == 143, "sigterm: exit %d, stderr: %s", rc, f->ch.err);
    CHECK_MSG(!strcmp(f->ch.out, "Hel\n"), "sigterm: stdout '%s'", f->ch.out);
    fake_await(f, &f->n_cancel, 1);
    CHECK(f->n_cancel == 1);

    /* A second SIGINT stops the wait for a Finish that does not come. */
    fake_reset(f, SC_SIGINT);
    f->silent_cancel = true;
    double t0 = moe_now();
    rc = fake_run(f, ARGS("--connect", g_ep, "--prompt", "x"));
    const double took = moe_now() - t0;
    CHECK_MSG(rc == 130, "second sigint: exit %d, stderr: %s", rc, f->ch.err);
    CHECK(f->killed_twice && f->n_cancel == 1); /* the Cancel is what sent the second SIGINT */
    CHECK_CONTAINS(f->ch.err, "error cancelled: interrupted again");
    CHECK_MSG(took < 1.5, "the second SIGINT took %.2f s to act", took);

    /* Many: every request in flight is cancelled, the rest are not sent. */
    char path[600];
    snprintf(path, sizeof path, "%s/sigint.txt", g_dir);
    FILE *rf = fopen(path, "w");
    fputs("ids:1 4\nids:2 4\nids:3 4\nids:4 4\n", rf);
    fclose(rf);
    fake_reset(f, SC_SIGINT_FILE);
    f->hold = 2;
    rc = fake_run(f, ARGS("--connect", g_ep, "--file", path, "--concurrency", "2"));
    CHECK_MSG(rc == 130, "sigint file: exit %d, stderr: %s", rc, f->ch.err);
    fake_await(f, &f->n_cancel, 2);
    CHECK(f->n_gen == 2 && f->n_cancel == 2);
    CHECK(f->n_cancel == 2 && ((!strcmp(f->cancels[0], "r0") && !strcmp(f->cancels[1], "r1")) ||
                               (!strcmp(f->cancels[0], "r1") && !strcmp(f->cancels[1], "r0"))));
    CHECK_MSG(!strcmp(f->ch.out, "1 error cancelled: cancelled on interrupt\n2 error cancelled: cancelled on interrupt\n"
                                 "3 error cancelled: not sent: interrupted\n4 error cancelled: not sent: interrupted\n"),
              "sigint file: stdout '%s'", f->ch.out);
}

static void test_file(fake *f)
{
    char path[600];
    snprintf(path, sizeof path, "%s/reqs.txt", g_dir);
    FILE *rf = fopen(path, "w");
    fputs("# a comment, then an empty line\n"
          "\n"
          "ids:1,2,3 4\n"
          "text:Hello world\t8 seed=42 top_k=5\n"
          "ids:7,8 4 temp=0.9\n"
          "text:fail me\t3\n"
          "text:tab\\there\\\\\t2 min_p=0.1\r\n"
          "ids:100 1 top_p=0.5 repeat_penalty=1.1 repeat_last_n=-1 deadline_ms=100\n"
          "ids:5,4,3,2,1 9\n"
          "text:last one\t1",
          rf);
    fclose(rf);
    const char *want_text = "3 i1\\n\\t3\n"
                            "4 Hello world!\n"
                            "5 i7\\n\\t2\n"
                            "6 error queue_full: queue is full\n"
                            "7 tab\\there\\\\!\n"
                            "8 i100\\n\\t1\n"
                            "9 i5\\n\\t5\n"
                            "10 last one!\n";
    const char *want_ids = "3 3 2 1\n"
                           "4 11\n"
                           "5 8 7\n"
                           "6 error queue_full: queue is full\n"
                           "7 9\n"
                           "8 100\n"
                           "9 1 2 3 4 5\n"
                           "10 8\n";
    for (int k = 0; k < 2; k++) {
        fake_reset(f, SC_FILE);
        f->hold = 3;
        f->total = 8;
        int rc = k ? fake_run(f, ARGS("--connect", g_ep, "--file", path, "--concurrency", "3", "--ids-out", "--temp",
                                      "0.5"))
                   : fake_run(f, ARGS("--connect", g_ep, "--file", path, "--concurrency=3", "--temp", "0.5"));
        CHECK_MSG(rc == 1, "file: exit %d (one request is refused), stderr: %s", rc, f->ch.err);
        CHECK_MSG(!strcmp(f->ch.out, k ? want_ids : want_text), "file: stdout:\n%s", f->ch.out);
        CHECK_MSG(f->max_inflight == 3, "at most %d in flight at once", f->max_inflight);
        CHECK(f->n_gen == 8 && f->n_bad == 0);
        CHECK_CONTAINS(f->ch.err, "requests 8  completed 7  failed 1  tokens 14");
        CHECK_CONTAINS(f->ch.err, "time to first chunk (ms, 7 requests): min ");
        /* Requests go out in input order with their own options over the flags. */
        if (f->n_gens == 8) {
            Moe__GenerateRequest *g1 = f->gens[1]->generate, *g2 = f->gens[2]->generate, *g5 = f->gens[5]->generate;
            CHECK(!strcmp(f->gens[0]->generate->request_id, "r0") && !strcmp(g1->request_id, "r1"));
            CHECK(!strcmp(g1->text, "Hello world") && g1->max_tokens == 8);
            CHECK(g1->sampling->has_seed && g1->sampling->seed == 42 && g1->sampling->top_k == 5);
            CHECK(g1->sampling->temperature == 0.5f && g2->sampling->temperature == 0.9f && !g2->sampling->has_seed);
            CHECK(!strcmp(f->gens[4]->generate->text, "tab\there\\"));
            CHECK(f->gens[4]->generate->sampling->has_min_p && f->gens[4]->generate->sampling->min_p == 0.1f);
            CHECK(g5->sampling->top_p == 0.5f && g5->sampling->repetition_penalty == 1.1f &&
                  g5->sampling->repeat_last_n == -1 && g5->has_deadline_ms && g5->deadline_ms == 100);
        }
    }

    /* Nobody answers: every line is a timeout error, exit 3. */
    fake_reset(f, SC_NONE);
    int rc0 = fake_run(f, ARGS("--connect", g_ep, "--file", path, "--timeout", "0.2", "--concurrency", "2"));
    CHECK_MSG(rc0 == 3, "file timeout: exit %d", rc0);
    CHECK_MSG(!strncmp(f->ch.out, "3 error timeout: no answer from ipc://", 38) && strstr(f->ch.out, "\n4 error timeout"),
              "file timeout: stdout '%s'", f->ch.out);
    CHECK_CONTAINS(f->ch.err, "requests 8  completed 0  failed 8");

    /* Many short requests: order kept, the concurrency bound reached and kept. */
    rf = fopen(path, "w");
    char *want = calloc(1, 300 * 32);
    size_t wl = 0;
    for (int i = 0; i < 300; i++) {
        fprintf(rf, "ids:%d,%d 2 seed=%d\n", i, i + 1, i);
        wl += (size_t)sprintf(want + wl, "%d %d %d\n", i + 1, i + 1, i);
    }
    fclose(rf);
    fake_reset(f, SC_FILE);
    f->hold = 16;
    f->total = 300;
    rc0 = fake_run(f, ARGS("--connect", g_ep, "--file", path, "--ids-out"));
    CHECK_MSG(rc0 == 0, "300 requests: exit %d, stderr: %s", rc0, f->ch.err);
    CHECK_MSG(!strcmp(f->ch.out, want), "300 requests: output differs");
    CHECK_MSG(f->max_inflight == 16, "300 requests: at most %d in flight", f->max_inflight);
    CHECK_CONTAINS(f->ch.err, "requests 300  completed 300  failed 0  tokens 600");
    free(want);

    /* All good: exit 0, and one at a time keeps at most one in flight. */
    rf = fopen(path, "w");
    fputs("ids:1,2 2\nids:3 2\ntext:a b\t2\n", rf);
    fclose(rf);
    fake_reset(f, SC_FILE);
    f->hold = 1;
    f->total = 3;
    int rc = fake_run(f, ARGS("--connect", g_ep, "--file", path, "--concurrency", "1"));
    CHECK_MSG(rc == 0, "file: exit %d, stderr: %s", rc, f->ch.err);
    CHECK_MSG(!strcmp(f->ch.out, "1 i1\\n\\t2\n2 i3\\n\\t1\n3 a b!\n"), "stdout:\n%s", f->ch.out);
    CHECK(f->max_inflight == 1);
    CHECK_CONTAINS(f->ch.err, "requests 3  completed 3  failed 0");

    /* A bad line gets its own error where its result would be; the others
     * run, with the file's stop strings and ids (or the flags' ones). */
    rf = fopen(path, "w");
    fputs("1,2 2 stop=\\n\\n stop=a\\sb stop_id=9\n"
          "ids:1 0\n"
          "text:x\t2 top_p=2\n"
          "ids:3 2 stop_id=1 stop_id=2 stop_id=3 stop_id=4 stop_id=5 stop_id=6 stop_id=7 stop_id=8 stop_id=9\n"
          "bogus\n"
          "text:ok\t1\n",
          rf);
    fclose(rf);
    fake_reset(f, SC_FILE);
    f->hold = 2;
    f->total = 2;
    rc = fake_run(f, ARGS("--connect", g_ep, "--file", path, "--stop", "XY", "--stop-id", "4"));
    CHECK_MSG(rc == 1, "bad lines: exit %d, stderr: %s", rc, f->ch.err);
    CHECK_MSG(!strcmp(f->ch.out, "1 i1\\n\\t2\n"
                                 "2 error bad_line: line 2: max_tokens: 0 only scores a prompt (prompt_logprobs=1); the "
                                 "server takes 1..1048576\n"
                                 "3 error bad_line: line 3: top_p = 2 is out of range (0, 1]\n"
                                 "4 error bad_line: line 4: stop_id: the server takes at most 8 stop ids\n"
                                 "5 error bad_line: line 5: a request starts with 'ids:', 'text:' or a token id list "
                                 "(1,2,3)\n"
                                 "6 ok!\n"),
              "bad lines: stdout:\n%s", f->ch.out);
    CHECK_CONTAINS(f->ch.err, "requests 6  completed 2  failed 4");
    CHECK(f->n_gen == 2);
    if (f->n_gens == 2) {
        const Moe__GenerateRequest *g0 = f->gens[0]->generate, *g1 = f->gens[1]->generate;
        CHECK(g0->n_stop == 2 && !strcmp(g0->stop[0], "\n\n") && !strcmp(g0->stop[1], "a b"));
        CHECK(g0->n_stop_ids == 1 && g0->stop_ids[0] == 9 && g0->max_tokens == 2);
        CHECK(g1->n_stop == 1 && !strcmp(g1->stop[0], "XY") && g1->n_stop_ids == 1 && g1->stop_ids[0] == 4);
    }
    /* Every line bad: each reported, nothing sent, exit 1. */
    rf = fopen(path, "w");
    fputs("ids:1 0\n# fine\nids:x 2\n", rf);
    fclose(rf);
    fake_reset(f, SC_FILE);
    rc = fake_run(f, ARGS("--connect", g_ep, "--file", path));
    CHECK_MSG(rc == 1 && f->n_gen == 0, "all bad: exit %d, %d sent", rc, f->n_gen);
    CHECK_MSG(!strncmp(f->ch.out, "1 error bad_line: line 1: max_tokens: 0", 39) &&
                  strstr(f->ch.out, "\n3 error bad_line: line 3: ids: id 1 ('x') is not a token id\n"),
              "all bad: stdout:\n%s", f->ch.out);

    /* --file - reads the requests from stdin. */
    fake_reset(f, SC_FILE);
    f->hold = 2;
    f->total = 2;
    g_stdin = "ids:4,5 2\n#\ntext:z\t1\n";
    rc = fake_run(f, ARGS("--connect", g_ep, "--file", "-", "--ids-out"));
    g_stdin = NULL;
    CHECK_MSG(rc == 0 && !strcmp(f->ch.out, "1 5 4\n3 1\n"), "stdin: exit %d, stdout:\n%s", rc, f->ch.out);
}

static void test_flags(fake *f)
{
    char bad[600], good[600], conv[600];
    snprintf(bad, sizeof bad, "%s/bad.txt", g_dir);
    snprintf(good, sizeof good, "%s/good.txt", g_dir);
    snprintf(conv, sizeof conv, "%s/badconv.json", g_dir);
    FILE *rf = fopen(bad, "w");
    fputs("# only comments\n\n", rf);
    fclose(rf);
    rf = fopen(good, "w");
    fputs("ids:1 2\n", rf);
    fclose(rf);
    rf = fopen(conv, "w");
    fputs("{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", rf);
    fclose(rf);
    struct {
        const char *const *args;
        const char *err;
    } cases[] = {
        {ARGS("--prompt", "x"), "--connect ENDPOINT is required"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--ids", "1"), "exactly one of"},
        {ARGS("--connect", g_ep), "exactly one of"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--top-p", "1.5"), "--top-p: 1.5 is out of range"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--top-p", "0"), "--top-p: 0 is out of range (0, 1]"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--temp", "-1"), "--temp"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--temp", "nan"), "--temp: 'nan' is not a number"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--max-tokens", "0"), "--max-tokens 0 only scores a prompt"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--logprobs", "21"), "--logprobs: 21 is out of range"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--prompt-logprobs"), "--prompt-logprobs needs --logprobs N"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--echo", "x"), "unexpected argument"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--min-tokens", "-1"), "--min-tokens"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--max-tokens", "12x"), "--max-tokens: '12x' is not an integer"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--seed", "-1"), "--seed: '-1' is not an unsigned integer"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--seed", "18446744073709551616"), "does not fit 64 bits"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--top-k", "-1"), "--top-k"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--min-p", "1.01"), "--min-p"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--repeat-penalty", "0"), "--repeat-penalty"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--repeat-last-n", "-2"), "--repeat-last-n"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--deadline-ms", "0"), "--deadline-ms"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--stop-id", "-3"), "--stop-id"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--stop", ""), "--stop: a stop string has 1..256 bytes"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--heartbeat-ms", "5"), "--heartbeat-ms"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--timeout", "0"), "--timeout"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--bogus"), "unknown flag --bogus"},
        {ARGS("--connect", g_ep, "--prompt", "x", "stray"), "unexpected argument 'stray'"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--max-tokens"), "--max-tokens needs a value"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--max-tokens", "5", "--max-tokens", "6"), "given twice"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--no-stream=1"), "--no-stream takes no value"},
        {ARGS("--connect", g_ep, "--prompt", ""), "--prompt: the prompt is empty"},
        {ARGS("--connect", g_ep, "--ids", "1,x"), "--ids: id 2 ('x') is not a token id"},
        {ARGS("--connect", g_ep, "--ids", "1,2147483648"), "--ids: id 2"},
        {ARGS("--connect", g_ep, "--prompt", "x", "--concurrency", "4"), "--concurrency goes with --file"},
        {ARGS("--connect", g_ep, "--file", good, "--concurrency", "0"), "--concurrency: 0 is out of range"},
        {ARGS("--connect", g_ep, "--file", good, "--usage"), "--usage is for a single request"},
        {ARGS("--connect", g_ep, "--file", bad), "bad.txt: no requests in the file"},
        {ARGS("--connect", "localhost", "--prompt", "x"), "HOST:PORT (tcp:// is implied), tcp://HOST:PORT, ipc:///PATH"},
        {ARGS("--connect", "http://localhost:80", "--prompt", "x"), "'http://localhost:80' is not a ZMQ endpoint"},
        {ARGS("--connect", g_ep, "--file", "/nonexistent/reqs"), "/nonexistent/reqs: cannot open: No such file"},
        {ARGS("--connect", g_ep, "--chat", "/nonexistent/c.json"), "--chat"},
        {ARGS("--connect", g_ep, "--chat", conv), "holds a NUL character"},
        {ARGS("--connect", "nonsense://x", "--prompt", "x"), "nonsense://x"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fake_reset(f, SC_NONE);
        int rc = fake_run(f, cases[i].args);
        CHECK_MSG(rc == 2, "flags case %zu: exit %d, stderr: %s", i, rc, f->ch.err);
        CHECK_CONTAINS(f->ch.err, cases[i].err);
        CHECK(f->n_gen == 0);
    }
    /* HOST:PORT is tcp://HOST:PORT: accepted, and the timeout names it. */
    fake_reset(f, SC_NONE);
    CHECK(fake_run(f, ARGS("--connect", "127.0.0.1:1", "--prompt", "x", "--timeout", "0.2")) == 3);
    CHECK_CONTAINS(f->ch.err, "no answer from tcp://127.0.0.1:1 in 0.2 s");
    fake_reset(f, SC_NONE);
    CHECK(fake_run(f, ARGS("--help")) == 0 && strstr(f->ch.out, "usage: moe-client") && strstr(f->ch.out, "text:<prompt><TAB>"));
}

int main(void)
{
    const char *b = getenv("MOE_BIN");
    if (!b) {
        fprintf(stderr, "MOE_BIN is not set\n");
        return 2;
    }
    snprintf(g_bin, sizeof g_bin, "%s/moe-client", b);
    snprintf(g_dir, sizeof g_dir, "/tmp/moe-client-test-XXXXXX");
    if (!mkdtemp(g_dir)) return 2;
    signal(SIGPIPE, SIG_IGN);

    moe_err err = {{0}};
    moe_link_ctx *ctx = NULL;
    fake f;
    memset(&f, 0, sizeof f);
    moe_link_opts o;
    moe_link_opts_default(&o, &moe__client_msg__descriptor);
    CHECK(moe_link_endpoint_ipc(g_ep, sizeof g_ep, g_dir, "coord", &err) == MOE_OK);
    CHECK(moe_link_ctx_init(&ctx, &err) == MOE_OK);
    if (moe_link_bind(&f.srv, ctx, g_ep, &o, &err)) {
        fprintf(stderr, "bind %s: %s\n", g_ep, err.msg);
        return 1;
    }

    test_stream(&f);
    test_gaps(&f);
    test_replies(&f);
    test_garbage(&f);
    test_fuzz(&f);
    test_heartbeat(&f);
    test_sigint(&f);
    test_file(&f);
    test_flags(&f);

    fake_reset(&f, SC_NONE);
    moe_link_close(f.srv);
    moe_link_ctx_free(ctx);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", g_dir);
    return check_summary("client_test");
}
