/* dist.h - one Grok model run by several processes (MPI ranks), possibly on
 * several hosts. This module owns the transport: MPI start-up and shut-down,
 * the rank/size, and the few collectives the engine needs (broadcast from
 * rank 0, a float sum, point-to-point sends), each waited for with a
 * deadline so that a rank that died can never hang the others. dist.c is
 * the only file that includes mpi.h; built without MPI (GROK_MPI=OFF or no
 * MPI found) it is a single-process stub.
 *
 * A Dist is created once in main and passed down; with one rank (no mpirun)
 * every call is a no-op and the engine runs exactly as without it.
 *
 * The engine-level protocol on top (rank 0 drives, the others follow) is in
 * dist_engine.h; how the model is cut into shares (dist_share_model) too. */
#ifndef GROK_DIST_H
#define GROK_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef enum { DIST_SPLIT_EXPERTS = 0, DIST_SPLIT_LAYERS = 1 } DistSplit;

#define DIST_DEFAULT_TIMEOUT_S 60.0 /* one collective waits at most this long (--dist-timeout) */

typedef struct Dist Dist;

/* Starts MPI when the process was launched by mpirun/mpiexec (found from the
 * launcher's environment) and MPI is built in; otherwise a one-rank Dist.
 * NULL with a message on failure. */
Dist *dist_init(int *argc, char ***argv, Error *err);
/* Ends the run: rank 0 tells the others to stop (dist_engine.h), then MPI
 * is finalised. After a failure (a rank died, a deadline passed) it aborts
 * the whole job instead, with exit status rc (never returns then). */
int dist_finish(Dist *d, int rc);

int dist_rank(const Dist *d);
int dist_size(const Dist *d);
bool dist_multi(const Dist *d); /* more than one rank */
bool dist_built(void);          /* built with MPI */
const char *dist_host(const Dist *d);

DistSplit dist_split(const Dist *d);
void dist_set_split(Dist *d, DistSplit s);
void dist_set_timeout(Dist *d, double seconds);
double dist_timeout(const Dist *d);
/* The flags every command that runs a model takes: --split experts|layers,
 * --dist-timeout SECONDS and --micro-batch TOKENS. 1 if `flag` is one of them (its value set on
 * d, which may be NULL), 0 if not, -1 with err set for a bad value. */
int dist_parse_flag(Dist *d, const char *flag, const char *value, Error *err);
#define DIST_USAGE                                                                                   \
    "  --split experts|layers  under mpirun: how the ranks share the model (default experts)\n"    \
    "  --dist-timeout S        under mpirun: the longest wait on the other ranks (default 60 s)\n"    \
    "  --micro-batch N         under mpirun, --split layers: tokens per pipeline piece (default auto)\n"
/* --micro-batch: tokens per piece of a batch in the layers split's pipeline
 * (dist_pipe.h); 0 = chosen from the batch (the default) */
int dist_micro_batch(const Dist *d);
void dist_set_micro_batch(Dist *d, int tokens);

/* Failure state: once a collective failed every later call fails at once
 * with the same message. dist_cancel (async-signal-safe) makes a waiting
 * collective fail ("cancelled"): the server calls it when it shuts down. */
bool dist_failed(const Dist *d);
const char *dist_failure(const Dist *d);
void dist_cancel(Dist *d);
/* Marks the run failed (dist_finish will abort the job). */
void dist_fail(Dist *d, const char *msg);

/* Bytes this rank received through the collectives (or sent, as the root
 * of a broadcast or the sender of a point-to-point message): benchmarks. */
uint64_t dist_bytes(const Dist *d);
/* Rank 0: a free id (< n_ids, at most 32) for an object it creates on every
 * rank (a Context), -1 if none; dist_put_id frees it. */
int dist_take_id(Dist *d, int n_ids);
void dist_put_id(Dist *d, int id);

/* Collectives over all ranks. 0, or -1 with err set (and the Dist failed).
 * `wait_forever`: no deadline (a worker waiting for rank 0's next command,
 * which may come after any idle time). */
int dist_bcast(Dist *d, void *buf, size_t bytes, bool wait_forever, Error *err);
int dist_sum_f32(Dist *d, float *x, size_t n, Error *err);
int dist_allgather(Dist *d, const void *mine, void *all, size_t bytes_each, Error *err);
int dist_send(Dist *d, int to, const void *buf, size_t bytes, Error *err);
int dist_recv(Dist *d, int from, void *buf, size_t bytes, Error *err);

/* Point-to-point exchanges that do not wait (the layers split's pipeline,
 * dist_pipe.h): each returns a ticket (>= 0) for an exchange in flight, whose
 * buffer must stay untouched until dist_wait says it is done; -1 with err
 * set on an error. At most 1 GiB each. dist_wait waits for it with the
 * deadline (and frees the ticket); dist_poll lets every exchange in flight
 * progress without waiting (MPI moves data only inside its calls: a rank
 * that computes calls it now and then). One rank: no tickets (-1, an error). */
int dist_isend(Dist *d, int to, const void *buf, size_t bytes, Error *err);
int dist_irecv(Dist *d, int from, void *buf, size_t bytes, Error *err);
int dist_wait(Dist *d, int ticket, Error *err);
int dist_poll(Dist *d, Error *err);

#endif
