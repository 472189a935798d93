/* check_quant_dev.cpp - the CUDA backend's weight-reading device code
 * (src/engine/cuda/quant_cuda_dev.cuh) compiled for the CPU with stand-ins
 * for the few CUDA intrinsics it uses, against quant.c's scalar reference:
 *   - dq<T>: every value of random rows of every weight type, bit for bit
 *     equal to dequantize_row;
 *   - load_unit / dot_unit, walked as k_matvec's 32 lanes walk a row (lane l
 *     takes units l, l + 32, ...; the lanes' sums then added): the dot
 *     product of a row with 8-bit activations (quantize_row's) within 1e-5
 *     (relative to sum |w x|) of vec_dot_ref.
 * Not a ctest (it needs a C++ compiler; the project is C): run by
 * tests/gpu/emu/run.sh, which builds it against build/libgrokcore.a. This is
 * what can be checked of the CUDA kernels on a machine without a GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "quant.h"
}

#define __device__
#define __forceinline__ inline
static inline float h2f(uint16_t h) { return fp16_to_f32(h); }
static inline float bf2f(uint16_t h) { return bf16_to_f32(h); }
static inline uint16_t ld16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline int ld32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return (int)v;
}
static inline int __dp4a(int a, int b, int c) { /* signed bytes */
    for (int i = 0; i < 4; i++) c += (int)(int8_t)(uint8_t)((uint32_t)a >> (8 * i)) * (int)(int8_t)(uint8_t)((uint32_t)b >> (8 * i));
    return c;
}
static inline unsigned __vsub4(unsigned a, unsigned b) { /* per byte, modulo 256 */
    unsigned r = 0;
    for (int i = 0; i < 4; i++) r |= (((a >> (8 * i)) - (b >> (8 * i))) & 0xffu) << (8 * i);
    return r;
}

#include "quant_cuda_dev.cuh"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static int fails;

template <int T> static void check_type(int64_t n) {
    const size_t rb = type_row_size(T, n);
    const uint32_t vt = vec_dot_type(T);
    const size_t xb = type_row_size(vt, n);
    float *w = (float *)malloc((size_t)n * 4), *x = (float *)malloc((size_t)n * 4), *d = (float *)malloc((size_t)n * 4);
    uint8_t *wq = (uint8_t *)malloc(rb), *xq = (uint8_t *)malloc(xb);
    float *xd = (float *)malloc((size_t)n * 4);
    double worst_rel = 0;
    int dq_bad = 0;
    for (int rep = 0; rep < 50; rep++) {
        const float ws = rep % 5 == 0 ? 1e-3f : rep % 5 == 1 ? 30.0f : 1.0f;
        for (int64_t i = 0; i < n; i++) w[i] = frand() * ws, x[i] = frand() * (rep % 3 ? 1.0f : 100.0f);
        if (rep % 7 == 3) for (int64_t i = 0; i < n; i += 3) x[i] = 0; /* zero runs */
        if (T == GGML_TYPE_F32) memcpy(wq, w, rb);
        else quantize_row(T, w, wq, n);
        if (vt == GGML_TYPE_F32) memcpy(xq, x, xb);
        else quantize_row(vt, x, xq, n);
        /* dq against dequantize_row */
        dequantize_row(T, wq, d, n);
        for (int64_t i = 0; i < n; i++) {
            const float v = dq<T>(wq, i);
            if (memcmp(&v, &d[i], 4)) dq_bad++;
        }
        /* the lanes of k_matvec */
        const int64_t n_units = (n + Tr<T>::UV - 1) / Tr<T>::UV;
        float lanes[32];
        for (int lane = 0; lane < 32; lane++) {
            float acc = 0;
            for (int64_t u = lane; u < n_units; u += 32) {
                Unit wu;
                load_unit<T>(wq, u, n, wu);
                acc += dot_unit<T>(wu, xq, u, n);
            }
            lanes[lane] = acc;
        }
        float s = 0;
        for (int l = 0; l < 32; l++) s += lanes[l]; /* the kernel's butterfly adds them in another order */
        const float ref = vec_dot_ref(T, wq, xq, n);
        /* scale of the sum: sum |w x| over the dequantized values */
        if (vt == GGML_TYPE_F32) memcpy(xd, x, (size_t)n * 4);
        else dequantize_row(vt, xq, xd, n);
        double mag = 0;
        for (int64_t i = 0; i < n; i++) mag += fabs((double)d[i] * xd[i]);
        const double rel = mag > 0 ? fabs((double)s - ref) / mag : fabs((double)s - ref);
        worst_rel = rel > worst_rel ? rel : worst_rel;
    }
    const bool ok = dq_bad == 0 && worst_rel <= 1e-5;
    if (!ok) fails++;
    printf("%s %-5s n %-5lld dq mismatches %d, dot max rel %.3g\n", ok ? "PASS" : "FAIL", type_info(T)->name,
           (long long)n, dq_bad, worst_rel);
    free(w), free(x), free(d), free(wq), free(xq), free(xd);
}

int main(void) {
    static const int64_t NS[] = {256, 768, 6144};
    for (int64_t n : NS) {
        check_type<GGML_TYPE_F32>(n);
        check_type<GGML_TYPE_F16>(n);
        check_type<GGML_TYPE_BF16>(n);
        check_type<GGML_TYPE_Q4_0>(n);
        check_type<GGML_TYPE_Q4_1>(n);
        check_type<GGML_TYPE_Q5_0>(n);
        check_type<GGML_TYPE_Q5_1>(n);
        check_type<GGML_TYPE_Q8_0>(n);
        check_type<GGML_TYPE_Q2_K>(n);
        check_type<GGML_TYPE_Q3_K>(n);
        check_type<GGML_TYPE_Q4_K>(n);
        check_type<GGML_TYPE_Q5_K>(n);
        check_type<GGML_TYPE_Q6_K>(n);
    }
    check_type<GGML_TYPE_F32>(100); /* a float row that is no multiple of 8 */
    check_type<GGML_TYPE_F16>(36);
    printf("%s\n", fails ? "FAILED" : "all passed");
    return fails ? 1 : 0;
}
