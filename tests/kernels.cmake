# Kernels (scalar reference vs AVX2) and the thread pool.
moe_test(NAME kernels SOURCES kernels.c LABELS unit TIMEOUT 60)
moe_test(NAME sampler SOURCES sampler.c LABELS unit TIMEOUT 30)
