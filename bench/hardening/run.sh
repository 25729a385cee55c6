#!/usr/bin/env bash
# bench/hardening/run.sh — the tight figures of docs/limits.md: RssAnon
# high-water under the memory bomb and how far back it is after, p99
# latency of valid requests under the junk flood, TTFT of a small request
# beside big prompts, CPU of the idle coordinator over 10 s; with --soak,
# RssAnon and malloc heap (moe:coordinator_heap_bytes) growth per hour at
# 70% of measured capacity.
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
    --client-in-flight 0 --client-queue 0 --client-prompt-bps 0 --metrics-file "$tmp/metrics" > "$tmp/coord.out" 2> "$tmp/coord.err" &
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
# the malloc heap (moe:coordinator_heap_bytes, KiB): in use, and in use +
# free (what the allocator holds); from the metrics the coordinator wrote
# on the previous sample's SIGUSR1 (10 s old), "- -" before the first
heap() {
  awk '/^moe:coordinator_heap_bytes/ { v[$1 ~ /"in_use"/ ? "u" : "f"] = $2 }
       END { if ("u" in v) printf "%d %d", v["u"] / 1024, (v["u"] + v["f"]) / 1024; else printf "- -" }' "$tmp/metrics" 2>/dev/null ||
    printf -- "- -"
  kill -USR1 "$coord"
}
# capacity: the best finished rate of open-loop loads doubled from 200/s
# until the job falls behind (finishes under 90% of what is offered; the
# queue refuses the excess), each over its whole run's time
cap=0
for offer in 200 400 800 1600 3200 6400; do
  got=$("$bin/hard_client" steady 127.0.0.1 "$port" "$offer" 10 2>/dev/null |
        sed -n 's/.* \([0-9]*\) finished, .* in \([0-9.]*\) s$/\1 \2/p' | awk '{ printf "%.2f", $1 / $2 }')
  echo "soak: offered $offer/s, finished ${got:-0}/s"
  cap=$(awk -v a="$cap" -v b="${got:-0}" 'BEGIN { print (b > a) ? b : a }')
  awk -v g="${got:-0}" -v o="$offer" 'BEGIN { exit !(g < 0.9 * o) }' && break
done
rate=$(awk -v c="$cap" 'BEGIN { printf "%.2f", 0.7 * c }')
echo "soak: capacity about $cap requests/s (16 in, 16 out); soaking at $rate/s for $soak s"
"$bin/hard_client" steady 127.0.0.1 "$port" "$rate" 30 > /dev/null 2>&1 # warm up
# RssAnon every 10 s while the load runs; the growth is the least-squares
# slope of those samples (two end points would be one sample's noise)
"$bin/hard_client" steady 127.0.0.1 "$port" "$rate" "$soak" > "$tmp/soak.out" 2> "$tmp/soak.err" &
load=$!
t0=$(date +%s)
while kill -0 "$load" 2>/dev/null; do
  echo "$(( $(date +%s) - t0 )) $(rss) $(heap)" >> "$tmp/rss"
  for _ in $(seq 1 100); do kill -0 "$load" 2>/dev/null || break; sleep 0.1; done
done
wait "$load"
sed 's/^/soak: /' "$tmp/soak.out"
head -3 "$tmp/soak.err" | sed 's/^/soak: /'
# slope() COLUMN NAME: least squares over the samples that have the column
slope() {
  awk -v s="$soak" -v k="$1" -v name="$2" '$k != "-" { n++; x += $1; y += $k; xx += $1 * $1; xy += $1 * $k; if (n == 1) first = $k; last = $k }
    END { if (n < 2) exit; b = (n * xy - x * y) / (n * xx - x * x); m = y / n
          printf "soak: %s %.3f MiB at the start, %.3f at the end, %d samples over %d s: slope %+.3f MiB/hour (%+.2f%% of the mean per hour)\n",
                 name, first / 1024, last / 1024, n, s, b * 3600 / 1024, b * 3600 / m * 100 }' "$tmp/rss"
}
slope 2 RssAnon
slope 3 "heap in use"
slope 4 "heap held (in use + free)"
