#!/bin/sh
# bench-kern --stream, tiny (--quick): each of the 6 classes on 1 and 2
# threads with the bits of one thread's product (the program exits 1 when a
# thread's rows differ), --only keeping one class, and bad values refused
# with status 2.  Figures are not checked: they mean nothing at this size.
set -eu
BK=$1
fail() { echo "FAIL: $*"; exit 1; }
o=$("$BK" --stream --quick) || fail "--stream --quick exited $?"
[ "$(printf '%s\n' "$o" | grep -c ': kernel .* same bits$')" = 12 ] || fail "want 12 lines with the same bits: $o"
for c in q4_K q6_K q5_0 q8_0 k_b v_b; do
  [ "$(printf '%s\n' "$o" | grep -c "^stream $c .* same bits\$")" = 2 ] || fail "class $c: $o"
done
o=$("$BK" --stream --quick --only k_b) || fail "--only k_b exited $?"
[ "$(printf '%s\n' "$o" | grep -c '^stream k_b .* 8192 x 128 ')" = 1 ] || fail "--only k_b: $o"
o=$("$BK" --stream --quick --only q6_K) || fail "--only q6_K exited $?"
[ "$(printf '%s\n' "$o" | grep -c '^stream q6_K .* same bits$')" = 2 ] || fail "--only q6_K: $o"
[ "$(printf '%s\n' "$o" | grep -c '^stream')" = 3 ] || fail "--only q6_K printed other classes: $o"
for bad in "--stream --mb 0" "--stream --threads 0" "--mb 8" "--stream --only q9" "--stream --set"; do
  set +e
  # shellcheck disable=SC2086 # the words of $bad are the arguments
  "$BK" $bad > /dev/null 2>&1
  rc=$?
  set -e
  [ $rc = 2 ] || fail "'$bad' exited $rc, not 2"
done
set +e
MOE_L2_PREFETCH=maybe "$BK" --stream --quick > /dev/null 2>&1
rc=$?
set -e
[ $rc = 2 ] || fail "MOE_L2_PREFETCH=maybe exited $rc, not 2"
echo "bench-kern --stream: ok"
