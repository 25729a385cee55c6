#!/usr/bin/env bash
# deploy/slurm/moe.sbatch in a real one-node Slurm (opt-in: MOE_TEST_SLURM=1,
# packages from scripts/setup-slurm.sh).  The test runs its own munged,
# slurmctld and slurmd as root with a configuration, key, state and free
# ports in a temporary folder (SLURM_CONF points there; /etc is not read),
# then, for each launcher (srun with PMIx, mpirun inside the allocation):
#   sbatch the script as written (2 tasks on the node, so 2 ranks),
#   waits for its "moe.sbatch: ready" line, sends greedy and seeded
#   requests with moe-client over TCP and checks them token for token
#   against moe-run, then `scancel --batch --signal=TERM` (the drain the
#   docs give): the coordinator drains, the job leaves the queue and no
#   process of it is left.
# Every daemon is stopped (by its pid) and the folder removed on the way out.
# Exit 77 (skipped, not passed) without MOE_TEST_SLURM=1.
set -u
[ "${MOE_TEST_SLURM:-0}" = 1 ] || { echo "opt-in: set MOE_TEST_SLURM=1 (and run scripts/setup-slurm.sh)"; exit 77; }
here=$(cd "$(dirname "$0")" && pwd)
sbatch_script=$(cd "$here/../deploy/slurm" && pwd)/moe.sbatch
bin=${MOE_BIN:?MOE_BIN not set}
fixture=${MOE_FIXTURES:?MOE_FIXTURES not set}/models/v3_mini_f32.gguf
for p in munged slurmctld slurmd sbatch srun squeue scancel sinfo; do
  command -v "$p" > /dev/null || { echo "FAIL: $p not installed (scripts/setup-slurm.sh)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "FAIL: the local Slurm runs its daemons as root"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-slurm.XXXXXX")
chmod 755 "$tmp"
# shellcheck source=tests/proc.sh
source "$here/proc.sh"
export SLURM_CONF=$tmp/slurm.conf
stop_all() {
  timeout 15 scancel --full --signal=KILL -u root 2>/dev/null   # only this cluster's jobs (SLURM_CONF)
  cleanup
}
trap stop_all EXIT

# the model under the test's folder, so every process of a job names it
ln -s "$fixture" "$tmp/model.gguf"
free_ports() { python3 -c "
import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s: x.bind(('127.0.0.1', 0))
print(' '.join(str(x.getsockname()[1]) for x in s))" "$1"; }
read -r ctld_port slurmd_port < <(free_ports 2)

dd if=/dev/urandom of="$tmp/munge.key" bs=1024 count=1 2> /dev/null
chmod 400 "$tmp/munge.key"
setsid munged -F -f --socket="$tmp/munge.sock" --key-file="$tmp/munge.key" --log-file="$tmp/munged.log" \
    --pid-file="$tmp/munged.pid" --seed-file="$tmp/munged.seed" > "$tmp/munged.out" 2> "$tmp/munged.err" &
pids+=("$!")
wait_for "$tmp/munged.err" "Created socket" 20 || fail "munged did not start"

host=$(hostname)
mkdir -p "$tmp/state" "$tmp/spool"
cat > "$SLURM_CONF" <<CONF
ClusterName=moetest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$tmp/munge.sock
CredType=cred/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
setsid slurmctld -D -i > "$tmp/slurmctld.out" 2> "$tmp/slurmctld.err" &
pids+=("$!")
setsid slurmd -D > "$tmp/slurmd.out" 2> "$tmp/slurmd.err" &
pids+=("$!")
ok=""
for _ in $(seq 1 300); do   # the controller's own answer: the node is idle
  [ "$(sinfo -h -o %t 2> /dev/null)" = idle ] && { ok=1; break; }
  sleep 0.1
done
[ -n "$ok" ] || fail "the local Slurm never had an idle node: $(sinfo 2>&1)"
echo "local Slurm up: $(sinfo -h -o '%P %D %t %N')"

# requests and what moe-run says for them
cat > "$tmp/reqs" <<REQS
ids:1,2,3,4,5 12
ids:7,8,9 10 seed=42 temp=0.8
ids:11,12,13,14 8 seed=7 temp=1.2 top_p=0.9
REQS

for launcher in srun mpirun; do
  sub=$tmp/$launcher
  mkdir -p "$sub"
  read -r cport hport wport < <(free_ports 3)
  job=$(cd "$sub" && sbatch --parsable --nodes=1 --ntasks-per-node=2 --output="$sub/job.out" \
      --export="ALL,MOE_LAUNCHER=$launcher,MOE_MODEL=$tmp/model.gguf,MOE_BIN=$bin,MOE_CLIENT_PORT=$cport,MOE_HTTP_PORT=$hport,MOE_WORKER_PORT=$wport,MOE_WORKER_FLAGS=--ignore-eos" \
      "$sbatch_script") || fail "$launcher: sbatch refused the script"
  wait_for "$sub/job.out" "^moe.sbatch: ready: 2 ranks" 120 || fail "$launcher: job $job never ready: $(cat "$sub/job.out")"
  grep -q "rank 1 joined" "$sub"/moe-coordinator-"$job".log || fail "$launcher: rank 1 never joined"
  # the worker port (0.0.0.0) runs over CURVE with the job's key, kept private
  [ "$(grep -c "joined (.*CURVE key checked" "$sub"/moe-coordinator-"$job".log)" = 2 ] ||
    fail "$launcher: the ranks did not join over CURVE: $(grep joined "$sub"/moe-coordinator-"$job".log)"
  [ "$(stat -c %a "$sub/moe-keys-$job")" = 700 ] || fail "$launcher: the keys' folder is not private"
  "$bin/moe-client" --connect "tcp://127.0.0.1:$cport" --file "$tmp/reqs" --ids-out > "$sub/client.out" \
      2> "$sub/client.err" || fail "$launcher: moe-client failed: $(cat "$sub/client.err")"
  i=0
  while read -r ids n opts; do
    i=$((i + 1))
    flags=()
    for kv in $opts; do
      case $kv in seed=*) flags+=(--seed "${kv#seed=}") ;; temp=*) flags+=(--temp "${kv#temp=}") ;;
        top_p=*) flags+=(--top-p "${kv#top_p=}") ;; esac
    done
    want=$("$bin/moe-run" --model "$fixture" --tokens "${ids#ids:}" -n "$n" --ignore-eos "${flags[@]}") \
        || fail "moe-run failed"
    got=$(awk -v l="$i" '$1 == l { $1 = ""; sub(/^ /, ""); print }' "$sub/client.out")
    [ -n "$got" ] && [ "$got" = "$want" ] && continue
    fail "$launcher: request $i: Slurm job '$got' vs moe-run '$want'"
  done < "$tmp/reqs"
  scancel --batch --signal=TERM "$job"
  gone=""
  for _ in $(seq 1 600); do
    squeue -h -j "$job" 2> /dev/null | grep -q . || { gone=1; break; }
    sleep 0.1
  done
  [ -n "$gone" ] || fail "$launcher: job $job still queued 60 s after scancel"
  grep -q "drained; exiting" "$sub"/moe-coordinator-"$job".log || fail "$launcher: the coordinator did not drain"
  left=""
  for _ in $(seq 1 100); do
    left=$(pgrep -f "$tmp/model.gguf") || break
    sleep 0.1
  done
  [ -z "$left" ] || fail "$launcher: processes left after the job: $(ps -o pid,args -p "$(echo "$left" | tr '\n' ',' | sed 's/,$//')")"
  [ -e "$sub/moe-keys-$job" ] && fail "$launcher: the job's keys were left in the submit directory"
  echo "ok: $launcher: 2 ranks ready under Slurm (worker link over CURVE), 3 requests equal moe-run token for token, drained on scancel, nothing left"
done
