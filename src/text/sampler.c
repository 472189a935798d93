/* sampler.c - see sampler.h.
 *
 * Pipeline of sampler_sample (llama.cpp order):
 *   1. penalties over the last repeat_last_n accepted tokens, in place:
 *      repetition (l > 0 ? l / rp : l * rp), then l -= fp * count + pp;
 *   2. temperature <= 0: argmax, ties -> lowest id;
 *   3. top-k (ties -> lower id), softmax(l / T), top-p, min-p, renormalize,
 *      draw with the sampler's own xoshiro256** generator.
 * After the call `logits` holds the penalized logits.
 *
 * Candidates are ranked "higher value first, then lower id" (ties -> lower
 * id). Nothing is fully sorted: top-k and the top-p nucleus are found by
 * quickselect-style partitioning (expected O(n); a small-k top-k uses a heap),
 * and the draw walks the kept set in whatever (deterministic) order it is in.
 * Without top-k, top-p first prunes by a weight threshold: tokens whose weight
 * (p / p_max) lies below it cannot be in the nucleus when the tokens above it
 * already hold top_p of the mass.
 *
 * repeat_last_n: > 0 a window of that many tokens, 0 penalties off, < 0
 * every token accepted since the last reset. sampler_reset clears the history
 * and re-seeds the generator, so a reset sampler repeats its draws. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- RNG: xoshiro256** seeded through splitmix64 ---------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void rng_seed(uint64_t st[4], uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) st[i] = splitmix64(&x);
    /* splitmix64 never yields four zero words, but keep the invariant obvious */
    if (!(st[0] | st[1] | st[2] | st[3])) st[0] = 1;
}

static uint64_t rng_next(uint64_t st[4]) {
    uint64_t r = rotl64(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl64(st[3], 45);
    return r;
}

/* float in [0, 1) from the top 24 bits */
static float rng_float(uint64_t st[4]) {
    return (float)(rng_next(st) >> 40) * (1.0f / 16777216.0f);
}

/* ---- sampler ----------------------------------------------------------- */

typedef struct {
    float v; /* logit (top-k) or weight p / p_max */
    int id;
} Cand;

struct Sampler {
    SamplerParams p;
    int n_vocab;
    uint64_t rng[4];
    /* penalty history */
    int *ring;     /* window of accepted tokens (repeat_last_n > 0) */
    int ring_len;  /* tokens in the window */
    int ring_pos;  /* next slot to write */
    int *count;    /* [n_vocab] occurrences inside the window */
    int *distinct; /* tokens with count > 0 */
    int *dpos;     /* [n_vocab] position in distinct, valid when count > 0 */
    int n_distinct;
    /* work space */
    Cand *cand;    /* [n_vocab] */
    float *w;      /* [n_vocab] */
};

SamplerParams sampler_defaults(void) {
    SamplerParams p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 0.0f;
    p.seed = 42;
    return p;
}

Sampler *sampler_new(const SamplerParams *p, int n_vocab, Error *err) {
    if (!p) {
        err_set(err, "sampler: no parameters");
        return NULL;
    }
    if (n_vocab < 1) {
        err_set(err, "sampler: invalid vocabulary size %d", n_vocab);
        return NULL;
    }
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty)) {
        err_set(err, "sampler: repeat_penalty must be a positive number, got %g",
                (double)p->repeat_penalty);
        return NULL;
    }
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty)) {
        err_set(err, "sampler: presence/frequency penalties must be finite");
        return NULL;
    }
    Sampler *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(err, "sampler: out of memory");
        return NULL;
    }
    s->p = *p;
    s->n_vocab = n_vocab;
    size_t n = (size_t)n_vocab;
    s->count = calloc(n, sizeof *s->count);
    s->distinct = malloc(n * sizeof *s->distinct);
    s->dpos = malloc(n * sizeof *s->dpos);
    s->cand = malloc(n * sizeof *s->cand);
    s->w = malloc(n * sizeof *s->w);
    if (p->repeat_last_n > 0) s->ring = malloc((size_t)p->repeat_last_n * sizeof *s->ring);
    if (!s->count || !s->distinct || !s->dpos || !s->cand || !s->w ||
        (p->repeat_last_n > 0 && !s->ring)) {
        sampler_free(s);
        err_set(err, "sampler: out of memory (n_vocab %d, repeat_last_n %d)", n_vocab,
                p->repeat_last_n);
        return NULL;
    }
    rng_seed(s->rng, p->seed);
    return s;
}

void sampler_free(Sampler *s) {
    if (!s) return;
    free(s->ring);
    free(s->count);
    free(s->distinct);
    free(s->dpos);
    free(s->cand);
    free(s->w);
    free(s);
}

static void count_add(Sampler *s, int t) {
    if (s->count[t]++ == 0) {
        s->dpos[t] = s->n_distinct;
        s->distinct[s->n_distinct++] = t;
    }
}

static void count_remove(Sampler *s, int t) {
    if (--s->count[t] == 0) {
        int i = s->dpos[t];
        int last = s->distinct[--s->n_distinct];
        s->distinct[i] = last;
        s->dpos[last] = i;
    }
}

void sampler_accept(Sampler *s, int token) {
    if (!s || token < 0 || token >= s->n_vocab) return;
    int win = s->p.repeat_last_n;
    if (win == 0) return;
    if (win > 0) {
        if (s->ring_len == win) count_remove(s, s->ring[s->ring_pos]);
        else s->ring_len++;
        s->ring[s->ring_pos] = token;
        s->ring_pos = (s->ring_pos + 1) % win;
    }
    count_add(s, token);
}

void sampler_reset(Sampler *s) {
    if (!s) return;
    for (int i = 0; i < s->n_distinct; i++) s->count[s->distinct[i]] = 0;
    s->n_distinct = 0;
    s->ring_len = 0;
    s->ring_pos = 0;
    rng_seed(s->rng, s->p.seed);
}

static void apply_penalties(Sampler *s, float *logits) {
    const float rp = s->p.repeat_penalty, pp = s->p.presence_penalty,
                fp = s->p.frequency_penalty;
    if (rp == 1.0f && pp == 0.0f && fp == 0.0f) return;
    for (int i = 0; i < s->n_distinct; i++) {
        int t = s->distinct[i];
        int c = s->count[t];
        float l = logits[t];
        if (rp != 1.0f) l = l > 0.0f ? l / rp : l * rp;
        l -= (float)c * fp + pp; /* c > 0 here */
        logits[t] = l;
    }
}

static int argmax(const float *l, int n) {
    int best = -1;
    float bv = 0.0f;
    for (int i = 0; i < n; i++) {
        float v = l[i];
        if (isnan(v)) continue;
        if (best < 0 || v > bv) {
            best = i;
            bv = v;
        }
    }
    return best < 0 ? 0 : best;
}

/* a goes before b: higher value, then lower id (a strict total order) */
static inline int cand_before(const Cand *a, const Cand *b) {
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb) {
    const Cand *a = pa, *b = pb;
    if (cand_before(a, b)) return -1;
    if (cand_before(b, a)) return 1;
    return 0;
}

static inline void cand_swap(Cand *a, Cand *b) {
    Cand t = *a;
    *a = *b;
    *b = t;
}

/* min-heap on "before": the root is the worst of the kept candidates */
static void heap_sift_down(Cand *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && cand_before(&h[m], &h[l])) m = l;
        if (r < n && cand_before(&h[m], &h[r])) m = r;
        if (m == i) return;
        cand_swap(&h[i], &h[m]);
        i = m;
    }
}

static void heap_sift_up(Cand *h, int i) {
    while (i > 0) {
        int par = (i - 1) / 2;
        if (!cand_before(&h[par], &h[i])) return;
        cand_swap(&h[i], &h[par]);
        i = par;
    }
}

/* Partitions a[lo..hi) (hi - lo >= 3) around a median-of-three pivot.
 * Returns the pivot's final index p: a[lo..p) go before it, a[p+1..hi) after.
 * With `mass`, stores the sum of the values in a[lo..p). */
static int partition(Cand *a, int lo, int hi, double *mass) {
    int mid = lo + (hi - lo) / 2, last = hi - 1;
    if (cand_before(&a[mid], &a[lo])) cand_swap(&a[mid], &a[lo]);
    if (cand_before(&a[last], &a[lo])) cand_swap(&a[last], &a[lo]);
    if (cand_before(&a[last], &a[mid])) cand_swap(&a[last], &a[mid]);
    cand_swap(&a[mid], &a[last]); /* the median becomes the pivot at `last` */
    const Cand piv = a[last];
    int store = lo;
    double sum = 0.0;
    for (int i = lo; i < last; i++) {
        if (cand_before(&a[i], &piv)) {
            if (mass) sum += a[i].v;
            cand_swap(&a[i], &a[store]);
            store++;
        }
    }
    cand_swap(&a[store], &a[last]);
    if (mass) *mass = sum;
    return store;
}

/* steps of partitioning before falling back to a sort (guards the worst case) */
static int select_budget(int n) {
    int b = 8;
    while (n > 1) {
        n >>= 1;
        b += 2;
    }
    return b;
}

/* Moves the k best of a[0..m) to a[0..k) (in no particular order), k < m. */
static void select_best(Cand *a, int m, int k) {
    int lo = 0, hi = m, budget = select_budget(m);
    while (hi - lo > 2) {
        if (--budget < 0) {
            qsort(a + lo, (size_t)(hi - lo), sizeof *a, cand_cmp);
            return;
        }
        int p = partition(a, lo, hi, NULL);
        if (p == k || p + 1 == k) return;
        if (p < k) lo = p + 1;
        else hi = p;
    }
    if (hi - lo == 2 && cand_before(&a[lo + 1], &a[lo])) cand_swap(&a[lo], &a[lo + 1]);
}

/* The top-k of logits (NaN skipped) into cand[0..ret), in no particular order. */
static int select_top_k(const float *logits, int n, int k, Cand *cand) {
    int m = 0;
    if (k <= 256) {
        for (int i = 0; i < n; i++) {
            float v = logits[i];
            if (isnan(v)) continue;
            Cand c = {v, i};
            if (m < k) {
                cand[m] = c;
                heap_sift_up(cand, m);
                m++;
            } else if (cand_before(&c, &cand[0])) {
                cand[0] = c;
                heap_sift_down(cand, m, 0);
            }
        }
        return m;
    }
    for (int i = 0; i < n; i++) {
        if (isnan(logits[i])) continue;
        cand[m].v = logits[i];
        cand[m].id = i;
        m++;
    }
    if (m <= k) return m;
    select_best(cand, m, k);
    return k;
}

/* Top-p over a[0..m) holding weights: moves the nucleus - the shortest run of
 * best candidates (in "before" order) whose mass reaches need - to a[0..ret),
 * in no particular order. Always keeps at least one. Returns -1 if all of
 * a[0..m) together do not reach need. */
static int top_p_select(Cand *a, int m, double need) {
    int lo = 0, hi = m, budget = select_budget(m);
    double acc = 0.0; /* mass of a[0..lo), all before a[lo..hi) */
    while (hi - lo > 0) {
        if (hi - lo < 3 || --budget < 0) {
            qsort(a + lo, (size_t)(hi - lo), sizeof *a, cand_cmp);
            for (int i = lo; i < hi; i++) {
                acc += a[i].v;
                if (acc >= need) return i + 1;
            }
            break;
        }
        double mb;
        int p = partition(a, lo, hi, &mb);
        if (p > lo && acc + mb >= need) {
            hi = p; /* the cut lies before the pivot */
        } else if (acc + mb + a[p].v >= need) {
            return p + 1; /* the pivot completes the nucleus */
        } else {
            acc += mb + a[p].v;
            lo = p + 1;
        }
    }
    /* Only rounding (sums taken in another order) gets here after a[0..hi)
     * was found to reach need; then that is the nucleus. */
    return hi < m ? hi : -1;
}

/* Keeps the candidates with weight >= min_p (weights are p / p_max). */
static int min_p_filter(Cand *a, int m, float min_p) {
    int k = 0;
    for (int i = 0; i < m; i++)
        if (a[i].v >= min_p) a[k++] = a[i];
    return k;
}

/* Draws from cand[0..n) with weights cand[].v. */
static int draw(Sampler *s, const Cand *cand, int n) {
    double total = 0.0;
    for (int i = 0; i < n; i++) total += cand[i].v;
    double target = (double)rng_float(s->rng) * total;
    double cum = 0.0;
    int last = -1;
    for (int i = 0; i < n; i++) {
        if (!(cand[i].v > 0.0f)) continue;
        cum += cand[i].v;
        last = i;
        if (cum > target) return cand[i].id;
    }
    return last >= 0 ? cand[last].id : cand[0].id;
}

/* Gathers the tokens with weight >= r into cand (id order); returns count and
 * their mass in *mass. */
static int gather(const float *w, int n, float r, Cand *cand, double *mass) {
    int m = 0;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        if (w[i] >= r) {
            cand[m].v = w[i];
            cand[m].id = i;
            m++;
            sum += w[i];
        }
    }
    *mass = sum;
    return m;
}

static int pick(Sampler *s, const float *logits);

int sampler_sample(Sampler *s, float *logits) {
    if (s->p.repeat_last_n != 0 && s->n_distinct > 0) apply_penalties(s, logits);
    return pick(s, logits);
}

/* The pick is checked first; only a rejected pick costs a full mask, and
 * the second pick (from the masked logits) draws the generator once more. */
int sampler_sample_filtered(Sampler *s, float *logits, const TokenFilter *f) {
    if (s->p.repeat_last_n != 0 && s->n_distinct > 0) apply_penalties(s, logits);
    int t = pick(s, logits);
    if (!f || f->allows(f->ctx, t)) return t;
    int n_ok = f->mask(f->ctx, logits);
    if (n_ok <= 0) return n_ok < 0 ? -2 : -1;
    t = pick(s, logits);
    return f->allows(f->ctx, t) ? t : -1;
}

/* Picks from (penalized) logits without changing them. */
static int pick(Sampler *s, const float *logits) {
    const int n = s->n_vocab;
    const float temp = s->p.temperature;
    if (!(temp > 0.0f)) return argmax(logits, n);
    const float inv_t = 1.0f / temp;
    if (!isfinite(inv_t)) return argmax(logits, n);

    const int top_k = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : 0;
    const int use_top_p = s->p.top_p < 1.0f; /* NaN -> off */
    const int use_min_p = s->p.min_p > 0.0f;
    const float top_p = s->p.top_p;
    const float min_p = s->p.min_p > 1.0f ? 1.0f : s->p.min_p;
    Cand *cand = s->cand;

    if (top_k > 0) {
        int m = select_top_k(logits, n, top_k, cand);
        if (m == 0) return 0; /* all NaN */
        int b = 0;
        for (int i = 1; i < m; i++)
            if (cand_before(&cand[i], &cand[b])) b = i;
        float mx = cand[b].v;
        if (!isfinite(mx)) return cand[b].id; /* +inf, or everything -inf */
        double z = 0.0;
        for (int i = 0; i < m; i++) {
            cand[i].v = expf((cand[i].v - mx) * inv_t);
            z += cand[i].v;
        }
        if (use_top_p) {
            int c = top_p_select(cand, m, (double)top_p * z);
            if (c > 0) m = c;
        }
        if (use_min_p) m = min_p_filter(cand, m, min_p);
        return draw(s, cand, m);
    }

    /* Whole vocabulary: weights w = exp((l - max) / T), in [0, 1]. */
    int best = argmax(logits, n);
    float mx = logits[best];
    if (!isfinite(mx)) return best;
    float *w = s->w;
    double z = 0.0;
    for (int i = 0; i < n; i++) {
        float l = logits[i];
        float v = isnan(l) ? 0.0f : expf((l - mx) * inv_t);
        w[i] = v;
        z += v;
    }

    if (!use_top_p) {
        double mass;
        int m = gather(w, n, use_min_p ? min_p : 0.0f, cand, &mass);
        if (m == 0 || !(mass > 0.0)) return best;
        return draw(s, cand, m);
    }

    /* top-p over the vocabulary: work only on the tokens above a weight
     * threshold low enough for them to hold top_p of the mass. Level 0 tries
     * 1e-4 (enough for peaked distributions); level 1 a threshold that is
     * always enough: the tokens below r_safe hold less than
     * n * r_safe = (1 - top_p) * z / 2; level 2 takes every token. */
    const double need = (double)top_p * z;
    const double r_safe = (1.0 - (double)top_p) * z / (2.0 * (double)n);
    const float levels[3] = {1e-4f, (float)r_safe, 0.0f};
    for (int lv = 0; lv < 3; lv++) {
        float r = levels[lv];
        if (lv == 1 && !(r < levels[0])) continue;
        int final = lv == 2; /* no lower threshold left to try */
        if (use_min_p && min_p >= r) {
            /* tokens under min_p are dropped anyway: the gathered set is
             * the answer whether or not it reaches top_p */
            r = min_p;
            final = 1;
        }
        double mass;
        int m = gather(w, n, r, cand, &mass);
        if (m == 0) continue;
        if (!final && mass < need) continue;
        int c = top_p_select(cand, m, need);
        if (c < 0) {
            if (!final) continue;
            c = m;
        }
        if (use_min_p) c = min_p_filter(cand, c, min_p);
        return draw(s, cand, c);
    }
    return best; /* not reached: level 2 gathers every token */
}

/* ---- stop strings ------------------------------------------------------ */

/* Rules: the stop string whose occurrence ends earliest in the text stream
 * wins; if several end at the same byte, the longest (earliest-starting) one
 * wins. Matching is byte-level. Empty stop strings are ignored. After a hit
 * the matcher drops its held-back text, so it may be reused. If the buffer
 * cannot grow, stop_matcher_push returns -1, emits nothing and leaves the
 * state as it was. A push costs O((held + len) * stop length) per stop. */

int stop_matcher_init(StopMatcher *m, const char *const *stops, int n_stops, Error *err) {
    if (!m) return err_set(err, "stop matcher: null");
    memset(m, 0, sizeof *m);
    if (n_stops < 0 || (n_stops > 0 && !stops))
        return err_set(err, "stop matcher: invalid stop list");
    size_t maxlen = 0;
    if (n_stops > 0) {
        m->stops = calloc((size_t)n_stops, sizeof *m->stops);
        if (!m->stops) return err_set(err, "stop matcher: out of memory");
    }
    for (int i = 0; i < n_stops; i++) {
        if (!stops[i] || !stops[i][0]) continue;
        size_t l = strlen(stops[i]);
        char *c = malloc(l + 1);
        if (!c) {
            stop_matcher_free(m);
            return err_set(err, "stop matcher: out of memory");
        }
        memcpy(c, stops[i], l + 1);
        m->stops[m->n_stops++] = c;
        if (l > maxlen) maxlen = l;
    }
    m->cap = 2 * maxlen + 64;
    m->buf = malloc(m->cap);
    if (!m->buf) {
        stop_matcher_free(m);
        return err_set(err, "stop matcher: out of memory");
    }
    return 0;
}

void stop_matcher_free(StopMatcher *m) {
    if (!m) return;
    for (int i = 0; i < m->n_stops; i++) free(m->stops[i]);
    free(m->stops);
    free(m->buf);
    memset(m, 0, sizeof *m);
}

static void reverse_bytes(char *p, size_t n) {
    for (size_t i = 0, j = n; i + 1 < j; i++, j--) {
        char t = p[i];
        p[i] = p[j - 1];
        p[j - 1] = t;
    }
}

/* first occurrence of needle (nl >= 1) in hay, or (size_t)-1 */
static size_t find_bytes(const char *hay, size_t hl, const char *needle, size_t nl) {
    if (nl > hl) return (size_t)-1;
    const char first = needle[0];
    for (size_t i = 0; i + nl <= hl; i++) {
        if (hay[i] != first) continue;
        if (memcmp(hay + i, needle, nl) == 0) return i;
    }
    return (size_t)-1;
}

int stop_matcher_push(StopMatcher *m, const char *text, size_t len, const char **emit,
                      size_t *emit_len) {
    *emit = m->buf;
    *emit_len = 0;
    if (len > 0) {
        if (len > SIZE_MAX - m->len) return -1;
        size_t need = m->len + len;
        if (need > m->cap) {
            size_t nc = m->cap;
            while (nc < need) nc = nc > SIZE_MAX / 2 ? need : nc * 2;
            char *nb = realloc(m->buf, nc);
            if (!nb) return -1; /* state unchanged, nothing emitted */
            m->buf = nb;
            m->cap = nc;
        }
        memcpy(m->buf + m->len, text, len);
        m->len = need;
    }
    char *b = m->buf;
    size_t n = m->len;
    *emit = b;

    /* earliest-ending match; ties -> longest */
    size_t best_end = (size_t)-1, best_start = 0;
    for (int i = 0; i < m->n_stops; i++) {
        size_t sl = strlen(m->stops[i]);
        size_t pos = find_bytes(b, n, m->stops[i], sl);
        if (pos == (size_t)-1) continue;
        size_t end = pos + sl;
        if (end < best_end || (end == best_end && pos < best_start)) {
            best_end = end;
            best_start = pos;
        }
    }
    if (best_end != (size_t)-1) {
        *emit_len = best_start;
        m->len = 0;
        return 1;
    }

    /* hold back the longest suffix that is a proper prefix of a stop */
    size_t hold = 0;
    for (int i = 0; i < m->n_stops; i++) {
        size_t sl = strlen(m->stops[i]);
        size_t k = sl - 1 < n ? sl - 1 : n;
        for (; k > hold; k--) {
            if (memcmp(b + n - k, m->stops[i], k) == 0) {
                hold = k;
                break;
            }
        }
    }
    size_t out = n - hold;
    if (hold > 0 && out > 0) {
        /* rotate [out text | held] into [held | out text] so the held bytes
         * start the buffer and the emitted bytes stay valid behind them
         * until the next call overwrites them */
        reverse_bytes(b, out);
        reverse_bytes(b + out, hold);
        reverse_bytes(b, n);
        *emit = b + hold;
    }
    *emit_len = out;
    m->len = hold;
    return 0;
}

void stop_matcher_flush(StopMatcher *m, const char **emit, size_t *emit_len) {
    *emit = m->buf;
    *emit_len = m->len;
    m->len = 0;
}
