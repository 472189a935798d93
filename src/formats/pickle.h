/* pickle.h - a minimal Python pickle opcode scanner (protocols 0-5), enough
 * to read the official Grok-1 checkpoint (../shared/docs/grok-architecture.md
 * A3) without Python: it walks the opcodes of one pickle, never builds
 * objects, and reports where the raw byte payloads (BINBYTES, SHORT_BINBYTES,
 * BINBYTES8, BYTEARRAY8) lie in the buffer, in order. A numpy array pickles
 * its data as one such payload (plus a 1-byte b'b' placeholder in the
 * arguments of numpy's _reconstruct), so a file holding an fp32 array has one
 * data payload and a QuantizedWeight8bit(weight, scales) has two.
 *
 * Every opcode's argument is bounds-checked; an opcode that is not in the
 * pickle specification is an error naming its byte and offset, as are a
 * truncated argument, data after STOP, and out-of-band buffers (protocol 5
 * NEXT_BUFFER, whose data is not in the file). */
#ifndef GROK_PICKLE_H
#define GROK_PICKLE_H

#include <stdint.h>

#include "common.h"

typedef struct {
    uint64_t offset;  /* of the payload's first byte in the buffer */
    uint64_t size;
    uint8_t opcode;   /* 'B' BINBYTES, 'C' SHORT_BINBYTES, 0x8e BINBYTES8, 0x96 BYTEARRAY8 */
} PickleBlob;

typedef struct {
    PickleBlob *blobs; /* malloc'd */
    int n_blobs;
    int protocol;      /* from PROTO, 0 if absent */
    uint64_t end;      /* offset just past STOP */
} PickleScan;

/* Scans the pickle in buf[0..size). Returns 0, or -1 with a message. */
int pickle_scan(const uint8_t *buf, uint64_t size, PickleScan *out, Error *err);
void pickle_scan_free(PickleScan *s);

/* True if the blob is numpy's _reconstruct placeholder (the 1-byte b'b'),
 * not array data. */
int pickle_blob_is_placeholder(const uint8_t *buf, const PickleBlob *b);

#endif
