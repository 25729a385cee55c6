# Regression data (tests/data/regress, from tests/regress/dump.sh before the
# kernel-set reshape): every kernel set this CPU runs reproduces it bit for bit.
moe_test(NAME regress_logits LABELS golden TIMEOUT 180
         ARGS sh ${CMAKE_CURRENT_SOURCE_DIR}/regress/regress_check.sh ${CMAKE_BINARY_DIR}/bin
              ${CMAKE_CURRENT_SOURCE_DIR}/data/regress)
