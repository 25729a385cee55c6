/*
 * coord.c — the coordinator's loop (see coord.h).
 */
#include "coord.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "chat.h"
#include "clients.h"
#include "coord_metrics.h"
#include "gguf.h"
#include "msg.h"
#include "openai.h"
#include "prep.h"
#include "recorder.h"
#include "sched.h"
#include "supervisor.h"
#include "tokenizer.h"
#include "workers.h"

#define MAX_FRONTS 4
/* Large prompts waiting in the pool or being prepared, for all clients
 * together: each holds its copy and its tokens (a few MiB for a 1 MB
 * prompt), so this bounds the memory a burst of them can take. */
#define PREP_MAX_JOBS 16
/* A request replayed this many times ends with WORKER_LOST at the next
 * death of its job (a request that crashes the job must not loop it). */
#define MAX_REPLAYS 3
#define MAX_REPLAYS_PLUS_1 4
#define MOE_STR_(x) #x
#define MOE_STR(x) MOE_STR_(x)

/* A request in flight: the request itself, the scheduler's record of it
 * (r->owner is this entry) and where its client is. */
typedef struct entry {
    moe_request *q;
    moe_req *r;
    moe_front *f;
    moe_front_client *cl;
    bool finished;            /* Finish sent (or the client is gone) */
    moe_req_timing t;         /* for the metrics and the request's log line */
    int n_placed;             /* placements logged (1 + replays once running) */
    moe_client *client;       /* whose limits it counts against (clients.h) */
} entry;

/* A request whose prompt is being prepared in the pool (prep.h). */
typedef struct pending {
    moe_prep_job *job;
    moe_front *f;
    moe_front_client *cl;     /* NULL: the client went away (the job is dropped when done) */
    moe_client *client;
    char *id;
    double arrival;
    bool cancelled;           /* the client cancelled it meanwhile */
} pending;

struct moe_coord {
    moe_coord_cfg cfg;
    moe_gguf *g;
    moe_tokenizer *tok;
    moe_chat *chat;           /* NULL: the model has no known template */
    char model_name[256];
    moe_request_model model;
    moe_link_ctx *lctx;
    moe_auth *auth;           /* the ZAP handler, with CURVE; NULL: none */
    moe_link_curve client_curve, worker_curve;
    bool client_curve_on, worker_curve_on;
    uint32_t file_context;    /* the model file's context (capped), before the ranks' */
    moe_sched *s;
    moe_workers *w;
    moe_front *fronts[MAX_FRONTS];
    int n_fronts;
    entry **reqs;
    int n_reqs, cap_reqs;
    bool draining;
    moe_cmetrics *cm;
    char health[512];         /* the reason on_health gives */
    moe_super *sup;           /* --launch: the worker job is ours; NULL: someone else's */
    bool said_ready;          /* the ready line is printed once */
    char job_dead[256];       /* a rank of our job was lost: the whole job is dead (handled in housekeeping) */
    int32_t eos;              /* the model's EOS (-1: none), for the end of a replayed request */
    moe_clients *clients;     /* per-client limits and queues */
    moe_prep *prep;           /* large prompts are prepared off the loop */
    pending **pend;
    int n_pend, cap_pend;
    double t_trim;            /* last look at the heap's free memory */
    moe_recorder *rec;        /* the expert distribution recorder; NULL: the model's shape is unknown */
};

/* ---- requests in flight ------------------------------------------------------------ */

static entry *find(const moe_coord *c, const moe_front *f, const moe_front_client *cl, const char *id)
{
    for (int i = 0; i < c->n_reqs; i++)
        if (c->reqs[i]->f == f && c->reqs[i]->cl == cl && !strcmp(c->reqs[i]->q->id, id)) return c->reqs[i];
    return NULL;
}

/* A request is over (reported, or its client is gone): its metrics and
 * its log line, exactly once (from forget). */
static void request_over(moe_coord *c, entry *e)
{
    const double now = moe_now();
    const moe_end_reason why = e->r->state == MOE_REQ_DONE ? e->r->end : MOE_END_CANCELLED;
    const moe_end_reason end = e->q->end != MOE_END_NONE ? e->q->end : why;
    const char *reason = moe_request_end_name(end);
    moe_cmetrics_finished(c->cm, &e->t, reason, now);
    char client[128] = "-";
    if (e->f->ops->client_name) e->f->ops->client_name(e->f, e->cl, client, sizeof client);
    moe_log_field fl[8] = {
        {.key = "id", .kind = MOE_LOGF_STR, .s = e->q->id},
        {.key = "client", .kind = MOE_LOGF_STR, .s = client},
        {.key = "prompt_tokens", .kind = MOE_LOGF_INT, .i = e->r->n_prompt},
        {.key = "output_tokens", .kind = MOE_LOGF_INT, .i = e->r->n_out},
        {.key = "ttft_s", .kind = MOE_LOGF_NUM, .d = e->t.n_tokens ? e->t.first_token - e->t.arrival : NAN},
        {.key = "total_s", .kind = MOE_LOGF_NUM, .d = now - e->t.arrival},
        {.key = "finish_reason", .kind = MOE_LOGF_STR, .s = reason},
    };
    int n = 7;
    if (end == MOE_END_ERROR || end == MOE_END_DEADLINE)
        fl[n++] = (moe_log_field){.key = "error", .kind = MOE_LOGF_STR, .s = e->q->message};
    moe_log_event(MOE_LOG_INFO, "request finished", fl, n);
}

/* Drops a request that has ended and been reported (or whose client is gone). */
static void forget(moe_coord *c, entry *e)
{
    request_over(c, e);
    for (int i = 0; i < c->n_reqs; i++)
        if (c->reqs[i] == e) {
            c->reqs[i] = c->reqs[--c->n_reqs];
            break;
        }
    if (e->r) moe_sched_forget(c->s, e->r);
    if (e->client) moe_clients_done(c->clients, e->client);
    moe_request_free(e->q);
    free(e);
}

/* Ends a request for a reason found here (cancel, deadline, stop string,
 * lost rank, client gone): the rank lets the sequence go. */
static void end_here(moe_coord *c, entry *e, moe_end_reason why, int code, const char *msg)
{
    moe_request_end(e->q, why, code, msg);
    moe_workers_release(c->w, e->r);
    moe_sched_end(c->s, e->r, e->q->end, msg);
}

/* Sends what the client has not had yet; when the request has ended and
 * everything is out, the Finish.  Returns false if the client is gone. */
static bool flush_one(moe_coord *c, entry *e)
{
    if (e->finished) return true;
    moe_req *r = e->r;
    moe_request_chunk ch = {0};
    const bool has = moe_request_next_chunk(e->q, r->out, &r->n_out, &ch);
    /* a stop string found just now: the rank stops at once, and no later
     * token can be taken while the end is being reported */
    if (e->q->end != MOE_END_NONE && r->state != MOE_REQ_DONE) end_here(c, e, e->q->end, e->q->code, e->q->message);
    if (has) {
        const int rc = e->f->ops->send_chunk(e->f, e->cl, e->q->id, &ch);
        if (rc == MOE_FRONT_GONE) return false;
        if (rc != MOE_FRONT_SENT) return true; /* back-pressure: everything stays here, offered again */
        moe_request_chunk_sent(e->q, &ch);
    }
    if (!moe_request_finish_due(e->q, r->n_out)) return true;
    moe_request_outcome fin;
    moe_request_finish(e->q, r->n_prompt, r->n_out, &fin);
    const int rc = e->f->ops->send_finish(e->f, e->cl, e->q->id, &fin);
    if (rc == MOE_FRONT_GONE) return false;
    if (rc == MOE_FRONT_SENT) e->finished = true;
    return true;
}

/* Streams what is new and finishes what has ended. */
static void flush_all(moe_coord *c)
{
    const double now = moe_now();
    for (int i = 0; i < c->n_reqs;) {
        entry *e = c->reqs[i];
        moe_request *q = e->q;
        /* placed since the last look (placement runs just before this) */
        if (e->r->state == MOE_REQ_RUNNING && e->t.placed == 0) moe_cmetrics_placed(c->cm, &e->t, e->r->n_prompt, now);
        if (e->r->state == MOE_REQ_RUNNING && e->n_placed != e->r->replays + 1) {
            e->n_placed = e->r->replays + 1;
            moe_log(MOE_LOG_DEBUG, "request '%s' placed on rank %d (sequence %llu, %d tokens emitted before)", q->id,
                    e->r->rank, (unsigned long long)e->r->id, e->r->n_out);
        }
        if (e->r->state == MOE_REQ_DONE && q->end == MOE_END_NONE) q->end = e->r->end; /* ended by the scheduler */
        if (q->end != MOE_END_NONE && e->r->state != MOE_REQ_DONE) end_here(c, e, q->end, q->code, q->message);
        if (!flush_one(c, e)) { /* the client is gone: nobody to tell, nothing to run */
            e->finished = true;
            if (e->r->state != MOE_REQ_DONE) {
                end_here(c, e, MOE_END_CANCELLED, 0, "the client went away");
                MOE_LOG_LIMITED(MOE_LOG_INFO, "a client went away; released its request '%s'", q->id);
            }
        }
        if (e->finished && e->r->state == MOE_REQ_DONE) {
            forget(c, e);
            continue;
        }
        i++;
    }
}

/* The supervisor's side: the job died by itself (launcher exited, not
 * ready in time) or a rank of it was lost (silent: dead, stopped, or stuck
 * in a step: the heartbeat is the step watchdog).  Open MPI cannot go on
 * without a rank, so the whole job is killed and started again; its
 * requests are back in the queue, replayed on the new one.  A crash loop
 * ends the queued requests: nothing will run them. */
static void supervise(moe_coord *c, double now)
{
    char why[256] = "";
    if (moe_super_tick(c->sup, now, why, sizeof why) && !c->job_dead[0]) snprintf(c->job_dead, sizeof c->job_dead, "%s", why);
    if (c->job_dead[0]) {
        snprintf(why, sizeof why, "%s", c->job_dead);
        moe_workers_job_lost(c->w, why); /* may call on_rank_lost again: job_dead is cleared after */
        c->job_dead[0] = 0;
        const moe_super_state before = moe_super_get_state(c->sup);
        moe_super_job_dead(c->sup, why, now);
        if (before != moe_super_get_state(c->sup) && moe_super_get_state(c->sup) == MOE_SUPER_WAITING)
            moe_cmetrics_restarted(c->cm);
    }
    const char *failed = moe_super_failed(c->sup);
    if (failed)
        for (int i = 0; i < c->n_reqs; i++) {
            entry *e = c->reqs[i];
            if (e->r->state == MOE_REQ_QUEUED && e->q->end == MOE_END_NONE)
                end_here(c, e, MOE_END_ERROR, MOE__CODE__WORKER_LOST, failed);
        }
}

/* NOT_READY's message: what the job is missing. */
static void not_ready_why(moe_coord *c, char *buf, size_t n)
{
    const char *refused = moe_workers_refused(c->w);
    if (refused)
        snprintf(buf, n, "no worker rank could take the request in %.1f s: %s", (double)c->cfg.no_ranks_timeout_ms / 1e3,
                 refused);
    else
        snprintf(buf, n, "no worker rank could take the request in %.1f s (%d of %lld ranks have joined)",
                 (double)c->cfg.no_ranks_timeout_ms / 1e3, moe_workers_n_known(c->w), (long long)c->cfg.ranks);
}

/* Memory back to the system once a burst is over: glibc keeps freed heap
 * memory (every arena, the pool threads' too) for reuse, and gives back
 * by itself only a free top of the main heap.  Once a second, with no
 * prompt being prepared, more than TRIM_FREE of it free is returned
 * (malloc_trim: the free pages inside every arena too).  The bound is
 * small because the coordinator's heap is small (~0.6 MiB under a steady
 * load of short requests): with 4 MiB, what a short backlog had touched
 * stayed resident, and each new high-water mark of the backlog showed as
 * RssAnon growth in a soak.  A trim with little to give costs ~10 us. */
#define TRIM_FREE ((size_t)256 << 10)
static void trim_heap(moe_coord *c, double now)
{
    if (now - c->t_trim < 1.0 || moe_prep_pending(c->prep) > 0) return;
    c->t_trim = now;
    const struct mallinfo2 mi = mallinfo2();
    if (mi.fordblks > TRIM_FREE) malloc_trim(0);
}

static void housekeeping(moe_coord *c, double now)
{
    moe_workers_tick(c->w, now);
    moe_clients_tick(c->clients, now);
    trim_heap(c, now);
    if (c->sup) supervise(c, now);
    /* no rank alive and none coming (no supervisor restarting the job):
     * a queued request waits only so long */
    if (!c->sup && !moe_workers_any_alive(c->w))
        for (int i = 0; i < c->n_reqs; i++) {
            entry *e = c->reqs[i];
            if (e->r->state != MOE_REQ_QUEUED || e->q->end != MOE_END_NONE ||
                now - e->t.arrival < (double)c->cfg.no_ranks_timeout_ms / 1e3)
                continue;
            char why[400];
            not_ready_why(c, why, sizeof why);
            end_here(c, e, MOE_END_ERROR, MOE__CODE__NOT_READY, why);
        }
    /* every rank gone: queued requests can never run */
    if (!c->sup && moe_workers_ready(c->w) && !moe_workers_any_alive(c->w))
        for (int i = 0; i < c->n_reqs; i++) {
            entry *e = c->reqs[i];
            if (e->r->state == MOE_REQ_QUEUED && e->q->end == MOE_END_NONE)
                end_here(c, e, MOE_END_ERROR, MOE__CODE__WORKER_LOST, "no worker rank is alive");
        }
    for (int i = 0; i < c->n_reqs; i++) {
        entry *e = c->reqs[i];
        if (e->q->end == MOE_END_NONE && e->r->deadline > 0 && now >= e->r->deadline)
            end_here(c, e, MOE_END_DEADLINE, MOE__CODE__DEADLINE_EXCEEDED, "deadline exceeded");
    }
}

/* ---- what the front ends report ------------------------------------------------------ */

/* The client a front end says cl is (front.h, client_key). */
static moe_client *client_of(moe_coord *c, moe_front *f, moe_front_client *cl, double now)
{
    char key[MOE_LINK_CLIENT_MAX + 16] = "local";
    if (f->ops->client_key) f->ops->client_key(f, cl, key, sizeof key);
    return moe_clients_get(c->clients, key, now);
}

static pending *find_pending(const moe_coord *c, const moe_front *f, const moe_front_client *cl, const char *id)
{
    for (int i = 0; i < c->n_pend; i++)
        if (c->pend[i]->f == f && c->pend[i]->cl == cl && !c->pend[i]->cancelled && !strcmp(c->pend[i]->id, id))
            return c->pend[i];
    return NULL;
}

/* The request is made (tokens in toks, q ours): into the scheduler, in
 * its client's queue.  Refused here, its client's count goes back. */
static void admit(moe_coord *c, moe_front *f, moe_front_client *cl, moe_client *mc, moe_request *q, moe_tokens *toks,
                  double arrival)
{
    moe_err err = {{0}};
    const char *id = q->id;
    /* the context may have shrunk (a rank's hello) while the prompt was prepared */
    const int ctx = moe_msg_check_context((int64_t)toks->n, q->max_tokens ? q->max_tokens : 1, &c->model.lim, &err);
    if (ctx != MOE__CODE__OK) {
        f->ops->send_error(f, cl, id, ctx, err.msg);
        moe_request_free(q);
        moe_clients_done(c->clients, mc);
        return;
    }
    entry *e = moe_xcalloc(1, sizeof *e);
    e->q = q;
    e->f = f;
    e->cl = cl;
    e->t.arrival = arrival;
    bool full = false;
    const int rc = moe_sched_submit_flow(c->s, moe_client_flow(mc), e, toks->ids, (int)toks->n, q->max_tokens, q->deadline,
                                         &e->r, &full, &err);
    if (rc) {
        if (full) {
            MOE_LOG_LIMITED(MOE_LOG_WARN, "refused a request of client %s: %s", moe_client_key(mc), err.msg);
            moe_cmetrics_client_refused(c->cm, moe_sched_flow_n_queued(moe_client_flow(mc)) > 0 &&
                                                       moe_sched_n_queued(c->s) < (int)c->cfg.queue
                                                   ? "queue_share"
                                                   : "queue");
        }
        f->ops->send_error(f, cl, id, full ? MOE__CODE__QUEUE_FULL : MOE__CODE__BAD_REQUEST, err.msg);
        moe_request_free(q);
        free(e);
        moe_clients_done(c->clients, mc);
        return;
    }
    e->client = mc;
    uint64_t salt = q->cache_salt;
    if (c->cfg.prefix_per_client) {
        const char *key = moe_client_key(mc);
        salt ^= moe_cache_salt_hash(key, strlen(key)) * 0x9e3779b97f4a7c15ull;
        salt = salt ? salt : 1;
    }
    moe_sched_set_salt(e->r, salt);
    moe_sched_want_logprobs(e->r, q->logprobs, q->prompt_logprobs);
    moe_sched_want_routed(e->r, q->routed_experts, q->routed_weights);
    moe_request_attach(q, e->r);
    if (c->n_reqs == c->cap_reqs) {
        c->cap_reqs = c->cap_reqs ? 2 * c->cap_reqs : 64;
        c->reqs = moe_xrealloc(c->reqs, (size_t)c->cap_reqs * sizeof *c->reqs);
    }
    c->reqs[c->n_reqs++] = e;
}

static void on_generate(void *ctx, moe_front *f, moe_front_client *cl, const moe_request_spec *spec)
{
    moe_coord *c = ctx;
    moe_err err = {{0}};
    const char *id = spec->id;
    const double arrival = moe_now();
    if (c->draining) return f->ops->send_error(f, cl, id, MOE__CODE__SHUTTING_DOWN, "the server is shutting down");
    if (find(c, f, cl, id) || find_pending(c, f, cl, id))
        return f->ops->send_error(f, cl, id, MOE__CODE__DUPLICATE_REQUEST, "a request with this id is in flight");
    if (c->sup && moe_super_failed(c->sup))
        return f->ops->send_error(f, cl, id, MOE__CODE__WORKER_LOST, moe_super_failed(c->sup));
    if (!c->sup && moe_workers_ready(c->w) && !moe_workers_any_alive(c->w))
        return f->ops->send_error(f, cl, id, MOE__CODE__WORKER_LOST,
                                  "no worker rank is alive; the worker job must be restarted");
    /* the client's limits, before any work that grows with the prompt */
    moe_client *mc = client_of(c, f, cl, arrival);
    const size_t bytes = moe_request_spec_bytes(spec);
    const char *limit;
    if (moe_clients_admit(c->clients, mc, bytes, arrival, &limit, &err)) {
        moe_cmetrics_client_refused(c->cm, limit);
        MOE_LOG_LIMITED(MOE_LOG_WARN, "refused a request of client %s: %s", moe_client_key(mc), err.msg);
        return f->ops->send_error(f, cl, id, MOE__CODE__QUEUE_FULL, err.msg);
    }
    if (bytes >= (size_t)c->cfg.prompt_inline_bytes) { /* off the loop */
        pending *p = moe_xcalloc(1, sizeof *p);
        p->job = moe_prep_submit(c->prep, spec, &c->model, p);
        if (!p->job) {
            free(p);
            moe_clients_done(c->clients, mc);
            moe_cmetrics_client_refused(c->cm, "prompt_pool");
            MOE_LOG_LIMITED(MOE_LOG_WARN, "refused a large prompt: %d are being prepared", moe_prep_pending(c->prep));
            return f->ops->send_error(f, cl, id, MOE__CODE__QUEUE_FULL,
                                      "the server is preparing as many large prompts as it takes; retry later");
        }
        p->f = f;
        p->cl = cl;
        p->client = mc;
        p->id = moe_xstrdup(id ? id : "");
        p->arrival = arrival;
        if (c->n_pend == c->cap_pend) {
            c->cap_pend = c->cap_pend ? 2 * c->cap_pend : 16;
            c->pend = moe_xrealloc(c->pend, (size_t)c->cap_pend * sizeof *c->pend);
        }
        c->pend[c->n_pend++] = p;
        return;
    }
    moe_tokens toks = {0};
    moe_request *q;
    const int code = moe_request_new(&q, &toks, &c->model, spec, &err);
    if (code != MOE__CODE__OK) {
        moe_tokens_free(&toks);
        moe_clients_done(c->clients, mc);
        return f->ops->send_error(f, cl, id, code, err.msg);
    }
    admit(c, f, cl, mc, q, &toks, arrival);
    moe_tokens_free(&toks);
}

/* Prompts the pool has prepared: admitted as if they had just arrived
 * (their arrival time kept), unless their client left or cancelled. */
static void prep_done(moe_coord *c)
{
    for (moe_prep_job *j; (j = moe_prep_done(c->prep));) {
        pending *p = j->owner;
        for (int i = 0; i < c->n_pend; i++)
            if (c->pend[i] == p) {
                c->pend[i] = c->pend[--c->n_pend];
                break;
            }
        if (!p->cl || c->draining) {
            if (p->cl) p->f->ops->send_error(p->f, p->cl, p->id, MOE__CODE__SHUTTING_DOWN, "the server is shutting down");
            moe_clients_done(c->clients, p->client);
        } else if (j->code != MOE__CODE__OK) {
            p->f->ops->send_error(p->f, p->cl, p->id, j->code, j->err.msg);
            moe_clients_done(c->clients, p->client);
        } else {
            moe_request *q = j->q;
            j->q = NULL;
            const size_t before = (size_t)c->n_reqs;
            admit(c, p->f, p->cl, p->client, q, &j->toks, p->arrival);
            /* cancelled while it was prepared: it ends as a cancel does, with a Finish */
            if (p->cancelled && (size_t)c->n_reqs > before)
                end_here(c, c->reqs[c->n_reqs - 1], MOE_END_CANCELLED, 0, "cancelled");
        }
        moe_log(MOE_LOG_DEBUG, "prepared a prompt of request '%s' in %.1f ms", p->id, j->seconds * 1e3);
        moe_prep_job_free(c->prep, j);
        free(p->id);
        free(p);
    }
}

static void on_cancel(void *ctx, moe_front *f, moe_front_client *cl, const char *id)
{
    moe_coord *c = ctx;
    entry *e = find(c, f, cl, id);
    pending *p = e ? NULL : find_pending(c, f, cl, id);
    if (p) {
        p->cancelled = true;
        return;
    }
    if (!e || e->q->end != MOE_END_NONE)
        return f->ops->send_error(f, cl, id, MOE__CODE__UNKNOWN_REQUEST, "no request with this id is in flight");
    end_here(c, e, MOE_END_CANCELLED, 0, "cancelled");
}

/* Its sequences go and nothing is sent; the front end frees cl next, so
 * every request of it is forgotten now. */
static void on_client_gone(void *ctx, moe_front *f, moe_front_client *cl, const char *why)
{
    moe_coord *c = ctx;
    int released = 0;
    for (int i = 0; i < c->n_pend; i++)
        if (c->pend[i]->f == f && c->pend[i]->cl == cl) {
            c->pend[i]->cl = NULL; /* dropped when the pool is done with it */
            released++;
        }
    for (int i = 0; i < c->n_reqs;) {
        entry *e = c->reqs[i];
        if (e->f != f || e->cl != cl) {
            i++;
            continue;
        }
        if (e->r->state != MOE_REQ_DONE) end_here(c, e, MOE_END_CANCELLED, 0, "the client went away");
        released++;
        forget(c, e);
    }
    /* a client that finished its requests and left is normal: only the
     * debug log hears of it */
    if (released) MOE_LOG_LIMITED(MOE_LOG_INFO, "a client %s; released %d of its requests", why, released);
    else moe_log(MOE_LOG_DEBUG, "a client %s (none of its requests was in flight)", why);
}

/* Heartbeats: where each of a client's requests stands. */
static int on_status(void *ctx, moe_front *f, moe_front_client *cl, const char *id)
{
    moe_coord *c = ctx;
    const entry *e = find(c, f, cl, id);
    if (!e) return find_pending(c, f, cl, id) ? 1 : -1;
    return e->r->state == MOE_REQ_QUEUED ? moe_sched_queue_position(c->s, e->r) : 0;
}

static const char *on_health(void *ctx)
{
    moe_coord *c = ctx;
    if (c->draining) return "draining: the server is shutting down";
    if (c->sup && moe_super_failed(c->sup)) {
        snprintf(c->health, sizeof c->health, "failed: %s", moe_super_failed(c->sup));
        return c->health;
    }
    if (c->sup && c->said_ready && !moe_workers_ready(c->w)) {
        snprintf(c->health, sizeof c->health,
                 "recovering: the worker job is being restarted (restart %lld); requests wait and are replayed",
                 (long long)moe_super_restarts(c->sup));
        return c->health;
    }
    if (!moe_workers_ready(c->w) && moe_workers_refused(c->w)) {
        snprintf(c->health, sizeof c->health, "refused a rank: %s", moe_workers_refused(c->w));
        return c->health;
    }
    if (!moe_workers_ready(c->w)) {
        snprintf(c->health, sizeof c->health, "starting: waiting for %d of %lld worker ranks to say hello",
                 (int)c->cfg.ranks - moe_workers_n_known(c->w), (long long)c->cfg.ranks);
        return c->health;
    }
    if (!moe_workers_any_alive(c->w)) return "no worker rank is alive; the worker job must be restarted";
    return NULL;
}

/* GET /metrics: the whole registry (docs/metrics.md). */
static char *on_record(void *ctx, int op, const char *body, size_t len, int *status)
{
    moe_coord *c = ctx;
    if (!c->rec) {
        moe_oai_error e;
        moe_oai_error_set(&e, 503, "not_available", NULL, "the expert distribution recorder is off: the model's MoE shape is unknown");
        *status = 503;
        return moe_oai_error_json(&e);
    }
    int ranks_on;
    char *answer = moe_recorder_call(c->rec, (moe_recorder_op)op, body, len, status, &ranks_on);
    if (ranks_on >= 0) moe_workers_record(c->w, ranks_on == 1);
    return answer;
}

static void on_record_rows(void *ctx, int rank, const uint8_t *data, size_t rows, int top_k, uint64_t dropped)
{
    moe_coord *c = ctx;
    if (c->rec) moe_recorder_rows(c->rec, rank, data, rows, top_k, dropped);
}

static void on_metrics(void *ctx, FILE *out)
{
    moe_coord_metrics_write(ctx, out);
}

/* ---- what the worker side reports --------------------------------------------------- */

/* The last token of a request on a dead job ended it (its SeqEnd was lost
 * with the job): nothing to replay. */
static moe_end_reason ended_by_last(const moe_coord *c, const entry *e)
{
    const moe_req *r = e->r;
    if (r->n_out == 0) return MOE_END_NONE;
    if (r->n_out >= r->max_tokens) return MOE_END_LENGTH;
    const int32_t t = r->out[r->n_out - 1];
    const moe_sampler_cfg *sc = &e->q->sampling;
    if (moe_sampler_is_stop(sc, t) || (t == c->eos && !sc->ignore_eos)) return MOE_END_STOP;
    return MOE_END_NONE;
}

static void on_seq_end(void *ctx, moe_req *r, moe_end_reason why, const char *message);

/* Without a supervisor its running requests end with WORKER_LOST (the
 * scheduler ends them next).  With one, the whole job is dead: they go
 * back to the queue and are replayed on the next job. */
static void on_rank_lost(void *ctx, int rank, const char *why)
{
    moe_coord *c = ctx;
    if (c->sup) {
        if (!c->job_dead[0]) snprintf(c->job_dead, sizeof c->job_dead, "%s", why);
        for (int i = 0; i < c->n_reqs; i++) {
            entry *e = c->reqs[i];
            if (e->r->state != MOE_REQ_RUNNING || e->r->rank != rank) continue;
            const moe_end_reason last = ended_by_last(c, e);
            if (last != MOE_END_NONE) on_seq_end(c, e->r, last, NULL);
            else if (e->q->end != MOE_END_NONE) continue; /* ending anyway (stop string, cancel) */
            else if (e->r->replays >= MAX_REPLAYS) /* a request that kills every job it runs on */
                moe_request_end(e->q, MOE_END_ERROR, MOE__CODE__WORKER_LOST,
                                "the worker job died " MOE_STR(MAX_REPLAYS_PLUS_1) " times while this request ran");
            else moe_cmetrics_replayed(c->cm, e->r->n_out);
        }
        return;
    }
    for (int i = 0; i < c->n_reqs; i++) {
        entry *e = c->reqs[i];
        if (e->r->state == MOE_REQ_RUNNING && e->r->rank == rank)
            moe_request_end(e->q, MOE_END_ERROR, MOE__CODE__WORKER_LOST, why);
    }
}

static void on_seq_end(void *ctx, moe_req *r, moe_end_reason why, const char *message)
{
    moe_coord *c = ctx;
    entry *e = r->owner;
    /* tokens the scheduler has are final; decode them before deciding (a
     * stop string among them is the real end) */
    moe_request_decode(e->q, r->out, &r->n_out);
    moe_request_end(e->q, why, MOE__CODE__INTERNAL, message);
    moe_sched_end(c->s, r, e->q->end, e->q->message);
}

/* The live ranks' context (else the file's) is what a request must fit. */
static void on_context(void *ctx, int rank, uint32_t max_context)
{
    moe_coord *c = ctx;
    const uint32_t v = max_context && max_context < c->file_context ? max_context : c->file_context;
    if (v == c->model.lim.max_context) return;
    c->model.lim.max_context = v;
    if (rank >= 0) moe_log(MOE_LOG_INFO, "context is %u tokens (after rank %d joined or left)", v, rank);
    else moe_log(MOE_LOG_INFO, "context is %u tokens (the model file's)", v);
}

static void on_ready(void *ctx)
{
    moe_coord *c = ctx;
    if (c->sup) {
        moe_super_ready(c->sup, moe_now());
        if (c->said_ready) {
            moe_cmetrics_recovered(c->cm, moe_super_last_recovery(c->sup));
            moe_log(MOE_LOG_INFO, "the worker job is back (%lld ranks); %d requests waiting to be placed or replayed",
                    (long long)c->cfg.ranks, moe_sched_n_queued(c->s));
            return;
        }
    }
    c->said_ready = true;
    printf("moe-coordinator: ready: clients at ");
    for (int i = 0; i < c->n_fronts; i++) printf("%s%s", i ? ", " : "", c->fronts[i]->ops->endpoint(c->fronts[i]));
    printf("%s, %lld worker ranks\n", c->n_fronts ? "" : "(none)", (long long)c->cfg.ranks);
    fflush(stdout);
}

static void on_token(void *ctx, moe_req *r)
{
    moe_coord *c = ctx;
    moe_cmetrics_token(c->cm, &((entry *)r->owner)->t, moe_now());
}

static void on_report(void *ctx, const moe_rank_report *rep)
{
    moe_coord *c = ctx;
    moe_cmetrics_rank_report(c->cm, rep, moe_now());
}

static void on_placement(void *ctx, bool ok, double bal_before, double bal_after)
{
    moe_coord *c = ctx;
    moe_cmetrics_placement(c->cm, ok, bal_before, bal_after);
}

static const moe_sampler_cfg *sampling_of(void *ctx, const moe_req *r)
{
    (void)ctx;
    return &((const entry *)r->owner)->q->sampling;
}

/* ---- setup and the loop ---------------------------------------------------------------- */

static int load_model(moe_coord *c, moe_err *err)
{
    const char *path = c->cfg.model;
    if (moe_gguf_open(&c->g, path, err)) return MOE_ERR;
    if (moe_tokenizer_load(&c->tok, c->g, err) || moe_tokenizer_check_embd(c->tok, c->g, err))
        return moe_err_prefix(err, "%s", path);
    moe_err cerr;
    if (moe_chat_init(&c->chat, c->g, c->tok, &cerr)) {
        c->chat = NULL;
        moe_log(MOE_LOG_INFO, "chat requests disabled: %s", cerr.msg);
    }
    const char *name;
    uint64_t nlen;
    moe_err nerr;
    if (moe_gguf_get_str(c->g, "general.name", &name, &nlen, &nerr) == MOE_OK)
        snprintf(c->model_name, sizeof c->model_name, "%.*s", (int)(nlen < 255 ? nlen : 255), name);
    if (!c->model_name[0]) { /* no name in the file: its file name (the HTTP API's model id) */
        const char *base = strrchr(path, '/');
        snprintf(c->model_name, sizeof c->model_name, "%s", base ? base + 1 : path);
    }
    uint64_t ctx = 4096;
    moe_gguf_get_u64(c->g, "deepseek2.context_length", &ctx, &nerr);
    moe_request_model *m = &c->model;
    /* the MoE shape, for the size of returned routed experts */
    uint64_t blocks = 0, dense = 0, used = 0, mtp = 0;
    if (moe_gguf_get_u64(c->g, "deepseek2.block_count", &blocks, &nerr) == MOE_OK &&
        moe_gguf_get_u64(c->g, "deepseek2.expert_used_count", &used, &nerr) == MOE_OK) {
        moe_gguf_get_u64(c->g, "deepseek2.leading_dense_block_count", &dense, &nerr);
        moe_gguf_get_u64(c->g, "deepseek2.nextn_predict_layers", &mtp, &nerr);
        if (blocks <= 4096 && dense + mtp < blocks && used >= 1 && used <= 64)
            m->routed_width = (int)((blocks - dense - mtp) * used);
    }
    {
        uint64_t experts = 0;
        moe_recorder_cfg rc = {.dir = c->cfg.record_dir,
                               .mode = c->cfg.record_mode ? c->cfg.record_mode : MOE_EXPREC_STAT,
                               .window = c->cfg.record_window > 0 ? (int)c->cfg.record_window : 1,
                               .max_bytes = c->cfg.record_max_bytes > 0 ? (size_t)c->cfg.record_max_bytes : (size_t)256 << 20,
                               .shape = {.layers = (int)(blocks - dense - mtp), .first_layer = (int)dense,
                                         .top_k = (int)used, .ranks = (int)c->cfg.ranks}};
        moe_err rerr;
        if (m->routed_width > 0 && moe_gguf_get_u64(c->g, "deepseek2.expert_count", &experts, &nerr) == MOE_OK &&
            experts <= MOE_EXPREC_MAX_EXPERTS) {
            rc.shape.experts = (int)experts;
            if (moe_recorder_init(&c->rec, &rc, &rerr))
                moe_log(MOE_LOG_WARN, "the expert distribution recorder is off: %s", rerr.msg);
        }
    }
    m->tok = c->tok;
    m->chat = c->chat;
    m->default_max_tokens = (int)c->cfg.max_tokens;
    moe_msg_limits_default(&m->lim);
    m->lim.max_frame = (size_t)c->cfg.max_frame;
    m->lim.vocab_size = (uint32_t)moe_tokenizer_n_vocab(c->tok);
    /* lowered to the live ranks' own (on_context) */
    m->lim.max_context = (uint32_t)(ctx < (1u << 24) ? ctx : (1u << 24));
    c->file_context = m->lim.max_context;
    return MOE_OK;
}

/* The ZAP handler, before any CURVE endpoint binds: domain "client" for
 * the listed client keys, "worker" for the job's key. */
static int start_auth(moe_coord *c, moe_err *err)
{
    const moe_coord_cfg *cfg = &c->cfg;
    if (!cfg->curve_secret) return MOE_OK;
    moe_auth_domain d[2];
    int n = 0;
    if (cfg->n_client_keys) {
        d[n++] = (moe_auth_domain){"client", cfg->client_keys, cfg->n_client_keys};
        c->client_curve = (moe_link_curve){.secret = *cfg->curve_secret, .zap_domain = "client"};
        c->client_curve_on = true;
    }
    if (cfg->worker_key) {
        d[n++] = (moe_auth_domain){"worker", cfg->worker_key, 1};
        c->worker_curve = (moe_link_curve){.secret = *cfg->curve_secret, .zap_domain = "worker"};
        c->worker_curve_on = true;
    }
    if (n == 0) return moe_err_set(err, "a CURVE secret key without keys to admit (client keys or the worker key)");
    return moe_auth_start(&c->auth, c->lctx, d, n, err);
}

int moe_coord_init(moe_coord **out, const moe_coord_cfg *cfg, moe_err *err)
{
    moe_coord *c = moe_xcalloc(1, sizeof *c);
    *out = c; /* freed by the caller with moe_coord_free, also after an error */
    c->cfg = *cfg;
    if (load_model(c, err)) return MOE_ERR;
    moe_cmetrics_init(&c->cm, c->model_name, (int)cfg->ranks);
    moe_sched_limits sl = {.max_queue = (int)cfg->queue,
                           .max_running = (int)cfg->max_running,
                           .epoch = cfg->epoch,
                           .max_queue_per_flow = (int)cfg->client_queue,
                           .prefix_placement = cfg->prefix_slack >= 0,
                           .prefix_slack = cfg->prefix_slack >= 0 ? (int)cfg->prefix_slack : 0};
    if (moe_sched_init(&c->s, (int)cfg->ranks, &sl, err)) return moe_err_prefix(err, "--client-queue");
    const moe_clients_limits cll = {
        .max_in_flight = (int)cfg->client_in_flight,
        .prompt_bytes_per_s = (double)cfg->client_prompt_bps,
        .prompt_burst = (double)(cfg->client_prompt_bps > cfg->max_frame ? cfg->client_prompt_bps : cfg->max_frame),
    };
    if (moe_clients_init(&c->clients, c->s, &cll, err)) return MOE_ERR;
    if (moe_prep_init(&c->prep, (int)cfg->prompt_threads, PREP_MAX_JOBS, err))
        return moe_err_prefix(err, "--prompt-threads");
    if (moe_link_ctx_init(&c->lctx, err)) return MOE_ERR;
    if (start_auth(c, err)) return MOE_ERR;
    const moe_workers_cfg wc = {
        .endpoint = cfg->workers,
        .n_ranks = (int)cfg->ranks,
        .timeout_ms = cfg->worker_timeout_ms,
        .max_step_ms = cfg->max_step_ms,
        .vocab = c->model.lim.vocab_size,
        .replay = cfg->launch != NULL,
        .epoch = cfg->epoch,
        .outbox_bytes = cfg->worker_outbox_bytes,
        .sndhwm = (int)cfg->worker_hwm,
        .sndbuf = (int)cfg->worker_sndbuf,
        .curve = c->worker_curve_on ? &c->worker_curve : NULL,
    };
    const moe_workers_sink ws = {
        .ctx = c,
        .rank_lost = on_rank_lost,
        .seq_end = on_seq_end,
        .context = on_context,
        .ready = on_ready,
        .sampling = sampling_of,
        .token = on_token,
        .report = on_report,
        .placement = on_placement,
        .record_rows = on_record_rows,
    };
    if (moe_workers_open(&c->w, c->lctx, &wc, c->s, &ws, err)) return moe_err_prefix(err, "--workers");
    c->eos = moe_tokenizer_eos(c->tok);
    if (cfg->launch) {
        const moe_super_cfg sc = {
            .argv = cfg->launch,
            .workers = moe_workers_endpoint(c->w),
            .max_unready = (int)cfg->max_start_failures,
            .backoff_min_s = (double)cfg->restart_backoff_ms / 1000.0,
            .backoff_max_s = 16.0 * (double)cfg->restart_backoff_ms / 1000.0,
            .start_timeout_s = (double)cfg->start_timeout_ms / 1000.0,
            .job_file = cfg->job_file,
        };
        if (moe_super_init(&c->sup, &sc, err)) return MOE_ERR;
    }
    return MOE_OK;
}

/* ---- metrics ------------------------------------------------------------------------------ */

int moe_coord_metrics_write(moe_coord *c, FILE *out)
{
    const int n = (int)c->cfg.ranks;
    bool *alive = moe_xcalloc((size_t)n, sizeof *alive);
    for (int k = 0; k < n; k++) alive[k] = moe_workers_rank_alive(c->w, k);
    const moe_cmetrics_state st = {
        .running = moe_sched_n_running(c->s, -1),
        .waiting = moe_sched_n_queued(c->s),
        .rank_alive = alive,
        .job_up = moe_workers_ready(c->w),
        .job_failed = c->sup && moe_super_failed(c->sup),
    };
    const int rc = moe_cmetrics_write(c->cm, &st, moe_now(), out);
    free(alive);
    return rc;
}

/* --metrics-file: written whole to PATH.tmp, then renamed, so a reader
 * never sees half a file. */
static void dump_metrics(moe_coord *c)
{
    const char *path = c->cfg.metrics_file;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        moe_log(MOE_LOG_WARN, "--metrics-file: the path is too long");
        return;
    }
    FILE *f = fopen(tmp, "w");
    int rc = f ? moe_coord_metrics_write(c, f) : MOE_ERR;
    if (f && fclose(f) != 0) rc = MOE_ERR;
    if (rc == MOE_OK && rename(tmp, path) != 0) rc = MOE_ERR;
    if (rc != MOE_OK) moe_log(MOE_LOG_WARN, "could not write the metrics to %s: %s", path, strerror(errno));
}

moe_link_ctx *moe_coord_link_ctx(moe_coord *c) { return c->lctx; }

const moe_link_curve *moe_coord_client_curve(const moe_coord *c)
{
    return c->client_curve_on ? &c->client_curve : NULL;
}
const moe_request_model *moe_coord_model(const moe_coord *c) { return &c->model; }
const char *moe_coord_model_name(const moe_coord *c) { return c->model_name; }
const char *moe_coord_workers_endpoint(const moe_coord *c) { return moe_workers_endpoint(c->w); }

static int on_placement_set(void *ctx, const char *text, size_t len, uint64_t *id, moe_err *err)
{
    moe_coord *c = ctx;
    return moe_workers_set_placement(c->w, text, len, id, err);
}

static void on_placement_get(void *ctx, moe_front_placement *out)
{
    moe_coord *c = ctx;
    moe_workers_placement(c->w, out);
}

moe_front_sink moe_coord_front_sink(moe_coord *c)
{
    return (moe_front_sink){.ctx = c,
                            .generate = on_generate,
                            .cancel = on_cancel,
                            .client_gone = on_client_gone,
                            .health = on_health,
                            .status = on_status,
                            .metrics = on_metrics,
                            .placement_set = on_placement_set,
                            .placement_get = on_placement_get,
                            .record = on_record};
}

int moe_coord_add_front(moe_coord *c, moe_front *f, moe_err *err)
{
    if (c->n_fronts == MAX_FRONTS) return moe_err_set(err, "more than %d front ends", MAX_FRONTS);
    c->fronts[c->n_fronts++] = f;
    return MOE_OK;
}

/* Ends every request in flight with SHUTTING_DOWN (a drain that ran out
 * of time, or a second signal). */
static void end_all(moe_coord *c, const char *why)
{
    for (int i = 0; i < c->n_reqs; i++)
        if (c->reqs[i]->q->end == MOE_END_NONE) end_here(c, c->reqs[i], MOE_END_ERROR, MOE__CODE__SHUTTING_DOWN, why);
}

/* A loop that did not run for STALL_S (the process was stopped, or
 * starved) finds what its peers sent meanwhile still on its way in (ZMQ's
 * I/O thread reads the sockets as the loop does): nobody is taken for
 * silent until STALL_GRACE_S after it runs again. */
#define STALL_S 1.0
#define STALL_GRACE_S 1.0

void moe_coord_run(moe_coord *c, volatile sig_atomic_t *term)
{
    double t_house = 0, t_idle = 0, t_drain = 0, t_loop = 0, t_grace = 0, stalled = 0;
    bool cut = false;
    for (;;) {
        if (*term && !c->draining) {
            c->draining = true;
            t_drain = moe_now();
            moe_log(MOE_LOG_INFO, "draining: %d requests in flight (at most %.1f s; a second signal stops at once)",
                    c->n_reqs, (double)c->cfg.drain_timeout_ms / 1e3);
        }
        if (c->draining && !cut && (*term >= 2 || moe_now() - t_drain >= (double)c->cfg.drain_timeout_ms / 1e3)) {
            cut = true;
            moe_log(MOE_LOG_WARN, "%s: ending %d requests in flight", *term >= 2 ? "a second signal" : "the drain timed out",
                    c->n_reqs);
            end_all(c, *term >= 2 ? "the server was stopped" : "the server shut down before the request finished");
            flush_all(c);
            if (*term >= 2) {
                /* at once; but the sockets close with linger 0, so the I/O
                 * thread gets 100 ms to put the Finishes on the wire */
                const struct timespec grace = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
                nanosleep(&grace, NULL);
                break;
            }
        }
        if (c->draining && c->n_reqs == 0 && c->n_pend == 0) {
            /* the last answers reach their clients (a front end that writes
             * them after the Finish: HTTP), within a bound for slow readers */
            bool busy = false;
            for (int i = 0; i < c->n_fronts; i++)
                busy |= c->fronts[i]->ops->busy && c->fronts[i]->ops->busy(c->fronts[i]);
            if (t_idle == 0) t_idle = moe_now();
            if (!busy || moe_now() - t_idle > 10) break;
        }
        moe_link_poll_item pi[2 + 2 * MAX_FRONTS];
        int n = 0;
        moe_workers_poll_item(c->w, &pi[n++]);
        pi[n++] = (moe_link_poll_item){.fd = moe_prep_fd(c->prep)};
        for (int i = 0; i < c->n_fronts; i++)
            n += c->fronts[i]->ops->poll_items(c->fronts[i], pi + n, (int)(sizeof pi / sizeof pi[0]) - n);
        moe_err err;
        moe_link_poll(pi, n, 20, &err);
        moe_workers_recv(c->w);
        for (int i = 0; i < c->n_fronts; i++) c->fronts[i]->ops->recv(c->fronts[i]);
        prep_done(c);
        const double now = moe_now();
        if (t_loop > 0 && now - t_loop > STALL_S) {
            moe_log(MOE_LOG_WARN, "the loop did not run for %.1f s (stopped?); no rank or client is taken for silent "
                    "in the next %.1f s", now - t_loop, STALL_GRACE_S);
            t_grace = now + STALL_GRACE_S;
            stalled = now - t_loop;
        }
        t_loop = now;
        const bool grace = now < t_grace;
        if (now - t_house >= 0.05 && !grace) {
            housekeeping(c, now);
            t_house = now;
        }
        moe_workers_place(c->w);
        moe_workers_flush(c->w); /* what the ranks could not take before; a rank far behind is lost here */
        flush_all(c);
        /* the front ends still send what waits; their clocks leave the stall out */
        for (int i = 0; i < c->n_fronts; i++) c->fronts[i]->ops->tick(c->fronts[i], grace ? now - stalled : now);
        if (c->cfg.metrics_file && c->cfg.metrics_dump && *c->cfg.metrics_dump) {
            *c->cfg.metrics_dump = 0;
            dump_metrics(c);
        }
    }
    if (c->cfg.metrics_file) dump_metrics(c);
    moe_log_limiter_flush_all();
    moe_log(MOE_LOG_INFO, "drained; exiting");
}

void moe_coord_free(moe_coord *c)
{
    if (!c) return;
    while (c->n_reqs > 0) {
        moe_sched_end(c->s, c->reqs[0]->r, MOE_END_CANCELLED, NULL);
        forget(c, c->reqs[0]);
    }
    free(c->reqs);
    moe_prep_free(c->prep); /* the threads stop first: nothing touches a pending entry after */
    for (int i = 0; i < c->n_pend; i++) {
        free(c->pend[i]->id);
        free(c->pend[i]);
    }
    free(c->pend);
    moe_clients_free(c->clients);
    moe_super_free(c->sup); /* the job stops (SIGTERM, then whatever is left is killed) */
    for (int i = 0; i < c->n_fronts; i++) c->fronts[i]->ops->close(c->fronts[i]);
    moe_workers_close(c->w);
    moe_sched_free(c->s);
    if (c->auth)
        moe_log(MOE_LOG_INFO, "CURVE: %llu connections admitted, %llu refused",
                (unsigned long long)moe_auth_admitted(c->auth), (unsigned long long)moe_auth_refused(c->auth));
    moe_auth_stop(c->auth); /* after every link, before the context */
    moe_link_ctx_free(c->lctx);
    moe_cmetrics_free(c->cm);
    moe_recorder_free(c->rec);
    moe_chat_free(c->chat);
    moe_tokenizer_free(c->tok);
    moe_gguf_close(c->g);
    free(c);
}
