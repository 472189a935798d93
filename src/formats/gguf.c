/* gguf.c - see gguf.h.
 *
 * Reader: every file is mapped read-only and parsed with a bounds-checked
 * cursor. Each count is checked against the bytes that remain in the file
 * before anything is allocated for it, so a corrupt or hostile header can only
 * cause allocations proportional to the file size. Tensor data is never
 * copied: GGUFTensor.data points into the mapping.
 *
 * Writer: metadata and tensor infos are collected in memory; gguf_write
 * streams header, infos, padding and then each tensor's (padded) data into
 * "path.tmp.XXXXXX" (created exclusively: common.h out_tmp_create) and
 * renames it over `path` only when everything succeeded. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"

/* Smallest possible encodings, used to bound counts by the remaining bytes. */
#define MIN_KV_BYTES 13          /* u64 key len + i32 type + 1-byte value */
#define MIN_TENSOR_INFO_BYTES 32 /* u64 name len + u32 n_dims + 1 x i64 ne + i32 type + u64 offset */
#define MIN_STRING_BYTES 8       /* u64 length */

/* llama.cpp (GGML_MAX_NAME) refuses tensor names of 64 bytes or more, so the
 * writer does not produce them; the reader accepts any length. */
#define GGUF_WRITER_MAX_NAME 64

/* ---- little-endian decoding (host-independent) ------------------------- */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }
static float le_f32(const uint8_t *p) {
    uint32_t u = le32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static double le_f64(const uint8_t *p) {
    uint64_t u = le64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void put_le(uint8_t *p, uint64_t v, size_t n) {
    if (n > 8) n = 8;
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- value types -------------------------------------------------------- */

size_t gguf_type_size(GGUFType t) {
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(GGUFType t) {
    switch (t) {
    case GGUF_TYPE_UINT8: return "u8";
    case GGUF_TYPE_INT8: return "i8";
    case GGUF_TYPE_UINT16: return "u16";
    case GGUF_TYPE_INT16: return "i16";
    case GGUF_TYPE_UINT32: return "u32";
    case GGUF_TYPE_INT32: return "i32";
    case GGUF_TYPE_FLOAT32: return "f32";
    case GGUF_TYPE_BOOL: return "bool";
    case GGUF_TYPE_STRING: return "str";
    case GGUF_TYPE_ARRAY: return "arr";
    case GGUF_TYPE_UINT64: return "u64";
    case GGUF_TYPE_INT64: return "i64";
    case GGUF_TYPE_FLOAT64: return "f64";
    default: return "unknown";
    }
}

static bool type_is_unsigned(GGUFType t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_UINT64;
}
static bool type_is_signed(GGUFType t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}
static bool type_is_float(GGUFType t) { return t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64; }

/* Decodes one scalar of type t at p into kv->num. */
static void decode_scalar(GGUFType t, const uint8_t *p, GGUFKV *kv) {
    switch (t) {
    case GGUF_TYPE_UINT8: kv->num.u64 = p[0]; break;
    case GGUF_TYPE_INT8: kv->num.i64 = (int8_t)p[0]; break;
    case GGUF_TYPE_UINT16: kv->num.u64 = le16(p); break;
    case GGUF_TYPE_INT16: kv->num.i64 = (int16_t)le16(p); break;
    case GGUF_TYPE_UINT32: kv->num.u64 = le32(p); break;
    case GGUF_TYPE_INT32: kv->num.i64 = (int32_t)le32(p); break;
    case GGUF_TYPE_FLOAT32: kv->num.f64 = le_f32(p); break;
    case GGUF_TYPE_BOOL: kv->num.u64 = p[0] != 0; break;
    case GGUF_TYPE_UINT64: kv->num.u64 = le64(p); break;
    case GGUF_TYPE_INT64: kv->num.i64 = (int64_t)le64(p); break;
    case GGUF_TYPE_FLOAT64: kv->num.f64 = le_f64(p); break;
    default: break;
    }
}

double gguf_arr_f64(const GGUFKV *kv, uint64_t i) {
    size_t es = gguf_type_size(kv->arr_type);
    if (es == 0 || !kv->arr_data) return 0.0;
    GGUFKV tmp;
    memset(&tmp, 0, sizeof tmp);
    decode_scalar(kv->arr_type, (const uint8_t *)kv->arr_data + i * es, &tmp);
    if (type_is_float(kv->arr_type)) return tmp.num.f64;
    if (type_is_signed(kv->arr_type)) return (double)tmp.num.i64;
    return (double)tmp.num.u64;
}

int64_t gguf_arr_i64(const GGUFKV *kv, uint64_t i) {
    size_t es = gguf_type_size(kv->arr_type);
    if (es == 0 || !kv->arr_data) return 0;
    GGUFKV tmp;
    memset(&tmp, 0, sizeof tmp);
    decode_scalar(kv->arr_type, (const uint8_t *)kv->arr_data + i * es, &tmp);
    if (type_is_signed(kv->arr_type)) return tmp.num.i64;
    if (type_is_float(kv->arr_type)) {
        double d = tmp.num.f64; /* saturating, NaN -> 0 (a plain cast would be UB) */
        if (d != d) return 0;
        if (d >= 9223372036854775807.0) return INT64_MAX;
        if (d <= -9223372036854775808.0) return INT64_MIN;
        return (int64_t)d;
    }
    return tmp.num.u64 > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)tmp.num.u64;
}

/* ---- parsing ------------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    const char *name; /* file name for messages */
    Error *err;
} Cur;

static int cfail(Cur *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static int cfail(Cur *c, const char *fmt, ...) {
    char msg[GROK_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(c->err, "%s: %s", c->name, msg);
}

static uint64_t cur_left(const Cur *c) { return c->size - c->pos; }

/* Returns a pointer to the next n bytes and advances, or NULL if fewer remain. */
static const uint8_t *cur_take(Cur *c, uint64_t n) {
    if (n > cur_left(c)) return NULL;
    const uint8_t *p = c->p + c->pos;
    c->pos += n;
    return p;
}

/* A parsed single file (before merging split parts). */
typedef struct {
    uint32_t version;
    uint32_t alignment;
    GGUFKV *kvs;
    uint64_t n_kv;
    GGUFTensor *tensors;
    uint64_t n_tensors;
} Parsed;

static void free_kvs(GGUFKV *kvs, uint64_t n) {
    if (!kvs) return;
    for (uint64_t i = 0; i < n; i++) {
        free(kvs[i].key);
        free(kvs[i].arr_str);
    }
    free(kvs);
}

static void free_tensors(GGUFTensor *t, uint64_t n) {
    if (!t) return;
    for (uint64_t i = 0; i < n; i++) free(t[i].name);
    free(t);
}

static void parsed_free(Parsed *p) {
    free_kvs(p->kvs, p->n_kv);
    free_tensors(p->tensors, p->n_tensors);
    memset(p, 0, sizeof *p);
}

/* Reads a string header (u64 length) and its bytes. `what` describes the
 * string for messages, e.g. "kv 3 of 20: key". */
static int read_string(Cur *c, GGUFString *out, const char *what) {
    const uint8_t *p = cur_take(c, 8);
    if (!p) return cfail(c, "truncated: %s length ends past end of file", what);
    uint64_t len = le64(p);
    if (len > cur_left(c))
        return cfail(c, "truncated or corrupt: %s length %" PRIu64 " exceeds the %" PRIu64 " bytes left in the file",
                     what, len, cur_left(c));
    out->len = len;
    out->data = (const char *)cur_take(c, len);
    return 0;
}

/* Copies a key or tensor name into a NUL-terminated string; rejects empty
 * names and embedded NUL bytes (they could not be looked up). */
static char *dup_name(Cur *c, const GGUFString *s, const char *what) {
    if (s->len == 0) {
        cfail(c, "%s is empty", what);
        return NULL;
    }
    if (memchr(s->data, 0, s->len)) {
        cfail(c, "%s contains a NUL byte", what);
        return NULL;
    }
    char *r = malloc(s->len + 1);
    if (!r) {
        cfail(c, "out of memory (%s of %" PRIu64 " bytes)", what, s->len);
        return NULL;
    }
    memcpy(r, s->data, s->len);
    r[s->len] = 0;
    return r;
}

static int read_kv(Cur *c, GGUFKV *kv, uint64_t idx, uint64_t n_kv) {
    char what[160];
    GGUFString ks;
    snprintf(what, sizeof what, "kv %" PRIu64 " of %" PRIu64 ": key", idx, n_kv);
    if (read_string(c, &ks, what)) return -1;
    kv->key = dup_name(c, &ks, what);
    if (!kv->key) return -1;
    /* From here on, messages name the key (truncated to keep them short). */
    snprintf(what, sizeof what, "kv %" PRIu64 " of %" PRIu64 " ('%.48s')", idx, n_kv, kv->key);

    const uint8_t *p = cur_take(c, 4);
    if (!p) return cfail(c, "truncated: %s: value type ends past end of file", what);
    int32_t t = (int32_t)le32(p);
    if (t < 0 || t >= GGUF_TYPE_COUNT) return cfail(c, "%s: unknown value type %" PRId32, what, t);
    kv->type = (GGUFType)t;

    if (kv->type == GGUF_TYPE_STRING) {
        char w2[200];
        snprintf(w2, sizeof w2, "%s: string value", what);
        return read_string(c, &kv->str, w2);
    }
    if (kv->type != GGUF_TYPE_ARRAY) {
        size_t es = gguf_type_size(kv->type);
        if (!(p = cur_take(c, es))) return cfail(c, "truncated: %s: value ends past end of file", what);
        decode_scalar(kv->type, p, kv);
        return 0;
    }

    /* array */
    if (!(p = cur_take(c, 12))) return cfail(c, "truncated: %s: array header ends past end of file", what);
    int32_t et = (int32_t)le32(p);
    uint64_t n = le64(p + 4);
    if (et == GGUF_TYPE_ARRAY) return cfail(c, "%s: arrays of arrays are not supported", what);
    if (et < 0 || et >= GGUF_TYPE_COUNT) return cfail(c, "%s: unknown array element type %" PRId32, what, et);
    kv->arr_type = (GGUFType)et;
    if (kv->arr_type == GGUF_TYPE_STRING) {
        if (n > cur_left(c) / MIN_STRING_BYTES)
            return cfail(c,
                         "truncated or corrupt: %s: string array count %" PRIu64
                         " cannot fit in the %" PRIu64 " bytes left in the file",
                         what, n, cur_left(c));
        kv->arr_n = n;
        if (n == 0) return 0;
        kv->arr_str = calloc((size_t)n, sizeof *kv->arr_str);
        if (!kv->arr_str) return cfail(c, "%s: out of memory for %" PRIu64 " strings", what, n);
        for (uint64_t i = 0; i < n; i++) {
            char w2[240];
            snprintf(w2, sizeof w2, "%s: string %" PRIu64 " of %" PRIu64, what, i, n);
            if (read_string(c, &kv->arr_str[i], w2)) return -1;
        }
        return 0;
    }
    size_t es = gguf_type_size(kv->arr_type);
    if (n > cur_left(c) / es)
        return cfail(c,
                     "truncated or corrupt: %s: array of %" PRIu64 " x %s cannot fit in the %" PRIu64
                     " bytes left in the file",
                     what, n, gguf_type_name(kv->arr_type), cur_left(c));
    kv->arr_n = n;
    kv->arr_data = cur_take(c, n * es);
    return 0;
}

/* Sorting helpers (by name) for duplicate detection and lookups. */
static int cmp_kv_ptr(const void *a, const void *b) {
    const GGUFKV *x = *(const GGUFKV *const *)a, *y = *(const GGUFKV *const *)b;
    return strcmp(x->key, y->key);
}
static int cmp_tensor_ptr(const void *a, const void *b) {
    const GGUFTensor *x = *(const GGUFTensor *const *)a, *y = *(const GGUFTensor *const *)b;
    return strcmp(x->name, y->name);
}
static int cmp_tensor_offset(const void *a, const void *b) {
    const GGUFTensor *x = *(const GGUFTensor *const *)a, *y = *(const GGUFTensor *const *)b;
    if (x->file_index != y->file_index) return x->file_index < y->file_index ? -1 : 1;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

/* Builds a name-sorted array of pointers to the kvs; fails on a duplicate key. */
static const GGUFKV **sort_kvs(const GGUFKV *kvs, uint64_t n, const char *name, Error *err) {
    const GGUFKV **s = malloc((size_t)(n ? n : 1) * sizeof *s);
    if (!s) {
        err_set(err, "%s: out of memory", name);
        return NULL;
    }
    for (uint64_t i = 0; i < n; i++) s[i] = &kvs[i];
    if (n > 1) qsort(s, (size_t)n, sizeof *s, cmp_kv_ptr);
    for (uint64_t i = 1; i < n; i++) {
        if (strcmp(s[i - 1]->key, s[i]->key) == 0) {
            err_set(err, "%s: duplicate key '%s'", name, s[i]->key);
            free(s);
            return NULL;
        }
    }
    return s;
}

/* Integer value of a kv (any integer type, non-negative); false otherwise. */
static bool kv_uint(const GGUFKV *kv, uint64_t *out) {
    if (type_is_unsigned(kv->type)) {
        *out = kv->num.u64;
        return true;
    }
    if (type_is_signed(kv->type) && kv->num.i64 >= 0) {
        *out = (uint64_t)kv->num.i64;
        return true;
    }
    return false;
}

static const GGUFKV *find_kv_linear(const GGUFKV *kvs, uint64_t n, const char *key) {
    for (uint64_t i = 0; i < n; i++)
        if (strcmp(kvs[i].key, key) == 0) return &kvs[i];
    return NULL;
}

/* Computes a tensor's byte size; returns 0 or -1 with `why` set. */
static int tensor_nbytes(uint32_t type, uint32_t n_dims, const int64_t *ne, uint64_t *out, const char **why,
                         char *whybuf, size_t whylen) {
    const TypeInfo *ti = type_info(type);
    if (!ti || ti->block_size <= 0 || ti->type_size == 0) {
        snprintf(whybuf, whylen, "unknown tensor type %" PRId32, (int32_t)type);
        *why = whybuf;
        return -1;
    }
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0) {
            snprintf(whybuf, whylen, "ne[%u] = %" PRId64 " is negative", d, ne[d]);
            *why = whybuf;
            return -1;
        }
    }
    if (ne[0] % ti->block_size != 0) {
        snprintf(whybuf, whylen, "ne[0] = %" PRId64 " is not a multiple of the %s block size %d", ne[0], ti->name,
                 ti->block_size);
        *why = whybuf;
        return -1;
    }
    /* element count must fit in int64 (ggml's nelements) */
    int64_t nel = 1;
    bool zero = false;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] == 0) zero = true;
    }
    if (!zero) {
        for (uint32_t d = 0; d < n_dims; d++) {
            if (nel > INT64_MAX / ne[d]) {
                *why = "element count overflows";
                return -1;
            }
            nel *= ne[d];
        }
    }
    if (zero) {
        *out = 0;
        return 0;
    }
    uint64_t blocks = (uint64_t)nel / (uint64_t)ti->block_size;
    if (blocks > UINT64_MAX / ti->type_size) {
        *why = "byte size overflows";
        return -1;
    }
    *out = blocks * ti->type_size;
    return 0;
}

static int read_tensor_info(Cur *c, GGUFTensor *t, uint64_t idx, uint64_t n) {
    char what[160];
    GGUFString ns;
    snprintf(what, sizeof what, "tensor info %" PRIu64 " of %" PRIu64 ": name", idx, n);
    if (read_string(c, &ns, what)) return -1;
    t->name = dup_name(c, &ns, what);
    if (!t->name) return -1;
    snprintf(what, sizeof what, "tensor info %" PRIu64 " of %" PRIu64 " ('%.48s')", idx, n, t->name);

    const uint8_t *p = cur_take(c, 4);
    if (!p) return cfail(c, "truncated: %s ends past end of file", what);
    uint32_t nd = le32(p);
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return cfail(c, "%s: n_dims %" PRIu32 " is not in 1..%d", what, nd, GGUF_MAX_DIMS);
    t->n_dims = nd;
    if (!(p = cur_take(c, 8 * (uint64_t)nd + 12))) return cfail(c, "truncated: %s ends past end of file", what);
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) t->ne[d] = (int64_t)le64(p + 8 * d);
    t->type = le32(p + 8 * nd);
    t->offset = le64(p + 8 * nd + 4);

    const char *why = NULL;
    char whybuf[160];
    if (tensor_nbytes(t->type, nd, t->ne, &t->nbytes, &why, whybuf, sizeof whybuf))
        return cfail(c, "%s: %s", what, why);
    return 0;
}

/* Parses one complete GGUF image. On failure everything allocated is freed. */
static int parse_gguf(const uint8_t *base, uint64_t size, const char *name, int file_index, Parsed *out,
                      Error *err) {
    Cur cur = {base, size, 0, name, err};
    Cur *c = &cur;
    memset(out, 0, sizeof *out);

    if (size < 4) return cfail(c, "truncated: file of %" PRIu64 " bytes is too small for a GGUF header", size);
    if (memcmp(base, GGUF_MAGIC, 4) != 0) {
        char shown[32];
        size_t k = 0;
        for (int i = 0; i < 4; i++) {
            unsigned char ch = base[i];
            if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '\'') shown[k++] = (char)ch;
            else k += (size_t)snprintf(shown + k, sizeof shown - k, "\\x%02x", ch);
        }
        shown[k] = 0;
        return cfail(c, "not a GGUF file (magic is '%s', expected 'GGUF')", shown);
    }
    if (size < 24) return cfail(c, "truncated: header ends past end of file (%" PRIu64 " bytes)", size);
    const uint8_t *p = cur_take(c, 24);
    out->version = le32(p + 4);
    if (out->version != GGUF_VERSION) {
        if (out->version == 1 || out->version == 2)
            return cfail(c, "GGUF version %" PRIu32 " is not supported (only version 3; re-convert the model)",
                         out->version);
        if (out->version == 0x03000000u)
            return cfail(c, "big-endian GGUF files are not supported");
        return cfail(c, "unsupported GGUF version %" PRIu32 " (only version 3 is supported)", out->version);
    }
    int64_t nt = (int64_t)le64(p + 8);
    int64_t nk = (int64_t)le64(p + 16);
    if (nt < 0) return cfail(c, "corrupt header: n_tensors is negative (%" PRId64 ")", nt);
    if (nk < 0) return cfail(c, "corrupt header: n_kv is negative (%" PRId64 ")", nk);
    if ((uint64_t)nk > cur_left(c) / MIN_KV_BYTES)
        return cfail(c, "truncated or corrupt: n_kv %" PRId64 " cannot fit in the %" PRIu64 " bytes left in the file",
                     nk, cur_left(c));
    if ((uint64_t)nt > cur_left(c) / MIN_TENSOR_INFO_BYTES)
        return cfail(c,
                     "truncated or corrupt: n_tensors %" PRId64 " cannot fit in the %" PRIu64
                     " bytes left in the file",
                     nt, cur_left(c));

    /* metadata */
    if (nk > 0) {
        out->kvs = calloc((size_t)nk, sizeof *out->kvs);
        if (!out->kvs) return cfail(c, "out of memory for %" PRId64 " kvs", nk);
    }
    for (uint64_t i = 0; i < (uint64_t)nk; i++) {
        out->n_kv = i + 1; /* so that a partial entry is freed too */
        if (read_kv(c, &out->kvs[i], i, (uint64_t)nk)) goto fail;
    }
    out->n_kv = (uint64_t)nk;
    {
        const GGUFKV **s = sort_kvs(out->kvs, out->n_kv, name, err);
        if (!s) goto fail;
        free(s);
    }
    out->alignment = GGUF_DEFAULT_ALIGNMENT;
    const GGUFKV *al = find_kv_linear(out->kvs, out->n_kv, "general.alignment");
    if (al) {
        if (al->type != GGUF_TYPE_UINT32) {
            cfail(c, "general.alignment must be a u32, not %s", gguf_type_name(al->type));
            goto fail;
        }
        if (al->num.u64 == 0 || (al->num.u64 & (al->num.u64 - 1)) != 0) {
            cfail(c, "general.alignment %" PRIu64 " is not a power of two", al->num.u64);
            goto fail;
        }
        out->alignment = (uint32_t)al->num.u64;
    }

    /* tensor infos (re-check the count against what is left after the kvs) */
    if ((uint64_t)nt > cur_left(c) / MIN_TENSOR_INFO_BYTES) {
        cfail(c,
              "truncated or corrupt: n_tensors %" PRId64 " cannot fit in the %" PRIu64
              " bytes left after the metadata",
              nt, cur_left(c));
        goto fail;
    }
    if (nt > 0) {
        out->tensors = calloc((size_t)nt, sizeof *out->tensors);
        if (!out->tensors) {
            cfail(c, "out of memory for %" PRId64 " tensor infos", nt);
            goto fail;
        }
    }
    for (uint64_t i = 0; i < (uint64_t)nt; i++) {
        out->n_tensors = i + 1;
        out->tensors[i].file_index = file_index;
        if (read_tensor_info(c, &out->tensors[i], i, (uint64_t)nt)) goto fail;
    }
    out->n_tensors = (uint64_t)nt;

    /* data section */
    uint64_t a = out->alignment;
    uint64_t data_start = (c->pos + a - 1) / a * a;
    if (out->n_tensors > 0 && data_start > size) {
        cfail(c, "truncated: data section would start at %" PRIu64 ", past the end of the file (%" PRIu64 " bytes)",
              data_start, size);
        goto fail;
    }
    uint64_t data_size = data_start <= size ? size - data_start : 0;
    for (uint64_t i = 0; i < out->n_tensors; i++) {
        GGUFTensor *t = &out->tensors[i];
        if (t->offset % a != 0) {
            cfail(c, "tensor '%s': offset %" PRIu64 " is not a multiple of the alignment %" PRIu64, t->name,
                  t->offset, a);
            goto fail;
        }
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            cfail(c,
                  "truncated: tensor '%s' (%" PRIu64 " bytes at data offset %" PRIu64
                  ") ends past end of file (data section has %" PRIu64 " bytes)",
                  t->name, t->nbytes, t->offset, data_size);
            goto fail;
        }
        t->data = base + data_start + t->offset;
    }
    return 0;
fail:
    parsed_free(out);
    return -1;
}

/* ---- open / close --------------------------------------------------------- */

typedef struct {
    void *map;     /* NULL for a caller-owned memory buffer */
    size_t size;
    char *path;
} MappedFile;

struct GGUFFile {
    uint32_t version;
    uint32_t alignment;
    GGUFKV *kvs;
    uint64_t n_kv;
    GGUFTensor *tensors;
    uint64_t n_tensors;
    const GGUFKV **kv_sorted;
    const GGUFTensor **tensor_sorted;
    MappedFile *files;
    int n_files;
    uint64_t total_size;
};

void gguf_close(GGUFFile *f) {
    if (!f) return;
    free_kvs(f->kvs, f->n_kv);
    free_tensors(f->tensors, f->n_tensors);
    free(f->kv_sorted);
    free(f->tensor_sorted);
    for (int i = 0; i < f->n_files; i++) {
        if (f->files[i].map) munmap(f->files[i].map, f->files[i].size);
        free(f->files[i].path);
    }
    free(f->files);
    free(f);
}

static int map_file(const char *path, MappedFile *mf, Error *err) {
    memset(mf, 0, sizeof *mf);
    int fd = open_regular(path, err); /* a FIFO or device: refused, never blocked on */
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, "%s: not a regular file", path);
    }
    if (st.st_size < 4) {
        close(fd);
        return err_set(err, "%s: truncated: file of %lld bytes is too small for a GGUF header", path,
                       (long long)st.st_size);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return err_set(err, "%s: file too large to map", path);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return err_set(err, "%s: cannot mmap: %s", path, strerror(e));
    mf->map = m;
    mf->size = (size_t)st.st_size;
    mf->path = strdup(path);
    if (!mf->path) {
        munmap(m, mf->size);
        mf->map = NULL;
        return err_set(err, "%s: out of memory", path);
    }
    return 0;
}

/* Finishes a GGUFFile whose kvs/tensors/files are set: sorted indexes,
 * duplicate names across parts, overlapping tensor data. */
static int finish(GGUFFile *f, Error *err) {
    const char *name0 = f->files[0].path ? f->files[0].path : "<memory>";
    f->kv_sorted = sort_kvs(f->kvs, f->n_kv, name0, err);
    if (!f->kv_sorted) return -1;
    uint64_t n = f->n_tensors;
    f->tensor_sorted = malloc((size_t)(n ? n : 1) * sizeof *f->tensor_sorted);
    if (!f->tensor_sorted) return err_set(err, "%s: out of memory", name0);
    for (uint64_t i = 0; i < n; i++) f->tensor_sorted[i] = &f->tensors[i];
    if (n > 1) qsort(f->tensor_sorted, (size_t)n, sizeof *f->tensor_sorted, cmp_tensor_ptr);
    for (uint64_t i = 1; i < n; i++) {
        const GGUFTensor *a = f->tensor_sorted[i - 1], *b = f->tensor_sorted[i];
        if (strcmp(a->name, b->name) == 0) {
            if (a->file_index == b->file_index) {
                const char *fn = f->files[a->file_index].path ? f->files[a->file_index].path : "<memory>";
                return err_set(err, "%s: duplicate tensor name '%s'", fn, a->name);
            }
            int lo = a->file_index < b->file_index ? a->file_index : b->file_index;
            int hi = a->file_index < b->file_index ? b->file_index : a->file_index;
            return err_set(err, "%s: tensor '%s' is also in %s", f->files[lo].path, a->name, f->files[hi].path);
        }
    }
    /* overlap: sort by (file, offset); consecutive ranges must not intersect */
    if (n > 1) {
        const GGUFTensor **o = malloc((size_t)n * sizeof *o);
        if (!o) return err_set(err, "%s: out of memory", name0);
        memcpy(o, f->tensor_sorted, (size_t)n * sizeof *o);
        qsort(o, (size_t)n, sizeof *o, cmp_tensor_offset);
        for (uint64_t i = 1; i < n; i++) {
            const GGUFTensor *a = o[i - 1], *b = o[i];
            if (a->file_index == b->file_index && a->offset + a->nbytes > b->offset) {
                const char *fn = f->files[a->file_index].path ? f->files[a->file_index].path : "<memory>";
                err_set(err,
                        "%s: tensors '%s' (offset %" PRIu64 ", %" PRIu64 " bytes) and '%s' (offset %" PRIu64
                        ") overlap",
                        fn, a->name, a->offset, a->nbytes, b->name, b->offset);
                free(o);
                return -1;
            }
        }
        free(o);
    }
    return 0;
}

GGUFFile *gguf_open_memory(const void *data, size_t size, Error *err) {
    if (!data && size > 0) {
        err_set(err, "<memory>: NULL buffer");
        return NULL;
    }
    static const uint8_t empty[1] = {0};
    Parsed p;
    if (parse_gguf(data ? (const uint8_t *)data : empty, size, "<memory>", 0, &p, err)) return NULL;
    GGUFFile *f = calloc(1, sizeof *f);
    MappedFile *mf = calloc(1, sizeof *mf);
    if (!f || !mf) {
        free(f);
        free(mf);
        parsed_free(&p);
        err_set(err, "<memory>: out of memory");
        return NULL;
    }
    f->version = p.version;
    f->alignment = p.alignment;
    f->kvs = p.kvs;
    f->n_kv = p.n_kv;
    f->tensors = p.tensors;
    f->n_tensors = p.n_tensors;
    mf->size = size;
    f->files = mf;
    f->n_files = 1;
    f->total_size = size;
    if (finish(f, err)) {
        gguf_close(f);
        return NULL;
    }
    return f;
}

/* Integer kv lookup in a parsed file: 1 found, 0 absent, -1 wrong type. */
static int parsed_uint(const Parsed *p, const char *key, uint64_t *out) {
    const GGUFKV *kv = find_kv_linear(p->kvs, p->n_kv, key);
    if (!kv) return 0;
    return kv_uint(kv, out) ? 1 : -1;
}

GGUFFile *gguf_open(const char *path, Error *err) {
    if (!path) {
        err_set(err, "gguf_open: NULL path");
        return NULL;
    }
    GGUFFile *f = calloc(1, sizeof *f);
    if (!f) {
        err_set(err, "%s: out of memory", path);
        return NULL;
    }
    f->files = calloc(1, sizeof *f->files);
    if (!f->files) {
        err_set(err, "%s: out of memory", path);
        free(f);
        return NULL;
    }
    if (map_file(path, &f->files[0], err)) goto fail;
    f->n_files = 1;
    f->total_size = f->files[0].size;

    Parsed p0;
    if (parse_gguf(f->files[0].map, f->files[0].size, path, 0, &p0, err)) goto fail;
    f->version = p0.version;
    f->alignment = p0.alignment;
    f->kvs = p0.kvs;
    f->n_kv = p0.n_kv;
    f->tensors = p0.tensors;
    f->n_tensors = p0.n_tensors;

    uint64_t count = 1, no = 0;
    int r = parsed_uint(&p0, "split.count", &count);
    if (r < 0) {
        err_set(err, "%s: split.count must be a non-negative integer", path);
        goto fail;
    }
    if (r == 0) count = 1;
    if (count > 1) {
        if (count > 99999) {
            err_set(err, "%s: split.count %" PRIu64 " is too large", path, count);
            goto fail;
        }
        r = parsed_uint(&p0, "split.no", &no);
        if (r < 0) {
            err_set(err, "%s: split.no must be a non-negative integer", path);
            goto fail;
        }
        if (r > 0 && no != 0) {
            err_set(err, "%s: this is part %" PRIu64 " of a split model; open its first part (-00001-of-%05d.gguf)",
                    path, no + 1, (int)count);
            goto fail;
        }
        char suffix[64];
        snprintf(suffix, sizeof suffix, "-%05d-of-%05d.gguf", 1, (int)count);
        size_t pl = strlen(path), sl = strlen(suffix);
        if (pl < sl || strcmp(path + pl - sl, suffix) != 0) {
            err_set(err, "%s: split.count is %" PRIu64 " but the file name does not end in '%s'", path, count,
                    suffix);
            goto fail;
        }
        MappedFile *nf = realloc(f->files, (size_t)count * sizeof *nf);
        if (!nf) {
            err_set(err, "%s: out of memory", path);
            goto fail;
        }
        f->files = nf;
        memset(f->files + 1, 0, (size_t)(count - 1) * sizeof *nf);
        char *part = malloc(pl + 1);
        if (!part) {
            err_set(err, "%s: out of memory", path);
            goto fail;
        }
        uint64_t total_tensors = f->n_tensors;
        for (uint64_t k = 1; k < count; k++) {
            snprintf(part, pl + 1, "%.*s-%05d-of-%05d.gguf", (int)(pl - sl), path, (int)(k + 1), (int)count);
            if (map_file(part, &f->files[k], err)) {
                err_prefix(err, "%s: split part %" PRIu64 " of %" PRIu64 " is missing or unreadable", path, k + 1,
                           count);
                free(part);
                goto fail;
            }
            f->n_files = (int)k + 1;
            f->total_size += f->files[k].size;
            Parsed pk;
            if (parse_gguf(f->files[k].map, f->files[k].size, f->files[k].path, (int)k, &pk, err)) {
                free(part);
                goto fail;
            }
            uint64_t kno = 0, kcount = 0;
            int rn = parsed_uint(&pk, "split.no", &kno);
            int rc = parsed_uint(&pk, "split.count", &kcount);
            const char *bad = NULL;
            char why[128];
            if (rn <= 0) bad = "has no integer split.no";
            else if (kno != k) {
                snprintf(why, sizeof why, "has split.no %" PRIu64 ", expected %" PRIu64, kno, k);
                bad = why;
            } else if (rc < 0 || (rc > 0 && kcount != count)) {
                snprintf(why, sizeof why, "has a split.count that differs from the first part's %" PRIu64, count);
                bad = why;
            }
            if (bad) {
                err_set(err, "%s: %s", f->files[k].path, bad);
                parsed_free(&pk);
                free(part);
                goto fail;
            }
            if (pk.n_tensors > 0) {
                GGUFTensor *nt = realloc(f->tensors, (size_t)(f->n_tensors + pk.n_tensors) * sizeof *nt);
                if (!nt) {
                    err_set(err, "%s: out of memory", f->files[k].path);
                    parsed_free(&pk);
                    free(part);
                    goto fail;
                }
                f->tensors = nt;
                memcpy(f->tensors + f->n_tensors, pk.tensors, (size_t)pk.n_tensors * sizeof *nt);
                f->n_tensors += pk.n_tensors;
                total_tensors += pk.n_tensors;
                free(pk.tensors); /* names now owned by f->tensors */
                pk.tensors = NULL;
                pk.n_tensors = 0;
            }
            parsed_free(&pk);
        }
        free(part);
        uint64_t want = 0;
        r = parsed_uint(&p0, "split.tensors.count", &want);
        if (r < 0 || (r > 0 && want != total_tensors)) {
            err_set(err, "%s: split.tensors.count does not match the %" PRIu64 " tensors found in %" PRIu64 " parts",
                    path, total_tensors, count);
            goto fail;
        }
    }
    if (finish(f, err)) goto fail;
    return f;
fail:
    gguf_close(f);
    return NULL;
}

/* ---- accessors ------------------------------------------------------------ */

uint32_t gguf_version(const GGUFFile *f) { return f->version; }
uint32_t gguf_alignment(const GGUFFile *f) { return f->alignment; }
uint64_t gguf_n_kv(const GGUFFile *f) { return f->n_kv; }
const GGUFKV *gguf_kv(const GGUFFile *f, uint64_t i) { return i < f->n_kv ? &f->kvs[i] : NULL; }
uint64_t gguf_n_tensors(const GGUFFile *f) { return f->n_tensors; }
const GGUFTensor *gguf_tensor(const GGUFFile *f, uint64_t i) { return i < f->n_tensors ? &f->tensors[i] : NULL; }
int gguf_n_files(const GGUFFile *f) { return f->n_files; }
uint64_t gguf_total_size(const GGUFFile *f) { return f->total_size; }

static int cmp_key_kv(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(const GGUFKV *const *)elem)->key);
}
static int cmp_key_tensor(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(const GGUFTensor *const *)elem)->name);
}

const GGUFKV *gguf_find_kv(const GGUFFile *f, const char *key) {
    if (!f || !key || f->n_kv == 0) return NULL;
    const GGUFKV *const *r = bsearch(key, f->kv_sorted, (size_t)f->n_kv, sizeof *f->kv_sorted, cmp_key_kv);
    return r ? *r : NULL;
}

const GGUFTensor *gguf_find_tensor(const GGUFFile *f, const char *name) {
    if (!f || !name || f->n_tensors == 0) return NULL;
    const GGUFTensor *const *r =
        bsearch(name, f->tensor_sorted, (size_t)f->n_tensors, sizeof *f->tensor_sorted, cmp_key_tensor);
    return r ? *r : NULL;
}

int gguf_get_u32(const GGUFFile *f, const char *key, uint32_t *out, Error *err) {
    const GGUFKV *kv = gguf_find_kv(f, key);
    if (!kv) return 0;
    if (type_is_unsigned(kv->type)) {
        if (kv->num.u64 > UINT32_MAX)
            return err_set(err, "%s: value %" PRIu64 " does not fit in a u32", key, kv->num.u64);
        *out = (uint32_t)kv->num.u64;
        return 1;
    }
    if (type_is_signed(kv->type)) {
        if (kv->num.i64 < 0 || kv->num.i64 > (int64_t)UINT32_MAX)
            return err_set(err, "%s: value %" PRId64 " does not fit in a u32", key, kv->num.i64);
        *out = (uint32_t)kv->num.i64;
        return 1;
    }
    return err_set(err, "%s: expected an integer, found %s", key, gguf_type_name(kv->type));
}

int gguf_get_f32(const GGUFFile *f, const char *key, float *out, Error *err) {
    const GGUFKV *kv = gguf_find_kv(f, key);
    if (!kv) return 0;
    if (!type_is_float(kv->type))
        return err_set(err, "%s: expected a float, found %s", key, gguf_type_name(kv->type));
    double d = kv->num.f64;
    if (!isinf(d) && (d > FLT_MAX || d < -FLT_MAX))
        return err_set(err, "%s: value %g does not fit in an f32", key, d);
    *out = (float)d;
    return 1;
}

int gguf_get_bool(const GGUFFile *f, const char *key, bool *out, Error *err) {
    const GGUFKV *kv = gguf_find_kv(f, key);
    if (!kv) return 0;
    if (kv->type != GGUF_TYPE_BOOL)
        return err_set(err, "%s: expected a bool, found %s", key, gguf_type_name(kv->type));
    *out = kv->num.u64 != 0;
    return 1;
}

int gguf_get_str(const GGUFFile *f, const char *key, GGUFString *out, Error *err) {
    const GGUFKV *kv = gguf_find_kv(f, key);
    if (!kv) return 0;
    if (kv->type != GGUF_TYPE_STRING)
        return err_set(err, "%s: expected a string, found %s", key, gguf_type_name(kv->type));
    *out = kv->str;
    return 1;
}

/* ---- writer --------------------------------------------------------------- */

typedef struct {
    char *key;
    GGUFType type;
    uint8_t scalar[8];  /* little-endian scalar value (gguf_type_size(type) bytes) */
    char *str;          /* STRING: value bytes (str_len) */
    uint64_t str_len;
    GGUFType arr_type;  /* ARRAY */
    uint64_t arr_n;
    uint8_t *arr_data;  /* numeric array: arr_n * size bytes, little-endian */
    char **arr_str;     /* string array: arr_n strings ... */
    uint64_t *arr_len;  /* ... of these lengths */
} WKV;

typedef struct {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
    const void *data;
    GGUFTensorFill fill;
    void *ctx;
} WTensor;

struct GGUFWriter {
    WKV *kvs;
    size_t n_kv, cap_kv;
    WTensor *tensors;
    size_t n_tensors, cap_tensors;
};

static void wkv_clear(WKV *kv) {
    free(kv->str);
    free(kv->arr_data);
    if (kv->arr_str)
        for (uint64_t i = 0; i < kv->arr_n; i++) free(kv->arr_str[i]);
    free(kv->arr_str);
    free(kv->arr_len);
    char *key = kv->key;
    memset(kv, 0, sizeof *kv);
    kv->key = key;
}

GGUFWriter *gguf_writer_new(void) { return calloc(1, sizeof(GGUFWriter)); }

void gguf_writer_free(GGUFWriter *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        wkv_clear(&w->kvs[i]);
        free(w->kvs[i].key);
    }
    free(w->kvs);
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w);
}

/* Slot for key: the existing entry (cleared, keeping its position) or a new one. */
static WKV *wkv_slot(GGUFWriter *w, const char *key) {
    if (!w || !key) return NULL;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            wkv_clear(&w->kvs[i]);
            return &w->kvs[i];
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t nc = w->cap_kv ? w->cap_kv * 2 : 16;
        WKV *n = realloc(w->kvs, nc * sizeof *n);
        if (!n) return NULL;
        w->kvs = n;
        w->cap_kv = nc;
    }
    char *k = strdup(key);
    if (!k) return NULL;
    WKV *kv = &w->kvs[w->n_kv++];
    memset(kv, 0, sizeof *kv);
    kv->key = k;
    return kv;
}

/* A failed setter leaves the key in place with an empty value; drop it. */
static void wkv_drop(GGUFWriter *w, WKV *kv) {
    size_t i = (size_t)(kv - w->kvs);
    wkv_clear(kv);
    free(kv->key);
    memmove(&w->kvs[i], &w->kvs[i + 1], (w->n_kv - i - 1) * sizeof *kv);
    w->n_kv--;
}

static int set_scalar(GGUFWriter *w, const char *key, GGUFType t, uint64_t bits) {
    WKV *kv = wkv_slot(w, key);
    if (!kv) return -1;
    kv->type = t;
    put_le(kv->scalar, bits, sizeof kv->scalar); /* only the first gguf_type_size(t) are written out */
    return 0;
}

int gguf_set_u8(GGUFWriter *w, const char *key, uint8_t v) { return set_scalar(w, key, GGUF_TYPE_UINT8, v); }
int gguf_set_u16(GGUFWriter *w, const char *key, uint16_t v) { return set_scalar(w, key, GGUF_TYPE_UINT16, v); }
int gguf_set_u32(GGUFWriter *w, const char *key, uint32_t v) { return set_scalar(w, key, GGUF_TYPE_UINT32, v); }
int gguf_set_i32(GGUFWriter *w, const char *key, int32_t v) {
    return set_scalar(w, key, GGUF_TYPE_INT32, (uint32_t)v);
}
int gguf_set_u64(GGUFWriter *w, const char *key, uint64_t v) { return set_scalar(w, key, GGUF_TYPE_UINT64, v); }
int gguf_set_f32(GGUFWriter *w, const char *key, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return set_scalar(w, key, GGUF_TYPE_FLOAT32, u);
}
int gguf_set_bool(GGUFWriter *w, const char *key, bool v) { return set_scalar(w, key, GGUF_TYPE_BOOL, v ? 1 : 0); }

static int set_str_n(GGUFWriter *w, const char *key, const char *v, uint64_t len) {
    if (!v && len > 0) return -1;
    if (len >= SIZE_MAX) return -1;
    WKV *kv = wkv_slot(w, key);
    if (!kv) return -1;
    kv->type = GGUF_TYPE_STRING;
    kv->str = malloc((size_t)len + 1);
    if (!kv->str) {
        wkv_drop(w, kv);
        return -1;
    }
    if (len) memcpy(kv->str, v, (size_t)len);
    kv->str[len] = 0;
    kv->str_len = len;
    return 0;
}

int gguf_set_str(GGUFWriter *w, const char *key, const char *v) {
    if (!v) return -1;
    return set_str_n(w, key, v, strlen(v));
}

int gguf_set_arr(GGUFWriter *w, const char *key, GGUFType elem_type, const void *data, uint64_t n) {
    size_t es = gguf_type_size(elem_type);
    if (es == 0) return -1;
    if (n > SIZE_MAX / es) return -1;
    if (n > 0 && !data) return -1;
    WKV *kv = wkv_slot(w, key);
    if (!kv) return -1;
    kv->type = GGUF_TYPE_ARRAY;
    kv->arr_type = elem_type;
    kv->arr_data = malloc(n ? (size_t)n * es : 1);
    if (!kv->arr_data) {
        wkv_drop(w, kv);
        return -1;
    }
    if (n) memcpy(kv->arr_data, data, (size_t)n * es);
    kv->arr_n = n;
    return 0;
}

int gguf_set_arr_str(GGUFWriter *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n) {
    if (n > 0 && !strs) return -1;
    if (n > SIZE_MAX / sizeof(char *)) return -1;
    WKV *kv = wkv_slot(w, key);
    if (!kv) return -1;
    kv->type = GGUF_TYPE_ARRAY;
    kv->arr_type = GGUF_TYPE_STRING;
    kv->arr_str = calloc(n ? (size_t)n : 1, sizeof *kv->arr_str);
    kv->arr_len = calloc(n ? (size_t)n : 1, sizeof *kv->arr_len);
    if (!kv->arr_str || !kv->arr_len) goto fail;
    kv->arr_n = n; /* so that a partial copy is freed */
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i] && (!lens || lens[i] > 0)) goto fail;
        uint64_t len = lens ? lens[i] : strlen(strs[i]);
        if (len >= SIZE_MAX) goto fail;
        kv->arr_str[i] = malloc((size_t)len + 1);
        if (!kv->arr_str[i]) goto fail;
        if (len) memcpy(kv->arr_str[i], strs[i], (size_t)len);
        kv->arr_str[i][len] = 0;
        kv->arr_len[i] = len;
    }
    return 0;
fail:
    wkv_drop(w, kv);
    return -1;
}

int gguf_copy_kv(GGUFWriter *w, const GGUFFile *src) {
    if (!w || !src) return -1;
    for (uint64_t i = 0; i < src->n_kv; i++) {
        const GGUFKV *kv = &src->kvs[i];
        /* split.* describe the source's sharding, not the file being written */
        if (strncmp(kv->key, "split.", 6) == 0) continue;
        int r;
        switch (kv->type) {
        case GGUF_TYPE_STRING: r = set_str_n(w, kv->key, kv->str.data, kv->str.len); break;
        case GGUF_TYPE_ARRAY:
            if (kv->arr_type == GGUF_TYPE_STRING) {
                const char **strs = NULL;
                uint64_t *lens = NULL;
                if (kv->arr_n > 0) {
                    strs = malloc((size_t)kv->arr_n * sizeof *strs);
                    lens = malloc((size_t)kv->arr_n * sizeof *lens);
                    if (!strs || !lens) {
                        free(strs);
                        free(lens);
                        return -1;
                    }
                    for (uint64_t j = 0; j < kv->arr_n; j++) {
                        strs[j] = kv->arr_str[j].data;
                        lens[j] = kv->arr_str[j].len;
                    }
                }
                r = gguf_set_arr_str(w, kv->key, strs, lens, kv->arr_n);
                free(strs);
                free(lens);
            } else {
                r = gguf_set_arr(w, kv->key, kv->arr_type, kv->arr_data, kv->arr_n);
            }
            break;
        case GGUF_TYPE_FLOAT32: {
            float v = (float)kv->num.f64;
            uint32_t u;
            memcpy(&u, &v, sizeof u);
            r = set_scalar(w, kv->key, kv->type, u);
            break;
        }
        case GGUF_TYPE_FLOAT64: {
            uint64_t u;
            memcpy(&u, &kv->num.f64, sizeof u);
            r = set_scalar(w, kv->key, kv->type, u);
            break;
        }
        default:
            r = set_scalar(w, kv->key, kv->type, type_is_signed(kv->type) ? (uint64_t)kv->num.i64 : kv->num.u64);
            break;
        }
        if (r) return -1;
    }
    return 0;
}

int gguf_add_tensor(GGUFWriter *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                    const void *data, GGUFTensorFill fill, void *ctx, Error *err) {
    if (!w || !name || !*name) return err_set(err, "gguf_add_tensor: missing writer or name");
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne)
        return err_set(err, "tensor '%s': n_dims %" PRIu32 " is not in 1..%d", name, n_dims, GGUF_MAX_DIMS);
    if (strlen(name) >= GGUF_WRITER_MAX_NAME)
        return err_set(err, "tensor '%.40s...': name is %zu bytes; llama.cpp accepts at most %d", name, strlen(name),
                       GGUF_WRITER_MAX_NAME - 1);
    if (!data && !fill) return err_set(err, "tensor '%s': neither data nor a fill callback", name);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0) return err_set(err, "tensor '%s' added twice", name);
    WTensor t;
    memset(&t, 0, sizeof t);
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t.ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) t.ne[d] = ne[d];
    const char *why = NULL;
    char whybuf[160];
    if (tensor_nbytes(type, n_dims, t.ne, &t.nbytes, &why, whybuf, sizeof whybuf))
        return err_set(err, "tensor '%s': %s", name, why);
    if (t.nbytes > SIZE_MAX) return err_set(err, "tensor '%s': too large", name);
    if (w->n_tensors == w->cap_tensors) {
        size_t nc = w->cap_tensors ? w->cap_tensors * 2 : 64;
        WTensor *n = realloc(w->tensors, nc * sizeof *n);
        if (!n) return err_set(err, "tensor '%s': out of memory", name);
        w->tensors = n;
        w->cap_tensors = nc;
    }
    t.name = strdup(name);
    if (!t.name) return err_set(err, "tensor '%s': out of memory", name);
    t.type = type;
    t.n_dims = n_dims;
    t.data = data;
    t.fill = fill;
    t.ctx = ctx;
    w->tensors[w->n_tensors++] = t;
    return 0;
}

/* Buffered-write helpers: a sticky failure flag, checked at the end and at
 * every tensor, so that every fwrite result is accounted for. */
typedef struct {
    FILE *fp;
    bool failed;
    int err_no;
    uint64_t pos;
} Out;

static void out_bytes(Out *o, const void *p, size_t n) {
    if (o->failed || n == 0) return;
    if (fwrite(p, 1, n, o->fp) != n) {
        o->failed = true;
        o->err_no = errno;
    }
    o->pos += n;
}
static void out_le(Out *o, uint64_t v, size_t n) {
    uint8_t b[8];
    put_le(b, v, n);
    out_bytes(o, b, n);
}
static void out_str(Out *o, const char *s, uint64_t len) {
    out_le(o, len, 8);
    out_bytes(o, s, (size_t)len);
}
static void out_zeros(Out *o, uint64_t n) {
    static const uint8_t z[64] = {0};
    while (n > 0) {
        size_t k = n > sizeof z ? sizeof z : (size_t)n;
        out_bytes(o, z, k);
        n -= k;
    }
}

static uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

int gguf_write(GGUFWriter *w, const char *path, Error *err) {
    if (!w || !path) return err_set(err, "gguf_write: missing writer or path");
    uint64_t align = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        const WKV *kv = &w->kvs[i];
        if (strcmp(kv->key, "general.alignment") != 0) continue;
        if (kv->type != GGUF_TYPE_UINT32) return err_set(err, "%s: general.alignment must be a u32", path);
        align = le32(kv->scalar);
        if (align == 0 || (align & (align - 1)) != 0)
            return err_set(err, "%s: general.alignment %" PRIu64 " is not a power of two", path, align);
    }

    char *tmp = NULL;
    int fd = out_tmp_create(path, &tmp, err);
    if (fd < 0) return -1;

    Out o = {NULL, false, 0, 0};
    void *buf = NULL;
    size_t buf_cap = 0;
    o.fp = fdopen(fd, "wb");
    if (!o.fp) {
        err_set(err, "%s: cannot write: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
    }

    /* header */
    out_bytes(&o, GGUF_MAGIC, 4);
    out_le(&o, GGUF_VERSION, 4);
    out_le(&o, (uint64_t)w->n_tensors, 8);
    out_le(&o, (uint64_t)w->n_kv, 8);

    /* metadata */
    for (size_t i = 0; i < w->n_kv; i++) {
        const WKV *kv = &w->kvs[i];
        out_str(&o, kv->key, strlen(kv->key));
        out_le(&o, (uint64_t)kv->type, 4);
        if (kv->type == GGUF_TYPE_STRING) {
            out_str(&o, kv->str, kv->str_len);
        } else if (kv->type == GGUF_TYPE_ARRAY) {
            out_le(&o, (uint64_t)kv->arr_type, 4);
            out_le(&o, kv->arr_n, 8);
            if (kv->arr_type == GGUF_TYPE_STRING) {
                for (uint64_t j = 0; j < kv->arr_n; j++) out_str(&o, kv->arr_str[j], kv->arr_len[j]);
            } else {
                out_bytes(&o, kv->arr_data, (size_t)(kv->arr_n * gguf_type_size(kv->arr_type)));
            }
        } else {
            out_bytes(&o, kv->scalar, gguf_type_size(kv->type));
        }
    }

    /* tensor infos: offsets are the running sum of padded sizes */
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const WTensor *t = &w->tensors[i];
        out_str(&o, t->name, strlen(t->name));
        out_le(&o, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) out_le(&o, (uint64_t)t->ne[d], 8);
        out_le(&o, t->type, 4);
        out_le(&o, off, 8);
        uint64_t padded = pad_to(t->nbytes, align);
        if (padded < t->nbytes || off + padded < off) {
            err_set(err, "%s: data section too large", path);
            goto fail;
        }
        off += padded;
    }
    out_zeros(&o, pad_to(o.pos, align) - o.pos);

    /* data */
    for (size_t i = 0; i < w->n_tensors && !o.failed; i++) {
        const WTensor *t = &w->tensors[i];
        const void *src = t->data;
        if (!src) {
            size_t need = t->nbytes ? (size_t)t->nbytes : 1;
            if (need > buf_cap) {
                free(buf);
                buf = malloc(need);
                buf_cap = buf ? need : 0;
                if (!buf) {
                    err_set(err, "%s: out of memory for tensor '%s' (%" PRIu64 " bytes)", path, t->name, t->nbytes);
                    goto fail;
                }
            }
            if (t->fill(t->ctx, buf, t->nbytes, err)) {
                err_prefix(err, "%s: tensor '%s'", path, t->name);
                goto fail;
            }
            src = buf;
        }
        out_bytes(&o, src, (size_t)t->nbytes);
        out_zeros(&o, pad_to(t->nbytes, align) - t->nbytes);
    }
    if (o.failed) {
        err_set(err, "%s: write failed: %s", tmp, strerror(o.err_no ? o.err_no : EIO));
        goto fail;
    }
    {
        FILE *fp = o.fp;
        o.fp = NULL;
        if (fclose(fp) != 0) {
            err_set(err, "%s: write failed: %s", tmp, strerror(errno));
            goto fail;
        }
    }
    if (rename(tmp, path) != 0) {
        err_set(err, "%s: cannot rename %s: %s", path, tmp, strerror(errno));
        goto fail;
    }
    free(buf);
    free(tmp);
    return 0;
fail:
    if (o.fp) fclose(o.fp);
    unlink(tmp);
    free(buf);
    free(tmp);
    return -1;
}
