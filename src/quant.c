/* quant.c - see quant.h. Scalar code is the reference; the AVX2 paths are
 * compiled with target attributes and chosen at run time, so one binary runs
 * on any x86-64 CPU. */
#include "quant.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GROK_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

/* ---- type table ------------------------------------------------------- */

static const TypeInfo TYPES[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"f32", 1, 4, true},
    [GGML_TYPE_F16] = {"f16", 1, 2, true},
    [GGML_TYPE_Q4_0] = {"q4_0", 32, 18, false},
    [GGML_TYPE_Q4_1] = {"q4_1", 32, 20, false},
    [GGML_TYPE_Q5_0] = {"q5_0", 32, 22, false},
    [GGML_TYPE_Q5_1] = {"q5_1", 32, 24, false},
    [GGML_TYPE_Q8_0] = {"q8_0", 32, 34, true},
    [GGML_TYPE_Q8_1] = {"q8_1", 32, 36, false},
    [GGML_TYPE_Q2_K] = {"q2_K", 256, 84, false},
    [GGML_TYPE_Q3_K] = {"q3_K", 256, 110, false},
    [GGML_TYPE_Q4_K] = {"q4_K", 256, 144, false},
    [GGML_TYPE_Q5_K] = {"q5_K", 256, 176, false},
    [GGML_TYPE_Q6_K] = {"q6_K", 256, 210, false},
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

/* ---- scalar conversions ------------------------------------------------ */

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

/* ---- rows ------------------------------------------------------------- */

void dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case GGML_TYPE_F16: {
        const uint8_t *p = src;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = fp16_to_f32(h);
        }
        break;
    }
    case GGML_TYPE_BF16: {
        const uint8_t *p = src;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = bf16_to_f32(h);
        }
        break;
    }
    case GGML_TYPE_Q8_0: {
        const uint8_t *p = src;
        for (int64_t b = 0; b < n / QK8_0; b++, p += sizeof(BlockQ8_0)) {
            uint16_t dh;
            memcpy(&dh, p, 2);
            float d = fp16_to_f32(dh);
            const int8_t *qs = (const int8_t *)(p + 2);
            for (int j = 0; j < QK8_0; j++) dst[b * QK8_0 + j] = d * (float)qs[j];
        }
        break;
    }
    default: memset(dst, 0, (size_t)n * sizeof(float)); break; /* callers check type_info()->compute */
    }
}

static void quantize_row_q8_0(const float *x, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < n / QK8_0; b++, p += sizeof(BlockQ8_0)) {
        const float *xb = x + b * QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = f32_to_fp16(d);
        memcpy(p, &dh, 2);
        int8_t *qs = (int8_t *)(p + 2);
        for (int j = 0; j < QK8_0; j++) qs[j] = (int8_t)roundf(xb[j] * id);
    }
}

int quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return 0;
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = f32_to_fp16(src[i]);
            memcpy((uint8_t *)dst + 2 * i, &h, 2);
        }
        return 0;
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = f32_to_bf16(src[i]);
            memcpy((uint8_t *)dst + 2 * i, &h, 2);
        }
        return 0;
    case GGML_TYPE_Q8_0: quantize_row_q8_0(src, dst, n); return 0;
    default: return -1;
    }
}

uint32_t vec_dot_type(uint32_t weight_type) {
    return weight_type == GGML_TYPE_Q8_0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F32;
}

/* ---- scalar dot products (the reference for the SIMD paths) ------------ */

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

static float dot_q8_0_scalar(const BlockQ8_0 *w, const BlockQ8_0 *x, int64_t n) {
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int32_t isum = 0;
        for (int j = 0; j < QK8_0; j++) isum += (int32_t)w[b].qs[j] * (int32_t)x[b].qs[j];
        s += (float)isum * (fp16_to_f32(w[b].d) * fp16_to_f32(x[b].d));
    }
    return s;
}

/* ---- AVX2 ------------------------------------------------------------- */

#ifdef GROK_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

AVX2 static float dot_f32_avx2(const float *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

AVX2 static float dot_f16_avx2(const uint16_t *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i)));
        __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8)));
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += fp16_to_f32(w[i]) * x[i];
    return s;
}

AVX2 static float dot_bf16_avx2(const uint16_t *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h0 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + i)));
        __m256i h1 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + i + 8)));
        __m256 w0 = _mm256_castsi256_ps(_mm256_slli_epi32(h0, 16));
        __m256 w1 = _mm256_castsi256_ps(_mm256_slli_epi32(h1, 16));
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += bf16_to_f32(w[i]) * x[i];
    return s;
}

/* Sum of the 32 int8 products of one block as 8 int32 lanes. maddubs needs
 * an unsigned operand: use |x| and move x's sign onto w. */
AVX2 static inline __m256i dot_i8x32(const int8_t *w, const int8_t *x) {
    __m256i vw = _mm256_loadu_si256((const __m256i *)w);
    __m256i vx = _mm256_loadu_si256((const __m256i *)x);
    __m256i ax = _mm256_sign_epi8(vx, vx);
    __m256i sw = _mm256_sign_epi8(vw, vx);
    __m256i p16 = _mm256_maddubs_epi16(ax, sw);
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

AVX2 static float dot_q8_0_avx2(const BlockQ8_0 *w, const BlockQ8_0 *x, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int64_t nb = n / QK8_0;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256 d0 = _mm256_set1_ps(_cvtsh_ss(w[b].d) * _cvtsh_ss(x[b].d));
        __m256 d1 = _mm256_set1_ps(_cvtsh_ss(w[b + 1].d) * _cvtsh_ss(x[b + 1].d));
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8x32(w[b].qs, x[b].qs)), acc0);
        acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(dot_i8x32(w[b + 1].qs, x[b + 1].qs)), acc1);
    }
    for (; b < nb; b++) {
        __m256 d0 = _mm256_set1_ps(_cvtsh_ss(w[b].d) * _cvtsh_ss(x[b].d));
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8x32(w[b].qs, x[b].qs)), acc0);
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

AVX2 static void mad_f16_avx2(float *y, float a, const uint16_t *x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, xv, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * fp16_to_f32(x[i]);
}

AVX2 static void mad_f32_avx2(float *y, float a, const float *x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* CPU features do not change while the process runs: probe once. The
 * cache is a single word written with the same value by whichever thread
 * gets there first (CPUID traps to the hypervisor in a VM, so it must not
 * run per call). */
static int have_avx2(void) {
    static _Atomic int cached = -1;
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v >= 0) return v;
    /* AVX2 and FMA from the compiler's CPU table; F16C from CPUID leaf 1
     * (ECX bit 29), which clang's __builtin_cpu_supports lacks. */
    unsigned a, b, c, d;
    v = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma");
    atomic_store_explicit(&cached, v, memory_order_relaxed);
    return v;
}
#else
static int have_avx2(void) { return 0; }
#endif

void vec_mad(uint32_t type, float *y, float a, const void *x, int64_t n) {
#ifdef GROK_X86
    if (have_avx2()) {
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

const char *quant_simd_name(void) { return have_avx2() ? "avx2" : "scalar"; }

typedef float (*DotFn)(const void *w, const void *x, int64_t n);

static float dot_f32_s(const void *w, const void *x, int64_t n) { return dot_f32_scalar(w, x, n); }
static float dot_f16_s(const void *w, const void *x, int64_t n) { return dot_f16_scalar(w, x, n); }
static float dot_bf16_s(const void *w, const void *x, int64_t n) { return dot_bf16_scalar(w, x, n); }
static float dot_q8_0_s(const void *w, const void *x, int64_t n) { return dot_q8_0_scalar(w, x, n); }
#ifdef GROK_X86
static float dot_f32_v(const void *w, const void *x, int64_t n) { return dot_f32_avx2(w, x, n); }
static float dot_f16_v(const void *w, const void *x, int64_t n) { return dot_f16_avx2(w, x, n); }
static float dot_bf16_v(const void *w, const void *x, int64_t n) { return dot_bf16_avx2(w, x, n); }
static float dot_q8_0_v(const void *w, const void *x, int64_t n) { return dot_q8_0_avx2(w, x, n); }
#endif

static DotFn dot_fn(uint32_t type) {
#ifdef GROK_X86
    if (have_avx2()) {
        switch (type) {
        case GGML_TYPE_F32: return dot_f32_v;
        case GGML_TYPE_F16: return dot_f16_v;
        case GGML_TYPE_BF16: return dot_bf16_v;
        case GGML_TYPE_Q8_0: return dot_q8_0_v;
        default: return NULL;
        }
    }
#endif
    switch (type) {
    case GGML_TYPE_F32: return dot_f32_s;
    case GGML_TYPE_F16: return dot_f16_s;
    case GGML_TYPE_BF16: return dot_bf16_s;
    case GGML_TYPE_Q8_0: return dot_q8_0_s;
    default: return NULL;
    }
}

#define MATMUL_TILE_ROWS 16 /* rows of W kept hot while all activation rows pass */

void matmul_rows(uint32_t type, const void *w, size_t w_row_bytes, const void *x, size_t x_row_bytes,
                 int64_t n, int n_tok, float *out, int64_t out_stride, int64_t r0, int64_t r1) {
    DotFn dot = dot_fn(type);
    if (!dot) return;
    const uint8_t *wb = w, *xb = x;
    for (int64_t rt = r0; rt < r1; rt += MATMUL_TILE_ROWS) {
        int64_t re = rt + MATMUL_TILE_ROWS < r1 ? rt + MATMUL_TILE_ROWS : r1;
        for (int t = 0; t < n_tok; t++) {
            const void *xr = xb + (size_t)t * x_row_bytes;
            float *o = out + (int64_t)t * out_stride;
            for (int64_t r = rt; r < re; r++) o[r] = dot(wb + (size_t)r * w_row_bytes, xr, n);
        }
    }
}

float vec_dot_ref(uint32_t type, const void *w, const void *x, int64_t n) {
    switch (type) {
    case GGML_TYPE_F32: return dot_f32_s(w, x, n);
    case GGML_TYPE_F16: return dot_f16_s(w, x, n);
    case GGML_TYPE_BF16: return dot_bf16_s(w, x, n);
    case GGML_TYPE_Q8_0: return dot_q8_0_s(w, x, n);
    default: return 0.0f;
    }
}

float vec_dot(uint32_t type, const void *w, const void *x, int64_t n) {
    DotFn dot = dot_fn(type);
    return dot ? dot(w, x, n) : 0.0f;
}
