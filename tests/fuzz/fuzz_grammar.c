/* fuzz_grammar.c - libFuzzer target for the GBNF parser and the matcher:
 * parse arbitrary text as a grammar; when it is accepted, run a matcher over
 * a synthetic vocabulary (trie, masks, accepting allowed tokens) and match
 * a few strings made from the input, so that ASan/UBSan see the compiled
 * form and every limit path. A rejected grammar must say why. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    /* input: grammar text, then after a 0 byte (if any) a string to match */
    const uint8_t *nul = memchr(data, 0, size);
    size_t glen = nul ? (size_t)(nul - data) : size;
    char *g = malloc(glen ? glen : 1);
    if (!g) return 0;
    memcpy(g, data, glen);
    Error err = {{0}};
    Grammar *gr = grammar_parse(g, glen, NULL, &err);
    if (!gr) {
        if (!err.msg[0]) abort();
        free(g);
        return 0;
    }
    const char *rest = nul ? (const char *)nul + 1 : "";
    size_t rlen = nul ? size - glen - 1 : 0;
    if (grammar_match_string(gr, rest, rlen, &err) < 0 && !err.msg[0]) abort();
    static Tokenizer *tok;
    static TokenTrie *tt;
    if (!tok) { /* built once: the vocabulary does not depend on the input */
        tok = tokenizer_synthetic(600, &err);
        if (tok) tt = token_trie_new(tok, &err);
    }
    if (tt) {
        int eos = tokenizer_eos(tok), V = tokenizer_n_vocab(tok);
        GrammarMatcher *m = grammar_matcher_new(gr, tt, &eos, 1, &err);
        float *lg = malloc((size_t)V * sizeof *lg);
        for (int step = 0; m && lg && step < 8; step++) {
            for (int i = 0; i < V; i++) lg[i] = 0;
            int n = grammar_matcher_mask(m, lg);
            if (n <= 0) break;
            int pick = -1, k = 0; /* the (step % n)-th allowed token */
            for (int i = 0; i < V && pick < 0; i++)
                if (isfinite(lg[i]) && k++ == step % n) pick = i;
            if (pick < 0 || grammar_matcher_allows(m, pick) != true) abort(); /* mask and check agree */
            if (pick == eos) break;
            if (grammar_matcher_accept(m, pick, &err)) abort();
            if (grammar_matcher_must_end(m)) break;
        }
        free(lg);
        grammar_matcher_free(m);
    }
    grammar_free(gr);
    free(g);
    return 0;
}
