/*
 * reqline_test — the request-file format (core/reqline.c) and the helpers
 * it stands on: token-id lists (moe_ids_parse), sampling parameters by
 * name with their ranges (moe_sampler_cfg_set), every prompt form, escapes,
 * options over a base, stop strings and ids with their bounds, every line
 * error, and whole files where a bad line becomes its own entry.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "io.h"
#include "reqline.h"
#include "sampler.h"

static int parse(const char *line, const moe_sampler_cfg *base, moe_reqline *out, moe_err *err)
{
    return moe_reqline_parse(line, strlen(line), 7, base, out, err);
}

static bool is_set(const moe_sampler_cfg *c, moe_sampler_param p)
{
    return (c->set >> p) & 1u;
}

/* The table's ranges as a line option sees them. */
static void test_params(void)
{
    static const struct {
        const char *opt;
        bool ok;
    } cases[] = {
        {"temp=0", true},          {"temp=1000", true},         {"temp=1000.5", false}, {"temp=inf", false},
        {"temp=nan", false},       {"temperature=0.5", true},   {"top_p=1", true},      {"top_p=0", false},
        {"top_p=1e-9", true},      {"top_k=0", true},           {"top_k=2147483648", false},
        {"min_p=1", true},         {"min_p=-0.1", false},       {"repeat_penalty=100", true},
        {"repeat_penalty=0", false}, {"repetition_penalty=1.1", true}, {"repeat_last_n=-1", true},
        {"repeat_last_n=-2", false}, {"seed=0", true},          {"seed=18446744073709551615", true},
        {"seed=18446744073709551616", false}, {"seed=+1", false}, {"seed=-1", false}, {"seed=", false},
        {"top-k=3", true},         {"deadline_ms=86400000", true}, {"deadline_ms=86400001", false},
        {"deadline_ms=0", false},  {"top_k=1.5", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char line[128];
        snprintf(line, sizeof line, "1 4 %s", cases[i].opt);
        moe_reqline r;
        moe_err err = {{0}};
        int rc = parse(line, NULL, &r, &err);
        CHECK_MSG((rc == MOE_OK) == cases[i].ok, "'%s': rc %d (%s)", cases[i].opt, rc, err.msg);
        moe_reqline_free(&r);
    }
    moe_reqline r;
    moe_err err;
    CHECK(parse("1 4 seed=18446744073709551615", NULL, &r, &err) == MOE_OK && r.sampling.seed == UINT64_MAX &&
          is_set(&r.sampling, MOE_SP_SEED));
    moe_reqline_free(&r);
    CHECK(parse("1 4 top_p=0", NULL, &r, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "top_p = 0 is out of range (0, 1]");
    CHECK(parse("1 4 color=red", NULL, &r, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "unknown option 'color'");
}

static void test_ids(void)
{
    int32_t *ids;
    size_t n;
    moe_err err;
    CHECK(moe_ids_parse("1,2,3", 5, &ids, &n, &err) == MOE_OK && n == 3 && ids[0] == 1 && ids[2] == 3);
    free(ids);
    CHECK(moe_ids_parse("0,2147483647", 12, &ids, &n, &err) == MOE_OK && n == 2 && ids[1] == INT32_MAX);
    free(ids);
    /* length, not NUL, ends the list */
    CHECK(moe_ids_parse("4,5,6", 3, &ids, &n, &err) == MOE_OK && n == 2 && ids[1] == 5);
    free(ids);
    const char *bad[] = {"", ",", "1,", ",1", "1,,2", "1, 2", "+1", "-1", "1;2", "2147483648", "0x10", "1 "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ids = (int32_t *)&n;
        CHECK_MSG(moe_ids_parse(bad[i], strlen(bad[i]), &ids, &n, &err) == MOE_ERR && ids == NULL, "'%s' accepted",
                  bad[i]);
    }
    CHECK(moe_ids_parse("1,,2", 4, &ids, &n, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "id 2 is empty");
    /* The cap on the count. */
    size_t big = (size_t)MOE_IDS_MAX + 1;
    char *s = malloc(2 * big);
    for (size_t i = 0; i < big; i++) s[2 * i] = '7', s[2 * i + 1] = ',';
    CHECK(moe_ids_parse(s, 2 * big - 1, &ids, &n, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "more than 262144 ids");
    CHECK(moe_ids_parse(s, 2 * (big - 1) - 1, &ids, &n, &err) == MOE_OK && n == big - 1);
    free(ids);
    free(s);
}

static void test_lines(void)
{
    moe_sampler_cfg base;
    moe_sampler_cfg_default(&base);
    moe_err err;
    CHECK(moe_sampler_cfg_set(&base, "temp", "0.5", &err) == MOE_OK);
    moe_reqline l;

    CHECK(parse("", &base, &l, &err) == MOE_OK && l.kind == MOE_REQLINE_SKIP && l.line == 7);
    CHECK(parse("   \t", &base, &l, &err) == MOE_OK && l.kind == MOE_REQLINE_SKIP);
    CHECK(parse("# ids:1 2", &base, &l, &err) == MOE_OK && l.kind == MOE_REQLINE_SKIP);
    CHECK(parse("  # 1 2", &base, &l, &err) == MOE_OK && l.kind == MOE_REQLINE_SKIP);
    CHECK(parse("\r", &base, &l, &err) == MOE_OK && l.kind == MOE_REQLINE_SKIP);

    CHECK(parse("ids:1,2,3 16", &base, &l, &err) == MOE_OK);
    CHECK(l.kind == MOE_REQLINE_IDS && l.n_ids == 3 && l.ids[1] == 2 && l.max_tokens == 16 && l.line == 7);
    CHECK(l.sampling.temperature == 0.5f && is_set(&l.sampling, MOE_SP_TEMP) && !is_set(&l.sampling, MOE_SP_SEED));
    CHECK(l.deadline_ms == 0 && l.n_stop == 0 && l.n_stop_ids == 0 && l.error == NULL);
    moe_reqline_free(&l);

    /* The bare list of moe-worker --batch, its options, and max_tokens 0 (prompt only). */
    CHECK(parse("5,6 8 seed=3 temp=0.8 top_p=0.9 top_k=20 min_p=0.05", NULL, &l, &err) == MOE_OK);
    CHECK(l.kind == MOE_REQLINE_IDS && l.n_ids == 2 && l.ids[0] == 5 && l.max_tokens == 8);
    CHECK(l.sampling.seed == 3 && l.sampling.temperature == 0.8f && l.sampling.top_p == 0.9f);
    CHECK(l.sampling.top_k == 20 && l.sampling.min_p == 0.05f && l.sampling.repeat_last_n == 64);
    CHECK(l.sampling.set == (1u << MOE_SP_SEED | 1u << MOE_SP_TEMP | 1u << MOE_SP_TOP_P | 1u << MOE_SP_TOP_K |
                             1u << MOE_SP_MIN_P));
    moe_reqline_free(&l);
    CHECK(parse("1,2,3 0", NULL, &l, &err) == MOE_OK && l.max_tokens == 0);
    CHECK(l.logprobs == -1 && !l.prompt_logprobs);
    moe_reqline_free(&l);

    /* logprobs, prompt logprobs, min_tokens and ignore_eos */
    CHECK(parse("1,2,3 0 logprobs=20 prompt_logprobs=1 min_tokens=5 ignore_eos=1", NULL, &l, &err) == MOE_OK);
    CHECK(l.logprobs == 20 && l.prompt_logprobs && l.sampling.min_tokens == 5 && l.sampling.ignore_eos);
    CHECK(is_set(&l.sampling, MOE_SP_MIN_TOKENS) && is_set(&l.sampling, MOE_SP_IGNORE_EOS));
    moe_reqline_free(&l);
    CHECK(parse("1,2,3 4 logprobs=0", NULL, &l, &err) == MOE_OK && l.logprobs == 0);
    moe_reqline_free(&l);
    CHECK(parse("1,2,3 4 logprobs=21", NULL, &l, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "logprobs");
    CHECK(parse("1,2,3 4 prompt_logprobs=1", NULL, &l, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "prompt_logprobs needs logprobs=N");
    CHECK(parse("1,2,3 4 min_tokens=-1", NULL, &l, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "min_tokens");
    CHECK(parse("1,2,3 4 ignore_eos=yes", NULL, &l, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "ignore_eos");

    CHECK(parse("ids:9 4 seed=7 temp=0 top_p=0.9 top_k=40 min_p=0.05 repeat_penalty=1.1 repeat_last_n=32 "
                "deadline_ms=250\r",
                &base, &l, &err) == MOE_OK);
    CHECK(l.sampling.seed == 7 && l.sampling.temperature == 0.0f && l.sampling.top_p == 0.9f);
    CHECK(l.sampling.top_k == 40 && l.sampling.min_p == 0.05f && l.sampling.repeat_penalty == 1.1f);
    CHECK(l.sampling.repeat_last_n == 32 && l.deadline_ms == 250);
    moe_reqline_free(&l);

    CHECK(parse("  ids:9\t\t4\t seed=1  seed=2 ", &base, &l, &err) == MOE_OK && l.max_tokens == 4 && l.sampling.seed == 2);
    moe_reqline_free(&l);

    CHECK(parse("text:Hello, world  \t32", &base, &l, &err) == MOE_OK);
    CHECK(l.kind == MOE_REQLINE_TEXT && !strcmp(l.text, "Hello, world  ") && l.text_len == 14 && l.max_tokens == 32);
    moe_reqline_free(&l);

    CHECK(parse("text:a\\nb\\tc\\\\d\\r\\se\t1 top_k=3", &base, &l, &err) == MOE_OK);
    CHECK(!strcmp(l.text, "a\nb\tc\\d\r e") && l.sampling.top_k == 3);
    moe_reqline_free(&l);

    /* UTF-8 passes through untouched. */
    CHECK(parse("text:caf\xc3\xa9 \xe6\x97\xa5\t2", &base, &l, &err) == MOE_OK && !strcmp(l.text, "caf\xc3\xa9 \xe6\x97\xa5"));
    moe_reqline_free(&l);

    /* Stop strings (escaped) and stop ids, in order. */
    CHECK(parse("1 4 stop=\\n\\n stop=The\\send stop_id=2 stop-id=7 stop=a=b", NULL, &l, &err) == MOE_OK);
    CHECK(l.n_stop == 3 && !strcmp(l.stop[0], "\n\n") && !strcmp(l.stop[1], "The end") && !strcmp(l.stop[2], "a=b"));
    CHECK(l.n_stop_ids == 2 && l.stop_ids[0] == 2 && l.stop_ids[1] == 7 && l.sampling.n_stop == 0);
    moe_reqline_free(&l);

    /* The bounds: 16 stop strings of up to 256 bytes, MOE_SAMPLER_MAX_STOP ids. */
    char line[8192];
    size_t k = (size_t)snprintf(line, sizeof line, "1 4");
    for (int i = 0; i < MOE_REQLINE_MAX_STOP; i++) k += (size_t)snprintf(line + k, sizeof line - k, " stop=s%d", i);
    for (int i = 0; i < MOE_SAMPLER_MAX_STOP; i++) k += (size_t)snprintf(line + k, sizeof line - k, " stop_id=%d", i);
    CHECK(parse(line, NULL, &l, &err) == MOE_OK && l.n_stop == MOE_REQLINE_MAX_STOP && l.n_stop_ids == MOE_SAMPLER_MAX_STOP);
    moe_reqline_free(&l);
    snprintf(line + k, sizeof line - k, " stop=x");
    CHECK(parse(line, NULL, &l, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "stop: at most 16 stop strings");
    snprintf(line + k, sizeof line - k, " stop_id=99");
    CHECK(parse(line, NULL, &l, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "stop_id: at most 16 stop ids");
    k = (size_t)snprintf(line, sizeof line, "1 4 stop=");
    for (int i = 0; i < MOE_REQLINE_MAX_STOP_LEN; i++) line[k++] = 'x';
    line[k] = 0;
    CHECK(parse(line, NULL, &l, &err) == MOE_OK && strlen(l.stop[0]) == MOE_REQLINE_MAX_STOP_LEN);
    moe_reqline_free(&l);
    line[k++] = 'x';
    line[k] = 0;
    CHECK(parse(line, NULL, &l, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "stop: a stop string has 1..256 bytes, not 257");

    static const struct {
        const char *line, *err;
    } bad[] = {
        {"ids:1,2", "max_tokens is missing"},
        {"ids:1,2 ", "max_tokens is missing"},
        {"ids: 4", "ids: empty id list"},
        {"ids:1,x 4", "ids: id 2 ('x') is not a token id"},
        {"1,x 4", "ids: id 2 ('x') is not a token id"},
        {"ids:1 -1", "max_tokens: -1 is out of range"},
        {"ids:1 1048577", "max_tokens: 1048577 is out of range"},
        {"ids:1 4x", "max_tokens: '4x' is not an integer"},
        {"ids:1 123456789012345678901234", "max_tokens: '12345678901234567890...' is not an integer"},
        {"ids:1 4 seed", "option 'seed' is not name=value"},
        {"ids:1 4 =3", "is not name=value"},
        {"ids:1 4 seed=", "seed: empty value"},
        {"ids:1 4 top_p=2", "top_p = 2 is out of range"},
        {"ids:1 4 temp=-1", "temp = -1 is out of range"},
        {"ids:1 4 max_tokens=5", "max_tokens is the field after the prompt"},
        {"ids:1 4 stop=", "stop: a stop string has 1..256 bytes, not 0"},
        {"ids:1 4 stop=\\q", "stop: unknown escape '\\q'"},
        {"ids:1 4 stop_id=x", "stop_id: id 1 ('x') is not a token id"},
        {"ids:1 4 stop_id=1,2", "stop_id: one id per option"},
        {"ids:1 4 deadline_ms=soon", "deadline_ms: 'soon' is not an integer"},
        {"text:no tab 4", "no TAB after the prompt"},
        {"text:\t4", "the prompt is empty"},
        {"text:bad \\q\t4", "text: unknown escape '\\q'"},
        {"text:lone \\\t4", "lone backslash"},
        {"text:ok\t", "max_tokens is missing"},
        {"prompt:hi\t4", "starts with 'ids:', 'text:' or a token id list"},
        {"IDS:1 4", "starts with 'ids:', 'text:' or a token id list"},
        {"-1 4", "starts with 'ids:', 'text:' or a token id list"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err.msg[0] = 0;
        int rc = parse(bad[i].line, &base, &l, &err);
        CHECK_MSG(rc == MOE_ERR, "'%s' accepted", bad[i].line);
        CHECK_CONTAINS(err.msg, bad[i].err);
        CHECK(l.text == NULL && l.ids == NULL && l.stop == NULL && l.stop_ids == NULL && l.kind == MOE_REQLINE_SKIP);
    }
    /* A NUL byte inside the line. */
    CHECK(moe_reqline_parse("ids:1\0 4", 8, 1, NULL, &l, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "NUL");
    /* Over-long fields do not overflow anything. */
    char longline[3000];
    memset(longline, '9', sizeof longline);
    memcpy(longline, "ids:1 ", 6);
    longline[sizeof longline - 1] = 0;
    CHECK(parse(longline, NULL, &l, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "is not an integer");
    memcpy(longline, "ids:1 4 stop=", 13);
    CHECK(parse(longline, NULL, &l, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "is longer than 1024 bytes");
}

/* Whole files: bad lines are entries of their own, the others stay valid. */
static void test_list(void)
{
    const char file[] = "# requests\n"
                        "1,2 4\n"
                        "\n"
                        "ids:3 0 top_p=5\r\n"
                        "text:hi\\sthere\t2 stop=x\n"
                        "bogus\n"
                        "ids:8 1 seed=9";
    moe_reqline_list l;
    moe_err err;
    CHECK(moe_reqline_list_parse(file, sizeof file - 1, NULL, &l, &err) == MOE_OK);
    CHECK(l.n == 5 && l.n_bad == 2 && l.n_lines == 7);
    if (l.n == 5) {
        CHECK(l.items[0].kind == MOE_REQLINE_IDS && l.items[0].line == 2 && l.items[0].max_tokens == 4);
        CHECK(l.items[1].kind == MOE_REQLINE_BAD && l.items[1].line == 4 && l.items[1].ids == NULL);
        CHECK_CONTAINS(l.items[1].error, "line 4: top_p = 5 is out of range");
        CHECK(l.items[2].kind == MOE_REQLINE_TEXT && l.items[2].line == 5 && !strcmp(l.items[2].text, "hi there"));
        CHECK(l.items[2].n_stop == 1 && !strcmp(l.items[2].stop[0], "x"));
        CHECK(l.items[3].kind == MOE_REQLINE_BAD && l.items[3].line == 6);
        CHECK_CONTAINS(l.items[3].error, "line 6: a request starts with");
        CHECK(l.items[4].kind == MOE_REQLINE_IDS && l.items[4].line == 7 && l.items[4].sampling.seed == 9);
    }
    moe_reqline_list_free(&l);
    CHECK(l.items == NULL && l.n == 0);

    /* No requests at all is not an error here: the caller says what it means. */
    CHECK(moe_reqline_list_parse("# nothing\n\n", 11, NULL, &l, &err) == MOE_OK && l.n == 0 && l.n_lines == 2);
    moe_reqline_list_free(&l);

    /* The cap on requests per file. */
    size_t n = (size_t)MOE_REQLINE_MAX_REQUESTS + 1;
    char *big = malloc(4 * n);
    for (size_t i = 0; i < n; i++) memcpy(big + 4 * i, "1 1\n", 4);
    CHECK(moe_reqline_list_parse(big, 4 * n, NULL, &l, &err) == MOE_ERR && l.items == NULL);
    CHECK_CONTAINS(err.msg, "more than 1048576 requests");
    CHECK(moe_reqline_list_parse(big, 4 * (n - 1), NULL, &l, &err) == MOE_OK && l.n == n - 1);
    moe_reqline_list_free(&l);
    free(big);

    /* From a file, and a missing one. */
    char path[] = "/tmp/reqline_test.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("1 2\nx\n", f);
    fclose(f);
    CHECK(moe_reqline_list_read(path, NULL, &l, &err) == MOE_OK && l.n == 2 && l.n_bad == 1);
    moe_reqline_list_free(&l);
    remove(path);
    CHECK(moe_reqline_list_read("/nonexistent/reqs", NULL, &l, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "/nonexistent/reqs");
}

int main(void)
{
    test_params();
    test_ids();
    test_lines();
    test_list();
    return check_summary("reqline_test");
}
