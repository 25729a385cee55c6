/*
 * prep.h — prompt preparation off the loop: a small pool of threads that
 * turns a large request's spec into tokens and a moe_request
 * (moe_request_new: tokenization, chat rendering, checks), so that work
 * growing with the input never holds up the coordinator's loop.  A 1 MiB
 * prompt takes tens of milliseconds to tokenize; a 4-token request that
 * arrives meanwhile is still answered at once.
 *
 *   job = moe_prep_submit(p, &spec, &model, owner);   // NULL: max_jobs pending
 *   ... the loop polls moe_prep_fd(p) (an eventfd) with its sockets ...
 *   while ((job = moe_prep_done(p))) { use job->code, job->q, job->toks; moe_prep_job_free(job); }
 *
 * The spec is copied whole (strings, ids, chat messages, stop strings) and
 * the model's limits with it, so nothing the job reads changes under it;
 * the tokenizer and the chat template are shared (immutable after load).
 * Jobs finish in any order.  The loop owns a job again once moe_prep_done
 * returns it; a job it no longer wants (its client went away) it simply
 * frees then.
 */
#ifndef MOE_COORD_PREP_H
#define MOE_COORD_PREP_H

#include <stddef.h>

#include "request.h"

typedef struct moe_prep moe_prep;

typedef struct moe_prep_job {
    void *owner;              /* the loop's */
    /* out, once done: */
    int code;                 /* MOE__CODE__OK, or why the request is refused (err) */
    moe_request *q;           /* when OK (then the loop's: set to NULL when taken) */
    moe_tokens toks;          /* the prompt's ids when OK */
    moe_err err;
    double seconds;           /* time spent in moe_request_new */
    /* private */
    moe_request_spec spec;
    moe_request_model model;
    char *arena;              /* the spec's strings and arrays */
} moe_prep_job;

/* n_threads workers (1..16, core/bgpool), at most max_jobs submitted and
 * not yet freed (1..4096).  Every call but the pool's own work is the loop's. */
int moe_prep_init(moe_prep **out, int n_threads, int max_jobs, moe_err *err);
/* Stops the threads (a job being prepared finishes first) and frees every
 * job the loop has not taken. */
void moe_prep_free(moe_prep *p);

/* A job for spec (copied) checked against m (copied); NULL when max_jobs
 * are pending. */
moe_prep_job *moe_prep_submit(moe_prep *p, const moe_request_spec *spec, const moe_request_model *m, void *owner);
/* Readable when a finished job waits; poll it with the loop's sockets. */
int moe_prep_fd(const moe_prep *p);
/* The next finished job, or NULL (then the descriptor is quiet again). */
moe_prep_job *moe_prep_done(moe_prep *p);
/* Frees a job moe_prep_done returned, and its request and tokens unless taken. */
void moe_prep_job_free(moe_prep *p, moe_prep_job *j);
int moe_prep_pending(const moe_prep *p);

/* The bytes of a request's prompt as sent: text, 4 per id, chat contents
 * and roles.  What the per-client byte rate counts and what decides
 * whether a request is prepared on the loop or in the pool. */
size_t moe_request_spec_bytes(const moe_request_spec *spec);

#endif
