# moe-run --chat / --prompt with a real tokenizer copied into a generated model.
moe_test(NAME run_chat_test LABELS golden TIMEOUT 120 ARGS ${CMAKE_CURRENT_SOURCE_DIR}/run_chat_test.sh)
