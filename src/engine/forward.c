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
 * and the order of operations stay in this file; the memory and the kernels
 * belong to a backend (backend.h; the CPU's is cpu/backend_cpu.c), which
 * this file calls one operation at a time.
 *
 * Several processes (MPI ranks, dist/dist_engine.h) may run one model: the
 * calls marked "dist:" send each Context call from rank 0 to the others and
 * exchange activations in the forward pass; with one process they do
 * nothing. The exchanges read and write the activations in place, which
 * assumes backend memory the host can address (the CPU backend's). */
#include "forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "dist_engine.h"
#include "dist_pipe.h"

#define DEFAULT_CTX_CAP 4096   /* default context: min(model's, this) */
#define DEFAULT_BATCH 512

/* The activations of one chunk of up to n_batch tokens, in backend memory. */
struct Context {
    const Model *m;
    ContextParams p;
    int dist_id;           /* this Context on the other ranks (dist_engine.h), -1 = none */
    Backend *be;
    int kv_dim;            /* the share's key/value heads * head_dim (all n_head_kv but with attention cut by heads) */
    int q_dim;             /* the share's query heads * head_dim */
    float *x;              /* (n_batch, n_embd) residual stream */
    float *u;              /* (n_batch, n_embd) normed input of a block */
    float *q, *k, *v;      /* (n_batch, q_dim), (n_batch, kv_dim) x2 */
    float *att;            /* (n_batch, q_dim) attention output before Wo */
    float *proj;           /* (n_batch, n_embd) */
    float *moe;            /* (n_batch, n_embd) MoE sum */
    Routing r;             /* sel, gate: (n_batch, n_expert_used); order: (n_batch * n_expert_used);
                              ex_start: (n_expert + 1) */
    float *hg, *hu;        /* (n_batch * max(used, 1), max(n_ff, n_ff_dense)) expert hidden */
    float *down;           /* (n_batch * n_expert_used, n_embd) expert outputs, in expert order */
    float *out_rows;       /* (n_batch, n_embd) normed rows that want logits */
    int *rows;             /* (n_batch) host: the rows that want logits */
    char note[GROK_ERR_LEN]; /* --device auto with a GPU that did not take the model: why */
    float *lg_part;        /* dist, experts split: (rows, share of n_vocab) host, this process's logits */
    size_t lg_cap;         /* floats lg_part holds */
    DistPipe *pipe;        /* dist, layers split: the pipeline's buffers (dist_pipe.h); NULL otherwise */
    /* forward_submit without a pipe: the batch kept until forward_collect */
    bool held;
    Batch hold;            /* points into hold_i, hold_out */
    int *hold_i;           /* (3, hold_cap) tokens, positions, sequences */
    bool *hold_out;        /* (hold_cap) */
    size_t hold_cap;
};

/* 0, or -1 with err set when the backend failed (a GPU's failed launch). */
static int be_check(const Context *c, Error *err) { return c->be->check ? c->be->check(c->be, err) : 0; }

/* ---- the KV cache: context shift, saving and restoring positions -------- */

int context_shift(Context *c, int seq, int p0, int p1, int delta, Error *err) {
    if (seq < 0 || seq >= c->p.n_seq) return err_set(err, "sequence %d does not exist (%d slots)", seq, c->p.n_seq);
    if (p0 < 0 || p1 < p0 || p1 > c->p.n_ctx || p0 + delta < 0 || p1 + delta > c->p.n_ctx)
        return err_set(err, "cannot move positions %d..%d by %d in a context of %d", p0, p1, delta, c->p.n_ctx);
    if (delta == 0 || p1 == p0) return 0;
    if (dist_cmd_shift(c->p.dist, c->dist_id, seq, p0, p1, delta, err)) return -1; /* dist: every rank shifts */
    c->be->kv_shift(c->be, seq, p0, p1, delta);
    return be_check(c, err);
}

size_t context_kv_pos_bytes(const Context *c) { return c->be->kv_pos_bytes(c->be); }

int context_kv_read(const Context *c, int seq, int p0, int p1, void *buf, Error *err) {
    if (seq < 0 || seq >= c->p.n_seq || p0 < 0 || p1 < p0 || p1 > c->p.n_ctx)
        return err_set(err, "no positions %d..%d in sequence %d", p0, p1, seq);
    c->be->kv_read(c->be, seq, p0, p1, buf);
    if (be_check(c, err)) return -1;
    /* dist, layers split: the other ranks' layers over this one's stale copies */
    return dist_cmd_kv_read(c->p.dist, c->m, c->dist_id, seq, p0, p1, buf,
                            (size_t)(p1 - p0) * context_kv_pos_bytes(c) / (size_t)c->m->cfg.n_layer, err);
}

int context_kv_write(Context *c, int seq, int p0, int p1, const void *buf, Error *err) {
    if (seq < 0 || seq >= c->p.n_seq || p0 < 0 || p1 < p0 || p1 > c->p.n_ctx)
        return err_set(err, "no positions %d..%d in sequence %d", p0, p1, seq);
    if (dist_cmd_kv_write(c->p.dist, c->dist_id, seq, p0, p1, buf, (size_t)(p1 - p0) * context_kv_pos_bytes(c), err))
        return -1; /* dist: every rank restores its cache */
    c->be->kv_write(c->be, seq, p0, p1, buf);
    return be_check(c, err);
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

/* x += rmsnorm(Wo . attention(rope(Wq u), rope(Wk u), Wv u)) * attn_out_norm,
 * u = rmsnorm(x) * attn_norm; keys and values go to the cache.
 * This process computes the key/value heads [head0_kv, head0_kv + n_head_kv)
 * and their query heads (model.h ModelShare): all of them, unless attention
 * is cut by heads over processes, when Wo's output is its part of a sum. */
static int attention_block(Context *c, int il, int nt, const int *pos, const int *seq, Error *err) {
    Backend *be = c->be;
    const ModelConfig *cfg = &c->m->cfg;
    const ModelShare *sh = &c->m->share;
    const Layer *L = &c->m->layers[il];
    const int E = cfg->n_embd, hd = cfg->head_dim;
    /* the share's first rows of Wq (its query heads) and of Wk, Wv */
    const int64_t q0 = (int64_t)sh->head0_kv * (cfg->n_head / cfg->n_head_kv) * hd, k0 = (int64_t)sh->head0_kv * hd;
    be->rmsnorm(be, c->u, c->x, L->attn_norm, nt, E, cfg->eps);
    if (L->wqkv.data) { /* one fused weight: q, k and v are row ranges of it */
        const int64_t QD = (int64_t)cfg->n_head * hd, KD = (int64_t)cfg->n_head_kv * hd;
        const MatMul mm[3] = {
            {&L->wqkv, q0, c->q_dim, c->u, nt, c->q, c->q_dim},
            {&L->wqkv, QD + k0, c->kv_dim, c->u, nt, c->k, c->kv_dim},
            {&L->wqkv, QD + KD + k0, c->kv_dim, c->u, nt, c->v, c->kv_dim},
        };
        be->matmul(be, mm, 3);
    } else {
        const MatMul mm[3] = {
            {&L->wq, q0, c->q_dim, c->u, nt, c->q, c->q_dim},
            {&L->wk, k0, c->kv_dim, c->u, nt, c->k, c->kv_dim},
            {&L->wv, k0, c->kv_dim, c->u, nt, c->v, c->kv_dim},
        };
        be->matmul(be, mm, 3);
    }
    be->rope_store(be, il, c->q, c->k, c->v, pos, seq, nt);
    be->attention(be, il, c->q, pos, seq, nt, c->att);
    const MatMul wo = {&L->wo, 0, E, c->att, nt, c->proj, E}; /* (dist: Wo a view of the share's columns) */
    be->matmul(be, &wo, 1);
    /* dist, experts split with attention cut by heads: Wo's product is
     * linear in its columns, so the whole output is the sum of the parts */
    if (sh->attn_partial && dist_sum_f32(c->p.dist, c->proj, (size_t)nt * E, err)) return -1;
    be->add_rmsnorm(be, c->x, c->proj, L->attn_out_norm, nt, E, cfg->eps);
    return 0;
}

/* x += rmsnorm(sum_e P[e] * Wdown_e(gelu_tanh(Wgate_e u) * Wup_e u)) * out_norm
 * over each token's top-k experts e, u = rmsnorm(x) * ffn_norm; Grok-2 adds
 * its shared MLP: (moe + mlp(u)) / sqrt(2) before the norm.
 * This process computes the FFN columns [ff0, ff0 + F) of each expert (and D
 * of the dense MLP's): all of them, unless the experts are split over
 * processes (model.h ModelShare), when the output is its part of a sum. */
static int moe_block(Context *c, int il, int nt, Error *err) {
    Backend *be = c->be;
    const ModelConfig *cfg = &c->m->cfg;
    const Layer *L = &c->m->layers[il];
    const ModelShare *sh = &c->m->share;
    const int E = cfg->n_embd, F = sh->n_ff, F0 = sh->ff0, FX = cfg->n_ff;
    const int64_t na = (int64_t)nt * cfg->n_expert_used;
    be->rmsnorm(be, c->u, c->x, L->ffn_norm, nt, E, cfg->eps);
    be->route(be, L->router, c->u, nt, &c->r);
    const ExpertMatMul gate_up[2] = {
        {&L->gate_exps, FX, F0, F, c->u, true, c->hg, F},
        {&L->up_exps, FX, F0, F, c->u, true, c->hu, F},
    };
    be->matmul_experts(be, &c->r, gate_up, 2);
    be->geglu(be, c->hg, c->hu, na * F); /* hg = gelu_tanh(hg) * hu */
    const ExpertMatMul down = {&L->down_exps, E, 0, E, c->hg, false, c->down, E};
    be->matmul_experts(be, &c->r, &down, 1);
    be->combine(be, &c->r, c->down, E, c->moe);

    if (cfg->n_ff_dense > 0) { /* Grok-2 shared MLP, combined as (mlp + moe) / sqrt(2) */
        const int D = sh->n_ff_dense, D0 = sh->ff0_dense;
        const MatMul mm[2] = {
            {&L->ffn_gate, D0, D, c->u, nt, c->hg, D},
            {&L->ffn_up, D0, D, c->u, nt, c->hu, D},
        };
        be->matmul(be, mm, 2); /* gate and up in one pass over the threads */
        be->geglu(be, c->hg, c->hu, (int64_t)nt * D);
        const MatMul dn = {&L->ffn_down, 0, E, c->hg, nt, c->proj, E};
        be->matmul(be, &dn, 1);
        be->add_scale(be, c->moe, c->proj, GROK2_MOE_COMBINE, (int64_t)nt * E);
    }
    /* dist, experts split: the sums are linear, so the whole output is the
     * sum of every process's part */
    if (sh->partial && dist_sum_f32(c->p.dist, c->moe, (size_t)nt * E, err)) return -1;
    be->add_rmsnorm(be, c->x, c->moe, L->out_norm, nt, E, cfg->eps);
    return 0;
}

/* Runs a chunk through this process's layers: the rows of c->x that then
 * want logits (all of them without `want`), 0 when the rows went on to
 * another process (dist, layers split), or -1 on an error (only from the
 * exchanges between processes). */
static int run_layers(Context *c, const int *tok, const int *pos, const int *seq, const bool *want, int nt,
                      Error *err) {
    Backend *be = c->be;
    const Model *m = c->m;
    const ModelConfig *cfg = &m->cfg;
    const ModelShare *sh = &m->share; /* the layers this process runs: all but with a layers split */
    const int E = cfg->n_embd, last = cfg->n_layer - 1;
    if (sh->layer0 == 0) be->embed(be, &m->tok_embd, tok, nt, cfg->embedding_scale, c->x);
    else if (dist_pipe_recv(c->pipe, c->x, nt, err)) return -1; /* dist: from the previous rank */
    int n_out = nt; /* rows of x that go on: after the last attention, only those that want logits */
    for (int il = sh->layer0; il < sh->layer1; il++) {
        if (attention_block(c, il, nt, pos, seq, err)) return -1;
        if (il == cfg->n_layer - 1 && want) {
            /* the keys and values of every token are cached by now; past this
             * point only the rows that want logits matter (as llama.cpp's
             * inp_out_ids): the last MoE block runs for them alone */
            n_out = 0;
            for (int t = 0; t < nt; t++)
                if (want[t]) c->rows[n_out++] = t;
            if (n_out == 0) return 0;
            be->select_rows(be, c->x, c->rows, n_out, E);
        }
        if (moe_block(c, il, il == last ? n_out : nt, err)) return -1;
        if (dist_pipe_poll(c->pipe, err)) return -1; /* dist: the pieces in flight move on meanwhile */
    }
    /* dist, layers split: on to the next rank, or from the last one back to
     * rank 0 (which gets them in forward, after its own pieces) */
    if (sh->layer1 <= last) return dist_pipe_send(c->pipe, c->x, nt, err) ? -1 : 0;
    if (sh->layer0 > 0) return dist_pipe_send(c->pipe, c->x, n_out, err) ? -1 : 0;
    return n_out;
}

/* The logits of the n_out rows in c->x: the rows of logits written, or -1 on
 * an error (an exchange between processes, or a non-finite logit). */
static int chunk_logits(Context *c, int n_out, float *logits, Error *err) {
    Backend *be = c->be;
    const Model *m = c->m;
    const ModelConfig *cfg = &m->cfg;
    const ModelShare *sh = &m->share;
    if (sh->n_vocab == 0 || (sh->logits && !logits)) return 0; /* dist: another rank computes them */
    be->rmsnorm(be, c->out_rows, c->x, m->output_norm, n_out, cfg->n_embd, cfg->eps);
    if (sh->n_vocab == cfg->n_vocab) {
        be->logits(be, &m->output, c->out_rows, n_out, cfg->logit_scale, cfg->final_softcap, logits);
    } else { /* dist, experts split: this rank's rows of the output, gathered on rank 0 */
        const size_t need = (size_t)n_out * (size_t)sh->n_vocab;
        if (need > c->lg_cap) {
            float *p = realloc(c->lg_part, need * sizeof(float));
            if (!p) return err_set(err, "out of memory");
            c->lg_part = p, c->lg_cap = need;
        }
        Tensor w = m->output;
        w.data = (const uint8_t *)w.data + (size_t)sh->vocab0 * w.row_bytes;
        w.rows = sh->n_vocab;
        be->logits(be, &w, c->out_rows, n_out, cfg->logit_scale, cfg->final_softcap, c->lg_part);
        if (dist_gather_logits(c->p.dist, c->lg_part, n_out, cfg->n_vocab, logits, err)) return -1;
        if (!sh->logits) return 0;
    }
    if (be_check(c, err)) return -1;
    /* a NaN or infinite logit (weights or activations out of range) is an
     * error, never sampled into text */
    for (size_t i = 0; i < (size_t)n_out * (size_t)cfg->n_vocab; i++)
        if (!isfinite(logits[i]))
            return err_set(err, "the model computed a non-finite logit (%g for token %zu); its weights or "
                           "hyper-parameters are out of range", (double)logits[i], i % (size_t)cfg->n_vocab);
    return n_out;
}

static int check_batch(const Context *c, const Batch *b, Error *err) {
    const ModelConfig *cfg = &c->m->cfg;
    for (int t = 0; t < b->n_tokens; t++) {
        const int s = b->seq ? b->seq[t] : 0;
        if (b->token[t] < 0 || b->token[t] >= cfg->n_vocab)
            return err_set(err, "token id %d is outside the vocabulary (0..%d)", b->token[t], cfg->n_vocab - 1);
        if (b->pos[t] < 0 || b->pos[t] >= c->p.n_ctx)
            return err_set(err, "position %d is outside the context of %d tokens", b->pos[t], c->p.n_ctx);
        if (s < 0 || s >= c->p.n_seq) return err_set(err, "sequence %d does not exist (%d slots)", s, c->p.n_seq);
    }
    return 0;
}

/* The first half of a forward pass: the batch through this process's layers
 * in chunks of n_batch tokens (sequence 0 for every token without b->seq,
 * in pieces of DEFAULT_BATCH); dist, layers split: the pipeline's pieces,
 * sent on. The logits of the rows that stay here go to `logits`; *out_row
 * counts them. Rank 0 of a layers split computes no logits here: its rows
 * come back from the last rank (collect). */
static int submit(Context *c, const Batch *b, float *logits, size_t *out_row, Error *err) {
    const ModelConfig *cfg = &c->m->cfg;
    if (check_batch(c, b, err)) return -1;
    if (!logits && c->m->share.logits && c->m->share.n_vocab < cfg->n_vocab) /* the others send theirs */
        return err_set(err, "a forward pass over several processes needs a logits buffer");
    if (dist_cmd_forward(c->p.dist, c->dist_id, b, err)) return -1; /* dist: every rank runs the batch */
    const int max = b->seq || c->p.n_batch < DEFAULT_BATCH ? c->p.n_batch : DEFAULT_BATCH;
    const int piece = dist_pipe_piece(c->pipe, b->n_tokens, max);
    static const int zero_seq[DEFAULT_BATCH];
    int rc = dist_pipe_begin(c->pipe, b->n_tokens, piece, b->output, err); /* dist: rank 0 awaits rows back */
    for (int done = 0; rc == 0 && done < b->n_tokens; done += piece) {
        const int nt = b->n_tokens - done < piece ? b->n_tokens - done : piece;
        float *lg = logits ? logits + *out_row * (size_t)cfg->n_vocab : NULL;
        int n = run_layers(c, b->token + done, b->pos + done, b->seq ? b->seq + done : zero_seq,
                           b->output ? b->output + done : NULL, nt, err);
        if (n > 0) n = chunk_logits(c, n, lg, err);
        if (n < 0 || be_check(c, err)) rc = -1;
        else *out_row += (size_t)n;
    }
    Error end_err = {{0}};
    if (rc) dist_pipe_end(c->pipe, &end_err); /* dist: every exchange in flight is done */
    return rc;
}

/* The second half: dist, layers split, rank 0: the oldest batch's rows back
 * from the last rank, piece by piece, and their logits from out_row on. */
static int collect(Context *c, float *logits, size_t out_row, Error *err) {
    const ModelConfig *cfg = &c->m->cfg;
    int rc = 0;
    for (int n = 0; (n = dist_pipe_next_back(c->pipe, c->x, err)) != 0;) {
        float *lg = logits ? logits + out_row * (size_t)cfg->n_vocab : NULL;
        if (n < 0 || (n = chunk_logits(c, n, lg, err)) < 0) {
            rc = -1;
            break;
        }
        out_row += (size_t)n;
    }
    if (rc == 0 && dist_pipe_retire(c->pipe, err)) rc = -1;
    Error end_err = {{0}};
    if (rc) dist_pipe_end(c->pipe, &end_err);
    return rc;
}

/* True if batches go through a pipeline that this process starts (rank 0
 * of a layers split over several ranks). */
static bool drives_pipe(const Context *c) { return c->pipe && dist_rank(c->p.dist) == 0; }

int forward_depth(const Context *c) { return drives_pipe(c) ? dist_pipe_depth(c->pipe) : 1; }

int forward_in_flight(const Context *c) { return drives_pipe(c) ? dist_pipe_in_flight(c->pipe) : c->held; }

int forward(Context *c, const Batch *b, float *logits, Error *err) {
    if (forward_in_flight(c))
        return err_set(err, "a forward pass while %d batches are in flight (forward_collect them first)",
                       forward_in_flight(c));
    size_t out_row = 0;
    if (submit(c, b, logits, &out_row, err)) return -1;
    return collect(c, logits, out_row, err);
}

int forward_submit(Context *c, const Batch *b, Error *err) {
    if (drives_pipe(c)) {
        if (dist_pipe_in_flight(c->pipe) == dist_pipe_depth(c->pipe))
            return err_set(err, "%d batches in flight already (forward_depth)", dist_pipe_in_flight(c->pipe));
        size_t out_row = 0;
        return submit(c, b, NULL, &out_row, err); /* no rows stay on rank 0: they all come back */
    }
    /* one process (or the experts split): the batch is kept, and computed
     * when it is collected */
    if (c->held) return err_set(err, "a batch is in flight already (forward_depth is 1)");
    if (check_batch(c, b, err)) return -1;
    const size_t n = (size_t)b->n_tokens;
    if (n > c->hold_cap) {
        int *t = realloc(c->hold_i, 3 * n * sizeof(int));
        if (!t) return err_set(err, "out of memory");
        c->hold_i = t;
        bool *o = realloc(c->hold_out, n * sizeof(bool));
        if (!o) return err_set(err, "out of memory");
        c->hold_out = o, c->hold_cap = n;
    }
    int *tok = c->hold_i, *pos = tok + n, *seq = pos + n;
    memcpy(tok, b->token, n * sizeof(int));
    memcpy(pos, b->pos, n * sizeof(int));
    if (b->seq) memcpy(seq, b->seq, n * sizeof(int));
    if (b->output) memcpy(c->hold_out, b->output, n * sizeof(bool));
    c->hold = (Batch){b->n_tokens, tok, pos, b->seq ? seq : NULL, b->output ? c->hold_out : NULL};
    c->held = true;
    return 0;
}

int forward_collect(Context *c, float *logits, Error *err) {
    if (drives_pipe(c)) {
        if (dist_pipe_in_flight(c->pipe) == 0) return err_set(err, "no batch in flight to collect");
        return collect(c, logits, 0, err);
    }
    if (!c->held) return err_set(err, "no batch in flight to collect");
    c->held = false;
    return forward(c, &c->hold, logits, err);
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
int context_n_threads(const Context *c) { return c->be->n_threads(c->be); }
const char *context_device(const Context *c) { return c->be->name; }
const char *context_device_note(const Context *c) { return c->note; }

size_t context_kv_bytes(const Context *c) { return c->be->kv_bytes(c->be); }

void context_free(Context *c) {
    if (!c) return;
    dist_cmd_context_free(c->p.dist, c->dist_id);
    if (c->be) {
        Backend *be = c->be;
        void *bufs[] = {c->x, c->u, c->q, c->k, c->v, c->att, c->proj, c->moe, c->r.sel, c->r.gate,
                        c->r.order, c->r.ex_start, c->hg, c->hu, c->down, c->out_rows};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) be->release(be, bufs[i]);
        be->free(be);
    }
    free(c->rows);
    free(c->lg_part);
    free(c->hold_i);
    free(c->hold_out);
    dist_pipe_free(c->pipe);
    free(c);
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
    c->dist_id = -1;
    if (c->p.n_ctx <= 0) c->p.n_ctx = cfg->n_ctx_train < DEFAULT_CTX_CAP ? cfg->n_ctx_train : DEFAULT_CTX_CAP;
    if (c->p.n_seq <= 0) c->p.n_seq = 1;
    if (c->p.n_batch <= 0) c->p.n_batch = DEFAULT_BATCH;
    if (c->p.n_ctx <= 0) {
        err_set(err, "context size must be positive");
        goto fail;
    }
    const BackendParams bp = {c->p.n_ctx, c->p.n_seq, c->p.n_batch, c->p.n_threads, c->p.kv_type_k,
                              c->p.kv_type_v, c->p.gpu};
    if (dist_multi(c->p.dist)) { /* dist: the exchanges read the activations in host memory */
        if (c->p.device == GROK_DEVICE_CUDA) {
            err_set(err, "several processes (mpirun) run on the CPU backend only: use --device cpu");
            goto fail;
        }
        if (c->p.device == GROK_DEVICE_AUTO) {
            c->p.device = GROK_DEVICE_CPU;
            if (cuda_device_count(NULL) > 0)
                snprintf(c->note, sizeof c->note, "several processes (mpirun) run on the CPU backend only");
        }
    }
    if (c->p.device == GROK_DEVICE_AUTO && cuda_device_count(NULL) > 0) {
        /* a GPU is present: the CPU only if the CUDA backend cannot take
         * this model or these settings, and the reason kept for the caller */
        Error cerr = {{0}};
        if (!(c->be = backend_cuda_new(m, &bp, &cerr))) snprintf(c->note, sizeof c->note, "%s", cerr.msg);
    }
    if (c->be) {
    } else if (c->p.device == GROK_DEVICE_CUDA) {
        c->be = backend_cuda_new(m, &bp, err);
    } else if (c->p.device == GROK_DEVICE_CPU || c->p.device == GROK_DEVICE_AUTO) {
        c->be = backend_cpu_new(m, &bp, err);
    } else {
        err_set(err, "unknown device %d", c->p.device);
    }
    if (!c->be) goto fail;
    Backend *be = c->be;
    c->kv_dim = m->share.n_head_kv * cfg->head_dim;
    c->q_dim = m->share.n_head_kv * (cfg->n_head / cfg->n_head_kv) * cfg->head_dim;
    const size_t B = (size_t)c->p.n_batch, K = (size_t)cfg->n_expert_used, E = (size_t)cfg->n_embd;
    const size_t F = (size_t)(cfg->n_ff > cfg->n_ff_dense ? cfg->n_ff : cfg->n_ff_dense);
    const size_t rows_k = B * (K > 1 ? K : 1), f = sizeof(float);
    bool ok = (c->rows = calloc(B, sizeof(int))) != NULL;
#define ALLOC(p, bytes) ok = ok && ((p) = be->alloc(be, (bytes))) != NULL
    ALLOC(c->x, B * E * f);
    ALLOC(c->u, B * E * f);
    ALLOC(c->q, B * c->q_dim * f);
    ALLOC(c->k, B * c->kv_dim * f);
    ALLOC(c->v, B * c->kv_dim * f);
    ALLOC(c->att, B * c->q_dim * f);
    ALLOC(c->proj, B * E * f);
    ALLOC(c->moe, B * E * f);
    ALLOC(c->r.sel, B * K * sizeof(int));
    ALLOC(c->r.gate, B * K * f);
    ALLOC(c->r.order, B * K * sizeof(int));
    ALLOC(c->r.ex_start, ((size_t)cfg->n_expert + 1) * sizeof(int));
    ALLOC(c->hg, rows_k * F * f);
    ALLOC(c->hu, rows_k * F * f);
    ALLOC(c->down, rows_k * E * f);
    ALLOC(c->out_rows, B * E * f);
#undef ALLOC
    if (!ok) {
        err_set(err, "out of memory allocating the context's activations (%d tokens a batch)", c->p.n_batch);
        goto fail;
    }
    /* dist: the pipeline of the layers split; the other ranks make their Context */
    if (dist_pipe_new(c->p.dist, m, c->p.n_batch, &c->pipe, err)) goto fail;
    if (dist_cmd_context_new(c->p.dist, &c->p, &c->dist_id, err)) goto fail;
    return c;
fail:
    context_free(c);
    return NULL;
}
