#!/bin/sh
# moe-mkmodel --recode against llama-quantize: re-encoding the F32 fixture
# kq_v3_f32.gguf to each of the 12 llama-quantize file types must give the
# fixture kq_v3_<type>.gguf byte for byte (keys, tensor order and types,
# every quantized block).  Optional arguments: the file types to check
# (default: all 12).
set -eu
BIN=${MOE_BIN:?}
Q=${MOE_FIXTURES:?}/quant/models
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
[ -f "$Q/kq_v3_f32.gguf" ] || fail "fixture $Q/kq_v3_f32.gguf missing"
types=${*:-"q8_0 q4_k_m q5_k_m q6_k q3_k_m q2_k iq4_xs q4_0 q4_1 q5_0 q5_1 iq4_nl"}
n=0
for t in $types; do
  "$BIN/moe-mkmodel" --recode "$Q/kq_v3_f32.gguf" --type $t --threads 2 -o "$T/$t.gguf" 2>"$T/err" ||
    { cat "$T/err"; fail "$t: moe-mkmodel failed"; }
  cmp "$T/$t.gguf" "$Q/kq_v3_$t.gguf" || fail "$t: differs from llama-quantize's kq_v3_$t.gguf"
  n=$((n + 1))
done
# Upper case works too (llama-quantize spells them so).
"$BIN/moe-mkmodel" --recode "$Q/kq_v3_f32.gguf" --type Q4_K_M --threads 2 -o "$T/up.gguf" 2>/dev/null
cmp -s "$T/up.gguf" "$Q/kq_v3_q4_k_m.gguf" || fail "--type Q4_K_M differs from q4_k_m"
# Unknown types and unsupported sources are refused with a message.
if "$BIN/moe-mkmodel" --recode "$Q/kq_v3_f32.gguf" --type iq2_xxs -o "$T/x.gguf" 2>"$T/err"; then
  fail "--type iq2_xxs accepted"
fi
grep -q "unknown weight type 'iq2_xxs'" "$T/err" || { cat "$T/err"; fail "no message for --type iq2_xxs"; }
if "$BIN/moe-mkmodel" --recode "$Q/kq_v3_q4_k_m.gguf" --type q8_0 -o "$T/x.gguf" 2>"$T/err"; then
  fail "a quantized source was accepted"
fi
grep -q "is q6_K; only f32, f16, bf16 and q8_0 can be re-encoded" "$T/err" || { cat "$T/err"; fail "no message for a quantized source"; }
[ ! -e "$T/x.gguf" ] && [ ! -e "$T/x.gguf.tmp" ] || fail "a refused recode left a file behind"
echo "quant_recode: $n file types reproduce llama-quantize byte for byte"
