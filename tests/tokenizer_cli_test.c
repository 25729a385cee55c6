/*
 * tokenizer_cli_test — moe-tokenize as a user runs it: ids on stdout,
 * --bos, --special, --pieces, --decode, --chat (ids and --render against
 * chat.tsv), and clear errors with the documented exit status (1 bad
 * input/file, 2 bad flags).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "tokenizer_util.h"

static char dir[256], bin[4096], model[4096];

/* Runs a shell command with stdin from a file holding `in` (len bytes);
 * returns the exit status, stdout in *out and stderr in *errs (malloc'd). */
static int run(const char *in, size_t len, const char *args, char **out, char **errs)
{
    char inp[512], outp[512], errp[512], cmd[16384];
    snprintf(inp, sizeof inp, "%s/in", dir);
    snprintf(outp, sizeof outp, "%s/out", dir);
    snprintf(errp, sizeof errp, "%s/err", dir);
    FILE *f = fopen(inp, "wb");
    if (len) fwrite(in, 1, len, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s/moe-tokenize' %s <'%s' >'%s' 2>'%s'", bin, args, inp, outp, errp);
    int st = system(cmd);
    *out = tu_read_file(outp, NULL);
    *errs = tu_read_file(errp, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define RUN(in, args) (free(o), free(e), o = NULL, e = NULL, run((in), strlen(in), (args), &o, &e))

int main(void)
{
    const char *b = getenv("MOE_BIN");
    if (!b) {
        fprintf(stderr, "MOE_BIN is not set\n");
        return 2;
    }
    snprintf(bin, sizeof bin, "%s", b);
    snprintf(dir, sizeof dir, "/tmp/moe-tok-cli-XXXXXX");
    if (!mkdtemp(dir)) return 2;
    char m[8192];
    snprintf(model, sizeof model, "%s", fixture_path("tokenizer/deepseek-v3-vocab.gguf"));
    char *o = NULL, *e = NULL;

    snprintf(m, sizeof m, "-m '%s'", model);
    CHECK(RUN("Hello world", m) == 0 && !strcmp(o, "19923 2058\n"));
    snprintf(m, sizeof m, "-m '%s' --bos", model);
    CHECK(RUN("Hello world", m) == 0 && !strcmp(o, "0 19923 2058\n"));
    snprintf(m, sizeof m, "-m '%s' --special", model);
    CHECK(RUN("<\xef\xbd\x9cUser\xef\xbd\x9c>Hi", m) == 0 && !strcmp(o, "128803 23166\n"));
    snprintf(m, sizeof m, "-m '%s'", model);
    CHECK(RUN("<\xef\xbd\x9cUser\xef\xbd\x9c>Hi", m) == 0 && strncmp(o, "128803", 6) != 0);
    snprintf(m, sizeof m, "-m '%s' --pieces", model);
    CHECK(RUN("Hi\n", m) == 0 && !strcmp(o, "23166\tHi\n201\t\\n\n"));
    CHECK(RUN("", m) == 0 && !strcmp(o, ""));

    /* --decode: every case of cases.tsv comes back byte for byte. */
    char *cases = tu_read_file(fixture_path("tokenizer/cases.tsv"), NULL);
    CHECK_MSG(cases != NULL, "fixture cases.tsv is missing");
    int n = 0, ok = 0;
    snprintf(m, sizeof m, "-m '%s' --decode", model);
    for (char *p = cases, *nl; cases && *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl) break;
        *nl = 0;
        char *f[3];
        if (tu_fields(p, f, 3) != 2) continue;
        size_t hl = strlen(f[0]);
        char *text = malloc(hl / 2 + 1);
        tu_unhex(f[0], hl, text);
        free(o), free(e);
        size_t ol = 0;
        int rc = run(f[1], strlen(f[1]), m, &o, &e);
        char outp[512];
        snprintf(outp, sizeof outp, "%s/out", dir);
        free(o);
        o = tu_read_file(outp, &ol);
        bool same = rc == 0 && ol == hl / 2 && memcmp(o, text, ol) == 0;
        CHECK_MSG(same, "--decode of case %d differs", n + 1);
        ok += same;
        n++;
        free(text);
        if (n == 12) break; /* a dozen cases: each is a process start */
    }
    printf("moe-tokenize --decode: %d/%d cases byte-identical\n", ok, n);
    free(cases);
    CHECK(RUN("19923 129280", m) == 1 && strstr(e, "out of range"));
    CHECK(RUN("19923 abc", m) == 1 && strstr(e, "token 2"));
    CHECK(RUN("-1", m) == 1);

    /* --chat: case 2 of deepseek-v3 from chat.tsv. */
    char *chat = tu_read_file(fixture_path("tokenizer/chat.tsv"), NULL);
    CHECK_MSG(chat != NULL, "fixture chat.tsv is missing");
    char *line2 = chat ? strstr(chat, "deepseek-v3\t2\t") : NULL;
    CHECK(line2 != NULL);
    if (line2) {
        *strchr(line2, '\n') = 0;
        char *f[5];
        CHECK(tu_fields(line2, f, 5) == 4);
        char jp[512];
        snprintf(jp, sizeof jp, "%s/conv.json", dir);
        FILE *jf = fopen(jp, "wb");
        fputs(f[2], jf);
        fclose(jf);
        snprintf(m, sizeof m, "-m '%s' --chat '%s'", model, jp);
        CHECK(RUN("", m) == 0 && !strcmp(o, "0 3476 477 260 11502 22896 16 128803 3085 344 82101 33 128804\n"));
        snprintf(m, sizeof m, "-m '%s' --chat '%s' --render", model, jp);
        size_t hl = strlen(f[3]);
        char *want = malloc(hl / 2 + 1);
        tu_unhex(f[3], hl, want);
        want[hl / 2] = 0;
        CHECK(RUN("", m) == 0 && !strcmp(o, want));
        /* Without the key the generation prompt is there (the default, as in
         * moe-run and the server); with it false, it is not. */
        static const char *const agp[] = {
            "{\"messages\":[{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"},"
            "{\"role\":\"user\",\"content\":\"What is MLA?\"}]}",
            "{\"messages\":[{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"},"
            "{\"role\":\"user\",\"content\":\"What is MLA?\"}],\"add_generation_prompt\":false}",
        };
        char ap[512];
        snprintf(ap, sizeof ap, "%s/agp.json", dir);
        for (int k = 0; k < 2; k++) {
            FILE *af = fopen(ap, "wb");
            fputs(agp[k], af);
            fclose(af);
            snprintf(m, sizeof m, "-m '%s' --chat '%s'", model, ap);
            CHECK(RUN("", m) == 0 && !strcmp(o, k == 0 ? "0 3476 477 260 11502 22896 16 128803 3085 344 82101 33 128804\n"
                                                       : "0 3476 477 260 11502 22896 16 128803 3085 344 82101 33\n"));
            snprintf(m, sizeof m, "-m '%s' --chat '%s' --render", model, ap);
            size_t wl = strlen(want), al = strlen("<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>");
            CHECK(RUN("", m) == 0 && strlen(o) == (k == 0 ? wl : wl - al) && !strncmp(o, want, strlen(o)));
        }
        free(want);
        snprintf(m, sizeof m, "-m '%s' --chat '%s' --template deepseek-v9", model, jp);
        CHECK(RUN("", m) == 1 && strstr(e, "unknown chat format"));
        snprintf(m, sizeof m, "-m '%s' --chat '%s' --bos", model, jp);
        CHECK(RUN("", m) == 2);
        snprintf(m, sizeof m, "-m '%s' --chat '%s/missing.json'", model, dir);
        CHECK(RUN("", m) == 1 && strstr(e, "missing.json"));
        jf = fopen(jp, "wb");
        fputs("{\"messages\":[{\"role\":\"user\"}]}", jf);
        fclose(jf);
        snprintf(m, sizeof m, "-m '%s' --chat '%s'", model, jp);
        CHECK(RUN("", m) == 1 && strstr(e, "without content"));
    }
    free(chat);

    /* Flags and files. */
    CHECK(RUN("", "--help") == 0 && strstr(o, "usage: moe-tokenize"));
    CHECK(RUN("", "") == 2 && strstr(e, "-m FILE.gguf is required"));
    snprintf(m, sizeof m, "-m '%s' --frobnicate", model);
    CHECK(RUN("", m) == 2 && strstr(e, "--frobnicate"));
    CHECK(RUN("x", "-m /nonexistent/x.gguf") == 1 && strstr(e, "/nonexistent/x.gguf"));
    snprintf(m, sizeof m, "-m '%s'", fixture_path("tokenizer/cases.tsv"));
    CHECK(RUN("x", m) == 1 && strlen(e) > 0);

    free(o);
    free(e);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_summary("tokenizer_cli_test");
}
