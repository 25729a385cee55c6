#!/usr/bin/env bash
# Faults of the worker job under the coordinator's supervisor (--launch),
# with real mpirun jobs over ipc:// sockets in a per-test folder:
#
#   fault_test.sh replay NP     64 concurrent streaming requests (greedy and
#       seeded, different lengths, e2e_client many) once undisturbed, then three
#       times with a fault in the middle: kill -9 of the rank holding a chosen
#       sequence after it emitted k tokens (k and the seed printed); SIGSTOP of
#       that rank; kill -9 of the mpirun launcher, then of every rank.  Each time
#       the fault must interrupt streams, every request completes, every client's
#       token sequence equals the undisturbed run's exactly, chunk indices
#       without a gap or a repeat.  Prints the recovery time (fault to the first
#       token after it; at most 30 s) and, for SIGSTOP, the detection time
#       (at most the worker timeout + 1 s).
#   fault_test.sh crashloop     a job that cannot start (a bad model path given to
#       the workers only): tried --max-start-failures times, then reported in
#       the log and on /health, no busy loop (coordinator < 2% of a core over 6 s)
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
model=${MOE_FIXTURES:?MOE_FIXTURES not set}/models/v3_mini_f32.gguf
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-fault.XXXXXX")
[ "$(kill -l KILL)/$(kill -l STOP)" = 9/19 ] || { echo "signal numbers are not Linux's"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMPI_MCA_rmaps_base_oversubscribe=1
coord=""
cleanup() {
  # the coordinator stops its job (SIGTERM, then kills its session)
  if [ -n "$coord" ]; then
    kill -TERM "$coord" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$coord" 2>/dev/null || break; sleep 0.05; done
    pkill -KILL -s "$coord" 2>/dev/null
    kill -KILL "$coord" 2>/dev/null
  fi
  # whatever a killed coordinator left (the job's session is a child's)
  pkill -KILL -f "moe-worker --model [^ ]* --coordinator ipc://$tmp/" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/coord.err "$tmp"/run*.out; do [ -f "$f" ] && { echo "--- $f"; tail -15 "$f"; }; done; exit 1; }
wait_for() {
  local i
  for i in $(seq 1 $(($3 * 20))); do grep -Eq "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
now_us() { echo $(( $(date +%s%N) / 1000 )); }

# start_coord WORKER_MODEL NP [coordinator flags]: the coordinator runs the job
start_coord() {
  local wmodel=$1 np=$2; shift 2
  MOE_LOG=debug setsid "$bin/moe-coordinator" --model "$model" --listen "ipc://$tmp/c" --workers "ipc://$tmp/w" \
      --ranks "$np" "$@" --launch mpirun --bind-to none --mca btl self,vader -x OPENBLAS_NUM_THREADS -np "$np" \
      "$bin/moe-worker" --model "$wmodel" --coordinator '{workers}' > "$tmp/coord.out" 2> "$tmp/coord.err" &
  coord=$!
}

# Per request, the tokens in chunk order, checking each chunk's index is the
# count so far (no repeat, no gap): 'REQ tok...' sorted; errors to stderr.
tokens_of() {
  awk '$1 == "c" { r = $2; if ($3 != n[r] + 0) { printf "%s: chunk index %s after %d tokens\n", r, $3, n[r] > "/dev/stderr"; bad = 1 }
                   for (i = 6; i <= NF; i++) t[r] = t[r] " " $i; n[r] += $4 }
       $1 == "f" { if ($3 != "length" || $4 != "OK") { printf "%s ended %s %s\n", $2, $3, $4 > "/dev/stderr"; bad = 1 } f[r = $2] = 1 }
       $1 == "e" { printf "%s refused: %s\n", $2, $0 > "/dev/stderr"; bad = 1 }
       END { for (r in t) print r t[r]; for (r in t) if (!(r in f)) { printf "%s never finished\n", r > "/dev/stderr"; bad = 1 }
             exit bad }' "$1" | sort
}

# pid of rank R of the current job (Open MPI's environment says which)
rank_pid() {
  local p
  for p in $(pgrep -f "^$bin/moe-worker --model [^ ]* --coordinator ipc://$tmp/w"); do
    [ "$(tr '\0' '\n' < /proc/"$p"/environ 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')" = "$1" ] && { echo "$p"; return; }
  done
}

case ${1:?usage: fault_test.sh replay NP | crashloop} in
replay)
  np=${2:?NP}
  timeout_ms=2000
  start_coord "$model" "$np" --worker-timeout-ms $timeout_ms --restart-backoff-ms 200 --metrics-file "$tmp/metrics"
  wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  "$bin/e2e_client" many 64 "ipc://$tmp/c" > "$tmp/base.out" || fail "the undisturbed run failed"
  tokens_of "$tmp/base.out" > "$tmp/base.tok" || fail "the undisturbed run is wrong"
  seed=${FAULT_SEED:-$(( $(date +%s) % 1000 ))}
  n=0
  for fault in kill stop launcher; do
    n=$((n + 1))
    # the chosen sequence: one of the 600-token requests; k of its tokens first
    j=$(( 8 * ((seed + n) % 8) )) k=$(( 3 + (seed * 7 + n) % 10 ))
    echo "fault $fault: seed $seed, request r$j after k=$k tokens"
    out=$tmp/run$n.out
    launcher=$(grep -Eo "(started|restarted) the worker job \(pid [0-9]+" "$tmp/coord.err" | tail -1 | grep -Eo "[0-9]+$")
    lines=$(wc -l < "$tmp/coord.err")
    # the job's ranks (it is ready: the last run ended on it), looked up now
    # so that little is left to do while r$j runs
    rpid=()
    for r in $(seq 0 $((np - 1))); do
      rpid[r]=$(rank_pid "$r")
      [ -n "${rpid[r]}" ] || fail "no process for rank $r"
    done
    # the client itself sends the signals once r$j has k tokens (a script
    # polling its output is too slow on a loaded machine); the pids go into
    # a file as soon as the coordinator says where r$j runs
    "$bin/e2e_client" many 64 "r$j" "$k" "$tmp/pids$n" "ipc://$tmp/c" > "$out" &
    client=$!
    rank=$(timeout 30 tail -n +"$lines" -f "$tmp/coord.err" | grep -m1 "request 'r$j' placed on rank" |
           sed 's/.*on rank \([0-9]*\).*/\1/')
    [ -n "$rank" ] || fail "r$j was never placed"
    pid=${rpid[rank]}
    case $fault in
      kill) echo "$pid 9" ;;
      stop) echo "$pid 19" ;;
      launcher) echo "$launcher 9"; for p in "${rpid[@]}"; do echo "$p 9"; done ;;
    esac > "$tmp/pids$n.tmp"
    mv "$tmp/pids$n.tmp" "$tmp/pids$n"
    wait_for "$out" "^fault " 30 || fail "the fault was never made (r$j ended before it had $k tokens and its pid was known?)"
    t_fault=$(awk '$1 == "fault" { print $2 }' "$out")
    done_at_fault=$(awk '$1 == "fault" { print $3 }' "$out")
    [ "$done_at_fault" -lt 64 ] || fail "every request had finished before the fault"
    echo "  $fault of rank $rank (pid $pid, launcher $launcher) with $((64 - done_at_fault)) of 64 streams running"
    if [ $fault = stop ]; then
      for _ in $(seq 1 400); do tail -n +"$lines" "$tmp/coord.err" | grep -q "supervisor: .*killed" && break; sleep 0.025; done
      det_ms=$(( ($(now_us) - t_fault) / 1000 ))
      tail -n +"$lines" "$tmp/coord.err" | grep -q "supervisor: .*killed" || fail "the stopped rank was never found"
      echo "  stopped rank detected and its job killed after $det_ms ms (bound: worker timeout $timeout_ms ms + 1000)"
      [ "$det_ms" -le $((timeout_ms + 1000)) ] || fail "detection took $det_ms ms"
    fi
    wait "$client" || fail "the client did not see every request end ($fault)"
    tokens_of "$out" > "$tmp/run$n.tok" || fail "a request was wrong after the $fault"
    cmp -s "$tmp/base.tok" "$tmp/run$n.tok" || { diff "$tmp/base.tok" "$tmp/run$n.tok" | head -5; fail "tokens differ from the undisturbed run ($fault)"; }
    # recovery: the fault to the first token after the pause it caused (the
    # longest silence after the fault; tokens already on their way when the
    # fault hit arrive before it)
    first=$(awk -v t="$t_fault" '$1 == "c" && $5 > t { print $5 }' "$out" | sort -n |
            awk -v t="$t_fault" '{ if ($1 - t > gap) { gap = $1 - t; at = $1 } t = $1 } END { printf "%.0f", at }')
    rec_ms=$(( (first - t_fault) / 1000 ))
    interrupted=$(awk -v t="$t_fault" '$1 == "c" && $5 > t { s[$2] = 1 } END { print length(s) }' "$out")
    echo "  ok: 64 of 64 requests equal the undisturbed run ($interrupted streams resumed), recovery $rec_ms ms"
    [ "$rec_ms" -le 30000 ] || fail "recovery took $rec_ms ms"
    [ "$interrupted" -ge 1 ] || fail "no stream went on after the fault"
  done
  kill -USR1 "$coord"
  wait_for "$tmp/metrics" "moe:worker_job_restarts_total" 10 || fail "no metrics file"
  grep -E "^moe:(worker_job_restarts_total|replayed_requests_total|replayed_tokens_total|worker_job_up|worker_job_recovery_seconds_(sum|count))" "$tmp/metrics"
  restarts=$(awk '/^moe:worker_job_restarts_total/ { print $2 }' "$tmp/metrics")
  replayed=$(awk '/^moe:replayed_requests_total/ { print $2 }' "$tmp/metrics")
  [ "$restarts" = 3 ] || fail "restarts counted: $restarts, 3 faults"
  [ "${replayed%.*}" -ge 3 ] || fail "replayed requests counted: $replayed"
  echo "ok: 3 faults on $np ranks, nothing lost, changed or repeated"
  ;;
crashloop)
  start_coord /nonexistent/model.gguf 2 --http 127.0.0.1:0 --max-start-failures 3 --restart-backoff-ms 100
  wait_for "$tmp/coord.err" "not restarting it" 60 || fail "the crash loop was never reported"
  grep "supervisor:" "$tmp/coord.err"
  starts=$(grep -c "supervisor: \(started\|restarted\) the worker job" "$tmp/coord.err")
  [ "$starts" = 3 ] || fail "started $starts times, --max-start-failures 3"
  url=$(grep -Eo 'http://[0-9.]+:[0-9]+' "$tmp/coord.err" | head -1)
  [ -n "$url" ] || fail "no HTTP endpoint in the log"
  health=$(curl -s -w ' %{http_code}' "$url/health")
  echo "/health: $health"
  case $health in *"died 3 times"*" 503") ;; *) fail "/health does not say it: $health" ;; esac
  # no busy loop: CPU time over 6 s of idling
  cpu() { awk '{ print $14 + $15 }' "/proc/$coord/stat"; }
  c0=$(cpu); sleep 6; c1=$(cpu)
  hz=$(getconf CLK_TCK)
  pct=$(awk -v d=$((c1 - c0)) -v hz="$hz" 'BEGIN { printf "%.2f", 100 * d / hz / 6 }')
  echo "idle coordinator after the crash loop: $pct% of a core"
  awk -v p="$pct" 'BEGIN { exit !(p < 2) }' || fail "the coordinator used $pct% of a core"
  pgrep -f "^$bin/moe-worker --model /nonexistent" > /dev/null && fail "a worker of the failed job is still there"
  echo "ok: a job that cannot start was tried 3 times, then reported on /health and in the log"
  ;;
*) echo "unknown check $1" >&2; exit 2 ;;
esac
