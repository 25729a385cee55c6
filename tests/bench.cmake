# The benchmark harness (bench/lib/, bench/quant/run.sh) against fake
# llama.cpp tools, and one --quick run of bench/quant on a small fixture.
if(TARGET bench-decode AND TARGET moe-mkmodel)
  moe_test(NAME bench_lib LABELS bench TIMEOUT 120
           ARGS bash ${CMAKE_CURRENT_SOURCE_DIR}/bench_lib.sh ${CMAKE_SOURCE_DIR})
endif()
