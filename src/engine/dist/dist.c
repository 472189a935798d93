/* dist.c - see dist.h. The only file that includes mpi.h (GROK_HAVE_MPI). */
#include "dist.h"

#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef GROK_HAVE_MPI
#include <mpi.h>
#endif

#define DIST_YIELD_S 50e-6       /* a wait polls this long without giving up the CPU, */
#define DIST_SPIN_S 0.002        /* then yielding it between polls this long (another process on the core runs), */
#define DIST_NAP_NS 20000L       /* then naps this long between polls (an idle worker uses no CPU) */
#define DIST_IDLE_NAP_NS 1000000L /* a worker idle for over a second naps this long */
#define DIST_CHUNK ((size_t)1 << 30) /* MPI counts are ints: larger messages go in pieces */

struct Dist {
    int rank, size;
    bool mpi;                 /* MPI_Init was called */
    DistSplit split;
    double timeout_s;
    atomic_bool cancel;
    atomic_bool failed;
    char failure[GROK_ERR_LEN];
    uint64_t bytes;
    float *gather;            /* dist_sum_f32: every rank's part (grows, kept between calls) */
    size_t gather_cap;        /* floats it holds */
    uint32_t used_ids;        /* rank 0: the ids of the Contexts the workers hold (dist_engine.h) */
    int micro;                /* --micro-batch: tokens per pipeline piece, 0 = auto */
#ifdef GROK_HAVE_MPI
    MPI_Request *req;         /* the exchanges in flight, by ticket (dist_isend / dist_irecv) */
    bool *req_used;           /* the ticket is taken (its request may have completed in a dist_poll) */
    int n_req;                /* tickets allocated */
#endif
    char host[64];
};

bool dist_built(void) {
#ifdef GROK_HAVE_MPI
    return true;
#else
    return false;
#endif
}

/* Launched by an MPI launcher: Open MPI, MPICH/Hydra and PMIx set these. */
static bool launched_by_mpirun(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return true;
    return false;
}

Dist *dist_init(int *argc, char ***argv, Error *err) {
    Dist *d = calloc(1, sizeof *d);
    if (!d) {
        err_set(err, "out of memory");
        return NULL;
    }
    d->size = 1;
    d->timeout_s = DIST_DEFAULT_TIMEOUT_S;
    atomic_init(&d->cancel, false);
    atomic_init(&d->failed, false);
    if (gethostname(d->host, sizeof d->host - 1) != 0) snprintf(d->host, sizeof d->host, "?");
    if (!launched_by_mpirun()) return d;
#ifdef GROK_HAVE_MPI
    int provided = 0;
    /* the server calls into the engine from one thread (its engine thread),
     * not the one that started MPI */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
        free(d);
        err_set(err, "MPI_Init failed");
        return NULL;
    }
    d->mpi = true;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    if (d->size > 1 && provided < MPI_THREAD_SERIALIZED) {
        MPI_Finalize();
        free(d);
        err_set(err, "this MPI library does not allow calls from more than one thread (MPI_THREAD_SERIALIZED)");
        return NULL;
    }
#else
    (void)argc, (void)argv;
    /* launched by mpirun but built without MPI: each process would run the
     * whole model alone and all print; say so once */
    const char *n = getenv("OMPI_COMM_WORLD_SIZE") ? getenv("OMPI_COMM_WORLD_SIZE") : getenv("PMI_SIZE");
    if (n && atoi(n) > 1) {
        free(d);
        err_set(err, "this grok was built without MPI (GROK_MPI=OFF or no MPI library found): it cannot run "
                     "under mpirun with %s ranks; rebuild with libopenmpi-dev installed",
                n);
        return NULL;
    }
#endif
    return d;
}

int dist_parse_flag(Dist *d, const char *flag, const char *value, Error *err) {
    const bool split = !strcmp(flag, "--split"), tmo = !strcmp(flag, "--dist-timeout");
    if (!strcmp(flag, "--micro-batch")) {
        char *e = NULL;
        const long v = value ? strtol(value, &e, 10) : -1;
        if (!e || e == value || *e || v < 0 || v > 65536)
            return err_set(err, "--micro-batch needs a token count (0 = auto, at most 65536)");
        if (d) d->micro = (int)v;
        return 1;
    }
    if (!split && !tmo) return 0;
    if (split && value && (!strcmp(value, "experts") || !strcmp(value, "layers"))) {
        if (d) d->split = !strcmp(value, "layers") ? DIST_SPLIT_LAYERS : DIST_SPLIT_EXPERTS;
        return 1;
    }
    char *end = NULL;
    const double s = value ? strtod(value, &end) : 0;
    if (tmo && end && end != value && *end == 0 && s > 0 && s <= 1e6) {
        if (d) d->timeout_s = s;
        return 1;
    }
    return err_set(err, "%s", split ? "--split must be experts or layers" : "--dist-timeout needs seconds (> 0)");
}

int dist_rank(const Dist *d) { return d ? d->rank : 0; }
int dist_size(const Dist *d) { return d ? d->size : 1; }
bool dist_multi(const Dist *d) { return d && d->size > 1; }
const char *dist_host(const Dist *d) { return d ? d->host : "?"; }
DistSplit dist_split(const Dist *d) { return d ? d->split : DIST_SPLIT_EXPERTS; }
void dist_set_split(Dist *d, DistSplit s) { d->split = s; }
void dist_set_timeout(Dist *d, double s) { d->timeout_s = s; }
double dist_timeout(const Dist *d) { return d ? d->timeout_s : DIST_DEFAULT_TIMEOUT_S; }
int dist_micro_batch(const Dist *d) { return d ? d->micro : 0; }
void dist_set_micro_batch(Dist *d, int tokens) { d->micro = tokens > 0 ? tokens : 0; }
bool dist_failed(const Dist *d) { return d && atomic_load(&d->failed); }
const char *dist_failure(const Dist *d) { return d ? d->failure : ""; }
void dist_fail(Dist *d, const char *msg) {
    if (!d || atomic_load(&d->failed)) return;
    snprintf(d->failure, sizeof d->failure, "%s", msg);
    atomic_store(&d->failed, true);
}
void dist_cancel(Dist *d) {
    if (d) atomic_store(&d->cancel, true);
}
uint64_t dist_bytes(const Dist *d) { return d ? d->bytes : 0; }
int dist_take_id(Dist *d, int n_ids) {
    for (int i = 0; i < n_ids && i < 32; i++)
        if (!(d->used_ids & (1u << i))) {
            d->used_ids |= 1u << i;
            return i;
        }
    return -1;
}
void dist_put_id(Dist *d, int id) {
    if (id >= 0 && id < 32) d->used_ids &= ~(1u << id);
}

#ifdef GROK_HAVE_MPI
/* Marks the Dist failed with "rank R (host): message" (the first failure
 * is kept). Returns -1. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(Dist *d, Error *err, const char *fmt, ...) {
    if (!atomic_load(&d->failed)) {
        char msg[GROK_ERR_LEN - 96];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(d->failure, sizeof d->failure, "rank %d (%s): %s", d->rank, d->host, msg);
        atomic_store(&d->failed, true);
    }
    return err_set(err, "%s", d->failure);
}

/* Waits for a request, polling: a deadline (unless forever) and the cancel
 * flag end the wait with an error instead of a hang in the collective. */
static int wait_req(Dist *d, MPI_Request *r, const char *what, bool forever, Error *err) {
    const double t0 = time_now();
    double now = t0;
    for (long i = 0;; i++) {
        int done = 0;
        if (MPI_Test(r, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return fail(d, err, "MPI error during %s (another rank failed?)", what);
        if (done) return 0;
        if (atomic_load(&d->cancel)) return fail(d, err, "%s stopped: shutting down (under mpirun: another rank ended)", what);
        if ((i & 63) == 0) now = time_now();
        if (!forever && d->timeout_s > 0 && now - t0 > d->timeout_s)
            return fail(d, err, "no answer from the other ranks during %s within %.0f s (a rank died or hangs; "
                                "--dist-timeout sets the limit)", what, d->timeout_s);
        if (now - t0 > DIST_SPIN_S) {
            struct timespec ts = {0, now - t0 > 1.0 && forever ? DIST_IDLE_NAP_NS : DIST_NAP_NS};
            nanosleep(&ts, NULL);
        } else if (now - t0 > DIST_YIELD_S) {
            sched_yield();
        }
    }
}

static int check(Dist *d, Error *err) {
    if (atomic_load(&d->failed)) return err_set(err, "%s", d->failure);
    return 0;
}
#endif

int dist_finish(Dist *d, int rc) {
    if (!d) return rc;
#ifdef GROK_HAVE_MPI
    if (d->mpi) {
        if (atomic_load(&d->failed)) {
            fprintf(stderr, "grok: rank %d (%s): stopping every rank (%s)\n", d->rank, d->host, d->failure);
            fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, rc ? rc : 1);
        }
        MPI_Finalize();
    }
#endif
    free(d->gather);
#ifdef GROK_HAVE_MPI
    free(d->req);
    free(d->req_used);
#endif
    free(d);
    return rc;
}

int dist_bcast(Dist *d, void *buf, size_t bytes, bool forever, Error *err) {
#ifdef GROK_HAVE_MPI
    if (!d->mpi || d->size == 1) return 0;
    if (check(d, err)) return -1;
    for (size_t off = 0; off < bytes || (bytes == 0 && off == 0); off += DIST_CHUNK) {
        const size_t n = bytes - off < DIST_CHUNK ? bytes - off : DIST_CHUNK;
        MPI_Request r;
        if (MPI_Ibcast((char *)buf + off, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD, &r) != MPI_SUCCESS)
            return fail(d, err, "MPI error starting %s", "a broadcast");
        if (wait_req(d, &r, "a broadcast from rank 0", forever, err)) return -1;
        d->bytes += n;
        if (bytes == 0) break;
    }
    return 0;
#else
    (void)d, (void)buf, (void)bytes, (void)forever, (void)err;
    return 0;
#endif
}

int dist_allgather(Dist *d, const void *mine, void *all, size_t each, Error *err) {
#ifdef GROK_HAVE_MPI
    if (!d->mpi || d->size == 1) {
        memcpy(all, mine, each);
        return 0;
    }
    if (check(d, err)) return -1;
    if (each > DIST_CHUNK) return err_set(err, "allgather of %zu bytes is too large", each);
    MPI_Request r;
    if (MPI_Iallgather(mine, (int)each, MPI_BYTE, all, (int)each, MPI_BYTE, MPI_COMM_WORLD, &r) != MPI_SUCCESS)
        return fail(d, err, "MPI error starting %s", "an allgather");
    if (wait_req(d, &r, "an exchange between the ranks", false, err)) return -1;
    d->bytes += each * (size_t)(d->size - 1);
    return 0;
#else
    (void)d, (void)err;
    memcpy(all, mine, each);
    return 0;
#endif
}

int dist_sum_f32(Dist *d, float *x, size_t n, Error *err) {
#ifdef GROK_HAVE_MPI
    if (!d->mpi || d->size == 1) return 0;
    if (check(d, err)) return -1;
    /* allgather + a sum in rank order on every rank: every rank gets the
     * same bits (an MPI all-reduce may associate differently per rank, and
     * ranks whose residual streams drift apart could route a token to
     * different experts) */
    const size_t bytes = n * sizeof(float);
    if (bytes * (size_t)d->size > DIST_CHUNK) return err_set(err, "all-reduce of %zu floats is too large", n);
    if (n * (size_t)d->size > d->gather_cap) {
        float *p = realloc(d->gather, bytes * (size_t)d->size);
        if (!p) return err_set(err, "out of memory");
        d->gather = p, d->gather_cap = n * (size_t)d->size;
    }
    float *all = d->gather;
    MPI_Request r;
    if (MPI_Iallgather(x, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD, &r) != MPI_SUCCESS)
        return fail(d, err, "MPI error starting %s", "the MoE all-reduce");
    if (wait_req(d, &r, "the MoE all-reduce", false, err)) return -1;
    d->bytes += bytes * (size_t)(d->size - 1);
    for (size_t i = 0; i < n; i++) {
        float s = all[i];
        for (int k = 1; k < d->size; k++) s += all[(size_t)k * n + i];
        x[i] = s;
    }
    return 0;
#else
    (void)d, (void)x, (void)n, (void)err;
    return 0;
#endif
}

int dist_send(Dist *d, int to, const void *buf, size_t bytes, Error *err) {
#ifdef GROK_HAVE_MPI
    if (!d->mpi || d->size == 1) return 0;
    if (check(d, err)) return -1;
    for (size_t off = 0; off < bytes; off += DIST_CHUNK) {
        const size_t n = bytes - off < DIST_CHUNK ? bytes - off : DIST_CHUNK;
        MPI_Request r;
        if (MPI_Isend((const char *)buf + off, (int)n, MPI_BYTE, to, 0, MPI_COMM_WORLD, &r) != MPI_SUCCESS)
            return fail(d, err, "MPI error starting %s", "a send");
        if (wait_req(d, &r, "a send to the next rank", false, err)) return -1;
        d->bytes += n;
    }
    return 0;
#else
    (void)d, (void)to, (void)buf, (void)bytes;
    return err_set(err, "built without MPI");
#endif
}

int dist_recv(Dist *d, int from, void *buf, size_t bytes, Error *err) {
#ifdef GROK_HAVE_MPI
    if (!d->mpi || d->size == 1) return 0;
    if (check(d, err)) return -1;
    for (size_t off = 0; off < bytes; off += DIST_CHUNK) {
        const size_t n = bytes - off < DIST_CHUNK ? bytes - off : DIST_CHUNK;
        MPI_Request r;
        if (MPI_Irecv((char *)buf + off, (int)n, MPI_BYTE, from, 0, MPI_COMM_WORLD, &r) != MPI_SUCCESS)
            return fail(d, err, "MPI error starting %s", "a receive");
        if (wait_req(d, &r, "a receive from the previous rank", false, err)) return -1;
        d->bytes += n;
    }
    return 0;
#else
    (void)d, (void)from, (void)buf, (void)bytes;
    return err_set(err, "built without MPI");
#endif
}

/* ---- exchanges that do not wait ---------------------------------------- */

#ifdef GROK_HAVE_MPI
/* A free ticket (its request MPI_REQUEST_NULL), the table grown if needed. */
static int new_ticket(Dist *d, Error *err) {
    for (int t = 0; t < d->n_req; t++)
        if (!d->req_used[t]) return t;
    const int n = d->n_req ? 2 * d->n_req : 16;
    MPI_Request *r = realloc(d->req, (size_t)n * sizeof *r);
    if (!r) return err_set(err, "out of memory");
    d->req = r;
    bool *u = realloc(d->req_used, (size_t)n * sizeof *u);
    if (!u) return err_set(err, "out of memory");
    d->req_used = u;
    for (int t = d->n_req; t < n; t++) d->req[t] = MPI_REQUEST_NULL, d->req_used[t] = false;
    const int t = d->n_req;
    d->n_req = n;
    return t;
}

static int start(Dist *d, bool send, int peer, void *buf, size_t bytes, Error *err) {
    if (!d->mpi || d->size == 1) return err_set(err, "no other process to exchange with");
    if (check(d, err)) return -1;
    if (bytes > DIST_CHUNK) return err_set(err, "a message of %zu bytes is too large", bytes);
    const int t = new_ticket(d, err);
    if (t < 0) return -1;
    const int rc = send ? MPI_Isend(buf, (int)bytes, MPI_BYTE, peer, 0, MPI_COMM_WORLD, &d->req[t])
                        : MPI_Irecv(buf, (int)bytes, MPI_BYTE, peer, 0, MPI_COMM_WORLD, &d->req[t]);
    if (rc != MPI_SUCCESS) return fail(d, err, "MPI error starting %s", send ? "a send" : "a receive");
    d->req_used[t] = true;
    d->bytes += bytes;
    return t;
}
#endif

int dist_isend(Dist *d, int to, const void *buf, size_t bytes, Error *err) {
#ifdef GROK_HAVE_MPI
    return start(d, true, to, (void *)buf, bytes, err);
#else
    (void)d, (void)to, (void)buf, (void)bytes;
    return err_set(err, "built without MPI");
#endif
}

int dist_irecv(Dist *d, int from, void *buf, size_t bytes, Error *err) {
#ifdef GROK_HAVE_MPI
    return start(d, false, from, buf, bytes, err);
#else
    (void)d, (void)from, (void)buf, (void)bytes;
    return err_set(err, "built without MPI");
#endif
}

int dist_wait(Dist *d, int t, Error *err) {
#ifdef GROK_HAVE_MPI
    if (t < 0 || t >= d->n_req || !d->req_used[t]) return err_set(err, "no exchange %d in flight", t);
    const int rc = check(d, err) ? -1 : wait_req(d, &d->req[t], "an exchange with the next or previous rank", false, err);
    if (rc == 0) d->req_used[t] = false; /* (after a failure the job ends: the request stays) */
    return rc;
#else
    (void)d, (void)t;
    return err_set(err, "built without MPI");
#endif
}

int dist_poll(Dist *d, Error *err) {
#ifdef GROK_HAVE_MPI
    if (!d || !d->mpi || d->n_req == 0) return 0;
    if (check(d, err)) return -1;
    for (int t = 0; t < d->n_req; t++) /* (finished and free tickets hold MPI_REQUEST_NULL) */
        if (d->req[t] != MPI_REQUEST_NULL) {
            int done = 0;
            if (MPI_Test(&d->req[t], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                return fail(d, err, "MPI error during %s (another rank failed?)", "an exchange between ranks");
        }
    if (atomic_load(&d->cancel)) return fail(d, err, "an exchange stopped: shutting down (under mpirun: another rank ended)");
    return 0;
#else
    (void)d, (void)err;
    return 0;
#endif
}
