# Quantized weight types: the encoders against llama-quantize's files, and
# moe-gguf --summary on them.  Under the sanitizers the byte-for-byte
# recode runs on three file types (the encoders are all checked there by
# quant_enc_test on the block fixtures); Release runs all twelve.
if(MOE_SANITIZE)
  set(MOE_QUANT_RECODE_TYPES q4_k_m q6_k q8_0)
endif()
moe_test(NAME quant_recode LABELS golden TIMEOUT 120
         ARGS sh ${CMAKE_CURRENT_SOURCE_DIR}/quant_recode.sh ${MOE_QUANT_RECODE_TYPES})
moe_test(NAME quant_summary LABELS golden TIMEOUT 60
         ARGS sh ${CMAKE_CURRENT_SOURCE_DIR}/quant_summary.sh)
moe_test(NAME quant_enc_test SOURCES quant_enc_test.c LIBS moe_tools LABELS unit TIMEOUT 60)
# its sequential copies of ggml's searches must round as ggml's reference build does
set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/quant_enc_test.c PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
# The fixtures' quant/ folder: llama-quantize files (K-quants, legacy quants,
# IQ4_NL/XS) of two small models, by the rules of its README, teacher-forced
# (engine_golden, which also runs the scalar reference set).
#   float activations vs `exact`: d <= 2e-3 every row, greedy where margin > 4e-3
#   int8 activations (each weight type's dot type) vs `llamacpp`: median d <= 1e-1
# The F32 source against both references at the F32 tolerance.
foreach(ref exact llamacpp)
  moe_test(NAME golden_quant_kq_v3_f32_${ref} LABELS golden TIMEOUT 60
           ARGS $<TARGET_FILE:engine_golden> quant/kq_v3_f32 ${ref} 3e-5 0)
endforeach()
foreach(model kq_v3_q4_k_m kq_v3_q5_k_m kq_v3_q6_k kq_v3_q3_k_m kq_v3_q2_k kq_v3_iq4_xs kq_v3_q4_0 kq_v3_q4_1
              kq_v3_q5_0 kq_v3_q5_1 kq_v3_iq4_nl kq_v3_q8_0 kq_v2lite_q4_k_m kq_v2lite_q5_k_m kq_v2lite_q6_k
              kq_v2lite_q3_k_m kq_v2lite_q2_k kq_v2lite_iq4_xs kq_v2lite_q4_0 kq_v2lite_q4_1 kq_v2lite_q5_0
              kq_v2lite_q5_1 kq_v2lite_iq4_nl)
  moe_test(NAME golden_quant_${model}_exact LABELS golden TIMEOUT 60
           ARGS $<TARGET_FILE:engine_golden> quant/${model} exact 2e-3 4e-3)
  moe_test(NAME golden_quant_${model}_llamacpp_int8 LABELS golden TIMEOUT 60
           ARGS $<TARGET_FILE:engine_golden> quant/${model} llamacpp 1e-1 0 int8)
endforeach()
# Tied output (no output.weight): bitwise the file whose output.weight is token_embd;
# one activation quantized to several dot types in one run (a mixed file).
moe_test(NAME quant_files SOURCES quant_files.c LIBS moe_worker LABELS golden TIMEOUT 60)
# The worker job on 1..3 ranks bitwise equal to moe-run on K-quant files
# (the V2-Lite-style one mixes q4_K with q5_0 / q8_0 / q6_K).
foreach(np 1 2 3)
  moe_test(NAME worker_equal_quant_kq_v3_q4_k_m_np${np} LABELS mpi TIMEOUT 180 RESOURCE_LOCK cores
           ARGS ${CMAKE_CURRENT_SOURCE_DIR}/worker_test.sh equal ${MOE_FIXTURES}/quant/models/kq_v3_q4_k_m.gguf ${np})
endforeach()
moe_test(NAME worker_equal_quant_kq_v2lite_q4_k_m_np2 LABELS mpi TIMEOUT 180 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/worker_test.sh equal ${MOE_FIXTURES}/quant/models/kq_v2lite_q4_k_m.gguf 2)
# The int8 path dispatches rows already quantized to the experts' dot type:
# q8_1 (Q4_1 experts) bitwise equal too, and each dispatch type's row size
# (q8_1, q8_K) in the bytes the ranks count (q8_0 and floats: mpi.cmake).
moe_test(NAME worker_equal_quant_kq_v3_q4_1_np2 LABELS mpi TIMEOUT 180 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/worker_test.sh equal ${MOE_FIXTURES}/quant/models/kq_v3_q4_1.gguf 2)
foreach(model kq_v3_q4_1 kq_v3_q4_k_m)
  moe_test(NAME worker_bytes_quant_${model}_np3 LABELS mpi TIMEOUT 120 RESOURCE_LOCK cores
           ARGS ${CMAKE_CURRENT_SOURCE_DIR}/worker_test.sh bytes ${MOE_FIXTURES}/quant/models/${model}.gguf 3)
endforeach()
