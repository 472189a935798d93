/* json_schema.h - JSON Schema to GBNF: the grammar whose sentences are JSON
 * texts valid under a schema, for constrained sampling (grammar.h).
 *
 * Supported (what xAI documents for structured outputs): type (one or a
 * list), object properties / required / additionalProperties (false unless
 * given; extra properties are never generated), string / number / integer /
 * boolean / null, enum, const, array items / minItems / maxItems, anyOf and
 * oneOf (as alternatives), a single allOf, non-recursive $ref into $defs /
 * definitions (any JSON pointer inside the document), string formats date,
 * time, date-time and uuid, minLength / maxLength, and minimum / maximum
 * (exclusive too for integers; whole-number bounds for numbers).
 * Annotations (title, description, default, examples, $schema, $id,
 * $comment, deprecated, readOnly, writeOnly) are ignored. Any other keyword
 * is an error that names it and where it is, never silently dropped.
 *
 * Bounded: nesting depth, enum size, repetition counts and grammar size have
 * limits that are errors; a $ref cycle is an error. Whitespace between
 * tokens is at most one space, so weak models cannot pad forever. */
#ifndef GROK_JSON_SCHEMA_H
#define GROK_JSON_SCHEMA_H

#include <stddef.h>

#include "common.h"

struct cJSON;
typedef struct JsonGrammar JsonGrammar;

/* A grammar under construction: schemas and verbatim rules are added, then
 * the text taken with json_grammar_text. */
JsonGrammar *json_grammar_new(Error *err);
void json_grammar_free(JsonGrammar *jg);
/* Compiles `schema` (with `doc` as the document its $refs point into; NULL:
 * schema itself) into rules named with `prefix`; returns the name of the
 * rule that matches a valid value followed by optional space (owned by jg),
 * or NULL with a message naming the offending keyword and its path. */
const char *json_grammar_add_schema(JsonGrammar *jg, const struct cJSON *schema, const struct cJSON *doc,
                                    const char *prefix, Error *err);
/* The rule matching any JSON value (then optional space). */
const char *json_grammar_any_value(JsonGrammar *jg, Error *err);
/* Adds "name ::= body" verbatim. */
int json_grammar_add_rule(JsonGrammar *jg, const char *name, const char *body, Error *err);
/* The GBNF text so far (malloc'd), or NULL. */
char *json_grammar_text(JsonGrammar *jg, Error *err);

/* Appends to *buf (malloc'd, grown; *len updated) the GBNF literal of the
 * bytes s[0..n): "..." with escapes. -1 on OOM. */
int gbnf_append_literal(char **buf, size_t *len, size_t *cap, const char *s, size_t n);

/* One call: the GBNF (root rule "root") for a schema given as JSON text. */
char *json_schema_to_gbnf(const char *json, size_t len, Error *err);

/* For the CLI's --grammar FILE / --json-schema FILE (one of them): the
 * compiled grammar; errors name the file. */
struct Grammar;
struct Grammar *grammar_from_files(const char *gbnf_file, const char *schema_file, Error *err);

#endif
