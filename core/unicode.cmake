# Unicode property tables for the tokenizer, generated at build time from
# the Unicode Character Database (Debian package unicode-data) by
# tools/gen/gen_unicode.py.  The generated C file lives in the build tree.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
set(MOE_UNICODE_DIR "/usr/share/unicode" CACHE PATH "Folder with UnicodeData.txt and PropList.txt")
foreach(f UnicodeData.txt PropList.txt)
  if(NOT EXISTS ${MOE_UNICODE_DIR}/${f})
    message(FATAL_ERROR "${MOE_UNICODE_DIR}/${f} not found: install the unicode-data package "
                        "(scripts/setup.sh) or set MOE_UNICODE_DIR")
  endif()
endforeach()
set(MOE_UNICODE_GEN ${CMAKE_SOURCE_DIR}/tools/gen/gen_unicode.py)
set(MOE_UNICODE_TABLES ${CMAKE_CURRENT_BINARY_DIR}/moe_unicode_tables.c)
add_custom_command(
  OUTPUT ${MOE_UNICODE_TABLES}
  COMMAND ${Python3_EXECUTABLE} ${MOE_UNICODE_GEN}
          ${MOE_UNICODE_DIR}/UnicodeData.txt ${MOE_UNICODE_DIR}/PropList.txt ${MOE_UNICODE_TABLES}
  DEPENDS ${MOE_UNICODE_GEN} ${MOE_UNICODE_DIR}/UnicodeData.txt ${MOE_UNICODE_DIR}/PropList.txt
  COMMENT "Generating Unicode property tables"
  VERBATIM)
target_sources(moe_core PRIVATE ${MOE_UNICODE_TABLES})
