/* server.c - `grok serve`: an OpenAI/xAI-compatible HTTP API.
 *
 * Threads:
 *   - libmicrohttpd runs one thread per connection. A connection thread
 *     parses and validates a request, tokenizes the prompt, builds the
 *     request's Sampler and StopMatcher, and queues a Job. It then waits on
 *     the job's condition variable: a non-streaming request until the job is
 *     done, a streaming one inside the response's content callback, which
 *     turns new text into SSE chunks. While waiting it polls the socket, so a
 *     client that goes away cancels its job at once.
 *   - One engine thread owns the Context (n_seq = --parallel slots). Each
 *     step it admits queued jobs into free slots (picking the slot whose
 *     cached tokens share the longest prefix with the prompt), builds one
 *     Batch with the next token of every decoding slot plus a chunk of at
 *     most --prefill-chunk prompt tokens of slots still prefilling, runs
 *     forward(), samples one token per slot that wants one, and appends the
 *     text to the jobs. A slot's KV cache is reused from position 0 (or from
 *     the end of the shared prefix) by the next job: it is simply
 *     overwritten.
 * One mutex (Server.mu) guards the queue, the jobs' shared fields and the
 * metrics; the engine holds it only to admit, append and finish, never
 * during forward(). */
#include "server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <microhttpd.h>
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h> /* malloc_trim */
#endif
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "common.h"
#include "forward.h"
#include "kv.h"
#include "prompt_cache.h"
#include "gguf.h"
#include "grammar.h"
#include "http_accept.h"
#include "http_guard.h"
#include "model.h"
#include "quant.h"
#include "responses.h"
#include "sampler.h"
#include "structured.h"
#include "threadpool.h"
#include "tokenizer.h"
#include "xai.h"

#define SERVER_VERSION "0.1.0"
#define MAX_STOPS 8            /* user stop strings per request */
#define MAX_STOP_LEN 256       /* bytes per stop string */
#define MAX_TOP_LOGPROBS 20
#define PREFILL_CHUNK 256      /* default prompt tokens per engine step, over all slots */
#define WAIT_POLL_MS 100       /* how often a waiting connection looks at its socket */
#define RATE_BUCKETS 16        /* per-second buckets for the tok/s gauges */
#define RATE_WINDOW 10         /* seconds the tok/s gauges average over */
#define SHUTDOWN_MSG "the server is shutting down"
#define TIMEOUT_S 30           /* default --timeout: seconds a connection may sit with no bytes in or out */
#define MAX_CONNS 2048         /* default --max-conns */
#define MAX_CONNS_PER_IP 64    /* default --max-conns-per-ip */
#define SHUTDOWN_GRACE_MS 5000 /* on SIGTERM: how long the running requests get to receive their error */

/* ---- small helpers ----------------------------------------------------- */

typedef struct {
    char *s;
    size_t len, cap;
} Str;

static int str_put(Str *b, const char *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *t = realloc(b->s, cap);
        if (!t) return -1;
        b->s = t, b->cap = cap;
    }
    if (n) memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = 0;
    return 0;
}

static int str_puts(Str *b, const char *p) { return str_put(b, p, strlen(p)); }

static void str_free(Str *b) {
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}

/* macOS has neither pthread_condattr_setclock (its timed waits count on
 * CLOCK_REALTIME) nor POLLRDHUP (a closed peer then shows as readable with
 * recv() == 0, which peer_state() in http_guard.c checks too). */
#if defined(__APPLE__)
#define COND_CLOCK CLOCK_REALTIME
#else
#define COND_CLOCK CLOCK_MONOTONIC
#endif
#ifndef POLLRDHUP
#define POLLRDHUP 0
#endif

static void abs_deadline(struct timespec *ts, int ms) {
    clock_gettime(COND_CLOCK, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) ts->tv_sec++, ts->tv_nsec -= 1000000000L;
}

/* ---- jobs and slots ---------------------------------------------------- */

enum { KIND_CHAT, KIND_COMPLETION };
enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

typedef struct {
    int id;
    float lp;
    int n_top;
    int top_id[MAX_TOP_LOGPROBS];
    float top_lp[MAX_TOP_LOGPROBS];
} TokLP;

typedef struct Job {
    /* set by the connection thread before queueing, then read-only */
    int kind;
    bool stream, include_usage, echo, ignore_eos;
    int logprobs;          /* -1: none; else how many top alternatives (0..20) */
    int *prompt;
    int n_prompt;
    int max_tokens;
    int stop_token;        /* a token that ends the reply like EOS (the template's separator), -1 if none */
    char id[48];
    long long created;
    double t_queued;
    Grammar *grammar;      /* the reply's grammar (response_format, grammar, tools), NULL if none */
    GrammarMatcher *gm;
    int tool_mode;         /* ToolMode: replies may be tool calls */
    RespCtx *resp;         /* a Responses API request (POST /v1/responses), NULL for chat */
    SamplerParams sp;      /* the sampler is built when a slot takes the job, not while it waits */
    /* owned by the engine while running */
    Sampler *smp;
    StopMatcher sm;
    TokenDecoder dec;
    int n_gen;
    /* shared, under Server.mu */
    int state;
    bool cancelled;
    const char *finish;    /* "stop" / "length" once done */
    char error[GROK_ERR_LEN]; /* non-empty: the job failed */
    Str text;              /* generated text so far */
    TokLP *lps;            /* logprob entries so far */
    int n_lps, cap_lps;
    int completion_tokens;
    int cached_tokens;     /* prompt tokens whose KV was reused */
    double t_first;        /* first token sampled, 0 before */
    double t_done;
    pthread_cond_t cond;   /* signalled on new text and when done */
    int refs;
    struct Job *next;      /* queue link */
} Job;

typedef struct {
    Job *job;              /* NULL: free */
    bool prefill;          /* still feeding the prompt */
    int n_past;            /* positions 0..n_past-1 hold the KV of cache[0..n_past-1] */
    int *cache;            /* (n_ctx) tokens in the KV cache */
    int next;              /* token to feed at n_past when decoding */
    int pending;           /* prompt tokens in the current batch */
    float *raw;            /* (n_vocab) logits copy for logprobs */
    Str scratch;           /* text of one step */
} Slot;

typedef struct {
    long long sec[RATE_BUCKETS];
    uint64_t n[RATE_BUCKETS];
} Rate;

typedef struct Server {
    /* configuration */
    const char *model_path;
    const char *host;
    int port;
    unsigned timeout_s;      /* --timeout */
    unsigned max_conns;      /* --max-conns */
    unsigned max_conns_ip;   /* --max-conns-per-ip */
    int n_slots;
    int n_ctx;
    int n_threads;
    int kv_k, kv_v;
    int max_queue;
    int chunk;               /* prompt tokens per engine step */
    size_t max_body;
    const char *api_key;
    const char *alias;
    bool verbose;
    bool context_shift;      /* chat prompts over the context drop their oldest turns */
    long cache_ram_mib;      /* prompt cache across requests: RAM budget (0 = off) */
    const char *cache_dir;   /* and its disk tier, or NULL */
    PromptCache *pc;
    /* the model */
    Model *m;
    Tokenizer *tok;
    Context *ctx;
    ChatTemplate tmpl;
    int n_vocab, eos;
    int sep_token;           /* the chat template's stop string as one token, or -1 */
    TokenTrie *trie;         /* the vocabulary's bytes, for grammars */
    ResponseStore *rstore;   /* stored Responses (previous_response_id, GET /v1/responses/{id}) */
    char model_id[160];
    char file_id[160];       /* file name, also accepted as a model id */
    char file_id_noext[160];
    char fingerprint[64];
    long long started;
    /* threads */
    struct MHD_Daemon *daemon;
    Acceptor *acceptor;      /* the listening socket and connections not yet sent anything */
    pthread_t engine;
    bool engine_running;
    pthread_mutex_t mu;
    pthread_mutex_t json_mu; /* around cJSON parsing */
    pthread_cond_t work;     /* the engine waits here for jobs */
    pthread_cond_t idle;     /* signalled when a request ends (shutdown waits for n_reqs == 0) */
    int n_reqs;              /* requests being handled (under mu) */
    bool stopping;
    /* queue (under mu) */
    Job *q_head, *q_tail;
    int q_len;
    /* engine-owned */
    Slot *slots;
    int n_busy;              /* under mu */
    int rr;                  /* round-robin start for prefill */
    int *b_tok, *b_pos, *b_seq, *row_slot;
    bool *b_out;
    float *logits;           /* (n_slots, n_vocab) */
    /* metrics (under mu) */
    uint64_t req_chat, req_completion, req_tokenize, req_other;
    uint64_t fin_stop, fin_length, fin_cancelled, fin_error;
    uint64_t http_4xx, http_5xx;
    uint64_t prompt_tokens, prompt_tokens_computed, gen_tokens;
    uint64_t steps, batch_tokens;
    uint64_t grammar_tokens, grammar_masks; /* tokens sampled under a grammar, full masks they needed */
    double grammar_seconds;                 /* engine time in grammar checks, masks and steps */
    double sample_seconds;                  /* engine time sampling (grammar work included) */
    double ttft_sum;
    uint64_t ttft_count;
    double busy_seconds;
    Rate gen_rate, pp_rate;
    /* ids and seeds */
    uint64_t rng;
} Server;

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void rate_add(Rate *r, double now, uint64_t n) {
    long long sec = (long long)now;
    int i = (int)(sec % RATE_BUCKETS);
    if (r->sec[i] != sec) r->sec[i] = sec, r->n[i] = 0;
    r->n[i] += n;
}

/* Average over the last RATE_WINDOW whole seconds. */
static double rate_get(const Rate *r, double now) {
    long long sec = (long long)now;
    uint64_t sum = 0;
    for (int i = 0; i < RATE_BUCKETS; i++)
        if (r->sec[i] < sec && r->sec[i] >= sec - RATE_WINDOW) sum += r->n[i];
    return (double)sum / RATE_WINDOW;
}

/* ---- job lifetime (all under mu) --------------------------------------- */

static void job_free(Job *j) {
    if (!j) return;
    free(j->prompt);
    grammar_matcher_free(j->gm);
    grammar_free(j->grammar);
    resp_ctx_free(j->resp);
    sampler_free(j->smp);
    stop_matcher_free(&j->sm);
    str_free(&j->text);
    free(j->lps);
    pthread_cond_destroy(&j->cond);
    free(j);
}

static void job_unref(Job *j) {
    if (j && --j->refs == 0) job_free(j);
}

static Job *job_new(void) {
    Job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca)) {
        free(j);
        return NULL;
    }
#if !defined(__APPLE__)
    pthread_condattr_setclock(&ca, COND_CLOCK);
#endif
    int r = pthread_cond_init(&j->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (r) {
        free(j);
        return NULL;
    }
    j->refs = 1;
    j->logprobs = -1;
    j->state = JOB_QUEUED;
    return j;
}

static void job_done(Server *s, Job *j, const char *finish, const char *error) {
    if (j->state == JOB_DONE) return;
    j->state = JOB_DONE;
    j->finish = finish;
    j->t_done = time_now();
    if (error) snprintf(j->error, sizeof j->error, "%s", error);
    if (j->cancelled) s->fin_cancelled++;
    else if (error) s->fin_error++;
    else if (finish && !strcmp(finish, "length")) s->fin_length++;
    else s->fin_stop++;
    pthread_cond_broadcast(&j->cond);
}

/* Cancels a job whose client went away (under mu). */
static void job_cancel(Server *s, Job *j) {
    if (!j || j->state == JOB_DONE) return;
    j->cancelled = true;
    if (j->state == JOB_QUEUED) {
        Job **pp = &s->q_head, *prev = NULL;
        while (*pp && *pp != j) prev = *pp, pp = &(*pp)->next;
        if (*pp) {
            *pp = j->next;
            if (s->q_tail == j) s->q_tail = prev;
            s->q_len--;
            j->next = NULL;
            job_done(s, j, NULL, NULL);
            job_unref(j); /* the queue's reference */
        }
    } else {
        pthread_cond_signal(&s->work);
    }
}

/* ---- the engine -------------------------------------------------------- */

static void slot_release(Server *s, Slot *sl) {
    Job *j = sl->job;
    /* what the slot computed goes to the prompt cache, for any slot to start from */
    if (s->pc) pcache_save(s->pc, s->ctx, (int)(sl - s->slots), sl->cache, sl->n_past);
    sampler_free(j->smp); /* the vocabulary-sized buffers go with the slot */
    j->smp = NULL;
    sl->job = NULL;
    sl->prefill = false;
    s->n_busy--;
    job_unref(j);
}

#define SHIFT_MIN_RUN 16 /* fewer cached tokens than this are recomputed rather than shifted */

static int common_prefix(const int *a, int na, const int *b, int nb) {
    int n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Moves queued jobs into free slots (under mu). */
static void engine_admit(Server *s) {
    while (s->q_head) {
        Job *j = s->q_head;
        int best = -1, best_lcp = -1;
        for (int i = 0; i < s->n_slots; i++) {
            Slot *sl = &s->slots[i];
            if (sl->job) continue;
            int l = common_prefix(sl->cache, sl->n_past, j->prompt, j->n_prompt);
            if (l > best_lcp) best = i, best_lcp = l;
        }
        if (best < 0) return;
        s->q_head = j->next;
        if (!s->q_head) s->q_tail = NULL;
        s->q_len--;
        j->next = NULL;
        Slot *sl = &s->slots[best];
        if (j->max_tokens == 0) { /* nothing to generate */
            job_done(s, j, "length", NULL);
            job_unref(j);
            continue;
        }
        /* the vocabulary-sized sampler buffers exist only while a slot runs
         * the job: a queue of 1,000 requests holds no 1,000 of them */
        Error err = {{0}};
        if (!(j->smp = sampler_new(&j->sp, s->n_vocab, &err))) {
            job_done(s, j, NULL, err.msg);
            job_unref(j);
            continue;
        }
        for (int i = 0; i < j->n_prompt; i++) sampler_accept(j->smp, j->prompt[i]);
        /* the common prefix, and a later cached stretch that continues the
         * prompt (a conversation whose oldest turns were dropped) shifted
         * into place */
        Error rerr = {{0}};
        int reuse = context_reuse(s->ctx, best, sl->cache, sl->n_past, j->prompt, j->n_prompt, SHIFT_MIN_RUN, &rerr);
        if (reuse < 0) reuse = best_lcp;
        if (s->pc) { /* then whole blocks from the prompt cache (the last prompt token is always computed) */
            const int r = pcache_restore(s->pc, s->ctx, best, j->prompt, j->n_prompt - 1, reuse);
            if (r > reuse) memcpy(sl->cache + reuse, j->prompt + reuse, (size_t)(r - reuse) * sizeof(int)), reuse = r;
        }
        int keep = reuse < j->n_prompt ? reuse : j->n_prompt - 1;
        sl->job = j;
        sl->n_past = keep;
        sl->prefill = true;
        sl->pending = 0;
        j->cached_tokens = keep;
        j->state = JOB_RUNNING;
        s->n_busy++;
    }
}

/* Appends a logprob entry for `tok` from the raw logits (in sl->raw). */
static void logprob_entry(Server *s, const float *raw, int tok, int n_top, TokLP *e) {
    const int V = s->n_vocab;
    float mx = raw[0];
    for (int i = 1; i < V; i++)
        if (raw[i] > mx) mx = raw[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)(raw[i] - mx));
    const float lse = mx + (float)log(sum);
    e->id = tok;
    e->lp = raw[tok] - lse;
    e->n_top = 0;
    for (int i = 0; i < V && n_top > 0; i++) {
        float v = raw[i];
        if (e->n_top == n_top && v <= e->top_lp[n_top - 1]) continue;
        int k = e->n_top < n_top ? e->n_top++ : n_top - 1;
        while (k > 0 && e->top_lp[k - 1] < v) {
            e->top_lp[k] = e->top_lp[k - 1];
            e->top_id[k] = e->top_id[k - 1];
            k--;
        }
        e->top_lp[k] = v;
        e->top_id[k] = i;
    }
    for (int k = 0; k < e->n_top; k++) e->top_lp[k] -= lse;
}

/* Samples the next token of slot sl from its logits row and publishes the
 * resulting text. Called without mu. */
static void engine_token(Server *s, Slot *sl, float *lg) {
    Job *j = sl->job;
    TokLP lpe;
    bool has_lp = false;
    if (j->logprobs >= 0) memcpy(sl->raw, lg, (size_t)s->n_vocab * sizeof(float));
    GrammarFilter gf = {j->gm, s->n_vocab, 0, 0};
    TokenFilter tf = {&gf, grammar_filter_allows, grammar_filter_mask};
    const double t_s0 = time_now();
    const int tok = j->gm ? sampler_sample_filtered(j->smp, lg, &tf) : sampler_sample(j->smp, lg);
    double t_sample = time_now() - t_s0;
    if (tok < 0) { /* nothing can continue the grammar (or its limits were hit) */
        pthread_mutex_lock(&s->mu);
        job_done(s, j, NULL, tok == -1 ? "grammar: no token of the vocabulary can continue the reply"
                                       : "grammar: too ambiguous (parser limits) or out of memory");
        slot_release(s, sl);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    const char *finish = NULL, *emit;
    size_t emit_len;
    char piece[256];
    bool oom = false, hit = false, eot = false;
    sl->scratch.len = 0;
    if ((tok == s->eos && !j->ignore_eos) || tok == j->stop_token) { /* end of text: not part of the reply */
        finish = "stop";
        eot = true;
    } else {
        if (j->logprobs >= 0) {
            logprob_entry(s, sl->raw, tok, j->logprobs, &lpe);
            has_lp = true;
        }
        sampler_accept(j->smp, tok);
        j->n_gen++;
        Error gerr = {{0}};
        const double ta = j->gm ? time_now() : 0;
        if (j->gm && grammar_matcher_accept(j->gm, tok, &gerr)) oom = true; /* not reached: the token was allowed */
        if (j->gm) gf.seconds += time_now() - ta, t_sample += time_now() - ta;
        size_t n = token_decoder_push(s->tok, &j->dec, tok, piece, sizeof piece);
        hit = stop_matcher_push(&j->sm, piece, n, &emit, &emit_len) != 0;
        if (str_put(&sl->scratch, emit, emit_len)) oom = true;
        if (hit || (j->gm && grammar_matcher_must_end(j->gm))) finish = "stop";
        else if (j->n_gen >= j->max_tokens || sl->n_past >= s->n_ctx) finish = "length";
    }
    if (finish && !hit) { /* end of text: release what was held back */
        size_t n = token_decoder_flush(&j->dec, piece, sizeof piece);
        bool hit2 = stop_matcher_push(&j->sm, piece, n, &emit, &emit_len) != 0;
        if (str_put(&sl->scratch, emit, emit_len)) oom = true;
        if (!hit2) {
            stop_matcher_flush(&j->sm, &emit, &emit_len);
            if (str_put(&sl->scratch, emit, emit_len)) oom = true;
        }
    }
    /* NUL bytes cannot travel in JSON strings built with strlen */
    size_t w = 0;
    for (size_t i = 0; i < sl->scratch.len; i++)
        if (sl->scratch.s[i]) sl->scratch.s[w++] = sl->scratch.s[i];
    sl->scratch.len = w;
    const double now = time_now();
    pthread_mutex_lock(&s->mu);
    if (j->gm) s->grammar_tokens++, s->grammar_masks += (uint64_t)gf.n_masks, s->grammar_seconds += gf.seconds;
    s->sample_seconds += t_sample;
    if (!eot) {
        j->completion_tokens++;
        s->gen_tokens++;
        rate_add(&s->gen_rate, now, 1);
    }
    if (j->t_first == 0) {
        j->t_first = now;
        s->ttft_sum += now - j->t_queued;
        s->ttft_count++;
    }
    if (!oom && w && str_put(&j->text, sl->scratch.s, w)) oom = true;
    if (!oom && has_lp) {
        if (j->n_lps == j->cap_lps) {
            int cap = j->cap_lps ? 2 * j->cap_lps : 64;
            TokLP *t = realloc(j->lps, (size_t)cap * sizeof *t);
            if (t) j->lps = t, j->cap_lps = cap;
            else oom = true;
        }
        if (!oom) j->lps[j->n_lps++] = lpe;
    }
    if (oom) {
        job_done(s, j, NULL, "out of memory");
        slot_release(s, sl);
    } else if (finish) {
        job_done(s, j, finish, NULL);
        slot_release(s, sl);
    } else {
        sl->next = tok;
        pthread_cond_broadcast(&j->cond);
    }
    pthread_mutex_unlock(&s->mu);
}

/* One engine step: a batched forward pass over every active slot. */
static void engine_step(Server *s) {
    int nb = 0, nrows = 0;
    for (int i = 0; i < s->n_slots; i++) {
        Slot *sl = &s->slots[i];
        if (!sl->job || sl->prefill) continue;
        s->b_tok[nb] = sl->next;
        s->b_pos[nb] = sl->n_past;
        s->b_seq[nb] = i;
        s->b_out[nb] = true;
        s->row_slot[nrows++] = i;
        nb++;
    }
    const int n_decode = nb;
    int budget = s->chunk;
    for (int k = 0; k < s->n_slots && budget > 0; k++) {
        const int i = (s->rr + k) % s->n_slots;
        Slot *sl = &s->slots[i];
        if (!sl->job || !sl->prefill) continue;
        const Job *j = sl->job;
        const int left = j->n_prompt - sl->n_past, n = left < budget ? left : budget;
        for (int t = 0; t < n; t++) {
            s->b_tok[nb] = j->prompt[sl->n_past + t];
            s->b_pos[nb] = sl->n_past + t;
            s->b_seq[nb] = i;
            s->b_out[nb] = (t == n - 1 && n == left);
            nb++;
        }
        if (n == left) s->row_slot[nrows++] = i;
        sl->pending = n;
        budget -= n;
    }
    s->rr = (s->rr + 1) % s->n_slots;
    if (nb == 0) return;
    Error err = {{0}};
    const double t0 = time_now();
    Batch b = {nb, s->b_tok, s->b_pos, s->b_seq, s->b_out};
    int rc = forward(s->ctx, &b, s->logits, &err);
    const double t1 = time_now();
    pthread_mutex_lock(&s->mu);
    s->steps++;
    s->batch_tokens += (uint64_t)nb;
    s->busy_seconds += t1 - t0;
    s->prompt_tokens_computed += (uint64_t)(nb - n_decode);
    rate_add(&s->pp_rate, t1, (uint64_t)(nb - n_decode));
    if (rc) { /* should not happen: inputs are validated; fail every active job */
        fprintf(stderr, "grok serve: forward failed: %s\n", err.msg);
        for (int i = 0; i < s->n_slots; i++)
            if (s->slots[i].job) {
                job_done(s, s->slots[i].job, NULL, err.msg);
                s->slots[i].n_past = 0;
                slot_release(s, &s->slots[i]);
            }
        pthread_mutex_unlock(&s->mu);
        return;
    }
    pthread_mutex_unlock(&s->mu);
    /* the tokens are in the cache now */
    for (int i = 0; i < s->n_slots; i++) {
        Slot *sl = &s->slots[i];
        if (!sl->job) continue;
        if (!sl->prefill) {
            sl->cache[sl->n_past++] = sl->next;
        } else if (sl->pending) {
            memcpy(sl->cache + sl->n_past, sl->job->prompt + sl->n_past, (size_t)sl->pending * sizeof(int));
            sl->n_past += sl->pending;
            sl->pending = 0;
            if (sl->n_past == sl->job->n_prompt) sl->prefill = false;
        }
    }
    for (int r = 0; r < nrows; r++) engine_token(s, &s->slots[s->row_slot[r]], s->logits + (size_t)r * s->n_vocab);
}

static void *engine_main(void *arg) {
    Server *s = arg;
    bool trimmed = true; /* memory handed back since the last request */
    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (int i = 0; i < s->n_slots; i++) {
            Slot *sl = &s->slots[i];
            if (sl->job && (sl->job->cancelled || s->stopping)) {
                if (sl->prefill) sl->pending = 0;
                job_done(s, sl->job, NULL, sl->job->cancelled ? NULL : SHUTDOWN_MSG);
                slot_release(s, sl);
            }
        }
        if (s->stopping) {
            while (s->q_head) {
                Job *j = s->q_head;
                s->q_head = j->next;
                s->q_len--;
                job_done(s, j, NULL, SHUTDOWN_MSG);
                job_unref(j);
            }
            s->q_tail = NULL;
            break;
        }
        engine_admit(s);
        if (s->n_busy == 0) {
            if (!trimmed) {
                /* a burst is over: give the heap's free pages back (requests
                 * cancelled mid-stream leave it fragmented; RSS would stay at
                 * the burst's peak) */
                trimmed = true;
                pthread_mutex_unlock(&s->mu);
#ifdef __GLIBC__
                malloc_trim(0);
#endif
                pthread_mutex_lock(&s->mu);
                continue;
            }
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        trimmed = false;
        pthread_mutex_unlock(&s->mu);
        engine_step(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Queues a job (takes a reference for the engine). 0, or an HTTP status. */
static int job_submit(Server *s, Job *j) {
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return 503;
    }
    if (s->q_len >= s->max_queue) {
        pthread_mutex_unlock(&s->mu);
        return 429;
    }
    j->refs++;
    j->t_queued = time_now();
    if (s->q_tail) s->q_tail->next = j;
    else s->q_head = j;
    s->q_tail = j;
    s->q_len++;
    s->prompt_tokens += (uint64_t)j->n_prompt;
    if (j->kind == KIND_CHAT) s->req_chat++;
    else s->req_completion++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* ---- API errors and responses ------------------------------------------ */

typedef struct {
    int status;
    const char *type;
    const char *code;
    char param[96];
    char msg[480];
} ApiErr;

static int api_err(ApiErr *e, int status, const char *code, const char *param, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

static int api_err(ApiErr *e, int status, const char *code, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = status == 401   ? "authentication_error"
              : status == 404 ? "not_found_error"
              : status == 429 ? "rate_limit_error"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    if (status == 404 && code && !strcmp(code, "model_not_found")) e->type = "invalid_request_error";
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static void add_common_headers(struct MHD_Response *r, const char *ctype) {
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header(r, "Server", "grok.c/" SERVER_VERSION);
}

static enum MHD_Result send_buf(Server *s, struct MHD_Connection *c, int status, const char *ctype, char *buf,
                                size_t len, bool must_free) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, buf, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (must_free) free(buf);
        return MHD_NO;
    }
    add_common_headers(r, ctype);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    if (status >= 400) {
        pthread_mutex_lock(&s->mu);
        if (status >= 500) s->http_5xx++;
        else s->http_4xx++;
        pthread_mutex_unlock(&s->mu);
    }
    return ok;
}

/* Sends and frees a cJSON object. */
static enum MHD_Result send_json(Server *s, struct MHD_Connection *c, int status, cJSON *o) {
    char *txt = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!txt) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        return send_buf(s, c, 500, "application/json", (char *)oom, sizeof oom - 1, false);
    }
    return send_buf(s, c, status, "application/json", txt, strlen(txt), true);
}

static cJSON *error_json(const ApiErr *e) {
    cJSON *o = cJSON_CreateObject(), *in = cJSON_AddObjectToObject(o, "error");
    if (!in) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddStringToObject(in, "message", e->msg);
    cJSON_AddStringToObject(in, "type", e->type);
    if (e->param[0]) cJSON_AddStringToObject(in, "param", e->param);
    else cJSON_AddNullToObject(in, "param");
    if (e->code) cJSON_AddStringToObject(in, "code", e->code);
    else cJSON_AddNullToObject(in, "code");
    return o;
}

static enum MHD_Result send_error(Server *s, struct MHD_Connection *c, const ApiErr *e) {
    return send_json(s, c, e->status, error_json(e));
}

static enum MHD_Result send_simple_error(Server *s, struct MHD_Connection *c, int status, const char *code,
                                         const char *msg) {
    ApiErr e;
    api_err(&e, status, code, NULL, "%s", msg);
    return send_error(s, c, &e);
}

/* ---- request validation ------------------------------------------------ */

/* A field that is absent or null counts as not given. */
static cJSON *field(const cJSON *o, const char *key) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* 1 if present (value in *out), 0 if absent, -1 on a bad value. */
static int get_number(const cJSON *o, const char *key, double lo, double hi, bool integer, double *out,
                      ApiErr *e) {
    cJSON *v = field(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v))
        return api_err(e, 400, "invalid_type", key, "Invalid type for '%s': expected %s", key,
                       integer ? "an integer" : "a number");
    double x = v->valuedouble;
    if (integer && x != floor(x))
        return api_err(e, 400, "invalid_type", key, "Invalid type for '%s': expected an integer, got %g", key, x);
    if (!(x >= lo && x <= hi)) {
        if (integer)
            return api_err(e, 400, "invalid_value", key, "Invalid '%s': %g is out of range; expected %.0f to %.0f", key, x,
                           lo, hi);
        return api_err(e, 400, "invalid_value", key, "Invalid '%s': %g is out of range; expected %g to %g", key, x, lo, hi);
    }
    *out = x;
    return 1;
}

static int get_bool(const cJSON *o, const char *key, bool *out, ApiErr *e) {
    cJSON *v = field(o, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return api_err(e, 400, "invalid_type", key, "Invalid type for '%s': expected a boolean", key);
    *out = cJSON_IsTrue(v);
    return 1;
}

static bool name_in(const char *name, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(name, *list)) return true;
    return false;
}

/* Fields a client may send that grok.c cannot honour yet: a 400 naming them. */
static const char *const UNSUPPORTED_FIELDS[] = {
    "functions", "function_call", "audio", "prediction", "web_search_options",
    "search_parameters", "reasoning_effort", "suffix", "deferred", NULL};

static int check_fields(const cJSON *root, const char *const *known, ApiErr *e) {
    for (const cJSON *it = root->child; it; it = it->next) {
        const char *k = it->string ? it->string : "";
        if (name_in(k, known)) continue;
        if (name_in(k, UNSUPPORTED_FIELDS)) {
            if (cJSON_IsNull(it)) continue;
            if (!strcmp(k, "suffix") && cJSON_IsString(it) && !it->valuestring[0]) continue;
            return api_err(e, 400, "unsupported_parameter", k, "'%s' is not supported by this server (grok.c) yet", k);
        }
        return api_err(e, 400, "unknown_parameter", k, "Unrecognized request argument supplied: %s", k);
    }
    return 0;
}

/* Options shared by chat and text completions. */
typedef struct {
    SamplerParams sp;
    bool seed_given;
    int max_tokens;           /* -1: not given */
    bool stream, include_usage, echo, ignore_eos;
    int logprobs;             /* -1: none */
    const char *stops[MAX_STOPS];
    int n_stops;
} GenOpts;

static int parse_stop(const cJSON *root, GenOpts *g, ApiErr *e) {
    cJSON *v = field(root, "stop");
    if (!v) return 0;
    if (cJSON_IsString(v)) {
        if (strlen(v->valuestring) > MAX_STOP_LEN)
            return api_err(e, 400, "invalid_value", "stop", "Invalid 'stop': at most %d bytes per string", MAX_STOP_LEN);
        if (v->valuestring[0]) g->stops[g->n_stops++] = v->valuestring;
        return 0;
    }
    if (!cJSON_IsArray(v))
        return api_err(e, 400, "invalid_type", "stop", "Invalid type for 'stop': expected a string or an array of strings");
    int n = cJSON_GetArraySize(v);
    if (n > MAX_STOPS)
        return api_err(e, 400, "invalid_value", "stop", "Invalid 'stop': at most %d stop strings, got %d", MAX_STOPS, n);
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, v) {
        char p[32];
        snprintf(p, sizeof p, "stop[%d]", i++);
        if (!cJSON_IsString(it)) return api_err(e, 400, "invalid_type", p, "Invalid type for '%s': expected a string", p);
        if (strlen(it->valuestring) > MAX_STOP_LEN)
            return api_err(e, 400, "invalid_value", p, "Invalid '%s': at most %d bytes per string", p, MAX_STOP_LEN);
        if (it->valuestring[0]) g->stops[g->n_stops++] = it->valuestring;
    }
    return 0;
}

static int parse_gen(Server *s, const cJSON *root, bool chat, GenOpts *g, ApiErr *e) {
    double x;
    int r;
    g->sp = sampler_defaults();
    g->max_tokens = -1;
    g->logprobs = -1;
    if ((r = get_number(root, "temperature", 0, 2, false, &x, e)) < 0) return -1;
    if (r) g->sp.temperature = (float)x;
    if ((r = get_number(root, "top_p", 0, 1, false, &x, e)) < 0) return -1;
    if (r) g->sp.top_p = (float)x;
    if ((r = get_number(root, "top_k", 0, 1e9, true, &x, e)) < 0) return -1;
    if (r) g->sp.top_k = (int)x;
    if ((r = get_number(root, "min_p", 0, 1, false, &x, e)) < 0) return -1;
    if (r) g->sp.min_p = (float)x;
    if ((r = get_number(root, "presence_penalty", -2, 2, false, &x, e)) < 0) return -1;
    if (r) g->sp.presence_penalty = (float)x;
    if ((r = get_number(root, "frequency_penalty", -2, 2, false, &x, e)) < 0) return -1;
    if (r) g->sp.frequency_penalty = (float)x;
    if ((r = get_number(root, "repeat_penalty", 0.01, 100, false, &x, e)) < 0) return -1;
    if (r) g->sp.repeat_penalty = (float)x;
    if ((r = get_number(root, "seed", -9223372036854775808.0, 9223372036854774784.0, true, &x, e)) < 0) return -1;
    if (r) {
        g->sp.seed = (uint64_t)(int64_t)x;
        g->seed_given = true;
    }
    const char *mt_name = "max_tokens";
    if (chat && field(root, "max_completion_tokens")) mt_name = "max_completion_tokens";
    cJSON *mt = field(root, mt_name);
    if (mt) {
        if (!cJSON_IsNumber(mt) || mt->valuedouble != floor(mt->valuedouble))
            return api_err(e, 400, "invalid_type", mt_name, "Invalid type for '%s': expected an integer", mt_name);
        const double lo = chat ? 1 : 0;
        if (mt->valuedouble < lo)
            return api_err(e, 400, "invalid_value", mt_name, "Invalid '%s': %.0f; it must be at least %.0f", mt_name,
                           mt->valuedouble, lo);
        if (mt->valuedouble > s->n_ctx)
            return api_err(e, 400, "invalid_value", mt_name,
                           "Invalid '%s': %.0f is too large; this server's context holds at most %d tokens per request",
                           mt_name, mt->valuedouble, s->n_ctx);
        g->max_tokens = (int)mt->valuedouble;
    }
    if ((r = get_number(root, "n", 1, 128, true, &x, e)) < 0) return -1;
    if (r && x != 1) return api_err(e, 400, "unsupported_value", "n", "Invalid 'n': only n = 1 is supported");
    if (get_bool(root, "stream", &g->stream, e) < 0) return -1;
    if (get_bool(root, "ignore_eos", &g->ignore_eos, e) < 0) return -1;
    cJSON *so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so))
            return api_err(e, 400, "invalid_type", "stream_options", "Invalid type for 'stream_options': expected an object");
        if (!g->stream)
            return api_err(e, 400, "invalid_value", "stream_options",
                           "Invalid 'stream_options': only allowed when 'stream' is true");
        for (const cJSON *it = so->child; it; it = it->next)
            if (strcmp(it->string, "include_usage") != 0)
                return api_err(e, 400, "unknown_parameter", "stream_options",
                               "Unrecognized argument in 'stream_options': %s", it->string);
        cJSON *iu = field(so, "include_usage");
        if (iu && !cJSON_IsBool(iu))
            return api_err(e, 400, "invalid_type", "stream_options.include_usage",
                           "Invalid type for 'stream_options.include_usage': expected a boolean");
        g->include_usage = iu && cJSON_IsTrue(iu);
    }
    if (parse_stop(root, g, e)) return -1;
    cJSON *u = field(root, "user");
    if (u && !cJSON_IsString(u)) return api_err(e, 400, "invalid_type", "user", "Invalid type for 'user': expected a string");
    cJSON *lb = field(root, "logit_bias");
    if (lb && (!cJSON_IsObject(lb) || lb->child))
        return api_err(e, 400, "unsupported_parameter", "logit_bias", "'logit_bias' is not supported by this server (grok.c) yet");
    if (chat) {
        bool lp = false;
        if (get_bool(root, "logprobs", &lp, e) < 0) return -1;
        if ((r = get_number(root, "top_logprobs", 0, MAX_TOP_LOGPROBS, true, &x, e)) < 0) return -1;
        if (r && !lp)
            return api_err(e, 400, "invalid_value", "top_logprobs",
                           "Invalid 'top_logprobs': 'logprobs' must be true to use 'top_logprobs'");
        if (lp) g->logprobs = r ? (int)x : 0;
        cJSON *mo = field(root, "modalities");
        if (mo) {
            bool ok = cJSON_IsArray(mo);
            const cJSON *it;
            cJSON_ArrayForEach(it, mo) if (!cJSON_IsString(it) || strcmp(it->valuestring, "text")) ok = false;
            if (!ok)
                return api_err(e, 400, "unsupported_parameter", "modalities",
                               "'modalities' other than [\"text\"] are not supported by this server (grok.c)");
        }
    } else {
        if ((r = get_number(root, "logprobs", 0, MAX_TOP_LOGPROBS, true, &x, e)) < 0) return -1;
        if (r) g->logprobs = (int)x;
        if (get_bool(root, "echo", &g->echo, e) < 0) return -1;
        if (g->echo && g->stream)
            return api_err(e, 400, "unsupported_value", "echo", "'echo' together with 'stream' is not supported by this server");
        if ((r = get_number(root, "best_of", 1, 128, true, &x, e)) < 0) return -1;
        if (r && x != 1) return api_err(e, 400, "unsupported_value", "best_of", "Invalid 'best_of': only 1 is supported");
    }
    return 0;
}

/* The model field: absent (the loaded model) or one of its ids. */
static int check_model(Server *s, const cJSON *root, ApiErr *e) {
    cJSON *m = field(root, "model");
    if (!m) return 0;
    if (!cJSON_IsString(m)) return api_err(e, 400, "invalid_type", "model", "Invalid type for 'model': expected a string");
    const char *id = m->valuestring;
    if (!strcmp(id, s->model_id) || !strcmp(id, s->file_id) || !strcmp(id, s->file_id_noext)) return 0;
    return api_err(e, 404, "model_not_found", "model",
                   "The model '%.200s' does not exist; this server serves '%.160s' (see GET /v1/models)", id,
                   s->model_id);
}

/* Builds a job from the validated options and prompt tokens (takes ids). */
static Job *make_job(Server *s, int kind, const GenOpts *g, const Structured *st, int *ids, int n, const char *param,
                     ApiErr *e) {
    if (n >= s->n_ctx) {
        free(ids);
        api_err(e, 400, "context_length_exceeded", param,
                "This server's context holds %d tokens per request, but the prompt has %d tokens; shorten it "
                "(or start the server with a larger --ctx)",
                s->n_ctx, n);
        return NULL;
    }
    Job *j = job_new();
    if (!j) {
        free(ids);
        api_err(e, 500, NULL, NULL, "out of memory");
        return NULL;
    }
    j->kind = kind;
    j->prompt = ids;
    j->n_prompt = n;
    j->stream = g->stream;
    j->include_usage = g->include_usage;
    j->echo = g->echo;
    j->ignore_eos = g->ignore_eos;
    j->stop_token = kind == KIND_CHAT ? s->sep_token : -1;
    j->logprobs = g->logprobs;
    j->max_tokens = g->max_tokens >= 0 ? g->max_tokens : s->n_ctx;
    j->created = (long long)time(NULL);
    SamplerParams sp = g->sp;
    pthread_mutex_lock(&s->mu);
    uint64_t r1 = splitmix(&s->rng), r2 = splitmix(&s->rng);
    pthread_mutex_unlock(&s->mu);
    if (!g->seed_given) sp.seed = r2;
    snprintf(j->id, sizeof j->id, "%s%016llx%08llx", kind == KIND_CHAT ? "chatcmpl-" : "cmpl-", (unsigned long long)r1,
             (unsigned long long)(r2 >> 32));
    Error err = {{0}};
    const char *stops[MAX_STOPS + 1];
    int n_stops = 0;
    for (int i = 0; i < g->n_stops; i++) stops[n_stops++] = g->stops[i];
    /* with a grammar, the grammar ends the reply (tools' plain-text replies still stop at the template's turn) */
    if (kind == KIND_CHAT && (!st->gbnf || st->tool_mode == TOOLS_AUTO)) stops[n_stops++] = chat_stop_string(s->tmpl);
    j->sp = sp;
    if (stop_matcher_init(&j->sm, stops, n_stops, &err)) {
        api_err(e, 500, NULL, NULL, "%s", err.msg);
        job_free(j);
        return NULL;
    }
    j->tool_mode = st->tool_mode;
    if (st->gbnf) {
        int ends[2], n_end = 0;
        if (!g->ignore_eos) ends[n_end++] = s->eos;
        if (j->stop_token >= 0) ends[n_end++] = j->stop_token;
        if (!(j->grammar = grammar_parse(st->gbnf, strlen(st->gbnf), NULL, &err)) ||
            !(j->gm = grammar_matcher_new(j->grammar, s->trie, ends, n_end, &err))) {
            api_err(e, 400, "invalid_grammar", NULL, "%s", err.msg);
            job_free(j);
            return NULL;
        }
    }
    token_decoder_init(&j->dec);
    /* a completion continues its prompt (" is" after "The answer is"); a chat
     * reply starts a message, whose separating space the template owns */
    if (kind == KIND_COMPLETION) token_decoder_after(s->tok, &j->dec, ids, n);
    return j;
}

static const char *const CHAT_FIELDS[] = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "seed",
    "stop", "stream", "stream_options", "presence_penalty", "frequency_penalty", "repeat_penalty", "logprobs",
    "top_logprobs", "n", "user", "ignore_eos", "store", "metadata", "service_tier", "parallel_tool_calls", "response_format",
    "logit_bias", "modalities", "grammar", "tools", "tool_choice", NULL};

static const char *const COMPLETION_FIELDS[] = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stream",
    "stream_options", "presence_penalty", "frequency_penalty", "repeat_penalty", "logprobs", "echo", "n",
    "best_of", "user", "logit_bias", "ignore_eos", "grammar", NULL};

/* Text of one message's content: a string or an array of text parts
 * (malloc'd). */
static char *message_text(const cJSON *content, int mi, ApiErr *e) {
    char p[64];
    if (!content) return strdup("");
    if (cJSON_IsString(content)) return strdup(content->valuestring);
    if (!cJSON_IsArray(content)) {
        snprintf(p, sizeof p, "messages[%d].content", mi);
        api_err(e, 400, "invalid_type", p, "Invalid type for '%s': expected a string or an array of content parts", p);
        return NULL;
    }
    Str b = {0};
    if (str_puts(&b, "")) goto oom;
    int k = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        snprintf(p, sizeof p, "messages[%d].content[%d]", mi, k++);
        cJSON *t = cJSON_IsObject(part) ? field(part, "type") : NULL;
        if (!t || !cJSON_IsString(t)) {
            str_free(&b);
            api_err(e, 400, "invalid_type", p, "Invalid '%s': expected an object with a 'type'", p);
            return NULL;
        }
        if (strcmp(t->valuestring, "text") != 0) {
            str_free(&b);
            api_err(e, 400, "unsupported_content", p, "Invalid '%s': content parts of type '%.40s' are not supported (only 'text')",
                    p, t->valuestring);
            return NULL;
        }
        cJSON *tx = field(part, "text");
        if (!tx || !cJSON_IsString(tx)) {
            str_free(&b);
            api_err(e, 400, "invalid_type", p, "Invalid '%s.text': expected a string", p);
            return NULL;
        }
        if (str_puts(&b, tx->valuestring)) goto oom;
    }
    return b.s;
oom:
    str_free(&b);
    api_err(e, 500, NULL, NULL, "out of memory");
    return NULL;
}

static Job *parse_chat(Server *s, const cJSON *root, ApiErr *e) {
    GenOpts g = {0};
    if (check_fields(root, CHAT_FIELDS, e) || check_model(s, root, e)) return NULL;
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!msgs) {
        api_err(e, 400, "missing_required_parameter", "messages", "Missing required parameter: 'messages'");
        return NULL;
    }
    if (!cJSON_IsArray(msgs)) {
        api_err(e, 400, "invalid_type", "messages", "Invalid type for 'messages': expected an array of message objects");
        return NULL;
    }
    const int n = cJSON_GetArraySize(msgs);
    if (n == 0) {
        api_err(e, 400, "invalid_value", "messages", "Invalid 'messages': empty array; expected at least one message");
        return NULL;
    }
    if (parse_gen(s, root, true, &g, e)) return NULL;
    Structured st;
    StructErr se = {0};
    if (structured_parse(root, true, &st, &se)) {
        structured_free(&st);
        api_err(e, se.status, se.code, se.param, "%s", se.msg);
        return NULL;
    }
    /* the tools' description goes first, as a system message */
    ChatMessage *cm = calloc((size_t)n + 1, sizeof *cm);
    char **texts = calloc((size_t)n + 1, sizeof *texts);
    Job *job = NULL;
    char *prompt = NULL;
    int i = 0, base = st.tool_prompt ? 1 : 0;
    if (cm && st.tool_prompt) cm[0].role = "system", cm[0].content = st.tool_prompt;
    if (!cm || !texts) {
        api_err(e, 500, NULL, NULL, "out of memory");
        goto out;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        char p[64];
        snprintf(p, sizeof p, "messages[%d]", i);
        if (!cJSON_IsObject(m)) {
            api_err(e, 400, "invalid_type", p, "Invalid type for '%s': expected an object", p);
            goto out;
        }
        cJSON *role = field(m, "role");
        snprintf(p, sizeof p, "messages[%d].role", i);
        if (!role) {
            api_err(e, 400, "missing_required_parameter", p, "Missing required parameter: '%s'", p);
            goto out;
        }
        if (!cJSON_IsString(role)) {
            api_err(e, 400, "invalid_type", p, "Invalid type for '%s': expected a string", p);
            goto out;
        }
        const char *r = role->valuestring;
        if (!strcmp(r, "developer")) r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool")) {
            api_err(e, 400, !strcmp(r, "function") ? "unsupported_value" : "invalid_value", p,
                    "Invalid '%s': '%.40s' (supported: system, developer, user, assistant, tool)", p, r);
            goto out;
        }
        static const char *const tool_keys[] = {"function_call", "audio", NULL};
        for (const char *const *k = tool_keys; *k; k++)
            if (field(m, *k)) {
                snprintf(p, sizeof p, "messages[%d].%s", i, *k);
                api_err(e, 400, "unsupported_parameter", p, "'%s' is not supported by this server (grok.c) yet", p);
                goto out;
            }
        cJSON *content = field(m, "content");
        if (!content && strcmp(r, "assistant") != 0) {
            snprintf(p, sizeof p, "messages[%d].content", i);
            api_err(e, 400, "missing_required_parameter", p, "Missing required parameter: '%s'", p);
            goto out;
        }
        cJSON *calls = field(m, "tool_calls");
        if (calls && strcmp(r, "assistant") != 0) {
            snprintf(p, sizeof p, "messages[%d].tool_calls", i);
            api_err(e, 400, "invalid_value", p, "Invalid '%s': only assistant messages have tool calls", p);
            goto out;
        }
        if (calls && !content) { /* the call as the model writes it */
            snprintf(p, sizeof p, "messages[%d].tool_calls", i);
            texts[base + i] = structured_tool_calls_text(calls, p, &se);
            if (!texts[base + i]) {
                api_err(e, se.status, se.code, se.param, "%s", se.msg);
                goto out;
            }
        } else if (!(texts[base + i] = message_text(content, i, e))) {
            if (!e->status) api_err(e, 500, NULL, NULL, "out of memory");
            goto out;
        }
        cm[base + i].role = r;
        cm[base + i].content = texts[base + i];
        i++;
    }
    Error err = {{0}};
    /* --context-shift: the leading system messages stay, the oldest turns
     * after them go (a user message and what follows it) until the prompt
     * leaves room for the reply; the cache of the turns kept is reused by a
     * context shift (engine_admit) */
    int ns = 0, nm = n + base, nt = 0, *ids = NULL;
    while (ns < nm && !strcmp(cm[ns].role, "system")) ns++;
    const int reserve = g.max_tokens > 0 && g.max_tokens < s->n_ctx / 2 ? g.max_tokens : s->n_ctx / 4;
    for (;;) {
        free(prompt), free(ids), ids = NULL;
        prompt = chat_format(s->tmpl, cm, nm, true, &err);
        if (!prompt) {
            api_err(e, 400, "invalid_value", "messages", "%s", err.msg);
            goto out;
        }
        nt = tokenizer_encode(s->tok, prompt, strlen(prompt), false, &ids, &err);
        if (nt < 0) {
            api_err(e, 500, NULL, NULL, "%s", err.msg);
            goto out;
        }
        if (!s->context_shift || nt + reserve <= s->n_ctx || nm - ns <= 1) break;
        int k = ns + 1; /* drop the oldest turn: up to the next user message */
        while (k < nm - 1 && strcmp(cm[k].role, "user")) k++;
        if (s->verbose) fprintf(stderr, "grok serve: context shift: dropped %d message(s)\n", k - ns);
        memmove(cm + ns, cm + k, (size_t)(nm - k) * sizeof *cm);
        nm -= k - ns;
    }
    job = make_job(s, KIND_CHAT, &g, &st, ids, nt, "messages", e);
out:
    structured_free(&st);
    if (texts)
        for (int k = 0; k <= n; k++) free(texts[k]);
    free(texts);
    free(cm);
    free(prompt);
    return job;
}

/* A token array (for completions prompts). */
static int token_array(Server *s, const cJSON *a, const char *param, int **out, ApiErr *e) {
    int n = cJSON_GetArraySize(a), i = 0;
    int *ids = malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    if (!ids) return api_err(e, 500, NULL, NULL, "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0 ||
            it->valuedouble >= s->n_vocab) {
            free(ids);
            return api_err(e, 400, "invalid_value", param, "Invalid '%s': token ids must be integers in 0..%d", param,
                           s->n_vocab - 1);
        }
        ids[i++] = (int)it->valuedouble;
    }
    *out = ids;
    return n;
}

static Job *parse_completion(Server *s, const cJSON *root, ApiErr *e) {
    GenOpts g = {0};
    if (check_fields(root, COMPLETION_FIELDS, e) || check_model(s, root, e)) return NULL;
    cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p || cJSON_IsNull(p)) {
        api_err(e, 400, "missing_required_parameter", "prompt", "Missing required parameter: 'prompt'");
        return NULL;
    }
    if (parse_gen(s, root, false, &g, e)) return NULL;
    /* a string, one-string array, token array or one-token-array array */
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && (cJSON_IsString(p->child) || cJSON_IsArray(p->child)))
        p = p->child;
    else if (cJSON_IsArray(p) && p->child && (cJSON_IsString(p->child) || cJSON_IsArray(p->child))) {
        api_err(e, 400, "unsupported_value", "prompt", "Invalid 'prompt': only one prompt per request is supported");
        return NULL;
    }
    int *ids = NULL, n;
    if (cJSON_IsString(p)) {
        Error err = {{0}};
        n = tokenizer_encode(s->tok, p->valuestring, strlen(p->valuestring), false, &ids, &err);
        if (n < 0) {
            api_err(e, 500, NULL, NULL, "%s", err.msg);
            return NULL;
        }
    } else if (cJSON_IsArray(p)) {
        if ((n = token_array(s, p, "prompt", &ids, e)) < 0) return NULL;
    } else {
        api_err(e, 400, "invalid_type", "prompt", "Invalid type for 'prompt': expected a string or an array of token ids");
        return NULL;
    }
    if (n == 0) { /* start from BOS if there is one */
        int bos = tokenizer_bos(s->tok);
        if (bos < 0) {
            free(ids);
            api_err(e, 400, "invalid_value", "prompt", "Invalid 'prompt': it is empty");
            return NULL;
        }
        ids[0] = bos;
        n = 1;
    }
    Structured st;
    StructErr se = {0};
    if (structured_parse(root, false, &st, &se)) {
        structured_free(&st);
        free(ids);
        api_err(e, se.status, se.code, se.param, "%s", se.msg);
        return NULL;
    }
    Job *j = make_job(s, KIND_COMPLETION, &g, &st, ids, n, "prompt", e);
    structured_free(&st);
    return j;
}

/* ---- response building ------------------------------------------------- */

/* The text of one token for logprobs; bytes that are not UTF-8 by
 * themselves are written "bytes:\xNN". Returns the raw byte count in
 * *raw (the token's bytes, copied to rawbuf). */
static void token_text(Server *s, int id, char *out, size_t cap, unsigned char *rawbuf, size_t *raw) {
    size_t len;
    const char *p = tokenizer_piece(s->tok, id, &len);
    size_t o = 0, r = 0;
    out[0] = 0;
    *raw = 0;
    if (!p) return;
    unsigned v;
    if (tokenizer_type(s->tok, id) == TOKEN_BYTE && len == 6 && sscanf(p, "<0x%2X>", &v) == 1) {
        rawbuf[r++] = (unsigned char)v;
        if (v < 0x80 && v > 0) snprintf(out, cap, "%c", (char)v);
        else snprintf(out, cap, "bytes:\\x%02x", v);
        *raw = r;
        return;
    }
    for (size_t i = 0; i < len && o + 4 < cap && r + 4 < 256; i++) {
        if (i + 2 < len && (unsigned char)p[i] == 0xE2 && (unsigned char)p[i + 1] == 0x96 &&
            (unsigned char)p[i + 2] == 0x81) {
            out[o++] = ' ';
            rawbuf[r++] = ' ';
            i += 2;
        } else {
            out[o++] = p[i];
            rawbuf[r++] = (unsigned char)p[i];
        }
    }
    out[o] = 0;
    *raw = r;
}

static cJSON *lp_item(Server *s, int id, float lp) {
    char t[256];
    unsigned char raw[256];
    size_t n;
    token_text(s, id, t, sizeof t, raw, &n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "token", t);
    cJSON_AddNumberToObject(o, "logprob", lp);
    cJSON *b = cJSON_AddArrayToObject(o, "bytes");
    for (size_t i = 0; i < n && b; i++) cJSON_AddItemToArray(b, cJSON_CreateNumber(raw[i]));
    return o;
}

/* Chat logprobs {"content": [...]} for entries [from, to). */
static cJSON *chat_logprobs(Server *s, const TokLP *lps, int from, int to) {
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "content");
    for (int i = from; i < to && arr; i++) {
        cJSON *it = lp_item(s, lps[i].id, lps[i].lp), *top = cJSON_AddArrayToObject(it, "top_logprobs");
        for (int k = 0; k < lps[i].n_top && top; k++) cJSON_AddItemToArray(top, lp_item(s, lps[i].top_id[k], lps[i].top_lp[k]));
        cJSON_AddItemToArray(arr, it);
    }
    cJSON_AddNullToObject(o, "refusal");
    return o;
}

/* Legacy completions logprobs for entries [from, to); offsets start at off0
 * and count each token's bytes (*end: the offset after the last; may be
 * NULL). */
static cJSON *completion_logprobs(Server *s, const TokLP *lps, int from, int to, size_t off0, size_t *end) {
    cJSON *o = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens"), *tlp = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs"), *off = cJSON_AddArrayToObject(o, "text_offset");
    size_t pos = off0;
    for (int i = from; i < to && toks && tlp && top && off; i++) {
        char t[256];
        unsigned char raw[256];
        size_t n;
        token_text(s, lps[i].id, t, sizeof t, raw, &n);
        cJSON_AddItemToArray(toks, cJSON_CreateString(t));
        cJSON_AddItemToArray(tlp, cJSON_CreateNumber(lps[i].lp));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)pos));
        pos += n;
        cJSON *alt = cJSON_CreateObject();
        for (int k = 0; k < lps[i].n_top; k++) {
            token_text(s, lps[i].top_id[k], t, sizeof t, raw, &n);
            if (!cJSON_GetObjectItemCaseSensitive(alt, t)) cJSON_AddNumberToObject(alt, t, lps[i].top_lp[k]);
        }
        cJSON_AddItemToArray(top, alt);
    }
    if (end) *end = pos;
    return o;
}

static cJSON *usage_json(const Job *j) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", j->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", j->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", j->n_prompt + j->completion_tokens);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    if (d) cJSON_AddNumberToObject(d, "cached_tokens", j->cached_tokens);
    return u;
}

static cJSON *response_head(Server *s, const Job *j, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON_AddStringToObject(o, "model", s->model_id);
    cJSON_AddStringToObject(o, "system_fingerprint", s->fingerprint);
    return o;
}

/* The whole (non-streaming) response of a finished job (under mu). */
static cJSON *final_response(Server *s, const Job *j) {
    const bool chat = j->kind == KIND_CHAT;
    cJSON *o = response_head(s, j, chat ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    char *echo = NULL;
    bool tool_calls = false;
    if (chat) {
        cJSON *msg = cJSON_AddObjectToObject(c, "message");
        uint64_t r = (uint64_t)j->created ^ (uint64_t)(uintptr_t)j;
        cJSON *calls = j->tool_mode && j->text.s ? structured_reply_tool_calls(j->text.s, &r) : NULL;
        if (msg) {
            cJSON_AddStringToObject(msg, "role", "assistant");
            if (calls) cJSON_AddNullToObject(msg, "content");
            else cJSON_AddStringToObject(msg, "content", j->text.s ? j->text.s : "");
            cJSON_AddNullToObject(msg, "refusal");
            if (calls) cJSON_AddItemToObject(msg, "tool_calls", calls);
            else cJSON_Delete(calls);
            if (calls) tool_calls = true;
        } else cJSON_Delete(calls);
    } else {
        if (j->echo) echo = tokenizer_decode(s->tok, j->prompt, j->n_prompt);
        Str t = {0};
        int bad = str_puts(&t, echo ? echo : "") || str_puts(&t, j->text.s ? j->text.s : "");
        cJSON_AddStringToObject(c, "text", bad ? "" : t.s);
        str_free(&t);
    }
    if (j->logprobs >= 0)
        cJSON_AddItemToObject(c, "logprobs",
                              chat ? chat_logprobs(s, j->lps, 0, j->n_lps)
                                   : completion_logprobs(s, j->lps, 0, j->n_lps, echo ? strlen(echo) : 0, NULL));
    else cJSON_AddNullToObject(c, "logprobs");
    free(echo);
    cJSON_AddStringToObject(c, "finish_reason", tool_calls ? "tool_calls" : j->finish ? j->finish : "stop");
    cJSON_AddItemToArray(choices, c);
    cJSON_AddItemToObject(o, "usage", usage_json(j));
    return o;
}

/* ---- streaming --------------------------------------------------------- */

typedef struct {
    Server *s;
    Job *job;
    int fd;
    struct MHD_Connection *conn;
    Str out;           /* SSE bytes ready to send */
    size_t out_off;
    size_t text_sent;  /* job->text bytes already sent */
    int lps_sent;
    size_t lp_off;     /* text_offset of the next logprobs entry */
    bool started, finished;
    bool probed;       /* the client sent FIN and got a keep-alive comment to tell gone from half-closed */
} Stream;

static int sse_put(Stream *st, cJSON *o) {
    char *t = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!t) return -1;
    int r = str_puts(&st->out, "data: ") || str_puts(&st->out, t) || str_puts(&st->out, "\n\n");
    free(t);
    return r ? -1 : 0;
}

static cJSON *chunk_new(Stream *st, cJSON **choice) {
    const Job *j = st->job;
    const bool chat = j->kind == KIND_CHAT;
    cJSON *o = response_head(st->s, j, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    *choice = cJSON_CreateObject();
    cJSON_AddNumberToObject(*choice, "index", 0);
    cJSON_AddItemToArray(choices, *choice);
    if (j->include_usage) cJSON_AddNullToObject(o, "usage");
    return o;
}

/* Turns what the job has produced since the last call into SSE chunks
 * (under mu). */
/* The Responses API's events for what the job has produced (under mu). */
static int stream_fill_responses(Stream *st) {
    Job *j = st->job;
    Server *s = st->s;
    RespView v = {s->model_id,         j->text.s ? j->text.s : "", j->text.len, j->state == JOB_DONE, j->finish,
                  j->error[0] ? j->error : NULL, j->n_prompt, j->cached_tokens, j->completion_tokens};
    size_t n = 0;
    bool oom, fin;
    char *b = responses_stream(s->rstore, j->resp, &v, &n, &oom, &fin);
    int r = oom || (b && n && str_put(&st->out, b, n)) ? -1 : 0;
    free(b);
    if (fin) st->finished = true;
    return r;
}

static int stream_fill(Stream *st) {
    Job *j = st->job;
    Server *s = st->s;
    if (j->resp) return stream_fill_responses(st);
    const bool chat = j->kind == KIND_CHAT;
    cJSON *c;
    if (!st->started) {
        st->started = true;
        if (chat) {
            cJSON *o = chunk_new(st, &c), *d = cJSON_AddObjectToObject(c, "delta");
            if (d) {
                cJSON_AddStringToObject(d, "role", "assistant");
                cJSON_AddStringToObject(d, "content", "");
            }
            cJSON_AddNullToObject(c, "logprobs");
            cJSON_AddNullToObject(c, "finish_reason");
            if (sse_put(st, o)) return -1;
        }
    }
    /* a reply that is (or may still become) a tool call is held back until it is complete */
    const bool hold = chat && j->tool_mode && structured_text_kind(j->text.s ? j->text.s : "", j->text.len) != 0;
    bool tool_calls = false;
    if (hold && j->state == JOB_DONE && !st->finished && !j->error[0]) {
        uint64_t r = (uint64_t)j->created ^ (uint64_t)(uintptr_t)j;
        cJSON *calls = j->text.s ? structured_reply_tool_calls(j->text.s, &r) : NULL;
        if (calls) { /* all calls in one chunk, as xAI sends them */
            cJSON *o = chunk_new(st, &c), *d = cJSON_AddObjectToObject(c, "delta");
            int idx = 0;
            for (cJSON *tc = calls->child; tc; tc = tc->next) cJSON_AddNumberToObject(tc, "index", idx++);
            if (d) cJSON_AddItemToObject(d, "tool_calls", calls);
            else cJSON_Delete(calls);
            cJSON_AddNullToObject(c, "logprobs");
            cJSON_AddNullToObject(c, "finish_reason");
            if (sse_put(st, o)) return -1;
            st->text_sent = j->text.len;
            st->lps_sent = j->n_lps;
            tool_calls = true;
        }
    }
    const bool new_text = j->text.len > st->text_sent && (!hold || j->state == JOB_DONE),
               new_lp = j->n_lps > st->lps_sent && (!hold || j->state == JOB_DONE);
    if (new_text || new_lp) {
        cJSON *o = chunk_new(st, &c);
        const char *txt = j->text.s ? j->text.s + st->text_sent : "";
        if (chat) {
            cJSON *d = cJSON_AddObjectToObject(c, "delta");
            if (d) cJSON_AddStringToObject(d, "content", txt);
        } else {
            cJSON_AddStringToObject(c, "text", txt);
        }
        if (j->logprobs >= 0)
            cJSON_AddItemToObject(c, "logprobs",
                                  chat ? chat_logprobs(s, j->lps, st->lps_sent, j->n_lps)
                                       : completion_logprobs(s, j->lps, st->lps_sent, j->n_lps, st->lp_off, &st->lp_off));
        else cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddNullToObject(c, "finish_reason");
        st->text_sent = j->text.len;
        st->lps_sent = j->n_lps;
        if (sse_put(st, o)) return -1;
    }
    if (j->state == JOB_DONE && !st->finished) {
        st->finished = true;
        if (j->error[0]) {
            ApiErr e;
            api_err(&e, strcmp(j->error, SHUTDOWN_MSG) ? 500 : 503, NULL, NULL, "%s", j->error);
            if (sse_put(st, error_json(&e))) return -1;
        } else {
            cJSON *o = chunk_new(st, &c);
            if (chat) cJSON_AddObjectToObject(c, "delta");
            else cJSON_AddStringToObject(c, "text", "");
            cJSON_AddNullToObject(c, "logprobs");
            cJSON_AddStringToObject(c, "finish_reason", tool_calls ? "tool_calls" : j->finish ? j->finish : "stop");
            if (sse_put(st, o)) return -1;
            if (j->include_usage) {
                o = response_head(s, j, chat ? "chat.completion.chunk" : "text_completion");
                cJSON_AddArrayToObject(o, "choices");
                cJSON_AddItemToObject(o, "usage", usage_json(j));
                if (sse_put(st, o)) return -1;
            }
        }
        if (str_puts(&st->out, "data: [DONE]\n\n")) return -1;
    }
    return 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    Stream *st = cls;
    Server *s = st->s;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (st->out_off < st->out.len) {
            size_t n = st->out.len - st->out_off;
            if (n > max) n = max;
            memcpy(buf, st->out.s + st->out_off, n);
            st->out_off += n;
            if (st->out_off == st->out.len) st->out.len = st->out_off = 0;
            pthread_mutex_unlock(&s->mu);
            return (ssize_t)n;
        }
        if (st->finished) {
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (stream_fill(st)) { /* out of memory */
            job_cancel(s, st->job);
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (st->finished && st->conn && s->timeout_s) /* the rest is up to the client: idle timeout again */
            MHD_set_connection_option(st->conn, MHD_CONNECTION_OPTION_TIMEOUT, s->timeout_s);
        if (st->out.len) continue;
        const int ps = peer_state(st->fd);
        if (ps == PEER_GONE) {
            job_cancel(s, st->job);
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (ps == PEER_EOF && !st->probed) {
            /* gone, or half-closed and still reading? An SSE comment tells:
             * a closed socket answers it with a reset (PEER_GONE next time) */
            st->probed = true;
            if (str_puts(&st->out, ": keep-alive\n\n")) {
                job_cancel(s, st->job);
                pthread_mutex_unlock(&s->mu);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            continue;
        }
        struct timespec ts;
        abs_deadline(&ts, WAIT_POLL_MS);
        pthread_cond_timedwait(&st->job->cond, &s->mu, &ts);
    }
}

static void stream_free(void *cls) {
    Stream *st = cls;
    Server *s = st->s;
    pthread_mutex_lock(&s->mu);
    job_cancel(s, st->job); /* no-op when done */
    job_unref(st->job);
    pthread_mutex_unlock(&s->mu);
    str_free(&st->out);
    free(st);
}

/* ---- HTTP handlers ----------------------------------------------------- */

enum {
    EP_NONE,
    EP_CHAT,
    EP_COMPLETIONS,
    EP_MODELS,
    EP_MODEL,
    EP_HEALTH,
    EP_METRICS,
    EP_TOKENIZE,
    EP_DETOKENIZE,
    EP_INDEX,
    EP_FAVICON,
    EP_RESPONSES,       /* POST /v1/responses */
    EP_RESPONSE,        /* GET, DELETE /v1/responses/{id} */
    EP_TOKENIZE_TEXT,   /* xAI: POST /v1/tokenize-text */
    EP_LANGUAGE_MODELS, /* xAI: GET /v1/language-models[/{id}] */
    EP_LANGUAGE_MODEL,
};

typedef struct {
    Server *s;
    int ep;
    bool post;
    Str body;
    size_t received;
    bool too_big, responded;
    bool http11;             /* HTTP/1.1 or later: may be sent an interim 100 Continue */
    Job *job;
} Req;

static int route(const char *url, const char **model_id) {
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) return EP_INDEX;
    if (!strcmp(url, "/favicon.ico")) return EP_FAVICON;
    if (!strcmp(url, "/health")) return EP_HEALTH;
    if (!strcmp(url, "/metrics")) return EP_METRICS;
    if (!strncmp(url, "/v1/", 4)) url += 3;
    if (!strcmp(url, "/chat/completions")) return EP_CHAT;
    if (!strcmp(url, "/completions")) return EP_COMPLETIONS;
    if (!strcmp(url, "/models")) return EP_MODELS;
    if (!strncmp(url, "/models/", 8) && url[8]) {
        *model_id = url + 8;
        return EP_MODEL;
    }
    if (!strcmp(url, "/tokenize")) return EP_TOKENIZE;
    if (!strcmp(url, "/responses")) return EP_RESPONSES;
    if (!strncmp(url, "/responses/", 11) && url[11]) {
        *model_id = url + 11;
        return EP_RESPONSE;
    }
    if (!strcmp(url, "/tokenize-text")) return EP_TOKENIZE_TEXT;
    if (!strcmp(url, "/language-models")) return EP_LANGUAGE_MODELS;
    if (!strncmp(url, "/language-models/", 17) && url[17]) {
        *model_id = url + 17;
        return EP_LANGUAGE_MODEL;
    }
    if (!strcmp(url, "/detokenize")) return EP_DETOKENIZE;
    return EP_NONE;
}

static bool ep_is_post(int ep) {
    return ep == EP_CHAT || ep == EP_COMPLETIONS || ep == EP_TOKENIZE || ep == EP_DETOKENIZE || ep == EP_RESPONSES ||
           ep == EP_TOKENIZE_TEXT;
}

static bool authorized(Server *s, struct MHD_Connection *c) {
    if (!s->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    while (*h == ' ') h++;
    size_t a = strlen(h), b = strlen(s->api_key);
    unsigned diff = (unsigned)(a != b);
    for (size_t i = 0; i < a; i++) diff |= (unsigned char)h[i] ^ (unsigned char)s->api_key[i % (b ? b : 1)];
    return diff == 0;
}

static cJSON *model_json(Server *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", s->model_id);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddNumberToObject(o, "created", (double)s->started);
    cJSON_AddStringToObject(o, "owned_by", "grok.c");
    cJSON *meta = cJSON_AddObjectToObject(o, "meta");
    if (meta) {
        uint64_t total, active;
        model_param_counts(s->m, &total, &active);
        cJSON_AddNumberToObject(meta, "n_ctx_per_request", s->n_ctx);
        cJSON_AddNumberToObject(meta, "n_ctx_train", s->m->cfg.n_ctx_train);
        cJSON_AddNumberToObject(meta, "n_vocab", s->n_vocab);
        cJSON_AddNumberToObject(meta, "n_params", (double)total);
        cJSON_AddNumberToObject(meta, "n_params_active", (double)active);
        cJSON_AddNumberToObject(meta, "parallel", s->n_slots);
        cJSON_AddStringToObject(meta, "chat_template", chat_template_name(s->tmpl));
    }
    return o;
}

static enum MHD_Result handle_metrics(Server *s, struct MHD_Connection *c) {
    Str b = {0};
    char line[256];
    const double now = time_now();
    pthread_mutex_lock(&s->mu);
#define METRIC(name, type, help, fmt, ...)                                                                   \
    do {                                                                                                    \
        snprintf(line, sizeof line, "# HELP grok_" name " " help "\n# TYPE grok_" name " " type "\n");      \
        bad |= str_puts(&b, line);                                                                          \
        snprintf(line, sizeof line, fmt "\n", __VA_ARGS__);                                                \
        bad |= str_puts(&b, line);                                                                          \
    } while (0)
    int bad = 0;
    METRIC("requests_total", "counter", "Generation requests accepted, by endpoint.",
           "grok_requests_total{endpoint=\"chat_completions\"} %llu\ngrok_requests_total{endpoint=\"completions\"} %llu",
           (unsigned long long)s->req_chat, (unsigned long long)s->req_completion);
    METRIC("requests_finished_total", "counter", "Generation requests finished, by outcome.",
           "grok_requests_finished_total{reason=\"stop\"} %llu\ngrok_requests_finished_total{reason=\"length\"} %llu\n"
           "grok_requests_finished_total{reason=\"cancelled\"} %llu\ngrok_requests_finished_total{reason=\"error\"} %llu",
           (unsigned long long)s->fin_stop, (unsigned long long)s->fin_length, (unsigned long long)s->fin_cancelled,
           (unsigned long long)s->fin_error);
    METRIC("http_errors_total", "counter", "Error responses, by class.",
           "grok_http_errors_total{class=\"4xx\"} %llu\ngrok_http_errors_total{class=\"5xx\"} %llu",
           (unsigned long long)s->http_4xx, (unsigned long long)s->http_5xx);
    METRIC("prompt_tokens_total", "counter", "Prompt tokens of accepted requests.", "grok_prompt_tokens_total %llu",
           (unsigned long long)s->prompt_tokens);
    METRIC("prompt_tokens_computed_total", "counter", "Prompt tokens run through the model (not reused from the cache).",
           "grok_prompt_tokens_computed_total %llu", (unsigned long long)s->prompt_tokens_computed);
    METRIC("generated_tokens_total", "counter", "Tokens generated.", "grok_generated_tokens_total %llu",
           (unsigned long long)s->gen_tokens);
    METRIC("generation_tokens_per_second", "gauge", "Generated tokens per second over the last 10 s.",
           "grok_generation_tokens_per_second %.3f", rate_get(&s->gen_rate, now));
    METRIC("prompt_tokens_per_second", "gauge", "Prompt tokens computed per second over the last 10 s.",
           "grok_prompt_tokens_per_second %.3f", rate_get(&s->pp_rate, now));
    METRIC("queue_length", "gauge", "Requests waiting for a slot.", "grok_queue_length %d", s->q_len);
    METRIC("slots_busy", "gauge", "Slots running a request.", "grok_slots_busy %d", s->n_busy);
    METRIC("slots_total", "gauge", "Slots (--parallel).", "grok_slots_total %d", s->n_slots);
    METRIC("time_to_first_token_seconds", "summary", "Time from queueing to the first token.",
           "grok_time_to_first_token_seconds_sum %.6f\ngrok_time_to_first_token_seconds_count %llu", s->ttft_sum,
           (unsigned long long)s->ttft_count);
    METRIC("forward_passes_total", "counter", "Batched forward passes (engine steps).", "grok_forward_passes_total %llu",
           (unsigned long long)s->steps);
    METRIC("batch_tokens_total", "counter", "Tokens over all forward passes.", "grok_batch_tokens_total %llu",
           (unsigned long long)s->batch_tokens);
    METRIC("busy_seconds_total", "counter", "Seconds spent in forward passes.", "grok_busy_seconds_total %.6f",
           s->busy_seconds);
    METRIC("grammar_tokens_total", "counter", "Tokens sampled under a grammar (response_format, grammar, tools).",
           "grok_grammar_tokens_total %llu", (unsigned long long)s->grammar_tokens);
    METRIC("grammar_masks_total", "counter", "Full vocabulary masks computed (the sampled token broke the grammar).",
           "grok_grammar_masks_total %llu", (unsigned long long)s->grammar_masks);
    METRIC("sample_seconds_total", "counter", "Engine seconds spent sampling tokens (grammars included).",
           "grok_sample_seconds_total %.6f", s->sample_seconds);
    METRIC("grammar_seconds_total", "counter", "Engine seconds spent on grammars (checks, masks, steps).",
           "grok_grammar_seconds_total %.6f", s->grammar_seconds);
    if (s->pc) {
        PCacheStats pst;
        pcache_stats(s->pc, &pst);
        METRIC("prompt_cache_lookups_total", "counter", "Prompt cache lookups by result (hit: some blocks restored).",
               "grok_prompt_cache_lookups_total{result=\"hit\"} %llu\ngrok_prompt_cache_lookups_total{result=\"miss\"} %llu",
               (unsigned long long)pst.hits, (unsigned long long)pst.misses);
        METRIC("prompt_cache_evictions_total", "counter", "Prompt cache blocks evicted from RAM for space.",
               "grok_prompt_cache_evictions_total %llu", (unsigned long long)pst.evictions);
        METRIC("prompt_cache_tokens_restored_total", "counter", "Prompt tokens restored from the prompt cache.",
               "grok_prompt_cache_tokens_restored_total %llu", (unsigned long long)pst.tokens_restored);
        METRIC("prompt_cache_bytes", "gauge", "Bytes the prompt cache holds in RAM (of --cache-ram).",
               "grok_prompt_cache_bytes %llu", (unsigned long long)pst.bytes);
        METRIC("prompt_cache_blocks", "gauge", "Blocks of " "32" " positions in the prompt cache's RAM.",
               "grok_prompt_cache_blocks %llu", (unsigned long long)pst.blocks);
        METRIC("prompt_cache_disk_total", "counter", "Disk tier: blocks read, written, and failed or rejected files.",
               "grok_prompt_cache_disk_total{op=\"read\"} %llu\ngrok_prompt_cache_disk_total{op=\"write\"} %llu\n"
               "grok_prompt_cache_disk_total{op=\"error\"} %llu",
               (unsigned long long)pst.disk_reads, (unsigned long long)pst.disk_writes,
               (unsigned long long)pst.disk_errors);
    }
    METRIC("uptime_seconds", "gauge", "Seconds since the server started.", "grok_uptime_seconds %.3f",
           (double)time(NULL) - (double)s->started);
#undef METRIC
    pthread_mutex_unlock(&s->mu);
    if (bad) {
        str_free(&b);
        return send_simple_error(s, c, 500, NULL, "out of memory");
    }
    return send_buf(s, c, 200, "text/plain; version=0.0.4; charset=utf-8", b.s, b.len, true);
}

static enum MHD_Result handle_tokenize(Server *s, struct MHD_Connection *c, const cJSON *root, bool detok) {
    ApiErr e = {0};
    static const char *const tok_fields[] = {"model", "content", "add_special", "with_pieces", NULL};
    static const char *const detok_fields[] = {"model", "tokens", NULL};
    if (check_fields(root, detok ? detok_fields : tok_fields, &e) || check_model(s, root, &e)) return send_error(s, c, &e);
    pthread_mutex_lock(&s->mu);
    s->req_tokenize++;
    pthread_mutex_unlock(&s->mu);
    cJSON *o = cJSON_CreateObject();
    if (detok) {
        cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "tokens");
        int *ids = NULL, n;
        if (!t || cJSON_IsNull(t)) {
            api_err(&e, 400, "missing_required_parameter", "tokens", "Missing required parameter: 'tokens'");
            goto fail;
        }
        if (!cJSON_IsArray(t)) {
            api_err(&e, 400, "invalid_type", "tokens", "Invalid type for 'tokens': expected an array of token ids");
            goto fail;
        }
        if ((n = token_array(s, t, "tokens", &ids, &e)) < 0) goto fail;
        char *txt = tokenizer_decode(s->tok, ids, n);
        free(ids);
        if (!txt) {
            api_err(&e, 500, NULL, NULL, "out of memory");
            goto fail;
        }
        cJSON_AddStringToObject(o, "content", txt);
        free(txt);
    } else {
        cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "content");
        bool add_special = false, pieces = false;
        if (!t || cJSON_IsNull(t)) {
            api_err(&e, 400, "missing_required_parameter", "content", "Missing required parameter: 'content'");
            goto fail;
        }
        if (!cJSON_IsString(t)) {
            api_err(&e, 400, "invalid_type", "content", "Invalid type for 'content': expected a string");
            goto fail;
        }
        if (get_bool(root, "add_special", &add_special, &e) < 0 || get_bool(root, "with_pieces", &pieces, &e) < 0) goto fail;
        int *ids = NULL;
        Error err = {{0}};
        int n = tokenizer_encode(s->tok, t->valuestring, strlen(t->valuestring), add_special, &ids, &err);
        if (n < 0) {
            api_err(&e, 500, NULL, NULL, "%s", err.msg);
            goto fail;
        }
        cJSON *arr = cJSON_AddArrayToObject(o, "tokens");
        for (int i = 0; i < n && arr; i++) {
            if (pieces) {
                char txt[256];
                unsigned char raw[256];
                size_t nr;
                token_text(s, ids[i], txt, sizeof txt, raw, &nr);
                cJSON *it = cJSON_CreateObject();
                cJSON_AddNumberToObject(it, "id", ids[i]);
                cJSON_AddStringToObject(it, "piece", txt);
                cJSON_AddItemToArray(arr, it);
            } else {
                cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
            }
        }
        free(ids);
    }
    return send_json(s, c, 200, o);
fail:
    cJSON_Delete(o);
    return send_error(s, c, &e);
}

/* Waits for a non-streaming job; returns false if the client went away
 * (the job is then cancelled). */
static bool wait_job(Server *s, Job *j, int fd, bool http11) {
    /* a FIN alone may be a client that half-closed after its request: an
     * HTTP/1.1 client is asked with a 100 Continue (see http_guard.h) */
    PeerWatch w = {http11, !http11, false};
    pthread_mutex_lock(&s->mu);
    while (j->state != JOB_DONE) {
        if (peer_gone(fd, &w)) {
            job_cancel(s, j);
            pthread_mutex_unlock(&s->mu);
            return false;
        }
        struct timespec ts;
        abs_deadline(&ts, WAIT_POLL_MS);
        pthread_cond_timedwait(&j->cond, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return true;
}

static int connection_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static enum MHD_Result handle_generate(Server *s, struct MHD_Connection *c, Req *rq, const cJSON *root) {
    ApiErr e = {0};
    Job *j;
    if (rq->ep == EP_RESPONSES) { /* run as a chat request */
        RespCtx *rc = NULL;
        StructErr se = {0};
        pthread_mutex_lock(&s->mu);
        uint64_t seed = splitmix(&s->rng);
        pthread_mutex_unlock(&s->mu);
        cJSON *chat = responses_to_chat(root, s->rstore, seed, &rc, &se);
        if (!chat) {
            api_err(&e, se.status, se.code, se.param, "%s", se.msg);
            return send_error(s, c, &e);
        }
        j = parse_chat(s, chat, &e);
        cJSON_Delete(chat);
        if (j) j->resp = rc;
        else resp_ctx_free(rc);
    } else j = rq->ep == EP_CHAT ? parse_chat(s, root, &e) : parse_completion(s, root, &e);
    if (!j) return send_error(s, c, &e);
    rq->job = j;
    int st = job_submit(s, j);
    if (st) {
        return send_simple_error(s, c, st, st == 429 ? "queue_full" : NULL,
                                 st == 429 ? "Too many requests are waiting; try again later"
                                           : "The server is shutting down");
    }
    const int fd = connection_fd(c);
    /* waiting for the model is not idling: no connection timeout until the
     * answer is ready (setting it again restarts the timer) */
    if (s->timeout_s) MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    if (!j->stream) {
        if (!wait_job(s, j, fd, rq->http11)) return MHD_NO;
        if (s->timeout_s) MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, s->timeout_s);
        pthread_mutex_lock(&s->mu);
        cJSON *o = NULL;
        ApiErr fe = {0};
        if (j->error[0]) api_err(&fe, strcmp(j->error, SHUTDOWN_MSG) ? 500 : 503, NULL, NULL, "%s", j->error);
        else if (j->resp) {
            RespView v = {s->model_id, j->text.s ? j->text.s : "", j->text.len, true, j->finish, NULL,
                          j->n_prompt, j->cached_tokens, j->completion_tokens};
            o = responses_final(s->rstore, j->resp, &v);
        } else o = final_response(s, j);
        if (s->verbose)
            fprintf(stderr, "grok serve: %s prompt %d (cached %d) completion %d finish %s %.3f s\n", j->id, j->n_prompt,
                    j->cached_tokens, j->completion_tokens, j->finish ? j->finish : "-", j->t_done - j->t_queued);
        pthread_mutex_unlock(&s->mu);
        return fe.status ? send_error(s, c, &fe) : send_json(s, c, 200, o);
    }
    Stream *stm = calloc(1, sizeof *stm);
    if (!stm) {
        pthread_mutex_lock(&s->mu);
        job_cancel(s, j);
        pthread_mutex_unlock(&s->mu);
        return send_simple_error(s, c, 500, NULL, "out of memory");
    }
    stm->s = s;
    stm->job = j;
    stm->fd = fd;
    stm->conn = c;
    pthread_mutex_lock(&s->mu);
    j->refs++;
    pthread_mutex_unlock(&s->mu);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, stm, stream_free);
    if (!r) {
        stream_free(stm);
        return MHD_NO;
    }
    add_common_headers(r, "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result handle_tokenize_text(Server *s, struct MHD_Connection *c, const cJSON *root);

static enum MHD_Result handle_post(Server *s, struct MHD_Connection *c, Req *rq) {
    if (rq->too_big) {
        char msg[160];
        snprintf(msg, sizeof msg, "The request body is larger than this server's limit of %zu bytes", s->max_body);
        return send_simple_error(s, c, 413, "request_too_large", msg);
    }
    const char *end = NULL, *const body = rq->body.s ? rq->body.s : "";
    /* JSON text is UTF-8: a malformed byte is a 400, not a silent U+FFFD */
    const size_t bad = utf8_invalid_at(body, rq->body.len);
    if (bad != (size_t)-1) {
        ApiErr e;
        api_err(&e, 400, "invalid_json", NULL,
                "The request body is not valid UTF-8 (byte 0x%02x at offset %zu); JSON text must be UTF-8",
                (unsigned char)body[bad], bad);
        return send_error(s, c, &e);
    }
    /* cJSON records parse errors in a global of its own: one parse at a time */
    pthread_mutex_lock(&s->json_mu);
    cJSON *root = cJSON_ParseWithLengthOpts(body, rq->body.len, &end, false);
    pthread_mutex_unlock(&s->json_mu);
    if (root && end) {
        while (end < rq->body.s + rq->body.len && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t')) end++;
        if (end != rq->body.s + rq->body.len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        ApiErr e;
        const long at = end && end >= body && end <= body + rq->body.len ? (long)(end - body) : 0;
        if (rq->body.len == 0) api_err(&e, 400, "invalid_json", NULL, "The request body is empty; expected a JSON object");
        else
            api_err(&e, 400, "invalid_json", NULL,
                    "We could not parse the JSON body of your request (error near byte %ld); expected a JSON object", at);
        return send_error(s, c, &e);
    }
    enum MHD_Result r;
    if (!cJSON_IsObject(root)) {
        r = send_simple_error(s, c, 400, "invalid_json", "The request body must be a JSON object");
    } else if (rq->ep == EP_TOKENIZE || rq->ep == EP_DETOKENIZE) {
        r = handle_tokenize(s, c, root, rq->ep == EP_DETOKENIZE);
    } else if (rq->ep == EP_TOKENIZE_TEXT) {
        r = handle_tokenize_text(s, c, root);
    } else {
        r = handle_generate(s, c, rq, root);
    }
    cJSON_Delete(root);
    return r;
}

static enum MHD_Result send_response_404(Server *s, struct MHD_Connection *c, const char *id) {
    ApiErr e;
    api_err(&e, 404, "not_found", "response_id", "Response with id '%.100s' not found", id);
    return send_error(s, c, &e);
}

static cJSON *language_model_json(Server *s) {
    const char *aliases[] = {s->file_id, s->file_id_noext, NULL};
    return xai_language_model(s->model_id, s->fingerprint, s->started, SERVER_VERSION, aliases);
}

/* xAI's POST /v1/tokenize-text. */
static enum MHD_Result handle_tokenize_text(Server *s, struct MHD_Connection *c, const cJSON *root) {
    ApiErr e = {0};
    static const char *const fields[] = {"model", "text", "user", NULL};
    if (check_fields(root, fields, &e) || check_model(s, root, &e)) return send_error(s, c, &e);
    cJSON *t = field(root, "text");
    if (!t || !cJSON_IsString(t)) {
        api_err(&e, 400, t ? "invalid_type" : "missing_required_parameter", "text",
                t ? "Invalid type for 'text': expected a string" : "Missing required parameter: 'text'");
        return send_error(s, c, &e);
    }
    pthread_mutex_lock(&s->mu);
    s->req_tokenize++;
    pthread_mutex_unlock(&s->mu);
    Error err = {{0}};
    cJSON *o = xai_tokenize_text(s->tok, t->valuestring, &err);
    return o ? send_json(s, c, 200, o) : send_simple_error(s, c, 500, NULL, err.msg);
}

static enum MHD_Result handle_get(Server *s, struct MHD_Connection *c, Req *rq, const char *model_id) {
    switch (rq->ep) {
    case EP_RESPONSE: {
        cJSON *o = response_store_get(s->rstore, model_id);
        return o ? send_json(s, c, 200, o) : send_response_404(s, c, model_id);
    }
    case EP_LANGUAGE_MODELS: {
        cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "models");
        if (d) cJSON_AddItemToArray(d, language_model_json(s));
        return send_json(s, c, 200, o);
    }
    case EP_LANGUAGE_MODEL:
        if (!strcmp(model_id, s->model_id) || !strcmp(model_id, s->file_id) || !strcmp(model_id, s->file_id_noext))
            return send_json(s, c, 200, language_model_json(s));
        return send_simple_error(s, c, 404, "model_not_found", "The model does not exist");
    case EP_INDEX:
        return send_buf(s, c, 200, "text/html; charset=utf-8", (char *)grok_webui_html, strlen(grok_webui_html), false);
    case EP_FAVICON:
        return send_buf(s, c, 204, "image/x-icon", (char *)"", 0, false);
    case EP_HEALTH: {
        cJSON *o = cJSON_CreateObject();
        pthread_mutex_lock(&s->mu);
        int busy = s->n_busy, q = s->q_len;
        pthread_mutex_unlock(&s->mu);
        cJSON_AddStringToObject(o, "status", "ok");
        cJSON_AddNumberToObject(o, "slots_idle", s->n_slots - busy);
        cJSON_AddNumberToObject(o, "slots_processing", busy);
        cJSON_AddNumberToObject(o, "queue_length", q);
        return send_json(s, c, 200, o);
    }
    case EP_METRICS:
        return handle_metrics(s, c);
    case EP_MODELS: {
        cJSON *o = cJSON_CreateObject(), *d;
        cJSON_AddStringToObject(o, "object", "list");
        d = cJSON_AddArrayToObject(o, "data");
        if (d) cJSON_AddItemToArray(d, model_json(s));
        return send_json(s, c, 200, o);
    }
    case EP_MODEL:
        if (!strcmp(model_id, s->model_id) || !strcmp(model_id, s->file_id) || !strcmp(model_id, s->file_id_noext))
            return send_json(s, c, 200, model_json(s));
        {
            ApiErr e;
            api_err(&e, 404, "model_not_found", "model", "The model '%.200s' does not exist", model_id);
            return send_error(s, c, &e);
        }
    default:
        return send_simple_error(s, c, 404, "not_found", "Not found");
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    Server *s = cls;
    Req *rq = *con_cls;
    const char *model_id = NULL;
    if (rq && rq->responded) { /* an early 413: drop the rest of the body */
        *upload_size = 0;
        return MHD_YES;
    }
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        pthread_mutex_lock(&s->mu);
        s->n_reqs++;
        pthread_mutex_unlock(&s->mu);
        rq->s = s;
        rq->http11 = version && strcmp(version, MHD_HTTP_VERSION_1_0) != 0 && strcmp(version, "HTTP/0.9") != 0;
        rq->ep = route(url, &model_id);
        rq->post = !strcmp(method, "POST");
        *con_cls = rq;
        if (rq->post) { /* refuse a declared body far over the limit before reading it */
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
            if (cl && strtoull(cl, NULL, 10) > 16 * (unsigned long long)s->max_body) {
                rq->too_big = true;
                rq->responded = true;
                char msg[160];
                snprintf(msg, sizeof msg, "The request body is larger than this server's limit of %zu bytes", s->max_body);
                return send_simple_error(s, c, 413, "request_too_large", msg);
            }
        }
        return MHD_YES;
    }
    if (*upload_size) {
        rq->received += *upload_size;
        if (rq->received > s->max_body) {
            rq->too_big = true;
            str_free(&rq->body);
        } else if (str_put(&rq->body, upload, *upload_size)) {
            return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    (void)route(url, &model_id);
    if (!strcmp(method, "OPTIONS")) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
        enum MHD_Result ok = MHD_queue_response(c, 204, r);
        MHD_destroy_response(r);
        return ok;
    }
    if (rq->ep == EP_NONE) return send_simple_error(s, c, 404, "not_found", "Not found");
    const bool want_post = ep_is_post(rq->ep);
    const bool is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    const bool is_delete = rq->ep == EP_RESPONSE && !strcmp(method, "DELETE");
    if ((want_post && !rq->post) || (!want_post && !is_get && !is_delete)) {
        char msg[128];
        snprintf(msg, sizeof msg, "Method %.16s is not allowed here; use %s", method, want_post ? "POST" : "GET");
        return send_simple_error(s, c, 405, "method_not_allowed", msg);
    }
    if (rq->ep != EP_INDEX && rq->ep != EP_FAVICON && rq->ep != EP_HEALTH && !authorized(s, c))
        return send_simple_error(s, c, 401, "invalid_api_key",
                                 "Incorrect or missing API key: send 'Authorization: Bearer KEY' with the server's --api-key");
    if (is_delete) {
        if (!response_store_delete(s->rstore, model_id)) return send_response_404(s, c, model_id);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", model_id);
        cJSON_AddStringToObject(o, "object", "response");
        cJSON_AddBoolToObject(o, "deleted", true);
        return send_json(s, c, 200, o);
    }
    return want_post ? handle_post(s, c, rq) : handle_get(s, c, rq, model_id);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    (void)toe;
    Server *s = cls;
    Req *rq = *con_cls;
    if (!rq) return;
    if (rq->job) {
        pthread_mutex_lock(&s->mu);
        if (!rq->job->stream) job_cancel(s, rq->job); /* a stream's job lives on in its response */
        job_unref(rq->job);
        pthread_mutex_unlock(&s->mu);
    }
    str_free(&rq->body);
    free(rq);
    *con_cls = NULL;
    pthread_mutex_lock(&s->mu);
    if (--s->n_reqs == 0) pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
}

/* ---- setup and the command --------------------------------------------- */

static const char SERVE_USAGE[] =
    "usage: grok serve -m MODEL.gguf [options]\n"
    "Serves an OpenAI/xAI-compatible HTTP API and a web chat page:\n"
    "  POST /v1/chat/completions  POST /v1/completions  GET /v1/models  GET /health\n"
    "  GET /metrics  POST /tokenize  POST /detokenize  GET / (chat page)\n"
    "  -m, --model FILE        GGUF model\n"
    "  --host ADDR             address to bind (default 127.0.0.1)\n"
    "  --port N                port (default 8080; 0 = any free port)\n"
    "  -np, --parallel N       slots: requests decoded together (default 4)\n"
    "  -c, --ctx N             context per slot (default: min(model's, 4096))\n"
    "  --api-key KEY           require 'Authorization: Bearer KEY' (also $GROK_API_KEY)\n"
    "  --chat-template NAME    grok-2 or plain (default: what the model names)\n"
    "  --alias NAME            model id to report (default: the model's name)\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "  --kv TYPE               KV cache type, " KV_TYPE_NAMES " (default f16)\n"
    "  --kv-k TYPE, --kv-v TYPE  keys' / values' type alone\n"
    "  --max-body BYTES        largest request body (default 4194304)\n"
    "  --max-queue N           most requests waiting for a slot (default 1024)\n"
    "  --prefill-chunk N       prompt tokens per step, between decode steps (default 256)\n"
    "  --cache-ram MiB         prompt cache across requests: keys and values of earlier prompts\n"
    "                          kept in blocks of 32 positions, LRU, within this budget (default 0: off)\n"
    "  --cache-dir DIR         and on disk in DIR (survives restarts; needs --cache-ram)\n"
    "  --context-shift         chat prompts longer than the context drop their oldest turns\n"
    "                          (system messages stay) instead of being refused\n"
    "  --timeout S             close a connection idle for S seconds: no request, a slow header or\n"
    "                          body, an unread answer (default 30; 0 = never); not while a request\n"
    "                          waits for the model\n"
    "  --max-conns N           most open connections (default 2048, at most the open-file limit)\n"
    "  --max-conns-per-ip N    most open connections from one address (default 64; 0 = no limit)\n"
    "  -v, --verbose           log each request\n";

static int parse_int(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "grok serve: %s expects an integer in %ld..%ld, got '%s'\n", flag, lo, hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

static bool flag_is(const char *f, const char *a, const char *b) { return !strcmp(f, a) || (b && !strcmp(f, b)); }

static void copy_id(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src);
}

static int server_init(Server *s, Error *err) {
    s->m = model_load(s->model_path, err);
    if (!s->m) return -1;
    s->tok = tokenizer_from_gguf(s->m->file, err);
    if (!s->tok) return -1;
    if (tokenizer_n_vocab(s->tok) > s->m->cfg.n_vocab)
        return err_set(err, "the tokenizer has more tokens than the model's embedding table");
    s->n_vocab = s->m->cfg.n_vocab;
    s->eos = tokenizer_eos(s->tok);
    if (!(s->trie = token_trie_new(s->tok, err))) return -1;
    if (!(s->rstore = response_store_new())) return err_set(err, "out of memory");
    ContextParams cp = {s->n_ctx, s->n_slots, 0, s->n_threads, (uint32_t)s->kv_k, (uint32_t)s->kv_v};
    s->ctx = context_new(s->m, &cp, err);
    if (s->ctx && s->cache_ram_mib > 0) {
        s->pc = pcache_new((size_t)s->cache_ram_mib << 20, s->cache_dir,
                           pcache_model_key(s->m, (uint32_t)s->kv_k, (uint32_t)s->kv_v), context_kv_pos_bytes(s->ctx),
                           err);
        if (!s->pc) return -1;
    }
    if (!s->ctx) return -1;
    s->n_ctx = context_n_ctx(s->ctx);
    copy_id(s->model_id, sizeof s->model_id, s->alias ? s->alias : s->m->name);
    const char *base = strrchr(s->model_path, '/');
    base = base ? base + 1 : s->model_path;
    copy_id(s->file_id, sizeof s->file_id, base);
    copy_id(s->file_id_noext, sizeof s->file_id_noext, base);
    size_t bl = strlen(s->file_id_noext);
    if (bl > 5 && !strcmp(s->file_id_noext + bl - 5, ".gguf")) s->file_id_noext[bl - 5] = 0;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a of the model id and sizes */
    for (const char *p = s->model_id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h ^= (uint64_t)s->m->cfg.n_embd * 31 + (uint64_t)s->m->cfg.n_layer;
    snprintf(s->fingerprint, sizeof s->fingerprint, "fp_grokc_%s_%08llx", SERVER_VERSION,
             (unsigned long long)(h & 0xffffffffULL));
    s->started = (long long)time(NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->rng = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
    const size_t S = (size_t)s->n_slots, nb = S + (size_t)s->chunk;
    s->slots = calloc(S, sizeof *s->slots);
    s->b_tok = malloc(nb * sizeof(int));
    s->b_pos = malloc(nb * sizeof(int));
    s->b_seq = malloc(nb * sizeof(int));
    s->b_out = malloc(nb * sizeof(bool));
    s->row_slot = malloc(S * sizeof(int));
    s->logits = malloc(S * (size_t)s->n_vocab * sizeof(float));
    if (!s->slots || !s->b_tok || !s->b_pos || !s->b_seq || !s->b_out || !s->row_slot || !s->logits)
        return err_set(err, "out of memory");
    for (size_t i = 0; i < S; i++) {
        s->slots[i].cache = malloc((size_t)s->n_ctx * sizeof(int));
        s->slots[i].raw = malloc((size_t)s->n_vocab * sizeof(float));
        if (!s->slots[i].cache || !s->slots[i].raw) return err_set(err, "out of memory");
    }
    return 0;
}

static void server_free(Server *s) {
    if (s->slots)
        for (int i = 0; i < s->n_slots; i++) {
            free(s->slots[i].cache);
            free(s->slots[i].raw);
            str_free(&s->slots[i].scratch);
        }
    free(s->slots);
    free(s->b_tok);
    free(s->b_pos);
    free(s->b_seq);
    free(s->b_out);
    free(s->row_slot);
    free(s->logits);
    pcache_free(s->pc);
    context_free(s->ctx);
    token_trie_free(s->trie);
    response_store_free(s->rstore);
    tokenizer_free(s->tok);
    model_free(s->m);
}

static int idle_cond_init(pthread_cond_t *c) {
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca)) return -1;
#if !defined(__APPLE__)
    pthread_condattr_setclock(&ca, COND_CLOCK);
#endif
    int r = pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
    return r;
}

/* Logs why libmicrohttpd refused or dropped a connection (-v). */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    fputs("grok serve: http: ", stderr);
    vfprintf(stderr, fmt, ap);
}

static struct MHD_Daemon *start_http(Server *s, unsigned flags, uint16_t port, const struct sockaddr *addr) {
    if (s->verbose) flags |= MHD_USE_ERROR_LOG;
    if (!addr) /* no listening socket: connections come from MHD_add_connection */
        return MHD_start_daemon(flags | MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL, on_request, s,
                                MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                MHD_OPTION_CONNECTION_LIMIT, s->max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                s->max_conns_ip, MHD_OPTION_CONNECTION_TIMEOUT, s->timeout_s, MHD_OPTION_END);
    return MHD_start_daemon(flags, port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_CONNECTION_LIMIT, s->max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                            s->max_conns_ip, MHD_OPTION_CONNECTION_TIMEOUT, s->timeout_s, MHD_OPTION_END);
}

/* Stops the engine (every running or queued request ends with the shutdown
 * error), lets the connections deliver those errors (at most
 * SHUTDOWN_GRACE_MS), then stops HTTP. */
static void server_stop(Server *s) {
    acceptor_stop(s->acceptor); /* no new connections */
    s->acceptor = NULL;
    if (s->engine_running) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->engine, NULL);
        s->engine_running = false;
    }
    if (s->daemon) {
        struct timespec ts;
        abs_deadline(&ts, SHUTDOWN_GRACE_MS);
        pthread_mutex_lock(&s->mu);
        while (s->n_reqs > 0)
            if (pthread_cond_timedwait(&s->idle, &s->mu, &ts) == ETIMEDOUT) break;
        pthread_mutex_unlock(&s->mu);
        MHD_stop_daemon(s->daemon);
        s->daemon = NULL;
    }
}

int cmd_serve(int argc, char **argv) {
    Server srv;
    memset(&srv, 0, sizeof srv);
    Server *s = &srv;
    s->host = "127.0.0.1";
    s->port = 8080;
    s->n_slots = 4;
    s->kv_k = s->kv_v = GGML_TYPE_F16;
    s->max_queue = 1024;
    s->chunk = PREFILL_CHUNK;
    s->max_body = 4u << 20;
    s->timeout_s = TIMEOUT_S;
    s->max_conns = MAX_CONNS;
    s->max_conns_ip = MAX_CONNS_PER_IP;
    s->api_key = getenv("GROK_API_KEY");
    if (s->api_key && !s->api_key[0]) s->api_key = NULL;
    const char *tmpl_name = NULL;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
#define FLAG(a, b) flag_is(f, a, b)
#define NEED()                                                          \
    do {                                                                \
        if (!v) {                                                       \
            fprintf(stderr, "grok serve: %s needs a value\n", f);       \
            return 2;                                                   \
        }                                                               \
        i++;                                                            \
    } while (0)
        if (FLAG("-h", "--help")) {
            fputs(SERVE_USAGE, stdout);
            return 0;
        } else if (FLAG("-m", "--model")) {
            NEED();
            s->model_path = v;
        } else if (FLAG("--host", NULL)) {
            NEED();
            s->host = v;
        } else if (FLAG("--port", NULL)) {
            NEED();
            if (parse_int(f, v, 0, 65535, &x)) return 2;
            s->port = (int)x;
        } else if (FLAG("-np", "--parallel")) {
            NEED();
            if (parse_int(f, v, 1, 256, &x)) return 2;
            s->n_slots = (int)x;
        } else if (FLAG("-c", "--ctx")) {
            NEED();
            if (parse_int(f, v, 16, 1 << 24, &x)) return 2;
            s->n_ctx = (int)x;
        } else if (FLAG("-t", "--threads")) {
            NEED();
            if (parse_int(f, v, 1, 1024, &x)) return 2;
            s->n_threads = (int)x;
        } else if (FLAG("--max-body", NULL)) {
            NEED();
            if (parse_int(f, v, 1024, 1L << 30, &x)) return 2;
            s->max_body = (size_t)x;
        } else if (FLAG("--cache-ram", NULL)) {
            NEED();
            if (parse_int(f, v, 0, 1L << 30, &x)) return 2;
            s->cache_ram_mib = x;
        } else if (FLAG("--cache-dir", NULL)) {
            NEED();
            s->cache_dir = v;
        } else if (FLAG("--prefill-chunk", NULL)) {
            NEED();
            if (parse_int(f, v, 1, 1 << 16, &x)) return 2;
            s->chunk = (int)x;
        } else if (FLAG("--timeout", NULL)) {
            NEED();
            if (parse_int(f, v, 0, 86400, &x)) return 2;
            s->timeout_s = (unsigned)x;
        } else if (FLAG("--max-conns", NULL)) {
            NEED();
            if (parse_int(f, v, 1, 1 << 20, &x)) return 2;
            s->max_conns = (unsigned)x;
        } else if (FLAG("--max-conns-per-ip", NULL)) {
            NEED();
            if (parse_int(f, v, 0, 1 << 20, &x)) return 2;
            s->max_conns_ip = (unsigned)x;
        } else if (FLAG("--max-queue", NULL)) {
            NEED();
            if (parse_int(f, v, 1, 1 << 20, &x)) return 2;
            s->max_queue = (int)x;
        } else if (FLAG("--api-key", NULL)) {
            NEED();
            s->api_key = v[0] ? v : NULL;
        } else if (FLAG("--chat-template", NULL)) {
            NEED();
            tmpl_name = v;
        } else if (FLAG("--alias", NULL)) {
            NEED();
            s->alias = v;
        } else if (FLAG("--kv", NULL) || FLAG("--kv-k", NULL) || FLAG("--kv-v", NULL)) {
            NEED();
            const int t = kv_type_parse(v);
            if (t < 0) {
                fprintf(stderr, "grok serve: %s must be one of " KV_TYPE_NAMES "\n", f);
                return 2;
            }
            if (!FLAG("--kv-v", NULL)) s->kv_k = t;
            if (!FLAG("--kv-k", NULL)) s->kv_v = t;
        } else if (FLAG("--context-shift", NULL)) {
            s->context_shift = true;
        } else if (FLAG("-v", "--verbose")) {
            s->verbose = true;
        } else {
            fprintf(stderr, "grok serve: unknown option '%s' (see grok serve --help)\n", f);
            return 2;
        }
#undef FLAG
#undef NEED
    }
    if (!s->model_path) {
        fprintf(stderr, "grok serve: no model given (-m MODEL.gguf); see grok serve --help\n");
        return 1;
    }
    if (s->cache_dir && s->cache_ram_mib <= 0) {
        fprintf(stderr, "grok serve: --cache-dir needs --cache-ram MiB (blocks pass through RAM)\n");
        return 2;
    }
    int tmpl = -1;
    if (tmpl_name && (tmpl = chat_template_from_name(tmpl_name)) < 0) {
        fprintf(stderr, "grok serve: unknown chat template '%s' (grok-2 or plain)\n", tmpl_name);
        return 2;
    }
    /* SIGINT/SIGTERM are taken by sigwait below; every thread inherits the mask */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    Error err = {{0}};
    int rc = 1;
    bool mu_ok = false, json_ok = false, work_ok = false, idle_ok = false;
    if (pthread_mutex_init(&s->mu, NULL) == 0) mu_ok = true;
    if (pthread_mutex_init(&s->json_mu, NULL) == 0) json_ok = true;
    if (pthread_cond_init(&s->work, NULL) == 0) work_ok = true;
    if (idle_cond_init(&s->idle) == 0) idle_ok = true;
    if (!mu_ok || !json_ok || !work_ok || !idle_ok) {
        fprintf(stderr, "grok serve: cannot create locks\n");
        goto out;
    }
    double t0 = time_now();
    if (server_init(s, &err)) {
        fprintf(stderr, "grok serve: %s\n", err.msg);
        goto out;
    }
    s->tmpl = tmpl >= 0 ? (ChatTemplate)tmpl : chat_template_detect(s->m->file);
    const char *sep = chat_stop_string(s->tmpl);
    s->sep_token = tokenizer_find(s->tok, sep, strlen(sep));
    if (s->n_ctx > s->m->cfg.n_ctx_train)
        fprintf(stderr, "grok serve: warning: --ctx %d exceeds the model's trained context %d\n", s->n_ctx,
                s->m->cfg.n_ctx_train);

    /* the address to bind */
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", s->port);
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(s->host, port_s, &hints, &ai);
    if (gai || !ai) {
        fprintf(stderr, "grok serve: cannot resolve --host %s: %s\n", s->host, gai_strerror(gai));
        goto out;
    }
    if (pthread_create(&s->engine, NULL, engine_main, s)) {
        freeaddrinfo(ai);
        fprintf(stderr, "grok serve: cannot start the engine thread\n");
        goto out;
    }
    s->engine_running = true;
    /* every connection is a descriptor (and a thread): the soft open-file
     * limit goes up to the hard one, and --max-conns stays below it */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rlim_t want = rl.rlim_max == RLIM_INFINITY ? 65536 : rl.rlim_max;
            struct rlimit nrl = {want, rl.rlim_max};
            if (setrlimit(RLIMIT_NOFILE, &nrl) == 0) rl.rlim_cur = want;
        }
        /* connections waiting for their first bytes and those being served
         * are counted apart: two of --max-conns, plus the server's own files */
        const rlim_t room = rl.rlim_cur > 128 ? (rl.rlim_cur - 64) / 2 : 32;
        if (rl.rlim_cur != RLIM_INFINITY && s->max_conns > room) {
            fprintf(stderr, "grok serve: --max-conns %u lowered to %llu (the open-file limit is %llu)\n", s->max_conns,
                    (unsigned long long)room, (unsigned long long)rl.rlim_cur);
            s->max_conns = (unsigned)room;
        }
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    /* our own listening socket: http_accept.c holds each new connection
     * until its first bytes, answers garbage with a 400 and hands the rest
     * to libmicrohttpd */
    int lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (lfd >= 0) setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(lfd, 511) != 0) {
        fprintf(stderr, "grok serve: cannot listen on %s:%d: %s\n", s->host, s->port, strerror(errno));
        if (lfd >= 0) close(lfd);
        freeaddrinfo(ai);
        goto out;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    int port = s->port;
    if (getsockname(lfd, (struct sockaddr *)&bound, &bound_len) == 0)
        port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
    s->daemon = start_http(s, flags, 0, NULL);
    if (!s->daemon) {
        fprintf(stderr, "grok serve: cannot start libmicrohttpd\n");
        close(lfd);
        goto out;
    }
    if (!(s->acceptor = acceptor_start(lfd, s->daemon, s->timeout_s, s->max_conns, s->max_conns_ip, s->verbose, &err))) {
        fprintf(stderr, "grok serve: %s\n", err.msg);
        close(lfd);
        goto out;
    }
    const bool v6 = strchr(s->host, ':') != NULL;
    fprintf(stderr,
            "grok serve: model %s (%s template), %d slots x %d tokens, %d threads, %s kernels, loaded in %.2f s\n",
            s->model_id, chat_template_name(s->tmpl), s->n_slots, s->n_ctx, context_n_threads(s->ctx),
            quant_simd_name(), time_now() - t0);
    printf("grok serve: listening on http://%s%s%s:%d%s\n", v6 ? "[" : "", s->host, v6 ? "]" : "", port,
           s->api_key ? " (API key required)" : "");
    fflush(stdout);

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "grok serve: signal %d, shutting down\n", sig);
    /* no new connections; the running requests get their 503 (a JSON error,
     * or an SSE error event and [DONE]) before the connections close */
    acceptor_stop(s->acceptor);
    s->acceptor = NULL;
    rc = 0;
out:
    server_stop(s);
    server_free(s);
    if (idle_ok) pthread_cond_destroy(&s->idle);
    if (work_ok) pthread_cond_destroy(&s->work);
    if (mu_ok) pthread_mutex_destroy(&s->mu);
    if (json_ok) pthread_mutex_destroy(&s->json_mu);
    return rc;
}

/* ---- in-process server (tests, fuzz target) ----------------------------- */

#define LOCAL_MAX_OUT ((size_t)4 << 20)

Server *serve_local_open(const char *model_path, int n_ctx, int n_slots, Error *err) {
    Server *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(err, "out of memory");
        return NULL;
    }
    s->model_path = model_path;
    s->host = "local";
    s->n_slots = n_slots;
    s->n_ctx = n_ctx;
    s->n_threads = 1;
    s->kv_k = s->kv_v = GGML_TYPE_F16;
    s->max_queue = 64;
    s->chunk = PREFILL_CHUNK;
    s->max_body = 1u << 20;
    s->max_conns = 64;
    if (pthread_mutex_init(&s->mu, NULL) || pthread_mutex_init(&s->json_mu, NULL) || pthread_cond_init(&s->work, NULL) ||
        idle_cond_init(&s->idle)) {
        free(s);
        err_set(err, "cannot create locks");
        return NULL;
    }
    if (server_init(s, err)) goto fail;
    s->tmpl = chat_template_detect(s->m->file);
    const char *sep = chat_stop_string(s->tmpl);
    s->sep_token = tokenizer_find(s->tok, sep, strlen(sep));
    if (pthread_create(&s->engine, NULL, engine_main, s)) {
        err_set(err, "cannot start the engine thread");
        goto fail;
    }
    s->engine_running = true;
    if (!(s->daemon = start_http(s, 0, 0, NULL))) {
        err_set(err, "cannot start libmicrohttpd");
        goto fail;
    }
    return s;
fail:
    serve_local_close(s);
    return NULL;
}

int serve_local_request(Server *s, const void *req, size_t n, char **out, size_t *out_len) {
    int sv[2];
    *out = NULL;
    *out_len = 0;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv)) return -1;
    struct sockaddr_in peer;
    memset(&peer, 0, sizeof peer);
    peer.sin_family = AF_INET;
    peer.sin_port = htons(40000);
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (MHD_add_connection(s->daemon, sv[0], (const struct sockaddr *)&peer, sizeof peer) != MHD_YES) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    Str o = {0};
    size_t off = 0;
    bool shut = false, closed = false;
    char buf[16384];
    for (int it = 0; it < 200000 && !closed; it++) {
        if (off < n) {
            ssize_t w = send(sv[1], (const char *)req + off, n - off, MSG_NOSIGNAL);
            if (w > 0) off += (size_t)w;
        }
        if (off == n && !shut) {
            shutdown(sv[1], SHUT_WR);
            shut = true;
        }
        MHD_run(s->daemon);
        for (;;) {
            ssize_t r = recv(sv[1], buf, sizeof buf, 0);
            if (r > 0) {
                if (o.len + (size_t)r <= LOCAL_MAX_OUT && str_put(&o, buf, (size_t)r)) break;
                continue;
            }
            if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) closed = true;
            break;
        }
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (shut && di && di->num_connections == 0) closed = true;
    }
    close(sv[1]);
    for (int i = 0; i < 4; i++) MHD_run(s->daemon); /* lets MHD see the close */
    if (!o.s && str_puts(&o, "")) return -1;
    *out = o.s;
    *out_len = o.len;
    return 0;
}

void serve_local_close(Server *s) {
    if (!s) return;
    server_stop(s);
    server_free(s);
    pthread_cond_destroy(&s->idle);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->json_mu);
    free(s);
}
