/*
 * moe-client — the command-line client of moe-coordinator.
 *
 *   moe-client --connect EP --prompt TEXT [options]      one request, streamed
 *   moe-client --connect EP --file REQS [--concurrency N] many, in input order
 *
 * The client is one DEALER (proto/link.h) and a single-threaded loop:
 * Hello first, then up to --concurrency GenerateRequests in flight, chunks
 * reassembled by index (a gap or an overlap is a protocol error for that
 * request, which is then cancelled), one Finish or Error per request,
 * a Heartbeat every --heartbeat-ms so that the coordinator keeps our
 * requests, and Cancel for everything in flight on SIGINT/SIGTERM.
 * Whatever the server sends is untrusted: a frame that does not decode or
 * validate, or that names a request we do not have in flight, is reported
 * (a bounded number of times) and ignored.
 *
 * Exit status: 0 every request finished normally (stop or length);
 * 1 a request was refused or failed (Error, Finish with error, deadline or
 * cancelled by the server, protocol error); 2 bad flags or a bad request
 * file; 3 timeout (nothing from the server for --timeout seconds while
 * work was outstanding); 130 interrupted by SIGINT (143 by SIGTERM).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "chat.h"
#include "client_req.h"
#include "link.h"

/* Interrupted: 128 + the signal (130 SIGINT, 143 SIGTERM), as shells report it. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_FLAGS = 2, EXIT_TIMEOUT = 3 };

#define MAX_STOP 16           /* the protocol's limits (docs/protocol.md) */
#define MAX_STOP_LEN 256
#define MAX_STOP_IDS 8
#define MAX_CONCURRENCY 4096
#define MAX_FILE_BYTES ((size_t)1 << 30)
#define CANCEL_WAIT_S 2.0     /* how long a cancelled request may take to finish */
#define MAX_WARNINGS 20       /* then further ones are only counted */
#define SEND_TIMEOUT_MS 500   /* a blocking send (cancel) waits no longer for room */
#define MAX_TEXT_BYTES ((size_t)64 << 20) /* text kept for one request of a --file run */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moe-client --connect ENDPOINT (--prompt TEXT | --ids 1,2,3 | --chat FILE.json) [options]\n"
            "       moe-client --connect ENDPOINT --file REQS [--concurrency N] [options]\n"
            "Sends generation requests to moe-coordinator and prints what comes back.\n"
            "\n"
            "  --connect EP          the coordinator's client endpoint (tcp://HOST:PORT, ipc:///PATH)\n"
            "One request (text streamed to stdout as it arrives, a newline at the end):\n"
            "  --prompt TEXT         raw text, tokenized by the server\n"
            "  --ids LIST            token ids, comma-separated (e.g. 1,2,3)\n"
            "  --chat FILE.json      {\"messages\":[{\"role\":..,\"content\":..}],\"add_generation_prompt\":b}\n"
            "                        rendered by the server's chat template; add_generation_prompt\n"
            "                        is true unless the file says false\n"
            "  --usage               print \"finish: <reason> prompt=<n> completion=<n>\" to stderr\n"
            "Many requests:\n"
            "  --file REQS           one request per line (- reads stdin), run concurrently; one line per\n"
            "                        request in input order: \"<line> <text>\" (\\n \\t \\r \\\\ escaped,\n"
            "                        other control bytes as \\xHH) or \"<line> <ids>\" with --ids-out,\n"
            "                        or \"<line> error <code>: <message>\"; a summary goes to stderr\n"
            "                        (<code>: the server's code in lower case, e.g. queue_full, or\n"
            "                        cancelled, timeout, protocol_error, client_error)\n"
            "  --concurrency N       requests in flight at once, 1..%d (16)\n"
            "  REQS lines:  ids:1,2,3 <max_tokens> [name=value]...\n"
            "               text:<prompt><TAB><max_tokens> [name=value]...\n"
            "     in the prompt \\n \\t \\r \\\\ are a newline, tab, CR, backslash (other escapes are errors);\n"
            "     options seed= temp= top_p= top_k= min_p= repeat_penalty= repeat_last_n= deadline_ms=\n"
            "     override the flags; empty lines and lines starting with # are skipped (but counted)\n"
            "Generation (unset: the server's default):\n"
            "  --max-tokens N        1..%d\n"
            "  --temp T              0..1000 (0 greedy)\n"
            "  --top-p P             (0, 1]\n"
            "  --top-k K             >= 0 (0 off)\n"
            "  --min-p P             [0, 1]\n"
            "  --repeat-penalty R    (0, 100] (1 off)\n"
            "  --repeat-last-n N     >= -1 (-1 the whole history)\n"
            "  --seed S              0..2^64-1\n"
            "  --stop STR            stop string, repeatable (up to %d, 1..%d bytes each)\n"
            "  --stop-id ID          stop token id, repeatable (up to %d)\n"
            "  --no-stream           ask for the whole text in one chunk\n"
            "  --deadline-ms MS      the server ends the request after MS ms (1..86400000)\n"
            "Output and connection:\n"
            "  --ids-out             print the generated ids (space-separated) instead of text\n"
            "  --timeout S           give up when the server sends nothing for S seconds while\n"
            "                        requests are outstanding (60; 0.001..86400)\n"
            "  --heartbeat-ms MS     heartbeat period, 10..60000 (1000)\n"
            "  --name NAME           client name sent in the hello (moe-client)\n"
            "  -v, --verbose         print the server's hello (model, vocabulary, context) to stderr\n"
            "  -h, --help            this text\n"
            "Ctrl-C (SIGINT) or SIGTERM cancels every request in flight and waits up to %.0f s for\n"
            "their end; a second one stops waiting.\n"
            "Exit status: 0 all finished normally (stop/length), 1 a request was refused or failed,\n"
            "2 bad flags or request file, 3 timeout, 130 interrupted (143 on SIGTERM).\n",
            MAX_CONCURRENCY, MOE_CLIENT_MAX_TOKENS, MAX_STOP, MAX_STOP_LEN, MAX_STOP_IDS, CANCEL_WAIT_S);
}

/* ---- configuration --------------------------------------------------------- */

typedef struct cfg {
    const char *endpoint;
    const char *prompt, *ids, *chat, *file, *name;
    moe_client_params params;
    const char *stop[MAX_STOP];
    size_t n_stop;
    int32_t stop_ids[MAX_STOP_IDS];
    size_t n_stop_ids;
    bool no_stream, ids_out, show_usage, verbose;
    int concurrency;
    double timeout_s;
    int heartbeat_ms;
} cfg;

/* ---- requests -------------------------------------------------------------- */

typedef enum { REQ_PENDING = 0, REQ_SENT, REQ_DONE } req_state;

typedef struct req {
    int line;              /* in the request file (1 for a single request) */
    char id[24];           /* "r<index>" */
    moe_client_line spec;  /* prompt and parameters */
    req_state state;
    bool abandoned;        /* failed on our side and cancelled: its late messages are expected */
    double abandon_until;  /* ... until then */
    uint32_t next_index;   /* the index the next chunk must carry */
    int32_t *ids;          /* generated ids, [n_ids] */
    size_t n_ids, cap_ids;
    char *text;            /* generated text (file mode; single mode prints it at once) */
    size_t text_len, text_cap;
    double t_sent, t_first;/* t_first < 0 until the first chunk */
    /* outcome */
    bool ok;
    int reason;            /* MOE__END_REASON__* when a Finish came, -1 otherwise */
    char err_name[32];     /* a code name in lower case (queue_full ...) or a client-side one
                              (cancelled, timeout, protocol_error, client_error) */
    char *err_msg;
    bool has_usage;
    uint32_t prompt_tokens, completion_tokens;
} req;

typedef struct client {
    const cfg *c;
    moe_chat_conv *conv;   /* --chat */
    bool conv_gen_prompt_set;
    bool single;
    req *reqs;
    size_t n_reqs, next_send, n_inflight, n_done, next_print;
    size_t n_abandoned;    /* in flight after a protocol error, waiting for their finish */
    moe_link_ctx *ctx;
    moe_link *link;
    bool hello_sent, got_hello_reply;
    bool got_any;          /* a valid frame came from the server */
    bool send_stalled;     /* a blocking send timed out: the server is not reading */
    uint64_t hb_seq;
    double t_start, last_rx, last_hb;
    bool single_printed;   /* something of the single request is on stdout */
    bool interrupted, timed_out, stop_waiting;
    double cancel_until;
    int n_warnings;
    bool fatal;            /* the server refused the session (e.g. bad version) */
    bool out_error;        /* writing stdout failed */
} client;

static void warn(client *cl, const char *fmt, ...) MOE_PRINTF(2, 3);
static void warn(client *cl, const char *fmt, ...)
{
    if (++cl->n_warnings > MAX_WARNINGS) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("moe-client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (cl->n_warnings == MAX_WARNINGS) fputs("moe-client: (further warnings are not shown)\n", stderr);
}

/* ---- signals: a flag and a self-pipe so that the poll wakes up ------------ */

static volatile sig_atomic_t g_signals, g_first_signal;
static int g_sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    if (!g_signals) g_first_signal = sig;
    g_signals++;
    if (g_sig_pipe[1] >= 0) {
        char b = 1;
        ssize_t r = write(g_sig_pipe[1], &b, 1); /* full pipe: the flag is enough */
        (void)r;
    }
    errno = saved;
}

static int signals_install(moe_err *err)
{
    if (pipe(g_sig_pipe)) return moe_err_set(err, "pipe: %s", strerror(errno));
    for (int i = 0; i < 2; i++) {
        fcntl(g_sig_pipe[i], F_SETFL, fcntl(g_sig_pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(g_sig_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* stdio writes are restarted; the poll is woken by the pipe */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed stdout is a write error, not a silent death */
    return MOE_OK;
}

static void signals_drain(void)
{
    char b[64];
    while (read(g_sig_pipe[0], b, sizeof b) > 0) {
    }
}

/* ---- outcomes -------------------------------------------------------------- */

/* A code's name in lower case (queue_full), whatever the code table spells. */
static void code_name_lower(char *buf, size_t cap, const char *name)
{
    size_t i = 0;
    for (; name[i] && i + 1 < cap; i++) buf[i] = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] - 'A' + 'a') : name[i];
    buf[i] = 0;
}

static void req_fail(req *r, const char *name, const char *fmt, ...) MOE_PRINTF(3, 4);
static void req_fail(req *r, const char *name, const char *fmt, ...)
{
    r->ok = false;
    code_name_lower(r->err_name, sizeof r->err_name, name);
    free(r->err_msg);
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    r->err_msg = moe_xstrdup(buf);
}

static void req_done(client *cl, req *r)
{
    if (r->state == REQ_SENT) cl->n_inflight--;
    if (r->state == REQ_SENT && r->abandoned) cl->n_abandoned--;
    r->state = REQ_DONE;
    cl->n_done++;
}

/* "r17" -> the request, or NULL if the id is not one of ours. */
static req *req_find(client *cl, const char *id)
{
    if (!id || id[0] != 'r' || id[1] < '0' || id[1] > '9') return NULL;
    if (id[1] == '0' && id[2]) return NULL;
    size_t k = 0;
    for (const char *p = id + 1; *p; p++) {
        if (*p < '0' || *p > '9' || k > cl->n_reqs) return NULL;
        k = k * 10 + (size_t)(*p - '0');
    }
    return k < cl->n_reqs ? &cl->reqs[k] : NULL;
}

/* ---- sending --------------------------------------------------------------- */

static int send_msg(client *cl, Moe__ClientMsg *m, moe_err *err)
{
    return moe_link_send(cl->link, NULL, &m->base, MOE_LINK_DONTWAIT, err);
}

static void send_hello(client *cl)
{
    Moe__Hello h = MOE__HELLO__INIT;
    h.has_protocol_version = 1;
    h.protocol_version = MOE_PROTO_VERSION;
    h.client_name = (char *)cl->c->name;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_HELLO;
    m.hello = &h;
    moe_err err;
    int rc = send_msg(cl, &m, &err);
    if (rc == MOE_OK) cl->hello_sent = true;
    else if (rc != MOE_LINK_AGAIN) warn(cl, "sending the hello: %s", err.msg);
}

static void send_heartbeat(client *cl)
{
    Moe__Heartbeat h = MOE__HEARTBEAT__INIT;
    h.has_seq = 1;
    h.seq = cl->hb_seq++;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_HEARTBEAT;
    m.heartbeat = &h;
    moe_err err;
    int rc = send_msg(cl, &m, &err); /* a full queue: the next period tries again */
    if (rc != MOE_OK && rc != MOE_LINK_AGAIN) warn(cl, "sending a heartbeat: %s", err.msg);
}

static void send_cancel(client *cl, req *r)
{
    Moe__Cancel c = MOE__CANCEL__INIT;
    c.request_id = r->id;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_CANCEL;
    m.cancel = &c;
    moe_err err;
    /* Blocking (a cancel matters more than a heartbeat), but only for the
     * link's send timeout: a queue that stays full means the server is not
     * reading, and then no further cancel is tried. */
    if (cl->send_stalled) return;
    int rc = moe_link_send(cl->link, NULL, &m.base, 0, &err);
    if (rc == MOE_LINK_AGAIN) {
        cl->send_stalled = true;
        warn(cl, "the server is not reading: cancel %s (and any later ones) not sent", r->id);
    } else if (rc != MOE_OK) {
        warn(cl, "sending cancel %s: %s", r->id, err.msg);
    }
}

/* Builds the GenerateRequest of r and sends it: MOE_OK (sent), MOE_LINK_AGAIN
 * (queue full, try later) or MOE_ERR (r failed: it cannot be sent at all). */
static int send_request(client *cl, req *r)
{
    const cfg *c = cl->c;
    const moe_client_params *p = &r->spec.params;
    Moe__GenerateRequest g = MOE__GENERATE_REQUEST__INIT;
    Moe__TokenIds tids = MOE__TOKEN_IDS__INIT;
    Moe__Chat chat = MOE__CHAT__INIT;
    Moe__ChatMessage *cms = NULL, **cmp = NULL;
    Moe__Sampling s = MOE__SAMPLING__INIT;
    g.request_id = r->id;
    if (cl->conv) {
        size_t n = cl->conv->n;
        cms = moe_xcalloc(n ? n : 1, sizeof *cms);
        cmp = moe_xcalloc(n ? n : 1, sizeof *cmp);
        for (size_t i = 0; i < n; i++) {
            moe__chat_message__init(&cms[i]);
            cms[i].role = (char *)cl->conv->msgs[i].role;
            cms[i].content = (char *)cl->conv->msgs[i].content;
            cmp[i] = &cms[i];
        }
        chat.n_messages = n;
        chat.messages = cmp;
        /* Unset is the protocol's default (true); only an explicit false is sent. */
        if (cl->conv_gen_prompt_set && !cl->conv->add_generation_prompt) {
            chat.has_add_generation_prompt = 1;
            chat.add_generation_prompt = 0;
        }
        g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_CHAT;
        g.chat = &chat;
    } else if (r->spec.kind == MOE_CLIENT_LINE_IDS) {
        tids.n_ids = r->spec.n_ids;
        tids.ids = r->spec.ids;
        g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_IDS;
        g.ids = &tids;
    } else {
        g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_TEXT;
        g.text = r->spec.text;
    }
    /* Only what the user set: the server's defaults stay the server's. */
    bool any = false;
    if (p->has_temp) s.has_temperature = any = true, s.temperature = p->temp;
    if (p->has_top_p) s.has_top_p = any = true, s.top_p = p->top_p;
    if (p->has_top_k) s.has_top_k = any = true, s.top_k = p->top_k;
    if (p->has_min_p) s.has_min_p = any = true, s.min_p = p->min_p;
    if (p->has_repeat_penalty) s.has_repetition_penalty = any = true, s.repetition_penalty = p->repeat_penalty;
    if (p->has_repeat_last_n) s.has_repeat_last_n = any = true, s.repeat_last_n = p->repeat_last_n;
    if (p->has_seed) s.has_seed = any = true, s.seed = p->seed;
    if (any) g.sampling = &s;
    if (p->has_max_tokens) g.has_max_tokens = 1, g.max_tokens = p->max_tokens;
    if (p->has_deadline_ms) g.has_deadline_ms = 1, g.deadline_ms = p->deadline_ms;
    g.n_stop = c->n_stop;
    g.stop = (char **)c->stop;
    g.n_stop_ids = c->n_stop_ids;
    g.stop_ids = (int32_t *)c->stop_ids;
    if (c->no_stream) g.has_stream = 1, g.stream = 0;

    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_GENERATE;
    m.generate = &g;
    moe_err err;
    int rc = send_msg(cl, &m, &err);
    free(cms);
    free(cmp);
    if (rc == MOE_OK) {
        r->state = REQ_SENT;
        r->t_sent = moe_now();
        cl->n_inflight++;
    } else if (rc != MOE_LINK_AGAIN) {
        /* The link refuses frames above the cap before anything leaves. */
        req_fail(r, "client_error", "cannot send the request: %s", err.msg);
        req_done(cl, r);
        return MOE_ERR;
    }
    return rc;
}

/* ---- receiving ------------------------------------------------------------- */

static void on_chunk(client *cl, const Moe__TokenChunk *ch)
{
    req *r = req_find(cl, ch->request_id);
    if (!r || r->state != REQ_SENT) {
        warn(cl, "chunk for request '%s', which is not in flight (ignored)", ch->request_id);
        return;
    }
    if (r->abandoned) return;
    /* A completion never holds more tokens than asked for (the protocol's
     * cap when unset), and a stored text stays bounded: a server that
     * streams without end cannot exhaust our memory. */
    uint64_t max_ids = r->spec.params.has_max_tokens ? (uint64_t)r->spec.params.max_tokens : MOE_CLIENT_MAX_TOKENS;
    size_t tl = ch->text ? strlen(ch->text) : 0;
    bool bad_index = ch->index != r->next_index;
    bool too_many = !bad_index && (uint64_t)r->next_index + ch->n_ids > max_ids;
    bool too_long = !cl->single && r->text_len + tl > MAX_TEXT_BYTES;
    if (bad_index || too_many || too_long) {
        if (bad_index)
            req_fail(r, "protocol_error", "chunk index %u where %u was due (%s)", (unsigned)ch->index,
                     (unsigned)r->next_index, ch->index > r->next_index ? "a gap" : "an overlap");
        else if (too_many)
            req_fail(r, "protocol_error", "%" PRIu64 " tokens, more than the %" PRIu64 " asked for",
                     (uint64_t)r->next_index + ch->n_ids, max_ids);
        else
            req_fail(r, "protocol_error", "more than %zu bytes of text", MAX_TEXT_BYTES);
        warn(cl, "request %s: protocol error: %s; cancelling it", r->id, r->err_msg);
        /* Still in flight until its Finish (or a short wait): the cancel
         * gets delivered and the late messages are not reported. */
        r->abandoned = true;
        r->abandon_until = moe_now() + CANCEL_WAIT_S;
        cl->n_abandoned++;
        send_cancel(cl, r);
        return;
    }
    if (r->t_first < 0) r->t_first = moe_now();
    if (ch->n_ids) {
        if (r->n_ids + ch->n_ids > r->cap_ids) {
            size_t cap = r->cap_ids ? r->cap_ids : 64;
            while (cap < r->n_ids + ch->n_ids) cap *= 2;
            r->ids = moe_xrealloc(r->ids, cap * sizeof *r->ids);
            r->cap_ids = cap;
        }
        memcpy(r->ids + r->n_ids, ch->ids, ch->n_ids * sizeof *ch->ids);
        r->n_ids += ch->n_ids;
        r->next_index += (uint32_t)ch->n_ids; /* checked: index + n_ids <= max_ids */
    }
    if (cl->single) {
        if (cl->c->ids_out) {
            for (size_t i = 0; i < ch->n_ids; i++) printf(cl->single_printed || i ? " %d" : "%d", ch->ids[i]);
            if (ch->n_ids) cl->single_printed = true;
        } else if (tl) {
            fwrite(ch->text, 1, tl, stdout);
            cl->single_printed = true;
        }
        if (fflush(stdout)) cl->out_error = true;
    } else if (tl) {
        if (r->text_len + tl + 1 > r->text_cap) {
            size_t cap = r->text_cap ? r->text_cap : 256;
            while (cap < r->text_len + tl + 1) cap *= 2;
            r->text = moe_xrealloc(r->text, cap);
            r->text_cap = cap;
        }
        memcpy(r->text + r->text_len, ch->text, tl);
        r->text_len += tl;
    }
}

static void on_finish(client *cl, const Moe__Finish *f)
{
    req *r = req_find(cl, f->request_id);
    if (!r || r->state != REQ_SENT) {
        warn(cl, "finish for request '%s', which is not in flight (ignored)", f->request_id);
        return;
    }
    if (f->usage) {
        r->has_usage = true;
        r->prompt_tokens = f->usage->prompt_tokens;
        r->completion_tokens = f->usage->completion_tokens;
    }
    r->reason = f->reason;
    if (!r->abandoned) {
        const char *msg = f->message ? f->message : "";
        switch (f->reason) {
        case MOE__END_REASON__END_STOP:
        case MOE__END_REASON__END_LENGTH: r->ok = true; break;
        case MOE__END_REASON__END_CANCELLED:
            req_fail(r, "cancelled", "%s", *msg ? msg : cl->interrupted ? "cancelled on interrupt" : "cancelled by the server");
            break;
        case MOE__END_REASON__END_DEADLINE:
            req_fail(r, moe_msg_code_name(f->has_code ? (int)f->code : MOE__CODE__DEADLINE_EXCEEDED), "%s",
                     *msg ? msg : "the deadline passed");
            break;
        default:
            req_fail(r, moe_msg_code_name(f->has_code ? (int)f->code : MOE__CODE__INTERNAL), "%s",
                     *msg ? msg : "the request failed");
            break;
        }
    }
    req_done(cl, r);
}

/* Everything not yet finished ends with the same error. */
static void fail_all(client *cl, bool pending_too, const char *name, const char *msg)
{
    for (size_t i = 0; i < cl->n_reqs; i++) {
        req *r = &cl->reqs[i];
        if (r->state == REQ_DONE || (r->state == REQ_PENDING && !pending_too)) continue;
        if (!r->abandoned) req_fail(r, name, "%s", msg);
        req_done(cl, r);
    }
}

static void on_error(client *cl, const Moe__Error *e)
{
    char name[32];
    code_name_lower(name, sizeof name, moe_msg_code_name(e->code));
    const char *msg = e->message ? e->message : "";
    if (!e->request_id) {
        /* About the session, not one request.  A refused hello or a
         * draining server means nothing we send will run. */
        warn(cl, "server error %s: %s", name, msg);
        if (e->code == MOE__CODE__BAD_VERSION || e->code == MOE__CODE__SHUTTING_DOWN) {
            cl->fatal = true;
            fail_all(cl, true, name, msg);
        }
        return;
    }
    req *r = req_find(cl, e->request_id);
    if (!r || r->state != REQ_SENT) {
        warn(cl, "error %s for request '%s', which is not in flight (ignored): %s", name, e->request_id, msg);
        return;
    }
    if (!r->abandoned) req_fail(r, name, "%s", msg);
    req_done(cl, r);
}

static void on_hello_reply(client *cl, const Moe__HelloReply *h)
{
    if (cl->got_hello_reply) {
        warn(cl, "another hello reply (ignored)");
        return;
    }
    cl->got_hello_reply = true;
    if (!cl->c->verbose) return;
    fprintf(stderr, "moe-client: server %s, model %s, vocabulary %u, context %u\n",
            h->server_name ? h->server_name : "?", h->model ? h->model : "?",
            h->has_vocab_size ? (unsigned)h->vocab_size : 0u, h->has_max_context ? (unsigned)h->max_context : 0u);
}

/* At most this many frames per turn of the loop, so that a flooding
 * server cannot starve the heartbeats, the timeout and the signals. */
#define RECV_BURST 4096

static void receive_all(client *cl)
{
    for (int k = 0; k < RECV_BURST; k++) {
        moe_link_in in;
        moe_err err = {{0}};
        int rc = moe_link_recv(cl->link, &in, MOE_LINK_DONTWAIT, &err);
        if (rc == MOE_LINK_AGAIN) return;
        if (rc != MOE_OK) {
            warn(cl, "receiving: %s", err.msg);
            return;
        }
        if (in.code != MOE__CODE__OK) {
            char name[32];
            code_name_lower(name, sizeof name, moe_msg_code_name(in.code));
            warn(cl, "bad frame from the server (%zu bytes, %s: %s), ignored", in.len, name, err.msg);
            moe_link_in_clear(&in);
            continue;
        }
        cl->last_rx = moe_now();
        cl->got_any = true;
        const Moe__ServerMsg *m = (const Moe__ServerMsg *)in.msg;
        switch (m->body_case) {
        case MOE__SERVER_MSG__BODY_HELLO_REPLY: on_hello_reply(cl, m->hello_reply); break;
        case MOE__SERVER_MSG__BODY_CHUNK: on_chunk(cl, m->chunk); break;
        case MOE__SERVER_MSG__BODY_FINISH: on_finish(cl, m->finish); break;
        case MOE__SERVER_MSG__BODY_ERROR: on_error(cl, m->error); break;
        case MOE__SERVER_MSG__BODY_HEARTBEAT: break;
        default: warn(cl, "server message of unknown kind %d, ignored", (int)m->body_case); break;
        }
        moe_link_in_clear(&in);
    }
}

/* ---- output ---------------------------------------------------------------- */

static void print_ids(const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
}

/* File mode: the lines of every finished request at the head of the input
 * order; their buffers are freed once printed. */
static void print_ready(client *cl)
{
    while (cl->next_print < cl->n_reqs && cl->reqs[cl->next_print].state == REQ_DONE) {
        req *r = &cl->reqs[cl->next_print++];
        printf("%d ", r->line);
        if (!r->ok) {
            printf("error %s: ", r->err_name);
            moe_client_escape_write(stdout, r->err_msg, strlen(r->err_msg));
        } else if (cl->c->ids_out) {
            print_ids(r->ids, r->n_ids);
        } else {
            moe_client_escape_write(stdout, r->text ? r->text : "", r->text_len);
        }
        putchar('\n');
        if (fflush(stdout)) cl->out_error = true;
        free(r->text);
        r->text = NULL;
        r->text_cap = r->text_len = 0;
    }
}

static void print_summary(client *cl, double wall)
{
    size_t ok = 0, tokens = 0, n_first = 0;
    double *first = moe_xcalloc(cl->n_reqs ? cl->n_reqs : 1, sizeof *first);
    for (size_t i = 0; i < cl->n_reqs; i++) {
        req *r = &cl->reqs[i];
        ok += r->ok;
        tokens += r->n_ids;
        if (r->t_first >= 0) first[n_first++] = 1e3 * (r->t_first - r->t_sent);
    }
    fprintf(stderr, "requests %zu  completed %zu  failed %zu  tokens %zu  wall %.3f s  tokens/s %.1f\n", cl->n_reqs, ok,
            cl->n_reqs - ok, tokens, wall, wall > 0 ? (double)tokens / wall : 0.0);
    if (n_first) {
        double mn = first[0], mx = first[0];
        for (size_t i = 1; i < n_first; i++) mn = first[i] < mn ? first[i] : mn, mx = first[i] > mx ? first[i] : mx;
        fprintf(stderr, "time to first chunk (ms, %zu requests): min %.2f  median %.2f  max %.2f\n", n_first, mn,
                moe_client_median(first, n_first), mx);
    } else {
        fprintf(stderr, "time to first chunk: no request received a chunk\n");
    }
    free(first);
}

/* ---- the loop -------------------------------------------------------------- */

static void start_cancel(client *cl, double now)
{
    cl->interrupted = true;
    cl->cancel_until = now + CANCEL_WAIT_S;
    for (size_t i = 0; i < cl->n_reqs; i++) {
        req *r = &cl->reqs[i];
        if (r->state == REQ_PENDING) {
            req_fail(r, "cancelled", "not sent: interrupted");
            req_done(cl, r);
        } else if (r->state == REQ_SENT && !r->abandoned) {
            send_cancel(cl, r);
        }
    }
    cl->next_send = cl->n_reqs;
}

static int run(client *cl, moe_err *err)
{
    const cfg *c = cl->c;
    double hb = c->heartbeat_ms / 1e3;
    cl->t_start = cl->last_rx = cl->last_hb = moe_now();
    while (cl->n_done < cl->n_reqs && !cl->stop_waiting) {
        double now = moe_now();
        if (g_signals >= 2 && cl->interrupted) {
            cl->stop_waiting = true;
            fail_all(cl, true, "cancelled", "interrupted again: stopped waiting for the server");
            break;
        }
        if (g_signals && !cl->interrupted) {
            fputs("moe-client: interrupted, cancelling\n", stderr);
            start_cancel(cl, now);
        }
        if (cl->interrupted && now >= cl->cancel_until) {
            fail_all(cl, true, "cancelled", "interrupted (no finish from the server)");
            break;
        }
        /* Requests abandoned after a protocol error wait only briefly for
         * their finish; the scan runs only while there are some. */
        double abandon_next = now + 3600;
        if (cl->n_abandoned) {
            for (size_t i = 0; i < cl->n_reqs; i++) {
                req *r = &cl->reqs[i];
                if (r->state != REQ_SENT || !r->abandoned) continue;
                if (now >= r->abandon_until) req_done(cl, r);
                else if (r->abandon_until < abandon_next) abandon_next = r->abandon_until;
            }
        }
        if (!cl->hello_sent) send_hello(cl);
        bool blocked = !cl->hello_sent;
        while (cl->hello_sent && !cl->interrupted && !cl->fatal && cl->next_send < cl->n_reqs &&
               cl->n_inflight < (size_t)c->concurrency) {
            int rc = send_request(cl, &cl->reqs[cl->next_send]);
            if (rc == MOE_LINK_AGAIN) {
                blocked = true;
                break;
            }
            cl->next_send++;
        }
        if (now - cl->last_hb >= hb) {
            send_heartbeat(cl);
            cl->last_hb = now;
        }
        if (!cl->single) print_ready(cl);
        if (cl->n_done == cl->n_reqs) break;
        /* Anything outstanding (in flight, or waiting for room to be sent)
         * with nothing heard for the timeout: give up. */
        if (!cl->interrupted && now - cl->last_rx >= c->timeout_s) {
            cl->timed_out = true;
            for (size_t i = 0; i < cl->n_reqs; i++)
                if (cl->reqs[i].state == REQ_SENT && !cl->reqs[i].abandoned) send_cancel(cl, &cl->reqs[i]);
            char m[MOE_ERR_MSG_MAX];
            if (cl->got_any)
                snprintf(m, sizeof m, "nothing from the server for %g s", c->timeout_s);
            else /* connecting is silent in ZMQ: say what was tried */
                snprintf(m, sizeof m, "no answer from %.300s in %g s (is moe-coordinator listening there?)",
                         c->endpoint, c->timeout_s);
            fail_all(cl, true, "timeout", m);
            break;
        }
        double wait = cl->last_hb + hb - now;
        double t = cl->last_rx + c->timeout_s - now;
        if (t < wait) wait = t;
        if (cl->interrupted && cl->cancel_until - now < wait) wait = cl->cancel_until - now;
        if (abandon_next - now < wait) wait = abandon_next - now;
        int ms = wait <= 0 ? 0 : (int)(wait * 1e3) + 1;
        moe_link_poll_item it[2] = {{.link = cl->link, .want_out = blocked}, {.fd = g_sig_pipe[0]}};
        int n = moe_link_poll(it, 2, ms, err);
        if (n < 0) return MOE_ERR;
        if (it[1].in) signals_drain();
        if (it[0].in) receive_all(cl);
    }
    if (!cl->single) print_ready(cl);
    return MOE_OK;
}

/* ---- flags ----------------------------------------------------------------- */

/* Reads a whole file ("-": stdin). */
static int read_file(const char *path, char **out, size_t *len, moe_err *err)
{
    bool is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) return moe_err_set(err, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, r;
    char *b = moe_xmalloc(cap);
    while ((r = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n > MAX_FILE_BYTES) {
            if (!is_stdin) fclose(f);
            free(b);
            return moe_err_set(err, "%s: larger than %zu bytes", path, MAX_FILE_BYTES);
        }
        if (n == cap - 1) b = moe_xrealloc(b, cap *= 2);
    }
    bool bad = ferror(f);
    if (!is_stdin) fclose(f);
    if (bad) {
        free(b);
        return moe_err_set(err, "%s: read error", path);
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return MOE_OK;
}

/* Flags that take a value and their parameter names (--top-p -> top_p). */
static const struct {
    const char *flag, *param;
} k_param_flags[] = {
    {"--max-tokens", "max_tokens"},   {"--temp", "temp"},       {"--top-p", "top_p"},
    {"--top-k", "top_k"},             {"--min-p", "min_p"},     {"--repeat-penalty", "repeat_penalty"},
    {"--repeat-last-n", "repeat_last_n"}, {"--seed", "seed"}, {"--deadline-ms", "deadline_ms"},
};

static const char *const k_value_flags[] = {"--connect", "--prompt",  "--ids",     "--chat",
                                            "--file",    "--name",    "--stop",    "--stop-id",
                                            "--concurrency", "--timeout", "--heartbeat-ms"};

static bool value_flag_known(const char *flag)
{
    for (size_t k = 0; k < sizeof k_param_flags / sizeof *k_param_flags; k++)
        if (!strcmp(flag, k_param_flags[k].flag)) return true;
    for (size_t k = 0; k < sizeof k_value_flags / sizeof *k_value_flags; k++)
        if (!strcmp(flag, k_value_flags[k])) return true;
    return false;
}

static int set_once(const char **slot, const char *flag, const char *v, moe_err *err)
{
    if (*slot) return moe_err_set(err, "%s given twice", flag);
    *slot = v;
    return MOE_OK;
}

static int parse_flags(int argc, char **argv, cfg *c, bool *help, moe_err *err)
{
    memset(c, 0, sizeof *c);
    c->concurrency = -1;
    c->timeout_s = -1;
    c->heartbeat_ms = -1;
    bool seen_param[sizeof k_param_flags / sizeof *k_param_flags] = {0};
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            *help = true;
            return MOE_OK;
        }
        /* --flag=value or --flag value */
        char flag[64];
        const char *v = NULL;
        const char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
        if (eq && (size_t)(eq - a) < sizeof flag) {
            memcpy(flag, a, (size_t)(eq - a));
            flag[eq - a] = 0;
            v = eq + 1;
        } else {
            snprintf(flag, sizeof flag, "%s", a);
        }
        bool boolean = !strcmp(flag, "--no-stream") || !strcmp(flag, "--ids-out") || !strcmp(flag, "--usage") ||
                       !strcmp(flag, "-v") || !strcmp(flag, "--verbose");
        if (boolean) {
            if (v) return moe_err_set(err, "%s takes no value", flag);
            if (!strcmp(flag, "--no-stream")) c->no_stream = true;
            else if (!strcmp(flag, "--ids-out")) c->ids_out = true;
            else if (!strcmp(flag, "--usage")) c->show_usage = true;
            else c->verbose = true;
            continue;
        }
        if (strncmp(flag, "--", 2) || !flag[2]) return moe_err_set(err, "unexpected argument '%s' (see --help)", a);
        if (!value_flag_known(flag)) return moe_err_set(err, "unknown flag %s (see --help)", flag);
        if (!v) {
            if (i + 1 >= argc) return moe_err_set(err, "%s needs a value", flag);
            v = argv[++i];
        }
        size_t k;
        for (k = 0; k < sizeof k_param_flags / sizeof *k_param_flags; k++)
            if (!strcmp(flag, k_param_flags[k].flag)) break;
        if (k < sizeof k_param_flags / sizeof *k_param_flags) {
            if (seen_param[k]) return moe_err_set(err, "%s given twice", flag);
            seen_param[k] = true;
            if (moe_client_param_set(&c->params, k_param_flags[k].param, v, err))
                return moe_err_prefix(err, "%s", flag);
            continue;
        }
        int64_t iv;
        double dv;
        if (!strcmp(flag, "--connect")) {
            if (set_once(&c->endpoint, flag, v, err)) return MOE_ERR;
            if (!*v) return moe_err_set(err, "--connect: empty endpoint");
        } else if (!strcmp(flag, "--prompt")) {
            if (set_once(&c->prompt, flag, v, err)) return MOE_ERR;
            if (!*v) return moe_err_set(err, "--prompt: the prompt is empty");
        } else if (!strcmp(flag, "--ids")) {
            if (set_once(&c->ids, flag, v, err)) return MOE_ERR;
        } else if (!strcmp(flag, "--chat")) {
            if (set_once(&c->chat, flag, v, err)) return MOE_ERR;
        } else if (!strcmp(flag, "--file")) {
            if (set_once(&c->file, flag, v, err)) return MOE_ERR;
        } else if (!strcmp(flag, "--name")) {
            if (set_once(&c->name, flag, v, err)) return MOE_ERR;
            size_t l = strlen(v);
            if (l == 0 || l > 256) return moe_err_set(err, "--name: 1..256 bytes");
        } else if (!strcmp(flag, "--stop")) {
            if (c->n_stop == MAX_STOP) return moe_err_set(err, "--stop: at most %d stop strings", MAX_STOP);
            size_t l = strlen(v);
            if (l == 0 || l > MAX_STOP_LEN) return moe_err_set(err, "--stop: a stop string has 1..%d bytes", MAX_STOP_LEN);
            c->stop[c->n_stop++] = v;
        } else if (!strcmp(flag, "--stop-id")) {
            if (c->n_stop_ids == MAX_STOP_IDS) return moe_err_set(err, "--stop-id: at most %d stop ids", MAX_STOP_IDS);
            if (moe_parse_i64(v, 0, INT32_MAX, &iv, err)) return moe_err_prefix(err, "--stop-id");
            c->stop_ids[c->n_stop_ids++] = (int32_t)iv;
        } else if (!strcmp(flag, "--concurrency")) {
            if (c->concurrency >= 0) return moe_err_set(err, "%s given twice", flag);
            if (moe_parse_i64(v, 1, MAX_CONCURRENCY, &iv, err)) return moe_err_prefix(err, "--concurrency");
            c->concurrency = (int)iv;
        } else if (!strcmp(flag, "--timeout")) {
            if (c->timeout_s >= 0) return moe_err_set(err, "%s given twice", flag);
            if (moe_parse_f64(v, 0.001, 86400, &dv, err)) return moe_err_prefix(err, "--timeout");
            c->timeout_s = dv;
        } else if (!strcmp(flag, "--heartbeat-ms")) {
            if (c->heartbeat_ms >= 0) return moe_err_set(err, "%s given twice", flag);
            if (moe_parse_i64(v, 10, 60000, &iv, err)) return moe_err_prefix(err, "--heartbeat-ms");
            c->heartbeat_ms = (int)iv;
        } else {
            return moe_err_set(err, "unknown flag %s (see --help)", flag);
        }
    }
    if (!c->endpoint) return moe_err_set(err, "--connect ENDPOINT is required");
    int n_src = !!c->prompt + !!c->ids + !!c->chat + !!c->file;
    if (n_src != 1) return moe_err_set(err, "give exactly one of --prompt, --ids, --chat and --file");
    if (c->concurrency >= 0 && !c->file) return moe_err_set(err, "--concurrency goes with --file");
    if (c->show_usage && c->file) return moe_err_set(err, "--usage is for a single request (--file prints a summary)");
    if (c->concurrency < 0) c->concurrency = 16;
    if (c->timeout_s < 0) c->timeout_s = 60;
    if (c->heartbeat_ms < 0) c->heartbeat_ms = 1000;
    if (!c->name) c->name = "moe-client";
    return MOE_OK;
}

/* The requests of --file: one per non-skipped line. */
static int load_file(client *cl, moe_err *err)
{
    char *buf;
    size_t len;
    if (read_file(cl->c->file, &buf, &len, err)) return MOE_ERR;
    size_t cap = 64;
    cl->reqs = moe_xcalloc(cap, sizeof *cl->reqs);
    int line = 0, rc = MOE_OK;
    for (size_t pos = 0; pos < len && rc == MOE_OK;) {
        const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - s) : len - pos;
        pos += l + 1;
        line++;
        moe_client_line spec;
        if (moe_client_line_parse(s, l, &cl->c->params, &spec, err)) {
            rc = moe_err_prefix(err, "%s:%d", cl->c->file, line);
            break;
        }
        if (spec.kind == MOE_CLIENT_LINE_SKIP) continue;
        MOE_ASSERT(spec.params.has_max_tokens);
        if (cl->n_reqs == cap) {
            cl->reqs = moe_xrealloc(cl->reqs, 2 * cap * sizeof *cl->reqs);
            memset(cl->reqs + cap, 0, cap * sizeof *cl->reqs);
            cap *= 2;
        }
        cl->reqs[cl->n_reqs].line = line;
        cl->reqs[cl->n_reqs].spec = spec;
        cl->n_reqs++;
    }
    free(buf);
    if (rc == MOE_OK && cl->n_reqs == 0) rc = moe_err_set(err, "%s: no requests in the file", cl->c->file);
    return rc;
}

/* Whether the chat JSON sets add_generation_prompt itself: the parser
 * reads a missing key as false (the templates' default), but for a client
 * that asks for a completion the protocol's default (true) is the useful
 * one.  A quoted key is a key when ':' follows; inside a JSON string a
 * quote is escaped, so it cannot be mistaken for one. */
static bool json_has_key(const char *json, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = json; (p = strstr(p, key)); p += kl) {
        if (p == json || p[-1] != '"' || (p >= json + 2 && p[-2] == '\\') || p[kl] != '"') continue;
        const char *q = p + kl + 1;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
        if (*q == ':') return true;
    }
    return false;
}

static int load_single(client *cl, moe_chat_conv *conv, moe_err *err)
{
    const cfg *c = cl->c;
    cl->reqs = moe_xcalloc(1, sizeof *cl->reqs);
    cl->n_reqs = 1;
    req *r = &cl->reqs[0];
    r->line = 1;
    r->spec.params = c->params;
    if (c->prompt) {
        r->spec.kind = MOE_CLIENT_LINE_TEXT;
        r->spec.text = moe_xstrdup(c->prompt);
        r->spec.text_len = strlen(c->prompt);
    } else if (c->ids) {
        r->spec.kind = MOE_CLIENT_LINE_IDS;
        if (moe_client_ids_parse(c->ids, &r->spec.ids, &r->spec.n_ids, err)) return moe_err_prefix(err, "--ids");
    } else {
        char *json;
        size_t len;
        if (read_file(c->chat, &json, &len, err)) return moe_err_prefix(err, "--chat");
        int rc = moe_chat_conv_parse(conv, json, len, err);
        bool has_key = rc == MOE_OK && json_has_key(json, "add_generation_prompt");
        free(json);
        if (rc) return moe_err_prefix(err, "--chat %s", c->chat);
        if (conv->n == 0) return moe_err_set(err, "--chat %s: no messages", c->chat);
        for (size_t i = 0; i < conv->n; i++)
            if (strlen(conv->msgs[i].content) != conv->msgs[i].content_len)
                return moe_err_set(err, "--chat %s: message %zu holds a NUL character (\\u0000)", c->chat, i + 1);
        cl->conv = conv;
        cl->conv_gen_prompt_set = has_key;
        r->spec.kind = MOE_CLIENT_LINE_TEXT; /* unused: the chat goes instead */
    }
    return MOE_OK;
}

int main(int argc, char **argv)
{
    cfg c;
    bool help = false;
    moe_err err = {{0}};
    if (parse_flags(argc, argv, &c, &help, &err)) {
        fprintf(stderr, "moe-client: %s\n", err.msg);
        return EXIT_FLAGS;
    }
    if (help) {
        usage(stdout);
        return EXIT_OK;
    }

    client cl;
    memset(&cl, 0, sizeof cl);
    cl.c = &c;
    cl.single = !c.file;
    moe_chat_conv conv;
    memset(&conv, 0, sizeof conv);
    int rc = cl.single ? load_single(&cl, &conv, &err) : load_file(&cl, &err);
    int status = EXIT_OK;
    if (rc) {
        fprintf(stderr, "moe-client: %s\n", err.msg);
        status = EXIT_FLAGS;
        goto out;
    }
    for (size_t i = 0; i < cl.n_reqs; i++) {
        snprintf(cl.reqs[i].id, sizeof cl.reqs[i].id, "r%zu", i);
        cl.reqs[i].t_first = -1;
        cl.reqs[i].reason = -1;
    }
    if (signals_install(&err)) {
        fprintf(stderr, "moe-client: %s\n", err.msg);
        status = EXIT_FAIL;
        goto out;
    }

    moe_link_opts o;
    moe_link_opts_default(&o, &moe__server_msg__descriptor);
    o.send_timeout_ms = SEND_TIMEOUT_MS;
    if (moe_link_ctx_init(&cl.ctx, &err) || moe_link_connect(&cl.link, cl.ctx, c.endpoint, &o, &err)) {
        fprintf(stderr, "moe-client: %s\n", err.msg);
        status = cl.ctx ? EXIT_FLAGS : EXIT_FAIL; /* a bad endpoint is a bad flag */
        goto out;
    }
    if (run(&cl, &err)) {
        fprintf(stderr, "moe-client: %s\n", err.msg);
        status = EXIT_FAIL;
        goto out;
    }

    if (cl.single) {
        req *r = &cl.reqs[0];
        if (r->ok || cl.single_printed) putchar('\n');
        if (fflush(stdout)) cl.out_error = true;
        if (!r->ok) fprintf(stderr, "moe-client: error %s: %s\n", r->err_name, r->err_msg);
        if (c.show_usage && r->reason >= 0)
            fprintf(stderr, "finish: %s prompt=%u completion=%u\n", moe_msg_end_name(r->reason),
                    (unsigned)r->prompt_tokens, (unsigned)r->completion_tokens);
    } else {
        print_summary(&cl, moe_now() - cl.t_start);
    }
    size_t n_ok = 0;
    for (size_t i = 0; i < cl.n_reqs; i++) n_ok += cl.reqs[i].ok;
    if (cl.interrupted) status = 128 + (g_first_signal ? (int)g_first_signal : SIGINT);
    else if (cl.timed_out) status = EXIT_TIMEOUT;
    else if (n_ok < cl.n_reqs) status = EXIT_FAIL;
    if (cl.out_error || ferror(stdout)) {
        fprintf(stderr, "moe-client: writing the output failed\n");
        if (status == EXIT_OK) status = EXIT_FAIL;
    }

out:
    moe_link_close(cl.link);
    moe_link_ctx_free(cl.ctx);
    for (size_t i = 0; i < cl.n_reqs; i++) {
        moe_client_line_free(&cl.reqs[i].spec);
        free(cl.reqs[i].ids);
        free(cl.reqs[i].text);
        free(cl.reqs[i].err_msg);
    }
    free(cl.reqs);
    moe_chat_conv_free(&conv);
    return status;
}
