/* quant_x86_dec512.c - the AVX-512 VNNI generation (decode) kernels: a few
 * activation rows (1..DEC_MAX_TOK-1 tokens) against weight rows streamed
 * once from memory, for the 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0) and for Q4_K, Q5_K, Q6_K (second half of the file).
 *
 * It owns nothing but these kernels; quant_x86.c's generation drivers call
 * them (quant_x86_dec_a_avx512, quant_x86_dec_k_avx512) and keep the prompt
 * path and the other levels. For the 32-value types the float arithmetic
 * is exactly that of quant_x86.c's "eight-block" AVX-512 kernels, so both
 * paths stay bit-identical: per group of eight 32-value blocks, 16 int32
 * lanes, lane 2p+h belonging to block B(p) (B = 0 2 1 3 4 6 5 7) and
 * holding the exact integer sum of the 16 products at bytes 8w+4h..8w+4h+3
 * (w = 0..3) of that block; then acc = fma(float(lane), dw*dx, acc) per
 * lane, one _mm512_reduce_add_ps at the end, plus the Q8_1 offset terms
 * summed in scalar block order. Only the way the exact integers are made
 * differs: the eight-block kernels transpose the weight bytes (split8) and
 * start each lane from -128 * (sum of its weight levels); this one keeps
 * the weights in their natural order (two blocks per vector, one insert),
 * multiplies them as unsigned (level + 128) by the signed activations,
 * folds the four vectors' int32 results into the lane order with two
 * unpack/shuffle levels, and subtracts 128 * (sum of the lane's
 * activations), computed once per activation row. Per 256 weight values
 * and token that is 4 vpdpbusd and 6 shuffles instead of 8 vpdpbusd and 12
 * shuffles (the gather of the eight block scales stays), which is what
 * matters when one token reads each weight row once. */
#include "quant_x86.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "quant_x86_blocks.h"
#include "quant_x86_defs.h"

#define UNROLL _Pragma("GCC unroll 8")
#define DEC_T_MAX 4                 /* tokens per pass over a weight row */
#define DEC_STACK_BYTES (96 * 1024) /* activation scratch on the stack */

/* One activation row prepared for this kernel, per group of 8 blocks:
 * v[6g..6g+3] the signed levels of blocks 8g+2i, 8g+2i+1 (natural order),
 * v[6g+4] 128 * each lane's activation sum (int32), v[6g+5] each lane's
 * block scale (f32); s[8g..8g+7] the Q8_1 block sums (else 0). */
typedef struct {
    const __m512i *v;
    const float *s;
} XDec;

static size_t pad64(size_t n) { return (n + 63) & ~(size_t)63; }
static size_t xdec_bytes(int64_t ng) { return (size_t)ng * 384 + pad64((size_t)ng * 32); }

/* the int32 lanes of the eight-block order from four vectors of two blocks
 * each (blocks 2i, 2i+1 of the group in D[i], natural byte order) */
AVX512 static INL __m512i fold8(__m512i d0, __m512i d1, __m512i d2, __m512i d3) {
    const __m512i p = _mm512_add_epi32(_mm512_unpacklo_epi64(d0, d1), _mm512_unpackhi_epi64(d0, d1));
    const __m512i q = _mm512_add_epi32(_mm512_unpacklo_epi64(d2, d3), _mm512_unpackhi_epi64(d2, d3));
    return _mm512_add_epi32(_mm512_shuffle_i64x2(p, q, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i64x2(p, q, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* the scale of each lane's block, from the 8 block scales */
AVX512 static INL __m512 lanes8(__m256 d) {
    return _mm512_permutexvar_ps(_mm512_set_epi32(7, 7, 5, 5, 6, 6, 4, 4, 3, 3, 1, 1, 2, 2, 0, 0),
                                 _mm512_castps256_ps512(d));
}

/* 32 values from 16 bytes of nibbles: low nibbles first, then high. */
AVX512 static INL __m256i nib32(const uint8_t *qs) {
    const __m128i v = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
}

/* The signed levels of one block (quant.c's unpack_a_block) and its scale d
 * and offset m. */
AVX512 static INL __m256i levels(uint32_t type, const uint8_t *p, float *d, float *m) {
    switch (type) {
    case GGML_TYPE_Q8_0:
        *d = H2FV(((const BlockQ8_0 *)p)->d), *m = 0.0f;
        return _mm256_loadu_si256((const __m256i *)(p + 2));
    case GGML_TYPE_Q4_0:
        *d = H2FV(((const BlockQ4_0 *)p)->d), *m = 0.0f;
        return _mm256_sub_epi8(nib32(p + 2), _mm256_set1_epi8(8));
    case GGML_TYPE_Q4_1:
        *d = H2FV(((const BlockQ4_1 *)p)->d), *m = H2FV(((const BlockQ4_1 *)p)->m);
        return nib32(p + 4);
    case GGML_TYPE_Q5_0: {
        *d = H2FV(((const BlockQ5_0 *)p)->d), *m = 0.0f;
        const __m256i hb = _mm256_maskz_mov_epi8(load_u32le(p + 2), _mm256_set1_epi8(0x10));
        return _mm256_sub_epi8(_mm256_or_si256(nib32(p + 6), hb), _mm256_set1_epi8(16));
    }
    default: { /* Q5_1 */
        *d = H2FV(((const BlockQ5_1 *)p)->d), *m = H2FV(((const BlockQ5_1 *)p)->m);
        const __m256i hb = _mm256_maskz_mov_epi8(load_u32le(p + 4), _mm256_set1_epi8(0x10));
        return _mm256_or_si256(nib32(p + 8), hb);
    }
    }
}

/* One activation row (Q8_0 or Q8_1 blocks) in the XDec form at buf. */
AVX512 static void prep_xdec(bool q81, const uint8_t *xrow, int64_t nb, uint8_t *buf, XDec *a) {
    const int64_t ng = (nb + 7) / 8;
    __m512i *v = (__m512i *)buf;
    float *s = (float *)(buf + (size_t)ng * 384);
    const __m512i one = _mm512_set1_epi8(1);
    for (int64_t g = 0; g < ng; g++) {
        __m256i q[8];
        float d[8];
        load_x8_group(q81, xrow, nb, g, q, d, s + 8 * g);
        __m512i dd[4];
        for (int i = 0; i < 4; i++) {
            const __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(q[2 * i]), q[2 * i + 1], 1);
            _mm512_store_si512(v + 6 * g + i, x);
            dd[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), one, x);
        }
        _mm512_store_si512(v + 6 * g + 4, _mm512_slli_epi32(fold8(dd[0], dd[1], dd[2], dd[3]), 7));
        _mm512_store_ps((float *)(v + 6 * g + 5), lanes8(_mm256_loadu_ps(d)));
    }
    a->v = v, a->s = s;
}

/* The group of nbg (1..8) blocks at p: each block's signed levels in q,
 * the eight scales (the missing blocks' 0), and with has_m the eight
 * offsets in m. Only the nbg blocks are read: a row's last group may end
 * where the next rank's columns (or the matrix) begin. */
AVX512 static INL void group_levels(uint32_t type, const uint8_t *p, int nbg, bool has_m, __m256i *q, __m256 *dvec,
                                    float *m) {
    const size_t sz = type_info(type)->type_size;
    float dd[8], dm[8];
    if (nbg == 8) {
        UNROLL
        for (int i = 0; i < 8; i++) q[i] = levels(type, p + (size_t)i * sz, &dd[i], &dm[i]); /* scales: below */
    } else {
        UNROLL
        for (int i = 0; i < 8; i++) q[i] = i < nbg ? levels(type, p + (size_t)i * sz, &dd[i], &dm[i]) : _mm256_setzero_si256();
    }
    /* the (d, m) fp16 pairs in one gather: every block starts with d (and Q4_1 / Q5_1: m) */
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)sz));
    const __m256i dm32 =
        nbg == 8 ? _mm256_i32gather_epi32((const int *)p, idx, 1)
                 : _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)p, idx,
                                               _mm256_cmpgt_epi32(_mm256_set1_epi32(nbg), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), 1);
    *dvec = _mm256_cvtph_ps(_mm256_cvtepi32_epi16(dm32));
    if (has_m) _mm256_storeu_ps(m, _mm256_cvtph_ps(_mm256_cvtepi32_epi16(_mm256_srli_epi32(dm32, 16))));
}

/* One group of nbg blocks (q, scales dvec, offsets m) against T activation
 * rows. A short group (a row's tail: a column slice's rows, dist/, need not
 * be whole groups) skips the vectors whose blocks are all missing, and
 * gives their lanes the zero every product of a missing block would: the
 * activations are zero there too (load_x8_group), so each lane is the same
 * exact integer as a whole group's, and the results are those of padding
 * the row with zero blocks, bit for bit. */
AVX512 static INL void dec_group(const __m256i *q, __m256 dvec, const float *m, const XDec *X, int64_t g, int nbg,
                                 bool has_m, const int T, __m512 *acc, float *ms) {
    const __m512i k80 = _mm512_set1_epi8((char)0x80), z = _mm512_setzero_si512();
    __m512i u[4];
    UNROLL
    for (int i = 0; i < 4; i++)
        u[i] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(q[2 * i]), q[2 * i + 1], 1), k80);
    const __m512 dv = lanes8(dvec);
    UNROLL
    for (int t = 0; t < T; t++) {
        const __m512i *xv = X[t].v + 6 * g;
        __m512i dd[4];
        if (nbg == 8) {
            UNROLL
            for (int i = 0; i < 4; i++) dd[i] = _mm512_dpbusd_epi32(z, u[i], _mm512_load_si512(xv + i));
        } else {
            UNROLL
            for (int i = 0; i < 4; i++) dd[i] = 2 * i < nbg ? _mm512_dpbusd_epi32(z, u[i], _mm512_load_si512(xv + i)) : z;
        }
        const __m512i isum = _mm512_sub_epi32(fold8(dd[0], dd[1], dd[2], dd[3]), _mm512_load_si512(xv + 4));
        const __m512 dx = _mm512_load_ps((const float *)(xv + 5));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dv, dx), acc[t]);
        if (has_m)
            for (int i = 0; i < 8; i++) ms[t] += m[i] * X[t].s[8 * g + i];
    }
}

/* One weight row against T activation rows: res[t]. pf: how far ahead of
 * each block the weights are prefetched (row_prefetch). */
AVX512 static INL void dec_row(uint32_t type, const uint8_t *w, const XDec *X, int64_t nb, bool has_m, const int T,
                               size_t pf, float *res) {
    const size_t sz = type_info(type)->type_size;
    __m512 acc[DEC_T_MAX];
    float ms[DEC_T_MAX];
    UNROLL
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps(), ms[t] = 0.0f;
    int64_t g = 0;
    for (; g < nb / 8; g++) {
        const uint8_t *p = w + (size_t)(8 * g) * sz;
        for (size_t i = 0; i < 8 * sz; i += 64) _mm_prefetch((const char *)p + pf + i, PREFETCH_HINT);
        __m256i q[8];
        __m256 dvec;
        float m[8];
        group_levels(type, p, 8, has_m, q, &dvec, m);
        dec_group(q, dvec, m, X, g, 8, has_m, T, acc, ms);
    }
    const int nbg = (int)(nb - 8 * g);
    if (nbg > 0) { /* the row's last, short group */
        const uint8_t *p = w + (size_t)(8 * g) * sz;
        for (size_t i = 0; i < (size_t)nbg * sz; i += 64) _mm_prefetch((const char *)p + pf + i, PREFETCH_HINT);
        __m256i q[8];
        __m256 dvec;
        float m[8];
        group_levels(type, p, nbg, has_m, q, &dvec, m);
        dec_group(q, dvec, m, X, g, nbg, has_m, T, acc, ms);
    }
    UNROLL
    for (int t = 0; t < T; t++) res[t] = _mm512_reduce_add_ps(acc[t]) + ms[t];
}

/* Every row of [0, nr), in order, against the n_tok activation rows,
 * DEC_T_MAX at a time while the row is in L1. */
AVX512 static INL void dec_rows(uint32_t type, const uint8_t *w, size_t wrb, int64_t nr, const XDec *X, int n_tok,
                                int64_t nb, bool has_m, float *out, int64_t os) {
    const size_t pf = row_prefetch((size_t)nb * type_info(type)->type_size, wrb);
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *wr = w + (size_t)r * wrb;
        for (int t = 0; t < n_tok;) {
            const int T = n_tok - t >= 4 ? 4 : n_tok - t >= 2 ? 2 : 1;
            float res[DEC_T_MAX];
            if (T == 4) dec_row(type, wr, X + t, nb, has_m, 4, pf, res);
            else if (T == 2) dec_row(type, wr, X + t, nb, has_m, 2, pf, res);
            else dec_row(type, wr, X + t, nb, has_m, 1, pf, res);
            for (int j = 0; j < T; j++) out[(int64_t)(t + j) * os + r] = res[j];
            t += T;
        }
    }
}

/* one function per type, so each is compiled with its type constant */
#define DEC_FN(SUFFIX, TYPE, HAS_M)                                                                            \
    AVX512 static void dec_##SUFFIX(const uint8_t *w, size_t wrb, int64_t nr, const XDec *X, int n_tok, int64_t nb, \
                                    float *out, int64_t os) {                                                  \
        dec_rows(TYPE, w, wrb, nr, X, n_tok, nb, HAS_M, out, os);                                              \
    }
DEC_FN(q4_0, GGML_TYPE_Q4_0, false)
DEC_FN(q4_1, GGML_TYPE_Q4_1, true)
DEC_FN(q5_0, GGML_TYPE_Q5_0, false)
DEC_FN(q5_1, GGML_TYPE_Q5_1, true)
DEC_FN(q8_0, GGML_TYPE_Q8_0, false)

/* ---- K-quants (Q4_K, Q5_K, Q6_K) ------------------------------------------
 *
 * The float steps of quant_x86.c's k_sb_avx512, per super-block of 256
 * values and (row, token) pair: 16 int32 lanes, lane i the exact sum over
 * k = 0..3 of sc * q * qx at values 64k + 4i .. 64k + 4i + 3 (sc the
 * sub-block scale of those values); acc = fma(float(lanes), d*dx, acc);
 * then acc -= float(mins . bsums) * (dmin*dx), the vector of mins terms
 * zero in lanes 8..15 (0 * x is subtracted there too: that can turn a -0
 * lane into +0, so it is kept rather than masked). Each super-block is decoded
 * straight into registers (levels of 64 values per register, each
 * register's scale lanes); up to four tokens per pass over a row. */
static const int16_t KI32[32] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
static const int16_t KI16[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
static const int16_t KIMN[16] = {8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15};

AVX512 static INL void load_k(uint32_t type, const uint8_t *p, __m512i *q, __m512i *sv, __m256i *mn, float *d,
                              float *dmin) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (type == GGML_TYPE_Q6_K) {
        const BlockQ6_K *b = (const BlockQ6_K *)p;
        /* high bits 2k..2k+1 of qh to bits 4-5 of the level: (qh << 4-2k) & 0x30 for
         * k = 0, 1 and (qh >> 2k-4) & 0x30 for k = 2, 3, merged by a bit-select */
        const __m512i m30 = _mm512_set1_epi8(0x30);
        const __m512i l01 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
        const __m512i r23 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
        for (int n = 0; n < 2; n++) {
            const __m512i v = _mm512_loadu_si512((const void *)(b->ql + 64 * n));
            const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * n)));
            const __m512i h01 = _mm512_and_si512(_mm512_sllv_epi16(h, l01), m30);
            const __m512i h23 = _mm512_and_si512(_mm512_srlv_epi16(h, r23), m30);
            q[2 * n] = _mm512_ternarylogic_epi32(m4, v, h01, 0xCA); /* m4 ? v : h01 */
            q[2 * n + 1] = _mm512_ternarylogic_epi32(m4, _mm512_srli_epi16(v, 4), h23, 0xCA);
        }
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
        const __m512i scz = _mm512_castsi256_si512(sc);
        const __m512i base = _mm512_loadu_si512((const void *)KI16);
        for (int k = 0; k < 4; k++)
            sv[k] = _mm512_permutexvar_epi16(_mm512_add_epi16(base, _mm512_set1_epi16((short)(4 * k))), scz);
        *mn = _mm256_slli_epi16(sc, 5);
        *d = *dmin = H2FV(b->d);
        return;
    }
    /* Q4_K / Q5_K */
    const bool five = type == GGML_TYPE_Q5_K;
    const uint8_t *scales = p + 4, *qs = p + (five ? 48 : 16);
    for (int j = 0; j < 2; j++) {
        const __m512i v = _mm512_loadu_si512((const void *)(qs + 64 * j));
        const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        q[2 * j] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
        q[2 * j + 1] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
    }
    if (five) {
        const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p + 16)));
        const __m512i s16 = _mm512_set1_epi8(16);
        for (int c = 0; c < 4; c++) {
            const __m512i bits = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * c))),
                                                    _mm256_set1_epi8((char)(2 << (2 * c))), 1);
            q[c] = _mm512_mask_add_epi8(q[c], _mm512_test_epi8_mask(h, bits), q[c], s16);
        }
    }
    /* the eight 6-bit (scale, min) pairs (k4_scale_min) in vector registers: scale j < 4 is s[j] & 63, j >= 4
     * (s[j+4] & 15) | (s[j-4] >> 6) << 4; min j < 4 s[j+4] & 63, j >= 4 (s[j+4] >> 4) | (s[j] >> 6) << 4.
     * lo: the byte giving each result's low bits (the min's high nibble shifted down), hi: the byte giving
     * bits 4-5 (none for j < 4); 16 bytes loaded, the last 4 are levels (unused). Faster here than the
     * scalar bit assembly (+8% Q4_K decode in cache): that competes with the vector ports. */
    const __m128i v = _mm_loadu_si128((const __m128i *)scales);
    const __m128i lo = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i hi = _mm_shuffle_epi8(v, _mm_setr_epi8(-128, -128, -128, -128, 0, 1, 2, 3, -128, -128, -128, -128, 4, 5, 6, 7));
    const __m128i lo4 = _mm_mask_blend_epi8(0xF000, lo, _mm_srli_epi16(lo, 4));
    const __m128i hi2 = _mm_and_si128(_mm_srli_epi16(hi, 2), _mm_set1_epi8(0x30));
    const __m128i sm8 = _mm_ternarylogic_epi32(lo4, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15),
                                               hi2, 0xEA); /* (lo4 & mask) | hi2 */
    const __m256i sm = _mm256_cvtepu8_epi16(sm8); /* sc 0-7, m 8-15 */
    const __m512i smz = _mm512_castsi256_si512(sm);
    const __m512i base = _mm512_loadu_si512((const void *)KI32);
    for (int k = 0; k < 4; k++)
        sv[k] = _mm512_permutexvar_epi16(_mm512_add_epi16(base, _mm512_set1_epi16((short)(2 * k))), smz);
    *mn = _mm256_permutexvar_epi16(_mm256_loadu_si256((const __m256i *)KIMN), sm);
    uint16_t dh, mh;
    memcpy(&dh, p, 2), memcpy(&mh, p + 2, 2);
    *d = H2FV(dh), *dmin = H2FV(mh);
}

AVX512 static INL void dec_k_row(uint32_t type, const uint8_t *w, const BlockQ8_K *const *X, int64_t nsb, const int T,
                                 size_t pf, float *res) {
    const size_t sz = type_info(type)->type_size;
    __m512 acc[DEC_T_MAX];
    UNROLL
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const uint8_t *p = w + (size_t)s * sz;
        for (size_t i = 0; i < sz; i += 64) _mm_prefetch((const char *)p + pf + i, PREFETCH_HINT);
        __m512i q[4], sv[4], ai[DEC_T_MAX];
        __m256i mn;
        float d, dmin;
        load_k(type, p, q, sv, &mn, &d, &dmin);
        UNROLL
        for (int t = 0; t < T; t++) ai[t] = _mm512_setzero_si512();
        UNROLL
        for (int k = 0; k < 4; k++)
            UNROLL
            for (int t = 0; t < T; t++)
                ai[t] = _mm512_dpwssd_epi32(ai[t], _mm512_maddubs_epi16(q[k], _mm512_loadu_si512((const void *)(X[t][s].qs + 64 * k))), sv[k]);
        UNROLL
        for (int t = 0; t < T; t++) {
            const __m256i im = _mm256_madd_epi16(mn, _mm256_loadu_si256((const __m256i *)X[t][s].bsums));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[t]), _mm512_set1_ps(d * X[t][s].d), acc[t]);
            const __m512 fm = _mm512_insertf32x8(_mm512_setzero_ps(), _mm256_cvtepi32_ps(im), 0);
            acc[t] = _mm512_fnmadd_ps(fm, _mm512_set1_ps(dmin * X[t][s].d), acc[t]);
        }
    }
    UNROLL
    for (int t = 0; t < T; t++) res[t] = _mm512_reduce_add_ps(acc[t]);
}

AVX512 static INL void dec_k_rows(uint32_t type, const uint8_t *w, size_t wrb, int64_t nr, const BlockQ8_K *const *X,
                                  int n_tok, int64_t nsb, float *out, int64_t os) {
    const size_t pf = row_prefetch((size_t)nsb * type_info(type)->type_size, wrb);
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *wr = w + (size_t)r * wrb;
        for (int t = 0; t < n_tok;) {
            const int T = n_tok - t >= 4 ? 4 : n_tok - t >= 2 ? 2 : 1;
            float res[DEC_T_MAX];
            if (T == 4) dec_k_row(type, wr, X + t, nsb, 4, pf, res);
            else if (T == 2) dec_k_row(type, wr, X + t, nsb, 2, pf, res);
            else dec_k_row(type, wr, X + t, nsb, 1, pf, res);
            for (int j = 0; j < T; j++) out[(int64_t)(t + j) * os + r] = res[j];
            t += T;
        }
    }
}

#define DEC_K_FN(SUFFIX, TYPE)                                                                                   \
    AVX512 static void dec_##SUFFIX(const uint8_t *w, size_t wrb, int64_t nr, const BlockQ8_K *const *X, int n_tok, \
                                    int64_t nsb, float *out, int64_t os) {                                       \
        dec_k_rows(TYPE, w, wrb, nr, X, n_tok, nsb, out, os);                                                    \
    }
DEC_K_FN(q4_K, GGML_TYPE_Q4_K)
DEC_K_FN(q5_K, GGML_TYPE_Q5_K)
DEC_K_FN(q6_K, GGML_TYPE_Q6_K)

bool quant_x86_dec_k_avx512(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n,
                            int n_tok, float *out, int64_t os, int64_t r0, int64_t r1) {
    if ((type != GGML_TYPE_Q4_K && type != GGML_TYPE_Q5_K && type != GGML_TYPE_Q6_K) || n_tok < 1 || n_tok > 64)
        return false;
    const BlockQ8_K *X[64];
    for (int t = 0; t < n_tok; t++) X[t] = (const BlockQ8_K *)(x + (size_t)t * xrb);
    const uint8_t *w0 = w + (size_t)r0 * wrb;
    prefetch_rows(w0, (size_t)(n / QK_K) * type_info(type)->type_size, wrb, r1 - r0);
    float *o = out + r0;
    if (type == GGML_TYPE_Q4_K) dec_q4_K(w0, wrb, r1 - r0, X, n_tok, n / QK_K, o, os);
    else if (type == GGML_TYPE_Q5_K) dec_q5_K(w0, wrb, r1 - r0, X, n_tok, n / QK_K, o, os);
    else dec_q6_K(w0, wrb, r1 - r0, X, n_tok, n / QK_K, o, os);
    return true;
}

bool quant_x86_dec_a_avx512(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n,
                            int n_tok, float *out, int64_t os, int64_t r0, int64_t r1) {
    if (!is_a_type(type) || n_tok < 1 || n_tok > 64) return false;
    const int64_t nb = n / 32, ng = (nb + 7) / 8;
    const bool q81 = vec_dot_type(type) == GGML_TYPE_Q8_1;
    const size_t xb = xdec_bytes(ng);
    _Alignas(64) uint8_t stack[DEC_STACK_BYTES];
    uint8_t *buf = stack, *heap = NULL;
    if ((size_t)n_tok * xb > sizeof stack) {
        heap = aligned_alloc(64, pad64((size_t)n_tok * xb));
        if (!heap) return false; /* the caller's path (same results) */
        buf = heap;
    }
    XDec X[64];
    for (int t = 0; t < n_tok; t++) prep_xdec(q81, x + (size_t)t * xrb, nb, buf + (size_t)t * xb, &X[t]);
    const uint8_t *w0 = w + (size_t)r0 * wrb;
    prefetch_rows(w0, (size_t)nb * type_info(type)->type_size, wrb, r1 - r0);
    float *o = out + r0;
    switch (type) {
    case GGML_TYPE_Q4_0: dec_q4_0(w0, wrb, r1 - r0, X, n_tok, nb, o, os); break;
    case GGML_TYPE_Q4_1: dec_q4_1(w0, wrb, r1 - r0, X, n_tok, nb, o, os); break;
    case GGML_TYPE_Q5_0: dec_q5_0(w0, wrb, r1 - r0, X, n_tok, nb, o, os); break;
    case GGML_TYPE_Q5_1: dec_q5_1(w0, wrb, r1 - r0, X, n_tok, nb, o, os); break;
    default: dec_q8_0(w0, wrb, r1 - r0, X, n_tok, nb, o, os); break;
    }
    free(heap);
    return true;
}

#endif /* x86-64 */
