/* bench/matmul.c - the matrix kernels alone at Grok's real shapes.
 *
 *   build/bench-matmul [TYPE] [LEVEL]          the standard shapes
 *   build/bench-matmul TYPE LEVEL ROWS N TOKENS one shape
 *   build/bench-matmul TYPE LEVEL ROWS N TOKENS WIDTH
 *                                              the same on a column slice:
 *                                              rows WIDTH values wide, the
 *                                              product over their first N
 *                                              (the experts split's down
 *                                              projections, dist/)
 *
 * TYPE: a weight type (q8_0, q4_K, ...; default q8_0). LEVEL: avx512, avx2,
 * neon, ... or best (default). Random weights and activations; each shape is
 * run until it has used ~0.3 s of CPU and the fastest run is kept. Time is
 * this thread's CPU time, not wall time, so other work on a shared machine
 * disturbs it less (it still shares caches and cores). Prints GMAC/s
 * (multiply-adds per second) and, for the one-token shapes, the weight
 * bytes streamed per second and, measured in alternation with it over the
 * same buffer, a plain read of those bytes (a sum of 32-byte loads: the
 * core's streaming read bandwidth, the ceiling of a one-token product).
 * One thread: the forward pass splits these products into row ranges over
 * its threads.
 *
 *   build/bench-matmul read MB                 that read alone, MB buffer */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant.h"

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* the sum of the 32-byte words of p (n a multiple of 128): four
 * independent accumulators, so only the loads limit it */
__attribute__((target("avx2"), noinline)) static uint64_t read_sum(const uint8_t *p, size_t n) {
    if (!__builtin_cpu_supports("avx2")) {
        uint64_t s = 0;
        for (size_t i = 0; i < n; i += 8) s += *(const uint64_t *)(const void *)(p + i);
        return s;
    }
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i < n; i += 128) {
        a = _mm256_add_epi64(a, _mm256_loadu_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
        c = _mm256_add_epi64(c, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
        d = _mm256_add_epi64(d, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
    }
    a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    uint64_t v[4];
    _mm256_storeu_si256((__m256i *)v, a);
    return v[0] + v[1] + v[2] + v[3];
}
#else
static uint64_t read_sum(const uint8_t *p, size_t n) {
    uint64_t s = 0;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        s += v;
    }
    return s;
}
#endif

/* the best time of a read of n bytes at p (n rounded down to 128) */
static double time_read(const uint8_t *p, size_t n, volatile uint64_t *sink) {
    const double t0 = cpu_now();
    *sink += read_sum(p, n & ~(size_t)127);
    return cpu_now() - t0;
}


static int run_shape(uint32_t type, int level, int rows, int n, int nt, int width) {
    const size_t wrb = type_row_size(type, width), xrb = type_row_size(vec_dot_type(type), n);
    uint8_t *w = malloc(wrb * (size_t)rows), *x = malloc(xrb * (size_t)nt);
    float *f = malloc(sizeof(float) * (size_t)width), *out = malloc(sizeof(float) * (size_t)rows * (size_t)nt);
    if (!w || !x || !f || !out) {
        fprintf(stderr, "bench-matmul: out of memory for %d x %d\n", rows, n);
        free(w), free(x), free(f), free(out);
        return 1;
    }
    unsigned s = 1;
    for (int r = 0; r < rows + nt; r++) {
        for (int i = 0; i < width; i++) s = s * 1103515245u + 12345u, f[i] = (float)((s >> 8) & 0xffff) / 65536.0f - 0.5f;
        if (r < rows) quantize_row(type, f, w + wrb * (size_t)r, width);
        else quantize_row(vec_dot_type(type), f, x + xrb * (size_t)(r - rows), n);
    }
    matmul_rows_level(level, type, w, wrb, x, xrb, n, nt, out, rows, 0, rows); /* warm */
    double best = 1e30, used = 0.0, rbest = 1e30;
    volatile uint64_t sink = 0;
    for (int it = 0; it < 20000 && used < 0.3; it++) {
        const double t0 = cpu_now();
        matmul_rows_level(level, type, w, wrb, x, xrb, n, nt, out, rows, 0, rows);
        const double d = cpu_now() - t0;
        used += d;
        if (d < best) best = d;
        if (nt == 1 && width == n) { /* the read reference, alternating with the product */
            const double r = time_read(w, wrb * (size_t)rows, &sink);
            used += r;
            if (r < rbest) rbest = r;
        }
    }
    const double macs = (double)rows * n * nt;
    printf("| %-5s | %-7s | %6d | %6d | %4d | %8.3f | %7.1f |", type_info(type)->name, quant_simd_level_name(level),
           rows, n, nt, best * 1e3, macs / best * 1e-9);
    if (nt == 1 && width != n) /* a column slice: the bytes of the slice */
        printf(" %6.1f GB/s |", (double)type_row_size(type, n) * rows / best * 1e-9);
    else if (nt == 1)
        printf(" %6.1f GB/s | read %5.1f GB/s | %3.0f %% |", (double)wrb * rows / best * 1e-9,
               (double)(wrb * (size_t)rows & ~(size_t)127) / rbest * 1e-9, 100.0 * rbest / best);
    printf("\n");
    free(w), free(x), free(f), free(out);
    return 0;
}

/* build/bench-matmul read MB: the read reference alone */
static int run_read(double mb) {
    const size_t n = (size_t)(mb * 1e6) & ~(size_t)127;
    uint8_t *p = n ? malloc(n) : NULL;
    if (!p) {
        fprintf(stderr, "bench-matmul: cannot allocate %.0f MB\n", mb);
        return 1;
    }
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 2654435761u >> 13);
    volatile uint64_t sink = 0;
    double best = 1e30, used = 0.0;
    for (int it = 0; it < 200 && used < 1.0; it++) {
        const double d = time_read(p, n, &sink);
        used += d;
        if (d < best) best = d;
    }
    printf("read %.0f MB: %.1f GB/s (best of thread CPU time)\n", (double)n * 1e-6, (double)n / best * 1e-9);
    free(p);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "read") == 0) return run_read(atof(argv[2]));
    const char *name = argc > 1 ? argv[1] : "q8_0";
    const int t = type_from_name(name);
    if (t < 0 || type_info((uint32_t)t)->block_size < 32 || t == GGML_TYPE_Q8_1 || t == GGML_TYPE_Q8_K) {
        fprintf(stderr, "bench-matmul: '%s' is not a quantized weight type (q4_0 ... q8_0, q2_K ... q6_K)\n", name);
        return 2;
    }
    int level = quant_simd_level();
    if (argc > 2 && strcmp(argv[2], "best") != 0) {
        level = -1;
        for (int l = 0; l < SIMD_COUNT; l++)
            if (strcmp(argv[2], quant_simd_level_name(l)) == 0) level = l;
        if (level < 0 || !quant_simd_supported(level)) {
            fprintf(stderr, "bench-matmul: SIMD level '%s' is unknown or not supported by this CPU\n", argv[2]);
            return 2;
        }
    }
    printf("| type  | level   |   rows |      n | tok  |       ms |  GMAC/s |\n");
    printf("| :---- | :------ | -----: | -----: | ---: | -------: | ------: |\n");
    if (argc > 5) {
        const int rows = atoi(argv[3]), n = atoi(argv[4]), nt = atoi(argv[5]), width = argc > 6 ? atoi(argv[6]) : n;
        const int bs = (int)type_info((uint32_t)t)->block_size;
        if (rows < 1 || n < bs || n % bs || nt < 1 || width < n || width % bs) {
            fprintf(stderr, "bench-matmul: bad shape (ROWS >= 1, N a multiple of %d, TOKENS >= 1, WIDTH >= N)\n", bs);
            return 2;
        }
        return run_shape((uint32_t)t, level, rows, n, nt, width);
    }
    /* Grok-1: expert gate/up (32,768 x 6,144), down (6,144 x 32,768), Wq;
     * token counts of a prompt's experts (~n/4 each) and of decoding */
    const int shapes[][3] = {{2048, 6144, 64}, {1024, 32768, 64}, {2048, 6144, 16}, {2048, 6144, 4},
                             {2048, 6144, 1},  {8192, 6144, 1},   {2816, 1024, 64}};
    int rc = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int n = shapes[i][1];
        if (n % type_info((uint32_t)t)->block_size) continue;
        rc |= run_shape((uint32_t)t, level, shapes[i][0], n, shapes[i][2], n);
    }
    return rc;
}
