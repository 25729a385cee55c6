/*
 * moe-coordinator — takes requests from clients, tokenizes and validates
 * them, queues them (bounded), places each on the worker rank with the most
 * free cache, and streams the tokens back as the ranks sample them.
 *
 *   moe-coordinator --model FILE.gguf --listen EP --workers EP --ranks N
 *
 * Two ROUTER links: clients connect to --listen, the ranks of the worker
 * job (moe-worker --coordinator) to --workers.  Nothing is silently dropped
 * (ROUTER_MANDATORY); a client that reads slowly gets back-pressure: its
 * tokens wait here (the scheduler keeps every emitted token) until it can
 * take them.  Liveness is heartbeats both ways: a client that stops sending
 * them has its sequences released; a rank that stops sending them has its
 * requests end with a clear error.  SIGTERM drains: no new work, requests
 * in flight finish, then exit 0.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "gguf.h"
#include "link.h"
#include "msg.h"
#include "sched.h"
#include "tokenizer.h"

static void usage(FILE *f)
{
    fputs("usage: moe-coordinator --model FILE.gguf [options]\n"
          "Serves a worker job (moe-worker --coordinator) to clients (moe-client).\n"
          "  --model FILE           the GGUF the workers run (for its tokenizer and limits)\n"
          "  --listen EP            client endpoint (default tcp://127.0.0.1:5555)\n"
          "  --workers EP           worker endpoint (default tcp://127.0.0.1:5556)\n"
          "  --ranks N              ranks in the worker job (default 1); ready when all said hello\n"
          "  --queue N              queued requests before new ones are refused (default 256)\n"
          "  --max-running N        sequences per rank (default 16; the worker's --max-seqs)\n"
          "  --max-tokens N         default max_tokens of a request (default 256)\n"
          "  --max-frame BYTES      largest request frame (default 1 MiB)\n"
          "  --client-hwm N         messages queued to one client before it gets back-pressure (default 1000)\n"
          "  --client-sndbuf BYTES  kernel send buffer of the client socket (default: the system's)\n"
          "  --client-timeout-ms MS release a client's sequences after this silence (default 10000)\n"
          "  --worker-timeout-ms MS a rank silent this long is lost (default 5000)\n"
          "  --help                 this text\n",
          f);
}

typedef struct opts {
    const char *model, *listen, *workers;
    int64_t ranks, queue, max_running, max_tokens, max_frame, client_timeout_ms, worker_timeout_ms, client_hwm, client_sndbuf;
} opts;

static int parse_opts(int argc, char **argv, opts *o, moe_err *err)
{
    memset(o, 0, sizeof *o);
    o->listen = "tcp://127.0.0.1:5555";
    o->workers = "tcp://127.0.0.1:5556";
    o->ranks = 1;
    o->queue = 256;
    o->max_running = 16;
    o->max_tokens = 256;
    o->max_frame = MOE_MSG_MAX_FRAME_DEFAULT;
    o->client_timeout_ms = 10000;
    o->worker_timeout_ms = 5000;
    o->client_hwm = 1000;
    static const struct { const char *flag; size_t off; int64_t lo, hi; } ints[] = {
        {"--ranks", offsetof(opts, ranks), 1, 4096},
        {"--queue", offsetof(opts, queue), 1, 1 << 20},
        {"--max-running", offsetof(opts, max_running), 1, 1 << 16},
        {"--max-tokens", offsetof(opts, max_tokens), 1, 1 << 20},
        {"--max-frame", offsetof(opts, max_frame), 4096, 1 << 28},
        {"--client-timeout-ms", offsetof(opts, client_timeout_ms), 100, 86400000},
        {"--worker-timeout-ms", offsetof(opts, worker_timeout_ms), 100, 86400000},
        {"--client-hwm", offsetof(opts, client_hwm), 1, 1 << 20},
        {"--client-sndbuf", offsetof(opts, client_sndbuf), 0, 1 << 30},
    };
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) return 1;
        if (i + 1 >= argc) return moe_err_set(err, "%s: unknown flag or missing value (see --help)", f);
        const char *v = argv[++i];
        bool done = false;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0] && !done; k++) {
            if (strcmp(f, ints[k].flag)) continue;
            if (moe_parse_i64(v, ints[k].lo, ints[k].hi, (int64_t *)((char *)o + ints[k].off), err))
                return moe_err_prefix(err, "%s", f);
            done = true;
        }
        if (done) continue;
        if (!strcmp(f, "--model")) o->model = v;
        else if (!strcmp(f, "--listen")) o->listen = v;
        else if (!strcmp(f, "--workers")) o->workers = v;
        else return moe_err_set(err, "unknown flag %s (see --help)", f);
    }
    if (!o->model) return moe_err_set(err, "--model is required (see --help)");
    return MOE_OK;
}

/* ---- state ------------------------------------------------------------------ */

typedef struct client client;

/* The front end's side of one request (the scheduler's moe_req->owner). */
typedef struct reqctx {
    client *cl;
    char *id;                 /* the client's request id */
    moe_req *r;
    bool stream;
    bool finished;            /* Finish sent (or the client is gone) */
    Moe__Sampling sampling;   /* as received (flat: no pointers) */
    bool has_sampling;
    int32_t *stop_ids;
    size_t n_stop_ids;
    char **stop;              /* stop strings */
    size_t n_stop;
    size_t max_stop_len;
    moe_tok_stream *ts;
    int n_decoded;            /* tokens pushed through ts */
    int n_sent;               /* tokens sent to the client */
    char *text;               /* decoded text not yet sent */
    size_t text_len, text_cap;
    moe_end_reason end;       /* once known */
    int code;                 /* for END_ERROR */
    char message[MOE_ERR_MSG_MAX];
} reqctx;

struct client {
    moe_link_peer peer;
    double last_seen;
    int n_reqs;
};

typedef struct rank_info {
    bool known;
    moe_link_peer peer;
    double last_seen;
    uint64_t job_id;
    int64_t active;           /* from the last heartbeat */
    int64_t served;           /* sequences placed on it */
} rank_info;

/* A refusal that met back-pressure. */
#define MAX_PENDING_ERRORS 1024
typedef struct pending_error {
    moe_link_peer peer;
    char *id, *msg;
    int code;
    double since;
} pending_error;

typedef struct coord {
    opts o;
    moe_gguf *g;
    moe_tokenizer *tok;
    moe_chat *chat;           /* NULL: the model has no known template */
    char model_name[256];
    uint32_t vocab, max_context;
    moe_msg_limits lim;
    moe_link_ctx *lctx;
    moe_link *front, *back;
    moe_sched *s;
    rank_info *ranks;
    bool ready, draining;
    client **clients;
    int n_clients, cap_clients;
    reqctx **reqs;            /* in flight */
    int n_reqs, cap_reqs;
    int64_t deferred;         /* sends that met back-pressure (retried later) */
    pending_error pending[MAX_PENDING_ERRORS];
    int n_pending;
} coord;

static volatile sig_atomic_t g_term;
static void on_term(int sig) { (void)sig; g_term = 1; }

/* ---- sending -------------------------------------------------------------------- */

/* To a client: MOE_OK, or MOE_LINK_AGAIN (it is not reading: try later), or
 * gone (unreachable: the caller forgets it). */
static int to_client(coord *c, client *cl, Moe__ServerMsg *m)
{
    moe_err err;
    int rc = moe_link_send(c->front, &cl->peer, &m->base, MOE_LINK_DONTWAIT, &err);
    if (rc == MOE_ERR) moe_log(MOE_LOG_WARN, "send to a client failed: %s", err.msg);
    return rc;
}

static int try_error(coord *c, const moe_link_peer *peer, const char *request_id, int code, const char *msg)
{
    Moe__Error e = MOE__ERROR__INIT;
    e.request_id = (char *)request_id;
    e.has_code = true;
    e.code = (Moe__Code)code;
    e.message = (char *)msg;
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_ERROR;
    m.error = &e;
    moe_err err;
    int rc = moe_link_send(c->front, peer, &m.base, MOE_LINK_DONTWAIT, &err);
    if (rc == MOE_ERR) moe_log(MOE_LOG_WARN, "error reply failed: %s", err.msg);
    return rc;
}

/* A refusal.  A client at its high-water mark gets it later (the refusal
 * waits in a bounded list, retried with the token streams), not never. */
static void send_error(coord *c, const moe_link_peer *peer, const char *request_id, int code, const char *msg)
{
    if (try_error(c, peer, request_id, code, msg) != MOE_LINK_AGAIN) return;
    c->deferred++;
    if (c->n_pending == MAX_PENDING_ERRORS) {
        moe_log(MOE_LOG_WARN, "%d refusals wait for slow clients; dropping the oldest", MAX_PENDING_ERRORS);
        free(c->pending[0].id);
        free(c->pending[0].msg);
        memmove(&c->pending[0], &c->pending[1], (MAX_PENDING_ERRORS - 1) * sizeof c->pending[0]);
        c->n_pending--;
    }
    pending_error *p = &c->pending[c->n_pending++];
    p->peer = *peer;
    p->id = request_id ? moe_xstrdup(request_id) : NULL;
    p->code = code;
    p->msg = moe_xstrdup(msg ? msg : "");
    p->since = moe_now();
}

/* Retries waiting refusals; gives up on a client silent past its timeout. */
static void flush_errors(coord *c)
{
    int w = 0;
    for (int i = 0; i < c->n_pending; i++) {
        pending_error *p = &c->pending[i];
        int rc = try_error(c, &p->peer, p->id, p->code, p->msg);
        if (rc == MOE_LINK_AGAIN && moe_now() - p->since < (double)c->o.client_timeout_ms / 1000.0) {
            c->pending[w++] = *p;
            continue;
        }
        free(p->id);
        free(p->msg);
    }
    c->n_pending = w;
}

static void to_rank(coord *c, int rank, Moe__CoordMsg *m)
{
    moe_err err;
    if (!c->ranks[rank].known) return;
    int rc = moe_link_send(c->back, &c->ranks[rank].peer, &m->base, MOE_LINK_DONTWAIT, &err);
    if (rc == MOE_LINK_AGAIN) rc = moe_link_send(c->back, &c->ranks[rank].peer, &m->base, 0, &err);
    if (rc != MOE_OK) moe_log(MOE_LOG_WARN, "send to rank %d failed (%d): %s", rank, rc, rc == MOE_ERR ? err.msg : "");
}

static void release_on_rank(coord *c, const moe_req *r)
{
    Moe__Release rel = MOE__RELEASE__INIT;
    rel.has_seq_id = true;
    rel.seq_id = r->id;
    Moe__CoordMsg m = MOE__COORD_MSG__INIT;
    m.body_case = MOE__COORD_MSG__BODY_RELEASE;
    m.release = &rel;
    to_rank(c, r->rank, &m);
}

/* ---- clients and request contexts ------------------------------------------------ */

static client *find_client(coord *c, const moe_link_peer *p, bool create)
{
    for (int i = 0; i < c->n_clients; i++)
        if (moe_link_peer_eq(&c->clients[i]->peer, p)) return c->clients[i];
    if (!create) return NULL;
    if (c->n_clients == c->cap_clients) {
        c->cap_clients = c->cap_clients ? 2 * c->cap_clients : 16;
        c->clients = moe_xrealloc(c->clients, (size_t)c->cap_clients * sizeof *c->clients);
    }
    client *cl = moe_xcalloc(1, sizeof *cl);
    cl->peer = *p;
    c->clients[c->n_clients++] = cl;
    return cl;
}

static reqctx *find_req(coord *c, const client *cl, const char *id)
{
    for (int i = 0; i < c->n_reqs; i++)
        if (c->reqs[i]->cl == cl && !strcmp(c->reqs[i]->id, id)) return c->reqs[i];
    return NULL;
}

static void ctx_free(reqctx *x)
{
    free(x->id);
    free(x->stop_ids);
    for (size_t i = 0; i < x->n_stop; i++) free(x->stop[i]);
    free(x->stop);
    moe_tok_stream_free(x->ts);
    free(x->text);
    free(x);
}

/* Drops a request that has ended and been reported (or whose client is gone). */
static void forget(coord *c, reqctx *x)
{
    for (int i = 0; i < c->n_reqs; i++)
        if (c->reqs[i] == x) {
            c->reqs[i] = c->reqs[--c->n_reqs];
            break;
        }
    if (x->cl) x->cl->n_reqs--;
    if (x->r) moe_sched_forget(c->s, x->r);
    ctx_free(x);
}

static void text_append(reqctx *x, const char *t, size_t n)
{
    if (x->text_len + n + 1 > x->text_cap) {
        x->text_cap = (x->text_len + n + 1) * 2;
        x->text = moe_xrealloc(x->text, x->text_cap);
    }
    memcpy(x->text + x->text_len, t, n);
    x->text_len += n;
    x->text[x->text_len] = 0;
}

/* Decodes tokens not yet decoded; a stop string found ends the request.
 * Returns how many bytes of x->text may be sent now (the rest could still
 * become the start of a stop string). */
static size_t decode_new(reqctx *x)
{
    moe_req *r = x->r;
    moe_err err;
    while (x->n_decoded < r->n_out && x->end == MOE_END_NONE) {
        const char *t;
        size_t n;
        if (moe_tok_stream_push(x->ts, r->out[x->n_decoded++], &t, &n, &err) == MOE_OK) text_append(x, t, n);
        for (size_t i = 0; i < x->n_stop; i++) {
            char *hit = strstr(x->text, x->stop[i]);
            if (hit) {
                x->text_len = (size_t)(hit - x->text);
                x->text[x->text_len] = 0;
                x->end = MOE_END_STOP;
                /* the tokens after the one that completed the stop string are not the client's */
                r->n_out = x->n_decoded;
                break;
            }
        }
    }
    if (x->end != MOE_END_NONE || x->n_stop == 0) return x->text_len;
    /* hold back the longest tail that is a prefix of a stop string */
    size_t keep = 0;
    for (size_t i = 0; i < x->n_stop; i++) {
        size_t ls = strlen(x->stop[i]);
        for (size_t k = ls - 1; k > keep; k--)
            if (k <= x->text_len && !memcmp(x->text + x->text_len - k, x->stop[i], k)) {
                keep = k;
                break;
            }
    }
    return x->text_len - keep;
}

static void end_here(coord *c, reqctx *x, moe_end_reason why, int code, const char *msg);

/* Sends what the client has not had yet; when the request has ended and
 * everything is out, the Finish.  Returns false if the client is gone. */
static bool flush_req(coord *c, reqctx *x)
{
    if (x->finished) return true;
    moe_req *r = x->r;
    size_t sendable = decode_new(x);
    const bool ending = x->end != MOE_END_NONE;
    /* a stop string found just now: the rank stops at once, and no later
     * token can be taken while the end is being reported */
    if (ending && r->state != MOE_REQ_DONE) end_here(c, x, x->end, x->code, x->message);
    if (ending) {
        const char *t;
        size_t n;
        moe_tok_stream_flush(x->ts, &t, &n);
        if (x->end != MOE_END_STOP || x->n_stop == 0) text_append(x, t, n);
        sendable = x->text_len;
    }
    if ((x->stream || ending) && (x->n_sent < r->n_out || sendable > 0)) {
        Moe__TokenChunk ch = MOE__TOKEN_CHUNK__INIT;
        ch.request_id = x->id;
        ch.n_ids = (size_t)(r->n_out - x->n_sent);
        ch.ids = r->out + x->n_sent;
        char save = x->text ? x->text[sendable] : 0;
        if (x->text) x->text[sendable] = 0;
        ch.text = x->text ? x->text : (char *)"";
        ch.has_index = true;
        ch.index = (uint32_t)x->n_sent;
        Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
        m.body_case = MOE__SERVER_MSG__BODY_CHUNK;
        m.chunk = &ch;
        int rc = to_client(c, x->cl, &m);
        if (x->text) x->text[sendable] = save;
        if (rc == MOE_LINK_UNREACHABLE) return false;
        if (rc != MOE_OK) { /* back-pressure: everything stays here, retried later */
            c->deferred++;
            return true;
        }
        x->n_sent = r->n_out;
        memmove(x->text, x->text + sendable, x->text_len - sendable + 1);
        x->text_len -= sendable;
    }
    if (!ending || x->n_sent < r->n_out) return true;
    Moe__Usage u = MOE__USAGE__INIT;
    u.has_prompt_tokens = u.has_completion_tokens = true;
    u.prompt_tokens = (uint32_t)r->n_prompt;
    u.completion_tokens = (uint32_t)r->n_out;
    Moe__Finish f = MOE__FINISH__INIT;
    f.request_id = x->id;
    f.has_reason = true;
    static const Moe__EndReason reasons[] = {
        [MOE_END_STOP] = MOE__END_REASON__END_STOP,           [MOE_END_LENGTH] = MOE__END_REASON__END_LENGTH,
        [MOE_END_CANCELLED] = MOE__END_REASON__END_CANCELLED, [MOE_END_DEADLINE] = MOE__END_REASON__END_DEADLINE,
        [MOE_END_ERROR] = MOE__END_REASON__END_ERROR,
    };
    f.reason = reasons[x->end];
    f.usage = &u;
    if (x->end == MOE_END_ERROR || x->end == MOE_END_DEADLINE) {
        f.has_code = true;
        f.code = x->end == MOE_END_DEADLINE ? MOE__CODE__DEADLINE_EXCEEDED : (Moe__Code)x->code;
        f.message = x->message;
    }
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_FINISH;
    m.finish = &f;
    int rc = to_client(c, x->cl, &m);
    if (rc == MOE_LINK_UNREACHABLE) return false;
    if (rc == MOE_OK) x->finished = true;
    return true;
}

/* Ends a request for a reason found here (cancel, deadline, stop string,
 * lost rank, client gone): the rank lets the sequence go. */
static void end_here(coord *c, reqctx *x, moe_end_reason why, int code, const char *msg)
{
    if (x->end == MOE_END_NONE) {
        x->end = why;
        x->code = code;
        if (msg) snprintf(x->message, sizeof x->message, "%s", msg);
    }
    if (x->r->state == MOE_REQ_RUNNING && moe_sched_rank_alive(c->s, x->r->rank)) release_on_rank(c, x->r);
    moe_sched_end(c->s, x->r, x->end, msg);
}

/* ---- client messages ------------------------------------------------------------- */

static uint64_t fresh_seed(void)
{
    static uint64_t counter;
    uint64_t z = ((uint64_t)getpid() << 32) ^ (uint64_t)(moe_now() * 1e9) ^ (++counter * 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static bool any_rank_alive(const coord *c)
{
    for (int k = 0; k < (int)c->o.ranks; k++)
        if (c->ranks[k].known && moe_sched_rank_alive(c->s, k)) return true;
    return false;
}

static void on_generate(coord *c, client *cl, const moe_link_peer *peer, const Moe__GenerateRequest *g)
{
    moe_err err = {{0}};
    const char *id = g->request_id;
    if (c->draining) return send_error(c, peer, id, MOE__CODE__SHUTTING_DOWN, "the server is shutting down");
    if (find_req(c, cl, id)) return send_error(c, peer, id, MOE__CODE__DUPLICATE_REQUEST, "a request with this id is in flight");
    if (c->ready && !any_rank_alive(c))
        return send_error(c, peer, id, MOE__CODE__WORKER_LOST, "no worker rank is alive; the worker job must be restarted");

    moe_tokens toks = {0};
    int code = MOE__CODE__OK;
    if (g->prompt_case == MOE__GENERATE_REQUEST__PROMPT_TEXT) {
        unsigned flags = moe_tokenizer_add_bos(c->tok) ? MOE_TOK_BOS : 0;
        if (moe_tokenizer_encode(c->tok, g->text, strlen(g->text), flags, &toks, &err)) code = MOE__CODE__BAD_REQUEST;
    } else if (g->prompt_case == MOE__GENERATE_REQUEST__PROMPT_IDS) {
        for (size_t i = 0; i < g->ids->n_ids; i++) moe_tokens_push(&toks, g->ids->ids[i]);
    } else if (g->prompt_case == MOE__GENERATE_REQUEST__PROMPT_CHAT) {
        if (!c->chat) {
            code = MOE__CODE__BAD_REQUEST;
            moe_err_set(&err, "the model has no chat template this server knows");
        } else {
            size_t n = g->chat->n_messages;
            moe_chat_msg *msgs = moe_xcalloc(n ? n : 1, sizeof *msgs);
            for (size_t i = 0; i < n; i++) {
                msgs[i].role = g->chat->messages[i]->role;
                msgs[i].content = g->chat->messages[i]->content ? g->chat->messages[i]->content : "";
                msgs[i].content_len = strlen(msgs[i].content);
            }
            bool agp = g->chat->has_add_generation_prompt ? g->chat->add_generation_prompt : true;
            if (moe_chat_tokenize(c->chat, c->tok, msgs, n, agp, &toks, &err)) code = MOE__CODE__BAD_REQUEST;
            free(msgs);
        }
    }
    const int max_tokens = g->has_max_tokens ? g->max_tokens : (int)c->o.max_tokens;
    if (code == MOE__CODE__OK) code = moe_msg_check_context((int64_t)toks.n, max_tokens, &c->lim, &err);
    moe_sampler_cfg sc;
    moe_sampler_cfg_default(&sc);
    if (code == MOE__CODE__OK) code = moe_msg_sampler_cfg(g->sampling, g->stop_ids, g->n_stop_ids, &sc, &err);
    if (code != MOE__CODE__OK) {
        moe_tokens_free(&toks);
        return send_error(c, peer, id, code, err.msg);
    }
    reqctx *x = moe_xcalloc(1, sizeof *x);
    x->cl = cl;
    x->id = moe_xstrdup(id);
    x->stream = !g->has_stream || g->stream;
    if (g->sampling) {
        x->sampling = *g->sampling;
        /* the copy must not point into the received message, freed soon */
        x->sampling.base.n_unknown_fields = 0;
        x->sampling.base.unknown_fields = NULL;
    } else {
        moe__sampling__init(&x->sampling);
    }
    x->has_sampling = true;
    if (!x->sampling.has_seed) {
        /* No seed given: draw one here, so that requests differ and the
         * request (which keeps it) replays identically. */
        x->sampling.has_seed = true;
        x->sampling.seed = fresh_seed();
    }
    x->n_stop_ids = g->n_stop_ids;
    x->stop_ids = moe_xmalloc((g->n_stop_ids ? g->n_stop_ids : 1) * sizeof *x->stop_ids);
    memcpy(x->stop_ids, g->stop_ids, g->n_stop_ids * sizeof *x->stop_ids);
    x->n_stop = g->n_stop;
    x->stop = moe_xcalloc(g->n_stop ? g->n_stop : 1, sizeof *x->stop);
    for (size_t i = 0; i < g->n_stop; i++) x->stop[i] = moe_xstrdup(g->stop[i]);
    if (moe_tok_stream_init(&x->ts, c->tok, MOE_TOK_STREAM_SKIP_CONTROL, &err)) {
        ctx_free(x);
        moe_tokens_free(&toks);
        return send_error(c, peer, id, MOE__CODE__INTERNAL, err.msg);
    }
    const double deadline = g->has_deadline_ms ? moe_now() + (double)g->deadline_ms / 1000.0 : 0;
    bool full = false;
    if (moe_sched_submit(c->s, x, toks.ids, (int)toks.n, max_tokens, deadline, &x->r, &full, &err)) {
        ctx_free(x);
        moe_tokens_free(&toks);
        return send_error(c, peer, id, full ? MOE__CODE__QUEUE_FULL : MOE__CODE__BAD_REQUEST, err.msg);
    }
    moe_tokens_free(&toks);
    if (c->n_reqs == c->cap_reqs) {
        c->cap_reqs = c->cap_reqs ? 2 * c->cap_reqs : 64;
        c->reqs = moe_xrealloc(c->reqs, (size_t)c->cap_reqs * sizeof *c->reqs);
    }
    c->reqs[c->n_reqs++] = x;
    cl->n_reqs++;
}

static void on_client_frame(coord *c, moe_link_in *in, moe_err *err)
{
    const Moe__ClientMsg *m = (const Moe__ClientMsg *)in->msg;
    client *cl = find_client(c, &in->from, true);
    cl->last_seen = moe_now();
    if (in->code != MOE__CODE__OK) {
        send_error(c, &in->from, m ? moe_msg_request_id(m, &c->lim) : NULL, in->code, err->msg);
        return;
    }
    switch (m->body_case) {
    case MOE__CLIENT_MSG__BODY_HELLO: {
        Moe__HelloReply h = MOE__HELLO_REPLY__INIT;
        h.has_protocol_version = h.has_vocab_size = h.has_max_context = true;
        h.protocol_version = MOE_PROTO_VERSION;
        h.model = c->model_name;
        h.vocab_size = c->vocab;
        h.max_context = c->max_context;
        h.server_name = (char *)"moe-coordinator";
        Moe__ServerMsg r = MOE__SERVER_MSG__INIT;
        r.body_case = MOE__SERVER_MSG__BODY_HELLO_REPLY;
        r.hello_reply = &h;
        to_client(c, cl, &r);
        break;
    }
    case MOE__CLIENT_MSG__BODY_GENERATE: on_generate(c, cl, &in->from, m->generate); break;
    case MOE__CLIENT_MSG__BODY_CANCEL: {
        reqctx *x = find_req(c, cl, m->cancel->request_id);
        if (!x || x->end != MOE_END_NONE) {
            send_error(c, &in->from, m->cancel->request_id, MOE__CODE__UNKNOWN_REQUEST,
                       "no request with this id is in flight");
            break;
        }
        end_here(c, x, MOE_END_CANCELLED, 0, "cancelled");
        break;
    }
    case MOE__CLIENT_MSG__BODY_HEARTBEAT: {
        Moe__Heartbeat hb = MOE__HEARTBEAT__INIT;
        Moe__ServerMsg r = MOE__SERVER_MSG__INIT;
        r.body_case = MOE__SERVER_MSG__BODY_HEARTBEAT;
        r.heartbeat = &hb;
        to_client(c, cl, &r);
        break;
    }
    default: break;
    }
}

/* ---- worker messages ------------------------------------------------------------- */

static void rank_lost(coord *c, int k, const char *why);

static int rank_of_peer(const coord *c, const moe_link_peer *p)
{
    for (int k = 0; k < (int)c->o.ranks; k++)
        if (c->ranks[k].known && moe_link_peer_eq(&c->ranks[k].peer, p)) return k;
    return -1;
}

static void on_worker_frame(coord *c, moe_link_in *in, moe_err *err)
{
    const Moe__WorkerMsg *m = (const Moe__WorkerMsg *)in->msg;
    if (in->code != MOE__CODE__OK) {
        moe_log(MOE_LOG_WARN, "refused a frame from a worker (%s): %s", moe_msg_code_name(in->code), err->msg);
        return;
    }
    int rank = rank_of_peer(c, &in->from);
    if (m->body_case == MOE__WORKER_MSG__BODY_HELLO) {
        const Moe__WorkerHello *h = m->hello;
        if (h->rank >= (uint32_t)c->o.ranks || h->n_ranks != (uint32_t)c->o.ranks) {
            moe_log(MOE_LOG_ERROR, "a worker says it is rank %u of %u; this coordinator expects %lld ranks", h->rank,
                    h->n_ranks, (long long)c->o.ranks);
            return;
        }
        if (h->model && h->model->has_max_context && h->model->max_context > 0 &&
            h->model->max_context < c->lim.max_context) {
            /* the ranks' context is what a request must fit */
            c->lim.max_context = c->max_context = h->model->max_context;
            moe_log(MOE_LOG_INFO, "context is %u tokens (rank %u's)", c->max_context, h->rank);
        }
        if (h->model && h->model->has_vocab_size && h->model->vocab_size != c->vocab) {
            moe_log(MOE_LOG_ERROR, "rank %u serves a vocabulary of %u tokens, the coordinator's model has %u", h->rank,
                    h->model->vocab_size, c->vocab);
            return;
        }
        rank_info *ri = &c->ranks[h->rank];
        if (ri->known && h->job_id != ri->job_id) {
            /* a new job took the rank's place: what ran on the old one is gone */
            char why[128];
            snprintf(why, sizeof why, "worker rank %u was restarted", h->rank);
            rank_lost(c, (int)h->rank, why);
        }
        const bool was_known = ri->known;
        ri->known = true;
        ri->peer = in->from;
        ri->last_seen = moe_now();
        ri->job_id = h->job_id;
        if (!was_known) ri->active = -1; /* the first heartbeat is logged */
        moe_sched_rank_update(c->s, (int)h->rank, (int64_t)h->cache_tokens_total);
        if (h->has_max_seqs) moe_sched_rank_set_max_running(c->s, (int)h->rank, (int)h->max_seqs);
        Moe__WorkerHelloReply r = MOE__WORKER_HELLO_REPLY__INIT;
        r.has_protocol_version = true;
        r.protocol_version = MOE_PROTO_VERSION;
        Moe__CoordMsg cm = MOE__COORD_MSG__INIT;
        cm.body_case = MOE__COORD_MSG__BODY_HELLO_REPLY;
        cm.hello_reply = &r;
        to_rank(c, (int)h->rank, &cm);
        if (!was_known)
            moe_log(MOE_LOG_INFO, "rank %u joined (%llu cache tokens)", h->rank, (unsigned long long)h->cache_tokens_total);
        bool all = true;
        for (int k = 0; k < (int)c->o.ranks; k++) all &= c->ranks[k].known;
        if (all && !c->ready) {
            c->ready = true;
            printf("moe-coordinator: ready: clients at %s, %lld worker ranks\n", moe_link_endpoint(c->front),
                   (long long)c->o.ranks);
            fflush(stdout);
        }
        return;
    }
    if (rank < 0) { /* we do not know it (we restarted): ask for a hello */
        Moe__Error e = MOE__ERROR__INIT;
        e.has_code = true;
        e.code = MOE__CODE__NOT_READY;
        e.message = (char *)"say hello first";
        Moe__CoordMsg cm = MOE__COORD_MSG__INIT;
        cm.body_case = MOE__COORD_MSG__BODY_ERROR;
        cm.error = &e;
        moe_err e2;
        moe_link_send(c->back, &in->from, &cm.base, MOE_LINK_DONTWAIT, &e2);
        return;
    }
    c->ranks[rank].last_seen = moe_now();
    switch (m->body_case) {
    case MOE__WORKER_MSG__BODY_TOKEN: {
        moe_req *r = moe_sched_find(c->s, m->token->seq_id);
        if (r && r->rank == rank) moe_sched_token(c->s, r->id, (int)m->token->index, m->token->token);
        break;
    }
    case MOE__WORKER_MSG__BODY_SEQ_END: {
        moe_req *r = moe_sched_find(c->s, m->seq_end->seq_id);
        if (!r || r->rank != rank || r->state != MOE_REQ_RUNNING) break;
        reqctx *x = r->owner;
        static const moe_end_reason from_wire[] = {MOE_END_STOP, MOE_END_LENGTH, MOE_END_CANCELLED, MOE_END_DEADLINE,
                                                   MOE_END_ERROR};
        const unsigned w = m->seq_end->has_reason ? (unsigned)m->seq_end->reason : 4u;
        const moe_end_reason why = w < 5 ? from_wire[w] : MOE_END_ERROR;
        /* tokens the scheduler has are final; decode them before deciding */
        decode_new(x);
        if (x->end == MOE_END_NONE) {
            x->end = why;
            x->code = MOE__CODE__INTERNAL;
            snprintf(x->message, sizeof x->message, "%s", m->seq_end->message ? m->seq_end->message : "");
        }
        moe_sched_end(c->s, r, x->end, x->message);
        break;
    }
    case MOE__WORKER_MSG__BODY_HEARTBEAT:
        /* sequences the rank still runs that we no longer want there (ended
         * here while the rank was silent, or before we restarted) */
        for (size_t i = 0; i < m->heartbeat->n_active; i++) {
            const moe_req *r = moe_sched_find(c->s, m->heartbeat->active[i]);
            if (!r || r->state != MOE_REQ_RUNNING || r->rank != rank) {
                Moe__Release rel = MOE__RELEASE__INIT;
                rel.has_seq_id = true;
                rel.seq_id = m->heartbeat->active[i];
                Moe__CoordMsg cm = MOE__COORD_MSG__INIT;
                cm.body_case = MOE__COORD_MSG__BODY_RELEASE;
                cm.release = &rel;
                to_rank(c, rank, &cm);
            }
        }
        if ((int64_t)m->heartbeat->n_active != c->ranks[rank].active) {
            c->ranks[rank].active = (int64_t)m->heartbeat->n_active;
            moe_log(MOE_LOG_INFO, "rank %d: %lld active sequences, %llu cache tokens free", rank,
                    (long long)c->ranks[rank].active, (unsigned long long)m->heartbeat->cache_tokens_free);
        }
        break;
    default: break;
    }
}

/* ---- periodic work --------------------------------------------------------------- */

/* A rank is gone (silent, or replaced by a new job): its requests end with
 * WORKER_LOST; it joins again with a hello. */
static void rank_lost(coord *c, int k, const char *why)
{
    moe_log(MOE_LOG_ERROR, "%s", why);
    for (int i = 0; i < c->n_reqs; i++) {
        reqctx *x = c->reqs[i];
        if (x->r->state == MOE_REQ_RUNNING && x->r->rank == k && x->end == MOE_END_NONE) {
            x->end = MOE_END_ERROR;
            x->code = MOE__CODE__WORKER_LOST;
            snprintf(x->message, sizeof x->message, "%s", why);
        }
    }
    moe_sched_rank_lost(c->s, k, why);
    c->ranks[k].known = false;
}

static void place_queued(coord *c)
{
    moe_req *placed[64];
    int n;
    while ((n = moe_sched_place(c->s, placed, 64)) > 0) {
        for (int i = 0; i < n; i++) {
            moe_req *r = placed[i];
            reqctx *x = r->owner;
            Moe__Assign a = MOE__ASSIGN__INIT;
            a.has_seq_id = a.has_max_tokens = true;
            a.seq_id = r->id;
            a.n_prompt = (size_t)r->n_prompt;
            a.prompt = r->prompt;
            a.max_tokens = r->max_tokens;
            a.sampling = x->has_sampling ? &x->sampling : NULL;
            a.n_stop_ids = x->n_stop_ids;
            a.stop_ids = x->stop_ids;
            a.n_emitted = (size_t)r->n_out;
            a.emitted = r->out;
            Moe__CoordMsg m = MOE__COORD_MSG__INIT;
            m.body_case = MOE__COORD_MSG__BODY_ASSIGN;
            m.assign = &a;
            to_rank(c, r->rank, &m);
            c->ranks[r->rank].served++;
        }
        if (n < 64) break;
    }
}

static void housekeeping(coord *c)
{
    const double now = moe_now();
    /* ranks that went silent */
    for (int k = 0; k < (int)c->o.ranks; k++) {
        rank_info *ri = &c->ranks[k];
        if (!ri->known || !moe_sched_rank_alive(c->s, k) ||
            now - ri->last_seen < (double)c->o.worker_timeout_ms / 1000.0)
            continue;
        char why[128];
        snprintf(why, sizeof why, "worker rank %d stopped answering (no heartbeat for %.1f s)", k, now - ri->last_seen);
        rank_lost(c, k, why);
    }
    /* every rank gone: queued requests can never run */
    if (c->ready && !any_rank_alive(c))
        for (int i = 0; i < c->n_reqs; i++) {
            reqctx *x = c->reqs[i];
            if (x->r->state == MOE_REQ_QUEUED && x->end == MOE_END_NONE)
                end_here(c, x, MOE_END_ERROR, MOE__CODE__WORKER_LOST, "no worker rank is alive");
        }
    /* deadlines */
    for (int i = 0; i < c->n_reqs; i++) {
        reqctx *x = c->reqs[i];
        if (x->end == MOE_END_NONE && x->r->deadline > 0 && now >= x->r->deadline)
            end_here(c, x, MOE_END_DEADLINE, MOE__CODE__DEADLINE_EXCEEDED, "deadline exceeded");
    }
    /* clients that went silent: their sequences go, nothing is sent */
    for (int i = 0; i < c->n_clients; i++) {
        client *cl = c->clients[i];
        if (now - cl->last_seen < (double)c->o.client_timeout_ms / 1000.0) continue;
        int released = 0;
        for (int j = 0; j < c->n_reqs; j++) {
            reqctx *x = c->reqs[j];
            if (x->cl != cl) continue;
            if (x->end == MOE_END_NONE) end_here(c, x, MOE_END_CANCELLED, 0, "the client went away");
            x->finished = true; /* nobody to tell */
            released++;
        }
        if (released) moe_log(MOE_LOG_INFO, "a client went silent; released %d of its requests", released);
        else moe_log(MOE_LOG_INFO, "a client went silent");
        if (cl->n_reqs == 0 || released) {
            for (int j = 0; j < c->n_reqs;) { /* forget its finished requests now */
                if (c->reqs[j]->cl == cl && c->reqs[j]->finished && c->reqs[j]->r->state == MOE_REQ_DONE) forget(c, c->reqs[j]);
                else j++;
            }
            if (cl->n_reqs == 0) {
                free(cl);
                c->clients[i] = c->clients[--c->n_clients];
                i--;
            }
        }
    }
}

/* Streams what is new and finishes what has ended. */
static void flush_all(coord *c)
{
    for (int i = 0; i < c->n_reqs;) {
        reqctx *x = c->reqs[i];
        if (x->r->state == MOE_REQ_DONE && x->end == MOE_END_NONE) x->end = x->r->end; /* ended by the scheduler */
        if (x->end != MOE_END_NONE && x->r->state != MOE_REQ_DONE) end_here(c, x, x->end, x->code, x->message);
        if (!flush_req(c, x)) { /* the client is gone: nobody to tell, nothing to run */
            x->finished = true;
            if (x->r->state != MOE_REQ_DONE) {
                end_here(c, x, MOE_END_CANCELLED, 0, "the client went away");
                moe_log(MOE_LOG_INFO, "a client went away; released its request '%s'", x->id);
            }
        }
        if (x->finished && x->r->state == MOE_REQ_DONE) {
            forget(c, x);
            continue;
        }
        i++;
    }
}

/* ---- main ---------------------------------------------------------------------- */

static int setup(coord *c, moe_err *err)
{
    if (moe_gguf_open(&c->g, c->o.model, err)) return MOE_ERR;
    if (moe_tokenizer_load(&c->tok, c->g, err)) return moe_err_prefix(err, "%s", c->o.model);
    moe_err cerr;
    if (moe_chat_init(&c->chat, c->g, c->tok, &cerr)) {
        c->chat = NULL;
        moe_log(MOE_LOG_INFO, "chat requests disabled: %s", cerr.msg);
    }
    const char *name;
    uint64_t nlen;
    if (moe_gguf_get_str(c->g, "general.name", &name, &nlen, err) == MOE_OK)
        snprintf(c->model_name, sizeof c->model_name, "%.*s", (int)(nlen < 255 ? nlen : 255), name);
    uint64_t ctx = 4096;
    moe_err e2;
    moe_gguf_get_u64(c->g, "deepseek2.context_length", &ctx, &e2);
    c->vocab = (uint32_t)moe_tokenizer_n_vocab(c->tok);
    c->max_context = (uint32_t)(ctx < (1u << 24) ? ctx : (1u << 24)); /* lowered to the ranks' own at their hello */
    moe_msg_limits_default(&c->lim);
    c->lim.max_frame = (size_t)c->o.max_frame;
    c->lim.vocab_size = c->vocab;
    c->lim.max_context = c->max_context;
    moe_sched_limits sl = {.max_queue = (int)c->o.queue, .max_running = (int)c->o.max_running};
    if (moe_sched_init(&c->s, (int)c->o.ranks, &sl, err)) return MOE_ERR;
    c->ranks = moe_xcalloc((size_t)c->o.ranks, sizeof *c->ranks);
    if (moe_link_ctx_init(&c->lctx, err)) return MOE_ERR;
    moe_link_opts fo, bo;
    moe_link_opts_default(&fo, &moe__client_msg__descriptor);
    fo.limits = c->lim;
    fo.limits.max_context = 0; /* checked here after tokenization, against the ranks' context */
    fo.sndhwm = (int)c->o.client_hwm;
    fo.sndbuf = (int)c->o.client_sndbuf;
    moe_link_opts_default(&bo, &moe__worker_msg__descriptor);
    bo.limits.vocab_size = c->vocab;
    bo.router_handover = true; /* a restarted rank takes its name back */
    if (moe_link_bind(&c->front, c->lctx, c->o.listen, &fo, err)) return moe_err_prefix(err, "--listen");
    if (moe_link_bind(&c->back, c->lctx, c->o.workers, &bo, err)) return moe_err_prefix(err, "--workers");
    return MOE_OK;
}

static void drain_link(coord *c, moe_link *l, void (*on)(coord *, moe_link_in *, moe_err *))
{
    for (int budget = 1024; budget > 0; budget--) {
        moe_link_in in = {0};
        moe_err err = {{0}};
        int rc = moe_link_recv(l, &in, MOE_LINK_DONTWAIT, &err);
        if (rc != MOE_OK) {
            if (rc == MOE_ERR) moe_log(MOE_LOG_WARN, "receive failed: %s", err.msg);
            return;
        }
        on(c, &in, &err);
        moe_link_in_clear(&in);
    }
}

int main(int argc, char **argv)
{
    coord C = {0}, *c = &C;
    moe_err err = {{0}};
    int prc = parse_opts(argc, argv, &c->o, &err);
    if (prc > 0) {
        usage(stdout);
        return 0;
    }
    if (prc) {
        fprintf(stderr, "moe-coordinator: %s\n", err.msg);
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc = 1;
    if (setup(c, &err)) {
        fprintf(stderr, "moe-coordinator: %s\n", err.msg);
        goto out;
    }
    fprintf(stderr, "moe-coordinator: clients at %s, workers at %s, waiting for %lld ranks\n",
            moe_link_endpoint(c->front), moe_link_endpoint(c->back), (long long)c->o.ranks);
    double t_house = 0;
    for (;;) {
        if (g_term && !c->draining) {
            c->draining = true;
            moe_log(MOE_LOG_INFO, "draining: %d requests in flight", c->n_reqs);
        }
        if (c->draining && c->n_reqs == 0) break;
        moe_link_poll_item pi[2] = {{.link = c->front}, {.link = c->back}};
        moe_link_poll(pi, 2, 20, &err);
        drain_link(c, c->back, on_worker_frame);
        drain_link(c, c->front, on_client_frame);
        const double now = moe_now();
        if (now - t_house >= 0.05) {
            housekeeping(c);
            t_house = now;
        }
        place_queued(c);
        flush_all(c);
        flush_errors(c);
    }
    rc = 0;
    for (int k = 0; k < (int)c->o.ranks; k++)
        moe_log(MOE_LOG_INFO, "rank %d served %lld sequences", k, (long long)c->ranks[k].served);
    moe_log(MOE_LOG_INFO, "%lld chunk sends met back-pressure and were retried", (long long)c->deferred);
    moe_log(MOE_LOG_INFO, "drained; exiting");
out:
    while (c->n_reqs > 0) {
        moe_sched_end(c->s, c->reqs[0]->r, MOE_END_CANCELLED, NULL);
        forget(c, c->reqs[0]);
    }
    free(c->reqs);
    for (int i = 0; i < c->n_pending; i++) {
        free(c->pending[i].id);
        free(c->pending[i].msg);
    }
    for (int i = 0; i < c->n_clients; i++) free(c->clients[i]);
    free(c->clients);
    free(c->ranks);
    moe_sched_free(c->s);
    moe_link_close(c->front);
    moe_link_close(c->back);
    moe_link_ctx_free(c->lctx);
    moe_chat_free(c->chat);
    moe_tokenizer_free(c->tok);
    moe_gguf_close(c->g);
    return rc;
}
