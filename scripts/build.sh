#!/usr/bin/env bash
# Configures and builds one tree: scripts/build.sh release|asan
# release: build/release (gcc, -O3, baseline x86-64: runs on any node; the
#          AVX2 / AVX-512 kernel sets are chosen at run time, MOE_KERNELS caps them)
# asan:    build/asan    (clang, ASan + UBSan, libFuzzer targets)
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
jobs=$(nproc)
case "$kind" in
  release)
    cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null ;;
  asan)
    CC=clang cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOE_SANITIZE=ON >/dev/null ;;
  *) echo "usage: scripts/build.sh release|asan" >&2; exit 2 ;;
esac
cmake --build "build/$kind" -j"$jobs"
