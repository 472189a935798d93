/* cuda_internal.h - what the CUDA backend's two files share (CUDA C++
 * only): the launchers of quant_cuda.cu (weights in their GGUF block
 * layouts: activation quantization, matrix x vector products, dequantized
 * tiles, embedding rows), called by backend_cuda.cu on its stream.
 *
 * The arithmetic is the CPU backend's (cpu/quant.h): activations are
 * quantized to the weight type's vec_dot_type with ggml's reference
 * rounding (Q8_0 / Q8_1: d = amax/127, q = round(x/d); Q8_K: d = max/-127,
 * q = nearest-even), integer sums per block are exact (__dp4a), and only the
 * float scaling and the order of the reduction differ from the CPU's. */
#ifndef GROK_CUDA_INTERNAL_H
#define GROK_CUDA_INTERNAL_H

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "quant.h"
}

/* Most activation rows of one matrix x vector launch pass (registers per
 * lane); a launch loops over more. */
#define CQ_MV_TOK 8
/* Warps (= weight rows) per block of the matrix x vector kernel. */
#define CQ_MV_WARPS 4

/* One matrix x vector product over 1..n experts:
 *   out[i * out_stride + r] = W_e[r] . x[i]
 * for each expert e (blockIdx.y) and its activation rows i in
 * [ex_start[e], ex_start[e + 1]) (ex_start NULL: one expert, rows
 * [0, n_tok)). */
typedef struct {
    const uint8_t *w;      /* row 0 of expert 0 (device) */
    size_t w_row_bytes;
    size_t w_expert_bytes; /* bytes from one expert's row 0 to the next's */
    int64_t rows;          /* rows of each expert */
    int64_t n;             /* values per row */
    const uint8_t *x;      /* (n_tok, x_row_bytes) activations in vec_dot_type(w type) (device) */
    size_t x_row_bytes;
    const int *ex_start;   /* (n_expert + 1) device, or NULL */
    int n_tok;             /* ex_start NULL: activation rows */
    int n_expert;          /* ex_start set: experts (grid.y) */
    float *out;            /* device */
    int64_t out_stride;
} CqMatVec;

/* True for the weight types the kernels read. */
bool cq_supported(uint32_t type);
/* x (n_tok rows of n floats, n_stride apart) to vec_dot_type rows of
 * type_row_size(vt, n) bytes; vt must be Q8_0, Q8_1 or Q8_K. */
cudaError_t cq_quantize_act(uint32_t vt, const float *x, int64_t x_stride, int n_tok, int64_t n, uint8_t *out,
                            cudaStream_t st);
/* And back to floats (the prompt path multiplies the same 8-bit values). */
cudaError_t cq_dequant_act(uint32_t vt, const uint8_t *q, int n_tok, int64_t n, float *out, cudaStream_t st);
cudaError_t cq_matvec(uint32_t wtype, const CqMatVec *a, cudaStream_t st);
/* rows of a weight (row_bytes apart, n values) to f32 (out_f32) or f16
 * (out_f16), row-major (rows, n). */
cudaError_t cq_dequant_rows(uint32_t wtype, const uint8_t *w, size_t row_bytes, int64_t rows, int64_t n,
                            float *out_f32, __half *out_f16, cudaStream_t st);
/* f32 to f16 (the f16 prompt path's activations). */
cudaError_t cq_f32_to_f16(const float *x, int64_t n, __half *out, cudaStream_t st);
/* x[t] = row tok[t] of an embedding table * scale (tok: device). */
cudaError_t cq_embed(uint32_t wtype, const uint8_t *w, size_t row_bytes, const int *tok, int n_tok, int64_t n,
                     float scale, float *x, cudaStream_t st);

#endif
