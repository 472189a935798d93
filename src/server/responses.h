/* responses.h - the Responses API (POST /v1/responses, GET and DELETE
 * /v1/responses/{id}) on top of chat completions: a request is translated
 * into a chat request (instructions, the stored conversation of
 * previous_response_id, input items, tools, text.format), run as a chat job
 * by the server, and its result turned into a Response object or a stream
 * of Responses events (response.created, response.in_progress,
 * response.output_item.added, response.content_part.added,
 * response.output_text.delta / .done, response.content_part.done,
 * response.function_call_arguments.delta / .done, response.output_item.done,
 * response.completed). Stored responses (store: true, the default) are kept
 * in memory, bounded in count, bytes and age. */
#ifndef GROK_RESPONSES_H
#define GROK_RESPONSES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "structured.h"

struct cJSON;

#define RESPONSES_MAX_STORED 256
#define RESPONSES_MAX_BYTES (64u << 20)
#define RESPONSES_MAX_AGE_S 3600

typedef struct ResponseStore ResponseStore;
ResponseStore *response_store_new(void);
void response_store_free(ResponseStore *rs);
/* A copy of a stored response object, NULL if unknown or expired. */
struct cJSON *response_store_get(ResponseStore *rs, const char *id);
/* true if it was there. */
bool response_store_delete(ResponseStore *rs, const char *id);
int response_store_count(ResponseStore *rs);

/* One request's context (ids, echoed settings, the conversation). */
typedef struct RespCtx RespCtx;
void resp_ctx_free(RespCtx *c);

/* Translates a Responses request into a chat completions request (a new
 * cJSON object) and its context; NULL with e set (400, or 404 for an
 * unknown previous_response_id). seed makes the ids. */
struct cJSON *responses_to_chat(const struct cJSON *req, ResponseStore *rs, uint64_t seed, RespCtx **ctx,
                                StructErr *e);

/* What the chat job has produced so far. */
typedef struct {
    const char *model;
    const char *text;
    size_t len;
    bool done;
    const char *finish; /* "stop" / "length" */
    const char *error;  /* non-NULL: failed */
    int input_tokens, cached_tokens, output_tokens;
} RespView;

/* The finished Response object (stored when the request said store). */
struct cJSON *responses_final(ResponseStore *rs, RespCtx *c, const RespView *v);
/* Streaming: the SSE bytes to send now (malloc'd, *len), NULL when there
 * is nothing new; *oom on failure. After the last event *finished is set. */
char *responses_stream(ResponseStore *rs, RespCtx *c, const RespView *v, size_t *len, bool *oom, bool *finished);

#endif
