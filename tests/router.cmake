# Gating (router) pure functions.
moe_test(NAME router_gate SOURCES router.c LIBS moe_router LABELS unit TIMEOUT 30)
# EPLB (router/eplb): DeepSeek's README example, hand-worked global and
# hierarchical cases, libstdc++ sort ties, bad input.
moe_test(NAME eplb_test SOURCES eplb_test.c LIBS moe_router LABELS unit TIMEOUT 30)
# Routing traces (router/trace) and the cluster simulation (router/simulate).
moe_test(NAME route_test SOURCES route_test.c LIBS moe_router LABELS unit TIMEOUT 30)
# The routing loop (docs/routing.md): a skewed V3-shaped model, traces of
# 2-rank jobs, moe-route stats / simulate (bytes equal to the ranks' own
# counts) / rebalance (same output, better balance) / eplb / calibrate.
if(TARGET moe-route AND TARGET moe-worker)
  moe_test(NAME route_pipeline_np2 LABELS mpi TIMEOUT 120 RESOURCE_LOCK cores
           ARGS ${CMAKE_CURRENT_SOURCE_DIR}/route_pipeline_test.sh)
endif()
# libFuzzer target (clang tree only): traces, their simulation, EPLB cases.
if(CMAKE_C_COMPILER_ID STREQUAL "Clang")
  add_executable(route_fuzz fuzz/route_fuzz.c ${CMAKE_SOURCE_DIR}/router/trace.c ${CMAKE_SOURCE_DIR}/router/simulate.c
                 ${CMAKE_SOURCE_DIR}/router/eplb.c ${CMAKE_SOURCE_DIR}/router/placement.c
                 ${CMAKE_SOURCE_DIR}/core/exprec.c)
  target_include_directories(route_fuzz PRIVATE ${CMAKE_SOURCE_DIR}/router)
  target_compile_options(route_fuzz PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  target_link_options(route_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(route_fuzz PRIVATE moe_core m)
  moe_test(NAME route_fuzz LABELS fuzz TIMEOUT 300 ARGS $<TARGET_FILE:route_fuzz> -seed=1 -runs=100000 -max_len=512)
endif()
# Routed experts per request and the expert distribution recorder
# (docs/routing.md): a 2-rank job behind a coordinator, curl and moe-client
# against moe-worker --trace.
if(TARGET moe-coordinator AND TARGET moe-worker)
  foreach(check routed recorder)
    moe_test(NAME e2e_routed_${check} LABELS e2e TIMEOUT 120 RESOURCE_LOCK cores
             ARGS ${CMAKE_CURRENT_SOURCE_DIR}/routed_test.sh ${check})
  endforeach()
endif()
# Expert distribution records (core/exprec): layout, stat and per_token
# files, truncated and corrupt files refused, bounds.
moe_test(NAME exprec_test SOURCES exprec_test.c LABELS unit TIMEOUT 30)
