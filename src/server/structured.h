/* structured.h - structured outputs and tool calling for grok serve: the
 * request fields response_format, grammar, tools, tool_choice and
 * parallel_tool_calls turned into a grammar for the reply and a prompt
 * text describing the tools; assistant tool calls in the history rendered
 * back into text; and replies parsed into OpenAI tool_calls.
 *
 * Neither Grok-1 nor Grok-2 has a published tool-call format, so grok.c
 * defines a generic one and enforces it with the grammar: a tool-call reply
 * is exactly the JSON object
 *     {"tool_calls": [{"name": NAME, "arguments": {...}}, ...]}
 * with each call's arguments valid under its function's parameters schema.
 * With tool_choice "auto" the reply is either that object or plain text
 * that does not start with "{"; "required" (or a named function) allows only
 * the object; "none" ignores the tools for the grammar (they are still
 * described in the prompt). parallel_tool_calls false allows one call. */
#ifndef GROK_STRUCTURED_H
#define GROK_STRUCTURED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cJSON;

#define MAX_TOOLS 200
#define MAX_PARALLEL_CALLS 8

/* An error for an HTTP 400 (or 500 on OOM), mapped by the server. */
typedef struct {
    int status;
    const char *code;
    char param[96];
    char msg[480];
} StructErr;

/* Fills e (status, the error code and param of OpenAI's error object, the
 * message) and returns -1, for `return st_err(e, 400, ...)`. */
int st_err(StructErr *e, int status, const char *code, const char *param, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

typedef enum { TOOLS_NONE = 0, TOOLS_AUTO = 1, TOOLS_REQUIRED = 2 } ToolMode;

typedef struct {
    char *gbnf;        /* grammar for the reply; NULL: unconstrained */
    char *tool_prompt; /* the tools described for the prompt (a system message); NULL if no tools */
    ToolMode tool_mode;
    bool json;         /* response_format json_object / json_schema */
} Structured;

void structured_free(Structured *s);

/* Reads response_format (chat only), grammar, tools, tool_choice and
 * parallel_tool_calls (chat only) from a request. 0, or -1 with e set. */
int structured_parse(const struct cJSON *root, bool chat, Structured *out, StructErr *e);

/* The text the model would have written for an assistant message's
 * tool_calls (history), malloc'd; NULL with e set on a malformed list. */
char *structured_tool_calls_text(const struct cJSON *tool_calls, const char *param, StructErr *e);

/* A reply in the tool-call format as an OpenAI tool_calls array (ids made
 * from *rng), or NULL when the text is not a tool call. */
struct cJSON *structured_reply_tool_calls(const char *text, uint64_t *rng);

/* For streaming with tools: 1 when the text so far is (the start of) a
 * tool call, 0 when it is plain text, -1 while it cannot be told yet. */
int structured_text_kind(const char *text, size_t len);

#endif
