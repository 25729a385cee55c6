# The wire protocol and the ZMQ link (proto/).
moe_test(NAME proto_msg_test SOURCES proto_msg_test.c LIBS moe_proto LABELS unit TIMEOUT 30)
moe_test(NAME proto_link_test SOURCES proto_link_test.c LIBS moe_proto LABELS unit TIMEOUT 60)

# libFuzzer target (clang tree only): msg.c is compiled into it so that the
# decoder and the checks carry coverage instrumentation.  A fixed seed and
# run count keep the ctest run short and reproducible.
if(CMAKE_C_COMPILER_ID STREQUAL "Clang")
  add_executable(proto_fuzz proto_fuzz.c ${CMAKE_SOURCE_DIR}/proto/msg.c)
  target_compile_options(proto_fuzz PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  target_link_options(proto_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(proto_fuzz PRIVATE moe_proto moe_core)
  moe_test(NAME proto_fuzz LABELS fuzz TIMEOUT 300 ARGS $<TARGET_FILE:proto_fuzz> -seed=1 -runs=200000 -max_len=4096)
endif()
# base64 (core/b64) of routed experts in JSON answers.
moe_test(NAME b64_test SOURCES b64_test.c LABELS unit TIMEOUT 30)
