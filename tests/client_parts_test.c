/*
 * client_parts_test — moe-client's parts that need no server
 * (tools/client/): what --connect accepts (tcp:// implied for HOST:PORT,
 * a hint for anything else), the result-line escaping and forms, the
 * median and the summary.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "output.h"
#include "session.h"

static void test_endpoint(void)
{
    static const struct {
        const char *in, *out; /* out NULL: refused */
    } cases[] = {
        {"tcp://127.0.0.1:5555", "tcp://127.0.0.1:5555"},
        {"ipc:///tmp/x", "ipc:///tmp/x"},
        {"inproc://a", "inproc://a"},
        {"localhost:5555", "tcp://localhost:5555"},
        {"10.0.0.2:1", "tcp://10.0.0.2:1"},
        {"[::1]:65535", "tcp://[::1]:65535"},
        {"localhost", NULL},
        {"localhost:", NULL},
        {":5555", NULL},
        {"host:0", NULL},
        {"host:65536", NULL},
        {"host:99999999999999999999", NULL},
        {"host:55x", NULL},
        {"http://host:80", NULL},
        {"nonsense://x", NULL},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[64] = "";
        moe_err err = {{0}};
        const int rc = moe_session_endpoint(cases[i].in, out, sizeof out, &err);
        if (cases[i].out) {
            CHECK_MSG(rc == MOE_OK && !strcmp(out, cases[i].out), "'%s' -> '%s' (%s)", cases[i].in, out, err.msg);
        } else {
            CHECK_MSG(rc == MOE_ERR, "'%s' accepted as '%s'", cases[i].in, out);
            if (cases[i].in[0]) CHECK_CONTAINS(err.msg, "HOST:PORT (tcp:// is implied)");
        }
    }
    char small[12];
    moe_err err;
    CHECK(moe_session_endpoint("averylonghost:5555", small, sizeof small, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "longer than");
}

static char *capture(void (*fn)(FILE *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fn(f);
    fclose(f);
    return buf;
}

static void write_escape(FILE *f)
{
    const char s[] = "a\nb\tc\\d\re\x01\x7f\xc3\xa9";
    moe_output_escape(f, s, sizeof s - 1);
}

static void write_results(FILE *f)
{
    const int32_t ids[] = {5, 0, 17};
    moe_output_result(f, 3, NULL, NULL, false, ids, 3, "hi\nthere", 8);
    moe_output_result(f, 4, NULL, NULL, true, ids, 3, "ignored", 7);
    moe_output_result(f, 9, "bad_line", "line 9: top_p = 2 is out of range\t(0, 1]", false, NULL, 0, NULL, 0);
    moe_output_result(f, 10, NULL, NULL, false, NULL, 0, NULL, 0);
}

static void write_summary(FILE *f)
{
    double first[] = {5.5, 2.02, 3.67};
    moe_output_summary(f, 4, 3, 205, 0.5, first, 3);
    moe_output_summary(f, 1, 0, 0, 0, NULL, 0);
}

static void test_output(void)
{
    char *s = capture(write_escape);
    CHECK_MSG(!strcmp(s, "a\\nb\\tc\\\\d\\re\\x01\\x7f\xc3\xa9"), "escaped: %s", s);
    free(s);
    s = capture(write_results);
    CHECK_MSG(!strcmp(s, "3 hi\\nthere\n"
                         "4 5 0 17\n"
                         "9 error bad_line: line 9: top_p = 2 is out of range\\t(0, 1]\n"
                         "10 \n"),
              "results:\n%s", s);
    free(s);
    s = capture(write_summary);
    CHECK_MSG(!strcmp(s, "requests 4  completed 3  failed 1  tokens 205  wall 0.500 s  tokens/s 410.0\n"
                         "time to first chunk (ms, 3 requests): min 2.02  median 3.67  max 5.50\n"
                         "requests 1  completed 0  failed 1  tokens 0  wall 0.000 s  tokens/s 0.0\n"
                         "time to first chunk: no request received a chunk\n"),
              "summary:\n%s", s);
    free(s);
    double a[] = {5, 1, 3};
    CHECK(moe_output_median(a, 3) == 3);
    double b[] = {4, 1, 3, 2};
    CHECK(moe_output_median(b, 4) == 2.5);
    CHECK(moe_output_median(NULL, 0) == 0);
}

int main(void)
{
    test_endpoint();
    test_output();
    return check_summary("client_parts_test");
}
