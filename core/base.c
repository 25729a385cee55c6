#include "base.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
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

static moe_log_format log_format = MOE_LOG_TEXT;
static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

void moe_log_set_format(moe_log_format f) { log_format = f; }
moe_log_format moe_log_get_format(void) { return log_format; }

/* Length of the valid UTF-8 sequence at s (up to n bytes), 0 if none. */
static size_t log_utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) len = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) len = 3, lo = s[0] == 0xE0 ? 0xA0 : 0x80, hi = s[0] == 0xED ? 0x9F : 0xBF;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4) len = 4, lo = s[0] == 0xF0 ? 0x90 : 0x80, hi = s[0] == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (len > n || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

/* A JSON string (with its quotes): control characters escaped, invalid
 * UTF-8 replaced by U+FFFD. */
static void log_json_string(FILE *f, const char *str)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    size_t n = strlen((const char *)s);
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        const unsigned char c = s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20 || c == 0x7F) fprintf(f, "\\u%04x", c);
        else {
            const size_t k = log_utf8_len(s + i, n - i);
            if (k == 0) fputs("\xEF\xBF\xBD", f), i++;
            else fwrite(s + i, 1, k, f), i += k;
            continue;
        }
        i++;
    }
    fputc('"', f);
}

/* A text value: bare when it is a plain word, else quoted with \" \\ \n escaped. */
static void log_text_value(FILE *f, const char *str)
{
    const char *s = str ? str : "";
    bool bare = *s != '\0';
    for (const char *p = s; *p && bare; p++) bare = (unsigned char)*p > 0x20 && *p != '"' && *p != '=' && *p != '\\' && *p != 0x7F;
    if (bare) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if ((unsigned char)*p < 0x20 || *p == 0x7F) fprintf(f, "\\x%02x", (unsigned char)*p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void log_line(moe_log_level level, const char *msg, const moe_log_field *fields, int n_fields)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) { /* no memory for the line: say it plainly */
        fprintf(stderr, "moe %s: %s\n", log_level_names[level], msg);
        return;
    }
    if (log_format == MOE_LOG_JSON) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char when[32];
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        fprintf(f, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":", when, ts.tv_nsec / 1000000, log_level_names[level]);
        log_json_string(f, msg);
        for (int i = 0; i < n_fields; i++) {
            const moe_log_field *x = &fields[i];
            fprintf(f, ",\"%s\":", x->key);
            if (x->kind == MOE_LOGF_STR) log_json_string(f, x->s);
            else if (x->kind == MOE_LOGF_INT) fprintf(f, "%lld", (long long)x->i);
            else if (isfinite(x->d)) fprintf(f, "%.6g", x->d);
            else fputs("null", f);
        }
        fputs("}\n", f);
    } else {
        fprintf(f, "moe %s: %s", log_level_names[level], msg);
        for (int i = 0; i < n_fields; i++) {
            const moe_log_field *x = &fields[i];
            fprintf(f, " %s=", x->key);
            if (x->kind == MOE_LOGF_STR) log_text_value(f, x->s);
            else if (x->kind == MOE_LOGF_INT) fprintf(f, "%lld", (long long)x->i);
            else if (isfinite(x->d)) fprintf(f, "%.6g", x->d);
            else fputc('-', f);
        }
        fputc('\n', f);
    }
    fclose(f);
    fwrite(buf, 1, len, stderr); /* one write: lines of several threads do not mix */
    free(buf);
}

void moe_log(moe_log_level level, const char *fmt, ...)
{
    if ((int)level < log_threshold()) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_line(level, line, NULL, 0);
}

void moe_log_event(moe_log_level level, const char *msg, const moe_log_field *fields, int n_fields)
{
    if ((int)level < log_threshold()) return;
    log_line(level, msg, fields, n_fields);
}

/* ---- rate-limited lines ---- */

static pthread_mutex_t limit_mu = PTHREAD_MUTEX_INITIALIZER;
/* the limiters used so far, for moe_log_limiter_flush_all (call sites are
 * few: past the list's size a limiter is only flushed by itself) */
static moe_log_limiter *limit_list[256];
static int limit_n;

static void limited_summary(const char *line, moe_log_level level, int64_t repeats)
{
    char buf[640];
    snprintf(buf, sizeof buf, "last message repeated %lld times: %s", (long long)repeats, line);
    log_line(level, buf, NULL, 0);
}

void moe_log_limited(moe_log_limiter *l, double interval_s, moe_log_level level, const char *fmt, ...)
{
    if ((int)level < log_threshold()) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    const double now = moe_now();
    pthread_mutex_lock(&limit_mu);
    if (!l->listed && limit_n < (int)(sizeof limit_list / sizeof limit_list[0])) {
        limit_list[limit_n++] = l;
        l->listed = true;
    }
    l->clock++;
    int hit = -1, lru = 0;
    for (int i = 0; i < MOE_LOG_LIMIT_LINES; i++) {
        if (l->slot[i].printed > 0 && !strcmp(l->slot[i].line, line)) hit = i;
        if (l->slot[i].used < l->slot[lru].used) lru = i;
    }
    if (hit >= 0) {
        moe_log_limit_slot *s = &l->slot[hit];
        s->used = l->clock;
        if (now - s->printed < interval_s) {
            s->repeats++;
        } else {
            char buf[640];
            if (s->repeats > 0)
                snprintf(buf, sizeof buf, "%s [repeated %lld times in %.1f s]", line, (long long)s->repeats,
                         now - s->printed);
            else snprintf(buf, sizeof buf, "%s", line);
            log_line(level, buf, NULL, 0);
            s->repeats = 0;
            s->printed = now;
        }
        pthread_mutex_unlock(&limit_mu);
        return;
    }
    moe_log_limit_slot *s = &l->slot[lru];
    if (s->printed > 0 && s->repeats > 0) limited_summary(s->line, s->level, s->repeats);
    snprintf(s->line, sizeof s->line, "%s", line);
    s->level = level;
    s->repeats = 0;
    s->printed = now > 0 ? now : 1e-9;
    s->used = l->clock;
    log_line(level, line, NULL, 0);
    pthread_mutex_unlock(&limit_mu);
}

static void limiter_flush_locked(moe_log_limiter *l)
{
    for (int i = 0; i < MOE_LOG_LIMIT_LINES; i++)
        if (l->slot[i].printed > 0 && l->slot[i].repeats > 0) {
            limited_summary(l->slot[i].line, l->slot[i].level, l->slot[i].repeats);
            l->slot[i].repeats = 0;
        }
}

void moe_log_limiter_flush(moe_log_limiter *l)
{
    pthread_mutex_lock(&limit_mu);
    limiter_flush_locked(l);
    pthread_mutex_unlock(&limit_mu);
}

void moe_log_limiter_flush_all(void)
{
    pthread_mutex_lock(&limit_mu);
    for (int i = 0; i < limit_n; i++) limiter_flush_locked(limit_list[i]);
    pthread_mutex_unlock(&limit_mu);
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
