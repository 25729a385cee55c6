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
#   routed_test.sh recorder   moe-worker --record (per_token: the trace's rows;
#                             stat: every pick counted) read with numpy as
#                             docs/routing.md shows, moe-route stats of a
#                             record equal to the trace's; the endpoints:
#                             start, requests, stop, dump, and the file holds
#                             exactly the (token, layer) pairs x top-k routed
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

case ${1:?usage: routed_test.sh routed|recorder} in
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
recorder)
  py=/usr/bin/python3 # Debian's, with python3-numpy (scripts/setup.sh)
  for i in 1 2 3 4; do echo "$((i * 3)),$((i * 5 + 1)),$((i + 40)) $((4 * i))"; done > "$tmp/batch"
  # 4 requests of 3 prompt tokens and 4i tokens: (3 + 4i - 1) rows a layer each, 3 MoE layers
  pairs=$(((2 + 4 + 2 + 8 + 2 + 12 + 2 + 16) * 3))
  "$here/mpirun.sh" 2 60 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --ignore-eos --trace "$tmp/b.trace" \
      --record "$tmp/b.tok" --record-mode per_token > "$tmp/b.out" 2> "$tmp/b.err" || fail "batch per_token"
  $py "$here/record_check.py" "$tmp/b.tok" per_token $pairs 8 "$tmp/b.trace" || fail "batch per_token record"
  "$here/mpirun.sh" 2 60 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --ignore-eos \
      --record "$tmp/b.stat" --record-window 3 > "$tmp/b2.out" 2> "$tmp/b2.err" || fail "batch stat"
  $py "$here/record_check.py" "$tmp/b.stat" stat $pairs 8 || fail "batch stat record"
  cmp -s "$tmp/b.out" "$tmp/b2.out" || fail "recording changed the output"
  "$bin/moe-route" stats "$tmp/b.trace" --model "$model" > "$tmp/s.trace" || fail "stats of the trace"
  "$bin/moe-route" stats "$tmp/b.tok" --model "$model" > "$tmp/s.tok" || fail "stats of the record"
  cmp -s "$tmp/s.trace" "$tmp/s.tok" || fail "moe-route stats of the record differs from the trace's"
  # a stat record: the same expert columns (tokens, bal_exp, entropy) as the trace's
  "$bin/moe-route" stats "$tmp/b.stat" > "$tmp/s.stat" || fail "stats of the stat record"
  cols() { awk '/^layer/ { on = 1; next } /^all/ { exit } on { print $1, $2, $3, $4, $5 }' "$1"; }
  [ -n "$(cols "$tmp/s.stat")" ] && [ "$(cols "$tmp/s.stat")" = "$(cols "$tmp/s.trace")" ] ||
    fail "stats of the stat record: $(cols "$tmp/s.stat") vs the trace's $(cols "$tmp/s.trace")"
  printf 'MOEEXPD\0garbage' > "$tmp/bad.bin"
  "$bin/moe-route" stats "$tmp/bad.bin" --model "$model" > /dev/null 2> "$tmp/bad.err" && fail "a truncated record was read"
  grep -q "not an expert record\|body has\|version" "$tmp/bad.err" || fail "truncated record: $(cat "$tmp/bad.err")"
  echo "ok: moe-worker --record per_token equals the trace, stat counts every pick, moe-route stats reads it"

  start_cluster --record-dir "$tmp"
  post /dump_expert_distribution_record ''
  [ "$status" = 400 ] || fail "a dump before any start: $status $(cat "$tmp/body")"
  post /start_expert_distribution_record '{"mode": "tokens"}'
  [ "$status" = 400 ] && [ "$(jq -r .error.param "$tmp/body")" = mode ] || fail "a bad mode: $status"
  post /start_expert_distribution_record '{"mode": "per_token"}'
  [ "$status" = 200 ] || fail "start: $status $(cat "$tmp/body")"
  run_reqs() {
    for i in 1 2 3 4; do
      post /v1/completions "{\"prompt\": [$((i * 3)), $((i * 5 + 1)), $((i + 40))], \"max_tokens\": $((4 * i)), \"ignore_eos\": true}"
      [ "$status" = 200 ] || fail "request $i: $status"
    done
  }
  run_reqs
  post /stop_expert_distribution_record ''
  [ "$status" = 200 ] && [ "$(jq -r .rows "$tmp/body")" = $pairs ] || fail "stop: $(cat "$tmp/body"), want $pairs rows"
  run_reqs # not recorded
  post /dump_expert_distribution_record ''
  [ "$status" = 200 ] || fail "dump: $status $(cat "$tmp/body")"
  f=$(jq -r .file "$tmp/body")
  case $f in "$tmp"/expert_distribution_per_token_*.bin) ;; *) fail "dumped to '$f'" ;; esac
  $py "$here/record_check.py" "$f" per_token $pairs 8 || fail "the served per_token record"
  "$bin/moe-route" stats "$f" --model "$model" > "$tmp/s.served" 2> "$tmp/s.served.err" || fail "stats of the served record"
  grep -q "^trace: $pairs rows, 3 MoE layers" "$tmp/s.served" || fail "stats of the served record: $(head -1 "$tmp/s.served")"
  post /start_expert_distribution_record '{"window_steps": 2}'
  [ "$(jq -r '.mode, .window_steps' "$tmp/body" | tr '\n' ' ')" = "stat 2 " ] || fail "start stat: $(cat "$tmp/body")"
  run_reqs
  post /dump_expert_distribution_record '' # while recording: what is in
  f=$(jq -r .file "$tmp/body")
  $py "$here/record_check.py" "$f" stat $pairs 8 || fail "the served stat record"
  "$bin/moe-route" stats "$f" > "$tmp/s.served2" || fail "stats of the served stat record"
  echo "ok: start, requests, stop, dump: the served records hold the $pairs (token, layer) pairs x top-8, per_token and stat"
  ;;
*) fail "unknown check $1" ;;
esac
