/* responses.c - see responses.h. */
#include "responses.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

/* ---- the store ------------------------------------------------------------ */

typedef struct Entry {
    char id[64];
    double t;              /* time_now() when stored */
    cJSON *response;       /* the Response object */
    cJSON *messages;       /* the conversation (chat messages, no instructions) */
    size_t bytes;
    struct Entry *next;    /* oldest first */
} Entry;

struct ResponseStore {
    pthread_mutex_t mu;
    Entry *head, *tail;
    int count;
    size_t bytes;
};

ResponseStore *response_store_new(void) {
    ResponseStore *rs = calloc(1, sizeof *rs);
    if (rs && pthread_mutex_init(&rs->mu, NULL)) {
        free(rs);
        return NULL;
    }
    return rs;
}

static void entry_free(Entry *e) {
    cJSON_Delete(e->response);
    cJSON_Delete(e->messages);
    free(e);
}

void response_store_free(ResponseStore *rs) {
    if (!rs) return;
    for (Entry *e = rs->head, *n; e; e = n) n = e->next, entry_free(e);
    pthread_mutex_destroy(&rs->mu);
    free(rs);
}

/* Drops expired entries, and the oldest while over the limits (under mu). */
static void evict(ResponseStore *rs, size_t incoming) {
    const double now = time_now();
    while (rs->head && (now - rs->head->t > RESPONSES_MAX_AGE_S || rs->count + 1 > RESPONSES_MAX_STORED ||
                        rs->bytes + incoming > RESPONSES_MAX_BYTES)) {
        Entry *e = rs->head;
        rs->head = e->next;
        if (!rs->head) rs->tail = NULL;
        rs->count--;
        rs->bytes -= e->bytes;
        entry_free(e);
    }
}

static Entry *find(ResponseStore *rs, const char *id, Entry **prev) {
    Entry *p = NULL;
    for (Entry *e = rs->head; e; p = e, e = e->next)
        if (!strcmp(e->id, id)) {
            if (prev) *prev = p;
            return e;
        }
    return NULL;
}

cJSON *response_store_get(ResponseStore *rs, const char *id) {
    pthread_mutex_lock(&rs->mu);
    evict(rs, 0);
    Entry *e = find(rs, id, NULL);
    cJSON *r = e ? cJSON_Duplicate(e->response, 1) : NULL;
    pthread_mutex_unlock(&rs->mu);
    return r;
}

/* A copy of the stored conversation (NULL if unknown; *found tells). */
static cJSON *store_messages(ResponseStore *rs, const char *id, bool *found) {
    pthread_mutex_lock(&rs->mu);
    evict(rs, 0);
    Entry *e = find(rs, id, NULL);
    *found = e != NULL;
    cJSON *m = e ? cJSON_Duplicate(e->messages, 1) : NULL;
    pthread_mutex_unlock(&rs->mu);
    return m;
}

bool response_store_delete(ResponseStore *rs, const char *id) {
    pthread_mutex_lock(&rs->mu);
    Entry *prev = NULL, *e = find(rs, id, &prev);
    if (e) {
        if (prev) prev->next = e->next;
        else rs->head = e->next;
        if (rs->tail == e) rs->tail = prev;
        rs->count--;
        rs->bytes -= e->bytes;
        entry_free(e);
    }
    pthread_mutex_unlock(&rs->mu);
    return e != NULL;
}

int response_store_count(ResponseStore *rs) {
    pthread_mutex_lock(&rs->mu);
    evict(rs, 0);
    int n = rs->count;
    pthread_mutex_unlock(&rs->mu);
    return n;
}

/* Takes response and messages. */
static void store_put(ResponseStore *rs, const char *id, cJSON *response, cJSON *messages) {
    char *a = cJSON_PrintUnformatted(response), *b = cJSON_PrintUnformatted(messages);
    size_t bytes = (a ? strlen(a) : 0) + (b ? strlen(b) : 0) + sizeof(Entry);
    free(a);
    free(b);
    Entry *e = calloc(1, sizeof *e);
    if (!e || bytes > RESPONSES_MAX_BYTES) {
        free(e);
        cJSON_Delete(response);
        cJSON_Delete(messages);
        return;
    }
    snprintf(e->id, sizeof e->id, "%s", id);
    e->t = time_now();
    e->response = response;
    e->messages = messages;
    e->bytes = bytes;
    pthread_mutex_lock(&rs->mu);
    evict(rs, bytes);
    if (rs->tail) rs->tail->next = e;
    else rs->head = e;
    rs->tail = e;
    rs->count++;
    rs->bytes += bytes;
    pthread_mutex_unlock(&rs->mu);
}

/* ---- request translation -------------------------------------------------- */

struct RespCtx {
    char id[48], msg_id[48];
    long long created;
    uint64_t rng;
    bool store, has_tools, stream;
    cJSON *echo;      /* request settings echoed in the Response object */
    cJSON *messages;  /* the conversation sent to the model (no instructions) */
    cJSON *out, *assistant; /* the final output items and stored assistant message, made once */
    /* streaming state */
    int seq;
    bool started, item_open, finished;
    size_t text_sent;
};

void resp_ctx_free(RespCtx *c) {
    if (!c) return;
    cJSON_Delete(c->echo);
    cJSON_Delete(c->messages);
    cJSON_Delete(c->out);
    cJSON_Delete(c->assistant);
    free(c);
}

static uint64_t mix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static cJSON *get(const cJSON *o, const char *k) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static const char *const FIELDS[] = {"model", "input", "instructions", "max_output_tokens", "temperature", "top_p",
                                     "tools", "tool_choice", "parallel_tool_calls", "text", "store",
                                     "previous_response_id", "stream", "metadata", "user", "seed", "top_k", "min_p",
                                     "truncation", "include", "service_tier", NULL};

/* Text of a content field: a string or input_text / output_text parts. */
static char *content_text(const cJSON *c, const char *param, StructErr *e) {
    if (cJSON_IsString(c)) return strdup(c->valuestring);
    if (!cJSON_IsArray(c)) return st_err(e, 400, "invalid_type", param, "Invalid type for '%s': expected a string or an array of parts", param), NULL;
    size_t n = 1;
    const cJSON *p;
    cJSON_ArrayForEach(p, c) {
        const cJSON *t = cJSON_IsObject(p) ? get(p, "type") : NULL, *tx = cJSON_IsObject(p) ? get(p, "text") : NULL;
        if (!t || !cJSON_IsString(t) || (strcmp(t->valuestring, "input_text") && strcmp(t->valuestring, "output_text") &&
                                         strcmp(t->valuestring, "text")))
            return st_err(e, 400, "unsupported_content", param,
                          "Invalid '%s': only parts of type input_text / output_text are supported", param), NULL;
        if (!tx || !cJSON_IsString(tx))
            return st_err(e, 400, "invalid_type", param, "Invalid '%s': a text part needs a 'text' string", param), NULL;
        n += strlen(tx->valuestring);
    }
    char *s = malloc(n);
    if (!s) return st_err(e, 500, NULL, NULL, "out of memory"), NULL;
    s[0] = 0;
    cJSON_ArrayForEach(p, c) strcat(s, get(p, "text")->valuestring);
    return s;
}

/* Appends input items to messages (chat format). */
static int add_input(cJSON *messages, const cJSON *input, StructErr *e) {
    if (cJSON_IsString(input)) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", input->valuestring);
        cJSON_AddItemToArray(messages, m);
        return 0;
    }
    if (!cJSON_IsArray(input))
        return st_err(e, 400, "invalid_type", "input", "Invalid type for 'input': expected a string or an array of items");
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, input) {
        char p[64];
        snprintf(p, sizeof p, "input[%d]", i++);
        if (!cJSON_IsObject(it)) return st_err(e, 400, "invalid_type", p, "Invalid type for '%s': expected an object", p);
        const cJSON *ty = get(it, "type"), *role = get(it, "role");
        const char *t = ty && cJSON_IsString(ty) ? ty->valuestring : role ? "message" : "";
        if (!strcmp(t, "message")) {
            if (!role || !cJSON_IsString(role))
                return st_err(e, 400, "missing_required_parameter", p, "Missing required parameter: '%s.role'", p);
            const char *r = role->valuestring;
            if (strcmp(r, "user") && strcmp(r, "system") && strcmp(r, "developer") && strcmp(r, "assistant"))
                return st_err(e, 400, "invalid_value", p, "Invalid '%s.role': '%.40s' (user, system, developer, assistant)", p, r);
            const cJSON *c = get(it, "content");
            if (!c) return st_err(e, 400, "missing_required_parameter", p, "Missing required parameter: '%s.content'", p);
            char pc[80];
            snprintf(pc, sizeof pc, "%s.content", p);
            char *txt = content_text(c, pc, e);
            if (!txt) return -1;
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", r);
            cJSON_AddStringToObject(m, "content", txt);
            free(txt);
            cJSON_AddItemToArray(messages, m);
        } else if (!strcmp(t, "function_call")) {
            const cJSON *cid = get(it, "call_id"), *nm = get(it, "name"), *args = get(it, "arguments");
            if (!cid || !cJSON_IsString(cid) || !nm || !cJSON_IsString(nm) || !args || !cJSON_IsString(args))
                return st_err(e, 400, "invalid_value", p, "Invalid '%s': a function_call needs call_id, name and arguments strings", p);
            cJSON *last = cJSON_GetArrayItem(messages, cJSON_GetArraySize(messages) - 1), *calls;
            if (!(last && (calls = get(last, "tool_calls")))) {
                last = cJSON_CreateObject();
                cJSON_AddStringToObject(last, "role", "assistant");
                calls = cJSON_AddArrayToObject(last, "tool_calls");
                cJSON_AddItemToArray(messages, last);
            }
            cJSON *tc = cJSON_CreateObject(), *fn;
            cJSON_AddStringToObject(tc, "id", cid->valuestring);
            cJSON_AddStringToObject(tc, "type", "function");
            fn = cJSON_AddObjectToObject(tc, "function");
            if (fn) {
                cJSON_AddStringToObject(fn, "name", nm->valuestring);
                cJSON_AddStringToObject(fn, "arguments", args->valuestring);
            }
            cJSON_AddItemToArray(calls, tc);
        } else if (!strcmp(t, "function_call_output")) {
            const cJSON *cid = get(it, "call_id"), *out = get(it, "output");
            if (!cid || !cJSON_IsString(cid) || !out || !cJSON_IsString(out))
                return st_err(e, 400, "invalid_value", p, "Invalid '%s': a function_call_output needs call_id and output strings", p);
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", "tool");
            cJSON_AddStringToObject(m, "tool_call_id", cid->valuestring);
            cJSON_AddStringToObject(m, "content", out->valuestring);
            cJSON_AddItemToArray(messages, m);
        } else {
            return st_err(e, 400, "unsupported_value", p, "Invalid '%s': items of type '%.40s' are not supported "
                          "(message, function_call, function_call_output)", p, t);
        }
    }
    return 0;
}

cJSON *responses_to_chat(const cJSON *req, ResponseStore *rs, uint64_t seed, RespCtx **out, StructErr *e) {
    *out = NULL;
    for (const cJSON *it = req->child; it; it = it->next) {
        bool ok = false;
        for (const char *const *k = FIELDS; *k && !ok; k++) ok = !strcmp(*k, it->string);
        if (!ok) return st_err(e, 400, "unknown_parameter", it->string, "Unrecognized request argument supplied: %s", it->string), NULL;
    }
    const cJSON *input = get(req, "input");
    if (!input) return st_err(e, 400, "missing_required_parameter", "input", "Missing required parameter: 'input'"), NULL;
    const cJSON *mot = get(req, "max_output_tokens");
    if (mot && (!cJSON_IsNumber(mot) || mot->valuedouble < 16 || mot->valuedouble != (double)(long long)mot->valuedouble))
        return st_err(e, 400, "invalid_value", "max_output_tokens",
                      "Invalid 'max_output_tokens': expected an integer of at least 16"), NULL;
    const cJSON *tr = get(req, "truncation");
    if (tr && !(cJSON_IsString(tr) && !strcmp(tr->valuestring, "disabled")))
        return st_err(e, 400, "unsupported_value", "truncation", "Invalid 'truncation': only \"disabled\" is supported"), NULL;
    const cJSON *inc = get(req, "include");
    if (inc && !(cJSON_IsArray(inc) && !inc->child))
        return st_err(e, 400, "unsupported_value", "include", "Invalid 'include': nothing extra can be included"), NULL;
    const cJSON *ins = get(req, "instructions");
    if (ins && !cJSON_IsString(ins)) return st_err(e, 400, "invalid_type", "instructions", "Invalid type for 'instructions': expected a string"), NULL;
    const cJSON *store = get(req, "store");
    if (store && !cJSON_IsBool(store)) return st_err(e, 400, "invalid_type", "store", "Invalid type for 'store': expected a boolean"), NULL;
    const cJSON *prev = get(req, "previous_response_id");
    if (prev && !cJSON_IsString(prev))
        return st_err(e, 400, "invalid_type", "previous_response_id", "Invalid type for 'previous_response_id': expected a string"), NULL;
    const cJSON *md = get(req, "metadata");
    if (md && !cJSON_IsObject(md)) return st_err(e, 400, "invalid_type", "metadata", "Invalid type for 'metadata': expected an object"), NULL;

    RespCtx *c = calloc(1, sizeof *c);
    cJSON *chat = cJSON_CreateObject(), *messages = cJSON_CreateArray(), *conv = NULL;
    if (!c || !chat || !messages) goto oom;
    c->rng = seed;
    snprintf(c->id, sizeof c->id, "resp_%016llx%08llx", (unsigned long long)mix(&c->rng), (unsigned long long)(mix(&c->rng) >> 32));
    snprintf(c->msg_id, sizeof c->msg_id, "msg_%016llx", (unsigned long long)mix(&c->rng));
    c->created = (long long)time(NULL);
    c->store = !store || cJSON_IsTrue(store);
    const cJSON *st = get(req, "stream");
    c->stream = st && cJSON_IsTrue(st);
    if (prev) {
        bool found;
        conv = store_messages(rs, prev->valuestring, &found);
        if (!found) {
            st_err(e, 400, "previous_response_not_found", "previous_response_id",
                   "Previous response with id '%.100s' not found (it may have expired or been deleted)", prev->valuestring);
            goto fail;
        }
    } else conv = cJSON_CreateArray();
    if (!conv) goto oom;
    if (add_input(conv, input, e)) goto fail;
    /* the chat request */
    if (ins) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", ins->valuestring);
        cJSON_AddItemToArray(messages, m);
    }
    for (const cJSON *m = conv->child; m; m = m->next) cJSON_AddItemToArray(messages, cJSON_Duplicate(m, 1));
    cJSON_AddItemToObject(chat, "messages", messages);
    messages = NULL;
    static const char *const pass[] = {"model", "temperature", "top_p", "seed", "top_k", "min_p", "user", "stream",
                                       "parallel_tool_calls", NULL};
    for (const char *const *k = pass; *k; k++) {
        const cJSON *v = get(req, *k);
        if (v) cJSON_AddItemToObject(chat, *k, cJSON_Duplicate(v, 1));
    }
    if (mot) cJSON_AddNumberToObject(chat, "max_tokens", mot->valuedouble);
    const cJSON *tools = get(req, "tools");
    if (tools) {
        if (!cJSON_IsArray(tools)) {
            st_err(e, 400, "invalid_type", "tools", "Invalid type for 'tools': expected an array");
            goto fail;
        }
        cJSON *ct = cJSON_AddArrayToObject(chat, "tools");
        int i = 0;
        const cJSON *t;
        cJSON_ArrayForEach(t, tools) {
            char p[48];
            snprintf(p, sizeof p, "tools[%d]", i++);
            const cJSON *ty = cJSON_IsObject(t) ? get(t, "type") : NULL;
            if (!ty || !cJSON_IsString(ty) || strcmp(ty->valuestring, "function")) {
                st_err(e, 400, "unsupported_value", p, "Invalid '%s': only tools of type 'function' are supported", p);
                goto fail;
            }
            cJSON *w = cJSON_CreateObject(), *fn = cJSON_CreateObject();
            cJSON_AddStringToObject(w, "type", "function");
            for (const cJSON *k = t->child; k; k = k->next)
                if (strcmp(k->string, "type")) cJSON_AddItemToObject(fn, k->string, cJSON_Duplicate(k, 1));
            cJSON_AddItemToObject(w, "function", fn);
            cJSON_AddItemToArray(ct, w);
        }
        c->has_tools = i > 0;
    }
    const cJSON *tc = get(req, "tool_choice");
    if (tc) {
        if (cJSON_IsObject(tc)) {
            const cJSON *nm = get(tc, "name"), *ty = get(tc, "type");
            if (!ty || !cJSON_IsString(ty) || strcmp(ty->valuestring, "function") || !nm || !cJSON_IsString(nm)) {
                st_err(e, 400, "invalid_value", "tool_choice", "Invalid 'tool_choice': expected {\"type\": \"function\", \"name\": ...}");
                goto fail;
            }
            cJSON *w = cJSON_CreateObject(), *fn;
            cJSON_AddStringToObject(w, "type", "function");
            fn = cJSON_AddObjectToObject(w, "function");
            if (fn) cJSON_AddStringToObject(fn, "name", nm->valuestring);
            cJSON_AddItemToObject(chat, "tool_choice", w);
        } else {
            cJSON_AddItemToObject(chat, "tool_choice", cJSON_Duplicate(tc, 1));
            if (cJSON_IsString(tc) && !strcmp(tc->valuestring, "none")) c->has_tools = false;
        }
    }
    const cJSON *text = get(req, "text");
    if (text) {
        if (!cJSON_IsObject(text)) {
            st_err(e, 400, "invalid_type", "text", "Invalid type for 'text': expected an object");
            goto fail;
        }
        for (const cJSON *k = text->child; k; k = k->next)
            if (strcmp(k->string, "format") && strcmp(k->string, "verbosity")) {
                st_err(e, 400, "unknown_parameter", "text", "Unrecognized argument in 'text': %.60s", k->string);
                goto fail;
            }
        const cJSON *f = get(text, "format");
        const cJSON *ft = f && cJSON_IsObject(f) ? get(f, "type") : NULL;
        if (f && (!ft || !cJSON_IsString(ft))) {
            st_err(e, 400, "invalid_value", "text.format", "Invalid 'text.format': expected an object with a 'type'");
            goto fail;
        }
        if (ft && !strcmp(ft->valuestring, "json_schema")) {
            cJSON *rf = cJSON_CreateObject(), *js;
            cJSON_AddStringToObject(rf, "type", "json_schema");
            js = cJSON_AddObjectToObject(rf, "json_schema");
            for (const cJSON *k = f->child; js && k; k = k->next)
                if (strcmp(k->string, "type")) cJSON_AddItemToObject(js, k->string, cJSON_Duplicate(k, 1));
            cJSON_AddItemToObject(chat, "response_format", rf);
        } else if (ft) {
            cJSON *rf = cJSON_CreateObject();
            cJSON_AddStringToObject(rf, "type", ft->valuestring);
            cJSON_AddItemToObject(chat, "response_format", rf);
        }
    }
    /* settings echoed in the Response object */
    c->echo = cJSON_CreateObject();
    if (!c->echo) goto oom;
    cJSON_AddItemToObject(c->echo, "instructions", ins ? cJSON_Duplicate(ins, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(c->echo, "max_output_tokens", mot ? cJSON_Duplicate(mot, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(c->echo, "metadata", md ? cJSON_Duplicate(md, 1) : cJSON_CreateObject());
    const cJSON *ptc = get(req, "parallel_tool_calls");
    cJSON_AddBoolToObject(c->echo, "parallel_tool_calls", !ptc || cJSON_IsTrue(ptc));
    cJSON_AddItemToObject(c->echo, "previous_response_id", prev ? cJSON_Duplicate(prev, 1) : cJSON_CreateNull());
    cJSON_AddBoolToObject(c->echo, "store", c->store);
    const cJSON *temp = get(req, "temperature"), *tp = get(req, "top_p");
    cJSON_AddNumberToObject(c->echo, "temperature", temp && cJSON_IsNumber(temp) ? temp->valuedouble : 0.8);
    cJSON_AddNumberToObject(c->echo, "top_p", tp && cJSON_IsNumber(tp) ? tp->valuedouble : 0.95);
    cJSON *txt = cJSON_CreateObject();
    if (text && get(text, "format")) cJSON_AddItemToObject(txt, "format", cJSON_Duplicate(get(text, "format"), 1));
    else {
        cJSON *fm = cJSON_AddObjectToObject(txt, "format");
        if (fm) cJSON_AddStringToObject(fm, "type", "text");
    }
    cJSON_AddItemToObject(c->echo, "text", txt);
    cJSON_AddItemToObject(c->echo, "tool_choice", tc ? cJSON_Duplicate(tc, 1) : cJSON_CreateString("auto"));
    cJSON_AddItemToObject(c->echo, "tools", tools ? cJSON_Duplicate(tools, 1) : cJSON_CreateArray());
    cJSON_AddStringToObject(c->echo, "truncation", "disabled");
    cJSON_AddItemToObject(c->echo, "user", get(req, "user") ? cJSON_Duplicate(get(req, "user"), 1) : cJSON_CreateNull());
    c->messages = conv;
    *out = c;
    return chat;
oom:
    st_err(e, 500, NULL, NULL, "out of memory");
fail:
    cJSON_Delete(chat);
    cJSON_Delete(messages);
    cJSON_Delete(conv);
    resp_ctx_free(c);
    return NULL;
}

/* ---- results ----------------------------------------------------------------- */

static cJSON *usage(const RespView *v) {
    cJSON *u = cJSON_CreateObject(), *d;
    cJSON_AddNumberToObject(u, "input_tokens", v->input_tokens);
    d = cJSON_AddObjectToObject(u, "input_tokens_details");
    if (d) cJSON_AddNumberToObject(d, "cached_tokens", v->cached_tokens);
    cJSON_AddNumberToObject(u, "output_tokens", v->output_tokens);
    d = cJSON_AddObjectToObject(u, "output_tokens_details");
    if (d) cJSON_AddNumberToObject(d, "reasoning_tokens", 0);
    cJSON_AddNumberToObject(u, "total_tokens", v->input_tokens + v->output_tokens);
    return u;
}

/* The Response object with the given status and output (taken). */
static cJSON *response_obj(const RespCtx *c, const RespView *v, const char *status, cJSON *output, bool with_usage) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddStringToObject(o, "object", "response");
    cJSON_AddNumberToObject(o, "created_at", (double)c->created);
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddNullToObject(o, "error");
    if (!strcmp(status, "incomplete")) {
        cJSON *d = cJSON_AddObjectToObject(o, "incomplete_details");
        if (d) cJSON_AddStringToObject(d, "reason", "max_output_tokens");
    } else cJSON_AddNullToObject(o, "incomplete_details");
    cJSON_AddStringToObject(o, "model", v->model);
    cJSON_AddItemToObject(o, "output", output ? output : cJSON_CreateArray());
    for (const cJSON *k = c->echo ? c->echo->child : NULL; k; k = k->next)
        cJSON_AddItemToObject(o, k->string, cJSON_Duplicate(k, 1));
    if (with_usage) cJSON_AddItemToObject(o, "usage", usage(v));
    else cJSON_AddNullToObject(o, "usage");
    return o;
}

static cJSON *message_item(const RespCtx *c, const char *text, const char *status) {
    cJSON *it = cJSON_CreateObject(), *content, *part;
    cJSON_AddStringToObject(it, "id", c->msg_id);
    cJSON_AddStringToObject(it, "type", "message");
    cJSON_AddStringToObject(it, "status", status);
    cJSON_AddStringToObject(it, "role", "assistant");
    content = cJSON_AddArrayToObject(it, "content");
    if (text && content) {
        part = cJSON_CreateObject();
        cJSON_AddStringToObject(part, "type", "output_text");
        cJSON_AddStringToObject(part, "text", text);
        cJSON_AddArrayToObject(part, "annotations");
        cJSON_AddItemToArray(content, part);
    }
    return it;
}

/* Chat tool_calls -> function_call items. */
static cJSON *call_items(RespCtx *c, const cJSON *calls) {
    cJSON *arr = cJSON_CreateArray();
    const cJSON *tc;
    cJSON_ArrayForEach(tc, calls) {
        const cJSON *fn = get(tc, "function");
        cJSON *it = cJSON_CreateObject();
        char id[40];
        snprintf(id, sizeof id, "fc_%016llx", (unsigned long long)mix(&c->rng));
        cJSON_AddStringToObject(it, "id", id);
        cJSON_AddStringToObject(it, "type", "function_call");
        cJSON_AddStringToObject(it, "status", "completed");
        cJSON_AddStringToObject(it, "call_id", get(tc, "id")->valuestring);
        cJSON_AddStringToObject(it, "name", get(fn, "name")->valuestring);
        cJSON_AddStringToObject(it, "arguments", get(fn, "arguments")->valuestring);
        cJSON_AddItemToArray(arr, it);
    }
    return arr;
}

/* The output items of a finished job (copies), and the assistant message
 * for the stored conversation; made once, so ids agree between the stream's
 * events and the final object. */
static cJSON *final_output(RespCtx *c, const RespView *v, cJSON **assistant) {
    if (!c->out) {
        const char *text = v->text ? v->text : "";
        cJSON *calls = c->has_tools ? structured_reply_tool_calls(text, &c->rng) : NULL;
        c->assistant = cJSON_CreateObject();
        cJSON_AddStringToObject(c->assistant, "role", "assistant");
        if (calls) {
            c->out = call_items(c, calls);
            cJSON_AddItemToObject(c->assistant, "tool_calls", calls);
        } else {
            c->out = cJSON_CreateArray();
            cJSON_AddItemToArray(c->out, message_item(c, text, !strcmp(v->finish ? v->finish : "stop", "length") ? "incomplete" : "completed"));
            cJSON_AddStringToObject(c->assistant, "content", text);
        }
    }
    *assistant = cJSON_Duplicate(c->assistant, 1);
    return cJSON_Duplicate(c->out, 1);
}

static const char *final_status(const RespView *v) {
    return v->finish && !strcmp(v->finish, "length") ? "incomplete" : "completed";
}

cJSON *responses_final(ResponseStore *rs, RespCtx *c, const RespView *v) {
    cJSON *assistant;
    cJSON *out = final_output(c, v, &assistant);
    cJSON *o = response_obj(c, v, final_status(v), out, true);
    if (c->store && o && assistant) {
        cJSON *conv = cJSON_Duplicate(c->messages, 1);
        if (conv) {
            cJSON_AddItemToArray(conv, assistant);
            assistant = NULL;
            store_put(rs, c->id, cJSON_Duplicate(o, 1), conv);
        }
    }
    cJSON_Delete(assistant);
    return o;
}

/* ---- streaming ------------------------------------------------------------------ */


/* Adds "event: TYPE\ndata: {"type": TYPE, ...fields of o, "sequence_number": N}\n\n" (takes o). */
static void event(Buf *b, RespCtx *c, const char *type, cJSON *o) {
    cJSON *e = cJSON_CreateObject();
    if (!o || !e || !cJSON_AddStringToObject(e, "type", type)) {
        cJSON_Delete(o);
        cJSON_Delete(e);
        b->oom = true;
        return;
    }
    while (o->child) {
        cJSON *it = cJSON_DetachItemViaPointer(o, o->child);
        cJSON_AddItemToObject(e, it->string, it);
    }
    cJSON_Delete(o);
    cJSON_AddNumberToObject(e, "sequence_number", c->seq++);
    char *j = cJSON_PrintUnformatted(e);
    cJSON_Delete(e);
    if (!j) {
        b->oom = true;
        return;
    }
    buf_put(b, "event: ", 7);
    buf_put(b, type, strlen(type));
    buf_put(b, "\ndata: ", 7);
    buf_put(b, j, strlen(j));
    buf_put(b, "\n\n", 2);
    free(j);
}

static cJSON *ev_item(int output_index, cJSON *item) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "output_index", output_index);
    cJSON_AddItemToObject(o, "item", item);
    return o;
}

static cJSON *ev_part(const RespCtx *c, const char *text) {
    cJSON *o = cJSON_CreateObject(), *part;
    cJSON_AddStringToObject(o, "item_id", c->msg_id);
    cJSON_AddNumberToObject(o, "output_index", 0);
    cJSON_AddNumberToObject(o, "content_index", 0);
    part = cJSON_AddObjectToObject(o, "part");
    if (part) {
        cJSON_AddStringToObject(part, "type", "output_text");
        cJSON_AddStringToObject(part, "text", text);
        cJSON_AddArrayToObject(part, "annotations");
    }
    return o;
}

static void open_message(Buf *b, RespCtx *c) {
    c->item_open = true;
    event(b, c, "response.output_item.added", ev_item(0, message_item(c, NULL, "in_progress")));
    event(b, c, "response.content_part.added", ev_part(c, ""));
}

char *responses_stream(ResponseStore *rs, RespCtx *c, const RespView *v, size_t *len, bool *oom, bool *finished) {
    Buf b = {0};
    *oom = false;
    *finished = c->finished;
    if (c->finished) return NULL;
    if (!c->started) {
        c->started = true;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "response", response_obj(c, v, "in_progress", NULL, false));
        event(&b, c, "response.created", o);
        o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "response", response_obj(c, v, "in_progress", NULL, false));
        event(&b, c, "response.in_progress", o);
    }
    const char *text = v->text ? v->text : "";
    /* with tools, text that is (or may become) a tool call is held until the end */
    const bool hold = c->has_tools && structured_text_kind(text, v->len) != 0;
    if (!hold && v->len > c->text_sent && !v->error) {
        if (!c->item_open) open_message(&b, c);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "item_id", c->msg_id);
        cJSON_AddNumberToObject(o, "output_index", 0);
        cJSON_AddNumberToObject(o, "content_index", 0);
        cJSON_AddStringToObject(o, "delta", text + c->text_sent);
        cJSON_AddArrayToObject(o, "logprobs");
        event(&b, c, "response.output_text.delta", o);
        c->text_sent = v->len;
    }
    if (v->done) {
        c->finished = true;
        *finished = true;
        if (v->error) {
            cJSON *o = cJSON_CreateObject(), *r = response_obj(c, v, "failed", NULL, false);
            cJSON *er = cJSON_CreateObject();
            cJSON_AddStringToObject(er, "code", "server_error");
            cJSON_AddStringToObject(er, "message", v->error);
            cJSON_ReplaceItemInObject(r, "error", er);
            cJSON_AddItemToObject(o, "response", r);
            event(&b, c, "response.failed", o);
        } else {
            cJSON *assistant;
            cJSON *out = final_output(c, v, &assistant);
            int idx = 0;
            for (cJSON *it = out ? out->child : NULL; it; it = it->next, idx++) {
                const cJSON *ty = get(it, "type");
                if (!strcmp(ty->valuestring, "function_call")) {
                    cJSON *added = cJSON_Duplicate(it, 1);
                    cJSON_ReplaceItemInObject(added, "arguments", cJSON_CreateString(""));
                    cJSON_ReplaceItemInObject(added, "status", cJSON_CreateString("in_progress"));
                    event(&b, c, "response.output_item.added", ev_item(idx, added));
                    const char *args = get(it, "arguments")->valuestring;
                    cJSON *o = cJSON_CreateObject();
                    cJSON_AddStringToObject(o, "item_id", get(it, "id")->valuestring);
                    cJSON_AddNumberToObject(o, "output_index", idx);
                    cJSON_AddStringToObject(o, "delta", args);
                    event(&b, c, "response.function_call_arguments.delta", o);
                    o = cJSON_CreateObject();
                    cJSON_AddStringToObject(o, "item_id", get(it, "id")->valuestring);
                    cJSON_AddNumberToObject(o, "output_index", idx);
                    cJSON_AddStringToObject(o, "name", get(it, "name")->valuestring);
                    cJSON_AddStringToObject(o, "arguments", args);
                    event(&b, c, "response.function_call_arguments.done", o);
                } else {
                    /* a message: what was held back (or nothing) goes out now */
                    if (!c->item_open) open_message(&b, c);
                    if (v->len > c->text_sent) {
                        cJSON *o = cJSON_CreateObject();
                        cJSON_AddStringToObject(o, "item_id", c->msg_id);
                        cJSON_AddNumberToObject(o, "output_index", 0);
                        cJSON_AddNumberToObject(o, "content_index", 0);
                        cJSON_AddStringToObject(o, "delta", text + c->text_sent);
                        cJSON_AddArrayToObject(o, "logprobs");
                        event(&b, c, "response.output_text.delta", o);
                        c->text_sent = v->len;
                    }
                    cJSON *o = cJSON_CreateObject();
                    cJSON_AddStringToObject(o, "item_id", c->msg_id);
                    cJSON_AddNumberToObject(o, "output_index", 0);
                    cJSON_AddNumberToObject(o, "content_index", 0);
                    cJSON_AddStringToObject(o, "text", text);
                    cJSON_AddArrayToObject(o, "logprobs");
                    event(&b, c, "response.output_text.done", o);
                    event(&b, c, "response.content_part.done", ev_part(c, text));
                }
                event(&b, c, "response.output_item.done", ev_item(idx, cJSON_Duplicate(it, 1)));
            }
            cJSON_Delete(out);
            cJSON_Delete(assistant);
            cJSON *fin = responses_final(rs, c, v); /* stores it */
            cJSON *o = cJSON_CreateObject();
            cJSON_AddItemToObject(o, "response", fin);
            event(&b, c, "response.completed", o);
        }
    }
    if (b.oom) {
        free(b.s);
        *oom = true;
        return NULL;
    }
    *len = b.len;
    return b.s;
}
