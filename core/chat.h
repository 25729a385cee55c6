/*
 * chat.h — chat prompt formatting for the DeepSeek chat templates.
 *
 * A model's GGUF carries its Jinja chat template in tokenizer.chat_template.
 * Rather than run Jinja, the known templates are recognised by a
 * fingerprint of their text (64-bit FNV-1a over the text with surrounding
 * whitespace trimmed and the two-character escape \n read as a newline)
 * and rendered by C code that does what the template does, byte for byte:
 *
 *   deepseek-v3  DeepSeek-V3's template: BOS, all system prompts joined by
 *                a blank line, then <｜User｜>content, <｜Assistant｜>content
 *                <｜end▁of▁sentence｜>, tool outputs; <｜Assistant｜> to prompt.
 *   deepseek-v2  DeepSeek-V2(-Lite)-Chat / DeepSeek LLM chat: BOS, then
 *                "User: content\n\n", "Assistant: content<EOS>",
 *                "content\n\n" for system; "Assistant:" to prompt.
 *
 * An unknown template is an error naming its fingerprint, never a guess.
 * Both templates start with the BOS text, so a rendered prompt is
 * tokenized with special-token matching on and without adding BOS
 * (moe_chat_tokenize does exactly that): it starts with one BOS, never two.
 * Roles a template would silently drop are errors here.
 */
#ifndef MOE_CHAT_H
#define MOE_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "base.h"
#include "gguf.h"
#include "tokenizer.h"

typedef enum {
    MOE_CHAT_DEEPSEEK_V3 = 0,
    MOE_CHAT_DEEPSEEK_V2 = 1,
} moe_chat_format;

/* One message; role is NUL-terminated ("system", "user", "assistant",
 * "tool"), content has an explicit length. */
typedef struct moe_chat_msg {
    const char *role;
    const char *content;
    size_t content_len;
} moe_chat_msg;

typedef struct moe_chat moe_chat;

/* Identifies a template text; error (with its fingerprint) if unknown. */
int moe_chat_detect(const char *tmpl, size_t len, moe_chat_format *out, moe_err *err);
const char *moe_chat_format_name(moe_chat_format f);
/* "deepseek-v3" / "deepseek-v2" -> format; error otherwise. */
int moe_chat_format_parse(const char *name, moe_chat_format *out, moe_err *err);

/* From tokenizer.chat_template of g; BOS/EOS texts from tok. */
int moe_chat_init(moe_chat **out, const moe_gguf *g, const moe_tokenizer *tok, moe_err *err);
/* With an explicit format (e.g. a file without a template). */
int moe_chat_init_format(moe_chat **out, moe_chat_format f, const moe_tokenizer *tok, moe_err *err);
void moe_chat_free(moe_chat *c);
moe_chat_format moe_chat_get_format(const moe_chat *c);

/* Renders the prompt into a new NUL-terminated string (free() it). */
int moe_chat_render(const moe_chat *c, const moe_chat_msg *msgs, size_t n, bool add_generation_prompt,
                    char **out, size_t *out_len, moe_err *err);

/* Renders and tokenizes (special tokens matched, no BOS added): appends
 * the prompt's ids to out. */
int moe_chat_tokenize(const moe_chat *c, const moe_tokenizer *tok, const moe_chat_msg *msgs, size_t n,
                      bool add_generation_prompt, moe_tokens *out, moe_err *err);

/* A conversation parsed from JSON:
 *   {"messages":[{"role":"user","content":"..."},...],"add_generation_prompt":true}
 * Other keys are ignored.  add_generation_prompt defaults to TRUE when the
 * JSON does not say: a conversation file is a request for the assistant's
 * next turn (the OpenAI-style behaviour, and proto Chat's default), so
 * moe-run --chat, moe-tokenize --chat and the coordinator all render the
 * same ids for the same file.  Set it to false to render the conversation
 * as it stands (e.g. to score it).  Strings are unescaped (\uXXXX with
 * surrogate pairs). */
typedef struct moe_chat_conv {
    moe_chat_msg *msgs;
    size_t n;
    bool add_generation_prompt;
    char *store; /* the unescaped strings */
} moe_chat_conv;

int moe_chat_conv_parse(moe_chat_conv *out, const char *json, size_t len, moe_err *err);
void moe_chat_conv_free(moe_chat_conv *c);

#endif
