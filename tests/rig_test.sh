#!/usr/bin/env bash
# The cluster across emulated hosts (deploy/rig: network namespaces on a
# bridge, Open MPI's TCP transport, ZMQ over TCP; root only):
#
#   rig_test.sh hostfile   3 hosts x 1 rank and the coordinator in a namespace
#       of its own, started by the code blocks of docs/deploy.md's section
#       "Over real machines with a hostfile" as written (only its documented
#       variables set): every node the same binary and model; the doc's
#       client request and 8 more (greedy and seeded) equal moe-run token for
#       token; the worker link under CURVE with the doc's keys (hostfile-keys,
#       made in the rig's folder, mode 0700): a rank started on h1 with a key
#       pair of its own is refused at the handshake (the coordinator logs its
#       address, 10.77.0.11), and one without keys is never heard either (no
#       hello of either read); 16 streaming requests (e2e_client many) once undisturbed, then
#       with host h2's link cut for 3 s mid-stream: the supervisor restarts
#       the job on every host once h2 answers, and every request's tokens
#       equal the undisturbed run's (no gap, no repeat).  After the run,
#       nothing of the rig is left: no namespace, link or bridge, no process
#       in its namespaces (by their inodes), no moe process of the run.
#   rig_test.sh teardown   a run that fails (exit 1, processes still inside
#       every namespace) leaves nothing behind through its trap; one that is
#       killed with SIGKILL (no trap) is cleaned by "rig.sh down NAME".
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
rig=$root/deploy/rig/rig.sh
bin=${MOE_BIN:?MOE_BIN not set}
fixtures=${MOE_FIXTURES:?MOE_FIXTURES not set}
[ "$(id -u)" = 0 ] || { echo "skipped: the rig needs root (network namespaces)"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-rig.XXXXXX")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
name=moerig$(od -An -N2 -tx2 /dev/urandom | tr -d ' ' | cut -c1-3)
fail() { echo "FAIL: $*"; for f in "$tmp"/coord.err "$tmp"/run*.out; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done; exit 1; }
source "$here/moe_run_cmp.sh"
wait_for() {
  local i
  for i in $(seq 1 $(($3 * 20))); do grep -Eq "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
now_us() { echo $(( $(date +%s%N) / 1000 )); }

# the net namespaces' inodes, to find any process left in one after "ip netns del"
ns_inodes() { local f; for f in /run/netns/"$1"-*; do [ -e "$f" ] && stat -L -c %i "$f"; done; }
procs_in() { # inode...: pids whose network namespace is one of them
  local p i
  for p in /proc/[0-9]*; do
    i=$(stat -L -c %i "$p/ns/net" 2>/dev/null) || continue
    for n in "$@"; do [ "$i" = "$n" ] && echo "${p#/proc/} $(tr '\0' ' ' < "$p/cmdline" 2>/dev/null | cut -c1-80)"; done
  done
}
# nothing of rig $1 left (inodes: $2...)
assert_gone() {
  local n=$1; shift
  "$rig" check "$n" || fail "rig $n not torn down"
  local left
  left=$(procs_in "$@")
  [ -z "$left" ] || fail "processes left in the rig's namespaces: $left"
}

case ${1:?usage: rig_test.sh hostfile | teardown} in
hostfile)
  coord_sid=""
  cleanup() {
    [ -n "$coord_sid" ] && { pkill -TERM -s "$coord_sid" 2>/dev/null; sleep 0.2; pkill -KILL -s "$coord_sid" 2>/dev/null; }
    "$rig" down "$name" > /dev/null 2>&1
    rm -rf "$tmp"
  }
  trap cleanup EXIT
  t0=$(now_us)
  "$rig" up "$name" --hosts 3 || fail "rig up failed"
  inodes=$(ns_inodes "$name")
  # shellcheck disable=SC1090
  . "/tmp/moe-rig-$name/env"
  # the doc's variables, and nothing else
  export MOE_BIN=$bin MODEL=$fixtures/models/v3_mini_f32.gguf HOSTFILE=$RIG_DIR/hostfile RANKS=3 NET=$RIG_NET COORD=$RIG_COORD
  export KEYS=$RIG_DIR/keys
  # (a job file of this run's own: the default one is named after the
  # workers endpoint, which every rig on this machine shares, 10.77.0.1)
  export COORD_FLAGS="--worker-timeout-ms 2000 --restart-backoff-ms 200 --max-start-failures 8 --metrics-file $tmp/metrics --job-file $tmp/job"
  # the code blocks of the doc's hostfile section, by their marker
  block() {
    awk -v want="$1" '/^## / { in_s = ($0 == "## Over real machines with a hostfile") }
      in_s && $0 == "```sh " want { on = 1; next } on && /^```/ { on = 0 } on' "$root/docs/deploy.md"
  }
  for b in keys check coordinator client; do
    block hostfile-$b > "$tmp/$b.sh"
    [ -s "$tmp/$b.sh" ] || fail "docs/deploy.md has no hostfile-$b block in its hostfile section"
  done

  # 0. the worker link's keys, private
  "$rig" exec "$name" c bash "$tmp/keys.sh" > "$tmp/keys.out" 2>&1 || fail "the keys block failed: $(cat "$tmp/keys.out")"
  [ "$(stat -c %a "$KEYS")" = 700 ] || fail "$KEYS is mode $(stat -c %a "$KEYS"), not 700"
  for k in coordinator job; do
    [ -s "$KEYS/$k.key" ] && [ "$(stat -c %a "$KEYS/$k.key_secret")" = 600 ] || fail "no private $k key pair in $KEYS"
  done

  # 1. every node the same binary and model
  # (the ranks' lines on stdout; Open MPI's own warnings, such as a setpgid
  # that lost a race with the exec under load, go to stderr and do not count)
  "$rig" exec "$name" c bash "$tmp/check.sh" > "$tmp/check.out" 2> "$tmp/check.err" ||
    fail "the check block failed: $(cat "$tmp/check.out" "$tmp/check.err")"
  cat "$tmp/check.out" "$tmp/check.err"
  [ "$(wc -l < "$tmp/check.out")" = 3 ] || fail "the check block printed $(wc -l < "$tmp/check.out") lines, 3 ranks: $(cat "$tmp/check.out")"
  [ "$(cut -d' ' -f1 "$tmp/check.out" | sort -u | wc -l)" = 3 ] || fail "ranks not on 3 different hosts"
  [ "$(cut -d' ' -f2- "$tmp/check.out" | sort -u | wc -l)" = 1 ] || fail "the nodes disagree"

  # 2. the coordinator and its job, across the hosts
  setsid "$rig" exec "$name" c bash "$tmp/coordinator.sh" > "$tmp/coord.out" 2> "$tmp/coord.err" &
  coord_sid=$!
  wait_for "$tmp/coord.out" "moe-coordinator: ready" 60 || fail "the cluster never became ready"
  t_ready=$(now_us)
  for r in 0 1 2; do
    grep -q "rank $r joined (.*CURVE key checked" "$tmp/coord.err" || fail "rank $r never joined over CURVE"
  done
  # each rank on its own host (its worker's network namespace)
  for h in 1 2 3; do
    [ -n "$(ip netns pids "$name-h$h" | xargs -r ps -o comm= -p | grep -x moe-worker)" ] || fail "no moe-worker on h$h"
  done

  # 3. the doc's request, and 8 more, equal moe-run
  "$rig" exec "$name" c bash "$tmp/client.sh" > "$tmp/client.out" 2> "$tmp/client.err" || fail "the client block failed: $(cat "$tmp/client.err")"
  prompt=$(sed -n 's/.*--prompt "\([^"]*\)".*/\1/p' "$tmp/client.sh") n=$(sed -n 's/.*--max-tokens \([0-9]*\).*/\1/p' "$tmp/client.sh")
  [ -n "$prompt" ] && [ -n "$n" ] || fail "cannot read the client block's prompt and max tokens"
  "$bin/moe-run" --model "$MODEL" --prompt "$prompt" -n "$n" --text > "$tmp/client.want" || fail "moe-run failed"
  cmp -s "$tmp/client.out" "$tmp/client.want" || fail "the doc's request: cluster '$(cat "$tmp/client.out")' vs moe-run '$(cat "$tmp/client.want")'"
  echo "ok: the doc's request equals moe-run: $(cat "$tmp/client.out")"
  awk 'BEGIN { srand(9); for (i = 0; i < 8; i++) { n = 1 + int(rand() * 30); s = ""
         for (j = 0; j < n; j++) s = s (j ? "," : "") int(rand() * 400)
         opt = (i % 3 == 1) ? sprintf(" seed=%d temp=0.9 top_p=0.95", 100 + i) : ((i % 3 == 2) ? sprintf(" seed=%d temp=1.1 top_k=40", 7 * i) : "")
         print "ids:" s, 8 + int(rand() * 24) opt } }' > "$tmp/reqs"
  "$rig" exec "$name" c "$bin/moe-client" --connect "tcp://$COORD:5555" --file "$tmp/reqs" --concurrency 8 --ids-out --ignore-eos \
      > "$tmp/reqs.out" 2> "$tmp/reqs.err" || fail "moe-client failed: $(cat "$tmp/reqs.err")"
  equal_to_moe_run "$tmp/reqs" "$tmp/reqs.out" "$MODEL" 8
  echo "ok: 8 requests (greedy and seeded) across 3 hosts equal moe-run token for token"

  # 3b. ranks the job's key does not admit, from h1 over the emulated network:
  # one with no keys (plain ZMTP against the CURVE endpoint), then one with
  # a pair of its own; each claims rank 0 of 1, which a hello read would
  # get refused for ("expects 3 ranks"): no such line means no hello was read
  mkdir -m 0700 "$tmp/rogue"
  h1addr=$(awk -v ns="$name-h1" '$2 == ns { print $1 }' "$RIG_DIR/hosts")
  [ -n "$h1addr" ] || fail "no address of h1 in $RIG_DIR/hosts"
  "$bin/moe-keygen" "$tmp/rogue" mallory > /dev/null || fail "moe-keygen failed"
  lines=$(wc -l < "$tmp/coord.err")
  rogue() { # NAME [curve flags...]: one rank in h1's namespace, at most 60 s
    local n=$1; shift
    setsid "$rig" exec "$name" h1 timeout 60 mpirun --allow-run-as-root -np 1 --bind-to none --mca btl self \
        "$bin/moe-worker" --model "$MODEL" --coordinator "tcp://$COORD:5556" "$@" > /dev/null 2> "$tmp/$n.err" &
  }
  rogue nokey
  nokey=$!
  wait_for "$tmp/nokey.err" "moe-worker: ready" 60 || fail "the rank without keys never started: $(cat "$tmp/nokey.err")"
  rogue mallory --curve-server-key "$KEYS/coordinator.key" --curve-secret "$tmp/rogue/mallory.key_secret"
  mallory=$!
  # (the rank without keys says hello as it starts: by the time the second
  # is refused, the first has been trying for the second's whole start)
  for _ in $(seq 1 1200); do
    tail -n +"$lines" "$tmp/coord.err" | grep -q "refused a connection to the 'worker' endpoint from $h1addr" && break
    sleep 0.05
  done
  pkill -TERM -s "$nokey" 2>/dev/null; pkill -TERM -s "$mallory" 2>/dev/null
  wait "$nokey" "$mallory" 2>/dev/null
  tail -n +"$lines" "$tmp/coord.err" | grep "refused a connection to the 'worker' endpoint from $h1addr" ||
    fail "no refusal of h1's rank with its own key logged: $(tail -n +"$lines" "$tmp/coord.err" | head -5)"
  tail -n +"$lines" "$tmp/coord.err" | grep -E "refused a worker rank|refused a hello|joined \(" &&
    fail "a hello of a rank without the job's key was read"
  "$rig" exec "$name" c "$bin/moe-client" --connect "tcp://$COORD:5555" --ids 1,2,3 --max-tokens 4 --ids-out > /dev/null 2>&1 ||
    fail "the job did not serve after the refused ranks"
  echo "ok: ranks on h1 without the job's key (none; one of their own) refused over the rig's network, no hello read; the job serves on"

  # 4. 16 streams undisturbed, then with h2's link cut for 3 s
  tokens_of() {
    awk '$1 == "c" { r = $2; if ($3 != n[r] + 0) { printf "%s: chunk index %s after %d tokens\n", r, $3, n[r] > "/dev/stderr"; bad = 1 }
                     for (i = 6; i <= NF; i++) t[r] = t[r] " " $i; n[r] += $4 }
         $1 == "f" { if ($3 != "length" || $4 != "OK") { printf "%s ended %s %s\n", $2, $3, $4 > "/dev/stderr"; bad = 1 } f[r = $2] = 1 }
         $1 == "e" { printf "%s refused: %s\n", $2, $0 > "/dev/stderr"; bad = 1 }
         END { for (r in t) print r t[r]; for (r in t) if (!(r in f)) { printf "%s never finished\n", r > "/dev/stderr"; bad = 1 }
               exit bad }' "$1" | sort
  }
  "$rig" exec "$name" c "$bin/e2e_client" many 16 "tcp://$COORD:5555" > "$tmp/base.out" || fail "the undisturbed run failed"
  tokens_of "$tmp/base.out" > "$tmp/base.tok" || fail "the undisturbed run is wrong"
  # the link cutter waits for the client's SIGUSR1 (sent once r0, a
  # 600-token request, has 20 tokens), cuts h2's link, restores it 3 s later
  (
    trap : USR1
    sleep 600 & wait $!
    kill $! 2>/dev/null
    "$rig" cut "$name" h2 && echo "cut $(now_us)"
    sleep 3
    "$rig" restore "$name" h2 && echo "restored $(now_us)"
  ) > "$tmp/cutter.out" 2>&1 &
  cutter=$!
  printf 'r0 20\n%s %s\n' "$cutter" "$(kill -l USR1)" > "$tmp/pids"
  lines=$(wc -l < "$tmp/coord.err")
  "$rig" exec "$name" c "$bin/e2e_client" many 16 "$tmp/pids" "tcp://$COORD:5555" > "$tmp/run1.out" ||
    fail "the client did not see every request end after the link cut"
  wait "$cutter"
  cat "$tmp/cutter.out"
  grep -q "^restored" "$tmp/cutter.out" || fail "the link was not cut and restored"
  t_cut=$(awk '$1 == "cut" { print $2 }' "$tmp/cutter.out")
  done_at=$(awk '$1 == "fault" { print $4 }' "$tmp/run1.out")
  [ -n "$done_at" ] && [ "$done_at" -lt 16 ] || fail "the link was cut after every request had finished"
  tokens_of "$tmp/run1.out" > "$tmp/run1.tok" || fail "a request was wrong after the link cut"
  cmp -s "$tmp/base.tok" "$tmp/run1.tok" || { diff "$tmp/base.tok" "$tmp/run1.tok" | head -5; fail "tokens differ from the undisturbed run"; }
  tail -n +"$lines" "$tmp/coord.err" | grep "supervisor:" | head -12
  tail -n +"$lines" "$tmp/coord.err" | grep -q "supervisor: .*killed" || fail "the supervisor never killed the stuck job"
  # the first token after the longest silence following the cut
  first=$(awk -v t="$t_cut" '$1 == "c" && $5 > t { print $5 }' "$tmp/run1.out" | sort -n |
          awk -v t="$t_cut" '{ if ($1 - t > gap) { gap = $1 - t; at = $1 } t = $1 } END { printf "%.0f", at }')
  resumed=$(awk -v t="$t_cut" '$1 == "c" && $5 > t { s[$2] = 1 } END { print length(s) }' "$tmp/run1.out")
  [ "$resumed" -ge 1 ] || fail "no stream went on after the cut"
  echo "ok: h2's link cut for 3 s with $((16 - done_at)) of 16 streams running: all 16 equal the undisturbed run" \
       "($resumed resumed), first token again $(( (first - t_cut) / 1000 )) ms after the cut"
  coord=$(pgrep -s "$coord_sid" -x moe-coordinator)
  [ -n "$coord" ] || fail "no coordinator process"
  kill -USR1 "$coord"
  wait_for "$tmp/metrics" "moe:worker_job_restarts_total" 10 || fail "no metrics file"
  restarts=$(awk '/^moe:worker_job_restarts_total/ { print $2 }' "$tmp/metrics")
  grep -E "^moe:(worker_job_restarts_total|replayed_requests_total|worker_job_up)" "$tmp/metrics"
  [ "${restarts%.*}" -ge 1 ] || fail "no restart counted"
  # the job is back on all three hosts
  for h in 1 2 3; do
    [ -n "$(ip netns pids "$name-h$h" | xargs -r ps -o comm= -p | grep -x moe-worker)" ] || fail "no moe-worker on h$h after the restart"
  done

  # 5. stop, tear down, and nothing is left
  kill -TERM "$coord"
  for _ in $(seq 1 200); do kill -0 "$coord" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$coord" 2>/dev/null && fail "the coordinator did not stop on SIGTERM"
  "$rig" down "$name"
  # shellcheck disable=SC2086
  assert_gone "$name" $inodes
  left=$(pgrep -af "moe-(coordinator|worker) --model $MODEL .*tcp://$COORD:555" || true)
  [ -z "$left" ] || fail "moe processes left: $left"
  coord_sid=""
  echo "ok: the rig took $(( ($(now_us) - t0) / 1000 )) ms, $(( (t_ready - t0) / 1000 )) ms to the ready line; nothing left"
  ;;
teardown)
  trap 'rm -rf "$tmp"' EXIT
  # a failed run: its trap tears the rig down
  cat > "$tmp/failing.sh" <<EOF
set -e
trap '"$rig" down ${name}a' EXIT
"$rig" up ${name}a --hosts 2 --cap 1gbit
for h in c h1 h2; do setsid "$rig" exec ${name}a \$h sleep 300 < /dev/null > /dev/null 2>&1 & done
ls /run/netns/${name}a-* | xargs -n1 stat -L -c %i > "$tmp/inodes.a"
false
EOF
  bash "$tmp/failing.sh" && fail "the failing run did not fail"
  # shellcheck disable=SC2046
  assert_gone "${name}a" $(cat "$tmp/inodes.a")
  echo "ok: a failed run left nothing ($(wc -l < "$tmp/inodes.a") namespaces, processes in each)"
  # a killed run: no trap, "rig.sh down NAME" cleans what it left
  cat > "$tmp/killed.sh" <<EOF
"$rig" up ${name}b --hosts 2
for h in c h1 h2; do "$rig" exec ${name}b \$h sleep 300 < /dev/null > /dev/null 2>&1 & done
ls /run/netns/${name}b-* | xargs -n1 stat -L -c %i > "$tmp/inodes.b"
echo ready
exec sleep 300
EOF
  bash "$tmp/killed.sh" > "$tmp/killed.out" 2>&1 &
  killed=$!
  wait_for "$tmp/killed.out" "^ready" 20 || fail "the second rig never came up: $(cat "$tmp/killed.out")"
  kill -KILL "$killed"
  wait "$killed" 2>/dev/null
  "$rig" check "${name}b" > /dev/null 2>&1 && fail "rig.sh check sees nothing of a rig that is up"
  "$rig" down "${name}b"
  # shellcheck disable=SC2046
  assert_gone "${name}b" $(cat "$tmp/inodes.b")
  echo "ok: a killed run's rig was torn down by name ($(wc -l < "$tmp/inodes.b") namespaces)"
  ;;
*) echo "unknown check $1" >&2; exit 2 ;;
esac
