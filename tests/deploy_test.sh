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
echo "ok: the units verify cleanly; the coordinator restarts alone, the job does not depend on it (or, in moe.service, is adopted)"
