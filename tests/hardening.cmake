# Hardening (issue 18, items 2 and 3): per-client limits and fairness under a
# flood of junk identities, the memory bomb, big prompts beside a small
# request.  Loopback TCP only (junk from 127.0.0.2 and up); Release only.
# The bounds are >= 5x the figures measured on 2 shared cores (docs/limits.md);
# bench/hardening/run.sh prints the tight ones.
add_executable(hard_client hard_client.c)
target_link_libraries(hard_client PRIVATE moe_proto moe_core m)
foreach(check flood bomb bigprompt)
  moe_test(NAME hardening_${check} LABELS e2e fault TIMEOUT 180 RESOURCE_LOCK cores
           ARGS ${CMAKE_CURRENT_SOURCE_DIR}/hardening_test.sh ${check})
endforeach()
