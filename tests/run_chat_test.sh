#!/usr/bin/env bash
# moe-run --chat and --prompt on a model carrying DeepSeek-V3's tokenizer and
# chat template: the logits equal those of the ids the fixtures give for
# the same conversation (chat.tsv case 1: "0 128803 19923 128804"), a file
# without add_generation_prompt gets the generation prompt too (the default)
# and one with it false does not, and the generated text is printed.
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
# add_generation_prompt defaults to true (as in moe-tokenize and the server):
# without the key the assistant prefix 128804 is there; false leaves it out.
printf '%s\n' '{"messages":[{"role":"user","content":"Hello"}]}' > "$tmp/d.json"
"$bin/moe-run" --model "$tmp/m.gguf" --chat "$tmp/d.json" -n 0 --dump-logits "$tmp/d.f32" > /dev/null || fail "moe-run --chat (no add_generation_prompt)"
cmp -s "$tmp/d.f32" "$tmp/b.f32" || fail "a file without add_generation_prompt did not get the generation prompt"
printf '%s\n' '{"messages":[{"role":"user","content":"Hello"}],"add_generation_prompt":false}' > "$tmp/f.json"
"$bin/moe-run" --model "$tmp/m.gguf" --chat "$tmp/f.json" -n 0 --dump-logits "$tmp/f.f32" > /dev/null || fail "moe-run --chat (false)"
"$bin/moe-run" --model "$tmp/m.gguf" --tokens 0,128803,19923 -n 0 --dump-logits "$tmp/g.f32" > /dev/null || fail "moe-run --tokens 0,128803,19923"
cmp -s "$tmp/f.f32" "$tmp/g.f32" || fail "add_generation_prompt false did not give the ids 0 128803 19923"
text=$("$bin/moe-run" --model "$tmp/m.gguf" --chat "$tmp/c.json" -n 6 --text --ignore-eos) || fail "moe-run --chat --text"
[ -n "$text" ] || fail "no text"
"$bin/moe-run" --model "$tmp/m.gguf" --prompt "Hello" -n 4 --text --ignore-eos > /dev/null || fail "moe-run --prompt"
"$bin/moe-run" --model "$fx/models/tiny_f32.gguf" --chat "$tmp/c.json" -n 1 2> "$tmp/err" && fail "a model without a template was accepted"
grep -q "chat_template" "$tmp/err" || fail "no clear error for a missing template: $(cat "$tmp/err")"
echo "ok: --chat renders and tokenizes like the fixtures (logits identical), prints text: $text"
