"""The cffi binding: `ffi` and `lib` for the rest of the package.

libquiver.so.0 is always loaded here first (ABI mode: no compiler needed),
with RTLD_GLOBAL. When the compiled binding (API mode: quiver._capi, built
by the C library's CMake build, see _capi_build.py) was built next to that
library, `ffi` and `lib` are its own: its calls are plain C calls (no
libffi) and resolve to the library loaded here. Otherwise they are ABI
mode's. QUIVER_BINDING=abi forces ABI mode; QUIVER_BINDING=api makes a
missing extension an ImportError. BINDING says which is in use.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, Optional

from cffi import FFI

from ._cdef import CDEF

_abi = FFI()
_abi.cdef(CDEF)


def _candidates() -> list[str]:
    """Where libquiver.so.0 is looked for, in order (see docs/python.md)."""
    env = os.environ.get("QUIVER_LIB")
    if env:
        return [env]  # set: that library or an error, never a silent fallback
    repo_build = Path(__file__).resolve().parents[2] / "build" / "libquiver.so.0"
    return ["libquiver.so.0", str(repo_build)]


def _load() -> tuple[Any, str]:
    errors = []
    for cand in _candidates():
        try:
            # global: the compiled binding's calls resolve to this library;
            # never unloaded: quiver's threads may still run while the
            # interpreter exits and frees this handle (it would unmap their code)
            return _abi.dlopen(cand, _abi.RTLD_NOW | _abi.RTLD_GLOBAL | _abi.RTLD_NODELETE), cand
        except OSError as e:
            errors.append(f"{cand}: {e}")
    raise ImportError("quiver: cannot load libquiver.so.0 (set QUIVER_LIB to its path, install "
                      "it, or build it with CMake into build/): " + "; ".join(errors))


def _compiled(lib_path: str) -> Optional[Any]:
    """quiver._capi as built with the library at lib_path (in its build
    directory's python/quiver/), or installed in this package; None if
    there is none, or if it does not load against this library (built for
    another version of it)."""
    mode = os.environ.get("QUIVER_BINDING", "")
    if mode not in ("", "abi", "api"):
        raise ImportError(f"QUIVER_BINDING must be abi or api, not {mode!r}")
    if mode == "abi":
        return None
    name = "_capi" + importlib.machinery.EXTENSION_SUFFIXES[0]
    places = [Path(__file__).parent / name]
    if os.sep in lib_path:
        places.insert(0, Path(lib_path).resolve().parent / "python" / "quiver" / name)
    errors = []
    for path in places:
        if not path.exists():
            continue
        spec = importlib.util.spec_from_file_location("quiver._capi", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            return module
        except ImportError as e:
            errors.append(f"{path}: {e}")
    if mode == "api":
        raise ImportError("quiver: QUIVER_BINDING=api but no compiled binding loads (build it "
                          f"with the C library's CMake build): {'; '.join(errors) or places}")
    return None


_lib, LIB_PATH = _load()
_capi = _compiled(LIB_PATH)
if _capi is not None:
    ffi, lib, BINDING = _capi.ffi, _capi.lib, "api"
    fill, take_result, wait_take = lib.qvpy_fill, lib.qvpy_take, lib.qvpy_wait_take
    request, request_error = lib.qvpy_request, lib.qvpy_request_error
else:
    ffi, lib, BINDING = _abi, _lib, "abi"

    # _capi_build.py's helpers, for ABI mode (without its copy of a small
    # body or its memory of the last strings: every *_gen moves)
    def fill(r: Any, t: Any) -> None:
        """What Python reads of response r, into the qvpy_taken t."""
        info = ffi.addressof(t, "info")
        info.size = ffi.sizeof("qv_response_info")
        lib.qv_response_info_get(r, info, t.buf, t.cap)
        t.status, t.headers_len, t.body_len = info.status, info.headers_len, info.body_len
        t.body_at, t.history_len, t.elapsed_ms = -1, info.history_len, info.elapsed_ms
        t.http_version, t.attempts = info.http_version, info.attempts
        ffi.memmove(ffi.addressof(t, "timing"), ffi.addressof(info, "timing"),
                    ffi.sizeof("qv_timing"))
        t.reason_gen += 1
        t.url_gen += 1
        t.type_gen += 1
        t.strings_gen += 3

    def take_result(f: Any, timeout_ms: int, t: Any) -> int:
        """A future's outcome once it is done (or QV_EWAIT_TIMEOUT) and, for
        a response, t filled from it (t.resp)."""
        out = ffi.addressof(t, "resp")
        rc = lib.qv_future_result(f, out, timeout_ms)
        if rc == 0:
            fill(out[0], t)
        return rc

    _failed = threading.local()

    def request(s: Any, opts: Any) -> Any:
        """qv_request's future, or NULL (its code then from request_error)."""
        out = ffi.new("qv_future **")
        rc = lib.qv_request(s, out, opts)
        if rc:
            _failed.rc = rc
            return ffi.NULL
        return out[0]

    def request_error() -> int:
        """The code of this thread's last failed request()."""
        return _failed.rc

    def wait_take(ref: Any, timeout_ms: int, t: Any) -> int:
        """take_result, then releases ref, the caller's reference."""
        try:
            return take_result(ref, timeout_ms, t)
        finally:
            lib.qv_future_release(ref)
