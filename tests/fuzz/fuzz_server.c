/* fuzz_server.c - libFuzzer target for grok serve's HTTP request path: the
 * input is the raw bytes a client sends (request line, headers, body),
 * which go through libmicrohttpd and the server's handlers - routing,
 * method and auth checks, the UTF-8 check, JSON parsing and every endpoint's
 * request parser, generation on a tiny random model (n_ctx 64) and the
 * response builders (logprobs, echo, SSE) - over a socketpair, with no
 * network (serve_local_request in server.c). The response must be empty or
 * start with an HTTP/1.x status line.
 *
 * Seeds: tests/fuzz/seed_server (a request per endpoint). Build: make fuzz.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"
#include "synth.h"

static Server *g_srv; /* created once (fuzzer-only state) */

static Server *server(void) {
    if (g_srv) return g_srv;
    char path[] = "/tmp/grok-fuzz-server-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) abort();
    close(fd);
    SynthParams p = {0};
    p.n_embd = 32, p.n_layer = 1, p.n_head = 2, p.n_head_kv = 1, p.n_ff = 32, p.n_expert = 2, p.n_expert_used = 1;
    p.n_ctx = 64, p.n_vocab = 300, p.type = 0 /* F32 */, p.seed = 1;
    Error err = {{0}};
    if (synth_write_model(&p, path, &err)) {
        fprintf(stderr, "fuzz_server: %s\n", err.msg);
        abort();
    }
    g_srv = serve_local_open(path, 64, 2, &err);
    unlink(path); /* mapped: the file can go */
    if (!g_srv) {
        fprintf(stderr, "fuzz_server: %s\n", err.msg);
        abort();
    }
    return g_srv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Server *s = server();
    char *out = NULL;
    size_t n = 0;
    if (serve_local_request(s, data, size, &out, &n) == 0) {
        if (n && strncmp(out, "HTTP/1.", 7) != 0) {
            fprintf(stderr, "fuzz_server: a response that is not HTTP: %.80s\n", out);
            abort();
        }
        free(out);
    }
    return 0;
}
