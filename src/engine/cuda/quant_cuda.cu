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

/* The 6-bit (scale, min) of 32-value sub-block j of Q4_K / Q5_K (quant_internal.h). */
__device__ __forceinline__ void k4_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* The stored 6-bit scale (scale + 32) of 16-value sub-block j of Q3_K. */
__device__ __forceinline__ int k3_scale(const uint8_t *s, int j) {
    const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    const int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    return lo | (hi << 4);
}

/* ---- per-type traits ----------------------------------------------------- */

template <int T> struct Tr;
/* QK: values per block; BB: bytes per block; UV: values per unit (a lane's
 * piece of work); KQ: a K-quant (Q8_K activations); FL: float weights (f32
 * activations); Q81: Q8_1 activations. */
template <> struct Tr<GGML_TYPE_F32> { enum { QK = 1, BB = 4, UV = 8, KQ = 0, FL = 1, Q81 = 0 }; };
template <> struct Tr<GGML_TYPE_F16> { enum { QK = 1, BB = 2, UV = 8, KQ = 0, FL = 1, Q81 = 0 }; };
template <> struct Tr<GGML_TYPE_BF16> { enum { QK = 1, BB = 2, UV = 8, KQ = 0, FL = 1, Q81 = 0 }; };
template <> struct Tr<GGML_TYPE_Q4_0> { enum { QK = 32, BB = 18, UV = 32, KQ = 0, FL = 0, Q81 = 0 }; };
template <> struct Tr<GGML_TYPE_Q4_1> { enum { QK = 32, BB = 20, UV = 32, KQ = 0, FL = 0, Q81 = 1 }; };
template <> struct Tr<GGML_TYPE_Q5_0> { enum { QK = 32, BB = 22, UV = 32, KQ = 0, FL = 0, Q81 = 0 }; };
template <> struct Tr<GGML_TYPE_Q5_1> { enum { QK = 32, BB = 24, UV = 32, KQ = 0, FL = 0, Q81 = 1 }; };
template <> struct Tr<GGML_TYPE_Q8_0> { enum { QK = 32, BB = 34, UV = 32, KQ = 0, FL = 0, Q81 = 0 }; };
template <> struct Tr<GGML_TYPE_Q2_K> { enum { QK = 256, BB = 84, UV = 16, KQ = 1, FL = 0, Q81 = 0 }; };
template <> struct Tr<GGML_TYPE_Q3_K> { enum { QK = 256, BB = 110, UV = 16, KQ = 1, FL = 0, Q81 = 0 }; };
template <> struct Tr<GGML_TYPE_Q4_K> { enum { QK = 256, BB = 144, UV = 16, KQ = 1, FL = 0, Q81 = 0 }; };
template <> struct Tr<GGML_TYPE_Q5_K> { enum { QK = 256, BB = 176, UV = 16, KQ = 1, FL = 0, Q81 = 0 }; };
template <> struct Tr<GGML_TYPE_Q6_K> { enum { QK = 256, BB = 210, UV = 16, KQ = 1, FL = 0, Q81 = 0 }; };

/* One unit of a weight row, decoded. 32-value blocks: x = d * q + m with q
 * 32 int8 levels packed 4 a word. K-quant units (16 values): x = d * sc * q -
 * dmin * mn with q 16 unsigned levels (<= 63) packed 4 a word. Floats: f. */
struct Unit {
    int q[8];
    float d, m; /* m: Q4_1 / Q5_1 offset; K-quants: dmin */
    int sc, mn;
    float f[8];
};

/* 16 levels q(i) = value 16j + i of a K-quant super-block as 4 words. */
template <int T> __device__ __forceinline__ void load_k_unit(const uint8_t *b, int j, Unit &u) {
    const int l0 = 16 * (j & 1); /* first value of the unit within its 32 */
    if (T == GGML_TYPE_Q4_K || T == GGML_TYPE_Q5_K) {
        const bool five = T == GGML_TYPE_Q5_K;
        const uint8_t *qs = b + (five ? 48 : 16), *qh = b + 16;
        const int cc = j >> 2, h = (j >> 1) & 1;
        for (int i = 0; i < 4; i++) {
            const uint32_t w = (uint32_t)ld32(qs + 32 * cc + l0 + 4 * i);
            uint32_t q = h ? (w >> 4) & 0x0F0F0F0Fu : w & 0x0F0F0F0Fu;
            if (five) q |= (((uint32_t)ld32(qh + l0 + 4 * i) >> (2 * cc + h)) & 0x01010101u) << 4;
            u.q[i] = (int)q;
        }
        int sc, mn;
        k4_scale_min(b + 4, j >> 1, &sc, &mn);
        u.sc = sc, u.mn = mn;
        u.d = h2f(ld16(b)), u.m = h2f(ld16(b + 2));
    } else if (T == GGML_TYPE_Q6_K) {
        const int n = j >> 3, k = (j >> 1) & 3;
        for (int i = 0; i < 4; i++) {
            const uint32_t lo = (uint32_t)ld32(b + 64 * n + 32 * (k & 1) + l0 + 4 * i);
            const uint32_t hi = (uint32_t)ld32(b + 128 + 32 * n + l0 + 4 * i);
            const uint32_t low = (k >> 1) ? (lo >> 4) & 0x0F0F0F0Fu : lo & 0x0F0F0F0Fu;
            u.q[i] = (int)(low | (((hi >> (2 * k)) & 0x03030303u) << 4));
        }
        u.sc = (int)(int8_t)b[192 + j];
        u.mn = 32 * u.sc;
        u.d = u.m = h2f(ld16(b + 208));
    } else if (T == GGML_TYPE_Q2_K) {
        const int n = j >> 3, k = (j >> 1) & 3;
        for (int i = 0; i < 4; i++)
            u.q[i] = (int)(((uint32_t)ld32(b + 16 + 32 * n + l0 + 4 * i) >> (2 * k)) & 0x03030303u);
        u.sc = b[j] & 0xF, u.mn = b[j] >> 4;
        u.d = h2f(ld16(b + 80)), u.m = h2f(ld16(b + 82));
    } else { /* Q3_K */
        const int n = j >> 3, k = (j >> 1) & 3;
        for (int i = 0; i < 4; i++) {
            const uint32_t lo = ((uint32_t)ld32(b + 32 + 32 * n + l0 + 4 * i) >> (2 * k)) & 0x03030303u;
            const uint32_t hi = ((uint32_t)ld32(b + l0 + 4 * i) >> (j >> 1)) & 0x01010101u;
            u.q[i] = (int)(lo | (hi << 2));
        }
        u.sc = k3_scale(b + 96, j) - 32;
        u.mn = 4 * u.sc;
        u.d = u.m = h2f(ld16(b + 108));
    }
}

/* 32 levels of a 32-value block: x = d * q + m. */
template <int T> __device__ __forceinline__ void load_a_unit(const uint8_t *b, Unit &u) {
    u.m = 0.0f;
    if (T == GGML_TYPE_Q8_0) {
        for (int i = 0; i < 8; i++) u.q[i] = ld32(b + 2 + 4 * i);
        u.d = h2f(ld16(b));
    } else if (T == GGML_TYPE_Q4_0 || T == GGML_TYPE_Q4_1) {
        const int off = T == GGML_TYPE_Q4_0 ? 2 : 4;
        for (int i = 0; i < 4; i++) {
            const uint32_t w = (uint32_t)ld32(b + off + 4 * i);
            uint32_t lo = w & 0x0F0F0F0Fu, hi = (w >> 4) & 0x0F0F0F0Fu;
            if (T == GGML_TYPE_Q4_0) lo = __vsub4(lo, 0x08080808u), hi = __vsub4(hi, 0x08080808u);
            u.q[i] = (int)lo, u.q[4 + i] = (int)hi;
        }
        u.d = h2f(ld16(b));
        if (T == GGML_TYPE_Q4_1) u.m = h2f(ld16(b + 2));
    } else { /* Q5_0, Q5_1 */
        const bool one = T == GGML_TYPE_Q5_1;
        const uint8_t *qhp = b + (one ? 4 : 2), *qs = b + (one ? 8 : 6);
        const uint32_t qh = (uint32_t)ld16(qhp) | ((uint32_t)ld16(qhp + 2) << 16);
        for (int i = 0; i < 4; i++) {
            const uint32_t w = (uint32_t)ld32(qs + 4 * i);
            uint32_t lo = w & 0x0F0F0F0Fu, hi = (w >> 4) & 0x0F0F0F0Fu;
            for (int k = 0; k < 4; k++) {
                const int j = 4 * i + k;
                lo |= ((qh >> j) & 1u) << (8 * k + 4);
                hi |= ((qh >> (j + 16)) & 1u) << (8 * k + 4);
            }
            if (!one) lo = __vsub4(lo, 0x10101010u), hi = __vsub4(hi, 0x10101010u);
            u.q[i] = (int)lo, u.q[4 + i] = (int)hi;
        }
        u.d = h2f(ld16(b));
        if (one) u.m = h2f(ld16(b + 2));
    }
}

/* Unit u of a row (values UV*u ..), n values in the row. */
template <int T> __device__ __forceinline__ void load_unit(const uint8_t *row, int64_t u, int64_t n, Unit &w) {
    if (Tr<T>::FL) {
        for (int i = 0; i < 8; i++) {
            const int64_t v = 8 * u + i;
            float f = 0.0f;
            if (v < n) {
                if (T == GGML_TYPE_F32) f = ((const float *)row)[v];
                else if (T == GGML_TYPE_F16) f = h2f(((const uint16_t *)row)[v]);
                else f = bf2f(((const uint16_t *)row)[v]);
            }
            w.f[i] = f;
        }
    } else if (Tr<T>::KQ) {
        load_k_unit<T>(row + (size_t)(u >> 4) * Tr<T>::BB, (int)(u & 15), w);
    } else {
        load_a_unit<T>(row + (size_t)u * Tr<T>::BB, w);
    }
}

/* The unit's dot product with activation row x (vec_dot_type of T). */
template <int T> __device__ __forceinline__ float dot_unit(const Unit &w, const uint8_t *x, int64_t u, int64_t n) {
    if (Tr<T>::FL) {
        const float *xf = (const float *)x;
        float s = 0.0f;
        for (int i = 0; i < 8; i++)
            if (8 * u + i < n) s += w.f[i] * xf[8 * u + i];
        return s;
    } else if (Tr<T>::KQ) { /* Q8_K: f32 d, 256 int8, 16 int16 sums of 16 */
        const uint8_t *xb = x + (size_t)(u >> 4) * 292;
        const int j = (int)(u & 15);
        const float dx = *(const float *)xb;
        int t = 0;
        for (int i = 0; i < 4; i++) t = __dp4a(w.q[i], ld32(xb + 4 + 16 * j + 4 * i), t);
        const int bsum = (int)(int16_t)ld16(xb + 260 + 2 * j);
        return (w.d * dx) * (float)(w.sc * t) - (w.m * dx) * (float)(w.mn * bsum);
    } else if (Tr<T>::Q81) { /* Q8_1: fp16 d, fp16 s = d * sum(q), 32 int8 */
        const uint8_t *xb = x + (size_t)u * 36;
        int t = 0;
        for (int i = 0; i < 8; i++) t = __dp4a(w.q[i], ld32(xb + 4 + 4 * i), t);
        return (w.d * h2f(ld16(xb))) * (float)t + w.m * h2f(ld16(xb + 2));
    } else { /* Q8_0: fp16 d, 32 int8 */
        const uint8_t *xb = x + (size_t)u * 34;
        int t = 0;
        for (int i = 0; i < 8; i++) t = __dp4a(w.q[i], ld32(xb + 2 + 4 * i), t);
        return (w.d * h2f(ld16(xb))) * (float)t;
    }
}

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

/* ---- dequantization (value i of a row), as cpu/quant.c dequantize_row --- */

template <int T> __device__ __forceinline__ float dq(const uint8_t *row, int64_t i) {
    if (T == GGML_TYPE_F32) return ((const float *)row)[i];
    if (T == GGML_TYPE_F16) return h2f(((const uint16_t *)row)[i]);
    if (T == GGML_TYPE_BF16) return bf2f(((const uint16_t *)row)[i]);
    const uint8_t *b = row + (size_t)(i / Tr<T>::QK) * Tr<T>::BB;
    const int v = (int)(i % Tr<T>::QK);
    if (T == GGML_TYPE_Q8_0) return (float)(int8_t)b[2 + v] * h2f(ld16(b));
    if (T == GGML_TYPE_Q4_0 || T == GGML_TYPE_Q4_1) {
        const uint8_t byte = b[(T == GGML_TYPE_Q4_0 ? 2 : 4) + (v & 15)];
        const int q = v < 16 ? byte & 0xF : byte >> 4;
        if (T == GGML_TYPE_Q4_0) return (float)(q - 8) * h2f(ld16(b));
        return (float)q * h2f(ld16(b)) + h2f(ld16(b + 2));
    }
    if (T == GGML_TYPE_Q5_0 || T == GGML_TYPE_Q5_1) {
        const bool one = T == GGML_TYPE_Q5_1;
        const uint8_t *qhp = b + (one ? 4 : 2), *qs = b + (one ? 8 : 6);
        const uint32_t qh = (uint32_t)ld16(qhp) | ((uint32_t)ld16(qhp + 2) << 16);
        const int jj = v & 15;
        int q = v < 16 ? (qs[jj] & 0xF) | (int)(((qh >> jj) & 1) << 4) : (qs[jj] >> 4) | (int)(((qh >> (jj + 16)) & 1) << 4);
        if (!one) return (float)(q - 16) * h2f(ld16(b));
        return (float)q * h2f(ld16(b)) + h2f(ld16(b + 2));
    }
    const int n = v >> 7, k = (v >> 5) & 3, l = v & 31;
    if (T == GGML_TYPE_Q2_K) {
        const uint8_t sc = b[v >> 4];
        const float dl = h2f(ld16(b + 80)) * (float)(sc & 0xF), ml = h2f(ld16(b + 82)) * (float)(sc >> 4);
        return dl * (float)((b[16 + 32 * n + l] >> (2 * k)) & 3) - ml;
    }
    if (T == GGML_TYPE_Q3_K) {
        const float dl = h2f(ld16(b + 108)) * (float)(k3_scale(b + 96, v >> 4) - 32);
        int q = (b[32 + 32 * n + l] >> (2 * k)) & 3;
        if (!((b[l] >> (4 * n + k)) & 1)) q -= 4;
        return dl * (float)q;
    }
    if (T == GGML_TYPE_Q4_K || T == GGML_TYPE_Q5_K) {
        const bool five = T == GGML_TYPE_Q5_K;
        const int c = v >> 6, h = (v >> 5) & 1;
        int sc, m;
        k4_scale_min(b + 4, 2 * c + h, &sc, &m);
        const float d1 = h2f(ld16(b)) * (float)sc, m1 = h2f(ld16(b + 2)) * (float)m;
        const uint8_t byte = b[(five ? 48 : 16) + 32 * c + l];
        int q = h ? byte >> 4 : byte & 0xF;
        if (five) q += ((b[16 + l] >> (2 * c + h)) & 1) << 4;
        return d1 * (float)q - m1;
    }
    /* Q6_K */
    const uint8_t lo = b[64 * n + l + 32 * (k & 1)];
    const int q = ((k >> 1) ? (lo >> 4) : (lo & 0xF)) | (((b[128 + 32 * n + l] >> (2 * k)) & 3) << 4);
    return h2f(ld16(b + 208)) * (float)(int8_t)b[192 + (v >> 4)] * (float)(q - 32);
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
