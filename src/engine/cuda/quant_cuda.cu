/* quant_cuda.cu - the CUDA backend's weight kernels: every weight stays in
 * its GGUF block layout in GPU memory (cpu/quant.h spells the layouts out),
 * and is read by
 *   - k_matvec: the decode path (up to ~16 activation rows): one warp per
 *     weight row, its lanes over "units" of the row (32 values of a 32-value
 *     block type, 16 of a K-quant super-block, 8 of a float type), each unit
 *     decoded once into packed int8 levels and dotted with up to CQ_MV_TOK
 *     8-bit activation rows by __dp4a (exact integer sums, as the CPU's);
 *   - k_dequant_rows: tiles of f32 / f16 values for the prompt path, which
 *     multiplies them with cuBLAS (backend_cuda.cu);
 *   - k_embed: token rows of the embedding table.
 * Activations are quantized here too (k_quant_q8_0 / _q8_1 / _q8_K), with
 * the CPU's rounding, so that both backends multiply the same 8-bit values.
 * Owns nothing: every buffer belongs to backend_cuda.cu. */
#include "cuda_internal.h"

/* ---- loads (block fields are only 2-byte aligned: 18-, 34-, 210-byte blocks) */

__device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float bf2f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
__device__ __forceinline__ uint16_t ld16(const uint8_t *p) { return *(const uint16_t *)p; }
__device__ __forceinline__ int ld32(const uint8_t *p) { /* 4 bytes at a 2-byte aligned address */
    const uint16_t *q = (const uint16_t *)p;
    return (int)((uint32_t)q[0] | ((uint32_t)q[1] << 16));
}

#include "quant_cuda_dev.cuh"

/* ---- matrix x vector ---------------------------------------------------- */

template <int T> __global__ void __launch_bounds__(CQ_MV_WARPS * 32) k_matvec(CqMatVec a) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * CQ_MV_WARPS + warp;
    const int e = blockIdx.y;
    int t0 = 0, t1 = a.n_tok;
    if (a.ex_start) t0 = a.ex_start[e], t1 = a.ex_start[e + 1];
    if (r >= a.rows || t1 <= t0) return; /* no block-wide barrier below */
    const uint8_t *w = a.w + (size_t)e * a.w_expert_bytes + (size_t)r * a.w_row_bytes;
    const int64_t n_units = (a.n + Tr<T>::UV - 1) / Tr<T>::UV;
    for (int tc = t0; tc < t1; tc += CQ_MV_TOK) {
        const int nt = t1 - tc < CQ_MV_TOK ? t1 - tc : CQ_MV_TOK;
        float acc[CQ_MV_TOK];
#pragma unroll
        for (int t = 0; t < CQ_MV_TOK; t++) acc[t] = 0.0f;
        for (int64_t u = lane; u < n_units; u += 32) {
            Unit wu;
            load_unit<T>(w, u, a.n, wu);
#pragma unroll
            for (int t = 0; t < CQ_MV_TOK; t++)
                if (t < nt) acc[t] += dot_unit<T>(wu, a.x + (size_t)(tc + t) * a.x_row_bytes, u, a.n);
        }
#pragma unroll
        for (int t = 0; t < CQ_MV_TOK; t++) {
            float s = acc[t];
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            if (lane == 0 && t < nt) a.out[(size_t)(tc + t) * a.out_stride + r] = s;
        }
    }
}

template <int T>
__global__ void k_dequant_rows(const uint8_t *w, size_t row_bytes, int64_t n, float *of, __half *oh) {
    const int64_t r = blockIdx.y;
    const uint8_t *row = w + (size_t)r * row_bytes;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float v = dq<T>(row, i);
        if (of) of[r * n + i] = v;
        else oh[r * n + i] = __float2half_rn(v);
    }
}

template <int T>
__global__ void k_embed(const uint8_t *w, size_t row_bytes, const int *tok, int64_t n, float scale, float *x) {
    const int t = blockIdx.x;
    const uint8_t *row = w + (size_t)tok[t] * row_bytes;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) x[(size_t)t * n + i] = dq<T>(row, i) * scale;
}

/* ---- activations ---------------------------------------------------------- */

/* One warp per 32-value block: Q8_0 (34 bytes) or Q8_1 (36 bytes). */
template <bool Q81>
__global__ void k_quant_q8(const float *x, int64_t x_stride, int64_t n, int n_tok, uint8_t *out, size_t row_bytes) {
    const int lane = threadIdx.x & 31;
    const int64_t nb = n / 32;
    const int64_t blk = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (blk >= nb * n_tok) return; /* whole warps leave together: nb * n_tok blocks */
    const int64_t t = blk / nb, b = blk % nb;
    const float v = x[t * x_stride + 32 * b + lane];
    float amax = fabsf(v);
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const int q = (int)roundf(v * id); /* half away from zero, as the CPU's roundf */
    uint8_t *y = out + (size_t)t * row_bytes + (size_t)b * (Q81 ? 36 : 34);
    y[(Q81 ? 4 : 2) + lane] = (uint8_t)(int8_t)q;
    if (Q81) {
        int s = q;
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) {
            *(uint16_t *)y = __half_as_ushort(__float2half_rn(d));
            *(uint16_t *)(y + 2) = __half_as_ushort(__float2half_rn((float)s * d));
        }
    } else if (lane == 0) {
        *(uint16_t *)y = __half_as_ushort(__float2half_rn(d));
    }
}

/* One warp per 256-value super-block (Q8_K, 292 bytes): lane l holds values
 * 8l .. 8l+7; the value of largest magnitude is the first one (lowest
 * index) among equals, as the CPU's scan. */
__global__ void k_quant_q8_K(const float *x, int64_t x_stride, int64_t n, int n_tok, uint8_t *out, size_t row_bytes) {
    const int lane = threadIdx.x & 31;
    const int64_t nb = n / 256;
    const int64_t blk = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (blk >= nb * n_tok) return;
    const int64_t t = blk / nb, b = blk % nb;
    const float *xb = x + t * x_stride + 256 * b;
    float v[8], amax = 0.0f, mx = 0.0f;
    int idx = 1 << 30;
    for (int i = 0; i < 8; i++) {
        v[i] = xb[8 * lane + i];
        const float ax = fabsf(v[i]);
        if (ax > amax) amax = ax, mx = v[i], idx = 8 * lane + i;
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float a2 = __shfl_xor_sync(0xffffffffu, amax, o), m2 = __shfl_xor_sync(0xffffffffu, mx, o);
        const int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
        if (a2 > amax || (a2 == amax && i2 < idx)) amax = a2, mx = m2, idx = i2;
    }
    uint8_t *y = out + (size_t)t * row_bytes + (size_t)b * 292;
    if (amax == 0.0f) {
        for (int i = lane; i < 292; i += 32) y[i] = 0;
        return;
    }
    const float iscale = -127.0f / mx;
    int q[8];
    for (int i = 0; i < 8; i++) {
        float s = iscale * v[i];
        if (!(s >= -128.0f)) s = -128.0f; /* also NaN, as qround */
        if (s > 127.0f) s = 127.0f;
        q[i] = (int)rintf(s); /* nearest, ties to even */
        y[4 + 8 * lane + i] = (uint8_t)(int8_t)q[i];
    }
    /* bsums over 16 values: lanes 2j and 2j+1 */
    int s = 0;
    for (int i = 0; i < 8; i++) s += q[i];
    s += __shfl_xor_sync(0xffffffffu, s, 1);
    if ((lane & 1) == 0) *(int16_t *)(y + 260 + 2 * (lane >> 1)) = (int16_t)s;
    if (lane == 0) *(float *)y = 1.0f / iscale;
}

__global__ void k_dequant_act(uint32_t vt, const uint8_t *q, size_t row_bytes, int64_t n, int n_tok, float *out) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * n_tok) return;
    const int64_t t = i / n, v = i % n;
    const uint8_t *row = q + (size_t)t * row_bytes;
    float f;
    if (vt == GGML_TYPE_Q8_K) {
        const uint8_t *b = row + (size_t)(v / 256) * 292;
        f = *(const float *)b * (float)(int8_t)b[4 + v % 256];
    } else {
        const size_t bb = vt == GGML_TYPE_Q8_1 ? 36 : 34;
        const uint8_t *b = row + (size_t)(v / 32) * bb;
        f = (float)(int8_t)b[bb - 32 + v % 32] * h2f(ld16(b));
    }
    out[i] = f;
}

__global__ void k_f32_to_f16(const float *x, int64_t n, __half *out) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2half_rn(x[i]);
}

/* ---- launchers ------------------------------------------------------------ */

#define CQ_TYPES(X)                                                                                            \
    X(GGML_TYPE_F32) X(GGML_TYPE_F16) X(GGML_TYPE_BF16) X(GGML_TYPE_Q4_0) X(GGML_TYPE_Q4_1) X(GGML_TYPE_Q5_0) \
    X(GGML_TYPE_Q5_1) X(GGML_TYPE_Q8_0) X(GGML_TYPE_Q2_K) X(GGML_TYPE_Q3_K) X(GGML_TYPE_Q4_K)                 \
    X(GGML_TYPE_Q5_K) X(GGML_TYPE_Q6_K)

bool cq_supported(uint32_t type) {
    switch (type) {
#define CASE(T) case T:
        CQ_TYPES(CASE)
#undef CASE
        return true;
    default: return false;
    }
}

static unsigned grid_1d(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

cudaError_t cq_quantize_act(uint32_t vt, const float *x, int64_t x_stride, int n_tok, int64_t n, uint8_t *out,
                            cudaStream_t st) {
    if (n_tok <= 0) return cudaSuccess;
    const size_t rb = type_row_size(vt, n);
    if (vt == GGML_TYPE_Q8_K) {
        const int64_t warps = n / 256 * n_tok;
        k_quant_q8_K<<<grid_1d(warps * 32, 256), 256, 0, st>>>(x, x_stride, n, n_tok, out, rb);
    } else if (vt == GGML_TYPE_Q8_0 || vt == GGML_TYPE_Q8_1) {
        const int64_t warps = n / 32 * n_tok;
        if (vt == GGML_TYPE_Q8_1) k_quant_q8<true><<<grid_1d(warps * 32, 256), 256, 0, st>>>(x, x_stride, n, n_tok, out, rb);
        else k_quant_q8<false><<<grid_1d(warps * 32, 256), 256, 0, st>>>(x, x_stride, n, n_tok, out, rb);
    } else {
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

cudaError_t cq_dequant_act(uint32_t vt, const uint8_t *q, int n_tok, int64_t n, float *out, cudaStream_t st) {
    if (n_tok <= 0) return cudaSuccess;
    k_dequant_act<<<grid_1d(n * n_tok, 256), 256, 0, st>>>(vt, q, type_row_size(vt, n), n, n_tok, out);
    return cudaGetLastError();
}

cudaError_t cq_matvec(uint32_t wtype, const CqMatVec *a, cudaStream_t st) {
    if (a->rows <= 0 || (!a->ex_start && a->n_tok <= 0)) return cudaSuccess;
    const dim3 grid(grid_1d(a->rows, CQ_MV_WARPS), a->ex_start ? (unsigned)a->n_expert : 1u);
    switch (wtype) {
#define CASE(T)                                                     \
    case T: k_matvec<T><<<grid, CQ_MV_WARPS * 32, 0, st>>>(*a); break;
        CQ_TYPES(CASE)
#undef CASE
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

cudaError_t cq_dequant_rows(uint32_t wtype, const uint8_t *w, size_t row_bytes, int64_t rows, int64_t n,
                            float *out_f32, __half *out_f16, cudaStream_t st) {
    if (rows <= 0) return cudaSuccess;
    if (rows > 65535) return cudaErrorInvalidValue; /* grid.y; the caller's tiles are smaller */
    const dim3 grid(grid_1d(n, 256) < 64 ? grid_1d(n, 256) : 64, (unsigned)rows);
    switch (wtype) {
#define CASE(T)                                                                              \
    case T: k_dequant_rows<T><<<grid, 256, 0, st>>>(w, row_bytes, n, out_f32, out_f16); break;
        CQ_TYPES(CASE)
#undef CASE
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

cudaError_t cq_f32_to_f16(const float *x, int64_t n, __half *out, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    k_f32_to_f16<<<grid_1d(n, 256), 256, 0, st>>>(x, n, out);
    return cudaGetLastError();
}

cudaError_t cq_embed(uint32_t wtype, const uint8_t *w, size_t row_bytes, const int *tok, int n_tok, int64_t n,
                     float scale, float *x, cudaStream_t st) {
    if (n_tok <= 0) return cudaSuccess;
    switch (wtype) {
#define CASE(T)                                                                        \
    case T: k_embed<T><<<(unsigned)n_tok, 256, 0, st>>>(w, row_bytes, tok, n, scale, x); break;
        CQ_TYPES(CASE)
#undef CASE
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
