/*
 * io.h — the small input helpers every program needs once: reading a whole
 * file with a size cap, and parsing a comma-separated list of token ids.
 * Both treat their input as untrusted (sizes capped, every item checked).
 */
#ifndef MOE_IO_H
#define MOE_IO_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

/* Reads all of path ("-" is standard input) into a new buffer with a NUL
 * after the last byte (free() it).  More than max_bytes is an error that
 * says so; the message names the path. */
int moe_file_read(const char *path, size_t max_bytes, char **out, size_t *len, moe_err *err);

/* Upper bound on ids in one list (a prompt of 256 Ki tokens). */
#define MOE_IDS_MAX 262144

/* Parses s[0..len) = "1,2,3": decimal ids in [0, INT32_MAX], every
 * character of an item a digit (no blanks, signs or empty items), at most
 * MOE_IDS_MAX of them.  A new array goes to *out (free() it).  Errors name
 * the item: "id 3 ('x') is not a token id". */
int moe_ids_parse(const char *s, size_t len, int32_t **out, size_t *n, moe_err *err);

#endif
