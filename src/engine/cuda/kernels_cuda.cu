/* kernels_cuda.cu - the CUDA backend's kernels that do not read weights:
 * RMSNorm, RoPE and the KV cache store, attention (Grok's soft-cap, Grok-2's
 * temperature, GQA) over an f32 / f16 / bf16 cache, routing (softmax, top-k,
 * grouping by expert, all on the GPU), GeGLU, the expert combine, the
 * logits' soft-cap, row selection and the context shift. Each follows the
 * CPU backend's formula (cpu/backend_cpu.c, cpu/quant.c) operation for
 * operation; launchers are declared in kernels_cuda.h. Owns nothing. */
#include "kernels_cuda.h"

#include <math.h>

/* ---- the KV cache's element types ------------------------------------------ */

__device__ __forceinline__ float kv_get(uint32_t type, const uint8_t *row, int i) {
    if (type == GGML_TYPE_F32) return ((const float *)row)[i];
    const uint16_t h = ((const uint16_t *)row)[i];
    if (type == GGML_TYPE_F16) return __half2float(__ushort_as_half(h));
    return __uint_as_float((uint32_t)h << 16); /* bf16 */
}

__device__ __forceinline__ void kv_put(uint32_t type, uint8_t *row, int i, float v) {
    if (type == GGML_TYPE_F32) {
        ((float *)row)[i] = v;
    } else if (type == GGML_TYPE_F16) {
        ((uint16_t *)row)[i] = __half_as_ushort(__float2half_rn(v));
    } else { /* bf16: nearest even, NaN kept quiet (cpu/quant.c f32_to_bf16) */
        uint32_t x = __float_as_uint(v);
        uint16_t b;
        if ((x & 0x7fffffffu) > 0x7f800000u) b = (uint16_t)((x >> 16) | 0x40);
        else b = (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
        ((uint16_t *)row)[i] = b;
    }
}

/* ---- block reductions (blockDim a multiple of 32, at most 1024) ------------- */

__device__ float block_max(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); /* red may hold an earlier reduction's values */
    if ((threadIdx.x & 31) == 0) red[w] = v;
    __syncthreads();
    float m = red[0];
    for (int i = 1; i < nw; i++) m = fmaxf(m, red[i]);
    return m;
}

__device__ double block_sum_d(double v, double *red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[w] = v;
    __syncthreads();
    double s = 0.0;
    for (int i = 0; i < nw; i++) s += red[i];
    return s;
}

/* ---- RMSNorm ----------------------------------------------------------------- */

/* y[t] = rmsnorm(x[t]) * w (y may be x); with add: x[t] += y[t] after (y = the
 * normed y). The sum of squares in double, as the CPU's. */
__global__ void k_rmsnorm(float *y, float *x, const float *w, int n, float eps, bool add) {
    __shared__ double red[32];
    const size_t t = blockIdx.x;
    float *yr = y + t * n, *xr = x + t * n;
    const float *src = add ? yr : xr;
    double ss = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += (double)src[i] * src[i];
    ss = block_sum_d(ss, red);
    const float r = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = __fmul_rn(w[i], __fmul_rn(src[i], r));
        yr[i] = v;
        if (add) xr[i] = __fadd_rn(xr[i], v);
    }
}

cudaError_t ck_rmsnorm(float *y, const float *x, const float *w, int n_tok, int n, float eps, cudaStream_t st) {
    if (n_tok <= 0) return cudaSuccess;
    k_rmsnorm<<<n_tok, 256, 0, st>>>(y, (float *)x, w, n, eps, false);
    return cudaGetLastError();
}

cudaError_t ck_add_rmsnorm(float *x, float *y, const float *w, int n_tok, int n, float eps, cudaStream_t st) {
    if (n_tok <= 0) return cudaSuccess;
    k_rmsnorm<<<n_tok, 256, 0, st>>>(y, x, w, n, eps, true);
    return cudaGetLastError();
}

/* ---- RoPE and the cache store ---------------------------------------------- */

/* Block (t, head): heads < n_head rotate q; the others rotate key head g =
 * head - n_head and store it and value head g in the cache. Thread d of
 * hd/2 handles the NeoX pair (d, d + hd/2). */
__global__ void k_rope_store(CkRope a) {
    const int t = blockIdx.x, hh = blockIdx.y, d = threadIdx.x, half = a.hd / 2;
    if (d >= half) return;
    const int p = a.pos[t];
    const float th = (float)p * a.inv_freq[d];
    const float c = cosf(th), s = sinf(th);
    float *v;
    if (hh < a.n_head) {
        v = a.q + (size_t)t * a.q_dim + (size_t)hh * a.hd;
    } else {
        v = a.k + (size_t)t * a.kv_dim + (size_t)(hh - a.n_head) * a.hd;
    }
    const float x0 = v[d], x1 = v[d + half];
    const float r0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
    const float r1 = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
    v[d] = r0, v[d + half] = r1;
    if (hh >= a.n_head) {
        const int g = hh - a.n_head;
        const size_t row = (((size_t)a.layer * a.n_seq + (size_t)a.seq[t]) * a.n_head_kv + (size_t)g) * a.n_ctx + (size_t)p;
        uint8_t *kr = a.k_cache + row * a.k_head, *vr = a.v_cache + row * a.v_head;
        kv_put(a.kt, kr, d, r0);
        kv_put(a.kt, kr, d + half, r1);
        const float *vs = a.v + (size_t)t * a.kv_dim + (size_t)g * a.hd;
        kv_put(a.vt, vr, d, vs[d]);
        kv_put(a.vt, vr, d + half, vs[d + half]);
    }
}

cudaError_t ck_rope_store(const CkRope *a, int n_tok, cudaStream_t st) {
    if (n_tok <= 0) return cudaSuccess;
    const dim3 grid((unsigned)n_tok, (unsigned)(a->n_head + a->n_head_kv));
    const int threads = ((a->hd / 2 + 31) / 32) * 32;
    k_rope_store<<<grid, threads, 0, st>>>(*a);
    return cudaGetLastError();
}

/* ---- attention ---------------------------------------------------------------- */

/* Block (t, h): s_j = q . k_j for the cached positions j <= pos[t] (a warp
 * a position, lanes over the head's values), s_j <- softmax_j(temp *
 * softcap(s_j * attn_scale)), out = sum_j s_j v_j (a thread a value). The
 * scores live in shared memory (n_ctx floats, checked at creation). */
__global__ void k_attention(CkAttn a) {
    extern __shared__ float sm[];
    __shared__ float redf[32];
    __shared__ double redd[32];
    float *qs = sm, *s = sm + a.hd;
    const int t = blockIdx.x, h = blockIdx.y, g = h / a.group;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int p = a.pos[t], n = p + 1;
    const size_t base = (((size_t)a.layer * a.n_seq + (size_t)a.seq[t]) * a.n_head_kv + (size_t)g) * a.n_ctx;
    const uint8_t *K = a.k_cache + base * a.k_head, *V = a.v_cache + base * a.v_head;
    const float *q = a.q + (size_t)t * a.q_dim + (size_t)h * a.hd;
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) qs[d] = q[d];
    __syncthreads();
    /* Grok-2 attention temperature (grok-architecture.md B4): log2(pos)/log2(len) past len */
    const float temp = (a.temp_len > 0 && p > a.temp_len) ? (float)(log2((double)p) / log2((double)a.temp_len)) : 1.0f;
    for (int j = warp; j < n; j += nw) {
        const uint8_t *kr = K + (size_t)j * a.k_head;
        float dot = 0.0f;
        for (int d = lane; d < a.hd; d += 32) dot += qs[d] * kv_get(a.kt, kr, d);
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        if (lane == 0) {
            float v = dot * a.scale;
            if (a.cap > 0.0f) v = a.cap * tanhf(v / a.cap);
            s[j] = v * temp;
        }
    }
    __syncthreads();
    float m = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, s[j]);
    m = block_max(m, redf);
    double tot = 0.0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float e = expf(s[j] - m);
        s[j] = e;
        tot += e;
    }
    tot = block_sum_d(tot, redd); /* its barriers also order the writes of s above */
    const float inv = (float)(1.0 / tot);
    for (int j = threadIdx.x; j < n; j += blockDim.x) s[j] *= inv;
    __syncthreads();
    float *o = a.out + (size_t)t * a.q_dim + (size_t)h * a.hd;
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < n; j++) acc += s[j] * kv_get(a.vt, V + (size_t)j * a.v_head, d);
        o[d] = acc;
    }
}

size_t ck_attention_smem(int hd, int n_ctx) { return ((size_t)hd + (size_t)n_ctx) * sizeof(float); }

cudaError_t ck_attention_setup(size_t smem) {
    return cudaFuncSetAttribute(k_attention, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
}

cudaError_t ck_attention(const CkAttn *a, int n_tok, cudaStream_t st) {
    if (n_tok <= 0) return cudaSuccess;
    const dim3 grid((unsigned)n_tok, (unsigned)a->n_head);
    k_attention<<<grid, CK_ATT_THREADS, ck_attention_smem(a->hd, a->n_ctx), st>>>(*a);
    return cudaGetLastError();
}

/* ---- routing --------------------------------------------------------------------- */

/* Block t: P = softmax(softcap(router . u_t)) over the experts (a warp an
 * expert), then the n_used most probable (ties to the lower index) as the
 * CPU's selection: thread 0, the expert count being small. */
__global__ void k_route(const float *router, const float *u, int n_embd, int n_expert, int n_used, float cap, int *sel,
                        float *gate) {
    extern __shared__ float pr[];
    const int t = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const float *ut = u + (size_t)t * n_embd;
    for (int e = warp; e < n_expert; e += nw) {
        const float *re = router + (size_t)e * n_embd;
        float dot = 0.0f;
        for (int i = lane; i < n_embd; i += 32) dot += re[i] * ut[i];
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        if (lane == 0) pr[e] = cap > 0.0f ? cap * tanhf(dot / cap) : dot;
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    float mx = pr[0];
    for (int e = 1; e < n_expert; e++) mx = pr[e] > mx ? pr[e] : mx;
    double sum = 0.0;
    for (int e = 0; e < n_expert; e++) {
        pr[e] = expf(pr[e] - mx);
        sum += pr[e];
    }
    const float inv = (float)(1.0 / sum);
    for (int e = 0; e < n_expert; e++) pr[e] *= inv;
    for (int k = 0; k < n_used; k++) {
        int best = -1;
        for (int e = 0; e < n_expert; e++) {
            bool taken = false;
            for (int j = 0; j < k; j++) taken |= sel[t * n_used + j] == e;
            if (!taken && (best < 0 || pr[e] > pr[best])) best = e;
        }
        sel[t * n_used + k] = best;
        gate[t * n_used + k] = pr[best];
    }
}

/* One block: ex_start by counting, then each expert's assignments in
 * increasing order (as the CPU's counting sort), and inv[a] = the place of
 * assignment a in that order. */
__global__ void k_group(const int *sel, int na, int n_expert, int *ex_start, int *order, int *inv) {
    extern __shared__ int start[]; /* n_expert + 1 */
    for (int e = threadIdx.x; e < n_expert; e += blockDim.x) {
        int c = 0;
        for (int a = 0; a < na; a++) c += sel[a] == e;
        start[e + 1] = c;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        start[0] = 0;
        for (int e = 0; e < n_expert; e++) start[e + 1] += start[e];
        for (int e = 0; e <= n_expert; e++) ex_start[e] = start[e];
    }
    __syncthreads();
    for (int e = threadIdx.x; e < n_expert; e += blockDim.x) {
        int f = start[e];
        for (int a = 0; a < na; a++)
            if (sel[a] == e) order[f] = a, inv[a] = f, f++;
    }
}

cudaError_t ck_route(const float *router, const float *u, int n_tok, int n_embd, int n_expert, int n_used, float cap,
                     int *sel, float *gate, int *ex_start, int *order, int *inv, cudaStream_t st) {
    if (n_tok > 0) k_route<<<n_tok, 256, (size_t)n_expert * sizeof(float), st>>>(router, u, n_embd, n_expert, n_used, cap, sel, gate);
    k_group<<<1, 1024, ((size_t)n_expert + 1) * sizeof(int), st>>>(sel, n_tok * n_used, n_expert, ex_start, order, inv);
    return cudaGetLastError();
}

/* Assignment i (expert order) gets its token's row of x. */
__global__ void k_gather(const float *x, const int *order, int n_used, int64_t n, float *out) {
    const int i = blockIdx.x;
    const float *src = x + (size_t)(order[i] / n_used) * n;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) out[(size_t)i * n + j] = src[j];
}

cudaError_t ck_gather(const float *x, const int *order, int na, int n_used, int64_t n, float *out, cudaStream_t st) {
    if (na <= 0) return cudaSuccess;
    k_gather<<<na, 256, 0, st>>>(x, order, n_used, n, out);
    return cudaGetLastError();
}

/* out[t] = sum_k gate[t, k] * down[inv[t, k]], summed in expert order (the
 * CPU's), multiplications and additions unfused as the CPU's. */
__global__ void k_combine(const float *gate, const int *inv, const float *down, int n_tok, int n_used, int n, float *out) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)n_tok * n) return;
    const int t = (int)(i / n), j = (int)(i % n);
    float m = 0.0f;
    int last = -1;
    for (int step = 0; step < n_used; step++) { /* the next assignment in expert order */
        int best = -1;
        for (int k = 0; k < n_used; k++) {
            const int p = inv[t * n_used + k];
            if (p > last && (best < 0 || p < inv[t * n_used + best])) best = k;
        }
        const int p = inv[t * n_used + best];
        m = __fadd_rn(m, __fmul_rn(gate[t * n_used + best], down[(size_t)p * n + j]));
        last = p;
    }
    out[i] = m;
}

cudaError_t ck_combine(const float *gate, const int *inv, const float *down, int n_tok, int n_used, int n, float *out,
                       cudaStream_t st) {
    if (n_tok <= 0) return cudaSuccess;
    const int64_t tot = (int64_t)n_tok * n;
    k_combine<<<(unsigned)((tot + 255) / 256), 256, 0, st>>>(gate, inv, down, n_tok, n_used, n, out);
    return cudaGetLastError();
}

/* ---- element-wise ------------------------------------------------------------------ */

__global__ void k_geglu(float *g, const float *u, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float x = g[i]; /* gelu_tanh(x) * u, written as cpu/quant.c vec_geglu's scalar form */
    g[i] = x * u[i] / (1.0f + expf(-2.0f * 0.79788456080286535588f * x * (1.0f + 0.044715f * x * x)));
}

__global__ void k_add_scale(float *y, const float *x, float s, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fmul_rn(__fadd_rn(y[i], x[i]), s);
}

__global__ void k_softcap(float *x, int64_t n, float scale, float cap) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float v = x[i] * scale;
    x[i] = cap > 0.0f ? cap * tanhf(v / cap) : v;
}

static unsigned blocks(int64_t n) { return (unsigned)((n + 255) / 256); }

cudaError_t ck_geglu(float *g, const float *u, int64_t n, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    k_geglu<<<blocks(n), 256, 0, st>>>(g, u, n);
    return cudaGetLastError();
}

cudaError_t ck_add_scale(float *y, const float *x, float s, int64_t n, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    k_add_scale<<<blocks(n), 256, 0, st>>>(y, x, s, n);
    return cudaGetLastError();
}

cudaError_t ck_softcap(float *x, int64_t n, float scale, float cap, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    k_softcap<<<blocks(n), 256, 0, st>>>(x, n, scale, cap);
    return cudaGetLastError();
}

__global__ void k_rows(const float *x, const int *rows, int width, float *out) {
    const int i = blockIdx.x;
    for (int j = threadIdx.x; j < width; j += blockDim.x) out[(size_t)i * width + j] = x[(size_t)rows[i] * width + j];
}

cudaError_t ck_rows(const float *x, const int *rows, int n, int width, float *out, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    k_rows<<<n, 256, 0, st>>>(x, rows, width, out);
    return cudaGetLastError();
}

/* ---- context shift ------------------------------------------------------------------ */

/* Block (i, layer * n_head_kv + g): position p0 + i of a copy of the range
 * (tmp: for each layer and head, n key rows then n value rows) to p0 + i +
 * delta, the key re-rotated from its old position to its new one as
 * cpu/backend_cpu.c rerotate(). */
__global__ void k_shift(CkShift a) {
    const int lg = blockIdx.y, i = blockIdx.x, d = threadIdx.x, half = a.hd / 2;
    const int layer = lg / a.n_head_kv, g = lg % a.n_head_kv;
    const int from = a.p0 + i, to = from + a.delta;
    const uint8_t *ks = a.tmp + (size_t)lg * a.n * (a.k_head + a.v_head) + (size_t)i * a.k_head;
    const uint8_t *vs = a.tmp + (size_t)lg * a.n * (a.k_head + a.v_head) + (size_t)a.n * a.k_head + (size_t)i * a.v_head;
    const size_t row = (((size_t)layer * a.n_seq + (size_t)a.seq) * a.n_head_kv + (size_t)g) * a.n_ctx + (size_t)to;
    uint8_t *kd = a.k_cache + row * a.k_head, *vd = a.v_cache + row * a.v_head;
    if (d < half) {
        const float fa = (float)from * a.inv_freq[d], fb = (float)to * a.inv_freq[d];
        const float c0 = cosf(fa), s0 = sinf(fa), c1 = cosf(fb), s1 = sinf(fb);
        const float x = kv_get(a.kt, ks, d), y = kv_get(a.kt, ks, d + half);
        const float u = __fadd_rn(__fmul_rn(x, c0), __fmul_rn(y, s0)), w = __fsub_rn(__fmul_rn(y, c0), __fmul_rn(x, s0));
        kv_put(a.kt, kd, d, __fsub_rn(__fmul_rn(u, c1), __fmul_rn(w, s1)));
        kv_put(a.kt, kd, d + half, __fadd_rn(__fmul_rn(w, c1), __fmul_rn(u, s1)));
    }
    for (size_t b = d; b < a.v_head; b += blockDim.x) vd[b] = vs[b];
}

cudaError_t ck_shift(const CkShift *a, int n_layer, cudaStream_t st) {
    if (a->n <= 0) return cudaSuccess;
    const dim3 grid((unsigned)a->n, (unsigned)(n_layer * a->n_head_kv));
    const int threads = ((a->hd / 2 + 31) / 32) * 32;
    k_shift<<<grid, threads, 0, st>>>(*a);
    return cudaGetLastError();
}
