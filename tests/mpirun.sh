#!/usr/bin/env bash
# Starts an MPI job for a test:  mpirun.sh NP TIMEOUT_SECONDS PROGRAM ARGS...
# One thread per rank, no core binding (two cores, oversubscribed), shared
# memory transport, the root flags, a hard timeout; the job runs in its own
# process group, which is killed on the way out so no rank outlives a test.
set -u
np=$1 timeout=$2
shift 2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1
setsid mpirun --oversubscribe --bind-to none --mca btl self,vader --timeout "$timeout" \
  -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS -x MOE_FIXTURES -x MOE_BIN -x TMPDIR \
  -np "$np" "$@" &
pid=$!
cleanup() { kill -TERM -- "-$pid" 2>/dev/null; kill -KILL -- "-$pid" 2>/dev/null; }
trap cleanup INT TERM
wait "$pid"
rc=$?
cleanup
exit $rc
