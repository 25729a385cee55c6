#!/usr/bin/env bash
# moe-run --chat and --prompt on a model carrying DeepSeek-V3's tokenizer and
# chat template: the logits equal those of the ids the fixtures give for
# the same conversation (chat.tsv case 1: "0 128803 19923 128804"), and the
# generated text is printed.
set -u
bin=${MOE_BIN:?}; fx=${MOE_FIXTURES:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-run-chat.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin/moe-mkmodel" --preset tiny --type q8_0 --vocab-from "$fx/tokenizer/deepseek-v3-vocab.gguf" -o "$tmp/m.gguf" 2>/dev/null \
  || fail "moe-mkmodel"
want=$(awk -F'\t' '$1 == "deepseek-v3" && $2 == 1 { print $3 }' "$fx/tokenizer/chat.tsv")
[ -n "$want" ] || fail "chat.tsv has no deepseek-v3 case 1"
printf '%s\n' "$want" > "$tmp/c.json"
"$bin/moe-run" --model "$tmp/m.gguf" --chat "$tmp/c.json" -n 0 --dump-logits "$tmp/a.f32" > /dev/null || fail "moe-run --chat"
"$bin/moe-run" --model "$tmp/m.gguf" --tokens 0,128803,19923,128804 -n 0 --dump-logits "$tmp/b.f32" > /dev/null || fail "moe-run --tokens"
cmp -s "$tmp/a.f32" "$tmp/b.f32" || fail "--chat did not give the ids 0 128803 19923 128804"
text=$("$bin/moe-run" --model "$tmp/m.gguf" --chat "$tmp/c.json" -n 6 --text --ignore-eos) || fail "moe-run --chat --text"
[ -n "$text" ] || fail "no text"
"$bin/moe-run" --model "$tmp/m.gguf" --prompt "Hello" -n 4 --text --ignore-eos > /dev/null || fail "moe-run --prompt"
"$bin/moe-run" --model "$fx/models/tiny_f32.gguf" --chat "$tmp/c.json" -n 1 2> "$tmp/err" && fail "a model without a template was accepted"
grep -q "chat_template" "$tmp/err" || fail "no clear error for a missing template: $(cat "$tmp/err")"
echo "ok: --chat renders and tokenizes like the fixtures (logits identical), prints text: $text"
