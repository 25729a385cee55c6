#!/bin/sh
# Engine tests on models made by moe-mkmodel:
#  - a BF16 model and its F32 recode (the same bf16-representable weights)
#    give bitwise-identical logits;
#  - a file with one MTP block gives the same logits as the file without
#    (same seed: same trunk weights), and the engine never binds it;
#  - the latent cache after 100 tokens holds the formula's bytes
#    (100 × layers × (kv_lora + qk_rope) × 4, rounded up to whole blocks).
set -eu
BIN=${MOE_BIN:?}; CMP=$1
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
MK="$BIN/moe-mkmodel"
[ -x "$MK" ] || fail "moe-mkmodel not built"
TOK=0,17,42,99,150,260,7,33,201,5,211,77,12,290,64,128,3,9,27,81
for gating in sigmoid softmax; do
  "$MK" --preset v3-mini --gating $gating --type bf16 --seed 11 --threads 1 -o $T/bf16.gguf >/dev/null
  "$MK" --recode $T/bf16.gguf --type f32 --threads 1 -o $T/f32.gguf >/dev/null
  "$BIN/moe-run" --model $T/bf16.gguf --tokens $TOK -n 0 --logits-from 8 --dump-logits $T/a.f32 >/dev/null
  "$BIN/moe-run" --model $T/f32.gguf --tokens $TOK -n 0 --logits-from 8 --dump-logits $T/b.f32 >/dev/null
  "$CMP" $T/a.f32 $T/b.f32 400 0 || fail "$gating: bf16 vs f32 recode logits differ"
done
for mla in split fused; do
  "$MK" --preset v2lite-mini --mla $mla --mtp 0 --seed 3 --threads 1 -o $T/nomtp.gguf >/dev/null
  "$MK" --preset v2lite-mini --mla $mla --mtp 1 --seed 3 --threads 1 -o $T/mtp.gguf >/dev/null
  "$BIN/moe-run" --model $T/nomtp.gguf --tokens $TOK -n 8 --ignore-eos --dump-logits $T/a.f32 >$T/a.txt
  "$BIN/moe-run" --model $T/mtp.gguf --tokens $TOK -n 8 --ignore-eos --dump-logits $T/b.f32 >$T/b.txt
  cmp -s $T/a.txt $T/b.txt || fail "$mla: MTP file generates different tokens"
  "$CMP" $T/a.f32 $T/b.f32 400 0 || fail "$mla: MTP file gives different logits"
done
# cache bytes: v3-mini has 4 layers, kv_lora 64, qk_rope 16
"$MK" --preset v3-mini --seed 2 --threads 1 -o $T/v3.gguf >/dev/null
for bs in 16 4 7; do
  "$BIN/moe-run" --model $T/v3.gguf --tokens 1 -n 100 --ignore-eos --stats --block-size $bs >/dev/null 2>$T/st
  want=$(( (100 + bs - 1) / bs * bs * 4 * (64 + 16) * 4 ))
  grep -q "cache: $want bytes in use (100 tokens" $T/st || { cat $T/st; fail "cache bytes (block $bs), want $want"; }
done
echo "engine_mkmodel: all checks passed"
