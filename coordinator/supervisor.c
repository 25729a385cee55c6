/*
 * supervisor.c — runs the worker job's command (see supervisor.h).
 *
 * The job runs in a session of its own (setsid in the child), so its id is
 * the launcher's pid; Open MPI gives each local rank a process group of its
 * own inside it, so killing the group is not enough: every process whose
 * session is the job's is found in /proc and killed.  The coordinator is a
 * child subreaper, so ranks orphaned by a dead mpirun become its children
 * and are reaped here, not left as zombies.
 *
 * The job file (cfg.job_file) names the live job: its launcher's pid and
 * start time.  A coordinator killed without a chance to stop its job
 * leaves it behind; the next one on the same endpoints finds the file,
 * checks that the process is that job (same start time, a session leader,
 * our user, the same command line) and adopts it: it waits for its ranks
 * to say hello instead of starting a second job, and watches the launcher
 * through /proc since it is no longer our child.
 */
#include "supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct moe_super {
    moe_super_cfg cfg;
    char **argv;              /* cfg.argv with {workers} replaced */
    moe_super_state state;
    pid_t pid;                /* the launcher = the session id; 0: none */
    bool adopted;             /* pid is a previous coordinator's job: not our child */
    double next_start;        /* WAITING: when */
    double started;           /* STARTING: since when */
    int unready;              /* deaths before ready, in a row */
    double ready_in;          /* how long the first job this supervisor started took to be ready (0: none yet) */
    int64_t starts;
    double last_death, last_recovery;
    pid_t watch[64];          /* RUNNING: the job's processes when it became ready */
    int n_watch;
    double t_watch;
    char failed[256];
};

static char *substitute(const char *arg, const char *workers)
{
    static const char key[] = "{workers}";
    const char *at = strstr(arg, key);
    if (!at) return moe_xstrdup(arg);
    const size_t pre = (size_t)(at - arg), wl = strlen(workers), post = strlen(at + sizeof key - 1);
    char *s = moe_xmalloc(pre + wl + post + 1);
    memcpy(s, arg, pre);
    memcpy(s + pre, workers, wl);
    memcpy(s + pre + wl, at + sizeof key - 1, post + 1);
    return s;
}

/* What /proc/PID/stat says of a process: its state letter, session and
 * start time (clock ticks since boot); false when it is not there. */
typedef struct {
    char state;
    long session;
    unsigned long long start;
} proc_info;

static bool proc_stat(long pid, proc_info *pi)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    const size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = 0;
    /* pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime cutime cstime priority nice threads
     * itrealvalue starttime ...; comm may hold anything, but the last ')' ends it */
    const char *rp = strrchr(buf, ')');
    return rp && sscanf(rp + 1, " %c %*d %*d %ld %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                        &pi->state, &pi->session, &pi->start) == 3;
}

static bool alive_state(char state) { return state != 'Z' && state != 'X'; }

/* Processes of session sid still running (zombies are not: they only wait
 * to be reaped), each sent sig when sig != 0. */
static int session_signal(pid_t sid, int sig, pid_t *pids, int max)
{
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        const long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        proc_info pi;
        if (!proc_stat(pid, &pi) || pi.session != (long)sid || !alive_state(pi.state)) continue;
        if (pids && n < max) pids[n] = (pid_t)pid;
        n++;
        if (sig) kill((pid_t)pid, sig);
    }
    closedir(d);
    return n;
}

/* pid exists and is not a zombie (a killed rank stays one until mpirun,
 * maybe busy, reaps it). */
static bool process_running(pid_t pid)
{
    proc_info pi;
    if (!proc_stat(pid, &pi)) return kill(pid, 0) == 0 || errno != ESRCH; /* no /proc: existence only */
    return alive_state(pi.state);
}

/* ---- the job file ------------------------------------------------------------------------- */

/* Writes "moe-job 1 / pid / start" for the job just started (a new file
 * renamed over the old one, mode 0600). */
static void job_file_write(const moe_super *s)
{
    if (!s->cfg.job_file) return;
    proc_info pi;
    if (!proc_stat(s->pid, &pi)) pi.start = 0;
    char tmp[4096 + 16];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", s->cfg.job_file) >= (int)sizeof tmp) return;
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        moe_log(MOE_LOG_WARN, "supervisor: cannot write the job file %s: %s (a new coordinator will not adopt this job)",
                tmp, strerror(errno));
        return;
    }
    proc_info me;
    if (!proc_stat(getpid(), &me)) me.start = 0;
    fprintf(f, "moe-job 1\npid %d\nstart %llu\ncoordinator %d\ncoordinator-start %llu\n", (int)s->pid, pi.start,
            (int)getpid(), me.start);
    const bool ok = fclose(f) == 0 && rename(tmp, s->cfg.job_file) == 0;
    if (!ok) {
        moe_log(MOE_LOG_WARN, "supervisor: cannot write the job file %s: %s (a new coordinator will not adopt this job)",
                s->cfg.job_file, strerror(errno));
        unlink(tmp);
    }
}

static void job_file_remove(const moe_super *s)
{
    if (s->cfg.job_file && unlink(s->cfg.job_file) != 0 && errno != ENOENT)
        moe_log(MOE_LOG_WARN, "supervisor: cannot remove the job file %s: %s", s->cfg.job_file, strerror(errno));
}

/* /proc/PID/cmdline is argv, NUL after each argument. */
static bool cmdline_is(pid_t pid, char *const *argv)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool same = true;
    for (size_t i = 0; argv[i] && same; i++)
        for (const char *c = argv[i];; c++) {
            const int ch = fgetc(f);
            if (ch != (unsigned char)*c) { same = false; break; }
            if (!*c) break;
        }
    if (same && fgetc(f) != EOF) same = false;
    fclose(f);
    return same;
}

/* The job a previous coordinator left running, when the job file names one
 * that is still ours to take; else 0 (and why, for the log).  *owner: the
 * coordinator that wrote the file, when it still runs. */
static pid_t job_file_find(const moe_super *s, bool *other_command, pid_t *owner, char *why, size_t why_len)
{
    *other_command = false;
    *owner = 0;
    struct stat st;
    if (lstat(s->cfg.job_file, &st) != 0) {
        snprintf(why, why_len, "%s", errno == ENOENT ? "" : strerror(errno));
        return 0;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022) || st.st_size > 256) {
        snprintf(why, why_len, "not a regular file of ours, writable by us only");
        return 0;
    }
    FILE *f = fopen(s->cfg.job_file, "r");
    if (!f) {
        snprintf(why, why_len, "%s", strerror(errno));
        return 0;
    }
    long pid = 0, coord = 0;
    unsigned long long start = 0, coord_start = 0;
    const int got = fscanf(f, "moe-job 1 pid %ld start %llu coordinator %ld coordinator-start %llu", &pid, &start,
                           &coord, &coord_start);
    fclose(f);
    if (got != 4 || pid <= 1 || pid > 0x7FFFFFFF || coord <= 1 || coord > 0x7FFFFFFF) {
        snprintf(why, why_len, "not a job file");
        return 0;
    }
    proc_info pi;
    if (coord != (long)getpid() && proc_stat(coord, &pi) && alive_state(pi.state) && pi.start == coord_start)
        *owner = (pid_t)coord;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld", pid);
    if (!proc_stat(pid, &pi) || !alive_state(pi.state) || pi.start != start || pi.session != pid ||
        stat(path, &st) != 0 || st.st_uid != geteuid()) {
        snprintf(why, why_len, "its job (pid %ld) is gone", pid);
        return 0;
    }
    if (!cmdline_is((pid_t)pid, s->argv)) *other_command = true;
    return (pid_t)pid;
}

/* Reaps every child that has ended (the launcher's status in *status). */
static bool reap(moe_super *s, int *status)
{
    bool launcher = false;
    for (;;) {
        int st;
        const pid_t p = waitpid(-1, &st, WNOHANG);
        if (p <= 0) break;
        if (p == s->pid) {
            launcher = true;
            *status = st;
        }
    }
    return launcher;
}

static void kill_job(moe_super *s)
{
    if (s->pid <= 0) return;
    const pid_t sid = s->pid;
    /* the launcher itself first: killed right after its fork, it may not
     * have called setsid yet, and then neither its group nor its session
     * exists (tests/supervisor_test.c: a `sleep` that outlived its kill) */
    kill(sid, SIGKILL);
    kill(-sid, SIGKILL); /* the launcher's group, then everyone else in the session */
    int left = session_signal(sid, SIGKILL, NULL, 0);
    /* bounded wait until the session is empty (SIGKILL cannot be caught;
     * a process in uninterruptible sleep may take a moment) */
    for (int i = 0; i < 500 && left > 0; i++) {
        const struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
        int st;
        reap(s, &st);
        left = session_signal(sid, i % 50 == 49 ? SIGKILL : 0, NULL, 0);
    }
    int st;
    reap(s, &st);
    if (left > 0) moe_log(MOE_LOG_ERROR, "supervisor: %d processes of the old worker job (session %d) are still there",
                          left, (int)sid);
    s->pid = 0;
    s->adopted = false;
    job_file_remove(s);
}

static void start(moe_super *s, double now)
{
    fflush(NULL);
    const pid_t pid = fork();
    if (pid < 0) {
        moe_log(MOE_LOG_ERROR, "supervisor: cannot start the worker job: fork: %s", strerror(errno));
        s->next_start = now + s->cfg.backoff_max_s;
        return;
    }
    if (pid == 0) {
        setsid();
        /* the job's output goes to the coordinator's stderr: stdout is for
         * the coordinator's own lines (ready) */
        dup2(2, 1);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execvp(s->argv[0], s->argv);
        /* only async-signal-safe calls here (the parent has threads) */
        static const char msg[] = "moe-coordinator: cannot run the worker job's command (--launch)\n";
        if (write(2, msg, sizeof msg - 1) < 0) _exit(126);
        _exit(127);
    }
    s->pid = pid;
    s->state = MOE_SUPER_STARTING;
    s->started = now;
    s->starts++;
    job_file_write(s);
    if (s->starts == 1) moe_log(MOE_LOG_INFO, "supervisor: started the worker job (pid %d): %s ...", (int)pid, s->argv[0]);
    else moe_log(MOE_LOG_INFO, "supervisor: restarted the worker job (pid %d, restart %lld)", (int)pid,
                 (long long)(s->starts - 1));
}

int moe_super_init(moe_super **out, const moe_super_cfg *cfg, moe_err *err)
{
    *out = NULL;
    if (!cfg->argv || !cfg->argv[0]) return moe_err_set(err, "--launch: no command");
    if (cfg->max_unready < 1 || !(cfg->backoff_min_s > 0) || cfg->backoff_max_s < cfg->backoff_min_s ||
        !(cfg->start_timeout_s > 0))
        return moe_err_set(err, "supervisor: bad settings");
    moe_super *s = moe_xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    size_t n = 0;
    while (cfg->argv[n]) n++;
    s->argv = moe_xcalloc(n + 1, sizeof *s->argv);
    for (size_t i = 0; i < n; i++) s->argv[i] = substitute(cfg->argv[i], cfg->workers ? cfg->workers : "");
    s->state = MOE_SUPER_WAITING;
    s->next_start = 0; /* at the first tick */
    setenv("OPENBLAS_NUM_THREADS", "1", 0); /* the job inherits it (one BLAS thread per rank) */
    s->last_recovery = -1;
    if (cfg->job_file) {
        bool other;
        pid_t owner;
        char why[256];
        if (job_file_find(s, &other, &owner, why, sizeof why) > 0 && owner > 0) {
            moe_err_set(err, "the worker job in %s belongs to a coordinator that still runs (pid %d): stop it first, "
                             "or give another --job-file", cfg->job_file, (int)owner);
            moe_super_free(s);
            return MOE_ERR;
        }
    }
#ifdef PR_SET_CHILD_SUBREAPER
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        moe_log(MOE_LOG_WARN, "supervisor: cannot become a child subreaper: %s", strerror(errno));
#endif
    *out = s;
    return MOE_OK;
}

/* At the first start: the live job of a previous coordinator, when the job
 * file names one, is taken over (true) instead of starting another; one
 * that runs another command is stopped. */
static bool adopt(moe_super *s, double now)
{
    if (!s->cfg.job_file) return false;
    bool other;
    pid_t owner;
    char why[256];
    const pid_t pid = job_file_find(s, &other, &owner, why, sizeof why);
    if (pid <= 0) {
        if (why[0]) moe_log(MOE_LOG_INFO, "supervisor: job file %s: %s; starting a new worker job", s->cfg.job_file, why);
        job_file_remove(s);
        return false;
    }
    s->pid = pid;
    s->adopted = true;
    if (other) {
        moe_log(MOE_LOG_WARN, "supervisor: the live worker job of a previous coordinator (pid %d) runs another command; "
                              "stopping it", (int)pid);
        kill_job(s);
        return false;
    }
    s->state = MOE_SUPER_STARTING;
    s->started = now;
    s->starts = 1;
    job_file_write(s); /* now ours: a third coordinator is refused while this one runs */
    moe_log(MOE_LOG_INFO, "supervisor: adopted the live worker job (pid %d) of a previous coordinator; waiting for its "
                          "ranks", (int)pid);
    return true;
}

bool moe_super_tick(moe_super *s, double now, char *why, size_t why_len)
{
    int st = 0;
    if (s->pid > 0 && reap(s, &st)) {
        if (WIFEXITED(st)) snprintf(why, why_len, "the worker job's launcher exited with status %d", WEXITSTATUS(st));
        else if (WIFSIGNALED(st)) snprintf(why, why_len, "the worker job's launcher was killed by signal %d", WTERMSIG(st));
        else snprintf(why, why_len, "the worker job's launcher ended");
        s->pid = -s->pid; /* reaped: its session may still hold ranks (kill_job finds them) */
        return true;
    }
    if (s->pid == 0) reap(s, &st); /* orphans of an old job */
    /* an adopted launcher is not our child: /proc says when it is gone */
    if (s->adopted && s->pid > 0 && !process_running(s->pid)) {
        snprintf(why, why_len, "the adopted worker job's launcher (pid %d) is gone", (int)s->pid);
        s->pid = -s->pid;
        return true;
    }
    /* a process of the running job is gone (a rank killed): its launcher
     * may take long to notice while the other ranks hang in a collective */
    if (s->state == MOE_SUPER_RUNNING && now - s->t_watch >= 0.1) {
        s->t_watch = now;
        for (int i = 0; i < s->n_watch; i++)
            if (!process_running(s->watch[i])) {
                snprintf(why, why_len, "process %d of the worker job is gone", (int)s->watch[i]);
                s->n_watch = 0;
                return true;
            }
    }
    if (s->state == MOE_SUPER_STARTING) {
        const double limit = moe_super_start_limit(&s->cfg, s->ready_in);
        if (now - s->started > limit) {
            if (limit < s->cfg.start_timeout_s)
                snprintf(why, why_len, "the worker job was not ready after %.0f s (%g times the %.1f s the first one took, "
                         "at least %g s)", limit, MOE_SUPER_RESTART_FACTOR, s->ready_in, MOE_SUPER_RESTART_MIN_S);
            else
                snprintf(why, why_len, "the worker job was not ready after %.0f s", limit);
            return true;
        }
    }
    if (s->state == MOE_SUPER_WAITING && now >= s->next_start && !(s->starts == 0 && adopt(s, now))) start(s, now);
    return false;
}

void moe_super_ready(moe_super *s, double now)
{
    if (s->state != MOE_SUPER_STARTING) return;
    s->state = MOE_SUPER_RUNNING;
    s->unready = 0;
    if (s->ready_in <= 0 && !s->adopted) s->ready_in = now - s->started > 0 ? now - s->started : 1e-3;
    /* its processes now (every rank has said hello): watched from here on */
    const int n = s->pid > 0 ? session_signal(s->pid, 0, s->watch, (int)(sizeof s->watch / sizeof s->watch[0])) : 0;
    s->n_watch = n < (int)(sizeof s->watch / sizeof s->watch[0]) ? n : (int)(sizeof s->watch / sizeof s->watch[0]);
    if (s->last_death > 0) {
        s->last_recovery = now - s->last_death;
        moe_log(MOE_LOG_INFO, "supervisor: the worker job is ready again, %.2f s after the last one died",
                s->last_recovery);
    }
}

void moe_super_job_dead(moe_super *s, const char *why, double now)
{
    if (s->state == MOE_SUPER_FAILED || s->state == MOE_SUPER_WAITING) return;
    const bool was_ready = s->state == MOE_SUPER_RUNNING;
    if (s->pid < 0) s->pid = -s->pid; /* the launcher is reaped; its session id is still the key */
    kill_job(s);
    s->n_watch = 0;
    s->last_death = now;
    if (!was_ready) s->unready++;
    if (s->unready >= s->cfg.max_unready) {
        s->state = MOE_SUPER_FAILED;
        snprintf(s->failed, sizeof s->failed, "the worker job died %d times in a row before it was ready (last: %s)",
                 s->unready, why);
        moe_log(MOE_LOG_ERROR, "supervisor: %s; not restarting it (restart the coordinator once fixed)", s->failed);
        return;
    }
    double delay = s->cfg.backoff_min_s;
    for (int i = 0; i < s->unready && delay < s->cfg.backoff_max_s; i++) delay *= 2;
    if (delay > s->cfg.backoff_max_s) delay = s->cfg.backoff_max_s;
    s->state = MOE_SUPER_WAITING;
    s->next_start = now + delay;
    moe_log(MOE_LOG_ERROR, "supervisor: %s; every process of that job killed, restarting it in %.2f s%s", why, delay,
            was_ready ? "" : " (it had not become ready)");
}

double moe_super_start_limit(const moe_super_cfg *cfg, double ready_in)
{
    if (!(ready_in > 0)) return cfg->start_timeout_s;
    double limit = MOE_SUPER_RESTART_FACTOR * ready_in;
    if (limit < MOE_SUPER_RESTART_MIN_S) limit = MOE_SUPER_RESTART_MIN_S;
    return limit < cfg->start_timeout_s ? limit : cfg->start_timeout_s;
}

moe_super_state moe_super_get_state(const moe_super *s) { return s->state; }
const char *moe_super_failed(const moe_super *s) { return s->state == MOE_SUPER_FAILED ? s->failed : NULL; }
int64_t moe_super_restarts(const moe_super *s) { return s->starts > 0 ? s->starts - 1 : 0; }
double moe_super_last_death(const moe_super *s) { return s->last_death; }
double moe_super_last_recovery(const moe_super *s) { return s->last_recovery; }

void moe_super_free(moe_super *s)
{
    if (!s) return;
    if (s->pid < 0) s->pid = -s->pid;
    if (s->pid > 0) {
        /* a clean stop first: SIGTERM ends the job together (every rank
         * leaves at its next step); then whatever is left is killed */
        kill(-s->pid, SIGTERM);
        session_signal(s->pid, SIGTERM, NULL, 0);
        for (int i = 0; i < 300; i++) {
            int st;
            reap(s, &st);
            if (session_signal(s->pid, 0, NULL, 0) == 0) break;
            const struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
        kill_job(s);
    }
    for (size_t i = 0; s->argv[i]; i++) free(s->argv[i]);
    free(s->argv);
    free(s);
}
