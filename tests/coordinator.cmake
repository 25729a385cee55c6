# The coordinator's parts.
moe_test(NAME sched_test SOURCES sched_test.c LIBS moe_coord LABELS unit TIMEOUT 60)
moe_test(NAME request_test SOURCES request_test.c LIBS moe_coord LABELS unit TIMEOUT 60)
