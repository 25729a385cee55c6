/*
 * client.c — moe-client's loop (client.h): sending within the concurrency,
 * checking and assembling what comes back, timeouts, signals, and the
 * result lines of a many-request run.
 */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "output.h"
#include "reqline.h"

#define CANCEL_WAIT_S 2.0     /* how long a cancelled request may take to finish */
#define MAX_WARNINGS 20       /* then further ones are only counted */
#define MAX_TEXT_BYTES ((size_t)64 << 20) /* text kept for one request of a many-request run */

typedef moe_client_req req;

typedef struct client {
    const moe_client_opts *c;
    moe_session *s;
    req *reqs;
    size_t n_reqs, next_send, n_inflight, n_done, next_print;
    size_t n_abandoned;    /* in flight after a protocol error, waiting for their finish */
    bool hello_sent, got_hello_reply;
    bool got_any;          /* a valid frame came from the server */
    bool send_stalled;     /* a blocking send timed out: the server is not reading */
    double t_start, last_rx, last_hb;
    bool interrupted, stop_waiting;
    double cancel_until;
    int n_warnings;
    bool fatal;            /* the server refused the session (e.g. bad version) */
    moe_client_result *res;
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
    if (r->state == MOE_CLIENT_SENT) cl->n_inflight--;
    if (r->state == MOE_CLIENT_SENT && r->abandoned) cl->n_abandoned--;
    r->state = MOE_CLIENT_DONE;
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

static void send_hello(client *cl)
{
    moe_err err;
    const int rc = moe_session_hello(cl->s, &err);
    if (rc == MOE_OK) cl->hello_sent = true;
    else if (rc != MOE_LINK_AGAIN) warn(cl, "sending the hello: %s", err.msg);
}

/* Names the requests still waited for: the server answers the ones it
 * does not know (it restarted) with UNKNOWN_REQUEST, and says which are
 * queued. */
static void send_heartbeat(client *cl)
{
    moe_err err;
    char *ids[MOE_MSG_MAX_HEARTBEAT_IDS];
    size_t n = 0;
    for (size_t i = 0; i < cl->n_reqs && n < MOE_MSG_MAX_HEARTBEAT_IDS; i++)
        if (cl->reqs[i].state == MOE_CLIENT_SENT && !cl->reqs[i].abandoned) ids[n++] = cl->reqs[i].id;
    const int rc = moe_session_heartbeat(cl->s, ids, n, &err); /* a full queue: the next period tries again */
    if (rc != MOE_OK && rc != MOE_LINK_AGAIN) warn(cl, "sending a heartbeat: %s", err.msg);
}

static void send_cancel(client *cl, req *r)
{
    /* Blocking (a cancel matters more than a heartbeat), but only for the
     * send timeout: a queue that stays full means the server is not
     * reading, and then no further cancel is tried. */
    if (cl->send_stalled) return;
    moe_err err;
    const int rc = moe_session_cancel(cl->s, r->id, &err);
    if (rc == MOE_LINK_AGAIN) {
        cl->send_stalled = true;
        warn(cl, "the server is not reading: cancel %s (and any later ones) not sent", r->id);
    } else if (rc != MOE_OK) {
        warn(cl, "sending cancel %s: %s", r->id, err.msg);
    }
}

/* Sends r: MOE_OK (sent), MOE_LINK_AGAIN (queue full, try later) or
 * MOE_ERR (r failed: it cannot be sent at all). */
static int send_request(client *cl, req *r)
{
    moe_err err;
    r->gen.id = r->id;
    const int rc = moe_session_generate(cl->s, &r->gen, &err);
    if (rc == MOE_OK) {
        r->state = MOE_CLIENT_SENT;
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
    if (!r || r->state != MOE_CLIENT_SENT) {
        warn(cl, "chunk for request '%s', which is not in flight (ignored)", ch->request_id);
        return;
    }
    if (r->abandoned) return;
    /* A completion never holds more tokens than asked for (the protocol's
     * cap when unset), and a stored text stays bounded: a server that
     * streams without end cannot exhaust our memory. */
    uint64_t max_ids = r->gen.max_tokens > 0 ? (uint64_t)r->gen.max_tokens : MOE_REQLINE_MAX_TOKENS;
    size_t tl = ch->text ? strlen(ch->text) : 0;
    bool bad_index = ch->index != r->next_index;
    bool too_many = !bad_index && (uint64_t)r->next_index + ch->n_ids > max_ids;
    bool too_long = !cl->c->single && r->text_len + tl > MAX_TEXT_BYTES;
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
        for (size_t i = 0; i < ch->n_logprobs && cl->c->logprobs_out; i++) { /* n_logprobs == n_ids: checked */
            const Moe__TokenLogprobs *lp = ch->logprobs[i];
            moe_output_logprobs(cl->c->logprobs_out, r->line, 'T', ch->index + (uint32_t)i, ch->ids[i], lp->logprob,
                                lp->top_ids, lp->top_logprobs, lp->n_top_ids);
        }
        r->n_ids += ch->n_ids;
        r->next_index += (uint32_t)ch->n_ids; /* checked: index + n_ids <= max_ids */
    }
    if (cl->c->single) {
        if (cl->c->ids_out) {
            if (ch->n_ids && cl->res->single_printed) putchar(' ');
            moe_output_ids(stdout, ch->ids, ch->n_ids);
            if (ch->n_ids) cl->res->single_printed = true;
        } else if (tl) {
            fwrite(ch->text, 1, tl, stdout);
            cl->res->single_printed = true;
        }
        if (fflush(stdout)) cl->res->out_error = true;
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

/* A piece of the prompt's logprobs; a piece the server sent again (its
 * Finish had to wait) repeats positions we have: only new ones are kept. */
static void on_prompt_logprobs(client *cl, const Moe__PromptLogprobs *p)
{
    req *r = req_find(cl, p->request_id);
    if (!r || r->state != MOE_CLIENT_SENT || r->abandoned) return;
    if (r->next_prompt_pos == 0) r->next_prompt_pos = 1;
    for (size_t i = 0; i < p->n_entries; i++) {
        if (p->index + i != r->next_prompt_pos) continue;
        const Moe__TokenLogprobs *lp = p->entries[i];
        if (cl->c->logprobs_out)
            moe_output_logprobs(cl->c->logprobs_out, r->line, 'P', r->next_prompt_pos, p->ids[i], lp->logprob,
                                lp->top_ids, lp->top_logprobs, lp->n_top_ids);
        r->next_prompt_pos++;
    }
}

/* A piece of routed experts (checked by the link: sizes match the shape):
 * one line per (position, MoE layer); a repeated piece adds nothing. */
static void on_routed(client *cl, const Moe__RoutedExperts *re)
{
    req *r = req_find(cl, re->request_id);
    FILE *o = cl->c->routed_out;
    if (!r || r->state != MOE_CLIENT_SENT || r->abandoned || !o) return;
    const size_t K = re->top_k, L = re->moe_layers;
    for (size_t row = 0; row < re->rows; row++) {
        if (re->first + row != r->next_routed_row) continue;
        for (size_t l = 0; l < L; l++) {
            const size_t at = (row * L + l) * K;
            fprintf(o, "%d %zu %zu ", r->line, (size_t)re->first + row, (size_t)re->first_moe_layer + l);
            for (size_t j = 0; j < K; j++) {
                const uint8_t *b = re->ids.data + 2 * (at + j);
                fprintf(o, j ? ",%d" : "%d", (int)(int16_t)(uint16_t)(b[0] | b[1] << 8));
            }
            for (size_t j = 0; re->has_weights && j < K; j++) {
                const uint8_t *b = re->weights.data + 4 * (at + j);
                const uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
                float f;
                memcpy(&f, &u, sizeof f);
                fprintf(o, j ? ",%.9g" : " %.9g", (double)f);
            }
            fputc('\n', o);
        }
        r->next_routed_row++;
    }
}

static void on_finish(client *cl, const Moe__Finish *f)
{
    req *r = req_find(cl, f->request_id);
    if (!r || r->state != MOE_CLIENT_SENT) {
        warn(cl, "finish for request '%s', which is not in flight (ignored)", f->request_id);
        return;
    }
    if (f->usage) {
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
        if (r->state == MOE_CLIENT_DONE || (r->state == MOE_CLIENT_PENDING && !pending_too)) continue;
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
    /* a heartbeat crossed the request's finish: nothing to say */
    if (r && r->state == MOE_CLIENT_DONE && e->code == MOE__CODE__UNKNOWN_REQUEST) return;
    if (!r || r->state != MOE_CLIENT_SENT) {
        warn(cl, "error %s for request '%s', which is not in flight (ignored): %s", name, e->request_id, msg);
        return;
    }
    if (!r->abandoned) req_fail(r, name, "%s", msg);
    req_done(cl, r);
}

/* A heartbeat's answer: the requests still queued, and where. */
static void on_queued(client *cl, const Moe__Heartbeat *h)
{
    for (size_t i = 0; i < h->n_queued_ids; i++) { /* as many positions (checked) */
        req *r = req_find(cl, h->queued_ids[i]);
        if (!r || r->state != MOE_CLIENT_SENT || r->queue_pos == h->queue_positions[i]) continue;
        if (r->queue_pos == 0 || cl->c->verbose)
            fprintf(stderr, "moe-client: request %s is queued at the server (position %u; --timeout %g s holds)\n",
                    r->id, (unsigned)h->queue_positions[i], cl->c->timeout_s);
        r->queue_pos = h->queue_positions[i];
    }
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
        int rc = moe_session_recv(cl->s, &in, &err);
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
        /* the timeout counts from the last answer: a heartbeat's echo
         * shows the server is up, not that a request goes anywhere */
        const Moe__ServerMsg *m = (const Moe__ServerMsg *)in.msg;
        if (m->body_case != MOE__SERVER_MSG__BODY_HEARTBEAT) cl->last_rx = moe_now();
        cl->got_any = true;
        switch (m->body_case) {
        case MOE__SERVER_MSG__BODY_HELLO_REPLY: on_hello_reply(cl, m->hello_reply); break;
        case MOE__SERVER_MSG__BODY_CHUNK: on_chunk(cl, m->chunk); break;
        case MOE__SERVER_MSG__BODY_FINISH: on_finish(cl, m->finish); break;
        case MOE__SERVER_MSG__BODY_ERROR: on_error(cl, m->error); break;
        case MOE__SERVER_MSG__BODY_HEARTBEAT: on_queued(cl, m->heartbeat); break;
        case MOE__SERVER_MSG__BODY_PROMPT_LOGPROBS: on_prompt_logprobs(cl, m->prompt_logprobs); break;
        case MOE__SERVER_MSG__BODY_ROUTED_EXPERTS: on_routed(cl, m->routed_experts); break;
        default: warn(cl, "server message of unknown kind %d, ignored", (int)m->body_case); break;
        }
        moe_link_in_clear(&in);
    }
}

/* ---- output ---------------------------------------------------------------- */


/* File mode: the lines of every finished request at the head of the input
 * order; their buffers are freed once printed. */
static void print_ready(client *cl)
{
    while (cl->next_print < cl->n_reqs && cl->reqs[cl->next_print].state == MOE_CLIENT_DONE) {
        req *r = &cl->reqs[cl->next_print++];
        moe_output_result(stdout, r->line, r->ok ? NULL : r->err_name, r->err_msg, cl->c->ids_out, r->ids, r->n_ids,
                          r->text, r->text_len);
        if (fflush(stdout)) cl->res->out_error = true;
        free(r->text);
        r->text = NULL;
        r->text_cap = r->text_len = 0;
    }
}

/* ---- the loop -------------------------------------------------------------- */

static void start_cancel(client *cl, double now)
{
    cl->interrupted = true;
    cl->cancel_until = now + CANCEL_WAIT_S;
    for (size_t i = 0; i < cl->n_reqs; i++) {
        req *r = &cl->reqs[i];
        if (r->state == MOE_CLIENT_PENDING) {
            req_fail(r, "cancelled", "not sent: interrupted");
            req_done(cl, r);
        } else if (r->state == MOE_CLIENT_SENT && !r->abandoned) {
            send_cancel(cl, r);
        }
    }
    cl->next_send = cl->n_reqs;
}

static int run(client *cl, moe_err *err)
{
    const moe_client_opts *c = cl->c;
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
                if (r->state != MOE_CLIENT_SENT || !r->abandoned) continue;
                if (now >= r->abandon_until) req_done(cl, r);
                else if (r->abandon_until < abandon_next) abandon_next = r->abandon_until;
            }
        }
        if (!cl->hello_sent) send_hello(cl);
        bool blocked = !cl->hello_sent;
        while (cl->hello_sent && !cl->interrupted && !cl->fatal && cl->next_send < cl->n_reqs &&
               cl->n_inflight < (size_t)c->concurrency) {
            if (cl->reqs[cl->next_send].state == MOE_CLIENT_DONE) { /* a bad line */
                cl->next_send++;
                continue;
            }
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
        if (!cl->c->single) print_ready(cl);
        if (cl->n_done == cl->n_reqs) break;
        /* Anything outstanding (in flight, or waiting for room to be sent)
         * with nothing heard for the timeout: give up. */
        if (!cl->interrupted && now - cl->last_rx >= c->timeout_s) {
            cl->res->timed_out = true;
            for (size_t i = 0; i < cl->n_reqs; i++)
                if (cl->reqs[i].state == MOE_CLIENT_SENT && !cl->reqs[i].abandoned) send_cancel(cl, &cl->reqs[i]);
            char m[MOE_ERR_MSG_MAX];
            if (cl->got_any)
                snprintf(m, sizeof m, "no answer from the server for %g s (heartbeat echoes do not count)", c->timeout_s);
            else /* connecting is silent in ZMQ: say what was tried */
                snprintf(m, sizeof m, "no answer from %.300s in %g s (is moe-coordinator listening there%s?)",
                         c->endpoint, c->timeout_s,
                         c->curve ? ", with this client's key in its --client-keys and its own as --curve-server-key"
                                  : "");
            fail_all(cl, true, "timeout", m);
            break;
        }
        double wait = cl->last_hb + hb - now;
        double t = cl->last_rx + c->timeout_s - now;
        if (t < wait) wait = t;
        if (cl->interrupted && cl->cancel_until - now < wait) wait = cl->cancel_until - now;
        if (abandon_next - now < wait) wait = abandon_next - now;
        int ms = wait <= 0 ? 0 : (int)(wait * 1e3) + 1;
        bool in = false, sig = false;
        if (moe_session_poll(cl->s, blocked, g_sig_pipe[0], ms, &in, &sig, err)) return MOE_ERR;
        if (sig) signals_drain();
        if (in) receive_all(cl);
    }
    if (!cl->c->single) print_ready(cl);
    return MOE_OK;
}


int moe_client_run(const moe_client_opts *o, moe_session *s, moe_client_req *reqs, size_t n, moe_client_result *res,
                   moe_err *err)
{
    memset(res, 0, sizeof *res);
    client cl;
    memset(&cl, 0, sizeof cl);
    cl.c = o;
    cl.reqs = reqs;
    cl.n_reqs = n;
    cl.res = res;
    if (signals_install(err)) return MOE_ERR;
    cl.s = s;
    for (size_t i = 0; i < n; i++) {
        req *r = &reqs[i];
        snprintf(r->id, sizeof r->id, "r%zu", i);
        r->t_first = -1;
        r->reason = -1;
        if (r->bad) { /* its result is its own error, in its place in the output */
            req_fail(r, "bad_line", "%s", r->bad);
            req_done(&cl, r);
        }
    }
    const int rc = run(&cl, err);
    res->wall_s = moe_now() - cl.t_start;
    if (cl.interrupted) res->signal = g_first_signal ? (int)g_first_signal : SIGINT;
    return rc;
}

void moe_client_reqs_free(moe_client_req *reqs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(reqs[i].ids);
        free(reqs[i].text);
        free(reqs[i].err_msg);
    }
}
