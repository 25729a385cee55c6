#!/usr/bin/env bash
# bench/quant — moe against llama.cpp on the bench shape in two weight types,
# one run: the Q8_0 bench model (moe-mkmodel --preset bench, models/bench.gguf
# as bench/ep's) and the Q4_K_M one (moe-mkmodel --preset bench --type q4_k_m,
# models/bench_q4_k_m.gguf), both made once under models/ (git-ignored).  For
# each file, 2 threads, median of --runs rounds (a round: one run of each moe
# case and one of each llama.cpp figure, moe first in odd rounds, llama.cpp
# first in even ones):
#
#   decode, 1 sequence        llama-bench -p 0 -n 64    | bench-decode --case 1:1:64
#   prefill, 128 tokens       llama-bench -p 128 -n 0   | bench-decode --case 1:128:0
#   decode, 16 sequences      llama-batched-bench -npl 16 -npp 32 -ntg 32 (S_TG)
#     (aggregate)                                       | bench-decode --case 16:32:32
#
# moe on both activation paths (float, --exact, and int8, the default) and on
# int8 with --repack (opt-in: the dense Q8_0 and Q4_K matrices from a
# repacked copy, docs/engine.md "Repacked layouts"), the file's
# bytes read per decoded token and the bandwidth roofline (the machine's
# 2-thread read bandwidth, the best of all rounds' reads, 14 by bench-decode
# a round, each without a prefetch and with each of the kernels' two) with decode as a fraction of it; single-sequence decode over
# llama.cpp's also as the median of the rounds' own ratios, and against the
# bandwidth of its own moment (the median over the runs of bytes read per second over
# the read bandwidth bench-decode measured around that run: the shared
# test machines' bandwidth moves from minute to minute); the kernel set
# that ran, and llama.cpp's commit and
# system_info line.  llama.cpp is never built or downloaded here: point the
# script at your build (a CMake build dir with bin/llama-bench and
# bin/llama-batched-bench; bin/llama-completion, or bin/llama-cli in older
# builds, too for the system_info line).  Without one, llama.cpp's column
# says "not run".  Before its rounds a file is dropped from the page cache
# (moe_page_cache_drop), so that the first round's bench-decode reads it
# in as the engine maps it, in 2 MiB pages, which llama.cpp's mapping then
# shares: a file just made is cached in 4 KiB pages (docs/engine.md).
#
#   bench/quant/run.sh [--llama-cpp DIR] [--runs N] [--types q8_0,q4_k_m]
#                      [--model TYPE=FILE] [--quick]
#
# --llama-cpp DIR   llama.cpp build (default: $LLAMA_CPP)
# --runs N          rounds, medians printed (default 3)
# --types LIST      which bench files (default q8_0,q4_k_m)
# --model T=FILE    use FILE as the type-T file instead of making it
# --quick           a smoke run (CI) on the fixtures' small Q8_0 model, one
#                   round (unless --runs) of tiny cases; its figures mean nothing
#
# Exit status 1 when a moe run failed (a line under the file's header names
# the rounds and quotes the first failed round's error; the cells are then
# the medians of the runs that gave figures, "failed" where none did), 0
# otherwise; a file moe-mkmodel cannot make yet is skipped with a message.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
MOE_BIN=${MOE_BIN:-$root/build/release/bin}
# shellcheck source=../lib/llamacpp.sh
. "$root/bench/lib/llamacpp.sh"
# shellcheck source=../lib/moe.sh
. "$root/bench/lib/moe.sh"

runs=3 runs_given=0 types=q8_0,q4_k_m quick=0 llama=${LLAMA_CPP:-}
declare -A given=()
while [ $# -gt 0 ]; do
  case $1 in
    --llama-cpp) llama=${2:?}; shift 2 ;;
    --runs) runs=${2:?} runs_given=1; shift 2 ;;
    --types) types=${2:?}; shift 2 ;;
    --model) [[ ${2:-} == *=* ]] || { echo "bench/quant: --model wants TYPE=FILE" >&2; exit 2; }
             given[${2%%=*}]=${2#*=}; shift 2 ;;
    --quick) quick=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench/quant: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]?$ ]] || { echo "bench/quant: --runs wants 1..99, not '$runs'" >&2; exit 2; }
[ -x "$MOE_BIN/bench-decode" ] && [ -x "$MOE_BIN/moe-mkmodel" ] ||
  { echo "bench/quant: no bench-decode or moe-mkmodel in $MOE_BIN (scripts/build.sh release)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-bench-quant.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
LLAMACPP_LOG=$tmp/llamacpp.log
: > "$LLAMACPP_LOG"
llamacpp_init "$llama"

if [ $quick = 1 ]; then
  [ $runs_given = 1 ] || runs=1
  tg=4 pp=16 nb=4 bpp=8 btg=4
  [ -n "${given[q8_0]:-}" ] || given[q8_0]=${MOE_FIXTURES:-$root/../shared/fixtures}/models/v3_mini_q8_0.gguf
  [ "$types" != q8_0,q4_k_m ] || types=q8_0
else
  tg=64 pp=128 nb=16 bpp=32 btg=32
fi

# the file of one type: given, or made once under models/
model_for() { # type -> path on stdout, or a reason on stderr and status 1
  local t=$1 f
  if [ -n "${given[$t]:-}" ]; then
    [ -f "${given[$t]}" ] || { echo "no such file ${given[$t]}" >&2; return 1; }
    echo "${given[$t]}"
    return 0
  fi
  # made once under models/; the Q8_0 file is bench/ep's (the preset's own type)
  f=$(moe_bench_model "$t") || return 1
  echo "$f"
}

echo "# bench/quant: moe $(git -C "$root" describe --always --dirty 2> /dev/null || echo '?') against llama.cpp," \
     "$MOE_THREADS threads, median of $runs round(s)"
echo "load average at start: $(cat /proc/loadavg 2> /dev/null || echo '?') (a shared machine makes every figure indicative)"

failed=0 described=0
IFS=, read -r -a tlist <<< "$types"
for t in "${tlist[@]}"; do
  if ! model=$(model_for "$t" 2> "$tmp/why"); then
    echo
    echo "## $t: skipped: $(cat "$tmp/why")"
    continue
  fi
  if [ $described = 0 ]; then
    llamacpp_describe "$model"
    described=1
  fi
  out=$tmp/moe.$t
  moe_ok=1
  # rounds: one run of every moe case and one of every llama.cpp figure
  # each, moe first in odd rounds and llama.cpp first in even ones, so a
  # drift of the machine's speed over the run weighs on both sides alike
  lt="" lp="" lb="" bad_rounds="" bad_err=""
  moe_round() {
    if ! MOE_BENCH_ACTS=all moe_engine_cases "$model" 1 "$out.$r" "1:1:$tg" "1:$pp:0" "$nb:$bpp:$btg"; then
      moe_ok=0 failed=1 bad_rounds+=" $r"
      [ -n "$bad_err" ] || bad_err=$out.$r.err
    fi
    cat "$out.$r" >> "$out"
    cat "$out.$r.err" >> "$out.err"
  }
  llama_round() {
    lt+=" $(llamacpp_tg "$model" "$tg" 1)"
    lp+=" $(llamacpp_pp "$model" "$pp" 1)"
    lb+=" $(llamacpp_batched "$model" "$nb" "$bpp" "$btg" 1)"
  }
  : > "$out"
  : > "$out.err"
  # the first round's bench-decode reads the file in as the engine maps it
  # (2 MiB pages), for both sides: a file just made is cached in 4 KiB ones
  moe_page_cache_drop "$model" || echo "(could not drop $model from the page cache)"
  rounds=()
  llog_from=$(( $(wc -l < "$LLAMACPP_LOG") + 1 )) # this file's llama.cpp output starts here
  for r in $(seq 1 "$runs"); do
    rounds+=("$out.$r")
    if [ $((r % 2)) = 1 ]; then moe_round; llama_round; else llama_round; moe_round; fi
  done
  l_tg=$(llamacpp_median "$lt") l_pp=$(llamacpp_median "$lp") l_b=$(llamacpp_median "$lb")

  bpt=$(moe_info "$out" bytes_per_token) bw=$(moe_best_bandwidth "$out") fb=$(moe_info "$out" file_bytes)
  roof=-
  [ -n "$bpt" ] && [ -n "$bw" ] && roof=$(awk -v b="$bw" -v n="$bpt" 'BEGIN { printf "%.2f\n", b * 1e9 / n }')
  echo
  if [ -n "$bpt" ]; then
    echo "## $(basename "$model") ($t): file $(awk -v b="$fb" 'BEGIN { if (b >= 1e8) printf "%.2f GB", b / 1e9; else printf "%.2f MB", b / 1e6 }')," \
         "$(awk -v b="$bpt" 'BEGIN { printf "%.1f MB", b / 1e6 }') read per decoded token;" \
         "read bandwidth $bw GB/s (2 threads, the best of $runs rounds' reads, 14 a round, each read 3 ways) -> roofline $roof tok/s; moe kernels: $(moe_info "$out" kernels), prefetch $(moe_info "$out" prefetch)"
  else
    echo "## $(basename "$model") ($t)"
  fi
  if [ $moe_ok = 0 ]; then
    echo "moe failed on this file in round(s)$bad_rounds: $(grep -m1 . "$bad_err" || echo '(no message)')"
  fi
  m() { moe_case_median "$out" "$1" "$2" "$3" "$4" "$5"; }
  f_tg=$(m float 1 1 "$tg" decode) i_tg=$(m int8 1 1 "$tg" decode) r_tg=$(m int8rp 1 1 "$tg" decode)
  f_pp=$(m float 1 "$pp" 0 prefill) i_pp=$(m int8 1 "$pp" 0 prefill) r_pp=$(m int8rp 1 "$pp" 0 prefill)
  f_b=$(m float "$nb" "$bpp" "$btg" decode) i_b=$(m int8 "$nb" "$bpp" "$btg" decode)
  r_b=$(m int8rp "$nb" "$bpp" "$btg" decode)
  best() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 >= b + 0) print a; else print b }'; }
  row() { # label llama float int8 int8rp [roof]
    local bm=- rm=-
    _bench_isnum "$3" && _bench_isnum "$4" && bm=$(bench_ratio "$(best "$3" "$4")" "$2")
    _bench_isnum "$5" && rm=$(bench_ratio "$5" "$2")
    printf '| %-34s | %14s | %16s | %16s | %16s | %11s | %11s |\n' "$1" "$(bench_cell "$2" "${6:-}")" \
           "$(bench_cell "$3" "${6:-}")" "$(bench_cell "$4" "${6:-}")" "$(bench_cell "$5" "${6:-}")" "$bm" "$rm"
  }
  printf '| %-34s | %14s | %16s | %16s | %16s | %11s | %11s |\n' "tokens/s (% of roofline)" "llama.cpp" "moe float" \
         "moe int8" "moe int8 repack" "moe/llama" "rp/llama"
  echo "|------------------------------------|----------------|------------------|------------------|------------------|-------------|-------------|"
  row "decode, 1 sequence (tg$tg)" "$l_tg" "$f_tg" "$i_tg" "$r_tg" "$roof"
  row "prefill, $pp-token prompt (pp$pp)" "$l_pp" "$f_pp" "$i_pp" "$r_pp"
  row "decode, $nb sequences, aggregate" "$l_b" "$f_b" "$i_b" "$r_b"
  if [ -n "$bpt" ]; then
    echo "decode, 1 sequence, against the read bandwidth around each run (median of the runs):" \
         "moe float $(moe_case_bw_pct "$out" float 1 1 "$tg" "$bpt")," \
         "moe int8 $(moe_case_bw_pct "$out" int8 1 1 "$tg" "$bpt")," \
         "moe int8 repack $(moe_case_bw_pct "$out" int8rp 1 1 "$tg" "$bpt")"
  fi
  if [ "$LLAMACPP_OK" = 1 ]; then
    echo "decode, 1 sequence, each round's moe over llama.cpp's of the same round (median of the rounds' ratios):" \
         "moe int8 $(moe_round_ratio int8 1 1 "$tg" decode "$lt" "${rounds[@]}")," \
         "moe int8 repack $(moe_round_ratio int8rp 1 1 "$tg" decode "$lt" "${rounds[@]}")"
  fi
  case " $l_tg $l_pp $l_b " in *" failed "*) llamacpp_why_failed "$llog_from" ;; esac
  for v in "$f_tg" "$i_tg" "$r_tg" "$f_pp" "$i_pp" "$r_pp" "$f_b" "$i_b" "$r_b"; do _bench_isnum "$v" || failed=1; done
  if [ $moe_ok = 1 ]; then
    echo "moe samples:"
    for a in float int8 int8rp; do
      echo "  moe $a tg$tg: samples $(moe_case_samples "$out" $a 1 1 "$tg" decode | paste -sd ' ')"
      echo "  moe $a pp$pp: samples $(moe_case_samples "$out" $a 1 "$pp" 0 prefill | paste -sd ' ')"
      echo "  moe $a $nb sequences: samples $(moe_case_samples "$out" $a "$nb" "$bpp" "$btg" decode | paste -sd ' ')"
    done
  fi
done
[ $described = 1 ] || llamacpp_describe /dev/null
echo
echo "moe float: the float path (moe-run --exact); moe int8: the default path (int8 activations for quantized weights);"
echo "moe int8 repack: the int8 path with --repack (opt-in; its copies' memory: moe-run --stats)."
echo "moe/llama: the faster default moe path over llama.cpp; rp/llama: --repack over llama.cpp." \
     "$nb-sequence rows: each sequence's own $bpp-token prompt," \
     "then $btg tokens each (llama-batched-bench's S_TG)."
if [ "$LLAMACPP_OK" = 1 ] && grep -q '^llama.cpp ' "$LLAMACPP_LOG"; then
  echo "llama.cpp samples (all files):"
  grep '^llama.cpp ' "$LLAMACPP_LOG" | sed 's/^/  /'
fi
exit $failed
