/* dist_pipe.h - the layers split's pipeline (dist_engine.h: rank r holds a
 * contiguous range of layers). forward() cuts a batch into pieces
 * (micro-batches) and every rank runs the pieces through its layers in
 * order, receiving each piece's residual rows from the previous rank and
 * sending them on without waiting, so that rank r runs piece i while rank
 * r + 1 runs piece i - 1. The last rank sends the rows that want logits back
 * to rank 0, which computes their logits after its own pieces, in the
 * caller's order.
 *
 * Order: every rank runs the pieces in batch order, so a later piece of a
 * sequence finds the earlier pieces' keys and values in each layer's cache,
 * as in one process; a token's result does not depend on the piece it is in
 * (the kernels compute every row alone), so the results are bit-identical
 * to one process.
 *
 * Batches in flight: a decode step of a few sequences is one piece, and
 * while it goes through ranks 1.. rank 0 would only wait. So rank 0 may
 * start (forward_submit) up to dist_pipe_depth batches before it collects
 * the first one's rows (forward_collect, oldest first): each batch's rows
 * come back into their own buffer, into receives posted when the batch
 * started. Every rank runs rank 0's commands, batches included, in the
 * order rank 0 sent them, so a batch finds the cache as the batches before
 * it left it, and the results are those of running the batches one after
 * the other. No rank waits on one that waits on it: rank 0 sends a batch's
 * rows on before it waits for anything of that batch; the other ranks wait
 * only for rows from the previous rank and for their send buffers (a send
 * completes into a rank that runs the batches in order, or into rank 0's
 * posted receives); rank 0 waits for a command's broadcast or for rows back,
 * and either needs only the other ranks to work through what they already
 * have.
 *
 * This module owns the bookkeeping: the piece size, the send buffers (a
 * ring: a piece's rows are copied into a free buffer and sent from there),
 * rank 0's receives of the rows that come back (posted before the pieces
 * run, into one buffer, so that no rank ever waits on one that waits on it),
 * and the waits, each with the Dist's deadline (a dead rank ends the job,
 * never a hang). With one rank, or the experts split, there is no pipe
 * (NULL) and the calls below that take one do nothing. */
#ifndef GROK_DIST_PIPE_H
#define GROK_DIST_PIPE_H

#include <stdbool.h>

#include "dist.h"
#include "model.h"

/* Pieces wanted per rank when the batch is long enough: with N ranks the
 * pipeline fills and drains over N - 1 pieces, so M pieces keep the ranks
 * busy M / (M + N - 1) of the time... */
#define DIST_PIPE_PIECES_PER_RANK 2
/* ...but no piece shorter than this (tokens): each piece reads every weight
 * of a rank's layers once (from 16 tokens on, a piece uses nearly every
 * expert), shared by its tokens. One process on medium-Q8_0, one thread,
 * CPU seconds for 256 tokens by chunk size: 4: 3.32, 8: 2.43, 16: 2.01,
 * 32: 1.66, 64: 1.48, 256: 1.33, i.e. about 40 ms per weight pass against
 * 2-4 ms per token: pieces under 32 tokens cost more than the pipeline
 * gains. A decode step of a few sequences (a few tokens) is not cut. */
#define DIST_PIPE_MIN_TOKENS 32
#define DIST_PIPE_RING 3 /* send buffers of n_batch rows each */
#define DIST_PIPE_FLIGHT 8 /* rank 0: batches in flight at most (and at most one per rank) */

typedef struct DistPipe DistPipe;

/* The pipe of a Context holding up to n_batch rows of n_embd floats, or
 * *out = NULL when the model is not cut by layers over several ranks. */
int dist_pipe_new(Dist *d, const Model *m, int n_batch, DistPipe **out, Error *err);
void dist_pipe_free(DistPipe *p);

/* Tokens per piece for a batch of n tokens, at most max (the Context's
 * scratch): max without a pipe; with one, --micro-batch if set, otherwise
 * n / (DIST_PIPE_PIECES_PER_RANK x ranks), at least DIST_PIPE_MIN_TOKENS.
 * The same on every rank (it is a function of the batch). */
int dist_pipe_piece(const DistPipe *p, int n, int max);
/* The same rule for `ranks` ranks and a --micro-batch of `micro` (0 = auto). */
int dist_pipe_piece_for(int n, int max, int ranks, int micro);

/* Batches rank 0 may have in flight: the ranks (at most DIST_PIPE_FLIGHT);
 * 1 without a pipe. */
int dist_pipe_depth(const DistPipe *p);
/* Rank 0: batches begun and not yet retired (0 on other ranks). */
int dist_pipe_in_flight(const DistPipe *p);

/* Rank 0, before a batch's pieces run: a new batch in flight (an error when
 * dist_pipe_depth are), whose receives of the rows that come back from the
 * last rank are posted now, per piece of `piece` tokens of the n, those with
 * want[t] (want NULL: every row). Other ranks: nothing. */
int dist_pipe_begin(DistPipe *p, int n, int piece, const bool *want, Error *err);
/* rows x (rows, n_embd) from the previous rank; waits for them */
int dist_pipe_recv(DistPipe *p, float *x, int rows, Error *err);
/* rows of x on to the next rank (the last rank: back to rank 0), without
 * waiting: copied into a free send buffer first */
int dist_pipe_send(DistPipe *p, const float *x, int rows, Error *err);
/* lets the exchanges in flight progress (call it between layers) */
int dist_pipe_poll(DistPipe *p, Error *err);
/* Rank 0: the next piece's rows of the oldest batch in flight that came
 * back, copied into x: their count, 0 when every piece is done, -1 on an
 * error. */
int dist_pipe_next_back(DistPipe *p, float *x, Error *err);
/* Rank 0, after the oldest batch's rows are all back: it is no longer in
 * flight. Other ranks: nothing (their sends complete meanwhile; a send
 * buffer is waited for before it is used again). 0 or -1. */
int dist_pipe_retire(DistPipe *p, Error *err);
/* After an error, and before the pipe is freed: waits for every send and
 * receive in flight, of every batch; 0 or -1. */
int dist_pipe_end(DistPipe *p, Error *err);

#endif
