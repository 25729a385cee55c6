# End-to-end: coordinator + worker job + clients over real sockets (Release only).
add_executable(e2e_client e2e_client.c)
target_link_libraries(e2e_client PRIVATE moe_proto moe_core m)
