# Kernels (scalar reference vs AVX2) and the thread pool.
moe_test(NAME kernels SOURCES kernels.c LABELS unit TIMEOUT 60)
moe_test(NAME sampler SOURCES sampler.c LABELS unit TIMEOUT 30)
# The quantized weight types: block fixtures bitwise, activation quantizers
# bitwise the README's rules, every type's float and int8 kernels.
moe_test(NAME quant_kernels SOURCES quant_kernels.c LABELS unit TIMEOUT 60)
