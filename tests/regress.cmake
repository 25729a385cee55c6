# Regression data (tests/data/regress, from tests/regress/dump.sh before the
# kernel-set reshape): every kernel set this CPU runs reproduces it bit for bit.
moe_test(NAME regress_logits LABELS golden TIMEOUT 180
         ARGS sh ${CMAKE_CURRENT_SOURCE_DIR}/regress/regress_check.sh ${CMAKE_BINARY_DIR}/bin
              ${CMAKE_CURRENT_SOURCE_DIR}/data/regress)
# A bad MOE_L2_PREFETCH is an error at start that names the values.
moe_test(NAME kernels_prefetch_env_bad LABELS unit TIMEOUT 30
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/expect.sh nonzero "MOE_L2_PREFETCH=yes: the value is 1 .* or 0" 10 --
              env MOE_L2_PREFETCH=yes $<TARGET_FILE:moe-run> --model ${MOE_FIXTURES}/models/tiny_f32.gguf --tokens 1 -n 1)
# A bad MOE_KERNELS is an error at start that names this CPU's sets.
moe_test(NAME kernels_env_bad LABELS unit TIMEOUT 30
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/expect.sh nonzero "MOE_KERNELS=avx9 is not a kernel set .* this CPU has reference" 10 --
              env MOE_KERNELS=avx9 $<TARGET_FILE:moe-run> --model ${MOE_FIXTURES}/models/tiny_f32.gguf --tokens 1 -n 1)
