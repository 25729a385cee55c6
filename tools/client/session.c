/*
 * session.c — the client side of the protocol over one DEALER (session.h).
 */
#include "session.h"

#include <stdlib.h>
#include <string.h>

struct moe_session {
    moe_link_ctx *ctx;
    moe_link *link;
    char *name;
    uint64_t hb_seq;
};

int moe_session_endpoint(const char *in, char *out, size_t cap, moe_err *err)
{
    static const char *const schemes[] = {"tcp://", "ipc://", "inproc://"};
    const size_t n = strlen(in);
    if (n == 0) return moe_err_set(err, "empty endpoint");
    for (size_t k = 0; k < sizeof schemes / sizeof *schemes; k++)
        if (!strncmp(in, schemes[k], strlen(schemes[k]))) {
            if (n + 1 > cap) return moe_err_set(err, "endpoint longer than %zu bytes", cap - 1);
            memcpy(out, in, n + 1);
            return MOE_OK;
        }
    /* HOST:PORT, the port a decimal number in 1..65535 */
    const char *colon = strrchr(in, ':');
    bool hostport = colon && colon > in && !strstr(in, "://");
    long port = 0;
    for (const char *p = colon ? colon + 1 : ""; hostport && *p; p++) {
        hostport = *p >= '0' && *p <= '9' && port <= 65535;
        port = port * 10 + (*p - '0');
    }
    if (hostport && port >= 1 && port <= 65535) {
        if (n + 7 > cap) return moe_err_set(err, "endpoint longer than %zu bytes", cap - 7);
        memcpy(out, "tcp://", 6);
        memcpy(out + 6, in, n + 1);
        return MOE_OK;
    }
    return moe_err_set(err, "'%.200s' is not a ZMQ endpoint: give HOST:PORT (tcp:// is implied), tcp://HOST:PORT, "
                            "ipc:///PATH or inproc://NAME",
                       in);
}

int moe_session_open(moe_session **out, const char *endpoint, const char *client_name, int send_timeout_ms,
                     const moe_link_curve *curve, moe_err *err)
{
    *out = NULL;
    moe_session *s = moe_xcalloc(1, sizeof *s);
    s->name = moe_xstrdup(client_name);
    moe_link_opts o;
    moe_link_opts_default(&o, &moe__server_msg__descriptor);
    o.send_timeout_ms = send_timeout_ms;
    o.curve = curve;
    if (moe_link_ctx_init(&s->ctx, err) || moe_link_connect(&s->link, s->ctx, endpoint, &o, err)) {
        moe_session_close(s);
        return MOE_ERR;
    }
    *out = s;
    return MOE_OK;
}

void moe_session_close(moe_session *s)
{
    if (!s) return;
    moe_link_close(s->link);
    moe_link_ctx_free(s->ctx);
    free(s->name);
    free(s);
}

static int send_env(moe_session *s, Moe__ClientMsg *m, int flags, moe_err *err)
{
    return moe_link_send(s->link, NULL, &m->base, flags, err);
}

int moe_session_hello(moe_session *s, moe_err *err)
{
    Moe__Hello h = MOE__HELLO__INIT;
    h.has_protocol_version = 1;
    h.protocol_version = MOE_PROTO_VERSION;
    h.client_name = s->name;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_HELLO;
    m.hello = &h;
    return send_env(s, &m, MOE_LINK_DONTWAIT, err);
}

int moe_session_heartbeat(moe_session *s, char **ids, size_t n_ids, moe_err *err)
{
    Moe__Heartbeat h = MOE__HEARTBEAT__INIT;
    h.n_request_ids = n_ids;
    h.request_ids = ids;
    h.has_seq = 1;
    h.seq = s->hb_seq++; /* a probe number, whether or not this one gets out */
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_HEARTBEAT;
    m.heartbeat = &h;
    return send_env(s, &m, MOE_LINK_DONTWAIT, err);
}

int moe_session_cancel(moe_session *s, const char *request_id, moe_err *err)
{
    Moe__Cancel c = MOE__CANCEL__INIT;
    c.request_id = (char *)request_id;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_CANCEL;
    m.cancel = &c;
    return send_env(s, &m, 0, err);
}

/* Only what the caller set: the server's defaults stay the server's. */
static bool sampling_fill(Moe__Sampling *s, const moe_sampler_cfg *c)
{
    if (!c || !c->set) return false;
#define GIVEN(p) ((c->set >> (p)) & 1u)
    if (GIVEN(MOE_SP_TEMP)) s->has_temperature = 1, s->temperature = c->temperature;
    if (GIVEN(MOE_SP_TOP_P)) s->has_top_p = 1, s->top_p = c->top_p;
    if (GIVEN(MOE_SP_TOP_K)) s->has_top_k = 1, s->top_k = c->top_k;
    if (GIVEN(MOE_SP_MIN_P)) s->has_min_p = 1, s->min_p = c->min_p;
    if (GIVEN(MOE_SP_REPEAT_PENALTY)) s->has_repetition_penalty = 1, s->repetition_penalty = c->repeat_penalty;
    if (GIVEN(MOE_SP_REPEAT_LAST_N)) s->has_repeat_last_n = 1, s->repeat_last_n = c->repeat_last_n;
    if (GIVEN(MOE_SP_SEED)) s->has_seed = 1, s->seed = c->seed;
    if (GIVEN(MOE_SP_MIN_TOKENS)) s->has_min_tokens = 1, s->min_tokens = c->min_tokens;
    if (GIVEN(MOE_SP_IGNORE_EOS)) s->has_ignore_eos = 1, s->ignore_eos = c->ignore_eos;
#undef GIVEN
    return true;
}

int moe_session_generate(moe_session *s, const moe_session_gen *q, moe_err *err)
{
    Moe__GenerateRequest g = MOE__GENERATE_REQUEST__INIT;
    Moe__TokenIds tids = MOE__TOKEN_IDS__INIT;
    Moe__Chat chat = MOE__CHAT__INIT;
    Moe__ChatMessage *cms = NULL, **cmp = NULL;
    Moe__Sampling smp = MOE__SAMPLING__INIT;
    g.request_id = (char *)q->id;
    if (q->prompt == MOE_SESSION_CHAT) {
        const size_t n = q->chat->n;
        cms = moe_xcalloc(n ? n : 1, sizeof *cms);
        cmp = moe_xcalloc(n ? n : 1, sizeof *cmp);
        for (size_t i = 0; i < n; i++) {
            moe__chat_message__init(&cms[i]);
            cms[i].role = (char *)q->chat->msgs[i].role;
            cms[i].content = (char *)q->chat->msgs[i].content;
            cmp[i] = &cms[i];
        }
        chat.n_messages = n;
        chat.messages = cmp;
        /* Unset is the protocol's default (true), as it is the conversation
         * file's (core/chat.h): only a file's explicit false is sent. */
        if (!q->chat->add_generation_prompt) {
            chat.has_add_generation_prompt = 1;
            chat.add_generation_prompt = 0;
        }
        g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_CHAT;
        g.chat = &chat;
    } else if (q->prompt == MOE_SESSION_IDS) {
        tids.n_ids = q->n_ids;
        tids.ids = (int32_t *)q->ids;
        g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_IDS;
        g.ids = &tids;
    } else {
        g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_TEXT;
        g.text = (char *)q->text;
    }
    if (sampling_fill(&smp, q->sampling)) g.sampling = &smp;
    if (q->max_tokens > 0 || (q->max_tokens == 0 && q->prompt_logprobs && q->logprobs >= 0))
        g.has_max_tokens = 1, g.max_tokens = q->max_tokens; /* 0: a scored prompt */
    if (q->logprobs >= 0) g.has_logprobs = 1, g.logprobs = (uint32_t)q->logprobs;
    if (q->prompt_logprobs) g.has_prompt_logprobs = 1, g.prompt_logprobs = 1;
    if (q->routed) g.has_return_routed_experts = 1, g.return_routed_experts = 1;
    if (q->routed && q->routed_weights) g.has_return_routed_expert_weights = 1, g.return_routed_expert_weights = 1;
    if (q->deadline_ms > 0) g.has_deadline_ms = 1, g.deadline_ms = q->deadline_ms;
    g.n_stop = q->n_stop;
    g.stop = (char **)q->stop;
    g.n_stop_ids = q->n_stop_ids;
    g.stop_ids = (int32_t *)q->stop_ids;
    if (q->no_stream) g.has_stream = 1, g.stream = 0;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_GENERATE;
    m.generate = &g;
    const int rc = send_env(s, &m, MOE_LINK_DONTWAIT, err);
    free(cms);
    free(cmp);
    return rc;
}

int moe_session_recv(moe_session *s, moe_link_in *in, moe_err *err)
{
    return moe_link_recv(s->link, in, MOE_LINK_DONTWAIT, err);
}

int moe_session_poll(moe_session *s, bool want_out, int fd, int timeout_ms, bool *in, bool *fd_in, moe_err *err)
{
    moe_link_poll_item it[2] = {{.link = s->link, .want_out = want_out}, {.fd = fd}};
    const int n = moe_link_poll(it, fd >= 0 ? 2 : 1, timeout_ms, err);
    if (n < 0) return MOE_ERR;
    *in = it[0].in;
    if (fd_in) *fd_in = fd >= 0 && it[1].in;
    return MOE_OK;
}
