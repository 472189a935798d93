/* fuzz_json_schema.c - libFuzzer target for the JSON-Schema-to-GBNF
 * compiler: arbitrary bytes as a schema; an accepted schema must give a
 * grammar that the GBNF parser accepts (the compiler never writes a broken
 * grammar), and a rejected one must say why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "json_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 8192) return 0;
    Error err = {{0}};
    char *gbnf = json_schema_to_gbnf((const char *)data, size, &err);
    if (!gbnf) {
        if (!err.msg[0]) abort();
        return 0;
    }
    Grammar *g = grammar_parse(gbnf, strlen(gbnf), NULL, &err);
    if (!g) abort(); /* the compiler wrote a grammar its own parser rejects */
    (void)grammar_match_string(g, "{}", 2, &err);
    grammar_free(g);
    free(gbnf);
    return 0;
}
