/*
 * unicode.c — strict UTF-8 decoding/encoding.  The property tables live in
 * the generated moe_unicode_tables.c (see core/unicode.cmake).
 */
#include "unicode.h"

uint32_t moe_utf8_decode(const unsigned char *s, size_t n, size_t *len)
{
    unsigned char c = s[0];
    *len = 1;
    if (c < 0x80) return c;
    /* Lead byte decides the length and the allowed range of the second
     * byte, which is how overlongs (E0 80.., F0 80..), surrogates (ED A0..)
     * and values above U+10FFFF (F4 90.., F5..) are excluded up front. */
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { need = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3; cp = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4; cp = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return MOE_UTF8_INVALID;
    if (n < need) return MOE_UTF8_INVALID;
    if (s[1] < lo || s[1] > hi) return MOE_UTF8_INVALID;
    cp = (cp << 6) | (s[1] & 0x3F);
    for (size_t i = 2; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) return MOE_UTF8_INVALID;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *len = need;
    return cp;
}

size_t moe_utf8_encode(uint32_t cp, unsigned char out[4])
{
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp < 0x110000) {
        out[0] = (unsigned char)(0xF0 | (cp >> 18));
        out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (unsigned char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

size_t moe_utf8_valid_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0, len;
    while (i < n) {
        if (moe_utf8_decode(s + i, n - i, &len) == MOE_UTF8_INVALID) break;
        i += len;
    }
    return i;
}

size_t moe_utf8_partial(const unsigned char *s, size_t n, bool *may_complete)
{
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    *may_complete = false;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 1;
    size_t k = 1;
    while (k < need && k < n) {
        unsigned char b = s[k];
        bool ok = k == 1 ? (b >= lo && b <= hi) : (b & 0xC0) == 0x80;
        if (!ok) return k;
        k++;
    }
    if (k < need) *may_complete = true; /* ran out of bytes, not into a bad one */
    return k;
}
