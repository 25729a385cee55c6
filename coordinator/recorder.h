/*
 * recorder.h — the expert distribution recorder at the coordinator
 * (SGLang's endpoints: POST /start_expert_distribution_record,
 * /stop_expert_distribution_record, /dump_expert_distribution_record;
 * docs/routing.md).  No I/O but the file a dump writes: the loop turns the
 * ranks on and off (moe_workers_record) as the answer says, and feeds the
 * rows they send.
 */
#ifndef MOE_COORD_RECORDER_H
#define MOE_COORD_RECORDER_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "exprec.h"

typedef struct moe_recorder moe_recorder;

typedef struct moe_recorder_cfg {
    const char *dir;          /* where dumps go */
    moe_exprec_mode mode;     /* a start's default mode ... */
    int window;               /* ... and stat window in steps */
    size_t max_bytes;         /* what one recording keeps (rows or windows) */
    moe_exprec_shape shape;   /* the model's and the job's */
} moe_recorder_cfg;

int moe_recorder_init(moe_recorder **out, const moe_recorder_cfg *cfg, moe_err *err);
void moe_recorder_free(moe_recorder *r);

typedef enum { MOE_RECORDER_START = 0, MOE_RECORDER_STOP, MOE_RECORDER_DUMP } moe_recorder_op;

/* One endpoint: body is the request's (JSON or empty; start takes
 * {"mode": "stat"|"per_token", "window_steps": N}).  Returns the answer's
 * JSON (free() it) with *status its HTTP status, and *ranks_on 1 (turn the
 * ranks on), 0 (off) or -1 (leave them). */
char *moe_recorder_call(moe_recorder *r, moe_recorder_op op, const char *body, size_t len, int *status, int *ranks_on);
/* Rows from a rank (kept only while recording). */
void moe_recorder_rows(moe_recorder *r, int rank, const uint8_t *data, size_t rows, int top_k, uint64_t dropped);

#endif
