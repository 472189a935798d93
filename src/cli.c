/* cli.c - the `grok` command: run, info, tokenize, detokenize, eval, new.
 * Each command parses its own flags, prints errors as "grok CMD: message"
 * and returns a non-zero exit status on failure. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <stdbool.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "convert.h"
#include "dist_engine.h"
#include "forward.h"
#include "gguf.h"
#include "grammar.h"
#include "json_schema.h"
#include "kv.h"
#include "model.h"
#include "quant.h"
#include "perplexity.h"
#include "quantize.h"
#include "repl.h"
#include "bench.h"
#include "sampler.h"
#include "server.h"
#include "synth.h"
#include "threadpool.h"
#include "tokenizer.h"

#define GROK_VERSION "0.1.0"
#define MAX_STOPS 8
/* run -f: a prompt file of more than this many bytes per context token
 * (--ctx, else 131072, the largest Grok context) cannot fit and is refused
 * before it is read */
#define RUN_FILE_BYTES_PER_TOKEN 32
#define TOKENIZE_MAX_FILE ((size_t)1 << 30)

static int fail(const char *cmd, const char *msg) {
    fprintf(stderr, "grok %s: %s\n", cmd, msg);
    return 1;
}

/* ---- flag parsing ------------------------------------------------------ */

typedef struct {
    const char *cmd;
    int argc, i;
    char **argv;
    int bad;
} Args;

/* The value after flag argv[i]; sets a->bad on a missing value. */
static const char *arg_value(Args *a) {
    if (a->i + 1 >= a->argc) {
        fprintf(stderr, "grok %s: %s needs a value\n", a->cmd, a->argv[a->i]);
        a->bad = 1;
        return NULL;
    }
    return a->argv[++a->i];
}

static long long arg_int(Args *a, long long lo, long long hi) {
    const char *flag = a->argv[a->i], *v = arg_value(a);
    if (!v) return lo;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "grok %s: %s expects an integer in %lld..%lld, got '%s'\n", a->cmd, flag, lo, hi, v);
        a->bad = 1;
        return lo;
    }
    return x;
}

static double arg_float(Args *a, double lo, double hi) {
    const char *flag = a->argv[a->i], *v = arg_value(a);
    if (!v) return lo;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || *end || end == v || !(x >= lo && x <= hi)) {
        fprintf(stderr, "grok %s: %s expects a number in %g..%g, got '%s'\n", a->cmd, flag, lo, hi, v);
        a->bad = 1;
        return lo;
    }
    return x;
}

static int is_flag(const Args *a, const char *s1, const char *s2) {
    const char *f = a->argv[a->i];
    return strcmp(f, s1) == 0 || (s2 && strcmp(f, s2) == 0);
}

static int unknown_flag(Args *a) {
    fprintf(stderr, "grok %s: unknown option '%s' (see grok %s --help)\n", a->cmd, a->argv[a->i], a->cmd);
    a->bad = 1;
    return 0;
}

static bool id_space(char c) { return c == ' ' || c == '\n' || c == '\t'; }

/* Parses "1,2,3" or "1 2 3": ids separated by spaces and at most one comma
 * (an empty item, as in "1,,2" or "1,", is an error). Returns the count or
 * -1. */
static int parse_ids(const char *s, int **out) {
    int cap = 16, n = 0;
    int *ids = malloc((size_t)cap * sizeof(int));
    if (!ids) return -1;
    while (id_space(*s)) s++;
    while (*s) {
        if (n > 0) { /* a separator: spaces, at most one comma, spaces */
            const char *p = s;
            while (id_space(*s)) s++;
            if (*s == ',') s++;
            while (id_space(*s)) s++;
            if (s == p) {
                free(ids);
                return -1;
            }
            if (!*s) {
                if (s[-1] == ',' || memchr(p, ',', (size_t)(s - p))) { /* a trailing comma */
                    free(ids);
                    return -1;
                }
                break;
            }
        }
        if (!(*s >= '0' && *s <= '9')) {
            free(ids);
            return -1;
        }
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT_MAX) {
            free(ids);
            return -1;
        }
        if (n == cap) {
            int *t = realloc(ids, (size_t)(cap *= 2) * sizeof(int));
            if (!t) {
                free(ids);
                return -1;
            }
            ids = t;
        }
        ids[n++] = (int)v;
        s = end;
    }
    *out = ids;
    return n;
}

/* --kv T (keys and values), --kv-k T, --kv-v T: true if the flag was one of
 * them (a.bad is set for a bad type). */
static bool kv_flag(Args *a, int *k, int *v) {
    const bool both = is_flag(a, "--kv", NULL);
    const bool ko = !both && is_flag(a, "--kv-k", NULL);
    const bool vo = !both && !ko && is_flag(a, "--kv-v", NULL);
    if (!both && !ko && !vo) return false;
    const char *flag = a->argv[a->i], *s = arg_value(a);
    if (!s) return true;
    const int t = kv_type_parse(s);
    if (t < 0) {
        fprintf(stderr, "grok %s: %s must be one of " KV_TYPE_NAMES ", not '%s'\n", a->cmd, flag, s);
        a->bad = 1;
        return true;
    }
    if (both || ko) *k = t;
    if (both || vo) *v = t;
    return true;
}

/* --split / --dist-timeout / --micro-batch (dist.h): true if the flag was
 * one of them (a.bad is set for a bad value). */
static bool dist_flag(Args *a, Dist *d) {
    if (!is_flag(a, "--split", NULL) && !is_flag(a, "--dist-timeout", NULL) && !is_flag(a, "--micro-batch", NULL))
        return false;
    const char *flag = a->argv[a->i], *v = arg_value(a);
    Error err = {{0}};
    if (v && dist_parse_flag(d, flag, v, &err) < 0) {
        fprintf(stderr, "grok %s: %s\n", a->cmd, err.msg);
        a->bad = 1;
    }
    return true;
}

/* ---- shared loading ---------------------------------------------------- */

typedef struct {
    const char *model_path;
    int n_threads, n_ctx, n_batch;
    int kv_k, kv_v;
    int device, gpu; /* GROK_DEVICE_*, CUDA device index */
    Dist *dist;        /* the processes that run the model (one without mpirun) */
} LoadOpts;

/* --device cpu|cuda|auto, --gpu N: true if the flag was one of them (a.bad
 * is set for a bad value). */
static bool device_flag(Args *a, int *device, int *gpu) {
    if (is_flag(a, "--gpu", NULL)) {
        *gpu = (int)arg_int(a, 0, 1023);
        return true;
    }
    if (!is_flag(a, "--device", NULL)) return false;
    const char *s = arg_value(a);
    if (!s) return true;
    const int d = device_parse(s);
    if (d < 0) {
        fprintf(stderr, "grok %s: --device must be cpu, cuda or auto, not '%s'\n", a->cmd, s);
        a->bad = 1;
        return true;
    }
    *device = d;
    return true;
}

static int load(const char *cmd, const LoadOpts *o, Model **mp, Context **cp_out, Tokenizer **tp, double *load_s) {
    Error err = {{0}};
    double t0 = time_now();
    Model *m = dist_model_load(o->dist, o->model_path, &err);
    if (!m) return fail(cmd, err.msg);
    if (tp) {
        *tp = tokenizer_from_gguf(m->file, &err);
        if (!*tp) {
            model_free(m);
            return fail(cmd, err.msg);
        }
        if (tokenizer_n_vocab(*tp) > m->cfg.n_vocab) {
            tokenizer_free(*tp);
            model_free(m);
            return fail(cmd, "the tokenizer has more tokens than the model's embedding table");
        }
    }
    if (o->n_ctx > m->cfg.n_ctx_train)
        fprintf(stderr, "grok %s: warning: --ctx %d exceeds the model's trained context %d\n", cmd, o->n_ctx,
                m->cfg.n_ctx_train);
    ContextParams cp = {o->n_ctx, 1, o->n_batch, o->n_threads, (uint32_t)o->kv_k, (uint32_t)o->kv_v, o->device, o->gpu, o->dist};
    Context *c = context_new(m, &cp, &err);
    if (!c) {
        if (tp) tokenizer_free(*tp);
        model_free(m);
        return fail(cmd, err.msg);
    }
    dist_print_shares(o->dist, m, cmd, stderr);
    *mp = m;
    *cp_out = c;
    if (context_device_note(c)[0])
        fprintf(stderr, "grok %s: note: computing on the CPU, the GPU did not take the model: %s\n", cmd,
                context_device_note(c));
    if (load_s) *load_s = time_now() - t0;
    return 0;
}

/* ---- grok run ---------------------------------------------------------- */

static const char RUN_USAGE[] =
    "usage: grok run -m MODEL.gguf -p PROMPT [options]\n"
    "Generates text from a prompt, streaming it to stdout; timings go to stderr.\n"
    "  -m, --model FILE        GGUF model\n"
    "  -p, --prompt TEXT       prompt (no BOS is added, as in the Grok-1 reference)\n"
    "  -f, --file FILE         read the prompt from a file\n"
    "  -n, --n-predict N       tokens to generate (default 128; stops early at EOS)\n"
    "  --temp T                temperature, 0 = greedy (default 0.8)\n"
    "  --top-k K               (default 40, 0 = off)\n"
    "  --top-p P               (default 0.95, 1 = off)\n"
    "  --min-p P               (default 0.05, 0 = off)\n"
    "  --repeat-penalty R      (default 1.0 = off)  --repeat-last-n N (default 64)\n"
    "  --presence-penalty P    --frequency-penalty P (default 0)\n"
    "  --seed S                random seed (default 42); same seed and settings, same text\n"
    "  --stop TEXT             stop when TEXT is generated (up to 8)\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "  --ctx N                 context size (default: min(model's, 4096))\n"
    "  --kv TYPE               KV cache type, " KV_TYPE_NAMES " (default f16)\n"
    "  --kv-k TYPE, --kv-v TYPE  keys' / values' type alone\n"
    "  --batch N               prompt tokens per forward pass (default 512)\n"
    "  --device cpu|cuda|auto  where to compute (default auto: cuda when a GPU is present)\n"
    "  --gpu N                 which CUDA GPU (default 0)\n"
    "  --ignore-eos            keep generating after EOS (benchmarks)\n"
    "  --grammar FILE          constrain the output to a GBNF grammar (llama.cpp's syntax)\n"
    "  --json-schema FILE      constrain the output to JSON valid under a JSON schema\n"
    "  --no-stats              do not print timings\n" DIST_USAGE;


static int cmd_run(int argc, char **argv, Dist *d) {
    Args a = {"run", argc, 0, argv, 0};
    LoadOpts o = {NULL, 0, 0, 0, GGML_TYPE_F16, GGML_TYPE_F16, GROK_DEVICE_AUTO, 0, d};
    SamplerParams sp = sampler_defaults();
    const char *prompt = NULL, *prompt_file = NULL, *stops[MAX_STOPS], *grammar_file = NULL, *schema_file = NULL;
    int n_stops = 0, n_predict = 128, stats = 1, ignore_eos = 0;
    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        if (is_flag(&a, "-h", "--help")) {
            fputs(RUN_USAGE, stdout);
            return 0;
        } else if (is_flag(&a, "-m", "--model")) o.model_path = arg_value(&a);
        else if (is_flag(&a, "-p", "--prompt") || is_flag(&a, "-f", "--file")) {
            if (prompt || prompt_file) /* a second prompt would silently win */
                return fail("run", "the prompt is given twice (-p and -f take one prompt, once)");
            if (is_flag(&a, "-p", "--prompt")) prompt = arg_value(&a);
            else prompt_file = arg_value(&a);
        }
        else if (is_flag(&a, "-n", "--n-predict")) n_predict = (int)arg_int(&a, 0, INT_MAX);
        else if (is_flag(&a, "--temp", "--temperature")) sp.temperature = (float)arg_float(&a, 0, 100);
        else if (is_flag(&a, "--top-k", NULL)) sp.top_k = (int)arg_int(&a, 0, INT_MAX);
        else if (is_flag(&a, "--top-p", NULL)) sp.top_p = (float)arg_float(&a, 0, 1);
        else if (is_flag(&a, "--min-p", NULL)) sp.min_p = (float)arg_float(&a, 0, 1);
        else if (is_flag(&a, "--repeat-penalty", NULL)) sp.repeat_penalty = (float)arg_float(&a, 0.01, 100);
        else if (is_flag(&a, "--repeat-last-n", NULL)) sp.repeat_last_n = (int)arg_int(&a, 0, INT_MAX);
        else if (is_flag(&a, "--presence-penalty", NULL)) sp.presence_penalty = (float)arg_float(&a, -2, 2);
        else if (is_flag(&a, "--frequency-penalty", NULL)) sp.frequency_penalty = (float)arg_float(&a, -2, 2);
        else if (is_flag(&a, "--seed", "-s")) sp.seed = (uint64_t)arg_int(&a, 0, LLONG_MAX);
        else if (is_flag(&a, "--stop", NULL)) {
            const char *v = arg_value(&a);
            if (v && n_stops == MAX_STOPS) return fail("run", "at most 8 --stop strings");
            if (v) stops[n_stops++] = v;
        } else if (is_flag(&a, "-t", "--threads")) o.n_threads = (int)arg_int(&a, 1, 1024);
        else if (is_flag(&a, "-c", "--ctx")) o.n_ctx = (int)arg_int(&a, 1, 1 << 24);
        else if (is_flag(&a, "--batch", "-b")) o.n_batch = (int)arg_int(&a, 1, 1 << 16);
        else if (kv_flag(&a, &o.kv_k, &o.kv_v)) continue;
        else if (device_flag(&a, &o.device, &o.gpu)) continue;
        else if (is_flag(&a, "--no-stats", NULL)) stats = 0;
        else if (is_flag(&a, "--ignore-eos", NULL)) ignore_eos = 1;
        else if (is_flag(&a, "--grammar", NULL)) grammar_file = arg_value(&a);
        else if (is_flag(&a, "--json-schema", NULL)) schema_file = arg_value(&a);
        else if (dist_flag(&a, d)) continue;
        else unknown_flag(&a);
    }
    if (a.bad) return 2;
    if (!o.model_path) return fail("run", "no model given (-m MODEL.gguf); see grok run --help");
    if (grammar_file && schema_file) return fail("run", "give --grammar or --json-schema, not both");
    Grammar *grammar = NULL;
    if (grammar_file || schema_file) {
        Error gerr = {{0}};
        if (!(grammar = grammar_from_files(grammar_file, schema_file, &gerr))) return fail("run", gerr.msg);
    }
    char *file_text = NULL;
    size_t prompt_len = 0;
    if (prompt_file) {
        /* a prompt must fit in the context: more than RUN_FILE_BYTES_PER_TOKEN
         * bytes per token of the largest context cannot */
        const size_t max = (size_t)RUN_FILE_BYTES_PER_TOKEN * (size_t)(o.n_ctx > 0 ? o.n_ctx : 1 << 17);
        Error ferr = {{0}};
        if (!(file_text = read_file_capped(prompt_file, max < ((size_t)1 << 20) ? (size_t)1 << 20 : max,
                                           "prompt file", &prompt_len, &ferr)))
            return fail("run", ferr.msg);
        prompt = file_text;
    } else if (prompt) {
        prompt_len = strlen(prompt);
    } else {
        return fail("run", "no prompt given (-p TEXT or -f FILE)");
    }
    if (prompt_len == 0) {
        free(file_text);
        return fail("run", "the prompt is empty");
    }

    Model *m = NULL;
    Context *c = NULL;
    Tokenizer *tok = NULL;
    double load_s = 0;
    if (load("run", &o, &m, &c, &tok, &load_s)) {
        free(file_text);
        grammar_free(grammar);
        return 1;
    }
    Error err = {{0}};
    int rc = 1, *ids = NULL;
    float *logits = NULL;
    Sampler *smp = NULL;
    StopMatcher sm = {0};
    TokenTrie *trie = NULL;
    GrammarMatcher *gm = NULL;
    GrammarFilter rf = {NULL, 0, 0, 0};
    TokenFilter tf = {&rf, grammar_filter_allows, grammar_filter_mask};
    if (grammar) {
        const int eos = tokenizer_eos(tok);
        if (!(trie = token_trie_new(tok, &err)) || !(gm = grammar_matcher_new(grammar, trie, &eos, ignore_eos ? 0 : 1, &err))) {
            fail("run", err.msg);
            goto out;
        }
        rf.gm = gm, rf.n_vocab = m->cfg.n_vocab;
    }
    int n_prompt = tokenizer_encode(tok, prompt, prompt_len, false, &ids, &err);
    const int n_ctx = context_n_ctx(c), V = m->cfg.n_vocab;
    if (n_prompt < 0) {
        fail("run", err.msg);
        goto out;
    }
    if (n_prompt >= n_ctx) {
        fprintf(stderr, "grok run: the prompt has %d tokens but the context holds %d (raise --ctx, up to the model's %d)\n",
                n_prompt, n_ctx, m->cfg.n_ctx_train);
        goto out;
    }
    logits = malloc((size_t)V * sizeof(float));
    smp = sampler_new(&sp, V, &err);
    if (!logits || !smp || stop_matcher_init(&sm, stops, n_stops, &err)) {
        fail("run", smp ? err.msg : "out of memory");
        goto out;
    }
    for (int i = 0; i < n_prompt; i++) sampler_accept(smp, ids[i]);
    double t0 = time_now();
    if (forward_tokens(c, 0, ids, n_prompt, 0, logits, false, &err)) {
        fail("run", err.msg);
        goto out;
    }
    double t_prompt = time_now() - t0;
    TokenDecoder dec;
    token_decoder_init(&dec);
    token_decoder_after(tok, &dec, ids, n_prompt); /* the text continues the prompt: " is", not "is" */
    char piece[256];
    const char *emit;
    size_t emit_len;
    int n_gen = 0, pos = n_prompt, stopped = 0;
    const char *why = "length";
    double t1 = time_now();
    while (n_gen < n_predict) {
        int next = gm ? sampler_sample_filtered(smp, logits, &tf) : sampler_sample(smp, logits);
        if (next < 0) {
            fail("run", next == -1 ? "no token of the vocabulary can continue the grammar" : "grammar: parser limits hit");
            goto out;
        }
        if (next == tokenizer_eos(tok) && !ignore_eos) {
            why = "eos";
            break;
        }
        sampler_accept(smp, next);
        n_gen++;
        if (gm && grammar_matcher_accept(gm, next, &err)) {
            fail("run", err.msg);
            goto out;
        }
        size_t len = token_decoder_push(tok, &dec, next, piece, sizeof piece);
        if (stop_matcher_push(&sm, piece, len, &emit, &emit_len)) stopped = 1;
        fwrite(emit, 1, emit_len, stdout);
        fflush(stdout);
        if (stopped) {
            why = "stop string";
            break;
        }
        if (gm && grammar_matcher_must_end(gm)) {
            why = "grammar complete";
            break;
        }
        if (n_gen == n_predict) break;
        if (pos >= n_ctx) {
            why = "context full";
            break;
        }
        if (forward_tokens(c, 0, &next, 1, pos, logits, false, &err)) {
            fail("run", err.msg);
            goto out;
        }
        pos++;
    }
    if (!stopped) {
        size_t len = token_decoder_flush(&dec, piece, sizeof piece);
        stop_matcher_push(&sm, piece, len, &emit, &emit_len);
        fwrite(emit, 1, emit_len, stdout);
        stop_matcher_flush(&sm, &emit, &emit_len);
        fwrite(emit, 1, emit_len, stdout);
    }
    fputc('\n', stdout);
    fflush(stdout);
    double t_gen = time_now() - t1;
    if (stats) {
        fprintf(stderr, "\n[grok] load %.2f s | prompt %d tok, %.1f tok/s | generated %d tok, %.1f tok/s | stop: %s | %d threads, %s\n",
                load_s, n_prompt, n_prompt / (t_prompt > 0 ? t_prompt : 1e-9), n_gen,
                n_gen > 1 ? (n_gen - 1) / (t_gen > 0 ? t_gen : 1e-9) : 0.0, why, context_n_threads(c),
                strcmp(context_device(c), "cpu") ? context_device(c) : quant_simd_name());
    }
    rc = 0;
out:
    grammar_matcher_free(gm);
    token_trie_free(trie);
    grammar_free(grammar);
    stop_matcher_free(&sm);
    sampler_free(smp);
    free(logits);
    free(ids);
    free(file_text);
    tokenizer_free(tok);
    context_free(c);
    model_free(m);
    return rc;
}

/* ---- grok eval --------------------------------------------------------- */

static const char EVAL_USAGE[] =
    "usage: grok eval -m MODEL.gguf --tokens 1,2,3 --logits OUT.f32 [options]\n"
    "Runs the tokens as one prompt from position 0 and writes the logits of every\n"
    "position as little-endian float32, row after row (n_tokens x n_vocab).\n"
    "  --batch N     tokens per forward pass (default 512; 1 = one token at a time)\n"
    "  -t N          threads        --ctx N    context (default: max(n_tokens, 4096 cap))\n"
    "  --kv TYPE     KV cache type, " KV_TYPE_NAMES " (default f32); --kv-k / --kv-v: one side\n"
    "  --device cpu|cuda|auto  (default auto: cuda when a GPU is present)   --gpu N  (default 0)\n" DIST_USAGE;

static int cmd_eval(int argc, char **argv, Dist *d) {
    Args a = {"eval", argc, 0, argv, 0};
    LoadOpts o = {NULL, 0, 0, 0, GGML_TYPE_F32, GGML_TYPE_F32, GROK_DEVICE_AUTO, 0, d};
    const char *tokens_s = NULL, *out_path = NULL;
    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        if (is_flag(&a, "-h", "--help")) {
            fputs(EVAL_USAGE, stdout);
            return 0;
        } else if (is_flag(&a, "-m", "--model")) o.model_path = arg_value(&a);
        else if (is_flag(&a, "--tokens", NULL)) tokens_s = arg_value(&a);
        else if (is_flag(&a, "--logits", "-o")) out_path = arg_value(&a);
        else if (is_flag(&a, "-t", "--threads")) o.n_threads = (int)arg_int(&a, 1, 1024);
        else if (is_flag(&a, "-c", "--ctx")) o.n_ctx = (int)arg_int(&a, 1, 1 << 24);
        else if (is_flag(&a, "--batch", "-b")) o.n_batch = (int)arg_int(&a, 1, 1 << 16);
        else if (kv_flag(&a, &o.kv_k, &o.kv_v)) continue;
        else if (device_flag(&a, &o.device, &o.gpu)) continue;
        else if (dist_flag(&a, d)) continue;
        else unknown_flag(&a);
    }
    if (a.bad) return 2;
    if (!o.model_path || !tokens_s || !out_path) return fail("eval", "needs -m MODEL, --tokens IDS and --logits FILE");
    int *ids = NULL;
    int n = parse_ids(tokens_s, &ids);
    if (n <= 0) {
        free(ids);
        return fail("eval", "--tokens must be a comma-separated list of token ids");
    }
    if (o.n_ctx == 0 && n > 4096) o.n_ctx = n;
    Model *m = NULL;
    Context *c = NULL;
    if (load("eval", &o, &m, &c, NULL, NULL)) {
        free(ids);
        return 1;
    }
    Error err = {{0}};
    int rc = 1;
    const int V = m->cfg.n_vocab;
    float *logits = malloc((size_t)n * V * sizeof(float));
    FILE *f = NULL;
    if (!logits) {
        fail("eval", "out of memory");
        goto out;
    }
    if (n > context_n_ctx(c)) {
        fprintf(stderr, "grok eval: %d tokens do not fit in the context of %d (use --ctx)\n", n, context_n_ctx(c));
        goto out;
    }
    if (forward_tokens(c, 0, ids, n, 0, logits, true, &err)) {
        fail("eval", err.msg);
        goto out;
    }
    f = fopen(out_path, "wb");
    if (!f || fwrite(logits, sizeof(float), (size_t)n * V, f) != (size_t)n * V || fclose(f) != 0) {
        f = NULL;
        fprintf(stderr, "grok eval: cannot write %s: %s\n", out_path, strerror(errno));
        goto out;
    }
    f = NULL;
    rc = 0;
out:
    if (f) fclose(f);
    free(logits);
    free(ids);
    context_free(c);
    model_free(m);
    return rc;
}

/* ---- grok info --------------------------------------------------------- */

static void print_kv(const GGUFKV *kv) {
    printf("  %-44s ", kv->key);
    switch (kv->type) {
    case GGUF_TYPE_STRING: {
        uint64_t n = kv->str.len > 200 ? 200 : kv->str.len;
        printf("\"");
        for (uint64_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)kv->str.data[i];
            if (ch == '\n') printf("\\n");
            else if (ch < 32) printf("\\x%02x", ch);
            else putchar(ch);
        }
        printf("\"%s\n", kv->str.len > n ? "..." : "");
        break;
    }
    case GGUF_TYPE_ARRAY:
        printf("[%s x %llu]", gguf_type_name(kv->arr_type), (unsigned long long)kv->arr_n);
        if (kv->arr_type == GGUF_TYPE_STRING && kv->arr_n > 0) {
            printf(" \"%.*s\"%s", (int)(kv->arr_str[0].len > 40 ? 40 : kv->arr_str[0].len), kv->arr_str[0].data,
                   kv->arr_n > 1 ? ", ..." : "");
        }
        printf("\n");
        break;
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64: printf("%.9g\n", kv->num.f64); break;
    case GGUF_TYPE_BOOL: printf("%s\n", kv->num.u64 ? "true" : "false"); break;
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_INT16:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_INT64: printf("%lld\n", (long long)kv->num.i64); break;
    default: printf("%llu\n", (unsigned long long)kv->num.u64); break;
    }
}

static int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int show_tensors = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: grok info MODEL.gguf [--no-tensors]\n"
                   "Prints the metadata, hyper-parameters, tensor table and parameter counts.\n");
            return 0;
        } else if (!strcmp(argv[i], "--no-tensors")) show_tensors = 0;
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) path = argv[++i];
        else if (argv[i][0] == '-') return fail("info", "unknown option (see grok info --help)");
        else path = argv[i];
    }
    if (!path) return fail("info", "no model given (grok info MODEL.gguf)");
    Error err = {{0}};
    GGUFFile *f = gguf_open(path, &err);
    if (!f) return fail("info", err.msg);
    printf("file: %s (GGUF v%u, %d file%s, %.2f MiB, alignment %u)\n", path, gguf_version(f), gguf_n_files(f),
           gguf_n_files(f) > 1 ? "s" : "", gguf_total_size(f) / 1048576.0, gguf_alignment(f));
    printf("metadata (%llu keys):\n", (unsigned long long)gguf_n_kv(f));
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) print_kv(gguf_kv(f, i));
    if (show_tensors) {
        printf("tensors (%llu):\n", (unsigned long long)gguf_n_tensors(f));
        printf("  %-36s %-6s %-28s %12s\n", "name", "type", "shape (ne)", "bytes");
        for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
            const GGUFTensor *t = gguf_tensor(f, i);
            char shape[96] = "[";
            for (uint32_t d = 0; d < t->n_dims; d++) {
                char tmp[32];
                snprintf(tmp, sizeof tmp, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
                strncat(shape, tmp, sizeof shape - strlen(shape) - 2);
            }
            strcat(shape, "]");
            const TypeInfo *ti = type_info(t->type);
            printf("  %-36s %-6s %-28s %12llu\n", t->name, ti ? ti->name : "?", shape, (unsigned long long)t->nbytes);
        }
    }
    Model *m = model_from_gguf(f, &err);
    if (!m) {
        fprintf(stderr, "grok info: %s: not a loadable grok model: %s\n", path, err.msg);
        gguf_close(f);
        return 1;
    }
    const ModelConfig *c = &m->cfg;
    uint64_t total, active;
    model_param_counts(m, &total, &active);
    printf("model: %s\n", m->name);
    printf("  architecture      grok (%s)\n", c->n_ff_dense ? "Grok-2 layout: shared dense MLP" : "Grok-1 layout");
    printf("  vocab             %d\n  embedding         %d\n  layers            %d\n", c->n_vocab, c->n_embd, c->n_layer);
    printf("  heads             %d query, %d key/value (GQA %d), head dim %d\n", c->n_head, c->n_head_kv,
           c->n_head / c->n_head_kv, c->head_dim);
    printf("  experts           %d, %d used per token, FFN %d\n", c->n_expert, c->n_expert_used, c->n_ff);
    if (c->n_ff_dense) printf("  dense MLP         %d\n", c->n_ff_dense);
    printf("  context (trained) %d\n  rope base         %g\n  rms eps           %g\n", c->n_ctx_train,
           (double)c->rope_base, (double)c->eps);
    printf("  embedding scale   %.9g\n  logit scale       %.9g\n  attn logit scale  %.9g\n",
           (double)c->embedding_scale, (double)c->logit_scale, (double)c->attn_scale);
    printf("  attn softcap      %g\n  router softcap    %s%g\n  final softcap     %g\n", (double)c->attn_softcap,
           c->router_softcap > 0 ? "" : "off (Grok-1 reference has none) ", (double)c->router_softcap,
           (double)c->final_softcap);
    if (c->n_ff_dense) { /* Grok-2: where grok.c follows the reference (SGLang) and llama.cpp does not */
        printf("  Grok-2 behaviours (reference = SGLang; llama.cpp v0.5.0 differs where noted):\n");
        printf("    router cap      %s\n", c->router_softcap > 0 ? "on, c*tanh(logit/c) before the softmax "
                                                                   "(llama.cpp reads the key but skips it)"
                                                                 : "off (grok.router_logit_softcapping = 0)");
        if (c->attn_temp_len > 0)
            printf("    attn temperature on, logits * log2(pos)/log2(%d) at positions > %d (llama.cpp skips it)\n",
                   c->attn_temp_len, c->attn_temp_len);
        else
            printf("    attn temperature off (no grok.attention.temperature_length)\n");
        printf("    expert gates    top-%d softmax probabilities, not renormalised (llama.cpp renormalises;\n"
               "                    with the dense MLP beside the MoE that changes the output)\n",
               c->n_expert_used);
        printf("    rope            plain NeoX, base %.9g%s\n", (double)c->rope_base,
               gguf_find_kv(f, "grok.rope.scaling.type") ? "; rope.scaling (YaRN) keys ignored as SGLang does "
                                                          "(llama.cpp applies YaRN)"
                                                        : "");
    }
    printf("  output            %s\n", m->tied_output ? "tied to token_embd" : "separate output.weight");
    printf("  parameters        %.3f M total, %.3f M active per token\n", total / 1e6, active / 1e6);
    model_free(m);
    return 0;
}

/* ---- grok tokenize / detokenize --------------------------------------- */

/* A GGUF model's tokenizer, or a SentencePiece .model file. */
static Tokenizer *open_tokenizer(const char *cmd, const char *path) {
    Error err = {{0}};
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "grok %s: cannot open %s: %s\n", cmd, path, strerror(errno));
        return NULL;
    }
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, fp);
    fclose(fp);
    Tokenizer *t = NULL;
    if (got == 4 && memcmp(magic, GGUF_MAGIC, 4) == 0) {
        GGUFFile *f = gguf_open(path, &err);
        if (f) {
            t = tokenizer_from_gguf(f, &err);
            gguf_close(f);
        }
    } else {
        t = tokenizer_from_spm_file(path, &err);
    }
    if (!t) fprintf(stderr, "grok %s: %s\n", cmd, err.msg);
    return t;
}

static int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL;
    int pieces = 0, bos = 0, split = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: grok tokenize -m MODEL.gguf|tokenizer.model [--pieces] [--bos] [--split] TEXT | -f FILE\n"
                   "Prints the token ids of TEXT on one line, space-separated (--pieces: id:piece).\n"
                   "--split (byte-level BPE only): the pre-tokenizer's pieces instead, one per line in hex.\n");
            return 0;
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "-f") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "--pieces")) pieces = 1;
        else if (!strcmp(argv[i], "--bos")) bos = 1;
        else if (!strcmp(argv[i], "--split")) split = 1;
        else if (!strcmp(argv[i], "--")) {
            if (i + 1 < argc) text = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] && !text) {
            fprintf(stderr, "grok tokenize: unknown option '%s' (use -- before a text that starts with '-')\n", argv[i]);
            return 2;
        } else text = argv[i];
    }
    if (!model) return fail("tokenize", "no tokenizer given (-m MODEL.gguf or -m tokenizer.model)");
    char *buf = NULL;
    size_t len = 0;
    if (file) {
        Error ferr = {{0}};
        if (!(buf = read_file_capped(file, TOKENIZE_MAX_FILE, "text file", &len, &ferr))) return fail("tokenize", ferr.msg);
        text = buf;
    } else if (!text) {
        return fail("tokenize", "no text given");
    } else {
        len = strlen(text);
    }
    Tokenizer *t = open_tokenizer("tokenize", model);
    if (!t) {
        free(buf);
        return 1;
    }
    Error err = {{0}};
    if (split) {
        char *sb = NULL;
        size_t *ends = NULL;
        int np = tokenizer_split(t, text, len, &sb, &ends, &err);
        size_t start = 0;
        for (int k = 0; k < np; start = ends[k++]) {
            for (size_t j = start; j < ends[k]; j++) printf("%02x", (unsigned char)sb[j]);
            printf("\n");
        }
        free(sb), free(ends), free(buf);
        tokenizer_free(t);
        return np < 0 ? fail("tokenize", err.msg) : 0;
    }
    int *ids = NULL;
    int n = tokenizer_encode(t, text, len, bos, &ids, &err);
    int rc = 0;
    if (n < 0) rc = fail("tokenize", err.msg);
    for (int i = 0; i < n; i++) {
        if (pieces) {
            size_t pl;
            const char *p = tokenizer_piece(t, ids[i], &pl);
            printf("%s%d:%.*s", i ? " " : "", ids[i], (int)pl, p);
        } else {
            printf("%s%d", i ? " " : "", ids[i]);
        }
    }
    if (n >= 0) printf("\n");
    free(ids);
    free(buf);
    tokenizer_free(t);
    return rc;
}

static int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    int *ids = NULL, n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: grok detokenize -m MODEL.gguf|tokenizer.model ID [ID ...]  (or 1,2,3)\n"
                   "Prints the text of the token ids.\n");
            free(ids);
            return 0;
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) model = argv[++i];
        else {
            int *more = NULL;
            int k = parse_ids(argv[i], &more);
            if (k < 0) {
                free(ids);
                fprintf(stderr, "grok detokenize: '%s' is not a token id list\n", argv[i]);
                return 2;
            }
            int *t = realloc(ids, (size_t)(n + k + 1) * sizeof(int));
            if (!t) {
                free(ids), free(more);
                return fail("detokenize", "out of memory");
            }
            ids = t;
            memcpy(ids + n, more, (size_t)k * sizeof(int));
            n += k;
            free(more);
        }
    }
    if (!model) {
        free(ids);
        return fail("detokenize", "no tokenizer given (-m MODEL.gguf or -m tokenizer.model)");
    }
    Tokenizer *t = open_tokenizer("detokenize", model);
    if (!t) {
        free(ids);
        return 1;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] >= tokenizer_n_vocab(t)) {
            fprintf(stderr, "grok detokenize: token id %d is outside the vocabulary (%d tokens)\n", ids[i],
                    tokenizer_n_vocab(t));
            free(ids);
            tokenizer_free(t);
            return 1;
        }
    char *s = tokenizer_decode(t, ids, n);
    int rc = s ? 0 : fail("detokenize", "out of memory");
    if (s) printf("%s\n", s);
    free(s);
    free(ids);
    tokenizer_free(t);
    return rc;
}

/* ---- grok new: a random Grok-architecture model ------------------------ */

static const char NEW_USAGE[] =
    "usage: grok new OUT.gguf --embd E --layers L --heads H --kv-heads K --ff F --experts X\n"
    "                --experts-used U --ctx C (--vocab V | --tokenizer tokenizer.model)\n"
    "                [--seed S] [--type f32|f16|bf16|q8_0] [--untied] [--fused-qkv]\n"
    "                [--grok2 [--dense-ff D] [--temp-len N] [--router-cap C] [--final-cap C]]\n"
    "Writes a Grok-architecture GGUF with random weights, deterministic for a seed,\n"
    "loadable by llama.cpp. Norms and the router are always f32. Defaults: the small\n"
    "benchmark model (E 512, L 4, H 8, K 2, F 1024, X 8, U 2, C 4096, V 4096, f32).\n"
    "--grok2 writes the Grok-2 layout: shared dense MLP of width D (default 2F),\n"
    "output.weight, router cap C (30), final-logit cap C (50), attention temperature\n"
    "length N (1024; 0 = no key), RoPE base 208533496, logit scale 0.5.\n";

static int cmd_new(int argc, char **argv) {
    Args a = {"new", argc, 0, argv, 0};
    const char *out = NULL, *tok_path = NULL, *type_s = "f32";
    int E = 512, L = 4, H = 8, K = 2, F = 1024, X = 8, U = 2, C = 4096, V = 4096, untied = 0, fused = 0;
    int grok2 = 0, dense_ff = 0, temp_len = 1024;
    double router_cap = 30.0, final_cap = 50.0;
    uint64_t seed = 1;
    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        if (is_flag(&a, "-h", "--help")) {
            fputs(NEW_USAGE, stdout);
            return 0;
        } else if (is_flag(&a, "--embd", NULL)) E = (int)arg_int(&a, 2, 1 << 16);
        else if (is_flag(&a, "--layers", NULL)) L = (int)arg_int(&a, 1, 1024);
        else if (is_flag(&a, "--heads", NULL)) H = (int)arg_int(&a, 1, 1024);
        else if (is_flag(&a, "--kv-heads", NULL)) K = (int)arg_int(&a, 1, 1024);
        else if (is_flag(&a, "--ff", NULL)) F = (int)arg_int(&a, 1, 1 << 20);
        else if (is_flag(&a, "--experts", NULL)) X = (int)arg_int(&a, 1, 256);
        else if (is_flag(&a, "--experts-used", NULL)) U = (int)arg_int(&a, 1, 256);
        else if (is_flag(&a, "--ctx", NULL)) C = (int)arg_int(&a, 1, 1 << 24);
        else if (is_flag(&a, "--vocab", NULL)) V = (int)arg_int(&a, 300, 1 << 24);
        else if (is_flag(&a, "--tokenizer", NULL)) tok_path = arg_value(&a);
        else if (is_flag(&a, "--seed", NULL)) seed = (uint64_t)arg_int(&a, 0, LLONG_MAX);
        else if (is_flag(&a, "--type", NULL)) type_s = arg_value(&a);
        else if (is_flag(&a, "--untied", NULL)) untied = 1;
        else if (is_flag(&a, "--fused-qkv", NULL)) fused = 1;
        else if (is_flag(&a, "--grok2", NULL)) grok2 = 1;
        else if (is_flag(&a, "--dense-ff", NULL)) dense_ff = (int)arg_int(&a, 1, 1 << 20);
        else if (is_flag(&a, "--temp-len", NULL)) temp_len = (int)arg_int(&a, 0, 1 << 24);
        else if (is_flag(&a, "--router-cap", NULL)) router_cap = arg_float(&a, 0, 1e6);
        else if (is_flag(&a, "--final-cap", NULL)) final_cap = arg_float(&a, 0, 1e6);
        else if (a.argv[a.i][0] == '-') unknown_flag(&a);
        else if (!out) out = a.argv[a.i];
        else unknown_flag(&a);
    }
    if (a.bad) return 2;
    if (!out) return fail("new", "no output file given (grok new OUT.gguf ...)");
    int type = type_s ? type_from_name(type_s) : -1;
    if (type < 0) return fail("new", "--type must be f32, f16, bf16 or q8_0");
    SynthParams sp = {E, L, H, K, F, X, U, C, V, (uint32_t)type, untied, fused, seed, tok_path};
    Error err = {{0}};
    SynthGrok2 g2;
    synth_grok2_defaults(&g2, &sp);
    if (dense_ff) g2.n_ff_dense = dense_ff;
    g2.attn_temp_len = temp_len;
    g2.router_softcap = (float)router_cap;
    g2.final_softcap = (float)final_cap;
    if (synth_write_model_ex(&sp, grok2 ? &g2 : NULL, out, &err)) return fail("new", err.msg);
    return 0;
}

/* ---- main -------------------------------------------------------------- */

static const char USAGE[] =
    "grok " GROK_VERSION " - run xAI's Grok models (GGUF) on the CPU\n"
    "usage: grok COMMAND [options]   (grok COMMAND --help for each)\n"
    "  chat        chat with a model (default: the bundled grok-nano)\n"
    "  run         generate text from a prompt\n"
    "  info        show a model's metadata, hyper-parameters and tensors\n"
    "  tokenize    text -> token ids\n"
    "  detokenize  token ids -> text\n"
    "  eval        write the logits of every position of a token sequence\n"
    "  perplexity  perplexity of a model on a text file\n"
    "  new         write a random Grok-architecture model (tests, benchmarks)\n"
    "  serve       OpenAI/xAI-compatible HTTP API and web chat page\n"
    "  quantize    convert a model's weights to another type (q8_0, q4_K, Q4_K_M, ...)\n"
    "  convert     xAI's official checkpoints (Grok-1 JAX pickles, Grok-2 safetensors) to GGUF\n"
    "  bench       prompt and generation speed, weight bandwidth (like llama-bench)\n";

/* The commands one process runs alone (no model run): under mpirun with
 * several ranks they are refused. */
static int one_process(const char *cmd, int (*fn)(int, char **), int argc, char **argv, Dist *d) {
    if (dist_multi(d)) {
        fprintf(stderr, "grok %s: runs in one process; only run, chat, serve, eval, perplexity and bench run "
                        "under mpirun with several ranks\n", cmd);
        return 2;
    }
    return fn(argc, argv);
}

/* Under mpirun, SIGTERM is how the launcher ends the ranks when one of them
 * died or mpirun itself was stopped (Ctrl-C, kill): say so instead of
 * vanishing (grok serve takes SIGTERM itself). */
static void on_sigterm(int sig) {
    static const char msg[] = "grok: ended by mpirun (mpirun was stopped, or another rank failed: its error is above)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(128 + sig);
}

static int dispatch(int argc, char **argv, Dist *d) {
    const char *cmd = argv[1];
    static const struct {
        const char *name;
        int (*fn)(int, char **, Dist *);
    } multi[] = {{"run", cmd_run},   {"eval", cmd_eval}, {"chat", cmd_chat}, {"perplexity", cmd_perplexity},
                 {"serve", cmd_serve}, {"bench", cmd_bench}};
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } single[] = {{"info", cmd_info}, {"tokenize", cmd_tokenize}, {"detokenize", cmd_detokenize}, {"new", cmd_new},
                  {"quantize", cmd_quantize}, {"convert", cmd_convert}};
    for (size_t i = 0; i < sizeof multi / sizeof multi[0]; i++)
        if (!strcmp(cmd, multi[i].name)) return multi[i].fn(argc - 1, argv + 1, d);
    for (size_t i = 0; i < sizeof single / sizeof single[0]; i++)
        if (!strcmp(cmd, single[i].name)) return one_process(cmd, single[i].fn, argc - 1, argv + 1, d);
    fprintf(stderr, "grok: unknown command '%s'\n%s", cmd, USAGE);
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(USAGE, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("grok %s (%s kernels%s)\n", GROK_VERSION, quant_simd_name(), dist_built() ? ", MPI" : "");
        Error cerr = {{0}};
        const int n_gpu = cuda_device_count(&cerr);
        if (!cuda_built()) printf("cuda: not built\n");
        else if (n_gpu > 0) printf("cuda: built, %d GPU%s\n", n_gpu, n_gpu == 1 ? "" : "s");
        else printf("cuda: built, no GPU (%s)\n", cerr.msg);
        return 0;
    }
    /* grok serve takes SIGINT/SIGTERM with sigwait: blocked before MPI
     * starts threads of its own, which would otherwise receive them */
    if (!strcmp(cmd, "serve")) {
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    }
    /* under mpirun: rank 0 runs the command, the others follow it
     * (dist_engine.h); without mpirun a one-rank Dist changes nothing */
    Error err = {{0}};
    Dist *d = dist_init(&argc, &argv, &err);
    if (!d) {
        fprintf(stderr, "grok: %s\n", err.msg);
        return 1;
    }
    if (dist_check_args(d, argc, argv, &err)) {
        if (dist_rank(d) == 0) fprintf(stderr, "grok: %s\n", err.msg);
        return dist_finish(d, 2);
    }
    if (dist_multi(d) && (dist_rank(d) > 0 || strcmp(cmd, "serve"))) {
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
        signal(SIGTERM, on_sigterm);
    }
    if (dist_rank(d) > 0) return dist_finish(d, dist_worker_main(d));
    return dist_end(d, dispatch(argc, argv, d));
}
