#!/usr/bin/python3
"""Tokenizes the dialogues of data.py with the trained SentencePiece model.

Each dialogue is rendered in the grok-2 chat format and encoded as ONE text
(so it starts with the dummy-prefix "▁", exactly as `grok run` encodes a
prompt). The loss mask marks the assistant replies: the tokens after each
"<|separator|>\\n\\nAssistant:" (or a leading "Assistant:") up to and including the
"<|separator|>" that ends the reply.

Writes out/{train,heldout}.npz with tokens (int16, all dialogues back to
back), offsets (int64, n+1) and mask (uint8)."""
import argparse
import json
import os

import numpy as np
import sentencepiece as spm

from data import render

HERE = os.path.dirname(os.path.abspath(__file__))


def reply_mask(ids, sep, cue):
    """1 on reply tokens: after each cue (the ids of "\\n\\nAssistant:" that
    follow a separator) through the next separator."""
    m = np.zeros(len(ids), np.uint8)
    n, k, i, replies = len(ids), len(cue), 0, 0
    while i < n:
        if ids[i] == sep and ids[i + 1:i + 1 + k] == cue:
            j = i + 1 + k
            while j < n and ids[j] != sep:
                m[j] = 1
                j += 1
            if j < n:
                m[j] = 1
            replies += 1
            i = j
        else:
            i += 1
    return m, replies


def encode_file(sp, path, max_len):
    sep = sp.piece_to_id("<|separator|>")
    probe = sp.encode("x<|separator|>\n\nAssistant:")
    cue = probe[probe.index(sep) + 1:]
    toks, offs, masks = [], [0], []
    dropped = 0
    with open(path) as f:
        for line in f:
            turns = json.loads(line)
            # a leading separator makes the first turn match the cue too
            ids = sp.encode(render(turns))
            m, replies = reply_mask([sep] + ids, sep, cue)
            m = m[1:]
            want = sum(1 for r, _ in turns if r == "assistant")
            assert replies == want, (turns, replies, want)
            if len(ids) > max_len:
                dropped += 1
                continue
            toks.append(np.asarray(ids, np.int16))
            masks.append(m)
            offs.append(offs[-1] + len(ids))
    print("%s: %d dialogues, %d tokens, %d reply tokens, %d dropped (> %d tokens)" %
          (os.path.basename(path), len(toks), offs[-1], int(sum(x.sum() for x in masks)), dropped, max_len))
    return np.concatenate(toks), np.asarray(offs, np.int64), np.concatenate(masks)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--model", default=os.path.join(HERE, "grok-nano.model"))
    ap.add_argument("--max-len", type=int, default=256)
    a = ap.parse_args()
    sp = spm.SentencePieceProcessor(model_file=a.model)
    for name in ("heldout", "train"):
        t, o, m = encode_file(sp, os.path.join(a.out, name + ".jsonl"), a.max_len)
        np.savez(os.path.join(a.out, name + ".npz"), tokens=t, offsets=o, mask=m)


if __name__ == "__main__":
    main()
