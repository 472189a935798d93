/* quant_x86.c - the x86-64 matrix and vector kernels: AVX2 and AVX-512
 * VNNI, compiled with target attributes and chosen at run time by quant.c
 * (quant_x86.h). The math of every kernel is quant.c's scalar reference;
 * see quant.c's header for the reduction-order rules that keep the prompt
 * and generation paths bit-identical. Sections:
 *   float types; unpacking to the canonical forms; the tiles and decode
 *   kernels (AVX-512); level detection; activation quantizers;
 *   GEGLU; attention rows; the matrix drivers (generation and prompt paths).
 * The AVX2 K-quant kernels are in quant_x86_k2.c, the AVX2 kernels for the
 * 32-value block types in quant_x86_a2.c. */
#include "quant_x86.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant_x86_blocks.h"
#include "quant_x86_defs.h"

/* -- AVX2: float types (F32/F16/BF16 weights, KV cache) -------------------- */

AVX2 static INL float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

AVX2 float dot_f32_avx2(const float *w, const float *x, int64_t n) {
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

AVX2 float dot_f16_avx2(const uint16_t *w, const float *x, int64_t n) {
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

AVX2 float dot_bf16_avx2(const uint16_t *w, const float *x, int64_t n) {
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

AVX2 void mad_f16_avx2(float *y, float a, const uint16_t *x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, xv, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * fp16_to_f32(x[i]);
}

AVX2 void mad_f32_avx2(float *y, float a, const float *x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* -- AVX2: unpacking to the canonical forms ------------------------------- */

/* scv from 16 per-16-value scales */
AVX2 static INL void store_scv(int16_t *scv, const int16_t *sc) {
    for (int k = 0; k < 8; k++)
        _mm256_store_si256((__m256i *)(scv + 16 * k),
                           _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k])));
}

/* pf: how far ahead the weights are prefetched (row_prefetch: on a column
 * slice, the same columns of a later row, not the next rank's columns) */
AVX2 static void unpack_k_avx2(uint32_t type, const uint8_t *p, size_t pf, CanonK *c) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    for (int i = 0; i < (int)type_info(type)->type_size; i += 64) _mm_prefetch((const char *)p + pf + i, PREFETCH_HINT);
    switch (type) {
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K: {
        const bool five = type == GGML_TYPE_Q5_K;
        const uint8_t *scales = p + 4, *qs = p + (five ? 48 : 16);
        const __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(p + 16)) : _mm256_setzero_si256();
        for (int cc = 0; cc < 4; cc++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * cc));
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if (five) {
                const __m256i b1 = _mm256_set1_epi8((char)(1 << (2 * cc))), b2 = _mm256_set1_epi8((char)(2 << (2 * cc)));
                const __m256i s16 = _mm256_set1_epi8(16);
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b1), b1), s16));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b2), b2), s16));
            }
            _mm256_store_si256((__m256i *)(c->q + 64 * cc), lo);
            _mm256_store_si256((__m256i *)(c->q + 64 * cc + 32), hi);
        }
        const uint32_t a0 = load_u32le(scales), a1 = load_u32le(scales + 4), a2 = load_u32le(scales + 8);
        const uint32_t w[4] = {a0 & 0x3f3f3f3fu, (a2 & 0x0f0f0f0fu) | ((a0 >> 2) & 0x30303030u), a1 & 0x3f3f3f3fu,
                               ((a2 >> 4) & 0x0f0f0f0fu) | ((a1 >> 2) & 0x30303030u)};
        uint8_t sm[16]; /* sc[0..7], m[0..7] */
        memcpy(sm, w, 16);
        for (int k = 0; k < 8; k++) _mm256_store_si256((__m256i *)(c->scv + 16 * k), _mm256_set1_epi16(sm[k]));
        const __m128i mm = _mm_loadl_epi64((const __m128i *)(sm + 8));
        _mm256_storeu_si256((__m256i *)c->mn, _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mm, mm)));
        uint16_t dh, mh;
        memcpy(&dh, p, 2), memcpy(&mh, p + 2, 2);
        c->d = H2FV(dh), c->dmin = H2FV(mh);
        break;
    }
    case GGML_TYPE_Q6_K: {
        const BlockQ6_K *b = (const BlockQ6_K *)p;
        for (int n = 0; n < 2; n++) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * n));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * n + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * n));
            const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4);
            const __m256i h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4);
            const __m256i h3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4);
            uint8_t *q = c->q + 128 * n;
            _mm256_store_si256((__m256i *)q, _mm256_or_si256(_mm256_and_si256(ql0, m4), h0));
            _mm256_store_si256((__m256i *)(q + 32), _mm256_or_si256(_mm256_and_si256(ql1, m4), h1));
            _mm256_store_si256((__m256i *)(q + 64), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), h2));
            _mm256_store_si256((__m256i *)(q + 96), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), h3));
        }
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
        int16_t s16[16];
        _mm256_storeu_si256((__m256i *)s16, sc);
        store_scv(c->scv, s16);
        _mm256_storeu_si256((__m256i *)c->mn, _mm256_slli_epi16(sc, 5));
        c->d = c->dmin = H2FV(b->d);
        break;
    }
    case GGML_TYPE_Q3_K: {
        const BlockQ3_K *b = (const BlockQ3_K *)p;
        const __m256i hm = _mm256_loadu_si256((const __m256i *)b->hmask);
        for (int n = 0; n < 2; n++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * n));
            for (int k = 0; k < 4; k++) {
                const __m256i bit = _mm256_set1_epi8((char)(1 << (4 * n + k)));
                const __m256i hi = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), _mm256_set1_epi8(4));
                const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(v, 2 * k), m2);
                _mm256_store_si256((__m256i *)(c->q + 128 * n + 32 * k), _mm256_or_si256(lo, hi));
            }
        }
        int16_t s16[16];
        for (int j = 0; j < 16; j++) s16[j] = (int16_t)(k3_scale(b->scales, j) - 32);
        store_scv(c->scv, s16);
        _mm256_storeu_si256((__m256i *)c->mn, _mm256_slli_epi16(_mm256_loadu_si256((const __m256i *)s16), 2));
        c->d = c->dmin = H2FV(b->d);
        break;
    }
    default: { /* Q2_K */
        const BlockQ2_K *b = (const BlockQ2_K *)p;
        for (int n = 0; n < 2; n++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * n));
            for (int k = 0; k < 4; k++)
                _mm256_store_si256((__m256i *)(c->q + 128 * n + 32 * k), _mm256_and_si256(_mm256_srli_epi16(v, 2 * k), m2));
        }
        const __m128i s8 = _mm_loadu_si128((const __m128i *)b->scales);
        int16_t s16[16];
        _mm256_storeu_si256((__m256i *)s16, _mm256_cvtepu8_epi16(_mm_and_si128(s8, _mm_set1_epi8(0x0F))));
        store_scv(c->scv, s16);
        _mm256_storeu_si256((__m256i *)c->mn, _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), _mm_set1_epi8(0x0F))));
        c->d = H2FV(b->d), c->dmin = H2FV(b->dmin);
        break;
    }
    }
}

static size_t pad64(size_t n) { return (n + 63) & ~(size_t)63; }
static inline int imin(int64_t a, int64_t b) { return (int)(a < b ? a : b); }

/* -- the kernels ------------------------------------------------------------
 *
 * Each kernel computes an R x T tile of (weight row, activation row) pairs
 * over the whole row, one vector accumulator per pair, reduced once at the
 * end. "tile_*" read canonical weights (prompt processing: unpacked once per
 * call, reused by every token); "dec_*" decode the weight blocks in
 * registers as they stream from memory (generation: each weight is used by
 * one or two tokens). Both call the same per-block update, so every pair
 * goes through the same operations in the same order in both: results are
 * identical bit for bit. */

#define TILE_MAX_R 2
#define TILE_MAX_T 4
#define UNROLL _Pragma("GCC unroll 8")

/* AVX2: the K-quants in quant_x86_k2.c, the 32-value block types in
 * quant_x86_a2.c (generation and prompt paths). */

/* -- AVX-512 --------------------------------------------------------------- */

/* AVX-512, 32-value blocks in groups of eight (256 values). Four vectors
 * t0..t3 hold a group: in each, every 64-bit lane carries 8 values of one
 * block (each block has two lanes, in block order 0 2 1 3 4 6 5 7, which is
 * what the 4x4 transpose below leaves), so after vpdpbusd on all four every
 * int32 lane holds an exact sum of 8 products of ONE block, and the
 * per-block scaling (convert, scale product, fma) is paid once per 256
 * values per (row, token) pair. VNNI multiplies unsigned by signed bytes:
 * activations are stored as qx + 128 (qx ^ 0x80), and nc = -128 * (sum of
 * the weight levels of each lane) is vpdpbusd's starting value, so the lanes
 * are exact sums of qw*qx. dv / dxv hold each lane's block scale; m / s the
 * weight offsets (Q4_1, Q5_1) and activation sums (Q8_1) of the group's
 * blocks. Weights in this form (W8Row) are built either into memory (prompt
 * processing, unpacked once per chunk) or in registers (generation, as the
 * row streams in) by the same load_w8. */
typedef struct {
    __m512i *v; /* per group: t0..t3, nc (int32), dv (f32) */
    float *m;   /* per group: 8 offsets */
} W8Row;
typedef struct {
    __m512i *v; /* per group: x0..x3 (qx ^ 0x80), dxv (f32) */
    float *s;   /* per group: 8 sums (Q8_1) */
} X8Row;

static size_t w8_bytes(int64_t ng) { return (size_t)ng * 384 + pad64((size_t)ng * 32); }
static size_t x8_bytes(int64_t ng) { return (size_t)ng * 320 + pad64((size_t)ng * 32); }
static void w8_at(W8Row *r, uint8_t *p, int64_t ng) { r->v = (__m512i *)p, r->m = (float *)(p + (size_t)ng * 384); }
static void x8_at(X8Row *r, uint8_t *p, int64_t ng) { r->v = (__m512i *)p, r->s = (float *)(p + (size_t)ng * 320); }

/* t0..t3 of eight blocks of 32 signed bytes: t_k holds 64-bit word k' of
 * every block (k' = 0 2 1 3 for k = 0 1 2 3) */
AVX512 static INL void split8(const __m256i *q, __m512i *t) {
    __m512i S[4];
    for (int i = 0; i < 4; i++) S[i] = _mm512_inserti64x4(_mm512_castsi256_si512(q[2 * i]), q[2 * i + 1], 1);
    const __m512i A = _mm512_unpacklo_epi64(S[0], S[1]), B = _mm512_unpackhi_epi64(S[0], S[1]);
    const __m512i C = _mm512_unpacklo_epi64(S[2], S[3]), D = _mm512_unpackhi_epi64(S[2], S[3]);
    t[0] = _mm512_shuffle_i64x2(A, C, _MM_SHUFFLE(2, 0, 2, 0));
    t[1] = _mm512_shuffle_i64x2(A, C, _MM_SHUFFLE(3, 1, 3, 1));
    t[2] = _mm512_shuffle_i64x2(B, D, _MM_SHUFFLE(2, 0, 2, 0));
    t[3] = _mm512_shuffle_i64x2(B, D, _MM_SHUFFLE(3, 1, 3, 1));
}

/* the scale of each lane's block, from the 8 block scales */
AVX512 static INL __m512 lanes8(__m256 d) {
    return _mm512_permutexvar_ps(_mm512_set_epi32(7, 7, 5, 5, 6, 6, 4, 4, 3, 3, 1, 1, 2, 2, 0, 0),
                                 _mm512_castps256_ps512(d));
}

/* The group of nbg (1..8) blocks at p; missing blocks are zero. */
AVX512 static INL void load_w8(uint32_t type, const uint8_t *p, int nbg, __m512i *t, __m512i *nc, __m512 *dv,
                               float *m) {
    const size_t sz = type_info(type)->type_size;
    __m256i q[8];
    __m256 dvec;
    if (nbg == 8) {
        /* the eight (d, m) fp16 pairs in one gather: every block starts with d, and Q4_1 / Q5_1 with m after it */
        float dd[8], dm[8];
        UNROLL
        for (int i = 0; i < 8; i++) q[i] = load_a_block(type, p + (size_t)i * sz, &dd[i], &dm[i]); /* scales: below */
        const __m256i dm32 = _mm256_i32gather_epi32((const int *)p, _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                                                                         _mm256_set1_epi32((int)sz)), 1);
        dvec = _mm256_cvtph_ps(_mm256_cvtepi32_epi16(dm32));
        if (type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1)
            _mm256_storeu_ps(m, _mm256_cvtph_ps(_mm256_cvtepi32_epi16(_mm256_srli_epi32(dm32, 16))));
        else
            _mm256_storeu_ps(m, _mm256_setzero_ps());
    } else {
        float d[8];
        for (int i = 0; i < 8; i++) {
            if (i < nbg) q[i] = load_a_block(type, p + (size_t)i * sz, &d[i], &m[i]);
            else q[i] = _mm256_setzero_si256(), d[i] = m[i] = 0.0f;
        }
        dvec = _mm256_loadu_ps(d);
    }
    split8(q, t);
    const __m512i k80 = _mm512_set1_epi8((char)0x80), z = _mm512_setzero_si512();
    __m512i c = _mm512_dpbusd_epi32(z, k80, t[0]);
    c = _mm512_dpbusd_epi32(c, k80, t[1]);
    c = _mm512_dpbusd_epi32(c, k80, t[2]);
    *nc = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(c, k80, t[3]));
    *dv = lanes8(dvec);
}

AVX512 static void unpack_w8_row(uint32_t type, const uint8_t *row, int64_t nb, const W8Row *c) {
    const size_t sz = type_info(type)->type_size;
    for (int64_t g = 0; g < (nb + 7) / 8; g++) {
        __m512i t[4], nc;
        __m512 dv;
        load_w8(type, row + (size_t)(8 * g) * sz, imin(8, nb - 8 * g), t, &nc, &dv, c->m + 8 * g);
        for (int k = 0; k < 4; k++) _mm512_store_si512(c->v + 6 * g + k, t[k]);
        _mm512_store_si512(c->v + 6 * g + 4, nc), _mm512_store_ps((float *)(c->v + 6 * g + 5), dv);
    }
}

AVX512 static void prep_x8_row(bool q81, const uint8_t *xrow, int64_t nb, const X8Row *a) {
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    for (int64_t g = 0; g < (nb + 7) / 8; g++) {
        __m256i q[8];
        float d[8];
        load_x8_group(q81, xrow, nb, g, q, d, a->s + 8 * g);
        __m512i t[4];
        split8(q, t);
        for (int k = 0; k < 4; k++) _mm512_store_si512(a->v + 5 * g + k, _mm512_xor_si512(t[k], k80));
        _mm512_store_ps((float *)(a->v + 5 * g + 4),
                        lanes8(_mm256_setr_ps(d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7])));
    }
}

/* One group of a tile: every (row, token) pair. */
AVX512 static INL void group8_avx512(const __m512i (*t)[4], const __m512i *nc, const __m512 *dv, const float *const *mw,
                                     const X8Row *const *X, int64_t g, bool has_m, const int R, const int T,
                                     __m512 (*acc)[TILE_MAX_T], float (*ms)[TILE_MAX_T]) {
    UNROLL
    for (int tt = 0; tt < T; tt++) {
        const __m512i *xv = X[tt]->v + 5 * g;
        const __m512i x0 = _mm512_load_si512(xv), x1 = _mm512_load_si512(xv + 1);
        const __m512i x2 = _mm512_load_si512(xv + 2), x3 = _mm512_load_si512(xv + 3);
        const __m512 dx = _mm512_load_ps((const float *)(xv + 4));
        UNROLL
        for (int r = 0; r < R; r++) {
            __m512i p = _mm512_dpbusd_epi32(nc[r], x0, t[r][0]);
            p = _mm512_dpbusd_epi32(p, x1, t[r][1]);
            p = _mm512_dpbusd_epi32(p, x2, t[r][2]);
            p = _mm512_dpbusd_epi32(p, x3, t[r][3]);
            acc[r][tt] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dv[r], dx), acc[r][tt]);
            if (has_m)
                for (int i = 0; i < 8; i++) ms[r][tt] += mw[r][i] * X[tt]->s[8 * g + i];
        }
    }
}

/* Prompt tile over ng groups of canonical weights; accumulators in memory
 * (the AVX2 twin: tile() in quant_x86_a2.c). */
AVX512 static INL void tile_a8_avx512(const W8Row *const *W, const X8Row *const *X, int64_t ng, bool has_m,
                                      const int R, const int T, __m512 *const *A, float *const *M) {
    __m512 acc[TILE_MAX_R][TILE_MAX_T];
    float ms[TILE_MAX_R][TILE_MAX_T];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_load_ps((const float *)&A[r][t]), ms[r][t] = M[r][t];
    for (int64_t g = 0; g < ng; g++) {
        __m512i tw[TILE_MAX_R][4], nc[TILE_MAX_R];
        __m512 dv[TILE_MAX_R];
        const float *mw[TILE_MAX_R];
        UNROLL
        for (int r = 0; r < R; r++) {
            const __m512i *v = W[r]->v + 6 * g;
            for (int k = 0; k < 4; k++) tw[r][k] = _mm512_load_si512(v + k);
            nc[r] = _mm512_load_si512(v + 4);
            dv[r] = _mm512_load_ps((const float *)(v + 5));
            mw[r] = W[r]->m + 8 * g;
        }
        group8_avx512(tw, nc, dv, mw, X, g, has_m, R, T, acc, ms);
    }
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int t = 0; t < T; t++) _mm512_store_ps((float *)&A[r][t], acc[r][t]), M[r][t] = ms[r][t];
}

/* Generation: the weight groups built in registers as the rows stream in. */
AVX512 static INL void dec_a8_avx512(uint32_t type, const uint8_t *const *wr, const X8Row *const *X, int64_t nb,
                                     bool has_m, size_t pf, const int R, const int T, float *res) {
    const size_t sz = type_info(type)->type_size;
    __m512 acc[TILE_MAX_R][TILE_MAX_T];
    float ms[TILE_MAX_R][TILE_MAX_T];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps(), ms[r][t] = 0.0f;
    for (int64_t g = 0; g < (nb + 7) / 8; g++) {
        __m512i tw[TILE_MAX_R][4], nc[TILE_MAX_R];
        __m512 dv[TILE_MAX_R];
        float mwv[TILE_MAX_R][8];
        const float *mw[TILE_MAX_R];
        UNROLL
        for (int r = 0; r < R; r++) {
            const uint8_t *p = wr[r] + (size_t)(8 * g) * sz;
            for (size_t i = 0; i < 8 * sz; i += 64) _mm_prefetch((const char *)p + pf + i, PREFETCH_HINT);
            load_w8(type, p, imin(8, nb - 8 * g), tw[r], &nc[r], &dv[r], mwv[r]);
            mw[r] = mwv[r];
        }
        group8_avx512(tw, nc, dv, mw, X, g, has_m, R, T, acc, ms);
    }
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int t = 0; t < T; t++) res[r * TILE_MAX_T + t] = _mm512_reduce_add_ps(acc[r][t]) + ms[r][t];
}

/* AVX-512, K-quants: maddubs(q, qx) then vpdpwssd with the sub-block
 * scales: 2 instructions per 64 values. */
AVX512 static INL void k_sb_avx512(const CanonK *const *C, const BlockQ8_K *const *X, const int R, const int T,
                                   __m512 (*acc)[TILE_MAX_T]) {
    __m512i ai[TILE_MAX_R][TILE_MAX_T];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int t = 0; t < T; t++) ai[r][t] = _mm512_setzero_si512();
    UNROLL
    for (int k = 0; k < 4; k++) {
        __m512i q[TILE_MAX_R], sv[TILE_MAX_R];
        UNROLL
        for (int r = 0; r < R; r++) {
            q[r] = _mm512_load_si512((const void *)(C[r]->q + 64 * k));
            sv[r] = _mm512_load_si512((const void *)(C[r]->scv + 32 * k));
        }
        UNROLL
        for (int t = 0; t < T; t++) {
            const __m512i x = _mm512_loadu_si512((const void *)(X[t]->qs + 64 * k));
            UNROLL
            for (int r = 0; r < R; r++) ai[r][t] = _mm512_dpwssd_epi32(ai[r][t], _mm512_maddubs_epi16(q[r], x), sv[r]);
        }
    }
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int t = 0; t < T; t++) {
            const __m256i im = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)C[r]->mn),
                                                 _mm256_loadu_si256((const __m256i *)X[t]->bsums));
            const __m512 fm = _mm512_insertf32x8(_mm512_setzero_ps(), _mm256_cvtepi32_ps(im), 0);
            acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[r][t]), _mm512_set1_ps(C[r]->d * X[t]->d), acc[r][t]);
            acc[r][t] = _mm512_fnmadd_ps(fm, _mm512_set1_ps(C[r]->dmin * X[t]->d), acc[r][t]);
        }
}

AVX512 static INL void tile_k_avx512(const CanonK *const *W, const BlockQ8_K *const *X, int64_t nsb, const int R,
                                     const int T, float *res) {
    __m512 acc[TILE_MAX_R][TILE_MAX_T];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const CanonK *C[TILE_MAX_R];
        const BlockQ8_K *Xs[TILE_MAX_T];
        UNROLL
        for (int r = 0; r < R; r++) C[r] = W[r] + s;
        UNROLL
        for (int t = 0; t < T; t++) Xs[t] = X[t] + s;
        k_sb_avx512(C, Xs, R, T, acc);
    }
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int t = 0; t < T; t++) res[r * TILE_MAX_T + t] = _mm512_reduce_add_ps(acc[r][t]);
}

AVX512 static INL void dec_k_avx512(uint32_t type, const uint8_t *const *wr, const BlockQ8_K *const *X, int64_t nsb,
                                    size_t pf, const int R, const int T, float *res) {
    const size_t sz = type_info(type)->type_size;
    CanonK cw[TILE_MAX_R];
    __m512 acc[TILE_MAX_R][TILE_MAX_T];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const CanonK *C[TILE_MAX_R];
        const BlockQ8_K *Xs[TILE_MAX_T];
        UNROLL
        for (int r = 0; r < R; r++) unpack_k_avx2(type, wr[r] + (size_t)s * sz, pf, &cw[r]), C[r] = &cw[r];
        UNROLL
        for (int t = 0; t < T; t++) Xs[t] = X[t] + s;
        k_sb_avx512(C, Xs, R, T, acc);
    }
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int t = 0; t < T; t++) res[r * TILE_MAX_T + t] = _mm512_reduce_add_ps(acc[r][t]);
}

/* Entry points: each call below has constant R and T, so the compiler
 * unrolls it into register-resident accumulators. */
#define TILE_SWITCH(F, ...)                                              \
    do {                                                                 \
        if (R == 2) {                                                    \
            if (T == 4) F(__VA_ARGS__, 2, 4, res);                       \
            else if (T == 2) F(__VA_ARGS__, 2, 2, res);                  \
            else F(__VA_ARGS__, 2, 1, res);                              \
        } else {                                                         \
            if (T == 4) F(__VA_ARGS__, 1, 4, res);                       \
            else if (T == 2) F(__VA_ARGS__, 1, 2, res);                  \
            else F(__VA_ARGS__, 1, 1, res);                              \
        }                                                                \
    } while (0)
#define DEC_SWITCH(F, ...)                                               \
    do {                                                                 \
        if (R == 2) {                                                    \
            if (T == 2) F(__VA_ARGS__, 2, 2, res);                       \
            else F(__VA_ARGS__, 2, 1, res);                              \
        } else {                                                         \
            if (T == 2) F(__VA_ARGS__, 1, 2, res);                       \
            else F(__VA_ARGS__, 1, 1, res);                              \
        }                                                                \
    } while (0)

/* A token tile against every row of a group: the row loop is inside, so
 * the per-tile call costs little. out points at (first token, first row). */
#define GROUP_BODY(TILE, ...)                                                      \
    for (int r = 0; r < nr; r += 2) {                                              \
        const int R = nr - r >= 2 ? 2 : 1;                                         \
        float res[TILE_MAX_R * TILE_MAX_T];                                        \
        TILE_SWITCH(TILE, W + r, X, __VA_ARGS__);                                  \
        for (int i = 0; i < R; i++)                                                \
            for (int j = 0; j < T; j++) out[(int64_t)j * os + r + i] = res[i * TILE_MAX_T + j]; \
    }

/* One K chunk of a token tile against every row of a group: acc / ms hold
 * the group's accumulators, (row, token) at [row * ts + token]. */
#define GROUP_ACC_TILE(TILE, HM)                                                  \
    do {                                                                          \
        if (R == 2) {                                                             \
            if (T == 4) TILE(W + r, X, nb, HM, 2, 4, A, M);                       \
            else if (T == 2) TILE(W + r, X, nb, HM, 2, 2, A, M);                  \
            else TILE(W + r, X, nb, HM, 2, 1, A, M);                              \
        } else {                                                                  \
            if (T == 4) TILE(W + r, X, nb, HM, 1, 4, A, M);                       \
            else if (T == 2) TILE(W + r, X, nb, HM, 1, 2, A, M);                  \
            else TILE(W + r, X, nb, HM, 1, 1, A, M);                              \
        }                                                                         \
    } while (0)
#define GROUP_ACC_BODY(TILE, VT)                                                  \
    for (int r = 0; r < nr; r += 2) {                                             \
        const int R = nr - r >= 2 ? 2 : 1;                                        \
        VT *A[TILE_MAX_R] = {acc + (size_t)r * ts, acc + (size_t)(r + R - 1) * ts}; \
        float *M[TILE_MAX_R] = {ms + (size_t)r * ts, ms + (size_t)(r + R - 1) * ts}; \
        if (has_m) GROUP_ACC_TILE(TILE, true);                                    \
        else GROUP_ACC_TILE(TILE, false);                                         \
    }
AVX512 static void group_a8_avx512(const W8Row *const *W, int nr, const X8Row *const *X, int T, int64_t nb, bool has_m,
                                   __m512 *acc, float *ms, int64_t ts) {
    GROUP_ACC_BODY(tile_a8_avx512, __m512)
}
AVX512 static void reduce_acc_avx512(const __m512 *acc, const float *ms, int n, float *res) {
    for (int i = 0; i < n; i++) res[i] = _mm512_reduce_add_ps(acc[i]) + ms[i];
}
AVX512 static void group_k_avx512(const CanonK *const *W, int nr, const BlockQ8_K *const *X, int T, int64_t nsb,
                                  float *out, int64_t os) {
    GROUP_BODY(tile_k_avx512, nsb)
}

/* Decode kernels, specialised per weight type: every row of the call, one
 * at a time, streamed in order, against each of the (fewer than
 * DEC_MAX_TOK) activation rows, two at a time, while the row is in L1.
 * One row per pass makes the reads one sequential stream, which the
 * hardware prefetcher follows; two rows per pass (two interleaved streams
 * that each stop after one row and jump two rows on) left weights that do
 * not fit in the cache at 8-9 GB/s against 21 GB/s for a plain read loop
 * on this machine; one row gets 18-21 GB/s (Q8_0), 15-16 GB/s (Q4_K).
 * DEC_R (rows per pass, 1 or 2) is kept as a knob to re-measure. */
#ifndef DEC_R
#define DEC_R 1
#endif
#define DEC_ROWS(F, XT, ...)                                                                      \
    for (int64_t r = 0; r < nr; r += DEC_R) {                                                     \
        const int R = nr - r >= DEC_R ? DEC_R : 1;                                                \
        const uint8_t *wr[TILE_MAX_R] = {w + (size_t)r * wrb, w + (size_t)(r + R - 1) * wrb};     \
        for (int t = 0; t < n_tok;) {                                                             \
            const int T = n_tok - t >= 2 ? 2 : 1;                                                 \
            const XT *X[TILE_MAX_T] = {(const XT *)xs[t], (const XT *)xs[t + T - 1], NULL, NULL}; \
            float res[TILE_MAX_R * TILE_MAX_T];                                                   \
            DEC_SWITCH(F, __VA_ARGS__);                                                           \
            for (int i = 0; i < R; i++)                                                           \
                for (int j = 0; j < T; j++) out[(int64_t)(t + j) * os + r + i] = res[i * TILE_MAX_T + j]; \
            t += T;                                                                               \
        }                                                                                         \
    }
/* One row per pass, tokens four at a time (AVX-512, 32-value blocks: the
 * row's groups are built in registers once per four tokens). */
#define DEC_ROWS_T4(F, XT, ...)                                                                   \
    for (int64_t r = 0; r < nr; r++) {                                                            \
        const uint8_t *wr[TILE_MAX_R] = {w + (size_t)r * wrb, w + (size_t)r * wrb};               \
        for (int t = 0; t < n_tok;) {                                                             \
            const int T = n_tok - t >= 4 ? 4 : n_tok - t >= 2 ? 2 : 1;                            \
            const XT *X[TILE_MAX_T];                                                              \
            for (int i = 0; i < TILE_MAX_T; i++) X[i] = (const XT *)xs[t + (i < T ? i : T - 1)];   \
            float res[TILE_MAX_R * TILE_MAX_T];                                                   \
            if (T == 4) F(__VA_ARGS__, 1, 4, res);                                                \
            else if (T == 2) F(__VA_ARGS__, 1, 2, res);                                           \
            else F(__VA_ARGS__, 1, 1, res);                                                       \
            for (int j = 0; j < T; j++) out[(int64_t)(t + j) * os + r] = res[j];                  \
            t += T;                                                                               \
        }                                                                                         \
    }
#define DEC_PARAMS const uint8_t *w, size_t wrb, int64_t nr, const void *const *xs, int n_tok, int64_t n, float *out, int64_t os
typedef void (*DecRowsFn)(DEC_PARAMS);

#define DEC_A_FNS(SUFFIX, TYPE)                                                                   \
    AVX512 static void dec_a_avx512_##SUFFIX(DEC_PARAMS) {                                        \
        const size_t pf = row_prefetch((size_t)n * type_info(TYPE)->type_size, wrb);              \
        DEC_ROWS_T4(dec_a8_avx512, X8Row, TYPE, wr, X, n, vec_dot_type(TYPE) == GGML_TYPE_Q8_1, pf) \
    }
DEC_A_FNS(q4_0, GGML_TYPE_Q4_0)
DEC_A_FNS(q4_1, GGML_TYPE_Q4_1)
DEC_A_FNS(q5_0, GGML_TYPE_Q5_0)
DEC_A_FNS(q5_1, GGML_TYPE_Q5_1)
DEC_A_FNS(q8_0, GGML_TYPE_Q8_0)

#define DEC_K_FNS(SUFFIX, TYPE, F512)                                                             \
    AVX512 static void dec_k_avx512_##SUFFIX(DEC_PARAMS) {                                        \
        const size_t pf = row_prefetch((size_t)n * type_info(TYPE)->type_size, wrb);              \
        DEC_ROWS(F512, BlockQ8_K, TYPE, wr, X, n, pf)                                             \
    }
DEC_K_FNS(q2_K, GGML_TYPE_Q2_K, dec_k_avx512)
DEC_K_FNS(q3_K, GGML_TYPE_Q3_K, dec_k_avx512)
/* Q4_K, Q5_K, Q6_K at AVX-512 decode in quant_x86_dec512.c (matmul_k_dec
 * takes it first); these entries keep the table whole */
DEC_K_FNS(q4_K, GGML_TYPE_Q4_K, dec_k_avx512)
DEC_K_FNS(q5_K, GGML_TYPE_Q5_K, dec_k_avx512)
DEC_K_FNS(q6_K, GGML_TYPE_Q6_K, dec_k_avx512)

static DecRowsFn dec_rows_fn(uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q4_0: return dec_a_avx512_q4_0;
    case GGML_TYPE_Q4_1: return dec_a_avx512_q4_1;
    case GGML_TYPE_Q5_0: return dec_a_avx512_q5_0;
    case GGML_TYPE_Q5_1: return dec_a_avx512_q5_1;
    case GGML_TYPE_Q8_0: return dec_a_avx512_q8_0;
    /* the K-quants at SIMD_AVX2: quant_x86_k2_dec */
    case GGML_TYPE_Q2_K: return dec_k_avx512_q2_K;
    case GGML_TYPE_Q3_K: return dec_k_avx512_q3_K;
    case GGML_TYPE_Q4_K: return dec_k_avx512_q4_K;
    case GGML_TYPE_Q5_K: return dec_k_avx512_q5_K;
    default: return dec_k_avx512_q6_K;
    }
}

int quant_x86_detect(void) {
    int lvl = SIMD_SCALAR;
    unsigned a, b, c, d;
    /* AVX2 and FMA from the compiler's cached CPU table (which also checks
     * that the OS saves the registers); F16C from CPUID leaf 1 (ECX bit
     * 29), which clang's __builtin_cpu_supports lacks. */
    if (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        lvl = SIMD_AVX2;
    if (lvl == SIMD_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vnni"))
        lvl = SIMD_AVX512;
    return lvl;
}

/* ==== */

/* -- activation quantizers: the same bytes as the scalar reference --------- */

AVX2 static INL float hmax256(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* roundf (half away from zero) of each lane, exactly */
AVX2 static INL __m256 round_away(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
    const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, _mm256_set1_ps(-0.0f)));
    return _mm256_add_ps(t, _mm256_and_ps(one, _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ)));
}

/* 32 floats (rounded integers in int8 range) to 32 int8 */
AVX2 static INL __m256i pack32(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256i ab = _mm256_packs_epi32(_mm256_cvtps_epi32(a), _mm256_cvtps_epi32(b));
    const __m256i cd = _mm256_packs_epi32(_mm256_cvtps_epi32(c), _mm256_cvtps_epi32(d));
    const __m256i q = _mm256_packs_epi16(ab, cd); /* lanes interleaved by the packs: fix the order */
    return _mm256_permutevar8x32_epi32(q, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

AVX2 void quantize_q8_0_avx2(const float *x, BlockQ8_0 *y, int64_t nb) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < nb; b++, x += 32) {
        __m256 v[4];
        for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(x + 8 * i);
        const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                       _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
        const float amax = hmax256(m);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = f32_to_fp16(d);
        const __m256 vid = _mm256_set1_ps(id);
        for (int i = 0; i < 4; i++) v[i] = round_away(_mm256_mul_ps(v[i], vid));
        _mm256_storeu_si256((__m256i *)y[b].qs, pack32(v[0], v[1], v[2], v[3]));
    }
}

AVX2 void quantize_q8_1_avx2(const float *x, BlockQ8_1 *y, int64_t nb) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < nb; b++, x += 32) {
        __m256 v[4];
        for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(x + 8 * i);
        const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                       _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
        const float amax = hmax256(m);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        for (int i = 0; i < 4; i++) v[i] = round_away(_mm256_mul_ps(v[i], vid));
        const __m256i q = pack32(v[0], v[1], v[2], v[3]);
        _mm256_storeu_si256((__m256i *)y[b].qs, q);
        const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
        y[b].d = f32_to_fp16(d);
        y[b].s = f32_to_fp16((float)_mm_cvtsi128_si32(t) * d);
    }
}

AVX2 void quantize_q8_K_avx2(const float *x, BlockQ8_K *y, int64_t nb) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < nb; b++, x += QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < QK_K; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
        const float amax = hmax256(m);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        /* the first value of largest magnitude, with its sign (as the scalar loop) */
        const __m256 va = _mm256_set1_ps(amax);
        int j = 0;
        for (int i = 0; i < QK_K; i += 8) {
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), va, _CMP_EQ_OQ));
            if (mask) {
                j = i + __builtin_ctz((unsigned)mask);
                break;
            }
        }
        const float iscale = -127.0f / x[j];
        const __m256 vis = _mm256_set1_ps(iscale), lo = _mm256_set1_ps(-128.0f), hi = _mm256_set1_ps(127.0f);
        for (int i = 0; i < QK_K; i += 32) {
            __m256 v[4];
            for (int k = 0; k < 4; k++) {
                const __m256 t = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), vis), lo), hi);
                v[k] = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            }
            const __m256i q = pack32(v[0], v[1], v[2], v[3]);
            _mm256_storeu_si256((__m256i *)(y[b].qs + i), q);
            /* sums of each 16: maddubs by ones gives pair sums, madd quads */
            const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
            __m256i h = _mm256_hadd_epi32(s32, s32);
            h = _mm256_hadd_epi32(h, h);
            y[b].bsums[i / 16] = (int16_t)_mm256_cvtsi256_si32(h);
            y[b].bsums[i / 16 + 1] = (int16_t)_mm_cvtsi128_si32(_mm256_extracti128_si256(h, 1));
        }
        y[b].d = 1.0f / iscale;
    }
}

/* -- GEGLU -------------------------------------------------------------------
 * g = gelu_tanh(g) * u with gelu_tanh(x) = 0.5 x (1 + tanh(t)),
 * t = sqrt(2/pi) (x + 0.044715 x^3), evaluated as x / (1 + exp(-2t)) (the
 * same function, without 1 + tanh(t)'s cancellation for negative x); exp by
 * Cody-Waite range reduction and a degree-7 polynomial (< 2 ulp). */
AVX2 static INL __m256 exp256(__m256 y) {
    y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), y);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

AVX2 void geglu_avx2(float *g, const float *u, int64_t n) {
    const __m256 c1 = _mm256_set1_ps(-2.0f * 0.79788456080286535588f), c3 = _mm256_set1_ps(0.044715f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 t = _mm256_mul_ps(_mm256_mul_ps(x, c1), _mm256_fmadd_ps(_mm256_mul_ps(x, x), c3, _mm256_set1_ps(1.0f)));
        const __m256 den = _mm256_add_ps(_mm256_set1_ps(1.0f), exp256(t));
        _mm256_storeu_ps(g + i, _mm256_div_ps(_mm256_mul_ps(x, _mm256_loadu_ps(u + i)), den));
    }
    for (; i < n; i++) {
        const float x = g[i];
        g[i] = x * u[i] / (1.0f + expf(-2.0f * 0.79788456080286535588f * x * (1.0f + 0.044715f * x * x)));
    }
}

/* -- attention rows -------------------------------------------------------- */

AVX512 void dot_rows_avx512(uint32_t type, const uint8_t *rows, size_t rb, int64_t nr, const float *x, int64_t n,
                                   float *out) {
    const __mmask16 tail = (__mmask16)((1u << (n & 15)) - 1);
    for (int64_t j = 0; j < nr; j++) {
        const uint8_t *r = rows + (size_t)j * rb;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int64_t i = 0;
        if (type == GGML_TYPE_F16) {
            for (; i + 32 <= n; i += 32) {
                a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + 2 * i))), _mm512_loadu_ps(x + i), a0);
                a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + 2 * i + 32))),
                                     _mm512_loadu_ps(x + i + 16), a1);
            }
            for (; i + 16 <= n; i += 16)
                a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + 2 * i))), _mm512_loadu_ps(x + i), a0);
            if (i < n)
                a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(tail, r + 2 * i)), _mm512_maskz_loadu_ps(tail, x + i), a1);
        } else {
            const float *f = (const float *)r;
            for (; i + 32 <= n; i += 32) {
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(f + i), _mm512_loadu_ps(x + i), a0);
                a1 = _mm512_fmadd_ps(_mm512_loadu_ps(f + i + 16), _mm512_loadu_ps(x + i + 16), a1);
            }
            for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(f + i), _mm512_loadu_ps(x + i), a0);
            if (i < n) a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, f + i), _mm512_maskz_loadu_ps(tail, x + i), a1);
        }
        out[j] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    }
}

/* o = sum_j w[j] * row_j, in registers across the rows (64 values at a time);
 * per element the same fma sequence as repeated vec_mad calls */
AVX512 void mad_rows_avx512(uint32_t type, float *o, const float *w, const uint8_t *rows, size_t rb, int64_t nr,
                                   int64_t n) {
    for (int64_t i0 = 0; i0 < n; i0 += 64) {
        const int64_t m = n - i0 < 64 ? n - i0 : 64;
        __mmask16 k[4];
        for (int q = 0; q < 4; q++) {
            const int64_t left = m - 16 * q;
            k[q] = left >= 16 ? (__mmask16)0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : (__mmask16)0;
        }
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (int64_t j = 0; j < nr; j++) {
            const __m512 s = _mm512_set1_ps(w[j]);
            const uint8_t *r = rows + (size_t)j * rb;
            if (type == GGML_TYPE_F16) {
                const uint16_t *h = (const uint16_t *)r + i0;
                a0 = _mm512_fmadd_ps(s, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k[0], h)), a0);
                a1 = _mm512_fmadd_ps(s, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k[1], h + 16)), a1);
                a2 = _mm512_fmadd_ps(s, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k[2], h + 32)), a2);
                a3 = _mm512_fmadd_ps(s, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k[3], h + 48)), a3);
            } else {
                const float *f = (const float *)r + i0;
                a0 = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(k[0], f), a0);
                a1 = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(k[1], f + 16), a1);
                a2 = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(k[2], f + 32), a2);
                a3 = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(k[3], f + 48), a3);
            }
        }
        _mm512_mask_storeu_ps(o + i0, k[0], a0);
        _mm512_mask_storeu_ps(o + i0 + 16, k[1], a1);
        _mm512_mask_storeu_ps(o + i0 + 32, k[2], a2);
        _mm512_mask_storeu_ps(o + i0 + 48, k[3], a3);
    }
}

/* expm1 for x <= 0: a polynomial near 0 (no cancellation), exp - 1 beyond */
AVX2 static INL __m256 expm1_neg256(__m256 x) {
    __m256 p = _mm256_set1_ps(1.0f / 40320);
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 5040));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f));
    p = _mm256_mul_ps(p, x);
    const __m256 big = _mm256_sub_ps(exp256(x), _mm256_set1_ps(1.0f));
    return _mm256_blendv_ps(p, big, _mm256_cmp_ps(x, _mm256_set1_ps(-0.34657359f), _CMP_LT_OQ));
}

/* tanh(y) = sign(y) * -m / (2 + m), m = expm1(-2|y|): accurate at 0 and +-inf */
AVX2 static INL __m256 tanh256(__m256 y) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 m = expm1_neg256(_mm256_mul_ps(_mm256_set1_ps(-2.0f), _mm256_andnot_ps(sign, y)));
    const __m256 t = _mm256_div_ps(_mm256_sub_ps(_mm256_setzero_ps(), m), _mm256_add_ps(_mm256_set1_ps(2.0f), m));
    return _mm256_or_ps(t, _mm256_and_ps(sign, y));
}

AVX2 void softcap_softmax_avx2(float *s, int64_t n, float scale, float cap, float temp) {
    const __m256 vs = _mm256_set1_ps(scale), vc = _mm256_set1_ps(cap), vt = _mm256_set1_ps(temp);
    __m256 mx = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + i), vs);
        if (cap > 0.0f) v = _mm256_mul_ps(vc, tanh256(_mm256_div_ps(v, vc)));
        v = _mm256_mul_ps(v, vt);
        _mm256_storeu_ps(s + i, v);
        mx = _mm256_max_ps(mx, v);
    }
    float m = hmax256(mx);
    for (; i < n; i++) {
        float v = s[i] * scale;
        if (cap > 0.0f) v = cap * tanhf(v / cap);
        s[i] = v * temp;
        m = s[i] > m ? s[i] : m;
    }
    const __m256 vm = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm));
        _mm256_storeu_ps(s + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    double tot = hsum256(sum);
    for (; i < n; i++) tot += s[i] = expf(s[i] - m);
    const __m256 inv = _mm256_set1_ps((float)(1.0 / tot));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(s + i, _mm256_mul_ps(_mm256_loadu_ps(s + i), inv));
    for (; i < n; i++) s[i] *= (float)(1.0 / tot);
}

/* ==== */

#define DECODE_STACK (96 * 1024) /* bytes of activation scratch on the stack (decode) */


static void matmul_ref(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok,
                       float *out, int64_t os, int64_t r0, int64_t r1) {
    for (int t = 0; t < n_tok; t++)
        for (int64_t r = r0; r < r1; r++) out[(int64_t)t * os + r] = vec_dot_ref(type, w + (size_t)r * wrb, x + (size_t)t * xrb, n);
}

/* With fewer activation rows than this, a matrix product takes the
 * generation path below (each weight row read once from memory, decoded in
 * registers, and applied to every token while it is in L1); from this many on, the
 * prompt path, which unpacks groups of rows once for register tiles of
 * tokens. A continuous-batching decode step of a few streams is far
 * cheaper on the generation path (the unpacking costs more than it saves
 * for so few tokens). Both paths give bit-identical results. */
#ifndef DEC_MAX_TOK
#define DEC_MAX_TOK 16
#endif

/* Generation (n_tok < DEC_MAX_TOK): the activations are prepared once, the
 * weight rows stream through in order, decoded in registers. */
__attribute__((noinline)) static void matmul_a_dec(int level, uint32_t type, const uint8_t *w, size_t wrb,
                                                   const uint8_t *x, size_t xrb, int64_t n, int n_tok, float *out,
                                                   int64_t os, int64_t r0, int64_t r1) {
    if (level == SIMD_AVX2) {
        quant_x86_a2_dec(type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1);
        return;
    }
    if (quant_x86_dec_a_avx512(type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1)) return;
    const int64_t nb = n / 32;
    const bool q81 = vec_dot_type(type) == GGML_TYPE_Q8_1;
    const size_t xb = x8_bytes((nb + 7) / 8);
    _Alignas(64) uint8_t stack[DECODE_STACK];
    uint8_t *buf = stack, *heap = NULL;
    if ((size_t)n_tok * xb > sizeof stack) {
        heap = aligned_alloc(64, pad64((size_t)n_tok * xb));
        if (!heap) { /* out of memory: the (slow) reference still gives the answer */
            matmul_ref(type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1);
            return;
        }
        buf = heap;
    }
    X8Row x8[DEC_MAX_TOK];
    const void *xs[DEC_MAX_TOK];
    for (int t = 0; t < n_tok; t++) {
        x8_at(&x8[t], buf + (size_t)t * xb, (nb + 7) / 8);
        prep_x8_row(q81, x + (size_t)t * xrb, nb, &x8[t]);
        xs[t] = &x8[t];
    }
    /* the kernels prefetch ahead of themselves; a call whose rows do not
     * follow the previous call's also needs its first stretch */
    prefetch_rows(w + (size_t)r0 * wrb, type_row_size(type, n), wrb, r1 - r0);
    dec_rows_fn(type)(w + (size_t)r0 * wrb, wrb, r1 - r0, xs, n_tok, nb, out + r0, os);
    free(heap);
}

/* Prompt processing (AVX-512; the AVX2 twin, same blocking with its own
 * tile and constants, is quant_x86_a2.c), blocked as a GEMM for rows of any
 * length (Grok-1's 6,144 and 32,768): panels of up to PRE_TOK_BLOCK
 * activation rows are prepared once per call; for each group of
 * PRE_ROW_GROUP weight rows, the rows are cut into K chunks of
 * PRE_K_BLOCKS_512 blocks, each chunk unpacked into groups of eight blocks
 * and run against every token tile while both sit in L1, the accumulators
 * kept in memory from chunk to chunk. Register tiles: 2 rows x 4 tokens. */
#ifndef PRE_TOK_BLOCK
#define PRE_TOK_BLOCK 64
#endif
#ifndef PRE_PANEL_BYTES
#define PRE_PANEL_BYTES (2 << 20) /* activation panel bytes (fewer tokens per panel for wide rows): 1 MiB 55.5, 2 MiB 63.6, 4 MiB 64.1 GMAC/s for 1024x32768x64 Q8_0 AVX-512 here */
#endif
#ifndef PRE_ROW_GROUP
#define PRE_ROW_GROUP 16
#endif
#ifndef PRE_K_BLOCKS_512
#define PRE_K_BLOCKS_512 32 /* 1,024 values, four groups of eight blocks (~24 KiB for 16 rows) */
#endif
_Static_assert(PRE_K_BLOCKS_512 % 8 == 0, "K chunks start at whole groups");

__attribute__((noinline)) static void matmul_a_pre_avx512(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x,
                                                          size_t xrb, int64_t n, int n_tok, float *out, int64_t os,
                                                          int64_t r0, int64_t r1) {
    const int64_t nb = n / 32, ng = (nb + 7) / 8;
    size_t xb = x8_bytes(ng);
    if (xb % 4096 == 0) xb += 64; /* panel rows a multiple of 4 KiB apart would share L1 sets: pad */
    const size_t wcb = w8_bytes(PRE_K_BLOCKS_512 / 8), sz = type_info(type)->type_size;
    const bool q81 = vec_dot_type(type) == GGML_TYPE_Q8_1;
    const int tb = imin(imin(PRE_TOK_BLOCK, n_tok), (int64_t)(PRE_PANEL_BYTES / xb) > 16 ? (int64_t)(PRE_PANEL_BYTES / xb) : 16);
    const size_t nacc = (size_t)PRE_ROW_GROUP * (size_t)tb;
    const size_t xpanel = (size_t)tb * xb, wpanel = (size_t)PRE_ROW_GROUP * wcb;
    uint8_t *buf = aligned_alloc(64, pad64(xpanel + wpanel + nacc * 64 + nacc * sizeof(float)));
    if (!buf) { /* out of memory: the generation path (same results), two tokens at a time */
        for (int t = 0; t < n_tok; t += 2)
            matmul_a_dec(SIMD_AVX512, type, w, wrb, x + (size_t)t * xrb, xrb, n, n_tok - t >= 2 ? 2 : 1,
                         out + (int64_t)t * os, os, r0, r1);
        return;
    }
    __m512 *acc = (__m512 *)(buf + xpanel + wpanel);
    float *ms = (float *)(acc + nacc);
    W8Row wrow[PRE_ROW_GROUP];
    X8Row xrow[PRE_TOK_BLOCK];
    for (int i = 0; i < PRE_ROW_GROUP; i++) w8_at(&wrow[i], buf + xpanel + (size_t)i * wcb, PRE_K_BLOCKS_512 / 8);
    for (int i = 0; i < tb; i++) x8_at(&xrow[i], buf + (size_t)i * xb, ng);
    const W8Row *W[PRE_ROW_GROUP];
    for (int i = 0; i < PRE_ROW_GROUP; i++) W[i] = &wrow[i];
    for (int t0 = 0; t0 < n_tok; t0 += tb) {
        const int nt = imin(tb, n_tok - t0);
        for (int t = 0; t < nt; t++) prep_x8_row(q81, x + (size_t)(t0 + t) * xrb, nb, &xrow[t]);
        for (int64_t rs = r0; rs < r1; rs += PRE_ROW_GROUP) {
            const int nr = imin(PRE_ROW_GROUP, r1 - rs);
            memset(acc, 0, (size_t)nr * (size_t)nt * 64);
            memset(ms, 0, (size_t)nr * (size_t)nt * sizeof(float));
            for (int64_t b0 = 0; b0 < nb; b0 += PRE_K_BLOCKS_512) {
                const int nbc = imin(PRE_K_BLOCKS_512, nb - b0), ngc = (nbc + 7) / 8;
                for (int i = 0; i < nr; i++) unpack_w8_row(type, w + (size_t)(rs + i) * wrb + (size_t)b0 * sz, nbc, &wrow[i]);
                for (int t = 0; t < nt;) {
                    const int T = nt - t >= 4 ? 4 : nt - t >= 2 ? 2 : 1;
                    X8Row xv[TILE_MAX_T];
                    const X8Row *X[TILE_MAX_T];
                    for (int i = 0; i < T; i++) { /* the chunk's view of each token's panel row */
                        xv[i].v = xrow[t + i].v + 5 * (b0 / 8), xv[i].s = xrow[t + i].s + b0;
                        X[i] = &xv[i];
                    }
                    group_a8_avx512(W, nr, X, T, ngc, q81, acc + t, ms + t, nt);
                    t += T;
                }
            }
            for (int r = 0; r < nr; r++) {
                float res[PRE_TOK_BLOCK];
                reduce_acc_avx512(acc + (size_t)r * nt, ms + (size_t)r * nt, nt, res);
                for (int t = 0; t < nt; t++) out[(int64_t)(t0 + t) * os + rs + r] = res[t];
            }
        }
    }
    free(buf);
}

static void matmul_k_dec(int level, uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n,
                         int n_tok, float *out, int64_t os, int64_t r0, int64_t r1) {
    if (level == SIMD_AVX512 && quant_x86_dec_k_avx512(type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1)) return;
    prefetch_rows(w + (size_t)r0 * wrb, type_row_size(type, n), wrb, r1 - r0);
    const void *xs[DEC_MAX_TOK];
    for (int t = 0; t < n_tok; t++) xs[t] = x + (size_t)t * xrb;
    if (level == SIMD_AVX2) {
        quant_x86_k2_dec(type, w + (size_t)r0 * wrb, wrb, r1 - r0, xs, n_tok, n / QK_K, out + r0, os);
        return;
    }
    dec_rows_fn(type)(w + (size_t)r0 * wrb, wrb, r1 - r0, xs, n_tok, n / QK_K, out + r0, os);
}

static void matmul_k_pre(int level, uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n,
                         int n_tok, float *out, int64_t os, int64_t r0, int64_t r1) {
    const int64_t nsb = n / QK_K;
    const size_t wsz = type_info(type)->type_size;
    const bool v512 = level == SIMD_AVX512;
    const size_t pf = row_prefetch((size_t)nsb * wsz, wrb);
    const int tmax = 4; /* tokens per tile: AVX-512 and AVX2 (quant_x86_k2.c) */
    CanonK *cw = aligned_alloc(64, (size_t)RGROUP * (size_t)nsb * sizeof(CanonK));
    if (!cw) { /* out of memory: the generation path (same results), two tokens at a time */
        for (int t = 0; t < n_tok; t += 2)
            matmul_k_dec(level, type, w, wrb, x + (size_t)t * xrb, xrb, n, n_tok - t >= 2 ? 2 : 1, out + (int64_t)t * os,
                         os, r0, r1);
        return;
    }
    for (int64_t rs = r0; rs < r1; rs += RGROUP) {
        const int nr = imin(RGROUP, r1 - rs);
        for (int i = 0; i < nr; i++)
            for (int64_t s = 0; s < nsb; s++)
                unpack_k_avx2(type, w + (size_t)(rs + i) * wrb + (size_t)s * wsz, pf, &cw[(size_t)i * nsb + s]);
        const CanonK *W[RGROUP];
        for (int i = 0; i < nr; i++) W[i] = cw + (size_t)i * nsb;
        for (int t = 0; t < n_tok;) {
            const int T = n_tok - t >= tmax ? tmax : n_tok - t >= 2 ? 2 : 1;
            const BlockQ8_K *X[TILE_MAX_T];
            for (int i = 0; i < T; i++) X[i] = (const BlockQ8_K *)(x + (size_t)(t + i) * xrb);
            float *o = out + (int64_t)t * os + rs;
            if (v512) group_k_avx512(W, nr, X, T, nsb, o, os);
            else quant_x86_k2_group(W, nr, X, T, nsb, o, os);
            t += T;
        }
    }
    free(cw);
}
void quant_x86_matmul(int level, uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n,
                      int n_tok, float *out, int64_t os, int64_t r0, int64_t r1) {
    if (is_a_type(type)) {
        if (n_tok < DEC_MAX_TOK) matmul_a_dec(level, type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1);
        else if (level == SIMD_AVX512) matmul_a_pre_avx512(type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1);
        else quant_x86_a2_pre(type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1);
    } else {
        if (n_tok < DEC_MAX_TOK) matmul_k_dec(level, type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1);
        else matmul_k_pre(level, type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1);
    }
}

#endif /* x86-64 */
