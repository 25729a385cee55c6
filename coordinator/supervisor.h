/*
 * supervisor.h — the coordinator runs the worker job (moe-coordinator
 * --launch): starts its command in a session of its own, notices when the
 * job is dead (the launcher exited, or a process the job had when it
 * became ready is gone or a zombie; the loop also reports a rank whose
 * heartbeats stopped, which is the step watchdog, and a job that does not
 * become ready in time), kills every process of that session, and starts
 * the command again after a back-off.  A job that dies before it became
 * ready max_unready times in a row is a crash loop: the supervisor stops
 * and says why (moe_super_failed), rather than spin.
 *
 * The job file (job_file) records the live job.  A coordinator killed
 * before it could stop its job leaves the job running; the next one given
 * the same file and command adopts it (waits for its ranks instead of
 * starting a second job).  moe_super_init refuses a file whose job belongs
 * to a coordinator that still runs.
 *
 * No I/O beyond processes: the loop calls moe_super_tick about every 50 ms
 * and tells it when every rank has said hello (moe_super_ready) and when
 * it found the job dead (moe_super_job_dead).
 */
#ifndef MOE_COORD_SUPERVISOR_H
#define MOE_COORD_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"

typedef struct moe_super moe_super;

typedef struct moe_super_cfg {
    char *const *argv;        /* the job's command, NULL-terminated; "{workers}" in an argument is
                                 replaced by the workers endpoint */
    const char *workers;      /* the endpoint the ranks connect to */
    int max_unready;          /* deaths before ready in a row that stop the restarts (>= 1) */
    double backoff_min_s;     /* the first restart's delay; doubles per death before ready */
    double backoff_max_s;
    double start_timeout_s;   /* a job not ready after this long is dead (a restart: moe_super_start_limit) */
    const char *job_file;     /* names the live job, so that a new coordinator adopts it; NULL: none */
} moe_super_cfg;

typedef enum {
    MOE_SUPER_WAITING = 0,    /* backing off before the next start */
    MOE_SUPER_STARTING,       /* launched, not every rank has said hello */
    MOE_SUPER_RUNNING,
    MOE_SUPER_FAILED,         /* crash loop: no more restarts */
} moe_super_state;

int moe_super_init(moe_super **out, const moe_super_cfg *cfg, moe_err *err);
/* Kills the job's session (every process) and waits for it; NULL is fine. */
void moe_super_free(moe_super *s);

/* Starts the job when its time has come; reaps the launcher.  Returns true
 * (with why) when the job just died by itself (the launcher exited): the
 * loop then replays its requests and calls moe_super_job_dead; also when a
 * process of the running job is gone, or the job is not ready in time. */
bool moe_super_tick(moe_super *s, double now, char *why, size_t why_len);
/* Every rank has said hello: the job is up, the crash count starts again. */
void moe_super_ready(moe_super *s, double now);
/* The job is dead (why is logged): every process of its session is killed,
 * and a restart is scheduled (or, in a crash loop, the supervisor fails). */
void moe_super_job_dead(moe_super *s, const char *why, double now);

/* How long a start may take to be ready before the job is dead: the start
 * timeout, or once a job this supervisor started was ready (in ready_in
 * seconds), MOE_SUPER_RESTART_FACTOR times that, at least
 * MOE_SUPER_RESTART_MIN_S (and at most the start timeout).  A restart
 * that hangs (say, Open MPI's wire-up on a host whose link was still down
 * when it started, which warns "may hang or fail") is then killed and
 * started again within about that long, not after the whole start timeout
 * sized for a first load of the model. */
#define MOE_SUPER_RESTART_FACTOR 4.0
#define MOE_SUPER_RESTART_MIN_S 30.0
double moe_super_start_limit(const moe_super_cfg *cfg, double ready_in);

moe_super_state moe_super_get_state(const moe_super *s);
/* The reason of a failure (crash loop), or NULL. */
const char *moe_super_failed(const moe_super *s);
int64_t moe_super_restarts(const moe_super *s);          /* starts after the first */
/* When the job was last found dead (0: never), and how long the last
 * recovery took, from that to ready (-1: none yet). */
double moe_super_last_death(const moe_super *s);
double moe_super_last_recovery(const moe_super *s);

#endif
