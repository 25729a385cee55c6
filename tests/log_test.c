/*
 * log_test — the log line formats (core/base.h): text lines with bare and
 * quoted values, JSON lines that are one object each with escaped, valid
 * UTF-8 strings, numbers and null for a missing time.  stderr is sent to a
 * file and read back.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "check.h"

/* Runs the two events with stderr in a file; returns what was written. */
static char *capture(moe_log_format fmt)
{
    FILE *tmp = tmpfile();
    CHECK(tmp != NULL);
    fflush(stderr);
    const int saved = dup(2);
    dup2(fileno(tmp), 2);
    moe_log_set_format(fmt);
    const moe_log_field f[] = {
        {.key = "id", .kind = MOE_LOGF_STR, .s = "r1"},
        {.key = "client", .kind = MOE_LOGF_STR, .s = "a \"b\"\\c\nd=e\x01"},
        {.key = "bad", .kind = MOE_LOGF_STR, .s = "x\xFFy\xC3\xA9"},
        {.key = "empty", .kind = MOE_LOGF_STR, .s = ""},
        {.key = "n", .kind = MOE_LOGF_INT, .i = -42},
        {.key = "t", .kind = MOE_LOGF_NUM, .d = 0.125},
        {.key = "none", .kind = MOE_LOGF_NUM, .d = NAN},
    };
    moe_log_event(MOE_LOG_INFO, "request finished", f, 7);
    moe_log(MOE_LOG_WARN, "plain %d", 7);
    moe_log(MOE_LOG_DEBUG, "not shown at the default level");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    moe_log_set_format(MOE_LOG_TEXT);
    const long n = ftell(tmp);
    char *s = calloc(1, (size_t)n + 1);
    rewind(tmp);
    CHECK(fread(s, 1, (size_t)n, tmp) == (size_t)n);
    fclose(tmp);
    return s;
}

/* stderr of fn() in a file, read back. */
static char *capture_fn(void (*fn)(void))
{
    FILE *tmp = tmpfile();
    CHECK(tmp != NULL);
    fflush(stderr);
    const int saved = dup(2);
    dup2(fileno(tmp), 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    const long n = ftell(tmp);
    char *s = calloc(1, (size_t)n + 1);
    rewind(tmp);
    CHECK(fread(s, 1, (size_t)n, tmp) == (size_t)n);
    fclose(tmp);
    return s;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* 1000 repeats of one line and 500 of two alternating ones, within the
 * interval: three lines.  Ten more distinct lines push the first three
 * out of the limiter's 8 slots: their counts come out then. */
static moe_log_limiter lim;
static void limited_burst(void)
{
    for (int i = 0; i < 1000; i++) moe_log_limited(&lim, 3600, MOE_LOG_WARN, "rank %d refused", 0);
    for (int i = 0; i < 1000; i++) moe_log_limited(&lim, 3600, MOE_LOG_WARN, "rank %d: vocabulary", i % 2);
}
static void limited_push_out(void)
{
    for (int i = 0; i < 10; i++) moe_log_limited(&lim, 3600, MOE_LOG_WARN, "other %d", i);
}
/* interval 0: every line is printed, with the count held back so far */
static void limited_expired(void)
{
    for (int i = 0; i < 5; i++) moe_log_limited(&lim, 3600, MOE_LOG_WARN, "late");
    moe_log_limited(&lim, 0, MOE_LOG_WARN, "late");
    moe_log_limited(&lim, 3600, MOE_LOG_WARN, "late");
    moe_log_limiter_flush(&lim);
}
/* a call site's own limiter, flushed with every other one */
static void limited_site(void)
{
    for (int i = 0; i < 3; i++) MOE_LOG_LIMITED(MOE_LOG_ERROR, "site %d", 1);
    moe_log_limiter_flush_all();
}

static void check_limiter(void)
{
    char *a = capture_fn(limited_burst);
    CHECK_MSG(!strcmp(a, "moe warn: rank 0 refused\nmoe warn: rank 0: vocabulary\nmoe warn: rank 1: vocabulary\n"),
              "got:\n%s", a);
    free(a);
    char *b = capture_fn(limited_push_out);
    CHECK_MSG(strstr(b, "moe warn: last message repeated 999 times: rank 0 refused\n") &&
                  strstr(b, "moe warn: last message repeated 499 times: rank 0: vocabulary\n") &&
                  strstr(b, "moe warn: last message repeated 499 times: rank 1: vocabulary\n") &&
                  count_lines(b) == 13,
              "got:\n%s", b);
    free(b);
    char *c = capture_fn(limited_expired);
    CHECK_MSG(!strncmp(c, "moe warn: late\nmoe warn: late [repeated 4 times in ", 51) &&
                  strstr(c, " s]\nmoe warn: last message repeated 1 times: late\n") && count_lines(c) == 3,
              "got:\n%s", c);
    free(c);
    char *d = capture_fn(limited_site);
    CHECK_MSG(!strcmp(d, "moe error: site 1\nmoe error: last message repeated 2 times: site 1\n"), "got:\n%s", d);
    free(d);
}

int main(void)
{
    unsetenv("MOE_LOG");
    char *t = capture(MOE_LOG_TEXT);
    const char *want_text =
        "moe info: request finished id=r1 client=\"a \\\"b\\\"\\\\c\\nd=e\\x01\" bad=x\xFFy\xC3\xA9 empty=\"\" n=-42 "
        "t=0.125 none=-\n"
        "moe warn: plain 7\n";
    CHECK_MSG(!strcmp(t, want_text), "got:\n%s", t);
    free(t);

    char *j = capture(MOE_LOG_JSON);
    /* {"ts":"YYYY-MM-DDTHH:MM:SS.mmmZ", then the rest is fixed */
    const char *a = "{\"ts\":\"";
    CHECK(!strncmp(j, a, strlen(a)));
    const char *rest = strchr(j, 'Z');
    CHECK(rest && rest - j == (long)strlen(a) + 23);
    const char *want_json =
        "Z\",\"level\":\"info\",\"msg\":\"request finished\",\"id\":\"r1\",\"client\":\"a \\\"b\\\"\\\\c\\nd=e\\u0001\","
        "\"bad\":\"x\xEF\xBF\xBDy\xC3\xA9\",\"empty\":\"\",\"n\":-42,\"t\":0.125,\"none\":null}\n";
    CHECK_MSG(rest && !strncmp(rest, want_json, strlen(want_json)), "got:\n%s", j);
    const char *second = rest ? strstr(rest, "\n{\"ts\":\"") : NULL;
    CHECK(second && strstr(second, "\",\"level\":\"warn\",\"msg\":\"plain 7\"}\n"));
    CHECK(!strstr(j, "not shown"));
    free(j);
    check_limiter();
    return check_summary("log_test");
}
