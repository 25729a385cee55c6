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
mkdir -p "$fake"
cat > "$fake/llama-bench" << 'EOF'
#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/bench.args"
echo "loading noise" >&2
[ -f "$(dirname "$0")/fail" ] && exit 1
echo '{"build_commit": "abc", "n_prompt": 0, "avg_ts": 20.0, "samples_ns": [ 1, 2, 3 ],"samples_ts": [ 10.5, 30, 20.25 ]}'
EOF
cat > "$fake/llama-batched-bench" << 'EOF'
#!/usr/bin/env bash
d=$(dirname "$0")
if [ "$1" = --version ]; then echo "version: 1 (fake)"; echo "built with cc for x86_64"; exit 0; fi
echo "$*" >> "$d/batched.args"
n=$(cat "$d/count" 2> /dev/null || echo 0); echo $((n + 1)) > "$d/count"
s=(5.5 9 7)
echo "main: noise" >&2
echo "{\"pp\": 32, \"tg\": 32, \"pl\": 16, \"t_tg\": 1.0, \"speed_tg\": ${s[$((n % 3))]}, \"t\": 2.0, \"speed\": 1.0}"
EOF
cat > "$fake/llama-completion" << 'EOF'
#!/usr/bin/env bash
echo "build: noise" >&2
echo "0.01.000 I system_info: n_threads = 2 (n_threads_batch = 2) / 2 | CPU : AVX2 = 1 | FAKE = 1 | " >&2
# more output after the line: a reader that stops at the line must not fail
# the script (SIGPIPE under pipefail)
seq 1 200000 >&2
EOF
chmod +x "$fake"/*
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
LLAMACPP_ARGS="-fa 0"
llamacpp_tg m.gguf 64 3 > /dev/null
check "extra args" "$(tail -n 1 "$fake/bench.args")" "-m m.gguf -t 2 -p 0 -n 64 -r 3 -o jsonl -fa 0"
LLAMACPP_ARGS=""
touch "$fake/fail"
check "tg failed" "$(llamacpp_tg m.gguf 64 3)" "failed"
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
bandwidth_gbs 30.000 (before the runs 29.000, after 30.000)
EOF
check "moe median" "$(moe_case_median "$tmp/moe.out" float 1 1 64 decode)" "50.00"
check "moe int8" "$(moe_case_median "$tmp/moe.out" int8 1 1 64 decode)" "70.00"
check "moe prefill" "$(moe_case_median "$tmp/moe.out" float 16 32 32 prefill)" "100.00"
check "moe samples" "$(moe_case_samples "$tmp/moe.out" float 1 1 64 decode | paste -sd ' ')" "40.000 60.000 50.000"
check "moe missing" "$(moe_case_median "$tmp/moe.out" int8 16 32 32 decode)" "failed"
check "moe info" "$(moe_info "$tmp/moe.out" kernels):$(moe_info "$tmp/moe.out" bytes_per_token)" "avx2:1000000"
check "moe info file, bandwidth" "$(moe_info "$tmp/moe.out" file_bytes):$(moe_info "$tmp/moe.out" bandwidth_gbs)" "2000:30.000"

# the whole script on the small fixture, with the fake llama.cpp
if [ -n "${MOE_BIN:-}" ]; then
  rm -f "$fake/count"
  if ! MOE_BIN=$MOE_BIN "$root/bench/quant/run.sh" --quick --llama-cpp "$tmp/llama" > "$tmp/quant.out" 2>&1; then
    echo "FAIL bench/quant/run.sh --quick exited non-zero:"
    cat "$tmp/quant.out"
    fails=$((fails + 1))
  fi
  # llama.cpp's tg4 median (20.25; the batched one runs once: 5.5) beside two moe figures with a roofline share, and a ratio
  check "quant decode row" \
        "$(grep -c '^| decode, 1 sequence (tg4) *| *20.25 ([0-9]*%) | *[0-9.]* ([0-9]*%) | *[0-9.]* ([0-9]*%) | *[0-9.]*x |$' "$tmp/quant.out")" 1
  check "quant batched row" \
        "$(grep -c '^| decode, 4 sequences, aggregate *| *5.50 | *[0-9.]* | *[0-9.]* | *[0-9.]*x |$' "$tmp/quant.out")" 1
  check "quant kernels" "$(grep -c 'moe kernels: [a-z0-9]' "$tmp/quant.out")" 1
  check "quant file size" "$(grep -c '^## v3_mini_q8_0.gguf (q8_0): file 1.24 MB, ' "$tmp/quant.out")" 1
  check "quant system_info" "$(grep -c '^llama.cpp system_info: .*FAKE = 1' "$tmp/quant.out")" 1
else
  echo "MOE_BIN not set: the bench/quant/run.sh part did not run"
  fails=$((fails + 1))
fi
echo "$passes passed, $fails failed"
[ $fails = 0 ]
