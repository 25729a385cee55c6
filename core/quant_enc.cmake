# The reference quantizers must round like llama.cpp's, which were built
# without fused multiply-add: no contraction of a*b+c in quant_enc.c.
set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/quant_enc.c PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
