/*
 * recorder.c — the expert distribution recorder's endpoints (recorder.h).
 */
#include "recorder.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "openai.h"

struct moe_recorder {
    moe_recorder_cfg cfg;
    char *dir;
    moe_exprec *rec;          /* the current or last recording; NULL: none yet */
    moe_exprec_mode mode;
    int window;
    bool on;
    uint64_t rank_dropped;    /* rows the ranks could not keep */
    unsigned dumps;
};

int moe_recorder_init(moe_recorder **out, const moe_recorder_cfg *cfg, moe_err *err)
{
    *out = NULL;
    if (moe_exprec_shape_check(&cfg->shape, err)) return MOE_ERR;
    moe_recorder *r = moe_xcalloc(1, sizeof *r);
    r->cfg = *cfg;
    r->dir = moe_xstrdup(cfg->dir ? cfg->dir : "/tmp");
    *out = r;
    return MOE_OK;
}

void moe_recorder_free(moe_recorder *r)
{
    if (!r) return;
    moe_exprec_free(r->rec);
    free(r->dir);
    free(r);
}

static char *error(int *status, int http, const char *param, const char *msg)
{
    moe_oai_error e;
    moe_oai_error_set(&e, http, "invalid_value", param, "%s", msg);
    *status = http;
    return moe_oai_error_json(&e);
}

static char *dumps(json_t *o, int *status)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    *status = 200;
    return s;
}

/* start's body: mode and window_steps, each optional. */
static char *start(moe_recorder *r, const char *body, size_t len, int *status, int *ranks_on)
{
    moe_exprec_mode mode = r->cfg.mode;
    json_int_t window = r->cfg.window;
    if (len > 0) {
        json_error_t je;
        json_t *o = json_loadb(body, len, 0, &je);
        if (!o || !json_is_object(o)) {
            json_decref(o);
            return error(status, 400, NULL, "the body is not a JSON object (or leave it empty)");
        }
        const json_t *m = json_object_get(o, "mode"), *w = json_object_get(o, "window_steps");
        moe_err err;
        if (m && !json_is_null(m) && (!json_is_string(m) || moe_exprec_mode_parse(json_string_value(m), &mode, &err))) {
            json_decref(o);
            return error(status, 400, "mode", "mode must be \"stat\" or \"per_token\"");
        }
        if (w && !json_is_null(w) && (!json_is_integer(w) || json_integer_value(w) < 1 || json_integer_value(w) > (1 << 30))) {
            json_decref(o);
            return error(status, 400, "window_steps", "window_steps must be an integer in 1..2^30");
        }
        if (w && json_is_integer(w)) window = json_integer_value(w);
        json_decref(o);
    }
    moe_exprec *rec;
    moe_err err;
    if (moe_exprec_init(&rec, mode, &r->cfg.shape, (int)window, r->cfg.max_bytes, &err))
        return error(status, 400, NULL, err.msg); /* the shape was checked at init: not reached */
    moe_exprec_free(r->rec); /* a start begins afresh, as SGLang's does */
    r->rec = rec;
    r->mode = mode;
    r->window = (int)window;
    r->on = true;
    r->rank_dropped = 0;
    *ranks_on = 1;
    return dumps(json_pack("{s:s, s:s, s:I}", "status", "ok", "mode", moe_exprec_mode_name(mode), "window_steps",
                           (json_int_t)(mode == MOE_EXPREC_STAT ? window : 0)),
                 status);
}

static json_t *totals_json(const moe_recorder *r)
{
    moe_exprec_totals t;
    moe_exprec_totals_get(r->rec, &t);
    return json_pack("{s:s, s:b, s:I, s:I, s:I, s:I}", "mode", moe_exprec_mode_name(r->mode), "recording", r->on, "rows",
                     (json_int_t)t.rows, "picks", (json_int_t)t.picks, "records", (json_int_t)t.records, "dropped",
                     (json_int_t)(t.dropped + r->rank_dropped));
}

char *moe_recorder_call(moe_recorder *r, moe_recorder_op op, const char *body, size_t len, int *status, int *ranks_on)
{
    *ranks_on = -1;
    switch (op) {
    case MOE_RECORDER_START: return start(r, body, len, status, ranks_on);
    case MOE_RECORDER_STOP: {
        if (!r->rec) return error(status, 400, NULL, "nothing is recording: POST /start_expert_distribution_record first");
        r->on = false;
        *ranks_on = 0;
        json_t *o = totals_json(r);
        json_object_set_new(o, "status", json_string("ok"));
        return dumps(o, status);
    }
    case MOE_RECORDER_DUMP: {
        if (!r->rec) return error(status, 400, NULL, "nothing was recorded: POST /start_expert_distribution_record first");
        char path[4096];
        snprintf(path, sizeof path, "%s/expert_distribution_%s_%lld_%u.bin", r->dir, moe_exprec_mode_name(r->mode),
                 (long long)time(NULL), ++r->dumps);
        moe_err err;
        if (moe_exprec_write(r->rec, path, &err)) {
            moe_oai_error e;
            moe_oai_error_set(&e, 500, "dump_failed", NULL, "%s", err.msg);
            *status = 500;
            return moe_oai_error_json(&e);
        }
        moe_log(MOE_LOG_INFO, "expert distribution record dumped to %s", path);
        json_t *o = totals_json(r);
        json_object_set_new(o, "status", json_string("ok"));
        json_object_set_new(o, "file", json_string(path));
        return dumps(o, status);
    }
    }
    return error(status, 404, NULL, "no such recorder operation");
}

void moe_recorder_rows(moe_recorder *r, int rank, const uint8_t *data, size_t rows, int top_k, uint64_t dropped)
{
    if (!r->rec || !r->on) return; /* rows in flight when it stopped */
    r->rank_dropped += dropped;
    moe_err err;
    if (top_k != r->cfg.shape.top_k)
        MOE_LOG_LIMITED(MOE_LOG_WARN, "rank %d: recorder rows of top-%d, the model's is %d (dropped)", rank, top_k,
                        r->cfg.shape.top_k);
    else if (moe_exprec_add(r->rec, data, rows, &err))
        MOE_LOG_LIMITED(MOE_LOG_WARN, "rank %d: recorder rows dropped: %s", rank, err.msg);
}
