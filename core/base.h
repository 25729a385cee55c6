/*
 * base.h — status codes, error messages, checked arithmetic and logging.
 *
 * Every module reports failures the same way: a function returns MOE_OK (0)
 * or MOE_ERR (-1) and, on error, writes a human-readable reason into a
 * caller-owned `moe_err`.  Broken invariants (programming errors) use
 * MOE_ASSERT, which prints file:line and aborts; bad input never does.
 *
 * Sizes that come from outside (files, sockets, flags) go through the
 * checked helpers below before they are used for allocation or indexing.
 */
#ifndef MOE_BASE_H
#define MOE_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { MOE_OK = 0, MOE_ERR = -1 };

#define MOE_ERR_MSG_MAX 512

typedef struct moe_err {
    char msg[MOE_ERR_MSG_MAX];
} moe_err;

#if defined(__GNUC__)
#define MOE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MOE_PRINTF(a, b)
#endif

/* Writes the formatted reason into err (if non-NULL) and returns MOE_ERR. */
int moe_err_set(moe_err *err, const char *fmt, ...) MOE_PRINTF(2, 3);
/* Prefixes an existing message: "ctx: old message". Returns MOE_ERR. */
int moe_err_prefix(moe_err *err, const char *fmt, ...) MOE_PRINTF(2, 3);

/* Broken invariant: print where and abort. Never used for bad input. */
#define MOE_ASSERT(cond)                                                   \
    do {                                                                   \
        if (!(cond)) moe_assert_fail(#cond, __FILE__, __LINE__);           \
    } while (0)
_Noreturn void moe_assert_fail(const char *cond, const char *file, int line);

/* Checked arithmetic: return true when the result fits, false on overflow. */
static inline bool moe_add_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_add_overflow(a, b, r); }
static inline bool moe_mul_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_mul_overflow(a, b, r); }
static inline bool moe_add_size(size_t a, size_t b, size_t *r) { return !__builtin_add_overflow(a, b, r); }
static inline bool moe_mul_size(size_t a, size_t b, size_t *r) { return !__builtin_mul_overflow(a, b, r); }

/* Rounds x up to a multiple of align (a power of two); false on overflow. */
static inline bool moe_align_up_u64(uint64_t x, uint64_t align, uint64_t *r)
{
    uint64_t t;
    if (!moe_add_u64(x, align - 1, &t)) return false;
    *r = t & ~(align - 1);
    return true;
}

static inline bool moe_is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* Allocation: these never return NULL; out of memory is fatal in one place. */
void *moe_xmalloc(size_t n);
void *moe_xcalloc(size_t count, size_t size);
void *moe_xrealloc(void *p, size_t n);
char *moe_xstrdup(const char *s);
/* n bytes on a 64-byte boundary (a cache line; free() it): vector loads of
 * activations never straddle lines, whatever else was allocated first. */
void *moe_xmalloc_lines(size_t n);

/* Logging to stderr with a level prefix; MOE_LOG env var sets the level. */
typedef enum { MOE_LOG_DEBUG = 0, MOE_LOG_INFO, MOE_LOG_WARN, MOE_LOG_ERROR } moe_log_level;
void moe_log(moe_log_level level, const char *fmt, ...) MOE_PRINTF(2, 3);

/* The format of every log line of the process (set once at start; text by
 * default):
 *   text  moe info: message key=value key="a value with spaces"
 *   json  {"ts":"2026-01-02T03:04:05.678Z","level":"info","msg":"message","key":value}
 * one line each; JSON strings are escaped and made valid UTF-8. */
typedef enum { MOE_LOG_TEXT = 0, MOE_LOG_JSON } moe_log_format;
void moe_log_set_format(moe_log_format f);
moe_log_format moe_log_get_format(void);

/* A line with named fields (e.g. one per finished request). */
typedef enum { MOE_LOGF_STR = 0, MOE_LOGF_INT, MOE_LOGF_NUM } moe_log_field_kind;
typedef struct moe_log_field {
    const char *key;          /* [a-z0-9_]: written as is */
    moe_log_field_kind kind;
    const char *s;            /* MOE_LOGF_STR (NULL reads as "") */
    int64_t i;                /* MOE_LOGF_INT */
    double d;                 /* MOE_LOGF_NUM (non-finite: "-" in text, null in JSON) */
} moe_log_field;
void moe_log_event(moe_log_level level, const char *msg, const moe_log_field *fields, int n_fields);

/* Rate-limited lines, for what can repeat without bound (a peer that
 * keeps sending the same bad frame, a send that keeps failing).  A limiter
 * remembers its last 8 distinct lines: a line seen again within
 * interval_s of when it was last printed is only counted; the count is
 * printed with the line once interval_s has passed
 * ("... [repeated 41 times in 60.0 s]"), or on its own ("last message
 * repeated 41 times: ...") when the line is pushed out by others or at
 * moe_log_limiter_flush.  So each distinct line costs at most one line per
 * interval, and no repeat goes uncounted.  Thread-safe. */
#define MOE_LOG_LIMIT_LINES 8
typedef struct moe_log_limit_slot {
    char line[512];
    moe_log_level level;
    int64_t repeats;          /* held back since it was last printed */
    double printed;           /* when (moe_now); 0: empty slot */
    uint64_t used;            /* for least-recently-used eviction */
} moe_log_limit_slot;
typedef struct moe_log_limiter {
    moe_log_limit_slot slot[MOE_LOG_LIMIT_LINES];
    uint64_t clock;
    bool listed;              /* known to moe_log_limiter_flush_all */
} moe_log_limiter;
void moe_log_limited(moe_log_limiter *l, double interval_s, moe_log_level level, const char *fmt, ...) MOE_PRINTF(4, 5);
/* Prints the counts still held back (e.g. at exit). */
void moe_log_limiter_flush(moe_log_limiter *l);
/* The same for every limiter used so far (a program calls it before it
 * exits, so no count is lost). */
void moe_log_limiter_flush_all(void);
/* One limiter per call site, 60 s interval. */
#define MOE_LOG_LIMITED(level, ...)                                        \
    do {                                                                   \
        static moe_log_limiter moe_ll_site_;                               \
        moe_log_limited(&moe_ll_site_, 60.0, level, __VA_ARGS__);         \
    } while (0)

/* Strict number parsing for flags and text files: whole string, in range. */
int moe_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out, moe_err *err);
int moe_parse_f64(const char *s, double lo, double hi, double *out, moe_err *err);

/* Monotonic time in seconds. */
double moe_now(void);

#endif
