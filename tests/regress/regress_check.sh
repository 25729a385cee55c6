#!/bin/sh
# Regression check: the logits this build gives equal, bit for bit, the ones
# stored in tests/data/regress/ (dumped by dump.sh before the kernel-set
# reshape), for every kernel set this CPU runs:
#   regress_check.sh BIN_DIR DATA_DIR
# reference and avx2 against their own files; avx512 against the avx2 files
# (the avx512 set gives avx2's bits by design).  A forced set (MOE_KERNELS,
# as scripts/test.sh sets it) is the strongest set checked, so the check
# stays valid in a suite run with the set capped.
set -eu
BIN=$1; DATA=$2
here=$(cd "$(dirname "$0")" && pwd)
FX=${MOE_FIXTURES:?MOE_FIXTURES not set}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-regress.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# the set moe-run picks here (MOE_KERNELS caps it; a bad value fails here)
if ! out=$("$BIN/moe-run" --model "$FX/models/tiny_f32.gguf" --tokens 1 -n 1 --stats 2>&1 >/dev/null); then
  echo "FAIL: moe-run: $out"; exit 1
fi
best=$(echo "$out" | sed -n 's/^kernels: \([a-z0-9]*\).*/\1/p')
case $best in
  reference) sets="reference" ;;
  avx2) sets="reference avx2" ;;
  avx512) sets="reference avx2 avx512" ;;
  *) echo "FAIL: cannot tell the kernel set (got '$best')"; exit 1 ;;
esac
for set in $sets; do
  want=$set
  [ "$set" = avx512 ] && want=avx2
  if [ "$set" = reference ]; then
    sh "$here/dump.sh" "$BIN" "$tmp/$set" "$want" --reference-kernels
  else
    MOE_KERNELS=$set sh "$here/dump.sh" "$BIN" "$tmp/$set" "$want"
  fi
  n=0
  for f in "$DATA"/*."$want".*; do
    cmp -- "$f" "$tmp/$set/$(basename "$f")" || { echo "FAIL: kernels $set: $(basename "$f") differs"; exit 1; }
    n=$((n + 1))
  done
  [ "$n" -ge 30 ] || { echo "FAIL: only $n stored files for $want"; exit 1; }
  echo "kernels $set: $n files bitwise equal to the stored $want data"
done
echo "ok: $sets"
