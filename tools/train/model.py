"""grok-nano in PyTorch: the Grok-1 architecture, computing the same function
as grok.c's src/engine/forward.c (f32):

  x = E[tok] * embedding_scale
  per layer:
    u = rmsnorm(x) * attn_norm
    q, k, v = Wq u, Wk u, Wv u;  q, k = rope_neox(q, k, pos)    (GQA)
    s = 30 * tanh(q.k * attn_output_scale / 30);  causal softmax;  o = s V
    x = x + rmsnorm(Wo o) * attn_output_norm
    u = rmsnorm(x) * ffn_norm
    P = softmax(router u) over all experts; top-2 by P, gates = P (NOT renormalised)
    m = sum_e P[e] * Wdown_e(gelu_tanh(Wgate_e u) * Wup_e u)
    x = x + rmsnorm(m) * layer_output_norm
  logits = (E . (rmsnorm(x) * output_norm)) * logit_scale        (tied embeddings)

No biases. Weight layouts are torch [out, in], which is GGUF's ne = [in, out];
the expert tensors are stacked [n_expert, out, in] as GGUF's 3-D
ffn_{gate,up,down}_exps.

`act_q8=True` rounds the input of every Q8_0 matrix product to Q8_0 as grok.c
and llama.cpp do (blocks of 32, d = amax/127 stored as fp16, q = round(x/d));
it is for parity checks against a Q8_0 file, not for training."""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    n_vocab: int = 4096
    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_head_kv: int = 2
    n_expert: int = 8
    n_expert_used: int = 2
    n_ff: int = 256
    n_ctx: int = 256
    eps: float = 1e-5
    rope_base: float = 10000.0
    attn_softcap: float = 30.0

    @property
    def head_dim(self):
        return self.n_embd // self.n_head

    @property
    def embedding_scale(self):
        return math.sqrt(self.n_embd)        # as Grok-1: sqrt(d_model)

    @property
    def logit_scale(self):
        return 1.0 / math.sqrt(3.0)          # as Grok-1's output_multiplier_scale

    @property
    def attn_scale(self):
        return 1.0 / math.sqrt(self.head_dim)

    def to_dict(self):
        return asdict(self)


def q8_act(x):
    """Rounds the last dimension to Q8_0 exactly as ggml's quantize_row_q8_0."""
    shp = x.shape
    b = x.reshape(-1, shp[-1] // 32, 32)
    amax = b.abs().amax(-1, keepdim=True)
    d = amax / 127.0
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    v = b * inv
    q = torch.sign(v) * torch.floor(v.abs() + 0.5)          # roundf: half away from zero
    d16 = d.to(torch.float16).to(torch.float32)
    return (q * d16).reshape(shp)


def rmsnorm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope_neox(x, pos, inv_freq):
    """x: (..., T, H, hd); pairs (d, d + hd/2)."""
    half = x.shape[-1] // 2
    th = pos[:, None].float() * inv_freq[None, :]            # (T, half), f32 like forward.c
    c, s = torch.cos(th)[:, None, :], torch.sin(th)[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * c - b * s, b * c + a * s], dim=-1)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        E, hd, X, Fd = cfg.n_embd, cfg.head_dim, cfg.n_expert, cfg.n_ff
        self.cfg = cfg
        self.attn_norm = nn.Parameter(torch.ones(E))
        self.wq = nn.Parameter(torch.empty(cfg.n_head * hd, E))
        self.wk = nn.Parameter(torch.empty(cfg.n_head_kv * hd, E))
        self.wv = nn.Parameter(torch.empty(cfg.n_head_kv * hd, E))
        self.wo = nn.Parameter(torch.empty(E, cfg.n_head * hd))
        self.attn_out_norm = nn.Parameter(torch.ones(E))
        self.ffn_norm = nn.Parameter(torch.ones(E))
        self.router = nn.Parameter(torch.empty(X, E))
        self.gate = nn.Parameter(torch.empty(X, Fd, E))
        self.up = nn.Parameter(torch.empty(X, Fd, E))
        self.down = nn.Parameter(torch.empty(X, E, Fd))
        self.out_norm = nn.Parameter(torch.ones(E))

    def attention(self, x, pos, inv_freq, aq):
        cfg = self.cfg
        B, T, E = x.shape
        H, KV, hd = cfg.n_head, cfg.n_head_kv, cfg.head_dim
        u = aq(rmsnorm(x, self.attn_norm, cfg.eps))
        q = (u @ self.wq.t()).view(B, T, H, hd)
        k = (u @ self.wk.t()).view(B, T, KV, hd)
        v = (u @ self.wv.t()).view(B, T, KV, hd)
        q, k = rope_neox(q, pos, inv_freq), rope_neox(k, pos, inv_freq)
        g = H // KV                                           # q head h uses kv head h // g
        q = q.transpose(1, 2)                                 # B H T hd
        k = k.transpose(1, 2).repeat_interleave(g, dim=1)
        v = v.transpose(1, 2).repeat_interleave(g, dim=1)
        s = (q @ k.transpose(-1, -2)) * cfg.attn_scale
        s = cfg.attn_softcap * torch.tanh(s / cfg.attn_softcap)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        s = s.masked_fill(causal, float("-inf"))
        o = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, H * hd)
        a = aq(o) @ self.wo.t()
        return x + rmsnorm(a, self.attn_out_norm, cfg.eps)

    def moe(self, x, aq, valid):
        cfg = self.cfg
        B, T, E = x.shape
        u = rmsnorm(x, self.ffn_norm, cfg.eps).reshape(-1, E)
        probs = torch.softmax(u @ self.router.t(), dim=-1)   # (N, X), f32, no soft-cap (Grok-1)
        gate_p, sel = probs.topk(cfg.n_expert_used, dim=-1)  # gates: full-softmax probs
        uq = aq(u)
        # dispatch: the (token, slot) assignments sorted by expert, one gather
        flat = sel.reshape(-1)
        order = torch.argsort(flat)
        counts = torch.bincount(flat, minlength=cfg.n_expert).tolist()
        tok = order // cfg.n_expert_used
        xs = uq.index_select(0, tok)
        ys = []
        start = 0
        for e in range(cfg.n_expert):
            n = counts[e]
            if n == 0:
                continue
            ue = xs[start:start + n]
            h = F.gelu(ue @ self.gate[e].t(), approximate="tanh") * (ue @ self.up[e].t())
            ys.append(aq(h) @ self.down[e].t())
            start += n
        y = torch.cat(ys, 0) * gate_p.reshape(-1).index_select(0, order)[:, None]
        out = torch.zeros_like(u).index_add_(0, tok, y)
        # Switch-style load-balancing loss over the valid tokens (training only)
        vm = valid.reshape(-1).float()
        n = vm.sum().clamp(min=1)
        frac = (F.one_hot(sel, cfg.n_expert).sum(1).float() * vm[:, None]).sum(0) / (n * cfg.n_expert_used)
        pmean = (probs * vm[:, None]).sum(0) / n
        aux = cfg.n_expert * (frac * pmean).sum()
        m = out.view(B, T, E)
        return x + rmsnorm(m, self.out_norm, cfg.eps), aux


class GrokNano(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tok_embd = nn.Parameter(torch.empty(cfg.n_vocab, cfg.n_embd))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.output_norm = nn.Parameter(torch.ones(cfg.n_embd))
        hd = cfg.head_dim
        inv = [1.0 / (cfg.rope_base ** ((2.0 * d) / hd)) for d in range(hd // 2)]
        self.register_buffer("inv_freq", torch.tensor(inv, dtype=torch.float32), persistent=False)
        self.act_q8 = False

    def init_weights(self, seed):
        g = torch.Generator().manual_seed(seed)
        E = self.cfg.n_embd
        with torch.no_grad():
            # embedding rows of RMS ~ 1/sqrt(E): x0 = E[t] * sqrt(E) has RMS ~1
            self.tok_embd.normal_(0.0, 1.0 / math.sqrt(E), generator=g)
            for b in self.blocks:
                for w in (b.wq, b.wk, b.wv, b.wo, b.gate, b.up, b.router):
                    w.normal_(0.0, 1.0 / math.sqrt(w.shape[-1]), generator=g)
                b.down.normal_(0.0, 1.0 / math.sqrt(b.down.shape[-1]), generator=g)

    def forward(self, tokens, valid=None, rows=None):
        """tokens (B, T) -> logits (B, T, V) (or, with rows, the logits of
        those rows of the flattened (B*T) positions), aux loss."""
        cfg = self.cfg
        B, T = tokens.shape
        aq = q8_act if self.act_q8 else (lambda t: t)
        if valid is None:
            valid = torch.ones_like(tokens, dtype=torch.bool)
        pos = torch.arange(T, device=tokens.device)
        x = F.embedding(tokens, self.tok_embd) * cfg.embedding_scale
        aux = 0.0
        for b in self.blocks:
            x = b.attention(x, pos, self.inv_freq, aq)
            x, a = b.moe(x, aq, valid)
            aux = aux + a
        if rows is not None:
            x = x.reshape(-1, cfg.n_embd).index_select(0, rows)
        h = rmsnorm(x, self.output_norm, cfg.eps)
        logits = (aq(h) @ self.tok_embd.t()) * cfg.logit_scale
        return logits, aux / cfg.n_layer

    def n_params(self):
        return sum(p.numel() for p in self.parameters())
