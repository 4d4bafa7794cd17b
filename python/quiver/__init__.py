"""quiver for Python: asynchronous HTTP on libquiver.so.0 (through cffi).

- quiver.Session: the native layer (loop executor, HTTP/2, retries, host
  limits, backpressure, timing), for new code.
- requests_futures.sessions.FuturesSession (the sibling package): a drop-in
  for requests-futures with quiver doing the I/O.

Both return concurrent.futures.Future objects whose results are
requests.Response objects and whose failures are requests' exceptions.
"""

from ._engine import Future, QuiverError
from ._ffi import BINDING, LIB_PATH, ffi, lib
from .session import Session

__version__ = ffi.string(lib.qv_version()).decode()

__all__ = ["Future", "QuiverError", "Session", "BINDING", "LIB_PATH", "__version__"]
