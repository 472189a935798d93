/* http_accept.h - the front door of `grok serve`: one thread accepts
 * connections and holds each (a descriptor in a poll set, no thread) until
 * its first bytes arrive. A connection whose first bytes cannot start an
 * HTTP request (a NUL, a control byte, no method before the line ends) gets
 * a 400 and is closed; one that stays silent for the timeout is closed;
 * the others are handed to libmicrohttpd (MHD_add_connection), which then
 * owns them. Limits: at most max_pending connections waiting, at most
 * max_per_ip of them from one address. */
#ifndef GROK_HTTP_ACCEPT_H
#define GROK_HTTP_ACCEPT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "common.h"

struct MHD_Daemon;
typedef struct Acceptor Acceptor;

/* 1 when the first n bytes a client sent cannot begin an HTTP request line;
 * 0 when they can (or it is too early to tell). */
int http_start_is_garbage(const char *p, size_t n);

/* Starts accepting on listen_fd (bound and listening; taken over, closed by
 * acceptor_stop). timeout_s: how long a silent connection may wait (0 =
 * forever). */
Acceptor *acceptor_start(int listen_fd, struct MHD_Daemon *d, unsigned timeout_s, unsigned max_pending,
                         unsigned max_per_ip, bool verbose, Error *err);
/* Stops accepting, closes the listening socket and the connections still
 * waiting for their first bytes, joins the thread and frees. */
void acceptor_stop(Acceptor *a);

#endif
