/* kernels_cuda.h - launchers of kernels_cuda.cu (CUDA C++ only): the CUDA
 * backend's operations that do not read weights. Every pointer is device
 * memory; every launcher queues its work on the stream and returns the
 * launch's error. */
#ifndef GROK_KERNELS_CUDA_H
#define GROK_KERNELS_CUDA_H

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "quant.h"
}

#define CK_ATT_THREADS 256 /* threads of an attention block (8 warps: 8 positions at once) */

/* The KV cache: (n_layer, n_seq, n_head_kv, n_ctx) rows of one head's keys
 * (k_head bytes) / values (v_head bytes), types F32, F16 or BF16. */
typedef struct {
    float *q, *k;              /* (n_tok, q_dim), (n_tok, kv_dim): rotated in place */
    const float *v;            /* (n_tok, kv_dim) */
    const int *pos, *seq;      /* (n_tok) */
    const float *inv_freq;     /* (hd / 2) */
    uint8_t *k_cache, *v_cache;
    uint32_t kt, vt;
    size_t k_head, v_head;
    int layer, n_seq, n_ctx, n_head, n_head_kv, hd, q_dim, kv_dim;
} CkRope;

typedef struct {
    const float *q;            /* (n_tok, q_dim) after RoPE */
    const int *pos, *seq;
    const uint8_t *k_cache, *v_cache;
    uint32_t kt, vt;
    size_t k_head, v_head;
    int layer, n_seq, n_ctx, n_head, n_head_kv, group, hd, q_dim;
    float scale, cap;          /* attn_scale, attn_softcap (0 = off) */
    int temp_len;              /* Grok-2 attention temperature length, 0 = off */
    float *out;                /* (n_tok, q_dim) */
} CkAttn;

typedef struct {
    const uint8_t *tmp;        /* the moved range's rows (see k_shift) */
    uint8_t *k_cache, *v_cache;
    const float *inv_freq;
    uint32_t kt;
    size_t k_head, v_head;
    int seq, p0, n, delta, n_seq, n_ctx, n_head_kv, hd;
} CkShift;

cudaError_t ck_rmsnorm(float *y, const float *x, const float *w, int n_tok, int n, float eps, cudaStream_t st);
cudaError_t ck_add_rmsnorm(float *x, float *y, const float *w, int n_tok, int n, float eps, cudaStream_t st);
cudaError_t ck_rope_store(const CkRope *a, int n_tok, cudaStream_t st);
/* Dynamic shared memory of an attention block over n_ctx positions, and
 * the one-time raise of the kernel's limit to it. */
size_t ck_attention_smem(int hd, int n_ctx);
cudaError_t ck_attention_setup(size_t smem);
cudaError_t ck_attention(const CkAttn *a, int n_tok, cudaStream_t st);
/* Routing of n_tok tokens and the grouping of their assignments by expert;
 * inv (n_tok * n_used): each assignment's place in order. */
cudaError_t ck_route(const float *router, const float *u, int n_tok, int n_embd, int n_expert, int n_used, float cap,
                     int *sel, float *gate, int *ex_start, int *order, int *inv, cudaStream_t st);
cudaError_t ck_gather(const float *x, const int *order, int na, int n_used, int64_t n, float *out, cudaStream_t st);
cudaError_t ck_combine(const float *gate, const int *inv, const float *down, int n_tok, int n_used, int n, float *out,
                       cudaStream_t st);
cudaError_t ck_geglu(float *g, const float *u, int64_t n, cudaStream_t st);
cudaError_t ck_add_scale(float *y, const float *x, float s, int64_t n, cudaStream_t st);
cudaError_t ck_softcap(float *x, int64_t n, float scale, float cap, cudaStream_t st);
/* out[i] = x[rows[i]] (width floats a row) */
cudaError_t ck_rows(const float *x, const int *rows, int n, int width, float *out, cudaStream_t st);
cudaError_t ck_shift(const CkShift *a, int n_layer, cudaStream_t st);

#endif
