/* fuzz_prompt_cache.c - libFuzzer target for the prompt cache's block
 * files (grok serve --cache-dir): arbitrary bytes through
 * pcache_parse_block, as the disk tier reads a file; an accepted block's
 * data is read to its end so that ASan sees any out-of-bounds pointer. The
 * cache is made for a model key and block size that fuzz inputs built from
 * the seed (tests/fuzz/seed_prompt_cache) carry. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prompt_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_KEY 0x1234567890abcdefull
#define FUZZ_POS_BYTES 64 /* a block of 32 positions: 2 KiB */

static volatile uint64_t g_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static PromptCache *pc;
    if (!pc) {
        Error err;
        pc = pcache_new(1 << 20, NULL, FUZZ_KEY, FUZZ_POS_BYTES, &err);
        if (!pc) abort();
    }
    uint8_t *buf = malloc(size ? size : 1); /* an exact-size copy: reads past the end are caught */
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    const char *why = NULL;
    const uint8_t *d = pcache_parse_block(pc, buf, size, 0, 0, NULL, &why);
    if (d) {
        uint64_t acc = 0;
        for (size_t i = 0; i < (size_t)FUZZ_POS_BYTES * PCACHE_BLOCK; i++) acc += d[i];
        g_sink += acc;
    } else if (!why || !why[0]) {
        abort(); /* a rejection always says why */
    }
    free(buf);
    return 0;
}
