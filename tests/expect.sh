#!/usr/bin/env bash
# Runs a command and checks how it ends:
#   expect.sh EXIT_STATUS REGEX [MAX_SECONDS] -- COMMAND ARGS...
# EXIT_STATUS is a number or "nonzero"; REGEX (grep -E) must match the
# combined output; MAX_SECONDS (optional) bounds the run time.
set -u
want=$1 regex=$2
shift 2
max=""
if [ "$1" != "--" ]; then max=$1; shift; fi
[ "$1" = "--" ] || { echo "expect.sh: missing --" >&2; exit 2; }
shift
out=$(mktemp)
start=$(date +%s%N)
"$@" >"$out" 2>&1
rc=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
cat "$out"
ok=1
if [ "$want" = nonzero ]; then [ "$rc" -ne 0 ] || { echo "expect.sh: exit status 0, wanted non-zero"; ok=0; }
else [ "$rc" -eq "$want" ] || { echo "expect.sh: exit status $rc, wanted $want"; ok=0; }; fi
grep -Eq "$regex" "$out" || { echo "expect.sh: output lacks /$regex/"; ok=0; }
if [ -n "$max" ] && [ "$elapsed_ms" -gt $((max * 1000)) ]; then echo "expect.sh: took ${elapsed_ms} ms, limit ${max} s"; ok=0; fi
rm -f "$out"
[ $ok = 1 ] && echo "expect.sh: ok (exit $rc, ${elapsed_ms} ms)"
[ $ok = 1 ]
