#!/usr/bin/python3
"""Reference logits computed straight from a checkpoint, for the `grok convert` tests.

    ckpt_ref.py grok1 CKPT_DIR --tokens 1,2,3 --out REF.f32 [--as f32|bf16|q8_0] [--head-dim 16]
    ckpt_ref.py hf HF_DIR --tokens 1,2,3 --out REF.f32 [--as f32|bf16|q8_0]

grok1: unpickles every tensorNNNNN_000 file with Python's pickle (the QuantizedWeight8bit
class is defined here, in __main__, as the release expects), finds each parameter by the
rule of shared/docs/grok-architecture.md A3 stated as JAX does it - file i is the i-th
haiku module path in sorted order - and dequantizes as the JAX reference: bf16(w8 * s)
with s per output column, or per output column and block of in/8 inputs (scales [.., 8,
out]). Constants from run.py. Independent of grok.c's loader (which walks pickle opcodes
and ranks layer numbers as strings).
hf: reads the safetensors files with a small reader written here, puts tensor-parallel
shards back together (files *-TP-00R: w1/w3 along rows, w2 along columns, B7), and takes
the hyper-parameters from config.json.

--as says how the converted file stores the weights, so that the reference computes what
that file should compute:
  f32   the dequantized weights as they are;
  bf16  the embedding (and Grok-2 weights) rounded to bf16 (int8 products already are);
  q8_0  int8 matrices as w8 * s (unrounded: what an exact Q8_0 block holds) when each
        block of 32 inputs lies in one scale block and the scale has an exact fp16 value,
        else bf16(w8 * s) quantized to Q8_0 with ggml's rule; other matrices quantized to
        Q8_0; and Q8_0 activations (--emulate-q8 of grok2_ref.py).
The forward pass itself is grok2_ref.forward (Grok-1 math when there is no dense MLP).
"""
import argparse
import dataclasses
import json
import math
import os
import pickle
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grok2_ref  # noqa: E402
from gguf_reader import GGML_F32, GGML_Q8_0, GGML_BF16  # noqa: E402


@dataclasses.dataclass
class QuantizedWeight8bit:
    weight: np.ndarray
    scales: np.ndarray


sys.modules["__main__"].QuantizedWeight8bit = QuantizedWeight8bit


def bf16_round(x):
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32) << 16
    return r.view(np.float32).astype(np.float64)


def bf16_bits(b):
    return (np.asarray(b).astype(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def q8_0_weights(w):
    """ggml's reference Q8_0 rounding of rows (..., n), dequantized."""
    return grok2_ref.q8_0_activations(w)


# ---- Grok-1 JAX checkpoint -------------------------------------------------------------
def load_grok1(d, head_dim, store):
    files = sorted(f for f in os.listdir(d) if f.startswith("tensor"))
    L = (len(files) - 2) // 12
    paths = ["language_model/in_out_embed/embeddings", "language_model/rms_norm/scale"]
    for l in range(L):
        b = "transformer/decoder_layer_%d/" % l
        paths += [b + s for s in ("moe/linear/w", "moe/linear_1/w", "moe/linear_v/w", "multi_head_attention/key/w",
                                  "multi_head_attention/linear/w", "multi_head_attention/query/w",
                                  "multi_head_attention/value/w", "rms_norm/scale", "rms_norm_1/scale",
                                  "rms_norm_2/scale", "rms_norm_3/scale", "router/w")]
    index = {p: i for i, p in enumerate(sorted(paths))}

    def load(path):
        with open(os.path.join(d, "tensor%05d_000" % index[path]), "rb") as f:
            return pickle.load(f)

    types = {}

    def matrix(path, name):
        """QuantizedWeight8bit (.., in, out) -> (.., out, in) float64 per `store`."""
        q = load(path)
        w8 = q.weight.astype(np.float64)
        s = bf16_bits(q.scales)                                   # (.., nb, out)
        n_in, nb = w8.shape[-2], s.shape[-2]
        s_full = np.repeat(s, n_in // nb, axis=-2)                # (.., in, out)
        exact = w8 * s_full
        jax = bf16_round(exact)
        if store != "q8_0":
            types[name] = GGML_BF16 if store == "bf16" else GGML_F32
            return np.swapaxes(jax, -1, -2)
        types[name] = GGML_Q8_0
        ok_blocks = (n_in // nb) % 32 == 0
        fp16_ok = np.all(s.astype(np.float32).astype(np.float16).astype(np.float64) == s, axis=-2)  # (.., out)
        rows_exact = np.swapaxes(exact, -1, -2)
        rows_req = q8_0_weights(np.swapaxes(jax, -1, -2))
        if not ok_blocks:
            return rows_req
        return np.where(fp16_ok[..., :, None], rows_exact, rows_req)

    W = {}
    emb = load("language_model/in_out_embed/embeddings").astype(np.float64)
    if store == "bf16":
        emb, types["token_embd.weight"] = bf16_round(emb), GGML_BF16
    elif store == "q8_0":
        emb, types["token_embd.weight"] = q8_0_weights(emb), GGML_Q8_0
    W["token_embd.weight"] = emb
    W["output_norm.weight"] = load("language_model/rms_norm/scale").astype(np.float64)
    for l in range(L):
        b, p = "transformer/decoder_layer_%d/" % l, "blk.%d." % l
        W[p + "attn_q.weight"] = matrix(b + "multi_head_attention/query/w", p + "attn_q.weight")
        W[p + "attn_k.weight"] = matrix(b + "multi_head_attention/key/w", p + "attn_k.weight")
        W[p + "attn_v.weight"] = matrix(b + "multi_head_attention/value/w", p + "attn_v.weight")
        W[p + "attn_output.weight"] = matrix(b + "multi_head_attention/linear/w", p + "attn_output.weight")
        W[p + "ffn_gate_exps.weight"] = matrix(b + "moe/linear/w", p + "ffn_gate_exps.weight")
        W[p + "ffn_up_exps.weight"] = matrix(b + "moe/linear_v/w", p + "ffn_up_exps.weight")
        W[p + "ffn_down_exps.weight"] = matrix(b + "moe/linear_1/w", p + "ffn_down_exps.weight")
        for gg, hk in (("attn_norm", "rms_norm"), ("attn_output_norm", "rms_norm_1"), ("ffn_norm", "rms_norm_2"),
                       ("layer_output_norm", "rms_norm_3")):
            W[p + gg + ".weight"] = load(b + hk + "/scale").astype(np.float64)
        W[p + "ffn_gate_inp.weight"] = load(b + "router/w").astype(np.float64).T
    W["_types"] = types
    E = emb.shape[1]
    Q, KV = W["blk.0.attn_q.weight"].shape[0], W["blk.0.attn_k.weight"].shape[0]
    cfg = grok2_ref.Config(n_embd=E, n_head=Q // head_dim, n_head_kv=KV // head_dim, head_dim=head_dim,
                           n_expert=W["blk.0.ffn_gate_inp.weight"].shape[0], n_expert_used=2, eps=1e-5,
                           rope_base=10000.0, embedding_scale=78.38367176906169, logit_scale=0.5773502691896257,
                           attn_scale=0.08838834764831845, attn_cap=30.0, grok2=False)
    return cfg, W


# ---- Hugging Face safetensors ---------------------------------------------------------
def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    hdr = json.loads(data[8:8 + n])
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = data[8 + n + b:8 + n + e]
        if t["dtype"] == "BF16":
            a = bf16_bits(np.frombuffer(raw, dtype="<u2"))
        elif t["dtype"] == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float64)
        elif t["dtype"] == "F32":
            a = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        else:
            raise SystemExit("%s: dtype %s" % (path, t["dtype"]))
        out[name] = a.reshape(t["shape"])
    return out


def load_hf(d, store):
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    if "num_experts" in c and "num_local_experts" not in c:
        return load_keyfan(d, c, store)
    whole, shards = {}, {}
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".safetensors"):
            continue
        rank = int(fn.split("-TP-")[1][:3]) if "-TP-" in fn and fn.split("-TP-")[1][:3].isdigit() else None
        for name, a in read_safetensors(os.path.join(d, fn)).items():
            if rank is None:
                whole[name] = a
            else:
                shards.setdefault(name, {})[rank] = a
    for name, parts in shards.items():   # w2 (down) is cut along its columns, the others along rows
        axis = 1 if name.endswith(".w2.weight") else 0
        whole[name] = np.concatenate([parts[r] for r in sorted(parts)], axis=axis)
    L = c["num_hidden_layers"]
    W, types = {}, {}

    def put(name, a, matrix=True):
        if matrix and store == "q8_0":
            a, types[name] = q8_0_weights(a), GGML_Q8_0
        elif matrix and store == "bf16":
            a, types[name] = bf16_round(a), GGML_BF16
        W[name] = a

    put("token_embd.weight", whole["model.embed_tokens.weight"])
    put("output.weight", whole["lm_head.weight"])
    W["output_norm.weight"] = whole["model.norm.weight"]
    X = c["num_local_experts"]
    for l in range(L):
        h, p = "model.layers.%d." % l, "blk.%d." % l
        for gg, hk in (("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"),
                       ("attn_output", "self_attn.o_proj"), ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"),
                       ("ffn_down", "mlp.down_proj")):
            put(p + gg + ".weight", whole[h + hk + ".weight"])
        for gg, hk in (("attn_norm", "pre_attn_norm"), ("attn_output_norm", "post_attn_norm"),
                       ("ffn_norm", "pre_moe_norm"), ("post_ffw_norm", "post_moe_norm")):
            W[p + gg + ".weight"] = whole[h + hk + ".weight"]
        W[p + "ffn_gate_inp.weight"] = whole[h + "block_sparse_moe.gate.weight"]
        for gg, wk in (("ffn_gate_exps", "w1"), ("ffn_up_exps", "w3"), ("ffn_down_exps", "w2")):
            put(p + gg + ".weight",
                np.stack([whole[h + "block_sparse_moe.experts.%d.%s.weight" % (e, wk)] for e in range(X)]))
    W["_types"] = types
    E, H = c["hidden_size"], c["num_attention_heads"]
    hd = c.get("head_dim", E // H)
    cfg = grok2_ref.Config(
        n_embd=E, n_head=H, n_head_kv=c["num_key_value_heads"], head_dim=hd, n_expert=X,
        n_expert_used=c["num_experts_per_tok"], eps=c["rms_norm_eps"], rope_base=float(c["rope_theta"]),
        embedding_scale=c["embedding_multiplier_scale"], logit_scale=c["output_multiplier_scale"],
        attn_scale=c.get("attn_output_multiplier", hd ** -0.5), attn_cap=c["attn_logit_softcapping"], grok2=True,
        router_cap=c["router_logit_softcapping"], final_cap=c.get("final_logit_softcapping", 0.0),
        temp_len=c.get("attn_temperature_len", 0))
    return cfg, W


def load_keyfan(d, c, store):
    """keyfan/grok-1-hf names (architecture doc A8), [out, in] tensors, tied output."""
    whole = {}
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".safetensors"):
            whole.update(read_safetensors(os.path.join(d, fn)))
    W, types = {}, {}

    def put(name, a):
        if store == "q8_0":
            a, types[name] = q8_0_weights(a), GGML_Q8_0
        elif store == "bf16":
            a, types[name] = bf16_round(a), GGML_BF16
        W[name] = a

    put("token_embd.weight", whole["transformer.in_out_embed.weight"])
    W["output_norm.weight"] = whole["transformer.rms_norm.weight"]
    X = c["num_experts"]
    for l in range(c["num_hidden_layers"]):
        h, p = "transformer.decoder_layer.%d." % l, "blk.%d." % l
        for gg, hk in (("attn_q", "query"), ("attn_k", "key"), ("attn_v", "value"), ("attn_output", "linear")):
            put(p + gg + ".weight", whole[h + "multi_head_attention." + hk + ".weight"])
        for gg, hk in (("attn_norm", "rms_norm"), ("attn_output_norm", "rms_norm_1"), ("ffn_norm", "rms_norm_2"),
                       ("layer_output_norm", "rms_norm_3")):
            W[p + gg + ".weight"] = whole[h + hk + ".weight"]
        W[p + "ffn_gate_inp.weight"] = whole[h + "router.weight"]
        for gg, hk in (("ffn_gate_exps", "linear"), ("ffn_up_exps", "linear_v"), ("ffn_down_exps", "linear_1")):
            put(p + gg + ".weight", np.stack([whole[h + "moe.%d.%s.weight" % (e, hk)] for e in range(X)]))
    W["_types"] = types
    E, H = c["hidden_size"], c["num_attention_heads"]
    cfg = grok2_ref.Config(
        n_embd=E, n_head=H, n_head_kv=c["num_key_value_heads"], head_dim=E // H, n_expert=X,
        n_expert_used=c["num_experts_per_tok"], eps=c["rms_norm_eps"], rope_base=float(c["rope_theta"]),
        embedding_scale=c["embedding_multiplier_scale"], logit_scale=c["output_multiplier_scale"],
        attn_scale=c["attn_output_multiplier"], attn_cap=c["max_attn_value"], grok2=False)
    return cfg, W


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["grok1", "hf"])
    ap.add_argument("dir")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--as", dest="store", default="f32", choices=["f32", "bf16", "q8_0"])
    ap.add_argument("--head-dim", type=int, default=128)
    a = ap.parse_args()
    tokens = [int(t) for t in a.tokens.split(",") if t.strip()]
    cfg, W = load_grok1(a.dir, a.head_dim, a.store) if a.kind == "grok1" else load_hf(a.dir, a.store)
    logits = grok2_ref.forward(cfg, W, tokens, emulate_q8=a.store == "q8_0")
    logits.astype("<f4").tofile(a.out)
    print("ckpt_ref: %d tokens x %d -> %s (argmax last %d)" % (len(tokens), logits.shape[1], a.out,
                                                               int(np.argmax(logits[-1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
