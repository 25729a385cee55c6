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
