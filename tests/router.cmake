# Gating (router) pure functions.
moe_test(NAME router_gate SOURCES router.c LIBS moe_router LABELS unit TIMEOUT 30)
# EPLB (router/eplb): DeepSeek's README example, hand-worked global and
# hierarchical cases, libstdc++ sort ties, bad input.
moe_test(NAME eplb_test SOURCES eplb_test.c LIBS moe_router LABELS unit TIMEOUT 30)
