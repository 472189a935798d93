/* slots.c - slot save, restore and erase for `grok serve` (llama.cpp's
 * server API): GET /slots lists the slots; POST /slots/{id}?action=save
 * {"filename": NAME} writes the slot's cached tokens and their keys and
 * values to --slot-save-path/NAME, action=restore reads such a file back
 * into a slot (any slot, this run or a later one, as long as the model and
 * KV types are the same), action=erase empties the slot. The slot file
 * format and its parser are here too (slots.h).
 *
 * A connection thread validates the request and queues a SlotOp; the
 * engine thread, which alone touches the Context and the slots, runs it
 * between two forward passes (slots_run) and wakes the connection. A slot
 * that is running a request is not touched (409). */
#include "server_internal.h"
#include "slots.h"

#define SLOT_SEED 0x736c6f74736176ull /* "slotsav": where the checksum chain starts */

/* ---- the file format ----------------------------------------------------- */

int slot_filename_ok(const char *name) {
    const size_t n = strlen(name);
    if (n == 0 || n > 255 || name[0] == '.' || strstr(name, "..")) return 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char ch = (unsigned char)name[i];
        if (ch == '/' || ch == '\\' || ch < 0x20 || ch == 0x7f) return 0;
    }
    return 1;
}

int slot_file_read(const SlotFileSpec *sp, SlotReadFn rd, void *rctx, SlotSinkFn sink, void *sctx, int *tokens,
                   void *chunk_buf, SlotFileHeader *hp, const char **why) {
    SlotFileHeader h;
    if (rd(rctx, &h, sizeof h) != sizeof h) {
        *why = "truncated (no complete header)";
        return -1;
    }
    if (memcmp(h.magic, SLOT_MAGIC, sizeof h.magic)) *why = "not a grok.c slot file";
    else if (h.version != SLOT_VERSION) *why = "written by another version of grok.c's slot format";
    else if (h.model_key != sp->model_key || h.pos_bytes != sp->pos_bytes)
        *why = "saved with another model or another KV cache type";
    else if (h.n_tokens > (uint64_t)sp->n_ctx) *why = "holds more tokens than a slot's context (--ctx)";
    else if (h.n_exact > h.n_tokens) *why = "inconsistent (its header counts more exact tokens than tokens)";
    else *why = NULL;
    if (*why) return -1;
    const int n = (int)h.n_tokens;
    if (n && rd(rctx, tokens, (size_t)n * sizeof(int)) != (size_t)n * sizeof(int)) {
        *why = "truncated (in its tokens)";
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= sp->n_vocab) {
            *why = "holds a token id outside the model's vocabulary";
            return -1;
        }
    uint64_t sum = pcache_hash(SLOT_SEED, tokens, (size_t)n * sizeof(int));
    for (int p0 = 0; p0 < n; p0 += SLOT_CHUNK) {
        const int p1 = n - p0 < SLOT_CHUNK ? n : p0 + SLOT_CHUNK;
        const size_t len = (size_t)(p1 - p0) * sp->pos_bytes;
        if (rd(rctx, chunk_buf, len) != len) {
            *why = "truncated (in its keys and values)";
            return -1;
        }
        sum = pcache_hash(sum, chunk_buf, len);
        if (sink && sink(sctx, p0, p1, chunk_buf)) {
            *why = "its keys and values could not be stored";
            return -1;
        }
    }
    *hp = h;
    uint8_t extra;
    if (rd(rctx, &extra, 1) == 1) *why = "longer than its header says";
    else if (sum != h.checksum) *why = "corrupt (checksum mismatch)";
    return *why ? -1 : n;
}

/* ---- operations, run by the engine thread --------------------------------- */

enum { OP_LIST, OP_SAVE, OP_RESTORE, OP_ERASE };

struct SlotOp {
    int action, slot;
    char filename[256];
    /* the result, set by the engine */
    bool done;
    ApiErr err;          /* status 0: success */
    cJSON *list;         /* OP_LIST */
    int n_tokens;        /* saved, restored or erased */
    uint64_t n_bytes;    /* written or read */
    double ms;
    pthread_cond_t cond; /* signalled when done */
    struct SlotOp *next;
};

static void join_path(const Server *s, const char *name, char *out, size_t n) {
    snprintf(out, n, "%s/%s", s->slot_save_path, name);
}

static size_t file_rd(void *f, void *dst, size_t n) { return fread(dst, 1, n, f); }

typedef struct {
    Context *ctx;
    int seq;
    bool touched; /* some positions were overwritten */
} Sink;

static int kv_sink(void *p, int p0, int p1, const void *kv) {
    Sink *k = p;
    Error err;
    k->touched = true;
    return context_kv_write(k->ctx, k->seq, p0, p1, kv, &err);
}

static void op_save(Server *s, SlotOp *op) {
    const Slot *sl = &s->slots[op->slot];
    const size_t pb = context_kv_pos_bytes(s->ctx);
    const int n = sl->n_past;
    char path[4096], tmp[4400];
    join_path(s, op->filename, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", s->slot_save_path, op->filename, (long)getpid());
    uint8_t *buf = malloc((size_t)SLOT_CHUNK * pb);
    if (!buf) {
        api_err(&op->err, 500, NULL, NULL, "out of memory");
        return;
    }
    SlotFileHeader h = {SLOT_MAGIC, SLOT_VERSION, (uint32_t)(sl->n_exact < n ? sl->n_exact : n), s->model_key,
                        pb, (uint64_t)n, 0};
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(&h, sizeof h, 1, f) == 1 && (!n || fwrite(sl->cache, sizeof(int), (size_t)n, f) == (size_t)n);
    uint64_t sum = pcache_hash(SLOT_SEED, sl->cache, (size_t)n * sizeof(int));
    for (int p0 = 0; ok && p0 < n; p0 += SLOT_CHUNK) {
        const int p1 = n - p0 < SLOT_CHUNK ? n : p0 + SLOT_CHUNK;
        const size_t len = (size_t)(p1 - p0) * pb;
        Error kerr;
        ok = !context_kv_read(s->ctx, op->slot, p0, p1, buf, &kerr) && fwrite(buf, 1, len, f) == len;
        sum = pcache_hash(sum, buf, len);
    }
    h.checksum = sum;
    ok = ok && !fseek(f, 0, SEEK_SET) && fwrite(&h, sizeof h, 1, f) == 1 && !fflush(f) && !fsync(fileno(f));
    int e = ok ? 0 : errno;
    if (f && fclose(f) && ok) ok = false, e = errno;
    if (ok && rename(tmp, path)) ok = false, e = errno;
    free(buf);
    if (!ok) {
        remove(tmp);
        api_err(&op->err, e == ENOSPC || e == EDQUOT ? 507 : 500, "slot_save_failed", "filename",
                "Cannot save slot %d to '%.200s': %s (nothing was written)", op->slot, op->filename,
                e ? strerror(e) : "write error");
        return;
    }
    op->n_tokens = n;
    op->n_bytes = sizeof h + (uint64_t)n * sizeof(int) + (uint64_t)n * pb;
}

static void op_restore(Server *s, SlotOp *op) {
    Slot *sl = &s->slots[op->slot];
    const size_t pb = context_kv_pos_bytes(s->ctx);
    char path[4096];
    join_path(s, op->filename, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f) {
        const int e = errno;
        api_err(&op->err, e == ENOENT ? 404 : 400, e == ENOENT ? "file_not_found" : "invalid_slot_file", "filename",
                "Cannot read slot file '%.200s': %s", op->filename, strerror(e));
        return;
    }
    int *toks = malloc((size_t)s->n_ctx * sizeof(int));
    uint8_t *buf = malloc((size_t)SLOT_CHUNK * pb);
    if (!toks || !buf) {
        fclose(f);
        free(toks), free(buf);
        api_err(&op->err, 500, NULL, NULL, "out of memory");
        return;
    }
    SlotFileSpec sp = {s->model_key, pb, s->n_ctx, s->n_vocab};
    Sink k = {s->ctx, op->slot, false};
    const char *why = NULL;
    SlotFileHeader h;
    const int n = slot_file_read(&sp, file_rd, f, kv_sink, &k, toks, buf, &h, &why);
    const long at = ftell(f);
    fclose(f);
    if (n < 0) {
        if (k.touched) sl->n_past = sl->n_exact = 0; /* its cache was partly overwritten */
        api_err(&op->err, 400, "invalid_slot_file", "filename",
                "Cannot restore slot %d from '%.200s': the file is %s%s", op->slot, op->filename, why,
                k.touched ? "; the slot is now empty" : "; the slot is unchanged");
    } else {
        memcpy(sl->cache, toks, (size_t)n * sizeof(int));
        sl->n_past = n;
        sl->n_exact = (int)h.n_exact;
        op->n_tokens = n;
        op->n_bytes = at > 0 ? (uint64_t)at : 0;
    }
    free(toks), free(buf);
}

static cJSON *slot_json(const Server *s, int i) {
    const Slot *sl = &s->slots[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", i);
    cJSON_AddNumberToObject(o, "n_ctx", s->n_ctx);
    cJSON_AddBoolToObject(o, "is_processing", sl->job != NULL);
    cJSON_AddNumberToObject(o, "n_cached", sl->n_past);
    if (sl->job) cJSON_AddStringToObject(o, "id_task", sl->job->id);
    return o;
}

/* Runs the queued operations (under mu, which is released around the file
 * work: only this thread touches the slots and the Context). */
void slots_run(Server *s) {
    while (s->ops_head) {
        SlotOp *op = s->ops_head;
        s->ops_head = op->next;
        if (!s->ops_head) s->ops_tail = NULL;
        if (s->stopping) {
            api_err(&op->err, 503, NULL, NULL, SHUTDOWN_MSG);
        } else if (op->action == OP_LIST) {
            op->list = cJSON_CreateArray();
            for (int i = 0; op->list && i < s->n_slots; i++) cJSON_AddItemToArray(op->list, slot_json(s, i));
            if (!op->list) api_err(&op->err, 500, NULL, NULL, "out of memory");
        } else if (s->slots[op->slot].job) {
            api_err(&op->err, 409, "slot_busy", NULL, "Slot %d is processing a request; try again when it is idle",
                    op->slot);
        } else if (op->action == OP_ERASE) {
            op->n_tokens = s->slots[op->slot].n_past;
            s->slots[op->slot].n_past = s->slots[op->slot].n_exact = 0;
        } else {
            pthread_mutex_unlock(&s->mu);
            const double t0 = time_now();
            if (op->action == OP_SAVE) op_save(s, op);
            else op_restore(s, op);
            op->ms = (time_now() - t0) * 1e3;
            pthread_mutex_lock(&s->mu);
        }
        op->done = true;
        pthread_cond_signal(&op->cond);
    }
}

/* ---- HTTP ---------------------------------------------------------------- */

/* Queues op for the engine and waits for it. */
static void op_submit(Server *s, SlotOp *op) {
    pthread_cond_init(&op->cond, NULL);
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        api_err(&op->err, 503, NULL, NULL, SHUTDOWN_MSG);
    } else {
        if (s->ops_tail) s->ops_tail->next = op;
        else s->ops_head = op;
        s->ops_tail = op;
        pthread_cond_signal(&s->work);
        while (!op->done) pthread_cond_wait(&op->cond, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&op->cond);
}

enum MHD_Result handle_slots(Server *s, struct MHD_Connection *c, const char *id, const cJSON *root) {
    SlotOp op = {0};
    ApiErr *e = &op.err;
    if (!id) { /* GET /slots */
        op.action = OP_LIST;
        op_submit(s, &op);
        return e->status ? send_error(s, c, e) : send_json(s, c, 200, op.list);
    }
    char *end;
    errno = 0;
    const long k = strtol(id, &end, 10);
    if (errno || *end || end == id || id[0] < '0' || id[0] > '9' || k >= s->n_slots) {
        api_err(e, 404, "slot_not_found", NULL, "There is no slot '%.40s'; this server has slots 0..%d (--parallel)",
                id, s->n_slots - 1);
        return send_error(s, c, e);
    }
    op.slot = (int)k;
    const char *action = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "action");
    if (!action || !action[0]) {
        api_err(e, 400, "missing_required_parameter", "action", "Missing ?action= (save, restore or erase)");
        return send_error(s, c, e);
    }
    if (!strcmp(action, "save")) op.action = OP_SAVE;
    else if (!strcmp(action, "restore")) op.action = OP_RESTORE;
    else if (!strcmp(action, "erase")) op.action = OP_ERASE;
    else {
        api_err(e, 400, "invalid_value", "action", "Invalid action '%.40s' (supported: save, restore, erase)", action);
        return send_error(s, c, e);
    }
    static const char *const fields[] = {"filename", NULL};
    if (check_fields(root, fields, e)) return send_error(s, c, e);
    if (op.action != OP_ERASE) {
        if (!s->slot_save_path) {
            api_err(e, 501, "not_supported", NULL,
                    "Saving and restoring slots is off: start grok serve with --slot-save-path DIR");
            return send_error(s, c, e);
        }
        cJSON *fn = field(root, "filename");
        if (!fn || !cJSON_IsString(fn)) {
            api_err(e, 400, fn ? "invalid_type" : "missing_required_parameter", "filename",
                    fn ? "Invalid type for 'filename': expected a string" : "Missing required parameter: 'filename'");
            return send_error(s, c, e);
        }
        if (!slot_filename_ok(fn->valuestring)) {
            api_err(e, 400, "invalid_value", "filename",
                    "Invalid 'filename': a plain file name of 1 to 255 bytes, without '/', '\\', '..', control "
                    "characters or a leading '.'");
            return send_error(s, c, e);
        }
        snprintf(op.filename, sizeof op.filename, "%s", fn->valuestring);
    }
    op_submit(s, &op);
    if (e->status) return send_error(s, c, e);
    if (s->verbose)
        fprintf(stderr, "grok serve: slot %d %s %s: %d tokens, %llu bytes, %.1f ms\n", op.slot, action, op.filename,
                op.n_tokens, (unsigned long long)op.n_bytes, op.ms);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id_slot", op.slot);
    if (op.action == OP_ERASE) {
        cJSON_AddNumberToObject(o, "n_erased", op.n_tokens);
        return send_json(s, c, 200, o);
    }
    cJSON_AddStringToObject(o, "filename", op.filename);
    cJSON_AddNumberToObject(o, op.action == OP_SAVE ? "n_saved" : "n_restored", op.n_tokens);
    cJSON_AddNumberToObject(o, op.action == OP_SAVE ? "n_written" : "n_read", (double)op.n_bytes);
    cJSON *t = cJSON_AddObjectToObject(o, "timings");
    if (t) cJSON_AddNumberToObject(t, op.action == OP_SAVE ? "save_ms" : "restore_ms", op.ms);
    return send_json(s, c, 200, o);
}
