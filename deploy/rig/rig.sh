#!/usr/bin/env bash
# deploy/rig/rig.sh — an emulated multi-host rig on one Linux machine (root):
# N "hosts" and a coordinator host, each a network namespace with one veth
# link (named eth0 inside) to a bridge, addresses in a private /24, optional
# per-link bandwidth caps (tc tbf on both ends of each link).  Open MPI
# launches across the hosts through an rsh agent that enters the host's
# namespace (no sshd); its TCP transport and ZMQ over TCP cross the bridge.
#
#   rig.sh up NAME [--hosts N] [--subnet A.B.C] [--cap RATE] [--dir DIR]
#       makes rig NAME (letters and digits, at most 10): namespaces NAME-c
#       (the coordinator, A.B.C.1) and NAME-h1..NAME-hN (A.B.C.11 ...), the
#       bridge NAME-br, links NAME-c / NAME-hI (the bridge's ends), and DIR
#       (default /tmp/moe-rig-NAME) holding:
#         hostfile   one line per host: "A.B.C.1I slots=1"
#         agent      the rsh agent (plm_rsh_agent): "agent HOST CMD..." runs
#                    CMD in HOST's namespace, under a hostname of its own
#         env        sourceable: RIG_NAME RIG_DIR RIG_HOSTS RIG_COORD (the
#                    coordinator's address) RIG_NET (the subnet, CIDR),
#                    RIG_KEYS (DIR/keys, made by "rig.sh keys") and
#                    OMPI_MCA_plm_rsh_agent
#       --hosts N (default 3, at most 64); --subnet (default 10.77.0);
#       --cap RATE: a tc tbf rate on every link, both directions (e.g.
#       1gbit, 10gbit, 25gbit; burst and queue sized from the rate).
#   rig.sh keys NAME BIN [DIR]     the worker link's CURVE keys: DIR/keys (mode
#                                  0700; DIR as given to up) with the pairs
#                                  "coordinator" and "job" made by BIN/moe-keygen
#                                  if missing (secrets mode 0600); prints the
#                                  folder.  The rig's addresses are not loopback:
#                                  the coordinator refuses its worker endpoint
#                                  there without --worker-key (docs/security.md)
#   rig.sh exec NAME HOST CMD...   runs CMD in a namespace (HOST: c, h1, h2 ...)
#   rig.sh cut NAME HOST           takes HOST's link down (the bridge's end:
#                                  the host sees its carrier go, as a pulled cable)
#   rig.sh restore NAME HOST       brings it back
#   rig.sh stats NAME HOST         bytes the host's link carried: "TX RX" as the
#                                  host sees them (/sys/class/net counters)
#   rig.sh cap NAME RATE|none      changes every link's cap (as up --cap)
#   rig.sh overlimits NAME         times a cap held a packet back, summed over
#                                  every link end (tc -s): 0 means no cap bound
#   rig.sh down NAME | --all       kills every process inside the rig's
#                                  namespaces, deletes them, the bridge and the
#                                  links, and DIR; --all: every rig ("moerig"
#                                  prefix, and any NAME-* left by a failed run
#                                  whose DIR still says so).  Safe to repeat.
#   rig.sh check NAME              exit 1 (saying what) if anything of rig NAME
#                                  is left: a namespace, a link, a process
#                                  inside, its DIR
#
# Names: a rig's objects all start with NAME, so teardown finds them by
# prefix even when its DIR is gone.  Latency cannot be added with netem on
# every kernel; the worker has a test knob for it instead (moe-worker
# --test-xchg-delay-us, docs/architecture.md).
set -euo pipefail

die() { echo "rig: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"

valid_name() { [[ $1 =~ ^[a-z][a-z0-9]{0,9}$ ]] || die "bad rig name '$1' (a letter, then letters or digits, at most 10)"; }

# every namespace, link and bridge of rig $1
rig_netns() { ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E "^$1-(c|h[0-9]+)$" || true; }
rig_links() { ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep -E "^$1-(c|br|h[0-9]+)$" || true; }
rig_pids() { local ns; for ns in $(rig_netns "$1"); do ip netns pids "$ns" 2>/dev/null || true; done; }

tbf() { # NETNS|"" DEV RATE: a token bucket on one end of a link (burst: 1 ms at the rate, at least 64 KiB)
  local ns=$1 dev=$2 rate=$3 bps burst
  case $rate in
    *gbit) bps=${rate%gbit}000000000 ;;
    *mbit) bps=${rate%mbit}000000 ;;
    *) die "--cap $rate: give it in mbit or gbit (e.g. 10gbit)" ;;
  esac
  [[ $bps =~ ^[1-9][0-9]{0,14}$ ]] || die "--cap $rate: a whole positive number of mbit or gbit, at most 999999gbit"
  burst=$(( bps / 8 / 1000 )); [ "$burst" -ge 65536 ] || burst=65536
  tc ${ns:+-n "$ns"} qdisc replace dev "$dev" root tbf rate "$rate" burst "$burst" latency 20ms ||
    die "tc tbf $rate on $dev failed"
}

up() {
  local name=$1; shift
  valid_name "$name"
  local hosts=3 subnet=10.77.0 cap="" dir=""
  while [ $# -gt 0 ]; do
    case $1 in
      --hosts) hosts=$2; shift 2 ;;
      --subnet) subnet=$2; shift 2 ;;
      --cap) cap=$2; shift 2 ;;
      --dir) dir=$2; shift 2 ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  [[ $hosts =~ ^[1-9][0-9]?$ ]] && [ "$hosts" -le 64 ] || die "--hosts $hosts: 1 to 64"
  [[ $subnet =~ ^(10|192\.168|172\.(1[6-9]|2[0-9]|3[01]))\.[0-9]{1,3}(\.[0-9]{1,3})?$ ]] &&
    [ "$(echo "$subnet" | tr . '\n' | awk '$1 <= 255' | wc -l)" = 3 ] || die "--subnet $subnet: three octets of a private range (e.g. 10.77.0)"
  dir=${dir:-/tmp/moe-rig-$name}
  [ -z "$(rig_netns "$name")$(rig_links "$name")" ] || die "rig $name exists (rig.sh down $name)"
  mkdir -p "$dir"
  echo "$name" > "$dir/name"
  # any failure from here on (a failed command, or die) tears down what was made
  trap 'echo "rig: setting up $name failed; tearing it down" >&2; down "$name" "$dir"' EXIT
  ip link add "$name-br" type bridge
  ip link set "$name-br" up
  local h ns addr
  : > "$dir/hostfile"
  : > "$dir/hosts"
  for h in c $(seq -f 'h%g' 1 "$hosts"); do
    ns=$name-$h
    if [ "$h" = c ]; then addr=$subnet.1; else addr=$subnet.$((10 + ${h#h})); fi
    ip netns add "$ns"
    ip link add "$name-$h" type veth peer name eth0 netns "$ns"
    ip link set "$name-$h" master "$name-br" up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    if [ -n "$cap" ]; then
      tbf "$ns" eth0 "$cap"          # what the host sends
      tbf "" "$name-$h" "$cap"       # what it receives
    fi
    echo "$addr $ns" >> "$dir/hosts"
    [ "$h" = c ] || echo "$addr slots=1" >> "$dir/hostfile"
  done
  # the rsh agent: Open MPI calls "agent HOST CMD..." as it would call ssh
  cat > "$dir/agent" <<EOF
#!/usr/bin/env bash
# rsh agent of rig $name: runs the command in the host's namespace, as ssh
# would on that host (a shell reads the words), with the host's own hostname
host=\$1; shift
ns=\$(awk -v h="\$host" '\$1 == h || \$2 == h || \$2 == "$name-" h { print \$2; exit }' "$dir/hosts")
[ -n "\$ns" ] || { echo "rig agent: no host \$host in rig $name" >&2; exit 255; }
exec ip netns exec "\$ns" unshare --uts sh -c 'hostname "\$0"; exec sh -c "\$1"' "\$ns" "\$*"
EOF
  chmod +x "$dir/agent"
  cat > "$dir/env" <<EOF
RIG_NAME=$name
RIG_DIR=$dir
RIG_HOSTS=$hosts
RIG_COORD=$subnet.1
RIG_NET=$subnet.0/24
RIG_KEYS=$dir/keys
OMPI_MCA_plm_rsh_agent=$dir/agent
export RIG_NAME RIG_DIR RIG_HOSTS RIG_COORD RIG_NET RIG_KEYS OMPI_MCA_plm_rsh_agent
EOF
  # every host answers: the coordinator's namespace resolves its address
  # (a connection attempt to a closed port sends the ARP request)
  for h in $(seq 1 "$hosts"); do
    addr=$subnet.$((10 + h))
    ip netns exec "$name-c" timeout 10 bash -c "until ip neigh show $addr | grep -q lladdr; do
      (exec 3<>/dev/tcp/$addr/9) 2>/dev/null; done; :" ||
      die "host h$h ($addr) does not answer"
  done
  trap - EXIT
  echo "rig $name: coordinator $subnet.1 ($name-c), $hosts hosts ($subnet.11..$subnet.$((10 + hosts))), ${cap:-no} cap; $dir/env"
}

# every link end of rig $1: "NETNS DEV" (NETNS empty: the root namespace)
link_ends() { local ns; for ns in $(rig_netns "$1"); do echo "$ns eth0"; echo "- ${ns}"; done; }

set_cap() {
  local name=$1 rate=$2 ns dev
  while read -r ns dev; do
    [ "$ns" = - ] && ns=""
    if [ "$rate" = none ]; then
      tc ${ns:+-n "$ns"} qdisc del dev "$dev" root 2>/dev/null || true
    else
      tbf "$ns" "$dev" "$rate"
    fi
  done < <(link_ends "$name")
}

overlimits() {
  local ns dev
  while read -r ns dev; do
    [ "$ns" = - ] && ns=""
    tc -s ${ns:+-n "$ns"} qdisc show dev "$dev" | sed -n 's/.*overlimits \([0-9]*\).*/\1/p'
  done < <(link_ends "$1") | awk '{ s += $1 } END { print s + 0 }'
}

down_one() {
  local name=$1 dir=${2:-/tmp/moe-rig-$1} p
  # processes first: a namespace with a process in it outlives "ip netns del"
  for _ in 1 2 3; do
    p=$(rig_pids "$name")
    [ -n "$p" ] || break
    # shellcheck disable=SC2086
    kill -KILL $p 2>/dev/null || true
    sleep 0.1
  done
  local ns l
  for ns in $(rig_netns "$name"); do ip netns del "$ns" 2>/dev/null || true; done
  for l in $(rig_links "$name"); do ip link del "$l" 2>/dev/null || true; done
  [ -f "$dir/name" ] && [ "$(cat "$dir/name")" = "$name" ] && rm -rf "$dir"
  # veth pairs go away with their namespace asynchronously: wait for them
  for _ in $(seq 1 50); do [ -z "$(rig_links "$name")$(rig_netns "$name")" ] && return 0; sleep 0.1; done
  return 0
}

down() {
  if [ "$1" = --all ]; then
    local n
    for n in $( (ip netns list 2>/dev/null | awk '{ print $1 }'; ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }') |
               sed -n 's/^\(moerig[a-z0-9]*\)-\(c\|br\|h[0-9]*\)$/\1/p' | sort -u); do
      down_one "$n"
    done
    return 0
  fi
  valid_name "$1"
  down_one "$@"
}

check() {
  local name=$1 left=""
  valid_name "$name"
  [ -z "$(rig_netns "$name")" ] || left="$left namespaces: $(rig_netns "$name" | tr '\n' ' ');"
  [ -z "$(rig_links "$name")" ] || left="$left links: $(rig_links "$name" | tr '\n' ' ');"
  [ -z "$(rig_pids "$name")" ] || left="$left processes: $(rig_pids "$name" | tr '\n' ' ');"
  [ ! -e "/tmp/moe-rig-$name" ] || left="$left /tmp/moe-rig-$name;"
  [ -z "$left" ] || { echo "rig $name left:$left" >&2; return 1; }
  echo "rig $name: nothing left"
}

keys() { # NAME BIN [DIR]
  local name=$1 bin=$2 dir=${3:-/tmp/moe-rig-$1} n
  valid_name "$name"
  [ -f "$dir/name" ] && [ "$(cat "$dir/name")" = "$name" ] || die "no rig $name in $dir (rig.sh up $name)"
  [ -x "$bin/moe-keygen" ] || die "no $bin/moe-keygen (scripts/build.sh release)"
  (umask 077 && mkdir -p "$dir/keys")
  chmod 700 "$dir/keys"
  for n in coordinator job; do
    [ -f "$dir/keys/$n.key_secret" ] || "$bin/moe-keygen" "$dir/keys" "$n" > /dev/null || die "moe-keygen $n failed"
  done
  echo "$dir/keys"
}

host_ns() { # NAME HOST -> namespace (it must exist)
  valid_name "$1"
  [[ $2 =~ ^(c|h[0-9]+)$ ]] || die "host $2: c or h1, h2, ..."
  ip netns list | awk '{ print $1 }' | grep -qx "$1-$2" || die "no host $2 in rig $1"
  echo "$1-$2"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  up) [ $# -ge 1 ] || die "up NAME [...]"; up "$@" ;;
  keys) [ $# = 2 ] || [ $# = 3 ] || die "keys NAME BIN [DIR]"; keys "$@" ;;
  exec) [ $# -ge 3 ] || die "exec NAME HOST CMD..."; ns=$(host_ns "$1" "$2"); shift 2; exec ip netns exec "$ns" "$@" ;;
  cut) [ $# = 2 ] || die "cut NAME HOST"; host_ns "$1" "$2" > /dev/null; ip link set "$1-$2" down ;;
  restore) [ $# = 2 ] || die "restore NAME HOST"; host_ns "$1" "$2" > /dev/null; ip link set "$1-$2" up ;;
  stats) [ $# = 2 ] || die "stats NAME HOST"; ns=$(host_ns "$1" "$2")
         ip netns exec "$ns" cat /sys/class/net/eth0/statistics/tx_bytes /sys/class/net/eth0/statistics/rx_bytes | paste -sd' ' ;;
  cap) [ $# = 2 ] || die "cap NAME RATE|none"; host_ns "$1" c > /dev/null; set_cap "$1" "$2" ;;
  overlimits) [ $# = 1 ] || die "overlimits NAME"; host_ns "$1" c > /dev/null; overlimits "$1" ;;
  down) [ $# -ge 1 ] || die "down NAME | --all"; down "$@" ;;
  check) [ $# = 1 ] || die "check NAME"; check "$1" ;;
  -h|--help|"") awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; [ -n "$cmd" ] ;;
  *) die "unknown command $cmd (see --help)" ;;
esac
