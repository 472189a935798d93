/* common.c - see common.h. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

static const char *file_kind(mode_t m) {
    return S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
           : S_ISDIR(m) ? "a directory" : S_ISSOCK(m) ? "a socket" : S_ISLNK(m) ? "a symbolic link" : "not a regular file";
}

int open_regular(const char *path, Error *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        err_set(err, "%s: cannot open: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        err_set(err, "%s: cannot stat: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        err_set(err, "%s: is %s, not a regular file", path, file_kind(st.st_mode));
        errno = EINVAL;
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

char *read_file_capped(const char *path, size_t max, const char *what, size_t *len, Error *err) {
    int fd = open_regular(path, err);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) == 0 && (unsigned long long)st.st_size > (unsigned long long)max) {
        close(fd);
        err_set(err, "%s: the %s is %lld bytes, over the limit of %zu bytes", path, what, (long long)st.st_size, max);
        return NULL;
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size : 4096, n = 0;
    if (cap > max) cap = max;
    char *b = malloc(cap + 1);
    if (!b) {
        close(fd);
        err_set(err, "%s: out of memory", path);
        return NULL;
    }
    for (;;) {
        if (n == cap) { /* the file grew while being read */
            if (cap >= max) {
                char c;
                ssize_t r = read(fd, &c, 1);
                if (r == 0) break;
                free(b);
                close(fd);
                err_set(err, "%s: the %s is over the limit of %zu bytes", path, what, max);
                return NULL;
            }
            size_t nc = cap * 2 > max ? max : cap * 2;
            char *t = realloc(b, nc + 1);
            if (!t) {
                free(b);
                close(fd);
                err_set(err, "%s: out of memory", path);
                return NULL;
            }
            b = t, cap = nc;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(b);
            close(fd);
            err_set(err, "%s: cannot read: %s", path, strerror(e));
            return NULL;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    b[n] = 0;
    *len = n;
    return b;
}

int out_tmp_create(const char *path, char **tmp_out, Error *err) {
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return err_set(err, "%s: exists and is %s; refusing to replace it (remove it or choose another output)", path,
                       file_kind(st.st_mode));
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 12);
    if (!tmp) return err_set(err, "%s: out of memory", path);
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp); /* O_CREAT | O_EXCL: never opens an existing file or follows a symlink */
    if (fd < 0) {
        int e = errno;
        err_set(err, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
        free(tmp);
        return -1;
    }
    mode_t um = umask(0);
    umask(um);
    if (fchmod(fd, 0666 & ~um) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        err_set(err, "%s: cannot set the mode of %s: %s", path, tmp, strerror(e));
        free(tmp);
        return -1;
    }
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    *tmp_out = tmp;
    return fd;
}

void buf_put(Buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *t = realloc(b->s, cap);
        if (!t) {
            b->oom = true;
            return;
        }
        b->s = t, b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void buf_puts(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

void buf_printf(Buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        buf_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf_put(b, big, (size_t)n);
    free(big);
}
