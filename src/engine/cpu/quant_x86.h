/* quant_x86.h - the x86-64 kernels (AVX2, AVX-512 VNNI) behind quant.c's
 * public functions; internal to src/engine/cpu. Each is called only at a
 * level the CPU supports (quant_x86_detect). */
#ifndef GROK_QUANT_X86_H
#define GROK_QUANT_X86_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant_internal.h"

/* SIMD_AVX512 / SIMD_AVX2 / SIMD_SCALAR: what this CPU runs */
int quant_x86_detect(void);

/* matmul_rows_level for the quantized weight types (level >= SIMD_AVX2) */
void quant_x86_matmul(int level, uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n,
                      int n_tok, float *out, int64_t os, int64_t r0, int64_t r1);

/* the AVX-512 generation kernel for the 32-value block types
 * (quant_x86_dec512.c): matmul_rows_level for a few tokens, bit-identical to
 * the AVX-512 prompt path; false (nothing written) if it cannot run it */
bool quant_x86_dec_a_avx512(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n,
                            int n_tok, float *out, int64_t os, int64_t r0, int64_t r1);
/* the same for Q4_K, Q5_K and Q6_K (false for the other K-quants) */
bool quant_x86_dec_k_avx512(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n,
                            int n_tok, float *out, int64_t os, int64_t r0, int64_t r1);
/* the AVX2 kernels for the 32-value block types (quant_x86_a2.c):
 * matmul_rows_level at SIMD_AVX2, the prompt path (any token count, made
 * for 16 and more) and the generation path (a few tokens); both give the
 * same bits for every (row, token) pair */
void quant_x86_a2_pre(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok,
                      float *out, int64_t os, int64_t r0, int64_t r1);
void quant_x86_a2_dec(uint32_t type, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, int64_t n, int n_tok,
                      float *out, int64_t os, int64_t r0, int64_t r1);
/* AVX2 generation kernels for the K-quants (quant_x86_k2.c): nr weight rows
 * (wrb bytes apart, nsb super-blocks each) against n_tok Q8_K rows xs[t];
 * out[t * os + r] */
void quant_x86_k2_dec(uint32_t type, const uint8_t *w, size_t wrb, int64_t nr, const void *const *xs, int n_tok,
                      int64_t nsb, float *out, int64_t os);

/* its prompt tiles: nr canonical weight rows W[i] (nsb super-blocks each)
 * against T (1, 2 or 4) Q8_K rows X[t]; out[t * os + i] */
void quant_x86_k2_group(const CanonK *const *W, int nr, const BlockQ8_K *const *X, int T, int64_t nsb, float *out,
                        int64_t os);

/* float weights (AVX2) */
float dot_f32_avx2(const float *w, const float *x, int64_t n);
float dot_f16_avx2(const uint16_t *w, const float *x, int64_t n);
float dot_bf16_avx2(const uint16_t *w, const float *x, int64_t n);
void mad_f32_avx2(float *y, float a, const float *x, int64_t n);
void mad_f16_avx2(float *y, float a, const uint16_t *x, int64_t n);

/* activation quantizers: the same bytes as the scalar reference */
void quantize_q8_0_avx2(const float *x, BlockQ8_0 *y, int64_t nb);
void quantize_q8_1_avx2(const float *x, BlockQ8_1 *y, int64_t nb);
void quantize_q8_K_avx2(const float *x, BlockQ8_K *y, int64_t nb);

/* GEGLU, attention rows (F32/F16 KV cache), soft-capped softmax */
void geglu_avx2(float *g, const float *u, int64_t n);
void dot_rows_avx512(uint32_t type, const uint8_t *rows, size_t row_bytes, int64_t n_rows, const float *x, int64_t n,
                     float *out);
void mad_rows_avx512(uint32_t type, float *o, const float *w, const uint8_t *rows, size_t row_bytes, int64_t n_rows,
                     int64_t n);
void softcap_softmax_avx2(float *s, int64_t n, float scale, float cap, float temp);

#endif
