# Security (docs/security.md): key files (unit, also under ASan), and
# CURVE, TLS, the impostor rank and the hello rules end to end (Release).
moe_test(NAME keyfile_test SOURCES keyfile_test.c LABELS unit TIMEOUT 30)
moe_test(NAME auth_test SOURCES auth_test.c LIBS moe_proto LABELS unit TIMEOUT 60)
set_tests_properties(auth_test PROPERTIES SKIP_RETURN_CODE 77) # a libzmq without CURVE: reported as skipped
add_executable(sec_client sec_client.c)
target_link_libraries(sec_client PRIVATE moe_proto moe_core)
foreach(check impostor curve_clients curve_workers tls nonlocal nohello serve_keys)
  moe_test(NAME sec_${check} LABELS e2e TIMEOUT 180 RESOURCE_LOCK cores
           ARGS ${CMAKE_CURRENT_SOURCE_DIR}/sec_test.sh ${check})
endforeach()
set_tests_properties(sec_impostor PROPERTIES LABELS "e2e;fault")
