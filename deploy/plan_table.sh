#!/usr/bin/env bash
# deploy/plan_table.sh [--ctx C] [--seqs S] [--bin DIR]
# The per-node memory table of docs/deploy.md: DeepSeek-V2-Lite and
# DeepSeek-V3 at Q8_0 and Q4_K_M over 2, 4 and 8 nodes, as moe-gguf --plan
# computes it from header-faithful files (moe-mkmodel --sparse: the real
# tensor table, no data written; each file takes a few MB of disk).
# Prints a Markdown table; C and S are moe-worker's --ctx and --max-seqs.
set -euo pipefail
cd "$(dirname "$0")/.."
ctx=8192 seqs=16 bin=build/release/bin
while [ $# -gt 0 ]; do
  case "$1" in
    --ctx) ctx=$2; shift 2 ;;
    --seqs) seqs=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "plan_table.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for p in moe-mkmodel moe-gguf; do
  [ -x "$bin/$p" ] || { echo "plan_table.sh: $bin/$p not found (scripts/build.sh release, or --bin DIR)" >&2; exit 2; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "Per node, GiB (2^30 bytes); --ctx $ctx --seqs $seqs (a node holds $seqs sequences of up to $ctx tokens),"
echo "moe-worker's other defaults (--step-tokens 1024, --threads 1, --block-size 16), contiguous placement."
echo
echo "| model | weights | file GiB | nodes | shared | routed experts | latent cache | work buffers | exchange | total per node |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for model in v2-lite v3; do
  for type in q8_0 q4_k_m; do
    f="$tmp/$model-$type.gguf"
    "$bin/moe-mkmodel" --preset "$model" --type "$type" --sparse -o "$f" 2>/dev/null
    name=$([ "$model" = v3 ] && echo DeepSeek-V3 || echo DeepSeek-V2-Lite)
    tname=$([ "$type" = q8_0 ] && echo Q8_0 || echo Q4_K_M)
    size=$(stat -c %s "$f")
    for n in 2 4 8; do
      # the node with the largest total (placements may be uneven)
      "$bin/moe-gguf" --plan --nodes "$n" --ctx "$ctx" --seqs "$seqs" "$f" |
        awk -v m="$name" -v t="$tname" -v n="$n" -v size="$size" '
          /^  bytes$/ { b = 1; next }
          b && $1 ~ /^[0-9]+$/ && NF == 7 { if ($7 > best) { best = $7; for (i = 2; i <= 7; i++) v[i] = $i } }
          END {
            g = 1073741824
            printf "| %s | %s | %.1f | %d | %.2f | %.2f | %.2f | %.2f | %.2f | **%.2f** |\n",
                   m, t, size / g, n, v[2] / g, v[3] / g, v[4] / g, v[5] / g, v[6] / g, v[7] / g
          }'
    done
  done
done
