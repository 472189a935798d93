/* test_sampler.c - unit tests for sampler.c (sampling and stop strings). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "sampler.h"
#include "check.h"

/* deterministic test data */
static uint64_t g_lcg = 0x1234567ull;
static double urand(void) {
    g_lcg = g_lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_lcg >> 11) * (1.0 / 9007199254740992.0);
}
static float nrand(void) {
    double u1 = urand(), u2 = urand();
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static SamplerParams plain(float temp, uint64_t seed) {
    SamplerParams p = sampler_defaults();
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    return p;
}

static Sampler *mk(const SamplerParams *p, int n) {
    Error err = {{0}};
    Sampler *s = sampler_new(p, n, &err);
    if (!s) {
        fprintf(stderr, "sampler_new failed: %s\n", err.msg);
        exit(2);
    }
    return s;
}

static int ref_argmax(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

static int sample_copy(Sampler *s, const float *logits, float *work, int n) {
    memcpy(work, logits, (size_t)n * sizeof *work);
    return sampler_sample(s, work);
}

static void test_defaults(void) {
    SamplerParams p = sampler_defaults();
    CHECK(p.temperature == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f &&
              p.repeat_penalty == 1.0f && p.repeat_last_n == 64 && p.presence_penalty == 0.0f &&
              p.frequency_penalty == 0.0f && p.seed == 42,
          "defaults");
    Error err = {{0}};
    CHECK(sampler_new(&p, 0, &err) == NULL && err.msg[0], "n_vocab 0 rejected");
    p.repeat_penalty = 0.0f;
    err.msg[0] = 0;
    CHECK(sampler_new(&p, 10, &err) == NULL && err.msg[0], "repeat_penalty 0 rejected");
}

static void test_greedy(void) {
    const int n = 257;
    float l[257], w[257];
    for (int temp_i = 0; temp_i < 2; temp_i++) {
        SamplerParams p = sampler_defaults();
        p.temperature = temp_i == 0 ? 0.0f : -1.0f;
        Sampler *s = mk(&p, n);
        int bad = 0;
        for (int t = 0; t < 200; t++) {
            for (int i = 0; i < n; i++) l[i] = nrand();
            if (sample_copy(s, l, w, n) != ref_argmax(l, n)) bad++;
        }
        CHECK(bad == 0, "greedy != argmax in %d cases", bad);
        /* ties -> lowest id */
        for (int i = 0; i < n; i++) l[i] = 0.0f;
        CHECK(sample_copy(s, l, w, n) == 0, "all equal -> 0");
        l[100] = 5.0f;
        l[17] = 5.0f;
        l[200] = 5.0f;
        CHECK(sample_copy(s, l, w, n) == 17, "tie -> lowest id");
        for (int i = 0; i < n; i++) l[i] = -INFINITY;
        l[50] = -1e30f;
        CHECK(sample_copy(s, l, w, n) == 50, "-inf handled");
        l[3] = NAN;
        CHECK(sample_copy(s, l, w, n) == 50, "NaN skipped");
        sampler_free(s);
    }
}

static void test_top_k1(void) {
    const int n = 1000;
    float *l = malloc(n * sizeof *l), *w = malloc(n * sizeof *w);
    float temps[] = {0.05f, 0.7f, 1.0f, 5.0f, 1000.0f};
    for (int ti = 0; ti < 5; ti++) {
        SamplerParams p = sampler_defaults();
        p.temperature = temps[ti];
        p.top_k = 1;
        p.seed = 7 + (uint64_t)ti;
        Sampler *s = mk(&p, n);
        int bad = 0;
        for (int t = 0; t < 200; t++) {
            for (int i = 0; i < n; i++) l[i] = nrand() * 0.1f;
            if (t % 3 == 0) l[(t * 37) % n] = l[(t * 91) % n] = 10.0f; /* ties */
            if (sample_copy(s, l, w, n) != ref_argmax(l, n)) bad++;
        }
        CHECK(bad == 0, "top_k=1 != greedy at T=%g (%d cases)", (double)temps[ti], bad);
        sampler_free(s);
    }
    free(l);
    free(w);
}

static void test_seed(void) {
    const int n = 1000, draws = 1000;
    float *l = malloc(n * sizeof *l), *w = malloc(n * sizeof *w);
    for (int i = 0; i < n; i++) l[i] = nrand();
    int *a = malloc(draws * sizeof *a), *b = malloc(draws * sizeof *b);
    for (int cfg = 0; cfg < 2; cfg++) {
        SamplerParams p = cfg == 0 ? plain(1.0f, 123) : sampler_defaults();
        if (cfg == 1) {
            p.seed = 123;
            p.temperature = 1.5f;
        }
        Sampler *s1 = mk(&p, n), *s2 = mk(&p, n);
        int same = 1;
        for (int i = 0; i < draws; i++) {
            a[i] = sample_copy(s1, l, w, n);
            b[i] = sample_copy(s2, l, w, n);
            if (a[i] != b[i]) same = 0;
        }
        CHECK(same, "cfg %d: same seed -> same draws", cfg);
        /* reset re-seeds */
        sampler_reset(s1);
        int rep = 1;
        for (int i = 0; i < draws; i++)
            if (sample_copy(s1, l, w, n) != a[i]) rep = 0;
        CHECK(rep, "cfg %d: reset repeats the draws", cfg);
        p.seed = 124;
        Sampler *s3 = mk(&p, n);
        int diff = 0;
        for (int i = 0; i < draws; i++)
            if (sample_copy(s3, l, w, n) != a[i]) diff++;
        CHECK(diff > draws / 2, "cfg %d: different seed -> different draws (%d differ)", cfg, diff);
        /* a single stream is not constant */
        int distinct = 0;
        for (int i = 1; i < draws; i++)
            if (a[i] != a[0]) distinct++;
        CHECK(distinct > 0, "cfg %d: draws vary", cfg);
        sampler_free(s1);
        sampler_free(s2);
        sampler_free(s3);
    }
    free(a);
    free(b);
    free(l);
    free(w);
}

/* frequencies of `draws` samples */
static void histogram(Sampler *s, const float *l, int n, int draws, int *cnt) {
    float w[64];
    memset(cnt, 0, (size_t)n * sizeof *cnt);
    for (int i = 0; i < draws; i++) {
        int t = sample_copy(s, l, w, n);
        if (t >= 0 && t < n) cnt[t]++;
    }
}

static void test_distribution(void) {
    const float l[5] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
    const float temps[3] = {0.7f, 1.0f, 2.5f};
    const int draws = 100000;
    for (int ti = 0; ti < 3; ti++) {
        float T = temps[ti];
        double p[5], z = 0;
        for (int i = 0; i < 5; i++) z += p[i] = exp(l[i] / T);
        SamplerParams sp = plain(T, 99 + (uint64_t)ti);
        Sampler *s = mk(&sp, 5);
        int cnt[5];
        histogram(s, l, 5, draws, cnt);
        double worst = 0;
        for (int i = 0; i < 5; i++) {
            double f = (double)cnt[i] / draws, e = p[i] / z;
            double sigma = sqrt(e * (1 - e) / draws);
            double dev = fabs(f - e) / sigma;
            if (dev > worst) worst = dev;
        }
        CHECK(worst < 5.0, "T=%g: empirical distribution off by %.1f sigma", (double)T, worst);
        sampler_free(s);
    }
    /* with defaults top_k 40 / top_p 0.95 / min_p 0.05 on a 5-token vocab:
     * probabilities at T=1 of logits log(q) are q */
    {
        const double q[5] = {0.4, 0.3, 0.2, 0.07, 0.03};
        float lq[5];
        for (int i = 0; i < 5; i++) lq[i] = (float)log(q[i]);
        SamplerParams sp = sampler_defaults();
        sp.temperature = 1.0f;
        Sampler *s = mk(&sp, 5);
        int cnt[5];
        histogram(s, lq, 5, draws, cnt);
        /* top_p 0.95: cum 0.4 0.7 0.9 0.97 -> keep 4; min_p 0.05*0.4=0.02 keeps 4 */
        double z = 0.97;
        int ok = cnt[4] == 0;
        for (int i = 0; i < 4; i++) {
            double e = q[i] / z, f = (double)cnt[i] / draws;
            if (fabs(f - e) > 5 * sqrt(e * (1 - e) / draws)) ok = 0;
        }
        CHECK(ok, "defaults: renormalized nucleus distribution (%d %d %d %d %d)", cnt[0], cnt[1],
              cnt[2], cnt[3], cnt[4]);
        sampler_free(s);
    }
}

static void test_exclusion(void) {
    const double q[5] = {0.5, 0.3, 0.15, 0.04, 0.01};
    float l[5];
    for (int i = 0; i < 5; i++) l[i] = (float)log(q[i]);
    struct {
        int top_k;
        float top_p, min_p;
        int allowed; /* bitmask */
        const char *name;
    } cases[] = {
        {2, 1.0f, 0.0f, 0x3, "top_k 2"},
        {3, 1.0f, 0.0f, 0x7, "top_k 3"},
        {0, 0.75f, 0.0f, 0x3, "top_p 0.75"},
        {0, 0.9f, 0.0f, 0x7, "top_p 0.9"},
        {0, 0.0f, 0.0f, 0x1, "top_p 0"},
        {0, 0.97f, 0.0f, 0xF, "top_p 0.97"},
        {0, 1.0f, 0.25f, 0x7, "min_p 0.25"},
        {0, 1.0f, 0.5f, 0x3, "min_p 0.5"},
        {0, 1.0f, 1.0f, 0x1, "min_p 1"},
        {4, 0.75f, 0.0f, 0x3, "top_k 4 + top_p 0.75"},
        {2, 1.0f, 0.9f, 0x1, "top_k 2 + min_p 0.9"},
        {0, 0.97f, 0.5f, 0x3, "top_p 0.97 + min_p 0.5"},
        {0, 0.6f, 0.1f, 0x3, "top_p 0.6 + min_p 0.1"},
        {4, 0.9f, 0.2f, 0x7, "top_k 4 + top_p 0.9 + min_p 0.2"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        SamplerParams p = plain(1.0f, 1000 + c);
        p.top_k = cases[c].top_k;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        Sampler *s = mk(&p, 5);
        int cnt[5];
        histogram(s, l, 5, 20000, cnt);
        int seen = 0;
        for (int i = 0; i < 5; i++)
            if (cnt[i]) seen |= 1 << i;
        CHECK(seen == cases[c].allowed, "%s: sampled set 0x%x, expected 0x%x", cases[c].name, seen,
              cases[c].allowed);
        sampler_free(s);
    }
    /* top_k 2 keeps the renormalized ratio 0.5 : 0.3 */
    {
        SamplerParams p = plain(1.0f, 5);
        p.top_k = 2;
        Sampler *s = mk(&p, 5);
        int cnt[5];
        histogram(s, l, 5, 100000, cnt);
        double f0 = cnt[0] / 100000.0;
        CHECK(fabs(f0 - 0.625) < 0.01, "top_k 2 renormalized: %.4f vs 0.625", f0);
        sampler_free(s);
    }
    /* top-k ties broken by lower id: four equal logits, top_k 2 -> ids 0, 1 */
    {
        float e[6] = {1.0f, 1.0f, 1.0f, 1.0f, 0.0f, 0.0f};
        e[0] = 0.5f; /* ids 1,2,3 tie at 1.0 */
        SamplerParams p = plain(1.0f, 6);
        p.top_k = 2;
        Sampler *s = mk(&p, 6);
        int cnt[6];
        histogram(s, e, 6, 5000, cnt);
        CHECK(cnt[1] > 0 && cnt[2] > 0 && cnt[0] + cnt[3] + cnt[4] + cnt[5] == 0,
              "top_k tie -> lower ids (%d %d %d %d)", cnt[0], cnt[1], cnt[2], cnt[3]);
        sampler_free(s);
    }
}

static void test_penalties(void) {
    const int n = 10;
    const float base[10] = {1.0f, 2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 0.0f, 1.5f, -0.25f, 4.0f};
    const int hist[] = {1, 1, 2, 5, 5, 5, 6, 8};
    const int nh = (int)(sizeof hist / sizeof hist[0]);
    const float rp = 1.3f, pp = 0.5f, fp = 0.25f;
    int windows[] = {64, 3, -1, 0};
    for (int wi = 0; wi < 4; wi++) {
        SamplerParams p = sampler_defaults();
        p.temperature = 0.0f;
        p.repeat_penalty = rp;
        p.presence_penalty = pp;
        p.frequency_penalty = fp;
        p.repeat_last_n = windows[wi];
        Sampler *s = mk(&p, n);
        int count[10] = {0};
        int win = windows[wi] < 0 ? nh : windows[wi] > nh ? nh : windows[wi];
        for (int i = 0; i < nh; i++) {
            sampler_accept(s, hist[i]);
            if (i >= nh - win) count[hist[i]]++;
        }
        sampler_accept(s, -1);  /* ignored */
        sampler_accept(s, 999); /* ignored */
        float l[10];
        memcpy(l, base, sizeof l);
        (void)sampler_sample(s, l);
        int ok = 1;
        for (int t = 0; t < n; t++) {
            float e = base[t];
            if (count[t] > 0) {
                e = e > 0.0f ? e / rp : e * rp;
                e -= (float)count[t] * fp + pp;
            }
            if (fabsf(l[t] - e) > 1e-6f * (1.0f + fabsf(e))) {
                ok = 0;
                fprintf(stderr, "  window %d token %d: got %.7f want %.7f\n", windows[wi], t,
                        (double)l[t], (double)e);
            }
        }
        CHECK(ok, "penalties with repeat_last_n %d", windows[wi]);
        /* reset clears the history */
        sampler_reset(s);
        memcpy(l, base, sizeof l);
        (void)sampler_sample(s, l);
        CHECK(memcmp(l, base, sizeof l) == 0, "reset clears penalty history (window %d)",
              windows[wi]);
        sampler_free(s);
    }
    /* each formula on its own */
    {
        SamplerParams p = plain(0.0f, 1);
        p.repeat_penalty = 2.0f;
        Sampler *s = mk(&p, 4);
        sampler_accept(s, 0);
        sampler_accept(s, 1);
        sampler_accept(s, 1);
        sampler_accept(s, 2);
        float l[4] = {3.0f, -3.0f, 0.0f, 1.0f};
        int t = sampler_sample(s, l);
        CHECK(l[0] == 1.5f && l[1] == -6.0f && l[2] == 0.0f && l[3] == 1.0f,
              "repetition: %g %g %g %g", (double)l[0], (double)l[1], (double)l[2], (double)l[3]);
        CHECK(t == 0, "repetition changes the argmax input (got %d)", t);
        sampler_free(s);

        p = plain(0.0f, 1);
        p.presence_penalty = 0.75f;
        s = mk(&p, 4);
        sampler_accept(s, 1);
        sampler_accept(s, 1);
        sampler_accept(s, 1);
        float l2[4] = {3.0f, 3.5f, 0.0f, 1.0f};
        t = sampler_sample(s, l2);
        CHECK(l2[1] == 2.75f && l2[0] == 3.0f && t == 0, "presence: %g -> token %d",
              (double)l2[1], t);
        sampler_free(s);

        p = plain(0.0f, 1);
        p.frequency_penalty = 0.5f;
        s = mk(&p, 4);
        sampler_accept(s, 1);
        sampler_accept(s, 1);
        sampler_accept(s, 1);
        sampler_accept(s, 3);
        float l3[4] = {3.0f, 4.0f, 0.0f, 1.0f};
        t = sampler_sample(s, l3);
        CHECK(l3[1] == 2.5f && l3[3] == 0.5f && t == 0, "frequency: %g %g -> token %d",
              (double)l3[1], (double)l3[3], t);
        sampler_free(s);
    }
    /* sliding window: old tokens leave it */
    {
        SamplerParams p = plain(0.0f, 1);
        p.presence_penalty = 1.0f;
        p.repeat_last_n = 2;
        Sampler *s = mk(&p, 4);
        sampler_accept(s, 0);
        sampler_accept(s, 1);
        sampler_accept(s, 2);
        float l[4] = {1.0f, 1.0f, 1.0f, 1.0f};
        (void)sampler_sample(s, l);
        CHECK(l[0] == 1.0f && l[1] == 0.0f && l[2] == 0.0f && l[3] == 1.0f,
              "window 2: %g %g %g %g", (double)l[0], (double)l[1], (double)l[2], (double)l[3]);
        sampler_free(s);
    }
}

static int cmp_desc_idx(const void *a, const void *b, const float *v);
static const float *g_sort_vals;
static int cmp_idx(const void *a, const void *b) { return cmp_desc_idx(a, b, g_sort_vals); }
static int cmp_desc_idx(const void *a, const void *b, const float *v) {
    int i = *(const int *)a, j = *(const int *)b;
    if (v[i] > v[j]) return -1;
    if (v[i] < v[j]) return 1;
    return i < j ? -1 : i > j;
}

/* The nucleus of softmax(l / T) computed the slow way; marks in[] with the
 * cut plus one token of slack for rounding at the boundary. */
static int ref_nucleus(const float *l, int n, float T, double top_p, unsigned char *in) {
    int *idx = malloc((size_t)n * sizeof *idx);
    double *p = malloc((size_t)n * sizeof *p);
    float mx = l[ref_argmax(l, n)];
    double z = 0;
    for (int i = 0; i < n; i++) z += p[i] = exp(((double)l[i] - mx) / T);
    for (int i = 0; i < n; i++) idx[i] = i;
    g_sort_vals = l;
    qsort(idx, (size_t)n, sizeof *idx, cmp_idx);
    memset(in, 0, (size_t)n);
    double cum = 0;
    int k = 0;
    while (k < n) {
        cum += p[idx[k]] / z;
        in[idx[k]] = 1;
        k++;
        if (cum >= top_p) break;
    }
    int cut = k;
    if (k < n) in[idx[k]] = 1;
    free(idx);
    free(p);
    return cut;
}

static void test_large_vocab(void) {
    const int n = 131072;
    float *l = malloc((size_t)n * sizeof *l), *w = malloc((size_t)n * sizeof *w);
    unsigned char *in = malloc((size_t)n);
    for (int i = 0; i < n; i++) l[i] = nrand() * 3.0f;

    struct {
        int top_k;
        float top_p, min_p;
        int draws;
        const char *name;
    } cfgs[] = {
        {40, 0.95f, 0.05f, 500, "defaults"},
        {0, 0.95f, 0.0f, 200, "top_p 0.95"},
        {0, 1.0f, 0.05f, 200, "min_p 0.05"},
        {0, 1.0f, 0.0f, 200, "plain"},
        {0, 0.999999f, 0.0f, 50, "top_p 0.999999"},
        {20000, 0.9f, 0.0f, 50, "top_k 20000"},
    };
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        SamplerParams p = plain(1.0f, 77);
        p.top_k = cfgs[c].top_k;
        p.top_p = cfgs[c].top_p;
        p.min_p = cfgs[c].min_p;
        Sampler *s = mk(&p, n);
        int ok = 1;
        double t0 = time_now();
        for (int i = 0; i < cfgs[c].draws; i++) {
            int t = sample_copy(s, l, w, n);
            if (t < 0 || t >= n) ok = 0;
        }
        double ms = (time_now() - t0) * 1000.0 / cfgs[c].draws;
        printf("  n_vocab %d, %-16s %.3f ms/token\n", n, cfgs[c].name, ms);
        CHECK(ok, "%s: token out of range", cfgs[c].name);
        CHECK(ms < 100.0, "%s: too slow (%.1f ms/token)", cfgs[c].name, ms);
        sampler_free(s);
    }

    /* pruned top-p == top-p of a full sort */
    {
        float T = 1.0f;
        double tp = 0.9;
        int cut = ref_nucleus(l, n, T, tp, in);
        SamplerParams p = plain(T, 3);
        p.top_p = (float)tp;
        Sampler *s = mk(&p, n);
        int bad = 0;
        for (int i = 0; i < 300; i++)
            if (!in[sample_copy(s, l, w, n)]) bad++;
        CHECK(bad == 0, "top_p 0.9 on random logits: %d draws outside the nucleus of %d", bad, cut);
        sampler_free(s);
    }
    /* a dominant token and a long flat-ish tail: the nucleus needs tail tokens
     * with weights ~1e-6 (second pruning level) */
    {
        l[0] = 0.0f;
        for (int i = 1; i < n; i++) l[i] = (float)log(1e-6) + (float)(urand() * 0.5);
        float T = 1.0f;
        double tp = 0.95;
        int cut = ref_nucleus(l, n, T, tp, in);
        SamplerParams p = plain(T, 4);
        p.top_p = (float)tp;
        Sampler *s = mk(&p, n);
        int bad = 0, tail = 0;
        for (int i = 0; i < 1000; i++) {
            int t = sample_copy(s, l, w, n);
            if (!in[t]) bad++;
            if (t != 0) tail++;
        }
        CHECK(bad == 0, "long tail top_p: %d draws outside the nucleus of %d", bad, cut);
        CHECK(cut > 1 && tail > 0, "long tail top_p: tail sampled (%d, cut %d)", tail, cut);
        /* the same with min_p below the tail weights */
        sampler_free(s);
        p.min_p = 1e-7f;
        s = mk(&p, n);
        bad = 0;
        for (int i = 0; i < 1000; i++)
            if (!in[sample_copy(s, l, w, n)]) bad++;
        CHECK(bad == 0, "long tail top_p + min_p: %d draws outside the nucleus", bad);
        sampler_free(s);
        /* min_p above the tail: only the dominant token */
        p.min_p = 1e-4f;
        s = mk(&p, n);
        int other = 0;
        for (int i = 0; i < 200; i++)
            if (sample_copy(s, l, w, n) != 0) other++;
        CHECK(other == 0, "long tail + min_p 1e-4: %d tail draws", other);
        sampler_free(s);
    }
    /* a tail of weight ~5e-9 per token (needs the whole vocabulary) */
    {
        l[0] = 0.0f;
        for (int i = 1; i < n; i++) l[i] = -19.0f - (float)urand();
        SamplerParams p = plain(1.0f, 5);
        p.top_p = 0.99999f;
        Sampler *s = mk(&p, n);
        int ok = 1;
        for (int i = 0; i < 50; i++) {
            int t = sample_copy(s, l, w, n);
            if (t < 0 || t >= n) ok = 0;
        }
        CHECK(ok, "tiny tail, top_p 0.99999");
        sampler_free(s);
    }
    /* NaN and -inf entries never get sampled */
    {
        for (int i = 0; i < n; i++) l[i] = (i % 3 == 0) ? NAN : (i % 3 == 1) ? -INFINITY : 0.0f;
        float tps[2] = {1.0f, 0.5f};
        for (int k = 0; k < 2; k++) {
            SamplerParams p = plain(1.0f, 8);
            p.top_p = tps[k];
            Sampler *s = mk(&p, n);
            int bad = 0;
            for (int i = 0; i < 50; i++)
                if (sample_copy(s, l, w, n) % 3 != 2) bad++;
            CHECK(bad == 0, "NaN/-inf never sampled (top_p %g): %d", (double)tps[k], bad);
            sampler_free(s);
        }
    }
    free(l);
    free(w);
    free(in);
}

/* Random settings on a mid-size vocabulary with many tied logits: every draw
 * must lie in the set a straightforward full sort gives (one token of slack
 * at the top-p boundary for rounding). Covers the heap and the partitioning
 * top-k, and top-p / min-p with and without top-k. */
static void test_filters_vs_reference(void) {
    const int n = 3000;
    float *l = malloc((size_t)n * sizeof *l), *w = malloc((size_t)n * sizeof *w);
    int *idx = malloc((size_t)n * sizeof *idx);
    double *p = malloc((size_t)n * sizeof *p);
    unsigned char *in = malloc((size_t)n);
    int bad_cfgs = 0;
    for (int iter = 0; iter < 200; iter++) {
        float scale = (float)(0.2 + urand() * 4.0);
        for (int i = 0; i < n; i++) l[i] = roundf(nrand() * scale * 2.0f) * 0.5f;
        float T = (float)(0.3 + urand() * 2.0);
        int top_k = iter % 4 == 0 ? 0 : 1 + (int)(urand() * (iter % 2 ? 200 : 2000));
        float top_p = iter % 3 == 0 ? 1.0f : (float)urand();
        float min_p = iter % 5 < 2 ? 0.0f : (float)(urand() * 0.3);

        for (int i = 0; i < n; i++) idx[i] = i;
        g_sort_vals = l;
        qsort(idx, (size_t)n, sizeof *idx, cmp_idx);
        int k = top_k > 0 && top_k < n ? top_k : n;
        double mx = l[idx[0]], z = 0;
        for (int i = 0; i < k; i++) z += p[i] = exp(((double)l[idx[i]] - mx) / T);
        int cut = k;
        if (top_p < 1.0f) {
            double cum = 0;
            for (int i = 0; i < k; i++) {
                cum += p[i] / z;
                if (cum >= top_p) {
                    cut = i + 1;
                    break;
                }
            }
            if (cut < k) cut++; /* slack */
        }
        memset(in, 0, (size_t)n);
        for (int i = 0; i < cut; i++)
            if (min_p <= 0.0f || p[i] >= (double)min_p * (1.0 - 1e-6)) in[idx[i]] = 1;

        SamplerParams sp = plain(T, (uint64_t)iter);
        sp.top_k = top_k;
        sp.top_p = top_p;
        sp.min_p = min_p;
        Sampler *s = mk(&sp, n);
        int bad = 0;
        for (int d = 0; d < 200; d++)
            if (!in[sample_copy(s, l, w, n)]) bad++;
        if (bad) {
            if (bad_cfgs < 5)
                fprintf(stderr, "  T %g top_k %d top_p %g min_p %g: %d bad draws\n", (double)T,
                        top_k, (double)top_p, (double)min_p, bad);
            bad_cfgs++;
        }
        sampler_free(s);
    }
    CHECK(bad_cfgs == 0, "filters vs reference: %d bad configurations", bad_cfgs);
    /* partitioning top-k (k > 256) with ties at the boundary: lowest ids win */
    {
        for (int i = 0; i < n; i++) l[i] = 1.0f;
        l[2999] = 2.0f;
        SamplerParams sp = plain(1.0f, 11);
        sp.top_k = 300;
        Sampler *s = mk(&sp, n);
        int bad = 0, hi = 0;
        for (int d = 0; d < 3000; d++) {
            int t = sample_copy(s, l, w, n);
            if (t != 2999 && t > 298) bad++;
            if (t > hi && t != 2999) hi = t;
        }
        CHECK(bad == 0 && hi > 250, "top_k 300 ties -> lowest ids (bad %d, max id %d)", bad, hi);
        sampler_free(s);
    }
    free(l);
    free(w);
    free(idx);
    free(p);
    free(in);
}

/* ---- stop strings ---- */

typedef struct {
    char out[4096];
    size_t n;
    int hit;
} Collected;

static int push_str(StopMatcher *m, Collected *c, const char *t, size_t len) {
    const char *e;
    size_t el;
    int r = stop_matcher_push(m, t, len, &e, &el);
    if (el) memcpy(c->out + c->n, e, el);
    c->n += el;
    c->out[c->n] = 0;
    if (r == 1) c->hit = 1;
    return r;
}

static void flush_str(StopMatcher *m, Collected *c) {
    const char *e;
    size_t el;
    stop_matcher_flush(m, &e, &el);
    if (el) memcpy(c->out + c->n, e, el);
    c->n += el;
    c->out[c->n] = 0;
}

/* Feeds text in chunks of `chunk` bytes (0: one push) until a hit. */
static Collected run_stops(const char *const *stops, int ns, const char *text, size_t chunk) {
    StopMatcher m;
    Error err = {{0}};
    Collected c;
    memset(&c, 0, sizeof c);
    if (stop_matcher_init(&m, stops, ns, &err) != 0) {
        fprintf(stderr, "stop_matcher_init: %s\n", err.msg);
        c.hit = -1;
        return c;
    }
    size_t len = strlen(text);
    if (chunk == 0) chunk = len ? len : 1;
    for (size_t i = 0; i < len && !c.hit; i += chunk) {
        size_t k = len - i < chunk ? len - i : chunk;
        push_str(&m, &c, text + i, k);
    }
    if (!c.hit) flush_str(&m, &c);
    stop_matcher_free(&m);
    return c;
}

static void expect_stop(const char *const *stops, int ns, const char *text, const char *want,
                        int want_hit) {
    for (size_t chunk = 0; chunk <= 4; chunk++) {
        Collected c = run_stops(stops, ns, text, chunk);
        CHECK(c.hit == want_hit && strcmp(c.out, want) == 0,
              "stops on \"%s\" chunk %zu: got \"%s\" hit %d, want \"%s\" hit %d", text, chunk,
              c.out, c.hit, want, want_hit);
    }
}

static void test_stop_basic(void) {
    const char *s1[] = {"</s>"};
    expect_stop(s1, 1, "Hello</s>world", "Hello", 1);
    expect_stop(s1, 1, "Hello world", "Hello world", 0);
    expect_stop(s1, 1, "a</b></s", "a</b></s", 0);
    expect_stop(s1, 1, "</s>", "", 1);
    const char *s2[] = {"<|end|>"};
    expect_stop(s2, 1, "abc<|end|>def", "abc", 1);
    const char *s3[] = {"STOP", "END"};
    expect_stop(s3, 2, "fooENbarEND more STOP", "fooENbar", 1);
    expect_stop(s3, 2, "xSTOPyEND", "x", 1);
    /* overlapping stops: the earliest-ending match wins */
    const char *s4[] = {"abc", "bcd"};
    expect_stop(s4, 2, "abcd", "", 1);
    expect_stop(s4, 2, "xbcd", "x", 1);
    const char *s5[] = {"abcde", "bcd"};
    expect_stop(s5, 2, "abcde", "a", 1);
    /* same end: the longest wins */
    const char *s6[] = {"bc", "abc"};
    expect_stop(s6, 2, "xabcy", "x", 1);
    /* self-overlapping stop */
    const char *s7[] = {"aab"};
    expect_stop(s7, 1, "xaaab", "xa", 1);
    expect_stop(s7, 1, "aaaa", "aaaa", 0);
    /* UTF-8 (byte level) */
    const char *s8[] = {"\xe3\x80\x82"}; /* U+3002 */
    expect_stop(s8, 1, "\xe4\xbd\xa0\xe5\xa5\xbd\xe3\x80\x82\xe5\x86\x8d", "\xe4\xbd\xa0\xe5\xa5\xbd",
                1);
    /* no stops / empty stop ignored */
    expect_stop(NULL, 0, "anything", "anything", 0);
    const char *s9[] = {"", "zz"};
    expect_stop(s9, 2, "abzzc", "ab", 1);
}

static void test_stop_stream(void) {
    const char *stops[] = {"<|end|>"};
    StopMatcher m;
    Error err = {{0}};
    CHECK(stop_matcher_init(&m, stops, 1, &err) == 0, "init");
    Collected c;
    memset(&c, 0, sizeof c);
    /* single-byte pushes: held back while it may still be the stop */
    const char *text = "ab<|end|>cd";
    int hit_at = -1;
    for (int i = 0; text[i]; i++) {
        size_t before = c.n;
        if (push_str(&m, &c, text + i, 1) == 1) {
            hit_at = i;
            break;
        }
        if (i >= 2) CHECK(c.n == 2 && before == 2, "held back at byte %d", i);
    }
    CHECK(hit_at == 8 && strcmp(c.out, "ab") == 0, "single-byte stop: hit at %d, out \"%s\"",
          hit_at, c.out);

    /* no false holdback after a mismatch */
    memset(&c, 0, sizeof c);
    push_str(&m, &c, "<|e", 3);
    CHECK(c.n == 0, "prefix held (%zu)", c.n);
    push_str(&m, &c, "x", 1);
    CHECK(strcmp(c.out, "<|ex") == 0, "released after mismatch: \"%s\"", c.out);
    push_str(&m, &c, "<", 1);
    CHECK(strcmp(c.out, "<|ex") == 0, "new prefix held: \"%s\"", c.out);
    push_str(&m, &c, "<|", 2);
    CHECK(strcmp(c.out, "<|ex<") == 0, "re-anchored prefix: \"%s\"", c.out);
    flush_str(&m, &c);
    CHECK(strcmp(c.out, "<|ex<<|") == 0 && !c.hit, "flush: \"%s\"", c.out);
    /* flush again: nothing */
    const char *e;
    size_t el;
    stop_matcher_flush(&m, &e, &el);
    CHECK(el == 0, "second flush empty");
    /* large push grows the buffer */
    {
        size_t big = 3000;
        char *t = malloc(big + 8);
        memset(t, 'x', big);
        memcpy(t + big, "<|end", 6);
        memset(&c, 0, sizeof c);
        push_str(&m, &c, t, big + 5);
        CHECK(c.n == big && !c.hit, "large push emits %zu of %zu", c.n, big);
        push_str(&m, &c, "|>tail", 6);
        CHECK(c.hit && c.n == big, "large push then hit");
        free(t);
    }
    stop_matcher_free(&m);
}

/* Random streams against a brute-force reference: the output so far must be
 * exactly the text minus its longest suffix that is a prefix of a stop, and
 * the hit must be the earliest-ending (then longest) occurrence. */
static void test_stop_random(void) {
    int bad = 0;
    for (int iter = 0; iter < 3000; iter++) {
        char stopbuf[4][8];
        const char *stops[4];
        int ns = 1 + (int)(urand() * 4);
        for (int i = 0; i < ns; i++) {
            int len = 1 + (int)(urand() * 5);
            for (int j = 0; j < len; j++) stopbuf[i][j] = (char)('a' + (int)(urand() * 3));
            stopbuf[i][len] = 0;
            stops[i] = stopbuf[i];
        }
        char text[80];
        int tl = (int)(urand() * 60);
        for (int j = 0; j < tl; j++) text[j] = (char)('a' + (int)(urand() * 4));
        text[tl] = 0;
        /* reference */
        size_t best_end = (size_t)-1, best_start = 0;
        for (int i = 0; i < ns; i++) {
            const char *f = strstr(text, stops[i]);
            if (!f) continue;
            size_t st = (size_t)(f - text), en = st + strlen(stops[i]);
            if (en < best_end || (en == best_end && st < best_start)) {
                best_end = en;
                best_start = st;
            }
        }
        StopMatcher m;
        Error err = {{0}};
        if (stop_matcher_init(&m, stops, ns, &err) != 0) {
            bad++;
            continue;
        }
        Collected c;
        memset(&c, 0, sizeof c);
        size_t pos = 0;
        while (pos < (size_t)tl && !c.hit) {
            size_t k = 1 + (size_t)(urand() * 4);
            if (pos + k > (size_t)tl) k = (size_t)tl - pos;
            push_str(&m, &c, text + pos, k);
            pos += k;
            if (c.hit) break;
            /* safe prefix of text[0..pos) */
            size_t hold = 0;
            for (int i = 0; i < ns; i++) {
                size_t sl = strlen(stops[i]);
                for (size_t h = sl - 1 < pos ? sl - 1 : pos; h > hold; h--)
                    if (memcmp(text + pos - h, stops[i], h) == 0) {
                        hold = h;
                        break;
                    }
            }
            if (c.n != pos - hold || memcmp(c.out, text, c.n) != 0) {
                bad++;
                break;
            }
        }
        if (!c.hit) flush_str(&m, &c);
        int want_hit = best_end != (size_t)-1;
        size_t want_n = want_hit ? best_start : (size_t)tl;
        if (c.hit != want_hit || c.n != want_n || memcmp(c.out, text, want_n) != 0) {
            if (bad < 5)
                fprintf(stderr, "  random stop mismatch: text \"%s\" out \"%s\" hit %d\n", text,
                        c.out, c.hit);
            bad++;
        }
        stop_matcher_free(&m);
    }
    CHECK(bad == 0, "random stop streams: %d mismatches", bad);
}

int main(void) {
    test_defaults();
    test_greedy();
    test_top_k1();
    test_seed();
    test_distribution();
    test_exclusion();
    test_penalties();
    test_large_vocab();
    test_filters_vs_reference();
    test_stop_basic();
    test_stop_stream();
    test_stop_random();
    return check_report("sampler");
}
