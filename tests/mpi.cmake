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

moe_test(NAME comm_and_np3 LABELS mpi TIMEOUT 60 RESOURCE_LOCK cores
         ARGS ${MOE_MPIRUN} 3 50 $<TARGET_FILE:comm_test> and)
# The step header's own reduction (sums and one max) on 1 and 3 ranks.
foreach(np 1 3)
  moe_test(NAME comm_header_np${np} LABELS mpi TIMEOUT 60 RESOURCE_LOCK cores
           ARGS ${MOE_MPIRUN} ${np} 50 $<TARGET_FILE:comm_test> header)
endforeach()
# An abort names the program that set up the module (not "moe-worker").
moe_test(NAME comm_abort_np2 LABELS mpi TIMEOUT 60 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/expect.sh nonzero "^comm_test: rank 1: simulated abort" 20 --
              ${MOE_MPIRUN} 2 50 $<TARGET_FILE:comm_test> abort 1)

# The worker job against moe-run: every fixture model on 1 and 3 ranks, a
# V3-style one on 2 and 4 ranks and with experts scattered and replicated,
# all on the default (int8-activation) path; the Q8_0 ones again on the
# float path (--exact to both programs), and the int8 path named by its
# flag (--int8) on 1, 2 and 3 ranks.
set(MOE_WORKER_TEST ${CMAKE_CURRENT_SOURCE_DIR}/worker_test.sh)
set(MOE_SCATTER4 ${CMAKE_CURRENT_SOURCE_DIR}/data/scatter4.placement)
# logprobs against its own computation from dumped logits (tests/logprobs_ref.c)
add_executable(logprobs_ref logprobs_ref.c)
target_link_libraries(logprobs_ref PRIVATE m)
moe_test(NAME worker_logprobs_v3_mini_f32 LABELS mpi TIMEOUT 180 RESOURCE_LOCK cores
         ARGS ${MOE_WORKER_TEST} logprobs ${MOE_FIXTURES}/models/v3_mini_f32.gguf)
moe_test(NAME worker_eos_v3_mini_f32 LABELS mpi TIMEOUT 120 RESOURCE_LOCK cores
         ARGS ${MOE_WORKER_TEST} eos ${MOE_FIXTURES}/models/v3_mini_f32.gguf)
foreach(model tiny_f32 tiny_f16 tiny_q8_0 v2lite_mini_f32 v2lite_mini_fused_f32 v3_mini_f32 v3_mini_q8_0)
  foreach(np 1 3)
    moe_test(NAME worker_equal_${model}_np${np} LABELS mpi TIMEOUT 180 RESOURCE_LOCK cores
             ARGS ${MOE_WORKER_TEST} equal ${MOE_FIXTURES}/models/${model}.gguf ${np})
  endforeach()
endforeach()
foreach(np 2 4)
  moe_test(NAME worker_equal_v3_mini_q8_0_np${np} LABELS mpi TIMEOUT 180 RESOURCE_LOCK cores
           ARGS ${MOE_WORKER_TEST} equal ${MOE_FIXTURES}/models/v3_mini_q8_0.gguf ${np})
endforeach()
foreach(act exact int8)
  foreach(np 1 2 3)
    moe_test(NAME worker_equal_${act}_v3_mini_q8_0_np${np} LABELS mpi TIMEOUT 180 RESOURCE_LOCK cores
             ARGS env MOE_TEST_ACT=--${act} ${MOE_WORKER_TEST} equal ${MOE_FIXTURES}/models/v3_mini_q8_0.gguf ${np})
  endforeach()
endforeach()
# --repack (the dense Q8_0 matrices from the repacked layout): the job on
# 1..3 ranks bitwise moe-run --repack
foreach(np 1 2 3)
  moe_test(NAME worker_equal_repack_v3_mini_q8_0_np${np} LABELS mpi TIMEOUT 180 RESOURCE_LOCK cores
           ARGS env MOE_TEST_ACT=--repack ${MOE_WORKER_TEST} equal ${MOE_FIXTURES}/models/v3_mini_q8_0.gguf ${np})
endforeach()
moe_test(NAME worker_equal_exact_tiny_q8_0_np3 LABELS mpi TIMEOUT 180 RESOURCE_LOCK cores
         ARGS env MOE_TEST_ACT=--exact ${MOE_WORKER_TEST} equal ${MOE_FIXTURES}/models/tiny_q8_0.gguf 3)
moe_test(NAME worker_equal_v3_mini_f32_np4_scatter LABELS mpi TIMEOUT 180 RESOURCE_LOCK cores
         ARGS ${MOE_WORKER_TEST} equal ${MOE_FIXTURES}/models/v3_mini_f32.gguf 4 ${MOE_SCATTER4})
moe_test(NAME worker_chunks_v2lite_mini_f32 LABELS mpi TIMEOUT 180 RESOURCE_LOCK cores
         ARGS ${MOE_WORKER_TEST} chunks ${MOE_FIXTURES}/models/v2lite_mini_f32.gguf)
# MTP speculative decoding in the job: bitwise moe-run without MTP on 1..3 ranks.
foreach(np 1 2 3)
  moe_test(NAME worker_mtp_np${np} LABELS mpi TIMEOUT 120 RESOURCE_LOCK cores ARGS ${MOE_WORKER_TEST} mtp ${np})
endforeach()
# Replay after a restart (prompt + emitted tokens) is bitwise the undisturbed run.
moe_test(NAME worker_replay_v3_mini_f32_np2 LABELS mpi fault TIMEOUT 120 RESOURCE_LOCK cores
         ARGS ${MOE_WORKER_TEST} replay ${MOE_FIXTURES}/models/v3_mini_f32.gguf 2 4)
# The same on the float path (a prompt's long chunks decompress K/V) on 3 ranks:
# the replays' cached prompt blocks keep every row bitwise.
moe_test(NAME worker_replay_exact_v3_mini_q8_0_np3 LABELS mpi fault TIMEOUT 120 RESOURCE_LOCK cores
         ARGS env MOE_TEST_ACT=--exact ${MOE_WORKER_TEST} replay ${MOE_FIXTURES}/models/v3_mini_q8_0.gguf 3 4)
moe_test(NAME worker_batchfile_np2 LABELS mpi TIMEOUT 120 RESOURCE_LOCK cores
         ARGS ${MOE_WORKER_TEST} batchfile 2)
# Ranks with different kernel caps agree on the common set (MPMD job).
moe_test(NAME worker_kernels_np3 LABELS mpi TIMEOUT 180 RESOURCE_LOCK cores
         ARGS ${MOE_WORKER_TEST} kernels ${MOE_FIXTURES}/models/v3_mini_q8_0.gguf)
# One rank with a bad MOE_KERNELS: the job stops at start, naming it.
moe_test(NAME worker_kernels_bad_np2 LABELS mpi fault TIMEOUT 60 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/expect.sh nonzero "rank 1: MOE_KERNELS=avx9 is not a kernel set" 20 --
              ${MOE_MPIRUN} 1 50 $<TARGET_FILE:moe-worker> --model ${MOE_FIXTURES}/models/tiny_f32.gguf --linger 1 : -np 1
              env MOE_KERNELS=avx9 $<TARGET_FILE:moe-worker> --model ${MOE_FIXTURES}/models/tiny_f32.gguf --linger 1)
# Ranks given different activation paths: the job stops at start, saying so.
moe_test(NAME worker_exact_mixed_np2 LABELS mpi fault TIMEOUT 60 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/expect.sh nonzero "rank 1: the ranks were not all given the same --exact choice" 20 --
              ${MOE_MPIRUN} 1 50 $<TARGET_FILE:moe-worker> --model ${MOE_FIXTURES}/models/tiny_f32.gguf --linger 1 --exact : -np 1
              $<TARGET_FILE:moe-worker> --model ${MOE_FIXTURES}/models/tiny_f32.gguf --linger 1)
moe_test(NAME worker_repack_mixed_np2 LABELS mpi fault TIMEOUT 60 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/expect.sh nonzero "rank 1: the ranks were not all given the same --repack choice" 20 --
              ${MOE_MPIRUN} 1 50 $<TARGET_FILE:moe-worker> --model ${MOE_FIXTURES}/models/tiny_q8_0.gguf --linger 1 --repack : -np 1
              $<TARGET_FILE:moe-worker> --model ${MOE_FIXTURES}/models/tiny_q8_0.gguf --linger 1)
# both --exact, one of them also --repack: refused (the repack agreement
# comes before the path check, so no rank waits in a collective alone)
moe_test(NAME worker_repack_exact_mixed_np2 LABELS mpi fault TIMEOUT 60 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/expect.sh nonzero "the ranks were not all given the same --repack choice" 20 --
              ${MOE_MPIRUN} 1 50 $<TARGET_FILE:moe-worker> --model ${MOE_FIXTURES}/models/tiny_q8_0.gguf --linger 1 --exact --repack : -np 1
              $<TARGET_FILE:moe-worker> --model ${MOE_FIXTURES}/models/tiny_q8_0.gguf --linger 1 --exact)
moe_test(NAME worker_bytes_np3 LABELS mpi TIMEOUT 120 RESOURCE_LOCK cores
         ARGS ${MOE_WORKER_TEST} bytes ${MOE_FIXTURES}/models/v3_mini_f32.gguf 3)
moe_test(NAME worker_bytes_np4_scatter LABELS mpi TIMEOUT 120 RESOURCE_LOCK cores
         ARGS ${MOE_WORKER_TEST} bytes ${MOE_FIXTURES}/models/v3_mini_q8_0.gguf 4 ${MOE_SCATTER4})
moe_test(NAME worker_badfile_np3 LABELS mpi fault TIMEOUT 60 RESOURCE_LOCK cores
         ARGS ${MOE_WORKER_TEST} badfile 3)
foreach(np 2 4)
  moe_test(NAME worker_resident_np${np} LABELS mpi TIMEOUT 120 RESOURCE_LOCK cores
           ARGS ${MOE_WORKER_TEST} resident ${np})
endforeach()
moe_test(NAME worker_idle_np2 LABELS mpi TIMEOUT 120 RESOURCE_LOCK cores
         ARGS ${MOE_WORKER_TEST} idle 2 10)
# Smoke run of the expert-parallel benchmark (tiny model, one run).
moe_test(NAME bench_ep_smoke LABELS mpi TIMEOUT 120 RESOURCE_LOCK cores
         ARGS ${CMAKE_SOURCE_DIR}/bench/ep/run.sh --quick)
# Live rebalancing (docs/routing.md): a placement changed mid-decode, a bad
# one refused, the automatic mode, under 16 streams bitwise the undisturbed
# run; the experts a rank gave up leave its memory.
moe_test(NAME live_streams_np2 LABELS mpi TIMEOUT 120 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/live_test.sh streams ${MOE_FIXTURES}/models/v3_mini_f32.gguf)
moe_test(NAME live_resident_np2 LABELS mpi TIMEOUT 120 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/live_test.sh resident)
# Node-limited routing (--node-limit 1): no token's experts on two ranks.
moe_test(NAME live_nodelimit_np2 LABELS mpi TIMEOUT 120 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/live_test.sh nodelimit ${MOE_FIXTURES}/models/v3_mini_f32.gguf)
