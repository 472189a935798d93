/* tokenizer.h - the two tokenizers of the Grok models:
 *   - SentencePiece BPE as Grok-1 uses it (../shared/docs/grok-architecture.md
 *     A4): byte fallback, user-defined symbols matched whole, dummy prefix,
 *     whitespace kept as U+2581 ("▁"), control tokens, digits split;
 *   - byte-level BPE as Grok-2 uses it (B6; GGUF tokenizer.ggml.model "gpt2"
 *     with merges, pre-tokenizer "grok-2"): special tokens matched whole, the
 *     grok-2 split pattern, BPE over bytes, no BOS, EOS 2.
 * Loaded from GGUF metadata (tokenizer.ggml.*), from a SentencePiece .model
 * protobuf, from tiktoken ranks (Grok-2's tokenizer.tok.json, via convert),
 * or synthesized for random test models. Decoding streams valid UTF-8. */
#ifndef GROK_TOKENIZER_H
#define GROK_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "gguf.h"

/* Token types: the SentencePiece piece types, which GGUF uses unchanged. */
enum {
    TOKEN_NORMAL = 1,
    TOKEN_UNKNOWN = 2,
    TOKEN_CONTROL = 3,
    TOKEN_USER_DEFINED = 4,
    TOKEN_UNUSED = 5,
    TOKEN_BYTE = 6,
};

typedef struct Tokenizer Tokenizer;

/* From tokenizer.ggml.{model="llama",tokens,scores,token_type,bos/eos/unk/
 * padding_token_id} (+ tokenizer.ggml.add_space_prefix, default true), or
 * tokenizer.ggml.{model="gpt2",pre="grok-2",tokens,token_type,merges,...}
 * (no BOS unless bos_token_id is given, EOS default 2). */
Tokenizer *tokenizer_from_gguf(const GGUFFile *f, Error *err);
/* From a SentencePiece ModelProto (.model file, BPE type). */
Tokenizer *tokenizer_from_spm_file(const char *path, Error *err);
Tokenizer *tokenizer_from_spm_memory(const void *data, size_t size, Error *err);
/* A working vocabulary of n_vocab (>= 300) pieces for random models:
 * 0 [PAD], 1 [BOS], 2 [EOS], 3 [UNK] (control/unknown), 256 byte pieces
 * <0x00>..<0xFF>, then deterministic normal pieces ("▁", "▁a", "e", ...)
 * with decreasing scores. */
Tokenizer *tokenizer_synthetic(int n_vocab, Error *err);
/* A byte-level BPE vocabulary (model "gpt2", pre "grok-2") for random
 * Grok-2 models: 0 <|pad|>, 1 <|separator|>, 2 <|eos|>, 3 <|mask|>
 * (control), 4..259 the 256 single bytes, then the merges of a small greedy
 * BPE training on a built-in multilingual text, then <|controlN|> tokens. */
Tokenizer *tokenizer_synthetic_gpt2(int n_vocab, Error *err);
/* A byte-level BPE vocabulary from tiktoken-style ranks: pieces[i] (raw
 * bytes, lens[i] long) is token i, types[i] its type (NORMAL for mergeable
 * ranks, CONTROL for special tokens; an empty piece is an unused id). The
 * merges are derived from the ranks: a normal token of 2+ bytes that BPE
 * with the lower ranks splits into two parts gets that merge; one that it
 * cannot bring to two parts gets none (tiktoken, too, can then only produce
 * it as a whole pre-tokenized piece). */
Tokenizer *tokenizer_from_ranks(int n, const char *const *pieces, const size_t *lens, const int *types, int eos,
                                Error *err);
void tokenizer_free(Tokenizer *t);

/* True for a byte-level BPE (gpt2) tokenizer. */
bool tokenizer_is_bpe(const Tokenizer *t);
/* True when decoding drops the leading space of the first piece (the
 * SentencePiece dummy prefix). */
bool tokenizer_drops_leading_space(const Tokenizer *t);

int tokenizer_n_vocab(const Tokenizer *t);
int tokenizer_bos(const Tokenizer *t);  /* -1 if none */
int tokenizer_eos(const Tokenizer *t);
int tokenizer_unk(const Tokenizer *t);
int tokenizer_pad(const Tokenizer *t);
/* The raw piece (SentencePiece: with "▁" for spaces; byte-level BPE: the
 * token's bytes); *len gets its length. */
const char *tokenizer_piece(const Tokenizer *t, int id, size_t *len);
float tokenizer_score(const Tokenizer *t, int id);
int tokenizer_type(const Tokenizer *t, int id);
/* Id of a piece given exactly, -1 if none. */
int tokenizer_find(const Tokenizer *t, const char *piece, size_t len);

/* Writes tokenizer.ggml.* (model "llama", pre "default", tokens, scores,
 * token_type, special ids, add_bos_token=false; or for byte-level BPE:
 * model "gpt2", pre, tokens in GPT-2's byte alphabet, token_type, merges,
 * special ids) into a GGUF writer. */
int tokenizer_to_gguf(const Tokenizer *t, GGUFWriter *w, Error *err);

/* Encodes text (any bytes; invalid UTF-8 is handled like spm_encode does:
 * each invalid byte becomes U+FFFD, which is then an ordinary character).
 * Adds BOS first if add_bos.
 * *ids_out is malloc'd (caller frees); returns the count, or -1. */
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, bool add_bos, int **ids_out,
                     Error *err);

/* Byte-level BPE only: the pieces the text is cut into before BPE
 * (special tokens and the grok-2 pre-tokenizer's pieces), for tests.
 * *buf_out gets the (UTF-8-sanitized) text, *ends_out[k] the end of piece
 * k in it; both malloc'd. Returns the piece count or -1. */
int tokenizer_split(const Tokenizer *t, const char *text, size_t len, char **buf_out, size_t **ends_out, Error *err);

/* Streaming decoder: feed ids one at a time, get the bytes that are now
 * complete UTF-8. A multi-byte character split across byte tokens is
 * emitted once it is complete; an invalid sequence becomes U+FFFD. The
 * leading space of the dummy prefix is dropped at the start. */
typedef struct {
    unsigned char pending[8];
    int n_pending;
    bool started;   /* false until the first visible text was emitted */
} TokenDecoder;

void token_decoder_init(TokenDecoder *d);
/* Puts the decoder after the text of ids[0..n) (a prompt), without output:
 * what it decodes next continues that text, so a leading "▁" is a space
 * (" is" after "The answer is"). Only the start of a whole text drops it. */
void token_decoder_after(const Tokenizer *t, TokenDecoder *d, const int *ids, int n);
/* Appends the completed text for `id` to out (cap bytes incl. NUL; 64 is
 * always enough for one token plus pending bytes... use >= 128) and returns
 * its length. Control tokens produce nothing. */
size_t token_decoder_push(const Tokenizer *t, TokenDecoder *d, int id, char *out, size_t cap);
/* Flushes incomplete pending bytes (as U+FFFD). */
size_t token_decoder_flush(TokenDecoder *d, char *out, size_t cap);

/* Whole-sequence decode; malloc'd NUL-terminated string, NULL on OOM. */
char *tokenizer_decode(const Tokenizer *t, const int *ids, int n);

#endif
