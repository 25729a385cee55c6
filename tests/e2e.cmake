# End-to-end: coordinator + worker job + clients over real sockets (Release only).
add_executable(e2e_client e2e_client.c)
target_link_libraries(e2e_client PRIVATE moe_proto moe_core m)
foreach(check badinput stream slowreader queuefull cancel client_killed rank_stopped rank_restart drain concurrent main_job metrics logjson logprobs)
  moe_test(NAME e2e_${check} LABELS e2e TIMEOUT 180 RESOURCE_LOCK cores
           ARGS ${CMAKE_CURRENT_SOURCE_DIR}/e2e_test.sh ${check})
endforeach()
set_tests_properties(e2e_client_killed e2e_rank_stopped e2e_rank_restart PROPERTIES LABELS "e2e;fault")
