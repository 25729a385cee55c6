/*
 * job.c — the lockstep loop of the worker job (job.h).
 */
#include "job.h"

#include <stdio.h>
#include <string.h>

#include "msg.h"

_Static_assert(MOE_JOB_STEP_BUCKETS == MOE_MSG_STEP_BOUNDS + 1, "a step bucket per protocol bound, and +Inf");

moe_gen_cb moe_source_gen_cb(const moe_source *src)
{
    return (moe_gen_cb){.ctx = src->ctx, .row = src->ops->row, .token = src->ops->token, .prompt = src->ops->prompt, .end = src->ops->end};
}

void moe_job_run(moe_comm *c, moe_gen *g, const moe_source *src, const moe_job_ctl *ctl, volatile sig_atomic_t *stop,
                 double first_step_cost, moe_job_stats *st)
{
    const moe_source_ops *ops = src->ops;
    const int me = moe_comm_rank(c);
    memset(st, 0, sizeof *st);
    moe_steptime times;
    moe_steptime_init(&times, first_step_cost);
    const double t_run = moe_now();
    double t_work = t_run; /* end of the last step with work */
    double t_hold = 0;     /* start of the hold in progress; 0: none */
    int pause_ms = 1;
    bool said_idle = false;
    bool idle = false; /* no step at the last header */
    for (;;) {
        ops->poll(src->ctx, g);
        ops->beat(src->ctx);
        moe_gen_plan p;
        moe_gen_plan_step(g, &p);
        const moe_comm_step_hdr mine = {
            .active = moe_gen_live(g),
            .tokens = p.tokens,
            .prefill = p.prefill,
            .stay = me == 0 && !*stop && ops->stay(src->ctx, moe_now() - t_work),
            .stop = *stop != 0,
            .hold = ops->hold && ops->hold(src->ctx),
            .reconf = me == 0 && ctl && ctl->pending(ctl->ctx, st->steps),
            .tokens_max = p.tokens,
        };
        moe_comm_step_hdr job;
        moe_comm_step_header(c, &mine, idle, &job);
        idle = !job.active || job.hold;
        if (job.stop) break; /* SIGTERM on any rank ends the job, together */
        /* between steps, on every rank at this same turn: the steps taken
         * so far are the same number everywhere */
        if (job.reconf) ctl->apply(ctl->ctx, st->steps);
        if (job.hold) {
            /* a rank cannot send: nobody steps (a step would make frames
             * it must keep), everyone goes on polling, flushing, beating */
            const double now = moe_now();
            if (t_hold == 0) {
                t_hold = now;
                if (me == 0) fprintf(stderr, "moe-worker: holding: %lld ranks cannot reach the coordinator\n", (long long)job.hold);
            }
            ops->idle(src->ctx, pause_ms);
            if (pause_ms < 20) pause_ms *= 2;
            continue;
        }
        if (t_hold > 0) {
            st->hold_seconds += moe_now() - t_hold;
            if (me == 0) fprintf(stderr, "moe-worker: resumed after holding %.1f s\n", moe_now() - t_hold);
            t_hold = 0;
        }
        if (!job.active) {
            if (!job.stay) break;
            if (!said_idle && me == 0) {
                fprintf(stderr, "moe-worker: idle (%d ranks)%s\n", moe_comm_size(c),
                        ops->serves ? ", waiting for work" : "");
                said_idle = true;
            }
            /* a header every few ms, growing to 20 ms, is all idling costs;
             * that is also the longest new work waits to be noticed */
            ops->idle(src->ctx, pause_ms);
            if (pause_ms < 20) pause_ms *= 2;
            continue;
        }
        pause_ms = 1;
        if (ops->busy) ops->busy(src->ctx, moe_steptime_expect(&times, job.tokens_max));
        const double t_step = moe_now();
        moe_err err = {{0}};
        if (moe_gen_step(g, &err)) moe_comm_abort(c, 5, err.msg); /* malformed step: a bug */
        st->steps++;
        st->tok_prefill += p.prefill;
        st->tok_decode += p.tokens - p.prefill;
        t_work = moe_now();
        moe_steptime_add(&times, job.tokens_max, t_work - t_step);
        if (ops->busy) ops->busy(src->ctx, 0);
        st->step_buckets[moe_msg_step_bucket(t_work - t_step)]++;
        st->step_seconds += t_work - t_step;
        if (job.prefill == 0) { /* a decode-only step of the whole job */
            st->decode_steps++;
            st->decode_tokens += job.tokens;
            st->decode_seconds += t_work - t_step;
        }
    }
    st->seconds = moe_now() - t_run;
}
