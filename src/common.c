/* common.c - see common.h. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int err_set(Error *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int err_prefix(Error *err, const char *fmt, ...) {
    if (err) {
        char old[GROK_ERR_LEN];
        memcpy(old, err->msg, sizeof old);
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        size_t used = n < 0 ? 0 : (size_t)n < sizeof err->msg ? (size_t)n : sizeof err->msg - 1;
        size_t room = sizeof err->msg - used;
        if (room > 3) {
            memcpy(err->msg + used, ": ", 2);
            size_t len = strnlen(old, sizeof old - 1);
            if (len > room - 3) len = room - 3;
            memcpy(err->msg + used + 2, old, len);
            err->msg[used + 2 + len] = 0;
        }
    }
    return -1;
}

double time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
