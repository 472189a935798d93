/* quant_internal.h - what quant.c and its per-ISA kernel files (quant_x86.c)
 * share and nothing else sees: the weight-type groups, the K-quant scale
 * decoders, the canonical K-quant form. See quant.c's header for the
 * design. */
#ifndef GROK_QUANT_INTERNAL_H
#define GROK_QUANT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "quant.h"

static inline bool is_k_type(uint32_t t) { return t >= GGML_TYPE_Q2_K && t <= GGML_TYPE_Q6_K; }
static inline bool is_a_type(uint32_t t) {
    return t == GGML_TYPE_Q4_0 || t == GGML_TYPE_Q4_1 || t == GGML_TYPE_Q5_0 || t == GGML_TYPE_Q5_1 ||
           t == GGML_TYPE_Q8_0;
}

static inline void k4_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static inline int k3_scale(const uint8_t *s, int j) {
    int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    return lo | (hi << 4);
}

static inline uint32_t load_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#define RGROUP 16 /* weight rows unpacked together (prompt processing), K-quants */

/* A K-quant super-block in canonical form: levels, the 16-value sub-block
 * scales repeated per lane, the mins, the two scales. */
typedef struct {
    _Alignas(64) uint8_t q[QK_K];
    _Alignas(64) int16_t scv[128];
    int16_t mn[16];
    float d, dmin;
} CanonK;

#endif
