"""Python values as the C structures quiver copies at submit."""

from __future__ import annotations

from typing import Any, Iterable, Optional, Union

from ._ffi import ffi

NULL = ffi.NULL


def to_bytes(v: Union[str, bytes], encoding: str = "latin-1") -> bytes:
    """Header names and values go out as requests sends them: str as
    latin-1 (http.client's rule), bytes as they are."""
    return v if isinstance(v, bytes) else str(v).encode(encoding)


def pairs(items: Iterable[tuple[Any, Any]], keep: list, encoding: str = "latin-1") -> Any:
    """A {name, value}... {0} array (qv_header/qv_param/qv_cookie); a None
    value stays NULL (for headers: remove libcurl's own). The strings are
    appended to `keep`, which must outlive the submit."""
    items = list(items)
    if not items:
        return NULL
    arr = ffi.new("qv_pair[]", len(items) + 1)
    for i, (k, v) in enumerate(items):
        kc = ffi.new("char[]", to_bytes(k, encoding))
        keep.append(kc)
        arr[i].name = kc
        if v is not None:
            vc = ffi.new("char[]", to_bytes(v, encoding))
            keep.append(vc)
            arr[i].value = vc
    keep.append(arr)
    return arr


def cstr(s: Optional[Union[str, bytes]], keep: list, encoding: str = "utf-8") -> Any:
    if s is None:
        return NULL
    c = ffi.new("char[]", to_bytes(s, encoding))
    keep.append(c)
    return c


def _ms(seconds: Optional[float]) -> int:
    """Seconds (requests' unit) as quiver's milliseconds; None is no limit
    (-1). A positive value never rounds down to 0, which means "default"."""
    if seconds is None:
        return -1
    ms = int(round(float(seconds) * 1000))
    if ms <= 0:
        if float(seconds) < 0:
            raise ValueError(f"timeout must be a positive number or None, not {seconds!r}")
        ms = 1
    return ms


def timeouts(timeout: Any) -> tuple[int, int]:
    """requests' timeout (a number, a (connect, read) tuple, or None) as
    (connect_timeout_ms, read_timeout_ms); None is no limit, as in requests."""
    if timeout is None:
        return -1, -1
    if isinstance(timeout, tuple):
        try:
            connect, read = timeout
        except ValueError:
            raise ValueError(f"Invalid timeout {timeout}. Pass a (connect, read) timeout tuple, "
                             "or a single float to set both timeouts to the same value.") from None
        return _ms(connect), _ms(read)
    ms = _ms(timeout)
    return ms, ms


def retry_struct(retries: Any, keep: list) -> Any:
    """quiver's retry policy from an int (max retries, default triggers) or a
    dict with qv_retry's fields (`statuses` a list of ints)."""
    if retries is None:
        return NULL
    if isinstance(retries, int):
        retries = {"max_retries": retries}
    spec = dict(retries)
    statuses = spec.pop("statuses", None)
    r = ffi.new("qv_retry *", spec)
    if statuses is not None:
        arr = ffi.new("int[]", list(statuses) + [0])
        keep.append(arr)
        r.statuses = arr
    keep.append(r)
    return r
