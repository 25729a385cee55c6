#!/usr/bin/env bash
# moe-worker --test-xchg-delay-us (a test knob): a 2-rank job with every
# collective held 4 ms gives the same bytes as without, and really waits:
# its decode-only steps take at least 4 ms x 3 a MoE layer (the counts, the
# dispatch and the combine, which follow one another; the step header is
# outside the timed part).
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
model=${MOE_FIXTURES:?MOE_FIXTURES not set}/models/v3_mini_f32.gguf
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-delay.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; tail -5 "$tmp"/err.* 2>/dev/null; exit 1; }
printf '1,2,3,4,5 12\n7,8,9 10 seed=3 temp=0.8\n10 9\n11,12 8\n' > "$tmp/batch"
for d in 0 4000; do
  "$here/mpirun.sh" 2 60 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --stats --test-xchg-delay-us "$d" \
      > "$tmp/out.$d" 2> "$tmp/err.$d" || fail "the job with --test-xchg-delay-us $d failed"
done
[ -s "$tmp/out.0" ] || fail "no output"
cmp -s "$tmp/out.0" "$tmp/out.4000" || fail "the delay changed the output"
grep -q "test knob: every collective held 4000 us" "$tmp/err.4000" || fail "the knob is not announced"
grep -q "test knob" "$tmp/err.0" && fail "the knob is announced while off"
moe_layers=$(( $("$bin/moe-gguf" "$model" | awk '$1 == "deepseek2.block_count" { b = $3 } $1 == "deepseek2.leading_dense_block_count" { d = $3 } END { print b - d }') ))
read -r steps secs < <(sed -n 's/^job: .*decode-only steps \([0-9]*\), [0-9]* tokens in \([0-9.]*\) s.*/\1 \2/p' "$tmp/err.4000")
[ -n "$steps" ] && [ "$steps" -gt 0 ] || fail "no decode-only steps in the stats"
min_ms=$(( steps * 4 * 3 * moe_layers ))
got_ms=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000 }')
echo "decode-only: $steps steps in $got_ms ms with the delay (at least $min_ms ms: $moe_layers MoE layers)," \
     "$(sed -n 's/^job: .* in \([0-9.]*\) s.*/\1/p' "$tmp/err.0") s without"
[ "$got_ms" -ge "$min_ms" ] || fail "the delay did not hold the collectives ($got_ms ms < $min_ms ms)"
echo "ok: the same bytes with and without the delay, and it delays"
