/* quant_arm.h - the aarch64 (ARM64) kernels behind quant.c's dispatch:
 * which ARM SIMD level the CPU has (NEON, + dotprod/SDOT, + i8mm/SMMLA),
 * the float dot products and the quantized matrix kernels for every weight
 * type grok.c reads. Internal to src/engine/cpu/: quant.c calls these only
 * when built for aarch64 and at an ARM level (SIMD_NEON and up, quant.h).
 *
 * The quantized kernels give the same floats as the scalar reference
 * (vec_dot_ref) bit for bit, at every level and in both paths (generation,
 * prompt): their integer sums are exact, and the float scaling and
 * accumulation happen in the reference's order, lane by lane. The float
 * dot products (F32/F16/BF16) use vector accumulators, like the x86 ones,
 * so they agree with the reference to rounding only.
 *
 * Files: quant_arm.c (detection, float kernels, the level dispatch) and
 * quant_arm_kern.h, the quantized kernels, compiled three times with
 * different -march flags (quant_arm_neon.c, quant_arm_dotprod.c,
 * quant_arm_i8mm.c; CMakeLists.txt sets the flags), so each level's code
 * only runs on CPUs that have its instructions. */
#ifndef GROK_QUANT_ARM_H
#define GROK_QUANT_ARM_H

#include <stddef.h>
#include <stdint.h>

/* The best level this CPU supports: SIMD_NEON, SIMD_DOTPROD or SIMD_I8MM
 * (Linux: getauxval HWCAP/HWCAP2; macOS: sysctlbyname hw.optional.arm.*). */
int quant_arm_detect(void);

/* Float weights: NULL if the type is not F32/F16/BF16. */
typedef float (*QuantArmDotFn)(const void *w, const void *x, int64_t n);
QuantArmDotFn quant_arm_float_dot(uint32_t type);
/* y[i] += a * x[i], x F32 or F16. */
void quant_arm_mad(uint32_t type, float *y, float a, const void *x, int64_t n);
/* vec_geglu and softcap_softmax (quant.h), NEON. */
void quant_arm_geglu(float *g, const float *u, int64_t n);
void quant_arm_softcap_softmax(float *s, int64_t n, float scale, float cap, float temp);

/* matmul_rows (quant.h) for a quantized weight type at an ARM level. */
void quant_arm_matmul(int level, uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n,
                      int n_tok, float *out, int64_t os, int64_t r0, int64_t r1);

/* The per-level entry points (quant_arm_kern.h). */
#define QUANT_ARM_MATMUL_PARAMS                                                                                   \
    uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok, float *out, \
        int64_t os, int64_t r0, int64_t r1
void quant_arm_matmul_neon(QUANT_ARM_MATMUL_PARAMS);
void quant_arm_matmul_dotprod(QUANT_ARM_MATMUL_PARAMS);
void quant_arm_matmul_i8mm(QUANT_ARM_MATMUL_PARAMS);

#endif
