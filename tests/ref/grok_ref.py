#!/usr/bin/python3
"""Independent float64 reference forward pass for Grok-architecture GGUF files.

Written from shared/docs/grok-architecture.md Part A (A5) and
shared/docs/gguf-and-llamacpp.md (2.1-2.4, 3), not from grok.c's C code.

usage:
    /usr/bin/python3 grok_ref.py MODEL.gguf --tokens 1,2,3 --out REF.f32
        [--no-emulate-q8] [--llamacpp] [--exact-gelu]

Writes the logits of EVERY position, n_tokens x n_vocab little-endian float32,
row after row (the same contract as `grok eval --logits`).

    /usr/bin/python3 grok_ref.py MODEL.gguf --tokens ... --explain GOT.f32 [--rel 1e-4] [--out R.f32]

compares another engine's logits (all positions) with the reference and, if they differ
by more than --rel, tries to explain the difference by discrete decisions whose float64
input lies within f32 rounding of the threshold (Q8_0 activation roundings with x/d
within 1e-4 of .5, Q8_0 block scales within 1e-3 fp16 ulp of an fp16 rounding midpoint,
top-k probability gaps < 1e-6), flipping them greedily in the reference; exit status 0
if the flipped reference matches within the bound everywhere.

Numerics:
  * everything in float64 (weights are dequantized exactly from F32/F16/BF16/Q8_0);
  * Q8_0 emulation (default on for every matmul whose weight is Q8_0, off with
    --no-emulate-q8): the activation vector is rounded to float32 and quantized to
    Q8_0 exactly like ggml's reference quantize_row_q8_0 (per 32-block amax,
    d = amax/127 in float32, id = 1/d or 0, q = round-half-away(x*id) in float32,
    d stored as fp16); y = sum_blocks fp16(d_w) * fp16(d_x) * int_dot(q_w, q_x);
  * MoE gates: full-softmax probabilities of the top-k experts, NOT renormalized
    (JAX reference); ties in top-k go to the lower expert index.
  * --llamacpp models llama.cpp's CPU numerics for diagnosis: renormalized top-k
    gates, ggml's fp16 GELU table (x -> fp16 -> gelu_f32 -> fp16; x <= -10 -> 0,
    x >= 10 -> x), and activations rounded to fp16 / bf16 before matmuls with
    F16 / BF16 weights (ggml's vec_dot_type).
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_reader import GGUFReader, GGML_Q8_0, GGML_F16, GGML_BF16  # noqa: E402

ARCH_DEFAULTS = {
    "embedding_scale": 78.38367176906169,
    "logit_scale": 0.5773502691896257,
    "attention.output_scale": 0.08838834764831845,
    "attn_logit_softcapping": 30.0,
    "rope.freq_base": 10000.0,
    "final_logit_softcapping": 0.0,
}


# --------------------------------------------------------------------------
# Q8_0 activation quantization (ggml reference semantics, float32 rounding)
# --------------------------------------------------------------------------
def quantize_act_q8_0(x, return_scaled=False):
    """x: (..., n) float -> (d fp16-as-float64 (..., n/32), q int (..., n/32, 32) as float64)
    [, x*id as float64: the value that was rounded]."""
    x32 = np.asarray(x, dtype=np.float64).astype(np.float32)
    n = x32.shape[-1]
    if n % 32:
        raise ValueError("Q8_0 activation length %d not a multiple of 32" % n)
    xb = x32.reshape(x32.shape[:-1] + (n // 32, 32))
    amax = np.max(np.abs(xb), axis=-1)                         # float32
    d = (amax / np.float32(127.0)).astype(np.float32)          # float32 division
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1.0) / np.where(d != 0, d, np.float32(1.0)),
                       np.float32(0.0)).astype(np.float32)
    x0 = (xb * idv[..., None]).astype(np.float32)              # float32 product
    x0d = x0.astype(np.float64)
    q = np.sign(x0d) * np.floor(np.abs(x0d) + 0.5)            # roundf: half away from zero
    dh = d.astype(np.float16).astype(np.float64)               # stored scale is fp16
    if return_scaled:
        return dh, q, x0d, d
    return dh, q


def round_fp16(x):
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float16).astype(np.float64)


def round_bf16(x):
    """float -> bf16 with round-to-nearest-even (ggml's fp32_to_bf16), back to float64."""
    f = np.asarray(x, dtype=np.float64).astype(np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    nan = (u & 0x7fffffff) > 0x7f800000
    r = ((u + (0x7fff + ((u >> 16) & 1))) >> 16) & 0xffff
    r = np.where(nan, (u >> 16) | 64, r).astype(np.uint32) << 16
    return r.view(np.float32).astype(np.float64)


# --------------------------------------------------------------------------
# GELU variants
# --------------------------------------------------------------------------
def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


_GELU_TABLE = None


def gelu_ggml_fp16(x):
    """ggml CPU GELU (GGML_GELU_FP16): x<=-10 -> 0, x>=10 -> x, else
    fp16(gelu_f32(fp16(x))) via a 65536-entry table computed in float32."""
    global _GELU_TABLE
    if _GELU_TABLE is None:
        h = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
        f = h.astype(np.float32)
        with np.errstate(all="ignore"):
            c = np.float32(0.79788456080286535587989211986876)
            a = np.float32(0.044715)
            g = (np.float32(0.5) * f * (np.float32(1.0) + np.tanh(c * f * (np.float32(1.0) + a * f * f))))
        _GELU_TABLE = g.astype(np.float32).astype(np.float16).astype(np.float64)
    x32 = np.asarray(x, dtype=np.float64).astype(np.float32)
    idx = x32.astype(np.float16).view(np.uint16)
    y = _GELU_TABLE[idx]
    xd = x32.astype(np.float64)
    y = np.where(xd <= -10.0, 0.0, np.where(xd >= 10.0, xd, y))
    return y


# --------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------
class Weight:
    """A 2-D weight slice W (n_out, n_in) with y = W @ x, optional Q8_0 emulation."""

    def __init__(self, w, ttype, d=None, qs=None):
        self.w = w              # float64 (n_out, n_in)
        self.type = ttype
        self.d = d              # float64 (n_out, nb) fp16 scales (Q8_0 only)
        self.qs = qs            # float64 (n_out, nb, 32)        (Q8_0 only)

    def rows(self, idx):
        return self.w[idx]


class Model:
    def __init__(self, path, emulate_q8=True, llamacpp=False, exact_gelu=False):
        self.r = r = GGUFReader(path)
        self.emulate_q8 = emulate_q8
        self.llamacpp = llamacpp
        self.exact_gelu = exact_gelu or not llamacpp
        # discrete decisions (see forward): near-ties are recorded when tie_tol > 0,
        # and the decisions listed in self.flips are taken the other way.
        self.tie_tol = 0.0
        self.flips = set()
        self.ties = []
        self._tie_keys = set()
        md = r.metadata
        arch = md.get("general.architecture")
        if arch != "grok":
            raise SystemExit("general.architecture is %r, expected 'grok'" % arch)

        def key(k, default=None, required=False):
            full = "grok." + k
            if full in md:
                return md[full]
            if required:
                raise SystemExit("missing required key " + full)
            return default

        self.n_embd = int(key("embedding_length", required=True))
        self.n_layer = int(key("block_count", required=True))
        self.n_head = int(key("attention.head_count", required=True))
        self.n_head_kv = int(key("attention.head_count_kv", self.n_head))
        self.n_expert = int(key("expert_count", required=True))
        self.n_expert_used = int(key("expert_used_count", required=True))
        self.eps = float(key("attention.layer_norm_rms_epsilon", required=True))
        self.head_dim = int(key("attention.key_length", self.n_embd // self.n_head))
        self.n_rot = int(key("rope.dimension_count", self.head_dim))
        self.freq_base = float(key("rope.freq_base", ARCH_DEFAULTS["rope.freq_base"]))
        self.emb_scale = float(key("embedding_scale", ARCH_DEFAULTS["embedding_scale"]))
        self.logit_scale = float(key("logit_scale", ARCH_DEFAULTS["logit_scale"]))
        self.attn_scale = float(key("attention.output_scale", ARCH_DEFAULTS["attention.output_scale"]))
        self.attn_cap = float(key("attn_logit_softcapping", ARCH_DEFAULTS["attn_logit_softcapping"]))
        self.final_cap = float(key("final_logit_softcapping", ARCH_DEFAULTS["final_logit_softcapping"]))
        if self.n_head % self.n_head_kv:
            raise SystemExit("n_head %d not a multiple of n_head_kv %d" % (self.n_head, self.n_head_kv))

        self.tok_embd = self._tensor("token_embd.weight")
        self.n_vocab = self.tok_embd.shape[0]
        self.output_norm = self._tensor("output_norm.weight")
        self.output = self._weight("output.weight") if "output.weight" in r.tensors \
            else self._weight("token_embd.weight")
        self.layers = []
        hd, nh, nkv = self.head_dim, self.n_head, self.n_head_kv
        for il in range(self.n_layer):
            p = "blk.%d." % il
            L = {}
            L["attn_norm"] = self._tensor(p + "attn_norm.weight")
            if p + "attn_qkv.weight" in r.tensors:
                qkv = self._weight(p + "attn_qkv.weight")
                nq, nk = nh * hd, nkv * hd
                L["q"] = self._slice(qkv, 0, nq)
                L["k"] = self._slice(qkv, nq, nq + nk)
                L["v"] = self._slice(qkv, nq + nk, nq + 2 * nk)
            else:
                L["q"] = self._weight(p + "attn_q.weight")
                L["k"] = self._weight(p + "attn_k.weight")
                L["v"] = self._weight(p + "attn_v.weight")
            L["o"] = self._weight(p + "attn_output.weight")
            L["attn_out_norm"] = self._tensor(p + "attn_output_norm.weight")
            L["ffn_norm"] = self._tensor(p + "ffn_norm.weight")
            L["router"] = self._weight(p + "ffn_gate_inp.weight")
            L["gate"] = self._experts(p + "ffn_gate_exps.weight")
            L["up"] = self._experts(p + "ffn_up_exps.weight")
            L["down"] = self._experts(p + "ffn_down_exps.weight")
            if p + "layer_output_norm.weight" in r.tensors:
                L["out_norm"] = self._tensor(p + "layer_output_norm.weight")
            else:
                L["out_norm"] = self._tensor(p + "post_ffw_norm.weight")
            # Grok-2 style dense residual MLP (optional)
            if p + "ffn_up.weight" in r.tensors:
                L["mlp_gate"] = self._weight(p + "ffn_gate.weight")
                L["mlp_up"] = self._weight(p + "ffn_up.weight")
                L["mlp_down"] = self._weight(p + "ffn_down.weight")
            self.layers.append(L)

    # ---- tensor helpers ----
    def _tensor(self, name):
        if name not in self.r.tensors:
            raise SystemExit("missing tensor " + name)
        return self.r.array(name)

    def _weight(self, name):
        w = self._tensor(name)
        t = self.r.tensors[name].type
        if t == GGML_Q8_0:
            d, qs = self.r.q8_0_blocks(name)
            return Weight(w, t, d.astype(np.float64), qs.astype(np.float64))
        return Weight(w, t)

    @staticmethod
    def _slice(W, a, b):
        if W.type == GGML_Q8_0:
            return Weight(W.w[a:b], W.type, W.d[a:b], W.qs[a:b])
        return Weight(W.w[a:b], W.type)

    def _experts(self, name):
        w = self._tensor(name)              # (n_expert, n_out, n_in)
        t = self.r.tensors[name].type
        out = []
        if t == GGML_Q8_0:
            d, qs = self.r.q8_0_blocks(name)
            for e in range(w.shape[0]):
                out.append(Weight(w[e], t, d[e].astype(np.float64), qs[e].astype(np.float64)))
        else:
            for e in range(w.shape[0]):
                out.append(Weight(w[e], t))
        return out

    # ---- math ----
    def matmul(self, W, x, what="", pos0=0):
        """x: (T, n_in) -> (T, n_out) = x @ W.w^T with the weight-type numerics.
        `what` names the INPUT vector (calls sharing one input, e.g. q/k/v or all experts'
        gate/up, share one quantization and so one set of rounding decisions); `pos0` is
        the position of row 0. Both only matter for near-tie tracking and flips."""
        if W.type == GGML_Q8_0 and self.emulate_q8:
            dx, qx, x0, d32 = quantize_act_q8_0(x, return_scaled=True)  # (T, nb), (T, nb, 32)
            if self.tie_tol > 0 or self.flips:
                dx, qx = self._q8_decisions(x0, qx, d32, dx, what, pos0)
            isum = np.einsum("tbj,obj->tob", qx, W.qs)             # exact integers in float64
            return np.einsum("tob,ob,tb->to", isum, W.d, dx)
        if self.llamacpp and W.type == GGML_F16:
            x = round_fp16(x)
        elif self.llamacpp and W.type == GGML_BF16:
            x = round_bf16(x)
        return x @ W.w.T

    def _q8_decisions(self, x0, qx, d32, dx, what, pos0):
        """Record the discrete decisions of one Q8_0 activation quantization that sit within
        f32 rounding of their threshold, and apply flips:
          * a value x*id within tie_tol of a .5 boundary (rounds to either integer);
          * a block scale d = amax/127 within 10*tie_tol fp16 ulps (~4 f32 ulps for the
            default 1e-4) of an fp16 rounding midpoint (the stored fp16 d is then either
            neighbour, and the whole block moves by 2^-11).
        f32 evaluation order in another engine can put either on the other side."""
        # fp16 neighbours of d: lo <= d <= hi
        h = d32.astype(np.float16)
        hf = h.astype(np.float64)
        d64 = d32.astype(np.float64)
        up = np.nextafter(h, np.float16(np.inf)).astype(np.float64)
        dn = np.nextafter(h, np.float16(-np.inf)).astype(np.float64)
        lo = np.where(hf <= d64, hf, dn)
        hi = np.where(hf <= d64, up, hf)
        with np.errstate(invalid="ignore", divide="ignore"):
            ddist = np.abs((d64 - (lo + hi) / 2) / (hi - lo))
        ddist = np.where(d64 > 0, ddist, np.inf)
        if self.tie_tol > 0:
            for row, blk in zip(*np.nonzero(ddist < self.tie_tol * 10)):
                key = ("q8d", what, pos0 + int(row), int(blk))
                if key not in self._tie_keys:
                    self._tie_keys.add(key)
                    self.ties.append(dict(key=key, pos=pos0 + int(row), dist=float(ddist[row, blk]) / 10,
                                          desc="%s pos %d: Q8_0 act block %d scale d=%.9g at an fp16 midpoint"
                                          % (what, pos0 + int(row), blk, d64[row, blk])))
        dflips = [f for f in self.flips if f[0] == "q8d" and f[1] == what
                  and pos0 <= f[2] < pos0 + x0.shape[0]]
        if dflips:
            dx = dx.copy()
            for _, _, pos, blk in dflips:
                row = pos - pos0
                dx[row, blk] = lo[row, blk] if dx[row, blk] == hi[row, blk] else hi[row, blk]
        ax = np.abs(x0)
        dist = np.abs(ax - np.floor(ax) - 0.5)
        if self.tie_tol > 0:
            for row, blk, j in zip(*np.nonzero(dist < self.tie_tol)):
                key = ("q8", what, pos0 + int(row), int(blk), int(j))
                if key in self._tie_keys:
                    continue
                self._tie_keys.add(key)
                self.ties.append(dict(key=key, pos=pos0 + int(row), dist=float(dist[row, blk, j]),
                                      desc="%s pos %d: Q8_0 act block %d elem %d x/d=%.7f rounds to %d"
                                      % (what, pos0 + int(row), blk, j, x0[row, blk, j], qx[row, blk, j])))
        mine = [f for f in self.flips if f[0] == "q8" and f[1] == what
                and pos0 <= f[2] < pos0 + x0.shape[0]]
        if mine:
            qx = qx.copy()
            for _, _, pos, blk, j in mine:
                row = pos - pos0
                v = x0[row, blk, j]
                qlo = np.sign(v) * np.floor(abs(v))
                qhi = np.sign(v) * (np.floor(abs(v)) + 1)
                qx[row, blk, j] = qlo if qx[row, blk, j] == qhi else qhi
        return dx, qx

    def rmsnorm(self, x, w):
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return x / np.sqrt(ms + self.eps) * w

    def gelu(self, x):
        return gelu_tanh(x) if self.exact_gelu else gelu_ggml_fp16(x)

    def rope(self, x, pos):
        """NeoX rope on x (T, H, hd): pairs (i, i + n_rot/2), theta = pos * base^(-2i/n_rot)."""
        nr = self.n_rot
        half = nr // 2
        i = np.arange(half, dtype=np.float64)
        inv = self.freq_base ** (-2.0 * i / nr)
        th = pos[:, None].astype(np.float64) * inv[None, :]          # (T, half)
        c = np.cos(th)[:, None, :]
        s = np.sin(th)[:, None, :]
        y = x.copy()
        x1 = x[..., :half]
        x2 = x[..., half:nr]
        y[..., :half] = x1 * c - x2 * s
        y[..., half:nr] = x2 * c + x1 * s
        return y

    def forward(self, tokens):
        self.ties = []
        self._tie_keys = set()
        T = len(tokens)
        hd, nh, nkv = self.head_dim, self.n_head, self.n_head_kv
        grp = nh // nkv
        pos = np.arange(T)
        for t in tokens:
            if not (0 <= t < self.n_vocab):
                raise SystemExit("token %d out of range (n_vocab %d)" % (t, self.n_vocab))
        x = self.tok_embd[np.array(tokens)] * self.emb_scale            # (T, E)
        causal = np.tril(np.ones((T, T), dtype=bool))
        for il, L in enumerate(self.layers):
            # ---- attention ----
            u = self.rmsnorm(x, L["attn_norm"])
            q = self.matmul(L["q"], u, "L%d attn input" % il).reshape(T, nh, hd)
            k = self.matmul(L["k"], u, "L%d attn input" % il).reshape(T, nkv, hd)
            v = self.matmul(L["v"], u, "L%d attn input" % il).reshape(T, nkv, hd)
            q = self.rope(q, pos)
            k = self.rope(k, pos)
            o = np.zeros((T, nh, hd))
            for h in range(nh):
                g = h // grp
                s = (q[:, h, :] @ k[:, g, :].T) * self.attn_scale          # (T, T)
                s = self.attn_cap * np.tanh(s / self.attn_cap)
                s = np.where(causal, s, -np.inf)
                s = s - np.max(s, axis=1, keepdims=True)
                p = np.exp(s)
                p = p / np.sum(p, axis=1, keepdims=True)
                o[:, h, :] = p @ v[:, g, :]
            a = self.matmul(L["o"], o.reshape(T, nh * hd), "L%d attn_output input" % il)
            x = x + self.rmsnorm(a, L["attn_out_norm"])
            # ---- MoE ----
            u = self.rmsnorm(x, L["ffn_norm"])
            r = self.matmul(L["router"], u, "L%d moe input" % il)          # (T, n_expert)
            r = r - np.max(r, axis=1, keepdims=True)
            P = np.exp(r)
            P = P / np.sum(P, axis=1, keepdims=True)
            m = np.zeros_like(x)
            for t in range(T):
                order = np.argsort(-P[t], kind="stable")
                k_ = self.n_expert_used
                if k_ < self.n_expert:
                    # top-k boundary: experts k-1 and k nearly tied -> either may be chosen
                    gap = P[t, order[k_ - 1]] - P[t, order[k_]]
                    key = ("topk", il, t)
                    if self.tie_tol > 0 and gap < self.tie_tol * 1e-2:
                        self.ties.append(dict(key=key, pos=t, dist=float(gap),
                                              desc="L%d pos %d: top-%d boundary, experts %d/%d P gap %.2e"
                                              % (il, t, k_, order[k_ - 1], order[k_], gap)))
                    if key in self.flips:
                        order = order.copy()
                        order[[k_ - 1, k_]] = order[[k_, k_ - 1]]
                order = order[:k_]
                gates = P[t, order]
                if self.llamacpp:
                    gates = gates / np.sum(gates)
                ut = u[t:t + 1]
                for e, gw in zip(order, gates):
                    a1 = self.matmul(L["gate"][e], ut, "L%d moe input" % il, t)
                    a2 = self.matmul(L["up"][e], ut, "L%d moe input" % il, t)
                    hdn = self.gelu(a1) * a2
                    m[t] += gw * self.matmul(L["down"][e], hdn, "L%d expert %d down input" % (il, e), t)[0]
            if "mlp_up" in L:
                hdn = self.gelu(self.matmul(L["mlp_gate"], u, "L%d moe input" % il)) \
                    * self.matmul(L["mlp_up"], u, "L%d moe input" % il)
                m = (self.matmul(L["mlp_down"], hdn, "L%d mlp down input" % il) + m) / math.sqrt(2.0)
            x = x + self.rmsnorm(m, L["out_norm"])
        h = self.rmsnorm(x, self.output_norm)
        logits = self.matmul(self.output, h, "output input") * self.logit_scale
        if self.final_cap > 0:
            logits = self.final_cap * np.tanh(logits / self.final_cap)
        return logits


def explain(m, tokens, got, rel, max_flips=8, tie_tol=1e-4, log=print):
    """Try to explain a disagreement between `got` (n_tokens x n_vocab logits of another
    engine) and the reference by discrete decisions that sit within rounding error of their
    threshold: Q8_0 activation roundings whose scaled value is within tie_tol of a .5
    boundary, and top-k expert selections whose probability gap is tiny. Greedy: at the first
    position over the bound, flip the candidate decision (at that position or earlier, nearest
    first) that moves the first failing position furthest. Returns (ok, flips, ref_logits)."""
    tol = rel * float(np.max(np.abs(got)))
    flips = []

    def first_bad(ref):
        over = np.nonzero(np.abs(ref - got).max(axis=1) > tol)[0]
        return int(over[0]) if len(over) else len(tokens)

    m.tie_tol, m.flips = tie_tol, set()
    ref = m.forward(tokens)
    p = first_bad(ref)
    while p < len(tokens):
        if len(flips) >= max_flips:
            log("explain: gave up after %d flips, position %d still over the bound" % (len(flips), p))
            return False, flips, ref
        cands = sorted((t for t in m.ties if t["pos"] <= p and t["key"] not in m.flips),
                       key=lambda t: (t["pos"] != p, t["dist"]))[:8]
        ties_now = list(m.ties)
        best = None
        for c in cands:
            m.flips = {f["key"] for f in flips} | {c["key"]}
            r2 = m.forward(tokens)
            p2 = first_bad(r2)
            if p2 > p and (best is None or p2 > best[1]):
                best = (c, p2, r2, list(m.ties))
        if best is None:
            log("explain: no near-threshold decision explains position %d (%d candidates tried)"
                % (p, len(cands)))
            m.ties = ties_now
            return False, flips, ref
        c, p, ref, m.ties = best
        flips.append(c)
        m.flips = {f["key"] for f in flips}
        log("explain: flipped %s (distance %.2e) -> first position over the bound now %s"
            % (c["desc"], c["dist"], p if p < len(tokens) else "none"))
    return True, flips, ref


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--out", help="output file: n_tokens x n_vocab float32")
    ap.add_argument("--no-emulate-q8", action="store_true",
                    help="multiply Q8_0 weights with unquantized float64 activations")
    ap.add_argument("--llamacpp", action="store_true",
                    help="model llama.cpp CPU numerics (renormalized gates, fp16 GELU table, "
                         "f16/bf16 activation rounding)")
    ap.add_argument("--exact-gelu", action="store_true",
                    help="with --llamacpp: keep the exact tanh GELU")
    ap.add_argument("--explain", metavar="GOT.f32",
                    help="instead of writing --out: compare with another engine's logits "
                         "(n_tokens x n_vocab) and try to explain a disagreement by flipping "
                         "near-threshold Q8_0 roundings / top-k ties; exit 0 if explained")
    ap.add_argument("--rel", type=float, default=1e-4, help="bound for --explain (relative)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    if a.explain:
        tokens = [int(t) for t in a.tokens.split(",") if t.strip() != ""]
        m = Model(a.model, emulate_q8=not a.no_emulate_q8, llamacpp=a.llamacpp,
                  exact_gelu=a.exact_gelu)
        got = np.fromfile(a.explain, dtype="<f4").astype(np.float64).reshape(len(tokens), -1)
        ok, flips, ref = explain(m, tokens, got, a.rel)
        d = np.abs(ref - got)
        print("explain: %s; %d flip(s); after them max|dlogit| = %.3e (rel %.3e)"
              % ("EXPLAINED" if ok else "NOT explained", len(flips), d.max(),
                 d.max() / np.max(np.abs(got))))
        if a.out:
            ref.astype("<f4").tofile(a.out)
        return 0 if ok else 1
    if not a.out:
        ap.error("--out is required")
    tokens = [int(t) for t in a.tokens.split(",") if t.strip() != ""]
    if not tokens:
        raise SystemExit("no tokens")
    m = Model(a.model, emulate_q8=not a.no_emulate_q8, llamacpp=a.llamacpp, exact_gelu=a.exact_gelu)
    logits = m.forward(tokens)
    logits.astype("<f4").tofile(a.out)
    if not a.quiet:
        print("ref: %d tokens x %d vocab -> %s (argmax last = %d, max|logit| = %.6g)"
              % (len(tokens), m.n_vocab, a.out, int(np.argmax(logits[-1])), float(np.max(np.abs(logits)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
