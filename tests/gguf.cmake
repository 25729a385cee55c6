# GGUF reader, dtype conversions and moe-gguf (see each source's header).
moe_test(NAME gguf_reader SOURCES gguf_reader.c LABELS unit TIMEOUT 60)
moe_test(NAME gguf_truncation SOURCES gguf_truncation.c LABELS unit TIMEOUT 180)
moe_test(NAME gguf_print SOURCES gguf_print.c LABELS unit TIMEOUT 60)
add_dependencies(gguf_print moe-gguf)
moe_test(NAME dtype_convert SOURCES dtype_convert.c LABELS unit TIMEOUT 180)

# libFuzzer target for the reader: clang only (the asan tree).  The reader's
# sources are compiled into it so that they carry the fuzzer's coverage
# instrumentation; moe_core supplies anything else they call.
if(CMAKE_C_COMPILER_ID STREQUAL "Clang")
  add_executable(fuzz_gguf fuzz/fuzz_gguf.c
    ${CMAKE_SOURCE_DIR}/core/gguf.c ${CMAKE_SOURCE_DIR}/core/dtype.c ${CMAKE_SOURCE_DIR}/core/base.c)
  target_include_directories(fuzz_gguf PRIVATE ${CMAKE_SOURCE_DIR}/core)
  target_compile_options(fuzz_gguf PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  target_link_options(fuzz_gguf PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_gguf PRIVATE moe_core)
  add_dependencies(fuzz_gguf gguf_reader)
  moe_test(NAME fuzz_gguf LABELS fuzz TIMEOUT 300
    ARGS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run_fuzz_gguf.sh $<TARGET_FILE:fuzz_gguf> $<TARGET_FILE:gguf_reader> 1500000)
endif()
