/* dist_pipe.c - see dist_pipe.h: the layers split's pipeline bookkeeping. */
#include "dist_pipe.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int ticket;  /* dist_irecv's, -1 once taken */
    int rows;    /* rows of the piece that come back */
    size_t off;  /* where in back: floats */
} Back;

/* Rank 0: one batch in flight, whose rows come back from the last rank. */
typedef struct {
    float *back;                /* (rows that want logits, E), the rows the last rank sends back */
    size_t back_cap;            /* floats */
    Back *pieces;               /* the pieces with rows coming back, in order */
    int n_pieces, cap_pieces, next_piece;
} Flight;

struct DistPipe {
    Dist *d;
    int rank, size;
    int E;                      /* n_embd: floats per row */
    int n_batch;                /* rows a send buffer holds */
    float *ring[DIST_PIPE_RING];/* (n_batch, E) each, allocated at the first send from it */
    int ring_ticket[DIST_PIPE_RING]; /* the send from it in flight, -1 = free */
    int ring_next;
    Flight flight[DIST_PIPE_FLIGHT]; /* rank 0: a ring of the batches in flight, oldest at head */
    int head, count;
};

int dist_pipe_new(Dist *d, const Model *m, int n_batch, DistPipe **out, Error *err) {
    *out = NULL;
    if (!dist_multi(d) || dist_split(d) != DIST_SPLIT_LAYERS) return 0;
    DistPipe *p = calloc(1, sizeof *p);
    if (!p) return err_set(err, "out of memory");
    p->d = d;
    p->rank = dist_rank(d), p->size = dist_size(d);
    p->E = m->cfg.n_embd;
    p->n_batch = n_batch;
    for (int i = 0; i < DIST_PIPE_RING; i++) p->ring_ticket[i] = -1;
    *out = p;
    return 0;
}

void dist_pipe_free(DistPipe *p) {
    if (!p) return;
    Error err;
    /* exchanges still in flight (only after an error): a failed Dist ends
     * the job; the buffers MPI may still use are then left to the exit */
    if (dist_pipe_end(p, &err)) return;
    for (int i = 0; i < DIST_PIPE_RING; i++) free(p->ring[i]);
    for (int i = 0; i < DIST_PIPE_FLIGHT; i++) free(p->flight[i].back), free(p->flight[i].pieces);
    free(p);
}

int dist_pipe_piece_for(int n, int max, int ranks, int micro) {
    if (n <= 0 || ranks < 1) return max;
    const int want = DIST_PIPE_PIECES_PER_RANK * ranks;
    int piece = micro > 0 ? micro : (n + want - 1) / want;
    if (micro <= 0 && piece < DIST_PIPE_MIN_TOKENS) piece = DIST_PIPE_MIN_TOKENS;
    return piece < max ? piece : max;
}

int dist_pipe_piece(const DistPipe *p, int n, int max) {
    return p ? dist_pipe_piece_for(n, max, p->size, dist_micro_batch(p->d)) : max;
}

int dist_pipe_depth(const DistPipe *p) {
    if (!p) return 1;
    return p->size < DIST_PIPE_FLIGHT ? p->size : DIST_PIPE_FLIGHT;
}

int dist_pipe_in_flight(const DistPipe *p) { return p ? p->count : 0; }

int dist_pipe_begin(DistPipe *p, int n, int piece, const bool *want, Error *err) {
    if (!p || p->rank != 0) return 0;
    if (p->count == dist_pipe_depth(p))
        return err_set(err, "%d batches in flight already (the pipeline of %d ranks)", p->count, p->size);
    /* a free flight: none of its receives is posted, so its buffers may move */
    Flight *f = &p->flight[(p->head + p->count) % DIST_PIPE_FLIGHT];
    f->n_pieces = f->next_piece = 0;
    size_t rows = 0;
    for (int t = 0; t < n; t++) rows += !want || want[t];
    if (rows * (size_t)p->E > f->back_cap) {
        float *b = realloc(f->back, rows * (size_t)p->E * sizeof(float));
        if (!b) return err_set(err, "out of memory");
        f->back = b, f->back_cap = rows * (size_t)p->E;
    }
    p->count++; /* from here on dist_pipe_end waits for what was posted */
    size_t off = 0;
    for (int t0 = 0; t0 < n; t0 += piece) {
        int k = 0;
        for (int t = t0; t < n && t < t0 + piece; t++) k += !want || want[t];
        if (k == 0) continue; /* the last rank sends nothing for it */
        if (f->n_pieces == f->cap_pieces) {
            const int cap = f->cap_pieces ? 2 * f->cap_pieces : 16;
            Back *q = realloc(f->pieces, (size_t)cap * sizeof *q);
            if (!q) return err_set(err, "out of memory");
            f->pieces = q, f->cap_pieces = cap;
        }
        Back *b = &f->pieces[f->n_pieces];
        b->rows = k, b->off = off;
        b->ticket = dist_irecv(p->d, p->size - 1, f->back + off, (size_t)k * (size_t)p->E * sizeof(float), err);
        if (b->ticket < 0) return -1;
        f->n_pieces++;
        off += (size_t)k * (size_t)p->E;
    }
    return 0;
}

int dist_pipe_recv(DistPipe *p, float *x, int rows, Error *err) {
    return dist_recv(p->d, p->rank - 1, x, (size_t)rows * (size_t)p->E * sizeof(float), err);
}

int dist_pipe_send(DistPipe *p, const float *x, int rows, Error *err) {
    if (rows > p->n_batch) return err_set(err, "a piece of %d rows in a pipe of %d", rows, p->n_batch);
    const int i = p->ring_next;
    if (p->ring_ticket[i] >= 0) { /* the buffer's last send must be done */
        if (dist_wait(p->d, p->ring_ticket[i], err)) return -1;
        p->ring_ticket[i] = -1;
    }
    if (!p->ring[i] && !(p->ring[i] = malloc((size_t)p->n_batch * (size_t)p->E * sizeof(float))))
        return err_set(err, "out of memory");
    const size_t bytes = (size_t)rows * (size_t)p->E * sizeof(float);
    memcpy(p->ring[i], x, bytes);
    const int to = p->rank == p->size - 1 ? 0 : p->rank + 1;
    if ((p->ring_ticket[i] = dist_isend(p->d, to, p->ring[i], bytes, err)) < 0) return -1;
    p->ring_next = (i + 1) % DIST_PIPE_RING;
    return 0;
}

int dist_pipe_poll(DistPipe *p, Error *err) { return p ? dist_poll(p->d, err) : 0; }

int dist_pipe_next_back(DistPipe *p, float *x, Error *err) {
    if (!p || p->rank != 0 || p->count == 0) return 0;
    Flight *f = &p->flight[p->head];
    if (f->next_piece == f->n_pieces) return 0;
    Back *b = &f->pieces[f->next_piece];
    if (dist_wait(p->d, b->ticket, err)) return -1;
    b->ticket = -1;
    f->next_piece++;
    memcpy(x, f->back + b->off, (size_t)b->rows * (size_t)p->E * sizeof(float));
    return b->rows;
}

/* waits for the receives of a flight still posted (only after an error) */
static int flight_end(DistPipe *p, Flight *f, Error *err) {
    for (; f->next_piece < f->n_pieces; f->next_piece++) {
        Back *b = &f->pieces[f->next_piece];
        if (b->ticket >= 0 && dist_wait(p->d, b->ticket, err)) return -1;
        b->ticket = -1;
    }
    f->n_pieces = f->next_piece = 0;
    return 0;
}

int dist_pipe_retire(DistPipe *p, Error *err) {
    if (!p || p->rank != 0 || p->count == 0) return 0;
    if (flight_end(p, &p->flight[p->head], err)) return -1;
    p->head = (p->head + 1) % DIST_PIPE_FLIGHT;
    p->count--;
    return 0;
}

int dist_pipe_end(DistPipe *p, Error *err) {
    if (!p) return 0;
    while (p->count > 0) /* rank 0's batches in flight */
        if (dist_pipe_retire(p, err)) return -1;
    for (int i = 0; i < DIST_PIPE_RING; i++) {
        if (p->ring_ticket[i] >= 0 && dist_wait(p->d, p->ring_ticket[i], err)) return -1;
        p->ring_ticket[i] = -1;
    }
    return 0;
}
