#!/usr/bin/env bash
# End-to-end tests: a real coordinator, a real mpirun worker job and clients,
# over ipc:// sockets in a per-test folder.  Readiness is always a line the
# programs print; every process is killed on the way out.
#
#   e2e_test.sh badinput | stream | queuefull | cancel | client_killed |
#               rank_stopped | drain | concurrent | main_job | metrics | logjson |
#               logprobs
#
# logprobs: through coordinator and protocol, moe-client's logprobs (token and
# prompt) are byte for byte what the ranks write in a moe-worker --batch run;
# max_tokens 0 scores the prompt and finishes "length" with no token;
# ignore_eos and min_tokens reach the ranks (a prompt whose greedy run says
# EOS, found here, stops there unless ignore_eos; min_tokens keeps a stop id
# out of the first tokens).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
model=${MOE_FIXTURES:?MOE_FIXTURES not set}/models/v3_mini_f32.gguf
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-e2e.XXXXXX")
source "$here/proc.sh"
source "$here/moe_run_cmp.sh"

# start_cluster RANKS [coordinator flags...]
start_cluster() {
  local ranks=$1; shift
  setsid "$bin/moe-coordinator" --model "$model" --listen "ipc://$tmp/c" --workers "ipc://$tmp/w" --ranks "$ranks" \
      "$@" > "$tmp/coord.out" 2> "$tmp/coord.err" &
  coord=$!; pids+=("$coord")
  # --ignore-eos: a random model says EOS early; long requests must stay long
  # (WORKER_EOS= keeps the model's EOS, for the checks of ignore_eos itself)
  # (WORKER_FLAGS: more moe-worker flags, e.g. a test knob)
  # shellcheck disable=SC2086
  "$here/mpirun.sh" "$ranks" 300 "$bin/moe-worker" --model "$model" --coordinator "ipc://$tmp/w" ${WORKER_EOS---ignore-eos} \
      ${WORKER_FLAGS:-} > "$tmp/worker.out" 2> "$tmp/worker.err" &
  job=$!; pids+=("$job")
  wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  ep="ipc://$tmp/c"
}

case ${1:?usage: e2e_test.sh CHECK} in
badinput)
  start_cluster 2
  "$bin/e2e_client" badinput "$ep" || fail "bad inputs"
  ;;
stream)
  # every collective held 1 ms: the 200 tokens take a good part of a second,
  # so a coordinator descheduled for a while on a busy machine still streams
  # them in several chunks (at full speed they took 37 ms, and one starved
  # coordinator loop once sent them all in one chunk)
  WORKER_FLAGS="--test-xchg-delay-us 1000" start_cluster 2
  "$bin/e2e_client" stream "$ep" || fail "streaming"
  ;;
queuefull)
  start_cluster 1 --queue 1 --max-running 1
  "$bin/e2e_client" queuefull "$ep" || fail "queue full"
  ;;
slowreader)
  start_cluster 2 --client-hwm 2 --client-sndbuf 4096
  "$bin/e2e_client" slowreader "$ep" > "$tmp/slow.out" 2>&1 &
  slow=$!; pids+=("$slow")
  wait_for "$tmp/slow.out" "stalling" 60 || fail "the slow reader never stalled"
  # the worker has generated all 600 tokens when its rank reports 0 active
  # sequences after 1: every token then waited at the coordinator
  done_on_rank() { # a rank that had 1 active sequence reports 0 afterwards
    awk 'match($0, /rank [0-9]+: [01] active/) { split(substr($0, RSTART + 5), f, /[: ]+/)
           if (f[2] == 1) seen[f[1]] = 1; else if (f[1] in seen) found = 1 }
         END { exit !found }' "$tmp/coord.err"
  }
  for _ in $(seq 1 1200); do done_on_rank && break; sleep 0.05; done
  done_on_rank || fail "the stalled request never finished on its rank"
  kill -USR1 "$slow"
  wait "$slow" || fail "slow reader"
  cat "$tmp/slow.out"
  kill -TERM "$coord"; wait "$coord"
  grep "back-pressure" "$tmp/coord.err"
  n=$(sed -n 's/.* \([0-9]*\) chunk sends met back-pressure.*/\1/p' "$tmp/coord.err")
  [ -n "$n" ] && [ "$n" -gt 0 ] || fail "the stalled reader never caused back-pressure (the test proves nothing)"
  echo "ok: a stalled reader got back-pressure ($n deferred sends) and every token afterwards"
  ;;
cancel)
  # every collective held 1 ms: the 3000-token request must outlast the
  # client's 1.5 s of streaming before its cancel (with the 8 KiB prefetch
  # it had finished in 1.4 s and the cancel found nothing in flight)
  WORKER_FLAGS="--test-xchg-delay-us 1000" start_cluster 2
  "$bin/e2e_client" cancel "$ep" || fail "cancel"
  # the rank's heartbeat shows the sequence gone: its cache is free again
  wait_for "$tmp/coord.err" "rank [0-9]+: 1 active" 10 || fail "the sequence never showed as active"
  # ... and after that, 0 active on the same rank
  r=$(grep -Eo "rank [0-9]+: 1 active" "$tmp/coord.err" | head -1 | grep -Eo "[0-9]+" | head -1)
  for _ in $(seq 1 200); do
    awk -v r="rank $r: " 'index($0, r "1 active") { seen = 1 } seen && index($0, r "0 active") { found = 1 } END { exit !found }' \
        "$tmp/coord.err" && break
    sleep 0.05
  done
  awk -v r="rank $r: " 'index($0, r "1 active") { seen = 1 } seen && index($0, r "0 active") { found = 1 } END { exit !found }' \
      "$tmp/coord.err" || fail "the cancelled sequence was not released on rank $r"
  grep -E "rank [0-9]+: [0-9]+ active" "$tmp/coord.err"
  echo "ok: cancel mid-stream freed the sequence's cache on its rank"
  ;;
client_killed)
  start_cluster 2 --client-timeout-ms 2000
  "$bin/e2e_client" longrun 400 "$ep" > "$tmp/other.out" 2>&1 &
  other=$!; pids+=("$other")
  "$bin/e2e_client" hold 3 "$ep" > "$tmp/hold.out" 2>&1 &
  holder=$!; pids+=("$holder")
  wait_for "$tmp/hold.out" "holding" 30 || fail "the doomed client never streamed"
  t0=$(date +%s%N)
  kill -KILL "$holder"
  # released either when a send finds the client gone or at its heartbeat timeout
  wait_for "$tmp/coord.err" "a client went (silent; released 1|away; released its request)" 10 \
      || fail "the killed client's sequence was not released"
  grep -E "a client went" "$tmp/coord.err"
  dt=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "released $dt ms after the kill (client timeout 2000 ms)"
  [ "$dt" -lt 4000 ] || fail "release took $dt ms"
  wait "$other" || fail "the other stream was disturbed: $(cat "$tmp/other.out")"
  cat "$tmp/other.out"
  echo "ok: a killed client's sequence was released; the other stream finished normally"
  ;;
rank_stopped)
  start_cluster 2 --worker-timeout-ms 2000
  # requests on both ranks, then rank 1 stops
  for i in 1 2 3 4; do
    "$bin/e2e_client" longrun 3000 "$ep" > "$tmp/lr$i.out" 2>&1 &
    pids+=("$!")
  done
  for i in 1 2 3 4; do wait_for "$tmp/lr$i.out" "streaming" 30 || fail "request $i never streamed"; done
  rank1=$(pgrep -f "^$bin/moe-worker --model $model --coordinator ipc://$tmp/w" | sort -n | tail -1)
  [ -n "$rank1" ] || fail "no worker rank found"
  t0=$(date +%s%N)
  kill -STOP "$rank1"
  for i in 1 2 3 4; do wait_for "$tmp/lr$i.out" "^finish" 30 || fail "request $i never ended"; done
  dt=$(( ($(date +%s%N) - t0) / 1000000 ))
  kill -CONT "$rank1" 2>/dev/null
  cat "$tmp"/lr*.out | grep finish
  grep -q "finish error WORKER_LOST: worker rank" "$tmp"/lr*.out || fail "no request ended with a clear error"
  echo "ok: with a rank stopped, requests ended with WORKER_LOST after $dt ms (worker timeout 2000 ms)"
  [ "$dt" -lt 8000 ] || fail "ending took $dt ms"
  ;;
rank_restart)
  # the worker job dies hard and a new one takes its place before the
  # heartbeat timeout: the old requests must end, new ones must run
  start_cluster 1 --worker-timeout-ms 30000
  "$bin/e2e_client" longrun 3000 "$ep" > "$tmp/lr.out" 2>&1 &
  pids+=("$!")
  wait_for "$tmp/lr.out" "streaming" 30 || fail "never streamed"
  pkill -KILL -f "^$bin/moe-worker --model $model --coordinator ipc://$tmp/w"
  wait "$job"
  "$here/mpirun.sh" 1 300 "$bin/moe-worker" --model "$model" --coordinator "ipc://$tmp/w" --ignore-eos \
      > "$tmp/worker2.out" 2> "$tmp/worker2.err" &
  pids+=("$!")
  wait_for "$tmp/lr.out" "^finish" 20 || fail "the old request never ended"
  grep -q "finish error WORKER_LOST: worker rank 0 was restarted" "$tmp/lr.out" || fail "no clear error: $(cat "$tmp/lr.out")"
  "$bin/e2e_client" longrun 20 "$ep" > "$tmp/new.out" 2>&1 || fail "a new request failed: $(cat "$tmp/new.out")"
  cat "$tmp/lr.out" "$tmp/new.out" | grep finish
  echo "ok: a replaced worker job ended the old requests at once and serves new ones"
  ;;
drain)
  start_cluster 2
  "$bin/e2e_client" longrun 300 "$ep" > "$tmp/lr.out" 2>&1 &
  lr=$!; pids+=("$lr")
  wait_for "$tmp/lr.out" "streaming" 30 || fail "never streamed"
  kill -TERM "$coord"
  wait "$lr" || fail "the generation did not finish normally: $(cat "$tmp/lr.out")"
  wait "$coord"; rc=$?
  [ "$rc" = 0 ] || fail "the coordinator exited $rc"
  grep -q "drained; exiting" "$tmp/coord.err" || fail "no drain message"
  cat "$tmp/lr.out"
  echo "ok: SIGTERM let the generation finish, then the coordinator exited 0"
  ;;
concurrent)
  start_cluster 2
  # 16 requests of different lengths, greedy and seeded
  awk 'BEGIN { srand(5); for (i = 0; i < 16; i++) { n = 1 + int(rand() * 30); s = ""
         for (j = 0; j < n; j++) s = s (j ? "," : "") int(rand() * 400)
         opt = (i % 3 == 1) ? sprintf(" seed=%d temp=0.9 top_p=0.95", 100 + i) : ((i % 3 == 2) ? sprintf(" seed=%d temp=1.1 top_k=40", 7 * i) : "")
         print "ids:" s, 8 + int(rand() * 40) opt } }' > "$tmp/reqs"
  "$bin/moe-client" --connect "$ep" --file "$tmp/reqs" --concurrency 16 --ids-out > "$tmp/client.out" 2> "$tmp/client.err" \
      || fail "moe-client failed: $(cat "$tmp/client.err")"
  cat "$tmp/client.err"
  equal_to_moe_run "$tmp/reqs" "$tmp/client.out" "$model" 16
  kill -TERM "$coord"; wait "$coord"
  grep "served" "$tmp/coord.err"
  for r in 0 1; do
    n=$(sed -n "s/.*rank $r served \([0-9]*\) sequences/\1/p" "$tmp/coord.err")
    [ -n "$n" ] && [ "$n" -gt 0 ] || fail "rank $r served no request"
  done
  echo "ok: 16 concurrent requests (greedy and seeded) equal moe-run token for token; both ranks served"
  ;;
main_job)
  # The scripts' --help is their header comment, not their first lines of code.
  for s in scripts/quickstart.sh deploy/serve.sh bench/ep/run.sh; do
    h=$("$root/$s" --help) || fail "$s --help exited non-zero"
    case $h in *"set -e"*|*"#!"*) fail "$s --help prints code: $h" ;; esac
    [ "$(printf '%s\n' "$h" | grep -c .)" -ge 3 ] || fail "$s --help is too short: $h"
  done
  # The README's main-job command, as a user runs it.
  setsid "$root/scripts/quickstart.sh" --model-dir "$tmp" --listen "ipc://$tmp/c" --http 127.0.0.1:0 --workers "ipc://$tmp/w" \
      > "$tmp/qs.out" 2>&1 &
  qs=$!; pids+=("$qs")
  wait_for "$tmp/qs.out" "serve: ready" 300 || fail "the main job never became ready"
  text=$("$bin/moe-client" --connect "ipc://$tmp/c" --prompt "Hello, world" --max-tokens 16 --usage 2> "$tmp/usage") \
      || fail "moe-client failed: $(cat "$tmp/usage")"
  [ -n "$text" ] || fail "no text came back"
  grep -q "finish: " "$tmp/usage" || fail "no finish"
  echo "text: $text"; cat "$tmp/usage"
  # The default model carries DeepSeek-V3's chat template: chat works.
  printf '{"messages":[{"role":"user","content":"Hi there"}]}' > "$tmp/chat.json"
  chat=$("$bin/moe-client" --connect "ipc://$tmp/c" --chat "$tmp/chat.json" --max-tokens 4 --usage 2> "$tmp/chat.usage") \
      || fail "a chat request to the default model failed: $(cat "$tmp/chat.usage")"
  grep -q "finish: " "$tmp/chat.usage" || fail "chat: no finish"
  echo "chat: $chat"; cat "$tmp/chat.usage"
  # the curl line it printed, run as printed
  line=$(grep -E "^  curl http://" "$tmp/qs.out") || fail "no curl line: $(cat "$tmp/qs.out")"
  answer=$(bash -c "$line") || fail "the printed curl line failed: $line"
  printf '%s' "$answer" | grep -q '"object":"text_completion"' || fail "the curl line's answer: $answer"
  echo "curl: $answer"
  kill -TERM "$qs"
  wait "$qs"; rc=$?
  [ "$rc" = 0 ] || fail "the main job exited $rc after SIGTERM"
  grep -q "serve: stopped" "$tmp/qs.out" || fail "no clean stop"
  # Again with the tokenizer already unpacked but no model: it makes the
  # model again (a tokenizer left from an earlier run once stopped it)
  [ -f "$tmp/deepseek-v3-tokenizer.gguf" ] || fail "the first run left no tokenizer in the model folder"
  rm "$tmp/default.gguf"
  setsid "$root/scripts/quickstart.sh" --model-dir "$tmp" --listen "ipc://$tmp/c" --http 127.0.0.1:0 --workers "ipc://$tmp/w" \
      > "$tmp/qs2.out" 2>&1 &
  qs=$!; pids+=("$qs")
  wait_for "$tmp/qs2.out" "serve: ready" 300 || fail "with the tokenizer already there, the main job never became ready: $(tail -3 "$tmp/qs2.out")"
  grep -q "quickstart: no model given; making" "$tmp/qs2.out" || fail "the second run did not make the model"
  kill -TERM "$qs"
  wait "$qs"; rc=$?
  [ "$rc" = 0 ] || fail "the second main job exited $rc after SIGTERM"
  echo "ok: main job ready, answered a request, exited 0 on SIGTERM; ready again with the tokenizer already unpacked"
  ;;
metrics)
  # The metrics after a few requests: the text parses as Prometheus text
  # (Debian's python3-prometheus-client), token totals equal the requests'
  # usage (as the per-request log lines and the client saw it), and the
  # ranks report themselves idle again (sequences 0, cache blocks free).
  start_cluster 2 --metrics-file "$tmp/metrics.prom"
  printf 'ids:1,2,3 8\nids:4,5,6,7 5 seed=3 temp=0.8\ntext:hello world\t6\nids:9,10 3\nids:11 1\n' > "$tmp/reqs"
  "$bin/moe-client" --connect "$ep" --file "$tmp/reqs" --ids-out > "$tmp/client.out" 2> "$tmp/client.err" \
      || fail "moe-client failed"
  # the ranks' heartbeats (every 500 ms) say when they are idle again: ask
  # for the metrics until they show it (exit 3: not yet)
  for _ in $(seq 1 40); do
    rm -f "$tmp/metrics.prom"
    kill -USR1 "$coord"
    wait_for_file() { local i; for i in $(seq 1 200); do [ -f "$1" ] && return 0; sleep 0.05; done; return 1; }
    wait_for_file "$tmp/metrics.prom" || fail "SIGUSR1 wrote no metrics file"
    /usr/bin/python3 "$here/metrics_check.py" "$tmp/metrics.prom" "$tmp/coord.err" "$tmp/client.out" 5 2 \
        > "$tmp/check.out" 2>&1; rc=$?
    [ "$rc" = 3 ] || break
    sleep 0.25
  done
  cat "$tmp/check.out"
  [ "$rc" = 0 ] || { cat "$tmp/metrics.prom"; fail "metrics check"; }
  grep "request finished" "$tmp/coord.err"
  kill -TERM "$coord"; wait "$coord"
  [ -s "$tmp/metrics.prom" ] && grep -q "^moe:prompt_tokens_total" "$tmp/metrics.prom" || fail "no metrics file at exit"
  echo "ok: metrics parse, move with the requests and settle when the ranks are idle"
  ;;
logjson)
  # --log-format json: every line the coordinator logs is one JSON object;
  # each request has its line; a client that left after its requests
  # finished is not reported as gone (only the debug log hears of it).
  MOE_LOG=debug start_cluster 1 --log-format json --client-timeout-ms 500
  "$bin/moe-client" --connect "$ep" --ids 5,6,7 --max-tokens 4 --usage > /dev/null 2> "$tmp/usage" || fail "moe-client failed"
  wait_for "$tmp/coord.err" '"msg":"a client went silent \(none of its requests' 20 || fail "the silent client was never noticed"
  /usr/bin/python3 - "$tmp/coord.err" <<'PY' || fail "json log lines"
import json, sys
reqs, n = [], 0
for line in open(sys.argv[1], encoding="utf-8"):
    obj = json.loads(line)                     # every line is one JSON object
    n += 1
    assert obj["level"] in ("debug", "info", "warn", "error") and obj["ts"].endswith("Z"), obj
    if obj["msg"] == "request finished":
        reqs.append(obj)
    assert not ("went silent" in obj["msg"] and obj["level"] != "debug"), obj
assert len(reqs) == 1, reqs
r = reqs[0]
assert r["prompt_tokens"] == 3 and r["output_tokens"] == 4 and r["finish_reason"] == "length", r
assert isinstance(r["ttft_s"], float) and 0 <= r["ttft_s"] <= r["total_s"], r
assert r["client"].startswith("moe-client@zmq:") and r["id"], r
print(f"ok: {n} JSON log lines; request line {r}")
PY
  grep -q "finish: length prompt=3 completion=4" "$tmp/usage" || fail "the client's usage: $(cat "$tmp/usage")"
  ;;
logprobs)
  WORKER_EOS= start_cluster 2
  v=$("$bin/moe-gguf" "$model" | awk '$1 == "deepseek2.vocab_size" { print $3 }')
  eos=$("$bin/moe-gguf" "$model" | awk '$1 == "tokenizer.ggml.eos_token_id" { print $3 }')
  printf '%s\n' "ids:5,6,7,8,9,10,11 6 logprobs=3 prompt_logprobs=1" "ids:12,13,14 8 logprobs=20 seed=3 temp=0.9" \
      "ids:20,21,22,23,24,25,26,27,28,29,30,31 0 logprobs=2 prompt_logprobs=1" "ids:40,41 5 logprobs=0" > "$tmp/reqs"
  "$bin/moe-client" --connect "$ep" --file "$tmp/reqs" --ids-out --logprobs-out "$tmp/client.lp" > "$tmp/client.out" \
      2> "$tmp/client.err" || fail "moe-client: $(cat "$tmp/client.err")"
  mkdir -p "$tmp/d"
  "$here/mpirun.sh" 1 120 "$bin/moe-worker" --model "$model" --batch "$tmp/reqs" --dump-logits "$tmp/d" > "$tmp/batch.out" \
      2> "$tmp/batch.err" || fail "moe-worker --batch"
  for i in 0 1 2 3; do
    [ "$(sed -n "$((i + 1))p" "$tmp/client.out")" = "$((i + 1)) $(sed -n "$((i + 1))p" "$tmp/batch.out")" ] \
        || fail "request $i: ids '$(sed -n "$((i + 1))p" "$tmp/client.out")' vs the batch's '$(sed -n "$((i + 1))p" "$tmp/batch.out")'"
    awk -v l=$((i + 1)) '$1 == l { $1 = ""; print substr($0, 2) }' "$tmp/client.lp" | sort > "$tmp/c$i"
    sort "$tmp/d/req$i.logprobs" > "$tmp/b$i"
    [ -s "$tmp/b$i" ] || fail "request $i: the batch wrote no logprobs"
    cmp -s "$tmp/c$i" "$tmp/b$i" || { diff "$tmp/c$i" "$tmp/b$i" | head; fail "request $i: logprobs differ from the ranks' batch run"; }
  done
  echo "4 requests: ids and $(wc -l < "$tmp/client.lp") logprob lines through the coordinator equal the batch run's"
  # scoring: no token, finish length, a logprob for every prompt position but the first
  "$bin/moe-client" --connect "$ep" --ids 20,21,22,23,24,25,26,27,28,29,30,31 --max-tokens 0 --logprobs 2 \
      --prompt-logprobs --usage --ids-out --logprobs-out "$tmp/score.lp" > "$tmp/score.out" 2> "$tmp/score.err" \
      || fail "scoring: $(cat "$tmp/score.err")"
  grep -q "finish: length prompt=12 completion=0" "$tmp/score.err" || fail "scoring finish: $(cat "$tmp/score.err")"
  [ "$(grep -c ' P ' "$tmp/score.lp")" = 11 ] && [ "$(grep -c ' T ' "$tmp/score.lp")" = 0 ] || fail "scoring: $(cat "$tmp/score.lp")"
  echo "max_tokens 0: $(cat "$tmp/score.err")"
  # ignore_eos and min_tokens: find a greedy run that says EOS (past it with ignore_eos)
  awk 'BEGIN { for (i = 2; i < 66; i++) print "ids:" i, 24, "ignore_eos=1" }' > "$tmp/search"
  "$bin/moe-client" --connect "$ep" --file "$tmp/search" --ids-out > "$tmp/found" 2> "$tmp/found.err" || fail "search"
  read -r p at < <(awk -v e="$eos" '{ for (k = 3; k <= NF - 1; k++) if ($k == e) { print $1 + 1, k - 1; exit } }' "$tmp/found")
  [ -n "${p:-}" ] || fail "no greedy run of 64 prompts says EOS ($eos) after its first token: nothing to test with"
  past=$(awk -v p="$p" '$1 == p - 1 { $1 = ""; print substr($0, 2) }' "$tmp/found")
  stopped=$("$bin/moe-client" --connect "$ep" --ids "$p" --max-tokens 24 --ids-out) || fail "without ignore_eos"
  [ "$stopped" = "$(echo "$past" | cut -d' ' -f1-"$at")" ] || fail "without ignore_eos: '$stopped' (EOS at $at of '$past')"
  again=$("$bin/moe-client" --connect "$ep" --ids "$p" --max-tokens 24 --ids-out --ignore-eos) || fail "--ignore-eos"
  [ "$again" = "$past" ] || fail "--ignore-eos: '$again' vs '$past'"
  first=$(echo "$past" | cut -d' ' -f1)
  one=$("$bin/moe-client" --connect "$ep" --ids "$p" --max-tokens 24 --ids-out --stop-id "$first") || fail "stop id"
  [ "$one" = "$first" ] || fail "--stop-id $first: '$one'"
  held=$("$bin/moe-client" --connect "$ep" --ids "$p" --max-tokens 24 --ids-out --stop-id "$first" --min-tokens 3) \
      || fail "min tokens"
  echo "$held" | awk -v s="$first" -v e="$eos" '{ if (NF < 3) exit 1; for (k = 1; k <= 3; k++) if ($k == s || $k == e) exit 1 }' \
      || fail "--min-tokens 3 --stop-id $first: '$held'"
  echo "ok: prompt $p says EOS at token $at and stops there; --ignore-eos runs on; --min-tokens 3 holds off stop id $first ('$held')"
  ;;
*) fail "unknown check $1" ;;
esac
