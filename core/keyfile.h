/*
 * keyfile.h — CURVE keys in files: Z85 text (ZeroMQ RFC 32), one key a
 * file, plus lists of public keys (a file of lines, or a directory).
 *
 * No libzmq here (zmq.h stays in proto/): a key is 32 bytes, written as 40
 * Z85 characters.  The files are small text files:
 *
 *   NAME.key         # comment lines and blank lines are skipped
 *                    the public key: one line of 40 Z85 characters
 *   NAME.key_secret  the secret key, the same way; mode 0600 — a secret
 *                    file that the group or others may read (or that is
 *                    not a regular file) is refused, as ssh does
 *   a key list       (--client-keys FILE): one public key a line, each
 *                    optionally followed by blanks and a name; or a
 *                    directory (--client-keys DIR): every NAME.key in it
 *
 * Everything read is untrusted: sizes capped (MOE_KEYFILE_MAX_BYTES a
 * file, MOE_KEYLIST_MAX keys), every character checked; errors name the
 * file and the line.
 */
#ifndef MOE_KEYFILE_H
#define MOE_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define MOE_KEY_BYTES 32
#define MOE_KEY_Z85_LEN 40           /* characters, without the NUL */
#define MOE_KEYFILE_MAX_BYTES (1u << 20)
#define MOE_KEYLIST_MAX 65536

typedef struct moe_key {
    uint8_t b[MOE_KEY_BYTES];
} moe_key;

/* Z85 of the key into out (MOE_KEY_Z85_LEN + 1 bytes, NUL-terminated). */
void moe_key_z85(const moe_key *k, char *out);
/* Exactly MOE_KEY_Z85_LEN characters of s; MOE_ERR if any is not Z85 or a
 * group of five does not fit 32 bits. */
int moe_key_from_z85(const char *s, size_t len, moe_key *k, moe_err *err);
/* Z85 of any multiple of 4 bytes / decoding of any multiple of 5
 * characters (the general codec, for tests and the spec's vectors). */
int moe_z85_encode(const uint8_t *in, size_t n, char *out, size_t cap, moe_err *err);
int moe_z85_decode(const char *in, size_t n, uint8_t *out, size_t cap, moe_err *err);

/* A file that holds a secret (a CURVE secret key, a TLS private key): a
 * regular file with no permission bit for group or others. */
int moe_secret_file_check(const char *path, moe_err *err);

/* A public key file (any mode). */
int moe_keyfile_read_public(const char *path, moe_key *k, moe_err *err);
/* A secret key file: a regular file, no permission bit for group or
 * others. */
int moe_keyfile_read_secret(const char *path, moe_key *k, moe_err *err);
/* Writes DIR/NAME.key (0644) and DIR/NAME.key_secret (0600), refusing to
 * replace either; NAME is letters, digits, '-', '_', '.' (not starting
 * with '.'), at most 64. */
int moe_keyfile_write_pair(const char *dir, const char *name, const moe_key *pub, const moe_key *sec, moe_err *err);

/* Public keys from a list file or a directory of NAME.key files, into a
 * new array (free() it); duplicates are kept once.  An empty list is an
 * error (it would admit nobody: surely a mistake). */
int moe_keylist_read(const char *path, moe_key **out, size_t *n, moe_err *err);

#endif
