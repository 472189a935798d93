/* quantize.c - `grok quantize`, see quantize.h.
 *
 * Which tensor gets which type (the mixes; a plain type or --pure gives
 * every weight matrix the same type):
 *   - 1-D tensors (the norms) and the router blk.N.ffn_gate_inp stay F32.
 *   - "output": output.weight, or token_embd.weight when the model has no
 *     output.weight (tied embeddings, as Grok-1): Q6_K in every mix.
 *   - "more-bits layers": the first and last eighth of the layers and every
 *     third one in between (i < L/8, i >= 7L/8, (i - L/8) % 3 == 2), the
 *     layers llama.cpp's mixes also favour.
 *
 *   mix      default  attn_k, attn_v, attn_qkv  attn_output  ffn_down (more-bits / other)  token_embd (untied)
 *   Q2_K     Q2_K     Q8_0                      Q5_K         Q3_K / Q3_K                   Q4_K
 *   Q3_K_M   Q3_K     Q8_0                      Q5_K         Q5_K / Q4_K                   Q4_K
 *   Q4_K_S   Q4_K     Q8_0                      Q5_K         Q5_K (first L/8) / Q4_K       Q4_K
 *   Q4_K_M   Q4_K     Q8_0                      Q5_K         Q6_K / Q4_K                   Q5_K
 *   Q5_K_S   Q5_K     Q8_0                      Q5_K         Q5_K / Q5_K                   Q5_K
 *   Q5_K_M   Q5_K     Q8_0                      Q6_K         Q6_K / Q5_K                   Q6_K
 *   (attn_q and the expert gate/up matrices get the default type.)
 *
 * In Grok the expert FFNs are ~98% of the weights, so these choices cost
 * little size: attention (~2% in Grok-1), embeddings and the output matrix
 * are small, and the _M mixes spend bits there (as llama.cpp's mixes do for
 * models with 8 experts; measured with bench/quality: giving attn_k/attn_v
 * q8_0 halves Q4_K_M's KL divergence for +0.6% file size; see README).
 *
 * K-quants need rows of a multiple of 256 values. Where a tensor's rows are
 * not, it falls back as llama.cpp does: Q4_K -> Q5_0, Q5_K -> Q5_1,
 * Q6_K -> Q8_0, and Q2_K/Q3_K -> Q4_0 (llama.cpp uses IQ4_NL there, a type
 * grok.c does not have); rows not a multiple of 32 -> F16. Each fallback is
 * reported on stderr. */
#include "quantize.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common.h"
#include "gguf.h"
#include "quant.h"
#include "threadpool.h"

enum { MIX_NONE, MIX_Q2_K, MIX_Q3_K_M, MIX_Q4_K_S, MIX_Q4_K_M, MIX_Q5_K_S, MIX_Q5_K_M };

typedef struct {
    const char *name; /* as users type it (case-insensitive) */
    uint32_t base;    /* the type of most matrices */
    uint32_t ftype;   /* general.file_type (llama_ftype) */
    int mix;
} QuantSpec;

static const QuantSpec SPECS[] = {
    {"f32", GGML_TYPE_F32, 0, MIX_NONE},        {"f16", GGML_TYPE_F16, 1, MIX_NONE},
    {"bf16", GGML_TYPE_BF16, 32, MIX_NONE},     {"q4_0", GGML_TYPE_Q4_0, 2, MIX_NONE},
    {"q4_1", GGML_TYPE_Q4_1, 3, MIX_NONE},      {"q5_0", GGML_TYPE_Q5_0, 8, MIX_NONE},
    {"q5_1", GGML_TYPE_Q5_1, 9, MIX_NONE},      {"q8_0", GGML_TYPE_Q8_0, 7, MIX_NONE},
    {"q3_K", GGML_TYPE_Q3_K, 11, MIX_NONE},     {"q4_K", GGML_TYPE_Q4_K, 14, MIX_NONE},
    {"q5_K", GGML_TYPE_Q5_K, 16, MIX_NONE},     {"q6_K", GGML_TYPE_Q6_K, 18, MIX_NONE},
    {"Q2_K", GGML_TYPE_Q2_K, 10, MIX_Q2_K},     {"Q3_K_M", GGML_TYPE_Q3_K, 12, MIX_Q3_K_M},
    {"Q4_K_S", GGML_TYPE_Q4_K, 14, MIX_Q4_K_S}, {"Q4_K_M", GGML_TYPE_Q4_K, 15, MIX_Q4_K_M},
    {"Q5_K_S", GGML_TYPE_Q5_K, 16, MIX_Q5_K_S}, {"Q5_K_M", GGML_TYPE_Q5_K, 17, MIX_Q5_K_M},
};

static const QuantSpec *find_spec(const char *name) {
    for (size_t i = 0; i < sizeof SPECS / sizeof SPECS[0]; i++)
        if (strcasecmp(SPECS[i].name, name) == 0) return &SPECS[i];
    return NULL;
}

static bool more_bits_layer(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Layer index of "blk.N.", or -1. */
static int layer_of(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    char *end;
    long v = strtol(name + 4, &end, 10);
    return (end != name + 4 && *end == '.' && v >= 0 && v < INT_MAX) ? (int)v : -1;
}

static bool keep_f32(const GGUFTensor *t) {
    return t->n_dims < 2 || strstr(t->name, "ffn_gate_inp") != NULL || ends_with(t->name, "_norm.weight");
}

/* The type a weight matrix gets under a spec (before the row-size check). */
static uint32_t choose_type(const QuantSpec *s, bool pure, const char *name, int n_layer, bool has_output) {
    const uint32_t Q2 = GGML_TYPE_Q2_K, Q3 = GGML_TYPE_Q3_K, Q4 = GGML_TYPE_Q4_K, Q5 = GGML_TYPE_Q5_K,
                   Q6 = GGML_TYPE_Q6_K;
    if (pure || s->mix == MIX_NONE) return s->base;
    const bool output = strcmp(name, "output.weight") == 0 || (!has_output && strcmp(name, "token_embd.weight") == 0);
    if (output) return Q6;
    const int il = layer_of(name);
    const bool more = il >= 0 && more_bits_layer(il, n_layer);
    const bool first8 = il >= 0 && il < (n_layer + 7) / 8;
    const int m = s->mix;
    if (strcmp(name, "token_embd.weight") == 0) {
        static const uint32_t e[] = {0, GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
                                     GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
        return e[m];
    }
    const uint32_t Q8 = GGML_TYPE_Q8_0;
    if (ends_with(name, "attn_k.weight") || ends_with(name, "attn_v.weight") || ends_with(name, "attn_qkv.weight"))
        return Q8;
    if (ends_with(name, "attn_output.weight")) return m == MIX_Q5_K_M ? Q6 : Q5;
    if (strstr(name, "ffn_down") != NULL) {
        switch (m) {
        case MIX_Q2_K: return Q3;
        case MIX_Q3_K_M: return more ? Q5 : Q4;
        case MIX_Q4_K_S: return first8 ? Q5 : Q4;
        case MIX_Q4_K_M: return more ? Q6 : Q4;
        case MIX_Q5_K_M: return more ? Q6 : Q5;
        default: return s->base;
        }
    }
    (void)Q2;
    return s->base;
}

/* llama.cpp's fallback for rows a K-quant cannot hold. */
static uint32_t fallback_type(uint32_t t, int64_t ne0) {
    const TypeInfo *ti = type_info(t);
    if (ne0 % ti->block_size == 0) return t;
    uint32_t f;
    switch (t) {
    case GGML_TYPE_Q2_K:
    case GGML_TYPE_Q3_K: f = GGML_TYPE_Q4_0; break;
    case GGML_TYPE_Q4_K: f = GGML_TYPE_Q5_0; break;
    case GGML_TYPE_Q5_K: f = GGML_TYPE_Q5_1; break;
    case GGML_TYPE_Q6_K: f = GGML_TYPE_Q8_0; break;
    default: f = GGML_TYPE_F16; break;
    }
    if (ne0 % type_info(f)->block_size != 0) f = GGML_TYPE_F16;
    return f;
}

/* ---- progress ---------------------------------------------------------- */

typedef struct {
    atomic_llong done;     /* values converted so far */
    long long total;
    double t0, last_draw;
    bool tty;
    const char *tensor;    /* the tensor being converted */
    int index, count;
} Progress;

static void progress_draw(Progress *p, bool force) {
    if (!p->tty) return;
    const double now = time_now();
    if (!force && now - p->last_draw < 0.2) return;
    p->last_draw = now;
    const long long done = atomic_load_explicit(&p->done, memory_order_relaxed);
    const double f = p->total > 0 ? (double)done / (double)p->total : 1.0;
    const int width = 30, fill = (int)(f * width + 0.5);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    const double el = now - p->t0, eta = f > 0.001 ? el * (1.0 - f) / f : 0.0;
    fprintf(stderr, "\r\033[K[%s] %5.1f%%  %4d/%d  %-.40s  %.0fs, ETA %.0fs", bar, 100.0 * f, p->index, p->count,
            p->tensor ? p->tensor : "", el, eta);
    fflush(stderr);
}

/* ---- one tensor, filled on demand by the writer ------------------------ */

typedef struct {
    const GGUFTensor *src;
    uint32_t type;          /* output type */
    int64_t ne0, rows;
    size_t src_rb, dst_rb;
    int index;              /* 1-based, for the progress line */
    Progress *pg;
    ThreadPool *tp;
} QTensor;

typedef struct {
    const QTensor *q;
    uint8_t *dst;
    float *bufs;            /* one row of f32 per thread */
    atomic_llong next;
} QJob;

#define ROWS_PER_ITEM 4

static void q_job(void *ctx, int ith, int nth) {
    QJob *j = ctx;
    const QTensor *q = j->q;
    float *buf = j->bufs + (size_t)ith * (size_t)q->ne0;
    const uint8_t *src = q->src->data;
    (void)nth;
    for (;;) {
        const long long r0 = atomic_fetch_add_explicit(&j->next, ROWS_PER_ITEM, memory_order_relaxed);
        if (r0 >= q->rows) break;
        const long long r1 = r0 + ROWS_PER_ITEM < q->rows ? r0 + ROWS_PER_ITEM : q->rows;
        for (long long r = r0; r < r1; r++) {
            dequantize_row(q->src->type, src + (size_t)r * q->src_rb, buf, q->ne0);
            quantize_row(q->type, buf, j->dst + (size_t)r * q->dst_rb, q->ne0);
        }
        atomic_fetch_add_explicit(&q->pg->done, (r1 - r0) * q->ne0, memory_order_relaxed);
        if (ith == 0) progress_draw(q->pg, false);
    }
}

static int fill_tensor(void *ctx, void *dst, uint64_t nbytes, Error *err) {
    QTensor *q = ctx;
    Progress *pg = q->pg;
    pg->tensor = q->src->name;
    pg->index = q->index;
    if (!pg->tty)
        fprintf(stderr, "[%4d/%d] %-36s %-5s -> %-5s %10.2f MiB -> %8.2f MiB\n", q->index, pg->count, q->src->name,
                type_info(q->src->type)->name, type_info(q->type)->name, q->src->nbytes / 1048576.0,
                nbytes / 1048576.0);
    if (q->src->type == q->type) {
        memcpy(dst, q->src->data, (size_t)nbytes);
        atomic_fetch_add(&pg->done, q->rows * q->ne0);
        progress_draw(pg, true);
        return 0;
    }
    const int nt = tp_size(q->tp);
    QJob j = {q, dst, malloc((size_t)nt * (size_t)q->ne0 * sizeof(float)), 0};
    if (!j.bufs) return err_set(err, "out of memory");
    atomic_init(&j.next, 0);
    tp_run(q->tp, q_job, &j);
    free(j.bufs);
    progress_draw(pg, true);
    return 0;
}

/* ---- the command -------------------------------------------------------- */

static const char USAGE[] =
    "usage: grok quantize IN.gguf OUT.gguf TYPE [-t THREADS] [--pure] [--token-embedding-type T]\n"
    "                     [--output-tensor-type T]\n"
    "Writes a copy of a GGUF model with its weight matrices converted to TYPE.\n"
    "  TYPE    a ggml type, given to every weight matrix:\n"
    "            f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q3_K q4_K q5_K q6_K\n"
    "          or a mix (more bits where they matter most, as llama.cpp's):\n"
    "            Q2_K Q3_K_M Q4_K_S Q4_K_M Q5_K_S Q5_K_M\n"
    "  -t N    threads (default: all cores)\n"
    "  --pure  a mix's base type everywhere (e.g. Q2_K --pure: all q2_K)\n"
    "  --token-embedding-type T, --output-tensor-type T\n"
    "          the type of token_embd.weight / output.weight (as llama-quantize)\n"
    "Norms and the router stay f32. K-quant rows must be a multiple of 256\n"
    "values; other tensors fall back to a 32-value type (with a message).\n";

static int qfail(const char *msg) {
    fprintf(stderr, "grok quantize: %s\n", msg);
    return 1;
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL};
    int npos = 0, threads = 0, embd_type = -1, out_type = -1;
    bool pure = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            char *end;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || *end || v < 1 || v > 1024) return qfail("-t expects a thread count in 1..1024");
            threads = (int)v;
            i++;
        } else if (!strcmp(a, "--pure")) {
            pure = true;
        } else if (!strcmp(a, "--token-embedding-type") || !strcmp(a, "--output-tensor-type")) {
            const int t = i + 1 < argc ? type_from_name(argv[i + 1]) : -1;
            if (t < 0 || !type_can_quantize((uint32_t)t) || t == GGML_TYPE_Q8_1 || t == GGML_TYPE_Q8_K) {
                fprintf(stderr, "grok quantize: %s needs a type (f32 f16 bf16 q4_0 ... q6_K)\n", a);
                return 2;
            }
            if (!strcmp(a, "--token-embedding-type")) embd_type = t;
            else out_type = t;
            i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "grok quantize: unknown option '%s' (see grok quantize --help)\n", a);
            return 2;
        } else if (npos < 3) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "grok quantize: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (npos < 3) {
        fputs(USAGE, stderr);
        return 2;
    }
    const char *in = pos[0], *out = pos[1];
    const QuantSpec *spec = find_spec(pos[2]);
    if (!spec) {
        fprintf(stderr,
                "grok quantize: unknown type '%s' (one of f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q3_K q4_K q5_K q6_K,"
                " or a mix: Q2_K Q3_K_M Q4_K_S Q4_K_M Q5_K_S Q5_K_M)\n",
                pos[2]);
        return 1;
    }
    if (threads <= 0) threads = cpu_count();

    Error err = {{0}};
    GGUFFile *f = gguf_open(in, &err);
    if (!f) {
        fprintf(stderr, "grok quantize: cannot read %s: %s\n", in, err.msg);
        return 1;
    }
    const uint64_t nt = gguf_n_tensors(f);
    int n_layer = 0;
    bool has_output = false;
    for (uint64_t i = 0; i < nt; i++) {
        const GGUFTensor *t = gguf_tensor(f, i);
        const int il = layer_of(t->name);
        if (il + 1 > n_layer) n_layer = il + 1;
        if (!strcmp(t->name, "output.weight")) has_output = true;
    }

    int rc = 1;
    GGUFWriter *w = gguf_writer_new();
    QTensor *qt = calloc(nt ? nt : 1, sizeof *qt);
    ThreadPool *tp = tp_create(threads, &err);
    Progress pg = {0};
    atomic_init(&pg.done, 0);
    if (!w || !qt || !tp) {
        qfail(tp ? "out of memory" : err.msg);
        goto out;
    }
    pg.tty = isatty(2);
    pg.count = (int)nt;
    uint32_t ftype = spec->ftype;
    if (pure) /* the file type of the plain base type */
        for (size_t i = 0; i < sizeof SPECS / sizeof SPECS[0]; i++)
            if (SPECS[i].mix == MIX_NONE && SPECS[i].base == spec->base) ftype = SPECS[i].ftype;
    if (gguf_copy_kv(w, f) || gguf_set_u32(w, "general.file_type", ftype) ||
        gguf_set_u32(w, "general.quantization_version", 2)) {
        qfail("out of memory");
        goto out;
    }
    uint64_t in_bytes = 0, out_bytes = 0;
    for (uint64_t i = 0; i < nt; i++) {
        const GGUFTensor *t = gguf_tensor(f, i);
        QTensor *q = &qt[i];
        q->src = t;
        q->ne0 = t->ne[0];
        q->rows = 1;
        for (uint32_t d = 1; d < t->n_dims; d++) q->rows *= t->ne[d];
        q->index = (int)i + 1;
        q->pg = &pg;
        q->tp = tp;
        const TypeInfo *sti = type_info(t->type);
        uint32_t type;
        if (keep_f32(t)) {
            type = GGML_TYPE_F32;
        } else {
            uint32_t want = choose_type(spec, pure, t->name, n_layer, has_output);
            if (embd_type >= 0 && !strcmp(t->name, "token_embd.weight")) want = (uint32_t)embd_type;
            if (out_type >= 0 && !strcmp(t->name, "output.weight")) want = (uint32_t)out_type;
            type = fallback_type(want, q->ne0);
            if (type != want)
                fprintf(stderr,
                        "grok quantize: %s has rows of %lld values, not a multiple of %d: %s instead of %s (as llama.cpp "
                        "does)\n",
                        t->name, (long long)q->ne0, type_info(want)->block_size, type_info(type)->name,
                        type_info(want)->name);
        }
        if (type != t->type && !type_can_quantize(t->type)) {
            fprintf(stderr, "grok quantize: tensor %s has type %s, which grok.c cannot convert\n", t->name,
                    sti ? sti->name : "?");
            goto out;
        }
        q->type = type;
        q->src_rb = type_row_size(t->type, q->ne0);
        q->dst_rb = type_row_size(type, q->ne0);
        pg.total += (long long)(q->rows * q->ne0);
        in_bytes += t->nbytes;
        out_bytes += (uint64_t)q->dst_rb * (uint64_t)q->rows;
        if (gguf_add_tensor(w, t->name, type, t->n_dims, t->ne, NULL, fill_tensor, q, &err)) {
            qfail(err.msg);
            goto out;
        }
    }
    fprintf(stderr, "grok quantize: %s (%.1f MiB) -> %s %s%s (%.1f MiB), %d threads\n", in, in_bytes / 1048576.0, out,
            spec->name, pure ? " --pure" : "", out_bytes / 1048576.0, tp_size(tp));
    pg.t0 = time_now();
    if (gguf_write(w, out, &err)) {
        if (pg.tty) fputc('\n', stderr);
        fprintf(stderr, "grok quantize: %s\n", err.msg);
        goto out;
    }
    if (pg.tty) fputc('\n', stderr);
    fprintf(stderr, "grok quantize: wrote %s in %.1f s\n", out, time_now() - pg.t0);
    rc = 0;
out:
    if (tp) tp_free(tp);
    free(qt);
    gguf_writer_free(w);
    gguf_close(f);
    return rc;
}
