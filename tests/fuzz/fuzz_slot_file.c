/* fuzz_slot_file.c - libFuzzer target for grok serve's slot files
 * (POST /slots/{id}?action=restore): arbitrary bytes through
 * slot_file_read, as a restore streams a file; every chunk handed to the
 * sink is read to its end so that ASan sees an out-of-bounds buffer. The
 * spec (model key, position size, context, vocabulary) is the one the seed
 * files carry (tests/fuzz/make_seed_slot_file.py writes them). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slots.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_KEY 0x1234567890abcdefull
#define FUZZ_POS_BYTES 64
#define FUZZ_CTX 256
#define FUZZ_VOCAB 512

typedef struct {
    const uint8_t *p;
    size_t n, off;
} Mem;

static size_t mem_read(void *ctx, void *dst, size_t n) {
    Mem *m = ctx;
    const size_t k = m->n - m->off < n ? m->n - m->off : n;
    memcpy(dst, m->p + m->off, k);
    m->off += k;
    return k;
}

static volatile uint64_t g_sink;

static int sink(void *ctx, int p0, int p1, const void *kv) {
    int *next = ctx;
    if (p0 != *next || p1 <= p0 || p1 - p0 > SLOT_CHUNK || p1 > FUZZ_CTX) abort(); /* chunks in order, in range */
    const uint8_t *b = kv;
    uint64_t acc = 0;
    for (size_t i = 0; i < (size_t)(p1 - p0) * FUZZ_POS_BYTES; i++) acc += b[i];
    g_sink += acc;
    *next = p1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int tokens[FUZZ_CTX];
    static uint8_t chunk[SLOT_CHUNK * FUZZ_POS_BYTES];
    const SlotFileSpec sp = {FUZZ_KEY, FUZZ_POS_BYTES, FUZZ_CTX, FUZZ_VOCAB};
    Mem m = {data, size, 0};
    int next = 0;
    const char *why = NULL;
    SlotFileHeader h;
    const int n = slot_file_read(&sp, mem_read, &m, sink, &next, tokens, chunk, &h, &why);
    if (n >= 0) {
        /* all positions delivered, the whole file consumed, a consistent header */
        if (next != n || m.off != size || h.n_tokens != (uint64_t)n || h.n_exact > h.n_tokens) abort();
        for (int i = 0; i < n; i++)
            if (tokens[i] < 0 || tokens[i] >= FUZZ_VOCAB) abort();
    } else if (!why || !why[0]) {
        abort(); /* a rejection always says why */
    }
    return 0;
}
