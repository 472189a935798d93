/* kv.h - the KV cache's element types and the attention kernels that read
 * them: storing a row of keys or values (f32, f16, bf16, q8_0, q4_0), the
 * scores q . k_j over the cached keys and the weighted sum of the cached
 * values, computed straight from the stored format (no dequantized copy of
 * the cache). Keys and values may have different types.
 *
 * For q8_0 / q4_0 keys the query is quantized to Q8_0 blocks first (as
 * llama.cpp does for a quantized K) and the scores are integer dot
 * products per 32-value block times the two block scales; q8_0 / q4_0
 * values are expanded to floats 32 at a time inside the weighted sum.
 * The rounding of stored rows is ggml's reference rounding (Q8_0: d =
 * amax/127, q = round(x/d); Q4_0: d = max/-8, q = min(15, trunc(x/d + 8.5))),
 * so a cache row holds the bytes llama.cpp would store.
 *
 * Every kernel has a portable scalar version (the reference the tests use)
 * and AVX2 / AVX-512 versions picked at run time like quant.c's (GROK_SIMD
 * caps the level). f32 and f16 go through quant.c's attention kernels
 * (which have NEON versions too); on aarch64 bf16 / q8_0 / q4_0 run the
 * scalar code for now. */
#ifndef GROK_KV_H
#define GROK_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "f32|f16|bf16|q8_0|q4_0", for help texts */
#define KV_TYPE_NAMES "f32|f16|bf16|q8_0|q4_0"

/* True for the types a KV cache can hold. */
bool kv_type_ok(uint32_t type);
/* The type of a name in KV_TYPE_NAMES (case-insensitive), -1 otherwise. */
int kv_type_parse(const char *name);
/* Values per block of a KV type: 32 for q8_0 / q4_0 (a head's size must be
 * a multiple of it), 1 otherwise. */
int kv_type_block(uint32_t type);
/* Bytes of n values stored as `type`. */
size_t kv_row_bytes(uint32_t type, int64_t n);

/* Stores n f32 values as `type` (n a multiple of kv_type_block). */
void kv_quantize(uint32_t type, const float *x, void *dst, int64_t n);
/* And back. */
void kv_dequantize(uint32_t type, const void *src, float *dst, int64_t n);

/* The query in the form kv_dot_rows takes for keys of type ktype: Q8_0
 * blocks written to dst (kv_query_bytes) for q8_0 / q4_0 keys; for the
 * others q itself is returned and dst is not touched. */
size_t kv_query_bytes(uint32_t ktype, int64_t n);
const void *kv_prep_query(uint32_t ktype, const float *q, void *dst, int64_t n);

/* out[j] = q . row_j for n_rows key rows (n values each, row_bytes apart);
 * q is prepared by kv_prep_query. */
void kv_dot_rows(uint32_t ktype, const void *rows, size_t row_bytes, int64_t n_rows, const void *q, int64_t n,
                 float *out);
/* o[i] = sum_j w[j] * row_j[i] for n_rows value rows (o is overwritten). */
void kv_mad_rows(uint32_t vtype, float *o, const float *w, const void *rows, size_t row_bytes, int64_t n_rows,
                 int64_t n);

/* kv_mad_rows for nh weight vectors over the same rows at once (the query
 * heads of a GQA group): o[k][i] = sum_j w[k][j] * row_j[i]. For q8_0 /
 * q4_0 (AVX-512) each block is expanded to floats once for all of them; the
 * float types run head by head (their expansion costs about nothing). */
void kv_mad_rows_multi(uint32_t vtype, int nh, float *const *o, const float *const *w, const void *rows,
                       size_t row_bytes, int64_t n_rows, int64_t n);

/* The same at an explicit SIMD level (SimdLevel of quant.h; an unsupported
 * level runs the scalar code). The scalar level is the reference. */
void kv_dot_rows_level(int level, uint32_t ktype, const void *rows, size_t row_bytes, int64_t n_rows, const void *q,
                       int64_t n, float *out);
void kv_mad_rows_level(int level, uint32_t vtype, float *o, const float *w, const void *rows, size_t row_bytes,
                       int64_t n_rows, int64_t n);
void kv_mad_rows_multi_level(int level, uint32_t vtype, int nh, float *const *o, const float *const *w,
                             const void *rows, size_t row_bytes, int64_t n_rows, int64_t n);

#endif
