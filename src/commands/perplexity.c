/* perplexity.c - `grok perplexity` (see perplexity.h).
 *
 * The file is tokenized as one text (as `grok run` encodes a prompt: no
 * BOS) and cut into consecutive windows of --ctx tokens (default 512, or
 * the model's trained context when that is smaller); the last window
 * may be shorter (one left-over token cannot be scored and is dropped). Each
 * window is evaluated from position 0 with a fresh cache, --batch tokens per
 * forward pass, and every token after the first of its window is scored:
 * NLL = logsumexp(logits) - logit[token], from the logits of the position
 * before it. perplexity = exp(mean NLL over the scored tokens).
 *
 * Scoring every position (not only the second half of each window, as
 * llama.cpp's perplexity does so that each scored token has at least ctx/2
 * tokens of context) makes the figure exactly reproducible from `grok eval`
 * logits of each window, and uses every token of a short file. Early
 * positions see little context, so the figure is higher than llama.cpp's for
 * the same --ctx; --second-half scores as llama.cpp does (its numbers then
 * compare, for a model and tokenization without BOS). */
#include "perplexity.h"
#include "dist_engine.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "forward.h"
#include "gguf.h"
#include "kv.h"
#include "model.h"
#include "quant.h"
#include "tokenizer.h"

/* Largest text file read (wikitext-103 train is ~540 MB). */
#define PPL_MAX_FILE ((size_t)1 << 30)

static const char PPL_USAGE[] =
    "usage: grok perplexity -m MODEL.gguf -f FILE [--ctx N] [--batch N] [-t N] [--kv TYPE] [--second-half]\n"
    "Perplexity of the model on a text file: the file's tokens (no BOS) are cut into\n"
    "windows of --ctx tokens (default 512, or the model's trained context if smaller;\n"
    "the last window may be shorter), each is evaluated from position 0, and every\n"
    "token after the first of each window is scored. perplexity = exp(mean negative\n"
    "log-likelihood). Progress goes to stderr, the result to stdout as\n"
    "\"perplexity: X.XXXX\".\n"
    "  --batch N       tokens per forward pass (default 512)\n"
    "  -t, --threads N threads (default: all cores)\n"
    "  --kv TYPE       KV cache type, " KV_TYPE_NAMES " (default f16)\n"
    "  --kv-k TYPE     --kv-v TYPE: the keys' / values' type alone\n"
    "  --device cpu|cuda|auto  (default auto: cuda when a GPU is present)   --gpu N  (default 0)\n"
    "  --second-half   score only the second half of each window, as llama.cpp does\n" DIST_USAGE;

static int fail(const char *msg) {
    fprintf(stderr, "grok perplexity: %s\n", msg);
    return 1;
}

static int parse_int(const char *flag, const char *v, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "grok perplexity: %s expects an integer in %ld..%ld, got '%s'\n", flag, lo, hi, v ? v : "");
        return -1;
    }
    *out = (int)x;
    return 0;
}


/* -log softmax(row)[target], in double. */
static double nll(const float *row, int n, int target) {
    float mx = row[0];
    for (int i = 1; i < n; i++)
        if (row[i] > mx) mx = row[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)row[i] - mx);
    return log(s) + mx - row[target];
}

int cmd_perplexity(int argc, char **argv, Dist *d) {
    const char *model_path = NULL, *file = NULL;
    int n_ctx = 0, n_batch = 512, n_threads = 0, second_half = 0;
    int kv_k = GGML_TYPE_F16, kv_v = GGML_TYPE_F16, device = GROK_DEVICE_AUTO, gpu = 0;
    Error derr = {{0}};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(PPL_USAGE, stdout);
            return 0;
        } else if (!strcmp(f, "--second-half")) {
            second_half = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "grok perplexity: %s needs a value (see grok perplexity --help)\n", f);
            return 2;
        }
        i++;
        if (!strcmp(f, "-m") || !strcmp(f, "--model")) model_path = v;
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) file = v;
        else if (!strcmp(f, "-c") || !strcmp(f, "--ctx")) {
            if (parse_int(f, v, 2, 1 << 24, &n_ctx)) return 2;
        } else if (!strcmp(f, "-b") || !strcmp(f, "--batch")) {
            if (parse_int(f, v, 1, 1 << 16, &n_batch)) return 2;
        } else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) {
            if (parse_int(f, v, 1, 1024, &n_threads)) return 2;
        } else if (!strcmp(f, "--kv") || !strcmp(f, "--kv-k") || !strcmp(f, "--kv-v")) {
            const int t = kv_type_parse(v);
            if (t < 0) {
                fprintf(stderr, "grok perplexity: %s must be one of " KV_TYPE_NAMES "\n", f);
                return 2;
            }
            if (strcmp(f, "--kv-v")) kv_k = t;
            if (strcmp(f, "--kv-k")) kv_v = t;
        } else if (!strcmp(f, "--device")) {
            if ((device = device_parse(v)) < 0) {
                fprintf(stderr, "grok perplexity: --device must be cpu, cuda or auto, not '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(f, "--gpu")) {
            if (parse_int(f, v, 0, 1023, &gpu)) return 2;
        } else if (dist_parse_flag(d, f, v, &derr) != 0) {
            if (derr.msg[0]) {
                fprintf(stderr, "grok perplexity: %s\n", derr.msg);
                return 2;
            }
        } else {
            fprintf(stderr, "grok perplexity: unknown option '%s' (see grok perplexity --help)\n", f);
            return 2;
        }
    }
    if (!model_path || !file) return fail("needs -m MODEL.gguf and -f FILE (see grok perplexity --help)");
    size_t text_len = 0;
    Error rerr = {{0}};
    char *text = read_file_capped(file, PPL_MAX_FILE, "text file", &text_len, &rerr);
    if (!text) {
        fprintf(stderr, "grok perplexity: %s\n", rerr.msg);
        return 1;
    }
    if (text_len == 0) {
        free(text);
        fprintf(stderr, "grok perplexity: %s is empty\n", file);
        return 1;
    }

    Error err = {{0}};
    int rc = 1, *ids = NULL;
    float *logits = NULL;
    Tokenizer *tok = NULL;
    Context *c = NULL;
    double t0 = time_now();
    Model *m = dist_model_load(d, model_path, &err);
    if (!m) {
        fail(err.msg);
        goto out;
    }
    tok = tokenizer_from_gguf(m->file, &err);
    if (!tok) {
        fail(err.msg);
        goto out;
    }
    const int V = m->cfg.n_vocab;
    if (tokenizer_n_vocab(tok) > V) {
        fail("the tokenizer has more tokens than the model's embedding table");
        goto out;
    }
    int n_tok = tokenizer_encode(tok, text, text_len, false, &ids, &err);
    if (n_tok < 0) {
        fail(err.msg);
        goto out;
    }
    if (n_tok < 2) {
        fprintf(stderr, "grok perplexity: %s is too short: %d token%s (at least 2 are needed)\n", file, n_tok,
                n_tok == 1 ? "" : "s");
        goto out;
    }
    if (n_ctx == 0) n_ctx = m->cfg.n_ctx_train < 512 ? m->cfg.n_ctx_train : 512;
    if (n_ctx > n_tok) n_ctx = n_tok; /* one window holds the whole file */
    if (n_ctx > m->cfg.n_ctx_train)
        fprintf(stderr, "grok perplexity: warning: --ctx %d exceeds the model's trained context %d\n", n_ctx,
                m->cfg.n_ctx_train);
    if (n_batch > n_ctx) n_batch = n_ctx;
    ContextParams cp = {n_ctx, 1, n_batch, n_threads, (uint32_t)kv_k, (uint32_t)kv_v, device, gpu, d};
    c = context_new(m, &cp, &err);
    logits = malloc((size_t)n_batch * V * sizeof(float));
    if (!c || !logits) {
        fail(c ? "out of memory" : err.msg);
        goto out;
    }
    if (context_device_note(c)[0])
        fprintf(stderr, "grok perplexity: note: computing on the CPU, the GPU did not take the model: %s\n",
                context_device_note(c));
    int n_win = n_tok / n_ctx + (n_tok % n_ctx >= 2);
    fprintf(stderr, "grok perplexity: %s: %d tokens, %d window%s of up to %d tokens, %s scored; loaded in %.2f s\n",
            file, n_tok, n_win, n_win == 1 ? "" : "s", n_ctx,
            second_half ? "second half of each" : "all positions after the first", time_now() - t0);
    double sum = 0, sum2 = 0;
    long long n_scored = 0;
    double t1 = time_now();
    for (int w = 0; w < n_win; w++) {
        const int start = w * n_ctx, len = n_tok - start < n_ctx ? n_tok - start : n_ctx;
        const int first = second_half ? (len / 2 > 1 ? len / 2 : 1) : 1; /* first scored position */
        for (int b = 0; b < len; b += n_batch) {
            const int nb = len - b < n_batch ? len - b : n_batch;
            if (forward_tokens(c, 0, ids + start + b, nb, b, logits, true, &err)) {
                fail(err.msg);
                goto out;
            }
            for (int j = 0; j < nb; j++) {
                const int p = b + j + 1; /* the token predicted by row j */
                if (p < first || p >= len) continue;
                double x = nll(logits + (size_t)j * V, V, ids[start + p]);
                sum += x;
                sum2 += x * x;
                n_scored++;
            }
        }
        double el = time_now() - t1;
        fprintf(stderr, "[%d/%d] perplexity %.4f (%lld tokens scored, %.1f tok/s)\n", w + 1, n_win,
                exp(sum / (double)n_scored), n_scored, (start + len) / (el > 0 ? el : 1e-9));
    }
    double mean = sum / (double)n_scored, var = sum2 / (double)n_scored - mean * mean;
    double se = n_scored > 1 && var > 0 ? sqrt(var / (double)(n_scored - 1)) : 0;
    fprintf(stderr, "grok perplexity: mean NLL %.6f +/- %.6f nats over %lld tokens; %.2f s, %d threads, %s\n", mean,
            se, n_scored, time_now() - t1, context_n_threads(c), quant_simd_name());
    printf("perplexity: %.4f\n", exp(mean));
    rc = 0;
out:
    free(logits);
    free(ids);
    free(text);
    context_free(c);
    tokenizer_free(tok);
    model_free(m);
    return rc;
}
