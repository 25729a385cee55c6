/*
 * front_zmq.c — the ZMQ client front end (see front_zmq.h).
 */
#include "front_zmq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

/* A refusal that met back-pressure.  Each client keeps its own (at most
 * MAX_PENDING_ERRORS; past that its own oldest goes), so one client's
 * refusals never push out another's. */
#define MAX_PENDING_ERRORS 32
typedef struct pending_error {
    char *id, *msg;
    int code;
    double since;
} pending_error;

struct moe_front_client {
    moe_link_peer peer;
    double last_seen;
    char name[64];            /* from its Hello (printable ASCII), for the logs */
    bool hello;               /* it sent a valid Hello: only then are its requests served */
    char key[MOE_LINK_CLIENT_MAX]; /* who it is for the limits (link.h): "key:" its CURVE key (the ZAP
                                      User-Id), else its peer address */
    pending_error pending[MAX_PENDING_ERRORS];
    int n_pending;
};

typedef struct zfront {
    moe_front base;           /* first: a moe_front * is a zfront * */
    moe_link *link;
    const moe_request_model *model;
    char model_name[256];
    double client_timeout;    /* seconds */
    moe_front_client **clients;
    int n_clients, cap_clients;
    int64_t deferred;         /* sends that met back-pressure (retried later) */
} zfront;

static zfront *zf(moe_front *f) { return (zfront *)f; }

/* ---- clients ------------------------------------------------------------------- */

static moe_front_client *client_of(zfront *z, const moe_link_peer *p)
{
    for (int i = 0; i < z->n_clients; i++)
        if (moe_link_peer_eq(&z->clients[i]->peer, p)) return z->clients[i];
    if (z->n_clients == z->cap_clients) {
        z->cap_clients = z->cap_clients ? 2 * z->cap_clients : 16;
        z->clients = moe_xrealloc(z->clients, (size_t)z->cap_clients * sizeof *z->clients);
    }
    moe_front_client *cl = moe_xcalloc(1, sizeof *cl);
    cl->peer = *p;
    z->clients[z->n_clients++] = cl;
    return cl;
}

/* ---- sending -------------------------------------------------------------------- */

/* MOE_FRONT_SENT, _AGAIN (not reading, or a failed send: try later) or
 * _GONE (unreachable). */
static int send_msg(zfront *z, const moe_link_peer *peer, Moe__ServerMsg *m)
{
    moe_err err;
    const int rc = moe_link_send(z->link, peer, &m->base, MOE_LINK_DONTWAIT, &err);
    if (rc == MOE_OK) return MOE_FRONT_SENT;
    if (rc == MOE_LINK_UNREACHABLE) return MOE_FRONT_GONE;
    if (rc == MOE_ERR) MOE_LOG_LIMITED(MOE_LOG_WARN, "send to a client failed: %s", err.msg);
    return MOE_FRONT_AGAIN;
}

static int try_error(zfront *z, const moe_link_peer *peer, const char *request_id, int code, const char *msg)
{
    Moe__Error e = MOE__ERROR__INIT;
    e.request_id = (char *)request_id;
    e.has_code = true;
    e.code = (Moe__Code)code;
    e.message = (char *)msg;
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_ERROR;
    m.error = &e;
    return send_msg(z, peer, &m);
}

/* A client at its high-water mark gets the refusal later (it waits in its
 * own bounded list, retried by tick), not never. */
static void refuse(zfront *z, moe_front_client *cl, const char *request_id, int code, const char *msg)
{
    if (try_error(z, &cl->peer, request_id, code, msg) != MOE_FRONT_AGAIN) return;
    z->deferred++;
    if (cl->n_pending == MAX_PENDING_ERRORS) {
        MOE_LOG_LIMITED(MOE_LOG_WARN, "a client that does not read has %d refusals waiting; dropping its oldest",
                        MAX_PENDING_ERRORS);
        free(cl->pending[0].id);
        free(cl->pending[0].msg);
        memmove(&cl->pending[0], &cl->pending[1], (MAX_PENDING_ERRORS - 1) * sizeof cl->pending[0]);
        cl->n_pending--;
    }
    pending_error *p = &cl->pending[cl->n_pending++];
    p->id = request_id ? moe_xstrdup(request_id) : NULL;
    p->code = code;
    p->msg = moe_xstrdup(msg ? msg : "");
    p->since = moe_now();
}

static void zmq_send_error(moe_front *f, moe_front_client *cl, const char *request_id, int code, const char *msg)
{
    refuse(zf(f), cl, request_id, code, msg);
}

static int zmq_send_chunk(moe_front *f, moe_front_client *cl, const char *request_id, const moe_request_chunk *c)
{
    zfront *z = zf(f);
    Moe__TokenChunk ch = MOE__TOKEN_CHUNK__INIT;
    ch.request_id = (char *)request_id;
    ch.n_ids = (size_t)c->n_ids;
    ch.ids = (int32_t *)c->ids;
    ch.text = (char *)c->text;
    ch.has_index = true;
    ch.index = (uint32_t)c->index;
    moe_msg_logprobs *w = NULL;
    Moe__TokenLogprobs **lps = NULL;
    if (c->logprobs && c->n_ids > 0) {
        w = moe_xmalloc((size_t)c->n_ids * sizeof *w);
        lps = moe_xmalloc((size_t)c->n_ids * sizeof *lps);
        for (int i = 0; i < c->n_ids; i++) {
            moe_msg_logprobs_to_wire(&c->logprobs[i], &w[i]);
            lps[i] = &w[i].m;
        }
        ch.n_logprobs = (size_t)c->n_ids;
        ch.logprobs = lps;
    }
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_CHUNK;
    m.chunk = &ch;
    const int rc = send_msg(z, &cl->peer, &m);
    free(lps);
    free(w);
    if (rc == MOE_FRONT_AGAIN) z->deferred++; /* everything stays with the request, offered again */
    return rc;
}

/* Positions per PromptLogprobs message (~200 bytes each with 20
 * alternatives: far below the frame cap). */
#define PROMPT_LP_PIECE 1024

/* The prompt's logprobs before the Finish, in pieces.  A piece that cannot
 * go makes the whole Finish wait and come again: a client ignores positions
 * it already has. */
static int send_prompt_logprobs(zfront *z, moe_front_client *cl, const char *request_id, const moe_request_outcome *fin)
{
    const int n = fin->prompt_tokens;
    moe_msg_logprobs *w = moe_xmalloc(PROMPT_LP_PIECE * sizeof *w);
    Moe__TokenLogprobs **e = moe_xmalloc(PROMPT_LP_PIECE * sizeof *e);
    int rc = MOE_FRONT_SENT;
    for (int at = 1; at < n && rc == MOE_FRONT_SENT; at += PROMPT_LP_PIECE) {
        const int k = n - at < PROMPT_LP_PIECE ? n - at : PROMPT_LP_PIECE;
        for (int i = 0; i < k; i++) {
            moe_msg_logprobs_to_wire(&fin->prompt_logprobs[at + i], &w[i]);
            e[i] = &w[i].m;
        }
        Moe__PromptLogprobs p = MOE__PROMPT_LOGPROBS__INIT;
        p.request_id = (char *)request_id;
        p.has_index = true;
        p.index = (uint32_t)at;
        p.n_ids = p.n_entries = (size_t)k;
        p.ids = (int32_t *)fin->prompt_ids + at;
        p.entries = e;
        Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
        m.body_case = MOE__SERVER_MSG__BODY_PROMPT_LOGPROBS;
        m.prompt_logprobs = &p;
        rc = send_msg(z, &cl->peer, &m);
    }
    free(e);
    free(w);
    return rc;
}

/* The routed experts before the Finish, in pieces of consecutive rows
 * (at most MOE_MSG_ROUTED_PIECE_BYTES each); as for prompt logprobs, a
 * piece that cannot go makes the Finish come again, and a client keeps
 * rows by position. */
static int send_routed(zfront *z, moe_front_client *cl, const char *request_id, const moe_request_outcome *fin)
{
    const size_t width = (size_t)fin->routed_layers * (size_t)fin->routed_top_k;
    const size_t row_bytes = width * (fin->routed_w ? 6 : 2);
    const int64_t piece = MOE_MSG_ROUTED_PIECE_BYTES / row_bytes > 0 ? (int64_t)(MOE_MSG_ROUTED_PIECE_BYTES / row_bytes) : 1;
    int rc = MOE_FRONT_SENT;
    for (int64_t at = 0; at < fin->routed_rows && rc == MOE_FRONT_SENT; at += piece) {
        const int64_t k = fin->routed_rows - at < piece ? fin->routed_rows - at : piece;
        Moe__RoutedExperts re = MOE__ROUTED_EXPERTS__INIT;
        re.request_id = (char *)request_id;
        re.has_first = re.has_rows = re.has_moe_layers = re.has_top_k = re.has_first_moe_layer = re.has_ids = true;
        re.first = (uint32_t)at;
        re.rows = (uint32_t)k;
        re.moe_layers = (uint32_t)fin->routed_layers;
        re.top_k = (uint32_t)fin->routed_top_k;
        re.first_moe_layer = (uint32_t)fin->routed_first_moe;
        re.ids = (ProtobufCBinaryData){.len = (size_t)k * width * 2, .data = (uint8_t *)fin->routed_ids + (size_t)at * width * 2};
        if (fin->routed_w) {
            re.has_weights = true;
            re.weights = (ProtobufCBinaryData){.len = (size_t)k * width * 4,
                                               .data = (uint8_t *)fin->routed_w + (size_t)at * width * 4};
        }
        Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
        m.body_case = MOE__SERVER_MSG__BODY_ROUTED_EXPERTS;
        m.routed_experts = &re;
        rc = send_msg(z, &cl->peer, &m);
    }
    return rc;
}

static int zmq_send_finish(moe_front *f, moe_front_client *cl, const char *request_id, const moe_request_outcome *fin)
{
    if (fin->routed_ids && fin->routed_rows > 0) {
        const int rc = send_routed(zf(f), cl, request_id, fin);
        if (rc != MOE_FRONT_SENT) return rc;
    }
    if (fin->prompt_logprobs && fin->prompt_ids) {
        const int rc = send_prompt_logprobs(zf(f), cl, request_id, fin);
        if (rc != MOE_FRONT_SENT) return rc;
    }
    Moe__Usage u = MOE__USAGE__INIT;
    u.has_prompt_tokens = u.has_completion_tokens = true;
    u.prompt_tokens = (uint32_t)fin->prompt_tokens;
    u.completion_tokens = (uint32_t)fin->completion_tokens;
    u.has_cached_tokens = true;
    u.cached_tokens = (uint32_t)fin->cached_tokens;
    Moe__Finish fm = MOE__FINISH__INIT;
    fm.request_id = (char *)request_id;
    fm.has_reason = true;
    fm.reason = (Moe__EndReason)fin->wire_reason;
    fm.usage = &u;
    if (fin->code != MOE__CODE__OK) {
        fm.has_code = true;
        fm.code = (Moe__Code)fin->code;
        fm.message = (char *)fin->message;
    }
    Moe__ServerMsg m = MOE__SERVER_MSG__INIT;
    m.body_case = MOE__SERVER_MSG__BODY_FINISH;
    m.finish = &fm;
    return send_msg(zf(f), &cl->peer, &m);
}

/* ---- receiving ------------------------------------------------------------------ */

/* A checked GenerateRequest as plain C (request.h).  chat gets the chat
 * messages (free() it); strings stay in g, which outlives the call. */
static int spec_of(const Moe__GenerateRequest *g, moe_request_spec *spec, moe_chat_msg **chat, moe_err *err)
{
    moe_request_spec_init(spec);
    *chat = NULL;
    spec->id = g->request_id;
    switch (g->prompt_case) {
    case MOE__GENERATE_REQUEST__PROMPT_TEXT:
        spec->kind = MOE_PROMPT_TEXT;
        spec->text = g->text;
        break;
    case MOE__GENERATE_REQUEST__PROMPT_IDS:
        spec->kind = MOE_PROMPT_IDS;
        spec->ids = g->ids->ids;
        spec->n_ids = g->ids->n_ids;
        break;
    case MOE__GENERATE_REQUEST__PROMPT_CHAT: {
        const size_t n = g->chat->n_messages;
        moe_chat_msg *msgs = moe_xcalloc(n ? n : 1, sizeof *msgs);
        for (size_t i = 0; i < n; i++) {
            msgs[i].role = g->chat->messages[i]->role;
            msgs[i].content = g->chat->messages[i]->content ? g->chat->messages[i]->content : "";
            msgs[i].content_len = strlen(msgs[i].content);
        }
        spec->kind = MOE_PROMPT_CHAT;
        spec->chat = *chat = msgs;
        spec->n_chat = n;
        spec->add_generation_prompt = g->chat->has_add_generation_prompt ? g->chat->add_generation_prompt : true;
        break;
    }
    default: /* the link's check refuses a request without a prompt */
        moe_err_set(err, "generate: no prompt");
        return MOE__CODE__EMPTY_PROMPT;
    }
    moe_sampler_cfg_default(&spec->sampling);
    const int code = moe_msg_sampler_cfg(g->sampling, g->stop_ids, g->n_stop_ids, &spec->sampling, err);
    if (code != MOE__CODE__OK) return code;
    spec->stop = (const char *const *)g->stop;
    spec->n_stop = g->n_stop;
    spec->max_tokens = g->has_max_tokens && g->max_tokens >= 0 ? g->max_tokens : -1; /* 0: scoring (checked) */
    spec->logprobs = g->has_logprobs ? (int)g->logprobs : -1;
    spec->prompt_logprobs = g->has_prompt_logprobs && g->prompt_logprobs;
    spec->routed_experts = g->has_return_routed_experts && g->return_routed_experts;
    spec->routed_weights = g->has_return_routed_expert_weights && g->return_routed_expert_weights;
    spec->cache_salt = g->cache_salt;
    spec->ignore_eos = spec->sampling.ignore_eos;
    spec->min_tokens = spec->sampling.min_tokens;
    spec->deadline_ms = g->has_deadline_ms ? g->deadline_ms : 0;
    spec->stream = !g->has_stream || g->stream;
    return MOE__CODE__OK;
}

static void on_generate(zfront *z, moe_front_client *cl, const Moe__GenerateRequest *g)
{
    moe_request_spec spec;
    moe_chat_msg *chat;
    moe_err err = {{0}};
    const int code = spec_of(g, &spec, &chat, &err);
    if (code != MOE__CODE__OK) refuse(z, cl, g->request_id, code, err.msg);
    else z->base.sink.generate(z->base.sink.ctx, &z->base, cl, &spec);
    free(chat);
}

/* Answered with a heartbeat naming the listed requests that are queued
 * (and where); a listed request not known here gets UNKNOWN_REQUEST, so a
 * client of a coordinator that restarted ends it at once. */
static void on_heartbeat(zfront *z, moe_front_client *cl, const Moe__Heartbeat *in)
{
    const size_t n = in->n_request_ids; /* at most MOE_MSG_MAX_HEARTBEAT_IDS (checked) */
    char **queued = moe_xmalloc((n ? n : 1) * sizeof *queued);
    uint32_t *pos = moe_xmalloc((n ? n : 1) * sizeof *pos);
    size_t nq = 0;
    for (size_t i = 0; i < n; i++) {
        const char *id = in->request_ids[i];
        const int st = z->base.sink.status ? z->base.sink.status(z->base.sink.ctx, &z->base, cl, id) : 0;
        if (st < 0)
            refuse(z, cl, id, MOE__CODE__UNKNOWN_REQUEST,
                   "this server has no request with this id (it restarted, or the request ended)");
        else if (st > 0) {
            queued[nq] = (char *)id;
            pos[nq++] = (uint32_t)st;
        }
    }
    Moe__Heartbeat hb = MOE__HEARTBEAT__INIT;
    hb.n_queued_ids = hb.n_queue_positions = nq;
    hb.queued_ids = queued;
    hb.queue_positions = pos;
    Moe__ServerMsg r = MOE__SERVER_MSG__INIT;
    r.body_case = MOE__SERVER_MSG__BODY_HEARTBEAT;
    r.heartbeat = &hb;
    send_msg(z, &cl->peer, &r);
    free(queued);
    free(pos);
}

static void on_frame(zfront *z, moe_link_in *in, const moe_err *err)
{
    const Moe__ClientMsg *m = (const Moe__ClientMsg *)in->msg;
    moe_front_client *cl = client_of(z, &in->from);
    cl->last_seen = moe_now();
    snprintf(cl->key, sizeof cl->key, "%s", in->client);
    if (in->code != MOE__CODE__OK) {
        refuse(z, cl, m ? moe_msg_request_id(m, &z->model->lim) : NULL, in->code, err->msg);
        return;
    }
    switch (m->body_case) {
    case MOE__CLIENT_MSG__BODY_HELLO: {
        const char *nm = m->hello->client_name ? m->hello->client_name : "";
        size_t k = 0;
        for (; nm[k] && k + 1 < sizeof cl->name; k++) cl->name[k] = nm[k] > 0x20 && nm[k] < 0x7F ? nm[k] : '_';
        cl->name[k] = '\0';
        cl->hello = true;
        Moe__HelloReply h = MOE__HELLO_REPLY__INIT;
        h.has_protocol_version = h.has_vocab_size = h.has_max_context = true;
        h.protocol_version = MOE_PROTO_VERSION;
        h.model = z->model_name;
        h.vocab_size = z->model->lim.vocab_size;
        h.max_context = z->model->lim.max_context;
        h.server_name = (char *)"moe-coordinator";
        Moe__ServerMsg r = MOE__SERVER_MSG__INIT;
        r.body_case = MOE__SERVER_MSG__BODY_HELLO_REPLY;
        r.hello_reply = &h;
        send_msg(z, &cl->peer, &r);
        break;
    }
    case MOE__CLIENT_MSG__BODY_GENERATE:
        /* nothing is served to a client that has not said who it is (a
         * heartbeat is answered: it only says which ids are unknown) */
        if (!cl->hello)
            refuse(z, cl, m->generate->request_id, MOE__CODE__BAD_REQUEST,
                   "say hello first: a Hello with protocol_version 1 must come before any request");
        else on_generate(z, cl, m->generate);
        break;
    case MOE__CLIENT_MSG__BODY_CANCEL:
        z->base.sink.cancel(z->base.sink.ctx, &z->base, cl, m->cancel->request_id);
        break;
    case MOE__CLIENT_MSG__BODY_HEARTBEAT: on_heartbeat(z, cl, m->heartbeat); break;
    default: break;
    }
}

static void zmq_recv(moe_front *f)
{
    zfront *z = zf(f);
    for (int budget = 1024; budget > 0; budget--) { /* bounded: the worker side gets its turn */
        moe_link_in in = {0};
        moe_err err = {{0}};
        const int rc = moe_link_recv(z->link, &in, MOE_LINK_DONTWAIT, &err);
        if (rc != MOE_OK) {
            if (rc == MOE_ERR) MOE_LOG_LIMITED(MOE_LOG_WARN, "receive from the clients failed: %s", err.msg);
            return;
        }
        on_frame(z, &in, &err);
        moe_link_in_clear(&in);
    }
}

/* ---- periodic work and the rest --------------------------------------------------- */

static void client_free(moe_front_client *cl)
{
    for (int i = 0; i < cl->n_pending; i++) {
        free(cl->pending[i].id);
        free(cl->pending[i].msg);
    }
    free(cl);
}

static void zmq_tick(moe_front *f, double now)
{
    zfront *z = zf(f);
    /* clients that went silent: the loop lets their requests go */
    for (int i = 0; i < z->n_clients; i++) {
        moe_front_client *cl = z->clients[i];
        if (now - cl->last_seen < z->client_timeout) continue;
        z->base.sink.client_gone(z->base.sink.ctx, f, cl, "went silent");
        client_free(cl);
        z->clients[i--] = z->clients[--z->n_clients];
    }
    /* refusals waiting for a slow reader, in order; given up with the
     * client's timeout */
    for (int c = 0; c < z->n_clients; c++) {
        moe_front_client *cl = z->clients[c];
        int w = 0;
        for (int i = 0; i < cl->n_pending; i++) {
            pending_error *p = &cl->pending[i];
            const int rc = w ? MOE_FRONT_AGAIN : try_error(z, &cl->peer, p->id, p->code, p->msg);
            if (rc == MOE_FRONT_AGAIN && now - p->since < z->client_timeout) {
                cl->pending[w++] = *p;
                continue;
            }
            free(p->id);
            free(p->msg);
        }
        cl->n_pending = w;
    }
}

static void zmq_client_key(moe_front *f, const moe_front_client *cl, char *buf, size_t n)
{
    (void)f;
    snprintf(buf, n, "%s", cl->key[0] ? cl->key : "local");
}

static void zmq_client_name(moe_front *f, const moe_front_client *cl, char *buf, size_t n)
{
    (void)f;
    int k = snprintf(buf, n, "%s%szmq:", cl->name, cl->name[0] ? "@" : "");
    for (int i = 0; i < cl->peer.len && k >= 0 && (size_t)k + 3 <= n; i++)
        k += snprintf(buf + k, n - (size_t)k, "%02x", cl->peer.id[i]);
}

static int zmq_poll_items(moe_front *f, moe_link_poll_item *items, int cap)
{
    if (cap < 1) return 0;
    memset(&items[0], 0, sizeof items[0]);
    items[0].link = zf(f)->link;
    return 1;
}

static const char *zmq_endpoint(const moe_front *f) { return moe_link_endpoint(((const zfront *)f)->link); }

static void zmq_close(moe_front *f)
{
    zfront *z = zf(f);
    if (!z) return;
    moe_log(MOE_LOG_INFO, "%lld chunk sends met back-pressure and were retried", (long long)z->deferred);
    for (int i = 0; i < z->n_clients; i++) client_free(z->clients[i]);
    free(z->clients);
    moe_link_close(z->link);
    free(z);
}

static const moe_front_ops ZMQ_OPS = {
    .poll_items = zmq_poll_items,
    .recv = zmq_recv,
    .tick = zmq_tick,
    .send_chunk = zmq_send_chunk,
    .send_finish = zmq_send_finish,
    .send_error = zmq_send_error,
    .endpoint = zmq_endpoint,
    .client_name = zmq_client_name,
    .client_key = zmq_client_key,
    .close = zmq_close,
};

int moe_front_zmq_open(moe_front **out, moe_link_ctx *lctx, const moe_front_zmq_cfg *cfg,
                       const moe_request_model *model, const moe_front_sink *sink, moe_err *err)
{
    *out = NULL;
    zfront *z = moe_xcalloc(1, sizeof *z);
    z->base.ops = &ZMQ_OPS;
    z->base.sink = *sink;
    z->model = model;
    snprintf(z->model_name, sizeof z->model_name, "%s", cfg->model_name ? cfg->model_name : "");
    z->client_timeout = (double)cfg->client_timeout_ms / 1000.0;
    moe_link_opts o;
    moe_link_opts_default(&o, &moe__client_msg__descriptor);
    o.limits = model->lim;
    o.limits.max_context = 0; /* checked after tokenization (request.c), against the ranks' context */
    moe_link_opts_bound_peers(&o); /* one peer queues a few MiB in libzmq, not 1000 frames */
    o.sndhwm = (int)cfg->client_hwm;
    o.sndbuf = (int)cfg->client_sndbuf;
    o.curve = cfg->curve;
    if (moe_link_bind(&z->link, lctx, cfg->endpoint, &o, err)) {
        free(z);
        return MOE_ERR;
    }
    *out = &z->base;
    return MOE_OK;
}
