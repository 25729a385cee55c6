#!/usr/bin/env bash
# The benchmark harness (bench/lib/*.sh, bench/quant/run.sh) against fake
# llama.cpp tools whose output is known: the medians, the arguments passed,
# "not run" and "failed", the parsing of bench-decode's --case lines, and
# one --quick run of bench/quant/run.sh that must put the fake's figures and
# moe's beside each other.  No llama.cpp is needed.
#   tests/bench_lib.sh ROOT   (MOE_BIN: the build's bin/ for the last part)
set -euo pipefail
root=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-bench-lib.XXXXXX")
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
. "$root/bench/lib/llamacpp.sh"
. "$root/bench/lib/moe.sh"
. "$root/bench/lib/job.sh"
. "$root/tests/bench_fake_llamacpp.sh"

check "median odd" "$(printf '3\n1\n2\n' | bench_median)" "2.00"
check "median even" "$(echo '4, 1, 3, 2' | bench_median)" "2.50"
check "median empty" "$(printf '' | bench_median)" ""
check "ratio" "$(bench_ratio 49.2 40)" "1.23x"
check "ratio of not run" "$(bench_ratio 49.2 'not run')" "-"
check "ratio by zero" "$(bench_ratio 1 0)" "-"
check "pct" "$(bench_pct 30 120)" "25%"
check "cell" "$(bench_cell 30.00 120)" "30.00 (25%)"
check "cell without roof" "$(bench_cell 30.00)" "30.00"

# no llama.cpp: every figure "not run"
LLAMA_CPP='' llamacpp_init ""
check "not given" "$LLAMACPP_OK" 0
check "tg not run" "$(llamacpp_tg m.gguf 64 3)" "not run"
check "batched not run" "$(llamacpp_batched m.gguf 16 32 32 3)" "not run"
llamacpp_init "$tmp/nowhere"
check "missing dir" "$LLAMACPP_OK:$LLAMACPP_WHY" "0:no llama-bench in $tmp/nowhere or $tmp/nowhere/bin"

# fake tools in a CMake-like build dir (bin/)
fake=$tmp/llama/bin
bench_fake_llamacpp "$fake"
LLAMACPP_LOG=$tmp/log
llamacpp_init "$tmp/llama"
check "found" "$LLAMACPP_OK:$LLAMACPP_BIN" "1:$fake"
llamacpp_init "$fake"
check "found bin dir" "$LLAMACPP_OK:$LLAMACPP_BIN" "1:$fake"
check "tg median" "$(llamacpp_tg m.gguf 64 3)" "20.25"
check "tg args" "$(tail -n 1 "$fake/bench.args")" "-m m.gguf -t 2 -p 0 -n 64 -r 3 -o jsonl"
check "pp median" "$(llamacpp_pp m.gguf 128 5)" "20.25"
check "pp args" "$(tail -n 1 "$fake/bench.args")" "-m m.gguf -t 2 -p 128 -n 0 -r 5 -o jsonl"
check "tg samples logged" "$(grep -c '^llama.cpp tg64: samples 10.5, 30, 20.25$' "$LLAMACPP_LOG")" 1
check "batched median" "$(llamacpp_batched m.gguf 16 32 32 3)" "7.00"
check "batched runs" "$(wc -l < "$fake/batched.args")" 3
check "batched args" "$(tail -n 1 "$fake/batched.args")" \
      "-m m.gguf -t 2 -tb 2 -c 1024 -npp 32 -ntg 32 -npl 16 --output-format jsonl"
desc=$(llamacpp_describe m.gguf)
check "describe version" "$(echo "$desc" | sed -n 1p)" "llama.cpp: $fake; version: 1 (fake) built with cc for x86_64"
check "describe system_info" "$(echo "$desc" | sed -n 2p)" \
      "llama.cpp system_info: n_threads = 2 (n_threads_batch = 2) / 2 | CPU : AVX2 = 1 | FAKE = 1 |"
# an older build: llama-cli instead of llama-completion; then neither
mv "$fake/llama-completion" "$fake/llama-cli"
check "describe via llama-cli" "$(llamacpp_describe m.gguf | sed -n 2p)" \
      "llama.cpp system_info: n_threads = 2 (n_threads_batch = 2) / 2 | CPU : AVX2 = 1 | FAKE = 1 |"
mv "$fake/llama-cli" "$fake/llama-cli.off"
check "describe without either" "$(llamacpp_describe m.gguf | sed -n 2p)" \
      "llama.cpp system_info: unknown (build llama-completion or llama-cli to print it)"
mv "$fake/llama-cli.off" "$fake/llama-completion"
# figures of rounds: a number, or the first failure / absence
check "median of rounds" "$(llamacpp_median " 20.25 10 30")" "20.25"
check "median of rounds, one failed" "$(llamacpp_median " 20.25 failed 30")" "failed"
check "median of rounds, not run" "$(llamacpp_median " not run not run")" "not run"
LLAMACPP_ARGS="-fa 0"
llamacpp_tg m.gguf 64 3 > /dev/null
check "extra args" "$(tail -n 1 "$fake/bench.args")" "-m m.gguf -t 2 -p 0 -n 64 -r 3 -o jsonl -fa 0"
LLAMACPP_ARGS=""
touch "$fake/fail"
check "tg failed" "$(llamacpp_tg m.gguf 64 3)" "failed"
# why: the first line of its stderr that reads as an error, not the noise
LLAMACPP_LOG=$tmp/llamacpp.log
: > "$LLAMACPP_LOG"
llamacpp_tg m.gguf 64 3 > /dev/null
check "why failed, no error line" "$(llamacpp_why_failed)" ""
echo "ggml-backend.cpp:1283: GGML_ASSERT(x != -1) failed" > "$fake/fail"
llamacpp_tg m.gguf 64 3 > /dev/null
check "why failed" "$(llamacpp_why_failed | sed -n 1p)" "llama.cpp failed: ggml-backend.cpp:1283: GGML_ASSERT(x != -1) failed"
# from a later file's first line on: that file's error, not the first one
from=$(( $(wc -l < "$LLAMACPP_LOG") + 1 ))
echo "main: error: second file" > "$fake/fail"
llamacpp_tg m.gguf 64 3 > /dev/null
check "why failed, from line" "$(llamacpp_why_failed "$from" | sed -n 1p)" "llama.cpp failed: main: error: second file"
check "why failed, past the end" "$(llamacpp_why_failed 100000)" ""
LLAMACPP_LOG=/dev/null
rm "$fake/fail"

# bench-decode --case lines
cat > "$tmp/moe.out" << 'EOF'
model m.gguf
file_bytes 2000
kernels avx2
bytes_per_token 1000000
case act=float threads=2 seqs=1 prompt=1 gen=64 rep=1 prefill_tps=1.000 decode_tps=40.000
case act=float threads=2 seqs=1 prompt=1 gen=64 rep=2 prefill_tps=1.000 decode_tps=60.000
case act=float threads=2 seqs=1 prompt=1 gen=64 rep=3 prefill_tps=1.000 decode_tps=50.000
case act=int8 threads=2 seqs=1 prompt=1 gen=64 rep=1 prefill_tps=1.000 decode_tps=70.000
case act=float threads=2 seqs=16 prompt=32 gen=32 rep=1 prefill_tps=100.000 decode_tps=80.000
case act=int8rp threads=2 seqs=1 prompt=1 gen=64 rep=1 prefill_tps=1.000 decode_tps=50.000 bw_gbs=0.100
case act=int8rp threads=2 seqs=1 prompt=1 gen=64 rep=2 prefill_tps=1.000 decode_tps=60.000 bw_gbs=0.100
case act=int8rp threads=2 seqs=1 prompt=1 gen=64 rep=3 prefill_tps=1.000 decode_tps=40.000 bw_gbs=0.050
bandwidth_gbs 30.000 (before the runs 29.000, after 30.000)
EOF
check "moe median" "$(moe_case_median "$tmp/moe.out" float 1 1 64 decode)" "50.00"
check "moe int8" "$(moe_case_median "$tmp/moe.out" int8 1 1 64 decode)" "70.00"
check "moe prefill" "$(moe_case_median "$tmp/moe.out" float 16 32 32 prefill)" "100.00"
check "moe samples" "$(moe_case_samples "$tmp/moe.out" float 1 1 64 decode | paste -sd ' ')" "40.000 60.000 50.000"
check "moe missing" "$(moe_case_median "$tmp/moe.out" int8 16 32 32 decode)" "failed"
# 50, 60 and 80% of the bandwidth around each run: the median of the ratios
# (not the ratio of the medians, 50/0.1 = 50%)
check "moe bandwidth around runs" "$(moe_case_bw_pct "$tmp/moe.out" int8rp 1 1 64 1000000)" "60%"
check "moe no bandwidth around runs" "$(moe_case_bw_pct "$tmp/moe.out" float 1 1 64 1000000)" "-"
check "moe info" "$(moe_info "$tmp/moe.out" kernels):$(moe_info "$tmp/moe.out" bytes_per_token)" "avx2:1000000"
check "moe info file, bandwidth" "$(moe_info "$tmp/moe.out" file_bytes):$(moe_info "$tmp/moe.out" bandwidth_gbs)" "2000:30.000"
# rounds, one bench-decode output each: float 40, 60, 50 against
# llama.cpp's 20, 40, 10 of the same rounds -> ratios 2, 1.5, 5 -> 2.00x
# (the ratio of the medians would be 2.5x); a round where moe gave no
# figure, or llama.cpp failed, is left out
for i in 1 2 3; do
  grep "^case act=float threads=2 seqs=1 prompt=1 gen=64 rep=$i " "$tmp/moe.out" > "$tmp/round.$i"
done
rr() { moe_round_ratio float 1 1 64 decode "$@"; }
check "round ratio" "$(rr " 20 40 10" "$tmp/round.1" "$tmp/round.2" "$tmp/round.3")" "2.00x"
: > "$tmp/round.empty"
check "round ratio, moe failed in a round" "$(rr " 20 40 10" "$tmp/round.1" "$tmp/round.empty" "$tmp/round.3")" "3.50x"
check "round ratio, llama.cpp failed in a round" "$(rr " 20 failed 10" "$tmp/round.1" "$tmp/round.2" "$tmp/round.3")" "3.50x"
check "round ratio, llama.cpp not run" "$(rr " not run not run" "$tmp/round.1" "$tmp/round.2")" "-"
check "round ratio, counts differ" "$(rr "20 40" "$tmp/round.1" "$tmp/round.2" "$tmp/round.3")" "-"
# the best read of all rounds, not the last nor the first
printf 'bandwidth_gbs 31.250 (before)\nbandwidth_gbs 9.500 (before)\n' >> "$tmp/moe.out"
check "best bandwidth of the rounds" "$(moe_best_bandwidth "$tmp/moe.out")" "31.250"
check "best bandwidth, none" "$(moe_best_bandwidth "$tmp/nothing")" ""

# moe_page_cache_drop: a file just written is cached; after it, none of it
# is (fincore's resident bytes), and its bytes are unchanged (on a disk
# file system: a tmpfs file lives in the page cache, so then in the build
# tree, MOE_BIN's parent)
if ! command -v fincore > /dev/null; then
  echo "SKIP page cache checks: no fincore (util-linux-extra; scripts/setup.sh installs it)"
else
  pc=$tmp
  if [ "$(stat -f -c %T "$tmp")" = tmpfs ]; then
    pc=$(mktemp -d "$(dirname "${MOE_BIN:-$root/build/release/bin}")/bench-lib-pc.XXXXXX")
    trap 'rm -rf "$tmp" "$pc"' EXIT
  fi
  head -c 4194304 /dev/urandom > "$pc/cached.bin"
  sum=$(cksum < "$pc/cached.bin")
  check "written file cached" "$(( $(fincore -nb -o RES "$pc/cached.bin") > 0 ))" 1
  moe_page_cache_drop "$pc/cached.bin"
  check "page cache dropped" "$(fincore -nb -o RES "$pc/cached.bin" | tr -d ' ')" 0
  check "dropped file unchanged" "$(cksum < "$pc/cached.bin")" "$sum"
fi

# the model's shape and the rooflines, on a fixture whose shape is known
# (v3_mini: 4 layers, 1 dense, dim 128, 16 experts of 32, 4 used, 1 shared
# of 32, q_lora 96, kv_lora 64, 4 heads): routed 3 layers x 3 x 128 x 32 x 16
# values (589824) in Q8_0 (34 bytes a 32; 626688); dense 4 x 73728
# attention (q_a 12288, q_b 18432, kv_a 10240, k_b 8192, v_b 8192, o
# 16384) + 3 x 32768 dense FFN + 3 x (2048 gate + 3 x 4096 shared)
if [ -n "${MOE_BIN:-}" ]; then
  fx=${MOE_FIXTURES:-$root/../shared/fixtures}/models
  check "shape" "$(moe_model_shape "$fx/v3_mini_q8_0.gguf")" "16 4 626688 436224 589824"
  check "vocab" "$(moe_model_vocab "$fx/v3_mini_q8_0.gguf")" 400
  check "shape of a file that is no GGUF" "$(moe_model_shape "$tmp/log" 2> /dev/null || echo none)" none
  job_batch "$fx/v3_mini_q8_0.gguf" "$tmp/batch" 16 8 4
  check "batch shape" "$(awk '{ n = split($1, t, ","); ok = n == 8 && $2 == 4
                                for (i = 1; i <= n; i++) ok = ok && t[i] ~ /^[0-9]+$/ && t[i] < 400
                                bad += !ok } END { print NR, bad + 0 }' "$tmp/batch")" "16 0"
  # bench-decode's ids: sequence 1, position 1 is (7919 + 104729 + 13) mod 400
  check "batch ids are bench-decode's" "$(awk 'NR == 2 { split($1, t, ","); print t[1], t[2] }' "$tmp/batch")" "332 261"
  cp "$tmp/batch" "$tmp/batch1"
  job_batch "$fx/v3_mini_q8_0.gguf" "$tmp/batch" 16 8 4
  check "batch the same every time" "$(cmp -s "$tmp/batch" "$tmp/batch1" && echo same)" same
fi
# bytes a decode step reads: bpt = 1e6 dense + 4/16 of 626688 routed; at B
# sequences the routed part is 626688 (1 - 0.75^B), the dense one once a rank
sh="16 4 626688 436224 589824"
check "step bytes B=1" "$(moe_step_bytes 1156672 "$sh" 1)" 1156672
check "step bytes B=16" "$(moe_step_bytes 1156672 "$sh" 16)" 1620407
check "step bytes B=16, 2 ranks" "$(moe_step_bytes 1156672 "$sh" 16 2)" 2620407
check "prefill ops" "$(moe_prefill_ops "$sh")" 1167360
check "roof tps" "$(bench_roof_tps 30 1500000000)" "20.00"
check "roof tps at 16" "$(bench_roof_tps 30 1500000000 16)" "320.00"
check "roof of a failed figure" "$(bench_roof_tps "" 100)" "-"

# the worker job's figures from a --stats stderr (2 ranks, 2 MoE layers)
cat > "$tmp/job.err" << 'STATS'
rank 0: kernels avx2 (this rank offers avx2; its CPU has avx2)
rank 0: sequences 2, steps 10, prefill tokens 60, decode tokens 40, 2.000 s, cache bytes in use 0, wait 0.100 s
job: 2 ranks x 1 threads, decode-only steps 9, 80 tokens in 1.000 s = 80.00 tokens/s
rank 0 layer 1: sent 1000 bytes (10 rows), received 1000 bytes (10 rows), compute 0.1 s, exchange 0.2 s, overlap 0.1 s, tokens per expert 0:3
rank 0 layer 2: sent 1000 bytes (10 rows), received 1000 bytes (10 rows), compute 0.1 s, exchange 0.2 s, overlap 0.1 s, tokens per expert 0:3
rank 1: sequences 2, steps 10, prefill tokens 60, decode tokens 40, 4.000 s, cache bytes in use 0, wait 0.100 s
rank 1 layer 1: sent 3000 bytes (10 rows), received 1000 bytes (10 rows), compute 0.1 s, exchange 0.4 s, overlap 0.0 s, tokens per expert 0:3
rank 1 layer 2: sent 3000 bytes (10 rows), received 1000 bytes (10 rows), compute 0.1 s, exchange 0.4 s, overlap 0.0 s, tokens per expert 0:3
STATS
sed 's/= 80.00 tokens/= 60.50 tokens/' "$tmp/job.err" > "$tmp/job2.err"
sed 's/= 80.00 tokens/= 99.00 tokens/' "$tmp/job.err" > "$tmp/job3.err"
# 8000 bytes over 200 tokens; exchange 0.4/2 and 0.8/4 s (20%); overlap 0.2/2 and 0/4 (5%)
check "job exchange" "$(job_exchange "$tmp/job.err")" "40 20.0 5.0"
check "job tps" "$(job_tps "$tmp/job.err" "$tmp/job2.err" "$tmp/job3.err")" "80.00"
check "job tps failed" "$(job_tps "$tmp/nothing.err")" "failed"
check "job kernels" "$(job_kernels "$tmp/job.err")" avx2
# distinct experts a decode step visits, from a --trace: positions >= 2,
# groups of B consecutive requests; layer 1 at position 2: requests 0-1
# visit {0,1,2}, 2-3 {3,4,5}; layer 2: request 0 {0,1}; position 1 is prefill
cat > "$tmp/trace" << 'TRACE'
1 0 1 0 7,8 0.5,0.5 0,0
1 0 2 0 0,1 0.5,0.5 0,0
1 1 2 0 1,2 0.5,0.5 0,0
1 2 2 0 3,4 0.5,0.5 0,0
1 3 2 0 3,5 0.5,0.5 0,0
2 0 2 0 0,1 0.5,0.5 0,0
TRACE
check "distinct B=2" "$(job_distinct "$tmp/trace" 2 2)" "2.7"
check "distinct B=4" "$(job_distinct "$tmp/trace" 2 4)" "4.0"
check "distinct without decode rows" "$(job_distinct "$tmp/trace" 3 4 || echo none)" none
check "expected distinct" "$(moe_distinct_expected "$sh" 16)" "15.8"
check "step bytes, measured distinct" "$(moe_step_bytes 1156672 "$sh" 16 1 8)" 1313344
# the activation flags, from three kinds of moe-worker --help
mkdir -p "$tmp/wbin"
for kind in exact both int8 none; do
  printf '#!/bin/sh\necho "usage: moe-worker"\n' > "$tmp/wbin/moe-worker"
  case $kind in
    exact) echo 'echo "  --exact             float32 activations (default: int8)"' >> "$tmp/wbin/moe-worker" ;;
    both) printf '%s\n' 'echo "  --exact             float activations everywhere, as moe-run --exact"' \
                 'echo "  --int8              the default (int8 activations); accepted"' >> "$tmp/wbin/moe-worker" ;;
    int8) echo 'echo "  --int8              int8 activations"' >> "$tmp/wbin/moe-worker" ;;
    none) echo 'echo "  --threads N  (not --exact or --int8)"' >> "$tmp/wbin/moe-worker" ;;
  esac
  chmod +x "$tmp/wbin/moe-worker"
  got=$(MOE_BIN=$tmp/wbin
        for a in float int8; do
          if v=$(job_act_args $a); then printf '%s=[%s] ' $a "$v"; else printf '%s=none ' $a; fi
        done)
  case $kind in
    exact|both) want="float=[--exact] int8=[] " ;;
    int8) want="float=[] int8=[--int8] " ;;
    none) want="float=[] int8=none " ;;
  esac
  check "act flags ($kind)" "$got" "$want"
done

# the whole script on the small fixture, with the fake llama.cpp, in two
# rounds; bench-decode behind a wrapper that writes "moe" into the fake's
# order file, so the rounds' order shows
if [ -n "${MOE_BIN:-}" ]; then
  rm -f "$fake/count" "$fake/order"
  mkdir -p "$tmp/mbin"
  ln -s "$MOE_BIN/moe-mkmodel" "$tmp/mbin/moe-mkmodel"
  printf '#!/bin/sh\necho moe >> "%s"\nexec "%s" "$@"\n' "$fake/order" "$MOE_BIN/bench-decode" > "$tmp/mbin/bench-decode"
  chmod +x "$tmp/mbin/bench-decode"
  if ! MOE_BIN=$tmp/mbin "$root/bench/quant/run.sh" --quick --runs 2 --llama-cpp "$tmp/llama" > "$tmp/quant.out" 2>&1; then
    echo "FAIL bench/quant/run.sh --quick exited non-zero:"
    cat "$tmp/quant.out"
    fails=$((fails + 1))
  fi
  # round 1: moe, then llama.cpp's tg, pp and batched; round 2 the other way
  check "quant rounds' order" "$(paste -sd ' ' "$fake/order")" \
        "moe llama-bench llama-bench llama-batched-bench llama-bench llama-bench llama-batched-bench moe"
  check "quant header" "$(grep -c '^# bench/quant: .*median of 2 round(s)$' "$tmp/quant.out")" 1
  check "quant moe samples, one a round" \
        "$(grep -cE '^  moe (float|int8|int8rp) (tg4|pp16|4 sequences): samples [0-9.]+ [0-9.]+$' "$tmp/quant.out")" 9
  check "quant llama.cpp samples, one a round" "$(grep -c '^  llama.cpp tg4: samples ' "$tmp/quant.out")" 2
  # llama.cpp's tg4 median (20.25 each round; the batched one 5.5, then 9:
  # 7.25) beside three moe figures with a roofline share, and two ratios
  check "quant decode row" \
        "$(grep -c '^| decode, 1 sequence (tg4) *| *20.25 ([0-9]*%) | *[0-9.]* ([0-9]*%) | *[0-9.]* ([0-9]*%) | *[0-9.]* ([0-9]*%) | *[0-9.]*x | *[0-9.]*x |$' "$tmp/quant.out")" 1
  check "quant batched row" \
        "$(grep -c '^| decode, 4 sequences, aggregate *| *7.25 | *[0-9.]* | *[0-9.]* | *[0-9.]* | *[0-9.]*x | *[0-9.]*x |$' "$tmp/quant.out")" 1
  check "quant kernels" "$(grep -c 'moe kernels: [a-z0-9]' "$tmp/quant.out")" 1
  check "quant decode against its moment" \
        "$(grep -c '^decode, 1 sequence, against the read bandwidth around each run (median of the runs): moe float [0-9]*%, moe int8 [0-9]*%, moe int8 repack [0-9]*%$' "$tmp/quant.out")" 1
  check "quant round ratio" \
        "$(grep -c "^decode, 1 sequence, each round's moe over llama.cpp's of the same round (median of the rounds' ratios): moe int8 [0-9.]*x, moe int8 repack [0-9.]*x$" "$tmp/quant.out")" 1
  check "quant file size" "$(grep -c '^## v3_mini_q8_0.gguf (q8_0): file 1.24 MB, ' "$tmp/quant.out")" 1
  check "quant system_info" "$(grep -c '^llama.cpp system_info: .*FAKE = 1' "$tmp/quant.out")" 1
else
  echo "MOE_BIN not set: the bench/quant/run.sh part did not run"
  fails=$((fails + 1))
fi
echo "$passes passed, $fails failed"
[ $fails = 0 ]
