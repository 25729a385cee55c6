/*
 * mtp_dump.c — the engine's MTP draft rows for tests/mtp_ref.py, and the
 * MTP step's own invariance.
 *
 *   mtp_dump MODEL.gguf DIR TOKENS [exact|int8]
 *
 * Prefills TOKENS (comma-separated ids) in one step with every row's
 * logits (DIR/trunk.f32), then runs the MTP block on positions 0 .. n-2
 * (the trunk's hidden state of each, the next prompt token) in one MTP
 * step (DIR/mtp.f32: n-1 rows of draft logits).  Checks on its own that
 * the draft rows are bitwise the same when a second sequence (with other
 * batch-mates: the first one's rows again) feeds the prompt in two chunks
 * and the MTP rows in three pieces, as a decode loop would, and that bad
 * MTP items fail alone (a row past the sequence, a bad token).
 * Exit 0 only if every check holds.
 */
#include "check.h"

#include <stdlib.h>

#include "engine.h"

#define MAX_T 128

static int write_rows(const char *dir, const char *name, const float *rows, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(rows, sizeof(float), n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "mtp_dump: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: mtp_dump MODEL.gguf DIR TOKENS [exact|int8]\n");
        return 2;
    }
    int32_t tok[MAX_T];
    int n = 0;
    for (char *s = argv[3], *end; *s && n < MAX_T; s = *end ? end + 1 : end) tok[n++] = (int32_t)strtol(s, &end, 10);
    const bool int8 = argc > 4 && !strcmp(argv[4], "int8");
    moe_err err;
    moe_model *m = NULL;
    if (moe_model_open(&m, argv[1], &err)) {
        fprintf(stderr, "mtp_dump: %s\n", err.msg);
        return 1;
    }
    const int V = m->hp.vocab, D = m->hp.dim;
    moe_engine_opts o;
    moe_engine_opts_default(&o);
    o.max_ctx = MAX_T;
    o.max_seqs = 4;
    o.max_batch_tokens = 2 * MAX_T;
    o.act_q8 = int8;
    o.mtp = true;
    o.n_threads = 2;
    o.par_min_cost = 0;
    moe_engine *e = NULL;
    if (moe_engine_init(&e, m, &o, &err)) {
        fprintf(stderr, "mtp_dump: %s\n", err.msg);
        return 1;
    }
    float *hid = malloc((size_t)MAX_T * D * sizeof(float)), *draft = malloc((size_t)MAX_T * V * sizeof(float));
    int a = -1, b = -1;
    CHECK(moe_engine_seq_new(e, &a, &err) == MOE_OK && moe_engine_seq_new(e, &b, &err) == MOE_OK);
    /* sequence a: the prompt in one step, every row */
    moe_step_item it = {.seq = a, .tokens = tok, .n_tokens = n, .logits = MOE_LOGITS_ALL};
    CHECK_MSG(moe_engine_step(e, &it, 1, &err) == MOE_OK && it.status == MOE_OK, "%s", it.err.msg);
    if (write_rows(argv[2], "trunk.f32", it.out, (size_t)n * V)) return 1;
    int rows = 0;
    memcpy(hid, moe_engine_hidden(e, &rows), (size_t)n * D * sizeof(float));
    CHECK(rows == n);
    moe_mtp_item mi = {.seq = a, .pos = 0, .n = n - 1, .next = tok + 1, .hidden = hid};
    CHECK_MSG(moe_engine_mtp_step(e, &mi, 1, &err) == MOE_OK && mi.status == MOE_OK, "%s", mi.err.msg);
    memcpy(draft, mi.out, (size_t)(n - 1) * V * sizeof(float));
    if (write_rows(argv[2], "mtp.f32", draft, (size_t)(n - 1) * V)) return 1;

    /* sequence b: chunks of k and n - k; MTP rows [0, k-1) after the first,
     * then [k-1, n-2) and [n-2, n-1) after the second (the last as a decode
     * step would add it), beside an MTP row of a */
    const int k = n / 2;
    float *hb = malloc((size_t)MAX_T * D * sizeof(float));
    /* both chunks take the whole prompt's attention path (path_len), as the
     * chunk a cached prefix cuts short does */
    moe_step_item ib = {.seq = b, .tokens = tok, .n_tokens = k, .logits = MOE_LOGITS_LAST, .path_len = n};
    CHECK(moe_engine_step(e, &ib, 1, &err) == MOE_OK && ib.status == MOE_OK);
    memcpy(hb, moe_engine_hidden(e, &rows), (size_t)k * D * sizeof(float));
    moe_mtp_item m1 = {.seq = b, .pos = 0, .n = k - 1, .next = tok + 1, .hidden = hb};
    CHECK(moe_engine_mtp_step(e, &m1, 1, &err) == MOE_OK && m1.status == MOE_OK);
    CHECK_MSG(!memcmp(m1.out, draft, (size_t)(k - 1) * V * sizeof(float)), "first MTP piece differs");
    ib = (moe_step_item){.seq = b, .tokens = tok + k, .n_tokens = n - k, .logits = MOE_LOGITS_LAST, .path_len = n};
    CHECK(moe_engine_step(e, &ib, 1, &err) == MOE_OK && ib.status == MOE_OK);
    memcpy(hb + (size_t)k * D, moe_engine_hidden(e, &rows), (size_t)(n - k) * D * sizeof(float));
    moe_mtp_item two[3] = {
        {.seq = b, .pos = k - 1, .n = n - 1 - k, .next = tok + k, .hidden = hb + (size_t)(k - 1) * D},
        {.seq = a, .pos = n, .n = 1, .next = tok, .hidden = hid}, /* past a's length: its own error */
        {.seq = b, .pos = 0, .n = 1, .next = (const int32_t[]){-1}, .hidden = hb},
    };
    CHECK(moe_engine_mtp_step(e, two, 3, &err) == MOE_OK);
    CHECK(two[0].status == MOE_OK && two[1].status == MOE_ERR && two[2].status == MOE_ERR);
    CHECK_CONTAINS(two[1].err.msg, "not all computed");
    CHECK_CONTAINS(two[2].err.msg, "not in 0..");
    CHECK_MSG(!memcmp(two[0].out, draft + (size_t)(k - 1) * V, (size_t)(n - 1 - k) * V * sizeof(float)),
              "second MTP piece differs");
    moe_mtp_item last = {.seq = b, .pos = n - 2, .n = 1, .next = tok + n - 1, .hidden = hb + (size_t)(n - 2) * D};
    CHECK(moe_engine_mtp_step(e, &last, 1, &err) == MOE_OK && last.status == MOE_OK);
    CHECK_MSG(!memcmp(last.out, draft + (size_t)(n - 2) * V, (size_t)V * sizeof(float)), "last MTP row differs");
    /* a malformed call */
    moe_mtp_item big = {.seq = b, .pos = 0, .n = 3 * MAX_T, .next = tok, .hidden = hb};
    CHECK(moe_engine_mtp_step(e, &big, 1, &err) == MOE_ERR);
    printf("mtp_dump: %d prompt rows, %d MTP rows (%s path), pieces bitwise the whole\n", n, n - 1,
           int8 ? "int8" : "float");
    free(hid);
    free(hb);
    free(draft);
    moe_engine_free(e);
    moe_model_free(m);
    return check_summary("mtp_dump");
}
