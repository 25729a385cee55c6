/*
 * prep.c — the prompt preparation pool (see prep.h): a mutex, a condition
 * for the workers, a FIFO of jobs to do and one of jobs done, and an
 * eventfd that is readable while the done FIFO is not empty.
 */
#include "prep.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bgpool.h"

struct moe_prep {
    moe_bgpool *pool;
    int max_jobs, n_jobs;     /* submitted and not yet freed (the loop's only) */
};

static void run(void *item)
{
    moe_prep_job *j = item;
    const double t0 = moe_now();
    j->code = moe_request_new(&j->q, &j->toks, &j->model, &j->spec, &j->err);
    j->seconds = moe_now() - t0;
}

static void job_release(void *item)
{
    moe_prep_job *j = item;
    moe_request_free(j->q);
    moe_tokens_free(&j->toks);
    free(j->arena);
    free(j);
}

int moe_prep_init(moe_prep **out, int n_threads, int max_jobs, moe_err *err)
{
    *out = NULL;
    if (max_jobs < 1 || max_jobs > 4096) return moe_err_set(err, "prompt jobs: %d is not in 1..4096", max_jobs);
    moe_prep *p = moe_xcalloc(1, sizeof *p);
    if (moe_bgpool_init(&p->pool, n_threads, run, err)) {
        free(p);
        return MOE_ERR;
    }
    p->max_jobs = max_jobs;
    *out = p;
    return MOE_OK;
}

void moe_prep_free(moe_prep *p)
{
    if (!p) return;
    moe_bgpool_free(p->pool, job_release);
    free(p);
}

size_t moe_request_spec_bytes(const moe_request_spec *spec)
{
    size_t n = 0;
    switch (spec->kind) {
    case MOE_PROMPT_TEXT: n = spec->text ? strlen(spec->text) : 0; break;
    case MOE_PROMPT_IDS: n = spec->n_ids * sizeof(int32_t); break; /* the ids came in a frame: no overflow */
    case MOE_PROMPT_CHAT:
        for (size_t i = 0; i < spec->n_chat; i++)
            n += spec->chat[i].content_len + (spec->chat[i].role ? strlen(spec->chat[i].role) : 0);
        break;
    }
    return n;
}

/* ---- the deep copy: one arena, sized first, then filled ---------------------------- */

typedef struct arena {
    char *base;
    size_t used;
} arena;

static void *take(arena *a, size_t n, size_t align)
{
    a->used = (a->used + align - 1) / align * align;
    void *p = a->base ? a->base + a->used : NULL;
    a->used += n;
    return p;
}

static const char *copy_str(arena *a, const char *s, size_t n)
{
    char *d = take(a, n + 1, 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* Lays the spec's pointed-to data out in a (sizing it when a->base is NULL). */
static void lay_out(arena *a, const moe_request_spec *src, moe_request_spec *dst)
{
    *dst = *src;
    dst->id = src->id ? copy_str(a, src->id, strlen(src->id)) : NULL;
    dst->text = src->text ? copy_str(a, src->text, strlen(src->text)) : NULL;
    if (src->n_ids) {
        int32_t *ids = take(a, src->n_ids * sizeof *ids, sizeof *ids);
        if (ids) memcpy(ids, src->ids, src->n_ids * sizeof *ids);
        dst->ids = ids;
    }
    if (src->n_chat) {
        moe_chat_msg *m = take(a, src->n_chat * sizeof *m, _Alignof(moe_chat_msg));
        for (size_t i = 0; i < src->n_chat; i++) {
            const char *role = src->chat[i].role ? copy_str(a, src->chat[i].role, strlen(src->chat[i].role)) : NULL;
            const char *content = copy_str(a, src->chat[i].content ? src->chat[i].content : "", src->chat[i].content_len);
            if (m) m[i] = (moe_chat_msg){.role = role, .content = content, .content_len = src->chat[i].content_len};
        }
        dst->chat = m;
    }
    if (src->n_stop) {
        const char **st = take(a, src->n_stop * sizeof *st, _Alignof(const char *));
        for (size_t i = 0; i < src->n_stop; i++) {
            const char *s = copy_str(a, src->stop[i], strlen(src->stop[i]));
            if (st) st[i] = s;
        }
        dst->stop = st;
    }
}

moe_prep_job *moe_prep_submit(moe_prep *p, const moe_request_spec *spec, const moe_request_model *m, void *owner)
{
    if (p->n_jobs >= p->max_jobs) return NULL;
    p->n_jobs++;
    moe_prep_job *j = moe_xcalloc(1, sizeof *j);
    j->owner = owner;
    j->model = *m;
    arena a = {0};
    moe_request_spec sized;
    lay_out(&a, spec, &sized);
    a.base = j->arena = moe_xmalloc(a.used ? a.used : 1);
    a.used = 0;
    lay_out(&a, spec, &j->spec);
    moe_bgpool_submit(p->pool, j);
    return j;
}

int moe_prep_fd(const moe_prep *p) { return moe_bgpool_fd(p->pool); }

moe_prep_job *moe_prep_done(moe_prep *p)
{
    moe_prep_job *j = moe_bgpool_done(p->pool);
    if (j) { /* its copy of the spec is no longer needed */
        free(j->arena);
        j->arena = NULL;
        memset(&j->spec, 0, sizeof j->spec);
    }
    return j;
}

void moe_prep_job_free(moe_prep *p, moe_prep_job *j)
{
    if (!j) return;
    job_release(j);
    p->n_jobs--;
}

int moe_prep_pending(const moe_prep *p) { return p->n_jobs; }
