#!/usr/bin/python3
"""Writes a synthetic Grok-1 checkpoint in the exact layout of xAI's release
(shared/docs/grok-architecture.md A3), with tiny shapes and random weights:

  * one Python pickle (protocol 4) per parameter, named tensor{i:05d}_000;
  * file i holds the i-th parameter of the haiku param dict in JAX's flattening order,
    i.e. the full module paths sorted as strings: the embedding, the final norm, then
    12 files per layer with the layers in string order of their numbers (0 1 10 11 2 ...);
  * fp32 parameters (embedding, norms, router) are plain numpy arrays;
  * the matrices are `QuantizedWeight8bit` dataclasses defined in __main__ (as the real
    files reference `__main__.QuantizedWeight8bit`) holding an int8 `weight` and bf16
    `scales`: per output column (q, k, v, expert gate/up: scales [.., 1, out]) or per
    output column and 8 blocks of the input (attention output and expert down, the
    row-parallel matrices: scales [.., 8, out]).
  numpy has no bfloat16: the scales are stored as a uint16 array of the bf16 bit
  patterns. The pickle then holds the same raw BINBYTES payload as a bfloat16 array
  would (only the dtype descriptor before it differs), which is all a loader that
  collects the payloads sees.

usage: make_grok1_ckpt.py OUT_DIR [--layers 12] [--embd 64] [--heads 4] [--kv-heads 2]
           [--ff 256] [--experts 4] [--vocab 131072] [--seed 1] [--tiny-scales]
--tiny-scales makes a few scales too small for an exact fp16 value (the converter must
then re-quantize those rows instead of carrying the int8 values over).
"""
import argparse
import dataclasses
import os
import pickle
import sys

import numpy as np


@dataclasses.dataclass
class QuantizedWeight8bit:
    weight: np.ndarray
    scales: np.ndarray


def f32_to_bf16_bits(x):
    """round to nearest even, as JAX casts"""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return r.astype(np.uint16)


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def quantize(w, n_blocks):
    """w: (..., in, out) float -> QuantizedWeight8bit with scales (..., n_blocks, out):
    one scale per output column and block of in/n_blocks inputs, s = bf16(max|w|/127)."""
    lead, (n_in, n_out) = w.shape[:-2], w.shape[-2:]
    wb = w.reshape(lead + (n_blocks, n_in // n_blocks, n_out))
    s = np.max(np.abs(wb), axis=-2) / 127.0                       # (..., nb, out)
    sb = f32_to_bf16_bits(s)
    sf = bf16_bits_to_f32(sb).astype(np.float64)
    q = np.clip(np.rint(wb / sf[..., None, :]), -127, 127).astype(np.int8)
    return QuantizedWeight8bit(weight=q.reshape(w.shape), scales=sb)


def params(a, rng):
    E, H, K, F, X, V = a.embd, a.heads, a.kv_heads, a.ff, a.experts, a.vocab
    hd = E // H
    Q, KV = H * hd, K * hd

    def mat(*shape, std):
        return rng.uniform(-std * 3 ** 0.5, std * 3 ** 0.5, size=shape).astype(np.float32)

    p = {
        "language_model/in_out_embed/embeddings": mat(V, E, std=E ** -0.5),
        "language_model/rms_norm/scale": (1.0 + mat(E, std=0.1)).astype(np.float32),
    }
    for L in range(a.layers):
        b = "transformer/decoder_layer_%d/" % L
        p[b + "moe/linear/w"] = quantize(mat(X, E, F, std=E ** -0.5), 1)
        p[b + "moe/linear_1/w"] = quantize(mat(X, F, E, std=F ** -0.5), 8)
        p[b + "moe/linear_v/w"] = quantize(mat(X, E, F, std=E ** -0.5), 1)
        p[b + "multi_head_attention/key/w"] = quantize(mat(E, KV, std=E ** -0.5), 1)
        p[b + "multi_head_attention/linear/w"] = quantize(mat(Q, E, std=Q ** -0.5), 8)
        p[b + "multi_head_attention/query/w"] = quantize(mat(E, Q, std=E ** -0.5), 1)
        p[b + "multi_head_attention/value/w"] = quantize(mat(E, KV, std=E ** -0.5), 1)
        for n in ("rms_norm", "rms_norm_1", "rms_norm_2", "rms_norm_3"):
            p[b + n + "/scale"] = (1.0 + mat(E, std=0.1)).astype(np.float32)
        p[b + "router/w"] = mat(E, X, std=2 * E ** -0.5)
    if a.tiny_scales:  # layer 3's query: 4 columns with scales of ~2^-22 (fp16 subnormal, inexact)
        qw = p["transformer/decoder_layer_3/multi_head_attention/query/w"]
        s = bf16_bits_to_f32(qw.scales).copy()
        s[..., :4] = np.float32(2.0 ** -22) * np.float32(1.0 + 1.0 / 128 + 1.0 / 64)
        qw.scales = f32_to_bf16_bits(s)
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ff", type=int, default=256)
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=131072)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tiny-scales", action="store_true")
    a = ap.parse_args()
    p = params(a, np.random.default_rng(a.seed))
    os.makedirs(a.out, exist_ok=True)
    for i, name in enumerate(sorted(p)):      # JAX flattens the param dict in sorted key order
        with open(os.path.join(a.out, "tensor%05d_000" % i), "wb") as f:
            pickle.dump(p[name], f, protocol=4)
    print("wrote %d files (%d layers) to %s" % (len(p), a.layers, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
