/*
 * source_link.c — requests from the coordinator (source.h).  Wire messages
 * are converted here, at the edge; the generate loop sees plain requests.
 */
#include "source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "exprec.h"
#include "link.h"
#include "live.h"
#include "msg.h"
#include "xchg.h"

struct moe_source_link {
    moe_link_src_opts o;
    int me, n_rank;
    const moe_model *m;
    moe_gen *g;
    moe_link_ctx *lctx;
    moe_link *link;
    bool hello_acked;
    bool refused;                   /* the coordinator refused this rank: hello only every 10 s */
    uint32_t epoch;                 /* the coordinator's (hello reply); 0: none yet */
    double t_beat;
    bool closing;           /* the job is stopping: its sequences end replayable */
    /* Frames the coordinator has not taken yet (its queue is full: it is
     * stopped, busy or gone), in order; a rank never blocks on a send.
     * Over half the bound the rank asks the job to hold (l_hold), so the
     * bound itself is reached only by one step's frames. */
    struct outbox_frame { uint8_t *data; size_t len; } *out;
    size_t out_head, out_n, out_cap, out_bytes;
    bool holding;                   /* this rank asks the job to hold */
    double t_hold;                  /* since */
    bool overflowed;                /* the outbox hit its bound: its frames were dropped */
    int64_t dropped;                /* frames dropped since */
    double expect_s;                /* the step in progress should take this long; 0: between steps */
    uint64_t job_id;
    void (*stats_fill)(void *ctx, moe_link_stats *st);
    void *stats_ctx;
    moe_msg_logprobs *plp;          /* [PROMPT_LP_PIECE] a PromptLogprobs message's entries */
    Moe__TokenLogprobs **plp_ptr;
    int32_t *plp_ids;
    moe_live *live;                 /* rank 0: where SetPlacement goes */
    moe_xchg *rec_x;                /* the recorder's rows (moe_source_link_set_record), or NULL */
    size_t rec_max;
    bool rec_on;
};

/* Positions per PromptLogprobs message: ~200 bytes each with 20
 * alternatives, so a message stays far below the 1 MiB frame cap. */
#define PROMPT_LP_PIECE 1024

int moe_source_link_open(moe_source_link **out, const moe_link_src_opts *o, const moe_model *m, int rank, int n_rank,
                         moe_err *err)
{
    moe_source_link *l = moe_xcalloc(1, sizeof *l);
    l->o = *o;
    l->me = rank;
    l->n_rank = n_rank;
    l->m = m;
    l->job_id = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    l->plp = moe_xmalloc(PROMPT_LP_PIECE * sizeof *l->plp);
    l->plp_ptr = moe_xmalloc(PROMPT_LP_PIECE * sizeof *l->plp_ptr);
    l->plp_ids = moe_xmalloc(PROMPT_LP_PIECE * sizeof *l->plp_ids);
    *out = l;
    moe_link_opts lo;
    moe_link_opts_default(&lo, &moe__coord_msg__descriptor);
    /* no routing id of our own: the coordinator's ROUTER makes up one per
     * connection, so a rank is known by its connection (and its hello),
     * never by a name another process could claim */
    lo.curve = o->curve;
    lo.sndhwm = o->sndhwm > 0 ? o->sndhwm : 100000; /* tokens wait here rather than stall the job */
    lo.sndbuf = o->sndbuf;
    if (l->o.outbox_bytes <= 0) l->o.outbox_bytes = (int64_t)64 << 20;
    if (moe_link_ctx_init(&l->lctx, err)) return MOE_ERR;
    return moe_link_connect(&l->link, l->lctx, o->endpoint, &lo, err);
}

void moe_source_link_attach(moe_source_link *l, moe_gen *g) { l->g = g; }

static void link_send(moe_source_link *l, Moe__WorkerMsg *m);

/* Rank 0: what became of a placement goes back to the coordinator. */
static void report_placement(void *ctx, const moe_live_result *r)
{
    moe_source_link *l = ctx;
    Moe__PlacementResult pr = MOE__PLACEMENT_RESULT__INIT;
    pr.has_id = pr.has_ok = pr.has_step = pr.has_moved = true;
    pr.id = r->id;
    pr.ok = r->ok;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", r->message ? r->message : "");
    pr.message = msg;
    pr.step = (uint64_t)r->step;
    pr.moved = (uint64_t)r->moved;
    pr.has_balancedness_before = pr.has_balancedness_after = true;
    pr.balancedness_before = r->bal_before;
    pr.balancedness_after = r->bal_after;
    Moe__WorkerMsg m = MOE__WORKER_MSG__INIT;
    m.body_case = MOE__WORKER_MSG__BODY_PLACEMENT_RESULT;
    m.placement_result = &pr;
    link_send(l, &m);
}

void moe_source_link_set_live(moe_source_link *l, moe_live *live)
{
    l->live = l->me == 0 ? live : NULL;
    if (l->live) moe_live_set_report(live, report_placement, l);
}

void moe_source_link_set_stats(moe_source_link *l, void (*fill)(void *ctx, moe_link_stats *st), void *ctx)
{
    l->stats_fill = fill;
    l->stats_ctx = ctx;
}

/* The rank's figures as the wire's RankStats (pointers into st and js). */
static void stats_to_wire(const moe_link_stats *st, Moe__RankStats *rs)
{
    moe__rank_stats__init(rs);
    const moe_job_stats *js = st->job;
    if (js) {
        rs->has_steps = rs->has_step_seconds_sum = rs->has_tokens_prefill = rs->has_tokens_decode = true;
        rs->steps = 0;
        for (int b = 0; b < MOE_JOB_STEP_BUCKETS; b++) rs->steps += js->step_buckets[b];
        rs->step_seconds_sum = js->step_seconds;
        rs->n_step_seconds_counts = MOE_JOB_STEP_BUCKETS;
        rs->step_seconds_counts = (uint64_t *)js->step_buckets;
        rs->tokens_prefill = (uint64_t)js->tok_prefill;
        rs->tokens_decode = (uint64_t)js->tok_decode;
    }
    rs->has_cache_blocks_total = rs->has_cache_blocks_used = rs->has_cache_block_tokens = true;
    rs->cache_blocks_total = (uint64_t)st->cache_blocks_total;
    rs->cache_blocks_used = (uint64_t)st->cache_blocks_used;
    rs->cache_block_tokens = (uint32_t)st->cache_block_tokens;
    rs->has_xchg_bytes_sent = rs->has_xchg_bytes_recv = true;
    rs->xchg_bytes_sent = st->xchg_bytes_sent;
    rs->xchg_bytes_recv = st->xchg_bytes_recv;
    rs->has_first_moe_layer = true;
    rs->first_moe_layer = (uint32_t)st->first_moe_layer;
    rs->n_expert_tokens = (size_t)st->n_moe_layers;
    rs->expert_tokens = (uint64_t *)st->expert_tokens;
    rs->has_prefix_cache_queries = rs->has_prefix_cache_hits = true;
    rs->prefix_cache_queries = st->prefix_queries;
    rs->prefix_cache_hits = st->prefix_hits;
    rs->has_spec_draft_tokens = rs->has_spec_accepted_tokens = true;
    rs->spec_draft_tokens = st->spec_drafts;
    rs->spec_accepted_tokens = st->spec_accepted;
    rs->n_spec_accepted_per_pos = (size_t)st->n_spec_pos;
    rs->spec_accepted_per_pos = (uint64_t *)st->spec_accepted_at;
}

static void outbox_clear(moe_source_link *l)
{
    for (size_t i = 0; i < l->out_n; i++) free(l->out[(l->out_head + i) % l->out_cap].data);
    l->out_head = l->out_n = l->out_bytes = 0;
}

void moe_source_link_free(moe_source_link *l)
{
    if (!l) return;
    moe_log_limiter_flush_all();
    outbox_clear(l);
    free(l->out);
    moe_link_close(l->link);
    moe_link_ctx_free(l->lctx);
    free(l->plp);
    free(l->plp_ptr);
    free(l->plp_ids);
    free(l);
}

/* ---- sending ---- */

/* Sends what waits in the outbox, in order, until the link pushes back. */
static void outbox_flush(moe_source_link *l)
{
    while (l->out_n > 0) {
        struct outbox_frame *f = &l->out[l->out_head];
        moe_err err;
        const int rc = moe_link_send_bytes(l->link, NULL, f->data, f->len, MOE_LINK_DONTWAIT, &err);
        if (rc == MOE_LINK_AGAIN) return;
        if (rc != MOE_OK) MOE_LOG_LIMITED(MOE_LOG_WARN, "rank %d: send to the coordinator failed: %s", l->me, err.msg);
        l->out_bytes -= f->len;
        free(f->data);
        l->out_head = (l->out_head + 1) % l->out_cap;
        l->out_n--;
    }
}

/* Never blocks: what the link cannot take now waits in the outbox (sent
 * by the next flush, before anything newer).  The job holds before the
 * outbox is half full, so only a single step whose frames fill the other
 * half (thousands of sequences, or prompt logprobs of a huge chunk) reaches
 * the bound: then the frames are dropped, and l_poll ends this rank's
 * sequences (their tokens are lost) and says hello again, since memory
 * must stay bounded. */
static void link_send(moe_source_link *l, Moe__WorkerMsg *m)
{
    moe_err err;
    if (l->overflowed) {
        l->dropped++;
        return;
    }
    if (l->out_n > 0) outbox_flush(l);
    if (l->out_n == 0) {
        const int rc = moe_link_send(l->link, NULL, &m->base, MOE_LINK_DONTWAIT, &err);
        if (rc == MOE_OK) return;
        if (rc != MOE_LINK_AGAIN) {
            MOE_LOG_LIMITED(MOE_LOG_WARN, "rank %d: send to the coordinator failed: %s", l->me, err.msg);
            return;
        }
    }
    const size_t len = protobuf_c_message_get_packed_size(&m->base);
    if ((int64_t)(l->out_bytes + len) > l->o.outbox_bytes) {
        l->overflowed = true;
        l->dropped = (int64_t)l->out_n + 1;
        moe_log(MOE_LOG_ERROR,
                "rank %d: one step's frames overflowed the outbox (%zu frames, %zu bytes wait for the coordinator, "
                "--outbox-bytes %lld); dropping them, ending this rank's sequences and saying hello again",
                l->me, l->out_n, l->out_bytes, (long long)l->o.outbox_bytes);
        outbox_clear(l);
        return;
    }
    if (l->out_n == l->out_cap) { /* grow the ring, unrolled into the new array */
        const size_t cap = l->out_cap ? 2 * l->out_cap : 256;
        struct outbox_frame *nf = moe_xmalloc(cap * sizeof *nf);
        for (size_t i = 0; i < l->out_n; i++) nf[i] = l->out[(l->out_head + i) % l->out_cap];
        free(l->out);
        l->out = nf;
        l->out_cap = cap;
        l->out_head = 0;
    }
    struct outbox_frame *f = &l->out[(l->out_head + l->out_n) % l->out_cap];
    f->data = moe_xmalloc(len ? len : 1);
    f->len = protobuf_c_message_pack(&m->base, f->data);
    l->out_bytes += f->len;
    if (l->out_n++ == 0)
        MOE_LOG_LIMITED(MOE_LOG_WARN, "rank %d: the coordinator is not reading; frames wait here (at most %lld bytes)",
                        l->me, (long long)l->o.outbox_bytes);
}

static void send_seq_end(moe_source_link *l, int64_t id, Moe__EndReason why, const char *msg)
{
    Moe__SeqEnd se = MOE__SEQ_END__INIT;
    se.has_seq_id = true;
    se.seq_id = (uint64_t)id;
    se.has_reason = true;
    se.reason = why;
    se.has_replayable = se.replayable = l->closing && why == MOE__END_REASON__END_ERROR;
    se.message = (char *)(msg ? msg : "");
    Moe__WorkerMsg m = MOE__WORKER_MSG__INIT;
    m.body_case = MOE__WORKER_MSG__BODY_SEQ_END;
    m.seq_end = &se;
    link_send(l, &m);
}

static void send_hello(moe_source_link *l)
{
    Moe__ModelIdentity id = MOE__MODEL_IDENTITY__INIT;
    uint64_t nlen = 0;
    const char *name = NULL;
    char namebuf[256] = "";
    moe_err e2;
    if (moe_gguf_get_str(l->m->gguf, "general.name", &name, &nlen, &e2) == MOE_OK)
        snprintf(namebuf, sizeof namebuf, "%.*s", (int)(nlen < 255 ? nlen : 255), name);
    id.name = namebuf;
    id.has_vocab_size = id.has_max_context = true;
    id.vocab_size = (uint32_t)l->m->hp.vocab;
    id.max_context = (uint32_t)(l->o.max_ctx - 1);
    Moe__WorkerHello h = MOE__WORKER_HELLO__INIT;
    h.has_protocol_version = h.has_rank = h.has_n_ranks = true;
    h.protocol_version = MOE_PROTO_VERSION;
    h.rank = (uint32_t)l->me;
    h.n_ranks = (uint32_t)l->n_rank;
    h.has_cache_tokens_total = h.has_cache_tokens_free = h.has_job_id = true;
    h.cache_tokens_total = (uint64_t)l->o.max_seqs * (uint64_t)(l->o.max_ctx - 1);
    h.cache_tokens_free = (uint64_t)moe_gen_free_tokens(l->g);
    h.job_id = l->job_id;
    h.has_max_seqs = true;
    h.max_seqs = (uint32_t)l->o.max_seqs;
    h.model = &id;
    h.kernels = (char *)(l->o.kernels ? l->o.kernels : "");
    Moe__WorkerMsg m = MOE__WORKER_MSG__INIT;
    m.body_case = MOE__WORKER_MSG__BODY_HELLO;
    m.hello = &h;
    link_send(l, &m);
}

/* Hello until the coordinator answers, heartbeats after.  None while
 * frames wait in the outbox: the coordinator is not reading, the frames
 * it will read tell it the rank lives, and the outbox must not grow while
 * the job holds. */
static int32_t token_at(void *ctx, int seq, int64_t pos) { return moe_gen_token_at(ctx, seq, pos); }

void moe_source_link_set_record(moe_source_link *l, moe_xchg *x, size_t max_bytes)
{
    l->rec_x = x;
    l->rec_max = max_bytes;
}

static void on_record_control(moe_source_link *l, const Moe__RecordControl *rc)
{
    if (!l->rec_x || !l->g) return;
    l->rec_on = rc->on;
    moe_xchg_set_record(l->rec_x, rc->on, token_at, l->g, l->rec_max);
    moe_log(MOE_LOG_INFO, "rank %d: the expert distribution recorder is %s", l->me, rc->on ? "on" : "off");
}

/* The recorder's rows since the last call, in pieces of at most
 * MOE_MSG_ROUTED_PIECE_BYTES. */
static void send_record(moe_source_link *l)
{
    if (!l->rec_x || !l->g) return;
    size_t n;
    uint64_t dropped;
    const uint8_t *rows = moe_xchg_record_take(l->rec_x, &n, &dropped);
    if (n == 0) return; /* drops are told with the next rows */
    const int K = l->m->hp.n_used;
    const size_t rb = MOE_EXPREC_ROW_BYTES(K), piece = MOE_MSG_ROUTED_PIECE_BYTES / rb;
    for (size_t at = 0; at < n; at += piece) {
        const size_t k = n - at < piece ? n - at : piece;
        Moe__RecordRows rr = MOE__RECORD_ROWS__INIT;
        rr.has_rank = rr.has_top_k = rr.has_rows = rr.has_data = true;
        rr.rank = (uint32_t)l->me;
        rr.top_k = (uint32_t)K;
        rr.rows = (uint32_t)k;
        rr.data = (ProtobufCBinaryData){.len = k * rb, .data = (uint8_t *)rows + at * rb};
        if (at == 0 && dropped) rr.has_dropped = true, rr.dropped = dropped;
        Moe__WorkerMsg m = MOE__WORKER_MSG__INIT;
        m.body_case = MOE__WORKER_MSG__BODY_RECORD_ROWS;
        m.record_rows = &rr;
        link_send(l, &m);
    }
}

static void l_beat(void *ctx)
{
    moe_source_link *l = ctx;
    send_record(l);
    const double now = moe_now();
    outbox_flush(l);
    if (l->out_n > 0) return;
    const double period = l->refused && !l->hello_acked ? 10.0 : (double)l->o.heartbeat_ms / 1000.0;
    if (now - l->t_beat < period) return;
    l->t_beat = now;
    if (!l->hello_acked) {
        send_hello(l);
        return;
    }
    int64_t ids[1024];
    uint64_t active[1024];
    const int n = moe_gen_live_ids(l->g, ids, 1024);
    for (int i = 0; i < n; i++) active[i] = (uint64_t)ids[i];
    Moe__WorkerHeartbeat hb = MOE__WORKER_HEARTBEAT__INIT;
    hb.has_rank = hb.has_cache_tokens_free = true;
    hb.rank = (uint32_t)l->me;
    hb.cache_tokens_free = (uint64_t)moe_gen_free_tokens(l->g);
    hb.n_active = (size_t)n;
    hb.active = active;
    if (l->expect_s > 0) {
        const double ms = l->expect_s * 1000.0 + 1.0;
        hb.has_step_expect_ms = true;
        hb.step_expect_ms = ms < (double)MOE_MSG_MAX_STEP_EXPECT_MS ? (uint32_t)ms : MOE_MSG_MAX_STEP_EXPECT_MS;
    }
    Moe__RankStats rs;
    moe_link_stats st = {0}; /* rs points into it until the send */
    if (l->stats_fill) {
        l->stats_fill(l->stats_ctx, &st);
        stats_to_wire(&st, &rs);
        hb.stats = &rs;
    }
    Moe__WorkerMsg m = MOE__WORKER_MSG__INIT;
    m.body_case = MOE__WORKER_MSG__BODY_HEARTBEAT;
    m.heartbeat = &hb;
    link_send(l, &m);
}

void moe_source_link_tick(void *l) { l_beat(l); }

/* A step of about expect_s seconds starts (0: it ended).  Heartbeats say
 * so while it runs; one long enough to matter against the coordinator's
 * watchdog (half a heartbeat period or more) is announced at once. */
static void l_busy(void *ctx, double expect_s)
{
    moe_source_link *l = ctx;
    l->expect_s = expect_s;
    if (expect_s > 0 && expect_s * 1000.0 >= (double)l->o.heartbeat_ms / 2 && l->hello_acked) {
        moe_log(MOE_LOG_DEBUG, "rank %d: a step expected to take %.2f s; announcing it", l->me, expect_s);
        l->t_beat = 0;
        l_beat(l);
    }
}

/* The job holds while this rank's outbox is over half its bound, until
 * it is down to a quarter (the coordinator reads again). */
static bool l_hold(void *ctx)
{
    moe_source_link *l = ctx;
    const double bytes = (double)l->out_bytes, bound = (double)l->o.outbox_bytes;
    if (!l->holding && bytes >= bound / 2) {
        l->holding = true;
        l->t_hold = moe_now();
        moe_log(MOE_LOG_WARN,
                "rank %d: the coordinator is not reading (%zu frames, %zu bytes wait here); the job holds its "
                "steps until they are taken",
                l->me, l->out_n, l->out_bytes);
    } else if (l->holding && bytes <= bound / 4) {
        l->holding = false;
        moe_log(MOE_LOG_INFO, "rank %d: the coordinator reads again (%zu bytes still wait); held %.1f s", l->me,
                l->out_bytes, moe_now() - l->t_hold);
    }
    return l->holding;
}

/* ---- receiving ---- */

/* A new sequence (fields already validated by the link's decoder). */
static void on_assign(moe_source_link *l, moe_gen *g, const Moe__Assign *a)
{
    moe_err err = {{0}};
    const size_t n = a->n_prompt + a->n_emitted;
    int32_t *toks = moe_xmalloc((n ? n : 1) * sizeof *toks);
    memcpy(toks, a->prompt, a->n_prompt * sizeof *toks);
    if (a->n_emitted) memcpy(toks + a->n_prompt, a->emitted, a->n_emitted * sizeof *toks);
    /* a replay: the prompt in the chunks it had, the emitted tokens fed one
     * per step as they were decoded, so the rows are the first run's, bit
     * for bit (docs/engine.md, "Replay") */
    moe_gen_req r = {.id = (int64_t)a->seq_id, .tokens = toks, .n_tokens = (int)n, .n_chunked = (int)a->n_prompt,
                     .max_out = a->has_max_tokens ? a->max_tokens : 0, .n_emitted = (int)a->n_emitted,
                     .logprobs = a->has_logprobs, .n_top = a->has_logprobs ? (int)a->logprobs : 0,
                     .prompt_logprobs = a->has_prompt_logprobs && a->prompt_logprobs,
                     .routed = a->has_routed_experts && a->routed_experts,
                     .routed_weights = a->has_routed_expert_weights && a->routed_expert_weights,
                     .cache_salt = a->has_cache_salt ? a->cache_salt : 0};
    moe_sampler_cfg_default(&r.sc);
    int rc = MOE_OK;
    /* max_tokens 0 only scores the prompt (checked by the link's decoder) */
    const bool scoring = r.max_out == 0 && r.prompt_logprobs && r.n_emitted == 0;
    if (n > INT32_MAX / 2 || (!scoring && (r.max_out < 1 || r.n_emitted >= r.max_out)))
        rc = moe_err_set(&err, "nothing to do (prompt %zu, max tokens %d, emitted %d)", n, r.max_out, r.n_emitted);
    /* the coordinator bounds a request's routed experts; a rank checks too */
    const uint64_t routed_cells = ((uint64_t)a->n_prompt + (uint64_t)(r.max_out > 0 ? r.max_out : 0)) *
                                  (uint64_t)(l->m->hp.n_layer - l->m->hp.n_dense_lead) * (uint64_t)l->m->hp.n_used;
    if (rc == MOE_OK && r.routed && routed_cells > MOE_MSG_MAX_ROUTED_ENTRIES)
        rc = moe_err_set(&err, "routed experts of %zu prompt ids + %d tokens: %llu ids, more than %llu", a->n_prompt, r.max_out,
                         (unsigned long long)routed_cells, (unsigned long long)MOE_MSG_MAX_ROUTED_ENTRIES);
    if (rc == MOE_OK && moe_msg_sampler_cfg(a->sampling, a->stop_ids, a->n_stop_ids, &r.sc, &err) != MOE__CODE__OK)
        rc = MOE_ERR;
    if (rc == MOE_OK) rc = moe_gen_add(g, &r, &err);
    if (rc != MOE_OK) send_seq_end(l, r.id, MOE__END_REASON__END_ERROR, err.msg);
    free(toks);
}

/* Everything the coordinator sent since the last look. */
/* The hello reply: a new coordinator's epoch drops every sequence of
 * another (the old coordinator's requests are gone with it). */
static void on_hello_reply(moe_source_link *l, moe_gen *g, const Moe__WorkerHelloReply *r)
{
    if (l->refused) moe_log(MOE_LOG_INFO, "rank %d: the coordinator accepted this rank", l->me);
    l->hello_acked = true;
    l->refused = false;
    if (!r->has_epoch || r->epoch == l->epoch) return;
    int64_t ids[1024];
    int n, dropped = 0;
    do {
        n = moe_gen_live_ids(g, ids, 1024);
        int k = 0;
        for (int i = 0; i < n; i++)
            if ((uint64_t)ids[i] >> 32 != r->epoch) k += moe_gen_remove(g, ids[i]);
        dropped += k;
        if (k == 0) break;
    } while (n == 1024);
    if (l->epoch || dropped)
        moe_log(MOE_LOG_INFO, "rank %d: a new coordinator (epoch %u); dropped %d sequences of the old one", l->me,
                r->epoch, dropped);
    l->epoch = r->epoch;
}

static void l_poll(void *ctx, moe_gen *g)
{
    moe_source_link *l = ctx;
    if (l->overflowed) { /* outside a step: the sequences whose tokens were lost end */
        l->overflowed = false;
        moe_log(MOE_LOG_ERROR, "rank %d: %lld frames to the coordinator were dropped", l->me, (long long)l->dropped);
        moe_gen_end_all(g, "the coordinator stopped reading and one step's frames overflowed the rank's outbox; "
                           "tokens were lost");
        l->hello_acked = false;
    }
    outbox_flush(l);
    for (;;) {
        moe_link_in in = {0};
        moe_err err;
        const int rc = moe_link_recv(l->link, &in, MOE_LINK_DONTWAIT, &err);
        if (rc != MOE_OK) {
            if (rc == MOE_ERR) MOE_LOG_LIMITED(MOE_LOG_WARN, "rank %d: receive failed: %s", l->me, err.msg);
            return;
        }
        const Moe__CoordMsg *m = (const Moe__CoordMsg *)in.msg;
        if (in.code != MOE__CODE__OK || !m) {
            MOE_LOG_LIMITED(MOE_LOG_WARN, "rank %d: refused a frame from the coordinator (%s): %s", l->me,
                            moe_msg_code_name(in.code), err.msg);
        } else if (m->body_case == MOE__COORD_MSG__BODY_HELLO_REPLY) {
            on_hello_reply(l, g, m->hello_reply);
        } else if (m->body_case == MOE__COORD_MSG__BODY_ASSIGN) {
            on_assign(l, g, m->assign);
        } else if (m->body_case == MOE__COORD_MSG__BODY_SET_PLACEMENT) {
            /* proposed at the next turn; checked whole by every rank there */
            if (l->live) moe_live_propose(l->live, m->set_placement->text, strlen(m->set_placement->text),
                                          m->set_placement->id);
            else MOE_LOG_LIMITED(MOE_LOG_WARN, "rank %d: a placement sent to a rank other than 0 is ignored", l->me);
        } else if (m->body_case == MOE__COORD_MSG__BODY_RECORD_CONTROL) {
            on_record_control(l, m->record_control);
        } else if (m->body_case == MOE__COORD_MSG__BODY_RELEASE) {
            moe_gen_remove(g, (int64_t)m->release->seq_id);
        } else if (m->body_case == MOE__COORD_MSG__BODY_ERROR) {
            /* a coordinator that does not know us (it restarted): say hello again */
            if (m->error->has_code && m->error->code == MOE__CODE__NOT_READY) l->hello_acked = false;
            /* any other refusal of the hello (another model, another rank
             * count): said once a minute at most, hello every 10 s */
            else if (!l->hello_acked) {
                l->refused = true;
                MOE_LOG_LIMITED(MOE_LOG_ERROR, "rank %d: the coordinator refused this rank (%s): %s", l->me,
                                moe_msg_code_name(m->error->has_code ? (int)m->error->code : 0),
                                m->error->message ? m->error->message : "");
            }
        }
        moe_link_in_clear(&in);
    }
}

static bool l_stay(void *ctx, double idle_s)
{
    (void)ctx, (void)idle_s;
    return true;
}

/* Sleeps in a poll of the link, so work wakes the rank at once. */
static void l_idle(void *ctx, int ms)
{
    moe_source_link *l = ctx;
    moe_err err;
    moe_link_poll_item pi = {.link = l->link};
    moe_link_poll(&pi, 1, ms, &err);
}

/* The routed experts of the positions fed since the last call (a sequence
 * that asked for them), in pieces of at most MOE_MSG_ROUTED_PIECE_BYTES:
 * before each token, so the coordinator has them when the request ends. */
static void send_routed(moe_source_link *l, int64_t id)
{
    moe_gen_routed r;
    if (!l->g || !moe_gen_routed_take(l->g, id, &r) || r.rows == 0) return;
    const size_t width = (size_t)r.layers * (size_t)r.top_k, row_bytes = width * (r.w ? 6 : 2);
    const int64_t piece = (int64_t)(MOE_MSG_ROUTED_PIECE_BYTES / row_bytes > 0 ? MOE_MSG_ROUTED_PIECE_BYTES / row_bytes : 1);
    uint8_t *ib = moe_xmalloc((size_t)(r.rows < piece ? r.rows : piece) * width * 2);
    uint8_t *wb = r.w ? moe_xmalloc((size_t)(r.rows < piece ? r.rows : piece) * width * 4) : NULL;
    for (int64_t at = 0; at < r.rows; at += piece) {
        const int64_t k = r.rows - at < piece ? r.rows - at : piece;
        const size_t cells = (size_t)k * width;
        const int16_t *ids = r.ids + (size_t)at * width;
        for (size_t i = 0; i < cells; i++) { /* little-endian whatever the host */
            ib[2 * i] = (uint8_t)((uint16_t)ids[i] & 0xff);
            ib[2 * i + 1] = (uint8_t)((uint16_t)ids[i] >> 8);
        }
        if (wb)
            for (size_t i = 0; i < cells; i++) {
                uint32_t u;
                memcpy(&u, &r.w[(size_t)at * width + i], sizeof u);
                for (int b = 0; b < 4; b++) wb[4 * i + (size_t)b] = (uint8_t)(u >> (8 * b));
            }
        Moe__RoutedExperts re = MOE__ROUTED_EXPERTS__INIT;
        re.has_seq_id = re.has_first = re.has_rows = re.has_moe_layers = re.has_top_k = re.has_first_moe_layer = true;
        re.seq_id = (uint64_t)id;
        re.first = (uint32_t)(r.first + at);
        re.rows = (uint32_t)k;
        re.moe_layers = (uint32_t)r.layers;
        re.top_k = (uint32_t)r.top_k;
        re.first_moe_layer = (uint32_t)l->m->hp.n_dense_lead;
        re.has_ids = true;
        re.ids = (ProtobufCBinaryData){.len = cells * 2, .data = ib};
        if (wb) {
            re.has_weights = true;
            re.weights = (ProtobufCBinaryData){.len = cells * 4, .data = wb};
        }
        Moe__WorkerMsg m = MOE__WORKER_MSG__INIT;
        m.body_case = MOE__WORKER_MSG__BODY_ROUTED_EXPERTS;
        m.routed_experts = &re;
        link_send(l, &m);
    }
    free(ib);
    free(wb);
}

static void l_token(void *ctx, const moe_gen_seq *s, int index, int32_t tok, const moe_token_logprobs *lp)
{
    moe_source_link *l = ctx;
    send_record(l);
    if (s->routed) send_routed(l, s->id);
    Moe__Token t = MOE__TOKEN__INIT;
    t.has_seq_id = t.has_index = t.has_token = true;
    t.seq_id = (uint64_t)s->id;
    t.index = (uint32_t)index;
    t.token = tok;
    if (s->n_hist == s->n_tokens + 1) { /* the run's first token */
        t.has_cached_tokens = true;
        t.cached_tokens = (uint32_t)s->n_cached;
    }
    moe_msg_logprobs w;
    if (lp) {
        moe_msg_logprobs_to_wire(lp, &w);
        t.logprobs = &w.m;
    }
    Moe__WorkerMsg m = MOE__WORKER_MSG__INIT;
    m.body_case = MOE__WORKER_MSG__BODY_TOKEN;
    m.token = &t;
    link_send(l, &m);
}

/* The prompt's logprobs as the rows come, in pieces of PROMPT_LP_PIECE. */
static void l_prompt(void *ctx, const moe_gen_seq *s, int first, const moe_token_logprobs *lp, int n)
{
    moe_source_link *l = ctx;
    moe_msg_logprobs *w = l->plp;
    Moe__TokenLogprobs **entries = l->plp_ptr;
    int32_t *ids = l->plp_ids;
    for (int at = 0; at < n; at += PROMPT_LP_PIECE) {
        const int k = n - at < PROMPT_LP_PIECE ? n - at : PROMPT_LP_PIECE;
        for (int i = 0; i < k; i++) {
            moe_msg_logprobs_to_wire(&lp[at + i], &w[i]);
            entries[i] = &w[i].m;
            ids[i] = lp[at + i].id;
        }
        Moe__PromptLogprobs p = MOE__PROMPT_LOGPROBS__INIT;
        p.has_seq_id = p.has_index = true;
        p.seq_id = (uint64_t)s->id;
        p.index = (uint32_t)(first + at);
        p.n_ids = p.n_entries = (size_t)k;
        p.ids = ids;
        p.entries = entries;
        Moe__WorkerMsg m = MOE__WORKER_MSG__INIT;
        m.body_case = MOE__WORKER_MSG__BODY_PROMPT_LOGPROBS;
        m.prompt_logprobs = &p;
        link_send(l, &m);
    }
}

static void l_end(void *ctx, const moe_gen_seq *s, moe_gen_end why, const char *msg)
{
    static const Moe__EndReason reason[] = {
        [MOE_GEN_END_STOP] = MOE__END_REASON__END_STOP,
        [MOE_GEN_END_LENGTH] = MOE__END_REASON__END_LENGTH,
        [MOE_GEN_END_ERROR] = MOE__END_REASON__END_ERROR,
    };
    send_record(ctx);
    if (s->routed) send_routed(ctx, s->id);
    send_seq_end(ctx, s->id, reason[why], msg);
}

void moe_source_link_close(moe_source_link *l, moe_gen *g)
{
    if (!l || !g) return;
    l->closing = true; /* the sequences did not fail: a supervisor replays them */
    moe_gen_end_all(g, "the worker job is stopping");
}

static const moe_source_ops LINK_OPS = {
    .name = "link", .serves = true, .poll = l_poll, .beat = l_beat, .stay = l_stay, .idle = l_idle,
    .hold = l_hold, .busy = l_busy, .row = NULL, .token = l_token, .prompt = l_prompt, .end = l_end,
};

moe_source moe_source_link_source(moe_source_link *l) { return (moe_source){&LINK_OPS, l}; }
