# Engine tests: golden (fixture models vs expected logits, by the fixtures'
# README rules) and engine unit tests.  One golden binary, one test per
# (model, reference).
add_executable(engine_golden engine_golden.c)
target_include_directories(engine_golden PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(engine_golden PRIVATE moe_worker)

foreach(model tiny_f32 v2lite_mini_f32 v2lite_mini_fused_f32 v3_mini_f32)
  foreach(ref exact llamacpp)
    moe_test(NAME golden_${model}_${ref} LABELS golden TIMEOUT 60
             ARGS $<TARGET_FILE:engine_golden> ${model} ${ref} 3e-5 0)
  endforeach()
endforeach()
# F16 / Q8_0 on the float-activation path against `exact`.
foreach(model tiny_f16 tiny_q8_0 v3_mini_q8_0)
  moe_test(NAME golden_${model}_exact LABELS golden TIMEOUT 60
           ARGS $<TARGET_FILE:engine_golden> ${model} exact 2e-3 4e-3)
endforeach()

add_executable(engine_cmp engine_cmp.c)
target_link_libraries(engine_cmp PRIVATE m)
moe_test(NAME engine_run LABELS golden TIMEOUT 60
         ARGS sh ${CMAKE_CURRENT_SOURCE_DIR}/engine_run.sh $<TARGET_FILE:engine_cmp>)
moe_test(NAME engine_batch SOURCES engine_batch.c LIBS moe_worker LABELS unit TIMEOUT 60)
# The expected time of a lockstep step (the watchdog is told of long ones).
moe_test(NAME steptime SOURCES steptime_test.c LIBS moe_worker LABELS unit TIMEOUT 30)
# Needs moe-mkmodel (tools/); registered only when that target exists.
if(TARGET moe-mkmodel)
  moe_test(NAME engine_mkmodel LABELS golden TIMEOUT 120
           ARGS sh ${CMAKE_CURRENT_SOURCE_DIR}/engine_mkmodel.sh $<TARGET_FILE:engine_cmp>)
endif()
if(TARGET bench-decode AND TARGET moe-mkmodel)
  moe_test(NAME bench_decode_smoke LABELS bench TIMEOUT 120 ARGS $<TARGET_FILE:bench-decode> --quick)
endif()
if(TARGET bench-kern)
  # tiny shapes; fails if the set's product and the dotn tiling differ in a bit
  moe_test(NAME bench_kern_smoke LABELS bench TIMEOUT 60 ARGS $<TARGET_FILE:bench-kern> --quick)
  # --only: the one type's lines (the tile's 4 and the 1408-wide row), and
  # a name with no lines refused
  moe_test(NAME bench_kern_only LABELS bench TIMEOUT 60
           ARGS sh -c "[ $($0 --quick --only iq4_nl | grep -c '^iq4_nl .* tok ') = 5 ] && [ $($0 --quick --only iq4_nl | grep -c ' tok ') = 5 ] && ! $0 --quick --only q9 2>/dev/null"
                $<TARGET_FILE:bench-kern>)
  # --stream (tests/bench_kern_stream.sh): the classes' bits on 1 and 2
  # threads, --only, bad values refused
  moe_test(NAME bench_kern_stream LABELS bench TIMEOUT 60
           ARGS sh ${CMAKE_CURRENT_SOURCE_DIR}/bench_kern_stream.sh $<TARGET_FILE:bench-kern>)
endif()
# Optional int8-activation path on Q8_0 models against `llamacpp`, by the
# README's Q8_0 rule (median over teacher-forced rows of d <= 1e-1).
foreach(model tiny_q8_0 v3_mini_q8_0)
  moe_test(NAME golden_${model}_llamacpp_int8 LABELS golden TIMEOUT 60
           ARGS $<TARGET_FILE:engine_golden> ${model} llamacpp 1e-1 0 int8)
  # the same with the dense Q8_0 matrices repacked (--repack)
  moe_test(NAME golden_${model}_llamacpp_int8rp LABELS golden TIMEOUT 60
           ARGS $<TARGET_FILE:engine_golden> ${model} llamacpp 1e-1 0 int8rp)
endforeach()
moe_test(NAME engine_badmodel SOURCES engine_badmodel.c LIBS moe_worker LABELS unit TIMEOUT 60)
# Prefix caching: the block index, and cached runs bitwise equal to cold ones.
moe_test(NAME prefix_cache SOURCES prefix_cache.c LIBS moe_worker LABELS unit TIMEOUT 120)
# The MTP block's draft rows (moe_engine_mtp_step) against an independent
# float64 reference (tests/mtp_ref.py, itself checked against the fixtures'
# exact logits), on a V3-style model with one MTP block; the MTP step's
# pieces bitwise its whole (tests/mtp_dump.c).
add_executable(mtp_dump mtp_dump.c)
target_include_directories(mtp_dump PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(mtp_dump PRIVATE moe_worker)
moe_test(NAME mtp_ref_fixtures LABELS golden TIMEOUT 60
         ARGS /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/mtp_ref.py fixture ${MOE_FIXTURES} v3_mini_f32)
if(TARGET moe-mkmodel)
  moe_test(NAME mtp_draft LABELS golden TIMEOUT 120
           ARGS sh ${CMAKE_CURRENT_SOURCE_DIR}/mtp_test.sh $<TARGET_FILE:mtp_dump> ${CMAKE_CURRENT_SOURCE_DIR}/mtp_ref.py)
endif()
