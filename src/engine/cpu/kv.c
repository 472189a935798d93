/* kv.c - see kv.h. Layout: types and rounding; scalar kernels (the
 * reference); AVX2 and AVX-512 kernels (target attributes, chosen at run
 * time); NEON kernels (aarch64, every level); the dispatchers. */
#include "kv.h"

#include <string.h>
#include <strings.h>

#include "quant.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KV_X86 1
#include <immintrin.h>

#include "quant_x86_defs.h" /* AVX2, AVX512, INL: the kernels' target attributes */
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#define KV_ARM 1
#include <arm_neon.h>
#endif

/* ---- types and rounding ------------------------------------------------- */

bool kv_type_ok(uint32_t t) {
    return t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16 || t == GGML_TYPE_Q8_0 ||
           t == GGML_TYPE_Q4_0;
}

int kv_type_parse(const char *name) {
    static const struct {
        const char *n;
        uint32_t t;
    } names[] = {{"f32", GGML_TYPE_F32},
                 {"f16", GGML_TYPE_F16},
                 {"bf16", GGML_TYPE_BF16},
                 {"q8_0", GGML_TYPE_Q8_0},
                 {"q4_0", GGML_TYPE_Q4_0}};
    if (!name) return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(name, names[i].n)) return (int)names[i].t;
    return -1;
}

int kv_type_block(uint32_t t) { return t == GGML_TYPE_Q8_0 || t == GGML_TYPE_Q4_0 ? QK8_0 : 1; }

size_t kv_row_bytes(uint32_t t, int64_t n) { return type_row_size(t, n); }

/* ggml's quantize_row_q4_0_ref: the value of largest magnitude maps to -8 */
static void quantize_q4_0_ref(const float *x, BlockQ4_0 *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += QK8_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK8_0; j++) {
            const float a = x[j] < 0 ? -x[j] : x[j];
            if (amax < a) amax = a, max = x[j];
        }
        const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = f32_to_fp16(d);
        for (int j = 0; j < QK8_0 / 2; j++) {
            const int lo = (int)(int8_t)(x[j] * id + 8.5f), hi = (int)(int8_t)(x[j + QK8_0 / 2] * id + 8.5f);
            y[b].qs[j] = (uint8_t)((lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4);
        }
    }
}

#ifdef KV_X86
static void f16_row_f16c(const float *x, uint16_t *y, int64_t n);
#endif

void kv_quantize(uint32_t t, const float *x, void *dst, int64_t n) {
#ifdef KV_X86
    if (t == GGML_TYPE_F16 && quant_simd_level() >= SIMD_AVX2 && quant_simd_level() <= SIMD_AVX512) {
        f16_row_f16c(x, dst, n); /* the same bits as quantize_row's f32_to_fp16 */
        return;
    }
#endif
    if (t == GGML_TYPE_Q4_0) quantize_q4_0_ref(x, dst, n / QK8_0);
    else quantize_row(t, x, dst, n); /* f32 copy, f16/bf16 nearest-even, Q8_0 ggml's reference */
}

void kv_dequantize(uint32_t t, const void *src, float *dst, int64_t n) { dequantize_row(t, src, dst, n); }

static bool kv_quantized(uint32_t t) { return t == GGML_TYPE_Q8_0 || t == GGML_TYPE_Q4_0; }

size_t kv_query_bytes(uint32_t kt, int64_t n) {
    return kv_quantized(kt) ? type_row_size(GGML_TYPE_Q8_0, n) : (size_t)n * sizeof(float);
}

const void *kv_prep_query(uint32_t kt, const float *q, void *dst, int64_t n) {
    if (!kv_quantized(kt)) return q;
    quantize_row(GGML_TYPE_Q8_0, q, dst, n);
    return dst;
}

/* ---- scalar kernels (the reference) ------------------------------------- */

static float dot_bf16_ref(const uint16_t *k, const float *q, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += bf16_to_f32(k[i]) * q[i];
    return s;
}

static float dot_q_ref(uint32_t t, const uint8_t *r, const BlockQ8_0 *q, int64_t n) {
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int sum = 0;
        float dk;
        if (t == GGML_TYPE_Q8_0) {
            const BlockQ8_0 *k = (const BlockQ8_0 *)r + b;
            for (int i = 0; i < QK8_0; i++) sum += k->qs[i] * q[b].qs[i];
            dk = fp16_to_f32(k->d);
        } else {
            const BlockQ4_0 *k = (const BlockQ4_0 *)r + b;
            for (int i = 0; i < QK8_0 / 2; i++)
                sum += ((k->qs[i] & 15) - 8) * q[b].qs[i] + ((k->qs[i] >> 4) - 8) * q[b].qs[i + QK8_0 / 2];
            dk = fp16_to_f32(k->d);
        }
        s += dk * fp16_to_f32(q[b].d) * (float)sum;
    }
    return s;
}

static void dot_rows_ref(uint32_t t, const uint8_t *rows, size_t rb, int64_t nr, const void *q, int64_t n,
                         float *out) {
    for (int64_t j = 0; j < nr; j++) {
        const uint8_t *r = rows + (size_t)j * rb;
        if (t == GGML_TYPE_BF16) out[j] = dot_bf16_ref((const uint16_t *)r, q, n);
        else if (kv_quantized(t)) out[j] = dot_q_ref(t, r, q, n);
        else out[j] = vec_dot_ref(t, r, q, n);
    }
}

static void mad_rows_ref(uint32_t t, float *o, const float *w, const uint8_t *rows, size_t rb, int64_t nr,
                         int64_t n) {
    float tmp[QK8_0];
    memset(o, 0, (size_t)n * sizeof(float));
    for (int64_t j = 0; j < nr; j++) {
        const uint8_t *r = rows + (size_t)j * rb;
        for (int64_t i0 = 0; i0 < n; i0 += QK8_0) {
            const int m = n - i0 < QK8_0 ? (int)(n - i0) : QK8_0;
            if (kv_quantized(t)) dequantize_row(t, r + type_row_size(t, i0), tmp, QK8_0);
            else dequantize_row(t, r + type_row_size(t, i0), tmp, m);
            for (int i = 0; i < m; i++) o[i0 + i] += w[j] * tmp[i];
        }
    }
}

/* ---- SIMD kernels ------------------------------------------------------- */

#ifdef KV_X86
AVX2 static INL float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* f32 -> f16 eight at a time (F16C, round to nearest even: f32_to_fp16's
 * bits for every number, infinities and overflow included); a group with a
 * NaN goes through f32_to_fp16, whose NaN payload F16C would not keep. */
AVX2 static void f16_row_f16c(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
            for (int k = 0; k < 8; k++) y[i + k] = f32_to_fp16(x[i + k]);
            continue;
        }
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < n; i++) y[i] = f32_to_fp16(x[i]);
}

/* 32 q4_0 values as signed bytes -8..7, in value order */
AVX2 static INL __m256i q4_bytes(const uint8_t *qs) {
    const __m128i v = _mm_loadu_si128((const __m128i *)qs);
    const __m256i x = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_sub_epi8(_mm256_and_si256(x, _mm256_set1_epi8(15)), _mm256_set1_epi8(8));
}

/* sum of k[i] * q[i] in 8 int32 lanes: |k| * sign(q, k) as u8 x s8 */
AVX2 static INL __m256i dot_i8_avx2(__m256i k, __m256i q) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(k, k), _mm256_sign_epi8(q, k));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

AVX512 static INL __m256i dot_i8_vnni(__m256i k, __m256i q) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(k, k), _mm256_sign_epi8(q, k));
}

#define KV_DOT_Q(ATTR, NAME, DOTI8)                                                                                \
    ATTR static void NAME(uint32_t t, const uint8_t *rows, size_t rb, int64_t nr, const BlockQ8_0 *q, int64_t n, \
                          float *out) {                                                                            \
        const int64_t nb = n / QK8_0;                                                                              \
        for (int64_t j = 0; j < nr; j++) {                                                                         \
            const uint8_t *r = rows + (size_t)j * rb;                                                              \
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                                             \
            if (t == GGML_TYPE_Q8_0) {                                                                             \
                const BlockQ8_0 *k = (const BlockQ8_0 *)r;                                                         \
                int64_t b = 0;                                                                                     \
                for (; b + 2 <= nb; b += 2) {                                                                      \
                    const __m256i s0 = DOTI8(_mm256_loadu_si256((const __m256i *)k[b].qs),                        \
                                             _mm256_loadu_si256((const __m256i *)q[b].qs));                        \
                    const __m256i s1 = DOTI8(_mm256_loadu_si256((const __m256i *)k[b + 1].qs),                     \
                                             _mm256_loadu_si256((const __m256i *)q[b + 1].qs));                    \
                    a0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(k[b].d) * _cvtsh_ss(q[b].d)),                    \
                                         _mm256_cvtepi32_ps(s0), a0);                                              \
                    a1 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(k[b + 1].d) * _cvtsh_ss(q[b + 1].d)),            \
                                         _mm256_cvtepi32_ps(s1), a1);                                              \
                }                                                                                                  \
                if (b < nb) {                                                                                      \
                    const __m256i s0 = DOTI8(_mm256_loadu_si256((const __m256i *)k[b].qs),                         \
                                             _mm256_loadu_si256((const __m256i *)q[b].qs));                        \
                    a0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(k[b].d) * _cvtsh_ss(q[b].d)),                    \
                                         _mm256_cvtepi32_ps(s0), a0);                                              \
                }                                                                                                  \
            } else {                                                                                               \
                const BlockQ4_0 *k = (const BlockQ4_0 *)r;                                                         \
                int64_t b = 0;                                                                                     \
                for (; b + 2 <= nb; b += 2) {                                                                      \
                    const __m256i s0 = DOTI8(q4_bytes(k[b].qs), _mm256_loadu_si256((const __m256i *)q[b].qs));     \
                    const __m256i s1 =                                                                             \
                        DOTI8(q4_bytes(k[b + 1].qs), _mm256_loadu_si256((const __m256i *)q[b + 1].qs));            \
                    a0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(k[b].d) * _cvtsh_ss(q[b].d)),                    \
                                         _mm256_cvtepi32_ps(s0), a0);                                              \
                    a1 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(k[b + 1].d) * _cvtsh_ss(q[b + 1].d)),            \
                                         _mm256_cvtepi32_ps(s1), a1);                                              \
                }                                                                                                  \
                if (b < nb) {                                                                                      \
                    const __m256i s0 = DOTI8(q4_bytes(k[b].qs), _mm256_loadu_si256((const __m256i *)q[b].qs));     \
                    a0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(k[b].d) * _cvtsh_ss(q[b].d)),                    \
                                         _mm256_cvtepi32_ps(s0), a0);                                              \
                }                                                                                                  \
            }                                                                                                      \
            out[j] = hsum8(_mm256_add_ps(a0, a1));                                                                 \
        }                                                                                                          \
    }

KV_DOT_Q(AVX2, dot_q_avx2, dot_i8_avx2)
KV_DOT_Q(AVX512, dot_q_avx512, dot_i8_vnni)

AVX2 static INL __m256 bf16x8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

AVX2 static void dot_bf16_avx2(const uint8_t *rows, size_t rb, int64_t nr, const float *q, int64_t n, float *out) {
    for (int64_t j = 0; j < nr; j++) {
        const uint16_t *k = (const uint16_t *)(rows + (size_t)j * rb);
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
            a0 = _mm256_fmadd_ps(bf16x8(k + i), _mm256_loadu_ps(q + i), a0);
            a1 = _mm256_fmadd_ps(bf16x8(k + i + 8), _mm256_loadu_ps(q + i + 8), a1);
        }
        for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(bf16x8(k + i), _mm256_loadu_ps(q + i), a0);
        float s = hsum8(_mm256_add_ps(a0, a1));
        for (; i < n; i++) s += bf16_to_f32(k[i]) * q[i];
        out[j] = s;
    }
}

AVX512 static INL __m512 bf16x16(__mmask16 m, const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

AVX512 static void dot_bf16_avx512(const uint8_t *rows, size_t rb, int64_t nr, const float *q, int64_t n,
                                   float *out) {
    const __mmask16 tail = (__mmask16)((1u << (n & 15)) - 1);
    for (int64_t j = 0; j < nr; j++) {
        const uint16_t *k = (const uint16_t *)(rows + (size_t)j * rb);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
            a0 = _mm512_fmadd_ps(bf16x16(0xFFFF, k + i), _mm512_loadu_ps(q + i), a0);
            a1 = _mm512_fmadd_ps(bf16x16(0xFFFF, k + i + 16), _mm512_loadu_ps(q + i + 16), a1);
        }
        for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(bf16x16(0xFFFF, k + i), _mm512_loadu_ps(q + i), a0);
        if (i < n) a1 = _mm512_fmadd_ps(bf16x16(tail, k + i), _mm512_maskz_loadu_ps(tail, q + i), a1);
        out[j] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    }
}

/* V side, quantized: 64 values (two blocks) at a time held in registers
 * across all rows; a block's floats are q * (w_j * d). */
AVX2 static INL __m256 i8x8_ps(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

AVX2 static INL __m256 u4x8_ps(__m128i bytes) { /* 8 nibble values (already & 15) minus 8 */
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(bytes), _mm256_set1_epi32(8)));
}

AVX2 static void mad_q_avx2(uint32_t t, float *o, const float *w, const uint8_t *rows, size_t rb, int64_t nr,
                            int64_t n) {
    const int64_t nb = n / QK8_0;
    for (int64_t b = 0; b < nb; b++) { /* one block (32 values, 4 registers) per pass */
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        if (t == GGML_TYPE_Q8_0) {
            for (int64_t j = 0; j < nr; j++) {
                const BlockQ8_0 *k = (const BlockQ8_0 *)(rows + (size_t)j * rb) + b;
                const __m256 s = _mm256_set1_ps(w[j] * _cvtsh_ss(k->d));
                a0 = _mm256_fmadd_ps(s, i8x8_ps(k->qs), a0);
                a1 = _mm256_fmadd_ps(s, i8x8_ps(k->qs + 8), a1);
                a2 = _mm256_fmadd_ps(s, i8x8_ps(k->qs + 16), a2);
                a3 = _mm256_fmadd_ps(s, i8x8_ps(k->qs + 24), a3);
            }
        } else {
            const __m128i lo4 = _mm_set1_epi8(15);
            for (int64_t j = 0; j < nr; j++) {
                const BlockQ4_0 *k = (const BlockQ4_0 *)(rows + (size_t)j * rb) + b;
                const __m256 s = _mm256_set1_ps(w[j] * _cvtsh_ss(k->d));
                const __m128i v = _mm_loadu_si128((const __m128i *)k->qs);
                const __m128i lo = _mm_and_si128(v, lo4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), lo4);
                a0 = _mm256_fmadd_ps(s, u4x8_ps(lo), a0);
                a1 = _mm256_fmadd_ps(s, u4x8_ps(_mm_srli_si128(lo, 8)), a1);
                a2 = _mm256_fmadd_ps(s, u4x8_ps(hi), a2);
                a3 = _mm256_fmadd_ps(s, u4x8_ps(_mm_srli_si128(hi, 8)), a3);
            }
        }
        float *d = o + b * QK8_0;
        _mm256_storeu_ps(d, a0);
        _mm256_storeu_ps(d + 8, a1);
        _mm256_storeu_ps(d + 16, a2);
        _mm256_storeu_ps(d + 24, a3);
    }
}

AVX512 static INL __m512 i8x16_ps(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

AVX512 static INL __m512 u4x16_ps(__m128i bytes) {
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(bytes), _mm512_set1_epi32(8)));
}

AVX512 static void mad_q_avx512(uint32_t t, float *o, const float *w, const uint8_t *rows, size_t rb, int64_t nr,
                                int64_t n) {
    const int64_t nb = n / QK8_0;
    const __m128i lo4 = _mm_set1_epi8(15);
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) { /* two blocks per pass */
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        if (t == GGML_TYPE_Q8_0) {
            for (int64_t j = 0; j < nr; j++) {
                const BlockQ8_0 *k = (const BlockQ8_0 *)(rows + (size_t)j * rb) + b;
                const __m512 s0 = _mm512_set1_ps(w[j] * _cvtsh_ss(k[0].d)), s1 = _mm512_set1_ps(w[j] * _cvtsh_ss(k[1].d));
                a0 = _mm512_fmadd_ps(s0, i8x16_ps(k[0].qs), a0);
                a1 = _mm512_fmadd_ps(s0, i8x16_ps(k[0].qs + 16), a1);
                a2 = _mm512_fmadd_ps(s1, i8x16_ps(k[1].qs), a2);
                a3 = _mm512_fmadd_ps(s1, i8x16_ps(k[1].qs + 16), a3);
            }
        } else {
            for (int64_t j = 0; j < nr; j++) {
                const BlockQ4_0 *k = (const BlockQ4_0 *)(rows + (size_t)j * rb) + b;
                const __m512 s0 = _mm512_set1_ps(w[j] * _cvtsh_ss(k[0].d)), s1 = _mm512_set1_ps(w[j] * _cvtsh_ss(k[1].d));
                const __m128i v0 = _mm_loadu_si128((const __m128i *)k[0].qs);
                const __m128i v1 = _mm_loadu_si128((const __m128i *)k[1].qs);
                a0 = _mm512_fmadd_ps(s0, u4x16_ps(_mm_and_si128(v0, lo4)), a0);
                a1 = _mm512_fmadd_ps(s0, u4x16_ps(_mm_and_si128(_mm_srli_epi16(v0, 4), lo4)), a1);
                a2 = _mm512_fmadd_ps(s1, u4x16_ps(_mm_and_si128(v1, lo4)), a2);
                a3 = _mm512_fmadd_ps(s1, u4x16_ps(_mm_and_si128(_mm_srli_epi16(v1, 4), lo4)), a3);
            }
        }
        float *d = o + b * QK8_0;
        _mm512_storeu_ps(d, a0);
        _mm512_storeu_ps(d + 16, a1);
        _mm512_storeu_ps(d + 32, a2);
        _mm512_storeu_ps(d + 48, a3);
    }
    if (b < nb) { /* an odd last block */
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        for (int64_t j = 0; j < nr; j++) {
            const uint8_t *r = rows + (size_t)j * rb;
            if (t == GGML_TYPE_Q8_0) {
                const BlockQ8_0 *k = (const BlockQ8_0 *)r + b;
                const __m512 s = _mm512_set1_ps(w[j] * _cvtsh_ss(k->d));
                a0 = _mm512_fmadd_ps(s, i8x16_ps(k->qs), a0);
                a1 = _mm512_fmadd_ps(s, i8x16_ps(k->qs + 16), a1);
            } else {
                const BlockQ4_0 *k = (const BlockQ4_0 *)r + b;
                const __m512 s = _mm512_set1_ps(w[j] * _cvtsh_ss(k->d));
                const __m128i v = _mm_loadu_si128((const __m128i *)k->qs);
                a0 = _mm512_fmadd_ps(s, u4x16_ps(_mm_and_si128(v, lo4)), a0);
                a1 = _mm512_fmadd_ps(s, u4x16_ps(_mm_and_si128(_mm_srli_epi16(v, 4), lo4)), a1);
            }
        }
        _mm512_storeu_ps(o + b * QK8_0, a0);
        _mm512_storeu_ps(o + b * QK8_0 + 16, a1);
    }
}

AVX2 static void mad_bf16_avx2(float *o, const float *w, const uint8_t *rows, size_t rb, int64_t nr, int64_t n) {
    int64_t i0 = 0;
    for (; i0 + 32 <= n; i0 += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (int64_t j = 0; j < nr; j++) {
            const uint16_t *h = (const uint16_t *)(rows + (size_t)j * rb) + i0;
            const __m256 s = _mm256_set1_ps(w[j]);
            a0 = _mm256_fmadd_ps(s, bf16x8(h), a0);
            a1 = _mm256_fmadd_ps(s, bf16x8(h + 8), a1);
            a2 = _mm256_fmadd_ps(s, bf16x8(h + 16), a2);
            a3 = _mm256_fmadd_ps(s, bf16x8(h + 24), a3);
        }
        _mm256_storeu_ps(o + i0, a0);
        _mm256_storeu_ps(o + i0 + 8, a1);
        _mm256_storeu_ps(o + i0 + 16, a2);
        _mm256_storeu_ps(o + i0 + 24, a3);
    }
    for (int64_t i = i0; i < n; i++) {
        float s = 0.0f;
        for (int64_t j = 0; j < nr; j++) s += w[j] * bf16_to_f32(((const uint16_t *)(rows + (size_t)j * rb))[i]);
        o[i] = s;
    }
}

AVX512 static void mad_bf16_avx512(float *o, const float *w, const uint8_t *rows, size_t rb, int64_t nr, int64_t n) {
    for (int64_t i0 = 0; i0 < n; i0 += 64) {
        const int64_t m = n - i0 < 64 ? n - i0 : 64;
        __mmask16 k[4];
        for (int q = 0; q < 4; q++) {
            const int64_t left = m - 16 * q;
            k[q] = left >= 16 ? (__mmask16)0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : (__mmask16)0;
        }
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (int64_t j = 0; j < nr; j++) {
            const uint16_t *h = (const uint16_t *)(rows + (size_t)j * rb) + i0;
            const __m512 s = _mm512_set1_ps(w[j]);
            a0 = _mm512_fmadd_ps(s, bf16x16(k[0], h), a0);
            a1 = _mm512_fmadd_ps(s, bf16x16(k[1], h + 16), a1);
            a2 = _mm512_fmadd_ps(s, bf16x16(k[2], h + 32), a2);
            a3 = _mm512_fmadd_ps(s, bf16x16(k[3], h + 48), a3);
        }
        _mm512_mask_storeu_ps(o + i0, k[0], a0);
        _mm512_mask_storeu_ps(o + i0 + 16, k[1], a1);
        _mm512_mask_storeu_ps(o + i0 + 32, k[2], a2);
        _mm512_mask_storeu_ps(o + i0 + 48, k[3], a3);
    }
}
/* Several heads' weighted sums over the same q8_0 / q4_0 value rows: a
 * block of a row (32 values, two registers, unscaled) is expanded once,
 * then one fma per head and register; up to 4 heads per pass. */
AVX512 static INL void expand_block(const uint32_t t, const uint8_t *r, int64_t b, __m512 *v0, __m512 *v1, float *d) {
    if (t == GGML_TYPE_Q8_0) {
        const BlockQ8_0 *k = (const BlockQ8_0 *)r + b;
        *d = _cvtsh_ss(k->d);
        *v0 = i8x16_ps(k->qs), *v1 = i8x16_ps(k->qs + 16);
    } else {
        const BlockQ4_0 *k = (const BlockQ4_0 *)r + b;
        const __m128i v = _mm_loadu_si128((const __m128i *)k->qs), lo4 = _mm_set1_epi8(15);
        *d = _cvtsh_ss(k->d);
        *v0 = u4x16_ps(_mm_and_si128(v, lo4)), *v1 = u4x16_ps(_mm_and_si128(_mm_srli_epi16(v, 4), lo4));
    }
}

AVX512 static INL void mad_multi_body(const uint32_t t, int nh, float *const *o, const float *const *w,
                                     const uint8_t *rows, size_t rb, int64_t nr, int64_t n) {
    for (int h0 = 0; h0 < nh; h0 += 4) {
        const int hn = nh - h0 < 4 ? nh - h0 : 4;
        for (int64_t b = 0; b < n / QK8_0; b++) {
            __m512 a[4][2];
            for (int k = 0; k < 4; k++) a[k][0] = a[k][1] = _mm512_setzero_ps();
            for (int64_t j = 0; j < nr; j++) {
                __m512 v0, v1;
                float d;
                expand_block(t, rows + (size_t)j * rb, b, &v0, &v1, &d);
                for (int k = 0; k < 4; k++)
                    if (k < hn) {
                        const __m512 s = _mm512_set1_ps(w[h0 + k][j] * d);
                        a[k][0] = _mm512_fmadd_ps(s, v0, a[k][0]);
                        a[k][1] = _mm512_fmadd_ps(s, v1, a[k][1]);
                    }
            }
            for (int k = 0; k < hn; k++) {
                _mm512_storeu_ps(o[h0 + k] + b * QK8_0, a[k][0]);
                _mm512_storeu_ps(o[h0 + k] + b * QK8_0 + 16, a[k][1]);
            }
        }
    }
}

/* one copy of the loop per type */
AVX512 static void mad_multi_avx512(uint32_t t, int nh, float *const *o, const float *const *w, const uint8_t *rows,
                                    size_t rb, int64_t nr, int64_t n) {
    if (t == GGML_TYPE_Q8_0) mad_multi_body(GGML_TYPE_Q8_0, nh, o, w, rows, rb, nr, n);
    else mad_multi_body(GGML_TYPE_Q4_0, nh, o, w, rows, rb, nr, n);
}
#endif /* KV_X86 */

#ifdef KV_ARM
/* NEON (baseline aarch64, used at every ARM level). The q8_0 / q4_0 score
 * is the scalar kernel's arithmetic: an exact integer dot product per block
 * (widening multiplies, pairwise adds into int32: no int16 overflow), then
 * s += dk * dq * sum block by block, so scores equal the reference's. */

/* 32 q4_0 values as signed bytes -8..7: the first 16, then the last 16 */
static inline void q4_neon(const uint8_t *qs, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t v = vld1q_u8(qs), m = vdupq_n_u8(15);
    const int8x16_t eight = vdupq_n_s8(8);
    *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, m)), eight);
    *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);
}

static inline int32x4_t dot_i8_neon(int32x4_t acc, int8x16_t k, int8x16_t q) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(k), vget_low_s8(q)));
    return vpadalq_s16(acc, vmull_high_s8(k, q));
}

static void dot_q_neon(uint32_t t, const uint8_t *rows, size_t rb, int64_t nr, const BlockQ8_0 *q, int64_t n,
                       float *out) {
    const int64_t nb = n / QK8_0;
    for (int64_t j = 0; j < nr; j++) {
        const uint8_t *r = rows + (size_t)j * rb;
        float s = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            int8x16_t k0, k1;
            float dk;
            if (t == GGML_TYPE_Q8_0) {
                const BlockQ8_0 *k = (const BlockQ8_0 *)r + b;
                k0 = vld1q_s8(k->qs), k1 = vld1q_s8(k->qs + 16), dk = fp16_to_f32(k->d);
            } else {
                const BlockQ4_0 *k = (const BlockQ4_0 *)r + b;
                q4_neon(k->qs, &k0, &k1);
                dk = fp16_to_f32(k->d);
            }
            int32x4_t acc = dot_i8_neon(vdupq_n_s32(0), k0, vld1q_s8(q[b].qs));
            acc = dot_i8_neon(acc, k1, vld1q_s8(q[b].qs + 16));
            s += dk * fp16_to_f32(q[b].d) * (float)vaddvq_s32(acc);
        }
        out[j] = s;
    }
}

static inline float32x4_t bf16x4_neon(const uint16_t *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

static void dot_bf16_neon(const uint8_t *rows, size_t rb, int64_t nr, const float *q, int64_t n, float *out) {
    for (int64_t j = 0; j < nr; j++) {
        const uint16_t *k = (const uint16_t *)(rows + (size_t)j * rb);
        float32x4_t a0 = vdupq_n_f32(0), a1 = vdupq_n_f32(0), a2 = vdupq_n_f32(0), a3 = vdupq_n_f32(0);
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
            a0 = vfmaq_f32(a0, bf16x4_neon(k + i), vld1q_f32(q + i));
            a1 = vfmaq_f32(a1, bf16x4_neon(k + i + 4), vld1q_f32(q + i + 4));
            a2 = vfmaq_f32(a2, bf16x4_neon(k + i + 8), vld1q_f32(q + i + 8));
            a3 = vfmaq_f32(a3, bf16x4_neon(k + i + 12), vld1q_f32(q + i + 12));
        }
        for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, bf16x4_neon(k + i), vld1q_f32(q + i));
        float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
        for (; i < n; i++) s += bf16_to_f32(k[i]) * q[i];
        out[j] = s;
    }
}

/* 16 signed bytes as four float32x4 */
static inline void i8x16_f32_neon(int8x16_t v, float32x4_t f[4]) {
    const int16x8_t lo = vmovl_s8(vget_low_s8(v)), hi = vmovl_high_s8(v);
    f[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
    f[1] = vcvtq_f32_s32(vmovl_high_s16(lo));
    f[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
    f[3] = vcvtq_f32_s32(vmovl_high_s16(hi));
}

/* V side, quantized: one block (32 values, 8 registers) per pass over the
 * rows; a block's floats are q * (w_j * d). */
static void mad_q_neon(uint32_t t, float *o, const float *w, const uint8_t *rows, size_t rb, int64_t nr, int64_t n) {
    const int64_t nb = n / QK8_0;
    for (int64_t b = 0; b < nb; b++) {
        float32x4_t a[8];
        for (int k = 0; k < 8; k++) a[k] = vdupq_n_f32(0);
        for (int64_t j = 0; j < nr; j++) {
            const uint8_t *r = rows + (size_t)j * rb;
            int8x16_t v0, v1;
            float d;
            if (t == GGML_TYPE_Q8_0) {
                const BlockQ8_0 *k = (const BlockQ8_0 *)r + b;
                v0 = vld1q_s8(k->qs), v1 = vld1q_s8(k->qs + 16), d = fp16_to_f32(k->d);
            } else {
                const BlockQ4_0 *k = (const BlockQ4_0 *)r + b;
                q4_neon(k->qs, &v0, &v1);
                d = fp16_to_f32(k->d);
            }
            const float s = w[j] * d;
            float32x4_t f[4];
            i8x16_f32_neon(v0, f);
            for (int k = 0; k < 4; k++) a[k] = vfmaq_n_f32(a[k], f[k], s);
            i8x16_f32_neon(v1, f);
            for (int k = 0; k < 4; k++) a[4 + k] = vfmaq_n_f32(a[4 + k], f[k], s);
        }
        for (int k = 0; k < 8; k++) vst1q_f32(o + b * QK8_0 + 4 * k, a[k]);
    }
}

static void mad_bf16_neon(float *o, const float *w, const uint8_t *rows, size_t rb, int64_t nr, int64_t n) {
    int64_t i0 = 0;
    for (; i0 + 16 <= n; i0 += 16) {
        float32x4_t a0 = vdupq_n_f32(0), a1 = vdupq_n_f32(0), a2 = vdupq_n_f32(0), a3 = vdupq_n_f32(0);
        for (int64_t j = 0; j < nr; j++) {
            const uint16_t *h = (const uint16_t *)(rows + (size_t)j * rb) + i0;
            a0 = vfmaq_n_f32(a0, bf16x4_neon(h), w[j]);
            a1 = vfmaq_n_f32(a1, bf16x4_neon(h + 4), w[j]);
            a2 = vfmaq_n_f32(a2, bf16x4_neon(h + 8), w[j]);
            a3 = vfmaq_n_f32(a3, bf16x4_neon(h + 12), w[j]);
        }
        vst1q_f32(o + i0, a0);
        vst1q_f32(o + i0 + 4, a1);
        vst1q_f32(o + i0 + 8, a2);
        vst1q_f32(o + i0 + 12, a3);
    }
    for (int64_t i = i0; i < n; i++) {
        float s = 0.0f;
        for (int64_t j = 0; j < nr; j++) s += w[j] * bf16_to_f32(((const uint16_t *)(rows + (size_t)j * rb))[i]);
        o[i] = s;
    }
}
#endif /* KV_ARM */

/* ---- dispatch ----------------------------------------------------------- */

void kv_dot_rows_level(int level, uint32_t t, const void *rows, size_t rb, int64_t nr, const void *q, int64_t n,
                       float *out) {
    if (!quant_simd_supported(level)) level = SIMD_SCALAR;
#ifdef KV_X86
    if (level >= SIMD_AVX2) {
        if (kv_quantized(t)) {
            (level >= SIMD_AVX512 ? dot_q_avx512 : dot_q_avx2)(t, rows, rb, nr, q, n, out);
            return;
        }
        if (t == GGML_TYPE_BF16) {
            (level >= SIMD_AVX512 ? dot_bf16_avx512 : dot_bf16_avx2)(rows, rb, nr, q, n, out);
            return;
        }
    }
#endif
#ifdef KV_ARM
    if (level >= SIMD_NEON) {
        if (kv_quantized(t)) {
            dot_q_neon(t, rows, rb, nr, q, n, out);
            return;
        }
        if (t == GGML_TYPE_BF16) {
            dot_bf16_neon(rows, rb, nr, q, n, out);
            return;
        }
    }
#endif
    /* f32 / f16: quant.c's kernels (AVX-512, NEON) at the level in use */
    if ((t == GGML_TYPE_F32 || t == GGML_TYPE_F16) && level != SIMD_SCALAR && level == quant_simd_level()) {
        vec_dot_rows(t, rows, rb, nr, q, n, out);
        return;
    }
    dot_rows_ref(t, rows, rb, nr, q, n, out);
}

void kv_mad_rows_level(int level, uint32_t t, float *o, const float *w, const void *rows, size_t rb, int64_t nr,
                       int64_t n) {
    if (!quant_simd_supported(level)) level = SIMD_SCALAR;
#ifdef KV_X86
    if (level >= SIMD_AVX2) {
        if (kv_quantized(t)) {
            (level >= SIMD_AVX512 ? mad_q_avx512 : mad_q_avx2)(t, o, w, rows, rb, nr, n);
            return;
        }
        if (t == GGML_TYPE_BF16) {
            (level >= SIMD_AVX512 ? mad_bf16_avx512 : mad_bf16_avx2)(o, w, rows, rb, nr, n);
            return;
        }
    }
#endif
#ifdef KV_ARM
    if (level >= SIMD_NEON) {
        if (kv_quantized(t)) {
            mad_q_neon(t, o, w, rows, rb, nr, n);
            return;
        }
        if (t == GGML_TYPE_BF16) {
            mad_bf16_neon(o, w, rows, rb, nr, n);
            return;
        }
    }
#endif
    if ((t == GGML_TYPE_F32 || t == GGML_TYPE_F16) && level != SIMD_SCALAR && level == quant_simd_level()) {
        vec_mad_rows(t, o, w, rows, rb, nr, n);
        return;
    }
    mad_rows_ref(t, o, w, rows, rb, nr, n);
}

void kv_mad_rows_multi_level(int level, uint32_t t, int nh, float *const *o, const float *const *w, const void *rows,
                             size_t rb, int64_t nr, int64_t n) {
    if (!quant_simd_supported(level)) level = SIMD_SCALAR;
#ifdef KV_X86
    /* measured (medium model, 4096 positions, attention alone): q4_0 -18%, q8_0 -5%; f16 no better
     * (its expansion is one instruction), so the float types go head by head */
    if (level >= SIMD_AVX512 && kv_quantized(t)) {
        mad_multi_avx512(t, nh, o, w, rows, rb, nr, n);
        return;
    }
#endif
    for (int k = 0; k < nh; k++) kv_mad_rows_level(level, t, o[k], w[k], rows, rb, nr, n);
}

void kv_mad_rows_multi(uint32_t t, int nh, float *const *o, const float *const *w, const void *rows, size_t rb,
                       int64_t nr, int64_t n) {
    kv_mad_rows_multi_level(quant_simd_level(), t, nh, o, w, rows, rb, nr, n);
}

void kv_dot_rows(uint32_t t, const void *rows, size_t rb, int64_t nr, const void *q, int64_t n, float *out) {
    kv_dot_rows_level(quant_simd_level(), t, rows, rb, nr, q, n, out);
}

void kv_mad_rows(uint32_t t, float *o, const float *w, const void *rows, size_t rb, int64_t nr, int64_t n) {
    kv_mad_rows_level(quant_simd_level(), t, o, w, rows, rb, nr, n);
}
