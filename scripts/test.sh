#!/usr/bin/env bash
# The whole test suite from a clean clone: installs what is missing, builds
# the Release tree and runs every test (with the best kernel set of this
# CPU), re-runs the unit, golden and mpi tests with the kernel set forced
# down (MOE_KERNELS=reference, the scalar baseline every node has, and
# avx2 when the CPU has avx512) so the portable paths are proven too, then
# builds the ASan+UBSan tree and runs the unit, golden and fuzz tests again
# under the sanitizers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

echo "== release build"
scripts/build.sh release
echo "== release tests (all labels)"
(cd build/release && ctest --output-on-failure -j2)

# the set moe-run picks on this CPU
best=$(build/release/bin/moe-run --model "${MOE_FIXTURES:-../shared/fixtures}/models/tiny_f32.gguf" --tokens 1 -n 1 \
       --stats 2>&1 >/dev/null | sed -n 's/^kernels: \([a-z0-9]*\).*/\1/p')
forced="reference"
[ "$best" = avx512 ] && forced="reference avx2"
# tests that never reach a kernel (idle-CPU measurements, MPI plumbing,
# tokenizer, client) or whose checks do not depend on the set (resident
# memory, start-up errors, the benchmark smoke run) ran above and are not
# repeated: each re-run adds ~10-15 s (the mpi tests run one at a time)
nokern='idle|^comm_|^client|^tokenizer|badfile|_bad_|resident|bench_ep|xchg_delay'
for k in $forced; do
  echo "== release tests (unit, golden, mpi) with MOE_KERNELS=$k (this CPU's best: $best)"
  (cd build/release && MOE_KERNELS=$k ctest --output-on-failure -j2 -L 'unit|golden|mpi' -E "$nokern")
done

echo "== asan+ubsan build"
scripts/build.sh asan
echo "== asan+ubsan tests (unit, golden, fuzz)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build/asan && ctest --output-on-failure -j2 -L 'unit|golden|fuzz')
