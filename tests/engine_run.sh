#!/bin/sh
# moe-run end to end on fixture models: free-running greedy ids equal the
# expected `greedy` line; teacher forcing (-n 0 --logits-from 16) and the
# free-running dump match the expected logits within 3e-5; threads and block
# size do not change a bit (all on the float path, --exact: the F32 tolerance
# is its promise); bad flags and ids fail with a clear message;
# --prompt equals --tokens of the same text's ids; on a Q8_0 model the
# default (int8) path is --int8's bit for bit and not --exact's.
set -eu
BIN=${MOE_BIN:?}; FX=${MOE_FIXTURES:?}; CMP=$1
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
for model in tiny_f32 v2lite_mini_fused_f32 v3_mini_f32; do
  exp=$FX/expected/$model.exact
  vocab=$(sed -n 's/^n_vocab //p' $exp.txt)
  prompt=$(sed -n 's/^prompt //p' $exp.txt | tr ' ' ',')
  greedy=$(sed -n 's/^greedy //p' $exp.txt)
  rows=$(sed -n 's/^rows //p' $exp.txt)
  got=$("$BIN/moe-run" --model $FX/models/$model.gguf --tokens "$prompt" -n "$rows" --ignore-eos --exact \
        --dump-logits $T/free.f32)
  [ "$got" = "$greedy" ] || fail "$model greedy: got '$got' want '$greedy'"
  "$CMP" $T/free.f32 $exp.logits.f32 "$vocab" 3e-5 || fail "$model free-running logits"
  # teacher forcing on the llamacpp tokens
  lexp=$FX/expected/$model.llamacpp
  all="$prompt,$(sed -n 's/^greedy //p' $lexp.txt | cut -d' ' -f1-$((rows - 1)) | tr ' ' ',')"
  "$BIN/moe-run" --model $FX/models/$model.gguf --tokens "$all" -n 0 --logits-from 16 --exact \
      --dump-logits $T/tf.f32 >/dev/null
  "$CMP" $T/tf.f32 $lexp.logits.f32 "$vocab" 3e-5 || fail "$model teacher forcing vs llamacpp"
  # 2 threads and 4-token cache blocks: bitwise the same
  "$BIN/moe-run" --model $FX/models/$model.gguf --tokens "$all" -n 0 --logits-from 16 --exact \
      --threads 2 --block-size 4 --dump-logits $T/tf2.f32 >/dev/null
  "$CMP" $T/tf.f32 $T/tf2.f32 "$vocab" 0 || fail "$model threads/block size changed logits"
done
# the two activation paths on a Q8_0 model: the default is the int8 one
# (--int8 is a no-op alias), --exact another (the float path)
Q=$FX/models/tiny_q8_0.gguf
qall=$(sed -n 's/^prompt //p' $FX/expected/tiny_q8_0.exact.txt | tr ' ' ',')
"$BIN/moe-run" --model $Q --tokens "$qall" -n 4 --ignore-eos --dump-logits $T/qd.f32 >/dev/null
"$BIN/moe-run" --model $Q --tokens "$qall" -n 4 --ignore-eos --int8 --dump-logits $T/qi.f32 >/dev/null
"$BIN/moe-run" --model $Q --tokens "$qall" -n 4 --ignore-eos --exact --dump-logits $T/qe.f32 >/dev/null
cmp -s $T/qd.f32 $T/qi.f32 || fail "the default path is not --int8's"
cmp -s $T/qd.f32 $T/qe.f32 && fail "--exact gave the default path's logits"
M=$FX/models/tiny_f32.gguf
check_err() { # expected message fragment, then args
  want=$1; shift
  if "$BIN/moe-run" "$@" >$T/out 2>$T/err; then fail "moe-run $* succeeded"; fi
  grep -q -- "$want" $T/err || { cat $T/err; fail "moe-run $*: message lacks '$want'"; }
}
check_err "unknown flag --bogus" --model $M --tokens 1 --bogus
check_err "--model is required" --tokens 1
check_err "give one of --tokens, --prompt and --chat" --model $M -n 2
check_err "give one of --tokens, --prompt and --chat" --model $M --tokens 1 --prompt hi
check_err "give one of --tokens, --prompt and --chat" --model $M --tokens 1 --chat x.json
check_err "id 300 is not in 0..299" --model $M --tokens 1,300
check_err "--tokens: id 2 (.x.) is not a token id" --model $M --tokens 1,x
check_err "--tokens" --model $M --tokens 1,,2
check_err "--threads" --model $M --tokens 1 --threads 0
check_err "--logits-from needs -n 0" --model $M --tokens 1,2 --logits-from 1
check_err "past the 2 given tokens" --model $M --tokens 1,2 -n 0 --logits-from 3
check_err "No such file" --model $T/nope.gguf --tokens 1
"$BIN/moe-run" --help | grep -q -- "--dump-logits" || fail "--help"
# sampling is a pure function of the seed
a=$("$BIN/moe-run" --model $M --tokens 1,2,3 -n 12 --temp 0.9 --top-k 40 --top-p 0.95 --seed 7 --ignore-eos)
b=$("$BIN/moe-run" --model $M --tokens 1,2,3 -n 12 --temp 0.9 --top-k 40 --top-p 0.95 --seed 7 --ignore-eos --threads 2)
[ "$a" = "$b" ] || fail "same seed, different samples: '$a' vs '$b'"
# cache bytes after 100 tokens: 100 × layers(2) × (32 + 8) × 4 rounded up to blocks of 16 = 112 tokens
"$BIN/moe-run" --model $M --tokens 1 -n 101 --ignore-eos --stats >/dev/null 2>$T/st
grep -q "cache: 35840 bytes in use (101 tokens" $T/st || { cat $T/st; fail "cache bytes"; }
# --prompt tokenizes with the model's tokenizer (BOS added as the file says)
if [ -x "$BIN/moe-tokenize" ]; then
  ids=$(printf 'hello world' | "$BIN/moe-tokenize" -m $M --bos | tr ' ' ',')
  a=$("$BIN/moe-run" --model $M --prompt 'hello world' -n 6 --ignore-eos)
  b=$("$BIN/moe-run" --model $M --tokens "$ids" -n 6 --ignore-eos)
  [ "$a" = "$b" ] || fail "--prompt vs --tokens: '$a' vs '$b'"
fi
"$BIN/moe-run" --model $M --prompt 'hello' -n 4 --ignore-eos --text >/dev/null || fail "--text"
# named intermediates (--dump-tensors) are written
"$BIN/moe-run" --model $M --tokens 1,2,3 -n 1 --dump-tensors $T/t.bin >/dev/null || fail "--dump-tensors"
[ -s $T/t.bin ] || fail "--dump-tensors wrote nothing"
echo "engine_run: all checks passed"
