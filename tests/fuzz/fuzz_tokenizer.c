/* fuzz_tokenizer.c - libFuzzer target for the tokenizer.
 *
 * The first byte picks the mode:
 *   odd:  the rest is a SentencePiece .model protobuf; if it loads, encode a
 *         short fixed string and the first bytes of the input, decode them.
 *   even: the rest is text, encoded with the real Grok-1 tokenizer (from
 *         $GROK_TOKENIZER_MODEL, else ../shared/models/grok-1/tokenizer.model
 *         relative to the working directory, else tokenizer_synthetic(4096)),
 *         then decoded with the streaming decoder and with tokenizer_decode,
 *         which must agree; for valid UTF-8 input without U+2581 the decoded
 *         text must equal the input.
 *
 * Build: make fuzz (CMake, -DGROK_FUZZ=ON) or by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc \
 *     -Isrc/formats -Isrc/text -Isrc/engine/cpu tests/fuzz/fuzz_tokenizer.c src/common.c src/formats/gguf.c \
 *     src/engine/cpu/quant*.c src/text/tokenizer.c src/text/tokenizer_bpe.c src/text/unicode_table.c -lm
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static Tokenizer *g_tok; /* loaded once (fuzzer-only state) */

static const Tokenizer *real_tokenizer(void) {
    if (g_tok) return g_tok;
    Error err = {{0}};
    const char *path = getenv("GROK_TOKENIZER_MODEL");
    if (path) g_tok = tokenizer_from_spm_file(path, &err);
    if (!g_tok) g_tok = tokenizer_from_spm_file("../shared/models/grok-1/tokenizer.model", &err);
    if (!g_tok) g_tok = tokenizer_synthetic(4096, &err);
    if (!g_tok) {
        fprintf(stderr, "fuzz_tokenizer: no tokenizer: %s\n", err.msg);
        abort();
    }
    return g_tok;
}

/* Streaming decode must equal tokenizer_decode. */
static void check_decode(const Tokenizer *t, const int *ids, int n, const uint8_t *text, size_t len,
                         int check_text) {
    char *whole = tokenizer_decode(t, ids, n);
    if (!whole) return; /* out of memory */
    size_t whole_len = strlen(whole);
    size_t cap = (size_t)n * 64 + 64, len_s = 0;
    char *s = malloc(cap);
    if (!s) {
        free(whole);
        return;
    }
    TokenDecoder d;
    token_decoder_init(&d);
    char buf[256];
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        size_t k = token_decoder_push(t, &d, ids[i], buf, sizeof buf);
        if (k >= sizeof buf || buf[k] != '\0') abort();
        if (len_s + k + 16 > cap) ok = 0; /* a piece longer than the buffer: truncated, skip the check */
        else {
            memcpy(s + len_s, buf, k);
            len_s += k;
        }
    }
    if (ok) {
        size_t k = token_decoder_flush(&d, buf, sizeof buf);
        memcpy(s + len_s, buf, k);
        len_s += k;
        /* NUL bytes in the text end the C string of tokenizer_decode */
        if (memchr(s, '\0', len_s) == NULL && (len_s != whole_len || memcmp(s, whole, len_s) != 0)) {
            fprintf(stderr, "streaming decode differs from tokenizer_decode\n");
            abort();
        }
        if (check_text && memchr(text, '\0', len) == NULL && (whole_len != len || memcmp(whole, text, len) != 0)) {
            fprintf(stderr, "decode(encode(x)) != x for valid UTF-8\n");
            abort();
        }
    }
    free(s);
    free(whole);
}

/* Valid UTF-8 by SentencePiece's rules and without U+2581 (which decodes as
 * a space): such text must survive encode + decode unchanged. */
static int plain_utf8(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t l;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            l = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            l = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            l = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i < l) return 0;
        for (size_t k = 1; k < l; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[l] || (cp >= 0xD800 && cp < 0xE000) || cp > 0x10FFFF || cp == 0x2581) return 0;
        i += l;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    Error err = {{0}};
    if (mode & 1) {
        Tokenizer *t = tokenizer_from_spm_memory(data, size, &err);
        if (!t) {
            if (!err.msg[0]) abort(); /* failures must say why */
            return 0;
        }
        static const char fixed[] = "Hello  world\t12 <sep> \xe4\xb8\xad\xff\xc3 end ";
        const char *texts[2] = {fixed, (const char *)data};
        size_t lens[2] = {sizeof fixed - 1, size < 48 ? size : 48};
        for (int k = 0; k < 2; k++) {
            int *ids = NULL;
            int n = tokenizer_encode(t, texts[k], lens[k], k == 0, &ids, &err);
            if (n >= 0) {
                for (int i = 0; i < n; i++)
                    if (ids[i] < 0 || ids[i] >= tokenizer_n_vocab(t)) abort();
                check_decode(t, ids, n, NULL, 0, 0);
            }
            free(ids);
        }
        tokenizer_free(t);
        return 0;
    }
    const Tokenizer *t = real_tokenizer();
    int *ids = NULL;
    int n = tokenizer_encode(t, (const char *)data, size, false, &ids, &err);
    if (n < 0) abort(); /* any bytes must encode */
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tokenizer_n_vocab(t)) abort();
    check_decode(t, ids, n, data, size, plain_utf8(data, size));
    free(ids);
    return 0;
}
