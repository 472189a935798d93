/* server.c - `grok serve`: an OpenAI/xAI-compatible HTTP API. This file is
 * the HTTP side (listening, handlers and routes, setup, the in-process
 * server for tests); engine.c is the batching engine, openai.c the OpenAI
 * request/response surface, responses.c the Responses API, structured.c
 * grammars and tools, xai.c xAI's own endpoints, prompt_cache.c the cache
 * across requests; server_internal.h is what they share.
 *
 * Threads:
 *   - libmicrohttpd runs one thread per connection. A connection thread
 *     parses and validates a request, tokenizes the prompt, builds the
 *     request's Sampler and StopMatcher, and queues a Job. It then waits on
 *     the job's condition variable: a non-streaming request until the job is
 *     done, a streaming one inside the response's content callback, which
 *     turns new text into SSE chunks. While waiting it polls the socket, so a
 *     client that goes away cancels its job at once.
 *   - One engine thread owns the Context (n_seq = --parallel slots). Each
 *     step it admits queued jobs into free slots (picking the slot whose
 *     cached tokens share the longest prefix with the prompt), builds one
 *     Batch with the next token of every decoding slot plus a chunk of at
 *     most --prefill-chunk prompt tokens of slots still prefilling, runs
 *     forward(), samples one token per slot that wants one, and appends the
 *     text to the jobs. A slot's KV cache is reused from position 0 (or from
 *     the end of the shared prefix) by the next job: it is simply
 *     overwritten. Under mpirun with the layers split over N ranks the slots
 *     go in up to N groups whose batches are in flight at once
 *     (forward_submit / forward_collect: engine.c's pipe_step).
 * One mutex (Server.mu) guards the queue, the jobs' shared fields and the
 * metrics; the engine holds it only to admit, append and finish, never
 * during forward(). */
#include "dist_engine.h"
#include "server_internal.h"

/* ---- small helpers ----------------------------------------------------- */


int str_put(Str *b, const char *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *t = realloc(b->s, cap);
        if (!t) return -1;
        b->s = t, b->cap = cap;
    }
    if (n) memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = 0;
    return 0;
}

int str_puts(Str *b, const char *p) { return str_put(b, p, strlen(p)); }

void str_free(Str *b) {
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}


void abs_deadline(struct timespec *ts, int ms) {
    clock_gettime(COND_CLOCK, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) ts->tv_sec++, ts->tv_nsec -= 1000000000L;
}

/* ---- HTTP handlers ----------------------------------------------------- */

enum {
    EP_NONE,
    EP_CHAT,
    EP_COMPLETIONS,
    EP_MODELS,
    EP_MODEL,
    EP_HEALTH,
    EP_METRICS,
    EP_TOKENIZE,
    EP_DETOKENIZE,
    EP_INDEX,
    EP_FAVICON,
    EP_RESPONSES,       /* POST /v1/responses */
    EP_RESPONSE,        /* GET, DELETE /v1/responses/{id} */
    EP_TOKENIZE_TEXT,   /* xAI: POST /v1/tokenize-text */
    EP_LANGUAGE_MODELS, /* xAI: GET /v1/language-models[/{id}] */
    EP_LANGUAGE_MODEL,
    EP_SLOTS,           /* GET /slots */
    EP_SLOT,            /* POST /slots/{id}?action=save|restore|erase */
};

typedef struct {
    Server *s;
    int ep;
    bool post;
    Str body;
    size_t received;
    bool too_big, responded;
    bool http11;             /* HTTP/1.1 or later: may be sent an interim 100 Continue */
    Job *job;
} Req;

static int route(const char *url, const char **model_id) {
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) return EP_INDEX;
    if (!strcmp(url, "/favicon.ico")) return EP_FAVICON;
    if (!strcmp(url, "/health")) return EP_HEALTH;
    if (!strcmp(url, "/metrics")) return EP_METRICS;
    if (!strncmp(url, "/v1/", 4)) url += 3;
    if (!strcmp(url, "/chat/completions")) return EP_CHAT;
    if (!strcmp(url, "/completions")) return EP_COMPLETIONS;
    if (!strcmp(url, "/models")) return EP_MODELS;
    if (!strncmp(url, "/models/", 8) && url[8]) {
        *model_id = url + 8;
        return EP_MODEL;
    }
    if (!strcmp(url, "/tokenize")) return EP_TOKENIZE;
    if (!strcmp(url, "/responses")) return EP_RESPONSES;
    if (!strncmp(url, "/responses/", 11) && url[11]) {
        *model_id = url + 11;
        return EP_RESPONSE;
    }
    if (!strcmp(url, "/tokenize-text")) return EP_TOKENIZE_TEXT;
    if (!strcmp(url, "/language-models")) return EP_LANGUAGE_MODELS;
    if (!strncmp(url, "/language-models/", 17) && url[17]) {
        *model_id = url + 17;
        return EP_LANGUAGE_MODEL;
    }
    if (!strcmp(url, "/detokenize")) return EP_DETOKENIZE;
    if (!strcmp(url, "/slots")) return EP_SLOTS;
    if (!strncmp(url, "/slots/", 7) && url[7]) {
        *model_id = url + 7;
        return EP_SLOT;
    }
    return EP_NONE;
}

static bool ep_is_post(int ep) {
    return ep == EP_CHAT || ep == EP_COMPLETIONS || ep == EP_TOKENIZE || ep == EP_DETOKENIZE || ep == EP_RESPONSES ||
           ep == EP_TOKENIZE_TEXT || ep == EP_SLOT;
}

static bool authorized(Server *s, struct MHD_Connection *c) {
    if (!s->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    while (*h == ' ') h++;
    size_t a = strlen(h), b = strlen(s->api_key);
    unsigned diff = (unsigned)(a != b);
    for (size_t i = 0; i < a; i++) diff |= (unsigned char)h[i] ^ (unsigned char)s->api_key[i % (b ? b : 1)];
    return diff == 0;
}

static cJSON *model_json(Server *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", s->model_id);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddNumberToObject(o, "created", (double)s->started);
    cJSON_AddStringToObject(o, "owned_by", "grok.c");
    cJSON *meta = cJSON_AddObjectToObject(o, "meta");
    if (meta) {
        uint64_t total, active;
        model_param_counts(s->m, &total, &active);
        cJSON_AddNumberToObject(meta, "n_ctx_per_request", s->n_ctx);
        cJSON_AddNumberToObject(meta, "n_ctx_train", s->m->cfg.n_ctx_train);
        cJSON_AddNumberToObject(meta, "n_vocab", s->n_vocab);
        cJSON_AddNumberToObject(meta, "n_params", (double)total);
        cJSON_AddNumberToObject(meta, "n_params_active", (double)active);
        cJSON_AddNumberToObject(meta, "parallel", s->n_slots);
        cJSON_AddStringToObject(meta, "chat_template", chat_template_name(s->tmpl));
    }
    return o;
}

static enum MHD_Result handle_metrics(Server *s, struct MHD_Connection *c) {
    Str b = {0};
    char line[256];
    const double now = time_now();
    pthread_mutex_lock(&s->mu);
#define METRIC(name, type, help, fmt, ...)                                                                   \
    do {                                                                                                    \
        snprintf(line, sizeof line, "# HELP grok_" name " " help "\n# TYPE grok_" name " " type "\n");      \
        bad |= str_puts(&b, line);                                                                          \
        snprintf(line, sizeof line, fmt "\n", __VA_ARGS__);                                                \
        bad |= str_puts(&b, line);                                                                          \
    } while (0)
    int bad = 0;
    METRIC("requests_total", "counter", "Generation requests accepted, by endpoint.",
           "grok_requests_total{endpoint=\"chat_completions\"} %llu\ngrok_requests_total{endpoint=\"completions\"} %llu",
           (unsigned long long)s->req_chat, (unsigned long long)s->req_completion);
    METRIC("requests_finished_total", "counter", "Generation requests finished, by outcome.",
           "grok_requests_finished_total{reason=\"stop\"} %llu\ngrok_requests_finished_total{reason=\"length\"} %llu\n"
           "grok_requests_finished_total{reason=\"cancelled\"} %llu\ngrok_requests_finished_total{reason=\"error\"} %llu",
           (unsigned long long)s->fin_stop, (unsigned long long)s->fin_length, (unsigned long long)s->fin_cancelled,
           (unsigned long long)s->fin_error);
    METRIC("http_errors_total", "counter", "Error responses, by class.",
           "grok_http_errors_total{class=\"4xx\"} %llu\ngrok_http_errors_total{class=\"5xx\"} %llu",
           (unsigned long long)s->http_4xx, (unsigned long long)s->http_5xx);
    METRIC("prompt_tokens_total", "counter", "Prompt tokens of accepted requests.", "grok_prompt_tokens_total %llu",
           (unsigned long long)s->prompt_tokens);
    METRIC("prompt_tokens_computed_total", "counter", "Prompt tokens run through the model (not reused from the cache).",
           "grok_prompt_tokens_computed_total %llu", (unsigned long long)s->prompt_tokens_computed);
    METRIC("generated_tokens_total", "counter", "Tokens generated.", "grok_generated_tokens_total %llu",
           (unsigned long long)s->gen_tokens);
    METRIC("generation_tokens_per_second", "gauge", "Generated tokens per second over the last 10 s.",
           "grok_generation_tokens_per_second %.3f", rate_get(&s->gen_rate, now));
    METRIC("prompt_tokens_per_second", "gauge", "Prompt tokens computed per second over the last 10 s.",
           "grok_prompt_tokens_per_second %.3f", rate_get(&s->pp_rate, now));
    METRIC("queue_length", "gauge", "Requests waiting for a slot.", "grok_queue_length %d", s->q_len);
    METRIC("slots_busy", "gauge", "Slots running a request.", "grok_slots_busy %d", s->n_busy);
    METRIC("slots_total", "gauge", "Slots (--parallel).", "grok_slots_total %d", s->n_slots);
    METRIC("time_to_first_token_seconds", "summary", "Time from queueing to the first token.",
           "grok_time_to_first_token_seconds_sum %.6f\ngrok_time_to_first_token_seconds_count %llu", s->ttft_sum,
           (unsigned long long)s->ttft_count);
    METRIC("forward_passes_total", "counter", "Batched forward passes (engine steps).", "grok_forward_passes_total %llu",
           (unsigned long long)s->steps);
    METRIC("batch_tokens_total", "counter", "Tokens over all forward passes.", "grok_batch_tokens_total %llu",
           (unsigned long long)s->batch_tokens);
    METRIC("busy_seconds_total", "counter", "Seconds spent in forward passes.", "grok_busy_seconds_total %.6f",
           s->busy_seconds);
    METRIC("grammar_tokens_total", "counter", "Tokens sampled under a grammar (response_format, grammar, tools).",
           "grok_grammar_tokens_total %llu", (unsigned long long)s->grammar_tokens);
    METRIC("grammar_masks_total", "counter", "Full vocabulary masks computed (the sampled token broke the grammar).",
           "grok_grammar_masks_total %llu", (unsigned long long)s->grammar_masks);
    METRIC("sample_seconds_total", "counter", "Engine seconds spent sampling tokens (grammars included).",
           "grok_sample_seconds_total %.6f", s->sample_seconds);
    METRIC("grammar_seconds_total", "counter", "Engine seconds spent on grammars (checks, masks, steps).",
           "grok_grammar_seconds_total %.6f", s->grammar_seconds);
    if (s->pc) {
        PCacheStats pst;
        pcache_stats(s->pc, &pst);
        METRIC("prompt_cache_lookups_total", "counter", "Prompt cache lookups by result (hit: some blocks restored).",
               "grok_prompt_cache_lookups_total{result=\"hit\"} %llu\ngrok_prompt_cache_lookups_total{result=\"miss\"} %llu",
               (unsigned long long)pst.hits, (unsigned long long)pst.misses);
        METRIC("prompt_cache_evictions_total", "counter", "Prompt cache blocks evicted from RAM for space.",
               "grok_prompt_cache_evictions_total %llu", (unsigned long long)pst.evictions);
        METRIC("prompt_cache_tokens_restored_total", "counter", "Prompt tokens restored from the prompt cache.",
               "grok_prompt_cache_tokens_restored_total %llu", (unsigned long long)pst.tokens_restored);
        METRIC("prompt_cache_bytes", "gauge", "Bytes the prompt cache holds in RAM (of --cache-ram).",
               "grok_prompt_cache_bytes %llu", (unsigned long long)pst.bytes);
        METRIC("prompt_cache_blocks", "gauge", "Blocks of " "32" " positions in the prompt cache's RAM.",
               "grok_prompt_cache_blocks %llu", (unsigned long long)pst.blocks);
        METRIC("prompt_cache_disk_total", "counter",
               "Disk tier: blocks read, written, failed or rejected files, files deleted for --cache-disk.",
               "grok_prompt_cache_disk_total{op=\"read\"} %llu\ngrok_prompt_cache_disk_total{op=\"write\"} %llu\n"
               "grok_prompt_cache_disk_total{op=\"error\"} %llu\ngrok_prompt_cache_disk_total{op=\"evict\"} %llu",
               (unsigned long long)pst.disk_reads, (unsigned long long)pst.disk_writes,
               (unsigned long long)pst.disk_errors, (unsigned long long)pst.disk_evictions);
        if (s->cache_disk_mib > 0)
            METRIC("prompt_cache_disk_bytes", "gauge",
                   "Bytes of this model's block files in the disk tier (of --cache-disk).",
                   "grok_prompt_cache_disk_bytes %llu", (unsigned long long)pst.disk_bytes);
    }
    METRIC("uptime_seconds", "gauge", "Seconds since the server started.", "grok_uptime_seconds %.3f",
           (double)time(NULL) - (double)s->started);
#undef METRIC
    pthread_mutex_unlock(&s->mu);
    if (bad) {
        str_free(&b);
        return send_simple_error(s, c, 500, NULL, "out of memory");
    }
    return send_buf(s, c, 200, "text/plain; version=0.0.4; charset=utf-8", b.s, b.len, true);
}

static enum MHD_Result handle_tokenize(Server *s, struct MHD_Connection *c, const cJSON *root, bool detok) {
    ApiErr e = {0};
    static const char *const tok_fields[] = {"model", "content", "add_special", "with_pieces", NULL};
    static const char *const detok_fields[] = {"model", "tokens", NULL};
    if (check_fields(root, detok ? detok_fields : tok_fields, &e) || check_model(s, root, &e)) return send_error(s, c, &e);
    pthread_mutex_lock(&s->mu);
    s->req_tokenize++;
    pthread_mutex_unlock(&s->mu);
    cJSON *o = cJSON_CreateObject();
    if (detok) {
        cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "tokens");
        int *ids = NULL, n;
        if (!t || cJSON_IsNull(t)) {
            api_err(&e, 400, "missing_required_parameter", "tokens", "Missing required parameter: 'tokens'");
            goto fail;
        }
        if (!cJSON_IsArray(t)) {
            api_err(&e, 400, "invalid_type", "tokens", "Invalid type for 'tokens': expected an array of token ids");
            goto fail;
        }
        if ((n = token_array(s, t, "tokens", &ids, &e)) < 0) goto fail;
        char *txt = tokenizer_decode(s->tok, ids, n);
        free(ids);
        if (!txt) {
            api_err(&e, 500, NULL, NULL, "out of memory");
            goto fail;
        }
        cJSON_AddStringToObject(o, "content", txt);
        free(txt);
    } else {
        cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "content");
        bool add_special = false, pieces = false;
        if (!t || cJSON_IsNull(t)) {
            api_err(&e, 400, "missing_required_parameter", "content", "Missing required parameter: 'content'");
            goto fail;
        }
        if (!cJSON_IsString(t)) {
            api_err(&e, 400, "invalid_type", "content", "Invalid type for 'content': expected a string");
            goto fail;
        }
        if (get_bool(root, "add_special", &add_special, &e) < 0 || get_bool(root, "with_pieces", &pieces, &e) < 0) goto fail;
        int *ids = NULL;
        Error err = {{0}};
        int n = tokenizer_encode(s->tok, t->valuestring, strlen(t->valuestring), add_special, &ids, &err);
        if (n < 0) {
            api_err(&e, 500, NULL, NULL, "%s", err.msg);
            goto fail;
        }
        cJSON *arr = cJSON_AddArrayToObject(o, "tokens");
        for (int i = 0; i < n && arr; i++) {
            if (pieces) {
                char txt[256];
                unsigned char raw[256];
                size_t nr;
                token_text(s, ids[i], txt, sizeof txt, raw, &nr);
                cJSON *it = cJSON_CreateObject();
                cJSON_AddNumberToObject(it, "id", ids[i]);
                cJSON_AddStringToObject(it, "piece", txt);
                cJSON_AddItemToArray(arr, it);
            } else {
                cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
            }
        }
        free(ids);
    }
    return send_json(s, c, 200, o);
fail:
    cJSON_Delete(o);
    return send_error(s, c, &e);
}

/* Waits for a non-streaming job; returns false if the client went away
 * (the job is then cancelled). */
static bool wait_job(Server *s, Job *j, int fd, bool http11) {
    /* a FIN alone may be a client that half-closed after its request: an
     * HTTP/1.1 client is asked with a 100 Continue (see http_guard.h) */
    PeerWatch w = {http11, !http11, false};
    pthread_mutex_lock(&s->mu);
    while (j->state != JOB_DONE) {
        if (peer_gone(fd, &w)) {
            job_cancel(s, j);
            pthread_mutex_unlock(&s->mu);
            return false;
        }
        struct timespec ts;
        abs_deadline(&ts, WAIT_POLL_MS);
        pthread_cond_timedwait(&j->cond, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return true;
}

static int connection_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static enum MHD_Result handle_generate(Server *s, struct MHD_Connection *c, Req *rq, const cJSON *root) {
    ApiErr e = {0};
    Job *j;
    if (rq->ep == EP_RESPONSES) { /* run as a chat request */
        RespCtx *rc = NULL;
        StructErr se = {0};
        pthread_mutex_lock(&s->mu);
        uint64_t seed = splitmix(&s->rng);
        pthread_mutex_unlock(&s->mu);
        cJSON *chat = responses_to_chat(root, s->rstore, seed, &rc, &se);
        if (!chat) {
            api_err(&e, se.status, se.code, se.param, "%s", se.msg);
            return send_error(s, c, &e);
        }
        j = parse_chat(s, chat, &e);
        cJSON_Delete(chat);
        if (j) j->resp = rc;
        else resp_ctx_free(rc);
    } else j = rq->ep == EP_CHAT ? parse_chat(s, root, &e) : parse_completion(s, root, &e);
    if (!j) return send_error(s, c, &e);
    rq->job = j;
    int st = job_submit(s, j);
    if (st) {
        return send_simple_error(s, c, st, st == 429 ? "queue_full" : NULL,
                                 st == 429 ? "Too many requests are waiting; try again later"
                                           : "The server is shutting down");
    }
    const int fd = connection_fd(c);
    /* waiting for the model is not idling: no connection timeout until the
     * answer is ready (setting it again restarts the timer) */
    if (s->timeout_s) MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    if (!j->stream) {
        if (!wait_job(s, j, fd, rq->http11)) return MHD_NO;
        if (s->timeout_s) MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, s->timeout_s);
        pthread_mutex_lock(&s->mu);
        cJSON *o = NULL;
        ApiErr fe = {0};
        if (j->error[0]) api_err(&fe, strcmp(j->error, SHUTDOWN_MSG) ? 500 : 503, NULL, NULL, "%s", j->error);
        else if (j->resp) {
            RespView v = {s->model_id, j->text.s ? j->text.s : "", j->text.len, true, j->finish, NULL,
                          j->n_prompt, j->cached_tokens, j->completion_tokens};
            o = responses_final(s->rstore, j->resp, &v);
        } else o = final_response(s, j);
        if (s->verbose)
            fprintf(stderr, "grok serve: %s prompt %d (cached %d) completion %d finish %s %.3f s\n", j->id, j->n_prompt,
                    j->cached_tokens, j->completion_tokens, j->finish ? j->finish : "-", j->t_done - j->t_queued);
        pthread_mutex_unlock(&s->mu);
        return fe.status ? send_error(s, c, &fe) : send_json(s, c, 200, o);
    }
    Stream *stm = calloc(1, sizeof *stm);
    if (!stm) {
        pthread_mutex_lock(&s->mu);
        job_cancel(s, j);
        pthread_mutex_unlock(&s->mu);
        return send_simple_error(s, c, 500, NULL, "out of memory");
    }
    stm->s = s;
    stm->job = j;
    stm->fd = fd;
    stm->conn = c;
    pthread_mutex_lock(&s->mu);
    j->refs++;
    pthread_mutex_unlock(&s->mu);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, stm, stream_free);
    if (!r) {
        stream_free(stm);
        return MHD_NO;
    }
    add_common_headers(r, "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result handle_tokenize_text(Server *s, struct MHD_Connection *c, const cJSON *root);

static enum MHD_Result handle_post(Server *s, struct MHD_Connection *c, Req *rq, const char *arg) {
    if (rq->too_big) {
        char msg[160];
        snprintf(msg, sizeof msg, "The request body is larger than this server's limit of %zu bytes", s->max_body);
        return send_simple_error(s, c, 413, "request_too_large", msg);
    }
    const char *end = NULL, *const body = rq->body.s ? rq->body.s : "";
    /* JSON text is UTF-8: a malformed byte is a 400, not a silent U+FFFD */
    const size_t bad = utf8_invalid_at(body, rq->body.len);
    if (bad != (size_t)-1) {
        ApiErr e;
        api_err(&e, 400, "invalid_json", NULL,
                "The request body is not valid UTF-8 (byte 0x%02x at offset %zu); JSON text must be UTF-8",
                (unsigned char)body[bad], bad);
        return send_error(s, c, &e);
    }
    /* cJSON records parse errors in a global of its own: one parse at a time */
    pthread_mutex_lock(&s->json_mu);
    /* a slot's erase may come without a body */
    cJSON *root = rq->ep == EP_SLOT && rq->body.len == 0 ? cJSON_CreateObject()
                                                          : cJSON_ParseWithLengthOpts(body, rq->body.len, &end, false);
    pthread_mutex_unlock(&s->json_mu);
    if (root && end) {
        while (end < rq->body.s + rq->body.len && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t')) end++;
        if (end != rq->body.s + rq->body.len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        ApiErr e;
        const long at = end && end >= body && end <= body + rq->body.len ? (long)(end - body) : 0;
        if (rq->body.len == 0) api_err(&e, 400, "invalid_json", NULL, "The request body is empty; expected a JSON object");
        else
            api_err(&e, 400, "invalid_json", NULL,
                    "We could not parse the JSON body of your request (error near byte %ld); expected a JSON object", at);
        return send_error(s, c, &e);
    }
    enum MHD_Result r;
    if (!cJSON_IsObject(root)) {
        r = send_simple_error(s, c, 400, "invalid_json", "The request body must be a JSON object");
    } else if (rq->ep == EP_TOKENIZE || rq->ep == EP_DETOKENIZE) {
        r = handle_tokenize(s, c, root, rq->ep == EP_DETOKENIZE);
    } else if (rq->ep == EP_TOKENIZE_TEXT) {
        r = handle_tokenize_text(s, c, root);
    } else if (rq->ep == EP_SLOT) {
        r = handle_slots(s, c, arg, root);
    } else {
        r = handle_generate(s, c, rq, root);
    }
    cJSON_Delete(root);
    return r;
}

static enum MHD_Result send_response_404(Server *s, struct MHD_Connection *c, const char *id) {
    ApiErr e;
    api_err(&e, 404, "not_found", "response_id", "Response with id '%.100s' not found", id);
    return send_error(s, c, &e);
}

static cJSON *language_model_json(Server *s) {
    const char *aliases[] = {s->file_id, s->file_id_noext, NULL};
    return xai_language_model(s->model_id, s->fingerprint, s->started, SERVER_VERSION, aliases);
}

/* xAI's POST /v1/tokenize-text. */
static enum MHD_Result handle_tokenize_text(Server *s, struct MHD_Connection *c, const cJSON *root) {
    ApiErr e = {0};
    static const char *const fields[] = {"model", "text", "user", NULL};
    if (check_fields(root, fields, &e) || check_model(s, root, &e)) return send_error(s, c, &e);
    cJSON *t = field(root, "text");
    if (!t || !cJSON_IsString(t)) {
        api_err(&e, 400, t ? "invalid_type" : "missing_required_parameter", "text",
                t ? "Invalid type for 'text': expected a string" : "Missing required parameter: 'text'");
        return send_error(s, c, &e);
    }
    pthread_mutex_lock(&s->mu);
    s->req_tokenize++;
    pthread_mutex_unlock(&s->mu);
    Error err = {{0}};
    cJSON *o = xai_tokenize_text(s->tok, t->valuestring, &err);
    return o ? send_json(s, c, 200, o) : send_simple_error(s, c, 500, NULL, err.msg);
}

static enum MHD_Result handle_get(Server *s, struct MHD_Connection *c, Req *rq, const char *model_id) {
    switch (rq->ep) {
    case EP_RESPONSE: {
        cJSON *o = response_store_get(s->rstore, model_id);
        return o ? send_json(s, c, 200, o) : send_response_404(s, c, model_id);
    }
    case EP_LANGUAGE_MODELS: {
        cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "models");
        if (d) cJSON_AddItemToArray(d, language_model_json(s));
        return send_json(s, c, 200, o);
    }
    case EP_LANGUAGE_MODEL:
        if (!strcmp(model_id, s->model_id) || !strcmp(model_id, s->file_id) || !strcmp(model_id, s->file_id_noext))
            return send_json(s, c, 200, language_model_json(s));
        return send_simple_error(s, c, 404, "model_not_found", "The model does not exist");
    case EP_INDEX:
        return send_buf(s, c, 200, "text/html; charset=utf-8", (char *)grok_webui_html, strlen(grok_webui_html), false);
    case EP_FAVICON:
        return send_buf(s, c, 204, "image/x-icon", (char *)"", 0, false);
    case EP_HEALTH: {
        cJSON *o = cJSON_CreateObject();
        pthread_mutex_lock(&s->mu);
        int busy = s->n_busy, q = s->q_len;
        pthread_mutex_unlock(&s->mu);
        cJSON_AddStringToObject(o, "status", "ok");
        cJSON_AddNumberToObject(o, "slots_idle", s->n_slots - busy);
        cJSON_AddNumberToObject(o, "slots_processing", busy);
        cJSON_AddNumberToObject(o, "queue_length", q);
        return send_json(s, c, 200, o);
    }
    case EP_METRICS:
        return handle_metrics(s, c);
    case EP_SLOTS:
        return handle_slots(s, c, NULL, NULL);
    case EP_MODELS: {
        cJSON *o = cJSON_CreateObject(), *d;
        cJSON_AddStringToObject(o, "object", "list");
        d = cJSON_AddArrayToObject(o, "data");
        if (d) cJSON_AddItemToArray(d, model_json(s));
        return send_json(s, c, 200, o);
    }
    case EP_MODEL:
        if (!strcmp(model_id, s->model_id) || !strcmp(model_id, s->file_id) || !strcmp(model_id, s->file_id_noext))
            return send_json(s, c, 200, model_json(s));
        {
            ApiErr e;
            api_err(&e, 404, "model_not_found", "model", "The model '%.200s' does not exist", model_id);
            return send_error(s, c, &e);
        }
    default:
        return send_simple_error(s, c, 404, "not_found", "Not found");
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    Server *s = cls;
    Req *rq = *con_cls;
    const char *model_id = NULL;
    if (rq && rq->responded) { /* an early 413: drop the rest of the body */
        *upload_size = 0;
        return MHD_YES;
    }
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        pthread_mutex_lock(&s->mu);
        s->n_reqs++;
        pthread_mutex_unlock(&s->mu);
        rq->s = s;
        rq->http11 = version && strcmp(version, MHD_HTTP_VERSION_1_0) != 0 && strcmp(version, "HTTP/0.9") != 0;
        rq->ep = route(url, &model_id);
        rq->post = !strcmp(method, "POST");
        *con_cls = rq;
        if (rq->post) { /* refuse a declared body far over the limit before reading it */
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
            if (cl && strtoull(cl, NULL, 10) > 16 * (unsigned long long)s->max_body) {
                rq->too_big = true;
                rq->responded = true;
                char msg[160];
                snprintf(msg, sizeof msg, "The request body is larger than this server's limit of %zu bytes", s->max_body);
                return send_simple_error(s, c, 413, "request_too_large", msg);
            }
        }
        return MHD_YES;
    }
    if (*upload_size) {
        rq->received += *upload_size;
        if (rq->received > s->max_body) {
            rq->too_big = true;
            str_free(&rq->body);
        } else if (str_put(&rq->body, upload, *upload_size)) {
            return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    (void)route(url, &model_id);
    if (!strcmp(method, "OPTIONS")) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
        enum MHD_Result ok = MHD_queue_response(c, 204, r);
        MHD_destroy_response(r);
        return ok;
    }
    if (rq->ep == EP_NONE) return send_simple_error(s, c, 404, "not_found", "Not found");
    const bool want_post = ep_is_post(rq->ep);
    const bool is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    const bool is_delete = rq->ep == EP_RESPONSE && !strcmp(method, "DELETE");
    if ((want_post && !rq->post) || (!want_post && !is_get && !is_delete)) {
        char msg[128];
        snprintf(msg, sizeof msg, "Method %.16s is not allowed here; use %s", method, want_post ? "POST" : "GET");
        return send_simple_error(s, c, 405, "method_not_allowed", msg);
    }
    if (rq->ep != EP_INDEX && rq->ep != EP_FAVICON && rq->ep != EP_HEALTH && !authorized(s, c))
        return send_simple_error(s, c, 401, "invalid_api_key",
                                 "Incorrect or missing API key: send 'Authorization: Bearer KEY' with the server's --api-key");
    if (is_delete) {
        if (!response_store_delete(s->rstore, model_id)) return send_response_404(s, c, model_id);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", model_id);
        cJSON_AddStringToObject(o, "object", "response");
        cJSON_AddBoolToObject(o, "deleted", true);
        return send_json(s, c, 200, o);
    }
    return want_post ? handle_post(s, c, rq, model_id) : handle_get(s, c, rq, model_id);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    (void)toe;
    Server *s = cls;
    Req *rq = *con_cls;
    if (!rq) return;
    if (rq->job) {
        pthread_mutex_lock(&s->mu);
        if (!rq->job->stream) job_cancel(s, rq->job); /* a stream's job lives on in its response */
        job_unref(rq->job);
        pthread_mutex_unlock(&s->mu);
    }
    str_free(&rq->body);
    free(rq);
    *con_cls = NULL;
    pthread_mutex_lock(&s->mu);
    if (--s->n_reqs == 0) pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
}

/* ---- setup and the command --------------------------------------------- */

static const char SERVE_USAGE[] =
    "usage: grok serve -m MODEL.gguf [options]\n"
    "Serves an OpenAI/xAI-compatible HTTP API and a web chat page:\n"
    "  POST /v1/chat/completions  POST /v1/completions  GET /v1/models  GET /health\n"
    "  GET /metrics  POST /tokenize  POST /detokenize  GET /slots  POST /slots/{id}  GET / (chat page)\n"
    "  -m, --model FILE        GGUF model\n"
    "  --host ADDR             address to bind (default 127.0.0.1)\n"
    "  --port N                port (default 8080; 0 = any free port)\n"
    "  -np, --parallel N       slots: requests decoded together (default 4)\n"
    "  -c, --ctx N             context per slot (default: min(model's, 4096))\n"
    "  --api-key KEY           require 'Authorization: Bearer KEY' (also $GROK_API_KEY)\n"
    "  --chat-template NAME    grok-2 or plain (default: what the model names)\n"
    "  --alias NAME            model id to report (default: the model's name)\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "  --kv TYPE               KV cache type, " KV_TYPE_NAMES " (default f16)\n"
    "  --kv-k TYPE, --kv-v TYPE  keys' / values' type alone\n"
    "  --device cpu|cuda|auto  where to compute (default auto: cuda when a GPU is present)\n"
    "  --gpu N                 which CUDA GPU (default 0)\n"
    "  --max-body BYTES        largest request body (default 4194304)\n"
    "  --max-queue N           most requests waiting for a slot (default 1024)\n"
    "  --prefill-chunk N       prompt tokens per step, between decode steps (default 256)\n"
    "  --cache-ram MiB         prompt cache across requests: keys and values of earlier prompts\n"
    "                          kept in blocks of 32 positions, LRU, within this budget (default 0: off)\n"
    "  --cache-dir DIR         and on disk in DIR (survives restarts; needs --cache-ram)\n"
    "  --cache-disk MiB        the disk tier's budget: its least recently used files are deleted\n"
    "                          to stay within it (default: no limit; needs --cache-dir)\n"
    "  --slot-save-path DIR    POST /slots/{id}?action=save|restore {\"filename\": NAME} saves a slot's\n"
    "                          cache to DIR/NAME and restores it (created if missing; default: off)\n"
    "  --context-shift         chat prompts longer than the context drop their oldest turns\n"
    "                          (system messages stay) instead of being refused\n"
    "  --timeout S             close a connection idle for S seconds: no request, a slow header or\n"
    "                          body, an unread answer (default 30; 0 = never); not while a request\n"
    "                          waits for the model\n"
    "  --max-conns N           most open connections (default 2048, at most the open-file limit)\n"
    "  --max-conns-per-ip N    most open connections from one address (default 64; 0 = no limit)\n"
    "  -v, --verbose           log each request\n" DIST_USAGE;

static int parse_int(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "grok serve: %s expects an integer in %ld..%ld, got '%s'\n", flag, lo, hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

static bool flag_is(const char *f, const char *a, const char *b) { return !strcmp(f, a) || (b && !strcmp(f, b)); }

static void copy_id(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src);
}

static int server_init(Server *s, Error *err) {
    s->m = dist_model_load(s->dist, s->model_path, err);
    if (!s->m) return -1;
    s->tok = tokenizer_from_gguf(s->m->file, err);
    if (!s->tok) return -1;
    if (tokenizer_n_vocab(s->tok) > s->m->cfg.n_vocab)
        return err_set(err, "the tokenizer has more tokens than the model's embedding table");
    s->n_vocab = s->m->cfg.n_vocab;
    s->eos = tokenizer_eos(s->tok);
    if (!(s->trie = token_trie_new(s->tok, err))) return -1;
    if (!(s->rstore = response_store_new())) return err_set(err, "out of memory");
    ContextParams cp = {s->n_ctx, s->n_slots, 0, s->n_threads, (uint32_t)s->kv_k, (uint32_t)s->kv_v, s->device, s->gpu, s->dist};
    s->ctx = context_new(s->m, &cp, err);
    if (s->ctx && context_device_note(s->ctx)[0])
        fprintf(stderr, "grok serve: note: computing on the CPU, the GPU did not take the model: %s\n",
                context_device_note(s->ctx));
    if (s->slot_save_path || s->cache_ram_mib > 0) /* reads a sample of every tensor: only when needed */
        s->model_key = pcache_model_key(s->m, (uint32_t)s->kv_k, (uint32_t)s->kv_v);
    if (s->slot_save_path) {
        struct stat sb;
        if (mkdir(s->slot_save_path, 0755) && errno != EEXIST)
            return err_set(err, "cannot create --slot-save-path %s: %s", s->slot_save_path, strerror(errno));
        if (stat(s->slot_save_path, &sb) || !S_ISDIR(sb.st_mode))
            return err_set(err, "--slot-save-path %s is not a folder", s->slot_save_path);
    }
    if (s->ctx && s->cache_ram_mib > 0) {
        s->pc = pcache_new((size_t)s->cache_ram_mib << 20, s->cache_dir, s->model_key, context_kv_pos_bytes(s->ctx),
                           err);
        if (!s->pc) return -1;
        if (s->cache_disk_mib > 0 && pcache_set_disk_cap(s->pc, (size_t)s->cache_disk_mib << 20, err)) return -1;
    }
    if (!s->ctx) return -1;
    dist_print_shares(s->dist, s->m, "serve", stderr);
    s->n_ctx = context_n_ctx(s->ctx);
    copy_id(s->model_id, sizeof s->model_id, s->alias ? s->alias : s->m->name);
    const char *base = strrchr(s->model_path, '/');
    base = base ? base + 1 : s->model_path;
    copy_id(s->file_id, sizeof s->file_id, base);
    copy_id(s->file_id_noext, sizeof s->file_id_noext, base);
    size_t bl = strlen(s->file_id_noext);
    if (bl > 5 && !strcmp(s->file_id_noext + bl - 5, ".gguf")) s->file_id_noext[bl - 5] = 0;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a of the model id and sizes */
    for (const char *p = s->model_id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h ^= (uint64_t)s->m->cfg.n_embd * 31 + (uint64_t)s->m->cfg.n_layer;
    snprintf(s->fingerprint, sizeof s->fingerprint, "fp_grokc_%s_%08llx", SERVER_VERSION,
             (unsigned long long)(h & 0xffffffffULL));
    s->started = (long long)time(NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->rng = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
    const size_t S = (size_t)s->n_slots, nb = S + (size_t)s->chunk;
    s->slots = calloc(S, sizeof *s->slots);
    s->b_tok = malloc(nb * sizeof(int));
    s->b_pos = malloc(nb * sizeof(int));
    s->b_seq = malloc(nb * sizeof(int));
    s->b_out = malloc(nb * sizeof(bool));
    s->n_groups = forward_depth(s->ctx); /* the layers split over N ranks: N batches in flight */
    const size_t G = (size_t)s->n_groups;
    s->row_slot = malloc(G * S * sizeof(int));
    s->g_rows = calloc(3 * G, sizeof(int));
    s->logits = malloc(S * (size_t)s->n_vocab * sizeof(float));
    if (!s->slots || !s->b_tok || !s->b_pos || !s->b_seq || !s->b_out || !s->row_slot || !s->g_rows || !s->logits)
        return err_set(err, "out of memory");
    s->g_tokens = s->g_rows + G, s->g_decode = s->g_tokens + G;
    for (size_t i = 0; i < S; i++) {
        s->slots[i].cache = malloc((size_t)s->n_ctx * sizeof(int));
        s->slots[i].raw = malloc((size_t)s->n_vocab * sizeof(float));
        if (!s->slots[i].cache || !s->slots[i].raw) return err_set(err, "out of memory");
    }
    return 0;
}

static void server_free(Server *s) {
    if (s->slots)
        for (int i = 0; i < s->n_slots; i++) {
            free(s->slots[i].cache);
            free(s->slots[i].raw);
            str_free(&s->slots[i].scratch);
        }
    free(s->slots);
    free(s->b_tok);
    free(s->b_pos);
    free(s->b_seq);
    free(s->b_out);
    free(s->row_slot);
    free(s->g_rows);
    free(s->logits);
    pcache_free(s->pc);
    context_free(s->ctx);
    token_trie_free(s->trie);
    response_store_free(s->rstore);
    tokenizer_free(s->tok);
    model_free(s->m);
}

static int idle_cond_init(pthread_cond_t *c) {
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca)) return -1;
#if !defined(__APPLE__)
    pthread_condattr_setclock(&ca, COND_CLOCK);
#endif
    int r = pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
    return r;
}

/* Logs why libmicrohttpd refused or dropped a connection (-v). */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    fputs("grok serve: http: ", stderr);
    vfprintf(stderr, fmt, ap);
}

static struct MHD_Daemon *start_http(Server *s, unsigned flags, uint16_t port, const struct sockaddr *addr) {
    if (s->verbose) flags |= MHD_USE_ERROR_LOG;
    if (!addr) /* no listening socket: connections come from MHD_add_connection */
        return MHD_start_daemon(flags | MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL, on_request, s,
                                MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                MHD_OPTION_CONNECTION_LIMIT, s->max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                s->max_conns_ip, MHD_OPTION_CONNECTION_TIMEOUT, s->timeout_s, MHD_OPTION_END);
    return MHD_start_daemon(flags, port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_CONNECTION_LIMIT, s->max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                            s->max_conns_ip, MHD_OPTION_CONNECTION_TIMEOUT, s->timeout_s, MHD_OPTION_END);
}

/* Stops the engine (every running or queued request ends with the shutdown
 * error), lets the connections deliver those errors (at most
 * SHUTDOWN_GRACE_MS), then stops HTTP. */
static void server_stop(Server *s) {
    acceptor_stop(s->acceptor); /* no new connections */
    s->acceptor = NULL;
    if (s->engine_running) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->engine, NULL);
        s->engine_running = false;
    }
    if (s->daemon) {
        struct timespec ts;
        abs_deadline(&ts, SHUTDOWN_GRACE_MS);
        pthread_mutex_lock(&s->mu);
        while (s->n_reqs > 0)
            if (pthread_cond_timedwait(&s->idle, &s->mu, &ts) == ETIMEDOUT) break;
        pthread_mutex_unlock(&s->mu);
        MHD_stop_daemon(s->daemon);
        s->daemon = NULL;
    }
}

int cmd_serve(int argc, char **argv, Dist *d) {
    Server srv;
    memset(&srv, 0, sizeof srv);
    Server *s = &srv;
    s->dist = d;
    s->host = "127.0.0.1";
    s->port = 8080;
    s->n_slots = 4;
    s->kv_k = s->kv_v = GGML_TYPE_F16;
    s->device = GROK_DEVICE_AUTO;
    s->max_queue = 1024;
    s->chunk = PREFILL_CHUNK;
    s->max_body = 4u << 20;
    s->timeout_s = TIMEOUT_S;
    s->max_conns = MAX_CONNS;
    s->max_conns_ip = MAX_CONNS_PER_IP;
    s->api_key = getenv("GROK_API_KEY");
    if (s->api_key && !s->api_key[0]) s->api_key = NULL;
    const char *tmpl_name = NULL;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
#define FLAG(a, b) flag_is(f, a, b)
#define NEED()                                                          \
    do {                                                                \
        if (!v) {                                                       \
            fprintf(stderr, "grok serve: %s needs a value\n", f);       \
            return 2;                                                   \
        }                                                               \
        i++;                                                            \
    } while (0)
        if (FLAG("-h", "--help")) {
            fputs(SERVE_USAGE, stdout);
            return 0;
        } else if (FLAG("-m", "--model")) {
            NEED();
            s->model_path = v;
        } else if (FLAG("--host", NULL)) {
            NEED();
            s->host = v;
        } else if (FLAG("--port", NULL)) {
            NEED();
            if (parse_int(f, v, 0, 65535, &x)) return 2;
            s->port = (int)x;
        } else if (FLAG("--split", NULL) || FLAG("--dist-timeout", NULL) || FLAG("--micro-batch", NULL)) {
            NEED();
            Error derr = {{0}};
            if (dist_parse_flag(d, f, v, &derr) < 0) {
                fprintf(stderr, "grok serve: %s\n", derr.msg);
                return 2;
            }
        } else if (FLAG("-np", "--parallel")) {
            NEED();
            if (parse_int(f, v, 1, 256, &x)) return 2;
            s->n_slots = (int)x;
        } else if (FLAG("-c", "--ctx")) {
            NEED();
            if (parse_int(f, v, 16, 1 << 24, &x)) return 2;
            s->n_ctx = (int)x;
        } else if (FLAG("-t", "--threads")) {
            NEED();
            if (parse_int(f, v, 1, 1024, &x)) return 2;
            s->n_threads = (int)x;
        } else if (FLAG("--max-body", NULL)) {
            NEED();
            if (parse_int(f, v, 1024, 1L << 30, &x)) return 2;
            s->max_body = (size_t)x;
        } else if (FLAG("--cache-ram", NULL)) {
            NEED();
            if (parse_int(f, v, 0, 1L << 30, &x)) return 2;
            s->cache_ram_mib = x;
        } else if (FLAG("--cache-dir", NULL)) {
            NEED();
            s->cache_dir = v;
        } else if (FLAG("--cache-disk", NULL)) {
            NEED();
            if (parse_int(f, v, 1, 1L << 40, &x)) return 2;
            s->cache_disk_mib = x;
        } else if (FLAG("--slot-save-path", NULL)) {
            NEED();
            s->slot_save_path = v;
        } else if (FLAG("--prefill-chunk", NULL)) {
            NEED();
            if (parse_int(f, v, 1, 1 << 16, &x)) return 2;
            s->chunk = (int)x;
        } else if (FLAG("--timeout", NULL)) {
            NEED();
            if (parse_int(f, v, 0, 86400, &x)) return 2;
            s->timeout_s = (unsigned)x;
        } else if (FLAG("--max-conns", NULL)) {
            NEED();
            if (parse_int(f, v, 1, 1 << 20, &x)) return 2;
            s->max_conns = (unsigned)x;
        } else if (FLAG("--max-conns-per-ip", NULL)) {
            NEED();
            if (parse_int(f, v, 0, 1 << 20, &x)) return 2;
            s->max_conns_ip = (unsigned)x;
        } else if (FLAG("--max-queue", NULL)) {
            NEED();
            if (parse_int(f, v, 1, 1 << 20, &x)) return 2;
            s->max_queue = (int)x;
        } else if (FLAG("--api-key", NULL)) {
            NEED();
            s->api_key = v[0] ? v : NULL;
        } else if (FLAG("--chat-template", NULL)) {
            NEED();
            tmpl_name = v;
        } else if (FLAG("--alias", NULL)) {
            NEED();
            s->alias = v;
        } else if (FLAG("--kv", NULL) || FLAG("--kv-k", NULL) || FLAG("--kv-v", NULL)) {
            NEED();
            const int t = kv_type_parse(v);
            if (t < 0) {
                fprintf(stderr, "grok serve: %s must be one of " KV_TYPE_NAMES "\n", f);
                return 2;
            }
            if (!FLAG("--kv-v", NULL)) s->kv_k = t;
            if (!FLAG("--kv-k", NULL)) s->kv_v = t;
        } else if (FLAG("--device", NULL)) {
            NEED();
            if ((s->device = device_parse(v)) < 0) {
                fprintf(stderr, "grok serve: --device must be cpu, cuda or auto, not '%s'\n", v);
                return 2;
            }
        } else if (FLAG("--gpu", NULL)) {
            NEED();
            if (parse_int(f, v, 0, 1023, &x)) return 2;
            s->gpu = (int)x;
        } else if (FLAG("--context-shift", NULL)) {
            s->context_shift = true;
        } else if (FLAG("-v", "--verbose")) {
            s->verbose = true;
        } else {
            fprintf(stderr, "grok serve: unknown option '%s' (see grok serve --help)\n", f);
            return 2;
        }
#undef FLAG
#undef NEED
    }
    if (!s->model_path) {
        fprintf(stderr, "grok serve: no model given (-m MODEL.gguf); see grok serve --help\n");
        return 1;
    }
    if (s->cache_disk_mib > 0 && !s->cache_dir) {
        fprintf(stderr, "grok serve: --cache-disk needs --cache-dir DIR (and --cache-ram MiB)\n");
        return 2;
    }
    if (s->cache_dir && s->cache_ram_mib <= 0) {
        fprintf(stderr, "grok serve: --cache-dir needs --cache-ram MiB (blocks pass through RAM)\n");
        return 2;
    }
    int tmpl = -1;
    if (tmpl_name && (tmpl = chat_template_from_name(tmpl_name)) < 0) {
        fprintf(stderr, "grok serve: unknown chat template '%s' (grok-2 or plain)\n", tmpl_name);
        return 2;
    }
    /* SIGINT/SIGTERM are taken by sigwait below; every thread inherits the mask */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
#ifdef SIGXFSZ
    signal(SIGXFSZ, SIG_IGN); /* a file over the size limit is a failed write (EFBIG), not the end of the server */
#endif

    Error err = {{0}};
    int rc = 1;
    bool mu_ok = false, json_ok = false, work_ok = false, idle_ok = false;
    if (pthread_mutex_init(&s->mu, NULL) == 0) mu_ok = true;
    if (pthread_mutex_init(&s->json_mu, NULL) == 0) json_ok = true;
    if (pthread_cond_init(&s->work, NULL) == 0) work_ok = true;
    if (idle_cond_init(&s->idle) == 0) idle_ok = true;
    if (!mu_ok || !json_ok || !work_ok || !idle_ok) {
        fprintf(stderr, "grok serve: cannot create locks\n");
        goto out;
    }
    double t0 = time_now();
    if (server_init(s, &err)) {
        fprintf(stderr, "grok serve: %s\n", err.msg);
        goto out;
    }
    s->tmpl = tmpl >= 0 ? (ChatTemplate)tmpl : chat_template_detect(s->m->file);
    const char *sep = chat_stop_string(s->tmpl);
    s->sep_token = tokenizer_find(s->tok, sep, strlen(sep));
    if (s->n_ctx > s->m->cfg.n_ctx_train)
        fprintf(stderr, "grok serve: warning: --ctx %d exceeds the model's trained context %d\n", s->n_ctx,
                s->m->cfg.n_ctx_train);

    /* the address to bind */
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", s->port);
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(s->host, port_s, &hints, &ai);
    if (gai || !ai) {
        fprintf(stderr, "grok serve: cannot resolve --host %s: %s\n", s->host, gai_strerror(gai));
        goto out;
    }
    if (pthread_create(&s->engine, NULL, engine_main, s)) {
        freeaddrinfo(ai);
        fprintf(stderr, "grok serve: cannot start the engine thread\n");
        goto out;
    }
    s->engine_running = true;
    /* every connection is a descriptor (and a thread): the soft open-file
     * limit goes up to the hard one, and --max-conns stays below it */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rlim_t want = rl.rlim_max == RLIM_INFINITY ? 65536 : rl.rlim_max;
            struct rlimit nrl = {want, rl.rlim_max};
            if (setrlimit(RLIMIT_NOFILE, &nrl) == 0) rl.rlim_cur = want;
        }
        /* connections waiting for their first bytes and those being served
         * are counted apart: two of --max-conns, plus the server's own files */
        const rlim_t room = rl.rlim_cur > 128 ? (rl.rlim_cur - 64) / 2 : 32;
        if (rl.rlim_cur != RLIM_INFINITY && s->max_conns > room) {
            fprintf(stderr, "grok serve: --max-conns %u lowered to %llu (the open-file limit is %llu)\n", s->max_conns,
                    (unsigned long long)room, (unsigned long long)rl.rlim_cur);
            s->max_conns = (unsigned)room;
        }
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    /* our own listening socket: http_accept.c holds each new connection
     * until its first bytes, answers garbage with a 400 and hands the rest
     * to libmicrohttpd */
    int lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (lfd >= 0) setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(lfd, 511) != 0) {
        fprintf(stderr, "grok serve: cannot listen on %s:%d: %s\n", s->host, s->port, strerror(errno));
        if (lfd >= 0) close(lfd);
        freeaddrinfo(ai);
        goto out;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    int port = s->port;
    if (getsockname(lfd, (struct sockaddr *)&bound, &bound_len) == 0)
        port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
    s->daemon = start_http(s, flags, 0, NULL);
    if (!s->daemon) {
        fprintf(stderr, "grok serve: cannot start libmicrohttpd\n");
        close(lfd);
        goto out;
    }
    if (!(s->acceptor = acceptor_start(lfd, s->daemon, s->timeout_s, s->max_conns, s->max_conns_ip, s->verbose, &err))) {
        fprintf(stderr, "grok serve: %s\n", err.msg);
        close(lfd);
        goto out;
    }
    const bool v6 = strchr(s->host, ':') != NULL;
    fprintf(stderr,
            "grok serve: model %s (%s template), %d slots x %d tokens, %d threads, %s kernels, loaded in %.2f s\n",
            s->model_id, chat_template_name(s->tmpl), s->n_slots, s->n_ctx, context_n_threads(s->ctx),
            quant_simd_name(), time_now() - t0);
    printf("grok serve: listening on http://%s%s%s:%d%s\n", v6 ? "[" : "", s->host, v6 ? "]" : "", port,
           s->api_key ? " (API key required)" : "");
    fflush(stdout);

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "grok serve: signal %d, shutting down\n", sig);
    /* several processes: a forward pass waiting on the others ends now (under
     * mpirun this signal usually means another rank died) */
    dist_cancel(s->dist);
    /* no new connections; the running requests get their 503 (a JSON error,
     * or an SSE error event and [DONE]) before the connections close */
    acceptor_stop(s->acceptor);
    s->acceptor = NULL;
    rc = 0;
out:
    server_stop(s);
    server_free(s);
    if (idle_ok) pthread_cond_destroy(&s->idle);
    if (work_ok) pthread_cond_destroy(&s->work);
    if (mu_ok) pthread_mutex_destroy(&s->mu);
    if (json_ok) pthread_mutex_destroy(&s->json_mu);
    return rc;
}

/* ---- in-process server (tests, fuzz target) ----------------------------- */

#define LOCAL_MAX_OUT ((size_t)4 << 20)

Server *serve_local_open(const char *model_path, int n_ctx, int n_slots, Error *err) {
    Server *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(err, "out of memory");
        return NULL;
    }
    s->model_path = model_path;
    s->host = "local";
    s->n_slots = n_slots;
    s->n_ctx = n_ctx;
    s->n_threads = 1;
    s->kv_k = s->kv_v = GGML_TYPE_F16;
    s->max_queue = 64;
    s->chunk = PREFILL_CHUNK;
    s->max_body = 1u << 20;
    s->max_conns = 64;
    if (pthread_mutex_init(&s->mu, NULL) || pthread_mutex_init(&s->json_mu, NULL) || pthread_cond_init(&s->work, NULL) ||
        idle_cond_init(&s->idle)) {
        free(s);
        err_set(err, "cannot create locks");
        return NULL;
    }
    if (server_init(s, err)) goto fail;
    s->tmpl = chat_template_detect(s->m->file);
    const char *sep = chat_stop_string(s->tmpl);
    s->sep_token = tokenizer_find(s->tok, sep, strlen(sep));
    if (pthread_create(&s->engine, NULL, engine_main, s)) {
        err_set(err, "cannot start the engine thread");
        goto fail;
    }
    s->engine_running = true;
    if (!(s->daemon = start_http(s, 0, 0, NULL))) {
        err_set(err, "cannot start libmicrohttpd");
        goto fail;
    }
    return s;
fail:
    serve_local_close(s);
    return NULL;
}

int serve_local_request(Server *s, const void *req, size_t n, char **out, size_t *out_len) {
    int sv[2];
    *out = NULL;
    *out_len = 0;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv)) return -1;
    struct sockaddr_in peer;
    memset(&peer, 0, sizeof peer);
    peer.sin_family = AF_INET;
    peer.sin_port = htons(40000);
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (MHD_add_connection(s->daemon, sv[0], (const struct sockaddr *)&peer, sizeof peer) != MHD_YES) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    Str o = {0};
    size_t off = 0;
    bool shut = false, closed = false;
    char buf[16384];
    for (int it = 0; it < 200000 && !closed; it++) {
        if (off < n) {
            ssize_t w = send(sv[1], (const char *)req + off, n - off, MSG_NOSIGNAL);
            if (w > 0) off += (size_t)w;
        }
        if (off == n && !shut) {
            shutdown(sv[1], SHUT_WR);
            shut = true;
        }
        MHD_run(s->daemon);
        for (;;) {
            ssize_t r = recv(sv[1], buf, sizeof buf, 0);
            if (r > 0) {
                if (o.len + (size_t)r <= LOCAL_MAX_OUT && str_put(&o, buf, (size_t)r)) break;
                continue;
            }
            if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) closed = true;
            break;
        }
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (shut && di && di->num_connections == 0) closed = true;
    }
    close(sv[1]);
    for (int i = 0; i < 4; i++) MHD_run(s->daemon); /* lets MHD see the close */
    if (!o.s && str_puts(&o, "")) return -1;
    *out = o.s;
    *out_len = o.len;
    return 0;
}

void serve_local_close(Server *s) {
    if (!s) return;
    server_stop(s);
    server_free(s);
    pthread_cond_destroy(&s->idle);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->json_mu);
    free(s);
}
