/* forward.c - the Grok forward pass (../shared/docs/grok-architecture.md A5,
 * B3). One layer, for every token of the batch:
 *
 *   u = rmsnorm(x) * attn_norm
 *   q, k, v = Wq u, Wk u, Wv u;  q, k = rope_neox(q, k, pos)
 *   s_j = softcap(q . k_j * attn_scale)          (30 * tanh(s / 30))
 *   o = softmax(s) . V;  x += rmsnorm(Wo o) * attn_out_norm
 *   u = rmsnorm(x) * ffn_norm
 *   P = softmax(router u) over all experts;  top-k experts by P
 *   m = sum_e P[e] * Wdown_e(gelu_tanh(Wgate_e u) * Wup_e u)   (no renormalising)
 *   [Grok-2: m = (m + dense_mlp(u)) / sqrt(2)]
 *   x += rmsnorm(m) * out_norm
 *
 * then logits = (Wout . rmsnorm(x) * output_norm) * logit_scale. The math
 * stays in this file; the matrix kernels are in quant.c. */
#include "forward.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "quant.h"
#include "threadpool.h"

#define DEFAULT_CTX_CAP 4096   /* default context: min(model's, this) */
#define DEFAULT_BATCH 512
#define GROK_MAX_GROUP 64      /* most query heads per key/value head */
#define MATMUL_CHUNK_MIN 16    /* rows per work item handed to a thread: at least, */
#define MATMUL_CHUNK_MAX 256   /* at most; ~8 items per thread in between (fewer
                                  calls: each prepares the activations anew) */
#define MATMUL_CHUNK_MAX_PROMPT 2048 /* with many tokens (the prompt path) a call
                                  prepares a panel of every token's activations, so
                                  items are larger: ~4 per thread, up to this */
#define MATMUL_PROMPT_TOKENS 16 /* from this many tokens a product takes quant.c's
                                  prompt path (DEC_MAX_TOK there) */

struct Context {
    const Model *m;
    ContextParams p;
    ThreadPool *tp;
    int kv_dim;            /* n_head_kv * head_dim */
    int q_dim;             /* n_head * head_dim */
    size_t k_row, v_row;   /* bytes of one position's keys / values (kv_dim values, kv.h types) */
    size_t k_head, v_head; /* bytes of one head's keys / values */
    uint8_t *k_cache;      /* (n_layer, n_seq, n_head_kv, n_ctx) rows of k_head bytes: keys after RoPE */
    uint8_t *v_cache;      /* (n_layer, n_seq, n_head_kv, n_ctx) rows of v_head bytes (a head's
                              positions are contiguous: attention streams them) */
    float *inv_freq;       /* (head_dim/2) RoPE inverse frequencies */
    /* scratch for one chunk of up to n_batch tokens */
    float *x;              /* (n_batch, n_embd) residual stream */
    float *u;              /* (n_batch, n_embd) normed input of a block */
    float *q, *k, *v;      /* (n_batch, q_dim), (n_batch, kv_dim) x2 */
    float *qkv;            /* (n_batch, q_dim + 2 kv_dim) fused projection output */
    float *att;            /* (n_batch, q_dim) attention output before Wo */
    float *proj;           /* (n_batch, n_embd) */
    float *moe;            /* (n_batch, n_embd) MoE sum */
    float *router;         /* (n_batch, n_expert) */
    int *sel;              /* (n_batch, n_expert_used) chosen experts */
    float *gate_w;         /* (n_batch, n_expert_used) their probabilities */
    int *order;            /* (n_batch * n_expert_used) assignments grouped by expert */
    int *ex_start;         /* (n_expert + 1) */
    int *ex_fill;          /* (n_expert) */
    float *hg, *hu;        /* (n_batch * max(used, 1), max(n_ff, n_ff_dense)) expert hidden */
    float *down;           /* (n_batch * n_expert_used, n_embd) expert outputs */
    float *gathered;       /* (n_batch * n_expert_used, n_embd) routed inputs */
    uint8_t *act;          /* activations in a weight's vec_dot_type */
    uint8_t *act2;
    float *scores;         /* (n_threads, group * (n_ctx + head_dim)) attention scratch: scores, partial sums */
    uint8_t *qprep;        /* (n_threads, group, kv_query_bytes(head_dim)) queries as the K type wants them */
    float *shift_tmp;      /* (n_threads, kv_dim + head_dim * 2) context shift: a key row, cos/sin */
    float *out_rows;       /* (n_batch, n_embd) normed rows that want logits */
};

/* ---- small kernels ----------------------------------------------------- */

static void rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float r = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int i = 0; i < n; i++) y[i] = w[i] * (x[i] * r);
}

static inline float softcap(float x, float c) { return c > 0.0f ? c * tanhf(x / c) : x; }

/* gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (jax.nn.gelu
 * approximate=True) is applied by vec_geglu (quant.c, vectorised). */

static void softmax(float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

/* NeoX RoPE: pairs (d, d + hd/2), theta_d = pos * inv_freq[d]. */
static void rope(float *v, int hd, int pos, const float *inv_freq) {
    const int half = hd / 2;
    for (int d = 0; d < half; d++) {
        const float th = (float)pos * inv_freq[d];
        const float c = cosf(th), s = sinf(th);
        const float a = v[d], b = v[d + half];
        v[d] = a * c - b * s;
        v[d + half] = b * c + a * s;
    }
}

/* ---- matrix jobs ------------------------------------------------------- */

/* out[t * out_stride + r] = W[r] . x[t] for the rows of one weight slice. */
typedef struct {
    uint32_t type;
    const uint8_t *w;      /* first row */
    size_t w_row_bytes;
    int64_t rows, n;
    const void *x;         /* activations in vec_dot_type(type) */
    size_t x_row_bytes;
    int n_tok;
    float *out;
    int64_t out_stride;
    int64_t chunk;         /* rows per work item */
} MatJob;

#define MAX_JOBS 64

typedef struct {
    MatJob jobs[MAX_JOBS];
    int n_jobs;
    int64_t first_chunk[MAX_JOBS + 1];
    atomic_int_fast64_t next;
} MatTask;

static void mat_task_fn(void *ctx, int ith, int nth) {
    MatTask *t = ctx;
    const int64_t total = t->first_chunk[t->n_jobs];
    int j = 0;
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (c >= total) break;
        while (c >= t->first_chunk[j + 1]) j++;
        const MatJob *m = &t->jobs[j];
        int64_t r0 = (c - t->first_chunk[j]) * m->chunk;
        int64_t r1 = r0 + m->chunk < m->rows ? r0 + m->chunk : m->rows;
        matmul_rows(m->type, m->w, m->w_row_bytes, m->x, m->x_row_bytes, m->n, m->n_tok, m->out, m->out_stride, r0,
                    r1);
    }
    (void)ith;
    (void)nth;
}

static void mat_add(MatTask *t, const Tensor *w, int64_t row0, int64_t rows, const void *x, size_t x_row_bytes,
                    int n_tok, float *out, int64_t out_stride) {
    if (rows <= 0 || n_tok <= 0) return;
    MatJob *j = &t->jobs[t->n_jobs++];
    j->type = w->type;
    j->w = (const uint8_t *)w->data + (size_t)row0 * w->row_bytes;
    j->w_row_bytes = w->row_bytes;
    j->rows = rows;
    j->n = w->cols;
    j->x = x;
    j->x_row_bytes = x_row_bytes;
    j->n_tok = n_tok;
    j->out = out;
    j->out_stride = out_stride;
}

static void mat_run(Context *c, MatTask *t) {
    t->first_chunk[0] = 0;
    const int64_t nth = tp_size(c->tp);
    for (int j = 0; j < t->n_jobs; j++) {
        MatJob *m = &t->jobs[j];
        const bool prompt = m->n_tok >= MATMUL_PROMPT_TOKENS;
        const int64_t cmax = prompt ? MATMUL_CHUNK_MAX_PROMPT : MATMUL_CHUNK_MAX;
        int64_t ch = m->rows / (nth * (prompt ? 4 : 8)) / MATMUL_CHUNK_MIN * MATMUL_CHUNK_MIN;
        m->chunk = ch < MATMUL_CHUNK_MIN ? MATMUL_CHUNK_MIN : ch > cmax ? cmax : ch;
        t->first_chunk[j + 1] = t->first_chunk[j] + (m->rows + m->chunk - 1) / m->chunk;
    }
    atomic_store(&t->next, 0);
    if (t->n_jobs) tp_run(c->tp, mat_task_fn, t);
    t->n_jobs = 0;
}

/* Converts n_tok rows of n floats (stride n) into the activation format the
 * weight type wants; returns the buffer and its row size. */
static const void *prep_act(uint8_t *buf, uint32_t wtype, const float *x, int n_tok, int64_t n, size_t *row_bytes) {
    const uint32_t vt = vec_dot_type(wtype);
    *row_bytes = type_row_size(vt, n);
    if (vt == GGML_TYPE_F32) return x;
    for (int t = 0; t < n_tok; t++) quantize_row(vt, x + (int64_t)t * n, buf + (size_t)t * *row_bytes, n);
    return buf;
}

/* ---- attention --------------------------------------------------------- */

#define ATT_TILE 256 /* cached positions per pass over the heads that share them */

static size_t kv_index(const Context *c, int layer, int seq, int g, int pos) {
    return (((size_t)layer * c->p.n_seq + (size_t)seq) * c->m->cfg.n_head_kv + (size_t)g) * c->p.n_ctx + (size_t)pos;
}

typedef struct {
    Context *c;
    int layer, n_tok;
    const int *pos, *seq;
    int per;               /* query heads per work item: a divisor of the GQA group */
} AttnTask;

/* The query heads of a GQA group read the same cached keys and values: a
 * work item takes `per` of them and walks the cache in tiles of ATT_TILE
 * positions, running every head over a tile while it is in L1/L2, so the
 * cache streams from memory once per item instead of once per head. */
static void attn_fn(void *ctx, int ith, int nth) {
    AttnTask *a = ctx;
    Context *c = a->c;
    const ModelConfig *cfg = &c->m->cfg;
    const int hd = cfg->head_dim, group = cfg->n_head / cfg->n_head_kv, per = a->per, n_sub = group / per;
    const size_t qbytes = kv_query_bytes(c->p.kv_type_k, hd);
    float *scr = c->scores + (size_t)ith * (size_t)group * (c->p.n_ctx + (size_t)hd);
    float *tmp = scr + (size_t)group * c->p.n_ctx;
    const uint32_t kt = c->p.kv_type_k, vt = c->p.kv_type_v;
    uint8_t *qbuf = c->qprep + (size_t)ith * group * qbytes;
    const void *qp[GROK_MAX_GROUP];
    for (int w = ith; w < a->n_tok * cfg->n_head_kv * n_sub; w += nth) {
        const int t = w / (cfg->n_head_kv * n_sub), g = w % (cfg->n_head_kv * n_sub) / n_sub;
        const int h0 = g * group + w % n_sub * per;
        const int pos = a->pos[t], n = pos + 1;
        const size_t base = kv_index(c, a->layer, a->seq[t], g, 0);
        const uint8_t *K = c->k_cache + base * c->k_head, *V = c->v_cache + base * c->v_head;
        /* Grok-2 attention temperature (B4): log2(pos)/log2(len) past len. */
        const float temp = (cfg->attn_temp_len > 0 && pos > cfg->attn_temp_len)
                               ? (float)(log2((double)pos) / log2((double)cfg->attn_temp_len))
                               : 1.0f;
        for (int k = 0; k < per; k++)
            qp[k] = kv_prep_query(kt, c->q + (size_t)t * c->q_dim + (size_t)(h0 + k) * hd, qbuf + k * qbytes, hd);
        for (int j0 = 0; j0 < n; j0 += ATT_TILE) { /* s_j = q . k_j */
            const int m = n - j0 < ATT_TILE ? n - j0 : ATT_TILE;
            for (int k = 0; k < per; k++)
                kv_dot_rows(kt, K + (size_t)j0 * c->k_head, c->k_head, m, qp[k], hd, scr + (size_t)k * c->p.n_ctx + j0);
        }
        for (int k = 0; k < per; k++) { /* s_j <- softmax_j(softcap(s_j * attn_scale) * temp) */
            softcap_softmax(scr + (size_t)k * c->p.n_ctx, n, cfg->attn_scale, cfg->attn_softcap, temp);
            memset(c->att + (size_t)t * c->q_dim + (size_t)(h0 + k) * hd, 0, (size_t)hd * sizeof(float));
        }
        float *o[GROK_MAX_GROUP], *part[GROK_MAX_GROUP];
        const float *wt[GROK_MAX_GROUP];
        for (int k = 0; k < per; k++) {
            o[k] = c->att + (size_t)t * c->q_dim + (size_t)(h0 + k) * hd;
            part[k] = n <= ATT_TILE ? o[k] : tmp + (size_t)k * hd;
        }
        for (int j0 = 0; j0 < n; j0 += ATT_TILE) { /* o = sum_j s_j v_j, every head of the item per row */
            const int m = n - j0 < ATT_TILE ? n - j0 : ATT_TILE;
            for (int k = 0; k < per; k++) wt[k] = scr + (size_t)k * c->p.n_ctx + j0;
            kv_mad_rows_multi(vt, per, part, wt, V + (size_t)j0 * c->v_head, c->v_head, m, hd);
            if (n > ATT_TILE)
                for (int k = 0; k < per; k++)
                    for (int i = 0; i < hd; i++) o[k][i] += part[k][i];
        }
    }
}



static void kv_store(Context *c, int layer, int seq, int pos, const float *k, const float *v) {
    const int hd = c->m->cfg.head_dim;
    for (int g = 0; g < c->m->cfg.n_head_kv; g++) {
        const size_t i = kv_index(c, layer, seq, g, pos);
        kv_quantize(c->p.kv_type_k, k + (size_t)g * hd, c->k_cache + i * c->k_head, hd);
        kv_quantize(c->p.kv_type_v, v + (size_t)g * hd, c->v_cache + i * c->v_head, hd);
    }
}

/* ---- context shift ------------------------------------------------------ */

typedef struct {
    Context *c;
    int seq, p0, p1, delta;
} ShiftTask;

/* One key row from position `from` to `to`: undo the rotation by the
 * angles rope() used at `from`, apply those it uses at `to` (so an f32 row
 * ends as a fresh computation at `to` would have it, up to the rounding of
 * cos/sin). */
static void rerotate(float *k, int n_heads, int hd, int from, int to, const float *inv_freq, float *cs) {
    const int half = hd / 2;
    float *c0 = cs, *s0 = cs + half, *c1 = cs + 2 * half, *s1 = cs + 3 * half;
    for (int d = 0; d < half; d++) {
        const float a = (float)from * inv_freq[d], b = (float)to * inv_freq[d];
        c0[d] = cosf(a), s0[d] = sinf(a), c1[d] = cosf(b), s1[d] = sinf(b);
    }
    for (int h = 0; h < n_heads; h++) {
        float *v = k + (size_t)h * hd;
        for (int d = 0; d < half; d++) {
            const float x = v[d], y = v[d + half];
            const float u = x * c0[d] + y * s0[d], w = y * c0[d] - x * s0[d]; /* rotate by -from */
            v[d] = u * c1[d] - w * s1[d];
            v[d + half] = w * c1[d] + u * s1[d];
        }
    }
}

static void shift_fn(void *ctx, int ith, int nth) {
    ShiftTask *t = ctx;
    Context *c = t->c;
    const ModelConfig *cfg = &c->m->cfg;
    float *row = c->shift_tmp + (size_t)ith * (c->kv_dim + 2 * cfg->head_dim);
    const bool up = t->delta > 0; /* walk away from the destination so no source is overwritten first */
    for (int il = ith; il < cfg->n_layer; il += nth) {
        for (int i = 0; i < t->p1 - t->p0; i++) {
            const int from = up ? t->p1 - 1 - i : t->p0 + i, to = from + t->delta;
            for (int g = 0; g < cfg->n_head_kv; g++) {
                const size_t s = kv_index(c, il, t->seq, g, from), d = kv_index(c, il, t->seq, g, to);
                kv_dequantize(c->p.kv_type_k, c->k_cache + s * c->k_head, row, cfg->head_dim);
                rerotate(row, 1, cfg->head_dim, from, to, c->inv_freq, row + c->kv_dim);
                kv_quantize(c->p.kv_type_k, row, c->k_cache + d * c->k_head, cfg->head_dim);
                memmove(c->v_cache + d * c->v_head, c->v_cache + s * c->v_head, c->v_head);
            }
        }
    }
}

int context_shift(Context *c, int seq, int p0, int p1, int delta, Error *err) {
    if (seq < 0 || seq >= c->p.n_seq) return err_set(err, "sequence %d does not exist (%d slots)", seq, c->p.n_seq);
    if (p0 < 0 || p1 < p0 || p1 > c->p.n_ctx || p0 + delta < 0 || p1 + delta > c->p.n_ctx)
        return err_set(err, "cannot move positions %d..%d by %d in a context of %d", p0, p1, delta, c->p.n_ctx);
    if (delta == 0 || p1 == p0) return 0;
    ShiftTask t = {c, seq, p0, p1, delta};
    tp_run(c->tp, shift_fn, &t);
    return 0;
}

size_t context_kv_pos_bytes(const Context *c) { return (size_t)c->m->cfg.n_layer * (c->k_row + c->v_row); }

/* buf: for each layer and key/value head, its key rows of the positions,
 * then its value rows */
static void kv_copy(Context *c, int seq, int p0, int p1, uint8_t *buf, bool out) {
    const size_t n = (size_t)(p1 - p0);
    for (int il = 0; il < c->m->cfg.n_layer; il++)
        for (int g = 0; g < c->m->cfg.n_head_kv; g++) {
            const size_t i = kv_index(c, il, seq, g, p0);
            uint8_t *k = c->k_cache + i * c->k_head, *v = c->v_cache + i * c->v_head;
            if (out) {
                memcpy(buf, k, n * c->k_head);
                memcpy(buf + n * c->k_head, v, n * c->v_head);
            } else {
                memcpy(k, buf, n * c->k_head);
                memcpy(v, buf + n * c->k_head, n * c->v_head);
            }
            buf += n * (c->k_head + c->v_head);
        }
}

int context_kv_read(const Context *c, int seq, int p0, int p1, void *buf, Error *err) {
    if (seq < 0 || seq >= c->p.n_seq || p0 < 0 || p1 < p0 || p1 > c->p.n_ctx)
        return err_set(err, "no positions %d..%d in sequence %d", p0, p1, seq);
    kv_copy((Context *)c, seq, p0, p1, buf, true);
    return 0;
}

int context_kv_write(Context *c, int seq, int p0, int p1, const void *buf, Error *err) {
    if (seq < 0 || seq >= c->p.n_seq || p0 < 0 || p1 < p0 || p1 > c->p.n_ctx)
        return err_set(err, "no positions %d..%d in sequence %d", p0, p1, seq);
    kv_copy(c, seq, p0, p1, (uint8_t *)buf, false);
    return 0;
}

int context_reuse(Context *c, int seq, int *cache, int n_cache, const int *ids, int n, int min_run, Error *err) {
    int keep = 0;
    while (keep < n && keep < n_cache && cache[keep] == ids[keep]) keep++;
    if (keep == n || keep == n_cache) return keep;
    /* the longest stretch of the cache after the prefix that continues ids;
     * token comparisons are bounded (a cache and prompt of one repeated
     * token would otherwise cost n_cache * n) */
    int best_d = 0, best_m = 0;
    int64_t budget = 8 * ((int64_t)n_cache + n);
    for (int d = 1; keep + d < n_cache && n_cache - keep - d > best_m && budget > 0; d++) {
        int m = 0;
        while (keep + m < n && keep + d + m < n_cache && cache[keep + d + m] == ids[keep + m]) m++;
        budget -= m + 1;
        if (m > best_m) best_m = m, best_d = d;
    }
    if (best_m < (min_run > 1 ? min_run : 1)) return keep;
    if (context_shift(c, seq, keep + best_d, keep + best_d + best_m, -best_d, err)) return -1;
    memmove(cache + keep, cache + keep + best_d, (size_t)best_m * sizeof(int));
    return keep + best_m;
}

/* ---- one chunk of tokens through the model ---------------------------- */

static void attention_block(Context *c, int il, int nt, const int *pos, const int *seq, MatTask *mt) {
    const ModelConfig *cfg = &c->m->cfg;
    const Layer *L = &c->m->layers[il];
    const int E = cfg->n_embd, hd = cfg->head_dim;
    size_t rb;
    for (int t = 0; t < nt; t++) rmsnorm(c->u + (size_t)t * E, c->x + (size_t)t * E, L->attn_norm, E, cfg->eps);
    if (L->wqkv.data) {
        const int all = c->q_dim + 2 * c->kv_dim;
        const void *a = prep_act(c->act, L->wqkv.type, c->u, nt, E, &rb);
        mat_add(mt, &L->wqkv, 0, all, a, rb, nt, c->qkv, all);
        mat_run(c, mt);
        for (int t = 0; t < nt; t++) {
            const float *r = c->qkv + (size_t)t * all;
            memcpy(c->q + (size_t)t * c->q_dim, r, (size_t)c->q_dim * sizeof(float));
            memcpy(c->k + (size_t)t * c->kv_dim, r + c->q_dim, (size_t)c->kv_dim * sizeof(float));
            memcpy(c->v + (size_t)t * c->kv_dim, r + c->q_dim + c->kv_dim, (size_t)c->kv_dim * sizeof(float));
        }
    } else {
        const void *aq = prep_act(c->act, L->wq.type, c->u, nt, E, &rb);
        mat_add(mt, &L->wq, 0, c->q_dim, aq, rb, nt, c->q, c->q_dim);
        size_t rb2;
        const void *ak = L->wk.type == L->wq.type ? aq : prep_act(c->act2, L->wk.type, c->u, nt, E, &rb2);
        if (L->wk.type == L->wq.type) rb2 = rb;
        mat_add(mt, &L->wk, 0, c->kv_dim, ak, rb2, nt, c->k, c->kv_dim);
        mat_run(c, mt); /* V may need a third activation format: run after */
        const void *av = prep_act(c->act, L->wv.type, c->u, nt, E, &rb);
        mat_add(mt, &L->wv, 0, c->kv_dim, av, rb, nt, c->v, c->kv_dim);
        mat_run(c, mt);
    }
    for (int t = 0; t < nt; t++) {
        for (int h = 0; h < cfg->n_head; h++) rope(c->q + (size_t)t * c->q_dim + (size_t)h * hd, hd, pos[t], c->inv_freq);
        for (int h = 0; h < cfg->n_head_kv; h++)
            rope(c->k + (size_t)t * c->kv_dim + (size_t)h * hd, hd, pos[t], c->inv_freq);
        kv_store(c, il, seq[t], pos[t], c->k + (size_t)t * c->kv_dim, c->v + (size_t)t * c->kv_dim);
    }
    /* as many heads per work item as leave every thread two items or more */
    const int group = cfg->n_head / cfg->n_head_kv, nth = tp_size(c->tp);
    int per = group;
    while (per > 1 && (group % per || nt * cfg->n_head_kv * (group / per) < 2 * nth)) per--;
    AttnTask at = {c, il, nt, pos, seq, per};
    tp_run(c->tp, attn_fn, &at);
    const void *ao = prep_act(c->act, L->wo.type, c->att, nt, c->q_dim, &rb);
    mat_add(mt, &L->wo, 0, E, ao, rb, nt, c->proj, E);
    mat_run(c, mt);
    for (int t = 0; t < nt; t++) {
        float *x = c->x + (size_t)t * E, *pr = c->proj + (size_t)t * E;
        rmsnorm(pr, pr, L->attn_out_norm, E, cfg->eps);
        for (int i = 0; i < E; i++) x[i] += pr[i];
    }
}

/* Chooses each token's experts: softmax over all, top-k by probability
 * (ties to the lower index), gates = those probabilities. */
static void route(Context *c, const Layer *L, int nt) {
    const ModelConfig *cfg = &c->m->cfg;
    const int E = cfg->n_embd, X = cfg->n_expert, K = cfg->n_expert_used;
    for (int t = 0; t < nt; t++) {
        float *r = c->router + (size_t)t * X;
        const float *u = c->u + (size_t)t * E;
        for (int e = 0; e < X; e++) r[e] = softcap(vec_dot(GGML_TYPE_F32, L->router + (size_t)e * E, u, E), cfg->router_softcap);
        softmax(r, X);
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < X; e++) {
                bool taken = false;
                for (int j = 0; j < k; j++) taken |= c->sel[t * K + j] == e;
                if (!taken && (best < 0 || r[e] > r[best])) best = e;
            }
            c->sel[t * K + k] = best;
            c->gate_w[t * K + k] = r[best];
        }
    }
    /* group the (token, slot) assignments by expert */
    memset(c->ex_start, 0, (size_t)(X + 1) * sizeof(int));
    for (int a = 0; a < nt * K; a++) c->ex_start[c->sel[a] + 1]++;
    for (int e = 0; e < X; e++) c->ex_start[e + 1] += c->ex_start[e];
    int *fill = c->ex_fill;
    for (int e = 0; e < X; e++) fill[e] = c->ex_start[e];
    for (int a = 0; a < nt * K; a++) c->order[fill[c->sel[a]]++] = a;
}

static void moe_block(Context *c, int il, int nt, MatTask *mt) {
    const ModelConfig *cfg = &c->m->cfg;
    const Layer *L = &c->m->layers[il];
    const int E = cfg->n_embd, F = cfg->n_ff, X = cfg->n_expert, K = cfg->n_expert_used;
    for (int t = 0; t < nt; t++) rmsnorm(c->u + (size_t)t * E, c->x + (size_t)t * E, L->ffn_norm, E, cfg->eps);
    route(c, L, nt);

    /* Gather each assignment's input row in expert order, then one batch of
     * matrix jobs: for every used expert, gate and up over its tokens. */
    const int na = nt * K;
    for (int i = 0; i < na; i++)
        memcpy(c->gathered + (size_t)i * E, c->u + (size_t)(c->order[i] / K) * E, (size_t)E * sizeof(float));
    size_t rb_g, rb_u;
    const void *ag = prep_act(c->act, L->gate_exps.type, c->gathered, na, E, &rb_g);
    const void *au = L->up_exps.type == L->gate_exps.type ? ag : prep_act(c->act2, L->up_exps.type, c->gathered, na, E, &rb_u);
    if (L->up_exps.type == L->gate_exps.type) rb_u = rb_g;
    for (int e = 0; e < X; e++) {
        const int s = c->ex_start[e], n = c->ex_start[e + 1] - s;
        mat_add(mt, &L->gate_exps, (int64_t)e * F, F, (const uint8_t *)ag + (size_t)s * rb_g, rb_g, n,
                c->hg + (size_t)s * F, F);
        mat_add(mt, &L->up_exps, (int64_t)e * F, F, (const uint8_t *)au + (size_t)s * rb_u, rb_u, n,
                c->hu + (size_t)s * F, F);
    }
    mat_run(c, mt);
    vec_geglu(c->hg, c->hu, (int64_t)na * F); /* hg = gelu_tanh(hg) * hu */
    size_t rb_d;
    const void *ad = prep_act(c->act, L->down_exps.type, c->hg, na, F, &rb_d);
    for (int e = 0; e < X; e++) {
        const int s = c->ex_start[e], n = c->ex_start[e + 1] - s;
        mat_add(mt, &L->down_exps, (int64_t)e * E, E, (const uint8_t *)ad + (size_t)s * rb_d, rb_d, n,
                c->down + (size_t)s * E, E);
    }
    mat_run(c, mt);
    memset(c->moe, 0, (size_t)nt * E * sizeof(float));
    for (int i = 0; i < na; i++) {
        const int a = c->order[i], t = a / K;
        const float g = c->gate_w[a];
        const float *d = c->down + (size_t)i * E;
        float *m = c->moe + (size_t)t * E;
        for (int j = 0; j < E; j++) m[j] += g * d[j];
    }

    if (cfg->n_ff_dense > 0) { /* Grok-2 shared MLP, combined as (mlp + moe) / sqrt(2) */
        const int D = cfg->n_ff_dense;
        const void *a1 = prep_act(c->act, L->ffn_gate.type, c->u, nt, E, &rb_g);
        const void *a2 = L->ffn_up.type == L->ffn_gate.type ? a1 : prep_act(c->act2, L->ffn_up.type, c->u, nt, E, &rb_u);
        if (L->ffn_up.type == L->ffn_gate.type) rb_u = rb_g;
        mat_add(mt, &L->ffn_gate, 0, D, a1, rb_g, nt, c->hg, D);
        mat_add(mt, &L->ffn_up, 0, D, a2, rb_u, nt, c->hu, D);
        mat_run(c, mt); /* gate and up in one pass over the threads */
        vec_geglu(c->hg, c->hu, (int64_t)nt * D);
        const void *a3 = prep_act(c->act, L->ffn_down.type, c->hg, nt, D, &rb_d);
        mat_add(mt, &L->ffn_down, 0, E, a3, rb_d, nt, c->proj, E);
        mat_run(c, mt);
        for (size_t i = 0; i < (size_t)nt * E; i++) c->moe[i] = (c->moe[i] + c->proj[i]) * GROK2_MOE_COMBINE;
    }

    for (int t = 0; t < nt; t++) {
        float *x = c->x + (size_t)t * E, *m = c->moe + (size_t)t * E;
        rmsnorm(m, m, L->out_norm, E, cfg->eps);
        for (int i = 0; i < E; i++) x[i] += m[i];
    }
}

static int forward_chunk(Context *c, const int *tok, const int *pos, const int *seq, const bool *want, int nt,
                         float *logits) {
    const Model *m = c->m;
    const ModelConfig *cfg = &m->cfg;
    const int E = cfg->n_embd;
    MatTask mt;
    mt.n_jobs = 0;
    for (int t = 0; t < nt; t++) {
        float *x = c->x + (size_t)t * E;
        dequantize_row(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (size_t)tok[t] * m->tok_embd.row_bytes, x,
                       E);
        for (int i = 0; i < E; i++) x[i] *= cfg->embedding_scale;
    }
    int n_out = nt; /* rows of x that go on: after the last attention, only those that want logits */
    for (int il = 0; il < cfg->n_layer; il++) {
        attention_block(c, il, nt, pos, seq, &mt);
        if (il == cfg->n_layer - 1 && want) {
            /* the keys and values of every token are cached by now; past this
             * point only the rows that want logits matter (as llama.cpp's
             * inp_out_ids): the last MoE block runs for them alone */
            n_out = 0;
            for (int t = 0; t < nt; t++)
                if (want[t]) {
                    if (n_out != t) memcpy(c->x + (size_t)n_out * E, c->x + (size_t)t * E, (size_t)E * sizeof(float));
                    n_out++;
                }
            if (n_out == 0) return 0;
        }
        moe_block(c, il, il == cfg->n_layer - 1 ? n_out : nt, &mt);
    }
    for (int t = 0; t < n_out; t++)
        rmsnorm(c->out_rows + (size_t)t * E, c->x + (size_t)t * E, m->output_norm, E, cfg->eps);
    size_t rb;
    const void *a = prep_act(c->act, m->output.type, c->out_rows, n_out, E, &rb);
    mat_add(&mt, &m->output, 0, cfg->n_vocab, a, rb, n_out, logits, cfg->n_vocab);
    mat_run(c, &mt);
    for (size_t i = 0; i < (size_t)n_out * cfg->n_vocab; i++)
        logits[i] = softcap(logits[i] * cfg->logit_scale, cfg->final_softcap);
    return n_out;
}

int forward(Context *c, const Batch *b, float *logits, Error *err) {
    const ModelConfig *cfg = &c->m->cfg;
    for (int t = 0; t < b->n_tokens; t++) {
        const int s = b->seq ? b->seq[t] : 0;
        if (b->token[t] < 0 || b->token[t] >= cfg->n_vocab)
            return err_set(err, "token id %d is outside the vocabulary (0..%d)", b->token[t], cfg->n_vocab - 1);
        if (b->pos[t] < 0 || b->pos[t] >= c->p.n_ctx)
            return err_set(err, "position %d is outside the context of %d tokens", b->pos[t], c->p.n_ctx);
        if (s < 0 || s >= c->p.n_seq) return err_set(err, "sequence %d does not exist (%d slots)", s, c->p.n_seq);
    }
    int zero_seq[DEFAULT_BATCH];
    int done = 0;
    size_t out_row = 0;
    while (done < b->n_tokens) {
        int nt = b->n_tokens - done;
        if (nt > c->p.n_batch) nt = c->p.n_batch;
        const int *seq = b->seq ? b->seq + done : NULL;
        if (!seq) { /* sequence 0 for every token, in pieces of DEFAULT_BATCH */
            if (nt > DEFAULT_BATCH) nt = DEFAULT_BATCH;
            memset(zero_seq, 0, sizeof zero_seq);
            seq = zero_seq;
        }
        float *lg = logits ? logits + out_row * (size_t)cfg->n_vocab : NULL;
        int n = forward_chunk(c, b->token + done, b->pos + done, seq, b->output ? b->output + done : NULL, nt, lg);
        /* a NaN or infinite logit (weights or activations out of range) is
         * an error, never sampled into text */
        for (size_t i = 0; lg && i < (size_t)n * (size_t)cfg->n_vocab; i++)
            if (!isfinite(lg[i]))
                return err_set(err, "the model computed a non-finite logit (%g for token %zu); its weights or "
                               "hyper-parameters are out of range", (double)lg[i], i % (size_t)cfg->n_vocab);
        out_row += (size_t)n;
        done += nt;
    }
    return 0;
}

int forward_tokens(Context *c, int seq, const int *tokens, int n, int pos0, float *logits, bool all_logits,
                   Error *err) {
    if (n <= 0) return err_set(err, "no tokens to process");
    if (pos0 + n > c->p.n_ctx)
        return err_set(err, "%d tokens at position %d do not fit in the context of %d tokens (use --ctx)", n, pos0,
                       c->p.n_ctx);
    int *pos = malloc((size_t)n * sizeof(int)), *sq = malloc((size_t)n * sizeof(int));
    bool *out = malloc((size_t)n * sizeof(bool));
    if (!pos || !sq || !out) {
        free(pos), free(sq), free(out);
        return err_set(err, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        pos[i] = pos0 + i;
        sq[i] = seq;
        out[i] = all_logits || i == n - 1;
    }
    Batch b = {n, tokens, pos, sq, out};
    int r = forward(c, &b, logits, err);
    free(pos), free(sq), free(out);
    return r;
}

/* ---- context ----------------------------------------------------------- */

int context_n_ctx(const Context *c) { return c->p.n_ctx; }
int context_n_threads(const Context *c) { return tp_size(c->tp); }
size_t context_kv_bytes(const Context *c) {
    return (size_t)c->m->cfg.n_layer * c->p.n_seq * c->p.n_ctx * (c->k_row + c->v_row);
}

void context_free(Context *c) {
    if (!c) return;
    if (c->tp) tp_free(c->tp);
    free(c->k_cache), free(c->v_cache), free(c->inv_freq);
    free(c->x), free(c->u), free(c->q), free(c->k), free(c->v), free(c->qkv), free(c->att), free(c->proj);
    free(c->moe), free(c->router), free(c->sel), free(c->gate_w), free(c->order), free(c->ex_start), free(c->ex_fill);
    free(c->hg), free(c->hu), free(c->down), free(c->gathered), free(c->act), free(c->act2), free(c->scores);
    free(c->qprep), free(c->shift_tmp);
    free(c->out_rows);
    free(c);
}

static void *zalloc(size_t n, size_t size, bool *ok) {
    void *p = calloc(n ? n : 1, size);
    if (!p) *ok = false;
    return p;
}

Context *context_new(const Model *m, const ContextParams *pp, Error *err) {
    const ModelConfig *cfg = &m->cfg;
    Context *c = calloc(1, sizeof *c);
    if (!c) {
        err_set(err, "out of memory");
        return NULL;
    }
    c->m = m;
    c->p = *pp;
    if (c->p.n_ctx <= 0) c->p.n_ctx = cfg->n_ctx_train < DEFAULT_CTX_CAP ? cfg->n_ctx_train : DEFAULT_CTX_CAP;
    if (c->p.n_seq <= 0) c->p.n_seq = 1;
    if (c->p.n_batch <= 0) c->p.n_batch = DEFAULT_BATCH;
    if (c->p.n_threads <= 0) c->p.n_threads = cpu_count();
    if (!kv_type_ok(c->p.kv_type_k) || !kv_type_ok(c->p.kv_type_v)) {
        err_set(err, "the KV cache types must be " KV_TYPE_NAMES);
        goto fail;
    }
    if (cfg->head_dim % kv_type_block(c->p.kv_type_k) || cfg->head_dim % kv_type_block(c->p.kv_type_v)) {
        err_set(err, "a %s / %s KV cache needs a head size that is a multiple of 32 (this model's is %d)",
                type_info(c->p.kv_type_k)->name, type_info(c->p.kv_type_v)->name, cfg->head_dim);
        goto fail;
    }
    if (c->p.n_ctx <= 0) {
        err_set(err, "context size must be positive");
        goto fail;
    }
    if (cfg->n_head / cfg->n_head_kv > GROK_MAX_GROUP) {
        err_set(err, "%d query heads per key/value head: at most %d are supported", cfg->n_head / cfg->n_head_kv,
                GROK_MAX_GROUP);
        goto fail;
    }
    c->kv_dim = cfg->n_head_kv * cfg->head_dim;
    c->q_dim = cfg->n_head * cfg->head_dim;
    c->k_row = kv_row_bytes(c->p.kv_type_k, c->kv_dim);
    c->v_row = kv_row_bytes(c->p.kv_type_v, c->kv_dim);
    c->k_head = kv_row_bytes(c->p.kv_type_k, cfg->head_dim);
    c->v_head = kv_row_bytes(c->p.kv_type_v, cfg->head_dim);
    const size_t rows = (size_t)cfg->n_layer * c->p.n_seq * c->p.n_ctx;
    const size_t B = (size_t)c->p.n_batch, K = (size_t)cfg->n_expert_used, E = (size_t)cfg->n_embd;
    const size_t F = (size_t)(cfg->n_ff > cfg->n_ff_dense ? cfg->n_ff : cfg->n_ff_dense);
    size_t widest = E > F ? E : F;
    if ((size_t)c->q_dim > widest) widest = (size_t)c->q_dim;
    const size_t rows_k = B * (K > 1 ? K : 1);
    bool ok = true;
    c->tp = tp_create(c->p.n_threads, err);
    if (!c->tp) goto fail;
    c->k_cache = zalloc(rows, c->k_row, &ok);
    c->v_cache = zalloc(rows, c->v_row, &ok);
    c->inv_freq = zalloc((size_t)cfg->head_dim / 2, sizeof(float), &ok);
    c->x = zalloc(B * E, sizeof(float), &ok);
    c->u = zalloc(B * E, sizeof(float), &ok);
    c->q = zalloc(B * c->q_dim, sizeof(float), &ok);
    c->k = zalloc(B * c->kv_dim, sizeof(float), &ok);
    c->v = zalloc(B * c->kv_dim, sizeof(float), &ok);
    c->qkv = zalloc(B * (c->q_dim + 2 * (size_t)c->kv_dim), sizeof(float), &ok);
    c->att = zalloc(B * c->q_dim, sizeof(float), &ok);
    c->proj = zalloc(B * E, sizeof(float), &ok);
    c->moe = zalloc(B * E, sizeof(float), &ok);
    c->router = zalloc(B * cfg->n_expert, sizeof(float), &ok);
    c->sel = zalloc(B * K, sizeof(int), &ok);
    c->gate_w = zalloc(B * K, sizeof(float), &ok);
    c->order = zalloc(B * K, sizeof(int), &ok);
    c->ex_start = zalloc((size_t)cfg->n_expert + 1, sizeof(int), &ok);
    c->ex_fill = zalloc((size_t)cfg->n_expert, sizeof(int), &ok);
    c->hg = zalloc(rows_k * F, sizeof(float), &ok);
    c->hu = zalloc(rows_k * F, sizeof(float), &ok);
    c->down = zalloc(rows_k * E, sizeof(float), &ok);
    c->gathered = zalloc(rows_k * E, sizeof(float), &ok);
    c->act = zalloc(rows_k * widest, sizeof(float), &ok);
    c->act2 = zalloc(rows_k * widest, sizeof(float), &ok);
    const size_t group = (size_t)(cfg->n_head / cfg->n_head_kv);
    c->scores = zalloc((size_t)c->p.n_threads * group * (c->p.n_ctx + (size_t)cfg->head_dim), sizeof(float), &ok);
    c->qprep = zalloc((size_t)c->p.n_threads * group, kv_query_bytes(c->p.kv_type_k, cfg->head_dim), &ok);
    c->shift_tmp = zalloc((size_t)c->p.n_threads * (c->kv_dim + 2 * (size_t)cfg->head_dim), sizeof(float), &ok);
    c->out_rows = zalloc(B * E, sizeof(float), &ok);
    if (!ok) {
        err_set(err, "out of memory allocating the context (KV cache %.1f MiB)",
                (double)rows * (c->k_row + c->v_row) / 1048576.0);
        goto fail;
    }
    /* inv_freq[d] = 1 / base^(2d/hd), in f32 as model.py RotaryEmbedding */
    for (int d = 0; d < cfg->head_dim / 2; d++)
        c->inv_freq[d] = (float)(1.0 / pow((double)cfg->rope_base, (2.0 * d) / cfg->head_dim));
    return c;
fail:
    context_free(c);
    return NULL;
}
