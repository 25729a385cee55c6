# Tokenizer, streaming detokenizer and chat templates (core/tokenizer.c,
# core/chat.c, core/unicode.c).
moe_test(NAME tokenizer_golden_test SOURCES tokenizer_golden_test.c LABELS golden TIMEOUT 60)
