/* server_internal.h - what the files of `grok serve` share: the jobs,
 * slots and Server (server.c's header comment describes the threads and
 * the lock), and the functions one file calls in another.
 *   server.c  HTTP: the listening side, handlers, setup, the in-process server
 *   engine.c  the batching engine: jobs, slots, admission, one forward pass a step
 *   openai.c  the OpenAI surface: errors, request validation, responses, streaming
 *   slots.c   GET /slots, POST /slots/{id}?action=save|restore|erase
 * Not a public API: only src/server/ includes it. */
#ifndef GROK_SERVER_INTERNAL_H
#define GROK_SERVER_INTERNAL_H

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
#define MAX_TOKENS_SHIFT (1 << 20) /* largest max_tokens with --context-shift (a reply may outgrow the context) */
#define PREFILL_CHUNK 256      /* default prompt tokens per engine step, over all slots */
#define WAIT_POLL_MS 100       /* how often a waiting connection looks at its socket */
#define RATE_BUCKETS 16        /* per-second buckets for the tok/s gauges */
#define RATE_WINDOW 10         /* seconds the tok/s gauges average over */
#define SHUTDOWN_MSG "the server is shutting down"
#define TIMEOUT_S 30           /* default --timeout: seconds a connection may sit with no bytes in or out */
#define MAX_CONNS 2048         /* default --max-conns */
#define MAX_CONNS_PER_IP 64    /* default --max-conns-per-ip */
#define SHUTDOWN_GRACE_MS 5000 /* on SIGTERM: how long the running requests get to receive their error */

typedef struct {
    char *s;
    size_t len, cap;
} Str;

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
    bool shift;            /* --context-shift and max_tokens given: a reply that fills the context shifts it */
    int n_keep;            /* prompt tokens a shift keeps (the system messages; `n_keep`) */
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
    int n_shifts;          /* context shifts during the reply, and the tokens they discarded */
    int n_discarded;
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
    int n_exact;           /* of which 0..n_exact-1 as a fresh computation of those tokens would have them
                            * (not moved by a context shift): what the prompt cache may keep */
    int *cache;            /* (n_ctx) tokens in the KV cache */
    int next;              /* token to feed at n_past when decoding */
    int pending;           /* prompt tokens in the current batch */
    int flight;            /* 1 + the group (batch) in flight holding this slot's tokens; 0 = none */
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
    Dist *dist;            /* the processes that run the model (cmd_serve; NULL in process) */
    int kv_k, kv_v;
    int device, gpu;       /* GROK_DEVICE_* (--device; the in-process server: cpu), CUDA device (--gpu) */
    int max_queue;
    int chunk;               /* prompt tokens per engine step */
    size_t max_body;
    const char *api_key;
    const char *alias;
    bool verbose;
    bool context_shift;      /* chat prompts over the context drop their oldest turns */
    long cache_ram_mib;      /* prompt cache across requests: RAM budget (0 = off) */
    const char *cache_dir;   /* and its disk tier, or NULL */
    long cache_disk_mib;     /* the disk tier's budget (0 = none) */
    PromptCache *pc;
    const char *slot_save_path; /* --slot-save-path: where slot files go, or NULL (save/restore off) */
    uint64_t model_key;      /* pcache_model_key of the model and KV types (slot files, the prompt cache) */
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
    struct SlotOp *ops_head, *ops_tail; /* slot operations for the engine (under mu) */
    /* engine-owned */
    Slot *slots;
    int n_busy;              /* under mu */
    int rr;                  /* round-robin start for prefill */
    int *b_tok, *b_pos, *b_seq;
    bool *b_out;
    float *logits;           /* (n_slots, n_vocab) */
    /* groups of slots whose batches are in flight at once (forward_submit):
     * forward_depth of the Context, N with the layers split over N ranks,
     * otherwise 1 (one forward pass per step) */
    int n_groups;
    int *row_slot;           /* (n_groups, n_slots) per group: the slots of its rows that want logits */
    int *g_rows, *g_tokens, *g_decode; /* (n_groups) per group: rows, tokens, decode tokens */
    int g_head, g_count;     /* the groups in flight: oldest first, in a ring */
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

/* A streaming response: the SSE bytes of one job on its way to the client */
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

/* An API error as OpenAI writes it: {"error": {"message", "type", "param", "code"}} */
typedef struct {
    int status;
    const char *type;
    const char *code;
    char param[96];
    char msg[480];
} ApiErr;

typedef struct SlotOp SlotOp;
void slots_run(Server *s);
enum MHD_Result handle_slots(Server *s, struct MHD_Connection *c, const char *id, const cJSON *root);
void abs_deadline(struct timespec *ts, int ms);
void str_free(Str *b);
int str_put(Str *b, const char *p, size_t n);
int str_puts(Str *b, const char *p);
void engine_admit(Server *s);
void *engine_main(void *arg);
void job_cancel(Server *s, Job *j);
void job_free(Job *j);
Job *job_new(void);
int job_submit(Server *s, Job *j);
void job_unref(Job *j);
double rate_get(const Rate *r, double now);
uint64_t splitmix(uint64_t *x);
void add_common_headers(struct MHD_Response *r, const char *ctype);
int api_err(ApiErr *e, int status, const char *code, const char *param, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
int check_fields(const cJSON *root, const char *const *known, ApiErr *e);
int check_model(Server *s, const cJSON *root, ApiErr *e);
cJSON *field(const cJSON *o, const char *key);
cJSON *final_response(Server *s, const Job *j);
int get_bool(const cJSON *o, const char *key, bool *out, ApiErr *e);
Job *parse_chat(Server *s, const cJSON *root, ApiErr *e);
Job *parse_completion(Server *s, const cJSON *root, ApiErr *e);
enum MHD_Result send_buf(Server *s, struct MHD_Connection *c, int status, const char *ctype, char *buf,
                                size_t len, bool must_free);
enum MHD_Result send_error(Server *s, struct MHD_Connection *c, const ApiErr *e);
enum MHD_Result send_json(Server *s, struct MHD_Connection *c, int status, cJSON *o);
enum MHD_Result send_simple_error(Server *s, struct MHD_Connection *c, int status, const char *code,
                                         const char *msg);
void stream_free(void *cls);
ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max);
int token_array(Server *s, const cJSON *a, const char *param, int **out, ApiErr *e);
void token_text(Server *s, int id, char *out, size_t cap, unsigned char *rawbuf, size_t *raw);

#endif
