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
