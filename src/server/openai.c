/* openai.c - the OpenAI surface of `grok serve`: error bodies, request
 * validation (every field of chat and completions requests, unknown fields
 * refused), response building and SSE streaming. */
#include "server_internal.h"

/* ---- API errors and responses ------------------------------------------ */

int api_err(ApiErr *e, int status, const char *code, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = status == 401   ? "authentication_error"
              : status == 404 ? "not_found_error"
              : status == 429 ? "rate_limit_error"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    if (status == 404 && code && !strcmp(code, "model_not_found")) e->type = "invalid_request_error";
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void add_common_headers(struct MHD_Response *r, const char *ctype) {
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header(r, "Server", "grok.c/" SERVER_VERSION);
}

enum MHD_Result send_buf(Server *s, struct MHD_Connection *c, int status, const char *ctype, char *buf,
                                size_t len, bool must_free) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, buf, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (must_free) free(buf);
        return MHD_NO;
    }
    add_common_headers(r, ctype);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    if (status >= 400) {
        pthread_mutex_lock(&s->mu);
        if (status >= 500) s->http_5xx++;
        else s->http_4xx++;
        pthread_mutex_unlock(&s->mu);
    }
    return ok;
}

/* Sends and frees a cJSON object. */
enum MHD_Result send_json(Server *s, struct MHD_Connection *c, int status, cJSON *o) {
    char *txt = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!txt) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        return send_buf(s, c, 500, "application/json", (char *)oom, sizeof oom - 1, false);
    }
    return send_buf(s, c, status, "application/json", txt, strlen(txt), true);
}

static cJSON *error_json(const ApiErr *e) {
    cJSON *o = cJSON_CreateObject(), *in = cJSON_AddObjectToObject(o, "error");
    if (!in) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddStringToObject(in, "message", e->msg);
    cJSON_AddStringToObject(in, "type", e->type);
    if (e->param[0]) cJSON_AddStringToObject(in, "param", e->param);
    else cJSON_AddNullToObject(in, "param");
    if (e->code) cJSON_AddStringToObject(in, "code", e->code);
    else cJSON_AddNullToObject(in, "code");
    return o;
}

enum MHD_Result send_error(Server *s, struct MHD_Connection *c, const ApiErr *e) {
    return send_json(s, c, e->status, error_json(e));
}

enum MHD_Result send_simple_error(Server *s, struct MHD_Connection *c, int status, const char *code,
                                         const char *msg) {
    ApiErr e;
    api_err(&e, status, code, NULL, "%s", msg);
    return send_error(s, c, &e);
}

/* ---- request validation ------------------------------------------------ */

/* A field that is absent or null counts as not given. */
cJSON *field(const cJSON *o, const char *key) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* 1 if present (value in *out), 0 if absent, -1 on a bad value. */
static int get_number(const cJSON *o, const char *key, double lo, double hi, bool integer, double *out,
                      ApiErr *e) {
    cJSON *v = field(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v))
        return api_err(e, 400, "invalid_type", key, "Invalid type for '%s': expected %s", key,
                       integer ? "an integer" : "a number");
    double x = v->valuedouble;
    if (integer && x != floor(x))
        return api_err(e, 400, "invalid_type", key, "Invalid type for '%s': expected an integer, got %g", key, x);
    if (!(x >= lo && x <= hi)) {
        if (integer)
            return api_err(e, 400, "invalid_value", key, "Invalid '%s': %g is out of range; expected %.0f to %.0f", key, x,
                           lo, hi);
        return api_err(e, 400, "invalid_value", key, "Invalid '%s': %g is out of range; expected %g to %g", key, x, lo, hi);
    }
    *out = x;
    return 1;
}

int get_bool(const cJSON *o, const char *key, bool *out, ApiErr *e) {
    cJSON *v = field(o, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return api_err(e, 400, "invalid_type", key, "Invalid type for '%s': expected a boolean", key);
    *out = cJSON_IsTrue(v);
    return 1;
}

static bool name_in(const char *name, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(name, *list)) return true;
    return false;
}

/* Fields a client may send that grok.c cannot honour yet: a 400 naming them. */
static const char *const UNSUPPORTED_FIELDS[] = {
    "functions", "function_call", "audio", "prediction", "web_search_options",
    "search_parameters", "reasoning_effort", "suffix", "deferred", NULL};

int check_fields(const cJSON *root, const char *const *known, ApiErr *e) {
    for (const cJSON *it = root->child; it; it = it->next) {
        const char *k = it->string ? it->string : "";
        if (name_in(k, known)) continue;
        if (name_in(k, UNSUPPORTED_FIELDS)) {
            if (cJSON_IsNull(it)) continue;
            if (!strcmp(k, "suffix") && cJSON_IsString(it) && !it->valuestring[0]) continue;
            return api_err(e, 400, "unsupported_parameter", k, "'%s' is not supported by this server (grok.c) yet", k);
        }
        return api_err(e, 400, "unknown_parameter", k, "Unrecognized request argument supplied: %s", k);
    }
    return 0;
}

/* Options shared by chat and text completions. */
typedef struct {
    SamplerParams sp;
    bool seed_given;
    int max_tokens;           /* -1: not given */
    int n_keep;               /* tokens a context shift keeps: -2 not given, -1 the whole prompt */
    bool stream, include_usage, echo, ignore_eos;
    int logprobs;             /* -1: none */
    const char *stops[MAX_STOPS];
    int n_stops;
} GenOpts;

static int parse_stop(const cJSON *root, GenOpts *g, ApiErr *e) {
    cJSON *v = field(root, "stop");
    if (!v) return 0;
    if (cJSON_IsString(v)) {
        if (strlen(v->valuestring) > MAX_STOP_LEN)
            return api_err(e, 400, "invalid_value", "stop", "Invalid 'stop': at most %d bytes per string", MAX_STOP_LEN);
        if (v->valuestring[0]) g->stops[g->n_stops++] = v->valuestring;
        return 0;
    }
    if (!cJSON_IsArray(v))
        return api_err(e, 400, "invalid_type", "stop", "Invalid type for 'stop': expected a string or an array of strings");
    int n = cJSON_GetArraySize(v);
    if (n > MAX_STOPS)
        return api_err(e, 400, "invalid_value", "stop", "Invalid 'stop': at most %d stop strings, got %d", MAX_STOPS, n);
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, v) {
        char p[32];
        snprintf(p, sizeof p, "stop[%d]", i++);
        if (!cJSON_IsString(it)) return api_err(e, 400, "invalid_type", p, "Invalid type for '%s': expected a string", p);
        if (strlen(it->valuestring) > MAX_STOP_LEN)
            return api_err(e, 400, "invalid_value", p, "Invalid '%s': at most %d bytes per string", p, MAX_STOP_LEN);
        if (it->valuestring[0]) g->stops[g->n_stops++] = it->valuestring;
    }
    return 0;
}

static int parse_gen(Server *s, const cJSON *root, bool chat, GenOpts *g, ApiErr *e) {
    double x;
    int r;
    g->sp = sampler_defaults();
    g->max_tokens = -1;
    g->n_keep = -2;
    g->logprobs = -1;
    if ((r = get_number(root, "temperature", 0, 2, false, &x, e)) < 0) return -1;
    if (r) g->sp.temperature = (float)x;
    if ((r = get_number(root, "top_p", 0, 1, false, &x, e)) < 0) return -1;
    if (r) g->sp.top_p = (float)x;
    if ((r = get_number(root, "top_k", 0, 1e9, true, &x, e)) < 0) return -1;
    if (r) g->sp.top_k = (int)x;
    if ((r = get_number(root, "min_p", 0, 1, false, &x, e)) < 0) return -1;
    if (r) g->sp.min_p = (float)x;
    if ((r = get_number(root, "presence_penalty", -2, 2, false, &x, e)) < 0) return -1;
    if (r) g->sp.presence_penalty = (float)x;
    if ((r = get_number(root, "frequency_penalty", -2, 2, false, &x, e)) < 0) return -1;
    if (r) g->sp.frequency_penalty = (float)x;
    if ((r = get_number(root, "repeat_penalty", 0.01, 100, false, &x, e)) < 0) return -1;
    if (r) g->sp.repeat_penalty = (float)x;
    if ((r = get_number(root, "seed", -9223372036854775808.0, 9223372036854774784.0, true, &x, e)) < 0) return -1;
    if (r) {
        g->sp.seed = (uint64_t)(int64_t)x;
        g->seed_given = true;
    }
    const char *mt_name = "max_tokens";
    if (chat && field(root, "max_completion_tokens")) mt_name = "max_completion_tokens";
    cJSON *mt = field(root, mt_name);
    if (mt) {
        if (!cJSON_IsNumber(mt) || mt->valuedouble != floor(mt->valuedouble))
            return api_err(e, 400, "invalid_type", mt_name, "Invalid type for '%s': expected an integer", mt_name);
        const double lo = chat ? 1 : 0;
        if (mt->valuedouble < lo)
            return api_err(e, 400, "invalid_value", mt_name, "Invalid '%s': %.0f; it must be at least %.0f", mt_name,
                           mt->valuedouble, lo);
        if (mt->valuedouble > (s->context_shift ? MAX_TOKENS_SHIFT : s->n_ctx))
            return api_err(e, 400, "invalid_value", mt_name,
                           s->context_shift ? "Invalid '%s': %.0f is too large; at most %d"
                                            : "Invalid '%s': %.0f is too large; this server's context holds at most %d "
                                              "tokens per request (--context-shift lets a reply go on past it)",
                           mt_name, mt->valuedouble, s->context_shift ? MAX_TOKENS_SHIFT : s->n_ctx);
        g->max_tokens = (int)mt->valuedouble;
    }
    if ((r = get_number(root, "n_keep", -1, 1 << 30, true, &x, e)) < 0) return -1;
    if (r) g->n_keep = (int)x;
    if ((r = get_number(root, "n", 1, 128, true, &x, e)) < 0) return -1;
    if (r && x != 1) return api_err(e, 400, "unsupported_value", "n", "Invalid 'n': only n = 1 is supported");
    if (get_bool(root, "stream", &g->stream, e) < 0) return -1;
    if (get_bool(root, "ignore_eos", &g->ignore_eos, e) < 0) return -1;
    cJSON *so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so))
            return api_err(e, 400, "invalid_type", "stream_options", "Invalid type for 'stream_options': expected an object");
        if (!g->stream)
            return api_err(e, 400, "invalid_value", "stream_options",
                           "Invalid 'stream_options': only allowed when 'stream' is true");
        for (const cJSON *it = so->child; it; it = it->next)
            if (strcmp(it->string, "include_usage") != 0)
                return api_err(e, 400, "unknown_parameter", "stream_options",
                               "Unrecognized argument in 'stream_options': %s", it->string);
        cJSON *iu = field(so, "include_usage");
        if (iu && !cJSON_IsBool(iu))
            return api_err(e, 400, "invalid_type", "stream_options.include_usage",
                           "Invalid type for 'stream_options.include_usage': expected a boolean");
        g->include_usage = iu && cJSON_IsTrue(iu);
    }
    if (parse_stop(root, g, e)) return -1;
    cJSON *u = field(root, "user");
    if (u && !cJSON_IsString(u)) return api_err(e, 400, "invalid_type", "user", "Invalid type for 'user': expected a string");
    cJSON *lb = field(root, "logit_bias");
    if (lb && (!cJSON_IsObject(lb) || lb->child))
        return api_err(e, 400, "unsupported_parameter", "logit_bias", "'logit_bias' is not supported by this server (grok.c) yet");
    if (chat) {
        bool lp = false;
        if (get_bool(root, "logprobs", &lp, e) < 0) return -1;
        if ((r = get_number(root, "top_logprobs", 0, MAX_TOP_LOGPROBS, true, &x, e)) < 0) return -1;
        if (r && !lp)
            return api_err(e, 400, "invalid_value", "top_logprobs",
                           "Invalid 'top_logprobs': 'logprobs' must be true to use 'top_logprobs'");
        if (lp) g->logprobs = r ? (int)x : 0;
        cJSON *mo = field(root, "modalities");
        if (mo) {
            bool ok = cJSON_IsArray(mo);
            const cJSON *it;
            cJSON_ArrayForEach(it, mo) if (!cJSON_IsString(it) || strcmp(it->valuestring, "text")) ok = false;
            if (!ok)
                return api_err(e, 400, "unsupported_parameter", "modalities",
                               "'modalities' other than [\"text\"] are not supported by this server (grok.c)");
        }
    } else {
        if ((r = get_number(root, "logprobs", 0, MAX_TOP_LOGPROBS, true, &x, e)) < 0) return -1;
        if (r) g->logprobs = (int)x;
        if (get_bool(root, "echo", &g->echo, e) < 0) return -1;
        if (g->echo && g->stream)
            return api_err(e, 400, "unsupported_value", "echo", "'echo' together with 'stream' is not supported by this server");
        if ((r = get_number(root, "best_of", 1, 128, true, &x, e)) < 0) return -1;
        if (r && x != 1) return api_err(e, 400, "unsupported_value", "best_of", "Invalid 'best_of': only 1 is supported");
    }
    return 0;
}

/* The model field: absent (the loaded model) or one of its ids. */
int check_model(Server *s, const cJSON *root, ApiErr *e) {
    cJSON *m = field(root, "model");
    if (!m) return 0;
    if (!cJSON_IsString(m)) return api_err(e, 400, "invalid_type", "model", "Invalid type for 'model': expected a string");
    const char *id = m->valuestring;
    if (!strcmp(id, s->model_id) || !strcmp(id, s->file_id) || !strcmp(id, s->file_id_noext)) return 0;
    return api_err(e, 404, "model_not_found", "model",
                   "The model '%.200s' does not exist; this server serves '%.160s' (see GET /v1/models)", id,
                   s->model_id);
}

/* Builds a job from the validated options and prompt tokens (takes ids). */
static Job *make_job(Server *s, int kind, const GenOpts *g, const Structured *st, int *ids, int n, const char *param,
                     ApiErr *e) {
    if (n >= s->n_ctx) {
        free(ids);
        api_err(e, 400, "context_length_exceeded", param,
                "This server's context holds %d tokens per request, but the prompt has %d tokens; shorten it "
                "(or start the server with a larger --ctx)",
                s->n_ctx, n);
        return NULL;
    }
    Job *j = job_new();
    if (!j) {
        free(ids);
        api_err(e, 500, NULL, NULL, "out of memory");
        return NULL;
    }
    j->kind = kind;
    j->prompt = ids;
    j->n_prompt = n;
    j->stream = g->stream;
    j->include_usage = g->include_usage;
    j->echo = g->echo;
    j->ignore_eos = g->ignore_eos;
    j->stop_token = kind == KIND_CHAT ? s->sep_token : -1;
    j->logprobs = g->logprobs;
    j->max_tokens = g->max_tokens >= 0 ? g->max_tokens : s->n_ctx;
    /* a reply that fills the context goes on after a context shift when the
     * client asked for a length (without one it ends with the context) */
    j->shift = s->context_shift && g->max_tokens >= 0;
    j->n_keep = g->n_keep == -1 || g->n_keep > n ? n : g->n_keep > 0 ? g->n_keep : 0;
    j->created = (long long)time(NULL);
    SamplerParams sp = g->sp;
    pthread_mutex_lock(&s->mu);
    uint64_t r1 = splitmix(&s->rng), r2 = splitmix(&s->rng);
    pthread_mutex_unlock(&s->mu);
    if (!g->seed_given) sp.seed = r2;
    snprintf(j->id, sizeof j->id, "%s%016llx%08llx", kind == KIND_CHAT ? "chatcmpl-" : "cmpl-", (unsigned long long)r1,
             (unsigned long long)(r2 >> 32));
    Error err = {{0}};
    const char *stops[MAX_STOPS + 1];
    int n_stops = 0;
    for (int i = 0; i < g->n_stops; i++) stops[n_stops++] = g->stops[i];
    /* with a grammar, the grammar ends the reply (tools' plain-text replies still stop at the template's turn) */
    if (kind == KIND_CHAT && (!st->gbnf || st->tool_mode == TOOLS_AUTO)) stops[n_stops++] = chat_stop_string(s->tmpl);
    j->sp = sp;
    if (stop_matcher_init(&j->sm, stops, n_stops, &err)) {
        api_err(e, 500, NULL, NULL, "%s", err.msg);
        job_free(j);
        return NULL;
    }
    j->tool_mode = st->tool_mode;
    if (st->gbnf) {
        int ends[2], n_end = 0;
        if (!g->ignore_eos) ends[n_end++] = s->eos;
        if (j->stop_token >= 0) ends[n_end++] = j->stop_token;
        if (!(j->grammar = grammar_parse(st->gbnf, strlen(st->gbnf), NULL, &err)) ||
            !(j->gm = grammar_matcher_new(j->grammar, s->trie, ends, n_end, &err))) {
            api_err(e, 400, "invalid_grammar", NULL, "%s", err.msg);
            job_free(j);
            return NULL;
        }
    }
    token_decoder_init(&j->dec);
    /* a completion continues its prompt (" is" after "The answer is"); a chat
     * reply starts a message, whose separating space the template owns */
    if (kind == KIND_COMPLETION) token_decoder_after(s->tok, &j->dec, ids, n);
    return j;
}

static const char *const CHAT_FIELDS[] = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "seed",
    "stop", "stream", "stream_options", "presence_penalty", "frequency_penalty", "repeat_penalty", "logprobs",
    "top_logprobs", "n", "user", "ignore_eos", "store", "metadata", "service_tier", "parallel_tool_calls", "response_format",
    "logit_bias", "modalities", "grammar", "tools", "tool_choice", "n_keep", NULL};

static const char *const COMPLETION_FIELDS[] = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stream",
    "stream_options", "presence_penalty", "frequency_penalty", "repeat_penalty", "logprobs", "echo", "n",
    "best_of", "user", "logit_bias", "ignore_eos", "grammar", "n_keep", NULL};

/* Text of one message's content: a string or an array of text parts
 * (malloc'd). */
static char *message_text(const cJSON *content, int mi, ApiErr *e) {
    char p[64];
    if (!content) return strdup("");
    if (cJSON_IsString(content)) return strdup(content->valuestring);
    if (!cJSON_IsArray(content)) {
        snprintf(p, sizeof p, "messages[%d].content", mi);
        api_err(e, 400, "invalid_type", p, "Invalid type for '%s': expected a string or an array of content parts", p);
        return NULL;
    }
    Str b = {0};
    if (str_puts(&b, "")) goto oom;
    int k = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        snprintf(p, sizeof p, "messages[%d].content[%d]", mi, k++);
        cJSON *t = cJSON_IsObject(part) ? field(part, "type") : NULL;
        if (!t || !cJSON_IsString(t)) {
            str_free(&b);
            api_err(e, 400, "invalid_type", p, "Invalid '%s': expected an object with a 'type'", p);
            return NULL;
        }
        if (strcmp(t->valuestring, "text") != 0) {
            str_free(&b);
            api_err(e, 400, "unsupported_content", p, "Invalid '%s': content parts of type '%.40s' are not supported (only 'text')",
                    p, t->valuestring);
            return NULL;
        }
        cJSON *tx = field(part, "text");
        if (!tx || !cJSON_IsString(tx)) {
            str_free(&b);
            api_err(e, 400, "invalid_type", p, "Invalid '%s.text': expected a string", p);
            return NULL;
        }
        if (str_puts(&b, tx->valuestring)) goto oom;
    }
    return b.s;
oom:
    str_free(&b);
    api_err(e, 500, NULL, NULL, "out of memory");
    return NULL;
}

Job *parse_chat(Server *s, const cJSON *root, ApiErr *e) {
    GenOpts g = {0};
    if (check_fields(root, CHAT_FIELDS, e) || check_model(s, root, e)) return NULL;
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!msgs) {
        api_err(e, 400, "missing_required_parameter", "messages", "Missing required parameter: 'messages'");
        return NULL;
    }
    if (!cJSON_IsArray(msgs)) {
        api_err(e, 400, "invalid_type", "messages", "Invalid type for 'messages': expected an array of message objects");
        return NULL;
    }
    const int n = cJSON_GetArraySize(msgs);
    if (n == 0) {
        api_err(e, 400, "invalid_value", "messages", "Invalid 'messages': empty array; expected at least one message");
        return NULL;
    }
    if (parse_gen(s, root, true, &g, e)) return NULL;
    Structured st;
    StructErr se = {0};
    if (structured_parse(root, true, &st, &se)) {
        structured_free(&st);
        api_err(e, se.status, se.code, se.param, "%s", se.msg);
        return NULL;
    }
    /* the tools' description goes first, as a system message */
    ChatMessage *cm = calloc((size_t)n + 1, sizeof *cm);
    char **texts = calloc((size_t)n + 1, sizeof *texts);
    Job *job = NULL;
    char *prompt = NULL;
    int i = 0, base = st.tool_prompt ? 1 : 0;
    if (cm && st.tool_prompt) cm[0].role = "system", cm[0].content = st.tool_prompt;
    if (!cm || !texts) {
        api_err(e, 500, NULL, NULL, "out of memory");
        goto out;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        char p[64];
        snprintf(p, sizeof p, "messages[%d]", i);
        if (!cJSON_IsObject(m)) {
            api_err(e, 400, "invalid_type", p, "Invalid type for '%s': expected an object", p);
            goto out;
        }
        cJSON *role = field(m, "role");
        snprintf(p, sizeof p, "messages[%d].role", i);
        if (!role) {
            api_err(e, 400, "missing_required_parameter", p, "Missing required parameter: '%s'", p);
            goto out;
        }
        if (!cJSON_IsString(role)) {
            api_err(e, 400, "invalid_type", p, "Invalid type for '%s': expected a string", p);
            goto out;
        }
        const char *r = role->valuestring;
        if (!strcmp(r, "developer")) r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool")) {
            api_err(e, 400, !strcmp(r, "function") ? "unsupported_value" : "invalid_value", p,
                    "Invalid '%s': '%.40s' (supported: system, developer, user, assistant, tool)", p, r);
            goto out;
        }
        static const char *const tool_keys[] = {"function_call", "audio", NULL};
        for (const char *const *k = tool_keys; *k; k++)
            if (field(m, *k)) {
                snprintf(p, sizeof p, "messages[%d].%s", i, *k);
                api_err(e, 400, "unsupported_parameter", p, "'%s' is not supported by this server (grok.c) yet", p);
                goto out;
            }
        cJSON *content = field(m, "content");
        if (!content && strcmp(r, "assistant") != 0) {
            snprintf(p, sizeof p, "messages[%d].content", i);
            api_err(e, 400, "missing_required_parameter", p, "Missing required parameter: '%s'", p);
            goto out;
        }
        cJSON *calls = field(m, "tool_calls");
        if (calls && strcmp(r, "assistant") != 0) {
            snprintf(p, sizeof p, "messages[%d].tool_calls", i);
            api_err(e, 400, "invalid_value", p, "Invalid '%s': only assistant messages have tool calls", p);
            goto out;
        }
        if (calls && !content) { /* the call as the model writes it */
            snprintf(p, sizeof p, "messages[%d].tool_calls", i);
            texts[base + i] = structured_tool_calls_text(calls, p, &se);
            if (!texts[base + i]) {
                api_err(e, se.status, se.code, se.param, "%s", se.msg);
                goto out;
            }
        } else if (!(texts[base + i] = message_text(content, i, e))) {
            if (!e->status) api_err(e, 500, NULL, NULL, "out of memory");
            goto out;
        }
        cm[base + i].role = r;
        cm[base + i].content = texts[base + i];
        i++;
    }
    Error err = {{0}};
    /* --context-shift: the leading system messages stay, the oldest turns
     * after them go (a user message and what follows it) until the prompt
     * leaves room for the reply; the cache of the turns kept is reused by a
     * context shift (engine_admit) */
    int ns = 0, nm = n + base, nt = 0, *ids = NULL;
    while (ns < nm && !strcmp(cm[ns].role, "system")) ns++;
    const int reserve = g.max_tokens > 0 && g.max_tokens < s->n_ctx / 2 ? g.max_tokens : s->n_ctx / 4;
    for (;;) {
        free(prompt), free(ids), ids = NULL;
        prompt = chat_format(s->tmpl, cm, nm, true, &err);
        if (!prompt) {
            api_err(e, 400, "invalid_value", "messages", "%s", err.msg);
            goto out;
        }
        nt = tokenizer_encode(s->tok, prompt, strlen(prompt), false, &ids, &err);
        if (nt < 0) {
            api_err(e, 500, NULL, NULL, "%s", err.msg);
            goto out;
        }
        if (!s->context_shift || nt + reserve <= s->n_ctx || nm - ns <= 1) break;
        int k = ns + 1; /* drop the oldest turn: up to the next user message */
        while (k < nm - 1 && strcmp(cm[k].role, "user")) k++;
        if (s->verbose) fprintf(stderr, "grok serve: context shift: dropped %d message(s)\n", k - ns);
        memmove(cm + ns, cm + k, (size_t)(nm - k) * sizeof *cm);
        nm -= k - ns;
    }
    job = make_job(s, KIND_CHAT, &g, &st, ids, nt, "messages", e);
    if (job && g.n_keep == -2 && ns > 0) { /* a context shift keeps the system messages */
        char *sys = chat_format(s->tmpl, cm, ns, false, &err);
        int *sids = NULL, n_sys = sys ? tokenizer_encode(s->tok, sys, strlen(sys), false, &sids, &err) : -1;
        int k = 0;
        while (k < n_sys && k < job->n_prompt && sids[k] == job->prompt[k]) k++;
        job->n_keep = k;
        free(sys), free(sids);
    }
out:
    structured_free(&st);
    if (texts)
        for (int k = 0; k <= n; k++) free(texts[k]);
    free(texts);
    free(cm);
    free(prompt);
    return job;
}

/* A token array (for completions prompts). */
int token_array(Server *s, const cJSON *a, const char *param, int **out, ApiErr *e) {
    int n = cJSON_GetArraySize(a), i = 0;
    int *ids = malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    if (!ids) return api_err(e, 500, NULL, NULL, "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0 ||
            it->valuedouble >= s->n_vocab) {
            free(ids);
            return api_err(e, 400, "invalid_value", param, "Invalid '%s': token ids must be integers in 0..%d", param,
                           s->n_vocab - 1);
        }
        ids[i++] = (int)it->valuedouble;
    }
    *out = ids;
    return n;
}

Job *parse_completion(Server *s, const cJSON *root, ApiErr *e) {
    GenOpts g = {0};
    if (check_fields(root, COMPLETION_FIELDS, e) || check_model(s, root, e)) return NULL;
    cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p || cJSON_IsNull(p)) {
        api_err(e, 400, "missing_required_parameter", "prompt", "Missing required parameter: 'prompt'");
        return NULL;
    }
    if (parse_gen(s, root, false, &g, e)) return NULL;
    /* a string, one-string array, token array or one-token-array array */
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && (cJSON_IsString(p->child) || cJSON_IsArray(p->child)))
        p = p->child;
    else if (cJSON_IsArray(p) && p->child && (cJSON_IsString(p->child) || cJSON_IsArray(p->child))) {
        api_err(e, 400, "unsupported_value", "prompt", "Invalid 'prompt': only one prompt per request is supported");
        return NULL;
    }
    int *ids = NULL, n;
    if (cJSON_IsString(p)) {
        Error err = {{0}};
        n = tokenizer_encode(s->tok, p->valuestring, strlen(p->valuestring), false, &ids, &err);
        if (n < 0) {
            api_err(e, 500, NULL, NULL, "%s", err.msg);
            return NULL;
        }
    } else if (cJSON_IsArray(p)) {
        if ((n = token_array(s, p, "prompt", &ids, e)) < 0) return NULL;
    } else {
        api_err(e, 400, "invalid_type", "prompt", "Invalid type for 'prompt': expected a string or an array of token ids");
        return NULL;
    }
    if (n == 0) { /* start from BOS if there is one */
        int bos = tokenizer_bos(s->tok);
        if (bos < 0) {
            free(ids);
            api_err(e, 400, "invalid_value", "prompt", "Invalid 'prompt': it is empty");
            return NULL;
        }
        ids[0] = bos;
        n = 1;
    }
    Structured st;
    StructErr se = {0};
    if (structured_parse(root, false, &st, &se)) {
        structured_free(&st);
        free(ids);
        api_err(e, se.status, se.code, se.param, "%s", se.msg);
        return NULL;
    }
    Job *j = make_job(s, KIND_COMPLETION, &g, &st, ids, n, "prompt", e);
    structured_free(&st);
    return j;
}

/* ---- response building ------------------------------------------------- */

/* The text of one token for logprobs; bytes that are not UTF-8 by
 * themselves are written "bytes:\xNN". Returns the raw byte count in
 * *raw (the token's bytes, copied to rawbuf). */
void token_text(Server *s, int id, char *out, size_t cap, unsigned char *rawbuf, size_t *raw) {
    size_t len;
    const char *p = tokenizer_piece(s->tok, id, &len);
    size_t o = 0, r = 0;
    out[0] = 0;
    *raw = 0;
    if (!p) return;
    unsigned v;
    if (tokenizer_type(s->tok, id) == TOKEN_BYTE && len == 6 && sscanf(p, "<0x%2X>", &v) == 1) {
        rawbuf[r++] = (unsigned char)v;
        if (v < 0x80 && v > 0) snprintf(out, cap, "%c", (char)v);
        else snprintf(out, cap, "bytes:\\x%02x", v);
        *raw = r;
        return;
    }
    for (size_t i = 0; i < len && o + 4 < cap && r + 4 < 256; i++) {
        if (i + 2 < len && (unsigned char)p[i] == 0xE2 && (unsigned char)p[i + 1] == 0x96 &&
            (unsigned char)p[i + 2] == 0x81) {
            out[o++] = ' ';
            rawbuf[r++] = ' ';
            i += 2;
        } else {
            out[o++] = p[i];
            rawbuf[r++] = (unsigned char)p[i];
        }
    }
    out[o] = 0;
    *raw = r;
}

static cJSON *lp_item(Server *s, int id, float lp) {
    char t[256];
    unsigned char raw[256];
    size_t n;
    token_text(s, id, t, sizeof t, raw, &n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "token", t);
    cJSON_AddNumberToObject(o, "logprob", lp);
    cJSON *b = cJSON_AddArrayToObject(o, "bytes");
    for (size_t i = 0; i < n && b; i++) cJSON_AddItemToArray(b, cJSON_CreateNumber(raw[i]));
    return o;
}

/* Chat logprobs {"content": [...]} for entries [from, to). */
static cJSON *chat_logprobs(Server *s, const TokLP *lps, int from, int to) {
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "content");
    for (int i = from; i < to && arr; i++) {
        cJSON *it = lp_item(s, lps[i].id, lps[i].lp), *top = cJSON_AddArrayToObject(it, "top_logprobs");
        for (int k = 0; k < lps[i].n_top && top; k++) cJSON_AddItemToArray(top, lp_item(s, lps[i].top_id[k], lps[i].top_lp[k]));
        cJSON_AddItemToArray(arr, it);
    }
    cJSON_AddNullToObject(o, "refusal");
    return o;
}

/* Legacy completions logprobs for entries [from, to); offsets start at off0
 * and count each token's bytes (*end: the offset after the last; may be
 * NULL). */
static cJSON *completion_logprobs(Server *s, const TokLP *lps, int from, int to, size_t off0, size_t *end) {
    cJSON *o = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens"), *tlp = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs"), *off = cJSON_AddArrayToObject(o, "text_offset");
    size_t pos = off0;
    for (int i = from; i < to && toks && tlp && top && off; i++) {
        char t[256];
        unsigned char raw[256];
        size_t n;
        token_text(s, lps[i].id, t, sizeof t, raw, &n);
        cJSON_AddItemToArray(toks, cJSON_CreateString(t));
        cJSON_AddItemToArray(tlp, cJSON_CreateNumber(lps[i].lp));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)pos));
        pos += n;
        cJSON *alt = cJSON_CreateObject();
        for (int k = 0; k < lps[i].n_top; k++) {
            token_text(s, lps[i].top_id[k], t, sizeof t, raw, &n);
            if (!cJSON_GetObjectItemCaseSensitive(alt, t)) cJSON_AddNumberToObject(alt, t, lps[i].top_lp[k]);
        }
        cJSON_AddItemToArray(top, alt);
    }
    if (end) *end = pos;
    return o;
}

static cJSON *usage_json(const Job *j) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", j->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", j->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", j->n_prompt + j->completion_tokens);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    if (d) cJSON_AddNumberToObject(d, "cached_tokens", j->cached_tokens);
    return u;
}

static cJSON *response_head(Server *s, const Job *j, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON_AddStringToObject(o, "model", s->model_id);
    cJSON_AddStringToObject(o, "system_fingerprint", s->fingerprint);
    return o;
}

/* grok.c's extension on a reply that went on past the context: how many
 * context shifts it took and how many tokens they discarded. */
static void add_context_shift(cJSON *o, const Job *j) {
    if (j->n_shifts == 0) return;
    cJSON *cs = cJSON_AddObjectToObject(o, "context_shift");
    if (!cs) return;
    cJSON_AddNumberToObject(cs, "shifts", j->n_shifts);
    cJSON_AddNumberToObject(cs, "discarded_tokens", j->n_discarded);
    cJSON_AddNumberToObject(cs, "kept_tokens", j->n_keep);
}

/* The whole (non-streaming) response of a finished job (under mu). */
cJSON *final_response(Server *s, const Job *j) {
    const bool chat = j->kind == KIND_CHAT;
    cJSON *o = response_head(s, j, chat ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    char *echo = NULL;
    bool tool_calls = false;
    if (chat) {
        cJSON *msg = cJSON_AddObjectToObject(c, "message");
        uint64_t r = (uint64_t)j->created ^ (uint64_t)(uintptr_t)j;
        cJSON *calls = j->tool_mode && j->text.s ? structured_reply_tool_calls(j->text.s, &r) : NULL;
        if (msg) {
            cJSON_AddStringToObject(msg, "role", "assistant");
            if (calls) cJSON_AddNullToObject(msg, "content");
            else cJSON_AddStringToObject(msg, "content", j->text.s ? j->text.s : "");
            cJSON_AddNullToObject(msg, "refusal");
            if (calls) cJSON_AddItemToObject(msg, "tool_calls", calls);
            else cJSON_Delete(calls);
            if (calls) tool_calls = true;
        } else cJSON_Delete(calls);
    } else {
        if (j->echo) echo = tokenizer_decode(s->tok, j->prompt, j->n_prompt);
        Str t = {0};
        int bad = str_puts(&t, echo ? echo : "") || str_puts(&t, j->text.s ? j->text.s : "");
        cJSON_AddStringToObject(c, "text", bad ? "" : t.s);
        str_free(&t);
    }
    if (j->logprobs >= 0)
        cJSON_AddItemToObject(c, "logprobs",
                              chat ? chat_logprobs(s, j->lps, 0, j->n_lps)
                                   : completion_logprobs(s, j->lps, 0, j->n_lps, echo ? strlen(echo) : 0, NULL));
    else cJSON_AddNullToObject(c, "logprobs");
    free(echo);
    cJSON_AddStringToObject(c, "finish_reason", tool_calls ? "tool_calls" : j->finish ? j->finish : "stop");
    cJSON_AddItemToArray(choices, c);
    cJSON_AddItemToObject(o, "usage", usage_json(j));
    add_context_shift(o, j);
    return o;
}

/* ---- streaming --------------------------------------------------------- */


static int sse_put(Stream *st, cJSON *o) {
    char *t = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!t) return -1;
    int r = str_puts(&st->out, "data: ") || str_puts(&st->out, t) || str_puts(&st->out, "\n\n");
    free(t);
    return r ? -1 : 0;
}

static cJSON *chunk_new(Stream *st, cJSON **choice) {
    const Job *j = st->job;
    const bool chat = j->kind == KIND_CHAT;
    cJSON *o = response_head(st->s, j, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    *choice = cJSON_CreateObject();
    cJSON_AddNumberToObject(*choice, "index", 0);
    cJSON_AddItemToArray(choices, *choice);
    if (j->include_usage) cJSON_AddNullToObject(o, "usage");
    return o;
}

/* Turns what the job has produced since the last call into SSE chunks
 * (under mu). */
/* The Responses API's events for what the job has produced (under mu). */
static int stream_fill_responses(Stream *st) {
    Job *j = st->job;
    Server *s = st->s;
    RespView v = {s->model_id,         j->text.s ? j->text.s : "", j->text.len, j->state == JOB_DONE, j->finish,
                  j->error[0] ? j->error : NULL, j->n_prompt, j->cached_tokens, j->completion_tokens};
    size_t n = 0;
    bool oom, fin;
    char *b = responses_stream(s->rstore, j->resp, &v, &n, &oom, &fin);
    int r = oom || (b && n && str_put(&st->out, b, n)) ? -1 : 0;
    free(b);
    if (fin) st->finished = true;
    return r;
}

static int stream_fill(Stream *st) {
    Job *j = st->job;
    Server *s = st->s;
    if (j->resp) return stream_fill_responses(st);
    const bool chat = j->kind == KIND_CHAT;
    cJSON *c;
    if (!st->started) {
        st->started = true;
        if (chat) {
            cJSON *o = chunk_new(st, &c), *d = cJSON_AddObjectToObject(c, "delta");
            if (d) {
                cJSON_AddStringToObject(d, "role", "assistant");
                cJSON_AddStringToObject(d, "content", "");
            }
            cJSON_AddNullToObject(c, "logprobs");
            cJSON_AddNullToObject(c, "finish_reason");
            if (sse_put(st, o)) return -1;
        }
    }
    /* a reply that is (or may still become) a tool call is held back until it is complete */
    const bool hold = chat && j->tool_mode && structured_text_kind(j->text.s ? j->text.s : "", j->text.len) != 0;
    bool tool_calls = false;
    if (hold && j->state == JOB_DONE && !st->finished && !j->error[0]) {
        uint64_t r = (uint64_t)j->created ^ (uint64_t)(uintptr_t)j;
        cJSON *calls = j->text.s ? structured_reply_tool_calls(j->text.s, &r) : NULL;
        if (calls) { /* all calls in one chunk, as xAI sends them */
            cJSON *o = chunk_new(st, &c), *d = cJSON_AddObjectToObject(c, "delta");
            int idx = 0;
            for (cJSON *tc = calls->child; tc; tc = tc->next) cJSON_AddNumberToObject(tc, "index", idx++);
            if (d) cJSON_AddItemToObject(d, "tool_calls", calls);
            else cJSON_Delete(calls);
            cJSON_AddNullToObject(c, "logprobs");
            cJSON_AddNullToObject(c, "finish_reason");
            if (sse_put(st, o)) return -1;
            st->text_sent = j->text.len;
            st->lps_sent = j->n_lps;
            tool_calls = true;
        }
    }
    const bool new_text = j->text.len > st->text_sent && (!hold || j->state == JOB_DONE),
               new_lp = j->n_lps > st->lps_sent && (!hold || j->state == JOB_DONE);
    if (new_text || new_lp) {
        cJSON *o = chunk_new(st, &c);
        const char *txt = j->text.s ? j->text.s + st->text_sent : "";
        if (chat) {
            cJSON *d = cJSON_AddObjectToObject(c, "delta");
            if (d) cJSON_AddStringToObject(d, "content", txt);
        } else {
            cJSON_AddStringToObject(c, "text", txt);
        }
        if (j->logprobs >= 0)
            cJSON_AddItemToObject(c, "logprobs",
                                  chat ? chat_logprobs(s, j->lps, st->lps_sent, j->n_lps)
                                       : completion_logprobs(s, j->lps, st->lps_sent, j->n_lps, st->lp_off, &st->lp_off));
        else cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddNullToObject(c, "finish_reason");
        st->text_sent = j->text.len;
        st->lps_sent = j->n_lps;
        if (sse_put(st, o)) return -1;
    }
    if (j->state == JOB_DONE && !st->finished) {
        st->finished = true;
        if (j->error[0]) {
            ApiErr e;
            api_err(&e, strcmp(j->error, SHUTDOWN_MSG) ? 500 : 503, NULL, NULL, "%s", j->error);
            if (sse_put(st, error_json(&e))) return -1;
        } else {
            cJSON *o = chunk_new(st, &c);
            if (chat) cJSON_AddObjectToObject(c, "delta");
            else cJSON_AddStringToObject(c, "text", "");
            cJSON_AddNullToObject(c, "logprobs");
            cJSON_AddStringToObject(c, "finish_reason", tool_calls ? "tool_calls" : j->finish ? j->finish : "stop");
            add_context_shift(o, j);
            if (sse_put(st, o)) return -1;
            if (j->include_usage) {
                o = response_head(s, j, chat ? "chat.completion.chunk" : "text_completion");
                cJSON_AddArrayToObject(o, "choices");
                cJSON_AddItemToObject(o, "usage", usage_json(j));
                if (sse_put(st, o)) return -1;
            }
        }
        if (str_puts(&st->out, "data: [DONE]\n\n")) return -1;
    }
    return 0;
}

ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    Stream *st = cls;
    Server *s = st->s;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (st->out_off < st->out.len) {
            size_t n = st->out.len - st->out_off;
            if (n > max) n = max;
            memcpy(buf, st->out.s + st->out_off, n);
            st->out_off += n;
            if (st->out_off == st->out.len) st->out.len = st->out_off = 0;
            pthread_mutex_unlock(&s->mu);
            return (ssize_t)n;
        }
        if (st->finished) {
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (stream_fill(st)) { /* out of memory */
            job_cancel(s, st->job);
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (st->finished && st->conn && s->timeout_s) /* the rest is up to the client: idle timeout again */
            MHD_set_connection_option(st->conn, MHD_CONNECTION_OPTION_TIMEOUT, s->timeout_s);
        if (st->out.len) continue;
        const int ps = peer_state(st->fd);
        if (ps == PEER_GONE) {
            job_cancel(s, st->job);
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (ps == PEER_EOF && !st->probed) {
            /* gone, or half-closed and still reading? An SSE comment tells:
             * a closed socket answers it with a reset (PEER_GONE next time) */
            st->probed = true;
            if (str_puts(&st->out, ": keep-alive\n\n")) {
                job_cancel(s, st->job);
                pthread_mutex_unlock(&s->mu);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            continue;
        }
        struct timespec ts;
        abs_deadline(&ts, WAIT_POLL_MS);
        pthread_cond_timedwait(&st->job->cond, &s->mu, &ts);
    }
}

void stream_free(void *cls) {
    Stream *st = cls;
    Server *s = st->s;
    pthread_mutex_lock(&s->mu);
    job_cancel(s, st->job); /* no-op when done */
    job_unref(st->job);
    pthread_mutex_unlock(&s->mu);
    str_free(&st->out);
    free(st);
}
