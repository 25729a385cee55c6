# bench/lib/procs.sh — the servers a bench script starts: their pids, a stop
# that ends them all (TERM, then KILL after 5 s), and waiting for a line a
# program prints (its readiness message), never a fixed sleep.
# shellcheck shell=bash

pids=()

stop_all() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null || true
  done
  pids=()
}

wait_for() { # FILE REGEX SECONDS: until a line of FILE matches
  local i
  for i in $(seq 1 $(($3 * 10))); do grep -Eq "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
