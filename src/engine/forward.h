/* forward.h - the Grok transformer forward pass, with its KV cache and
 * scratch memory (a Context) held by a backend (backend.h). A batch holds tokens of one or more
 * sequences (server slots); each token is routed to its own experts, and the
 * matrix work of the whole batch is done as matrix x matrix products. */
#ifndef GROK_FORWARD_H
#define GROK_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "dist.h"
#include "model.h"

typedef struct Context Context;

typedef struct {
    int n_ctx;         /* KV positions per sequence; 0 = min(model context, 4096) */
    int n_seq;         /* independent sequences (slots); 0 = 1 */
    int n_batch;       /* most tokens computed together; 0 = 512 */
    int n_threads;     /* 0 = all cores */
    uint32_t kv_type_k; /* cached keys: GGML_TYPE_F32, F16, BF16, Q8_0 or Q4_0 (kv.h) */
    uint32_t kv_type_v; /* cached values: the same choice */
    int device;        /* GROK_DEVICE_CPU (0, the default), _CUDA, or _AUTO (CUDA when a GPU is present
                          and takes the model, else the CPU: context_device_note says why) */
    int gpu;           /* CUDA device index (--gpu N) */
    Dist *dist;         /* several processes run the model (dist_engine.h); NULL = this one alone */
} ContextParams;

/* Where a context computes (--device cpu|cuda|auto). */
enum { GROK_DEVICE_CPU = 0, GROK_DEVICE_CUDA = 1, GROK_DEVICE_AUTO = 2 };
/* "cpu", "cuda" or "auto" (case-insensitive) to a GROK_DEVICE_*, -1 otherwise. */
int device_parse(const char *name);
/* The name of the backend a context runs on ("cpu", "cuda"). */
const char *context_device(const Context *c);
/* With GROK_DEVICE_AUTO on a machine with a GPU whose backend did not take
 * the model or settings (a KV type it lacks, too little memory...): why
 * the context is on the CPU instead; "" otherwise. */
const char *context_device_note(const Context *c);
/* CUDA devices present: 0 when none (or no driver, or built without CUDA),
 * err (may be NULL) set with the reason. */
int cuda_device_count(Error *err);
/* True if this grok was built with the CUDA backend (device.c / cuda/). */
bool cuda_built(void);


Context *context_new(const Model *m, const ContextParams *p, Error *err);
void context_free(Context *c);
int context_n_ctx(const Context *c);
int context_n_threads(const Context *c);
size_t context_kv_bytes(const Context *c);

typedef struct {
    int n_tokens;
    const int *token;   /* (n_tokens) token ids */
    const int *pos;     /* (n_tokens) position of each token in its sequence */
    const int *seq;     /* (n_tokens) sequence of each token; NULL = all 0 */
    const bool *output; /* (n_tokens) rows that want logits; NULL = all */
} Batch;

/* Runs a batch. Tokens of one sequence must come at consecutive positions
 * whose earlier positions are already in the cache. Logits of the rows with
 * output set are written to `logits` in batch order, n_vocab floats each.
 * Bad token ids, positions outside the context or bad sequences are errors
 * (nothing is computed). */
int forward(Context *c, const Batch *b, float *logits, Error *err);

/* forward() in two halves, so that several batches can be in flight (the
 * layers split over N ranks, dist_pipe.h: rank 0 starts batch B while batch
 * A is in the other ranks' layers). forward_submit starts a batch (rank 0
 * runs its layers and sends the rows on, without waiting for them);
 * forward_collect waits for the oldest batch in flight and writes its logits
 * as forward() would. Up to forward_depth(c) batches may be in flight: N
 * with the layers split over N ranks, otherwise 1 (and then submit only
 * keeps the batch, and collect computes it: exactly forward()). The batches
 * in flight must be independent: no sequence in two of them (a sequence's
 * next token comes from the logits anyway). Each batch's results are those
 * of running the batches one after the other in submit order, as forward().
 * forward() itself, and the Context calls below, run in that order too; a
 * forward() while batches are in flight is an error. The Batch's arrays may
 * be reused once forward_submit returns. */
int forward_submit(Context *c, const Batch *b, Error *err);
int forward_collect(Context *c, float *logits, Error *err);
int forward_depth(const Context *c);
int forward_in_flight(const Context *c);

/* Context shift: moves what positions [p0, p1) of a sequence cache to
 * [p0 + delta, p1 + delta), re-rotating each key's RoPE from its old
 * position to its new one (q8_0 / q4_0 keys: dequantized, rotated,
 * requantized); values move as they are. The keys and values stay those
 * computed with the old context before them (as llama.cpp's context shift).
 * Positions left behind keep stale entries until overwritten. */
int context_shift(Context *c, int seq, int p0, int p1, int delta, Error *err);

/* Brings a sequence's cache, which holds cache[0..n_cache) at positions
 * 0.., as far as it can towards ids[0..n) without computing: the common
 * prefix stays, and if a later stretch of at least min_run cached tokens
 * continues ids after it (a conversation whose oldest turns were dropped),
 * that stretch is shifted down into place and cache[] updated to match.
 * Returns how many of ids are now in the cache (the caller computes the
 * rest from there), or -1 on error. */
int context_reuse(Context *c, int seq, int *cache, int n_cache, const int *ids, int n, int min_run, Error *err);

/* Saving and restoring cached positions (the server's prompt cache): the
 * keys and values of positions [p0, p1) of a sequence as
 * (p1 - p0) * context_kv_pos_bytes bytes, layer by layer (its key rows,
 * then its value rows), in the cache's own types. */
size_t context_kv_pos_bytes(const Context *c);
int context_kv_read(const Context *c, int seq, int p0, int p1, void *buf, Error *err);
int context_kv_write(Context *c, int seq, int p0, int p1, const void *buf, Error *err);

/* One sequence, tokens at positions pos0.. : logits of every position
 * (all_logits) or of the last one only. */
int forward_tokens(Context *c, int seq, const int *tokens, int n, int pos0, float *logits, bool all_logits,
                   Error *err);

#endif
