# bench/lib/moe.sh — the moe engine side of the benchmarks, sourced by
# bench/*/run.sh (bash) after bench/lib/llamacpp.sh (for bench_median).
#
#   moe_engine_cases MODEL REPS OUT 'S:P:G' ...
#        runs bench-decode --case for both activation paths (float, the
#        --exact one, and int8, the default), --reps REPS, 2 threads ($MOE_THREADS), with the
#        read bandwidth measured first; its output goes to OUT, its errors
#        to OUT.err.  Returns bench-decode's status.
#   moe_case_median OUT ACT S P G prefill|decode
#        median tokens/s of that case's runs in OUT ("%.2f"), or "failed"
#   moe_case_samples OUT ACT S P G prefill|decode
#        the tokens/s of each of those runs, one a line
#   moe_info OUT kernels|bytes_per_token|bandwidth_gbs|file_bytes
#        one value bench-decode printed, or nothing
#   bench_ratio A B      A / B as "1.23x", or "-" when either is not a number
#   bench_pct A B        100 A / B as "45%", or "-"
#   bench_cell A ROOF    "A (45%)" when ROOF is a number, else "A"
#
# $MOE_BIN is the moe build's bin/ (default build/release/bin).

MOE_THREADS=${MOE_THREADS:-2}

moe_engine_cases() {
  local model=$1 reps=$2 out=$3 c args=()
  shift 3
  for c in "$@"; do args+=(--case "$c"); done
  "$MOE_BIN/bench-decode" --model "$model" --reps "$reps" --threads "$MOE_THREADS" --act both --bandwidth \
      "${args[@]}" > "$out" 2> "$out.err"
}

# the runs' figures of one case, one per line
moe_case_samples() { # out act s p g prefill|decode
  awk -v act="$2" -v s="$3" -v p="$4" -v g="$5" -v what="$6_tps" '
        $1 == "case" {
          delete f
          for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
          if (f["act"] == act && f["seqs"] == s && f["prompt"] == p && f["gen"] == g) print f[what]
        }' "$1" 2> /dev/null
}

moe_case_median() { # out act s p g prefill|decode
  local v
  v=$(moe_case_samples "$@" | bench_median)
  echo "${v:-failed}"
}

moe_info() {
  awk -v k="$2" '$1 == k { print $2; exit }' "$1" 2> /dev/null
}

_bench_isnum() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }

bench_ratio() {
  if _bench_isnum "$1" && _bench_isnum "$2" && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx\n", a / b }'
  else
    echo "-"
  fi
}

bench_pct() {
  if _bench_isnum "$1" && _bench_isnum "$2" && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%\n", 100 * a / b }'
  else
    echo "-"
  fi
}

bench_cell() {
  if _bench_isnum "$1" && _bench_isnum "${2:-}"; then
    echo "$1 ($(bench_pct "$1" "$2"))"
  else
    echo "$1"
  fi
}
