/* chat.h - chat templates: turning a conversation into the prompt text a
 * model was trained on, and knowing where its replies end. Shared by
 * `grok chat` and `grok serve`.
 *
 *   grok-2  (../shared/docs/grok-architecture.md B6; also grok-nano's):
 *           "System: {sys}<|separator|>\n\n" "Human: {user}<|separator|>\n\n"
 *           "Assistant: {reply}<|separator|>\n\n" ... then "Assistant:"
 *           Contents are stripped of surrounding whitespace; replies end at
 *           "<|separator|>" (or EOS).
 *   plain   for base models such as Grok-1, which has no chat format:
 *           "{sys}\n\n" "User: {user}\n\n" "Assistant: {reply}\n\n" ... then
 *           "Assistant:"; replies end at "\nUser:" (or EOS). */
#ifndef GROK_CHAT_H
#define GROK_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"
#include "gguf.h"

typedef enum { CHAT_TEMPLATE_GROK2 = 0, CHAT_TEMPLATE_PLAIN = 1 } ChatTemplate;

typedef struct {
    const char *role;     /* "system", "user", "assistant" or "tool" (a tool's result: "Tool: {content}") */
    const char *content;
} ChatMessage;

/* "grok-2" / "grok2" / "plain"; -1 if unknown. */
int chat_template_from_name(const char *name);
const char *chat_template_name(ChatTemplate t);
/* The template a model asks for: tokenizer.chat_template naming or holding
 * the Grok-2 format ("<|separator|>" in it), or general.name/
 * tokenizer.ggml.pre mentioning grok-2; otherwise a model whose vocabulary
 * has the <|separator|> symbol gets grok-2 only if it says so, so base
 * models default to plain. */
ChatTemplate chat_template_detect(const GGUFFile *f);

/* Formats the conversation; with add_generation_prompt the text ends with
 * the assistant's cue. Unknown roles are an error. Returns a malloc'd
 * string or NULL. */
char *chat_format(ChatTemplate t, const ChatMessage *msgs, int n, bool add_generation_prompt, Error *err);

/* The text that ends an assistant reply under this template. */
const char *chat_stop_string(ChatTemplate t);

#endif
