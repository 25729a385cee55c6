# Expert placement and dispatch plans (router/placement).
moe_test(NAME placement_test SOURCES placement_test.c LIBS moe_router LABELS unit TIMEOUT 60)

# moe-gguf --plan: per-node memory of header-faithful DeepSeek-V2-Lite and
# V3 files (sparse: no data written) against arithmetic on the configs;
# moe_engine_mem against what engine init really allocates.
if(TARGET moe-gguf AND TARGET moe-mkmodel)
  moe_test(NAME plan_gguf LABELS unit TIMEOUT 120
           ARGS python3 ${CMAKE_CURRENT_SOURCE_DIR}/plan_test.py ${CMAKE_BINARY_DIR}/bin)
endif()
moe_test(NAME plan_mem SOURCES plan_mem_test.c LIBS moe_worker LABELS unit TIMEOUT 60)
moe_test(NAME residency_test SOURCES residency_test.c LIBS moe_worker LABELS unit TIMEOUT 60)
