# Kernels (scalar reference vs AVX2) and the thread pool.
moe_test(NAME kernels SOURCES kernels.c LABELS unit TIMEOUT 60)
# The same checks under both L2 prefetch policies (moe_kern_l2_prefetch,
# whichever this CPU's vendor chose): the avx512 Q8_0 one-token rows of
# 704 go through the tile with it and through the dot without, and both
# must give the same bits.
moe_test(NAME kernels_both_prefetch LABELS unit TIMEOUT 60
         ARGS sh -c "MOE_L2_PREFETCH=0 \"$0\" && MOE_L2_PREFETCH=1 \"$0\"" $<TARGET_FILE:kernels>)
moe_test(NAME sampler SOURCES sampler.c LABELS unit TIMEOUT 30)
# The quantized weight types: block fixtures bitwise, activation quantizers
# bitwise the README's rules, every type's float and int8 kernels.
moe_test(NAME quant_kernels SOURCES quant_kernels.c LABELS unit TIMEOUT 60)
