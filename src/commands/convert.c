/* convert.c - `grok convert`, see convert.h.
 *
 * Each output tensor is described by an OutTensor: its GGUF name, shape and
 * type, and where its values come from (a source). The GGUF writer calls
 * fill() for one tensor at a time; fill() cuts the output rows into tiles of
 * TILE_ROWS rows that the threads of a pool produce independently: a tile is
 * first made as f32 values (reading the memory-mapped inputs, transposing
 * where the source is [in, out]) and then converted row by row to the
 * output type - except int8 + scale sources going to Q8_0, whose blocks are
 * copied exactly when possible.
 *
 * Sources:
 *   SRC_F32  little-endian fp32, [rows][cols] or transposed [cols][rows]
 *            (Grok-1 embedding, norms, router).
 *   SRC_Q8   Grok-1 QuantizedWeight8bit: int8 w8[X][in][out] with bf16 scales
 *            s[X][nb][out] (nb = 1 per-column, 8 blocks along the input for
 *            the row-parallel matrices); output row (e, j) holds
 *            W[i] = bf16(w8[e][i][j] * s[e][i / (in/nb)][j]) for i < in, which
 *            is the JAX reference's dequantization (A3: int8 x bf16 -> bf16).
 *   SRC_ST   safetensors tensors [out][in] (BF16/F16/F32), one per expert,
 *            each possibly cut into tensor-parallel parts along dim 0 or 1. */
#include "convert.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common.h"
#include "gguf.h"
#include "model.h"
#include "pickle.h"
#include "quant.h"
#include "quantize.h"
#include "safetensors.h"
#include "threadpool.h"
#include "tokenizer.h"

#define TILE_ROWS 32
#define MAX_PARTS 256 /* experts x tensor-parallel parts of one tensor (Grok-2: 8 x 8) */

/* Grok-1 constants of run.py / model.py (grok-architecture.md A1). */
#define G1_CONTEXT 8192
#define G1_EPS 1e-5f
#define G1_EXPERTS_USED 2
#define G1_HEAD_DIM 128

/* ---- memory-mapped input files ----------------------------------------- */

typedef struct {
    char *path;
    uint8_t *p;
    uint64_t size;
} Mapped;

static int map_file(const char *path, Mapped *m, Error *err) {
    memset(m, 0, sizeof *m);
    int fd = open_regular(path, err); /* FIFOs and devices refused */
    struct stat st;
    if (fd < 0) return -1;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, "%s: %s", path, strerror(e));
    }
    m->size = (uint64_t)st.st_size;
    if (m->size) {
        void *p = mmap(NULL, (size_t)m->size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return err_set(err, "%s: cannot mmap: %s", path, strerror(e));
        }
        m->p = p;
        madvise(p, (size_t)m->size, MADV_SEQUENTIAL);
    }
    close(fd);
    m->path = strdup(path);
    if (!m->path) {
        if (m->p) munmap(m->p, (size_t)m->size);
        return err_set(err, "out of memory");
    }
    return 0;
}

static void unmap_file(Mapped *m) {
    if (m->p) munmap(m->p, (size_t)m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, dir, a);
    s[a] = '/';
    memcpy(s + a + 1, name, b + 1);
    return s;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- output tensors and their sources ---------------------------------- */

typedef enum { SRC_F32, SRC_Q8, SRC_ST } SrcKind;

typedef struct {
    const uint8_t *data;
    STDtype dtype;
    int64_t rows, cols;
} Part;

typedef struct Conv Conv;

typedef struct {
    char name[96];
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[3];
    int64_t rows, cols;  /* rows = ne[1] * ne[2], cols = ne[0] */
    SrcKind kind;
    const char *origin;  /* input file, for messages */
    /* SRC_F32 */
    const uint8_t *f32;
    bool transposed;
    /* SRC_Q8 */
    const uint8_t *w8, *scales;
    int64_t n_exp, in, out, nb;
    /* SRC_ST: parts[e * n_parts + p] */
    Part parts[MAX_PARTS];
    int n_parts, cat_dim;
    Conv *cv;
} OutTensor;

struct Conv {
    uint32_t type;          /* the type asked for (weight matrices) */
    int n_threads;
    ThreadPool *tp;
    bool quiet, tty;
    OutTensor *t;
    int n_t, cap_t;
    uint64_t total_bytes, done_bytes;
    int done_tensors;
    double t0, last_print;
    int last_pct;
    atomic_uint_fast64_t q8_exact_rows, q8_requant_rows;
    int n_f16_fallback;
    char notes[1024];       /* what was rounded / changed, for general.description */
};

static float rd_f32(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static float rd_elem(const uint8_t *p, STDtype t) {
    switch (t) {
    case ST_F32: return rd_f32(p);
    case ST_F16: return fp16_to_f32(rd_u16(p));
    case ST_BF16: return bf16_to_f32(rd_u16(p));
    default: return 0.0f;
    }
}

/* The reference's dequantized weight: bf16(w8 * s); the product of an int8
 * and a bf16 is exact in f32, so this is one rounding, as in JAX. */
static float deq8(int8_t w, float s) { return bf16_to_f32(f32_to_bf16((float)w * s)); }

/* Rows r0 .. r0+n of t as f32 into tile (n x cols). */
static void tile_f32(const OutTensor *t, int64_t r0, int64_t n, float *tile) {
    const int64_t C = t->cols;
    switch (t->kind) {
    case SRC_F32:
        if (!t->transposed) {
            for (int64_t k = 0; k < n; k++)
                for (int64_t i = 0; i < C; i++) tile[k * C + i] = rd_f32(t->f32 + 4 * ((r0 + k) * C + i));
        } else { /* stored [C][rows] */
            for (int64_t i = 0; i < C; i++)
                for (int64_t k = 0; k < n; k++) tile[k * C + i] = rd_f32(t->f32 + 4 * (i * t->rows + r0 + k));
        }
        break;
    case SRC_Q8: {
        const int64_t in = t->in, out = t->out, blk = in / t->nb;
        for (int64_t k = 0; k < n; k++) {
            const int64_t e = (r0 + k) / out, j = (r0 + k) % out;
            const int8_t *w = (const int8_t *)t->w8 + e * in * out + j;
            const uint8_t *s = t->scales + 2 * (e * t->nb * out + j);
            float *row = tile + k * C;
            for (int64_t b = 0; b < t->nb; b++) {
                const float sc = bf16_to_f32(rd_u16(s + 2 * b * out));
                for (int64_t i = b * blk; i < (b + 1) * blk; i++) row[i] = deq8(w[i * out], sc);
            }
        }
        break;
    }
    case SRC_ST: {
        const int64_t per = t->rows / t->n_exp;
        for (int64_t k = 0; k < n; k++) {
            const int64_t e = (r0 + k) / per, r = (r0 + k) % per;
            const Part *ps = t->parts + e * t->n_parts;
            float *row = tile + k * C;
            if (t->cat_dim == 0) {
                int64_t rr = r;
                int p = 0;
                while (p < t->n_parts - 1 && rr >= ps[p].rows) rr -= ps[p++].rows;
                const int es = st_dtype_size(ps[p].dtype);
                for (int64_t i = 0; i < C; i++) row[i] = rd_elem(ps[p].data + (size_t)es * (rr * C + i), ps[p].dtype);
            } else {
                int64_t o = 0;
                for (int p = 0; p < t->n_parts; p++) {
                    const int es = st_dtype_size(ps[p].dtype);
                    for (int64_t i = 0; i < ps[p].cols; i++)
                        row[o + i] = rd_elem(ps[p].data + (size_t)es * (r * ps[p].cols + i), ps[p].dtype);
                    o += ps[p].cols;
                }
            }
        }
        break;
    }
    }
}

/* Q8 source to Q8_0 without floats: one output row (e, j); each block of 32
 * inputs lies in one scale block and takes d = fp16(scale), q = the int8
 * values. Returns false (nothing written) when some scale has no exact fp16
 * value. */
static bool q8_row_exact(const OutTensor *t, int64_t r, BlockQ8_0 *dst) {
    const int64_t in = t->in, out = t->out, blk = in / t->nb;
    const int64_t e = r / out, j = r % out;
    const int8_t *w = (const int8_t *)t->w8 + e * in * out + j;
    const uint8_t *s = t->scales + 2 * (e * t->nb * out + j);
    for (int64_t b = 0; b < t->nb; b++) {
        const float sc = bf16_to_f32(rd_u16(s + 2 * b * out));
        if (fp16_to_f32(f32_to_fp16(sc)) != sc) return false;
    }
    for (int64_t q = 0; q < in / QK8_0; q++) {
        const float sc = bf16_to_f32(rd_u16(s + 2 * ((q * QK8_0) / blk) * out));
        dst[q].d = f32_to_fp16(sc);
        for (int k = 0; k < QK8_0; k++) dst[q].qs[k] = w[(q * QK8_0 + k) * out];
    }
    return true;
}

typedef struct {
    OutTensor *t;
    uint8_t *dst;
    size_t row_bytes;
    float *scratch;          /* n_threads x TILE_ROWS x cols */
    atomic_int_fast64_t next;
} FillTask;

static void fill_fn(void *ctx, int ith, int nth) {
    FillTask *ft = ctx;
    OutTensor *t = ft->t;
    float *tile = ft->scratch + (size_t)ith * TILE_ROWS * (size_t)t->cols;
    const bool q8_exact = t->kind == SRC_Q8 && t->type == GGML_TYPE_Q8_0 && (t->in / t->nb) % QK8_0 == 0;
    (void)nth;
    for (;;) {
        const int64_t r0 = atomic_fetch_add(&ft->next, 1) * TILE_ROWS;
        if (r0 >= t->rows) break;
        const int64_t n = t->rows - r0 < TILE_ROWS ? t->rows - r0 : TILE_ROWS;
        if (q8_exact) {
            for (int64_t k = 0; k < n; k++) {
                uint8_t *d = ft->dst + (size_t)(r0 + k) * ft->row_bytes;
                if (q8_row_exact(t, r0 + k, (BlockQ8_0 *)d)) {
                    atomic_fetch_add(&t->cv->q8_exact_rows, 1);
                } else {
                    tile_f32(t, r0 + k, 1, tile);
                    quantize_row(t->type, tile, d, t->cols);
                    atomic_fetch_add(&t->cv->q8_requant_rows, 1);
                }
            }
            continue;
        }
        tile_f32(t, r0, n, tile);
        for (int64_t k = 0; k < n; k++)
            quantize_row(t->type, tile + k * t->cols, ft->dst + (size_t)(r0 + k) * ft->row_bytes, t->cols);
        if (t->kind == SRC_Q8 && t->type == GGML_TYPE_Q8_0) atomic_fetch_add(&t->cv->q8_requant_rows, (uint64_t)n);
    }
}

static void fmt_time(char *b, size_t n, double s) {
    if (s < 60) snprintf(b, n, "%.0f s", s);
    else if (s < 3600) snprintf(b, n, "%.1f min", s / 60);
    else snprintf(b, n, "%.1f h", s / 3600);
}

static void progress(Conv *cv, const char *name) {
    if (cv->quiet) return;
    const double now = time_now(), el = now - cv->t0;
    const double frac = cv->total_bytes ? (double)cv->done_bytes / (double)cv->total_bytes : 1.0;
    const int pct = (int)(frac * 100.0);
    const bool last = cv->done_tensors == cv->n_t;
    if (!cv->tty && !last && pct / 5 == cv->last_pct / 5 && now - cv->last_print < 30) return;
    cv->last_pct = pct;
    cv->last_print = now;
    char bar[31], e1[32], e2[32];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fmt_time(e1, sizeof e1, el);
    fmt_time(e2, sizeof e2, frac > 0 ? el * (1 - frac) / frac : 0);
    fprintf(stderr, "%s[%s] %3d%% %4d/%d %-26.26s %7.2f/%.2f GB %s ETA %s%s", cv->tty ? "\r" : "", bar, pct,
            cv->done_tensors, cv->n_t, name, cv->done_bytes / 1e9, cv->total_bytes / 1e9, e1, e2,
            cv->tty && !last ? "\x1b[K" : "\n");
    fflush(stderr);
}

/* Drops the input pages of a finished tensor from this process's memory
 * (they are clean file pages: the kernel can reclaim them anyway, but
 * resident-size accounting and the OOM killer see them until then). */
static void release(const void *p, uint64_t n) {
    if (!p || !n) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(page - 1), b = ((uintptr_t)p + n + page - 1) & ~(page - 1);
    madvise((void *)a, b - a, MADV_DONTNEED);
}

static void release_sources(const OutTensor *t) {
    switch (t->kind) {
    case SRC_F32: release(t->f32, (uint64_t)t->rows * (uint64_t)t->cols * 4); break;
    case SRC_Q8:
        release(t->w8, (uint64_t)(t->n_exp * t->in * t->out));
        release(t->scales, (uint64_t)(t->n_exp * t->nb * t->out) * 2);
        break;
    case SRC_ST:
        for (int i = 0; i < t->n_parts * t->n_exp; i++)
            release(t->parts[i].data,
                    (uint64_t)(t->parts[i].rows * t->parts[i].cols) * (uint64_t)st_dtype_size(t->parts[i].dtype));
        break;
    }
}

static int fill_tensor(void *ctx, void *dst, uint64_t nbytes, Error *err) {
    OutTensor *t = ctx;
    Conv *cv = t->cv;
    FillTask ft;
    ft.t = t;
    ft.dst = dst;
    ft.row_bytes = type_row_size(t->type, t->cols);
    ft.scratch = malloc((size_t)cv->n_threads * TILE_ROWS * (size_t)t->cols * sizeof(float));
    if (!ft.scratch) return err_set(err, "out of memory");
    atomic_store(&ft.next, 0);
    tp_run(cv->tp, fill_fn, &ft);
    free(ft.scratch);
    release_sources(t);
    cv->done_bytes += nbytes;
    cv->done_tensors++;
    progress(cv, t->name);
    return 0;
}

/* Appends an output tensor; its type: F32 for 1-D tensors and the router,
 * else the requested type (F16 where the rows do not fit its blocks). */
static OutTensor *add_out(Conv *cv, const char *name, uint32_t n_dims, int64_t ne0, int64_t ne1, int64_t ne2,
                          SrcKind kind, const char *origin, Error *err) {
    if (cv->n_t == cv->cap_t) {
        int nc = cv->cap_t ? cv->cap_t * 2 : 64;
        OutTensor *nt = realloc(cv->t, (size_t)nc * sizeof *nt);
        if (!nt) {
            err_set(err, "out of memory");
            return NULL;
        }
        cv->t = nt;
        cv->cap_t = nc;
    }
    OutTensor *t = &cv->t[cv->n_t++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->ne[0] = ne0, t->ne[1] = ne1, t->ne[2] = ne2;
    t->cols = ne0;
    t->rows = ne1 * ne2;
    t->kind = kind;
    t->origin = origin;
    t->cv = cv;
    t->n_exp = 1;
    uint32_t ty = cv->type;
    if (n_dims == 1 || strstr(name, "ffn_gate_inp")) ty = GGML_TYPE_F32;
    if (ne0 % type_info(ty)->block_size) {
        ty = GGML_TYPE_F16;
        cv->n_f16_fallback++;
    }
    t->type = ty;
    return t;
}

static void note(Conv *cv, const char *fmt, const char *s) {
    size_t l = strlen(cv->notes);
    if (l + 2 < sizeof cv->notes) snprintf(cv->notes + l, sizeof cv->notes - l, fmt, s);
}

/* ---- writing ------------------------------------------------------------ */

typedef struct {
    int n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ff_dense, n_expert, n_expert_used, n_ctx, n_vocab;
    float eps, rope_base, emb_scale, logit_scale, attn_scale, attn_cap, router_cap, final_cap;
    int temp_len;
    bool grok2;
    char name[64], source[64];
} Hparams;

static uint32_t file_type_of(uint32_t type) {
    switch (type) {
    case GGML_TYPE_F32: return 0;
    case GGML_TYPE_F16: return 1;
    case GGML_TYPE_Q4_0: return 2;
    case GGML_TYPE_Q4_1: return 3;
    case GGML_TYPE_Q8_0: return 7;
    case GGML_TYPE_Q5_0: return 8;
    case GGML_TYPE_Q5_1: return 9;
    case GGML_TYPE_Q2_K: return 10;
    case GGML_TYPE_Q3_K: return 12;
    case GGML_TYPE_Q4_K: return 15;
    case GGML_TYPE_Q5_K: return 17;
    case GGML_TYPE_Q6_K: return 18;
    case GGML_TYPE_BF16: return 32;
    default: return 0;
    }
}

static int write_gguf(Conv *cv, const Hparams *h, const Tokenizer *tok, const char *out, Error *err) {
    if (tokenizer_n_vocab(tok) != h->n_vocab)
        return err_set(err, "the tokenizer has %d tokens but the embedding has %d rows", tokenizer_n_vocab(tok),
                       h->n_vocab);
    GGUFWriter *w = gguf_writer_new();
    if (!w) return err_set(err, "out of memory");
    int rc = -1;
    char desc[2048];
    snprintf(desc, sizeof desc,
             "Converted by grok.c (grok convert) from %s. Weight matrices: %s; norms and the router: f32. %s", h->source,
             type_info(cv->type)->name, cv->notes);
    bool ok = !gguf_set_str(w, "general.architecture", "grok") && !gguf_set_str(w, "general.name", h->name) &&
              !gguf_set_str(w, "general.description", desc) &&
              !gguf_set_u32(w, "general.file_type", file_type_of(cv->type)) &&
              !gguf_set_u32(w, "general.alignment", GGUF_DEFAULT_ALIGNMENT) &&
              !gguf_set_u32(w, "grok.context_length", (uint32_t)h->n_ctx) &&
              !gguf_set_u32(w, "grok.embedding_length", (uint32_t)h->n_embd) &&
              !gguf_set_u32(w, "grok.block_count", (uint32_t)h->n_layer) &&
              !gguf_set_u32(w, "grok.feed_forward_length", (uint32_t)(h->grok2 ? h->n_ff_dense : h->n_ff)) &&
              !gguf_set_u32(w, "grok.attention.head_count", (uint32_t)h->n_head) &&
              !gguf_set_u32(w, "grok.attention.head_count_kv", (uint32_t)h->n_head_kv) &&
              !gguf_set_u32(w, "grok.expert_count", (uint32_t)h->n_expert) &&
              !gguf_set_u32(w, "grok.expert_used_count", (uint32_t)h->n_expert_used) &&
              !gguf_set_f32(w, "grok.rope.freq_base", h->rope_base) &&
              !gguf_set_f32(w, "grok.attention.layer_norm_rms_epsilon", h->eps) &&
              !gguf_set_f32(w, "grok.embedding_scale", h->emb_scale) &&
              !gguf_set_f32(w, "grok.logit_scale", h->logit_scale) &&
              !gguf_set_f32(w, "grok.attention.output_scale", h->attn_scale) &&
              !gguf_set_f32(w, "grok.attn_logit_softcapping", h->attn_cap);
    if (ok && h->head_dim * h->n_head != h->n_embd)
        ok = !gguf_set_u32(w, "grok.attention.key_length", (uint32_t)h->head_dim) &&
             !gguf_set_u32(w, "grok.attention.value_length", (uint32_t)h->head_dim);
    if (ok && h->grok2)
        ok = !gguf_set_u32(w, "grok.expert_feed_forward_length", (uint32_t)h->n_ff) &&
             !gguf_set_f32(w, "grok.router_logit_softcapping", h->router_cap) &&
             (h->final_cap <= 0 || !gguf_set_f32(w, "grok.final_logit_softcapping", h->final_cap)) &&
             (h->temp_len <= 0 || !gguf_set_u32(w, "grok.attention.temperature_length", (uint32_t)h->temp_len));
    if (!ok) {
        err_set(err, "out of memory");
        goto done;
    }
    if (tokenizer_to_gguf(tok, w, err)) goto done;
    if (h->grok2 && gguf_set_str(w, "tokenizer.chat_template", "grok-2") < 0) {
        err_set(err, "out of memory");
        goto done;
    }
    cv->total_bytes = 0;
    for (int i = 0; i < cv->n_t; i++) {
        OutTensor *t = &cv->t[i];
        int64_t ne[3] = {t->ne[0], t->ne[1], t->ne[2]};
        if (gguf_add_tensor(w, t->name, t->type, t->n_dims, ne, NULL, fill_tensor, t, err)) goto done;
        cv->total_bytes += type_row_size(t->type, t->cols) * (uint64_t)t->rows;
    }
    /* enough room? (the writer would fail cleanly, but hours later) */
    {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", out);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        struct statvfs vfs;
        if (statvfs(dir, &vfs) == 0) {
            const double avail = (double)vfs.f_bavail * (double)vfs.f_frsize;
            if (avail < (double)cv->total_bytes + (1 << 20)) {
                err_set(err, "%s needs %.2f GB but only %.2f GB are free in %s", out, cv->total_bytes / 1e9,
                        avail / 1e9, dir);
                goto done;
            }
        }
    }
    cv->t0 = time_now();
    if (!cv->quiet)
        fprintf(stderr, "writing %s: %d tensors, %.2f GB, %s, %d threads\n", out, cv->n_t, cv->total_bytes / 1e9,
                type_info(cv->type)->name, cv->n_threads);
    if (gguf_write(w, out, err)) {
        if (!cv->quiet && cv->tty) fputc('\n', stderr);
        goto done;
    }
    rc = 0;
done:
    gguf_writer_free(w);
    return rc;
}

/* Rows of the int8 sources that will be carried over exactly as Q8_0 (every
 * scale of the row has an exact fp16 value, and the scale blocks hold whole
 * Q8_0 blocks): counted before writing, for the description. */
static void q8_plan(const Conv *cv, uint64_t *exact, uint64_t *requant) {
    *exact = *requant = 0;
    for (int i = 0; i < cv->n_t; i++) {
        const OutTensor *t = &cv->t[i];
        if (t->kind != SRC_Q8 || t->type != GGML_TYPE_Q8_0) continue;
        if ((t->in / t->nb) % QK8_0) {
            *requant += (uint64_t)t->rows;
            continue;
        }
        for (int64_t r = 0; r < t->rows; r++) {
            const int64_t e = r / t->out, j = r % t->out;
            bool ok = true;
            for (int64_t b = 0; b < t->nb && ok; b++) {
                const float sc = bf16_to_f32(rd_u16(t->scales + 2 * ((e * t->nb + b) * t->out + j)));
                ok = fp16_to_f32(f32_to_fp16(sc)) == sc;
            }
            if (ok) ++*exact;
            else ++*requant;
        }
    }
}

static void finish_notes(Conv *cv, bool from_int8) {
    char buf[512];
    if (from_int8 && cv->type == GGML_TYPE_Q8_0) {
        uint64_t exact, requant;
        q8_plan(cv, &exact, &requant);
        snprintf(buf, sizeof buf,
                 "Int8 weights: %llu rows carried over exactly as Q8_0 (d = fp16 of the bf16 scale, q = the int8 "
                 "values: the unrounded product w8*scale, which the JAX reference rounds to bf16, <= 2^-9 relative), "
                 "%llu rows re-quantized from bf16(w8*scale). ",
                 (unsigned long long)exact, (unsigned long long)requant);
        note(cv, "%s", buf);
    } else if (from_int8) {
        note(cv, "%s", "Int8 weights dequantized as the JAX reference does: bf16(w8 * scale), then stored as the "
                       "output type. ");
    }
    if (cv->n_f16_fallback) {
        snprintf(buf, sizeof buf, "%d tensors stored as f16 (rows not a multiple of the type's block). ",
                 cv->n_f16_fallback);
        note(cv, "%s", buf);
    }
}

/* ---- Grok-1 JAX checkpoint ---------------------------------------------- */

/* Block order k inside a layer's 12 files (A3), and what each holds. */
enum { K_GATE, K_DOWN, K_UP, K_KEY, K_OUT, K_QUERY, K_VALUE, K_NORM0, K_NORM1, K_NORM2, K_NORM3, K_ROUTER };

typedef struct {
    Mapped m;
    PickleBlob data[2]; /* the data payloads (numpy placeholders dropped) */
    int n_data;
} CkptFile;

static int ckpt_list(const char *dir, int *n_files, Error *err) {
    DIR *d = opendir(dir);
    if (!d) return err_set(err, "%s: %s", dir, strerror(errno));
    int max_idx = -1, count = 0;
    char bad[64] = "";
    for (struct dirent *e; (e = readdir(d));) {
        const char *n = e->d_name;
        if (strncmp(n, "tensor", 6) != 0) continue;
        int idx = -1, shard = -1, len = 0;
        if (sscanf(n, "tensor%5d_%3d%n", &idx, &shard, &len) != 2 || (size_t)len != strlen(n) || strlen(n) != 15) {
            if (!bad[0]) snprintf(bad, sizeof bad, "%.60s", n);
            continue;
        }
        if (shard != 0) {
            closedir(d);
            return err_set(err, "%s/%s: sharded tensors (shard %03d) are not supported; the public release has "
                           "shard 000 only", dir, n, shard);
        }
        count++;
        if (idx > max_idx) max_idx = idx;
    }
    closedir(d);
    if (bad[0]) return err_set(err, "%s: unexpected file '%s' (expected tensorNNNNN_000 files only)", dir, bad);
    if (count == 0) return err_set(err, "%s: no tensorNNNNN_000 files: not a Grok-1 checkpoint directory", dir);
    *n_files = max_idx + 1;
    if (count != *n_files) {
        for (int i = 0; i < *n_files; i++) {
            char name[32], *p;
            snprintf(name, sizeof name, "tensor%05d_000", i);
            if (!(p = path_join(dir, name))) return err_set(err, "out of memory");
            bool ok = file_exists(p);
            free(p);
            if (!ok)
                return err_set(err, "%s: missing file %s (found %d tensor files, numbered up to %d)", dir, name, count,
                               max_idx);
        }
    }
    if (*n_files < 14 || (*n_files - 2) % 12 != 0)
        return err_set(err, "%s: %d tensor files, but a Grok-1 checkpoint has 2 + 12 x layers (770 for 64 layers)%s",
                       dir, *n_files, (*n_files - 2) % 12 == 1 ? ": extra file at the end?" : "");
    return 0;
}

static int ckpt_open_file(const char *dir, int idx, CkptFile *f, Error *err) {
    char name[32];
    snprintf(name, sizeof name, "tensor%05d_000", idx);
    char *p = path_join(dir, name);
    if (!p) return err_set(err, "out of memory");
    int rc = map_file(p, &f->m, err);
    free(p);
    if (rc) return -1;
    PickleScan s;
    if (pickle_scan(f->m.p, f->m.size, &s, err)) return err_prefix(err, "%s", f->m.path);
    f->n_data = 0;
    for (int i = 0; i < s.n_blobs; i++) {
        if (pickle_blob_is_placeholder(f->m.p, &s.blobs[i])) continue;
        if (f->n_data == 2) {
            pickle_scan_free(&s);
            return err_set(err, "%s: more than two data payloads (not a tensor file of the Grok-1 checkpoint)",
                           f->m.path);
        }
        f->data[f->n_data++] = s.blobs[i];
    }
    pickle_scan_free(&s);
    return 0;
}

static const uint8_t *payload(const CkptFile *f, int i) { return f->m.p + f->data[i].offset; }

/* Expects n_data payloads of the given byte sizes (size2 ignored for 1). */
static int expect(const CkptFile *f, const char *what, int n_data, uint64_t size1, uint64_t size2, Error *err) {
    if (f->n_data != n_data)
        return err_set(err, "%s (%s): %d data payload%s, expected %d (%s)", f->m.path, what, f->n_data,
                       f->n_data == 1 ? "" : "s", n_data,
                       n_data == 1 ? "an fp32 array" : "a QuantizedWeight8bit: int8 weight + bf16 scales");
    if (f->data[0].size != size1 || (n_data == 2 && f->data[1].size != size2)) {
        if (n_data == 1)
            return err_set(err, "%s (%s): %llu bytes of data, expected %llu", f->m.path, what,
                           (unsigned long long)f->data[0].size, (unsigned long long)size1);
        return err_set(err, "%s (%s): %llu + %llu bytes of weight + scales, expected %llu + %llu", f->m.path, what,
                       (unsigned long long)f->data[0].size, (unsigned long long)f->data[1].size,
                       (unsigned long long)size1, (unsigned long long)size2);
    }
    return 0;
}

static int cmp_layer_str(const void *a, const void *b) {
    char x[16], y[16];
    snprintf(x, sizeof x, "%d", *(const int *)a);
    snprintf(y, sizeof y, "%d", *(const int *)b);
    return strcmp(x, y);
}

typedef struct {
    const char *tokenizer;
    int head_dim, experts_used;
} ConvOpts;

static int convert_grok1(Conv *cv, const char *dir, const char *out, const ConvOpts *o, Error *err) {
    int n_files = 0, rc = -1;
    CkptFile *f = NULL;
    int *order = NULL, *rank = NULL;
    Tokenizer *tok = NULL;
    if (ckpt_list(dir, &n_files, err)) return -1;
    const int L = (n_files - 2) / 12;
    /* the tokenizer first: a missing one should not cost a scan */
    char *tpath = NULL;
    if (o->tokenizer) tpath = strdup(o->tokenizer);
    else {
        static const char *const rel[] = {"tokenizer.model", "../tokenizer.model", "../../tokenizer.model"};
        for (int i = 0; i < 3 && !tpath; i++) {
            char *p = path_join(dir, rel[i]);
            if (p && file_exists(p)) tpath = p;
            else free(p);
        }
        if (!tpath)
            return err_set(err, "no tokenizer.model in %s or its parents (the Grok-1 repository has it at its "
                           "root): give it with --tokenizer", dir);
    }
    if (!tpath) return err_set(err, "out of memory");
    tok = tokenizer_from_spm_file(tpath, err);
    free(tpath);
    if (!tok) return -1;

    f = calloc((size_t)n_files, sizeof *f);
    order = malloc((size_t)L * sizeof *order);
    rank = malloc((size_t)L * sizeof *rank);
    if (!f || !order || !rank) {
        err_set(err, "out of memory");
        goto done;
    }
    if (!cv->quiet) fprintf(stderr, "scanning %d pickle files in %s (%d layers)\n", n_files, dir, L);
    for (int i = 0; i < n_files; i++)
        if (ckpt_open_file(dir, i, &f[i], err)) goto done;
    /* layer L's block: files 2 + 12 * (position of str(L) in the sorted strings) */
    for (int i = 0; i < L; i++) order[i] = i;
    qsort(order, (size_t)L, sizeof *order, cmp_layer_str);
    for (int i = 0; i < L; i++) rank[order[i]] = i;
#define FILE_OF(layer, k) (&f[2 + 12 * rank[layer] + (k)])

    /* dimensions from the sizes (file 0 embedding, 1 final norm, layer 0) */
    if (f[1].n_data != 1 || f[1].data[0].size % 4 || f[1].data[0].size == 0) {
        err_set(err, "%s: expected the final norm (one fp32 array)", f[1].m.path);
        goto done;
    }
    const uint64_t E = f[1].data[0].size / 4;
    if (f[0].n_data != 1 || f[0].data[0].size % (4 * E)) {
        err_set(err, "%s: expected the embedding (one fp32 array of %llu x vocabulary floats)", f[0].m.path,
                (unsigned long long)E);
        goto done;
    }
    const uint64_t V = f[0].data[0].size / (4 * E);
    const CkptFile *kq = FILE_OF(0, K_QUERY), *kk = FILE_OF(0, K_KEY), *kr = FILE_OF(0, K_ROUTER);
    const CkptFile *kg = FILE_OF(0, K_GATE), *kd = FILE_OF(0, K_DOWN), *ko = FILE_OF(0, K_OUT);
    if (kq->n_data != 2 || kk->n_data != 2 || kg->n_data != 2 || kd->n_data != 2 || ko->n_data != 2 ||
        kr->n_data != 1) {
        err_set(err, "%s..: layer 0 does not have the Grok-1 layout (query/key/out/experts int8 + scales, router "
                "fp32)", FILE_OF(0, 0)->m.path);
        goto done;
    }
    const uint64_t Q = kq->data[0].size / E, KV = kk->data[0].size / E, X = kr->data[0].size / (4 * E);
    const uint64_t F = X ? kg->data[0].size / (X * E) : 0;
    const uint64_t NB_O = ko->data[1].size / (2 * E), NB_D = X ? kd->data[1].size / (2 * X * E) : 0;
    const int hd = o->head_dim;
    if (!X || !F || !Q || !KV || !NB_O || !NB_D || Q % (uint64_t)hd || KV % (uint64_t)hd || Q != E ||
        (Q / (uint64_t)hd) % (KV / (uint64_t)hd) || Q % NB_O || F % NB_D) {
        err_set(err, "layer 0 sizes give embedding %llu, query %llu, key %llu, %llu experts of %llu, %llu/%llu "
                "scale blocks: not a consistent Grok-1 layout for head dim %d",
                (unsigned long long)E, (unsigned long long)Q, (unsigned long long)KV, (unsigned long long)X,
                (unsigned long long)F, (unsigned long long)NB_O, (unsigned long long)NB_D, hd);
        goto done;
    }
    if (n_files == 770 &&
        (E != 6144 || V != 131072 || Q != 6144 || KV != 1024 || X != 8 || F != 32768 || NB_O != 8 || NB_D != 8)) {
        err_set(err, "770 files but not the official Grok-1 sizes (embedding %llu x %llu, experts %llu x %llu): "
                "a damaged or different checkpoint", (unsigned long long)V, (unsigned long long)E,
                (unsigned long long)X, (unsigned long long)F);
        goto done;
    }
    if (expect(&f[0], "embedding", 1, 4 * V * E, 0, err) || expect(&f[1], "final norm", 1, 4 * E, 0, err)) goto done;
    for (int l = 0; l < L; l++) {
        static const char *const what[12] = {"moe/linear", "moe/linear_1", "moe/linear_v", "key", "attention out",
                                             "query", "value", "rms_norm", "rms_norm_1", "rms_norm_2", "rms_norm_3",
                                             "router"};
        const uint64_t want[12][3] = {
            {2, X * E * F, 2 * X * F},      {2, X * F * E, 2 * X * NB_D * E}, {2, X * E * F, 2 * X * F},
            {2, E * KV, 2 * KV},            {2, Q * E, 2 * NB_O * E},         {2, E * Q, 2 * Q},
            {2, E * KV, 2 * KV},            {1, 4 * E, 0},                    {1, 4 * E, 0},
            {1, 4 * E, 0},                  {1, 4 * E, 0},                    {1, 4 * E * X, 0},
        };
        for (int k = 0; k < 12; k++) {
            char w[64];
            snprintf(w, sizeof w, "layer %d %s", l, what[k]);
            if (expect(FILE_OF(l, k), w, (int)want[k][0], want[k][1], want[k][2], err)) goto done;
        }
    }

    /* the output tensors, layers in numeric order */
    Hparams h = {0};
    h.n_embd = (int)E, h.n_layer = L, h.head_dim = hd, h.n_head = (int)(Q / (uint64_t)hd);
    h.n_head_kv = (int)(KV / (uint64_t)hd), h.n_ff = (int)F, h.n_expert = (int)X;
    h.n_expert_used = o->experts_used > 0 ? o->experts_used : G1_EXPERTS_USED;
    if (h.n_expert_used > h.n_expert) h.n_expert_used = h.n_expert;
    h.n_ctx = G1_CONTEXT, h.n_vocab = (int)V, h.eps = G1_EPS, h.rope_base = GROK1_ROPE_BASE;
    h.emb_scale = GROK1_EMBEDDING_SCALE, h.logit_scale = GROK1_LOGIT_SCALE, h.attn_scale = GROK1_ATTN_OUTPUT_SCALE;
    h.attn_cap = GROK1_ATTN_SOFTCAP;
    snprintf(h.name, sizeof h.name, "Grok-1");
    snprintf(h.source, sizeof h.source, "the Grok-1 JAX checkpoint (%d pickle files)", n_files);
    OutTensor *t;
    if (!(t = add_out(cv, "token_embd.weight", 2, (int64_t)E, (int64_t)V, 1, SRC_F32, f[0].m.path, err))) goto done;
    t->f32 = payload(&f[0], 0);
    if (!(t = add_out(cv, "output_norm.weight", 1, (int64_t)E, 1, 1, SRC_F32, f[1].m.path, err))) goto done;
    t->f32 = payload(&f[1], 0);
    for (int l = 0; l < L; l++) {
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s.weight", l, s), n)
#define NORM(s, k)                                                                                       \
    do {                                                                                                 \
        if (!(t = add_out(cv, NAME(s), 1, (int64_t)E, 1, 1, SRC_F32, FILE_OF(l, k)->m.path, err))) goto done; \
        t->f32 = payload(FILE_OF(l, k), 0);                                                              \
    } while (0)
#define Q8(s, k, nexp, in_, out_, nb_)                                                                          \
    do {                                                                                                        \
        const CkptFile *cf = FILE_OF(l, k);                                                                     \
        if (!(t = add_out(cv, NAME(s), (nexp) > 1 ? 3 : 2, (int64_t)(in_), (int64_t)(out_), (int64_t)(nexp), SRC_Q8, \
                          cf->m.path, err)))                                                                    \
            goto done;                                                                                          \
        t->w8 = payload(cf, 0), t->scales = payload(cf, 1);                                                     \
        t->n_exp = (int64_t)(nexp), t->in = (int64_t)(in_), t->out = (int64_t)(out_), t->nb = (int64_t)(nb_);   \
    } while (0)
        NORM("attn_norm", K_NORM0);
        Q8("attn_q", K_QUERY, 1, E, Q, 1);
        Q8("attn_k", K_KEY, 1, E, KV, 1);
        Q8("attn_v", K_VALUE, 1, E, KV, 1);
        Q8("attn_output", K_OUT, 1, Q, E, NB_O);
        NORM("attn_output_norm", K_NORM1);
        NORM("ffn_norm", K_NORM2);
        if (!(t = add_out(cv, NAME("ffn_gate_inp"), 2, (int64_t)E, (int64_t)X, 1, SRC_F32, FILE_OF(l, K_ROUTER)->m.path,
                          err)))
            goto done;
        t->f32 = payload(FILE_OF(l, K_ROUTER), 0);
        t->transposed = true; /* router/w is [E][X] */
        Q8("ffn_gate_exps", K_GATE, X, E, F, 1);
        Q8("ffn_up_exps", K_UP, X, E, F, 1);
        Q8("ffn_down_exps", K_DOWN, X, F, E, NB_D);
        NORM("layer_output_norm", K_NORM3);
#undef NAME
#undef NORM
#undef Q8
    }
    finish_notes(cv, true);
    rc = write_gguf(cv, &h, tok, out, err);
#undef FILE_OF
done:
    if (f)
        for (int i = 0; i < n_files; i++) unmap_file(&f[i].m);
    free(f), free(order), free(rank);
    tokenizer_free(tok);
    return rc;
}

/* ---- Hugging Face safetensors ---------------------------------------------- */

typedef struct {
    const char *name;
    STFile *file;
    const STTensor *t;
    int rank; /* tensor-parallel rank of the file, -1 if none */
} STEntry;

static int cmp_entry(const void *a, const void *b) {
    const STEntry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : x->rank - y->rank;
}

typedef struct {
    STFile **files;
    int n_files;
    STEntry *e;
    int n_e;
} HFSet;

static void hf_close(HFSet *s) {
    for (int i = 0; i < s->n_files; i++) st_close(s->files[i]);
    free(s->files);
    free(s->e);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* TP rank from a file name "...-TP-00R.safetensors", -1 for others. */
static int tp_rank(const char *path) {
    const char *base = strrchr(path, '/');
    const char *p = strstr(base ? base + 1 : path, "-TP-");
    if (!p || !isdigit((unsigned char)p[4])) return -1;
    return atoi(p + 4);
}

static int hf_open(const char *dir, HFSet *s, Error *err) {
    memset(s, 0, sizeof *s);
    DIR *d = opendir(dir);
    if (!d) return err_set(err, "%s: %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0, rc = -1;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l < 12 || strcmp(e->d_name + l - 12, ".safetensors") != 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    closedir(d);
    if (n == 0) {
        free(names);
        return err_set(err, "%s: no .safetensors files", dir);
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    s->files = calloc((size_t)n, sizeof *s->files);
    if (!s->files) goto out;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        char *p = path_join(dir, names[i]);
        if (!p) goto out;
        s->files[i] = st_open(p, err);
        free(p);
        if (!s->files[i]) goto out;
        s->n_files++;
        total += (size_t)s->files[i]->n_tensors;
    }
    s->e = malloc((total ? total : 1) * sizeof *s->e);
    if (!s->e) goto out;
    for (int i = 0; i < s->n_files; i++)
        for (int k = 0; k < s->files[i]->n_tensors; k++)
            s->e[s->n_e++] = (STEntry){s->files[i]->tensors[k].name, s->files[i], &s->files[i]->tensors[k],
                                       tp_rank(s->files[i]->path)};
    qsort(s->e, (size_t)s->n_e, sizeof *s->e, cmp_entry);
    rc = 0;
out:
    if (rc && !err->msg[0]) err_set(err, "out of memory");
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

/* Entries named `name`: *first and the count (sorted by rank). */
static int hf_find(const HFSet *s, const char *name, const STEntry **first) {
    int lo = 0, hi = s->n_e;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (strcmp(s->e[mid].name, name) < 0) lo = mid + 1;
        else hi = mid;
    }
    int n = 0;
    while (lo + n < s->n_e && strcmp(s->e[lo + n].name, name) == 0) n++;
    *first = n ? &s->e[lo] : NULL;
    return n;
}

/* Fills the parts of expert slot e of t from the safetensors tensor `name`
 * (shape [rows, cols] once its tensor-parallel parts are put together). */
static int hf_parts(const HFSet *s, OutTensor *t, int e, const char *name, int64_t rows, int64_t cols, Error *err) {
    const STEntry *en;
    int n = hf_find(s, name, &en);
    if (n == 0) return err_set(err, "missing tensor %s", name);
    if (n > 1)
        for (int i = 0; i < n; i++)
            if (en[i].rank != i)
                return err_set(err, "tensor %s is split over %d files, which should be tensor-parallel ranks "
                               "0..%d (*-TP-%03d.safetensors): rank %d is %s", name, n, n - 1, i, i,
                               en[i].rank < 0 ? "mixed with unsharded files" : "missing or repeated");
    if (e == 0) t->n_parts = n;
    else if (t->n_parts != n) return err_set(err, "tensor %s is split in %d parts, expert 0 in %d", name, n, t->n_parts);
    if ((int64_t)t->n_parts * t->n_exp > MAX_PARTS) return err_set(err, "tensor %s: too many parts", name);
    int64_t sum = 0;
    for (int i = 0; i < n; i++) {
        const STTensor *st = en[i].t;
        if (st->dtype != ST_BF16 && st->dtype != ST_F16 && st->dtype != ST_F32)
            return err_set(err, "tensor %s has dtype %s (grok convert reads BF16, F16, F32)", name, st->dtype_name);
        int64_t r = st->n_dims == 2 ? st->shape[0] : 1, c = st->n_dims == 2 ? st->shape[1] : st->shape[0];
        if (st->n_dims < 1 || st->n_dims > 2) return err_set(err, "tensor %s has %d dimensions", name, st->n_dims);
        if ((t->cat_dim == 0 && c != cols) || (t->cat_dim == 1 && r != rows))
            return err_set(err, "tensor %s (%s) has shape [%lld, %lld], which does not fit [%lld, %lld]", name,
                           en[i].file->path, (long long)r, (long long)c, (long long)rows, (long long)cols);
        sum += t->cat_dim == 0 ? r : c;
        t->parts[e * n + i] = (Part){st->data, st->dtype, r, c};
    }
    if (sum != (t->cat_dim == 0 ? rows : cols))
        return err_set(err, "tensor %s has %lld %s in all, expected %lld", name, (long long)sum,
                       t->cat_dim == 0 ? "rows" : "columns", (long long)(t->cat_dim == 0 ? rows : cols));
    return 0;
}

static int cfg_int(cJSON *c, const char *k1, const char *k2, int def) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(c, k1);
    if (!cJSON_IsNumber(v) && k2) v = cJSON_GetObjectItemCaseSensitive(c, k2);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : def;
}

static double cfg_num(cJSON *c, const char *k1, const char *k2, double def) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(c, k1);
    if (!cJSON_IsNumber(v) && k2) v = cJSON_GetObjectItemCaseSensitive(c, k2);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static char *read_text(const char *path, size_t *len, Error *err) {
    return read_file_capped(path, (size_t)1 << 30, "file", len, err);
}

/* Grok-2's tokenizer.tok.json: {"regular_tokens": [{"bytes": [...], "token": id}, ...],
 * "special_tokens": [...], "vocab_size": N, ...} (B6). */
static Tokenizer *tok_from_tiktoken_json(const char *path, int n_vocab, Error *err) {
    size_t len = 0;
    char *text = read_text(path, &len, err);
    if (!text) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    Tokenizer *t = NULL;
    char **pieces = NULL;
    size_t *lens = NULL;
    int *types = NULL;
    cJSON *reg = j ? cJSON_GetObjectItemCaseSensitive(j, "regular_tokens") : NULL;
    cJSON *spe = j ? cJSON_GetObjectItemCaseSensitive(j, "special_tokens") : NULL;
    if (!cJSON_IsArray(reg)) {
        err_set(err, "%s: no regular_tokens array (not a tokenizer.tok.json?)", path);
        goto out;
    }
    int n = n_vocab, eos = 2;
    pieces = calloc((size_t)n, sizeof *pieces);
    lens = calloc((size_t)n, sizeof *lens);
    types = calloc((size_t)n, sizeof *types);
    if (!pieces || !lens || !types) {
        err_set(err, "out of memory");
        goto out;
    }
    for (int pass = 0; pass < 2; pass++) {
        cJSON *arr = pass ? spe : reg;
        if (!cJSON_IsArray(arr)) continue;
        for (cJSON *it = arr->child; it; it = it->next) {
            cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "token"), *b = cJSON_GetObjectItemCaseSensitive(it, "bytes");
            if (!cJSON_IsNumber(id) || !cJSON_IsArray(b)) {
                err_set(err, "%s: a token without 'token' and 'bytes'", path);
                goto out;
            }
            int k = (int)id->valuedouble, m = cJSON_GetArraySize(b);
            if (k < 0 || k >= n) {
                err_set(err, "%s: token id %d is outside the embedding's %d rows", path, k, n);
                goto out;
            }
            if (pieces[k]) {
                err_set(err, "%s: token id %d appears twice", path, k);
                goto out;
            }
            if (!(pieces[k] = malloc((size_t)m + 1))) {
                err_set(err, "out of memory");
                goto out;
            }
            int i = 0;
            for (cJSON *v = b->child; v; v = v->next, i++) {
                if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 255) {
                    err_set(err, "%s: token %d has a byte outside 0..255", path, k);
                    goto out;
                }
                pieces[k][i] = (char)(int)v->valuedouble;
            }
            lens[k] = (size_t)m;
            types[k] = pass ? TOKEN_CONTROL : TOKEN_NORMAL;
            if (pass && m == 7 && memcmp(pieces[k], "<|eos|>", 7) == 0) eos = k;
        }
    }
    for (int k = 0; k < n; k++) /* ids no token uses */
        if (!pieces[k]) {
            char buf[32];
            int l = snprintf(buf, sizeof buf, "<|unused_%d|>", k);
            if (!(pieces[k] = strdup(buf))) {
                err_set(err, "out of memory");
                goto out;
            }
            lens[k] = (size_t)l;
            types[k] = TOKEN_CONTROL;
        }
    t = tokenizer_from_ranks(n, (const char *const *)pieces, lens, types, eos, err);
    if (!t) err_prefix(err, "%s", path);
out:
    if (pieces)
        for (int k = 0; k < n_vocab; k++) free(pieces[k]);
    free(pieces), free(lens), free(types);
    cJSON_Delete(j);
    return t;
}

static int convert_hf(Conv *cv, const char *dir, const char *out, const ConvOpts *o, Error *err) {
    HFSet s;
    cJSON *c = NULL;
    Tokenizer *tok = NULL;
    int rc = -1;
    char *cpath = path_join(dir, "config.json");
    size_t clen = 0;
    char *ctext = cpath ? read_text(cpath, &clen, err) : NULL;
    free(cpath);
    if (!ctext) return -1;
    c = cJSON_ParseWithLength(ctext, clen);
    free(ctext);
    if (!cJSON_IsObject(c)) {
        cJSON_Delete(c);
        return err_set(err, "%s/config.json is not a JSON object", dir);
    }
    if (hf_open(dir, &s, err)) {
        cJSON_Delete(c);
        return -1;
    }
    const STEntry *en;
    const bool g2names = hf_find(&s, "model.layers.0.self_attn.q_proj.weight", &en) > 0;
    const bool g1names = hf_find(&s, "transformer.decoder_layer.0.multi_head_attention.query.weight", &en) > 0;
    if (!g2names && !g1names) {
        err_set(err, "%s: neither Grok-2 (model.layers.N.self_attn...) nor keyfan Grok-1 "
                "(transformer.decoder_layer.N...) tensor names", dir);
        goto done;
    }
    Hparams h = {0};
    h.n_embd = cfg_int(c, "hidden_size", NULL, 0);
    h.n_layer = cfg_int(c, "num_hidden_layers", NULL, 0);
    h.n_head = cfg_int(c, "num_attention_heads", NULL, 0);
    h.n_head_kv = cfg_int(c, "num_key_value_heads", NULL, h.n_head);
    h.head_dim = cfg_int(c, "head_dim", NULL, h.n_head ? h.n_embd / h.n_head : 0);
    h.n_expert = cfg_int(c, "num_local_experts", "num_experts", 0);
    h.n_expert_used = cfg_int(c, "num_experts_per_tok", NULL, 2);
    if (o->experts_used > 0) h.n_expert_used = o->experts_used;
    h.grok2 = g2names && hf_find(&s, "model.layers.0.mlp.gate_proj.weight", &en) > 0;
    h.n_ff = cfg_int(c, "moe_intermediate_size", h.grok2 ? NULL : "intermediate_size", 0);
    h.n_ff_dense = h.grok2 ? cfg_int(c, "intermediate_size", NULL, 0) : 0;
    h.n_ctx = cfg_int(c, "max_position_embeddings", NULL, 8192);
    h.eps = (float)cfg_num(c, "rms_norm_eps", NULL, 1e-5);
    h.rope_base = (float)cfg_num(c, "rope_theta", NULL, 10000.0);
    h.emb_scale = (float)cfg_num(c, "embedding_multiplier_scale", NULL, GROK1_EMBEDDING_SCALE);
    h.logit_scale = (float)cfg_num(c, "output_multiplier_scale", NULL, GROK1_LOGIT_SCALE);
    h.attn_scale = (float)cfg_num(c, "attn_output_multiplier", NULL, h.head_dim > 0 ? 1.0 / sqrt((double)h.head_dim) : 0);
    h.attn_cap = (float)cfg_num(c, "attn_logit_softcapping", "max_attn_value", 30.0);
    h.router_cap = (float)cfg_num(c, "router_logit_softcapping", NULL, 30.0);
    h.final_cap = (float)cfg_num(c, "final_logit_softcapping", NULL, 0.0);
    h.temp_len = cfg_int(c, "attn_temperature_len", NULL, 0);
    const STEntry *emb;
    const char *emb_name = g2names ? "model.embed_tokens.weight" : "transformer.in_out_embed.weight";
    if (hf_find(&s, emb_name, &emb) != 1 || emb->t->n_dims != 2) {
        err_set(err, "%s: missing or sharded %s", dir, emb_name);
        goto done;
    }
    h.n_vocab = (int)emb->t->shape[0];
    if (h.n_embd <= 0 || h.n_layer <= 0 || h.n_head <= 0 || h.n_head_kv <= 0 || h.head_dim <= 0 || h.n_expert <= 0 ||
        h.n_ff <= 0 || (h.grok2 && h.n_ff_dense <= 0) || h.n_expert_used <= 0 || h.n_expert_used > h.n_expert ||
        h.n_head % h.n_head_kv || emb->t->shape[1] != h.n_embd) {
        err_set(err, "%s/config.json: missing or inconsistent sizes (hidden_size %d, layers %d, heads %d/%d, "
                "experts %d, expert FFN %d, dense FFN %d; embedding [%lld, %lld])", dir, h.n_embd, h.n_layer,
                h.n_head, h.n_head_kv, h.n_expert, h.n_ff, h.n_ff_dense, (long long)emb->t->shape[0],
                (long long)emb->t->shape[1]);
        goto done;
    }
    snprintf(h.name, sizeof h.name, "%s", h.grok2 ? "Grok-2" : "Grok-1");
    snprintf(h.source, sizeof h.source, "Hugging Face safetensors (%d files)", s.n_files);

    /* tokenizer */
    {
        char *p = path_join(dir, "tokenizer.tok.json"), *q = path_join(dir, "tokenizer.model");
        if (o->tokenizer) {
            size_t l = strlen(o->tokenizer);
            tok = l > 5 && strcmp(o->tokenizer + l - 5, ".json") == 0 ? tok_from_tiktoken_json(o->tokenizer, h.n_vocab, err)
                                                                       : tokenizer_from_spm_file(o->tokenizer, err);
        } else if (p && file_exists(p)) {
            tok = tok_from_tiktoken_json(p, h.n_vocab, err);
        } else if (q && file_exists(q)) {
            tok = tokenizer_from_spm_file(q, err);
        } else {
            err_set(err, "%s: no tokenizer.tok.json (Grok-2) or tokenizer.model (Grok-1): give one with --tokenizer",
                    dir);
        }
        free(p), free(q);
        if (!tok) goto done;
    }

    const int E = h.n_embd, Qd = h.n_head * h.head_dim, KV = h.n_head_kv * h.head_dim, F = h.n_ff, X = h.n_expert;
    OutTensor *t;
    char src[160];
#define ADD(gguf, hfname, nd, ne0, ne1, cat)                                                                   \
    do {                                                                                                       \
        if (!(t = add_out(cv, gguf, nd, ne0, ne1, 1, SRC_ST, "", err))) goto done;                             \
        t->cat_dim = cat;                                                                                      \
        if (hf_parts(&s, t, 0, hfname, (nd) == 1 ? 1 : (ne1), ne0, err)) goto done;                            \
    } while (0)
    ADD("token_embd.weight", emb_name, 2, E, h.n_vocab, 0);
    ADD("output_norm.weight", g2names ? "model.norm.weight" : "transformer.rms_norm.weight", 1, E, 1, 0);
    if (h.grok2) ADD("output.weight", "lm_head.weight", 2, E, h.n_vocab, 0);
    for (int l = 0; l < h.n_layer; l++) {
        char n[96];
#define GG(x) (snprintf(n, sizeof n, "blk.%d.%s.weight", l, x), n)
#define HF(fmt, ...) (snprintf(src, sizeof src, fmt, __VA_ARGS__), src)
        if (g2names) {
            ADD(GG("attn_norm"), HF("model.layers.%d.pre_attn_norm.weight", l), 1, E, 1, 0);
            ADD(GG("attn_q"), HF("model.layers.%d.self_attn.q_proj.weight", l), 2, E, Qd, 0);
            ADD(GG("attn_k"), HF("model.layers.%d.self_attn.k_proj.weight", l), 2, E, KV, 0);
            ADD(GG("attn_v"), HF("model.layers.%d.self_attn.v_proj.weight", l), 2, E, KV, 0);
            ADD(GG("attn_output"), HF("model.layers.%d.self_attn.o_proj.weight", l), 2, Qd, E, 1);
            ADD(GG("attn_output_norm"), HF("model.layers.%d.post_attn_norm.weight", l), 1, E, 1, 0);
            ADD(GG("ffn_norm"), HF("model.layers.%d.pre_moe_norm.weight", l), 1, E, 1, 0);
            ADD(GG("ffn_gate_inp"), HF("model.layers.%d.block_sparse_moe.gate.weight", l), 2, E, X, 0);
        } else {
            ADD(GG("attn_norm"), HF("transformer.decoder_layer.%d.rms_norm.weight", l), 1, E, 1, 0);
            ADD(GG("attn_q"), HF("transformer.decoder_layer.%d.multi_head_attention.query.weight", l), 2, E, Qd, 0);
            ADD(GG("attn_k"), HF("transformer.decoder_layer.%d.multi_head_attention.key.weight", l), 2, E, KV, 0);
            ADD(GG("attn_v"), HF("transformer.decoder_layer.%d.multi_head_attention.value.weight", l), 2, E, KV, 0);
            ADD(GG("attn_output"), HF("transformer.decoder_layer.%d.multi_head_attention.linear.weight", l), 2, Qd, E, 1);
            ADD(GG("attn_output_norm"), HF("transformer.decoder_layer.%d.rms_norm_1.weight", l), 1, E, 1, 0);
            ADD(GG("ffn_norm"), HF("transformer.decoder_layer.%d.rms_norm_2.weight", l), 1, E, 1, 0);
            ADD(GG("ffn_gate_inp"), HF("transformer.decoder_layer.%d.router.weight", l), 2, E, X, 0);
        }
        /* experts: stacked [X][rows][cols]; w1 gate, w3 up (rows cut by rank), w2 down (columns) */
        static const char *const g2w[3] = {"w1", "w3", "w2"}, *const g1w[3] = {"linear", "linear_v", "linear_1"};
        static const char *const gname[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
        for (int k = 0; k < 3; k++) {
            const int64_t cols = k == 2 ? F : E, rows = k == 2 ? E : F;
            if (!(t = add_out(cv, GG(gname[k]), 3, cols, rows, X, SRC_ST, "", err))) goto done;
            t->n_exp = X;
            t->cat_dim = k == 2 ? 1 : 0;
            for (int e = 0; e < X; e++) {
                if (g2names) HF("model.layers.%d.block_sparse_moe.experts.%d.%s.weight", l, e, g2w[k]);
                else HF("transformer.decoder_layer.%d.moe.%d.%s.weight", l, e, g1w[k]);
                if (hf_parts(&s, t, e, src, rows, cols, err)) goto done;
            }
        }
        if (g2names) {
            ADD(GG("post_ffw_norm"), HF("model.layers.%d.post_moe_norm.weight", l), 1, E, 1, 0);
            if (h.grok2) {
                ADD(GG("ffn_gate"), HF("model.layers.%d.mlp.gate_proj.weight", l), 2, E, h.n_ff_dense, 0);
                ADD(GG("ffn_up"), HF("model.layers.%d.mlp.up_proj.weight", l), 2, E, h.n_ff_dense, 0);
                ADD(GG("ffn_down"), HF("model.layers.%d.mlp.down_proj.weight", l), 2, h.n_ff_dense, E, 1);
            }
        } else {
            ADD(GG("layer_output_norm"), HF("transformer.decoder_layer.%d.rms_norm_3.weight", l), 1, E, 1, 0);
        }
#undef GG
#undef HF
    }
#undef ADD
    if (h.grok2)
        note(cv, "%s", "RoPE: plain NeoX with rope_theta, as SGLang applies Grok-2's rope_type \"original\" "
                       "(no YaRN keys written). ");
    finish_notes(cv, false);
    rc = write_gguf(cv, &h, tok, out, err);
done:
    hf_close(&s);
    cJSON_Delete(c);
    tokenizer_free(tok);
    return rc;
}

/* ---- the command ------------------------------------------------------------ */

static const char USAGE[] =
    "usage: grok convert grok1-ckpt CKPT_DIR OUT.gguf [options]   (xAI's Grok-1 JAX checkpoint, ckpt-0/)\n"
    "       grok convert hf HF_DIR OUT.gguf [options]             (safetensors: Grok-2, keyfan/grok-1-hf)\n"
    "Converts an official checkpoint to GGUF, one tensor at a time, with a progress bar.\n"
    "  --type T          weight matrices: q8_0 (default), bf16, f16, f32, q4_0 .. q6_K, or a mix\n"
    "                    (Q4_K_M, Q5_K_M, ...: through a temporary bf16 file and grok quantize)\n"
    "  --tokenizer PATH  tokenizer.model (Grok-1) or tokenizer.tok.json (Grok-2); default: found\n"
    "                    beside the checkpoint\n"
    "  --head-dim N      grok1-ckpt: attention head size (128 for Grok-1; the files do not say)\n"
    "  --experts-used K  experts per token (Grok-1 and Grok-2: 2)\n"
    "  -t N              threads (default: all cores)     --quiet   no progress output\n"
    "Norms and routers stay f32. From the int8 Grok-1 files, q8_0 carries the int8 values and\n"
    "scales over exactly; other types store bf16(w8 x scale) as the JAX reference computes it.\n";

static bool is_mix(const char *s) { return s[0] == 'Q' && strchr(s, '_') && (strstr(s, "_S") || strstr(s, "_M")); }

int cmd_convert(int argc, char **argv) {
    const char *mode = NULL, *in = NULL, *out = NULL, *type_s = "q8_0";
    ConvOpts o = {NULL, G1_HEAD_DIM, 0};
    int threads = 0;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "--type") && i + 1 < argc) type_s = argv[++i];
        else if (!strcmp(a, "--tokenizer") && i + 1 < argc) o.tokenizer = argv[++i];
        else if (!strcmp(a, "--head-dim") && i + 1 < argc) o.head_dim = atoi(argv[++i]);
        else if (!strcmp(a, "--experts-used") && i + 1 < argc) o.experts_used = atoi(argv[++i]);
        else if (!strcmp(a, "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--quiet")) quiet = true;
        else if (a[0] == '-') {
            fprintf(stderr, "grok convert: unknown option '%s'\n%s", a, USAGE);
            return 2;
        } else if (!mode) mode = a;
        else if (!in) in = a;
        else if (!out) out = a;
        else {
            fprintf(stderr, "grok convert: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!mode || !in || !out) {
        fputs(USAGE, stderr);
        return 2;
    }
    if (strcmp(mode, "grok1-ckpt") != 0 && strcmp(mode, "hf") != 0) {
        fprintf(stderr, "grok convert: unknown source '%s' (grok1-ckpt or hf)\n", mode);
        return 2;
    }
    if (o.head_dim <= 0 || o.head_dim % 2) {
        fprintf(stderr, "grok convert: --head-dim must be a positive even number\n");
        return 2;
    }
    const bool mix = is_mix(type_s);
    const int type = mix ? GGML_TYPE_BF16 : type_from_name(type_s);
    if (type < 0 || !type_can_quantize((uint32_t)type) || type == GGML_TYPE_Q8_1 || type == GGML_TYPE_Q8_K) {
        fprintf(stderr, "grok convert: --type %s is not a weight type grok.c can write\n", type_s);
        return 2;
    }
    /* a mix: convert to a temporary bf16 file, then grok quantize */
    char *tmp_out = NULL;
    if (mix) {
        size_t l = strlen(out);
        tmp_out = malloc(l + 16);
        if (!tmp_out) return 1;
        snprintf(tmp_out, l + 16, "%s.bf16-tmp.gguf", out);
    }
    Conv *cv = calloc(1, sizeof *cv);
    if (!cv) return 1;
    cv->type = (uint32_t)type;
    cv->n_threads = threads > 0 ? threads : cpu_count();
    cv->quiet = quiet;
    cv->tty = isatty(2);
    Error err = {{0}};
    int rc = 1;
    cv->tp = tp_create(cv->n_threads, &err);
    if (cv->tp) {
        const double t0 = time_now();
        int r = !strcmp(mode, "hf") ? convert_hf(cv, in, tmp_out ? tmp_out : out, &o, &err)
                                    : convert_grok1(cv, in, tmp_out ? tmp_out : out, &o, &err);
        if (r == 0) {
            rc = 0;
            if (!quiet) {
                fprintf(stderr, "wrote %s in %.1f s", tmp_out ? tmp_out : out, time_now() - t0);
                if (atomic_load(&cv->q8_exact_rows) || atomic_load(&cv->q8_requant_rows))
                    fprintf(stderr, " (Q8_0: %llu rows carried over exactly from int8, %llu re-quantized)",
                            (unsigned long long)atomic_load(&cv->q8_exact_rows),
                            (unsigned long long)atomic_load(&cv->q8_requant_rows));
                fprintf(stderr, "\n");
            }
            if (tmp_out) {
                char tstr[16];
                snprintf(tstr, sizeof tstr, "%d", cv->n_threads);
                char *qargv[] = {"quantize", tmp_out, (char *)out, (char *)type_s, "-t", tstr, NULL};
                rc = cmd_quantize(6, qargv);
                unlink(tmp_out);
            }
        } else {
            fprintf(stderr, "grok convert: %s\n", err.msg);
        }
    } else {
        fprintf(stderr, "grok convert: %s\n", err.msg);
    }
    if (cv->tp) tp_free(cv->tp);
    free(cv->t);
    free(cv);
    free(tmp_out);
    return rc;
}
