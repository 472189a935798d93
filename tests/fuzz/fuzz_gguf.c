/* fuzz_gguf.c - libFuzzer target for the GGUF reader: parse arbitrary bytes
 * with gguf_open_memory and, when they are accepted, touch every kv value and
 * every byte of every tensor so that ASan sees any out-of-bounds pointer.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc \
 *       src/common.c src/engine/cpu/quant.c src/formats/gguf.c tests/fuzz/fuzz_gguf.c -lm
 *   ./a.out -max_total_time=60 tests/fuzz/seed_gguf */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t g_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exact-size copy, so that any read past the end is caught */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);

    Error err;
    GGUFFile *f = gguf_open_memory(buf, size, &err);
    if (!f) {
        /* every failure must come with a message */
        if (err.msg[0] == 0) abort();
        free(buf);
        return 0;
    }
    uint64_t acc = gguf_version(f) + gguf_alignment(f) + (uint64_t)gguf_n_files(f) + gguf_total_size(f);
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const GGUFKV *kv = gguf_kv(f, i);
        if (gguf_find_kv(f, kv->key) != kv) abort();
        acc += strlen(kv->key) + (uint64_t)kv->type + kv->num.u64;
        if (kv->type == GGUF_TYPE_STRING && kv->str.len) acc += (uint8_t)kv->str.data[kv->str.len - 1];
        if (kv->type == GGUF_TYPE_ARRAY) {
            if (kv->arr_type == GGUF_TYPE_STRING) {
                for (uint64_t j = 0; j < kv->arr_n; j++) {
                    const GGUFString *s = &kv->arr_str[j];
                    if (s->len) acc += (uint8_t)s->data[0] + (uint8_t)s->data[s->len - 1];
                }
            } else {
                for (uint64_t j = 0; j < kv->arr_n; j++) {
                    double d = gguf_arr_f64(kv, j);
                    acc += (uint64_t)gguf_arr_i64(kv, j) + (d == d ? 1u : 0u);
                }
            }
        }
        uint32_t u32;
        float f32;
        bool b;
        GGUFString s;
        acc += (uint64_t)(gguf_get_u32(f, kv->key, &u32, &err) + gguf_get_f32(f, kv->key, &f32, &err) +
                          gguf_get_bool(f, kv->key, &b, &err) + gguf_get_str(f, kv->key, &s, &err) + 8);
    }
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const GGUFTensor *t = gguf_tensor(f, i);
        if (gguf_find_tensor(f, t->name) != t) abort();
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) abort();
        const uint8_t *p = t->data;
        if (t->nbytes && (p < buf || p + t->nbytes > buf + size)) abort();
        for (uint64_t j = 0; j < t->nbytes; j++) acc += p[j];
        acc += (uint64_t)t->ne[0] + t->type + t->offset;
    }
    g_sink = acc;
    gguf_close(f);
    free(buf);
    return 0;
}
