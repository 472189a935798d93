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

/* Checks the parameters and writes the model to path. */
int synth_write_model(const SynthParams *p, const char *path, Error *err);

#endif
