/* common.h - error reporting and small helpers shared by every module.
 *
 * Every fallible function in grok.c takes an `Error *` as its last argument,
 * fills it with a one-line message on failure and returns -1 (or NULL). The
 * caller decides how to report it; library code never prints or exits. */
#ifndef GROK_COMMON_H
#define GROK_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define GROK_ERR_LEN 512

typedef struct Error {
    char msg[GROK_ERR_LEN];
} Error;

/* Formats a message into err (err may be NULL). Always returns -1 so that
 * callers can write `return err_set(err, "...")`. */
int err_set(Error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prefixes an existing message: "ctx: old message". Returns -1. */
int err_prefix(Error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Monotonic wall-clock time in seconds. */
double time_now(void);

#endif
