# The log line formats of core/base (text and JSON, --log-format) and the
# rate limiter (a repeated line printed once, with its count).
moe_test(NAME log_test SOURCES log_test.c LIBS m LABELS unit TIMEOUT 30)
