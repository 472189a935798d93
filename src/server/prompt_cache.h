/* prompt_cache.h - grok serve's prompt cache across requests: the keys and
 * values of token prefixes, kept after a slot moves on, so that any slot can
 * start a later request from any cached prefix instead of recomputing it.
 *
 * The cache holds blocks of PCACHE_BLOCK consecutive positions, keyed (as
 * vLLM's prefix caching) by a hash of the block's tokens chained with its
 * parent block's key, so a block stands for its whole prefix; its tokens
 * and parent key are stored and compared on every lookup. The RAM tier has
 * a byte budget (block data, tokens and bookkeeping) and evicts the least
 * recently used blocks (a prefix's parents are touched after its children,
 * so they go last). The optional disk tier writes each new block to
 * DIR/<model key>/<block key>.kv (written to a temporary name, then renamed)
 * and reads blocks missing in RAM back from there, so it survives restarts.
 * The model key hashes the model's tensor table and a sample of every
 * tensor's data, the KV types and the block size; a file that is truncated,
 * corrupt (checksum), or made for another model or KV layout is ignored
 * with a warning. A failed write (a full disk) is reported and skipped.
 * With a disk budget (pcache_set_disk_cap) the disk tier keeps an index of
 * its files in least-recently-used order (at start: by modification time;
 * a file read back gets a new one) and deletes the oldest to stay within it.
 *
 * Not thread-safe: the server's engine thread owns it. */
#ifndef GROK_PROMPT_CACHE_H
#define GROK_PROMPT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "forward.h"
#include "model.h"

#define PCACHE_BLOCK 32 /* positions per block */

typedef struct PromptCache PromptCache;

typedef struct {
    uint64_t hits;        /* lookups that restored at least one block */
    uint64_t misses;      /* lookups with a block to look for that restored none */
    uint64_t evictions;   /* blocks dropped from RAM for space */
    uint64_t blocks;      /* blocks in RAM now */
    uint64_t bytes;       /* bytes they take (counted against the budget) */
    uint64_t tokens_restored;
    uint64_t disk_reads;  /* blocks read back from the disk tier */
    uint64_t disk_writes; /* blocks written to it */
    uint64_t disk_errors; /* failed writes and rejected files */
    uint64_t disk_evictions; /* block files deleted for the disk budget */
    uint64_t disk_files;  /* block files of this model in the disk tier (counted with a budget only) */
    uint64_t disk_bytes;  /* and their bytes */
} PCacheStats;

/* A hash of what makes cached keys and values valid: the model (tensor
 * table, a sample of each tensor's data) and the KV types. */
/* The 64-bit hash the cache uses (keys, checksums), chained from h:
 * pcache_hash(pcache_hash(h, a, na), b, nb) hashes a then b. */
uint64_t pcache_hash(uint64_t h, const void *p, size_t n);

uint64_t pcache_model_key(const Model *m, uint32_t kv_type_k, uint32_t kv_type_v);

/* ram_bytes: the RAM budget (> 0); dir: the disk tier's folder or NULL
 * (created if missing). pos_bytes: context_kv_pos_bytes of the context. */
PromptCache *pcache_new(size_t ram_bytes, const char *dir, uint64_t model_key, size_t pos_bytes, Error *err);
void pcache_free(PromptCache *pc);

/* Caps the disk tier at `bytes` (> 0): indexes the block files already in
 * the model's folder and deletes the least recently used ones over it.
 * The budget counts this model and KV layout's folder only; another model's
 * blocks are left alone. -1 with a message if it is less than one block
 * file or the folder cannot be read. */
int pcache_set_disk_cap(PromptCache *pc, size_t bytes, Error *err);

/* Adds the full blocks of tokens[0..n), whose keys and values sequence seq
 * of c holds at positions 0..n-1, that the cache lacks. */
void pcache_save(PromptCache *pc, Context *c, int seq, const int *tokens, int n);

/* The longest cached prefix of tokens[0..n) in whole blocks: restores the
 * blocks past the first `have` positions (which seq already holds for
 * these tokens) into seq. Returns how many of tokens seq now holds (>=
 * have). Counts a hit or a miss. */
int pcache_restore(PromptCache *pc, Context *c, int seq, const int *tokens, int n, int have);

void pcache_stats(const PromptCache *pc, PCacheStats *st);

/* Checks the n bytes of a block file as the disk tier does before using
 * it: returns the block's keys and values (inside buf), or NULL with *why
 * (truncated, longer, not a block file, another model or KV layout, other
 * tokens, bad checksum). With tokens NULL, key, parent and tokens are not
 * compared with expected ones (the fuzzer). */
const uint8_t *pcache_parse_block(const PromptCache *pc, const void *buf, size_t n, uint64_t key, uint64_t parent,
                                  const int *tokens, const char **why);

#endif
