/* model.h - a Grok model: hyper-parameters read from GGUF metadata (llama.cpp's
 * `grok` keys, with its defaults) and the weight tensors, which stay in the
 * read-only file mapping. Grok-1 and Grok-2 share the description: optional
 * parts (fused QKV, untied output, the Grok-2 dense MLP and caps) are data. */
#ifndef GROK_MODEL_H
#define GROK_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "gguf.h"

/* Defaults of llama.cpp's grok loader when a key is absent, which are
 * Grok-1's constants (../shared/docs/grok-architecture.md A1). */
#define GROK1_EMBEDDING_SCALE 78.38367176906169f  /* sqrt(6144), run.py embedding_multiplier_scale */
#define GROK1_LOGIT_SCALE 0.5773502691896257f     /* 1/sqrt(3), run.py output_multiplier_scale */
#define GROK1_ATTN_OUTPUT_SCALE 0.08838834764831845f /* 1/sqrt(128), model.py attn_output_multiplier */
#define GROK1_ATTN_SOFTCAP 30.0f                  /* model.py: 30*tanh(logits/30) */
#define GROK1_ROPE_BASE 10000.0f                  /* model.py RotaryEmbedding base_exponent */
#define GROK2_ROUTER_SOFTCAP 30.0f                /* Grok-2 config router_logit_softcapping */
#define GROK2_MOE_COMBINE 0.70710678118654752f    /* Grok-2: (mlp + moe) / sqrt(2) */

typedef struct {
    int n_vocab;         /* rows of token_embd */
    int n_embd;          /* d_model */
    int n_layer;
    int n_head;          /* query heads */
    int n_head_kv;       /* key/value heads (GQA) */
    int head_dim;        /* n_embd / n_head unless grok.attention.key_length says otherwise */
    int n_ff;            /* expert FFN width */
    int n_ff_dense;      /* Grok-2 shared dense MLP width, 0 if none */
    int n_expert;
    int n_expert_used;
    int n_ctx_train;     /* grok.context_length */
    float eps;           /* RMSNorm epsilon */
    float rope_base;
    float embedding_scale;
    float logit_scale;
    float attn_scale;     /* multiplies the QK logits (grok.attention.output_scale) */
    float attn_softcap;   /* c*tanh(s/c) on attention logits, 0 = off */
    float router_softcap; /* on router logits, 0 = off (Grok-1 reference: off) */
    float final_softcap;  /* on output logits, 0 = off */
    int attn_temp_len;    /* Grok-2 attention temperature length, 0 = off */
} ModelConfig;

/* A view of one tensor in the mapping. Shapes are written C-style below:
 * (rows, cols) means `rows` rows of `cols` contiguous values. */
typedef struct {
    const void *data;   /* NULL if the tensor is absent */
    uint32_t type;      /* GGMLType */
    int64_t rows;       /* product of ne[1..] */
    int64_t cols;       /* ne[0] */
    size_t row_bytes;   /* bytes of one row */
} Tensor;

typedef struct {
    float *attn_norm;      /* (n_embd) pre-attention RMSNorm weight, "rms_norm" */
    Tensor wq;             /* (n_head*head_dim, n_embd); absent when wqkv is used */
    Tensor wk;             /* (n_head_kv*head_dim, n_embd) */
    Tensor wv;             /* (n_head_kv*head_dim, n_embd) */
    Tensor wqkv;           /* ((n_head+2*n_head_kv)*head_dim, n_embd), fused alternative */
    Tensor wo;             /* (n_embd, n_head*head_dim) */
    float *attn_out_norm;  /* (n_embd) post-attention RMSNorm, "rms_norm_1" */
    float *ffn_norm;       /* (n_embd) pre-MoE RMSNorm, "rms_norm_2" */
    float *router;         /* (n_expert, n_embd) router weights, f32 */
    Tensor gate_exps;      /* (n_expert * n_ff, n_embd) "linear" (gets the GELU) */
    Tensor up_exps;        /* (n_expert * n_ff, n_embd) "linear_v" */
    Tensor down_exps;      /* (n_expert * n_embd, n_ff) "linear_1" */
    Tensor ffn_gate;       /* (n_ff_dense, n_embd) Grok-2 shared MLP, absent for Grok-1 */
    Tensor ffn_up;         /* (n_ff_dense, n_embd) */
    Tensor ffn_down;       /* (n_embd, n_ff_dense) */
    float *out_norm;       /* (n_embd) post-MoE RMSNorm, "rms_norm_3" */
} Layer;

/* This process's share of the model when several processes run it
 * (dist/dist.h): model_load sets the whole model; dist_model_load cuts it. */
typedef struct {
    int layer0, layer1;    /* layers computed here: [layer0, layer1) */
    int ff0, n_ff;         /* expert FFN columns used here: [ff0, ff0 + n_ff) of cfg.n_ff, i.e. those
                              rows of each expert in gate_exps / up_exps; down_exps is then a view of
                              its columns [ff0, ff0 + n_ff) (cols n_ff, rows keep their stride) */
    int ff0_dense, n_ff_dense; /* the same for the Grok-2 dense MLP (ffn_down a view of its columns) */
    bool partial;          /* the MoE output is this process's part of a sum over processes */
    int head0_kv, n_head_kv; /* attention heads computed here: key/value heads [head0_kv, head0_kv + n_head_kv)
                              of cfg.n_head_kv and their query heads (whole GQA groups: [head0_kv * group,
                              (head0_kv + n_head_kv) * group)), i.e. those rows of wq / wk / wv (wqkv); wo is then
                              a view of the query heads' columns; the KV cache holds these heads only */
    bool attn_partial;     /* the attention output (after wo) is this process's part of a sum over processes */
    int vocab0, n_vocab;   /* rows [vocab0, vocab0 + n_vocab) of the output computed here (0: none) */
    bool logits;           /* this process returns the logits (gathered from the others' rows) */
    uint64_t weight_bytes; /* bytes of weights this process reads */
} ModelShare;

typedef struct Model {
    ModelConfig cfg;
    ModelShare share;
    GGUFFile *file;
    Tensor tok_embd;       /* (n_vocab, n_embd) */
    Tensor output;         /* (n_vocab, n_embd); == tok_embd when tied */
    bool tied_output;
    float *output_norm;    /* (n_embd) final RMSNorm */
    Layer *layers;         /* (n_layer) */
    char name[128];        /* general.name or the file name */
} Model;

/* Opens a GGUF file and binds a Grok model: every required key and tensor
 * must be present with the right type and shape; errors name what is wrong. */
Model *model_load(const char *path, Error *err);
/* Binds a model from an already open file; on success the model owns f. */
Model *model_from_gguf(GGUFFile *f, Error *err);
void model_free(Model *m);

/* Parameter counts: all weights, and those used for one token (experts_used
 * of n_expert experts). */
void model_param_counts(const Model *m, uint64_t *total, uint64_t *active);

#endif
