#!/usr/bin/python3
"""Writes a synthetic Grok-2 checkpoint in the layout of xAI's Hugging Face release
(shared/docs/grok-architecture.md B1, B6, B7), with tiny shapes and random bf16 weights:

  * config.json with Grok-2's keys (residual_moe, moe_intermediate_size, caps,
    attn_temperature_len, rope_theta, rope_type "original" with its YaRN-looking keys);
  * pytorch_model-00001-TP-common.safetensors, pytorch_model-00002-TP-common.safetensors:
    the unsharded tensors (embedding, lm_head, final norm; attention, norms, router and the
    shared MLP of every layer);
  * pytorch_model-000NN-TP-00R.safetensors, R = 0..7: tensor-parallel rank R's slice of
    every expert: rows R*F/8 .. of w1 (gate) and w3 (up), columns R*F/8 .. of w2 (down);
  * tokenizer.tok.json: tiktoken-style {"regular_tokens": [{"bytes": [...], "token": id}],
    "special_tokens": [...], "word_split": "V1", "pat_str": ..., "vocab_size": N}; the
    special tokens <|pad|> 0, <|separator|> 1, <|eos|> 2, <|mask|> 3, the 256 bytes, BPE
    merges learned here from a small multilingual text, then <|controlN|> tokens.
Weights are bf16 (stored as their uint16 bit patterns; numpy has no bfloat16).

usage: make_hf_ckpt.py OUT_DIR [--layers 2] [--embd 64] [--heads 4] [--kv-heads 2]
           [--ff 64] [--dense-ff 128] [--experts 4] [--vocab 600] [--tp 8] [--seed 1]
       make_hf_ckpt.py OUT_DIR --keyfan tokenizer.model [...]
--keyfan writes a Grok-1 port in keyfan/grok-1-hf's layout instead (architecture-doc A8):
GrokForCausalLM config.json, transformer.decoder_layer.N.{multi_head_attention.{query,key,
value,linear}, rms_norm{,_1,_2,_3}, router, moe.E.{linear,linear_v,linear_1}} in two
model-0000K-of-00002.safetensors files, tied output, and the given tokenizer.model (whose
131072 pieces set the vocabulary).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from grok2_tok_ref import regex_split  # noqa: E402

PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
       r"|\s*[\r\n]+|\s+(?!\S)|\s+")

TEXT = ("The quick brown fox jumps over the lazy dog. I'm sure it's what we'll do, isn't it? "
        "Grok-2 was released in 2024. Hello world! Hello again, world. The model answers questions. "
        "Le café est très bon. Über die Brücke. Привет, как дела? 日本語のテキストです。你好世界。 "
        "def main():\n    return 42\n\n" * 3)


def bf16_bits(x):
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16)).astype(np.uint16)


def write_safetensors(path, tensors):
    """tensors: {name: uint16 array of bf16 bits}"""
    hdr, off, blobs = {}, 0, []
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<u2").tobytes()
        hdr[name] = {"dtype": "BF16", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    hdr["__metadata__"] = {"format": "pt"}
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def train_tokens(n_vocab):
    specials = ["<|pad|>", "<|separator|>", "<|eos|>", "<|mask|>"]
    regular = [bytes([b]) for b in range(256)]
    words = {}
    for p in regex_split(TEXT):
        w = tuple(bytes([b]) for b in p.encode("utf-8"))
        words[w] = words.get(w, 0) + 1
    known = set(regular)
    while len(specials) + len(regular) < n_vocab - 8:
        pairs = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], [-x for x in kv[0][0] + kv[0][1]]))
        new = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + c
        words = new
        if a + b not in known:
            known.add(a + b)
            regular.append(a + b)
    tok = {"regular_tokens": [], "special_tokens": [], "word_split": "V1", "pat_str": PAT}
    for i, s in enumerate(specials):
        tok["special_tokens"].append({"bytes": list(s.encode()), "token": i})
    for i, r in enumerate(regular):
        tok["regular_tokens"].append({"bytes": list(r), "token": len(specials) + i})
    k = 1
    while len(specials) + len(regular) + k - 1 < n_vocab:
        tok["special_tokens"].append({"bytes": list(("<|control%d|>" % k).encode()),
                                      "token": len(specials) + len(regular) + k - 1})
        k += 1
    tok["vocab_size"] = n_vocab
    tok["default_allowed_special"] = None
    return tok


def keyfan(a):
    import shutil
    rng = np.random.default_rng(a.seed)
    E, H, K, F, X, L = a.embd, a.heads, a.kv_heads, a.ff, a.experts, a.layers
    hd = E // H
    V = 131072   # Grok-1's tokenizer.model

    def mat(*shape, std):
        return bf16_bits(rng.uniform(-std * 3 ** 0.5, std * 3 ** 0.5, size=shape))

    def norm():
        return bf16_bits(1.0 + rng.uniform(-0.17, 0.17, size=E))

    os.makedirs(a.out, exist_ok=True)
    parts = [{"transformer.in_out_embed.weight": mat(V, E, std=E ** -0.5), "transformer.rms_norm.weight": norm()}, {}]
    for l in range(L):
        t = parts[l % 2]
        p = "transformer.decoder_layer.%d." % l
        t[p + "multi_head_attention.query.weight"] = mat(H * hd, E, std=E ** -0.5)
        t[p + "multi_head_attention.key.weight"] = mat(K * hd, E, std=E ** -0.5)
        t[p + "multi_head_attention.value.weight"] = mat(K * hd, E, std=E ** -0.5)
        t[p + "multi_head_attention.linear.weight"] = mat(E, H * hd, std=(H * hd) ** -0.5)
        for n in ("rms_norm", "rms_norm_1", "rms_norm_2", "rms_norm_3"):
            t[p + n + ".weight"] = norm()
        t[p + "router.weight"] = mat(X, E, std=2 * E ** -0.5)
        for e in range(X):
            t[p + "moe.%d.linear.weight" % e] = mat(F, E, std=E ** -0.5)
            t[p + "moe.%d.linear_v.weight" % e] = mat(F, E, std=E ** -0.5)
            t[p + "moe.%d.linear_1.weight" % e] = mat(E, F, std=F ** -0.5)
    for k, t in enumerate(parts):
        write_safetensors(os.path.join(a.out, "model-%05d-of-00002.safetensors" % (k + 1)), t)
    cfg = {"architectures": ["GrokForCausalLM"], "model_type": "grok-1", "torch_dtype": "bfloat16",
           "vocab_size": V, "hidden_size": E, "intermediate_size": F, "num_hidden_layers": L,
           "num_attention_heads": H, "num_key_value_heads": K, "num_experts": X, "num_experts_per_tok": 2,
           "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "embedding_multiplier_scale": 78.38367176906169, "output_multiplier_scale": 0.5773502691896257,
           "attn_output_multiplier": 0.08838834764831845, "max_attn_value": 30.0, "tie_word_embeddings": True}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    shutil.copy(a.keyfan, os.path.join(a.out, "tokenizer.model"))
    print("wrote a keyfan-style Grok-1 port (%d layers) to %s" % (L, a.out))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ff", type=int, default=64)
    ap.add_argument("--dense-ff", type=int, default=128)
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=600)
    ap.add_argument("--tp", type=int, default=8)
    ap.add_argument("--temp-len", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keyfan", metavar="TOKENIZER_MODEL")
    a = ap.parse_args()
    if a.keyfan:
        return keyfan(a)
    rng = np.random.default_rng(a.seed)
    E, H, K, F, D, X, V, L = a.embd, a.heads, a.kv_heads, a.ff, a.dense_ff, a.experts, a.vocab, a.layers
    hd = E // H

    def mat(*shape, std):
        return bf16_bits(rng.uniform(-std * 3 ** 0.5, std * 3 ** 0.5, size=shape))

    def norm():
        return bf16_bits(1.0 + rng.uniform(-0.17, 0.17, size=E))

    os.makedirs(a.out, exist_ok=True)
    c1 = {"model.embed_tokens.weight": mat(V, E, std=E ** -0.5), "lm_head.weight": mat(V, E, std=E ** -0.5),
          "model.norm.weight": norm()}
    c2 = {}
    ranks = [dict() for _ in range(a.tp)]
    for l in range(L):
        p = "model.layers.%d." % l
        c1[p + "self_attn.q_proj.weight"] = mat(H * hd, E, std=E ** -0.5)
        c1[p + "self_attn.k_proj.weight"] = mat(K * hd, E, std=E ** -0.5)
        c1[p + "self_attn.v_proj.weight"] = mat(K * hd, E, std=E ** -0.5)
        c1[p + "self_attn.o_proj.weight"] = mat(E, H * hd, std=(H * hd) ** -0.5)
        for n in ("pre_attn_norm", "post_attn_norm", "pre_moe_norm", "post_moe_norm"):
            c2[p + n + ".weight"] = norm()
        c2[p + "block_sparse_moe.gate.weight"] = mat(X, E, std=2 * E ** -0.5)
        c2[p + "mlp.gate_proj.weight"] = mat(D, E, std=E ** -0.5)
        c2[p + "mlp.up_proj.weight"] = mat(D, E, std=E ** -0.5)
        c2[p + "mlp.down_proj.weight"] = mat(E, D, std=D ** -0.5)
        s = F // a.tp
        for e in range(X):
            q = p + "block_sparse_moe.experts.%d." % e
            w1, w3, w2 = mat(F, E, std=E ** -0.5), mat(F, E, std=E ** -0.5), mat(E, F, std=F ** -0.5)
            for r in range(a.tp):
                ranks[r][q + "w1.weight"] = w1[r * s:(r + 1) * s]
                ranks[r][q + "w3.weight"] = w3[r * s:(r + 1) * s]
                ranks[r][q + "w2.weight"] = w2[:, r * s:(r + 1) * s]
    write_safetensors(os.path.join(a.out, "pytorch_model-00001-TP-common.safetensors"), c1)
    write_safetensors(os.path.join(a.out, "pytorch_model-00002-TP-common.safetensors"), c2)
    for r in range(a.tp):
        write_safetensors(os.path.join(a.out, "pytorch_model-%05d-TP-%03d.safetensors" % (3 + r, r)), ranks[r])
    cfg = {
        "architectures": ["Grok1ForCausalLM"], "model_type": "git", "torch_dtype": "bfloat16",
        "vocab_size": V, "hidden_size": E, "num_hidden_layers": L, "head_dim": hd,
        "num_attention_heads": H, "num_key_value_heads": K, "num_local_experts": X, "num_experts_per_tok": 2,
        "moe_intermediate_size": F, "residual_moe": True, "intermediate_size": D,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
        "embedding_multiplier_scale": E ** 0.5, "output_multiplier_scale": 0.5,
        "attn_logit_softcapping": 30.0, "router_logit_softcapping": 30.0, "final_logit_softcapping": 50.0,
        "rope_theta": 208533496, "rope_type": "original", "original_max_position_embeddings": 8192,
        "scaling_factor": 16.0, "extrapolation_factor": 1.0, "attn_factor": 1.0, "beta_fast": 8, "beta_slow": 1,
        "attn_temperature_len": a.temp_len, "sliding_window_size": -1, "global_attn_every_n": 1,
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(a.out, "tokenizer.tok.json"), "w") as f:
        json.dump(train_tokens(V), f)
    print("wrote a Grok-2 checkpoint (%d layers, %d TP ranks) to %s" % (L, a.tp, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
