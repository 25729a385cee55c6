/*
 * sched.c — request table (hash by id), the queue (one doubly linked FIFO
 * per flow, a ring of the flows that have requests, a FIFO of replays
 * before them), per-rank cache reservations.  All operations are O(1) or
 * O(ranks) except placement, which is O(placed × (ranks + prompt)), and
 * a lost rank, O(requests + directory).
 *
 * Prefix directory: for prefix-aware placement, a direct-mapped table of
 * PREFIX_SLOTS entries (1 MiB) from the key of a prompt prefix of whole
 * PREFIX_GRAIN-token pieces (a hash chained piece by piece) to the rank
 * the last request with that prefix went to.  It is a hint, never a
 * promise: a colliding entry is overwritten, a rank's cache may have
 * evicted it, and the rank itself decides what it reuses (verified token
 * by token), so a wrong hint costs a cold prefill, never a wrong answer.
 */
#include "sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rank_state {
    bool alive;
    int64_t capacity;  /* cache tokens */
    int64_t reserved;  /* Σ (prompt + max tokens) of running requests */
    int running;
    int max_running;   /* the rank's own limit; 0: none given */
} rank_state;

/* One client's FIFO; in the ring while it has requests. */
struct moe_sched_flow {
    moe_req *head, *tail;
    int n_queued;
    moe_sched_flow *ring_prev, *ring_next; /* NULL: not in the ring */
};

#define PREFIX_GRAIN 16
#define PREFIX_SLOTS 65536 /* a power of two */
#define PREFIX_DEPTH 4096  /* prompt tokens a placement notes at most (256 entries) */

typedef struct prefix_slot {
    uint64_t key;
    int32_t rank;      /* -1: empty */
} prefix_slot;

struct moe_sched {
    moe_sched_limits lim;
    prefix_slot *pdir;        /* [PREFIX_SLOTS], NULL with prefix_slack < 0 */
    int n_ranks;
    rank_state *ranks;
    uint64_t next_id;
    /* id -> request, open addressing with tombstones */
    moe_req **slots;
    size_t cap, used, live;
    int q_len;                /* every queued request, replays too */
    moe_sched_flow replays;   /* a lost job's requests: placed before any flow */
    moe_sched_flow own;       /* requests submitted without a flow */
    moe_sched_flow *turn;     /* the ring's flow served next; NULL: the ring is empty */
};

/* ---- flows ----------------------------------------------------------------------- */

static void ring_join(moe_sched *s, moe_sched_flow *f)
{
    if (!s->turn) {
        f->ring_prev = f->ring_next = f;
        s->turn = f;
        return;
    }
    /* last in the round: just before the flow served next */
    f->ring_next = s->turn;
    f->ring_prev = s->turn->ring_prev;
    f->ring_prev->ring_next = f;
    s->turn->ring_prev = f;
}

static void ring_leave(moe_sched *s, moe_sched_flow *f)
{
    if (f->ring_next == f) s->turn = NULL;
    else {
        if (s->turn == f) s->turn = f->ring_next;
        f->ring_prev->ring_next = f->ring_next;
        f->ring_next->ring_prev = f->ring_prev;
    }
    f->ring_prev = f->ring_next = NULL;
}

static bool in_ring(const moe_sched *s, const moe_sched_flow *f) { return f != &s->replays && f->ring_next; }

static void flow_push(moe_sched *s, moe_sched_flow *f, moe_req *r, bool at_head)
{
    r->flow = f;
    if (at_head) {
        r->q_prev = NULL;
        r->q_next = f->head;
        if (f->head) f->head->q_prev = r;
        else f->tail = r;
        f->head = r;
    } else {
        r->q_next = NULL;
        r->q_prev = f->tail;
        if (f->tail) f->tail->q_next = r;
        else f->head = r;
        f->tail = r;
    }
    f->n_queued++;
    s->q_len++;
    if (f != &s->replays && !f->ring_next) ring_join(s, f);
}

static void flow_unlink(moe_sched *s, moe_req *r)
{
    moe_sched_flow *f = r->flow;
    if (r->q_prev) r->q_prev->q_next = r->q_next;
    else f->head = r->q_next;
    if (r->q_next) r->q_next->q_prev = r->q_prev;
    else f->tail = r->q_prev;
    r->q_prev = r->q_next = NULL;
    f->n_queued--;
    s->q_len--;
    if (!f->head && in_ring(s, f)) ring_leave(s, f);
}

moe_sched_flow *moe_sched_flow_new(moe_sched *s)
{
    (void)s;
    return moe_xcalloc(1, sizeof(moe_sched_flow));
}

void moe_sched_flow_free(moe_sched *s, moe_sched_flow *f)
{
    (void)s;
    if (!f) return;
    MOE_ASSERT(f->n_queued == 0 && !f->ring_next);
    free(f);
}

int moe_sched_flow_n_queued(const moe_sched_flow *f) { return f->n_queued; }

#define TOMBSTONE ((moe_req *)1)

static size_t slot_of(uint64_t id, size_t cap)
{
    uint64_t h = id * 0x9e3779b97f4a7c15ull;
    return (size_t)(h ^ (h >> 32)) & (cap - 1);
}

static void table_put(moe_sched *s, moe_req *r);

static void table_grow(moe_sched *s)
{
    /* Rebuilt at a size fitted to the live entries, which also clears the
     * tombstones: churn does not make the table grow without bound. */
    moe_req **old = s->slots;
    size_t old_cap = s->cap;
    s->cap = 64;
    while ((s->live + 1) * 4 > s->cap) s->cap *= 2;
    s->slots = moe_xcalloc(s->cap, sizeof *s->slots);
    s->used = s->live = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i] && old[i] != TOMBSTONE) table_put(s, old[i]);
    free(old);
}

static void table_put(moe_sched *s, moe_req *r)
{
    if ((s->used + 1) * 2 > s->cap) table_grow(s);
    size_t i = slot_of(r->id, s->cap);
    while (s->slots[i] && s->slots[i] != TOMBSTONE) i = (i + 1) & (s->cap - 1);
    if (!s->slots[i]) s->used++;
    s->slots[i] = r;
    s->live++;
}

static size_t table_index(const moe_sched *s, uint64_t id)
{
    if (!s->cap) return SIZE_MAX;
    size_t i = slot_of(id, s->cap);
    while (s->slots[i]) {
        if (s->slots[i] != TOMBSTONE && s->slots[i]->id == id) return i;
        i = (i + 1) & (s->cap - 1);
    }
    return SIZE_MAX;
}

int moe_sched_init(moe_sched **out, int n_ranks, const moe_sched_limits *lim, moe_err *err)
{
    *out = NULL;
    if (n_ranks < 1 || n_ranks > 4096) return moe_err_set(err, "scheduler: %d ranks", n_ranks);
    if (lim->max_queue < 1 || lim->max_queue > (1 << 24)) return moe_err_set(err, "queue bound %d is out of range", lim->max_queue);
    if (lim->max_running < 1 || (int64_t)lim->max_running * n_ranks > (1 << 24))
        return moe_err_set(err, "running bound %d is out of range", lim->max_running);
    if (lim->prefix_slack < 0 || lim->prefix_slack > (1 << 16))
        return moe_err_set(err, "prefix slack %d is not in 0..65536", lim->prefix_slack);
    if (lim->max_queue_per_flow < 0 || lim->max_queue_per_flow > lim->max_queue)
        return moe_err_set(err, "a client's share of the queue, %d, is not in 0..%d (the queue)", lim->max_queue_per_flow,
                           lim->max_queue);
    moe_sched *s = moe_xcalloc(1, sizeof *s);
    s->lim = *lim;
    s->n_ranks = n_ranks;
    s->ranks = moe_xcalloc((size_t)n_ranks, sizeof *s->ranks);
    s->next_id = ((uint64_t)lim->epoch << 32) | 1;
    if (lim->prefix_placement) {
        s->pdir = moe_xmalloc(PREFIX_SLOTS * sizeof *s->pdir);
        for (size_t i = 0; i < PREFIX_SLOTS; i++) s->pdir[i] = (prefix_slot){0, -1};
    }
    *out = s;
    return MOE_OK;
}

/* ---- prefix directory --------------------------------------------------------- */

/* The key of the prefix one more piece long. */
static uint64_t piece_key(uint64_t h, const int32_t *tok)
{
    for (int i = 0; i < PREFIX_GRAIN; i++) {
        h = (h ^ (uint32_t)tok[i]) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    return h ^ (h >> 32) * 0x9e3779b97f4a7c15ull;
}

static prefix_slot *pslot(const moe_sched *s, uint64_t key) { return &s->pdir[key & (PREFIX_SLOTS - 1)]; }

/* The rank of the request's longest known prefix (its length in *len), or -1. */
static int prefix_rank(const moe_sched *s, const moe_req *r, int *len)
{
    int rank = -1;
    *len = 0;
    uint64_t h = 0xcbf29ce484222325ull ^ r->cache_salt;
    for (int at = 0; at + PREFIX_GRAIN <= r->n_prompt && at < PREFIX_DEPTH; at += PREFIX_GRAIN) {
        h = piece_key(h, r->prompt + at);
        const prefix_slot *p = pslot(s, h);
        if (p->rank < 0 || p->key != h) break;
        rank = p->rank;
        *len = at + PREFIX_GRAIN;
    }
    return rank;
}

/* Requests whose rank computes every prompt position (prompt logprobs,
 * routed experts) neither use nor leave a hint. */
static bool prefix_uses_cache(const moe_req *r) { return !r->prompt_logprobs && !r->routed; }

static void prefix_note(moe_sched *s, const moe_req *r)
{
    uint64_t h = 0xcbf29ce484222325ull ^ r->cache_salt;
    for (int at = 0; at + PREFIX_GRAIN <= r->n_prompt && at < PREFIX_DEPTH; at += PREFIX_GRAIN) {
        h = piece_key(h, r->prompt + at);
        *pslot(s, h) = (prefix_slot){h, r->rank};
    }
}

/* A rank that stopped (its cache is gone with it) is no one's hint. */
static void prefix_forget(moe_sched *s, int rank)
{
    for (size_t i = 0; s->pdir && i < PREFIX_SLOTS; i++)
        if (s->pdir[i].rank == rank) s->pdir[i].rank = -1;
}

int moe_sched_prefix_known(const moe_sched *s, const moe_req *r)
{
    int len = 0;
    if (s->pdir && r->rank >= 0 && prefix_rank(s, r, &len) != r->rank) len = 0;
    return len;
}

static void req_free(moe_req *r)
{
    free(r->prompt);
    free(r->out);
    free(r->lp);
    free(r->prompt_lp);
    free(r->r_ids);
    free(r->r_w);
    free(r);
}

void moe_sched_free(moe_sched *s)
{
    if (!s) return;
    free(s->pdir);
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i] && s->slots[i] != TOMBSTONE) req_free(s->slots[i]);
    free(s->slots);
    free(s->ranks);
    free(s);
}

void moe_sched_rank_update(moe_sched *s, int rank, int64_t capacity)
{
    MOE_ASSERT(rank >= 0 && rank < s->n_ranks);
    s->ranks[rank].alive = true;
    s->ranks[rank].capacity = capacity > 0 ? capacity : 0;
}

void moe_sched_rank_set_max_running(moe_sched *s, int rank, int max_running)
{
    MOE_ASSERT(rank >= 0 && rank < s->n_ranks);
    s->ranks[rank].max_running = max_running > 0 ? max_running : 0;
}

int64_t moe_sched_rank_free(const moe_sched *s, int rank)
{
    const rank_state *r = &s->ranks[rank];
    return r->alive ? r->capacity - r->reserved : 0;
}

bool moe_sched_rank_alive(const moe_sched *s, int rank) { return s->ranks[rank].alive; }

static int64_t need_of(const moe_req *r) { return (int64_t)r->n_prompt + r->max_tokens; }

void moe_sched_end(moe_sched *s, moe_req *r, moe_end_reason why, const char *error)
{
    if (r->state == MOE_REQ_DONE) return;
    if (r->state == MOE_REQ_RUNNING) {
        rank_state *k = &s->ranks[r->rank];
        k->reserved -= need_of(r);
        k->running--;
    } else flow_unlink(s, r); /* queued: out of its flow, the others keep their order */
    r->state = MOE_REQ_DONE;
    r->end = why;
    if (error) snprintf(r->error, sizeof r->error, "%s", error);
}

int moe_sched_rank_lost(moe_sched *s, int rank, const char *why)
{
    MOE_ASSERT(rank >= 0 && rank < s->n_ranks);
    s->ranks[rank].alive = false;
    prefix_forget(s, rank);
    int n = 0;
    for (size_t i = 0; i < s->cap; i++) {
        moe_req *r = s->slots[i];
        if (r && r != TOMBSTONE && r->state == MOE_REQ_RUNNING && r->rank == rank) {
            moe_sched_end(s, r, MOE_END_ERROR, why);
            n++;
        }
    }
    return n;
}

static int by_id_desc(const void *a, const void *b)
{
    const uint64_t x = (*(moe_req *const *)a)->id, y = (*(moe_req *const *)b)->id;
    return x < y ? 1 : x > y ? -1 : 0;
}

int moe_sched_rank_requeue(moe_sched *s, int rank)
{
    MOE_ASSERT(rank >= 0 && rank < s->n_ranks);
    rank_state *k = &s->ranks[rank];
    k->alive = false;
    prefix_forget(s, rank);
    moe_req **back = moe_xmalloc(((size_t)k->running + 1) * sizeof *back);
    int n = 0;
    for (size_t i = 0; i < s->cap; i++) {
        moe_req *r = s->slots[i];
        if (r && r != TOMBSTONE && r->state == MOE_REQ_RUNNING && r->rank == rank) back[n++] = r;
    }
    MOE_ASSERT(n == k->running);
    /* newest first onto the head of the replays: the oldest ends up first,
     * ahead of the requests that were waiting (they were placed before them) */
    qsort(back, (size_t)n, sizeof *back, by_id_desc);
    for (int i = 0; i < n; i++) {
        moe_req *r = back[i];
        k->reserved -= need_of(r);
        k->running--;
        r->state = MOE_REQ_QUEUED;
        r->rank = -1;
        r->cached_tokens = 0; /* the replay's rank says its own */
        r->replays++;
        flow_push(s, &s->replays, r, true);
    }
    free(back);
    return n;
}

int moe_sched_submit(moe_sched *s, void *owner, const int32_t *prompt, int n_prompt, int max_tokens, double deadline,
                     moe_req **out, bool *queue_full, moe_err *err)
{
    return moe_sched_submit_flow(s, NULL, owner, prompt, n_prompt, max_tokens, deadline, out, queue_full, err);
}

int moe_sched_submit_flow(moe_sched *s, moe_sched_flow *f, void *owner, const int32_t *prompt, int n_prompt,
                          int max_tokens, double deadline, moe_req **out, bool *queue_full, moe_err *err)
{
    *out = NULL;
    *queue_full = false;
    if (!f) f = &s->own;
    if (n_prompt < 1) return moe_err_set(err, "empty prompt");
    if (max_tokens < 0) return moe_err_set(err, "max tokens must be at least 0");
    if (s->q_len >= s->lim.max_queue) {
        *queue_full = true;
        return moe_err_set(err, "the queue is full (%d requests waiting)", s->q_len);
    }
    const int share = s->lim.max_queue_per_flow ? s->lim.max_queue_per_flow : s->lim.max_queue;
    if (f->n_queued >= share) {
        *queue_full = true;
        return moe_err_set(err, "this client has %d requests queued, its share of the queue", f->n_queued);
    }
    moe_req *r = moe_xcalloc(1, sizeof *r);
    r->id = s->next_id++;
    r->owner = owner;
    r->state = MOE_REQ_QUEUED;
    r->rank = -1;
    r->logprobs = -1;
    r->prompt = moe_xmalloc((size_t)n_prompt * sizeof *r->prompt);
    memcpy(r->prompt, prompt, (size_t)n_prompt * sizeof *r->prompt);
    r->n_prompt = n_prompt;
    r->max_tokens = max_tokens;
    r->out = moe_xmalloc((size_t)max_tokens * sizeof *r->out);
    r->deadline = deadline;
    table_put(s, r);
    flow_push(s, f, r, false);
    *out = r;
    return MOE_OK;
}

/* A request goes to the rank running the fewest sequences, then the one
 * with the most free cache, then the lowest index: the ranks step in
 * lockstep and each runs its own sequences' attention, so the step takes
 * as long as the busiest rank (by free cache alone, a rank with a little
 * more memory took every sequence until its surplus was spent). */
static bool fewer_then_freer(const rank_state *a, const rank_state *b)
{
    if (a->running != b->running) return a->running < b->running;
    return a->capacity - a->reserved > b->capacity - b->reserved;
}

/* Rank k is alive, under its running limit and has the cache request r needs. */
static bool can_take(const moe_sched *s, int k, const moe_req *r)
{
    const rank_state *rk = &s->ranks[k];
    const int cap_running = rk->max_running && rk->max_running < s->lim.max_running ? rk->max_running : s->lim.max_running;
    return rk->alive && rk->running < cap_running && rk->capacity - rk->reserved >= need_of(r);
}

int moe_sched_place(moe_sched *s, moe_req **placed, int cap)
{
    int n = 0;
    while (s->q_len > 0 && n < cap) {
        moe_req *r = s->replays.head ? s->replays.head : s->turn->head;
        int best = -1;
        for (int k = 0; k < s->n_ranks; k++)
            if (can_take(s, k, r) && (best < 0 || fewer_then_freer(&s->ranks[k], &s->ranks[best]))) best = k;
        if (best < 0) break; /* nobody overtakes the head of the flow whose turn it is */
        int plen = 0;
        const int pref = s->pdir && prefix_uses_cache(r) ? prefix_rank(s, r, &plen) : -1;
        if (pref >= 0 && can_take(s, pref, r) && s->ranks[pref].running <= s->ranks[best].running + s->lim.prefix_slack)
            best = pref;
        const bool replay = r->flow == &s->replays;
        moe_sched_flow *f = r->flow;
        flow_unlink(s, r);
        /* the turn passes on (flow_unlink already moved it if f left the ring) */
        if (!replay && s->turn == f) s->turn = f->ring_next;
        r->state = MOE_REQ_RUNNING;
        r->rank = best;
        s->ranks[best].reserved += need_of(r);
        s->ranks[best].running++;
        if (s->pdir && prefix_uses_cache(r)) prefix_note(s, r);
        placed[n++] = r;
    }
    return n;
}

moe_req *moe_sched_find(const moe_sched *s, uint64_t id)
{
    size_t i = table_index(s, id);
    return i == SIZE_MAX ? NULL : s->slots[i];
}

void moe_sched_want_logprobs(moe_req *r, int n_top, bool prompt)
{
    r->logprobs = n_top < 0 ? -1 : n_top;
    r->prompt_logprobs = prompt;
    if (r->prompt_logprobs && !r->prompt_lp) {
        r->prompt_lp = moe_xcalloc((size_t)r->n_prompt, sizeof *r->prompt_lp);
        r->prompt_lp[0] = (moe_token_logprobs){.id = r->prompt[0], .logprob = NAN}; /* position 0 has none */
    }
}

void moe_sched_set_salt(moe_req *r, uint64_t salt) { r->cache_salt = salt; }

void moe_sched_cached(moe_sched *s, uint64_t id, uint32_t n)
{
    moe_req *r = moe_sched_find(s, id);
    if (r && r->state == MOE_REQ_RUNNING) r->cached_tokens = n < (uint32_t)r->n_prompt ? (int)n : r->n_prompt;
}

bool moe_sched_token(moe_sched *s, uint64_t id, int index, int32_t token, const moe_token_logprobs *lp)
{
    moe_req *r = moe_sched_find(s, id);
    if (!r || r->state != MOE_REQ_RUNNING || index != r->n_out || index >= r->max_tokens) return false;
    if (r->logprobs >= 0) {
        if (r->n_out == r->cap_lp) {
            r->cap_lp = r->cap_lp ? 2 * r->cap_lp : 64;
            if (r->cap_lp > r->max_tokens) r->cap_lp = r->max_tokens;
            r->lp = moe_xrealloc(r->lp, (size_t)r->cap_lp * sizeof *r->lp);
        }
        /* a rank that brought none: the entry says so (NaN) rather than lie */
        r->lp[r->n_out] = lp ? *lp : (moe_token_logprobs){.id = token, .logprob = NAN};
        r->lp[r->n_out].id = token;
    }
    r->out[r->n_out++] = token;
    return true;
}

bool moe_sched_prompt_logprob(moe_sched *s, uint64_t id, int pos, const moe_token_logprobs *lp)
{
    moe_req *r = moe_sched_find(s, id);
    if (!r || r->state != MOE_REQ_RUNNING || !r->prompt_lp || pos != r->n_prompt_lp + 1 || pos >= r->n_prompt ||
        lp->id != r->prompt[pos])
        return false;
    r->prompt_lp[pos] = *lp;
    r->n_prompt_lp = pos;
    return true;
}

void moe_sched_want_routed(moe_req *r, bool routed, bool w)
{
    r->routed = routed;
    r->routed_w = routed && w;
}

bool moe_sched_routed(moe_sched *s, uint64_t id, int64_t first, int64_t rows, int layers, int top_k, int first_moe,
                      const uint8_t *ids, const uint8_t *w)
{
    moe_req *r = moe_sched_find(s, id);
    if (!r) return false;
    const int64_t cap = (int64_t)r->n_prompt + r->max_tokens;
    if (r->state != MOE_REQ_RUNNING || !r->routed || (r->routed_w && !w) || first < 0 || rows < 1 ||
        first > r->r_rows || rows > cap - first || layers < 1 || top_k < 1 || layers > 4096 || top_k > 64 ||
        (uint64_t)cap * (uint64_t)layers * (uint64_t)top_k > MOE_SCHED_MAX_ROUTED_ENTRIES)
        return false;
    if (!r->r_ids) {
        r->r_layers = layers;
        r->r_top_k = top_k;
        r->r_first_moe = first_moe;
        r->r_ids = moe_xmalloc((size_t)cap * (size_t)layers * (size_t)top_k * 2);
        if (r->routed_w) r->r_w = moe_xmalloc((size_t)cap * (size_t)layers * (size_t)top_k * 4);
    } else if (layers != r->r_layers || top_k != r->r_top_k || first_moe != r->r_first_moe) {
        return false;
    }
    const size_t width = (size_t)layers * (size_t)top_k;
    memcpy(r->r_ids + (size_t)first * width * 2, ids, (size_t)rows * width * 2);
    if (r->r_w) memcpy(r->r_w + (size_t)first * width * 4, w, (size_t)rows * width * 4);
    if (first + rows > r->r_rows) r->r_rows = first + rows;
    return true;
}

bool moe_sched_prompt_logprobs_done(const moe_req *r)
{
    return !r->prompt_logprobs || r->n_prompt_lp == r->n_prompt - 1;
}

int moe_sched_expire(moe_sched *s, double now, moe_req **expired, int cap)
{
    int n = 0;
    for (size_t i = 0; i < s->cap && n < cap; i++) {
        moe_req *r = s->slots[i];
        if (r && r != TOMBSTONE && r->state != MOE_REQ_DONE && r->deadline > 0 && now >= r->deadline) {
            moe_sched_end(s, r, MOE_END_DEADLINE, "deadline exceeded");
            expired[n++] = r;
        }
    }
    return n;
}

void moe_sched_forget(moe_sched *s, moe_req *r)
{
    MOE_ASSERT(r->state == MOE_REQ_DONE);
    size_t i = table_index(s, r->id);
    MOE_ASSERT(i != SIZE_MAX);
    s->slots[i] = TOMBSTONE;
    s->live--;
    req_free(r);
}

int moe_sched_n_queued(const moe_sched *s) { return s->q_len; }

int moe_sched_queue_position(const moe_sched *s, const moe_req *r)
{
    if (r->state != MOE_REQ_QUEUED) return 0;
    int ahead = 0; /* requests of its own flow before it */
    for (const moe_req *q = r->flow->head; q && q != r; q = q->q_next) ahead++;
    if (r->flow == &s->replays) return ahead + 1;
    /* every replay, then ahead + 1 rounds: a flow served before r's in the
     * round places up to ahead + 1 requests first, one after it up to ahead */
    int pos = s->replays.n_queued + ahead + 1;
    bool before = true;
    const moe_sched_flow *g = s->turn;
    do {
        if (g == r->flow) before = false;
        else {
            const int k = ahead + (before ? 1 : 0);
            pos += g->n_queued < k ? g->n_queued : k;
        }
        g = g->ring_next;
    } while (g != s->turn);
    return pos;
}

int moe_sched_n_running(const moe_sched *s, int rank)
{
    if (rank >= 0) return s->ranks[rank].running;
    int n = 0;
    for (int k = 0; k < s->n_ranks; k++) n += s->ranks[k].running;
    return n;
}
