/*
 * workers.c — the worker job's ranks as the coordinator sees them (see
 * workers.h).
 */
#include "workers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "outbox.h"
#include "request.h"

typedef struct rank_info {
    bool known;
    moe_link_peer peer;       /* its connection (the ROUTER's routing id for it) */
    char key[MOE_LINK_USER_MAX + 1]; /* its User-Id: with CURVE, the job key in Z85; "" without */
    double last_seen;
    uint64_t job_id;
    uint32_t max_context;     /* from its hello (0: not said) */
    int64_t active;           /* from the last heartbeat (-1: none yet) */
    int64_t served;           /* sequences placed on it */
    moe_outbox *ob;           /* frames its link did not take yet, in order */
    char behind[200];         /* "": fine; else its outbox overflowed (why): lost at the next flush */
    double step_expect;       /* seconds: the step it announced in its last heartbeat (0: none) */
} rank_info;

struct moe_workers {
    moe_workers_cfg cfg;
    moe_workers_sink sink;
    bool record_on;           /* the recorder (moe_workers_record) */
    moe_link *link;
    moe_sched *s;
    rank_info *ranks;         /* [cfg.n_ranks] */
    bool ready;
    char refused[256];        /* why the last rank was refused ("": none since the job was ready) */
    moe_front_placement placement; /* the last one sent, and its result */
};

/* ---- sending -------------------------------------------------------------------- */

/* Never blocks: what the rank's queue cannot take now waits in its outbox
 * (flushed on every turn of the loop, moe_workers_flush).  A rank whose
 * outbox is over its bound has stopped reading (stopped, or stuck in a
 * step): it is lost at the next flush, outside the caller's loop, and
 * what is sent to it meanwhile is dropped. */
static void to_rank(moe_workers *w, int rank, Moe__CoordMsg *m)
{
    rank_info *ri = &w->ranks[rank];
    if (!ri->known || ri->behind[0]) return;
    moe_err err;
    const size_t waited = moe_outbox_frames(ri->ob);
    const int rc = moe_outbox_send(ri->ob, w->link, &ri->peer, &m->base, &err);
    if (rc == MOE_OUTBOX_FULL)
        snprintf(ri->behind, sizeof ri->behind, "worker rank %d stopped reading (%.150s)", rank, err.msg);
    else if (rc != MOE_OK)
        MOE_LOG_LIMITED(MOE_LOG_WARN, "send to rank %d failed (%d): %s", rank, rc, err.msg);
    else if (waited == 0 && moe_outbox_frames(ri->ob) > 0)
        MOE_LOG_LIMITED(MOE_LOG_WARN, "rank %d is not reading; frames to it wait here (at most %lld bytes)", rank,
                        (long long)w->cfg.outbox_bytes);
}

int moe_workers_set_placement(moe_workers *w, const char *text, size_t len, uint64_t *id, moe_err *err)
{
    if (len == 0) return moe_err_set(err, "the placement is empty");
    if (len > MOE_MSG_MAX_PLACEMENT_BYTES)
        return moe_err_set(err, "the placement is %zu bytes, more than the limit of %d", len, MOE_MSG_MAX_PLACEMENT_BYTES);
    if (memchr(text, 0, len)) return moe_err_set(err, "the placement holds a NUL byte");
    if (!moe_workers_rank_alive(w, 0)) return moe_err_set(err, "rank 0 of the worker job is not connected");
    char *t = moe_xmalloc(len + 1);
    memcpy(t, text, len);
    t[len] = 0;
    Moe__SetPlacement sp = MOE__SET_PLACEMENT__INIT;
    sp.has_id = true;
    sp.id = *id = ++w->placement.sent;
    sp.text = t;
    Moe__CoordMsg m = MOE__COORD_MSG__INIT;
    m.body_case = MOE__COORD_MSG__BODY_SET_PLACEMENT;
    m.set_placement = &sp;
    to_rank(w, 0, &m);
    free(t);
    moe_log(MOE_LOG_INFO, "placement %llu (%zu bytes) sent to rank 0", (unsigned long long)*id, len);
    return MOE_OK;
}

void moe_workers_placement(const moe_workers *w, moe_front_placement *out) { *out = w->placement; }

static void on_placement_result(moe_workers *w, const Moe__PlacementResult *r)
{
    moe_front_placement *p = &w->placement;
    if (r->id > 0) p->done = r->id; /* 0: the job's own (automatic mode), logged only */
    if (r->id > 0) {
        p->ok = r->ok;
        p->step = r->step;
        p->moved = r->moved;
        p->bal_before = r->balancedness_before;
        p->bal_after = r->balancedness_after;
        snprintf(p->message, sizeof p->message, "%s", r->message ? r->message : "");
    }
    if (w->sink.placement) w->sink.placement(w->sink.ctx, r->ok, r->balancedness_before, r->balancedness_after);
    if (r->ok)
        moe_log(MOE_LOG_INFO, "placement %llu applied by the worker job before step %llu: %llu experts moved, rank "
                "balancedness %.4f -> %.4f", (unsigned long long)r->id, (unsigned long long)r->step,
                (unsigned long long)r->moved, r->balancedness_before, r->balancedness_after);
    else
        moe_log(MOE_LOG_WARN, "placement %llu refused by the worker job: %s", (unsigned long long)r->id,
                r->message ? r->message : "");
}

static void release_seq(moe_workers *w, int rank, uint64_t seq_id)
{
    Moe__Release rel = MOE__RELEASE__INIT;
    rel.has_seq_id = true;
    rel.seq_id = seq_id;
    Moe__CoordMsg m = MOE__COORD_MSG__INIT;
    m.body_case = MOE__COORD_MSG__BODY_RELEASE;
    m.release = &rel;
    to_rank(w, rank, &m);
}

void moe_workers_release(moe_workers *w, const moe_req *r)
{
    if (r->state == MOE_REQ_RUNNING && moe_sched_rank_alive(w->s, r->rank)) release_seq(w, r->rank, r->id);
}

/* The sampling fields the client set, as the wire's optional fields: what
 * was not set stays unset, so the rank applies its own defaults. */
static void sampling_to_wire(const moe_sampler_cfg *sc, Moe__Sampling *out)
{
    moe__sampling__init(out);
    const unsigned set = sc->set;
    if ((out->has_temperature = (set >> MOE_SP_TEMP) & 1)) out->temperature = sc->temperature;
    if ((out->has_top_k = (set >> MOE_SP_TOP_K) & 1)) out->top_k = sc->top_k;
    if ((out->has_top_p = (set >> MOE_SP_TOP_P) & 1)) out->top_p = sc->top_p;
    if ((out->has_min_p = (set >> MOE_SP_MIN_P) & 1)) out->min_p = sc->min_p;
    if ((out->has_repetition_penalty = (set >> MOE_SP_REPEAT_PENALTY) & 1)) out->repetition_penalty = sc->repeat_penalty;
    if ((out->has_repeat_last_n = (set >> MOE_SP_REPEAT_LAST_N) & 1)) out->repeat_last_n = sc->repeat_last_n;
    if ((out->has_seed = (set >> MOE_SP_SEED) & 1)) out->seed = sc->seed;
    if ((out->has_min_tokens = (set >> MOE_SP_MIN_TOKENS) & 1)) out->min_tokens = sc->min_tokens;
    if ((out->has_ignore_eos = (set >> MOE_SP_IGNORE_EOS) & 1)) out->ignore_eos = sc->ignore_eos;
}

_Static_assert(MOE_SCHED_MAX_ROUTED_ENTRIES == MOE_MSG_MAX_ROUTED_ENTRIES, "one limit of routed experts");

void moe_workers_place(moe_workers *w)
{
    moe_req *placed[64];
    int n;
    while ((n = moe_sched_place(w->s, placed, 64)) > 0) {
        for (int i = 0; i < n; i++) {
            moe_req *r = placed[i];
            const moe_sampler_cfg *sc = w->sink.sampling(w->sink.ctx, r);
            Moe__Sampling sp;
            sampling_to_wire(sc, &sp);
            Moe__Assign a = MOE__ASSIGN__INIT;
            a.has_seq_id = a.has_max_tokens = true;
            a.seq_id = r->id;
            a.n_prompt = (size_t)r->n_prompt;
            a.prompt = r->prompt;
            a.max_tokens = r->max_tokens;
            a.sampling = &sp;
            a.n_stop_ids = (size_t)sc->n_stop; /* the client's stop ids; the rank adds its model's EOS */
            a.stop_ids = (int32_t *)sc->stop;
            a.n_emitted = (size_t)r->n_out;
            a.emitted = r->out;
            if ((a.has_logprobs = r->logprobs >= 0)) a.logprobs = (uint32_t)r->logprobs;
            /* a replay asks again only for what has not come yet */
            a.has_prompt_logprobs = a.prompt_logprobs = !moe_sched_prompt_logprobs_done(r);
            if ((a.has_cache_salt = r->cache_salt != 0)) a.cache_salt = r->cache_salt;
            if (r->routed) {
                a.has_routed_experts = a.routed_experts = true;
                a.has_routed_expert_weights = a.routed_expert_weights = r->routed_w;
            }
            Moe__CoordMsg m = MOE__COORD_MSG__INIT;
            m.body_case = MOE__COORD_MSG__BODY_ASSIGN;
            m.assign = &a;
            to_rank(w, r->rank, &m);
            w->ranks[r->rank].served++;
        }
        if (n < 64) break;
    }
}

/* ---- ranks ---------------------------------------------------------------------- */

/* The context a request must fit: the smallest any live rank said
 * (0: none said; the model's own).  Recomputed whenever a rank joins or
 * leaves, so a rank that is gone no longer limits it. */
static void context_update(moe_workers *w, int rank)
{
    uint32_t ctx = 0;
    for (int k = 0; k < w->cfg.n_ranks; k++)
        if (w->ranks[k].known && w->ranks[k].max_context && (!ctx || w->ranks[k].max_context < ctx))
            ctx = w->ranks[k].max_context;
    w->sink.context(w->sink.ctx, rank, ctx);
}

/* Rank k is not known until its next hello; what waited for it is dropped. */
static void forget_rank(moe_workers *w, int k)
{
    w->ranks[k].known = false;
    w->ranks[k].behind[0] = '\0';
    moe_outbox_clear(w->ranks[k].ob);
}

/* A rank is gone (silent, behind, stopping with its job, or its connection
 * closed and a new job's rank said hello): its requests end with
 * WORKER_LOST, or with cfg.replay go back to the queue; it joins again
 * with a hello. */
static void rank_lost(moe_workers *w, int k, const char *why)
{
    moe_log(MOE_LOG_ERROR, "%s", why);
    w->sink.rank_lost(w->sink.ctx, k, why);
    if (w->cfg.replay) moe_sched_rank_requeue(w->s, k); /* replayed on the next job */
    else moe_sched_rank_lost(w->s, k, why);
    forget_rank(w, k);
    context_update(w, k);
}

void moe_workers_job_lost(moe_workers *w, const char *why)
{
    for (int k = 0; k < w->cfg.n_ranks; k++) {
        if (w->ranks[k].known) {
            w->sink.rank_lost(w->sink.ctx, k, why);
            if (w->cfg.replay) moe_sched_rank_requeue(w->s, k);
            else moe_sched_rank_lost(w->s, k, why);
        }
        forget_rank(w, k);
    }
    context_update(w, -1);
    w->ready = false; /* ready again when every rank of the next job has said hello */
}

/* Seconds a rank may be silent: the timeout, or during a step it
 * announced as expected to take `expect` s, a multiple of that (capped by
 * max_step_ms) if that is longer.  A short step changes nothing, so a
 * stopped rank is found as fast as ever between long steps. */
static double silence_allowed(const moe_workers *w, double expect)
{
    const double timeout = (double)w->cfg.timeout_ms / 1000.0, cap = (double)w->cfg.max_step_ms / 1000.0;
    double step = MOE_WORKERS_STEP_FACTOR * expect;
    if (step > cap) step = cap;
    return step > timeout ? step : timeout;
}

static int rank_of_peer(const moe_workers *w, const moe_link_peer *p)
{
    for (int k = 0; k < w->cfg.n_ranks; k++)
        if (w->ranks[k].known && moe_link_peer_eq(&w->ranks[k].peer, p)) return k;
    return -1;
}

/* An Error to a peer of the worker endpoint (not yet a rank: no outbox;
 * dropped if its queue is full, it asks again). */
static void send_error(moe_workers *w, const moe_link_peer *to, Moe__Code code, const char *why)
{
    Moe__Error e = MOE__ERROR__INIT;
    e.has_code = true;
    e.code = code;
    e.message = (char *)why;
    Moe__CoordMsg cm = MOE__COORD_MSG__INIT;
    cm.body_case = MOE__COORD_MSG__BODY_ERROR;
    cm.error = &e;
    moe_err e2;
    moe_link_send(w->link, to, &cm.base, MOE_LINK_DONTWAIT, &e2);
}

/* A rank that cannot serve this coordinator: told why (it stops asking
 * often, docs/protocol.md), the reason kept for /health and for the
 * requests that wait, and logged at most once a minute per reason. */
static void refuse_rank(moe_workers *w, const moe_link_peer *from, const char *why)
{
    snprintf(w->refused, sizeof w->refused, "%s", why);
    MOE_LOG_LIMITED(MOE_LOG_ERROR, "refused a worker rank: %s", why);
    send_error(w, from, MOE__CODE__BAD_REQUEST, why);
}

/* Asks a rank to say hello later (NOT_READY: it tries again at its
 * heartbeat pace, where a refusal would make it wait 10 s). */
static void tell_not_ready(moe_workers *w, const moe_link_peer *to, const char *why)
{
    send_error(w, to, MOE__CODE__NOT_READY, why);
}

static void send_hello_reply(moe_workers *w, int rank)
{
    Moe__WorkerHelloReply r = MOE__WORKER_HELLO_REPLY__INIT;
    r.has_protocol_version = r.has_epoch = true;
    r.protocol_version = MOE_PROTO_VERSION;
    r.epoch = w->cfg.epoch;
    Moe__CoordMsg cm = MOE__COORD_MSG__INIT;
    cm.body_case = MOE__COORD_MSG__BODY_HELLO_REPLY;
    cm.hello_reply = &r;
    to_rank(w, rank, &cm);
}

/* Whether rank k's connection is still there: with ROUTER_MANDATORY a send
 * to a peer whose connection closed is refused at once.  The probe is a
 * Heartbeat, which a rank ignores. */
static bool still_connected(moe_workers *w, int k)
{
    Moe__Heartbeat hb = MOE__HEARTBEAT__INIT;
    Moe__CoordMsg cm = MOE__COORD_MSG__INIT;
    cm.body_case = MOE__COORD_MSG__BODY_HEARTBEAT;
    cm.heartbeat = &hb;
    moe_err e;
    return moe_link_send(w->link, &w->ranks[k].peer, &cm.base, MOE_LINK_DONTWAIT, &e) != MOE_LINK_UNREACHABLE;
}

static void accept_rank(moe_workers *w, const moe_link_in *in, const Moe__WorkerHello *h);

/* A rank's hello.  Everything in it is checked before anything changes,
 * and a rank, once joined, is bound to its connection, its key and its
 * job until it is lost (silent past the timeout, its job reported dead,
 * or stopping with it, or its connection closed): a hello for a live
 * rank from anyone else is refused and changes nothing — not the rank,
 * not its requests, not the context.  The same rank saying hello again on
 * its own connection (after an outbox overflow) only gets the reply
 * again. */
static void on_hello(moe_workers *w, const moe_link_in *in, const Moe__WorkerHello *h)
{
    const moe_link_peer *from = &in->from;
    char why[256];
    if (h->rank >= (uint32_t)w->cfg.n_ranks || h->n_ranks != (uint32_t)w->cfg.n_ranks) {
        snprintf(why, sizeof why, "a worker says it is rank %u of %u; this coordinator expects %d ranks", h->rank,
                 h->n_ranks, w->cfg.n_ranks);
        return refuse_rank(w, from, why);
    }
    if (h->model && h->model->has_vocab_size && h->model->vocab_size != w->cfg.vocab) {
        snprintf(why, sizeof why,
                 "rank %u runs a different model (%.64s, a vocabulary of %u tokens; the coordinator's has %u)",
                 h->rank, h->model->name && *h->model->name ? h->model->name : "no name", h->model->vocab_size,
                 w->cfg.vocab);
        return refuse_rank(w, from, why);
    }
    if (h->cache_tokens_total == 0 || (h->has_max_seqs && h->max_seqs == 0)) {
        snprintf(why, sizeof why, "rank %u offers no room (%llu cache tokens, max_seqs %u)", h->rank,
                 (unsigned long long)h->cache_tokens_total, h->has_max_seqs ? h->max_seqs : 0u);
        return refuse_rank(w, from, why);
    }
    rank_info *ri = &w->ranks[h->rank];
    if (ri->known) {
        if (moe_link_peer_eq(&ri->peer, from) && ri->job_id == h->job_id && !strcmp(ri->key, in->user_id)) {
            ri->last_seen = moe_now();
            send_hello_reply(w, (int)h->rank);
            return;
        }
        if (!still_connected(w, (int)h->rank)) {
            /* its connection closed (the job died) and a new job's rank
             * says hello before the timeout noticed: a restart, not a
             * takeover (nobody can close another's connection) */
            snprintf(why, sizeof why, "worker rank %u was restarted (its connection closed; a new job said hello)",
                     h->rank);
            rank_lost(w, (int)h->rank, why);
            return accept_rank(w, in, h);
        }
        /* not counted as the job's refusal (w->refused): the job is fine */
        MOE_LOG_LIMITED(MOE_LOG_WARN,
                        "refused a hello for rank %u: that rank is live (job %016llx) and bound to another "
                        "connection%s; it is free again once lost (silent for %.1f s)",
                        h->rank, (unsigned long long)ri->job_id, ri->job_id != h->job_id ? " and job" : "",
                        (double)w->cfg.timeout_ms / 1000.0);
        snprintf(why, sizeof why, "rank %u is held by a live rank of another connection; say hello again later",
                 h->rank);
        return tell_not_ready(w, from, why);
    }
    accept_rank(w, in, h);
}

/* A checked hello for a free rank: it joins. */
static void send_record_control(moe_workers *w, int rank)
{
    Moe__RecordControl rc = MOE__RECORD_CONTROL__INIT;
    rc.has_on = true;
    rc.on = w->record_on;
    Moe__CoordMsg m = MOE__COORD_MSG__INIT;
    m.body_case = MOE__COORD_MSG__BODY_RECORD_CONTROL;
    m.record_control = &rc;
    to_rank(w, rank, &m);
}

void moe_workers_record(moe_workers *w, bool on)
{
    w->record_on = on;
    for (int k = 0; k < w->cfg.n_ranks; k++)
        if (w->ranks[k].known) send_record_control(w, k);
}

static void accept_rank(moe_workers *w, const moe_link_in *in, const Moe__WorkerHello *h)
{
    rank_info *ri = &w->ranks[h->rank];
    ri->known = true;
    ri->peer = in->from;
    snprintf(ri->key, sizeof ri->key, "%s", in->user_id);
    ri->last_seen = moe_now();
    ri->job_id = h->job_id;
    ri->active = -1; /* the first heartbeat is logged */
    ri->step_expect = 0;
    ri->max_context = h->model && h->model->has_max_context ? h->model->max_context : 0;
    context_update(w, (int)h->rank);
    moe_sched_rank_update(w->s, (int)h->rank, (int64_t)h->cache_tokens_total);
    if (h->has_max_seqs) moe_sched_rank_set_max_running(w->s, (int)h->rank, (int)h->max_seqs);
    send_hello_reply(w, (int)h->rank);
    if (w->record_on) send_record_control(w, (int)h->rank);
    moe_log(MOE_LOG_INFO, "rank %u joined (%llu cache tokens, kernels %s%s)", h->rank,
            (unsigned long long)h->cache_tokens_total, h->kernels && *h->kernels ? h->kernels : "not said",
            in->user_id[0] ? ", CURVE key checked" : "");
    bool all = true;
    for (int k = 0; k < w->cfg.n_ranks; k++) all &= w->ranks[k].known;
    if (all && !w->ready) {
        w->ready = true;
        w->refused[0] = '\0';
        w->sink.ready(w->sink.ctx);
    }
}

static void on_heartbeat(moe_workers *w, int rank, const Moe__WorkerHeartbeat *hb)
{
    /* a long step announced (bounded by the link's check), or none */
    const double expect = hb->has_step_expect_ms ? (double)hb->step_expect_ms / 1000.0 : 0;
    if (expect > 0 && w->ranks[rank].step_expect == 0 && expect * 1000.0 >= (double)w->cfg.timeout_ms / 4)
        moe_log(MOE_LOG_DEBUG, "rank %d announced a step of %.1f s; it may be silent for %.1f s", rank, expect,
                        silence_allowed(w, expect));
    w->ranks[rank].step_expect = expect;
    /* sequences the rank still runs that we no longer want there (ended
     * here while the rank was silent, or before we restarted) */
    for (size_t i = 0; i < hb->n_active; i++) {
        const moe_req *r = moe_sched_find(w->s, hb->active[i]);
        if (!r || r->state != MOE_REQ_RUNNING || r->rank != rank) release_seq(w, rank, hb->active[i]);
    }
    if (w->sink.report) {
        moe_rank_report rep = {.rank = rank, .sequences = (int64_t)hb->n_active, .cache_tokens_free = hb->cache_tokens_free};
        const Moe__RankStats *st = hb->stats; /* checked by the link (moe_msg_check_rank_stats) */
        if (st) {
            rep.has_stats = true;
            rep.steps = st->steps;
            rep.step_seconds_sum = st->step_seconds_sum;
            rep.step_counts = st->step_seconds_counts;
            rep.n_step_counts = (int)st->n_step_seconds_counts;
            rep.cache_blocks_total = st->cache_blocks_total;
            rep.cache_blocks_used = st->cache_blocks_used;
            rep.cache_block_tokens = st->cache_block_tokens;
            rep.xchg_bytes_sent = st->xchg_bytes_sent;
            rep.xchg_bytes_recv = st->xchg_bytes_recv;
            rep.first_moe_layer = (int)st->first_moe_layer;
            rep.n_moe_layers = (int)st->n_expert_tokens;
            rep.expert_tokens = st->expert_tokens;
            rep.tokens_prefill = st->tokens_prefill;
            rep.tokens_decode = st->tokens_decode;
            rep.prefix_cache_queries = st->prefix_cache_queries;
            rep.prefix_cache_hits = st->prefix_cache_hits;
            rep.spec_draft_tokens = st->spec_draft_tokens;
            rep.spec_accepted_tokens = st->spec_accepted_tokens;
            rep.spec_accepted_per_pos = st->spec_accepted_per_pos;
            rep.n_spec_pos = (int)st->n_spec_accepted_per_pos;
        }
        w->sink.report(w->sink.ctx, &rep);
    }
    if ((int64_t)hb->n_active != w->ranks[rank].active) {
        w->ranks[rank].active = (int64_t)hb->n_active;
        moe_log(MOE_LOG_INFO, "rank %d: %lld active sequences, %llu cache tokens free", rank,
                (long long)w->ranks[rank].active, (unsigned long long)hb->cache_tokens_free);
    }
}

static void on_frame(moe_workers *w, moe_link_in *in, const moe_err *err)
{
    const Moe__WorkerMsg *m = (const Moe__WorkerMsg *)in->msg;
    if (in->code != MOE__CODE__OK) {
        MOE_LOG_LIMITED(MOE_LOG_WARN, "refused a frame from a worker (%s): %s", moe_msg_code_name(in->code), err->msg);
        return;
    }
    if (m->body_case == MOE__WORKER_MSG__BODY_HELLO) return on_hello(w, in, m->hello);
    const int rank = rank_of_peer(w, &in->from);
    if (rank < 0) { /* we do not know it (we restarted): ask for a hello */
        tell_not_ready(w, &in->from, "say hello first");
        return;
    }
    w->ranks[rank].last_seen = moe_now();
    switch (m->body_case) {
    case MOE__WORKER_MSG__BODY_TOKEN: {
        moe_req *r = moe_sched_find(w->s, m->token->seq_id);
        if (!r || r->rank != rank) break;
        if (m->token->has_cached_tokens) moe_sched_cached(w->s, r->id, m->token->cached_tokens);
        moe_token_logprobs lp;
        if (m->token->logprobs) moe_msg_logprobs_from_wire(m->token->logprobs, m->token->token, &lp);
        if (moe_sched_token(w->s, r->id, (int)m->token->index, m->token->token, m->token->logprobs ? &lp : NULL) &&
            w->sink.token)
            w->sink.token(w->sink.ctx, r);
        break;
    }
    case MOE__WORKER_MSG__BODY_PROMPT_LOGPROBS: {
        const Moe__PromptLogprobs *p = m->prompt_logprobs;
        const moe_req *r = moe_sched_find(w->s, p->seq_id);
        if (!r || r->rank != rank) break;
        for (size_t i = 0; i < p->n_entries; i++) { /* counts checked by the link's decoder */
            moe_token_logprobs lp;
            moe_msg_logprobs_from_wire(p->entries[i], p->ids[i], &lp);
            moe_sched_prompt_logprob(w->s, r->id, (int)(p->index + i), &lp);
        }
        break;
    }
    case MOE__WORKER_MSG__BODY_ROUTED_EXPERTS: {
        const Moe__RoutedExperts *re = m->routed_experts; /* shape and sizes checked by the link's decoder */
        const moe_req *r = moe_sched_find(w->s, re->seq_id);
        if (!r || r->rank != rank) break;
        if (!moe_sched_routed(w->s, r->id, re->first, re->rows, (int)re->moe_layers, (int)re->top_k,
                              (int)re->first_moe_layer, re->ids.data, re->has_weights ? re->weights.data : NULL))
            MOE_LOG_LIMITED(MOE_LOG_WARN, "rank %d: routed experts of sequence %llu (rows %u+%u) not kept", rank,
                            (unsigned long long)r->id, re->first, re->rows);
        break;
    }
    case MOE__WORKER_MSG__BODY_RECORD_ROWS: {
        const Moe__RecordRows *rr = m->record_rows; /* sizes checked by the link's decoder */
        if (rr->rank != (uint32_t)rank) break;
        if (w->sink.record_rows)
            w->sink.record_rows(w->sink.ctx, rank, rr->data.data, rr->rows, (int)rr->top_k, rr->has_dropped ? rr->dropped : 0);
        break;
    }
    case MOE__WORKER_MSG__BODY_SEQ_END: {
        const Moe__SeqEnd *se = m->seq_end;
        moe_req *r = moe_sched_find(w->s, se->seq_id);
        if (!r || r->rank != rank || r->state != MOE_REQ_RUNNING) break;
        if (w->cfg.replay && se->has_replayable && se->replayable) {
            /* the rank is leaving with the job: the job is dead, its
             * sequences are replayed on the next one */
            char why[128];
            snprintf(why, sizeof why, "worker rank %d is stopping with its job", rank);
            rank_lost(w, rank, why);
            break;
        }
        w->sink.seq_end(w->sink.ctx, r, moe_request_end_from_wire(se->has_reason, (int)se->reason),
                        se->message ? se->message : "");
        break;
    }
    case MOE__WORKER_MSG__BODY_HEARTBEAT: on_heartbeat(w, rank, m->heartbeat); break;
    case MOE__WORKER_MSG__BODY_PLACEMENT_RESULT:
        if (rank == 0) on_placement_result(w, m->placement_result);
        break;
    default: break;
    }
}

void moe_workers_recv(moe_workers *w)
{
    for (int budget = 1024; budget > 0; budget--) { /* bounded: the clients get their turn */
        moe_link_in in = {0};
        moe_err err = {{0}};
        const int rc = moe_link_recv(w->link, &in, MOE_LINK_DONTWAIT, &err);
        if (rc != MOE_OK) {
            if (rc == MOE_ERR) MOE_LOG_LIMITED(MOE_LOG_WARN, "receive from the workers failed: %s", err.msg);
            return;
        }
        on_frame(w, &in, &err);
        moe_link_in_clear(&in);
    }
}

void moe_workers_flush(moe_workers *w)
{
    for (int k = 0; k < w->cfg.n_ranks; k++) {
        rank_info *ri = &w->ranks[k];
        if (ri->known && !ri->behind[0] && moe_outbox_frames(ri->ob) > 0) {
            moe_err err;
            const int rc = moe_outbox_flush(ri->ob, w->link, &ri->peer, &err);
            if (rc != MOE_OK) MOE_LOG_LIMITED(MOE_LOG_WARN, "send to rank %d failed (%d): %s", k, rc, err.msg);
        }
        if (ri->known && ri->behind[0]) {
            char why[sizeof ri->behind];
            snprintf(why, sizeof why, "%s", ri->behind);
            rank_lost(w, k, why);
        }
    }
}

void moe_workers_tick(moe_workers *w, double now)
{
    for (int k = 0; k < w->cfg.n_ranks; k++) {
        const rank_info *ri = &w->ranks[k];
        if (!ri->known || !moe_sched_rank_alive(w->s, k) || now - ri->last_seen < silence_allowed(w, ri->step_expect))
            continue;
        char why[160];
        if (ri->step_expect > 0)
            snprintf(why, sizeof why, "worker rank %d stopped answering (no heartbeat for %.1f s, in a step it expected to take %.1f s)",
                     k, now - ri->last_seen, ri->step_expect);
        else snprintf(why, sizeof why, "worker rank %d stopped answering (no heartbeat for %.1f s)", k, now - ri->last_seen);
        rank_lost(w, k, why);
    }
}

bool moe_workers_ready(const moe_workers *w) { return w->ready; }

const char *moe_workers_refused(const moe_workers *w) { return w->refused[0] ? w->refused : NULL; }

bool moe_workers_rank_alive(const moe_workers *w, int k)
{
    return k >= 0 && k < w->cfg.n_ranks && w->ranks[k].known && moe_sched_rank_alive(w->s, k);
}

bool moe_workers_any_alive(const moe_workers *w)
{
    for (int k = 0; k < w->cfg.n_ranks; k++)
        if (w->ranks[k].known && moe_sched_rank_alive(w->s, k)) return true;
    return false;
}

int moe_workers_n_known(const moe_workers *w)
{
    int n = 0;
    for (int k = 0; k < w->cfg.n_ranks; k++) n += w->ranks[k].known;
    return n;
}

void moe_workers_poll_item(moe_workers *w, moe_link_poll_item *item)
{
    memset(item, 0, sizeof *item);
    item->link = w->link;
}

const char *moe_workers_endpoint(const moe_workers *w) { return moe_link_endpoint(w->link); }

int moe_workers_open(moe_workers **out, moe_link_ctx *lctx, const moe_workers_cfg *cfg, moe_sched *sched,
                     const moe_workers_sink *sink, moe_err *err)
{
    *out = NULL;
    moe_workers *w = moe_xcalloc(1, sizeof *w);
    w->cfg = *cfg;
    w->sink = *sink;
    w->s = sched;
    w->ranks = moe_xcalloc((size_t)cfg->n_ranks, sizeof *w->ranks);
    moe_link_opts o;
    moe_link_opts_default(&o, &moe__worker_msg__descriptor);
    o.limits.vocab_size = cfg->vocab;
    /* no handover: a rank is its connection (it sets no routing id of its
     * own), and nobody may take over another's */
    o.router_handover = false;
    o.curve = cfg->curve;
    o.sndhwm = cfg->sndhwm;
    o.sndbuf = cfg->sndbuf;
    if (w->cfg.outbox_bytes <= 0) w->cfg.outbox_bytes = (int64_t)64 << 20;
    for (int k = 0; k < cfg->n_ranks; k++) w->ranks[k].ob = moe_outbox_new(w->cfg.outbox_bytes);
    if (moe_link_bind(&w->link, lctx, cfg->endpoint, &o, err)) {
        for (int k = 0; k < cfg->n_ranks; k++) moe_outbox_free(w->ranks[k].ob);
        free(w->ranks);
        free(w);
        return MOE_ERR;
    }
    *out = w;
    return MOE_OK;
}

void moe_workers_close(moe_workers *w)
{
    if (!w) return;
    for (int k = 0; k < w->cfg.n_ranks; k++)
        moe_log(MOE_LOG_INFO, "rank %d served %lld sequences", k, (long long)w->ranks[k].served);
    for (int k = 0; k < w->cfg.n_ranks; k++) moe_outbox_free(w->ranks[k].ob);
    moe_link_close(w->link);
    free(w->ranks);
    free(w);
}
