/* test_dist.c - the parts of dist/ that need no second process: the
 * one-process Dist (every collective a no-op, the model loads as without
 * it) and the shares dist_share_model cuts (the experts split covers every
 * FFN column once, on block boundaries, uneven rank counts included; the
 * layers split covers every layer once; more ranks than pieces is an
 * error; the experts split's attention cut by heads covers every key/value
 * head once in whole GQA groups, uneven counts included, wo a view of their
 * columns, and stays replicated with fewer heads than ranks or where a
 * slice of wo would not start on a block), and the layers split's pipeline pieces (dist_pipe.h: the piece
 * size rule, no pipe with one rank, --micro-batch). Runs across processes
 * are tested by tests/scripts/test_mpi.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dist_engine.h"
#include "dist_pipe.h"
#include "quant.h"
#include "synth.h"
#include "check.h"

/* the pieces forward() cuts a batch into over several ranks (layers split) */
static void pipe_pieces(void) {
    /* auto: 2 pieces per rank, at least DIST_PIPE_MIN_TOKENS (32), at most the scratch */
    CHECK(dist_pipe_piece_for(256, 512, 2, 0) == 64, "256 tokens, 2 ranks: %d", dist_pipe_piece_for(256, 512, 2, 0));
    CHECK(dist_pipe_piece_for(512, 512, 2, 0) == 128, "512 tokens, 2 ranks");
    CHECK(dist_pipe_piece_for(300, 512, 3, 0) == 50, "300 tokens, 3 ranks: %d", dist_pipe_piece_for(300, 512, 3, 0));
    CHECK(dist_pipe_piece_for(100, 512, 2, 0) == DIST_PIPE_MIN_TOKENS, "100 tokens: pieces of the minimum");
    CHECK(dist_pipe_piece_for(4, 512, 2, 0) >= 4, "a decode step of 4 sequences is one piece");
    CHECK(dist_pipe_piece_for(4096, 512, 2, 0) == 512, "never more than the scratch holds");
    CHECK(dist_pipe_piece_for(4096, 16, 2, 0) == 16, "a small n_batch bounds the minimum too");
    /* --micro-batch: as given, within the scratch */
    CHECK(dist_pipe_piece_for(100, 512, 2, 3) == 3 && dist_pipe_piece_for(100, 8, 2, 64) == 8, "--micro-batch");
    CHECK(dist_pipe_piece_for(0, 512, 2, 0) == 512, "an empty batch");
    Error err = {{0}};
    CHECK(dist_parse_flag(NULL, "--micro-batch", "16", &err) == 1, "--micro-batch 16");
    CHECK(dist_parse_flag(NULL, "--micro-batch", "0", &err) == 1, "--micro-batch 0 (auto)");
    CHECK(dist_parse_flag(NULL, "--micro-batch", "-1", &err) < 0 && strstr(err.msg, "micro-batch"), "--micro-batch -1");
    CHECK(dist_parse_flag(NULL, "--micro-batch", "8x", &err) < 0, "--micro-batch 8x");
    CHECK(dist_parse_flag(NULL, "--micro-batch", NULL, &err) < 0, "--micro-batch without a value");
}

static void one_process(const char *path) {
    Error err = {{0}};
    int argc = 1;
    char *args[] = {"test", NULL}, **argv = args;
    Dist *d = dist_init(&argc, &argv, &err);
    CHECK(d && dist_size(d) == 1 && dist_rank(d) == 0 && !dist_multi(d), "one-process Dist: %s", d ? "" : err.msg);
    if (!d) return;
    float x[3] = {1, 2, 3}, all[3];
    CHECK(dist_sum_f32(d, x, 3, &err) == 0 && x[0] == 1 && x[2] == 3, "sum over one rank is the identity");
    CHECK(dist_allgather(d, x, all, sizeof x, &err) == 0 && all[1] == 2, "allgather over one rank copies");
    CHECK(dist_bcast(d, x, sizeof x, false, &err) == 0, "broadcast over one rank");
    CHECK(dist_check_args(d, argc, argv, &err) == 0, "options of one rank");
    Model *m = dist_model_load(d, path, &err);
    CHECK(m && m->share.n_ff == m->cfg.n_ff && m->share.layer1 == m->cfg.n_layer && !m->share.partial &&
              m->share.logits,
          "one rank: the whole model (%s)", m ? "" : err.msg);
    DistPipe *pipe = NULL;
    CHECK(m && dist_pipe_new(d, m, 64, &pipe, &err) == 0 && pipe == NULL, "one rank: no pipeline");
    CHECK(dist_pipe_piece(NULL, 300, 64) == 64 && dist_pipe_poll(NULL, &err) == 0 && dist_pipe_end(NULL, &err) == 0 &&
              dist_pipe_begin(NULL, 10, 4, NULL, &err) == 0 && dist_pipe_next_back(NULL, NULL, &err) == 0,
          "without a pipe: chunks of n_batch, the calls do nothing");
    int id = 7;
    ContextParams cp = {32, 1, 0, 1, GGML_TYPE_F32, GGML_TYPE_F32, GROK_DEVICE_CPU, 0, d};
    Context *c = m ? context_new(m, &cp, &err) : NULL;
    CHECK(c != NULL, "a context with a one-rank Dist");
    CHECK(dist_cmd_context_new(d, &cp, &id, &err) == 0 && id == -1, "commands are no-ops with one rank");
    float *lg = m ? malloc(sizeof(float) * (size_t)m->cfg.n_vocab) : NULL;
    int toks[3] = {1, 2, 3};
    CHECK(c && lg && forward_tokens(c, 0, toks, 3, 0, lg, false, &err) == 0, "forward with a one-rank Dist");
    free(lg);
    context_free(c);
    model_free(m);
    CHECK(dist_finish(d, 3) == 3, "dist_finish returns the status");
}

/* every rank's share of the experts: columns [ff0, ff0 + n_ff) on block
 * boundaries, together all of [0, n_ff) once; down_exps a view of them */
static void experts_split(const char *path, int n, int block) {
    Error err = {{0}};
    int next = 0, next_d = 0;
    uint64_t bytes = 0, whole = 0, repl = 0;
    for (int r = 0; r < n; r++) {
        Model *m = model_load(path, &err);
        if (!m) {
            CHECK(0, "load: %s", err.msg);
            return;
        }
        const Tensor down = m->layers[0].down_exps;
        whole = m->share.weight_bytes;
        CHECK(dist_share_model(m, DIST_SPLIT_EXPERTS, n, r, &err) == 0, "%d ranks, rank %d: %s", n, r, err.msg);
        const ModelShare *s = &m->share;
        CHECK(s->ff0 == next && s->ff0 % block == 0 && s->n_ff > 0, "%d ranks, rank %d: columns from %d (want %d)", n,
              r, s->ff0, next);
        CHECK(s->partial && s->logits == (r == 0) && s->layer0 == 0 && s->layer1 == m->cfg.n_layer,
              "rank %d: partial sums, logits on rank 0 only, every layer", r);
        const Tensor *dv = &m->layers[0].down_exps;
        CHECK(dv->cols == s->n_ff && dv->row_bytes == down.row_bytes &&
                  (const uint8_t *)dv->data - (const uint8_t *)down.data ==
                      (ptrdiff_t)type_row_size(down.type, s->ff0),
              "rank %d: down_exps is a view of columns %d.. with the rows' stride", r, s->ff0);
        if (m->cfg.n_ff_dense) {
            CHECK(s->ff0_dense == next_d && s->n_ff_dense > 0, "rank %d: dense columns from %d", r, s->ff0_dense);
            next_d = s->ff0_dense + s->n_ff_dense;
        }
        next = s->ff0 + s->n_ff;
        bytes += s->weight_bytes;
        if (r == 1) repl = s->weight_bytes; /* for the sum below */
        model_free(m);
    }
    Model *m = model_load(path, &err);
    if (!m) return;
    CHECK(next == m->cfg.n_ff, "%d ranks: the columns end at %d of %d", n, next, m->cfg.n_ff);
    CHECK(!m->cfg.n_ff_dense || next_d == m->cfg.n_ff_dense, "%d ranks: the dense columns end at %d", n, next_d);
    /* the ranks hold the whole file once plus the replicated parts n - 1 more times */
    CHECK(n == 1 ? bytes == whole : bytes > whole && bytes < whole * 2 && repl > 0, "%d ranks: %llu bytes in shares of a %llu byte model", n,
          (unsigned long long)bytes, (unsigned long long)whole);
    model_free(m);
}

/* the experts split's attention: every rank a contiguous range of
 * key/value heads (heads0..): together all of them once, wo a view of the
 * query heads' columns; `cut` says whether it is cut at all */
static void heads_split(const char *path, int n, bool cut) {
    Error err = {{0}};
    int next = 0;
    for (int r = 0; r < n; r++) {
        Model *m = model_load(path, &err);
        if (!m) {
            CHECK(0, "load: %s", err.msg);
            return;
        }
        const ModelConfig *c = &m->cfg;
        const Tensor wo = m->layers[0].wo;
        CHECK(dist_share_model(m, DIST_SPLIT_EXPERTS, n, r, &err) == 0, "%d ranks, rank %d: %s", n, r, err.msg);
        const ModelShare *s = &m->share;
        const int group = c->n_head / c->n_head_kv;
        const Tensor *v = &m->layers[c->n_layer - 1].wo;
        if (!cut) {
            CHECK(!s->attn_partial && s->head0_kv == 0 && s->n_head_kv == c->n_head_kv && v->cols == wo.cols,
                  "%d ranks, %d key/value heads: attention replicated (rank %d: heads %d+%d)", n, c->n_head_kv, r,
                  s->head0_kv, s->n_head_kv);
        } else {
            /* as even as whole heads allow: n_head_kv / n or one more */
            CHECK(s->attn_partial && s->head0_kv == next && s->n_head_kv >= c->n_head_kv / n &&
                      s->n_head_kv <= (c->n_head_kv + n - 1) / n,
                  "%d ranks, rank %d: heads %d+%d (want from %d)", n, r, s->head0_kv, s->n_head_kv, next);
            CHECK(v->cols == (int64_t)s->n_head_kv * group * c->head_dim && v->row_bytes == wo.row_bytes &&
                      (const uint8_t *)m->layers[0].wo.data - (const uint8_t *)wo.data ==
                          (ptrdiff_t)type_row_size(wo.type, (int64_t)s->head0_kv * group * c->head_dim),
                  "rank %d: wo is a view of its query heads' columns", r);
        }
        next = s->head0_kv + s->n_head_kv;
        model_free(m);
    }
    CHECK(!cut || next > 0, "heads end at %d", next);
}

static void layers_split(const char *path, int n) {
    Error err = {{0}};
    int next = 0;
    for (int r = 0; r < n; r++) {
        Model *m = model_load(path, &err);
        if (!m) return;
        CHECK(dist_share_model(m, DIST_SPLIT_LAYERS, n, r, &err) == 0, "layers, %d ranks: %s", n, err.msg);
        CHECK(m->share.layer0 == next && m->share.layer1 > m->share.layer0 && !m->share.partial &&
                  m->share.logits == (r == 0) && m->share.n_ff == m->cfg.n_ff,
              "layers, %d ranks, rank %d: layers %d..%d", n, r, m->share.layer0, m->share.layer1);
        next = m->share.layer1;
        model_free(m);
    }
    Model *m = model_load(path, &err);
    if (!m) return;
    CHECK(next == m->cfg.n_layer, "layers: %d ranks end at layer %d of %d", n, next, m->cfg.n_layer);
    CHECK(dist_share_model(m, DIST_SPLIT_LAYERS, m->cfg.n_layer + 1, 0, &err) < 0 && strstr(err.msg, "layers"),
          "more ranks than layers: %s", err.msg);
    model_free(m);
}

int main(void) {
    const char *tmp = getenv("GROK_TMP") ? getenv("GROK_TMP") : "/tmp";
    mkdir(tmp, 0755);
    char f32[512], q8[512], g2[512], h3[512], h4[512];
    snprintf(h3, sizeof h3, "%s/dist_h3.gguf", tmp);
    snprintf(h4, sizeof h4, "%s/dist_h4.gguf", tmp);
    snprintf(f32, sizeof f32, "%s/dist_f32.gguf", tmp);
    snprintf(q8, sizeof q8, "%s/dist_q8.gguf", tmp);
    snprintf(g2, sizeof g2, "%s/dist_g2.gguf", tmp);
    Error err = {{0}};
    SynthParams p = {64, 5, 4, 2, 96, 4, 2, 64, 300, GGML_TYPE_F32, 0, 0, 3, NULL};
    CHECK(synth_write_model_ex(&p, NULL, f32, &err) == 0, "write f32: %s", err.msg);
    p.type = GGML_TYPE_Q8_0; /* 96 = 3 blocks of 32 */
    CHECK(synth_write_model_ex(&p, NULL, q8, &err) == 0, "write q8_0: %s", err.msg);
    SynthGrok2 g;
    synth_grok2_defaults(&g, &p);
    g.n_ff_dense = 160; /* 5 blocks */
    CHECK(synth_write_model_ex(&p, &g, g2, &err) == 0, "write grok-2: %s", err.msg);

    /* 3 key/value heads, 2 query heads each, of 16 values: a head's query
     * columns are one Q8_0 block; fused qkv */
    SynthParams p3 = {96, 2, 6, 3, 128, 4, 2, 64, 300, GGML_TYPE_Q8_0, 0, 1, 4, NULL};
    CHECK(synth_write_model_ex(&p3, NULL, h3, &err) == 0, "write h3: %s", err.msg);
    /* 4 key/value heads of 16 values, no GQA: a slice of wo starts on a
     * Q8_0 block only at even heads */
    SynthParams p4 = {64, 2, 4, 4, 128, 4, 2, 64, 300, GGML_TYPE_Q8_0, 0, 0, 4, NULL};
    CHECK(synth_write_model_ex(&p4, NULL, h4, &err) == 0, "write h4: %s", err.msg);

    pipe_pieces();
    heads_split(f32, 1, true), heads_split(f32, 2, true), heads_split(f32, 3, false), heads_split(q8, 2, true);
    heads_split(h3, 2, true), heads_split(h3, 3, true); /* 1 + 2 and 1 + 1 + 1 */
    heads_split(h4, 2, true), heads_split(h4, 4, false), heads_split(h4, 3, false); /* 1 + 1 + 2: head 1 starts mid-block */
    one_process(f32);
    for (int n = 1; n <= 5; n++) experts_split(f32, n, 1);
    for (int n = 1; n <= 3; n++) experts_split(q8, n, 32), experts_split(g2, n, 32);
    Model *m = model_load(q8, &err);
    CHECK(m && dist_share_model(m, DIST_SPLIT_EXPERTS, 4, 0, &err) < 0 && strstr(err.msg, "at most 3 ranks"),
          "4 ranks, 3 blocks: %s", err.msg);
    model_free(m);
    for (int n = 1; n <= 5; n++) layers_split(q8, n);
    remove(f32), remove(q8), remove(g2), remove(h3), remove(h4);
    return check_report("dist");
}
