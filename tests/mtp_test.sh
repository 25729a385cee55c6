#!/bin/sh
# mtp_test.sh MTP_DUMP MTP_REF — a V3-style model with one MTP block
# (moe-mkmodel --preset v3-mini --mtp 1, F32): the engine's trunk and MTP
# draft rows on the float path within 2e-3 of the float64 reference (in
# practice ~1e-6); the MTP step's pieces bitwise its whole on both paths
# (mtp_dump's own checks).  Then speculative decoding (moe-run --mtp), on the F32
# model and a Q8_0 one (the int8 path's tiles), with --repack and 3 threads,
# penalties and min_tokens, and a stop token: the
# ids and every logits row bitwise those without it, greedy and sampled, on
# both paths, with the MTP block's own drafts and at acceptance 0, 0.5 and
# 1 (--test-mtp-accept), whose counts are checked (none, some, all).
set -eu
dump=$1 ref=$2
bin=${MOE_BIN:?MOE_BIN not set}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-mtp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$bin/moe-mkmodel" --preset v3-mini --type f32 --mtp 1 -o "$tmp/m.gguf" 2>/dev/null
toks=0,17,42,99,150,260,7,33,201,5,211,77,12,290,64,128,3,9,27,81,243,100,300,111,222,333,44,55,66,77,88,99,1,2,3,4,5
mkdir -p "$tmp/f" "$tmp/i"
"$dump" "$tmp/m.gguf" "$tmp/f" "$toks" exact
/usr/bin/python3 "$ref" compare "$tmp/m.gguf" "$tmp/f" "$toks" 2e-3
"$dump" "$tmp/m.gguf" "$tmp/i" "$toks" int8
echo "ok: MTP draft rows match the float64 reference"
"$bin/moe-mkmodel" --preset v3-mini --type q8_0 --mtp 1 -o "$tmp/q.gguf" 2>/dev/null
for model in m q; do
  run="$bin/moe-run --model $tmp/$model.gguf --tokens $toks -n 24"
  for flags in "--ignore-eos" "--ignore-eos --repack --threads 3" "--ignore-eos --mtp-draft 3" \
      "--ignore-eos --exact --temp 0.9 --seed 4 --repeat-penalty 1.2 --mtp-draft 4" \
      "--ignore-eos --temp 0.9 --seed 5 --repeat-penalty 1.3 --repeat-last-n 16 --min-tokens 6" \
      "--ignore-eos --exact" "--ignore-eos --exact --temp 1.1 --top-k 30 --seed 2" "stop"; do
    if [ "$flags" = stop ]; then
      # a stop token the run emits (its 6th), EOS counting too: the sequence
      # ends on a draft step's first or second row
      stop=$($run --ignore-eos | awk '{ print $6 }')
      flags="--stop $stop"
    fi
    base=$(echo "$flags" | sed 's/--mtp-draft [0-9]//') # the run without MTP
    # shellcheck disable=SC2086
    $run $base --dump-logits "$tmp/a.f32" > "$tmp/a.txt"
    for acc in own 0 0.5 1; do
      knob=""
      [ "$acc" = own ] || knob="--test-mtp-accept $acc"
      # shellcheck disable=SC2086
      $run $flags --mtp $knob --stats --dump-logits "$tmp/b.f32" > "$tmp/b.txt" 2> "$tmp/b.err"
      cmp -s "$tmp/a.txt" "$tmp/b.txt" || { echo "FAIL: $model '$flags' --mtp ($acc): ids differ"; exit 1; }
      cmp -s "$tmp/a.f32" "$tmp/b.f32" || { echo "FAIL: $model '$flags' --mtp ($acc): logits rows differ"; exit 1; }
      line=$(grep '^mtp: ' "$tmp/b.err") || { echo "FAIL: no mtp line"; cat "$tmp/b.err"; exit 1; }
      d=$(echo "$line" | awk '{ print $2 }') a=$(echo "$line" | awk '{ print $4 }')
      case $flags in --stop*) min=1 ;; *) min=10 ;; esac
      case $acc in
        0) [ "$a" = 0 ] && [ "$d" -ge "$min" ] ;;
        0.5) [ "$a" -gt 0 ] && [ "$a" -lt "$d" ] || [ "$min" = 1 ] ;;
        # with a stop, the last draft may follow the stop token (never used)
        1) { [ "$a" = "$d" ] || { [ "$min" = 1 ] && [ "$a" = $((d - 1)) ]; }; } && [ "$d" -ge 1 ] ;;
        own) [ "$d" -ge "$min" ] ;;
      esac || { echo "FAIL: $model '$flags' --mtp ($acc): $line"; exit 1; }
    done
    echo "ok: $model '$flags': ids and every row bitwise without MTP at acceptance own/0/0.5/1 ($line)"
  done
done
# decompress_min 2 would give a 2-token step another attention path: refused
if "$bin/moe-run" --model "$tmp/m.gguf" --tokens "$toks" -n 4 --exact --decompress-min 2 --mtp > /dev/null 2> "$tmp/e"; then
  echo "FAIL: --decompress-min 2 --mtp ran"; exit 1
fi
grep -q "decompress_min 2" "$tmp/e" || { echo "FAIL: $(cat "$tmp/e")"; exit 1; }
# and 3 with two drafts a step (a 3-token step)
if "$bin/moe-run" --model "$tmp/m.gguf" --tokens "$toks" -n 4 --exact --decompress-min 3 --mtp --mtp-draft 2 > /dev/null 2> "$tmp/e"; then
  echo "FAIL: --decompress-min 3 --mtp --mtp-draft 2 ran"; exit 1
fi
grep -q "decompress_min 2..3" "$tmp/e" || { echo "FAIL: $(cat "$tmp/e")"; exit 1; }
# decompress_min 1 (every step decompresses) and --batch 1 (one-token prompt chunks) keep the bits
for flags in "--exact --decompress-min 1" "--batch 1"; do
  # shellcheck disable=SC2086
  "$bin/moe-run" --model "$tmp/m.gguf" --tokens "$toks" -n 12 --ignore-eos $flags --dump-logits "$tmp/a.f32" > "$tmp/a.txt"
  # shellcheck disable=SC2086
  "$bin/moe-run" --model "$tmp/m.gguf" --tokens "$toks" -n 12 --ignore-eos $flags --mtp --test-mtp-accept 0.5 \
      --dump-logits "$tmp/b.f32" > "$tmp/b.txt"
  cmp -s "$tmp/a.txt" "$tmp/b.txt" && cmp -s "$tmp/a.f32" "$tmp/b.f32" || { echo "FAIL: '$flags' --mtp differs"; exit 1; }
done
echo "ok: --decompress-min 2 refused with --mtp; --decompress-min 1 and --batch 1 bitwise"
