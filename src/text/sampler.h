/* sampler.h - choosing the next token from logits: greedy, temperature,
 * top-k, top-p, min-p, repetition / presence / frequency penalties, seeded
 * RNG (same seed and settings => same tokens), and stop-string matching. */
#ifndef GROK_SAMPLER_H
#define GROK_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef struct {
    float temperature;        /* <= 0: greedy (argmax, ties -> lowest id) */
    int top_k;                /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off; keep p >= min_p * p_max */
    float repeat_penalty;     /* 1: off; llama.cpp style: logit>0 ? l/rp : l*rp */
    int repeat_last_n;        /* window of recent tokens the penalties look at */
    float presence_penalty;   /* 0: off; OpenAI style: l -= pp if seen */
    float frequency_penalty;  /* 0: off; l -= fp * count */
    uint64_t seed;
} SamplerParams;

/* Defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05,
 * repeat_penalty 1.0, repeat_last_n 64, penalties 0, seed 42. */
SamplerParams sampler_defaults(void);

typedef struct Sampler Sampler;

Sampler *sampler_new(const SamplerParams *p, int n_vocab, Error *err);
void sampler_free(Sampler *s);
/* Records a token (prompt or generated) for the penalties. */
void sampler_accept(Sampler *s, int token);
void sampler_reset(Sampler *s);
/* Picks a token. logits (n_vocab) may be modified in place. */
int sampler_sample(Sampler *s, float *logits);

/* A constraint on the next token (a grammar): allows() checks one token,
 * mask() sets the logits of every disallowed token to -INFINITY and returns
 * how many remain (-1 on an internal limit). */
typedef struct {
    void *ctx;
    bool (*allows)(void *ctx, int token);
    int (*mask)(void *ctx, float *logits);
} TokenFilter;

/* Like sampler_sample, but only returns a token the filter allows: the
 * sampled token is checked first and the mask computed only if it is
 * rejected. Returns -1 if no token is allowed, -2 if the filter failed. */
int sampler_sample_filtered(Sampler *s, float *logits, const TokenFilter *f);

/* Stop strings: feed generated text, learn whether a stop string occurred
 * and how much of the text is safe to print (text that could still be the
 * beginning of a stop string is held back). */
typedef struct {
    char **stops;
    int n_stops;
    char *buf;      /* held-back text */
    size_t len, cap;
} StopMatcher;

int stop_matcher_init(StopMatcher *m, const char *const *stops, int n_stops, Error *err);
void stop_matcher_free(StopMatcher *m);
/* Appends text. Writes to *emit / *emit_len the text that may be printed now
 * (pointer valid until the next call). Returns 1 if a stop string was hit (the
 * emitted text then ends just before it), else 0. */
int stop_matcher_push(StopMatcher *m, const char *text, size_t len, const char **emit, size_t *emit_len);
/* At end of generation: the held-back text that may now be printed. */
void stop_matcher_flush(StopMatcher *m, const char **emit, size_t *emit_len);

#endif
