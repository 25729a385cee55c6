# Tokenizer, streaming detokenizer and chat templates (core/tok/,
# core/chat.c, core/unicode.c).
moe_test(NAME tokenizer_golden_test SOURCES tokenizer_golden_test.c LABELS golden TIMEOUT 60)
moe_test(NAME tokenizer_unit_test SOURCES tokenizer_unit_test.c LABELS unit TIMEOUT 120)
moe_test(NAME chat_test SOURCES chat_test.c LABELS golden TIMEOUT 60)
moe_test(NAME tokenizer_cli_test SOURCES tokenizer_cli_test.c LABELS golden TIMEOUT 120)

# libFuzzer target (clang tree only): the tokenizer, Unicode and chat
# sources are compiled into it so that they carry coverage instrumentation.
# A fixed seed and run count keep the ctest run short and reproducible.
if(CMAKE_C_COMPILER_ID STREQUAL "Clang")
  file(GLOB MOE_TOK_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/core/tok/*.c)
  add_executable(tokenizer_fuzz tokenizer_fuzz.c ${MOE_TOK_SOURCES}
    ${CMAKE_SOURCE_DIR}/core/unicode.c ${CMAKE_SOURCE_DIR}/core/chat.c)
  target_include_directories(tokenizer_fuzz PRIVATE ${CMAKE_SOURCE_DIR}/core)
  target_compile_options(tokenizer_fuzz PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  target_link_options(tokenizer_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(tokenizer_fuzz PRIVATE moe_core)
  moe_test(NAME tokenizer_fuzz LABELS fuzz TIMEOUT 300
    ARGS $<TARGET_FILE:tokenizer_fuzz> -seed=1 -runs=300000 -max_len=2048)
endif()
