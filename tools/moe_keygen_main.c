/*
 * moe-keygen — a CURVE key pair for the coordinator, a worker job or a
 * client (docs/security.md).
 *
 *   moe-keygen DIR NAME      writes DIR/NAME.key (public) and DIR/NAME.key_secret (mode 0600)
 *
 * Exit status: 0 written, 1 a failure (an existing file is never
 * replaced), 2 bad flags.
 */
#include <stdio.h>
#include <string.h>

#include "base.h"
#include "keyfile.h"
#include "link.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moe-keygen DIR NAME\n"
            "Makes a CURVE key pair (ZeroMQ's CurveZMQ) and writes it as Z85 text:\n"
            "  DIR/NAME.key          the public key: give it to the other side\n"
            "                        (--client-keys, --worker-key, --curve-server-key)\n"
            "  DIR/NAME.key_secret   the secret key, mode 0600: --curve-secret of its owner\n"
            "Neither file may exist already.  NAME: letters, digits, '-', '_', '.'.\n"
            "  -h, --help            this text\n"
            "Exit status: 0 written, 1 failure, 2 bad flags.\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc != 3 || argv[1][0] == '-' || argv[2][0] == '-') {
        usage(stderr);
        return 2;
    }
    moe_err err;
    moe_key pub, sec;
    if (moe_link_curve_keypair(&pub, &sec, &err) || moe_keyfile_write_pair(argv[1], argv[2], &pub, &sec, &err)) {
        fprintf(stderr, "moe-keygen: %s\n", err.msg);
        return 1;
    }
    char z[MOE_KEY_Z85_LEN + 1];
    moe_key_z85(&pub, z);
    printf("%s/%s.key %s\n", argv[1], argv[2], z);
    return 0;
}
