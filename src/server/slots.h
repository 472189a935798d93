/* slots.h - the slot files of `grok serve --slot-save-path DIR` (llama.cpp's
 * POST /slots/{id}?action=save|restore|erase): a slot's cached tokens and
 * the keys and values of their positions, in a file that only the same
 * model with the same KV types can load.
 *
 * Layout (little-endian, as the machine writes it):
 *   SlotFileHeader (48 bytes): magic "GROKSLT\0", version, n_exact (the
 *     leading tokens whose entries are a fresh computation, not moved by a
 *     context shift: what the prompt cache may take from the slot),
 *     model_key (pcache_model_key: the tensor table, a sample of every
 *     tensor's data and the KV types), pos_bytes (context_kv_pos_bytes),
 *     n_tokens, checksum;
 *   n_tokens int32 token ids;
 *   the keys and values of positions 0..n_tokens-1 in chunks of SLOT_CHUNK
 *     positions (the last one shorter), each as context_kv_read writes it.
 * The checksum chains pcache_hash over the tokens, then over each chunk.
 *
 * slot_file_read is the one parser: the server's restore streams a file
 * through it and tests/fuzz/fuzz_slot_file.c feeds it arbitrary bytes. */
#ifndef GROK_SLOTS_H
#define GROK_SLOTS_H

#include <stddef.h>
#include <stdint.h>

#define SLOT_MAGIC "GROKSLT\0"
#define SLOT_VERSION 1u
#define SLOT_CHUNK 32 /* positions per checksummed chunk of keys and values */

typedef struct {
    char magic[8];
    uint32_t version, n_exact;
    uint64_t model_key, pos_bytes, n_tokens, checksum;
} SlotFileHeader;

/* What a file must match to be loaded. */
typedef struct {
    uint64_t model_key;
    size_t pos_bytes;
    int n_ctx;   /* most tokens a slot holds */
    int n_vocab; /* token ids must be below it */
} SlotFileSpec;

/* Reads up to n bytes into dst; returns how many (fewer only at the end or
 * on an error). */
typedef size_t (*SlotReadFn)(void *ctx, void *dst, size_t n);
/* Receives the keys and values of positions [p0, p1); non-zero stops. */
typedef int (*SlotSinkFn)(void *ctx, int p0, int p1, const void *kv);

/* Parses a slot file from rd (the header into *h): tokens go to tokens[0..n_ctx), each chunk
 * of keys and values to sink (as it is read: a file rejected after the
 * first chunk has sent some, the caller throws them away), using
 * chunk_buf (SLOT_CHUNK * pos_bytes bytes). Returns the number of tokens,
 * or -1 with *why (truncated, longer, not a slot file, another version,
 * another model or KV types, too many tokens, a bad token id, bad
 * checksum, or the sink failed). */
int slot_file_read(const SlotFileSpec *sp, SlotReadFn rd, void *rctx, SlotSinkFn sink, void *sctx, int *tokens,
                   void *chunk_buf, SlotFileHeader *h, const char **why);

/* Whether a name can be a file in the save folder: 1..255 bytes, no '/',
 * '\\', "..", control characters or leading '.'. */
int slot_filename_ok(const char *name);

#endif
