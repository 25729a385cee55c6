#!/usr/bin/env bash
# Faults of the worker job under the coordinator's supervisor (--launch),
# with real mpirun jobs over ipc:// sockets in a per-test folder:
#
#   fault_test.sh replay NP     64 concurrent streaming requests (greedy and
#       seeded, different lengths, e2e_client many) once undisturbed, then three
#       runs with faults: (1) three times in one run, kill -9 of the rank holding
#       a chosen sequence after k more of its tokens, each once the previous
#       fault's job is back (k, the sequence and the seed printed); (2) SIGSTOP
#       of that rank; (3) kill -9 of the mpirun launcher, then of every rank.
#       Every fault must interrupt streams that then resume; every request
#       completes, every client's token sequence equals the undisturbed run's
#       exactly, chunk indices without a gap or a repeat.  Prints each
#       recovery time (fault to the first token after it; at most 30 s) and,
#       for SIGSTOP, the detection time (at most the worker timeout + 1 s).
#   fault_test.sh deadline NP   requests sent while the job is down (a rank
#       killed, the restart 3 s away): those whose deadline outlasts the
#       recovery wait and complete exactly as an undisturbed run's; one with a
#       1 s deadline ends with deadline_exceeded (not worker_lost) after about
#       1 s, before the job is back
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
# (with the worker flags in wflags)
wflags=()
start_coord() {
  local wmodel=$1 np=$2; shift 2
  MOE_LOG=debug setsid "$bin/moe-coordinator" --model "$model" --listen "ipc://$tmp/c" --workers "ipc://$tmp/w" \
      --ranks "$np" "$@" --launch mpirun --bind-to none --mca btl self,vader -x OPENBLAS_NUM_THREADS -np "$np" \
      "$bin/moe-worker" --model "$wmodel" --coordinator '{workers}' "${wflags[@]}" > "$tmp/coord.out" 2> "$tmp/coord.err" &
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

# rank_pids: the current job's rank pids into rpid[] (its ranks are up), in
# one pass (the faults after the first wait for it while streams go on)
rank_pids() {
  local p r
  rpid=()
  for p in $(pgrep -f "^$bin/moe-worker --model [^ ]* --coordinator ipc://$tmp/w"); do
    while IFS= read -r -d '' r; do
      case $r in OMPI_COMM_WORLD_RANK=*) rpid[${r#*=}]=$p; break ;; esac
    done 2>/dev/null < "/proc/$p/environ"
  done
  for r in $(seq 0 $((np - 1))); do
    [ -n "${rpid[r]:-}" ] || fail "no process for rank $r"
  done
}

# line_after FILE LINE REGEX: the number of the first line after LINE that matches
line_after() { awk -v from="$2" -v re="$3" 'NR > from && $0 ~ re { print NR; exit }' "$1"; }

# wait_line_after FILE LINE REGEX SECONDS: the same, waiting for it; prints
# 'N:the line'.  tail -f wakes at once on a new line (a polling loop was too
# slow on a loaded machine: a whole 600-token stream can end within a second)
wait_line_after() {
  local m
  m=$(timeout "$4" tail -n +$(($2 + 1)) -f "$1" | grep -m1 -n -E "$3") || return 1
  echo "$(($2 + ${m%%:*})):${m#*:}"
}

# pick_req OUT N: the 600-token request (every 8th) that has received the
# fewest tokens so far in OUT and has not finished, ties broken in an order
# drawn from the seed and N (so a later fault's request has most of its
# stream ahead of it, even on a slow machine)
pick_req() {
  awk -v s="$seed" -v n="$2" '$1 == "c" { got[$2] = $3 + $4 } $1 == "f" { done[$2] = 1 }
       END { for (i = 0; i < 8; i++) { r = "r" 8 * ((s + n + i) % 8); if (!(r in done)) print got[r] + 0, i, r, got[r] + 0 } }' \
      "$1" 2>/dev/null | sort -n -k1,1 -k2,2 | head -1 | awk '{ print $3, $4 }'
}

# run_faults RUN KIND... : one run of 64 concurrent streams in which the
# faults are made one after the other (fault i once the previous one's job
# is back): each on the rank holding a chosen 600-token request after k more
# of its tokens.  Checks every request against the undisturbed run, then,
# fault by fault, that it interrupted streams and the recovery time.
run_faults() {
  local run=$1; shift
  local kinds=("$@") nf=$# i out=$tmp/run$run.out files=()
  for i in $(seq 1 "$nf"); do files+=("$tmp/fault$run.$i"); done
  local launcher lines at rank pid req got k
  : > "$out"
  launcher=$(grep -Eo "(started|restarted) the worker job \(pid [0-9]+" "$tmp/coord.err" | tail -1 | grep -Eo "[0-9]+$")
  lines=$(wc -l < "$tmp/coord.err")
  # the job's ranks (it is ready: the last run ended on it), looked up now
  # so that little is left to do while the chosen request runs
  rank_pids
  # the client itself sends the signals once the request has its k tokens (a
  # script polling its output is too slow on a loaded machine); what to
  # signal goes into a file as soon as the coordinator says where the request runs
  "$bin/e2e_client" many 64 "${files[@]}" "ipc://$tmp/c" >> "$out" &
  local client=$! t_fault=()
  for i in $(seq 1 "$nf"); do
    local kind=${kinds[i-1]}
    if [ "$i" -gt 1 ]; then
      # the previous fault's job is dead: once the next one is started (the
      # streams stand still until it runs), choose the request, wait for
      # where the new job runs it (a rank says hello only once every rank
      # of the job exists), and look the ranks up
      local started
      started=$(wait_line_after "$tmp/coord.err" "$lines" "supervisor: restarted the worker job" 60) || fail "the job was never restarted after fault $((i - 1))"
      launcher=${started#*(pid }; launcher=${launcher%%,*}
      lines=${started%%:*}
    fi
    read -r req got < <(pick_req "$out" "$((run * 3 + i))")
    [ -n "$req" ] || fail "every 600-token request finished before fault $i"
    k=$(( 3 + (seed * 7 + run * 3 + i) % 10 ))
    echo "run $run, fault $i ($kind): seed $seed, request $req (the 600-token one with the fewest tokens, $got) after k=$k more tokens"
    at=$(wait_line_after "$tmp/coord.err" "$lines" "request '$req' placed on rank" 30) || fail "$req was never placed"
    rank=${at#*placed on rank }; rank=${rank%% *}
    [ "$i" -gt 1 ] && rank_pids
    pid=${rpid[rank]}
    {
      echo "$req $k"
      case $kind in
        kill) echo "$pid 9" ;;
        stop) echo "$pid 19" ;;
        launcher) echo "$launcher 9"; for p in "${rpid[@]}"; do echo "$p 9"; done ;;
      esac
    } > "$tmp/fault$run.$i.tmp"
    lines=$(wc -l < "$tmp/coord.err") # what the coordinator says after the fault comes after this
    mv "$tmp/fault$run.$i.tmp" "$tmp/fault$run.$i"
    wait_for "$out" "^fault $i " 30 || fail "fault $i was never made ($req ended before it had $k more tokens?)"
    t_fault[i]=$(awk -v i="$i" '$1 == "fault" && $2 == i { print $3 }' "$out")
    local done_at got_at
    done_at=$(awk -v i="$i" '$1 == "fault" && $2 == i { print $4 }' "$out")
    got_at=$(awk -v i="$i" '$1 == "fault" && $2 == i { print $5 }' "$out")
    [ "$done_at" -lt 64 ] || fail "every request had finished before fault $i"
    echo "  fault $i: $kind of rank $rank (pid $pid, launcher $launcher) with $req at $got_at tokens, $((64 - done_at)) of 64 streams running"
    if [ "$kind" = stop ]; then
      local det_ms
      for _ in $(seq 1 400); do tail -n +"$lines" "$tmp/coord.err" | grep -q "supervisor: .*killed" && break; sleep 0.025; done
      det_ms=$(( ($(now_us) - t_fault[i]) / 1000 ))
      tail -n +"$lines" "$tmp/coord.err" | grep -q "supervisor: .*killed" || fail "the stopped rank was never found"
      echo "  stopped rank detected and its job killed after $det_ms ms (bound: worker timeout $timeout_ms ms + 1000)"
      [ "$det_ms" -le $((timeout_ms + 1000)) ] || fail "detection took $det_ms ms"
    fi
  done
  wait "$client" || fail "the client did not see every request end (run $run)"
  tokens_of "$out" > "$tmp/run$run.tok" || fail "a request was wrong after the faults of run $run"
  cmp -s "$tmp/base.tok" "$tmp/run$run.tok" || { diff "$tmp/base.tok" "$tmp/run$run.tok" | head -5; fail "tokens differ from the undisturbed run (run $run)"; }
  for i in $(seq 1 "$nf"); do
    local t=${t_fault[i]} t_next=${t_fault[i+1]:-9e99} first rec_ms interrupted
    # recovery: the fault to the first token after the pause it caused (the
    # longest silence between this fault and the next; tokens already on
    # their way when the fault hit arrive before it)
    first=$(awk -v t="$t" -v e="$t_next" '$1 == "c" && $5 > t && $5 < e { print $5 }' "$out" | sort -n |
            awk -v t="$t" '{ if ($1 - t > gap) { gap = $1 - t; at = $1 } t = $1 } END { printf "%.0f", at }')
    rec_ms=$(( (first - t) / 1000 ))
    # streams the fault interrupted: chunks before it and after it
    interrupted=$(awk -v t="$t" '$1 == "c" && $5 <= t { b[$2] = 1 } $1 == "c" && $5 > t && ($2 in b) { s[$2] = 1 }
                                 END { print length(s) }' "$out")
    echo "  fault $i (${kinds[i-1]}): $interrupted streams interrupted and resumed, recovery $rec_ms ms"
    [ "$interrupted" -ge 1 ] || fail "fault $i interrupted no stream"
    [ "$rec_ms" -le 30000 ] || fail "recovery took $rec_ms ms after fault $i"
  done
  echo "  ok: 64 of 64 requests equal the undisturbed run after ${nf} faults"
}

case ${1:?usage: fault_test.sh replay NP | crashloop} in
replay)
  np=${2:?NP}
  timeout_ms=2000
  # every collective held at least 0.6 ms (the test delay; about 10 a step on
  # v3_mini over 2 or 3 ranks): a 600-token stream lasts
  # 3.5 s or more however fast the engine is, so three faults and their
  # recoveries fit in one run even when a loaded machine slows the restarts
  wflags=(--test-xchg-delay-us 600)
  # --client-timeout-ms 3000: a client silent that long is gone, so the test
  # client must beat while chunks stream (an undisturbed run streams ~4 s)
  start_coord "$model" "$np" --worker-timeout-ms $timeout_ms --restart-backoff-ms 200 --client-timeout-ms 3000 \
      --metrics-file "$tmp/metrics"
  wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  "$bin/e2e_client" many 64 "ipc://$tmp/c" > "$tmp/base.out" || fail "the undisturbed run failed"
  tokens_of "$tmp/base.out" > "$tmp/base.tok" || fail "the undisturbed run is wrong"
  seed=${FAULT_SEED:-$(( $(date +%s) % 1000 ))}
  run_faults 1 kill kill kill
  run_faults 2 stop
  run_faults 3 launcher
  kill -USR1 "$coord"
  wait_for "$tmp/metrics" "moe:worker_job_restarts_total" 10 || fail "no metrics file"
  grep -E "^moe:(worker_job_restarts_total|replayed_requests_total|replayed_tokens_total|worker_job_up|worker_job_recovery_seconds_(sum|count))" "$tmp/metrics"
  restarts=$(awk '/^moe:worker_job_restarts_total/ { print $2 }' "$tmp/metrics")
  replayed=$(awk '/^moe:replayed_requests_total/ { print $2 }' "$tmp/metrics")
  [ "$restarts" = 5 ] || fail "restarts counted: $restarts, 5 faults"
  [ "${replayed%.*}" -ge 5 ] || fail "replayed requests counted: $replayed"
  echo "ok: 5 faults on $np ranks (three kill -9 in one run), nothing lost, changed or repeated"
  ;;
deadline)
  np=${2:?NP}
  start_coord "$model" "$np" --restart-backoff-ms 3000
  wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  # 8 requests, greedy and seeded, different lengths, each with a deadline far beyond the recovery
  awk 'BEGIN { for (i = 0; i < 8; i++) { s = i % 2 ? " seed=" 11 * i " temp=0.9" : "";
                                          print "ids:" 1 + i "," 7 + 3 * i ",42", 8 + 5 * i, "deadline_ms=30000" s } }' > "$tmp/reqs"
  "$bin/moe-client" --connect "ipc://$tmp/c" --file "$tmp/reqs" --concurrency 8 --ids-out --timeout 60 > "$tmp/base.out" 2> "$tmp/base.err" \
      || fail "the undisturbed run failed: $(cat "$tmp/base.err")"
  rank_pids
  lines=$(wc -l < "$tmp/coord.err")
  kill -KILL "${rpid[0]}"
  down=$(wait_line_after "$tmp/coord.err" "$lines" "restarting it in 3.00 s" 10) || fail "the killed rank's job was not seen dead"
  down=${down%%:*}
  t0=$(now_us)
  # the job is down for 3 s: requests sent now wait in the queue
  "$bin/moe-client" --connect "ipc://$tmp/c" --file "$tmp/reqs" --concurrency 8 --ids-out --timeout 60 > "$tmp/a.out" 2> "$tmp/a.err" &
  a=$!
  "$bin/moe-client" --connect "ipc://$tmp/c" --ids 5,6,7 --max-tokens 8 --deadline-ms 1000 --timeout 30 > "$tmp/b.out" 2> "$tmp/b.err"
  rc=$?
  dt=$(( ($(now_us) - t0) / 1000 ))
  back_then=$(line_after "$tmp/coord.err" "$down" "the worker job is back")
  cat "$tmp/b.err"
  [ "$rc" != 0 ] || fail "the request with a 1 s deadline succeeded while the job was down"
  grep -q "deadline_exceeded" "$tmp/b.err" || fail "the short request did not end with deadline_exceeded"
  grep -qi "worker_lost" "$tmp/b.err" && fail "the short request ended with worker_lost"
  [ -z "$back_then" ] || fail "the job was back before the short request ended: the test proves nothing"
  echo "short deadline: ended with deadline_exceeded after $dt ms (deadline 1000 ms; the job still down)"
  [ "$dt" -ge 950 ] && [ "$dt" -le 2500 ] || fail "the 1 s deadline ended after $dt ms"
  wait "$a" || fail "requests queued during the restart failed: $(cat "$tmp/a.err")"
  back=$(line_after "$tmp/coord.err" "$down" "the worker job is back")
  [ -n "$back" ] || fail "the job never came back"
  waited=$(( ($(now_us) - t0) / 1000 ))
  cmp -s "$tmp/base.out" "$tmp/a.out" || { diff "$tmp/base.out" "$tmp/a.out" | head -5; fail "the queued requests' tokens differ from the undisturbed run"; }
  echo "ok: 8 requests sent while the job was down waited for it (${waited} ms from the send to the last answer) and equal the undisturbed run"
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
