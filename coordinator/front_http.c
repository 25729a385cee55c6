/*
 * front_http.c — the OpenAI-compatible HTTP front end (see front_http.h).
 */
#include "front_http.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "b64.h"
#include "io.h"
#include "keyfile.h"
#include "msg.h"
#include "openai.h"

/* Stream bytes buffered for one client before its sends get back-pressure. */
#define OUT_CAP (1u << 20)

/* One choice of a generate request: what it has produced so far. */
typedef struct choice {
    char id[64];              /* its request id at the loop: "<exchange id>-<index>" */
    bool accepted, finished, role_sent;
    char *text;               /* whole answers: the completion's text */
    size_t len, cap;
    moe_token_logprobs *lp;   /* whole answers with logprobs */
    int n_lp, cap_lp;
    moe_token_logprobs *plp;  /* echo with logprobs: the prompt's */
    int n_plp;
    const char *finish;       /* "stop", "length"; NULL while running or on error */
    int code;                 /* of an error end (MOE__CODE__*) */
    char *message;
    int prompt_tokens, completion_tokens;
    int cached_tokens;        /* of prompt_tokens, from the rank's prefix cache */
    size_t text_offset;       /* streamed logprobs: the text_offset the next chunk starts at */
    moe_oai_routed routed;    /* return_routed_experts: set at its finish (ids_b64 NULL: none) */
} choice;

typedef enum { R_NONE = 0, R_COMPLETIONS, R_CHAT, R_MODELS, R_TOKENIZE, R_DETOKENIZE, R_HEALTH, R_METRICS,
               R_PLACEMENT_SET, R_PLACEMENT_GET, R_RECORD_START, R_RECORD_STOP,
               R_RECORD_DUMP } route; /* the last three in moe_recorder_op order */

/* One HTTP request. */
struct moe_front_client {
    struct hfront *h;
    struct MHD_Connection *conn;
    moe_front_client *prev, *next; /* the front end's list */
    char *body;
    size_t body_len, body_cap;
    bool too_big, dispatched;
    /* a generate request */
    moe_oai_request req;
    moe_oai_render rd;
    char xid[48];
    choice *ch;
    int n, n_finished;
    bool stream, suspended, done, in_generate;
    int refused_code;         /* a refusal during generate */
    char refused_msg[MOE_ERR_MSG_MAX];
    char *prompt_text;        /* echo: the prompt's text */
    size_t prompt_len;
    char *out;                /* stream bytes not yet read by MHD */
    size_t out_len, out_pos, out_cap;
};

typedef struct hfront {
    moe_front base;           /* first: a moe_front * is an hfront * */
    struct MHD_Daemon *d;
    const moe_request_model *model;
    char model_name[256];
    char *api_key;
    char *tls_cert, *tls_key; /* PEM text, kept while the daemon runs; NULL: plain HTTP */
    size_t max_body;
    char endpoint[128];
    moe_front_client *clients;
    uint64_t next_id;
    int64_t deferred;         /* stream sends that met back-pressure */
    bool closing;
} hfront;

static hfront *hf(moe_front *f) { return (hfront *)f; }

/* ---- answers --------------------------------------------------------------------------- */

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *type, char *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    const enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* JSON with a newline after it, so that curl's output ends its line. */
static enum MHD_Result answer_json(struct MHD_Connection *conn, unsigned status, char *json)
{
    const size_t n = strlen(json);
    json = moe_xrealloc(json, n + 2);
    memcpy(json + n, "\n", 2);
    return answer(conn, status, "application/json", json);
}

static enum MHD_Result answer_error(struct MHD_Connection *conn, const moe_oai_error *e)
{
    return answer_json(conn, (unsigned)e->status, moe_oai_error_json(e));
}

/* ---- clients ----------------------------------------------------------------------------- */

static void choice_clear(choice *c)
{
    free(c->text);
    free(c->lp);
    free(c->plp);
    free((char *)c->routed.ids_b64);
    free((char *)c->routed.w_b64);
    free(c->message);
}

static void client_free(hfront *h, moe_front_client *cl)
{
    if (cl->prev) cl->prev->next = cl->next;
    else h->clients = cl->next;
    if (cl->next) cl->next->prev = cl->prev;
    for (int i = 0; i < cl->n; i++) choice_clear(&cl->ch[i]);
    free(cl->ch);
    moe_oai_request_free(&cl->req);
    free(cl->body);
    free(cl->prompt_text);
    free(cl->out);
    free(cl);
}

static choice *choice_of(moe_front_client *cl, const char *request_id)
{
    for (int i = 0; i < cl->n; i++)
        if (request_id && !strcmp(cl->ch[i].id, request_id)) return &cl->ch[i];
    return NULL;
}

static void out_append(moe_front_client *cl, const char *json)
{
    if (cl->out_pos == cl->out_len) cl->out_pos = cl->out_len = 0;
    moe_oai_sse(&cl->out, &cl->out_len, &cl->out_cap, json);
}

/* ---- what the loop sends ---------------------------------------------------------------- */

static const char *finish_name(moe_end_reason e)
{
    switch (e) {
    case MOE_END_STOP: return "stop";
    case MOE_END_LENGTH: return "length";
    default: return NULL; /* cancelled, deadline, error: reported as an error */
    }
}

static void usage_of(const moe_front_client *cl, moe_oai_usage *u)
{
    u->prompt_tokens = cl->n ? cl->ch[0].prompt_tokens : 0;
    u->cached_tokens = cl->n ? cl->ch[0].cached_tokens : 0; /* the prompt's, as prompt_tokens */
    u->completion_tokens = 0;
    for (int i = 0; i < cl->n; i++) u->completion_tokens += cl->ch[i].completion_tokens;
}

/* Every choice has finished: the end of the stream, or the whole answer. */
static void complete(hfront *h, moe_front_client *cl)
{
    (void)h;
    if (cl->stream) {
        if (cl->req.include_usage) {
            moe_oai_usage u;
            usage_of(cl, &u);
            char *j = moe_oai_usage_chunk_json(&cl->rd, &u);
            out_append(cl, j);
            free(j);
        }
        out_append(cl, "[DONE]");
        cl->done = true;
        return;
    }
    for (int i = 0; i < cl->n; i++) {
        const choice *c = &cl->ch[i];
        if (c->finish) continue;
        moe_oai_error e;
        moe_oai_error_from_code(&e, c->code ? c->code : MOE__CODE__INTERNAL, c->message ? c->message : "ended early");
        answer_error(cl->conn, &e);
        goto resume;
    }
    moe_oai_choice *oc = moe_xcalloc((size_t)cl->n, sizeof *oc);
    for (int i = 0; i < cl->n; i++) {
        const choice *c = &cl->ch[i];
        oc[i] = (moe_oai_choice){.index = i, .text = c->text ? c->text : "", .text_len = c->len, .lp = c->lp,
                                 .n_lp = c->n_lp, .prompt_lp = c->plp, .n_prompt_lp = c->n_plp,
                                 .prompt_text = cl->prompt_text, .prompt_text_len = cl->prompt_len,
                                 .finish = c->finish, .routed = c->routed.ids_b64 ? &c->routed : NULL};
    }
    moe_oai_usage u;
    usage_of(cl, &u);
    answer_json(cl->conn, MHD_HTTP_OK, moe_oai_response_json(&cl->rd, oc, cl->n, &u));
    free(oc);
resume:
    cl->done = true;
    if (cl->suspended) {
        cl->suspended = false;
        MHD_resume_connection(cl->conn);
    }
}

static void choice_finished(hfront *h, moe_front_client *cl, choice *c)
{
    c->finished = true;
    if (++cl->n_finished == cl->n) complete(h, cl);
}

static int http_send_chunk(moe_front *f, moe_front_client *cl, const char *request_id, const moe_request_chunk *ch)
{
    hfront *h = hf(f);
    choice *c = choice_of(cl, request_id);
    if (!c) return MOE_FRONT_SENT; /* not ours: nothing to keep */
    if (!cl->stream) {
        if (c->len + ch->text_len + 1 > c->cap) {
            c->cap = (c->len + ch->text_len + 1) * 2;
            c->text = moe_xrealloc(c->text, c->cap);
        }
        memcpy(c->text + c->len, ch->text, ch->text_len);
        c->len += ch->text_len;
        c->text[c->len] = 0;
        if (ch->logprobs && ch->n_ids > 0) {
            if (c->n_lp + ch->n_ids > c->cap_lp) {
                c->cap_lp = (c->n_lp + ch->n_ids) * 2;
                c->lp = moe_xrealloc(c->lp, (size_t)c->cap_lp * sizeof *c->lp);
            }
            memcpy(c->lp + c->n_lp, ch->logprobs, (size_t)ch->n_ids * sizeof *c->lp);
            c->n_lp += ch->n_ids;
        }
        return MOE_FRONT_SENT;
    }
    if (cl->out_len - cl->out_pos > OUT_CAP) {
        h->deferred++;
        return MOE_FRONT_AGAIN; /* everything stays with the request, offered again */
    }
    const bool first = !c->role_sent;
    if (!first && ch->text_len == 0 && !ch->logprobs) return MOE_FRONT_SENT;
    const int index = (int)(c - cl->ch);
    moe_oai_choice oc = {.index = index, .text = ch->text, .text_len = ch->text_len, .lp = ch->logprobs,
                         .n_lp = ch->logprobs ? ch->n_ids : 0, .text_offset = c->text_offset,
                         .text_end = &c->text_offset};
    if (first && cl->prompt_text) {
        oc.prompt_text = cl->prompt_text;
        oc.prompt_text_len = cl->prompt_len;
    }
    char *j = moe_oai_chunk_json(&cl->rd, &oc, first);
    out_append(cl, j);
    free(j);
    c->role_sent = true;
    return MOE_FRONT_SENT;
}

static int http_send_finish(moe_front *f, moe_front_client *cl, const char *request_id, const moe_request_outcome *fin)
{
    hfront *h = hf(f);
    choice *c = choice_of(cl, request_id);
    if (!c || c->finished) return MOE_FRONT_SENT;
    if (cl->stream && cl->out_len - cl->out_pos > OUT_CAP) {
        h->deferred++;
        return MOE_FRONT_AGAIN;
    }
    c->finish = finish_name(fin->end);
    c->code = fin->code;
    if (!c->finish) {
        c->message = moe_xstrdup(fin->message ? fin->message : fin->reason_name);
        if (!c->code) c->code = MOE__CODE__INTERNAL;
    }
    c->prompt_tokens = fin->prompt_tokens;
    c->completion_tokens = fin->completion_tokens;
    c->cached_tokens = fin->cached_tokens;
    if (fin->prompt_logprobs && fin->prompt_tokens > 0 && !cl->stream) {
        c->plp = moe_xcalloc((size_t)fin->prompt_tokens, sizeof *c->plp);
        memcpy(c->plp, fin->prompt_logprobs, (size_t)fin->prompt_tokens * sizeof *c->plp);
        c->n_plp = fin->prompt_tokens;
    }
    if (fin->routed_ids && c->finish) {
        /* sizes bounded by the request's check (MOE_MSG_MAX_ROUTED_ENTRIES) */
        const size_t cells = (size_t)fin->routed_rows * (size_t)fin->routed_layers * (size_t)fin->routed_top_k;
        c->routed = (moe_oai_routed){.rows = fin->routed_rows, .layers = fin->routed_layers,
                                     .top_k = fin->routed_top_k, .first_moe_layer = fin->routed_first_moe,
                                     .ids_b64 = moe_b64_encode(fin->routed_ids, cells * 2),
                                     .w_b64 = fin->routed_w ? moe_b64_encode(fin->routed_w, cells * 4) : NULL};
    }
    if (cl->stream) {
        char *j;
        if (c->finish) {
            /* a stream's routed experts come whole in the choice's last chunk */
            moe_oai_choice oc = {.index = (int)(c - cl->ch), .finish = c->finish,
                                 .routed = c->routed.ids_b64 ? &c->routed : NULL};
            j = moe_oai_chunk_json(&cl->rd, &oc, !c->role_sent);
        } else {
            moe_oai_error e;
            moe_oai_error_from_code(&e, c->code, c->message);
            j = moe_oai_error_json(&e);
        }
        out_append(cl, j);
        free(j);
        c->role_sent = true;
    }
    choice_finished(h, cl, c);
    return MOE_FRONT_SENT;
}

static void http_send_error(moe_front *f, moe_front_client *cl, const char *request_id, int code, const char *msg)
{
    hfront *h = hf(f);
    if (cl->in_generate) { /* a refusal of the request being submitted: the answer is an error */
        cl->refused_code = code;
        snprintf(cl->refused_msg, sizeof cl->refused_msg, "%s", msg ? msg : "");
        return;
    }
    choice *c = choice_of(cl, request_id);
    if (!c || c->finished) return;
    const moe_request_outcome fin = {.end = MOE_END_ERROR, .reason_name = "error", .code = code, .message = msg};
    http_send_finish(&h->base, cl, request_id, &fin);
}

/* ---- requests --------------------------------------------------------------------------- */

static const char *token_text(void *ctx, int32_t id, size_t *len)
{
    const moe_tokenizer *tok = ctx;
    if (id < 0 || id >= moe_tokenizer_n_vocab(tok)) return NULL;
    return moe_tokenizer_token_bytes(tok, id, len);
}

/* The echoed prompt: the text as given, or the ids' text. */
static void echo_text(hfront *h, moe_front_client *cl)
{
    const moe_request_spec *s = &cl->req.spec;
    if (s->kind == MOE_PROMPT_TEXT) {
        cl->prompt_text = moe_xstrdup(s->text);
    } else if (s->kind == MOE_PROMPT_IDS) {
        moe_err err;
        if (moe_tokenizer_decode(h->model->tok, s->ids, s->n_ids, &cl->prompt_text, &cl->prompt_len, &err)) {
            cl->prompt_text = NULL;
            cl->prompt_len = 0;
        }
        return;
    }
    cl->prompt_len = cl->prompt_text ? strlen(cl->prompt_text) : 0;
}

static enum MHD_Result on_generate(hfront *h, moe_front_client *cl, moe_oai_kind kind)
{
    moe_oai_error e;
    if (moe_oai_parse(&cl->req, kind, cl->body ? cl->body : "", cl->body_len, &h->model->lim, &e))
        return answer_error(cl->conn, &e);
    if (cl->req.model && strcmp(cl->req.model, h->model_name)) {
        moe_oai_error_set(&e, 404, "model_not_found", "model", "The model '%s' does not exist; this server serves '%s'",
                          cl->req.model, h->model_name);
        return answer_error(cl->conn, &e);
    }
    snprintf(cl->xid, sizeof cl->xid, "%s-%llx%06llx", kind == MOE_OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)time(NULL), (unsigned long long)(h->next_id++ & 0xffffff));
    cl->rd = (moe_oai_render){.kind = kind, .id = cl->xid, .created = (long long)time(NULL), .model = h->model_name,
                              .token_text = token_text, .token_ctx = (void *)h->model->tok,
                              .logprobs = cl->req.spec.logprobs >= 0};
    cl->stream = cl->req.spec.stream;
    if (cl->req.echo) echo_text(h, cl);
    cl->n = cl->req.n;
    cl->ch = moe_xcalloc((size_t)cl->n, sizeof *cl->ch);
    cl->in_generate = true;
    int accepted = 0;
    for (int i = 0; i < cl->n && !cl->refused_code; i++) {
        snprintf(cl->ch[i].id, sizeof cl->ch[i].id, "%s-%d", cl->xid, i);
        moe_request_spec spec;
        moe_oai_choice_spec(&cl->req, i, cl->ch[i].id, &spec);
        h->base.sink.generate(h->base.sink.ctx, &h->base, cl, &spec);
        if (!cl->refused_code) {
            cl->ch[i].accepted = true;
            accepted++;
        }
    }
    cl->in_generate = false;
    if (cl->refused_code) {
        /* the choices already running go: the answer is the refusal */
        if (accepted) h->base.sink.client_gone(h->base.sink.ctx, &h->base, cl, "had a choice refused");
        cl->n = 0;
        moe_oai_error_from_code(&e, cl->refused_code, cl->refused_msg);
        return answer_error(cl->conn, &e);
    }
    if (!cl->stream) {
        MHD_suspend_connection(cl->conn); /* resumed by complete() */
        cl->suspended = true;
        return MHD_YES;
    }
    return MHD_YES; /* the stream's response is queued by the caller */
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    moe_front_client *cl = cls;
    if (cl->out_pos < cl->out_len) {
        size_t n = cl->out_len - cl->out_pos;
        if (n > max) n = max;
        memcpy(buf, cl->out + cl->out_pos, n);
        cl->out_pos += n;
        return (ssize_t)n;
    }
    if (cl->done) return MHD_CONTENT_READER_END_OF_STREAM;
    return 0; /* nothing yet: asked again at the next MHD_run (the loop's next turn) */
}

static enum MHD_Result start_stream(moe_front_client *cl)
{
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, cl, NULL);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    const enum MHD_Result rc = MHD_queue_response(cl->conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result on_metrics(hfront *h, moe_front_client *cl)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m) return MHD_NO;
    h->base.sink.metrics(h->base.sink.ctx, m);
    fclose(m);
    return answer(cl->conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text);
}

static enum MHD_Result on_health(hfront *h, moe_front_client *cl)
{
    const char *why = h->base.sink.health(h->base.sink.ctx);
    if (!why) return answer_json(cl->conn, MHD_HTTP_OK, moe_xstrdup("{\"status\":\"ok\"}"));
    moe_oai_error e;
    moe_oai_error_set(&e, 503, "not_ready", NULL, "%s", why);
    return answer_error(cl->conn, &e);
}

/* POST /admin/placement: a placement file's text (the body) to the worker
 * job, answered 202 with its id; GET: the last one and what became of it
 * (the job checks it whole and answers; docs/routing.md). */
static enum MHD_Result on_placement(hfront *h, moe_front_client *cl, bool set)
{
    moe_oai_error e;
    const moe_front_sink *sk = &h->base.sink;
    if (!sk->placement_set || !sk->placement_get) {
        moe_oai_error_set(&e, 404, "not_found", NULL, "this server takes no placement");
        return answer_error(cl->conn, &e);
    }
    json_t *o;
    unsigned status = MHD_HTTP_OK;
    if (set) {
        uint64_t id = 0;
        moe_err err = {{0}};
        if (sk->placement_set(sk->ctx, cl->body ? cl->body : "", cl->body_len, &id, &err)) {
            moe_oai_error_set(&e, 400, "bad_placement", NULL, "%s", err.msg);
            return answer_error(cl->conn, &e);
        }
        o = json_pack("{s:I, s:s}", "id", (json_int_t)id, "status", "sent");
        status = 202;
    } else {
        moe_front_placement p;
        sk->placement_get(sk->ctx, &p);
        o = json_pack("{s:I, s:I}", "sent", (json_int_t)p.sent, "done", (json_int_t)p.done);
        if (p.done) {
            json_object_set_new(o, "ok", json_boolean(p.ok));
            json_object_set_new(o, "message", json_string(p.message));
            json_object_set_new(o, "step", json_integer((json_int_t)p.step));
            json_object_set_new(o, "moved", json_integer((json_int_t)p.moved));
            json_object_set_new(o, "balancedness_before", json_real(p.bal_before));
            json_object_set_new(o, "balancedness_after", json_real(p.bal_after));
        }
    }
    char *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!out) return MHD_NO;
    return answer_json(cl->conn, status, out);
}

static const struct {
    const char *path, *method;
    route r;
    bool auth;
} ROUTES[] = {
    {"/v1/completions", "POST", R_COMPLETIONS, true},
    {"/v1/chat/completions", "POST", R_CHAT, true},
    {"/v1/models", "GET", R_MODELS, true},
    {"/tokenize", "POST", R_TOKENIZE, true},
    {"/detokenize", "POST", R_DETOKENIZE, true},
    {"/health", "GET", R_HEALTH, false},
    {"/metrics", "GET", R_METRICS, false},
    {"/admin/placement", "POST", R_PLACEMENT_SET, true},
    {"/admin/placement", "GET", R_PLACEMENT_GET, true},
    {"/start_expert_distribution_record", "POST", R_RECORD_START, true},
    {"/stop_expert_distribution_record", "POST", R_RECORD_STOP, true},
    {"/dump_expert_distribution_record", "POST", R_RECORD_DUMP, true},
};

/* Constant-time comparison: the key's bytes do not show in the answer's timing. */
static bool key_ok(const char *want, const char *got)
{
    if (!got) return false;
    const size_t n = strlen(want), m = strlen(got);
    unsigned char d = (unsigned char)(n != m);
    for (size_t i = 0; i < m; i++) d |= (unsigned char)(got[i] ^ want[i % (n ? n : 1)]);
    return d == 0;
}

static enum MHD_Result dispatch(hfront *h, moe_front_client *cl, const char *url, const char *method)
{
    moe_oai_error e;
    size_t k = 0;
    while (k < sizeof ROUTES / sizeof ROUTES[0] && strcmp(url, ROUTES[k].path)) k++;
    /* a path served under several methods: the entry of this one */
    for (size_t j = k; j < sizeof ROUTES / sizeof ROUTES[0]; j++)
        if (!strcmp(url, ROUTES[j].path) && !strcmp(method, ROUTES[j].method)) {
            k = j;
            break;
        }
    if (k == sizeof ROUTES / sizeof ROUTES[0]) {
        moe_oai_error_set(&e, 404, "not_found", NULL, "no such path: %.200s", url);
        return answer_error(cl->conn, &e);
    }
    const bool head = !strcmp(method, "HEAD") && !strcmp(ROUTES[k].method, "GET");
    if (strcmp(method, ROUTES[k].method) && !head) {
        moe_oai_error_set(&e, 405, "method_not_allowed", NULL, "%s takes %s, not %.20s", ROUTES[k].path,
                          ROUTES[k].method, method);
        struct MHD_Response *r;
        char *body = moe_oai_error_json(&e);
        r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, ROUTES[k].method);
        const enum MHD_Result rc = MHD_queue_response(cl->conn, 405, r);
        MHD_destroy_response(r);
        return rc;
    }
    if (ROUTES[k].auth && h->api_key) {
        const char *a = MHD_lookup_connection_value(cl->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        if (!a || strncmp(a, "Bearer ", 7) || !key_ok(h->api_key, a + 7)) {
            moe_oai_error_set(&e, 401, "invalid_api_key", NULL,
                              a ? "the API key is not the server's" : "an API key is required (Authorization: Bearer KEY)");
            return answer_error(cl->conn, &e);
        }
    }
    if (cl->too_big) {
        moe_oai_error_set(&e, 413, "body_too_large", NULL, "the body is larger than the server's limit of %zu bytes",
                          h->max_body);
        return answer_error(cl->conn, &e);
    }
    const char *body = cl->body ? cl->body : "";
    char *out;
    switch (ROUTES[k].r) {
    case R_COMPLETIONS:
    case R_CHAT: {
        const enum MHD_Result rc = on_generate(h, cl, ROUTES[k].r == R_CHAT ? MOE_OAI_CHAT : MOE_OAI_COMPLETION);
        if (rc == MHD_YES && cl->n > 0 && cl->stream) return start_stream(cl);
        return rc;
    }
    case R_MODELS:
        return answer_json(cl->conn, MHD_HTTP_OK,
                           moe_oai_models_json(h->model_name, (long long)time(NULL), h->model->lim.max_context));
    case R_TOKENIZE:
    case R_DETOKENIZE:
        out = ROUTES[k].r == R_TOKENIZE ? moe_oai_tokenize(h->model, body, cl->body_len, &e)
                                        : moe_oai_detokenize(h->model, body, cl->body_len, &e);
        return out ? answer_json(cl->conn, MHD_HTTP_OK, out) : answer_error(cl->conn, &e);
    case R_HEALTH: return on_health(h, cl);
    case R_METRICS: return on_metrics(h, cl);
    case R_PLACEMENT_SET:
    case R_PLACEMENT_GET: return on_placement(h, cl, ROUTES[k].r == R_PLACEMENT_SET);
    case R_RECORD_START:
    case R_RECORD_STOP:
    case R_RECORD_DUMP: {
        int status = 503;
        char *j = h->base.sink.record
                      ? h->base.sink.record(h->base.sink.ctx, ROUTES[k].r - R_RECORD_START, body, cl->body_len, &status)
                      : NULL;
        if (!j) {
            moe_oai_error_set(&e, 503, "not_available", NULL, "this server has no expert distribution recorder");
            return answer_error(cl->conn, &e);
        }
        return answer_json(cl->conn, (unsigned)status, j);
    }
    case R_NONE: break;
    }
    return MHD_NO;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **req_cls)
{
    (void)version;
    hfront *h = cls;
    moe_front_client *cl = *req_cls;
    if (!cl) {
        cl = moe_xcalloc(1, sizeof *cl);
        cl->h = h;
        cl->conn = conn;
        cl->next = h->clients;
        if (h->clients) h->clients->prev = cl;
        h->clients = cl;
        *req_cls = cl;
        const char *cl_len = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        int64_t n;
        moe_err err;
        if (cl_len && moe_parse_i64(cl_len, 0, INT64_MAX, &n, &err) == MOE_OK && (uint64_t)n > h->max_body)
            cl->too_big = true; /* the body is read and dropped; the answer is 413 */
        return MHD_YES;
    }
    if (*upload_size) {
        const size_t n = *upload_size;
        *upload_size = 0;
        if (cl->too_big) return MHD_YES;
        if (n > h->max_body - cl->body_len) {
            cl->too_big = true;
            free(cl->body);
            cl->body = NULL;
            cl->body_len = cl->body_cap = 0;
            return MHD_YES;
        }
        if (cl->body_len + n + 1 > cl->body_cap) {
            cl->body_cap = (cl->body_len + n + 1) * 2;
            cl->body = moe_xrealloc(cl->body, cl->body_cap);
        }
        memcpy(cl->body + cl->body_len, upload, n);
        cl->body_len += n;
        cl->body[cl->body_len] = 0;
        return MHD_YES;
    }
    if (cl->dispatched) return MHD_YES; /* resumed: the answer is queued */
    cl->dispatched = true;
    return dispatch(h, cl, url, method);
}

/* The request is over (answered, or the connection closed): a request
 * still running has lost its client. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    hfront *h = cls;
    moe_front_client *cl = *req_cls;
    if (!cl) return;
    *req_cls = NULL;
    bool running = false;
    for (int i = 0; i < cl->n; i++) running |= cl->ch[i].accepted && !cl->ch[i].finished;
    if (running && !h->closing)
        h->base.sink.client_gone(h->base.sink.ctx, &h->base, cl,
                                 toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? "was cut off by the shutdown"
                                                                               : "disconnected before its answer was complete");
    client_free(h, cl);
}

/* ---- the loop's side ------------------------------------------------------------------- */

static int http_poll_items(moe_front *f, moe_link_poll_item *items, int cap)
{
    if (cap < 1) return 0;
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(hf(f)->d, MHD_DAEMON_INFO_EPOLL_FD);
    memset(&items[0], 0, sizeof items[0]);
    items[0].fd = i ? i->epoll_fd : -1;
    return i ? 1 : 0;
}

static void http_recv(moe_front *f) { MHD_run(hf(f)->d); }

static void http_tick(moe_front *f, double now)
{
    (void)now;
    MHD_run(hf(f)->d); /* what the loop's sends just queued goes out now */
}

/* A generate request whose answer has not been fully written. */
static bool http_busy(const moe_front *f)
{
    for (const moe_front_client *cl = ((const hfront *)f)->clients; cl; cl = cl->next)
        if (cl->n > 0) return true;
    return false;
}

static const char *http_endpoint(const moe_front *f) { return ((const hfront *)f)->endpoint; }

static void http_close(moe_front *f)
{
    hfront *h = hf(f);
    if (!h) return;
    h->closing = true;
    if (h->deferred) moe_log(MOE_LOG_INFO, "http: %lld stream sends met back-pressure and were retried", (long long)h->deferred);
    if (h->d) {
        for (moe_front_client *cl = h->clients; cl; cl = cl->next)
            if (cl->suspended) { /* stopping with suspended connections is not allowed */
                cl->suspended = false;
                MHD_resume_connection(cl->conn);
            }
        MHD_stop_daemon(h->d); /* on_completed frees every client */
    }
    while (h->clients) client_free(h, h->clients);
    free(h->api_key);
    free(h->tls_cert);
    free(h->tls_key);
    free(h);
}

/* "http:HOST:PORT" of the client's connection, for the request log line
 * (the User-Agent would be the client's word, not a fact). */
static void http_client_name(moe_front *f, const moe_front_client *cl, char *buf, size_t n)
{
    (void)f;
    snprintf(buf, n, "http:?");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(cl->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)ci->client_addr;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
        snprintf(buf, n, "http:[%s]:%u", host, port);
    } else if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)ci->client_addr;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
        snprintf(buf, n, "http:%s:%u", host, port);
    }
}

/* "addr:IP" for the per-client limits (clients.h): the same client as a
 * ZMQ connection from that address. */
static void http_client_key(moe_front *f, const moe_front_client *cl, char *buf, size_t n)
{
    (void)f;
    snprintf(buf, n, "local");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(cl->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    char host[INET6_ADDRSTRLEN] = "?";
    if (ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)ci->client_addr)->sin6_addr, host, sizeof host);
    else if (ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)ci->client_addr)->sin_addr, host, sizeof host);
    else return;
    snprintf(buf, n, "addr:%s", host);
}

static const moe_front_ops HTTP_OPS = {
    .client_name = http_client_name,
    .client_key = http_client_key,
    .poll_items = http_poll_items,
    .recv = http_recv,
    .tick = http_tick,
    .send_chunk = http_send_chunk,
    .send_finish = http_send_finish,
    .send_error = http_send_error,
    .busy = http_busy,
    .endpoint = http_endpoint,
    .close = http_close,
};

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    const size_t n = strlen(buf);
    if (n && buf[n - 1] == '\n') buf[n - 1] = 0;
    moe_log(MOE_LOG_DEBUG, "http: %s", buf);
}

/* "HOST:PORT" (HOST may be [v6]) to a socket address. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len, bool *v6, moe_err *err)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) return moe_err_set(err, "'%s' is not HOST:PORT", s);
    char host[256];
    size_t hl = (size_t)(colon - s);
    const char *h0 = s;
    if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') {
        h0++;
        hl -= 2;
    }
    if (hl >= sizeof host) return moe_err_set(err, "'%s': the host is too long", s);
    memcpy(host, h0, hl);
    host[hl] = 0;
    int64_t port;
    if (moe_parse_i64(colon + 1, 0, 65535, &port, err)) return moe_err_prefix(err, "'%s': port", s);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char ps[8];
    snprintf(ps, sizeof ps, "%d", (int)port);
    const int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc || !res) return moe_err_set(err, "'%s': %s", s, gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return MOE_OK;
}

static void http_free_cfg(hfront *h)
{
    free(h->api_key);
    free(h->tls_cert);
    free(h->tls_key);
    free(h);
}

/* The PEM certificate (chain) and its key for MHD_USE_TLS (GnuTLS inside
 * libmicrohttpd); the key file must be private, as a CURVE secret is. */
static int load_tls(hfront *h, const moe_front_http_cfg *cfg, moe_err *err)
{
    size_t n;
    if (!cfg->tls_key) return moe_err_set(err, "--tls-cert needs --tls-key");
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return moe_err_set(err, "this libmicrohttpd was built without TLS");
    if (moe_secret_file_check(cfg->tls_key, err)) return moe_err_prefix(err, "--tls-key");
    if (moe_file_read(cfg->tls_cert, MOE_KEYFILE_MAX_BYTES, &h->tls_cert, &n, err))
        return moe_err_prefix(err, "--tls-cert");
    if (moe_file_read(cfg->tls_key, MOE_KEYFILE_MAX_BYTES, &h->tls_key, &n, err)) return moe_err_prefix(err, "--tls-key");
    if (!strstr(h->tls_cert, "-----BEGIN CERTIFICATE-----"))
        return moe_err_set(err, "--tls-cert %s: no PEM certificate in it", cfg->tls_cert);
    if (!strstr(h->tls_key, "PRIVATE KEY-----"))
        return moe_err_set(err, "--tls-key %s: no PEM private key in it", cfg->tls_key);
    return MOE_OK;
}

int moe_front_http_open(moe_front **out, const moe_front_http_cfg *cfg, const moe_request_model *model,
                        const moe_front_sink *sink, moe_err *err)
{
    *out = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    bool v6 = false;
    if (parse_listen(cfg->listen, &ss, &sl, &v6, err)) return MOE_ERR;
    (void)sl;
    hfront *h = moe_xcalloc(1, sizeof *h);
    h->base.ops = &HTTP_OPS;
    h->base.sink = *sink;
    h->model = model;
    snprintf(h->model_name, sizeof h->model_name, "%s", cfg->model_name ? cfg->model_name : "");
    h->api_key = cfg->api_key ? moe_xstrdup(cfg->api_key) : NULL;
    h->max_body = (size_t)cfg->max_body;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (v6) flags |= MHD_USE_IPv6;
    if (cfg->tls_cert && load_tls(h, cfg, err)) {
        http_free_cfg(h);
        return MOE_ERR;
    }
    if (h->tls_cert) flags |= MHD_USE_TLS;
    /* the TLS options last: without TLS, the list ends before them */
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096,
                            h->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, h->tls_cert,
                            MHD_OPTION_HTTPS_MEM_KEY, h->tls_key, MHD_OPTION_END);
    if (!h->d) {
        http_free_cfg(h);
        return moe_err_set(err, "cannot listen on %s (in use, or not an address of this machine%s?)", cfg->listen,
                           cfg->tls_cert ? ", or a certificate and key that do not match" : "");
    }
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    char host[INET6_ADDRSTRLEN] = "?";
    if (v6) inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
    else inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
    snprintf(h->endpoint, sizeof h->endpoint, v6 ? "%s://[%s]:%u" : "%s://%s:%u", h->tls_cert ? "https" : "http",
             host, pi ? (unsigned)pi->port : 0u);
    *out = &h->base;
    return MOE_OK;
}
