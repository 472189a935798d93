/* chat.c - see chat.h. */
#include "chat.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define GROK2_SEPARATOR "<|separator|>" /* Grok-1 tokenizer id 47; Grok-2 special token */

int chat_template_from_name(const char *name) {
    if (!strcmp(name, "grok-2") || !strcmp(name, "grok2") || !strcmp(name, "grok")) return CHAT_TEMPLATE_GROK2;
    if (!strcmp(name, "plain")) return CHAT_TEMPLATE_PLAIN;
    return -1;
}

const char *chat_template_name(ChatTemplate t) { return t == CHAT_TEMPLATE_GROK2 ? "grok-2" : "plain"; }

static bool str_has(GGUFString s, const char *needle) {
    size_t n = strlen(needle);
    for (uint64_t i = 0; i + n <= s.len; i++)
        if (memcmp(s.data + i, needle, n) == 0) return true;
    return false;
}

ChatTemplate chat_template_detect(const GGUFFile *f) {
    GGUFString s;
    if (gguf_get_str(f, "tokenizer.chat_template", &s, NULL) == 1 &&
        (str_has(s, GROK2_SEPARATOR) || str_has(s, "grok-2") || str_has(s, "grok2")))
        return CHAT_TEMPLATE_GROK2;
    if (gguf_get_str(f, "tokenizer.ggml.pre", &s, NULL) == 1 && str_has(s, "grok-2")) return CHAT_TEMPLATE_GROK2;
    return CHAT_TEMPLATE_PLAIN;
}

const char *chat_stop_string(ChatTemplate t) { return t == CHAT_TEMPLATE_GROK2 ? GROK2_SEPARATOR : "\nUser:"; }


/* Appends s without leading/trailing whitespace (Python's str.strip()). */
static void put_stripped(Buf *b, const char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    buf_put(b, s, n);
}

char *chat_format(ChatTemplate t, const ChatMessage *msgs, int n, bool add_generation_prompt, Error *err) {
    Buf b = {0};
    buf_puts(&b, "");
    for (int i = 0; i < n; i++) {
        const char *role = msgs[i].role, *content = msgs[i].content ? msgs[i].content : "";
        int r = !strcmp(role, "system") ? 0 : !strcmp(role, "user") ? 1 : !strcmp(role, "assistant") ? 2
              : !strcmp(role, "tool") ? 3 : -1;
        if (r < 0) {
            free(b.s);
            err_set(err, "unknown chat role '%s' (system, user, assistant or tool)", role);
            return NULL;
        }
        if (t == CHAT_TEMPLATE_GROK2) {
            static const char *const label[] = {"System: ", "Human: ", "Assistant: ", "Tool: "};
            buf_puts(&b, label[r]);
            put_stripped(&b, content);
            buf_puts(&b, GROK2_SEPARATOR "\n\n");
        } else {
            static const char *const label[] = {"", "User: ", "Assistant: ", "Tool: "};
            buf_puts(&b, label[r]);
            put_stripped(&b, content);
            buf_puts(&b, "\n\n");
        }
    }
    if (add_generation_prompt) buf_puts(&b, "Assistant:");
    if (b.oom) {
        free(b.s);
        err_set(err, "out of memory");
        return NULL;
    }
    return b.s;
}
