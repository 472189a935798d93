#!/usr/bin/env python3
# Writes the seed corpus of tests/fuzz/fuzz_slot_file.c: valid slot files
# (src/server/slots.h) for the fuzz target's model key and position size,
# with the checksum computed as pcache_hash (src/server/prompt_cache.c) does.
import os, struct, sys

M = (1 << 64) - 1
KEY, POS_BYTES, SEED = 0x1234567890ABCDEF, 64, 0x736C6F74736176

def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & M
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M
    return x ^ (x >> 31)

def phash(h, b):
    i, n = 0, len(b)
    while i + 8 <= n:
        h = splitmix(h ^ int.from_bytes(b[i:i + 8], "little"))
        i += 8
    v = int.from_bytes(b[i:] + bytes(8 - (n - i)), "little")
    return splitmix(h ^ v ^ ((n - i) << 56))

def slot_file(n):
    toks = struct.pack(f"<{n}i", *[(i * 7 + 3) % 500 for i in range(n)])
    data = bytes((i * 13) & 0xFF for i in range(n * POS_BYTES))
    h = phash(SEED, toks)
    for p0 in range(0, n, 32):
        h = phash(h, data[p0 * POS_BYTES:min(n, p0 + 32) * POS_BYTES])
    return b"GROKSLT\0" + struct.pack("<IIQQQQ", 1, n // 2, KEY, POS_BYTES, n, h) + toks + data

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "seed_slot_file")
os.makedirs(out, exist_ok=True)
for n in (0, 5, 40):
    open(os.path.join(out, f"valid_{n}"), "wb").write(slot_file(n))
