/* http_accept.c - see http_accept.h. libmicrohttpd reads a request line
 * that starts with a NUL byte as an empty line and waits for another, and
 * closes a line without a method without a word; this stage answers both
 * with a 400, and keeps connections that have sent nothing yet out of
 * libmicrohttpd's thread-per-connection pool. */
#include "http_accept.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef POLLRDHUP /* macOS */
#define POLLRDHUP 0
#endif

typedef struct {
    int fd;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    double deadline; /* 0: none */
} Pending;

struct Acceptor {
    int listen_fd;
    int wake[2];     /* a byte written to wake[1] stops the thread */
    struct MHD_Daemon *d;
    unsigned timeout_s, max_pending, max_per_ip;
    bool verbose;
    Pending *p;
    unsigned n;
    pthread_t thread;
};

static bool tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

int http_start_is_garbage(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && (p[i] == '\r' || p[i] == '\n')) i++; /* empty lines before a request are allowed */
    if (i == n) return 0;
    const size_t m0 = i;
    while (i < n && tchar(p[i])) i++;
    if (i == n) return 0; /* a method still arriving */
    if (p[i] == ' ' && i > m0) return 0; /* "METHOD " */
    return 1;                            /* a NUL, a control byte, or the line ends without a method */
}

static double now_s(void) { return time_now(); }

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
    if (a->ss_family != b->ss_family) return false;
    if (a->ss_family == AF_INET)
        return !memcmp(&((const struct sockaddr_in *)a)->sin_addr, &((const struct sockaddr_in *)b)->sin_addr,
                       sizeof(struct in_addr));
    if (a->ss_family == AF_INET6)
        return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
                       sizeof(struct in6_addr));
    return false;
}

static void drop(Acceptor *a, unsigned i) {
    a->p[i] = a->p[--a->n];
}

static void reply_400(int fd) {
    static const char msg[] =
        "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 120\r\n\r\n"
        "{\"error\":{\"message\":\"This is not an HTTP request\",\"type\":\"invalid_request_error\",\"param\":null,"
        "\"code\":\"bad_request\"}}\n";
    char buf[4096];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) { /* read what came, so close() sends FIN, not RST */
    }
    (void)!send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
}

static void accept_new(Acceptor *a) {
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept(a->listen_fd, (struct sockaddr *)&ss, &sl);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN, or out of descriptors: try again on the next wake-up */
        }
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
            close(fd);
            continue;
        }
        unsigned same = 0;
        for (unsigned i = 0; i < a->n && a->max_per_ip; i++) same += same_addr(&a->p[i].addr, &ss);
        if (a->n >= a->max_pending || (a->max_per_ip && same >= a->max_per_ip)) {
            if (a->verbose) fprintf(stderr, "grok serve: http: connection refused (%s)\n",
                                    a->n >= a->max_pending ? "too many waiting" : "too many from one address");
            close(fd);
            continue;
        }
        Pending *pp = &a->p[a->n++];
        pp->fd = fd;
        pp->addr = ss;
        pp->addr_len = sl;
        pp->deadline = a->timeout_s ? now_s() + a->timeout_s : 0;
    }
}

static void *acceptor_main(void *arg) {
    Acceptor *a = arg;
    struct pollfd *pf = malloc(((size_t)a->max_pending + 2) * sizeof *pf);
    if (!pf) return NULL;
    for (;;) {
        pf[0] = (struct pollfd){a->wake[0], POLLIN, 0};
        pf[1] = (struct pollfd){a->listen_fd, POLLIN, 0}; /* when full, accept_new() closes at once */
        double next = 0, t = now_s();
        for (unsigned i = 0; i < a->n; i++) {
            pf[2 + i] = (struct pollfd){a->p[i].fd, POLLIN | POLLRDHUP, 0};
            if (a->p[i].deadline && (next == 0 || a->p[i].deadline < next)) next = a->p[i].deadline;
        }
        int ms = next ? (int)((next - t) * 1000) + 1 : 1000;
        if (ms < 0) ms = 0;
        if (ms > 1000) ms = 1000;
        const unsigned n = a->n;
        if (poll(pf, 2 + n, ms) < 0 && errno != EINTR) break;
        if (pf[0].revents) break;
        t = now_s();
        /* from the end, so that drop() (which moves the last entry here) is safe */
        for (unsigned k = n; k-- > 0;) {
            Pending *pp = &a->p[k];
            const short ev = pf[2 + k].revents;
            if (ev & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) {
                char buf[64];
                ssize_t r = recv(pp->fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
                if (r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EINTR))) { /* gone before a word */
                    close(pp->fd);
                    drop(a, k);
                } else if (r > 0 && http_start_is_garbage(buf, (size_t)r)) {
                    if (a->verbose) fprintf(stderr, "grok serve: http: not an HTTP request: 400\n");
                    reply_400(pp->fd);
                    close(pp->fd);
                    drop(a, k);
                } else if (r > 0) { /* libmicrohttpd's from here (it closes the socket on failure) */
                    if (MHD_add_connection(a->d, pp->fd, (const struct sockaddr *)&pp->addr, pp->addr_len) != MHD_YES &&
                        a->verbose)
                        fprintf(stderr, "grok serve: http: connection refused by the limits\n");
                    drop(a, k);
                }
            } else if (pp->deadline && t >= pp->deadline) { /* silent for the whole timeout */
                close(pp->fd);
                drop(a, k);
            }
        }
        if (pf[1].revents & POLLIN) accept_new(a);
    }
    free(pf);
    return NULL;
}

Acceptor *acceptor_start(int listen_fd, struct MHD_Daemon *d, unsigned timeout_s, unsigned max_pending,
                         unsigned max_per_ip, bool verbose, Error *err) {
    Acceptor *a = calloc(1, sizeof *a);
    if (!a || !(a->p = malloc(((size_t)max_pending + 1) * sizeof *a->p))) {
        free(a);
        err_set(err, "out of memory");
        return NULL;
    }
    a->listen_fd = listen_fd;
    a->d = d;
    a->timeout_s = timeout_s;
    a->max_pending = max_pending ? max_pending : 1;
    a->max_per_ip = max_per_ip;
    a->verbose = verbose;
    int fl = fcntl(listen_fd, F_GETFL);
    if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0 || pipe(a->wake) != 0) {
        err_set(err, "cannot set up the listening socket: %s", strerror(errno));
        free(a->p);
        free(a);
        return NULL;
    }
    if (pthread_create(&a->thread, NULL, acceptor_main, a)) {
        err_set(err, "cannot start the accepting thread");
        close(a->wake[0]);
        close(a->wake[1]);
        free(a->p);
        free(a);
        return NULL;
    }
    return a;
}

void acceptor_stop(Acceptor *a) {
    if (!a) return;
    (void)!write(a->wake[1], "x", 1);
    pthread_join(a->thread, NULL);
    for (unsigned i = 0; i < a->n; i++) close(a->p[i].fd);
    close(a->listen_fd);
    close(a->wake[0]);
    close(a->wake[1]);
    free(a->p);
    free(a);
}
