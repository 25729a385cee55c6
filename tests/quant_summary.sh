#!/bin/sh
# moe-gguf --summary on the quant/ fixtures:
#  - tensors per ggml type equal the table of the fixture README, for all
#    24 files (both models), and the bytes per type add up to the file's
#    tensor bytes;
#  - the bytes per decoded token per rank equal the --help formula computed
#    here from the plain tensor listing (D + X·k/E/N, token_embd one row).
set -eu
BIN=${MOE_BIN:?}
Q=${MOE_FIXTURES:?}/quant/models
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# From quant/README "Files": name, then "type count" pairs.
cat > "$T/want" <<'TABLE'
kq_v3_f32 f32 34
kq_v3_q4_k_m q4_K 18 q6_K 3 q5_0 2 f32 11
kq_v3_q5_k_m q5_K 18 q6_K 3 q5_1 2 f32 11
kq_v3_q6_k q6_K 21 q8_0 2 f32 11
kq_v3_q3_k_m q3_K 15 q4_K 5 q4_0 2 q6_K 1 f32 11
kq_v3_q2_k q2_K 15 q3_K 5 q4_0 2 q6_K 1 f32 11
kq_v3_iq4_xs iq4_xs 20 iq4_nl 2 q6_K 1 f32 11
kq_v3_q4_0 q4_0 22 q6_K 1 f32 11
kq_v3_q4_1 q4_1 22 q6_K 1 f32 11
kq_v3_q5_0 q5_0 22 q6_K 1 f32 11
kq_v3_q5_1 q5_1 22 q6_K 1 f32 11
kq_v3_iq4_nl iq4_nl 22 q6_K 1 f32 11
kq_v3_q8_0 q8_0 23 f32 11
kq_v2lite_q4_k_m q4_K 16 q5_0 2 q8_0 2 q6_K 1 f32 8
kq_v2lite_q5_k_m q5_K 16 q5_1 2 q8_0 2 q6_K 1 f32 8
kq_v2lite_q6_k q6_K 17 q8_0 4 f32 8
kq_v2lite_q3_k_m q3_K 13 q4_K 3 q4_0 2 q5_0 2 q6_K 1 f32 8
kq_v2lite_q2_k q2_K 13 q3_K 3 q4_0 4 q6_K 1 f32 8
kq_v2lite_iq4_xs iq4_xs 16 iq4_nl 4 q6_K 1 f32 8
kq_v2lite_q4_0 q4_0 20 q6_K 1 f32 8
kq_v2lite_q4_1 q4_1 20 q6_K 1 f32 8
kq_v2lite_q5_0 q5_0 20 q6_K 1 f32 8
kq_v2lite_q5_1 q5_1 20 q6_K 1 f32 8
kq_v2lite_iq4_nl iq4_nl 20 q6_K 1 f32 8
TABLE
n=0
while read -r name rest; do
  "$BIN/moe-gguf" --summary "$Q/$name.gguf" > "$T/s" || fail "$name: moe-gguf --summary failed"
  # "    <type> <count> <bytes> bytes" lines, sorted, against the table's pairs
  awk '/^  tensors per type/ {on = 1; next} on && / bytes$/ {print $1, $2} on && !/ bytes$/ {on = 0}' "$T/s" |
    sort > "$T/got"
  echo "$rest" | tr ' ' '\n' | paste -d' ' - - | sort > "$T/exp"
  cmp -s "$T/got" "$T/exp" || { diff "$T/exp" "$T/got"; fail "$name: tensors per type differ from the README"; }
  "$BIN/moe-gguf" "$Q/$name.gguf" > "$T/full"
  total=$(awk '/^tensor bytes:/ {print $3}' "$T/full")
  sum=$(awk '/^  tensors per type/ {on = 1; next} on && / bytes$/ {s += $3} END {print s}' "$T/s")
  [ "$total" = "$sum" ] || fail "$name: bytes per type add up to $sum, the tensors hold $total"
  n=$((n + 1))
done < "$T/want"
[ $n -eq 24 ] || fail "checked $n files, expected 24"

# Bytes per token from the tensor listing: expert_count 10, expert_used_count 4
# (kq_v3) / 9 and 6 (kq_v2lite); vocab 512.
for f in kq_v3_q4_k_m:4:10 kq_v2lite_q3_k_m:6:9; do
  name=${f%%:*}; k=$(echo $f | cut -d: -f2); e=$(echo $f | cut -d: -f3)
  "$BIN/moe-gguf" "$Q/$name.gguf" > "$T/full"
  for ranks in 1 3; do
    want=$(awk -v k=$k -v e=$e -v n=$ranks '
      /^  [0-9]+ / {
        name = $2; bytes = $NF
        if (name ~ /_exps\./) x += bytes
        else if (name == "token_embd.weight") d += bytes / 512
        else d += bytes
      }
      END { printf "%.0f", d + x * k / e / n }' "$T/full")
    got=$("$BIN/moe-gguf" --summary --ranks $ranks "$Q/$name.gguf" | awk '/bytes per decoded token per rank/ {print $7}')
    [ -n "$want" ] && [ "$want" = "$got" ] || fail "$name, $ranks ranks: bytes per token $got, formula gives $want"
  done
done
if "$BIN/moe-gguf" --summary --ranks 0 "$Q/kq_v3_f32.gguf" 2>/dev/null; then fail "--ranks 0 accepted"; fi
echo "quant_summary: $n files' type counts match the README; bytes per token match the formula"
