/* bench.c - `grok bench`, see bench.h.
 *
 * pp N : one forward pass over N prompt tokens from position 0 (batches of
 *        at most 512), logits of the last one only, as a prompt is run.
 * tg N : N single-token forward passes at positions 0..N-1, each with its
 *        logits (what generation costs, sampling excluded), as llama-bench;
 *        with --parallel P, P sequences at once (a server's P slots): N
 *        forward passes of P tokens, one per sequence, P x N tokens. With
 *        the layers split over R ranks the P sequences go in min(R, P)
 *        groups whose batches are in flight at once (forward_submit), as
 *        grok serve's slots, so that every rank has work.
 * The token ids are fixed pseudo-random ids. A warm-up pass (which also
 * faults the mapped weights in) precedes the timed repetitions. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bench.h"
#include "dist_engine.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#if defined(__APPLE__)
#include <sys/resource.h>
#endif

#include "common.h"
#include "forward.h"
#include "gguf.h"
#include "kv.h"
#include "model.h"
#include "quant.h"
#include "threadpool.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define BENCH_X86 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define BENCH_ARM 1
#endif

#define MAX_THREAD_SETS 16
#define MAX_PARALLEL 256 /* --parallel: sequences at once, as grok serve's slots */
#define BW_BYTES ((size_t)1 << 30) /* the bandwidth buffer: far beyond any cache */

/* ---- memory read bandwidth ---------------------------------------------- */

typedef struct {
    const uint8_t *buf;
    size_t bytes;
    uint64_t sums[64]; /* one per thread, so the reads cannot be optimised out */
} BwTask;

#ifdef BENCH_X86
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint8_t *p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + i + 32)));
        c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(p + i + 64)));
        d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    uint64_t r[4];
    memcpy(r, &a, sizeof r);
    return r[0] + r[1] + r[2] + r[3];
}
#endif

#ifdef BENCH_ARM
/* NEON is in every aarch64 CPU: 4 independent 128-bit loads per step */
static uint64_t sum_neon(const uint8_t *p, size_t n) {
    uint64x2_t a = vdupq_n_u64(0), b = a, c = a, d = a;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        a = vaddq_u64(a, vld1q_u64((const uint64_t *)(p + i)));
        b = vaddq_u64(b, vld1q_u64((const uint64_t *)(p + i + 16)));
        c = vaddq_u64(c, vld1q_u64((const uint64_t *)(p + i + 32)));
        d = vaddq_u64(d, vld1q_u64((const uint64_t *)(p + i + 48)));
    }
    return vaddvq_u64(vaddq_u64(vaddq_u64(a, b), vaddq_u64(c, d)));
}
#endif

static uint64_t sum_scalar(const uint8_t *p, size_t n) {
    uint64_t s = 0;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        s += v;
    }
    return s;
}

static void bw_fn(void *ctx, int ith, int nth) {
    BwTask *t = ctx;
    const size_t per = (t->bytes / (size_t)nth) & ~(size_t)127;
    const uint8_t *p = t->buf + per * (size_t)ith;
    uint64_t s;
#ifdef BENCH_X86
    s = quant_simd_level() >= SIMD_AVX2 ? sum_avx2(p, per) : sum_scalar(p, per);
#elif defined(BENCH_ARM)
    s = quant_simd_level() >= SIMD_NEON ? sum_neon(p, per) : sum_scalar(p, per);
#else
    s = sum_scalar(p, per);
#endif
    if (ith < 64) t->sums[ith] = s;
}

/* Best of 5 passes over a 1 GiB buffer with n threads, in GB/s; < 0 on
 * allocation failure. */
static double measure_bandwidth(int n_threads, Error *err) {
    uint8_t *buf = aligned_alloc(4096, BW_BYTES);
    if (!buf) {
        err_set(err, "out of memory for the bandwidth buffer");
        return -1.0;
    }
    ThreadPool *tp = tp_create(n_threads, err);
    if (!tp) {
        free(buf);
        return -1.0;
    }
    BwTask t = {buf, BW_BYTES, {0}};
    tp_run(tp, bw_fn, &t); /* first touch, in parallel: pages land near their readers */
    memset(buf, 1, BW_BYTES);
    double best = 0.0;
    for (int r = 0; r < 5; r++) {
        const double t0 = time_now();
        tp_run(tp, bw_fn, &t);
        const double dt = time_now() - t0;
        if (dt > 0 && BW_BYTES / dt / 1e9 > best) best = BW_BYTES / dt / 1e9;
    }
    tp_free(tp);
    free(buf);
    return best;
}

/* ---- the model ---------------------------------------------------------- */

static double tensor_bytes(const Tensor *t) { return t->data ? (double)t->rows * (double)t->row_bytes : 0.0; }

/* Bytes of weights one generated token reads: every attention matrix, the
 * router, n_expert_used of the n_expert experts of each layer, the dense
 * MLP (Grok-2), the norms, one embedding row and the output matrix. */
static double weight_bytes_per_token(const Model *m) {
    const ModelConfig *c = &m->cfg;
    double b = (double)m->tok_embd.row_bytes + tensor_bytes(&m->output) + 4.0 * c->n_embd;
    const double used = (double)c->n_expert_used / (double)c->n_expert;
    for (int i = 0; i < c->n_layer; i++) {
        const Layer *L = &m->layers[i];
        b += tensor_bytes(&L->wq) + tensor_bytes(&L->wk) + tensor_bytes(&L->wv) + tensor_bytes(&L->wqkv) +
             tensor_bytes(&L->wo);
        b += 4.0 * c->n_expert * c->n_embd + 4.0 * 4 * c->n_embd; /* router, norms */
        b += used * (tensor_bytes(&L->gate_exps) + tensor_bytes(&L->up_exps) + tensor_bytes(&L->down_exps));
        b += tensor_bytes(&L->ffn_gate) + tensor_bytes(&L->ffn_up) + tensor_bytes(&L->ffn_down);
    }
    return b;
}

/* The type holding most of the weight bytes, or the llama.cpp file type. */
static const char *model_type_name(const Model *m) {
    static const struct {
        uint32_t ftype;
        const char *name;
    } FT[] = {{0, "F32"},     {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},    {8, "Q5_0"},
              {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"}, {13, "Q3_K_L"}, {14, "Q4_K_S"},
              {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"}, {18, "Q6_K"},   {32, "BF16"}};
    uint32_t ft;
    Error err;
    if (gguf_get_u32(m->file, "general.file_type", &ft, &err) == 1)
        for (size_t i = 0; i < sizeof FT / sizeof FT[0]; i++)
            if (FT[i].ftype == ft) return FT[i].name;
    return "?";
}

static long vm_hwm_kib(void) {
#if defined(__APPLE__)
    struct rusage ru; /* macOS: ru_maxrss is in bytes */
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (long)(ru.ru_maxrss / 1024) : -1;
#else
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) v = strtol(line + 6, NULL, 10);
    fclose(f);
    return v;
#endif
}

typedef struct {
    double mean, sd;
} Stat;

static Stat stats(const double *v, int n) {
    Stat s = {0, 0};
    for (int i = 0; i < n; i++) s.mean += v[i];
    s.mean /= n;
    for (int i = 0; i < n; i++) s.sd += (v[i] - s.mean) * (v[i] - s.mean);
    s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0.0;
    return s;
}

/* One pp run (n tokens) and/or one tg run (g tokens): tokens per second. */
static int run_pp(Context *c, const int *toks, int n, int depth, float *logits, double *tps, Error *err) {
    const double t0 = time_now();
    if (forward_tokens(c, 0, toks, n, depth, logits, false, err)) return -1;
    *tps = n / (time_now() - t0);
    return 0;
}

/* Sequences [k0, k1) at step i of a tg run: one token each. */
static Batch tg_batch(const int *toks, int g, int i, int depth, int k0, int k1, int *tok, int *pos, int *seq,
                      bool *out) {
    for (int k = k0; k < k1; k++)
        tok[k] = toks[(i + 7 * k) % g], pos[k] = depth + i, seq[k] = k, out[k] = true;
    return (Batch){k1 - k0, tok + k0, pos + k0, seq + k0, out + k0};
}

/* The number of groups a tg run of par sequences keeps in flight at once:
 * the layers split over N ranks pipelines up to N (forward_submit), as
 * grok serve's slots; otherwise 1 (one forward pass per step). */
static int tg_groups(const Context *c, int par) {
    const int d = forward_depth(c);
    return par > 1 && d > 1 ? (d < par ? d : par) : 1;
}

static int run_tg(Context *c, const int *toks, int g, int par, int depth, float *logits, double *tps, Error *err) {
    const double t0 = time_now();
    int tok[MAX_PARALLEL], pos[MAX_PARALLEL], seq[MAX_PARALLEL];
    bool out[MAX_PARALLEL];
    /* group k holds sequences [k par / G, (k + 1) par / G): every group's
     * first step is submitted, then each collected group's next step (its
     * own arrays: submit copies what it needs); with one group that is one
     * forward pass per step */
    const int G = tg_groups(c, par);
    for (int k = 0; k < G; k++) {
        const Batch b = tg_batch(toks, g, 0, depth, k * par / G, (k + 1) * par / G, tok, pos, seq, out);
        if (forward_submit(c, &b, err)) return -1;
    }
    for (int i = 0; i < g; i++)
        for (int k = 0; k < G; k++) {
            if (forward_collect(c, logits, err)) return -1;
            if (i + 1 == g) continue;
            const Batch b = tg_batch(toks, g, i + 1, depth, k * par / G, (k + 1) * par / G, tok, pos, seq, out);
            if (forward_submit(c, &b, err)) return -1;
        }
    *tps = (double)g * par / (time_now() - t0);
    return 0;
}

static int parse_threads(const char *s, int *out) {
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 1024 || n == MAX_THREAD_SETS) return -1;
        out[n++] = (int)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return n;
}

static const char USAGE[] =
    "usage: grok bench -m MODEL.gguf [-p 512] [-n 128] [-t 1,2] [-r 5] [-d 0] [--parallel 1] [--kv TYPE] [--no-bw]\n"
    "Prompt processing (pp) and generation (tg) speed, like llama-bench: tokens/s\n"
    "as mean +- standard deviation over the repetitions, for each thread count.\n"
    "For generation also: GB/s of weights read and that as a fraction of the\n"
    "machine's read bandwidth (measured here with the same thread count).\n"
    "  -p N      prompt tokens (0 = skip pp)        -n N   generated tokens (0 = skip tg)\n"
    "  -t LIST   thread counts, e.g. 1,2 (default: all cores)\n"
    "  -r N      repetitions (default 5)\n"
    "  -d N      depth: both tests run after N tokens already in the KV cache (default 0)\n"
    "  --parallel P  tg runs P sequences at once, one token each per forward pass (as\n"
    "            grok serve's slots); t/s counts every sequence's tokens (default 1); under\n"
    "            mpirun with --split layers, in up to one group per rank kept in flight\n"
    "  --kv T    KV cache type, " KV_TYPE_NAMES " (default f16); --kv-k T, --kv-v T: one side\n"
    "  --no-bw   skip the bandwidth measurement\n"
    "  --device cpu|cuda|auto  (default auto: cuda when a GPU is present; on cuda -t is\n"
    "            ignored and the bandwidth is not measured)   --gpu N  (default 0)\n" DIST_USAGE;

static int bfail(const char *msg) {
    fprintf(stderr, "grok bench: %s\n", msg);
    return 1;
}

int cmd_bench(int argc, char **argv, Dist *d) {
    const char *path = NULL;
    int n_pp = 512, n_tg = 128, reps = 5, depth = 0, threads[MAX_THREAD_SETS], n_sets = 0, do_bw = 1, par = 1;
    int kv_k = GGML_TYPE_F16, kv_v = GGML_TYPE_F16, device = GROK_DEVICE_AUTO, gpu = 0;
    Error derr = {{0}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "--no-bw")) {
            do_bw = 0;
            continue;
        }
        if (!v) {
            fprintf(stderr, "grok bench: %s needs a value (see grok bench --help)\n", a);
            return 2;
        }
        long x = strtol(v, &end, 10);
        const bool num = end != v && *end == 0;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) path = v;
        else if (!strcmp(a, "-p") && num && x >= 0 && x <= 65536) n_pp = (int)x;
        else if (!strcmp(a, "-n") && num && x >= 0 && x <= 65536) n_tg = (int)x;
        else if (!strcmp(a, "-r") && num && x >= 1 && x <= 1000) reps = (int)x;
        else if (!strcmp(a, "-d") && num && x >= 0 && x <= (1 << 20)) depth = (int)x;
        else if (!strcmp(a, "--parallel") && num && x >= 1 && x <= MAX_PARALLEL) par = (int)x;
        else if (!strcmp(a, "-t") && (n_sets = parse_threads(v, threads)) > 0) {
        } else if ((!strcmp(a, "--kv") || !strcmp(a, "--kv-k") || !strcmp(a, "--kv-v")) && kv_type_parse(v) >= 0) {
            if (strcmp(a, "--kv-v")) kv_k = kv_type_parse(v);
            if (strcmp(a, "--kv-k")) kv_v = kv_type_parse(v);
        } else if (!strcmp(a, "--device") && device_parse(v) >= 0) {
            device = device_parse(v);
        } else if (!strcmp(a, "--gpu") && num && x >= 0 && x <= 1023) {
            gpu = (int)x;
        } else if (dist_parse_flag(d, a, v, &derr) > 0) {
        } else {
            fprintf(stderr, "grok bench: bad option or value: %s %s (see grok bench --help)\n", a, v);
            return 2;
        }
        i++;
    }
    if (!path) return bfail("no model given (-m MODEL.gguf)");
    if (n_sets <= 0) threads[0] = cpu_count(), n_sets = 1;
    if (n_pp == 0 && n_tg == 0) return bfail("nothing to measure (-p 0 and -n 0)");
    const bool on_gpu = device == GROK_DEVICE_CUDA || (device == GROK_DEVICE_AUTO && cuda_device_count(NULL) > 0);
    if (on_gpu) do_bw = 0, threads[0] = 1, n_sets = 1; /* the CPU's read bandwidth says nothing of a GPU's */

    Error err = {{0}};
    Model *m = dist_model_load(d, path, &err);
    if (!m) return bfail(err.msg);
    struct stat st;
    const double file_bytes = stat(path, &st) == 0 ? (double)st.st_size : (double)gguf_total_size(m->file);
    uint64_t n_params, n_active;
    model_param_counts(m, &n_params, &n_active);
    const double wpt = weight_bytes_per_token(m);
    const int V = m->cfg.n_vocab, n_tok = n_pp > n_tg ? n_pp : n_tg;
    int *toks = malloc((size_t)(n_tok > 0 ? n_tok : 1) * sizeof(int));
    float *logits = malloc((size_t)V * (size_t)par * sizeof(float));
    double *pp = malloc((size_t)reps * sizeof(double)), *tg = malloc((size_t)reps * sizeof(double));
    int rc = 1;
    DistRankInfo *ri = NULL; /* several processes: one per rank */
    if (!toks || !logits || !pp || !tg) {
        bfail("out of memory");
        goto out;
    }
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n_tok; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        toks[i] = 1 + (int)(s % (uint64_t)(V > 1 ? V - 1 : 1));
    }
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    printf("model: %s (%s, %.2f GiB, %.2f B params, %.2f B active), %s kernels, KV K %s V %s\n", base,
           model_type_name(m), file_bytes / 1073741824.0, n_params / 1e9, n_active / 1e9,
           on_gpu ? "cuda" : quant_simd_name(),
           type_info((uint32_t)kv_k)->name, type_info((uint32_t)kv_v)->name);
    printf("weights read per generated token: %.1f MiB\n\n", wpt / 1048576.0);
    long hwm_kib = -1;
    double dist_tg_bytes = 0; /* several processes: bytes rank 0 exchanged per generated token */
    size_t kv_bytes = 0;
    Stat res_pp[MAX_THREAD_SETS], res_tg[MAX_THREAD_SETS];
    int groups = 1; /* tg with --parallel: batches in flight at once */
    for (int si = 0; si < n_sets; si++) {
        ContextParams cp = {depth + (n_pp > n_tg ? n_pp : n_tg) + 16, par, 512, threads[si], (uint32_t)kv_k,
                            (uint32_t)kv_v, device, gpu, d};
        Context *c = context_new(m, &cp, &err);
        if (!c) {
            bfail(err.msg);
            goto out;
        }
        if (si == 0 && context_device_note(c)[0])
            printf("note: computing on the CPU, the GPU did not take the model: %s\n", context_device_note(c));
        kv_bytes = context_kv_bytes(c);
        groups = tg_groups(c, par);
        if (si == 0)
            printf("KV cache: %.1f MiB for %d positions (%.1f KiB per token)\n\n", kv_bytes / 1048576.0,
                   context_n_ctx(c), kv_bytes / 1024.0 / context_n_ctx(c));
        double w;
        if (depth > 0) { /* the context the tests run after, computed once */
            int *dt = malloc((size_t)depth * sizeof(int));
            if (!dt) {
                bfail("out of memory");
                context_free(c);
                goto out;
            }
            for (int i = 0; i < depth; i++) dt[i] = toks[i % n_tok];
            const int rc_d = forward_tokens(c, 0, dt, depth, 0, logits, false, &err);
            free(dt);
            if (rc_d) {
                bfail(err.msg);
                context_free(c);
                goto out;
            }
        }
        /* warm-up: faults the weights in, wakes the threads */
        if ((n_pp > 0 && run_pp(c, toks, n_pp < 32 ? n_pp : 32, depth, logits, &w, &err)) ||
            (n_tg > 0 && run_tg(c, toks, n_tg < 4 ? n_tg : 4, par, depth, logits, &w, &err))) {
            bfail(err.msg);
            context_free(c);
            goto out;
        }
        for (int r = 0; r < reps; r++) { /* pp and tg alternate, as the load on the machine drifts */
            if (n_pp > 0 && run_pp(c, toks, n_pp, depth, logits, &pp[r], &err)) {
                bfail(err.msg);
                context_free(c);
                goto out;
            }
            const uint64_t b0 = dist_bytes(d);
            if (n_tg > 0 && run_tg(c, toks, n_tg, par, depth, logits, &tg[r], &err)) {
                bfail(err.msg);
                context_free(c);
                goto out;
            }
            if (n_tg > 0) dist_tg_bytes = (double)(dist_bytes(d) - b0) / n_tg / par;
        }
        res_pp[si] = stats(pp, reps);
        res_tg[si] = stats(tg, reps);
        context_free(c);
    }
    hwm_kib = vm_hwm_kib(); /* before the bandwidth buffer exists */
    if (dist_multi(d)) { /* several processes: each one's share and memory, before that buffer too */
        if (!(ri = calloc((size_t)dist_size(d), sizeof *ri)) || dist_rank_info(d, m, ri, &err)) {
            bfail(ri ? err.msg : "out of memory");
            goto out;
        }
    }
    printf("| threads | test   |            t/s | weights GB/s | read BW GB/s | of BW |\n");
    printf("| ------: | :----- | -------------: | -----------: | -----------: | ----: |\n");
    for (int si = 0; si < n_sets; si++) {
        double bw = -1.0;
        if (do_bw && n_tg > 0 && par == 1) {
            bw = measure_bandwidth(threads[si], &err);
            if (bw < 0) fprintf(stderr, "grok bench: %s (bandwidth not measured)\n", err.msg);
        }
        if (n_pp > 0)
            printf("| %7d | pp%-4d | %7.2f ± %5.2f |              |              |       |\n", threads[si], n_pp,
                   res_pp[si].mean, res_pp[si].sd);
        if (n_tg > 0 && par > 1) { /* several sequences: the weights a pass reads are shared, not per token */
            char name[32];
            snprintf(name, sizeof name, "tg%dx%d", n_tg, par);
            printf("| %7d | %-6s | %7.2f ± %5.2f |              |              |       |\n", threads[si], name,
                   res_tg[si].mean, res_tg[si].sd);
        } else if (n_tg > 0) {
            const Stat g = res_tg[si];
            const double gbs = wpt * g.mean / 1e9;
            if (bw > 0)
                printf("| %7d | tg%-4d | %7.2f ± %5.2f | %12.2f | %12.2f | %4.0f%% |\n", threads[si], n_tg, g.mean, g.sd, gbs,
                       bw, 100.0 * gbs / bw);
            else
                printf("| %7d | tg%-4d | %7.2f ± %5.2f | %12.2f |              |       |\n", threads[si], n_tg, g.mean, g.sd, gbs);
        }
        fflush(stdout);
    }
    if (n_tg > 0 && groups > 1)
        printf("\ntg%dx%d: %d sequences in %d groups whose batches are in flight at once (the layers split's "
               "pipeline over %d ranks)\n", n_tg, par, par, groups, dist_size(d));
    if (hwm_kib > 0)
        printf("\npeak RSS %.1f MiB vs file %.1f MiB + KV cache %.1f MiB = %.1f MiB (%+.1f%%)\n", hwm_kib / 1024.0,
               file_bytes / 1048576.0, kv_bytes / 1048576.0, (file_bytes + kv_bytes) / 1048576.0,
               100.0 * (hwm_kib * 1024.0 / (file_bytes + kv_bytes) - 1.0));
    if (ri) { /* several processes: each one's share and memory */
        const int n = dist_size(d);
        printf("\n%d ranks, %s split; rank 0 exchanged %.1f KiB per generated token\n", n,
               dist_split(d) == DIST_SPLIT_LAYERS ? "layers" : "experts", dist_tg_bytes / 1024.0);
        printf("| rank | host             | share               | weights MiB | RSS MiB | peak RSS MiB |\n");
        printf("| ---: | :--------------- | :------------------ | ----------: | ------: | -----------: |\n");
        for (int r = 0; r < n; r++) {
            char share[64];
            if (dist_split(d) == DIST_SPLIT_LAYERS)
                snprintf(share, sizeof share, "layers %d..%d", ri[r].layer0, ri[r].layer1 - 1);
            else snprintf(share, sizeof share, "FFN cols %d..%d", ri[r].ff0, ri[r].ff0 + ri[r].n_ff - 1);
            printf("| %4d | %-16.16s | %-19s | %11.1f | %7.1f | %12.1f |\n", r, ri[r].host, share, ri[r].weight_mib,
                   ri[r].rss_mib, ri[r].hwm_mib);
        }
    }
    rc = 0;
out:
    free(ri);
    free(toks), free(logits), free(pp), free(tg);
    model_free(m);
    return rc;
}
