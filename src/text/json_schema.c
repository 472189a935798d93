/* json_schema.c - see json_schema.h.
 *
 * Every schema node becomes one rule "PREFIX-N ::= ..." that ends with the
 * optional space; shared primitives (string, number, value, formats) are
 * emitted once on first use. $ref targets get one rule each, memoised by
 * pointer, with an "in progress" mark to refuse cycles. */
#include "json_schema.h"

#include "grammar.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64            /* schema nesting */
#define MAX_ENUM 4096           /* values in one enum */
#define MAX_COUNT 10000         /* minItems/maxItems/minLength/maxLength */
#define MAX_GRAMMAR (8u << 20)  /* bytes of GBNF */
#define MAX_BOUND 1e15          /* |minimum|, |maximum| that constrain; integers are generated with at most 15 digits,
                                   so bounds beyond this (zod's +-2^53-1) are no constraint at all */


int gbnf_append_literal(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    Buf b = {*buf, *len, *cap, false};
    buf_puts(&b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"' || c == '\\') e[0] = '\\', e[1] = (char)c, e[2] = 0;
        else if (c == '\n') strcpy(e, "\\n");
        else if (c == '\r') strcpy(e, "\\r");
        else if (c == '\t') strcpy(e, "\\t");
        else if (c < 0x20 || c == 0x7F) snprintf(e, sizeof e, "\\x%02X", c);
        else if (c >= 0x80) { /* a UTF-8 sequence stays as it is if valid, else bytes are escaped */
            int k = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
            bool ok = k && i + (size_t)k <= n;
            for (int j = 1; ok && j < k; j++) ok = ((unsigned char)s[i + (size_t)j] & 0xC0) == 0x80;
            if (ok) {
                buf_put(&b, s + i, (size_t)k);
                i += (size_t)k - 1;
                continue;
            }
            snprintf(e, sizeof e, "\\x%02X", c); /* (becomes U+00XX: such text cannot be generated) */
        } else e[0] = (char)c, e[1] = 0;
        buf_puts(&b, e);
    }
    buf_puts(&b, "\"");
    *buf = b.s, *len = b.len, *cap = b.cap;
    return b.oom ? -1 : 0;
}

static void blit(Buf *b, const char *s) {
    if (b->oom) return;
    if (gbnf_append_literal(&b->s, &b->len, &b->cap, s, strlen(s))) b->oom = true;
}

typedef struct {
    const cJSON *node;
    char *rule;
    bool busy;
} RefMemo;

struct JsonGrammar {
    Buf out;
    int counter;
    unsigned prims; /* bit set of primitives emitted */
    RefMemo *refs;
    int n_refs, cap_refs;
    char **names; /* rule names handed out (freed at the end) */
    int n_names, cap_names;
    const cJSON *doc;
    const char *prefix;
    Error *err;
    bool failed;
};

enum { P_SPACE = 1, P_STRING = 2, P_NUMBER = 4, P_INTEGER = 8, P_BOOL = 16, P_NULL = 32, P_VALUE = 64,
       P_DATE = 128, P_TIME = 256, P_UUID = 512 };

static void prim(JsonGrammar *jg, unsigned p) {
    if (jg->prims & p) return;
    jg->prims |= p;
    Buf *o = &jg->out;
    switch (p) {
    case P_SPACE: buf_puts(o, "space ::= \" \"?\n"); break;
    case P_STRING:
        prim(jg, P_SPACE);
        buf_puts(o, "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n");
        buf_puts(o, "string ::= \"\\\"\" char* \"\\\"\" space\n");
        break;
    case P_NUMBER:
        prim(jg, P_SPACE);
        buf_puts(o, "number ::= \"-\"? ([0-9] | [1-9] [0-9]{0,15}) (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})? space\n");
        break;
    case P_INTEGER:
        prim(jg, P_SPACE);
        buf_puts(o, "integer ::= \"-\"? ([0-9] | [1-9] [0-9]{0,14}) space\n");
        break;
    case P_BOOL:
        prim(jg, P_SPACE);
        buf_puts(o, "boolean ::= (\"true\" | \"false\") space\n");
        break;
    case P_NULL:
        prim(jg, P_SPACE);
        buf_puts(o, "null ::= \"null\" space\n");
        break;
    case P_VALUE:
        prim(jg, P_STRING), prim(jg, P_NUMBER), prim(jg, P_BOOL), prim(jg, P_NULL);
        buf_puts(o, "value ::= object | array | string | number | boolean | null\n");
        buf_puts(o, "object ::= \"{\" space (string \":\" space value (\",\" space string \":\" space value)*)? \"}\" space\n");
        buf_puts(o, "array ::= \"[\" space (value (\",\" space value)*)? \"]\" space\n");
        break;
    case P_DATE:
        buf_puts(o, "date ::= [0-9]{4} \"-\" ((\"0\" [13578] | \"1\" [02]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01]) | "
                 "(\"0\" [469] | \"11\") \"-\" (\"0\" [1-9] | [12] [0-9] | \"30\") | \"02-\" (\"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8]))\n");
        break;
    case P_TIME:
        buf_puts(o, "time ::= ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? "
                 "(\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])\n");
        break;
    case P_UUID:
        buf_puts(o, "uuid ::= [0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{12}\n");
        break;
    }
}

static const char *fail(JsonGrammar *jg, const char *path, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static const char *fail(JsonGrammar *jg, const char *path, const char *fmt, ...) {
    if (jg->failed) return NULL;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_set(jg->err, "%s (at %s)", msg, path[0] ? path : "#");
    jg->failed = true;
    return NULL;
}

static char *new_name(JsonGrammar *jg) {
    char nm[128];
    snprintf(nm, sizeof nm, "%s-%d", jg->prefix, ++jg->counter);
    if (jg->n_names == jg->cap_names) {
        int cap = jg->cap_names ? 2 * jg->cap_names : 64;
        char **t = realloc(jg->names, (size_t)cap * sizeof *t);
        if (!t) return NULL;
        jg->names = t, jg->cap_names = cap;
    }
    char *s = strdup(nm);
    if (s) jg->names[jg->n_names++] = s;
    return s;
}

static const char *KNOWN[] = {"type", "properties", "required", "additionalProperties", "items", "minItems",
                              "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
                              "definitions", "format", "minLength", "maxLength", "minimum", "maximum",
                              "exclusiveMinimum", "exclusiveMaximum", "title", "description", "default",
                              "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "pattern",
                              NULL};

static bool known(const char *k) {
    for (const char **p = KNOWN; *p; p++)
        if (!strcmp(*p, k)) return true;
    return false;
}

static const char *visit(JsonGrammar *jg, const cJSON *s, const char *path, int depth);

/* A non-negative integer keyword; -1 if absent, -2 on error. */
static long count_kw(JsonGrammar *jg, const cJSON *s, const char *kw, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, kw);
    if (!v) return -1;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != floor(v->valuedouble)) {
        fail(jg, path, "'%s' must be a non-negative integer", kw);
        return -2;
    }
    if (v->valuedouble > MAX_COUNT) {
        fail(jg, path, "'%s' of %.0f is over this server's limit of %d", kw, v->valuedouble, MAX_COUNT);
        return -2;
    }
    return (long)v->valuedouble;
}

/* ---- integer and number ranges ------------------------------------------ */

/* digits of x >= 0 */
static void ull_str(unsigned long long x, char *o) { sprintf(o, "%llu", x); }

/* Same-length decimal strings a <= b: the alternatives matching [a, b]. */
static void range_same(Buf *b, const char *a, const char *z) {
    size_t n = strlen(a);
    if (n == 0) return;
    if (!strcmp(a, z)) {
        buf_printf(b, "\"%s\"", a);
        return;
    }
    if (a[0] == z[0]) {
        buf_printf(b, "\"%c\" ", a[0]);
        range_same(b, a + 1, z + 1);
        return;
    }
    bool a_rest0 = true, z_rest9 = true;
    for (size_t i = 1; i < n; i++) a_rest0 &= a[i] == '0', z_rest9 &= z[i] == '9';
    char lo = a_rest0 ? a[0] : (char)(a[0] + 1), hi = z_rest9 ? z[0] : (char)(z[0] - 1);
    buf_puts(b, "(");
    bool first = true;
    if (!a_rest0) {
        char nines[32];
        memset(nines, '9', n - 1);
        nines[n - 1] = 0;
        buf_printf(b, "\"%c\" (", a[0]);
        range_same(b, a + 1, nines);
        buf_puts(b, ")");
        first = false;
    }
    if (lo <= hi) {
        if (!first) buf_puts(b, " | ");
        buf_printf(b, "[%c-%c]", lo, hi);
        if (n > 1) buf_printf(b, " [0-9]{%zu}", n - 1);
        first = false;
    }
    if (!z_rest9) {
        char zeros[32];
        memset(zeros, '0', n - 1);
        zeros[n - 1] = 0;
        if (!first) buf_puts(b, " | ");
        buf_printf(b, "\"%c\" (", z[0]);
        range_same(b, zeros, z + 1);
        buf_puts(b, ")");
    }
    buf_puts(b, ")");
}

/* Non-negative integers in [a, z] (z < 0: no upper bound, up to 16 digits),
 * without leading zeros. */
static void range_nn(Buf *b, long long a, long long z) {
    char as[32], zs[32];
    ull_str((unsigned long long)a, as);
    size_t la = strlen(as), lz;
    if (z >= 0) {
        ull_str((unsigned long long)z, zs);
        lz = strlen(zs);
    } else lz = 15;
    buf_puts(b, "(");
    for (size_t L = la; L <= lz; L++) {
        if (L > la) buf_puts(b, " | ");
        char lo[32], hi[32];
        if (L == la) strcpy(lo, as);
        else {
            memset(lo, '0', L);
            lo[0] = '1', lo[L] = 0;
        }
        if (z >= 0 && L == lz) strcpy(hi, zs);
        else {
            memset(hi, '9', L);
            hi[L] = 0;
        }
        range_same(b, lo, hi);
    }
    buf_puts(b, ")");
}

/* Integers with optional bounds, as one parenthesised expression. */
static void int_range(Buf *b, bool has_lo, long long lo, bool has_hi, long long hi) {
    buf_puts(b, "(");
    if (has_lo && lo >= 0) range_nn(b, lo, has_hi ? hi : -1);
    else if (has_hi && hi < 0) {
        buf_puts(b, "\"-\" ");
        range_nn(b, -hi, has_lo ? -lo : -1);
    } else { /* the range spans 0 */
        buf_puts(b, "\"-\" ");
        range_nn(b, 1, has_lo ? -lo : -1);
        buf_puts(b, " | ");
        range_nn(b, 0, has_hi ? hi : -1);
    }
    buf_puts(b, ")");
}

/* A magnitude I.f in [A, B] (B < 0: unbounded), whole-number bounds. */
static void magnitude(Buf *b, long long A, long long B) {
    const char *frac = "(\".\" [0-9]{1,15})?", *zfrac = "(\".\" \"0\"{1,15})?";
    buf_puts(b, "(");
    if (B < 0) {
        range_nn(b, A, -1);
        buf_printf(b, " %s", frac);
    } else {
        if (A <= B - 1) {
            range_nn(b, A, B - 1);
            buf_printf(b, " %s | ", frac);
        }
        buf_printf(b, "\"%lld\" %s", B, zfrac);
    }
    buf_puts(b, ")");
}

static void num_range(Buf *b, bool has_lo, long long lo, bool has_hi, long long hi) {
    buf_puts(b, "(");
    bool any = false;
    if (!has_hi || hi >= 0) { /* x >= 0 */
        magnitude(b, has_lo && lo > 0 ? lo : 0, has_hi ? hi : -1);
        any = true;
    }
    if (!has_lo || lo < 0) { /* x < 0: magnitude in [max(-hi, 0), -lo] */
        if (any) buf_puts(b, " | ");
        buf_puts(b, "\"-\" ");
        magnitude(b, has_hi && hi < 0 ? -hi : 0, has_lo ? -lo : -1);
    }
    buf_puts(b, ")");
}

/* Reads minimum/maximum (and exclusive ones) into whole-number bounds. */
static int bounds(JsonGrammar *jg, const cJSON *s, bool integer, const char *path, bool *has_lo, long long *lo,
                  bool *has_hi, long long *hi) {
    *has_lo = *has_hi = false;
    *lo = *hi = 0;
    static const char *kws[] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    for (int k = 0; k < 4; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, kws[k]);
        if (!v) continue;
        if (cJSON_IsBool(v)) { /* draft-4 style exclusive flags */
            if (cJSON_IsTrue(v)) return fail(jg, path, "'%s' as a boolean (draft 4) is not supported", kws[k]), -1;
            continue;
        }
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return fail(jg, path, "'%s' must be a number", kws[k]), -1;
        double x = v->valuedouble;
        const bool is_lo = k < 2, excl = k == 1 || k == 3;
        if (fabs(x) > MAX_BOUND) {
            if ((is_lo && x < 0) || (!is_lo && x > 0)) continue; /* beyond what is generated: no constraint */
            return fail(jg, path, "'%s' of %g is beyond +-1e15", kws[k], x), -1;
        }
        long long w;
        if (integer) {
            if (is_lo) w = (long long)(excl ? floor(x) + 1 : ceil(x));
            else w = (long long)(excl ? ceil(x) - 1 : floor(x));
        } else {
            if (x != floor(x))
                return fail(jg, path, "'%s' of %g: only whole-number bounds are supported for type number", kws[k], x), -1;
            if (excl) return fail(jg, path, "'%s' is supported for integers only, not type number", kws[k]), -1;
            w = (long long)x;
        }
        if (is_lo) {
            if (!*has_lo || w > *lo) *lo = w;
            *has_lo = true;
        } else {
            if (!*has_hi || w < *hi) *hi = w;
            *has_hi = true;
        }
    }
    if (*has_lo && *has_hi && *lo > *hi) return fail(jg, path, "minimum is above maximum: no value is valid"), -1;
    return 0;
}

/* ---- schema nodes -------------------------------------------------------- */

static char *sub_path(const char *path, const char *a, const char *b) {
    size_t n = strlen(path) + strlen(a) + (b ? strlen(b) : 0) + 4;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s%s%s", path, a, b ? "/" : "", b ? b : "");
    return p;
}

/* Emits "name ::= body" and returns name. */
static const char *emit(JsonGrammar *jg, Buf *body) {
    char *nm = new_name(jg);
    if (!nm || body->oom) {
        free(body->s);
        return fail(jg, "", "out of memory"), NULL;
    }
    buf_printf(&jg->out, "%s ::= %s\n", nm, body->s ? body->s : "\"\"");
    free(body->s);
    if (jg->out.len > MAX_GRAMMAR) return fail(jg, "", "the schema makes a grammar over %u bytes", MAX_GRAMMAR);
    return nm;
}

static const char *visit_object(JsonGrammar *jg, const cJSON *s, const char *path, int depth) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    if (props && !cJSON_IsObject(props)) return fail(jg, path, "'properties' must be an object");
    if (req && !cJSON_IsArray(req)) return fail(jg, path, "'required' must be an array of strings");
    if (ap && !cJSON_IsBool(ap) && !cJSON_IsObject(ap))
        return fail(jg, path, "'additionalProperties' must be a boolean or a schema");
    const cJSON *it;
    cJSON_ArrayForEach(it, req) {
        if (!cJSON_IsString(it)) return fail(jg, path, "'required' must be an array of strings");
        if (!props || !cJSON_GetObjectItemCaseSensitive(props, it->valuestring))
            return fail(jg, path, "required property '%.100s' is not in 'properties'", it->valuestring);
    }
    prim(jg, P_SPACE);
    int n = props ? cJSON_GetArraySize(props) : 0;
    const char **kv = calloc((size_t)(n ? n : 1), sizeof *kv);
    bool *isreq = calloc((size_t)(n ? n : 1), 1);
    if (!kv || !isreq) {
        free(kv);
        free(isreq);
        return fail(jg, path, "out of memory");
    }
    int i = 0;
    cJSON_ArrayForEach(it, props) {
        char *pp = sub_path(path, "properties", it->string);
        const char *vr = pp ? visit(jg, it, pp, depth + 1) : NULL;
        free(pp);
        if (!vr) {
            free(kv);
            free(isreq);
            return jg->failed ? NULL : fail(jg, path, "out of memory");
        }
        Buf b = {0};
        /* the key as a JSON string: cJSON escapes it */
        cJSON *ks = cJSON_CreateString(it->string);
        char *kj = ks ? cJSON_PrintUnformatted(ks) : NULL;
        cJSON_Delete(ks);
        if (!kj) {
            free(kv);
            free(isreq);
            return fail(jg, path, "out of memory");
        }
        blit(&b, kj);
        free(kj);
        buf_printf(&b, " space \":\" space %s", vr);
        kv[i] = emit(jg, &b);
        if (!kv[i]) {
            free(kv);
            free(isreq);
            return NULL;
        }
        const cJSON *r;
        cJSON_ArrayForEach(r, req) if (!strcmp(r->valuestring, it->string)) isreq[i] = true;
        i++;
    }
    Buf b = {0};
    buf_puts(&b, "\"{\" space ");
    int n_req = 0;
    for (i = 0; i < n; i++)
        if (isreq[i]) buf_printf(&b, n_req++ ? "\",\" space %s " : "%s ", kv[i]);
    /* optional ones in order: rests[i] ::= ("," space kv_j)? ... over the
     * optional j >= i (linear in the number of properties) */
    const char **rests = calloc((size_t)n + 1, sizeof *rests);
    if (!rests) {
        free(b.s), free(kv), free(isreq);
        return fail(jg, path, "out of memory");
    }
    for (i = n - 1; i >= 0 && !jg->failed; i--) {
        if (isreq[i]) {
            rests[i] = rests[i + 1];
            continue;
        }
        Buf r = {0};
        buf_printf(&r, "(\",\" space %s)? %s", kv[i], rests[i + 1] ? rests[i + 1] : "");
        rests[i] = emit(jg, &r);
    }
    if (jg->failed) {
        free(b.s), free(kv), free(isreq), free(rests);
        return NULL;
    }
    if (n == 0 && ap && cJSON_IsObject(ap)) { /* a map: any keys, values under the schema */
        char *pp = sub_path(path, "additionalProperties", NULL);
        const char *apr = pp ? visit(jg, ap, pp, depth + 1) : NULL;
        free(pp);
        if (!apr) {
            free(b.s), free(kv), free(isreq), free(rests);
            return jg->failed ? NULL : fail(jg, path, "out of memory");
        }
        prim(jg, P_STRING);
        buf_printf(&b, "(string \":\" space %s (\",\" space string \":\" space %s)*)? ", apr, apr);
    } else if (n_req) {
        if (rests[0]) buf_printf(&b, "%s ", rests[0]);
    } else if (n) { /* all optional: the first one present has no comma */
        buf_puts(&b, "(");
        for (i = 0; i < n; i++) buf_printf(&b, "%s%s %s", i ? " | " : "", kv[i], rests[i + 1] ? rests[i + 1] : "");
        buf_puts(&b, ")? ");
    }
    free(rests);
    buf_puts(&b, "\"}\" space");
    free(kv);
    free(isreq);
    if (jg->failed) {
        free(b.s);
        return NULL;
    }
    return emit(jg, &b);
}

static const char *visit_array(JsonGrammar *jg, const cJSON *s, const char *path, int depth) {
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    const char *ir;
    if (items && cJSON_IsArray(items)) return fail(jg, path, "'items' as an array (tuple validation) is not supported");
    if (items) {
        char *pp = sub_path(path, "items", NULL);
        ir = pp ? visit(jg, items, pp, depth + 1) : NULL;
        free(pp);
        if (!ir) return jg->failed ? NULL : fail(jg, path, "out of memory");
    } else {
        prim(jg, P_VALUE);
        ir = "value";
    }
    long mn = count_kw(jg, s, "minItems", path), mx = count_kw(jg, s, "maxItems", path);
    if (mn == -2 || mx == -2) return NULL;
    if (mn < 0) mn = 0;
    if (mx >= 0 && mx < mn) return fail(jg, path, "maxItems is below minItems: no array is valid");
    prim(jg, P_SPACE);
    Buf b = {0};
    buf_puts(&b, "\"[\" space ");
    if (mx == 0) {
    } else if (mn == 0) {
        if (mx < 0) buf_printf(&b, "(%s (\",\" space %s)*)? ", ir, ir);
        else buf_printf(&b, "(%s (\",\" space %s){0,%ld})? ", ir, ir, mx - 1);
    } else {
        if (mx < 0) buf_printf(&b, "%s (\",\" space %s){%ld,} ", ir, ir, mn - 1);
        else buf_printf(&b, "%s (\",\" space %s){%ld,%ld} ", ir, ir, mn - 1, mx - 1);
    }
    buf_puts(&b, "\"]\" space");
    return emit(jg, &b);
}

/* ---- pattern: an ECMA-262 regular expression subset --------------------------
 *
 * The grammar generates strings that match the whole pattern (a subset of the
 * strings that contain a match, which is what JSON Schema asks). Literals,
 * classes, ".", \d \w \s (and \D \W \S outside classes), groups (capturing
 * or (?:)), |, * + ? {m} {m,} {m,n} (lazy forms too), ^ at the start and $
 * at the end of an alternative. Characters JSON must escape (", \, control
 * characters) are written escaped when a literal asks for them and left out
 * of classes. Lookarounds, backreferences and word boundaries are errors. */

typedef struct {
    const char *p, *end;
    Buf *out;
    const char *err;
    int depth;
    bool nullable; /* the atom / sequence / alternation just read can match "" */
} Rx;

typedef struct {
    uint32_t lo, hi;
} Rng;

/* Emits code point c as it appears inside a JSON string (GBNF literal). */
static void rx_lit(Buf *b, uint32_t c) {
    char t[16];
    int n;
    if (c == '"') n = snprintf(t, sizeof t, "\\\"");
    else if (c == '\\') n = snprintf(t, sizeof t, "\\\\");
    else if (c == '\n') n = snprintf(t, sizeof t, "\\n");
    else if (c == '\t') n = snprintf(t, sizeof t, "\\t");
    else if (c == '\r') n = snprintf(t, sizeof t, "\\r");
    else if (c < 0x20) n = snprintf(t, sizeof t, "\\u%04x", (unsigned)c);
    else {
        unsigned char u[4];
        n = c < 0x80 ? (u[0] = (unsigned char)c, 1)
            : c < 0x800 ? (u[0] = (unsigned char)(0xC0 | (c >> 6)), u[1] = (unsigned char)(0x80 | (c & 63)), 2)
            : c < 0x10000 ? (u[0] = (unsigned char)(0xE0 | (c >> 12)), u[1] = (unsigned char)(0x80 | ((c >> 6) & 63)),
                             u[2] = (unsigned char)(0x80 | (c & 63)), 3)
                          : (u[0] = (unsigned char)(0xF0 | (c >> 18)), u[1] = (unsigned char)(0x80 | ((c >> 12) & 63)),
                             u[2] = (unsigned char)(0x80 | ((c >> 6) & 63)), u[3] = (unsigned char)(0x80 | (c & 63)), 4);
        if (!b->oom && gbnf_append_literal(&b->s, &b->len, &b->cap, (const char *)u, (size_t)n)) b->oom = true;
        buf_puts(b, " ");
        return;
    }
    if (!b->oom && gbnf_append_literal(&b->s, &b->len, &b->cap, t, (size_t)n)) b->oom = true;
    buf_puts(b, " ");
}

static int rng_cmp(const void *a, const void *b) {
    const Rng *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Emits a class of ranges (negated within what may appear raw in a JSON
 * string), leaving out ", \ and control characters. */
static int rx_class(Rx *r, Rng *rg, int n, bool neg) {
    qsort(rg, (size_t)n, sizeof *rg, rng_cmp);
    Rng m[256 + 8];
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (k && rg[i].lo <= m[k - 1].hi + 1) {
            if (rg[i].hi > m[k - 1].hi) m[k - 1].hi = rg[i].hi;
        } else if (k < 256) m[k++] = rg[i];
        else return r->err = "character class too large", -1;
    }
    Rng f[300];
    int nf = 0;
    if (neg) {
        uint32_t next = 0;
        for (int i = 0; i < k; i++) {
            if (m[i].lo > next) f[nf++] = (Rng){next, m[i].lo - 1};
            next = m[i].hi + 1;
        }
        if (next <= 0x10FFFF) f[nf++] = (Rng){next, 0x10FFFF};
    } else {
        memcpy(f, m, (size_t)k * sizeof *f);
        nf = k;
    }
    /* cut out 0..0x1F, '"', '\\' */
    static const Rng cut[] = {{0, 0x1F}, {0x22, 0x22}, {0x5C, 0x5C}};
    for (int c = 0; c < 3; c++) {
        Rng g[300];
        int ng = 0;
        for (int i = 0; i < nf && ng < 298; i++) {
            if (f[i].hi < cut[c].lo || f[i].lo > cut[c].hi) g[ng++] = f[i];
            else {
                if (f[i].lo < cut[c].lo) g[ng++] = (Rng){f[i].lo, cut[c].lo - 1};
                if (f[i].hi > cut[c].hi) g[ng++] = (Rng){cut[c].hi + 1, f[i].hi};
            }
        }
        memcpy(f, g, (size_t)ng * sizeof *f);
        nf = ng;
    }
    if (nf == 0) return r->err = "a character class matches only characters that must be escaped in JSON", -1;
    buf_puts(r->out, "[");
    for (int i = 0; i < nf; i++) {
        buf_printf(r->out, f[i].lo > 0xFFFF ? "\\U%08X" : "\\u%04X", f[i].lo);
        if (f[i].hi != f[i].lo) buf_printf(r->out, f[i].hi > 0xFFFF ? "-\\U%08X" : "-\\u%04X", f[i].hi);
    }
    buf_puts(r->out, "] ");
    return 0;
}

static long rx_utf8(Rx *r) {
    const unsigned char *s = (const unsigned char *)r->p;
    unsigned c = s[0];
    int n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!n || r->p + n > r->end) return r->err = "invalid UTF-8", -1;
    uint32_t v = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return r->err = "invalid UTF-8", -1;
        v = (v << 6) | (s[i] & 63);
    }
    /* one code point, written in its shortest form (RFC 3629): no
     * surrogates, nothing past U+10FFFF (the grammar rejects those) */
    static const uint32_t min_of_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_of_len[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return r->err = "invalid UTF-8", -1;
    r->p += n;
    return (long)v;
}

static long rx_hex(Rx *r, int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++, r->p++) {
        if (r->p >= r->end) return r->err = "truncated escape", -1;
        char h = *r->p;
        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0) return r->err = "bad hex escape", -1;
        v = v * 16 + (uint32_t)d;
    }
    return (long)v;
}

/* After a backslash: a class shorthand (adds ranges, returns -2 and sets
 * *neg for \D \W \S) or one code point. */
static long rx_escape(Rx *r, Rng *rg, int *n, bool *neg) {
    if (r->p >= r->end) return r->err = "pattern ends with '\\'", -1;
    char e = *r->p++;
    *neg = false;
    switch (e) {
    case 'd': case 'D': rg[(*n)++] = (Rng){'0', '9'}; *neg = e == 'D'; return -2;
    case 'w': case 'W':
        rg[(*n)++] = (Rng){'0', '9'}, rg[(*n)++] = (Rng){'A', 'Z'}, rg[(*n)++] = (Rng){'a', 'z'}, rg[(*n)++] = (Rng){'_', '_'};
        *neg = e == 'W';
        return -2;
    case 's': case 'S':
        rg[(*n)++] = (Rng){' ', ' '}, rg[(*n)++] = (Rng){'\t', '\r'};
        *neg = e == 'S';
        return -2;
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    case '0': return 0;
    case 'x': return rx_hex(r, 2);
    case 'u': return rx_hex(r, 4);
    default:
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '1' && e <= '9'))
            return r->err = "backreferences, word boundaries and other letter escapes are not supported", -1;
        return (unsigned char)e;
    }
}

static int rx_alt(Rx *r);

static int rx_atom(Rx *r) {
    char c = *r->p;
    Rng rg[300];
    int n = 0;
    bool neg = false;
    if (c == '(') {
        r->p++;
        if (r->p < r->end && *r->p == '?') {
            if (r->p + 1 < r->end && r->p[1] == ':') r->p += 2;
            else return r->err = "lookarounds and named groups are not supported", -1;
        }
        if (++r->depth > 64) return r->err = "groups nested too deeply", -1;
        buf_puts(r->out, "(");
        if (rx_alt(r)) return -1; /* sets r->nullable for the group */
        if (r->p >= r->end || *r->p != ')') return r->err = "missing ')'", -1;
        r->p++;
        r->depth--;
        buf_puts(r->out, ") ");
        return 0;
    }
    r->nullable = false; /* a literal, a class, '.' */
    if (c == '[') {
        r->p++;
        if (r->p < r->end && *r->p == '^') neg = true, r->p++;
        bool first = true;
        while (r->p < r->end && (*r->p != ']' || first)) {
            first = false;
            if (n > 280) return r->err = "character class too large", -1;
            long a;
            if (*r->p == '\\') {
                r->p++;
                bool sneg;
                a = rx_escape(r, rg, &n, &sneg);
                if (a == -1) return -1;
                if (a == -2) {
                    if (sneg) return r->err = "\\D, \\W and \\S inside a class are not supported", -1;
                    continue;
                }
            } else if ((a = rx_utf8(r)) < 0) return -1;
            long b = a;
            if (r->p + 1 < r->end && *r->p == '-' && r->p[1] != ']') {
                r->p++;
                if (*r->p == '\\') {
                    r->p++;
                    bool sneg;
                    b = rx_escape(r, rg, &n, &sneg);
                    if (b < 0) return b == -1 ? -1 : (r->err = "a class shorthand cannot end a range", -1);
                } else if ((b = rx_utf8(r)) < 0) return -1;
                if (b < a) return r->err = "character range out of order", -1;
            }
            rg[n++] = (Rng){(uint32_t)a, (uint32_t)b};
        }
        if (r->p >= r->end) return r->err = "missing ']'", -1;
        r->p++;
        return rx_class(r, rg, n, neg);
    }
    if (c == '.') {
        r->p++;
        rg[0] = (Rng){'\n', '\n'};
        return rx_class(r, rg, 1, true);
    }
    if (c == '*' || c == '+' || c == '?') return r->err = "nothing to repeat", -1;
    if (c == '\\') {
        r->p++;
        long a = rx_escape(r, rg, &n, &neg);
        if (a == -1) return -1;
        if (a == -2) return rx_class(r, rg, n, neg);
        rx_lit(r->out, (uint32_t)a);
        return 0;
    }
    long a = rx_utf8(r);
    if (a < 0) return -1;
    rx_lit(r->out, (uint32_t)a);
    return 0;
}

static int rx_seq(Rx *r) {
    bool any = false, nullable = true;
    if (r->p < r->end && *r->p == '^') r->p++;
    while (r->p < r->end && *r->p != '|' && *r->p != ')') {
        if (*r->p == '$') {
            r->p++;
            if (r->p < r->end && *r->p != '|' && *r->p != ')') return r->err = "'$' in the middle of a pattern", -1;
            break;
        }
        if (*r->p == '^') return r->err = "'^' in the middle of a pattern", -1;
        Buf atom = {0}, *save = r->out;
        r->out = &atom;
        int rc = rx_atom(r);
        const bool atom_nullable = r->nullable;
        r->out = save;
        if (rc) {
            free(atom.s);
            return -1;
        }
        /* a quantifier */
        long lo = -1, hi = -1;
        if (r->p < r->end && (*r->p == '*' || *r->p == '+' || *r->p == '?')) {
            char q = *r->p++;
            lo = q == '+', hi = q == '?' ? 1 : -2;
        } else if (r->p < r->end && *r->p == '{' && r->p + 1 < r->end && r->p[1] >= '0' && r->p[1] <= '9') {
            char *e;
            lo = strtol(r->p + 1, &e, 10);
            hi = lo;
            if (*e == ',') {
                if (e[1] == '}') hi = -2, e++;
                else hi = strtol(e + 1, &e, 10);
            }
            if (*e != '}' || lo > MAX_COUNT || hi > MAX_COUNT || (hi >= 0 && hi < lo)) {
                free(atom.s);
                return r->err = "bad or too large {m,n} (at most 10000)", -1;
            }
            r->p = e + 1;
        }
        if (lo >= 0 && r->p < r->end && *r->p == '?') r->p++; /* lazy: same strings */
        if (hi == -2 && atom_nullable) { /* GBNF writes x+ as a recursive rule, left-recursive when x can be empty */
            free(atom.s);
            return r->err = "'*', '+' or '{n,}' after a part that can match the empty string is not supported", -1;
        }
        nullable = nullable && (atom_nullable || lo == 0); /* no quantifier (lo < 0): as the atom */
        if (lo < 0) buf_puts(r->out, atom.s ? atom.s : "");
        else if (hi == -2) buf_printf(r->out, "(%s){%ld,} ", atom.s ? atom.s : "", lo);
        else buf_printf(r->out, "(%s){%ld,%ld} ", atom.s ? atom.s : "", lo, hi);
        if (atom.oom) r->out->oom = true;
        free(atom.s);
        any = true;
    }
    if (!any) buf_puts(r->out, "\"\" ");
    r->nullable = nullable;
    return 0;
}

static int rx_alt(Rx *r) {
    if (rx_seq(r)) return -1;
    bool nullable = r->nullable;
    while (r->p < r->end && *r->p == '|') {
        r->p++;
        buf_puts(r->out, "| ");
        if (rx_seq(r)) return -1;
        nullable |= r->nullable;
    }
    r->nullable = nullable;
    return 0;
}

static const char *visit_string(JsonGrammar *jg, const cJSON *s, const char *path) {
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(s, "format");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(s, "pattern");
    long mn = count_kw(jg, s, "minLength", path), mx = count_kw(jg, s, "maxLength", path);
    if (mn == -2 || mx == -2) return NULL;
    prim(jg, P_STRING);
    if (pat) {
        if (!cJSON_IsString(pat)) return fail(jg, path, "'pattern' must be a string");
        if (fmt || mn >= 0 || mx >= 0)
            return fail(jg, path, "'pattern' together with 'format', 'minLength' or 'maxLength' is not supported");
        Buf b = {0};
        Rx r = {pat->valuestring, pat->valuestring + strlen(pat->valuestring), &b, NULL, 0, false};
        buf_puts(&b, "\"\\\"\" (");
        if (rx_alt(&r) || (r.p < r.end && (r.err = "unmatched ')'"))) {
            free(b.s);
            return fail(jg, path, "'pattern' /%.100s/: %s", pat->valuestring, r.err);
        }
        buf_puts(&b, ") \"\\\"\" space");
        return emit(jg, &b);
    }
    if (fmt) {
        if (!cJSON_IsString(fmt)) return fail(jg, path, "'format' must be a string");
        const char *f = fmt->valuestring, *body;
        if (!strcmp(f, "date")) prim(jg, P_DATE), body = "date";
        else if (!strcmp(f, "time")) prim(jg, P_TIME), body = "time";
        else if (!strcmp(f, "date-time")) prim(jg, P_DATE), prim(jg, P_TIME), body = "date \"T\" time";
        else if (!strcmp(f, "uuid")) prim(jg, P_UUID), body = "uuid";
        else return fail(jg, path, "string format '%.60s' is not supported (date, time, date-time, uuid are)", f);
        if (mn >= 0 || mx >= 0) return fail(jg, path, "minLength/maxLength together with 'format' are not supported");
        Buf b = {0};
        buf_printf(&b, "\"\\\"\" %s \"\\\"\" space", body);
        return emit(jg, &b);
    }
    if (mn < 0 && mx < 0) return "string";
    if (mn < 0) mn = 0;
    if (mx >= 0 && mx < mn) return fail(jg, path, "maxLength is below minLength: no string is valid");
    Buf b = {0};
    if (mx < 0) buf_printf(&b, "\"\\\"\" char{%ld,} \"\\\"\" space", mn);
    else buf_printf(&b, "\"\\\"\" char{%ld,%ld} \"\\\"\" space", mn, mx);
    return emit(jg, &b);
}

/* One value of a single type. */
static const char *visit_type(JsonGrammar *jg, const cJSON *s, const char *t, const char *path, int depth) {
    if (!strcmp(t, "object")) return visit_object(jg, s, path, depth);
    if (!strcmp(t, "array")) return visit_array(jg, s, path, depth);
    if (!strcmp(t, "string")) return visit_string(jg, s, path);
    if (!strcmp(t, "boolean")) return prim(jg, P_BOOL), "boolean";
    if (!strcmp(t, "null")) return prim(jg, P_NULL), "null";
    if (!strcmp(t, "integer") || !strcmp(t, "number")) {
        const bool integer = !strcmp(t, "integer");
        bool hl, hh;
        long long lo = 0, hi = 0;
        if (bounds(jg, s, integer, path, &hl, &lo, &hh, &hi)) return NULL;
        if (!hl && !hh) return prim(jg, integer ? P_INTEGER : P_NUMBER), integer ? "integer" : "number";
        prim(jg, P_SPACE);
        Buf b = {0};
        if (integer) int_range(&b, hl, lo, hh, hi);
        else num_range(&b, hl, lo, hh, hi);
        buf_puts(&b, " space");
        return emit(jg, &b);
    }
    return fail(jg, path, "unknown type '%.40s'", t);
}

static const char *visit_ref(JsonGrammar *jg, const char *ref, const char *path, int depth) {
    if (strncmp(ref, "#", 1) != 0 || (ref[1] && ref[1] != '/'))
        return fail(jg, path, "'$ref' to '%.100s': only references inside the schema (#/...) are supported", ref);
    const cJSON *node = jg->doc;
    const char *p = ref + 1;
    while (*p == '/' && node) {
        p++;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char key[256];
        size_t k = 0;
        for (size_t i = 0; i < n && k + 1 < sizeof key; i++) {
            if (p[i] == '~' && i + 1 < n && (p[i + 1] == '0' || p[i + 1] == '1')) key[k++] = p[i + 1] == '0' ? '~' : '/', i++;
            else key[k++] = p[i];
        }
        key[k] = 0;
        if (cJSON_IsArray(node)) {
            char *end;
            long idx = strtol(key, &end, 10);
            node = *end || idx < 0 ? NULL : cJSON_GetArrayItem(node, (int)idx);
        } else node = cJSON_IsObject(node) ? cJSON_GetObjectItemCaseSensitive(node, key) : NULL;
        p += n;
    }
    if (!node) return fail(jg, path, "'$ref' '%.100s' points to nothing", ref);
    for (int i = 0; i < jg->n_refs; i++)
        if (jg->refs[i].node == node) {
            if (jg->refs[i].busy) return fail(jg, path, "recursive '$ref' '%.100s' is not supported", ref);
            return jg->refs[i].rule;
        }
    if (jg->n_refs == jg->cap_refs) {
        int cap = jg->cap_refs ? 2 * jg->cap_refs : 16;
        RefMemo *t = realloc(jg->refs, (size_t)cap * sizeof *t);
        if (!t) return fail(jg, path, "out of memory");
        jg->refs = t, jg->cap_refs = cap;
    }
    int slot = jg->n_refs++;
    jg->refs[slot] = (RefMemo){node, NULL, true};
    const char *r = visit(jg, node, ref, depth + 1);
    jg->refs[slot].busy = false;
    jg->refs[slot].rule = (char *)r;
    return r;
}

static const char *visit(JsonGrammar *jg, const cJSON *s, const char *path, int depth) {
    if (jg->failed) return NULL;
    if (depth > MAX_DEPTH) return fail(jg, path, "schema nested deeper than %d levels", MAX_DEPTH);
    if (cJSON_IsBool(s)) {
        if (cJSON_IsFalse(s)) return fail(jg, path, "schema 'false' allows no value");
        prim(jg, P_VALUE);
        return "value";
    }
    if (!cJSON_IsObject(s)) return fail(jg, path, "a schema must be an object or a boolean");
    for (const cJSON *it = s->child; it; it = it->next)
        if (!known(it->string)) return fail(jg, path, "JSON schema keyword '%.60s' is not supported", it->string);
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(s, "const");
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf");
    const char *any_kw = "anyOf";
    if (!any) any = cJSON_GetObjectItemCaseSensitive(s, "oneOf"), any_kw = "oneOf";
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(s, "allOf");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
    int n_comb = !!ref + !!en + !!cn + !!any + !!all;
    if (n_comb > 1 || (n_comb && type && !en && !cn))
        return fail(jg, path, "combining %s with other value keywords is not supported",
                    ref ? "'$ref'" : any ? (any_kw[0] == 'a' ? "'anyOf'" : "'oneOf'") : all ? "'allOf'" : "'enum'/'const'");
    if (ref) {
        if (!cJSON_IsString(ref)) return fail(jg, path, "'$ref' must be a string");
        return visit_ref(jg, ref->valuestring, path, depth);
    }
    if (en || cn) {
        if (en && (!cJSON_IsArray(en) || !en->child)) return fail(jg, path, "'enum' must be a non-empty array");
        if (en && cJSON_GetArraySize(en) > MAX_ENUM)
            return fail(jg, path, "'enum' has %d values, over this server's limit of %d", cJSON_GetArraySize(en), MAX_ENUM);
        prim(jg, P_SPACE);
        Buf b = {0};
        buf_puts(&b, "(");
        const cJSON *v = en ? en->child : cn;
        for (bool first = true; v; v = en ? v->next : NULL, first = false) {
            char *txt = cJSON_PrintUnformatted(v);
            if (!txt) {
                free(b.s);
                return fail(jg, path, "out of memory");
            }
            if (!first) buf_puts(&b, " | ");
            blit(&b, txt);
            free(txt);
            if (b.len > MAX_GRAMMAR) {
                free(b.s);
                return fail(jg, path, "'enum' is too large");
            }
        }
        buf_puts(&b, ") space");
        return emit(jg, &b);
    }
    if (any || all) {
        const cJSON *arr = any ? any : all;
        const char *kw = any ? any_kw : "allOf";
        if (!cJSON_IsArray(arr) || !arr->child) return fail(jg, path, "'%s' must be a non-empty array of schemas", kw);
        if (all && cJSON_GetArraySize(all) != 1)
            return fail(jg, path, "'allOf' with %d schemas is not supported (only a single one)", cJSON_GetArraySize(all));
        Buf b = {0};
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) {
            char idx[16];
            snprintf(idx, sizeof idx, "%d", i);
            char *pp = sub_path(path, kw, idx);
            const char *r = pp ? visit(jg, it, pp, depth + 1) : NULL;
            free(pp);
            if (!r) {
                free(b.s);
                return jg->failed ? NULL : fail(jg, path, "out of memory");
            }
            buf_printf(&b, "%s%s", i++ ? " | " : "", r);
        }
        return emit(jg, &b);
    }
    /* the type: given, or implied by the keywords present */
    if (!type) {
        static const struct { const char *kw, *type; } implied[] = {
            {"properties", "object"}, {"required", "object"}, {"additionalProperties", "object"},
            {"items", "array"}, {"minItems", "array"}, {"maxItems", "array"},
            {"minLength", "string"}, {"maxLength", "string"}, {"format", "string"}, {"pattern", "string"},
            {"minimum", "number"}, {"maximum", "number"}, {"exclusiveMinimum", "number"}, {"exclusiveMaximum", "number"}};
        const char *t = NULL;
        for (size_t k = 0; k < sizeof implied / sizeof implied[0]; k++)
            if (cJSON_GetObjectItemCaseSensitive(s, implied[k].kw)) {
                if (t && strcmp(t, implied[k].type))
                    return fail(jg, path, "keywords for both %s and %s values without a 'type' are not supported", t,
                                implied[k].type);
                t = implied[k].type;
            }
        if (!t) {
            prim(jg, P_VALUE);
            return "value";
        }
        return visit_type(jg, s, t, path, depth);
    }
    if (cJSON_IsString(type)) return visit_type(jg, s, type->valuestring, path, depth);
    if (!cJSON_IsArray(type) || !type->child) return fail(jg, path, "'type' must be a string or a non-empty array");
    Buf b = {0};
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, type) {
        if (!cJSON_IsString(it)) {
            free(b.s);
            return fail(jg, path, "'type' must hold strings");
        }
        const char *r = visit_type(jg, s, it->valuestring, path, depth);
        if (!r) {
            free(b.s);
            return NULL;
        }
        buf_printf(&b, "%s%s", i++ ? " | " : "", r);
    }
    return emit(jg, &b);
}

JsonGrammar *json_grammar_new(Error *err) {
    JsonGrammar *jg = calloc(1, sizeof *jg);
    if (!jg) err_set(err, "out of memory");
    return jg;
}

void json_grammar_free(JsonGrammar *jg) {
    if (!jg) return;
    free(jg->out.s);
    free(jg->refs);
    for (int i = 0; i < jg->n_names; i++) free(jg->names[i]);
    free(jg->names);
    free(jg);
}

const char *json_grammar_add_schema(JsonGrammar *jg, const cJSON *schema, const cJSON *doc, const char *prefix,
                                    Error *err) {
    jg->err = err;
    jg->failed = false;
    jg->doc = doc ? doc : schema;
    jg->prefix = prefix;
    jg->n_refs = 0; /* memoised $refs belong to one document */
    const char *r = visit(jg, schema, "#", 0);
    if (!r && !jg->failed) err_set(err, "out of memory");
    if (jg->out.oom) {
        err_set(err, "out of memory");
        return NULL;
    }
    return r;
}

const char *json_grammar_any_value(JsonGrammar *jg, Error *err) {
    prim(jg, P_VALUE);
    if (jg->out.oom) {
        err_set(err, "out of memory");
        return NULL;
    }
    return "value";
}

int json_grammar_add_rule(JsonGrammar *jg, const char *name, const char *body, Error *err) {
    buf_printf(&jg->out, "%s ::= %s\n", name, body);
    if (jg->out.oom) return err_set(err, "out of memory");
    return 0;
}

char *json_grammar_text(JsonGrammar *jg, Error *err) {
    char *t = strdup(jg->out.s ? jg->out.s : "");
    if (!t) err_set(err, "out of memory");
    return t;
}

char *json_schema_to_gbnf(const char *json, size_t len, Error *err) {
    cJSON *s = cJSON_ParseWithLength(json, len);
    if (!s) {
        err_set(err, "the JSON schema is not valid JSON");
        return NULL;
    }
    JsonGrammar *jg = json_grammar_new(err);
    char *out = NULL;
    if (jg) {
        const char *r = json_grammar_add_schema(jg, s, NULL, "s", err);
        if (r && !json_grammar_add_rule(jg, "root", r, err)) out = json_grammar_text(jg, err);
    }
    json_grammar_free(jg);
    cJSON_Delete(s);
    return out;
}

static char *slurp(const char *path, size_t *len, Error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, "cannot open %s", path);
        return NULL;
    }
    size_t cap = 4096, n = 0, r;
    char *b = malloc(cap + 1);
    while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            if (cap >= (64u << 20)) {
                free(b);
                fclose(f);
                err_set(err, "%s is over 64 MiB", path);
                return NULL;
            }
            char *t = realloc(b, (cap *= 2) + 1);
            if (!t) free(b);
            b = t;
        }
    }
    int bad = !b || ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        err_set(err, "cannot read %s", path);
        return NULL;
    }
    b[n] = 0;
    *len = n;
    return b;
}

Grammar *grammar_from_files(const char *gbnf_file, const char *schema_file, Error *err) {
    const char *path = gbnf_file ? gbnf_file : schema_file;
    size_t n;
    char *txt = slurp(path, &n, err);
    if (!txt) return NULL;
    Grammar *g = NULL;
    if (gbnf_file) {
        g = grammar_parse(txt, n, NULL, err);
    } else {
        char *gb = json_schema_to_gbnf(txt, n, err);
        if (gb) g = grammar_parse(gb, strlen(gb), NULL, err);
        free(gb);
    }
    free(txt);
    if (!g) err_prefix(err, "%s", path);
    return g;
}
