/* xai.h - xAI's own endpoints beside the OpenAI ones: the body of
 * GET /v1/language-models (one entry per served model) and of
 * POST /v1/tokenize-text ({text} -> token_ids with their text and bytes). */
#ifndef GROK_XAI_H
#define GROK_XAI_H

#include "common.h"
#include "tokenizer.h"

struct cJSON;

/* A /v1/language-models entry; aliases are the other ids the model answers to
 * (NULL-terminated, duplicates of id skipped). */
struct cJSON *xai_language_model(const char *id, const char *fingerprint, long long created, const char *version,
                                 const char *const *aliases);

/* {"token_ids": [{"token_id", "string_token", "token_bytes"}]} for text, or
 * NULL with err set. */
struct cJSON *xai_tokenize_text(const Tokenizer *tok, const char *text, Error *err);

#endif
