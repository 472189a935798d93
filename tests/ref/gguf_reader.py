"""Minimal GGUF v3 reader (numpy only), written from the format description in
shared/docs/gguf-and-llamacpp.md section 3. Independent of grok.c's C loader.

    r = GGUFReader("model.gguf")
    r.metadata["grok.embedding_length"]      # scalars, strings, lists (arrays)
    r.tensors["blk.0.attn_q.weight"]         # TensorInfo(name, ne, type, offset)
    r.array("token_embd.weight")             # float64 numpy array, shape = reversed(ne)
    r.q8_0_blocks("blk.0.attn_q.weight")     # (d float32 [rows, nb], qs int8 [rows, nb, 32])

Supported tensor types for decoding: F32, F16, BF16, Q8_0 (and F64/I8/I16/I32 for
completeness). ggml shapes are `ne` (innermost first); numpy arrays use the
reversed order, row-major, so ne=[n_in, n_out] becomes an array of shape
(n_out, n_in).
"""
import struct
import sys
from collections import namedtuple

import numpy as np

GGUF_MAGIC = b"GGUF"

# metadata value types
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, \
    T_STRING, T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = range(13)

_SCALAR_FMT = {
    T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h",
    T_UINT32: "<I", T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?",
    T_UINT64: "<Q", T_INT64: "<q", T_FLOAT64: "<d",
}
_SCALAR_NP = {
    T_UINT8: "<u1", T_INT8: "<i1", T_UINT16: "<u2", T_INT16: "<i2",
    T_UINT32: "<u4", T_INT32: "<i4", T_FLOAT32: "<f4", T_BOOL: "<u1",
    T_UINT64: "<u8", T_INT64: "<i8", T_FLOAT64: "<f8",
}

# ggml tensor types: id -> (name, block_size, bytes_per_block)
GGML_F32, GGML_F16, GGML_Q8_0, GGML_BF16 = 0, 1, 8, 30
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
    28: ("F64", 1, 8), 30: ("BF16", 1, 2),
}

TensorInfo = namedtuple("TensorInfo", "name ne type offset")


class GGUFError(Exception):
    pass


class GGUFReader:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0
        self.metadata = {}
        self.metadata_types = {}
        self.metadata_array_types = {}
        self.tensors = {}
        self.tensor_order = []
        self._parse()

    # ---- low-level readers ----
    def _read(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GGUFError("truncated file at offset %d" % self.pos)
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return v

    def _read_str(self):
        n = self._read("<Q")
        if self.pos + n > len(self.buf):
            raise GGUFError("string length %d past end of file" % n)
        s = self.buf[self.pos:self.pos + n]
        self.pos += n
        return s.decode("utf-8", errors="replace")

    def _read_value(self, vtype):
        if vtype == T_STRING:
            return self._read_str()
        if vtype == T_ARRAY:
            etype = self._read("<i")
            n = self._read("<Q")
            self._last_array_type = etype
            if etype == T_STRING:
                return [self._read_str() for _ in range(n)]
            if etype == T_ARRAY:
                return [self._read_value(T_ARRAY) for _ in range(n)]
            if etype not in _SCALAR_NP:
                raise GGUFError("bad array element type %d" % etype)
            dt = np.dtype(_SCALAR_NP[etype])
            nbytes = dt.itemsize * n
            if self.pos + nbytes > len(self.buf):
                raise GGUFError("array past end of file")
            a = np.frombuffer(self.buf, dtype=dt, count=n, offset=self.pos)
            self.pos += nbytes
            if etype == T_BOOL:
                a = a.astype(bool)
            return a.tolist()
        if vtype not in _SCALAR_FMT:
            raise GGUFError("bad value type %d" % vtype)
        return self._read(_SCALAR_FMT[vtype])

    # ---- structure ----
    def _parse(self):
        if self.buf[:4] != GGUF_MAGIC:
            raise GGUFError("not a GGUF file (magic %r)" % self.buf[:4])
        self.pos = 4
        self.version = self._read("<I")
        if self.version != 3:
            raise GGUFError("unsupported GGUF version %d" % self.version)
        n_tensors = self._read("<q")
        n_kv = self._read("<q")
        for _ in range(n_kv):
            key = self._read_str()
            vtype = self._read("<i")
            self.metadata[key] = self._read_value(vtype)
            self.metadata_types[key] = vtype
            if vtype == T_ARRAY:
                self.metadata_array_types[key] = self._last_array_type
        for _ in range(n_tensors):
            name = self._read_str()
            n_dims = self._read("<I")
            ne = [self._read("<q") for _ in range(n_dims)]
            ttype = self._read("<i")
            off = self._read("<Q")
            if ttype not in GGML_TYPES:
                raise GGUFError("tensor %s: unknown ggml type %d" % (name, ttype))
            self.tensors[name] = TensorInfo(name, ne, ttype, off)
            self.tensor_order.append(name)
        self.alignment = int(self.metadata.get("general.alignment", 32))
        if self.alignment <= 0 or self.alignment & (self.alignment - 1):
            raise GGUFError("bad alignment %d" % self.alignment)
        a = self.alignment
        self.data_offset = (self.pos + a - 1) // a * a
        for t in self.tensors.values():
            end = self.data_offset + t.offset + self.nbytes(t)
            if end > len(self.buf):
                raise GGUFError("tensor %s data past end of file" % t.name)

    @staticmethod
    def nbytes(t):
        _, bs, bb = GGML_TYPES[t.type]
        n = 1
        for d in t.ne:
            n *= d
        if t.ne and t.ne[0] % bs:
            raise GGUFError("tensor %s: ne[0]=%d not a multiple of block %d" % (t.name, t.ne[0], bs))
        return n // bs * bb

    def type_name(self, name):
        return GGML_TYPES[self.tensors[name].type][0]

    def raw(self, name):
        t = self.tensors[name]
        start = self.data_offset + t.offset
        return self.buf[start:start + self.nbytes(t)]

    def shape(self, name):
        return tuple(reversed(self.tensors[name].ne))

    def array(self, name):
        """Dequantized tensor as float64, numpy shape = reversed(ne)."""
        t = self.tensors[name]
        raw = self.raw(name)
        shape = self.shape(name)
        n = int(np.prod(shape)) if shape else 1
        if t.type == GGML_F32:
            a = np.frombuffer(raw, dtype="<f4", count=n).astype(np.float64)
        elif t.type == GGML_F16:
            a = np.frombuffer(raw, dtype="<f2", count=n).astype(np.float64)
        elif t.type == GGML_BF16:
            u = np.frombuffer(raw, dtype="<u2", count=n).astype(np.uint32) << 16
            a = u.view(np.float32).astype(np.float64)
        elif t.type == GGML_Q8_0:
            d, qs = self.q8_0_blocks(name)
            a = (d.astype(np.float64)[..., None] * qs.astype(np.float64)).reshape(-1)
        elif t.type == 28:
            a = np.frombuffer(raw, dtype="<f8", count=n).astype(np.float64)
        elif t.type in (24, 25, 26, 27):
            dt = {24: "<i1", 25: "<i2", 26: "<i4", 27: "<i8"}[t.type]
            a = np.frombuffer(raw, dtype=dt, count=n).astype(np.float64)
        else:
            raise GGUFError("tensor %s: type %s not supported by this reader"
                            % (name, GGML_TYPES[t.type][0]))
        return a.reshape(shape)

    def q8_0_blocks(self, name):
        """Q8_0 tensor as (d, qs): d float32 of shape (rows..., ne0/32) holding the
        fp16 scales, qs int8 of shape (rows..., ne0/32, 32)."""
        t = self.tensors[name]
        if t.type != GGML_Q8_0:
            raise GGUFError("tensor %s is not Q8_0" % name)
        raw = self.raw(name)
        blk = np.dtype([("d", "<f2"), ("qs", "i1", (32,))])
        nb = len(raw) // 34
        b = np.frombuffer(raw, dtype=blk, count=nb)
        lead = tuple(reversed(t.ne[1:]))
        shape = lead + (t.ne[0] // 32,)
        return b["d"].astype(np.float32).reshape(shape), b["qs"].reshape(shape + (32,))


def _enc_value(vtype, v, etype=None):
    if vtype == T_STRING:
        b = v.encode("utf-8")
        return struct.pack("<Q", len(b)) + b
    if vtype == T_ARRAY:
        if etype == T_STRING:
            return struct.pack("<iQ", etype, len(v)) + b"".join(_enc_value(T_STRING, x) for x in v)
        if etype == T_ARRAY:
            raise GGUFError("nested arrays are not supported by the writer")
        return struct.pack("<iQ", etype, len(v)) + np.asarray(v).astype(_SCALAR_NP[etype]).tobytes()
    return struct.pack(_SCALAR_FMT[vtype], v)


def rewrite_metadata(src_path, dst_path, set_keys=None, drop_keys=()):
    """Copy a GGUF file, changing metadata only: set_keys = {key: (vtype, value)}
    (vtype one of T_UINT32, T_FLOAT32, T_STRING, ...), drop_keys = keys to remove.
    Tensor infos and data are copied unchanged (offsets are relative to the data start).
    Test helper: exercises keys (defaults, caps, rope base) that `grok new` does not vary."""
    r = GGUFReader(src_path)
    set_keys = dict(set_keys or {})
    kv = []
    for k, v in r.metadata.items():
        if k in drop_keys:
            continue
        if k in set_keys:
            t, v2 = set_keys.pop(k)
            kv.append((k, t, v2, None))
        else:
            kv.append((k, r.metadata_types[k], v, r.metadata_array_types.get(k)))
    for k, (t, v) in set_keys.items():
        kv.append((k, t, v, None))
    out = bytearray(GGUF_MAGIC + struct.pack("<Iqq", 3, len(r.tensor_order), len(kv)))
    for k, t, v, et in kv:
        out += _enc_value(T_STRING, k) + struct.pack("<i", t) + _enc_value(t, v, et)
    for name in r.tensor_order:
        t = r.tensors[name]
        out += _enc_value(T_STRING, name) + struct.pack("<I", len(t.ne))
        out += b"".join(struct.pack("<q", n) for n in t.ne) + struct.pack("<iQ", t.type, t.offset)
    a = r.alignment
    out += b"\0" * ((-len(out)) % a)
    with open(dst_path, "wb") as f:
        f.write(out)
        f.write(r.buf[r.data_offset:])


def main(argv):
    if len(argv) < 2:
        print("usage: gguf_reader.py FILE.gguf")
        return 2
    r = GGUFReader(argv[1])
    print("GGUF v%d, %d kv, %d tensors, alignment %d, data at %d"
          % (r.version, len(r.metadata), len(r.tensors), r.alignment, r.data_offset))
    for k, v in r.metadata.items():
        if isinstance(v, list) and len(v) > 8:
            v = "[%s, ... (%d items)]" % (", ".join(repr(x) for x in v[:4]), len(v))
        print("  %-45s %s" % (k, v))
    for name in r.tensor_order:
        t = r.tensors[name]
        print("  %-40s %-5s ne=%s off=%d" % (name, GGML_TYPES[t.type][0], t.ne, t.offset))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
