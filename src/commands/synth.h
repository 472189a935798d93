/* synth.h - random Grok-architecture models, deterministic for a seed, in
 * the exact GGUF layout llama.cpp's grok loader expects. `grok new`, the
 * tests and the benchmarks make their models with it. */
#ifndef GROK_SYNTH_H
#define GROK_SYNTH_H

#include <stdint.h>

#include "common.h"

typedef struct {
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_expert, n_expert_used, n_ctx;
    int n_vocab;                /* synthetic vocabulary size, unless tokenizer_path is set */
    uint32_t type;              /* matrices: F32, F16, BF16 or Q8_0 (norms and router stay F32) */
    int untied;                 /* write a separate output.weight */
    int fused_qkv;              /* write blk.N.attn_qkv instead of attn_q/k/v */
    uint64_t seed;
    const char *tokenizer_path; /* SentencePiece .model to embed, or NULL */
} SynthParams;

/* The Grok-2 layout (../shared/docs/grok-architecture.md Part B, with
 * llama.cpp's GGUF names): a shared dense MLP on every layer
 * (blk.N.ffn_gate/ffn_up/ffn_down), an untied output.weight, the post-MoE
 * norm as blk.N.post_ffw_norm, grok.feed_forward_length = the dense width and
 * grok.expert_feed_forward_length = n_ff, logit scale 0.5, RoPE base
 * 208533496, and the caps and attention temperature below. */
typedef struct {
    int n_ff_dense;         /* dense MLP width */
    int attn_temp_len;      /* grok.attention.temperature_length; 0 = key not written */
    float router_softcap;   /* grok.router_logit_softcapping (0 = off) */
    float final_softcap;    /* grok.final_logit_softcapping (0 = off) */
    float rope_base;        /* grok.rope.freq_base */
    int gpt2_vocab;         /* byte-level BPE vocabulary (tokenizer "gpt2", pre "grok-2") */
} SynthGrok2;

/* Grok-2's values: dense 2 * n_ff (32768 vs 16384), temperature length
 * 1024, router cap 30, final cap 50, base 208533496, gpt2 vocabulary. */
void synth_grok2_defaults(SynthGrok2 *g, const SynthParams *p);

/* Checks the parameters and writes the model to path. */
int synth_write_model(const SynthParams *p, const char *path, Error *err);
/* The same with the Grok-2 layout (g != NULL) or Grok-1's (g == NULL). */
int synth_write_model_ex(const SynthParams *p, const SynthGrok2 *g, const char *path, Error *err);

#endif
