"""Builds quiver._capi, the compiled (cffi API mode) binding, from
include/quiver.h (see docs/python.md), in either of two ways:

- the C library's CMake build runs it when Debian's python3-cffi and
  python3-dev are there:

      /usr/bin/python3 python/quiver/_capi_build.py OUT_DIR INCLUDE_DIR

  writes OUT_DIR/quiver/_capi<EXT_SUFFIX>;
- python/setup.py names `ffibuilder` in cffi_modules (pip install), with
  this repository's include/ (or the directory QUIVER_INCLUDE names).

The module is not linked with libquiver: its calls resolve to the
libquiver.so.0 that _ffi.py loads first (RTLD_GLOBAL), the one QUIVER_LIB
names.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cffi import FFI

# _cdef sits beside this file, which is run as a script or by cffi's
# setuptools hook (neither puts it on sys.path as a package module)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _cdef import api_cdef  # noqa: E402  pylint: disable=wrong-import-position

# Helpers that do in one call what the package would otherwise do in two or
# three (each call out of Python costs more than the C it runs); _ffi.py has
# the same in Python for ABI mode.
HELPERS_CDEF = """
int qvpy_take(qv_future *f, long timeout_ms, qv_response **out, qv_response_info *info,
              char *headers, size_t headers_cap);
int qvpy_wait_take(qv_future *ref, long timeout_ms, qv_response **out, qv_response_info *info,
                   char *headers, size_t headers_cap);
"""
HELPERS_C = r"""
/* A future's outcome once it is done (or QV_EWAIT_TIMEOUT) and, for a
 * response, what a binding reads of it. */
static int qvpy_take(qv_future *f, long timeout_ms, qv_response **out, qv_response_info *info,
                     char *headers, size_t headers_cap)
{
    int rc = qv_future_result(f, out, timeout_ms);
    if (rc == QV_OK) qv_response_info_get(*out, info, headers, headers_cap);
    return rc;
}

/* qvpy_take, then releases `ref`, the caller's own reference (taken under
 * the lock that guards the reference it shares: `*out` is valid while that
 * one is held). */
static int qvpy_wait_take(qv_future *ref, long timeout_ms, qv_response **out,
                          qv_response_info *info, char *headers, size_t headers_cap)
{
    int rc = qvpy_take(ref, timeout_ms, out, info, headers, headers_cap);
    qv_future_release(ref);
    return rc;
}
"""


def make_ffi(include_dir: str) -> FFI:
    """The extension's builder, for the quiver.h in include_dir. Not the
    limited API: the module's name ends in the interpreter's own suffix,
    where _ffi.py looks for it."""
    ffi = FFI()
    ffi.cdef(api_cdef() + HELPERS_CDEF)
    ffi.set_source("quiver._capi", "#include <quiver.h>\n" + HELPERS_C, include_dirs=[include_dir],
                   extra_compile_args=["-O2"], py_limited_api=False)
    return ffi


def main(argv: list[str]) -> int:
    out_dir, include_dir = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    make_ffi(include_dir).compile(tmpdir=out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
elif __name__ == "__cffi__":  # cffi_modules in setup.py
    ffibuilder = make_ffi(os.environ.get("QUIVER_INCLUDE")
                          or str(Path(__file__).resolve().parents[2] / "include"))
