/* tokenizer.c - SentencePiece BPE tokenization (see tokenizer.h), and what
 * both kinds of tokenizer share: the Tokenizer's construction, piece table
 * and trie of special symbols, the BPE merge queue (tokenizer_internal.h),
 * the accessors, and decoding. Here: the SentencePiece model protobuf,
 * vocabularies from GGUF metadata (a "gpt2" one is handed to
 * tokenizer_bpe.c, which holds Grok-2's byte-level BPE), the synthetic
 * vocabulary, normalization and encoding.
 *
 * Written from the observable behaviour of SentencePiece 0.1.97 (Debian's
 * spm_encode / spm_decode are the oracle, tests/scripts/test_tokenizer_spm.sh
 * and tests/unit/test_tokenizer.c compare against them):
 *
 * Normalization (identity normalizer, no precompiled charsmap):
 *   - the input is cut into chunks: a user-defined symbol (longest match), or
 *     one valid UTF-8 character, or one invalid byte which becomes U+FFFD
 *     (EF BF BD) - invalid bytes do NOT go to byte fallback directly;
 *   - ' ' becomes U+2581 "▁" (escape_whitespaces); a "▁" is prepended when the
 *     text is non-empty (add_dummy_prefix); with remove_extra_whitespaces,
 *     leading/trailing spaces are dropped and runs collapse to one.
 * BPE (the whole normalized string is one sequence; there is no splitting
 * into words at encode time):
 *   - initial symbols: user-defined symbols matched whole on the normalized
 *     text (longest first, "frozen": never merged), else single characters;
 *   - repeatedly merge the adjacent pair whose concatenation is a
 *     normal/user-defined/unused piece with the highest score, ties to the
 *     leftmost pair (priority queue, stale entries skipped);
 *   - a final symbol that is an unused piece is split back into the pieces
 *     it was merged from;
 *   - a final symbol with no piece (or the unknown piece) is emitted as its
 *     UTF-8 bytes <0xXX> when byte fallback is on, else as the unknown id
 *     (a run of such symbols gives a single unknown id).
 * Decoding: control ids give nothing; unknown ids give the unk surface
 * ("[UNK]" for Grok-1, which stores it in the trainer spec); consecutive
 * byte pieces are decoded as UTF-8 with each invalid byte -> U+FFFD (a
 * non-byte token, control ones included, ends the run); "▁" -> ' ', and the
 * first token with visible text loses one leading "▁" (the dummy prefix;
 * control tokens before it do not count). */
#include "tokenizer.h"

#include <unistd.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

#define SPACE_SYM "\xe2\x96\x81"
#define SPACE_SYM_LEN 3
#define MAX_MODEL_FILE ((long)1 << 30)
#define DEFAULT_UNK_SURFACE " \xe2\x81\x87 "

/* ---- small helpers ---------------------------------------------------- */

static bool is_trail(unsigned char c) { return (c & 0xC0) == 0x80; }

static bool valid_cp(uint32_t c) { return c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF); }

size_t tok_utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) {
        if (n >= 2 && is_trail(s[1])) {
            uint32_t cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
            if (cp >= 0x80 && valid_cp(cp)) return 2;
        }
    } else if ((c & 0xF0) == 0xE0) {
        if (n >= 3 && is_trail(s[1]) && is_trail(s[2])) {
            uint32_t cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
            if (cp >= 0x800 && valid_cp(cp)) return 3;
        }
    } else if ((c & 0xF8) == 0xF0) {
        if (n >= 4 && is_trail(s[1]) && is_trail(s[2]) && is_trail(s[3])) {
            uint32_t cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
                          ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
            if (cp >= 0x10000 && valid_cp(cp)) return 4;
        }
    }
    return 0;
}

/* Sequence length announced by a lead byte; 0 for a byte that cannot start
 * a character. */
static int utf8_need(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 0;
}

static bool mergeable_type(int type) {
    return type == TOKEN_NORMAL || type == TOKEN_USER_DEFINED || type == TOKEN_UNUSED;
}

/* "<0xXX>" with upper-case hex -> byte value, else -1. */
static int parse_byte_piece(const char *p, size_t n) {
    if (n != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

/* ---- construction ------------------------------------------------------ */

Tokenizer *tok_alloc(int n, Error *err) {
    if (n < 1 || n > MAX_VOCAB) {
        err_set(err, "tokenizer: vocabulary size %d out of range (1..%d)", n, MAX_VOCAB);
        return NULL;
    }
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    t->n = n;
    t->off = calloc((size_t)n, sizeof *t->off);
    t->len = calloc((size_t)n, sizeof *t->len);
    t->score = calloc((size_t)n, sizeof *t->score);
    t->type = calloc((size_t)n, sizeof *t->type);
    uint32_t size = 16;
    while (size < (uint32_t)n * 2u) size <<= 1;
    t->mask = size - 1;
    t->table = malloc((size_t)size * sizeof *t->table);
    if (!t->off || !t->len || !t->score || !t->type || !t->table) goto oom;
    memset(t->table, 0xFF, (size_t)size * sizeof *t->table);
    t->bos = t->eos = t->unk = t->pad = -1;
    t->add_dummy_prefix = true;
    t->escape_ws = true;
    for (int i = 0; i < 256; i++) t->byte_id[i] = t->byte_tok[i] = -1;
    return t;
oom:
    tokenizer_free(t);
    err_set(err, "tokenizer: out of memory");
    return NULL;
}

int tok_arena_append(Tokenizer *t, const char *s, size_t n, size_t *off, Error *err) {
    if (n > UINT32_MAX - 1 || t->arena_len > SIZE_MAX / 2 - n - 1) return err_set(err, "tokenizer: piece too long");
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 4096;
        while (cap < t->arena_len + n + 1) cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a) return err_set(err, "tokenizer: out of memory");
        t->arena = a;
        t->arena_cap = cap;
    }
    *off = t->arena_len;
    if (n) memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = '\0';
    t->arena_len += n + 1;
    return 0;
}

int tok_set(Tokenizer *t, int i, const char *s, size_t n, float score, int type, Error *err) {
    size_t off = 0;
    if (tok_arena_append(t, s, n, &off, err) < 0) return -1;
    t->off[i] = off;
    t->len[i] = (uint32_t)n;
    t->score[i] = score;
    t->type[i] = (uint8_t)type;
    return 0;
}

int tok_lookup(const Tokenizer *t, const char *s, size_t n) {
    uint32_t h = tok_hash_bytes(s, n) & t->mask;
    for (;;) {
        int32_t id = t->table[h];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(tok_piece_ptr(t, id), s, n) == 0) return id;
        h = (h + 1) & t->mask;
    }
}

int tok_table_insert(Tokenizer *t, int id) {
    const char *s = tok_piece_ptr(t, id);
    size_t n = t->len[id];
    uint32_t h = tok_hash_bytes(s, n) & t->mask;
    for (;;) {
        int32_t cur = t->table[h];
        if (cur < 0) {
            t->table[h] = id;
            return -1;
        }
        if (t->len[cur] == n && memcmp(tok_piece_ptr(t, cur), s, n) == 0) return cur;
        h = (h + 1) & t->mask;
    }
}

int tok_trie_add(Tokenizer *t, const char *s, size_t n, int id, int *cap, Error *err) {
    int node = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        int c = t->trie[node].first_child;
        while (c >= 0 && t->trie[c].byte != b) c = t->trie[c].next_sibling;
        if (c < 0) {
            if (t->n_trie == *cap) {
                if (*cap > INT_MAX / 2) return err_set(err, "tokenizer: too many user-defined symbols");
                int nc = *cap * 2;
                TrieNode *nt = realloc(t->trie, (size_t)nc * sizeof *nt);
                if (!nt) return err_set(err, "tokenizer: out of memory");
                t->trie = nt;
                *cap = nc;
            }
            c = t->n_trie++;
            t->trie[c].first_child = -1;
            t->trie[c].next_sibling = t->trie[node].first_child;
            t->trie[c].terminal = 0;
            t->trie[c].byte = b;
            t->trie[node].first_child = c;
        }
        node = c;
    }
    if (!t->trie[node].terminal) t->trie[node].terminal = id + 1;
    return 0;
}

size_t tok_user_match_id(const Tokenizer *t, const char *s, size_t n, int *id) {
    if (!t->trie) return 0;
    int node = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        int c = t->trie[node].first_child;
        while (c >= 0 && t->trie[c].byte != b) c = t->trie[c].next_sibling;
        if (c < 0) break;
        node = c;
        if (t->trie[node].terminal) {
            best = i + 1;
            if (id) *id = t->trie[node].terminal - 1;
        }
    }
    return best;
}

/* Validates the pieces and builds the lookup structures. `what` names the
 * source in messages. Strict (SentencePiece's own rules): no empty or
 * duplicate pieces. Lenient (GGUF, whose converters may pad or repeat
 * entries): such pieces are kept for decoding but never produced by
 * encoding (the first of equal pieces wins). */
static int tok_finish(Tokenizer *t, const char *what, bool strict, Error *err) {
    int trie_cap = 0;
    t->max_merge_len = 0;
    t->has_unused = false;
    for (int i = 0; i < t->n; i++) {
        int ty = t->type[i];
        if (ty < TOKEN_NORMAL || ty > TOKEN_BYTE)
            return err_set(err, "%s: piece %d has invalid type %d", what, i, ty);
        if (t->len[i] == 0) {
            if (strict) return err_set(err, "%s: piece %d is empty", what, i);
            continue;
        }
        int dup = tok_table_insert(t, i);
        if (dup >= 0) {
            if (strict) return err_set(err, "%s: piece %d duplicates piece %d", what, i, dup);
            continue;
        }
        if (ty == TOKEN_BYTE) {
            int b = parse_byte_piece(tok_piece_ptr(t, i), t->len[i]);
            if (b < 0) return err_set(err, "%s: byte piece %d is not of the form <0xXX>", what, i);
            t->byte_id[b] = i;
        }
        if (mergeable_type(ty) && t->len[i] > t->max_merge_len) t->max_merge_len = t->len[i];
        if (ty == TOKEN_UNUSED) t->has_unused = true;
        if (ty == TOKEN_USER_DEFINED) {
            if (!t->trie) {
                trie_cap = 64;
                t->trie = malloc((size_t)trie_cap * sizeof *t->trie);
                if (!t->trie) return err_set(err, "tokenizer: out of memory");
                t->trie[0].first_child = -1;
                t->trie[0].next_sibling = -1;
                t->trie[0].terminal = 0;
                t->trie[0].byte = 0;
                t->n_trie = 1;
            }
            if (tok_trie_add(t, tok_piece_ptr(t, i), t->len[i], i, &trie_cap, err) < 0) return -1;
        }
    }
    return 0;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->table);
    free(t->trie);
    free(t->unk_surface);
    free(t->merge_off);
    free(t->merge_len);
    free(t->merge_split);
    free(t->merge_table);
    free(t);
}

/* ---- SentencePiece ModelProto ------------------------------------------- */

typedef struct {
    const unsigned char *p, *end;
} PB;

typedef struct {
    uint32_t field;
    int wire;
    uint64_t v;              /* varint / fixed32 / fixed64 */
    const unsigned char *data; /* length-delimited */
    size_t len;
} PBField;

static int pb_varint(PB *b, uint64_t *out) {
    uint64_t r = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (b->p >= b->end) return -1;
        unsigned char c = *b->p++;
        if (shift == 63 && (c & 0x7E)) return -1; /* more than 64 bits */
        r |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *out = r;
            return 0;
        }
    }
    return -1;
}

/* Reads the next field; 0 ok, -1 malformed. */
static int pb_next(PB *b, PBField *f) {
    uint64_t key;
    if (pb_varint(b, &key) < 0) return -1;
    if (key >> 32) return -1;
    f->field = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    if (f->field == 0) return -1;
    f->data = NULL;
    f->len = 0;
    f->v = 0;
    switch (f->wire) {
    case 0:
        return pb_varint(b, &f->v);
    case 1:
        if (b->end - b->p < 8) return -1;
        for (int i = 7; i >= 0; i--) f->v = (f->v << 8) | b->p[i];
        b->p += 8;
        return 0;
    case 2: {
        uint64_t n;
        if (pb_varint(b, &n) < 0) return -1;
        if (n > (uint64_t)(b->end - b->p)) return -1;
        f->data = b->p;
        f->len = (size_t)n;
        b->p += n;
        return 0;
    }
    case 5:
        if (b->end - b->p < 4) return -1;
        f->v = (uint64_t)b->p[0] | ((uint64_t)b->p[1] << 8) | ((uint64_t)b->p[2] << 16) | ((uint64_t)b->p[3] << 24);
        b->p += 4;
        return 0;
    default:
        return -1; /* groups (3, 4) and reserved wire types */
    }
}

static int pb_int32(uint64_t v) {
    int64_t s = (int64_t)v; /* two's complement, as protobuf encodes negatives */
    if (s < INT32_MIN || s > INT32_MAX) return -1;
    return (int)s;
}

static float pb_float(uint64_t v) {
    uint32_t u = (uint32_t)v;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

typedef struct {
    int model_type;
    bool byte_fallback;
    bool ws_suffix;
    int unk_id, bos_id, eos_id, pad_id;
    const unsigned char *unk_surface;
    size_t unk_surface_len;
    bool has_unk_surface;
    bool add_dummy_prefix, remove_extra_ws, escape_ws;
    size_t charsmap_len;
} SpmSpec;

#define WANT(f, w)                                                                                           \
    do {                                                                                                     \
        if ((f).wire != (w)) return err_set(err, "tokenizer.model: field %u has wire type %d, expected %d", \
                                            (unsigned)(f).field, (f).wire, (w));                           \
    } while (0)

static int parse_trainer(const unsigned char *p, size_t n, SpmSpec *s, Error *err) {
    PB b = {p, p + n};
    PBField f;
    while (b.p < b.end) {
        if (pb_next(&b, &f) < 0) return err_set(err, "tokenizer.model: malformed trainer_spec");
        switch (f.field) {
        case 3: WANT(f, 0); s->model_type = pb_int32(f.v); break;
        case 24: WANT(f, 0); s->ws_suffix = f.v != 0; break;
        case 35: WANT(f, 0); s->byte_fallback = f.v != 0; break;
        case 40: WANT(f, 0); s->unk_id = pb_int32(f.v); break;
        case 41: WANT(f, 0); s->bos_id = pb_int32(f.v); break;
        case 42: WANT(f, 0); s->eos_id = pb_int32(f.v); break;
        case 43: WANT(f, 0); s->pad_id = pb_int32(f.v); break;
        case 44:
            WANT(f, 2);
            s->unk_surface = f.data;
            s->unk_surface_len = f.len;
            s->has_unk_surface = true;
            break;
        default: break;
        }
    }
    return 0;
}

static int parse_normalizer(const unsigned char *p, size_t n, SpmSpec *s, Error *err) {
    PB b = {p, p + n};
    PBField f;
    while (b.p < b.end) {
        if (pb_next(&b, &f) < 0) return err_set(err, "tokenizer.model: malformed normalizer_spec");
        switch (f.field) {
        case 2: WANT(f, 2); s->charsmap_len = f.len; break;
        case 3: WANT(f, 0); s->add_dummy_prefix = f.v != 0; break;
        case 4: WANT(f, 0); s->remove_extra_ws = f.v != 0; break;
        case 5: WANT(f, 0); s->escape_ws = f.v != 0; break;
        default: break;
        }
    }
    return 0;
}

/* One SentencePiece message. */
static int parse_piece(const unsigned char *p, size_t n, const unsigned char **str, size_t *len, float *score,
                       int *type, Error *err) {
    PB b = {p, p + n};
    PBField f;
    *str = NULL;
    *len = 0;
    *score = 0.0f;
    *type = TOKEN_NORMAL;
    while (b.p < b.end) {
        if (pb_next(&b, &f) < 0) return err_set(err, "tokenizer.model: malformed piece");
        switch (f.field) {
        case 1: WANT(f, 2); *str = f.data; *len = f.len; break;
        case 2: WANT(f, 5); *score = pb_float(f.v); break;
        case 3: WANT(f, 0); *type = f.v <= 6 ? (int)f.v : 0; break;
        default: break;
        }
    }
    return 0;
}

static int spm_special(const Tokenizer *t, int id) { return id >= 0 && id < t->n ? id : -1; }

Tokenizer *tokenizer_from_spm_memory(const void *data, size_t size, Error *err) {
    if (!data && size) {
        err_set(err, "tokenizer.model: no data");
        return NULL;
    }
    const unsigned char *buf = data;
    SpmSpec s = {
        .model_type = 1, .unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1,
        .add_dummy_prefix = true, .remove_extra_ws = true, .escape_ws = true,
    };
    /* pass 1: count pieces, read the specs (repeated singular messages
     * merge, so later fields override earlier ones) */
    PB b = {buf, buf + size};
    PBField f;
    uint64_t n_pieces = 0;
    while (b.p < b.end) {
        if (pb_next(&b, &f) < 0) {
            err_set(err, "tokenizer.model: malformed protobuf at byte %zu", (size_t)(b.p - buf));
            return NULL;
        }
        if (f.field == 1 || f.field == 2 || f.field == 3) {
            if (f.wire != 2) {
                err_set(err, "tokenizer.model: field %u has wire type %d, expected 2", (unsigned)f.field, f.wire);
                return NULL;
            }
        }
        if (f.field == 1) n_pieces++;
        else if (f.field == 2 && parse_trainer(f.data, f.len, &s, err) < 0) return NULL;
        else if (f.field == 3 && parse_normalizer(f.data, f.len, &s, err) < 0) return NULL;
    }
    if (n_pieces == 0) {
        err_set(err, "tokenizer.model: no pieces (not a SentencePiece model?)");
        return NULL;
    }
    if (s.model_type != 2) {
        const char *names[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
        err_set(err, "tokenizer.model: model type %s (%d) is not supported, only BPE",
                s.model_type >= 1 && s.model_type <= 4 ? names[s.model_type] : "unknown", s.model_type);
        return NULL;
    }
    if (s.ws_suffix) {
        err_set(err, "tokenizer.model: treat_whitespace_as_suffix is not supported");
        return NULL;
    }
    if (s.charsmap_len) {
        err_set(err, "tokenizer.model: normalizers with a precompiled charsmap are not supported");
        return NULL;
    }
    if (n_pieces > MAX_VOCAB) {
        err_set(err, "tokenizer.model: too many pieces (%llu)", (unsigned long long)n_pieces);
        return NULL;
    }
    Tokenizer *t = tok_alloc((int)n_pieces, err);
    if (!t) return NULL;
    /* pass 2: the pieces */
    b.p = buf;
    int i = 0;
    while (b.p < b.end) {
        if (pb_next(&b, &f) < 0) { /* cannot happen: pass 1 accepted it */
            err_set(err, "tokenizer.model: malformed protobuf");
            goto fail;
        }
        if (f.field != 1) continue;
        const unsigned char *str;
        size_t len;
        float score;
        int type;
        if (parse_piece(f.data, f.len, &str, &len, &score, &type, err) < 0) goto fail;
        if (tok_set(t, i, (const char *)str, len, score, type, err) < 0) goto fail;
        i++;
    }
    if (tok_finish(t, "tokenizer.model", true, err) < 0) goto fail;
    t->byte_fallback = s.byte_fallback;
    t->add_dummy_prefix = s.add_dummy_prefix;
    t->remove_extra_ws = s.remove_extra_ws;
    t->escape_ws = s.escape_ws;
    t->bos = spm_special(t, s.bos_id);
    t->eos = spm_special(t, s.eos_id);
    t->pad = spm_special(t, s.pad_id);
    t->unk = spm_special(t, s.unk_id);
    if (t->unk < 0 || t->type[t->unk] != TOKEN_UNKNOWN) {
        t->unk = -1;
        for (int k = 0; k < t->n; k++)
            if (t->type[k] == TOKEN_UNKNOWN) {
                t->unk = k;
                break;
            }
        if (t->unk < 0) {
            err_set(err, "tokenizer.model: no unknown piece");
            goto fail;
        }
    }
    {
        const char *surf = s.has_unk_surface ? (const char *)s.unk_surface : DEFAULT_UNK_SURFACE;
        size_t slen = s.has_unk_surface ? s.unk_surface_len : strlen(DEFAULT_UNK_SURFACE);
        t->unk_surface = malloc(slen + 1);
        if (!t->unk_surface) {
            err_set(err, "tokenizer: out of memory");
            goto fail;
        }
        if (slen) memcpy(t->unk_surface, surf, slen);
        t->unk_surface[slen] = '\0';
        t->unk_surface_len = slen;
    }
    return t;
fail:
    tokenizer_free(t);
    return NULL;
}

Tokenizer *tokenizer_from_spm_file(const char *path, Error *err) {
    int fd = open_regular(path, err); /* FIFOs and devices refused */
    if (fd < 0) return NULL;
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        err_set(err, "%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    unsigned char *buf = NULL;
    long size = -1;
    if (fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
    if (size < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        err_set(err, "%s: cannot determine the file size", path);
        return NULL;
    }
    if (size > MAX_MODEL_FILE) {
        fclose(fp);
        err_set(err, "%s: file too large for a tokenizer model (%ld bytes)", path, size);
        return NULL;
    }
    buf = malloc(size ? (size_t)size : 1);
    if (!buf) {
        fclose(fp);
        err_set(err, "%s: out of memory", path);
        return NULL;
    }
    size_t got = fread(buf, 1, (size_t)size, fp);
    fclose(fp);
    if (got != (size_t)size) {
        free(buf);
        err_set(err, "%s: read error", path);
        return NULL;
    }
    Tokenizer *t = tokenizer_from_spm_memory(buf, (size_t)size, err);
    free(buf);
    if (!t) err_prefix(err, "%s", path);
    return t;
}

/* ---- GGUF ----------------------------------------------------------------- */

int tok_gguf_special(const GGUFFile *f, const char *key, int n, int def, int *out, Error *err) {
    uint32_t v;
    int r = gguf_get_u32(f, key, &v, err);
    if (r < 0) return -1;
    if (r == 0) {
        *out = def >= 0 && def < n ? def : -1;
        return 0;
    }
    if (v == UINT32_MAX) {
        *out = -1;
        return 0;
    }
    if (v >= (uint32_t)n) return err_set(err, "%s = %u is out of range (vocabulary of %d)", key, v, n);
    *out = (int)v;
    return 0;
}

/* llama.cpp's convert_hf_to_gguf.py types SentencePiece's user-defined
 * pieces as NORMAL (it only tells unknown/control/unused/byte apart), so a
 * Grok-1 GGUF made by it would lose what makes digits, newline/tab runs and
 * <|separator|> etc. whole symbols. When the vocabulary is exactly Grok-1's
 * (131072 pieces, ids 4..68 holding its 65 user-defined symbols, typed
 * NORMAL or CONTROL) and nothing is typed USER_DEFINED, restore the type. */
static void grok1_restore_user_defined(Tokenizer *t) {
    if (t->n != 131072) return;
    for (int i = 0; i < t->n; i++)
        if (t->type[i] == TOKEN_USER_DEFINED) return;
    for (int id = 4; id <= 68; id++) {
        char want[24];
        size_t wl;
        if (id <= 13) { /* "\n" x 1..10 */
            wl = (size_t)(id - 3);
            memset(want, '\n', wl);
        } else if (id <= 23) { /* digits */
            want[0] = (char)('0' + id - 14);
            wl = 1;
        } else if (id <= 31) { /* "\t" x 1..8 */
            wl = (size_t)(id - 23);
            memset(want, '\t', wl);
        } else if (id <= 46) { /* spaces x 2..16 */
            wl = (size_t)(id - 30);
            memset(want, ' ', wl);
        } else if (id == 47) {
            wl = 13;
            memcpy(want, "<|separator|>", wl);
        } else if (id == 48) {
            wl = 8;
            memcpy(want, "<|mask|>", wl);
        } else {
            wl = (size_t)snprintf(want, sizeof want, "<|control%d|>", id - 48);
        }
        if (t->len[id] != wl || memcmp(tok_piece_ptr(t, id), want, wl) != 0) return;
        if (t->type[id] != TOKEN_NORMAL && t->type[id] != TOKEN_CONTROL) return;
    }
    for (int id = 4; id <= 68; id++) t->type[id] = TOKEN_USER_DEFINED;
}

Tokenizer *tokenizer_from_gguf(const GGUFFile *f, Error *err) {
    GGUFString model;
    int r = gguf_get_str(f, "tokenizer.ggml.model", &model, err);
    if (r < 0) return NULL;
    if (r == 0) {
        err_set(err, "no tokenizer in the GGUF file (tokenizer.ggml.model missing)");
        return NULL;
    }
    const bool gpt2 = model.len == 4 && memcmp(model.data, "gpt2", 4) == 0;
    if (!gpt2 && !(model.len == 5 && memcmp(model.data, "llama", 5) == 0)) {
        int ml = model.len > 64 ? 64 : (int)model.len;
        err_set(err, "tokenizer model '%.*s' is not supported (expected 'llama', SentencePiece, or 'gpt2')", ml,
                model.data);
        return NULL;
    }
    const GGUFKV *tokens = gguf_find_kv(f, "tokenizer.ggml.tokens");
    if (!tokens || tokens->type != GGUF_TYPE_ARRAY || tokens->arr_type != GGUF_TYPE_STRING) {
        err_set(err, "tokenizer.ggml.tokens is missing or not a string array");
        return NULL;
    }
    if (tokens->arr_n < 1 || tokens->arr_n > MAX_VOCAB) {
        err_set(err, "tokenizer.ggml.tokens has %llu entries (1..%d allowed)", (unsigned long long)tokens->arr_n,
                MAX_VOCAB);
        return NULL;
    }
    if (gpt2) return bpe_from_gguf(f, tokens, err);
    int n = (int)tokens->arr_n;
    const GGUFKV *scores = gguf_find_kv(f, "tokenizer.ggml.scores");
    if (scores && (scores->type != GGUF_TYPE_ARRAY ||
                   (scores->arr_type != GGUF_TYPE_FLOAT32 && scores->arr_type != GGUF_TYPE_FLOAT64))) {
        err_set(err, "tokenizer.ggml.scores is not a float array");
        return NULL;
    }
    if (scores && scores->arr_n != (uint64_t)n) {
        err_set(err, "tokenizer.ggml.scores has %llu entries, tokens has %d", (unsigned long long)scores->arr_n, n);
        return NULL;
    }
    const GGUFKV *types = gguf_find_kv(f, "tokenizer.ggml.token_type");
    if (types) {
        GGUFType at = types->arr_type;
        bool is_int = at == GGUF_TYPE_INT8 || at == GGUF_TYPE_UINT8 || at == GGUF_TYPE_INT16 ||
                      at == GGUF_TYPE_UINT16 || at == GGUF_TYPE_INT32 || at == GGUF_TYPE_UINT32 ||
                      at == GGUF_TYPE_INT64 || at == GGUF_TYPE_UINT64;
        if (types->type != GGUF_TYPE_ARRAY || !is_int) {
            err_set(err, "tokenizer.ggml.token_type is not an integer array");
            return NULL;
        }
        if (types->arr_n != (uint64_t)n) {
            err_set(err, "tokenizer.ggml.token_type has %llu entries, tokens has %d",
                    (unsigned long long)types->arr_n, n);
            return NULL;
        }
    }
    Tokenizer *t = tok_alloc(n, err);
    if (!t) return NULL;
    for (int i = 0; i < n; i++) {
        const GGUFString *s = &tokens->arr_str[i];
        float score = scores ? (float)gguf_arr_f64(scores, (uint64_t)i) : 0.0f;
        int type = TOKEN_NORMAL;
        if (types) {
            int64_t ty = gguf_arr_i64(types, (uint64_t)i);
            if (ty == 0) ty = TOKEN_NORMAL; /* llama.cpp's "undefined" */
            if (ty < TOKEN_NORMAL || ty > TOKEN_BYTE) {
                err_set(err, "tokenizer.ggml.token_type[%d] = %lld is not a valid token type", i, (long long)ty);
                goto fail;
            }
            type = (int)ty;
        }
        if (s->len > UINT32_MAX - 1) {
            err_set(err, "tokenizer.ggml.tokens[%d] is too long", i);
            goto fail;
        }
        if (tok_set(t, i, s->data, (size_t)s->len, score, type, err) < 0) goto fail;
    }
    grok1_restore_user_defined(t);
    if (tok_finish(t, "tokenizer.ggml.tokens", false, err) < 0) goto fail;
    if (tok_gguf_special(f, "tokenizer.ggml.bos_token_id", n, 1, &t->bos, err) < 0 ||
        tok_gguf_special(f, "tokenizer.ggml.eos_token_id", n, 2, &t->eos, err) < 0 ||
        tok_gguf_special(f, "tokenizer.ggml.unknown_token_id", n, 0, &t->unk, err) < 0 ||
        tok_gguf_special(f, "tokenizer.ggml.padding_token_id", n, -1, &t->pad, err) < 0)
        goto fail;
    bool flag;
    r = gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &flag, err);
    if (r < 0) goto fail;
    t->add_dummy_prefix = r ? flag : true;
    r = gguf_get_bool(f, "tokenizer.ggml.remove_extra_whitespaces", &flag, err);
    if (r < 0) goto fail;
    t->remove_extra_ws = r ? flag : false;
    t->escape_ws = true;
    t->byte_fallback = false;
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] >= 0) t->byte_fallback = true;
    t->unk_surface = NULL; /* decode unknown tokens as their piece text */
    return t;
fail:
    tokenizer_free(t);
    return NULL;
}

int tokenizer_to_gguf(const Tokenizer *t, GGUFWriter *w, Error *err) {
    if (!t || !w) return err_set(err, "tokenizer_to_gguf: no tokenizer or writer");
    if (t->bpe) return bpe_to_gguf(t, w, err);
    size_t n = (size_t)t->n;
    const char **strs = malloc(n * sizeof *strs);
    uint64_t *lens = malloc(n * sizeof *lens);
    float *scores = malloc(n * sizeof *scores);
    int32_t *types = malloc(n * sizeof *types);
    int rc = -1;
    if (!strs || !lens || !scores || !types) {
        err_set(err, "tokenizer_to_gguf: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        strs[i] = tok_piece_ptr(t, (int)i);
        lens[i] = t->len[i];
        scores[i] = t->score[i];
        types[i] = t->type[i];
    }
    if (gguf_set_str(w, "tokenizer.ggml.model", "llama") < 0 || gguf_set_str(w, "tokenizer.ggml.pre", "default") < 0 ||
        gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, n) < 0 ||
        gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, n) < 0 ||
        gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n) < 0 ||
        (t->bos >= 0 && gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos) < 0) ||
        (t->eos >= 0 && gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos) < 0) ||
        (t->unk >= 0 && gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk) < 0) ||
        (t->pad >= 0 && gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)t->pad) < 0) ||
        gguf_set_bool(w, "tokenizer.ggml.add_bos_token", false) < 0 ||
        gguf_set_bool(w, "tokenizer.ggml.add_eos_token", false) < 0 ||
        gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", t->add_dummy_prefix) < 0 ||
        gguf_set_bool(w, "tokenizer.ggml.remove_extra_whitespaces", t->remove_extra_ws) < 0) {
        err_set(err, "tokenizer_to_gguf: out of memory");
        goto done;
    }
    rc = 0;
done:
    free(strs);
    free(lens);
    free(scores);
    free(types);
    return rc;
}

/* ---- synthetic vocabulary ---------------------------------------------- */

const char *const tok_synth_subwords[] = {
    "th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed", "is", "it",
    "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le", "ve", "co", "me", "de", "hi", "ri",
    "ro", "ic", "ne", "ea", "ra", "ce", "li", "ch", "ll", "be", "ma", "si", "om", "ur", "ing", "ion", "tion",
    "ent", "ers", "est", "ly", "ment", "ness", "able", "ous", "ive", "ted", "ter", "ate", "all", "ect", "ould",
    "ight", "ther", "ation", "ions", "ies", "ance", "ence", "ful", "less", "ize", "ity",
};
const size_t tok_n_synth_subwords = sizeof tok_synth_subwords / sizeof *tok_synth_subwords;

const char *const tok_synth_words[] = {
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
    "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were",
    "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would",
    "who", "so", "no", "what", "about", "out", "up", "them", "some", "into", "time", "only", "other", "new",
    "like", "than", "then", "its", "also", "two", "may", "first", "do", "any", "my", "now", "such", "these",
    "over", "most", "how", "after", "made", "world", "hello", "model", "token", "grok", "language", "people",
    "because", "could", "should", "through", "where", "between", "under", "while", "very", "just", "each",
    "many", "before", "number", "work", "great", "same", "little", "good", "year", "day", "way", "know",
    "think", "see", "make", "get", "go", "come", "use", "say", "write", "code", "data", "text", "function",
    "return", "value", "test", "string", "file", "system", "state", "open", "source", "computer", "science",
    "learning", "machine", "inference", "engine", "quick", "brown", "fox", "jumps", "lazy", "dog",
};
const size_t tok_n_synth_words = sizeof tok_synth_words / sizeof *tok_synth_words;

typedef struct {
    Tokenizer *t;
    int next;
    int first_normal;
    Error *err;
} Synth;

/* Adds a normal piece if it is new and there is room; -1 on error. */
static int synth_add(Synth *s, const char *p, size_t n) {
    if (s->next >= s->t->n) return 0;
    if (tok_lookup(s->t, p, n) >= 0) return 0;
    int id = s->next;
    if (tok_set(s->t, id, p, n, -(float)(id - s->first_normal), TOKEN_NORMAL, s->err) < 0) return -1;
    tok_table_insert(s->t, id);
    s->next++;
    return 0;
}

static int synth_add_str(Synth *s, const char *prefix, const char *body, size_t body_len) {
    char buf[96];
    size_t pl = strlen(prefix);
    if (pl + body_len > sizeof buf) return 0;
    memcpy(buf, prefix, pl);
    memcpy(buf + pl, body, body_len);
    return synth_add(s, buf, pl + body_len);
}

Tokenizer *tokenizer_synthetic(int n_vocab, Error *err) {
    if (n_vocab < 300 || n_vocab > MAX_VOCAB) {
        err_set(err, "tokenizer_synthetic: n_vocab %d out of range (300..%d)", n_vocab, MAX_VOCAB);
        return NULL;
    }
    Tokenizer *t = tok_alloc(n_vocab, err);
    if (!t) return NULL;
    static const char *const specials[4] = {"[PAD]", "[BOS]", "[EOS]", "[UNK]"};
    static const int special_types[4] = {TOKEN_CONTROL, TOKEN_CONTROL, TOKEN_CONTROL, TOKEN_UNKNOWN};
    for (int i = 0; i < 4; i++)
        if (tok_set(t, i, specials[i], strlen(specials[i]), 0.0f, special_types[i], err) < 0) goto fail;
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        if (tok_set(t, 4 + b, buf, 6, 0.0f, TOKEN_BYTE, err) < 0) goto fail;
    }
    for (int i = 0; i < 260; i++) tok_table_insert(t, i);
    Synth s = {t, 260, 260, err};
    static const char lower[] = "etaoinshrdlcumwfgypbvkjxqz";
    static const char upper[] = "ETAOINSHRDLCUMWFGYPBVKJXQZ";
    static const char other[] = "0123456789.,'\"-!?:;()[]{}<>/\\@#$%^&*_+=|~`\n\t";
    if (synth_add(&s, SPACE_SYM, SPACE_SYM_LEN) < 0) goto fail;
    for (const char *c = lower; *c; c++)
        if (synth_add(&s, c, 1) < 0) goto fail;
    for (const char *c = lower; *c; c++)
        if (synth_add_str(&s, SPACE_SYM, c, 1) < 0) goto fail;
    for (const char *c = upper; *c; c++)
        if (synth_add(&s, c, 1) < 0) goto fail;
    for (const char *c = other; *c; c++)
        if (synth_add(&s, c, 1) < 0) goto fail;
    for (const char *c = upper; *c; c++)
        if (synth_add_str(&s, SPACE_SYM, c, 1) < 0) goto fail;
    if (synth_add(&s, SPACE_SYM SPACE_SYM, 2 * SPACE_SYM_LEN) < 0) goto fail;
    /* sub-word chains: "in", "ing"; "ti", "tio", "tion" */
    for (size_t w = 0; w < tok_n_synth_subwords; w++) {
        const char *sw = tok_synth_subwords[w];
        for (size_t k = 2; k <= strlen(sw); k++)
            if (synth_add_str(&s, "", sw, k) < 0) goto fail;
    }
    /* word chains: "▁th", "▁the"; "▁Th", "▁The" */
    for (size_t w = 0; w < tok_n_synth_words; w++) {
        const char *wd = tok_synth_words[w];
        for (size_t k = 2; k <= strlen(wd); k++)
            if (synth_add_str(&s, SPACE_SYM, wd, k) < 0) goto fail;
    }
    for (size_t w = 0; w < tok_n_synth_words; w++) {
        char cap[32];
        size_t l = strlen(tok_synth_words[w]);
        if (l >= sizeof cap) continue;
        memcpy(cap, tok_synth_words[w], l);
        cap[0] = (char)(cap[0] - 'a' + 'A');
        for (size_t k = 2; k <= l; k++)
            if (synth_add_str(&s, SPACE_SYM, cap, k) < 0) goto fail;
    }
    /* fillers: all lower-case strings of length 2..5, plain and with "▁" */
    for (int len = 2; len <= 5 && s.next < n_vocab; len++) {
        long total = 1;
        for (int k = 0; k < len; k++) total *= 26;
        for (long v = 0; v < total && s.next < n_vocab; v++) {
            char buf[8];
            long x = v;
            for (int k = len - 1; k >= 0; k--) {
                buf[k] = (char)('a' + x % 26);
                x /= 26;
            }
            if (synth_add_str(&s, "", buf, (size_t)len) < 0 || synth_add_str(&s, SPACE_SYM, buf, (size_t)len) < 0)
                goto fail;
        }
    }
    for (long v = 0; s.next < n_vocab; v++) {
        char buf[32];
        int l = snprintf(buf, sizeof buf, "<extra_%ld>", v);
        if (synth_add(&s, buf, (size_t)l) < 0) goto fail;
    }
    /* rebuild the lookup structures from scratch (validates everything) */
    memset(t->table, 0xFF, ((size_t)t->mask + 1) * sizeof *t->table);
    if (tok_finish(t, "tokenizer_synthetic", true, err) < 0) goto fail;
    t->pad = 0;
    t->bos = 1;
    t->eos = 2;
    t->unk = 3;
    t->byte_fallback = true;
    t->add_dummy_prefix = true;
    t->remove_extra_ws = false;
    t->escape_ws = true;
    return t;
fail:
    tokenizer_free(t);
    return NULL;
}

/* ---- accessors ------------------------------------------------------------ */

int tokenizer_n_vocab(const Tokenizer *t) { return t ? t->n : 0; }
int tokenizer_bos(const Tokenizer *t) { return t ? t->bos : -1; }
int tokenizer_eos(const Tokenizer *t) { return t ? t->eos : -1; }
int tokenizer_unk(const Tokenizer *t) { return t ? t->unk : -1; }
int tokenizer_pad(const Tokenizer *t) { return t ? t->pad : -1; }

const char *tokenizer_piece(const Tokenizer *t, int id, size_t *len) {
    if (!t || id < 0 || id >= t->n) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->len[id];
    return tok_piece_ptr(t, id);
}

float tokenizer_score(const Tokenizer *t, int id) { return t && id >= 0 && id < t->n ? t->score[id] : 0.0f; }

int tokenizer_type(const Tokenizer *t, int id) { return t && id >= 0 && id < t->n ? t->type[id] : 0; }

int tokenizer_find(const Tokenizer *t, const char *piece, size_t len) {
    if (!t || (!piece && len)) return -1;
    return tok_lookup(t, piece ? piece : "", len);
}

/* ---- encoding ------------------------------------------------------------- */

typedef struct { /* a preallocated output: no growth, no checks */
    char *p;
    size_t len;
} FixedBuf;

static void fixed_put(FixedBuf *b, const char *s, size_t n) {
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* Appends a chunk of input, escaping spaces. */
static void put_escaped(const Tokenizer *t, FixedBuf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (t->escape_ws && s[i] == ' ') fixed_put(b, SPACE_SYM, SPACE_SYM_LEN);
        else b->p[b->len++] = s[i];
    }
}

/* The next normalization unit of in[0..n): a user-defined symbol, a valid
 * character, or an invalid byte standing for U+FFFD. */
static void next_chunk(const Tokenizer *t, const char *in, size_t n, const char **chunk, size_t *chunk_len,
                       size_t *consumed) {
    size_t m = tok_user_match(t, in, n);
    if (m) {
        *chunk = in;
        *chunk_len = *consumed = m;
        return;
    }
    m = tok_utf8_valid_len((const unsigned char *)in, n);
    if (m) {
        *chunk = in;
        *chunk_len = *consumed = m;
        return;
    }
    *chunk = REPL_CHAR;
    *chunk_len = 3;
    *consumed = 1;
}

/* Normalizes text into a malloc'd buffer (3*len + 4 bytes is enough: each
 * input byte gives at most 3 output bytes, plus the dummy prefix). */
static int normalize(const Tokenizer *t, const char *in, size_t len, char **out, size_t *out_len, Error *err) {
    FixedBuf b = {malloc(len * 3 + 4), 0};
    if (!b.p) return err_set(err, "tokenizer: out of memory");
    *out = b.p;
    *out_len = 0;
    size_t pos = 0;
    const char *chunk;
    size_t clen, used;
    if (t->remove_extra_ws) {
        while (pos < len) {
            next_chunk(t, in + pos, len - pos, &chunk, &clen, &used);
            if (!(clen == 1 && chunk[0] == ' ')) break;
            pos += used;
        }
    }
    if (pos >= len) return 0;
    if (t->add_dummy_prefix) {
        if (t->escape_ws) fixed_put(&b, SPACE_SYM, SPACE_SYM_LEN);
        else fixed_put(&b, " ", 1);
    }
    bool prev_space = t->remove_extra_ws;
    while (pos < len) {
        next_chunk(t, in + pos, len - pos, &chunk, &clen, &used);
        if (prev_space)
            while (clen && chunk[0] == ' ') {
                chunk++;
                clen--;
            }
        if (clen) {
            put_escaped(t, &b, chunk, clen);
            prev_space = chunk[clen - 1] == ' ';
        }
        pos += used;
        if (!t->remove_extra_ws) prev_space = false;
    }
    if (t->remove_extra_ws) {
        const char *sp = t->escape_ws ? SPACE_SYM : " ";
        size_t sl = t->escape_ws ? SPACE_SYM_LEN : 1;
        while (b.len >= sl && memcmp(b.p + b.len - sl, sp, sl) == 0) b.len -= sl;
    }
    *out_len = b.len;
    return 0;
}

static bool pair_before(const Pair *a, const Pair *b) {
    if (a->score != b->score) return a->score > b->score;
    return a->left < b->left;
}

void tok_heap_push(Enc *e, Pair p) {
    size_t i = e->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &e->heap[parent])) break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = p;
}

Pair tok_heap_pop(Enc *e) {
    Pair top = e->heap[0];
    Pair last = e->heap[--e->n_heap];
    size_t n = e->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&e->heap[c + 1], &e->heap[c])) c++;
        if (!pair_before(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

static void try_pair(Enc *e, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const Sym *a = &e->sym[l], *b = &e->sym[r];
    if (a->freeze || b->freeze) return;
    size_t size = (size_t)a->len + b->len;
    if (size > e->t->max_merge_len) return;
    int id = tok_lookup(e->t, e->text + a->start, size);
    if (id < 0 || !mergeable_type(e->t->type[id])) return;
    if (e->n_heap >= e->cap_heap) return; /* cannot happen: capacity is 3x the symbols */
    float s = e->t->score[id];
    if (isnan(s)) s = -INFINITY;
    Pair p = {s, l, r, (uint32_t)size};
    tok_heap_push(e, p);
    if (e->t->type[id] == TOKEN_UNUSED && e->rev_split) e->rev_split[id] = a->len;
}

/* Emits one final piece: its id, or its bytes / unk when it has none. */
static int emit_piece(Enc *e, const char *s, size_t n, Error *err) {
    const Tokenizer *t = e->t;
    int id = tok_lookup(t, s, n);
    if (id < 0 || t->type[id] == TOKEN_UNKNOWN) {
        if (t->byte_fallback) {
            for (size_t i = 0; i < n; i++) {
                int b = t->byte_id[(unsigned char)s[i]];
                if (b < 0) b = t->unk;
                if (b < 0) return err_set(err, "tokenizer: no byte piece or unknown token for byte 0x%02X",
                                          (unsigned char)s[i]);
                e->ids[e->n_ids++] = b;
            }
            return 0;
        }
        if (id < 0) id = t->unk;
        if (id < 0) return err_set(err, "tokenizer: text has no piece and the vocabulary has no unknown token");
        /* without byte fallback, a run of unknown pieces becomes one */
        if (e->prev_unk) return 0;
        e->prev_unk = true;
        e->ids[e->n_ids++] = id;
        return 0;
    }
    e->prev_unk = false;
    e->ids[e->n_ids++] = id;
    return 0;
}

/* An unused piece that was produced by a merge is split back into the two
 * pieces it was merged from, recursively. */
static int emit_symbol(Enc *e, const char *s, size_t n, size_t *stack, Error *err) {
    if (!e->rev_split) return emit_piece(e, s, n, err);
    /* stack of (offset, length) relative to s; at most n+1 entries each */
    size_t sp = 0;
    stack[sp++] = 0;
    stack[sp++] = n;
    while (sp) {
        size_t len = stack[--sp], off = stack[--sp];
        int id = tok_lookup(e->t, s + off, len);
        uint32_t split = id >= 0 && e->t->type[id] == TOKEN_UNUSED ? e->rev_split[id] : 0;
        if (split == 0 || split >= len) {
            if (emit_piece(e, s + off, len, err) < 0) return -1;
            continue;
        }
        stack[sp++] = off + split; /* right part, emitted after the left */
        stack[sp++] = len - split;
        stack[sp++] = off;
        stack[sp++] = split;
    }
    return 0;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, bool add_bos, int **ids_out, Error *err) {
    if (ids_out) *ids_out = NULL;
    if (!t || !ids_out || (!text && len)) return err_set(err, "tokenizer_encode: bad arguments");
    if (len > MAX_TEXT_LEN) return err_set(err, "tokenizer_encode: text too long (%zu bytes)", len);
    if (t->bpe) return bpe_encode(t, text, len, add_bos, ids_out, err);
    char *norm = NULL;
    size_t nlen = 0;
    if (normalize(t, text ? text : "", len, &norm, &nlen, err) < 0) return -1;
    Enc e = {0};
    e.t = t;
    e.text = norm;
    e.ids = malloc((nlen + 2) * sizeof *e.ids);
    size_t *stack = NULL;
    int rc = -1;
    if (!e.ids) {
        err_set(err, "tokenizer: out of memory");
        goto done;
    }
    if (add_bos && t->bos >= 0) e.ids[e.n_ids++] = t->bos;
    if (nlen == 0) {
        rc = 0;
        goto done;
    }
    /* initial symbols */
    e.sym = malloc(nlen * sizeof *e.sym);
    if (!e.sym) {
        err_set(err, "tokenizer: out of memory");
        goto done;
    }
    int32_t n_sym = 0;
    for (size_t pos = 0; pos < nlen;) {
        size_t m = tok_user_match(t, norm + pos, nlen - pos);
        bool freeze = m > 0;
        if (!m) {
            m = tok_one_char_len((unsigned char)norm[pos]);
            if (m > nlen - pos) m = nlen - pos;
        }
        Sym *s = &e.sym[n_sym];
        s->start = (uint32_t)pos;
        s->len = (uint32_t)m;
        s->prev = n_sym - 1;
        s->next = -1;
        s->freeze = freeze;
        if (n_sym > 0) e.sym[n_sym - 1].next = n_sym;
        n_sym++;
        pos += m;
    }
    if (t->has_unused) {
        e.rev_split = calloc((size_t)t->n, sizeof *e.rev_split);
        stack = malloc(((size_t)t->max_merge_len + 4) * 2 * sizeof *stack);
        if (!e.rev_split || !stack) {
            err_set(err, "tokenizer: out of memory");
            goto done;
        }
    }
    /* merges: at most n_sym-1 initial pairs and 2 per merge */
    e.cap_heap = (size_t)n_sym * 3 + 4;
    e.heap = malloc(e.cap_heap * sizeof *e.heap);
    if (!e.heap) {
        err_set(err, "tokenizer: out of memory");
        goto done;
    }
    for (int32_t i = 1; i < n_sym; i++) try_pair(&e, i - 1, i);
    while (e.n_heap) {
        Pair p = tok_heap_pop(&e);
        Sym *a = &e.sym[p.left], *b = &e.sym[p.right];
        if (a->len == 0 || b->len == 0 || (size_t)a->len + b->len != p.size) continue; /* stale */
        a->len += b->len;
        a->next = b->next;
        if (b->next >= 0) e.sym[b->next].prev = p.left;
        b->len = 0;
        try_pair(&e, a->prev, p.left);
        try_pair(&e, p.left, a->next);
    }
    for (int32_t i = 0; i >= 0; i = e.sym[i].next)
        if (emit_symbol(&e, norm + e.sym[i].start, e.sym[i].len, stack, err) < 0) goto done;
    rc = 0;
done:
    free(norm);
    free(e.sym);
    free(e.heap);
    free(e.rev_split);
    free(stack);
    if (rc < 0) {
        free(e.ids);
        return -1;
    }
    *ids_out = e.ids;
    return e.n_ids;
}

/* ---- decoding ------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap; /* cap includes the NUL */
    bool grow, oom;
} Sink;

static void sink_put(Sink *s, const char *src, size_t n) {
    if (s->oom || n == 0) return;
    if (s->len + n + 1 > s->cap) {
        if (!s->grow) {
            if (s->cap == 0) return;
            n = s->cap - 1 - s->len; /* truncate */
            if (n == 0) return;
        } else {
            size_t cap = s->cap ? s->cap : 64;
            while (cap < s->len + n + 1) cap *= 2;
            char *np = realloc(s->p, cap);
            if (!np) {
                s->oom = true;
                return;
            }
            s->p = np;
            s->cap = cap;
        }
    }
    memcpy(s->p + s->len, src, n);
    s->len += n;
    s->p[s->len] = '\0';
}

/* Emits the complete characters of the pending bytes; with `end`, the run
 * of byte tokens is over and incomplete sequences become U+FFFD. */
static void dec_drain(TokenDecoder *d, Sink *s, bool end) {
    int n = d->n_pending, i = 0;
    if (n < 0 || n > (int)sizeof d->pending) n = 0;
    while (i < n) {
        const unsigned char *p = d->pending + i;
        int avail = n - i;
        int need = utf8_need(p[0]);
        if (need == 0) {
            sink_put(s, REPL_CHAR, 3);
            i++;
            continue;
        }
        if (avail < need) {
            bool could = true;
            for (int k = 1; k < avail; k++)
                if (!is_trail(p[k])) could = false;
            if (could && !end) break; /* wait for the rest */
            sink_put(s, REPL_CHAR, 3);
            i++;
            continue;
        }
        size_t l = tok_utf8_valid_len(p, (size_t)need);
        if (l) {
            sink_put(s, (const char *)p, l);
            i += (int)l;
        } else {
            sink_put(s, REPL_CHAR, 3);
            i++;
        }
    }
    int rest = n - i;
    if (rest > 0 && i > 0) memmove(d->pending, d->pending + i, (size_t)rest);
    d->n_pending = rest;
}

static void dec_step(const Tokenizer *t, TokenDecoder *d, int id, Sink *s) {
    if (!t || id < 0 || id >= t->n) {
        dec_drain(d, s, true);
        return;
    }
    int type = t->type[id];
    const char *p = tok_piece_ptr(t, id);
    size_t n = t->len[id];
    if (type == TOKEN_BYTE) {
        int b = parse_byte_piece(p, n);
        if (d->n_pending < 0 || d->n_pending >= (int)sizeof d->pending) d->n_pending = 0;
        if (b >= 0) d->pending[d->n_pending++] = (unsigned char)b;
        d->started = true;
        dec_drain(d, s, false);
        return;
    }
    if (t->bpe && bpe_normal(type)) { /* raw bytes, completed to UTF-8 across tokens */
        d->started = true;
        for (size_t i = 0; i < n; i++) {
            if (d->n_pending < 0 || d->n_pending >= (int)sizeof d->pending) dec_drain(d, s, true);
            d->pending[d->n_pending++] = (unsigned char)p[i];
            dec_drain(d, s, false);
        }
        return;
    }
    dec_drain(d, s, true);
    if (type == TOKEN_CONTROL) return;
    if (t->bpe) { /* user-defined and unknown pieces: their text */
        sink_put(s, p, n);
        d->started = true;
        return;
    }
    if (type == TOKEN_UNKNOWN) {
        if (t->unk_surface) {
            sink_put(s, t->unk_surface, t->unk_surface_len);
            if (t->unk_surface_len) d->started = true;
        } else {
            sink_put(s, p, n);
            d->started = true;
        }
        return;
    }
    /* At the start, one leading "▁" (the dummy prefix) is dropped. The start
     * is over once something visible came out, or once that "▁" was dropped
     * - except with remove_extra_whitespaces, where further empty pieces
     * ("▁" alone) are still at the start. */
    bool dropped = false;
    if (!d->started && (t->add_dummy_prefix || t->remove_extra_ws) && n >= SPACE_SYM_LEN &&
        memcmp(p, SPACE_SYM, SPACE_SYM_LEN) == 0) {
        p += SPACE_SYM_LEN;
        n -= SPACE_SYM_LEN;
        dropped = !t->remove_extra_ws;
    }
    if (n > 0 || dropped) d->started = true;
    size_t i = 0, run = 0;
    while (i < n) {
        if (n - i >= SPACE_SYM_LEN && memcmp(p + i, SPACE_SYM, SPACE_SYM_LEN) == 0) {
            sink_put(s, p + run, i - run);
            sink_put(s, " ", 1);
            i += SPACE_SYM_LEN;
            run = i;
        } else {
            i++;
        }
    }
    sink_put(s, p + run, n - run);
}

void token_decoder_init(TokenDecoder *d) {
    if (!d) return;
    memset(d, 0, sizeof *d);
}

void token_decoder_after(const Tokenizer *t, TokenDecoder *d, const int *ids, int n) {
    if (!d) return;
    for (int i = 0; i < n && ids; i++) {
        Sink s = {NULL, 0, 0, false, false};
        dec_step(t, d, ids[i], &s);
    }
    d->n_pending = 0; /* an incomplete character of the prompt is the prompt's */
}

size_t token_decoder_push(const Tokenizer *t, TokenDecoder *d, int id, char *out, size_t cap) {
    Sink s = {out, 0, out ? cap : 0, false, false};
    if (out && cap) out[0] = '\0';
    if (!d) return 0;
    dec_step(t, d, id, &s);
    return s.len;
}

size_t token_decoder_flush(TokenDecoder *d, char *out, size_t cap) {
    Sink s = {out, 0, out ? cap : 0, false, false};
    if (out && cap) out[0] = '\0';
    if (!d) return 0;
    dec_drain(d, &s, true);
    return s.len;
}

char *tokenizer_decode(const Tokenizer *t, const int *ids, int n) {
    Sink s = {NULL, 0, 0, true, false};
    s.p = malloc(64);
    if (!s.p) return NULL;
    s.cap = 64;
    s.p[0] = '\0';
    TokenDecoder d;
    token_decoder_init(&d);
    for (int i = 0; i < n && ids; i++) dec_step(t, &d, ids[i], &s);
    dec_drain(&d, &s, true);
    if (s.oom) {
        free(s.p);
        return NULL;
    }
    return s.p;
}

bool tokenizer_is_bpe(const Tokenizer *t) { return t && t->bpe; }

bool tokenizer_drops_leading_space(const Tokenizer *t) {
    return t && !t->bpe && (t->add_dummy_prefix || t->remove_extra_ws);
}
