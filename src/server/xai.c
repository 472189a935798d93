/* xai.c - see xai.h. */
#include "xai.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cJSON *xai_language_model(const char *id, const char *fingerprint, long long created, const char *version,
                          const char *const *aliases) {
    cJSON *o = cJSON_CreateObject(), *a;
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "fingerprint", fingerprint);
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddStringToObject(o, "owned_by", "grok.c");
    cJSON_AddStringToObject(o, "version", version);
    if ((a = cJSON_AddArrayToObject(o, "input_modalities"))) cJSON_AddItemToArray(a, cJSON_CreateString("text"));
    if ((a = cJSON_AddArrayToObject(o, "output_modalities"))) cJSON_AddItemToArray(a, cJSON_CreateString("text"));
    cJSON_AddNumberToObject(o, "prompt_text_token_price", 0);
    cJSON_AddNumberToObject(o, "completion_text_token_price", 0);
    if ((a = cJSON_AddArrayToObject(o, "aliases")))
        for (int i = 0; aliases && aliases[i]; i++) {
            bool dup = !strcmp(aliases[i], id);
            for (int k = 0; k < i && !dup; k++) dup = !strcmp(aliases[k], aliases[i]);
            if (!dup) cJSON_AddItemToArray(a, cJSON_CreateString(aliases[i]));
        }
    return o;
}

/* The bytes a token stands for: "▁" is a space, <0xNN> one byte. */
static size_t token_bytes(const Tokenizer *t, int id, unsigned char *out, size_t cap) {
    size_t len, o = 0;
    const char *p = tokenizer_piece(t, id, &len);
    unsigned v;
    if (!p) return 0;
    if (tokenizer_type(t, id) == TOKEN_BYTE && len == 6 && sscanf(p, "<0x%2X>", &v) == 1) {
        out[0] = (unsigned char)v;
        return 1;
    }
    for (size_t i = 0; i < len && o < cap; i++) {
        if (!tokenizer_is_bpe(t) && i + 2 < len && (unsigned char)p[i] == 0xE2 && (unsigned char)p[i + 1] == 0x96 &&
            (unsigned char)p[i + 2] == 0x81) {
            out[o++] = ' ';
            i += 2;
        } else out[o++] = (unsigned char)p[i];
    }
    return o;
}

cJSON *xai_tokenize_text(const Tokenizer *tok, const char *text, Error *err) {
    int *ids = NULL;
    int n = tokenizer_encode(tok, text, strlen(text), false, &ids, err);
    if (n < 0) return NULL;
    cJSON *o = cJSON_CreateObject(), *arr = o ? cJSON_AddArrayToObject(o, "token_ids") : NULL;
    for (int i = 0; i < n && arr; i++) {
        unsigned char raw[1024];
        size_t nr = token_bytes(tok, ids[i], raw, sizeof raw);
        char str[1100];
        /* the text: bytes that are not UTF-8 by themselves as "bytes:\xNN" (as /v1/completions logprobs) */
        if (nr == 1 && raw[0] >= 0x80) snprintf(str, sizeof str, "bytes:\\x%02x", raw[0]);
        else {
            memcpy(str, raw, nr);
            str[nr] = 0;
        }
        cJSON *it = cJSON_CreateObject(), *b;
        cJSON_AddNumberToObject(it, "token_id", ids[i]);
        cJSON_AddStringToObject(it, "string_token", str);
        if ((b = cJSON_AddArrayToObject(it, "token_bytes")))
            for (size_t k = 0; k < nr; k++) cJSON_AddItemToArray(b, cJSON_CreateNumber(raw[k]));
        cJSON_AddItemToArray(arr, it);
    }
    free(ids);
    if (!arr) {
        cJSON_Delete(o);
        err_set(err, "out of memory");
        return NULL;
    }
    return o;
}
