/*
 * check.h — the tests' assertion macros.  A failed CHECK prints file:line
 * and the expression and the test goes on; check_summary() prints the
 * count and returns the exit code (non-zero if anything failed).
 */
#ifndef MOE_TEST_CHECK_H
#define MOE_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_n_pass, check_n_fail;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) check_n_pass++;                                                    \
        else {                                                                       \
            check_n_fail++;                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                                           \
    do {                                                                               \
        if (cond) check_n_pass++;                                                      \
        else {                                                                         \
            check_n_fail++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
        }                                                                              \
    } while (0)

/* Checks that msg contains want (a specific error message). */
#define CHECK_CONTAINS(msg, want) \
    CHECK_MSG(strstr((msg), (want)) != NULL, "message \"%s\" lacks \"%s\"", (msg), (want))

static inline int check_summary(const char *name)
{
    printf("%s: %d checks passed, %d failed\n", name, check_n_pass, check_n_fail);
    return check_n_fail ? 1 : 0;
}

/* Path of a fixture file: $MOE_FIXTURES/rel (fatal if the variable is unset). */
static inline const char *fixture_path(const char *rel)
{
    static char buf[8][4096];
    static int k;
    const char *dir = getenv("MOE_FIXTURES");
    if (!dir) {
        fprintf(stderr, "MOE_FIXTURES is not set\n");
        exit(2);
    }
    char *b = buf[k++ & 7];
    snprintf(b, 4096, "%s/%s", dir, rel);
    return b;
}

#endif
