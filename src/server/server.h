/* server.h - `grok serve`: an OpenAI/xAI-compatible HTTP API (chat
 * completions, completions, models, tokenize, metrics) with SSE streaming,
 * continuous batching of --parallel slots in one engine thread, and a web
 * chat page at GET /. */
#ifndef GROK_SERVER_H
#define GROK_SERVER_H

#include "dist.h"

#include <stddef.h>

#include "common.h"

/* The `grok serve` command: argv[0] is "serve". Returns the exit status. */
int cmd_serve(int argc, char **argv, Dist *d);

/* An in-process server for tests and the fuzz target: the model loaded, the
 * engine running, libmicrohttpd without a listening socket (the caller's
 * thread drives it). */
typedef struct Server Server;
Server *serve_local_open(const char *model_path, int n_ctx, int n_slots, Error *err);
/* Runs one raw request (the bytes a client sends, then a half-close)
 * through libmicrohttpd and the handlers over a socketpair; *out gets the
 * bytes of the response (malloc'd, NUL-terminated, at most 4 MiB). */
int serve_local_request(Server *s, const void *req, size_t n, char **out, size_t *out_len);
void serve_local_close(Server *s);

/* The embedded web chat page (webui.c): NUL-terminated HTML. */
extern const char grok_webui_html[];

#endif
