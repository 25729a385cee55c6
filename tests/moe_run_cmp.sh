# tests/moe_run_cmp.sh — sourced by test scripts that define fail and bin:
#
#   equal_to_moe_run REQS OUT MODEL N
#
# REQS: a request file ("ids:LIST MAX_TOKENS [seed= temp= top_p= top_k=]"
# lines); OUT: what moe-client --file REQS --ids-out printed ("LINE ids...").
# Each request's ids must equal moe-run's on MODEL with the same sampling
# (EOS ignored), and there must be N requests.
equal_to_moe_run() {
  local reqs=$1 out=$2 model=$3 count=$4 i=0 ids n opts flags kv want got
  while read -r ids n opts; do
    i=$((i + 1))
    flags=""
    for kv in $opts; do
      case $kv in seed=*) flags="$flags --seed ${kv#seed=}" ;; temp=*) flags="$flags --temp ${kv#temp=}" ;;
        top_p=*) flags="$flags --top-p ${kv#top_p=}" ;; top_k=*) flags="$flags --top-k ${kv#top_k=}" ;; esac
    done
    # shellcheck disable=SC2086
    want=$("$bin/moe-run" --model "$model" --tokens "${ids#ids:}" -n "$n" --ignore-eos $flags) || fail "moe-run failed"
    got=$(awk -v l="$i" '$1 == l { $1 = ""; sub(/^ /, ""); print }' "$out")
    [ "$got" = "$want" ] || fail "request $i ($opts): cluster '$got' vs moe-run '$want'"
  done < "$reqs"
  [ "$i" = "$count" ] || fail "ran $i requests"
}
