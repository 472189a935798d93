/* quant_arm_kern.h - the aarch64 quantized matrix kernels (see quant_arm.h),
 * a template: quant_arm_{neon,dotprod,i8mm}.c define ARM_LEVEL (1 NEON,
 * 2 + dotprod, 3 + i8mm) and ARM_ENTRY (the entry point's name), then
 * include this file; CMake compiles each with the matching -march.
 *
 * Exactness. The scalar reference (quant.c, dot_a_scalar / dot_k_scalar)
 * computes, per 32-value block b (Q4_0 .. Q8_0) or 256-value super-block
 * (K-quants), an exact integer sum and then
 *     s += (d * dx) * (float)isum + m * sx                 (32-value blocks)
 *     s += (d * dx) * (float)isum - (dmin * dx) * (float)imin   (K-quants)
 * with the K-quants split into levels q, 16-value scales sc and mins mn
 * exactly as its unpack_k_scalar does. Here the integer sums come from
 * SDOT / SMMLA / widening multiplies (exact), and the float steps are the
 * same IEEE operations in the same order, one (row, token) pair per vector
 * lane, so every result equals the reference bit for bit. (Vector
 * multiplies and adds are not fused: the project builds with
 * -ffp-contract=off, which is also GCC's default for ISO C.)
 *
 * Paths, as on x86 (quant.c): fewer than DEC_MAX_TOK activation rows take
 * the generation path (each weight row decoded in registers as it streams
 * from memory and applied to every token, 4 tokens per vector); from
 * DEC_MAX_TOK on, the prompt path unpacks groups of weight rows once into
 * canonical integer rows and runs register tiles of 2 rows x 4 tokens. With
 * i8mm the prompt path stores row pairs and token pairs interleaved by 8
 * bytes, the layout SMMLA multiplies (2 rows x 2 tokens x 8 values per
 * instruction). */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "quant_arm.h"

#define INL static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 4")
#define DEC_MAX_TOK 16 /* as in quant.c */
#define RGROUP 16      /* weight rows unpacked together (prompt path); even */

/* ---- small helpers ------------------------------------------------------- */

INL float h2f(const uint8_t *p) { /* exact, like fp16_to_f32 */
    __fp16 h;
    memcpy(&h, p, sizeof h);
    return (float)h;
}

INL uint32_t u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* byte j = 0xFF if bit j of the 16 bits b is set */
INL uint8x16_t bits16(uint32_t b) {
    static const uint8_t sel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t v = vcombine_u8(vdup_n_u8((uint8_t)b), vdup_n_u8((uint8_t)(b >> 8)));
    return vtstq_u8(v, vld1q_u8(sel));
}

/* the 4 lanes' sums of 4 int32x4 vectors: [sum a, sum b, sum c, sum d] */
INL int32x4_t hsum4(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
    return vpaddq_s32(vpaddq_s32(a, b), vpaddq_s32(c, d));
}

/* acc + the 32 products a[i]*b[i], spread over 4 int32 lanes (exact) */
INL int32x4_t dot32(int32x4_t acc, int8x16_t a0, int8x16_t a1, int8x16_t b0, int8x16_t b1) {
#if ARM_LEVEL >= 2
    return vdotq_s32(vdotq_s32(acc, a0, b0), a1, b1);
#else
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a0), vget_low_s8(b0)));
    acc = vpadalq_s16(acc, vmull_high_s8(a0, b0));
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a1), vget_low_s8(b1)));
    return vpadalq_s16(acc, vmull_high_s8(a1, b1));
#endif
}

/* acc + sc * (16 products q[i]*x[i]), q in 0..63 (K-quant levels) */
INL int32x4_t kmla16(int32x4_t acc, int8x16_t q, int8x16_t x, int16_t sc) {
#if ARM_LEVEL >= 2
    return vmlaq_n_s32(acc, vdotq_s32(vdupq_n_s32(0), q, x), sc);
#else
    /* |q*x| <= 63*128, so two products fit int16 */
    const int16x8_t p = vmlal_high_s8(vmull_s8(vget_low_s8(q), vget_low_s8(x)), q, x);
    return vmlal_high_n_s16(vmlal_n_s16(acc, vget_low_s16(p), sc), p, sc);
#endif
}

/* the 16 products of two int16 vectors of 16, over 4 lanes */
INL int32x4_t dot16_s16(const int16_t *a, const int16_t *b) {
    const int16x8_t a0 = vld1q_s16(a), a1 = vld1q_s16(a + 8), b0 = vld1q_s16(b), b1 = vld1q_s16(b + 8);
    int32x4_t r = vmull_s16(vget_low_s16(a0), vget_low_s16(b0));
    r = vmlal_high_s16(r, a0, b0);
    r = vmlal_s16(r, vget_low_s16(a1), vget_low_s16(b1));
    return vmlal_high_s16(r, a1, b1);
}

/* s + ((d*dx) * isum + m*sx), lane by lane, as the reference for 32-value blocks */
INL float32x4_t a_update(float32x4_t s, float32x4_t d, float32x4_t dx, float32x4_t m, float32x4_t sx, int32x4_t isum) {
    const float32x4_t t = vmulq_f32(vmulq_f32(d, dx), vcvtq_f32_s32(isum));
    return vaddq_f32(s, vaddq_f32(t, vmulq_f32(m, sx)));
}

/* s + ((d*dx) * isum - (dmin*dx) * imin), as the reference for K-quants */
INL float32x4_t k_update(float32x4_t s, float32x4_t d, float32x4_t dmin, float32x4_t dx, int32x4_t isum,
                         int32x4_t imin) {
    const float32x4_t t = vmulq_f32(vmulq_f32(d, dx), vcvtq_f32_s32(isum));
    return vaddq_f32(s, vsubq_f32(t, vmulq_f32(vmulq_f32(dmin, dx), vcvtq_f32_s32(imin))));
}

/* ---- 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) ------------------ */

/* One block as signed levels (values 0-15 in lo, 16-31 in hi), scale d,
 * offset m, as quant.c's unpack_a_block. */
INL void load_a(uint32_t type, const uint8_t *p, int8x16_t *lo, int8x16_t *hi, float *d, float *m) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    switch (type) {
    case GGML_TYPE_Q8_0:
        *d = h2f(p), *m = 0.0f;
        *lo = vld1q_s8((const int8_t *)p + 2), *hi = vld1q_s8((const int8_t *)p + 18);
        return;
    case GGML_TYPE_Q4_0: {
        const uint8x16_t v = vld1q_u8(p + 2);
        *d = h2f(p), *m = 0.0f;
        *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, m4)), vdupq_n_s8(8));
        *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(8));
        return;
    }
    case GGML_TYPE_Q4_1: {
        const uint8x16_t v = vld1q_u8(p + 4);
        *d = h2f(p), *m = h2f(p + 2);
        *lo = vreinterpretq_s8_u8(vandq_u8(v, m4)), *hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
        return;
    }
    case GGML_TYPE_Q5_0: {
        const uint32_t qh = u32le(p + 2);
        const uint8x16_t v = vld1q_u8(p + 6), s16 = vdupq_n_u8(0x10);
        *d = h2f(p), *m = 0.0f;
        const uint8x16_t l = vorrq_u8(vandq_u8(v, m4), vandq_u8(bits16(qh), s16));
        const uint8x16_t h = vorrq_u8(vshrq_n_u8(v, 4), vandq_u8(bits16(qh >> 16), s16));
        *lo = vsubq_s8(vreinterpretq_s8_u8(l), vdupq_n_s8(16)), *hi = vsubq_s8(vreinterpretq_s8_u8(h), vdupq_n_s8(16));
        return;
    }
    default: { /* Q5_1 */
        const uint32_t qh = u32le(p + 4);
        const uint8x16_t v = vld1q_u8(p + 8), s16 = vdupq_n_u8(0x10);
        *d = h2f(p), *m = h2f(p + 2);
        *lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v, m4), vandq_u8(bits16(qh), s16)));
        *hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v, 4), vandq_u8(bits16(qh >> 16), s16)));
        return;
    }
    }
}

/* Generation: one weight row (raw blocks) against G groups of 4 activation
 * rows (Q8_0 / Q8_1 blocks; T = rows used in each group's lanes, 1, 2 or
 * 4). res[4g + t] = dot(row, token 4g + t). */
INL void dec_a_row(uint32_t type, size_t wsz, const uint8_t *wr, const uint8_t *const *xs, int64_t nb, const int T,
                   int G, float *res) {
    const bool q81 = vec_dot_type(type) == GGML_TYPE_Q8_1;
    const size_t xsz = q81 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0), xo = q81 ? 4 : 2;
    if (T == 1) { /* the reference's own scalar steps, one token */
        float s = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            int8x16_t wl, wh;
            float d, m;
            load_a(type, wr + (size_t)b * wsz, &wl, &wh, &d, &m);
            const uint8_t *xb = xs[0] + (size_t)b * xsz;
            const int8x16_t xl = vld1q_s8((const int8_t *)xb + xo), xh = vld1q_s8((const int8_t *)xb + xo + 16);
            const float dx = h2f(xb), sx = q81 ? h2f(xb + 2) : 0.0f;
            const int32_t isum = vaddvq_s32(dot32(vdupq_n_s32(0), wl, wh, xl, xh));
            s += (d * dx) * (float)isum + m * sx;
        }
        res[0] = s;
        return;
    }
    float32x4_t s[DEC_MAX_TOK / 4];
    for (int g = 0; g < G; g++) s[g] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t wl, wh;
        float d, m;
        load_a(type, wr + (size_t)b * wsz, &wl, &wh, &d, &m);
        const float32x4_t dv = vdupq_n_f32(d), mv = vdupq_n_f32(m);
        for (int g = 0; g < G; g++) {
            int32x4_t acc[4];
            float dx[4], sx[4];
            UNROLL
            for (int t = 0; t < 4; t++) {
                if (t < T) {
                    const uint8_t *xb = xs[4 * g + t] + (size_t)b * xsz;
                    acc[t] = dot32(vdupq_n_s32(0), wl, wh, vld1q_s8((const int8_t *)xb + xo),
                                   vld1q_s8((const int8_t *)xb + xo + 16));
                    dx[t] = h2f(xb), sx[t] = q81 ? h2f(xb + 2) : 0.0f;
                } else
                    acc[t] = vdupq_n_s32(0), dx[t] = sx[t] = 0.0f;
            }
            const float32x4_t dxv = {dx[0], dx[1], dx[2], dx[3]}, sxv = {sx[0], sx[1], sx[2], sx[3]};
            s[g] = a_update(s[g], dv, dxv, mv, sxv, hsum4(acc[0], acc[1], acc[2], acc[3]));
        }
    }
    for (int g = 0; g < G; g++) vst1q_f32(res + 4 * g, s[g]);
}

/* ---- K-quants -------------------------------------------------------------- */

/* One super-block in the reference's canonical form (quant.c, CanonK):
 * x[v] = d * sc[v/16] * q[v] - dmin * mn[v/16], q in 0..63. */
typedef struct {
    int8_t q[QK_K];
    int16_t sc[16], mn[16];
    float d, dmin;
} KCan;

INL void unpack_k(uint32_t type, const uint8_t *p, KCan *c) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(3);
    uint8_t *q = (uint8_t *)c->q;
    switch (type) {
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K: {
        const bool five = type == GGML_TYPE_Q5_K;
        const uint8_t *scales = p + 4, *qs = p + (five ? 48 : 16), *qh = p + 16;
        const uint8x16_t s16 = vdupq_n_u8(16);
        for (int cc = 0; cc < 4; cc++)
            for (int h = 0; h < 2; h++) {
                const uint8x16_t v = vld1q_u8(qs + 32 * cc + 16 * h);
                uint8x16_t lo = vandq_u8(v, m4), hi = vshrq_n_u8(v, 4);
                if (five) {
                    const uint8x16_t hb = vld1q_u8(qh + 16 * h);
                    lo = vorrq_u8(lo, vandq_u8(vtstq_u8(hb, vdupq_n_u8((uint8_t)(1u << (2 * cc)))), s16));
                    hi = vorrq_u8(hi, vandq_u8(vtstq_u8(hb, vdupq_n_u8((uint8_t)(2u << (2 * cc)))), s16));
                }
                vst1q_u8(q + 64 * cc + 16 * h, lo);
                vst1q_u8(q + 64 * cc + 32 + 16 * h, hi);
            }
        for (int j = 0; j < 8; j++) {
            int s, m;
            if (j < 4) {
                s = scales[j] & 63, m = scales[j + 4] & 63;
            } else {
                s = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
                m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
            }
            c->sc[2 * j] = c->sc[2 * j + 1] = (int16_t)s;
            c->mn[2 * j] = c->mn[2 * j + 1] = (int16_t)m;
        }
        c->d = h2f(p), c->dmin = h2f(p + 2);
        return;
    }
    case GGML_TYPE_Q6_K: {
        const uint8_t *ql = p, *qh = p + 128;
        const int8_t *scales = (const int8_t *)(p + 192);
        for (int n = 0; n < 2; n++)
            for (int h = 0; h < 2; h++) {
                const uint8x16_t l0 = vld1q_u8(ql + 64 * n + 16 * h), l1 = vld1q_u8(ql + 64 * n + 32 + 16 * h);
                const uint8x16_t hb = vld1q_u8(qh + 32 * n + 16 * h);
                uint8_t *o = q + 128 * n + 16 * h;
                vst1q_u8(o, vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8(vandq_u8(hb, m3), 4)));
                vst1q_u8(o + 32, vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 2), m3), 4)));
                vst1q_u8(o + 64, vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 4), m3), 4)));
                vst1q_u8(o + 96, vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vshrq_n_u8(hb, 6), 4)));
            }
        const int16x8_t s0 = vmovl_s8(vld1_s8(scales)), s1 = vmovl_s8(vld1_s8(scales + 8));
        vst1q_s16(c->sc, s0), vst1q_s16(c->sc + 8, s1);
        vst1q_s16(c->mn, vshlq_n_s16(s0, 5)), vst1q_s16(c->mn + 8, vshlq_n_s16(s1, 5));
        c->d = c->dmin = h2f(p + 208);
        return;
    }
    case GGML_TYPE_Q3_K: {
        const uint8_t *hmask = p, *qs = p + 32, *scales = p + 96;
        for (int n = 0; n < 2; n++)
            for (int h = 0; h < 2; h++) {
                const uint8x16_t v = vld1q_u8(qs + 32 * n + 16 * h), hm = vld1q_u8(hmask + 16 * h);
                for (int k = 0; k < 4; k++) {
                    const uint8x16_t lo = vandq_u8(vshlq_u8(v, vdupq_n_s8((int8_t)(-2 * k))), m3);
                    const uint8x16_t hi = vandq_u8(vtstq_u8(hm, vdupq_n_u8((uint8_t)(1u << (4 * n + k)))), vdupq_n_u8(4));
                    vst1q_u8(q + 128 * n + 32 * k + 16 * h, vorrq_u8(lo, hi));
                }
            }
        for (int j = 0; j < 16; j++) {
            const int lo = j < 8 ? (scales[j] & 0xF) : (scales[j - 8] >> 4);
            const int hi = (scales[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
            c->sc[j] = (int16_t)((lo | (hi << 4)) - 32);
            c->mn[j] = (int16_t)(4 * c->sc[j]);
        }
        c->d = c->dmin = h2f(p + 108);
        return;
    }
    default: { /* Q2_K */
        const uint8_t *scales = p, *qs = p + 16;
        for (int n = 0; n < 2; n++)
            for (int h = 0; h < 2; h++) {
                const uint8x16_t v = vld1q_u8(qs + 32 * n + 16 * h);
                for (int k = 0; k < 4; k++)
                    vst1q_u8(q + 128 * n + 32 * k + 16 * h, vandq_u8(vshlq_u8(v, vdupq_n_s8((int8_t)(-2 * k))), m3));
            }
        const uint8x16_t sv = vld1q_u8(scales);
        const uint8x16_t sl = vandq_u8(sv, m4), sh = vshrq_n_u8(sv, 4);
        vst1q_s16(c->sc, vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(sl))));
        vst1q_s16(c->sc + 8, vreinterpretq_s16_u16(vmovl_high_u8(sl)));
        vst1q_s16(c->mn, vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(sh))));
        vst1q_s16(c->mn + 8, vreinterpretq_s16_u16(vmovl_high_u8(sh)));
        c->d = h2f(p + 80), c->dmin = h2f(p + 82);
        return;
    }
    }
}

/* R canonical super-blocks (R = 1 or 2) against 4 activation super-blocks
 * (T of them used): s[r] lane t += the reference's update for (r, t). */
INL void k_tile(const KCan *const *C, const BlockQ8_K *const *X, const int R, const int T, float32x4_t *s) {
    int32x4_t acc[2][4];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int t = 0; t < 4; t++) acc[r][t] = vdupq_n_s32(0);
    for (int j = 0; j < 16; j++) {
        int8x16_t qv[2];
        UNROLL
        for (int r = 0; r < R; r++) qv[r] = vld1q_s8(C[r]->q + 16 * j);
        UNROLL
        for (int t = 0; t < T; t++) {
            const int8x16_t xv = vld1q_s8(X[t]->qs + 16 * j);
            UNROLL
            for (int r = 0; r < R; r++) acc[r][t] = kmla16(acc[r][t], qv[r], xv, C[r]->sc[j]);
        }
    }
    float dx[4];
    UNROLL
    for (int t = 0; t < 4; t++) dx[t] = t < T ? X[t]->d : 0.0f;
    const float32x4_t dxv = {dx[0], dx[1], dx[2], dx[3]};
    UNROLL
    for (int r = 0; r < R; r++) {
        int32x4_t im[4];
        UNROLL
        for (int t = 0; t < 4; t++) im[t] = t < T ? dot16_s16(C[r]->mn, X[t]->bsums) : vdupq_n_s32(0);
        s[r] = k_update(s[r], vdupq_n_f32(C[r]->d), vdupq_n_f32(C[r]->dmin), dxv,
                        hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]), hsum4(im[0], im[1], im[2], im[3]));
    }
}

/* Generation: one weight row against G groups of 4 activation rows. */
INL void dec_k_row(uint32_t type, size_t wsz, const uint8_t *wr, const uint8_t *const *xs, int64_t nsb, const int T,
                   int G, float *res) {
    KCan c;
    if (T == 1) { /* the reference's own scalar steps, one token */
        const BlockQ8_K *x = (const BlockQ8_K *)xs[0];
        float s = 0.0f;
        for (int64_t b = 0; b < nsb; b++) {
            unpack_k(type, wr + (size_t)b * wsz, &c);
            int32x4_t acc = vdupq_n_s32(0);
            for (int j = 0; j < 16; j++) acc = kmla16(acc, vld1q_s8(c.q + 16 * j), vld1q_s8(x[b].qs + 16 * j), c.sc[j]);
            const int32_t isum = vaddvq_s32(acc), imin = vaddvq_s32(dot16_s16(c.mn, x[b].bsums));
            s += (c.d * x[b].d) * (float)isum - (c.dmin * x[b].d) * (float)imin;
        }
        res[0] = s;
        return;
    }
    float32x4_t s[DEC_MAX_TOK / 4];
    for (int g = 0; g < G; g++) s[g] = vdupq_n_f32(0.0f);
    const KCan *C[1] = {&c};
    for (int64_t b = 0; b < nsb; b++) {
        unpack_k(type, wr + (size_t)b * wsz, &c);
        for (int g = 0; g < G; g++) {
            const BlockQ8_K *X[4];
            for (int t = 0; t < 4; t++) X[t] = (const BlockQ8_K *)xs[4 * g + (t < T ? t : 0)] + b;
            k_tile(C, X, 1, T, &s[g]);
        }
    }
    for (int g = 0; g < G; g++) vst1q_f32(res + 4 * g, s[g]);
}

/* ---- the generation path ----------------------------------------------------- */

/* Rows [r0, r1) against n_tok (< DEC_MAX_TOK) activation rows; 1 or 2
 * tokens get their own kernels, more go 4 to a vector (the last group
 * padded with the first token, whose extra lanes are dropped). */
#define DEC_BODY(FN, TYPE, NBLK)                                                                                \
    do {                                                                                                        \
        const size_t wsz = type_info(TYPE)->type_size;                                                          \
        const int T = n_tok == 1 ? 1 : n_tok == 2 ? 2 : 4, G = (n_tok + 3) / 4;                                 \
        const uint8_t *xs[DEC_MAX_TOK];                                                                         \
        for (int t = 0; t < 4 * G; t++) xs[t] = x + (size_t)(t < n_tok ? t : 0) * xrb;                          \
        for (int64_t r = r0; r < r1; r++) {                                                                     \
            float res[DEC_MAX_TOK];                                                                             \
            const uint8_t *wr = w + (size_t)r * wrb;                                                            \
            if (T == 1) FN(TYPE, wsz, wr, xs, NBLK, 1, 1, res);                                                 \
            else if (T == 2) FN(TYPE, wsz, wr, xs, NBLK, 2, 1, res);                                            \
            else FN(TYPE, wsz, wr, xs, NBLK, 4, G, res);                                                        \
            for (int t = 0; t < n_tok; t++) out[(int64_t)t * os + r] = res[t];                                  \
        }                                                                                                       \
    } while (0)

#define DEC_FN(NAME, FN, TYPE, NBLK_DIV)                                                                        \
    static void NAME(const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok, float *out, \
                     int64_t os, int64_t r0, int64_t r1) {                                                      \
        DEC_BODY(FN, TYPE, n / NBLK_DIV);                                                                       \
    }
DEC_FN(dec_q4_0, dec_a_row, GGML_TYPE_Q4_0, 32)
DEC_FN(dec_q4_1, dec_a_row, GGML_TYPE_Q4_1, 32)
DEC_FN(dec_q5_0, dec_a_row, GGML_TYPE_Q5_0, 32)
DEC_FN(dec_q5_1, dec_a_row, GGML_TYPE_Q5_1, 32)
DEC_FN(dec_q8_0, dec_a_row, GGML_TYPE_Q8_0, 32)
DEC_FN(dec_q2_K, dec_k_row, GGML_TYPE_Q2_K, QK_K)
DEC_FN(dec_q3_K, dec_k_row, GGML_TYPE_Q3_K, QK_K)
DEC_FN(dec_q4_K, dec_k_row, GGML_TYPE_Q4_K, QK_K)
DEC_FN(dec_q5_K, dec_k_row, GGML_TYPE_Q5_K, QK_K)
DEC_FN(dec_q6_K, dec_k_row, GGML_TYPE_Q6_K, QK_K)

typedef void (*DecFn)(const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok, float *out,
                      int64_t os, int64_t r0, int64_t r1);

static DecFn dec_fn(uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q4_0: return dec_q4_0;
    case GGML_TYPE_Q4_1: return dec_q4_1;
    case GGML_TYPE_Q5_0: return dec_q5_0;
    case GGML_TYPE_Q5_1: return dec_q5_1;
    case GGML_TYPE_Q8_0: return dec_q8_0;
    case GGML_TYPE_Q2_K: return dec_q2_K;
    case GGML_TYPE_Q3_K: return dec_q3_K;
    case GGML_TYPE_Q4_K: return dec_q4_K;
    case GGML_TYPE_Q5_K: return dec_q5_K;
    case GGML_TYPE_Q6_K: return dec_q6_K;
    default: return NULL;
    }
}

/* Any number of tokens through the generation path, DEC_MAX_TOK - 1 at a
 * time (the prompt path's fallback when it cannot allocate). */
static void dec_all(DecFn f, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok,
                    float *out, int64_t os, int64_t r0, int64_t r1) {
    for (int t = 0; t < n_tok; t += DEC_MAX_TOK - 1) {
        const int nt = n_tok - t < DEC_MAX_TOK - 1 ? n_tok - t : DEC_MAX_TOK - 1;
        f(w, wrb, x + (size_t)t * xrb, xrb, n, nt, out + (int64_t)t * os, os, r0, r1);
    }
}

/* ---- the prompt path -------------------------------------------------------- */

static inline int imin(int64_t a, int64_t b) { return (int)(a < b ? a : b); }

#if ARM_LEVEL >= 3
/* i8mm. Two rows a, b (or two tokens) interleaved by 8 bytes: for each 16
 * bytes of a and b, [a 0-7, b 0-7], [a 8-15, b 8-15]. */
INL void zip8(int8_t *dst, const int8_t *a, const int8_t *b, int64_t n16) {
    for (int64_t i = 0; i < n16; i++) {
        const int64x2_t va = vreinterpretq_s64_s8(vld1q_s8(a + 16 * i)), vb = vreinterpretq_s64_s8(vld1q_s8(b + 16 * i));
        vst1q_s8(dst + 32 * i, vreinterpretq_s8_s64(vzip1q_s64(va, vb)));
        vst1q_s8(dst + 32 * i + 16, vreinterpretq_s8_s64(vzip2q_s64(va, vb)));
    }
}

/* 32-value blocks: a row pair as interleaved levels plus per block the
 * lanes [d0, d0, d1, d1] and [m0, m0, m1, m1]; a token pair as
 * interleaved levels plus [dx0, dx1, dx0, dx1] and [sx0, sx1, sx0, sx1]. */
typedef struct {
    int8_t *q;
    float *d, *m;
} PairA;

static size_t pair_a_bytes(int64_t nb) { return (size_t)nb * (64 + 32); }

static void pair_a_at(PairA *p, uint8_t *mem, int64_t nb) {
    p->q = (int8_t *)mem;
    p->d = (float *)(mem + 64 * nb);
    p->m = p->d + 4 * nb;
}

INL void unpack_a_pair(uint32_t type, size_t wsz, const uint8_t *ra, const uint8_t *rb, int64_t nb, const PairA *p) {
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t al, ah, bl, bh;
        float da, ma, db, mb;
        load_a(type, ra + (size_t)b * wsz, &al, &ah, &da, &ma);
        load_a(type, rb + (size_t)b * wsz, &bl, &bh, &db, &mb);
        int8_t *o = p->q + 64 * b;
        const int64x2_t a0 = vreinterpretq_s64_s8(al), a1 = vreinterpretq_s64_s8(ah);
        const int64x2_t b0 = vreinterpretq_s64_s8(bl), b1 = vreinterpretq_s64_s8(bh);
        vst1q_s8(o, vreinterpretq_s8_s64(vzip1q_s64(a0, b0)));
        vst1q_s8(o + 16, vreinterpretq_s8_s64(vzip2q_s64(a0, b0)));
        vst1q_s8(o + 32, vreinterpretq_s8_s64(vzip1q_s64(a1, b1)));
        vst1q_s8(o + 48, vreinterpretq_s8_s64(vzip2q_s64(a1, b1)));
        const float dd[4] = {da, da, db, db}, mm[4] = {ma, ma, mb, mb};
        vst1q_f32(p->d + 4 * b, vld1q_f32(dd));
        vst1q_f32(p->m + 4 * b, vld1q_f32(mm));
    }
}

INL void prep_x_pair(bool q81, const uint8_t *xa, const uint8_t *xb, int64_t nb, const PairA *p) {
    const size_t xsz = q81 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0), xo = q81 ? 4 : 2;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pa = xa + (size_t)b * xsz, *pb = xb + (size_t)b * xsz;
        int8_t *o = p->q + 64 * b;
        zip8(o, (const int8_t *)pa + xo, (const int8_t *)pb + xo, 2);
        const float da = h2f(pa), db = h2f(pb), sa = q81 ? h2f(pa + 2) : 0.0f, sb = q81 ? h2f(pb + 2) : 0.0f;
        const float dd[4] = {da, db, da, db}, ss[4] = {sa, sb, sa, sb};
        vst1q_f32(p->d + 4 * b, vld1q_f32(dd));
        vst1q_f32(p->m + 4 * b, vld1q_f32(ss));
    }
}

/* a row pair against NP token pairs (1 or 2): s[p] lanes [r0 t0, r0 t1, r1 t0, r1 t1] */
INL void tile_a_i8mm(const PairA *W, const PairA *X, int64_t nb, const int NP, float32x4_t *s) {
    for (int p = 0; p < NP; p++) s[p] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *wq = W->q + 64 * b;
        const int8x16_t w0 = vld1q_s8(wq), w1 = vld1q_s8(wq + 16), w2 = vld1q_s8(wq + 32), w3 = vld1q_s8(wq + 48);
        const float32x4_t dv = vld1q_f32(W->d + 4 * b), mv = vld1q_f32(W->m + 4 * b);
        UNROLL
        for (int p = 0; p < NP; p++) {
            const int8_t *xq = X[p].q + 64 * b;
            int32x4_t acc = vmmlaq_s32(vdupq_n_s32(0), w0, vld1q_s8(xq));
            acc = vmmlaq_s32(acc, w1, vld1q_s8(xq + 16));
            acc = vmmlaq_s32(acc, w2, vld1q_s8(xq + 32));
            acc = vmmlaq_s32(acc, w3, vld1q_s8(xq + 48));
            s[p] = a_update(s[p], dv, vld1q_f32(X[p].d + 4 * b), mv, vld1q_f32(X[p].m + 4 * b), acc);
        }
    }
}

static int pre_a(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok,
                 float *out, int64_t os, int64_t r0, int64_t r1) {
    const int64_t nb = n / 32;
    const size_t wsz = type_info(type)->type_size, pb = pair_a_bytes(nb);
    const bool q81 = vec_dot_type(type) == GGML_TYPE_Q8_1;
    uint8_t *buf = malloc((size_t)(RGROUP / 2 + 2) * pb);
    if (!buf) return -1;
    PairA wp[RGROUP / 2], xp[2];
    for (int i = 0; i < RGROUP / 2; i++) pair_a_at(&wp[i], buf + (size_t)i * pb, nb);
    for (int i = 0; i < 2; i++) pair_a_at(&xp[i], buf + (size_t)(RGROUP / 2 + i) * pb, nb);
    for (int64_t rs = r0; rs < r1; rs += RGROUP) {
        const int nr = imin(RGROUP, r1 - rs);
        for (int i = 0; i < nr; i += 2) /* an odd last row is paired with itself */
            unpack_a_pair(type, wsz, w + (size_t)(rs + i) * wrb, w + (size_t)(rs + (i + 1 < nr ? i + 1 : i)) * wrb, nb,
                          &wp[i / 2]);
        for (int t0 = 0; t0 < n_tok; t0 += 4) {
            const int nt = imin(4, n_tok - t0), np = (nt + 1) / 2;
            for (int p = 0; p < np; p++) {
                const int ta = t0 + 2 * p, tb = ta + 1 < n_tok ? ta + 1 : ta;
                prep_x_pair(q81, x + (size_t)ta * xrb, x + (size_t)tb * xrb, nb, &xp[p]);
            }
            for (int i = 0; i < nr; i += 2) {
                float32x4_t s[2];
                if (np == 2) tile_a_i8mm(&wp[i / 2], xp, nb, 2, s);
                else tile_a_i8mm(&wp[i / 2], xp, nb, 1, s);
                for (int p = 0; p < np; p++) {
                    float v[4];
                    vst1q_f32(v, s[p]);
                    for (int rr = 0; rr < 2 && i + rr < nr; rr++)
                        for (int tt = 0; tt < 2 && t0 + 2 * p + tt < n_tok; tt++)
                            out[(int64_t)(t0 + 2 * p + tt) * os + rs + i + rr] = v[2 * rr + tt];
                }
            }
        }
    }
    free(buf);
    return 0;
}

/* K-quants: a row pair per super-block as interleaved levels, the scales
 * as lanes [sc0, sc0, sc1, sc1] per 16 values, the two rows' mins and
 * [d0, d0, d1, d1], [dmin0, dmin0, dmin1, dmin1]. */
typedef struct {
    int8_t q[2 * QK_K];
    int32_t sc[16][4];
    int16_t mn[2][16];
    float d[4], dmin[4];
} PairK;

typedef struct {
    int8_t q[2 * QK_K];
    const int16_t *bs[2];
    float d[4];
} PairXK;

INL void unpack_k_pair(uint32_t type, const uint8_t *ra, const uint8_t *rb, PairK *p) {
    KCan a, b;
    unpack_k(type, ra, &a);
    unpack_k(type, rb, &b);
    zip8(p->q, a.q, b.q, QK_K / 16);
    for (int j = 0; j < 16; j++) {
        p->sc[j][0] = p->sc[j][1] = a.sc[j], p->sc[j][2] = p->sc[j][3] = b.sc[j];
        p->mn[0][j] = a.mn[j], p->mn[1][j] = b.mn[j];
    }
    p->d[0] = p->d[1] = a.d, p->d[2] = p->d[3] = b.d;
    p->dmin[0] = p->dmin[1] = a.dmin, p->dmin[2] = p->dmin[3] = b.dmin;
}

INL void tile_k_i8mm(const PairK *W, const PairXK *X, int64_t nsb, const int NP, float32x4_t *s) {
    for (int p = 0; p < NP; p++) s[p] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nsb; b++) {
        const PairK *wb = W + b;
        int32x4_t acc[2] = {vdupq_n_s32(0), vdupq_n_s32(0)};
        for (int j = 0; j < 16; j++) {
            const int8x16_t w0 = vld1q_s8(wb->q + 32 * j), w1 = vld1q_s8(wb->q + 32 * j + 16);
            const int32x4_t sc = vld1q_s32(wb->sc[j]);
            UNROLL
            for (int p = 0; p < NP; p++) {
                const int8_t *xq = X[p * nsb + b].q + 32 * j;
                const int32x4_t m = vmmlaq_s32(vmmlaq_s32(vdupq_n_s32(0), w0, vld1q_s8(xq)), w1, vld1q_s8(xq + 16));
                acc[p] = vmlaq_s32(acc[p], m, sc);
            }
        }
        for (int p = 0; p < NP; p++) {
            const PairXK *xb = &X[p * nsb + b];
            const int32x4_t im = hsum4(dot16_s16(wb->mn[0], xb->bs[0]), dot16_s16(wb->mn[0], xb->bs[1]),
                                       dot16_s16(wb->mn[1], xb->bs[0]), dot16_s16(wb->mn[1], xb->bs[1]));
            s[p] = k_update(s[p], vld1q_f32(wb->d), vld1q_f32(wb->dmin), vld1q_f32(xb->d), acc[p], im);
        }
    }
}

static int pre_k(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok,
                 float *out, int64_t os, int64_t r0, int64_t r1) {
    const int64_t nsb = n / QK_K;
    const size_t wsz = type_info(type)->type_size;
    PairK *wp = malloc((size_t)(RGROUP / 2) * (size_t)nsb * sizeof(PairK));
    PairXK *xp = malloc(2 * (size_t)nsb * sizeof(PairXK));
    if (!wp || !xp) {
        free(wp), free(xp);
        return -1;
    }
    for (int64_t rs = r0; rs < r1; rs += RGROUP) {
        const int nr = imin(RGROUP, r1 - rs);
        for (int i = 0; i < nr; i += 2) {
            const uint8_t *ra = w + (size_t)(rs + i) * wrb, *rb = w + (size_t)(rs + (i + 1 < nr ? i + 1 : i)) * wrb;
            for (int64_t b = 0; b < nsb; b++)
                unpack_k_pair(type, ra + (size_t)b * wsz, rb + (size_t)b * wsz, &wp[(size_t)(i / 2) * nsb + b]);
        }
        for (int t0 = 0; t0 < n_tok; t0 += 4) {
            const int nt = imin(4, n_tok - t0), np = (nt + 1) / 2;
            for (int p = 0; p < np; p++) {
                const int ta = t0 + 2 * p, tb = ta + 1 < n_tok ? ta + 1 : ta;
                const BlockQ8_K *xa = (const BlockQ8_K *)(x + (size_t)ta * xrb), *xb = (const BlockQ8_K *)(x + (size_t)tb * xrb);
                for (int64_t b = 0; b < nsb; b++) {
                    PairXK *o = &xp[p * nsb + b];
                    zip8(o->q, xa[b].qs, xb[b].qs, QK_K / 16);
                    o->bs[0] = xa[b].bsums, o->bs[1] = xb[b].bsums;
                    o->d[0] = o->d[2] = xa[b].d, o->d[1] = o->d[3] = xb[b].d;
                }
            }
            for (int i = 0; i < nr; i += 2) {
                float32x4_t s[2];
                if (np == 2) tile_k_i8mm(wp + (size_t)(i / 2) * nsb, xp, nsb, 2, s);
                else tile_k_i8mm(wp + (size_t)(i / 2) * nsb, xp, nsb, 1, s);
                for (int p = 0; p < np; p++) {
                    float v[4];
                    vst1q_f32(v, s[p]);
                    for (int rr = 0; rr < 2 && i + rr < nr; rr++)
                        for (int tt = 0; tt < 2 && t0 + 2 * p + tt < n_tok; tt++)
                            out[(int64_t)(t0 + 2 * p + tt) * os + rs + i + rr] = v[2 * rr + tt];
                }
            }
        }
    }
    free(wp), free(xp);
    return 0;
}

#else /* NEON, dotprod: canonical rows, register tiles of 2 rows x 4 tokens */

/* 32-value blocks: a weight row's signed levels, scales and offsets. */
typedef struct {
    int8_t *q;
    float *d, *m;
} RowA;

static size_t row_a_bytes(int64_t nb) { return (size_t)nb * (32 + 8); }

INL void tile_a(const RowA *const *W, const uint8_t *const *xs, const float *dx4, const float *sx4, int64_t nb,
                size_t xsz, size_t xo, const int R, float32x4_t *s) {
    UNROLL
    for (int r = 0; r < R; r++) s[r] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t wl[2], wh[2];
        UNROLL
        for (int r = 0; r < R; r++) wl[r] = vld1q_s8(W[r]->q + 32 * b), wh[r] = vld1q_s8(W[r]->q + 32 * b + 16);
        int32x4_t acc[2][4];
        UNROLL
        for (int t = 0; t < 4; t++) {
            const int8_t *xq = (const int8_t *)xs[t] + (size_t)b * xsz + xo;
            const int8x16_t xl = vld1q_s8(xq), xh = vld1q_s8(xq + 16);
            UNROLL
            for (int r = 0; r < R; r++) acc[r][t] = dot32(vdupq_n_s32(0), wl[r], wh[r], xl, xh);
        }
        const float32x4_t dxv = vld1q_f32(dx4 + 4 * b), sxv = vld1q_f32(sx4 + 4 * b);
        UNROLL
        for (int r = 0; r < R; r++)
            s[r] = a_update(s[r], vdupq_n_f32(W[r]->d[b]), dxv, vdupq_n_f32(W[r]->m[b]), sxv,
                            hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
    }
}

static int pre_a(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok,
                 float *out, int64_t os, int64_t r0, int64_t r1) {
    const int64_t nb = n / 32;
    const size_t wsz = type_info(type)->type_size, rb = row_a_bytes(nb);
    const bool q81 = vec_dot_type(type) == GGML_TYPE_Q8_1;
    const size_t xsz = q81 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0), xo = q81 ? 4 : 2;
    uint8_t *buf = malloc((size_t)RGROUP * rb + (size_t)nb * 32);
    if (!buf) return -1;
    RowA rows[RGROUP];
    for (int i = 0; i < RGROUP; i++) {
        uint8_t *p = buf + (size_t)i * rb;
        rows[i].q = (int8_t *)p, rows[i].d = (float *)(p + 32 * nb), rows[i].m = rows[i].d + nb;
    }
    float *dx4 = (float *)(buf + (size_t)RGROUP * rb), *sx4 = dx4 + 4 * nb;
    for (int64_t rs = r0; rs < r1; rs += RGROUP) {
        const int nr = imin(RGROUP, r1 - rs);
        for (int i = 0; i < nr; i++) {
            const uint8_t *src = w + (size_t)(rs + i) * wrb;
            for (int64_t b = 0; b < nb; b++) {
                int8x16_t lo, hi;
                load_a(type, src + (size_t)b * wsz, &lo, &hi, &rows[i].d[b], &rows[i].m[b]);
                vst1q_s8(rows[i].q + 32 * b, lo), vst1q_s8(rows[i].q + 32 * b + 16, hi);
            }
        }
        for (int t0 = 0; t0 < n_tok; t0 += 4) {
            const int nt = imin(4, n_tok - t0);
            const uint8_t *xs[4];
            for (int t = 0; t < 4; t++) xs[t] = x + (size_t)(t0 + (t < nt ? t : 0)) * xrb;
            for (int64_t b = 0; b < nb; b++)
                for (int t = 0; t < 4; t++) {
                    const uint8_t *xb = xs[t] + (size_t)b * xsz;
                    dx4[4 * b + t] = h2f(xb), sx4[4 * b + t] = q81 ? h2f(xb + 2) : 0.0f;
                }
            for (int i = 0; i < nr; i += 2) {
                const RowA *W[2] = {&rows[i], &rows[i + 1 < nr ? i + 1 : i]};
                const int R = i + 1 < nr ? 2 : 1;
                float32x4_t s[2];
                if (R == 2) tile_a(W, xs, dx4, sx4, nb, xsz, xo, 2, s);
                else tile_a(W, xs, dx4, sx4, nb, xsz, xo, 1, s);
                for (int r = 0; r < R; r++) {
                    float v[4];
                    vst1q_f32(v, s[r]);
                    for (int t = 0; t < nt; t++) out[(int64_t)(t0 + t) * os + rs + i + r] = v[t];
                }
            }
        }
    }
    free(buf);
    return 0;
}

static int pre_k(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok,
                 float *out, int64_t os, int64_t r0, int64_t r1) {
    const int64_t nsb = n / QK_K;
    const size_t wsz = type_info(type)->type_size;
    KCan *cw = malloc((size_t)RGROUP * (size_t)nsb * sizeof(KCan));
    if (!cw) return -1;
    for (int64_t rs = r0; rs < r1; rs += RGROUP) {
        const int nr = imin(RGROUP, r1 - rs);
        for (int i = 0; i < nr; i++)
            for (int64_t b = 0; b < nsb; b++) unpack_k(type, w + (size_t)(rs + i) * wrb + (size_t)b * wsz, &cw[(size_t)i * nsb + b]);
        for (int t0 = 0; t0 < n_tok; t0 += 4) {
            const int nt = imin(4, n_tok - t0);
            const BlockQ8_K *xs[4];
            for (int t = 0; t < 4; t++) xs[t] = (const BlockQ8_K *)(x + (size_t)(t0 + (t < nt ? t : 0)) * xrb);
            for (int i = 0; i < nr; i += 2) {
                const int R = i + 1 < nr ? 2 : 1;
                float32x4_t s[2] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
                for (int64_t b = 0; b < nsb; b++) {
                    const KCan *C[2] = {&cw[(size_t)i * nsb + b], &cw[(size_t)(i + R - 1) * nsb + b]};
                    const BlockQ8_K *X[4] = {xs[0] + b, xs[1] + b, xs[2] + b, xs[3] + b};
                    if (R == 2) k_tile(C, X, 2, 4, s);
                    else k_tile(C, X, 1, 4, s);
                }
                for (int r = 0; r < R; r++) {
                    float v[4];
                    vst1q_f32(v, s[r]);
                    for (int t = 0; t < nt; t++) out[(int64_t)(t0 + t) * os + rs + i + r] = v[t];
                }
            }
        }
    }
    free(cw);
    return 0;
}
#endif

/* ---- entry ------------------------------------------------------------------ */

void ARM_ENTRY(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok,
               float *out, int64_t os, int64_t r0, int64_t r1) {
    const DecFn dec = dec_fn(type);
    if (!dec || n_tok <= 0 || r1 <= r0) return;
    if (n_tok < DEC_MAX_TOK) {
        dec(w, wrb, x, xrb, n, n_tok, out, os, r0, r1);
        return;
    }
    const bool kq = type_info(type)->block_size == QK_K;
    const int rc = kq ? pre_k(type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1)
                      : pre_a(type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1);
    if (rc != 0) dec_all(dec, w, wrb, x, xrb, n, n_tok, out, os, r0, r1); /* out of memory: same results */
}

#else
typedef int quant_arm_kern_empty; /* not an aarch64 build */
#endif
