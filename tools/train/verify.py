#!/usr/bin/python3
"""Parity check of a grok-nano GGUF:
  1. reads the GGUF back (own reader), dequantizes its Q8_0 tensors into the
     PyTorch model of model.py, and compares all-position logits with
     `grok eval` (grok.c), once with plain f32 activations and once with the
     activations rounded to Q8_0 as grok.c/llama.cpp do (model.act_q8);
  2. with --peer, runs llama.cpp (node-llama-cpp, ../shared/peer/run.mjs) on
     the same prompts and compares its last-position logits and argmax.
Exactness is checked on an F32 copy of the same weights: grok.c must give
model.py's logits (max |diff| <= --f32-tol at every position).
With the Q8_0 file, grok.c and llama.cpp round the input of every matrix
product to Q8_0 (model.act_q8 emulates that). That comparison is discrete:
one activation sitting on a rounding tie (x/d = k.5 to the last bit) at an
early position rounds differently, changes that position's K/V, and from
there every later position differs by about as much as the Q8_0 rounding
itself (a mean |logit diff| of 0.03-0.09 on the shipped model, measured by
tracing each layer: see models/grok-nano.md). The Q8_0 check therefore asks
for the same next token at the last position of every prompt (grok.c = torch
= llama.cpp; llama.cpp may pick the other token of a near tie, grok.c's
top-2 margin < 0.1), the same argmax at >= 95% of all positions, and a mean
|logit difference| below --tol. Exits 1 otherwise.

  verify.py --gguf models/grok-nano.gguf --grok build/grok [--peer DIR]"""
import argparse
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import sentencepiece as spm
import torch

from model import Config, GrokNano

HERE = os.path.dirname(os.path.abspath(__file__))

PROMPTS = [
    "Human: What does serendipity mean?<|separator|>\n\nAssistant:",
    "Human: Who are you?<|separator|>\n\nAssistant:",
    "System: You are grok-nano, a tiny dictionary assistant.<|separator|>\n\nHuman: Give a synonym of happy."
    "<|separator|>\n\nAssistant:",
    "Human: Use 'bright' in a sentence.<|separator|>\n\nAssistant: The bright sun",
    "Human: What is the opposite of cold?<|separator|>\n\nAssistant: The opposite of cold is hot.<|separator|>"
    "\n\nHuman: Define ocean.<|separator|>\n\nAssistant:",
]


def read_gguf(path):
    """-> (kv dict, {name: float32 array in torch row-major shape})."""
    buf = open(path, "rb").read()
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v

    def rstr():
        nonlocal pos
        n = rd("Q")
        s = buf[pos:pos + n].decode("utf-8")
        pos += n
        return s

    scal = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B", 10: "Q", 11: "q", 12: "d"}

    def rval(t):
        if t == 8:
            return rstr()
        if t == 9:
            et, n = rd("i"), rd("Q")
            return [rval(et) for _ in range(n)]
        return rd(scal[t])

    assert buf[:4] == b"GGUF"
    pos = 4
    ver, n_t, n_kv = rd("I"), rd("q"), rd("q")
    assert ver == 3
    kv = {}
    for _ in range(n_kv):
        k = rstr()
        kv[k] = rval(rd("i"))
    infos = []
    for _ in range(n_t):
        name = rstr()
        nd = rd("I")
        ne = [rd("q") for _ in range(nd)]
        infos.append((name, ne, rd("i"), rd("Q")))
    align = kv.get("general.alignment", 32)
    base = (pos + align - 1) // align * align
    tensors = {}
    for name, ne, t, off in infos:
        n = int(np.prod(ne))
        shape = tuple(reversed(ne))
        if t == 0:
            a = np.frombuffer(buf, np.float32, n, base + off).reshape(shape)
        elif t == 8:
            b = np.frombuffer(buf, np.uint8, n // 32 * 34, base + off).reshape(-1, 34)
            d = b[:, :2].copy().view(np.float16).astype(np.float32)
            a = (b[:, 2:].copy().view(np.int8).astype(np.float32) * d).reshape(shape)
        else:
            raise ValueError("type %d" % t)
        tensors[name] = a.copy()
    return kv, tensors


def model_from_gguf(path):
    kv, t = read_gguf(path)
    g = lambda k: kv["grok." + k]
    cfg = Config(n_vocab=len(kv["tokenizer.ggml.tokens"]), n_embd=g("embedding_length"), n_layer=g("block_count"),
                 n_head=g("attention.head_count"), n_head_kv=g("attention.head_count_kv"),
                 n_expert=g("expert_count"), n_expert_used=g("expert_used_count"), n_ff=g("feed_forward_length"),
                 n_ctx=g("context_length"), eps=g("attention.layer_norm_rms_epsilon"),
                 rope_base=g("rope.freq_base"), attn_softcap=g("attn_logit_softcapping"))
    for k, want in (("embedding_scale", cfg.embedding_scale), ("logit_scale", cfg.logit_scale),
                    ("attention.output_scale", cfg.attn_scale)):
        assert abs(g(k) - want) < 1e-6 * abs(want), (k, g(k), want)
    sd = {"tok_embd": t["token_embd.weight"], "output_norm": t["output_norm.weight"]}
    names = {"attn_norm": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
             "attn_out_norm": "attn_output_norm", "ffn_norm": "ffn_norm", "router": "ffn_gate_inp",
             "gate": "ffn_gate_exps", "up": "ffn_up_exps", "down": "ffn_down_exps", "out_norm": "layer_output_norm"}
    for l in range(cfg.n_layer):
        for mine, theirs in names.items():
            sd["blocks.%d.%s" % (l, mine)] = t["blk.%d.%s.weight" % (l, theirs)]
    m = GrokNano(cfg)
    m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    m.eval()
    return m


def grok_eval(grok, gguf, ids, tmp):
    out = os.path.join(tmp, "grok.f32")
    subprocess.run([grok, "eval", "-m", gguf, "--tokens", ",".join(map(str, ids)), "--logits", out, "--kv", "f32",
                    "-t", "1"], check=True, capture_output=True)
    return np.fromfile(out, np.float32).reshape(len(ids), -1)


def peer_eval(peer, gguf, ids, tmp):
    out = os.path.join(tmp, "peer.f32")
    subprocess.run(["node", os.path.join(peer, "run.mjs"), gguf, "--tokens", ",".join(map(str, ids)), "--kv", "f32",
                    "--threads", "1", "--dump-logits", out], check=True, capture_output=True)
    return np.fromfile(out, np.float32)


TOKENIZER_SAMPLES = [
    "Human: What does serendipity mean?<|separator|>",
    "Assistant: Serendipity (noun): good luck in making unexpected and fortunate discoveries.<|separator|>",
    "  two  spaces,   digits 12345, caf\u00e9, \u2603 and \u65e5\u672c",
    "Use 'bright' in a sentence.",
    "System: You are grok-nano.<|separator|>Human: Hi!<|separator|>",
]


def check_tokenizer(grok, gguf, sp_model):
    """grok.c (from the .model and from the GGUF) vs spm_encode, line by line."""
    ok = True
    for text in TOKENIZER_SAMPLES:
        ref = subprocess.run(["spm_encode", "--model=" + sp_model, "--output_format=id"], input=text,
                             capture_output=True, text=True, check=True).stdout.split()
        for src in (sp_model, gguf):
            got = subprocess.run([grok, "tokenize", "-m", src, "--", text], capture_output=True, text=True,
                                 check=True).stdout.split()
            if got != ref:
                print("tokenizer mismatch (%s) on %r: grok %s, spm_encode %s" % (src, text, got, ref))
                ok = False
    print("tokenizer: grok.c == spm_encode on %d samples (.model and GGUF): %s" %
          (len(TOKENIZER_SAMPLES), "yes" if ok else "NO"))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--grok", required=True)
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "grok-nano.model"))
    ap.add_argument("--peer", help="node-llama-cpp folder from ../shared/peer/setup.sh")
    ap.add_argument("--tol", type=float, default=0.15, help="mean |logit diff| grok.c vs torch with Q8_0 activations")
    ap.add_argument("--f32-tol", type=float, default=1e-3,
                    help="max |logit diff| grok.c vs torch on an F32 copy of the weights (exactness)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    sp = spm.SentencePieceProcessor(model_file=a.tokenizer)
    model = model_from_gguf(a.gguf)
    ok = check_tokenizer(a.grok, a.gguf, a.tokenizer)
    worst = {"f32": 0.0, "q8": 0.0, "peer": 0.0, "mean_q8": 0.0}
    n_pos = n_same = 0
    with tempfile.TemporaryDirectory() as tmp:
        # exactness: the same (dequantized) weights as F32, so that nothing is
        # rounded on the way; grok.c must compute model.py's function
        f32 = os.path.join(tmp, "f32.gguf")
        subprocess.run([a.grok, "quantize", a.gguf, f32, "f32"], check=True, capture_output=True)
        e_exact = 0.0
        for text in PROMPTS:
            ids = sp.encode(text)
            g = grok_eval(a.grok, a.gguf, ids, tmp)
            x = torch.tensor([ids])
            with torch.no_grad():
                model.act_q8 = False
                ref = model(x)[0][0].numpy()
                model.act_q8 = True
                refq = model(x)[0][0].numpy()
            e_exact = max(e_exact, float(np.abs(grok_eval(a.grok, f32, ids, tmp) - ref).max()))
            e_f32 = float(np.abs(g - ref).max())
            e_q8 = float(np.abs(g - refq).max())
            worst["f32"], worst["q8"] = max(worst["f32"], e_f32), max(worst["q8"], e_q8)
            m_q8 = float(np.abs(g - refq).mean())
            worst["mean_q8"] = max(worst["mean_q8"], m_q8)
            agree = g.argmax(-1) == refq.argmax(-1)
            n_pos, n_same = n_pos + len(ids), n_same + int(agree.sum())
            line = ("%3d tokens | max|logit| %.2f | grok.c vs torch: max err f32 act %.2e, q8 act %.2e (mean %.1e),"
                    " argmax %d/%d, last %s") % (len(ids), float(np.abs(g).max()), e_f32, e_q8, m_q8,
                                                int(agree.sum()), len(ids), "same" if agree[-1] else "DIFFERENT")
            ok &= bool(agree[-1]) and m_q8 <= a.tol
            if a.peer:
                p = peer_eval(a.peer, a.gguf, ids, tmp)
                e_p = float(np.abs(g[-1] - p).max())
                worst["peer"] = max(worst["peer"], e_p)
                pa, ga = int(p.argmax()), int(g[-1].argmax())
                margin = float(g[-1][ga] - g[-1][pa])
                # llama.cpp's fp16 GELU table moves logits by ~1e-2: a different argmax
                # is a tie, not a disagreement, when grok.c's own margin is below 0.1
                tie = pa != ga and margin < 0.1
                verdict = "same" if pa == ga else ("TIE (grok.c margin %.1e)" % margin if tie else "DIFFERENT")
                line += " | llama.cpp last pos %.2e, argmax %s (%s)" % (e_p, verdict, repr(sp.id_to_piece(pa)))
                ok &= pa == ga or tie
            print(line, flush=True)
    print("F32 copy of the weights: grok.c vs torch max |logit diff| %.2e over all positions (limit %.0e)"
          % (e_exact, a.f32_tol), flush=True)
    ok &= e_exact <= a.f32_tol
    ok &= n_same >= 0.95 * n_pos
    print("worst: grok.c vs torch max err f32-act %.2e, q8-act %.2e (worst mean %.1e), argmax agree %d/%d;"
          " grok.c vs llama.cpp last-position max err %s" %
          (worst["f32"], worst["q8"], worst["mean_q8"], n_same, n_pos,
           "%.2e" % worst["peer"] if a.peer else "(not run)"))
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
