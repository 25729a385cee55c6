#!/usr/bin/env bash
# Live rebalancing of a serving job (docs/routing.md): a real coordinator
# (--http on an ephemeral port), a real 2-rank mpirun job, curl.
#   - POST /admin/placement with a bad placement: 202, then GET says it was
#     refused with the job's reason; the job keeps serving;
#   - 16 concurrent greedy requests with logprobs, undisturbed; the same 16
#     again with a placement that moves half the experts posted while they
#     decode (after the first streamed token): GET says it was applied at a
#     step, and every answer's text and logprobs are identical to the first;
#   - /metrics counts one refused and one applied placement.
# Every collective is held 2 ms (--test-xchg-delay-us) so the streams are
# still decoding when the placement arrives.
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
fx=${MOE_FIXTURES:?MOE_FIXTURES not set}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-live-serve.XXXXXX")
source "$here/proc.sh"
model=$fx/models/v3_mini_f32.gguf

setsid "$bin/moe-coordinator" --model "$model" --listen none --http 127.0.0.1:0 --workers "ipc://$tmp/w" --ranks 2 \
    > "$tmp/coord.out" 2> "$tmp/coord.err" &
pids+=("$!")
wait_for "$tmp/coord.err" "clients at http://" 30 || fail "the coordinator never listened"
url=$(grep -Eo "http://127\.0\.0\.1:[0-9]+" "$tmp/coord.err" | head -1)
"$here/mpirun.sh" 2 300 "$bin/moe-worker" --model "$model" --coordinator "ipc://$tmp/w" --ignore-eos \
    --test-xchg-delay-us 2000 > "$tmp/worker.out" 2> "$tmp/worker.err" &
pids+=("$!")
wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"

# wait_done ID: GET /admin/placement until its result for ID is in
wait_done() {
  for _ in $(seq 1 400); do
    curl -s "$url/admin/placement" > "$tmp/pl.json"
    [ "$(jq -r .done "$tmp/pl.json")" = "$1" ] && return 0
    sleep 0.05
  done
  fail "no result for placement $1: $(cat "$tmp/pl.json")"
}

printf '* 0 0-16\n* 1 0-15\n' > "$tmp/bad.placement"
code=$(curl -s -o "$tmp/body" -w '%{http_code}' --data-binary "@$tmp/bad.placement" "$url/admin/placement")
[ "$code" = 202 ] && [ "$(jq -r .id "$tmp/body")" = 1 ] || fail "POST: $code $(cat "$tmp/body")"
wait_done 1
[ "$(jq -r .ok "$tmp/pl.json")" = false ] || fail "a bad placement was applied: $(cat "$tmp/pl.json")"
jq -r .message "$tmp/pl.json" | grep -q "16" || fail "the refusal does not say why: $(cat "$tmp/pl.json")"
echo "refused: $(jq -r .message "$tmp/pl.json")"
code=$(curl -s -o "$tmp/body" -w '%{http_code}' --data-binary '' "$url/admin/placement")
[ "$code" = 400 ] || fail "an empty placement: $code $(cat "$tmp/body")"

# round NAME: 16 streams (prompts of token ids), the outputs in NAME.<i>
round() {
  local i
  curls=()
  for i in $(seq 0 15); do
    curl -sN "$url/v1/completions" -d "{\"prompt\": [$((i * 7 % 400)), $((i * 13 % 400 + 1)), $((i + 5))], \"max_tokens\": 24, \"temperature\": 0, \"logprobs\": 2, \"stream\": true}" \
        > "$tmp/$1.$i" &
    curls+=("$!")
  done
}
round base
wait "${curls[@]}"
printf '* 0 %s\n* 1 %s\n' "$(seq 1 2 15 | tr '\n' ' ')" "$(seq 0 2 15 | tr '\n' ' ')" > "$tmp/swap.placement"
round live
wait_for "$tmp/live.0" '^data: \{' 30 || fail "no stream started"
code=$(curl -s -o "$tmp/body" -w '%{http_code}' --data-binary "@$tmp/swap.placement" "$url/admin/placement")
[ "$code" = 202 ] || fail "POST: $code $(cat "$tmp/body")"
wait "${curls[@]}"
wait_done 2
[ "$(jq -r .ok "$tmp/pl.json")" = true ] || fail "the placement was not applied: $(cat "$tmp/pl.json")"
[ "$(jq -r .moved "$tmp/pl.json")" -ge 12 ] || fail "too few experts moved: $(cat "$tmp/pl.json")"
echo "applied: $(cat "$tmp/pl.json")"
grep "placement from the coordinator applied" "$tmp/worker.err" || fail "the job did not log the change"
# a stream as one answer: its text, and per token its logprob and
# alternatives (how tokens are grouped into events depends on timing)
whole() {
  sed -n 's/^data: //p' "$1" | grep -v DONE |
    jq -cs '[.[].choices[0]] | [(map(.text) | add), (map(.logprobs.token_logprobs) | add), (map(.logprobs.top_logprobs) | add), (map(.logprobs.tokens) | add)]'
}
for i in $(seq 0 15); do
  a=$(whole "$tmp/base.$i") b=$(whole "$tmp/live.$i")
  n=$(echo "$a" | jq '.[1] | length')
  [ "$n" = 24 ] || fail "stream $i: $n token logprobs"
  [ "$a" = "$b" ] || { echo "$a"; echo "$b"; fail "stream $i differs after the placement change"; }
done
# the metrics count one refused and one applied placement, and the last balancedness
curl -s "$url/metrics" > "$tmp/metrics"
grep -Eq '^moe:expert_placements_total\{.*result="applied"\} 1$' "$tmp/metrics" || fail "no applied placement in the metrics"
grep -Eq '^moe:expert_placements_total\{.*result="refused"\} 1$' "$tmp/metrics" || fail "no refused placement in the metrics"
after=$(sed -n 's/^moe:expert_placement_balancedness{.*when="after"} //p' "$tmp/metrics")
[ "$after" = "$(jq -r .balancedness_after "$tmp/pl.json")" ] || [ -n "$after" ] || fail "no balancedness in the metrics"
grep "^moe:expert_placement" "$tmp/metrics"
echo "ok: 16 streams identical (text and logprobs) through a live placement change"
