#!/usr/bin/env bash
# Routed experts returned per request (issue 16 item 1) and the expert
# distribution recorder (item 2), end to end on a 2-rank job of a skewed
# V3-shaped model (moe-mkmodel --preset v3-route --router-skew 0.5).
#
#   routed_test.sh routed     a greedy request's routed experts over HTTP
#                             (whole, streamed, with weights) and over the
#                             native protocol (moe-client --routed-experts)
#                             equal the rows moe-worker --trace records for
#                             the same prompt; the size limit is a 400
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-routed.XXXXXX")
source "$here/proc.sh"

model=$tmp/skew.gguf
"$bin/moe-mkmodel" --preset v3-route --router-skew 0.5 -o "$model" > /dev/null 2>&1 || fail "moe-mkmodel"
prompt=3,6,41,21,7,300,12
ntok=12

start_cluster() { # [coordinator flags...]
  setsid "$bin/moe-coordinator" --model "$model" --listen "ipc://$tmp/c" --http 127.0.0.1:0 --workers "ipc://$tmp/w" \
      --ranks 2 "$@" > "$tmp/coord.out" 2> "$tmp/coord.err" &
  pids+=("$!")
  wait_for "$tmp/coord.err" "clients at " 30 || fail "the coordinator never listened"
  url=$(grep -Eo "http://127\.0\.0\.1:[0-9]+" "$tmp/coord.err" | head -1)
  "$here/mpirun.sh" 2 300 "$bin/moe-worker" --model "$model" --coordinator "ipc://$tmp/w" \
      > "$tmp/worker.out" 2> "$tmp/worker.err" &
  pids+=("$!")
  wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
}
post() { # PATH JSON: body into $tmp/body, status into $status
  status=$(curl -s -o "$tmp/body" -w '%{http_code}' --data-binary "$2" "$url$1")
}

case ${1:?usage: routed_test.sh routed} in
routed)
  # the reference: the same prompt in batch mode, its trace
  echo "$prompt $ntok" > "$tmp/batch"
  "$here/mpirun.sh" 2 60 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --ignore-eos --trace "$tmp/ref.trace" \
      > "$tmp/ref.out" 2> "$tmp/ref.err" || fail "the batch job failed"
  rows=$(wc -l < "$tmp/ref.trace")
  [ "$rows" = $(((7 + ntok - 1) * 3)) ] || fail "the trace has $rows rows, not (prompt + tokens - 1) x 3 MoE layers"
  start_cluster
  body="{\"prompt\": [$prompt], \"max_tokens\": $ntok, \"temperature\": 0, \"ignore_eos\": true, \"return_routed_experts\": true"
  post /v1/completions "$body, \"return_routed_expert_weights\": true}"
  [ "$status" = 200 ] || fail "completion: $status $(cat "$tmp/body")"
  python3 "$here/routed_check.py" http "$tmp/body" "$tmp/ref.trace" || fail "whole answer"
  [ "$(jq -c '.choices[0].routed_experts.shape' "$tmp/body")" = "[$((7 + ntok - 1)),3,8]" ] || fail "shape"

  curl -sN "$url/v1/completions" -d "$body, \"stream\": true}" > "$tmp/sse" || fail "stream"
  python3 "$here/routed_check.py" http "$tmp/sse" "$tmp/ref.trace" || fail "stream"
  # off: no field at all
  post /v1/completions "{\"prompt\": [$prompt], \"max_tokens\": 2}"
  [ "$(jq -r '.choices[0] | has("routed_experts")' "$tmp/body")" = false ] || fail "routed_experts without asking"
  # the native protocol
  "$bin/moe-client" --connect "ipc://$tmp/c" --ids "$prompt" --max-tokens $ntok --temp 0 --ignore-eos --ids-out \
      --routed-experts "$tmp/client.routed" --routed-expert-weights > "$tmp/client.out" 2> "$tmp/client.err" \
      || fail "moe-client"
  python3 "$here/routed_check.py" client "$tmp/client.routed" "$tmp/ref.trace" || fail "moe-client lines"
  # the size limit and a bad combination are 400s naming why
  post /v1/completions "{\"prompt\": [$prompt], \"max_tokens\": 200000, \"return_routed_experts\": true}"
  [ "$status" = 400 ] && grep -q "more than the limit of 4194304" "$tmp/body" || fail "size limit: $status $(cat "$tmp/body")"
  post /v1/completions "{\"prompt\": [$prompt], \"return_routed_expert_weights\": true}"
  [ "$status" = 400 ] && [ "$(jq -r .error.param "$tmp/body")" = return_routed_expert_weights ] || fail "weights alone: $status"
  echo "ok: routed experts over HTTP (whole, stream) and moe-client equal moe-worker --trace's rows; limits are 400s"
  ;;
*) fail "unknown check $1" ;;
esac
