#!/usr/bin/env bash
# No hang anywhere (issue 13): each check starts real processes (the
# coordinator, an mpirun worker job, moe-client) over ipc:// sockets in a
# per-test folder, waits for lines the programs print, and bounds every
# wait; every process is killed on the way out.
#
#   hang_test.sh noranks | queued | drain | mismatch | coord_restart | outbox | coord_outbox | longstep | serve_restart | adopt
#
# noranks:       a coordinator with no worker job: moe-client --timeout 2
#                holds (exit 3 in ~2 s; heartbeat echoes do not extend it),
#                and a request waits at most --no-ranks-timeout-ms, then ends
#                with NOT_READY; a queued request's client is told so.
# queued:        behind long requests (--max-running 1), queued clients are
#                told their place in the queue, and --timeout 2 holds.
# drain:         SIGTERM with a request that can never run: the drain ends
#                it after --drain-timeout-ms (SHUTTING_DOWN) and exits 0; a
#                second SIGTERM stops at once.
# mismatch:      ranks on another model: refused once, clearly, on both sides
#                and on /health, no line repeated per hello, and a request
#                ends with NOT_READY naming the reason.
# coord_restart: kill -9 of the coordinator mid-stream, a new one on the same
#                endpoints: the old client ends at once with unknown_request,
#                the live job's ranks rejoin (the same mpirun), drop the old
#                sequences, and 8 new requests all succeed.
# outbox:        a coordinator that stops reading (SIGSTOP) never blocks a
#                rank and loses nothing: the rank's outbox passes half its
#                bound, the whole job holds (no step, nothing dropped) while
#                the coordinator is stopped (longer than its worker and client
#                timeouts), and after SIGCONT every request completes with the
#                tokens of an undisturbed run.
# longstep:      a legitimate step longer than --worker-timeout-ms (one prefill
#                chunk of 8000 tokens) is announced by the ranks and completes
#                under the supervisor without a restart, its tokens moe-run's.
# coord_outbox: a rank that stops reading (SIGSTOP) never blocks the
#                coordinator: with a small worker socket (--worker-hwm 1,
#                --worker-sndbuf 4096) the Assigns to it pile up in its outbox,
#                which overflows (--worker-outbox-bytes 8192): the rank is
#                lost, its requests end with WORKER_LOST, /health answers all
#                along, and once the rank runs again it rejoins and serves.
# serve_restart: kill -9 of the coordinator under deploy/serve.sh: serve.sh
#                starts a new one, which adopts the worker job (same mpirun),
#                a request succeeds; serve.sh passes coordinator flags
#                (--max-tokens, --client-in-flight); a
#                killed rank then makes the coordinator restart the job; the
#                stop leaves no process behind.
# adopt:         --launch with a job file (auto, with --exact for the ranks: both
#                ranks' command lines carry it): kill -9 of the coordinator, a new
#                one adopts the live job (same mpirun, no second job) and
#                serves; a third on the same job file is refused while the
#                second runs; the adopted job, killed, is restarted; SIGTERM
#                stops it and removes the file.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
model=${MOE_FIXTURES:?MOE_FIXTURES not set}/models/v3_mini_f32.gguf
other=$MOE_FIXTURES/models/tiny_f32.gguf
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-hang.XXXXXX")
source "$here/proc.sh"
ms() { echo $(( $(date +%s%N) / 1000000 )); }

# wait_exit PID SECONDS: until the process is gone
wait_exit() {
  local i
  for i in $(seq 1 $(($2 * 20))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
  return 1
}

# coordinator NAME [flags...]: started in the background, logs in $tmp/NAME.{out,err}
coordinator() {
  local name=$1; shift
  setsid "$bin/moe-coordinator" --model "$model" --listen "ipc://$tmp/c" --workers "ipc://$tmp/w" "$@" \
      > "$tmp/$name.out" 2> "$tmp/$name.err" &
  coord=$!; pids+=("$coord")
}
# job RANKS MODEL [worker flags...]
job() {
  local ranks=$1 m=$2; shift 2
  "$here/mpirun.sh" "$ranks" 300 "$bin/moe-worker" --model "$m" --coordinator "ipc://$tmp/w" --ignore-eos "$@" \
      > "$tmp/worker.out" 2> "$tmp/worker.err" &
  jobpid=$!; pids+=("$jobpid")
}
ep="ipc://$tmp/c"

case ${1:?usage: hang_test.sh CHECK} in
noranks)
  coordinator coord --ranks 1 --no-ranks-timeout-ms 4000
  wait_for "$tmp/coord.err" "waiting for 1 ranks" 20 || fail "the coordinator never started"
  t0=$(ms)
  timeout 30 "$bin/moe-client" --connect "$ep" --ids 1,2,3 --max-tokens 4 --timeout 2 --heartbeat-ms 200 \
      > /dev/null 2> "$tmp/a.err"; rc=$?
  dt=$(( $(ms) - t0 ))
  cat "$tmp/a.err"
  [ "$rc" = 3 ] || fail "--timeout 2 with no worker job: exit $rc after $dt ms (want 3, the timeout)"
  [ "$dt" -lt 3500 ] || fail "--timeout 2 took $dt ms"
  grep -q "is queued at the server (position 1" "$tmp/a.err" || fail "the client was not told its request is queued"
  echo "ok: --timeout 2 held ($dt ms) while the request sat in the queue"
  t0=$(ms)
  timeout 30 "$bin/moe-client" --connect "$ep" --ids 1,2,3 --max-tokens 4 --timeout 30 > /dev/null 2> "$tmp/b.err"; rc=$?
  dt=$(( $(ms) - t0 ))
  cat "$tmp/b.err"
  [ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "no worker job: exit $rc after $dt ms"
  grep -q "not_ready: no worker rank could take the request in 4.0 s (0 of 1 ranks have joined)" "$tmp/b.err" \
      || fail "no NOT_READY: $(cat "$tmp/b.err")"
  [ "$dt" -ge 3900 ] && [ "$dt" -lt 8000 ] || fail "NOT_READY after $dt ms (bound 4000 ms)"
  echo "ok: with no worker job a request ended with NOT_READY after $dt ms (--no-ranks-timeout-ms 4000)"
  ;;
queued)
  coordinator coord --ranks 1 --max-running 1
  # every step held at least 5 ms (the test delay), so the queue ahead is
  # seconds long however fast the engine has become
  job 1 "$model" --test-xchg-delay-us 5000
  wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  # 8 long requests, one running at a time: seconds of queue ahead
  awk 'BEGIN { for (i = 0; i < 8; i++) print "ids:" i + 1 ",2,3", 4000 }' > "$tmp/long"
  "$bin/moe-client" --connect "$ep" --file "$tmp/long" --concurrency 8 --timeout 60 > /dev/null 2> "$tmp/long.err" &
  pids+=("$!")
  wait_for "$tmp/coord.err" "rank 0: 1 active" 30 || fail "the long requests never ran"
  "$bin/moe-client" --connect "$ep" --ids 4,5 --max-tokens 4 --timeout 30 > /dev/null 2> "$tmp/b.err" &
  b=$!; pids+=("$b")
  wait_for "$tmp/b.err" "request r0 is queued at the server \(position [0-9]+;" 10 || fail "the first queued client was not told"
  pb=$(sed -n 's/.*queued at the server (position \([0-9]*\);.*/\1/p' "$tmp/b.err" | head -1)
  t0=$(ms)
  timeout 30 "$bin/moe-client" --connect "$ep" --ids 6,7 --max-tokens 4 --timeout 2 --heartbeat-ms 200 > /dev/null 2> "$tmp/c.err"; rc=$?
  dt=$(( $(ms) - t0 ))
  cat "$tmp/c.err"
  pc=$(sed -n 's/.*queued at the server (position \([0-9]*\);.*/\1/p' "$tmp/c.err" | head -1)
  [ -n "$pc" ] && [ "$pc" -gt "$pb" ] || fail "the second queued client was told place '$pc' (the first: $pb)"
  [ "$rc" = 3 ] || fail "a queued request with --timeout 2: exit $rc after $dt ms (want 3, the timeout)"
  [ "$dt" -lt 3500 ] || fail "--timeout 2 took $dt ms"
  echo "ok: behind long requests, queued clients were told their places ($pb, then $pc) and --timeout 2 held ($dt ms)"
  ;;
drain)
  coordinator d1 --ranks 1 --drain-timeout-ms 1500
  wait_for "$tmp/d1.err" "waiting for 1 ranks" 20 || fail "the coordinator never started"
  "$bin/moe-client" --connect "$ep" --ids 1,2,3 --max-tokens 4 --timeout 60 > /dev/null 2> "$tmp/c1.err" &
  c1=$!; pids+=("$c1")
  wait_for "$tmp/c1.err" "is queued at the server" 20 || fail "the request never showed as queued"
  t0=$(ms)
  kill -TERM "$coord"
  wait_exit "$coord" 10 || fail "the drain did not end within 10 s (--drain-timeout-ms 1500)"
  dt=$(( $(ms) - t0 ))
  wait "$coord"; rc=$?
  [ "$rc" = 0 ] || fail "the coordinator exited $rc after its drain"
  wait "$c1"
  cat "$tmp/c1.err"
  grep -q "shutting_down: the server shut down before the request finished" "$tmp/c1.err" || fail "the client was not told"
  grep -q "the drain timed out" "$tmp/d1.err" || fail "no log line for the cut drain"
  echo "ok: a drain with a request that could never run ended after $dt ms (--drain-timeout-ms 1500), exit 0"
  coordinator d2 --ranks 1 --drain-timeout-ms 600000
  wait_for "$tmp/d2.err" "waiting for 1 ranks" 20 || fail "the second coordinator never started"
  "$bin/moe-client" --connect "$ep" --ids 1,2,3 --max-tokens 4 --timeout 60 > /dev/null 2> "$tmp/c2.err" &
  c2=$!; pids+=("$c2")
  wait_for "$tmp/c2.err" "is queued at the server" 20 || fail "the request never showed as queued"
  kill -TERM "$coord"
  wait_for "$tmp/d2.err" "draining: 1 requests" 10 || fail "no drain"
  t0=$(ms)
  kill -TERM "$coord"
  wait_exit "$coord" 5 || fail "a second SIGTERM did not stop the coordinator within 5 s"
  dt=$(( $(ms) - t0 ))
  wait "$c2"
  grep -q "shutting_down: the server was stopped" "$tmp/c2.err" || fail "the client was not told: $(cat "$tmp/c2.err")"
  echo "ok: a second SIGTERM stopped the coordinator in $dt ms"
  [ "$dt" -lt 2000 ] || fail "the second SIGTERM took $dt ms"
  ;;
mismatch)
  coordinator coord --ranks 2 --no-ranks-timeout-ms 3000 --http 127.0.0.1:0
  wait_for "$tmp/coord.err" "waiting for 2 ranks" 20 || fail "the coordinator never started"
  url=$(grep -Eo 'http://[^, ]+' "$tmp/coord.err" | head -1)
  [ -n "$url" ] || fail "no HTTP address in the log"
  job 2 "$other" --heartbeat-ms 100
  wait_for "$tmp/coord.err" "refused a worker rank" 60 || fail "the coordinator never refused the ranks"
  wait_for "$tmp/worker.err" "the coordinator refused this rank" 20 || fail "the ranks never said they were refused"
  health=$(curl -s "$url/health")
  echo "/health: $health"
  case $health in *"refused a rank: rank "*" runs a different model (deepseek2-random-L2-d64-E8, a vocabulary of 300 tokens; the coordinator's has 400)"*) ;;
    *) fail "/health does not say why: $health" ;; esac
  timeout 30 "$bin/moe-client" --connect "$ep" --ids 1,2,3 --max-tokens 4 --timeout 30 > /dev/null 2> "$tmp/a.err"; rc=$?
  cat "$tmp/a.err"
  [ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "a request to the refused job: exit $rc"
  grep -q "not_ready: no worker rank could take the request in 3.0 s: rank .* runs a different model" "$tmp/a.err" \
      || fail "the request did not end with NOT_READY naming the reason"
  # 100 ms heartbeats over > 3 s: dozens of hellos, each refusal line printed once
  n=$(grep -c "refused a worker rank" "$tmp/coord.err")
  w=$(grep -c "the coordinator refused this rank" "$tmp/worker.err")
  grep "refused" "$tmp/coord.err" "$tmp/worker.err"
  [ "$n" -ge 1 ] && [ "$n" -le 2 ] || fail "the coordinator printed the refusal $n times (once per rank at most)"
  [ "$w" -ge 1 ] && [ "$w" -le 2 ] || fail "the ranks printed the refusal $w times (once per rank at most)"
  echo "ok: a job on another model was refused once on each side ($n coordinator lines, $w rank lines), on /health and in NOT_READY"
  ;;
coord_restart)
  coordinator c1 --ranks 2
  job 2 "$model"
  wait_for "$tmp/c1.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  # 8 long requests hold sequence ids 1..8 on the ranks
  awk 'BEGIN { for (i = 0; i < 8; i++) print "ids:" i + 1 ",2,3", 4000 }' > "$tmp/long"
  "$bin/moe-client" --connect "$ep" --file "$tmp/long" --concurrency 8 --timeout 20 --ids-out > "$tmp/old.out" 2> "$tmp/old.err" &
  old=$!; pids+=("$old")
  wait_for "$tmp/c1.err" "rank 0: 4 active" 30 || fail "the requests never ran"
  kill -KILL "$coord"
  wait "$coord" 2>/dev/null
  coordinator c2 --ranks 2
  wait_for "$tmp/c2.out" "moe-coordinator: ready" 30 || fail "the live ranks never joined the new coordinator"
  t0=$(ms)
  # at once: new sequence ids must not meet the old ones still on the ranks
  awk 'BEGIN { for (i = 0; i < 8; i++) print "ids:" i + 1 ",2,3", 6 + i }' > "$tmp/reqs"
  "$bin/moe-client" --connect "$ep" --file "$tmp/reqs" --concurrency 8 --ids-out --timeout 60 > "$tmp/new.out" 2> "$tmp/new.err" \
      || fail "new requests after the restart failed: $(cat "$tmp/new.err")"
  [ "$(grep -c . "$tmp/new.out")" = 8 ] || fail "not 8 answers"
  echo "ok: 8 new requests right after the restart all succeeded"
  wait_exit "$old" 10 || fail "the old coordinator's client still waits 10 s after the new one is up (--timeout 20)"
  dt=$(( $(ms) - t0 ))
  wait "$old"; rc=$?
  head -3 "$tmp/old.err"
  [ "$rc" != 0 ] || fail "the old client exited 0"
  [ "$(grep -c "error unknown_request" "$tmp/old.out")" = 8 ] || fail "the old client's 8 requests were not all unknown_request"
  echo "ok: the old client ended within ${dt} ms of the new coordinator's ready line, every request unknown_request"
  kill -0 "$jobpid" || fail "the worker job died"
  wait_for "$tmp/worker.err" "dropped [0-9]+ sequences of the old one" 10 || fail "the ranks did not drop the old sequences"
  grep "new coordinator" "$tmp/worker.err"
  echo "ok: the live job (same mpirun) rejoined a new coordinator"
  ;;
outbox)
  # timeouts (3 s) shorter than the stop: a coordinator that runs again must
  # not take its ranks or clients for silent before their frames are in
  coordinator coord --ranks 2 --worker-timeout-ms 3000 --client-timeout-ms 3000
  # a small link (64 messages, a 4 KiB socket buffer) and a 256 KiB outbox (the
  # job holds at 128 KiB): with the coordinator stopped it fills in well under
  # a second, and the old worker ended every sequence at the bound
  job 2 "$model" --coord-hwm 64 --coord-sndbuf 4096 --outbox-bytes 262144
  wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  # 4 x 2000 greedy tokens with 20 alternatives each: ~1.6 MB of frames
  awk 'BEGIN { for (i = 0; i < 4; i++) print "ids:" i + 1 ",2,3", 2000, "logprobs=20" }' > "$tmp/long"
  # the disturbed run first (the ranks' first "active" lines say it runs),
  # the undisturbed one after it on the same job
  "$bin/moe-client" --connect "$ep" --file "$tmp/long" --concurrency 4 --timeout 60 --heartbeat-ms 250 --ids-out \
      > "$tmp/a.out" 2> "$tmp/a.err" &
  a=$!; pids+=("$a")
  wait_for "$tmp/coord.err" "rank [01]: [1-4] active" 30 || fail "the requests never ran"
  from=$(( $(wc -l < "$tmp/worker.err") + 1 ))
  kill -STOP "$coord"
  t0=$(ms)
  # the rank is not blocked in a send: its loop goes on and holds the job
  # (the old worker said "stopped reading" here and ended its sequences)
  for _ in $(seq 1 600); do
    tail -n +"$from" "$tmp/worker.err" | grep -Eq "the job holds its steps|stopped reading" && break; sleep 0.05
  done
  dt=$(( $(ms) - t0 ))
  tail -n +"$from" "$tmp/worker.err" | grep -Eq "the job holds its steps|stopped reading" || fail "the rank never noticed (blocked in a send?)"
  # stopped 3 s more: the job must hold all along, dropping nothing
  sleep 3
  kill -CONT "$coord"
  wait "$a"; rc=$?
  tail -n +"$from" "$tmp/worker.err"
  tail -2 "$tmp/a.err"
  [ "$rc" = 0 ] || fail "a request failed after the coordinator came back (exit $rc): $(grep -m1 error "$tmp/a.out")"
  "$bin/moe-client" --connect "$ep" --file "$tmp/long" --concurrency 4 --timeout 60 --heartbeat-ms 250 --ids-out \
      > "$tmp/ref.out" 2> "$tmp/ref.err" || fail "the undisturbed run failed: $(cat "$tmp/ref.err")"
  cmp -s "$tmp/ref.out" "$tmp/a.out" || { diff "$tmp/ref.out" "$tmp/a.out" | head -3 | cut -c1-200; fail "tokens differ from the undisturbed run"; }
  tail -n +"$from" "$tmp/worker.err" | grep -Eq "dropped|overflowed" && fail "frames were dropped"
  grep -E "stopped answering|went silent" "$tmp/coord.err" && fail "the coordinator, running again, took a peer for silent"
  grep "the loop did not run" "$tmp/coord.err"
  held=$(tail -n +"$from" "$tmp/worker.err" | sed -n 's/.*resumed after holding \([0-9.]*\) s.*/\1/p' | head -1)
  [ -n "$held" ] || fail "the job never said it resumed"
  awk -v h="$held" 'BEGIN { exit !(h >= 2.5) }' || fail "the job held only $held s of the 3 s the coordinator was stopped"
  echo "ok: with the coordinator stopped the job held in $dt ms for $held s, dropped nothing, and every request equals the undisturbed run"
  ;;
longstep)
  # One step longer than --worker-timeout-ms on purpose: an 8000-token prompt
  # in one prefill chunk (~4 s a step here on one core), a 1.5 s watchdog.
  # The rank announces the step (its expected time), so the coordinator
  # waits for it; the old one took the silent rank for a hung one and
  # restarted the job (again at each replay).
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMPI_MCA_rmaps_base_oversubscribe=1
  MOE_LOG=debug coordinator coord --ranks 2 --worker-timeout-ms 1500 --restart-backoff-ms 100 \
      --launch mpirun --bind-to none --mca btl self,vader -x OPENBLAS_NUM_THREADS -np 2 \
      "$bin/moe-worker" --model "$model" --coordinator '{workers}' --ignore-eos --heartbeat-ms 200 \
      --ctx 8192 --prefill-chunk 8192 --step-tokens 8192
  trap 'pkill -KILL -f "moe-worker --model [^ ]* --coordinator ipc://$tmp/" 2>/dev/null; cleanup' EXIT
  wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  ids=$(awk 'BEGIN { for (i = 0; i < 8000; i++) printf "%s%d", i ? "," : "", (i * 7) % 390 + 5 }')
  want=$("$bin/moe-run" --model "$model" --tokens "$ids" -n 8 --batch 8192 --ignore-eos) || fail "moe-run failed"
  lines=$(wc -l < "$tmp/coord.err")
  t0=$(ms)
  got=$(timeout 100 "$bin/moe-client" --connect "$ep" --ids "$ids" --max-tokens 8 --ids-out --timeout 90 2> "$tmp/a.err") \
      || fail "the long request failed: $(cat "$tmp/a.err")"
  dt=$(( $(ms) - t0 ))
  tail -n +"$lines" "$tmp/coord.err" | grep -E "announced|stopped answering|supervisor" | head -5
  tail -n +"$lines" "$tmp/coord.err" | grep -Eq "stopped answering|supervisor: .*(killed|restart)" && fail "the long step was taken for a hang"
  tail -n +"$lines" "$tmp/coord.err" | grep -q "announced a step of" || fail "no rank announced the long step"
  [ "$got" = "$want" ] || fail "tokens '$got', moe-run's '$want'"
  [ "$dt" -gt 1500 ] || fail "the request took $dt ms: no step was longer than the 1.5 s watchdog"
  echo "ok: an 8000-token prefill step ($dt ms for the request, watchdog 1500 ms) completed without a restart, tokens equal moe-run's"
  ;;
coord_outbox)
  coordinator coord --ranks 1 --worker-timeout-ms 60000 --worker-hwm 1 --worker-sndbuf 4096 \
      --worker-outbox-bytes 8192 --http 127.0.0.1:0
  job 1 "$model"
  wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  url=$(grep -Eo 'http://[0-9.]+:[0-9]+' "$tmp/coord.out" | head -1)
  rank=$(pgrep -f "^$bin/moe-worker --model [^ ]* --coordinator ipc://$tmp/w")
  [ -n "$rank" ] || fail "no rank process"
  kill -STOP "$rank"
  # 16 requests (the rank's --max-running) with 2000-token prompts: ~4 KB an
  # Assign, ~64 KB in all, far more than the socket, its buffers and the outbox take
  awk 'BEGIN { for (i = 0; i < 16; i++) { s = "ids:200"; for (j = 1; j < 2000; j++) s = s "," 200 + (i + j) % 200; print s, 4 } }' > "$tmp/long"
  t0=$(ms)
  "$bin/moe-client" --connect "$ep" --file "$tmp/long" --concurrency 16 --timeout 20 > "$tmp/a.out" 2> "$tmp/a.err" &
  a=$!; pids+=("$a")
  wait_for "$tmp/coord.err" "worker rank 0 stopped reading" 15 || { kill -CONT "$rank"; fail "the coordinator never noticed the stopped rank (blocked in a send to it?)"; }
  dt=$(( $(ms) - t0 ))
  health=$(curl -s -m 5 -w ' %{http_code}' "$url/health")
  echo "/health with the rank stopped: $health"
  [ -n "$health" ] && [ "${health##* }" != 000 ] || { kill -CONT "$rank"; fail "the coordinator did not answer /health"; }
  wait_exit "$a" 15 || { kill -CONT "$rank"; fail "the client still waits 15 s after the rank was lost"; }
  wait "$a"
  grep -m1 "stopped reading" "$tmp/coord.err"
  [ "$(grep -c "error worker_lost" "$tmp/a.out")" = 16 ] || { kill -CONT "$rank"; fail "not every request ended with worker_lost: $(head -c 300 "$tmp/a.out")"; }
  echo "ok: with the rank stopped the coordinator found it behind after $dt ms; 16 of 16 requests ended with worker_lost"
  kill -CONT "$rank"
  for _ in $(seq 1 600); do [ "$(grep -c "rank 0 joined (" "$tmp/coord.err")" -ge 2 ] && break; sleep 0.05; done
  [ "$(grep -c "rank 0 joined (" "$tmp/coord.err")" = 2 ] || fail "the rank did not join again once running"
  "$bin/moe-client" --connect "$ep" --ids 5,6 --max-tokens 8 --ids-out --timeout 30 > "$tmp/b.out" 2> "$tmp/b.err" \
      || fail "a new request after the rank came back failed: $(cat "$tmp/b.err")"
  echo "ok: the rank running again rejoined and a new request succeeded"
  ;;
serve_restart)
  setsid "$root/deploy/serve.sh" --model "$model" --ranks 1 --listen "$ep" --http none --workers "ipc://$tmp/w" \
      --bin "$bin" --max-tokens 7 --queue 9 --client-in-flight 1 > "$tmp/serve.out" 2> "$tmp/serve.err" &
  sv=$!; pids+=("$sv")
  wait_for "$tmp/serve.out" "serve: ready" 120 || fail "serve.sh never became ready"
  c1=$(pgrep -f "^$bin/moe-coordinator --model $model --listen $ep") || fail "no coordinator"
  mpi=$(pgrep -f "^mpirun .*$bin/moe-worker --model $model --coordinator ipc://$tmp/w") || fail "no mpirun"
  # --max-tokens reached the coordinator: its default max_tokens is 7
  "$bin/moe-client" --connect "$ep" --ids 1,2,3 --ids-out --usage --timeout 30 > /dev/null 2> "$tmp/a.err" \
      || fail "the first request failed: $(cat "$tmp/a.err")"
  grep -q "completion=7" "$tmp/a.err" || fail "--max-tokens 7 did not reach the coordinator: $(cat "$tmp/a.err")"
  # --client-in-flight 1 reached it: of two requests sent at once by one
  # client (500 tokens each), the second is refused
  printf 'ids:1,2,3 500\nids:4,5,6 500\n' > "$tmp/two"
  "$bin/moe-client" --connect "$ep" --file "$tmp/two" --concurrency 2 --ignore-eos --timeout 30 > "$tmp/two.out" 2> "$tmp/two.err"
  [ "$(grep -c "requests in flight, its limit" "$tmp/two.out")" = 1 ] ||
    fail "--client-in-flight 1 did not reach the coordinator: $(head -c 400 "$tmp/two.out")"
  kill -KILL "$c1"
  wait_for "$tmp/serve.out" "serve: the coordinator .* restarting it" 20 || fail "serve.sh did not restart the coordinator"
  wait_for "$tmp/serve.out" "moe-coordinator: ready" 60 || fail "the new coordinator never became ready"
  kill -0 "$mpi" || fail "the worker job (mpirun $mpi) died with the coordinator"
  "$bin/moe-client" --connect "$ep" --ids 1,2,3 --ids-out --usage --timeout 30 > /dev/null 2> "$tmp/b.err" \
      || fail "a request after the restart failed: $(cat "$tmp/b.err")"
  [ "$(pgrep -f "^mpirun .*$bin/moe-worker --model $model --coordinator ipc://$tmp/w")" = "$mpi" ] || fail "a new worker job"
  grep -q "adopted the live worker job (pid $mpi)" "$tmp/serve.err" || fail "the new coordinator did not say it adopted the job"
  echo "ok: under serve.sh a killed coordinator was replaced; it adopted the same worker job (mpirun $mpi)"
  # the job now dies: the coordinator under serve.sh starts a new one
  rank=$(pgrep -f "^$bin/moe-worker --model $model --coordinator ipc://$tmp/w" | head -1) || fail "no rank"
  kill -KILL "$rank"
  wait_for "$tmp/serve.err" "the worker job is ready again" 60 || fail "a dead worker job was not restarted under serve.sh"
  "$bin/moe-client" --connect "$ep" --ids 1,2,3 --ids-out --timeout 30 > /dev/null 2> "$tmp/c.err" \
      || fail "a request after the job's restart failed: $(cat "$tmp/c.err")"
  echo "ok: a killed rank under serve.sh: the coordinator restarted the job and served on"
  kill -TERM "$sv"
  wait_exit "$sv" 60 || fail "serve.sh did not stop"
  grep -q "serve: stopped" "$tmp/serve.out" || fail "no clean stop"
  pgrep -f "$bin/moe-worker --model $model --coordinator ipc://$tmp/w" && fail "ranks left after serve.sh stopped"
  pgrep -f "$bin/moe-coordinator --model $model --listen $ep" && fail "a coordinator left after serve.sh stopped"
  echo "ok: serve.sh stopped, no coordinator or rank left"
  ;;
adopt)
  launch() { coordinator "$1" --ranks 2 --job-file "$tmp/job" --launch auto --exact; }
  launch c1
  wait_for "$tmp/c1.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  # --launch auto passes the flags after it to every rank
  [ "$(pgrep -f "^$bin/moe-worker --model $model --coordinator ipc://$tmp/w --exact\$" | wc -l)" = 2 ] ||
    fail "the ranks were not started with --exact: $(pgrep -af moe-worker)"
  mpi=$(sed -n 's/^pid //p' "$tmp/job")
  [ -n "$mpi" ] && kill -0 "$mpi" || fail "the job file does not name the live job: $(cat "$tmp/job")"
  pids+=("$mpi")   # its session is killed on the way out, whatever happens
  kill -KILL "$coord"
  wait "$coord" 2>/dev/null
  kill -0 "$mpi" || fail "the worker job died with its coordinator"
  launch c2
  c2=$coord
  wait_for "$tmp/c2.out" "moe-coordinator: ready" 30 || fail "the new coordinator never became ready"
  grep -q "adopted the live worker job (pid $mpi)" "$tmp/c2.err" || fail "no adoption: $(cat "$tmp/c2.err")"
  [ "$(pgrep -x mpirun -s "$mpi")" = "$mpi" ] || fail "not the same single launcher"
  [ "$(pgrep -f "^mpirun .*moe-worker --model $model --coordinator ipc://$tmp/w" | wc -l)" = 1 ] || fail "a second worker job"
  "$bin/moe-client" --connect "$ep" --ids 1,2,3 --max-tokens 6 --ids-out --timeout 30 > /dev/null 2> "$tmp/a.err" \
      || fail "a request on the adopted job failed: $(cat "$tmp/a.err")"
  echo "ok: a new coordinator adopted the live job (mpirun $mpi) and served"
  # a third coordinator on the same job file, while the second runs: refused
  "$bin/moe-coordinator" --model "$model" --listen "ipc://$tmp/c3" --workers "ipc://$tmp/w3" --ranks 2 \
      --job-file "$tmp/job" --launch auto > /dev/null 2> "$tmp/c3.err" && fail "a third coordinator took the job"
  grep -q "belongs to a coordinator that still runs (pid $c2)" "$tmp/c3.err" || fail "no clear refusal: $(cat "$tmp/c3.err")"
  kill -0 "$mpi" || fail "the refused coordinator touched the job"
  echo "ok: a third coordinator on the same job file was refused: $(grep "belongs to" "$tmp/c3.err")"
  # the adopted job dies: restarted like an own one
  kill -KILL "$mpi"
  wait_for "$tmp/c2.err" "the worker job is ready again" 60 || fail "the adopted job's death was not handled"
  grep -q "the adopted worker job's launcher (pid $mpi) is gone" "$tmp/c2.err" || fail "the reason was not logged"
  mpi2=$(sed -n 's/^pid //p' "$tmp/job")
  [ -n "$mpi2" ] && [ "$mpi2" != "$mpi" ] || fail "the job file does not name the new job"
  pids+=("$mpi2")
  "$bin/moe-client" --connect "$ep" --ids 1,2,3 --max-tokens 6 --ids-out --timeout 30 > /dev/null 2> "$tmp/b.err" \
      || fail "a request after the restart failed: $(cat "$tmp/b.err")"
  kill -TERM "$c2"
  wait_exit "$c2" 30 || fail "the coordinator did not stop"
  [ -e "$tmp/job" ] && fail "the job file outlived the job"
  [ -n "$(session_live "$mpi2")" ] && fail "processes of the job outlived a clean stop: $(session_live "$mpi2" | tr '\n' ' ')"
  echo "ok: the adopted job, killed, was restarted (mpirun $mpi2); a clean stop ended it and removed the job file"
  ;;
*) fail "unknown check $1" ;;
esac
