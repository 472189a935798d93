/* gguf.h - the GGUF v3 file format: a bounds-checked, mmap-based reader
 * (split files included) and a streaming writer.
 *
 * Layout (all little-endian), as ggml writes it:
 *   "GGUF" u32 version(3) i64 n_tensors i64 n_kv
 *   n_kv   x { string key; i32 type; value }
 *   n_tensors x { string name; u32 n_dims; i64 ne[n_dims]; i32 ggml_type; u64 offset }
 *   zero padding to `general.alignment` (default 32), then the data blob.
 * A string is u64 length + bytes (no NUL). An array is i32 elem_type, u64 n,
 * then the elements.
 *
 * The reader validates every count, length, offset and size against the file
 * before using it, and never copies tensor data: GGUFTensor.data points into
 * the read-only mapping. */
#ifndef GROK_GGUF_H
#define GROK_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_VERSION 3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/* Metadata value types (GGUF spec). */
typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} GGUFType;

/* A string inside the mapped file: NOT NUL-terminated. */
typedef struct {
    uint64_t len;
    const char *data;
} GGUFString;

typedef struct {
    char *key;           /* NUL-terminated copy of the key */
    GGUFType type;       /* value type; GGUF_TYPE_ARRAY for arrays */
    union {              /* scalar value, widened (type says which member) */
        uint64_t u64;    /* UINT8/16/32/64 and BOOL (0/1) */
        int64_t i64;     /* INT8/16/32/64 */
        double f64;      /* FLOAT32/FLOAT64 */
    } num;
    GGUFString str;      /* type == STRING */
    GGUFType arr_type;   /* type == ARRAY: element type (never ARRAY: nested arrays are rejected) */
    uint64_t arr_n;      /* type == ARRAY: element count */
    const void *arr_data;/* numeric arrays: raw little-endian elements in the file (may be unaligned) */
    GGUFString *arr_str; /* string arrays: arr_n entries (allocated) */
} GGUFKV;

typedef struct {
    char *name;                 /* NUL-terminated copy */
    uint32_t n_dims;            /* 1..GGUF_MAX_DIMS */
    int64_t ne[GGUF_MAX_DIMS];  /* ggml order: ne[0] is the innermost (contiguous) dimension; unused dims = 1 */
    uint32_t type;              /* ggml type id (quant.h: GGMLType) */
    uint64_t offset;            /* offset inside its file's data section */
    uint64_t nbytes;            /* size of the data, from type and shape */
    const void *data;           /* points into the mapping of the file that holds it */
    int file_index;             /* which split file (0 for a single file) */
} GGUFTensor;

typedef struct GGUFFile GGUFFile;

/* Opens and validates a GGUF file. A split model (`name-00001-of-0000N.gguf`
 * with `split.*` keys) is opened from its first file: the other parts are
 * found beside it, and the tensors of all parts are merged into one table.
 * The metadata is that of the first file. Returns NULL with a message on any
 * error (missing file, bad magic/version, truncation, absurd counts, tensor
 * data out of range, unknown tensor type, ...). */
GGUFFile *gguf_open(const char *path, Error *err);

/* Same validation on a caller-owned buffer (the caller keeps it alive while
 * the GGUFFile is used). Used by the fuzzer and tests. */
GGUFFile *gguf_open_memory(const void *data, size_t size, Error *err);

void gguf_close(GGUFFile *f);

uint32_t gguf_version(const GGUFFile *f);
uint32_t gguf_alignment(const GGUFFile *f);
uint64_t gguf_n_kv(const GGUFFile *f);
const GGUFKV *gguf_kv(const GGUFFile *f, uint64_t i);
uint64_t gguf_n_tensors(const GGUFFile *f);
const GGUFTensor *gguf_tensor(const GGUFFile *f, uint64_t i);
int gguf_n_files(const GGUFFile *f);
uint64_t gguf_total_size(const GGUFFile *f); /* bytes of all files together */

/* Lookups; NULL if absent. */
const GGUFKV *gguf_find_kv(const GGUFFile *f, const char *key);
const GGUFTensor *gguf_find_tensor(const GGUFFile *f, const char *name);

/* Typed scalar access. Return 1 if the key is present and convertible (any
 * integer type for the int getters, FLOAT32/FLOAT64 for the float one,
 * STRING for str, BOOL for bool), 0 if absent, -1 with a message if present
 * with an incompatible type or an out-of-range value. */
int gguf_get_u32(const GGUFFile *f, const char *key, uint32_t *out, Error *err);
int gguf_get_f32(const GGUFFile *f, const char *key, float *out, Error *err);
int gguf_get_bool(const GGUFFile *f, const char *key, bool *out, Error *err);
int gguf_get_str(const GGUFFile *f, const char *key, GGUFString *out, Error *err);

/* Element i of a numeric array (no bounds or type checks: check arr_n and
 * arr_type first). */
double gguf_arr_f64(const GGUFKV *kv, uint64_t i);
int64_t gguf_arr_i64(const GGUFKV *kv, uint64_t i);

/* Size in bytes of one scalar of a value type, 0 for STRING/ARRAY/unknown. */
size_t gguf_type_size(GGUFType t);
const char *gguf_type_name(GGUFType t);

/* ---- writer ---------------------------------------------------------- */

typedef struct GGUFWriter GGUFWriter;

/* Produces a tensor's bytes on demand, so that large models are written one
 * tensor at a time: fill dst (nbytes) and return 0, or -1 with a message. */
typedef int (*GGUFTensorFill)(void *ctx, void *dst, uint64_t nbytes, Error *err);

GGUFWriter *gguf_writer_new(void);
void gguf_writer_free(GGUFWriter *w);

/* Metadata setters (keys and strings are copied). A key set twice keeps the
 * last value. They return 0, or -1 on allocation failure. */
int gguf_set_u8(GGUFWriter *w, const char *key, uint8_t v);
int gguf_set_u16(GGUFWriter *w, const char *key, uint16_t v);
int gguf_set_u32(GGUFWriter *w, const char *key, uint32_t v);
int gguf_set_i32(GGUFWriter *w, const char *key, int32_t v);
int gguf_set_u64(GGUFWriter *w, const char *key, uint64_t v);
int gguf_set_f32(GGUFWriter *w, const char *key, float v);
int gguf_set_bool(GGUFWriter *w, const char *key, bool v);
int gguf_set_str(GGUFWriter *w, const char *key, const char *v);
/* Numeric array: n elements of elem_type, raw little-endian in data. */
int gguf_set_arr(GGUFWriter *w, const char *key, GGUFType elem_type, const void *data, uint64_t n);
/* String array: strs[i] has length lens[i] (lens may be NULL: NUL-terminated). */
int gguf_set_arr_str(GGUFWriter *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n);
/* Copies every metadata pair of an open file (used by quantize/convert). */
int gguf_copy_kv(GGUFWriter *w, const GGUFFile *src);

/* Adds a tensor. Its bytes come from `data` (kept by the caller until the
 * write) or, if data is NULL, from fill(ctx, ...) at write time. nbytes must
 * equal the size implied by type and shape. Returns 0 or -1. */
int gguf_add_tensor(GGUFWriter *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                    const void *data, GGUFTensorFill fill, void *ctx, Error *err);

/* Writes the file: metadata, tensor infos, padded data in info order. It
 * writes to "path.tmp" and renames on success, so a failure leaves nothing
 * under `path`. Uses general.alignment if set (u32 power of two), else 32. */
int gguf_write(GGUFWriter *w, const char *path, Error *err);

#endif
