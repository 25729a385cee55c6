#include "base.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int moe_err_set(moe_err *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return MOE_ERR;
}

int moe_err_prefix(moe_err *err, const char *fmt, ...)
{
    if (err) {
        char old[MOE_ERR_MSG_MAX], pre[MOE_ERR_MSG_MAX];
        memcpy(old, err->msg, sizeof old);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(pre, sizeof pre, fmt, ap);
        va_end(ap);
        size_t n = strlen(pre);
        if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
        memcpy(err->msg, pre, n);
        memcpy(err->msg + n, ": ", 2);
        size_t room = sizeof err->msg - n - 2 - 1, m = strlen(old);
        if (m > room) m = room;
        memcpy(err->msg + n + 2, old, m);
        err->msg[n + 2 + m] = 0;
    }
    return MOE_ERR;
}

void moe_assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "moe: internal error: assertion '%s' failed at %s:%d\n", cond, file, line);
    abort();
}

static _Noreturn void oom(size_t n)
{
    fprintf(stderr, "moe: out of memory allocating %zu bytes\n", n);
    abort();
}

void *moe_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *moe_xmalloc_lines(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 1) != 0) oom(n);
    return p;
}

void *moe_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) oom(count * size);
    return p;
}

void *moe_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *moe_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = moe_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

static int log_threshold(void)
{
    static int level = -1;
    if (level < 0) {
        const char *s = getenv("MOE_LOG");
        level = MOE_LOG_INFO;
        if (s) {
            if (!strcmp(s, "debug")) level = MOE_LOG_DEBUG;
            else if (!strcmp(s, "warn")) level = MOE_LOG_WARN;
            else if (!strcmp(s, "error")) level = MOE_LOG_ERROR;
        }
    }
    return level;
}

void moe_log(moe_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if ((int)level < log_threshold()) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "moe %s: %s\n", names[level], line);
}

int moe_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out, moe_err *err)
{
    if (!s || !*s) return moe_err_set(err, "expected an integer, got an empty string");
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || *end != '\0' || end == s)
        return moe_err_set(err, "'%s' is not an integer", s);
    if (v < lo || v > hi)
        return moe_err_set(err, "%lld is out of range [%lld, %lld]", v, (long long)lo, (long long)hi);
    *out = v;
    return MOE_OK;
}

int moe_parse_f64(const char *s, double lo, double hi, double *out, moe_err *err)
{
    if (!s || !*s) return moe_err_set(err, "expected a number, got an empty string");
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (errno == ERANGE || *end != '\0' || end == s || isnan(v))
        return moe_err_set(err, "'%s' is not a number", s);
    if (v < lo || v > hi) return moe_err_set(err, "%g is out of range [%g, %g]", v, lo, hi);
    *out = v;
    return MOE_OK;
}

double moe_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
