/* grammar.c - see grammar.h: the GBNF parser and compiler (the matcher and
 * token trie are in grammar_matcher.c).
 *
 * Compiled form: every rule is a list of alternatives; an alternative is a
 * run of elements ending in END. An element is a byte set (256 bits) or a
 * reference to a rule. Character classes and literals are turned into byte
 * sets over their UTF-8 encodings; repetitions into helper rules as llama.cpp
 * does (x* -> R ::= x R | ; x{m,n} -> m copies then nested optionals). */
#include "grammar.h"
#include "grammar_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ELEMS (4 << 20) /* compiled grammar size */
#define MAX_REPEAT 100000   /* m and n in x{m,n} */
#define MAX_NEST 256        /* ( ) nesting in the source */

typedef struct {
    Elem *v;
    int n, cap;
} Seq;

typedef struct {
    Seq *alts;
    int n_alts, cap_alts;
    char *name;
    bool defined;
    const char *ref_at; /* first reference, for "undefined rule" */
} RuleB;

int grammar_n_rules(const Grammar *g) { return g ? g->n_rules : 0; }

/* ---- parser ------------------------------------------------------------ */

typedef struct {
    const char *src, *end;
    RuleB *rules;
    int n_rules, cap_rules;
    ByteSet *sets;
    int n_sets, cap_sets;
    int single[256]; /* set id of each one-byte set, -1 */
    int *htab;       /* named rules, open addressing */
    uint32_t hcap;
    int n_named;
    long n_elems;
    int nest;
    Error *err;
    bool failed;
} P;

static void loc(const P *p, const char *at, int *line, int *col) {
    int l = 1, c = 1;
    for (const char *q = p->src; q < at && q < p->end; q++) {
        if (*q == '\n') l++, c = 1;
        else if (((unsigned char)*q & 0xC0) != 0x80) c++;
    }
    *line = l, *col = c;
}

static int perr(P *p, const char *at, const char *fmt, const char *arg) {
    if (p->failed) return -1;
    int l, c;
    loc(p, at, &l, &c);
    char what[200];
    snprintf(what, sizeof what, fmt, arg ? arg : "");
    p->failed = true;
    return err_set(p->err, "grammar: line %d, column %d: %s", l, c, what);
}

static int oom(P *p) {
    if (!p->failed) err_set(p->err, "grammar: out of memory");
    p->failed = true;
    return -1;
}

static int seq_push(P *p, Seq *s, int type, int arg) {
    if (++p->n_elems > MAX_ELEMS) {
        if (!p->failed) err_set(p->err, "grammar: too large (over %d elements after expanding repetitions)", MAX_ELEMS);
        p->failed = true;
        return -1;
    }
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 8;
        Elem *v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return oom(p);
        s->v = v, s->cap = cap;
    }
    s->v[s->n].type = type;
    s->v[s->n].arg = arg;
    s->n++;
    return 0;
}

/* Adds an alternative (takes the sequence's storage). */
static int rule_add_alt(P *p, int r, Seq *s) {
    RuleB *rb = &p->rules[r];
    if (rb->n_alts == rb->cap_alts) {
        int cap = rb->cap_alts ? 2 * rb->cap_alts : 4;
        Seq *a = realloc(rb->alts, (size_t)cap * sizeof *a);
        if (!a) {
            free(s->v);
            *s = (Seq){0};
            return oom(p);
        }
        rb->alts = a, rb->cap_alts = cap;
    }
    rb->alts[rb->n_alts++] = *s;
    *s = (Seq){0};
    return 0;
}

static int rule_new(P *p, const char *name, size_t len) {
    if (p->n_rules == p->cap_rules) {
        int cap = p->cap_rules ? 2 * p->cap_rules : 32;
        RuleB *r = realloc(p->rules, (size_t)cap * sizeof *r);
        if (!r) return oom(p);
        p->rules = r, p->cap_rules = cap;
    }
    RuleB *rb = &p->rules[p->n_rules];
    memset(rb, 0, sizeof *rb);
    rb->name = malloc(len + 1);
    if (!rb->name) return oom(p);
    memcpy(rb->name, name, len);
    rb->name[len] = 0;
    return p->n_rules++;
}

static int rule_anon(P *p, int parent) {
    char nm[300];
    snprintf(nm, sizeof nm, "%.200s~%d", parent >= 0 ? p->rules[parent].name : "anon", p->n_rules);
    int r = rule_new(p, nm, strlen(nm));
    if (r >= 0) p->rules[r].defined = true;
    return r;
}

static uint32_t name_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* The rule of a name (made on first sight); named rules are hashed. */
static int rule_find(P *p, const char *name, size_t len) {
    if (p->n_named * 2 >= (int)p->hcap) {
        uint32_t cap = p->hcap ? p->hcap * 2 : 256;
        int *t = malloc(cap * sizeof *t);
        if (!t) return oom(p);
        for (uint32_t i = 0; i < cap; i++) t[i] = -1;
        for (uint32_t i = 0; i < p->hcap; i++)
            if (p->htab[i] >= 0) {
                const char *nm = p->rules[p->htab[i]].name;
                uint32_t h = name_hash(nm, strlen(nm)) & (cap - 1);
                while (t[h] >= 0) h = (h + 1) & (cap - 1);
                t[h] = p->htab[i];
            }
        free(p->htab);
        p->htab = t, p->hcap = cap;
    }
    uint32_t h = name_hash(name, len) & (p->hcap - 1);
    while (p->htab[h] >= 0) {
        const char *nm = p->rules[p->htab[h]].name;
        if (strlen(nm) == len && !memcmp(nm, name, len)) return p->htab[h];
        h = (h + 1) & (p->hcap - 1);
    }
    int r = rule_new(p, name, len);
    if (r < 0) return -1;
    p->htab[h] = r;
    p->n_named++;
    return r;
}

static int set_new(P *p, const ByteSet *s) {
    if (p->n_sets == p->cap_sets) {
        int cap = p->cap_sets ? 2 * p->cap_sets : 64;
        ByteSet *v = realloc(p->sets, (size_t)cap * sizeof *v);
        if (!v) return oom(p);
        p->sets = v, p->cap_sets = cap;
    }
    p->sets[p->n_sets] = *s;
    return p->n_sets++;
}

static int set_byte(P *p, unsigned b) {
    if (p->single[b] >= 0) return p->single[b];
    ByteSet s = {{0}};
    set_add(&s, b);
    int id = set_new(p, &s);
    if (id >= 0) p->single[b] = id;
    return id;
}

static int set_range(P *p, unsigned lo, unsigned hi) {
    if (lo == hi) return set_byte(p, lo);
    ByteSet s = {{0}};
    for (unsigned b = lo; b <= hi; b++) set_add(&s, b);
    return set_new(p, &s);
}

static bool is_word(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static const char *skip_space(const char *s, const char *end, bool newline_ok) {
    while (s < end) {
        if (*s == ' ' || *s == '\t') s++;
        else if (*s == '#') {
            while (s < end && *s != '\n' && *s != '\r') s++;
        } else if (newline_ok && (*s == '\n' || *s == '\r')) s++;
        else break;
    }
    return s;
}

static int utf8_encode(uint32_t c, unsigned char *o) {
    if (c < 0x80) return o[0] = (unsigned char)c, 1;
    if (c < 0x800) return o[0] = (unsigned char)(0xC0 | (c >> 6)), o[1] = (unsigned char)(0x80 | (c & 63)), 2;
    if (c < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (c >> 12));
        o[1] = (unsigned char)(0x80 | ((c >> 6) & 63));
        o[2] = (unsigned char)(0x80 | (c & 63));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (c >> 18));
    o[1] = (unsigned char)(0x80 | ((c >> 12) & 63));
    o[2] = (unsigned char)(0x80 | ((c >> 6) & 63));
    o[3] = (unsigned char)(0x80 | (c & 63));
    return 4;
}

/* One UTF-8 character of the source; -1 if invalid. */
static long utf8_decode(const char **ps, const char *end) {
    const unsigned char *s = (const unsigned char *)*ps;
    unsigned c = s[0];
    int n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!n || (const char *)s + n > end) return -1;
    uint32_t v = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return -1;
        v = (v << 6) | (s[i] & 63);
    }
    *ps += n;
    return (long)v;
}

/* A character of a literal or class, with llama.cpp's escapes. */
static long parse_char(P *p, const char **ps) {
    const char *s = *ps;
    if (s >= p->end) return perr(p, s, "unexpected end of input%s", NULL), -1;
    if (*s == '\\') {
        if (s + 1 >= p->end) return perr(p, s, "unexpected end of input after '\\'%s", NULL), -1;
        char e = s[1];
        int nhex = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (nhex) {
            uint32_t v = 0;
            const char *q = s + 2;
            for (int i = 0; i < nhex; i++, q++) {
                if (q >= p->end) return perr(p, q, "expecting %s", "a hex digit"), -1;
                char h = *q;
                int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                if (d < 0) return perr(p, q, "expecting %s", "a hex digit"), -1;
                v = v * 16 + (uint32_t)d;
            }
            if (v > 0x10FFFF) return perr(p, s, "code point out of range%s", NULL), -1;
            *ps = q;
            return (long)v;
        }
        long v;
        switch (e) {
        case 't': v = '\t'; break;
        case 'r': v = '\r'; break;
        case 'n': v = '\n'; break;
        case '\\': case '"': case '[': case ']': case '-': case '^': case '/': v = e; break;
        default: {
            char t[2] = {e, 0};
            return perr(p, s, "unknown escape '\\%s'", t), -1;
        }
        }
        *ps = s + 2;
        return v;
    }
    long v = utf8_decode(ps, p->end);
    if (v < 0) return perr(p, s, "invalid UTF-8%s", NULL), -1;
    return v;
}

/* Appends the bytes of one code point as elements. */
static int push_codepoint(P *p, Seq *s, uint32_t c) {
    unsigned char b[4];
    int n = utf8_encode(c, b);
    for (int i = 0; i < n; i++) {
        int id = set_byte(p, b[i]);
        if (id < 0 || seq_push(p, s, EL_SET, id)) return -1;
    }
    return 0;
}

typedef struct {
    uint32_t lo, hi;
} CRange;

static int crange_cmp(const void *a, const void *b) {
    const CRange *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Splits [lo, hi] (one encoding length, no surrogates) into runs of byte
 * ranges: each run is n ranges, one per byte. */
typedef struct {
    unsigned char lo[4], hi[4];
    int n;
} ByteRun;

typedef struct {
    ByteRun *v;
    int n, cap;
} RunVec;

static int run_push(RunVec *rv, const ByteRun *r) {
    if (rv->n == rv->cap) {
        int cap = rv->cap ? 2 * rv->cap : 16;
        ByteRun *v = realloc(rv->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        rv->v = v, rv->cap = cap;
    }
    rv->v[rv->n++] = *r;
    return 0;
}

static int utf8_split(uint32_t lo, uint32_t hi, RunVec *out, int depth) {
    if (lo > hi) return 0;
    if (depth > 64) return -1;
    static const uint32_t bounds[] = {0x7F, 0x7FF, 0xFFFF};
    for (int i = 0; i < 3; i++)
        if (lo <= bounds[i] && hi > bounds[i])
            return utf8_split(lo, bounds[i], out, depth + 1) || utf8_split(bounds[i] + 1, hi, out, depth + 1) ? -1 : 0;
    if (hi < 0x80) {
        ByteRun r = {{(unsigned char)lo}, {(unsigned char)hi}, 1};
        return run_push(out, &r);
    }
    int n = hi < 0x800 ? 2 : hi < 0x10000 ? 3 : 4;
    for (int i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0)
                return utf8_split(lo, lo | m, out, depth + 1) || utf8_split((lo | m) + 1, hi, out, depth + 1) ? -1 : 0;
            if ((hi & m) != m)
                return utf8_split(lo, (hi & ~m) - 1, out, depth + 1) || utf8_split(hi & ~m, hi, out, depth + 1) ? -1 : 0;
        }
    }
    ByteRun r;
    utf8_encode(lo, r.lo);
    utf8_encode(hi, r.hi);
    r.n = n;
    return run_push(out, &r);
}

/* A character class as elements: one byte set when it is all ASCII,
 * else a helper rule with one alternative per UTF-8 run. */
static int push_class(P *p, Seq *s, int parent, CRange *rg, int n, bool negated) {
    /* normalise: sort, merge, complement, drop surrogates */
    qsort(rg, (size_t)n, sizeof *rg, crange_cmp);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m && rg[i].lo <= rg[m - 1].hi + 1) {
            if (rg[i].hi > rg[m - 1].hi) rg[m - 1].hi = rg[i].hi;
        } else rg[m++] = rg[i];
    }
    CRange *fin = malloc(((size_t)m + 2) * 2 * sizeof *fin);
    if (!fin) return oom(p);
    int k = 0;
    if (negated) {
        uint32_t next = 0;
        for (int i = 0; i < m; i++) {
            if (rg[i].lo > next) fin[k++] = (CRange){next, rg[i].lo - 1};
            next = rg[i].hi + 1;
        }
        if (next <= 0x10FFFF) fin[k++] = (CRange){next, 0x10FFFF};
    } else {
        memcpy(fin, rg, (size_t)m * sizeof *fin);
        k = m;
    }
    int k2 = 0;
    CRange *fin2 = malloc(((size_t)k + 1) * 2 * sizeof *fin2);
    if (!fin2) {
        free(fin);
        return oom(p);
    }
    for (int i = 0; i < k; i++) { /* cut out U+D800..U+DFFF */
        if (fin[i].hi < 0xD800 || fin[i].lo > 0xDFFF) fin2[k2++] = fin[i];
        else {
            if (fin[i].lo < 0xD800) fin2[k2++] = (CRange){fin[i].lo, 0xD7FF};
            if (fin[i].hi > 0xDFFF) fin2[k2++] = (CRange){0xE000, fin[i].hi};
        }
    }
    free(fin);
    RunVec rv = {0};
    for (int i = 0; i < k2; i++)
        if (utf8_split(fin2[i].lo, fin2[i].hi, &rv, 0)) {
            free(fin2);
            free(rv.v);
            return oom(p);
        }
    free(fin2);
    /* the one-byte runs merge into one set */
    ByteSet ascii = {{0}};
    int n_ascii = 0, n_multi = 0;
    for (int i = 0; i < rv.n; i++) {
        if (rv.v[i].n == 1) {
            for (unsigned b = rv.v[i].lo[0]; b <= rv.v[i].hi[0]; b++) set_add(&ascii, b);
            n_ascii++;
        } else n_multi++;
    }
    int rc = 0;
    if (n_ascii + n_multi == 0) { /* matches nothing: an empty byte set */
        ByteSet none = {{0}};
        int id = set_new(p, &none);
        rc = id < 0 ? -1 : seq_push(p, s, EL_SET, id);
    } else if (n_multi == 0) {
        int id = set_new(p, &ascii);
        rc = id < 0 ? -1 : seq_push(p, s, EL_SET, id);
    } else {
        int r = rule_anon(p, parent);
        if (r < 0) rc = -1;
        if (!rc && n_ascii) {
            Seq a = {0};
            int id = set_new(p, &ascii);
            rc = id < 0 || seq_push(p, &a, EL_SET, id) || rule_add_alt(p, r, &a) ? -1 : 0;
            free(a.v);
        }
        for (int i = 0; i < rv.n && !rc; i++) {
            if (rv.v[i].n == 1) continue;
            Seq a = {0};
            for (int j = 0; j < rv.v[i].n && !rc; j++) {
                int id = set_range(p, rv.v[i].lo[j], rv.v[i].hi[j]);
                rc = id < 0 ? -1 : seq_push(p, &a, EL_SET, id);
            }
            if (!rc) rc = rule_add_alt(p, r, &a);
            free(a.v);
        }
        if (!rc) rc = seq_push(p, s, EL_RULE, r);
    }
    free(rv.v);
    return rc;
}

static const char *parse_alternates(P *p, const char *pos, int rule, bool nested);

/* Replaces elements [start, s->n) by the repetition {lo, hi} (hi < 0: no
 * upper bound). */
static int repeat(P *p, Seq *s, int start, int parent, long lo, long hi) {
    Elem x;
    int cnt = s->n - start;
    if (cnt == 1) x = s->v[start];
    else {
        int w = rule_anon(p, parent);
        if (w < 0) return -1;
        Seq a = {0};
        for (int i = start; i < s->n; i++)
            if (seq_push(p, &a, s->v[i].type, s->v[i].arg)) {
                free(a.v);
                return -1;
            }
        if (rule_add_alt(p, w, &a)) return -1;
        x.type = EL_RULE, x.arg = w;
    }
    s->n = start;
    for (long i = 0; i < lo; i++)
        if (seq_push(p, s, x.type, x.arg)) return -1;
    if (hi < 0) { /* R ::= x R | */
        int r = rule_anon(p, parent);
        if (r < 0) return -1;
        Seq a = {0}, e = {0};
        if (seq_push(p, &a, x.type, x.arg) || seq_push(p, &a, EL_RULE, r) || rule_add_alt(p, r, &a) ||
            rule_add_alt(p, r, &e)) {
            free(a.v);
            return -1;
        }
        return seq_push(p, s, EL_RULE, r);
    }
    int prev = -1; /* O_k ::= x O_{k-1} | */
    for (long k = 0; k < hi - lo; k++) {
        int r = rule_anon(p, parent);
        if (r < 0) return -1;
        Seq a = {0}, e = {0};
        if (seq_push(p, &a, x.type, x.arg) || (prev >= 0 && seq_push(p, &a, EL_RULE, prev)) || rule_add_alt(p, r, &a) ||
            rule_add_alt(p, r, &e)) {
            free(a.v);
            return -1;
        }
        prev = r;
    }
    return prev >= 0 ? seq_push(p, s, EL_RULE, prev) : 0;
}

static const char *parse_int(P *p, const char *pos, long *out) {
    const char *s = pos;
    long v = 0;
    while (pos < p->end && *pos >= '0' && *pos <= '9') {
        v = v * 10 + (*pos - '0');
        if (v > MAX_REPEAT) {
            perr(p, s, "repetition count too large (at most %s)", "100000");
            return NULL;
        }
        pos++;
    }
    if (pos == s) {
        perr(p, s, "expecting %s", "an integer");
        return NULL;
    }
    *out = v;
    return pos;
}

static const char *parse_sequence(P *p, const char *pos, int rule, bool nested, Seq *out) {
    int last_start = -1;
    while (pos < p->end && !p->failed) {
        const char *at = pos;
        char c = *pos;
        if (c == '"') {
            pos++;
            last_start = out->n;
            while (pos < p->end && *pos != '"') {
                long cp = parse_char(p, &pos);
                if (cp < 0 || push_codepoint(p, out, (uint32_t)cp)) return NULL;
            }
            if (pos >= p->end) return perr(p, at, "unterminated string literal%s", NULL), NULL;
            pos++;
            if (out->n == last_start) last_start = -1; /* "" is empty */
        } else if (c == '[') {
            pos++;
            bool neg = false;
            if (pos < p->end && *pos == '^') neg = true, pos++;
            CRange *rg = NULL;
            int n = 0, cap = 0;
            while (pos < p->end && *pos != ']') {
                long a = parse_char(p, &pos);
                if (a < 0) {
                    free(rg);
                    return NULL;
                }
                long b = a;
                if (pos + 1 < p->end && *pos == '-' && pos[1] != ']') {
                    pos++;
                    if ((b = parse_char(p, &pos)) < 0) {
                        free(rg);
                        return NULL;
                    }
                    if (b < a) {
                        free(rg);
                        return perr(p, at, "character range out of order%s", NULL), NULL;
                    }
                }
                if (n == cap) {
                    cap = cap ? 2 * cap : 8;
                    CRange *t = realloc(rg, (size_t)cap * sizeof *t);
                    if (!t) {
                        free(rg);
                        return oom(p), NULL;
                    }
                    rg = t;
                }
                rg[n++] = (CRange){(uint32_t)a, (uint32_t)b};
            }
            if (pos >= p->end) {
                free(rg);
                return perr(p, at, "unterminated character class%s", NULL), NULL;
            }
            pos++;
            last_start = out->n;
            int rc = push_class(p, out, rule, rg ? rg : (CRange[1]){{0, 0}}, n, neg);
            free(rg);
            if (rc) return NULL;
        } else if (c == '.') {
            pos++;
            last_start = out->n;
            CRange all = {0, 0x10FFFF};
            if (push_class(p, out, rule, &all, 1, false)) return NULL;
        } else if (is_word(c)) {
            const char *e = pos;
            while (e < p->end && is_word(*e)) e++;
            int r = rule_find(p, pos, (size_t)(e - pos));
            if (r < 0) return NULL;
            if (!p->rules[r].ref_at) p->rules[r].ref_at = pos;
            last_start = out->n;
            if (seq_push(p, out, EL_RULE, r)) return NULL;
            pos = e;
        } else if (c == '(') {
            if (++p->nest > MAX_NEST) return perr(p, at, "groups nested too deeply (over %s)", "256"), NULL;
            int r = rule_anon(p, rule);
            if (r < 0) return NULL;
            pos = parse_alternates(p, skip_space(pos + 1, p->end, true), r, true);
            if (!pos) return NULL;
            if (pos >= p->end || *pos != ')') return perr(p, pos, "expecting ')'%s", NULL), NULL;
            pos++;
            p->nest--;
            last_start = out->n;
            if (seq_push(p, out, EL_RULE, r)) return NULL;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (last_start < 0) return perr(p, at, "expecting something before '%s'", (char[2]){c, 0}), NULL;
            long lo, hi;
            pos++;
            if (c == '*') lo = 0, hi = -1;
            else if (c == '+') lo = 1, hi = -1;
            else if (c == '?') lo = 0, hi = 1;
            else {
                pos = skip_space(pos, p->end, nested);
                if (!(pos = parse_int(p, pos, &lo))) return NULL;
                pos = skip_space(pos, p->end, nested);
                hi = lo;
                if (pos < p->end && *pos == ',') {
                    pos = skip_space(pos + 1, p->end, nested);
                    if (pos < p->end && *pos == '}') hi = -1;
                    else if (!(pos = parse_int(p, pos, &hi))) return NULL;
                    pos = skip_space(pos, p->end, nested);
                }
                if (pos >= p->end || *pos != '}') return perr(p, pos, "expecting '}'%s", NULL), NULL;
                pos++;
                if (hi >= 0 && hi < lo) return perr(p, at, "repetition {m,n} with n < m%s", NULL), NULL;
            }
            if (repeat(p, out, last_start, rule, lo, hi)) return NULL;
            last_start = -1;
        } else if (c == '<') {
            return perr(p, at, "token references (<...>) are not supported%s", NULL), NULL;
        } else break;
        pos = skip_space(pos, p->end, nested);
    }
    return p->failed ? NULL : pos;
}

static const char *parse_alternates(P *p, const char *pos, int rule, bool nested) {
    for (;;) {
        Seq s = {0};
        pos = parse_sequence(p, pos, rule, nested, &s);
        if (!pos || rule_add_alt(p, rule, &s)) {
            free(s.v);
            return NULL;
        }
        if (pos < p->end && *pos == '|') {
            pos = skip_space(pos + 1, p->end, true);
            continue;
        }
        return pos;
    }
}

static void parser_free(P *p) {
    for (int i = 0; i < p->n_rules; i++) {
        for (int a = 0; a < p->rules[i].n_alts; a++) free(p->rules[i].alts[a].v);
        free(p->rules[i].alts);
        free(p->rules[i].name);
    }
    free(p->rules);
    free(p->sets);
    free(p->htab);
}

/* Nullable rules (worklist) and left recursion (iterative DFS). */
static int check_left_recursion(Grammar *g, P *p, Error *err) {
    const int R = g->n_rules;
    bool *nullable = calloc((size_t)R, 1);
    int *cnt = malloc((size_t)g->n_alts * sizeof *cnt), *alt_rule = malloc((size_t)g->n_alts * sizeof *alt_rule);
    int *occ0 = calloc((size_t)R + 1, sizeof *occ0), *occ = NULL, *queue = malloc((size_t)R * sizeof *queue);
    int *color = calloc((size_t)R, sizeof *color), *stk = malloc((size_t)R * 2 * sizeof *stk);
    int rc = -1;
    if (!nullable || !cnt || !alt_rule || !occ0 || !queue || !color || !stk) {
        err_set(err, "grammar: out of memory");
        goto out;
    }
    long n_occ = 0;
    for (int r = 0; r < R; r++)
        for (int a = g->rule_alt0[r]; a < g->rule_alt0[r + 1]; a++) {
            alt_rule[a] = r;
            int c = 0;
            for (int e = g->alt_start[a]; g->el[e].type != EL_END; e++) {
                if (g->el[e].type == EL_SET) c = 1 << 30;
                else c++, occ0[g->el[e].arg + 1]++, n_occ++;
            }
            cnt[a] = c;
        }
    for (int r = 0; r < R; r++) occ0[r + 1] += occ0[r];
    occ = malloc(((size_t)n_occ + 1) * sizeof *occ);
    int *fill = calloc((size_t)R, sizeof *fill);
    if (!occ || !fill) {
        free(fill);
        err_set(err, "grammar: out of memory");
        goto out;
    }
    for (int a = 0; a < g->n_alts; a++)
        for (int e = g->alt_start[a]; g->el[e].type != EL_END; e++)
            if (g->el[e].type == EL_RULE) {
                int b = g->el[e].arg;
                occ[occ0[b] + fill[b]++] = a;
            }
    free(fill);
    int qh = 0, qt = 0;
    for (int a = 0; a < g->n_alts; a++)
        if (cnt[a] == 0 && !nullable[alt_rule[a]]) nullable[alt_rule[a]] = true, queue[qt++] = alt_rule[a];
    while (qh < qt) {
        int b = queue[qh++];
        for (int k = occ0[b]; k < occ0[b + 1]; k++) {
            int a = occ[k];
            if (--cnt[a] == 0 && !nullable[alt_rule[a]]) nullable[alt_rule[a]] = true, queue[qt++] = alt_rule[a];
        }
    }
    /* DFS over "A may start with B" edges; stk holds (rule, next alt/elem cursor) */
    for (int r0 = 0; r0 < R; r0++) {
        if (color[r0]) continue;
        int sp = 0;
        stk[sp++] = r0;
        stk[sp++] = 0; /* cursor: flat index over (alt, elem) pairs via el index */
        color[r0] = 1;
        while (sp) {
            int r = stk[sp - 2];
            int cur = stk[sp - 1];
            /* cursor enumerates elements in r's alternatives: cur = el index, 0 = start */
            int found = -1;
            for (int a = g->rule_alt0[r]; a < g->rule_alt0[r + 1] && found < 0; a++) {
                for (int e = g->alt_start[a]; g->el[e].type == EL_RULE; e++) {
                    if (e >= cur) {
                        found = e;
                        break;
                    }
                    if (!nullable[g->el[e].arg]) break;
                }
            }
            if (found < 0) {
                color[r] = 2;
                sp -= 2;
                continue;
            }
            stk[sp - 1] = found + 1;
            int b = g->el[found].arg;
            if (color[b] == 1) {
                err_set(err, "grammar: left recursion in rule '%s' (through '%s')", p->rules[b].name, p->rules[r].name);
                goto out;
            }
            if (color[b] == 0) {
                color[b] = 1;
                stk[sp++] = b;
                stk[sp++] = 0;
            }
        }
    }
    rc = 0;
out:
    free(nullable);
    free(cnt);
    free(alt_rule);
    free(occ0);
    free(occ);
    free(queue);
    free(color);
    free(stk);
    return rc;
}

Grammar *grammar_parse(const char *text, size_t len, const char *root, Error *err) {
    if (!root) root = "root";
    if (!text) {
        err_set(err, "grammar: no text");
        return NULL;
    }
    P p;
    memset(&p, 0, sizeof p);
    p.src = text, p.end = text + len, p.err = err;
    for (int i = 0; i < 256; i++) p.single[i] = -1;
    Grammar *g = NULL;
    const char *nul = memchr(text, 0, len);
    if (nul) {
        perr(&p, nul, "NUL byte in grammar%s", NULL);
        goto fail;
    }
    const char *pos = skip_space(text, p.end, true);
    while (pos < p.end) {
        const char *ne = pos;
        while (ne < p.end && is_word(*ne)) ne++;
        if (ne == pos) {
            perr(&p, pos, "expecting a rule name%s", NULL);
            goto fail;
        }
        int r = rule_find(&p, pos, (size_t)(ne - pos));
        if (r < 0) goto fail;
        if (p.rules[r].defined) {
            perr(&p, pos, "rule '%s' defined twice", p.rules[r].name);
            goto fail;
        }
        p.rules[r].defined = true;
        pos = skip_space(ne, p.end, false);
        if (p.end - pos < 3 || memcmp(pos, "::=", 3) != 0) {
            perr(&p, pos, "expecting '::='%s", NULL);
            goto fail;
        }
        pos = skip_space(pos + 3, p.end, true);
        pos = parse_alternates(&p, pos, r, false);
        if (!pos) goto fail;
        if (pos < p.end && *pos != '\n' && *pos != '\r') {
            if (*pos == ')') perr(&p, pos, "unmatched ')'%s", NULL);
            else perr(&p, pos, "expecting newline or end of input%s", NULL);
            goto fail;
        }
        pos = skip_space(pos, p.end, true);
    }
    int root_id = -1;
    for (int i = 0; i < p.n_rules; i++) {
        if (!p.rules[i].defined) {
            perr(&p, p.rules[i].ref_at ? p.rules[i].ref_at : text, "undefined rule '%s'", p.rules[i].name);
            goto fail;
        }
        if (!strcmp(p.rules[i].name, root)) root_id = i;
    }
    if (root_id < 0) {
        err_set(err, "grammar: no rule named '%.100s' (the start rule)", root);
        goto fail;
    }
    g = calloc(1, sizeof *g);
    if (!g) goto oom;
    long n_alts = 0, n_el = 0;
    for (int i = 0; i < p.n_rules; i++) {
        n_alts += p.rules[i].n_alts;
        for (int a = 0; a < p.rules[i].n_alts; a++) n_el += p.rules[i].alts[a].n + 1;
    }
    g->el = malloc((size_t)n_el * sizeof *g->el);
    g->alt_start = malloc((size_t)(n_alts ? n_alts : 1) * sizeof *g->alt_start);
    g->rule_alt0 = malloc(((size_t)p.n_rules + 1) * sizeof *g->rule_alt0);
    g->sets = malloc((size_t)(p.n_sets ? p.n_sets : 1) * sizeof *g->sets);
    if (!g->el || !g->alt_start || !g->rule_alt0 || !g->sets) goto oom;
    if (p.n_sets) memcpy(g->sets, p.sets, (size_t)p.n_sets * sizeof *g->sets);
    g->n_sets = p.n_sets;
    g->n_rules = p.n_rules;
    g->root = root_id;
    int e = 0, a = 0;
    for (int i = 0; i < p.n_rules; i++) {
        g->rule_alt0[i] = a;
        for (int k = 0; k < p.rules[i].n_alts; k++) {
            g->alt_start[a++] = e;
            if (p.rules[i].alts[k].n) memcpy(g->el + e, p.rules[i].alts[k].v, (size_t)p.rules[i].alts[k].n * sizeof *g->el);
            e += p.rules[i].alts[k].n;
            g->el[e].type = EL_END, g->el[e].arg = 0;
            e++;
        }
    }
    g->rule_alt0[p.n_rules] = a;
    g->n_alts = a;
    g->n_el = e;
    if (check_left_recursion(g, &p, err)) goto fail;
    parser_free(&p);
    return g;
oom:
    err_set(err, "grammar: out of memory");
fail:
    grammar_free(g);
    parser_free(&p);
    return NULL;
}

void grammar_free(Grammar *g) {
    if (!g) return;
    free(g->el);
    free(g->alt_start);
    free(g->rule_alt0);
    free(g->sets);
    free(g);
}

