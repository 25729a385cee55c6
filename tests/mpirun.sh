#!/usr/bin/env bash
# Starts an MPI job for a test:  mpirun.sh NP TIMEOUT_SECONDS PROGRAM ARGS...
# One thread per rank, no core binding (two cores, oversubscribed), shared
# memory transport, the root flags, a hard timeout; the job runs in its own
# session (Open MPI gives each rank a process group of its own inside it),
# and everything in that session is killed on the way out, so no rank
# outlives a test.
set -u
np=$1 timeout=$2
shift 2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# pass through the variables tests use, when they are set
xs=(-x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS)
for v in MOE_FIXTURES MOE_BIN TMPDIR MOE_LOG MOE_KERNELS; do [ -n "${!v:-}" ] && xs+=(-x "$v"); done
# "-np N" may be given again inside "$@" for MPMD jobs (A : B)
setsid mpirun --oversubscribe --bind-to none --mca btl self,vader --timeout "$timeout" "${xs[@]}" \
  -np "$np" "$@" &
pid=$!
cleanup() {
  pkill -TERM -s "$pid" 2>/dev/null
  pkill -KILL -s "$pid" 2>/dev/null
  return 0
}
trap cleanup INT TERM
wait "$pid"
rc=$?
cleanup
exit $rc
