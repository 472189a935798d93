/* quant_x86_blocks.h - one 32-value weight block (Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0) as 32 signed bytes in a ymm register, with its scale and offset:
 * what the AVX2 and AVX-512 kernels for these types (quant_x86.c,
 * quant_x86_a2.c) read their weights with; and a group of 8 activation
 * blocks (Q8_0 / Q8_1), which the AVX-512 kernels (quant_x86.c,
 * quant_x86_dec512.c) lay out for their tiles. Internal to src/engine/cpu;
 * include after <immintrin.h>, on x86-64 only. */
#ifndef GROK_QUANT_X86_BLOCKS_H
#define GROK_QUANT_X86_BLOCKS_H

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "quant_internal.h"
#include "quant_x86_defs.h"

/* 32 values from 16 bytes of nibbles: low nibbles first, then high. */
AVX2 static INL __m256i nibbles32(const uint8_t *qs) {
    const __m128i v = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
}

/* byte j = 0xFF if bit j of x is set, else 0 */
AVX2 static INL __m256i bits_to_bytes(uint32_t x) {
    const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202,
                                            0x0303030303030303);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
}

/* One 32-value block as signed levels (Q4_1, Q5_1: unsigned, 0..15 / 0..31),
 * with its scale d and offset m (0 for the types without one). */
AVX2 static INL __m256i load_a_block(uint32_t type, const uint8_t *p, float *d, float *m) {
    switch (type) {
    case GGML_TYPE_Q8_0:
        *d = _cvtsh_ss(((const BlockQ8_0 *)p)->d), *m = 0.0f;
        return _mm256_loadu_si256((const __m256i *)(p + 2));
    case GGML_TYPE_Q4_0:
        *d = _cvtsh_ss(((const BlockQ4_0 *)p)->d), *m = 0.0f;
        return _mm256_sub_epi8(nibbles32(p + 2), _mm256_set1_epi8(8));
    case GGML_TYPE_Q4_1:
        *d = _cvtsh_ss(((const BlockQ4_1 *)p)->d), *m = _cvtsh_ss(((const BlockQ4_1 *)p)->m);
        return nibbles32(p + 4);
    case GGML_TYPE_Q5_0: {
        *d = _cvtsh_ss(((const BlockQ5_0 *)p)->d), *m = 0.0f;
        const __m256i hb = _mm256_and_si256(bits_to_bytes(load_u32le(p + 2)), _mm256_set1_epi8(0x10));
        return _mm256_sub_epi8(_mm256_or_si256(nibbles32(p + 6), hb), _mm256_set1_epi8(16));
    }
    default: { /* Q5_1 */
        *d = _cvtsh_ss(((const BlockQ5_1 *)p)->d), *m = _cvtsh_ss(((const BlockQ5_1 *)p)->m);
        const __m256i hb = _mm256_and_si256(bits_to_bytes(load_u32le(p + 4)), _mm256_set1_epi8(0x10));
        return _mm256_or_si256(nibbles32(p + 8), hb);
    }
    }
}

/* Activation blocks 8g..8g+7 of a row of nb Q8_0 (q81: Q8_1) blocks: their
 * levels q, scales d and (Q8_1, else 0) sums s; blocks past nb read as zero. */
AVX2 static INL void load_x8_group(bool q81, const uint8_t *xrow, int64_t nb, int64_t g, __m256i q[8], float d[8],
                                   float s[8]) {
    const size_t sz = q81 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
    for (int i = 0; i < 8; i++) {
        const int64_t b = 8 * g + i;
        float sum = 0.0f;
        if (b < nb) {
            const uint8_t *p = xrow + (size_t)b * sz;
            uint16_t h;
            memcpy(&h, p, 2);
            d[i] = H2FV(h);
            if (q81) memcpy(&h, p + 2, 2), sum = H2FV(h);
            q[i] = _mm256_loadu_si256((const __m256i *)(p + (q81 ? 4 : 2)));
        } else {
            q[i] = _mm256_setzero_si256(), d[i] = 0.0f;
        }
        s[i] = sum;
    }
}

#endif
