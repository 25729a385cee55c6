/*
 * client_req_test — the socket-free parts of moe-client (tools/client_req.c):
 * parameters by name with their ranges, token-id lists, request-file lines
 * (both prompt kinds, escapes, options over defaults, every error), the
 * output escaping and the median.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "client_req.h"

static int parse(const char *line, const moe_client_params *def, moe_client_line *out, moe_err *err)
{
    return moe_client_line_parse(line, strlen(line), def, out, err);
}

static void test_params(void)
{
    moe_client_params p;
    memset(&p, 0, sizeof p);
    moe_err err;
    CHECK(moe_client_param_set(&p, "temp", "0", &err) == MOE_OK && p.has_temp && p.temp == 0.0f);
    CHECK(moe_client_param_set(&p, "temp", "1000", &err) == MOE_OK);
    CHECK(moe_client_param_set(&p, "temp", "1000.5", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "temp", "inf", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "temp", "nan", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "top_p", "1", &err) == MOE_OK && p.top_p == 1.0f);
    CHECK(moe_client_param_set(&p, "top_p", "0", &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "out of range (0, 1]");
    CHECK(moe_client_param_set(&p, "top_p", "1e-9", &err) == MOE_OK);
    CHECK(moe_client_param_set(&p, "top_k", "0", &err) == MOE_OK && p.has_top_k && p.top_k == 0);
    CHECK(moe_client_param_set(&p, "top_k", "2147483648", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "min_p", "1", &err) == MOE_OK);
    CHECK(moe_client_param_set(&p, "min_p", "-0.1", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "repeat_penalty", "100", &err) == MOE_OK);
    CHECK(moe_client_param_set(&p, "repeat_penalty", "0", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "repeat_last_n", "-1", &err) == MOE_OK && p.repeat_last_n == -1);
    CHECK(moe_client_param_set(&p, "repeat_last_n", "-2", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "seed", "0", &err) == MOE_OK && p.has_seed && p.seed == 0);
    CHECK(moe_client_param_set(&p, "seed", "18446744073709551615", &err) == MOE_OK && p.seed == UINT64_MAX);
    CHECK(moe_client_param_set(&p, "seed", "18446744073709551616", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "seed", "+1", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "seed", " 1", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "seed", "", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "max_tokens", "1048576", &err) == MOE_OK && p.max_tokens == 1048576);
    CHECK(moe_client_param_set(&p, "max_tokens", "1048577", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "max_tokens", "-5", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "deadline_ms", "86400000", &err) == MOE_OK && p.deadline_ms == 86400000);
    CHECK(moe_client_param_set(&p, "deadline_ms", "86400001", &err) == MOE_ERR);
    CHECK(moe_client_param_set(&p, "nucleus", "1", &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "unknown parameter 'nucleus'");
}

static void test_ids(void)
{
    int32_t *ids;
    size_t n;
    moe_err err;
    CHECK(moe_client_ids_parse("1,2,3", &ids, &n, &err) == MOE_OK && n == 3 && ids[0] == 1 && ids[2] == 3);
    free(ids);
    CHECK(moe_client_ids_parse("0,2147483647", &ids, &n, &err) == MOE_OK && n == 2 && ids[1] == INT32_MAX);
    free(ids);
    const char *bad[] = {"", ",", "1,", ",1", "1,,2", "1, 2", "+1", "-1", "1;2", "2147483648", "0x10", "1 "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ids = (int32_t *)&n;
        CHECK_MSG(moe_client_ids_parse(bad[i], &ids, &n, &err) == MOE_ERR && ids == NULL, "'%s' accepted", bad[i]);
    }
    CHECK(moe_client_ids_parse("1,,2", &ids, &n, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "id 2 is empty");
    /* The cap on the count. */
    size_t big = (size_t)MOE_CLIENT_MAX_PROMPT_IDS + 1;
    char *s = malloc(2 * big);
    for (size_t i = 0; i < big; i++) s[2 * i] = '7', s[2 * i + 1] = ',';
    s[2 * big - 1] = 0;
    CHECK(moe_client_ids_parse(s, &ids, &n, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "more than 262144 ids");
    s[2 * (big - 1) - 1] = 0;
    CHECK(moe_client_ids_parse(s, &ids, &n, &err) == MOE_OK && n == big - 1);
    free(ids);
    free(s);
}

static void test_lines(void)
{
    moe_client_params def;
    memset(&def, 0, sizeof def);
    def.has_temp = true;
    def.temp = 0.5f;
    moe_client_line l;
    moe_err err;

    CHECK(parse("", &def, &l, &err) == MOE_OK && l.kind == MOE_CLIENT_LINE_SKIP);
    CHECK(parse("   \t", &def, &l, &err) == MOE_OK && l.kind == MOE_CLIENT_LINE_SKIP);
    CHECK(parse("# ids:1 2", &def, &l, &err) == MOE_OK && l.kind == MOE_CLIENT_LINE_SKIP);
    CHECK(parse("\r", &def, &l, &err) == MOE_OK && l.kind == MOE_CLIENT_LINE_SKIP);

    CHECK(parse("ids:1,2,3 16", &def, &l, &err) == MOE_OK);
    CHECK(l.kind == MOE_CLIENT_LINE_IDS && l.n_ids == 3 && l.ids[1] == 2 && l.params.max_tokens == 16);
    CHECK(l.params.has_temp && l.params.temp == 0.5f && !l.params.has_seed);
    moe_client_line_free(&l);

    CHECK(parse("ids:9 4 seed=7 temp=0 top_p=0.9 top_k=40 min_p=0.05 repeat_penalty=1.1 repeat_last_n=64 "
                "deadline_ms=250\r",
                &def, &l, &err) == MOE_OK);
    CHECK(l.params.has_seed && l.params.seed == 7 && l.params.temp == 0.0f && l.params.top_p == 0.9f);
    CHECK(l.params.top_k == 40 && l.params.min_p == 0.05f && l.params.repeat_penalty == 1.1f);
    CHECK(l.params.repeat_last_n == 64 && l.params.deadline_ms == 250);
    moe_client_line_free(&l);

    CHECK(parse("  ids:9\t\t4\t seed=1  ", &def, &l, &err) == MOE_OK && l.params.max_tokens == 4 && l.params.seed == 1);
    moe_client_line_free(&l);

    CHECK(parse("text:Hello, world  \t32", &def, &l, &err) == MOE_OK);
    CHECK(l.kind == MOE_CLIENT_LINE_TEXT && !strcmp(l.text, "Hello, world  ") && l.text_len == 14);
    CHECK(l.params.max_tokens == 32);
    moe_client_line_free(&l);

    CHECK(parse("text:a\\nb\\tc\\\\d\\r\t1 top_k=3", &def, &l, &err) == MOE_OK);
    CHECK(!strcmp(l.text, "a\nb\tc\\d\r") && l.params.top_k == 3);
    moe_client_line_free(&l);

    /* UTF-8 passes through untouched. */
    CHECK(parse("text:caf\xc3\xa9 \xe6\x97\xa5\t2", &def, &l, &err) == MOE_OK && !strcmp(l.text, "caf\xc3\xa9 \xe6\x97\xa5"));
    moe_client_line_free(&l);

    static const struct {
        const char *line, *err;
    } bad[] = {
        {"ids:1,2", "max_tokens is missing"},
        {"ids:1,2 ", "max_tokens is missing"},
        {"ids: 4", "ids: empty id list"},
        {"ids:1,x 4", "ids: id 2 ('x') is not a token id"},
        {"ids:1 0", "max_tokens: 0 is out of range"},
        {"ids:1 4x", "max_tokens: '4x' is not an integer"},
        {"ids:1 4 seed", "option 'seed' is not name=value"},
        {"ids:1 4 =3", "is not name=value"},
        {"ids:1 4 seed=", "seed: expected an unsigned integer"},
        {"ids:1 4 top_p=2", "top_p: 2 is out of range"},
        {"ids:1 4 temp=-1", "temp: -1 is out of range"},
        {"ids:1 4 color=red", "color: unknown parameter 'color'"},
        {"ids:1 4 max_tokens=5", "max_tokens is the field after the prompt"},
        {"text:no tab 4", "no TAB after the prompt"},
        {"text:\t4", "the prompt is empty"},
        {"text:bad \\q\t4", "unknown escape '\\q'"},
        {"text:lone \\\t4", "lone backslash"},
        {"text:ok\t", "max_tokens is missing"},
        {"prompt:hi\t4", "starts with 'ids:' or 'text:'"},
        {"IDS:1 4", "starts with 'ids:' or 'text:'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err.msg[0] = 0;
        int rc = parse(bad[i].line, &def, &l, &err);
        CHECK_MSG(rc == MOE_ERR, "'%s' accepted", bad[i].line);
        CHECK_CONTAINS(err.msg, bad[i].err);
        CHECK(l.text == NULL && l.ids == NULL);
    }
    /* A NUL byte inside the line. */
    CHECK(moe_client_line_parse("ids:1\0 4", 8, &def, &l, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "NUL");
    /* An over-long field does not overflow anything. */
    char longline[600];
    memset(longline, '9', sizeof longline);
    memcpy(longline, "ids:1 ", 6);
    longline[sizeof longline - 1] = 0;
    CHECK(parse(longline, &def, &l, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "is not an integer");
}

static void test_escape(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    const char s[] = "a\nb\tc\\d\re\x01\x7f\xc3\xa9";
    moe_client_escape_write(f, s, sizeof s - 1);
    fclose(f);
    CHECK_MSG(!strcmp(buf, "a\\nb\\tc\\\\d\\re\\x01\\x7f\xc3\xa9"), "escaped: %s", buf);
    free(buf);
}

static void test_median(void)
{
    double a[] = {5, 1, 3};
    CHECK(moe_client_median(a, 3) == 3);
    double b[] = {4, 1, 3, 2};
    CHECK(moe_client_median(b, 4) == 2.5);
    CHECK(moe_client_median(NULL, 0) == 0);
}

int main(void)
{
    test_params();
    test_ids();
    test_lines();
    test_escape();
    test_median();
    return check_summary("client_req_test");
}
