# GGUF writer and moe-mkmodel against the fixtures.
moe_test(NAME writer_test SOURCES writer_test.c LABELS unit TIMEOUT 120)
add_dependencies(writer_test moe-mkmodel)
