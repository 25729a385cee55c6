# The wire protocol and the ZMQ link (proto/).
moe_test(NAME proto_msg_test SOURCES proto_msg_test.c LIBS moe_proto LABELS unit TIMEOUT 30)
moe_test(NAME proto_link_test SOURCES proto_link_test.c LIBS moe_proto LABELS unit TIMEOUT 60)
