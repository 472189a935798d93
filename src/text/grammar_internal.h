/* grammar_internal.h - the compiled form of a grammar, shared by the GBNF
 * compiler (grammar.c) and the matcher (grammar_matcher.c). Not a public
 * interface. */
#ifndef GROK_GRAMMAR_INTERNAL_H
#define GROK_GRAMMAR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "grammar.h"

enum { EL_END = 0, EL_SET = 1, EL_RULE = 2 };

typedef struct {
    int32_t type;
    int32_t arg; /* EL_SET: index into sets; EL_RULE: rule index */
} Elem;

typedef struct {
    uint64_t w[4];
} ByteSet;

/* Rule r's alternatives are alt_start[rule_alt0[r] .. rule_alt0[r + 1]); an
 * alternative is the elements from alt_start[a] up to an EL_END. */
struct Grammar {
    Elem *el;
    int n_el;
    int *alt_start;
    int n_alts;
    int *rule_alt0;
    int n_rules;
    ByteSet *sets;
    int n_sets;
    int root;
};

static inline bool set_has(const ByteSet *s, unsigned b) { return (s->w[b >> 6] >> (b & 63)) & 1; }
static inline void set_add(ByteSet *s, unsigned b) { s->w[b >> 6] |= 1ull << (b & 63); }

#endif
