/* prompt_cache.c - see prompt_cache.h. */
#include "prompt_cache.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gguf.h"

#define FILE_MAGIC "GROKKV\0\1"
#define WARN_EVERY 100 /* repeated disk warnings: the first, then every 100th */

typedef struct {
    uint64_t key, parent, tick;
    int tokens[PCACHE_BLOCK];
    uint8_t *data; /* NULL: the entry is free */
    int next;      /* next entry in its hash bucket, -1 at the end; next free entry when free */
} Entry;

typedef struct {
    char magic[8];
    uint64_t model_key, key, parent;
    uint32_t block_tokens, reserved;
    uint64_t data_bytes, checksum;
} FileHeader;

/* A block file of the disk tier, in the index kept with a disk budget:
 * a least-recently-used list (prev/next) and hash chains (hnext). */
typedef struct {
    uint64_t key, bytes;
    int prev, next, hnext;
} DiskFile;

struct PromptCache {
    size_t budget, pos_bytes, data_bytes, cost;
    uint64_t model_key, tick;
    char *dir;            /* DIR/<model key>, or NULL */
    Entry *e;
    int cap, free_head, *bucket;
    size_t n_buckets;     /* a power of two */
    PCacheStats st;
    uint64_t warned;
    /* the disk budget (0: none) and the index of the files under it */
    size_t disk_cap;
    DiskFile *df;
    int df_cap, df_free, lru_head, lru_tail, *dbucket;
    size_t n_dbuckets;    /* a power of two */
    struct timespec stamp; /* the last modification time given to a used file (strictly increasing) */
};

static uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t pcache_hash(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, b + i, 8);
        h = splitmix(h ^ v);
    }
    uint64_t v = 0;
    memcpy(&v, b + i, n - i);
    return splitmix(h ^ v ^ ((uint64_t)(n - i) << 56));
}

uint64_t pcache_model_key(const Model *m, uint32_t kt, uint32_t vt) {
    uint64_t h = splitmix(0x67726f6b6b76ull ^ PCACHE_BLOCK);
    h = splitmix(h ^ kt ^ ((uint64_t)vt << 32));
    const GGUFFile *f = m->file;
    h = splitmix(h ^ gguf_n_tensors(f));
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const GGUFTensor *t = gguf_tensor(f, i);
        h = pcache_hash(h, t->name, strlen(t->name));
        h = pcache_hash(h, t->ne, sizeof t->ne);
        h = splitmix(h ^ t->type ^ (t->nbytes << 8));
        h = pcache_hash(h, t->data, t->nbytes < 256 ? t->nbytes : 256); /* a sample of the weights themselves */
    }
    return h;
}

static uint64_t block_key(uint64_t parent, const int *toks) { return pcache_hash(parent, toks, PCACHE_BLOCK * sizeof(int)); }

static void warn(PromptCache *pc, const char *fmt, const char *a, const char *b) {
    if (pc->warned++ % WARN_EVERY) return;
    fprintf(stderr, "grok serve: prompt cache: warning: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
}

PromptCache *pcache_new(size_t ram_bytes, const char *dir, uint64_t model_key, size_t pos_bytes, Error *err) {
    PromptCache *pc = calloc(1, sizeof *pc);
    if (!pc) {
        err_set(err, "out of memory");
        return NULL;
    }
    pc->budget = ram_bytes;
    pc->pos_bytes = pos_bytes;
    pc->data_bytes = pos_bytes * PCACHE_BLOCK;
    pc->cost = pc->data_bytes + sizeof(Entry) + 2 * sizeof(int) + 32; /* + bucket slot and malloc's header */
    pc->model_key = model_key;
    pc->cap = (int)(ram_bytes / pc->cost < (size_t)1 << 30 ? ram_bytes / pc->cost : (size_t)1 << 30);
    if (pc->cap < 1) {
        err_set(err, "--cache-ram %.1f MiB is less than one block of %d positions (%.2f MiB)", ram_bytes / 1048576.0,
                PCACHE_BLOCK, pc->cost / 1048576.0);
        goto fail;
    }
    pc->n_buckets = 1;
    while (pc->n_buckets < (size_t)pc->cap) pc->n_buckets <<= 1;
    pc->e = calloc((size_t)pc->cap, sizeof *pc->e);
    pc->bucket = malloc(pc->n_buckets * sizeof(int));
    if (!pc->e || !pc->bucket) {
        err_set(err, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < pc->n_buckets; i++) pc->bucket[i] = -1;
    for (int i = 0; i < pc->cap; i++) pc->e[i].next = i + 1 < pc->cap ? i + 1 : -1;
    pc->free_head = 0;
    if (dir) {
        size_t n = strlen(dir) + 20;
        if (!(pc->dir = malloc(n))) {
            err_set(err, "out of memory");
            goto fail;
        }
        snprintf(pc->dir, n, "%s/%016llx", dir, (unsigned long long)model_key);
        if (mkdir(dir, 0755) && errno != EEXIST) {
            err_set(err, "cannot create --cache-dir %s: %s", dir, strerror(errno));
            goto fail;
        }
        if (mkdir(pc->dir, 0755) && errno != EEXIST) {
            err_set(err, "cannot create %s: %s", pc->dir, strerror(errno));
            goto fail;
        }
    }
    return pc;
fail:
    pcache_free(pc);
    return NULL;
}

void pcache_free(PromptCache *pc) {
    if (!pc) return;
    if (pc->e)
        for (int i = 0; i < pc->cap; i++) free(pc->e[i].data);
    free(pc->e), free(pc->bucket), free(pc->dir);
    free(pc->df), free(pc->dbucket);
    free(pc);
}

void pcache_stats(const PromptCache *pc, PCacheStats *st) { *st = pc->st; }

/* ---- the RAM tier ------------------------------------------------------- */

static int find(const PromptCache *pc, uint64_t key, uint64_t parent, const int *toks) {
    for (int i = pc->bucket[key & (pc->n_buckets - 1)]; i >= 0; i = pc->e[i].next) {
        const Entry *e = &pc->e[i];
        if (e->key == key && e->parent == parent && !memcmp(e->tokens, toks, sizeof e->tokens)) return i;
    }
    return -1;
}

/* An entry with a data buffer to fill: a free one, or the least recently
 * used block's (evicted; its buffer is reused, so a full cache does not
 * churn the allocator); -1 if every block was touched at `now` or later
 * (the operation in progress) or on allocation failure. */
static int take_entry(PromptCache *pc, uint64_t now) {
    if (pc->free_head >= 0) {
        const int i = pc->free_head;
        uint8_t *d = malloc(pc->data_bytes);
        if (!d) return -1;
        pc->free_head = pc->e[i].next;
        pc->e[i].data = d;
        return i;
    }
    int lru = -1;
    for (int i = 0; i < pc->cap; i++)
        if (pc->e[i].data && (lru < 0 || pc->e[i].tick < pc->e[lru].tick)) lru = i;
    if (lru < 0 || pc->e[lru].tick >= now) return -1;
    int *p = &pc->bucket[pc->e[lru].key & (pc->n_buckets - 1)]; /* out of its bucket, buffer kept */
    while (*p != lru) p = &pc->e[*p].next;
    *p = pc->e[lru].next;
    pc->st.blocks--;
    pc->st.bytes -= pc->cost;
    pc->st.evictions++;
    return lru;
}

/* Gives back an entry take_entry returned and that was not inserted. */
static void drop_entry(PromptCache *pc, int i) {
    free(pc->e[i].data);
    pc->e[i].data = NULL;
    pc->e[i].next = pc->free_head;
    pc->free_head = i;
}

static void insert(PromptCache *pc, int i, uint64_t key, uint64_t parent, const int *toks, uint64_t tick) {
    Entry *e = &pc->e[i];
    e->key = key, e->parent = parent, e->tick = tick;
    memcpy(e->tokens, toks, sizeof e->tokens);
    int *b = &pc->bucket[key & (pc->n_buckets - 1)];
    e->next = *b;
    *b = i;
    pc->st.blocks++;
    pc->st.bytes += pc->cost;
}

/* ---- the disk tier ------------------------------------------------------ */

static void file_path(const PromptCache *pc, uint64_t key, char *out, size_t n) {
    snprintf(out, n, "%s/%016llx.kv", pc->dir, (unsigned long long)key);
}

/* ---- the disk budget: an LRU index of the block files -------------------- */

static int df_find(const PromptCache *pc, uint64_t key) {
    for (int i = pc->dbucket[key & (pc->n_dbuckets - 1)]; i >= 0; i = pc->df[i].hnext)
        if (pc->df[i].key == key) return i;
    return -1;
}

static void lru_unlink(PromptCache *pc, int i) {
    DiskFile *f = &pc->df[i];
    if (f->prev >= 0) pc->df[f->prev].next = f->next;
    else pc->lru_head = f->next;
    if (f->next >= 0) pc->df[f->next].prev = f->prev;
    else pc->lru_tail = f->prev;
}

static void lru_append(PromptCache *pc, int i) {
    pc->df[i].prev = pc->lru_tail;
    pc->df[i].next = -1;
    if (pc->lru_tail >= 0) pc->df[pc->lru_tail].next = i;
    else pc->lru_head = i;
    pc->lru_tail = i;
}

/* Marks block file `key` as just used (adding it to the index if new);
 * -1 when out of memory (the file then stays outside the budget). */
static int df_touch(PromptCache *pc, uint64_t key, uint64_t bytes) {
    if (!pc->disk_cap) return 0;
    int i = df_find(pc, key);
    if (i >= 0) {
        lru_unlink(pc, i);
        lru_append(pc, i);
        return 0;
    }
    if (pc->df_free < 0) {
        const int cap = pc->df_cap ? 2 * pc->df_cap : 1024;
        DiskFile *t = realloc(pc->df, (size_t)cap * sizeof *t);
        if (!t) return -1;
        pc->df = t;
        for (int k = pc->df_cap; k < cap; k++) pc->df[k].next = k + 1 < cap ? k + 1 : -1;
        pc->df_free = pc->df_cap;
        pc->df_cap = cap;
    }
    i = pc->df_free;
    pc->df_free = pc->df[i].next;
    pc->df[i].key = key, pc->df[i].bytes = bytes;
    int *b = &pc->dbucket[key & (pc->n_dbuckets - 1)];
    pc->df[i].hnext = *b;
    *b = i;
    lru_append(pc, i);
    pc->st.disk_files++;
    pc->st.disk_bytes += bytes;
    return 0;
}

/* A block used from RAM: its file (if indexed) moves to the newest end too,
 * so hot prefixes are the last to leave the disk. */
static void df_bump(PromptCache *pc, uint64_t key) {
    if (!pc->disk_cap) return;
    const int i = df_find(pc, key);
    if (i >= 0) lru_unlink(pc, i), lru_append(pc, i);
}

static void file_path(const PromptCache *pc, uint64_t key, char *out, size_t n);

/* Deletes the least recently used block files until the tier is within
 * its budget (never `keep`, the file just written). */
static void df_evict(PromptCache *pc, uint64_t keep) {
    while (pc->disk_cap && pc->st.disk_bytes > pc->disk_cap && pc->lru_head >= 0) {
        int i = pc->lru_head;
        if (pc->df[i].key == keep) {
            if (pc->df[i].next < 0) return;
            i = pc->df[i].next;
        }
        char path[4096];
        file_path(pc, pc->df[i].key, path, sizeof path);
        if (remove(path) && errno != ENOENT) {
            pc->st.disk_errors++;
            warn(pc, "cannot delete %s (%s) for --cache-disk", path, strerror(errno));
        }
        lru_unlink(pc, i);
        int *p = &pc->dbucket[pc->df[i].key & (pc->n_dbuckets - 1)];
        while (*p != i) p = &pc->df[*p].hnext;
        *p = pc->df[i].hnext;
        pc->st.disk_files--;
        pc->st.disk_bytes -= pc->df[i].bytes;
        pc->st.disk_evictions++;
        pc->df[i].next = pc->df_free;
        pc->df_free = i;
    }
}

typedef struct {
    uint64_t key, bytes;
    struct timespec mtime;
} Found;

static int by_mtime(const void *a, const void *b) {
    const Found *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec) return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec) return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return 0;
}

int pcache_set_disk_cap(PromptCache *pc, size_t bytes, Error *err) {
    const size_t file_bytes = sizeof(FileHeader) + PCACHE_BLOCK * sizeof(int) + pc->data_bytes;
    if (!pc->dir) return err_set(err, "--cache-disk needs --cache-dir");
    if (bytes < file_bytes)
        return err_set(err, "--cache-disk %.1f MiB is less than one block file (%.2f MiB)", bytes / 1048576.0,
                       file_bytes / 1048576.0);
    size_t nb = 1024;
    while (nb < bytes / file_bytes && nb < ((size_t)1 << 24)) nb <<= 1;
    if (!(pc->dbucket = malloc(nb * sizeof(int)))) return err_set(err, "out of memory");
    pc->n_dbuckets = nb;
    for (size_t i = 0; i < nb; i++) pc->dbucket[i] = -1;
    pc->df_free = pc->lru_head = pc->lru_tail = -1;
    pc->disk_cap = bytes;
    DIR *d = opendir(pc->dir);
    if (!d) return err_set(err, "cannot read %s: %s", pc->dir, strerror(errno));
    Found *found = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) { /* <16 hex digits>.kv */
        char *end;
        const size_t len = strlen(de->d_name);
        if (len != 19 || strcmp(de->d_name + 16, ".kv")) continue;
        const uint64_t key = strtoull(de->d_name, &end, 16);
        struct stat sb;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", pc->dir, de->d_name);
        if (end != de->d_name + 16 || stat(path, &sb) || !S_ISREG(sb.st_mode)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            Found *t = realloc(found, cap * sizeof *t);
            if (!t) {
                rc = err_set(err, "out of memory");
                break;
            }
            found = t;
        }
        found[n++] = (Found){key, (uint64_t)sb.st_size, sb.st_mtim};
    }
    closedir(d);
    if (!rc) {
        if (n) qsort(found, n, sizeof *found, by_mtime);
        for (size_t i = 0; i < n && !rc; i++)
            if (df_touch(pc, found[i].key, found[i].bytes)) rc = err_set(err, "out of memory");
        df_evict(pc, 0);
    }
    free(found);
    return rc;
}

static uint64_t checksum(const int *toks, const uint8_t *data, size_t n) {
    return pcache_hash(pcache_hash(0x636b73756dull, toks, PCACHE_BLOCK * sizeof(int)), data, n);
}

static void disk_write(PromptCache *pc, const Entry *e) {
    char path[4096], tmp[4200];
    file_path(pc, e->key, path, sizeof path);
    struct stat sb;
    if (stat(path, &sb) == 0) { /* written before (this run or an earlier one) */
        df_touch(pc, e->key, (uint64_t)sb.st_size);
        return;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FileHeader h = {FILE_MAGIC, pc->model_key, e->key, e->parent, PCACHE_BLOCK, 0, pc->data_bytes,
                    checksum(e->tokens, e->data, pc->data_bytes)};
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(&h, sizeof h, 1, f) == 1 && fwrite(e->tokens, sizeof e->tokens, 1, f) == 1 &&
              fwrite(e->data, pc->data_bytes, 1, f) == 1;
    const int saved = errno;
    if (f && fclose(f)) ok = false;
    if (ok && rename(tmp, path)) ok = false;
    if (!ok) {
        remove(tmp);
        pc->st.disk_errors++;
        warn(pc, "cannot write %s (%s): the block stays in RAM only", path, strerror(errno ? errno : saved));
        return;
    }
    pc->st.disk_writes++;
    if (pc->disk_cap) {
        df_touch(pc, e->key, sizeof h + sizeof e->tokens + pc->data_bytes);
        df_evict(pc, e->key);
    }
}

const uint8_t *pcache_parse_block(const PromptCache *pc, const void *buf, size_t n, uint64_t key, uint64_t parent,
                                  const int *tokens, const char **why) {
    FileHeader h;
    const size_t want = sizeof h + PCACHE_BLOCK * sizeof(int) + pc->data_bytes;
    const uint8_t *b = buf;
    if (n < sizeof h) {
        *why = "truncated";
        return NULL;
    }
    memcpy(&h, b, sizeof h);
    if (memcmp(h.magic, FILE_MAGIC, sizeof h.magic)) *why = "not a grok.c prompt cache block";
    else if (h.model_key != pc->model_key || h.block_tokens != PCACHE_BLOCK || h.data_bytes != pc->data_bytes)
        *why = "made for another model or KV cache layout";
    else if (n < want) *why = "truncated";
    else if (n > want) *why = "longer than a block";
    else if (tokens && (h.key != key || h.parent != parent || memcmp(b + sizeof h, tokens, PCACHE_BLOCK * sizeof(int))))
        *why = "holds other tokens";
    else {
        int t[PCACHE_BLOCK];
        memcpy(t, b + sizeof h, sizeof t);
        const uint8_t *data = b + sizeof h + sizeof t;
        if (checksum(t, data, pc->data_bytes) != h.checksum) *why = "corrupt (checksum)";
        else if (block_key(h.parent, t) != h.key) *why = "its key does not match its tokens";
        else return data;
    }
    return NULL;
}

/* Reads block `key` (parent, tokens as expected) from the disk tier into a
 * new RAM entry; -1 if absent or rejected. */
static int disk_read(PromptCache *pc, uint64_t key, uint64_t parent, const int *toks, uint64_t tick) {
    if (!pc->dir) return -1;
    char path[4096];
    file_path(pc, key, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    const size_t cap = sizeof(FileHeader) + PCACHE_BLOCK * sizeof(int) + pc->data_bytes + 1;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return -1;
    }
    const size_t n = fread(buf, 1, cap, f); /* one byte more than a block: a longer file is noticed */
    fclose(f);
    const char *why = NULL;
    const uint8_t *data = pcache_parse_block(pc, buf, n, key, parent, toks, &why);
    int i = -1;
    if (data && (i = take_entry(pc, tick)) >= 0) {
        memcpy(pc->e[i].data, data, pc->data_bytes);
        insert(pc, i, key, parent, toks, tick);
        pc->st.disk_reads++;
        df_touch(pc, key, n); /* in the index if it was not (the caller orders it) */
    }
    free(buf);
    if (!data) {
        pc->st.disk_errors++;
        warn(pc, "ignoring %s: %s", path, why);
    }
    return i;
}

/* ---- save and restore --------------------------------------------------- */

/* The block files of the first nb blocks of tokens, used: the newest in the
 * disk budget's order, parents after their children (a child is of no use
 * without its parents, so they leave last). The order is kept in the
 * files' modification times with or without a budget, so that one set
 * later starts from it. */
static void df_bump_prefix(PromptCache *pc, const int *tokens, int nb) {
    if (!pc->dir || nb <= 0) return;
    uint64_t *k = malloc((size_t)nb * sizeof *k), parent = pc->model_key;
    if (!k) return;
    for (int b = 0; b < nb; b++) parent = k[b] = block_key(parent, tokens + (size_t)b * PCACHE_BLOCK);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec < pc->stamp.tv_sec || (now.tv_sec == pc->stamp.tv_sec && now.tv_nsec <= pc->stamp.tv_nsec))
        now = pc->stamp;
    for (int b = nb - 1; b >= 0; b--) {
        if (pc->disk_cap && df_find(pc, k[b]) < 0) continue; /* not on disk */
        df_bump(pc, k[b]);
        /* the order survives a restart as the files' modification times, one
         * nanosecond apart (file timestamps alone can be coarser than that) */
        if (++now.tv_nsec == 1000000000L) now.tv_sec++, now.tv_nsec = 0;
        char path[4096];
        file_path(pc, k[b], path, sizeof path);
        const struct timespec ts[2] = {now, now};
        utimensat(AT_FDCWD, path, ts, 0);
    }
    pc->stamp = now;
    free(k);
}

void pcache_save(PromptCache *pc, Context *c, int seq, const int *tokens, int n) {
    const int nb = n / PCACHE_BLOCK;
    if (nb <= 0) return;
    pc->tick += (uint64_t)nb + 1;
    const uint64_t now = pc->tick - (uint64_t)nb; /* this operation's ticks: now .. pc->tick */
    uint64_t parent = pc->model_key;
    for (int b = 0; b < nb; b++) {
        const int *tk = tokens + (size_t)b * PCACHE_BLOCK;
        const uint64_t key = block_key(parent, tk), tick = pc->tick - (uint64_t)b; /* parents newest */
        int i = find(pc, key, parent, tk);
        if (i >= 0) {
            pc->e[i].tick = tick;
        } else {
            if ((i = take_entry(pc, now)) < 0) return;
            Error err;
            if (context_kv_read(c, seq, b * PCACHE_BLOCK, (b + 1) * PCACHE_BLOCK, pc->e[i].data, &err)) {
                drop_entry(pc, i);
                return;
            }
            insert(pc, i, key, parent, tk, tick);
            if (pc->dir) disk_write(pc, &pc->e[i]);
        }
        parent = key;
    }
    df_bump_prefix(pc, tokens, nb);
}

int pcache_restore(PromptCache *pc, Context *c, int seq, const int *tokens, int n, int have) {
    const int nb = n / PCACHE_BLOCK;
    const int first = have / PCACHE_BLOCK; /* blocks before it are in the slot already */
    if (nb <= first) return have;
    pc->tick += (uint64_t)nb + 1;
    const uint64_t now = pc->tick - (uint64_t)nb;
    uint64_t parent = pc->model_key;
    int b = 0;
    for (; b < first; b++) parent = block_key(parent, tokens + (size_t)b * PCACHE_BLOCK);
    int got = 0;
    for (; b < nb; b++) {
        const int *tk = tokens + (size_t)b * PCACHE_BLOCK;
        const uint64_t key = block_key(parent, tk), tick = pc->tick - (uint64_t)b;
        int i = find(pc, key, parent, tk);
        if (i < 0) i = disk_read(pc, key, parent, tk, now);
        if (i < 0) break;
        pc->e[i].tick = tick;
        Error err;
        if (context_kv_write(c, seq, b * PCACHE_BLOCK, (b + 1) * PCACHE_BLOCK, pc->e[i].data, &err)) break;
        got++;
        parent = key;
    }
    if (got == 0) {
        pc->st.misses++;
        return have;
    }
    pc->st.hits++;
    df_bump_prefix(pc, tokens, first + got);
    const int now_have = (first + got) * PCACHE_BLOCK;
    pc->st.tokens_restored += (uint64_t)(now_have - have);
    return now_have;
}
