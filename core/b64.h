/*
 * b64.h — base64 (RFC 4648, standard alphabet, '=' padding), for binary
 * arrays inside JSON answers (routed experts, docs/http.md).
 */
#ifndef MOE_CORE_B64_H
#define MOE_CORE_B64_H

#include <stddef.h>
#include <stdint.h>

/* Characters moe_b64_encode writes for n bytes (without the NUL), or
 * SIZE_MAX if that does not fit a size_t. */
size_t moe_b64_encoded_len(size_t n);
/* NUL-terminated base64 of data[0..n) (free() it). */
char *moe_b64_encode(const uint8_t *data, size_t n);
/* Decodes len characters of padded base64 into out (room for len / 4 * 3
 * bytes); returns the bytes written, or -1 if the text is not padded base64
 * (a length not a multiple of 4, a character outside the alphabet, padding
 * anywhere but the end). */
long long moe_b64_decode(const char *s, size_t len, uint8_t *out);

#endif
