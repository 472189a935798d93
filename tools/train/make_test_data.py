#!/usr/bin/python3
"""Writes the small held-out files that tests/scripts/test_nano_model.sh and
chat_eval.py read: heldout_eval.txt (the first N held-out dialogues of
out/heldout.npz as "ids<TAB>mask", comma-separated) and heldout_words.tsv
(the first 200 chat-test words of out/heldout_words.tsv)."""
import argparse
import os
import shutil

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

ap = argparse.ArgumentParser()
ap.add_argument("--out", default=os.path.join(HERE, "out"))
ap.add_argument("--n", type=int, default=24)
a = ap.parse_args()
z = np.load(os.path.join(a.out, "heldout.npz"))
t, o, m = z["tokens"], z["offsets"], z["mask"]
with open(os.path.join(HERE, "heldout_eval.txt"), "w") as f:
    for i in range(a.n):
        ids, mk = t[o[i]:o[i + 1]], m[o[i]:o[i + 1]]
        f.write(",".join(map(str, ids)) + "\t" + ",".join(map(str, mk)) + "\n")
with open(os.path.join(a.out, "heldout_words.tsv")) as src, open(os.path.join(HERE, "heldout_words.tsv"), "w") as dst:
    for i, line in enumerate(src):
        if i == 200:
            break
        dst.write(line)
