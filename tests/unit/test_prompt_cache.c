/* test_prompt_cache.c - grok serve's prompt cache (prompt_cache.c): blocks
 * saved from one sequence and restored into another give the logits of a
 * fresh computation; hits, misses, partial prefixes, LRU eviction (parents
 * outlive their children), the RAM budget against the process's RSS; the
 * disk tier across a "restart", corrupt, truncated and foreign files
 * ignored, and a failing write (file size limit: a full disk) skipped. */
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "forward.h"
#include "model.h"
#include "prompt_cache.h"
#include "quant.h"
#include "synth.h"
#include "check.h"

#define B PCACHE_BLOCK

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) v = strtol(line + 6, NULL, 10);
    fclose(f);
    return v;
}

static float rel_diff(const float *a, const float *b, size_t n) {
    float d = 0, m = 0;
    for (size_t i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i])), m = fmaxf(m, fabsf(b[i]));
    return d / (m > 0 ? m : 1);
}

static int count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const size_t l = strlen(e->d_name), s = strlen(suffix);
        if (l >= s && !strcmp(e->d_name + l - s, suffix)) n++;
        if (strstr(e->d_name, ".tmp.")) n += 1000; /* a temporary file left behind */
    }
    closedir(d);
    return n;
}

static Model *m;
static int V;
static char tmp[900];

/* A fresh computation of toks[0..n) in a new context: the logits of its last position. */
static void fresh_logits(const int *toks, int n, float *out) {
    Error err;
    ContextParams cp = {256, 1, 0, 1, GGML_TYPE_F32, GGML_TYPE_F32, GROK_DEVICE_CPU, 0, NULL};
    Context *c = context_new(m, &cp, &err);
    CHECK(c && forward_tokens(c, 0, toks, n, 0, out, false, &err) == 0, "fresh run");
    context_free(c);
}

static void test_save_restore(Context *c, uint64_t key, const int *a, int na, const int *x, int nx) {
    Error err;
    PromptCache *pc = pcache_new(64 << 20, NULL, key, context_kv_pos_bytes(c), &err);
    CHECK(pc != NULL, "pcache_new");
    if (!pc) return;
    float *got = malloc(sizeof(float) * (size_t)V), *want = malloc(sizeof(float) * (size_t)V);
    CHECK(forward_tokens(c, 0, a, na, 0, got, false, &err) == 0, "fill sequence 0");
    pcache_save(pc, c, 0, a, na);
    PCacheStats st;
    pcache_stats(pc, &st);
    CHECK(st.blocks == (uint64_t)(na / B), "saved %llu blocks of %d", (unsigned long long)st.blocks, na / B);
    /* sequence 1 starts from the cached prefix, computes the rest */
    const int n = na + nx;
    int *toks = malloc(sizeof(int) * (size_t)n);
    memcpy(toks, a, sizeof(int) * (size_t)na);
    memcpy(toks + na, x, sizeof(int) * (size_t)nx);
    const int have = pcache_restore(pc, c, 1, toks, n - 1, 0);
    CHECK(have == na / B * B, "restored %d of %d", have, na / B * B);
    CHECK(forward_tokens(c, 1, toks + have, n - have, have, got, false, &err) == 0, "rest after the restore");
    fresh_logits(toks, n, want);
    float d = rel_diff(got, want, (size_t)V);
    CHECK(d < 1e-4f, "logits after a restore vs fresh: %g", d);
    /* a prompt sharing only the first block: a partial hit */
    int *p2 = malloc(sizeof(int) * (size_t)n);
    memcpy(p2, toks, sizeof(int) * (size_t)n);
    p2[B + 3] = (p2[B + 3] + 1) % V;
    CHECK(pcache_restore(pc, c, 1, p2, n - 1, 0) == B, "a prompt that leaves the prefix in block 2 restores block 1");
    /* `have` positions already in place: only the blocks after them */
    CHECK(pcache_restore(pc, c, 1, toks, n - 1, B + 5) == na / B * B, "restore past what the slot has");
    CHECK(pcache_restore(pc, c, 1, toks, n - 1, na / B * B) == na / B * B, "nothing to restore: have stays");
    for (int i = 0; i < n; i++) p2[i] = (toks[i] + 7) % V;
    pcache_stats(pc, &st);
    const uint64_t misses = st.misses, hits = st.hits;
    CHECK(pcache_restore(pc, c, 1, p2, n - 1, 0) == 0, "unknown prompt: a miss");
    CHECK(pcache_restore(pc, c, 1, toks, B - 1, 0) == 0, "less than a block: nothing");
    pcache_stats(pc, &st);
    CHECK(st.misses == misses + 1 && st.hits == hits, "hit/miss counts: %llu %llu", (unsigned long long)st.hits,
          (unsigned long long)st.misses);
    free(toks), free(p2), free(got), free(want);
    pcache_free(pc);
}

/* cost of one block: found by filling a small budget */
static void test_lru(Context *c, uint64_t key) {
    Error err;
    const size_t data = context_kv_pos_bytes(c) * B;
    /* room for 3 blocks and a bit (each block costs its data plus < 256 bytes of bookkeeping) */
    const size_t budget = 3 * (data + 256) + 100;
    PromptCache *pc = pcache_new(budget, NULL, key, context_kv_pos_bytes(c), &err);
    CHECK(pc != NULL, "pcache_new");
    if (!pc) return;
    int t[6][B];
    for (int k = 0; k < 6; k++)
        for (int i = 0; i < B; i++) t[k][i] = (k * 1000 + i * 13 + 1) % V;
    float *lg = malloc(sizeof(float) * (size_t)V);
    for (int k = 0; k < 3; k++) {
        forward_tokens(c, 0, t[k], B, 0, lg, false, &err);
        pcache_save(pc, c, 0, t[k], B);
    }
    CHECK(pcache_restore(pc, c, 1, t[0], B, 0) == B, "block 0 cached"); /* touched: now newer than 1 */
    forward_tokens(c, 0, t[3], B, 0, lg, false, &err);
    pcache_save(pc, c, 0, t[3], B);
    PCacheStats st;
    pcache_stats(pc, &st);
    CHECK(st.evictions == 1 && st.blocks == 3 && st.bytes <= budget, "one eviction, 3 blocks, %llu <= %zu bytes",
          (unsigned long long)st.bytes, budget);
    CHECK(pcache_restore(pc, c, 1, t[1], B, 0) == 0, "the least recently used block (1) was evicted");
    CHECK(pcache_restore(pc, c, 1, t[0], B, 0) == B && pcache_restore(pc, c, 1, t[3], B, 0) == B,
          "blocks 0 and 3 stay");
    /* a 3-block prefix, then another block: the prefix loses its last block, keeps its first two */
    int chain[3 * B];
    for (int i = 0; i < 3 * B; i++) chain[i] = (i * 31 + 17) % V;
    forward_tokens(c, 0, chain, 3 * B, 0, lg, false, &err);
    pcache_save(pc, c, 0, chain, 3 * B);
    forward_tokens(c, 0, t[4], B, 0, lg, false, &err);
    pcache_save(pc, c, 0, t[4], B);
    CHECK(pcache_restore(pc, c, 1, chain, 3 * B, 0) == 2 * B, "the prefix's parents outlive its last block");
    pcache_free(pc);
    /* too small a budget is an error */
    PromptCache *tiny = pcache_new(data / 2, NULL, key, context_kv_pos_bytes(c), &err);
    CHECK(!tiny && strstr(err.msg, "less than one block"), "budget below one block refused");
    pcache_free(tiny);
    free(lg);
}

/* the budget holds against the RSS: fill far past it */
static void test_rss(Context *c, uint64_t key) {
    Error err;
    const size_t budget = 8u << 20, data = context_kv_pos_bytes(c) * B;
    float *lg = malloc(sizeof(float) * (size_t)V);
    int t[B];
    for (int i = 0; i < B; i++) t[i] = (i * 7 + 3) % V;
    forward_tokens(c, 0, t, B, 0, lg, false, &err);
    const long before = rss_kib();
    PromptCache *pc = pcache_new(budget, NULL, key, context_kv_pos_bytes(c), &err);
    const int n = (int)(3 * budget / data); /* three budgets' worth of distinct blocks */
    for (int k = 0; k < n; k++) {
        t[0] = k % V, t[1] = k / V; /* distinct prefixes, same bytes in the context (not recomputed: fast) */
        pcache_save(pc, c, 0, t, B);
    }
    const long after = rss_kib();
    PCacheStats st;
    pcache_stats(pc, &st);
    printf("RSS: budget %zu KiB, cache %llu KiB in %llu blocks after %d saves (%llu evictions), RSS +%ld KiB\n",
           budget / 1024, (unsigned long long)st.bytes / 1024, (unsigned long long)st.blocks, n,
           (unsigned long long)st.evictions, after - before);
    CHECK(st.bytes <= budget && st.evictions > 0, "bytes %llu within the budget %zu", (unsigned long long)st.bytes,
          budget);
    /* AddressSanitizer adds its shadow memory (1/8) and redzones to every allocation */
    long slack = 512;
#if defined(__SANITIZE_ADDRESS__)
    slack += (long)(budget / 1024) / 4;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    slack += (long)(budget / 1024) / 4;
#endif
#endif
    CHECK(after - before <= (long)(budget / 1024) + slack, "RSS grew %ld KiB for a %zu KiB budget", after - before,
          budget / 1024);
    pcache_free(pc);
    free(lg);
}

static void test_disk(Context *c, uint64_t key, const int *a, int na) {
    Error err;
    char dir[1024], sub[1100], path[1400], cmd[1200];
    snprintf(dir, sizeof dir, "%s/pcache_disk", tmp);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "clean %s", dir);
    snprintf(sub, sizeof sub, "%s/%016llx", dir, (unsigned long long)key);
    float *got = malloc(sizeof(float) * (size_t)V), *want = malloc(sizeof(float) * (size_t)V);
    const int nb = na / B;
    forward_tokens(c, 0, a, na, 0, got, false, &err);
    PromptCache *pc = pcache_new(64 << 20, dir, key, context_kv_pos_bytes(c), &err);
    CHECK(pc != NULL, "pcache_new with a folder: %s", pc ? "" : err.msg);
    if (!pc) return;
    pcache_save(pc, c, 0, a, na);
    PCacheStats st;
    pcache_stats(pc, &st);
    CHECK(st.disk_writes == (uint64_t)nb && count_files(sub, ".kv") == nb, "%d blocks written to %s", nb, sub);
    pcache_free(pc);

    /* a restart: an empty RAM tier finds the blocks on disk */
    pc = pcache_new(64 << 20, dir, key, context_kv_pos_bytes(c), &err);
    CHECK(pcache_restore(pc, c, 1, a, na, 0) == nb * B, "restored from disk after a restart");
    pcache_stats(pc, &st);
    CHECK(st.disk_reads == (uint64_t)nb, "disk reads %llu", (unsigned long long)st.disk_reads);
    forward_tokens(c, 1, a + nb * B, na - nb * B, nb * B, got, false, &err);
    fresh_logits(a, na, want);
    CHECK(rel_diff(got, want, (size_t)V) < 1e-4f, "logits after a disk restore vs fresh");
    pcache_free(pc);

    /* which file holds which block: without the file of block b, a restore stops at b */
    char f[3][1500];
    f[0][0] = f[1][0] = f[2][0] = 0;
    DIR *d = opendir(sub);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strstr(e->d_name, ".kv")) continue;
        snprintf(path, sizeof path, "%s/%s", sub, e->d_name);
        char moved[1500];
        snprintf(moved, sizeof moved, "%s.away", path);
        CHECK(rename(path, moved) == 0, "rename");
        PromptCache *p = pcache_new(64 << 20, dir, key, context_kv_pos_bytes(c), &err);
        const int r = pcache_restore(p, c, 1, a, na, 0) / B;
        pcache_free(p);
        CHECK(rename(moved, path) == 0, "rename back");
        if (r < 3) snprintf(f[r], sizeof f[r], "%s", path);
    }
    if (d) closedir(d);
    CHECK(f[0][0] && f[1][0] && f[2][0], "found the files of blocks 1, 2 and 3");
    if (!f[0][0] || !f[1][0] || !f[2][0]) return;

    /* corrupt data in block 2: blocks 1 only */
    FILE *fp = fopen(f[1], "r+b");
    fseek(fp, -10, SEEK_END);
    int ch = fgetc(fp);
    fseek(fp, -10, SEEK_END);
    fputc(ch ^ 0x5a, fp);
    fclose(fp);
    pc = pcache_new(64 << 20, dir, key, context_kv_pos_bytes(c), &err);
    printf("(a warning about a corrupt file is expected here)\n");
    CHECK(pcache_restore(pc, c, 1, a, na, 0) == B, "a corrupt second block: only the first is restored");
    pcache_stats(pc, &st);
    CHECK(st.disk_errors == 1, "the corrupt file counted: %llu", (unsigned long long)st.disk_errors);
    pcache_save(pc, c, 0, a, na); /* the RAM tier takes the blocks again; the file on disk stays as it is */
    CHECK(pcache_restore(pc, c, 1, a, na, 0) == nb * B, "all blocks from RAM after saving again");
    pcache_free(pc);

    /* block 2 rewritten, block 3 truncated: two blocks */
    CHECK(remove(f[1]) == 0 && truncate(f[2], 100) == 0, "remove / truncate");
    pc = pcache_new(64 << 20, dir, key, context_kv_pos_bytes(c), &err);
    pcache_save(pc, c, 0, a, 2 * B);
    pcache_free(pc);
    pc = pcache_new(64 << 20, dir, key, context_kv_pos_bytes(c), &err);
    printf("(a warning about a truncated file is expected here)\n");
    CHECK(pcache_restore(pc, c, 1, a, na, 0) == 2 * B, "a truncated third block is ignored");
    pcache_free(pc);

    /* block 1's file made for another model (its header's model key): never loaded */
    fp = fopen(f[0], "r+b");
    uint64_t other = key ^ 1;
    fseek(fp, 8, SEEK_SET);
    fwrite(&other, sizeof other, 1, fp);
    fclose(fp);
    pc = pcache_new(64 << 20, dir, key, context_kv_pos_bytes(c), &err);
    printf("(a warning about another model's file is expected here)\n");
    CHECK(pcache_restore(pc, c, 1, a, na, 0) == 0, "another model's block is not loaded");
    pcache_stats(pc, &st);
    CHECK(st.disk_errors == 1 && st.misses == 1, "counted as a rejected file and a miss");
    pcache_free(pc);
    /* another model finds nothing in this model's folder */
    pc = pcache_new(64 << 20, dir, key ^ 1, context_kv_pos_bytes(c), &err);
    CHECK(pcache_restore(pc, c, 1, a, na, 0) == 0, "another model finds nothing");
    pcache_free(pc);

    /* a full disk: writes fail (file size limit), the blocks stay in RAM, no temporary files remain */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "clean");
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 1000;
    signal(SIGXFSZ, SIG_IGN);
    pc = pcache_new(64 << 20, dir, key, context_kv_pos_bytes(c), &err);
    setrlimit(RLIMIT_FSIZE, &lim);
    printf("(warnings about failed writes are expected here)\n");
    pcache_save(pc, c, 0, a, na);
    setrlimit(RLIMIT_FSIZE, &old);
    pcache_stats(pc, &st);
    CHECK(st.disk_errors == (uint64_t)nb && st.disk_writes == 0, "failed writes counted: %llu",
          (unsigned long long)st.disk_errors);
    CHECK(count_files(sub, ".kv") == 0, "no block or temporary file left after failed writes");
    CHECK(pcache_restore(pc, c, 1, a, na, 0) == nb * B, "the blocks are still served from RAM");
    pcache_free(pc);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "clean");
    free(got), free(want);
}

/* the fuzzer's seed (written by hand from the format) is a block pcache_parse_block accepts */
static void test_seed(void) {
    const char *src = getenv("GROK_SRC");
    if (!src) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fuzz/seed_prompt_cache/block", src);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "open %s", path);
    if (!f) return;
    static uint8_t buf[8192];
    const size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    Error err;
    PromptCache *pc = pcache_new(1 << 20, NULL, 0x1234567890abcdefull, 64, &err);
    const char *why = NULL;
    CHECK(pc && pcache_parse_block(pc, buf, n, 0, 0, NULL, &why) != NULL, "the fuzz seed is a valid block: %s",
          why ? why : "");
    buf[100] ^= 1;
    CHECK(pc && !pcache_parse_block(pc, buf, n, 0, 0, NULL, &why) && strstr(why, "checksum"), "a flipped bit: %s",
          why ? why : "");
    CHECK(pc && !pcache_parse_block(pc, buf, n - 1, 0, 0, NULL, &why) && strstr(why, "truncated"), "one byte short");
    pcache_free(pc);
}

/* --cache-disk: the disk tier deletes its least recently used block files
 * to stay within the budget, parents after their children, and the order
 * survives a restart (the files' modification times). */
static void test_disk_cap(Context *c, uint64_t key) {
    Error err;
    char dir[1024], sub[1100], cmd[1200];
    snprintf(dir, sizeof dir, "%s/pcache_disk_cap", tmp);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "clean %s", dir);
    snprintf(sub, sizeof sub, "%s/%016llx", dir, (unsigned long long)key);
    enum { NB_A = 3, NB_Y = 4 };
    int a[NB_A * B], y[NB_Y * B];
    for (int i = 0; i < NB_A * B; i++) a[i] = (i * 29 + 7) % V;
    for (int i = 0; i < NB_Y * B; i++) y[i] = (i * 31 + 5) % V;
    float *lg = malloc(sizeof(float) * (size_t)V);
    forward_tokens(c, 0, a, NB_A * B, 0, lg, false, &err);
    forward_tokens(c, 1, y, NB_Y * B, 0, lg, false, &err);
    PromptCache *pc = pcache_new(64 << 20, dir, key, context_kv_pos_bytes(c), &err);
    CHECK(pc != NULL, "pcache_new");
    if (!pc) return;
    pcache_save(pc, c, 0, a, NB_A * B); /* no budget: 3 files */
    pcache_free(pc);
    const size_t fs = sizeof(uint64_t) * 6 + 8 + B * sizeof(int) + (size_t)B * context_kv_pos_bytes(c);
    CHECK(pcache_set_disk_cap(pc = pcache_new(1 << 20, dir, key, context_kv_pos_bytes(c), &err), fs - 1, &err) < 0 &&
              strstr(err.msg, "less than one block file"),
          "a budget under one block file is refused: %s", err.msg);
    pcache_free(pc);

    /* a restart with room for 5 files: the 3 are indexed; 4 more evict 2, A's children first */
    pc = pcache_new(64 << 20, dir, key, context_kv_pos_bytes(c), &err);
    CHECK(pcache_set_disk_cap(pc, 5 * fs, &err) == 0, "set the budget: %s", err.msg);
    PCacheStats st;
    pcache_stats(pc, &st);
    CHECK(st.disk_files == NB_A && st.disk_bytes == NB_A * fs, "indexed %llu files, %llu bytes (file %zu)",
          (unsigned long long)st.disk_files, (unsigned long long)st.disk_bytes, fs);
    pcache_save(pc, c, 1, y, NB_Y * B);
    pcache_stats(pc, &st);
    CHECK(st.disk_evictions == 2 && st.disk_files == 5 && count_files(sub, ".kv") == 5,
          "4 more files with room for 5: 2 evicted (%llu), 5 left (%d on disk)", (unsigned long long)st.disk_evictions,
          count_files(sub, ".kv"));
    pcache_free(pc);
    pc = pcache_new(64 << 20, dir, key, context_kv_pos_bytes(c), &err); /* an empty RAM tier */
    CHECK(pcache_restore(pc, c, 0, a, NB_A * B, 0) == B, "A keeps its first block (its parent), not its children");
    CHECK(pcache_restore(pc, c, 1, y, NB_Y * B, 0) == NB_Y * B, "Y, the newest, is whole");
    pcache_free(pc);

    /* a restart with a smaller budget: the oldest go at once; Y was used last, its parents newest */
    pc = pcache_new(64 << 20, dir, key, context_kv_pos_bytes(c), &err);
    CHECK(pcache_set_disk_cap(pc, 2 * fs + fs / 2, &err) == 0, "a smaller budget");
    pcache_stats(pc, &st);
    CHECK(st.disk_files == 2 && st.disk_evictions == 3 && count_files(sub, ".kv") == 2,
          "a restart within 2.5 files keeps 2 (%llu, %llu evicted)", (unsigned long long)st.disk_files,
          (unsigned long long)st.disk_evictions);
    pcache_free(pc);
    pc = pcache_new(64 << 20, dir, key, context_kv_pos_bytes(c), &err);
    CHECK(pcache_restore(pc, c, 1, y, NB_Y * B, 0) == 2 * B, "Y's first two blocks are the ones kept");
    pcache_free(pc);
    CHECK(system(cmd) == 0, "clean");
    free(lg);
}

int main(void) {
    test_seed();
    const char *t = getenv("GROK_TMP") ? getenv("GROK_TMP") : "/tmp";
    snprintf(tmp, sizeof tmp, "%s", t);
    mkdir(tmp, 0755);
    char path[1024];
    Error err;
    snprintf(path, sizeof path, "%s/test_prompt_cache.gguf", tmp);
    SynthParams sp = {128, 2, 4, 2, 96, 4, 2, 256, 320, GGML_TYPE_F32, 0, 0, 41, NULL};
    if (synth_write_model(&sp, path, &err)) {
        printf("write: %s\n", err.msg);
        return 1;
    }
    m = model_load(path, &err);
    if (!m) {
        printf("load: %s\n", err.msg);
        return 1;
    }
    V = m->cfg.n_vocab;
    ContextParams cp = {256, 2, 0, 1, GGML_TYPE_F32, GGML_TYPE_F32, GROK_DEVICE_CPU, 0, NULL};
    Context *c = context_new(m, &cp, &err);
    const uint64_t key = pcache_model_key(m, GGML_TYPE_F32, GGML_TYPE_F32);
    CHECK(key != pcache_model_key(m, GGML_TYPE_F32, GGML_TYPE_F16) &&
              key != pcache_model_key(m, GGML_TYPE_Q8_0, GGML_TYPE_F32),
          "the model key depends on the KV types");
    enum { NA = 3 * B + 9, NX = 11 };
    int a[NA], x[NX];
    for (int i = 0; i < NA; i++) a[i] = (i * 37 + 11) % V;
    for (int i = 0; i < NX; i++) x[i] = (i * 53 + 2) % V;
    test_save_restore(c, key, a, NA, x, NX);
    test_lru(c, key);
    test_rss(c, key);
    test_disk(c, key, a, NA);
    test_disk_cap(c, key);
    context_free(c);
    model_free(m);
    remove(path);
    return check_report("prompt_cache");
}
