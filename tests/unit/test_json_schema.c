/* test_json_schema.c - unit tests for json_schema.c: schemas compile to
 * grammars that accept the valid JSON texts tried and reject the invalid
 * ones (integer ranges exhaustively), and unsupported or hostile schemas are
 * errors that name the problem, in bounded time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "grammar.h"
#include "json_schema.h"
#include "check.h"

static Grammar *compile(const char *schema) {
    Error err = {{0}};
    char *gbnf = json_schema_to_gbnf(schema, strlen(schema), &err);
    if (!gbnf) {
        fprintf(stderr, "  schema %s: %s\n", schema, err.msg);
        return NULL;
    }
    Grammar *g = grammar_parse(gbnf, strlen(gbnf), NULL, &err);
    if (!g) fprintf(stderr, "  grammar of %s does not parse: %s\n%s\n", schema, err.msg, gbnf);
    free(gbnf);
    return g;
}

static int m(const Grammar *g, const char *s) {
    Error err = {{0}};
    return grammar_match_string(g, s, strlen(s), &err);
}

/* valid: strings separated by \x01; invalid likewise */
static void cases(const char *schema, const char *const *good, const char *const *bad) {
    Grammar *g = compile(schema);
    CHECK(g != NULL, "compiles: %s", schema);
    if (!g) return;
    for (; good && *good; good++) CHECK(m(g, *good) == 1, "%s should accept %s", schema, *good);
    for (; bad && *bad; bad++) CHECK(m(g, *bad) == 0, "%s should reject %s", schema, *bad);
    grammar_free(g);
}

static void error_case(const char *schema, const char *needle) {
    Error err = {{0}};
    double t0 = time_now();
    char *gbnf = json_schema_to_gbnf(schema, strlen(schema), &err);
    double dt = time_now() - t0;
    CHECK(!gbnf, "should fail: %.80s", schema);
    CHECK(strstr(err.msg, needle) != NULL, "error for %.80s: '%s', want '%s'", schema, err.msg, needle);
    CHECK(dt < 2.0, "error took %.2f s", dt);
    free(gbnf);
}

int main(void) {
    cases("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"},"
          "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},\"required\":[\"name\",\"age\"]}",
          (const char *[]){"{\"name\": \"Ann\", \"age\": 31}", "{\"name\":\"A\",\"age\":-2,\"tags\":[]}",
                           "{\"name\": \"\\u00e9\", \"age\": 0, \"tags\": [\"x\", \"y\"]} ", NULL},
          (const char *[]){"{\"name\": \"Ann\"}", "{\"age\": 31, \"name\": \"Ann\"}", "{\"name\": \"A\", \"age\": 1.5}",
                           "{\"name\": \"A\", \"age\": 1, \"x\": 1}", "{\"name\": \"A\", \"age\": 01}",
                           "{\"name\":  \"A\", \"age\": 1}", NULL});
    /* all optional: any subset, in order */
    cases("{\"properties\":{\"a\":{\"type\":\"boolean\"},\"b\":{\"type\":\"null\"},\"c\":{\"const\":\"x\"}}}",
          (const char *[]){"{}", "{\"a\": true}", "{\"b\": null}", "{\"c\": \"x\"}", "{\"a\": false, \"c\": \"x\"}",
                           "{\"a\":true,\"b\":null,\"c\":\"x\"}", NULL},
          (const char *[]){"{,}", "{\"c\": \"x\", \"a\": true}", "{\"a\": true,}", "{\"c\": \"y\"}", NULL});
    cases("{\"enum\":[\"red\",\"green\",3,null,{\"k\":[1]}]}",
          (const char *[]){"\"red\"", "\"green\"", "3", "null", "{\"k\":[1]}", NULL},
          (const char *[]){"\"blue\"", "4", "\"RED\"", NULL});
    cases("{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"minItems\":2,\"maxItems\":3}",
          (const char *[]){"[1, 2]", "[1.5, -2e10, 0]", NULL}, (const char *[]){"[]", "[1]", "[1,2,3,4]", NULL});
    cases("{\"type\":\"array\",\"maxItems\":0}", (const char *[]){"[]", NULL}, (const char *[]){"[1]", NULL});
    cases("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}",
          (const char *[]){"\"ab\"", "\"\xc3\xa9\xc3\xa9\xc3\xa9\"", "\"a\\n\"", NULL},
          (const char *[]){"\"a\"", "\"abcd\"", NULL});
    cases("{\"type\":\"string\",\"format\":\"date\"}", (const char *[]){"\"2024-02-28\"", "\"1999-12-31\"", NULL},
          (const char *[]){"\"2024-02-30\"", "\"2024-13-01\"", "\"2024-04-31\"", "\"24-01-01\"", NULL});
    cases("{\"type\":\"string\",\"format\":\"date-time\"}",
          (const char *[]){"\"2024-02-28T23:59:59Z\"", "\"2024-02-28T00:00:00.123+05:30\"", NULL},
          (const char *[]){"\"2024-02-28T24:00:00Z\"", "\"2024-02-28 10:00:00Z\"", NULL});
    cases("{\"type\":\"string\",\"format\":\"uuid\"}", (const char *[]){"\"123e4567-e89b-12d3-a456-426614174000\"", NULL},
          (const char *[]){"\"123e4567e89b12d3a456426614174000\"", NULL});
    cases("{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"string\",\"maxLength\":1}]}",
          (const char *[]){"5", "\"x\"", NULL}, (const char *[]){"\"xy\"", "true", NULL});
    cases("{\"type\":[\"string\",\"null\"]}", (const char *[]){"\"s\"", "null", NULL}, (const char *[]){"1", NULL});
    cases("{\"$defs\":{\"pt\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"}},\"required\":[\"x\"]}},"
          "\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/pt\"}}",
          (const char *[]){"[{\"x\": 1}, {\"x\": 2}]", NULL}, (const char *[]){"[{\"y\": 1}]", NULL});
    cases("{\"allOf\":[{\"type\":\"boolean\"}]}", (const char *[]){"true", NULL}, (const char *[]){"1", NULL});
    cases("{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}",
          (const char *[]){"{}", "{\"a\": 1, \"b\": 2}", NULL}, (const char *[]){"{\"a\": \"x\"}", NULL});
    cases("{}", (const char *[]){"{\"any\": [1, \"x\", null, {}]}", "3", NULL}, (const char *[]){"{", NULL});
    cases("{\"type\":\"number\",\"minimum\":0,\"maximum\":1}", (const char *[]){"0", "0.5", "1", "1.000", NULL},
          (const char *[]){"1.5", "-0.5", "2", "1.001", NULL});
    cases("{\"type\":\"number\",\"minimum\":-3,\"maximum\":-1}", (const char *[]){"-1", "-2.5", "-3", NULL},
          (const char *[]){"-0.5", "-3.5", "0", "1", NULL});

    /* zod's integers: +-(2^53 - 1) bounds are no constraint */
    cases("{\"type\":\"integer\",\"minimum\":-9007199254740991,\"maximum\":9007199254740991}",
          (const char *[]){"0", "-5", "999999999999999", NULL}, (const char *[]){"1.5", "1000000000000000", NULL});
    error_case("{\"type\":\"integer\",\"minimum\":9007199254740991}", "beyond");
    /* integer ranges, exhaustively over -150..150 */
    static const struct { const char *kw; long lo, hi; } R[] = {
        {"\"minimum\":7,\"maximum\":123", 7, 123},       {"\"minimum\":-45,\"maximum\":9", -45, 9},
        {"\"minimum\":-120,\"maximum\":-11", -120, -11}, {"\"exclusiveMinimum\":0", 1, 1000000},
        {"\"maximum\":20", -1000000, 20},                {"\"minimum\":100", 100, 1000000},
        {"\"exclusiveMaximum\":-99", -1000000, -100},    {"\"minimum\":0,\"maximum\":0", 0, 0}};
    for (size_t k = 0; k < sizeof R / sizeof R[0]; k++) {
        char schema[200];
        snprintf(schema, sizeof schema, "{\"type\":\"integer\",%s}", R[k].kw);
        Grammar *g = compile(schema);
        CHECK(g != NULL, "%s", schema);
        int wrong = 0;
        for (long x = -150; g && x <= 150; x++) {
            char s[32];
            snprintf(s, sizeof s, "%ld", x);
            if (m(g, s) != (x >= R[k].lo && x <= R[k].hi)) {
                if (wrong++ < 3) fprintf(stderr, "  %s: %ld wrong\n", schema, x);
            }
        }
        if (g) CHECK(m(g, "007") == 0, "%s leading zeros", schema);
        CHECK(wrong == 0, "%s: %d values wrong", schema, wrong);
        grammar_free(g);
    }

    /* patterns: the whole string matches */
    cases("{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-\\\\d{3}$\"}", (const char *[]){"\"AB-123\"", NULL},
          (const char *[]){"\"ab-123\"", "\"AB-12\"", "\"AB-1234\"", NULL});
    cases("{\"pattern\":\"^(foo|ba[rz])+(?:\\\\.x)?$\"}", (const char *[]){"\"foo\"", "\"barbazfoo.x\"", NULL},
          (const char *[]){"\"fo\"", "\"bar.y\"", "\"\"", NULL});
    cases("{\"type\":\"string\",\"pattern\":\"a.c\\\\\\\\[^\\\"x]*\"}", (const char *[]){"\"abc\\\\yy\"", "\"a c\\\\\"", NULL},
          (const char *[]){"\"abc\\\\x\"", "\"abc\"", NULL});
    cases("{\"type\":\"string\",\"pattern\":\"^\\\\w+@\\\\w+\\\\.com$\"}", (const char *[]){"\"ann@ex.com\"", NULL},
          (const char *[]){"\"ann@ex.org\"", "\"@ex.com\"", NULL});
    error_case("{\"type\":\"string\",\"pattern\":\"(?=a)b\"}", "lookarounds");
    error_case("{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", "backreferences");
    error_case("{\"type\":\"string\",\"pattern\":\"a{1,99999}\"}", "too large");
    error_case("{\"type\":\"string\",\"pattern\":\"(ab\"}", "missing ')'");
    /* a pattern's bytes are one code point each, in shortest UTF-8: past
     * U+10FFFF (found by fuzz_json_schema: the grammar it wrote was refused),
     * a surrogate or an overlong form is an error; a 4-byte character is fine */
    error_case("{\"type\":\"string\",\"pattern\":\"a\xF6\x83\x83\x83\"}", "invalid UTF-8");
    error_case("{\"type\":\"string\",\"pattern\":\"[\xED\xA0\x80]\"}", "invalid UTF-8");
    error_case("{\"type\":\"string\",\"pattern\":\"\xC0\xAF\"}", "invalid UTF-8");
    cases("{\"type\":\"string\",\"pattern\":\"^a\xF0\x9F\x98\x80$\"}", (const char *[]){"\"a\xF0\x9F\x98\x80\"", NULL},
          (const char *[]){"\"a\"", NULL});
    /* a repeated part that can match "" would be a left-recursive rule (the
     * fuzz target found "()+"): refused; bounded or non-empty repeats work */
    error_case("{\"type\":\"string\",\"pattern\":\"^a()+b$\"}", "can match the empty string");
    error_case("{\"type\":\"string\",\"pattern\":\"(a|b*)*\"}", "can match the empty string");
    cases("{\"type\":\"string\",\"pattern\":\"^(ab)+(c?)?x*(d*){2,3}$\"}",
          (const char *[]){"\"ab\"", "\"ababcxxdd\"", NULL}, (const char *[]){"\"\"", "\"abe\"", NULL});
    error_case("{\"type\":\"string\",\"pattern\":\"a\",\"format\":\"date\"}", "together with 'format'");
    error_case("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"multipleOf\":3}}}",
               "'multipleOf' is not supported (at #/properties/a)");
    error_case("{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"next\":{\"$ref\":\"#/$defs/n\"}}}},\"$ref\":\"#/$defs/n\"}",
               "recursive '$ref'");
    error_case("{\"$ref\":\"#/$defs/missing\"}", "points to nothing");
    error_case("{\"$ref\":\"http://example.com/s.json\"}", "only references inside");
    error_case("{\"type\":\"string\",\"format\":\"email\"}", "format 'email' is not supported");
    error_case("{\"allOf\":[{\"type\":\"string\"},{\"maxLength\":3}]}", "'allOf' with 2 schemas");
    error_case("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "minimum is above maximum");
    error_case("{\"type\":\"number\",\"minimum\":0.5}", "whole-number bounds");
    error_case("{\"type\":\"object\",\"required\":[\"x\"]}", "required property 'x' is not in 'properties'");
    error_case("{\"type\":\"array\",\"items\":[{\"type\":\"string\"}]}", "tuple");
    error_case("{\"type\":\"array\",\"maxItems\":1000000}", "over this server's limit");
    error_case("{\"type\":\"frobnicate\"}", "unknown type 'frobnicate'");
    error_case("{\"type\":", "not valid JSON");
    /* 1,000 levels of nesting: an error, quickly */
    {
        size_t cap = 64 * 1000 + 64, o = 0;
        char *s = malloc(cap);
        for (int i = 0; i < 1000; i++) o += (size_t)sprintf(s + o, "{\"type\":\"array\",\"items\":");
        o += (size_t)sprintf(s + o, "{\"type\":\"integer\"}");
        for (int i = 0; i < 1000; i++) s[o++] = '}';
        s[o] = 0;
        Error err = {{0}};
        double t0 = time_now();
        char *gb = json_schema_to_gbnf(s, o, &err);
        CHECK(!gb && (strstr(err.msg, "nested deeper") || strstr(err.msg, "not valid JSON")), "deep: %s", err.msg);
        CHECK(time_now() - t0 < 2.0, "deep took too long");
        free(gb);
        free(s);
    }
    /* 100,000 enum values: an error, quickly */
    {
        size_t cap = 100000 * 12 + 64, o = 0;
        char *s = malloc(cap);
        o += (size_t)sprintf(s, "{\"enum\":[");
        for (int i = 0; i < 100000; i++) o += (size_t)sprintf(s + o, "%s\"v%d\"", i ? "," : "", i);
        o += (size_t)sprintf(s + o, "]}");
        error_case(s, "over this server's limit of 4096");
        free(s);
    }
    /* an enum at the limit works and matches quickly */
    {
        size_t cap = 4096 * 16 + 64, o = 0;
        char *s = malloc(cap);
        o += (size_t)sprintf(s, "{\"enum\":[");
        for (int i = 0; i < 4096; i++) o += (size_t)sprintf(s + o, "%s\"value-%d\"", i ? "," : "", i);
        o += (size_t)sprintf(s + o, "]}");
        double t0 = time_now();
        Grammar *g = compile(s);
        CHECK(g && m(g, "\"value-4095\"") == 1 && m(g, "\"value-4096\"") == 0, "4096-value enum");
        CHECK(time_now() - t0 < 2.0, "4096-value enum took %.2f s", time_now() - t0);
        grammar_free(g);
        free(s);
    }
    return check_report("json_schema");
}
