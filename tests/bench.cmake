# The benchmark harness (bench/lib/, bench/quant/run.sh) against fake
# llama.cpp tools, and one --quick run of bench/quant on a small fixture.
if(TARGET bench-decode AND TARGET moe-mkmodel)
  moe_test(NAME bench_lib LABELS bench TIMEOUT 120
           ARGS bash ${CMAKE_CURRENT_SOURCE_DIR}/bench_lib.sh ${CMAKE_SOURCE_DIR})
endif()
# bench/throughput/run.sh --quick against the fake llama.cpp: the table's
# shape, every figure a number; it runs the worker job (mpirun), hence the
# lock on the cores.
if(TARGET bench-decode AND TARGET bench-peak AND TARGET moe-worker)
  moe_test(NAME bench_throughput_smoke LABELS bench TIMEOUT 120 RESOURCE_LOCK cores
           ARGS bash ${CMAKE_CURRENT_SOURCE_DIR}/bench_throughput.sh ${CMAKE_SOURCE_DIR})
endif()

# moe-bench (tools/moe_bench_main.c, tools/bench/).
# bench_stats_test: the statistics, the report, the JSON keys, arrivals,
# prompts and the /metrics parser, against hand-computed values.
# e2e_bench: moe-bench against a real coordinator and worker job, over HTTP
# and ZMQ, its counts checked against the server's own /metrics.
moe_test(NAME bench_stats_test SOURCES bench_stats_test.c LIBS moe_tools_bench LABELS unit TIMEOUT 30)
moe_test(NAME e2e_bench LABELS e2e TIMEOUT 120 RESOURCE_LOCK cores ARGS ${CMAKE_CURRENT_SOURCE_DIR}/bench_test.sh)
# bench/prefix/run.sh --quick: a shared-prefix moe-bench run against a server
# with and without prefix caching; the cached share is exactly the system prompts'.
if(TARGET moe-bench AND TARGET moe-worker AND TARGET moe-coordinator)
  moe_test(NAME bench_prefix_smoke LABELS bench TIMEOUT 120 RESOURCE_LOCK cores
           ARGS bash ${CMAKE_CURRENT_SOURCE_DIR}/bench_prefix.sh ${CMAKE_SOURCE_DIR})
endif()
# bench/mtp/run.sh --quick: every configuration's ids equal the run without
# MTP (the script checks), and the table prints.
if(TARGET moe-run AND TARGET moe-mkmodel)
  moe_test(NAME bench_mtp_smoke LABELS bench TIMEOUT 120 RESOURCE_LOCK cores
           ARGS bash ${CMAKE_SOURCE_DIR}/bench/mtp/run.sh --quick)
endif()
