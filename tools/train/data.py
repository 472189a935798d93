#!/usr/bin/python3
"""Builds grok-nano's chat data from the WordNet 3.0 database (Debian package
wordnet-base, /usr/share/wordnet) plus a small hand-written persona set.

Every dialogue is a list of (role, text) turns in the grok-2 chat format
("Human: ...<|separator|>\\n\\nAssistant: ...<|separator|>\\n\\n"). A
deterministic 3% of the lemmas (by md5 of the lemma) is held out: no training
dialogue asks about them or names them in an answer (synonym, kind-of,
opposite); their dialogues only go into the held-out set.

Outputs (under --out, default tools/train/out):
  train.jsonl     training dialogues, one JSON list of [role, text] a line
  heldout.jsonl   dialogues about held-out lemmas (held-out loss)
  spm_text.txt    one turn text per line, for spm_train
  heldout_words.tsv  word <TAB> definitions (all senses, " | "-separated),
                  common single-word held-out lemmas for the chat test
"""
import argparse
import hashlib
import json
import os
import random
import re

from persona import PERSONA, GREETING_OPENERS, SYSTEM_PROMPTS

WN = "/usr/share/wordnet"
POS_NAME = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
HELDOUT_PERCENT = 3


def is_heldout(lemma):
    h = hashlib.md5(lemma.lower().encode("utf-8")).digest()
    return int.from_bytes(h[:4], "little") % 100 < HELDOUT_PERCENT


def clean_word(w):
    w = re.sub(r"\([a-z]+\)$", "", w)  # adjective markers (a), (p), (ip)
    return w.replace("_", " ")


def parse_gloss(g):
    defs, exs = [], []
    for part in g.strip().split("; "):
        part = part.strip()
        if not part:
            continue
        if part.startswith('"'):
            exs.append(part.strip('"').strip())
        else:
            defs.append(part)
    d = "; ".join(defs).strip().rstrip(";").strip()
    return d, exs


def load_synsets():
    syn = {}
    for pos, fname in POS_FILES.items():
        with open(os.path.join(WN, "data." + fname), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                head, _, gloss = line.partition(" | ")
                t = head.split()
                off, ss_type = t[0], t[2]
                n_w = int(t[3], 16)
                words = [clean_word(t[4 + 2 * i]) for i in range(n_w)]
                i = 4 + 2 * n_w
                n_p = int(t[i])
                i += 1
                hyper, ant = [], []
                for _ in range(n_p):
                    sym, poff, ppos, st = t[i], t[i + 1], t[i + 2], t[i + 3]
                    i += 4
                    if sym in ("@", "@i"):
                        hyper.append((ppos if ppos != "s" else "a", poff, sym == "@i"))
                    elif sym == "!":
                        src, tgt = int(st[:2], 16), int(st[2:], 16)
                        ant.append((src, ppos if ppos != "s" else "a", poff, tgt))
                d, exs = parse_gloss(gloss)
                syn[(pos, off)] = {"pos": ss_type, "words": words, "def": d, "ex": exs, "hyper": hyper, "ant": ant}
    return syn


def load_index():
    """lemma -> list of (pos, offset) senses, most frequent first, pos with
    the most tagged senses first."""
    entries = {}
    for pos, fname in POS_FILES.items():
        with open(os.path.join(WN, "index." + fname), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                t = line.split()
                lemma, n_syn, n_p = t[0], int(t[2]), int(t[3])
                tagged = int(t[5 + n_p])
                offs = t[6 + n_p:6 + n_p + n_syn]
                entries.setdefault(lemma, []).append((tagged, pos, offs))
    order = {"n": 0, "v": 1, "a": 2, "r": 3}
    idx = {}
    for lemma, lst in entries.items():
        lst.sort(key=lambda e: (-e[0], order[e[1]]))
        idx[lemma] = {"senses": [(p, o) for _, p, offs in lst for o in offs],
                      "tagged": sum(e[0] for e in lst), "pos": [e[1] for e in lst]}
    return idx


def article(w):
    return "an" if w[:1].lower() in "aeiou" else "a"


def cap(s):
    return s[:1].upper() + s[1:] if s else s


def end(s):
    s = s.strip()
    return s if s[-1:] in ".!?" else s + "."


class Gen:
    def __init__(self, syn, idx, rng):
        self.syn, self.idx, self.rng = syn, idx, rng

    def display(self, lemma, pos, off):
        """The lemma as the synset spells it (keeps capitals of names)."""
        for w in self.syn[(pos, off)]["words"]:
            if w.lower().replace(" ", "_") == lemma:
                return w
        return lemma.replace("_", " ")

    def ok_names(self, words, lemma, allow_heldout):
        out = []
        for w in words:
            key = w.lower().replace(" ", "_")
            if key == lemma or (not allow_heldout and is_heldout(key)) or w in out:
                continue
            out.append(w)
        return out

    # ---- question types: each returns (question, answer) or None ----------
    def q_define(self, lemma, allow_heldout):
        r = self.rng
        pos, off = self.idx[lemma]["senses"][0]
        s = self.syn[(pos, off)]
        w = self.display(lemma, pos, off)
        pn = POS_NAME[s["pos"]]
        q = r.choice([
            "What does {w} mean?", "What does {w} mean?", "What does \"{w}\" mean?", "Define {w}.",
            "What is the meaning of {w}?", "What's the definition of {w}?", "Explain the word {w}.",
            "What is the definition of \"{w}\"?", "Meaning of {w}?", "Can you define {w}?",
            "I don't know the word {w}. What does it mean?", "Tell me what {w} means.",
            "define {w}", "what does {w} mean", "{w}?",
        ]).format(w=w)
        a = r.choice([
            "{W} ({pn}): {d}.", "{W} ({pn}): {d}.", "\"{w}\" means {d}.", "As {art} {pn}, {w} means {d}.",
        ]).format(W=cap(w), w=w, pn=pn, d=s["def"], art=article(pn))
        return q, a

    def q_senses(self, lemma, allow_heldout):
        senses = self.idx[lemma]["senses"]
        if len(senses) < 2:
            return None
        w = self.display(lemma, *senses[0])
        k = min(len(senses), 3)
        lines = ["{}. ({}) {}".format(i + 1, POS_NAME[self.syn[senses[i]]["pos"]], end(self.syn[senses[i]]["def"]))
                 for i in range(k)]
        q = self.rng.choice(["What are the meanings of {w}?", "List the senses of {w}.",
                             "What can {w} mean?", "Give me the main meanings of the word {w}."]).format(w=w)
        more = "" if k == len(senses) else " ({} senses in all.)".format(len(senses))
        return q, "{} has {} main meanings:\n{}{}".format(cap(w), k, "\n".join(lines), more)

    def q_example(self, lemma, allow_heldout):
        for pos, off in self.idx[lemma]["senses"][:3]:
            s = self.syn[(pos, off)]
            w = self.display(lemma, pos, off)
            exs = [e for e in s["ex"] if w.lower() in e.lower()]
            if exs:
                ex = self.rng.choice(exs)
                q = self.rng.choice(["Use '{w}' in a sentence.", "Use {w} in a sentence.",
                                     "Give me an example sentence with {w}.", "How is the word {w} used?",
                                     "Show me {w} in a sentence.", "Example of {w}?"]).format(w=w)
                a = self.rng.choice(["{E}", "Here is an example: \"{e}\"", "For example: \"{e}\"",
                                     "\"{e}\" ({w} as in: {d})"]).format(E=end(cap(ex)), e=ex, w=w, d=s["def"])
                return q, a
        return None

    def q_synonym(self, lemma, allow_heldout):
        for pos, off in self.idx[lemma]["senses"][:3]:
            s = self.syn[(pos, off)]
            others = self.ok_names(s["words"], lemma, allow_heldout)
            if others:
                w = self.display(lemma, pos, off)
                others = others[:4]
                q = self.rng.choice(["Give a synonym of {w}.", "What's another word for {w}?",
                                     "Synonyms for {w}?", "What is a synonym of {w}?",
                                     "Which words mean the same as {w}?"]).format(w=w)
                if len(others) == 1:
                    a = self.rng.choice(["{o}.", "A synonym of {w} is {o}.", "You can say {o}."]).format(
                        o=others[0], w=w)
                else:
                    a = self.rng.choice(["Synonyms of {w}: {l}.", "{L}."]).format(
                        w=w, l=", ".join(others), L=cap(", ".join(others)))
                return q, a
        return None

    def q_hypernym(self, lemma, allow_heldout):
        pos, off = self.idx[lemma]["senses"][0]
        s = self.syn[(pos, off)]
        if not s["hyper"] or pos not in "nv":
            return None
        hpos, hoff, inst = s["hyper"][0]
        names = self.ok_names(self.syn[(hpos, hoff)]["words"], lemma, allow_heldout)
        if not names:
            return None
        h, w = names[0], self.display(lemma, pos, off)
        if pos == "v":
            q = self.rng.choice(["What kind of action is to {w}?", "To {w} is a way of doing what?"]).format(w=w)
            return q, "To {w} is a way to {h}: {d}.".format(w=w, h=h, d=s["def"])
        if inst:
            q = self.rng.choice(["Who or what is {w}?", "What is {w}?"]).format(w=w)
            return q, "{W} is an instance of {a} {h}: {d}.".format(W=cap(w), a=article(h), h=h, d=s["def"])
        q = self.rng.choice(["What kind of thing is {a} {w}?", "{W} is a kind of what?",
                             "What is {a} {w} a type of?", "What category does {w} belong to?"]).format(
            a=article(w), w=w, W=cap(w))
        return q, "{A} {w} is a kind of {h}.".format(A=cap(article(w)), w=w, h=h)

    def q_antonym(self, lemma, allow_heldout):
        for pos, off in self.idx[lemma]["senses"][:3]:
            s = self.syn[(pos, off)]
            for src, apos, aoff, tgt in s["ant"]:
                if src == 0 or tgt == 0 or src > len(s["words"]):
                    continue
                if s["words"][src - 1].lower().replace(" ", "_") != lemma:
                    continue
                words = self.syn[(apos, aoff)]["words"]
                if tgt > len(words):
                    continue
                ant = words[tgt - 1]
                if not allow_heldout and is_heldout(ant.lower().replace(" ", "_")):
                    continue
                w = self.display(lemma, pos, off)
                q = self.rng.choice(["What is the opposite of {w}?", "Give an antonym of {w}.",
                                     "What's the antonym of {w}?"]).format(w=w)
                return q, self.rng.choice(["The opposite of {w} is {a}.", "{A}."]).format(w=w, a=ant, A=cap(ant))
        return None

    def q_pos(self, lemma, allow_heldout):
        pos = self.idx[lemma]["pos"]
        w = self.display(lemma, *self.idx[lemma]["senses"][0])
        names = [POS_NAME[p] for p in pos]
        q = self.rng.choice(["Is {w} a noun or a verb?", "What part of speech is {w}?",
                             "Which part of speech is the word {w}?"]).format(w=w)
        if len(names) == 1:
            a = "{W} is {a} {p}.".format(W=cap(w), a=article(names[0]), p=names[0])
        else:
            a = "{W} can be {l}.".format(W=cap(w), l=", ".join(article(p) + " " + p for p in names[:-1]) +
                                         " or " + article(names[-1]) + " " + names[-1])
        return q, a

    KINDS = [("define", 10), ("senses", 1), ("example", 3), ("synonym", 3), ("hypernym", 2),
             ("antonym", 1), ("pos", 1)]

    def qa(self, lemma, allow_heldout, kind=None):
        if kind is None:
            kind = self.rng.choices([k for k, _ in self.KINDS], [w for _, w in self.KINDS])[0]
        r = getattr(self, "q_" + kind)(lemma, allow_heldout)
        if r is None and kind != "define":
            r = self.q_define(lemma, allow_heldout)
        return r

    def dialogue(self, lemmas, allow_heldout, persona_p=0.04):
        r = self.rng
        turns = []
        if r.random() < 0.12:
            turns.append(("system", r.choice(SYSTEM_PROMPTS)))
        if r.random() < persona_p:
            q, a = r.choice(PERSONA)
            turns += [("user", r.choice(q) if isinstance(q, list) else q), ("assistant", a)]
            if r.random() < 0.5:
                return turns
        elif r.random() < 0.05:
            turns += [("user", r.choice(GREETING_OPENERS)),
                      ("assistant", "Hello! I'm grok-nano. Ask me what a word means.")]
        n = r.choices([1, 2, 3, 4], [55, 25, 12, 8])[0]
        for _ in range(n):
            lemma = r.choice(lemmas)
            qa = self.qa(lemma, allow_heldout)
            if qa:
                turns += [("user", qa[0]), ("assistant", qa[1])]
        return turns


def render(turns):
    label = {"system": "System: ", "user": "Human: ", "assistant": "Assistant: "}
    return "".join(label[role] + text.strip() + "<|separator|>\n\n" for role, text in turns)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    ap.add_argument("--n-train", type=int, default=400000)
    ap.add_argument("--n-heldout", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    syn, idx = load_synsets(), load_index()
    rng = random.Random(a.seed)
    g = Gen(syn, idx, rng)
    lemmas = sorted(idx)
    train_l = [l for l in lemmas if not is_heldout(l)]
    held_l = [l for l in lemmas if is_heldout(l)]
    # Common words (tagged in SemCor) are drawn 4x as often as the rest.
    weighted = train_l + [l for l in train_l if idx[l]["tagged"] > 0] * 3
    print("lemmas %d, held out %d, weighted pool %d" % (len(lemmas), len(held_l), len(weighted)))
    with open(os.path.join(a.out, "train.jsonl"), "w") as ft, open(os.path.join(a.out, "spm_text.txt"), "w") as fs:
        for i in range(a.n_train):
            d = g.dialogue(weighted, False)
            ft.write(json.dumps(d) + "\n")
            if i < 300000:
                for role, text in d:
                    label = {"system": "System: ", "user": "Human: ", "assistant": "Assistant: "}[role]
                    for ln in (label + text + "<|separator|>").split("\n"):
                        fs.write(ln + "\n")
    # Held-out dialogues: only held-out lemmas, no persona turns.
    hrng = random.Random(a.seed + 1)
    hg = Gen(syn, idx, hrng)
    held_w = held_l + [l for l in held_l if idx[l]["tagged"] > 0] * 3
    with open(os.path.join(a.out, "heldout.jsonl"), "w") as fh:
        for _ in range(a.n_heldout):
            fh.write(json.dumps(hg.dialogue(held_w, True, persona_p=0.0)) + "\n")
    # Chat-test words: common, single alphabetic, held out.
    words = [l for l in held_l if idx[l]["tagged"] > 0 and re.fullmatch(r"[a-z]{3,}", l)]
    words.sort(key=lambda l: hashlib.md5(("chat:" + l).encode()).hexdigest())
    with open(os.path.join(a.out, "heldout_words.tsv"), "w") as fw:
        for l in words:
            defs = [syn[s]["def"] for s in idx[l]["senses"]]
            fw.write(l + "\t" + " | ".join(defs) + "\n")
    print("chat-test candidate words:", len(words))


if __name__ == "__main__":
    main()
