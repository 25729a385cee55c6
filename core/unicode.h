/*
 * unicode.h — UTF-8 decoding and the Unicode properties the tokenizer's
 * split rules need (general category L/M/N/P/S/Z/C and White_Space).
 *
 * The property table is generated at build time by tools/gen/gen_unicode.py
 * from the Unicode Character Database (Debian package unicode-data), never
 * typed by hand: core/unicode.cmake runs the generator.
 *
 * Decoding is strict (RFC 3629): overlong forms, surrogates, values above
 * U+10FFFF and truncated sequences are invalid.  moe_utf8_decode never reads
 * past the end of its buffer and always consumes at least one byte, so a
 * caller can walk any byte string and treat each invalid byte on its own.
 */
#ifndef MOE_UNICODE_H
#define MOE_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Flag bits per code point (must match tools/gen/gen_unicode.py). */
enum {
    MOE_UC_L = 0x01,  /* letter (Lu Ll Lt Lm Lo) */
    MOE_UC_M = 0x02,  /* mark (Mn Mc Me) */
    MOE_UC_N = 0x04,  /* number (Nd Nl No) */
    MOE_UC_P = 0x08,  /* punctuation (Pc Pd Ps Pe Pi Pf Po) */
    MOE_UC_S = 0x10,  /* symbol (Sm Sc Sk So) */
    MOE_UC_Z = 0x20,  /* separator (Zs Zl Zp) */
    MOE_UC_C = 0x40,  /* other, assigned (Cc Cf Cs Co); unassigned Cn has no category bit */
    MOE_UC_WS = 0x80, /* White_Space property (what regex \s means) */
};

/* Returned by moe_utf8_decode for a byte that starts no valid sequence. */
#define MOE_UTF8_INVALID 0xFFFFFFFFu

extern const uint16_t moe_uc_stage1[0x110000 >> 8];
extern const uint8_t moe_uc_stage2[];

/* Property flags of a code point; 0 for unassigned, invalid or out of range. */
static inline uint8_t moe_uc_flags(uint32_t cp)
{
    if (cp >= 0x110000) return 0;
    return moe_uc_stage2[((uint32_t)moe_uc_stage1[cp >> 8] << 8) | (cp & 0xFF)];
}

/* Decodes one code point from s[0..n) (n >= 1).  Stores its byte length
 * (1..4) in *len and returns it, or returns MOE_UTF8_INVALID with *len = 1
 * when s[0] does not start a well-formed sequence. */
uint32_t moe_utf8_decode(const unsigned char *s, size_t n, size_t *len);

/* Writes cp (<= U+10FFFF, not a surrogate) as UTF-8 into out[4]; returns
 * the length, or 0 for a value that cannot be encoded. */
size_t moe_utf8_encode(uint32_t cp, unsigned char out[4]);

/* Length of the longest prefix of s[0..n) that is whole, valid UTF-8. */
size_t moe_utf8_valid_prefix(const unsigned char *s, size_t n);

/* For s[0..n) that does not start with a valid sequence: the length (>= 1)
 * of its maximal subpart, the bytes that could begin a valid sequence
 * (Unicode's unit for one U+FFFD).  *may_complete is true when those bytes
 * reach the end of the buffer and more bytes could still complete them. */
size_t moe_utf8_partial(const unsigned char *s, size_t n, bool *may_complete);
#endif
