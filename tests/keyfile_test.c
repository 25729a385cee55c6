/*
 * keyfile_test — Z85 and the CURVE key files (core/keyfile.h): the spec's
 * vector, round trips, every refusal with its message, file modes, lists
 * from a file and from a directory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "keyfile.h"

static char dir[256];

static void put(const char *name, const char *text, mode_t mode)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) {
        perror(p);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
    chmod(p, mode);
}

static const char *path(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void test_z85(void)
{
    /* RFC 32's example */
    const uint8_t hello[8] = {0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B};
    char out[11];
    moe_err err;
    CHECK(moe_z85_encode(hello, 8, out, sizeof out, &err) == MOE_OK);
    CHECK(!strcmp(out, "HelloWorld"));
    uint8_t back[8];
    CHECK(moe_z85_decode("HelloWorld", 10, back, sizeof back, &err) == MOE_OK);
    CHECK(!memcmp(back, hello, 8));
    /* every byte value through a key and back */
    moe_key k, k2;
    for (int i = 0; i < MOE_KEY_BYTES; i++) k.b[i] = (uint8_t)(i * 37 + 255);
    char z[MOE_KEY_Z85_LEN + 1];
    moe_key_z85(&k, z);
    CHECK(strlen(z) == MOE_KEY_Z85_LEN);
    CHECK(moe_key_from_z85(z, strlen(z), &k2, &err) == MOE_OK && !memcmp(k.b, k2.b, MOE_KEY_BYTES));
    memset(k.b, 0xFF, sizeof k.b); /* the largest groups */
    moe_key_z85(&k, z);
    CHECK(moe_key_from_z85(z, strlen(z), &k2, &err) == MOE_OK && !memcmp(k.b, k2.b, MOE_KEY_BYTES));
    /* refusals */
    CHECK(moe_z85_encode(hello, 7, out, sizeof out, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "not a multiple of 4");
    CHECK(moe_z85_encode(hello, 8, out, 10, &err) == MOE_ERR); /* no room for the NUL */
    CHECK(moe_z85_decode("Hello", 5, back, 3, &err) == MOE_ERR);
    CHECK(moe_z85_decode("Hell", 4, back, sizeof back, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "not a multiple of 5");
    CHECK(moe_z85_decode("Hel o", 5, back, sizeof back, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "character 4 (0x20) is not in the Z85 alphabet");
    CHECK(moe_z85_decode("Hel\"o", 5, back, sizeof back, &err) == MOE_ERR);
    CHECK(moe_z85_decode("#####", 5, back, sizeof back, &err) == MOE_ERR); /* 85^5 - 1 > 2^32 - 1 */
    CHECK_CONTAINS(err.msg, "above 32 bits");
    CHECK(moe_z85_decode("%nSc0", 5, back, sizeof back, &err) == MOE_OK); /* 2^32 - 1 exactly */
    CHECK(back[0] == 0xFF && back[3] == 0xFF);
    CHECK(moe_z85_decode("%nSc1", 5, back, sizeof back, &err) == MOE_ERR);
    CHECK(moe_key_from_z85(z, 39, &k2, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "40 Z85 characters, not 39");
}

static void test_files(void)
{
    moe_err err;
    moe_key pub, sec, a, b;
    for (int i = 0; i < MOE_KEY_BYTES; i++) {
        pub.b[i] = (uint8_t)i;
        sec.b[i] = (uint8_t)(200 - i);
    }
    CHECK(moe_keyfile_write_pair(dir, "node-1", &pub, &sec, &err) == MOE_OK);
    struct stat st;
    CHECK(stat(path("node-1.key_secret"), &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(stat(path("node-1.key"), &st) == 0 && (st.st_mode & 0777) == 0644);
    CHECK(moe_keyfile_read_public(path("node-1.key"), &a, &err) == MOE_OK && !memcmp(a.b, pub.b, 32));
    CHECK(moe_keyfile_read_secret(path("node-1.key_secret"), &b, &err) == MOE_OK && !memcmp(b.b, sec.b, 32));
    /* never replaced */
    CHECK(moe_keyfile_write_pair(dir, "node-1", &sec, &pub, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "File exists");
    CHECK(moe_keyfile_read_public(path("node-1.key"), &a, &err) == MOE_OK && !memcmp(a.b, pub.b, 32));
    /* names that could escape the directory or hide */
    CHECK(moe_keyfile_write_pair(dir, "../x", &pub, &sec, &err) == MOE_ERR);
    CHECK(moe_keyfile_write_pair(dir, ".hidden", &pub, &sec, &err) == MOE_ERR);
    CHECK(moe_keyfile_write_pair(dir, "", &pub, &sec, &err) == MOE_ERR);
    CHECK(moe_keyfile_write_pair("/nonexistent-dir-moe", "n", &pub, &sec, &err) == MOE_ERR);
    /* a secret open to the group or others, or not a regular file */
    chmod(path("node-1.key_secret"), 0640);
    CHECK(moe_keyfile_read_secret(path("node-1.key_secret"), &b, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "must not be open to group or others (mode 0640");
    chmod(path("node-1.key_secret"), 0604);
    CHECK(moe_keyfile_read_secret(path("node-1.key_secret"), &b, &err) == MOE_ERR);
    chmod(path("node-1.key_secret"), 0400);
    CHECK(moe_keyfile_read_secret(path("node-1.key_secret"), &b, &err) == MOE_OK);
    CHECK(moe_keyfile_read_secret(dir, &b, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "regular file");
    CHECK(moe_keyfile_read_secret(path("missing"), &b, &err) == MOE_ERR);
    CHECK(moe_secret_file_check(path("node-1.key"), &err) == MOE_ERR); /* 0644 */
    /* the text: comments, blanks, CRLF, a trailing name; one key a file */
    char z[MOE_KEY_Z85_LEN + 1], text[256];
    moe_key_z85(&pub, z);
    snprintf(text, sizeof text, "# comment\r\n\r\n   %s  node-1\r\n", z);
    put("crlf.key", text, 0644);
    CHECK(moe_keyfile_read_public(path("crlf.key"), &a, &err) == MOE_OK && !memcmp(a.b, pub.b, 32));
    snprintf(text, sizeof text, "%s\n%s\n", z, z);
    put("two.key", text, 0644);
    CHECK(moe_keyfile_read_public(path("two.key"), &a, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "line 2: a second key");
    put("empty.key", "# nothing\n\n", 0644);
    CHECK(moe_keyfile_read_public(path("empty.key"), &a, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "no key in it");
    put("short.key", "abc\n", 0644);
    CHECK(moe_keyfile_read_public(path("short.key"), &a, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "short.key: line 1: a key is 40 Z85 characters, not 3");
    char nul[64] = "0123456789";
    nul[4] = '\0';
    FILE *f = fopen(path("nul.key"), "w");
    fwrite(nul, 1, 10, f);
    fclose(f);
    CHECK(moe_keyfile_read_public(path("nul.key"), &a, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "NUL");
    unlink(path("crlf.key"));
    unlink(path("two.key"));
    unlink(path("empty.key"));
    unlink(path("short.key"));
    unlink(path("nul.key"));
}

static void test_lists(void)
{
    moe_err err;
    moe_key keys[3];
    char z[3][MOE_KEY_Z85_LEN + 1];
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < MOE_KEY_BYTES; i++) keys[k].b[i] = (uint8_t)(k * 50 + i);
        moe_key_z85(&keys[k], z[k]);
    }
    char text[512];
    snprintf(text, sizeof text, "# clients\n%s alice\n\n%s bob\n%s\n%s alice-again\n", z[0], z[1], z[2], z[0]);
    put("list", text, 0644);
    moe_key *got;
    size_t n;
    CHECK(moe_keylist_read(path("list"), &got, &n, &err) == MOE_OK);
    CHECK(n == 3); /* the duplicate kept once */
    for (size_t i = 0; i < n && i < 3; i++) CHECK(!memcmp(got[i].b, keys[i].b, 32));
    free(got);
    snprintf(text, sizeof text, "%s\nnot-a-key\n", z[0]);
    put("badlist", text, 0644);
    CHECK(moe_keylist_read(path("badlist"), &got, &n, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "badlist: line 2");
    CHECK(got == NULL && n == 0);
    put("emptylist", "# nobody\n", 0644);
    CHECK(moe_keylist_read(path("emptylist"), &got, &n, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "no public key in it");
    CHECK(moe_keylist_read(path("missing"), &got, &n, &err) == MOE_ERR);
    /* a directory: NAME.key files only (not hidden ones, not secrets, not subdirectories) */
    char sub[300];
    snprintf(sub, sizeof sub, "%s/d", dir);
    CHECK(mkdir(sub, 0755) == 0);
    snprintf(text, sizeof text, "%s\n", z[1]);
    put("d/b.key", text, 0644);
    snprintf(text, sizeof text, "%s\n", z[2]);
    put("d/a.key", text, 0644);
    put("d/.c.key", "junk\n", 0644);
    put("d/a.key_secret", "junk\n", 0600);
    put("d/notes.txt", "junk\n", 0644);
    char sub2[320];
    snprintf(sub2, sizeof sub2, "%s/d/x.key", dir);
    CHECK(mkdir(sub2, 0755) == 0);
    CHECK(moe_keylist_read(sub, &got, &n, &err) == MOE_OK);
    CHECK(n == 2); /* in name order: a.key, b.key */
    if (n == 2) CHECK(!memcmp(got[0].b, keys[2].b, 32) && !memcmp(got[1].b, keys[1].b, 32));
    free(got);
    put("d/bad.key", "bad\n", 0644);
    CHECK(moe_keylist_read(sub, &got, &n, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "bad.key: line 1");
    unlink(path("d/bad.key"));
    unlink(path("d/b.key"));
    unlink(path("d/a.key"));
    CHECK(moe_keylist_read(sub, &got, &n, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "a directory of NAME.key files");
    rmdir(sub2);
    unlink(path("d/.c.key"));
    unlink(path("d/a.key_secret"));
    unlink(path("d/notes.txt"));
    rmdir(sub);
    unlink(path("list"));
    unlink(path("badlist"));
    unlink(path("emptylist"));
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/moe-keyfile.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    test_z85();
    test_files();
    test_lists();
    unlink(path("node-1.key"));
    unlink(path("node-1.key_secret"));
    rmdir(dir);
    return check_summary("keyfile_test");
}
