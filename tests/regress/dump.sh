#!/bin/sh
# Regression data: the logits (and seeded samples) that a build gives for
# every fixture model, per kernel set.  Written once from the build before
# the issue-9 reshape (tests/data/regress/); regress_check.sh (ctest
# regress_logits) compares a later build against it bit for bit.
#   dump.sh BIN_DIR OUT_DIR KSET [RUN_FLAGS...]
# KSET names the files; RUN_FLAGS select that kernel set for moe-run.  The
# tf, tf5 and sample files are the float path (--exact, the default when
# they were written), the int8 files the int8 path (--int8, now the default).
set -eu
BIN=$1; OUT=$2; KSET=$3; shift 3
FX=${MOE_FIXTURES:-$(dirname "$0")/../../../shared/fixtures}
mkdir -p "$OUT"
for model in tiny_f32 tiny_f16 tiny_q8_0 v2lite_mini_f32 v2lite_mini_fused_f32 v3_mini_f32 v3_mini_q8_0; do
  exp=$FX/expected/$model.llamacpp.txt
  prompt=$(sed -n 's/^prompt //p' "$exp" | tr ' ' ',')
  rows=$(sed -n 's/^rows //p' "$exp")
  all="$prompt,$(sed -n 's/^greedy //p' "$exp" | cut -d' ' -f1-$((rows - 1)) | tr ' ' ',')"
  m=$FX/models/$model.gguf
  # teacher-forced logits: one prefill chunk, and chunks of 5 tokens
  "$BIN/moe-run" --model "$m" --tokens "$all" -n 0 --logits-from 16 --exact "$@" \
      --dump-logits "$OUT/$model.$KSET.tf.f32" >/dev/null
  "$BIN/moe-run" --model "$m" --tokens "$all" -n 0 --logits-from 16 --batch 5 --exact "$@" \
      --dump-logits "$OUT/$model.$KSET.tf5.f32" >/dev/null
  case $model in *q8_0)
    "$BIN/moe-run" --model "$m" --tokens "$all" -n 0 --logits-from 16 --int8 "$@" \
        --dump-logits "$OUT/$model.$KSET.int8.f32" >/dev/null ;;
  esac
  # seeded sampling: ids and their logits
  "$BIN/moe-run" --model "$m" --tokens "$prompt" -n 24 --temp 0.8 --top-k 40 --top-p 0.9 \
      --min-p 0.01 --repeat-penalty 1.1 --seed 5 --ignore-eos --exact "$@" \
      --dump-logits "$OUT/$model.$KSET.sample.f32" >"$OUT/$model.$KSET.sample.ids"
done
