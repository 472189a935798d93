/* test_threadpool.c - unit tests for threadpool.c. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "threadpool.h"
#include "check.h"

#define MAX_T 64

/* Each index writes its own slot (plain stores: the pool must make them
 * visible to the caller) and bumps a shared atomic call counter. */
typedef struct {
    int calls[MAX_T];   /* plain: written only by thread ith */
    int seen_n[MAX_T];
    long run;           /* the run number, set by the caller before tp_run */
    long last_run[MAX_T];
    atomic_int total;
} Ctx;

static void task(void *p, int ith, int nth) {
    Ctx *c = p;
    c->calls[ith]++;
    c->seen_n[ith] = nth;
    c->last_run[ith] = c->run;
    atomic_fetch_add_explicit(&c->total, 1, memory_order_relaxed);
}

static ThreadPool *mk(int n) {
    Error err = {{0}};
    ThreadPool *tp = tp_create(n, &err);
    if (!tp) {
        fprintf(stderr, "tp_create(%d) failed: %s\n", n, err.msg);
        exit(2);
    }
    return tp;
}

static void test_runs(int n, long runs) {
    ThreadPool *tp = mk(n);
    CHECK(tp_size(tp) == n, "tp_size %d", tp_size(tp));
    Ctx *c = calloc(1, sizeof *c);
    if (!c) exit(2);
    atomic_init(&c->total, 0);
    int bad = 0;
    for (long r = 1; r <= runs; r++) {
        c->run = r;
        tp_run(tp, task, c);
        /* visible right after tp_run, no extra synchronization */
        for (int i = 0; i < n; i++) {
            if (c->calls[i] != r || c->last_run[i] != r || c->seen_n[i] != n) {
                if (bad < 5)
                    fprintf(stderr, "  n=%d run %ld: index %d calls %d last_run %ld nth %d\n", n,
                            r, i, c->calls[i], c->last_run[i], c->seen_n[i]);
                bad++;
            }
        }
        if (atomic_load(&c->total) != (int)(r * n)) bad++;
        if (bad > 20) break;
    }
    CHECK(bad == 0, "n=%d: %ld runs, every index exactly once per run (%d errors)", n, runs, bad);
    free(c);
    tp_free(tp);
}

/* A real computation split across threads: partial sums per thread. */
typedef struct {
    const int *data;
    int len;
    long long partial[MAX_T];
} SumCtx;

static void sum_task(void *p, int ith, int nth) {
    SumCtx *c = p;
    int per = (c->len + nth - 1) / nth;
    int lo = ith * per, hi = lo + per > c->len ? c->len : lo + per;
    long long s = 0;
    for (int i = lo; i < hi; i++) s += c->data[i];
    c->partial[ith] = s;
}

static void test_sum(int n) {
    ThreadPool *tp = mk(n);
    const int len = 100003;
    int *data = malloc(len * sizeof *data);
    if (!data) exit(2);
    long long want = 0;
    for (int i = 0; i < len; i++) want += data[i] = (i * 7919) % 1000;
    SumCtx c;
    memset(&c, 0, sizeof c);
    c.data = data;
    c.len = len;
    int bad = 0;
    for (int r = 0; r < 200; r++) {
        memset(c.partial, 0, sizeof c.partial);
        tp_run(tp, sum_task, &c);
        long long got = 0;
        for (int i = 0; i < n; i++) got += c.partial[i];
        if (got != want) bad++;
    }
    CHECK(bad == 0, "n=%d: parallel sum (%d wrong)", n, bad);
    free(data);
    tp_free(tp);
}

/* Runs separated by pauses long enough for the workers to fall asleep. */
static void test_sleep_wake(int n) {
    ThreadPool *tp = mk(n);
    Ctx *c = calloc(1, sizeof *c);
    if (!c) exit(2);
    atomic_init(&c->total, 0);
    int bad = 0;
    for (long r = 1; r <= 20; r++) {
        double t0 = time_now();
        while (time_now() - t0 < 0.002) {
        } /* 2 ms: longer than the spin */
        c->run = r;
        tp_run(tp, task, c);
        for (int i = 0; i < n; i++)
            if (c->calls[i] != r) bad++;
    }
    CHECK(bad == 0, "n=%d: runs after sleeping (%d errors)", n, bad);
    free(c);
    tp_free(tp);
}

/* Uneven work: thread 0 finishes at once, the others take a while, so the
 * caller has to wait (and may sleep). */
static void slow_task(void *p, int ith, int nth) {
    Ctx *c = p;
    (void)nth;
    if (ith != 0) {
        double t0 = time_now();
        while (time_now() - t0 < 0.001) {
        }
    }
    c->calls[ith]++;
    atomic_fetch_add_explicit(&c->total, 1, memory_order_relaxed);
}

static void test_caller_waits(int n) {
    ThreadPool *tp = mk(n);
    Ctx *c = calloc(1, sizeof *c);
    if (!c) exit(2);
    atomic_init(&c->total, 0);
    int bad = 0;
    for (int r = 1; r <= 20; r++) {
        tp_run(tp, slow_task, c);
        for (int i = 0; i < n; i++)
            if (c->calls[i] != r) bad++;
    }
    CHECK(bad == 0, "n=%d: caller waits for slow workers (%d errors)", n, bad);
    free(c);
    tp_free(tp);
}

static void test_create_free(void) {
    int ok = 1;
    for (int i = 0; i < 200; i++) {
        int n = 1 + i % 5;
        ThreadPool *tp = mk(n);
        if (tp_size(tp) != n) ok = 0;
        if (i % 2) {
            Ctx c;
            memset(&c, 0, sizeof c);
            atomic_init(&c.total, 0);
            tp_run(tp, task, &c);
            if (atomic_load(&c.total) != n) ok = 0;
        }
        tp_free(tp);
    }
    CHECK(ok, "create/free repeatedly");
    tp_free(NULL);
    CHECK(cpu_count() >= 1, "cpu_count %d", cpu_count());
    ThreadPool *tp = mk(0); /* 0 -> cpu_count() */
    CHECK(tp_size(tp) == cpu_count(), "n_threads 0 -> cpu_count (%d)", tp_size(tp));
    tp_free(tp);
}

static void test_single(void) {
    ThreadPool *tp = mk(1);
    CHECK(tp_size(tp) == 1, "n=1 size");
    Ctx *c = calloc(1, sizeof *c);
    if (!c) exit(2);
    atomic_init(&c->total, 0);
    for (long r = 1; r <= 1000; r++) {
        c->run = r;
        tp_run(tp, task, c);
    }
    CHECK(c->calls[0] == 1000 && c->seen_n[0] == 1 && c->calls[1] == 0, "n=1 runs inline");
    free(c);
    tp_free(tp);
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* After a run the workers must go to sleep, not spin forever. */
static void test_idle(int n) {
    ThreadPool *tp = mk(n);
    Ctx *c = calloc(1, sizeof *c);
    if (!c) exit(2);
    atomic_init(&c->total, 0);
    tp_run(tp, task, c);
    struct timespec d = {0, 20 * 1000000L};
    nanosleep(&d, NULL); /* let the spin phase end */
    double c0 = cpu_seconds();
    d.tv_nsec = 300 * 1000000L;
    nanosleep(&d, NULL);
    double used = cpu_seconds() - c0;
    CHECK(used < 0.05, "n=%d: idle pool used %.1f ms of CPU in 300 ms", n, used * 1e3);
    tp_run(tp, task, c);
    CHECK(c->calls[n - 1] == 2, "n=%d: wakes after idling", n);
    free(c);
    tp_free(tp);
}

int main(int argc, char **argv) {
    long runs = argc > 1 ? atol(argv[1]) : 100000;
    double t0 = time_now();
    test_single();
    test_runs(2, runs);
    double t1 = time_now();
    test_runs(4, runs);
    double t2 = time_now();
    printf("  %ld runs: n=2 %.2f us/run, n=4 %.2f us/run (%d cpus)\n", runs,
           (t1 - t0) * 1e6 / (double)runs, (t2 - t1) * 1e6 / (double)runs, cpu_count());
    test_runs(3, runs / 10);
    test_runs(8, runs / 20);
    for (int n = 2; n <= 4; n++) {
        test_sum(n);
        test_sleep_wake(n);
        test_caller_waits(n);
    }
    test_idle(2);
    test_idle(4);
    test_create_free();
    return check_report("threadpool");
}
