/*
 * moe-client — the command-line client of moe-coordinator.
 *
 *   moe-client --connect EP --prompt TEXT [options]      one request, streamed
 *   moe-client --connect EP --file REQS [--concurrency N] many, in input order
 *
 * This file parses the flags, loads the requests (core/reqline.h for
 * --file) and wires the parts: tools/client/session (the ZMQ session),
 * client (the loop: in flight, reassembly, timeouts, signals) and output
 * (result lines, the summary).  docs/client.md is the manual.
 *
 * Exit status: 0 every request finished normally (stop or length);
 * 1 a request was refused or failed (Error, Finish with error, deadline or
 * cancelled by the server, protocol error, a bad line in the request
 * file); 2 bad flags or an unreadable request file; 3 timeout (nothing
 * from the server for --timeout seconds while work was outstanding);
 * 130 interrupted by SIGINT (143 by SIGTERM).
 */
#include <signal.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "base.h"
#include "chat.h"
#include "client.h"
#include "io.h"
#include "output.h"
#include "reqline.h"
#include "sampler.h"
#include "session.h"

/* Interrupted: 128 + the signal (130 SIGINT, 143 SIGTERM), as shells report it. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_FLAGS = 2, EXIT_TIMEOUT = 3 };

#define MAX_STOP_IDS 8        /* the protocol's limit (docs/protocol.md); strings: reqline.h's */
#define MAX_CONCURRENCY 4096
#define MAX_CHAT_BYTES ((size_t)64 << 20)
#define SEND_TIMEOUT_MS 500   /* a blocking send (cancel) waits no longer for room */
#define MAX_ENDPOINT 1024

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moe-client --connect ENDPOINT (--prompt TEXT | --ids 1,2,3 | --chat FILE.json) [options]\n"
            "       moe-client --connect ENDPOINT --file REQS [--concurrency N] [options]\n"
            "Sends generation requests to moe-coordinator and prints what comes back.\n"
            "\n"
            "  --connect EP          the coordinator's client endpoint: HOST:PORT (tcp:// implied),\n"
            "                        tcp://HOST:PORT, ipc:///PATH\n"
            "One request (text streamed to stdout as it arrives, a newline at the end):\n"
            "  --prompt TEXT         raw text, tokenized by the server\n"
            "  --ids LIST            token ids, comma-separated (e.g. 1,2,3)\n"
            "  --chat FILE.json      {\"messages\":[{\"role\":..,\"content\":..}],\"add_generation_prompt\":b}\n"
            "                        rendered by the server's chat template; add_generation_prompt\n"
            "                        is true unless the file says false\n"
            "  --usage               print \"finish: <reason> prompt=<n> completion=<n>\" to stderr\n"
            "Many requests:\n"
            "  --file REQS           one request per line (- reads stdin), run concurrently; one line per\n"
            "                        request in input order: \"<line> <text>\" (\\n \\t \\r \\\\ escaped,\n"
            "                        other control bytes as \\xHH) or \"<line> <ids>\" with --ids-out,\n"
            "                        or \"<line> error <code>: <message>\"; a summary goes to stderr\n"
            "                        (<code>: the server's code in lower case, e.g. queue_full, or\n"
            "                        cancelled, timeout, protocol_error, client_error, bad_line)\n"
            "  --concurrency N       requests in flight at once, 1..%d (16)\n"
            "  REQS lines (the format of moe-worker --batch too):\n"
            "               ids:1,2,3 <max_tokens> [name=value]...    (or just 1,2,3 <max_tokens> ...)\n"
            "               text:<prompt><TAB><max_tokens> [name=value]...\n"
            "     in the prompt \\n \\t \\r \\s \\\\ are a newline, tab, CR, space, backslash (other escapes\n"
            "     are errors); options temp= top_k= top_p= min_p= repeat_penalty= repeat_last_n= seed=\n"
            "     deadline_ms= stop=TEXT (escaped as the prompt) stop_id=ID override the flags; empty\n"
            "     lines and lines starting with # are skipped (but counted); a bad line gets its own\n"
            "     \"<line> error bad_line: ...\" and the others run\n"
            "Generation (unset: the server's default):\n"
            "  --max-tokens N        1..%d\n"
            "  --temp T              0..1000 (0 greedy)\n"
            "  --top-p P             (0, 1]\n"
            "  --top-k K             >= 0 (0 off)\n"
            "  --min-p P             [0, 1]\n"
            "  --repeat-penalty R    (0, 100] (1 off)\n"
            "  --repeat-last-n N     >= -1 (-1 the whole history)\n"
            "  --seed S              0..2^64-1\n"
            "  --stop STR            stop string, repeatable (up to %d, 1..%d bytes each)\n"
            "  --stop-id ID          stop token id, repeatable (up to %d)\n"
            "  --no-stream           ask for the whole text in one chunk\n"
            "  --min-tokens N        no stop token (EOS, --stop-id) before N tokens (0..2^20)\n"
            "  --ignore-eos          the model's EOS does not end the request\n"
            "  --logprobs N          each token's logprob and N alternatives (0..20), computed by the\n"
            "                        ranks from the row they sampled (see --logprobs-out)\n"
            "  --prompt-logprobs     the prompt tokens' logprobs too (needs --logprobs); with\n"
            "  (--echo)              --max-tokens 0 the prompt is only scored\n"
            "  --logprobs-out FILE   write them there, one position a line:\n"
            "                        \"<line> P|T <pos> <id> <logprob> <id>:<logprob>...\" (P: prompt\n"
            "                        position, T: completion index; floats %%.9g)\n"
            "  --routed-experts FILE every fed token's routed experts (return_routed_experts), one\n"
            "                        position and MoE layer a line: \"<line> <pos> <layer> e1,..,eK\"\n"
            "                        (positions from 0 over prompt + completion; docs/routing.md)\n"
            "  --routed-expert-weights  and their gate weights as a fifth column (%%.9g)\n"
            "  --deadline-ms MS      the server ends the request after MS ms (1..86400000)\n"
            "Output and connection:\n"
            "  --ids-out             print the generated ids (space-separated) instead of text\n"
            "  --timeout S           give up when the server sends nothing for S seconds while\n"
            "                        requests are outstanding (60; 0.001..86400)\n"
            "  --heartbeat-ms MS     heartbeat period, 10..60000 (1000)\n"
            "  --name NAME           client name sent in the hello (moe-client)\n"
            "  --curve-server-key FILE  the coordinator's CURVE public key (docs/security.md); with\n"
            "  --curve-secret FILE   this client's secret key (mode 0600; moe-keygen): the link is\n"
            "                        encrypted and the server admits only listed keys (a refused key\n"
            "                        gets no answer: the request times out)\n"
            "  -v, --verbose         print the server's hello (model, vocabulary, context) to stderr\n"
            "  -h, --help            this text\n"
            "Ctrl-C (SIGINT) or SIGTERM cancels every request in flight and waits up to 2 s for\n"
            "their end; a second one stops waiting.\n"
            "Exit status: 0 all finished normally (stop/length), 1 a request was refused or failed\n"
            "(or a request line was bad), 2 bad flags or unreadable request file, 3 timeout,\n"
            "130 interrupted (143 on SIGTERM).\n",
            MAX_CONCURRENCY, MOE_REQLINE_MAX_TOKENS, MOE_REQLINE_MAX_STOP, MOE_REQLINE_MAX_STOP_LEN, MAX_STOP_IDS);
}

/* ---- flags ----------------------------------------------------------------- */

typedef struct cfg {
    char endpoint[MAX_ENDPOINT];
    const char *prompt, *ids, *chat, *file, *name;
    const char *curve_server_key, *curve_secret;
    moe_sampler_cfg sampling; /* the sampling flags given (set mask) */
    int32_t max_tokens;       /* 0: not given */
    int64_t deadline_ms;      /* 0: not given */
    char *stop[MOE_REQLINE_MAX_STOP];
    size_t n_stop;
    int32_t stop_ids[MAX_STOP_IDS];
    size_t n_stop_ids;
    bool no_stream, ids_out, show_usage, verbose;
    bool max_tokens_given, prompt_logprobs;
    int logprobs;             /* -1: not given */
    const char *logprobs_out;
    const char *routed_out;
    bool routed_weights;
    int concurrency;
    double timeout_s;
    int heartbeat_ms;
} cfg;

/* The sampling flags: --<the table's name with '-'>. */
static const char *const k_sampling_flags[] = {"--temp", "--top-p", "--top-k", "--min-p",
                                               "--repeat-penalty", "--repeat-last-n", "--seed", "--min-tokens"};
static const char *const k_value_flags[] = {"--connect", "--prompt", "--ids", "--chat", "--file", "--name",
                                            "--stop", "--stop-id", "--concurrency", "--timeout", "--heartbeat-ms",
                                            "--max-tokens", "--deadline-ms", "--logprobs", "--logprobs-out", "--routed-experts",
                                            "--curve-server-key", "--curve-secret"};

static bool in_list(const char *flag, const char *const *list, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (!strcmp(flag, list[k])) return true;
    return false;
}
#define IN_LIST(flag, list) in_list(flag, list, sizeof list / sizeof *list)

static int set_once(const char **slot, const char *flag, const char *v, moe_err *err)
{
    if (*slot) return moe_err_set(err, "%s given twice", flag);
    *slot = v;
    return MOE_OK;
}

/* A sampling flag through the table.  Its messages start with the
 * parameter's name ("top_p = 1.5 is out of range", "seed: '-1' is not
 * ..."): the flag as written replaces it. */
static int sampling_flag(cfg *c, const char *flag, const char *v, moe_err *err)
{
    const int p = moe_sampler_param_find(flag + 2);
    MOE_ASSERT(p >= 0);
    if ((c->sampling.set >> p) & 1u) return moe_err_set(err, "%s given twice", flag);
    if (moe_sampler_cfg_set(&c->sampling, flag + 2, v, err) == MOE_OK) return MOE_OK;
    const char *name = moe_sampler_param_name((moe_sampler_param)p), *m = err->msg;
    const size_t l = strlen(name);
    if (!strncmp(m, name, l) && !strncmp(m + l, ": ", 2)) m += l + 2;
    else if (!strncmp(m, name, l) && !strncmp(m + l, " = ", 3)) m += l + 3;
    char why[MOE_ERR_MSG_MAX];
    snprintf(why, sizeof why, "%s", m);
    return moe_err_set(err, "%s: %s", flag, why);
}

/* A flag that takes a value, other than the sampling ones. */
static int value_flag(cfg *c, const char *flag, const char *v, moe_err *err)
{
    int64_t iv;
    double dv;
    if (!strcmp(flag, "--connect")) {
        if (c->endpoint[0]) return moe_err_set(err, "%s given twice", flag);
        if (moe_session_endpoint(v, c->endpoint, sizeof c->endpoint, err)) return moe_err_prefix(err, "--connect");
    } else if (!strcmp(flag, "--prompt")) {
        if (set_once(&c->prompt, flag, v, err)) return MOE_ERR;
        if (!*v) return moe_err_set(err, "--prompt: the prompt is empty");
    } else if (!strcmp(flag, "--ids")) {
        return set_once(&c->ids, flag, v, err);
    } else if (!strcmp(flag, "--chat")) {
        return set_once(&c->chat, flag, v, err);
    } else if (!strcmp(flag, "--file")) {
        return set_once(&c->file, flag, v, err);
    } else if (!strcmp(flag, "--name")) {
        if (set_once(&c->name, flag, v, err)) return MOE_ERR;
        const size_t l = strlen(v);
        if (l == 0 || l > 256) return moe_err_set(err, "--name: 1..256 bytes");
    } else if (!strcmp(flag, "--stop")) {
        if (c->n_stop == MOE_REQLINE_MAX_STOP)
            return moe_err_set(err, "--stop: at most %d stop strings", MOE_REQLINE_MAX_STOP);
        const size_t l = strlen(v);
        if (l == 0 || l > MOE_REQLINE_MAX_STOP_LEN)
            return moe_err_set(err, "--stop: a stop string has 1..%d bytes", MOE_REQLINE_MAX_STOP_LEN);
        c->stop[c->n_stop++] = (char *)v;
    } else if (!strcmp(flag, "--stop-id")) {
        if (c->n_stop_ids == MAX_STOP_IDS) return moe_err_set(err, "--stop-id: at most %d stop ids", MAX_STOP_IDS);
        if (moe_parse_i64(v, 0, INT32_MAX, &iv, err)) return moe_err_prefix(err, "--stop-id");
        c->stop_ids[c->n_stop_ids++] = (int32_t)iv;
    } else if (!strcmp(flag, "--max-tokens")) {
        if (c->max_tokens_given) return moe_err_set(err, "%s given twice", flag);
        if (moe_parse_i64(v, 0, MOE_REQLINE_MAX_TOKENS, &iv, err)) return moe_err_prefix(err, "--max-tokens");
        c->max_tokens = (int32_t)iv;
        c->max_tokens_given = true;
    } else if (!strcmp(flag, "--logprobs")) {
        if (c->logprobs >= 0) return moe_err_set(err, "%s given twice", flag);
        if (moe_parse_i64(v, 0, MOE_MAX_TOP_LOGPROBS, &iv, err)) return moe_err_prefix(err, "--logprobs");
        c->logprobs = (int)iv;
    } else if (!strcmp(flag, "--logprobs-out")) {
        return set_once(&c->logprobs_out, flag, v, err);
    } else if (!strcmp(flag, "--routed-experts")) {
        return set_once(&c->routed_out, flag, v, err);
    } else if (!strcmp(flag, "--curve-server-key")) {
        return set_once(&c->curve_server_key, flag, v, err);
    } else if (!strcmp(flag, "--curve-secret")) {
        return set_once(&c->curve_secret, flag, v, err);
    } else if (!strcmp(flag, "--deadline-ms")) {
        if (c->deadline_ms) return moe_err_set(err, "%s given twice", flag);
        if (moe_parse_i64(v, 1, MOE_REQLINE_MAX_DEADLINE_MS, &iv, err)) return moe_err_prefix(err, "--deadline-ms");
        c->deadline_ms = iv;
    } else if (!strcmp(flag, "--concurrency")) {
        if (c->concurrency >= 0) return moe_err_set(err, "%s given twice", flag);
        if (moe_parse_i64(v, 1, MAX_CONCURRENCY, &iv, err)) return moe_err_prefix(err, "--concurrency");
        c->concurrency = (int)iv;
    } else if (!strcmp(flag, "--timeout")) {
        if (c->timeout_s >= 0) return moe_err_set(err, "%s given twice", flag);
        if (moe_parse_f64(v, 0.001, 86400, &dv, err)) return moe_err_prefix(err, "--timeout");
        c->timeout_s = dv;
    } else {
        MOE_ASSERT(!strcmp(flag, "--heartbeat-ms"));
        if (c->heartbeat_ms >= 0) return moe_err_set(err, "%s given twice", flag);
        if (moe_parse_i64(v, 10, 60000, &iv, err)) return moe_err_prefix(err, "--heartbeat-ms");
        c->heartbeat_ms = (int)iv;
    }
    return MOE_OK;
}

/* Which flags go together, and the defaults. */
static int flags_check(cfg *c, moe_err *err)
{
    if (!c->endpoint[0]) return moe_err_set(err, "--connect ENDPOINT is required");
    const int n_src = !!c->prompt + !!c->ids + !!c->chat + !!c->file;
    if (n_src != 1) return moe_err_set(err, "give exactly one of --prompt, --ids, --chat and --file");
    if (c->concurrency >= 0 && !c->file) return moe_err_set(err, "--concurrency goes with --file");
    if (c->show_usage && c->file) return moe_err_set(err, "--usage is for a single request (--file prints a summary)");
    if (c->max_tokens_given && c->max_tokens == 0 && !c->prompt_logprobs)
        return moe_err_set(err, "--max-tokens 0 only scores a prompt: give --prompt-logprobs");
    if (c->prompt_logprobs && c->logprobs < 0) return moe_err_set(err, "--prompt-logprobs needs --logprobs N");
    if (c->routed_weights && !c->routed_out)
        return moe_err_set(err, "--routed-expert-weights needs --routed-experts FILE");
    if (c->concurrency < 0) c->concurrency = 16;
    if (c->timeout_s < 0) c->timeout_s = 60;
    if (c->heartbeat_ms < 0) c->heartbeat_ms = 1000;
    if (!c->name) c->name = "moe-client";
    return MOE_OK;
}

static int parse_flags(int argc, char **argv, cfg *c, bool *help, moe_err *err)
{
    memset(c, 0, sizeof *c);
    moe_sampler_cfg_default(&c->sampling);
    c->concurrency = -1;
    c->logprobs = -1;
    c->timeout_s = -1;
    c->heartbeat_ms = -1;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            *help = true;
            return MOE_OK;
        }
        /* --flag=value or --flag value */
        char flag[64];
        const char *v = NULL;
        const char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
        if (eq && (size_t)(eq - a) < sizeof flag) {
            memcpy(flag, a, (size_t)(eq - a));
            flag[eq - a] = 0;
            v = eq + 1;
        } else {
            snprintf(flag, sizeof flag, "%s", a);
        }
        bool boolean = !strcmp(flag, "--no-stream") || !strcmp(flag, "--ids-out") || !strcmp(flag, "--usage") ||
                       !strcmp(flag, "-v") || !strcmp(flag, "--verbose") || !strcmp(flag, "--ignore-eos") ||
                       !strcmp(flag, "--prompt-logprobs") || !strcmp(flag, "--echo") ||
                       !strcmp(flag, "--routed-expert-weights");
        if (boolean) {
            if (v) return moe_err_set(err, "%s takes no value", flag);
            if (!strcmp(flag, "--no-stream")) c->no_stream = true;
            else if (!strcmp(flag, "--ignore-eos")) moe_sampler_cfg_set(&c->sampling, "ignore_eos", "1", err);
            else if (!strcmp(flag, "--prompt-logprobs") || !strcmp(flag, "--echo")) c->prompt_logprobs = true;
            else if (!strcmp(flag, "--ids-out")) c->ids_out = true;
            else if (!strcmp(flag, "--routed-expert-weights")) c->routed_weights = true;
            else if (!strcmp(flag, "--usage")) c->show_usage = true;
            else c->verbose = true;
            continue;
        }
        if (strncmp(flag, "--", 2) || !flag[2]) return moe_err_set(err, "unexpected argument '%s' (see --help)", a);
        const bool sampling = IN_LIST(flag, k_sampling_flags);
        if (!sampling && !IN_LIST(flag, k_value_flags)) return moe_err_set(err, "unknown flag %s (see --help)", flag);
        if (!v) {
            if (i + 1 >= argc) return moe_err_set(err, "%s needs a value", flag);
            v = argv[++i];
        }
        if (sampling ? sampling_flag(c, flag, v, err) : value_flag(c, flag, v, err)) return MOE_ERR;
    }
    return flags_check(c, err);
}

/* ---- requests -------------------------------------------------------------- */

/* What every request of the run shares: the flags' values. */
static void gen_defaults(const cfg *c, moe_session_gen *g)
{
    memset(g, 0, sizeof *g);
    g->max_tokens = c->max_tokens_given ? c->max_tokens : -1;
    g->logprobs = c->logprobs;
    g->prompt_logprobs = c->prompt_logprobs;
    g->routed = c->routed_out != NULL;
    g->routed_weights = c->routed_weights;
    g->sampling = &c->sampling;
    g->deadline_ms = c->deadline_ms;
    g->stop = c->stop;
    g->n_stop = c->n_stop;
    g->stop_ids = c->stop_ids;
    g->n_stop_ids = c->n_stop_ids;
    g->no_stream = c->no_stream;
}

/* Turns a line the server could not take into a bad one (the list owns the message). */
static void line_refuse(moe_reqline *it, const char *fmt, ...) MOE_PRINTF(2, 3);
static void line_refuse(moe_reqline *it, const char *fmt, ...)
{
    char why[MOE_ERR_MSG_MAX], msg[MOE_ERR_MSG_MAX + 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof msg, "line %d: %s", it->line, why);
    const int line = it->line;
    moe_reqline_free(it);
    it->line = line;
    it->kind = MOE_REQLINE_BAD;
    it->error = moe_xstrdup(msg);
}

/* The requests of --file, one per request line: the line's options over the
 * flags (a line's stop strings or ids replace the flags' ones). */
static int load_file(const cfg *c, moe_reqline_list *list, moe_client_req **out, size_t *n, moe_err *err)
{
    if (moe_reqline_list_read(c->file, &c->sampling, list, err)) return MOE_ERR;
    if (list->n == 0) return moe_err_set(err, "%s: no requests in the file", c->file);
    moe_client_req *reqs = moe_xcalloc(list->n, sizeof *reqs);
    for (size_t i = 0; i < list->n; i++) {
        moe_reqline *it = &list->items[i];
        moe_client_req *r = &reqs[i];
        r->line = it->line;
        if (it->kind != MOE_REQLINE_BAD && it->max_tokens == 0 && !(it->prompt_logprobs || c->prompt_logprobs))
            line_refuse(it, "max_tokens: 0 only scores a prompt (prompt_logprobs=1); the server takes 1..%d",
                        MOE_REQLINE_MAX_TOKENS);
        if (it->kind != MOE_REQLINE_BAD && it->n_stop_ids > MAX_STOP_IDS)
            line_refuse(it, "stop_id: the server takes at most %d stop ids", MAX_STOP_IDS);
        if (it->kind == MOE_REQLINE_BAD) {
            r->bad = it->error;
            continue;
        }
        gen_defaults(c, &r->gen);
        r->gen.prompt = it->kind == MOE_REQLINE_IDS ? MOE_SESSION_IDS : MOE_SESSION_TEXT;
        r->gen.text = it->text;
        r->gen.ids = it->ids;
        r->gen.n_ids = it->n_ids;
        r->gen.max_tokens = it->max_tokens;
        r->gen.sampling = &it->sampling;
        if (it->logprobs >= 0) r->gen.logprobs = it->logprobs;
        if (it->prompt_logprobs) r->gen.prompt_logprobs = true;
        if (it->deadline_ms) r->gen.deadline_ms = it->deadline_ms;
        if (it->n_stop) r->gen.stop = it->stop, r->gen.n_stop = it->n_stop;
        if (it->n_stop_ids) r->gen.stop_ids = it->stop_ids, r->gen.n_stop_ids = it->n_stop_ids;
    }
    *out = reqs;
    *n = list->n;
    return MOE_OK;
}

/* The one request of --prompt, --ids or --chat; *ids and conv are its storage. */
static int load_single(const cfg *c, moe_client_req *r, int32_t **ids, moe_chat_conv *conv, moe_err *err)
{
    r->line = 1;
    gen_defaults(c, &r->gen);
    if (c->prompt) {
        r->gen.prompt = MOE_SESSION_TEXT;
        r->gen.text = c->prompt;
        return MOE_OK;
    }
    if (c->ids) {
        r->gen.prompt = MOE_SESSION_IDS;
        if (moe_ids_parse(c->ids, strlen(c->ids), ids, &r->gen.n_ids, err)) return moe_err_prefix(err, "--ids");
        r->gen.ids = *ids;
        return MOE_OK;
    }
    char *json;
    size_t len;
    if (moe_file_read(c->chat, MAX_CHAT_BYTES, &json, &len, err)) return moe_err_prefix(err, "--chat");
    const int rc = moe_chat_conv_parse(conv, json, len, err);
    free(json);
    if (rc) return moe_err_prefix(err, "--chat %s", c->chat);
    if (conv->n == 0) return moe_err_set(err, "--chat %s: no messages", c->chat);
    for (size_t i = 0; i < conv->n; i++)
        if (strlen(conv->msgs[i].content) != conv->msgs[i].content_len)
            return moe_err_set(err, "--chat %s: message %zu holds a NUL character (\\u0000)", c->chat, i + 1);
    r->gen.prompt = MOE_SESSION_CHAT;
    r->gen.chat = conv;
    return MOE_OK;
}

/* ---- the end --------------------------------------------------------------- */

/* A single request: the newline after the streamed output, its error, its usage. */
static void report_single(const cfg *c, const moe_client_req *r, moe_client_result *res)
{
    if (r->ok || res->single_printed) putchar('\n');
    if (fflush(stdout)) res->out_error = true;
    if (!r->ok) fprintf(stderr, "moe-client: error %s: %s\n", r->err_name, r->err_msg);
    if (c->show_usage && r->reason >= 0)
        fprintf(stderr, "finish: %s prompt=%u completion=%u\n", moe_msg_end_name(r->reason), (unsigned)r->prompt_tokens,
                (unsigned)r->completion_tokens);
}

static void report_file(const moe_client_req *reqs, size_t n, const moe_client_result *res)
{
    size_t ok = 0, tokens = 0, n_first = 0;
    double *first = moe_xcalloc(n ? n : 1, sizeof *first);
    for (size_t i = 0; i < n; i++) {
        ok += reqs[i].ok;
        tokens += reqs[i].n_ids;
        if (reqs[i].t_first >= 0) first[n_first++] = 1e3 * (reqs[i].t_first - reqs[i].t_sent);
    }
    moe_output_summary(stderr, n, ok, tokens, res->wall_s, first, n_first);
    free(first);
}

static int exit_status(const moe_client_req *reqs, size_t n, const moe_client_result *res)
{
    int status = EXIT_OK;
    size_t n_ok = 0;
    for (size_t i = 0; i < n; i++) n_ok += reqs[i].ok;
    if (res->signal) status = 128 + res->signal;
    else if (res->timed_out) status = EXIT_TIMEOUT;
    else if (n_ok < n) status = EXIT_FAIL;
    if (res->out_error || ferror(stdout)) {
        fprintf(stderr, "moe-client: writing the output failed\n");
        if (status == EXIT_OK) status = EXIT_FAIL;
    }
    return status;
}

int main(int argc, char **argv)
{
    cfg c;
    bool help = false;
    moe_err err = {{0}};
    if (parse_flags(argc, argv, &c, &help, &err)) {
        fprintf(stderr, "moe-client: %s\n", err.msg);
        return EXIT_FLAGS;
    }
    if (help) {
        usage(stdout);
        return EXIT_OK;
    }

    moe_reqline_list list = {0};
    moe_chat_conv conv;
    memset(&conv, 0, sizeof conv);
    int32_t *single_ids = NULL;
    moe_client_req *reqs = NULL;
    size_t n = 0;
    moe_session *s = NULL;
    FILE *lp_out = NULL, *routed_out = NULL;
    int status = EXIT_FLAGS;
    if (c.file) {
        if (load_file(&c, &list, &reqs, &n, &err)) goto fail;
    } else {
        reqs = moe_xcalloc(1, sizeof *reqs);
        n = 1;
        if (load_single(&c, reqs, &single_ids, &conv, &err)) goto fail;
    }
    moe_link_curve curve;
    bool curve_on;
    if (moe_auth_client_curve(&curve, &curve_on, c.curve_server_key, c.curve_secret, &err)) goto fail;
    /* ZMQ connects lazily: a failure here is an endpoint it cannot use. */
    if (moe_session_open(&s, c.endpoint, c.name, SEND_TIMEOUT_MS, curve_on ? &curve : NULL, &err)) goto fail;
    if (c.logprobs_out && !(lp_out = fopen(c.logprobs_out, "w"))) {
        moe_err_set(&err, "--logprobs-out %s: %s", c.logprobs_out, strerror(errno));
        goto fail;
    }
    if (c.routed_out && !(routed_out = fopen(c.routed_out, "w"))) {
        moe_err_set(&err, "--routed-experts %s: %s", c.routed_out, strerror(errno));
        goto fail;
    }

    const moe_client_opts o = {.endpoint = c.endpoint, .name = c.name, .single = !c.file, .ids_out = c.ids_out,
                               .verbose = c.verbose, .concurrency = c.concurrency, .timeout_s = c.timeout_s,
                               .heartbeat_ms = c.heartbeat_ms, .logprobs_out = lp_out, .curve = curve_on,
                               .routed_out = routed_out};
    moe_client_result res;
    status = EXIT_FAIL;
    if (moe_client_run(&o, s, reqs, n, &res, &err)) goto fail;
    if (o.single) report_single(&c, &reqs[0], &res);
    else report_file(reqs, n, &res);
    status = exit_status(reqs, n, &res);
    goto out;
fail:
    fprintf(stderr, "moe-client: %s\n", err.msg);
out:
    if (lp_out && fclose(lp_out) != 0 && status == EXIT_OK) {
        fprintf(stderr, "moe-client: --logprobs-out: %s\n", strerror(errno));
        status = EXIT_FAIL;
    }
    if (routed_out && fclose(routed_out) != 0 && status == EXIT_OK) {
        fprintf(stderr, "moe-client: --routed-experts: %s\n", strerror(errno));
        status = EXIT_FAIL;
    }
    moe_session_close(s);
    moe_client_reqs_free(reqs, n);
    free(reqs);
    free(single_ids);
    moe_reqline_list_free(&list);
    moe_chat_conv_free(&conv);
    return status;
}
