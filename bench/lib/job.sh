# shellcheck shell=bash
# bench/lib/job.sh — the worker job side of the benchmarks (moe-worker
# --batch under mpirun), sourced by bench/*/run.sh (bash) after
# bench/lib/moe.sh (for $MOE_BIN and $MOE_ROOT).
#
#   job_batch MODEL OUT NSEQ PROMPT GEN
#        writes a --batch file: NSEQ requests of PROMPT token ids below the
#        model's vocabulary, each generating GEN tokens; the ids are
#        bench-decode's (sequence s, position i: (7919 s + 104729 i + 13)
#        mod vocab), so with greedy decoding the job and bench-decode --case
#        NSEQ:PROMPT:GEN run the same token streams and route alike
#   job_run NP THREADS MODEL BATCH OUT [ARGS...]
#        one job of NP ranks x THREADS threads (tests/mpirun.sh: no core
#        binding, shared memory, a 600 s limit), --ignore-eos --stats; the
#        answers go to OUT, the stderr (the figures) to OUT.err
#   job_tps ERR...
#        the median of the jobs' decode tokens/s ("job: ... = X tokens/s":
#        decode-only steps), "%.2f", or "failed"
#   job_samples ERR...   the same figures, one a line
#   job_exchange ERR
#        "bytes_per_token exchange_pct overlap_pct" of one job: exchange
#        bytes sent per token (every rank, dispatch + combine) and the
#        shares of step time spent exchanging and overlapped with the
#        shared experts (mean over ranks)
#   job_kernels ERR      rank 0's kernel set
#   job_distinct TRACE FROM B
#        from a --trace file: the mean number of distinct routed experts a
#        MoE layer visits in one decode step of B sequences, the steps being
#        the positions >= FROM (every sequence of the batch at the same
#        position, as with prompts of one length) and the groups of B
#        consecutive request numbers; "%.1f", or status 1 when the trace
#        has no such rows
#   job_act_args float|int8|int8rp
#        the moe-worker flags of that activation path, read from its
#        --help: a worker with --exact runs int8 by default and float with
#        --exact; one with --int8 the other way round; one with neither has
#        only the float path (status 1 for int8); int8rp is int8 with
#        --repack (status 1 for a worker without it)

job_batch() { # model out nseq prompt gen
  local v
  v=$(moe_model_vocab "$1") || return 1
  awk -v v="$v" -v n="$3" -v p="$4" -v g="$5" 'BEGIN { for (i = 0; i < n; i++) { s = ""
    for (j = 0; j < p; j++) s = s (j ? "," : "") (i * 7919 + j * 104729 + 13) % v; print s, g } }' > "$2"
}

job_run() { # np threads model batch out [args...]
  local np=$1 th=$2 model=$3 batch=$4 out=$5
  shift 5
  "$MOE_ROOT/tests/mpirun.sh" "$np" 600 "$MOE_BIN/moe-worker" --model "$model" --batch "$batch" --threads "$th" \
      --ignore-eos --stats "$@" > "$out" 2> "$out.err"
}

job_samples() {
  local f
  for f in "$@"; do sed -n 's/^job: .* = \([0-9.]*\) tokens\/s$/\1/p' "$f" 2> /dev/null; done
}

job_tps() {
  local v
  v=$(job_samples "$@" | bench_median)
  echo "${v:-failed}"
}

job_exchange() { # err
  local tok
  tok=$(sed -n 's/^rank [0-9]*: sequences [0-9]*, steps [0-9]*, prefill tokens \([0-9]*\), decode tokens \([0-9]*\),.*/\1 \2/p' "$1" |
        awk '{ t += $1 + $2 } END { print t + 0 }')
  # portable awk: the fields cut out by sed first
  awk -v tok="$tok" '
    FILENAME == ARGV[1] && /^rank [0-9]*: sequences / { r = $2; sub(/:$/, "", r)
      for (i = 1; i <= NF; i++) if ($(i + 1) == "s," && $i ~ /^[0-9.]+$/) total[r] = $i }
    /^rank [0-9]* layer [0-9]*: sent / { r = $2
      for (i = 1; i <= NF; i++) {
        if ($i == "sent") bytes += $(i + 1)
        if ($i == "exchange") ex[r] += $(i + 1)
        if ($i == "overlap") ov[r] += $(i + 1)
      } }
    END { for (r in total) if (total[r] > 0) { se += ex[r] / total[r]; so += ov[r] / total[r]; n++ }
          if (!n || !tok) exit 1
          printf "%.0f %.1f %.1f\n", bytes / tok, 100 * se / n, 100 * so / n }' "$1"
}

job_kernels() { sed -n 's/^rank 0: kernels \([a-z0-9]*\).*/\1/p' "$1" 2> /dev/null | sed -n 1p; }

job_act_args() { # float|int8|int8rp
  local help a
  help=$("$MOE_BIN/moe-worker" --help 2>&1 || true)
  if [ "$1" = int8rp ]; then
    grep -Eq '^ *--repack([ ,]|$)' <<< "$help" || return 1
    a=$(job_act_args int8) || return 1
    echo "${a:+$a }--repack"
    return 0
  fi
  if grep -Eq '^ *--exact([ ,]|$)' <<< "$help"; then
    [ "$1" = float ] && echo "--exact"
  elif grep -Eq '^ *--int8([ ,]|$)' <<< "$help"; then
    [ "$1" = int8 ] && echo "--int8"
  else
    [ "$1" = float ] || return 1
  fi
  return 0
}

job_distinct() { # trace from b
  awk -v from="$2" -v b="$3" '
    # "layer req pos home e1,e2,... w1,w2,... r1,r2,..."
    NF >= 5 && $3 >= from {
      key = $1 " " $3 " " int($2 / b)
      if (!(key in seen)) { seen[key] = 1; groups++ }
      n = split($5, e, ",")
      for (i = 1; i <= n; i++) if (!((key " " e[i]) in hit)) { hit[key " " e[i]] = 1; distinct++ }
    }
    END { if (!groups) exit 1; printf "%.1f\n", distinct / groups }' "$1"
}
