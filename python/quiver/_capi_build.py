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


def main(argv: list[str]) -> int:
    out_dir, include_dir = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    ffi = FFI()
    ffi.cdef(api_cdef())
    ffi.set_source("quiver._capi", "#include <quiver.h>\n", include_dirs=[include_dir],
                   extra_compile_args=["-O2"])
    ffi.compile(tmpdir=out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
