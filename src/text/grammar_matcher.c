/* grammar_matcher.c - see grammar.h: the token trie and the matcher.
 *
 * A parser stack is a chain of frames (pos = element index, parent); the
 * top frame is always at a byte set, the frames below hold return
 * positions. Frames are hash-consed, so equal stacks are one id. A matcher
 * state is the sorted set of its stacks' top frames, interned too, and each
 * state remembers its transitions: (state, byte) -> state is computed once
 * (step the stacks whose top set has the byte, expand them to their next
 * byte sets; a rule reference in tail position pushes no frame, so
 * repetitions neither grow stacks nor make new states). Inside a JSON
 * string, say, every ASCII byte leads back to the same state, so masking the
 * whole vocabulary is mostly one cached look-up per trie node. Frame 0
 * stands for "the input may end here"; state 0 is the dead state.
 *
 * Memory: frames, states and transitions are kept until they pass a limit,
 * then everything not reachable from the current state is dropped. */
#include "grammar.h"
#include "grammar_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STACKS 4096          /* live parser stacks in one state */
#define MAX_EXPAND (1 << 17)     /* expansion steps per byte */
#define MAX_WORK (1L << 24)      /* expansion steps per check, accept or mask (the engine thread must not stall) */
#define COMPACT_FRAMES (1 << 20) /* frames kept before compacting */
#define COMPACT_STATES (1 << 18) /* states kept before compacting */
#define MAX_TOKEN_BYTES 1024

/* ---- token trie -------------------------------------------------------- */

typedef struct {
    uint32_t next;  /* index just past this node's subtree */
    int32_t tok;    /* first token whose bytes end here, -1 */
    uint16_t depth; /* 1 = first byte */
    uint16_t byte;  /* KEY_LEAD_SPACE: a "▁" that starts a piece */
} TrieNode;

#define KEY_LEAD_SPACE 256

struct TokenTrie {
    TrieNode *nodes;
    int n_nodes;
    int n_vocab;
    uint32_t *off;     /* token bytes: bytes[off[t] .. off[t] + len[t]) */
    uint16_t *len;
    unsigned char *bytes;
    int32_t *dup_next; /* next token with the same bytes, -1 */
    uint8_t *lead;     /* the piece starts with "▁" (the decoder may drop it) */
    int max_len;
    bool strip_space;  /* the decoder drops the first piece's leading space */
};

int token_trie_n_nodes(const TokenTrie *tt) { return tt ? tt->n_nodes : 0; }

void token_trie_free(TokenTrie *tt) {
    if (!tt) return;
    free(tt->nodes);
    free(tt->off);
    free(tt->len);
    free(tt->bytes);
    free(tt->dup_next);
    free(tt->lead);
    free(tt);
}

/* Byte i of a token's trie key. */
static inline unsigned key_at(const TokenTrie *tt, int id, int i) {
    return i == 0 && tt->lead[id] ? KEY_LEAD_SPACE : tt->bytes[tt->off[id] + (size_t)i];
}

static int tok_cmp(const void *a, const void *b, void *arg) {
    const TokenTrie *tt = arg;
    int x = *(const int *)a, y = *(const int *)b;
    size_t lx = tt->len[x], ly = tt->len[y], n = lx < ly ? lx : ly;
    if (n > 0 && key_at(tt, x, 0) != key_at(tt, y, 0)) return key_at(tt, x, 0) < key_at(tt, y, 0) ? -1 : 1;
    int c = n > 1 ? memcmp(tt->bytes + tt->off[x] + 1, tt->bytes + tt->off[y] + 1, n - 1) : 0;
    if (c) return c;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

TokenTrie *token_trie_new(const Tokenizer *t, Error *err) {
    const int V = tokenizer_n_vocab(t);
    TokenTrie *tt = calloc(1, sizeof *tt);
    int *order = NULL;
    if (!tt) goto oom;
    tt->n_vocab = V;
    tt->strip_space = tokenizer_drops_leading_space(t);
    tt->off = malloc((size_t)V * sizeof *tt->off);
    tt->len = calloc((size_t)V, sizeof *tt->len);
    tt->dup_next = malloc((size_t)V * sizeof *tt->dup_next);
    tt->lead = calloc((size_t)V, 1);
    order = malloc((size_t)V * sizeof *order);
    size_t total = 0;
    for (int i = 0; i < V; i++) {
        size_t n;
        tokenizer_piece(t, i, &n);
        total += n;
    }
    tt->bytes = malloc(total + 1);
    if (!tt->off || !tt->len || !tt->dup_next || !tt->lead || !order || !tt->bytes) goto oom;
    const bool bpe = tokenizer_is_bpe(t);
    size_t o = 0;
    int n_order = 0;
    for (int i = 0; i < V; i++) {
        size_t n;
        const char *pc = tokenizer_piece(t, i, &n);
        int type = tokenizer_type(t, i);
        tt->off[i] = (uint32_t)o;
        tt->dup_next[i] = -1;
        if (!pc || type == TOKEN_CONTROL || type == TOKEN_UNKNOWN || type == TOKEN_UNUSED) continue;
        size_t start = o;
        unsigned v;
        if (type == TOKEN_BYTE && !bpe) {
            if (n == 6 && pc[0] == '<' && pc[1] == '0' && pc[2] == 'x' && pc[5] == '>' && sscanf(pc + 3, "%2X", &v) == 1)
                tt->bytes[o++] = (unsigned char)v;
        } else if (bpe) {
            memcpy(tt->bytes + o, pc, n);
            o += n;
        } else {
            tt->lead[i] = n >= 3 && (unsigned char)pc[0] == 0xE2 && (unsigned char)pc[1] == 0x96 &&
                          (unsigned char)pc[2] == 0x81;
            for (size_t k = 0; k < n;) {
                if (k + 3 <= n && (unsigned char)pc[k] == 0xE2 && (unsigned char)pc[k + 1] == 0x96 &&
                    (unsigned char)pc[k + 2] == 0x81)
                    tt->bytes[o++] = ' ', k += 3;
                else tt->bytes[o++] = (unsigned char)pc[k++];
            }
        }
        if (o - start > MAX_TOKEN_BYTES) o = start; /* never allowed */
        tt->len[i] = (uint16_t)(o - start);
        if (tt->len[i]) order[n_order++] = i;
        if (tt->len[i] > tt->max_len) tt->max_len = tt->len[i];
    }
    qsort_r(order, (size_t)n_order, sizeof *order, tok_cmp, tt);
    /* nodes: at most one per byte of every token */
    size_t cap = 1;
    for (int i = 0; i < n_order; i++) cap += tt->len[order[i]];
    tt->nodes = malloc(cap * sizeof *tt->nodes);
    int *path = malloc(((size_t)tt->max_len + 1) * sizeof *path); /* node index at each depth */
    if (!tt->nodes || !path) {
        free(path);
        goto oom;
    }
    int n_nodes = 0, plen = 0, prev = -1;
    for (int k = 0; k < n_order; k++) {
        int id = order[k];
        int L = tt->len[id];
        int common = 0;
        if (prev >= 0) {
            int pl = tt->len[prev];
            while (common < pl && common < L && key_at(tt, prev, common) == key_at(tt, id, common)) common++;
            if (common == L && pl == L) { /* same bytes: chain it */
                int h = tt->nodes[path[L - 1]].tok;
                while (tt->dup_next[h] >= 0) h = tt->dup_next[h];
                tt->dup_next[h] = id;
                continue;
            }
        }
        while (plen > common) { /* close nodes deeper than the shared prefix */
            plen--;
            tt->nodes[path[plen]].next = (uint32_t)n_nodes;
        }
        for (int d = common; d < L; d++) {
            TrieNode *nd = &tt->nodes[n_nodes];
            nd->byte = (uint16_t)key_at(tt, id, d);
            nd->depth = (uint16_t)(d + 1);
            nd->tok = d == L - 1 ? id : -1;
            path[plen++] = n_nodes++;
        }
        prev = id;
    }
    while (plen > 0) {
        plen--;
        tt->nodes[path[plen]].next = (uint32_t)n_nodes;
    }
    free(path);
    free(order);
    tt->n_nodes = n_nodes;
    return tt;
oom:
    free(order);
    token_trie_free(tt);
    err_set(err, "grammar: out of memory building the token trie");
    return NULL;
}

/* ---- frames and states ------------------------------------------------- */

typedef struct {
    int32_t pos, parent, hnext;
} Frame;

typedef struct {
    int32_t *v;
    int n, cap;
} IVec;

static int ivec_push(IVec *a, int32_t x) {
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 16;
        int32_t *v = realloc(a->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        a->v = v, a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

typedef struct {
    uint32_t off;   /* tops: st_data[off .. off + len) */
    uint32_t len;
    uint32_t hash;
    bool can_end;
    ByteSet uni;    /* bytes any top accepts */
} State;

typedef struct {
    uint32_t key;   /* state * 256 + byte, + 1 (0 = empty slot) */
    int32_t to;
} Trans;

struct GrammarMatcher {
    const Grammar *g;
    const TokenTrie *tt;
    int *end_tok;
    int n_end;
    /* frames */
    Frame *fr;
    int n_fr, cap_fr;
    int32_t *bucket;
    uint32_t nb;
    uint32_t *stamp;
    uint32_t gen;
    /* states */
    State *st;
    int n_st, cap_st;
    IVec st_data;
    int32_t *sbucket;  /* open addressing over states */
    uint32_t nsb;
    Trans *tr;
    uint32_t ntr, n_trans;
    int cur;
    bool at_start;
    bool failed;
    long budget;       /* expansion steps left for the current operation */
    IVec work, tmp;
    int32_t *dst;      /* state per trie depth */
    uint64_t *allowed;
};

static inline uint32_t fhash(int32_t pos, int32_t parent) {
    uint32_t h = (uint32_t)pos * 0x9E3779B1u ^ (uint32_t)(parent + 1) * 0x85EBCA77u;
    return h ^ (h >> 15);
}

static int rehash(GrammarMatcher *m, uint32_t nb) {
    int32_t *b = malloc((size_t)nb * sizeof *b);
    if (!b) return -1;
    for (uint32_t i = 0; i < nb; i++) b[i] = -1;
    free(m->bucket);
    m->bucket = b, m->nb = nb;
    for (int i = 1; i < m->n_fr; i++) {
        uint32_t h = fhash(m->fr[i].pos, m->fr[i].parent) & (nb - 1);
        m->fr[i].hnext = b[h];
        b[h] = i;
    }
    return 0;
}

static int32_t intern(GrammarMatcher *m, int32_t pos, int32_t parent) {
    uint32_t h = fhash(pos, parent) & (m->nb - 1);
    for (int32_t i = m->bucket[h]; i >= 0; i = m->fr[i].hnext)
        if (m->fr[i].pos == pos && m->fr[i].parent == parent) return i;
    if (m->n_fr == m->cap_fr) {
        int cap = m->cap_fr * 2;
        Frame *f = realloc(m->fr, (size_t)cap * sizeof *f);
        if (!f) return -1;
        m->fr = f;
        uint32_t *st = realloc(m->stamp, (size_t)cap * sizeof *st);
        if (!st) return -1;
        memset(st + m->cap_fr, 0, (size_t)(cap - m->cap_fr) * sizeof *st);
        m->stamp = st;
        m->cap_fr = cap;
    }
    int32_t id = m->n_fr++;
    m->fr[id].pos = pos, m->fr[id].parent = parent;
    m->fr[id].hnext = m->bucket[h];
    m->bucket[h] = id;
    if ((uint32_t)m->n_fr > m->nb && rehash(m, m->nb * 2)) return -1;
    return id;
}

static void new_gen(GrammarMatcher *m) {
    if (++m->gen == 0) {
        memset(m->stamp, 0, (size_t)m->cap_fr * sizeof *m->stamp);
        m->gen = 1;
    }
}

static int add_top(GrammarMatcher *m, IVec *out, int32_t t) {
    if (m->stamp[t] == m->gen) return 0;
    m->stamp[t] = m->gen;
    if (out->n >= MAX_STACKS) return -1;
    return ivec_push(out, t);
}

/* Expands (pos, parent) to stacks whose top is a byte set (added to out). */
static int expand(GrammarMatcher *m, int32_t pos0, int32_t parent0, IVec *out) {
    const Grammar *g = m->g;
    IVec *w = &m->work;
    w->n = 0;
    if (ivec_push(w, pos0) || ivec_push(w, parent0)) return -1;
    long steps = 0;
    while (w->n) {
        int32_t par = w->v[--w->n], pos = w->v[--w->n];
        for (;;) {
            if (++steps > MAX_EXPAND || --m->budget < 0) return -1;
            const Elem *e = &g->el[pos];
            if (e->type == EL_END) {
                if (par < 0) {
                    if (add_top(m, out, 0)) return -1;
                    break;
                }
                pos = m->fr[par].pos;
                par = m->fr[par].parent;
                continue;
            }
            if (e->type == EL_SET) {
                int32_t t = intern(m, pos, par);
                if (t < 0 || add_top(m, out, t)) return -1;
                break;
            }
            int32_t ret = par;
            if (g->el[pos + 1].type != EL_END && (ret = intern(m, pos + 1, par)) < 0) return -1;
            const int r = e->arg;
            for (int a = g->rule_alt0[r + 1] - 1; a >= g->rule_alt0[r]; a--)
                if (ivec_push(w, g->alt_start[a]) || ivec_push(w, ret)) return -1;
            break;
        }
    }
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static void sort_tops(int32_t *v, int n) {
    if (n > 32) {
        qsort(v, (size_t)n, sizeof *v, cmp_i32);
        return;
    }
    for (int i = 1; i < n; i++) {
        int32_t x = v[i];
        int j = i;
        while (j > 0 && v[j - 1] > x) v[j] = v[j - 1], j--;
        v[j] = x;
    }
}

static uint32_t tops_hash(const int32_t *v, int n) {
    uint32_t h = 2166136261u ^ (uint32_t)n;
    for (int i = 0; i < n; i++) h = (h ^ (uint32_t)v[i]) * 16777619u;
    return h ? h : 1;
}

static int state_rehash(GrammarMatcher *m, uint32_t nsb) {
    int32_t *b = malloc((size_t)nsb * sizeof *b);
    if (!b) return -1;
    for (uint32_t i = 0; i < nsb; i++) b[i] = -1;
    for (int s = 1; s < m->n_st; s++) {
        uint32_t h = m->st[s].hash & (nsb - 1);
        while (b[h] >= 0) h = (h + 1) & (nsb - 1);
        b[h] = s;
    }
    free(m->sbucket);
    m->sbucket = b, m->nsb = nsb;
    return 0;
}

/* The state of a sorted set of tops (n > 0); -1 on OOM. */
static int state_intern(GrammarMatcher *m, const int32_t *v, int n) {
    const uint32_t hv = tops_hash(v, n);
    uint32_t h = hv & (m->nsb - 1);
    while (m->sbucket[h] >= 0) {
        const State *s = &m->st[m->sbucket[h]];
        if (s->hash == hv && s->len == (uint32_t)n && !memcmp(m->st_data.v + s->off, v, (size_t)n * sizeof *v))
            return m->sbucket[h];
        h = (h + 1) & (m->nsb - 1);
    }
    if (m->n_st == m->cap_st) {
        int cap = m->cap_st * 2;
        State *t = realloc(m->st, (size_t)cap * sizeof *t);
        if (!t) return -1;
        m->st = t, m->cap_st = cap;
    }
    const int id = m->n_st;
    State *s = &m->st[id];
    s->off = (uint32_t)m->st_data.n;
    s->len = (uint32_t)n;
    s->hash = hv;
    s->can_end = false;
    memset(&s->uni, 0, sizeof s->uni);
    for (int i = 0; i < n; i++) {
        if (ivec_push(&m->st_data, v[i])) return -1;
        if (v[i] == 0) {
            s->can_end = true;
            continue;
        }
        const ByteSet *bs = &m->g->sets[m->g->el[m->fr[v[i]].pos].arg];
        for (int k = 0; k < 4; k++) s->uni.w[k] |= bs->w[k];
    }
    m->n_st++;
    m->sbucket[h] = id;
    if ((uint32_t)m->n_st * 2 > m->nsb && state_rehash(m, m->nsb * 2)) return -1;
    return id;
}

static int trans_grow(GrammarMatcher *m) {
    uint32_t n = m->ntr ? m->ntr * 2 : 4096;
    Trans *t = calloc(n, sizeof *t);
    if (!t) return -1;
    for (uint32_t i = 0; i < m->ntr; i++) {
        if (!m->tr[i].key) continue;
        uint32_t h = (m->tr[i].key * 0x9E3779B1u) & (n - 1);
        while (t[h].key) h = (h + 1) & (n - 1);
        t[h] = m->tr[i];
    }
    free(m->tr);
    m->tr = t, m->ntr = n;
    return 0;
}

/* The state after byte b from state s: 0 = dead, -1 = limit or OOM. */
static int step(GrammarMatcher *m, int s, unsigned b) {
    if (s == 0 || !set_has(&m->st[s].uni, b)) return 0;
    const uint32_t key = (uint32_t)s * 256u + b + 1u;
    uint32_t h = (key * 0x9E3779B1u) & (m->ntr - 1);
    while (m->tr[h].key) {
        if (m->tr[h].key == key) return m->tr[h].to;
        h = (h + 1) & (m->ntr - 1);
    }
    IVec *out = &m->tmp;
    out->n = 0;
    new_gen(m);
    for (uint32_t i = 0; i < m->st[s].len; i++) {
        int32_t t = m->st_data.v[m->st[s].off + i];
        if (t == 0) continue;
        const Frame f = m->fr[t];
        if (!set_has(&m->g->sets[m->g->el[f.pos].arg], b)) continue;
        if (expand(m, f.pos + 1, f.parent, out)) return -1;
    }
    int to = 0;
    if (out->n) {
        sort_tops(out->v, out->n);
        if ((to = state_intern(m, out->v, out->n)) < 0) return -1;
    }
    if ((m->n_trans + 1) * 2 > m->ntr) {
        if (trans_grow(m)) return -1;
        h = (key * 0x9E3779B1u) & (m->ntr - 1);
        while (m->tr[h].key) h = (h + 1) & (m->ntr - 1);
    }
    m->tr[h].key = key;
    m->tr[h].to = to;
    m->n_trans++;
    return to;
}

/* Drops every frame, state and transition not reachable from the current
 * state (between tokens, when the tables have grown past their limits). */
static int compact(GrammarMatcher *m) {
    Frame *old = m->fr;
    const int n_old = m->n_fr;
    IVec tops = {0}, chain = {0};
    int32_t *map = malloc((size_t)n_old * sizeof *map);
    Frame *nf = malloc((size_t)m->cap_fr * sizeof *nf);
    int rc = 0;
    if (!map || !nf) rc = -1;
    for (uint32_t i = 0; !rc && i < m->st[m->cur].len; i++)
        if (ivec_push(&tops, m->st_data.v[m->st[m->cur].off + i])) rc = -1;
    if (rc) {
        free(map);
        free(nf);
        free(tops.v);
        return -1;
    }
    for (int i = 0; i < n_old; i++) map[i] = -1;
    map[0] = 0;
    m->fr = nf;
    m->n_fr = 1;
    m->fr[0] = old[0];
    for (uint32_t i = 0; i < m->nb; i++) m->bucket[i] = -1;
    for (int i = 0; i < tops.n && !rc; i++) {
        chain.n = 0;
        for (int32_t t = tops.v[i]; t > 0 && map[t] < 0; t = old[t].parent)
            if (ivec_push(&chain, t)) {
                rc = -1;
                break;
            }
        for (int k = chain.n - 1; k >= 0 && !rc; k--) {
            int32_t o = chain.v[k];
            int32_t id = intern(m, old[o].pos, old[o].parent < 0 ? -1 : map[old[o].parent]);
            if (id < 0) rc = -1;
            else map[o] = id;
        }
        if (!rc) tops.v[i] = map[tops.v[i]];
    }
    free(chain.v);
    free(map);
    free(old);
    /* states: start again from the current one */
    m->n_st = 1;
    m->st_data.n = 0;
    for (uint32_t i = 0; i < m->nsb; i++) m->sbucket[i] = -1;
    memset(m->tr, 0, (size_t)m->ntr * sizeof *m->tr);
    m->n_trans = 0;
    if (!rc) {
        sort_tops(tops.v, tops.n);
        m->cur = state_intern(m, tops.v, tops.n);
        if (m->cur < 0) rc = -1;
    }
    free(tops.v);
    return rc;
}

void grammar_matcher_free(GrammarMatcher *m) {
    if (!m) return;
    free(m->end_tok);
    free(m->fr);
    free(m->bucket);
    free(m->stamp);
    free(m->st);
    free(m->st_data.v);
    free(m->sbucket);
    free(m->tr);
    free(m->work.v);
    free(m->tmp.v);
    free(m->dst);
    free(m->allowed);
    free(m);
}

GrammarMatcher *grammar_matcher_new(const Grammar *g, const TokenTrie *tt, const int *end_tokens, int n_end,
                                    Error *err) {
    GrammarMatcher *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->g = g, m->tt = tt;
    m->cap_fr = 1024;
    m->fr = malloc((size_t)m->cap_fr * sizeof *m->fr);
    m->stamp = calloc((size_t)m->cap_fr, sizeof *m->stamp);
    m->cap_st = 256;
    m->st = malloc((size_t)m->cap_st * sizeof *m->st);
    if (!m->fr || !m->stamp || !m->st) goto oom;
    m->n_fr = 1; /* frame 0: "may end here" */
    m->fr[0] = (Frame){-1, -1, -1};
    m->n_st = 1; /* state 0: dead */
    memset(&m->st[0], 0, sizeof m->st[0]);
    if (rehash(m, 2048) || state_rehash(m, 1024) || trans_grow(m)) goto oom;
    if (n_end > 0) {
        m->end_tok = malloc((size_t)n_end * sizeof *m->end_tok);
        if (!m->end_tok) goto oom;
        memcpy(m->end_tok, end_tokens, (size_t)n_end * sizeof *m->end_tok);
        m->n_end = n_end;
    }
    if (tt) {
        m->dst = calloc((size_t)tt->max_len + 1, sizeof *m->dst);
        m->allowed = calloc(((size_t)tt->n_vocab + 63) / 64, sizeof *m->allowed);
        if (!m->dst || !m->allowed) goto oom;
        m->at_start = tt->strip_space;
    }
    new_gen(m);
    IVec *out = &m->tmp;
    out->n = 0;
    m->budget = MAX_WORK;
    const int r = g->root;
    for (int a = g->rule_alt0[r]; a < g->rule_alt0[r + 1]; a++)
        if (expand(m, g->alt_start[a], -1, out)) {
            grammar_matcher_free(m);
            err_set(err, "grammar: too ambiguous at the start (over %d parser stacks or its work limit)", MAX_STACKS);
            return NULL;
        }
    sort_tops(out->v, out->n);
    m->cur = out->n ? state_intern(m, out->v, out->n) : 0;
    if (m->cur < 0) goto oom;
    return m;
oom:
    grammar_matcher_free(m);
    err_set(err, "grammar: out of memory");
    return NULL;
}

int grammar_matcher_n_vocab(const GrammarMatcher *m) { return m && m->tt ? m->tt->n_vocab : 0; }

bool grammar_matcher_can_end(const GrammarMatcher *m) { return m->cur > 0 && m->st[m->cur].can_end; }

bool grammar_matcher_must_end(const GrammarMatcher *m) {
    return m->cur > 0 && m->st[m->cur].len == 1 && m->st_data.v[m->st[m->cur].off] == 0;
}

static bool is_end_token(const GrammarMatcher *m, int tok) {
    for (int i = 0; i < m->n_end; i++)
        if (m->end_tok[i] == tok) return true;
    return false;
}

/* The state after bytes b[0..n) from the current one (a leading space
 * skipped with strip): 0 dead, -1 limit. */
static int run_bytes(GrammarMatcher *m, const unsigned char *b, size_t n, bool strip) {
    int s = m->cur;
    m->budget = MAX_WORK;
    for (size_t i = 0; i < n && s > 0; i++) {
        if (i == 0 && strip && b[0] == ' ') continue; /* the decoder drops it */
        s = step(m, s, b[i]);
    }
    return s;
}

bool grammar_matcher_allows(GrammarMatcher *m, int tok) {
    if (!m->tt || tok < 0 || tok >= m->tt->n_vocab || m->failed) return false;
    if (is_end_token(m, tok)) return grammar_matcher_can_end(m);
    int L = m->tt->len[tok];
    if (L == 0) return false;
    int s = run_bytes(m, m->tt->bytes + m->tt->off[tok], (size_t)L, m->at_start && m->tt->lead[tok]);
    if (s < 0) m->failed = true;
    return s > 0;
}

static int commit(GrammarMatcher *m, int s, Error *err) {
    m->cur = s;
    m->at_start = false;
    if ((m->n_fr > COMPACT_FRAMES || m->n_st > COMPACT_STATES) && compact(m)) {
        m->failed = true;
        return err_set(err, "grammar: out of memory");
    }
    return 0;
}

static int step_error(GrammarMatcher *m, int s, Error *err, const char *what) {
    if (s < 0) {
        m->failed = true;
        return err_set(err, "grammar: too ambiguous (over %d parser stacks or its work limit) or out of memory", MAX_STACKS);
    }
    return err_set(err, "grammar: %s", what);
}

int grammar_matcher_accept(GrammarMatcher *m, int tok, Error *err) {
    if (m->failed) return err_set(err, "grammar: matcher failed earlier");
    if (!m->tt || tok < 0 || tok >= m->tt->n_vocab) return err_set(err, "grammar: token %d out of range", tok);
    if (is_end_token(m, tok)) {
        if (!grammar_matcher_can_end(m)) return err_set(err, "grammar: end of text before the grammar is complete");
        return 0;
    }
    int L = m->tt->len[tok];
    if (L == 0) return err_set(err, "grammar: token %d has no text", tok);
    int s = run_bytes(m, m->tt->bytes + m->tt->off[tok], (size_t)L, m->at_start && m->tt->lead[tok]);
    if (s <= 0) return step_error(m, s, err, "token not allowed here");
    return commit(m, s, err);
}

int grammar_matcher_accept_bytes(GrammarMatcher *m, const char *str, size_t n, Error *err) {
    if (m->failed) return err_set(err, "grammar: matcher failed earlier");
    if (n == 0) return 0;
    int s = run_bytes(m, (const unsigned char *)str, n, false);
    if (s <= 0) return step_error(m, s, err, "input rejected");
    return commit(m, s, err);
}

int grammar_matcher_mask(GrammarMatcher *m, float *logits) {
    const TokenTrie *tt = m->tt;
    if (!tt || m->failed) return -1;
    const int V = tt->n_vocab;
    memset(m->allowed, 0, ((size_t)V + 63) / 64 * sizeof *m->allowed);
    const TrieNode *nodes = tt->nodes;
    int32_t *dst = m->dst;
    dst[0] = m->cur;
    m->budget = MAX_WORK;
    for (uint32_t i = 0; i < (uint32_t)tt->n_nodes;) {
        const TrieNode *nd = &nodes[i];
        const int d = nd->depth;
        const int ps = dst[d - 1];
        int s;
        if (nd->byte == KEY_LEAD_SPACE) s = m->at_start ? ps : step(m, ps, ' '); /* the decoder drops it at the start */
        else s = step(m, ps, nd->byte);
        if (s <= 0) {
            if (s < 0) {
                m->failed = true;
                return -1;
            }
            i = nd->next;
            continue;
        }
        dst[d] = s;
        for (int32_t t = nd->tok; t >= 0; t = tt->dup_next[t]) m->allowed[t >> 6] |= 1ull << (t & 63);
        i++;
    }
    const bool can_end = grammar_matcher_can_end(m);
    for (int k = 0; k < m->n_end; k++) {
        int t = m->end_tok[k];
        if (t < 0 || t >= V) continue;
        if (can_end) m->allowed[t >> 6] |= 1ull << (t & 63);
        else m->allowed[t >> 6] &= ~(1ull << (t & 63));
    }
    int n_allowed = 0;
    for (int t = 0; t < V; t++) {
        if ((m->allowed[t >> 6] >> (t & 63)) & 1) n_allowed++;
        else logits[t] = -INFINITY;
    }
    return n_allowed;
}

bool grammar_filter_allows(void *ctx, int tok) {
    GrammarFilter *f = ctx;
    const double t0 = time_now();
    bool ok = grammar_matcher_allows(f->gm, tok);
    f->seconds += time_now() - t0;
    return ok;
}

int grammar_filter_mask(void *ctx, float *logits) {
    GrammarFilter *f = ctx;
    const double t0 = time_now();
    f->n_masks++;
    int n = grammar_matcher_mask(f->gm, logits);
    for (int t = grammar_matcher_n_vocab(f->gm); t < f->n_vocab; t++) logits[t] = -INFINITY;
    f->seconds += time_now() - t0;
    return n;
}

int grammar_match_string(const Grammar *g, const char *s, size_t n, Error *err) {
    GrammarMatcher *m = grammar_matcher_new(g, NULL, NULL, 0, err);
    if (!m) return -1;
    int rc;
    if (grammar_matcher_accept_bytes(m, s, n, err) < 0) rc = m->failed ? -1 : 0;
    else rc = grammar_matcher_can_end(m) ? 1 : 0;
    grammar_matcher_free(m);
    return rc;
}
