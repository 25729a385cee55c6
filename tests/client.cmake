# moe-client (tools/moe_client_main.c, tools/client_req.c).
# client_req_test: the request-file parser, parameters and escaping.
# client_test: the client binary against a fake coordinator on a real ipc:// ROUTER.
moe_test(NAME client_req_test SOURCES client_req_test.c LIBS moe_tools LABELS unit TIMEOUT 30)
moe_test(NAME client_test SOURCES client_test.c LIBS moe_proto LABELS unit TIMEOUT 120)
add_dependencies(client_test moe-client)
# reqline_test: the request-file format both moe-client --file and moe-worker --batch read (core/reqline.c).
moe_test(NAME reqline_test SOURCES reqline_test.c LABELS unit TIMEOUT 30)
