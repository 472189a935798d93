/* dist_engine.c - see dist_engine.h: the commands rank 0 sends, the worker
 * loop that runs them, the start-up checks and the model shares. */
#include "dist_engine.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "quant.h"

#define DIST_MAX_CTX 16   /* Contexts a worker holds at once (bench makes one per thread set, in turn) */
#define DIST_PATH_MAX 4096

enum {
    CMD_EXIT = 1,
    CMD_LOAD,        /* a[0]: the split, a[1]: the timeout in ms, a[2]: --micro-batch; payload: the model path */
    CMD_CTX_NEW,     /* payload: ContextParams (without the Dist) */
    CMD_CTX_FREE,
    CMD_FORWARD,     /* payload: tokens, positions, sequences (ints), output flags (bytes) */
    CMD_SHIFT,
    CMD_KV_WRITE,    /* payload: the KV bytes */
    CMD_KV_READ,
    CMD_INFO,
};

typedef struct {
    int32_t cmd, id;
    int32_t a[5];        /* the command's integers */
    int32_t pad;
    uint64_t bytes;      /* payload that follows in a second broadcast */
} Cmd;

static bool drives(const Dist *d) { return dist_multi(d) && dist_rank(d) == 0; }

static int send_cmd(Dist *d, Cmd *c, void *payload, Error *err) {
    if (dist_bcast(d, c, sizeof *c, false, err)) return -1;
    if (c->bytes && dist_bcast(d, payload, c->bytes, false, err)) return -1;
    return 0;
}

/* ---- start-up checks ---------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

int dist_check_args(Dist *d, int argc, char **argv, Error *err) {
    if (!dist_multi(d)) return 0;
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 1; i < argc; i++) h = fnv(h, argv[i], strlen(argv[i]) + 1);
    const int n = dist_size(d);
    uint64_t *all = malloc((size_t)n * sizeof *all);
    if (!all) return err_set(err, "out of memory");
    if (dist_allgather(d, &h, all, sizeof h, err)) {
        free(all);
        return -1;
    }
    for (int r = 1; r < n; r++)
        if (all[r] != all[0]) {
            free(all);
            return err_set(err, "rank %d was started with other options than rank 0: every rank must run the same "
                                "grok command line", r);
        }
    free(all);
    return 0;
}

/* A hash of what the header and metadata say: every key and value, every
 * tensor's name, type, shape and offset. */
static uint64_t meta_hash(const GGUFFile *f) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const GGUFKV *kv = gguf_kv(f, i);
        h = fnv(h, kv->key, strlen(kv->key));
        h = fnv(h, &kv->type, sizeof kv->type);
        if (kv->type == GGUF_TYPE_STRING) h = fnv(h, kv->str.data, kv->str.len);
        else if (kv->type == GGUF_TYPE_ARRAY) {
            h = fnv(h, &kv->arr_n, sizeof kv->arr_n);
            if (kv->arr_str)
                for (uint64_t j = 0; j < kv->arr_n; j++) h = fnv(h, kv->arr_str[j].data, kv->arr_str[j].len);
            else if (kv->arr_data) h = fnv(h, kv->arr_data, kv->arr_n * gguf_type_size(kv->arr_type));
        } else h = fnv(h, &kv->num, sizeof kv->num);
    }
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const GGUFTensor *t = gguf_tensor(f, i);
        h = fnv(h, t->name, strlen(t->name));
        h = fnv(h, &t->type, sizeof t->type);
        h = fnv(h, t->ne, sizeof t->ne);
        h = fnv(h, &t->offset, sizeof t->offset);
    }
    return h;
}

/* ---- shares ------------------------------------------------------------- */

static void even_range(int n, int parts, int i, int *a, int *b) {
    *a = (int)((int64_t)n * i / parts);
    *b = (int)((int64_t)n * (i + 1) / parts);
}

int dist_gather_logits(Dist *d, const float *part, int n_rows, int n_vocab, float *logits, Error *err) {
    const int n = dist_size(d), r = dist_rank(d);
    int a, b;
    even_range(n_vocab, n, r, &a, &b);
    if (r > 0) return dist_send(d, 0, part, (size_t)n_rows * (size_t)(b - a) * sizeof(float), err);
    for (int t = 0; t < n_rows; t++)
        memcpy(logits + (size_t)t * n_vocab + a, part + (size_t)t * (b - a), (size_t)(b - a) * sizeof(float));
    float *tmp = NULL;
    for (int k = 1; k < n; k++) {
        even_range(n_vocab, n, k, &a, &b);
        const size_t w = (size_t)(b - a);
        float *p = realloc(tmp, (size_t)n_rows * (w ? w : 1) * sizeof(float));
        if (!p) {
            free(tmp);
            return err_set(err, "out of memory");
        }
        tmp = p;
        if (dist_recv(d, k, tmp, (size_t)n_rows * w * sizeof(float), err)) {
            free(tmp);
            return -1;
        }
        for (int t = 0; t < n_rows; t++) memcpy(logits + (size_t)t * n_vocab + a, tmp + (size_t)t * w, w * sizeof(float));
    }
    free(tmp);
    return 0;
}

static size_t tbytes(const Tensor *t) { return t->data ? (size_t)t->rows * t->row_bytes : 0; }

/* Column slice [c0, c0 + n) of a matrix: the rows keep their stride. */
static void col_view(Tensor *t, int c0, int n) {
    const TypeInfo *ti = type_info(t->type);
    t->data = (const uint8_t *)t->data + (size_t)(c0 / ti->block_size) * ti->type_size;
    t->cols = n;
}

static int block_of(const Tensor *t) { return t->data ? type_info(t->type)->block_size : 1; }

/* Cuts [0, F) into `size` slices of whole blocks of `unit` values, as even as
 * whole blocks allow; -1 if there are fewer blocks than ranks. */
static int ff_slice(int F, int unit, int size, int rank, int *f0, int *f1) {
    const int blocks = (F + unit - 1) / unit;
    if (blocks < size) return -1;
    int b0, b1;
    even_range(blocks, size, rank, &b0, &b1);
    *f0 = b0 * unit < F ? b0 * unit : F;
    *f1 = b1 * unit < F ? b1 * unit : F;
    return 0;
}

int dist_share_model(Model *m, DistSplit split, int n, int r, Error *err) {
    const ModelConfig *c = &m->cfg;
    ModelShare *s = &m->share;
    /* the f32 norms and router of a layer, and the final norm */
    const uint64_t small = ((uint64_t)4 * c->n_embd + (uint64_t)c->n_expert * c->n_embd) * sizeof(float);
    uint64_t bytes = (uint64_t)c->n_embd * sizeof(float);
    const size_t emb = tbytes(&m->tok_embd), out = m->tied_output ? 0 : tbytes(&m->output);
    if (n < 1 || r < 0 || r >= n) return err_set(err, "rank %d of %d", r, n);
    if (split == DIST_SPLIT_LAYERS) {
        if (c->n_layer < n)
            return err_set(err, "%d ranks but the model has %d layers: the layers split needs at most one rank per "
                                "layer", n, c->n_layer);
        even_range(c->n_layer, n, r, &s->layer0, &s->layer1);
        s->logits = r == 0;
        s->n_vocab = r == 0 ? c->n_vocab : 0;
        for (int il = s->layer0; il < s->layer1; il++) {
            const Layer *L = &m->layers[il];
            bytes += small + tbytes(&L->wq) + tbytes(&L->wk) + tbytes(&L->wv) + tbytes(&L->wqkv) + tbytes(&L->wo) +
                     tbytes(&L->gate_exps) + tbytes(&L->up_exps) + tbytes(&L->down_exps) + tbytes(&L->ffn_gate) +
                     tbytes(&L->ffn_up) + tbytes(&L->ffn_down);
        }
        if (r == 0) bytes += emb + out;
        s->weight_bytes = bytes;
        return 0;
    }
    /* experts: the unit is the largest block of any FFN weight (a down
     * column slice must start on a block; 256 for the K-quants) */
    int unit = 1, unit_d = 1;
    for (int il = 0; il < c->n_layer; il++) {
        const Layer *L = &m->layers[il];
        const int b[3] = {block_of(&L->gate_exps), block_of(&L->up_exps), block_of(&L->down_exps)};
        const int bd[3] = {block_of(&L->ffn_gate), block_of(&L->ffn_up), block_of(&L->ffn_down)};
        for (int k = 0; k < 3; k++) unit = b[k] > unit ? b[k] : unit, unit_d = bd[k] > unit_d ? bd[k] : unit_d;
    }
    int f0, f1, d0 = 0, d1 = 0;
    if (ff_slice(c->n_ff, unit, n, r, &f0, &f1))
        return err_set(err, "%d ranks but the experts' FFN width %d has only %d blocks of %d values to share out: "
                            "use at most %d ranks (or --split layers)", n, c->n_ff, (c->n_ff + unit - 1) / unit, unit,
                       (c->n_ff + unit - 1) / unit);
    if (c->n_ff_dense > 0 && ff_slice(c->n_ff_dense, unit_d, n, r, &d0, &d1))
        return err_set(err, "%d ranks but the dense MLP width %d has only %d blocks of %d values to share out: "
                            "use at most %d ranks", n, c->n_ff_dense, (c->n_ff_dense + unit_d - 1) / unit_d, unit_d,
                       (c->n_ff_dense + unit_d - 1) / unit_d);
    s->ff0 = f0, s->n_ff = f1 - f0, s->ff0_dense = d0, s->n_ff_dense = d1 - d0;
    s->partial = true;
    /* attention cut by heads: rank r computes a contiguous range of the
     * key/value heads and their query heads (whole GQA groups), Wo a view of
     * their columns; with fewer key/value heads than ranks, or a Wo whose
     * column slices would not start on its blocks, it stays replicated */
    const int group = c->n_head / c->n_head_kv, hd = c->head_dim;
    bool heads = c->n_head_kv >= n;
    for (int il = 0; heads && il < c->n_layer; il++)
        for (int k = 0; k < n; k++) {
            int h0, h1;
            even_range(c->n_head_kv, n, k, &h0, &h1);
            heads = heads && (int64_t)h0 * group * hd % block_of(&m->layers[il].wo) == 0;
        }
    if (heads) {
        int h1;
        even_range(c->n_head_kv, n, r, &s->head0_kv, &h1);
        s->n_head_kv = h1 - s->head0_kv;
        s->attn_partial = true;
    }
    const int nq = s->n_head_kv * group; /* query heads here */
    s->logits = r == 0;
    even_range(c->n_vocab, n, r, &s->vocab0, &s->n_vocab); /* the output's rows: [vocab0, end) */
    s->n_vocab -= s->vocab0;
    for (int il = 0; il < c->n_layer; il++) {
        Layer *L = &m->layers[il];
        /* the share's rows of wq, wk, wv (or wqkv) and its columns of wo */
        const uint64_t qr = (uint64_t)nq * hd, kr = (uint64_t)s->n_head_kv * hd;
        bytes += small + qr * (L->wq.row_bytes + L->wqkv.row_bytes) + kr * (L->wk.row_bytes + L->wv.row_bytes) +
                 2 * kr * L->wqkv.row_bytes;
        if (heads) col_view(&L->wo, s->head0_kv * group * hd, nq * hd);
        bytes += (uint64_t)c->n_embd * type_row_size(L->wo.type, (int64_t)nq * hd);
        col_view(&L->down_exps, f0, s->n_ff);
        bytes += (uint64_t)c->n_expert * (uint64_t)s->n_ff * (L->gate_exps.row_bytes + L->up_exps.row_bytes);
        bytes += (uint64_t)c->n_expert * (uint64_t)c->n_embd * type_row_size(L->down_exps.type, s->n_ff);
        if (c->n_ff_dense > 0) {
            col_view(&L->ffn_down, d0, s->n_ff_dense);
            bytes += (uint64_t)s->n_ff_dense * (L->ffn_gate.row_bytes + L->ffn_up.row_bytes);
            bytes += (uint64_t)c->n_embd * type_row_size(L->ffn_down.type, s->n_ff_dense);
        }
    }
    s->weight_bytes = bytes + emb + out * (uint64_t)s->n_vocab / (uint64_t)c->n_vocab;
    return 0;
}

/* What each rank reports after loading. */
typedef struct {
    int32_t ok;
    uint64_t size, hash;
    char host[48];
    char msg[GROK_ERR_LEN];
} LoadReport;

/* Every rank: load, report, compare with rank 0, cut the share. */
static Model *load_all(Dist *d, const char *path, Error *err) {
    const int n = dist_size(d), r = dist_rank(d);
    LoadReport me, *all = calloc((size_t)n, sizeof *all);
    if (!all) {
        err_set(err, "out of memory");
        return NULL;
    }
    memset(&me, 0, sizeof me);
    snprintf(me.host, sizeof me.host, "%s", dist_host(d));
    Error lerr = {{0}};
    Model *m = model_load(path, &lerr);
    if (m) {
        me.ok = 1;
        me.size = gguf_total_size(m->file);
        me.hash = meta_hash(m->file);
    } else snprintf(me.msg, sizeof me.msg, "%s", lerr.msg);
    if (dist_allgather(d, &me, all, sizeof me, err)) goto fail;
    for (int k = 0; k < n; k++) {
        if (!all[k].ok) {
            err_set(err, "rank %d (%s) cannot load the model: %s", k, all[k].host, all[k].msg);
            goto fail;
        }
        if (all[k].size != all[0].size || all[k].hash != all[0].hash) {
            err_set(err, "rank %d (%s) sees another model file at %s than rank 0 (%s): %llu bytes vs %llu, metadata "
                         "hash %016llx vs %016llx; every host needs the same file at the same path",
                    k, all[k].host, path, all[0].host, (unsigned long long)all[k].size,
                    (unsigned long long)all[0].size, (unsigned long long)all[k].hash,
                    (unsigned long long)all[0].hash);
            goto fail;
        }
    }
    /* the share: an error here is the same on every rank (the same file,
     * the same rank count), except for its wording of rank numbers */
    if (dist_share_model(m, dist_split(d), n, r, err)) goto fail;
    free(all);
    return m;
fail:
    free(all);
    model_free(m);
    return NULL;
}

Model *dist_model_load(Dist *d, const char *path, Error *err) {
    if (!dist_multi(d)) return model_load(path, err);
    const size_t len = strlen(path) + 1;
    if (len > DIST_PATH_MAX) {
        err_set(err, "model path too long for a distributed run");
        return NULL;
    }
    /* the workers take the split and the deadline from rank 0's command line */
    Cmd c = {CMD_LOAD, 0, {(int32_t)dist_split(d), (int32_t)(dist_timeout(d) * 1000), dist_micro_batch(d), 0, 0}, 0,
             len};
    char buf[DIST_PATH_MAX];
    memcpy(buf, path, len);
    if (send_cmd(d, &c, buf, err)) return NULL;
    return load_all(d, path, err);
}

/* ---- rank 0's commands --------------------------------------------------- */

int dist_cmd_context_new(Dist *d, const ContextParams *p, int *id, Error *err) {
    *id = -1;
    if (!drives(d)) return 0;
    if ((*id = dist_take_id(d, DIST_MAX_CTX)) < 0)
        return err_set(err, "more than %d contexts at once over several processes", DIST_MAX_CTX);
    ContextParams q = *p;
    q.dist = NULL;
    Cmd c = {CMD_CTX_NEW, *id, {0}, 0, sizeof q};
    if (send_cmd(d, &c, &q, err)) return -1;
    /* did every worker make its Context? */
    const int n = dist_size(d);
    LoadReport me, *all = calloc((size_t)n, sizeof *all);
    if (!all) return err_set(err, "out of memory");
    memset(&me, 0, sizeof me);
    me.ok = 1;
    int rc = dist_allgather(d, &me, all, sizeof me, err);
    for (int k = 1; k < n && rc == 0; k++)
        if (!all[k].ok) rc = err_set(err, "rank %d (%s): %s", k, all[k].host, all[k].msg);
    free(all);
    return rc;
}

void dist_cmd_context_free(Dist *d, int id) {
    if (!drives(d) || id < 0) return;
    dist_put_id(d, id);
    if (dist_failed(d)) return;
    Cmd c = {CMD_CTX_FREE, id, {0}, 0, 0};
    Error err;
    send_cmd(d, &c, NULL, &err);
}

int dist_cmd_forward(Dist *d, int id, const Batch *b, Error *err) {
    if (!drives(d)) return 0;
    const size_t nt = (size_t)b->n_tokens, bytes = nt * (3 * sizeof(int) + 1);
    uint8_t *buf = malloc(bytes ? bytes : 1);
    if (!buf) return err_set(err, "out of memory");
    int *tok = (int *)buf, *pos = tok + nt, *seq = pos + nt;
    uint8_t *out = (uint8_t *)(seq + nt);
    memcpy(tok, b->token, nt * sizeof(int));
    memcpy(pos, b->pos, nt * sizeof(int));
    for (size_t i = 0; i < nt; i++) {
        seq[i] = b->seq ? b->seq[i] : 0;
        out[i] = b->output ? b->output[i] : 1;
    }
    Cmd c = {CMD_FORWARD, id, {b->n_tokens, b->seq != NULL, b->output != NULL, 0, 0}, 0, bytes};
    int rc = send_cmd(d, &c, buf, err);
    free(buf);
    return rc;
}

int dist_cmd_shift(Dist *d, int id, int seq, int p0, int p1, int delta, Error *err) {
    if (!drives(d)) return 0;
    Cmd c = {CMD_SHIFT, id, {seq, p0, p1, delta, 0}, 0, 0};
    return send_cmd(d, &c, NULL, err);
}

int dist_cmd_kv_write(Dist *d, int id, int seq, int p0, int p1, const void *buf, size_t bytes, Error *err) {
    if (!drives(d)) return 0;
    Cmd c = {CMD_KV_WRITE, id, {seq, p0, p1, 0, 0}, 0, bytes};
    return send_cmd(d, &c, (void *)buf, err);
}

/* Heads [h0, h1) of every layer in a buffer of whole positions (each layer
 * layer_bytes, each head an equal part of it) to or from `packed`, where
 * they follow each other layer by layer. */
static void heads_pack(const Model *m, uint8_t *whole, uint8_t *packed, size_t layer_bytes, int h0, int h1,
                       bool pack) {
    const size_t hb = layer_bytes / (size_t)m->cfg.n_head_kv, run = (size_t)(h1 - h0) * hb;
    for (int il = 0; il < m->cfg.n_layer; il++) {
        uint8_t *w = whole + (size_t)il * layer_bytes + (size_t)h0 * hb, *p = packed + (size_t)il * run;
        if (pack) memcpy(p, w, run);
        else memcpy(w, p, run);
    }
}

int dist_cmd_kv_read(Dist *d, const Model *m, int id, int seq, int p0, int p1, void *buf, size_t layer_bytes,
                     Error *err) {
    if (!drives(d)) return 0;
    const bool layers = dist_split(d) == DIST_SPLIT_LAYERS, heads = !layers && m->share.attn_partial;
    if (!layers && !heads) return 0; /* rank 0 holds every layer's and head's cache */
    Cmd c = {CMD_KV_READ, id, {seq, p0, p1, 0, 0}, 0, 0};
    if (send_cmd(d, &c, NULL, err)) return -1;
    const int n = dist_size(d);
    const size_t whole = (size_t)m->cfg.n_layer * layer_bytes;
    uint8_t *tmp = NULL;
    if (heads && !(tmp = malloc(whole ? whole : 1))) return err_set(err, "out of memory");
    int rc = 0;
    for (int r = 1; r < n && rc == 0; r++) {
        int a, b;
        if (layers) { /* rank r's layers, in place */
            even_range(m->cfg.n_layer, n, r, &a, &b);
            rc = dist_recv(d, r, (uint8_t *)buf + (size_t)a * layer_bytes, (size_t)(b - a) * layer_bytes, err);
        } else { /* rank r's heads of every layer (dist_share_model's cut), packed */
            even_range(m->cfg.n_head_kv, n, r, &a, &b);
            const size_t bytes = (size_t)m->cfg.n_layer * (size_t)(b - a) * (layer_bytes / (size_t)m->cfg.n_head_kv);
            rc = dist_recv(d, r, tmp, bytes, err);
            if (rc == 0) heads_pack(m, buf, tmp, layer_bytes, a, b, false);
        }
    }
    free(tmp);
    return rc;
}

static double status_mib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    const size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0) v = strtol(line + kl, NULL, 10);
    fclose(f);
    return v < 0 ? -1 : v / 1024.0;
}

static void my_info(Dist *d, const Model *m, DistRankInfo *me) {
    memset(me, 0, sizeof *me);
    snprintf(me->host, sizeof me->host, "%s", dist_host(d));
    if (m) {
        me->layer0 = m->share.layer0, me->layer1 = m->share.layer1;
        me->ff0 = m->share.ff0, me->n_ff = m->share.n_ff, me->n_ff_dense = m->share.n_ff_dense;
        me->head0_kv = m->share.head0_kv, me->n_head_kv = m->share.n_head_kv;
        me->weight_mib = (double)m->share.weight_bytes / 1048576.0;
    }
    me->rss_mib = status_mib("VmRSS:");
    me->hwm_mib = status_mib("VmHWM:");
    me->sent_mib = (double)dist_bytes(d) / 1048576.0;
}

int dist_rank_info(Dist *d, const Model *m, DistRankInfo *out, Error *err) {
    if (drives(d)) {
        Cmd c = {CMD_INFO, 0, {0}, 0, 0};
        if (send_cmd(d, &c, NULL, err)) return -1;
    }
    DistRankInfo me;
    my_info(d, m, &me);
    return dist_allgather(d, &me, out, sizeof me, err);
}

void dist_print_shares(Dist *d, const Model *m, const char *cmd, FILE *f) {
    if (!drives(d)) return;
    const int n = dist_size(d);
    DistRankInfo *all = calloc((size_t)n, sizeof *all);
    Error err = {{0}};
    if (!all || dist_rank_info(d, m, all, &err)) {
        free(all);
        return;
    }
    fprintf(f, "grok %s: %d ranks, %s split\n", cmd, n, dist_split(d) == DIST_SPLIT_LAYERS ? "layers" : "experts");
    for (int r = 0; r < n; r++) {
        const DistRankInfo *i = &all[r];
        if (dist_split(d) == DIST_SPLIT_LAYERS)
            fprintf(f, "  rank %d (%s): layers %d..%d of %d, weights %.1f MiB, RSS %.1f MiB\n", r, i->host, i->layer0,
                    i->layer1 - 1, m->cfg.n_layer, i->weight_mib, i->rss_mib);
        else
            fprintf(f, "  rank %d (%s): expert FFN columns %d..%d of %d%s, %s %d..%d of %d, weights %.1f MiB, RSS %.1f MiB\n",
                    r, i->host, i->ff0, i->ff0 + i->n_ff - 1, m->cfg.n_ff, m->cfg.n_ff_dense ? " (and of the dense MLP)" : "",
                    m->share.attn_partial ? "key/value heads" : "attention replicated, key/value heads", i->head0_kv,
                    i->head0_kv + i->n_head_kv - 1, m->cfg.n_head_kv, i->weight_mib, i->rss_mib);
    }
    free(all);
}

int dist_end(Dist *d, int rc) {
    if (drives(d) && !dist_failed(d)) {
        Cmd c = {CMD_EXIT, 0, {rc, 0, 0, 0, 0}, 0, 0};
        Error err;
        send_cmd(d, &c, NULL, &err);
    }
    return dist_finish(d, rc);
}

/* ---- the worker ---------------------------------------------------------- */

typedef struct {
    Dist *d;
    Model *m;
    Context *ctx[DIST_MAX_CTX];
    uint8_t *buf;
    size_t cap;
} Worker;

static void *room(Worker *w, size_t n, Error *err) {
    if (n > w->cap) {
        void *p = realloc(w->buf, n);
        if (!p) {
            err_set(err, "out of memory");
            return NULL;
        }
        w->buf = p, w->cap = n;
    }
    return w->buf;
}

static Context *ctx_of(Worker *w, int id, Error *err) {
    if (id < 0 || id >= DIST_MAX_CTX || !w->ctx[id]) {
        err_set(err, "rank 0 used a context this rank does not have (%d)", id);
        return NULL;
    }
    return w->ctx[id];
}

/* One command; 1 = exit, 0 = go on, -1 = error. */
static int run_cmd(Worker *w, const Cmd *c, Error *err) {
    Dist *d = w->d;
    uint8_t *p = NULL;
    if (c->bytes) {
        if (!(p = room(w, c->bytes, err))) return -1;
        if (dist_bcast(d, p, c->bytes, false, err)) return -1;
    }
    switch (c->cmd) {
    case CMD_EXIT: return 1;
    case CMD_LOAD: {
        for (int i = 0; i < DIST_MAX_CTX; i++) context_free(w->ctx[i]), w->ctx[i] = NULL;
        model_free(w->m);
        p[c->bytes - 1] = 0;
        dist_set_split(d, c->a[0] == DIST_SPLIT_LAYERS ? DIST_SPLIT_LAYERS : DIST_SPLIT_EXPERTS);
        if (c->a[1] > 0) dist_set_timeout(d, c->a[1] / 1000.0);
        dist_set_micro_batch(d, c->a[2]); /* the pieces of a batch must be the same on every rank */
        w->m = load_all(d, (const char *)p, err);
        return w->m ? 0 : -1;
    }
    case CMD_CTX_NEW: {
        ContextParams q;
        memcpy(&q, p, sizeof q);
        q.dist = d;
        LoadReport me, *all = calloc((size_t)dist_size(d), sizeof *all);
        if (!all) return err_set(err, "out of memory");
        memset(&me, 0, sizeof me);
        snprintf(me.host, sizeof me.host, "%s", dist_host(d));
        Error cerr = {{0}};
        context_free(w->ctx[c->id]);
        w->ctx[c->id] = w->m && c->id >= 0 && c->id < DIST_MAX_CTX ? context_new(w->m, &q, &cerr) : NULL;
        me.ok = w->ctx[c->id] != NULL;
        if (!w->m) snprintf(me.msg, sizeof me.msg, "no model loaded");
        else snprintf(me.msg, sizeof me.msg, "%s", cerr.msg);
        int rc = dist_allgather(d, &me, all, sizeof me, err);
        free(all);
        return rc;
    }
    case CMD_CTX_FREE:
        if (c->id >= 0 && c->id < DIST_MAX_CTX) context_free(w->ctx[c->id]), w->ctx[c->id] = NULL;
        return 0;
    case CMD_FORWARD: {
        Context *x = ctx_of(w, c->id, err);
        if (!x) return -1;
        const size_t nt = (size_t)c->a[0];
        int *tok = (int *)p, *pos = tok + nt, *seq = pos + nt;
        bool *out = (bool *)(seq + nt);
        for (size_t i = 0; i < nt; i++) out[i] = ((uint8_t *)out)[i] != 0;
        Batch b = {c->a[0], tok, pos, c->a[1] ? seq : NULL, c->a[2] ? out : NULL};
        return forward(x, &b, NULL, err);
    }
    case CMD_SHIFT: {
        Context *x = ctx_of(w, c->id, err);
        return x ? context_shift(x, c->a[0], c->a[1], c->a[2], c->a[3], err) : -1;
    }
    case CMD_KV_WRITE: {
        Context *x = ctx_of(w, c->id, err);
        return x ? context_kv_write(x, c->a[0], c->a[1], c->a[2], p, err) : -1;
    }
    case CMD_KV_READ: {
        Context *x = ctx_of(w, c->id, err);
        if (!x) return -1;
        const bool layers = dist_split(d) == DIST_SPLIT_LAYERS;
        if (!layers && !w->m->share.attn_partial) return 0;
        const size_t per = (size_t)(c->a[2] - c->a[1]) * context_kv_pos_bytes(x) / (size_t)w->m->cfg.n_layer;
        const size_t total = per * (size_t)w->m->cfg.n_layer;
        uint8_t *buf = malloc(total ? total : 1), *mine = layers ? buf : malloc(total ? total : 1);
        int rc = buf && mine ? context_kv_read(x, c->a[0], c->a[1], c->a[2], buf, err) : err_set(err, "out of memory");
        const ModelShare *s = &w->m->share;
        if (!rc && layers) rc = dist_send(d, 0, buf + (size_t)s->layer0 * per, (size_t)(s->layer1 - s->layer0) * per, err);
        if (!rc && !layers) { /* this rank's heads of every layer, packed */
            heads_pack(w->m, buf, mine, per, s->head0_kv, s->head0_kv + s->n_head_kv, true);
            rc = dist_send(d, 0, mine, (size_t)w->m->cfg.n_layer * (size_t)s->n_head_kv * (per / (size_t)w->m->cfg.n_head_kv), err);
        }
        if (mine != buf) free(mine);
        free(buf);
        return rc;
    }
    case CMD_INFO: {
        DistRankInfo me, *all = calloc((size_t)dist_size(d), sizeof *all);
        if (!all) return err_set(err, "out of memory");
        my_info(d, w->m, &me);
        int rc = dist_allgather(d, &me, all, sizeof me, err);
        free(all);
        return rc;
    }
    default: return err_set(err, "unknown command %d from rank 0", c->cmd);
    }
}

int dist_worker_main(Dist *d) {
    Worker w = {d, NULL, {NULL}, NULL, 0};
    Error err = {{0}};
    int rc = 0;
    for (;;) {
        Cmd c;
        /* the next command may come after any idle time (a server) */
        if (dist_bcast(d, &c, sizeof c, true, &err)) {
            rc = 1;
            break;
        }
        const int r = run_cmd(&w, &c, &err);
        if (r == 1) { /* rank 0 ends the run (and has reported any error) */
            rc = c.a[0];
            err.msg[0] = 0;
            break;
        }
        if (r < 0) {
            /* a load error is reported by rank 0 (every rank saw it): stay
             * for its exit; anything else cannot go on */
            if (c.cmd == CMD_LOAD || c.cmd == CMD_CTX_NEW) continue;
            rc = 1;
            break;
        }
    }
    if (rc && err.msg[0]) {
        fprintf(stderr, "grok: rank %d (%s): %s\n", dist_rank(d), dist_host(d), err.msg);
        dist_fail(d, err.msg); /* the job cannot go on: dist_finish aborts it */
    }
    for (int i = 0; i < DIST_MAX_CTX; i++) context_free(w.ctx[i]);
    model_free(w.m);
    free(w.buf);
    return rc;
}
