/*
 * eplb_json.c — moe-route eplb IN.jsonl OUT.jsonl: one case a line
 *   {"weight": [[...], ...], "num_replicas": P, "num_groups": G,
 *    "num_nodes": N, "num_gpus": R}
 * and one result a line with eplb.py's names
 *   {"phy2log": [[...]], "log2phy": [[[...]]], "logcnt": [[...]]}
 * (log2phy padded with -1 to the largest count).  A bad line is an error
 * naming it; nothing is written for it and the command fails.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "route.h"

static int get_int(json_t *o, const char *key, int *out, moe_err *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) return moe_err_set(err, "'%s' is missing or not an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < -((json_int_t)1 << 30) || x > ((json_int_t)1 << 30)) return moe_err_set(err, "'%s' is out of range", key);
    *out = (int)x;
    return MOE_OK;
}

static json_t *int_array(const int32_t *a, size_t n)
{
    json_t *j = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(j, json_integer(a[i]));
    return j;
}

static int one_case(json_t *c, FILE *out, moe_err *err)
{
    if (!json_is_object(c)) return moe_err_set(err, "not a JSON object");
    moe_eplb_params q;
    if (get_int(c, "num_replicas", &q.num_replicas, err) || get_int(c, "num_groups", &q.num_groups, err) ||
        get_int(c, "num_nodes", &q.num_nodes, err) || get_int(c, "num_gpus", &q.num_gpus, err))
        return MOE_ERR;
    json_t *w = json_object_get(c, "weight");
    if (!json_is_array(w) || json_array_size(w) == 0) return moe_err_set(err, "'weight' is not a non-empty array");
    const size_t L = json_array_size(w);
    json_t *row0 = json_array_get(w, 0);
    if (!json_is_array(row0)) return moe_err_set(err, "'weight' is not an array of arrays");
    const size_t E = json_array_size(row0);
    if (E == 0 || E > MOE_EPLB_MAX_EXPERTS || L > MOE_EPLB_MAX_CELLS / E)
        return moe_err_set(err, "'weight' is %zu × %zu", L, E);
    float *wt = moe_xmalloc(L * E * sizeof *wt);
    for (size_t l = 0; l < L; l++) {
        json_t *row = json_array_get(w, l);
        if (!json_is_array(row) || json_array_size(row) != E) {
            free(wt);
            return moe_err_set(err, "'weight' row %zu does not have %zu numbers", l, E);
        }
        for (size_t e = 0; e < E; e++) {
            json_t *v = json_array_get(row, e);
            if (!json_is_number(v)) {
                free(wt);
                return moe_err_set(err, "'weight'[%zu][%zu] is not a number", l, e);
            }
            wt[l * E + e] = (float)json_number_value(v);
        }
    }
    moe_eplb_result r;
    int rc = moe_eplb_rebalance(&r, wt, (int)L, (int)E, &q, err);
    free(wt);
    if (rc) return MOE_ERR;
    json_t *o = json_object(), *p2l = json_array(), *l2p = json_array(), *cnt = json_array();
    for (int l = 0; l < r.n_layer; l++) {
        json_array_append_new(p2l, int_array(r.phy2log + (size_t)l * (size_t)r.n_phy, (size_t)r.n_phy));
        json_array_append_new(cnt, int_array(r.logcnt + (size_t)l * (size_t)r.n_log, (size_t)r.n_log));
        json_t *le = json_array();
        for (int e = 0; e < r.n_log; e++)
            json_array_append_new(le, int_array(r.log2phy + ((size_t)l * (size_t)r.n_log + (size_t)e) * (size_t)r.max_cnt,
                                                (size_t)r.max_cnt));
        json_array_append_new(l2p, le);
    }
    json_object_set_new(o, "phy2log", p2l);
    json_object_set_new(o, "log2phy", l2p);
    json_object_set_new(o, "logcnt", cnt);
    moe_eplb_result_free(&r);
    rc = json_dumpf(o, out, JSON_COMPACT) || fputc('\n', out) == EOF ? moe_err_set(err, "write failed") : MOE_OK;
    json_decref(o);
    return rc;
}

int route_eplb_jsonl(const char *in_path, const char *out_path, moe_err *err)
{
    char *buf;
    size_t n;
    if (moe_file_read(in_path, (size_t)1 << 30, &buf, &n, err)) return MOE_ERR;
    FILE *out = strcmp(out_path, "-") ? fopen(out_path, "w") : stdout;
    if (!out) {
        free(buf);
        return moe_err_set(err, "%s: %s", out_path, strerror(errno));
    }
    int rc = MOE_OK, line = 0, cases = 0;
    for (size_t a = 0; a < n && !rc;) {
        size_t b = a;
        while (b < n && buf[b] != '\n') b++;
        line++;
        size_t s = a;
        while (s < b && (buf[s] == ' ' || buf[s] == '\t' || buf[s] == '\r')) s++;
        if (s < b) {
            json_error_t je;
            json_t *c = json_loadb(buf + s, b - s, JSON_REJECT_DUPLICATES, &je);
            if (!c) rc = moe_err_set(err, "%s line %d: %s", in_path, line, je.text);
            else {
                if (one_case(c, out, err)) rc = moe_err_prefix(err, "%s line %d", in_path, line);
                json_decref(c);
                cases++;
            }
        }
        a = b + 1;
    }
    free(buf);
    if (out != stdout && fclose(out) && !rc) rc = moe_err_set(err, "%s: write failed", out_path);
    if (!rc && cases == 0) rc = moe_err_set(err, "%s: no cases", in_path);
    return rc;
}
