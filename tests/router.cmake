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
