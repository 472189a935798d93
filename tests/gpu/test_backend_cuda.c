/* test_backend_cuda.c - the CUDA backend against the CPU backend, on a GPU
 * machine (tests/gpu/run.sh runs it; without a GPU it exits 77, skipped).
 *
 *   test_backend_cuda ops
 *       every Backend operation on both backends with the same inputs, for
 *       every weight type the CUDA kernels read (in-memory models, random
 *       weights) and KV types f32 / f16 / bf16: products NMSE <= 1e-6 (both
 *       multiply the same 8-bit activations), routing indices exactly equal,
 *       the other operations NMSE <= 1e-6 too; decode (matrix x vector) and
 *       prompt (cuBLAS) paths both.
 *   test_backend_cuda ops-cpu
 *       the same with a second CPU backend in the GPU's place (no GPU
 *       needed): a check of this program itself, e.g. under ASan.
 *   test_backend_cuda compare A.f32 B.f32 N_VOCAB [NAME [REL]]
 *       logits files (grok eval): the same argmax on every row and
 *       max_row(max|a - b| / max|b|) <= REL (1e-4: float weights; with
 *       8-bit activations a different summation order upstream can move an
 *       activation across a rounding boundary, so run.sh allows 1e-3 there).
 *   test_backend_cuda batching MODEL.gguf [STREAMS [REL]]
 *       continuous batching: STREAMS (16) sequences prefilled in uneven
 *       chunks and decoded together, joined and left at different steps, on
 *       both backends; every step's logits compared as above (REL 1e-3).
 *   test_backend_cuda streams MODEL.gguf N [STEPS]
 *       decode speed with N streams on the GPU (tokens/s over all streams).
 *   test_backend_cuda bandwidth
 *       the GPU's memory bandwidth (a device-to-device copy).
 * Prints one line per check; exit 0 when all pass, 1 otherwise. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "forward.h"
#include "model.h"
#include "quant.h"

#define NMSE_MAX 1e-6 /* issue 10 part 7: each operation vs the CPU backend */
#define REL_MAX 1e-4  /* end-to-end logits */

static int n_fail, n_pass;
/* ops-cpu: the CPU backend against a second CPU backend, the GPU's copies
 * plain host memory: a check of this program on a machine without a GPU */
static bool self_test;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "PASS" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    ok ? n_pass++ : n_fail++;
}

static uint64_t rng = 0x243f6a8885a308d3ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static double nmse(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)a[i] - ref[i];
        num += d * d, den += (double)ref[i] * ref[i];
    }
    if (!isfinite(num)) return INFINITY;
    return den > 0 ? num / den : num;
}

static void die_cuda(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return;
    fprintf(stderr, "test_backend_cuda: %s: %s\n", what, cudaGetErrorString(e));
    exit(1);
}

/* ---- a model in memory ------------------------------------------------------- */

typedef struct {
    Model m;
    void *blobs[64];
    int n_blobs;
} MemModel;

static void *blob(MemModel *mm, size_t bytes) {
    void *p = calloc(1, bytes);
    if (!p || mm->n_blobs == 64) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return mm->blobs[mm->n_blobs++] = p;
}

static Tensor tensor(MemModel *mm, uint32_t type, int64_t rows, int64_t cols) {
    Tensor t = {NULL, type, rows, cols, type_row_size(type, cols)};
    uint8_t *d = blob(mm, (size_t)rows * t.row_bytes);
    float *row = malloc((size_t)cols * sizeof(float));
    if (!row) exit(1);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) row[i] = frand() * 0.5f;
        if (type == GGML_TYPE_F32) memcpy(d + (size_t)r * t.row_bytes, row, (size_t)cols * sizeof(float));
        else if (quantize_row(type, row, d + (size_t)r * t.row_bytes, cols)) {
            fprintf(stderr, "cannot make a %s tensor\n", type_info(type)->name);
            exit(1);
        }
    }
    free(row);
    t.data = d;
    return t;
}

static float *vec(MemModel *mm, size_t n, float base) {
    float *v = blob(mm, n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = base + 0.25f * frand();
    return v;
}

/* Grok-2-like (dense MLP beside the MoE, every cap, a short temperature
 * length so that it applies), every matrix of one type. */
static void make_model(MemModel *mm, uint32_t type) {
    memset(mm, 0, sizeof *mm);
    ModelConfig *c = &mm->m.cfg;
    *c = (ModelConfig){.n_vocab = 512, .n_embd = 512, .n_layer = 1, .n_head = 8, .n_head_kv = 2, .head_dim = 64,
                       .n_ff = 768, .n_ff_dense = 512, .n_expert = 8, .n_expert_used = 2, .n_ctx_train = 512,
                       .eps = 1e-5f, .rope_base = 10000.0f, .embedding_scale = 2.0f, .logit_scale = 0.5f,
                       .attn_scale = 0.125f, .attn_softcap = 30.0f, .router_softcap = 30.0f, .final_softcap = 50.0f,
                       .attn_temp_len = 16};
    const int E = c->n_embd, Q = c->n_head * c->head_dim, KV = c->n_head_kv * c->head_dim;
    mm->m.tok_embd = tensor(mm, type, c->n_vocab, E);
    mm->m.output = tensor(mm, type, c->n_vocab, E);
    mm->m.output_norm = vec(mm, (size_t)E, 1.0f);
    Layer *L = blob(mm, sizeof(Layer));
    mm->m.layers = L;
    L->attn_norm = vec(mm, (size_t)E, 1.0f);
    L->wqkv = tensor(mm, type, Q + 2 * KV, E);
    L->wo = tensor(mm, type, E, Q);
    L->attn_out_norm = vec(mm, (size_t)E, 1.0f);
    L->ffn_norm = vec(mm, (size_t)E, 1.0f);
    L->router = vec(mm, (size_t)c->n_expert * E, 0.0f);
    L->gate_exps = tensor(mm, type, (int64_t)c->n_expert * c->n_ff, E);
    L->up_exps = tensor(mm, type, (int64_t)c->n_expert * c->n_ff, E);
    L->down_exps = tensor(mm, type, (int64_t)c->n_expert * E, c->n_ff);
    L->ffn_gate = tensor(mm, type, c->n_ff_dense, E);
    L->ffn_up = tensor(mm, type, c->n_ff_dense, E);
    L->ffn_down = tensor(mm, type, E, c->n_ff_dense);
    L->out_norm = vec(mm, (size_t)E, 1.0f);
}

static void free_model(MemModel *mm) {
    for (int i = 0; i < mm->n_blobs; i++) free(mm->blobs[i]);
}

/* ---- buffers on both backends ------------------------------------------------- */

typedef struct {
    Backend *cb, *gb;
    void *c, *g;
    size_t bytes;
} Buf2;

static Buf2 buf2(Backend *cb, Backend *gb, size_t bytes) {
    Buf2 b = {cb, gb, cb->alloc(cb, bytes), gb->alloc(gb, bytes), bytes};
    if (!b.c || !b.g) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return b;
}

static void buf2_free(Buf2 *b) {
    b->cb->release(b->cb, b->c);
    b->gb->release(b->gb, b->g);
}

/* The GPU copy written from the host. The backend works on a stream of its
 * own that does not wait for the legacy stream's copies: everything is
 * synchronised on both sides of the copy. */
static void to_gpu(Buf2 *b) {
    if (self_test) {
        memcpy(b->g, b->c, b->bytes);
        return;
    }
    die_cuda(cudaDeviceSynchronize(), "a kernel");
    die_cuda(cudaMemcpy(b->g, b->c, b->bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    die_cuda(cudaDeviceSynchronize(), "cudaMemcpy");
}

static void buf2_rand(Buf2 *b, float scale) {
    float *c = b->c;
    for (size_t i = 0; i < b->bytes / sizeof(float); i++) c[i] = frand() * scale;
    to_gpu(b);
}

static void buf2_set(Buf2 *b, const void *host) {
    if (host != b->c) memcpy(b->c, host, b->bytes);
    to_gpu(b);
}

/* the GPU's copy, to host memory the caller frees */
static void *buf2_get(const Buf2 *b) {
    void *h = malloc(b->bytes);
    if (!h) exit(1);
    if (self_test) return memcpy(h, b->g, b->bytes);
    die_cuda(cudaDeviceSynchronize(), "a kernel");
    die_cuda(cudaMemcpy(h, b->g, b->bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
    return h;
}

/* compares n floats of the two copies (from float offset off) */
static void cmp_f(const Buf2 *b, size_t off, size_t n, const char *what, const char *type, int nt) {
    float *g = buf2_get(b);
    const double e = nmse(g + off, (const float *)b->c + off, n);
    check(e <= NMSE_MAX, "%-14s %-5s n_tok %-3d nmse %.3g", what, type, nt, e);
    free(g);
}

static bool backend_ok(Backend *gb, const char *what) {
    Error err = {{0}};
    if (gb->check && gb->check(gb, &err)) {
        check(false, "%s: the CUDA backend failed: %s", what, err.msg);
        return false;
    }
    return true;
}

/* ---- the operations ------------------------------------------------------------- */

static void test_type(uint32_t type, uint32_t kv_type) {
    MemModel mm;
    make_model(&mm, type);
    const Model *m = &mm.m;
    const ModelConfig *cfg = &m->cfg;
    const Layer *L = &m->layers[0];
    const char *tn = type_info(type)->name;
    const int E = cfg->n_embd, Q = cfg->n_head * cfg->head_dim, KV = cfg->n_head_kv * cfg->head_dim;
    const int F = cfg->n_ff, K = cfg->n_expert_used, X = cfg->n_expert, B = 48;
    BackendParams bp = {128, 3, B, 2, kv_type, kv_type, 0};
    Error err = {{0}};
    Backend *cb = backend_cpu_new(m, &bp, &err);
    Backend *gb = !cb ? NULL : self_test ? backend_cpu_new(m, &bp, &err) : backend_cuda_new(m, &bp, &err);
    if (!cb || !gb) {
        check(false, "%s: creating the backends: %s", tn, err.msg);
        if (cb) cb->free(cb);
        free_model(&mm);
        return;
    }
    Buf2 x = buf2(cb, gb, (size_t)B * E * 4), y = buf2(cb, gb, (size_t)B * E * 4);
    Buf2 q = buf2(cb, gb, (size_t)B * Q * 4), k = buf2(cb, gb, (size_t)B * KV * 4), v = buf2(cb, gb, (size_t)B * KV * 4);
    Buf2 att = buf2(cb, gb, (size_t)B * Q * 4);
    const int W = Q + KV + cfg->n_ff_dense / 2; /* the products' output row: q, k, half of a dense up */
    Buf2 out = buf2(cb, gb, (size_t)B * W * 4);
    Buf2 hg = buf2(cb, gb, (size_t)B * K * F * 4), hu = buf2(cb, gb, (size_t)B * K * F * 4);
    Buf2 down = buf2(cb, gb, (size_t)B * K * E * 4), moe = buf2(cb, gb, (size_t)B * E * 4);
    Buf2 sel = buf2(cb, gb, (size_t)B * K * 4), gate = buf2(cb, gb, (size_t)B * K * 4);
    Buf2 order = buf2(cb, gb, (size_t)B * K * 4), exs = buf2(cb, gb, (size_t)(X + 1) * 4);
    int tok[48], pos[48], seq[48], rows[48];

    /* embed */
    for (int t = 0; t < 7; t++) tok[t] = (t * 97 + 13) % cfg->n_vocab;
    cb->embed(cb, &m->tok_embd, tok, 7, cfg->embedding_scale, x.c);
    gb->embed(gb, &m->tok_embd, tok, 7, cfg->embedding_scale, x.g);
    cmp_f(&x, 0, (size_t)7 * E, "embed", tn, 7);

    /* norms */
    buf2_rand(&x, 2.0f), buf2_rand(&y, 1.0f);
    cb->rmsnorm(cb, y.c, x.c, L->attn_norm, 5, E, cfg->eps);
    gb->rmsnorm(gb, y.g, x.g, L->attn_norm, 5, E, cfg->eps);
    cmp_f(&y, 0, (size_t)5 * E, "rmsnorm", tn, 5);
    cb->add_rmsnorm(cb, x.c, y.c, L->out_norm, 5, E, cfg->eps);
    gb->add_rmsnorm(gb, x.g, y.g, L->out_norm, 5, E, cfg->eps);
    cmp_f(&x, 0, (size_t)5 * E, "add_rmsnorm x", tn, 5);
    cmp_f(&y, 0, (size_t)5 * E, "add_rmsnorm y", tn, 5);

    /* products: decode sizes and prompt sizes, row ranges of a fused weight */
    static const int NTS[] = {1, 3, 8, 9, 16, 17, 48};
    for (size_t i = 0; i < sizeof NTS / sizeof NTS[0]; i++) {
        const int nt = NTS[i];
        buf2_rand(&x, 1.0f);
        MatMul mc[3] = {{&L->wqkv, 0, Q, x.c, nt, out.c, W},
                        {&L->wqkv, Q, KV, x.c, nt, (float *)out.c + Q, W},
                        {&L->ffn_up, 0, cfg->n_ff_dense / 2, x.c, nt, (float *)out.c + Q + KV, W}};
        MatMul mg[3] = {{&L->wqkv, 0, Q, x.g, nt, out.g, W},
                        {&L->wqkv, Q, KV, x.g, nt, (float *)out.g + Q, W},
                        {&L->ffn_up, 0, cfg->n_ff_dense / 2, x.g, nt, (float *)out.g + Q + KV, W}};
        cb->matmul(cb, mc, 3);
        gb->matmul(gb, mg, 3);
        if (!backend_ok(gb, "matmul")) break;
        float *g = buf2_get(&out);
        double e = 0;
        for (int t = 0; t < nt; t++) { /* every value of the row is written */
            const double et = nmse(g + (size_t)t * W, (const float *)out.c + (size_t)t * W, (size_t)W);
            e = et > e ? et : e;
        }
        check(e <= NMSE_MAX, "%-14s %-5s n_tok %-3d nmse %.3g", "matmul", tn, nt, e);
        free(g);
    }

    /* routing, the experts, combine */
    static const int NTR[] = {1, 5, 16, 48};
    for (size_t i = 0; i < sizeof NTR / sizeof NTR[0]; i++) {
        const int nt = NTR[i];
        buf2_rand(&x, 1.0f);
        Routing rc = {0, 0, 0, sel.c, gate.c, order.c, exs.c}, rg = {0, 0, 0, sel.g, gate.g, order.g, exs.g};
        cb->route(cb, L->router, x.c, nt, &rc);
        gb->route(gb, L->router, x.g, nt, &rg);
        if (!backend_ok(gb, "route")) break;
        int *gs = buf2_get(&sel), *go = buf2_get(&order), *ge = buf2_get(&exs);
        const bool same = !memcmp(gs, sel.c, (size_t)nt * K * 4) && !memcmp(go, order.c, (size_t)nt * K * 4) &&
                          !memcmp(ge, exs.c, (size_t)(X + 1) * 4);
        check(same, "%-14s %-5s n_tok %-3d experts chosen and grouped identically", "route", tn, nt);
        free(gs), free(go), free(ge);
        cmp_f(&gate, 0, (size_t)nt * K, "route gates", tn, nt);
        if (!same) continue; /* the products below would compare different experts */
        const ExpertMatMul guc[2] = {{&L->gate_exps, F, 0, F, x.c, true, hg.c, F}, {&L->up_exps, F, 0, F, x.c, true, hu.c, F}};
        const ExpertMatMul gug[2] = {{&L->gate_exps, F, 0, F, x.g, true, hg.g, F}, {&L->up_exps, F, 0, F, x.g, true, hu.g, F}};
        cb->matmul_experts(cb, &rc, guc, 2);
        gb->matmul_experts(gb, &rg, gug, 2);
        cmp_f(&hg, 0, (size_t)nt * K * F, "experts gate", tn, nt);
        cmp_f(&hu, 0, (size_t)nt * K * F, "experts up", tn, nt);
        cb->geglu(cb, hg.c, hu.c, (int64_t)nt * K * F);
        gb->geglu(gb, hg.g, hu.g, (int64_t)nt * K * F);
        cmp_f(&hg, 0, (size_t)nt * K * F, "geglu", tn, nt);
        buf2_set(&hg, hg.c); /* the same inputs for what follows */
        const ExpertMatMul dc = {&L->down_exps, E, 0, E, hg.c, false, down.c, E};
        const ExpertMatMul dg = {&L->down_exps, E, 0, E, hg.g, false, down.g, E};
        cb->matmul_experts(cb, &rc, &dc, 1);
        gb->matmul_experts(gb, &rg, &dg, 1);
        cmp_f(&down, 0, (size_t)nt * K * E, "experts down", tn, nt);
        buf2_set(&down, down.c);
        cb->combine(cb, &rc, down.c, E, moe.c);
        gb->combine(gb, &rg, down.g, E, moe.g);
        cmp_f(&moe, 0, (size_t)nt * E, "combine", tn, nt);
        buf2_set(&moe, moe.c);
        buf2_rand(&y, 1.0f);
        cb->add_scale(cb, moe.c, y.c, 0.70710678f, (int64_t)nt * E);
        gb->add_scale(gb, moe.g, y.g, 0.70710678f, (int64_t)nt * E);
        cmp_f(&moe, 0, (size_t)nt * E, "add_scale", tn, nt);
    }

    /* select_rows and logits */
    buf2_rand(&x, 1.0f);
    for (int i = 0; i < 5; i++) rows[i] = 3 * i + 1;
    cb->select_rows(cb, x.c, rows, 5, E);
    gb->select_rows(gb, x.g, rows, 5, E);
    cmp_f(&x, 0, (size_t)5 * E, "select_rows", tn, 5);
    for (int nt = 1; nt <= 20; nt += 19) {
        buf2_set(&x, x.c);
        float *lc = malloc((size_t)nt * cfg->n_vocab * 4), *lg = malloc((size_t)nt * cfg->n_vocab * 4);
        if (!lc || !lg) exit(1);
        cb->logits(cb, &m->output, x.c, nt, cfg->logit_scale, cfg->final_softcap, lc);
        gb->logits(gb, &m->output, x.g, nt, cfg->logit_scale, cfg->final_softcap, lg);
        if (backend_ok(gb, "logits")) {
            const double e = nmse(lg, lc, (size_t)nt * cfg->n_vocab);
            check(e <= NMSE_MAX, "%-14s %-5s n_tok %-3d nmse %.3g", "logits", tn, nt, e);
        }
        free(lc), free(lg);
    }

    /* RoPE, the cache, attention: sequence 0 as one prompt of 40 (past the
     * temperature length), sequence 1 token by token, sequence 2 in two
     * pieces; then a batch of all three */
    const char *kn = type_info(kv_type)->name;
    struct {
        int seq, p0, n;
    } steps[] = {{0, 0, 40}, {1, 0, 1}, {1, 1, 1}, {1, 2, 1}, {2, 0, 6}, {2, 6, 5}};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        const int nt = steps[s].n;
        for (int t = 0; t < nt; t++) pos[t] = steps[s].p0 + t, seq[t] = steps[s].seq;
        buf2_rand(&q, 1.0f), buf2_rand(&k, 1.0f), buf2_rand(&v, 1.0f);
        cb->rope_store(cb, 0, q.c, k.c, v.c, pos, seq, nt);
        gb->rope_store(gb, 0, q.g, k.g, v.g, pos, seq, nt);
        cmp_f(&q, 0, (size_t)nt * Q, "rope q", kn, nt);
        cb->attention(cb, 0, q.c, pos, seq, nt, att.c);
        gb->attention(gb, 0, q.g, pos, seq, nt, att.g);
        cmp_f(&att, 0, (size_t)nt * Q, "attention", kn, nt);
        buf2_set(&q, q.c);
    }
    const size_t pb = cb->kv_pos_bytes(cb);
    check(pb == gb->kv_pos_bytes(gb), "kv_pos_bytes %-5s cpu %zu cuda %zu", kn, pb, gb->kv_pos_bytes(gb));
    uint8_t *kc = malloc(40 * pb), *kg = malloc(40 * pb);
    float *fc = malloc(40 * pb / 2 * 4 + 64), *fg = malloc(40 * pb / 2 * 4 + 64);
    if (!kc || !kg || !fc || !fg) exit(1);
    const size_t nval = 40 * pb / (kv_type == GGML_TYPE_F32 ? 4 : 2);
    /* the cache as floats: f32 as it is, f16 / bf16 expanded */
#define KV_FLOATS(src, dst)                                                                       \
    for (size_t i = 0; i < nval; i++) {                                                          \
        if (kv_type == GGML_TYPE_F32) memcpy(&(dst)[i], (src) + 4 * i, 4);                       \
        else {                                                                                    \
            uint16_t h;                                                                           \
            memcpy(&h, (src) + 2 * i, 2);                                                         \
            (dst)[i] = kv_type == GGML_TYPE_F16 ? fp16_to_f32(h) : bf16_to_f32(h);                \
        }                                                                                         \
    }
    cb->kv_read(cb, 0, 0, 40, kc);
    gb->kv_read(gb, 0, 0, 40, kg);
    KV_FLOATS(kc, fc);
    KV_FLOATS(kg, fg);
    check(nmse(fg, fc, nval) <= NMSE_MAX, "%-14s %-5s 40 positions nmse %.3g", "kv_read", kn, nmse(fg, fc, nval));
    cb->kv_shift(cb, 0, 10, 40, -7);
    gb->kv_shift(gb, 0, 10, 40, -7);
    if (backend_ok(gb, "kv_shift")) {
        cb->kv_read(cb, 0, 0, 40, kc);
        gb->kv_read(gb, 0, 0, 40, kg);
        KV_FLOATS(kc, fc);
        KV_FLOATS(kg, fg);
        check(nmse(fg, fc, nval) <= NMSE_MAX, "%-14s %-5s 40 -> 33 positions nmse %.3g", "kv_shift", kn,
              nmse(fg, fc, nval));
    }
    /* kv_write: the CPU's bytes into the GPU's sequence 2 come back as written */
    cb->kv_read(cb, 0, 0, 33, kc);
    gb->kv_write(gb, 2, 0, 33, kc);
    gb->kv_read(gb, 2, 0, 33, kg);
    check(backend_ok(gb, "kv_write") && !memcmp(kc, kg, 33 * pb), "%-14s %-5s 33 positions byte for byte", "kv_write",
          kn);
    /* a batch over all three sequences after the shift */
    const int bt[][2] = {{0, 33}, {1, 3}, {2, 33}, {2, 34}};
    for (int t = 0; t < 4; t++) seq[t] = bt[t][0], pos[t] = bt[t][1];
    cb->kv_write(cb, 2, 0, 33, kc);
    buf2_rand(&q, 1.0f), buf2_rand(&k, 1.0f), buf2_rand(&v, 1.0f);
    cb->rope_store(cb, 0, q.c, k.c, v.c, pos, seq, 4);
    gb->rope_store(gb, 0, q.g, k.g, v.g, pos, seq, 4);
    buf2_set(&q, q.c);
    cb->attention(cb, 0, q.c, pos, seq, 4, att.c);
    gb->attention(gb, 0, q.g, pos, seq, 4, att.g);
    cmp_f(&att, 0, (size_t)4 * Q, "attention mix", kn, 4);
    backend_ok(gb, "the last operations");
    free(kc), free(kg), free(fc), free(fg);

    Buf2 *all[] = {&x, &y, &q, &k, &v, &att, &out, &hg, &hu, &down, &moe, &sel, &gate, &order, &exs};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) buf2_free(all[i]);
    gb->free(gb);
    cb->free(cb);
    free_model(&mm);
}

static int cmd_ops(void) {
    static const uint32_t TYPES[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
                                     GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
                                     GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    static const uint32_t KVT[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16};
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) test_type(TYPES[i], KVT[i % 3]);
    return 0;
}

/* ---- logits files and whole models ------------------------------------------------ */

/* a (n_rows, n_vocab) against ref: argmax and the largest row-relative difference */
static double rel_max = REL_MAX;

static bool cmp_logits(const float *a, const float *ref, size_t n_rows, int n_vocab, const char *what) {
    int bad_argmax = 0;
    double worst = 0;
    for (size_t r = 0; r < n_rows; r++) {
        const float *x = a + r * n_vocab, *y = ref + r * n_vocab;
        int ax = 0, ay = 0;
        double mx = 0, md = 0;
        for (int i = 0; i < n_vocab; i++) {
            if (x[i] > x[ax]) ax = i;
            if (y[i] > y[ay]) ay = i;
            mx = fabs(y[i]) > mx ? fabs(y[i]) : mx;
            const double d = fabs((double)x[i] - y[i]);
            md = d > md || isnan(d) ? d : md;
        }
        bad_argmax += ax != ay;
        const double rel = mx > 0 ? md / mx : md;
        worst = rel > worst || isnan(rel) ? rel : worst;
    }
    const bool ok = bad_argmax == 0 && worst <= rel_max;
    check(ok, "%s: %zu rows, argmax differs on %d, max rel %.3g (<= %g)", what, n_rows, bad_argmax, worst, rel_max);
    return ok;
}

static float *read_f32(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *v = malloc(sz > 0 ? (size_t)sz : 1);
    if (v && sz > 0 && fread(v, 1, (size_t)sz, f) != (size_t)sz) free(v), v = NULL;
    fclose(f);
    *n = sz > 0 ? (size_t)sz / 4 : 0;
    return v;
}

static int cmd_compare(const char *a, const char *b, int n_vocab, const char *name) {
    size_t na, nb;
    float *x = read_f32(a, &na), *y = read_f32(b, &nb);
    if (!x || !y || na != nb || na == 0 || n_vocab <= 0 || na % (size_t)n_vocab) {
        check(false, "%s: logits files missing or of different sizes (%s, %s)", name, a, b);
        return 1;
    }
    cmp_logits(x, y, na / (size_t)n_vocab, n_vocab, name);
    free(x), free(y);
    return 0;
}

/* Continuous batching: streams join (prefill in chunks), decode together,
 * some finish early; the same batches on both devices. */
static int cmd_batching(const char *path, int streams) {
    Error err = {{0}};
    Model *m = model_load(path, &err);
    if (!m) {
        check(false, "batching: %s", err.msg);
        return 1;
    }
    const int V = m->cfg.n_vocab, n_ctx = 256;
    ContextParams cp = {n_ctx, streams, 64, 0, GGML_TYPE_F16, GGML_TYPE_F16, GROK_DEVICE_CPU, 0, NULL};
    Context *cc = context_new(m, &cp, &err);
    cp.device = GROK_DEVICE_CUDA;
    Context *gc = cc ? context_new(m, &cp, &err) : NULL;
    if (!cc || !gc) {
        check(false, "batching: %s", err.msg);
        context_free(cc);
        model_free(m);
        return 1;
    }
    int *tok = malloc(512 * sizeof(int)), *pos = malloc(512 * sizeof(int)), *seq = malloc(512 * sizeof(int));
    int *len = calloc((size_t)streams, sizeof(int));
    float *lc = malloc((size_t)512 * V * 4), *lg = malloc((size_t)512 * V * 4);
    if (!tok || !pos || !seq || !len || !lc || !lg) exit(1);
    bool all_ok = true;
    for (int step = 0; step < 24 && all_ok; step++) {
        int n = 0;
        for (int s = 0; s < streams; s++) {
            if (s > step * 2 || len[s] >= 120 + s) continue; /* joins at step s/2, leaves after 120+s */
            const int add = len[s] == 0 ? 5 + (s * 7) % 29 : 1; /* prompt chunk, then one token a step */
            for (int i = 0; i < add && n < 512; i++, n++)
                tok[n] = 1 + (s * 131 + len[s] * 17 + i) % (V - 1), pos[n] = len[s] + i, seq[n] = s;
            len[s] += add;
        }
        if (n == 0) break;
        Batch b = {n, tok, pos, seq, NULL};
        if (forward(cc, &b, lc, &err) || forward(gc, &b, lg, &err)) {
            check(false, "batching step %d: %s", step, err.msg);
            all_ok = false;
            break;
        }
        char what[96];
        snprintf(what, sizeof what, "batching %d streams, step %d (%d tokens)", streams, step, n);
        all_ok = cmp_logits(lg, lc, (size_t)n, V, what);
    }
    free(tok), free(pos), free(seq), free(len), free(lc), free(lg);
    context_free(cc);
    context_free(gc);
    model_free(m);
    return 0;
}

/* Decode speed with n streams: a 32-token prompt each, then steps of one
 * token per stream. */
static int cmd_streams(const char *path, int n, int steps) {
    Error err = {{0}};
    Model *m = model_load(path, &err);
    if (!m) {
        fprintf(stderr, "streams: %s\n", err.msg);
        return 1;
    }
    const int V = m->cfg.n_vocab;
    ContextParams cp = {64 + steps, n, 512, 0, GGML_TYPE_F16, GGML_TYPE_F16, GROK_DEVICE_CUDA, 0, NULL};
    Context *c = context_new(m, &cp, &err);
    int *tok = malloc((size_t)n * 32 * sizeof(int)), *pos = malloc((size_t)n * 32 * sizeof(int));
    int *seq = malloc((size_t)n * 32 * sizeof(int));
    bool *want = calloc((size_t)n * 32, sizeof(bool));
    float *lg = malloc((size_t)n * V * 4);
    int rc = 1;
    if (!c || !tok || !pos || !seq || !want || !lg) {
        fprintf(stderr, "streams: %s\n", c ? "out of memory" : err.msg);
        goto out;
    }
    for (int i = 0; i < n * 32; i++) tok[i] = 1 + (i * 7919) % (V - 1), pos[i] = i % 32, seq[i] = i / 32, want[i] = i % 32 == 31;
    Batch pb = {n * 32, tok, pos, seq, want};
    if (forward(c, &pb, lg, &err)) {
        fprintf(stderr, "streams: %s\n", err.msg);
        goto out;
    }
    double t0 = time_now();
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < n; i++) tok[i] = 1 + (s * 31 + i) % (V - 1), pos[i] = 32 + s, seq[i] = i;
        Batch b = {n, tok, pos, seq, NULL};
        if (forward(c, &b, lg, &err)) {
            fprintf(stderr, "streams: %s\n", err.msg);
            goto out;
        }
    }
    const double dt = time_now() - t0;
    printf("decode %d streams: %d steps in %.3f s: %.1f tokens/s over all streams, %.2f ms a step\n", n, steps, dt,
           n * steps / dt, 1e3 * dt / steps);
    rc = 0;
out:
    free(tok), free(pos), free(seq), free(want), free(lg);
    context_free(c);
    model_free(m);
    return rc;
}

/* The GPU's memory bandwidth: device-to-device copies of 1 GiB, bytes read
 * plus bytes written over the time (the best of 10). */
static int cmd_bandwidth(void) {
    const size_t bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0, e1;
    die_cuda(cudaMalloc(&a, bytes), "cudaMalloc");
    die_cuda(cudaMalloc(&b, bytes), "cudaMalloc");
    die_cuda(cudaMemset(a, 1, bytes), "cudaMemset");
    die_cuda(cudaEventCreate(&e0), "cudaEventCreate");
    die_cuda(cudaEventCreate(&e1), "cudaEventCreate");
    float best = 1e30f;
    for (int i = 0; i < 10; i++) {
        die_cuda(cudaEventRecord(e0, 0), "cudaEventRecord");
        die_cuda(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0), "cudaMemcpy");
        die_cuda(cudaEventRecord(e1, 0), "cudaEventRecord");
        die_cuda(cudaEventSynchronize(e1), "cudaEventSynchronize");
        float ms;
        die_cuda(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
        best = ms < best ? ms : best;
    }
    printf("bandwidth: %.1f GB/s (device-to-device copy of 1 GiB, read + written, best of 10)\n",
           2.0 * bytes / (best * 1e-3) / 1e9);
    cudaFree(a), cudaFree(b);
    return 0;
}

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "ops";
    if (!strcmp(cmd, "ops-cpu")) {
        self_test = true;
        cmd_ops();
    } else if (!strcmp(cmd, "compare")) {
        if (argc < 5) return fprintf(stderr, "usage: test_backend_cuda compare A.f32 B.f32 N_VOCAB [NAME [REL]]\n"), 2;
        if (argc > 6) rel_max = atof(argv[6]);
        cmd_compare(argv[2], argv[3], atoi(argv[4]), argc > 5 ? argv[5] : argv[2]);
    } else {
        Error err = {{0}};
        if (cuda_device_count(&err) <= 0) {
            printf("SKIP no GPU: %s\n", err.msg);
            return 77;
        }
        if (!strcmp(cmd, "ops")) cmd_ops();
        else if (!strcmp(cmd, "bandwidth")) return cmd_bandwidth();
        else if (!strcmp(cmd, "batching") && argc > 2) {
            rel_max = argc > 4 ? atof(argv[4]) : 1e-3; /* run.sh's model has 8-bit activations (see compare) */
            cmd_batching(argv[2], argc > 3 ? atoi(argv[3]) : 16);
        }
        else if (!strcmp(cmd, "streams") && argc > 3) return cmd_streams(argv[2], atoi(argv[3]), argc > 4 ? atoi(argv[4]) : 64);
        else return fprintf(stderr, "usage: test_backend_cuda ops | compare A B N_VOCAB | batching MODEL [N [REL]] | streams MODEL N [STEPS] | bandwidth\n"), 2;
    }
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
