/* synth.c - see synth.h. */
#include "synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "gguf.h"
#include "model.h"
#include "quant.h"
#include "tokenizer.h"

typedef struct {
    uint64_t seed;      /* per-tensor stream */
    uint32_t type;
    int64_t cols, rows;
    float mean, std;    /* values are mean + uniform noise with this std */
} RandTensor;

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int fill_random(void *ctx, void *dst, uint64_t nbytes, Error *err) {
    const RandTensor *r = ctx;
    float *row = malloc((size_t)r->cols * sizeof(float));
    if (!row) return err_set(err, "out of memory");
    uint64_t s = r->seed;
    const float half = r->std * 1.7320508f; /* uniform on [-h, h] has std h/sqrt(3) */
    const size_t rb = type_row_size(r->type, r->cols);
    for (int64_t i = 0; i < r->rows; i++) {
        for (int64_t j = 0; j < r->cols; j++) {
            double u = (double)(splitmix64(&s) >> 11) * (1.0 / 9007199254740992.0);
            row[j] = r->mean + (float)((2.0 * u - 1.0) * half);
        }
        quantize_row(r->type, row, (uint8_t *)dst + (size_t)i * rb, r->cols);
    }
    free(row);
    (void)nbytes;
    return 0;
}

void synth_grok2_defaults(SynthGrok2 *g, const SynthParams *p) {
    g->n_ff_dense = 2 * p->n_ff;
    g->attn_temp_len = 1024;
    g->router_softcap = 30.0f;
    g->final_softcap = 50.0f;
    g->rope_base = 208533496.0f;
    g->gpt2_vocab = 1;
}

static int check(const SynthParams *p, Error *err) {
    const uint32_t t = p->type;
    if (t != GGML_TYPE_F32 && t != GGML_TYPE_F16 && t != GGML_TYPE_BF16 && t != GGML_TYPE_Q8_0)
        return err_set(err, "the weight type must be f32, f16, bf16 or q8_0");
    if (p->n_embd <= 0 || p->n_layer <= 0 || p->n_head <= 0 || p->n_head_kv <= 0 || p->n_ff <= 0 ||
        p->n_expert <= 0 || p->n_expert_used <= 0 || p->n_ctx <= 0)
        return err_set(err, "every size must be positive");
    if (p->n_embd % p->n_head) return err_set(err, "--embd must be a multiple of --heads");
    if (p->n_head % p->n_head_kv) return err_set(err, "--heads must be a multiple of --kv-heads");
    if ((p->n_embd / p->n_head) % 2) return err_set(err, "the head dimension (embd/heads) must be even");
    if (p->n_expert_used > p->n_expert) return err_set(err, "--experts-used cannot exceed --experts");
    const int bs = type_info(t)->block_size;
    if (p->n_embd % bs || p->n_ff % bs)
        return err_set(err, "--embd and --ff must be multiples of %d for %s", bs, type_info(t)->name);
    return 0;
}

int synth_write_model(const SynthParams *p, const char *path, Error *err) {
    return synth_write_model_ex(p, NULL, path, err);
}

int synth_write_model_ex(const SynthParams *p, const SynthGrok2 *g2, const char *path, Error *err) {
    if (check(p, err)) return -1;
    if (g2) {
        const int bs = type_info(p->type)->block_size;
        if (g2->n_ff_dense <= 0 || g2->n_ff_dense % bs)
            return err_set(err, "the dense MLP width must be a positive multiple of %d", bs);
        if (g2->attn_temp_len < 0 || !(g2->router_softcap >= 0) || !(g2->final_softcap >= 0) || !(g2->rope_base > 0))
            return err_set(err, "bad Grok-2 temperature length, caps or rope base");
    }
    const int E = p->n_embd, L = p->n_layer, H = p->n_head, K = p->n_head_kv, F = p->n_ff, X = p->n_expert;
    const int hd = E / H;
    Tokenizer *tok = p->tokenizer_path            ? tokenizer_from_spm_file(p->tokenizer_path, err)
                     : g2 && g2->gpt2_vocab ? tokenizer_synthetic_gpt2(p->n_vocab, err)
                                            : tokenizer_synthetic(p->n_vocab, err);
    if (!tok) return -1;
    const int V = tokenizer_n_vocab(tok);
    GGUFWriter *w = gguf_writer_new();
    RandTensor *rt = calloc((size_t)(4 + 15 * L), sizeof *rt);
    int rc = -1, nt = 0;
    if (!w || !rt) {
        err_set(err, "out of memory");
        goto out;
    }
    const char *tn = type_info(p->type)->name;
    char name[96];
    snprintf(name, sizeof name, "grok%s-random-e%d-l%d-x%d-%s", g2 ? "2" : "", E, L, X, tn);
    /* general.file_type (llama_ftype): ALL_F32 0, F16 1, Q8_0 7, BF16 32 */
    const uint32_t ftype = p->type == GGML_TYPE_F32 ? 0 : p->type == GGML_TYPE_F16 ? 1 : p->type == GGML_TYPE_Q8_0 ? 7 : 32;
    int ok = !gguf_set_str(w, "general.architecture", "grok") && !gguf_set_str(w, "general.name", name) &&
             !gguf_set_u32(w, "general.file_type", ftype) &&
             !gguf_set_u32(w, "general.alignment", GGUF_DEFAULT_ALIGNMENT) &&
             !gguf_set_u32(w, "grok.context_length", (uint32_t)p->n_ctx) &&
             !gguf_set_u32(w, "grok.embedding_length", (uint32_t)E) && !gguf_set_u32(w, "grok.block_count", (uint32_t)L) &&
             !gguf_set_u32(w, "grok.feed_forward_length", (uint32_t)(g2 ? g2->n_ff_dense : F)) &&
             !gguf_set_u32(w, "grok.attention.head_count", (uint32_t)H) &&
             !gguf_set_u32(w, "grok.attention.head_count_kv", (uint32_t)K) &&
             !gguf_set_u32(w, "grok.expert_count", (uint32_t)X) &&
             !gguf_set_u32(w, "grok.expert_used_count", (uint32_t)p->n_expert_used) &&
             !gguf_set_f32(w, "grok.rope.freq_base", g2 ? g2->rope_base : GROK1_ROPE_BASE) &&
             !gguf_set_f32(w, "grok.attention.layer_norm_rms_epsilon", 1e-5f) &&
             !gguf_set_f32(w, "grok.embedding_scale", sqrtf((float)E)) &&
             !gguf_set_f32(w, "grok.logit_scale", g2 ? 0.5f : GROK1_LOGIT_SCALE) &&
             !gguf_set_f32(w, "grok.attention.output_scale", 1.0f / sqrtf((float)hd)) &&
             !gguf_set_f32(w, "grok.attn_logit_softcapping", GROK1_ATTN_SOFTCAP);
    if (ok && g2) /* the keys llama.cpp's converter writes for Grok-2 */
        ok = !gguf_set_u32(w, "grok.expert_feed_forward_length", (uint32_t)F) &&
             !gguf_set_f32(w, "grok.router_logit_softcapping", g2->router_softcap) &&
             !gguf_set_f32(w, "grok.final_logit_softcapping", g2->final_softcap) &&
             (g2->attn_temp_len == 0 ||
              !gguf_set_u32(w, "grok.attention.temperature_length", (uint32_t)g2->attn_temp_len));
    if (!ok) {
        err_set(err, "out of memory");
        goto out;
    }
    if (tokenizer_to_gguf(tok, w, err)) goto out;
    /* Each kind of tensor gets a std that keeps activations near unit RMS;
     * norms near 1; the router a little sharper so routing is clear-cut. */
    const float se = 1.0f / sqrtf((float)E), sf = 1.0f / sqrtf((float)F), sq = 1.0f / sqrtf((float)(H * hd));
    const uint32_t T = p->type, F32 = GGML_TYPE_F32;
#define ADD(NAME, TYPE, NE0, NE1, NE2, MEAN, STD)                                                              \
    do {                                                                                                       \
        int64_t ne_[3] = {(NE0), (NE1), (NE2)};                                                                \
        uint32_t nd_ = ne_[2] > 1 ? 3u : ne_[1] > 1 ? 2u : 1u;                                                 \
        RandTensor *r_ = &rt[nt];                                                                              \
        r_->seed = p->seed * 0x100000001b3ull + (uint64_t)nt * 0x9e3779b97f4a7c15ull;                           \
        r_->type = (TYPE), r_->cols = ne_[0], r_->rows = ne_[1] * ne_[2], r_->mean = (MEAN), r_->std = (STD);  \
        nt++;                                                                                                  \
        if (gguf_add_tensor(w, (NAME), (TYPE), nd_, ne_, NULL, fill_random, r_, err)) goto out;                \
    } while (0)
    ADD("token_embd.weight", T, E, V, 1, 0.0f, se);
    ADD("output_norm.weight", F32, E, 1, 1, 1.0f, 0.1f);
    if (p->untied || g2) ADD("output.weight", T, E, V, 1, 0.0f, se);
    for (int il = 0; il < L; il++) {
        char n[64];
#define BLK(s) (snprintf(n, sizeof n, "blk.%d.%s.weight", il, s), n)
        ADD(BLK("attn_norm"), F32, E, 1, 1, 1.0f, 0.1f);
        if (p->fused_qkv) {
            ADD(BLK("attn_qkv"), T, E, H * hd + 2 * K * hd, 1, 0.0f, se);
        } else {
            ADD(BLK("attn_q"), T, E, H * hd, 1, 0.0f, se);
            ADD(BLK("attn_k"), T, E, K * hd, 1, 0.0f, se);
            ADD(BLK("attn_v"), T, E, K * hd, 1, 0.0f, se);
        }
        ADD(BLK("attn_output"), T, H * hd, E, 1, 0.0f, sq);
        ADD(BLK("attn_output_norm"), F32, E, 1, 1, 1.0f, 0.1f);
        ADD(BLK("ffn_norm"), F32, E, 1, 1, 1.0f, 0.1f);
        ADD(BLK("ffn_gate_inp"), F32, E, X, 1, 0.0f, 2.0f * se);
        ADD(BLK("ffn_gate_exps"), T, E, F, X, 0.0f, se);
        ADD(BLK("ffn_up_exps"), T, E, F, X, 0.0f, se);
        ADD(BLK("ffn_down_exps"), T, F, E, X, 0.0f, sf);
        if (g2) {
            const int D = g2->n_ff_dense;
            ADD(BLK("ffn_gate"), T, E, D, 1, 0.0f, se);
            ADD(BLK("ffn_up"), T, E, D, 1, 0.0f, se);
            ADD(BLK("ffn_down"), T, D, E, 1, 0.0f, 1.0f / sqrtf((float)D));
            ADD(BLK("post_ffw_norm"), F32, E, 1, 1, 1.0f, 0.1f);
        } else {
            ADD(BLK("layer_output_norm"), F32, E, 1, 1, 1.0f, 0.1f);
        }
#undef BLK
    }
#undef ADD
    if (gguf_write(w, path, err)) goto out;
    rc = 0;
out:
    free(rt);
    gguf_writer_free(w);
    tokenizer_free(tok);
    return rc;
}
