/* test_gguf.c - GGUF reader/writer: round trips, alignment, split files and
 * malformed input (truncation, absurd counts, bad shapes and offsets).
 * Temporary files go to $GROK_TMP (created if needed) or /tmp. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "quant.h"
#include "check.h"

static int g_verbose;


static char g_dir[1024];

static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_dir, name); }

static int mkdir_p(const char *path) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static uint8_t *read_all(const char *path, size_t *size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && n > 0 && fread(b, 1, (size_t)n, fp) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    *size = (size_t)n;
    return b;
}

static int write_all(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t w = n ? fwrite(data, 1, n, fp) : 0;
    return (fclose(fp) == 0 && w == n) ? 0 : -1;
}

/* ---- raw byte builder for hand-made (often malformed) files ---------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} ByteBuf;

static void b_bytes(ByteBuf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->n + n) nc *= 2;
        uint8_t *np = realloc(b->p, nc);
        if (!np) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void b_le(ByteBuf *b, uint64_t v, int n) {
    uint8_t t[8];
    for (int i = 0; i < n; i++) t[i] = (uint8_t)(v >> (8 * i));
    b_bytes(b, t, (size_t)n);
}
static void b_u8(ByteBuf *b, uint8_t v) { b_le(b, v, 1); }
static void b_u16(ByteBuf *b, uint16_t v) { b_le(b, v, 2); }
static void b_u32(ByteBuf *b, uint32_t v) { b_le(b, v, 4); }
static void b_u64(ByteBuf *b, uint64_t v) { b_le(b, v, 8); }
static void b_f32(ByteBuf *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    b_u32(b, u);
}
static void b_f64(ByteBuf *b, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    b_u64(b, u);
}
static void b_str(ByteBuf *b, const char *s) {
    b_u64(b, strlen(s));
    b_bytes(b, s, strlen(s));
}
static void b_zeros(ByteBuf *b, size_t n) {
    for (size_t i = 0; i < n; i++) b_u8(b, 0);
}
static void b_pad(ByteBuf *b, size_t a) {
    while (b->n % a) b_u8(b, 0);
}
static void b_hdr(ByteBuf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b_bytes(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}
static void b_kv_u32(ByteBuf *b, const char *key, uint32_t v) {
    b_str(b, key);
    b_u32(b, GGUF_TYPE_UINT32);
    b_u32(b, v);
}
static void b_kv_str(ByteBuf *b, const char *key, const char *v) {
    b_str(b, key);
    b_u32(b, GGUF_TYPE_STRING);
    b_str(b, v);
}
static void b_tinfo(ByteBuf *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type, uint64_t off) {
    b_str(b, name);
    b_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) b_u64(b, (uint64_t)ne[d]);
    b_u32(b, type);
    b_u64(b, off);
}
static void b_free(ByteBuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* A file with one kv and one tensor described by the arguments, followed by
 * data_bytes bytes of data. */
static void make_one_tensor(ByteBuf *b, uint32_t n_dims, const int64_t *ne, uint32_t type, uint64_t off,
                            size_t data_bytes) {
    b_hdr(b, 3, 1, 1);
    b_kv_str(b, "general.name", "t");
    b_tinfo(b, "w", n_dims, ne, type, off);
    b_pad(b, 32);
    for (size_t i = 0; i < data_bytes; i++) b_u8(b, (uint8_t)i);
}

/* Two f32 tensors of n0 and n1 elements at offsets o0 and o1. */
static void make_two_tensors(ByteBuf *b, const char *n0, int64_t e0, uint64_t o0, const char *n1, int64_t e1,
                             uint64_t o1, size_t data_bytes) {
    b_hdr(b, 3, 2, 0);
    b_tinfo(b, n0, 1, &e0, GGML_TYPE_F32, o0);
    b_tinfo(b, n1, 1, &e1, GGML_TYPE_F32, o1);
    b_pad(b, 32);
    b_zeros(b, data_bytes);
}

/* Opens buf as a memory file; it must succeed. */
static void expect_ok_mem(const ByteBuf *b, int line) {
    Error err = {{0}};
    GGUFFile *f = gguf_open_memory(b->p, b->n, &err);
    if (!f) fprintf(stderr, "line %d: expected success, got: %s\n", line, err.msg);
    CHECK_EXPR(f != NULL);
    gguf_close(f);
}

/* Opens buf as a memory file; it must fail with a message containing `want`. */
static void expect_err_mem(const ByteBuf *b, const char *want, int line) {
    Error err = {{0}};
    /* exact-size copy so that ASan sees any read past the end */
    uint8_t *copy = malloc(b->n ? b->n : 1);
    if (b->n) memcpy(copy, b->p, b->n);
    GGUFFile *f = gguf_open_memory(copy, b->n, &err);
    CHECK_EXPR(f == NULL);
    bool has = strstr(err.msg, want) != NULL;
    if (!has) fprintf(stderr, "line %d: expected an error containing '%s', got '%s'\n", line, want, err.msg);
    CHECK_EXPR(has);
    if (g_verbose) printf("  line %d: %s\n", line, err.msg);
    gguf_close(f);
    free(copy);
}
#define EXPECT_OK(b) expect_ok_mem(b, __LINE__)
#define EXPECT_ERR(b, want) expect_err_mem(b, want, __LINE__)

/* ---- test data -------------------------------------------------------------- */

static void fill_pattern(uint8_t *p, size_t n, unsigned seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

typedef struct {
    const uint8_t *src;
    uint64_t expect;
    int calls;
    bool fail;
} FillCtx;

static int fill_cb(void *ctx, void *dst, uint64_t nbytes, Error *err) {
    FillCtx *c = ctx;
    c->calls++;
    if (c->fail) return err_set(err, "fill refused");
    if (nbytes != c->expect) return err_set(err, "fill asked for %" PRIu64 " bytes, expected %" PRIu64, nbytes, c->expect);
    memcpy(dst, c->src, (size_t)nbytes);
    return 0;
}

static uint64_t pad_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* ---- tests ------------------------------------------------------------------- */

typedef struct {
    const char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[4];
    uint64_t nbytes;
    bool use_fill;
} TSpec;

static const TSpec RT_TENSORS[] = {
    {"a.f32", GGML_TYPE_F32, 2, {8, 3, 1, 1}, 96, false},
    {"b.f16", GGML_TYPE_F16, 1, {16, 1, 1, 1}, 32, false},
    {"z.empty", GGML_TYPE_F32, 2, {0, 5, 1, 1}, 0, false},
    {"c.q8_0", GGML_TYPE_Q8_0, 2, {64, 2, 1, 1}, 136, false},
    {"d.bf16", GGML_TYPE_BF16, 3, {4, 2, 3, 1}, 48, true},
    {"e.f32_4d", GGML_TYPE_F32, 4, {1, 2, 1, 3}, 24, false},
};
#define N_RT (sizeof RT_TENSORS / sizeof RT_TENSORS[0])

/* Writes the round-trip file; returns its bytes (caller frees). */
static uint8_t *g_rt_bytes;
static size_t g_rt_size;

static void test_roundtrip(void) {
    char path[1200], tmp[1300];
    path_in(path, sizeof path, "rt.gguf");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(path);

    uint8_t *data[N_RT];
    for (size_t i = 0; i < N_RT; i++) {
        data[i] = malloc(RT_TENSORS[i].nbytes ? RT_TENSORS[i].nbytes : 1);
        fill_pattern(data[i], RT_TENSORS[i].nbytes, (unsigned)i + 1);
    }
    /* make the q8_0 scales sane fp16 values (not required, but realistic) */
    for (int b = 0; b < 4; b++) {
        data[3][b * 34] = 0x00;
        data[3][b * 34 + 1] = 0x3c;
    }

    GGUFWriter *w = gguf_writer_new();
    CHECK_EXPR(w != NULL);
    const int32_t ai32[5] = {-1, 2, -3, 4, 2147483647};
    const float af32[3] = {0.5f, -1.25f, 1e30f};
    const uint8_t au8[4] = {0, 1, 254, 255};
    const char *astr[3] = {"alpha", "", "gamma delta"};
    const char *astr2[2] = {"a\0b", "xyz"};
    const uint64_t astr2_len[2] = {3, 2};
    CHECK_EXPR(gguf_set_str(w, "general.architecture", "grok") == 0);
    CHECK_EXPR(gguf_set_u8(w, "t.u8", 200) == 0);
    CHECK_EXPR(gguf_set_u16(w, "t.u16", 60000) == 0);
    CHECK_EXPR(gguf_set_u32(w, "t.u32", 4000000000u) == 0);
    CHECK_EXPR(gguf_set_i32(w, "t.i32", -123456) == 0);
    CHECK_EXPR(gguf_set_u64(w, "t.u64", (1ull << 40) + 5) == 0);
    CHECK_EXPR(gguf_set_f32(w, "t.f32", 3.25f) == 0);
    CHECK_EXPR(gguf_set_bool(w, "t.bool", true) == 0);
    CHECK_EXPR(gguf_set_bool(w, "t.false", false) == 0);
    CHECK_EXPR(gguf_set_str(w, "t.str", "hello, grok") == 0);
    CHECK_EXPR(gguf_set_str(w, "t.empty", "") == 0);
    CHECK_EXPR(gguf_set_arr(w, "t.arr_i32", GGUF_TYPE_INT32, ai32, 5) == 0);
    CHECK_EXPR(gguf_set_arr(w, "t.arr_f32", GGUF_TYPE_FLOAT32, af32, 3) == 0);
    CHECK_EXPR(gguf_set_arr(w, "t.arr_u8", GGUF_TYPE_UINT8, au8, 4) == 0);
    CHECK_EXPR(gguf_set_arr(w, "t.arr_empty", GGUF_TYPE_UINT64, NULL, 0) == 0);
    CHECK_EXPR(gguf_set_arr_str(w, "t.arr_str", astr, NULL, 3) == 0);
    CHECK_EXPR(gguf_set_arr_str(w, "t.arr_str_len", astr2, astr2_len, 2) == 0);
    CHECK_EXPR(gguf_set_u32(w, "t.dup", 1) == 0);
    CHECK_EXPR(gguf_set_u32(w, "t.dup", 2) == 0);   /* last value wins, one entry */
    CHECK_EXPR(gguf_set_str(w, "t.retyped", "x") == 0);
    CHECK_EXPR(gguf_set_u8(w, "t.retyped", 7) == 0); /* and may change the type */
    CHECK_EXPR(gguf_set_arr(w, "t.bad", GGUF_TYPE_STRING, au8, 1) == -1); /* not numeric */
    CHECK_EXPR(gguf_set_arr(w, "t.bad", GGUF_TYPE_ARRAY, au8, 1) == -1);
    CHECK_EXPR(gguf_set_str(w, "t.bad", NULL) == -1);
    const char *expect_keys[] = {"general.architecture", "t.u8", "t.u16", "t.u32", "t.i32", "t.u64",
                                 "t.f32", "t.bool", "t.false", "t.str", "t.empty", "t.arr_i32",
                                 "t.arr_f32", "t.arr_u8", "t.arr_empty", "t.arr_str", "t.arr_str_len",
                                 "t.dup", "t.retyped"};
    const size_t n_expect_keys = sizeof expect_keys / sizeof expect_keys[0];

    FillCtx fc = {data[4], RT_TENSORS[4].nbytes, 0, false};
    for (size_t i = 0; i < N_RT; i++) {
        const TSpec *t = &RT_TENSORS[i];
        Error err = {{0}};
        int r = gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->use_fill ? NULL : data[i],
                                t->use_fill ? fill_cb : NULL, &fc, &err);
        if (r) fprintf(stderr, "add_tensor %s: %s\n", t->name, err.msg);
        CHECK_EXPR(r == 0);
    }
    Error err = {{0}};
    int wr = gguf_write(w, path, &err);
    if (wr) fprintf(stderr, "gguf_write: %s\n", err.msg);
    CHECK_EXPR(wr == 0);
    CHECK_EXPR(fc.calls == 1);
    CHECK_EXPR(!file_exists(tmp));
    gguf_writer_free(w);

    GGUFFile *f = gguf_open(path, &err);
    if (!f) fprintf(stderr, "gguf_open: %s\n", err.msg);
    CHECK_EXPR(f != NULL);
    if (!f) goto out;

    CHECK_EXPR(gguf_version(f) == 3);
    CHECK_EXPR(gguf_alignment(f) == 32);
    CHECK_EXPR(gguf_n_files(f) == 1);
    struct stat st;
    CHECK_EXPR(stat(path, &st) == 0 && gguf_total_size(f) == (uint64_t)st.st_size);
    CHECK_EXPR(gguf_n_kv(f) == n_expect_keys);
    for (size_t i = 0; i < n_expect_keys && i < gguf_n_kv(f); i++) CHECK_EXPR(strcmp(gguf_kv(f, i)->key, expect_keys[i]) == 0);
    CHECK_EXPR(gguf_kv(f, gguf_n_kv(f)) == NULL);

    const GGUFKV *kv;
    kv = gguf_find_kv(f, "t.u8");
    CHECK_EXPR(kv && kv->type == GGUF_TYPE_UINT8 && kv->num.u64 == 200);
    kv = gguf_find_kv(f, "t.u16");
    CHECK_EXPR(kv && kv->type == GGUF_TYPE_UINT16 && kv->num.u64 == 60000);
    kv = gguf_find_kv(f, "t.u32");
    CHECK_EXPR(kv && kv->type == GGUF_TYPE_UINT32 && kv->num.u64 == 4000000000u);
    kv = gguf_find_kv(f, "t.i32");
    CHECK_EXPR(kv && kv->type == GGUF_TYPE_INT32 && kv->num.i64 == -123456);
    kv = gguf_find_kv(f, "t.u64");
    CHECK_EXPR(kv && kv->type == GGUF_TYPE_UINT64 && kv->num.u64 == (1ull << 40) + 5);
    kv = gguf_find_kv(f, "t.f32");
    CHECK_EXPR(kv && kv->type == GGUF_TYPE_FLOAT32 && kv->num.f64 == 3.25);
    kv = gguf_find_kv(f, "t.bool");
    CHECK_EXPR(kv && kv->type == GGUF_TYPE_BOOL && kv->num.u64 == 1);
    kv = gguf_find_kv(f, "t.str");
    CHECK_EXPR(kv && kv->type == GGUF_TYPE_STRING && kv->str.len == 11 && memcmp(kv->str.data, "hello, grok", 11) == 0);
    kv = gguf_find_kv(f, "t.empty");
    CHECK_EXPR(kv && kv->type == GGUF_TYPE_STRING && kv->str.len == 0);
    kv = gguf_find_kv(f, "t.arr_i32");
    CHECK_EXPR(kv && kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_INT32 && kv->arr_n == 5);
    if (kv && kv->arr_n == 5)
        for (int i = 0; i < 5; i++) {
            CHECK_EXPR(gguf_arr_i64(kv, (uint64_t)i) == ai32[i]);
            CHECK_EXPR(gguf_arr_f64(kv, (uint64_t)i) == (double)ai32[i]);
        }
    kv = gguf_find_kv(f, "t.arr_f32");
    CHECK_EXPR(kv && kv->arr_type == GGUF_TYPE_FLOAT32 && kv->arr_n == 3);
    if (kv && kv->arr_n == 3)
        for (int i = 0; i < 3; i++) CHECK_EXPR(gguf_arr_f64(kv, (uint64_t)i) == (double)af32[i]);
    kv = gguf_find_kv(f, "t.arr_u8");
    CHECK_EXPR(kv && kv->arr_type == GGUF_TYPE_UINT8 && kv->arr_n == 4 && memcmp(kv->arr_data, au8, 4) == 0);
    kv = gguf_find_kv(f, "t.arr_empty");
    CHECK_EXPR(kv && kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_UINT64 && kv->arr_n == 0);
    kv = gguf_find_kv(f, "t.arr_str");
    CHECK_EXPR(kv && kv->arr_type == GGUF_TYPE_STRING && kv->arr_n == 3 && kv->arr_str);
    if (kv && kv->arr_n == 3 && kv->arr_str)
        for (int i = 0; i < 3; i++)
            CHECK_EXPR(kv->arr_str[i].len == strlen(astr[i]) && memcmp(kv->arr_str[i].data, astr[i], strlen(astr[i])) == 0);
    kv = gguf_find_kv(f, "t.arr_str_len");
    CHECK_EXPR(kv && kv->arr_n == 2 && kv->arr_str && kv->arr_str[0].len == 3 && memcmp(kv->arr_str[0].data, "a\0b", 3) == 0 &&
          kv->arr_str[1].len == 2 && memcmp(kv->arr_str[1].data, "xy", 2) == 0);
    kv = gguf_find_kv(f, "t.dup");
    CHECK_EXPR(kv && kv->num.u64 == 2);
    kv = gguf_find_kv(f, "t.retyped");
    CHECK_EXPR(kv && kv->type == GGUF_TYPE_UINT8 && kv->num.u64 == 7);
    CHECK_EXPR(gguf_find_kv(f, "t.absent") == NULL);
    CHECK_EXPR(gguf_find_kv(f, "t.bad") == NULL);

    /* typed getters */
    uint32_t u32 = 0;
    float f32 = 0;
    bool bl = false;
    GGUFString gs;
    Error e2 = {{0}};
    CHECK_EXPR(gguf_get_u32(f, "t.u8", &u32, &e2) == 1 && u32 == 200);
    CHECK_EXPR(gguf_get_u32(f, "t.u32", &u32, &e2) == 1 && u32 == 4000000000u);
    CHECK_EXPR(gguf_get_u32(f, "t.absent", &u32, &e2) == 0);
    CHECK_EXPR(gguf_get_u32(f, "t.i32", &u32, &e2) == -1 && strstr(e2.msg, "t.i32"));
    CHECK_EXPR(gguf_get_u32(f, "t.u64", &u32, &e2) == -1);
    CHECK_EXPR(gguf_get_u32(f, "t.str", &u32, &e2) == -1);
    CHECK_EXPR(gguf_get_u32(f, "t.bool", &u32, &e2) == -1);
    CHECK_EXPR(gguf_get_f32(f, "t.f32", &f32, &e2) == 1 && f32 == 3.25f);
    CHECK_EXPR(gguf_get_f32(f, "t.u32", &f32, &e2) == -1);
    CHECK_EXPR(gguf_get_f32(f, "t.absent", &f32, &e2) == 0);
    CHECK_EXPR(gguf_get_bool(f, "t.bool", &bl, &e2) == 1 && bl);
    CHECK_EXPR(gguf_get_bool(f, "t.false", &bl, &e2) == 1 && !bl);
    CHECK_EXPR(gguf_get_bool(f, "t.u8", &bl, &e2) == -1);
    CHECK_EXPR(gguf_get_str(f, "general.architecture", &gs, &e2) == 1 && gs.len == 4 && memcmp(gs.data, "grok", 4) == 0);
    CHECK_EXPR(gguf_get_str(f, "t.u8", &gs, &e2) == -1);
    CHECK_EXPR(gguf_get_str(f, "t.absent", &gs, &e2) == 0);

    /* tensors: order, shapes, offsets (running sum of padded sizes), data */
    CHECK_EXPR(gguf_n_tensors(f) == N_RT);
    uint64_t off = 0;
    const uint8_t *first = gguf_n_tensors(f) ? gguf_tensor(f, 0)->data : NULL;
    for (size_t i = 0; i < N_RT && i < gguf_n_tensors(f); i++) {
        const TSpec *s = &RT_TENSORS[i];
        const GGUFTensor *t = gguf_tensor(f, i);
        CHECK_EXPR(strcmp(t->name, s->name) == 0);
        CHECK_EXPR(t->type == s->type && t->n_dims == s->n_dims);
        for (int d = 0; d < 4; d++) CHECK_EXPR(t->ne[d] == s->ne[d]);
        CHECK_EXPR(t->nbytes == s->nbytes);
        CHECK_EXPR(t->nbytes == (uint64_t)type_row_size(t->type, t->ne[0]) * (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]));
        CHECK_EXPR(t->offset == off);
        CHECK_EXPR(t->file_index == 0);
        CHECK_EXPR(((uintptr_t)t->data % 32) == 0);
        CHECK_EXPR((const uint8_t *)t->data - first == (ptrdiff_t)off);
        CHECK_EXPR(s->nbytes == 0 || memcmp(t->data, data[i], s->nbytes) == 0);
        CHECK_EXPR(gguf_find_tensor(f, s->name) == t);
        off += pad_up(s->nbytes, 32);
    }
    CHECK_EXPR(gguf_tensor(f, N_RT) == NULL);
    CHECK_EXPR(gguf_find_tensor(f, "nope") == NULL);
    /* the file ends with the last tensor's padded data */
    {
        const GGUFTensor *t0 = gguf_tensor(f, 0);
        uint64_t data_start = (uint64_t)st.st_size - off;
        CHECK_EXPR(data_start % 32 == 0);
        CHECK_EXPR(t0 && t0->offset == 0);
    }
    gguf_close(f);

    /* raw header bytes and the memory reader agree */
    g_rt_bytes = read_all(path, &g_rt_size);
    CHECK_EXPR(g_rt_bytes != NULL && g_rt_size > 24);
    if (g_rt_bytes) {
        CHECK_EXPR(memcmp(g_rt_bytes, "GGUF", 4) == 0);
        CHECK_EXPR(g_rt_bytes[4] == 3 && g_rt_bytes[5] == 0 && g_rt_bytes[6] == 0 && g_rt_bytes[7] == 0);
        CHECK_EXPR(g_rt_bytes[8] == N_RT && g_rt_bytes[16] == n_expect_keys);
        GGUFFile *m = gguf_open_memory(g_rt_bytes, g_rt_size, &err);
        CHECK_EXPR(m != NULL);
        if (m) {
            CHECK_EXPR(gguf_n_tensors(m) == N_RT && gguf_n_kv(m) == n_expect_keys);
            const GGUFTensor *t = gguf_find_tensor(m, "c.q8_0");
            CHECK_EXPR(t && memcmp(t->data, data[3], 136) == 0);
            CHECK_EXPR(gguf_n_files(m) == 1 && gguf_total_size(m) == g_rt_size);
            gguf_close(m);
        }
    }
out:
    for (size_t i = 0; i < N_RT; i++) free(data[i]);
    unlink(path);
}

/* Every scalar and array type, hand-built, then copied through the writer. */
static void test_all_types(void) {
    ByteBuf b = {0};
    const int n_kv = 26;
    b_hdr(&b, 3, 1, (uint64_t)n_kv);
    b_str(&b, "s.u8");  b_u32(&b, GGUF_TYPE_UINT8);   b_u8(&b, 250);
    b_str(&b, "s.i8");  b_u32(&b, GGUF_TYPE_INT8);    b_u8(&b, (uint8_t)-100);
    b_str(&b, "s.u16"); b_u32(&b, GGUF_TYPE_UINT16);  b_u16(&b, 65535);
    b_str(&b, "s.i16"); b_u32(&b, GGUF_TYPE_INT16);   b_u16(&b, (uint16_t)-30000);
    b_str(&b, "s.u32"); b_u32(&b, GGUF_TYPE_UINT32);  b_u32(&b, 0xdeadbeefu);
    b_str(&b, "s.i32"); b_u32(&b, GGUF_TYPE_INT32);   b_u32(&b, (uint32_t)INT32_MIN);
    b_str(&b, "s.f32"); b_u32(&b, GGUF_TYPE_FLOAT32); b_f32(&b, -0.15625f);
    b_str(&b, "s.bool"); b_u32(&b, GGUF_TYPE_BOOL);   b_u8(&b, 1);
    b_str(&b, "s.str"); b_u32(&b, GGUF_TYPE_STRING);  b_str(&b, "grok-1");
    b_str(&b, "s.u64"); b_u32(&b, GGUF_TYPE_UINT64);  b_u64(&b, UINT64_MAX);
    b_str(&b, "s.i64"); b_u32(&b, GGUF_TYPE_INT64);   b_u64(&b, (uint64_t)INT64_MIN);
    b_str(&b, "s.f64"); b_u32(&b, GGUF_TYPE_FLOAT64); b_f64(&b, 78.38367176906169);
    /* arrays of every element type */
    static const GGUFType et[] = {GGUF_TYPE_UINT8,  GGUF_TYPE_INT8,   GGUF_TYPE_UINT16,  GGUF_TYPE_INT16,
                                  GGUF_TYPE_UINT32, GGUF_TYPE_INT32,  GGUF_TYPE_FLOAT32, GGUF_TYPE_BOOL,
                                  GGUF_TYPE_UINT64, GGUF_TYPE_INT64, GGUF_TYPE_FLOAT64};
    const int n_et = (int)(sizeof et / sizeof et[0]);
    for (int i = 0; i < n_et; i++) {
        char key[32];
        snprintf(key, sizeof key, "a.%s", gguf_type_name(et[i]));
        b_str(&b, key);
        b_u32(&b, GGUF_TYPE_ARRAY);
        b_u32(&b, et[i]);
        b_u64(&b, 3);
        for (int j = 0; j < 3; j++) {
            int v = (j == 1) ? -2 : j + 1; /* 1, -2, 3 */
            switch (et[i]) {
            case GGUF_TYPE_FLOAT32: b_f32(&b, (float)v * 0.5f); break;
            case GGUF_TYPE_FLOAT64: b_f64(&b, (double)v * 0.5); break;
            case GGUF_TYPE_BOOL: b_u8(&b, (uint8_t)(j & 1)); break;
            default: b_le(&b, (uint64_t)(int64_t)v, (int)gguf_type_size(et[i])); break;
            }
        }
    }
    b_str(&b, "a.str"); b_u32(&b, GGUF_TYPE_ARRAY); b_u32(&b, GGUF_TYPE_STRING); b_u64(&b, 2);
    b_str(&b, "<s>"); b_str(&b, "");
    b_str(&b, "a.none"); b_u32(&b, GGUF_TYPE_ARRAY); b_u32(&b, GGUF_TYPE_STRING); b_u64(&b, 0);
    b_str(&b, "s.bool2"); b_u32(&b, GGUF_TYPE_BOOL); b_u8(&b, 0);
    int64_t ne = 4;
    b_tinfo(&b, "w", 1, &ne, GGML_TYPE_F32, 0);
    b_pad(&b, 32);
    b_f32(&b, 1.0f); b_f32(&b, 2.0f); b_f32(&b, 3.0f); b_f32(&b, 4.0f);

    Error err = {{0}};
    GGUFFile *f = gguf_open_memory(b.p, b.n, &err);
    if (!f) fprintf(stderr, "all types: %s\n", err.msg);
    CHECK_EXPR(f != NULL);
    if (!f) {
        b_free(&b);
        return;
    }
    CHECK_EXPR(gguf_n_kv(f) == (uint64_t)n_kv);
    const GGUFKV *kv;
    CHECK_EXPR((kv = gguf_find_kv(f, "s.u8")) && kv->type == GGUF_TYPE_UINT8 && kv->num.u64 == 250);
    CHECK_EXPR((kv = gguf_find_kv(f, "s.i8")) && kv->type == GGUF_TYPE_INT8 && kv->num.i64 == -100);
    CHECK_EXPR((kv = gguf_find_kv(f, "s.u16")) && kv->num.u64 == 65535);
    CHECK_EXPR((kv = gguf_find_kv(f, "s.i16")) && kv->num.i64 == -30000);
    CHECK_EXPR((kv = gguf_find_kv(f, "s.u32")) && kv->num.u64 == 0xdeadbeefu);
    CHECK_EXPR((kv = gguf_find_kv(f, "s.i32")) && kv->num.i64 == INT32_MIN);
    CHECK_EXPR((kv = gguf_find_kv(f, "s.f32")) && kv->num.f64 == -0.15625);
    CHECK_EXPR((kv = gguf_find_kv(f, "s.bool")) && kv->num.u64 == 1);
    CHECK_EXPR((kv = gguf_find_kv(f, "s.bool2")) && kv->num.u64 == 0);
    CHECK_EXPR((kv = gguf_find_kv(f, "s.str")) && kv->str.len == 6 && memcmp(kv->str.data, "grok-1", 6) == 0);
    CHECK_EXPR((kv = gguf_find_kv(f, "s.u64")) && kv->num.u64 == UINT64_MAX);
    CHECK_EXPR((kv = gguf_find_kv(f, "s.i64")) && kv->num.i64 == INT64_MIN);
    CHECK_EXPR((kv = gguf_find_kv(f, "s.f64")) && kv->num.f64 == 78.38367176906169);
    uint32_t u32;
    float f32;
    Error e2 = {{0}};
    CHECK_EXPR(gguf_get_u32(f, "s.i16", &u32, &e2) == -1);                  /* negative */
    CHECK_EXPR(gguf_get_u32(f, "s.u16", &u32, &e2) == 1 && u32 == 65535);   /* widened */
    CHECK_EXPR(gguf_get_f32(f, "s.f64", &f32, &e2) == 1 && f32 == (float)78.38367176906169);
    for (int i = 0; i < n_et; i++) {
        char key[32];
        snprintf(key, sizeof key, "a.%s", gguf_type_name(et[i]));
        kv = gguf_find_kv(f, key);
        CHECK_EXPR(kv && kv->type == GGUF_TYPE_ARRAY && kv->arr_type == et[i] && kv->arr_n == 3);
        if (!kv || kv->arr_n != 3) continue;
        bool uns = et[i] == GGUF_TYPE_UINT8 || et[i] == GGUF_TYPE_UINT16 || et[i] == GGUF_TYPE_UINT32 ||
                   et[i] == GGUF_TYPE_UINT64;
        if (et[i] == GGUF_TYPE_FLOAT32 || et[i] == GGUF_TYPE_FLOAT64) {
            CHECK_EXPR(gguf_arr_f64(kv, 0) == 0.5 && gguf_arr_f64(kv, 1) == -1.0 && gguf_arr_f64(kv, 2) == 1.5);
            CHECK_EXPR(gguf_arr_i64(kv, 1) == -1);
        } else if (et[i] == GGUF_TYPE_BOOL) {
            CHECK_EXPR(gguf_arr_i64(kv, 0) == 0 && gguf_arr_i64(kv, 1) == 1 && gguf_arr_i64(kv, 2) == 0);
        } else {
            CHECK_EXPR(gguf_arr_i64(kv, 0) == 1 && gguf_arr_i64(kv, 2) == 3);
            if (uns) {
                uint64_t max = et[i] == GGUF_TYPE_UINT64 ? UINT64_MAX : (1ull << (8 * gguf_type_size(et[i]))) - 1;
                uint64_t want = max - 1; /* -2 as unsigned */
                CHECK_EXPR(gguf_arr_f64(kv, 1) == (double)want);
            } else {
                CHECK_EXPR(gguf_arr_i64(kv, 1) == -2 && gguf_arr_f64(kv, 1) == -2.0);
            }
        }
    }
    CHECK_EXPR((kv = gguf_find_kv(f, "a.str")) && kv->arr_n == 2 && kv->arr_str[0].len == 3 &&
          memcmp(kv->arr_str[0].data, "<s>", 3) == 0 && kv->arr_str[1].len == 0);
    CHECK_EXPR((kv = gguf_find_kv(f, "a.none")) && kv->arr_type == GGUF_TYPE_STRING && kv->arr_n == 0);

    /* copy everything through the writer and compare */
    char path[1200];
    path_in(path, sizeof path, "alltypes.gguf");
    GGUFWriter *w = gguf_writer_new();
    CHECK_EXPR(gguf_copy_kv(w, f) == 0);
    const GGUFTensor *t = gguf_find_tensor(f, "w");
    CHECK_EXPR(t != NULL);
    CHECK_EXPR(gguf_add_tensor(w, "w", t->type, t->n_dims, t->ne, t->data, NULL, NULL, &err) == 0);
    CHECK_EXPR(gguf_write(w, path, &err) == 0);
    gguf_writer_free(w);
    GGUFFile *g = gguf_open(path, &err);
    CHECK_EXPR(g != NULL);
    if (g) {
        CHECK_EXPR(gguf_n_kv(g) == gguf_n_kv(f));
        for (uint64_t i = 0; i < gguf_n_kv(f) && i < gguf_n_kv(g); i++) {
            const GGUFKV *a = gguf_kv(f, i), *c = gguf_kv(g, i);
            bool same = strcmp(a->key, c->key) == 0 && a->type == c->type;
            if (same && a->type == GGUF_TYPE_STRING)
                same = a->str.len == c->str.len && memcmp(a->str.data, c->str.data, a->str.len) == 0;
            else if (same && a->type == GGUF_TYPE_ARRAY) {
                same = a->arr_type == c->arr_type && a->arr_n == c->arr_n;
                if (same && a->arr_type == GGUF_TYPE_STRING) {
                    for (uint64_t j = 0; j < a->arr_n && same; j++)
                        same = a->arr_str[j].len == c->arr_str[j].len &&
                               memcmp(a->arr_str[j].data, c->arr_str[j].data, a->arr_str[j].len) == 0;
                } else if (same) {
                    same = memcmp(a->arr_data, c->arr_data, a->arr_n * gguf_type_size(a->arr_type)) == 0;
                }
            } else if (same) {
                same = memcmp(&a->num, &c->num, sizeof a->num) == 0;
            }
            if (!same) fprintf(stderr, "copy_kv mismatch at %s\n", a->key);
            CHECK_EXPR(same);
        }
        const GGUFTensor *t2 = gguf_find_tensor(g, "w");
        CHECK_EXPR(t2 && t2->nbytes == 16 && memcmp(t2->data, t->data, 16) == 0);
        gguf_close(g);
    }
    gguf_close(f);
    unlink(path);
    b_free(&b);
}

static void test_alignment(void) {
    char path[1200];
    path_in(path, sizeof path, "align64.gguf");
    uint8_t q[34], one[4], big[400];
    fill_pattern(q, sizeof q, 7);
    fill_pattern(one, sizeof one, 8);
    fill_pattern(big, sizeof big, 9);
    Error err = {{0}};
    GGUFWriter *w = gguf_writer_new();
    CHECK_EXPR(gguf_set_u32(w, "general.alignment", 64) == 0);
    const int64_t ne_q[1] = {32}, ne_1[1] = {1}, ne_big[2] = {10, 10};
    CHECK_EXPR(gguf_add_tensor(w, "q", GGML_TYPE_Q8_0, 1, ne_q, q, NULL, NULL, &err) == 0);
    CHECK_EXPR(gguf_add_tensor(w, "one", GGML_TYPE_F32, 1, ne_1, one, NULL, NULL, &err) == 0);
    CHECK_EXPR(gguf_add_tensor(w, "big", GGML_TYPE_F32, 2, ne_big, big, NULL, NULL, &err) == 0);
    CHECK_EXPR(gguf_write(w, path, &err) == 0);
    gguf_writer_free(w);
    GGUFFile *f = gguf_open(path, &err);
    CHECK_EXPR(f != NULL);
    if (f) {
        CHECK_EXPR(gguf_alignment(f) == 64);
        const uint64_t want_off[3] = {0, 64, 128};
        const void *want_data[3] = {q, one, big};
        for (uint64_t i = 0; i < 3; i++) {
            const GGUFTensor *t = gguf_tensor(f, i);
            CHECK_EXPR(t->offset == want_off[i]);
            CHECK_EXPR((uintptr_t)t->data % 64 == 0);
            CHECK_EXPR(memcmp(t->data, want_data[i], t->nbytes) == 0);
        }
        struct stat st;
        CHECK_EXPR(stat(path, &st) == 0 && st.st_size % 64 == 0);
        CHECK_EXPR(gguf_tensor(f, 2)->nbytes == 400);
        gguf_close(f);
    }
    /* the memory reader finds the same data start (a multiple of 64) */
    size_t n = 0;
    uint8_t *bytes = read_all(path, &n);
    if (bytes) {
        GGUFFile *m = gguf_open_memory(bytes, n, &err);
        CHECK_EXPR(m != NULL);
        if (m) {
            ptrdiff_t ds = (const uint8_t *)gguf_tensor(m, 0)->data - bytes;
            CHECK_EXPR(ds > 0 && ds % 64 == 0);
            CHECK_EXPR((size_t)ds + 128 + 448 == n); /* 400 padded to 448 */
            gguf_close(m);
        }
        free(bytes);
    }
    unlink(path);

    /* writer refuses a bad alignment and leaves nothing behind */
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    w = gguf_writer_new();
    CHECK_EXPR(gguf_set_u32(w, "general.alignment", 48) == 0);
    CHECK_EXPR(gguf_add_tensor(w, "one", GGML_TYPE_F32, 1, ne_1, one, NULL, NULL, &err) == 0);
    CHECK_EXPR(gguf_write(w, path, &err) == -1 && strstr(err.msg, "power of two"));
    CHECK_EXPR(gguf_set_u8(w, "general.alignment", 64) == 0);
    CHECK_EXPR(gguf_write(w, path, &err) == -1 && strstr(err.msg, "u32"));
    CHECK_EXPR(!file_exists(path) && !file_exists(tmp));
    gguf_writer_free(w);

    /* reader: alignment must be a u32 power of two */
    ByteBuf b = {0};
    b_hdr(&b, 3, 0, 1);
    b_kv_u32(&b, "general.alignment", 48);
    EXPECT_ERR(&b, "power of two");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_kv_u32(&b, "general.alignment", 0);
    EXPECT_ERR(&b, "power of two");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, GGUF_TYPE_UINT64);
    b_u64(&b, 64);
    EXPECT_ERR(&b, "must be a u32");
    b_free(&b);
    /* a valid 8-byte alignment with a tensor at offset 8 */
    b_hdr(&b, 3, 2, 1);
    b_kv_u32(&b, "general.alignment", 8);
    int64_t ne2 = 2;
    b_tinfo(&b, "x", 1, &ne2, GGML_TYPE_F32, 0);
    b_tinfo(&b, "y", 1, &ne2, GGML_TYPE_F32, 8);
    b_pad(&b, 8);
    b_zeros(&b, 16);
    EXPECT_OK(&b);
    b_free(&b);
}

/* Writes part k (0-based) of an n-part split model. */
static int write_part(const char *prefix, int k, int n, int split_no, int tensors_count, const char *const *names,
                      int n_names, unsigned seed) {
    char path[1300];
    snprintf(path, sizeof path, "%s-%05d-of-%05d.gguf", prefix, k + 1, n);
    GGUFWriter *w = gguf_writer_new();
    if (!w) return -1;
    gguf_set_u16(w, "split.no", (uint16_t)split_no);
    gguf_set_u16(w, "split.count", (uint16_t)n);
    gguf_set_i32(w, "split.tensors.count", tensors_count);
    if (k == 0) {
        gguf_set_str(w, "general.name", "splitty");
        gguf_set_u32(w, "grok.block_count", 2);
    } else {
        gguf_set_str(w, "general.name", "not the first part");
    }
    uint8_t data[8][64];
    Error err = {{0}};
    int rc = 0;
    for (int i = 0; i < n_names && i < 8; i++) {
        fill_pattern(data[i], 64, seed + (unsigned)i);
        const int64_t ne[2] = {4, 4};
        if (gguf_add_tensor(w, names[i], GGML_TYPE_F32, 2, ne, data[i], NULL, NULL, &err)) rc = -1;
    }
    if (gguf_write(w, path, &err)) {
        fprintf(stderr, "write_part: %s\n", err.msg);
        rc = -1;
    }
    gguf_writer_free(w);
    return rc;
}

static void test_split(void) {
    char prefix[1200], p1[1300], p2[1300], p3[1300], other[1300];
    path_in(prefix, sizeof prefix, "split");
    snprintf(p1, sizeof p1, "%s-00001-of-00003.gguf", prefix);
    snprintf(p2, sizeof p2, "%s-00002-of-00003.gguf", prefix);
    snprintf(p3, sizeof p3, "%s-00003-of-00003.gguf", prefix);
    snprintf(other, sizeof other, "%s-renamed.gguf", prefix);
    const char *n0[] = {"t0", "t1"}, *n1[] = {"t2"}, *n2[] = {"t3", "t4"};
    CHECK_EXPR(write_part(prefix, 0, 3, 0, 5, n0, 2, 100) == 0);
    CHECK_EXPR(write_part(prefix, 1, 3, 1, 5, n1, 1, 200) == 0);
    CHECK_EXPR(write_part(prefix, 2, 3, 2, 5, n2, 2, 300) == 0);

    Error err = {{0}};
    GGUFFile *f = gguf_open(p1, &err);
    if (!f) fprintf(stderr, "split open: %s\n", err.msg);
    CHECK_EXPR(f != NULL);
    if (f) {
        CHECK_EXPR(gguf_n_files(f) == 3);
        CHECK_EXPR(gguf_n_tensors(f) == 5);
        struct stat s1, s2, s3;
        CHECK_EXPR(stat(p1, &s1) == 0 && stat(p2, &s2) == 0 && stat(p3, &s3) == 0);
        CHECK_EXPR(gguf_total_size(f) == (uint64_t)(s1.st_size + s2.st_size + s3.st_size));
        const char *names[5] = {"t0", "t1", "t2", "t3", "t4"};
        const int fidx[5] = {0, 0, 1, 2, 2};
        const unsigned seeds[5] = {100, 101, 200, 300, 301};
        for (int i = 0; i < 5; i++) {
            const GGUFTensor *t = gguf_find_tensor(f, names[i]);
            CHECK_EXPR(t != NULL);
            if (!t) continue;
            CHECK_EXPR(t == gguf_tensor(f, (uint64_t)i));
            CHECK_EXPR(t->file_index == fidx[i]);
            uint8_t want[64];
            fill_pattern(want, 64, seeds[i]);
            CHECK_EXPR(t->nbytes == 64 && memcmp(t->data, want, 64) == 0);
        }
        GGUFString name;
        CHECK_EXPR(gguf_get_str(f, "general.name", &name, &err) == 1 && name.len == 7 && memcmp(name.data, "splitty", 7) == 0);
        uint32_t bc = 0;
        CHECK_EXPR(gguf_get_u32(f, "grok.block_count", &bc, &err) == 1 && bc == 2);
        /* copy_kv drops the split.* keys (they describe the source's sharding) */
        GGUFWriter *w = gguf_writer_new();
        char merged[1300];
        snprintf(merged, sizeof merged, "%s-merged.gguf", prefix);
        CHECK_EXPR(gguf_copy_kv(w, f) == 0);
        for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
            const GGUFTensor *t = gguf_tensor(f, i);
            CHECK_EXPR(gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, NULL, NULL, &err) == 0);
        }
        CHECK_EXPR(gguf_write(w, merged, &err) == 0);
        gguf_writer_free(w);
        GGUFFile *g = gguf_open(merged, &err);
        CHECK_EXPR(g && gguf_n_files(g) == 1 && gguf_n_tensors(g) == 5 && !gguf_find_kv(g, "split.count") &&
              gguf_find_kv(g, "general.name"));
        if (g) CHECK_EXPR(memcmp(gguf_find_tensor(g, "t3")->data, gguf_find_tensor(f, "t3")->data, 64) == 0);
        gguf_close(g);
        unlink(merged);
        gguf_close(f);
    }

    /* the second part is not an entry point */
    f = gguf_open(p2, &err);
    CHECK_EXPR(f == NULL && strstr(err.msg, "first part"));
    if (g_verbose) printf("  split p2: %s\n", err.msg);
    gguf_close(f);

    /* the first part under another name: the others cannot be found */
    CHECK_EXPR(rename(p1, other) == 0);
    f = gguf_open(other, &err);
    CHECK_EXPR(f == NULL && strstr(err.msg, "does not end in"));
    gguf_close(f);
    CHECK_EXPR(rename(other, p1) == 0);

    /* a missing part */
    CHECK_EXPR(rename(p3, other) == 0);
    f = gguf_open(p1, &err);
    CHECK_EXPR(f == NULL && strstr(err.msg, "-00003-of-00003.gguf") && strstr(err.msg, "missing"));
    if (g_verbose) printf("  split missing: %s\n", err.msg);
    gguf_close(f);
    CHECK_EXPR(rename(other, p3) == 0);

    /* a part with the wrong split.no */
    CHECK_EXPR(write_part(prefix, 2, 3, 1, 5, n2, 2, 300) == 0);
    f = gguf_open(p1, &err);
    CHECK_EXPR(f == NULL && strstr(err.msg, "split.no"));
    if (g_verbose) printf("  split wrong no: %s\n", err.msg);
    gguf_close(f);

    /* a tensor name in two parts */
    const char *dup[] = {"t3", "t0"};
    CHECK_EXPR(write_part(prefix, 2, 3, 2, 5, dup, 2, 300) == 0);
    f = gguf_open(p1, &err);
    CHECK_EXPR(f == NULL && strstr(err.msg, "'t0'"));
    if (g_verbose) printf("  split dup: %s\n", err.msg);
    gguf_close(f);

    /* split.tensors.count disagrees with the parts */
    CHECK_EXPR(write_part(prefix, 2, 3, 2, 5, n2, 1, 300) == 0);
    f = gguf_open(p1, &err);
    CHECK_EXPR(f == NULL && strstr(err.msg, "split.tensors.count"));
    gguf_close(f);

    /* a corrupt later part is reported with its own name */
    size_t n = 0;
    CHECK_EXPR(write_part(prefix, 2, 3, 2, 5, n2, 2, 300) == 0);
    uint8_t *bytes = read_all(p3, &n);
    if (bytes) {
        CHECK_EXPR(write_all(p3, bytes, n / 2) == 0);
        f = gguf_open(p1, &err);
        CHECK_EXPR(f == NULL && strstr(err.msg, p3) && strstr(err.msg, "truncated"));
        if (g_verbose) printf("  split truncated: %s\n", err.msg);
        gguf_close(f);
        free(bytes);
    }
    /* and restored, it opens again */
    CHECK_EXPR(write_part(prefix, 2, 3, 2, 5, n2, 2, 300) == 0);
    f = gguf_open(p1, &err);
    CHECK_EXPR(f != NULL);
    gguf_close(f);

    unlink(p1);
    unlink(p2);
    unlink(p3);
}

/* The valid round-trip file cut short at many lengths: always a clean error. */
static void test_truncation(void) {
    CHECK_EXPR(g_rt_bytes != NULL);
    if (!g_rt_bytes) return;
    Error err = {{0}};
    GGUFFile *full = gguf_open_memory(g_rt_bytes, g_rt_size, &err);
    CHECK_EXPR(full != NULL);
    if (!full) return;
    size_t data_start = (size_t)((const uint8_t *)gguf_tensor(full, 0)->data - g_rt_bytes);
    const GGUFTensor *last = gguf_tensor(full, gguf_n_tensors(full) - 1);
    size_t data_end = (size_t)((const uint8_t *)last->data - g_rt_bytes) + (size_t)last->nbytes;
    gguf_close(full);
    CHECK_EXPR(data_start % 32 == 0 && data_end > data_start && data_end <= g_rt_size);

    int tried = 0, bad = 0, no_trunc_word = 0;
    for (size_t len = 0; len < data_end; len++) {
        if (len > data_start + 40 && (len % 7) != 0 && len != data_end - 1) continue;
        tried++;
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, g_rt_bytes, len);
        Error e = {{0}};
        GGUFFile *f = gguf_open_memory(copy, len, &e);
        if (f || e.msg[0] == 0) {
            if (bad < 5) fprintf(stderr, "truncation at %zu of %zu: %s\n", len, g_rt_size, f ? "accepted" : "no message");
            bad++;
        } else if (len >= 4 && !strstr(e.msg, "truncated")) {
            if (no_trunc_word < 5) fprintf(stderr, "truncation at %zu: message without 'truncated': %s\n", len, e.msg);
            no_trunc_word++;
        }
        if (g_verbose && (len < 40 || len % 97 == 0)) printf("  cut at %zu: %s\n", len, e.msg);
        gguf_close(f);
        free(copy);
    }
    CHECK_EXPR(tried > (int)data_start);
    CHECK_EXPR(bad == 0);
    CHECK_EXPR(no_trunc_word == 0);

    /* the trailing padding after the last tensor is optional */
    {
        uint8_t *copy = malloc(data_end);
        memcpy(copy, g_rt_bytes, data_end);
        GGUFFile *f = gguf_open_memory(copy, data_end, &err);
        CHECK_EXPR(f != NULL);
        gguf_close(f);
        free(copy);
    }

    /* the same through files (mmap path), at a few lengths */
    char path[1200];
    path_in(path, sizeof path, "trunc.gguf");
    const size_t lens[] = {0, 1, 3, 4, 10, 23, 24, 25, 100, data_start - 1, data_start, data_start + 5, data_end - 1};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        CHECK_EXPR(write_all(path, g_rt_bytes, lens[i]) == 0);
        Error e = {{0}};
        GGUFFile *f = gguf_open(path, &e);
        CHECK_EXPR(f == NULL && strstr(e.msg, path) != NULL);
        gguf_close(f);
    }
    unlink(path);
}

static void test_bad_headers(void) {
    ByteBuf b = {0};
    int64_t ne1 = 8;

    /* sanity: the helpers make valid files */
    make_one_tensor(&b, 1, &ne1, GGML_TYPE_F32, 0, 32);
    EXPECT_OK(&b);
    b_free(&b);
    make_two_tensors(&b, "x", 8, 0, "y", 8, 32, 64);
    EXPECT_OK(&b);
    b_free(&b);

    /* empty / tiny buffers */
    EXPECT_ERR(&b, "truncated");
    {
        Error e = {{0}};
        CHECK_EXPR(gguf_open_memory(NULL, 0, &e) == NULL && e.msg[0]);
    }

    /* magic and version */
    b_bytes(&b, "GGML", 4);
    b_u32(&b, 3);
    b_u64(&b, 0);
    b_u64(&b, 0);
    EXPECT_ERR(&b, "not a GGUF file");
    b_free(&b);
    b_bytes(&b, "\x7f" "ELF", 4);
    b_zeros(&b, 60);
    EXPECT_ERR(&b, "not a GGUF file");
    b_free(&b);
    const uint32_t versions[] = {0, 1, 2, 4, 0x03000000u, 999};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        b_hdr(&b, versions[i], 0, 0);
        EXPECT_ERR(&b, versions[i] == 0x03000000u ? "big-endian" : "version");
        b_free(&b);
    }
    b_hdr(&b, 3, 0, 0);
    EXPECT_OK(&b); /* an empty model is still a valid file */
    b_free(&b);

    /* absurd counts: rejected before anything is allocated for them */
    const uint64_t huge = 1ull << 62;
    b_hdr(&b, 3, huge, 0);
    b_zeros(&b, 64);
    EXPECT_ERR(&b, "n_tensors");
    b_free(&b);
    b_hdr(&b, 3, 0, huge);
    b_zeros(&b, 64);
    EXPECT_ERR(&b, "n_kv");
    b_free(&b);
    b_hdr(&b, 3, UINT64_MAX, 0);
    EXPECT_ERR(&b, "negative");
    b_free(&b);
    b_hdr(&b, 3, 0, (uint64_t)INT64_MIN);
    EXPECT_ERR(&b, "negative");
    b_free(&b);
    b_hdr(&b, 3, 2, 0); /* two infos promised, room for one */
    b_tinfo(&b, "x", 1, &ne1, GGML_TYPE_F32, 0);
    EXPECT_ERR(&b, "n_tensors");
    b_free(&b);
    /* string lengths */
    b_hdr(&b, 3, 0, 1);
    b_u64(&b, huge); /* key length */
    b_zeros(&b, 16);
    EXPECT_ERR(&b, "length");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, GGUF_TYPE_STRING);
    b_u64(&b, huge); /* value length */
    b_zeros(&b, 16);
    EXPECT_ERR(&b, "length");
    b_free(&b);
    b_hdr(&b, 3, 1, 0);
    b_u64(&b, UINT64_MAX); /* tensor name length */
    b_zeros(&b, 40);
    EXPECT_ERR(&b, "length");
    b_free(&b);
    /* array counts */
    const GGUFType arr_types[] = {GGUF_TYPE_UINT8, GGUF_TYPE_UINT32, GGUF_TYPE_FLOAT64, GGUF_TYPE_STRING};
    const uint64_t counts[] = {huge, UINT64_MAX, 1ull << 61, 17};
    for (size_t i = 0; i < sizeof arr_types / sizeof arr_types[0]; i++) {
        for (size_t j = 0; j < sizeof counts / sizeof counts[0]; j++) {
            b_hdr(&b, 3, 0, 1);
            b_str(&b, "arr");
            b_u32(&b, GGUF_TYPE_ARRAY);
            b_u32(&b, arr_types[i]);
            b_u64(&b, counts[j]);
            b_zeros(&b, 16); /* less than 17 elements of anything */
            EXPECT_ERR(&b, "array");
            b_free(&b);
        }
    }
    /* a string array whose element length is absurd */
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "arr");
    b_u32(&b, GGUF_TYPE_ARRAY);
    b_u32(&b, GGUF_TYPE_STRING);
    b_u64(&b, 2);
    b_str(&b, "ok");
    b_u64(&b, huge);
    b_zeros(&b, 8);
    EXPECT_ERR(&b, "string 1 of 2");
    b_free(&b);

    /* value types */
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, 13);
    b_u32(&b, 0);
    EXPECT_ERR(&b, "unknown value type 13");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, (uint32_t)-1);
    b_u32(&b, 0);
    EXPECT_ERR(&b, "unknown value type -1");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "nested");
    b_u32(&b, GGUF_TYPE_ARRAY);
    b_u32(&b, GGUF_TYPE_ARRAY);
    b_u64(&b, 1);
    b_u32(&b, GGUF_TYPE_UINT8);
    b_u64(&b, 1);
    b_u8(&b, 0);
    EXPECT_ERR(&b, "arrays of arrays");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, GGUF_TYPE_ARRAY);
    b_u32(&b, 77);
    b_u64(&b, 1);
    b_u8(&b, 0);
    EXPECT_ERR(&b, "unknown array element type 77");
    b_free(&b);

    /* keys */
    b_hdr(&b, 3, 0, 2);
    b_kv_u32(&b, "same", 1);
    b_kv_str(&b, "same", "again");
    EXPECT_ERR(&b, "duplicate key 'same'");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_kv_u32(&b, "", 1);
    EXPECT_ERR(&b, "empty");
    b_free(&b);
    b_hdr(&b, 3, 0, 1);
    b_u64(&b, 3);
    b_bytes(&b, "a\0b", 3);
    b_u32(&b, GGUF_TYPE_UINT8);
    b_u8(&b, 1);
    EXPECT_ERR(&b, "NUL");
    b_free(&b);

    /* n_dims */
    const int64_t ne5[5] = {8, 1, 1, 1, 1};
    make_one_tensor(&b, 0, ne5, GGML_TYPE_F32, 0, 32);
    EXPECT_ERR(&b, "n_dims 0");
    b_free(&b);
    make_one_tensor(&b, 5, ne5, GGML_TYPE_F32, 0, 32);
    EXPECT_ERR(&b, "n_dims 5");
    b_free(&b);
    make_one_tensor(&b, 4, ne5, GGML_TYPE_F32, 0, 32);
    EXPECT_OK(&b);
    b_free(&b);

    /* types and shapes */
    make_one_tensor(&b, 1, &ne1, 999, 0, 64);
    EXPECT_ERR(&b, "unknown tensor type 999");
    b_free(&b);
    make_one_tensor(&b, 1, &ne1, 4, 0, 64); /* removed id */
    EXPECT_ERR(&b, "unknown tensor type 4");
    b_free(&b);
    make_one_tensor(&b, 1, &ne1, (uint32_t)-1, 0, 64);
    EXPECT_ERR(&b, "unknown tensor type");
    b_free(&b);
    const int64_t ne33[2] = {33, 2};
    make_one_tensor(&b, 2, ne33, GGML_TYPE_Q8_0, 0, 256);
    EXPECT_ERR(&b, "not a multiple of the q8_0 block size 32");
    b_free(&b);
    const int64_t ne64[2] = {64, 2};
    make_one_tensor(&b, 2, ne64, GGML_TYPE_Q8_0, 0, 136);
    EXPECT_OK(&b);
    b_free(&b);
    make_one_tensor(&b, 2, ne64, GGML_TYPE_Q8_0, 0, 135);
    EXPECT_ERR(&b, "truncated");
    b_free(&b);
    const int64_t neneg[2] = {8, -1};
    make_one_tensor(&b, 2, neneg, GGML_TYPE_F32, 0, 64);
    EXPECT_ERR(&b, "negative");
    b_free(&b);
    const int64_t nebig[3] = {1ll << 32, 1ll << 32, 1ll << 32};
    make_one_tensor(&b, 3, nebig, GGML_TYPE_F32, 0, 64);
    EXPECT_ERR(&b, "overflow");
    b_free(&b);
    const int64_t nebytes[2] = {1ll << 62, 1}; /* element count fits, byte size does not */
    make_one_tensor(&b, 2, nebytes, GGML_TYPE_F32, 0, 64);
    EXPECT_ERR(&b, "overflow");
    b_free(&b);
    const int64_t nelarge[2] = {1ll << 40, 1}; /* no overflow, far past the end */
    make_one_tensor(&b, 2, nelarge, GGML_TYPE_F32, 0, 64);
    EXPECT_ERR(&b, "past end");
    b_free(&b);
    const int64_t nezero[2] = {0, 1ll << 62};
    make_one_tensor(&b, 2, nezero, GGML_TYPE_F32, 0, 0);
    EXPECT_OK(&b);
    b_free(&b);

    /* offsets */
    make_one_tensor(&b, 1, &ne1, GGML_TYPE_F32, 16, 64);
    EXPECT_ERR(&b, "not a multiple of the alignment 32");
    b_free(&b);
    make_one_tensor(&b, 1, &ne1, GGML_TYPE_F32, 32, 64);
    EXPECT_OK(&b);
    b_free(&b);
    make_one_tensor(&b, 1, &ne1, GGML_TYPE_F32, 64, 64);
    EXPECT_ERR(&b, "past end");
    b_free(&b);
    make_one_tensor(&b, 1, &ne1, GGML_TYPE_F32, 1ull << 40, 64);
    EXPECT_ERR(&b, "past end");
    b_free(&b);
    make_one_tensor(&b, 1, &ne1, GGML_TYPE_F32, UINT64_MAX - 31, 64); /* offset + size wraps */
    EXPECT_ERR(&b, "past end");
    b_free(&b);

    /* overlapping and duplicate tensors */
    make_two_tensors(&b, "x", 16, 0, "y", 8, 32, 128);
    EXPECT_ERR(&b, "overlap");
    b_free(&b);
    make_two_tensors(&b, "x", 8, 32, "y", 16, 0, 128); /* out of order */
    EXPECT_ERR(&b, "overlap");
    b_free(&b);
    make_two_tensors(&b, "x", 8, 0, "y", 8, 0, 64);
    EXPECT_ERR(&b, "overlap");
    b_free(&b);
    make_two_tensors(&b, "x", 8, 64, "y", 8, 0, 96); /* out of order, disjoint: fine */
    EXPECT_OK(&b);
    b_free(&b);
    make_two_tensors(&b, "x", 8, 0, "x", 8, 32, 64);
    EXPECT_ERR(&b, "duplicate tensor name 'x'");
    b_free(&b);
    make_two_tensors(&b, "x", 0, 0, "y", 8, 0, 64); /* an empty tensor overlaps nothing */
    EXPECT_OK(&b);
    b_free(&b);
}

static void test_open_errors(void) {
    Error err = {{0}};
    char path[1200];
    path_in(path, sizeof path, "does-not-exist.gguf");
    GGUFFile *f = gguf_open(path, &err);
    CHECK_EXPR(f == NULL && strstr(err.msg, path) && strstr(err.msg, "cannot open"));
    f = gguf_open(g_dir, &err);
    CHECK_EXPR(f == NULL && strstr(err.msg, "not a regular file"));
    path_in(path, sizeof path, "empty.gguf");
    CHECK_EXPR(write_all(path, "", 0) == 0);
    f = gguf_open(path, &err);
    CHECK_EXPR(f == NULL && strstr(err.msg, "truncated"));
    unlink(path);
    gguf_close(NULL); /* no-op */
}

static void test_writer_errors(void) {
    Error err = {{0}};
    char path[1200], tmp[1300];
    path_in(path, sizeof path, "werr.gguf");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(path);
    uint8_t data[4096];
    fill_pattern(data, sizeof data, 42);

    GGUFWriter *w = gguf_writer_new();
    const int64_t ne8[1] = {8}, ne33[1] = {33}, neneg[2] = {8, -2};
    CHECK_EXPR(gguf_add_tensor(w, "t", 999, 1, ne8, data, NULL, NULL, &err) == -1 && strstr(err.msg, "unknown tensor type 999"));
    CHECK_EXPR(gguf_add_tensor(w, "t", GGML_TYPE_F32, 0, ne8, data, NULL, NULL, &err) == -1 && strstr(err.msg, "n_dims"));
    CHECK_EXPR(gguf_add_tensor(w, "t", GGML_TYPE_F32, 5, ne8, data, NULL, NULL, &err) == -1);
    CHECK_EXPR(gguf_add_tensor(w, "t", GGML_TYPE_Q8_0, 1, ne33, data, NULL, NULL, &err) == -1 && strstr(err.msg, "multiple"));
    CHECK_EXPR(gguf_add_tensor(w, "t", GGML_TYPE_F32, 2, neneg, data, NULL, NULL, &err) == -1 && strstr(err.msg, "negative"));
    CHECK_EXPR(gguf_add_tensor(w, "t", GGML_TYPE_F32, 1, ne8, NULL, NULL, NULL, &err) == -1);
    CHECK_EXPR(gguf_add_tensor(w, "", GGML_TYPE_F32, 1, ne8, data, NULL, NULL, &err) == -1);
    char long_name[80];
    memset(long_name, 'n', 64);
    long_name[64] = 0; /* 64 bytes: llama.cpp's limit is 63 */
    CHECK_EXPR(gguf_add_tensor(w, long_name, GGML_TYPE_F32, 1, ne8, data, NULL, NULL, &err) == -1 && strstr(err.msg, "63"));
    long_name[63] = 0;
    CHECK_EXPR(gguf_add_tensor(w, long_name, GGML_TYPE_F32, 1, ne8, data, NULL, NULL, &err) == 0);
    CHECK_EXPR(gguf_add_tensor(w, "t", GGML_TYPE_F32, 1, ne8, data, NULL, NULL, &err) == 0);
    CHECK_EXPR(gguf_add_tensor(w, "t", GGML_TYPE_F32, 1, ne8, data, NULL, NULL, &err) == -1 && strstr(err.msg, "twice"));

    /* no such directory */
    char nodir[1300];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.gguf", g_dir);
    CHECK_EXPR(gguf_write(w, nodir, &err) == -1 && strstr(err.msg, "no/such/dir"));

    /* fill callback failure: no file, no tmp, the message names the tensor */
    FillCtx fc = {data, 32, 0, true};
    CHECK_EXPR(gguf_add_tensor(w, "filled", GGML_TYPE_F32, 1, ne8, NULL, fill_cb, &fc, &err) == 0);
    CHECK_EXPR(gguf_write(w, path, &err) == -1 && strstr(err.msg, "filled") && strstr(err.msg, "fill refused"));
    CHECK_EXPR(!file_exists(path) && !file_exists(tmp));
    fc.fail = false;
    CHECK_EXPR(gguf_write(w, path, &err) == 0 && file_exists(path) && !file_exists(tmp));
    gguf_writer_free(w);
    size_t good_n = 0;
    uint8_t *good = read_all(path, &good_n);

    /* disk full (simulated with RLIMIT_FSIZE): error, the old file untouched */
    struct rlimit old;
    if (getrlimit(RLIMIT_FSIZE, &old) == 0) {
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim = old;
        lim.rlim_cur = 8192;
        if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
            w = gguf_writer_new();
            const int64_t ne_big[2] = {256, 16}; /* 16 KiB */
            uint8_t *big = calloc(1, 16384);
            CHECK_EXPR(gguf_add_tensor(w, "big", GGML_TYPE_F32, 2, ne_big, big, NULL, NULL, &err) == 0);
            CHECK_EXPR(gguf_write(w, path, &err) == -1 && strstr(err.msg, "write failed"));
            if (g_verbose) printf("  disk full: %s\n", err.msg);
            setrlimit(RLIMIT_FSIZE, &old);
            CHECK_EXPR(!file_exists(tmp));
            size_t n = 0;
            uint8_t *now = read_all(path, &n);
            CHECK_EXPR(now && good && n == good_n && memcmp(now, good, n) == 0);
            free(now);
            free(big);
            gguf_writer_free(w);
        }
        signal(SIGXFSZ, prev);
    }
    free(good);
    unlink(path);
    gguf_writer_free(NULL); /* no-op */
}

static void test_type_helpers(void) {
    CHECK_EXPR(gguf_type_size(GGUF_TYPE_UINT8) == 1 && gguf_type_size(GGUF_TYPE_BOOL) == 1);
    CHECK_EXPR(gguf_type_size(GGUF_TYPE_INT16) == 2 && gguf_type_size(GGUF_TYPE_FLOAT32) == 4);
    CHECK_EXPR(gguf_type_size(GGUF_TYPE_FLOAT64) == 8 && gguf_type_size(GGUF_TYPE_INT64) == 8);
    CHECK_EXPR(gguf_type_size(GGUF_TYPE_STRING) == 0 && gguf_type_size(GGUF_TYPE_ARRAY) == 0);
    CHECK_EXPR(gguf_type_size((GGUFType)99) == 0);
    CHECK_EXPR(strcmp(gguf_type_name(GGUF_TYPE_FLOAT32), "f32") == 0);
    CHECK_EXPR(strcmp(gguf_type_name(GGUF_TYPE_STRING), "str") == 0);
    CHECK_EXPR(strcmp(gguf_type_name((GGUFType)99), "unknown") == 0);
}

int main(void) {
    g_verbose = getenv("GGUF_TEST_VERBOSE") != NULL;
    const char *base = getenv("GROK_TMP");
    if (!base || !*base) base = "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/test_gguf.%d", base, (int)getpid());
    if (mkdir_p(g_dir) != 0) {
        fprintf(stderr, "cannot create %s: %s\n", g_dir, strerror(errno));
        return 1;
    }
    test_type_helpers();
    test_roundtrip();
    test_all_types();
    test_alignment();
    test_split();
    test_truncation();
    test_bad_headers();
    test_open_errors();
    test_writer_errors();
    free(g_rt_bytes);
    rmdir(g_dir);
    return check_report("gguf");
}
