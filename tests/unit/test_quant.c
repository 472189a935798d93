/* test_quant.c - type table, fp16/bf16 conversion, every quantized type's
 * round trip, dot products against dequantization, SIMD == scalar (exact
 * for integer sums), matmul == vec_dot bit for bit, activation rounding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "check.h"

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
    static const struct {
        uint32_t t;
        int bs;
        size_t sz;
    } L[] = {{GGML_TYPE_Q4_0, 32, 18}, {GGML_TYPE_Q4_1, 32, 20}, {GGML_TYPE_Q5_0, 32, 22}, {GGML_TYPE_Q5_1, 32, 24},
             {GGML_TYPE_Q8_1, 32, 36}, {GGML_TYPE_Q2_K, 256, 84}, {GGML_TYPE_Q3_K, 256, 110},
             {GGML_TYPE_Q4_K, 256, 144}, {GGML_TYPE_Q5_K, 256, 176}, {GGML_TYPE_Q8_K, 256, 292}};
    for (size_t i = 0; i < sizeof L / sizeof L[0]; i++)
        CHECK(type_info(L[i].t)->block_size == L[i].bs && type_info(L[i].t)->type_size == L[i].sz, "%s layout",
              type_info(L[i].t)->name);
    CHECK(type_from_name("Q4_K") == GGML_TYPE_Q4_K && type_from_name("q6_k") == GGML_TYPE_Q6_K, "K names");
    CHECK(vec_dot_type(GGML_TYPE_Q4_0) == GGML_TYPE_Q8_0 && vec_dot_type(GGML_TYPE_Q5_0) == GGML_TYPE_Q8_0 &&
              vec_dot_type(GGML_TYPE_Q4_1) == GGML_TYPE_Q8_1 && vec_dot_type(GGML_TYPE_Q5_1) == GGML_TYPE_Q8_1 &&
              vec_dot_type(GGML_TYPE_Q4_K) == GGML_TYPE_Q8_K && vec_dot_type(GGML_TYPE_Q2_K) == GGML_TYPE_Q8_K &&
              vec_dot_type(GGML_TYPE_F16) == GGML_TYPE_F32,
          "vec_dot_type as llama.cpp");
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


/* ---- every quantized weight type --------------------------------------- */

static const uint32_t WTYPES[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
                                  GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
#define NWT (sizeof WTYPES / sizeof WTYPES[0])

static float gauss(void) { /* Irwin-Hall approximation of N(0, 1) */
    float s = 0;
    for (int i = 0; i < 12; i++) s += 0.5f * (frand() + 1.0f);
    return s - 6.0f;
}

/* Relative RMS error bounds of quantize -> dequantize on N(0,1) data with
 * a few outliers. Measured values (grok.c's quantizers) are printed; the
 * bounds leave ~30% margin. */
static double rt_bound(uint32_t t) {
    switch (t) {
    case GGML_TYPE_Q4_0: return 0.12;
    case GGML_TYPE_Q4_1: return 0.11;
    case GGML_TYPE_Q5_0: return 0.06;
    case GGML_TYPE_Q5_1: return 0.055;
    case GGML_TYPE_Q8_0: return 0.008;
    case GGML_TYPE_Q2_K: return 0.36;
    case GGML_TYPE_Q3_K: return 0.20;
    case GGML_TYPE_Q4_K: return 0.11;
    case GGML_TYPE_Q5_K: return 0.055;
    default: return 0.03; /* q6_K */
    }
}

static void test_roundtrip_all(void) {
    enum { N = 8192 };
    static float x[N], y[N];
    static uint8_t q[N * 2];
    for (int i = 0; i < N; i++) x[i] = gauss() * (i % 997 == 0 ? 6.0f : 1.0f);
    for (size_t k = 0; k < NWT; k++) {
        const uint32_t t = WTYPES[k];
        CHECK(quantize_row(t, x, q, N) == 0, "%s quantize", type_info(t)->name);
        dequantize_row(t, q, y, N);
        double e = 0, s = 0;
        for (int i = 0; i < N; i++) e += (double)(x[i] - y[i]) * (x[i] - y[i]), s += (double)x[i] * x[i];
        const double rel = sqrt(e / s);
        printf("  round trip %-5s rel rms error %.4f (bound %.3f)\n", type_info(t)->name, rel, rt_bound(t));
        CHECK(rel <= rt_bound(t), "%s round trip error %.4f > %.3f", type_info(t)->name, rel, rt_bound(t));
        /* zeros stay exact zeros; large and constant rows stay finite */
        static float z[512], zb[512], big[512];
        memset(z, 0, sizeof z);
        quantize_row(t, z, q, 512);
        dequantize_row(t, q, zb, 512);
        int nz = 0;
        for (int i = 0; i < 512; i++) nz += zb[i] != 0.0f;
        CHECK(nz == 0, "%s: zero row gives %d non-zeros", type_info(t)->name, nz);
        for (int i = 0; i < 512; i++) big[i] = i < 256 ? 3.0f : 1000.0f * frand();
        quantize_row(t, big, q, 512);
        dequantize_row(t, q, zb, 512);
        int bad = 0;
        for (int i = 0; i < 512; i++) bad += !isfinite(zb[i]) || fabsf(zb[i] - big[i]) > (i < 256 ? 0.5f : 600.0f);
        CHECK(bad == 0, "%s: constant / large rows: %d bad values", type_info(t)->name, bad);
        /* NaN input must not crash (the output is unspecified) */
        big[7] = NAN;
        quantize_row(t, big, q, 512);
    }
    CHECK(quantize_row(GGML_TYPE_Q4_K, x, q, 100) == -1, "q4_K needs a multiple of 256");
    CHECK(quantize_row(GGML_TYPE_I8, x, q, 32) == -1, "i8 cannot be produced");
}

/* Hand-made blocks, values from the format definitions (doc §3). */
static void test_known_blocks(void) {
    float y[256];
    BlockQ4_0 b4 = {f32_to_fp16(0.5f), {0}};
    b4.qs[0] = 0x1F; /* value 0: 15-8 = 7, value 16: 1-8 = -7 */
    dequantize_row(GGML_TYPE_Q4_0, &b4, y, 32);
    CHECK(y[0] == 3.5f && y[16] == -3.5f && y[1] == -4.0f, "q4_0 nibble order %g %g %g", y[0], y[16], y[1]);
    BlockQ5_0 b5 = {f32_to_fp16(1.0f), {0, 0, 2, 0}, {0}}; /* qh bit 17 -> value 17 gets +16 */
    dequantize_row(GGML_TYPE_Q5_0, &b5, y, 32);
    CHECK(y[17] == 0.0f && y[16] == -16.0f && y[1] == -16.0f, "q5_0 high bits %g %g", y[17], y[16]);
    BlockQ4_K k4;
    memset(&k4, 0, sizeof k4);
    k4.d = f32_to_fp16(1.0f), k4.dmin = f32_to_fp16(0.5f);
    /* sub-block 5: scale = (scales[9] & 15) | (scales[1] >> 6) << 4 = 3 | 1<<4 = 19,
     *              min = (scales[9] >> 4) | (scales[5] >> 6) << 4 = 2 | 2<<4 = 34 */
    k4.scales[9] = 0x23, k4.scales[1] = 0x40, k4.scales[5] = 0x80;
    k4.qs[32 * 2 + 3] = 0x70; /* value 64*2+32+3 = 163 (sub-block 5) has level 7 */
    dequantize_row(GGML_TYPE_Q4_K, &k4, y, 256);
    CHECK(y[163] == 19.0f * 7 - 0.5f * 34 && y[160] == -0.5f * 34, "q4_K packed scales: %g %g", y[163], y[160]);
    BlockQ6_K k6;
    memset(&k6, 0, sizeof k6);
    k6.d = f32_to_fp16(0.25f);
    k6.scales[12] = -3; /* value 200 = 128 + 64 + 8: n=1, k=2 (high nibble of ql[64+8]), qh[32+8] bits 4-5 */
    k6.ql[64 + 8] = 0x50, k6.qh[32 + 8] = 0x20; /* level 5 | 2<<4 = 37 -> q = 5 */
    dequantize_row(GGML_TYPE_Q6_K, &k6, y, 256);
    CHECK(y[200] == 0.25f * -3 * 5, "q6_K layout: %g", y[200]);
    BlockQ3_K k3;
    memset(&k3, 0, sizeof k3);
    k3.d = f32_to_fp16(1.0f);
    /* sub-block 13 (values 208..223): low 4 bits in scales[5] >> 4, high 2 in scales[9] bits 6-7 */
    k3.scales[5] = 0x90, k3.scales[9] = 0x80; /* stored 9 | 2<<4 = 41 -> scale 9 */
    k3.qs[32 + 16] = 0x80; /* n=1, l=16, bits 6-7 (k=3): value 128 + 96 + 16 = 240 has low bits 2 */
    k3.hmask[16] = 0x80;   /* its high bit (bit 4n+k = 7) set: q = 2 (else 2 - 4) */
    dequantize_row(GGML_TYPE_Q3_K, &k3, y, 256);
    const int sc15 = 0; /* value 240 is in sub-block 15, whose stored scale is 0 -> -32 */
    CHECK(y[240] == (float)(sc15 - 32) * 2, "q3_K high bit: %g", y[240]);
    CHECK(y[208] == 9.0f * -4, "q3_K scale of sub-block 13: %g", y[208]);
}

/* Random activations of the type a weight type consumes. */
static void make_act(uint32_t wt, const float *x, void *xq, int n) { quantize_row(vec_dot_type(wt), x, xq, n); }

static void test_dot_vs_dequant(void) {
    enum { N = 2048 };
    static float w[N], x[N], wd[N], xd[N];
    static uint8_t wq[N * 2], xq[N * 2];
    for (size_t k = 0; k < NWT; k++) {
        const uint32_t t = WTYPES[k];
        for (int i = 0; i < N; i++) w[i] = gauss(), x[i] = gauss();
        quantize_row(t, w, wq, N);
        make_act(t, x, xq, N);
        dequantize_row(t, wq, wd, N);
        dequantize_row(vec_dot_type(t), xq, xd, N);
        double ex = 0, mag = 0;
        for (int i = 0; i < N; i++) ex += (double)wd[i] * xd[i], mag += fabs((double)wd[i] * xd[i]);
        if (vec_dot_type(t) == GGML_TYPE_Q8_1) {
            /* Q8_1 carries s = fp16(d * sum(q)); the offset m of the weight
             * block multiplies s, not the exact sum of the dequantized x */
            const size_t sz = type_info(t)->type_size;
            const BlockQ8_1 *xb = (const BlockQ8_1 *)xq;
            for (int b = 0; b < N / 32; b++) {
                uint16_t mh;
                memcpy(&mh, wq + b * sz + 2, 2);
                double sx = 0;
                for (int j = 0; j < 32; j++) sx += xd[32 * b + j];
                ex += fp16_to_f32(mh) * (fp16_to_f32(xb[b].s) - sx);
            }
        }
        const float r = vec_dot_ref(t, wq, xq, N);
        CHECK(fabs(r - ex) <= 2e-6 * mag + 1e-6, "%s: reference dot %g vs dequantized %g", type_info(t)->name, r, ex);
    }
}

/* All integer: unit scales, small activations; every level must give the
 * exact integer dot product. */
static void make_integer_case(uint32_t t, uint8_t *wq, uint8_t *xq, int n, double *expect) {
    static float w[4096], x[4096], wd[4096];
    for (int i = 0; i < n; i++) w[i] = gauss(), x[i] = (float)((int)(frand() * 2.5f));
    quantize_row(t, w, wq, n);
    const int bs = type_info(t)->block_size;
    const size_t sz = type_info(t)->type_size;
    for (int b = 0; b < n / bs; b++) { /* set the scales (fp16 fields) to 1 */
        uint8_t *p = wq + (size_t)b * sz;
        const uint16_t one = f32_to_fp16(1.0f);
        switch (t) {
        case GGML_TYPE_Q4_1:
        case GGML_TYPE_Q5_1:
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K: memcpy(p, &one, 2), memcpy(p + 2, &one, 2); break;
        case GGML_TYPE_Q2_K: memcpy(p + 80, &one, 2), memcpy(p + 82, &one, 2); break;
        case GGML_TYPE_Q3_K: memcpy(p + 108, &one, 2); break;
        case GGML_TYPE_Q6_K: memcpy(p + 208, &one, 2); break;
        default: memcpy(p, &one, 2); break;
        }
    }
    const uint32_t vt = vec_dot_type(t);
    if (vt == GGML_TYPE_Q8_K) {
        BlockQ8_K *xb = (BlockQ8_K *)xq;
        for (int b = 0; b < n / 256; b++) {
            xb[b].d = 1.0f;
            for (int j = 0; j < 256; j++) xb[b].qs[j] = (int8_t)x[256 * b + j];
            for (int j = 0; j < 16; j++) {
                int s = 0;
                for (int i = 0; i < 16; i++) s += xb[b].qs[16 * j + i];
                xb[b].bsums[j] = (int16_t)s;
            }
        }
    } else if (vt == GGML_TYPE_Q8_1) {
        BlockQ8_1 *xb = (BlockQ8_1 *)xq;
        for (int b = 0; b < n / 32; b++) {
            int s = 0;
            for (int j = 0; j < 32; j++) s += xb[b].qs[j] = (int8_t)x[32 * b + j];
            xb[b].d = f32_to_fp16(1.0f), xb[b].s = f32_to_fp16((float)s);
        }
    } else {
        BlockQ8_0 *xb = (BlockQ8_0 *)xq;
        for (int b = 0; b < n / 32; b++) {
            for (int j = 0; j < 32; j++) xb[b].qs[j] = (int8_t)x[32 * b + j];
            xb[b].d = f32_to_fp16(1.0f);
        }
    }
    dequantize_row(t, wq, wd, n); /* now small integers, exactly */
    double e = 0;
    for (int i = 0; i < n; i++) e += (double)wd[i] * x[i];
    *expect = e;
}

static void test_simd_levels(void) {
    static uint8_t wq[8192], xq[8192];
    static float w[4096], x[4096];
    const int sizes_a[] = {32, 96, 512, 544, 1056}, sizes_k[] = {256, 512, 768, 2816};
    for (int level = SIMD_SCALAR; level < SIMD_COUNT; level++) {
        if (!quant_simd_supported(level)) {
            printf("  (level %s not supported here: skipped)\n", quant_simd_level_name(level));
            continue;
        }
        for (size_t k = 0; k < NWT; k++) {
            const uint32_t t = WTYPES[k];
            const bool kq = type_info(t)->block_size == 256;
            const int *sizes = kq ? sizes_k : sizes_a;
            const int ns = kq ? 4 : 5;
            int bad_rand = 0, bad_int = 0;
            for (int si = 0; si < ns; si++) {
                const int n = sizes[si];
                for (int i = 0; i < n; i++) w[i] = gauss(), x[i] = gauss() * 3.0f;
                quantize_row(t, w, wq, n);
                make_act(t, x, xq, n);
                const float a = vec_dot_level(level, t, wq, xq, n), b = vec_dot_ref(t, wq, xq, n);
                float wd[4096], xd[4096];
                dequantize_row(t, wq, wd, n);
                dequantize_row(vec_dot_type(t), xq, xd, n);
                double mag = 0;
                for (int i = 0; i < n; i++) mag += fabs((double)wd[i] * xd[i]);
                /* the ARM kernels do the reference's float steps in its order: equal bit for bit */
                if (level >= SIMD_NEON ? memcmp(&a, &b, sizeof a) != 0 : fabs((double)a - b) > 2e-6 * mag + 1e-6) {
                    bad_rand++;
                    printf("    %s %s n=%d: %.9g vs scalar %.9g (mag %g)\n", quant_simd_level_name(level),
                           type_info(t)->name, n, a, b, mag);
                }
                if (n <= 2048) {
                    double ex;
                    make_integer_case(t, wq, xq, n, &ex);
                    const float ai = vec_dot_level(level, t, wq, xq, n), bi = vec_dot_ref(t, wq, xq, n);
                    if (ai != (float)ex || bi != (float)ex) {
                        bad_int++;
                        printf("    %s %s n=%d integer case: %.9g / scalar %.9g / exact %.9g\n",
                               quant_simd_level_name(level), type_info(t)->name, n, ai, bi, ex);
                    }
                }
            }
            CHECK(bad_rand == 0 && bad_int == 0, "%s %s: simd vs scalar (%d random, %d integer cases differ)",
                  quant_simd_level_name(level), type_info(t)->name, bad_rand, bad_int);
        }
    }
}

/* matmul_rows gives exactly vec_dot for every (row, token), whatever the
 * path (generation below 16 tokens, prompt from 16: DEC_MAX_TOK in quant.c)
 * and tile the pair falls in (rows past a row group, tokens past a token
 * panel, K chunks of the row, odd counts). */
static void test_matmul_exact_shape(int ROWS, int N, int T, const int *ntoks, int n_ntoks) {
    float *w = malloc(sizeof(float) * ROWS * N), *x = malloc(sizeof(float) * T * N);
    float *out = malloc(sizeof(float) * T * ROWS);
    uint8_t *wq = malloc((size_t)ROWS * N * 2), *xq = malloc((size_t)T * N * 2);
    if (!w || !x || !out || !wq || !xq) {
        CHECK(0, "out of memory");
        return;
    }
    for (int i = 0; i < ROWS * N; i++) w[i] = gauss();
    for (int i = 0; i < T * N; i++) x[i] = gauss();
    for (int level = SIMD_AVX2; level < SIMD_COUNT; level++) {
        if (!quant_simd_supported(level)) continue;
        for (size_t k = 0; k < NWT; k++) {
            const uint32_t t = WTYPES[k];
            if (N % type_info(t)->block_size) continue;
            const size_t wrb = type_row_size(t, N), xrb = type_row_size(vec_dot_type(t), N);
            for (int r = 0; r < ROWS; r++) quantize_row(t, w + r * N, wq + r * wrb, N);
            for (int j = 0; j < T; j++) make_act(t, x + j * N, xq + j * xrb, N);
            int bad = 0;
            for (int c = 0; c < n_ntoks; c++) {
                const int nt = ntoks[c];
                memset(out, 0, sizeof(float) * T * ROWS);
                matmul_rows_level(level, t, wq, wrb, xq, xrb, N, nt, out, ROWS, 2, ROWS);
                for (int j = 0; j < nt; j++)
                    for (int r = 2; r < ROWS; r++) {
                        const float o = out[j * ROWS + r];
                        bad += o != vec_dot_level(level, t, wq + r * wrb, xq + j * xrb, N);
                        /* ARM: every path equals the scalar reference */
                        if (level >= SIMD_NEON) bad += o != vec_dot_ref(t, wq + r * wrb, xq + j * xrb, N);
                    }
                for (int r = 0; r < 2; r++) bad += out[r] != 0.0f; /* rows outside [r0, r1) untouched */
            }
            CHECK(bad == 0, "%s %s (%d x %d): matmul_rows != vec_dot for %d entries", quant_simd_level_name(level),
                  type_info(t)->name, ROWS, N, bad);
        }
    }
    free(w), free(x), free(out), free(wq), free(xq);
}

static void test_matmul_exact(void) {
    const int small[] = {1, 2, 3, 5, 11, 15, 16, 21};
    test_matmul_exact_shape(37, 768, 21, small, 8);
    /* wide rows cut into several K chunks (65 blocks of 32: odd), more
     * tokens than one activation panel */
    const int wide[] = {16, 70};
    test_matmul_exact_shape(21, 2080, 70, wide, 2);
    /* row counts that leave every partial register tile of the AVX2 prompt
     * path (6 rows x 2 tokens, groups of 12 rows: 2, 3 and 4 rows left over,
     * odd token counts), rows of 9 and 17 blocks (a group of 8 and a tail) */
    const int prompt[] = {16, 17};
    test_matmul_exact_shape(16, 288, 17, prompt, 2);
    test_matmul_exact_shape(17, 544, 17, prompt, 2);
    test_matmul_exact_shape(30, 288, 17, prompt, 2);
}

/* A column slice (the experts split's down projections, dist/: each rank
 * computes some columns of every row, the rows keeping their stride) gives
 * exactly what the same columns copied into rows of their own give, and
 * vec_dot, on every path: slices whose rows end in a short group of blocks
 * (44 and 29 of 88 Q8_0-sized blocks: the medium model's halves, a third),
 * one ending at the row's end, and for the K-quants 5 of 11 super-blocks. */
static void test_matmul_column_slice(void) {
    enum { ROWS = 19, T = 21, WIDTH = 2816 };
    static const int cuts[][2] = {{0, 1408}, {1408, 1408}, {1888, 928}, {1536, 1280}}; /* first column, count */
    static const int ntoks[] = {1, 2, 3, 4, 5, 16, 21};
    float *w = malloc(sizeof(float) * ROWS * WIDTH), *x = malloc(sizeof(float) * T * WIDTH);
    float *out = malloc(sizeof(float) * T * ROWS), *ref = malloc(sizeof(float) * T * ROWS);
    uint8_t *wq = malloc((size_t)ROWS * WIDTH * 2), *wc = malloc((size_t)ROWS * WIDTH * 2), *xq = malloc((size_t)T * WIDTH * 2);
    if (!w || !x || !out || !ref || !wq || !wc || !xq) {
        CHECK(0, "out of memory");
        free(w), free(x), free(out), free(ref), free(wq), free(wc), free(xq);
        return;
    }
    for (int i = 0; i < ROWS * WIDTH; i++) w[i] = gauss();
    for (int i = 0; i < T * WIDTH; i++) x[i] = gauss();
    for (size_t k = 0; k < NWT; k++) {
        const uint32_t t = WTYPES[k];
        const int bs = (int)type_info(t)->block_size;
        const size_t wrb = type_row_size(t, WIDTH);
        for (int r = 0; r < ROWS; r++) quantize_row(t, w + r * WIDTH, wq + r * wrb, WIDTH);
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
            const int c0 = cuts[c][0], n = cuts[c][1];
            if (c0 % bs || n % bs) continue;
            const size_t off = type_row_size(t, c0), crb = type_row_size(t, n), xrb = type_row_size(vec_dot_type(t), n);
            for (int r = 0; r < ROWS; r++) memcpy(wc + r * crb, wq + r * wrb + off, crb);
            for (int j = 0; j < T; j++) make_act(t, x + j * WIDTH + c0, xq + j * xrb, n);
            for (int level = SIMD_AVX2; level < SIMD_COUNT; level++) {
                if (!quant_simd_supported(level)) continue;
                int bad = 0;
                for (size_t m = 0; m < sizeof ntoks / sizeof ntoks[0]; m++) {
                    const int nt = ntoks[m];
                    matmul_rows_level(level, t, wq + off, wrb, xq, xrb, n, nt, out, ROWS, 0, ROWS);
                    matmul_rows_level(level, t, wc, crb, xq, xrb, n, nt, ref, ROWS, 0, ROWS);
                    for (int j = 0; j < nt; j++)
                        for (int r = 0; r < ROWS; r++) {
                            const float o = out[j * ROWS + r], v = vec_dot_level(level, t, wc + r * crb, xq + j * xrb, n);
                            bad += memcmp(&o, &ref[j * ROWS + r], sizeof o) != 0 || memcmp(&o, &v, sizeof o) != 0;
                        }
                }
                CHECK(bad == 0, "%s %s, columns %d..%d of %d: %d results differ from the rows copied out / vec_dot",
                      quant_simd_level_name(level), type_info(t)->name, c0, c0 + n - 1, WIDTH, bad);
            }
        }
    }
    free(w), free(x), free(out), free(ref), free(wq), free(wc), free(xq);
}

/* Every bit pattern the formats allow, not just what grok.c's quantizers
 * write: random bytes for the levels (Q8_0 weights and activations reach
 * -128, K-quant scales and mins their extremes), random sums, scales in
 * [-2, 2]. The ARM kernels must still equal the reference bit for bit in
 * both paths (no intermediate overflows, every lane in the right place);
 * the x86 ones (whose float steps differ from the reference's) must give
 * every token count the prompt path's bits (generation path: fewer than 16
 * tokens, levels built in registers; AVX-512 32-value types:
 * quant_x86_dec512.c, AVX2: quant_x86_a2.c) and be within float rounding of
 * the reference (1e-5 of the sum of |w * x| over the row), and the K-quants
 * must also equal vec_dot. */
static void put_h(uint8_t *p, float v) {
    const uint16_t h = f32_to_fp16(v);
    memcpy(p, &h, 2);
}

static void test_extremes(void) {
    enum { ROWS = 7, T = 19, N = 512 };
    static uint8_t wq[ROWS * N * 2], xq[T * N * 2];
    static float out[T * ROWS], pre[T * ROWS], wf[ROWS * N], xf[T * N];
    for (size_t k = 0; k < NWT; k++) {
        const uint32_t t = WTYPES[k], vt = vec_dot_type(t);
        const size_t wrb = type_row_size(t, N), xrb = type_row_size(vt, N), wsz = type_info(t)->type_size;
        for (size_t i = 0; i < sizeof wq; i++) wq[i] = (uint8_t)(frand() * 256.0f);
        for (size_t i = 0; i < sizeof xq; i++) xq[i] = (uint8_t)(frand() * 256.0f);
        for (int r = 0; r < ROWS; r++)
            for (size_t b = 0; b < wrb / wsz; b++) {
                uint8_t *p = wq + r * wrb + b * wsz;
                switch (t) {
                case GGML_TYPE_Q2_K: put_h(p + 80, 2 * frand()), put_h(p + 82, 2 * frand()); break;
                case GGML_TYPE_Q3_K: put_h(p + 108, 2 * frand()); break;
                case GGML_TYPE_Q6_K: put_h(p + 208, 2 * frand()); break;
                case GGML_TYPE_Q4_0:
                case GGML_TYPE_Q5_0:
                case GGML_TYPE_Q8_0: put_h(p, 2 * frand()); break;
                default: put_h(p, 2 * frand()), put_h(p + 2, 2 * frand()); break; /* d, m / d, dmin */
                }
            }
        for (int j = 0; j < T; j++)
            for (size_t b = 0; b < xrb / type_info(vt)->type_size; b++) {
                uint8_t *p = xq + j * xrb + b * type_info(vt)->type_size;
                if (vt == GGML_TYPE_Q8_K) {
                    const float d = 2 * frand();
                    memcpy(p, &d, 4);
                } else {
                    put_h(p, 2 * frand());
                    if (vt == GGML_TYPE_Q8_1) put_h(p + 2, 50 * frand());
                }
            }
        for (int r = 0; r < ROWS; r++) dequantize_row(t, wq + r * wrb, wf + r * N, N);
        for (int j = 0; j < T; j++) dequantize_row(vt, xq + j * xrb, xf + j * N, N);
        for (int level = SIMD_AVX2; level < SIMD_COUNT; level++) {
            if (!quant_simd_supported(level)) continue;
            const bool arm = level >= SIMD_NEON, kq = type_info(t)->block_size == 256;
            matmul_rows_level(level, t, wq, wrb, xq, xrb, N, T, pre, ROWS, 0, ROWS); /* the prompt path */
            /* x86: every token count gives the prompt path's bits and stays
             * within float rounding of the reference (the integer parts are
             * exact for every byte, -128 included: test_q8_0_minus128) */
            const int ntoks[] = {1, 2, 3, 4, 5, 15, 16, T};
            int bad = 0;
            for (int c = 0; c < (int)(sizeof ntoks / sizeof ntoks[0]); c++) {
                matmul_rows_level(level, t, wq, wrb, xq, xrb, N, ntoks[c], out, ROWS, 0, ROWS);
                for (int j = 0; j < ntoks[c]; j++)
                    for (int r = 0; r < ROWS; r++) {
                        const float e = vec_dot_ref(t, wq + r * wrb, xq + j * xrb, N), o = out[j * ROWS + r];
                        if (arm) {
                            bad += memcmp(&o, &e, sizeof e) != 0;
                            continue;
                        }
                        bad += memcmp(&o, &pre[j * ROWS + r], sizeof o) != 0;
                        double mag = 0.0;
                        for (int i = 0; i < N; i++) mag += fabs((double)wf[r * N + i] * xf[j * N + i]);
                        bad += fabs((double)o - e) > 1e-5 * mag + 1e-6;
                        if (!kq) continue;
                        const float v = vec_dot_level(level, t, wq + r * wrb, xq + j * xrb, N);
                        bad += memcmp(&o, &v, sizeof v) != 0;
                    }
            }
            CHECK(bad == 0, "%s %s: %d results differ from the %s on extreme blocks", quant_simd_level_name(level),
                  type_info(t)->name, bad, arm ? "reference" : "prompt path (or, K-quants, vec_dot / the reference)");
        }
    }
}

/* Q8_0 weights of -128 (GGUF files from other tools hold them; grok.c's
 * quantizer writes -127..127) against activations of both signs, -128
 * included: with unit scales every level, path (1-15 tokens: generation;
 * 16+: prompt) and row length (tails of 1-7 blocks past a group of 8) must
 * give the exact integer dot product, and with random scales stay within
 * float rounding of the reference. The AVX2 kernels once moved the
 * activation's sign onto the weight (maddubs), which turned
 * -128 * negative into a negative product. Then again with activations of
 * -127..127 (what grok.c's quantizer writes): the AVX2 generation path's
 * byte forms (xor for rows whose activations fit in L1, abs / sign for
 * longer ones: n = 11,264) take those, and must be exact for weights of
 * -128 too. */
static void test_q8_0_minus128(void) {
    enum { ROWS = 5, T = 19, NMAX = 11264 };
    static uint8_t wq[ROWS * NMAX * 2], xq[T * NMAX * 2];
    static float out[T * ROWS];
    const int sizes[] = {32, 256, 288, 480, 1056, NMAX};
    const int ntoks[] = {1, 2, 3, 5, 16, T};
    for (int level = SIMD_AVX2; level < SIMD_COUNT; level++) {
        if (!quant_simd_supported(level)) continue;
        int bad_int = 0, bad_float = 0;
        for (int si = 0; si < 6; si++)
          for (int x128 = 1; x128 >= 0; x128--) {
            const int n = sizes[si], nb = n / 32;
            const size_t wrb = type_row_size(GGML_TYPE_Q8_0, n), xrb = wrb;
            for (int unit = 1; unit >= 0; unit--) {
                for (int r = 0; r < ROWS; r++)
                    for (int b = 0; b < nb; b++) {
                        BlockQ8_0 *k = (BlockQ8_0 *)(wq + r * wrb) + b;
                        k->d = f32_to_fp16(unit ? 1.0f : 2 * frand());
                        for (int j = 0; j < 32; j++) /* half the weights -128, the rest anything */
                            k->qs[j] = (int8_t)((j + r) % 2 ? -128 : (int)(frand() * 128.0f));
                    }
                for (int t = 0; t < T; t++)
                    for (int b = 0; b < nb; b++) {
                        BlockQ8_0 *k = (BlockQ8_0 *)(xq + t * xrb) + b;
                        k->d = f32_to_fp16(unit ? 1.0f : 2 * frand());
                        for (int j = 0; j < 32; j++) /* both signs, the extremes often */
                            k->qs[j] = (int8_t)(j % 5 == 0 ? (x128 ? -128 : -127) : j % 5 == 1 ? 127 : j % 5 == 2 ? -127
                                                                                   : (int)(frand() * 128.0f));
                    }
                for (int c = 0; c < 6; c++) {
                    matmul_rows_level(level, GGML_TYPE_Q8_0, wq, wrb, xq, xrb, n, ntoks[c], out, ROWS, 0, ROWS);
                    for (int t = 0; t < ntoks[c]; t++)
                        for (int r = 0; r < ROWS; r++) {
                            const BlockQ8_0 *wb = (const BlockQ8_0 *)(wq + r * wrb), *xb = (const BlockQ8_0 *)(xq + t * xrb);
                            double e = 0.0, mag = 0.0;
                            for (int b = 0; b < nb; b++) {
                                long isum = 0, iabs = 0;
                                for (int j = 0; j < 32; j++)
                                    isum += wb[b].qs[j] * xb[b].qs[j], iabs += labs((long)wb[b].qs[j] * xb[b].qs[j]);
                                const double s = (double)fp16_to_f32(wb[b].d) * fp16_to_f32(xb[b].d);
                                e += s * (double)isum, mag += fabs(s) * (double)iabs;
                            }
                            const float o = out[t * ROWS + r];
                            /* exact where every partial sum stays below 2^24 (n <= 1056) */
                            if (unit && n <= 1056) bad_int += o != (float)e;
                            else bad_float += fabs((double)o - e) > 1e-5 * mag + 1e-6;
                        }
                }
            }
        }
        CHECK(bad_int == 0 && bad_float == 0, "%s q8_0 with -128 weights: %d exact integer and %d float results wrong",
              quant_simd_level_name(level), bad_int, bad_float);
    }
}

/* vec_geglu and softcap_softmax at the level in use (AVX2 on x86, NEON on
 * aarch64, or scalar libm) against the formulas in double precision:
 * within a few ulp (relative 1e-5), tails and odd lengths included. */
static void test_nonlinear(void) {
    enum { N = 1003 };
    static float g[N], u[N], x0[N];
    for (int i = 0; i < N; i++) x0[i] = g[i] = 12.0f * frand() * (i % 7 == 0 ? 3.0f : 1.0f), u[i] = frand();
    g[0] = x0[0] = 0.0f, g[1] = x0[1] = 1e-8f, g[2] = x0[2] = -1e-8f, g[3] = x0[3] = -100.0f, g[4] = x0[4] = 100.0f;
    vec_geglu(g, u, N);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        const double x = x0[i], t = 0.7978845608028654 * (x + 0.044715 * x * x * x);
        const double e = x * u[i] / (1.0 + exp(-2.0 * t)); /* = 0.5 x (1 + tanh t) u, without cancellation */
        if (!(fabs(g[i] - e) <= 1e-5 * fabs(e) + 1e-20)) {
            if (bad++ < 3) printf("    geglu(%.9g) * %.9g = %.9g, want %.9g\n", x, u[i], g[i], e);
        }
    }
    CHECK(bad == 0, "%s vec_geglu: %d values off", quant_simd_name(), bad);
    static float sc[N];
    static double ex[N];
    const int lens[] = {1, 3, 4, 7, 33, N};
    const float caps[] = {0.0f, 30.0f, 1.5f};
    bad = 0;
    for (int li = 0; li < 6; li++)
        for (int ci = 0; ci < 3; ci++) {
            const int n = lens[li];
            const float scale = 0.125f, cap = caps[ci], temp = 1.3f;
            for (int i = 0; i < n; i++) sc[i] = 300.0f * frand();
            double mx = -INFINITY, tot = 0.0;
            for (int i = 0; i < n; i++) {
                double v = (double)sc[i] * scale;
                if (cap > 0) v = cap * tanh(v / cap);
                ex[i] = v * temp, mx = ex[i] > mx ? ex[i] : mx;
            }
            for (int i = 0; i < n; i++) tot += ex[i] = exp(ex[i] - mx);
            softcap_softmax(sc, n, scale, cap, temp);
            for (int i = 0; i < n; i++)
                if (!(fabs(sc[i] - ex[i] / tot) <= 1e-5 * (ex[i] / tot) + 1e-30)) {
                    if (bad++ < 3) printf("    softmax n=%d cap %g [%d]: %.9g, want %.9g\n", n, cap, i, sc[i], ex[i] / tot);
                }
        }
    CHECK(bad == 0, "%s softcap_softmax: %d values off", quant_simd_name(), bad);
}

static void test_act_quant(void) {
    float x[256];
    BlockQ8_K k;
    for (int i = 0; i < 256; i++) x[i] = 0.0f;
    x[0] = -127.0f, x[1] = 0.5f, x[2] = 1.5f, x[3] = 2.5f, x[4] = -3.5f, x[17] = 100.0f;
    quantize_row(GGML_TYPE_Q8_K, x, &k, 256);
    /* d = max / -127 with max the value of largest magnitude (-127): d = 1;
     * q = nearest-even(x / d) */
    CHECK(k.d == 1.0f && k.qs[0] == -127 && k.qs[1] == 0 && k.qs[2] == 2 && k.qs[3] == 2 && k.qs[4] == -4 &&
              k.qs[17] == 100,
          "q8_K rounding: d %g q %d %d %d %d %d", k.d, k.qs[0], k.qs[1], k.qs[2], k.qs[3], k.qs[4]);
    CHECK(k.bsums[0] == -127 + 0 + 2 + 2 - 4 && k.bsums[1] == 100, "q8_K bsums %d %d", k.bsums[0], k.bsums[1]);
    x[0] = 127.0f; /* positive max: d = -1, signs flip */
    quantize_row(GGML_TYPE_Q8_K, x, &k, 256);
    CHECK(k.d == -1.0f && k.qs[0] == -127 && k.qs[17] == -100, "q8_K negative scale");
    BlockQ8_1 q1;
    for (int i = 0; i < 32; i++) x[i] = (float)(i - 10);
    quantize_row(GGML_TYPE_Q8_1, x, &q1, 32);
    int s = 0;
    for (int i = 0; i < 32; i++) s += q1.qs[i];
    CHECK(q1.s == f32_to_fp16((float)s * (21.0f / 127.0f)) && q1.qs[31] == 127, "q8_1 sum field");
    /* every level produces the same activation bytes */
    static float big[4096];
    static uint8_t a[8192], b[8192];
    for (int i = 0; i < 4096; i++) big[i] = gauss() * (i % 100 == 0 ? 50.0f : 1.0f);
    const uint32_t at[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q8_1, GGML_TYPE_Q8_K};
    for (int level = SIMD_AVX2; level < SIMD_COUNT; level++) {
        if (!quant_simd_supported(level)) continue;
        for (int i = 0; i < 3; i++) {
            quantize_row_level(SIMD_SCALAR, at[i], big, a, 4096);
            quantize_row_level(level, at[i], big, b, 4096);
            CHECK(memcmp(a, b, type_row_size(at[i], 4096)) == 0, "%s %s activations differ from scalar",
                  quant_simd_level_name(level), type_info(at[i])->name);
        }
    }
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
    test_roundtrip_all();
    test_known_blocks();
    test_dot_vs_dequant();
    test_simd_levels();
    test_matmul_exact();
    test_matmul_column_slice();
    test_extremes();
    test_q8_0_minus128();
    test_nonlinear();
    test_act_quant();
    return check_report("quant");
}
