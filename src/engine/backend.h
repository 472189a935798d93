/* backend.h - the operations the Grok forward pass asks of a backend.
 *
 * forward.c holds the model: the order of operations of a layer, as
 * ../shared/docs/grok-architecture.md writes it. A backend holds the memory
 * and the kernels: the activations and the KV cache live in its memory, the
 * weights are the model's tensors (Tensor views of the file mapping, which a
 * backend may copy elsewhere at creation), and each operation below runs over
 * every token of a batch. forward.c never reads or writes an activation
 * itself: a buffer from `alloc` is backend memory (a device pointer on a GPU),
 * only the token ids, positions and sequence ids (host arrays) and the final
 * logits (written to host memory) cross the interface.
 *
 * The CPU backend (cpu/backend_cpu.c) is the reference; any other backend
 * must give the same results within its arithmetic's tolerance. */
#ifndef GROK_BACKEND_H
#define GROK_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "forward.h"
#include "model.h"

/* What a backend is created with: the model and the cache it keeps. */
typedef struct {
    int n_ctx;          /* KV positions per sequence */
    int n_seq;          /* sequences (server slots) */
    int n_batch;        /* most tokens of one call */
    int n_threads;      /* CPU threads (0 = all cores) */
    uint32_t kv_type_k; /* cached keys: GGML_TYPE_F32, F16, BF16, Q8_0 or Q4_0 (cpu/kv.h) */
    uint32_t kv_type_v; /* cached values: the same choice */
    int gpu;            /* CUDA device index (the CUDA backend) */
} BackendParams;

/* One product out[t, r] = W[row0 + r] . x[t] for r < rows, t < n_tok. */
typedef struct {
    const Tensor *w;    /* (rows of W, n) weight, in its file type */
    int64_t row0, rows; /* the rows of W that are used */
    const float *x;     /* (n_tok, n) activations, n = w->cols, contiguous rows */
    int n_tok;
    float *out;         /* (n_tok, out_stride) */
    int64_t out_stride;
} MatMul;

/* The experts every token was routed to, grouped by expert (route()).
 * Assignment a = t * n_used + k is token t's k-th expert. All arrays are
 * backend memory. */
typedef struct {
    int n_tok, n_used, n_expert;
    int *sel;           /* (n_tok, n_used) chosen experts */
    float *gate;        /* (n_tok, n_used) their router probabilities */
    int *order;         /* (n_tok * n_used) assignments in expert order */
    int *ex_start;      /* (n_expert + 1) where each expert's assignments start in order[] */
} Routing;

/* One product over experts: for the i-th assignment in expert order (token
 * t, expert e), out[i, r] = W[e * expert_rows + row0 + r] . x[.] for r < rows,
 * where x[.] is x[t] (by_token: the token's row) or x[i] (the assignment's
 * own row, e.g. a hidden state of the expert). */
typedef struct {
    const Tensor *w;     /* (n_expert * expert_rows, n) stacked experts */
    int64_t expert_rows; /* rows of one expert in W */
    int64_t row0, rows;  /* the rows of each expert that are used */
    const float *x;      /* (n_tok or n_tok * n_used, n) */
    bool by_token;
    float *out;          /* (n_tok * n_used, out_stride) */
    int64_t out_stride;
} ExpertMatMul;

typedef struct Backend Backend;

struct Backend {
    const char *name; /* "cpu", ... */

    /* ---- memory ---- */
    /* `bytes` of backend memory, zeroed; NULL when out of memory */
    void *(*alloc)(Backend *b, size_t bytes);
    void (*release)(Backend *b, void *p);
    /* bytes of the KV cache (all layers, sequences and positions) */
    size_t (*kv_bytes)(const Backend *b);

    /* ---- the layer's operations, each over n_tok rows ---- */
    /* x[t] = tok_embd[tok[t]] * scale (tok: host array) */
    void (*embed)(Backend *b, const Tensor *tok_embd, const int *tok, int n_tok, float scale, float *x);
    /* y[t] = rmsnorm(x[t]) * w over n values (y may be x; w: the model's (n) f32 weight) */
    void (*rmsnorm)(Backend *b, float *y, const float *x, const float *w, int n_tok, int n, float eps);
    /* y[t] = rmsnorm(y[t]) * w; x[t] += y[t]   (Grok's sandwich norm and residual) */
    void (*add_rmsnorm)(Backend *b, float *x, float *y, const float *w, int n_tok, int n, float eps);
    /* products with quantized weights, all of the list at once (they may share inputs) */
    void (*matmul)(Backend *b, const MatMul *mm, int n_mm);
    /* the same over the routed experts */
    void (*matmul_experts)(Backend *b, const Routing *r, const ExpertMatMul *mm, int n_mm);
    /* NeoX RoPE of q (n_tok, n_head * head_dim) and k (n_tok, n_head_kv * head_dim)
     * at pos[t], then k and v stored in the cache of layer il, sequence seq[t],
     * position pos[t] (pos, seq: host arrays) */
    void (*rope_store)(Backend *b, int il, float *q, float *k, const float *v, const int *pos, const int *seq,
                       int n_tok);
    /* out[t] = per query head h: softmax_j(softcap(q_h . k_j * attn_scale) * temp(pos)) . v_j over the
     * cached positions j <= pos[t] of seq[t], k and v of the head's GQA group; temp is Grok-2's
     * attention temperature (1 for Grok-1) */
    void (*attention)(Backend *b, int il, const float *q, const int *pos, const int *seq, int n_tok, float *out);
    /* routing of the tokens u (n_tok, n_embd): P = softmax(softcap(router . u)), the n_used
     * most probable experts (ties to the lower index) with P as their gates, grouped by expert */
    void (*route)(Backend *b, const float *router, const float *u, int n_tok, Routing *r);
    /* g = gelu_tanh(g) * u over n values */
    void (*geglu)(Backend *b, float *g, const float *u, int64_t n);
    /* out[t] = sum_k gate[t, k] * down[i(t, k)] (down in expert order, n values a row) */
    void (*combine)(Backend *b, const Routing *r, const float *down, int n, float *out);
    /* y = (y + x) * s over n values (Grok-2's (moe + mlp) / sqrt(2)) */
    void (*add_scale)(Backend *b, float *y, const float *x, float s, int64_t n);
    /* keeps rows rows[0..n) of x (n, width), in that order, as rows 0..n (rows: host array) */
    void (*select_rows)(Backend *b, float *x, const int *rows, int n, int width);
    /* logits[t] = softcap(W . x[t] * scale), written to host memory (n_tok, W->rows) */
    void (*logits)(Backend *b, const Tensor *w, const float *x, int n_tok, float scale, float cap, float *logits);

    /* ---- the KV cache ---- */
    /* moves positions [p0, p1) of a sequence by delta, re-rotating the keys' RoPE */
    void (*kv_shift)(Backend *b, int seq, int p0, int p1, int delta);
    /* bytes of one position (all layers' keys and values, in the cache's types) */
    size_t (*kv_pos_bytes)(const Backend *b);
    /* positions [p0, p1) of a sequence to / from host memory: for each layer and key/value head,
     * its key rows, then its value rows */
    void (*kv_read)(Backend *b, int seq, int p0, int p1, void *buf);
    void (*kv_write)(Backend *b, int seq, int p0, int p1, const void *buf);

    int (*n_threads)(const Backend *b);
    /* NULL for a backend whose operations cannot fail once it exists (the
     * CPU's); otherwise -1 with err set once an operation has failed (a GPU's
     * failed launch): the operations are void, so forward.c asks after each
     * chunk of tokens and after the KV cache calls, and the backend does no
     * more work once failed */
    int (*check)(Backend *b, Error *err);
    void (*free)(Backend *b);
};

/* The CPU backend (cpu/backend_cpu.c): NULL with err set on failure. */
Backend *backend_cpu_new(const Model *m, const BackendParams *p, Error *err);

/* The CUDA backend (cuda/backend_cuda.cu, built with -DGROK_CUDA=ON|AUTO
 * when nvcc is found; without it, device.c's stub says so): weights copied
 * to GPU gpu in their file layout at creation, after checking that
 * everything fits. NULL with err set on failure. */
Backend *backend_cuda_new(const Model *m, const BackendParams *p, Error *err);

#endif
