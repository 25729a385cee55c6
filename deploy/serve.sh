#!/usr/bin/env bash
# Serves a model: starts moe-coordinator, which runs the worker job (mpirun
# moe-worker --coordinator) itself (--launch): it restarts the job when it
# dies and replays the requests it held, bit for bit.  serve.sh waits until
# every rank has joined (the coordinator's ready line, never a sleep),
# prints how to send a request, and runs until SIGINT/SIGTERM, which drains
# the coordinator (requests in flight finish) and then stops the worker
# job.  A coordinator that dies (killed, crashed) is started again on the
# same endpoints after 1 s; it adopts the worker job the old one left
# running (--job-file), whose ranks join it (their old sequences are
# dropped, the old clients get unknown_request).  Five deaths within 10 s
# of their start in a row: serve.sh gives up and stops.
#
#   deploy/serve.sh --model FILE.gguf [--ranks N] [--hostfile FILE]
#                   [--listen EP] [--http HOST:PORT] [--workers EP] [--workers-connect EP]
#                   [--threads T] [--exact] [--bin DIR] [coordinator settings] [-- extra moe-worker flags]
#
# coordinator settings, passed as given (moe-coordinator --help):
#   --queue N  --max-running N  --max-tokens N  --client-timeout-ms MS
#   --worker-timeout-ms MS  --max-step-ms MS  --no-ranks-timeout-ms MS  --drain-timeout-ms MS
#   --api-key KEY  --log-format text|json  --metrics-file PATH
#   --max-start-failures N  --restart-backoff-ms MS  --start-timeout-ms MS
#   --client-keys FILE|DIR  --tls-cert FILE  --tls-key FILE  --insecure
#   --client-in-flight N  --client-queue N  --client-prompt-bps B
#   --prompt-inline-bytes B  --prompt-threads N
#
# Per-client limits (docs/limits.md): a client is its CURVE key, else its
# address, so with the default loopback endpoints every local program is
# one client.  serve.sh keeps the coordinator's defaults (64 requests in
# flight, a quarter of --queue queued, 4 MiB of prompts a second per
# client; 2 prompt threads); behind a gateway or for a load generator that
# stands for many users on one address, pass --client-in-flight 0
# --client-queue 0 (or give each user a CURVE key).
#
# --listen    client endpoint (default tcp://127.0.0.1:5555)
# --http      the OpenAI-compatible HTTP API (default 127.0.0.1:8000; port 0:
#             any free one; none: no HTTP)
# --workers   where the coordinator listens for ranks (default tcp://127.0.0.1:5556;
#             with a hostfile use e.g. tcp://0.0.0.0:5556)
# --workers-connect  what the ranks connect to (default: --workers; with a
#             hostfile e.g. tcp://<this host>:5556)
# --keys DIR  CURVE on the worker link (docs/security.md): the coordinator
#             runs with --curve-secret DIR/coordinator.key_secret --worker-key
#             DIR/job.key, every rank with --curve-server-key DIR/coordinator.key
#             --curve-secret DIR/job.key_secret (DIR at the same path on every
#             host); pairs missing there are made with moe-keygen.  Needed for a
#             worker endpoint that is not loopback (or --insecure).  With
#             --client-keys the client endpoint is CURVE too.
# --exact     the ranks compute with float activations (moe-worker --exact);
#             the default is int8 activations for quantized weights
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/release/bin
keys="" model="" ranks=2 hostfile="" listen="tcp://127.0.0.1:5555" http="127.0.0.1:8000" workers="tcp://127.0.0.1:5556" connect="" threads=1
extra=() coord_flags=() exact=()
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --hostfile) hostfile=$2; shift 2 ;;
    --listen) listen=$2; shift 2 ;;
    --http) http=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --workers-connect) connect=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --exact) exact=(--exact); shift ;;
    --bin) bin=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --insecure) coord_flags+=("$1"); shift ;;
    --queue|--max-running|--max-tokens|--client-timeout-ms|--worker-timeout-ms|--no-ranks-timeout-ms|\
    --max-step-ms|--drain-timeout-ms|--api-key|--log-format|--metrics-file|--max-start-failures|--restart-backoff-ms|\
    --start-timeout-ms|--client-keys|--tls-cert|--tls-key|--client-in-flight|--client-queue|--client-prompt-bps|\
    --prompt-inline-bytes|--prompt-threads|--prefix-slack|--prefix-cache-scope)
      [ $# -ge 2 ] || { echo "serve: $1 needs a value" >&2; exit 2; }
      coord_flags+=("$1" "$2"); shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "serve: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$model" ] || { echo "serve: --model is required" >&2; exit 2; }
[ -f "$model" ] || { echo "serve: model '$model' not found" >&2; exit 1; }
[ -x "$bin/moe-coordinator" ] || { echo "serve: $bin/moe-coordinator not built (scripts/build.sh release)" >&2; exit 1; }
[ -n "$connect" ] || connect=$workers

run=$(mktemp -d "${TMPDIR:-/tmp}/moe-serve.XXXXXX")
job="$run/job"   # the coordinator records its live worker job here (--job-file)
coord_pid="" stopping=""
# the worker job's processes, when a coordinator that died left it running
# (the job file names its launcher, whose session holds every rank)
kill_left_job() {
  local sid
  sid=$(sed -n 's/^pid \([0-9][0-9]*\)$/\1/p' "$job" 2>/dev/null) || return 0
  [ -n "$sid" ] || return 0
  pkill -TERM -s "$sid" 2>/dev/null || true
  for _ in $(seq 1 50); do pgrep -s "$sid" > /dev/null || break; sleep 0.1; done
  pkill -KILL -s "$sid" 2>/dev/null || true
}
stop() {
  stopping=1
  trap - INT TERM EXIT
  if [ -n "$coord_pid" ] && kill -0 "$coord_pid" 2>/dev/null; then
    kill -TERM "$coord_pid" 2>/dev/null   # drain: requests in flight finish, then it stops the job
    wait "$coord_pid" 2>/dev/null || true
  fi
  kill_left_job
  rm -rf "$run"
  echo "serve: stopped"
}
trap stop INT TERM EXIT

# the worker job's command; the coordinator runs it (--launch), restarts it
# when it dies and replays the requests it held
mpi=(mpirun --bind-to none -np "$ranks" -x OPENBLAS_NUM_THREADS=1)
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
if [ -n "$hostfile" ]; then mpi+=(--hostfile "$hostfile"); else mpi+=(--oversubscribe --mca btl self,vader); fi
[ -n "$connect" ] || connect="{workers}"   # the coordinator puts its bound workers endpoint there
curve_worker=()
if [ -n "$keys" ]; then
  mkdir -p "$keys"
  for n in coordinator job; do
    [ -f "$keys/$n.key_secret" ] || "$bin/moe-keygen" "$keys" "$n" > /dev/null || exit 1
  done
  coord_flags+=(--curve-secret "$keys/coordinator.key_secret" --worker-key "$keys/job.key")
  curve_worker=(--curve-server-key "$keys/coordinator.key" --curve-secret "$keys/job.key_secret")
fi
launch=("${mpi[@]}" "$bin/moe-worker" --model "$model" --coordinator "$connect" --threads "$threads" \
        "${curve_worker[@]}" "${exact[@]}" "${extra[@]}")

# the coordinator (its stderr goes to ours: joins, warnings, drain); in a
# session of its own.  A new one started after a crash adopts the job the
# old one left running (the job file) instead of starting a second.
http_flags=()
[ "$http" = none ] || http_flags=(--http "$http")
start_coordinator() {
  setsid "$bin/moe-coordinator" --model "$model" --listen "$listen" "${http_flags[@]}" --workers "$workers" \
      --ranks "$ranks" "${coord_flags[@]}" --job-file "$job" --launch "${launch[@]}" > "$run/coord.out" &
  coord_pid=$!
  coord_started=$(date +%s)
}
start_coordinator

# ready when the coordinator says every rank joined
for _ in $(seq 1 1200); do
  grep -q "moe-coordinator: ready" "$run/coord.out" 2>/dev/null && break
  kill -0 "$coord_pid" 2>/dev/null || { echo "serve: the coordinator exited" >&2; exit 1; }
  sleep 0.1
done
grep -q "moe-coordinator: ready" "$run/coord.out" || { echo "serve: not ready after 120 s" >&2; exit 1; }
cat "$run/coord.out"
echo "serve: ready. Send a request with:"
echo "  $bin/moe-client --connect $listen --prompt 'Hello, world' --max-tokens 32"
# the bound address (port 0 becomes a real one) is in the ready line
url=$(grep -Eo 'http://[^, ]+' "$run/coord.out" | head -1 || true)
[ -z "$url" ] || echo "  curl $url/v1/completions -H 'Content-Type: application/json' -d '{\"prompt\": \"Hello, world\", \"max_tokens\": 32}'"
echo "serve: Ctrl-C (or SIGTERM) drains and stops."
quick_deaths=0
while :; do
  rc=0
  wait "$coord_pid" || rc=$?
  [ -z "$stopping" ] || break
  # exit 0: it drained on a SIGTERM of its own (and stopped the job); serve.sh stops too
  [ "$rc" != 0 ] || { coord_pid=""; break; }
  if [ $(( $(date +%s) - coord_started )) -lt 10 ]; then quick_deaths=$((quick_deaths + 1)); else quick_deaths=1; fi
  [ "$quick_deaths" -lt 5 ] || { echo "serve: the coordinator died 5 times in a row within 10 s of its start; giving up" >&2; coord_pid=""; exit 1; }
  echo "serve: the coordinator exited ($rc); restarting it in 1 s (it adopts the running worker job)"
  sleep 1
  start_coordinator
  for _ in $(seq 1 600); do
    grep -q "moe-coordinator: ready" "$run/coord.out" 2>/dev/null && break
    kill -0 "$coord_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$run/coord.out"
done
coord_pid=""
