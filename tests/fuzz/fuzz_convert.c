/* fuzz_convert.c - libFuzzer target for grok convert's input readers: the
 * first input byte picks the reader, the rest is the input.
 *   even: pickle_scan on the bytes (every payload must lie inside them);
 *   odd:  the Grok-2 tokenizer (byte-level BPE, grok-2 pre-tokenizer) of a
 *         small synthetic vocabulary encodes the bytes and decodes the ids.
 *
 *   cmake -DGROK_FUZZ=ON ... && ./fuzz_convert -max_total_time=60 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pickle.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static Tokenizer *g_tok; /* made once (fuzzer-only state) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const int which = data[0] & 1;
    data++, size--;
    uint8_t *buf = malloc(size ? size : 1); /* exact size: reads past the end are caught */
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    Error err;
    if (which == 0) {
        PickleScan s;
        if (pickle_scan(buf, size, &s, &err) == 0) {
            for (int i = 0; i < s.n_blobs; i++)
                if (s.blobs[i].offset + s.blobs[i].size > size) abort();
            pickle_scan_free(&s);
        } else if (err.msg[0] == 0) {
            abort();
        }
    } else {
        if (!g_tok && !(g_tok = tokenizer_synthetic_gpt2(2000, &err))) abort();
        const Tokenizer *t = g_tok;
        int *ids = NULL;
        int n = tokenizer_encode(t, (const char *)buf, size, false, &ids, &err);
        if (n < 0) abort();
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= tokenizer_n_vocab(t)) abort();
        char *text = tokenizer_decode(t, ids, n);
        free(text);
        free(ids);
    }
    free(buf);
    return 0;
}
