/*
 * moe-tokenize — the tokenizer of a GGUF model from the command line.
 *
 *   moe-tokenize -m FILE.gguf [--bos] [--special] [--pieces] < text
 *   moe-tokenize -m FILE.gguf --decode < ids
 *   moe-tokenize -m FILE.gguf --chat conv.json [--template NAME] [--render] [--pieces]
 *
 * Exit status: 0 on success, 1 on bad input or a bad file, 2 on bad flags.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "chat.h"
#include "gguf.h"
#include "io.h"
#include "tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moe-tokenize -m FILE.gguf [options]\n"
            "Tokenizes the text on stdin with the model's tokenizer and prints the ids\n"
            "on one line, separated by spaces.\n"
            "  -m, --model FILE     GGUF file with the tokenizer (required)\n"
            "  --bos                prepend BOS (not by default)\n"
            "  --special            match special-token texts (e.g. <｜User｜>) in the input\n"
            "  --pieces             print one token per line: id, TAB, its text (escaped)\n"
            "  --decode             read ids (whitespace-separated) from stdin, write the text\n"
            "  --served             with --decode: the text as the server's clients get it (control\n"
            "                       tokens left out, invalid UTF-8 as U+FFFD)\n"
            "  --chat FILE.json     render {\"messages\":[{\"role\":..,\"content\":..}],\n"
            "                       \"add_generation_prompt\":bool} with the model's chat\n"
            "                       template and print its ids (special tokens matched, one BOS);\n"
            "                       add_generation_prompt defaults to true, as in moe-run and\n"
            "                       the server\n"
            "  --template NAME      use deepseek-v3 or deepseek-v2 instead of recognising\n"
            "                       tokenizer.chat_template\n"
            "  --render             with --chat: print the rendered prompt text, not ids\n"
            "  -h, --help           this text\n"
            "Exit status: 0 ok, 1 bad input or file, 2 bad flags.\n");
}

/* Standard input, whole (at most 1 GiB: the limit of a request file). */
static char *read_stdin(size_t *len, moe_err *err)
{
    char *b = NULL;
    return moe_file_read("-", (size_t)1 << 30, &b, len, err) ? NULL : b;
}

/* A token's bytes, printable: escapes for control bytes, backslash and
 * bytes that are not valid UTF-8. */
static void print_piece(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else if (c < 0x80) putchar(c);
        else {
            /* Whole valid UTF-8 characters as they are, stray bytes escaped. */
            size_t k = 1;
            if (c >= 0xC2 && c <= 0xDF) k = 2;
            else if (c >= 0xE0 && c <= 0xEF) k = 3;
            else if (c >= 0xF0 && c <= 0xF4) k = 4;
            bool ok = k > 1 && i + k <= n;
            for (size_t j = 1; ok && j < k; j++) ok = ((unsigned char)s[i + j] & 0xC0) == 0x80;
            if (ok) {
                fwrite(s + i, 1, k, stdout);
                i += k - 1;
            } else {
                printf("\\x%02x", c);
            }
        }
    }
}

static void print_ids(const moe_tokenizer *tok, const moe_tokens *ids, bool pieces)
{
    for (size_t i = 0; i < ids->n; i++) {
        if (pieces) {
            size_t l;
            const char *p = moe_tokenizer_token_bytes(tok, ids->ids[i], &l);
            printf("%d\t", ids->ids[i]);
            print_piece(p, l);
            putchar('\n');
        } else {
            printf(i ? " %d" : "%d", ids->ids[i]);
        }
    }
    if (!pieces) putchar('\n');
}

static int decode_stdin(const moe_tokenizer *tok, bool served, moe_err *err)
{
    size_t len;
    char *in = read_stdin(&len, err);
    if (!in) return MOE_ERR;
    moe_tokens ids = {0};
    int rc = MOE_OK;
    char *p = in;
    while (rc == MOE_OK) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        char *e = p;
        while (*e && *e != ' ' && *e != '\t' && *e != '\n' && *e != '\r') e++;
        char save = *e;
        *e = 0;
        int64_t v;
        if (moe_parse_i64(p, 0, moe_tokenizer_n_vocab(tok) - 1, &v, err)) {
            rc = moe_err_prefix(err, "token %zu", ids.n + 1);
            break;
        }
        moe_tokens_push(&ids, (int32_t)v);
        *e = save;
        p = e;
    }
    if (rc == MOE_OK && (size_t)(p - in) != len) rc = moe_err_set(err, "stdin holds a NUL byte");
    char *text = NULL;
    size_t tl = 0;
    if (rc == MOE_OK)
        rc = served ? moe_tokenizer_decode_served(tok, ids.ids, ids.n, &text, &tl, err)
                    : moe_tokenizer_decode(tok, ids.ids, ids.n, &text, &tl, err);
    if (rc == MOE_OK) fwrite(text, 1, tl, stdout);
    free(text);
    free(in);
    moe_tokens_free(&ids);
    return rc;
}

/* A conversation file is small; the cap only stops a wrong path (a model?). */
#define CHAT_FILE_MAX (64u << 20)

static int chat_file(const moe_gguf *g, const moe_tokenizer *tok, const char *path, const char *tmpl,
                     bool render, bool pieces, moe_err *err)
{
    size_t len;
    char *json;
    if (moe_file_read(path, CHAT_FILE_MAX, &json, &len, err)) return MOE_ERR;
    /* add_generation_prompt is the parser's: true unless the file says false. */
    moe_chat_conv conv;
    moe_chat *chat = NULL;
    int rc = moe_chat_conv_parse(&conv, json, len, err);
    free(json);
    if (rc) return moe_err_prefix(err, "%s", path);
    if (tmpl) {
        moe_chat_format fmt;
        rc = moe_chat_format_parse(tmpl, &fmt, err);
        if (rc == MOE_OK) rc = moe_chat_init_format(&chat, fmt, tok, err);
    } else {
        rc = moe_chat_init(&chat, g, tok, err);
    }
    if (rc == MOE_OK && render) {
        char *text;
        size_t tl;
        rc = moe_chat_render(chat, conv.msgs, conv.n, conv.add_generation_prompt, &text, &tl, err);
        if (rc == MOE_OK) fwrite(text, 1, tl, stdout);
        if (rc == MOE_OK) free(text);
    } else if (rc == MOE_OK) {
        moe_tokens ids = {0};
        rc = moe_chat_tokenize(chat, tok, conv.msgs, conv.n, conv.add_generation_prompt, &ids, err);
        if (rc == MOE_OK) print_ids(tok, &ids, pieces);
        moe_tokens_free(&ids);
    }
    moe_chat_free(chat);
    moe_chat_conv_free(&conv);
    return rc;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *chat = NULL, *tmpl = NULL;
    bool bos = false, special = false, pieces = false, decode = false, render = false, served = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(a, "--chat") && i + 1 < argc) chat = argv[++i];
        else if (!strcmp(a, "--template") && i + 1 < argc) tmpl = argv[++i];
        else if (!strcmp(a, "--bos")) bos = true;
        else if (!strcmp(a, "--special")) special = true;
        else if (!strcmp(a, "--pieces")) pieces = true;
        else if (!strcmp(a, "--decode")) decode = true;
        else if (!strcmp(a, "--served")) served = true;
        else if (!strcmp(a, "--render")) render = true;
        else {
            fprintf(stderr, "moe-tokenize: %s '%s' (see --help)\n",
                    a[0] == '-' && i + 1 == argc ? "missing value or unknown flag" : "unknown argument", a);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "moe-tokenize: -m FILE.gguf is required (see --help)\n");
        return 2;
    }
    if (decode && chat) {
        fprintf(stderr, "moe-tokenize: --decode and --chat do not go together\n");
        return 2;
    }
    if (served && !decode) {
        fprintf(stderr, "moe-tokenize: --served needs --decode\n");
        return 2;
    }
    if ((render || tmpl) && !chat) {
        fprintf(stderr, "moe-tokenize: --render and --template need --chat\n");
        return 2;
    }
    if (chat && (bos || special)) {
        fprintf(stderr, "moe-tokenize: --chat always matches special tokens and writes one BOS; "
                        "drop --bos/--special\n");
        return 2;
    }

    moe_err err = {{0}};
    moe_gguf *g = NULL;
    moe_tokenizer *tok = NULL;
    int rc = moe_gguf_open(&g, model, &err);
    if (rc == MOE_OK) rc = moe_tokenizer_load(&tok, g, &err);
    if (rc == MOE_OK) {
        if (decode) {
            rc = decode_stdin(tok, served, &err);
        } else if (chat) {
            rc = chat_file(g, tok, chat, tmpl, render, pieces, &err);
        } else {
            size_t len;
            char *text = read_stdin(&len, &err);
            moe_tokens ids = {0};
            rc = text ? MOE_OK : MOE_ERR;
            if (rc == MOE_OK)
                rc = moe_tokenizer_encode(tok, text, len, (bos ? MOE_TOK_BOS : 0) | (special ? MOE_TOK_SPECIAL : 0),
                                          &ids, &err);
            if (rc == MOE_OK) print_ids(tok, &ids, pieces);
            moe_tokens_free(&ids);
            free(text);
        }
    }
    moe_tokenizer_free(tok);
    moe_gguf_close(g);
    if (fflush(stdout) != 0 && rc == MOE_OK) rc = moe_err_set(&err, "writing stdout: %s", strerror(errno));
    if (rc) {
        fprintf(stderr, "moe-tokenize: %s\n", err.msg);
        return 1;
    }
    return 0;
}
