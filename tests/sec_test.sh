#!/usr/bin/env bash
# Security checks (docs/security.md) with real processes on loopback: a
# coordinator, a real mpirun worker job, clients and an impostor, in a
# per-test folder.  Readiness is always a line the programs print.
#
#   sec_test.sh impostor | curve_clients | curve_workers | tls | nonlocal | nohello | serve_keys
#
# impostor:      a forged WorkerHello for rank 0 (another job, max_context 8)
#                while a client's request streams: refused, no Assign reaches
#                the impostor, the client's text equals a run without it, and
#                the context is not cut (a 20-token prompt still runs)
# curve_clients: --client-keys: a listed key is served (moe-client and
#                moe-bench's ZMQ target); an unlisted key and
#                no key at all get nothing (and the refusal is logged)
# curve_workers: the worker link under CURVE (--worker-key, a 2-rank mpirun job
#                with the job's secret): the same greedy outputs as a plain
#                run; a rank with the wrong key never joins
# tls:           --tls-cert/--tls-key with a self-signed certificate made here:
#                curl --cacert gets /v1/models over https; plain http and an
#                unverified certificate fail; a key file open to others is refused
# nonlocal:      a worker endpoint that is not loopback is refused at start
#                without keys, with a message; --insecure overrides
# nohello:       a GenerateRequest before any Hello is refused; after the
#                Hello the same request is served
# serve_keys:    deploy/serve.sh --keys DIR on a worker endpoint that is not
#                taken as loopback (tcp://lo, which binds on loopback; the ranks
#                connect to the bound address, {workers}): the
#                pairs are made, the ranks join over CURVE, a request is served;
#                without --keys serve.sh fails with the coordinator's message
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
model=${MOE_FIXTURES:?MOE_FIXTURES not set}/models/v3_mini_f32.gguf
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-sec.XXXXXX")
source "$here/proc.sh"

# start_coord [coordinator flags...]: a coordinator on ipc:// endpoints
start_coord() {
  setsid "$bin/moe-coordinator" --model "$model" --listen "ipc://$tmp/c" --workers "ipc://$tmp/w" "$@" \
      > "$tmp/coord.out" 2> "$tmp/coord.err" &
  coord=$!; pids+=("$coord")
  ep="ipc://$tmp/c"
}
# start_job RANKS [worker flags...]
start_job() {
  local ranks=$1; shift
  "$here/mpirun.sh" "$ranks" 300 "$bin/moe-worker" --model "$model" --coordinator "ipc://$tmp/w" --ignore-eos "$@" \
      > "$tmp/worker.out" 2> "$tmp/worker.err" &
  job=$!; pids+=("$job")
}
wait_ready() { wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"; }
stop_all() {
  kill -TERM "$coord" 2>/dev/null; wait "$coord" 2>/dev/null
  kill -TERM "$job" 2>/dev/null; wait "$job" 2>/dev/null
}
keys() { for n in "$@"; do "$bin/moe-keygen" "$tmp/keys" "$n" > /dev/null || fail "moe-keygen $n"; done; }
mkdir -p "$tmp/keys"

case ${1:?usage: sec_test.sh CHECK} in
impostor)
  start_coord --ranks 1
  start_job 1 --heartbeat-ms 100
  wait_ready
  vocab=$("$bin/moe-client" --connect "$ep" --ids 1 --max-tokens 1 -v 2>&1 >/dev/null | sed -n 's/.*vocabulary \([0-9]*\),.*/\1/p')
  [ -n "$vocab" ] || fail "no vocabulary size from the hello"
  prompt=$(seq -s, 1 10)
  # ids, not text: the streamed text of random weights is not compared here
  # (its invalid UTF-8 is replaced chunk by chunk)
  wait_for "$tmp/coord.err" "rank 0: 0 active" 30 || fail "the rank never reported idle"
  z0=$(grep -c "rank 0: 0 active" "$tmp/coord.err")
  "$bin/moe-client" --connect "$ep" --ids "$prompt" --max-tokens 2500 --temp 0 --ids-out > "$tmp/ref.txt" \
      2> "$tmp/ref.err" || fail "the reference run failed"
  # the rank's heartbeats (every 100 ms) say when it holds the victim's
  # sequence: first idle again after the reference (a line of its own, not
  # the one from before it: else the victim could start while the rank
  # still reports the reference and no new '1 active' line would come)...
  for _ in $(seq 1 600); do [ "$(grep -c "rank 0: 0 active" "$tmp/coord.err")" -gt "$z0" ] && break; sleep 0.05; done
  [ "$(grep -c "rank 0: 0 active" "$tmp/coord.err")" -gt "$z0" ] || fail "the rank never reported idle after the reference"
  n0=$(grep -c "rank 0: 1 active" "$tmp/coord.err")
  "$bin/moe-client" --connect "$ep" --ids "$prompt" --max-tokens 2500 --temp 0 --ids-out > "$tmp/victim.txt" \
      2> "$tmp/victim.err" &
  victim=$!; pids+=("$victim")
  # ... then running it
  for _ in $(seq 1 600); do [ "$(grep -c "rank 0: 1 active" "$tmp/coord.err")" -gt "$n0" ] && break; sleep 0.05; done
  [ "$(grep -c "rank 0: 1 active" "$tmp/coord.err")" -gt "$n0" ] || fail "the victim's request never ran"
  "$bin/sec_client" impostor "ipc://$tmp/w" "$vocab" 1 > "$tmp/imp.out" 2> "$tmp/imp.err" &
  impostor=$!; pids+=("$impostor")
  wait_for "$tmp/imp.out" "^(refused|accepted|no answer)" 30 || fail "the impostor got no answer"
  if ! kill -0 "$victim" 2>/dev/null; then
    wait "$victim" || fail "the victim's request failed when the impostor said hello: $(cat "$tmp/victim.err")"
    fail "the victim finished before the impostor was answered (the test proves nothing)"
  fi
  wait "$impostor"
  imp=$?
  cat "$tmp/imp.out"
  [ "$imp" = 0 ] || fail "the impostor's hello was not refused, or it got work: $(cat "$tmp/imp.out" "$tmp/imp.err")"
  wait "$victim" || fail "the victim's request failed: $(cat "$tmp/victim.err")"
  cmp -s "$tmp/ref.txt" "$tmp/victim.txt" || fail "the victim's tokens differ from the run without the impostor"
  grep -q "refused a hello for rank 0" "$tmp/coord.err" || fail "the refusal was not logged"
  grep -q "context is 8 " "$tmp/coord.err" && fail "the refused hello changed the context"
  "$bin/moe-client" --connect "$ep" --ids "$(seq -s, 1 20)" --max-tokens 4 > /dev/null 2> "$tmp/ctx.err" \
      || fail "a 20-token prompt was refused after the impostor: $(cat "$tmp/ctx.err")"
  echo "ok: the impostor was refused and got nothing; the victim's $(wc -w < "$tmp/victim.txt") tokens equal the reference; context intact"
  ;;
curve_clients)
  keys coord alice mallory
  mkdir "$tmp/keys/clients" && cp "$tmp/keys/alice.key" "$tmp/keys/clients/"
  start_coord --ranks 1 --curve-secret "$tmp/keys/coord.key_secret" --client-keys "$tmp/keys/clients"
  start_job 1
  wait_ready
  srv=(--curve-server-key "$tmp/keys/coord.key")
  "$bin/moe-client" --connect "$ep" "${srv[@]}" --curve-secret "$tmp/keys/alice.key_secret" --ids 1,2,3 --max-tokens 8 \
      --ids-out > "$tmp/alice.out" 2> "$tmp/alice.err" || fail "the listed key was not served: $(cat "$tmp/alice.err")"
  [ "$(wc -w < "$tmp/alice.out")" = 8 ] || fail "the listed key got $(cat "$tmp/alice.out")"
  # moe-bench's ZMQ target takes the same keys
  "$bin/moe-bench" --connect "$ep" "${srv[@]}" --curve-secret "$tmp/keys/alice.key_secret" --tokenizer "$model" \
      --dataset-name random --random-input-len 8 --random-output-len 4 --num-prompts 4 --metrics-url none \
      --ignore-eos --disable-tqdm --timeout 30 > "$tmp/bench.out" 2> "$tmp/bench.err" \
      || fail "moe-bench with the listed key failed: $(tail -5 "$tmp/bench.err")"
  grep -Eq "Successful requests: +4" "$tmp/bench.out" || fail "moe-bench: $(cat "$tmp/bench.out")"
  "$bin/moe-client" --connect "$ep" "${srv[@]}" --curve-secret "$tmp/keys/mallory.key_secret" --ids 1,2,3 \
      --max-tokens 8 --timeout 3 > "$tmp/mallory.out" 2> "$tmp/mallory.err"
  rc=$?
  [ "$rc" = 3 ] || fail "an unlisted key: exit $rc, not 3 (timeout): $(cat "$tmp/mallory.out" "$tmp/mallory.err")"
  [ -s "$tmp/mallory.out" ] && fail "an unlisted key got output"
  grep -q "refused a connection to the 'client' endpoint.*its key is not listed" "$tmp/coord.err" \
      || fail "the unlisted key's refusal was not logged"
  "$bin/moe-client" --connect "$ep" --ids 1,2,3 --max-tokens 8 --timeout 3 > "$tmp/nokey.out" 2> "$tmp/nokey.err"
  rc=$?
  [ "$rc" = 3 ] || fail "no key: exit $rc, not 3 (timeout): $(cat "$tmp/nokey.out" "$tmp/nokey.err")"
  [ -s "$tmp/nokey.out" ] && fail "a client without a key got output"
  # a secret key open to others is refused by the client before it connects
  chmod 644 "$tmp/keys/alice.key_secret"
  "$bin/moe-client" --connect "$ep" "${srv[@]}" --curve-secret "$tmp/keys/alice.key_secret" --ids 1 --max-tokens 1 \
      > /dev/null 2> "$tmp/mode.err" && fail "a secret key of mode 644 was used"
  grep -q "must not be open to group or others" "$tmp/mode.err" || fail "no clear message: $(cat "$tmp/mode.err")"
  stop_all
  grep -q "CURVE: 2 connections admitted" "$tmp/coord.err" || fail "the admitted count is wrong: $(grep CURVE "$tmp/coord.err")"
  echo "ok: a listed key served (moe-client, moe-bench); an unlisted key and no key got nothing (timeouts); a 644 secret refused"
  ;;
curve_workers)
  keys coord job other
  awk 'BEGIN { for (i = 0; i < 6; i++) { s = ""; for (j = 0; j <= i + 2; j++) s = s (j ? "," : "") (7 * i + 3 * j) % 300 + 1
         print "ids:" s, 12 + 3 * i } }' > "$tmp/reqs"
  # plain first
  start_coord --ranks 2
  start_job 2
  wait_ready
  "$bin/moe-client" --connect "$ep" --file "$tmp/reqs" --ids-out > "$tmp/plain.out" 2> "$tmp/plain.err" \
      || fail "the plain run failed: $(cat "$tmp/plain.err")"
  stop_all
  # the same over CURVE
  start_coord --ranks 2 --curve-secret "$tmp/keys/coord.key_secret" --worker-key "$tmp/keys/job.key"
  start_job 2 --curve-server-key "$tmp/keys/coord.key" --curve-secret "$tmp/keys/job.key_secret"
  wait_ready
  grep -q "CURVE key checked" "$tmp/coord.err" || fail "the ranks did not join through CURVE"
  "$bin/moe-client" --connect "$ep" --file "$tmp/reqs" --ids-out > "$tmp/curve.out" 2> "$tmp/curve.err" \
      || fail "the CURVE run failed: $(cat "$tmp/curve.err")"
  cmp -s "$tmp/plain.out" "$tmp/curve.out" || fail "outputs differ: $(diff "$tmp/plain.out" "$tmp/curve.out" | head)"
  stop_all
  # a job with another key never joins
  : > "$tmp/coord.out"
  start_coord --ranks 1 --curve-secret "$tmp/keys/coord.key_secret" --worker-key "$tmp/keys/job.key" \
      --no-ranks-timeout-ms 1000
  start_job 1 --curve-server-key "$tmp/keys/coord.key" --curve-secret "$tmp/keys/other.key_secret"
  wait_for "$tmp/coord.err" "refused a connection to the 'worker' endpoint" 60 || fail "the wrong job key was not refused"
  grep -q "moe-coordinator: ready" "$tmp/coord.out" && fail "a job with the wrong key joined"
  stop_all
  echo "ok: $(wc -l < "$tmp/curve.out") requests over the CURVE worker link equal the plain run; a wrong job key never joined"
  ;;
tls)
  command -v openssl > /dev/null || fail "openssl is not installed (scripts/setup.sh)"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2> "$tmp/openssl.err" \
      || fail "openssl req failed"
  chmod 644 "$tmp/key.pem"
  "$bin/moe-coordinator" --model "$model" --listen none --http 127.0.0.1:0 --workers "ipc://$tmp/w" \
      --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" > /dev/null 2> "$tmp/mode.err" && fail "a key of mode 644 was used"
  grep -q "must not be open to group or others" "$tmp/mode.err" || fail "no clear message: $(cat "$tmp/mode.err")"
  chmod 600 "$tmp/key.pem"
  start_coord --ranks 1 --http 127.0.0.1:0 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" --api-key sesame
  start_job 1
  wait_ready
  url=$(grep -Eo "https://127\.0\.0\.1:[0-9]+" "$tmp/coord.out")
  [ -n "$url" ] || fail "the ready line names no https:// address: $(cat "$tmp/coord.out")"
  code=$(curl -s --cacert "$tmp/cert.pem" -H "Authorization: Bearer sesame" -o "$tmp/models.json" -w '%{http_code}' \
      "$url/v1/models")
  [ "$code" = 200 ] || fail "https with the CA: HTTP $code"
  jq -e '.data[0].id' "$tmp/models.json" > /dev/null || fail "not a model list: $(cat "$tmp/models.json")"
  code=$(curl -s --cacert "$tmp/cert.pem" -H "Authorization: Bearer sesame" -H 'Content-Type: application/json' \
      -d '{"prompt":[1,2,3],"max_tokens":4}' -o "$tmp/gen.json" -w '%{http_code}' "$url/v1/completions")
  [ "$code" = 200 ] || fail "a completion over https: HTTP $code $(cat "$tmp/gen.json")"
  curl -s -o /dev/null "$url/v1/models" && fail "an unverified certificate was accepted by curl"
  curl -s -o /dev/null --max-time 5 "http://${url#https://}/v1/models" && fail "plain http was served on the TLS port"
  code=$(curl -s --cacert "$tmp/cert.pem" -o /dev/null -w '%{http_code}' "$url/v1/models")
  [ "$code" = 401 ] || fail "no api key over https: HTTP $code"
  echo "ok: https with a self-signed certificate (curl --cacert), plain http and unverified refused, --api-key still checked"
  ;;
nonlocal)
  for w in tcp://0.0.0.0:0 'tcp://*:0' tcp://lo:0 tcp://192.0.2.1:5556; do
    timeout 30 "$bin/moe-coordinator" --model "$model" --listen "ipc://$tmp/c" --workers "$w" > /dev/null 2> "$tmp/refused.err"
    rc=$?
    [ "$rc" = 2 ] || fail "--workers $w without keys: exit $rc, not 2"
    grep -q "is not a loopback or ipc:// endpoint.*--worker-key.*--insecure" "$tmp/refused.err" \
        || fail "no clear message for $w: $(cat "$tmp/refused.err")"
  done
  # loopback and ipc need nothing; tcp://lo (loopback, but not known as such) binds with --insecure
  for w in tcp://127.0.0.1:0 "ipc://$tmp/w"; do
    : > "$tmp/coord.err"
    setsid "$bin/moe-coordinator" --model "$model" --listen "ipc://$tmp/c" --workers "$w" > /dev/null 2> "$tmp/coord.err" &
    c=$!; pids+=("$c")
    wait_for "$tmp/coord.err" "waiting for 1 ranks" 30 || fail "--workers $w did not start: $(cat "$tmp/coord.err")"
    kill -TERM "$c"; wait "$c"
  done
  : > "$tmp/coord.err"
  setsid "$bin/moe-coordinator" --model "$model" --listen "ipc://$tmp/c" --workers tcp://lo:0 --insecure \
      > /dev/null 2> "$tmp/coord.err" &
  c=$!; pids+=("$c")
  wait_for "$tmp/coord.err" "waiting for 1 ranks" 30 || fail "--insecure did not start: $(cat "$tmp/coord.err")"
  grep -q "\-\-insecure: the worker endpoint tcp://lo:0 is open" "$tmp/coord.err" || fail "--insecure gave no warning"
  kill -TERM "$c"; wait "$c"
  echo "ok: non-loopback worker endpoints refused without keys (exit 2, with the fix named); loopback, ipc and --insecure start"
  ;;
nohello)
  start_coord --ranks 1
  start_job 1
  wait_ready
  "$bin/sec_client" nohello "$ep" > "$tmp/nohello.out" 2> "$tmp/nohello.err"
  rc=$?
  cat "$tmp/nohello.out"
  [ "$rc" = 0 ] || fail "a generate before hello was served, or the one after was not: $(cat "$tmp/nohello.out" "$tmp/nohello.err")"
  grep -q "^refused BAD_REQUEST: say hello first" "$tmp/nohello.out" || fail "no clear refusal"
  echo "ok: no request is served before a Hello"
  ;;
serve_keys)
  root=$(cd "$here/.." && pwd)
  "$root/deploy/serve.sh" --model "$model" --ranks 1 --listen "ipc://$tmp/c" --http none --workers tcp://lo:0 \
      --bin "$bin" > "$tmp/nokeys.out" 2> "$tmp/nokeys.err" && fail "serve.sh ran a non-loopback worker endpoint without keys"
  grep -q "is not a loopback or ipc:// endpoint" "$tmp/nokeys.err" "$tmp/nokeys.out" \
      || fail "serve.sh did not pass the refusal on: $(cat "$tmp/nokeys.err")"
  setsid "$root/deploy/serve.sh" --model "$model" --ranks 1 --listen "ipc://$tmp/c" --http none --workers tcp://lo:0 \
      --workers-connect "{workers}" --bin "$bin" --keys "$tmp/keys" > "$tmp/serve.out" 2> "$tmp/serve.err" &
  sv=$!; pids+=("$sv")
  wait_for "$tmp/serve.out" "serve: ready" 120 || fail "serve.sh --keys never became ready"
  for f in coordinator.key coordinator.key_secret job.key job.key_secret; do
    [ -f "$tmp/keys/$f" ] || fail "serve.sh --keys did not make $f"
  done
  grep -q "CURVE key checked" "$tmp/serve.err" || fail "the rank did not join over CURVE"
  "$bin/moe-client" --connect "ipc://$tmp/c" --ids 1,2,3 --max-tokens 4 --ids-out --timeout 30 > "$tmp/a.out" \
      2> "$tmp/a.err" || fail "a request through serve.sh --keys failed: $(cat "$tmp/a.err")"
  kill -TERM "$sv"; wait "$sv"
  echo "ok: serve.sh --keys made the pairs, the rank joined over CURVE, a request was served; without keys refused"
  ;;
*) echo "unknown check $1"; exit 2 ;;
esac
exit 0
