# The coordinator's parts.
moe_test(NAME sched_test SOURCES sched_test.c LIBS moe_coord LABELS unit TIMEOUT 60)
moe_test(NAME clients_test SOURCES clients_test.c LIBS moe_coord LABELS unit TIMEOUT 60)
moe_test(NAME request_test SOURCES request_test.c LIBS moe_coord LABELS unit TIMEOUT 60)
moe_test(NAME metrics_test SOURCES metrics_test.c LIBS moe_coord m LABELS unit TIMEOUT 60)

# libFuzzer target (clang tree only): metrics.c compiled in for coverage;
# any bytes as a label value / HELP text must render and read back.
if(CMAKE_C_COMPILER_ID STREQUAL "Clang")
  add_executable(metrics_fuzz metrics_fuzz.c ${CMAKE_SOURCE_DIR}/coordinator/metrics.c)
  target_include_directories(metrics_fuzz PRIVATE ${CMAKE_SOURCE_DIR}/coordinator)
  target_compile_options(metrics_fuzz PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  target_link_options(metrics_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(metrics_fuzz PRIVATE moe_core m)
  moe_test(NAME metrics_fuzz LABELS fuzz TIMEOUT 300 ARGS $<TARGET_FILE:metrics_fuzz> -seed=1 -runs=200000 -max_len=256)
endif()
moe_test(NAME coord_metrics_test SOURCES coord_metrics_test.c LIBS moe_coord_serve m LABELS unit TIMEOUT 60)
moe_test(NAME supervisor_test SOURCES supervisor_test.c LIBS moe_coord_serve LABELS unit TIMEOUT 60)
