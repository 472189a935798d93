/* quant_x86_k2.c - the AVX2 (no AVX-512) K-quant generation kernels: every
 * weight super-block (Q2_K ... Q6_K) decoded straight into ymm registers,
 * 32 values at a time, as it streams from memory, and applied to up to four
 * Q8_K activation rows while it is in registers. Called by quant_x86.c's
 * generation driver (matmul_k_dec) at SIMD_AVX2.
 *
 * The arithmetic is exactly that of quant_x86.c's k_sb_avx2 over the
 * canonical form (CanonK, quant_internal.h), which the prompt path uses: the
 * same 32-value chunks in the same ymm lanes (maddubs of the unsigned levels
 * with the activations, then madd with the 16-value sub-block scales, exact
 * int32 sums), the same per-super-block float steps (fma by d*dx, fnmadd of
 * the mins by dmin*dx) and the same final horizontal sum, so a token's
 * result is bit for bit the same whichever path and tile computed it. What
 * is different is only where the levels and scales come from: the
 * canonical form stores 256 levels and 128 scale words per super-block and
 * reads them back; here they are built in registers (nibble masks, 16-bit
 * shifts for the high bits, byte shuffles that broadcast each sub-block's
 * scale) and never touch memory. */
#include "quant_x86.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "quant_x86_defs.h"

#define K2_MAX_T 4 /* activation rows per pass over a weight row */
#define UNROLL _Pragma("GCC unroll 8")


/* The float steps, shared by both paths. Per (weight row, token) pair and
 * super-block the eight int32 lanes of the level sums (ai) and of the min
 * sums (im) are first added in fours (exact: |lane| < 2^25, so the sums fit),
 * leaving two integers per pair, A0 = lanes 0-3 and A1 = lanes 4-7 (M0, M1
 * for the mins); each goes through its own float lane:
 *   f = fma(float(A), d*dx, f);  f = fnmadd(float(M), dmin*dx, f)
 * and the result is f0 + f1. With four tokens the two hadd steps put token
 * t's A0 in lane t and A1 in lane 4 + t, so one convert and one fma serve
 * four pairs (fewer tokens repeat theirs); every lane sees the same
 * operations in the same order whatever the tile, so results are bit for
 * bit the same in both paths and for every token count. */
AVX2 static INL __m256i red4(const __m256i *a, const int T) {
    if (T == 4) return _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
    const __m256i h = _mm256_hadd_epi32(a[0], a[T == 2 ? 1 : 0]);
    return _mm256_hadd_epi32(h, h);
}
/* the activation scales in the lanes red4 gives each token */
AVX2 static INL __m256 dx4(const BlockQ8_K *const *X, int64_t s, const int T) {
    const __m128 v = T == 4   ? _mm_setr_ps(X[0][s].d, X[1][s].d, X[2][s].d, X[3][s].d)
                     : T == 2 ? _mm_setr_ps(X[0][s].d, X[1][s].d, X[0][s].d, X[1][s].d)
                              : _mm_set1_ps(X[0][s].d);
    return _mm256_set_m128(v, v);
}
/* one row's super-block: ai / mins of its T pairs into f */
AVX2 static INL __m256 ksb_float(const __m256i *ai, __m256i mn, float d, float dmin, const BlockQ8_K *const *X, int64_t s,
                                 const int T, __m256 f) {
    if (T == 1) { /* the same lanes 0 and 4 with fewer shuffles: A0 M0 A0 M0 | A1 M1 A1 M1 */
        const __m256i im = _mm256_madd_epi16(mn, _mm256_loadu_si256((const __m256i *)X[0][s].bsums));
        const __m256i h = _mm256_hadd_epi32(ai[0], im);
        const __m256 am = _mm256_cvtepi32_ps(_mm256_hadd_epi32(h, h));
        const __m256 dx = _mm256_set1_ps(X[0][s].d);
        f = _mm256_fmadd_ps(am, _mm256_mul_ps(_mm256_set1_ps(d), dx), f);
        return _mm256_fnmadd_ps(_mm256_movehdup_ps(am), _mm256_mul_ps(_mm256_set1_ps(dmin), dx), f);
    }
    __m256i im[K2_MAX_T];
    for (int t = 0; t < T; t++) im[t] = _mm256_madd_epi16(mn, _mm256_loadu_si256((const __m256i *)X[t][s].bsums));
    const __m256 dx = dx4(X, s, T);
    f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(red4(ai, T)), _mm256_mul_ps(_mm256_set1_ps(d), dx), f);
    return _mm256_fnmadd_ps(_mm256_cvtepi32_ps(red4(im, T)), _mm256_mul_ps(_mm256_set1_ps(dmin), dx), f);
}
AVX2 static INL void kres(__m256 f, const int T, float *res) {
    _Alignas(32) float v[8];
    _mm256_store_ps(v, f);
    for (int t = 0; t < T; t++) res[t] = v[t] + v[4 + t];
}

/* One 32-value chunk (levels q, scale words sv) against chunk k of every
 * activation row: ai[t] += madd(maddubs(q, x), sv), as k_sb_avx2. */
AVX2 static INL void kchunk(__m256i q, __m256i sv, const BlockQ8_K *const *X, int64_t s, int k, const int T,
                            __m256i *ai) {
    UNROLL
    for (int t = 0; t < T; t++) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(X[t][s].qs + 32 * k));
        ai[t] = _mm256_add_epi32(ai[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), sv));
    }
}

/* A dword from memory in every lane: a load-port operation (GCC would
 * otherwise forward a value it has just stored through a shuffle). */
AVX2 static INL __m256i bcast_mem32(const int32_t *p) {
    __m256i r;
    __asm__("vpbroadcastd %1, %0" : "=x"(r) : "m"(*p));
    return r;
}

/* Q4_K / Q5_K: one 6-bit scale per 32 values (the same in both lanes). */
AVX2 static INL void sb_q45(const uint8_t *p, const bool five, const BlockQ8_K *const *X, int64_t s, const int T,
                            __m256i *ai, __m256i *mn, float *d, float *dmin) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const uint8_t *qs = p + (five ? 48 : 16);
    /* the 12 scale bytes (8 6-bit scales, 8 6-bit mins) to sc0-7 m0-7, as
     * ggml's get_scale_min_k4: bytes 0-3 and 4-7 hold scales / mins 0-3 in
     * their low 6 bits and the high 2 bits of 4-7, bytes 8-11 the low 4
     * bits of scales (low nibble) and mins (high nibble) 4-7 */
    const __m128i v12 = _mm_loadu_si128((const __m128i *)(p + 4)); /* 16 bytes: the block goes on */
    const __m128i a = _mm_shuffle_epi8(v12, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i b = _mm_shuffle_epi8(v12, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const __m128i sm = _mm_or_si128(
        _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
                      _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f)),
        _mm_and_si128(_mm_srli_epi32(b, 2), _mm_set1_epi8(0x30)));
    /* each sub-block's scale word twice in a dword, broadcast from memory
     * per chunk (a load, where a byte shuffle would take the shuffle port) */
    _Alignas(32) int32_t scw[8];
    _mm256_store_si256((__m256i *)scw, _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(sm, sm))); /* sc0 sc0 sc1 sc1 ... */
    *mn = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)); /* m0 m0 m1 m1 ... */
    __m256i qh = _mm256_setzero_si256();
    if (five) qh = _mm256_loadu_si256((const __m256i *)(p + 16));
    const __m256i b4 = _mm256_set1_epi8(0x10);
    UNROLL
    for (int cc = 0; cc < 4; cc++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * cc));
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (five) { /* bit j = 2cc (+1) of qh[l] -> bit 4; 16-bit shifts move nothing else into bit 4 */
            const int j = 2 * cc;
            const __m256i h0 = j <= 4 ? _mm256_slli_epi16(qh, 4 - j) : _mm256_srli_epi16(qh, j - 4);
            const __m256i h1 = j + 1 <= 4 ? _mm256_slli_epi16(qh, 3 - j) : _mm256_srli_epi16(qh, j - 3);
            lo = _mm256_or_si256(lo, _mm256_and_si256(h0, b4));
            hi = _mm256_or_si256(hi, _mm256_and_si256(h1, b4));
        }
        kchunk(lo, bcast_mem32(&scw[2 * cc]), X, s, 2 * cc, T, ai);
        kchunk(hi, bcast_mem32(&scw[2 * cc + 1]), X, s, 2 * cc + 1, T, ai);
    }
    uint16_t dh, mh;
    memcpy(&dh, p, 2), memcpy(&mh, p + 2, 2);
    *d = H2FV(dh), *dmin = H2FV(mh);
}

/* The 16 int16 scales of the 16-value sub-blocks (Q2_K, Q3_K, Q6_K) as the
 * scale words of chunk k: sub-block 2k in the low lane, 2k+1 in the high. */
typedef struct {
    __m256i lo, hi; /* sub-blocks 0-7 / 8-15 in both lanes */
} Sc16;
AVX2 static INL Sc16 sc16_split(__m256i sc) {
    Sc16 r = {_mm256_permute4x64_epi64(sc, 0x44), _mm256_permute4x64_epi64(sc, 0xEE)};
    return r;
}
/* Byte-shuffle patterns that broadcast int16 word 2i across the low
 * 128-bit lane and word 2i + 1 across the high one: a table, read as the
 * shuffle's memory operand (GCC rebuilt constant patterns in registers at
 * every use). */
static const uint8_t SC16_PAT[4][32] __attribute__((aligned(32))) = {
#define WP(w) 2 * (w), 2 * (w) + 1
#define WP8(w) WP(w), WP(w), WP(w), WP(w), WP(w), WP(w), WP(w), WP(w)
    {WP8(0), WP8(1)}, {WP8(2), WP8(3)}, {WP8(4), WP8(5)}, {WP8(6), WP8(7)},
#undef WP8
#undef WP
};
AVX2 static INL __m256i sc16_chunk(const Sc16 *s, int k) {
    return _mm256_shuffle_epi8(k < 4 ? s->lo : s->hi, _mm256_load_si256((const __m256i *)SC16_PAT[k & 3]));
}

AVX2 static INL void sb_q6(const uint8_t *p, const BlockQ8_K *const *X, int64_t s, const int T, __m256i *ai,
                           __m256i *mn, float *d, float *dmin) {
    const BlockQ6_K *b = (const BlockQ6_K *)p;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    const Sc16 sp = sc16_split(sc);
    *mn = _mm256_slli_epi16(sc, 5);
    UNROLL
    for (int n = 0; n < 2; n++) {
        const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * n));
        const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * n + 32));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * n));
        /* bits 2i..2i+1 of qh -> bits 4-5 (16-bit shifts: what crosses bytes lands outside 0x30) */
        const __m256i q0 = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
        kchunk(q0, sc16_chunk(&sp, 4 * n), X, s, 4 * n, T, ai);
        const __m256i q1 = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
        kchunk(q1, sc16_chunk(&sp, 4 * n + 1), X, s, 4 * n + 1, T, ai);
        const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
        kchunk(q2, sc16_chunk(&sp, 4 * n + 2), X, s, 4 * n + 2, T, ai);
        const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                           _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
        kchunk(q3, sc16_chunk(&sp, 4 * n + 3), X, s, 4 * n + 3, T, ai);
    }
    *d = *dmin = H2FV(b->d);
}

AVX2 static INL void sb_q3(const uint8_t *p, const BlockQ8_K *const *X, int64_t s, const int T, __m256i *ai,
                           __m256i *mn, float *d, float *dmin) {
    const BlockQ3_K *b = (const BlockQ3_K *)p;
    const __m256i m3 = _mm256_set1_epi8(3), b2 = _mm256_set1_epi8(4);
    /* the 16 6-bit scales: low 4 bits in scales[0..7] (nibbles), high 2 in scales[8..11] */
    uint32_t a0, a1, a2;
    memcpy(&a0, b->scales, 4), memcpy(&a1, b->scales + 4, 4), memcpy(&a2, b->scales + 8, 4);
    const uint32_t u0 = (a0 & 0x0f0f0f0fu) | ((a2 & 0x03030303u) << 4);
    const uint32_t u1 = (a1 & 0x0f0f0f0fu) | (((a2 >> 2) & 0x03030303u) << 4);
    const uint32_t u2 = ((a0 >> 4) & 0x0f0f0f0fu) | (((a2 >> 4) & 0x03030303u) << 4);
    const uint32_t u3 = ((a1 >> 4) & 0x0f0f0f0fu) | (((a2 >> 6) & 0x03030303u) << 4);
    const __m128i s8 = _mm_sub_epi8(_mm_setr_epi32((int)u0, (int)u1, (int)u2, (int)u3), _mm_set1_epi8(32));
    const __m256i sc = _mm256_cvtepi8_epi16(s8);
    const Sc16 sp = sc16_split(sc);
    *mn = _mm256_slli_epi16(sc, 2);
    const __m256i hm = _mm256_loadu_si256((const __m256i *)b->hmask);
    UNROLL
    for (int n = 0; n < 2; n++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * n));
        UNROLL
        for (int k = 0; k < 4; k++) {
            const int j = 4 * n + k; /* hmask bit j -> bit 2 (16-bit shifts: nothing else reaches bit 2) */
            const __m256i h = j <= 2 ? _mm256_slli_epi16(hm, 2 - j) : _mm256_srli_epi16(hm, j - 2);
            const __m256i q = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 2 * k), m3), _mm256_and_si256(h, b2));
            kchunk(q, sc16_chunk(&sp, j), X, s, j, T, ai);
        }
    }
    *d = *dmin = H2FV(b->d);
}

AVX2 static INL void sb_q2(const uint8_t *p, const BlockQ8_K *const *X, int64_t s, const int T, __m256i *ai,
                           __m256i *mn, float *d, float *dmin) {
    const BlockQ2_K *b = (const BlockQ2_K *)p;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i s8 = _mm_loadu_si128((const __m128i *)b->scales), l4 = _mm_set1_epi8(0x0F);
    const Sc16 sp = sc16_split(_mm256_cvtepu8_epi16(_mm_and_si128(s8, l4)));
    *mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), l4));
    UNROLL
    for (int n = 0; n < 2; n++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * n));
        UNROLL
        for (int k = 0; k < 4; k++)
            kchunk(_mm256_and_si256(_mm256_srli_epi16(v, 2 * k), m3), sc16_chunk(&sp, 4 * n + k), X, s, 4 * n + k, T, ai);
    }
    *d = H2FV(b->d), *dmin = H2FV(b->dmin);
}

static INL size_t k_size(uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q2_K: return sizeof(BlockQ2_K);
    case GGML_TYPE_Q3_K: return sizeof(BlockQ3_K);
    case GGML_TYPE_Q4_K: return sizeof(BlockQ4_K);
    case GGML_TYPE_Q5_K: return sizeof(BlockQ5_K);
    default: return sizeof(BlockQ6_K);
    }
}

/* One weight row against T activation rows; res[t]. */
AVX2 static INL void row_k2(const uint32_t type, const uint8_t *w, const BlockQ8_K *const *X, int64_t nsb, const int T,
                            size_t pf, float *res) {
    const size_t sz = k_size(type);
    __m256 f = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *p = w + (size_t)s * sz;
        for (size_t i = 0; i < sz; i += 64) _mm_prefetch((const char *)p + pf + i, PREFETCH_HINT);
        __m256i ai[K2_MAX_T], mn;
        float d, dmin;
        for (int t = 0; t < T; t++) ai[t] = _mm256_setzero_si256();
        switch (type) {
        case GGML_TYPE_Q4_K: sb_q45(p, false, X, s, T, ai, &mn, &d, &dmin); break;
        case GGML_TYPE_Q5_K: sb_q45(p, true, X, s, T, ai, &mn, &d, &dmin); break;
        case GGML_TYPE_Q6_K: sb_q6(p, X, s, T, ai, &mn, &d, &dmin); break;
        case GGML_TYPE_Q3_K: sb_q3(p, X, s, T, ai, &mn, &d, &dmin); break;
        default: sb_q2(p, X, s, T, ai, &mn, &d, &dmin); break;
        }
        f = ksb_float(ai, mn, d, dmin, X, s, T, f);
    }
    kres(f, T, res);
}

/* One token against R weight rows at once (generation with one token, the
 * common case): the float steps of the R rows share one vector, as tokens
 * do in ksb_float (red4 puts row r's A0 in lane r and A1 in lane 4 + r, the
 * scales d_r * dx lane by lane), so the reduction, converts and fmas of a
 * super-block serve R rows, and the activation chunk and sums are read once
 * for them. Every lane sees the same operations as row_k2's T = 1 path
 * (integer sums are exact in any order; fma by d*dx, fnmadd by dmin*dx, then
 * lane + lane 4), so each row's result is bit for bit the same. */
/* The super-block scales d (and dmin) of R rows (p: row 0's block, the
 * others wrb bytes on) in lane r, as rows_k2_t1 wants them: 4 rows r, 2
 * rows r0 r1 r0 r1, 1 row broadcast; converted together (F16C, exact as
 * H2FV). Types without dmin give d for both. */
AVX2 static INL void kd_rows(const uint32_t type, const uint8_t *p, size_t wrb, const int R, __m128 *dv, __m128 *mv) {
    const bool has_min = type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K;
    const size_t off = type == GGML_TYPE_Q2_K ? offsetof(BlockQ2_K, d)
                       : type == GGML_TYPE_Q3_K ? offsetof(BlockQ3_K, d)
                       : type == GGML_TYPE_Q6_K ? offsetof(BlockQ6_K, d)
                                                : 0;
    if (has_min) { /* d, dmin adjacent: one dword per row */
        uint32_t u[K2_MAX_T];
        for (int r = 0; r < R; r++) memcpy(&u[r], p + (size_t)r * wrb + off, 4);
        __m128i h = _mm_cvtsi32_si128((int)u[0]);
        if (R >= 2) h = _mm_insert_epi32(h, (int)u[1], 1);
        if (R == 4) h = _mm_insert_epi32(_mm_insert_epi32(h, (int)u[2], 2), (int)u[3], 3);
        const __m256 f = _mm256_cvtph_ps(h); /* d0 m0 d1 m1 d2 m2 d3 m3 */
        const __m256i ix = R == 4   ? _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)
                           : R == 2 ? _mm256_setr_epi32(0, 2, 0, 2, 1, 3, 1, 3)
                                    : _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
        const __m256 g = _mm256_permutevar8x32_ps(f, ix);
        *dv = _mm256_castps256_ps128(g), *mv = _mm256_extractf128_ps(g, 1);
        return;
    }
    uint16_t u[K2_MAX_T];
    for (int r = 0; r < R; r++) memcpy(&u[r], p + (size_t)r * wrb + off, 2);
    __m128i h = _mm_cvtsi32_si128(u[0]);
    if (R >= 2) h = _mm_insert_epi16(h, u[1], 1);
    if (R == 4) h = _mm_insert_epi16(_mm_insert_epi16(h, u[2], 2), u[3], 3);
    __m128 f = _mm_cvtph_ps(h);
    if (R == 2) f = _mm_shuffle_ps(f, f, 0x44); /* d0 d1 d0 d1 */
    if (R == 1) f = _mm_shuffle_ps(f, f, 0);
    *dv = *mv = f;
}

AVX2 static INL void rows_k2_t1(const uint32_t type, const uint8_t *w, size_t wrb, const BlockQ8_K *x, int64_t nsb,
                                const int R, float *res) {
    const size_t sz = k_size(type), pf = row_prefetch((size_t)nsb * sz, wrb);
    const BlockQ8_K *const X[1] = {x};
    __m256 f = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        __m256i ai[K2_MAX_T], mn[K2_MAX_T], im[K2_MAX_T];
        float d, dmin; /* unused: kd_rows converts every row's at once */
        UNROLL
        for (int r = 0; r < R; r++) {
            const uint8_t *p = w + (size_t)r * wrb + (size_t)s * sz;
            for (size_t i = 0; i < sz; i += 64) _mm_prefetch((const char *)p + pf + i, PREFETCH_HINT);
            ai[r] = _mm256_setzero_si256();
            switch (type) {
            case GGML_TYPE_Q4_K: sb_q45(p, false, X, s, 1, &ai[r], &mn[r], &d, &dmin); break;
            case GGML_TYPE_Q5_K: sb_q45(p, true, X, s, 1, &ai[r], &mn[r], &d, &dmin); break;
            case GGML_TYPE_Q6_K: sb_q6(p, X, s, 1, &ai[r], &mn[r], &d, &dmin); break;
            case GGML_TYPE_Q3_K: sb_q3(p, X, s, 1, &ai[r], &mn[r], &d, &dmin); break;
            default: sb_q2(p, X, s, 1, &ai[r], &mn[r], &d, &dmin); break;
            }
        }
        const __m256i bs = _mm256_loadu_si256((const __m256i *)x[s].bsums);
        UNROLL
        for (int r = 0; r < R; r++) im[r] = _mm256_madd_epi16(mn[r], bs);
        __m128 dv, mv;
        kd_rows(type, w + (size_t)s * sz, wrb, R, &dv, &mv);
        const __m256 dx = _mm256_set1_ps(x[s].d);
        f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(red4(ai, R)), _mm256_mul_ps(_mm256_set_m128(dv, dv), dx), f);
        f = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(red4(im, R)), _mm256_mul_ps(_mm256_set_m128(mv, mv), dx), f);
    }
    kres(f, R, res);
}

/* Every row of w (nr rows, wrb bytes apart, nsb super-blocks each) against
 * the n_tok activation rows xs[t]: out[t * os + r]. */
#define K2_ROWS_FN(SUFFIX, TYPE)                                                                          \
    AVX2 static void k2_rows_##SUFFIX(const uint8_t *w, size_t wrb, int64_t nr, const void *const *xs, int n_tok, \
                                      int64_t nsb, float *out, int64_t os) {                              \
        if (n_tok == 1) {                                                                                 \
            const BlockQ8_K *x = (const BlockQ8_K *)xs[0];                                                \
            int64_t r = 0;                                                                                \
            for (; r + 4 <= nr; r += 4) rows_k2_t1(TYPE, w + (size_t)r * wrb, wrb, x, nsb, 4, out + r);   \
            if (r + 2 <= nr) rows_k2_t1(TYPE, w + (size_t)r * wrb, wrb, x, nsb, 2, out + r), r += 2;      \
            if (r < nr) rows_k2_t1(TYPE, w + (size_t)r * wrb, wrb, x, nsb, 1, out + r);                   \
            return;                                                                                       \
        }                                                                                                 \
        const size_t pf = row_prefetch((size_t)nsb * k_size(TYPE), wrb);                                  \
        for (int64_t r = 0; r < nr; r++) {                                                                \
            const uint8_t *wr = w + (size_t)r * wrb;                                                      \
            for (int t = 0; t < n_tok;) {                                                                 \
                const int T = n_tok - t >= 4 ? 4 : n_tok - t >= 2 ? 2 : 1;                                \
                const BlockQ8_K *X[K2_MAX_T];                                                             \
                for (int i = 0; i < K2_MAX_T; i++) X[i] = (const BlockQ8_K *)xs[t + (i < T ? i : T - 1)];  \
                float res[K2_MAX_T];                                                                      \
                if (T == 4) row_k2(TYPE, wr, X, nsb, 4, pf, res);                                             \
                else if (T == 2) row_k2(TYPE, wr, X, nsb, 2, pf, res);                                        \
                else row_k2(TYPE, wr, X, nsb, 1, pf, res);                                                    \
                for (int j = 0; j < T; j++) out[(int64_t)(t + j) * os + r] = res[j];                      \
                t += T;                                                                                   \
            }                                                                                             \
        }                                                                                                 \
    }
K2_ROWS_FN(q2_K, GGML_TYPE_Q2_K)
K2_ROWS_FN(q3_K, GGML_TYPE_Q3_K)
K2_ROWS_FN(q4_K, GGML_TYPE_Q4_K)
K2_ROWS_FN(q5_K, GGML_TYPE_Q5_K)
K2_ROWS_FN(q6_K, GGML_TYPE_Q6_K)

/* Prompt path: a tile of R weight rows (canonical form, unpacked once per
 * row group by quant_x86.c) x T activation rows over whole rows, the same
 * arithmetic as row_k2 above; 2 x 4 pairs keep 8 int32 accumulators, two
 * rows' levels and scales and one activation vector in the 16 ymm
 * registers. */
/* The 2 x 4 tile's step over one 32-value chunk, in assembly: GCC keeps
 * neither the scale words nor the activations in registers here (it
 * re-reads them as memory operands of each maddubs / madd, 18 loads per
 * chunk, and spills accumulators), which bounds the tile by its loads. This
 * is the same maddubs, madd, add per pair as the C code, with 14 of the 16
 * ymm registers: 8 accumulators, two rows' levels and scales, the
 * activation and a product. a: row 0's tokens 0-3, then row 1's. */
#define K2_PAIR(A, X) \
    "vpmaddubsw %[" #X "], %[q0], %[p]\n\tvpmaddwd %[s0], %[p], %[p]\n\tvpaddd %[p], %[" #A "0], %[" #A "0]\n\t" \
    "vpmaddubsw %[" #X "], %[q1], %[p]\n\tvpmaddwd %[s1], %[p], %[p]\n\tvpaddd %[p], %[" #A "1], %[" #A "1]\n\t"
/* ai += the chunk k products of rows c0, c1 (A0-A3: row 0's tokens 0-3; B0-B3 row 1's) */
#define CHUNK_2X4(W0_, W1_, X_, S_, K_, A0, A1, A2, A3, B0, B1, B2, B3)                                                 \
    do {                                                                                                        \
        __m256i q0_, q1_, s0_, s1_, x_, p_;                                                                     \
        __asm__("vmovdqa %[mq0], %[q0]\n\tvmovdqa %[mq1], %[q1]\n\tvmovdqa %[ms0], %[s0]\n\t"                  \
                "vmovdqa %[ms1], %[s1]\n\t"                                                                     \
                "vmovdqu %[mx0], %[x]\n\t" K2_PAIR(a, x) "vmovdqu %[mx1], %[x]\n\t" K2_PAIR(b, x)               \
                "vmovdqu %[mx2], %[x]\n\t" K2_PAIR(c, x) "vmovdqu %[mx3], %[x]\n\t" K2_PAIR(d, x)               \
                : [a0] "+x"(A0), [b0] "+x"(A1), [c0] "+x"(A2), [d0] "+x"(A3), [a1] "+x"(B0), [b1] "+x"(B1),      \
                  [c1] "+x"(B2), [d1] "+x"(B3), [q0] "=&x"(q0_), [q1] "=&x"(q1_), [s0] "=&x"(s0_),              \
                  [s1] "=&x"(s1_), [x] "=&x"(x_), [p] "=&x"(p_)                                                 \
                : [mq0] "m"(*(const __m256i *)((W0_)->q + 32 * (K_))),                                            \
                  [mq1] "m"(*(const __m256i *)((W1_)->q + 32 * (K_))),                                            \
                  [ms0] "m"(*(const __m256i *)((W0_)->scv + 16 * (K_))),                                          \
                  [ms1] "m"(*(const __m256i *)((W1_)->scv + 16 * (K_))),                                          \
                  [mx0] "m"(*(const __m256i *)((X_)[0][S_].qs + 32 * (K_))),                                       \
                  [mx1] "m"(*(const __m256i *)((X_)[1][S_].qs + 32 * (K_))),                                       \
                  [mx2] "m"(*(const __m256i *)((X_)[2][S_].qs + 32 * (K_))),                                       \
                  [mx3] "m"(*(const __m256i *)((X_)[3][S_].qs + 32 * (K_))));                                      \
    } while (0)

AVX2 static INL void tile_k2(const CanonK *const *W, const BlockQ8_K *const *X, int64_t nsb, const int R, const int T,
                             float *res) {
    __m256 f[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t s = 0; s < nsb; s++) {
        const CanonK *C[2] = {W[0] + s, W[R - 1] + s};
        __m256i ai[2][K2_MAX_T];
        UNROLL
        for (int r = 0; r < R; r++)
            UNROLL
            for (int t = 0; t < T; t++) ai[r][t] = _mm256_setzero_si256();
        if (R == 2 && T == 4) {
            __m256i a0 = ai[0][0], a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            UNROLL
            for (int k = 0; k < 8; k++) CHUNK_2X4(C[0], C[1], X, s, k, a0, a1, a2, a3, b0, b1, b2, b3);
            ai[0][0] = a0, ai[0][1] = a1, ai[0][2] = a2, ai[0][3] = a3;
            ai[1][0] = b0, ai[1][1] = b1, ai[1][2] = b2, ai[1][3] = b3;
        } else
        _Pragma("GCC unroll 2")
        for (int k = 0; k < 8; k++) {
            __m256i q[2], sv[2];
            UNROLL
            for (int r = 0; r < R; r++) {
                q[r] = _mm256_load_si256((const __m256i *)(C[r]->q + 32 * k));
                sv[r] = _mm256_load_si256((const __m256i *)(C[r]->scv + 16 * k));
            }
            UNROLL
            for (int t = 0; t < T; t++) {
                const __m256i x = _mm256_loadu_si256((const __m256i *)(X[t][s].qs + 32 * k));
                UNROLL
                for (int r = 0; r < R; r++)
                    ai[r][t] = _mm256_add_epi32(ai[r][t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[r], x), sv[r]));
            }
        }
        UNROLL
        for (int r = 0; r < R; r++)
            f[r] = ksb_float(ai[r], _mm256_loadu_si256((const __m256i *)C[r]->mn), C[r]->d, C[r]->dmin, X, s, T, f[r]);
    }
    UNROLL
    for (int r = 0; r < R; r++) kres(f[r], T, res + r * T);
}

AVX2 static void k2_group(const CanonK *const *W, int nr, const BlockQ8_K *const *X, int T, int64_t nsb, float *out,
                          int64_t os) {
    float res[2 * K2_MAX_T];
    for (int r = 0; r < nr; r += 2) {
        const int R = nr - r >= 2 ? 2 : 1;
        if (R == 2) {
            if (T == 4) tile_k2(W + r, X, nsb, 2, 4, res);
            else if (T == 2) tile_k2(W + r, X, nsb, 2, 2, res);
            else tile_k2(W + r, X, nsb, 2, 1, res);
        } else {
            if (T == 4) tile_k2(W + r, X, nsb, 1, 4, res);
            else if (T == 2) tile_k2(W + r, X, nsb, 1, 2, res);
            else tile_k2(W + r, X, nsb, 1, 1, res);
        }
        for (int i = 0; i < R; i++)
            for (int j = 0; j < T; j++) out[(int64_t)j * os + r + i] = res[i * T + j];
    }
}

void quant_x86_k2_group(const CanonK *const *W, int nr, const BlockQ8_K *const *X, int T, int64_t nsb, float *out,
                        int64_t os) {
    k2_group(W, nr, X, T, nsb, out, os);
}

void quant_x86_k2_dec(uint32_t type, const uint8_t *w, size_t wrb, int64_t nr, const void *const *xs, int n_tok,
                      int64_t nsb, float *out, int64_t os) {
    switch (type) {
    case GGML_TYPE_Q2_K: k2_rows_q2_K(w, wrb, nr, xs, n_tok, nsb, out, os); break;
    case GGML_TYPE_Q3_K: k2_rows_q3_K(w, wrb, nr, xs, n_tok, nsb, out, os); break;
    case GGML_TYPE_Q4_K: k2_rows_q4_K(w, wrb, nr, xs, n_tok, nsb, out, os); break;
    case GGML_TYPE_Q5_K: k2_rows_q5_K(w, wrb, nr, xs, n_tok, nsb, out, os); break;
    default: k2_rows_q6_K(w, wrb, nr, xs, n_tok, nsb, out, os); break;
    }
}

#endif /* x86-64 */
