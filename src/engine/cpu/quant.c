/* quant.c - see quant.h.
 *
 * Layout of this file:
 *   1. type table, fp16/bf16
 *   2. dequantization, written from the block definitions (quant.h)
 *   3. activation quantizers (ggml's reference rounding) and the weight
 *      quantizers (grok.c's own least-squares search, documented there)
 *   4. the canonical K-quant form (quant_internal.h): every K-quant weight
 *      row is unpacked, a chunk at a time, into one integer layout which the
 *      SIMD kernels consume; the 32-value block types are regrouped so each
 *      SIMD lane sums one block (quant_x86.c). Unpacking costs a few
 *      operations per value and is done once per row per call, so a
 *      prompt's tokens all reuse it.
 *   5. scalar reference dot products
 *   6. level detection and the vector helpers' dispatch; the kernels are in
 *      quant_x86.c (AVX2, AVX-512 VNNI) and quant_arm.c / quant_arm_kern.h
 *      (NEON, dotprod, i8mm)
 *   7. the matrix driver, vec_dot, vec_mad.
 *
 * Reduction order: for the quantized types every (row, token) pair is
 * computed by the same sequence of operations whatever the tile it falls
 * in, and partial sums are reduced every CHUNK values in a fixed pattern,
 * so vec_dot and matmul_rows agree bit for bit at a given SIMD level. The
 * integer parts are exact at every level; levels differ only in how the
 * float block scales are summed. */
#include "quant.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quant_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GROK_X86 1
#include "quant_x86.h" /* the x86 kernels live there; hooks below say GROK_X86 */
#endif
#if defined(__aarch64__)
#define GROK_ARM 1
#include "quant_arm.h" /* the aarch64 kernels live there; hooks below say GROK_ARM */
#endif

_Static_assert(sizeof(BlockQ8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(BlockQ4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(BlockQ4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(BlockQ5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(BlockQ5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(BlockQ8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(BlockQ2_K) == 84, "q2_K layout");
_Static_assert(sizeof(BlockQ3_K) == 110, "q3_K layout");
_Static_assert(sizeof(BlockQ4_K) == 144, "q4_K layout");
_Static_assert(sizeof(BlockQ5_K) == 176, "q5_K layout");
_Static_assert(sizeof(BlockQ6_K) == 210, "q6_K layout");
_Static_assert(sizeof(BlockQ8_K) == 292, "q8_K layout");

/* ---- 1. type table ----------------------------------------------------- */

static const TypeInfo TYPES[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"f32", 1, 4, true},
    [GGML_TYPE_F16] = {"f16", 1, 2, true},
    [GGML_TYPE_Q4_0] = {"q4_0", 32, 18, true},
    [GGML_TYPE_Q4_1] = {"q4_1", 32, 20, true},
    [GGML_TYPE_Q5_0] = {"q5_0", 32, 22, true},
    [GGML_TYPE_Q5_1] = {"q5_1", 32, 24, true},
    [GGML_TYPE_Q8_0] = {"q8_0", 32, 34, true},
    [GGML_TYPE_Q8_1] = {"q8_1", 32, 36, false},
    [GGML_TYPE_Q2_K] = {"q2_K", 256, 84, true},
    [GGML_TYPE_Q3_K] = {"q3_K", 256, 110, true},
    [GGML_TYPE_Q4_K] = {"q4_K", 256, 144, true},
    [GGML_TYPE_Q5_K] = {"q5_K", 256, 176, true},
    [GGML_TYPE_Q6_K] = {"q6_K", 256, 210, true},
    [GGML_TYPE_Q8_K] = {"q8_K", 256, 292, false},
    [GGML_TYPE_I8] = {"i8", 1, 1, false},
    [GGML_TYPE_I16] = {"i16", 1, 2, false},
    [GGML_TYPE_I32] = {"i32", 1, 4, false},
    [GGML_TYPE_I64] = {"i64", 1, 8, false},
    [GGML_TYPE_F64] = {"f64", 1, 8, false},
    [GGML_TYPE_BF16] = {"bf16", 1, 2, true},
};

const TypeInfo *type_info(uint32_t type) {
    if (type >= GGML_TYPE_COUNT || TYPES[type].name == NULL) return NULL;
    return &TYPES[type];
}

int type_from_name(const char *name) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (TYPES[t].name && strcasecmp(TYPES[t].name, name) == 0) return t;
    return -1;
}

size_t type_row_size(uint32_t type, int64_t n) {
    const TypeInfo *ti = type_info(type);
    if (!ti || n < 0) return 0;
    return (size_t)(n / ti->block_size) * ti->type_size;
}


/* ---- fp16 / bf16 ------------------------------------------------------- */

static inline float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mant << 13)); /* inf / nan */
    if (exp == 0) {                                                            /* zero / subnormal */
        float v = (float)mant * (1.0f / 16777216.0f);                          /* mant * 2^-24 */
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t f32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0)); /* inf/nan */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: overflow to inf */
    if (ax < 0x38800000u) {                                  /* below 2^-14: subnormal or zero */
        /* value / 2^-24, rounded to nearest even, is the subnormal mantissa */
        float v = f32_from_bits(ax) * 16777216.0f;
        float r = nearbyintf(v); /* default rounding mode: nearest even */
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t exp = ((ax >> 23) - 112) << 10;
    uint32_t mant = (ax >> 13) & 0x3ff;
    uint32_t rest = ax & 0x1fff;
    uint32_t h = exp | mant;
    if (rest > 0x1000 || (rest == 0x1000 && (mant & 1))) h++; /* carry may bump the exponent: correct */
    return (uint16_t)(sign | h);
}

float bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

#define H2F(h) fp16_to_f32(h)

/* ---- 2. dequantization ------------------------------------------------- */

/* The 6-bit (scale, min) of sub-block j of a Q4_K / Q5_K super-block. */

/* The 6-bit stored scale (0..63, meaning scale - 32) of sub-block j of Q3_K. */

static void dequant_q4_0(const BlockQ4_0 *b, float *y) {
    const float d = H2F(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((b->qs[j] & 0xF) - 8) * d;
        y[j + 16] = (float)((b->qs[j] >> 4) - 8) * d;
    }
}

static void dequant_q4_1(const BlockQ4_1 *b, float *y) {
    const float d = H2F(b->d), m = H2F(b->m);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(b->qs[j] & 0xF) * d + m;
        y[j + 16] = (float)(b->qs[j] >> 4) * d + m;
    }
}


static void dequant_q5_0(const BlockQ5_0 *b, float *y) {
    const float d = H2F(b->d);
    const uint32_t qh = load_u32le(b->qh);
    for (int j = 0; j < 16; j++) {
        int x0 = (int)((b->qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16;
        int x1 = (int)((b->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
        y[j] = (float)x0 * d;
        y[j + 16] = (float)x1 * d;
    }
}

static void dequant_q5_1(const BlockQ5_1 *b, float *y) {
    const float d = H2F(b->d), m = H2F(b->m);
    const uint32_t qh = load_u32le(b->qh);
    for (int j = 0; j < 16; j++) {
        int x0 = (int)((b->qs[j] & 0xF) | (((qh >> j) & 1) << 4));
        int x1 = (int)((b->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        y[j] = (float)x0 * d + m;
        y[j + 16] = (float)x1 * d + m;
    }
}

static void dequant_q8_0(const BlockQ8_0 *b, float *y) {
    const float d = H2F(b->d);
    for (int j = 0; j < 32; j++) y[j] = (float)b->qs[j] * d;
}

static void dequant_q8_1(const BlockQ8_1 *b, float *y) {
    const float d = H2F(b->d);
    for (int j = 0; j < 32; j++) y[j] = (float)b->qs[j] * d;
}

static void dequant_q2_K(const BlockQ2_K *b, float *y) {
    const float d = H2F(b->d), dmin = H2F(b->dmin);
    for (int n = 0; n < 2; n++)
        for (int k = 0; k < 4; k++)
            for (int h = 0; h < 2; h++) {
                const uint8_t sc = b->scales[8 * n + 2 * k + h];
                const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
                for (int l = 16 * h; l < 16 * h + 16; l++)
                    y[128 * n + 32 * k + l] = dl * (float)((b->qs[32 * n + l] >> (2 * k)) & 3) - ml;
            }
}

static void dequant_q3_K(const BlockQ3_K *b, float *y) {
    const float d = H2F(b->d);
    for (int n = 0; n < 2; n++)
        for (int k = 0; k < 4; k++)
            for (int h = 0; h < 2; h++) {
                const float dl = d * (float)(k3_scale(b->scales, 8 * n + 2 * k + h) - 32);
                for (int l = 16 * h; l < 16 * h + 16; l++) {
                    int q = (b->qs[32 * n + l] >> (2 * k)) & 3;
                    if (!((b->hmask[l] >> (4 * n + k)) & 1)) q -= 4;
                    y[128 * n + 32 * k + l] = dl * (float)q;
                }
            }
}

static void dequant_q4_K(const BlockQ4_K *b, float *y) {
    const float d = H2F(b->d), dmin = H2F(b->dmin);
    for (int c = 0; c < 4; c++) {
        int sc, m;
        k4_scale_min(b->scales, 2 * c, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        k4_scale_min(b->scales, 2 * c + 1, &sc, &m);
        const float d2 = d * (float)sc, m2 = dmin * (float)m;
        const uint8_t *q = b->qs + 32 * c;
        for (int l = 0; l < 32; l++) y[64 * c + l] = d1 * (float)(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) y[64 * c + 32 + l] = d2 * (float)(q[l] >> 4) - m2;
    }
}

static void dequant_q5_K(const BlockQ5_K *b, float *y) {
    const float d = H2F(b->d), dmin = H2F(b->dmin);
    for (int c = 0; c < 4; c++) {
        int sc, m;
        k4_scale_min(b->scales, 2 * c, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        k4_scale_min(b->scales, 2 * c + 1, &sc, &m);
        const float d2 = d * (float)sc, m2 = dmin * (float)m;
        const uint8_t *q = b->qs + 32 * c;
        for (int l = 0; l < 32; l++)
            y[64 * c + l] = d1 * (float)((q[l] & 0xF) + (((b->qh[l] >> (2 * c)) & 1) << 4)) - m1;
        for (int l = 0; l < 32; l++)
            y[64 * c + 32 + l] = d2 * (float)((q[l] >> 4) + (((b->qh[l] >> (2 * c + 1)) & 1) << 4)) - m2;
    }
}

/* The 6-bit level (0..63) of value v of a Q6_K super-block. */
static inline int q6_level(const BlockQ6_K *b, int v) {
    const int n = v >> 7, k = (v >> 5) & 3, l = v & 31;
    const uint8_t lo = b->ql[64 * n + l + 32 * (k & 1)];
    const int low = (k >> 1) ? (lo >> 4) : (lo & 0xF);
    return low | (((b->qh[32 * n + l] >> (2 * k)) & 3) << 4);
}

static void dequant_q6_K(const BlockQ6_K *b, float *y) {
    const float d = H2F(b->d);
    for (int v = 0; v < QK_K; v++) y[v] = d * (float)b->scales[v >> 4] * (float)(q6_level(b, v) - 32);
}

static void dequant_q8_K(const BlockQ8_K *b, float *y) {
    for (int j = 0; j < QK_K; j++) y[j] = b->d * (float)b->qs[j];
}

void dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    const TypeInfo *ti = type_info(type);
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return;
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = type == GGML_TYPE_F16 ? fp16_to_f32(h) : bf16_to_f32(h);
        }
        return;
    default: break;
    }
    if (!ti || ti->block_size <= 1) {
        memset(dst, 0, (size_t)n * sizeof(float));
        return;
    }
    const int64_t bs = ti->block_size, nb = n / bs;
    for (int64_t b = 0; b < nb; b++, p += ti->type_size) {
        float *y = dst + b * bs;
        switch (type) {
        case GGML_TYPE_Q4_0: dequant_q4_0((const BlockQ4_0 *)p, y); break;
        case GGML_TYPE_Q4_1: dequant_q4_1((const BlockQ4_1 *)p, y); break;
        case GGML_TYPE_Q5_0: dequant_q5_0((const BlockQ5_0 *)p, y); break;
        case GGML_TYPE_Q5_1: dequant_q5_1((const BlockQ5_1 *)p, y); break;
        case GGML_TYPE_Q8_0: dequant_q8_0((const BlockQ8_0 *)p, y); break;
        case GGML_TYPE_Q8_1: dequant_q8_1((const BlockQ8_1 *)p, y); break;
        case GGML_TYPE_Q2_K: dequant_q2_K((const BlockQ2_K *)p, y); break;
        case GGML_TYPE_Q3_K: dequant_q3_K((const BlockQ3_K *)p, y); break;
        case GGML_TYPE_Q4_K: dequant_q4_K((const BlockQ4_K *)p, y); break;
        case GGML_TYPE_Q5_K: dequant_q5_K((const BlockQ5_K *)p, y); break;
        case GGML_TYPE_Q6_K: dequant_q6_K((const BlockQ6_K *)p, y); break;
        case GGML_TYPE_Q8_K: dequant_q8_K((const BlockQ8_K *)p, y); break;
        default: memset(y, 0, (size_t)bs * sizeof(float)); break;
        }
    }
}

/* ---- 3. quantization --------------------------------------------------- */

/* Rounds v to the nearest integer (ties to even) after clamping it to
 * [lo, hi]; NaN gives lo. Never converts an out-of-range float. */
static inline int qround(float v, int lo, int hi) {
    if (!(v >= (float)lo)) v = (float)lo; /* also NaN */
    if (v > (float)hi) v = (float)hi;
    /* nearest, ties to even, as lrintf (|v| < 2^22 here), without a libm call */
    const float t = v + 12582912.0f; /* 1.5 * 2^23 (exact float arithmetic: never folded) */
    return (int)(t - 12582912.0f);
}

static inline void store_h(uint16_t *dst, float v) { *dst = f32_to_fp16(v); }

/* -- activations: ggml's reference rounding, so logits agree with llama.cpp */

static void quantize_q8_0_scalar(const float *x, BlockQ8_0 *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_h(&y[b].d, d);
        for (int j = 0; j < QK8_0; j++) y[b].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

static void quantize_q8_1_scalar(const float *x, BlockQ8_1 *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK8_0; j++) {
            y[b].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[b].qs[j];
        }
        store_h(&y[b].d, d);
        store_h(&y[b].s, (float)sum * d);
    }
}

static void quantize_q8_K_scalar(const float *x, BlockQ8_K *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) amax = ax, max = x[j];
        }
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) y[b].qs[j] = (int8_t)qround(iscale * x[j], -128, 127);
        for (int j = 0; j < QK_K / 16; j++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += y[b].qs[16 * j + i];
            y[b].bsums[j] = (int16_t)s;
        }
        y[b].d = 1.0f / iscale;
    }
}

/* -- weight quantizers ---------------------------------------------------
 *
 * Written from the format definitions, not from ggml. Every format is "a
 * few integer levels per value, one scale (and maybe an offset) per small
 * block". For each small block we pick the scale (and offset) that
 * minimises the squared error sum((x - s*q)^2), q the rounded levels:
 *   - candidate scales map the block's largest-magnitude value to the
 *     end of the level range, or slightly inside it (letting the extreme
 *     value clip a little buys resolution for the rest);
 *   - for each candidate the levels are rounded, then the scale (and
 *     offset) is re-fitted by least squares for those levels, and the
 *     candidate with the smallest error wins.
 * Plain (unweighted) squared error: it is what minimises the expected error
 * of a dot product with an isotropic activation. (Weighting the error by
 * |x| or x^2, and a wider scale grid, were tried and measured with
 * bench/quality on the medium model: neither lowered the KL divergence.) The small-block scales of
 * the K-quants are then themselves quantized (to 4, 6 or 8 bits) against
 * the super-block scale, and the levels are re-rounded with the final
 * scales, which is what the file will hold. llama.cpp's own search weighs
 * values differently and searches differently; the files are equally valid
 * (the format does not prescribe the search), the errors are comparable
 * (see the unit tests' bounds and README's quality table). */

#define FIT_MAXN 32

/* x ~ s*q with integer q in [qlo, qhi]. Returns s, fills q. */
static float fit_sym(const float *x, int n, int qlo, int qhi, int nstep, int8_t *q) {
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), vmax = x[i];
    if (!(amax > 1e-30f)) { /* zero (or NaN) block */
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
    float best_s = 0.0f, best_score = -1.0f;
    int8_t tq[FIT_MAXN];
    /* map vmax to the negative end, or to the positive end */
    const int ends[2] = {qlo, qhi};
    for (int e = 0; e < 2; e++) {
        const float end = (float)ends[e];
        for (int k = -nstep; k <= nstep; k++) {
            /* |level of vmax| = |end| + 0.1 k (k > 0: vmax clips) */
            const float lev = end + (end < 0 ? -0.1f : 0.1f) * (float)k;
            if (fabsf(lev) < 0.5f) continue;
            const float iscale = lev / vmax;
            float sxq = 0.0f, sqq = 0.0f;
            for (int i = 0; i < n; i++) {
                tq[i] = (int8_t)qround(x[i] * iscale, qlo, qhi);
                sxq += x[i] * tq[i];
                sqq += (float)tq[i] * tq[i];
            }
            if (sqq <= 0.0f) continue;
            /* least-squares s = sxq/sqq; error = sum x^2 - sxq^2/sqq */
            const float score = sxq * sxq / sqq;
            if (score > best_score) {
                best_score = score, best_s = sxq / sqq;
                memcpy(q, tq, (size_t)n);
            }
        }
    }
    if (best_score < 0.0f) {
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
    return best_s;
}

/* x ~ s*q + b with integer q in [0, qmax], s >= 0. If b_nonpos, b <= 0 is
 * enforced (the K-quants store -b as an unsigned "min"). */
static void fit_affine(const float *x, int n, int qmax, bool b_nonpos, int nstep, uint8_t *q, float *s_out,
                       float *b_out) {
    float mn = x[0], mx = x[0];
    for (int i = 1; i < n; i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
    if (b_nonpos && mn > 0.0f) mn = 0.0f;
    if (!(mx - mn > 1e-30f)) { /* constant block (or NaN) */
        memset(q, 0, (size_t)n);
        *s_out = 0.0f;
        *b_out = (b_nonpos && !(mn <= 0.0f)) ? 0.0f : (isfinite(mn) ? mn : 0.0f);
        return;
    }
    float best_err = INFINITY, best_s = 0.0f, best_b = mn;
    uint8_t tq[FIT_MAXN];
    for (int k = -nstep; k <= nstep; k++) {
        const float iscale = ((float)qmax + 0.1f * (float)k) / (mx - mn);
        float sq = 0, sx = 0, sqq = 0, sqx = 0, sxx = 0;
        for (int i = 0; i < n; i++) {
            tq[i] = (uint8_t)qround((x[i] - mn) * iscale, 0, qmax);
            sq += tq[i];
            sx += x[i];
            sxx += x[i] * x[i];
            sqq += (float)tq[i] * tq[i];
            sqx += (float)tq[i] * x[i];
        }
        const float det = (float)n * sqq - sq * sq;
        float s, b;
        if (det > 0.0f) {
            s = ((float)n * sqx - sq * sx) / det;
            b = (sqq * sx - sq * sqx) / det;
        } else {
            continue;
        }
        if (b_nonpos && b > 0.0f) {
            b = 0.0f;
            s = sqq > 0.0f ? sqx / sqq : 0.0f;
        }
        if (s < 0.0f) continue;
        /* sum (s q + b - x)^2, expanded */
        const float err = s * s * sqq + 2.0f * s * b * sq + (float)n * b * b - 2.0f * s * sqx - 2.0f * b * sx + sxx;
        if (err < best_err) {
            best_err = err, best_s = s, best_b = b;
            memcpy(q, tq, (size_t)n);
        }
    }
    if (!(best_err < INFINITY)) { /* fall back to plain min/max */
        const float s = (mx - mn) / (float)qmax;
        for (int i = 0; i < n; i++) q[i] = (uint8_t)qround((x[i] - mn) / s, 0, qmax);
        best_s = s, best_b = mn;
    }
    *s_out = best_s;
    *b_out = best_b;
}

/* The level of x for a fixed scale and offset: nearest, clamped. s == 0
 * gives the level of 0 (clamped into range). */
static inline int level_for(float x, float s, float b, int lo, int hi) {
    return s != 0.0f ? qround((x - b) / s, lo, hi) : qround(0.0f, lo, hi);
}

static void quantize_q4_0(const float *x, BlockQ4_0 *y, int64_t nb) {
    int8_t q[32];
    for (int64_t b = 0; b < nb; b++, x += 32) {
        store_h(&y[b].d, fit_sym(x, 32, -8, 7, 6, q));
        const float d = H2F(y[b].d);
        for (int j = 0; j < 32; j++) q[j] = (int8_t)level_for(x[j], d, 0.0f, -8, 7);
        for (int j = 0; j < 16; j++) y[b].qs[j] = (uint8_t)((q[j] + 8) | ((q[j + 16] + 8) << 4));
    }
}

static void quantize_q5_0(const float *x, BlockQ5_0 *y, int64_t nb) {
    int8_t q[32];
    for (int64_t b = 0; b < nb; b++, x += 32) {
        store_h(&y[b].d, fit_sym(x, 32, -16, 15, 5, q));
        const float d = H2F(y[b].d);
        uint32_t qh = 0;
        for (int j = 0; j < 32; j++) {
            const int l = level_for(x[j], d, 0.0f, -16, 15) + 16;
            q[j] = (int8_t)(l & 0xF);
            qh |= (uint32_t)(l >> 4) << j;
        }
        for (int j = 0; j < 16; j++) y[b].qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
        for (int i = 0; i < 4; i++) y[b].qh[i] = (uint8_t)(qh >> (8 * i));
    }
}

static void quantize_q4_1(const float *x, BlockQ4_1 *y, int64_t nb) {
    uint8_t q[32];
    for (int64_t b = 0; b < nb; b++, x += 32) {
        float s, off;
        fit_affine(x, 32, 15, false, 6, q, &s, &off);
        store_h(&y[b].d, s);
        store_h(&y[b].m, off);
        const float d = H2F(y[b].d), m = H2F(y[b].m);
        for (int j = 0; j < 32; j++) q[j] = (uint8_t)level_for(x[j], d, m, 0, 15);
        for (int j = 0; j < 16; j++) y[b].qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
    }
}

static void quantize_q5_1(const float *x, BlockQ5_1 *y, int64_t nb) {
    uint8_t q[32];
    for (int64_t b = 0; b < nb; b++, x += 32) {
        float s, off;
        fit_affine(x, 32, 31, false, 5, q, &s, &off);
        store_h(&y[b].d, s);
        store_h(&y[b].m, off);
        const float d = H2F(y[b].d), m = H2F(y[b].m);
        uint32_t qh = 0;
        for (int j = 0; j < 32; j++) {
            const int l = level_for(x[j], d, m, 0, 31);
            q[j] = (uint8_t)(l & 0xF);
            qh |= (uint32_t)(l >> 4) << j;
        }
        for (int j = 0; j < 16; j++) y[b].qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
        for (int i = 0; i < 4; i++) y[b].qh[i] = (uint8_t)(qh >> (8 * i));
    }
}

/* The largest value of a[0..n), and the sub-block scales quantized against
 * it: sc[j] = round(a[j] / (max/levels)). Returns the stored super-scale. */
static uint16_t quantize_scales_unsigned(const float *a, int n, int levels, uint8_t *sc) {
    float mx = 0.0f;
    for (int j = 0; j < n; j++) mx = fmaxf(mx, a[j]);
    const uint16_t dh = f32_to_fp16(mx / (float)levels);
    const float d = H2F(dh);
    for (int j = 0; j < n; j++) sc[j] = (uint8_t)(d > 0.0f ? qround(a[j] / d, 0, levels) : 0);
    return dh;
}

/* Signed sub-block scales: the one of largest magnitude maps to -levels
 * (the longer side of a two's-complement range [-levels, levels-1]). */
static uint16_t quantize_scales_signed(const float *a, int n, int levels, int *sc) {
    float amax = 0.0f, vmax = 0.0f;
    for (int j = 0; j < n; j++)
        if (fabsf(a[j]) > amax) amax = fabsf(a[j]), vmax = a[j];
    const uint16_t dh = f32_to_fp16(amax > 0.0f ? vmax / (float)-levels : 0.0f);
    const float d = H2F(dh);
    for (int j = 0; j < n; j++) sc[j] = d != 0.0f ? qround(a[j] / d, -levels, levels - 1) : 0;
    return dh;
}

static void quantize_q2_K(const float *x, BlockQ2_K *y, int64_t nb) {
    uint8_t L[QK_K], sc[16], mi[16];
    float s[16], m[16];
    for (int64_t b = 0; b < nb; b++, x += QK_K) {
        for (int j = 0; j < 16; j++) {
            float off;
            fit_affine(x + 16 * j, 16, 3, true, 10, L + 16 * j, &s[j], &off);
            m[j] = -off;
        }
        y[b].d = quantize_scales_unsigned(s, 16, 15, sc);
        y[b].dmin = quantize_scales_unsigned(m, 16, 15, mi);
        const float d = H2F(y[b].d), dmin = H2F(y[b].dmin);
        for (int j = 0; j < 16; j++) {
            y[b].scales[j] = (uint8_t)(sc[j] | (mi[j] << 4));
            for (int i = 0; i < 16; i++)
                L[16 * j + i] = (uint8_t)level_for(x[16 * j + i], d * sc[j], -dmin * mi[j], 0, 3);
        }
        for (int n = 0; n < 2; n++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *q = L + 128 * n + l;
                y[b].qs[32 * n + l] = (uint8_t)(q[0] | (q[32] << 2) | (q[64] << 4) | (q[96] << 6));
            }
    }
}

static void quantize_q3_K(const float *x, BlockQ3_K *y, int64_t nb) {
    int8_t q[16];
    uint8_t L[QK_K];
    float s[16];
    int sc[16];
    for (int64_t b = 0; b < nb; b++, x += QK_K) {
        for (int j = 0; j < 16; j++) s[j] = fit_sym(x + 16 * j, 16, -4, 3, 8, q);
        y[b].d = quantize_scales_signed(s, 16, 32, sc);
        const float d = H2F(y[b].d);
        memset(y[b].scales, 0, sizeof y[b].scales);
        memset(y[b].hmask, 0, sizeof y[b].hmask);
        for (int j = 0; j < 16; j++) {
            const int st = sc[j] + 32; /* 0..63 */
            if (j < 8) y[b].scales[j] = (uint8_t)(st & 0xF);
            else y[b].scales[j - 8] |= (uint8_t)((st & 0xF) << 4);
            y[b].scales[8 + (j & 3)] |= (uint8_t)((st >> 4) << (2 * (j >> 2)));
            for (int i = 0; i < 16; i++) L[16 * j + i] = (uint8_t)(level_for(x[16 * j + i], d * sc[j], 0.0f, -4, 3) + 4);
        }
        for (int v = 0; v < QK_K; v++)
            if (L[v] > 3) y[b].hmask[v & 31] |= (uint8_t)(1u << (v >> 5));
        for (int n = 0; n < 2; n++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *p = L + 128 * n + l;
                y[b].qs[32 * n + l] = (uint8_t)((p[0] & 3) | ((p[32] & 3) << 2) | ((p[64] & 3) << 4) | ((p[96] & 3) << 6));
            }
    }
}

/* Q4_K / Q5_K share the scale packing: 8 (scale, min) pairs of 6 bits. */
static void pack_k4_scales(const uint8_t *sc, const uint8_t *mi, uint8_t *out) {
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t)(mi[j] | ((mi[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((mi[j + 4] & 0xF) << 4));
    }
}

static void quantize_k45(const float *x, int qmax, int nstep, uint16_t *dh, uint16_t *dminh, uint8_t *scales,
                         uint8_t *L) {
    uint8_t sc[8], mi[8];
    float s[8], m[8];
    for (int j = 0; j < 8; j++) {
        float off;
        fit_affine(x + 32 * j, 32, qmax, true, nstep, L + 32 * j, &s[j], &off);
        m[j] = -off;
    }
    *dh = quantize_scales_unsigned(s, 8, 63, sc);
    *dminh = quantize_scales_unsigned(m, 8, 63, mi);
    pack_k4_scales(sc, mi, scales);
    const float d = H2F(*dh), dmin = H2F(*dminh);
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < 32; i++)
            L[32 * j + i] = (uint8_t)level_for(x[32 * j + i], d * sc[j], -dmin * mi[j], 0, qmax);
}

static void quantize_q4_K(const float *x, BlockQ4_K *y, int64_t nb) {
    uint8_t L[QK_K];
    for (int64_t b = 0; b < nb; b++, x += QK_K) {
        quantize_k45(x, 15, 6, &y[b].d, &y[b].dmin, y[b].scales, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) y[b].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

static void quantize_q5_K(const float *x, BlockQ5_K *y, int64_t nb) {
    uint8_t L[QK_K];
    for (int64_t b = 0; b < nb; b++, x += QK_K) {
        quantize_k45(x, 31, 5, &y[b].d, &y[b].dmin, y[b].scales, L);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                const uint8_t a = L[64 * c + l], h = L[64 * c + 32 + l];
                y[b].qs[32 * c + l] = (uint8_t)((a & 0xF) | ((h & 0xF) << 4));
                y[b].qh[l] |= (uint8_t)(((a >> 4) << (2 * c)) | ((h >> 4) << (2 * c + 1)));
            }
    }
}

static void quantize_q6_K(const float *x, BlockQ6_K *y, int64_t nb) {
    int8_t q[16];
    uint8_t L[QK_K];
    float s[16];
    int sc[16];
    for (int64_t b = 0; b < nb; b++, x += QK_K) {
        for (int j = 0; j < 16; j++) s[j] = fit_sym(x + 16 * j, 16, -32, 31, 3, q);
        y[b].d = quantize_scales_signed(s, 16, 128, sc);
        const float d = H2F(y[b].d);
        for (int j = 0; j < 16; j++) {
            y[b].scales[j] = (int8_t)sc[j];
            for (int i = 0; i < 16; i++)
                L[16 * j + i] = (uint8_t)(level_for(x[16 * j + i], d * sc[j], 0.0f, -32, 31) + 32);
        }
        for (int n = 0; n < 2; n++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *p = L + 128 * n + l;
                y[b].ql[64 * n + l] = (uint8_t)((p[0] & 0xF) | ((p[64] & 0xF) << 4));
                y[b].ql[64 * n + l + 32] = (uint8_t)((p[32] & 0xF) | ((p[96] & 0xF) << 4));
                y[b].qh[32 * n + l] = (uint8_t)((p[0] >> 4) | ((p[32] >> 4) << 2) | ((p[64] >> 4) << 4) | ((p[96] >> 4) << 6));
            }
    }
}

bool type_can_quantize(uint32_t type) {
    switch (type) {
    case GGML_TYPE_F32:
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16:
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q5_1:
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q8_1:
    case GGML_TYPE_Q2_K:
    case GGML_TYPE_Q3_K:
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K:
    case GGML_TYPE_Q8_K: return true;
    default: return false;
    }
}

/* ---- 4. canonical integer forms ----------------------------------------
 *
 * 32-value block types: each block as signed int8 levels and a float scale
 * (and offset): x = d*q (+ m). Q4_0: q-8, Q5_0: q-16, Q8_0: q, Q4_1/Q5_1: q
 * in 0..31 with m (unpack_a_block; the SIMD kernels regroup blocks so each
 * lane sums one block: W8Row in quant_x86.c, the prepared groups of
 * quant_x86_a2.c).
 *
 * CanonK: one K-quant super-block as unsigned levels q (0..63), one int16
 * scale per 16 values (stored 8 times: scv[8j..8j+7], the lane pattern of
 * maddubs output) and one int16 "min" per 16 values:
 *   x[v] = d * sc[v/16] * q[v] - dmin * mn[v/16]
 * Q2_K: sc, mn = the 4-bit scale and min.   Q4_K/Q5_K: the 6-bit ones, each
 * repeated for both halves of a 32-value sub-block.  Q3_K: q + 4 (0..7),
 * sc = scale - 32, mn = 4*sc, dmin = d.  Q6_K: q (0..63), sc = the int8
 * scale, mn = 32*sc, dmin = d.
 * With Q8_K activations (x = dx * qx, bsums = sums of 16 qx):
 *   dot = d*dx * sum_v sc*q*qx  -  dmin*dx * sum_j mn[j]*bsums[j]
 * where both sums are exact integers. */



/* Levels of one 32-value block: q[32] (signed), scale d, offset m. */
static void unpack_a_block(uint32_t type, const uint8_t *p, int8_t *q, float *d, float *m) {
    *m = 0.0f;
    switch (type) {
    case GGML_TYPE_Q4_0: {
        const BlockQ4_0 *b = (const BlockQ4_0 *)p;
        for (int j = 0; j < 16; j++) q[j] = (int8_t)((b->qs[j] & 0xF) - 8), q[j + 16] = (int8_t)((b->qs[j] >> 4) - 8);
        *d = H2F(b->d);
        break;
    }
    case GGML_TYPE_Q4_1: {
        const BlockQ4_1 *b = (const BlockQ4_1 *)p;
        for (int j = 0; j < 16; j++) q[j] = (int8_t)(b->qs[j] & 0xF), q[j + 16] = (int8_t)(b->qs[j] >> 4);
        *d = H2F(b->d), *m = H2F(b->m);
        break;
    }
    case GGML_TYPE_Q5_0: {
        const BlockQ5_0 *b = (const BlockQ5_0 *)p;
        const uint32_t qh = load_u32le(b->qh);
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(((b->qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16);
            q[j + 16] = (int8_t)(((b->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
        }
        *d = H2F(b->d);
        break;
    }
    case GGML_TYPE_Q5_1: {
        const BlockQ5_1 *b = (const BlockQ5_1 *)p;
        const uint32_t qh = load_u32le(b->qh);
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((b->qs[j] & 0xF) | (((qh >> j) & 1) << 4));
            q[j + 16] = (int8_t)((b->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
        *d = H2F(b->d), *m = H2F(b->m);
        break;
    }
    default: { /* Q8_0 */
        const BlockQ8_0 *b = (const BlockQ8_0 *)p;
        memcpy(q, b->qs, 32);
        *d = H2F(b->d);
        break;
    }
    }
}

static void unpack_k_scalar(uint32_t type, const uint8_t *p, CanonK *c) {
    int sc[16], mn[16];
    switch (type) {
    case GGML_TYPE_Q2_K: {
        const BlockQ2_K *b = (const BlockQ2_K *)p;
        for (int v = 0; v < QK_K; v++) c->q[v] = (uint8_t)((b->qs[32 * (v >> 7) + (v & 31)] >> (2 * ((v >> 5) & 3))) & 3);
        for (int j = 0; j < 16; j++) sc[j] = b->scales[j] & 0xF, mn[j] = b->scales[j] >> 4;
        c->d = H2F(b->d), c->dmin = H2F(b->dmin);
        break;
    }
    case GGML_TYPE_Q3_K: {
        const BlockQ3_K *b = (const BlockQ3_K *)p;
        for (int v = 0; v < QK_K; v++) {
            const int lo = (b->qs[32 * (v >> 7) + (v & 31)] >> (2 * ((v >> 5) & 3))) & 3;
            const int hi = (b->hmask[v & 31] >> (v >> 5)) & 1;
            c->q[v] = (uint8_t)(lo | (hi << 2));
        }
        for (int j = 0; j < 16; j++) sc[j] = k3_scale(b->scales, j) - 32, mn[j] = 4 * sc[j];
        c->d = c->dmin = H2F(b->d);
        break;
    }
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K: {
        const bool five = type == GGML_TYPE_Q5_K;
        const BlockQ4_K *b4 = (const BlockQ4_K *)p;
        const BlockQ5_K *b5 = (const BlockQ5_K *)p;
        const uint8_t *qs = five ? b5->qs : b4->qs, *scales = five ? b5->scales : b4->scales;
        for (int v = 0; v < QK_K; v++) {
            const int cc = v >> 6, h = (v >> 5) & 1, l = v & 31;
            int q = h ? qs[32 * cc + l] >> 4 : qs[32 * cc + l] & 0xF;
            if (five) q |= ((b5->qh[l] >> (2 * cc + h)) & 1) << 4;
            c->q[v] = (uint8_t)q;
        }
        for (int j = 0; j < 8; j++) {
            int s, m;
            k4_scale_min(scales, j, &s, &m);
            sc[2 * j] = sc[2 * j + 1] = s;
            mn[2 * j] = mn[2 * j + 1] = m;
        }
        c->d = H2F(five ? b5->d : b4->d), c->dmin = H2F(five ? b5->dmin : b4->dmin);
        break;
    }
    default: { /* Q6_K */
        const BlockQ6_K *b = (const BlockQ6_K *)p;
        for (int v = 0; v < QK_K; v++) c->q[v] = (uint8_t)q6_level(b, v);
        for (int j = 0; j < 16; j++) sc[j] = b->scales[j], mn[j] = 32 * sc[j];
        c->d = c->dmin = H2F(b->d);
        break;
    }
    }
    for (int j = 0; j < 16; j++) {
        for (int i = 0; i < 8; i++) c->scv[8 * j + i] = (int16_t)sc[j];
        c->mn[j] = (int16_t)mn[j];
    }
}

/* ---- 5. scalar reference dot products --------------------------------- */

static float dot_f32_scalar(const float *w, const float *x, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += w[i] * x[i];
    return s;
}

static float dot_f16_scalar(const uint16_t *w, const float *x, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += fp16_to_f32(w[i]) * x[i];
    return s;
}

static float dot_bf16_scalar(const uint16_t *w, const float *x, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += bf16_to_f32(w[i]) * x[i];
    return s;
}

/* 32-value block types against Q8_0 / Q8_1 activations. */
static float dot_a_scalar(uint32_t type, const uint8_t *w, const uint8_t *x, int64_t n) {
    const size_t wsz = TYPES[type].type_size;
    const bool q81 = vec_dot_type(type) == GGML_TYPE_Q8_1;
    float s = 0.0f;
    int8_t q[32];
    for (int64_t b = 0; b < n / 32; b++) {
        float d, m;
        unpack_a_block(type, w + (size_t)b * wsz, q, &d, &m);
        const int8_t *qx;
        float dx, sx = 0.0f;
        if (q81) {
            const BlockQ8_1 *xb = (const BlockQ8_1 *)x + b;
            qx = xb->qs, dx = H2F(xb->d), sx = H2F(xb->s);
        } else {
            const BlockQ8_0 *xb = (const BlockQ8_0 *)x + b;
            qx = xb->qs, dx = H2F(xb->d);
        }
        int32_t isum = 0;
        for (int j = 0; j < 32; j++) isum += (int32_t)q[j] * qx[j];
        s += (d * dx) * (float)isum + m * sx;
    }
    return s;
}

static float dot_k_scalar(uint32_t type, const uint8_t *w, const BlockQ8_K *x, int64_t n) {
    const size_t wsz = TYPES[type].type_size;
    float s = 0.0f;
    CanonK c;
    for (int64_t b = 0; b < n / QK_K; b++) {
        unpack_k_scalar(type, w + (size_t)b * wsz, &c);
        int32_t isum = 0, imin = 0;
        for (int j = 0; j < 16; j++) {
            int32_t t = 0;
            for (int i = 0; i < 16; i++) t += (int32_t)c.q[16 * j + i] * x[b].qs[16 * j + i];
            isum += c.scv[8 * j] * t;
            imin += c.mn[j] * x[b].bsums[j];
        }
        s += (c.d * x[b].d) * (float)isum - (c.dmin * x[b].d) * (float)imin;
    }
    return s;
}

float vec_dot_ref(uint32_t type, const void *w, const void *x, int64_t n) {
    switch (type) {
    case GGML_TYPE_F32: return dot_f32_scalar(w, x, n);
    case GGML_TYPE_F16: return dot_f16_scalar(w, x, n);
    case GGML_TYPE_BF16: return dot_bf16_scalar(w, x, n);
    default: break;
    }
    if (is_a_type(type)) return dot_a_scalar(type, w, x, n);
    if (is_k_type(type)) return dot_k_scalar(type, w, x, n);
    return 0.0f;
}

uint32_t vec_dot_type(uint32_t weight_type) {
    switch (weight_type) {
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q8_0: return GGML_TYPE_Q8_0;
    case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_1: return GGML_TYPE_Q8_1;
    case GGML_TYPE_Q2_K:
    case GGML_TYPE_Q3_K:
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K: return GGML_TYPE_Q8_K;
    default: return GGML_TYPE_F32;
    }
}

/* ---- 6. SIMD ------------------------------------------------------------ */

#ifdef GROK_X86
static int detect_level(void) { return quant_x86_detect(); }
#elif defined(GROK_ARM)
static int detect_level(void) { return quant_arm_detect(); }
#else
static int detect_level(void) { return SIMD_SCALAR; }
#endif /* GROK_X86 */


void vec_geglu(float *g, const float *u, int64_t n) {
#ifdef GROK_ARM
    if (quant_simd_level() >= SIMD_NEON) {
        quant_arm_geglu(g, u, n);
        return;
    }
#endif
#ifdef GROK_X86
    if (quant_simd_level() >= SIMD_AVX2) {
        geglu_avx2(g, u, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        g[i] = x * u[i] / (1.0f + expf(-2.0f * 0.79788456080286535588f * x * (1.0f + 0.044715f * x * x)));
    }
}

typedef float (*DotFn)(const void *w, const void *x, int64_t n);
static DotFn float_dot_fn(int level, uint32_t type);

void vec_dot_rows(uint32_t type, const void *rows, size_t row_bytes, int64_t n_rows, const float *x, int64_t n,
                  float *out) {
#ifdef GROK_X86
    if (quant_simd_level() >= SIMD_AVX512 && (type == GGML_TYPE_F16 || type == GGML_TYPE_F32)) {
        dot_rows_avx512(type, rows, row_bytes, n_rows, x, n, out);
        return;
    }
#endif
    const int level = quant_simd_level(); /* a float type's row kernel chosen once, as vec_dot chooses it */
    const DotFn dot = is_a_type(type) || is_k_type(type) ? NULL : float_dot_fn(level, type);
    for (int64_t j = 0; j < n_rows; j++) {
        const void *r = (const uint8_t *)rows + (size_t)j * row_bytes;
        out[j] = dot ? dot(r, x, n) : vec_dot(type, r, x, n);
    }
}

void vec_mad_rows(uint32_t type, float *o, const float *w, const void *rows, size_t row_bytes, int64_t n_rows,
                  int64_t n) {
#ifdef GROK_X86
    if (quant_simd_level() >= SIMD_AVX512 && (type == GGML_TYPE_F16 || type == GGML_TYPE_F32)) {
        mad_rows_avx512(type, o, w, rows, row_bytes, n_rows, n);
        return;
    }
#endif
    memset(o, 0, (size_t)n * sizeof(float));
    for (int64_t j = 0; j < n_rows; j++) vec_mad(type, o, w[j], (const uint8_t *)rows + (size_t)j * row_bytes, n);
}

void softcap_softmax(float *s, int64_t n, float scale, float cap, float temp) {
    if (n <= 0) return;
#ifdef GROK_ARM
    if (quant_simd_level() >= SIMD_NEON) {
        quant_arm_softcap_softmax(s, n, scale, cap, temp);
        return;
    }
#endif
#ifdef GROK_X86
    if (quant_simd_level() >= SIMD_AVX2) {
        softcap_softmax_avx2(s, n, scale, cap, temp);
        return;
    }
#endif
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        float v = s[i] * scale;
        if (cap > 0.0f) v = cap * tanhf(v / cap);
        s[i] = v * temp;
        m = s[i] > m ? s[i] : m;
    }
    double tot = 0.0;
    for (int64_t i = 0; i < n; i++) tot += s[i] = expf(s[i] - m);
    const float inv = (float)(1.0 / tot);
    for (int64_t i = 0; i < n; i++) s[i] *= inv;
}

/* ---- 7. levels, the matrix driver, vec_dot ------------------------------ */

static int hw_level(void) {
    /* computed once; a race only stores the same value twice */
    static atomic_int cached = -1;
    int l = atomic_load_explicit(&cached, memory_order_relaxed);
    if (l < 0) {
        l = detect_level();
        atomic_store_explicit(&cached, l, memory_order_relaxed);
    }
    return l;
}

static bool simd_is_arm(int level) { return level >= SIMD_NEON && level < SIMD_COUNT; }

bool quant_simd_supported(int level) {
    const int hw = hw_level();
    return level == SIMD_SCALAR || (level > SIMD_SCALAR && level <= hw && simd_is_arm(level) == simd_is_arm(hw));
}

int quant_simd_level(void) {
    static atomic_int cached = -1;
    int l = atomic_load_explicit(&cached, memory_order_relaxed);
    if (l < 0) {
        l = hw_level();
        const char *e = getenv("GROK_SIMD");
        if (e && strcmp(e, "scalar") == 0) l = SIMD_SCALAR;
        else if (e && strcmp(e, "avx2") == 0 && l > SIMD_AVX2 && !simd_is_arm(l)) l = SIMD_AVX2;
        else if (e && strcmp(e, "neon") == 0 && l > SIMD_NEON && simd_is_arm(l)) l = SIMD_NEON;
        else if (e && strcmp(e, "dotprod") == 0 && l > SIMD_DOTPROD && simd_is_arm(l)) l = SIMD_DOTPROD;
        atomic_store_explicit(&cached, l, memory_order_relaxed);
    }
    return l;
}

const char *quant_simd_level_name(int level) {
    static const char *const names[SIMD_COUNT] = {"scalar", "avx2", "avx512", "neon", "dotprod", "i8mm"};
    return level > SIMD_SCALAR && level < SIMD_COUNT ? names[level] : "scalar";
}

const char *quant_simd_name(void) { return quant_simd_level_name(quant_simd_level()); }




static float dot_f32_s(const void *w, const void *x, int64_t n) { return dot_f32_scalar(w, x, n); }
static float dot_f16_s(const void *w, const void *x, int64_t n) { return dot_f16_scalar(w, x, n); }
static float dot_bf16_s(const void *w, const void *x, int64_t n) { return dot_bf16_scalar(w, x, n); }
#ifdef GROK_X86
static float dot_f32_v(const void *w, const void *x, int64_t n) { return dot_f32_avx2(w, x, n); }
static float dot_f16_v(const void *w, const void *x, int64_t n) { return dot_f16_avx2(w, x, n); }
static float dot_bf16_v(const void *w, const void *x, int64_t n) { return dot_bf16_avx2(w, x, n); }
#endif

static DotFn float_dot_fn(int level, uint32_t type) {
#ifdef GROK_ARM
    if (level >= SIMD_NEON) return quant_arm_float_dot(type);
#endif
#ifdef GROK_X86
    if (level >= SIMD_AVX2) {
        switch (type) {
        case GGML_TYPE_F32: return dot_f32_v;
        case GGML_TYPE_F16: return dot_f16_v;
        case GGML_TYPE_BF16: return dot_bf16_v;
        default: return NULL;
        }
    }
#endif
    switch (type) {
    case GGML_TYPE_F32: return dot_f32_s;
    case GGML_TYPE_F16: return dot_f16_s;
    case GGML_TYPE_BF16: return dot_bf16_s;
    default: return NULL;
    }
}

#define MATMUL_TILE_ROWS 16 /* rows of W kept hot while all activation rows pass */

void matmul_rows_level(int level, uint32_t type, const void *w, size_t w_row_bytes, const void *x, size_t x_row_bytes,
                       int64_t n, int n_tok, float *out, int64_t out_stride, int64_t r0, int64_t r1) {
    const uint8_t *wb = w, *xb = x;
    if (!quant_simd_supported(level)) level = SIMD_SCALAR;
#ifdef GROK_X86
    if (level >= SIMD_AVX2 && level <= SIMD_AVX512 && (is_a_type(type) || is_k_type(type))) {
        quant_x86_matmul(level, type, wb, w_row_bytes, xb, x_row_bytes, n, n_tok, out, out_stride, r0, r1);
        return;
    }
#endif
#ifdef GROK_ARM
    if (level >= SIMD_NEON && (is_a_type(type) || is_k_type(type))) {
        quant_arm_matmul(level, type, wb, w_row_bytes, xb, x_row_bytes, n, n_tok, out, out_stride, r0, r1);
        return;
    }
#endif
    DotFn dot = float_dot_fn(level, type);
    const bool quant = is_a_type(type) || is_k_type(type);
    if (!dot && !quant) return;
    for (int64_t rt = r0; rt < r1; rt += MATMUL_TILE_ROWS) {
        int64_t re = rt + MATMUL_TILE_ROWS < r1 ? rt + MATMUL_TILE_ROWS : r1;
        for (int t = 0; t < n_tok; t++) {
            const void *xr = xb + (size_t)t * x_row_bytes;
            float *o = out + (int64_t)t * out_stride;
            for (int64_t r = rt; r < re; r++)
                o[r] = dot ? dot(wb + (size_t)r * w_row_bytes, xr, n) : vec_dot_ref(type, wb + (size_t)r * w_row_bytes, xr, n);
        }
    }
}

void matmul_rows(uint32_t type, const void *w, size_t w_row_bytes, const void *x, size_t x_row_bytes, int64_t n,
                 int n_tok, float *out, int64_t out_stride, int64_t r0, int64_t r1) {
    matmul_rows_level(quant_simd_level(), type, w, w_row_bytes, x, x_row_bytes, n, n_tok, out, out_stride, r0, r1);
}

float vec_dot_level(int level, uint32_t type, const void *w, const void *x, int64_t n) {
    if (!quant_simd_supported(level)) level = SIMD_SCALAR;
    if (is_a_type(type) || is_k_type(type)) {
        if (level == SIMD_SCALAR) return vec_dot_ref(type, w, x, n);
        float o = 0.0f;
        matmul_rows_level(level, type, w, 0, x, 0, n, 1, &o, 1, 0, 1);
        return o;
    }
    DotFn dot = float_dot_fn(level, type);
    return dot ? dot(w, x, n) : 0.0f;
}

float vec_dot(uint32_t type, const void *w, const void *x, int64_t n) {
    return vec_dot_level(quant_simd_level(), type, w, x, n);
}

void vec_mad(uint32_t type, float *y, float a, const void *x, int64_t n) {
#ifdef GROK_ARM
    if (quant_simd_level() >= SIMD_NEON) {
        quant_arm_mad(type, y, a, x, n);
        return;
    }
#endif
#ifdef GROK_X86
    if (quant_simd_level() >= SIMD_AVX2) {
        if (type == GGML_TYPE_F16) mad_f16_avx2(y, a, x, n);
        else mad_f32_avx2(y, a, x, n);
        return;
    }
#endif
    if (type == GGML_TYPE_F16) {
        const uint16_t *h = x;
        for (int64_t i = 0; i < n; i++) y[i] += a * fp16_to_f32(h[i]);
    } else {
        const float *f = x;
        for (int64_t i = 0; i < n; i++) y[i] += a * f[i];
    }
}

/* ---- quantize_row ------------------------------------------------------- */

int quantize_row_level(int level, uint32_t type, const float *src, void *dst, int64_t n) {
    const bool simd = quant_simd_supported(level) && level >= SIMD_AVX2;
    (void)simd;
    const TypeInfo *ti = type_info(type);
    if (!ti || !type_can_quantize(type) || n % ti->block_size) return -1;
    const int64_t nb = n / ti->block_size;
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return 0;
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = type == GGML_TYPE_F16 ? f32_to_fp16(src[i]) : f32_to_bf16(src[i]);
            memcpy((uint8_t *)dst + 2 * i, &h, 2);
        }
        return 0;
#ifdef GROK_X86
    case GGML_TYPE_Q8_0: (simd ? quantize_q8_0_avx2 : quantize_q8_0_scalar)(src, dst, nb); return 0;
    case GGML_TYPE_Q8_1: (simd ? quantize_q8_1_avx2 : quantize_q8_1_scalar)(src, dst, nb); return 0;
    case GGML_TYPE_Q8_K: (simd ? quantize_q8_K_avx2 : quantize_q8_K_scalar)(src, dst, nb); return 0;
#else
    case GGML_TYPE_Q8_0: quantize_q8_0_scalar(src, dst, nb); return 0;
    case GGML_TYPE_Q8_1: quantize_q8_1_scalar(src, dst, nb); return 0;
    case GGML_TYPE_Q8_K: quantize_q8_K_scalar(src, dst, nb); return 0;
#endif
    case GGML_TYPE_Q4_0: quantize_q4_0(src, dst, nb); return 0;
    case GGML_TYPE_Q4_1: quantize_q4_1(src, dst, nb); return 0;
    case GGML_TYPE_Q5_0: quantize_q5_0(src, dst, nb); return 0;
    case GGML_TYPE_Q5_1: quantize_q5_1(src, dst, nb); return 0;
    case GGML_TYPE_Q2_K: quantize_q2_K(src, dst, nb); return 0;
    case GGML_TYPE_Q3_K: quantize_q3_K(src, dst, nb); return 0;
    case GGML_TYPE_Q4_K: quantize_q4_K(src, dst, nb); return 0;
    case GGML_TYPE_Q5_K: quantize_q5_K(src, dst, nb); return 0;
    case GGML_TYPE_Q6_K: quantize_q6_K(src, dst, nb); return 0;
    default: return -1;
    }
}

int quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    return quantize_row_level(quant_simd_level(), type, src, dst, n);
}
