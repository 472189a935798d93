/* test_tokenizer.c - the SentencePiece tokenizer against spm_encode /
 * spm_decode (Debian package "sentencepiece"), plus unit cases: streaming
 * decoder, invalid UTF-8, synthetic vocabulary, GGUF round trip, corrupt
 * models, hand-built models checked against spm_encode, speed.
 *
 * Corpus: $GROK_SRC/tests/data/tokenizer_corpus.txt, one case per line,
 * escapes \n \t \r \\ \xHH (see tests/scripts/test_tokenizer_spm.sh for the
 * rules and for how cases holding newlines are checked with the line-based
 * spm_encode). Model: $GROK_SHARED/models/grok-1/tokenizer.model.
 * If spm_encode is not installed, the comparisons with it are skipped (the
 * rest still runs). Prints "N passed, M failed"; exit status 1 on failure. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "tokenizer.h"
#include "check.h"

/* Grok-1 ids used when composing expectations */
#define ID_SPACE 130089 /* "▁" */
#define ID_ZERO 14      /* "0" */
#define ID_NL10 13      /* "\n" x 10; "\n" x k is 3 + k */
#define BYTE_ID(b) (69 + (b))

static char g_tmp[1024];
static bool g_have_spm;

/* ---- small utilities ------------------------------------------------------ */

typedef struct {
    int *v;
    int n, cap;
} IntVec;

static void iv_push(IntVec *a, int x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->v = realloc(a->v, (size_t)a->cap * sizeof *a->v);
        if (!a->v) {
            printf("out of memory\n");
            exit(1);
        }
    }
    a->v[a->n++] = x;
}

typedef struct {
    char *s;
    size_t len;
} Str;

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        printf("out of memory\n");
        exit(1);
    }
    return p;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf) exit(1);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0) break;
        n += got;
    }
    fclose(f);
    *len = n;
    return buf;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The corpus escapes: \n \t \r \\ \xHH; other backslashes stay. */
static Str unescape(const char *s, size_t n) {
    Str r = {xmalloc(n + 1), 0};
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            char c = s[i + 1];
            if (c == 'n' || c == 't' || c == 'r' || c == '\\') {
                r.s[r.len++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : '\\';
                i++;
                continue;
            }
            if (c == 'x' && i + 3 < n && hexval(s[i + 2]) >= 0 && hexval(s[i + 3]) >= 0) {
                r.s[r.len++] = (char)(hexval(s[i + 2]) * 16 + hexval(s[i + 3]));
                i += 3;
                continue;
            }
        }
        r.s[r.len++] = s[i];
    }
    r.s[r.len] = '\0';
    return r;
}

static Str *load_corpus(const char *path, int *n_out) {
    size_t len;
    char *buf = read_file(path, &len);
    if (!buf) return NULL;
    int cap = 256, n = 0;
    Str *cases = xmalloc((size_t)cap * sizeof *cases);
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len && start == len) break; /* no final partial line */
        if (i == len || buf[i] == '\n') {
            if (n == cap) {
                cap *= 2;
                cases = realloc(cases, (size_t)cap * sizeof *cases);
                if (!cases) exit(1);
            }
            cases[n++] = unescape(buf + start, i - start);
            start = i + 1;
        }
    }
    free(buf);
    *n_out = n;
    return cases;
}

static bool has_nul(const Str *s) { return memchr(s->s, '\0', s->len) != NULL; }

static void print_ids(const char *label, const int *ids, int n) {
    printf("  %s:", label);
    for (int i = 0; i < n && i < 64; i++) printf(" %d", ids[i]);
    if (n > 64) printf(" ... (%d ids)", n);
    printf("\n");
}

static void print_case(const Str *s) {
    printf("  text: \"");
    for (size_t i = 0; i < s->len && i < 200; i++) {
        unsigned char c = (unsigned char)s->s[i];
        if (c == '\n') printf("\\n");
        else if (c == '\t') printf("\\t");
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    printf("\"\n");
}

/* Writes lines to a temporary file and runs `cmd < file`; returns the whole
 * output (malloc'd) or NULL. */
static char *run_with_input(const char *cmd_fmt, const char *model, const Str *lines, int n, size_t *out_len) {
    char path[1200];
    snprintf(path, sizeof path, "%s/tok_in_XXXXXX", g_tmp);
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(path);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        fwrite(lines[i].s, 1, lines[i].len, f);
        fputc('\n', f);
    }
    fclose(f);
    char cmd[4400];
    char mcmd[3000];
    snprintf(mcmd, sizeof mcmd, cmd_fmt, model);
    snprintf(cmd, sizeof cmd, "%s < '%s'", mcmd, path);
    FILE *p = popen(cmd, "r");
    if (!p) {
        unlink(path);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *out = xmalloc(cap + 1);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            out = realloc(out, cap + 1);
            if (!out) exit(1);
        }
        size_t got = fread(out + len, 1, cap - len, p);
        if (got == 0) break;
        len += got;
    }
    int rc = pclose(p);
    unlink(path);
    out[len] = '\0';
    if (rc != 0) {
        free(out);
        return NULL;
    }
    *out_len = len;
    return out;
}

/* spm_encode over lines (none may hold '\n'); ids per line into res[]. */
static int spm_encode_lines(const char *model, const Str *lines, int n, IntVec *res) {
    size_t len;
    char *out = run_with_input("spm_encode --model='%s' --output_format=id", model, lines, n, &len);
    if (!out) return -1;
    char *p = out;
    for (int i = 0; i < n; i++) {
        char *eol = strchr(p, '\n');
        if (!eol) {
            free(out);
            return -1;
        }
        *eol = '\0';
        res[i].n = 0;
        char *q = p, *e;
        for (;;) {
            long v = strtol(q, &e, 10);
            if (e == q) break;
            iv_push(&res[i], (int)v);
            q = e;
        }
        p = eol + 1;
    }
    free(out);
    return 0;
}

static bool ids_equal(const int *a, int na, const int *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

/* What decoding the encoding of `s` must give: every valid character as is
 * ("▁" as ' '), every invalid byte as U+FFFD. */
static Str expected_decode(const Str *s) {
    Str r = {xmalloc(s->len * 3 + 1), 0};
    const unsigned char *p = (const unsigned char *)s->s;
    size_t i = 0;
    while (i < s->len) {
        size_t n = s->len - i, l = 0;
        unsigned char c = p[i];
        if (c < 0x80) l = 1;
        else if ((c & 0xE0) == 0xC0 && n >= 2 && (p[i + 1] & 0xC0) == 0x80) {
            uint32_t cp = ((uint32_t)(c & 0x1F) << 6) | (p[i + 1] & 0x3F);
            if (cp >= 0x80) l = 2;
        } else if ((c & 0xF0) == 0xE0 && n >= 3 && (p[i + 1] & 0xC0) == 0x80 && (p[i + 2] & 0xC0) == 0x80) {
            uint32_t cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
            if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) l = 3;
        } else if ((c & 0xF8) == 0xF0 && n >= 4 && (p[i + 1] & 0xC0) == 0x80 && (p[i + 2] & 0xC0) == 0x80 &&
                   (p[i + 3] & 0xC0) == 0x80) {
            uint32_t cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(p[i + 1] & 0x3F) << 12) |
                          ((uint32_t)(p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
            if (cp >= 0x10000 && cp <= 0x10FFFF) l = 4;
        }
        if (l == 0) {
            memcpy(r.s + r.len, "\xef\xbf\xbd", 3);
            r.len += 3;
            i++;
        } else if (l == 3 && memcmp(p + i, "\xe2\x96\x81", 3) == 0) {
            r.s[r.len++] = ' ';
            i += 3;
        } else {
            memcpy(r.s + r.len, p + i, l);
            r.len += l;
            i += l;
        }
    }
    r.s[r.len] = '\0';
    return r;
}

/* Decodes with the streaming decoder, one token at a time. */
static Str stream_decode(const Tokenizer *t, const int *ids, int n) {
    Str r = {xmalloc((size_t)n * 80 + 64), 0};
    TokenDecoder d;
    token_decoder_init(&d);
    char buf[256];
    for (int i = 0; i < n; i++) {
        size_t k = token_decoder_push(t, &d, ids[i], buf, sizeof buf);
        memcpy(r.s + r.len, buf, k);
        r.len += k;
    }
    size_t k = token_decoder_flush(&d, buf, sizeof buf);
    memcpy(r.s + r.len, buf, k);
    r.len += k;
    r.s[r.len] = '\0';
    return r;
}

/* ---- the Grok-1 tokenizer against spm_encode ------------------------------ */

/* How a case maps to spm_encode queries (see the header comment). */
typedef struct {
    int kind; /* 0: spm query, 1: "▁" alone, 2: newline run */
    int query, drop, count;
} PlanItem;

static void test_corpus_vs_spm(const Tokenizer *t, const char *model, const Str *cases, int n_cases) {
    if (!g_have_spm) {
        printf("spm_encode not installed: corpus comparison skipped\n");
        return;
    }
    int max_q = 0;
    for (int i = 0; i < n_cases; i++) max_q += 1 + (int)cases[i].len;
    Str *queries = xmalloc((size_t)max_q * sizeof *queries);
    PlanItem **plans = xmalloc((size_t)n_cases * sizeof *plans);
    int *n_plan = xmalloc((size_t)n_cases * sizeof *n_plan);
    int nq = 0;
    for (int i = 0; i < n_cases; i++) {
        const Str *c = &cases[i];
        plans[i] = xmalloc((c->len * 2 + 2) * sizeof **plans);
        n_plan[i] = 0;
        if (c->len == 0) continue;
        size_t pos = 0;
        bool first = true;
        for (;;) {
            size_t e = pos;
            while (e < c->len && c->s[e] != '\n') e++;
            size_t seg_len = e - pos;
            size_t k = 0;
            while (e + k < c->len && c->s[e + k] == '\n') k++;
            PlanItem *it = &plans[i][n_plan[i]];
            if (first) {
                if (seg_len) {
                    queries[nq].s = xmalloc(seg_len + 1);
                    memcpy(queries[nq].s, c->s + pos, seg_len);
                    queries[nq].len = seg_len;
                    *it = (PlanItem){0, nq++, 0, 0};
                } else {
                    *it = (PlanItem){1, 0, 0, 0};
                }
                n_plan[i]++;
                first = false;
            } else if (seg_len) {
                queries[nq].s = xmalloc(seg_len + 2);
                queries[nq].s[0] = '0';
                memcpy(queries[nq].s + 1, c->s + pos, seg_len);
                queries[nq].len = seg_len + 1;
                *it = (PlanItem){0, nq++, 2, 0};
                n_plan[i]++;
            }
            if (k) plans[i][n_plan[i]++] = (PlanItem){2, 0, 0, (int)k};
            pos = e + k;
            if (pos >= c->len) break;
        }
    }
    IntVec *res = calloc((size_t)(nq ? nq : 1), sizeof *res);
    if (!res) exit(1);
    int rc = spm_encode_lines(model, queries, nq, res);
    CHECK(rc == 0, "spm_encode failed to run");
    int ok = 0, bad = 0;
    for (int i = 0; rc == 0 && i < n_cases; i++) {
        IntVec want = {0};
        bool plan_ok = true;
        for (int j = 0; j < n_plan[i]; j++) {
            PlanItem *it = &plans[i][j];
            if (it->kind == 1) {
                iv_push(&want, ID_SPACE);
            } else if (it->kind == 2) {
                int k = it->count;
                for (; k > 10; k -= 10) iv_push(&want, ID_NL10);
                if (k > 0) iv_push(&want, 3 + k);
            } else {
                IntVec *r = &res[it->query];
                if (it->drop == 2 && (r->n < 2 || r->v[0] != ID_SPACE || r->v[1] != ID_ZERO)) plan_ok = false;
                for (int k = it->drop; k < r->n; k++) iv_push(&want, r->v[k]);
            }
        }
        int *ids = NULL;
        Error err = {{0}};
        int n = tokenizer_encode(t, cases[i].s, cases[i].len, false, &ids, &err);
        bool same = plan_ok && n >= 0 && ids_equal(ids, n, want.v, want.n);
        if (same) {
            ok++;
        } else {
            bad++;
            printf("corpus case %d differs from spm_encode%s\n", i + 1, plan_ok ? "" : " (bad composition)");
            print_case(&cases[i]);
            print_ids("spm_encode", want.v, want.n);
            if (n >= 0) print_ids("tokenizer ", ids, n);
            else printf("  tokenizer error: %s\n", err.msg);
        }
        CHECK(same, "corpus case %d", i + 1);
        free(ids);
        free(want.v);
    }
    printf("corpus vs spm_encode: %d/%d cases identical\n", ok, ok + bad);
    for (int i = 0; i < nq; i++) {
        free(queries[i].s);
        free(res[i].v);
    }
    for (int i = 0; i < n_cases; i++) free(plans[i]);
    free(plans);
    free(n_plan);
    free(queries);
    free(res);
}

/* decode(encode(x)): the text itself (invalid bytes as U+FFFD, "▁" as ' '),
 * the streaming decoder agrees, and spm_decode agrees on the same ids. */
static void test_corpus_decode(const Tokenizer *t, const char *model, const Str *cases, int n_cases) {
    Str *id_lines = xmalloc((size_t)n_cases * sizeof *id_lines);
    char **dec = xmalloc((size_t)n_cases * sizeof *dec);
    int exact = 0;
    for (int i = 0; i < n_cases; i++) {
        int *ids = NULL;
        Error err = {{0}};
        int n = tokenizer_encode(t, cases[i].s, cases[i].len, false, &ids, &err);
        CHECK(n >= 0, "encode case %d: %s", i + 1, err.msg);
        if (n < 0) n = 0;
        dec[i] = tokenizer_decode(t, ids, n);
        CHECK(dec[i] != NULL, "decode case %d", i + 1);
        Str want = expected_decode(&cases[i]);
        bool same = dec[i] && strlen(dec[i]) == want.len && memcmp(dec[i], want.s, want.len) == 0;
        CHECK(same, "decode(encode(case %d)) differs", i + 1);
        if (same && want.len == cases[i].len && memcmp(want.s, cases[i].s, want.len) == 0) exact++;
        if (!same) print_case(&cases[i]);
        Str st = stream_decode(t, ids, n);
        CHECK(dec[i] && st.len == strlen(dec[i]) && memcmp(st.s, dec[i], st.len) == 0,
              "streaming decode differs from tokenizer_decode, case %d", i + 1);
        free(st.s);
        free(want.s);
        /* ids as a line for spm_decode */
        id_lines[i].s = xmalloc((size_t)n * 12 + 1);
        id_lines[i].len = 0;
        for (int k = 0; k < n; k++)
            id_lines[i].len += (size_t)sprintf(id_lines[i].s + id_lines[i].len, k ? " %d" : "%d", ids[k]);
        free(ids);
    }
    printf("decode(encode(x)) == x exactly for %d/%d corpus cases (the rest hold invalid UTF-8 or U+2581)\n", exact,
           n_cases);
    if (g_have_spm) {
        size_t len;
        char *out = run_with_input("spm_decode --model='%s' --input_format=id", model, id_lines, n_cases, &len);
        CHECK(out != NULL, "spm_decode failed to run");
        size_t pos = 0;
        int agree = 0;
        for (int i = 0; out && i < n_cases; i++) {
            size_t dl = dec[i] ? strlen(dec[i]) : 0;
            bool same = dec[i] && pos + dl + 1 <= len && memcmp(out + pos, dec[i], dl) == 0 && out[pos + dl] == '\n';
            CHECK(same, "tokenizer_decode differs from spm_decode for case %d", i + 1);
            if (!same) {
                print_case(&cases[i]);
                break; /* the stream is out of step from here */
            }
            agree++;
            pos += dl + 1;
        }
        printf("decode vs spm_decode: %d/%d cases identical\n", agree, n_cases);
        free(out);
    }
    for (int i = 0; i < n_cases; i++) {
        free(id_lines[i].s);
        free(dec[i]);
    }
    free(id_lines);
    free(dec);
}

static void test_grok_basics(const Tokenizer *t) {
    CHECK(tokenizer_n_vocab(t) == 131072, "n_vocab %d", tokenizer_n_vocab(t));
    CHECK(tokenizer_bos(t) == 1 && tokenizer_eos(t) == 2 && tokenizer_unk(t) == 3 && tokenizer_pad(t) == 0,
          "special ids %d %d %d %d", tokenizer_bos(t), tokenizer_eos(t), tokenizer_unk(t), tokenizer_pad(t));
    size_t len;
    const char *p = tokenizer_piece(t, 325, &len);
    CHECK(p && len == 6 && memcmp(p, "\xe2\x96\x81\xe2\x96\x81", 6) == 0, "piece 325");
    CHECK(tokenizer_type(t, 0) == TOKEN_CONTROL && tokenizer_type(t, 3) == TOKEN_UNKNOWN &&
              tokenizer_type(t, 4) == TOKEN_USER_DEFINED && tokenizer_type(t, 69) == TOKEN_BYTE &&
              tokenizer_type(t, 325) == TOKEN_NORMAL,
          "token types");
    CHECK(tokenizer_find(t, "<|separator|>", 13) == 47, "find <|separator|>");
    CHECK(tokenizer_find(t, "<0x0A>", 6) == 79, "find <0x0A>");
    CHECK(tokenizer_find(t, "no such piece!", 14) == -1, "find missing");
    CHECK(tokenizer_score(t, 326) == -1.0f, "score 326");
    CHECK(tokenizer_piece(t, -1, &len) == NULL && len == 0, "piece -1");
    CHECK(tokenizer_piece(t, 131072, NULL) == NULL, "piece out of range");
    int *ids = NULL;
    Error err = {{0}};
    int n = tokenizer_encode(t, "Hello world", 11, true, &ids, &err);
    CHECK(n == 3 && ids[0] == 1 && ids[1] == 11770 && ids[2] == 1135, "encode with BOS");
    free(ids);
    n = tokenizer_encode(t, "", 0, false, &ids, &err);
    CHECK(n == 0 && ids != NULL, "empty text");
    free(ids);
    n = tokenizer_encode(t, "", 0, true, &ids, &err);
    CHECK(n == 1 && ids[0] == 1, "empty text with BOS");
    free(ids);
    n = tokenizer_encode(t, NULL, 0, false, &ids, &err);
    CHECK(n == 0, "NULL empty text");
    free(ids);
    /* a NUL byte inside the text goes through byte fallback */
    n = tokenizer_encode(t, "a\0b", 3, false, &ids, &err);
    CHECK(n == 3 && ids[1] == BYTE_ID(0), "NUL byte");
    free(ids);
    /* text starting with '-' (not in the CLI corpus) */
    n = tokenizer_encode(t, "-1", 2, false, &ids, &err);
    CHECK(n >= 2 && ids[n - 1] == 15, "-1");
    free(ids);
}

static size_t push_str(const Tokenizer *t, TokenDecoder *d, int id, char *buf) {
    return token_decoder_push(t, d, id, buf, 128);
}

static void test_streaming(const Tokenizer *t) {
    TokenDecoder d;
    char buf[128];
    /* "€" = E2 82 AC split over three byte tokens */
    token_decoder_init(&d);
    CHECK(push_str(t, &d, BYTE_ID(0xE2), buf) == 0, "E2 held");
    CHECK(push_str(t, &d, BYTE_ID(0x82), buf) == 0, "82 held");
    size_t n = push_str(t, &d, BYTE_ID(0xAC), buf);
    CHECK(n == 3 && memcmp(buf, "\xe2\x82\xac", 3) == 0 && buf[3] == '\0', "euro completed");
    n = push_str(t, &d, 11770, buf); /* "▁Hello": not the first visible token */
    CHECK(n == 6 && strcmp(buf, " Hello") == 0, "space kept after bytes: '%s'", buf);
    CHECK(token_decoder_flush(&d, buf, sizeof buf) == 0, "nothing to flush");

    /* 😀 = F0 9F 98 80 */
    token_decoder_init(&d);
    CHECK(push_str(t, &d, BYTE_ID(0xF0), buf) == 0 && push_str(t, &d, BYTE_ID(0x9F), buf) == 0 &&
              push_str(t, &d, BYTE_ID(0x98), buf) == 0,
          "emoji held");
    n = push_str(t, &d, BYTE_ID(0x80), buf);
    CHECK(n == 4 && memcmp(buf, "\xf0\x9f\x98\x80", 4) == 0, "emoji completed");

    /* dummy prefix dropped at the start, also after control tokens */
    token_decoder_init(&d);
    CHECK(push_str(t, &d, 1, buf) == 0, "BOS gives nothing");
    n = push_str(t, &d, 11770, buf);
    CHECK(n == 5 && strcmp(buf, "Hello") == 0, "first token: '%s'", buf);
    n = push_str(t, &d, 1135, buf);
    CHECK(n == 6 && strcmp(buf, " world") == 0, "second token: '%s'", buf);
    n = push_str(t, &d, 2, buf);
    CHECK(n == 0, "EOS gives nothing");
    /* a caller continuing after a prompt keeps the space */
    token_decoder_init(&d);
    d.started = true;
    n = push_str(t, &d, 11770, buf);
    CHECK(n == 6 && strcmp(buf, " Hello") == 0, "started decoder keeps space");

    /* incomplete sequence cut by a normal token: each byte -> U+FFFD */
    token_decoder_init(&d);
    push_str(t, &d, BYTE_ID(0xE2), buf);
    push_str(t, &d, BYTE_ID(0x82), buf);
    n = push_str(t, &d, 11770, buf);
    CHECK(n == 12 && memcmp(buf, "\xef\xbf\xbd\xef\xbf\xbd Hello", 12) == 0, "cut sequence");
    /* ... and by a control token */
    token_decoder_init(&d);
    push_str(t, &d, BYTE_ID(0xE2), buf);
    n = push_str(t, &d, 1, buf);
    CHECK(n == 3 && memcmp(buf, "\xef\xbf\xbd", 3) == 0, "cut by control");
    /* flush of pending bytes */
    token_decoder_init(&d);
    push_str(t, &d, BYTE_ID(0xF0), buf);
    push_str(t, &d, BYTE_ID(0x9F), buf);
    n = token_decoder_flush(&d, buf, sizeof buf);
    CHECK(n == 6 && memcmp(buf, "\xef\xbf\xbd\xef\xbf\xbd", 6) == 0, "flush");
    CHECK(d.n_pending == 0, "flush empties");

    /* invalid bytes */
    token_decoder_init(&d);
    n = push_str(t, &d, BYTE_ID(0xFF), buf);
    CHECK(n == 3 && memcmp(buf, "\xef\xbf\xbd", 3) == 0, "FF at once");
    push_str(t, &d, BYTE_ID(0xC3), buf);
    n = push_str(t, &d, BYTE_ID(0x41), buf);
    CHECK(n == 4 && memcmp(buf, "\xef\xbf\xbd" "A", 4) == 0, "C3 41");
    push_str(t, &d, BYTE_ID(0xED), buf);
    push_str(t, &d, BYTE_ID(0xA0), buf);
    n = push_str(t, &d, BYTE_ID(0x80), buf);
    CHECK(n == 9, "surrogate: 3 replacement characters (%zu)", n);
    push_str(t, &d, BYTE_ID(0xC0), buf);
    n = push_str(t, &d, BYTE_ID(0xAF), buf);
    CHECK(n == 6, "overlong: 2 replacement characters (%zu)", n);

    /* unknown token */
    token_decoder_init(&d);
    n = push_str(t, &d, 3, buf);
    CHECK(n == 5 && strcmp(buf, "[UNK]") == 0, "unk surface '%s'", buf);
    n = push_str(t, &d, 11770, buf);
    CHECK(strcmp(buf, " Hello") == 0, "space kept after unk");

    /* out-of-range ids and tiny buffers are safe */
    token_decoder_init(&d);
    CHECK(push_str(t, &d, -5, buf) == 0 && push_str(t, &d, 1 << 30, buf) == 0, "bad ids");
    char small[4];
    n = token_decoder_push(t, &d, 11770, small, sizeof small);
    CHECK(n == 3 && small[3] == '\0', "truncated output");
    CHECK(token_decoder_push(t, &d, 11770, NULL, 0) == 0, "NULL output");

    /* whole-sequence decode */
    int ids[] = {1, 11770, 1135, BYTE_ID(0xE2), BYTE_ID(0x82), BYTE_ID(0xAC), 2};
    char *s = tokenizer_decode(t, ids, 7);
    CHECK(s && strcmp(s, "Hello world\xe2\x82\xac") == 0, "decode '%s'", s ? s : "(null)");
    free(s);
    s = tokenizer_decode(t, NULL, 0);
    CHECK(s && s[0] == '\0', "decode nothing");
    free(s);
    int bad[] = {BYTE_ID(0xE2), BYTE_ID(0x82)};
    s = tokenizer_decode(t, bad, 2);
    CHECK(s && strcmp(s, "\xef\xbf\xbd\xef\xbf\xbd") == 0, "decode incomplete tail");
    free(s);
}

/* ---- synthetic ------------------------------------------------------------- */

static const char *const roundtrip_texts[] = {
    "Hello world",
    "the quick brown fox jumps over the lazy dog",
    "The Quick Brown Fox",
    "  leading spaces",
    "trailing ",
    "tabs\tand\nnewlines\n",
    "x",
    "numbers 1234567890",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e text",
    "emoji \xf0\x9f\x98\x80 \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7",
    "caf\xc3\xa9 na\xc3\xafve",
    "[BOS] <0x41> <|separator|>",
    "punctuation: !?.,;:'\"()[]{}",
};

static void test_synthetic(void) {
    Error err = {{0}};
    CHECK(tokenizer_synthetic(299, &err) == NULL && err.msg[0], "n_vocab 299 refused");
    Tokenizer *small = tokenizer_synthetic(300, &err);
    CHECK(small != NULL, "n_vocab 300: %s", err.msg);
    Tokenizer *t = tokenizer_synthetic(4096, &err);
    Tokenizer *t2 = tokenizer_synthetic(4096, &err);
    Tokenizer *big = tokenizer_synthetic(200000, &err);
    CHECK(t && t2 && big, "synthetic: %s", err.msg);
    if (!t || !t2 || !big || !small) return;
    CHECK(tokenizer_n_vocab(t) == 4096 && tokenizer_n_vocab(big) == 200000, "sizes");
    CHECK(tokenizer_bos(t) == 1 && tokenizer_eos(t) == 2 && tokenizer_unk(t) == 3 && tokenizer_pad(t) == 0,
          "synthetic specials");
    CHECK(tokenizer_type(t, 0) == TOKEN_CONTROL && tokenizer_type(t, 1) == TOKEN_CONTROL &&
              tokenizer_type(t, 2) == TOKEN_CONTROL && tokenizer_type(t, 3) == TOKEN_UNKNOWN,
          "synthetic special types");
    size_t len;
    const char *p = tokenizer_piece(t, 4 + 0x41, &len);
    CHECK(p && len == 6 && memcmp(p, "<0x41>", 6) == 0 && tokenizer_type(t, 4 + 0x41) == TOKEN_BYTE, "byte pieces");
    const Tokenizer *all[] = {small, t, big};
    for (int k = 0; k < 3; k++) {
        int uniq = 1;
        for (int i = 0; i < tokenizer_n_vocab(all[k]); i++) {
            p = tokenizer_piece(all[k], i, &len);
            if (!p || tokenizer_find(all[k], p, len) != i) uniq = 0;
        }
        CHECK(uniq, "synthetic pieces unique (vocab %d)", tokenizer_n_vocab(all[k]));
    }
    int same = 1;
    for (int i = 0; i < 4096; i++) {
        size_t l1, l2;
        const char *a = tokenizer_piece(t, i, &l1), *b = tokenizer_piece(t2, i, &l2);
        if (l1 != l2 || memcmp(a, b, l1) || tokenizer_score(t, i) != tokenizer_score(t2, i) ||
            tokenizer_type(t, i) != tokenizer_type(t2, i))
            same = 0;
    }
    CHECK(same, "synthetic is deterministic");
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < sizeof roundtrip_texts / sizeof *roundtrip_texts; i++) {
            const char *s = roundtrip_texts[i];
            int *ids = NULL;
            int n = tokenizer_encode(all[k], s, strlen(s), false, &ids, &err);
            CHECK(n > 0, "synthetic encode: %s", err.msg);
            bool in_range = true;
            for (int j = 0; j < n; j++)
                if (ids[j] < 0 || ids[j] >= tokenizer_n_vocab(all[k])) in_range = false;
            CHECK(in_range, "ids in range");
            char *d = tokenizer_decode(all[k], ids, n);
            CHECK(d && strcmp(d, s) == 0, "synthetic round trip (vocab %d): '%s' -> '%s'", tokenizer_n_vocab(all[k]),
                  s, d ? d : "(null)");
            free(d);
            free(ids);
        }
    }
    /* non-trivial: common words merge into few tokens */
    const char *s = "the quick brown fox jumps over the lazy dog";
    int *ids = NULL;
    int n = tokenizer_encode(t, s, strlen(s), false, &ids, &err);
    CHECK(n > 0 && n <= 12, "synthetic merges words: %d tokens for %zu bytes", n, strlen(s));
    free(ids);
    tokenizer_free(small);
    tokenizer_free(t);
    tokenizer_free(t2);
    tokenizer_free(big);
}

/* ---- GGUF ------------------------------------------------------------------ */

static GGUFFile *write_and_open(GGUFWriter *w, const char *name, Error *err) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s_%d.gguf", g_tmp, name, (int)getpid());
    if (gguf_write(w, path, err) < 0) return NULL;
    GGUFFile *f = gguf_open(path, err);
    unlink(path);
    return f;
}

static void test_gguf_roundtrip(const Tokenizer *t, const Str *cases, int n_cases, const char *what) {
    Error err = {{0}};
    GGUFWriter *w = gguf_writer_new();
    CHECK(w != NULL, "writer");
    if (!w) return;
    gguf_set_str(w, "general.architecture", "grok");
    CHECK(tokenizer_to_gguf(t, w, &err) == 0, "tokenizer_to_gguf: %s", err.msg);
    GGUFFile *f = write_and_open(w, "tok_rt", &err);
    gguf_writer_free(w);
    CHECK(f != NULL, "GGUF write/open (%s): %s", what, err.msg);
    if (!f) return;
    GGUFString s;
    CHECK(gguf_get_str(f, "tokenizer.ggml.model", &s, &err) == 1 && s.len == 5 && !memcmp(s.data, "llama", 5),
          "model key");
    CHECK(gguf_get_str(f, "tokenizer.ggml.pre", &s, &err) == 1 && s.len == 7 && !memcmp(s.data, "default", 7),
          "pre key");
    bool b = true;
    CHECK(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b, &err) == 1 && !b, "add_bos_token false");
    CHECK(gguf_get_bool(f, "tokenizer.ggml.add_eos_token", &b, &err) == 1 && !b, "add_eos_token false");
    Tokenizer *g = tokenizer_from_gguf(f, &err);
    CHECK(g != NULL, "tokenizer_from_gguf (%s): %s", what, err.msg);
    if (g) {
        CHECK(tokenizer_n_vocab(g) == tokenizer_n_vocab(t), "n_vocab");
        CHECK(tokenizer_bos(g) == tokenizer_bos(t) && tokenizer_eos(g) == tokenizer_eos(t) &&
                  tokenizer_unk(g) == tokenizer_unk(t) && tokenizer_pad(g) == tokenizer_pad(t),
              "specials survive");
        int same = 1;
        for (int i = 0; i < tokenizer_n_vocab(t); i++) {
            size_t l1, l2;
            const char *a = tokenizer_piece(t, i, &l1), *c = tokenizer_piece(g, i, &l2);
            if (l1 != l2 || memcmp(a, c, l1) || tokenizer_score(t, i) != tokenizer_score(g, i) ||
                tokenizer_type(t, i) != tokenizer_type(g, i))
                same = 0;
        }
        CHECK(same, "pieces, scores and types survive (%s)", what);
        int agree = 0;
        for (int i = 0; i < n_cases; i++) {
            int *i1 = NULL, *i2 = NULL;
            int n1 = tokenizer_encode(t, cases[i].s, cases[i].len, false, &i1, &err);
            int n2 = tokenizer_encode(g, cases[i].s, cases[i].len, false, &i2, &err);
            if (n1 >= 0 && ids_equal(i1, n1, i2, n2)) {
                char *d1 = tokenizer_decode(t, i1, n1), *d2 = tokenizer_decode(g, i2, n2);
                if (d1 && d2 && strcmp(d1, d2) == 0) agree++;
                free(d1);
                free(d2);
            }
            free(i1);
            free(i2);
        }
        CHECK(agree == n_cases, "GGUF tokenizer encodes/decodes like the original (%s): %d/%d", what, agree,
              n_cases);
        tokenizer_free(g);
    }
    gguf_close(f);
}

/* A Grok-1 GGUF as llama.cpp's converter writes it: user-defined pieces
 * typed NORMAL. Loading must restore them, so that encoding still matches. */
static void test_gguf_llamacpp_types(const Tokenizer *t, const Str *cases, int n_cases) {
    int n = tokenizer_n_vocab(t);
    const char **toks = xmalloc((size_t)n * sizeof *toks);
    uint64_t *lens = xmalloc((size_t)n * sizeof *lens);
    float *scores = xmalloc((size_t)n * sizeof *scores);
    int32_t *types = xmalloc((size_t)n * sizeof *types);
    for (int i = 0; i < n; i++) {
        size_t l;
        toks[i] = tokenizer_piece(t, i, &l);
        lens[i] = l;
        scores[i] = tokenizer_score(t, i);
        types[i] = tokenizer_type(t, i) == TOKEN_USER_DEFINED ? TOKEN_NORMAL : tokenizer_type(t, i);
    }
    Error err = {{0}};
    GGUFWriter *w = gguf_writer_new();
    gguf_set_str(w, "general.architecture", "grok");
    gguf_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, lens, (uint64_t)n);
    gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, (uint64_t)n);
    gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)n);
    gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 3);
    gguf_set_u32(w, "tokenizer.ggml.padding_token_id", 0);
    GGUFFile *f = write_and_open(w, "tok_llamacpp", &err);
    gguf_writer_free(w);
    CHECK(f != NULL, "open: %s", err.msg);
    Tokenizer *g = f ? tokenizer_from_gguf(f, &err) : NULL;
    CHECK(g != NULL, "tokenizer_from_gguf (llama.cpp-style types): %s", err.msg);
    if (g) {
        CHECK(tokenizer_type(g, 4) == TOKEN_USER_DEFINED && tokenizer_type(g, 47) == TOKEN_USER_DEFINED &&
                  tokenizer_type(g, 68) == TOKEN_USER_DEFINED && tokenizer_type(g, 69) == TOKEN_BYTE,
              "user-defined types restored");
        int agree = 0;
        for (int i = 0; i < n_cases; i++) {
            int *i1 = NULL, *i2 = NULL;
            int n1 = tokenizer_encode(t, cases[i].s, cases[i].len, false, &i1, &err);
            int n2 = tokenizer_encode(g, cases[i].s, cases[i].len, false, &i2, &err);
            if (n1 >= 0 && ids_equal(i1, n1, i2, n2)) agree++;
            free(i1);
            free(i2);
        }
        CHECK(agree == n_cases, "llama.cpp-style GGUF encodes like the .model: %d/%d", agree, n_cases);
        tokenizer_free(g);
    }
    gguf_close(f);
    free(toks);
    free(lens);
    free(scores);
    free(types);
}

/* A GGUF with hand-set tokenizer keys; expects tokenizer_from_gguf to fail
 * with a message containing `needle`. */
static void gguf_expect_error(const char *model, int n_tok, int n_scores, int n_types, int bos, const char *needle) {
    Error err = {{0}};
    GGUFWriter *w = gguf_writer_new();
    if (!w) return;
    const char *toks[] = {"<unk>", "<s>", "</s>", "a", "b"};
    float scores[5] = {0};
    int32_t types[5] = {2, 3, 3, 1, 1};
    gguf_set_str(w, "general.architecture", "grok");
    if (model) gguf_set_str(w, "tokenizer.ggml.model", model);
    gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, (uint64_t)n_tok);
    if (n_scores >= 0) gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, (uint64_t)n_scores);
    if (n_types >= 0) gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)n_types);
    if (bos >= 0) gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    GGUFFile *f = write_and_open(w, "tok_err", &err);
    gguf_writer_free(w);
    CHECK(f != NULL, "open: %s", err.msg);
    if (!f) return;
    err.msg[0] = '\0';
    Tokenizer *t = tokenizer_from_gguf(f, &err);
    if (needle) {
        CHECK(t == NULL && strstr(err.msg, needle) != NULL, "expected an error with '%s', got '%s'", needle, err.msg);
    } else {
        CHECK(t != NULL, "expected success: %s", err.msg);
        if (t) {
            CHECK(tokenizer_n_vocab(t) == n_tok, "vocab");
            int *ids = NULL;
            int n = tokenizer_encode(t, "ab c", 4, false, &ids, &err);
            CHECK(n > 0, "minimal GGUF tokenizer encodes: %s", err.msg);
            free(ids);
        }
    }
    tokenizer_free(t);
    gguf_close(f);
}

/* GGUF vocabularies may repeat or leave empty entries: they load, and the
 * first of equal pieces is the one encoding produces. */
static void test_gguf_lenient(void) {
    Error err = {{0}};
    GGUFWriter *w = gguf_writer_new();
    if (!w) return;
    const char *toks[] = {"<unk>", "<s>", "</s>", "a", "", "a", "\342\226\201a", "\xe2\x96\x81"};
    gguf_set_str(w, "general.architecture", "grok");
    gguf_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 8);
    GGUFFile *f = write_and_open(w, "tok_lenient", &err);
    gguf_writer_free(w);
    CHECK(f != NULL, "open: %s", err.msg);
    Tokenizer *t = f ? tokenizer_from_gguf(f, &err) : NULL;
    CHECK(t != NULL, "lenient GGUF vocabulary: %s", err.msg);
    if (t) {
        CHECK(tokenizer_find(t, "a", 1) == 3, "first duplicate wins");
        CHECK(tokenizer_unk(t) == 0 && tokenizer_bos(t) == 1 && tokenizer_eos(t) == 2 && tokenizer_pad(t) == -1,
              "llama.cpp SPM defaults for the special ids");
        int *ids = NULL;
        int n = tokenizer_encode(t, "a a", 3, false, &ids, &err);
        CHECK(n == 2 && ids[0] == 6 && ids[1] == 6, "encode with the lenient vocabulary (%d)", n);
        free(ids);
    }
    tokenizer_free(t);
    gguf_close(f);
}

static void test_gguf_errors(void) {
    test_gguf_lenient();
    gguf_expect_error("gpt2", 5, 5, 5, -1, "pre-tokenizer"); /* gpt2 needs pre = grok-2 and merges */
    gguf_expect_error("bert", 5, 5, 5, -1, "bert");
    gguf_expect_error(NULL, 5, 5, 5, -1, "tokenizer.ggml.model");
    gguf_expect_error("llama", 5, 4, 5, -1, "scores");
    gguf_expect_error("llama", 5, 5, 3, -1, "token_type");
    gguf_expect_error("llama", 5, 5, 5, 9, "out of range");
    gguf_expect_error("llama", 5, -1, -1, -1, NULL); /* scores and types are optional */
    gguf_expect_error("llama", 5, 5, 5, 1, NULL);
}

/* ---- hand-built models ----------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t len, cap;
} PBuf;

static void pb_raw(PBuf *b, const void *d, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) exit(1);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void pb_varint(PBuf *b, uint64_t v) {
    unsigned char tmp[10];
    int n = 0;
    do {
        tmp[n] = (unsigned char)(v & 0x7F);
        v >>= 7;
        if (v) tmp[n] |= 0x80;
        n++;
    } while (v);
    pb_raw(b, tmp, (size_t)n);
}

static void pb_uint(PBuf *b, int field, uint64_t v) {
    pb_varint(b, (uint64_t)field << 3);
    pb_varint(b, v);
}

static void pb_bytes(PBuf *b, int field, const void *d, size_t n) {
    pb_varint(b, ((uint64_t)field << 3) | 2);
    pb_varint(b, n);
    pb_raw(b, d, n);
}

static void pb_float(PBuf *b, int field, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    unsigned char le[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                           (unsigned char)(u >> 24)};
    pb_varint(b, ((uint64_t)field << 3) | 5);
    pb_raw(b, le, 4);
}

typedef struct {
    const char *s;
    float score;
    int type;
} MiniPiece;

typedef struct {
    int model_type;
    int byte_fallback;
    int add_dummy_prefix;   /* -1: leave out (default true) */
    int remove_extra_ws;    /* -1: leave out (default true) */
    int escape_ws;          /* -1: leave out */
    const char *unk_surface; /* NULL: leave out */
} MiniSpec;

static PBuf build_model(const MiniPiece *pieces, int n, const MiniSpec *spec) {
    PBuf m = {0};
    for (int i = 0; i < n; i++) {
        PBuf p = {0};
        pb_bytes(&p, 1, pieces[i].s, strlen(pieces[i].s));
        pb_float(&p, 2, pieces[i].score);
        if (pieces[i].type != TOKEN_NORMAL) pb_uint(&p, 3, (uint64_t)pieces[i].type);
        pb_bytes(&m, 1, p.p, p.len);
        free(p.p);
    }
    if (spec->byte_fallback) {
        for (int b = 0; b < 256; b++) {
            char s[8];
            snprintf(s, sizeof s, "<0x%02X>", b);
            PBuf p = {0};
            pb_bytes(&p, 1, s, 6);
            pb_float(&p, 2, 0.0f);
            pb_uint(&p, 3, TOKEN_BYTE);
            pb_bytes(&m, 1, p.p, p.len);
            free(p.p);
        }
    }
    PBuf tr = {0};
    pb_uint(&tr, 3, (uint64_t)spec->model_type);
    pb_uint(&tr, 4, (uint64_t)(n + (spec->byte_fallback ? 256 : 0)));
    if (spec->byte_fallback) pb_uint(&tr, 35, 1);
    pb_uint(&tr, 40, 0);
    pb_uint(&tr, 41, 1);
    pb_uint(&tr, 42, 2);
    pb_uint(&tr, 43, (uint64_t)(int64_t)-1); /* 10-byte negative varint */
    if (spec->unk_surface) pb_bytes(&tr, 44, spec->unk_surface, strlen(spec->unk_surface));
    pb_bytes(&m, 2, tr.p, tr.len);
    free(tr.p);
    PBuf no = {0};
    pb_bytes(&no, 1, "identity", 8);
    if (spec->add_dummy_prefix >= 0) pb_uint(&no, 3, (uint64_t)spec->add_dummy_prefix);
    if (spec->remove_extra_ws >= 0) pb_uint(&no, 4, (uint64_t)spec->remove_extra_ws);
    if (spec->escape_ws >= 0) pb_uint(&no, 5, (uint64_t)spec->escape_ws);
    if (no.len) pb_bytes(&m, 3, no.p, no.len);
    free(no.p);
    return m;
}

#define SP "\xe2\x96\x81"

/* Unused pieces (split back), user-defined symbols, ties, no byte fallback. */
static const MiniPiece mini_a[] = {
    {"<unk>", 0, TOKEN_UNKNOWN}, {"<s>", 0, TOKEN_CONTROL}, {"</s>", 0, TOKEN_CONTROL},
    {"<sep>", 0, TOKEN_USER_DEFINED}, {"xy", 0, TOKEN_USER_DEFINED}, {"xyz", 0, TOKEN_USER_DEFINED},
    {SP, 0, TOKEN_NORMAL}, {"a", -1, TOKEN_NORMAL}, {"b", -2, TOKEN_NORMAL}, {"c", -3, TOKEN_NORMAL},
    {"d", -4, TOKEN_NORMAL}, {"e", -5, TOKEN_NORMAL}, {"ab", 10, TOKEN_UNUSED}, {"abc", 5, TOKEN_NORMAL},
    {SP "a", 3, TOKEN_NORMAL}, {"cd", 2, TOKEN_NORMAL}, {SP SP, 1, TOKEN_NORMAL}, {"de", 1, TOKEN_NORMAL},
    {"bc", 4, TOKEN_NORMAL}, {SP "ab", 6, TOKEN_UNUSED}, {SP "abc", 0.5f, TOKEN_NORMAL}, {"ed", 1, TOKEN_NORMAL},
    {"dede", 0.25f, TOKEN_UNUSED}, {"ded", 0.75f, TOKEN_NORMAL}, {"z", -6, TOKEN_NORMAL}, {"x", -7, TOKEN_NORMAL},
};

static const char *const mini_texts[] = {
    "abc", "ab", "  a  b  ", "a b c", "x", "xy", "xyz", "xyzz", "a<sep>b", "<sep>", "<se", "dede", "deded",
    "ededed", "abcd", "cdab", "bab", "abab", "ab ab", " ", "   ", SP, "a" SP "b", "\xc3\xa9", "a\xc3\xa9",
    "\xff", "q", "aaa bbb ccc", "edcba", "cdcdcd", "  lead", "trail  ", "x y z", "zyx", "abcabcabc", "d e d e",
};

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* Random id sequences decoded by tokenizer_decode and by spm_decode. */
static void compare_mini_decode(const char *name, const char *path, const Tokenizer *t) {
    enum { N_SEQ = 300 };
    Str lines[N_SEQ];
    char *dec[N_SEQ];
    int nv = tokenizer_n_vocab(t);
    int nul_id = tokenizer_find(t, "<0x00>", 6);
    for (int i = 0; i < N_SEQ; i++) {
        int ids[8], n = (int)(rnd() % 7);
        lines[i].s = xmalloc(8 * 12);
        lines[i].len = 0;
        for (int k = 0; k < n; k++) {
            do ids[k] = (int)(rnd() % (uint64_t)nv);
            while (ids[k] == nul_id); /* the comparison works on C strings */
            lines[i].len += (size_t)sprintf(lines[i].s + lines[i].len, k ? " %d" : "%d", ids[k]);
        }
        dec[i] = tokenizer_decode(t, ids, n);
    }
    size_t len;
    char *out = run_with_input("spm_decode --model='%s' --input_format=id", path, lines, N_SEQ, &len);
    CHECK(out != NULL, "spm_decode on mini model %s", name);
    size_t pos = 0;
    int agree = 0;
    for (int i = 0; out && i < N_SEQ; i++) {
        size_t dl = dec[i] ? strlen(dec[i]) : 0;
        bool same = dec[i] && pos + dl + 1 <= len && memcmp(out + pos, dec[i], dl) == 0 && out[pos + dl] == '\n';
        CHECK(same, "mini model %s: decode of [%s] differs from spm_decode", name, lines[i].s);
        if (!same) break;
        agree++;
        pos += dl + 1;
    }
    printf("mini model %s vs spm_decode: %d/%d id sequences identical\n", name, agree, N_SEQ);
    free(out);
    for (int i = 0; i < N_SEQ; i++) {
        free(lines[i].s);
        free(dec[i]);
    }
}

static void compare_mini(const char *name, const MiniPiece *pieces, int n, const MiniSpec *spec) {
    PBuf m = build_model(pieces, n, spec);
    Error err = {{0}};
    Tokenizer *t = tokenizer_from_spm_memory(m.p, m.len, &err);
    CHECK(t != NULL, "mini model %s: %s", name, err.msg);
    if (!t) {
        free(m.p);
        return;
    }
    int nt = (int)(sizeof mini_texts / sizeof *mini_texts);
    Str lines[64];
    for (int i = 0; i < nt; i++) {
        lines[i].s = (char *)mini_texts[i];
        lines[i].len = strlen(mini_texts[i]);
    }
    /* every text encodes and decodes without error */
    for (int i = 0; i < nt; i++) {
        int *ids = NULL;
        int k = tokenizer_encode(t, lines[i].s, lines[i].len, false, &ids, &err);
        CHECK(k >= 0, "mini %s encode: %s", name, err.msg);
        char *d = tokenizer_decode(t, ids, k > 0 ? k : 0);
        CHECK(d != NULL, "mini decode");
        free(d);
        free(ids);
    }
    if (g_have_spm) {
        char path[1200];
        snprintf(path, sizeof path, "%s/tok_mini_%s_%d.model", g_tmp, name, (int)getpid());
        FILE *f = fopen(path, "wb");
        CHECK(f != NULL, "write %s", path);
        if (f) {
            fwrite(m.p, 1, m.len, f);
            fclose(f);
            IntVec res[64];
            memset(res, 0, sizeof res);
            int rc = spm_encode_lines(path, lines, nt, res);
            CHECK(rc == 0, "spm_encode on mini model %s", name);
            int agree = 0;
            for (int i = 0; rc == 0 && i < nt; i++) {
                int *ids = NULL;
                int k = tokenizer_encode(t, lines[i].s, lines[i].len, false, &ids, &err);
                bool same = k >= 0 && ids_equal(ids, k, res[i].v, res[i].n);
                CHECK(same, "mini model %s, text '%s'", name, mini_texts[i]);
                if (!same) {
                    print_ids("spm_encode", res[i].v, res[i].n);
                    print_ids("tokenizer ", ids, k);
                } else {
                    agree++;
                }
                free(ids);
            }
            for (int i = 0; i < nt; i++) free(res[i].v);
            printf("mini model %s vs spm_encode: %d/%d texts identical\n", name, agree, nt);
            compare_mini_decode(name, path, t);
            unlink(path);
        }
    }
    tokenizer_free(t);
    free(m.p);
}

static void test_mini_models(void) {
    int n = (int)(sizeof mini_a / sizeof *mini_a);
    MiniSpec a = {2, 0, -1, -1, -1, NULL};
    compare_mini("a", mini_a, n, &a);
    MiniSpec b = {2, 1, 1, 0, -1, NULL};
    compare_mini("b", mini_a, n, &b);
    MiniSpec c = {2, 1, 0, 0, -1, NULL};
    compare_mini("c", mini_a, n, &c);
    MiniSpec d = {2, 0, 1, 1, -1, "<UNK!>"};
    compare_mini("d", mini_a, n, &d);
    MiniSpec e = {2, 1, 1, 0, 0, ""};
    compare_mini("e", mini_a, n, &e);
    MiniSpec f = {2, 0, 0, 1, -1, NULL};
    compare_mini("f", mini_a, n, &f);

    /* refusals */
    Error err = {{0}};
    MiniSpec uni = {1, 0, -1, -1, -1, NULL};
    PBuf m = build_model(mini_a, n, &uni);
    CHECK(tokenizer_from_spm_memory(m.p, m.len, &err) == NULL && strstr(err.msg, "UNIGRAM"),
          "unigram refused: %s", err.msg);
    free(m.p);
    MiniPiece nounk[] = {{SP, 0, TOKEN_NORMAL}, {"a", 0, TOKEN_NORMAL}};
    MiniSpec bpe = {2, 0, -1, -1, -1, NULL};
    m = build_model(nounk, 2, &bpe);
    CHECK(tokenizer_from_spm_memory(m.p, m.len, &err) == NULL && strstr(err.msg, "unknown"),
          "model without unk refused: %s", err.msg);
    free(m.p);
    MiniPiece dup[] = {{"<unk>", 0, TOKEN_UNKNOWN}, {"a", 0, TOKEN_NORMAL}, {"a", 0, TOKEN_NORMAL}};
    m = build_model(dup, 3, &bpe);
    CHECK(tokenizer_from_spm_memory(m.p, m.len, &err) == NULL && strstr(err.msg, "duplicate"),
          "duplicate piece refused: %s", err.msg);
    free(m.p);
    CHECK(tokenizer_from_spm_memory("", 0, &err) == NULL, "empty buffer refused");
    CHECK(tokenizer_from_spm_file("/nonexistent/tokenizer.model", &err) == NULL && strstr(err.msg, "nonexistent"),
          "missing file: %s", err.msg);
}

/* ---- corrupt models ----------------------------------------------------------- */

static int try_model(const unsigned char *buf, size_t len) {
    Error err = {{0}};
    Tokenizer *t = tokenizer_from_spm_memory(buf, len, &err);
    if (!t) return err.msg[0] ? 0 : -1; /* failures must explain themselves */
    static const char text[] = "Hello wor\xffld <sep> abc  12";
    int *ids = NULL;
    int n = tokenizer_encode(t, text, sizeof text - 1, true, &ids, &err);
    if (n >= 0) {
        char *d = tokenizer_decode(t, ids, n);
        free(d);
    }
    free(ids);
    tokenizer_free(t);
    return 1;
}

static void test_corrupt(const unsigned char *model, size_t model_len) {
    int bad = 0, loaded = 0, tried = 0;
    if (model) {
        for (size_t cut = 0; cut < model_len; cut += cut < 400 ? 1 : cut + 120 > model_len ? 1 : 4099) {
            int r = try_model(model, cut);
            tried++;
            if (r < 0) bad++;
            if (r > 0) loaded++;
        }
        /* a few random corruptions of the real model */
        unsigned char *copy = xmalloc(model_len);
        for (int it = 0; it < 24; it++) {
            memcpy(copy, model, model_len);
            int flips = 1 + (int)(rnd() % 8);
            for (int k = 0; k < flips; k++) copy[rnd() % model_len] = (unsigned char)rnd();
            int r = try_model(copy, model_len);
            tried++;
            if (r < 0) bad++;
            if (r > 0) loaded++;
        }
        free(copy);
    }
    /* many random corruptions of a small model */
    MiniSpec s = {2, 1, 1, 0, -1, NULL};
    PBuf m = build_model(mini_a, (int)(sizeof mini_a / sizeof *mini_a), &s);
    unsigned char *copy = xmalloc(m.len);
    for (int it = 0; it < 3000; it++) {
        memcpy(copy, m.p, m.len);
        size_t len = m.len;
        int flips = 1 + (int)(rnd() % 6);
        for (int k = 0; k < flips; k++) copy[rnd() % m.len] = (unsigned char)rnd();
        if (it % 3 == 0) len = rnd() % (m.len + 1);
        int r = try_model(copy, len);
        tried++;
        if (r < 0) bad++;
        if (r > 0) loaded++;
    }
    free(copy);
    free(m.p);
    CHECK(bad == 0, "%d corrupt models failed without a message", bad);
    printf("corrupt models: %d tried, %d still loaded, none crashed\n", tried, loaded);
}

/* ---- speed --------------------------------------------------------------------- */

static void test_speed(const Tokenizer *t, const Str *cases, int n_cases) {
    size_t target = 100 * 1024, len = 0;
    char *text = xmalloc(target + 4096);
    for (int i = 0; len < target; i = (i + 1) % n_cases) {
        if (cases[i].len > 2000 || has_nul(&cases[i])) continue;
        memcpy(text + len, cases[i].s, cases[i].len);
        len += cases[i].len;
        text[len++] = ' ';
    }
    int *ids = NULL;
    Error err = {{0}};
    double t0 = time_now();
    int n = tokenizer_encode(t, text, len, false, &ids, &err);
    double dt = time_now() - t0;
    CHECK(n > 0, "encode 100 KB: %s", err.msg);
    CHECK(dt < 1.0, "encoding 100 KB took %.3f s", dt);
    printf("encode speed: %zu bytes -> %d tokens in %.1f ms (%.2f MB/s)\n", len, n, dt * 1e3, (double)len / dt / 1e6);
    t0 = time_now();
    char *d = tokenizer_decode(t, ids, n);
    dt = time_now() - t0;
    CHECK(d != NULL, "decode 100 KB");
    printf("decode speed: %d tokens in %.1f ms\n", n, dt * 1e3);
    free(d);
    free(ids);
    /* a single long word (one BPE run without spaces) */
    memset(text, 'a', target);
    t0 = time_now();
    n = tokenizer_encode(t, text, target, false, &ids, &err);
    dt = time_now() - t0;
    CHECK(n > 0 && dt < 1.0, "encoding 100 KB of 'a' took %.3f s", dt);
    free(ids);
    free(text);
}

int main(void) {
    const char *src = getenv("GROK_SRC");
    const char *shared = getenv("GROK_SHARED");
    const char *tmp = getenv("GROK_TMP");
    char model_path[1200], corpus_path[1200];
    if (!src) src = ".";
    if (shared) snprintf(model_path, sizeof model_path, "%s/models/grok-1/tokenizer.model", shared);
    else snprintf(model_path, sizeof model_path, "%s/../shared/models/grok-1/tokenizer.model", src);
    snprintf(corpus_path, sizeof corpus_path, "%s/tests/data/tokenizer_corpus.txt", src);
    snprintf(g_tmp, sizeof g_tmp, "%s", tmp ? tmp : "/tmp");
    if (tmp) {
        char cmd[1300];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmp);
        if (system(cmd) != 0) snprintf(g_tmp, sizeof g_tmp, "/tmp");
    }
    g_have_spm = system("command -v spm_encode >/dev/null 2>&1 && command -v spm_decode >/dev/null 2>&1") == 0;
    if (!g_have_spm) printf("spm_encode/spm_decode not installed: comparisons with SentencePiece skipped\n");

    test_synthetic();
    test_gguf_errors();
    test_mini_models();

    int n_cases = 0;
    Str *cases = load_corpus(corpus_path, &n_cases);
    CHECK(cases != NULL && n_cases >= 150, "corpus %s (%d cases)", corpus_path, n_cases);
    Error err = {{0}};
    size_t model_len = 0;
    unsigned char *model = (unsigned char *)read_file(model_path, &model_len);
    CHECK(model != NULL, "cannot read %s", model_path);
    Tokenizer *t = tokenizer_from_spm_file(model_path, &err);
    CHECK(t != NULL, "load %s: %s", model_path, err.msg);
    if (t && cases) {
        test_grok_basics(t);
        test_streaming(t);
        test_corpus_vs_spm(t, model_path, cases, n_cases);
        test_corpus_decode(t, model_path, cases, n_cases);
        test_gguf_roundtrip(t, cases, n_cases, "grok-1");
        test_gguf_llamacpp_types(t, cases, n_cases);
        test_speed(t, cases, n_cases);
    }
    if (cases) {
        Tokenizer *syn = tokenizer_synthetic(4096, &err);
        if (syn) test_gguf_roundtrip(syn, cases, n_cases, "synthetic");
        tokenizer_free(syn);
    }
    test_corrupt(model, model_len);

    tokenizer_free(t);
    for (int i = 0; i < n_cases; i++) free(cases[i].s);
    free(cases);
    free(model);
    return check_report("tokenizer");
}
