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

/* SANITIZED is 1 in a build with AddressSanitizer or UndefinedBehaviorSanitizer
 * (clang's __has_feature, gcc's __SANITIZE_ADDRESS__), else 0.  Tests use
 * it to thin out sweeps that are too slow under instrumentation and to skip
 * cases ASan cannot run (its shadow memory gets in the way of huge
 * mappings).  One definition here so all tests agree on what "sanitized"
 * means. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(SANITIZED)
#define SANITIZED 1
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

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
