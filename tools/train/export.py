#!/usr/bin/python3
"""Writes a grok-nano checkpoint (train.py's ckpt.pt) as a GGUF v3 file in
llama.cpp's `grok` layout (../shared/docs/gguf-and-llamacpp.md §2-3):
matrices in Q8_0 (ggml's rounding), norms and routers in F32, tied
embeddings (no output.weight), the SentencePiece vocabulary as
tokenizer.ggml.* and a grok-2 chat template.

  export.py --ckpt tools/train/out/ckpt.pt --out models/grok-nano.gguf"""
import argparse
import os
import struct

import numpy as np
import sentencepiece as spm
import torch

from model import Config

HERE = os.path.dirname(os.path.abspath(__file__))
ALIGN = 32
GGML_F32, GGML_Q8_0 = 0, 8
T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR = 4, 5, 6, 7, 8, 9

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}System: {% elif message['role'] == 'user' %}Human: "
    "{% else %}Assistant: {% endif %}"
    "{{ message['content'] | trim }}<|separator|>\n\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}")


def quantize_q8_0(x):
    """x: float32 array (..., n), n % 32 == 0 -> bytes of Q8_0 blocks, as
    ggml's quantize_row_q8_0: d = amax/127, q = roundf(x * (1/d)), d as fp16."""
    x = np.ascontiguousarray(x, np.float32).reshape(-1, 32)
    amax = np.abs(x).max(axis=1, keepdims=True)
    d = (amax / np.float32(127.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)
    v = (x * inv).astype(np.float64)                  # the f32 product, exactly
    q = np.trunc(v + np.copysign(0.5, v)).astype(np.int8)  # roundf: half away from zero
    out = np.empty((x.shape[0], 34), np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def dequantize_q8_0(raw, shape):
    b = np.frombuffer(raw, np.uint8).reshape(-1, 34)
    d = b[:, :2].copy().view(np.float16).astype(np.float32)
    q = b[:, 2:].copy().view(np.int8).astype(np.float32)
    return (q * d).reshape(shape)


class Writer:
    def __init__(self):
        self.kv = []
        self.tensors = []

    @staticmethod
    def _str(s):
        b = s.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def _val(self, t, v):
        if t == T_U32:
            return struct.pack("<I", v)
        if t == T_I32:
            return struct.pack("<i", v)
        if t == T_F32:
            return struct.pack("<f", v)
        if t == T_BOOL:
            return struct.pack("<B", 1 if v else 0)
        if t == T_STR:
            return self._str(v)
        raise ValueError(t)

    def add(self, key, t, v):
        self.kv.append(self._str(key) + struct.pack("<i", t) + self._val(t, v))

    def add_arr(self, key, et, vals):
        body = b"".join(self._val(et, v) for v in vals)
        self.kv.append(self._str(key) + struct.pack("<iiQ", T_ARR, et, len(vals)) + body)

    def tensor(self, name, arr, qtype):
        """arr: numpy, row-major (torch) shape; ne is its reverse."""
        arr = np.ascontiguousarray(arr, np.float32)
        data = quantize_q8_0(arr) if qtype == GGML_Q8_0 else arr.tobytes()
        self.tensors.append((name, list(reversed(arr.shape)), qtype, data))

    def write(self, path):
        info, off = [], 0
        for name, ne, qt, data in self.tensors:
            info.append(self._str(name) + struct.pack("<I", len(ne)) + struct.pack("<%dq" % len(ne), *ne) +
                        struct.pack("<iQ", qt, off))
            off += (len(data) + ALIGN - 1) // ALIGN * ALIGN
        head = b"GGUF" + struct.pack("<IqQ", 3, len(self.tensors), len(self.kv)) + b"".join(self.kv) + b"".join(info)
        with open(path, "wb") as f:
            f.write(head)
            f.write(b"\0" * (-len(head) % ALIGN))
            for _, _, _, data in self.tensors:
                f.write(data)
                f.write(b"\0" * (-len(data) % ALIGN))


def vocab(sp_path):
    sp = spm.SentencePieceProcessor(model_file=sp_path)
    toks, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        p = sp.id_to_piece(i)
        toks.append(p)
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_byte(i):
            types.append(6)
        elif p == "<|separator|>":
            types.append(4)       # the one user-defined symbol (spm_train --user_defined_symbols)
        else:
            types.append(1)
    return sp, toks, scores, types


def build(state, cfg, sp_path, name="grok-nano"):
    sp, toks, scores, types = vocab(sp_path)
    assert len(toks) == cfg.n_vocab and sp.pad_id() == 0 and sp.bos_id() == 1 and sp.eos_id() == 2 and sp.unk_id() == 3
    w = Writer()
    w.add("general.architecture", T_STR, "grok")
    w.add("general.name", T_STR, name)
    w.add("general.alignment", T_U32, ALIGN)
    w.add("general.file_type", T_U32, 7)      # MOSTLY_Q8_0
    w.add("general.license", T_STR, "mit")
    p = "grok."
    w.add(p + "context_length", T_U32, cfg.n_ctx)
    w.add(p + "embedding_length", T_U32, cfg.n_embd)
    w.add(p + "block_count", T_U32, cfg.n_layer)
    w.add(p + "feed_forward_length", T_U32, cfg.n_ff)
    w.add(p + "attention.head_count", T_U32, cfg.n_head)
    w.add(p + "attention.head_count_kv", T_U32, cfg.n_head_kv)
    w.add(p + "expert_count", T_U32, cfg.n_expert)
    w.add(p + "expert_used_count", T_U32, cfg.n_expert_used)
    w.add(p + "attention.layer_norm_rms_epsilon", T_F32, cfg.eps)
    w.add(p + "rope.freq_base", T_F32, cfg.rope_base)
    w.add(p + "embedding_scale", T_F32, cfg.embedding_scale)
    w.add(p + "logit_scale", T_F32, cfg.logit_scale)
    w.add(p + "attention.output_scale", T_F32, cfg.attn_scale)
    w.add(p + "attn_logit_softcapping", T_F32, cfg.attn_softcap)
    w.add("tokenizer.ggml.model", T_STR, "llama")
    w.add("tokenizer.ggml.pre", T_STR, "default")
    w.add_arr("tokenizer.ggml.tokens", T_STR, toks)
    w.add_arr("tokenizer.ggml.scores", T_F32, scores)
    w.add_arr("tokenizer.ggml.token_type", T_I32, types)
    w.add("tokenizer.ggml.bos_token_id", T_U32, 1)
    w.add("tokenizer.ggml.eos_token_id", T_U32, 2)
    w.add("tokenizer.ggml.unknown_token_id", T_U32, 3)
    w.add("tokenizer.ggml.padding_token_id", T_U32, 0)
    w.add("tokenizer.ggml.add_bos_token", T_BOOL, False)
    w.add("tokenizer.ggml.add_eos_token", T_BOOL, False)
    w.add("tokenizer.ggml.add_space_prefix", T_BOOL, True)
    w.add("tokenizer.chat_template", T_STR, CHAT_TEMPLATE)

    g = lambda k: state[k].detach().float().numpy()
    w.tensor("token_embd.weight", g("tok_embd"), GGML_Q8_0)
    w.tensor("output_norm.weight", g("output_norm"), GGML_F32)
    for l in range(cfg.n_layer):
        b = "blocks.%d." % l
        n = "blk.%d." % l
        w.tensor(n + "attn_norm.weight", g(b + "attn_norm"), GGML_F32)
        w.tensor(n + "attn_q.weight", g(b + "wq"), GGML_Q8_0)
        w.tensor(n + "attn_k.weight", g(b + "wk"), GGML_Q8_0)
        w.tensor(n + "attn_v.weight", g(b + "wv"), GGML_Q8_0)
        w.tensor(n + "attn_output.weight", g(b + "wo"), GGML_Q8_0)
        w.tensor(n + "attn_output_norm.weight", g(b + "attn_out_norm"), GGML_F32)
        w.tensor(n + "ffn_norm.weight", g(b + "ffn_norm"), GGML_F32)
        w.tensor(n + "ffn_gate_inp.weight", g(b + "router"), GGML_F32)
        w.tensor(n + "ffn_gate_exps.weight", g(b + "gate"), GGML_Q8_0)   # (X, F, E) -> ne [E, F, X]
        w.tensor(n + "ffn_down_exps.weight", g(b + "down"), GGML_Q8_0)   # (X, E, F) -> ne [F, E, X]
        w.tensor(n + "ffn_up_exps.weight", g(b + "up"), GGML_Q8_0)
        w.tensor(n + "layer_output_norm.weight", g(b + "out_norm"), GGML_F32)
    return w


def dequantized_state(state):
    """The checkpoint's weights as the GGUF stores them (Q8_0 round trip)."""
    out = {}
    for k, v in state.items():
        a = v.detach().float().numpy()
        if a.ndim >= 2 and not k.endswith("router"):
            a = dequantize_q8_0(quantize_q8_0(a), a.shape)
        out[k] = torch.from_numpy(np.ascontiguousarray(a))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=os.path.join(HERE, "out", "ckpt.pt"))
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "grok-nano.model"))
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    ck = torch.load(a.ckpt, map_location="cpu", weights_only=False)
    cfg = Config(**ck["config"])
    build(ck["model"], cfg, a.tokenizer).write(a.out)
    print("wrote %s (%d bytes), step %d" % (a.out, os.path.getsize(a.out), ck["step"]))


if __name__ == "__main__":
    main()
