# The cluster across emulated hosts (deploy/rig: network namespaces, Open
# MPI over TCP through the rig's rsh agent, ZMQ over TCP), Release only,
# as root (CI is; 77, skipped, elsewhere): docs/deploy.md's hostfile recipe
# as written, equal to moe-run, a link cut recovered with an exact replay,
# and the rig's teardown.
moe_test(NAME rig_hostfile LABELS rig TIMEOUT 240 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/rig_test.sh hostfile)
moe_test(NAME rig_teardown LABELS rig TIMEOUT 60 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/rig_test.sh teardown)
set_tests_properties(rig_hostfile rig_teardown PROPERTIES SKIP_RETURN_CODE 77)
# bench/cluster's quick run (2 hosts, 2 caps, 2 latencies, a short serving
# run on a fixture model): the benchmark's whole path stays working.
moe_test(NAME bench_cluster_smoke LABELS rig TIMEOUT 120 RESOURCE_LOCK cores
         ARGS ${CMAKE_SOURCE_DIR}/bench/cluster/run.sh --quick --out ${CMAKE_BINARY_DIR}/bench-cluster-smoke)
# The latency knob the rig uses (moe-worker --test-xchg-delay-us): the same
# output bytes, and it delays (2 ranks over shared memory; no root needed).
moe_test(NAME worker_xchg_delay_np2 LABELS mpi TIMEOUT 90 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/xchg_delay_test.sh)
