/* grammar.h - grammar-constrained sampling: GBNF grammars as llama.cpp
 * writes them (rules "name ::= ...", "literals", [character classes],
 * [^negated], ".", groups, | alternatives, * + ? {m} {m,} {m,n}, # comments),
 * compiled to a byte-level pushdown automaton, and a matcher that tells which
 * tokens of a vocabulary may come next.
 *
 * Everything works on bytes: character classes become UTF-8 byte sequences,
 * so only complete, valid UTF-8 is ever accepted, and byte-fallback tokens
 * that carry half a character are handled like any other bytes.
 *
 * Speed over a 131,072-token vocabulary comes from (1) checking only the
 * token the sampler picked (a few byte steps) and computing the full mask
 * only when that token is rejected, and (2) a flat token trie (tokens'
 * decoded bytes, sorted, shared prefixes walked once, subtrees skipped as
 * soon as a byte is rejected). Parser stacks are hash-consed frames, so a
 * step costs a handful of table look-ups per live stack.
 *
 * Limits (errors, never hangs): grammar size, left recursion (rejected at
 * parse time, as llama.cpp does), and the number of simultaneous parser
 * stacks (an ambiguous grammar that needs more fails the matcher). */
#ifndef GROK_GRAMMAR_H
#define GROK_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"
#include "tokenizer.h"

typedef struct Grammar Grammar;

/* Parses GBNF text (len bytes, need not be NUL-terminated); `root` names the
 * start rule (NULL: "root"). Errors read "line L, column C: what". */
Grammar *grammar_parse(const char *text, size_t len, const char *root, Error *err);
void grammar_free(Grammar *g);
/* Rules and elements after compilation (for tests and limits). */
int grammar_n_rules(const Grammar *g);

/* The decoded bytes of every token, as a flat trie (read-only once built;
 * one per tokenizer, shared by all matchers). Control, unknown and unused
 * tokens have no bytes and are only ever allowed as end tokens. */
typedef struct TokenTrie TokenTrie;
TokenTrie *token_trie_new(const Tokenizer *t, Error *err);
void token_trie_free(TokenTrie *tt);
int token_trie_n_nodes(const TokenTrie *tt);

typedef struct GrammarMatcher GrammarMatcher;

/* A matcher over grammar g (which must outlive it) and trie tt. end_tokens
 * (EOS, the chat template's end-of-turn token) are allowed exactly when the
 * grammar can be complete. */
GrammarMatcher *grammar_matcher_new(const Grammar *g, const TokenTrie *tt, const int *end_tokens, int n_end,
                                    Error *err);
void grammar_matcher_free(GrammarMatcher *m);
/* The vocabulary size of the matcher's trie (0 without one). */
int grammar_matcher_n_vocab(const GrammarMatcher *m);
/* Whether `token` may come next (cheap: steps through its bytes only). */
bool grammar_matcher_allows(GrammarMatcher *m, int token);
/* Sets the logits of every token that may not come next to -INFINITY.
 * Returns how many tokens remain allowed (0: none; -1: internal limit). */
int grammar_matcher_mask(GrammarMatcher *m, float *logits);
/* Advances over an allowed token. -1 (with a message) if it is not allowed. */
int grammar_matcher_accept(GrammarMatcher *m, int token, Error *err);
/* Advances over raw bytes (tests, forced text). -1 if rejected. */
int grammar_matcher_accept_bytes(GrammarMatcher *m, const char *s, size_t n, Error *err);
/* The input so far is a complete sentence of the grammar. */
bool grammar_matcher_can_end(const GrammarMatcher *m);
/* ... and nothing can follow it. */
bool grammar_matcher_must_end(const GrammarMatcher *m);

/* The matcher as a sampler filter (sampler.h TokenFilter: {&ctx,
 * grammar_filter_allows, grammar_filter_mask}); n_vocab is the model's
 * logit count, and ids past the tokenizer's vocabulary are never allowed. */
typedef struct {
    GrammarMatcher *gm;
    int n_vocab;
    int n_masks;    /* full masks computed (the sampled token was rejected) */
    double seconds; /* time spent in checks and masks */
} GrammarFilter;
bool grammar_filter_allows(void *ctx, int token);
int grammar_filter_mask(void *ctx, float *logits);

/* Whether the whole of s is a sentence of g (tests, fuzzing). 1 yes, 0 no,
 * -1 error (limits). */
int grammar_match_string(const Grammar *g, const char *s, size_t n, Error *err);

#endif
