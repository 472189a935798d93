/* test_grammar.c - unit tests for grammar.c: GBNF parsing (llama.cpp's
 * syntax, errors with line and column), matching strings, the token trie and
 * the matcher (a token is allowed by the cheap check exactly when the full
 * mask keeps it), constrained sampling, and the mask's speed over the
 * Grok-1 vocabulary. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "grammar.h"
#include "sampler.h"
#include "tokenizer.h"
#include "check.h"

/* llama.cpp's grammars/json.gbnf, as written there */
static const char *JSON_GBNF =
    "root   ::= object\n"
    "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
    "\n"
    "object ::=\n"
    "  \"{\" ws (\n"
    "            string \":\" ws value\n"
    "    (\",\" ws string \":\" ws value)*\n"
    "  )? \"}\" ws\n"
    "\n"
    "array  ::=\n"
    "  \"[\" ws (\n"
    "            value\n"
    "    (\",\" ws value)*\n"
    "  )? \"]\" ws\n"
    "\n"
    "string ::=\n"
    "  \"\\\"\" (\n"
    "    [^\"\\\\\\x7F\\x00-\\x1F] |\n"
    "    \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}) # escapes\n"
    "  )* \"\\\"\" ws\n"
    "\n"
    "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws\n"
    "\n"
    "# Optional space: by convention, applied in this grammar after literal chars when allowed\n"
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";

static Grammar *parse(const char *txt) {
    Error err = {{0}};
    Grammar *g = grammar_parse(txt, strlen(txt), NULL, &err);
    if (!g) fprintf(stderr, "  parse error: %s\n", err.msg);
    return g;
}

static int match(const Grammar *g, const char *s) {
    Error err = {{0}};
    return grammar_match_string(g, s, strlen(s), &err);
}

static void expect_error(const char *txt, const char *needle) {
    Error err = {{0}};
    Grammar *g = grammar_parse(txt, strlen(txt), NULL, &err);
    CHECK(!g, "grammar %s should fail", txt);
    CHECK(strstr(err.msg, needle) != NULL, "error for %s: got '%s', want '%s'", txt, err.msg, needle);
    grammar_free(g);
}

static void test_parse_and_match(void) {
    Grammar *g = parse(JSON_GBNF);
    CHECK(g != NULL, "json.gbnf parses");
    if (g) {
        CHECK(match(g, "{}") == 1, "{}");
        CHECK(match(g, "{\"a\": [1, 2.5, -3e5, true, null, \"x\\u00e9\"]}") == 1, "nested");
        CHECK(match(g, "{\"caf\xc3\xa9\": \"\xe2\x82\xac\xf0\x9f\x98\x80\"}") == 1, "UTF-8 in strings");
        CHECK(match(g, "{\"a\": \"\xff\"}") == 0, "invalid UTF-8 rejected");
        CHECK(match(g, "{\"a\": \"\xc3\"}") == 0, "truncated UTF-8 rejected");
        CHECK(match(g, "{\"a\": \"\xed\xa0\x80\"}") == 0, "surrogate rejected");
        CHECK(match(g, "{\"a\" 1}") == 0, "missing colon");
        CHECK(match(g, "{\"a\": 1") == 0, "incomplete");
        CHECK(match(g, "[1]") == 0, "root is an object");
        CHECK(match(g, "{\"a\":\"\n\"}") == 0, "raw newline in string");
        grammar_free(g);
    }
    g = parse("root ::= \"ab\"{2,3} [x-z]? (\"-\" | \".\")+ \"e\"*\n");
    CHECK(g != NULL, "repetitions parse");
    if (g) {
        CHECK(match(g, "abab-") == 1, "abab-");
        CHECK(match(g, "abababx.-.eee") == 1, "abababx.-.eee");
        CHECK(match(g, "ab-") == 0, "one ab");
        CHECK(match(g, "abababab-") == 0, "four ab");
        CHECK(match(g, "ababx") == 0, "no separator");
        grammar_free(g);
    }
    g = parse("root ::= [^a-c] . [\\u00e0-\\u00ff] \"\\x41\\n\"\n# comment\n");
    CHECK(g != NULL, "classes parse");
    if (g) {
        CHECK(match(g, "d\xe4\xb8\xad\xc3\xa9\x41\n") == 1, "classes: d, CJK, e-acute, A\\n");
        CHECK(match(g, "a\xe4\xb8\xad\xc3\xa9\x41\n") == 0, "a excluded");
        CHECK(match(g, "dx\xc3\x9f\x41\n") == 0, "U+00DF below range");
        grammar_free(g);
    }
    /* a rule may be used before it is defined; alternatives on several lines */
    g = parse("root ::= item (\",\" item)*\nitem ::=\n  \"x\" |\n  \"y\" # z\n");
    CHECK(g && match(g, "x,y,x") == 1 && match(g, "x,") == 0, "forward refs");
    grammar_free(g);

    expect_error("root ::= \"a\"\nroot ::= \"b\"\n", "line 2, column 1: rule 'root' defined twice");
    expect_error("root ::= foo\n", "line 1, column 10: undefined rule 'foo'");
    expect_error("root ::= \"a\n", "line 1, column 10: unterminated string literal");
    expect_error("root ::= [ab\n", "unterminated character class");
    expect_error("root ::= (\"a\" \n  \"b\"\n", "line 3, column 1: expecting ')'");
    expect_error("\n\nroot := \"a\"\n", "line 3, column 6: expecting '::='");
    expect_error("root ::= \"a\" )\n", "unmatched ')'");
    expect_error("root ::= * \"a\"\n", "expecting something before '*'");
    expect_error("root ::= \"a\"{3,1}\n", "n < m");
    expect_error("root ::= \"a\"{1000000}\n", "too large");
    expect_error("root ::= \"\\q\"\n", "unknown escape");
    expect_error("root ::= [z-a]\n", "out of order");
    expect_error("root ::= root \"a\" | \"a\"\n", "left recursion");
    expect_error("root ::= x \"a\"\nx ::= | y\ny ::= root\n", "left recursion");
    expect_error("root ::= (\"a\"?)*\n", "left recursion");
    expect_error("start ::= \"a\"\n", "no rule named 'root'");
    expect_error("root ::= <[1]>\n", "token references");
    /* an ambiguous grammar hits the matcher's limits: an error, quickly, not a hang */
    g = parse("root ::= \"a\"{0,6000} \"a\"{0,6000} \"b\"\n");
    if (g) {
        char *as = malloc(6001);
        memset(as, 'a', 6000);
        as[6000] = 0;
        Error err = {{0}};
        double t0 = time_now();
        int r = grammar_match_string(g, as, 6000, &err);
        CHECK(r == -1 && strstr(err.msg, "too ambiguous"), "ambiguous grammar: %d %s", r, err.msg);
        CHECK(time_now() - t0 < 5.0, "ambiguous grammar took %.1f s", time_now() - t0);
        CHECK(match(g, "aaab") == 1, "ambiguous grammar, short input");
        free(as);
        grammar_free(g);
    }
    /* deep nesting is an error, not a stack overflow */
    {
        char *deep = malloc(20000);
        strcpy(deep, "root ::= ");
        size_t o = strlen(deep);
        for (int i = 0; i < 5000; i++) deep[o++] = '(';
        deep[o++] = '"', deep[o++] = 'a', deep[o++] = '"';
        for (int i = 0; i < 5000; i++) deep[o++] = ')';
        deep[o] = 0;
        expect_error(deep, "nested too deeply");
        free(deep);
    }
}

typedef struct {
    GrammarMatcher *m;
} FCtx;
static bool f_allows(void *c, int t) { return grammar_matcher_allows(((FCtx *)c)->m, t); }
static int f_mask(void *c, float *l) { return grammar_matcher_mask(((FCtx *)c)->m, l); }

/* allows() agrees with mask() for every token, along a random walk */
static void test_matcher(const Tokenizer *tok, const char *name, int steps, const char *prefix) {
    Error err = {{0}};
    TokenTrie *tt = token_trie_new(tok, &err);
    CHECK(tt != NULL, "%s: trie: %s", name, err.msg);
    Grammar *g = parse(JSON_GBNF);
    if (!tt || !g) {
        token_trie_free(tt);
        grammar_free(g);
        return;
    }
    const int V = tokenizer_n_vocab(tok), eos = tokenizer_eos(tok);
    GrammarMatcher *m = grammar_matcher_new(g, tt, &eos, 1, &err);
    CHECK(m != NULL, "%s: matcher: %s", name, err.msg);
    if (m && prefix) CHECK(grammar_matcher_accept_bytes(m, prefix, strlen(prefix), &err) == 0, "prefix: %s", err.msg);
    float *lg = malloc((size_t)V * sizeof *lg);
    SamplerParams sp = sampler_defaults();
    sp.top_k = 0, sp.top_p = 1, sp.min_p = 0, sp.temperature = 1.0f, sp.seed = 7;
    Sampler *smp = sampler_new(&sp, V, &err);
    FCtx fc = {m};
    TokenFilter f = {&fc, f_allows, f_mask};
    char *text = calloc(1, 1 << 16);
    size_t tl = 0;
    TokenDecoder dec;
    token_decoder_init(&dec);
    int mismatches = 0, done = 0;
    double t_mask = 0;
    int n_mask = 0;
    for (int step = 0; step < steps && m && smp; step++) {
        for (int i = 0; i < V; i++) lg[i] = 0.0f;
        double t0 = time_now();
        int n_ok = grammar_matcher_mask(m, lg);
        t_mask += time_now() - t0, n_mask++;
        CHECK(n_ok > 0, "%s: step %d: no token allowed", name, step);
        if (step < 6) /* the whole vocabulary, a few times */
            for (int t = 0; t < V; t++)
                if (grammar_matcher_allows(m, t) != isfinite(lg[t])) mismatches++;
        /* sample from uniform logits: a random walk through the grammar */
        for (int i = 0; i < V; i++) lg[i] = 0.0f;
        int t = sampler_sample_filtered(smp, lg, &f);
        CHECK(t >= 0, "%s: step %d: sampled %d", name, step, t);
        if (t < 0) break;
        if (t == eos) {
            done = 1;
            break;
        }
        CHECK(grammar_matcher_accept(m, t, &err) == 0, "%s: accept %d: %s", name, t, err.msg);
        char piece[256];
        size_t n = token_decoder_push(tok, &dec, t, piece, sizeof piece);
        if (tl + n < (1 << 16)) memcpy(text + tl, piece, n), tl += n;
        if (grammar_matcher_must_end(m)) {
            done = 1;
            break;
        }
    }
    CHECK(mismatches == 0, "%s: %d tokens where allows() and mask() disagree", name, mismatches);
    fprintf(stderr, "  %s: %d vocab, %d trie nodes, mask %.3f ms mean over %d steps%s\n", name, V,
            token_trie_n_nodes(tt), 1e3 * t_mask / (n_mask ? n_mask : 1), n_mask, done ? " (complete)" : "");
    /* whatever was generated is a prefix of a sentence: when complete, a sentence */
    if (done && m) {
        size_t n = token_decoder_flush(&dec, text + tl, 16);
        tl += n;
        char *full = malloc(tl + (prefix ? strlen(prefix) : 0) + 1);
        sprintf(full, "%s%s", prefix ? prefix : "", text);
        CHECK(match(g, full) == 1, "%s: generated text is not a sentence: %s", name, full);
        free(full);
        CHECK(match(g, text) == 1 || prefix, "%s: generated text is not a sentence: %s", name, text);
    }
    free(text);
    free(lg);
    sampler_free(smp);
    grammar_matcher_free(m);
    grammar_free(g);
    token_trie_free(tt);
}

/* a grammar that forces a long exact string: the matcher must reach the end */
static void test_forced(const Tokenizer *tok) {
    Error err = {{0}};
    TokenTrie *tt = token_trie_new(tok, &err);
    Grammar *g = parse("root ::= \"Hello, world! \\u00e9\\u4e2d\" [0-9]{3}\n");
    const int V = tokenizer_n_vocab(tok), eos = tokenizer_eos(tok);
    GrammarMatcher *m = tt && g ? grammar_matcher_new(g, tt, &eos, 1, &err) : NULL;
    CHECK(m != NULL, "forced: %s", err.msg);
    float *lg = malloc((size_t)V * sizeof *lg);
    SamplerParams sp = sampler_defaults();
    sp.seed = 3;
    Sampler *smp = sampler_new(&sp, V, &err);
    FCtx fc = {m};
    TokenFilter f = {&fc, f_allows, f_mask};
    TokenDecoder dec;
    token_decoder_init(&dec);
    char out[512] = {0};
    size_t ol = 0;
    int n = 0;
    while (m && n < 100) {
        for (int i = 0; i < V; i++) lg[i] = (float)((i * 2654435761u) % 1000) / 100.0f;
        int t = sampler_sample_filtered(smp, lg, &f);
        if (t < 0 || t == eos) break;
        if (grammar_matcher_accept(m, t, &err)) break;
        ol += token_decoder_push(tok, &dec, t, out + ol, sizeof out - ol);
        n++;
        if (grammar_matcher_must_end(m)) break;
    }
    ol += token_decoder_flush(&dec, out + ol, sizeof out - ol);
    out[ol] = 0;
    CHECK(m && grammar_matcher_must_end(m), "forced: grammar complete after %d tokens: '%s'", n, out);
    CHECK(!strncmp(out, "Hello, world! \xc3\xa9\xe4\xb8\xad", 19) && ol == 22, "forced text '%s'", out);
    free(lg);
    sampler_free(smp);
    grammar_matcher_free(m);
    grammar_free(g);
    token_trie_free(tt);
}

int main(void) {
    test_parse_and_match();
    Error err = {{0}};
    Tokenizer *syn = tokenizer_synthetic(2000, &err);
    if (syn) {
        test_matcher(syn, "synthetic", 60, NULL);
        test_matcher(syn, "synthetic in a string", 60, "{\"a\": \"");
        test_forced(syn);
    }
    tokenizer_free(syn);
    Tokenizer *bpe = tokenizer_synthetic_gpt2(1000, &err);
    if (bpe) {
        test_matcher(bpe, "synthetic-bpe", 60, NULL);
        test_matcher(bpe, "synthetic-bpe in a string", 60, "{\"a\": [\"");
        test_forced(bpe);
    }
    tokenizer_free(bpe);
    const char *shared = getenv("GROK_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/models/grok-1/tokenizer.model", shared ? shared : "../shared");
    Tokenizer *g1 = tokenizer_from_spm_file(path, &err);
    if (g1) {
        test_matcher(g1, "grok-1", 40, NULL);
        test_matcher(g1, "grok-1 in a string", 40, "{\"a\": [\"");
        test_forced(g1);
    } else {
        fprintf(stderr, "  (no Grok-1 tokenizer at %s: %s)\n", path, err.msg);
    }
    tokenizer_free(g1);
    return check_report("grammar");
}
