#!/usr/bin/env bash
# The whole test suite from a clean clone: installs what is missing, builds
# the Release tree and runs every test, then builds the ASan+UBSan tree and
# runs the unit, golden and fuzz tests again under the sanitizers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

echo "== release build"
scripts/build.sh release
echo "== release tests (all labels)"
(cd build/release && ctest --output-on-failure -j2)

echo "== asan+ubsan build"
scripts/build.sh asan
echo "== asan+ubsan tests (unit, golden, fuzz)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build/asan && ctest --output-on-failure -j2 -L 'unit|golden|fuzz')
