#!/usr/bin/python3
"""Reference implementation of Grok-2's tokenizer (shared/docs/grok-architecture.md B6),
written independently of grok.c's C code, and a test driver that compares `grok tokenize`
with it.

  * The pre-tokenizer is B6's regex
        (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*
        |\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+
    run by a small backtracking regex interpreter below (python3's `re` has no \\p{L});
    the pattern is spelled as a tree of nodes, and the interpreter tries alternatives and
    quantifier lengths in the order a backtracking engine does. \\p{L} / \\p{N} are the
    general categories L* / N* of unicodedata; \\s is the White_Space property (listed);
    (?i) folds with Unicode simple case folding (s, S and U+017F for 's').
  * Special tokens (control / user-defined pieces) are matched whole first, leftmost
    longest; invalid UTF-8 bytes become U+FFFD (one per byte, as SentencePiece does).
  * BPE: a piece that is a token is that token (tiktoken); otherwise GPT-2's bpe():
    repeatedly merge every occurrence of the lowest-ranked adjacent pair (merges mode), or
    tiktoken's rule: merge the adjacent parts whose concatenation has the lowest rank
    (ranks mode, from a tokenizer.tok.json).

usage:
    grok2_tok_ref.py check GROK MODEL.gguf [--tok-json tokenizer.tok.json] [--llama PEER_DIR]
        compares `grok tokenize` (ids and --split pieces) and `grok detokenize` with this
        reference on a built-in multilingual corpus plus random strings (and, with --llama,
        with llama.cpp's tokenizer through node-llama-cpp); exit 1 on mismatch.
    grok2_tok_ref.py encode MODEL.gguf TEXT      prints the ids
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_reader import GGUFReader  # noqa: E402

TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# PropList.txt White_Space
WHITE_SPACE = set(list(range(0x09, 0x0E)) + [0x20, 0x85, 0xA0, 0x1680] + list(range(0x2000, 0x200B)) +
                  [0x2028, 0x2029, 0x202F, 0x205F, 0x3000])


def is_L(c):
    return unicodedata.category(c)[0] == "L"


def is_N(c):
    return unicodedata.category(c)[0] == "N"


def is_s(c):
    return ord(c) in WHITE_SPACE


# ---- a tiny backtracking regex interpreter --------------------------------------------
# A node is a function (text, i) -> iterator over end positions, most preferred first.
def cls(pred):
    def m(s, i):
        if i < len(s) and pred(s[i]):
            yield i + 1
    return m


def seq(*nodes):
    def m(s, i, k=0):
        if k == len(nodes):
            yield i
            return
        for j in nodes[k](s, i):
            yield from m(s, j, k + 1)
    return lambda s, i: m(s, i)


def alt(*nodes):
    def m(s, i):
        for n in nodes:
            yield from n(s, i)
    return m


def repeat(node, lo):
    """Greedy node{lo,}: longest first, backtracking one repetition at a time."""
    def m(s, i, count=0):
        for j in node(s, i):
            if j != i:
                yield from m(s, j, count + 1)
        if count >= lo:
            yield i
    return lambda s, i: m(s, i)


def opt(node):
    def m(s, i):
        yield from node(s, i)
        yield i
    return m


def neg_lookahead(node):
    def m(s, i):
        for _ in node(s, i):
            return
        yield i
    return m


def ci(ch):
    folds = {"s": "sS\u017f"}.get(ch, ch + ch.upper())
    return cls(lambda c: c in folds)


def lit(ch):
    return cls(lambda c: c == ch)


CRLF = "\r\n"
PATTERN = alt(
    seq(lit("'"), alt(ci("s"), ci("t"), seq(ci("r"), ci("e")), seq(ci("v"), ci("e")), ci("m"),
                      seq(ci("l"), ci("l")), ci("d"))),
    seq(opt(cls(lambda c: c not in CRLF and not is_L(c) and not is_N(c))), repeat(cls(is_L), 1)),
    cls(is_N),
    seq(opt(lit(" ")), repeat(cls(lambda c: not is_s(c) and not is_L(c) and not is_N(c)), 1),
        repeat(cls(lambda c: c in CRLF), 0)),
    seq(repeat(cls(is_s), 0), repeat(cls(lambda c: c in CRLF), 1)),
    seq(repeat(cls(is_s), 1), neg_lookahead(cls(lambda c: not is_s(c)))),
    repeat(cls(is_s), 1),
)


def regex_split(text):
    """findall: at each position the first match of PATTERN; positions no match starts
    at are skipped (cannot happen with this pattern, every character is matched)."""
    out, i = [], 0
    while i < len(text):
        end = next(PATTERN(text, i), None)
        if end is None or end == i:
            i += 1
            continue
        out.append(text[i:end])
        i = end
    return out


def sanitize(b):
    """bytes -> str; each byte that does not start a valid UTF-8 sequence -> U+FFFD."""
    out, i = [], 0
    while i < len(b):
        c = b[i]
        n = 1 if c < 0x80 else 2 if c >> 5 == 6 else 3 if c >> 4 == 14 else 4 if c >> 3 == 30 else 0
        try:
            if n == 0:
                raise UnicodeDecodeError("utf-8", b, i, i + 1, "bad lead")
            out.append(b[i:i + n].decode("utf-8"))
            i += n
        except UnicodeDecodeError:
            out.append("\ufffd")
            i += 1
    return "".join(out)


# ---- vocabularies ---------------------------------------------------------------------
def gpt2_byte_decoder():
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cps, n = {}, 0
    for b in range(256):
        if b in printable:
            cps[chr(b)] = b
        else:
            cps[chr(0x100 + n)] = b
            n += 1
    return cps


class Vocab:
    def __init__(self, pieces, types, merges=None, ranks=None):
        self.pieces = pieces                         # id -> bytes (normal) / text bytes (special)
        self.types = types
        self.normal = {}
        for i, (p, t) in enumerate(zip(pieces, types)):
            if t in (TOKEN_NORMAL, TOKEN_UNUSED, TOKEN_BYTE) and p and p not in self.normal:
                self.normal[p] = i
        self.specials = {}
        for i, (p, t) in enumerate(zip(pieces, types)):
            if t in (TOKEN_CONTROL, TOKEN_USER_DEFINED) and p:
                self.specials.setdefault(p.decode("utf-8", "surrogateescape"), i)
        self.merges = merges                         # {(a bytes, b bytes): rank}
        self.ranks = ranks                           # {bytes: rank} (tiktoken)

    @classmethod
    def from_gguf(cls, path):
        r = GGUFReader(path)
        md = r.metadata
        assert md["tokenizer.ggml.model"] == "gpt2", md["tokenizer.ggml.model"]
        dec = gpt2_byte_decoder()
        toks = md["tokenizer.ggml.tokens"]
        types = md.get("tokenizer.ggml.token_type", [TOKEN_NORMAL] * len(toks))
        pieces = []
        for s, t in zip(toks, types):
            if t in (TOKEN_NORMAL, TOKEN_UNUSED, TOKEN_BYTE):
                pieces.append(bytes(dec[c] for c in s))
            else:
                pieces.append(s.encode("utf-8"))
        merges = {}
        for rank, m in enumerate(md["tokenizer.ggml.merges"]):
            a, b = m.split(" ")
            merges.setdefault((bytes(dec[c] for c in a), bytes(dec[c] for c in b)), rank)
        return cls(pieces, types, merges=merges)

    @classmethod
    def from_tok_json(cls, path):
        """Grok-2's tokenizer.tok.json: regular_tokens / special_tokens {bytes, token}."""
        with open(path) as f:
            j = json.load(f)
        n = max([t["token"] for t in j["regular_tokens"] + j["special_tokens"]]) + 1
        n = max(n, j.get("vocab_size", n))
        pieces, types = [b""] * n, [TOKEN_UNUSED] * n
        ranks = {}
        for t in j["regular_tokens"]:
            pieces[t["token"]] = bytes(t["bytes"])
            types[t["token"]] = TOKEN_NORMAL
            ranks[bytes(t["bytes"])] = t["token"]
        for t in j["special_tokens"]:
            pieces[t["token"]] = bytes(t["bytes"])
            types[t["token"]] = TOKEN_CONTROL
        return cls(pieces, types, ranks=ranks)

    # ---- encoding ----
    def bpe_merges(self, word):
        parts = [bytes([b]) for b in word]
        while len(parts) > 1:
            best = min((self.merges.get((parts[k], parts[k + 1]), 1 << 60), k) for k in range(len(parts) - 1))
            if best[0] == 1 << 60:
                break
            a, b = parts[best[1]], parts[best[1] + 1]
            out, k = [], 0
            while k < len(parts):          # GPT-2: merge every occurrence, left to right
                if k + 1 < len(parts) and parts[k] == a and parts[k + 1] == b:
                    out.append(a + b)
                    k += 2
                else:
                    out.append(parts[k])
                    k += 1
            parts = out
        return parts

    def bpe_ranks(self, word):
        parts = [bytes([b]) for b in word]
        while len(parts) > 1:              # tiktoken: lowest-ranked concatenation, leftmost
            best = min((self.ranks.get(parts[k] + parts[k + 1], 1 << 60), k) for k in range(len(parts) - 1))
            if best[0] == 1 << 60:
                break
            k = best[1]
            parts[k:k + 2] = [parts[k] + parts[k + 1]]
        return parts

    def pieces_of(self, text):
        """[(str piece, special id or None)]"""
        out, i, plain = [], 0, []
        specials = sorted(self.specials, key=len, reverse=True)
        while i < len(text):
            hit = next((s for s in specials if text.startswith(s, i)), None)
            if hit is None:
                plain.append(text[i])
                i += 1
                continue
            out += [(p, None) for p in regex_split("".join(plain))]
            plain = []
            out.append((hit, self.specials[hit]))
            i += len(hit)
        out += [(p, None) for p in regex_split("".join(plain))]
        return out

    def encode(self, data):
        text = sanitize(data) if isinstance(data, bytes) else data
        ids = []
        for piece, sid in self.pieces_of(text):
            if sid is not None:
                ids.append(sid)
                continue
            word = piece.encode("utf-8")
            if word in self.normal:
                ids.append(self.normal[word])
                continue
            for part in (self.bpe_ranks(word) if self.ranks is not None else self.bpe_merges(word)):
                if part in self.normal:
                    ids.append(self.normal[part])
                else:
                    ids += [self.normal[bytes([b])] for b in part]
        return ids

    def decode(self, ids):
        out = b""
        for i in ids:
            if self.types[i] == TOKEN_CONTROL:
                continue
            out += self.pieces[i]
        return out.decode("utf-8", "replace")


# ---- test corpus ----------------------------------------------------------------------
CORPUS = [
    "Hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    "I'm here. You're there. We've been. He'll go. She'd know. It's fine. Don't.",
    "I'M HERE, YOU'RE THERE, WE'VE, HE'LL, SHE'D, IT'S, DON'T", "'s 't 're 've 'm 'll 'd", "'x 'S 'Re 'lL",
    "ca'ſ o'ſt", "rock'n'roll", "'sam 'tis 'llama 'dog 'mom 'veal 'really 'MOM 'Sam", "don'tcha y'all'dve", "''''", "' ", "'", "'\n",
    "12345", "3.14159", "1,000,000", "v2.0.1-beta", "x=1; y=22; z=333",
    "  two spaces", "three   spaces   inside", "trailing space ", "trailing spaces   ", "   ",
    "line one\nline two", "crlf\r\nline", "blank\n\n\nlines", "\n", "\r\n", "\r\r\n\n", " \n ", "a \n b",
    "tab\tseparated\tvalues", "\t\tindent", "mixed \t \n \t end",
    "punctuation!!! ??? ...", "(parens) [brackets] {braces}", "a->b => c", "// comment\n/* block */",
    "    if (x == 1) {\n        return y;\n    }\n", "def f(x):\n\treturn x**2\n",
    "email@example.com http://example.com/path?q=1&r=2",
    "Le café est très bon.", "Ça va? Où est-ce?", "Über die Brücke.", "¿Dónde está? ¡Ahí!",
    "Привет, как дела?", "Γειά σου κόσμε", "日本語のテキストです。", "你好世界，这是中文。", "한국어 문장입니다.",
    "مرحبا بالعالم", "नमस्ते दुनिया", "שלום עולם", "ภาษาไทย", "Tiếng Việt có dấu",
    "emoji 🙂👍🏽 family 👨‍👩‍👧 flag 🇫🇷", "symbols © ® ™ → ← ≤ ≥ ∑ √ π",
    "fractions ½ ¾ superscripts ² ³ roman Ⅻ ⅷ arabic-indic ٣٤٥ devanagari ०१२",
    "letters ǅ ʰ ˢ ª º", "combining e\u0301 a\u0308 (NFD)", "zero\u200bwidth", "nbsp\u00a0here",
    "ideographic\u3000space", "line\u2028separator", "next\u0085line", "bom\ufeffmark",
    "<|separator|>", "Human: hi<|separator|>\n\nAssistant:", "<|eos|><|eos|>", "<|separator|", "|separator|>",
    "<|pad|>x<|mask|>y", " <|separator|> ", "a<|control1|>b<|control12|>c",
    "Grok-2 was released in 2024 with 270B parameters.", "",
]

POOL = ("abcxyzABC" + "éüßçñ" + "жзЯ" + "αβΩ" + "日本中文" + "한" + "ب" + "न्" + "0123" + "٣Ⅻ½²" +
        " " * 6 + "\t\n\r" + "\u00a0\u3000\u2028\u0085" + ".,!?'\"-()" + "'''" + "\u0301\u200b\ufeff" + "🙂")


def random_cases(n, seed=1234):
    r = random.Random(seed)
    return ["".join(r.choice(POOL) for _ in range(r.randrange(1, 24))) for _ in range(n)]


INVALID = [b"bad \xff byte", b"trunc \xe2\x82", b"\xc0\xaf overlong", b"surrogate \xed\xa0\x80 x",
           b"\xf4\x90\x80\x80 too big", b"ok \xe2\x82\xac euro \x80\x80"]


# ---- the driver -----------------------------------------------------------------------
def run(cmd, data=None):
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd[:3]), p.stderr.decode(errors="replace")))
    return p.stdout


def grok_ids(grok, model, data, tmp):
    with open(tmp, "wb") as f:
        f.write(data)
    out = run([grok, "tokenize", "-m", model, "-f", tmp]).decode().split()
    return [int(x) for x in out]


def grok_split(grok, model, data, tmp):
    with open(tmp, "wb") as f:
        f.write(data)
    return [bytes.fromhex(x) for x in run([grok, "tokenize", "-m", model, "--split", "-f", tmp]).decode().split()]


def check(grok, model, tok_json=None, peer=None):
    vocab = Vocab.from_gguf(model)
    ref_vocabs = [("merges", vocab)]
    if tok_json:
        ref_vocabs.append(("tiktoken ranks", Vocab.from_tok_json(tok_json)))
    sep = "<|separator|>"
    if sep not in vocab.specials:
        print("  FAIL: the vocabulary has no %s" % sep)
        return 1
    cases = [c.encode("utf-8") for c in CORPUS + random_cases(300)] + INVALID
    fail = 0
    fd, tmp = tempfile.mkstemp(prefix="grok2tok")
    os.close(fd)
    try:
        # All cases in one run, joined by a special token: special tokens cut the text into
        # independent segments, so the result is the concatenation of the per-case results.
        joined = sep.encode().join(cases)
        got = grok_ids(grok, model, joined, tmp)
        got_split = grok_split(grok, model, joined, tmp)
        for name, v in ref_vocabs:
            want = v.encode(joined)
            ok = got == want
            print("  %-4s ids (%s): %d cases, %d tokens" % ("ok" if ok else "FAIL", name, len(cases), len(want)))
            fail |= not ok
        want_split = [p.encode("utf-8") for p, _ in vocab.pieces_of(sanitize(joined))]
        ok = got_split == want_split
        print("  %-4s pre-tokenizer pieces: %d" % ("ok" if ok else "FAIL", len(want_split)))
        fail |= not ok
        if fail:  # localise: case by case
            shown = 0
            for c in cases:
                g, w = grok_ids(grok, model, c, tmp), vocab.encode(c)
                gs = grok_split(grok, model, c, tmp)
                ws = [p.encode("utf-8") for p, _ in vocab.pieces_of(sanitize(c))]
                if (g != w or gs != ws) and shown < 10:
                    shown += 1
                    print("    case %r\n      grok ids %s\n      ref  ids %s\n      grok split %s\n      ref  split %s"
                          % (c, g, w, gs, ws))
        # decoding: ids -> text gives back the (sanitized) text
        ids = vocab.encode(joined)
        text = run([grok, "detokenize", "-m", model, ",".join(map(str, ids))])
        want_text = vocab.decode(ids).encode("utf-8") + b"\n"
        plain = sanitize(joined)
        for sp, sid in vocab.specials.items():  # control tokens decode to nothing
            if vocab.types[sid] == TOKEN_CONTROL:
                plain = plain.replace(sp, "")
        ok = text == want_text and text[:-1] == plain.encode("utf-8")
        print("  %-4s detokenize round trip (%d bytes)" % ("ok" if ok else "FAIL", len(text)))
        fail |= not ok
        if peer:  # llama.cpp's tokenizer on the same vocabulary (valid UTF-8 cases only)
            valid = sep.encode().join(c for c in cases if c not in INVALID)
            with open(tmp, "wb") as f:
                f.write(valid)
            script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llama_tokenize.mjs")
            llama = [int(x) for x in run(["node", script, peer, model, tmp]).split()]
            ok = llama == grok_ids(grok, model, valid, tmp)
            print("  %-4s ids equal to llama.cpp's (pre-tokenizer grok-2): %d tokens" % ("ok" if ok else "FAIL", len(llama)))
            fail |= not ok
    finally:
        os.unlink(tmp)
    return 1 if fail else 0


def main(argv):
    if len(argv) >= 4 and argv[1] == "check":
        tj = argv[argv.index("--tok-json") + 1] if "--tok-json" in argv else None
        peer = argv[argv.index("--llama") + 1] if "--llama" in argv else None
        return check(argv[2], argv[3], tj, peer)
    if len(argv) == 4 and argv[1] == "encode":
        print(" ".join(map(str, Vocab.from_gguf(argv[2]).encode(argv[3].encode("utf-8", "surrogateescape")))))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
