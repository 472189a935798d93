/* structured.c - see structured.h. */
#include "structured.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "json_schema.h"

#define MAX_GRAMMAR_BYTES (1u << 20) /* the "grammar" field */

int st_err(StructErr *e, int status, const char *code, const char *param, const char *fmt, ...) {
    e->status = status;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void structured_free(Structured *s) {
    if (!s) return;
    free(s->gbnf);
    free(s->tool_prompt);
    memset(s, 0, sizeof *s);
}

static cJSON *get(const cJSON *o, const char *k) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Checks that a grammar compiles (so errors are 400s before queueing). */
static int check_gbnf(const char *gbnf, const char *param, StructErr *e) {
    Error err = {{0}};
    Grammar *g = grammar_parse(gbnf, strlen(gbnf), NULL, &err);
    if (!g) return st_err(e, 400, "invalid_grammar", param, "Invalid '%s': %s", param, err.msg);
    grammar_free(g);
    return 0;
}

static bool valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

typedef struct {
    const char *name;
    const cJSON *fn;
    const cJSON *params;
} Tool;

static int parse_tools(const cJSON *tools, Tool **out, int *n_out, StructErr *e) {
    if (!cJSON_IsArray(tools)) return st_err(e, 400, "invalid_type", "tools", "Invalid type for 'tools': expected an array");
    int n = cJSON_GetArraySize(tools);
    if (n > MAX_TOOLS)
        return st_err(e, 400, "invalid_value", "tools", "Invalid 'tools': at most %d tools, got %d", MAX_TOOLS, n);
    Tool *t = calloc((size_t)(n ? n : 1), sizeof *t);
    if (!t) return st_err(e, 500, NULL, NULL, "out of memory");
    int i = 0;
    const cJSON *it;
    char p[96];
    cJSON_ArrayForEach(it, tools) {
        snprintf(p, sizeof p, "tools[%d]", i);
        const cJSON *ty = cJSON_IsObject(it) ? get(it, "type") : NULL;
        if (!ty || !cJSON_IsString(ty) || strcmp(ty->valuestring, "function")) {
            free(t);
            return st_err(e, 400, "invalid_value", p, "Invalid '%s': expected an object with \"type\": \"function\"", p);
        }
        const cJSON *fn = get(it, "function");
        snprintf(p, sizeof p, "tools[%d].function", i);
        if (!fn || !cJSON_IsObject(fn)) {
            free(t);
            return st_err(e, 400, "missing_required_parameter", p, "Missing required parameter: '%s'", p);
        }
        for (const cJSON *k = fn->child; k; k = k->next)
            if (strcmp(k->string, "name") && strcmp(k->string, "description") && strcmp(k->string, "parameters") &&
                strcmp(k->string, "strict")) {
                free(t);
                return st_err(e, 400, "unknown_parameter", p, "Unrecognized argument in '%s': %.60s", p, k->string);
            }
        const cJSON *nm = get(fn, "name");
        snprintf(p, sizeof p, "tools[%d].function.name", i);
        if (!nm || !cJSON_IsString(nm) || !valid_name(nm->valuestring)) {
            free(t);
            return st_err(e, 400, "invalid_value", p,
                          "Invalid '%s': a function name is 1 to 64 letters, digits, underscores or dashes", p);
        }
        for (int k = 0; k < i; k++)
            if (!strcmp(t[k].name, nm->valuestring)) {
                free(t);
                return st_err(e, 400, "invalid_value", p, "Invalid '%s': duplicate function name '%s'", p, nm->valuestring);
            }
        const cJSON *d = get(fn, "description");
        if (d && !cJSON_IsString(d)) {
            free(t);
            snprintf(p, sizeof p, "tools[%d].function.description", i);
            return st_err(e, 400, "invalid_type", p, "Invalid type for '%s': expected a string", p);
        }
        const cJSON *pa = get(fn, "parameters");
        if (pa && !cJSON_IsObject(pa)) {
            free(t);
            snprintf(p, sizeof p, "tools[%d].function.parameters", i);
            return st_err(e, 400, "invalid_type", p, "Invalid type for '%s': expected a JSON schema object", p);
        }
        t[i].name = nm->valuestring;
        t[i].fn = fn;
        t[i].params = pa;
        i++;
    }
    *out = t;
    *n_out = n;
    return 0;
}

/* The grammar for tool calls over tools[0..n) (only `only` if >= 0). */
static char *tools_grammar(const Tool *tools, int n, int only, bool parallel, bool allow_text, StructErr *e) {
    Error err = {{0}};
    JsonGrammar *jg = json_grammar_new(&err);
    if (!jg) return st_err(e, 500, NULL, NULL, "out of memory"), NULL;
    char *alts = NULL, *out = NULL;
    size_t alen = 0, acap = 0;
    for (int i = 0; i < n; i++) {
        if (only >= 0 && i != only) continue;
        char prefix[32], pname[96], rname[48];
        snprintf(prefix, sizeof prefix, "tool%d", i);
        snprintf(pname, sizeof pname, "tools[%d].function.parameters", i);
        const char *args;
        if (tools[i].params) {
            args = json_grammar_add_schema(jg, tools[i].params, NULL, prefix, &err);
            if (!args) {
                st_err(e, 400, "invalid_schema", pname, "Invalid '%s': %s", pname, err.msg);
                goto out;
            }
        } else {
            cJSON *empty = cJSON_CreateObject(); /* no parameters: {} */
            args = empty ? json_grammar_add_schema(jg, empty, NULL, prefix, &err) : NULL;
            cJSON_Delete(empty);
            if (!args) {
                st_err(e, 500, NULL, NULL, "%s", err.msg);
                goto out;
            }
        }
        /* call-i ::= {"name": "NAME", "arguments": ARGS} (names need no escaping) */
        size_t bl = strlen(args) + strlen(tools[i].name) + 200;
        char *body = malloc(bl);
        if (!body) {
            st_err(e, 500, NULL, NULL, "out of memory");
            goto out;
        }
        snprintf(body, bl,
                 "\"{\" space \"\\\"name\\\"\" space \":\" space \"\\\"%s\\\"\" space \",\" space "
                 "\"\\\"arguments\\\"\" space \":\" space %s \"}\" space",
                 tools[i].name, args);
        snprintf(rname, sizeof rname, "call-%d", i);
        if (json_grammar_add_rule(jg, rname, body, &err)) {
            free(body);
            st_err(e, 500, NULL, NULL, "out of memory");
            goto out;
        }
        free(body);
        size_t need = alen + strlen(rname) + 4;
        if (need + 1 > acap) {
            char *na = realloc(alts, need * 2);
            if (!na) {
                st_err(e, 500, NULL, NULL, "out of memory");
                goto out;
            }
            alts = na, acap = need * 2;
        }
        alen += (size_t)sprintf(alts + alen, "%s%s", alen ? " | " : "", rname);
    }
    if (!alts) {
        st_err(e, 500, NULL, NULL, "no tools for the grammar");
        goto out;
    }
    char calls[160];
    if (parallel)
        snprintf(calls, sizeof calls, "\"{\" space \"\\\"tool_calls\\\"\" space \":\" space \"[\" space call (\",\" space call){0,%d} \"]\" space \"}\" space",
                 MAX_PARALLEL_CALLS - 1);
    else snprintf(calls, sizeof calls, "\"{\" space \"\\\"tool_calls\\\"\" space \":\" space \"[\" space call \"]\" space \"}\" space");
    if (json_grammar_add_rule(jg, "call", alts, &err) || json_grammar_add_rule(jg, "calls", calls, &err) ||
        (allow_text && json_grammar_add_rule(jg, "text", "[^{] .*", &err)) ||
        json_grammar_add_rule(jg, "root", allow_text ? "calls | text" : "calls", &err)) {
        st_err(e, 500, NULL, NULL, "out of memory");
        goto out;
    }
    out = json_grammar_text(jg, &err);
    if (!out) st_err(e, 500, NULL, NULL, "out of memory");
out:
    free(alts);
    json_grammar_free(jg);
    return out;
}

static char *tools_prompt(const Tool *tools, int n, ToolMode mode, int only) {
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return NULL;
    for (int i = 0; i < n; i++) {
        cJSON *d = cJSON_Duplicate(tools[i].fn, 1);
        if (d) cJSON_DeleteItemFromObjectCaseSensitive(d, "strict");
        if (d) cJSON_AddItemToArray(arr, d);
    }
    char *list = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    if (!list) return NULL;
    const char *how = mode == TOOLS_REQUIRED
                          ? "Reply with only a JSON object calling tools"
                          : "To call tools, reply with only a JSON object";
    size_t n_out = strlen(list) + 512;
    char *s = malloc(n_out);
    if (s)
        snprintf(s, n_out,
                 "You can use these tools (JSON schemas of their arguments):\n%s\n%s, in this form: "
                 "{\"tool_calls\": [{\"name\": \"TOOL_NAME\", \"arguments\": {...}}]}%s%s%s",
                 list, how, mode == TOOLS_AUTO ? ". Otherwise reply normally." : ".", only >= 0 ? " Call " : "",
                 only >= 0 ? tools[only].name : "");
    free(list);
    return s;
}

int structured_parse(const cJSON *root, bool chat, Structured *out, StructErr *e) {
    memset(out, 0, sizeof *out);
    const cJSON *gr = get(root, "grammar");
    const cJSON *rf = chat ? get(root, "response_format") : NULL;
    const cJSON *tools = chat ? get(root, "tools") : NULL;
    const cJSON *tc = chat ? get(root, "tool_choice") : NULL;
    const cJSON *ptc = chat ? get(root, "parallel_tool_calls") : NULL;
    int n_given = !!gr + (rf != NULL);
    if (gr) {
        if (!cJSON_IsString(gr)) return st_err(e, 400, "invalid_type", "grammar", "Invalid type for 'grammar': expected a string (GBNF)");
        if (strlen(gr->valuestring) > MAX_GRAMMAR_BYTES)
            return st_err(e, 400, "invalid_value", "grammar", "Invalid 'grammar': over %u bytes", MAX_GRAMMAR_BYTES);
        if (check_gbnf(gr->valuestring, "grammar", e)) return -1;
        if (!(out->gbnf = strdup(gr->valuestring))) return st_err(e, 500, NULL, NULL, "out of memory");
    }
    if (rf) {
        const cJSON *t = cJSON_IsObject(rf) ? get(rf, "type") : NULL;
        if (!t || !cJSON_IsString(t))
            return st_err(e, 400, "invalid_value", "response_format", "Invalid 'response_format': expected an object with a 'type'");
        const char *ty = t->valuestring;
        if (!strcmp(ty, "text")) n_given--;
        else if (!strcmp(ty, "json_object")) {
            if (n_given > 1) return st_err(e, 400, "invalid_value", "grammar", "'grammar' and 'response_format' cannot be used together");
            Error err = {{0}};
            JsonGrammar *jg = json_grammar_new(&err);
            if (!jg || !json_grammar_any_value(jg, &err) || json_grammar_add_rule(jg, "root", "object", &err) ||
                !(out->gbnf = json_grammar_text(jg, &err))) {
                json_grammar_free(jg);
                return st_err(e, 500, NULL, NULL, "out of memory");
            }
            json_grammar_free(jg);
            if (!out->gbnf) return st_err(e, 500, NULL, NULL, "out of memory");
            out->json = true;
        } else if (!strcmp(ty, "json_schema")) {
            if (n_given > 1) return st_err(e, 400, "invalid_value", "grammar", "'grammar' and 'response_format' cannot be used together");
            const cJSON *js = get(rf, "json_schema");
            if (!js || !cJSON_IsObject(js))
                return st_err(e, 400, "missing_required_parameter", "response_format.json_schema",
                              "Missing required parameter: 'response_format.json_schema'");
            const cJSON *nm = get(js, "name");
            if (nm && (!cJSON_IsString(nm) || !valid_name(nm->valuestring)))
                return st_err(e, 400, "invalid_value", "response_format.json_schema.name",
                              "Invalid 'response_format.json_schema.name': 1 to 64 letters, digits, underscores or dashes");
            const cJSON *st = get(js, "strict");
            if (st && !cJSON_IsBool(st))
                return st_err(e, 400, "invalid_type", "response_format.json_schema.strict",
                              "Invalid type for 'response_format.json_schema.strict': expected a boolean");
            for (const cJSON *k = js->child; k; k = k->next)
                if (strcmp(k->string, "name") && strcmp(k->string, "schema") && strcmp(k->string, "strict") &&
                    strcmp(k->string, "description"))
                    return st_err(e, 400, "unknown_parameter", "response_format.json_schema",
                                  "Unrecognized argument in 'response_format.json_schema': %.60s", k->string);
            const cJSON *sc = get(js, "schema");
            Error err = {{0}};
            JsonGrammar *jg = json_grammar_new(&err);
            const char *r = jg && sc ? json_grammar_add_schema(jg, sc, NULL, "s", &err)
                                     : jg ? json_grammar_any_value(jg, &err) : NULL;
            if (!r || json_grammar_add_rule(jg, "root", r, &err) || !(out->gbnf = json_grammar_text(jg, &err))) {
                json_grammar_free(jg);
                return st_err(e, 400, "invalid_schema", "response_format.json_schema.schema",
                              "Invalid 'response_format.json_schema.schema': %s", err.msg);
            }
            json_grammar_free(jg);
            if (check_gbnf(out->gbnf, "response_format.json_schema.schema", e)) return -1;
            out->json = true;
        } else {
            return st_err(e, 400, "invalid_value", "response_format.type",
                          "Invalid 'response_format.type': '%.40s' (text, json_object or json_schema)", ty);
        }
    }
    if (ptc && !cJSON_IsBool(ptc))
        return st_err(e, 400, "invalid_type", "parallel_tool_calls", "Invalid type for 'parallel_tool_calls': expected a boolean");
    const bool parallel = !ptc || cJSON_IsTrue(ptc);
    if (!tools) {
        if (tc && !(cJSON_IsString(tc) && !strcmp(tc->valuestring, "none")))
            return st_err(e, 400, "invalid_value", "tool_choice", "Invalid 'tool_choice': there are no 'tools'");
        return 0;
    }
    Tool *tl = NULL;
    int n = 0;
    if (parse_tools(tools, &tl, &n, e)) return -1;
    if (n == 0) {
        free(tl);
        return 0;
    }
    ToolMode mode = TOOLS_AUTO;
    int only = -1;
    if (tc) {
        if (cJSON_IsString(tc)) {
            if (!strcmp(tc->valuestring, "none")) mode = TOOLS_NONE;
            else if (!strcmp(tc->valuestring, "auto")) mode = TOOLS_AUTO;
            else if (!strcmp(tc->valuestring, "required")) mode = TOOLS_REQUIRED;
            else {
                free(tl);
                return st_err(e, 400, "invalid_value", "tool_choice",
                              "Invalid 'tool_choice': '%.40s' (none, auto, required or a function)", tc->valuestring);
            }
        } else if (cJSON_IsObject(tc)) {
            const cJSON *ty = get(tc, "type"), *fn = get(tc, "function");
            const cJSON *nm = fn && cJSON_IsObject(fn) ? get(fn, "name") : NULL;
            if (!ty || !cJSON_IsString(ty) || strcmp(ty->valuestring, "function") || !nm || !cJSON_IsString(nm)) {
                free(tl);
                return st_err(e, 400, "invalid_value", "tool_choice",
                              "Invalid 'tool_choice': expected {\"type\": \"function\", \"function\": {\"name\": ...}}");
            }
            for (int i = 0; i < n; i++)
                if (!strcmp(tl[i].name, nm->valuestring)) only = i;
            if (only < 0) {
                free(tl);
                return st_err(e, 400, "invalid_value", "tool_choice.function.name",
                              "Invalid 'tool_choice': no tool named '%.64s'", nm->valuestring);
            }
            mode = TOOLS_REQUIRED;
        } else {
            free(tl);
            return st_err(e, 400, "invalid_type", "tool_choice", "Invalid type for 'tool_choice': expected a string or an object");
        }
    }
    if (mode != TOOLS_NONE && out->gbnf) {
        free(tl);
        return st_err(e, 400, "invalid_value", "tools",
                      "'tools' together with 'response_format' or 'grammar' is not supported (use tool_choice \"none\")");
    }
    /* validate every tool's schema, also with tool_choice none */
    char *gb = tools_grammar(tl, n, only, parallel && only < 0, mode == TOOLS_AUTO, e);
    if (!gb) {
        free(tl);
        return -1;
    }
    if (check_gbnf(gb, "tools", e)) {
        free(gb);
        free(tl);
        return -1;
    }
    if (mode != TOOLS_NONE) out->gbnf = gb;
    else free(gb);
    out->tool_mode = mode;
    out->tool_prompt = tools_prompt(tl, n, mode, only);
    free(tl);
    if (!out->tool_prompt) return st_err(e, 500, NULL, NULL, "out of memory");
    return 0;
}

char *structured_tool_calls_text(const cJSON *tool_calls, const char *param, StructErr *e) {
    if (!cJSON_IsArray(tool_calls))
        return st_err(e, 400, "invalid_type", param, "Invalid type for '%s': expected an array", param), NULL;
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "tool_calls");
    if (!arr) {
        cJSON_Delete(o);
        return st_err(e, 500, NULL, NULL, "out of memory"), NULL;
    }
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, tool_calls) {
        const cJSON *fn = cJSON_IsObject(it) ? get(it, "function") : NULL;
        const cJSON *nm = fn ? get(fn, "name") : NULL, *args = fn ? get(fn, "arguments") : NULL;
        if (!nm || !cJSON_IsString(nm) || (args && !cJSON_IsString(args))) {
            cJSON_Delete(o);
            return st_err(e, 400, "invalid_value", param,
                          "Invalid '%s[%d]': expected {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\": a JSON string}}",
                          param, i), NULL;
        }
        cJSON *a = args ? cJSON_Parse(args->valuestring) : cJSON_CreateObject();
        if (!a) {
            cJSON_Delete(o);
            return st_err(e, 400, "invalid_value", param, "Invalid '%s[%d].function.arguments': not valid JSON", param, i), NULL;
        }
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "name", nm->valuestring);
        cJSON_AddItemToObject(c, "arguments", a);
        cJSON_AddItemToArray(arr, c);
        i++;
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) st_err(e, 500, NULL, NULL, "out of memory");
    return s;
}

static uint64_t mix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

cJSON *structured_reply_tool_calls(const char *text, uint64_t *rng) {
    while (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r') text++;
    if (*text != '{') return NULL;
    cJSON *o = cJSON_Parse(text);
    const cJSON *calls = o ? cJSON_GetObjectItemCaseSensitive(o, "tool_calls") : NULL;
    if (!calls || !cJSON_IsArray(calls) || !calls->child) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON *out = cJSON_CreateArray();
    const cJSON *c;
    cJSON_ArrayForEach(c, calls) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(c, "name"), *args = cJSON_GetObjectItemCaseSensitive(c, "arguments");
        if (!cJSON_IsString(nm) || !args) {
            cJSON_Delete(out);
            cJSON_Delete(o);
            return NULL;
        }
        char id[40], *a = cJSON_PrintUnformatted(args);
        snprintf(id, sizeof id, "call_%016llx", (unsigned long long)mix(rng));
        cJSON *tc = cJSON_CreateObject(), *fn;
        cJSON_AddStringToObject(tc, "id", id);
        cJSON_AddStringToObject(tc, "type", "function");
        fn = cJSON_AddObjectToObject(tc, "function");
        if (fn) {
            cJSON_AddStringToObject(fn, "name", nm->valuestring);
            cJSON_AddStringToObject(fn, "arguments", a ? a : "{}");
        }
        free(a);
        cJSON_AddItemToArray(out, tc);
    }
    cJSON_Delete(o);
    return out;
}

int structured_text_kind(const char *text, size_t len) {
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r')) i++;
    if (i == len) return -1;
    return text[i] == '{' ? 1 : 0;
}
