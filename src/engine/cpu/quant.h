/* quant.h - ggml tensor types: the type table, scalar conversions
 * (fp16, bf16), row (de)quantization and the dot-product / matrix kernels
 * the forward pass uses.
 *
 * A weight matrix W of ggml shape ne = [n_in, n_out] is n_out rows of n_in
 * contiguous elements; matmul computes y = W x for each activation row x.
 * Block layouts are ggml's (see ../shared/docs/gguf-and-llamacpp.md §3); the
 * structs below spell them out, and dequantize_row() is written from the
 * format definitions so that it gives the same floats as ggml, bit for bit.
 *
 * Weights are multiplied with activations quantized to 8 bits on the fly, as
 * llama.cpp does (vec_dot_type): Q8_0 blocks for Q4_0/Q5_0/Q8_0, Q8_1 for
 * Q4_1/Q5_1, Q8_K super-blocks for the K-quants. The integer sums are exact;
 * only the per-block float scaling and the final reduction round.
 *
 * Kernels exist as portable scalar code (the reference), AVX2 and AVX-512
 * (F/BW/VL/VNNI) on x86-64, NEON, NEON + dotprod and NEON + i8mm on aarch64
 * (quant_arm.h), chosen at run time from the CPU's features. The env var
 * GROK_SIMD=scalar|avx2|avx512|neon|dotprod|i8mm caps the choice
 * (benchmarks, debugging). */
#ifndef GROK_QUANT_H
#define GROK_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef enum {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_COUNT = 41
} GGMLType;

/* ---- block layouts (ggml's, little-endian; fp16 fields as raw bits) ---- */

#define QK8_0 32 /* values per Q8_0 block (also Q4_0, Q4_1, Q5_0, Q5_1, Q8_1) */
#define QK_K 256 /* values per K-quant super-block */

typedef struct {
    uint16_t d;        /* fp16 scale */
    int8_t qs[QK8_0];  /* x[j] = d * qs[j] */
} BlockQ8_0;           /* 34 bytes */

typedef struct {
    uint16_t d;        /* x[j] = d * ((qs[j] & 15) - 8), x[j+16] = d * ((qs[j] >> 4) - 8), j < 16 */
    uint8_t qs[16];
} BlockQ4_0;           /* 18 bytes */

typedef struct {
    uint16_t d, m;     /* x[j] = d * (qs[j] & 15) + m, x[j+16] = d * (qs[j] >> 4) + m */
    uint8_t qs[16];
} BlockQ4_1;           /* 20 bytes */

typedef struct {
    uint16_t d;        /* x[j] = d * (q[j] - 16), q[j] = nibble | bit j of qh (u32 LE) << 4 */
    uint8_t qh[4];     /* (values 0..15: low nibbles of qs; 16..31: high nibbles) */
    uint8_t qs[16];
} BlockQ5_0;           /* 22 bytes */

typedef struct {
    uint16_t d, m;     /* x[j] = d * q[j] + m, q as in Q5_0 */
    uint8_t qh[4];
    uint8_t qs[16];
} BlockQ5_1;           /* 24 bytes */

typedef struct {
    uint16_t d;        /* fp16 scale */
    uint16_t s;        /* fp16 of d * sum(qs) */
    int8_t qs[QK8_0];
} BlockQ8_1;           /* 36 bytes: the activations of Q4_1 / Q5_1 */

/* K-quants: 256 values in sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 32 (Q4_K,
 * Q5_K) with their own small integer scales, times fp16 super-scales. */
typedef struct {
    uint8_t scales[16]; /* sub-block j (16 values): scale = low nibble, min = high nibble */
    uint8_t qs[64];     /* 2-bit q: value 128n + 32k + l is (qs[32n + l] >> 2k) & 3 */
    uint16_t d, dmin;   /* x = d * scale * q - dmin * min */
} BlockQ2_K;            /* 84 bytes */

typedef struct {
    uint8_t hmask[32];  /* high bit of value 128n + 32k + l: hmask[l] bit 4n + k */
    uint8_t qs[64];     /* low 2 bits, laid out as in Q2_K */
    uint8_t scales[12]; /* 16 6-bit scales (stored + 32) */
    uint16_t d;         /* x = d * (scale - 32) * (q - 4), q = low | high << 2 */
} BlockQ3_K;            /* 110 bytes */

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12]; /* 8 6-bit (scale, min) pairs, see the doc §3 */
    uint8_t qs[128];    /* value 64c + l: qs[32c + l] & 15; 64c + 32 + l: qs[32c + l] >> 4 */
} BlockQ4_K;            /* 144 bytes: x = d * scale * q - dmin * min */

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12]; /* as Q4_K */
    uint8_t qh[32];     /* 5th bit of value 64c + l: qh[l] bit 2c; of 64c + 32 + l: bit 2c + 1 */
    uint8_t qs[128];    /* low 4 bits as Q4_K */
} BlockQ5_K;            /* 176 bytes */

typedef struct {
    uint8_t ql[128];    /* low 4 bits */
    uint8_t qh[64];     /* high 2 bits */
    int8_t scales[16];  /* one per 16 values */
    uint16_t d;         /* x = d * scale * (q - 32) */
} BlockQ6_K;            /* 210 bytes */

typedef struct {
    float d;            /* f32 scale */
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16]; /* sums of qs over each 16 values */
} BlockQ8_K;            /* 292 bytes: the activations of the K-quants */

typedef struct {
    const char *name;    /* "f32", "q8_0", ... (lower case, as llama.cpp prints) */
    int block_size;      /* values per block */
    size_t type_size;    /* bytes per block */
    bool compute;        /* grok.c can run matmuls with weights of this type */
} TypeInfo;

/* NULL if the id is not a known ggml type. Known but not computable types
 * (the activation-only Q8_1 / Q8_K, integer types) have compute == false. */
const TypeInfo *type_info(uint32_t type);
/* Type id from a name ("q8_0", "F16", "Q4_K", ...), -1 if unknown. */
int type_from_name(const char *name);
/* Bytes of n values (n must be a multiple of the block size). */
size_t type_row_size(uint32_t type, int64_t n);

float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);   /* round to nearest even, like F16C */
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);   /* round to nearest even; NaN stays NaN */

/* Converts n values of `type` to f32 (every type with a block layout above,
 * plus F32/F16/BF16). Other types give zeros. */
void dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);
/* Converts n f32 values (a multiple of the block size) to `type`. Returns -1
 * if the type cannot be produced. The activation formats follow ggml's
 * reference rounding exactly: Q8_0/Q8_1 d = amax/127, q = round(x/d) (half
 * away from zero); Q8_K d = max/-127 (max = the value of largest
 * magnitude), q = nearest-even(x/d). The weight formats use grok.c's own
 * least-squares search (quant.c: "weight quantizers"). */
int quantize_row(uint32_t type, const float *src, void *dst, int64_t n);
/* True if quantize_row can produce the type. */
bool type_can_quantize(uint32_t type);

/* The activation format a weight type's dot product consumes: F32 for
 * F32/F16/BF16 weights, Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K
 * for the K-quants (as llama.cpp does, so that logits agree with it). */
uint32_t vec_dot_type(uint32_t weight_type);

/* dot(w_row, x) over n values; x is already in vec_dot_type(type). The
 * result is bit-identical to the matching entry of matmul_rows. */
float vec_dot(uint32_t type, const void *w_row, const void *x, int64_t n);
/* The same with the portable scalar code: the reference the SIMD paths are
 * tested against. */
float vec_dot_ref(uint32_t type, const void *w_row, const void *x, int64_t n);

/* y[i] += a * x[i] for n values of x in F32 or F16 (the V side of
 * attention over the KV cache). */
void vec_mad(uint32_t type, float *y, float a, const void *x, int64_t n);

/* The matrix kernel: for rows r in [r0, r1) of W (rows of w_row_bytes
 * bytes, n values each) and activation rows t in [0, n_tok) (x_row_bytes
 * apart, already in vec_dot_type(type)):
 *   out[t * out_stride + r] = dot(W[r], x[t]).
 * Quantized types unpack a tile of W once into a small integer buffer and
 * run a register-blocked integer kernel over all activation rows, so prompt
 * processing reads and decodes W once per call. */
void matmul_rows(uint32_t type, const void *w, size_t w_row_bytes, const void *x, size_t x_row_bytes,
                 int64_t n, int n_tok, float *out, int64_t out_stride, int64_t r0, int64_t r1);

/* g[i] = gelu_tanh(g[i]) * u[i] for the gated experts, gelu_tanh(x) =
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (vectorised; within a
 * few ulp of the libm formula). */
void vec_geglu(float *g, const float *u, int64_t n);

/* out[j] = dot(row j, x) for n_rows rows of n values (the KV cache: F32 or
 * F16), row_bytes apart. */
void vec_dot_rows(uint32_t type, const void *rows, size_t row_bytes, int64_t n_rows, const float *x, int64_t n,
                  float *out);
/* o[i] = sum_j w[j] * row_j[i] over n_rows rows (F32 or F16) of n values,
 * row_bytes apart (o is overwritten): the V side of attention. */
void vec_mad_rows(uint32_t type, float *o, const float *w, const void *rows, size_t row_bytes, int64_t n_rows,
                  int64_t n);
/* Attention weights in place: s[j] <- softmax_j(temp * cap * tanh(scale *
 * s[j] / cap)) (cap <= 0: no cap). Vectorised tanh/exp, within a few ulp of
 * libm's. */
void softcap_softmax(float *s, int64_t n, float scale, float cap, float temp);

/* ---- SIMD levels (tests and benchmarks pick one explicitly) ---------- */

/* Two families above scalar: x86-64 (AVX2 < AVX512) and aarch64 (NEON <
 * DOTPROD < I8MM); a CPU supports scalar and the levels of its family up
 * to the best it has. Tests iterate over 0 .. SIMD_COUNT - 1. */
typedef enum {
    SIMD_SCALAR = 0,
    SIMD_AVX2 = 1,
    SIMD_AVX512 = 2,
    SIMD_NEON = 3,    /* aarch64 Advanced SIMD (every aarch64 CPU) */
    SIMD_DOTPROD = 4, /* + SDOT (ARMv8.2 dotprod: Apple M1+, Graviton2+, Ampere Altra) */
    SIMD_I8MM = 5,    /* + SMMLA (i8mm: Apple M2+, Graviton3+) */
    SIMD_COUNT = 6
} SimdLevel;

/* The level the kernels use: the best the CPU supports, capped by
 * GROK_SIMD. Detected once (a race-free cached value). */
int quant_simd_level(void);
/* True if this CPU can run kernels of that level. */
bool quant_simd_supported(int level);
/* Which SIMD path the kernels use ("avx512", "avx2", "i8mm", "dotprod",
 * "neon", "scalar"). */
const char *quant_simd_name(void);
const char *quant_simd_level_name(int level);

/* The kernels at an explicit level (it must be supported). */
float vec_dot_level(int level, uint32_t type, const void *w_row, const void *x, int64_t n);
void matmul_rows_level(int level, uint32_t type, const void *w, size_t w_row_bytes, const void *x,
                       size_t x_row_bytes, int64_t n, int n_tok, float *out, int64_t out_stride, int64_t r0,
                       int64_t r1);
/* quantize_row for activation types (Q8_0, Q8_1, Q8_K) at an explicit
 * level: every level gives the same bytes. */
int quantize_row_level(int level, uint32_t type, const float *src, void *dst, int64_t n);

#endif
