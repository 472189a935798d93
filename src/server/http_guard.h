/* http_guard.h - client checks of `grok serve` below the API: strict UTF-8
 * of request bodies (JSON text must be UTF-8; OpenAI answers 400 where a
 * lax parser would substitute U+FFFD), and telling a client that went away
 * from one that only half-closed its sending side after the request. */
#ifndef GROK_HTTP_GUARD_H
#define GROK_HTTP_GUARD_H

#include <stdbool.h>
#include <stddef.h>

/* Offset of the first byte that is not part of well-formed UTF-8 (no
 * overlong forms, surrogates or code points above U+10FFFF), or
 * (size_t)-1 when all n bytes are. */
size_t utf8_invalid_at(const char *s, size_t n);

enum { PEER_OK, PEER_EOF, PEER_GONE };

/* PEER_GONE: the connection is reset or closed both ways; PEER_EOF: the
 * client sent FIN (it went away, or half-closed and still reads); PEER_OK. */
int peer_state(int fd);

/* Sends "HTTP/1.1 100 Continue" straight to the socket: an interim response
 * every HTTP/1.1 client must accept before the real one (RFC 9110 15.2).
 * Only before the response has started. False when the send fails. */
bool peer_probe_raw(int fd);

/* How a waiting connection decides that its client went away. */
typedef struct {
    bool can_probe_raw; /* nothing of the response sent yet and HTTP/1.1: probe with a 100 Continue */
    bool eof_is_gone;   /* no probe possible here: what a FIN means */
    bool probed;        /* a FIN was seen and answered: from now on only a reset means gone */
} PeerWatch;

/* True when the client is gone. On the first FIN it probes (see PeerWatch):
 * a client that went away answers the probe's bytes with a reset, which the
 * next call sees; a half-closed client reads them and stays. */
bool peer_gone(int fd, PeerWatch *w);

#endif
