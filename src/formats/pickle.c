/* pickle.c - see pickle.h. Opcodes and argument formats are those of
 * Python's pickle protocol (Lib/pickletools.py documents them). */
#include "pickle.h"

#include <stdlib.h>
#include <string.h>

enum { ARG_NONE, ARG_U8, ARG_U16, ARG_U32, ARG_U64, ARG_LEN1, ARG_LEN4, ARG_LEN8, ARG_LINE, ARG_LINE2 };

/* Argument format of each opcode, -1 for bytes that are not opcodes. */
static int arg_kind(uint8_t op) {
    switch (op) {
    /* no argument */
    case '(': case '.': case '0': case '1': case '2': case 'N': case 'R': case 'a': case 'b': case 'd':
    case '}': case 'e': case 'l': case ']': case 'o': case 's': case 't': case ')': case 'u': case 'Q':
    case 0x81: case 0x85: case 0x86: case 0x87: case 0x88: case 0x89: case 0x8f: case 0x90: case 0x91:
    case 0x92: case 0x93: case 0x94: case 0x97: case 0x98:
        return ARG_NONE;
    case 'K': case 'h': case 'q': case 0x82: case 0x80: return ARG_U8;   /* BININT1 BINGET BINPUT EXT1 PROTO */
    case 'M': case 0x83: return ARG_U16;                                 /* BININT2 EXT2 */
    case 'J': case 'j': case 'r': case 0x84: return ARG_U32;             /* BININT LONG_BINGET LONG_BINPUT EXT4 */
    case 'G': case 0x95: return ARG_U64;                                 /* BINFLOAT FRAME */
    case 'U': case 0x8c: case 'C': case 0x8a: return ARG_LEN1;           /* SHORT_BINSTRING SHORT_BINUNICODE SHORT_BINBYTES LONG1 */
    case 'T': case 'X': case 'B': case 0x8b: return ARG_LEN4;            /* BINSTRING BINUNICODE BINBYTES LONG4 */
    case 0x8d: case 0x8e: case 0x96: return ARG_LEN8;                    /* BINUNICODE8 BINBYTES8 BYTEARRAY8 */
    case 'I': case 'L': case 'F': case 'S': case 'V': case 'g': case 'p': case 'P': return ARG_LINE;
    case 'c': case 'i': return ARG_LINE2;                                /* GLOBAL INST: module\nname\n */
    default: return -1;
    }
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

int pickle_scan(const uint8_t *buf, uint64_t size, PickleScan *out, Error *err) {
    memset(out, 0, sizeof *out);
    int cap = 0;
    uint64_t pos = 0, at = 0;
    uint8_t op = 0;
    while (pos < size) {
        at = pos;
        op = buf[pos++];
        const int kind = arg_kind(op);
        uint64_t len = 0;
        switch (kind) {
        case ARG_NONE: break;
        case ARG_U8: len = 1; break;
        case ARG_U16: len = 2; break;
        case ARG_U32: len = 4; break;
        case ARG_U64: len = 8; break;
        case ARG_LEN1:
        case ARG_LEN4:
        case ARG_LEN8: {
            const int n = kind == ARG_LEN1 ? 1 : kind == ARG_LEN4 ? 4 : 8;
            if (size - pos < (uint64_t)n) goto truncated;
            len = le(buf + pos, n);
            pos += (uint64_t)n;
            break;
        }
        case ARG_LINE:
        case ARG_LINE2: {
            for (int k = 0; k < (kind == ARG_LINE ? 1 : 2); k++) {
                const uint8_t *nl = memchr(buf + pos, '\n', (size_t)(size - pos));
                if (!nl) goto truncated;
                pos = (uint64_t)(nl - buf) + 1;
            }
            break;
        }
        default:
            pickle_scan_free(out);
            return err_set(err, "unknown pickle opcode 0x%02x at offset %llu", op, (unsigned long long)at);
        }
        if (len > size - pos) goto truncated;
        if (op == 0x80) out->protocol = buf[pos];
        if (op == 0x97) {
            pickle_scan_free(out);
            return err_set(err, "pickle uses an out-of-band buffer (NEXT_BUFFER at offset %llu)",
                           (unsigned long long)at);
        }
        if (op == 'B' || op == 'C' || op == 0x8e || op == 0x96) {
            if (out->n_blobs == cap) {
                int nc = cap ? cap * 2 : 8;
                PickleBlob *nb = realloc(out->blobs, (size_t)nc * sizeof *nb);
                if (!nb) {
                    pickle_scan_free(out);
                    return err_set(err, "out of memory");
                }
                out->blobs = nb;
                cap = nc;
            }
            out->blobs[out->n_blobs++] = (PickleBlob){pos, len, op};
        }
        pos += len;
        if (op == '.') { /* STOP */
            out->end = pos;
            if (pos != size) {
                pickle_scan_free(out);
                return err_set(err, "%llu bytes of data after the pickle's STOP at offset %llu",
                               (unsigned long long)(size - pos), (unsigned long long)at);
            }
            return 0;
        }
    }
    pickle_scan_free(out);
    return err_set(err, "the pickle ends without STOP (truncated file?)");
truncated:
    pickle_scan_free(out);
    return err_set(err, "pickle truncated in the argument of opcode 0x%02x at offset %llu (file of %llu bytes)", op,
                   (unsigned long long)at, (unsigned long long)size);
}

void pickle_scan_free(PickleScan *s) {
    if (!s) return;
    free(s->blobs);
    s->blobs = NULL;
    s->n_blobs = 0;
}

int pickle_blob_is_placeholder(const uint8_t *buf, const PickleBlob *b) {
    return b->size == 1 && buf[b->offset] == 'b';
}
