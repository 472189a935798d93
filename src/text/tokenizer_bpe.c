/* tokenizer_bpe.c - Grok-2's byte-level BPE (tokenizer.ggml.model "gpt2",
 * see tokenizer.h): GPT-2's byte-to-unicode spelling, the grok-2
 * pre-tokenizer, merges, encoding and splitting, loading from and saving to
 * GGUF, the import of tiktoken ranks (tokenizer.tok.json) and the synthetic
 * byte-level vocabulary. The Tokenizer, its lookup structures and the merge
 * queue are shared with the SentencePiece half (tokenizer.c, which also
 * decodes both kinds) through tokenizer_internal.h.
 *
 * Encoding (../shared/docs/grok-architecture.md B6; the reference is SGLang's
 * tiktoken tokenizer):
 *   1. invalid UTF-8 bytes become U+FFFD (as the SentencePiece path does);
 *   2. special tokens (control and user-defined pieces, e.g. <|separator|>)
 *      are matched whole, leftmost-longest, before anything else;
 *   3. the text between them is split by the grok-2 pre-tokenizer, the regex
 *        (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}
 *        | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *      implemented by hand below (grok2_match: what a backtracking regex
 *      engine returns at one position), with the character classes of
 *      unicode.h;
 *   4. a piece that is a token as a whole is that token (tiktoken does this
 *      lookup first); otherwise its bytes are merged by BPE: repeatedly the
 *      adjacent pair with the lowest merge rank, leftmost first. A final
 *      symbol that is not a token (inconsistent merges) falls back to its
 *      single-byte tokens.
 * Decoding concatenates the raw bytes (streamed as complete UTF-8; invalid
 * sequences become U+FFFD); control tokens give nothing, user-defined ones
 * their text. No BOS is added by default; EOS is id 2 unless the file says
 * otherwise. */
#include "tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

/* GPT-2's byte-to-unicode alphabet: the printable bytes ('!'..'~',
 * 0xA1..0xAC, 0xAE..0xFF) are written as the same code point, the other 68
 * as U+0100 + their order among them. */
static bool gpt2_printable(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

static uint32_t gpt2_byte_cp(unsigned b) {
    if (gpt2_printable(b)) return b;
    unsigned n = 0;
    for (unsigned c = 0; c < b; c++) n += !gpt2_printable(c);
    return 0x100 + n;
}

/* Byte of a GPT-2 alphabet code point, -1 if it is not one. */
static int gpt2_cp_byte(uint32_t cp) {
    if (cp < 0x100) return gpt2_printable(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68) return -1;
    unsigned n = 0;
    for (unsigned b = 0; b < 256; b++)
        if (!gpt2_printable(b) && n++ == cp - 0x100) return (int)b;
    return -1;
}

/* The code point of the valid UTF-8 sequence s[0..l). */
static uint32_t utf8_cp(const unsigned char *s, size_t l) {
    if (l == 1) return s[0];
    if (l == 2) return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    if (l == 3) return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
           (s[3] & 0x3F);
}

static size_t utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* GPT-2 spelling (UTF-8) -> raw bytes, in place-safe into out (at most n
 * bytes). Returns the byte count, or -1 if s is not in the alphabet. */
static long gpt2_decode(const char *s, size_t n, char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        size_t l = tok_utf8_valid_len((const unsigned char *)s + i, n - i);
        if (!l) return -1;
        int b = gpt2_cp_byte(utf8_cp((const unsigned char *)s + i, l));
        if (b < 0) return -1;
        out[o++] = (char)b;
        i += l;
    }
    return (long)o;
}

/* Raw bytes -> GPT-2 spelling; out needs 2n bytes. Returns its length. */
static size_t gpt2_encode(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += utf8_put(out + o, gpt2_byte_cp((unsigned char)s[i]));
    return o;
}

/* A copy of text with each invalid UTF-8 byte replaced by U+FFFD (3n + 1
 * bytes suffice). */
static char *utf8_sanitize(const char *text, size_t len, size_t *out_len) {
    char *out = malloc(len * 3 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t l = tok_utf8_valid_len((const unsigned char *)text + i, len - i);
        if (l) {
            memcpy(out + o, text + i, l);
            o += l;
            i += l;
        } else {
            memcpy(out + o, REPL_CHAR, 3);
            o += 3;
            i++;
        }
    }
    *out_len = o;
    return out;
}

/* ---- the grok-2 pre-tokenizer ---- */

static bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }

/* Simple case folding for the contractions: ASCII, and U+017F LATIN SMALL
 * LETTER LONG S, which folds to 's' (as (?i) matches it in Rust's regex,
 * which runs tiktoken's pattern; llama.cpp's ASCII-only spelling misses it). */
static char fold_lower(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return (char)(c - 'A' + 'a');
    if (c == 0x17F) return 's';
    return c < 0x80 ? (char)c : 0;
}

/* Length in code points of the regex match at cp[i] (n code points in all,
 * cls[] their unicode_class). Always >= 1. */
static size_t grok2_match(const uint32_t *cp, const uint8_t *cls, size_t n, size_t i) {
    const uint32_t c = cp[i];
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (c == '\'' && i + 1 < n) {
        char a = fold_lower(cp[i + 1]), b = i + 2 < n ? fold_lower(cp[i + 2]) : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    size_t j = i;
    if (cls[i] != UNICODE_LETTER && cls[i] != UNICODE_NUMBER && !is_crlf(c) && i + 1 < n &&
        cls[i + 1] == UNICODE_LETTER)
        j = i + 1; /* the optional prefix, taken when letters follow it */
    if (cls[j] == UNICODE_LETTER) {
        while (j < n && cls[j] == UNICODE_LETTER) j++;
        return j - i;
    }
    /* \p{N} */
    if (cls[i] == UNICODE_NUMBER) return 1;
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    j = i;
    if (c == ' ' && i + 1 < n && cls[i + 1] == UNICODE_OTHER) j = i + 1;
    if (cls[j] == UNICODE_OTHER) {
        while (j < n && cls[j] == UNICODE_OTHER) j++;
        while (j < n && is_crlf(cp[j])) j++;
        return j - i;
    }
    /* here cp[i] is white space: the run of it is cp[i..e) */
    size_t e = i;
    while (e < n && cls[e] == UNICODE_SPACE) e++;
    /* \s*[\r\n]+ : through the last CR/LF of the run */
    for (size_t k = e; k > i; k--)
        if (is_crlf(cp[k - 1])) return k - i;
    /* \s+(?!\S) : the whole run at the end of the text, else all but its last */
    if (e == n) return e - i;
    if (e - i >= 2) return e - i - 1;
    /* \s+ */
    return e - i;
}

/* Splits valid UTF-8 s[0..n) into pieces: ends[k] = byte offset where
 * piece k ends. cp, cls and off are scratch of n + 1 entries. Returns the
 * piece count. */
static size_t grok2_split(const char *s, size_t n, uint32_t *cp, uint8_t *cls, size_t *off, size_t *ends) {
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        size_t l = tok_utf8_valid_len((const unsigned char *)s + i, n - i);
        if (!l) l = 1; /* cannot happen on sanitized text */
        cp[m] = utf8_cp((const unsigned char *)s + i, l);
        cls[m] = (uint8_t)unicode_class(cp[m]);
        off[m++] = i;
        i += l;
    }
    off[m] = n;
    size_t np = 0;
    for (size_t i = 0; i < m;) {
        size_t l = grok2_match(cp, cls, m, i);
        i += l;
        ends[np++] = off[i];
    }
    return np;
}

/* ---- merges ---- */

static uint32_t merge_hash(const char *s, size_t n, uint32_t split) {
    return tok_hash_bytes(s, n) ^ (split * 0x9E3779B1u);
}

/* Rank of merging s[0..split) with s[split..n), -1 if no such merge. */
static int merge_rank(const Tokenizer *t, const char *s, size_t n, uint32_t split) {
    if (!t->merge_table) return -1;
    uint32_t h = merge_hash(s, n, split) & t->merge_mask;
    for (;;) {
        int32_t r = t->merge_table[h];
        if (r < 0) return -1;
        if (t->merge_len[r] == n && t->merge_split[r] == split && memcmp(t->arena + t->merge_off[r], s, n) == 0)
            return r;
        h = (h + 1) & t->merge_mask;
    }
}

/* Adds merge rank n_merges (bytes s, left part split); a repeated merge
 * keeps its first rank. */
static int merge_add(Tokenizer *t, const char *s, size_t n, uint32_t split, Error *err) {
    if (merge_rank(t, s, n, split) >= 0) return 0;
    size_t off;
    if (tok_arena_append(t, s, n, &off, err) < 0) return -1;
    int r = t->n_merges++;
    t->merge_off[r] = off;
    t->merge_len[r] = (uint32_t)n;
    t->merge_split[r] = split;
    uint32_t h = merge_hash(s, n, split) & t->merge_mask;
    while (t->merge_table[h] >= 0) h = (h + 1) & t->merge_mask;
    t->merge_table[h] = r;
    return 0;
}

static int merges_alloc(Tokenizer *t, size_t cap, Error *err) {
    uint32_t size = 16;
    while (size < cap * 2 + 2) {
        if (size > (1u << 30)) return err_set(err, "tokenizer: too many merges");
        size <<= 1;
    }
    t->merge_off = malloc((cap + 1) * sizeof *t->merge_off);
    t->merge_len = malloc((cap + 1) * sizeof *t->merge_len);
    t->merge_split = malloc((cap + 1) * sizeof *t->merge_split);
    t->merge_table = malloc((size_t)size * sizeof *t->merge_table);
    if (!t->merge_off || !t->merge_len || !t->merge_split || !t->merge_table)
        return err_set(err, "tokenizer: out of memory");
    memset(t->merge_table, 0xFF, (size_t)size * sizeof *t->merge_table);
    t->merge_mask = size - 1;
    t->n_merges = 0;
    return 0;
}

/* Lookup table, trie of specials and byte tokens of a byte-level BPE
 * vocabulary (pieces already raw). Normal pieces win over special ones
 * with the same bytes; equal pieces keep the first id. */
static int bpe_finish(Tokenizer *t, Error *err) {
    memset(t->table, 0xFF, ((size_t)t->mask + 1) * sizeof *t->table);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < t->n; i++) {
            int ty = t->type[i];
            if (ty < TOKEN_NORMAL || ty > TOKEN_BYTE) return err_set(err, "tokenizer: piece %d has invalid type %d", i, ty);
            if (t->len[i] == 0 || bpe_normal(ty) != (pass == 0)) continue;
            tok_table_insert(t, i);
        }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        int id = tok_lookup(t, &c, 1);
        t->byte_tok[b] = id >= 0 && bpe_normal(t->type[id]) ? id : -1;
    }
    int trie_cap = 0;
    for (int i = 0; i < t->n; i++) {
        if (t->len[i] == 0 || (t->type[i] != TOKEN_CONTROL && t->type[i] != TOKEN_USER_DEFINED)) continue;
        if (!t->trie) {
            trie_cap = 64;
            t->trie = malloc((size_t)trie_cap * sizeof *t->trie);
            if (!t->trie) return err_set(err, "tokenizer: out of memory");
            t->trie[0] = (TrieNode){-1, -1, 0, 0};
            t->n_trie = 1;
        }
        if (tok_trie_add(t, tok_piece_ptr(t, i), t->len[i], i, &trie_cap, err) < 0) return -1;
    }
    t->bpe = true;
    t->add_dummy_prefix = false;
    t->remove_extra_ws = false;
    t->escape_ws = false;
    t->byte_fallback = false;
    return 0;
}

/* ---- encoding ---- */

static int bpe_emit_bytes(Enc *e, const char *s, size_t n, Error *err) {
    for (size_t i = 0; i < n; i++) {
        int id = e->t->byte_tok[(unsigned char)s[i]];
        if (id < 0) id = e->t->unk;
        if (id < 0) return err_set(err, "tokenizer: no token for byte 0x%02X", (unsigned char)s[i]);
        e->ids[e->n_ids++] = id;
    }
    return 0;
}

static void bpe_try_pair(Enc *e, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const Sym *a = &e->sym[l], *b = &e->sym[r];
    int rank = merge_rank(e->t, e->text + a->start, (size_t)a->len + b->len, a->len);
    if (rank < 0 || e->n_heap >= e->cap_heap) return;
    Pair p = {-(float)rank, l, r, a->len + b->len};
    tok_heap_push(e, p);
}

/* One pre-tokenized piece e->text[0..n). */
static int bpe_piece(Enc *e, size_t n, Error *err) {
    const Tokenizer *t = e->t;
    int id = tok_lookup(t, e->text, n);
    if (id >= 0 && bpe_normal(t->type[id])) {
        e->ids[e->n_ids++] = id;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        e->sym[i] = (Sym){(uint32_t)i, 1, (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, false};
    }
    e->n_heap = 0;
    for (size_t i = 1; i < n; i++) bpe_try_pair(e, (int32_t)i - 1, (int32_t)i);
    while (e->n_heap) {
        Pair p = tok_heap_pop(e);
        Sym *a = &e->sym[p.left], *b = &e->sym[p.right];
        if (a->len == 0 || b->len == 0 || a->next != p.right || (size_t)a->len + b->len != p.size) continue;
        a->len += b->len;
        a->next = b->next;
        if (b->next >= 0) e->sym[b->next].prev = p.left;
        b->len = 0;
        bpe_try_pair(e, a->prev, p.left);
        bpe_try_pair(e, p.left, a->next);
    }
    for (int32_t i = 0; i >= 0; i = e->sym[i].next) {
        const char *s = e->text + e->sym[i].start;
        id = tok_lookup(t, s, e->sym[i].len);
        if (id >= 0 && bpe_normal(t->type[id])) e->ids[e->n_ids++] = id;
        else if (bpe_emit_bytes(e, s, e->sym[i].len, err) < 0) return -1;
    }
    return 0;
}

/* Calls piece(ctx, start, len, special_id) for each piece of text: special
 * tokens (special_id >= 0) and pre-tokenizer pieces (-1). text must be
 * valid UTF-8. */
typedef int (*PieceFn)(void *ctx, const char *s, size_t n, int special, Error *err);

static int bpe_pieces(const Tokenizer *t, const char *text, size_t len, PieceFn fn, void *ctx, Error *err) {
    uint32_t *cp = malloc((len + 1) * sizeof *cp);
    uint8_t *cls = malloc(len + 1);
    size_t *off = malloc((len + 1) * sizeof *off), *ends = malloc((len + 1) * sizeof *ends);
    int rc = -1;
    if (!cp || !cls || !off || !ends) {
        err_set(err, "tokenizer: out of memory");
        goto done;
    }
    for (size_t pos = 0; pos < len;) {
        int sid = -1;
        size_t m = tok_user_match_id(t, text + pos, len - pos, &sid);
        if (m) {
            if (fn(ctx, text + pos, m, sid, err) < 0) goto done;
            pos += m;
            continue;
        }
        size_t end = pos; /* the text up to the next special token */
        while (end < len) {
            end += tok_one_char_len((unsigned char)text[end]);
            if (end > len) end = len;
            if (end < len && tok_user_match(t, text + end, len - end)) break;
        }
        size_t np = grok2_split(text + pos, end - pos, cp, cls, off, ends), start = 0;
        for (size_t k = 0; k < np; k++) {
            if (fn(ctx, text + pos + start, ends[k] - start, -1, err) < 0) goto done;
            start = ends[k];
        }
        pos = end;
    }
    rc = 0;
done:
    free(cp), free(cls), free(off), free(ends);
    return rc;
}

static int bpe_encode_piece(void *ctx, const char *s, size_t n, int special, Error *err) {
    Enc *e = ctx;
    if (special >= 0) {
        e->ids[e->n_ids++] = special;
        return 0;
    }
    e->text = s;
    return bpe_piece(e, n, err);
}

int bpe_encode(const Tokenizer *t, const char *text, size_t len, bool add_bos, int **ids_out, Error *err) {
    size_t n = 0;
    char *clean = utf8_sanitize(text ? text : "", len, &n);
    Enc e = {0};
    e.t = t;
    e.ids = malloc((n + 2) * sizeof *e.ids);
    e.sym = malloc((n + 1) * sizeof *e.sym);
    e.cap_heap = n * 3 + 4;
    e.heap = malloc(e.cap_heap * sizeof *e.heap);
    int rc = -1;
    if (!clean || !e.ids || !e.sym || !e.heap) {
        err_set(err, "tokenizer: out of memory");
        goto done;
    }
    if (add_bos && t->bos >= 0) e.ids[e.n_ids++] = t->bos;
    rc = bpe_pieces(t, clean, n, bpe_encode_piece, &e, err);
done:
    free(clean), free(e.sym), free(e.heap);
    if (rc < 0) {
        free(e.ids);
        return -1;
    }
    *ids_out = e.ids;
    return e.n_ids;
}

typedef struct {
    char *buf;
    size_t len, *ends, n;
} SplitOut;

static int split_collect(void *ctx, const char *s, size_t n, int special, Error *err) {
    SplitOut *o = ctx;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->ends[o->n++] = o->len;
    (void)special;
    (void)err;
    return 0;
}

int tokenizer_split(const Tokenizer *t, const char *text, size_t len, char **buf_out, size_t **ends_out, Error *err) {
    *buf_out = NULL;
    *ends_out = NULL;
    if (!t || !t->bpe) return err_set(err, "tokenizer_split: not a byte-level BPE (gpt2) tokenizer");
    if (len > MAX_TEXT_LEN) return err_set(err, "tokenizer_split: text too long (%zu bytes)", len);
    size_t n = 0;
    char *clean = utf8_sanitize(text ? text : "", len, &n);
    SplitOut o = {malloc(n + 1), 0, malloc((n + 1) * sizeof(size_t)), 0};
    if (!clean || !o.buf || !o.ends) {
        free(clean), free(o.buf), free(o.ends);
        return err_set(err, "tokenizer: out of memory");
    }
    int rc = bpe_pieces(t, clean, n, split_collect, &o, err);
    free(clean);
    if (rc < 0) {
        free(o.buf), free(o.ends);
        return -1;
    }
    *buf_out = o.buf;
    *ends_out = o.ends;
    return (int)o.n;
}

/* ---- loading and saving ---- */

/* tokenizer.ggml.model = "gpt2": tokens in GPT-2's byte alphabet, merges
 * "A B" in the same spelling, tokenizer.ggml.pre naming the pre-tokenizer. */
Tokenizer *bpe_from_gguf(const GGUFFile *f, const GGUFKV *tokens, Error *err) {
    GGUFString pre;
    int r = gguf_get_str(f, "tokenizer.ggml.pre", &pre, err);
    if (r < 0) return NULL;
    if (r == 0 || pre.len != 6 || memcmp(pre.data, "grok-2", 6) != 0) {
        err_set(err, "byte-level BPE tokenizer with pre-tokenizer '%.*s': grok.c implements 'grok-2' only",
                r ? (int)(pre.len > 40 ? 40 : pre.len) : 6, r ? pre.data : "(none)");
        return NULL;
    }
    const GGUFKV *merges = gguf_find_kv(f, "tokenizer.ggml.merges");
    if (!merges || merges->type != GGUF_TYPE_ARRAY || merges->arr_type != GGUF_TYPE_STRING) {
        err_set(err, "tokenizer.ggml.merges is missing or not a string array (needed by the gpt2 model)");
        return NULL;
    }
    if (merges->arr_n > (uint64_t)MAX_VOCAB * 4) {
        err_set(err, "tokenizer.ggml.merges has too many entries (%llu)", (unsigned long long)merges->arr_n);
        return NULL;
    }
    const GGUFKV *types = gguf_find_kv(f, "tokenizer.ggml.token_type");
    int n = (int)tokens->arr_n;
    if (types && (types->type != GGUF_TYPE_ARRAY || types->arr_n != (uint64_t)n || types->arr_type == GGUF_TYPE_STRING ||
                  types->arr_type == GGUF_TYPE_FLOAT32 || types->arr_type == GGUF_TYPE_FLOAT64)) {
        err_set(err, "tokenizer.ggml.token_type is not an integer array of %d entries", n);
        return NULL;
    }
    Tokenizer *t = tok_alloc(n, err);
    char *tmp = NULL;
    if (!t) return NULL;
    size_t longest = 0;
    for (int i = 0; i < n; i++)
        if (tokens->arr_str[i].len > longest) longest = (size_t)tokens->arr_str[i].len;
    for (uint64_t i = 0; i < merges->arr_n; i++)
        if (merges->arr_str[i].len > longest) longest = (size_t)merges->arr_str[i].len;
    if (longest > UINT32_MAX / 2 || !(tmp = malloc(longest + 1))) {
        err_set(err, "tokenizer: out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        const GGUFString *s = &tokens->arr_str[i];
        int type = TOKEN_NORMAL;
        if (types) {
            int64_t ty = gguf_arr_i64(types, (uint64_t)i);
            if (ty == 0) ty = TOKEN_NORMAL;
            if (ty < TOKEN_NORMAL || ty > TOKEN_BYTE) {
                err_set(err, "tokenizer.ggml.token_type[%d] = %lld is not a valid token type", i, (long long)ty);
                goto fail;
            }
            type = (int)ty;
        }
        const char *p = s->data;
        size_t len = (size_t)s->len;
        if (bpe_normal(type)) {
            long m = gpt2_decode(s->data, len, tmp);
            if (m < 0) {
                err_set(err, "tokenizer.ggml.tokens[%d] is not in GPT-2's byte alphabet", i);
                goto fail;
            }
            p = tmp;
            len = (size_t)m;
        }
        if (tok_set(t, i, p, len, 0.0f, type, err) < 0) goto fail;
    }
    if (merges_alloc(t, (size_t)merges->arr_n, err) < 0) goto fail;
    for (uint64_t i = 0; i < merges->arr_n; i++) {
        const GGUFString *s = &merges->arr_str[i];
        const char *sp = memchr(s->data, ' ', (size_t)s->len);
        long a = sp ? gpt2_decode(s->data, (size_t)(sp - s->data), tmp) : -1, b = -1;
        if (a > 0) b = gpt2_decode(sp + 1, (size_t)s->len - (size_t)(sp - s->data) - 1, tmp + a);
        if (a <= 0 || b <= 0) {
            err_set(err, "tokenizer.ggml.merges[%llu] is not two pieces in GPT-2's byte alphabet",
                    (unsigned long long)i);
            goto fail;
        }
        if (merge_add(t, tmp, (size_t)(a + b), (uint32_t)a, err) < 0) goto fail;
    }
    if (bpe_finish(t, err) < 0) goto fail;
    snprintf(t->pre, sizeof t->pre, "grok-2");
    if (tok_gguf_special(f, "tokenizer.ggml.bos_token_id", n, -1, &t->bos, err) < 0 ||
        tok_gguf_special(f, "tokenizer.ggml.eos_token_id", n, 2, &t->eos, err) < 0 ||
        tok_gguf_special(f, "tokenizer.ggml.unknown_token_id", n, -1, &t->unk, err) < 0 ||
        tok_gguf_special(f, "tokenizer.ggml.padding_token_id", n, -1, &t->pad, err) < 0)
        goto fail;
    free(tmp);
    return t;
fail:
    free(tmp);
    tokenizer_free(t);
    return NULL;
}

int bpe_to_gguf(const Tokenizer *t, GGUFWriter *w, Error *err) {
    size_t n = (size_t)t->n, total = 0;
    for (size_t i = 0; i < n; i++) total += 2 * (size_t)t->len[i] + 1;
    for (int r = 0; r < t->n_merges; r++) total += 2 * (size_t)t->merge_len[r] + 2;
    const size_t nm = (size_t)t->n_merges;
    const char **strs = malloc((n + nm + 1) * sizeof *strs);
    uint64_t *lens = malloc((n + nm + 1) * sizeof *lens);
    int32_t *types = malloc((n + 1) * sizeof *types);
    char *buf = malloc(total + 1), *o = buf;
    int rc = -1;
    if (!strs || !lens || !types || !buf) {
        err_set(err, "tokenizer_to_gguf: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        strs[i] = o;
        if (bpe_normal(t->type[i])) lens[i] = gpt2_encode(tok_piece_ptr(t, (int)i), t->len[i], o);
        else {
            memcpy(o, tok_piece_ptr(t, (int)i), t->len[i]);
            lens[i] = t->len[i];
        }
        o += lens[i];
        types[i] = t->type[i];
    }
    for (size_t r = 0; r < nm; r++) {
        const char *s = t->arena + t->merge_off[r];
        strs[n + r] = o;
        size_t a = gpt2_encode(s, t->merge_split[r], o);
        o[a] = ' ';
        size_t b = gpt2_encode(s + t->merge_split[r], t->merge_len[r] - t->merge_split[r], o + a + 1);
        lens[n + r] = a + 1 + b;
        o += lens[n + r];
    }
    if (gguf_set_str(w, "tokenizer.ggml.model", "gpt2") < 0 || gguf_set_str(w, "tokenizer.ggml.pre", t->pre) < 0 ||
        gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, n) < 0 ||
        gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n) < 0 ||
        gguf_set_arr_str(w, "tokenizer.ggml.merges", strs + n, lens + n, nm) < 0 ||
        (t->bos >= 0 && gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos) < 0) ||
        (t->eos >= 0 && gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos) < 0) ||
        (t->unk >= 0 && gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk) < 0) ||
        (t->pad >= 0 && gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)t->pad) < 0) ||
        gguf_set_bool(w, "tokenizer.ggml.add_bos_token", false) < 0 ||
        gguf_set_bool(w, "tokenizer.ggml.add_eos_token", false) < 0) {
        err_set(err, "tokenizer_to_gguf: out of memory");
        goto done;
    }
    rc = 0;
done:
    free(strs), free(lens), free(types), free(buf);
    return rc;
}

/* ---- from tiktoken ranks (Grok-2's tokenizer.tok.json) ---- */

Tokenizer *tokenizer_from_ranks(int n, const char *const *pieces, const size_t *lens, const int *types, int eos,
                                Error *err) {
    Tokenizer *t = tok_alloc(n, err);
    if (!t) return NULL;
    size_t longest = 0;
    int n_normal = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] > UINT32_MAX - 1) {
            err_set(err, "tokenizer: piece %d too long", i);
            goto fail;
        }
        if (tok_set(t, i, pieces[i] ? pieces[i] : "", pieces[i] ? lens[i] : 0, 0.0f, types[i], err) < 0) goto fail;
        if (lens[i] > longest) longest = lens[i];
        n_normal += bpe_normal(types[i]);
    }
    if (merges_alloc(t, (size_t)n_normal, err) < 0 || bpe_finish(t, err) < 0) goto fail;
    /* The merge that makes a token: BPE of its bytes with the ranks (ids)
     * below its own ends in two parts, which become its merge. Merges are
     * added in rank order, so bpe_piece (lowest rank first) reproduces
     * tiktoken. */
    {
        Enc e = {0};
        e.t = t;
        e.sym = malloc((longest + 1) * sizeof *e.sym);
        e.cap_heap = longest * 3 + 4;
        e.heap = malloc(e.cap_heap * sizeof *e.heap);
        e.ids = malloc((longest + 2) * sizeof *e.ids);
        char *copy = malloc(longest + 1);
        bool ok = e.sym && e.heap && e.ids && copy;
        for (int i = 0; ok && i < n; i++) {
            if (!bpe_normal(t->type[i]) || t->len[i] < 2) continue;
            e.text = tok_piece_ptr(t, i);
            e.n_ids = 0;
            /* the merges so far are exactly those of the lower-ranked tokens */
            for (size_t k = 0; k < t->len[i]; k++)
                e.sym[k] = (Sym){(uint32_t)k, 1, (int32_t)k - 1, k + 1 < t->len[i] ? (int32_t)k + 1 : -1, false};
            e.n_heap = 0;
            for (size_t k = 1; k < t->len[i]; k++) bpe_try_pair(&e, (int32_t)k - 1, (int32_t)k);
            while (e.n_heap) {
                Pair p = tok_heap_pop(&e);
                Sym *a = &e.sym[p.left], *b = &e.sym[p.right];
                if (a->len == 0 || b->len == 0 || a->next != p.right || (size_t)a->len + b->len != p.size) continue;
                a->len += b->len;
                a->next = b->next;
                if (b->next >= 0) e.sym[b->next].prev = p.left;
                b->len = 0;
                bpe_try_pair(&e, a->prev, p.left);
                bpe_try_pair(&e, p.left, a->next);
            }
            int32_t second = e.sym[0].next;
            if (second < 0 || e.sym[second].next >= 0) {
                /* not two lower-ranked parts: tiktoken's merging can never
                 * produce it either, only the whole-piece lookup can */
            } else {
                memcpy(copy, e.text, t->len[i]); /* merge_add may move the arena e.text points into */
                if (merge_add(t, copy, t->len[i], e.sym[0].len, err) < 0) ok = false;
            }
        }
        bool oom = !(e.sym && e.heap && e.ids && copy);
        free(e.sym), free(e.heap), free(e.ids), free(copy);
        if (oom) err_set(err, "tokenizer: out of memory");
        if (!ok) goto fail;
    }
    snprintf(t->pre, sizeof t->pre, "grok-2");
    t->eos = eos >= 0 && eos < n ? eos : -1;
    return t;
fail:
    tokenizer_free(t);
    return NULL;
}

/* ---- synthetic byte-level vocabulary ---- */

/* Training text of the synthetic vocabulary (besides the word lists of the
 * SentencePiece one): several scripts, so that merges join the bytes of
 * multi-byte characters too. */
static const char synth_gpt2_text[] =
    "The quick brown fox jumps over the lazy dog. I'm sure it's what we'll do, isn't it? Don't! They've said "
    "they'd come; you're right. Grok-2 was released in 2024 with 270B parameters.\n\n"
    "Le caf\xc3\xa9 est tr\xc3\xa8s bon. \xc3\x87" "a va? \xc3\x9c" "ber die Br\xc3\xbc" "cke gehen wir. "
    "\xc2\xbf" "D\xc3\xb3nde est\xc3\xa1 la biblioteca? "
    "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xba\xd0\xb0\xd0\xba \xd0\xb4\xd0\xb5\xd0\xbb\xd0\xb0? "
    "\xce\x93\xce\xb5\xce\xb9\xce\xac \xcf\x83\xce\xbf\xcf\x85 \xce\xba\xcf\x8c\xcf\x83\xce\xbc\xce\xb5. "
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88\xe3\x81\xa7"
    "\xe3\x81\x99\xe3\x80\x82\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c\xe3\x80\x82 "
    "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xeb\xac\xb8\xec\x9e\xa5. "
    "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xd8\xa8\xd8\xa7\xd9\x84\xd8\xb9\xd8\xa7\xd9\x84\xd9\x85. "
    "\xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87 \xe0\xa4\xa6\xe0\xa5\x81\xe0\xa4\xa8"
    "\xe0\xa4\xbf\xe0\xa4\xaf\xe0\xa4\xbe\xe0\xa5\xa4 "
    "emoji \xf0\x9f\x99\x82\xf0\x9f\x91\x8d and symbols \xc2\xa9 \xe2\x86\x92 \xe2\x89\xa4 \xcf\x80 \xc2\xbd\n"
    "    if (x == 1) {\n\treturn y;\n    }\r\n";

typedef struct {
    int *sym;      /* token ids */
    int n;
    int count;     /* how often the piece occurs */
} TrainPiece;

typedef struct {
    int a, b, count;
} PairCount;

static int train_add_piece(TrainPiece **pp, int *n, int *cap, const char *s, size_t len, Error *err) {
    TrainPiece *p = *pp;
    for (int i = 0; i < *n; i++) { /* few hundred pieces: a linear scan is enough */
        if ((size_t)p[i].n != len) continue;
        bool same = true;
        for (size_t k = 0; k < len && same; k++) same = p[i].sym[k] == 4 + (unsigned char)s[k];
        if (same) {
            p[i].count++;
            return 0;
        }
    }
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 256;
        TrainPiece *np = realloc(p, (size_t)nc * sizeof *np);
        if (!np) return err_set(err, "tokenizer_synthetic_gpt2: out of memory");
        *pp = p = np;
        *cap = nc;
    }
    p[*n].sym = malloc((len + 1) * sizeof(int));
    if (!p[*n].sym) return err_set(err, "tokenizer_synthetic_gpt2: out of memory");
    for (size_t k = 0; k < len; k++) p[*n].sym[k] = 4 + (unsigned char)s[k];
    p[*n].n = (int)len;
    p[*n].count = 1;
    (*n)++;
    return 0;
}

static int train_piece_fn(void *ctx, const char *s, size_t n, int special, Error *err) {
    void **c = ctx;
    (void)special;
    return train_add_piece((TrainPiece **)c[0], (int *)c[1], (int *)c[2], s, n, err);
}

Tokenizer *tokenizer_synthetic_gpt2(int n_vocab, Error *err) {
    if (n_vocab < 300 || n_vocab > MAX_VOCAB) {
        err_set(err, "tokenizer_synthetic_gpt2: n_vocab %d out of range (300..%d)", n_vocab, MAX_VOCAB);
        return NULL;
    }
    Tokenizer *t = tok_alloc(n_vocab, err);
    if (!t) return NULL;
    TrainPiece *pieces = NULL;
    PairCount *pc = NULL;
    char *corpus = NULL;
    int n_pieces = 0, cap_pieces = 0;
    static const char *const specials[4] = {"<|pad|>", "<|separator|>", "<|eos|>", "<|mask|>"};
    for (int i = 0; i < 4; i++)
        if (tok_set(t, i, specials[i], strlen(specials[i]), 0.0f, TOKEN_CONTROL, err) < 0) goto fail;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if (tok_set(t, 4 + b, &c, 1, 0.0f, TOKEN_NORMAL, err) < 0) goto fail;
    }
    if (merges_alloc(t, (size_t)n_vocab, err) < 0) goto fail;
    /* the corpus: the word lists (" word", " Word", "words") and the text */
    size_t clen = sizeof synth_gpt2_text, cpos = 0;
    for (size_t w = 0; w < tok_n_synth_words; w++) clen += 3 * strlen(tok_synth_words[w]) + 8;
    for (size_t w = 0; w < tok_n_synth_subwords; w++) clen += strlen(tok_synth_subwords[w]) + 1;
    corpus = malloc(clen + 1);
    if (!corpus) {
        err_set(err, "tokenizer_synthetic_gpt2: out of memory");
        goto fail;
    }
    for (size_t w = 0; w < tok_n_synth_words; w++) {
        const char *wd = tok_synth_words[w];
        cpos += (size_t)sprintf(corpus + cpos, " %s %c%s %ss", wd, wd[0] - 'a' + 'A', wd + 1, wd);
    }
    for (size_t w = 0; w < tok_n_synth_subwords; w++)
        cpos += (size_t)sprintf(corpus + cpos, " %s", tok_synth_subwords[w]);
    memcpy(corpus + cpos, synth_gpt2_text, sizeof synth_gpt2_text - 1);
    cpos += sizeof synth_gpt2_text - 1;
    /* split with the grok-2 pre-tokenizer (no specials yet) */
    {
        void *ctx[3] = {&pieces, &n_pieces, &cap_pieces};
        if (bpe_pieces(t, corpus, cpos, train_piece_fn, ctx, err) < 0) goto fail;
    }
    size_t total = 0;
    for (int i = 0; i < n_pieces; i++) total += (size_t)pieces[i].n;
    uint32_t pmask = 16;
    while (pmask < total * 2) pmask <<= 1;
    pc = malloc((size_t)pmask * sizeof *pc);
    if (!pc) {
        err_set(err, "tokenizer_synthetic_gpt2: out of memory");
        goto fail;
    }
    pmask--;
    /* greedy BPE training: merge the most frequent adjacent pair (ties: the
     * lowest ids), until the vocabulary is full or nothing is left */
    int next = 260;
    char buf[512];
    while (next < n_vocab) {
        for (uint32_t h = 0; h <= pmask; h++) pc[h].count = 0;
        PairCount best = {-1, -1, 0};
        for (int i = 0; i < n_pieces; i++)
            for (int k = 0; k + 1 < pieces[i].n; k++) {
                int a = pieces[i].sym[k], b = pieces[i].sym[k + 1];
                uint32_t h = ((uint32_t)a * 2654435761u ^ (uint32_t)b * 40503u) & pmask;
                while (pc[h].count && (pc[h].a != a || pc[h].b != b)) h = (h + 1) & pmask;
                pc[h].a = a, pc[h].b = b, pc[h].count += pieces[i].count;
                const PairCount *p = &pc[h];
                if (p->count > best.count ||
                    (p->count == best.count && (p->a < best.a || (p->a == best.a && p->b < best.b))))
                    best = *p;
            }
        if (best.count == 0) break;
        size_t la = t->len[best.a], lb = t->len[best.b];
        if (la + lb > sizeof buf) break;
        memcpy(buf, tok_piece_ptr(t, best.a), la);
        memcpy(buf + la, tok_piece_ptr(t, best.b), lb);
        if (merge_add(t, buf, la + lb, (uint32_t)la, err) < 0) goto fail;
        int id = -1;
        for (int k = 260; k < next && id < 0; k++)
            if (t->len[k] == la + lb && memcmp(tok_piece_ptr(t, k), buf, la + lb) == 0) id = k;
        if (id < 0) {
            id = next++;
            if (tok_set(t, id, buf, la + lb, 0.0f, TOKEN_NORMAL, err) < 0) goto fail;
        }
        for (int i = 0; i < n_pieces; i++) {
            int o = 0;
            for (int k = 0; k < pieces[i].n; k++) {
                if (k + 1 < pieces[i].n && pieces[i].sym[k] == best.a && pieces[i].sym[k + 1] == best.b) {
                    pieces[i].sym[o++] = id;
                    k++;
                } else {
                    pieces[i].sym[o++] = pieces[i].sym[k];
                }
            }
            pieces[i].n = o;
        }
    }
    for (int k = 1; next < n_vocab; k++) {
        int l = snprintf(buf, sizeof buf, "<|control%d|>", k);
        if (tok_set(t, next++, buf, (size_t)l, 0.0f, TOKEN_CONTROL, err) < 0) goto fail;
    }
    if (bpe_finish(t, err) < 0) goto fail;
    snprintf(t->pre, sizeof t->pre, "grok-2");
    t->pad = 0;
    t->eos = 2;
    for (int i = 0; i < n_pieces; i++) free(pieces[i].sym);
    free(pieces), free(pc), free(corpus);
    return t;
fail:
    for (int i = 0; i < n_pieces; i++) free(pieces[i].sym);
    free(pieces), free(pc), free(corpus);
    tokenizer_free(t);
    return NULL;
}
