#!/usr/bin/env bash
# run_fuzz_gguf.sh FUZZER SEEDER [RUNS] — a bounded, reproducible libFuzzer run
# of the GGUF reader (ctest label "fuzz").
#
# The seed corpus is made at test time in a fresh temporary folder: the
# first 1 KB and the first 16 KB (all of the metadata and tensor infos) of
# each model fixture, and every handcrafted file of the reader's unit test
# (SEEDER --write-seeds DIR).  libFuzzer adds what it finds to that folder;
# nothing is written to the source tree or the fixtures.  On a failure the
# folder (with the crashing input) is kept and its path printed.
set -euo pipefail
fuzzer=$1 seeder=$2 runs=${3:-20000}
: "${MOE_FIXTURES:?MOE_FIXTURES is not set}"

work=$(mktemp -d "${TMPDIR:-/tmp}/moe_fuzz_gguf.XXXXXX")
corpus=$work/corpus
mkdir -p "$corpus"

models="tiny_f32 tiny_f16 tiny_q8_0 v2lite_mini_f32 v2lite_mini_fused_f32 v3_mini_f32 v3_mini_q8_0"
for m in $models; do
  f=$MOE_FIXTURES/models/$m.gguf
  if [ ! -f "$f" ]; then
    echo "fuzz_gguf: missing fixture $f" >&2
    exit 1
  fi
  head -c 1024 "$f" >"$corpus/$m.1k.gguf"
  head -c 16384 "$f" >"$corpus/$m.16k.gguf"
done
"$seeder" --write-seeds "$corpus" >"$work/seeder.log" 2>&1 || {
  cat "$work/seeder.log" >&2
  echo "fuzz_gguf: writing the handcrafted seeds failed; kept $work" >&2
  exit 1
}
n_seeds=$(find "$corpus" -type f | wc -l)
echo "fuzz_gguf: $n_seeds seed files, $runs runs, seed 1"

start=$(date +%s)
if "$fuzzer" -seed=1 -runs="$runs" -max_len=65536 -timeout=20 -rss_limit_mb=4096 \
     -print_final_stats=1 -artifact_prefix="$work/" "$corpus" >"$work/fuzz.log" 2>&1; then
  tail -n 12 "$work/fuzz.log"
  echo "fuzz_gguf: $runs inputs checked in $(( $(date +%s) - start )) s, no failure"
  rm -rf "$work"
else
  rc=$?
  tail -n 60 "$work/fuzz.log" >&2
  echo "fuzz_gguf: FAILED (exit $rc); corpus, log and crashing input kept in $work" >&2
  exit 1
fi
