# Tokenizer, streaming detokenizer and chat templates (core/tokenizer.c,
# core/chat.c, core/unicode.c).
moe_test(NAME tokenizer_golden_test SOURCES tokenizer_golden_test.c LABELS golden TIMEOUT 60)
moe_test(NAME tokenizer_unit_test SOURCES tokenizer_unit_test.c LABELS unit TIMEOUT 120)
moe_test(NAME chat_test SOURCES chat_test.c LABELS golden TIMEOUT 60)
moe_test(NAME tokenizer_cli_test SOURCES tokenizer_cli_test.c LABELS golden TIMEOUT 120)
