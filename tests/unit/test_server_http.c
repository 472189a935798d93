/* test_server_http.c - unit tests for http_guard.c (strict UTF-8, telling a
 * half-closed client from a gone one) and, through serve_local_request (an
 * in-process server on a tiny random model, no network), grok serve's
 * request path: routing, errors, the UTF-8 check, half-closed clients,
 * generation and the shutdown error (issue 16). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "http_accept.h"
#include "http_guard.h"
#include "server.h"
#include "synth.h"
#include "check.h"

static void test_utf8(void) {
    static const struct {
        const char *s;
        size_t n, bad; /* bad: (size_t)-1 when valid */
    } cases[] = {
        {"hello", 5, (size_t)-1},
        {"h\xc3\xa9llo \xe6\x97\xa5 \xf0\x9f\x98\x80", 15, (size_t)-1},
        {"\xef\xbf\xbd", 3, (size_t)-1},              /* U+FFFD itself is fine */
        {"\xf4\x8f\xbf\xbf", 4, (size_t)-1},          /* U+10FFFF */
        {"a\xff", 2, 1},
        {"a\xc0\xaf", 3, 1},                           /* overlong '/' */
        {"\xe0\x80\xaf", 3, 0},                        /* overlong, 3 bytes */
        {"ab\xed\xa0\x80", 5, 2},                      /* a UTF-16 surrogate */
        {"\xf4\x90\x80\x80", 4, 0},                    /* above U+10FFFF */
        {"x\xe2\x82", 3, 1},                           /* truncated */
        {"\x80", 1, 0},                                /* a lone continuation byte */
        {"a\0b", 3, (size_t)-1},                       /* NUL is UTF-8 (JSON escapes decide) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t got = utf8_invalid_at(cases[i].s, cases[i].n);
        CHECK(got == cases[i].bad, "utf8 case %zu: %zu, expected %zu", i, got, cases[i].bad);
    }
}

static void test_peer(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    CHECK(peer_state(sv[0]) == PEER_OK, "an open peer is OK");
    CHECK(send(sv[1], "x", 1, 0) == 1, "send");
    CHECK(peer_state(sv[0]) == PEER_OK, "unread data is not a close");
    char c;
    CHECK(recv(sv[0], &c, 1, 0) == 1, "recv");
    shutdown(sv[1], SHUT_WR); /* a half-close: still reading */
    CHECK(peer_state(sv[0]) == PEER_EOF, "a half-close is EOF, not gone");
    PeerWatch w = {true, false, false};
    CHECK(!peer_gone(sv[0], &w), "a half-closed peer is asked, not dropped");
    CHECK(w.probed, "the probe was sent");
    char buf[64] = {0};
    CHECK(recv(sv[1], buf, sizeof buf - 1, 0) > 0 && !strncmp(buf, "HTTP/1.1 100 Continue\r\n\r\n", 25),
          "the half-closed peer reads the interim 100 Continue: '%s'", buf);
    CHECK(!peer_gone(sv[0], &w), "after the probe, a FIN alone is not gone");
    close(sv[1]);
    CHECK(peer_state(sv[0]) == PEER_GONE, "a closed peer is gone");
    PeerWatch w10 = {false, true, false};
    int sv2[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2) == 0, "socketpair");
    shutdown(sv2[1], SHUT_WR);
    CHECK(peer_gone(sv2[0], &w10), "HTTP/1.0 cannot be probed: a FIN means gone");
    close(sv[0]);
    close(sv2[0]);
    close(sv2[1]);
}

static void test_garbage(void) {
    static const struct {
        const char *s;
        int garbage;
    } cases[] = {
        {"GET / HTTP/1.1\r\n", 0}, {"POST", 0}, {"\r\nGET /", 0}, {"\r\n", 0}, {"M-SEARCH * HTTP/1.1", 0},
        {"\x01\x02 garbage\r\n\r\n", 1}, {"garbage\r\n\r\n", 1}, {" GET /", 1}, {"\xff\xfe", 1},
        {"GET\t/", 1}, {"G\x7fT /", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(http_start_is_garbage(cases[i].s, strlen(cases[i].s)) == cases[i].garbage, "http_start_is_garbage case %zu", i);
    CHECK(http_start_is_garbage("\0\x01\x02 garbage\r\n", 14) == 1, "a leading NUL is garbage");
}

static char *ask(Server *s, const char *req) {
    char *out = NULL;
    size_t n = 0;
    if (serve_local_request(s, req, strlen(req), &out, &n)) return NULL;
    return out;
}

static char *post(Server *s, const char *path, const char *body) {
    char *req = malloc(strlen(body) + 256);
    if (!req) return NULL;
    sprintf(req, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", path,
            strlen(body), body);
    char *r = ask(s, req);
    free(req);
    return r;
}

static void test_server(void) {
    const char *tmp = getenv("GROK_TMP") ? getenv("GROK_TMP") : "/tmp";
    mkdir(tmp, 0777);
    char path[512];
    snprintf(path, sizeof path, "%s/server_http_%d.gguf", tmp, (int)getpid());
    SynthParams p = {0};
    p.n_embd = 32, p.n_layer = 1, p.n_head = 2, p.n_head_kv = 1, p.n_ff = 32, p.n_expert = 2, p.n_expert_used = 1;
    p.n_ctx = 128, p.n_vocab = 300, p.seed = 1;
    Error err = {{0}};
    CHECK(synth_write_model(&p, path, &err) == 0, "synth: %s", err.msg);
    Server *s = serve_local_open(path, 128, 2, &err);
    CHECK(s != NULL, "serve_local_open: %s", err.msg);
    unlink(path);
    if (!s) return;
    char *r = ask(s, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(r && strstr(r, "HTTP/1.1 200") && strstr(r, "\"status\":\"ok\""), "health: %s", r ? r : "(null)");
    free(r);
    r = ask(s, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(r && strstr(r, "HTTP/1.1 404"), "404: %s", r ? r : "(null)");
    free(r);
    r = ask(s, "\x01\x02 garbage\r\n\r\n");
    CHECK(r && (!*r || strstr(r, "HTTP/1.1 400")), "garbage: a 400 or nothing: %s", r ? r : "(null)");
    free(r);
    r = post(s, "/v1/completions", "{\"prompt\": \"a\xff\"}");
    CHECK(r && strstr(r, "HTTP/1.1 400") && strstr(r, "UTF-8"), "invalid UTF-8: %s", r ? r : "(null)");
    free(r);
    /* the request is followed by a half-close (serve_local_request): the
     * answer still comes, after the interim 100 Continue at most */
    r = post(s, "/v1/completions", "{\"prompt\": \"hello\", \"max_tokens\": 100, \"ignore_eos\": true, \"logprobs\": 1}");
    CHECK(r && strstr(r, "HTTP/1.1 200") && strstr(r, "\"finish_reason\":\"length\"") &&
              strstr(r, "\"completion_tokens\":100"),
          "a half-closed client gets its completion: %.300s", r ? r : "(null)");
    free(r);
    r = post(s, "/v1/chat/completions",
             "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 20, \"stream\": true}");
    CHECK(r && strstr(r, "HTTP/1.1 200") && strstr(r, "data: [DONE]"), "chat stream: %.300s", r ? r : "(null)");
    free(r);
    r = post(s, "/v1/chat/completions", "{\"messages\": []}");
    CHECK(r && strstr(r, "HTTP/1.1 400") && strstr(r, "\"param\":\"messages\""), "empty messages: %s", r ? r : "(null)");
    free(r);
    serve_local_close(s);
}

int main(void) {
    test_utf8();
    test_peer();
    test_garbage();
    test_server();
    return check_report("server_http");
}
