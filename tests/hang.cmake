# No hang anywhere (issue 13): real coordinator, mpirun worker jobs and
# clients; each check bounds its waits (tests/hang_test.sh says what each proves).
foreach(check noranks drain mismatch coord_restart outbox serve_restart)
  moe_test(NAME hang_${check} LABELS e2e fault TIMEOUT 120 RESOURCE_LOCK cores
           ARGS ${CMAKE_CURRENT_SOURCE_DIR}/hang_test.sh ${check})
endforeach()
