/* quant_x86_defs.h - what every x86 kernel file (quant_x86.c, quant_x86_a2.c,
 * quant_x86_k2.c, quant_x86_dec512.c, kv.c's attention kernels) compiles
 * with: the target attributes of the AVX2 and AVX-512 functions, forced
 * inlining, the F16C half conversion, and the weight stream's software
 * prefetch. Internal to src/engine/cpu; include after <immintrin.h>, on
 * x86-64 only. */
#ifndef GROK_QUANT_X86_DEFS_H
#define GROK_QUANT_X86_DEFS_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define INL inline __attribute__((always_inline))
#define H2FV(h) _cvtsh_ss(h) /* F16C: exact, like fp16_to_f32 */

/* Weights stream from memory once per token; the hardware prefetchers
 * alone do not keep up with the unpacking loops, so they prefetch
 * explicitly this far ahead (measured on this machine, decode streaming one
 * row per pass: Q8_0 13-15 GB/s without, 18-21 GB/s with; 2-12 KiB ahead
 * and hints T0/NTA all within the noise). Into L2 (T1), not L1: the
 * demand loads then find the lines in L2, and (presumably) the prefetches
 * no longer hold L1 fill buffers the loads need; streaming 1024-wide rows, Q6_K
 * 20.5 -> 24.5 GB/s, Q8_0 21.7 -> 22.4, Q4_K 14.9 -> 15.3 (T1 at 24 KiB:
 * no better, and worse for Q8_0 at 2 threads). Re-measured for
 * quant_x86_dec512.c's AVX-512 generation kernels streaming 570 MB of Q8_0:
 * 2-48 KiB, T0/T1/T2, each line prefetched once or not at all, all within
 * this shared machine's noise of 10-12 GB/s. */
#ifndef PREFETCH_DIST
#define PREFETCH_DIST 12288
#endif
#ifndef PREFETCH_HINT
#define PREFETCH_HINT _MM_HINT_T1
#endif

/* How far ahead of a block a kernel prefetches, for rows of `bytes` bytes
 * wrb apart: PREFETCH_DIST when the rows are contiguous; when they are a
 * column slice of wider rows (the experts split's down projections, dist/:
 * each process computes some columns of every row), the same place in the
 * row about PREFETCH_DIST bytes of rows ahead, so that no prefetch fetches
 * the columns between them. Measured (medium Q8_0 model, 2 ranks x 1
 * thread, tg32): 126 -> 133 tok/s, the one process 142 (this 2-core VM). */
static inline size_t row_prefetch(size_t bytes, size_t wrb) {
    if (wrb <= bytes || bytes == 0) return PREFETCH_DIST;
    return (PREFETCH_DIST + bytes - 1) / bytes * wrb;
}

/* The first PREFETCH_DIST bytes of rows [0, nr) (of `bytes` bytes, wrb
 * apart) into L1: a call whose rows do not follow the previous call's. */
static inline void prefetch_rows(const uint8_t *w, size_t bytes, size_t wrb, int64_t nr) {
    size_t left = PREFETCH_DIST;
    for (int64_t r = 0; r < nr && left > 0; r++) {
        const size_t n = bytes < left ? bytes : left;
        for (size_t i = 0; i < n; i += 64) _mm_prefetch((const char *)w + (size_t)r * wrb + i, _MM_HINT_T0);
        left -= n;
    }
}

#endif
