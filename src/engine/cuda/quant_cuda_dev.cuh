/* quant_cuda_dev.cuh - the device functions that read weights in their GGUF
 * block layouts (included by quant_cuda.cu): per-type traits, one "unit" of
 * a weight row decoded to packed int8 levels and its dot product with 8-bit
 * activations, and the dequantization of one value. Written with nothing
 * but h2f, bf2f, ld16, ld32, __dp4a and __vsub4 from the including file, so
 * that tests/gpu/emu/ can compile the same code for the CPU (there is no
 * GPU where most of this project is built) and check it against quant.c. */
#ifndef GROK_QUANT_CUDA_DEV_CUH
#define GROK_QUANT_CUDA_DEV_CUH

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

#endif
