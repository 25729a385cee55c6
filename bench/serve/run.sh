#!/usr/bin/env bash
# bench/serve — serving benchmark: the same moe-bench run (same prompts,
# same rates) against moe over HTTP, moe over ZMQ on the same server, and,
# when given a llama.cpp build, llama-server on the same model file and
# machine.  Prints every "Serving Benchmark Result" block, then a side-by-
# side table with the ratios: HTTP against ZMQ (the HTTP front end's cost:
# TTFT and ITL should be within 10%) and moe against llama-server.
#
#   bench/serve/run.sh [--model FILE] [--llama-cpp DIR] [--request-rate LIST]
#                      [--num-prompts N] [--input-len N] [--output-len N]
#                      [--max-concurrency N] [--ranks N] [--threads N]
#                      [--result-dir DIR] [--quick]
#
# Defaults: the decode benchmark's model (models/bench.gguf, moe-mkmodel
# --preset bench, ~2.3 GB q8_0, made once), rates 1,2,4,inf, 64 prompts of
# 128 random tokens generating 32 (--ignore-eos), at most 16 in flight,
# 2 ranks x 1 thread.  llama-server gets -np = the concurrency (so it is
# never short of slots), -t = ranks x threads, and a context of np x
# (input + output + 16).  --quick: the tiny fixture model, 8 prompts,
# rates 4,inf (a smoke test).  Results (JSON, CSV, plots) go to
# --result-dir (default: a temporary folder, removed at the end).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${MOE_BIN:-$root/build/release/bin}
model="" llama=${LLAMA_CPP:-} rates=1,2,4,inf n=64 in=128 out=32 conc=16 ranks=2 threads=1 resdir="" quick=0
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --llama-cpp) llama=$2; shift 2 ;;
    --request-rate) rates=$2; shift 2 ;;
    --num-prompts) n=$2; shift 2 ;;
    --input-len) in=$2; shift 2 ;;
    --output-len) out=$2; shift 2 ;;
    --max-concurrency) conc=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --result-dir) resdir=$2; shift 2 ;;
    --quick) quick=1; n=8; rates=4,inf; in=16; out=8; conc=4; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench/serve: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$bin/moe-bench" ] || { echo "bench/serve: build first (scripts/build.sh release)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-bench-serve.XXXXXX")
keep=1
[ -n "$resdir" ] || { resdir=$tmp/results; keep=0; }
mkdir -p "$resdir"
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

# The same moe-bench command line for every target: same prompts (seed),
# same rates, same concurrency.
bench() { # NAME TARGET-FLAGS...
  local name=$1
  shift
  local rc=0
  "$bin/moe-bench" "$@" --tokenizer "$model" --dataset-name random --random-input-len "$in" \
      --random-output-len "$out" --num-prompts "$n" --request-rate "$rates" --max-concurrency "$conc" --seed 1 \
      --ignore-eos --num-warmups 2 --metric-percentiles 50,99 --save-result --result-dir "$resdir/$name" \
      --result-filename "$name" --label "$name" --plot --disable-tqdm > "$tmp/$name.out" 2> "$tmp/$name.err" || rc=$?
  cat "$tmp/$name.out"
  if [ $rc != 0 ]; then
    echo "bench/serve: moe-bench against $name: status $rc (1: some requests failed):" >&2
    grep -v '^moe-bench: wrote' "$tmp/$name.err" | tail -5 >&2
  fi
  return $rc
}

echo "== model: $model; $n prompts of $in tokens -> $out (ignore EOS), rates $rates, at most $conc in flight"
echo "== moe: $ranks ranks x $threads threads; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
# the benchmark is one host standing for many clients: no per-client limits
# (docs/limits.md), or a --max-concurrency above 64 would meet them
setsid "$bin/moe-coordinator" --model "$model" --listen tcp://127.0.0.1:0 --http 127.0.0.1:0 --workers "ipc://$tmp/w" \
    --ranks "$ranks" --client-in-flight 0 --client-queue 0 > "$tmp/coord.out" 2> "$tmp/coord.err" &
pids+=("$!")
"$root/tests/mpirun.sh" "$ranks" 7200 "$bin/moe-worker" --model "$model" --coordinator "ipc://$tmp/w" \
    --threads "$threads" > "$tmp/worker.out" 2> "$tmp/worker.err" &
pids+=("$!")
wait_for "$tmp/coord.out" "moe-coordinator: ready" 600 || { echo "bench/serve: moe never became ready" >&2; tail "$tmp"/*.err >&2; exit 1; }
url=$(grep -Eo "http://127\.0\.0\.1:[0-9]+" "$tmp/coord.out" | head -1)
zmq=$(grep -Eo "tcp://127\.0\.0\.1:[0-9]+" "$tmp/coord.out" | head -1)
echo "== moe over HTTP ($url)"
bench moe-http --base-url "$url" || true
echo "== moe over ZMQ ($zmq), the same server"
bench moe-zmq --connect "$zmq" --metrics-url "$url/metrics" || true
stop_all

# llama-server, through the shared llama.cpp harness when it is there
targets="moe-http moe-zmq"
llama_why="not given (--llama-cpp DIR or LLAMA_CPP)"
server=""
if [ -n "$llama" ]; then
  if [ -f "$root/bench/lib/llamacpp.sh" ]; then
    # shellcheck source=/dev/null
    . "$root/bench/lib/llamacpp.sh"
    llamacpp_init "$llama"
    llama_why=$LLAMACPP_WHY
    [ "$LLAMACPP_OK" = 1 ] && server=$LLAMACPP_BIN/llama-server
    [ "$LLAMACPP_OK" = 1 ] && llamacpp_describe "$model"
  else
    for d in "$llama/bin" "$llama"; do [ -x "$d/llama-server" ] && { server=$d/llama-server; break; }; done
  fi
  if [ -n "$server" ] && [ ! -x "$server" ]; then server=""; fi
  [ -n "$server" ] || llama_why="${llama_why:-no llama-server in $llama}"
fi
if [ -n "$server" ]; then
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  np=$conc
  echo "== llama-server ($server, -np $np, -t $((ranks * threads)))"
  setsid "$server" -m "$model" --host 127.0.0.1 --port "$port" -np "$np" -c $((np * (in + out + 16))) \
      -t $((ranks * threads)) --no-webui > "$tmp/llama.out" 2> "$tmp/llama.err" &
  pids+=("$!")
  # ready when /health answers 200 (its own message, polled)
  ok=0
  for _ in $(seq 1 3000); do
    curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1 && { ok=1; break; }
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  if [ $ok = 1 ]; then
    # exit 1 (some requests failed) still has its result: the table shows the failures
    bench llama-server --base-url "http://127.0.0.1:$port" --metrics-url none || true
    ls "$resdir"/llama-server/llama-server*.json > /dev/null 2>&1 && targets="$targets llama-server"
  else
    echo "bench/serve: llama-server did not start:" >&2
    tail -5 "$tmp/llama.err" >&2
  fi
  stop_all
else
  echo "== llama-server: not run: $llama_why"
fi

# side by side, from the JSON results
python3 - "$resdir" "$rates" $targets <<'PY'
import json, sys, glob
resdir, rates, targets = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
def load(t, r):
    f = glob.glob(f"{resdir}/{t}/{t}-r{r}-c*.json") or glob.glob(f"{resdir}/{t}/{t}.json")
    return json.load(open(f[0])) if f else None
cols = [("out tok/s", "output_throughput"), ("req/s", "request_throughput"), ("TTFT med", "median_ttft_ms"),
        ("TTFT p99", "p99_ttft_ms"), ("TPOT med", "median_tpot_ms"), ("ITL med", "median_itl_ms"),
        ("ITL p99", "p99_itl_ms"), ("E2EL med", "median_e2el_ms")]
print()
print("Side by side (latencies in ms)")
print(f"{'rate':>6} {'target':<13}" + "".join(f"{c[0]:>11}" for c in cols) + f"{'failed':>8}")
ratios = []
for r in rates:
    res = {t: load(t, r) for t in targets}
    for t in targets:
        d = res[t]
        if d is None:
            print(f"{r:>6} {t:<13} (no result)")
            continue
        print(f"{r:>6} {t:<13}" + "".join(f"{d.get(k, 0):>11.2f}" for _, k in cols) + f"{d['failed']:>8}")
    h, z, l = res.get("moe-http"), res.get("moe-zmq"), res.get("llama-server")
    line = f"{r:>6} ratios:"
    def rat(a, b, k):
        return a[k] / b[k] if a and b and b.get(k) else float("nan")
    if h and z:
        tt, it = rat(h, z, "median_ttft_ms"), rat(h, z, "median_itl_ms")
        ok = "within 10%" if abs(tt - 1) <= 0.1 and abs(it - 1) <= 0.1 else "NOT within 10%"
        line += f"  HTTP/ZMQ TTFT {tt:.3f} ITL {it:.3f} ({ok})"
    if h and l:
        line += f"  moe-http/llama-server out tok/s {rat(h, l, 'output_throughput'):.3f}" \
                f" TTFT {rat(h, l, 'median_ttft_ms'):.3f} ITL {rat(h, l, 'median_itl_ms'):.3f}"
    print(line)
PY
[ $keep = 1 ] && echo "== results, CSVs and plots in $resdir"
exit 0
