/*
 * target.c — moe-bench's targets (target.h): OpenAI HTTP through libcurl's
 * multi interface, and the native protocol through moe-client's session.
 */
#include "target.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "msg.h"
#include "session.h"

#define MAX_LINE ((size_t)16 << 20) /* an SSE line longer than this is a broken server */
#define MAX_ERR_BODY 2048

typedef struct http_req {
    CURL *easy;
    struct curl_slist *hdr;
    char *body;
    moe_bench_rec *rec;
    size_t slot;
    char *line;            /* the SSE line being received */
    size_t line_len, line_cap;
    char errbuf[CURL_ERROR_SIZE];
    char err_body[MAX_ERR_BODY]; /* a non-200 answer's start */
    size_t err_len;
    bool done_seen;        /* data: [DONE] */
    bool has_usage;
    uint32_t usage_out;
    char *stream_error;    /* an error event in the stream */
    struct moe_bench_target *t;
} http_req;

typedef struct zmq_req {
    moe_bench_rec *rec;
    size_t slot;
    bool busy;
    uint64_t serial;       /* the number in its request id */
    uint32_t next_index;
    uint32_t max_tokens;
} zmq_req;

struct moe_bench_target {
    moe_bench_target_cfg c;
    double t0;
    bool http, chat;
    /* http */
    CURLM *multi;
    char *url;
    /* zmq */
    moe_session *s;
    zmq_req *zr;           /* [n_zr], indexed by the number in the request id modulo n_zr */
    size_t n_zr;
    uint64_t next_serial;
    double last_hb, last_rx;
    size_t n_busy;
    moe_sampler_cfg sampling;
};

static char *vdup(const char *fmt, ...) MOE_PRINTF(1, 2);
static char *vdup(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = moe_xmalloc((size_t)(n > 0 ? n : 0) + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void rec_fail(moe_bench_rec *r, const char *fmt, ...) MOE_PRINTF(2, 3);
static void rec_fail(moe_bench_rec *r, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    r->ok = false;
    free(r->error);
    r->error = moe_xstrdup(buf);
}

/* ---- HTTP ------------------------------------------------------------------ */

static void http_event(http_req *h, const char *data)
{
    moe_bench_target *t = h->t;
    if (!strcmp(data, "[DONE]")) {
        h->done_seen = true;
        return;
    }
    json_error_t je;
    json_t *o = json_loads(data, 0, &je);
    if (!json_is_object(o)) {
        if (!h->stream_error) h->stream_error = vdup("an SSE event that is not a JSON object: %.120s", data);
        json_decref(o);
        return;
    }
    json_t *e = json_object_get(o, "error");
    if (e && !json_is_null(e)) {
        json_t *m = json_is_object(e) ? json_object_get(e, "message") : e;
        if (!h->stream_error) h->stream_error = vdup("error event: %.300s", json_is_string(m) ? json_string_value(m) : "?");
    }
    json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    const char *text = NULL;
    if (json_is_object(ch)) {
        json_t *v;
        if (t->chat) {
            json_t *d = json_object_get(ch, "delta");
            v = json_is_object(d) ? json_object_get(d, "content") : NULL;
            if (!json_is_string(v) || !*json_string_value(v)) v = json_is_object(d) ? json_object_get(d, "reasoning_content") : NULL;
        } else {
            v = json_object_get(ch, "text");
        }
        if (json_is_string(v)) text = json_string_value(v);
    }
    if (text && *text) moe_bench_rec_chunk(h->rec, moe_now() - t->t0, 1);
    json_t *u = json_object_get(o, "usage");
    json_t *ct = json_is_object(u) ? json_object_get(u, "completion_tokens") : NULL;
    if (json_is_integer(ct) && json_integer_value(ct) >= 0 && json_integer_value(ct) <= UINT32_MAX) {
        h->has_usage = true;
        h->usage_out = (uint32_t)json_integer_value(ct);
    }
    json_decref(o);
}

static size_t http_write(char *p, size_t size, size_t nmemb, void *ud)
{
    http_req *h = ud;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        size_t k = n < MAX_ERR_BODY - 1 - h->err_len ? n : MAX_ERR_BODY - 1 - h->err_len;
        memcpy(h->err_body + h->err_len, p, k);
        h->err_len += k;
        h->err_body[h->err_len] = 0;
        return n;
    }
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\n') {
            while (h->line_len && h->line[h->line_len - 1] == '\r') h->line_len--;
            if (h->line_len + 1 > h->line_cap) {
                h->line_cap = h->line_len + 1;
                h->line = moe_xrealloc(h->line, h->line_cap);
            }
            h->line[h->line_len] = 0;
            if (!strncmp(h->line, "data:", 5)) {
                const char *d = h->line + 5;
                while (*d == ' ') d++;
                http_event(h, d);
            }
            h->line_len = 0;
            continue;
        }
        if (h->line_len + 1 >= MAX_LINE) return 0; /* aborts the transfer: a write error */
        if (h->line_len + 2 > h->line_cap) {
            h->line_cap = h->line_cap ? h->line_cap * 2 : 4096;
            h->line = moe_xrealloc(h->line, h->line_cap);
        }
        h->line[h->line_len++] = c;
    }
    return n;
}

static void http_req_free(http_req *h)
{
    if (!h) return;
    if (h->easy) curl_easy_cleanup(h->easy);
    curl_slist_free_all(h->hdr);
    free(h->body);
    free(h->line);
    free(h->stream_error);
    free(h);
}

static char *http_body(moe_bench_target *t, const moe_bench_prompt *p)
{
    json_t *o = json_object();
    if (t->c.model) json_object_set_new(o, "model", json_string(t->c.model));
    if (t->chat) {
        json_t *msg = json_object();
        json_object_set_new(msg, "role", json_string("user"));
        json_object_set_new(msg, "content", json_string(p->text ? p->text : ""));
        json_t *msgs = json_array();
        json_array_append_new(msgs, msg);
        json_object_set_new(o, "messages", msgs);
        json_object_set_new(o, "max_completion_tokens", json_integer(p->output_len));
    } else {
        if (p->ids) {
            json_t *a = json_array();
            for (size_t i = 0; i < p->n_ids; i++) json_array_append_new(a, json_integer(p->ids[i]));
            json_object_set_new(o, "prompt", a);
        } else {
            json_object_set_new(o, "prompt", json_string(p->text ? p->text : ""));
        }
    }
    json_object_set_new(o, "max_tokens", json_integer(p->output_len));
    json_object_set_new(o, "temperature", json_real(0));
    json_object_set_new(o, "stream", json_true());
    json_t *so = json_object();
    json_object_set_new(so, "include_usage", json_true());
    json_object_set_new(o, "stream_options", so);
    if (t->c.ignore_eos) json_object_set_new(o, "ignore_eos", json_true());
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static int http_submit(moe_bench_target *t, size_t slot, const moe_bench_prompt *p, moe_bench_rec *rec, moe_err *err)
{
    http_req *h = moe_xcalloc(1, sizeof *h);
    h->t = t;
    h->rec = rec;
    h->slot = slot;
    h->body = http_body(t, p);
    h->easy = curl_easy_init();
    if (!h->easy || !h->body) {
        http_req_free(h);
        return moe_err_set(err, "curl_easy_init failed");
    }
    h->hdr = curl_slist_append(h->hdr, "Content-Type: application/json");
    if (t->c.api_key) {
        char auth[600];
        snprintf(auth, sizeof auth, "Authorization: Bearer %.500s", t->c.api_key);
        h->hdr = curl_slist_append(h->hdr, auth);
    }
    CURL *e = h->easy;
    curl_easy_setopt(e, CURLOPT_URL, t->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->hdr);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, h->body);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(e, CURLOPT_PRIVATE, h);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    if (t->c.timeout_s > 0) {
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)(t->c.timeout_s + 0.999));
    }
    rec->t_sent = moe_now() - t->t0;
    CURLMcode mc = curl_multi_add_handle(t->multi, e);
    if (mc != CURLM_OK) {
        rec->t_end = rec->t_sent;
        rec_fail(rec, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
        http_req_free(h);
        return moe_err_set(err, "%s", rec->error);
    }
    return MOE_OK;
}

static void http_finish(moe_bench_target *t, http_req *h, CURLcode res)
{
    moe_bench_rec *r = h->rec;
    r->t_end = moe_now() - t->t0;
    long status = 0;
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
    if (res != CURLE_OK) rec_fail(r, "%s", h->errbuf[0] ? h->errbuf : curl_easy_strerror(res));
    else if (status != 200) rec_fail(r, "HTTP %ld: %.400s", status, h->err_body);
    else if (h->stream_error) rec_fail(r, "%s", h->stream_error);
    else if (!h->done_seen) rec_fail(r, "the stream ended without data: [DONE]");
    else {
        r->ok = true;
        r->output_len = h->has_usage ? h->usage_out : (uint32_t)r->n_chunks;
    }
}

static int http_step(moe_bench_target *t, int timeout_ms, size_t *done, size_t *n_done, moe_err *err)
{
    int running = 0;
    CURLMcode mc = curl_multi_perform(t->multi, &running);
    if (mc == CURLM_OK) mc = curl_multi_poll(t->multi, NULL, 0, timeout_ms, NULL);
    if (mc == CURLM_OK) mc = curl_multi_perform(t->multi, &running);
    if (mc != CURLM_OK) return moe_err_set(err, "curl: %s", curl_multi_strerror(mc));
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(t->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        http_req *h = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&h);
        CURLcode res = m->data.result;
        curl_multi_remove_handle(t->multi, m->easy_handle);
        http_finish(t, h, res);
        done[(*n_done)++] = h->slot;
        http_req_free(h);
    }
    return MOE_OK;
}

/* ---- ZMQ ------------------------------------------------------------------- */

#define ZMQ_SLOTS 65536 /* requests in flight at once over one session */

static zmq_req *zmq_find(moe_bench_target *t, const char *id)
{
    if (!id || id[0] != 'b') return NULL;
    uint64_t k = 0;
    if (!id[1]) return NULL;
    for (const char *p = id + 1; *p; p++) {
        if (*p < '0' || *p > '9' || k > UINT64_MAX / 10 - 10) return NULL;
        k = k * 10 + (uint64_t)(*p - '0');
    }
    zmq_req *z = &t->zr[k % t->n_zr];
    return z->busy && z->serial == k ? z : NULL;
}

static int zmq_submit(moe_bench_target *t, size_t slot, const moe_bench_prompt *p, moe_bench_rec *rec, moe_err *err)
{
    uint64_t serial = t->next_serial;
    zmq_req *z = &t->zr[serial % t->n_zr];
    if (z->busy) return moe_err_set(err, "more than %zu requests in flight over one session", t->n_zr);
    char id[32];
    snprintf(id, sizeof id, "b%" PRIu64, serial);
    moe_session_gen g;
    memset(&g, 0, sizeof g);
    g.id = id;
    if (p->ids) {
        g.prompt = MOE_SESSION_IDS;
        g.ids = p->ids;
        g.n_ids = p->n_ids;
    } else {
        g.prompt = MOE_SESSION_TEXT;
        g.text = p->text ? p->text : "";
    }
    g.max_tokens = (int32_t)p->output_len;
    g.sampling = &t->sampling;
    g.logprobs = -1;
    rec->t_sent = moe_now() - t->t0;
    int rc;
    /* A full queue: wait for room (the server reads as fast as it can). */
    for (int tries = 0; (rc = moe_session_generate(t->s, &g, err)) == MOE_LINK_AGAIN && tries < 1000; tries++) {
        bool in;
        if (moe_session_poll(t->s, true, -1, 10, &in, NULL, err)) break;
    }
    if (rc != MOE_OK) {
        rec->t_end = rec->t_sent;
        rec_fail(rec, "cannot send: %s", rc == MOE_LINK_AGAIN ? "the server is not reading" : err->msg);
        return moe_err_set(err, "%s", rec->error);
    }
    t->next_serial++;
    if (!t->n_busy++) t->last_rx = moe_now();
    z->busy = true;
    z->serial = serial;
    z->rec = rec;
    z->slot = slot;
    z->next_index = 0;
    z->max_tokens = p->output_len;
    return MOE_OK;
}

static void zmq_end(moe_bench_target *t, zmq_req *z, size_t *done, size_t *n_done)
{
    z->rec->t_end = moe_now() - t->t0;
    z->busy = false;
    t->n_busy--;
    done[(*n_done)++] = z->slot;
}

/* Names the requests in flight (as moe-client does): the server answers
 * the ones it does not know with UNKNOWN_REQUEST. */
static void zmq_heartbeat(moe_bench_target *t, moe_err *err)
{
    const size_t cap = t->n_busy < MOE_MSG_MAX_HEARTBEAT_IDS ? t->n_busy : MOE_MSG_MAX_HEARTBEAT_IDS;
    char (*buf)[24] = cap ? moe_xmalloc(cap * sizeof *buf) : NULL;
    char **ids = cap ? moe_xmalloc(cap * sizeof *ids) : NULL;
    size_t n = 0;
    for (size_t i = 0; i < t->n_zr && n < cap; i++)
        if (t->zr[i].busy) {
            snprintf(buf[n], sizeof buf[n], "b%" PRIu64, t->zr[i].serial);
            ids[n] = buf[n];
            n++;
        }
    moe_session_heartbeat(t->s, ids, n, err);
    free(ids);
    free(buf);
}

static int zmq_step(moe_bench_target *t, int timeout_ms, size_t *done, size_t *n_done, moe_err *err)
{
    double now = moe_now();
    if (now - t->last_hb > 1.0) {
        zmq_heartbeat(t, err); /* a full queue: the next period tries again */
        t->last_hb = now;
    }
    bool in = false;
    if (moe_session_poll(t->s, false, -1, timeout_ms, &in, NULL, err)) return MOE_ERR;
    for (int k = 0; k < 4096; k++) {
        moe_link_in m;
        int rc = moe_session_recv(t->s, &m, err);
        if (rc == MOE_LINK_AGAIN) break;
        if (rc != MOE_OK) return MOE_ERR;
        if (m.code != MOE__CODE__OK) {
            moe_link_in_clear(&m);
            continue;
        }
        const Moe__ServerMsg *sm = (const Moe__ServerMsg *)m.msg;
        t->last_rx = moe_now();
        double tr = moe_now() - t->t0;
        if (sm->body_case == MOE__SERVER_MSG__BODY_CHUNK) {
            const Moe__TokenChunk *ch = sm->chunk;
            zmq_req *z = zmq_find(t, ch->request_id);
            if (z && ch->n_ids) {
                if (ch->index != z->next_index || (uint64_t)ch->index + ch->n_ids > z->max_tokens) {
                    rec_fail(z->rec, "protocol error: chunk index %u where %u was due", (unsigned)ch->index,
                             (unsigned)z->next_index);
                    moe_session_cancel(t->s, ch->request_id, err);
                    zmq_end(t, z, done, n_done);
                } else {
                    z->next_index += (uint32_t)ch->n_ids;
                    moe_bench_rec_chunk(z->rec, tr, (uint32_t)ch->n_ids);
                }
            }
        } else if (sm->body_case == MOE__SERVER_MSG__BODY_FINISH) {
            const Moe__Finish *f = sm->finish;
            zmq_req *z = zmq_find(t, f->request_id);
            if (z) {
                if (f->reason == MOE__END_REASON__END_STOP || f->reason == MOE__END_REASON__END_LENGTH) {
                    z->rec->ok = true;
                    z->rec->output_len = f->usage ? f->usage->completion_tokens : z->next_index;
                } else {
                    rec_fail(z->rec, "finish %d: %s", (int)f->reason, f->message ? f->message : "");
                }
                zmq_end(t, z, done, n_done);
            }
        } else if (sm->body_case == MOE__SERVER_MSG__BODY_ERROR) {
            const Moe__Error *e = sm->error;
            zmq_req *z = zmq_find(t, e->request_id);
            if (z) {
                rec_fail(z->rec, "%s: %s", moe_msg_code_name(e->code), e->message ? e->message : "");
                zmq_end(t, z, done, n_done);
            } else if (!e->request_id && (e->code == MOE__CODE__BAD_VERSION || e->code == MOE__CODE__SHUTTING_DOWN)) {
                int rc2 = moe_err_set(err, "the server refused the session: %s: %s", moe_msg_code_name(e->code),
                                      e->message ? e->message : "");
                moe_link_in_clear(&m);
                return rc2;
            }
        }
        moe_link_in_clear(&m);
    }
    /* Silence while requests wait: they fail (and are cancelled). */
    if (t->n_busy && t->c.timeout_s > 0 && moe_now() - t->last_rx > t->c.timeout_s) {
        for (size_t i = 0; i < t->n_zr && t->n_busy; i++) {
            zmq_req *z = &t->zr[i];
            if (!z->busy) continue;
            char id[32];
            snprintf(id, sizeof id, "b%" PRIu64, z->serial);
            moe_session_cancel(t->s, id, err);
            rec_fail(z->rec, "timeout: nothing from the server for %.0f s", t->c.timeout_s);
            zmq_end(t, z, done, n_done);
        }
    }
    return MOE_OK;
}

/* ---- the table --------------------------------------------------------------- */

int moe_bench_target_open(moe_bench_target **out, const moe_bench_target_cfg *c, moe_err *err)
{
    *out = NULL;
    moe_bench_target *t = moe_xcalloc(1, sizeof *t);
    t->c = *c;
    t->t0 = moe_now();
    if (c->base_url) {
        t->http = true;
        t->chat = c->endpoint && strstr(c->endpoint, "chat") != NULL;
        size_t bl = strlen(c->base_url);
        while (bl && c->base_url[bl - 1] == '/') bl--;
        t->url = vdup("%.*s%s", (int)bl, c->base_url, c->endpoint ? c->endpoint : "/v1/completions");
        if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
            moe_bench_target_close(t);
            return moe_err_set(err, "curl_global_init failed");
        }
        t->multi = curl_multi_init();
        if (!t->multi) {
            moe_bench_target_close(t);
            return moe_err_set(err, "curl_multi_init failed");
        }
        curl_multi_setopt(t->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
        curl_multi_setopt(t->multi, CURLMOPT_MAXCONNECTS, 4096L);
    } else {
        char ep[512];
        moe_link_curve curve;
        bool curve_on;
        if (moe_auth_client_curve(&curve, &curve_on, c->curve_server_key, c->curve_secret, err) ||
            moe_session_endpoint(c->connect, ep, sizeof ep, err) ||
            moe_session_open(&t->s, ep, "moe-bench", 2000, curve_on ? &curve : NULL, err) ||
            moe_session_hello(t->s, err)) {
            moe_bench_target_close(t);
            return MOE_ERR;
        }
        t->n_zr = ZMQ_SLOTS;
        t->zr = moe_xcalloc(t->n_zr, sizeof *t->zr);
        moe_sampler_cfg_default(&t->sampling);
        t->sampling.set = 0;
        if (moe_sampler_cfg_set(&t->sampling, "temp", "0", err) ||
            (c->ignore_eos && moe_sampler_cfg_set(&t->sampling, "ignore_eos", "1", err))) {
            moe_bench_target_close(t);
            return MOE_ERR;
        }
        t->last_hb = moe_now();
    }
    *out = t;
    return MOE_OK;
}

void moe_bench_target_close(moe_bench_target *t)
{
    if (!t) return;
    if (t->multi) curl_multi_cleanup(t->multi);
    if (t->http) curl_global_cleanup();
    free(t->url);
    moe_session_close(t->s);
    free(t->zr);
    free(t);
}

void moe_bench_target_set_t0(moe_bench_target *t, double t0) { t->t0 = t0; }

int moe_bench_target_submit(moe_bench_target *t, size_t slot, const moe_bench_prompt *p, moe_bench_rec *rec,
                            moe_err *err)
{
    return t->http ? http_submit(t, slot, p, rec, err) : zmq_submit(t, slot, p, rec, err);
}

int moe_bench_target_step(moe_bench_target *t, int timeout_ms, size_t *done, size_t *n_done, moe_err *err)
{
    *n_done = 0;
    return t->http ? http_step(t, timeout_ms, done, n_done, err) : zmq_step(t, timeout_ms, done, n_done, err);
}

/* ---- a vocabulary from /tokenize ----------------------------------------------- */

static const char VOCAB_TEXT[] =
    "The committee met on Tuesday morning to review the quarterly budget, the new hiring plan and the results of "
    "the customer survey. Most members agreed that the engineering team needed two more people before the end of "
    "the year, while the marketing department asked for a larger share of the advertising money. After a long "
    "discussion about travel expenses, office space, software licences and training, the chair proposed a "
    "compromise: every department would submit a short written summary of its needs by Friday, and the committee "
    "would decide at its next meeting. Outside, the weather was cold and grey; a few students crossed the square "
    "with their books, a delivery van stopped in front of the library, and somebody played an old song on a piano "
    "near the station. History, mathematics, chemistry, music, painting, football, cooking and gardening were "
    "among the subjects listed on the board. Numbers such as 12, 345 and 2024 appeared in the report as well.";

typedef struct vbuf {
    char *p;
    size_t n;
    bool over;
} vbuf;

static size_t vbuf_write(char *p, size_t size, size_t nmemb, void *ud)
{
    vbuf *b = ud;
    size_t n = size * nmemb;
    if (b->n + n > ((size_t)1 << 20)) {
        b->over = true;
        return 0;
    }
    b->p = moe_xrealloc(b->p, b->n + n + 1);
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

int moe_bench_http_vocab(const char *base_url, const char *api_key, int32_t **ids, size_t *n, moe_err *err)
{
    *ids = NULL;
    *n = 0;
    size_t bl = strlen(base_url);
    while (bl && base_url[bl - 1] == '/') bl--;
    char *url = vdup("%.*s/tokenize", (int)bl, base_url);
    json_t *o = json_object();
    json_object_set_new(o, "prompt", json_string(VOCAB_TEXT));
    json_object_set_new(o, "content", json_string(VOCAB_TEXT));
    json_object_set_new(o, "add_special_tokens", json_false());
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    CURL *e = curl_easy_init();
    if (!e || !body) {
        free(url);
        free(body);
        if (e) curl_easy_cleanup(e);
        return moe_err_set(err, "curl_easy_init failed");
    }
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (api_key) {
        char auth[600];
        snprintf(auth, sizeof auth, "Authorization: Bearer %.500s", api_key);
        hdr = curl_slist_append(hdr, auth);
    }
    vbuf b = {0};
    char eb[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, vbuf_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, eb);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    curl_slist_free_all(hdr);
    free(body);
    int r = MOE_OK;
    json_t *ans = NULL;
    if (b.over) r = moe_err_set(err, "%s: an answer over 1 MiB", url);
    else if (rc != CURLE_OK) r = moe_err_set(err, "%s: %s", url, eb[0] ? eb : curl_easy_strerror(rc));
    else if (status != 200) r = moe_err_set(err, "%s: HTTP %ld: %.200s", url, status, b.p ? b.p : "");
    else {
        json_error_t je;
        ans = json_loads(b.p ? b.p : "", 0, &je);
        json_t *t = json_is_object(ans) ? json_object_get(ans, "tokens") : NULL;
        size_t k = json_array_size(t);
        if (!json_is_array(t) || !k) r = moe_err_set(err, "%s: no \"tokens\" list in the answer", url);
        int32_t *v = r ? NULL : moe_xmalloc(k * sizeof *v);
        size_t m = 0;
        for (size_t i = 0; !r && i < k; i++) {
            json_t *x = json_array_get(t, i);
            /* llama-server may answer [{"id": n, "piece": ...}] with with_pieces */
            if (json_is_object(x)) x = json_object_get(x, "id");
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX) {
                r = moe_err_set(err, "%s: token %zu is not an id", url, i);
                break;
            }
            v[m++] = (int32_t)json_integer_value(x);
        }
        if (!r) {
            qsort(v, m, sizeof *v, cmp_i32);
            size_t u = 0;
            for (size_t i = 0; i < m; i++)
                if (!u || v[u - 1] != v[i]) v[u++] = v[i];
            *ids = v;
            *n = u;
        } else {
            free(v);
        }
    }
    json_decref(ans);
    free(b.p);
    free(url);
    return r;
}
