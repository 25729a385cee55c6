/*
 * chat_test — the chat templates against the shared fixtures:
 *   every line of tokenizer/chat.tsv rendered byte-identical (conversation
 *   parsed from the line's JSON), and its ids (listed in the fixtures'
 *   README) from moe_chat_tokenize, starting with exactly one BOS;
 *   template recognition (the V3 GGUF's template, the V2 template text from
 *   the README, a modified template rejected); role and JSON errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "check.h"
#include "gguf.h"
#include "tokenizer.h"
#include "tokenizer_util.h"

#define MAX_IDS 256

/* The README's id list for (template, case): "deepseek-v3 1  0 128803 ..." */
static long readme_ids(const char *readme, const char *tmpl, int kase, int32_t *ids)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "\n%s %d  ", tmpl, kase);
    const char *p = readme ? strstr(readme, prefix) : NULL;
    if (!p) return -1;
    p += strlen(prefix);
    const char *e = strchr(p, '\n');
    char line[4096];
    size_t l = (size_t)(e - p) < sizeof line - 1 ? (size_t)(e - p) : sizeof line - 1;
    memcpy(line, p, l);
    line[l] = 0;
    return tu_ids(line, ids, MAX_IDS);
}

/* The deepseek-v2 template text from the README's code block. */
static char *readme_v2_template(const char *readme, size_t *len)
{
    const char *p = readme ? strstr(readme, "holding two newline characters:\n\n```\n") : NULL;
    if (!p) return NULL;
    p = strchr(p, '`') + 4;
    const char *e = strstr(p, "\n```");
    if (!e) return NULL;
    *len = (size_t)(e - p);
    char *s = malloc(*len + 1);
    memcpy(s, p, *len);
    s[*len] = 0;
    return s;
}

int main(void)
{
    moe_err err = {{0}};
    moe_gguf *g = NULL;
    moe_tokenizer *tok = NULL;
    CHECK_MSG(moe_gguf_open(&g, fixture_path("tokenizer/deepseek-v3-vocab.gguf"), &err) == 0, "%s", err.msg);
    if (!g) return check_summary("chat_test");
    CHECK_MSG(moe_tokenizer_load(&tok, g, &err) == 0, "%s", err.msg);
    if (!tok) return check_summary("chat_test");

    /* Recognition. */
    moe_chat *from_gguf = NULL;
    CHECK_MSG(moe_chat_init(&from_gguf, g, tok, &err) == 0, "%s", err.msg);
    CHECK(from_gguf && moe_chat_get_format(from_gguf) == MOE_CHAT_DEEPSEEK_V3);
    moe_chat_free(from_gguf);
    char *readme = tu_read_file(fixture_path("README.md"), NULL);
    CHECK_MSG(readme != NULL, "fixture README.md is missing");
    size_t v2len = 0;
    char *v2 = readme_v2_template(readme, &v2len);
    CHECK_MSG(v2 != NULL, "README has no deepseek-v2 template block");
    moe_chat_format f;
    if (v2) {
        CHECK(moe_chat_detect(v2, v2len, &f, &err) == 0 && f == MOE_CHAT_DEEPSEEK_V2);
        v2[v2len / 2] ^= 1; /* any change to the text: unknown */
        CHECK(moe_chat_detect(v2, v2len, &f, &err) == MOE_ERR);
        CHECK_CONTAINS(err.msg, "unknown chat template");
        free(v2);
    }
    const char *tmpl;
    uint64_t tlen;
    CHECK(moe_gguf_get_str(g, "tokenizer.chat_template", &tmpl, &tlen, &err) == 0);
    CHECK(moe_chat_detect(tmpl, tlen - 1, &f, &err) == MOE_ERR); /* truncated */
    CHECK(moe_chat_detect("{{ messages }}", 14, &f, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "fingerprint");

    moe_chat *chat[2] = {NULL, NULL};
    CHECK(moe_chat_init_format(&chat[0], MOE_CHAT_DEEPSEEK_V3, tok, &err) == 0);
    CHECK(moe_chat_init_format(&chat[1], MOE_CHAT_DEEPSEEK_V2, tok, &err) == 0);

    /* chat.tsv */
    size_t flen;
    char *file = tu_read_file(fixture_path("tokenizer/chat.tsv"), &flen);
    CHECK_MSG(file != NULL, "fixture tokenizer/chat.tsv is missing");
    int n = 0, n_text = 0, n_ids = 0;
    int32_t want[MAX_IDS];
    moe_tokens got = {0};
    for (char *p = file, *nl; file && *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl) break;
        *nl = 0;
        char *fl[5];
        int nf = tu_fields(p, fl, 5);
        CHECK_MSG(nf == 4, "chat.tsv line %d: %d fields", n + 1, nf);
        if (nf != 4) continue;
        n++;
        int which = !strcmp(fl[0], "deepseek-v2");
        CHECK(moe_chat_format_parse(fl[0], &f, &err) == 0 && (int)f == which);
        moe_chat_conv conv;
        int rc = moe_chat_conv_parse(&conv, fl[2], strlen(fl[2]), &err);
        CHECK_MSG(rc == 0, "chat.tsv line %d: %s", n, err.msg);
        if (rc) continue;
        size_t hl = strlen(fl[3]);
        char *expect = malloc(hl / 2 + 1);
        CHECK(tu_unhex(fl[3], hl, expect) == 0);
        char *text = NULL;
        size_t tl = 0;
        rc = moe_chat_render(chat[which], conv.msgs, conv.n, conv.add_generation_prompt, &text, &tl, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        bool same = rc == 0 && tl == hl / 2 && memcmp(text, expect, tl) == 0;
        CHECK_MSG(same, "chat.tsv line %d (%s case %s): rendering differs:\n  got  %s", n, fl[0], fl[1],
                  text ? text : "");
        n_text += same;
        /* Ids: one BOS (the template's), matching the README's list. */
        long nw = readme_ids(readme, fl[0], atoi(fl[1]), want);
        CHECK_MSG(nw > 0, "README has no ids for %s case %s", fl[0], fl[1]);
        moe_tokens_clear(&got);
        rc = moe_chat_tokenize(chat[which], tok, conv.msgs, conv.n, conv.add_generation_prompt, &got, &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        CHECK(got.n >= 2 && got.ids[0] == 0 && got.ids[1] != 0);
        bool ids_same = nw > 0 && got.n == (size_t)nw && memcmp(got.ids, want, got.n * sizeof *want) == 0;
        CHECK_MSG(ids_same, "chat.tsv line %d: ids differ from the README's", n);
        n_ids += ids_same;
        free(text);
        free(expect);
        moe_chat_conv_free(&conv);
    }
    printf("chat.tsv: %d/%d renderings byte-identical, %d/%d id lists identical\n", n_text, n, n_ids, n);
    CHECK(n == 10);

    /* Roles a template would drop are errors; so is bad JSON. */
    char *text = NULL;
    moe_chat_msg bad_role[] = {{"user", "hi", 2}, {"tool", "x", 1}};
    CHECK(moe_chat_render(chat[1], bad_role, 2, true, &text, NULL, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "role 'tool'");
    CHECK(moe_chat_render(chat[0], bad_role, 2, true, &text, NULL, &err) == MOE_OK);
    free(text);
    /* V3 tool outputs: closed before the assistant turn, no generation prompt after them. */
    moe_chat_msg tools[] = {{"user", "q", 1}, {"tool", "a", 1}, {"tool", "b", 1}};
    CHECK(moe_chat_render(chat[0], tools, 3, true, &text, NULL, &err) == MOE_OK);
    CHECK(text && strstr(text, "b<\xef\xbd\x9ctool\xe2\x96\x81output\xe2\x96\x81" "end\xef\xbd\x9c><\xef\xbd\x9ctool"
                               "\xe2\x96\x81outputs\xe2\x96\x81" "end\xef\xbd\x9c>") != NULL);
    CHECK(text && strstr(text, "\n<\xef\xbd\x9ctool\xe2\x96\x81output\xe2\x96\x81" "begin") != NULL);
    CHECK(text && !strstr(text, "Assistant"));
    free(text);
    static const char *bad_json[] = {
        "", "[]", "{\"messages\":[{\"role\":\"user\"}]}", "{\"messages\":[{\"role\":1,\"content\":\"x\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800\"}]}", "{\"messages\":[]} x",
        "{\"add_generation_prompt\":true}", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\x01\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", "{\"messages\":[{\"role\":\"user\",\"content\":\"x",
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        moe_chat_conv conv;
        CHECK_MSG(moe_chat_conv_parse(&conv, bad_json[i], strlen(bad_json[i]), &err) == MOE_ERR,
                  "bad JSON %zu accepted", i);
        CHECK_CONTAINS(err.msg, "chat JSON");
    }
    /* Escapes, unknown keys, nesting. */
    static const char good[] = "{\"model\":{\"a\":[1,2.5e3,null,{\"b\":\"\\\"\"}]},\"messages\":[{\"role\":\"user\","
                               "\"name\":\"x\",\"content\":\"\\u4f60\\ud83d\\ude00\\n\\t\\\\/\"}],"
                               "\"add_generation_prompt\":false}";
    moe_chat_conv conv;
    CHECK_MSG(moe_chat_conv_parse(&conv, good, sizeof good - 1, &err) == 0, "%s", err.msg);
    CHECK(conv.n == 1 && !strcmp(conv.msgs[0].role, "user") && !conv.add_generation_prompt);
    CHECK(conv.n == 1 && conv.msgs[0].content_len == 11 &&
          !memcmp(conv.msgs[0].content, "\xe4\xbd\xa0\xf0\x9f\x98\x80\n\t\\/", 11));
    moe_chat_conv_free(&conv);

    /* add_generation_prompt: absent means true (one default for moe-run,
     * moe-tokenize and the server); an explicit false still leaves the
     * assistant prefix out. */
    static const char *const agp_json[] = {
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"add_generation_prompt\":true}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"add_generation_prompt\":false}",
    };
    static const char *const agp_tail[] = {"<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>", "\n\nAssistant:"};
    for (int which = 0; which < 2; which++) {
        char *r[3] = {NULL, NULL, NULL};
        size_t rl[3] = {0, 0, 0}, tl = strlen(agp_tail[which]);
        for (int k = 0; k < 3; k++) {
            CHECK_MSG(moe_chat_conv_parse(&conv, agp_json[k], strlen(agp_json[k]), &err) == 0, "%s", err.msg);
            CHECK_MSG(conv.add_generation_prompt == (k < 2), "add_generation_prompt of JSON %d", k);
            CHECK(moe_chat_render(chat[which], conv.msgs, conv.n, conv.add_generation_prompt, &r[k], &rl[k],
                                  &err) == 0);
            bool tail = r[k] && rl[k] >= tl && !memcmp(r[k] + rl[k] - tl, agp_tail[which], tl);
            CHECK_MSG(tail == (k < 2), "%s, JSON %d: generation prompt %s", which ? "v2" : "v3", k,
                      tail ? "present" : "missing");
            moe_chat_conv_free(&conv);
        }
        /* absent == true byte for byte; false is true without the prompt */
        CHECK(r[0] && r[1] && rl[0] == rl[1] && !memcmp(r[0], r[1], rl[0]));
        CHECK(r[1] && r[2] && rl[2] < rl[1] && !memcmp(r[1], r[2], rl[2]));
        for (int k = 0; k < 3; k++) free(r[k]);
    }

    moe_tokens_free(&got);
    free(file);
    free(readme);
    moe_chat_free(chat[0]);
    moe_chat_free(chat[1]);
    moe_tokenizer_free(tok);
    moe_gguf_close(g);
    return check_summary("chat_test");
}
