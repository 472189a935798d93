/* bench.h - `grok bench -m MODEL [-p 512] [-n 128] [-t 1,2] [-r 5]`, in the
 * manner of llama-bench: prompt processing (pp: one batch of -p tokens) and
 * generation (tg: -n tokens decoded one at a time) in tokens per second,
 * mean and standard deviation over -r repetitions, for each thread count.
 * For generation it also prints the bytes of weights one token reads
 * (attention, the experts it is routed to, the output matrix), the
 * resulting GB/s, and that as a fraction of the machine's read bandwidth,
 * which it measures itself (threads summing a buffer far larger than the
 * caches). Peak RSS (VmHWM) is compared with the file size + KV cache. */
#ifndef GROK_BENCH_H
#define GROK_BENCH_H

#include "dist.h"

int cmd_bench(int argc, char **argv, Dist *d);

#endif
