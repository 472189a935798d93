/* model.c - see model.h. Keys and tensor names follow llama.cpp's `grok`
 * architecture (../shared/docs/gguf-and-llamacpp.md §2.1-2.2). */
#include "model.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

static int req_u32(const GGUFFile *f, const char *key, int *out, Error *err) {
    uint32_t v;
    int r = gguf_get_u32(f, key, &v, err);
    if (r < 0) return -1;
    if (r == 0) return err_set(err, "missing required key %s", key);
    if (v > (uint32_t)INT32_MAX) return err_set(err, "key %s = %u is out of range", key, v);
    *out = (int)v;
    return 0;
}

static int opt_u32(const GGUFFile *f, const char *key, int *out, int def, Error *err) {
    uint32_t v;
    int r = gguf_get_u32(f, key, &v, err);
    if (r < 0) return -1;
    if (r == 0) v = (uint32_t)def;
    if (v > (uint32_t)INT32_MAX) return err_set(err, "key %s = %u is out of range", key, v);
    *out = (int)v;
    return 0;
}

static int opt_f32(const GGUFFile *f, const char *key, float *out, float def, Error *err) {
    int r = gguf_get_f32(f, key, out, err);
    if (r < 0) return -1;
    if (r == 0) *out = def;
    return 0;
}

static int read_config(const GGUFFile *f, ModelConfig *c, Error *err) {
    GGUFString arch;
    int r = gguf_get_str(f, "general.architecture", &arch, err);
    if (r < 0) return -1;
    if (r == 0) return err_set(err, "missing key general.architecture");
    if (arch.len != 4 || memcmp(arch.data, "grok", 4) != 0)
        return err_set(err, "unknown architecture '%.*s' (grok.c runs 'grok' models)",
                       (int)(arch.len > 64 ? 64 : arch.len), arch.data);

    if (req_u32(f, "grok.embedding_length", &c->n_embd, err) || req_u32(f, "grok.block_count", &c->n_layer, err) ||
        req_u32(f, "grok.attention.head_count", &c->n_head, err) ||
        req_u32(f, "grok.feed_forward_length", &c->n_ff, err) || req_u32(f, "grok.expert_count", &c->n_expert, err) ||
        opt_u32(f, "grok.context_length", &c->n_ctx_train, 8192, err) ||
        opt_u32(f, "grok.attention.head_count_kv", &c->n_head_kv, c->n_head, err))
        return -1;
    if (c->n_embd <= 0 || c->n_layer <= 0 || c->n_head <= 0 || c->n_ff <= 0)
        return err_set(err, "embedding_length, block_count, head_count and feed_forward_length must be positive");
    if (c->n_expert <= 0) return err_set(err, "model cannot have zero experts (grok.expert_count)");
    if (req_u32(f, "grok.expert_used_count", &c->n_expert_used, err)) return -1;
    if (c->n_expert_used <= 0 || c->n_expert_used > c->n_expert)
        return err_set(err, "grok.expert_used_count = %d must be in 1..%d", c->n_expert_used, c->n_expert);
    if (opt_u32(f, "grok.expert_feed_forward_length", &c->n_ff, c->n_ff, err)) return -1;
    if (c->n_head_kv <= 0 || c->n_head % c->n_head_kv != 0)
        return err_set(err, "head_count %d is not a multiple of head_count_kv %d", c->n_head, c->n_head_kv);
    if (opt_u32(f, "grok.attention.key_length", &c->head_dim, c->n_embd / c->n_head, err)) return -1;
    int vdim = 0, rot = 0;
    if (opt_u32(f, "grok.attention.value_length", &vdim, c->head_dim, err) ||
        opt_u32(f, "grok.rope.dimension_count", &rot, c->head_dim, err))
        return -1;
    if (c->head_dim <= 0 || c->head_dim % 2 || vdim != c->head_dim || rot != c->head_dim)
        return err_set(err, "key_length, value_length and rope.dimension_count must be equal and even (%d, %d, %d)",
                       c->head_dim, vdim, rot);
    if (c->n_head_kv > c->n_head) return err_set(err, "head_count_kv %d > head_count %d", c->n_head_kv, c->n_head);

    int has_eps = gguf_get_f32(f, "grok.attention.layer_norm_rms_epsilon", &c->eps, err);
    if (has_eps < 0) return -1;
    if (has_eps == 0) return err_set(err, "missing required key grok.attention.layer_norm_rms_epsilon");
    if (opt_f32(f, "grok.rope.freq_base", &c->rope_base, GROK1_ROPE_BASE, err) ||
        opt_f32(f, "grok.embedding_scale", &c->embedding_scale, GROK1_EMBEDDING_SCALE, err) ||
        opt_f32(f, "grok.logit_scale", &c->logit_scale, GROK1_LOGIT_SCALE, err) ||
        opt_f32(f, "grok.attention.output_scale", &c->attn_scale, GROK1_ATTN_OUTPUT_SCALE, err) ||
        opt_f32(f, "grok.attn_logit_softcapping", &c->attn_softcap, GROK1_ATTN_SOFTCAP, err) ||
        opt_f32(f, "grok.final_logit_softcapping", &c->final_softcap, 0.0f, err) ||
        opt_f32(f, "grok.router_logit_softcapping", &c->router_softcap, GROK2_ROUTER_SOFTCAP, err) ||
        opt_u32(f, "grok.attention.temperature_length", &c->attn_temp_len, 0, err))
        return -1;
    /* a NaN or infinite multiplier makes every logit NaN: refuse the file */
    const struct {
        const char *key;
        float v;
        float lo;        /* smallest value allowed */
        bool lo_open;    /* lo itself excluded */
    } fk[] = {
        {"grok.attention.layer_norm_rms_epsilon", c->eps, 0.0f, false},
        {"grok.rope.freq_base", c->rope_base, 0.0f, true},
        {"grok.embedding_scale", c->embedding_scale, -INFINITY, false},
        {"grok.logit_scale", c->logit_scale, -INFINITY, false},
        {"grok.attention.output_scale", c->attn_scale, -INFINITY, false},
        {"grok.attn_logit_softcapping", c->attn_softcap, 0.0f, false},
        {"grok.final_logit_softcapping", c->final_softcap, 0.0f, false},
        {"grok.router_logit_softcapping", c->router_softcap, 0.0f, false},
    };
    for (size_t i = 0; i < sizeof fk / sizeof fk[0]; i++) {
        if (!isfinite(fk[i].v))
            return err_set(err, "key %s = %g is not a finite number", fk[i].key, (double)fk[i].v);
        if (fk[i].v < fk[i].lo || (fk[i].lo_open && fk[i].v == fk[i].lo))
            return err_set(err, "key %s = %g is out of range (it must be %s %g)", fk[i].key, (double)fk[i].v,
                           fk[i].lo_open ? ">" : ">=", (double)fk[i].lo);
    }
    /* log2(pos) / log2(len): len 1 divides by zero */
    if (c->attn_temp_len == 1)
        return err_set(err, "key grok.attention.temperature_length = 1 is out of range (0 = off, or at least 2)");
    return 0;
}

/* Marks tensor g as used by the model (used: one flag per tensor of f, may
 * be NULL), so that load can refuse tensors nothing reads. */
static void mark_used(const GGUFFile *f, bool *used, const GGUFTensor *g) {
    if (!used || !g) return;
    const GGUFTensor *first = gguf_tensor(f, 0);
    if (first && g >= first && (uint64_t)(g - first) < gguf_n_tensors(f)) used[g - first] = true;
}

/* Looks up a tensor and checks its shape (ggml ne order) and type. */
static int bind_u(const GGUFFile *f, bool *used, Tensor *t, const char *name, int64_t ne0, int64_t ne1, int64_t ne2,
                  bool required, Error *err) {
    memset(t, 0, sizeof *t);
    const GGUFTensor *g = gguf_find_tensor(f, name);
    if (!g) return required ? err_set(err, "missing tensor %s", name) : 0;
    mark_used(f, used, g);
    int64_t want[GGUF_MAX_DIMS] = {ne0, ne1, ne2, 1};
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        if (g->ne[d] != want[d])
            return err_set(err, "tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, %lld, 1]", name,
                           (long long)g->ne[0], (long long)g->ne[1], (long long)g->ne[2], (long long)g->ne[3],
                           (long long)ne0, (long long)ne1, (long long)ne2);
    const TypeInfo *ti = type_info(g->type);
    if (!ti || !ti->compute)
        return err_set(err, "tensor %s has type %s, which grok.c cannot compute with yet", name,
                       ti ? ti->name : "unknown");
    t->data = g->data;
    t->type = g->type;
    t->cols = ne0;
    t->rows = ne1 * ne2;
    t->row_bytes = type_row_size(g->type, ne0);
    return 0;
}

/* Small tensors (norms, router) are converted to f32 copies. */
static int bind_f32_u(const GGUFFile *f, bool *used, float **out, const char *name, int64_t ne0, int64_t ne1,
                      Error *err) {
    Tensor t;
    if (bind_u(f, used, &t, name, ne0, ne1, 1, true, err)) return -1;
    *out = malloc((size_t)(ne0 * ne1) * sizeof(float));
    if (!*out) return err_set(err, "out of memory");
    for (int64_t r = 0; r < t.rows; r++)
        dequantize_row(t.type, (const uint8_t *)t.data + r * t.row_bytes, *out + r * ne0, ne0);
    return 0;
}

static int bind_layer(const GGUFFile *f, bool *used, const ModelConfig *c, int il, Layer *L, Error *err) {
#define bind(f, ...) bind_u(f, used, __VA_ARGS__)
#define bind_f32(f, ...) bind_f32_u(f, used, __VA_ARGS__)
    char n[96];
    const int64_t E = c->n_embd, q = (int64_t)c->n_head * c->head_dim, kv = (int64_t)c->n_head_kv * c->head_dim;
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s.weight", il, s), n)
    if (bind_f32(f, &L->attn_norm, NAME("attn_norm"), E, 1, err)) return -1;
    if (bind(f, &L->wqkv, NAME("attn_qkv"), E, q + 2 * kv, 1, false, err)) return -1;
    if (!L->wqkv.data) {
        if (bind(f, &L->wq, NAME("attn_q"), E, q, 1, true, err) || bind(f, &L->wk, NAME("attn_k"), E, kv, 1, true, err) ||
            bind(f, &L->wv, NAME("attn_v"), E, kv, 1, true, err))
            return -1;
    }
    if (bind(f, &L->wo, NAME("attn_output"), q, E, 1, true, err) ||
        bind_f32(f, &L->attn_out_norm, NAME("attn_output_norm"), E, 1, err) ||
        bind_f32(f, &L->ffn_norm, NAME("ffn_norm"), E, 1, err) ||
        bind_f32(f, &L->router, NAME("ffn_gate_inp"), E, c->n_expert, err) ||
        bind(f, &L->gate_exps, NAME("ffn_gate_exps"), E, c->n_ff, c->n_expert, true, err) ||
        bind(f, &L->up_exps, NAME("ffn_up_exps"), E, c->n_ff, c->n_expert, true, err) ||
        bind(f, &L->down_exps, NAME("ffn_down_exps"), c->n_ff, E, c->n_expert, true, err))
        return -1;
    if (gguf_find_tensor(f, NAME("layer_output_norm"))) {
        if (bind_f32(f, &L->out_norm, n, E, 1, err)) return -1;
    } else if (bind_f32(f, &L->out_norm, NAME("post_ffw_norm"), E, 1, err)) {
        return err_set(err, "missing tensor blk.%d.layer_output_norm.weight", il);
    }
    if (c->n_ff_dense > 0) {
        if (bind(f, &L->ffn_gate, NAME("ffn_gate"), E, c->n_ff_dense, 1, true, err) ||
            bind(f, &L->ffn_up, NAME("ffn_up"), E, c->n_ff_dense, 1, true, err) ||
            bind(f, &L->ffn_down, NAME("ffn_down"), c->n_ff_dense, E, 1, true, err))
            return -1;
    }
#undef NAME
#undef bind
#undef bind_f32
    return 0;
}

Model *model_from_gguf(GGUFFile *f, Error *err) {
    Model *m = calloc(1, sizeof *m);
    if (!m) {
        err_set(err, "out of memory");
        return NULL;
    }
    ModelConfig *c = &m->cfg;
    bool *used = NULL;
    if (read_config(f, c, err)) goto fail;
    /* every layer has at least 9 tensors: a block_count the tensors cannot
     * back is refused before anything is allocated for it */
    if ((uint64_t)c->n_layer * 9 > gguf_n_tensors(f)) {
        err_set(err, "key grok.block_count = %d, but the file has only %llu tensors (at least 9 per layer)", c->n_layer,
                (unsigned long long)gguf_n_tensors(f));
        goto fail;
    }
    used = calloc(gguf_n_tensors(f) + 1, sizeof *used);
    if (!used) {
        err_set(err, "out of memory");
        goto fail;
    }
#define bind(f, ...) bind_u(f, used, __VA_ARGS__)
#define bind_f32(f, ...) bind_f32_u(f, used, __VA_ARGS__)

    const GGUFTensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb) {
        err_set(err, "missing tensor token_embd.weight");
        goto fail;
    }
    if (emb->ne[1] <= 0 || emb->ne[1] > INT32_MAX) {
        err_set(err, "token_embd.weight has a bad vocabulary size");
        goto fail;
    }
    c->n_vocab = (int)emb->ne[1];
    if (bind(f, &m->tok_embd, "token_embd.weight", c->n_embd, c->n_vocab, 1, true, err)) goto fail;

    /* Grok-2's shared dense MLP: its presence marks a Grok-2 file, which
     * also turns on the Grok-2 reference behaviours (router cap, attention
     * temperature). Grok-1 files run exactly as the Grok-1 reference:
     * no router cap (model.py Router has none), no temperature. */
    const GGUFTensor *dense = gguf_find_tensor(f, "blk.0.ffn_up.weight");
    if (dense && (dense->ne[1] <= 0 || dense->ne[1] > INT32_MAX)) {
        err_set(err, "tensor blk.0.ffn_up.weight has a bad shape (dimension 1 is %lld)", (long long)dense->ne[1]);
        goto fail;
    }
    c->n_ff_dense = dense ? (int)dense->ne[1] : 0;
    if (!dense) {
        c->router_softcap = 0.0f;
        c->attn_temp_len = 0;
    }

    if (bind(f, &m->output, "output.weight", c->n_embd, c->n_vocab, 1, false, err)) goto fail;
    m->tied_output = m->output.data == NULL;
    if (m->tied_output) m->output = m->tok_embd;
    if (bind_f32(f, &m->output_norm, "output_norm.weight", c->n_embd, 1, err)) goto fail;

    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->layers) {
        err_set(err, "out of memory");
        goto fail;
    }
    for (int il = 0; il < c->n_layer; il++)
        if (bind_layer(f, used, c, il, &m->layers[il], err)) goto fail;
#undef bind
#undef bind_f32
    /* a layer's tensor nothing reads means the file disagrees with itself
     * (block_count too small, a half-present Grok-2 shared MLP...) */
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const GGUFTensor *g = gguf_tensor(f, i);
        if (used[i] || strncmp(g->name, "blk.", 4) != 0) continue;
        int il = atoi(g->name + 4);
        if (il >= c->n_layer)
            err_set(err, "tensor %s is not used: the file says grok.block_count = %d", g->name, c->n_layer);
        else if (strstr(g->name, "ffn_up.") || strstr(g->name, "ffn_gate.") || strstr(g->name, "ffn_down."))
            err_set(err, "tensor %s is not used: a Grok-2 shared MLP needs blk.0.ffn_up.weight, which is missing",
                    g->name);
        else err_set(err, "tensor %s is not used by the grok architecture", g->name);
        goto fail;
    }
    free(used);
    used = NULL;

    GGUFString name;
    if (gguf_get_str(f, "general.name", &name, NULL) == 1)
        snprintf(m->name, sizeof m->name, "%.*s", (int)(name.len > 127 ? 127 : name.len), name.data);
    m->file = f;
    /* the whole model (dist_model_load cuts a share of it) */
    m->share.layer0 = 0, m->share.layer1 = c->n_layer;
    m->share.ff0 = 0, m->share.n_ff = c->n_ff, m->share.ff0_dense = 0, m->share.n_ff_dense = c->n_ff_dense;
    m->share.partial = false, m->share.logits = true;
    m->share.head0_kv = 0, m->share.n_head_kv = c->n_head_kv, m->share.attn_partial = false;
    m->share.vocab0 = 0, m->share.n_vocab = c->n_vocab;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) m->share.weight_bytes += gguf_tensor(f, i)->nbytes;
    return m;
fail:
    free(used);
    m->file = NULL; /* the caller keeps ownership on failure */
    model_free(m);
    return NULL;
}

Model *model_load(const char *path, Error *err) {
    GGUFFile *f = gguf_open(path, err);
    if (!f) return NULL;
    Model *m = model_from_gguf(f, err);
    if (!m) {
        err_prefix(err, "%s", path);
        gguf_close(f);
        return NULL;
    }
    if (!m->name[0]) {
        const char *base = strrchr(path, '/');
        snprintf(m->name, sizeof m->name, "%s", base ? base + 1 : path);
    }
    return m;
}

void model_free(Model *m) {
    if (!m) return;
    if (m->layers) {
        for (int il = 0; il < m->cfg.n_layer; il++) {
            Layer *L = &m->layers[il];
            free(L->attn_norm);
            free(L->attn_out_norm);
            free(L->ffn_norm);
            free(L->router);
            free(L->out_norm);
        }
        free(m->layers);
    }
    free(m->output_norm);
    gguf_close(m->file);
    free(m);
}

void model_param_counts(const Model *m, uint64_t *total, uint64_t *active) {
    uint64_t t = 0, expert = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(m->file); i++) {
        const GGUFTensor *g = gguf_tensor(m->file, i);
        uint64_t n = 1;
        for (uint32_t d = 0; d < g->n_dims; d++) n *= (uint64_t)g->ne[d];
        t += n;
        if (strstr(g->name, "_exps.")) expert += n;
    }
    *total = t;
    const ModelConfig *c = &m->cfg;
    *active = t - expert + expert / (uint64_t)c->n_expert * (uint64_t)c->n_expert_used;
}
