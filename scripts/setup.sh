#!/usr/bin/env bash
# Installs, idempotently, every Debian package moe needs to build, test and
# run.  Safe to run again: it only calls apt-get when something is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  openmpi-bin libopenmpi-dev          # the worker job (MPI)
  libzmq3-dev                         # client/coordinator/worker messaging
  libopenblas-dev                     # large float32 GEMMs
  libprotobuf-c-dev protobuf-c-compiler  # wire messages (protoc-c at build time)
  clang libclang-rt-14-dev            # libFuzzer and the sanitizer build
  unicode-data                        # Unicode tables for the tokenizer, generated at build time
  python3                             # small test drivers
  procps psmisc                       # ps/pkill in tests
  xz-utils                            # unpacks data/deepseek-v3-tokenizer.gguf.xz
  libmicrohttpd-dev                   # the coordinator's HTTP front end (OpenAI API, /metrics)
  libjansson-dev                      # JSON of the HTTP API, moe-route eplb
  curl                                # a real HTTP client in the tests
  openssl                             # the TLS test makes a self-signed certificate
  jq                                  # the HTTP tests read JSON answers with it
  python3-prometheus-client           # the tests parse /metrics with its text parser
  python3-numpy                       # the recorder test reads its files as docs/routing.md shows
  libcurl4-openssl-dev                # moe-bench: HTTP and SSE (libcurl's multi interface)
  gnuplot-nox                         # moe-bench --plot, bench/cluster, moe-route stats --png: the PNG plots
  systemd                             # systemd-analyze verify of deploy/systemd (deploy_systemd)
  iproute2                            # deploy/rig: network namespaces, veth, bridge, tc
  util-linux-extra                    # fincore: bench_lib checks a file left the page cache
)
# Node.js and npm run the official openai SDK in the tests.  A machine that
# has them already (from Debian or elsewhere) keeps its own.
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# The openai SDK the tests drive the HTTP API with, at the version
# tests/openai/package-lock.json pins (npm's registry; nothing at run time).
openai_sdk() {
  local dir=tests/openai want
  want=$(sed -n 's/.*"openai": "\([0-9.]*\)".*/\1/p' "$dir/package.json")
  if [ -f "$dir/node_modules/openai/package.json" ] &&
     grep -q "\"version\": \"$want\"" "$dir/node_modules/openai/package.json"; then
    return 0
  fi
  echo "setup: installing the openai SDK $want (npm ci in $dir)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  openai_sdk
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
openai_sdk
echo "setup: done"
