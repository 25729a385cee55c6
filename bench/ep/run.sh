#!/usr/bin/env bash
# bench/ep — expert parallelism on one machine: decode throughput of
# 1 rank x 2 threads against 2 ranks x 1 thread (moe-worker), 16 sequences
# of 32-token prompts generating 32 tokens each, on the decode benchmark's
# model (moe-mkmodel --preset bench, ~2.4 GB q8_0, made once under models/)
# or --model FILE in any weight type the engine loads.
# Prints the median of several alternating runs, the exchange bytes per
# token and the shares of step time spent exchanging and overlapped.
#
#   bench/ep/run.sh [--runs N] [--model FILE] [--quick] [--exact]
#
# --exact: the ranks on the float path (moe-worker --exact); the default is
# the job's default, int8 activations for quantized weights.
# --quick: one run on a tiny fixture model (a smoke test for CI).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
MOE_BIN=${MOE_BIN:-$root/build/release/bin}
# shellcheck source=../lib/llamacpp.sh
. "$root/bench/lib/llamacpp.sh"
# shellcheck source=../lib/moe.sh
. "$root/bench/lib/moe.sh"
# shellcheck source=../lib/job.sh
. "$root/bench/lib/job.sh"
runs=3 model="" quick=0 act=()
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --quick) quick=1; runs=1; shift ;;
    --exact) act=(--exact); shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench/ep: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]?$ ]] || { echo "bench/ep: --runs wants 1..99, not '$runs'" >&2; exit 2; }
[ -x "$MOE_BIN/moe-worker" ] || { echo "bench/ep: build first (scripts/build.sh release)" >&2; exit 1; }
if [ -z "$model" ]; then
  if [ $quick = 1 ]; then
    model=${MOE_FIXTURES:-$root/../shared/fixtures}/models/v3_mini_q8_0.gguf
  else
    model=$(moe_bench_model q8_0)
  fi
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-bench-ep.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
job_batch "$model" "$tmp/batch" 16 32 32 || { echo "bench/ep: cannot make the batch" >&2; exit 1; }

for i in $(seq 1 "$runs"); do
  job_run 1 2 "$model" "$tmp/batch" "$tmp/out.a$i" "${act[@]}" || { echo "bench/ep: the 1-rank job failed:" >&2; tail -5 "$tmp/out.a$i.err" >&2; exit 1; }
  job_run 2 1 "$model" "$tmp/batch" "$tmp/out.b$i" "${act[@]}" || { echo "bench/ep: the 2-rank job failed:" >&2; tail -5 "$tmp/out.b$i.err" >&2; exit 1; }
done
# the same tokens either way (the job is deterministic)
cmp -s "$tmp/out.a1" "$tmp/out.b1" || { echo "bench/ep: 1-rank and 2-rank outputs differ!" >&2; exit 1; }

a=$(job_tps "$tmp"/out.a*.err) b=$(job_tps "$tmp"/out.b*.err)
# exchange figures from the last 2-rank run
f=$tmp/out.b$runs.err
read -r bpt exshare ovshare < <(job_exchange "$f" || echo "- - -")
echo "bench/ep: $(basename "$model"), 16 sequences x (32 prompt + 32 generated), median of $runs runs," \
     "activations: ${act[*]:-int8 (default)}"
echo "kernels: $(job_kernels "$f")"
printf '%-22s %14s\n' "configuration" "decode tok/s"
printf '%-22s %14s\n' "1 rank x 2 threads" "$a"
printf '%-22s %14s\n' "2 ranks x 1 thread" "$b"
printf 'exchange bytes per token (2 ranks, dispatch + combine, sent): %s\n' "$bpt"
printf 'share of step time exchanging: %s%%, overlapped with shared experts: %s%%\n' "$exshare" "$ovshare"
