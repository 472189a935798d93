/* common.h - error reporting and small helpers shared by every module.
 *
 * Every fallible function in grok.c takes an `Error *` as its last argument,
 * fills it with a one-line message on failure and returns -1 (or NULL). The
 * caller decides how to report it; library code never prints or exits. */
#ifndef GROK_COMMON_H
#define GROK_COMMON_H

#include <stdbool.h>
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

/* A growable NUL-terminated string. On an allocation failure it keeps what
 * it had and sets oom; later appends are ignored, so callers check oom once
 * at the end. Zero-initialise; free(b.s) when done. */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} Buf;

void buf_put(Buf *b, const char *s, size_t n);
void buf_puts(Buf *b, const char *s);
void buf_printf(Buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Monotonic wall-clock time in seconds. */
double time_now(void);

/* ---- files ------------------------------------------------------------- *
 * Every file grok.c reads is opened with open_regular(): a FIFO, device or
 * directory is refused before anything blocks on it or reads it forever. */

/* Opens path read-only (O_NONBLOCK, so a FIFO cannot block the open) and
 * refuses anything but a regular file. Returns the fd or -1 (err set;
 * errno kept for the caller). */
int open_regular(const char *path, Error *err);

/* Reads a whole regular file of at most max bytes (what = what it is, for
 * the message: "prompt file", "conversation"...). Returns a malloc'd,
 * NUL-terminated buffer (*len bytes) or NULL with err set. */
char *read_file_capped(const char *path, size_t max, const char *what, size_t *len, Error *err);

/* Output files are written under a temporary name and renamed over the
 * output only when complete. out_tmp_create() refuses an output that exists
 * and is not a regular file (a device, FIFO, directory or symlink), creates
 * the temporary exclusively beside it ("OUT.tmp.XXXXXX", mkstemp: O_EXCL,
 * never through a symlink) with the usual 0666 & ~umask mode, and returns
 * its fd (*tmp_out: its malloc'd name), or -1 with err set. */
int out_tmp_create(const char *path, char **tmp_out, Error *err);

#endif
