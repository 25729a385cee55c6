#!/bin/sh
# mtp_test.sh MTP_DUMP MTP_REF — a V3-style model with one MTP block
# (moe-mkmodel --preset v3-mini --mtp 1, F32): the engine's trunk and MTP
# draft rows on the float path within 2e-3 of the float64 reference (in
# practice ~1e-6), the int8 path's draft argmax reported; the MTP step's
# pieces bitwise its whole on both paths (mtp_dump's own checks).
set -eu
dump=$1 ref=$2
bin=${MOE_BIN:?MOE_BIN not set}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-mtp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$bin/moe-mkmodel" --preset v3-mini --type f32 --mtp 1 -o "$tmp/m.gguf" 2>/dev/null
toks=0,17,42,99,150,260,7,33,201,5,211,77,12,290,64,128,3,9,27,81,243,100,300,111,222,333,44,55,66,77,88,99,1,2,3,4,5
mkdir -p "$tmp/f" "$tmp/i"
"$dump" "$tmp/m.gguf" "$tmp/f" "$toks" exact
/usr/bin/python3 "$ref" compare "$tmp/m.gguf" "$tmp/f" "$toks" 2e-3
"$dump" "$tmp/m.gguf" "$tmp/i" "$toks" int8
echo "ok: MTP draft rows match the float64 reference"
