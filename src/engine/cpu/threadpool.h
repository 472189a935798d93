/* threadpool.h - a fixed pool of worker threads created once per context.
 * tp_run(fn) calls fn(ctx, i, n) for i = 0..n-1 on n threads (the caller is
 * thread 0) and returns when all are done. Workers spin briefly on an atomic
 * generation counter before sleeping, so back-to-back calls in a decode step
 * cost little to wake. */
#ifndef GROK_THREADPOOL_H
#define GROK_THREADPOOL_H

#include "common.h"

typedef struct ThreadPool ThreadPool;
typedef void (*TaskFn)(void *ctx, int ith, int nth);

ThreadPool *tp_create(int n_threads, Error *err);
void tp_free(ThreadPool *tp);
int tp_size(const ThreadPool *tp);
void tp_run(ThreadPool *tp, TaskFn fn, void *ctx);

/* Number of online CPU cores (>= 1); on Apple Silicon, of performance cores. */
int cpu_count(void);

#endif
