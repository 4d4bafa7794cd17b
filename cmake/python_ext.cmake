# The compiled Python binding (python/quiver/_capi_build.py: cffi API mode)
# as build/python/quiver/_capi<suffix>, next to libquiver.so.0, where the
# Python package looks for it. Optional: without Debian's python3-cffi and
# python3-dev (or in a sanitizer build, whose runtime Python does not load)
# it is skipped and the package stays in ABI mode.
option(QV_PYTHON_EXT "Build the compiled Python binding (python3-cffi, python3-dev)" ON)
set(QV_PYTHON "/usr/bin/python3" CACHE FILEPATH "The Python the compiled binding is built for")
if(QV_PYTHON_EXT AND QV_SANITIZE STREQUAL "" AND EXISTS ${QV_PYTHON})
  execute_process(
    COMMAND ${QV_PYTHON} -c "import cffi, os, sysconfig; \
assert os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')); \
print(sysconfig.get_config_var('EXT_SUFFIX'), end='')"
    OUTPUT_VARIABLE QV_PY_EXT_SUFFIX RESULT_VARIABLE QV_PY_OK ERROR_QUIET)
  if(QV_PY_OK EQUAL 0)
    set(QV_PY_DIR ${PROJECT_SOURCE_DIR}/python/quiver)
    set(QV_PY_EXT ${PROJECT_BINARY_DIR}/python/quiver/_capi${QV_PY_EXT_SUFFIX})
    add_custom_command(OUTPUT ${QV_PY_EXT}
      COMMAND ${QV_PYTHON} ${QV_PY_DIR}/_capi_build.py ${PROJECT_BINARY_DIR}/python
              ${PROJECT_SOURCE_DIR}/include > /dev/null
      DEPENDS ${QV_PY_DIR}/_capi_build.py ${QV_PY_DIR}/_cdef.py
              ${PROJECT_SOURCE_DIR}/include/quiver.h
      COMMENT "Building the compiled Python binding (quiver._capi)" VERBATIM)
    add_custom_target(quiver_python_ext ALL DEPENDS ${QV_PY_EXT})
  else()
    message(STATUS "quiver: no python3-cffi or python3-dev for ${QV_PYTHON}: "
                   "the Python package will use cffi's ABI mode")
  endif()
endif()
