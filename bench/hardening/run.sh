#!/usr/bin/env bash
# bench/hardening/run.sh — the tight figures of docs/limits.md: RssAnon
# high-water under the memory bomb and how far back it is after, p99
# latency of valid requests under the junk flood, TTFT of a small request
# beside big prompts, CPU of the idle coordinator over 10 s; with --soak,
# RssAnon growth per hour at 70% of measured capacity.
#
#   bench/hardening/run.sh [--build DIR] [--soak SECONDS]     (soak default 3600)
#
# The checks themselves are tests/hardening_test.sh with loose bounds (CI);
# here the same clients run with bounds that never fail, and print.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build/release
soak=
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --soak) if [ $# -gt 1 ] && [[ $2 =~ ^[0-9]+$ ]]; then soak=$2; shift 2; else soak=3600; shift; fi ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
export MOE_BIN=$build/bin MOE_FIXTURES=${MOE_FIXTURES:-$root/../shared/fixtures}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
bin=$MOE_BIN
model=$MOE_FIXTURES/models/v3_mini_f32.gguf
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-hardbench.XXXXXX")
source "$root/tests/proc.sh"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

t=$root/tests/hardening_test.sh
FLOOD_P99_MS=1e9 "$t" flood | grep -E "^flood:"
BOMB_SECONDS=5 BOMB_MIB=1e9 BOMB_BACK_MIB=4 "$t" bomb | grep -E "^bomb:"
BIG_SECONDS=6 BIG_TTFT_MS=1e9 "$t" bigprompt | grep -E "^bigprompt:"

# the soak is one client at 70% of the job's capacity: the per-client
# limits are off here (they are what the checks above measure)
setsid "$bin/moe-coordinator" --model "$model" --listen "tcp://127.0.0.1:*" --workers "ipc://$tmp/w" --ranks 1 \
    --client-in-flight 0 --client-queue 0 --client-prompt-bps 0 > "$tmp/coord.out" 2> "$tmp/coord.err" &
coord=$!; pids+=("$coord")
"$root/tests/mpirun.sh" 1 100000 "$bin/moe-worker" --model "$model" --coordinator "ipc://$tmp/w" --ignore-eos \
    > "$tmp/worker.out" 2> "$tmp/worker.err" &
pids+=("$!")
wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
port=$(sed -n 's/.*clients at tcp:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/coord.out")
ticks() { awk '{ print $14 + $15 }' "/proc/$coord/stat"; }
hz=$(getconf CLK_TCK)
a=$(ticks); sleep 10; b=$(ticks)
awk -v t=$((b - a)) -v hz="$hz" 'BEGIN { printf "idle: coordinator CPU over 10 s: %.2f s (%.2f%% of a core)\n", t / hz, t / hz * 10 }'

[ -n "$soak" ] || exit 0
rss() { awk '/^RssAnon:/ { print $2 }' "/proc/$coord/status"; }
# capacity: the finished rate of an open-loop load well above what the job
# takes (the queue refuses the excess)
cap=$("$bin/hard_client" steady 127.0.0.1 "$port" 200 10 2>/dev/null | sed -n 's/.* \([0-9]*\) finished.*/\1/p')
cap=$(awk -v n="${cap:-0}" 'BEGIN { printf "%.2f", n / 10 }')
rate=$(awk -v c="$cap" 'BEGIN { printf "%.2f", 0.7 * c }')
echo "soak: capacity about $cap requests/s (16 in, 16 out); soaking at $rate/s for $soak s"
"$bin/hard_client" steady 127.0.0.1 "$port" "$rate" 30 > /dev/null 2>&1 # warm up
r0=$(rss)
"$bin/hard_client" steady 127.0.0.1 "$port" "$rate" "$soak" | sed 's/^/soak: /'
sleep 2
r1=$(rss)
awk -v a="$r0" -v b="$r1" -v s="$soak" 'BEGIN { printf "soak: RssAnon %.1f -> %.1f MiB over %d s: %+.2f MiB/hour (%+.2f%%/hour)\n",
    a / 1024, b / 1024, s, (b - a) / 1024 * 3600 / s, (b - a) / a * 100 * 3600 / s }'
