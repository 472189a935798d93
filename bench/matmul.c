/* bench/matmul.c - the matrix kernels alone at Grok's real shapes.
 *
 *   build/bench-matmul [TYPE] [LEVEL]          the standard shapes
 *   build/bench-matmul TYPE LEVEL ROWS N TOKENS one shape
 *
 * TYPE: a weight type (q8_0, q4_K, ...; default q8_0). LEVEL: avx512, avx2,
 * neon, ... or best (default). Random weights and activations; each shape is
 * run until it has used ~0.3 s of CPU and the fastest run is kept. Time is
 * this thread's CPU time, not wall time, so other work on a shared machine
 * disturbs it less (it still shares caches and cores). Prints GMAC/s
 * (multiply-adds per second) and, for the one-token shapes, the weight
 * bytes streamed per second. One thread: the forward pass splits these
 * products into row ranges over its threads. */
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

static int run_shape(uint32_t type, int level, int rows, int n, int nt) {
    const size_t wrb = type_row_size(type, n), xrb = type_row_size(vec_dot_type(type), n);
    uint8_t *w = malloc(wrb * (size_t)rows), *x = malloc(xrb * (size_t)nt);
    float *f = malloc(sizeof(float) * (size_t)n), *out = malloc(sizeof(float) * (size_t)rows * (size_t)nt);
    if (!w || !x || !f || !out) {
        fprintf(stderr, "bench-matmul: out of memory for %d x %d\n", rows, n);
        free(w), free(x), free(f), free(out);
        return 1;
    }
    unsigned s = 1;
    for (int r = 0; r < rows + nt; r++) {
        for (int i = 0; i < n; i++) s = s * 1103515245u + 12345u, f[i] = (float)((s >> 8) & 0xffff) / 65536.0f - 0.5f;
        if (r < rows) quantize_row(type, f, w + wrb * (size_t)r, n);
        else quantize_row(vec_dot_type(type), f, x + xrb * (size_t)(r - rows), n);
    }
    matmul_rows_level(level, type, w, wrb, x, xrb, n, nt, out, rows, 0, rows); /* warm */
    double best = 1e30, used = 0.0;
    for (int it = 0; it < 200 && used < 0.3; it++) {
        const double t0 = cpu_now();
        matmul_rows_level(level, type, w, wrb, x, xrb, n, nt, out, rows, 0, rows);
        const double d = cpu_now() - t0;
        used += d;
        if (d < best) best = d;
    }
    const double macs = (double)rows * n * nt;
    printf("| %-5s | %-7s | %6d | %6d | %4d | %8.3f | %7.1f |", type_info(type)->name, quant_simd_level_name(level),
           rows, n, nt, best * 1e3, macs / best * 1e-9);
    if (nt == 1) printf(" %6.1f GB/s |", (double)wrb * rows / best * 1e-9);
    printf("\n");
    free(w), free(x), free(f), free(out);
    return 0;
}

int main(int argc, char **argv) {
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
    if (argc > 5) return run_shape((uint32_t)t, level, atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    /* Grok-1: expert gate/up (32,768 x 6,144), down (6,144 x 32,768), Wq;
     * token counts of a prompt's experts (~n/4 each) and of decoding */
    const int shapes[][3] = {{2048, 6144, 64}, {1024, 32768, 64}, {2048, 6144, 16}, {2048, 6144, 4},
                             {2048, 6144, 1},  {8192, 6144, 1},   {2816, 1024, 64}};
    int rc = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int n = shapes[i][1];
        if (n % type_info((uint32_t)t)->block_size) continue;
        rc |= run_shape((uint32_t)t, level, shapes[i][0], n, shapes[i][2]);
    }
    return rc;
}
