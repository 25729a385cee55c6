# moe-client (tools/moe_client_main.c, tools/client/) and the request-file format (core/reqline.c).
# reqline_test: the request-file format both moe-client --file and moe-worker --batch read.
# client_parts_test: the client's socket-free parts: endpoints, result lines, the summary.
# client_test: the client binary against a fake coordinator on a real ipc:// ROUTER.
moe_test(NAME reqline_test SOURCES reqline_test.c LABELS unit TIMEOUT 30)
moe_test(NAME client_parts_test SOURCES client_parts_test.c LIBS moe_tools_client LABELS unit TIMEOUT 30)
moe_test(NAME client_test SOURCES client_test.c LIBS moe_proto LABELS unit TIMEOUT 120)
add_dependencies(client_test moe-client)
