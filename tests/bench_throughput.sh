#!/usr/bin/env bash
# bench/throughput/run.sh --quick on the small fixture against fake
# llama.cpp tools (tests/bench_fake_llamacpp.sh): the table has its seven
# rows of seven cells, llama.cpp's column holds the fake's known medians, every
# moe, worker job and roofline figure is a number (a share of its roofline
# where it has one), the worker job runs on 1 and 2 ranks (mpirun), and the
# header names llama.cpp's system_info, the kernel sets and the peaks.
#   tests/bench_throughput.sh ROOT   (MOE_BIN: the build's bin/)
set -euo pipefail
root=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-bench-throughput-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
check() { # name got want
  if [ "$2" = "$3" ]; then
    passes=$((passes + 1))
  else
    echo "FAIL $1: got '$2', want '$3'"
    fails=$((fails + 1))
  fi
}
. "$root/tests/bench_fake_llamacpp.sh"
bench_fake_llamacpp "$tmp/llama/bin"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

rc=0
MOE_BIN=${MOE_BIN:?} "$root/bench/throughput/run.sh" --quick --llama-cpp "$tmp/llama" > "$tmp/out" 2>&1 || rc=$?
check "exit status" "$rc" 0
[ $rc = 0 ] || cat "$tmp/out"

# the table: a header, a rule, seven rows; seven cells each
check "table lines" "$(grep -c '^|' "$tmp/out" || true)" 9
check "rule" "$(grep -c '^|-*|-*|-*|-*|-*|-*|-*|$' "$tmp/out" || true)" 1
check "cells a line" "$(grep '^|' "$tmp/out" | awk -F'|' '{ print NF - 2 }' | sort -u | paste -sd ' ')" 7
check "header" "$(grep '^| tokens/s' "$tmp/out" | tr -s ' ')" \
      "| tokens/s (% of roofline) | roofline | llama.cpp | moe float | moe int8 | moe int8 rp | moe/llama |"
labels=$(grep '^| ' "$tmp/out" | sed -n '2,$p' | awk -F'|' '{ gsub(/^ +| +$/, "", $2); print $2 }' | paste -sd ';')
check "row labels" "$labels" "decode, 1 sequence (tg4);decode, 4 sequences, aggregate;decode, 16 sequences, aggregate;prefill, 16-token prompt (pp16);prefill, 32-token prompt (pp32);job, 16 sequences, 1 rank x 2 thr;job, 16 sequences, 2 ranks x 1 thr"

# the cells of row $1 (1-based among the seven), trimmed, one a line
cells() { grep '^| ' "$tmp/out" | sed -n "$(($1 + 1))p" | awk -F'|' '{ for (i = 3; i < NF; i++) { gsub(/^ +| +$/, "", $i); print $i } }'; }
num='[0-9]+(\.[0-9]+)?'
pct="$num \([0-9]+%\)"
# llama.cpp's figures are the fake's: llama-bench's median sample 20.25,
# llama-batched-bench's S_TG 5.5 then 9 (its first and second calls)
want_llama=("20.25" "5.50" "9.00" "20.25" "20.25" "-" "-")
for i in 1 2 3 4 5 6 7; do
  mapfile -t c < <(cells $i)
  [[ ${c[0]} =~ ^$num$ ]] || [[ ${c[0]} =~ ^i8\ $num\ /\ f\ $num$ ]] || { echo "FAIL row $i: roofline '${c[0]}'"; fails=$((fails + 1)); }
  check "row $i llama.cpp" "$(sed 's/ (.*//' <<< "${c[1]}")" "${want_llama[$((i - 1))]}"
  [[ ${c[2]} =~ ^$pct$ ]] || { echo "FAIL row $i: moe float '${c[2]}' is no figure with its share"; fails=$((fails + 1)); }
  if [ $i -le 5 ]; then
    [[ ${c[3]} =~ ^$pct$ ]] || { echo "FAIL row $i: moe int8 '${c[3]}'"; fails=$((fails + 1)); }
    [[ ${c[4]} =~ ^$pct$ ]] || { echo "FAIL row $i: moe int8 rp '${c[4]}'"; fails=$((fails + 1)); }
    [[ ${c[1]} =~ ^$pct$ ]] || { echo "FAIL row $i: llama.cpp '${c[1]}' has no share"; fails=$((fails + 1)); }
    [[ ${c[5]} =~ ^$num"x"$ ]] || { echo "FAIL row $i: moe/llama '${c[5]}'"; fails=$((fails + 1)); }
  else
    [[ ${c[4]} =~ ^$pct$ ]] || { echo "FAIL row $i: job int8 rp '${c[4]}'"; fails=$((fails + 1)); }
    # the worker's int8 path: a figure when moe-worker has one (--exact or --int8)
    # the help captured first: grep -q leaves the pipe at its first match, and a
    # help longer than one pipe write then dies of SIGPIPE (pipefail: no match)
    worker_help=$("$MOE_BIN/moe-worker" --help 2>&1 || true)
    if grep -Eq '^ *--(exact|int8)([ ,]|$)' <<< "$worker_help"; then
      [[ ${c[3]} =~ ^$pct$ ]] || { echo "FAIL row $i: job int8 '${c[3]}'"; fails=$((fails + 1)); }
    else
      check "row $i job int8" "${c[3]}" "no path"
    fi
  fi
done
# the prefill rows: each figure's share is of its own peak (int8 for
# llama.cpp and moe int8, float for moe float); recompute one
mapfile -t c < <(cells 4)
ri=$(sed 's/^i8 \([0-9.]*\) .*/\1/' <<< "${c[0]}") rf=$(sed 's/.* f \([0-9.]*\)$/\1/' <<< "${c[0]}")
f=$(sed 's/ (.*//' <<< "${c[2]}")
check "prefill float share" "$(sed 's/.*(\(.*\))/\1/' <<< "${c[2]}")" "$(awk -v a="$f" -v b="$rf" 'BEGIN { printf "%.0f%%", 100 * a / b }')"
check "prefill llama.cpp share" "$(sed 's/.*(\(.*\))/\1/' <<< "${c[1]}")" "$(awk -v b="$ri" 'BEGIN { printf "%.0f%%", 100 * 20.25 / b }')"

# the job against the engine run beside it: a ratio for each path and layout
# (the int8 path's are "-" on a worker without it)
beside=$(grep '^worker job over the engine runs beside it' "$tmp/out" || true)
check "job beside the engine: figures" "$(grep -oE "(float|int8|int8 rp) ($num"x"|-) \(1x2\), ($num"x"|-) \(2x1\)" <<< "$beside" | wc -l)" 3
check "job beside the engine: float a ratio" "$(grep -cE "float $num"x" \(1x2\), $num"x" \(2x1\)" <<< "$beside")" 1
check "rounds' own ratios" "$(grep -Ec "^moe int8(rp)? over llama.cpp, median of the rounds' own ratios: tg4 $num"x", 4 sequences $num"x", 16 sequences $num"x", pp16 $num"x", pp32 $num"x"$" "$tmp/out")" 2
check "system_info" "$(grep -c '^llama.cpp system_info: .*FAKE = 1' "$tmp/out")" 1
check "kernels" "$(grep -Ec 'moe kernels: [a-z0-9]+ \(engine\), [a-z0-9]+ \(worker job\)' "$tmp/out")" 1
check "peaks" "$(grep -Ec "^prefill roofline: compute peak \(bench-peak, [a-z0-9]+\): int8 $num GOPS .* float32 $num GOPS" "$tmp/out")" 1
check "bandwidth" "$(grep -Ec "^decode roofline: read bandwidth $num GB/s" "$tmp/out")" 1
check "distinct experts measured" \
      "$(grep -Ec "distinct experts a layer measured in a traced job's decode steps: $num at 4, $num at 16" "$tmp/out")" 1
# one exchange line a path the job ran; the int8 path dispatches quantized
# rows, so it exchanges fewer bytes than the float path on the same batch
check "exchange line (float)" "$(grep -Ec "^2 ranks, float: [0-9]+ exchange bytes a token" "$tmp/out")" 1
if grep -qE "int8 $num"x" \(1x2\)" <<< "$beside"; then
  xf=$(sed -n 's/^2 ranks, float: \([0-9]*\) exchange bytes a token.*/\1/p' "$tmp/out")
  xi=$(sed -n 's/^2 ranks, int8: \([0-9]*\) exchange bytes a token.*/\1/p' "$tmp/out")
  check "int8 exchanges fewer bytes than float" "$([ -n "$xi" ] && [ -n "$xf" ] && [ "$xi" -lt "$xf" ] && echo yes || echo "no ($xi, $xf)")" yes
fi
echo "$passes passed, $fails failed"
[ $fails = 0 ]
