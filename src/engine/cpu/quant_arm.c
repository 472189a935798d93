/* quant_arm.c - see quant_arm.h: which ARM SIMD level the CPU has, the
 * NEON float kernels (F32/F16/BF16 weights, the F16/F32 KV cache) and the
 * dispatch to the quantized kernels of each level. Empty on other
 * architectures. */
#if defined(__aarch64__)

#include "quant_arm.h"

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "quant.h"

#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1UL << 13)
#endif
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#endif

/* ---- detection ------------------------------------------------------------ */

#if defined(__APPLE__)
static int sysctl_flag(const char *name) {
    int v = 0;
    size_t len = sizeof v;
    return sysctlbyname(name, &v, &len, NULL, 0) == 0 && v != 0;
}
#endif

int quant_arm_detect(void) {
#if defined(__linux__)
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if (!(hw & HWCAP_ASIMD)) return SIMD_SCALAR;
    if (!(hw & HWCAP_ASIMDDP)) return SIMD_NEON;
    return (hw2 & HWCAP2_I8MM) ? SIMD_I8MM : SIMD_DOTPROD;
#elif defined(__APPLE__)
    /* every Apple Silicon CPU has NEON and dotprod (M1 and later); i8mm from M2 */
    if (!sysctl_flag("hw.optional.arm.FEAT_DotProd")) return SIMD_NEON;
    return sysctl_flag("hw.optional.arm.FEAT_I8MM") ? SIMD_I8MM : SIMD_DOTPROD;
#else
    return SIMD_NEON; /* NEON is part of the aarch64 base architecture */
#endif
}

/* ---- float kernels ---------------------------------------------------------- */

static float dot_f32_neon(const void *wv, const void *xv, int64_t n) {
    const float *w = wv, *x = xv;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vld1q_f32(w + i + 4), vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(w + i + 8), vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(w + i + 12), vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static inline float32x4_t f16x4(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

static float dot_f16_neon(const void *wv, const void *xv, int64_t n) {
    const uint16_t *w = wv;
    const float *x = xv;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, f16x4(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, f16x4(w + i + 4), vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, f16x4(w + i + 8), vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, f16x4(w + i + 12), vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, f16x4(w + i), vld1q_f32(x + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) s += fp16_to_f32(w[i]) * x[i];
    return s;
}

static inline float32x4_t bf16x4(const uint16_t *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

static float dot_bf16_neon(const void *wv, const void *xv, int64_t n) {
    const uint16_t *w = wv;
    const float *x = xv;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, bf16x4(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, bf16x4(w + i + 4), vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, bf16x4(w + i + 8), vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, bf16x4(w + i + 12), vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, bf16x4(w + i), vld1q_f32(x + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) s += bf16_to_f32(w[i]) * x[i];
    return s;
}

QuantArmDotFn quant_arm_float_dot(uint32_t type) {
    switch (type) {
    case GGML_TYPE_F32: return dot_f32_neon;
    case GGML_TYPE_F16: return dot_f16_neon;
    case GGML_TYPE_BF16: return dot_bf16_neon;
    default: return NULL;
    }
}

void quant_arm_mad(uint32_t type, float *y, float a, const void *xv, int64_t n) {
    const float32x4_t va = vdupq_n_f32(a);
    int64_t i = 0;
    if (type == GGML_TYPE_F16) {
        const uint16_t *x = xv;
        for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_f32(vld1q_f32(y + i), va, f16x4(x + i)));
        for (; i < n; i++) y[i] += a * fp16_to_f32(x[i]);
    } else {
        const float *x = xv;
        for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_f32(vld1q_f32(y + i), va, vld1q_f32(x + i)));
        for (; i < n; i++) y[i] += a * x[i];
    }
}

/* ---- GEGLU and the attention softmax ------------------------------------------
 * The same evaluation as quant.c's AVX2 code (see there): exp by Cody-Waite
 * range reduction and a degree-7 polynomial, tanh from expm1, so both
 * architectures stay within a few ulp of libm. */

static inline float32x4_t exp4(float32x4_t y) {
    y = vminq_f32(vmaxq_f32(y, vdupq_n_f32(-87.0f)), vdupq_n_f32(88.0f));
    const float32x4_t k = vrndnq_f32(vmulq_f32(y, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(y, k, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, k, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.0f / 5040);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(k), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

void quant_arm_geglu(float *g, const float *u, int64_t n) {
    const float32x4_t c1 = vdupq_n_f32(-2.0f * 0.79788456080286535588f), c3 = vdupq_n_f32(0.044715f);
    const float32x4_t one = vdupq_n_f32(1.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t x = vld1q_f32(g + i);
        const float32x4_t t = vmulq_f32(vmulq_f32(x, c1), vfmaq_f32(one, vmulq_f32(x, x), c3));
        vst1q_f32(g + i, vdivq_f32(vmulq_f32(x, vld1q_f32(u + i)), vaddq_f32(one, exp4(t))));
    }
    for (; i < n; i++) {
        const float x = g[i];
        g[i] = x * u[i] / (1.0f + expf(-2.0f * 0.79788456080286535588f * x * (1.0f + 0.044715f * x * x)));
    }
}

/* expm1 for x <= 0: a polynomial near 0 (no cancellation), exp - 1 beyond */
static inline float32x4_t expm1_neg4(float32x4_t x) {
    float32x4_t p = vdupq_n_f32(1.0f / 40320);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 5040), p, x);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720), p, x);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, x);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, x);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, x);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, x);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, x);
    p = vmulq_f32(p, x);
    const float32x4_t big = vsubq_f32(exp4(x), vdupq_n_f32(1.0f));
    return vbslq_f32(vcltq_f32(x, vdupq_n_f32(-0.34657359f)), big, p);
}

/* tanh(y) = sign(y) * -m / (2 + m), m = expm1(-2|y|) */
static inline float32x4_t tanh4(float32x4_t y) {
    const float32x4_t m = expm1_neg4(vmulq_f32(vdupq_n_f32(-2.0f), vabsq_f32(y)));
    const float32x4_t t = vdivq_f32(vnegq_f32(m), vaddq_f32(vdupq_n_f32(2.0f), m));
    const uint32x4_t sign = vandq_u32(vreinterpretq_u32_f32(y), vdupq_n_u32(0x80000000u));
    return vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(t), sign));
}

void quant_arm_softcap_softmax(float *s, int64_t n, float scale, float cap, float temp) {
    const float32x4_t vs = vdupq_n_f32(scale), vc = vdupq_n_f32(cap), vt = vdupq_n_f32(temp);
    float32x4_t mx = vdupq_n_f32(-INFINITY);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vmulq_f32(vld1q_f32(s + i), vs);
        if (cap > 0.0f) v = vmulq_f32(vc, tanh4(vdivq_f32(v, vc)));
        v = vmulq_f32(v, vt);
        vst1q_f32(s + i, v);
        mx = vmaxq_f32(mx, v);
    }
    float m = vmaxvq_f32(mx);
    for (; i < n; i++) {
        float v = s[i] * scale;
        if (cap > 0.0f) v = cap * tanhf(v / cap);
        s[i] = v * temp;
        m = s[i] > m ? s[i] : m;
    }
    const float32x4_t vm = vdupq_n_f32(m);
    float32x4_t sum = vdupq_n_f32(0.0f);
    for (i = 0; i + 4 <= n; i += 4) {
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(s + i), vm));
        vst1q_f32(s + i, e);
        sum = vaddq_f32(sum, e);
    }
    double tot = vaddvq_f32(sum);
    for (; i < n; i++) tot += s[i] = expf(s[i] - m);
    const float inv = (float)(1.0 / tot);
    const float32x4_t vinv = vdupq_n_f32(inv);
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(s + i, vmulq_f32(vld1q_f32(s + i), vinv));
    for (; i < n; i++) s[i] *= inv;
}

/* ---- quantized: the level's kernels ------------------------------------------ */

void quant_arm_matmul(int level, uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n,
                      int n_tok, float *out, int64_t os, int64_t r0, int64_t r1) {
    if (level >= SIMD_I8MM) quant_arm_matmul_i8mm(type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1);
    else if (level == SIMD_DOTPROD) quant_arm_matmul_dotprod(type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1);
    else quant_arm_matmul_neon(type, w, wrb, x, xrb, n, n_tok, out, os, r0, r1);
}

#else
typedef int quant_arm_empty; /* not an aarch64 build */
#endif
