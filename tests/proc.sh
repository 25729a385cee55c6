# tests/proc.sh — sourced by the end-to-end test scripts: a per-test
# folder, processes that never outlive the test, failure with the logs, and
# readiness by a message.
#
#   tmp=$(mktemp -d ...); source tests/proc.sh
#   setsid PROGRAM ... & pids+=("$!")    # each started in its own session
#   wait_for FILE REGEX SECONDS           # until a line matches (never a guess)
#   fail "what went wrong"                # prints the tail of every log, exits 1
: "${tmp:?set tmp before sourcing proc.sh}"
pids=()
cleanup() {
  # TERM first: mpirun.sh's own trap then kills the job's whole session
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    pkill -KILL -s "$p" 2>/dev/null
    kill -KILL "$p" 2>/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*.err "$tmp"/*.out; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done; exit 1; }
# The processes of session SID that still run, one pid a line.  A zombie
# is not one: it has ended and waits for whoever adopted it (its launcher
# gone, often init) to reap it, which happens on that process's schedule.
session_live() {
  local p st
  for p in $(pgrep -s "$1"); do
    st=$(sed 's/.*) //' "/proc/$p/stat" 2> /dev/null | cut -d' ' -f1) || continue
    [ -n "$st" ] && [ "$st" != Z ] && echo "$p"
  done
  return 0
}
wait_for() {
  local i
  for i in $(seq 1 $(($3 * 20))); do grep -Eq "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
