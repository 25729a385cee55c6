#!/usr/bin/env bash
# bench/cluster — expert parallelism across emulated hosts (deploy/rig:
# network namespaces on a bridge, Open MPI over TCP; root only): for 2 and 4
# hosts x 1 rank, link caps (tc tbf) of 1, 10 and 25 Gbit/s and an added
# latency (moe-worker --test-xchg-delay-us, every collective held) of 0, 50
# and 200 us, one worker job (moe-worker --batch: 16 sequences of 32-token
# prompts generating 32 tokens each, on bench/ep's model) prints
#   decode tok/s        the job's decode-only steps ("job:" line of --stats)
#   job tok/s           all tokens (prefill + decode) over the ranks' step time
#   exch %              share of step time the ranks spent exchanging (mean over ranks)
#   MB/tok              exchange bytes sent per token (dispatch + combine, all ranks)
#   link Mbit/s         the busiest host link's bytes (tx + rx, /sys/class/net) over
#                       the run's step time: the throughput achieved, on average
#   held                packets a cap held back (tc -s overlimits, every link end):
#                       0 means the cap never bound
# (and a row "shm": the same job on one host over shared memory, no rig),
# then serving figures (moe-bench over ZMQ against a coordinator that runs
# the job across the hosts, --launch) at 10 Gbit/s, latency 0 and 200 us;
# the rig's worker link is not loopback, so it runs over CURVE with the
# keys "rig.sh keys" makes in the rig's folder (mode 0700).
# Every output is checked equal to the first configuration's (the exchange
# never changes a bit).  Prints a table, writes it and a PNG plot
# (gnuplot) to --out.
#
#   bench/cluster/run.sh [--quick] [--model FILE] [--hosts "2 4"] [--caps "1gbit 10gbit 25gbit"]
#                        [--delays "0 50 200"] [--no-serve] [--out DIR]
#
# --quick: 2 hosts, caps 1gbit and 25gbit, latency 0 and 200 us, on a fixture
# model (v3_mini_q8_0), a short serving run: a smoke run of the whole path.
#
# Limits of emulation (say them with the figures): every host shares this
# machine's cores (2 here), so more hosts mean less CPU each and the
# ranks' compute, not the link, usually sets the pace; veth and the bridge
# move bytes at memory speed, so only a tbf cap limits bandwidth, and a
# high cap may never bind; the added latency is a hold on each collective
# in the program (no netem on this kernel), not a delay of each packet.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${MOE_BIN:-$root/build/release/bin}
rig=$root/deploy/rig/rig.sh
quick=0 model="" hosts_list="2 4" caps="1gbit 10gbit 25gbit" delays="0 50 200" serve=1 out=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --model) model=$2; shift 2 ;;
    --hosts) hosts_list=$2; shift 2 ;;
    --caps) caps=$2; shift 2 ;;
    --delays) delays=$2; shift 2 ;;
    --no-serve) serve=0; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench/cluster: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench/cluster: must run as root (network namespaces)" >&2; exit 1; }
[ -x "$bin/moe-worker" ] || { echo "bench/cluster: build first (scripts/build.sh release)" >&2; exit 1; }
for h in $hosts_list; do [[ $h =~ ^[1-9][0-9]?$ ]] || { echo "bench/cluster: --hosts: $h" >&2; exit 2; }; done
for d in $delays; do [[ $d =~ ^[0-9]{1,7}$ ]] || { echo "bench/cluster: --delays: $d" >&2; exit 2; }; done
for c in $caps; do [[ $c =~ ^([1-9][0-9]{0,5}(gbit|mbit)|none)$ ]] || { echo "bench/cluster: --caps: $c" >&2; exit 2; }; done
if [ $quick = 1 ]; then
  hosts_list="2" caps=${QUICK_CAPS:-"1gbit 25gbit"} delays=${QUICK_DELAYS:-"0 200"}
  model=${model:-${MOE_FIXTURES:-$root/../shared/fixtures}/models/v3_mini_q8_0.gguf}
fi
if [ -z "$model" ]; then
  model=$root/models/bench.gguf
  [ -f "$model" ] || { mkdir -p "$root/models"; "$bin/moe-mkmodel" --preset bench -o "$model"; }
fi
out=${out:-$root/build/bench-cluster}
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-bench-cluster.XXXXXX")
name=moerigb$(od -An -N2 -tx2 /dev/urandom | tr -d ' ' | cut -c1-3)
coord_sid=""
cleanup() {
  [ -n "$coord_sid" ] && { pkill -TERM -s "$coord_sid" 2>/dev/null || true; }
  "$rig" down "$name" > /dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

vocab=$("$bin/moe-gguf" "$model" | awk '$1 == "deepseek2.vocab_size" { v = $3 } $1 == "tokenizer.ggml.tokens" { t = $3 }
                                       END { print v != "" ? v : t }')
[[ $vocab =~ ^[1-9][0-9]*$ ]] || { echo "bench/cluster: $model: no vocabulary size" >&2; exit 1; }
awk -v v="$vocab" 'BEGIN { srand(11); for (i = 0; i < 16; i++) { s = ""
  for (j = 0; j < 32; j++) s = s (j ? "," : "") int(rand() * v); print s, 32 } }' > "$tmp/batch"

mpi_flags() { echo "--hostfile $RIG_DIR/hostfile -np $RIG_HOSTS --bind-to none --mca btl tcp,self --mca btl_tcp_if_include $RIG_NET --mca oob_tcp_if_include $RIG_NET -x OPENBLAS_NUM_THREADS"; }
link_bytes() { # the busiest host link's tx + rx so far, per host: "h bytes" lines
  local h
  for h in $(seq 1 "$RIG_HOSTS"); do echo "$h $("$rig" stats "$name" "h$h" | awk '{ print $1 + $2 }')"; done
}

# decode CAP DELAY: one worker job; appends a row to $out/cluster.tsv
decode() {
  local cap=$1 delay=$2 tag=$RIG_HOSTS-$1-$2
  link_bytes > "$tmp/bytes0"
  local held0; held0=$("$rig" overlimits "$name")
  # shellcheck disable=SC2046
  "$rig" exec "$name" c timeout 900 mpirun $(mpi_flags) "$bin/moe-worker" --model "$model" --batch "$tmp/batch" \
      --ignore-eos --stats --test-xchg-delay-us "$delay" > "$tmp/out.$tag" 2> "$tmp/err.$tag" ||
    { echo "bench/cluster: the job failed ($tag):" >&2; tail -5 "$tmp/err.$tag" >&2; exit 1; }
  link_bytes > "$tmp/bytes1"
  local held; held=$(( $("$rig" overlimits "$name") - held0 ))
  [ -f "$tmp/out.ref" ] || cp "$tmp/out.$tag" "$tmp/out.ref"
  cmp -s "$tmp/out.ref" "$tmp/out.$tag" || { echo "bench/cluster: outputs differ ($tag)!" >&2; exit 1; }
  local f=$tmp/err.$tag
  local dec; dec=$(sed -n 's/^job: .* = \([0-9.]*\) tokens\/s$/\1/p' "$f")
  sed -n 's/^rank \([0-9]*\): sequences [0-9]*, steps [0-9]*, prefill tokens \([0-9]*\), decode tokens \([0-9]*\), \([0-9.]*\) s,.*/\1 \2 \3 \4/p' "$f" > "$tmp/total"
  sed -n 's/^rank \([0-9]*\) layer [0-9]*: sent \([0-9]*\) bytes.*exchange \([0-9.]*\) s,.*/\1 \2 \3/p' "$f" > "$tmp/layers"
  # job tok/s: all tokens over the slowest rank's step time; exchange share: mean over ranks
  awk -v dec="$dec" -v cap="$cap" -v delay="$delay" -v hosts="$RIG_HOSTS" -v held="$held" \
      'FILENAME == ARGV[1] { tok += $2 + $3; t[$1] = $4; if ($4 > tmax) tmax = $4; next }
       FILENAME == ARGV[2] { bytes += $2; ex[$1] += $3; next }
       FILENAME == ARGV[3] { b0[$1] = $2; next }
       { d = $2 - b0[$1]; if (d > bmax) bmax = d }
       END { for (r in t) { se += ex[r] / t[r]; n++ }
             printf "%d\t%s\t%d\t%.2f\t%.2f\t%.1f\t%.3f\t%.0f\t%d\n", hosts, cap, delay, dec, tok / tmax, 100 * se / n,
                    bytes / tok / 1e6, 8 * bmax / tmax / 1e6, held }' \
      "$tmp/total" "$tmp/layers" "$tmp/bytes0" "$tmp/bytes1" >> "$out/cluster.tsv"
  tail -1 "$out/cluster.tsv" | awk -F'\t' '{ printf "  %d hosts, cap %s, +%d us: decode %s tok/s, job %s tok/s, exchange %s%%, %s MB/token, link %s Mbit/s, held %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }'
}

# shm: the same job on one host over shared memory (btl self,vader, no rig):
# the baseline each host count's rows compare with
shm() {
  local tag=$RIG_HOSTS-shm
  "$root/tests/mpirun.sh" "$RIG_HOSTS" 900 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --ignore-eos --stats \
      > "$tmp/out.$tag" 2> "$tmp/err.$tag" || { echo "bench/cluster: the one-host job failed:" >&2; tail -5 "$tmp/err.$tag" >&2; exit 1; }
  [ -f "$tmp/out.ref" ] || cp "$tmp/out.$tag" "$tmp/out.ref"
  cmp -s "$tmp/out.ref" "$tmp/out.$tag" || { echo "bench/cluster: outputs differ ($tag)!" >&2; exit 1; }
  local f=$tmp/err.$tag dec
  dec=$(sed -n 's/^job: .* = \([0-9.]*\) tokens\/s$/\1/p' "$f")
  sed -n 's/^rank \([0-9]*\): sequences [0-9]*, steps [0-9]*, prefill tokens \([0-9]*\), decode tokens \([0-9]*\), \([0-9.]*\) s,.*/\1 \2 \3 \4/p' "$f" > "$tmp/total"
  sed -n 's/^rank \([0-9]*\) layer [0-9]*: sent \([0-9]*\) bytes.*exchange \([0-9.]*\) s,.*/\1 \2 \3/p' "$f" > "$tmp/layers"
  awk -v dec="$dec" -v hosts="$RIG_HOSTS" \
      'FILENAME == ARGV[1] { tok += $2 + $3; t[$1] = $4; if ($4 > tmax) tmax = $4; next }
       { bytes += $2; ex[$1] += $3 }
       END { for (r in t) { se += ex[r] / t[r]; n++ }
             printf "%d\tshm\t0\t%.2f\t%.2f\t%.1f\t%.3f\t-\t-\n", hosts, dec, tok / tmax, 100 * se / n, bytes / tok / 1e6 }' \
      "$tmp/total" "$tmp/layers" >> "$out/cluster.tsv"
  tail -1 "$out/cluster.tsv" | awk -F'\t' '{ printf "  %d ranks on one host (shared memory): decode %s tok/s, job %s tok/s, exchange %s%%\n", $1, $4, $5, $6 }'
}

# serve CAP DELAY: moe-bench against a coordinator running the job over the rig
serve() {
  local cap=$1 delay=$2 tag=$RIG_HOSTS-$1-$2
  local n=32 in=32 outl=32
  [ $quick = 1 ] && n=8
  # shellcheck disable=SC2046
  setsid "$rig" exec "$name" c "$bin/moe-coordinator" --model "$model" --ranks "$RIG_HOSTS" \
      --listen "tcp://$RIG_COORD:5555" --workers "tcp://$RIG_COORD:5556" \
      --curve-secret "$RIG_KEYS/coordinator.key_secret" --worker-key "$RIG_KEYS/job.key" --job-file "$tmp/job" \
      --launch mpirun $(mpi_flags) "$bin/moe-worker" --model "$model" --coordinator '{workers}' --test-xchg-delay-us "$delay" \
        --curve-server-key "$RIG_KEYS/coordinator.key" --curve-secret "$RIG_KEYS/job.key_secret" \
      > "$tmp/coord.out" 2> "$tmp/coord.err" &
  coord_sid=$!
  local i
  for i in $(seq 1 1200); do grep -q "moe-coordinator: ready" "$tmp/coord.out" && break; sleep 0.05; done
  grep -q "moe-coordinator: ready" "$tmp/coord.out" || { echo "bench/cluster: the coordinator never became ready" >&2; tail "$tmp/coord.err" >&2; exit 1; }
  "$rig" exec "$name" c "$bin/moe-bench" --connect "tcp://$RIG_COORD:5555" --metrics-url none --tokenizer "$model" \
      --num-prompts "$n" --random-input-len "$in" --random-output-len "$outl" --ignore-eos --request-rate inf \
      --max-concurrency 16 --disable-tqdm > "$tmp/serve.$tag" 2>&1 ||
    { echo "bench/cluster: moe-bench failed ($tag):" >&2; tail "$tmp/serve.$tag" >&2; exit 1; }
  pkill -TERM -s "$coord_sid" 2>/dev/null || true
  for i in $(seq 1 200); do pgrep -s "$coord_sid" > /dev/null || break; sleep 0.05; done
  coord_sid=""
  awk -v hosts="$RIG_HOSTS" -v cap="$cap" -v delay="$delay" -v n="$n" -F': *' '
    /^Output token throughput/ { otp = $2 } /^Request throughput/ { rtp = $2 }
    /^Mean TTFT/ { ttft = $2 } /^Mean TPOT/ { tpot = $2 } /^P99 ITL/ { itl = $2 }
    END { printf "%d\t%s\t%d\t%d\t%.2f\t%.2f\t%.1f\t%.1f\t%.1f\n", hosts, cap, delay, n, rtp, otp, ttft, tpot, itl }' \
    "$tmp/serve.$tag" >> "$out/serve.tsv"
}

load=$(cut -d' ' -f1-3 /proc/loadavg)
printf 'hosts\tcap\tdelay_us\tdecode_tok_s\tjob_tok_s\texchange_pct\tMB_per_token\tlink_Mbit_s\theld\n' > "$out/cluster.tsv"
printf 'hosts\tcap\tdelay_us\tprompts\treq_s\tout_tok_s\tmean_ttft_ms\tmean_tpot_ms\tp99_itl_ms\n' > "$out/serve.tsv"
echo "bench/cluster: $(basename "$model"), 16 sequences x (32 prompt + 32 generated) per job; load average $load; $(nproc) cores"
for hosts in $hosts_list; do
  "$rig" up "$name" --hosts "$hosts" > /dev/null
  # shellcheck disable=SC1090
  . "/tmp/moe-rig-$name/env"
  "$rig" keys "$name" "$bin" > /dev/null
  shm
  for cap in $caps; do
    "$rig" cap "$name" "$cap"
    for delay in $delays; do decode "$cap" "$delay"; done
  done
  if [ $serve = 1 ]; then
    scap=10gbit; [ $quick = 1 ] && scap=25gbit
    "$rig" cap "$name" "$scap"
    for delay in 0 200; do serve "$scap" "$delay"; done
  fi
  "$rig" down "$name" > /dev/null
done
"$rig" check "$name" > /dev/null || { echo "bench/cluster: the rig was not torn down" >&2; exit 1; }

echo
echo "EP decode (the same tokens in every configuration)"
column -t -s$'\t' "$out/cluster.tsv"
if [ $serve = 1 ]; then
  echo
  echo "serving (moe-bench over ZMQ, $(awk 'NR == 2 { print $4 }' "$out/serve.tsv") requests of 32 + 32 tokens, 16 at a time)"
  column -t -s$'\t' "$out/serve.tsv"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# the plot: decode tok/s and exchange share against the added latency, a line per (hosts, cap)
if command -v gnuplot > /dev/null; then
  awk -F'\t' 'NR > 1 && $2 != "shm" { k = $1 " hosts, " $2; if (!(k in seen)) { seen[k] = ++n; name[n] = k }
                       f = sprintf("'"$tmp"'/plot.%d", seen[k]); print $3, $4, $6 >> f }
              END { for (i = 1; i <= n; i++) print i "\t" name[i] > "'"$tmp"'/plot.keys" }' "$out/cluster.tsv"
  {
    echo "set terminal pngcairo size 1100,560 noenhanced"
    echo "set output '$out/cluster.png'"
    echo "set multiplot layout 1,2 title 'bench/cluster: $(basename "$model"), EP decode across emulated hosts'"
    echo "set xlabel 'added latency per collective (us)'; set grid; set key below"
    plots() {
      local col=$1 sep="plot"
      while IFS=$'\t' read -r i k; do printf "%s '%s' using 1:%d with linespoints title '%s'" "$sep" "$tmp/plot.$i" "$col" "$k"; sep=","; done < "$tmp/plot.keys"
      echo
    }
    echo "set ylabel 'decode tok/s'"; plots 2
    echo "set ylabel 'exchange share of step time (%)'"; plots 3
    echo "unset multiplot"
  } > "$tmp/plot.gp"
  gnuplot "$tmp/plot.gp" 2> "$tmp/plot.err" && echo "plot: $out/cluster.png" ||
    echo "bench/cluster: gnuplot failed: $(head -3 "$tmp/plot.err")" >&2
fi
echo "tables: $out/cluster.tsv $out/serve.tsv"
