/* safetensors.h - a bounds-checked, mmap-based reader of one .safetensors
 * file (Hugging Face's format):
 *   u64 LE header size N, N bytes of JSON
 *     {"NAME": {"dtype": "BF16", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...,
 *      "__metadata__": {...}}
 *   then the data section; offsets are relative to its start, tensors are
 *   row-major (C order), little-endian.
 * Every tensor's byte range is checked against its dtype and shape and
 * against the file size. */
#ifndef GROK_SAFETENSORS_H
#define GROK_SAFETENSORS_H

#include <stdint.h>

#include "common.h"

#define ST_MAX_DIMS 8

typedef enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I8, ST_U8, ST_I16, ST_I32, ST_I64, ST_BOOL, ST_OTHER } STDtype;

typedef struct {
    char *name;
    STDtype dtype;
    char dtype_name[16];
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
    const uint8_t *data;   /* in the mapping */
} STTensor;

typedef struct {
    char *path;
    uint8_t *map;
    uint64_t size;
    STTensor *tensors;
    int n_tensors;
} STFile;

/* Opens and validates a file; NULL with a message on error. */
STFile *st_open(const char *path, Error *err);
void st_close(STFile *f);
const STTensor *st_find(const STFile *f, const char *name);
/* Bytes per element (0 for ST_OTHER). */
int st_dtype_size(STDtype t);

#endif
