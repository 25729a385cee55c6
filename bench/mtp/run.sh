#!/usr/bin/env bash
# bench/mtp — MTP speculative decoding: single-sequence decode speed
# (moe-run --stats) without MTP, with the MTP block's own drafts (a
# random-weight model's drafts are almost never right: this is the cost
# at ~0% acceptance), and at chosen acceptance rates (--test-mtp-accept F:
# a first pass without MTP records the tokens, then a fraction F of the
# drafts is the right token and the rest a wrong one; the MTP block still
# runs, so its cost counts).  Every configuration runs once a round, in
# turn, for several rounds; the table gives the median tokens/s of each,
# the median of the rounds' own ratios to "no MTP" beside it, and the
# acceptance the run reported.  The output ids are the same in every run
# (checked: MTP never changes a token).
#
#   bench/mtp/run.sh [--model FILE] [--rounds N] [--tokens N] [--threads N] [--rates LIST]
#                    [--drafts LIST] [--quick]
#
# Defaults: models/bench_mtp.gguf (moe-mkmodel --preset bench --mtp 1,
# made once), 5 rounds, 128 generated tokens after a 32-token prompt,
# 2 threads, rates 0,0.5,0.8,0.9, drafts a step 1 (--drafts 1,2,3: each
# configuration with MTP at each count; with K drafts a step and rate F
# each draft is right with probability F, so a step accepts i drafts with
# probability F^i(1-F)).  --quick: a tiny model, 1 round, 32 tokens.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${MOE_BIN:-$root/build/release/bin}
model="" rounds=5 ntok=128 threads=2 rates=0,0.5,0.8,0.9 drafts=1 quick=0
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --tokens) ntok=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --drafts) drafts=$2; shift 2 ;;
    --quick) quick=1; rounds=1; ntok=32; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench/mtp: unknown argument $1" >&2; exit 2 ;;
  esac
done
for v in "$rounds" "$ntok" "$threads"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "bench/mtp: '$v' is not a positive count" >&2; exit 2; }
done
[[ $rates =~ ^[0-9.]+(,[0-9.]+)*$ ]] || { echo "bench/mtp: --rates '$rates' is not a list of fractions" >&2; exit 2; }
[[ $drafts =~ ^[1-4](,[1-4])*$ ]] || { echo "bench/mtp: --drafts '$drafts' is not a list of 1..4" >&2; exit 2; }
[ -x "$bin/moe-run" ] || { echo "bench/mtp: build first (scripts/build.sh release)" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-bench-mtp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if [ -z "$model" ]; then
  if [ $quick = 1 ]; then
    model=$tmp/tiny.gguf
    "$bin/moe-mkmodel" --preset v3-mini --mtp 1 -o "$model" 2>/dev/null
  else
    # shellcheck source=../lib/moe.sh
    . "$root/bench/lib/moe.sh"
    model=$(MOE_BIN=$bin moe_bench_model q8_0 mtp) || exit 1
  fi
fi
cat "$model" > /dev/null # paged in once, before any timed run
prompt=$(seq 100 131 | paste -sd, -)
configs=("none")
IFS=, read -r -a rl <<< "$rates"
IFS=, read -r -a kl <<< "$drafts"
for k in "${kl[@]}"; do
  configs+=("own/$k")
  for r in "${rl[@]}"; do configs+=("$r/$k"); done
done

echo "== model: $model; a 32-token prompt, $ntok tokens generated (ignore EOS), $threads threads, $rounds rounds"
echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$tmp/all"
for round in $(seq 1 "$rounds"); do
  for c in "${configs[@]}"; do
    flags=()
    case $c in
      none) ;;
      own/*) flags=(--mtp --mtp-draft "${c#own/}") ;;
      *) flags=(--mtp --mtp-draft "${c#*/}" --test-mtp-accept "${c%/*}") ;;
    esac
    "$bin/moe-run" --model "$model" --tokens "$prompt" -n "$ntok" --ignore-eos --threads "$threads" --stats \
        "${flags[@]}" > "$tmp/out" 2> "$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
    if [ "$c" = none ]; then cp "$tmp/out" "$tmp/want"; fi
    cmp -s "$tmp/out" "$tmp/want" || { echo "bench/mtp: $c: the ids differ from the run without MTP" >&2; exit 1; }
    tps=$(sed -n 's/^decode: .* = \([0-9.]*\) tokens\/s$/\1/p' "$tmp/err")
    acc=$(sed -n 's/^mtp: \([0-9]*\) drafts, \([0-9]*\) accepted.*/\1 \2/p' "$tmp/err")
    echo "$round $c $tps ${acc:-0 0}" >> "$tmp/all"
    read -r nd na <<< "${acc:-0 0}"
    printf 'round %d %-7s %8.2f tokens/s  (%s of %s drafts accepted)\n' "$round" "$c" "$tps" "$na" "$nd"
  done
done
python3 - "$tmp/all" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
order = list(dict.fromkeys(r[1] for r in rows))
by = {c: [r for r in rows if r[1] == c] for c in order}
base = {r[0]: float(r[2]) for r in by["none"]}
med = statistics.median
print(f"{'config':<40} {'tokens/s':>9} {'x no MTP':>9} {'accepted':>9}")
for c in order:
    tps = [float(r[2]) for r in by[c]]
    ratios = [float(r[2]) / base[r[0]] for r in by[c]]
    d, a = sum(int(r[3]) for r in by[c]), sum(int(r[4]) for r in by[c])
    if c == "none":
        name = "no MTP"
    else:
        f, k = c.split("/")
        name = f"MTP x{k}, " + ("its own drafts" if f == "own" else f"--test-mtp-accept {f}")
    acc = f"{100 * a / d:.1f}%" if d else "-"
    print(f"{name:<40} {med(tps):>9.2f} {med(ratios):>9.3f} {acc:>9}")
PY
