# Expert placement and dispatch plans (router/placement).
moe_test(NAME placement_test SOURCES placement_test.c LIBS moe_router LABELS unit TIMEOUT 60)
