/* test_quant.c - type table, fp16/bf16 conversion, Q8_0 rows, SIMD == scalar. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

static int passed, failed;
#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (cond) passed++;                                               \
        else {                                                            \
            failed++;                                                     \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                   \
            printf(__VA_ARGS__);                                          \
            printf("\n");                                                 \
        }                                                                 \
    } while (0)

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* xorshift, uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 4503599627370496.0)) - 1.0f;
}

static void test_table(void) {
    CHECK(type_info(GGML_TYPE_Q8_0)->type_size == 34 && type_info(GGML_TYPE_Q8_0)->block_size == 32, "q8_0");
    CHECK(type_info(GGML_TYPE_Q4_K)->type_size == 144, "q4_K size");
    CHECK(type_info(GGML_TYPE_Q6_K)->type_size == 210, "q6_K size");
    CHECK(type_info(GGML_TYPE_BF16)->type_size == 2, "bf16");
    CHECK(type_info(4) == NULL && type_info(31) == NULL && type_info(999) == NULL, "removed/unknown ids");
    CHECK(type_from_name("Q8_0") == GGML_TYPE_Q8_0 && type_from_name("bf16") == GGML_TYPE_BF16, "names");
    CHECK(type_from_name("q9") == -1, "unknown name");
    CHECK(type_row_size(GGML_TYPE_Q8_0, 64) == 68, "row size");
}

static void test_fp16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = fp16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (f32_to_fp16(f) != h) bad++;
    }
    CHECK(bad == 0, "fp16 round trip: %d values differ", bad);
    CHECK(fp16_to_f32(0x3c00) == 1.0f && fp16_to_f32(0xc000) == -2.0f, "fp16 values");
    CHECK(fp16_to_f32(0x0001) == ldexpf(1.0f, -24), "smallest subnormal");
    CHECK(f32_to_fp16(65504.0f) == 0x7bff && f32_to_fp16(65520.0f) == 0x7c00, "overflow to inf");
    /* ties to even: 1 + 2^-11 is halfway between 1 and 1+2^-10 -> 1 */
    CHECK(f32_to_fp16(1.0f + ldexpf(1.0f, -11)) == 0x3c00, "tie to even (down)");
    CHECK(f32_to_fp16(1.0f + 3 * ldexpf(1.0f, -11)) == 0x3c02, "tie to even (up)");
    CHECK(f32_to_fp16(ldexpf(1.0f, -25)) == 0 && f32_to_fp16(ldexpf(1.5f, -25)) == 1, "subnormal rounding");
    CHECK(isnan(fp16_to_f32(f32_to_fp16(NAN))), "nan");
}

static void test_bf16(void) {
    CHECK(f32_to_bf16(1.0f) == 0x3f80 && bf16_to_f32(0x3f80) == 1.0f, "bf16 one");
    /* 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7 -> even (1) */
    CHECK(f32_to_bf16(1.0f + ldexpf(1.0f, -8)) == 0x3f80, "bf16 tie to even");
    CHECK(f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)) == 0x3f82, "bf16 tie up");
    CHECK(isnan(bf16_to_f32(f32_to_bf16(NAN))), "bf16 nan");
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = bf16_to_f32((uint16_t)h);
        if (!isnan(f) && f32_to_bf16(f) != h) bad++;
    }
    CHECK(bad == 0, "bf16 round trip: %d differ", bad);
}

static void test_q8_0(void) {
    enum { N = 256 };
    float x[N], y[N];
    BlockQ8_0 q[N / 32];
    for (int i = 0; i < N; i++) x[i] = frand() * (i < 32 ? 0.001f : 3.0f);
    x[40] = 0; /* a zero inside a block */
    CHECK(quantize_row(GGML_TYPE_Q8_0, x, q, N) == 0, "quantize");
    dequantize_row(GGML_TYPE_Q8_0, q, y, N);
    int bad = 0;
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        /* q = round(x/d) with d = amax/127, then d is stored as fp16 */
        const float d = amax / 127.0f, dh = fp16_to_f32(f32_to_fp16(d));
        for (int j = 0; j < 32; j++)
            if (fabsf(x[b * 32 + j] - y[b * 32 + j]) > 0.5f * d * 1.0001f + 127.0f * fabsf(d - dh) + 1e-7f) bad++;
    }
    CHECK(bad == 0, "q8_0 round trip error above d/2 for %d values", bad);
    float zero[32] = {0}, back[32];
    BlockQ8_0 qz;
    quantize_row(GGML_TYPE_Q8_0, zero, &qz, 32);
    dequantize_row(GGML_TYPE_Q8_0, &qz, back, 32);
    CHECK(back[0] == 0 && back[31] == 0 && qz.d == 0, "all-zero block");
    /* ggml rounds half away from zero: x = 0.5 * d exactly -> q = 1 */
    float h[32] = {127.0f, 0.5f, -0.5f, 1.5f};
    quantize_row(GGML_TYPE_Q8_0, h, &qz, 32);
    CHECK(qz.qs[0] == 127 && qz.qs[1] == 1 && qz.qs[2] == -1 && qz.qs[3] == 2, "round half away (%d %d %d)",
          qz.qs[1], qz.qs[2], qz.qs[3]);
}

static void test_simd_equals_scalar(void) {
    enum { N = 1024 + 32 };
    static float w[N], x[N];
    static uint16_t w16[N], wb16[N];
    static BlockQ8_0 wq[N / 32], xq[N / 32];
    for (int n = 32; n <= N; n += 32 * 7) {
        for (int i = 0; i < n; i++) w[i] = frand(), x[i] = frand();
        quantize_row(GGML_TYPE_F16, w, w16, n);
        quantize_row(GGML_TYPE_BF16, w, wb16, n);
        quantize_row(GGML_TYPE_Q8_0, w, wq, n);
        quantize_row(GGML_TYPE_Q8_0, x, xq, n);
        struct {
            uint32_t t;
            const void *w, *x;
        } cases[] = {{GGML_TYPE_F32, w, x}, {GGML_TYPE_F16, w16, x}, {GGML_TYPE_BF16, wb16, x}, {GGML_TYPE_Q8_0, wq, xq}};
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            float a = vec_dot(cases[c].t, cases[c].w, cases[c].x, n);
            float b = vec_dot_ref(cases[c].t, cases[c].w, cases[c].x, n);
            CHECK(fabsf(a - b) <= 1e-5f * (1.0f + fabsf(b)) * sqrtf((float)n), "%s n=%d: simd %g scalar %g",
                  type_info(cases[c].t)->name, n, a, b);
        }
        /* Q8_0 integer sums are exact: with unit scales the result is the
         * integer dot product itself */
        int64_t isum = 0;
        for (int b = 0; b < n / 32; b++) {
            wq[b].d = xq[b].d = f32_to_fp16(1.0f);
            for (int j = 0; j < 32; j++) isum += wq[b].qs[j] * xq[b].qs[j];
        }
        float a1 = vec_dot(GGML_TYPE_Q8_0, wq, xq, n), b1 = vec_dot_ref(GGML_TYPE_Q8_0, wq, xq, n);
        CHECK(a1 == (float)isum && b1 == (float)isum, "q8_0 integer sums exact: %.9g %.9g vs %lld", a1, b1,
              (long long)isum);
    }
    /* extreme int8 values: -128 does not occur in Q8_0 but 127/-127 do */
    BlockQ8_0 a, b;
    a.d = b.d = f32_to_fp16(1.0f);
    for (int j = 0; j < 32; j++) a.qs[j] = 127, b.qs[j] = (int8_t)(j % 2 ? -127 : 127);
    CHECK(vec_dot(GGML_TYPE_Q8_0, &a, &b, 32) == vec_dot_ref(GGML_TYPE_Q8_0, &a, &b, 32), "q8_0 extremes");
}

static void test_matmul_and_mad(void) {
    enum { ROWS = 37, N = 96, T = 5 };
    static float w[ROWS * N], x[T * N], out[T * ROWS];
    for (int i = 0; i < ROWS * N; i++) w[i] = frand();
    for (int i = 0; i < T * N; i++) x[i] = frand();
    matmul_rows(GGML_TYPE_F32, w, N * 4, x, N * 4, N, T, out, ROWS, 0, ROWS);
    int bad = 0;
    for (int t = 0; t < T; t++)
        for (int r = 0; r < ROWS; r++)
            if (out[t * ROWS + r] != vec_dot(GGML_TYPE_F32, w + r * N, x + t * N, N)) bad++;
    CHECK(bad == 0, "matmul_rows == vec_dot for %d entries", T * ROWS - bad);
    float y[N] = {0}, y2[N] = {0};
    uint16_t h[N];
    quantize_row(GGML_TYPE_F16, x, h, N);
    vec_mad(GGML_TYPE_F16, y, 0.5f, h, N);
    vec_mad(GGML_TYPE_F32, y2, 0.5f, x, N);
    float err = 0;
    for (int i = 0; i < N; i++) err = fmaxf(err, fabsf(y[i] - y2[i]));
    CHECK(err < 1e-3f, "vec_mad f16 vs f32: %g", err);
}

int main(void) {
    printf("kernels: %s\n", quant_simd_name());
    test_table();
    test_fp16();
    test_bf16();
    test_q8_0();
    test_simd_equals_scalar();
    test_matmul_and_mad();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
