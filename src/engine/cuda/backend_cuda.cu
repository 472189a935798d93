/* backend_cuda.cu - the CUDA backend (backend.h) on one GPU: the model's
 * weights copied to GPU memory at creation in their GGUF block layout (one
 * allocation; a table maps each host pointer forward.c passes - a Tensor's
 * data, a norm or router vector - to its copy), the KV cache (f32 / f16 /
 * bf16) and every activation in GPU memory, all work queued on one stream.
 *
 * Products: up to mv_max activation rows (decode, default 16) run the
 * matrix x vector kernels of quant_cuda.cu on 8-bit activations (the CPU's
 * vec_dot_type); more rows (prompts) multiply dequantized weight tiles with
 * the same 8-bit activations, dequantized, through cuBLAS (GROK_CUDA_GEMM=
 * f32, the default: f32 products as exact as the CPU's; tf32 or f16: tensor
 * cores, for the measured choice; none, or no cuBLAS to load: every product
 * on the matrix x vector kernels; GROK_CUDA_MV_MAX moves the crossover;
 * GROK_CUDA_SYNC=1 waits for each launch, so that a fault names its
 * operation). The routed experts are chosen and grouped
 * on the GPU; the decode path reads the grouping there (no host round trip),
 * the prompt path copies the n_expert + 1 group starts to the host to size
 * its products.
 *
 * The operations are void (backend.h): the first CUDA error is kept, the
 * backend does nothing more, and check() reports it (forward.c asks after
 * each chunk). Not done yet: CUDA graphs, q8_0 / q4_0 KV caches, several
 * GPUs, experts in host memory. Owns its stream, cuBLAS handle and every
 * allocation it makes. */
#include <cublas_v2.h>
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend.h"
}
#include "cuda_internal.h"
#include "kernels_cuda.h"

#define CUDA_MIN_MAJOR 8          /* sm_80: the oldest machine code built (CMakeLists.txt) */
#define MV_MAX_DEFAULT 16         /* activation rows up to which products take the decode kernels */
#define TILE_BYTES (256u << 20)   /* most bytes of one dequantized weight tile (prompt path) */
#define MEM_MARGIN (512u << 20)   /* GPU memory left free: cuBLAS workspace, the CUDA context's own */
#define MAX_EXPERTS 1024          /* k_route keeps one probability per expert in shared memory */
#define MAX_USED 16
#define MAX_HEAD_DIM 512          /* RoPE: one thread per pair, at most 256 a block */
#define W_ALIGN 256               /* alignment of each weight copy */

enum { GEMM_F32, GEMM_TF32, GEMM_F16, GEMM_NONE };

/* cuBLAS, loaded when a CUDA backend is made (dlopen), so that the binary
 * starts on machines without it (and without a GPU); without it, prompts
 * take the matrix x vector kernels (correct, slower). */
#define CUBLAS_STR2(x) #x
#define CUBLAS_STR(x) CUBLAS_STR2(x)
#define CUBLAS_LIB "libcublas.so." CUBLAS_STR(CUBLAS_VER_MAJOR)
typedef struct {
    void *lib;
    cublasStatus_t (*create)(cublasHandle_t *);
    cublasStatus_t (*destroy)(cublasHandle_t);
    cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                              const void *, cudaDataType, int, const void *, cudaDataType, int, const void *, void *,
                              cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
} Blas;

static bool blas_load(Blas *b) {
    memset(b, 0, sizeof *b);
    if (!(b->lib = dlopen(CUBLAS_LIB, RTLD_NOW | RTLD_LOCAL))) return false;
    *(void **)&b->create = dlsym(b->lib, "cublasCreate_v2");
    *(void **)&b->destroy = dlsym(b->lib, "cublasDestroy_v2");
    *(void **)&b->set_stream = dlsym(b->lib, "cublasSetStream_v2");
    *(void **)&b->gemm_ex = dlsym(b->lib, "cublasGemmEx");
    if (b->create && b->destroy && b->set_stream && b->gemm_ex) return true;
    dlclose(b->lib);
    b->lib = NULL;
    return false;
}

typedef struct {
    const void *host;
    uint8_t *dev;
    size_t bytes;
} WMap;

typedef struct {
    Backend base;
    const Model *m;
    BackendParams p;
    int dev;
    cudaStream_t st;
    Blas bl;
    cublasHandle_t blas;   /* NULL: no cuBLAS (GEMM_NONE) */
    bool bad;
    char err[GROK_ERR_LEN];
    WMap *wm;              /* (n_wm) sorted by host pointer */
    int n_wm;
    uint8_t *wpool;        /* every weight, W_ALIGN-aligned copies */
    int kv_dim, q_dim, widest;
    size_t k_head, v_head; /* bytes of one head's keys / values at one position */
    uint8_t *k_cache;      /* (n_layer, n_seq, n_head_kv, n_ctx) rows of k_head bytes */
    uint8_t *v_cache;      /* the same, v_head bytes */
    float *inv_freq;       /* (head_dim / 2) RoPE inverse frequencies */
    int *d_tok, *d_pos, *d_seq, *d_rows; /* (n_batch) host arrays copied over */
    int *h_pos, *h_seq;    /* (n_batch) host: what d_pos / d_seq hold */
    int n_ps;              /* tokens in them, -1 = none */
    int *inv;              /* (n_batch * n_used) each assignment's place in expert order */
    float *gathered;       /* (n_batch * max(used, 1), n_embd) routed inputs in expert order; select_rows */
    uint8_t *act;          /* (n_batch * max(used, 1), widest) activations in a vec_dot_type */
    float *actf;           /* the same rows as floats (prompt path) */
    __half *acth;          /* and as f16 (GEMM_F16) */
    void *tile;            /* (tile_rows, widest) dequantized weight rows, f32 or f16 */
    int64_t tile_rows;
    float *logits;         /* (n_batch, n_vocab) */
    int *h_ex;             /* (n_expert + 1) host: group starts (prompt path) */
    int gemm;              /* GEMM_* */
    int mv_max;
    bool sync_each;        /* GROK_CUDA_SYNC=1: wait for every launch, so that an error names its operation */
    /* the activations of the current call, prepared once for the products that share them */
    const float *prep_x;
    uint32_t prep_vt;
    int prep_n_tok;
    int64_t prep_n;
    bool prep_f;           /* actf / acth hold them too */
} Cuda;

/* ---- errors ---------------------------------------------------------------- */

static bool ok(Cuda *c, cudaError_t e, const char *what) {
    if (e == cudaSuccess && c->sync_each) e = cudaStreamSynchronize(c->st); /* GROK_CUDA_SYNC=1 */
    if (e == cudaSuccess) return true;
    if (!c->bad) {
        c->bad = true;
        snprintf(c->err, sizeof c->err, "CUDA error on GPU %d in %s: %s", c->dev, what, cudaGetErrorString(e));
    }
    return false;
}

static bool ok_blas(Cuda *c, cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return true;
    if (!c->bad) {
        c->bad = true;
        snprintf(c->err, sizeof c->err, "cuBLAS error on GPU %d in %s: status %d", c->dev, what, (int)s);
    }
    return false;
}

static void fail(Cuda *c, const char *msg) {
    if (!c->bad) {
        c->bad = true;
        snprintf(c->err, sizeof c->err, "%s", msg);
    }
}

/* Every operation starts here: nothing more once failed; the calling
 * thread's current device may be another (the server's threads). */
static bool enter(Cuda *c) { return !c->bad && ok(c, cudaSetDevice(c->dev), "cudaSetDevice"); }

static int cuda_check(Backend *b, Error *err) {
    Cuda *c = (Cuda *)b;
    if (!c->bad) ok(c, cudaPeekAtLastError(), "a kernel");
    if (!c->bad) return 0;
    return err_set(err, "%s", c->err);
}

/* ---- weights ------------------------------------------------------------- */

static int wm_cmp(const void *a, const void *b) {
    const uintptr_t x = (uintptr_t)((const WMap *)a)->host, y = (uintptr_t)((const WMap *)b)->host;
    return x < y ? -1 : x > y;
}

/* The device copy of host weight memory h (a pointer forward.c passes:
 * the start of a tensor or vector, or inside one). */
static uint8_t *dev_of(Cuda *c, const void *h) {
    int lo = 0, hi = c->n_wm - 1;
    const uintptr_t x = (uintptr_t)h;
    while (lo <= hi) {
        const int mid = (lo + hi) / 2;
        const uintptr_t s = (uintptr_t)c->wm[mid].host;
        if (x < s) hi = mid - 1;
        else if (x >= s + c->wm[mid].bytes) lo = mid + 1;
        else return c->wm[mid].dev + (x - s);
    }
    fail(c, "internal error: a weight the CUDA backend did not copy to the GPU");
    return NULL;
}

typedef struct {
    WMap *v;
    int n, cap;
    size_t bytes;
    bool oom;
    char bad[GROK_ERR_LEN]; /* the first weight of a type the kernels do not read */
} WList;

static void wl_add(WList *l, const void *host, size_t bytes) {
    if (!host || !bytes || l->oom) return;
    for (int i = 0; i < l->n; i++)
        if (l->v[i].host == host) return; /* a tied output is the embedding table */
    if (l->n == l->cap) {
        const int cap = l->cap ? 2 * l->cap : 64;
        WMap *v = (WMap *)realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) {
            l->oom = true;
            return;
        }
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = WMap{host, NULL, bytes};
    l->bytes += (bytes + W_ALIGN - 1) / W_ALIGN * W_ALIGN;
}

static void wl_tensor(WList *l, const Tensor *t, const char *name, int layer) {
    if (!t->data) return;
    if (!cq_supported(t->type) && !l->bad[0]) {
        const TypeInfo *ti = type_info(t->type);
        if (layer >= 0)
            snprintf(l->bad, sizeof l->bad, "blk.%d.%s has type %s, which the CUDA backend does not read yet (use "
                     "--device cpu)", layer, name, ti ? ti->name : "?");
        else
            snprintf(l->bad, sizeof l->bad, "%s has type %s, which the CUDA backend does not read yet (use --device "
                     "cpu)", name, ti ? ti->name : "?");
    }
    wl_add(l, t->data, (size_t)t->rows * t->row_bytes);
}

static void weight_list(const Model *m, WList *l) {
    const ModelConfig *cfg = &m->cfg;
    const size_t E = (size_t)cfg->n_embd * sizeof(float);
    wl_tensor(l, &m->tok_embd, "token_embd", -1);
    wl_tensor(l, &m->output, "output", -1);
    wl_add(l, m->output_norm, E);
    for (int il = 0; il < cfg->n_layer; il++) {
        const Layer *L = &m->layers[il];
        const struct {
            const Tensor *t;
            const char *name;
        } ts[] = {{&L->wq, "attn_q"},         {&L->wk, "attn_k"},          {&L->wv, "attn_v"},
                  {&L->wqkv, "attn_qkv"},     {&L->wo, "attn_output"},     {&L->gate_exps, "ffn_gate_exps"},
                  {&L->up_exps, "ffn_up_exps"}, {&L->down_exps, "ffn_down_exps"}, {&L->ffn_gate, "ffn_gate"},
                  {&L->ffn_up, "ffn_up"},     {&L->ffn_down, "ffn_down"}};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) wl_tensor(l, ts[i].t, ts[i].name, il);
        wl_add(l, L->attn_norm, E);
        wl_add(l, L->attn_out_norm, E);
        wl_add(l, L->ffn_norm, E);
        wl_add(l, L->out_norm, E);
        wl_add(l, L->router, E * (size_t)cfg->n_expert);
    }
}

/* ---- activations ----------------------------------------------------------- */

/* The activations x (n_tok rows of n floats) in vec_dot_type(wtype): device
 * rows and their bytes; with as_float also as the floats a cuBLAS product
 * takes (f32, or f16 for GEMM_F16). Prepared once per operation for the
 * products that share them. */
typedef struct {
    const uint8_t *q;    /* vec_dot_type rows (x itself for f32) */
    size_t q_row;
    const void *f;       /* float rows (as_float), n values apart */
} Act;

static bool prepare(Cuda *c, uint32_t wtype, const float *x, int n_tok, int64_t n, bool as_float, Act *a) {
    const uint32_t vt = vec_dot_type(wtype);
    const bool same = c->prep_x == x && c->prep_vt == vt && c->prep_n_tok == n_tok && c->prep_n == n;
    if (vt == GGML_TYPE_F32) {
        a->q = (const uint8_t *)x, a->q_row = (size_t)n * sizeof(float);
    } else {
        a->q = c->act, a->q_row = type_row_size(vt, n);
        if (!same && !ok(c, cq_quantize_act(vt, x, n, n_tok, n, c->act, c->st), "quantizing activations")) return false;
    }
    if (!same) c->prep_x = x, c->prep_vt = vt, c->prep_n_tok = n_tok, c->prep_n = n, c->prep_f = false;
    a->f = NULL;
    if (!as_float) return true;
    const float *f32 = vt == GGML_TYPE_F32 ? x : c->actf;
    if (!c->prep_f) {
        if (vt != GGML_TYPE_F32 && !ok(c, cq_dequant_act(vt, c->act, n_tok, n, c->actf, c->st), "activations"))
            return false;
        if (c->gemm == GEMM_F16 && !ok(c, cq_f32_to_f16(f32, (int64_t)n_tok * n, c->acth, c->st), "activations"))
            return false;
        c->prep_f = true;
    }
    a->f = c->gemm == GEMM_F16 ? (const void *)c->acth : (const void *)f32;
    return true;
}

static void prep_reset(Cuda *c) { c->prep_x = NULL; }

/* out[t * out_stride + r] = W[r] . x[t], r < rows, t < n_tok, through cuBLAS:
 * W's rows dequantized a tile at a time (f32 weights in place, but with f16). */
static void gemm(Cuda *c, uint32_t wtype, const uint8_t *w, size_t row_bytes, int64_t rows, int64_t n,
                 const void *xf, int n_tok, float *out, int64_t out_stride) {
    const float one = 1.0f, zero = 0.0f;
    const bool f16 = c->gemm == GEMM_F16;
    const cudaDataType_t dt = f16 ? CUDA_R_16F : CUDA_R_32F;
    const cublasComputeType_t ct = c->gemm == GEMM_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    for (int64_t r0 = 0; r0 < rows && !c->bad; r0 += c->tile_rows) {
        const int64_t tr = rows - r0 < c->tile_rows ? rows - r0 : c->tile_rows;
        const void *a;
        int64_t lda = n;
        if (wtype == GGML_TYPE_F32 && !f16) {
            a = w + (size_t)r0 * row_bytes;
            lda = (int64_t)(row_bytes / sizeof(float));
        } else {
            if (!ok(c, cq_dequant_rows(wtype, w + (size_t)r0 * row_bytes, row_bytes, tr, n, f16 ? NULL : (float *)c->tile,
                                       f16 ? (__half *)c->tile : NULL, c->st),
                    "dequantizing a weight tile"))
                return;
            a = c->tile;
        }
        /* column-major: C (tr x n_tok, ldc out_stride) = A^T (A: n x tr) . B (n x n_tok) */
        ok_blas(c, c->bl.gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)tr, n_tok, (int)n, &one, a, dt, (int)lda, xf, dt,
                                (int)n, &zero, out + r0, CUDA_R_32F, (int)out_stride, ct, CUBLAS_GEMM_DEFAULT),
                "cublasGemmEx");
    }
}

static void matvec(Cuda *c, uint32_t wtype, const uint8_t *w, size_t row_bytes, size_t expert_bytes, int64_t rows,
                   int64_t n, const Act *a, int n_tok, const int *ex_start, int n_expert, float *out, int64_t out_stride) {
    CqMatVec mv;
    mv.w = w, mv.w_row_bytes = row_bytes, mv.w_expert_bytes = expert_bytes, mv.rows = rows, mv.n = n;
    mv.x = a->q, mv.x_row_bytes = a->q_row, mv.ex_start = ex_start, mv.n_tok = n_tok, mv.n_expert = n_expert;
    mv.out = out, mv.out_stride = out_stride;
    ok(c, cq_matvec(wtype, &mv, c->st), "the matrix x vector kernel");
}

static void cuda_matmul(Backend *b, const MatMul *mm, int n_mm) {
    Cuda *c = (Cuda *)b;
    if (!enter(c)) return;
    prep_reset(c);
    for (int i = 0; i < n_mm && !c->bad; i++) {
        const MatMul *m = &mm[i];
        if (m->rows <= 0 || m->n_tok <= 0) continue;
        const uint8_t *w = dev_of(c, m->w->data);
        if (!w) return;
        w += (size_t)m->row0 * m->w->row_bytes;
        const bool big = m->n_tok > c->mv_max;
        Act a;
        if (!prepare(c, m->w->type, m->x, m->n_tok, m->w->cols, big, &a)) return;
        if (big) gemm(c, m->w->type, w, m->w->row_bytes, m->rows, m->w->cols, a.f, m->n_tok, m->out, m->out_stride);
        else matvec(c, m->w->type, w, m->w->row_bytes, 0, m->rows, m->w->cols, &a, m->n_tok, NULL, 1, m->out, m->out_stride);
    }
}

static void cuda_matmul_experts(Backend *b, const Routing *r, const ExpertMatMul *mm, int n_mm) {
    Cuda *c = (Cuda *)b;
    if (!enter(c)) return;
    prep_reset(c);
    const int na = r->n_tok * r->n_used;
    const bool big = r->n_tok > c->mv_max; /* fewer tokens: no expert has more than mv_max rows */
    if (big) { /* the group sizes, to size the products */
        if (!ok(c, cudaMemcpyAsync(c->h_ex, r->ex_start, ((size_t)r->n_expert + 1) * sizeof(int), cudaMemcpyDeviceToHost,
                                   c->st), "reading the expert groups") ||
            !ok(c, cudaStreamSynchronize(c->st), "reading the expert groups"))
            return;
    }
    const float *gathered_from = NULL;
    for (int i = 0; i < n_mm && !c->bad; i++) {
        const ExpertMatMul *e = &mm[i];
        const int64_t n = e->w->cols;
        const float *x = e->x;
        if (e->by_token) {
            if (gathered_from != e->x) {
                if (!ok(c, ck_gather(e->x, r->order, na, r->n_used, n, c->gathered, c->st), "gathering routed rows"))
                    return;
                gathered_from = e->x;
                if (c->prep_x == c->gathered) prep_reset(c); /* new contents at the same address */
            }
            x = c->gathered;
        }
        const uint8_t *w = dev_of(c, e->w->data);
        if (!w) return;
        w += (size_t)e->row0 * e->w->row_bytes;
        const size_t eb = (size_t)e->expert_rows * e->w->row_bytes;
        Act a;
        if (!prepare(c, e->w->type, x, na, n, big, &a)) return;
        if (!big) {
            matvec(c, e->w->type, w, e->w->row_bytes, eb, e->rows, n, &a, na, r->ex_start, r->n_expert, e->out,
                   e->out_stride);
            continue;
        }
        for (int ex = 0; ex < r->n_expert && !c->bad; ex++) {
            const int s = c->h_ex[ex], cnt = c->h_ex[ex + 1] - s;
            if (cnt <= 0) continue;
            const uint8_t *we = w + (size_t)ex * eb;
            float *out = e->out + (size_t)s * e->out_stride;
            if (cnt > c->mv_max) {
                const size_t fsz = c->gemm == GEMM_F16 ? sizeof(__half) : sizeof(float);
                gemm(c, e->w->type, we, e->w->row_bytes, e->rows, n, (const uint8_t *)a.f + (size_t)s * n * fsz, cnt, out,
                     e->out_stride);
            } else {
                Act as = a;
                as.q = a.q + (size_t)s * a.q_row;
                matvec(c, e->w->type, we, e->w->row_bytes, 0, e->rows, n, &as, cnt, NULL, 1, out, e->out_stride);
            }
        }
    }
}

/* ---- host arrays -------------------------------------------------------------- */

static bool upload(Cuda *c, int *dst, const int *src, int n, const char *what) {
    return ok(c, cudaMemcpyAsync(dst, src, (size_t)n * sizeof(int), cudaMemcpyHostToDevice, c->st), what);
}

/* pos and seq on the GPU; the same arrays come for every layer of a chunk,
 * so they are copied only when they change. */
static bool upload_pos_seq(Cuda *c, const int *pos, const int *seq, int nt) {
    const size_t bytes = (size_t)nt * sizeof(int);
    if (nt == c->n_ps && !memcmp(pos, c->h_pos, bytes) && !memcmp(seq, c->h_seq, bytes)) return true;
    if (!upload(c, c->d_pos, pos, nt, "copying positions") || !upload(c, c->d_seq, seq, nt, "copying sequences"))
        return false;
    memcpy(c->h_pos, pos, bytes);
    memcpy(c->h_seq, seq, bytes);
    c->n_ps = nt;
    return true;
}

/* ---- the simple operations ---------------------------------------------------- */

static void cuda_embed(Backend *b, const Tensor *te, const int *tok, int nt, float scale, float *x) {
    Cuda *c = (Cuda *)b;
    if (!enter(c) || nt <= 0 || !upload(c, c->d_tok, tok, nt, "copying token ids")) return;
    const uint8_t *w = dev_of(c, te->data);
    if (w) ok(c, cq_embed(te->type, w, te->row_bytes, c->d_tok, nt, te->cols, scale, x, c->st), "embedding");
}

static void cuda_rmsnorm(Backend *b, float *y, const float *x, const float *w, int nt, int n, float eps) {
    Cuda *c = (Cuda *)b;
    if (!enter(c)) return;
    const float *wd = (const float *)dev_of(c, w);
    if (wd) ok(c, ck_rmsnorm(y, x, wd, nt, n, eps, c->st), "rmsnorm");
}

static void cuda_add_rmsnorm(Backend *b, float *x, float *y, const float *w, int nt, int n, float eps) {
    Cuda *c = (Cuda *)b;
    if (!enter(c)) return;
    const float *wd = (const float *)dev_of(c, w);
    if (wd) ok(c, ck_add_rmsnorm(x, y, wd, nt, n, eps, c->st), "rmsnorm");
}

static void cuda_geglu(Backend *b, float *g, const float *u, int64_t n) {
    Cuda *c = (Cuda *)b;
    if (enter(c)) ok(c, ck_geglu(g, u, n, c->st), "geglu");
}

static void cuda_add_scale(Backend *b, float *y, const float *x, float s, int64_t n) {
    Cuda *c = (Cuda *)b;
    if (enter(c)) ok(c, ck_add_scale(y, x, s, n, c->st), "add_scale");
}

static void cuda_select_rows(Backend *b, float *x, const int *rows, int n, int width) {
    Cuda *c = (Cuda *)b;
    if (!enter(c) || n <= 0 || !upload(c, c->d_rows, rows, n, "copying row numbers")) return;
    if (ok(c, ck_rows(x, c->d_rows, n, width, c->gathered, c->st), "selecting rows"))
        ok(c, cudaMemcpyAsync(x, c->gathered, (size_t)n * width * sizeof(float), cudaMemcpyDeviceToDevice, c->st),
           "selecting rows");
}

static void cuda_logits(Backend *b, const Tensor *w, const float *x, int nt, float scale, float cap, float *logits) {
    Cuda *c = (Cuda *)b;
    if (!enter(c) || nt <= 0) return;
    const MatMul mm = {w, 0, w->rows, x, nt, c->logits, w->rows};
    cuda_matmul(b, &mm, 1);
    const size_t n = (size_t)nt * (size_t)w->rows;
    if (c->bad || !ok(c, ck_softcap(c->logits, (int64_t)n, scale, cap, c->st), "logits")) return;
    if (logits)
        ok(c, cudaMemcpyAsync(logits, c->logits, n * sizeof(float), cudaMemcpyDeviceToHost, c->st), "copying logits");
    ok(c, cudaStreamSynchronize(c->st), "the forward pass");
}

/* ---- routing --------------------------------------------------------------------- */

static void cuda_route(Backend *b, const float *router, const float *u, int nt, Routing *r) {
    Cuda *c = (Cuda *)b;
    const ModelConfig *cfg = &c->m->cfg;
    r->n_tok = nt, r->n_used = cfg->n_expert_used, r->n_expert = cfg->n_expert;
    if (!enter(c)) return;
    const float *rd = (const float *)dev_of(c, router);
    if (rd)
        ok(c, ck_route(rd, u, nt, cfg->n_embd, cfg->n_expert, cfg->n_expert_used, cfg->router_softcap, r->sel, r->gate,
                       r->ex_start, r->order, c->inv, c->st),
           "routing");
}

static void cuda_combine(Backend *b, const Routing *r, const float *down, int n, float *out) {
    Cuda *c = (Cuda *)b;
    if (enter(c)) ok(c, ck_combine(r->gate, c->inv, down, r->n_tok, r->n_used, n, out, c->st), "combining experts");
}

/* ---- attention and the KV cache ---------------------------------------------------- */

static void cuda_rope_store(Backend *b, int il, float *q, float *k, const float *v, const int *pos, const int *seq,
                            int nt) {
    Cuda *c = (Cuda *)b;
    const ModelConfig *cfg = &c->m->cfg;
    if (!enter(c) || nt <= 0 || !upload_pos_seq(c, pos, seq, nt)) return;
    CkRope a;
    a.q = q, a.k = k, a.v = v, a.pos = c->d_pos, a.seq = c->d_seq, a.inv_freq = c->inv_freq;
    a.k_cache = c->k_cache, a.v_cache = c->v_cache, a.kt = c->p.kv_type_k, a.vt = c->p.kv_type_v;
    a.k_head = c->k_head, a.v_head = c->v_head, a.layer = il, a.n_seq = c->p.n_seq, a.n_ctx = c->p.n_ctx;
    a.n_head = cfg->n_head, a.n_head_kv = cfg->n_head_kv, a.hd = cfg->head_dim, a.q_dim = c->q_dim, a.kv_dim = c->kv_dim;
    ok(c, ck_rope_store(&a, nt, c->st), "rope");
}

static void cuda_attention(Backend *b, int il, const float *q, const int *pos, const int *seq, int nt, float *out) {
    Cuda *c = (Cuda *)b;
    const ModelConfig *cfg = &c->m->cfg;
    if (!enter(c) || nt <= 0 || !upload_pos_seq(c, pos, seq, nt)) return;
    CkAttn a;
    a.q = q, a.pos = c->d_pos, a.seq = c->d_seq, a.k_cache = c->k_cache, a.v_cache = c->v_cache;
    a.kt = c->p.kv_type_k, a.vt = c->p.kv_type_v, a.k_head = c->k_head, a.v_head = c->v_head;
    a.layer = il, a.n_seq = c->p.n_seq, a.n_ctx = c->p.n_ctx, a.n_head = cfg->n_head, a.n_head_kv = cfg->n_head_kv;
    a.group = cfg->n_head / cfg->n_head_kv, a.hd = cfg->head_dim, a.q_dim = c->q_dim;
    a.scale = cfg->attn_scale, a.cap = cfg->attn_softcap, a.temp_len = cfg->attn_temp_len, a.out = out;
    ok(c, ck_attention(&a, nt, c->st), "attention");
}

static size_t kv_index(const Cuda *c, int layer, int seq, int g, int pos) {
    return (((size_t)layer * c->p.n_seq + (size_t)seq) * c->m->cfg.n_head_kv + (size_t)g) * c->p.n_ctx + (size_t)pos;
}

/* buf <-> positions [p0, p1) of a sequence: for each layer and key/value
 * head, its key rows, then its value rows (the CPU backend's layout). */
static void kv_copy(Cuda *c, int seq, int p0, int p1, uint8_t *buf, bool out) {
    if (!enter(c) || p1 <= p0) return;
    const size_t n = (size_t)(p1 - p0);
    for (int il = 0; il < c->m->cfg.n_layer && !c->bad; il++)
        for (int g = 0; g < c->m->cfg.n_head_kv && !c->bad; g++) {
            const size_t i = kv_index(c, il, seq, g, p0);
            uint8_t *k = c->k_cache + i * c->k_head, *v = c->v_cache + i * c->v_head;
            if (out) {
                ok(c, cudaMemcpyAsync(buf, k, n * c->k_head, cudaMemcpyDeviceToHost, c->st), "reading the KV cache");
                ok(c, cudaMemcpyAsync(buf + n * c->k_head, v, n * c->v_head, cudaMemcpyDeviceToHost, c->st),
                   "reading the KV cache");
            } else {
                ok(c, cudaMemcpyAsync(k, buf, n * c->k_head, cudaMemcpyHostToDevice, c->st), "writing the KV cache");
                ok(c, cudaMemcpyAsync(v, buf + n * c->k_head, n * c->v_head, cudaMemcpyHostToDevice, c->st),
                   "writing the KV cache");
            }
            buf += n * (c->k_head + c->v_head);
        }
    ok(c, cudaStreamSynchronize(c->st), "copying the KV cache");
}

static void cuda_kv_read(Backend *b, int seq, int p0, int p1, void *buf) { kv_copy((Cuda *)b, seq, p0, p1, (uint8_t *)buf, true); }
static void cuda_kv_write(Backend *b, int seq, int p0, int p1, const void *buf) {
    kv_copy((Cuda *)b, seq, p0, p1, (uint8_t *)buf, false);
}

/* Context shift: the range is copied aside first (source and destination
 * may overlap), then written back moved, keys re-rotated. */
static void cuda_kv_shift(Backend *b, int seq, int p0, int p1, int delta) {
    Cuda *c = (Cuda *)b;
    const ModelConfig *cfg = &c->m->cfg;
    if (!enter(c) || p1 <= p0 || delta == 0) return;
    const size_t n = (size_t)(p1 - p0), per = n * (c->k_head + c->v_head);
    uint8_t *tmp = NULL;
    if (!ok(c, cudaMalloc((void **)&tmp, per * cfg->n_layer * cfg->n_head_kv), "allocating the context shift")) return;
    for (int il = 0; il < cfg->n_layer && !c->bad; il++) {
        const size_t i = kv_index(c, il, seq, 0, p0);
        uint8_t *dst = tmp + (size_t)il * cfg->n_head_kv * per;
        /* n_head_kv spans of each kind, n_ctx rows apart in the cache */
        ok(c, cudaMemcpy2DAsync(dst, per, c->k_cache + i * c->k_head, (size_t)c->p.n_ctx * c->k_head, n * c->k_head,
                                cfg->n_head_kv, cudaMemcpyDeviceToDevice, c->st), "the context shift");
        ok(c, cudaMemcpy2DAsync(dst + n * c->k_head, per, c->v_cache + i * c->v_head, (size_t)c->p.n_ctx * c->v_head,
                                n * c->v_head, cfg->n_head_kv, cudaMemcpyDeviceToDevice, c->st), "the context shift");
    }
    CkShift a;
    a.tmp = tmp, a.k_cache = c->k_cache, a.v_cache = c->v_cache, a.inv_freq = c->inv_freq, a.kt = c->p.kv_type_k;
    a.k_head = c->k_head, a.v_head = c->v_head, a.seq = seq, a.p0 = p0, a.n = (int)n, a.delta = delta;
    a.n_seq = c->p.n_seq, a.n_ctx = c->p.n_ctx, a.n_head_kv = cfg->n_head_kv, a.hd = cfg->head_dim;
    if (!c->bad) ok(c, ck_shift(&a, cfg->n_layer, c->st), "the context shift");
    ok(c, cudaStreamSynchronize(c->st), "the context shift");
    cudaFree(tmp);
}

static size_t cuda_kv_pos_bytes(const Backend *b) {
    const Cuda *c = (const Cuda *)b;
    return (size_t)c->m->cfg.n_layer * c->m->cfg.n_head_kv * (c->k_head + c->v_head);
}

static size_t cuda_kv_bytes(const Backend *b) {
    const Cuda *c = (const Cuda *)b;
    return (size_t)c->p.n_seq * c->p.n_ctx * cuda_kv_pos_bytes(b);
}

/* ---- memory and lifetime ------------------------------------------------------------- */

static void *cuda_alloc(Backend *b, size_t bytes) {
    Cuda *c = (Cuda *)b;
    if (c->bad || cudaSetDevice(c->dev) != cudaSuccess) return NULL;
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        (void)cudaGetLastError(); /* out of memory is not sticky: the caller reports it */
        return NULL;
    }
    /* on the backend's stream, so that the zeros come before its work */
    if (cudaMemsetAsync(p, 0, bytes, c->st) != cudaSuccess) {
        cudaFree(p);
        (void)cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cuda_release(Backend *b, void *p) {
    Cuda *c = (Cuda *)b;
    if (cudaSetDevice(c->dev) == cudaSuccess) cudaFree(p);
}

static int cuda_n_threads(const Backend *b) {
    (void)b;
    return 1; /* the host thread that queues the work */
}

static void cuda_free(Backend *b) {
    Cuda *c = (Cuda *)b;
    if (!c) return;
    if (cudaSetDevice(c->dev) == cudaSuccess) {
        if (c->st) cudaStreamSynchronize(c->st);
        void *dev[] = {c->wpool, c->k_cache, c->v_cache, c->inv_freq, c->d_tok, c->d_pos, c->d_seq, c->d_rows,
                       c->inv, c->gathered, c->act, c->actf, c->acth, c->tile, c->logits};
        for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
            if (dev[i]) cudaFree(dev[i]);
        if (c->blas) c->bl.destroy(c->blas);
        if (c->st) cudaStreamDestroy(c->st);
    }
    if (c->bl.lib) dlclose(c->bl.lib);
    free(c->wm), free(c->h_pos), free(c->h_seq), free(c->h_ex);
    free(c);
}

/* ---- creation ----------------------------------------------------------------------------- */

bool cuda_built(void) { return true; }

int cuda_device_count(Error *err) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaSuccess && n > 0) return n;
    void *drv = e == cudaErrorInsufficientDriver ? dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL) : NULL;
    if (drv) dlclose(drv);
    if (e == cudaErrorInsufficientDriver && !drv)
        err_set(err, "no NVIDIA driver (libcuda.so.1 cannot be loaded)");
    else if (e == cudaErrorInsufficientDriver)
        err_set(err, "the NVIDIA driver is older than this build's CUDA %d.%d needs (update the driver)",
                CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
    else if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0))
        err_set(err, "no CUDA GPU found");
    else
        err_set(err, "no usable CUDA GPU: %s", cudaGetErrorString(e));
    (void)cudaGetLastError();
    return 0;
}

static double gib(size_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

static bool kv_type_cuda(uint32_t t) { return t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16; }

static void dalloc(void **p, size_t bytes, bool *good) {
    if (*good && cudaMalloc(p, bytes ? bytes : 1) != cudaSuccess) *good = false, *p = NULL;
}

/* Fails creation: the message in err, everything made so far freed. */
static Backend *give_up(Cuda *c, Error *err, const char *what, cudaError_t e) {
    if (what) err_set(err, "CUDA error on GPU %d %s: %s", c->dev, what, cudaGetErrorString(e));
    (void)cudaGetLastError();
    cuda_free(&c->base);
    return NULL;
}

Backend *backend_cuda_new(const Model *m, const BackendParams *p, Error *err) {
    const ModelConfig *cfg = &m->cfg;
    /* a share of the model (several processes, dist/) runs on the CPU backend only: forward.c keeps the
     * activations it exchanges in host memory, and this backend caches every head of every layer */
    const ModelShare *sh = &m->share;
    if (sh->partial || sh->attn_partial || (sh->layer1 > 0 && sh->layer1 - sh->layer0 != cfg->n_layer)) {
        err_set(err, "several processes (mpirun) run on the CPU backend only: use --device cpu");
        return NULL;
    }
    Error derr = {{0}};
    const int n_dev = cuda_device_count(&derr);
    if (n_dev <= 0) {
        err_set(err, "--device cuda: %s; use --device cpu", derr.msg);
        return NULL;
    }
    if (p->gpu < 0 || p->gpu >= n_dev) {
        err_set(err, "--gpu %d: there %s %d CUDA GPU%s (0..%d)", p->gpu, n_dev == 1 ? "is" : "are", n_dev,
                n_dev == 1 ? "" : "s", n_dev - 1);
        return NULL;
    }
    if (!kv_type_cuda(p->kv_type_k) || !kv_type_cuda(p->kv_type_v)) {
        err_set(err, "a %s / %s KV cache is not supported on cuda yet (f32, f16 or bf16; or --device cpu)",
                type_info(p->kv_type_k) ? type_info(p->kv_type_k)->name : "?",
                type_info(p->kv_type_v) ? type_info(p->kv_type_v)->name : "?");
        return NULL;
    }
    if (cfg->head_dim % 2 || cfg->head_dim > MAX_HEAD_DIM || cfg->n_expert > MAX_EXPERTS ||
        cfg->n_expert_used > MAX_USED || cfg->n_expert_used < 1 || cfg->n_head % cfg->n_head_kv) {
        err_set(err, "this model's shape (head size %d, %d of %d experts) is outside what the CUDA backend supports "
                "(an even head size up to %d, up to %d experts, up to %d used); use --device cpu",
                cfg->head_dim, cfg->n_expert_used, cfg->n_expert, MAX_HEAD_DIM, MAX_EXPERTS, MAX_USED);
        return NULL;
    }
    cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, p->gpu);
    if (e != cudaSuccess) {
        err_set(err, "GPU %d: %s", p->gpu, cudaGetErrorString(e));
        return NULL;
    }
    if (prop.major < CUDA_MIN_MAJOR) {
        err_set(err, "GPU %d (%s) has compute capability %d.%d; grok's CUDA kernels need %d.0 or newer (use --device "
                "cpu)", p->gpu, prop.name, prop.major, prop.minor, CUDA_MIN_MAJOR);
        return NULL;
    }
    const size_t smem = ck_attention_smem(cfg->head_dim, p->n_ctx);
    if (smem + 1024 > prop.sharedMemPerBlockOptin) {
        err_set(err, "--ctx %d is more than the CUDA attention kernel holds on GPU %d (at most %d positions); use a "
                "smaller --ctx or --device cpu", p->n_ctx, p->gpu,
                (int)((prop.sharedMemPerBlockOptin - 1024) / sizeof(float)) - cfg->head_dim);
        return NULL;
    }
    const char *gm = getenv("GROK_CUDA_GEMM"), *gemm_env = gm && *gm ? gm : NULL;
    int gemm_mode = GEMM_F32;
    if (gemm_env) {
        if (!strcmp(gm, "f32")) gemm_mode = GEMM_F32;
        else if (!strcmp(gm, "tf32")) gemm_mode = GEMM_TF32;
        else if (!strcmp(gm, "f16")) gemm_mode = GEMM_F16;
        else if (!strcmp(gm, "none")) gemm_mode = GEMM_NONE;
        else {
            err_set(err, "GROK_CUDA_GEMM=%s: expected f32, tf32, f16 or none", gm);
            return NULL;
        }
    }
    int mv_max = MV_MAX_DEFAULT;
    const char *mvs = getenv("GROK_CUDA_MV_MAX");
    if (mvs && *mvs) {
        char *end;
        const long v = strtol(mvs, &end, 10);
        if (*end || v < 1 || v > 4096) {
            err_set(err, "GROK_CUDA_MV_MAX=%s: expected a number of rows from 1 to 4096", mvs);
            return NULL;
        }
        mv_max = (int)v;
    }

    WList wl = {};
    weight_list(m, &wl);
    if (wl.oom) {
        free(wl.v);
        err_set(err, "out of memory");
        return NULL;
    }
    if (wl.bad[0]) {
        err_set(err, "%s", wl.bad);
        free(wl.v);
        return NULL;
    }

    Cuda *c = (Cuda *)calloc(1, sizeof *c);
    if (!c) {
        free(wl.v);
        err_set(err, "out of memory");
        return NULL;
    }
    c->base.name = "cuda";
    c->base.alloc = cuda_alloc;
    c->base.release = cuda_release;
    c->base.kv_bytes = cuda_kv_bytes;
    c->base.embed = cuda_embed;
    c->base.rmsnorm = cuda_rmsnorm;
    c->base.add_rmsnorm = cuda_add_rmsnorm;
    c->base.matmul = cuda_matmul;
    c->base.matmul_experts = cuda_matmul_experts;
    c->base.rope_store = cuda_rope_store;
    c->base.attention = cuda_attention;
    c->base.route = cuda_route;
    c->base.geglu = cuda_geglu;
    c->base.combine = cuda_combine;
    c->base.add_scale = cuda_add_scale;
    c->base.select_rows = cuda_select_rows;
    c->base.logits = cuda_logits;
    c->base.kv_shift = cuda_kv_shift;
    c->base.kv_pos_bytes = cuda_kv_pos_bytes;
    c->base.kv_read = cuda_kv_read;
    c->base.kv_write = cuda_kv_write;
    c->base.n_threads = cuda_n_threads;
    c->base.check = cuda_check;
    c->base.free = cuda_free;
    c->m = m;
    c->p = *p;
    c->dev = p->gpu;
    c->wm = wl.v, c->n_wm = wl.n;
    c->n_ps = -1;
    c->gemm = gemm_mode;
    c->mv_max = mv_max;
    c->sync_each = getenv("GROK_CUDA_SYNC") && !strcmp(getenv("GROK_CUDA_SYNC"), "1");
    if (c->gemm != GEMM_NONE && !blas_load(&c->bl)) {
        if (gemm_env) {
            err_set(err, "GROK_CUDA_GEMM=%s needs cuBLAS, and " CUBLAS_LIB " cannot be loaded", gemm_env);
            cuda_free(&c->base);
            return NULL;
        }
        c->gemm = GEMM_NONE;
    }
    if (c->gemm == GEMM_NONE) c->mv_max = INT_MAX; /* every product on the matrix x vector kernels */
    c->kv_dim = cfg->n_head_kv * cfg->head_dim;
    c->q_dim = cfg->n_head * cfg->head_dim;
    c->k_head = (c->p.kv_type_k == GGML_TYPE_F32 ? 4 : 2) * (size_t)cfg->head_dim;
    c->v_head = (c->p.kv_type_v == GGML_TYPE_F32 ? 4 : 2) * (size_t)cfg->head_dim;

    /* every byte the context will hold on the GPU, before any is allocated */
    const size_t B = (size_t)p->n_batch, K = (size_t)cfg->n_expert_used, E = (size_t)cfg->n_embd, f = sizeof(float);
    const size_t F = (size_t)(cfg->n_ff > cfg->n_ff_dense ? cfg->n_ff : cfg->n_ff_dense);
    const size_t rows_k = B * (K > 1 ? K : 1);
    size_t widest = E > F ? E : F;
    if ((size_t)c->q_dim > widest) widest = (size_t)c->q_dim;
    c->widest = (int)widest;
    const bool prompt = p->n_batch > c->mv_max;
    c->tile_rows = TILE_BYTES / (widest * f);
    if (c->tile_rows > 65535) c->tile_rows = 65535; /* k_dequant_rows' grid.y */
    if (c->tile_rows < 1) c->tile_rows = 1;
    const size_t kv = (size_t)cfg->n_layer * p->n_seq * p->n_ctx * cfg->n_head_kv * (c->k_head + c->v_head);
    const size_t fwd = B * E * f * 5 + B * (size_t)c->q_dim * f * 2 + B * (size_t)c->kv_dim * f * 2 + B * K * 12 +
                       ((size_t)cfg->n_expert + 1) * 4 + rows_k * F * f * 2 + rows_k * E * f; /* forward.c's buffers */
    const size_t own = B * 4 * sizeof(int) + B * K * sizeof(int) + rows_k * E * f + rows_k * widest * 2 +
                       (prompt ? rows_k * widest * f : 0) + (prompt && gemm_mode == GEMM_F16 ? rows_k * widest * 2 : 0) +
                       (prompt ? (size_t)c->tile_rows * widest * f : 0) + B * (size_t)cfg->n_vocab * f;
    const size_t need = wl.bytes + kv + fwd + own + MEM_MARGIN;
    if ((e = cudaSetDevice(c->dev)) != cudaSuccess) return give_up(c, err, "(cudaSetDevice)", e);
    size_t free_b = 0, total_b = 0;
    if ((e = cudaMemGetInfo(&free_b, &total_b)) != cudaSuccess) return give_up(c, err, "(cudaMemGetInfo)", e);
    if (need > free_b) {
        err_set(err, "the model does not fit on GPU %d (%s): it needs %.2f GiB (weights %.2f, KV cache %.2f for --ctx "
                "%d x %d slots, activations %.2f for --batch %d, reserve %.2f) and %.2f GiB of %.2f are free; use "
                "--device cpu, or a smaller --ctx, --slots or --batch", c->dev, prop.name, gib(need), gib(wl.bytes),
                gib(kv), p->n_ctx, p->n_seq, gib(fwd + own), p->n_batch, gib(MEM_MARGIN), gib(free_b), gib(total_b));
        cuda_free(&c->base);
        return NULL;
    }

    if ((e = cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking)) != cudaSuccess)
        return give_up(c, err, "creating a stream", e);
    if (c->bl.lib &&
        (c->bl.create(&c->blas) != CUBLAS_STATUS_SUCCESS || c->bl.set_stream(c->blas, c->st) != CUBLAS_STATUS_SUCCESS)) {
        err_set(err, "GPU %d: cuBLAS (" CUBLAS_LIB ") could not be initialised", c->dev);
        return give_up(c, err, NULL, cudaSuccess);
    }
    if ((e = ck_attention_setup(smem)) != cudaSuccess) return give_up(c, err, "(attention shared memory)", e);

    /* the weights: one allocation, each copy aligned */
    if ((e = cudaMalloc((void **)&c->wpool, wl.bytes ? wl.bytes : 1)) != cudaSuccess)
        return give_up(c, err, "allocating the weights", e);
    qsort(c->wm, (size_t)c->n_wm, sizeof *c->wm, wm_cmp);
    size_t off = 0;
    for (int i = 0; i < c->n_wm; i++) {
        c->wm[i].dev = c->wpool + off;
        if ((e = cudaMemcpy(c->wm[i].dev, c->wm[i].host, c->wm[i].bytes, cudaMemcpyHostToDevice)) != cudaSuccess)
            return give_up(c, err, "copying the weights", e);
        off += (c->wm[i].bytes + W_ALIGN - 1) / W_ALIGN * W_ALIGN;
    }
    for (int i = 1; i < c->n_wm; i++) /* overlapping host ranges would make dev_of ambiguous */
        if ((const uint8_t *)c->wm[i - 1].host + c->wm[i - 1].bytes > (const uint8_t *)c->wm[i].host) {
            err_set(err, "internal error: overlapping weights");
            cuda_free(&c->base);
            return NULL;
        }

    bool good = true;
#define DALLOC(ptr, bytes) dalloc((void **)&(ptr), (bytes), &good)
    DALLOC(c->k_cache, kv / (c->k_head + c->v_head) * c->k_head);
    DALLOC(c->v_cache, kv / (c->k_head + c->v_head) * c->v_head);
    DALLOC(c->inv_freq, (size_t)cfg->head_dim / 2 * f);
    DALLOC(c->d_tok, B * sizeof(int));
    DALLOC(c->d_pos, B * sizeof(int));
    DALLOC(c->d_seq, B * sizeof(int));
    DALLOC(c->d_rows, B * sizeof(int));
    DALLOC(c->inv, B * K * sizeof(int));
    DALLOC(c->gathered, rows_k * E * f);
    DALLOC(c->act, rows_k * widest * 2);
    if (prompt) {
        DALLOC(c->actf, rows_k * widest * f);
        if (gemm_mode == GEMM_F16) DALLOC(c->acth, rows_k * widest * sizeof(__half));
        DALLOC(c->tile, (size_t)c->tile_rows * widest * f);
    }
    DALLOC(c->logits, B * (size_t)cfg->n_vocab * f);
#undef DALLOC
    c->h_pos = (int *)calloc(B, sizeof(int));
    c->h_seq = (int *)calloc(B, sizeof(int));
    c->h_ex = (int *)calloc((size_t)cfg->n_expert + 1, sizeof(int));
    if (!good || !c->h_pos || !c->h_seq || !c->h_ex) {
        err_set(err, "out of GPU or host memory allocating the CUDA context (KV cache %.2f GiB)", gib(kv));
        return give_up(c, err, NULL, cudaSuccess);
    }
    /* a fresh cache reads as zeros, as the CPU's (calloc) */
    if ((e = cudaMemsetAsync(c->k_cache, 0, kv / (c->k_head + c->v_head) * c->k_head, c->st)) != cudaSuccess ||
        (e = cudaMemsetAsync(c->v_cache, 0, kv / (c->k_head + c->v_head) * c->v_head, c->st)) != cudaSuccess)
        return give_up(c, err, "clearing the KV cache", e);
    /* inv_freq[d] = 1 / base^(2d/hd), in f32 as model.py RotaryEmbedding (the CPU backend's) */
    float *h_if = (float *)malloc((size_t)cfg->head_dim / 2 * f);
    if (!h_if) {
        err_set(err, "out of memory");
        return give_up(c, err, NULL, cudaSuccess);
    }
    for (int d = 0; d < cfg->head_dim / 2; d++) h_if[d] = (float)(1.0 / pow((double)cfg->rope_base, (2.0 * d) / cfg->head_dim));
    e = cudaMemcpy(c->inv_freq, h_if, (size_t)cfg->head_dim / 2 * f, cudaMemcpyHostToDevice);
    free(h_if);
    if (e != cudaSuccess) return give_up(c, err, "copying RoPE frequencies", e);
    /* the copies above went through the legacy stream: done before any work on ours */
    if ((e = cudaDeviceSynchronize()) != cudaSuccess) return give_up(c, err, "setting up", e);
    return &c->base;
}
