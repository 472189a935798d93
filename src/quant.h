/* quant.h - ggml tensor types: the type table, scalar conversions
 * (fp16, bf16), row (de)quantization and the dot-product / matrix kernels
 * the forward pass uses.
 *
 * A weight matrix W of ggml shape ne = [n_in, n_out] is n_out rows of n_in
 * contiguous elements; matmul computes y = W x for each activation row x.
 * Block layouts are ggml's (see ../shared/docs/gguf-and-llamacpp.md §3).
 * Adding a type means: an entry in the table, and its functions here. */
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

#define QK8_0 32 /* values per Q8_0 block */

typedef struct {
    uint16_t d;        /* fp16 scale */
    int8_t qs[QK8_0];  /* x[j] = d * qs[j] */
} BlockQ8_0;           /* 34 bytes */

typedef struct {
    const char *name;    /* "f32", "q8_0", ... (lower case, as llama.cpp prints) */
    int block_size;      /* values per block */
    size_t type_size;    /* bytes per block */
    bool compute;        /* grok.c can run matmuls with weights of this type */
} TypeInfo;

/* NULL if the id is not a known ggml type. Known but not computable types
 * (e.g. Q4_K before the quantization work) have compute == false. */
const TypeInfo *type_info(uint32_t type);
/* Type id from a name ("q8_0", "F16", ...), -1 if unknown. */
int type_from_name(const char *name);
/* Bytes of n values (n must be a multiple of the block size). */
size_t type_row_size(uint32_t type, int64_t n);

float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);   /* round to nearest even, like F16C */
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);   /* round to nearest even; NaN stays NaN */

/* Converts n values of `type` to f32. */
void dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);
/* Converts n f32 values to `type` (F32, F16, BF16, Q8_0). Returns -1 if the
 * type cannot be produced. Q8_0 follows ggml's reference rounding:
 * d = amax/127, q = round(x/d). */
int quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* The activation format a weight type's dot product consumes: F32 for
 * F32/F16/BF16 weights, Q8_0 for Q8_0 weights (as llama.cpp does, so that
 * logits agree with it). */
uint32_t vec_dot_type(uint32_t weight_type);

/* dot(w_row, x) over n values; x is already in vec_dot_type(type). */
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
 * Rows are visited in small tiles so a tile of W stays in cache while every
 * activation row passes over it (prompt processing reads W once). */
void matmul_rows(uint32_t type, const void *w, size_t w_row_bytes, const void *x, size_t x_row_bytes,
                 int64_t n, int n_tok, float *out, int64_t out_stride, int64_t r0, int64_t r1);

/* Which SIMD path the kernels use ("avx2", "scalar", ...). */
const char *quant_simd_name(void);

#endif
