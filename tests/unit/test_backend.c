/* test_backend.c - each operation of the backend interface (backend.h) on the
 * CPU backend against a plain computation written here: products with every
 * kind of weight (shared and unshared inputs, more activation formats than
 * the backend prepares at once, token counts on both kernel paths, row
 * ranges), products over routed experts, routing, the combine, norms,
 * selection, logits, RoPE + KV store + attention (GQA, two sequences,
 * Grok-2's temperature, soft-cap) and the KV cache's shift, read and write.
 * A new backend's test compares its operations with these. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kv.h"
#include "model.h"
#include "quant.h"
#include "check.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* -1..1 */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void *xmalloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        printf("out of memory\n");
        exit(1);
    }
    return p;
}

/* A random (rows, cols) weight quantized to `type`. */
static Tensor make_weight(uint32_t type, int64_t rows, int64_t cols) {
    Tensor t = {0};
    t.type = type, t.rows = rows, t.cols = cols, t.row_bytes = type_row_size(type, cols);
    uint8_t *d = xmalloc((size_t)rows * t.row_bytes);
    float *row = xmalloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) row[i] = frand();
        quantize_row(type, row, d + (size_t)r * t.row_bytes, cols);
    }
    free(row);
    t.data = d;
    return t;
}

/* W[r] . x as the kernels define it: x in the weight's activation format,
 * the dot product of the kernels at this machine's level. */
static float ref_dot(const Tensor *w, int64_t r, const float *x) {
    const uint32_t vt = vec_dot_type(w->type);
    uint8_t *xq = xmalloc(type_row_size(vt, w->cols) + sizeof(float) * (size_t)w->cols);
    const void *a = x;
    if (vt != GGML_TYPE_F32) {
        quantize_row(vt, x, xq, w->cols);
        a = xq;
    }
    const float v = vec_dot(w->type, (const uint8_t *)w->data + (size_t)r * w->row_bytes, a, w->cols);
    free(xq);
    return v;
}

static float *rand_vec(size_t n) {
    float *v = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = frand();
    return v;
}

static ModelConfig config(void) {
    ModelConfig c = {0};
    c.n_vocab = 300, c.n_embd = 256, c.n_layer = 2, c.n_head = 8, c.n_head_kv = 2, c.head_dim = 32;
    c.n_ff = 512, c.n_expert = 8, c.n_expert_used = 2, c.n_ctx_train = 64, c.eps = 1e-5f, c.rope_base = 10000.0f;
    c.embedding_scale = 2.0f, c.logit_scale = 0.5f, c.attn_scale = 0.125f, c.attn_softcap = 30.0f;
    c.router_softcap = 0.0f, c.final_softcap = 0.0f, c.attn_temp_len = 0;
    return c;
}

static Backend *new_cpu_threads(const Model *m, int n_ctx, int n_seq, uint32_t kv, int threads) {
    Error err = {0};
    const BackendParams p = {n_ctx, n_seq, 64, threads, kv, kv, 0};
    Backend *b = backend_cpu_new(m, &p, &err);
    if (!b) {
        printf("backend_cpu_new: %s\n", err.msg);
        exit(1);
    }
    return b;
}

static Backend *new_cpu(const Model *m, int n_ctx, int n_seq, uint32_t kv) {
    return new_cpu_threads(m, n_ctx, n_seq, kv, 2);
}

/* Products: a list mixing weight types that share one input and one that
 * reads another, so the backend runs out of prepared inputs mid-list; token
 * counts on the generation (< 16) and prompt paths; row ranges. Every value
 * must equal the kernels' dot product of one row exactly, whatever the list. */
static void test_matmul(Backend *b) {
    const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_F16, GGML_TYPE_Q6_K, GGML_TYPE_F32,
                              GGML_TYPE_Q4_0, GGML_TYPE_BF16, GGML_TYPE_Q5_K};
    enum { NT = 8, N = 512, ROWS = 96 };
    const int toks[] = {1, 3, 20};
    Tensor w[NT];
    for (int i = 0; i < NT; i++) w[i] = make_weight(types[i], ROWS, N);
    for (int ti = 0; ti < 3; ti++) {
        const int nt = toks[ti];
        float *x1 = rand_vec((size_t)nt * N), *x2 = rand_vec((size_t)nt * N);
        float *out = xmalloc((size_t)NT * nt * ROWS * sizeof(float));
        MatMul mm[NT];
        for (int i = 0; i < NT; i++) { /* odd entries read x2; entry 2 only rows 16..80 */
            const int64_t r0 = i == 2 ? 16 : 0, rows = i == 2 ? 64 : ROWS;
            mm[i] = (MatMul){&w[i], r0, rows, i % 2 ? x2 : x1, nt, out + (size_t)i * nt * ROWS, ROWS};
        }
        b->matmul(b, mm, NT);
        int bad = 0;
        for (int i = 0; i < NT; i++)
            for (int t = 0; t < nt; t++)
                for (int64_t r = 0; r < mm[i].rows; r++) {
                    const float want = ref_dot(&w[i], mm[i].row0 + r, mm[i].x + (size_t)t * N);
                    const float got = mm[i].out[(size_t)t * ROWS + r];
                    if (got != want && bad++ < 3)
                        printf("  matmul %s tok %d row %lld: %g != %g\n", type_info(types[i])->name, t, (long long)r,
                               got, want);
                }
        CHECK(bad == 0, "matmul list, %d tokens: %d values differ from one-row dot products", nt, bad);
        free(x1), free(x2), free(out);
    }
    for (int i = 0; i < NT; i++) free((void *)w[i].data);
}

/* Routing, products over experts (by token and by assignment, a row range
 * of each expert), combine. */
static void test_experts(Backend *b, const ModelConfig *cfg) {
    const int E = cfg->n_embd, X = cfg->n_expert, K = cfg->n_expert_used, F = cfg->n_ff;
    const int toks[] = {1, 5, 24};
    float *router = rand_vec((size_t)X * E);
    Tensor gate = make_weight(GGML_TYPE_Q8_0, (int64_t)X * F, E), up = make_weight(GGML_TYPE_Q4_K, (int64_t)X * F, E);
    for (int ti = 0; ti < 3; ti++) {
        const int nt = toks[ti], na = nt * K;
        float *u = rand_vec((size_t)nt * E);
        Routing r = {0};
        r.sel = xmalloc((size_t)na * sizeof(int)), r.gate = xmalloc((size_t)na * sizeof(float));
        r.order = xmalloc((size_t)na * sizeof(int)), r.ex_start = xmalloc((size_t)(X + 1) * sizeof(int));
        b->route(b, router, u, nt, &r);
        /* routing: top-K of softmax(router . u), grouped by expert */
        int bad = 0;
        for (int t = 0; t < nt; t++) {
            double p[64], sum = 0, mx = -1e30;
            for (int e = 0; e < X; e++) {
                p[e] = 0;
                for (int i = 0; i < E; i++) p[e] += (double)router[(size_t)e * E + i] * u[(size_t)t * E + i];
                mx = p[e] > mx ? p[e] : mx;
            }
            for (int e = 0; e < X; e++) sum += p[e] = exp(p[e] - mx);
            for (int k = 0; k < K; k++) {
                const int s = r.sel[t * K + k];
                int above = 0; /* experts more probable than the k-th choice: exactly k */
                for (int e = 0; e < X; e++) above += p[e] > p[s] * (1 + 1e-6);
                bad += above != k || fabs(r.gate[t * K + k] - p[s] / sum) > 1e-5;
            }
        }
        CHECK(bad == 0 && r.n_tok == nt && r.n_used == K && r.n_expert == X, "route, %d tokens: %d bad choices", nt,
              bad);
        bad = r.ex_start[0] != 0 || r.ex_start[X] != na;
        for (int e = 0; e < X; e++)
            for (int i = r.ex_start[e]; i < r.ex_start[e + 1]; i++) bad += r.sel[r.order[i]] != e;
        CHECK(bad == 0, "routing grouped by expert");

        /* gate (by token, rows 32..160 of each expert) and up (all rows) */
        const int R0 = 32, RN = 128;
        float *hg = xmalloc((size_t)na * F * sizeof(float)), *hu = xmalloc((size_t)na * F * sizeof(float));
        const ExpertMatMul mm[2] = {{&gate, F, R0, RN, u, true, hg, F}, {&up, F, 0, F, u, true, hu, F}};
        b->matmul_experts(b, &r, mm, 2);
        bad = 0;
        for (int i = 0; i < na; i++) {
            const int a = r.order[i], t = a / K, e = r.sel[a];
            for (int j = 0; j < RN; j++)
                bad += hg[(size_t)i * F + j] != ref_dot(&gate, (int64_t)e * F + R0 + j, u + (size_t)t * E);
            for (int j = 0; j < F; j += 7)
                bad += hu[(size_t)i * F + j] != ref_dot(&up, (int64_t)e * F + j, u + (size_t)t * E);
        }
        CHECK(bad == 0, "expert products by token, %d tokens: %d values differ", nt, bad);

        /* down-like product by assignment: rows of hu */
        Tensor down = make_weight(GGML_TYPE_Q6_K, (int64_t)X * E, F);
        float *dn = xmalloc((size_t)na * E * sizeof(float));
        const ExpertMatMul dm = {&down, E, 0, E, hu, false, dn, E};
        b->matmul_experts(b, &r, &dm, 1);
        bad = 0;
        for (int i = 0; i < na; i++)
            for (int j = 0; j < E; j += 5)
                bad += dn[(size_t)i * E + j] != ref_dot(&down, (int64_t)r.sel[r.order[i]] * E + j, hu + (size_t)i * F);
        CHECK(bad == 0, "expert products by assignment, %d tokens: %d values differ", nt, bad);

        float *out = xmalloc((size_t)nt * E * sizeof(float));
        b->combine(b, &r, dn, E, out);
        double err = 0;
        for (int t = 0; t < nt; t++)
            for (int j = 0; j < E; j++) {
                double want = 0;
                for (int i = 0; i < na; i++)
                    if (r.order[i] / K == t) want += (double)r.gate[r.order[i]] * dn[(size_t)i * E + j];
                err = fmax(err, fabs(out[(size_t)t * E + j] - want));
            }
        CHECK(err < 1e-4, "combine: max error %g", err);
        free(out), free(dn), free((void *)down.data);
        free(hg), free(hu), free(u), free(r.sel), free(r.gate), free(r.order), free(r.ex_start);
    }
    free(router), free((void *)gate.data), free((void *)up.data);
}

/* embed, rmsnorm, add_rmsnorm, geglu, add_scale, select_rows, logits */
static void test_simple(Backend *b, const ModelConfig *cfg) {
    const int E = cfg->n_embd, NT = 5;
    Tensor emb = make_weight(GGML_TYPE_Q8_0, cfg->n_vocab, E);
    const int tok[] = {0, 299, 7, 7, 150};
    float *x = xmalloc((size_t)NT * E * sizeof(float)), *row = xmalloc((size_t)E * sizeof(float));
    b->embed(b, &emb, tok, NT, 2.0f, x);
    int bad = 0;
    for (int t = 0; t < NT; t++) {
        dequantize_row(emb.type, (const uint8_t *)emb.data + (size_t)tok[t] * emb.row_bytes, row, E);
        for (int i = 0; i < E; i++) bad += x[(size_t)t * E + i] != row[i] * 2.0f;
    }
    CHECK(bad == 0, "embed");

    float *w = rand_vec(E), *y = rand_vec((size_t)NT * E), *x0 = xmalloc((size_t)NT * E * sizeof(float));
    memcpy(x0, x, (size_t)NT * E * sizeof(float));
    float *n = xmalloc((size_t)NT * E * sizeof(float)), *y0 = xmalloc((size_t)NT * E * sizeof(float));
    memcpy(y0, y, (size_t)NT * E * sizeof(float));
    b->rmsnorm(b, n, x, w, NT, E, 1e-5f);
    b->add_rmsnorm(b, x, y, w, NT, E, 1e-5f);
    double e1 = 0, e2 = 0;
    for (int t = 0; t < NT; t++) {
        double sx = 0, sy = 0;
        for (int i = 0; i < E; i++) sx += (double)x0[t * E + i] * x0[t * E + i], sy += (double)y0[t * E + i] * y0[t * E + i];
        const double rx = 1 / sqrt(sx / E + 1e-5), ry = 1 / sqrt(sy / E + 1e-5);
        for (int i = 0; i < E; i++) {
            /* two fmax reductions in one loop crash Debian's aarch64 GCC 12.2 (internal compiler
             * error in vect_transform_reduction at -O2): comparisons instead */
            const double d1 = fabs(n[t * E + i] - w[i] * x0[t * E + i] * rx);
            const double d2 = fabs(x[t * E + i] - (x0[t * E + i] + w[i] * y0[t * E + i] * ry));
            if (d1 > e1) e1 = d1;
            if (d2 > e2) e2 = d2;
        }
    }
    CHECK(e1 < 1e-4 && e2 < 1e-4, "rmsnorm %g, add_rmsnorm %g", e1, e2);

    float *g = rand_vec(64), *u = rand_vec(64), *g0 = xmalloc(64 * sizeof(float));
    memcpy(g0, g, 64 * sizeof(float));
    b->geglu(b, g, u, 64);
    double e3 = 0;
    for (int i = 0; i < 64; i++) {
        const double v = g0[i];
        e3 = fmax(e3, fabs(g[i] - 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))) * u[i]));
    }
    CHECK(e3 < 1e-5, "geglu: max error %g", e3);
    memcpy(g0, g, 64 * sizeof(float));
    b->add_scale(b, g, u, 0.5f, 64);
    bad = 0;
    for (int i = 0; i < 64; i++) bad += g[i] != (g0[i] + u[i]) * 0.5f;
    CHECK(bad == 0, "add_scale");

    memcpy(x0, x, (size_t)NT * E * sizeof(float));
    const int rows[3] = {1, 3, 4};
    b->select_rows(b, x, rows, 3, E);
    CHECK(!memcmp(x, x0 + E, (size_t)E * sizeof(float)) && !memcmp(x + E, x0 + 3 * E, (size_t)E * sizeof(float)) &&
              !memcmp(x + 2 * E, x0 + 4 * E, (size_t)E * sizeof(float)),
          "select_rows");

    float *lg = xmalloc((size_t)NT * cfg->n_vocab * sizeof(float));
    b->logits(b, &emb, n, NT, 0.5f, 3.0f, lg);
    bad = 0;
    for (int t = 0; t < NT; t++)
        for (int v = 0; v < cfg->n_vocab; v += 3) {
            const float want = 3.0f * tanhf(ref_dot(&emb, v, n + (size_t)t * E) * 0.5f / 3.0f);
            bad += fabsf(lg[(size_t)t * cfg->n_vocab + v] - want) > 1e-6f * (1 + fabsf(want));
        }
    CHECK(bad == 0, "logits (scale, soft-cap): %d differ", bad);
    free(lg), free(g), free(u), free(g0), free(n), free(y0), free(w), free(y), free(x0), free(x), free(row);
    free((void *)emb.data);
}

/* RoPE + store + attention against float64 math; the KV cache's read and
 * write; a shift matches the keys RoPE would give at the new positions. */
static void test_attention(const ModelConfig *cfg0) {
    ModelConfig cfg = *cfg0;
    cfg.attn_temp_len = 4; /* Grok-2's temperature from position 5 on */
    Model m = {0};
    m.cfg = cfg;
    const int NCTX = 32, NSEQ = 2, hd = cfg.head_dim, H = cfg.n_head, G = cfg.n_head_kv;
    const int qd = H * hd, kd = G * hd, NT = 12;
    Backend *b = new_cpu(&m, NCTX, NSEQ, GGML_TYPE_F32);
    /* sequence 0 gets positions 0..7, sequence 1 positions 0..3, interleaved in one batch */
    int pos[NT], seq[NT];
    for (int t = 0; t < NT; t++) seq[t] = t % 3 == 2, pos[t] = 0;
    int next[2] = {0, 0};
    for (int t = 0; t < NT; t++) pos[t] = next[seq[t]]++;
    float *q = rand_vec((size_t)NT * qd), *k = rand_vec((size_t)NT * kd), *v = rand_vec((size_t)NT * kd);
    float *q0 = xmalloc((size_t)NT * qd * sizeof(float)), *k0 = xmalloc((size_t)NT * kd * sizeof(float));
    memcpy(q0, q, (size_t)NT * qd * sizeof(float)), memcpy(k0, k, (size_t)NT * kd * sizeof(float));
    float *out = xmalloc((size_t)NT * qd * sizeof(float));
    b->rope_store(b, 0, q, k, v, pos, seq, NT);
    b->attention(b, 0, q, pos, seq, NT, out);
    /* float64: rope(q0), rope(k0), then attention over the earlier tokens of the same sequence */
    double *rq = xmalloc((size_t)NT * qd * sizeof(double)), *rk = xmalloc((size_t)NT * kd * sizeof(double));
    for (int t = 0; t < NT; t++)
        for (int h = 0; h < H + G; h++) {
            const float *src = h < H ? q0 + (size_t)t * qd + (size_t)h * hd : k0 + (size_t)t * kd + (size_t)(h - H) * hd;
            double *dst = h < H ? rq + (size_t)t * qd + (size_t)h * hd : rk + (size_t)t * kd + (size_t)(h - H) * hd;
            for (int d = 0; d < hd / 2; d++) {
                const double th = pos[t] * pow(cfg.rope_base, -2.0 * d / hd);
                dst[d] = src[d] * cos(th) - src[d + hd / 2] * sin(th);
                dst[d + hd / 2] = src[d + hd / 2] * cos(th) + src[d] * sin(th);
            }
        }
    double err = 0;
    for (int t = 0; t < NT; t++)
        for (int h = 0; h < H; h++) {
            const int g = h / (H / G);
            double s[NT], mx = -1e30, sum = 0;
            const double temp = pos[t] > cfg.attn_temp_len ? log2(pos[t]) / log2(cfg.attn_temp_len) : 1.0;
            for (int j = 0; j < NT; j++) {
                s[j] = -1e30;
                if (seq[j] != seq[t] || pos[j] > pos[t]) continue;
                double d = 0;
                for (int i = 0; i < hd; i++) d += rq[(size_t)t * qd + h * hd + i] * rk[(size_t)j * kd + g * hd + i];
                s[j] = 30.0 * tanh(d * cfg.attn_scale / 30.0) * temp;
                mx = s[j] > mx ? s[j] : mx;
            }
            for (int j = 0; j < NT; j++) sum += s[j] = s[j] > -1e29 ? exp(s[j] - mx) : 0;
            for (int i = 0; i < hd; i++) {
                double o = 0;
                for (int j = 0; j < NT; j++) o += s[j] / sum * v[(size_t)j * kd + g * hd + i];
                err = fmax(err, fabs(out[(size_t)t * qd + h * hd + i] - o));
            }
        }
    CHECK(err < 2e-5, "rope + store + attention (GQA, 2 sequences, temperature): max error %g", err);

    /* read / write round trip, and a shift of sequence 0's positions 2..8 down by 2 */
    const size_t pb = b->kv_pos_bytes(b);
    CHECK(pb == (size_t)cfg.n_layer * 2 * kd * sizeof(float), "kv_pos_bytes %zu", pb);
    CHECK(b->kv_bytes(b) == pb * NCTX * NSEQ, "kv_bytes");
    uint8_t *buf = xmalloc(8 * pb), *buf2 = xmalloc(8 * pb);
    b->kv_read(b, 0, 0, 8, buf);
    b->kv_write(b, 1, 8, 16, buf);
    b->kv_read(b, 1, 8, 16, buf2);
    CHECK(!memcmp(buf, buf2, 8 * pb), "kv write then read");
    b->kv_shift(b, 0, 2, 8, -2);
    b->kv_read(b, 0, 0, 6, buf2);
    /* layer 0, head g, the key at new position p (was token with pos p+2 of sequence 0) */
    double es = 0;
    for (int t = 0; t < NT; t++) {
        if (seq[t] != 0 || pos[t] < 2) continue;
        const int p = pos[t] - 2;
        for (int g = 0; g < G; g++) {
            const float *key = (const float *)(buf2 + (size_t)g * 6 * 2 * hd * sizeof(float)) + (size_t)p * hd;
            for (int d = 0; d < hd / 2; d++) {
                const double th = p * pow(cfg.rope_base, -2.0 * d / hd);
                const float *src = k0 + (size_t)t * kd + (size_t)g * hd;
                es = fmax(es, fabs(key[d] - (src[d] * cos(th) - src[d + hd / 2] * sin(th))));
                es = fmax(es, fabs(key[d + hd / 2] - (src[d + hd / 2] * cos(th) + src[d] * sin(th))));
            }
        }
    }
    CHECK(es < 1e-5, "kv_shift re-rotates keys to their new positions: max error %g", es);
    free(buf), free(buf2), free(rq), free(rk), free(q), free(k), free(v), free(q0), free(k0), free(out);
    b->free(b);
}

/* Backends holding a share of the heads (the experts split's attention cut
 * by heads, model.h ModelShare): each computes its heads' attention as the
 * whole backend does, caches only them, and reads / writes them at their
 * places in the whole positions' format, so that the shares' reads together
 * are the whole backend's. */
static void test_heads_share(const ModelConfig *cfg) {
    const int NCTX = 16, NT = 5, hd = cfg->head_dim, H = cfg->n_head, G = cfg->n_head_kv, grp = H / G;
    const int qd = H * hd, kd = G * hd;
    Model whole = {0};
    whole.cfg = *cfg;
    Backend *w = new_cpu(&whole, NCTX, 1, GGML_TYPE_Q8_0);
    int pos[NT], seq[NT];
    for (int t = 0; t < NT; t++) pos[t] = t, seq[t] = 0;
    float *q = rand_vec((size_t)NT * qd), *k = rand_vec((size_t)NT * kd), *v = rand_vec((size_t)NT * kd);
    float *out = xmalloc((size_t)NT * qd * sizeof(float));
    float *qs = xmalloc((size_t)NT * qd * sizeof(float)), *ks = xmalloc((size_t)NT * kd * sizeof(float));
    float *vs = xmalloc((size_t)NT * kd * sizeof(float)), *os = xmalloc((size_t)NT * qd * sizeof(float));
    const size_t pb = w->kv_pos_bytes(w);
    uint8_t *all = xmalloc(NT * pb), *parts = xmalloc(NT * pb);
    memset(parts, 0xAA, NT * pb);
    for (int r = 0; r < G; r++) { /* one key/value head each: heads r..r */
        Model part = whole;
        part.share.head0_kv = r, part.share.n_head_kv = 1, part.share.attn_partial = true;
        Backend *b = new_cpu(&part, NCTX, 1, GGML_TYPE_Q8_0);
        CHECK(b->kv_pos_bytes(b) == pb && b->kv_bytes(b) * (size_t)G == w->kv_bytes(w),
              "heads %d..%d: the whole positions' format, 1/%d of the cache", r, r, G);
        for (int t = 0; t < NT; t++) { /* the share's columns of q, k, v */
            memcpy(qs + (size_t)t * grp * hd, q + (size_t)t * qd + (size_t)r * grp * hd, (size_t)grp * hd * sizeof(float));
            memcpy(ks + (size_t)t * hd, k + (size_t)t * kd + (size_t)r * hd, (size_t)hd * sizeof(float));
            memcpy(vs + (size_t)t * hd, v + (size_t)t * kd + (size_t)r * hd, (size_t)hd * sizeof(float));
        }
        b->rope_store(b, 1, qs, ks, vs, pos, seq, NT);
        b->attention(b, 1, qs, pos, seq, NT, os);
        if (r == 0) {
            float *q2 = xmalloc((size_t)NT * qd * sizeof(float)), *k2 = xmalloc((size_t)NT * kd * sizeof(float));
            memcpy(q2, q, (size_t)NT * qd * sizeof(float)), memcpy(k2, k, (size_t)NT * kd * sizeof(float));
            w->rope_store(w, 1, q2, k2, v, pos, seq, NT);
            w->attention(w, 1, q2, pos, seq, NT, out);
            w->kv_read(w, 0, 0, NT, all);
            free(q2), free(k2);
        }
        bool same = true;
        for (int t = 0; t < NT; t++)
            same = same && !memcmp(os + (size_t)t * grp * hd, out + (size_t)t * qd + (size_t)r * grp * hd,
                                   (size_t)grp * hd * sizeof(float));
        CHECK(same, "heads %d..%d: attention bit for bit the whole backend's", r, r);
        b->kv_read(b, 0, 0, NT, parts);
        /* a write of the whole positions restores the share's heads */
        b->kv_shift(b, 0, 0, NT, 3);
        b->kv_write(b, 0, 0, NT, all);
        uint8_t *again = xmalloc(NT * pb);
        memcpy(again, parts, NT * pb);
        b->kv_read(b, 0, 0, NT, again);
        CHECK(!memcmp(again, parts, NT * pb), "heads %d..%d: write of the whole, then read", r, r);
        free(again);
        b->free(b);
    }
    CHECK(!memcmp(all, parts, NT * pb), "the shares' reads together are the whole backend's");
    free(q), free(k), free(v), free(out), free(qs), free(ks), free(vs), free(os), free(all), free(parts);
    w->free(w);
}

static void test_errors(const ModelConfig *cfg) {
    Model m = {0};
    m.cfg = *cfg;
    Error err = {0};
    const BackendParams p = {16, 1, 8, 1, GGML_TYPE_Q4_K, GGML_TYPE_F16, 0};
    CHECK(backend_cpu_new(&m, &p, &err) == NULL && strstr(err.msg, "KV cache types"), "bad KV type refused: %s",
          err.msg);
}

int main(void) {
    ModelConfig cfg = config();
    Model m = {0};
    m.cfg = cfg;
    Backend *b = new_cpu(&m, 16, 1, GGML_TYPE_F16);
    CHECK(!strcmp(b->name, "cpu") && b->n_threads(b) == 2, "name and threads");
    test_matmul(b);
    test_experts(b, &cfg);
    test_simple(b, &cfg);
    b->free(b);
    /* more threads than two: the generation path's shares of a run are
     * uneven, some empty, and threads take chunks from each other's */
    const int threads[] = {3, 7};
    for (int i = 0; i < 2; i++) {
        b = new_cpu_threads(&m, 16, 1, GGML_TYPE_F16, threads[i]);
        test_matmul(b);
        test_experts(b, &cfg);
        b->free(b);
    }
    test_attention(&cfg);
    test_heads_share(&cfg);
    test_errors(&cfg);
    return check_report("backend");
}
