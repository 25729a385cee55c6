/*
 * b64.c — base64 (b64.h).
 */
#include "b64.h"

#include "base.h"

static const char ALPHA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t moe_b64_encoded_len(size_t n)
{
    const size_t groups = n / 3 + (n % 3 != 0);
    return groups > (SIZE_MAX - 1) / 4 ? SIZE_MAX : groups * 4;
}

char *moe_b64_encode(const uint8_t *data, size_t n)
{
    const size_t len = moe_b64_encoded_len(n);
    MOE_ASSERT(len != SIZE_MAX);
    char *o = moe_xmalloc(len + 1), *p = o;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        const uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        *p++ = ALPHA[v >> 18];
        *p++ = ALPHA[v >> 12 & 63];
        *p++ = ALPHA[v >> 6 & 63];
        *p++ = ALPHA[v & 63];
    }
    if (n - i == 1) {
        const uint32_t v = (uint32_t)data[i] << 16;
        *p++ = ALPHA[v >> 18];
        *p++ = ALPHA[v >> 12 & 63];
        *p++ = '=';
        *p++ = '=';
    } else if (n - i == 2) {
        const uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
        *p++ = ALPHA[v >> 18];
        *p++ = ALPHA[v >> 12 & 63];
        *p++ = ALPHA[v >> 6 & 63];
        *p++ = '=';
    }
    *p = 0;
    return o;
}

static int value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

long long moe_b64_decode(const char *s, size_t len, uint8_t *out)
{
    if (len % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        const bool last = i + 4 == len;
        const int pad = last ? (s[i + 3] == '=') + (s[i + 2] == '=' && s[i + 3] == '=') : 0;
        int v[4];
        for (int k = 0; k < 4 - pad; k++)
            if ((v[k] = value(s[i + (size_t)k])) < 0) return -1;
        for (int k = 4 - pad; k < 4; k++) v[k] = 0;
        const uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2) out[o++] = (uint8_t)(w >> 8);
        if (pad < 1) out[o++] = (uint8_t)w;
    }
    return (long long)o;
}
