/* backend_cpu.c - the CPU backend (backend.h): activations and the KV cache
 * in host memory, the weights read in place from the file mapping, the
 * products on a thread pool through quant.c's kernels (x86 AVX2 / AVX-512,
 * ARM NEON, scalar), attention through kv.c's. Owns the thread pool, the KV
 * cache and the scratch the kernels need (activations in a weight's
 * vec_dot_type, attention scores, routed inputs). */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kv.h"
#include "quant.h"
#include "threadpool.h"

#define GROK_MAX_GROUP 64      /* most query heads per key/value head */
#define MATMUL_CHUNK_MIN 16    /* rows per work item handed to a thread: at least, */
#define MATMUL_CHUNK_MAX 256   /* at most; ~8 items per thread in between (fewer
                                  calls: each prepares the activations anew) */
#define MATMUL_CHUNK_MAX_PROMPT 2048 /* with many tokens (the prompt path) a call
                                  prepares a panel of every token's activations, so
                                  items are larger: ~4 per thread, up to this */
#define MATMUL_PROMPT_TOKENS 16 /* from this many tokens a product takes quant.c's
                                  prompt path (DEC_MAX_TOK there) */
#define N_ACT 2                /* activation buffers: inputs prepared at once */

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

/* Generation: one thread's share of the queued chunks, [front, back) of the
 * chunk numbers packed in one word (front low, back high). The owner takes
 * chunks from the front, so its weight rows stream in order (the kernels'
 * prefetch runs ahead of it into its own next rows); a thread that has run
 * out takes them from the back of another's share. */
typedef struct {
    _Alignas(64) atomic_uint_fast64_t fb;
} MatShare;

typedef struct {
    MatJob jobs[MAX_JOBS];
    int n_jobs;
    int64_t first_chunk[MAX_JOBS + 1];
    atomic_int_fast64_t next;  /* the prompt path: the next chunk, for any thread */
    MatShare *share;           /* (n_threads) generation, or NULL: the prompt path */
} MatTask;

/* One input prepared in a weight's activation format. */
typedef struct {
    const float *x;        /* the float rows it came from (NULL: free) */
    uint32_t vt;           /* vec_dot_type */
    int n_tok;
    int64_t n;
    const void *data;
    size_t row_bytes;
} Prepared;

typedef struct {
    Backend base;
    const Model *m;
    BackendParams p;
    ThreadPool *tp;
    int n_kv, kv0;         /* the key/value heads held and computed: [kv0, kv0 + n_kv) of cfg.n_head_kv
                              (model.h ModelShare: all of them unless attention is cut by heads) */
    int kv_dim;            /* n_kv * head_dim */
    int q_dim;             /* n_kv * group * head_dim: their query heads */
    size_t k_row, v_row;   /* bytes of one position's keys / values (kv_dim values, kv.h types) */
    size_t k_head, v_head; /* bytes of one head's keys / values */
    uint8_t *k_cache;      /* (n_layer, n_seq, n_kv, n_ctx) rows of k_head bytes: keys after RoPE */
    uint8_t *v_cache;      /* (n_layer, n_seq, n_kv, n_ctx) rows of v_head bytes (a head's
                              positions are contiguous: attention streams them) */
    float *inv_freq;       /* (head_dim/2) RoPE inverse frequencies */
    float *rope_cs;        /* (n_batch, head_dim) cos, sin of token t's RoPE angles (rope_angles) */
    int *rope_pos;         /* (n_batch) the position rope_cs[t] holds, -1: none yet */
    float *router;         /* (n_batch, n_expert) router probabilities */
    int *ex_fill;          /* (n_expert) */
    float *gathered;       /* (n_batch * n_expert_used, n_embd) routed inputs in expert order */
    uint8_t *act[N_ACT];   /* (n_batch * max(used, 1), widest) activations in a weight's vec_dot_type */
    Prepared prep[N_ACT];
    float *scores;         /* (n_threads, group * (n_ctx + head_dim)) attention scratch: scores, partial sums */
    uint8_t *qprep;        /* (n_threads, group, kv_query_bytes(head_dim)) queries as the K type wants them */
    float *shift_tmp;      /* (n_threads, kv_dim + head_dim * 2) context shift: a key row, cos/sin */
    MatShare *share;       /* (n_threads) the generation path's shares of a run (MatTask) */
    MatTask mt;
} Cpu;

/* ---- small kernels ----------------------------------------------------- */

static void rmsnorm_row(float *y, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float r = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int i = 0; i < n; i++) y[i] = w[i] * (x[i] * r);
}

static inline float softcap(float x, float c) { return c > 0.0f ? c * tanhf(x / c) : x; }

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

/* NeoX RoPE: pairs (d, d + hd/2) rotated by theta_d = pos * inv_freq[d];
 * cs: cos theta_d (hd/2), then sin theta_d (hd/2), from rope_angles. */
static void rope_angles(float *cs, int hd, int pos, const float *inv_freq) {
    const int half = hd / 2;
    for (int d = 0; d < half; d++) {
        const float th = (float)pos * inv_freq[d];
        cs[d] = cosf(th), cs[half + d] = sinf(th);
    }
}

static void rope(float *v, int hd, const float *cs) {
    const int half = hd / 2;
    for (int d = 0; d < half; d++) {
        const float c = cs[d], s = cs[half + d];
        const float a = v[d], b = v[d + half];
        v[d] = a * c - b * s;
        v[d + half] = b * c + a * s;
    }
}

/* ---- matrix jobs ------------------------------------------------------- */

/* Runs chunk number ch; *j: the job of the last chunk run by this thread. */
static void mat_chunk(const MatTask *t, int64_t ch, int *j) {
    while (ch >= t->first_chunk[*j + 1]) (*j)++;
    while (ch < t->first_chunk[*j]) (*j)--;
    const MatJob *m = &t->jobs[*j];
    const int64_t r0 = (ch - t->first_chunk[*j]) * m->chunk;
    const int64_t r1 = r0 + m->chunk < m->rows ? r0 + m->chunk : m->rows;
    matmul_rows(m->type, m->w, m->w_row_bytes, m->x, m->x_row_bytes, m->n, m->n_tok, m->out, m->out_stride, r0, r1);
}

#define FB(f, b) ((uint_fast64_t)(f) | (uint_fast64_t)(b) << 32)

/* the front chunk of a share (its owner), or -1 when it is empty */
static int64_t take_front(MatShare *s) {
    const uint_fast64_t old = atomic_fetch_add_explicit(&s->fb, 1, memory_order_relaxed);
    const int64_t f = (int64_t)(old & 0xffffffffu), b = (int64_t)(old >> 32);
    return f < b ? f : -1;
}

/* the back chunk of a share (another thread), or -1 when it is empty */
static int64_t take_back(MatShare *s) {
    uint_fast64_t old = atomic_load_explicit(&s->fb, memory_order_relaxed);
    for (;;) {
        const int64_t f = (int64_t)(old & 0xffffffffu), b = (int64_t)(old >> 32);
        if (f >= b) return -1;
        if (atomic_compare_exchange_weak_explicit(&s->fb, &old, FB(f, b - 1), memory_order_relaxed,
                                                  memory_order_relaxed))
            return b - 1;
    }
}

static void mat_task_fn(void *ctx, int ith, int nth) {
    MatTask *t = ctx;
    int j = 0;
    if (!t->share) {
        const int64_t total = t->first_chunk[t->n_jobs];
        for (int64_t c; (c = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed)) < total;) mat_chunk(t, c, &j);
        return;
    }
    for (int64_t c; (c = take_front(&t->share[ith])) >= 0;) mat_chunk(t, c, &j);
    for (int k = 1; k < nth; k++) /* then help the others, the next thread first */
        for (int64_t c; (c = take_back(&t->share[(ith + k) % nth])) >= 0;) mat_chunk(t, c, &j);
}

/* Splits the chunks of a generation run into one contiguous share per
 * thread, about equal in weight bytes. */
static void mat_shares(MatTask *t, int nth) {
    size_t total = 0, sum = 0;
    for (int j = 0; j < t->n_jobs; j++) total += (size_t)t->jobs[j].rows * t->jobs[j].w_row_bytes;
    int64_t ch = 0;
    int i = 0;
    for (int j = 0; j < t->n_jobs; j++) { /* share i starts at the first chunk past i / nth of the bytes */
        const MatJob *m = &t->jobs[j];
        for (int64_t r = 0; r < m->rows; r += m->chunk, ch++) {
            for (; i < nth && (double)sum >= (double)total * i / nth; i++)
                atomic_store_explicit(&t->share[i].fb, FB(ch, 0), memory_order_relaxed);
            sum += (size_t)(m->rows - r < m->chunk ? m->rows - r : m->chunk) * m->w_row_bytes;
        }
    }
    for (; i < nth; i++) atomic_store_explicit(&t->share[i].fb, FB(ch, 0), memory_order_relaxed);
    for (i = 0; i < nth; i++) { /* ... and ends where share i + 1 starts */
        const uint_fast64_t f = atomic_load_explicit(&t->share[i].fb, memory_order_relaxed);
        const uint_fast64_t b = i + 1 < nth ? atomic_load_explicit(&t->share[i + 1].fb, memory_order_relaxed) : (uint_fast64_t)ch;
        atomic_store_explicit(&t->share[i].fb, FB(f, b), memory_order_relaxed);
    }
}

/* Runs the queued jobs on the pool; afterwards the prepared inputs may be reused. */
static void mat_run(Cpu *c) {
    MatTask *t = &c->mt;
    t->first_chunk[0] = 0;
    const int nth = tp_size(c->tp);
    bool gen = true;
    for (int j = 0; j < t->n_jobs; j++) {
        MatJob *m = &t->jobs[j];
        const bool prompt = m->n_tok >= MATMUL_PROMPT_TOKENS;
        const int64_t cmax = prompt ? MATMUL_CHUNK_MAX_PROMPT : MATMUL_CHUNK_MAX;
        int64_t ch = m->rows / ((int64_t)nth * (prompt ? 4 : 8)) / MATMUL_CHUNK_MIN * MATMUL_CHUNK_MIN;
        m->chunk = ch < MATMUL_CHUNK_MIN ? MATMUL_CHUNK_MIN : ch > cmax ? cmax : ch;
        t->first_chunk[j + 1] = t->first_chunk[j] + (m->rows + m->chunk - 1) / m->chunk;
        gen = gen && !prompt;
    }
    if (!t->n_jobs) return;
    t->share = gen && nth > 1 ? c->share : NULL;
    if (t->share) mat_shares(t, nth);
    else atomic_store(&t->next, 0);
    tp_run(c->tp, mat_task_fn, t); /* publishing the run orders the stores above */
    t->n_jobs = 0;
}

static void mat_add(Cpu *c, const Tensor *w, int64_t row0, int64_t rows, const Prepared *a, int64_t a_row0,
                    int n_tok, float *out, int64_t out_stride) {
    if (rows <= 0 || n_tok <= 0) return;
    if (c->mt.n_jobs == MAX_JOBS) mat_run(c); /* inputs stay prepared: only the outputs are written */
    MatJob *j = &c->mt.jobs[c->mt.n_jobs++];
    j->type = w->type;
    j->w = (const uint8_t *)w->data + (size_t)row0 * w->row_bytes;
    j->w_row_bytes = w->row_bytes;
    j->rows = rows;
    j->n = w->cols;
    j->x = (const uint8_t *)a->data + (size_t)a_row0 * a->row_bytes;
    j->x_row_bytes = a->row_bytes;
    j->n_tok = n_tok;
    j->out = out;
    j->out_stride = out_stride;
}

/* The input x (n_tok rows of n floats) in the activation format of weight
 * type wtype, prepared once per call and shared by the products that read
 * it; when the buffers are taken, the queued products run first. */
static const Prepared *prepare(Cpu *c, uint32_t wtype, const float *x, int n_tok, int64_t n) {
    const uint32_t vt = vec_dot_type(wtype);
    for (int i = 0; i < N_ACT; i++) {
        const Prepared *p = &c->prep[i];
        if (p->x == x && p->vt == vt && p->n_tok == n_tok && p->n == n) return p;
    }
    int slot = -1;
    for (int i = 0; i < N_ACT && slot < 0; i++)
        if (!c->prep[i].x) slot = i;
    if (slot < 0) { /* all buffers hold inputs of queued products */
        mat_run(c);
        memset(c->prep, 0, sizeof c->prep);
        slot = 0;
    }
    Prepared *p = &c->prep[slot];
    *p = (Prepared){x, vt, n_tok, n, x, type_row_size(vt, n)};
    if (vt != GGML_TYPE_F32) {
        for (int t = 0; t < n_tok; t++)
            quantize_row(vt, x + (int64_t)t * n, c->act[slot] + (size_t)t * p->row_bytes, n);
        p->data = c->act[slot];
    }
    return p;
}

static void mat_finish(Cpu *c) {
    mat_run(c);
    memset(c->prep, 0, sizeof c->prep);
}

static void cpu_matmul(Backend *b, const MatMul *mm, int n_mm) {
    Cpu *c = (Cpu *)b;
    for (int i = 0; i < n_mm; i++) {
        const Prepared *a = prepare(c, mm[i].w->type, mm[i].x, mm[i].n_tok, mm[i].w->cols);
        mat_add(c, mm[i].w, mm[i].row0, mm[i].rows, a, 0, mm[i].n_tok, mm[i].out, mm[i].out_stride);
    }
    mat_finish(c);
}

static void cpu_matmul_experts(Backend *b, const Routing *r, const ExpertMatMul *mm, int n_mm) {
    Cpu *c = (Cpu *)b;
    const int na = r->n_tok * r->n_used;
    const float *gathered_from = NULL; /* the token rows now in c->gathered */
    for (int i = 0; i < n_mm; i++) {
        const ExpertMatMul *e = &mm[i];
        const int64_t n = e->w->cols;
        const float *x = e->x;
        if (e->by_token) { /* each assignment's token row, in expert order */
            if (gathered_from != e->x) {
                mat_finish(c); /* queued products may read the old rows */
                for (int a = 0; a < na; a++)
                    memcpy(c->gathered + (size_t)a * n, e->x + (size_t)(r->order[a] / r->n_used) * n,
                           (size_t)n * sizeof(float));
                gathered_from = e->x;
            }
            x = c->gathered;
        }
        const Prepared *a = prepare(c, e->w->type, x, na, n);
        for (int ex = 0; ex < r->n_expert; ex++) {
            const int s = r->ex_start[ex], cnt = r->ex_start[ex + 1] - s;
            mat_add(c, e->w, (int64_t)ex * e->expert_rows + e->row0, e->rows, a, s, cnt,
                    e->out + (size_t)s * e->out_stride, e->out_stride);
        }
    }
    mat_finish(c);
}

/* ---- the simple operations --------------------------------------------- */

static void cpu_embed(Backend *b, const Tensor *te, const int *tok, int nt, float scale, float *x) {
    const int E = (int)te->cols;
    for (int t = 0; t < nt; t++) {
        float *row = x + (size_t)t * E;
        dequantize_row(te->type, (const uint8_t *)te->data + (size_t)tok[t] * te->row_bytes, row, E);
        for (int i = 0; i < E; i++) row[i] *= scale;
    }
    (void)b;
}

static void cpu_rmsnorm(Backend *b, float *y, const float *x, const float *w, int nt, int n, float eps) {
    for (int t = 0; t < nt; t++) rmsnorm_row(y + (size_t)t * n, x + (size_t)t * n, w, n, eps);
    (void)b;
}

static void cpu_add_rmsnorm(Backend *b, float *x, float *y, const float *w, int nt, int n, float eps) {
    for (int t = 0; t < nt; t++) {
        float *xr = x + (size_t)t * n, *yr = y + (size_t)t * n;
        rmsnorm_row(yr, yr, w, n, eps);
        for (int i = 0; i < n; i++) xr[i] += yr[i];
    }
    (void)b;
}

static void cpu_geglu(Backend *b, float *g, const float *u, int64_t n) {
    vec_geglu(g, u, n); /* g = gelu_tanh(g) * u (quant.c, vectorised) */
    (void)b;
}

static void cpu_add_scale(Backend *b, float *y, const float *x, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = (y[i] + x[i]) * s;
    (void)b;
}

static void cpu_select_rows(Backend *b, float *x, const int *rows, int n, int width) {
    for (int i = 0; i < n; i++) /* rows increase, so a row is read before it is overwritten */
        if (rows[i] != i) memcpy(x + (size_t)i * width, x + (size_t)rows[i] * width, (size_t)width * sizeof(float));
    (void)b;
}

static void cpu_logits(Backend *b, const Tensor *w, const float *x, int nt, float scale, float cap, float *logits) {
    Cpu *c = (Cpu *)b;
    const Prepared *a = prepare(c, w->type, x, nt, w->cols);
    mat_add(c, w, 0, w->rows, a, 0, nt, logits, w->rows);
    mat_finish(c);
    for (size_t i = 0; i < (size_t)nt * (size_t)w->rows; i++) logits[i] = softcap(logits[i] * scale, cap);
}

/* ---- routing ------------------------------------------------------------ */

/* Chooses each token's experts: softmax over all, top-k by probability
 * (ties to the lower index), gates = those probabilities; then groups the
 * (token, slot) assignments by expert. */
static void cpu_route(Backend *b, const float *router, const float *u, int nt, Routing *r) {
    Cpu *c = (Cpu *)b;
    const ModelConfig *cfg = &c->m->cfg;
    const int E = cfg->n_embd, X = cfg->n_expert, K = cfg->n_expert_used;
    r->n_tok = nt, r->n_used = K, r->n_expert = X;
    for (int t = 0; t < nt; t++) {
        float *p = c->router + (size_t)t * X;
        const float *ut = u + (size_t)t * E;
        for (int e = 0; e < X; e++) p[e] = softcap(vec_dot(GGML_TYPE_F32, router + (size_t)e * E, ut, E), cfg->router_softcap);
        softmax(p, X);
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < X; e++) {
                bool taken = false;
                for (int j = 0; j < k; j++) taken |= r->sel[t * K + j] == e;
                if (!taken && (best < 0 || p[e] > p[best])) best = e;
            }
            r->sel[t * K + k] = best;
            r->gate[t * K + k] = p[best];
        }
    }
    memset(r->ex_start, 0, (size_t)(X + 1) * sizeof(int));
    for (int a = 0; a < nt * K; a++) r->ex_start[r->sel[a] + 1]++;
    for (int e = 0; e < X; e++) r->ex_start[e + 1] += r->ex_start[e];
    int *fill = c->ex_fill;
    for (int e = 0; e < X; e++) fill[e] = r->ex_start[e];
    for (int a = 0; a < nt * K; a++) r->order[fill[r->sel[a]]++] = a;
}

static void cpu_combine(Backend *b, const Routing *r, const float *down, int n, float *out) {
    memset(out, 0, (size_t)r->n_tok * n * sizeof(float));
    for (int i = 0; i < r->n_tok * r->n_used; i++) {
        const int a = r->order[i], t = a / r->n_used;
        const float g = r->gate[a];
        const float *d = down + (size_t)i * n;
        float *m = out + (size_t)t * n;
        for (int j = 0; j < n; j++) m[j] += g * d[j];
    }
    (void)b;
}

/* ---- attention and the KV cache ---------------------------------------- */

#define ATT_TILE 256 /* cached positions per pass over the heads that share them */

static size_t kv_index(const Cpu *c, int layer, int seq, int g, int pos) {
    return (((size_t)layer * c->p.n_seq + (size_t)seq) * c->n_kv + (size_t)g) * c->p.n_ctx + (size_t)pos;
}

static void cpu_rope_store(Backend *b, int il, float *q, float *k, const float *v, const int *pos, const int *seq,
                           int nt) {
    Cpu *c = (Cpu *)b;
    const ModelConfig *cfg = &c->m->cfg;
    const int hd = cfg->head_dim;
    for (int t = 0; t < nt; t++) {
        float *qt = q + (size_t)t * c->q_dim, *kt = k + (size_t)t * c->kv_dim;
        const float *vt = v + (size_t)t * c->kv_dim;
        float *cs = c->rope_cs + (size_t)t * hd; /* the angles of pos[t], once for every layer and head */
        if (c->rope_pos[t] != pos[t]) rope_angles(cs, hd, pos[t], c->inv_freq), c->rope_pos[t] = pos[t];
        for (int h = 0; h < c->q_dim / hd; h++) rope(qt + (size_t)h * hd, hd, cs);
        for (int h = 0; h < c->n_kv; h++) rope(kt + (size_t)h * hd, hd, cs);
        for (int g = 0; g < c->n_kv; g++) {
            const size_t i = kv_index(c, il, seq[t], g, pos[t]);
            kv_quantize(c->p.kv_type_k, kt + (size_t)g * hd, c->k_cache + i * c->k_head, hd);
            kv_quantize(c->p.kv_type_v, vt + (size_t)g * hd, c->v_cache + i * c->v_head, hd);
        }
    }
}

typedef struct {
    Cpu *c;
    int layer, n_tok;
    const float *q;
    float *out;
    const int *pos, *seq;
    int per;               /* query heads per work item: a divisor of the GQA group */
} AttnTask;

/* The query heads of a GQA group read the same cached keys and values: a
 * work item takes `per` of them and walks the cache in tiles of ATT_TILE
 * positions, running every head over a tile while it is in L1/L2, so the
 * cache streams from memory once per item instead of once per head. */
static void attn_fn(void *ctx, int ith, int nth) {
    AttnTask *a = ctx;
    Cpu *c = a->c;
    const ModelConfig *cfg = &c->m->cfg;
    const int hd = cfg->head_dim, group = cfg->n_head / cfg->n_head_kv, per = a->per, n_sub = group / per;
    const size_t qbytes = kv_query_bytes(c->p.kv_type_k, hd);
    float *scr = c->scores + (size_t)ith * (size_t)group * (c->p.n_ctx + (size_t)hd);
    float *tmp = scr + (size_t)group * c->p.n_ctx;
    const uint32_t kt = c->p.kv_type_k, vt = c->p.kv_type_v;
    uint8_t *qbuf = c->qprep + (size_t)ith * group * qbytes;
    const void *qp[GROK_MAX_GROUP];
    for (int w = ith; w < a->n_tok * c->n_kv * n_sub; w += nth) {
        const int t = w / (c->n_kv * n_sub), g = w % (c->n_kv * n_sub) / n_sub;
        const int h0 = g * group + w % n_sub * per;
        const int pos = a->pos[t], n = pos + 1;
        const size_t base = kv_index(c, a->layer, a->seq[t], g, 0);
        const uint8_t *K = c->k_cache + base * c->k_head, *V = c->v_cache + base * c->v_head;
        /* Grok-2 attention temperature (B4): log2(pos)/log2(len) past len. */
        const float temp = (cfg->attn_temp_len > 0 && pos > cfg->attn_temp_len)
                               ? (float)(log2((double)pos) / log2((double)cfg->attn_temp_len))
                               : 1.0f;
        for (int k = 0; k < per; k++)
            qp[k] = kv_prep_query(kt, a->q + (size_t)t * c->q_dim + (size_t)(h0 + k) * hd, qbuf + k * qbytes, hd);
        for (int j0 = 0; j0 < n; j0 += ATT_TILE) { /* s_j = q . k_j */
            const int m = n - j0 < ATT_TILE ? n - j0 : ATT_TILE;
            for (int k = 0; k < per; k++)
                kv_dot_rows(kt, K + (size_t)j0 * c->k_head, c->k_head, m, qp[k], hd, scr + (size_t)k * c->p.n_ctx + j0);
        }
        for (int k = 0; k < per; k++) { /* s_j <- softmax_j(softcap(s_j * attn_scale) * temp) */
            softcap_softmax(scr + (size_t)k * c->p.n_ctx, n, cfg->attn_scale, cfg->attn_softcap, temp);
            memset(a->out + (size_t)t * c->q_dim + (size_t)(h0 + k) * hd, 0, (size_t)hd * sizeof(float));
        }
        float *o[GROK_MAX_GROUP], *part[GROK_MAX_GROUP];
        const float *wt[GROK_MAX_GROUP];
        for (int k = 0; k < per; k++) {
            o[k] = a->out + (size_t)t * c->q_dim + (size_t)(h0 + k) * hd;
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

static void cpu_attention(Backend *b, int il, const float *q, const int *pos, const int *seq, int nt, float *out) {
    Cpu *c = (Cpu *)b;
    const ModelConfig *cfg = &c->m->cfg;
    /* as many heads per work item as leave every thread two items or more */
    const int group = cfg->n_head / cfg->n_head_kv, nth = tp_size(c->tp);
    int per = group;
    while (per > 1 && (group % per || nt * c->n_kv * (group / per) < 2 * nth)) per--;
    AttnTask at = {c, il, nt, q, out, pos, seq, per};
    tp_run(c->tp, attn_fn, &at);
}

typedef struct {
    Cpu *c;
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
    Cpu *c = t->c;
    const ModelConfig *cfg = &c->m->cfg;
    float *row = c->shift_tmp + (size_t)ith * (c->kv_dim + 2 * cfg->head_dim);
    const bool up = t->delta > 0; /* walk away from the destination so no source is overwritten first */
    for (int il = ith; il < cfg->n_layer; il += nth) {
        for (int i = 0; i < t->p1 - t->p0; i++) {
            const int from = up ? t->p1 - 1 - i : t->p0 + i, to = from + t->delta;
            for (int g = 0; g < c->n_kv; g++) {
                const size_t s = kv_index(c, il, t->seq, g, from), d = kv_index(c, il, t->seq, g, to);
                kv_dequantize(c->p.kv_type_k, c->k_cache + s * c->k_head, row, cfg->head_dim);
                rerotate(row, 1, cfg->head_dim, from, to, c->inv_freq, row + c->kv_dim);
                kv_quantize(c->p.kv_type_k, row, c->k_cache + d * c->k_head, cfg->head_dim);
                memmove(c->v_cache + d * c->v_head, c->v_cache + s * c->v_head, c->v_head);
            }
        }
    }
}

static void cpu_kv_shift(Backend *b, int seq, int p0, int p1, int delta) {
    Cpu *c = (Cpu *)b;
    ShiftTask t = {c, seq, p0, p1, delta};
    tp_run(c->tp, shift_fn, &t);
}

/* a position of the whole model, every head (the saved format), though this
 * backend may hold only some heads */
static size_t cpu_kv_pos_bytes(const Backend *b) {
    const Cpu *c = (const Cpu *)b;
    return (size_t)c->m->cfg.n_layer * c->m->cfg.n_head_kv * (c->k_head + c->v_head);
}

static size_t cpu_kv_bytes(const Backend *b) {
    const Cpu *c = (const Cpu *)b;
    return (size_t)c->p.n_seq * c->p.n_ctx * c->m->cfg.n_layer * (c->k_row + c->v_row);
}

/* buf: for each layer and key/value head of the model, its key rows of the
 * positions, then its value rows; only the heads held here are read or
 * written (the others' bytes are skipped) */
static void kv_copy(Cpu *c, int seq, int p0, int p1, uint8_t *buf, bool out) {
    const size_t n = (size_t)(p1 - p0), hb = n * (c->k_head + c->v_head);
    for (int il = 0; il < c->m->cfg.n_layer; il++) {
        buf += (size_t)c->kv0 * hb;
        for (int g = 0; g < c->n_kv; g++) {
            const size_t i = kv_index(c, il, seq, g, p0);
            uint8_t *k = c->k_cache + i * c->k_head, *v = c->v_cache + i * c->v_head;
            if (out) {
                memcpy(buf, k, n * c->k_head);
                memcpy(buf + n * c->k_head, v, n * c->v_head);
            } else {
                memcpy(k, buf, n * c->k_head);
                memcpy(v, buf + n * c->k_head, n * c->v_head);
            }
            buf += hb;
        }
        buf += (size_t)(c->m->cfg.n_head_kv - c->kv0 - c->n_kv) * hb;
    }
}

static void cpu_kv_read(Backend *b, int seq, int p0, int p1, void *buf) { kv_copy((Cpu *)b, seq, p0, p1, buf, true); }
static void cpu_kv_write(Backend *b, int seq, int p0, int p1, const void *buf) {
    kv_copy((Cpu *)b, seq, p0, p1, (uint8_t *)buf, false);
}

/* ---- memory and lifetime ----------------------------------------------- */

static void *cpu_alloc(Backend *b, size_t bytes) {
    (void)b;
    return calloc(bytes ? bytes : 1, 1);
}

static void cpu_release(Backend *b, void *p) {
    (void)b;
    free(p);
}

static int cpu_n_threads(const Backend *b) { return tp_size(((const Cpu *)b)->tp); }

static void cpu_free(Backend *b) {
    Cpu *c = (Cpu *)b;
    if (!c) return;
    if (c->tp) tp_free(c->tp);
    free(c->k_cache), free(c->v_cache), free(c->inv_freq), free(c->rope_cs), free(c->rope_pos), free(c->router), free(c->ex_fill), free(c->gathered);
    for (int i = 0; i < N_ACT; i++) free(c->act[i]);
    free(c->scores), free(c->qprep), free(c->shift_tmp);
    free(c->share);
    free(c);
}

static void *zalloc(size_t n, size_t size, bool *ok) {
    void *p = calloc(n ? n : 1, size);
    if (!p) *ok = false;
    return p;
}

Backend *backend_cpu_new(const Model *m, const BackendParams *p, Error *err) {
    const ModelConfig *cfg = &m->cfg;
    if (!kv_type_ok(p->kv_type_k) || !kv_type_ok(p->kv_type_v)) {
        err_set(err, "the KV cache types must be " KV_TYPE_NAMES);
        return NULL;
    }
    if (cfg->head_dim % kv_type_block(p->kv_type_k) || cfg->head_dim % kv_type_block(p->kv_type_v)) {
        err_set(err, "a %s / %s KV cache needs a head size that is a multiple of 32 (this model's is %d)",
                type_info(p->kv_type_k)->name, type_info(p->kv_type_v)->name, cfg->head_dim);
        return NULL;
    }
    if (cfg->n_head / cfg->n_head_kv > GROK_MAX_GROUP) {
        err_set(err, "%d query heads per key/value head: at most %d are supported", cfg->n_head / cfg->n_head_kv,
                GROK_MAX_GROUP);
        return NULL;
    }
    Cpu *c = calloc(1, sizeof *c);
    if (!c) {
        err_set(err, "out of memory");
        return NULL;
    }
    c->base = (Backend){
        .name = "cpu",
        .alloc = cpu_alloc,
        .release = cpu_release,
        .kv_bytes = cpu_kv_bytes,
        .embed = cpu_embed,
        .rmsnorm = cpu_rmsnorm,
        .add_rmsnorm = cpu_add_rmsnorm,
        .matmul = cpu_matmul,
        .matmul_experts = cpu_matmul_experts,
        .rope_store = cpu_rope_store,
        .attention = cpu_attention,
        .route = cpu_route,
        .geglu = cpu_geglu,
        .combine = cpu_combine,
        .add_scale = cpu_add_scale,
        .select_rows = cpu_select_rows,
        .logits = cpu_logits,
        .kv_shift = cpu_kv_shift,
        .kv_pos_bytes = cpu_kv_pos_bytes,
        .kv_read = cpu_kv_read,
        .kv_write = cpu_kv_write,
        .n_threads = cpu_n_threads,
        .free = cpu_free,
    };
    c->m = m;
    c->p = *p;
    if (c->p.n_threads <= 0) c->p.n_threads = cpu_count();
    /* the share's heads (a Model put together by hand, as the tests do, has
     * no share: all of them) */
    c->kv0 = m->share.n_head_kv > 0 ? m->share.head0_kv : 0;
    c->n_kv = m->share.n_head_kv > 0 ? m->share.n_head_kv : cfg->n_head_kv;
    c->kv_dim = c->n_kv * cfg->head_dim;
    c->q_dim = c->n_kv * (cfg->n_head / cfg->n_head_kv) * cfg->head_dim;
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
    if (!c->tp) {
        cpu_free(&c->base);
        return NULL;
    }
    const int nth = tp_size(c->tp);
    c->k_cache = zalloc(rows, c->k_row, &ok);
    c->v_cache = zalloc(rows, c->v_row, &ok);
    c->inv_freq = zalloc((size_t)cfg->head_dim / 2, sizeof(float), &ok);
    c->rope_cs = zalloc(B * (size_t)cfg->head_dim, sizeof(float), &ok);
    c->rope_pos = zalloc(B, sizeof(int), &ok);
    c->router = zalloc(B * cfg->n_expert, sizeof(float), &ok);
    c->ex_fill = zalloc((size_t)cfg->n_expert, sizeof(int), &ok);
    c->gathered = zalloc(rows_k * E, sizeof(float), &ok);
    for (int i = 0; i < N_ACT; i++) c->act[i] = zalloc(rows_k * widest, sizeof(float), &ok);
    const size_t group = (size_t)(cfg->n_head / cfg->n_head_kv);
    c->scores = zalloc((size_t)nth * group * (c->p.n_ctx + (size_t)cfg->head_dim), sizeof(float), &ok);
    c->qprep = zalloc((size_t)nth * group, kv_query_bytes(c->p.kv_type_k, cfg->head_dim), &ok);
    c->shift_tmp = zalloc((size_t)nth * (c->kv_dim + 2 * (size_t)cfg->head_dim), sizeof(float), &ok);
    c->share = aligned_alloc(_Alignof(MatShare), (size_t)nth * sizeof(MatShare));
    ok = ok && c->share;
    if (!ok) {
        err_set(err, "out of memory allocating the context (KV cache %.1f MiB)",
                (double)rows * (c->k_row + c->v_row) / 1048576.0);
        cpu_free(&c->base);
        return NULL;
    }
    /* inv_freq[d] = 1 / base^(2d/hd), in f32 as model.py RotaryEmbedding */
    for (int d = 0; d < cfg->head_dim / 2; d++)
        c->inv_freq[d] = (float)(1.0 / pow((double)cfg->rope_base, (2.0 * d) / cfg->head_dim));
    for (size_t t = 0; t < B; t++) c->rope_pos[t] = -1;
    return &c->base;
}
