/*
 * b64_test.c — base64 (core/b64): RFC 4648's test vectors, a round trip of
 * every length up to 64 with every byte value, and refused text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "b64.h"
#include "check.h"

int main(void)
{
    /* RFC 4648 section 10 */
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char *e = moe_b64_encode((const uint8_t *)plain[i], strlen(plain[i]));
        CHECK(strcmp(e, coded[i]) == 0);
        CHECK(moe_b64_encoded_len(strlen(plain[i])) == strlen(coded[i]));
        uint8_t out[8];
        CHECK(moe_b64_decode(coded[i], strlen(coded[i]), out) == (long long)strlen(plain[i]));
        CHECK(memcmp(out, plain[i], strlen(plain[i])) == 0);
        free(e);
    }
    uint8_t data[256], back[256];
    for (int i = 0; i < 256; i++) data[i] = (uint8_t)(255 - i);
    for (size_t n = 0; n <= 64; n++)
        for (size_t off = 0; off + n <= 256; off += 64) {
            char *e = moe_b64_encode(data + off, n);
            CHECK(strlen(e) == moe_b64_encoded_len(n));
            CHECK(moe_b64_decode(e, strlen(e), back) == (long long)n);
            CHECK(memcmp(back, data + off, n) == 0);
            free(e);
        }
    uint8_t out[8];
    CHECK(moe_b64_decode("Zg=", 3, out) == -1);      /* not a multiple of 4 */
    CHECK(moe_b64_decode("Z*==", 4, out) == -1);     /* outside the alphabet */
    CHECK(moe_b64_decode("Zg==Zg==", 8, out) == -1); /* padding in the middle */
    CHECK(moe_b64_decode("Z===", 4, out) == -1);
    CHECK(moe_b64_encoded_len(SIZE_MAX) == SIZE_MAX);
    return check_summary("b64_test");
}
