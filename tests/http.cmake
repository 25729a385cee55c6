# The OpenAI-compatible HTTP API (coordinator/front_http.c, openai.c).
moe_test(NAME openai_test SOURCES openai_test.c LIBS moe_coord LABELS unit TIMEOUT 60)
foreach(check generate logprobs prefix mtp errors health disconnect queuefull)
  moe_test(NAME e2e_http_${check} LABELS e2e TIMEOUT 180 RESOURCE_LOCK cores
           ARGS ${CMAKE_CURRENT_SOURCE_DIR}/http_test.sh ${check})
endforeach()

# libFuzzer targets (clang tree only): the body parser and the writers, a
# fixed seed and run count each (the writer renders several answers per
# input: fewer runs keep it to seconds).
if(CMAKE_C_COMPILER_ID STREQUAL "Clang")
  foreach(t openai_parse_fuzz openai_write_fuzz)
    add_executable(${t} fuzz/${t}.c ${CMAKE_SOURCE_DIR}/coordinator/openai.c)
    target_compile_options(${t} PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
    target_link_options(${t} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(${t} PRIVATE moe_coord)
  endforeach()
  moe_test(NAME openai_parse_fuzz LABELS fuzz TIMEOUT 300 ARGS $<TARGET_FILE:openai_parse_fuzz> -seed=1 -runs=60000
           -max_len=2048 -dict=${CMAKE_CURRENT_SOURCE_DIR}/fuzz/openai.dict)
  moe_test(NAME openai_write_fuzz LABELS fuzz TIMEOUT 300 ARGS $<TARGET_FILE:openai_write_fuzz> -seed=1 -runs=12000
           -max_len=512)
endif()

# The official openai SDK (Node.js, pinned in tests/openai/package-lock.json,
# installed by scripts/setup.sh) against the server: completions and chat,
# plain and streaming, equal to moe-run; 256 concurrent streams and 64
# mid-stream disconnects.
foreach(check sdk load)
  moe_test(NAME e2e_openai_${check} LABELS e2e TIMEOUT 300 RESOURCE_LOCK cores
           ARGS ${CMAKE_CURRENT_SOURCE_DIR}/openai/openai_test.sh ${check})
endforeach()

# Live rebalancing of a serving job: POST /admin/placement (a bad one refused
# with the job's reason, a good one applied mid-decode), 16 streams identical.
moe_test(NAME e2e_live_placement LABELS e2e TIMEOUT 180 RESOURCE_LOCK cores
         ARGS ${CMAKE_CURRENT_SOURCE_DIR}/live_serve_test.sh)
