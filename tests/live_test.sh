#!/usr/bin/env bash
# Live rebalancing of a running worker job (docs/routing.md), in real mpirun jobs:
#   live_test.sh streams MODEL    16 streams on 2 ranks (greedy and seeded, logprobs=3):
#       a placement that moves half the experts, proposed before decode step 4
#       (--test-placement-at), is applied on both ranks at that step and every
#       stream's ids, logits rows and logprobs are byte-identical to an
#       undisturbed run; a bad placement (an expert out of range) is refused
#       with its reason and changes nothing; the recorder's rows (per_token)
#       show every pick on the old ranks before the step and on the new after; --rebalance-every 3 applies EPLB
#       placements from the job's own window, again without a changed byte
#   live_test.sh nodelimit MODEL  --node-limit 1 on 2 ranks: no token's experts span two
#       ranks in the routing trace (without it some do)
#   live_test.sh resident          rank 0 gives up half its experts mid-run: its
#       resident expert bytes (smaps) drop by at least 40% when the placement is
#       applied (MADV_DONTNEED), and at the end every rank holds its new share
#       within 10% (rank 1 read its new experts in)
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-live-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# run NAME ARGS...: a 2-rank batch job, ids to NAME.out, logits and
# logprobs in NAME/, stderr in NAME.err
run() {
  local name=$1
  shift
  mkdir -p "$tmp/$name"
  "$here/mpirun.sh" 2 120 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --stats \
      --dump-logits "$tmp/$name" "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" ||
    { cat "$tmp/$name.err"; fail "$name: moe-worker exited $?"; }
}

# same NAME: NAME's ids and every dumped file equal the undisturbed run's
same() {
  local name=$1
  cmp -s "$tmp/base.out" "$tmp/$name.out" || { diff "$tmp/base.out" "$tmp/$name.out" | head; fail "$name: ids differ"; }
  local n=0
  for f in "$tmp/base"/*; do
    cmp -s "$f" "$tmp/$name/$(basename "$f")" || fail "$name: $(basename "$f") differs"
    n=$((n + 1))
  done
  [ "$n" -ge 32 ] || fail "$name: only $n dumped files"
  echo "$name: 16 streams' ids and $n logits/logprobs files byte-identical to the undisturbed run"
}

cmd=${1:?usage: live_test.sh streams MODEL | resident}
case $cmd in
streams)
  model=$2
  v=$("$bin/moe-gguf" "$model" | awk '$1 == "deepseek2.vocab_size" { print $3 }')
  e=$("$bin/moe-gguf" "$model" | awk '$1 == "deepseek2.expert_count" { print $3 }')
  [ -n "$v" ] && [ -n "$e" ] || fail "cannot read $model"
  awk -v v="$v" 'BEGIN { srand(5)
    for (i = 0; i < 16; i++) {
      n = 2 + int(rand() * 20); s = ""
      for (j = 0; j < n; j++) s = s (j ? "," : "") int(rand() * v)
      opt = i % 3 == 1 ? " seed=" i " temp=0.9 top_p=0.95" : ""
      print s, 14, "logprobs=3" opt
    } }' > "$tmp/batch"
  # odd experts on rank 0, even on rank 1: half of them change rank
  # against the contiguous default (rank 0: 0..E/2-1)
  odd=$(seq 1 2 $((e - 1)) | tr '\n' ' ') even=$(seq 0 2 $((e - 1)) | tr '\n' ' ')
  printf '* 0 %s\n* 1 %s\n' "$odd" "$even" > "$tmp/swap.placement"
  printf '* 0 0-%d\n* 1 %d\n' $((e - 1)) "$e" > "$tmp/bad.placement"
  run base
  steps=$(sed -n 's/^rank 0: sequences [0-9]*, steps \([0-9]*\),.*/\1/p' "$tmp/base.err")
  [ -n "$steps" ] && [ "$steps" -gt 8 ] || fail "the undisturbed run took '$steps' steps; the change would not be mid-decode"
  grep -q "placement" "$tmp/base.err" && fail "the undisturbed run changed its placement"

  # the recorder on (per_token): it must not change a byte either, and its
  # rows show every pick on the old placement before step 4, on the new one after
  run swap --test-placement-at "4:$tmp/swap.placement" --record "$tmp/swap.rec" --record-mode per_token
  grep "placement from" "$tmp/swap.err"
  line=$(grep "placement from --test-placement-at applied before step 4: " "$tmp/swap.err") ||
    fail "no applied line for step 4"
  moved=$(echo "$line" | sed -n 's/.*: \([0-9]*\) of \([0-9]*\) experts moved.*/\1 \2/p')
  read -r m total <<< "$moved"
  [ -n "$m" ] && [ $((4 * m)) -ge "$total" ] || fail "only '$m' of '$total' experts moved"
  [ "$(grep -c "released .* bytes of experts" "$tmp/swap.err")" = 2 ] || fail "not every rank reported its memory"
  same swap
  /usr/bin/python3 "$here/live_record_check.py" "$tmp/swap.rec" "$e" 4 || fail "the recorder's rows across the change"

  run bad --test-placement-at "3:$tmp/bad.placement"
  grep -q "placement from --test-placement-at refused before step 3: .*expert $e" "$tmp/bad.err" ||
    { cat "$tmp/bad.err"; fail "the bad placement was not refused with its reason"; }
  grep -q "applied" "$tmp/bad.err" && fail "a bad placement was applied"
  same bad

  run auto --rebalance-every 3
  n=$(grep -c "placement from the automatic mode applied" "$tmp/auto.err")
  [ "$n" -ge 2 ] || { cat "$tmp/auto.err"; fail "the automatic mode applied $n placements, expected 2 or more"; }
  grep "automatic mode applied" "$tmp/auto.err" | head -3
  same auto
  ;;
resident)
  model=$tmp/big.gguf
  "$bin/moe-mkmodel" --preset tiny --dim 512 --expert-ff 1024 --experts 8 --experts-used 2 --layers 3 \
      --dense-layers 1 --dense-ff 256 --type f32 -o "$model" 2> /dev/null || fail "moe-mkmodel"
  awk 'BEGIN { srand(3); for (i = 0; i < 8; i++) { s = ""; for (j = 0; j < 40; j++) s = s (j ? "," : "") int(rand() * 300); print s, 8 } }' > "$tmp/batch"
  printf '* 0 0-1\n* 1 2-7\n' > "$tmp/shrink.placement"
  run shrink --test-placement-at "2:$tmp/shrink.placement"
  grep -E "placement from|released|resident expert bytes" "$tmp/shrink.err"
  read -r before after <<< "$(sed -n 's/^moe-worker: rank 0: released .*resident expert bytes \([0-9]*\) -> \([0-9]*\); .*/\1 \2/p' "$tmp/shrink.err")"
  [ -n "$before" ] && [ -n "$after" ] || fail "no residency line from rank 0"
  [ $((after * 10)) -le $((before * 6)) ] || fail "rank 0's resident expert bytes went from $before to $after only"
  awk '/resident expert bytes [0-9]+ of a/ { got = $6; share = $9; sub(/-byte/, "", share)
        if (share <= 0 || got < 0.9 * share || got > 1.1 * share) { print "FAIL: " $0; bad = 1 } }
       END { exit bad }' "$tmp/shrink.err" || fail "a rank does not hold its new share within 10%"
  echo "ok: rank 0 released its old experts ($before -> $after resident bytes); both ranks hold their new share"
  ;;
nodelimit)
  # --node-limit 1 on 2 ranks: every token's experts on one rank (the
  # trace's ranks column), where the model's own routing visits both
  model=$2
  awk 'BEGIN { srand(9); for (i = 0; i < 8; i++) { s = ""; for (j = 0; j < 12; j++) s = s (j ? "," : "") int(rand() * 400); print s, 6 } }' > "$tmp/batch"
  run free --trace "$tmp/free.trace"
  run limited --trace "$tmp/limited.trace" --node-limit 1
  two() { awk '{ n = split($7, r, ","); for (j = 2; j <= n; j++) if (r[j] != r[1]) { c++; break } } END { print c + 0 }' "$1"; }
  a=$(two "$tmp/free.trace") b=$(two "$tmp/limited.trace")
  [ "$a" -gt 0 ] || fail "the model's routing never visits two ranks"
  [ "$b" = 0 ] || fail "$b tokens visit two ranks under --node-limit 1"
  [ "$(wc -l < "$tmp/limited.trace")" = "$(wc -l < "$tmp/free.trace")" ] || fail "the traces differ in length"
  echo "ok: $a of $(wc -l < "$tmp/free.trace") routing lines visit two ranks without the limit, none with --node-limit 1"
  ;;
*) fail "unknown mode $cmd" ;;
esac
