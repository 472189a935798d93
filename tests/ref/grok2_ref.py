#!/usr/bin/python3
"""Float64 spec reference for Grok-2 (and Grok-1) forward passes.

Written from shared/docs/grok-architecture.md Part B (B3 layer math, B4 attention
temperature, B5 RoPE) and Part A5, not from grok.c's C code. One position-parallel
forward pass over a token sequence, all in float64:

    x   = E[t] * embedding_scale
    per layer:
      u = rmsnorm(x) * attn_norm;  q,k,v = Wq u, Wk u, Wv u;  q,k = rope_neox(pos, base)
      s = cap_a * tanh(q.k * attn_scale / cap_a) * T(pos)       T = log2(pos)/log2(len), pos > len
      x = x + rmsnorm(Wo softmax(s) v) * attn_output_norm
      u = rmsnorm(x) * ffn_norm
      r = router u;  r = cap_r * tanh(r / cap_r)  (Grok-2 only)   P = softmax(r)
      moe = sum over top-k of P[e] * Wdown_e(gelu(Wgate_e u) * Wup_e u)   (not renormalised)
      Grok-2: f = (dense(u) + moe) / sqrt(2)    else f = moe
      x = x + rmsnorm(f) * post_moe_norm
    logits = (Wout rmsnorm(x) * output_norm) * logit_scale;  Grok-2: cap_f * tanh(logits / cap_f)

GELU is the tanh approximation (llama.cpp and the Grok-1 JAX reference; SGLang's CUDA
kernels use erf, see B3). Weights are given as float64 arrays in torch layout (out, in).

Usable as a module (forward(cfg, W, tokens) with the weights in GGUF tensor names, which
the checkpoint tests use to run a synthetic checkpoint read directly) or as a script on a
GGUF file:

    /usr/bin/python3 grok2_ref.py MODEL.gguf --tokens 1,2,3 --out REF.f32 [--emulate-q8]
        [--llamacpp]

writes n_tokens x n_vocab float32 logits (all positions).
  --emulate-q8  quantize activations to Q8_0 (ggml's reference rounding) before matmuls
                with Q8_0 weights, as grok.c and llama.cpp do.
  --llamacpp    llama.cpp v0.5.0's behaviour (gguf-and-llamacpp.md 2.3/2.4): renormalised
                top-k gates, no router cap, no attention temperature, fp16 GELU table.
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_reader import GGUFReader, GGML_Q8_0  # noqa: E402


# ---- numerics helpers --------------------------------------------------------
def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


_GELU_TABLE = None


def gelu_fp16_table(x):
    """ggml's CPU GELU: fp16(gelu_f32(fp16(x))), x <= -10 -> 0, x >= 10 -> x."""
    global _GELU_TABLE
    if _GELU_TABLE is None:
        f = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
        with np.errstate(all="ignore"):
            g = np.float32(0.5) * f * (np.float32(1) + np.tanh(
                np.float32(0.7978845608028654) * f * (np.float32(1) + np.float32(0.044715) * f * f)))
        _GELU_TABLE = g.astype(np.float32).astype(np.float16).astype(np.float64)
    x32 = np.asarray(x).astype(np.float32)
    y = _GELU_TABLE[x32.astype(np.float16).view(np.uint16)]
    xd = x32.astype(np.float64)
    return np.where(xd <= -10.0, 0.0, np.where(xd >= 10.0, xd, y))


def q8_0_activations(x):
    """ggml quantize_row_q8_0 (reference rounding, float32 math) then dequantized."""
    x32 = np.asarray(x).astype(np.float32)
    n = x32.shape[-1]
    xb = x32.reshape(x32.shape[:-1] + (n // 32, 32))
    d = (np.max(np.abs(xb), axis=-1) / np.float32(127)).astype(np.float32)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, np.float32(1)), np.float32(0)).astype(np.float32)
    v = (xb * inv[..., None]).astype(np.float32).astype(np.float64)
    q = np.sign(v) * np.floor(np.abs(v) + 0.5)
    dh = d.astype(np.float16).astype(np.float64)
    return (q * dh[..., None]).reshape(x32.shape)


class Config:
    """Hyper-parameters with llama.cpp's grok defaults (gguf-and-llamacpp.md 2.1)."""

    def __init__(self, **kw):
        self.n_embd = kw["n_embd"]
        self.n_head = kw["n_head"]
        self.n_head_kv = kw.get("n_head_kv", self.n_head)
        self.head_dim = kw.get("head_dim", self.n_embd // self.n_head)
        self.n_expert = kw["n_expert"]
        self.n_expert_used = kw["n_expert_used"]
        self.eps = kw.get("eps", 1e-5)
        self.rope_base = kw.get("rope_base", 10000.0)
        self.embedding_scale = kw.get("embedding_scale", 78.38367176906169)
        self.logit_scale = kw.get("logit_scale", 0.5773502691896257)
        self.attn_scale = kw.get("attn_scale", 0.08838834764831845)
        self.attn_cap = kw.get("attn_cap", 30.0)
        self.grok2 = kw.get("grok2", False)
        # Grok-1 reference: no router cap, no temperature, no final cap
        self.router_cap = kw.get("router_cap", 30.0) if self.grok2 else 0.0
        self.final_cap = kw.get("final_cap", 0.0)
        self.temp_len = kw.get("temp_len", 0) if self.grok2 else 0


def config_from_gguf(r):
    md = r.metadata

    def g(k, d=None):
        return md.get("grok." + k, d)

    E = int(g("embedding_length"))
    H = int(g("attention.head_count"))
    return Config(
        n_embd=E, n_head=H, n_head_kv=int(g("attention.head_count_kv", H)),
        head_dim=int(g("attention.key_length", E // H)),
        n_expert=int(g("expert_count")), n_expert_used=int(g("expert_used_count")),
        eps=float(g("attention.layer_norm_rms_epsilon")),
        rope_base=float(g("rope.freq_base", 10000.0)),
        embedding_scale=float(g("embedding_scale", 78.38367176906169)),
        logit_scale=float(g("logit_scale", 0.5773502691896257)),
        attn_scale=float(g("attention.output_scale", 0.08838834764831845)),
        attn_cap=float(g("attn_logit_softcapping", 30.0)),
        grok2="blk.0.ffn_up.weight" in r.tensors,
        router_cap=float(g("router_logit_softcapping", 30.0)),
        final_cap=float(g("final_logit_softcapping", 0.0)),
        temp_len=int(g("attention.temperature_length", 0)),
    )


def weights_from_gguf(r):
    """{gguf name: float64 array in torch layout}; experts as (n_expert, out, in)."""
    W = {name: r.array(name) for name in r.tensor_order}
    W["_types"] = {name: r.tensors[name].type for name in r.tensor_order}
    cfg = config_from_gguf(r)
    nq, nk = cfg.n_head * cfg.head_dim, cfg.n_head_kv * cfg.head_dim
    for name in [n for n in r.tensor_order if n.endswith(".attn_qkv.weight")]:  # fused: rows q, k, v
        p = name[:-len("attn_qkv.weight")]
        qkv = W.pop(name)
        t = W["_types"].pop(name)
        for part, rows in (("attn_q", qkv[:nq]), ("attn_k", qkv[nq:nq + nk]), ("attn_v", qkv[nq + nk:])):
            W[p + part + ".weight"] = rows
            W["_types"][p + part + ".weight"] = t
    return W


# ---- the forward pass --------------------------------------------------------
def forward(cfg, W, tokens, emulate_q8=False, llamacpp=False):
    types = W.get("_types", {})
    T = len(tokens)
    E, H, KV, hd = cfg.n_embd, cfg.n_head, cfg.n_head_kv, cfg.head_dim
    grp = H // KV
    gelu = gelu_fp16_table if llamacpp else gelu_tanh
    router_cap = 0.0 if llamacpp else cfg.router_cap
    temp_len = 0 if llamacpp else cfg.temp_len

    def mm(name, x, expert=None):
        w = W[name] if expert is None else W[name][expert]
        if emulate_q8 and types.get(name) == GGML_Q8_0:
            x = q8_0_activations(x)
        return x @ w.T

    def rms(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + cfg.eps) * w

    def cap(x, c):
        return c * np.tanh(x / c) if c > 0 else x

    pos = np.arange(T, dtype=np.float64)
    half = hd // 2
    inv = cfg.rope_base ** (-2.0 * np.arange(half) / hd)
    th = pos[:, None] * inv[None, :]
    cos, sin = np.cos(th)[:, None, :], np.sin(th)[:, None, :]

    def rope(v):  # (T, heads, hd), NeoX: pairs (d, d + hd/2)
        a, b = v[..., :half], v[..., half:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)

    # B4: T(q) = log2(q)/log2(len) for q > len, else 1 (q = 0-based query position)
    temp = np.ones(T)
    if temp_len > 0:
        big = pos > temp_len
        temp[big] = np.log2(pos[big]) / math.log2(temp_len)
    causal = np.tril(np.ones((T, T), dtype=bool))

    x = W["token_embd.weight"][np.asarray(tokens)] * cfg.embedding_scale
    n_layer = 0
    while "blk.%d.attn_norm.weight" % n_layer in W:
        n_layer += 1
    for il in range(n_layer):
        p = "blk.%d." % il
        u = rms(x, W[p + "attn_norm.weight"])
        q = rope(mm(p + "attn_q.weight", u).reshape(T, H, hd))
        k = rope(mm(p + "attn_k.weight", u).reshape(T, KV, hd))
        v = mm(p + "attn_v.weight", u).reshape(T, KV, hd)
        o = np.zeros((T, H, hd))
        for h in range(H):
            s = cap((q[:, h] @ k[:, h // grp].T) * cfg.attn_scale, cfg.attn_cap) * temp[:, None]
            s = np.where(causal, s, -np.inf)
            s = np.exp(s - s.max(axis=1, keepdims=True))
            o[:, h] = (s / s.sum(axis=1, keepdims=True)) @ v[:, h // grp]
        x = x + rms(mm(p + "attn_output.weight", o.reshape(T, H * hd)), W[p + "attn_output_norm.weight"])

        u = rms(x, W[p + "ffn_norm.weight"])
        r = cap(u @ W[p + "ffn_gate_inp.weight"].T, router_cap)
        P = np.exp(r - r.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        moe = np.zeros_like(x)
        for t in range(T):
            top = np.argsort(-P[t], kind="stable")[:cfg.n_expert_used]  # ties -> lower index
            g = P[t, top]
            if llamacpp:
                g = g / g.sum()
            ut = u[t:t + 1]
            for e, ge in zip(top, g):
                hdn = gelu(mm(p + "ffn_gate_exps.weight", ut, e)) * mm(p + "ffn_up_exps.weight", ut, e)
                moe[t] += ge * mm(p + "ffn_down_exps.weight", hdn, e)[0]
        if p + "ffn_up.weight" in W:  # Grok-2 shared MLP (B3)
            dense = mm(p + "ffn_down.weight", gelu(mm(p + "ffn_gate.weight", u)) * mm(p + "ffn_up.weight", u))
            moe = (dense + moe) / math.sqrt(2.0)
        post = W.get(p + "layer_output_norm.weight")
        if post is None:
            post = W[p + "post_ffw_norm.weight"]
        x = x + rms(moe, post)
    out = "output.weight" if "output.weight" in W else "token_embd.weight"
    logits = mm(out, rms(x, W["output_norm.weight"])) * cfg.logit_scale
    return cap(logits, cfg.final_cap)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--emulate-q8", action="store_true")
    ap.add_argument("--llamacpp", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    tokens = [int(t) for t in a.tokens.split(",") if t.strip()]
    r = GGUFReader(a.model)
    cfg = config_from_gguf(r)
    logits = forward(cfg, weights_from_gguf(r), tokens, emulate_q8=a.emulate_q8, llamacpp=a.llamacpp)
    logits.astype("<f4").tofile(a.out)
    if not a.quiet:
        print("grok2_ref: %d tokens x %d -> %s (argmax last %d, max|logit| %.6g)"
              % (len(tokens), logits.shape[1], a.out, int(np.argmax(logits[-1])), float(np.abs(logits).max())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
