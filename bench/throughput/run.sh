#!/usr/bin/env bash
# bench/throughput — serving throughput against llama.cpp and against the
# machine's limits, one run, 2 threads, on the Q8_0 bench model
# (models/bench.gguf, moe-mkmodel --preset bench, made once) or --model:
#
#   decode, 1 sequence        llama-bench -p 0 -n 64        | bench-decode --case 1:1:64
#   decode, 4 sequences       llama-batched-bench -npl 4 -npp 32 -ntg 32 (S_TG)
#     (aggregate)                                           | bench-decode --case 4:32:32
#   decode, 16 sequences      llama-batched-bench -npl 16 ... | bench-decode --case 16:32:32
#   prefill, 128 tokens       llama-bench -p 128 -n 0       | bench-decode --case 1:128:0
#   prefill, 512 tokens       llama-bench -p 512 -n 0       | bench-decode --case 1:512:0
#   worker job, 16 sequences  moe-worker --batch (16 x 32-token prompts, 32 generated),
#                             1 rank x 2 threads and 2 ranks x 1 thread; the job over
#                             the engine both as a ratio of the medians and as the
#                             median of each round's job over the engine's 16-sequence
#                             case run just before and just after the jobs (the
#                             machine's speed drifts within a round)
#
# moe on both activation paths (float and int8; the worker's flags are read
# from moe-worker --help: --exact or --int8), and int8 with the dense Q8_0
# and Q4_K matrices repacked (moe int8 rp: --repack, opt-in), each figure as a share of its
# roofline: for decode the read bandwidth (bench-decode, 2 threads) over the
# bytes a step reads (dense part once a rank + the distinct routed experts
# of B tokens, measured by a traced job; with --no-job those of uniform
# routing), for prefill the compute peak (bench-peak, 2 threads:
# int8 for moe int8 and llama.cpp, whose Q8_0 products are int8, float32
# for moe float) over the operations a token needs (2 x the weights it
# multiplies).  Median of --runs rounds; a round runs moe, then llama.cpp,
# then the worker job.  llama.cpp is never built or downloaded here: point
# the script at your build (bench/lib/llamacpp.sh); without one its column
# says "not run".
#
#   bench/throughput/run.sh [--llama-cpp DIR] [--model FILE] [--runs N] [--no-job] [--quick]
#
# --llama-cpp DIR   llama.cpp build (default: $LLAMA_CPP)
# --model FILE      the model (default models/bench.gguf, made once if absent)
# --runs N          rounds, medians printed (1..99, default 3)
# --no-job          leave the worker job (mpirun) out
# --quick           a smoke run (CI) on the fixtures' small Q8_0 model, one
#                   round of tiny cases; its figures mean nothing
#
# Exit status 1 when a moe figure failed (the table says which, the reason
# is printed), 0 otherwise.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
MOE_BIN=${MOE_BIN:-$root/build/release/bin}
# shellcheck source=../lib/llamacpp.sh
. "$root/bench/lib/llamacpp.sh"
# shellcheck source=../lib/moe.sh
. "$root/bench/lib/moe.sh"
# shellcheck source=../lib/job.sh
. "$root/bench/lib/job.sh"

runs=3 quick=0 model="" with_job=1 llama=${LLAMA_CPP:-}
while [ $# -gt 0 ]; do
  case $1 in
    --llama-cpp) llama=${2:?}; shift 2 ;;
    --model) model=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --no-job) with_job=0; shift ;;
    --quick) quick=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench/throughput: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]?$ ]] || { echo "bench/throughput: --runs wants 1..99, not '$runs'" >&2; exit 2; }
for b in bench-decode bench-peak moe-gguf moe-mkmodel moe-worker; do
  [ -x "$MOE_BIN/$b" ] || { echo "bench/throughput: no $b in $MOE_BIN (scripts/build.sh release)" >&2; exit 1; }
done

# the cases: full, or tiny ones for --quick
if [ $quick = 1 ]; then
  runs=1 tg=4 bpp=8 btg=4 pp1=16 pp2=32 peak_args=(--quick)
  model=${model:-${MOE_FIXTURES:-$root/../shared/fixtures}/models/v3_mini_q8_0.gguf}
else
  tg=64 bpp=32 btg=32 pp1=128 pp2=512 peak_args=()
fi
if [ -z "$model" ]; then
  model=$(moe_bench_model q8_0) || { echo "bench/throughput: no bench model" >&2; exit 1; }
fi
[ -f "$model" ] || { echo "bench/throughput: no such file $model" >&2; exit 1; }

# the engine's paths: float, int8, and int8 --repack where bench-decode has it
eng_acts=(float int8)
if "$MOE_BIN/bench-decode" --help 2>&1 | grep -q int8rp; then export MOE_BENCH_ACTS=all; eng_acts+=(int8rp); fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-bench-throughput.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
LLAMACPP_LOG=$tmp/llamacpp.log
llamacpp_init "$llama"
shape=$(moe_model_shape "$model") || { echo "bench/throughput: cannot read the model's shape" >&2; exit 1; }

echo "# bench/throughput: moe $(git -C "$root" describe --always --dirty 2> /dev/null || echo '?') against llama.cpp," \
     "$MOE_THREADS threads, median of $runs round(s): moe, llama.cpp, worker job"
echo "load average at start: $(cat /proc/loadavg 2> /dev/null || echo '?') (a shared machine makes every figure indicative)"
llamacpp_describe "$model"

# the compute peak first, while nothing else of ours runs
failed=0
if ! "$MOE_BIN/bench-peak" --threads 1,2 "${peak_args[@]}" > "$tmp/peak" 2> "$tmp/peak.err"; then
  echo "bench-peak failed: $(grep -m1 . "$tmp/peak.err" || echo '(no message)')"
  failed=1
fi
peak() { # act threads -> gops
  awk -v a="$1" -v t="$2" '$1 == "best" { delete f; for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
       if (f["act"] == a && f["threads"] == t) { print f["gops"]; exit } }' "$tmp/peak"
}
peak_insn() {
  awk -v a="$1" -v t="$2" '$1 == "best" && $2 == "act=" a && $3 == "threads=" t { sub(/^insn=/, "", $5); print $5; exit }' "$tmp/peak"
}

# the worker job's activation paths
acts=()
for a in float int8 int8rp; do
  if job_act_args "$a" > /dev/null; then acts+=("$a"); fi
done
if [ $with_job = 1 ]; then
  job_batch "$model" "$tmp/batch" 16 "$bpp" "$btg" || { echo "bench/throughput: cannot make the job's batch" >&2; exit 1; }
fi

# one engine run of the jobs' case (16 sequences) for path $1 in round $2
beside() {
  "$MOE_BIN/bench-decode" --model "$model" --reps 1 --threads "$MOE_THREADS" --act "$1" --case "16:$bpp:$btg" \
      > "$tmp/beside.$1.$2.$3" 2> /dev/null || true
}

# the median over the rounds of job / (the mean of the engine runs beside it)
beside_ratio() { # act config
  local r e j
  for r in $(seq 1 "$runs"); do
    e=$(cat "$tmp/beside.$1.$r.before" "$tmp/beside.$1.$r.after" 2> /dev/null |
        awk '$1 == "case" { for (i = 2; i <= NF; i++) if ($i ~ /^decode_tps=/) { sub(/^decode_tps=/, "", $i); s += $i; n++ } }
             END { if (n == 2) print s / 2 }')
    j=$(job_samples "$tmp/job.$1.$2.$r.err")
    [ -n "$e" ] && [ -n "$j" ] && awk -v j="$j" -v e="$e" 'BEGIN { if (e > 0) print j / e }'
  done | bench_median
}

declare -A l=() # llama.cpp samples per figure
for r in $(seq 1 "$runs"); do
  if ! moe_engine_cases "$model" 1 "$tmp/moe.$r" "1:1:$tg" "4:$bpp:$btg" "16:$bpp:$btg" "1:$pp1:0" "1:$pp2:0"; then
    echo "moe (bench-decode) failed in round $r: $(grep -m1 . "$tmp/moe.$r.err" || echo '(no message)')"
    failed=1
  fi
  l[tg]+=" $(llamacpp_tg "$model" "$tg" 1)"
  l[b4]+=" $(llamacpp_batched "$model" 4 "$bpp" "$btg" 1)"
  l[b16]+=" $(llamacpp_batched "$model" 16 "$bpp" "$btg" 1)"
  l[pp1]+=" $(llamacpp_pp "$model" "$pp1" 1)"
  l[pp2]+=" $(llamacpp_pp "$model" "$pp2" 1)"
  if [ $with_job = 1 ]; then
    for a in "${acts[@]}"; do
      read -r -a fl <<< "$(job_act_args "$a")"
      # the engine on the same batch just before and just after the jobs:
      # the machine's speed drifts within a round, so each job is also
      # compared with the engine run beside it
      beside "$a" "$r" before
      for c in 1x2 2x1; do
        f=$tmp/job.$a.$c.$r
        if ! job_run "${c%x*}" "${c#*x}" "$model" "$tmp/batch" "$f" "${fl[@]}"; then
          echo "worker job $c ($a) failed in round $r: $(grep -v '^rank' "$f.err" | grep -m1 . || echo '(no message)')"
          failed=1
        fi
      done
      beside "$a" "$r" after
      # the job is deterministic: 1 and 2 ranks give the same tokens
      if [ -s "$tmp/job.$a.1x2.$r" ] && ! cmp -s "$tmp/job.$a.1x2.$r" "$tmp/job.$a.2x1.$r"; then
        echo "worker job ($a): 1-rank and 2-rank answers differ in round $r"
        failed=1
      fi
    done
  fi
done
for r in $(seq 1 "$runs"); do cat "$tmp/moe.$r"; done > "$tmp/moe"

# the distinct experts a decode step visits, measured: one more short job
# (1 rank x 2 threads, the worker's default path, the same prompts, a few
# tokens) with --trace, outside the timed ones
d4="" d16=""
if [ $with_job = 1 ]; then
  awk -v g=$((quick ? 2 : 8)) '{ print $1, g }' "$tmp/batch" > "$tmp/batch.trace"
  if job_run 1 2 "$model" "$tmp/batch.trace" "$tmp/trace.job" --trace "$tmp/trace"; then
    d4=$(job_distinct "$tmp/trace" "$bpp" 4 || true) d16=$(job_distinct "$tmp/trace" "$bpp" 16 || true)
  fi
  [ -n "$d16" ] || echo "the traced job gave no decode rows: the decode roofline uses the expected distinct experts"
fi

m() { moe_case_median "$tmp/moe" "$1" "$2" "$3" "$4" "$5"; }
f_tg=$(m float 1 1 "$tg" decode) i_tg=$(m int8 1 1 "$tg" decode)
f_b4=$(m float 4 "$bpp" "$btg" decode) i_b4=$(m int8 4 "$bpp" "$btg" decode)
f_b16=$(m float 16 "$bpp" "$btg" decode) i_b16=$(m int8 16 "$bpp" "$btg" decode)
f_pp1=$(m float 1 "$pp1" 0 prefill) i_pp1=$(m int8 1 "$pp1" 0 prefill)
f_pp2=$(m float 1 "$pp2" 0 prefill) i_pp2=$(m int8 1 "$pp2" 0 prefill)
for v in "$f_tg" "$i_tg" "$f_b4" "$i_b4" "$f_b16" "$i_b16" "$f_pp1" "$i_pp1" "$f_pp2" "$i_pp2"; do
  _bench_isnum "$v" || failed=1
done
# int8 --repack: "no path" when bench-decode has none
if [ "${MOE_BENCH_ACTS:-}" = all ]; then
  p_tg=$(m int8rp 1 1 "$tg" decode) p_b4=$(m int8rp 4 "$bpp" "$btg" decode) p_b16=$(m int8rp 16 "$bpp" "$btg" decode)
  p_pp1=$(m int8rp 1 "$pp1" 0 prefill) p_pp2=$(m int8rp 1 "$pp2" 0 prefill)
  for v in "$p_tg" "$p_b4" "$p_b16" "$p_pp1" "$p_pp2"; do _bench_isnum "$v" || failed=1; done
else
  p_tg="no path" p_b4="no path" p_b16="no path" p_pp1="no path" p_pp2="no path"
fi
jtps() { # act config
  if [ $with_job = 0 ]; then echo "not run"; return; fi
  if ! printf '%s\n' "${acts[@]}" | grep -qx "$1"; then echo "no path"; return; fi
  job_tps "$tmp"/job."$1"."$2".*.err
}
jf12=$(jtps float 1x2) ji12=$(jtps int8 1x2) jf21=$(jtps float 2x1) ji21=$(jtps int8 2x1)
jp12=$(jtps int8rp 1x2) jp21=$(jtps int8rp 2x1)
for v in "$jf12" "$ji12" "$jf21" "$ji21" "$jp12" "$jp21"; do
  [ "$v" != failed ] || failed=1
done

# rooflines: bandwidth (the best of every round's) over a step's bytes;
# peak over a token's operations
bpt=$(moe_info "$tmp/moe" bytes_per_token)
bw=$(moe_best_bandwidth "$tmp/moe")
roof_b() { # b ranks [distinct]
  if _bench_isnum "$bpt"; then bench_roof_tps "$bw" "$(moe_step_bytes "$bpt" "$shape" "$1" "$2" "${3:-}")" "$1"; else echo "-"; fi
}
r1=$(roof_b 1 1) r4=$(roof_b 4 1 "$d4") r16=$(roof_b 16 1 "$d16") r16x2=$(roof_b 16 2 "$d16")
mb() { awk -v b="$(moe_step_bytes "${bpt:-0}" "$shape" "$@")" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
if [ -n "$d16" ]; then
  distinct="distinct experts a layer measured in a traced job's decode steps: $d4 at 4, $d16 at 16 (uniform routing would visit"
  distinct="$distinct $(moe_distinct_expected "$shape" 4) and $(moe_distinct_expected "$shape" 16))"
else
  distinct="distinct experts a layer expected for uniform routing: $(moe_distinct_expected "$shape" 4) at 4, $(moe_distinct_expected "$shape" 16) at 16"
fi
ops=$(moe_prefill_ops "$shape")
pk_i=$(peak int8 2) pk_f=$(peak float 2)
rp_i=$(bench_roof_tps "${pk_i:--}" "$ops") rp_f=$(bench_roof_tps "${pk_f:--}" "$ops")

read -r ne nu _ _ _ <<< "$shape"
echo
# one job's stderr for the kernel set and the exchange figures
jerr=() xerr=()
if [ $with_job = 1 ]; then
  for f in "$tmp"/job.*.1x2.1.err; do [ -f "$f" ] && jerr+=("$f"); done
  for f in "$tmp"/job.*.2x1."$runs".err; do [ -f "$f" ] && xerr+=("$f"); done
fi
echo "## $(basename "$model"): file $(awk -v b="$(moe_info "$tmp/moe" file_bytes)" 'BEGIN { if (b >= 1e8) printf "%.2f GB", b / 1e9; else printf "%.2f MB", b / 1e6 }');" \
     "$ne routed experts, $nu used; moe kernels: $(moe_info "$tmp/moe" kernels) (engine)$( [ $with_job = 1 ] &&
     [ ${#jerr[@]} -gt 0 ] && echo ", $(job_kernels "${jerr[0]}") (worker job)")"
echo "decode roofline: read bandwidth ${bw:-?} GB/s (2 threads, best of 14 reads a round, each read 3 ways) over the bytes of a step:" \
     "$(awk -v b="$bpt" 'BEGIN { printf "%.1f", b / 1e6 }') MB at 1 sequence," \
     "$(mb 4 1 "$d4") at 4, $(mb 16 1 "$d16") at 16, $(mb 16 2 "$d16") at 16 on 2 ranks; $distinct"
echo "prefill roofline: compute peak (bench-peak, $(sed -n 's/^kernels //p' "$tmp/peak")): int8 ${pk_i:-?} GOPS" \
     "($(peak_insn int8 2), 2 threads; $(peak int8 1) on 1), float32 ${pk_f:-?} GOPS ($(peak_insn float 2), 2 threads;" \
     "$(peak float 1) on 1) over $(awk -v o="$ops" 'BEGIN { printf "%.3f", o / 1e9 }') GOP a token (2 x the weights it multiplies)"
echo
l_tg=$(llamacpp_median "${l[tg]}") l_b4=$(llamacpp_median "${l[b4]}") l_b16=$(llamacpp_median "${l[b16]}")
l_pp1=$(llamacpp_median "${l[pp1]}") l_pp2=$(llamacpp_median "${l[pp2]}")
best() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 >= b + 0) print a; else print b }'; }
fmt='| %-36s | %26s | %14s | %14s | %14s | %14s | %9s |\n'
row() { # label roof-cell llama float int8 int8rp roof-llama roof-float roof-int8
  local bm=- b
  b=$(best "$(best "$4" "$5")" "$6")
  if _bench_isnum "$3" && _bench_isnum "$b"; then bm=$(bench_ratio "$b" "$3"); fi
  # shellcheck disable=SC2059 # the format is ours
  printf "$fmt" "$1" "$2" "$(bench_cell "$3" "$7")" "$(bench_cell "$4" "$8")" "$(bench_cell "$5" "$9")" \
    "$(bench_cell "$6" "$9")" "$bm"
}
# shellcheck disable=SC2059
printf "$fmt" "tokens/s (% of roofline)" "roofline" "llama.cpp" "moe float" "moe int8" "moe int8 rp" "moe/llama"
echo "|--------------------------------------|----------------------------|----------------|----------------|----------------|----------------|-----------|"
row "decode, 1 sequence (tg$tg)" "$r1" "$l_tg" "$f_tg" "$i_tg" "$p_tg" "$r1" "$r1" "$r1"
row "decode, 4 sequences, aggregate" "$r4" "$l_b4" "$f_b4" "$i_b4" "$p_b4" "$r4" "$r4" "$r4"
row "decode, 16 sequences, aggregate" "$r16" "$l_b16" "$f_b16" "$i_b16" "$p_b16" "$r16" "$r16" "$r16"
row "prefill, $pp1-token prompt (pp$pp1)" "i8 $rp_i / f $rp_f" "$l_pp1" "$f_pp1" "$i_pp1" "$p_pp1" "$rp_i" "$rp_f" "$rp_i"
row "prefill, $pp2-token prompt (pp$pp2)" "i8 $rp_i / f $rp_f" "$l_pp2" "$f_pp2" "$i_pp2" "$p_pp2" "$rp_i" "$rp_f" "$rp_i"
row "job, 16 sequences, 1 rank x 2 thr" "$r16" "-" "$jf12" "$ji12" "$jp12" "" "$r16" "$r16"
row "job, 16 sequences, 2 ranks x 1 thr" "$r16x2" "-" "$jf21" "$ji21" "$jp21" "" "$r16x2" "$r16x2"
echo
echo "roofline: decode rows tokens/s at the read bandwidth (the 2-rank job reads the dense part on both ranks);" \
     "prefill rows at the int8 (i8: llama.cpp, moe int8) and float32 (f: moe float) peak."
echo "moe float: float32 activations (bench-decode --act float); moe int8: int8 activations (--act int8: the products with Q8_0 weights);" \
     "moe int8 rp: int8 with the dense Q8_0 and Q4_K matrices repacked (--act int8rp; moe-run/moe-worker --repack, opt-in)." \
     "moe/llama: the fastest moe path over llama.cpp."
echo "decode rows at 4 and 16: each sequence's own $bpp-token prompt, then $btg tokens each (llama-batched-bench's S_TG)."
case " $l_tg $l_b4 $l_b16 $l_pp1 $l_pp2 " in *" failed "*) llamacpp_why_failed ;; esac
round_files=()
for r in $(seq 1 "$runs"); do round_files+=("$tmp/moe.$r"); done
round_ratio() { moe_round_ratio "$@" "${round_files[@]}"; }
if [ "$LLAMACPP_OK" = 1 ]; then
  for a in "${eng_acts[@]}"; do
    [ "$a" != float ] || continue
    echo "moe $a over llama.cpp, median of the rounds' own ratios: tg$tg $(round_ratio $a 1 1 "$tg" decode "${l[tg]}")," \
         "4 sequences $(round_ratio $a 4 "$bpp" "$btg" decode "${l[b4]}"), 16 sequences $(round_ratio $a 16 "$bpp" "$btg" decode "${l[b16]}")," \
         "pp$pp1 $(round_ratio $a 1 "$pp1" 0 prefill "${l[pp1]}"), pp$pp2 $(round_ratio $a 1 "$pp2" 0 prefill "${l[pp2]}")"
  done
fi
if [ $with_job = 1 ]; then
  echo "worker job over the engine at 16 sequences: float $(bench_ratio "$jf12" "$f_b16") (1x2), $(bench_ratio "$jf21" "$f_b16") (2x1);" \
       "int8 $(bench_ratio "$ji12" "$i_b16") (1x2), $(bench_ratio "$ji21" "$i_b16") (2x1);" \
       "int8 rp $(bench_ratio "$jp12" "$p_b16") (1x2), $(bench_ratio "$jp21" "$p_b16") (2x1); worker flags: float" \
       "'$(job_act_args float || true)', int8 '$(job_act_args int8 || echo 'no path')', int8 rp '$(job_act_args int8rp || echo 'no path')'"
  br() { local v; v=$(beside_ratio "$1" "$2"); if _bench_isnum "$v"; then printf '%.2fx' "$v"; else echo "-"; fi; }
  echo "worker job over the engine runs beside it (the same case just before and after the jobs, median of the rounds'" \
       "ratios): float $(br float 1x2) (1x2), $(br float 2x1) (2x1); int8 $(br int8 1x2) (1x2), $(br int8 2x1) (2x1);" \
       "int8 rp $(br int8rp 1x2) (1x2), $(br int8rp 2x1) (2x1)"
  # each path's own (the int8 path dispatches quantized rows, the float one floats)
  for f in "${xerr[@]}"; do
    a=${f#"$tmp"/job.} a=${a%%.*}
    if read -r xb xs xo < <(job_exchange "$f"); then
      echo "2 ranks, $a: $xb exchange bytes a token, $xs% of step time exchanging, $xo% overlapped with the shared experts"
    fi
  done
fi
echo
echo "samples:"
for a in "${eng_acts[@]}"; do
  echo "  moe $a tg$tg: $(moe_case_samples "$tmp/moe" $a 1 1 "$tg" decode | paste -sd ' ')"
  echo "  moe $a 4 sequences: $(moe_case_samples "$tmp/moe" $a 4 "$bpp" "$btg" decode | paste -sd ' ')"
  echo "  moe $a 16 sequences: $(moe_case_samples "$tmp/moe" $a 16 "$bpp" "$btg" decode | paste -sd ' ')"
  echo "  moe $a pp$pp1: $(moe_case_samples "$tmp/moe" $a 1 "$pp1" 0 prefill | paste -sd ' ')"
  echo "  moe $a pp$pp2: $(moe_case_samples "$tmp/moe" $a 1 "$pp2" 0 prefill | paste -sd ' ')"
  if [ $with_job = 1 ] && printf '%s\n' "${acts[@]}" | grep -qx "$a"; then
    for c in 1x2 2x1; do
      echo "  job $a $c: $(job_samples "$tmp"/job."$a"."$c".*.err | paste -sd ' ')"
    done
  fi
done
if [ "$LLAMACPP_OK" = 1 ] && grep -q '^llama.cpp ' "$LLAMACPP_LOG"; then
  grep '^llama.cpp ' "$LLAMACPP_LOG" | sed 's/^/  /'
fi
echo "load average at the end: $(cat /proc/loadavg 2> /dev/null || echo '?')"
exit $failed
