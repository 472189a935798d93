/* check.h - the unit tests' one assertion and tally.
 *
 * CHECK(cond, fmt, ...) counts a pass, or prints the file, line and message
 * of a failure and lets the test go on, so one run lists every failure;
 * CHECK_EXPR(cond) does the same with the condition's text as the message.
 * check_report(name) prints "NAME: P passed, F failed" and gives main's exit
 * status. A test file includes this once; the tally is that program's. */
#ifndef GROK_TEST_CHECK_H
#define GROK_TEST_CHECK_H

#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (cond) check_passed++;                                \
        else {                                                   \
            check_failed++;                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fprintf(stderr, "\n");                               \
        }                                                        \
    } while (0)

#define CHECK_EXPR(cond) CHECK(cond, "%s", #cond)

static inline int check_report(const char *name) {
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed != 0;
}

#endif
