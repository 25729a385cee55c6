# Quantized weight types: the encoders against llama-quantize's files, and
# moe-gguf --summary on them.
moe_test(NAME quant_recode LABELS golden TIMEOUT 120
         ARGS sh ${CMAKE_CURRENT_SOURCE_DIR}/quant_recode.sh)
moe_test(NAME quant_summary LABELS golden TIMEOUT 60
         ARGS sh ${CMAKE_CURRENT_SOURCE_DIR}/quant_summary.sh)
moe_test(NAME quant_enc_test SOURCES quant_enc_test.c LIBS moe_tools LABELS unit TIMEOUT 60)
