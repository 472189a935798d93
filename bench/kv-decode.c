/* kv-decode.c - decode speed after DEPTH tokens of context for every KV
 * cache type, in CPU time of one thread (this shared VM's wall-clock
 * figures swing with the other jobs' load; CPU time leaves out the time the
 * process waits for a core). The cache is filled with synthetic keys and
 * values (context_kv_write) instead of computing DEPTH tokens: decode speed
 * does not depend on what the cache holds. Prints | type | KV MiB | tok/s |,
 * best of ROUNDS, types alternating.
 *
 *   make && build/bench-kv-decode MODEL.gguf DEPTH [ROUNDS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"
#include "kv.h"
#include "model.h"
#include "quant.h"

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: kv-decode MODEL.gguf DEPTH [ROUNDS]\n");
        return 2;
    }
    const int depth = atoi(argv[2]), rounds = argc > 3 ? atoi(argv[3]) : 3, n_gen = 16;
    Error err;
    Model *m = model_load(argv[1], &err);
    if (!m || depth < 0 || rounds < 1) {
        fprintf(stderr, "kv-decode: %s\n", m ? "bad DEPTH or ROUNDS" : err.msg);
        return 1;
    }
    static const char *const names[] = {"f16", "q8_0", "q4_0", "bf16", "f32"};
    static const uint32_t types[] = {GGML_TYPE_F16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_BF16, GGML_TYPE_F32};
    double best[5] = {1e30, 1e30, 1e30, 1e30, 1e30};
    size_t kv_bytes[5] = {0};
    const int L = m->cfg.n_layer, G = m->cfg.n_head_kv, hd = m->cfg.head_dim;
    float *logits = malloc(sizeof(float) * (size_t)m->cfg.n_vocab), *row = malloc(sizeof(float) * (size_t)hd);
    if (!logits || !row) return 1;
    for (int r = 0; r < rounds; r++)
        for (int t = 0; t < 5; t++) {
            ContextParams cp = {depth + n_gen + 8, 1, 512, 1, types[t], types[t], GROK_DEVICE_CPU, 0, NULL};
            Context *c = context_new(m, &cp, &err);
            if (!c) {
                fprintf(stderr, "kv-decode: %s\n", err.msg);
                return 1;
            }
            kv_bytes[t] = context_kv_bytes(c);
            if (depth > 0) { /* layer by layer, head by head: keys then values (context_kv_write's order) */
                const size_t hb = kv_row_bytes(types[t], hd);
                uint8_t *buf = malloc((size_t)L * G * 2 * depth * hb), *p = buf;
                if (!buf) return 1;
                for (int l = 0; l < L; l++)
                    for (int g = 0; g < G; g++)
                        for (int s = 0; s < 2; s++)
                            for (int j = 0; j < depth; j++, p += hb) {
                                for (int i = 0; i < hd; i++)
                                    row[i] = (float)((j * 131 + i * 17 + l * 7 + g * 3 + s) % 199 - 99) / 99.0f;
                                kv_quantize(types[t], row, p, hd);
                            }
                if (context_kv_write(c, 0, 0, depth, buf, &err)) return 1;
                free(buf);
            }
            int tok = 5;
            forward_tokens(c, 0, &tok, 1, depth, logits, false, &err); /* warm-up */
            const double t0 = cpu_seconds();
            for (int i = 0; i < n_gen; i++) {
                tok = (i * 97 + 3) % m->cfg.n_vocab;
                if (forward_tokens(c, 0, &tok, 1, depth + 1 + i, logits, false, &err)) return 1;
            }
            const double dt = cpu_seconds() - t0;
            if (dt < best[t]) best[t] = dt;
            context_free(c);
        }
    printf("| KV | MiB | tok/s after %d tokens (1 thread, CPU time) |\n| :-- | --: | --: |\n", depth);
    for (int t = 0; t < 5; t++) printf("| %s | %.1f | %.2f |\n", names[t], kv_bytes[t] / 1048576.0, n_gen / best[t]);
    free(logits), free(row);
    model_free(m);
    return 0;
}
