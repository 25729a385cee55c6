# Faults of the worker job under the coordinator's supervisor (--launch):
# kill -9 / SIGSTOP of a rank, kill of the launcher and every rank with 64
# streaming requests in flight (replayed, bitwise the undisturbed run; three
# kills in one run), requests sent while the job is down waiting within their
# deadlines, and a job that cannot start (Release only, real mpirun jobs).
foreach(np 2 3)
  moe_test(NAME fault_replay_np${np} LABELS e2e fault TIMEOUT 120 RESOURCE_LOCK cores
           ARGS ${CMAKE_CURRENT_SOURCE_DIR}/fault_test.sh replay ${np})
endforeach()
moe_test(NAME fault_deadline_np2 LABELS e2e fault TIMEOUT 90 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/fault_test.sh deadline 2)
moe_test(NAME fault_crashloop LABELS e2e fault TIMEOUT 90 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/fault_test.sh crashloop)
