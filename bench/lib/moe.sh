# bench/lib/moe.sh — the moe engine side of the benchmarks, sourced by
# bench/*/run.sh (bash) after bench/lib/llamacpp.sh (for bench_median).
#
#   moe_engine_cases MODEL REPS OUT 'S:P:G' ...
#        runs bench-decode --case for both activation paths (float, the
#        --exact one, and int8, the default; $MOE_BENCH_ACTS=all adds int8rp,
#        int8 with --repack), --reps REPS, 2 threads ($MOE_THREADS), with the
#        read bandwidth measured first; its output goes to OUT, its errors
#        to OUT.err.  Returns bench-decode's status.
#   moe_case_median OUT ACT S P G prefill|decode
#        median tokens/s of that case's runs in OUT ("%.2f"), or "failed"
#   moe_case_samples OUT ACT S P G prefill|decode
#        the tokens/s of each of those runs, one a line
#   moe_case_bw_pct OUT ACT S P G BPT
#        the median over that case's runs of decode_tps x BPT (bytes per
#        decoded token) / bw_gbs (the read bandwidth bench-decode measured
#        around that run), as "%.0f%%"; "-" without bw_gbs figures
#   moe_round_ratio ACT S P G prefill|decode LLAMA_SAMPLES OUT...
#        one OUT a round (bench-decode's output of that round, in order)
#        and LLAMA_SAMPLES llama.cpp's figure of each round
#        (blank-separated): the median over the rounds of moe's figure over
#        llama.cpp's of the same round, "%.2fx" (the machine's speed drifts
#        over a run: each round's pair ran minutes apart at most); a round
#        where either side has no number is left out; "-" when none is left
#   moe_info OUT kernels|prefetch|bytes_per_token|bandwidth_gbs|file_bytes
#        one value bench-decode printed, or nothing
#   moe_best_bandwidth OUT
#        the highest bandwidth_gbs line in OUT (several runs' outputs
#        together: the strictest roofline), or nothing
#   moe_bench_model [TYPE] [mtp]
#        path of the bench model of weight type TYPE (default q8_0):
#        models/bench.gguf (moe-mkmodel --preset bench) or
#        models/bench_TYPE.gguf (--type TYPE), with mtp bench[_TYPE]_mtp.gguf
#        (--mtp 1: one MTP block), made once under the tree's
#        models/ (git-ignored; minutes); status 1 and the reason on stderr
#        when moe-mkmodel cannot make it
#   moe_page_cache_drop FILE
#        writes FILE's dirty pages and drops its pages from the page
#        cache (not needing root; pages another process maps stay), so
#        that the next read brings it in as the engine's mapping asks:
#        2 MiB pages (core/gguf.c).  A file just written (moe-mkmodel) is
#        cached in 4 KiB pages, which its readers would map as they are.
#   moe_model_vocab MODEL
#        the vocabulary size (deepseek2.vocab_size, else the token list's
#        length); status 1 and a message when the file has neither
#   moe_model_shape MODEL
#        "n_expert n_used routed_bytes dense_params routed_params" of the
#        trunk (MTP blocks left out), from moe-gguf's tensor list:
#        routed_* are the *_exps tensors of every layer together,
#        dense_params the elements of every other matrix a token multiplies
#        (attention, dense FFN, gate, shared experts; not token_embd, not
#        output: prefill computes logits for one position)
#   moe_step_bytes BPT SHAPE B [RANKS] [DISTINCT]
#        bytes one decode step of B sequences reads on RANKS ranks
#        (default 1): BPT (bench-decode's bytes_per_token: the dense part
#        plus n_used/n_expert of the routed bytes) with the routed share
#        replaced by DISTINCT of n experts a layer (measured, e.g.
#        job_distinct) or, without it, by the expected distinct experts of
#        B tokens, n (1 - (1 - k/n)^B) (routing independent and uniform; a
#        skewed or group-limited router visits fewer), and the dense part
#        read once a rank
#   moe_distinct_expected SHAPE B
#        that expectation, "%.1f"
#   moe_prefill_ops SHAPE
#        operations a prompt token needs: 2 (dense_params + k/n routed_params)
#   bench_roof_tps GOPS_OR_GBS UNITS_PER_TOKEN [TOKENS]
#        TOKENS (default 1) x 1e9 x the first over the second, "%.2f"
#   bench_ratio A B      A / B as "1.23x", or "-" when either is not a number
#   bench_pct A B        100 A / B as "45%", or "-"
#   bench_cell A ROOF    "A (45%)" when ROOF is a number, else "A"
#
# $MOE_BIN is the moe build's bin/ (default build/release/bin).

MOE_THREADS=${MOE_THREADS:-2}
MOE_ROOT=${MOE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
MOE_BIN=${MOE_BIN:-$MOE_ROOT/build/release/bin}

moe_bench_model() { # [type] [mtp]
  local t=${1:-q8_0} f ty=()
  f=$MOE_ROOT/models/bench.gguf
  [ "$t" = q8_0 ] || f=$MOE_ROOT/models/bench_$t.gguf ty=(--type "$t")
  [ "${2:-}" = mtp ] && f=${f%.gguf}_mtp.gguf ty+=(--mtp 1)
  if [ ! -f "$f" ]; then
    mkdir -p "$MOE_ROOT/models"
    echo "making $f (moe-mkmodel --preset bench ${ty[*]}; minutes)" >&2
    local log
    if ! log=$("$MOE_BIN/moe-mkmodel" --preset bench "${ty[@]}" -o "$f.part" 2>&1); then
      rm -f "$f.part"
      echo "moe-mkmodel cannot make it: $(grep -m1 . <<< "$log")" >&2
      return 1
    fi
    mv "$f.part" "$f"
  fi
  echo "$f"
}

moe_page_cache_drop() { # file
  sync "$1" 2> /dev/null # (a read-only file has nothing to write; some file systems refuse)
  dd if="$1" iflag=nocache count=0 status=none
}

moe_model_vocab() { # model
  local meta v
  if ! meta=$("$MOE_BIN/moe-gguf" "$1" 2>&1); then
    echo "cannot read $1: $(grep -m1 . <<< "$meta")" >&2
    return 1
  fi
  v=$(awk '$1 == "deepseek2.vocab_size" { v = $3 } $1 == "tokenizer.ggml.tokens" { t = $3 }
           END { print v != "" ? v : t }' <<< "$meta")
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "$1: no vocabulary size" >&2; return 1; }
  echo "$v"
}

moe_model_shape() { # model
  local meta s
  if ! meta=$("$MOE_BIN/moe-gguf" "$1" 2>&1); then
    echo "cannot read $1: $(grep -m1 . <<< "$meta")" >&2
    return 1
  fi
  # tensor rows: "  #  name  type  d0 x d1 [x d2]  offset  bytes"
  s=$(awk '
    $1 == "deepseek2.block_count" { nb = $3 }
    $1 == "deepseek2.nextn_predict_layers" { mtp = $3 }
    $1 == "deepseek2.expert_count" { ne = $3 }
    $1 == "deepseek2.expert_used_count" { nu = $3 }
    $1 == "tensors:" { in_t = 1; next }
    in_t && $1 ~ /^[0-9]+$/ && NF >= 6 {
      name = $2; el = 1; dims = 0
      for (i = 4; i <= NF - 2; i++) if ($i != "x") { el *= $i; dims++ }
      layer = -1
      if (name ~ /^blk\.[0-9]+\./) { split(name, p, "."); layer = p[2] + 0 }
      if (layer >= 0 && nb != "" && layer >= nb - mtp) next
      if (name ~ /_exps\./) { rb += $NF; rp += el; next }
      if (dims >= 2 && layer >= 0) dp += el
    }
    END {
      if (ne + 0 < 1 || nu + 0 < 1 || nu + 0 > ne + 0 || rb + 0 <= 0) exit 1
      printf "%d %d %.0f %.0f %.0f\n", ne, nu, rb, dp, rp
    }' <<< "$meta") || { echo "$1: no routed experts (expert_count, expert_used_count, *_exps tensors)" >&2; return 1; }
  echo "$s"
}

moe_step_bytes() { # bpt "shape" b [ranks] [distinct]
  local ne nu rb
  read -r ne nu rb _ _ <<< "$2"
  awk -v bpt="$1" -v ne="$ne" -v nu="$nu" -v rb="$rb" -v b="$3" -v r="${4:-1}" -v d="${5:-}" 'BEGIN {
    dense = bpt - rb * nu / ne
    distinct = d != "" ? d : ne * (1 - (1 - nu / ne) ^ b)
    printf "%.0f\n", r * dense + rb * distinct / ne }'
}

moe_distinct_expected() { # "shape" b
  local ne nu
  read -r ne nu _ _ _ <<< "$1"
  awk -v ne="$ne" -v nu="$nu" -v b="$2" 'BEGIN { printf "%.1f\n", ne * (1 - (1 - nu / ne) ^ b) }'
}

moe_prefill_ops() { # "shape"
  local ne nu dp rp
  read -r ne nu _ dp rp <<< "$1"
  awk -v ne="$ne" -v nu="$nu" -v dp="$dp" -v rp="$rp" 'BEGIN { printf "%.0f\n", 2 * (dp + rp * nu / ne) }'
}

bench_roof_tps() { # rate per_token [tokens]
  if _bench_isnum "$1" && _bench_isnum "$2" && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$1" -v b="$2" -v n="${3:-1}" 'BEGIN { printf "%.2f\n", n * a * 1e9 / b }'
  else
    echo "-"
  fi
}

moe_engine_cases() {
  local model=$1 reps=$2 out=$3 c args=()
  shift 3
  for c in "$@"; do args+=(--case "$c"); done
  "$MOE_BIN/bench-decode" --model "$model" --reps "$reps" --threads "$MOE_THREADS" --act "${MOE_BENCH_ACTS:-both}" --bandwidth \
      "${args[@]}" > "$out" 2> "$out.err"
}

# fields F... (tab-separated, empty when a line lacks one) of each run of
# one case, a line each
_moe_case_fields() { # out act s p g field...
  local out=$1 act=$2 s=$3 p=$4 g=$5
  shift 5
  awk -v act="$act" -v s="$s" -v p="$p" -v g="$g" -v fields="$*" '
        $1 == "case" {
          delete f
          for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
          if (f["act"] == act && f["seqs"] == s && f["prompt"] == p && f["gen"] == g) {
            n = split(fields, w, " ")
            line = f[w[1]]
            for (i = 2; i <= n; i++) line = line "\t" f[w[i]]
            print line
          }
        }' "$out" 2> /dev/null
}

# the runs' figures of one case, one per line
moe_case_samples() { # out act s p g prefill|decode
  _moe_case_fields "$1" "$2" "$3" "$4" "$5" "$6_tps"
}

moe_case_median() { # out act s p g prefill|decode
  local v
  v=$(moe_case_samples "$@" | bench_median)
  echo "${v:-failed}"
}

moe_case_bw_pct() { # out act s p g bpt
  local v
  v=$(_moe_case_fields "$1" "$2" "$3" "$4" "$5" decode_tps bw_gbs |
        awk -F '\t' -v bpt="$6" '$1 != "" && $2 + 0 > 0 { print 100 * $1 * bpt / ($2 * 1e9) }' | bench_median)
  if [ -n "$v" ]; then awk -v v="$v" 'BEGIN { printf "%.0f%%\n", v }'; else echo "-"; fi
}

moe_round_ratio() { # act s p g prefill|decode llama-samples out...
  local act=$1 s=$2 p=$3 g=$4 kind=$5 l=$6 f v ms=""
  shift 6
  for f in "$@"; do
    v=$(moe_case_samples "$f" "$act" "$s" "$p" "$g" "$kind" | sed -n 1p)
    ms+=" ${v:--}"
  done
  # llama.cpp's "not run" and "failed" are words too: one per round
  l=$(sed 's/not run/-/g' <<< "$l")
  awk -v m="$ms" -v l="$l" 'BEGIN { n = split(m, a, " "); k = split(l, b, " ")
    if (n == k) for (i = 1; i <= n; i++)
      if (a[i] ~ /^[0-9.]+$/ && b[i] ~ /^[0-9.]+$/ && b[i] > 0) print a[i] / b[i] }' |
    bench_median | awk 'NF { printf "%.2fx", $1; ok = 1 } END { if (!ok) printf "-" }'
}

moe_best_bandwidth() {
  awk '$1 == "bandwidth_gbs" && $2 + 0 > b + 0 { b = $2 } END { if (b != "") print b }' "$1" 2> /dev/null
}

moe_info() {
  awk -v k="$2" '$1 == k { print $2; exit }' "$1" 2> /dev/null
}

_bench_isnum() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }

bench_ratio() {
  if _bench_isnum "$1" && _bench_isnum "$2" && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx\n", a / b }'
  else
    echo "-"
  fi
}

bench_pct() {
  if _bench_isnum "$1" && _bench_isnum "$2" && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%\n", 100 * a / b }'
  else
    echo "-"
  fi
}

bench_cell() {
  if _bench_isnum "$1" && _bench_isnum "${2:-}"; then
    echo "$1 ($(bench_pct "$1" "$2"))"
  else
    echo "$1"
  fi
}
