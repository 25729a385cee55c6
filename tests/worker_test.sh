#!/usr/bin/env bash
# The worker job against moe-run, in real mpirun jobs:
#   worker_test.sh equal MODEL NP [PLACEMENT]   a batch of 8 sequences of different
#       lengths (greedy and seeded sampling): every line equals moe-run's ids,
#       every logits file is byte-identical to moe-run's, every rank owns a sequence;
#       MOE_TEST_ACT=--exact|--int8|--repack gives both programs that activation path (default:
#       neither flag, the programs' default, int8)
#   worker_test.sh chunks MODEL                 one generate loop: a 1-rank job equals moe-run
#       bitwise at several prefill chunk sizes (moe-run --batch C = --prefill-chunk C)
#       and step budgets (--step-tokens B), so the budget never changes a bit; on the
#       float path (--exact), where a chunk of 32 or more tokens decompresses K/V
#       (the int8 path stays absorbed, so there chunks could not change a bit)
#   worker_test.sh batchfile NP                 the one request format (core/reqline.h):
#       ids:, bare and text: prompts, options by name, stop_id=; a bad line is that
#       request's error and the others still run, equal to moe-run; exit status 1
#   worker_test.sh kernels MODEL                rank 0 capped one kernel set below what the
#       others run (MOE_KERNELS, mpirun MPMD): every rank uses the capped set (--stats)
#       and the output is bitwise moe-run's with that set
#   worker_test.sh bytes MODEL NP [PLACEMENT]   the bytes each rank sent per layer
#       (--stats) equal what the routing trace implies, one copy per destination
#   worker_test.sh resident NP                  on a model with 6 MiB experts, each rank's
#       resident expert memory (from /proc/self/smaps) is within 10% of its share
#   worker_test.sh idle NP SECONDS              an idle job (no requests) costs under
#       5% of one core over SECONDS, mpirun included
#   worker_test.sh logprobs MODEL               logprobs= and prompt_logprobs= (DIR/req<i>.logprobs):
#       the same bytes on 1, 2 and 3 ranks (other batch-mates); every completion token's
#       equal to logprobs_ref's own log-softmax of the dumped row it was sampled from;
#       prompt logprobs (chunk 1) equal to moe-run's teacher-forced rows', (chunk 512)
#       within 1e-4 of them; max_tokens 0 only scores; asking for logprobs changes no id
#       and no logits row (the sampled rows are moe-run's, bitwise)
#   worker_test.sh eos MODEL                    ignore_eos=1 generates past the model's EOS
#       (a prompt whose greedy run says EOS, found in the test), without it the request
#       stops there; min_tokens=N keeps EOS and stop_id= out of the first N tokens
#   worker_test.sh replay MODEL NP K            every sequence is dropped after K tokens and
#       replayed (--replay-after K: prompt + emitted, as after a restart): every
#       logits file (the replay's rows from the prompt's last row on) and every id
#       is byte-identical to the undisturbed run's, at prefill chunks 512 and 8; the
#       replays start from their prompts' blocks in the prefix cache (--stats: hits on
#       the ranks, none in the undisturbed run, where every request starts at once)
#   worker_test.sh mtp NP                       a V3-style Q8_0 model with an MTP block
#       (moe-mkmodel --mtp 1): the job with --mtp --mtp-draft 2 (speculative decoding) gives every
#       request's ids and logits rows bitwise as moe-run without MTP, the ranks
#       fed drafts (--stats), and a replay after 4 tokens gives the same again
#   worker_test.sh badfile NP                   one rank cannot read the model:
#       the job exits non-zero quickly, naming the rank and the reason
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
act=${MOE_TEST_ACT:-}
case $act in ""|--exact|--int8|--repack) ;; *) echo "FAIL: MOE_TEST_ACT='$act'"; exit 1 ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-worker-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

vocab_of() { "$bin/moe-gguf" "$1" | awk '$1 == "deepseek2.vocab_size" { print $3 }'; }

# 8 requests of different lengths, ids below the vocabulary size.
make_batch() {
  local v=$1
  awk -v v="$v" 'BEGIN {
    srand(7); lens = "16 3 7 1 40 2 1 25"; gens = "16 10 12 5 8 20 3 6"
    split(lens, L); split(gens, G)
    for (i = 1; i <= 8; i++) {
      s = ""
      for (j = 0; j < L[i]; j++) s = s (j ? "," : "") int(rand() * v)
      opt = ""
      if (i == 3) opt = " seed=3 temp=0.8 top_p=0.9"
      if (i == 7) opt = " seed=11 temp=1.2"
      if (i == 8) opt = " seed=5 temp=0.7 top_k=20 min_p=0.05"
      print s, G[i] opt
    }
  }'
}

# moe-run flags for a batch line's options
run_flags() {
  local f=""
  for kv in "$@"; do
    case $kv in
      seed=*) f="$f --seed ${kv#seed=}" ;; temp=*) f="$f --temp ${kv#temp=}" ;;
      top_p=*) f="$f --top-p ${kv#top_p=}" ;; top_k=*) f="$f --top-k ${kv#top_k=}" ;;
      min_p=*) f="$f --min-p ${kv#min_p=}" ;;
    esac
  done
  echo "$f"
}

# Each batch request run alone by moe-run (with the environment as it is,
# MOE_KERNELS included) must give the worker's ids and logits, bitwise.
compare_with_run() {
  local model=$1
  i=0
  while read -r ids n opts; do
    # shellcheck disable=SC2086
    "$bin/moe-run" --model "$model" --tokens "$ids" -n "$n" $(run_flags $opts) ${run_act-$act} \
        --dump-logits "$tmp/r/req$i.logits.f32" > "$tmp/r/out$i" || fail "moe-run failed on request $i"
    want=$(cat "$tmp/r/out$i")
    got=$(sed -n "$((i + 1))p" "$tmp/out")
    [ "$got" = "$want" ] || fail "request $i: worker '$got' vs moe-run '$want'"
    cmp -s "$tmp/w/req$i.logits.f32" "$tmp/r/req$i.logits.f32" || fail "request $i: logits differ from moe-run"
    rows=$(( $(stat -c %s "$tmp/r/req$i.logits.f32") / (4 * v) ))
    echo "request $i: $(echo "$want" | wc -w) ids and $rows logits rows identical"
    i=$((i + 1))
  done < "$tmp/batch"
  [ "$i" = 8 ] || fail "expected 8 requests, ran $i"
}

cmd=${1:?usage: worker_test.sh equal|chunks|replay|batchfile|kernels|bytes|resident|idle|badfile ...}
case $cmd in
equal)
  model=$2 np=$3 placement=${4:-}
  v=$(vocab_of "$model") || fail "cannot read $model"
  make_batch "$v" > "$tmp/batch"
  mkdir -p "$tmp/w" "$tmp/r"
  extra=()
  [ -n "$placement" ] && extra=(--placement "$placement")
  [ -n "$act" ] && extra+=("$act")
  "$here/mpirun.sh" "$np" 120 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --stats \
      --dump-logits "$tmp/w" "${extra[@]}" > "$tmp/out" 2> "$tmp/err" || { cat "$tmp/err"; fail "moe-worker exited $?"; }
  compare_with_run "$model"
  if [ "$act" = --repack ]; then
    grep -q '^repacked: [1-9][0-9]* matrices' "$tmp/err" || fail "--repack: the worker reports no repacked matrix"
  fi
  [ "$(wc -l < "$tmp/out")" = 8 ] || fail "worker printed $(wc -l < "$tmp/out") lines"
  for r in $(seq 0 $((np - 1))); do
    s=$(sed -n "s/^rank $r: sequences \([0-9]*\),.*/\1/p" "$tmp/err")
    [ -n "$s" ] && [ "$s" -ge 1 ] || fail "rank $r owns no sequence (stats: '$s')"
  done
  set_used=$(sed -n 's/^rank 0: kernels \([a-z0-9]*\).*/\1/p' "$tmp/err" | head -1)
  echo "ok: $(basename "$model") on $np ranks${placement:+ with $(basename "$placement")}${act:+ ($act)}: 8 requests bitwise equal to moe-run, every rank owns a sequence (kernels ${set_used:-not reported})"
  ;;
mtp)
  np=$2
  model=$tmp/mtp.gguf
  "$bin/moe-mkmodel" --preset v3-mini --type q8_0 --mtp 1 -o "$model" 2>/dev/null || fail "moe-mkmodel"
  v=$(vocab_of "$model") || fail "cannot read $model"
  make_batch "$v" > "$tmp/batch"
  mkdir -p "$tmp/w" "$tmp/r"
  "$here/mpirun.sh" "$np" 120 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --stats --mtp --mtp-draft 2 \
      --dump-logits "$tmp/w" > "$tmp/out" 2> "$tmp/err" || { cat "$tmp/err"; fail "moe-worker --mtp exited $?"; }
  run_act="" compare_with_run "$model"   # moe-run without --mtp
  drafts=$(sed -n 's/^rank [0-9]*: mtp: \([0-9]*\) drafts.*/\1/p' "$tmp/err" | awk '{ s += $1; n++ } END { print (n == '"$np"' ? s : -1) }')
  [ "$drafts" -gt 8 ] || fail "the ranks fed $drafts drafts"
  # replayed after 4 tokens (as after a restart): the same ids and rows
  mkdir -p "$tmp/wr"
  "$here/mpirun.sh" "$np" 120 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --mtp --mtp-draft 2 --replay-after 4 \
      --dump-logits "$tmp/wr" > "$tmp/outr" 2> "$tmp/errr" || { cat "$tmp/errr"; fail "moe-worker --mtp --replay-after exited $?"; }
  cmp -s "$tmp/out" "$tmp/outr" || fail "--mtp: replayed ids differ"
  for i in $(seq 0 7); do
    cmp -s "$tmp/w/req$i.logits.f32" "$tmp/wr/req$i.logits.f32" || fail "--mtp: request $i's logits differ after the replay"
  done
  echo "ok: --mtp on $np ranks: 8 requests bitwise equal to moe-run without MTP, and after a replay; $drafts drafts fed"
  ;;
replay)
  model=$2 np=$3 k=$4
  declare -A hits
  v=$(vocab_of "$model") || fail "cannot read $model"
  make_batch "$v" > "$tmp/batch"
  for chunk in 512 8; do
    for mode in plain replay; do
      d=$tmp/$mode$chunk
      mkdir -p "$d"
      flags=(--prefill-chunk "$chunk")
      [ -n "$act" ] && flags+=("$act")
      [ $mode = replay ] && flags+=(--replay-after "$k")
      "$here/mpirun.sh" "$np" 120 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --dump-logits "$d" \
          --stats "${flags[@]}" > "$d/out" 2> "$d/err" || { cat "$d/err"; fail "moe-worker ($mode, chunk $chunk) exited $?"; }
      hits[$mode]=$(sed -n 's/^rank [0-9]*: prefix cache: [0-9]* prompt tokens queried, \([0-9]*\) hit.*/\1/p' "$d/err" |
                    awk '{ s += $1; n++ } END { print (n == '"$np"' ? s : "missing") }')
    done
    [ "${hits[plain]}" = 0 ] || fail "chunk $chunk: the undisturbed run hit the prefix cache (${hits[plain]} tokens)"
    [ "${hits[replay]}" != missing ] && [ "${hits[replay]}" -gt 0 ] ||
      fail "chunk $chunk: the replays took nothing from the prefix cache (${hits[replay]})"
    cmp -s "$tmp/plain$chunk/out" "$tmp/replay$chunk/out" || { diff "$tmp/plain$chunk/out" "$tmp/replay$chunk/out"; fail "chunk $chunk: replayed ids differ"; }
    n=0
    for i in $(seq 0 7); do
      cmp -s "$tmp/plain$chunk/req$i.logits.f32" "$tmp/replay$chunk/req$i.logits.f32" ||
        fail "chunk $chunk: request $i's logits differ after the replay"
      # a replayed request's file was written again from its first row
      [ -s "$tmp/replay$chunk/req$i.logits.f32" ] || fail "request $i has no logits"
    done
    # how many requests were replayed: those with more than K tokens
    n=$(awk -v k="$k" '{ if (NF - 1 > k) n++ } END { print n + 0 }' "$tmp/plain$chunk/out")
    [ "$n" -ge 4 ] || fail "only $n requests ran past $k tokens: the test replays too little"
    echo "ok: chunk $chunk: $n of 8 requests replayed after $k tokens on $np ranks, ids and every logits row bitwise the undisturbed run's; ${hits[replay]} prompt tokens from the prefix cache"
  done
  ;;
chunks)
  model=$2
  v=$(vocab_of "$model") || fail "cannot read $model"
  make_batch "$v" > "$tmp/batch"
  for chunk in 5 16 512; do
    mkdir -p "$tmp/r$chunk"
    i=0
    while read -r ids n opts; do
      # shellcheck disable=SC2086
      "$bin/moe-run" --model "$model" --tokens "$ids" -n "$n" --batch "$chunk" --exact $(run_flags $opts) \
          --dump-logits "$tmp/r$chunk/req$i.logits.f32" > "$tmp/r$chunk/out$i" || fail "moe-run failed on request $i"
      i=$((i + 1))
    done < "$tmp/batch"
    for budget in "$chunk" $((2 * chunk + 3)) 1024; do
      [ "$budget" -ge "$chunk" ] || continue
      d=$tmp/w$chunk-$budget
      mkdir -p "$d"
      "$here/mpirun.sh" 1 120 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --prefill-chunk "$chunk" \
          --step-tokens "$budget" --exact --dump-logits "$d" > "$d/out" 2> "$d/err" || { cat "$d/err"; fail "moe-worker exited $?"; }
      for i in 0 1 2 3 4 5 6 7; do
        [ "$(sed -n "$((i + 1))p" "$d/out")" = "$(cat "$tmp/r$chunk/out$i")" ] || fail "chunk $chunk budget $budget request $i: ids differ"
        cmp -s "$d/req$i.logits.f32" "$tmp/r$chunk/req$i.logits.f32" || fail "chunk $chunk budget $budget request $i: logits differ"
      done
      echo "chunk $chunk, budget $budget: 8 requests bitwise equal to moe-run --batch $chunk"
    done
  done
  # chunk boundaries decide the bits (a chunk >= 32 tokens decompresses): a
  # different chunk must be able to change them, or this test proves nothing
  cmp -s "$tmp/r5/req4.logits.f32" "$tmp/r512/req4.logits.f32" && fail "chunks of 5 and 512 gave identical logits"
  echo "ok: moe-run and moe-worker share the generate loop"
  ;;
batchfile)
  np=$2
  model=$MOE_FIXTURES/models/tiny_f32.gguf
  printf '%s\n' '# a comment' 'ids:0,17,42 5 seed=3 temp=0.8 top-k=40' '' 'no prompt here' \
      "$(printf 'text:hello world\t4 repeat_penalty=1.2')" '1,2 3 stop=x' '5,6,7 6 stop_id=999' \
      '7,8 4 stop_id=17 top_p=1.5' '9,10,11 3 repeat_last_n=8' > "$tmp/batch"
  if "$here/mpirun.sh" "$np" 120 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" > "$tmp/out" 2> "$tmp/err"; then
    fail "a batch with bad lines exited 0"
  fi
  [ "$(wc -l < "$tmp/out")" = 7 ] || { cat "$tmp/out" "$tmp/err"; fail "expected 7 result lines"; }
  want() { "$bin/moe-run" --model "$model" "$@" || fail "moe-run $*"; }
  hello=$(printf 'hello world' | "$bin/moe-tokenize" -m "$model" --bos | tr ' ' ',')
  expect=("$(want --tokens 0,17,42 -n 5 --seed 3 --temp 0.8 --top-k 40)"
          "error: line 4: "
          "$(want --tokens "$hello" -n 4 --repeat-penalty 1.2)"
          "error: line 6: stop strings need the coordinator"
          "error: line 7: stop_id 999 is not in"
          "error: line 8: top_p"
          "$(want --tokens 9,10,11 -n 3 --repeat-last-n 8)")
  for i in 0 1 2 3 4 5 6; do
    got=$(sed -n "$((i + 1))p" "$tmp/out")
    case $got in "${expect[$i]}"*) ;; *) fail "result $((i + 1)): got '$got', want '${expect[$i]}...'" ;; esac
  done
  echo "ok: one request format on $np ranks: 4 requests equal to moe-run, 3 bad lines reported alone"
  ;;
kernels)
  model=$2
  v=$(vocab_of "$model") || fail "cannot read $model"
  make_batch "$v" > "$tmp/batch"
  mkdir -p "$tmp/w" "$tmp/r"
  # the set moe-run (and an uncapped rank) picks here, and one below it
  best=$("$bin/moe-run" --model "$model" --tokens 1 -n 1 --stats 2>&1 >/dev/null | sed -n 's/^kernels: \([a-z0-9]*\).*/\1/p')
  case $best in avx512) low=avx2 ;; avx2|reference) low=reference ;; *) fail "moe-run names no kernel set" ;; esac
  "$here/mpirun.sh" 1 120 env MOE_KERNELS=$low "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --stats \
      --dump-logits "$tmp/w" : -np 2 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --stats \
      --dump-logits "$tmp/w" > "$tmp/out" 2> "$tmp/err" || { cat "$tmp/err"; fail "moe-worker exited $?"; }
  grep "kernels" "$tmp/err"
  for r in 0 1 2; do
    grep -q "^rank $r: kernels $low " "$tmp/err" || fail "rank $r does not use the common set $low"
  done
  grep -q "^rank 1: kernels $low (this rank offers $best;" "$tmp/err" || fail "rank 1 did not offer $best"
  MOE_KERNELS=$low compare_with_run "$model"
  echo "ok: ranks capped at $low and offering $best agree on $low; 8 requests bitwise equal to moe-run with $low"
  ;;
bytes)
  model=$2 np=$3 placement=${4:-}
  extra=()
  [ -n "$placement" ] && extra=(--placement "$placement")
  v=$(vocab_of "$model")
  dim=$("$bin/moe-gguf" "$model" | awk '$1 == "deepseek2.embedding_length" { print $3 }')
  k=$("$bin/moe-gguf" "$model" | awk '$1 == "deepseek2.expert_used_count" { print $3 }')
  make_batch "$v" > "$tmp/batch"
  "$here/mpirun.sh" "$np" 120 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --stats \
      --trace "$tmp/trace" "${extra[@]}" > "$tmp/out" 2> "$tmp/err" || { cat "$tmp/err"; fail "moe-worker exited $?"; }
  # A dispatch row of each MoE layer as the (default) int8 path sends it:
  # k int32 expert ids, then the token quantized to the dot type the
  # layer's gate and up read (q8_0: 34 bytes a 32 values, q8_1: 36 a 32,
  # q8_K: 292 a 256), or dim floats (float weights, or gate and up of two
  # dot types), padded to 4 bytes.
  "$bin/moe-gguf" "$model" | awk -v dim="$dim" -v k="$k" '
    function act(t) {
      if (t ~ /^(q8_0|q4_0|q5_0|iq4_nl)$/) return "q8_0"
      if (t ~ /^(q4_1|q5_1)$/) return "q8_1"
      if (t ~ /_K$/ || t == "iq4_xs") return "q8_K"
      return "f32" }
    $2 ~ /^blk\.[0-9]+\.ffn_(gate|up)_exps\.weight$/ { split($2, p, "."); a[p[2], $2 ~ /gate/] = act($3); L[p[2]] = 1 }
    END { for (l in L) { t = a[l, 1] == a[l, 0] ? a[l, 1] : "f32"
            b = t == "q8_0" ? dim / 32 * 34 : t == "q8_1" ? dim / 32 * 36 : t == "q8_K" ? dim / 256 * 292 : dim * 4
            print l, 4 * k + int((b + 3) / 4) * 4 } }' > "$tmp/rowbytes"
  [ -s "$tmp/rowbytes" ] || fail "no expert tensors listed by moe-gguf"
  # From the trace: dispatch rows leave the home rank once per other rank
  # visited (a row of the layer's size); combine rows go back from each
  # expert's rank to the home rank, one per slot run elsewhere (dim floats).
  awk -v dim="$dim" -v k="$k" '
    FNR == NR { row[$1] = $2; next }
    { layer = $1; home = $4; n = split($7, r, ",")
      delete seen
      for (j = 1; j <= n; j++) {
        if (r[j] != home && !(r[j] in seen)) { seen[r[j]] = 1; sent[home, layer] += row[layer] }
        if (r[j] != home) sent[r[j], layer] += dim * 4
      }
      layers[layer] = 1; ranks[home] = 1 }
    END { for (q in sent) { split(q, p, SUBSEP); print p[1], p[2], sent[q] } }' "$tmp/rowbytes" "$tmp/trace" | sort > "$tmp/want"
  sed -n 's/^rank \([0-9]*\) layer \([0-9]*\): sent \([0-9]*\) bytes.*/\1 \2 \3/p' "$tmp/err" | awk '$3 > 0' | sort > "$tmp/got"
  [ -s "$tmp/want" ] || fail "trace implies no traffic"
  diff "$tmp/want" "$tmp/got" > /dev/null || { paste "$tmp/want" "$tmp/got"; fail "bytes sent differ from the trace"; }
  echo "ok: $(wc -l < "$tmp/got") (rank, layer) byte counts equal the trace's ($(wc -l < "$tmp/trace") routing lines;" \
       "dispatch rows of $(awk '{ print $2 }' "$tmp/rowbytes" | sort -u | tr '\n' ' ')bytes)"
  ;;
resident)
  np=$2
  "$bin/moe-mkmodel" --preset tiny --dim 512 --expert-ff 1024 --experts 8 --experts-used 2 --layers 3 \
      --dense-layers 1 --dense-ff 256 --type f32 -o "$tmp/big.gguf" 2> /dev/null || fail "moe-mkmodel"
  # enough tokens that every expert of every layer is used
  awk 'BEGIN { srand(3); for (i = 0; i < 8; i++) { s = ""; for (j = 0; j < 40; j++) s = s (j ? "," : "") int(rand() * 300); print s, 8 } }' > "$tmp/batch"
  "$here/mpirun.sh" "$np" 120 "$bin/moe-worker" --model "$tmp/big.gguf" --batch "$tmp/batch" --stats \
      > "$tmp/out" 2> "$tmp/err" || { cat "$tmp/err"; fail "moe-worker exited $?"; }
  n=$(grep -c "resident expert bytes" "$tmp/err")
  [ "$n" = "$np" ] || fail "expected $np residency lines, got $n"
  grep "resident expert bytes" "$tmp/err"
  awk '/resident expert bytes/ { got = $6; share = $9; sub(/-byte/, "", share)
        if (share <= 0 || got < 0.9 * share || got > 1.1 * share) { print "FAIL: " $0; bad = 1 } }
       END { exit bad }' "$tmp/err" || fail "resident expert memory is not within 10% of the share"
  echo "ok: $np ranks each hold their share of the experts (within 10%)"
  ;;
idle)
  np=$2 secs=$3
  model=$MOE_FIXTURES/models/v3_mini_f32.gguf
  "$here/mpirun.sh" "$np" $((secs + 60)) "$bin/moe-worker" --model "$model" --linger $((secs + 3)) \
      > "$tmp/out" 2> "$tmp/err" &
  job=$!
  # ready when rank 0 says it is idle (a message, not a guess)
  for _ in $(seq 1 600); do grep -q "moe-worker: idle" "$tmp/err" && break; sleep 0.05; done
  grep -q "moe-worker: idle" "$tmp/err" || { kill "$job"; cat "$tmp/err"; fail "the job never went idle"; }
  # CPU ticks of every process in the job's session (mpirun.sh makes mpirun
  # a session leader; the ranks get process groups of their own inside it)
  pg=$(pgrep -o -f "mpirun .*--linger $((secs + 3))")
  ticks() { awk -v sid="$1" '{ sub(/^.*\) /, ""); if ($4 == sid) t += $12 + $13 } END { print t + 0 }' /proc/[0-9]*/stat 2>/dev/null; }
  t0=$(ticks "$pg"); w0=$(date +%s%N)
  sleep "$secs" # the measured window itself, not a readiness wait
  t1=$(ticks "$pg"); w1=$(date +%s%N)
  wait "$job" || { cat "$tmp/err"; fail "moe-worker exited non-zero"; }
  hz=$(getconf CLK_TCK)
  awk -v a="$t0" -v b="$t1" -v hz="$hz" -v ns=$((w1 - w0)) -v np="$np" 'BEGIN {
        cpu = (b - a) / hz; wall = ns / 1e9; share = cpu / wall
        printf "idle job (mpirun + %d ranks): %.2f s CPU over %.1f s = %.2f%% of one core\n", np, cpu, wall, 100 * share
        exit share < 0.05 ? 0 : 1 }' || fail "an idle job must use under 5% of a core"
  ;;
logprobs)
  model=$2
  v=$(vocab_of "$model") || fail "cannot read $model"
  awk -v v="$v" 'BEGIN { srand(11); lens = "12 5 40 3 7"
    split(lens, L)
    split("6 8 0 5 4", G)
    split("logprobs=3 prompt_logprobs=1|logprobs=20 seed=3 temp=0.9 top_k=40|logprobs=2 prompt_logprobs=1|logprobs=0|", O, "|")
    for (i = 1; i <= 5; i++) { s = ""; for (j = 0; j < L[i]; j++) s = s (j ? "," : "") int(rand() * v); print s, G[i], O[i] } }' \
      > "$tmp/batch"
  for np in 1 2 3; do
    mkdir -p "$tmp/d$np"
    "$here/mpirun.sh" "$np" 120 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --dump-logits "$tmp/d$np" \
        > "$tmp/out$np" 2> "$tmp/err" || { cat "$tmp/err"; fail "moe-worker on $np ranks exited $?"; }
    [ "$np" = 1 ] && continue
    cmp -s "$tmp/out1" "$tmp/out$np" || fail "ids on $np ranks differ from 1 rank's"
    for f in "$tmp/d1"/*; do cmp -s "$f" "$tmp/d$np/$(basename "$f")" || fail "$(basename "$f") differs on $np ranks"; done
  done
  echo "the ids, logits and logprobs files are the same on 1, 2 and 3 ranks"
  mkdir -p "$tmp/c1"
  "$here/mpirun.sh" 1 120 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" --dump-logits "$tmp/c1" \
      --prefill-chunk 1 > "$tmp/outc" 2> "$tmp/err" || { cat "$tmp/err"; fail "moe-worker --prefill-chunk 1 exited $?"; }
  i=0
  while read -r ids n opts; do
    lp=$tmp/d1/req$i.logprobs
    if [ "$i" = 4 ]; then
      [ ! -e "$lp" ] || fail "request 4 asked for no logprobs but has a file"
    else
      np_=$(echo "$ids" | tr , '\n' | wc -l)
      want_p=0; case $opts in *prompt_logprobs=1*) want_p=$((np_ - 1)) ;; esac
      [ "$(grep -c '^P' "$lp")" = "$want_p" ] || fail "request $i: $(grep -c '^P' "$lp") prompt positions, want $want_p"
      [ "$(grep -c '^T' "$lp")" = "$n" ] || fail "request $i: $(grep -c '^T' "$lp") token positions, want $n"
      # the token's own id in each T line is the generated id, in order
      [ "$(awk '$1 == "T" { printf "%s%s", (n++ ? " " : ""), $3 }' "$lp")" = "$(sed -n "$((i + 1))p" "$tmp/out1")" ] \
          || fail "request $i: T lines do not name the generated ids"
      top=$(awk '$1 == "T" || $1 == "P" { print NF - 4; exit }' "$lp")
      want_top=${opts#logprobs=}; want_top=${want_top%% *}
      [ -z "$top" ] || [ "$top" = "$want_top" ] || fail "request $i: $top alternatives, asked for $want_top"
      [ "$n" = 0 ] || "$bin/logprobs_ref" "$tmp/d1/req$i.logits.f32" "$v" "$lp" T 0 0 || fail "request $i: token logprobs"
      if [ "$want_p" != 0 ]; then
        "$bin/moe-run" --model "$model" --tokens "$ids" -n 0 --logits-from 1 --dump-logits "$tmp/tf$i.f32" > /dev/null \
            || fail "moe-run teacher forcing on request $i"
        "$bin/logprobs_ref" "$tmp/tf$i.f32" "$v" "$tmp/c1/req$i.logprobs" P -1 0 || fail "request $i: prompt logprobs (chunk 1)"
        "$bin/logprobs_ref" "$tmp/tf$i.f32" "$v" "$lp" P -1 1e-4 || fail "request $i: prompt logprobs (chunked)"
      fi
    fi
    # the ids and rows are moe-run's: logprobs change nothing that is sampled, and
    # a prompt chunk computed with all its rows gives its last row bitwise
    # shellcheck disable=SC2086
    want=$("$bin/moe-run" --model "$model" --tokens "$ids" -n "$n" $(run_flags $opts) --dump-logits "$tmp/r$i.f32") \
        || fail "moe-run on request $i"
    [ "$(sed -n "$((i + 1))p" "$tmp/out1")" = "$want" ] || fail "request $i: ids differ from moe-run's"
    cmp -s "$tmp/r$i.f32" "$tmp/d1/req$i.logits.f32" || fail "request $i: logits rows differ from moe-run's"
    i=$((i + 1))
  done < "$tmp/batch"
  [ "$i" = 5 ] || fail "ran $i requests"
  echo "ok: logprobs equal the reference on every completion token, prompt logprobs equal teacher forcing's"
  ;;
eos)
  model=$2
  v=$(vocab_of "$model") || fail "cannot read $model"
  eos=$("$bin/moe-gguf" "$model" | awk '$1 == "tokenizer.ggml.eos_token_id" { print $3 }')
  [ -n "$eos" ] || fail "the model names no EOS"
  # greedy runs of 64 one-token prompts past EOS: one that says EOS early
  awk -v v="$v" 'BEGIN { for (i = 2; i < 66 && i < v; i++) print i, 24, "ignore_eos=1" }' > "$tmp/search"
  "$here/mpirun.sh" 1 120 "$bin/moe-worker" --model "$model" --batch "$tmp/search" > "$tmp/found" 2> "$tmp/err" \
      || { cat "$tmp/err"; fail "moe-worker exited $?"; }
  read -r line at < <(awk -v e="$eos" '{ for (k = 1; k <= NF - 2; k++) if ($k == e) { print NR, k; exit } }' "$tmp/found")
  [ -n "${line:-}" ] || fail "no greedy run of the 64 prompts says EOS ($eos) before its last 2 tokens: nothing to test with"
  p=$(sed -n "${line}p" "$tmp/search" | cut -d' ' -f1)
  past=$(sed -n "${line}p" "$tmp/found")
  first=$(echo "$past" | cut -d' ' -f1)
  want_stop=$(echo "$past" | cut -d' ' -f1-"$at")
  mt=$((at + 1))
  [ "$first" != "$eos" ] || fail "the first token is EOS itself; min_tokens would have nothing to show"
  printf '%s\n' "$p 24" "$p 24 ignore_eos=1" "$p 24 min_tokens=$mt" "$p 24 stop_id=$first" \
      "$p 24 stop_id=$first min_tokens=3" > "$tmp/batch"
  "$here/mpirun.sh" 2 120 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" > "$tmp/out" 2> "$tmp/err" \
      || { cat "$tmp/err"; fail "moe-worker exited $?"; }
  [ "$(sed -n 1p "$tmp/out")" = "$want_stop" ] || fail "without ignore_eos: '$(sed -n 1p "$tmp/out")', want '$want_stop' (EOS at $at)"
  [ "$(sed -n 2p "$tmp/out")" = "$past" ] || fail "ignore_eos=1 did not run past EOS"
  awk -v e="$eos" -v m="$mt" 'NR == 3 { if (NF < m) exit 1; for (k = 1; k <= m; k++) if ($k == e) exit 1 }' "$tmp/out" \
      || fail "min_tokens=$mt: '$(sed -n 3p "$tmp/out")' has EOS in its first $mt tokens or is shorter"
  [ "$(sed -n 4p "$tmp/out")" = "$first" ] || fail "stop_id=$first: '$(sed -n 4p "$tmp/out")'"
  awk -v s="$first" 'NR == 5 { if (NF < 3) exit 1; for (k = 1; k <= 3; k++) if ($k == s) exit 1 }' "$tmp/out" \
      || fail "min_tokens=3 with stop_id=$first: '$(sed -n 5p "$tmp/out")'"
  # moe-run's flags do the same in one process
  [ "$("$bin/moe-run" --model "$model" --tokens "$p" -n 24 --min-tokens "$mt")" = "$(sed -n 3p "$tmp/out")" ] \
      || fail "moe-run --min-tokens differs from the worker's min_tokens="
  echo "ok: prompt $p says EOS at token $at: stops there, ignore_eos=1 runs on (24 tokens), min_tokens=$mt and stop_id with min_tokens=3 hold"
  ;;
badfile)
  np=$2
  model=$MOE_FIXTURES/models/v3_mini_f32.gguf
  printf '1,2,3 2\n' > "$tmp/batch"
  cp "$model" "$tmp/unreadable.gguf" && chmod 000 "$tmp/unreadable.gguf"
  # root reads mode-000 files, so make the bad rank's file a directory instead
  mkdir "$tmp/notafile.gguf"
  "$here/expect.sh" nonzero "rank $((np - 1)): .*notafile.gguf: not a regular file" 20 -- \
    "$here/mpirun.sh" 1 60 "$bin/moe-worker" --model "$model" --batch "$tmp/batch" : \
      -np $((np - 1)) "$bin/moe-worker" --model "$tmp/notafile.gguf" --batch "$tmp/batch" \
    || fail "the job did not fail as expected"
  ;;
*) fail "unknown check $cmd" ;;
esac
