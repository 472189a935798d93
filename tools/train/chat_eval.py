#!/usr/bin/python3
"""Held-out dictionary questions through grok.c: for each held-out word
(never asked about in training) runs

  grok run -m MODEL -p "Human: What does WORD mean?<|separator|>\\n\\nAssistant:" \\
           --temp 0 --stop "<|separator|>"

and counts a hit when the greedy reply shares a content word with one of the
word's WordNet definitions (lower-cased words of 3+ letters, a trailing "s"
dropped, minus stop words, the asked word itself and part-of-speech names).
Only the standard library is needed.

  chat_eval.py --grok build/grok --model models/grok-nano.gguf \\
               --words tools/train/heldout_words.tsv [--n 100] [--min-score F]
Exits 1 when the score is below --min-score."""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

STOP = set("""
a an the and or but nor of to in on at by for with from into onto upon over under about above below
as than then that this these those there their them they its it his her him she he we you your our
be is are was were been being am do does did done have has had having not no any some such each
every all both either neither one ones other another more most less least very so too also only
just which who whom whose what when where why how used use usually especially often something
someone somebody thing things person people way ways make makes made may might can could would
should will shall being kind kinds part parts form forms act acts state quality having etc
noun verb adjective adverb means meaning mean
""".split())


def content_words(text, exclude):
    out = set()
    for w in re.findall(r"[a-z]+", text.lower()):
        if len(w) < 3:
            continue
        if w.endswith("s") and len(w) > 3:
            w = w[:-1]
        if w in STOP or w in exclude:
            continue
        out.add(w)
    return out


def ask(grok, model, word, n_predict=64):
    prompt = "Human: What does %s mean?<|separator|>\n\nAssistant:" % word
    r = subprocess.run([grok, "run", "-m", model, "-p", prompt, "--temp", "0", "--stop", "<|separator|>",
                        "-n", str(n_predict), "--no-stats", "-t", "1"], capture_output=True, text=True, check=True)
    return r.stdout.replace("<|separator|>", "").strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grok", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--words", default=os.path.join(HERE, "heldout_words.tsv"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--min-score", type=float, default=None)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    rows = [ln.rstrip("\n").split("\t") for ln in open(a.words, encoding="utf-8") if ln.strip()][:a.n]
    hits = 0
    for word, defs in rows:
        reply = ask(a.grok, a.model, word)
        ex = {word, word.rstrip("s")}
        common = content_words(reply, ex) & content_words(defs.replace(" | ", " "), ex)
        hits += bool(common)
        if a.verbose:
            print("%s %-14s -> %s%s" % ("+" if common else "-", word, reply,
                                        "   [%s]" % ",".join(sorted(common)) if common else ""))
    score = hits / len(rows)
    print("held-out words: %d, replies sharing a content word with the definition: %d (%.3f)" %
          (len(rows), hits, score))
    if a.min_score is not None and score < a.min_score:
        print("FAIL: score %.3f is below the threshold %.3f" % (score, a.min_score))
        sys.exit(1)


if __name__ == "__main__":
    main()
