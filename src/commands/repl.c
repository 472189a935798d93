/* repl.c - `grok chat` (see repl.h).
 *
 * The conversation is a system prompt plus a list of user/assistant turns.
 * The KV cache is kept across turns: before each reply the conversation is
 * formatted with the chat template (chat.h), and only the tokens after what
 * the cache already holds run through the model. Every formatted
 * conversation is a prefix of the next one (each message is rendered on its
 * own and the assistant cue "Assistant:" is followed by the reply), so in
 * the usual case that is the new turn: the end of the last reply, the user's
 * message and the cue.
 *
 * Tokens at the boundary: the new text must not be tokenized on its own.
 * SentencePiece puts a dummy-prefix "▁" in front of any text it is given
 * and merges across a join, so the tokens of a suffix alone are not those
 * of the whole conversation, which is how the model saw its training
 * dialogues (grok-nano's are encoded as one text). So the whole formatted
 * text is tokenized (cheap next to the model) and aligned with the cache by
 * text: the cache's tokens are kept as far as their decoded text agrees with
 * the conversation's and ends on a token boundary of its tokenization; the
 * rest comes from that tokenization. The model's own reply tokens therefore
 * stay in the cache even where they are not the canonical split of their
 * text, and where they disagree with the text (a reply cut by a stop string,
 * -n or Ctrl-C; stripped trailing whitespace) the cache is rewound to the
 * last agreeing boundary. /stats shows the reused and new token counts.
 *
 * When the conversation no longer fits (with room for a reply:
 * min(-n, context/4) tokens), the oldest turns are dropped - never the
 * system prompt - with a notice, and the cache is refilled from the first
 * token that changed (the system prompt stays cached). A reply that fills
 * the context itself goes on after a context shift, as llama.cpp's server
 * does: the system prompt stays, half of the tokens after it are discarded
 * and the rest moved down (context_shift, no recomputation).
 *
 * Ctrl-C: a SIGINT handler sets a flag that the generation loop, the
 * prompt processing and the line reader poll (the handler is installed
 * without SA_RESTART so a blocking read returns). Worker threads are created
 * with SIGINT blocked, so the signal reaches the main thread. */
#include "repl.h"
#include "dist_engine.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>
#if defined(__APPLE__)
#include <mach-o/dyld.h> /* _NSGetExecutablePath */
#endif
#include <pthread.h>

#include "chat.h"
#include "common.h"
#include "forward.h"
#include "gguf.h"
#include "grammar.h"
#include "json_schema.h"
#include "kv.h"
#include "model.h"
#include "quant.h"
#include "sampler.h"
#include "tokenizer.h"

/* Largest conversation file /load reads. */
#define CHAT_MAX_FILE ((size_t)16 << 20)

/* The only mutable static state of grok chat: set by the SIGINT handler
 * (Ctrl-C), polled and cleared by the REPL. A handler may portably do no
 * more than write a volatile sig_atomic_t. */
static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

static const char CHAT_USAGE[] =
    "usage: grok chat [-m MODEL.gguf] [options]\n"
    "Chats with a model. Without -m: $GROK_MODEL, else the bundled grok-nano\n"
    "(models/grok-nano.gguf beside the build folder of the grok binary, then in the\n"
    "current folder).\n"
    "  -m, --model FILE        GGUF model\n"
    "  --system TEXT           system prompt\n"
    "  --persona NAME          grok (witty, a little rebellious), plain (neutral\n"
    "                          assistant) or none (default); --system replaces it\n"
    "  --chat-template NAME    grok-2 or plain (default: what the model asks for)\n"
    "  -n, --n-predict N       most tokens per reply (default 1024)\n"
    "  --temp T                temperature, 0 = greedy (default 0.8)\n"
    "  --top-k K  --top-p P  --min-p P  (defaults 40, 0.95, 0.05)\n"
    "  --repeat-penalty R      (default 1.0 = off)  --repeat-last-n N (default 64)\n"
    "  --presence-penalty P    --frequency-penalty P (default 0)\n"
    "  --seed S                random seed (default 42); reply k uses S + k\n"
    "  --ignore-eos            do not end a reply at EOS (the template's stop still ends it)\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "  --ctx N                 context size (default: min(model's, 4096))\n"
    "  --kv TYPE               KV cache type, " KV_TYPE_NAMES " (default f16)\n"
    "  --kv-k TYPE, --kv-v TYPE  keys' / values' type alone\n"
    "  --batch N               prompt tokens per forward pass (default 512)\n"
    "  --device cpu|cuda|auto  where to compute (default auto: cuda when a GPU is present)\n"
    "  --gpu N                 which CUDA GPU (default 0)\n"
    "  --grammar FILE          every reply follows a GBNF grammar (llama.cpp's syntax)\n"
    "  --json-schema FILE      every reply is JSON valid under a JSON schema\n" DIST_USAGE
    "In the chat: a line ending in \\ continues on the next line; \"\"\" starts and ends a\n"
    "block of lines. //text sends a message starting with '/'. Commands:\n"
    "  /help  /reset  /system [TEXT|-]  /save FILE  /load FILE  /stats  /quit\n"
    "Ctrl-C stops a reply; Ctrl-D or /quit exits. Turns that no longer fit in the\n"
    "context are dropped, oldest first, with a notice (the system prompt is kept).\n"
    "When stdin is not a terminal: no prompts or banner; each input line is one user\n"
    "turn (empty lines are skipped, commands work, their output goes to stderr) and\n"
    "each reply is printed on one line of stdout, with newlines in it written as \\n\n"
    "and backslashes as \\\\.\n";

static const char HELP_TEXT[] =
    "  /help           this list\n"
    "  /reset          forget the conversation (the system prompt stays)\n"
    "  /system TEXT    set the system prompt (/system alone shows it, /system - removes it)\n"
    "  /save FILE      write the conversation as JSON\n"
    "  /load FILE      read a conversation written by /save\n"
    "  /stats          context use and the last reply's speed\n"
    "  /quit           exit (or Ctrl-D)\n"
    "A line ending in \\ continues the message; \"\"\" starts and ends a multi-line block.\n"
    "Ctrl-C stops the reply being written.\n";

/* The system prompts of --persona. Written for grok.c. */
static const char PERSONA_GROK[] =
    "You are Grok, a witty AI assistant with a rebellious streak. You answer truthfully and "
    "helpfully, with humor and an outside view of humanity, and you do not dodge spicy questions.";
static const char PERSONA_PLAIN[] = "You are a helpful assistant. Answer clearly and briefly.";

/* ---- small helpers ----------------------------------------------------- */

typedef struct {
    char *s;
    size_t len, cap;
} Str;

static int str_add(Str *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *t = realloc(b->s, cap);
        if (!t) return -1;
        b->s = t;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
    return 0;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static bool all_space(const char *s) {
    for (; *s; s++)
        if (!isspace((unsigned char)*s)) return false;
    return true;
}

static int parse_long(const char *flag, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "grok chat: %s expects an integer in %lld..%lld, got '%s'\n", flag, lo, hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_double(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || errno || *end || end == v || !(x >= lo && x <= hi)) {
        fprintf(stderr, "grok chat: %s expects a number in %g..%g, got '%s'\n", flag, lo, hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

/* The bundled model: $GROK_MODEL, DIR/../models/grok-nano.gguf where DIR
 * holds the running executable (build/grok -> models/), then
 * ./models/grok-nano.gguf. malloc'd path, or NULL (tried gets the places). */
static char *default_model(char *tried, size_t tried_cap) {
    const char *env = getenv("GROK_MODEL");
    if (env && *env) return dup_str(env);
    char exe[PATH_MAX], path[PATH_MAX + 64];
    tried[0] = 0;
#if defined(__APPLE__)
    uint32_t cap = (uint32_t)sizeof exe;
    ssize_t n = _NSGetExecutablePath(exe, &cap) == 0 ? (ssize_t)strlen(exe) : -1;
#else
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
#endif
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(path, sizeof path, "%s/../models/grok-nano.gguf", exe);
            if (access(path, R_OK) == 0) return dup_str(path);
            snprintf(tried, tried_cap, "%s, ", path);
        }
    }
    if (access("models/grok-nano.gguf", R_OK) == 0) return dup_str("models/grok-nano.gguf");
    size_t l = strlen(tried);
    snprintf(tried + l, tried_cap - l, "./models/grok-nano.gguf");
    return NULL;
}

/* ---- the chat state ---------------------------------------------------- */

typedef struct {
    const char *role; /* "user" or "assistant" (string literals) */
    char *content;
} Turn;

typedef struct {
    Model *m;
    Context *c;
    Tokenizer *tok;
    ChatTemplate tmpl;
    int stop_token; /* the template's end-of-turn token (grok-2: <|separator|>), -1 if none */
    int n_ctx, n_vocab, n_batch;
    SamplerParams sp;
    int n_predict;
    bool ignore_eos;
    bool tty;        /* stdin is a terminal: prompts, banner, command output on stdout */
    FILE *info;      /* where command output goes: stdout (tty) or stderr */
    char *system;    /* NULL = none */
    Turn *turns;
    int n_turns, cap_turns;
    int *cache;      /* (n_ctx) the tokens in the KV cache, positions 0..n_cache-1 */
    int n_cache;
    float *logits;   /* (n_vocab) */
    int n_replies;
    /* statistics of the last reply */
    int st_new, st_reused, st_shifted, st_gen, st_dropped;
    int st_reply_shifts, st_reply_discarded; /* context shifts during the last reply */
    double st_prompt_s, st_gen_s;
    const char *st_stop;
    Grammar *grammar;  /* every reply follows it; NULL: free text */
    TokenTrie *trie;
} Chat;

static int add_turn(Chat *ch, const char *role, const char *content, size_t len) {
    if (ch->n_turns == ch->cap_turns) {
        int cap = ch->cap_turns ? ch->cap_turns * 2 : 16;
        Turn *t = realloc(ch->turns, (size_t)cap * sizeof *t);
        if (!t) return -1;
        ch->turns = t;
        ch->cap_turns = cap;
    }
    char *s = malloc(len + 1);
    if (!s) return -1;
    memcpy(s, content, len);
    s[len] = 0;
    ch->turns[ch->n_turns].role = role;
    ch->turns[ch->n_turns].content = s;
    ch->n_turns++;
    return 0;
}

static void pop_turn(Chat *ch) {
    if (ch->n_turns > 0) free(ch->turns[--ch->n_turns].content);
}

static void drop_first_turn(Chat *ch) {
    free(ch->turns[0].content);
    memmove(ch->turns, ch->turns + 1, (size_t)(ch->n_turns - 1) * sizeof *ch->turns);
    ch->n_turns--;
}

static void clear_turns(Chat *ch) {
    while (ch->n_turns) pop_turn(ch);
}

static int set_system(Chat *ch, const char *text) {
    char *s = NULL;
    if (text && !all_space(text) && !(s = dup_str(text))) return -1;
    free(ch->system);
    ch->system = s;
    return 0;
}

/* 0 if a system prompt (with the template and the assistant cue) leaves
 * room in the context for a message; else -1 with a message. */
static int system_fits(const Chat *ch, const char *text, Error *err) {
    if (!text || all_space(text)) return 0;
    ChatMessage sm = {"system", text};
    char *t = chat_format(ch->tmpl, &sm, 1, true, err);
    if (!t) return -1;
    int *ids = NULL;
    int n = tokenizer_encode(ch->tok, t, strlen(t), false, &ids, err);
    free(t);
    free(ids);
    if (n < 0) return -1;
    if (n >= ch->n_ctx)
        return err_set(err, "the system prompt takes %d tokens but the context holds %d (shorten it or raise --ctx)", n,
                       ch->n_ctx);
    return 0;
}

/* The conversation, formatted with the assistant cue and tokenized. */
static int conversation_tokens(const Chat *ch, int **ids, Error *err) {
    ChatMessage *msgs = malloc((size_t)(ch->n_turns + 1) * sizeof *msgs);
    if (!msgs) return err_set(err, "out of memory");
    int n = 0;
    if (ch->system) msgs[n++] = (ChatMessage){"system", ch->system};
    for (int i = 0; i < ch->n_turns; i++) msgs[n++] = (ChatMessage){ch->turns[i].role, ch->turns[i].content};
    char *text = chat_format(ch->tmpl, msgs, n, true, err);
    free(msgs);
    if (!text) return -1;
    int r = tokenizer_encode(ch->tok, text, strlen(text), false, ids, err);
    free(text);
    return r;
}

/* The decoded text of ids (into *text) and, for k = 0..n, off[k] = the
 * bytes of it that the first k tokens produce, -1 where a multi-byte
 * character is still incomplete there (not a boundary). */
static int decode_offsets(const Tokenizer *t, const int *ids, int n, Str *text, int *off) {
    TokenDecoder d;
    token_decoder_init(&d);
    char piece[256];
    text->len = 0;
    if (str_add(text, "", 0)) return -1;
    off[0] = 0;
    for (int k = 0; k < n; k++) {
        size_t len = token_decoder_push(t, &d, ids[k], piece, sizeof piece);
        if (str_add(text, piece, len)) return -1;
        off[k + 1] = d.n_pending ? -1 : (int)text->len;
    }
    return 0;
}

/* What the cache should hold for the conversation whose tokenization is
 * full[0..n_full): the cached tokens as far as they agree with it (same
 * tokens, or else the same text up to a boundary of both), then the rest of
 * full. *out is malloc'd. */
static int plan_tokens(const Chat *ch, const int *full, int n_full, int **out, int *n_out) {
    int K = 0, J;
    while (K < n_full && K < ch->n_cache && ch->cache[K] == full[K]) K++;
    J = K;
    if (K < ch->n_cache && K < n_full) { /* the cache diverges: compare the texts */
        Str tc = {0}, tf = {0};
        int *oc = malloc((size_t)(ch->n_cache + 1) * sizeof(int)), *of = malloc((size_t)(n_full + 1) * sizeof(int));
        int ok = oc && of && !decode_offsets(ch->tok, ch->cache, ch->n_cache, &tc, oc) &&
                 !decode_offsets(ch->tok, full, n_full, &tf, of);
        if (ok) {
            size_t same = 0;
            while (same < tc.len && same < tf.len && tc.s[same] == tf.s[same]) same++;
            for (int k = 1; k <= n_full; k++) /* make of[] monotone for the search; -1 stays "no boundary" */
                if (of[k] < 0) of[k] = -1 - (of[k - 1] < 0 ? -1 - of[k - 1] : of[k - 1]);
            for (int k = ch->n_cache; k > K; k--) {
                int o = oc[k];
                if (o < 0 || (size_t)o > same || oc[k - 1] == o) continue; /* the fewest tokens that reach o */
                int lo = 0, hi = n_full; /* the first j whose (monotone) offset is >= o */
                while (lo < hi) {
                    int mid = (lo + hi) / 2, v = of[mid] < 0 ? -1 - of[mid] : of[mid];
                    if (v < o) lo = mid + 1;
                    else hi = mid;
                }
                if (lo <= n_full && of[lo] == o) {
                    K = k;
                    J = lo;
                    break;
                }
            }
        }
        free(oc), free(of), free(tc.s), free(tf.s);
        if (!ok) return -1;
    }
    int n = K + n_full - J;
    int *t = malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    if (!t) return -1;
    memcpy(t, ch->cache, (size_t)K * sizeof(int));
    memcpy(t + K, full + J, (size_t)(n_full - J) * sizeof(int));
    *out = t;
    *n_out = n;
    return 0;
}

/* The tokens for the conversation (plan_tokens), dropping the oldest turns
 * until they fit with room for a reply. On failure the newest (user) turn
 * is removed. */
static int fit_conversation(Chat *ch, int **ids_out, int *n_out, Error *err) {
    int reserve = ch->n_predict < ch->n_ctx / 4 ? ch->n_predict : ch->n_ctx / 4;
    if (reserve < 1) reserve = 1;
    int dropped = 0;
    for (;;) {
        int *full = NULL, *ids = NULL, n = 0;
        int n_full = conversation_tokens(ch, &full, err);
        if (n_full >= 0 && plan_tokens(ch, full, n_full, &ids, &n)) n_full = err_set(err, "out of memory");
        free(full);
        if (n_full < 0) {
            pop_turn(ch);
            return -1;
        }
        if (n + reserve <= ch->n_ctx || (ch->n_turns <= 1 && n < ch->n_ctx)) {
            if (dropped)
                fprintf(stderr,
                        "[grok chat] context full: dropped the %d oldest message%s; the conversation is now %d "
                        "of %d tokens\n",
                        dropped, dropped > 1 ? "s" : "", n, ch->n_ctx);
            ch->st_dropped += dropped;
            *ids_out = ids;
            *n_out = n;
            return 0;
        }
        free(ids);
        if (ch->n_turns <= 1) {
            pop_turn(ch);
            return err_set(err, "the message takes %d tokens%s but the context holds %d (raise --ctx)", n,
                           ch->system ? " with the system prompt" : "", ch->n_ctx);
        }
        /* the oldest exchange: a user turn and the replies after it */
        drop_first_turn(ch), dropped++;
        while (ch->n_turns > 1 && strcmp(ch->turns[0].role, "user") != 0) drop_first_turn(ch), dropped++;
    }
}

/* Brings the KV cache to ids[0..n): keeps the common prefix and, after
 * oldest turns were dropped, shifts the cached turns that remain down into
 * place (context shift: no recomputation), processes the rest in batches
 * (Ctrl-C stops between batches: returns 1). Leaves the logits of the last
 * token in ch->logits. */
#define SHIFT_MIN_RUN 16 /* fewer cached tokens than this are recomputed rather than shifted */
static int sync_cache(Chat *ch, const int *ids, int n, Error *err) {
    int prefix = 0;
    while (prefix < n && prefix < ch->n_cache && ch->cache[prefix] == ids[prefix]) prefix++;
    int keep = context_reuse(ch->c, 0, ch->cache, ch->n_cache, ids, n, SHIFT_MIN_RUN, err);
    if (keep < 0) return -1;
    ch->st_shifted = keep > prefix ? keep - prefix : 0;
    if (keep == n) keep = n - 1; /* the last token runs again for its logits */
    ch->n_cache = keep;
    ch->st_reused = keep;
    ch->st_new = n - keep;
    double t0 = time_now();
    for (int p = keep; p < n;) {
        ch->st_prompt_s = time_now() - t0;
        if (g_interrupted) return 1;
        int k = n - p < ch->n_batch ? n - p : ch->n_batch;
        if (forward_tokens(ch->c, 0, ids + p, k, p, ch->logits, false, err)) return -1;
        memcpy(ch->cache + p, ids + p, (size_t)k * sizeof(int));
        p += k;
        ch->n_cache = p;
    }
    ch->st_prompt_s = time_now() - t0;
    return 0;
}

/* Writes reply text to stdout: leading whitespace skipped, trailing
 * whitespace held back until more text follows; when not on a terminal,
 * newlines and backslashes escaped so that a reply is one line. */
typedef struct {
    bool any, escape;
    Str ws;
} Out;

static void out_char(const Out *o, char ch) {
    if (o->escape && ch == '\n') fputs("\\n", stdout);
    else if (o->escape && ch == '\r') fputs("\\r", stdout);
    else if (o->escape && ch == '\\') fputs("\\\\", stdout);
    else putchar(ch);
}

static int out_text(Out *o, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (isspace((unsigned char)s[i])) {
            if (o->any && str_add(&o->ws, s + i, 1)) return -1;
            continue;
        }
        for (size_t j = 0; j < o->ws.len; j++) out_char(o, o->ws.s[j]);
        o->ws.len = 0;
        out_char(o, s[i]);
        o->any = true;
    }
    fflush(stdout);
    return 0;
}

/* How many leading tokens of the cache are the system prompt (what a
 * context shift keeps); 0 without one. */
static int system_prefix(const Chat *ch) {
    if (!ch->system) return 0;
    ChatMessage sm = {"system", ch->system};
    Error err;
    char *t = chat_format(ch->tmpl, &sm, 1, false, &err);
    int *ids = NULL, n = t ? tokenizer_encode(ch->tok, t, strlen(t), false, &ids, &err) : -1, k = 0;
    while (k < n && k < ch->n_cache && ids[k] == ch->cache[k]) k++;
    free(t), free(ids);
    return k;
}

/* The reply has filled the context: keeps the first n_keep tokens, drops
 * half of the rest after them and moves what follows down. 1 if shifted, 0
 * if nothing can be dropped, -1 on error. */
static int shift_reply(Chat *ch, int n_keep, Error *err) {
    const int n_discard = (ch->n_cache - n_keep) / 2;
    if (n_discard < 1) return 0;
    if (context_shift(ch->c, 0, n_keep + n_discard, ch->n_cache, -n_discard, err)) return -1;
    memmove(ch->cache + n_keep, ch->cache + n_keep + n_discard,
            (size_t)(ch->n_cache - n_keep - n_discard) * sizeof(int));
    ch->n_cache -= n_discard;
    ch->st_reply_shifts++;
    ch->st_reply_discarded += n_discard;
    return 1;
}

/* Generates the reply to the conversation in the cache, streaming it.
 * Appends the assistant turn. */
static int generate_reply(Chat *ch, Error *err) {
    int rc = -1;
    SamplerParams sp = ch->sp;
    sp.seed += (uint64_t)ch->n_replies++;
    Sampler *smp = sampler_new(&sp, ch->n_vocab, err);
    if (!smp) return -1;
    StopMatcher sm = {0};
    const char *stop = chat_stop_string(ch->tmpl);
    Str reply = {0};
    Out out = {false, !ch->tty, {0}};
    GrammarMatcher *gm = NULL;
    GrammarFilter gfc = {NULL, ch->n_vocab, 0, 0};
    TokenFilter tf = {&gfc, grammar_filter_allows, grammar_filter_mask};
    if (ch->grammar) {
        int ends[2], n_end = 0;
        if (!ch->ignore_eos) ends[n_end++] = tokenizer_eos(ch->tok);
        if (ch->stop_token >= 0) ends[n_end++] = ch->stop_token;
        if (!(gm = grammar_matcher_new(ch->grammar, ch->trie, ends, n_end, err))) goto done;
        gfc.gm = gm;
    }
    if (stop_matcher_init(&sm, &stop, 1, err)) goto done;
    int from = ch->n_cache - (sp.repeat_last_n > 0 ? sp.repeat_last_n : ch->n_cache);
    for (int i = from > 0 ? from : 0; i < ch->n_cache; i++) sampler_accept(smp, ch->cache[i]);
    TokenDecoder dec;
    token_decoder_init(&dec);
    char piece[256];
    const char *emit;
    size_t emit_len;
    bool hit = false;
    int n_gen = 0;
    const int eos = tokenizer_eos(ch->tok);
    ch->st_stop = "length (-n)";
    ch->st_reply_shifts = ch->st_reply_discarded = 0;
    const int n_keep = system_prefix(ch);
    double t0 = time_now();
    while (n_gen < ch->n_predict) {
        if (g_interrupted) {
            ch->st_stop = "interrupted";
            break;
        }
        int next = gm ? sampler_sample_filtered(smp, ch->logits, &tf) : sampler_sample(smp, ch->logits);
        if (next < 0) {
            err_set(err, "%s", next == -1 ? "no token of the vocabulary can continue the grammar" : "grammar: parser limits hit");
            goto done;
        }
        if ((next == eos && !ch->ignore_eos) || next == ch->stop_token) {
            ch->st_stop = "end of turn";
            break;
        }
        sampler_accept(smp, next);
        n_gen++;
        if (gm && grammar_matcher_accept(gm, next, err)) goto done;
        size_t len = token_decoder_push(ch->tok, &dec, next, piece, sizeof piece);
        hit = stop_matcher_push(&sm, piece, len, &emit, &emit_len) != 0;
        if (str_add(&reply, emit, emit_len) || out_text(&out, emit, emit_len)) {
            err_set(err, "out of memory");
            goto done;
        }
        if (hit) {
            ch->st_stop = "end of turn";
            break;
        }
        if (gm && grammar_matcher_must_end(gm)) {
            ch->st_stop = "grammar complete";
            break;
        }
        if (n_gen == ch->n_predict) break;
        if (ch->n_cache >= ch->n_ctx) {
            const int r = shift_reply(ch, n_keep, err);
            if (r < 0) goto done;
            if (r == 0) {
                ch->st_stop = "context full";
                break;
            }
        }
        if (forward_tokens(ch->c, 0, &next, 1, ch->n_cache, ch->logits, false, err)) goto done;
        ch->cache[ch->n_cache++] = next;
    }
    if (!hit) {
        size_t len = token_decoder_flush(&dec, piece, sizeof piece);
        bool hit2 = stop_matcher_push(&sm, piece, len, &emit, &emit_len) != 0;
        if (str_add(&reply, emit, emit_len) || out_text(&out, emit, emit_len)) {
            err_set(err, "out of memory");
            goto done;
        }
        if (!hit2) {
            stop_matcher_flush(&sm, &emit, &emit_len);
            if (str_add(&reply, emit, emit_len) || out_text(&out, emit, emit_len)) {
                err_set(err, "out of memory");
                goto done;
            }
        }
    }
    ch->st_gen = n_gen;
    ch->st_gen_s = time_now() - t0;
    bool interrupted = g_interrupted != 0;
    g_interrupted = 0;
    putchar('\n');
    fflush(stdout);
    if (ch->st_reply_shifts)
        fprintf(stderr,
                "[grok chat] the reply filled the context: %d context shift%s discarded %d tokens%s; the oldest turns "
                "will be dropped for the next message\n",
                ch->st_reply_shifts, ch->st_reply_shifts > 1 ? "s" : "", ch->st_reply_discarded,
                n_keep ? " (the system prompt stays)" : "");
    if (interrupted) fprintf(stderr, "[grok chat] reply stopped (Ctrl-C)\n");
    else if (!strcmp(ch->st_stop, "context full"))
        fprintf(stderr, "[grok chat] the context is full: reply cut; the oldest turns will be dropped for the next "
                        "message\n");
    if (interrupted && all_space(reply.s ? reply.s : "")) {
        pop_turn(ch); /* nothing was said: forget the question too */
        rc = 0;
        goto done;
    }
    rc = add_turn(ch, "assistant", reply.s ? reply.s : "", reply.len);
    if (rc) err_set(err, "out of memory");
done:
    grammar_matcher_free(gm);
    free(out.ws.s);
    free(reply.s);
    stop_matcher_free(&sm);
    sampler_free(smp);
    return rc;
}

/* A user message: append it, fit and process the conversation, reply. */
static int user_turn(Chat *ch, const char *text) {
    Error err = {{0}};
    if (add_turn(ch, "user", text, strlen(text))) {
        fprintf(stderr, "grok chat: out of memory\n");
        return -1;
    }
    int *ids = NULL, n = 0;
    if (fit_conversation(ch, &ids, &n, &err)) {
        fprintf(stderr, "grok chat: %s\n", err.msg);
        if (!ch->tty) putchar('\n'); /* one output line per input line */
        fflush(stdout);
        return 0;
    }
    int r = sync_cache(ch, ids, n, &err);
    free(ids);
    if (r < 0) {
        fprintf(stderr, "grok chat: %s\n", err.msg);
        return -1;
    }
    if (r > 0) { /* Ctrl-C while reading the prompt */
        g_interrupted = 0;
        pop_turn(ch);
        fprintf(stderr, "\n[grok chat] stopped (Ctrl-C)\n");
        if (!ch->tty) putchar('\n');
        fflush(stdout);
        return 0;
    }
    if (generate_reply(ch, &err)) {
        fprintf(stderr, "grok chat: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* ---- /save and /load ---------------------------------------------------- */

static int save_chat(const Chat *ch, const char *path, Error *err) {
    cJSON *root = cJSON_CreateObject(), *msgs = cJSON_CreateArray();
    if (!root || !msgs) {
        cJSON_Delete(root), cJSON_Delete(msgs);
        return err_set(err, "out of memory");
    }
    cJSON_AddItemToObject(root, "messages", msgs);
    bool ok = cJSON_AddStringToObject(root, "template", chat_template_name(ch->tmpl)) != NULL;
    for (int i = -1; i < ch->n_turns && ok; i++) {
        if (i < 0 && !ch->system) continue;
        cJSON *m = cJSON_CreateObject();
        if (!m || !cJSON_AddItemToArray(msgs, m)) {
            cJSON_Delete(m);
            ok = false;
            break;
        }
        ok = cJSON_AddStringToObject(m, "role", i < 0 ? "system" : ch->turns[i].role) &&
             cJSON_AddStringToObject(m, "content", i < 0 ? ch->system : ch->turns[i].content);
    }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return err_set(err, "out of memory");
    FILE *f = fopen(path, "w");
    int rc = 0;
    if (!f || fputs(text, f) < 0 || fputc('\n', f) == EOF) rc = err_set(err, "cannot write %s: %s", path, strerror(errno));
    if (f && fclose(f) != 0 && rc == 0) rc = err_set(err, "cannot write %s: %s", path, strerror(errno));
    free(text);
    return rc;
}

static char *read_all(const char *path, Error *err) {
    size_t len = 0;
    char *b = read_file_capped(path, CHAT_MAX_FILE, "conversation", &len, err);
    if (b && len == 0) {
        err_set(err, "%s is empty", path);
        free(b);
        return NULL;
    }
    return b;
}

/* Replaces the conversation with the one in a /save file: {"messages":
 * [{"role": "system"|"user"|"assistant", "content": "..."}, ...]} (an
 * optional first system message; "template" is informative). */
static int load_chat(Chat *ch, const char *path, Error *err) {
    char *text = read_all(path, err);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return err_set(err, "%s is not valid JSON", path);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsArray(msgs)) {
        cJSON_Delete(root);
        return err_set(err, "%s: no \"messages\" array", path);
    }
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content) ||
            (strcmp(role->valuestring, "user") && strcmp(role->valuestring, "assistant") &&
             (strcmp(role->valuestring, "system") || i != 0))) {
            cJSON_Delete(root);
            return err_set(err, "%s: message %d needs a role (an optional first system, then user or assistant) "
                                "and a string content",
                           path, i + 1);
        }
        i++;
    }
    const cJSON *first = msgs->child;
    if (first && !strcmp(cJSON_GetObjectItemCaseSensitive(first, "role")->valuestring, "system") &&
        system_fits(ch, cJSON_GetObjectItemCaseSensitive(first, "content")->valuestring, err)) {
        cJSON_Delete(root);
        return err_prefix(err, "%s", path);
    }
    /* valid: replace */
    clear_turns(ch);
    int rc = set_system(ch, NULL);
    cJSON_ArrayForEach(m, msgs) {
        const char *role = cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring;
        const char *content = cJSON_GetObjectItemCaseSensitive(m, "content")->valuestring;
        if (!strcmp(role, "system")) rc |= set_system(ch, content);
        else rc |= add_turn(ch, !strcmp(role, "user") ? "user" : "assistant", content, strlen(content));
    }
    cJSON_Delete(root);
    return rc ? err_set(err, "out of memory") : 0;
}

/* ---- commands ----------------------------------------------------------- */

static void print_stats(const Chat *ch) {
    FILE *o = ch->info;
    int sys_tokens = 0;
    if (ch->system) {
        ChatMessage sm = {"system", ch->system};
        char *t = chat_format(ch->tmpl, &sm, 1, false, NULL);
        int *ids = NULL;
        if (t) sys_tokens = tokenizer_encode(ch->tok, t, strlen(t), false, &ids, NULL);
        free(t);
        free(ids);
    }
    fprintf(o, "context: %d of %d tokens in the cache; %d message%s", ch->n_cache, ch->n_ctx, ch->n_turns,
            ch->n_turns == 1 ? "" : "s");
    if (ch->system) fprintf(o, " + system prompt (%d tokens)", sys_tokens);
    fprintf(o, "\n");
    if (ch->n_replies == 0) {
        fprintf(o, "no reply yet\n");
    } else {
        fprintf(o, "last prompt: %d new tokens processed, %d reused from the cache (%d moved by a context shift), "
                   "%.1f tok/s\n",
                ch->st_new, ch->st_reused, ch->st_shifted, ch->st_prompt_s > 0 ? ch->st_new / ch->st_prompt_s : 0.0);
        fprintf(o, "last reply: %d tokens, %.1f tok/s, stop: %s; %d context shift%s during it (%d tokens discarded)\n",
                ch->st_gen, ch->st_gen > 1 && ch->st_gen_s > 0 ? (ch->st_gen - 1) / ch->st_gen_s : 0.0, ch->st_stop,
                ch->st_reply_shifts, ch->st_reply_shifts == 1 ? "" : "s", ch->st_reply_discarded);
    }
    fprintf(o, "dropped for space: %d message%s; %d threads, %s kernels; template %s\n", ch->st_dropped,
            ch->st_dropped == 1 ? "" : "s", context_n_threads(ch->c), quant_simd_name(), chat_template_name(ch->tmpl));
}

/* Runs a /command. Returns 1 to quit, 0 otherwise. */
static int run_command(Chat *ch, char *line) {
    char *arg = line + 1;
    while (*arg && !isspace((unsigned char)*arg)) arg++;
    size_t name_len = (size_t)(arg - line - 1);
    while (*arg && isspace((unsigned char)*arg)) arg++;
    size_t al = strlen(arg);
    while (al && isspace((unsigned char)arg[al - 1])) arg[--al] = 0;
    const char *name = line + 1;
#define IS(s) (name_len == strlen(s) && !strncmp(name, s, name_len))
    Error err = {{0}};
    FILE *o = ch->info;
    if (IS("quit") || IS("exit") || IS("q")) return 1;
    if (IS("help") || IS("?")) {
        fputs(HELP_TEXT, o);
    } else if (IS("reset") || IS("clear")) {
        clear_turns(ch);
        fprintf(o, "conversation cleared%s\n", ch->system ? " (the system prompt stays)" : "");
    } else if (IS("system")) {
        if (!*arg) fprintf(o, "system prompt: %s\n", ch->system ? ch->system : "(none)");
        else if (strcmp(arg, "-") && system_fits(ch, arg, &err)) fprintf(stderr, "grok chat: %s\n", err.msg);
        else if (set_system(ch, strcmp(arg, "-") ? arg : NULL)) fprintf(stderr, "grok chat: out of memory\n");
        else fprintf(o, "system prompt %s\n", ch->system ? "set" : "removed");
    } else if (IS("save")) {
        if (!*arg) fprintf(stderr, "grok chat: usage: /save FILE\n");
        else if (save_chat(ch, arg, &err)) fprintf(stderr, "grok chat: %s\n", err.msg);
        else fprintf(o, "saved %d message%s to %s\n", ch->n_turns + (ch->system != NULL),
                     ch->n_turns + (ch->system != NULL) == 1 ? "" : "s", arg);
    } else if (IS("load")) {
        if (!*arg) fprintf(stderr, "grok chat: usage: /load FILE\n");
        else if (load_chat(ch, arg, &err)) fprintf(stderr, "grok chat: %s\n", err.msg);
        else fprintf(o, "loaded %d message%s%s from %s\n", ch->n_turns, ch->n_turns == 1 ? "" : "s",
                     ch->system ? " and a system prompt" : "", arg);
    } else if (IS("stats")) {
        print_stats(ch);
    } else {
        fprintf(stderr, "grok chat: unknown command /%.*s (/help lists them; //text sends a message "
                        "starting with /)\n",
                (int)name_len, name);
    }
#undef IS
    fflush(o);
    return 0;
}

/* ---- input -------------------------------------------------------------- */

/* libedit's character reader, replaced so that Ctrl-C (our handler, no
 * SA_RESTART) ends readline(): returns EOF when a read is interrupted and
 * the flag is set. Decodes UTF-8 into a code point, which libedit stores as
 * a wchar_t. */
static int read_byte(int fd) {
    unsigned char c;
    for (;;) {
        ssize_t r = read(fd, &c, 1);
        if (r == 1) return c;
        if (r < 0 && errno == EINTR && !g_interrupted) continue;
        return EOF;
    }
}

static int rl_getc_utf8(FILE *f) {
    int fd = fileno(f ? f : stdin);
    int c = read_byte(fd);
    if (c == EOF || c < 0x80) return c;
    int n = (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (n < 0) return 0xFFFD;
    int cp = c & (0x3F >> n);
    for (int i = 0; i < n; i++) {
        int b = read_byte(fd);
        if (b == EOF) return EOF;
        if ((b & 0xC0) != 0x80) return 0xFFFD;
        cp = (cp << 6) | (b & 0x3F);
    }
    return cp;
}

typedef struct {
    char *buf; /* getline buffer (not a terminal) */
    size_t cap;
    bool rl_started; /* readline() was called (libedit is set up) */
} Reader;

/* One physical line without its newline (malloc'd), or NULL at end of
 * input. *intr is set when Ctrl-C ended the read. */
static char *read_line(const Chat *ch, Reader *r, const char *prompt, bool *intr) {
    *intr = false;
    if (ch->tty) {
        g_interrupted = 0; /* a Ctrl-C that came after the last reply was done must not cancel this line */
        if (r->rl_started) rl_resize_terminal(); /* libedit's SIGWINCH handling is off with its signals */
        r->rl_started = true;
        char *l = readline(prompt);
        if (g_interrupted) {
            g_interrupted = 0;
            free(l);
            *intr = true;
            return NULL;
        }
        if (l && *l && !all_space(l)) add_history(l);
        return l;
    }
    errno = 0;
    ssize_t n = getline(&r->buf, &r->cap, stdin);
    if (n < 0) return NULL;
    while (n > 0 && (r->buf[n - 1] == '\n' || r->buf[n - 1] == '\r')) r->buf[--n] = 0;
    return dup_str(r->buf);
}

/* Reads one message: a line, lines joined by a trailing backslash, or a
 * """ block. Returns malloc'd text, NULL at end of input; "" when Ctrl-C
 * cancelled the input (terminal). */
static char *read_message(const Chat *ch, Reader *r) {
    bool intr;
    char *line = read_line(ch, r, "> ", &intr);
    if (!line) return intr ? (fputs("^C\n", stdout), fflush(stdout), dup_str("")) : NULL;
    Str msg = {0};
    const char *lead = line;
    while (*lead == ' ' || *lead == '\t') lead++;
    if (!strncmp(lead, "\"\"\"", 3)) { /* block until a line ending in """ */
        const char *p = lead + 3;
        bool have = false, opening = true;
        for (;;) {
            size_t n = strlen(p);
            bool end = n >= 3 && !strcmp(p + n - 3, "\"\"\"");
            if (end) n -= 3;
            if (!(opening && n == 0 && !end)) { /* a bare opening """ adds no line */
                if ((have && str_add(&msg, "\n", 1)) || str_add(&msg, p, n)) goto oom;
                have = true;
            }
            opening = false;
            if (end) break;
            free(line);
            line = read_line(ch, r, "... ", &intr);
            if (!line) {
                if (intr) {
                    free(msg.s);
                    fputs("^C\n", stdout);
                    fflush(stdout);
                    return dup_str("");
                }
                break; /* end of input: send what was written */
            }
            p = line;
        }
    } else {
        for (;;) {
            size_t n = strlen(line);
            bool more = n > 0 && line[n - 1] == '\\';
            if (more) n--;
            if (str_add(&msg, line, n) || (more && str_add(&msg, "\n", 1))) goto oom;
            if (!more) break;
            free(line);
            line = read_line(ch, r, "... ", &intr);
            if (!line) {
                if (intr) {
                    free(msg.s);
                    fputs("^C\n", stdout);
                    fflush(stdout);
                    return dup_str("");
                }
                break;
            }
        }
    }
    free(line);
    return msg.s ? msg.s : dup_str("");
oom:
    free(line);
    free(msg.s);
    fprintf(stderr, "grok chat: out of memory\n");
    return NULL;
}

/* ---- grok chat ---------------------------------------------------------- */

static bool flag_is(const char *f, const char *a, const char *b) { return !strcmp(f, a) || (b && !strcmp(f, b)); }


int cmd_chat(int argc, char **argv, Dist *dist) {
    const char *model_path = NULL, *system = NULL, *tmpl_name = NULL, *grammar_file = NULL, *schema_file = NULL;
    int n_threads = 0, n_ctx = 0, n_batch = 512, kv_k = GGML_TYPE_F16, kv_v = GGML_TYPE_F16, n_predict = 1024;
    int ignore_eos = 0, device = GROK_DEVICE_AUTO, gpu = 0;
    SamplerParams sp = sampler_defaults();
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x = 0;
        double d = 0;
#define FLAG(a, b) flag_is(f, a, b)
#define NEED()                                                          \
    do {                                                                \
        if (!v) {                                                       \
            fprintf(stderr, "grok chat: %s needs a value\n", f);        \
            return 2;                                                   \
        }                                                               \
        i++;                                                            \
    } while (0)
#define INT(lo, hi) (parse_long(f, v, lo, hi, &x) ? 2 : (i++, 0))
#define DBL(lo, hi) (parse_double(f, v, lo, hi, &d) ? 2 : (i++, 0))
        if (FLAG("-h", "--help")) {
            fputs(CHAT_USAGE, stdout);
            return 0;
        } else if (FLAG("-m", "--model")) {
            NEED();
            model_path = v;
        } else if (FLAG("--system", NULL)) {
            NEED();
            system = v;
        } else if (FLAG("--persona", NULL)) {
            NEED();
            if (!strcmp(v, "grok")) system = PERSONA_GROK;
            else if (!strcmp(v, "plain")) system = PERSONA_PLAIN;
            else if (!strcmp(v, "none")) system = NULL;
            else {
                fprintf(stderr, "grok chat: unknown persona '%s' (grok, plain or none)\n", v);
                return 2;
            }
        } else if (FLAG("--chat-template", NULL)) {
            NEED();
            tmpl_name = v;
        } else if (FLAG("--grammar", NULL)) {
            NEED();
            grammar_file = v;
        } else if (FLAG("--json-schema", NULL)) {
            NEED();
            schema_file = v;
        } else if (FLAG("--split", NULL) || FLAG("--dist-timeout", NULL) || FLAG("--micro-batch", NULL)) {
            NEED();
            Error derr = {{0}};
            if (dist_parse_flag(dist, f, v, &derr) < 0) {
                fprintf(stderr, "grok chat: %s\n", derr.msg);
                return 2;
            }
        } else if (FLAG("-n", "--n-predict")) {
            if (INT(1, INT_MAX)) return 2;
            n_predict = (int)x;
        } else if (FLAG("--temp", "--temperature")) {
            if (DBL(0, 100)) return 2;
            sp.temperature = (float)d;
        } else if (FLAG("--top-k", NULL)) {
            if (INT(0, INT_MAX)) return 2;
            sp.top_k = (int)x;
        } else if (FLAG("--top-p", NULL)) {
            if (DBL(0, 1)) return 2;
            sp.top_p = (float)d;
        } else if (FLAG("--min-p", NULL)) {
            if (DBL(0, 1)) return 2;
            sp.min_p = (float)d;
        } else if (FLAG("--repeat-penalty", NULL)) {
            if (DBL(0.01, 100)) return 2;
            sp.repeat_penalty = (float)d;
        } else if (FLAG("--repeat-last-n", NULL)) {
            if (INT(0, 1 << 20)) return 2;
            sp.repeat_last_n = (int)x;
        } else if (FLAG("--presence-penalty", NULL)) {
            if (DBL(-2, 2)) return 2;
            sp.presence_penalty = (float)d;
        } else if (FLAG("--frequency-penalty", NULL)) {
            if (DBL(-2, 2)) return 2;
            sp.frequency_penalty = (float)d;
        } else if (FLAG("--seed", "-s")) {
            if (INT(0, LLONG_MAX)) return 2;
            sp.seed = (uint64_t)x;
        } else if (FLAG("--ignore-eos", NULL)) {
            ignore_eos = 1;
        } else if (FLAG("-t", "--threads")) {
            if (INT(1, 1024)) return 2;
            n_threads = (int)x;
        } else if (FLAG("-c", "--ctx")) {
            if (INT(1, 1 << 24)) return 2;
            n_ctx = (int)x;
        } else if (FLAG("--batch", "-b")) {
            if (INT(1, 1 << 16)) return 2;
            n_batch = (int)x;
        } else if (FLAG("--kv", NULL) || FLAG("--kv-k", NULL) || FLAG("--kv-v", NULL)) {
            NEED();
            const int t = kv_type_parse(v);
            if (t < 0) {
                fprintf(stderr, "grok chat: %s must be one of " KV_TYPE_NAMES "\n", f);
                return 2;
            }
            if (!FLAG("--kv-v", NULL)) kv_k = t;
            if (!FLAG("--kv-k", NULL)) kv_v = t;
        } else if (FLAG("--device", NULL)) {
            NEED();
            if ((device = device_parse(v)) < 0) {
                fprintf(stderr, "grok chat: --device must be cpu, cuda or auto, not '%s'\n", v);
                return 2;
            }
        } else if (FLAG("--gpu", NULL)) {
            if (INT(0, 1023)) return 2;
            gpu = (int)x;
        } else {
            fprintf(stderr, "grok chat: unknown option '%s' (see grok chat --help)\n", f);
            return 2;
        }
#undef FLAG
#undef NEED
#undef INT
#undef DBL
    }
    int tmpl = -1;
    if (tmpl_name && (tmpl = chat_template_from_name(tmpl_name)) < 0) {
        fprintf(stderr, "grok chat: unknown chat template '%s' (grok-2 or plain)\n", tmpl_name);
        return 2;
    }
    char *found = NULL;
    if (!model_path) {
        char tried[2 * PATH_MAX + 128];
        found = default_model(tried, sizeof tried);
        if (!found) {
            fprintf(stderr,
                    "grok chat: no model given and the bundled grok-nano was not found (looked for %s);\n"
                    "use grok chat -m MODEL.gguf, or set GROK_MODEL\n",
                    tried);
            return 1;
        }
        model_path = found;
    }

    if (grammar_file && schema_file) {
        fprintf(stderr, "grok chat: give --grammar or --json-schema, not both\n");
        free(found);
        return 2;
    }
    Chat ch;
    memset(&ch, 0, sizeof ch);
    ch.sp = sp;
    ch.n_predict = n_predict;
    ch.ignore_eos = ignore_eos;
    ch.n_batch = n_batch;
    ch.tty = isatty(STDIN_FILENO) != 0;
    ch.info = ch.tty ? stdout : stderr;
    Error err = {{0}};
    int rc = 1;
    struct sigaction sa, old_sa;
    bool handler_set = false;
    sigset_t sigint, old_mask;
    sigemptyset(&sigint);
    sigaddset(&sigint, SIGINT);
    Reader rd = {NULL, 0, false};

    if (system && set_system(&ch, system)) {
        fprintf(stderr, "grok chat: out of memory\n");
        goto out;
    }
    double t0 = time_now();
    ch.m = dist_model_load(dist, model_path, &err);
    if (!ch.m) {
        fprintf(stderr, "grok chat: %s\n", err.msg);
        goto out;
    }
    ch.tok = tokenizer_from_gguf(ch.m->file, &err);
    if (!ch.tok) {
        fprintf(stderr, "grok chat: %s\n", err.msg);
        goto out;
    }
    ch.n_vocab = ch.m->cfg.n_vocab;
    if (tokenizer_n_vocab(ch.tok) > ch.n_vocab) {
        fprintf(stderr, "grok chat: the tokenizer has more tokens than the model's embedding table\n");
        goto out;
    }
    if ((grammar_file || schema_file) && (!(ch.grammar = grammar_from_files(grammar_file, schema_file, &err)) ||
                                          !(ch.trie = token_trie_new(ch.tok, &err)))) {
        fprintf(stderr, "grok chat: %s\n", err.msg);
        goto out;
    }
    if (n_ctx > ch.m->cfg.n_ctx_train)
        fprintf(stderr, "grok chat: warning: --ctx %d exceeds the model's trained context %d\n", n_ctx,
                ch.m->cfg.n_ctx_train);
    /* worker threads start with SIGINT blocked, so Ctrl-C interrupts the main thread */
    pthread_sigmask(SIG_BLOCK, &sigint, &old_mask);
    ContextParams cp = {n_ctx, 1, n_batch, n_threads, (uint32_t)kv_k, (uint32_t)kv_v, device, gpu, dist};
    ch.c = context_new(ch.m, &cp, &err);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    if (!ch.c) {
        fprintf(stderr, "grok chat: %s\n", err.msg);
        goto out;
    }
    if (context_device_note(ch.c)[0])
        fprintf(stderr, "grok chat: note: computing on the CPU, the GPU did not take the model: %s\n",
                context_device_note(ch.c));
    ch.n_ctx = context_n_ctx(ch.c);
    ch.tmpl = tmpl >= 0 ? (ChatTemplate)tmpl : chat_template_detect(ch.m->file);
    const char *sep = chat_stop_string(ch.tmpl);
    ch.stop_token = tokenizer_find(ch.tok, sep, strlen(sep));
    ch.cache = malloc((size_t)ch.n_ctx * sizeof(int));
    ch.logits = malloc((size_t)ch.n_vocab * sizeof(float));
    if (!ch.cache || !ch.logits) {
        fprintf(stderr, "grok chat: out of memory\n");
        goto out;
    }
    if (system_fits(&ch, ch.system, &err)) {
        fprintf(stderr, "grok chat: --system: %s\n", err.msg);
        goto out;
    }
    double load_s = time_now() - t0;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: a blocked read returns EINTR */
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, &old_sa) == 0) handler_set = true;

    if (ch.tty) {
        /* libedit handles UTF-8 only in a UTF-8 locale */
        if (!setlocale(LC_CTYPE, "")) setlocale(LC_CTYPE, "C.UTF-8");
        rl_readline_name = "grok";
        rl_catch_signals = 0;
        rl_getc_function = rl_getc_utf8;
        uint64_t total, active;
        model_param_counts(ch.m, &total, &active);
        printf("grok chat - %s (%.1f M parameters, %s template, context %d, %d threads, loaded in %.2f s)\n",
               ch.m->name, total / 1e6, chat_template_name(ch.tmpl), ch.n_ctx, context_n_threads(ch.c), load_s);
        if (ch.system) printf("system prompt: %s\n", ch.system);
        printf("Type a message and press Enter; /help lists the commands. Ctrl-C stops a reply, Ctrl-D or /quit "
               "exits.\n");
        fflush(stdout);
    }

    for (;;) {
        char *msg = read_message(&ch, &rd);
        if (!msg) break;
        if (all_space(msg)) {
            free(msg);
            continue;
        }
        int quit = 0;
        if (msg[0] == '/' && msg[1] != '/') {
            quit = run_command(&ch, msg);
        } else if (user_turn(&ch, msg[0] == '/' ? msg + 1 : msg)) {
            free(msg);
            goto out;
        }
        free(msg);
        if (quit) break;
    }
    if (ch.tty) {
        putchar('\n');
        fflush(stdout);
    }
    rc = 0;
out:
    if (handler_set) sigaction(SIGINT, &old_sa, NULL);
    free(rd.buf);
    clear_turns(&ch);
    free(ch.turns);
    free(ch.system);
    free(ch.cache);
    free(ch.logits);
    context_free(ch.c);
    token_trie_free(ch.trie);
    grammar_free(ch.grammar);
    tokenizer_free(ch.tok);
    model_free(ch.m);
    free(found);
    return rc;
}
