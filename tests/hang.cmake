# No hang anywhere (issue 13): real coordinator, mpirun worker jobs and
# clients; each check bounds its waits (tests/hang_test.sh says what each proves).
foreach(check noranks queued drain mismatch coord_restart outbox coord_outbox longstep serve_restart adopt)
  moe_test(NAME hang_${check} LABELS e2e fault TIMEOUT 120 RESOURCE_LOCK cores
           ARGS ${CMAKE_CURRENT_SOURCE_DIR}/hang_test.sh ${check})
endforeach()

# deploy/systemd: units verified by systemd-analyze, arranged so that a
# coordinator restart leaves the worker job alone (77: skipped when
# systemd-analyze is missing).
moe_test(NAME deploy_systemd LABELS unit TIMEOUT 30 ARGS ${CMAKE_CURRENT_SOURCE_DIR}/deploy_test.sh)
set_tests_properties(deploy_systemd PROPERTIES SKIP_RETURN_CODE 77)

# deploy/slurm/moe.sbatch in a one-node local Slurm: opt-in (MOE_TEST_SLURM=1,
# packages from scripts/setup-slurm.sh); skipped (77), not passed, otherwise.
moe_test(NAME deploy_slurm LABELS slurm TIMEOUT 240 ARGS ${CMAKE_CURRENT_SOURCE_DIR}/slurm_test.sh)
set_tests_properties(deploy_slurm PROPERTIES SKIP_RETURN_CODE 77)
