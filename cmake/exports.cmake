# Writes a linker version script exporting exactly the functions declared in
# the public header (every "qv_name(" at the start of a declaration), so the
# shared library's symbols cannot drift from the API: internal qv_* functions
# stay local.
function(qv_write_version_script header out)
  file(READ ${header} text)
  # Drop comments and macro bodies' line continuations before matching.
  string(REGEX REPLACE "/\\*([^*]|\\*+[^*/])*\\*+/" "" text "${text}")
  string(REGEX MATCHALL "[ *](qv_[a-z0-9_]+)\\(" calls "${text}")
  set(names "")
  foreach(c ${calls})
    string(REGEX REPLACE "^[ *](qv_[a-z0-9_]+)\\($" "\\1" name "${c}")
    list(APPEND names ${name})
  endforeach()
  # Lower-case names used only as macros (qv_get and friends) expand to
  # qv_request; they are not functions.
  list(REMOVE_ITEM names qv_get qv_post qv_put qv_patch qv_delete qv_head qv_options)
  list(REMOVE_DUPLICATES names)
  list(SORT names)
  set(body "QUIVER_${PROJECT_VERSION_MAJOR} {\n  global:\n")
  foreach(n ${names})
    string(APPEND body "    ${n};\n")
  endforeach()
  string(APPEND body "  local:\n    *;\n};\n")
  file(WRITE ${out}.tmp "${body}")
  configure_file(${out}.tmp ${out} COPYONLY)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${header})
endfunction()
