/* dist_engine.h - one Grok model across several processes (ranks, dist.h):
 * rank 0 reads prompts, tokenizes, samples, prints or serves HTTP; every
 * other rank sits in dist_worker_main and runs each engine call rank 0 makes,
 * so that every rank takes part in every forward pass.
 *
 * Protocol: for every Context call (new, forward, context shift, KV read /
 * write for the prompt cache, free) rank 0 broadcasts a small command and
 * its arguments (dist_cmd_* below, called by forward.c) and then runs the
 * call itself; the forward pass exchanges activations inside (forward.c:
 * the experts split sums the MoE output over the ranks, the layers split
 * passes the residual stream on, in a pipeline of pieces: dist_pipe.h). Under
 * the layers split rank 0 may send the next forward command while earlier
 * batches are still in the other ranks' layers (forward_submit): a worker
 * runs the commands in the order sent, and does not wait for its rows to
 * arrive before it takes the next one. Nothing here changes the results a
 * single process computes except the order of one sum.
 *
 * Shares (dist_model_load):
 *   experts: each expert's FFN width cut into `size` block-aligned slices
 *            (gate/up rows, down columns); attention cut by heads (each
 *            rank a contiguous range of key/value heads with their query
 *            heads: wq/wk/wv rows, wo columns, the KV cache of those heads;
 *            replicated when there are fewer key/value heads than ranks);
 *            router, norms and embeddings replicated; the output cut by
 *            vocabulary rows, the logits gathered on rank 0.
 *   layers:  rank r holds a contiguous range of layers, in rank order (a
 *            piece goes from rank r to r + 1); rank 0 also the embeddings
 *            and the output.
 * Every rank maps the whole file but touches only its share. */
#ifndef GROK_DIST_ENGINE_H
#define GROK_DIST_ENGINE_H

#include <stdio.h>

#include "dist.h"
#include "forward.h"
#include "model.h"

/* Every rank checks it was started with the same command line as rank 0
 * (options must match: different ones are refused). Collective. */
int dist_check_args(Dist *d, int argc, char **argv, Error *err);

/* Rank 0: loads the model on every rank (the same path on each host),
 * checks they all see the same file (size and a hash of the header and
 * metadata) and cuts each rank's share. One rank: model_load. */
Model *dist_model_load(Dist *d, const char *path, Error *err);

/* Cuts rank r's share of n out of a whole model (what dist_model_load does
 * on each rank after loading; no communication): sets m->share and makes
 * the down projections views of the rank's columns. Errors: more ranks
 * than the split has pieces (layers, or blocks of the FFN width). */
int dist_share_model(Model *m, DistSplit split, int n, int r, Error *err);

/* Rank > 0: runs rank 0's commands until it ends the run. Returns the exit
 * status (0, or 1 after an error, which is printed). */
int dist_worker_main(Dist *d);

/* Rank 0: tells the workers to exit, then dist_finish. */
int dist_end(Dist *d, int rc);

typedef struct {
    char host[48];
    int layer0, layer1;     /* layers computed */
    int ff0, n_ff;          /* expert FFN columns held */
    int n_ff_dense;
    int head0_kv, n_head_kv;  /* key/value heads computed (and their query heads) */
    double weight_mib;      /* weights this rank reads */
    double rss_mib, hwm_mib;/* resident memory now and at its peak (VmRSS, VmHWM) */
    double sent_mib;        /* bytes through its collectives */
} DistRankInfo;

/* Rank 0: one entry per rank (out has dist_size entries). Collective. */
int dist_rank_info(Dist *d, const Model *m, DistRankInfo *out, Error *err);
/* Rank 0: one line per rank with its share and memory to f ("load message"). */
void dist_print_shares(Dist *d, const Model *m, const char *cmd, FILE *f);

/* ---- hooks for forward.c: rank 0 sends the call to the workers. Each is a
 * no-op (returns 0) unless the Dist has several ranks and this is rank 0. */
int dist_cmd_context_new(Dist *d, const ContextParams *p, int *id, Error *err);
void dist_cmd_context_free(Dist *d, int id);
int dist_cmd_forward(Dist *d, int id, const Batch *b, Error *err);
int dist_cmd_shift(Dist *d, int id, int seq, int p0, int p1, int delta, Error *err);
int dist_cmd_kv_write(Dist *d, int id, int seq, int p0, int p1, const void *buf, size_t bytes, Error *err);
/* after rank 0 read its own layers (and heads) into buf: the layers split
 * gathers the other ranks' layers, the experts split with attention cut by
 * heads the other ranks' heads of each layer (layer_bytes per layer, layers
 * in order, heads in order within a layer: the one-process format) */
int dist_cmd_kv_read(Dist *d, const Model *m, int id, int seq, int p0, int p1, void *buf, size_t layer_bytes,
                     Error *err);

/* forward.c, experts split: every rank computed the rows of the output
 * (vocabulary) that are its share (the same even cut of n_vocab as
 * dist_share_model's), n_rows tokens of them in `part`; rank 0 gets them all
 * in `logits` (n_rows, n_vocab). */
int dist_gather_logits(Dist *d, const float *part, int n_rows, int n_vocab, float *logits, Error *err);

#endif
