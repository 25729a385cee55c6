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
bin=${MOE_BIN:-$root/build/release/bin}
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
[ -x "$bin/moe-worker" ] || { echo "bench/ep: build first (scripts/build.sh release)" >&2; exit 1; }
if [ -z "$model" ]; then
  if [ $quick = 1 ]; then
    model=${MOE_FIXTURES:-$root/../shared/fixtures}/models/v3_mini_q8_0.gguf
  else
    model=$root/models/bench.gguf
    [ -f "$model" ] || { mkdir -p "$root/models"; "$bin/moe-mkmodel" --preset bench -o "$model"; }
  fi
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-bench-ep.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# token ids below the vocabulary size: the deepseek2.vocab_size key, or the
# length of the token list when a file has no such key (any weight type)
if ! "$bin/moe-gguf" "$model" > "$tmp/meta" 2> "$tmp/meta.err"; then
  echo "bench/ep: cannot read $model: $(cat "$tmp/meta.err")" >&2
  exit 1
fi
vocab=$(awk '$1 == "deepseek2.vocab_size" { v = $3 } $1 == "tokenizer.ggml.tokens" { t = $3 }
             END { print v != "" ? v : t }' "$tmp/meta")
[[ $vocab =~ ^[1-9][0-9]*$ ]] || { echo "bench/ep: $model: no vocabulary size" >&2; exit 1; }
awk -v v="$vocab" 'BEGIN { srand(11); for (i = 0; i < 16; i++) { s = ""
  for (j = 0; j < 32; j++) s = s (j ? "," : "") int(rand() * v); print s, 32 } }' > "$tmp/batch"

run() { # np threads tag
  "$root/tests/mpirun.sh" "$1" 600 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --threads "$2" \
      --ignore-eos --stats "${act[@]}" > "$tmp/out.$3" 2> "$tmp/err.$3"
}
for i in $(seq 1 "$runs"); do
  run 1 2 "a$i"
  run 2 1 "b$i"
done
# the same tokens either way (the job is deterministic)
cmp -s "$tmp/out.a1" "$tmp/out.b1" || { echo "bench/ep: 1-rank and 2-rank outputs differ!" >&2; exit 1; }

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
tps() { for f in "$tmp"/err."$1"*; do sed -n 's/^job: .* = \([0-9.]*\) tokens\/s$/\1/p' "$f"; done | median; }
a=$(tps a) b=$(tps b)
# exchange figures from the last 2-rank run (portable awk: fields by sed)
f=$tmp/err.b$runs
tok=$(sed -n 's/^rank [0-9]*: sequences [0-9]*, steps [0-9]*, prefill tokens \([0-9]*\), decode tokens \([0-9]*\),.*/\1 \2/p' "$f" |
      awk '{ t += $1 + $2 } END { print t }')
sed -n 's/^rank \([0-9]*\): sequences .*, \([0-9.]*\) s, cache.*/\1 \2/p' "$f" > "$tmp/total"
sed -n 's/^rank \([0-9]*\) layer [0-9]*: sent \([0-9]*\) bytes.*exchange \([0-9.]*\) s, overlap \([0-9.]*\) s.*/\1 \2 \3 \4/p' "$f" > "$tmp/layers"
awk -v tok="$tok" 'NR == FNR { total[$1] = $2; next }
  { bytes += $2; ex[$1] += $3; ov[$1] += $4 }
  END { for (r in total) { se += ex[r] / total[r]; so += ov[r] / total[r]; n++ }
        printf "%.0f %.1f %.1f\n", bytes / tok, 100 * se / n, 100 * so / n }' "$tmp/total" "$tmp/layers" > "$tmp/ex"
read -r bpt exshare ovshare < "$tmp/ex"
echo "bench/ep: $(basename "$model"), 16 sequences x (32 prompt + 32 generated), median of $runs runs," \
     "activations: ${act[*]:-int8 (default)}"
echo "kernels: $(sed -n 's/^rank 0: kernels \([a-z0-9]*\).*/\1/p' "$f" | sed -n 1p)"
printf '%-22s %14s\n' "configuration" "decode tok/s"
printf '%-22s %14.2f\n' "1 rank x 2 threads" "$a"
printf '%-22s %14.2f\n' "2 ranks x 1 thread" "$b"
printf 'exchange bytes per token (2 ranks, dispatch + combine, sent): %s\n' "$bpt"
printf 'share of step time exchanging: %s%%, overlapped with shared experts: %s%%\n' "$exshare" "$ovshare"
