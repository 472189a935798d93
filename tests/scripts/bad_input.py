"""Bad-input tests for the grok CLI: every broken model file or argument must
give a clear message and exit status 1 or 2 -- never a crash (signal), a hang
or success. Run by test_bad_input.sh with GROK and GROK_TMP set."""
import os
import struct
import subprocess
import sys

GROK = os.environ["GROK"]
TMP = os.path.join(os.environ.get("GROK_TMP", "/tmp"), "bad_input")
os.makedirs(TMP, exist_ok=True)
failures = []
checks = 0


def run(args, timeout=20):
    try:
        p = subprocess.run([GROK] + args, capture_output=True, timeout=timeout)
        return p.returncode, p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return "timeout", ""


def expect_error(name, args, must_contain=None):
    global checks
    checks += 1
    rc, err = run(args)
    if rc == "timeout":
        failures.append(f"{name}: hung (timeout)")
    elif rc < 0 or rc >= 128:
        failures.append(f"{name}: crashed with signal/status {rc}: {err[-300:]}")
    elif rc == 0:
        failures.append(f"{name}: succeeded but should have failed")
    elif not err.strip():
        failures.append(f"{name}: failed without a message")
    elif must_contain and must_contain.lower() not in err.lower():
        failures.append(f"{name}: message does not mention '{must_contain}': {err.strip()[:300]}")


def write(name, data):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


# A small valid model to break.
good = os.path.join(TMP, "good.gguf")
rc, err = run(["new", good, "--embd", "64", "--layers", "1", "--heads", "4", "--kv-heads", "2", "--ff", "64",
               "--experts", "4", "--experts-used", "2", "--vocab", "300", "--ctx", "64", "--type", "q8_0"])
if rc != 0:
    print("could not create the test model:", err)
    sys.exit(1)
blob = open(good, "rb").read()
rc, err = run(["eval", "-m", good, "--tokens", "1,2,3", "--logits", os.path.join(TMP, "ok.f32")])
if rc != 0:
    print("the valid model does not evaluate:", err)
    sys.exit(1)


# --- parse the header so that fields can be corrupted precisely ---
class Reader:
    def __init__(self, b):
        self.b, self.o = b, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.b, self.o)
        self.o += struct.calcsize("<" + fmt)
        return v[0]

    def string(self):
        n = self.take("Q")
        s = self.b[self.o:self.o + n]
        self.o += n
        return s


SIZES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def skip_value(r, t):
    if t == 8:
        r.string()
    elif t == 9:
        et, n = r.take("i"), r.take("Q")
        for _ in range(n):
            skip_value(r, et)
    else:
        r.take(SIZES[t])


r = Reader(blob)
assert blob[:4] == b"GGUF"
r.o = 4
version, n_tensors, n_kv = r.take("I"), r.take("q"), r.take("q")
kv_pos = {}
for _ in range(n_kv):
    key = r.string().decode()
    t_off = r.o
    t = r.take("i")
    if t == 9:
        kv_pos[key] = (t_off, r.o)  # array: offset of elem type and of count
    else:
        kv_pos[key] = (t_off, r.o)
    skip_value(r, t)
tensor_pos = {}
for _ in range(n_tensors):
    name_off = r.o
    name = r.string().decode()
    nd = r.take("I")
    ne_off = r.o
    ne = [r.take("q") for _ in range(nd)]
    type_off = r.o
    r.take("i")
    off_off = r.o
    r.take("Q")
    tensor_pos[name] = dict(name=name_off, ne=ne_off, type=type_off, offset=off_off, nd=nd)
header_end = r.o


def patched(at, fmt, value):
    b = bytearray(blob)
    struct.pack_into("<" + fmt, b, at, value)
    return bytes(b)


def cmds(path):
    return [["info", path], ["eval", "-m", path, "--tokens", "1,2", "--logits", os.path.join(TMP, "x.f32")]]


def expect_bad_file(name, data, must_contain=None):
    path = write(name + ".gguf", data)
    for c in cmds(path):
        expect_error(f"{name} ({c[0]})", c, must_contain)


# 1. truncation at many offsets: every 13th byte of the header, then samples of the data
offsets = list(range(0, header_end + 64, 13)) + list(range(header_end, len(blob), max(1, len(blob) // 40)))
for off in offsets:
    path = write("trunc.gguf", blob[:off])
    expect_error(f"truncated at {off}", ["info", path])
expect_bad_file("truncated-data", blob[: len(blob) - 100])

# 2. magic and version
expect_bad_file("magic", b"GGUG" + blob[4:], "magic")
expect_bad_file("version2", patched(4, "I", 2), "version")
expect_bad_file("version4", patched(4, "I", 4), "version")

# 3. absurd counts
expect_bad_file("n_tensors", patched(8, "q", 1 << 62))
expect_bad_file("n_tensors-neg", patched(8, "q", -5))
expect_bad_file("n_kv", patched(16, "q", 1 << 62))
first_key_len_at = 24
expect_bad_file("key-length", patched(first_key_len_at, "Q", 1 << 60))
tok_type_off, tok_count_off = kv_pos["tokenizer.ggml.tokens"]
expect_bad_file("array-count", patched(tok_count_off + 4, "Q", 1 << 61))
emb = tensor_pos["token_embd.weight"]
expect_bad_file("tensor-dims", patched(emb["ne"] - 4, "I", 7))
expect_bad_file("tensor-ne", patched(emb["ne"], "q", 1 << 40))
expect_bad_file("tensor-offset", patched(emb["offset"], "Q", 1 << 50))
expect_bad_file("tensor-offset-misaligned", patched(emb["offset"], "Q", 3))

# 4. unknown architecture / tensor type, missing tensors, wrong shapes
arch_at = blob.index(b"grok", kv_pos["general.architecture"][1])
expect_bad_file("architecture", blob[:arch_at] + b"groq" + blob[arch_at + 4:], "architecture")
expect_bad_file("tensor-type", patched(emb["type"], "i", 999), "type")
expect_bad_file("tensor-type-noncompute", patched(tensor_pos["blk.0.attn_q.weight"]["type"], "i", 12))
name_at = blob.index(b"blk.0.attn_q.weight")
renamed = blob[:name_at] + b"blk.0.attn_X.weight" + blob[name_at + len(b"blk.0.attn_q.weight"):]
path = write("missing.gguf", renamed)
expect_error("missing tensor", ["eval", "-m", path, "--tokens", "1", "--logits", os.path.join(TMP, "x.f32")],
             "attn_q")
expect_bad_file("expert-count", patched(kv_pos["grok.expert_count"][1], "I", 0), "expert")
expect_bad_file("heads", patched(kv_pos["grok.attention.head_count"][1], "I", 3))
expect_bad_file("random", bytes((i * 7919) % 251 for i in range(4096)))
expect_bad_file("empty", b"")

# 5. arguments and prompts
expect_error("no file", ["info", os.path.join(TMP, "does-not-exist.gguf")])
expect_error("directory", ["info", TMP])
expect_error("prompt longer than context", ["run", "-m", good, "-p", "word " * 200, "--ctx", "16", "-n", "4"], "context")
expect_error("token id out of range", ["eval", "-m", good, "--tokens", "1,300", "--logits", os.path.join(TMP, "x.f32")],
             "vocab")
expect_error("eval longer than context", ["eval", "-m", good, "--tokens", ",".join(["5"] * 40), "--ctx", "16",
                                          "--logits", os.path.join(TMP, "x.f32")], "context")
expect_error("bad --ctx", ["run", "-m", good, "-p", "hi", "--ctx", "-4"])
expect_error("bad --temp", ["run", "-m", good, "-p", "hi", "--temp", "abc"])
expect_error("unknown option", ["run", "-m", good, "-p", "hi", "--frobnicate"])
expect_error("unknown command", ["frobnicate"])
expect_error("empty prompt", ["run", "-m", good, "-p", ""])
expect_error("bad --tokens", ["eval", "-m", good, "--tokens", "1,x", "--logits", os.path.join(TMP, "x.f32")])
expect_error("unwritable logits", ["eval", "-m", good, "--tokens", "1", "--logits", "/proc/nope/x.f32"])
expect_error("new: bad type", ["new", os.path.join(TMP, "n.gguf"), "--type", "q9"])
expect_error("new: heads", ["new", os.path.join(TMP, "n.gguf"), "--embd", "64", "--heads", "5"])
expect_error("new: unwritable", ["new", "/proc/nope/n.gguf", "--embd", "64", "--layers", "1", "--ff", "64",
                                 "--heads", "4", "--kv-heads", "2", "--vocab", "300"])
expect_error("tokenize: not a tokenizer", ["tokenize", "-m", write("junk.model", b"\x0a\xff\xff\xff\xff\x0f"), "hi"])

# 6. non-finite or out-of-range hyper-parameters are refused at load, naming the key
#    (issue 16, finding 6); block_count against the tensors (7, 10)
def key_value_at(key):
    return kv_pos[key][1]  # the value follows the type field


NAN, INF = float("nan"), float("inf")
for key in ["grok.rope.freq_base", "grok.attention.layer_norm_rms_epsilon", "grok.embedding_scale",
            "grok.logit_scale", "grok.attention.output_scale", "grok.attn_logit_softcapping"]:
    for tag, v in (("nan", NAN), ("inf", INF), ("-inf", -INF)):
        expect_bad_file(f"key-{key}-{tag}", patched(key_value_at(key), "f", v), key)
expect_bad_file("key-rms-epsilon-negative", patched(key_value_at("grok.attention.layer_norm_rms_epsilon"), "f", -1.0),
                "layer_norm_rms_epsilon")
expect_bad_file("key-rope-base-zero", patched(key_value_at("grok.rope.freq_base"), "f", 0.0), "freq_base")
expect_bad_file("block_count-huge", patched(key_value_at("grok.block_count"), "I", 2**31 - 1), "block_count")
# the good model has one layer: a second layer's tensors would be unused; use a 2-layer file with block_count = 1
two = os.path.join(TMP, "two.gguf")
rc, err = run(["new", two, "--embd", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--ff", "64",
               "--experts", "4", "--experts-used", "2", "--vocab", "300", "--ctx", "64"])
if rc != 0:
    failures.append(f"grok new (2 layers): {err}")
else:
    b2 = open(two, "rb").read()
    at = b2.index(b"grok.block_count") + len(b"grok.block_count") + 4
    assert struct.unpack_from("<I", b2, at)[0] == 2
    bb = bytearray(b2)
    struct.pack_into("<I", bb, at, 1)
    expect_bad_file("block_count-too-small", bytes(bb), "blk.1.")
# Grok-2: temperature_length = 1, non-finite soft-caps, a half-present shared MLP
g2 = os.path.join(TMP, "g2.gguf")
rc, err = run(["new", g2, "--embd", "64", "--layers", "1", "--heads", "4", "--kv-heads", "2", "--ff", "64",
               "--experts", "4", "--experts-used", "2", "--vocab", "300", "--ctx", "64", "--grok2"])
if rc != 0:
    failures.append(f"grok new --grok2: {err}")
else:
    b2 = open(g2, "rb").read()

    def g2_patch(key, fmt, v):
        at = b2.index(key.encode()) + len(key) + 4
        bb = bytearray(b2)
        struct.pack_into("<" + fmt, bb, at, v)
        return bytes(bb)

    expect_bad_file("g2-temperature_length-1", g2_patch("grok.attention.temperature_length", "I", 1), "temperature_length")
    for key in ["grok.router_logit_softcapping", "grok.final_logit_softcapping"]:
        expect_bad_file(f"g2-{key}-inf", g2_patch(key, "f", INF), key)
        expect_bad_file(f"g2-{key}-nan", g2_patch(key, "f", NAN), key)
    nm = b"blk.0.ffn_up.weight"
    at = b2.index(nm)
    expect_bad_file("g2-missing-ffn_up", b2[:at] + b"blk.0.ffn_uX.weight" + b2[at + len(nm):], "blk.0.ffn_")
    nm = b"blk.0.ffn_gate.weight"
    at = b2.index(nm)
    expect_bad_file("g2-missing-ffn_gate", b2[:at] + b"blk.0.ffn_gatX.weight" + b2[at + len(nm):], "blk.0.ffn_gate.weight")
    # ffn_up's second dimension 0
    at = b2.index(b"blk.0.ffn_up.weight") + len(b"blk.0.ffn_up.weight") + 4 + 8
    bb = bytearray(b2)
    struct.pack_into("<q", bb, at, 0)
    expect_bad_file("g2-ffn_up-zero-dim", bytes(bb), "ffn_")

# a NaN weight: every logit NaN -> an error at run time, never text
norm = tensor_pos["output_norm.weight"]
data_start = (header_end + 31) // 32 * 32
norm_off = struct.unpack_from("<Q", blob, norm["offset"])[0]
bb = bytearray(blob)
for i in range(64):
    struct.pack_into("<f", bb, data_start + norm_off + 4 * i, NAN)
path = write("nan-weights.gguf", bytes(bb))
expect_error("NaN weights: eval", ["eval", "-m", path, "--tokens", "1,2", "--logits", os.path.join(TMP, "x.f32")],
             "non-finite")
expect_error("NaN weights: run", ["run", "-m", path, "-p", "hi", "-n", "2"], "non-finite")

# 7. files that are not regular: refused before reading, never a hang (8, 2)
fifo = os.path.join(TMP, "fifo.gguf")
if os.path.exists(fifo):
    os.unlink(fifo)
os.mkfifo(fifo)
expect_error("FIFO model: info", ["info", fifo], "FIFO")
expect_error("FIFO model: run", ["run", "-m", fifo, "-p", "hi"], "FIFO")
expect_error("FIFO prompt file", ["run", "-m", good, "-f", fifo, "-n", "2"], "FIFO")
expect_error("run -f /dev/zero", ["run", "-m", good, "-f", "/dev/zero", "-n", "2"], "regular")
expect_error("tokenize -f /dev/zero", ["tokenize", "-m", good, "-f", "/dev/zero"], "regular")
big = os.path.join(TMP, "big.txt")
with open(big, "wb") as f:
    f.truncate(64 << 20)  # sparse: 64 MiB of zeros, over 32 bytes x 64 tokens of context
expect_error("run -f over the size limit", ["run", "-m", good, "-f", big, "--ctx", "64", "-n", "2"], "limit")
os.unlink(big)

# 8. outputs: a symlink at a temporary name is never followed, a non-regular output is refused (3)
victim = os.path.join(TMP, "victim")
with open(victim, "w") as f:
    f.write("precious\n")
out = os.path.join(TMP, "q.gguf")
for stale in (out, out + ".tmp"):
    if os.path.lexists(stale):
        os.unlink(stale)
os.symlink(victim, out + ".tmp")
checks += 1
rc, err = run(["quantize", good, out, "Q8_0"])
if rc != 0:
    failures.append(f"quantize beside a symlink OUT.tmp failed: {err[-300:]}")
if open(victim).read() != "precious\n":
    failures.append("quantize wrote through the symlink OUT.tmp into its target")
if not os.path.islink(out + ".tmp"):
    failures.append("quantize replaced the symlink OUT.tmp")
if rc == 0 and open(out, "rb").read(4) != b"GGUF":
    failures.append("quantize: the output is not a GGUF file")
leftovers = [n for n in os.listdir(TMP) if n.startswith("q.gguf.tmp.")]
if leftovers:
    failures.append(f"quantize left temporaries: {leftovers}")
os.unlink(out + ".tmp")
link = os.path.join(TMP, "link.gguf")
if os.path.lexists(link):
    os.unlink(link)
os.symlink(victim, link)
expect_error("quantize: output is a symlink", ["quantize", good, link, "Q8_0"], "symbolic link")
if open(victim).read() != "precious\n":
    failures.append("quantize wrote through an output symlink")
expect_error("quantize: output is a FIFO", ["quantize", good, fifo, "Q8_0"], "FIFO")
expect_error("new: output is a FIFO", ["new", fifo, "--embd", "64", "--layers", "1", "--heads", "4", "--kv-heads", "2",
                                       "--ff", "64", "--experts", "4", "--experts-used", "2", "--vocab", "300"], "FIFO")
if not os.path.exists("/dev/null") or not os.path.exists(fifo):
    failures.append("a device or FIFO output was replaced")
expect_error("quantize: output is a device", ["quantize", good, "/dev/null", "Q8_0"], "device")
if not os.path.exists("/dev/null") or os.path.isfile("/dev/null"):
    failures.append("/dev/null was replaced by a regular file")
os.unlink(fifo)

# 9. small argument checks (10)
expect_error("detokenize 1,,2", ["detokenize", "-m", good, "1,,2"], "token id list")
expect_error("detokenize trailing comma", ["detokenize", "-m", good, "1,2,"], "token id list")
expect_error("eval --tokens 1,,2", ["eval", "-m", good, "--tokens", "1,,2", "--logits", os.path.join(TMP, "x.f32")])
expect_error("run: -p twice", ["run", "-m", good, "-p", "one", "-p", "two", "-n", "1"], "-p")
expect_error("run: -p and -f", ["run", "-m", good, "-p", "one", "-f", victim, "-n", "1"], "-f")

# 10. grok chat: a system prompt that cannot fit, conversations that are not regular files (2, 10)
def chat(stdin_text, extra=()):
    global checks
    checks += 1
    try:
        p = subprocess.run([GROK, "chat", "-m", good, "--ctx", "64", "-n", "2", "--temp", "0"] + list(extra),
                           input=stdin_text.encode(), capture_output=True, timeout=60)
        return p.returncode, p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return "timeout", ""


import json
long_sys = os.path.join(TMP, "long-system.json")
with open(long_sys, "w") as f:
    json.dump({"messages": [{"role": "system", "content": "word " * 400}, {"role": "user", "content": "hi"}]}, f)
rc, err = chat(f"/load {long_sys}\n")
if rc != 0 or "system prompt takes" not in err:
    failures.append(f"chat: /load of a system prompt longer than the context: rc {rc}: {err[-300:]}")
rc, err = chat("/system " + "word " * 400 + "\n/system\n")
if rc != 0 or "system prompt takes" not in err:
    failures.append(f"chat: /system longer than the context: rc {rc}: {err[-300:]}")
rc, err = chat("", ["--system", "word " * 400])
if rc in (0, "timeout") or "system prompt takes" not in err:
    failures.append(f"chat: --system longer than the context: rc {rc}: {err[-300:]}")
rc, err = chat("/load /dev/zero\n")
if rc != 0 or "not a regular file" not in err:
    failures.append(f"chat: /load /dev/zero: rc {rc}: {err[-300:]}")
big = os.path.join(TMP, "big.json")
with open(big, "wb") as f:
    f.truncate(17 << 20)
rc, err = chat(f"/load {big}\n")
if rc != 0 or "limit" not in err:
    failures.append(f"chat: /load of a 17 MiB file: rc {rc}: {err[-300:]}")
os.unlink(big)

for f in failures:
    print("FAIL:", f)
print(f"{checks - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
