/* threadpool.c - see threadpool.h.
 *
 * One run:
 *   caller: fn, ctx = ...; done = 0; gen++ (publishes them); wakes sleepers;
 *           runs ith 0; waits until done == n - 1.
 *   worker: waits until gen != the last generation it ran; runs fn(ctx, ith);
 *           done++ (publishes its results); wakes the caller if it sleeps.
 * Both sides wait by spinning for SPIN_NS and then sleeping on a condition
 * variable. The hand-over between "about to sleep" and "about to wake a
 * sleeper" is a Dekker pattern on seq_cst atomics (the sleeper announces
 * itself, then re-checks the condition under the mutex; the waker changes the
 * condition, then checks for announced sleepers), so no wake-up is lost and
 * the fast path takes no lock.
 *
 * tp_run must not be called from two threads at once on the same pool, nor
 * from inside a task. n_threads <= 0 in tp_create means cpu_count(). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_NS 100000L /* spin this long before sleeping */
#define CACHE_LINE 64

typedef struct {
    struct ThreadPool *tp;
    int ith;
} Worker;

struct ThreadPool {
    int n;
    pthread_t *threads;
    Worker *workers;
    int n_started;
    /* set by the caller before publishing a generation */
    TaskFn fn;
    void *ctx;
    char pad0[CACHE_LINE];
    atomic_uint gen;          /* bumped once per run (and by tp_free) */
    atomic_int stop;
    atomic_int n_sleeping;    /* workers announced on cv_work */
    char pad1[CACHE_LINE];
    atomic_int done;          /* workers finished with this generation */
    atomic_int caller_sleeping;
    char pad2[CACHE_LINE];
    pthread_mutex_t mu;
    pthread_cond_t cv_work;
    pthread_cond_t cv_done;
};

int cpu_count(void) {
#if defined(__APPLE__)
    /* Apple Silicon: the performance cores only. Work is split evenly, so
     * an efficiency core would hold every step back (llama.cpp does the same). */
    int perf = 0;
    size_t len = sizeof perf;
    if (sysctlbyname("hw.perflevel0.logicalcpu", &perf, &len, NULL, 0) == 0 && perf > 0) return perf;
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) return 1;
    if (n > 4096) return 4096;
    return (int)n;
}

static long elapsed_ns(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)(t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

/* Waits until gen != last; returns the new generation. */
static unsigned worker_wait(struct ThreadPool *tp, unsigned last) {
    unsigned g = atomic_load_explicit(&tp->gen, memory_order_acquire);
    if (g != last) return g;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 1;; i++) {
        CPU_RELAX();
        g = atomic_load_explicit(&tp->gen, memory_order_acquire);
        if (g != last) return g;
        if ((i & 63) == 0) {
            if (elapsed_ns(&t0) > SPIN_NS) break;
            sched_yield(); /* lets a descheduled thread of the pool run */
        }
    }
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add_explicit(&tp->n_sleeping, 1, memory_order_seq_cst);
    while ((g = atomic_load_explicit(&tp->gen, memory_order_seq_cst)) == last)
        pthread_cond_wait(&tp->cv_work, &tp->mu);
    atomic_fetch_sub_explicit(&tp->n_sleeping, 1, memory_order_relaxed);
    pthread_mutex_unlock(&tp->mu);
    return g;
}

static void *worker_main(void *arg) {
    Worker *w = arg;
    struct ThreadPool *tp = w->tp;
    unsigned last = 0;
    for (;;) {
        last = worker_wait(tp, last);
        if (atomic_load_explicit(&tp->stop, memory_order_relaxed)) break;
        tp->fn(tp->ctx, w->ith, tp->n);
        int d = atomic_fetch_add_explicit(&tp->done, 1, memory_order_seq_cst) + 1;
        if (d == tp->n - 1 && atomic_load_explicit(&tp->caller_sleeping, memory_order_seq_cst)) {
            pthread_mutex_lock(&tp->mu);
            pthread_cond_signal(&tp->cv_done);
            pthread_mutex_unlock(&tp->mu);
        }
    }
    return NULL;
}

/* Bumps the generation and wakes sleeping workers (all of them if `all`). */
static void publish(struct ThreadPool *tp, int all) {
    atomic_fetch_add_explicit(&tp->gen, 1, memory_order_seq_cst);
    if (all || atomic_load_explicit(&tp->n_sleeping, memory_order_seq_cst) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv_work);
        pthread_mutex_unlock(&tp->mu);
    }
}

static void shutdown_workers(struct ThreadPool *tp) {
    if (tp->n_started == 0) return;
    atomic_store_explicit(&tp->stop, 1, memory_order_relaxed);
    publish(tp, 1); /* the release in the bump orders the stop flag */
    for (int i = 0; i < tp->n_started; i++) pthread_join(tp->threads[i], NULL);
    tp->n_started = 0;
}

ThreadPool *tp_create(int n_threads, Error *err) {
    if (n_threads <= 0) n_threads = cpu_count();
    struct ThreadPool *tp = calloc(1, sizeof *tp);
    if (!tp) {
        err_set(err, "threadpool: out of memory");
        return NULL;
    }
    tp->n = n_threads;
    atomic_init(&tp->gen, 0);
    atomic_init(&tp->stop, 0);
    atomic_init(&tp->n_sleeping, 0);
    atomic_init(&tp->done, 0);
    atomic_init(&tp->caller_sleeping, 0);
    if (n_threads == 1) return tp;

    int rc;
    if ((rc = pthread_mutex_init(&tp->mu, NULL)) != 0) {
        free(tp);
        err_set(err, "threadpool: mutex init failed: %s", strerror(rc));
        return NULL;
    }
    if ((rc = pthread_cond_init(&tp->cv_work, NULL)) != 0) {
        pthread_mutex_destroy(&tp->mu);
        free(tp);
        err_set(err, "threadpool: condition variable init failed: %s", strerror(rc));
        return NULL;
    }
    if ((rc = pthread_cond_init(&tp->cv_done, NULL)) != 0) {
        pthread_cond_destroy(&tp->cv_work);
        pthread_mutex_destroy(&tp->mu);
        free(tp);
        err_set(err, "threadpool: condition variable init failed: %s", strerror(rc));
        return NULL;
    }
    tp->threads = calloc((size_t)(n_threads - 1), sizeof *tp->threads);
    tp->workers = calloc((size_t)(n_threads - 1), sizeof *tp->workers);
    if (!tp->threads || !tp->workers) {
        tp_free(tp);
        err_set(err, "threadpool: out of memory (%d threads)", n_threads);
        return NULL;
    }
    for (int i = 0; i < n_threads - 1; i++) {
        tp->workers[i].tp = tp;
        tp->workers[i].ith = i + 1;
        rc = pthread_create(&tp->threads[i], NULL, worker_main, &tp->workers[i]);
        if (rc != 0) {
            tp_free(tp);
            err_set(err, "threadpool: cannot create thread %d of %d: %s", i + 1, n_threads,
                    strerror(rc));
            return NULL;
        }
        tp->n_started++;
    }
    return tp;
}

void tp_free(ThreadPool *tp) {
    if (!tp) return;
    if (tp->n > 1) {
        shutdown_workers(tp);
        pthread_cond_destroy(&tp->cv_done);
        pthread_cond_destroy(&tp->cv_work);
        pthread_mutex_destroy(&tp->mu);
    }
    free(tp->threads);
    free(tp->workers);
    free(tp);
}

int tp_size(const ThreadPool *tp) { return tp ? tp->n : 0; }

void tp_run(ThreadPool *tp, TaskFn fn, void *ctx) {
    const int n = tp->n;
    if (n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    const int target = n - 1;
    tp->fn = fn;
    tp->ctx = ctx;
    atomic_store_explicit(&tp->done, 0, memory_order_relaxed);
    publish(tp, 0);

    fn(ctx, 0, n);

    if (atomic_load_explicit(&tp->done, memory_order_acquire) == target) return;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 1;; i++) {
        CPU_RELAX();
        if (atomic_load_explicit(&tp->done, memory_order_acquire) == target) return;
        if ((i & 63) == 0) {
            if (elapsed_ns(&t0) > SPIN_NS) break;
            sched_yield();
        }
    }
    pthread_mutex_lock(&tp->mu);
    atomic_store_explicit(&tp->caller_sleeping, 1, memory_order_seq_cst);
    while (atomic_load_explicit(&tp->done, memory_order_seq_cst) != target)
        pthread_cond_wait(&tp->cv_done, &tp->mu);
    atomic_store_explicit(&tp->caller_sleeping, 0, memory_order_relaxed);
    pthread_mutex_unlock(&tp->mu);
}
