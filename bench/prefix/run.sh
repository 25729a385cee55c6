#!/usr/bin/env bash
# bench/prefix — prefix caching on a shared-prefix workload: the same
# moe-bench run (its shared-prefix dataset: groups of questions behind one
# system prompt each, one request in flight, so time to first token is the
# prompt's own prefill, and one output token, so the request's end-to-end
# latency is its time to that first token) against a server whose ranks cache prefixes (the
# default) and one whose ranks do not (moe-worker --no-prefix-cache,
# moe-coordinator --prefix-slack -1), alternately, several rounds.  Prints
# each run's median time to the token and the cached share of prompt tokens (the ranks'
# moe:prefix_cache_hits_total over moe:prefix_cache_queries_total), then
# the medians over the rounds: TTFT warm / cold against 1 - cached share
# (what TTFT would be if it were proportional to the tokens computed).
# (moe-bench's own TTFT counts the first chunk with text; a random-weight
# model's first token may have none, so the one-token E2EL is used.)
#
#   bench/prefix/run.sh [--model FILE] [--rounds N] [--groups N] [--per-group N]
#                       [--system-len N] [--question-len N]
#                       [--ranks N] [--threads N] [--quick]
#
# Defaults: models/bench.gguf (moe-mkmodel --preset bench, made once),
# 3 rounds, 4 groups x 4 questions, a 512-token system prompt, 32-token
# questions, 2 ranks x 1 thread.  --quick: the tiny fixture model, 1
# round, 2 x 3 requests (a smoke test).  The model file is read once
# first, so no run pays for paging it in.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${MOE_BIN:-$root/build/release/bin}
model="" rounds=3 groups=4 per=4 sys=512 q=32 out=1 ranks=2 threads=1 quick=0
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --groups) groups=$2; shift 2 ;;
    --per-group) per=$2; shift 2 ;;
    --system-len) sys=$2; shift 2 ;;
    --question-len) q=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --quick) quick=1; rounds=1; groups=2; per=3; sys=64; q=8; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench/prefix: unknown argument $1" >&2; exit 2 ;;
  esac
done
for v in "$rounds" "$groups" "$per" "$sys" "$q" "$out" "$ranks" "$threads"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "bench/prefix: '$v' is not a positive count" >&2; exit 2; }
done
[ -x "$bin/moe-bench" ] || { echo "bench/prefix: build first (scripts/build.sh release)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-bench-prefix.XXXXXX")
# shellcheck source=../lib/procs.sh
. "$root/bench/lib/procs.sh"
# shellcheck source=../lib/moe.sh
. "$root/bench/lib/moe.sh"
trap 'stop_all; rm -rf "$tmp"' EXIT

if [ -z "$model" ]; then
  if [ $quick = 1 ]; then
    model=$tmp/tiny.gguf
    "$bin/moe-mkmodel" --preset tiny --type q8_0 \
        --vocab-from "${MOE_FIXTURES:-$root/../shared/fixtures}/tokenizer/deepseek-v3-vocab.gguf" -o "$model" 2>/dev/null
  else
    model=$(MOE_BIN=$bin moe_bench_model q8_0) || exit 1
  fi
fi
cat "$model" > /dev/null

# run MODE ROUND: one server, one moe-bench run; prints "MODE ttft_ms share"
run() {
  local mode=$1 r=$2 wflags=() cflags=()
  [ "$mode" = cold ] && { wflags=(--no-prefix-cache); cflags=(--prefix-slack -1); }
  local d=$tmp/$mode$r
  mkdir -p "$d"
  setsid "$bin/moe-coordinator" --model "$model" --listen none --http 127.0.0.1:0 --workers "ipc://$d/w" \
      --ranks "$ranks" --client-in-flight 0 --client-queue 0 "${cflags[@]}" > "$d/coord.out" 2> "$d/coord.err" &
  pids+=("$!")
  "$root/tests/mpirun.sh" "$ranks" 7200 "$bin/moe-worker" --model "$model" --coordinator "ipc://$d/w" \
      --threads "$threads" "${wflags[@]}" > "$d/worker.out" 2> "$d/worker.err" &
  pids+=("$!")
  wait_for "$d/coord.out" "moe-coordinator: ready" 600 || { echo "bench/prefix: moe never became ready" >&2; tail "$d"/*.err >&2; exit 1; }
  local url
  url=$(grep -Eo "http://127\.0\.0\.1:[0-9]+" "$d/coord.out" | head -1)
  # no warm-up request: it would put a group's system prompt in the cache
  "$bin/moe-bench" --base-url "$url" --tokenizer "$model" --dataset-name shared-prefix --gsp-num-groups "$groups" \
      --gsp-prompts-per-group "$per" --gsp-system-prompt-len "$sys" --gsp-question-len "$q" --gsp-output-len "$out" \
      --num-prompts $((groups * per)) --max-concurrency 1 --seed "$r" --ignore-eos --num-warmups 0 \
      --metric-percentiles 50 --save-result --result-dir "$d" --result-filename res --disable-tqdm \
      > "$d/bench.out" 2> "$d/bench.err" || { echo "bench/prefix: moe-bench ($mode) failed:" >&2; tail -5 "$d/bench.err" >&2; exit 1; }
  # the ranks' counters come with their heartbeats: wait until every request's prompt is counted
  python3 - "$url" "$d/res.json" "$mode" "$root/tests" <<'PY'
import json, sys
url, res, mode = sys.argv[1:4]
sys.path.insert(0, sys.argv[4])
from metrics_wait import wait
r = json.load(open(res))
want = r["total_input_tokens"]
m = wait(url, "moe:prefix_cache_", lambda m: mode == "cold" or m.get("moe:prefix_cache_queries_total", 0) >= want)
q = m.get("moe:prefix_cache_queries_total", 0)
h = m.get("moe:prefix_cache_hits_total", 0)
assert r["completed"] == r["num_prompts"], f"{r['num_prompts'] - r['completed']} requests failed"
print(f"{mode} {r['median_e2el_ms']:.2f} {r['mean_e2el_ms']:.2f} {h / q if q else 0:.4f} {int(q)} {int(h)}")
PY
  stop_all
}

echo "== model: $model; $groups groups x $per questions, system prompt $sys + question $q tokens -> $out, one in flight"
echo "== moe: $ranks ranks x $threads threads; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$tmp/all"
for r in $(seq 1 "$rounds"); do
  for mode in cold warm; do
    line=$(run "$mode" "$r")
    echo "$line" >> "$tmp/all"
    read -r _ med mean share qn hn <<< "$line"
    printf 'round %d %-4s median time to the token %9.2f ms  mean %9.2f ms  cached share %.3f (%s of %s prompt tokens)\n' \
        "$r" "$mode" "$med" "$mean" "$share" "$hn" "$qn"
  done
done
python3 - "$tmp/all" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
col = lambda mode, i: [float(r[i]) for r in rows if r[0] == mode]
cold_med, warm_med, cold_mean, warm_mean = col("cold", 1), col("warm", 1), col("cold", 2), col("warm", 2)
share = statistics.median(col("warm", 3))
med = statistics.median
print(f"over {len(cold_med)} rounds (medians of the rounds): time to the token, median request: cold {med(cold_med):.2f} ms, "
      f"warm {med(warm_med):.2f} ms; mean request: cold {med(cold_mean):.2f} ms, warm {med(warm_mean):.2f} ms")
print(f"warm / cold of the mean request: {med(w / c for c, w in zip(cold_mean, warm_mean)):.3f}; "
      f"1 - cached share: {1 - share:.3f} (what it would be if the time were proportional to the tokens computed)")
PY
