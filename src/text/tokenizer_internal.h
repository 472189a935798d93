/* tokenizer_internal.h - what the two halves of the tokenizer share: the
 * Tokenizer itself, its construction and lookup helpers and the BPE merge
 * queue (tokenizer.c, which also holds SentencePiece and decoding), and the
 * byte-level BPE entry points (tokenizer_bpe.c, Grok-2). Not a public
 * interface: tokenizer.h is. */
#ifndef GROK_TOKENIZER_INTERNAL_H
#define GROK_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

#define REPL_CHAR "\xef\xbf\xbd"          /* U+FFFD, what an invalid UTF-8 byte becomes */
#define MAX_VOCAB (1 << 24)               /* largest vocabulary accepted */
#define MAX_TEXT_LEN ((size_t)1 << 28)    /* longest text encoded or split at once */

typedef struct {
    int32_t first_child;
    int32_t next_sibling;
    int32_t terminal; /* 1 + id of the user-defined symbol that ends here, 0 if none */
    unsigned char byte;
} TrieNode;

struct Tokenizer {
    int n;
    char *arena; /* all pieces, each NUL-terminated */
    size_t arena_len, arena_cap;
    size_t *off;
    uint32_t *len;
    float *score;
    uint8_t *type;
    int32_t *table; /* open addressing: piece -> id, -1 = empty */
    uint32_t mask;
    int32_t byte_id[256];
    TrieNode *trie; /* user-defined symbols; node 0 is the root */
    int n_trie;
    int bos, eos, unk, pad;
    bool add_dummy_prefix;
    bool remove_extra_ws;
    bool escape_ws;
    bool byte_fallback;
    bool has_unused;
    char *unk_surface; /* NULL: unknown tokens decode as their piece text */
    size_t unk_surface_len;
    size_t max_merge_len; /* longest piece a merge can produce */
    /* Byte-level BPE ("gpt2" model, Grok-2). The pieces of normal tokens are
     * raw bytes (decoded from GGUF's byte-to-unicode spelling); special
     * (control / user-defined) pieces are their text. Merge r joins the
     * bytes merge_off[r] .. + merge_len[r] split after merge_split[r]. */
    bool bpe;
    char pre[32];           /* pre-tokenizer name */
    int n_merges;
    size_t *merge_off;
    uint32_t *merge_len, *merge_split;
    int32_t *merge_table;   /* open addressing: (bytes, split) -> rank, -1 = empty */
    uint32_t merge_mask;
    int32_t byte_tok[256];  /* id of the normal token of each single byte, -1 if none */
};

/* ---- small helpers (tokenizer.c) ---- */

static inline uint32_t tok_hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h ^ (h >> 15);
}

/* Length of the valid UTF-8 character at s (n > 0 bytes available), or 0
 * if it is invalid there (SentencePiece's DecodeUTF8 rules: no overlongs,
 * no surrogates, nothing above U+10FFFF, a truncated sequence is invalid). */
size_t tok_utf8_valid_len(const unsigned char *s, size_t n);

/* Bytes of one character as SentencePiece's matcher steps over normalized
 * text (by lead byte only). */
static inline size_t tok_one_char_len(unsigned char c) {
    static const unsigned char tbl[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return tbl[c >> 4];
}

/* ---- construction and lookup (tokenizer.c) ---- */

/* A tokenizer of n empty pieces (no specials, SentencePiece defaults). */
Tokenizer *tok_alloc(int n, Error *err);
/* Copies s[0..n) into the arena; *off gets its offset. */
int tok_arena_append(Tokenizer *t, const char *s, size_t n, size_t *off, Error *err);
/* Stores piece i (text copied). No duplicate check here. */
int tok_set(Tokenizer *t, int i, const char *s, size_t n, float score, int type, Error *err);

static inline const char *tok_piece_ptr(const Tokenizer *t, int id) { return t->arena + t->off[id]; }

/* Id of the piece s[0..n), -1 if none. */
int tok_lookup(const Tokenizer *t, const char *s, size_t n);
/* Inserts piece id into the hash table; returns the id of an existing equal
 * piece, or -1 if it was inserted. */
int tok_table_insert(Tokenizer *t, int id);
/* Adds s[0..n) ending in symbol id to the trie of t->n_trie nodes (room for
 * *cap, grown as needed). */
int tok_trie_add(Tokenizer *t, const char *s, size_t n, int id, int *cap, Error *err);
/* Longest user-defined symbol that is a prefix of s[0..n), 0 if none;
 * *id (if not NULL) gets its id. */
size_t tok_user_match_id(const Tokenizer *t, const char *s, size_t n, int *id);

static inline size_t tok_user_match(const Tokenizer *t, const char *s, size_t n) {
    return tok_user_match_id(t, s, n, NULL);
}

/* Reads special token id `key` of a vocabulary of n: def (if in range, else
 * -1) when absent, -1 for UINT32_MAX, an error when out of range. */
int tok_gguf_special(const GGUFFile *f, const char *key, int n, int def, int *out, Error *err);

/* Word lists of the synthetic vocabularies (tokenizer.c). */
extern const char *const tok_synth_subwords[];
extern const size_t tok_n_synth_subwords;
extern const char *const tok_synth_words[];
extern const size_t tok_n_synth_words;

/* ---- the BPE merge queue, shared by both encoders (tokenizer.c) ---- */

typedef struct {
    uint32_t start, len;
    int32_t prev, next;
    bool freeze;
} Sym;

typedef struct {
    float score;
    int32_t left, right;
    uint32_t size;
} Pair;

typedef struct {
    const Tokenizer *t;
    const char *text;
    Sym *sym;
    Pair *heap;
    size_t n_heap, cap_heap;
    uint32_t *rev_split; /* unused piece id -> length of the left part it was merged from (0: none) */
    int *ids;
    int n_ids;
    bool prev_unk; /* the last piece emitted was the unknown id */
} Enc;

/* Highest score first, ties to the leftmost pair. */
void tok_heap_push(Enc *e, Pair p);
Pair tok_heap_pop(Enc *e);

/* ---- byte-level BPE, Grok-2 (tokenizer_bpe.c) ---- */

/* Whether a piece of this type is raw bytes in a byte-level vocabulary. */
static inline bool bpe_normal(int type) { return type == TOKEN_NORMAL || type == TOKEN_UNUSED || type == TOKEN_BYTE; }
int bpe_encode(const Tokenizer *t, const char *text, size_t len, bool add_bos, int **ids_out, Error *err);
/* tokenizer.ggml.model = "gpt2"; tokens is the checked token array. */
Tokenizer *bpe_from_gguf(const GGUFFile *f, const GGUFKV *tokens, Error *err);
int bpe_to_gguf(const Tokenizer *t, GGUFWriter *w, Error *err);

#endif
