/* server.h - `grok serve`: an OpenAI/xAI-compatible HTTP API (chat
 * completions, completions, models, tokenize, metrics) with SSE streaming,
 * continuous batching of --parallel slots in one engine thread, and a web
 * chat page at GET /. */
#ifndef GROK_SERVER_H
#define GROK_SERVER_H

/* The `grok serve` command: argv[0] is "serve". Returns the exit status. */
int cmd_serve(int argc, char **argv);

/* The embedded web chat page (webui.c): NUL-terminated HTML. */
extern const char grok_webui_html[];

#endif
