/*
 * exprec.h — expert distribution records: the binary files of the
 * recorder (`POST /dump_expert_distribution_record`, `moe-worker --record`),
 * read back by `moe-route` and by numpy (docs/routing.md, "The recorder").
 *
 * A row is one (token, MoE layer) as the gate routed it, packed
 * little-endian in MOE_EXPREC_ROW_BYTES(K) bytes:
 *
 *   u32 step     the job's step (every rank counts the same steps)
 *   i32 token    the token id fed at that position
 *   i32 pos      its position in the sequence
 *   u16 layer    the block index
 *   u16 home     the rank that holds the sequence
 *   i64 req      the request (the rank's sequence id)
 *   i16 experts[K]  ascending
 *   u16 ranks[K]    the rank that ran each
 *   f32 weights[K]  the gate weights
 *
 * Ranks pack rows as they route (worker/xchg.c); the coordinator and
 * moe-worker's batch mode feed them to an accumulator of one of two modes
 * and write a file: a 64-byte header (below), then
 *   stat:      u64 counts[windows][layers][experts]: picks of each expert
 *              in each window of window_steps steps (window w covers steps
 *              first_step + w·window_steps ...);
 *   per_token: the rows, records of them.
 * Everything read is checked (magic, version, mode, shapes, sizes with
 * overflow-safe arithmetic) before use.
 */
#ifndef MOE_CORE_EXPREC_H
#define MOE_CORE_EXPREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define MOE_EXPREC_MAGIC "MOEEXPD"   /* 8 bytes with the NUL */
#define MOE_EXPREC_VERSION 1
#define MOE_EXPREC_HEADER 64
#define MOE_EXPREC_MAX_K 64
#define MOE_EXPREC_MAX_LAYERS 4096
#define MOE_EXPREC_MAX_EXPERTS 65536
#define MOE_EXPREC_ROW_BYTES(k) (24 + 8 * (size_t)(k))

typedef enum { MOE_EXPREC_STAT = 1, MOE_EXPREC_PER_TOKEN = 2 } moe_exprec_mode;

/* "stat" / "per_token" -> mode; MOE_ERR for another name. */
int moe_exprec_mode_parse(const char *s, moe_exprec_mode *mode, moe_err *err);
const char *moe_exprec_mode_name(moe_exprec_mode m);

/* The shape every row and file of one job has. */
typedef struct moe_exprec_shape {
    int layers;        /* MoE layers, 1..MOE_EXPREC_MAX_LAYERS */
    int first_layer;   /* block index of the first */
    int experts;       /* 1..MOE_EXPREC_MAX_EXPERTS */
    int top_k;         /* 1..MOE_EXPREC_MAX_K */
    int ranks;         /* of the job, 1..65535 */
} moe_exprec_shape;

int moe_exprec_shape_check(const moe_exprec_shape *s, moe_err *err);

/* One row unpacked (experts, ranks, weights: top_k each). */
typedef struct moe_exprec_row {
    uint32_t step;
    int32_t token, pos;
    int layer, home;
    int64_t req;
    const int32_t *experts, *ranks;
    const float *weights;
} moe_exprec_row;

/* Packs r at out (MOE_EXPREC_ROW_BYTES(k) bytes). */
void moe_exprec_pack(const moe_exprec_row *r, int k, uint8_t *out);
/* Unpacks the row at in: experts, ranks, weights into the caller's arrays
 * of k (row->experts etc. point at them). */
void moe_exprec_unpack(const uint8_t *in, int k, moe_exprec_row *row, int32_t *experts, int32_t *ranks,
                       float *weights);

/* An accumulator of rows of one mode, bounded: rows (per_token) or
 * windows × layers × experts counts (stat) beyond max_bytes are not kept
 * and counted as dropped. */
typedef struct moe_exprec moe_exprec;

int moe_exprec_init(moe_exprec **out, moe_exprec_mode mode, const moe_exprec_shape *s, int window_steps,
                    size_t max_bytes, moe_err *err);
void moe_exprec_free(moe_exprec *r);
/* Adds n packed rows (n × MOE_EXPREC_ROW_BYTES(top_k) bytes) from a rank.
 * MOE_ERR (nothing added) if a row is out of the shape (layer, experts,
 * ranks) — rows come from another process. */
int moe_exprec_add(moe_exprec *r, const uint8_t *rows, size_t n, moe_err *err);

typedef struct moe_exprec_totals {
    uint64_t rows;     /* (token, layer) rows added */
    uint64_t picks;    /* rows × top_k */
    uint64_t dropped;  /* rows not kept (over the bound) */
    uint64_t records;  /* what the file will hold: windows (stat) or rows (per_token) */
} moe_exprec_totals;
void moe_exprec_totals_get(const moe_exprec *r, moe_exprec_totals *t);

/* Writes the file (to path.tmp, then renamed: a reader never sees half). */
int moe_exprec_write(const moe_exprec *r, const char *path, moe_err *err);

/* A file read back: the header's fields and the body, borrowed from buf. */
typedef struct moe_exprec_file {
    moe_exprec_mode mode;
    moe_exprec_shape shape;
    uint32_t window_steps;
    uint64_t records;
    uint64_t first_step;  /* stat */
    uint64_t dropped;
    const uint8_t *body;  /* stat: u64 LE counts; per_token: packed rows */
} moe_exprec_file;

/* true if buf starts with the magic (a binary record, not a text trace). */
bool moe_exprec_is(const uint8_t *buf, size_t len);
/* Checks the header and that the body is exactly what it announces. */
int moe_exprec_parse(moe_exprec_file *f, const uint8_t *buf, size_t len, moe_err *err);
/* stat: counts[window][layer][expert] of a parsed file (LE on any host). */
uint64_t moe_exprec_count(const moe_exprec_file *f, uint64_t window, int layer, int expert);

#endif
