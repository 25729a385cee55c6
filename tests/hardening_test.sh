#!/usr/bin/env bash
# Hardening checks (docs/limits.md): a real coordinator and worker job, the
# clients of tests/hard_client.c over loopback TCP (junk from 127.0.0.2+).
#
#   hardening_test.sh flood | bomb | bigprompt
#
# Bounds: FLOOD_P99_MS, BOMB_MIB, BOMB_BACK_MIB, BIG_TTFT_MS override the CI
# ones (>= 5x the measured figures); bench/hardening/run.sh sets them tight.
# BIG_FLAGS replaces the coordinator flags of bigprompt (empty: for a build
# that predates them, to see the check fail there).
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
model=${MOE_FIXTURES:?MOE_FIXTURES not set}/models/v3_mini_f32.gguf
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-hard.XXXXXX")
source "$here/proc.sh"

# start_cluster RANKS [coordinator flags...]: clients on an ephemeral loopback port
start_cluster() {
  local ranks=$1; shift
  setsid "$bin/moe-coordinator" --model "$model" --listen "tcp://127.0.0.1:*" --workers "ipc://$tmp/w" \
      --ranks "$ranks" "$@" > "$tmp/coord.out" 2> "$tmp/coord.err" &
  coord=$!; pids+=("$coord")
  "$here/mpirun.sh" "$ranks" 300 "$bin/moe-worker" --model "$model" --coordinator "ipc://$tmp/w" --ignore-eos \
      > "$tmp/worker.out" 2> "$tmp/worker.err" &
  pids+=("$!")
  wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  port=$(sed -n 's/.*clients at tcp:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/coord.out")
  [ -n "$port" ] || fail "no port in the ready line"
}

case ${1:?usage: hardening_test.sh flood|bomb|bigprompt} in
flood)
  # 200 identities x 20 requests from one host, then 30 valid clients: every
  # valid request is served (per-client limits, round robin placement)
  start_cluster 1 --client-timeout-ms 3000 --drain-timeout-ms 20000 --metrics-file "$tmp/metrics.prom"
  "$bin/hard_client" flood 127.0.0.1 "$port" 200 30 "${FLOOD_P99_MS:-10000}" || { grep -m3 "refused a request" "$tmp/coord.err"; fail "flood"; }
  # refusals of the junk host are logged a few times, not once per identity;
  # so are identities going silent with requests in flight (they time out
  # while the coordinator drains; the limiter's counts are printed at exit)
  kill -TERM "$coord"; wait "$coord"
  n=$(grep -c "refused a request of client addr:127.0.0.2" "$tmp/coord.err")
  g=$(grep -c "a client went silent" "$tmp/coord.err")
  echo "coordinator log lines about the junk host: $n on refusals, $g on identities gone silent"
  grep -m3 -E "refused a request|a client went silent" "$tmp/coord.err"
  [ "$n" -le 4 ] && [ "$g" -le 4 ] || fail "log lines about every junk identity: not rate-limited"
  grep "^moe:client_limit_refusals_total" "$tmp/metrics.prom"
  grep -Eq '^moe:client_limit_refusals_total\{.*limit="in_flight"\} [1-9]' "$tmp/metrics.prom" \
      || fail "the refusals are not in the metrics"
  ;;
bomb)
  start_cluster 1
  "$bin/hard_client" bomb 127.0.0.1 "$port" "$coord" "${BOMB_SECONDS:-5}" "${BOMB_MIB:-512}" "${BOMB_BACK_MIB:-64}" 5 \
      || fail "memory bomb"
  ;;
bigprompt)
  # no byte rate limit: the big prompts are all tokenized, off the loop
  start_cluster 1 ${BIG_FLAGS---client-prompt-bps 0}
  "$bin/hard_client" bigprompt 127.0.0.1 "$port" "${BIG_SECONDS:-4}" 10 "${BIG_TTFT_MS:-1500}" || fail "big prompts"
  ;;
*) echo "unknown check $1"; exit 2 ;;
esac
echo "ok: $1"
