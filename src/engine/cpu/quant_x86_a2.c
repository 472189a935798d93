/* quant_x86_a2.c - the AVX2 (no AVX-512) kernels for the 32-value block
 * types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): the prompt path (a GEMM blocked in
 * L1, register tiles of 6 weight rows x 2 tokens) and the generation path
 * (weight rows streamed once, decoded in registers). quant_x86.c's
 * matrix driver calls them at SIMD_AVX2 (quant_x86_a2_pre, quant_x86_a2_dec).
 *
 * The products are 16-bit: the levels of weights and activations are
 * sign-extended to int16 and multiplied with vpmaddwd (two products per
 * int32 lane). That is exact for every byte either side may hold (a Q8_0
 * weight or activation of -128 included), and on the CPUs measured it is
 * also the cheapest exact form: maddubs needs one unsigned operand, so a
 * signed x signed product costs a sign instruction per (row, token) pair
 * on top of maddubs + madd, while here it is one madd and one add per 16
 * products (the widening is paid once per weight row per call, and once
 * per activation row).
 *
 * The arithmetic, which both paths share bit for bit: per (weight row,
 * token) pair and group of eight blocks (256 values), one int32 lane per
 * block holds the exact integer dot product of that block (lane j: block
 * 8g + j); then, in float, per lane
 *   f = fma(float(sum), dw * dx, f)    and, for Q4_1 / Q5_1,
 *   f = fma(m, s, f)                   (the weight offset times the Q8_1
 *                                       activation block's d * sum)
 * and the pair's result is hsum8(f). A group past the row's end holds
 * zero blocks (level, scale and offset 0). The two paths differ only in
 * how they get the exact integers: the prompt path stores weights and
 * activations transposed (vector k of a group holds two values of each of
 * blocks 0-7, in some fixed order: store_levels), one block per lane, so
 * the int32 accumulator of 16 madds is the block sums directly;
 * the generation path multiplies natural rows (one block per two vectors)
 * and folds eight blocks' partial sums into the same lanes with a tree of
 * horizontal adds.
 *
 * Generation with activations of -127..127 (grok.c's quantizer; checked
 * per call) uses byte products instead, exact for every weight byte: the
 * xor form (dec_row_x: signed levels whose prepared activations fit in L1;
 * per block one xor, maddubs, madd) or the abs / sign form (dec_row_b).
 * A one-token product is bound by the vector work between its loads: with
 * the arithmetic removed the same loop streams at ~90% of a plain read, the
 * 16-bit products at ~75%, the xor form at ~85-88% (bench-matmul's read
 * column, 32768 x 6144 Q8_0); one token against two Q8_0 rows a pass
 * (dec2_x_q8: the activation loads shared, two weight streams) reaches
 * 85-90%. The block sums are exact either way, so all forms give the
 * same bits. */
#include "quant_x86.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "quant_x86_blocks.h"

#include "quant_x86_defs.h"

#define UNROLL _Pragma("GCC unroll 16")

/* A prepared group of eight blocks: GV vectors. v[0..15] the levels as
 * int16 (transposed or natural, see the header), v[16] the eight block
 * scales (f32), v[17] the eight offsets (weights: Q4_1/Q5_1 m; activations:
 * Q8_1 s; else 0). */
#define GV 18
#define A2_T 2 /* tokens per prompt register tile */
#define A2_R 6 /* weight rows per prompt register tile */
#define A2_DEC_T 4 /* tokens per pass over a weight row (generation) */

/* Prompt blocking: token panels of up to A2_TOK_BLOCK prepared activation
 * rows (fewer for wide rows: A2_PANEL_BYTES), weight rows in groups of
 * A2_ROW_GROUP, each cut into K chunks of A2_K_BLOCKS blocks (a whole number
 * of groups) unpacked once and run against every token tile while in L1:
 * 12 rows x 16 blocks is 13.5 KiB of int16 weights, a token tile 2.3 KiB.
 * Measured here (6144 x 6144 x 128 Q8_0): K chunks of 32-64 blocks, row
 * groups of 6 or 24, panels of 32, 48, 128 or 512 tokens, explicit
 * prefetches of the next token tile: all within the noise or slower. */
#ifndef A2_TOK_BLOCK
#define A2_TOK_BLOCK 64
#endif
#ifndef A2_PANEL_BYTES
#define A2_PANEL_BYTES (2 << 20)
#endif
#ifndef A2_ROW_GROUP
#define A2_ROW_GROUP 12
#endif
#ifndef A2_K_BLOCKS
#define A2_K_BLOCKS 16
#endif
_Static_assert(A2_K_BLOCKS % 8 == 0, "K chunks start at whole groups");
#ifndef A2_PF_HINT
#define A2_PF_HINT _MM_HINT_T0 /* the next weight chunk's prefetches (T1: the same) */
#endif
#define A2_STACK_BYTES (96 * 1024) /* activation scratch on the stack (generation) */

static size_t pad64(size_t n) { return (n + 63) & ~(size_t)63; }
static inline int imin(int64_t a, int64_t b) { return (int)(a < b ? a : b); }
static size_t grp_bytes(int64_t ng) { return (size_t)ng * GV * sizeof(__m256i); }
/* a block's bytes (type_info's type_size) as a constant the compiler folds
 * into the kernels specialised per type (type_info is a call per row) */
static inline size_t block_bytes(uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q4_0: return sizeof(BlockQ4_0);
    case GGML_TYPE_Q4_1: return sizeof(BlockQ4_1);
    case GGML_TYPE_Q5_0: return sizeof(BlockQ5_0);
    case GGML_TYPE_Q5_1: return sizeof(BlockQ5_1);
    default: return sizeof(BlockQ8_0);
    }
}

/* the result of a pair from its float lanes: the same order everywhere */
AVX2 static INL float hsum8(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* 8 x 8 transpose of 32-bit lanes: r[i] lane j <- r[j] lane i */
AVX2 static INL void tr8x8(__m256i *r) {
    __m256i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2x128_si256(u[i], u[4 + i], 0x20);
        r[4 + i] = _mm256_permute2x128_si256(u[i], u[4 + i], 0x31);
    }
}

/* eight blocks of 32 signed bytes -> the group's 16 int16 vectors.
 * Transposed: the bytes are transposed as 32-bit words first (t[i] lane j:
 * bytes 4i..4i+3 of block j), then each word's bytes 0 and 2 are
 * sign-extended into v[2i] and bytes 1 and 3 into v[2i+1] (two shifts or
 * one per vector, instead of widening first and transposing twice as many
 * vectors); a lane's two products are then bytes (0, 2) or (1, 3) of a
 * word, in weights and activations alike. Natural: block b's values 0-15
 * in v[2b], 16-31 in v[2b+1]. */
AVX2 static INL void store_levels(const __m256i *q, bool transposed, __m256i *v) {
    if (transposed) {
        __m256i t[8];
        for (int b = 0; b < 8; b++) t[b] = q[b];
        tr8x8(t);
        UNROLL
        for (int i = 0; i < 8; i++) {
            _mm256_store_si256(v + 2 * i, _mm256_srai_epi16(_mm256_slli_epi16(t[i], 8), 8));
            _mm256_store_si256(v + 2 * i + 1, _mm256_srai_epi16(t[i], 8));
        }
        return;
    }
    UNROLL
    for (int b = 0; b < 8; b++) {
        _mm256_store_si256(v + 2 * b, _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q[b])));
        _mm256_store_si256(v + 2 * b + 1, _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q[b], 1)));
    }
}

/* The nbg (1..8) weight blocks at p as 8 x 32 signed bytes (missing blocks
 * zero), their scales and offsets. A whole group's fp16 (d, m) pairs come
 * in one gather (every block starts with d, Q4_1 / Q5_1 with m after it). */
AVX2 static INL void load8(uint32_t type, const uint8_t *p, int nbg, __m256i *q, __m256 *dv, __m256 *mv) {
    const size_t sz = block_bytes(type);
    const bool has_m = type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1;
    if (nbg == 8) {
        float d, m;
        UNROLL
        for (int i = 0; i < 8; i++) q[i] = load_a_block(type, p + (size_t)i * sz, &d, &m); /* scales: below */
        const __m256i dm = _mm256_i32gather_epi32(
            (const int *)p, _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)sz)), 1);
        const __m256i lo16 = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, 8, 9,
                                              12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
        *dv = _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_shuffle_epi8(dm, lo16), 0x08)));
        *mv = has_m ? _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(
                          _mm256_shuffle_epi8(_mm256_srli_epi32(dm, 16), lo16), 0x08)))
                    : _mm256_setzero_ps();
        return;
    }
    _Alignas(32) float d[8], m[8];
    for (int i = 0; i < 8; i++) {
        if (i < nbg) q[i] = load_a_block(type, p + (size_t)i * sz, &d[i], &m[i]);
        else q[i] = _mm256_setzero_si256(), d[i] = m[i] = 0.0f;
    }
    *dv = _mm256_load_ps(d), *mv = _mm256_load_ps(m);
}

/* Group g of a row of nb weight blocks of sz bytes: its blocks prefetched
 * pf bytes ahead (row_prefetch: a few rows on for a column slice), then
 * load8. */
AVX2 static INL void load8_row(uint32_t type, const uint8_t *wr, size_t sz, int64_t g, int64_t nb, size_t pf,
                               __m256i *q, __m256 *dv, __m256 *mv) {
    const uint8_t *p = wr + (size_t)(8 * g) * sz;
    if (PREFETCH_DIST > 0)
        for (size_t i = 0; i < 8 * sz; i += 64) _mm_prefetch((const char *)p + pf + i, PREFETCH_HINT);
    load8(type, p, imin(8, nb - 8 * g), q, dv, mv);
}

/* a weight row's nb blocks into prepared groups (transposed: prompt path) */
AVX2 static INL void unpack_row(uint32_t type, const uint8_t *row, int64_t nb, __m256i *v) {
    const size_t sz = block_bytes(type);
    for (int64_t g = 0; g < (nb + 7) / 8; g++, v += GV) {
        __m256i q[8];
        __m256 dv, mv;
        load8(type, row + (size_t)(8 * g) * sz, imin(8, nb - 8 * g), q, &dv, &mv);
        store_levels(q, true, v);
        _mm256_store_ps((float *)(v + 16), dv), _mm256_store_ps((float *)(v + 17), mv);
    }
}

/* an activation row (Q8_0 or Q8_1 blocks) into prepared groups */
AVX2 static void prep_x_row(bool q81, bool transposed, const uint8_t *xrow, int64_t nb, __m256i *v) {
    const size_t sz = q81 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
    for (int64_t g = 0; g < (nb + 7) / 8; g++, v += GV) {
        __m256i q[8];
        _Alignas(32) float d[8], s[8];
        for (int i = 0; i < 8; i++) {
            const int64_t b = 8 * g + i;
            d[i] = s[i] = 0.0f, q[i] = _mm256_setzero_si256();
            if (b >= nb) continue;
            const uint8_t *p = xrow + (size_t)b * sz;
            uint16_t h;
            memcpy(&h, p, 2);
            d[i] = _cvtsh_ss(h);
            if (q81) memcpy(&h, p + 2, 2), s[i] = _cvtsh_ss(h);
            q[i] = _mm256_loadu_si256((const __m256i *)(p + (q81 ? 4 : 2)));
        }
        store_levels(q, transposed, v);
        _mm256_store_ps((float *)(v + 16), _mm256_load_ps(d)), _mm256_store_ps((float *)(v + 17), _mm256_load_ps(s));
    }
}

/* The float steps of one (row, token) pair and group (see the header). */
AVX2 static INL __m256 fstep(__m256 f, __m256i isum, const __m256i *wg, const __m256i *xg, bool has_m) {
    const __m256 s = _mm256_mul_ps(_mm256_load_ps((const float *)(wg + 16)), _mm256_load_ps((const float *)(xg + 16)));
    f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, f);
    if (has_m) f = _mm256_fmadd_ps(_mm256_load_ps((const float *)(wg + 17)), _mm256_load_ps((const float *)(xg + 17)), f);
    return f;
}
/* the same with the weight scale and offset vectors already in registers */
AVX2 static INL __m256 fstep_v(__m256 f, __m256i isum, __m256 dw, __m256 mw, const __m256i *xg, bool has_m) {
    f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, _mm256_load_ps((const float *)(xg + 16))), f);
    if (has_m) f = _mm256_fmadd_ps(mw, _mm256_load_ps((const float *)(xg + 17)), f);
    return f;
}

/* -- the prompt path ------------------------------------------------------- */

/* An R x T register tile over ng prepared groups: W[r], X[t] the groups'
 * first vectors, F[r][t] the pair's float lanes, carried in memory from
 * one K chunk to the next (the same operations in the same order as one
 * pass over the whole row). Per vector k: T loads of the activations, then
 * R * T madds with the weight vector straight from L1, and R * T adds. */
AVX2 static INL void tile(const __m256i *const *W, const __m256i *const *X, int64_t ng, bool has_m, const int R,
                          const int T, __m256 *const *F) {
    for (int64_t g = 0; g < ng; g++) {
        const __m256i *wg[A2_R], *xg[A2_T];
        UNROLL
        for (int r = 0; r < R; r++) wg[r] = W[r] + GV * g;
        UNROLL
        for (int t = 0; t < T; t++) xg[t] = X[t] + GV * g;
        __m256i acc[A2_R][A2_T];
        UNROLL
        for (int r = 0; r < R; r++)
            UNROLL
            for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_si256();
        /* not unrolled: unrolled, the compiler reassociates the adds into
         * trees and spills the products */
        _Pragma("GCC unroll 1") for (int k = 0; k < 16; k++) {
            __m256i xv[A2_T];
            UNROLL
            for (int t = 0; t < T; t++) xv[t] = _mm256_load_si256(xg[t] + k);
            UNROLL
            for (int r = 0; r < R; r++) {
                UNROLL
                for (int t = 0; t < T; t++) {
                    const __m256i p = _mm256_madd_epi16(xv[t], _mm256_load_si256(wg[r] + k));
                    acc[r][t] = _mm256_add_epi32(acc[r][t], p);
                }
            }
        }
        UNROLL
        for (int r = 0; r < R; r++)
            UNROLL
            for (int t = 0; t < T; t++) F[r][t] = fstep(F[r][t], acc[r][t], wg[r], xg[t], has_m);
    }
}

/* The full tile of the prompt path (6 rows x 2 tokens, where a prompt
 * spends its time) in assembly: compilers (gcc 12 here) do not keep its 12
 * accumulators, 2 activation vectors, the weight vector and the product in
 * the 16 ymm registers (they reassociate the adds into trees, or copy and
 * spill the accumulators: ~35 instead of ~50 GMAC/s). The operations are
 * tile()'s: per vector k, both activation vectors, then per row one weight
 * load and per token one vpmaddwd and one vpaddd; then per pair the float
 * steps of fstep() (the scale product dw * dx, the convert, the fma into
 * F, with Q4_1 / Q5_1 the fma of the offsets), in the same order. */
/* The asm text, per instruction as tile() does it: accumulator yA of row r
 * and token t is ymm(4 + 2r + t); ymm0/ymm1 the tokens' activations (then
 * their scales), ymm2 a row's weights (then its scale), ymm3 the product. */
#define T62_ZERO(a) "vpxor %%xmm" #a ", %%xmm" #a ", %%xmm" #a "\n\t"
#define T62_ROW(w, a0, a1)                          \
    "vmovdqa (%[" #w "],%[o]), %%ymm2\n\t"          \
    "vpmaddwd %%ymm2, %%ymm0, %%ymm3\n\t"            \
    "vpaddd %%ymm3, %%ymm" #a0 ", %%ymm" #a0 "\n\t" \
    "vpmaddwd %%ymm2, %%ymm1, %%ymm3\n\t"            \
    "vpaddd %%ymm3, %%ymm" #a1 ", %%ymm" #a1 "\n\t"
/* the integer loop over a group's 16 vectors, then both tokens' scales */
#define T62_LOOP                                                                                                    \
    T62_ZERO(4) T62_ZERO(5) T62_ZERO(6) T62_ZERO(7) T62_ZERO(8) T62_ZERO(9) T62_ZERO(10) T62_ZERO(11) T62_ZERO(12) \
    T62_ZERO(13) T62_ZERO(14) T62_ZERO(15)                                                                         \
    "1:\n\t"                                                                                                       \
    "vmovdqa (%[x0],%[o]), %%ymm0\n\t"                                                                             \
    "vmovdqa (%[x1],%[o]), %%ymm1\n\t"                                                                             \
    T62_ROW(w0, 4, 5) T62_ROW(w1, 6, 7) T62_ROW(w2, 8, 9) T62_ROW(w3, 10, 11) T62_ROW(w4, 12, 13)                  \
    T62_ROW(w5, 14, 15)                                                                                            \
    "add $32, %[o]\n\t"                                                                                            \
    "cmp $512, %[o]\n\t"                                                                                           \
    "jne 1b\n\t"                                                                                                   \
    "vmovaps 512(%[x0]), %%ymm0\n\t"                                                                               \
    "vmovaps 512(%[x1]), %%ymm1\n\t"
/* fstep() of one pair into F (address fp[i], at byte FPO of fp): the scale
 * product, the convert, the fma; OFF: Q4_1 / Q5_1's fma of the offsets */
#define T62_NO_OFF(w, x, a) ""
#define T62_OFF(w, x, a) "vmovaps 544(%[" #w "]), %%ymm3\n\t" "vfmadd231ps 544(%[" #x "]), %%ymm3, %%ymm" #a "\n\t"
#define T62_F(a, fpo, xs, w, x, OFF)               \
    "mov " #fpo "(%[fp]), %%rax\n\t"               \
    "vmulps %%ymm" #xs ", %%ymm2, %%ymm3\n\t"       \
    "vcvtdq2ps %%ymm" #a ", %%ymm" #a "\n\t"       \
    "vfmadd213ps (%%rax), %%ymm3, %%ymm" #a "\n\t" \
    OFF(w, x, a) "vmovaps %%ymm" #a ", (%%rax)\n\t"
#define T62_FROW(w, a0, a1, fp0, fp1, OFF) \
    "vmovaps 512(%[" #w "]), %%ymm2\n\t" T62_F(a0, fp0, 0, w, x0, OFF) T62_F(a1, fp1, 1, w, x1, OFF)
#define T62_FLOAT(OFF)                                                                              \
    T62_FROW(w0, 4, 5, 0, 8, OFF) T62_FROW(w1, 6, 7, 16, 24, OFF) T62_FROW(w2, 8, 9, 32, 40, OFF) \
    T62_FROW(w3, 10, 11, 48, 56, OFF) T62_FROW(w4, 12, 13, 64, 72, OFF) T62_FROW(w5, 14, 15, 80, 88, OFF)
/* one group of a tile62 call (the function below, with or without offsets) */
#define T62_GROUP(OFF)                                                                                                \
    __asm__ volatile(T62_LOOP T62_FLOAT(OFF)                                                                          \
                     : [o] "+r"(o)                                                                                    \
                     : [x0] "r"(x0), [x1] "r"(x1), [w0] "r"(w0), [w1] "r"(w1), [w2] "r"(w2), [w3] "r"(w3),            \
                       [w4] "r"(w4), [w5] "r"(w5), [fp] "r"(fp)                                                      \
                     : "rax", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
                       "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory")

#define T62_FN(name, OFF)                                                                                   \
    AVX2 static void name(const __m256i *const *W, const __m256i *const *X, int64_t ng, __m256 *const *F) { \
        float *fp[12];                                                                                      \
        for (int r = 0; r < 6; r++) fp[2 * r] = (float *)F[r], fp[2 * r + 1] = (float *)(F[r] + 1);       \
        for (int64_t g = 0; g < ng; g++) {                                                                  \
            const __m256i *w0 = W[0] + GV * g, *w1 = W[1] + GV * g, *w2 = W[2] + GV * g;                    \
            const __m256i *w3 = W[3] + GV * g, *w4 = W[4] + GV * g, *w5 = W[5] + GV * g;                    \
            const __m256i *x0 = X[0] + GV * g, *x1 = X[1] + GV * g;                                         \
            int64_t o = 0;                                                                                  \
            T62_GROUP(OFF);                                                                                 \
        }                                                                                                   \
    }
T62_FN(tile62, T62_NO_OFF)
T62_FN(tile62_m, T62_OFF)

#define TILE_RT(R, T) tile(W, X, ng, has_m, R, T, F)
AVX2 static void tile_any(const __m256i *const *W, const __m256i *const *X, int64_t ng, bool has_m, int R, int T,
                          __m256 *const *F) {
    switch (R * 4 + T) {
    case 6 * 4 + 2:
        if (has_m) tile62_m(W, X, ng, F);
        else tile62(W, X, ng, F);
        break;
    case 6 * 4 + 1: TILE_RT(6, 1); break;
    case 5 * 4 + 2: TILE_RT(5, 2); break;
    case 5 * 4 + 1: TILE_RT(5, 1); break;
    case 4 * 4 + 2: TILE_RT(4, 2); break;
    case 4 * 4 + 1: TILE_RT(4, 1); break;
    case 3 * 4 + 2: TILE_RT(3, 2); break;
    case 3 * 4 + 1: TILE_RT(3, 1); break;
    case 2 * 4 + 2: TILE_RT(2, 2); break;
    case 2 * 4 + 1: TILE_RT(2, 1); break;
    case 1 * 4 + 2: TILE_RT(1, 2); break;
    default: TILE_RT(1, 1); break;
    }
}
AVX2 static void tile_m(const __m256i *const *W, const __m256i *const *X, int64_t ng, bool has_m, int R, int T,
                        __m256 *const *F) {
    if (has_m) tile_any(W, X, ng, true, R, T, F);
    else tile_any(W, X, ng, false, R, T, F);
}

typedef void (*UnpackFn)(const uint8_t *row, int64_t nb, __m256i *v);
#define UNPACK_FN(SUFFIX, TYPE) \
    AVX2 static void unpack_##SUFFIX(const uint8_t *row, int64_t nb, __m256i *v) { unpack_row(TYPE, row, nb, v); }
UNPACK_FN(q4_0, GGML_TYPE_Q4_0)
UNPACK_FN(q4_1, GGML_TYPE_Q4_1)
UNPACK_FN(q5_0, GGML_TYPE_Q5_0)
UNPACK_FN(q5_1, GGML_TYPE_Q5_1)
UNPACK_FN(q8_0, GGML_TYPE_Q8_0)

static UnpackFn unpack_fn(uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q4_0: return unpack_q4_0;
    case GGML_TYPE_Q4_1: return unpack_q4_1;
    case GGML_TYPE_Q5_0: return unpack_q5_0;
    case GGML_TYPE_Q5_1: return unpack_q5_1;
    default: return unpack_q8_0;
    }
}

AVX2 void quant_x86_a2_pre(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok,
                      float *out, int64_t os, int64_t r0, int64_t r1) {
    const int64_t nb = n / 32, ng = (nb + 7) / 8;
    size_t xb = grp_bytes(ng);
    if (xb % 4096 == 0) xb += 64; /* panel rows a multiple of 4 KiB apart would share L1 sets */
    const size_t wcb = grp_bytes(A2_K_BLOCKS / 8), sz = type_info(type)->type_size;
    const bool q81 = vec_dot_type(type) == GGML_TYPE_Q8_1, has_m = q81;
    const int64_t fit = (int64_t)(A2_PANEL_BYTES / xb) > 16 ? (int64_t)(A2_PANEL_BYTES / xb) : 16;
    const int tb = imin(imin(A2_TOK_BLOCK, n_tok), fit);
    const size_t nacc = (size_t)A2_ROW_GROUP * (size_t)tb;
    const size_t xpanel = (size_t)tb * xb, wpanel = (size_t)A2_ROW_GROUP * wcb;
    uint8_t *buf = aligned_alloc(64, pad64(xpanel + wpanel + nacc * sizeof(__m256)));
    if (!buf) { /* out of memory: the generation path (same results), a few tokens at a time */
        for (int t = 0; t < n_tok; t += A2_DEC_T)
            quant_x86_a2_dec(type, w, wrb, x + (size_t)t * xrb, xrb, n, imin(A2_DEC_T, n_tok - t), out + (int64_t)t * os,
                             os, r0, r1);
        return;
    }
    const UnpackFn unpack = unpack_fn(type);
    __m256 *facc = (__m256 *)(buf + xpanel + wpanel);
    for (int t0 = 0; t0 < n_tok; t0 += tb) {
        const int nt = imin(tb, n_tok - t0);
        for (int t = 0; t < nt; t++) prep_x_row(q81, true, x + (size_t)(t0 + t) * xrb, nb, (__m256i *)(buf + (size_t)t * xb));
        for (int64_t rs = r0; rs < r1; rs += A2_ROW_GROUP) {
            const int nr = imin(A2_ROW_GROUP, r1 - rs);
            memset(facc, 0, (size_t)nr * (size_t)nt * sizeof(__m256));
            for (int64_t b0 = 0; b0 < nb; b0 += A2_K_BLOCKS) {
                const int nbc = imin(A2_K_BLOCKS, nb - b0), ngc = (nbc + 7) / 8;
                for (int i = 0; i < nr; i++)
                    unpack(w + (size_t)(rs + i) * wrb + (size_t)b0 * sz, nbc, (__m256i *)(buf + xpanel + (size_t)i * wcb));
                /* the group's next chunk (or the next group's first) comes from
                 * memory while this one is in use: its lines are asked for a row
                 * per token tile (all at once, they queue behind the few fill
                 * buffers and stall the loop) */
                const uint8_t *next = b0 + nbc < nb ? w + (size_t)rs * wrb + (size_t)(b0 + nbc) * sz
                                      : rs + A2_ROW_GROUP < r1 ? w + (size_t)(rs + A2_ROW_GROUP) * wrb : NULL;
                const int nnext = !next ? 0 : b0 + nbc < nb ? nr : imin(A2_ROW_GROUP, r1 - rs - A2_ROW_GROUP);
                for (int t = 0, pr = 0; t < nt;) {
                    if (pr < nnext) {
                        for (size_t o = 0; o < (size_t)A2_K_BLOCKS * sz; o += 64)
                            _mm_prefetch((const char *)next + (size_t)pr * wrb + o, A2_PF_HINT);
                        pr++;
                    }
                    const int T = imin(A2_T, nt - t);
                    const __m256i *X[A2_T];
                    for (int i = 0; i < T; i++) X[i] = (const __m256i *)(buf + (size_t)(t + i) * xb) + GV * (b0 / 8);
                    for (int r = 0; r < nr;) {
                        const int R = imin(A2_R, nr - r);
                        const __m256i *W[A2_R];
                        __m256 *F[A2_R];
                        for (int i = 0; i < R; i++)
                            W[i] = (const __m256i *)(buf + xpanel + (size_t)(r + i) * wcb), F[i] = facc + (size_t)(r + i) * nt + t;
                        tile_m(W, X, ngc, has_m, R, T, F);
                        r += R;
                    }
                    t += T;
                }
            }
            for (int r = 0; r < nr; r++)
                for (int t = 0; t < nt; t++) out[(int64_t)(t0 + t) * os + rs + r] = hsum8(facc[(size_t)r * nt + t]);
        }
    }
    free(buf);
}

/* -- the generation path --------------------------------------------------- */

/* One weight row against T (1, 2, 4) natural-layout activation rows: per
 * pair of blocks, two madds and an add per block and token, one hadd; the
 * four hadds of a group fold into the block lanes with two more hadds, two
 * lane permutes and an add (lane j: block j). */
AVX2 static INL void dec_row(uint32_t type, const uint8_t *wr, const __m256i *const *X, int64_t nb, bool has_m,
                             const int T, size_t pf, float *res) {
    const size_t sz = block_bytes(type);
    __m256 f[A2_DEC_T];
    UNROLL
    for (int t = 0; t < T; t++) f[t] = _mm256_setzero_ps();
    for (int64_t g = 0; g < (nb + 7) / 8; g++) {
        __m256i q[8];
        __m256 dw, mw;
        load8_row(type, wr, sz, g, nb, pf, q, &dw, &mw);
        __m256i h[A2_DEC_T][2], hh[A2_DEC_T];
        UNROLL
        for (int i = 0; i < 4; i++) {
            const __m256i l0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q[2 * i]));
            const __m256i h0 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q[2 * i], 1));
            const __m256i l1 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q[2 * i + 1]));
            const __m256i h1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q[2 * i + 1], 1));
            UNROLL
            for (int t = 0; t < T; t++) {
                const __m256i *xv = X[t] + GV * g + 4 * i;
                const __m256i a = _mm256_add_epi32(_mm256_madd_epi16(l0, _mm256_load_si256(xv)),
                                                   _mm256_madd_epi16(h0, _mm256_load_si256(xv + 1)));
                const __m256i b = _mm256_add_epi32(_mm256_madd_epi16(l1, _mm256_load_si256(xv + 2)),
                                                   _mm256_madd_epi16(h1, _mm256_load_si256(xv + 3)));
                h[t][i & 1] = _mm256_hadd_epi32(a, b);
                if (i == 1) hh[t] = _mm256_hadd_epi32(h[t][0], h[t][1]);
                if (i == 3) {
                    const __m256i q1 = _mm256_hadd_epi32(h[t][0], h[t][1]);
                    const __m256i s = _mm256_add_epi32(_mm256_permute2x128_si256(hh[t], q1, 0x20),
                                                       _mm256_permute2x128_si256(hh[t], q1, 0x31));
                    f[t] = fstep_v(f[t], s, dw, mw, X[t] + GV * g, has_m);
                }
            }
        }
    }
    UNROLL
    for (int t = 0; t < T; t++) res[t] = hsum8(f[t]);
}

/* The byte form of dec_row, for activations that hold no -128 (grok.c's
 * quantizer writes -127..127; prep_x_bytes checks): per block the weight's
 * magnitude |w| (0..128, unsigned) times the activation with the weight's
 * sign moved onto it (sign(x, w): -127..127, never negated out of range),
 * maddubs into int16 pairs (at most 2 x 128 x 127 = 32,512: no
 * saturation), madd with ones into the int32 lanes that dec_row's tree
 * folds. Every product is exact, a weight of -128 included, so the block
 * sums are dec_row's bit for bit. Q4_1 / Q5_1 levels are unsigned already:
 * maddubs takes them as they are. X[t]: groups of GX8 vectors (the eight
 * blocks' raw bytes, their scales, their offsets). */
#define GX8 10
AVX2 static INL void dec_row_b(uint32_t type, const uint8_t *wr, const __m256i *const *X, int64_t nb, bool has_m,
                               const int T, size_t pf, float *res) {
    const size_t sz = block_bytes(type);
    const bool unsig = type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 f[A2_DEC_T];
    UNROLL
    for (int t = 0; t < T; t++) f[t] = _mm256_setzero_ps();
    for (int64_t g = 0; g < (nb + 7) / 8; g++) {
        __m256i q[8];
        __m256 dw, mw;
        load8_row(type, wr, sz, g, nb, pf, q, &dw, &mw);
        __m256i h[A2_DEC_T][2], hh[A2_DEC_T];
        UNROLL
        for (int i = 0; i < 4; i++) {
            const __m256i a0 = unsig ? q[2 * i] : _mm256_sign_epi8(q[2 * i], q[2 * i]);
            const __m256i a1 = unsig ? q[2 * i + 1] : _mm256_sign_epi8(q[2 * i + 1], q[2 * i + 1]);
            UNROLL
            for (int t = 0; t < T; t++) {
                const __m256i *xv = X[t] + GX8 * g + 2 * i;
                const __m256i x0 = _mm256_load_si256(xv), x1 = _mm256_load_si256(xv + 1);
                const __m256i a = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(a0, unsig ? x0 : _mm256_sign_epi8(x0, q[2 * i])), ones);
                const __m256i b = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(a1, unsig ? x1 : _mm256_sign_epi8(x1, q[2 * i + 1])), ones);
                h[t][i & 1] = _mm256_hadd_epi32(a, b);
                if (i == 1) hh[t] = _mm256_hadd_epi32(h[t][0], h[t][1]);
                if (i == 3) {
                    const __m256i q1 = _mm256_hadd_epi32(h[t][0], h[t][1]);
                    const __m256i s = _mm256_add_epi32(_mm256_permute2x128_si256(hh[t], q1, 0x20),
                                                       _mm256_permute2x128_si256(hh[t], q1, 0x31));
                    const __m256 *xs = (const __m256 *)(X[t] + GX8 * g + 8);
                    f[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_load_ps((const float *)xs)), f[t]);
                    if (has_m) f[t] = _mm256_fmadd_ps(mw, _mm256_load_ps((const float *)(xs + 1)), f[t]);
                }
            }
        }
    }
    UNROLL
    for (int t = 0; t < T; t++) res[t] = hsum8(f[t]);
}

/* an activation row into groups of GX8 vectors for dec_row_b; false (and
 * the row is to go the 16-bit way) where a level is -128 */
AVX2 static bool prep_x_bytes(bool q81, const uint8_t *xrow, int64_t nb, __m256i *v) {
    __m256i bad = _mm256_setzero_si256();
    for (int64_t g = 0; g < (nb + 7) / 8; g++, v += GX8) {
        __m256i q[8];
        _Alignas(32) float d[8], s[8];
        load_x8_group(q81, xrow, nb, g, q, d, s); /* blocks past nb: zero */
        for (int i = 0; i < 8; i++) {
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi8(q[i], _mm256_set1_epi8(-128)));
            _mm256_store_si256(v + i, q[i]);
        }
        _mm256_store_ps((float *)(v + 8), _mm256_load_ps(d)), _mm256_store_ps((float *)(v + 9), _mm256_load_ps(s));
    }
    return _mm256_testz_si256(bad, bad);
}

/* The xor form, for signed levels (Q8_0, Q4_0, Q5_0) against activations
 * with no -128, whose prepared row fits in L1 (GXX vectors a group): with
 * m = 0xFF where x < 0 (else 0), w x = (w ^ m) |x| + (m ? |x| : 0), since
 * for x < 0, -w = ~w + 1. So per block and token: one xor (the activation's
 * sign mask from memory), maddubs of |x| (unsigned, <= 127) by w ^ m
 * (-128..127: pair sums within +-32,512, no saturation), madd with ones;
 * and per group one add of the eight blocks' sums of |x| over x < 0,
 * prepared with the row. Two vector ALU operations fewer per block than
 * dec_row_b's abs and sign, the same exact block sums. X[t]: v[0..7] the
 * blocks' |x|, v[8..15] their masks, v[16] the eight corrections (int32),
 * v[17] the scales (signed levels: Q8_0 activations, no offsets). */
#define GXX 18
#ifndef A2_DEC2
#define A2_DEC2 1 /* two Q8_0 rows a pass for one token (dec2_x_q8) */
#endif
#ifndef A2_XOR_MAX_BYTES
#define A2_XOR_MAX_BYTES (24 * 1024)
#endif
AVX2 static INL void dec_row_x(uint32_t type, const uint8_t *wr, const __m256i *const *X, int64_t nb, const int T,
                               size_t pf, float *res) {
    const size_t sz = block_bytes(type);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 f[A2_DEC_T];
    UNROLL
    for (int t = 0; t < T; t++) f[t] = _mm256_setzero_ps();
    for (int64_t g = 0; g < (nb + 7) / 8; g++) {
        __m256i q[8];
        __m256 dw, mw;
        load8_row(type, wr, sz, g, nb, pf, q, &dw, &mw);
        __m256i h[A2_DEC_T][2], hh[A2_DEC_T];
        UNROLL
        for (int i = 0; i < 4; i++) {
            UNROLL
            for (int t = 0; t < T; t++) {
                const __m256i *xv = X[t] + GXX * g;
                const __m256i a = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(_mm256_load_si256(xv + 2 * i),
                                         _mm256_xor_si256(q[2 * i], _mm256_load_si256(xv + 8 + 2 * i))),
                    ones);
                const __m256i b = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(_mm256_load_si256(xv + 2 * i + 1),
                                         _mm256_xor_si256(q[2 * i + 1], _mm256_load_si256(xv + 9 + 2 * i))),
                    ones);
                h[t][i & 1] = _mm256_hadd_epi32(a, b);
                if (i == 1) hh[t] = _mm256_hadd_epi32(h[t][0], h[t][1]);
                if (i == 3) {
                    const __m256i q1 = _mm256_hadd_epi32(h[t][0], h[t][1]);
                    /* lanes 0-3: hh's halves (blocks 0-3), 4-7: q1's (blocks 4-7) */
                    __m256i s = _mm256_add_epi32(_mm256_blend_epi32(hh[t], q1, 0xF0),
                                                 _mm256_permute2x128_si256(hh[t], q1, 0x21));
                    s = _mm256_add_epi32(s, _mm256_load_si256(xv + 16));
                    f[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s),
                                           _mm256_mul_ps(dw, _mm256_load_ps((const float *)(xv + 17))), f[t]);
                }
            }
        }
    }
    UNROLL
    for (int t = 0; t < T; t++) res[t] = hsum8(f[t]);
}

/* an activation row into groups of GXX vectors for dec_row_x; false where
 * a level is -128 */
AVX2 static bool prep_x_xor(const uint8_t *xrow, int64_t nb, __m256i *v) {
    __m256i bad = _mm256_setzero_si256();
    for (int64_t g = 0; g < (nb + 7) / 8; g++, v += GXX) {
        __m256i qs[8];
        _Alignas(32) float d[8], s[8];
        _Alignas(32) int32_t c[8];
        load_x8_group(false, xrow, nb, g, qs, d, s); /* Q8_0: no sums; blocks past nb: zero */
        for (int i = 0; i < 8; i++) {
            const __m256i q = qs[i];
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi8(q, _mm256_set1_epi8(-128)));
            const __m256i m = _mm256_cmpgt_epi8(_mm256_setzero_si256(), q), a = _mm256_abs_epi8(q);
            _mm256_store_si256(v + i, a), _mm256_store_si256(v + 8 + i, m);
            /* the sum of |x| over x < 0: the bytes of a & m, summed by sad */
            const __m256i sad = _mm256_sad_epu8(_mm256_and_si256(a, m), _mm256_setzero_si256());
            const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
            c[i] = (int32_t)(_mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1));
        }
        _mm256_store_si256(v + 16, _mm256_load_si256((const __m256i *)c));
        _mm256_store_ps((float *)(v + 17), _mm256_load_ps(d));
    }
    return _mm256_testz_si256(bad, bad);
}

/* Two Q8_0 rows against one token in the xor form (whole groups only):
 * the activation vectors are loaded once for both rows. The same
 * operations per row as dec_row_x, so the same bits. */
AVX2 static void dec2_x_q8(const uint8_t *w0, const uint8_t *w1, const __m256i *X, int64_t nb, size_t pf, float *res) {
    const size_t sz = sizeof(BlockQ8_0);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)sz));
    const __m256i lo16 = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, 8, 9,
                                          12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256 f[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    const uint8_t *wr[2] = {w0, w1};
    for (int64_t g = 0; g < nb / 8; g++) {
        const __m256i *xv = X + GXX * g;
        __m256i h[2][2], hh[2];
        UNROLL
        for (int r = 0; r < 2; r++)
            for (size_t i = 0; i < 8 * sz; i += 64)
                _mm_prefetch((const char *)wr[r] + (size_t)(8 * g) * sz + pf + i, PREFETCH_HINT);
        UNROLL
        for (int i = 0; i < 4; i++) {
            const __m256i ax0 = _mm256_load_si256(xv + 2 * i), ax1 = _mm256_load_si256(xv + 2 * i + 1);
            const __m256i m0 = _mm256_load_si256(xv + 8 + 2 * i), m1 = _mm256_load_si256(xv + 9 + 2 * i);
            UNROLL
            for (int r = 0; r < 2; r++) {
                const uint8_t *p = wr[r] + (size_t)(8 * g + 2 * i) * sz + 2;
                const __m256i a = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(ax0, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)p), m0)), ones);
                const __m256i b = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(ax1, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + sz)), m1)),
                    ones);
                h[r][i & 1] = _mm256_hadd_epi32(a, b);
                if (i == 1) hh[r] = _mm256_hadd_epi32(h[r][0], h[r][1]);
                if (i == 3) {
                    const __m256i q1 = _mm256_hadd_epi32(h[r][0], h[r][1]);
                    __m256i s = _mm256_add_epi32(_mm256_blend_epi32(hh[r], q1, 0xF0),
                                                 _mm256_permute2x128_si256(hh[r], q1, 0x21));
                    s = _mm256_add_epi32(s, _mm256_load_si256(xv + 16));
                    const __m256i dm = _mm256_i32gather_epi32((const int *)(wr[r] + (size_t)(8 * g) * sz), idx, 1);
                    const __m256 dw =
                        _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_shuffle_epi8(dm, lo16), 0x08)));
                    f[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s),
                                           _mm256_mul_ps(dw, _mm256_load_ps((const float *)(xv + 17))), f[r]);
                }
            }
        }
    }
    res[0] = hsum8(f[0]), res[1] = hsum8(f[1]);
}

#define DEC_PARAMS                                                                                             \
    const uint8_t *w, size_t wrb, int64_t nr, const __m256i *const *xs, int n_tok, int64_t nb, float *out, int64_t os, \
        int form
typedef void (*DecFn)(DEC_PARAMS);
#define DEC_FN(SUFFIX, TYPE)                                                                        \
    AVX2 static void dec_##SUFFIX(DEC_PARAMS) {                                                     \
        const bool has_m = vec_dot_type(TYPE) == GGML_TYPE_Q8_1;                                    \
        const size_t pf = row_prefetch((size_t)nb * block_bytes(TYPE), wrb);                        \
        int64_t r = 0;                                                                              \
        if (A2_DEC2 && TYPE == GGML_TYPE_Q8_0 && form == 2 && n_tok == 1 && nb % 8 == 0)            \
            for (; r + 2 <= nr; r += 2) {                                                           \
                float res[2];                                                                       \
                dec2_x_q8(w + (size_t)r * wrb, w + (size_t)(r + 1) * wrb, xs[0], nb, pf, res);      \
                out[r] = res[0], out[r + 1] = res[1];                                               \
            }                                                                                       \
        for (; r < nr; r++)                                                                         \
            for (int t = 0; t < n_tok;) {                                                           \
                const int T = n_tok - t >= 4 ? 4 : n_tok - t >= 2 ? 2 : 1;                          \
                float res[A2_DEC_T];                                                                \
                const uint8_t *wr = w + (size_t)r * wrb;                                            \
                if (form == 2) {                                                                    \
                    if (T == 4) dec_row_x(TYPE, wr, xs + t, nb, 4, pf, res);                            \
                    else if (T == 2) dec_row_x(TYPE, wr, xs + t, nb, 2, pf, res);                       \
                    else dec_row_x(TYPE, wr, xs + t, nb, 1, pf, res);                                   \
                } else if (form == 1) {                                                             \
                    if (T == 4) dec_row_b(TYPE, wr, xs + t, nb, has_m, 4, pf, res);                     \
                    else if (T == 2) dec_row_b(TYPE, wr, xs + t, nb, has_m, 2, pf, res);                \
                    else dec_row_b(TYPE, wr, xs + t, nb, has_m, 1, pf, res);                            \
                } else if (T == 4) dec_row(TYPE, wr, xs + t, nb, has_m, 4, pf, res);                    \
                else if (T == 2) dec_row(TYPE, wr, xs + t, nb, has_m, 2, pf, res);                      \
                else dec_row(TYPE, wr, xs + t, nb, has_m, 1, pf, res);                                  \
                for (int j = 0; j < T; j++) out[(int64_t)(t + j) * os + r] = res[j];                \
                t += T;                                                                             \
            }                                                                                       \
    }
DEC_FN(q4_0, GGML_TYPE_Q4_0)
DEC_FN(q4_1, GGML_TYPE_Q4_1)
DEC_FN(q5_0, GGML_TYPE_Q5_0)
DEC_FN(q5_1, GGML_TYPE_Q5_1)
DEC_FN(q8_0, GGML_TYPE_Q8_0)

static DecFn dec_fn(uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q4_0: return dec_q4_0;
    case GGML_TYPE_Q4_1: return dec_q4_1;
    case GGML_TYPE_Q5_0: return dec_q5_0;
    case GGML_TYPE_Q5_1: return dec_q5_1;
    default: return dec_q8_0;
    }
}

AVX2 void quant_x86_a2_dec(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok,
                      float *out, int64_t os, int64_t r0, int64_t r1) {
    const int64_t nb = n / 32, ng = (nb + 7) / 8;
    const bool q81 = vec_dot_type(type) == GGML_TYPE_Q8_1;
    const size_t xb = grp_bytes(ng); /* room for any of the three layouts (GV >= GXX > GX8 vectors) */
    _Static_assert(GV >= GXX && GXX >= GX8, "the activation scratch fits every layout");
    _Alignas(64) uint8_t stack[A2_STACK_BYTES];
    uint8_t *buf = stack, *heap = NULL;
    if ((size_t)n_tok * xb > sizeof stack) {
        heap = aligned_alloc(64, pad64((size_t)n_tok * xb));
        if (!heap) { /* out of memory: the (slow) reference still gives the answer */
            for (int t = 0; t < n_tok; t++)
                for (int64_t r = r0; r < r1; r++)
                    out[(int64_t)t * os + r] = vec_dot_ref(type, w + (size_t)r * wrb, x + (size_t)t * xrb, n);
            return;
        }
        buf = heap;
    }
    const __m256i *xs[64];
    for (int t0 = 0; t0 < n_tok; t0 += 64) { /* callers pass fewer than 16 tokens; the OOM fallback above 4 */
        const int nt = imin(64, n_tok - t0);
        /* the xor form for signed levels whose prepared activations fit in L1,
         * else the byte form, or the 16-bit one where an activation is -128 */
        const bool sgn = type != GGML_TYPE_Q4_1 && type != GGML_TYPE_Q5_1;
        int form = sgn && (size_t)nt * (size_t)ng * GXX * 32 <= A2_XOR_MAX_BYTES ? 2 : 1;
        for (int t = 0; t < nt && form; t++) {
            __m256i *v = (__m256i *)(buf + (size_t)t * xb);
            if (!(form == 2 ? prep_x_xor(x + (size_t)(t0 + t) * xrb, nb, v)
                            : prep_x_bytes(q81, x + (size_t)(t0 + t) * xrb, nb, v)))
                form = 0;
        }
        for (int t = 0; t < nt; t++) {
            if (!form) prep_x_row(q81, false, x + (size_t)(t0 + t) * xrb, nb, (__m256i *)(buf + (size_t)t * xb));
            xs[t] = (const __m256i *)(buf + (size_t)t * xb);
        }
        prefetch_rows(w + (size_t)r0 * wrb, (size_t)nb * block_bytes(type), wrb, r1 - r0);
        dec_fn(type)(w + (size_t)r0 * wrb, wrb, r1 - r0, xs, nt, nb, out + (int64_t)t0 * os + r0, os, form);
    }
    free(heap);
}

#endif /* x86-64 */
