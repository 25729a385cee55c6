# Gating (router) pure functions.
moe_test(NAME router_gate SOURCES router.c LIBS moe_router LABELS unit TIMEOUT 30)
