#!/usr/bin/env bash
# deploy/systemd: the units parse cleanly (systemd-analyze verify, with the
# paths pointed at this build and the example environment file: any warning
# fails), and they are arranged so that restarting the coordinator cannot
# touch the worker job: the coordinator restarts itself, the job's unit has
# no Requires=/BindsTo=/PartOf= on it, each kills only its own cgroup.
# Exit 77 (skipped, not passed) when systemd-analyze is not installed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
units=$(cd "$here/../deploy/systemd" && pwd)
bin=${MOE_BIN:?MOE_BIN not set}
command -v systemd-analyze > /dev/null || { echo "systemd-analyze is not installed: units not verified"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-deploy.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
for u in moe-coordinator.service moe-workers.service moe.service; do
  [ -f "$units/$u" ] || fail "no $u"
  sed -e "s|/opt/moe/bin|$bin|g" -e "s|/etc/moe/moe.env|$units/moe.env|g" "$units/$u" > "$tmp/$u"
done
out=$(systemd-analyze verify "$tmp/moe-coordinator.service" "$tmp/moe-workers.service" "$tmp/moe.service" 2>&1); rc=$?
[ "$rc" = 0 ] && [ -z "$out" ] || fail "systemd-analyze verify (exit $rc): $out"
key() { sed -n "s/^$2=//p" "$units/$1"; }
[ "$(key moe-coordinator.service Restart)" = always ] || fail "the coordinator does not restart itself"
[ "$(key moe-coordinator.service KillMode)" = control-group ] || fail "the coordinator's KillMode"
[ "$(key moe-workers.service KillMode)" = control-group ] || fail "the job's KillMode"
grep -Eq '^(Requires|BindsTo|PartOf|Requisite)=.*moe-coordinator' "$units/moe-workers.service" \
    && fail "the worker job's unit depends on the coordinator's: restarting it would stop the job"
grep -Eq '^(Requires|BindsTo|PartOf|Requisite)=.*moe-workers' "$units/moe-coordinator.service" \
    && fail "the coordinator's unit depends on the job's"
grep -q -- '--coordinator ${MOE_WORKERS_CONNECT}' "$units/moe-workers.service" || fail "the job does not connect to the coordinator"
# the one-unit variant: the coordinator supervises the job; a restart of the
# coordinator alone (KillMode=process) leaves the job for the next to adopt
[ "$(key moe.service KillMode)" = process ] || fail "moe.service's KillMode would kill the job on a coordinator restart"
[ "$(key moe.service Restart)" = always ] || fail "moe.service does not restart the coordinator"
[ "$(key moe.service RuntimeDirectoryPreserve)" = restart ] || fail "the job file would not survive a restart"
grep -Eq -- '--job-file /run/moe/job --launch ' "$units/moe.service" || fail "moe.service does not launch the job with a job file"
# every variable the units use is set in the example environment file
for v in $(grep -ho '\${\?MOE_[A-Z_]*' "$units"/*.service | tr -d '${' | sort -u); do
  grep -q "^$v=" "$units/moe.env" || fail "moe.env does not set $v"
done
# the worker link uses the keys: every coordinator admits only the job's
# key, every rank holds the job's secret, and the coordinators' units make
# the pairs in a private folder (their ExecStartPre run here as systemd
# would: $$ is $, ${MOE_KEYS} and the bin folder substituted), twice
for u in moe.service moe-coordinator.service; do
  grep -q -- '--curve-secret ${MOE_KEYS}/coordinator.key_secret --worker-key ${MOE_KEYS}/job.key' "$units/$u" ||
    fail "$u: the coordinator does not take the worker link's keys"
  pre=$(sed -n 's/^ExecStartPre=\/bin\/sh -c //p' "$units/$u")
  [ -n "$pre" ] || fail "$u makes no keys"
  script=$(printf '%s' "$pre" | sed -e 's/^'"'"'\(.*\)'"'"' ${MOE_KEYS} \/opt\/moe\/bin$/\1/' -e 's/\$\$/$/g')
  [ "$script" != "$pre" ] || fail "$u: ExecStartPre is not sh -c '...' \${MOE_KEYS} /opt/moe/bin"
  rm -rf "$tmp/keys"
  for _ in 1 2; do sh -c "$script" "$tmp/keys" "$bin" > /dev/null || fail "$u's ExecStartPre failed"; done
  [ "$(stat -c %a "$tmp/keys")" = 700 ] || fail "$u: the keys' folder is mode $(stat -c %a "$tmp/keys")"
  for k in coordinator job; do
    [ -s "$tmp/keys/$k.key" ] && [ "$(stat -c %a "$tmp/keys/$k.key_secret")" = 600 ] || fail "$u: no private $k pair"
  done
done
for u in moe.service moe-workers.service; do
  grep -q -- '--curve-server-key ${MOE_KEYS}/coordinator.key --curve-secret ${MOE_KEYS}/job.key_secret' "$units/$u" ||
    fail "$u: the ranks do not take the worker link's keys"
done
echo "ok: the units verify cleanly; the coordinator restarts alone, the job does not depend on it (or, in moe.service, is adopted); the worker link's keys made private and passed"
