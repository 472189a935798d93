/* test_kv.c - the quantized KV cache (kv.c): names and rounding; every
 * attention kernel at every SIMD level against the scalar reference and
 * against float64 math on the stored values; and whole-model parity of
 * each KV type with an f32 cache (bounded KL divergence, same greedy
 * tokens) on random models that use every expert (so no router near-tie
 * can flip an expert). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "forward.h"
#include "kv.h"
#include "model.h"
#include "quant.h"
#include "synth.h"
#include "check.h"

static const uint32_t TYPES[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0};
#define N_TYPES 5

static uint64_t rng = 0x243F6A8885A308D3ull;
static float frand(void) { /* -1..1 */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void test_names(void) {
    CHECK(kv_type_parse("q8_0") == GGML_TYPE_Q8_0 && kv_type_parse("Q4_0") == GGML_TYPE_Q4_0 &&
              kv_type_parse("bf16") == GGML_TYPE_BF16 && kv_type_parse("f16") == GGML_TYPE_F16 &&
              kv_type_parse("f32") == GGML_TYPE_F32,
          "kv type names");
    CHECK(kv_type_parse("q4_1") < 0 && kv_type_parse("") < 0 && kv_type_parse(NULL) < 0 && kv_type_parse("q8") < 0,
          "bad kv type names");
    CHECK(!kv_type_ok(GGML_TYPE_Q4_K) && kv_type_ok(GGML_TYPE_Q4_0), "kv_type_ok");
    CHECK(kv_row_bytes(GGML_TYPE_Q8_0, 128) == 4 * 34 && kv_row_bytes(GGML_TYPE_Q4_0, 128) == 4 * 18 &&
              kv_row_bytes(GGML_TYPE_BF16, 128) == 256,
          "row bytes");
}

/* Stored rows come back within half a quantization step; q4_0 follows
 * ggml's reference rounding (the value of largest magnitude is -8 d). */
static void test_rounding(void) {
    enum { N = 256 };
    float x[N], y[N];
    uint8_t buf[N * 4];
    for (int i = 0; i < N; i++) x[i] = frand() * (1 + i % 7);
    for (int t = 0; t < N_TYPES; t++) {
        kv_quantize(TYPES[t], x, buf, N);
        kv_dequantize(TYPES[t], buf, y, N);
        float worst = 0;
        for (int b = 0; b < N / 32; b++) {
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[32 * b + i]));
            const float step = TYPES[t] == GGML_TYPE_Q8_0   ? amax / 127
                               : TYPES[t] == GGML_TYPE_Q4_0 ? amax / 8
                               : TYPES[t] == GGML_TYPE_BF16 ? amax / 128
                               : TYPES[t] == GGML_TYPE_F16  ? amax / 1024
                                                            : 0;
            for (int i = 0; i < 32; i++)
                /* + the fp16 rounding of the block scale: up to |q| d 2^-11 */
                worst = fmaxf(worst, fabsf(y[32 * b + i] - x[32 * b + i]) - (0.57f * step + 1e-7f));
        }
        CHECK(worst <= 0, "%s: stored values within half a step (excess %g)", type_info(TYPES[t])->name, worst);
    }
    float z[32] = {0};
    z[3] = 2.0f, z[5] = -1.0f, z[20] = 1.0f; /* max 2 -> d = -0.25: 2 -> q 0, -1 -> 12, 1 -> 4, 0 -> 8 */
    BlockQ4_0 q;
    kv_quantize(GGML_TYPE_Q4_0, z, &q, 32);
    CHECK(fp16_to_f32(q.d) == -0.25f && (q.qs[3] & 15) == 0 && (q.qs[5] & 15) == 12 && (q.qs[4] >> 4) == 4 &&
              (q.qs[0] & 15) == 8,
          "q4_0 reference rounding");
}

/* kernels at every level against the scalar level and float64 math */
static void test_kernels(void) {
#if defined(__aarch64__)
    CHECK(quant_simd_supported(SIMD_NEON), "aarch64: the NEON kernels are tested");
#endif
    const int dims[] = {32, 64, 96, 128, 256};
    enum { NR = 37, MAXN = 256 };
    for (int t = 0; t < N_TYPES; t++) {
        const uint32_t ty = TYPES[t];
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            const int n = dims[di];
            const size_t rb = kv_row_bytes(ty, n) + 8; /* rows not packed: the stride is honoured */
            uint8_t *rows = calloc(NR, rb), *qbuf = malloc(kv_query_bytes(ty, n));
            float x[NR][MAXN], xs[NR][MAXN], q[MAXN], qs[MAXN], w[NR], o_ref[MAXN], o[MAXN], s_ref[NR], s[NR];
            for (int j = 0; j < NR; j++) {
                for (int i = 0; i < n; i++) x[j][i] = frand() * (j % 3 + 1);
                kv_quantize(ty, x[j], rows + (size_t)j * rb, n);
                kv_dequantize(ty, rows + (size_t)j * rb, xs[j], n);
                w[j] = fabsf(frand());
            }
            for (int i = 0; i < n; i++) q[i] = frand();
            const void *qp = kv_prep_query(ty, q, qbuf, n);
            if (qp == qbuf) dequantize_row(GGML_TYPE_Q8_0, qbuf, qs, n);
            else memcpy(qs, q, sizeof(float) * (size_t)n);
            kv_dot_rows_level(SIMD_SCALAR, ty, rows, rb, NR, qp, n, s_ref);
            kv_mad_rows_level(SIMD_SCALAR, ty, o_ref, w, rows, rb, NR, n);
            /* the reference is float64 math on the values the cache holds */
            double worst_s = 0, worst_o = 0;
            for (int j = 0; j < NR; j++) {
                double e = 0, mag = 0;
                for (int i = 0; i < n; i++) e += (double)xs[j][i] * qs[i], mag += fabs((double)xs[j][i] * qs[i]);
                worst_s = fmax(worst_s, fabs(e - s_ref[j]) / (mag + 1e-30));
            }
            for (int i = 0; i < n; i++) {
                double e = 0, mag = 0;
                for (int j = 0; j < NR; j++) e += (double)w[j] * xs[j][i], mag += fabs((double)w[j] * xs[j][i]);
                worst_o = fmax(worst_o, fabs(e - o_ref[i]) / (mag + 1e-30));
            }
            CHECK(worst_s < 1e-5 && worst_o < 1e-5, "%s n=%d: scalar kernels vs float64: %g %g", type_info(ty)->name, n,
                  worst_s, worst_o);
            for (int lv = SIMD_SCALAR + 1; lv < SIMD_COUNT; lv++) { /* AVX2, AVX-512; NEON, dotprod, i8mm */
                if (!quant_simd_supported(lv)) continue;
                kv_dot_rows_level(lv, ty, rows, rb, NR, qp, n, s);
                kv_mad_rows_level(lv, ty, o, w, rows, rb, NR, n);
                double ds = 0, dm = 0;
                for (int j = 0; j < NR; j++) {
                    double mag = 0;
                    for (int i = 0; i < n; i++) mag += fabs((double)xs[j][i] * qs[i]);
                    ds = fmax(ds, fabs((double)s[j] - s_ref[j]) / (mag + 1e-30));
                }
                for (int i = 0; i < n; i++) {
                    double mag = 0;
                    for (int j = 0; j < NR; j++) mag += fabs((double)w[j] * xs[j][i]);
                    dm = fmax(dm, fabs((double)o[i] - o_ref[i]) / (mag + 1e-30));
                }
                CHECK(ds < 1e-5 && dm < 1e-5, "%s n=%d %s vs scalar: dot %g mad %g", type_info(ty)->name, n,
                      quant_simd_level_name(lv), ds, dm);
#if defined(__aarch64__)
                if (ty == GGML_TYPE_Q8_0 || ty == GGML_TYPE_Q4_0) /* NEON: the reference's arithmetic */
                    CHECK(!memcmp(s, s_ref, sizeof(float) * NR), "%s n=%d %s: scores bit-identical to the scalar ones",
                          type_info(ty)->name, n, quant_simd_level_name(lv));
#endif
            }
            /* several heads' weighted sums over the same rows at once */
            enum { NH = 6 };
            static float wm[NH][NR], om[NH][MAXN], oref[NH][MAXN];
            float *op[NH];
            const float *wp[NH];
            for (int k = 0; k < NH; k++) {
                for (int j = 0; j < NR; j++) wm[k][j] = fabsf(frand());
                op[k] = om[k], wp[k] = wm[k];
                kv_mad_rows_level(SIMD_SCALAR, ty, oref[k], wm[k], rows, rb, NR, n);
            }
            for (int lv = SIMD_SCALAR; lv < SIMD_COUNT; lv++) {
                if (!quant_simd_supported(lv)) continue;
                for (int nh = 1; nh <= NH; nh += 4) { /* 1 and 5 heads: a partial group of 4 */
                    kv_mad_rows_multi_level(lv, ty, nh, op, wp, rows, rb, NR, n);
                    double dm = 0;
                    for (int k = 0; k < nh; k++)
                        for (int i = 0; i < n; i++) {
                            double mag = 0;
                            for (int j = 0; j < NR; j++) mag += fabs((double)wm[k][j] * xs[j][i]);
                            dm = fmax(dm, fabs((double)om[k][i] - oref[k][i]) / (mag + 1e-30));
                        }
                    CHECK(dm < 1e-5, "%s n=%d %s: %d heads at once vs one by one: %g", type_info(ty)->name, n,
                          quant_simd_level_name(lv), nh, dm);
                }
            }
            /* quantized keys: the score error against exact f32 math stays small */
            if (ty == GGML_TYPE_Q8_0 || ty == GGML_TYPE_Q4_0) {
                double worst = 0;
                for (int j = 0; j < NR; j++) {
                    double e = 0, nx = 0, nq = 0;
                    for (int i = 0; i < n; i++) e += (double)x[j][i] * q[i], nx += x[j][i] * x[j][i], nq += q[i] * q[i];
                    worst = fmax(worst, fabs(e - s_ref[j]) / sqrt(nx * nq));
                }
                CHECK(worst < (ty == GGML_TYPE_Q8_0 ? 0.02 : 0.15), "%s n=%d: score error vs f32 %g",
                      type_info(ty)->name, n, worst);
            }
            free(rows), free(qbuf);
        }
    }
}

static double kl_div(const float *p_logits, const float *q_logits, int n) { /* KL(P || Q), P the reference */
    double mp = -INFINITY, mq = -INFINITY, sp = 0, sq = 0, kl = 0;
    for (int i = 0; i < n; i++) mp = fmax(mp, p_logits[i]), mq = fmax(mq, q_logits[i]);
    for (int i = 0; i < n; i++) sp += exp(p_logits[i] - mp), sq += exp(q_logits[i] - mq);
    for (int i = 0; i < n; i++) {
        const double lp = p_logits[i] - mp - log(sp), lq = q_logits[i] - mq - log(sq);
        kl += exp(lp) * (lp - lq);
    }
    return kl;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Greedy generation from a prompt; returns the logits of every prompt position. */
static int run(const Model *m, uint32_t kt, uint32_t vt, const int *prompt, int np, int *gen, int ng, float *logits) {
    Error err;
    ContextParams p = {np + ng + 1, 1, 512, 2, kt, vt, GROK_DEVICE_CPU, 0, NULL};
    Context *c = context_new(m, &p, &err);
    if (!c) {
        printf("context_new: %s\n", err.msg);
        return -1;
    }
    const int V = m->cfg.n_vocab;
    float *last = malloc(sizeof(float) * (size_t)V);
    int rc = forward_tokens(c, 0, prompt, np, 0, logits, true, &err);
    memcpy(last, logits + (size_t)(np - 1) * V, sizeof(float) * (size_t)V);
    for (int i = 0; i < ng && rc == 0; i++) {
        gen[i] = argmax(last, V);
        rc = forward_tokens(c, 0, &gen[i], 1, np + i, last, false, &err);
    }
    free(last);
    context_free(c);
    return rc;
}

static void test_model_parity(void) {
    const char *tmp = getenv("GROK_TMP") ? getenv("GROK_TMP") : "/tmp";
    mkdir(tmp, 0755);
    struct {
        const char *label;
        SynthParams p;
    } cfgs[] = {
        /* n_embd, layers, heads, kv heads, ff, experts, used, ctx, vocab, type, untied, fused, seed */
        {"hd32 gqa2", {128, 2, 4, 2, 64, 2, 2, 256, 320, GGML_TYPE_F32, 0, 0, 21, NULL}},
        {"hd64 gqa4 bf16 weights", {256, 2, 4, 1, 96, 2, 2, 256, 320, GGML_TYPE_BF16, 1, 0, 22, NULL}},
    };
    /* bounds on the mean / max KL over the prompt positions (measured: see README) */
    const double mean_bound[N_TYPES] = {0, 1e-6, 2e-4, 2e-4, 4e-3};
    const double max_bound[N_TYPES] = {0, 1e-5, 2e-3, 2e-3, 4e-2};
    const double gap_bound[N_TYPES] = {0, 0, 0.05, 0.05, 0.5};
    enum { NP = 96, NG = 12 };
    for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
        char path[1024];
        Error err;
        snprintf(path, sizeof path, "%s/test_kv_%zu.gguf", tmp, ci);
        if (synth_write_model(&cfgs[ci].p, path, &err)) {
            CHECK(0, "write: %s", err.msg);
            continue;
        }
        Model *m = model_load(path, &err);
        CHECK(m != NULL, "load");
        if (!m) continue;
        const int V = m->cfg.n_vocab;
        int prompt[NP], gen_ref[NG], gen[NG];
        for (int i = 0; i < NP; i++) prompt[i] = (i * 131 + 7) % V;
        float *ref = malloc(sizeof(float) * NP * V), *got = malloc(sizeof(float) * NP * V);
        CHECK(run(m, GGML_TYPE_F32, GGML_TYPE_F32, prompt, NP, gen_ref, NG, ref) == 0, "f32 run");
        for (int t = 1; t < N_TYPES; t++) {
            for (int side = 0; side < 3; side++) { /* both, keys only, values only */
                const uint32_t kt = side == 2 ? GGML_TYPE_F32 : TYPES[t], vt = side == 1 ? GGML_TYPE_F32 : TYPES[t];
                CHECK(run(m, kt, vt, prompt, NP, gen, NG, got) == 0, "run");
                double mean = 0, worst = 0;
                for (int i = 0; i < NP; i++) {
                    const double kl = kl_div(ref + (size_t)i * V, got + (size_t)i * V, V);
                    mean += kl / NP, worst = fmax(worst, kl);
                }
                const char *sn = side == 0 ? "K+V" : side == 1 ? "K" : "V";
                int same = 0;
                for (int i = 0; i < NP; i++) same += argmax(ref + (size_t)i * V, V) == argmax(got + (size_t)i * V, V);
                printf("%s: %s %s: KL mean %.3g max %.3g, argmax same at %d/%d, greedy %s\n", cfgs[ci].label,
                       type_info(TYPES[t])->name, sn, mean, worst, same, NP,
                       memcmp(gen, gen_ref, sizeof gen) ? "differs" : "same");
                CHECK(mean <= mean_bound[t] && worst <= max_bound[t], "%s %s %s: KL mean %g max %g over the bounds",
                      cfgs[ci].label, type_info(TYPES[t])->name, sn, mean, worst);
                /* Random tiny models have flat next-token distributions: a quantized
                 * cache may change the argmax where the f32 cache's top two logits are
                 * close. The gap allowed grows with the type's error. */
                double gap = 0;
                for (int i = 0; i < NP; i++) {
                    const float *r = ref + (size_t)i * V;
                    const int a = argmax(r, V), b = argmax(got + (size_t)i * V, V);
                    if (a != b) gap = fmax(gap, r[a] - r[b] + 1e-9);
                }
                printf("    largest f32 top-two gap where the argmax changed: %.3g\n", gap);
                CHECK(gap <= gap_bound[t], "%s %s %s: argmax changed where the f32 top two were %g apart",
                      cfgs[ci].label, type_info(TYPES[t])->name, sn, gap);
                if (TYPES[t] != GGML_TYPE_Q4_0)
                    CHECK(!memcmp(gen, gen_ref, sizeof gen), "%s %s %s: greedy tokens differ from the f32 cache's",
                          cfgs[ci].label, type_info(TYPES[t])->name, sn);
            }
        }
        free(ref), free(got);
        model_free(m);
        remove(path);
    }
}

static void test_bad_params(void) {
    const char *tmp = getenv("GROK_TMP") ? getenv("GROK_TMP") : "/tmp";
    char path[1024];
    Error err;
    snprintf(path, sizeof path, "%s/test_kv_hd16.gguf", tmp);
    SynthParams p = {64, 1, 4, 2, 64, 2, 2, 64, 320, GGML_TYPE_F32, 0, 0, 5, NULL}; /* head size 16 */
    if (synth_write_model(&p, path, &err)) {
        CHECK(0, "write: %s", err.msg);
        return;
    }
    Model *m = model_load(path, &err);
    if (!m) return;
    ContextParams cp = {32, 1, 0, 1, GGML_TYPE_Q8_0, GGML_TYPE_F16, GROK_DEVICE_CPU, 0, NULL};
    Context *c = context_new(m, &cp, &err);
    CHECK(!c && strstr(err.msg, "multiple of 32"), "q8_0 keys with a head size of 16 refused: %s", c ? "" : err.msg);
    context_free(c);
    ContextParams cp2 = {32, 1, 0, 1, GGML_TYPE_F16, GGML_TYPE_Q4_K, GROK_DEVICE_CPU, 0, NULL};
    c = context_new(m, &cp2, &err);
    CHECK(!c && strstr(err.msg, "KV cache types"), "q4_K values refused");
    context_free(c);
    ContextParams cp3 = {32, 1, 0, 1, GGML_TYPE_BF16, GGML_TYPE_BF16, GROK_DEVICE_CPU, 0, NULL};
    c = context_new(m, &cp3, &err);
    CHECK(c != NULL, "bf16 with a head size of 16 works");
    context_free(c);
    model_free(m);
    remove(path);
}

/* Context shift: a cache holding [sys t1 t2] made to hold [sys t2] by
 * context_reuse, then t3 run after it, against a fresh run of [sys t2 t3].
 * With one layer the cached keys and values of t2 do not depend on t1, so
 * the two agree up to the KV type's rounding (of the re-rotated keys). */
static void test_shift(void) {
    const char *tmp = getenv("GROK_TMP") ? getenv("GROK_TMP") : "/tmp";
    char path[1024];
    Error err;
    snprintf(path, sizeof path, "%s/test_kv_shift.gguf", tmp);
    SynthParams sp = {256, 1, 4, 2, 96, 2, 2, 256, 320, GGML_TYPE_F32, 0, 0, 31, NULL}; /* head size 64 */
    if (synth_write_model(&sp, path, &err)) {
        CHECK(0, "write: %s", err.msg);
        return;
    }
    Model *m = model_load(path, &err);
    CHECK(m != NULL, "load");
    if (!m) return;
    const int V = m->cfg.n_vocab;
    enum { NS = 6, N1 = 20, N2 = 40, N3 = 10, NC = NS + N1 + N2, NI = NS + N2 + N3 };
    int cache[NC], ids[NI];
    for (int i = 0; i < NC; i++) cache[i] = (i * 97 + 5) % V;
    memcpy(ids, cache, NS * sizeof(int));
    memcpy(ids + NS, cache + NS + N1, N2 * sizeof(int));
    for (int i = 0; i < N3; i++) ids[NS + N2 + i] = (i * 61 + 3) % V;
    const double mean_bound[N_TYPES] = {1e-9, 1e-7, 1e-5, 1e-5, 2e-3};
    float *a = malloc(sizeof(float) * N3 * V), *b = malloc(sizeof(float) * NI * V);
    for (int t = 0; t < N_TYPES; t++) {
        ContextParams cp = {128, 1, 0, 2, TYPES[t], TYPES[t], GROK_DEVICE_CPU, 0, NULL};
        Context *c = context_new(m, &cp, &err), *f = context_new(m, &cp, &err);
        if (!c || !f) {
            CHECK(0, "context");
            context_free(c), context_free(f);
            continue;
        }
        int cc[NC];
        memcpy(cc, cache, sizeof cc);
        CHECK(forward_tokens(c, 0, cc, NC, 0, b, false, &err) == 0, "fill");
        const int got = context_reuse(c, 0, cc, NC, ids, NI, 8, &err);
        CHECK(got == NS + N2 && !memcmp(cc, ids, (size_t)got * sizeof(int)), "%s: reuse kept %d of %d tokens",
              type_info(TYPES[t])->name, got, NS + N2);
        CHECK(forward_tokens(c, 0, ids + NS + N2, N3, NS + N2, a, true, &err) == 0, "after the shift");
        CHECK(forward_tokens(f, 0, ids, NI, 0, b, true, &err) == 0, "fresh");
        double mean = 0, worst = 0;
        for (int i = 0; i < N3; i++) {
            const double kl = kl_div(b + (size_t)(NS + N2 + i) * V, a + (size_t)i * V, V);
            mean += kl / N3, worst = fmax(worst, kl);
        }
        printf("shift, %s: KL after shift vs fresh: mean %.3g max %.3g\n", type_info(TYPES[t])->name, mean, worst);
        CHECK(mean <= mean_bound[t], "%s: shifted vs fresh KL mean %g", type_info(TYPES[t])->name, mean);
        if (TYPES[t] == GGML_TYPE_F32) {
            float d = 0, mx = 0;
            for (size_t i = 0; i < (size_t)N3 * V; i++)
                d = fmaxf(d, fabsf(a[i] - b[(size_t)(NS + N2) * V + i])), mx = fmaxf(mx, fabsf(a[i]));
            CHECK(d / mx < 1e-4f, "f32: shifted vs fresh logits differ by %g of the largest", d / mx);
        }
        context_free(c), context_free(f);
    }
    /* no reusable stretch: only the common prefix; shorter than min_run: the same */
    ContextParams cp = {128, 1, 0, 1, GGML_TYPE_F16, GGML_TYPE_F16, GROK_DEVICE_CPU, 0, NULL};
    Context *c = context_new(m, &cp, &err);
    int cc[NC], other[NI];
    memcpy(cc, cache, sizeof cc);
    for (int i = 0; i < NI; i++) other[i] = i < NS ? cache[i] : (i * 7 + 1) % V;
    CHECK(context_reuse(c, 0, cc, NC, other, NI, 8, &err) == NS, "no stretch to reuse: the prefix");
    CHECK(context_reuse(c, 0, cc, NC, ids, NI, N2 + 1, &err) == NS, "stretch shorter than min_run: the prefix");
    CHECK(context_reuse(c, 0, cc, NC, cache, NC, 8, &err) == NC, "same tokens: all");
    { /* one repeated token in the cache and the prompt: bounded work, a sensible answer */
        enum { R = 120 };
        int rc_[R], ri[R];
        for (int i = 0; i < R; i++) rc_[i] = i == 0 ? 1 : 7, ri[i] = i < R / 2 ? 7 : 9;
        const int got = context_reuse(c, 0, rc_, R, ri, R, 8, &err);
        CHECK(got == R / 2 && rc_[0] == 7 && rc_[R / 2 - 1] == 7, "repeated tokens: the run after the first is shifted (%d)",
              got);
    }
    CHECK(context_shift(c, 0, 10, 20, -11, &err) != 0, "shift below position 0 refused");
    CHECK(context_shift(c, 0, 100, 120, 10, &err) != 0, "shift past the context refused");
    CHECK(context_shift(c, 1, 10, 20, -5, &err) != 0, "bad sequence refused");
    CHECK(context_shift(c, 0, 10, 20, 5, &err) == 0, "shift up works");
    context_free(c);
    free(a), free(b);
    model_free(m);
    remove(path);
}

/* f16 rows are stored with the same bits as quant.c's f32_to_fp16 (the
 * x86 path converts eight at a time with F16C): every exponent, ties,
 * values that round into the subnormals or overflow, infinities, NaNs
 * with payloads, and a length that leaves a tail. */
static void test_f16_store(void) {
    enum { N = 4099 };
    static float x[N];
    static uint16_t got[N];
    uint32_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        uint32_t u = s;
        if (i % 5 == 0) u = (u & 0x80000000u) | ((0x66u + (u >> 8) % 40u) << 23) | (u & 0x7fffffu); /* near fp16's range */
        if (i % 7 == 0) u = (u & ~0x1fffu) | 0x1000u; /* a tie between two fp16 values */
        memcpy(&x[i], &u, 4);
    }
    const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 65504.0f, 65519.0f, 65520.0f, -65520.0f,
                              6.1035156e-05f, 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, 1e-40f, -3e-39f};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) x[100 + 3 * i] = specials[i];
    const uint32_t payload = 0x7fc12345u; /* a NaN with a payload, alone among numbers */
    memcpy(&x[N - 20], &payload, 4);
    kv_quantize(GGML_TYPE_F16, x, got, N);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += got[i] != f32_to_fp16(x[i]);
    CHECK(bad == 0, "f16 store: %d of %d values differ from f32_to_fp16", bad, N);
}

int main(void) {
    test_names();
    test_f16_store();
    test_rounding();
    test_kernels();
    test_model_parity();
    test_bad_params();
    test_shift();
    return check_report("kv");
}
