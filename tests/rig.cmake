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
