/* test_forward.c - the forward pass is consistent with itself: a prompt in
 * one batch or token by token, 1 or 2 threads, one sequence or two
 * interleaved in a batch; f16 KV close to f32; bad batches are errors;
 * forward_submit / forward_collect in one process are forward().
 * (Exactness against the spec is checked by tests/scripts/test_parity_*.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "forward.h"
#include "model.h"
#include "quant.h"
#include "synth.h"
#include "check.h"

static float max_rel_diff(const float *a, const float *b, size_t n) {
    float d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmaxf(d, fabsf(a[i] - b[i]));
        m = fmaxf(m, fabsf(b[i]));
    }
    return d / (m > 0 ? m : 1);
}

static Context *ctx_for(const Model *m, int threads, int batch, int n_seq, uint32_t kv) {
    Error err;
    ContextParams p = {64, n_seq, batch, threads, kv, kv, GROK_DEVICE_CPU, 0, NULL};
    Context *c = context_new(m, &p, &err);
    if (!c) printf("context_new: %s\n", err.msg);
    return c;
}

static void run_model(const char *path, const char *label) {
    Error err;
    Model *m = model_load(path, &err);
    CHECK(m != NULL, "%s: load: %s", label, m ? "" : err.msg);
    if (!m) return;
    enum { N = 19 };
    int toks[N];
    for (int i = 0; i < N; i++) toks[i] = (i * 37 + 11) % m->cfg.n_vocab;
    const int V = m->cfg.n_vocab;
    float *batch = malloc(sizeof(float) * N * V), *seq = malloc(sizeof(float) * N * V);
    float *two = malloc(sizeof(float) * N * V), *f16 = malloc(sizeof(float) * N * V);
    float *inter = malloc(sizeof(float) * 2 * N * V);

    Context *c = ctx_for(m, 1, 512, 1, GGML_TYPE_F32);
    CHECK(forward_tokens(c, 0, toks, N, 0, batch, true, &err) == 0, "%s: batch forward", label);
    context_free(c);

    c = ctx_for(m, 1, 1, 1, GGML_TYPE_F32);
    for (int i = 0; i < N; i++) forward_tokens(c, 0, &toks[i], 1, i, seq + (size_t)i * V, true, &err);
    context_free(c);
    float d = max_rel_diff(seq, batch, (size_t)N * V);
    CHECK(d < 1e-5f, "%s: token by token vs batch: %g", label, d);

    c = ctx_for(m, 2, 7, 1, GGML_TYPE_F32); /* odd batch size: prompt in pieces */
    forward_tokens(c, 0, toks, N, 0, two, true, &err);
    context_free(c);
    d = max_rel_diff(two, batch, (size_t)N * V);
    CHECK(d < 1e-5f, "%s: 2 threads, batch 7 vs 1 thread: %g", label, d);

    c = ctx_for(m, 2, 512, 1, GGML_TYPE_F16);
    forward_tokens(c, 0, toks, N, 0, f16, true, &err);
    context_free(c);
    /* f16 keys/values move scores by ~1e-3. With top-k < experts a near-tie
     * in the router can flip an expert (and all later positions with it),
     * so the closeness check needs a model that uses every expert. */
    if (m->cfg.n_expert_used == m->cfg.n_expert) {
        d = max_rel_diff(f16, batch, (size_t)N * V);
        CHECK(d < 1e-2f, "%s: f16 KV vs f32: %g", label, d);
    }

    /* two sequences interleaved in one batch: seq 1 gets the reversed prompt */
    int itok[2 * N], ipos[2 * N], iseq[2 * N];
    for (int i = 0; i < N; i++) {
        itok[2 * i] = toks[i], ipos[2 * i] = i, iseq[2 * i] = 0;
        itok[2 * i + 1] = toks[N - 1 - i], ipos[2 * i + 1] = i, iseq[2 * i + 1] = 1;
    }
    c = ctx_for(m, 2, 512, 2, GGML_TYPE_F32);
    Batch b = {2 * N, itok, ipos, iseq, NULL};
    CHECK(forward(c, &b, inter, &err) == 0, "%s: interleaved forward", label);
    float worst = 0;
    for (int i = 0; i < N; i++) worst = fmaxf(worst, max_rel_diff(inter + (size_t)(2 * i) * V, batch + (size_t)i * V, V));
    CHECK(worst < 1e-5f, "%s: interleaved sequence 0 vs alone: %g", label, worst);
    /* forward() in two halves (forward_submit / forward_collect): in one
     * process one batch is in flight, kept until collected, with the same
     * bits as forward(); the caller's arrays may change after the submit */
    {
        Context *h = ctx_for(m, 2, 512, 2, GGML_TYPE_F32);
        int ctok[2 * N], cpos[2 * N], cseq[2 * N];
        memcpy(ctok, itok, sizeof ctok), memcpy(cpos, ipos, sizeof cpos), memcpy(cseq, iseq, sizeof cseq);
        float *held = malloc(sizeof(float) * 2 * N * V);
        Batch bc = {2 * N, ctok, cpos, cseq, NULL};
        CHECK(h && forward_depth(h) == 1 && forward_in_flight(h) == 0, "%s: one batch in flight at most", label);
        CHECK(h && forward_submit(h, &bc, &err) == 0 && forward_in_flight(h) == 1, "%s: submit", label);
        CHECK(h && forward_submit(h, &bc, &err) != 0 && strstr(err.msg, "in flight"), "%s: a second submit", label);
        CHECK(h && forward(h, &bc, held, &err) != 0 && strstr(err.msg, "in flight"), "%s: forward while in flight",
              label);
        for (int i = 0; i < 2 * N; i++) ctok[i] = V - 1, cpos[i] = 0, cseq[i] = 0;
        CHECK(h && held && forward_collect(h, held, &err) == 0 && forward_in_flight(h) == 0 &&
                  memcmp(held, inter, sizeof(float) * 2 * N * V) == 0,
              "%s: collect gives forward()'s logits", label);
        CHECK(h && held && forward_collect(h, held, &err) != 0 && strstr(err.msg, "no batch"), "%s: nothing to collect",
              label);
        int bad_tok = V, pos0 = 0;
        Batch bb = {1, &bad_tok, &pos0, NULL, NULL};
        CHECK(h && forward_submit(h, &bb, &err) != 0 && strstr(err.msg, "vocabulary") && forward_in_flight(h) == 0,
              "%s: a bad batch is refused at submit", label);
        free(held);
        context_free(h);
    }
    /* only some rows want logits (the last layer's MoE then runs for those
     * rows alone): their logits are the same bits as with every row */
    {
        bool want[2 * N];
        for (int i = 0; i < 2 * N; i++) want[i] = i % 5 == 3 || i == 2 * N - 1;
        float *some = malloc(sizeof(float) * 2 * N * V);
        context_free(c);
        c = ctx_for(m, 2, 512, 2, GGML_TYPE_F32);
        Batch bs = {2 * N, itok, ipos, iseq, want};
        CHECK(some && forward(c, &bs, some, &err) == 0, "%s: forward with some outputs", label);
        int bad = 0, k = 0;
        for (int i = 0; some && i < 2 * N; i++)
            if (want[i]) bad += memcmp(some + (size_t)k++ * V, inter + (size_t)i * V, sizeof(float) * V) != 0;
        CHECK(some && bad == 0, "%s: logits of the rows that want them differ from the all-rows run in %d rows", label, bad);
        free(some);
        /* no row wants logits: the cache is still filled */
        bool none[2 * N];
        memset(none, 0, sizeof none);
        context_free(c);
        c = ctx_for(m, 2, 512, 2, GGML_TYPE_F32);
        Batch bn = {2 * N - 2, itok, ipos, iseq, none};
        CHECK(forward(c, &bn, NULL, &err) == 0, "%s: forward with no outputs", label);
        float last[2 * 4096];
        Batch bl = {2, itok + 2 * N - 2, ipos + 2 * N - 2, iseq + 2 * N - 2, NULL};
        CHECK(V <= 4096 && forward(c, &bl, last, &err) == 0 &&
                  memcmp(last, inter + (size_t)(2 * N - 2) * V, sizeof(float) * 2 * V) == 0,
              "%s: positions after a batch with no outputs", label);
    }
    /* bad batches */
    int bad_tok = V, pos0 = 0, pos_far = 64, seq_bad = 2;
    Batch b1 = {1, &bad_tok, &pos0, NULL, NULL}, b2 = {1, toks, &pos_far, NULL, NULL}, b3 = {1, toks, &pos0, &seq_bad, NULL};
    CHECK(forward(c, &b1, inter, &err) != 0 && strstr(err.msg, "vocabulary"), "%s: token out of range", label);
    CHECK(forward(c, &b2, inter, &err) != 0 && strstr(err.msg, "context"), "%s: position out of range", label);
    CHECK(forward(c, &b3, inter, &err) != 0 && strstr(err.msg, "sequence"), "%s: bad sequence", label);
    CHECK(forward_tokens(c, 0, toks, N, 60, inter, false, &err) != 0, "%s: prompt past the context", label);
    context_free(c);
    for (size_t i = 0; i < (size_t)N * V; i++)
        if (!isfinite(batch[i])) {
            CHECK(0, "%s: non-finite logit", label);
            break;
        }
    free(batch), free(seq), free(two), free(f16), free(inter);
    model_free(m);
}

int main(void) {
    const char *tmp = getenv("GROK_TMP") ? getenv("GROK_TMP") : "/tmp";
    mkdir(tmp, 0755);
    char path[1024];
    Error err;
    struct {
        const char *label;
        SynthParams p;
    } cfgs[] = {
        {"f32 gqa2 tied", {64, 2, 4, 2, 64, 4, 2, 128, 320, GGML_TYPE_F32, 0, 0, 7, NULL}},
        {"q8_0 mha untied fused", {64, 2, 2, 2, 96, 8, 2, 128, 320, GGML_TYPE_Q8_0, 1, 1, 8, NULL}},
        {"bf16 gqa4", {128, 1, 8, 2, 64, 4, 2, 128, 320, GGML_TYPE_BF16, 0, 0, 9, NULL}},
        {"f16 all experts used", {64, 2, 4, 1, 64, 2, 2, 128, 320, GGML_TYPE_F16, 0, 0, 10, NULL}},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        snprintf(path, sizeof path, "%s/test_forward_%zu.gguf", tmp, i);
        if (synth_write_model(&cfgs[i].p, path, &err)) {
            CHECK(0, "write %s: %s", cfgs[i].label, err.msg);
            continue;
        }
        run_model(path, cfgs[i].label);
        remove(path);
    }
    return check_report("forward");
}
