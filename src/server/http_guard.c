/* http_guard.c - what `grok serve` checks of its clients below the API:
 * strict UTF-8 of request bodies, and whether a waiting client is still
 * there (a client that only half-closed its sending side is, one that went
 * away is not). See http_guard.h. */
#include "http_guard.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#ifndef POLLRDHUP /* macOS: a closed peer shows as readable with recv() == 0 */
#define POLLRDHUP 0
#endif

size_t utf8_invalid_at(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        const unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c == 0xE0) len = 3, lo = 0xA0;               /* no overlong forms */
        else if (c == 0xED) len = 3, hi = 0x9F;               /* no UTF-16 surrogates */
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) len = 3;
        else if (c == 0xF0) len = 4, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) len = 4;
        else if (c == 0xF4) len = 4, hi = 0x8F;               /* at most U+10FFFF */
        else return i;
        if (i + len > n) return i;
        if (p[i + 1] < lo || p[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
        i += len;
    }
    return (size_t)-1;
}

int peer_state(int fd) {
    if (fd < 0) return PEER_OK;
    struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
    int r = poll(&p, 1, 0);
    if (r <= 0) return PEER_OK;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) return PEER_GONE;
    if (p.revents & POLLRDHUP) return PEER_EOF;
    if (p.revents & POLLIN) {
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0) return PEER_EOF;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return PEER_GONE;
    }
    return PEER_OK;
}

bool peer_probe_raw(int fd) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    ssize_t n = send(fd, cont, sizeof cont - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    return n == (ssize_t)(sizeof cont - 1);
}

bool peer_gone(int fd, PeerWatch *w) {
    const int st = peer_state(fd);
    if (st == PEER_GONE) return true;
    if (st != PEER_EOF || w->probed) return false;
    /* the client closed its sending side: it may have gone away, or it may
     * only have half-closed after its request (still reading). Ask it. */
    w->probed = true;
    if (!w->can_probe_raw) return w->eof_is_gone;
    return !peer_probe_raw(fd);
}
