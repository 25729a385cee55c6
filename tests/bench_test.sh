#!/usr/bin/env bash
# moe-bench end to end: a real coordinator (ZMQ and HTTP on ephemeral
# ports, read from its own ready line) and a real 2-rank worker job on a
# tiny generated model; a small sweep over HTTP and one over ZMQ.  The
# report's counts must equal what the server itself counted (/metrics:
# requests ended, prompt and generated tokens), the JSON must load with
# Python's json and carry vLLM's keys, and the CSV one line per request.
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
fx=${MOE_FIXTURES:?MOE_FIXTURES not set}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-bench.XXXXXX")
source "$here/proc.sh"
# metric NAME: the sum of its series in a fresh scrape
metric() {
  curl -sf "$url/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d\n", s }'
}

model=$tmp/m.gguf
"$bin/moe-mkmodel" --preset tiny --type q8_0 --vocab-from "$fx/tokenizer/deepseek-v3-vocab.gguf" -o "$model" 2>/dev/null \
  || fail "moe-mkmodel"
setsid "$bin/moe-coordinator" --model "$model" --listen tcp://127.0.0.1:0 --http 127.0.0.1:0 --workers "ipc://$tmp/w" \
    --ranks 2 > "$tmp/coord.out" 2> "$tmp/coord.err" &
pids+=("$!")
"$here/mpirun.sh" 2 300 "$bin/moe-worker" --model "$model" --coordinator "ipc://$tmp/w" \
    > "$tmp/worker.out" 2> "$tmp/worker.err" &
pids+=("$!")
wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
url=$(grep -Eo "http://127\.0\.0\.1:[0-9]+" "$tmp/coord.out" | head -1)
zmq=$(grep -Eo "tcp://127\.0\.0\.1:[0-9]+" "$tmp/coord.out" | head -1)
[ -n "$url" ] && [ -n "$zmq" ] || fail "no endpoints in the ready line"

# bench TARGET-FLAGS... : 12 random prompts (8..24 tokens, 6..18 out), 2 rates
bench() {
  "$bin/moe-bench" "$@" --tokenizer "$model" --dataset-name random --random-input-len 16 --random-output-len 12 \
      --random-range-ratio 0.5 --num-prompts 12 --request-rate 20,inf --max-concurrency 4 --seed 5 --ignore-eos \
      --num-warmups 2 --metric-percentiles 50,99 --save-result --result-dir "$tmp/res" --disable-tqdm
}

# the same seed gives the same prompts: the input total is known up front
# and must be the same over both transports
check_run() { # NAME OUT REQS0 GEN0 PROMPT0
  local out=$2
  [ "$(grep -c '^============ Serving Benchmark Result ============$' "$out")" = 2 ] || fail "$1: not two result blocks"
  # 2 runs x 12 successful, none failed; 2 warm-ups are not counted
  [ "$(grep -c '^Successful requests: *12 *$' "$out")" = 2 ] || fail "$1: successful counts: $(grep Successful "$out")"
  [ "$(grep -c '^Failed requests: *0 *$' "$out")" = 2 ] || fail "$1: failed counts"
  local rin rgen reqs gen prompt
  rin=$(awk '/^Total input tokens:/ { s += $4 } END { print s }' "$out")
  rgen=$(awk '/^Total generated tokens:/ { s += $4 } END { print s }' "$out")
  reqs=$(( $(metric moe:request_success_total) - $3 ))
  gen=$(( $(metric moe:generation_tokens_total) - $4 ))
  prompt=$(( $(metric moe:prompt_tokens_total) - $5 ))
  # the server also ran the 2 warm-ups (the first 2 prompts)
  local win wgen
  win=$(python3 -c "import json,glob; d=[json.load(open(f)) for f in sorted(glob.glob('$tmp/res/$1-*.json'))]; print(sum(d[0]['input_lens'][:2]))")
  wgen=$(python3 -c "import json,glob; d=[json.load(open(f)) for f in sorted(glob.glob('$tmp/res/$1-*.json'))]; print(sum(d[0]['output_lens'][:2]))")
  [ "$reqs" = 26 ] || fail "$1: the server ended $reqs requests, the benchmark sent 24 + 2 warm-ups"
  [ "$gen" = $((rgen + wgen)) ] || fail "$1: the server generated $gen tokens, the report says $rgen + $wgen (warm-ups)"
  [ "$prompt" = $((rin + win)) ] || fail "$1: the server counted $prompt prompt tokens, the report $rin + $win (warm-ups)"
  # --ignore-eos: every request ran to its output length
  python3 - "$tmp/res" "$1" <<'PY' || fail "$1: the JSON results"
import csv, glob, json, sys
d, name = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(f"{d}/{name}-*.json"))
assert len(files) == 2, files
keys = ["duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
        "output_throughput", "total_token_throughput", "max_output_tokens_per_s", "max_concurrent_requests",
        "input_lens", "output_lens", "ttfts", "itls", "errors", "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms",
        "p99_ttft_ms", "p50_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms", "mean_itl_ms",
        "median_itl_ms", "p99_itl_ms", "mean_e2el_ms", "p99_e2el_ms", "date", "model_id", "tokenizer_id",
        "num_prompts", "request_rate", "burstiness", "max_concurrency"]
for f in files:
    r = json.load(open(f))
    missing = [k for k in keys if k not in r]
    assert not missing, (f, missing)
    assert r["completed"] == 12 and r["failed"] == 0 and r["num_prompts"] == 12 and r["max_concurrency"] == 4, f
    assert sum(r["output_lens"]) == r["total_output_tokens"] and sum(r["input_lens"]) == r["total_input_tokens"]
    assert all(8 <= n <= 24 for n in r["input_lens"]), r["input_lens"]
    assert all(0 < t for t in r["ttfts"]) and r["max_concurrent_requests"] <= 4
    assert r["median_ttft_ms"] == r["p50_ttft_ms"]
    rows = list(csv.DictReader(open(f[:-5] + ".csv")))
    assert len(rows) == 12 and all(row["ok"] == "1" for row in rows)
    assert [int(x["output_tokens"]) for x in rows] == r["output_lens"]
print("ok: json and csv", name)
PY
}

base_r=$(metric moe:request_success_total); base_g=$(metric moe:generation_tokens_total); base_p=$(metric moe:prompt_tokens_total)
bench --base-url "$url" --result-filename http > "$tmp/http.out" 2> "$tmp/http.err" || fail "moe-bench over HTTP: $?"
check_run http "$tmp/http.out" "$base_r" "$base_g" "$base_p"
grep -q '^-*Cluster (moe)-*$' "$tmp/http.out" || fail "no cluster block over HTTP"
[ "$(awk '/^Server requests ended:/ { s += $4 } END { print s }' "$tmp/http.out")" = 24 ] \
  || fail "the cluster block's request counts: $(grep 'Server requests' "$tmp/http.out")"
grep -Eq '^Rank 1 mean step time \(ms\): +[0-9.]+' "$tmp/http.out" || fail "no per-rank step time"
echo "ok: HTTP: two runs of 12, counts equal to the server's /metrics"

base_r=$(metric moe:request_success_total); base_g=$(metric moe:generation_tokens_total); base_p=$(metric moe:prompt_tokens_total)
bench --connect "$zmq" --metrics-url "$url/metrics" --result-filename zmq > "$tmp/zmq.out" 2> "$tmp/zmq.err" \
  || fail "moe-bench over ZMQ: $?"
check_run zmq "$tmp/zmq.out" "$base_r" "$base_g" "$base_p"
# the same seed sent the same prompts: equal input totals on both transports
[ "$(grep '^Total input tokens' "$tmp/http.out")" = "$(grep '^Total input tokens' "$tmp/zmq.out")" ] \
  || fail "HTTP and ZMQ sent different prompts"
echo "ok: ZMQ: the same prompts, counts equal to the server's /metrics"

# no model file: random prompts from the ids of the server's /tokenize, still
# token-exact (the server counts what the report says)
base_p=$(metric moe:prompt_tokens_total)
"$bin/moe-bench" --base-url "$url" --random-input-len 20 --random-output-len 3 --num-prompts 5 --num-warmups 0 \
    --disable-tqdm > "$tmp/tok.out" 2> "$tmp/tok.err" || fail "moe-bench without --tokenizer: $?"
grep -q "random prompts from [0-9]* distinct ids of the server's /tokenize" "$tmp/tok.err" || fail "no /tokenize vocabulary"
[ "$(( $(metric moe:prompt_tokens_total) - base_p ))" = 100 ] && grep -q '^Total input tokens: *100 *$' "$tmp/tok.out" \
  || fail "/tokenize prompts: not 5 x 20 tokens: $(grep 'Total input' "$tmp/tok.out")"
echo "ok: without the model file, prompts from /tokenize ids, 5 x 20 tokens as the server counted"

# a server that is not there: every request fails, exit 1, the block says so
"$bin/moe-bench" --base-url http://127.0.0.1:1 --metrics-url none --tokenizer "$model" --num-prompts 3 \
    --random-input-len 4 --random-output-len 2 --num-warmups 0 --disable-tqdm > "$tmp/down.out" 2> "$tmp/down.err"
[ $? = 1 ] || fail "a refused connection: exit status"
grep -q '^Failed requests: *3 *$' "$tmp/down.out" || fail "a refused connection: $(cat "$tmp/down.out")"
# bad flags: exit 2 with a message, nothing sent
for args in "--request-rate 0" "--max-concurrency 0" "--goodput itl:5" "--dataset-name nope" "--endpoint /v1/x" \
            "--metric-percentiles 100" "--percentile-metrics foo" "--random-range-ratio 1"; do
  # shellcheck disable=SC2086
  "$bin/moe-bench" --base-url "$url" --tokenizer "$model" $args > /dev/null 2> "$tmp/bad.err"
  [ $? = 2 ] && [ -s "$tmp/bad.err" ] || fail "bad flags '$args' not refused with exit 2"
done
echo "ok: a refused connection fails the requests (exit 1); 8 bad flags refused (exit 2)"
