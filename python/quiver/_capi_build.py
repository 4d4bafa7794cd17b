"""Builds quiver._capi, the compiled (cffi API mode) binding, from
include/quiver.h; run by the C library's CMake build when Debian's
python3-cffi and python3-dev are there (see docs/python.md):

    /usr/bin/python3 python/quiver/_capi_build.py OUT_DIR INCLUDE_DIR

writes OUT_DIR/quiver/_capi<EXT_SUFFIX>. The module is not linked with
libquiver: its calls resolve to the libquiver.so.0 that _ffi.py loads first
(RTLD_GLOBAL), the one QUIVER_LIB names.
"""

from __future__ import annotations

import os
import sys

from cffi import FFI

from _cdef import api_cdef  # run as a script: this directory is on sys.path

# Helpers that do in one call what the package would otherwise do in two or
# three (each call out of Python costs more than the C it runs); _ffi.py has
# the same in Python for ABI mode.
HELPERS_CDEF = """
int qvpy_wait_release(qv_future *ref, long timeout_ms);
int qvpy_take(qv_future *f, qv_response **out, qv_response_info *info, char *headers,
              size_t headers_cap);
"""
HELPERS_C = r"""
/* Waits for a future, then releases `ref`, the caller's own reference to it
 * (taken under the lock that guards the reference it shares). */
static int qvpy_wait_release(qv_future *ref, long timeout_ms)
{
    int rc = qv_future_result(ref, NULL, timeout_ms);
    qv_future_release(ref);
    return rc;
}

/* A done future's outcome and, for a response, what a binding reads of it. */
static int qvpy_take(qv_future *f, qv_response **out, qv_response_info *info, char *headers,
                     size_t headers_cap)
{
    int rc = qv_future_result(f, out, 0);
    if (rc == QV_OK) qv_response_info_get(*out, info, headers, headers_cap);
    return rc;
}
"""


def main(argv: list[str]) -> int:
    out_dir, include_dir = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    ffi = FFI()
    ffi.cdef(api_cdef() + HELPERS_CDEF)
    ffi.set_source("quiver._capi", "#include <quiver.h>\n" + HELPERS_C, include_dirs=[include_dir],
                   extra_compile_args=["-O2"])
    ffi.compile(tmpdir=out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
