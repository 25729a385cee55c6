# MPI tests: real mpirun jobs (tests/mpirun.sh), Release tree only (label
# mpi), one job at a time on the two cores (RESOURCE_LOCK).
set(MOE_MPIRUN ${CMAKE_CURRENT_SOURCE_DIR}/mpirun.sh)

add_executable(comm_test comm_test.c)
target_link_libraries(comm_test PRIVATE moe_comm moe_core)

foreach(np 2 3 4)
  moe_test(NAME comm_exchange_np${np} LABELS mpi TIMEOUT 60 RESOURCE_LOCK cores
           ARGS ${MOE_MPIRUN} ${np} 50 $<TARGET_FILE:comm_test> exchange)
endforeach()
moe_test(NAME comm_idle_np2 LABELS mpi TIMEOUT 60 RESOURCE_LOCK cores
         ARGS ${MOE_MPIRUN} 2 50 $<TARGET_FILE:comm_test> idle 3)
# A failing rank: the job must end with exit status 1 and name the rank.
moe_test(NAME comm_fail_np3 LABELS mpi TIMEOUT 60 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/expect.sh nonzero "rank 1: simulated load failure" 20 --
              ${MOE_MPIRUN} 3 50 $<TARGET_FILE:comm_test> fail 1)
