/*
 * vmflags.h — the madvise flags of a mapping, read back from
 * /proc/self/smaps for the tests (VmFlags: hg huge-page advice, nh
 * small-page advice, rr random access).
 */
#ifndef MOE_TESTS_VMFLAGS_H
#define MOE_TESTS_VMFLAGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The VmFlags line of the mapping that holds p ("" when none is found). */
static inline void vma_flags(const void *p, char *out, size_t cap)
{
    out[0] = '\0';
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return;
    char line[512];
    bool inside = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char dash;
        if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-') {
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        } else if (inside && !strncmp(line, "VmFlags:", 8)) {
            snprintf(out, cap, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

static inline bool has_flag(const char *flags, const char *fl)
{
    char want[8];
    snprintf(want, sizeof want, " %s", fl);
    for (const char *s = strstr(flags, want); s; s = strstr(s + 1, want))
        if (s[strlen(want)] == ' ' || s[strlen(want)] == '\n' || s[strlen(want)] == '\0') return true;
    return false;
}

#endif
