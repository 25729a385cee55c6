#!/usr/bin/env bash
# Opt-in: the Debian packages of a one-node local Slurm (slurmctld, slurmd,
# the client commands, munge) for the deploy_slurm test (MOE_TEST_SLURM=1,
# tests/slurm_test.sh).  Not part of scripts/setup.sh: nothing else needs
# Slurm.  The test starts the daemons itself, with its own configuration,
# key and ports in a temporary folder; nothing under /etc is changed here
# beyond what the packages install (their services are not started).
set -euo pipefail
packages=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || { echo "setup-slurm: all ${#packages[@]} packages present"; exit 0; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup-slurm: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "setup-slurm: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup-slurm: done"
