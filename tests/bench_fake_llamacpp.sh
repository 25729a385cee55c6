# shellcheck shell=bash
# tests/bench_fake_llamacpp.sh — fake llama.cpp tools with known outputs,
# for the tests of the benchmark scripts (sourced by tests/bench_lib.sh and
# tests/bench_throughput.sh):
#   bench_fake_llamacpp DIR   writes DIR/llama-bench (samples_ts 10.5, 30,
#       20.25: median 20.25; while DIR/fail exists, its text on
#       stderr and exit 1), llama-batched-bench
#       (S_TG 5.5, 9, 7, ... in turn, counted in DIR/count) and
#       llama-completion (a system_info line with "FAKE = 1"); each records
#       its arguments in DIR/bench.args or DIR/batched.args, and its name
#       in DIR/order (a figure's run: not --version)
bench_fake_llamacpp() {
  local fake=$1
  mkdir -p "$fake"
  cat > "$fake/llama-bench" << 'EOF'
#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/bench.args"
echo llama-bench >> "$(dirname "$0")/order"
echo "loading noise" >&2
[ -f "$(dirname "$0")/fail" ] && { cat "$(dirname "$0")/fail" >&2; exit 1; }
echo '{"build_commit": "abc", "n_prompt": 0, "avg_ts": 20.0, "samples_ns": [ 1, 2, 3 ],"samples_ts": [ 10.5, 30, 20.25 ]}'
EOF
  cat > "$fake/llama-batched-bench" << 'EOF'
#!/usr/bin/env bash
d=$(dirname "$0")
if [ "$1" = --version ]; then echo "version: 1 (fake)"; echo "built with cc for x86_64"; exit 0; fi
echo "$*" >> "$d/batched.args"
echo llama-batched-bench >> "$d/order"
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
}
