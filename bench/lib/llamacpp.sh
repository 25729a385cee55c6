# bench/lib/llamacpp.sh — the llama.cpp side of the benchmarks, sourced by
# bench/*/run.sh (bash).  Nothing is downloaded or built here: the user
# points it at a llama.cpp build of their own (a CMake build dir holding
# bin/llama-bench, or that bin/ dir itself) with --llama-cpp DIR or the
# LLAMA_CPP environment variable.  Without one, every figure is "not run".
#
#   llamacpp_init DIR          find the tools; sets LLAMACPP_OK (1/0) and,
#                              when 0, LLAMACPP_WHY
#   llamacpp_describe MODEL    prints "llama.cpp: commit ..." and its
#                              "system_info: ..." line (the CPU features its
#                              build uses; from llama-completion, or
#                              llama-cli in older builds, if built)
#   llamacpp_tg MODEL N R      decode: llama-bench -p 0 -n N, R repetitions
#   llamacpp_pp MODEL N R      prefill: llama-bench -p N -n 0, R repetitions
#   llamacpp_batched MODEL B PP TG R
#                              aggregate decode of B sequences (each with its
#                              own PP-token prompt, then TG tokens each):
#                              llama-batched-bench's S_TG, R runs
#
#   llamacpp_why_failed [N]    when a figure said "failed": the first line of
#                              llama.cpp's stderr (in $LLAMACPP_LOG from its
#                              line N on, default 1) that reads as an error,
#                              and the workaround of a known one; nothing
#                              otherwise
#   llamacpp_median LIST       the median of a list of figures (one per
#                              round, from the functions below with R = 1):
#                              a number, or "failed" / "not run" when any
#                              of them is
#
# Each figure function prints one word on stdout: the median tokens/s of its
# R repetitions ("%.2f"), "not run" (no llama.cpp given) or "failed" (its
# stderr is kept in $LLAMACPP_LOG).  The samples of every run are appended
# to $LLAMACPP_LOG as "llama.cpp <what>: samples a b c".  Threads:
# $LLAMACPP_THREADS (default 2).  llama.cpp's own defaults otherwise (flash
# attention auto, f16 K/V cache, batch 2048, ubatch 512); $LLAMACPP_ARGS
# (split on blanks) is added to every llama-bench and llama-batched-bench
# command, e.g. "-fa 0".

LLAMACPP_OK=0
LLAMACPP_WHY="not given (--llama-cpp DIR or LLAMA_CPP)"
LLAMACPP_BIN=""
LLAMACPP_THREADS=${LLAMACPP_THREADS:-2}
LLAMACPP_LOG=${LLAMACPP_LOG:-/dev/null}
LLAMACPP_ARGS=${LLAMACPP_ARGS:-}

# median of the numbers on stdin (one or more per line), "%.2f"; nothing in,
# nothing out
bench_median() {
  tr -s ' ,\t' '\n' | awk 'NF { print $1 + 0 }' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) printf "%.2f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

llamacpp_median() {
  case "$1" in
    *failed*) echo failed ;;
    *"not run"*) echo "not run" ;;
    *) echo "$1" | bench_median ;;
  esac
}

llamacpp_why_failed() {
  local l
  l=$(tail -n +"${1:-1}" "$LLAMACPP_LOG" 2>/dev/null | grep -m1 -E 'GGML_ASSERT|[Ee]rror:|: error|terminate called') ||
    return 0
  echo "llama.cpp failed: $l"
  # seen with d32676d77's native build on an AMX Xeon (Sapphire Rapids
  # class), every deepseek2 file: its AMX weight buffers leave an operation
  # no backend takes
  if [[ $l == *'cur_backend_id != -1'* ]] && grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then
    local no_amx='-mno-amx-int8 -mno-amx-tile -mno-amx-bf16'
    echo "  this CPU has AMX: build llama.cpp without it (keeping its other native flags) and point --llama-cpp there:"
    echo "  cmake -B build-noamx -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON" \
         "-DCMAKE_C_FLAGS='$no_amx' -DCMAKE_CXX_FLAGS='$no_amx'"
  fi
}

llamacpp_init() {
  local d=${1:-${LLAMA_CPP:-}}
  LLAMACPP_OK=0 LLAMACPP_BIN=""
  if [ -z "$d" ]; then
    LLAMACPP_WHY="not given (--llama-cpp DIR or LLAMA_CPP)"
    return 0
  fi
  local c
  for c in "$d/bin" "$d"; do
    if [ -x "$c/llama-bench" ]; then LLAMACPP_BIN=$c; break; fi
  done
  if [ -z "$LLAMACPP_BIN" ]; then
    LLAMACPP_WHY="no llama-bench in $d or $d/bin"
    return 0
  fi
  if [ ! -x "$LLAMACPP_BIN/llama-batched-bench" ]; then
    LLAMACPP_WHY="no llama-batched-bench beside $LLAMACPP_BIN/llama-bench"
    LLAMACPP_BIN=""
    return 0
  fi
  LLAMACPP_OK=1 LLAMACPP_WHY=""
}

llamacpp_describe() {
  if [ "$LLAMACPP_OK" != 1 ]; then
    echo "llama.cpp: not run: $LLAMACPP_WHY"
    return 0
  fi
  # its version line (e.g. "version: 10587 (3f545bec)" or, from a build
  # without git, what build-info.cmake was given) and "built with ... for ..."
  local v
  v=$("$LLAMACPP_BIN/llama-batched-bench" --version 2>&1 | tr '\n' ' ' | sed 's/  */ /g; s/ $//')
  echo "llama.cpp: $LLAMACPP_BIN; $v"
  # llama-completion, or llama-cli in builds older than it (2025-12):
  # either prints the line at start; stdin at EOF ends a chat-mode
  # llama-cli, and the timeout anything else that would wait
  local tool
  for tool in llama-completion llama-cli; do
    [ -x "$LLAMACPP_BIN/$tool" ] || continue
    local s
    # every reader here reads its whole input: one that stopped at the line
    # would fail its writer with SIGPIPE, a failed pipeline under pipefail
    s=$(timeout 120 "$LLAMACPP_BIN/$tool" -m "$1" -t "$LLAMACPP_THREADS" -n 1 -p a -no-cnv --no-warmup \
          < /dev/null 2>&1 || true)
    s=$(awk '/system_info:/ && !done { sub(/^.*system_info:/, "system_info:"); sub(/ *$/, ""); print; done = 1 }' <<< "$s")
    echo "llama.cpp ${s:-system_info: ($tool printed none)}"
    return 0
  done
  echo "llama.cpp system_info: unknown (build llama-completion or llama-cli to print it)"
}

# llama-bench, one test; prints the median of its samples_ts
_llamacpp_bench() { # what model p n reps
  local what=$1 model=$2 p=$3 n=$4 reps=$5 out samples
  if [ "$LLAMACPP_OK" != 1 ]; then echo "not run"; return 0; fi
  # shellcheck disable=SC2086 # LLAMACPP_ARGS is split on purpose
  if ! out=$("$LLAMACPP_BIN/llama-bench" -m "$model" -t "$LLAMACPP_THREADS" -p "$p" -n "$n" -r "$reps" \
               -o jsonl $LLAMACPP_ARGS 2>> "$LLAMACPP_LOG"); then
    echo "failed"
    return 0
  fi
  samples=$(printf '%s\n' "$out" | sed -n 's/.*"samples_ts": *\[ *\([^]]*[^] ]\) *\].*/\1/p' | sed -n 1p)
  echo "llama.cpp $what: samples $samples" >> "$LLAMACPP_LOG"
  samples=$(printf '%s\n' "$samples" | bench_median)
  echo "${samples:-failed}"
}

llamacpp_tg() { _llamacpp_bench "tg$2" "$1" 0 "$2" "$3"; }
llamacpp_pp() { _llamacpp_bench "pp$2" "$1" "$2" 0 "$3"; }

llamacpp_batched() { # model B PP TG R
  local model=$1 b=$2 pp=$3 tg=$4 reps=$5 out s all=""
  if [ "$LLAMACPP_OK" != 1 ]; then echo "not run"; return 0; fi
  for _ in $(seq 1 "$reps"); do
    # shellcheck disable=SC2086 # LLAMACPP_ARGS is split on purpose
    if ! out=$("$LLAMACPP_BIN/llama-batched-bench" -m "$model" -t "$LLAMACPP_THREADS" -tb "$LLAMACPP_THREADS" \
                 -c $((b * (pp + tg))) -npp "$pp" -ntg "$tg" -npl "$b" --output-format jsonl $LLAMACPP_ARGS \
                 < /dev/null 2>> "$LLAMACPP_LOG"); then
      echo "failed"
      return 0
    fi
    s=$(printf '%s\n' "$out" | sed -n 's/.*"speed_tg": *\([0-9.eE+-]*\).*/\1/p' | sed -n 1p)
    [ -n "$s" ] || { echo "failed"; return 0; }
    all="$all $s"
  done
  echo "llama.cpp batched B=$b pp$pp tg$tg S_TG: samples$all" >> "$LLAMACPP_LOG"
  echo "$all" | bench_median
}
