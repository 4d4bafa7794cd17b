"""The machinery under both Python layers: a quiver executor, the futures it
completes, and the turning of a qv_response into a requests.Response.

Completion: every submitted qv_future is added to one qv_cq (completion
queue) per engine; a single Python thread drains it, so quiver's own threads
never take the GIL (a done callback into Python would make each of them wait
for it). The drainer builds the Response and finishes the Python future;
response hooks and background callbacks are handed to a small thread pool so a
slow one never holds up other completions.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import datetime
import http.client
import os
import select
import threading
import weakref
from collections import OrderedDict
from concurrent.futures._base import PENDING
from typing import Any, Callable, Optional

import requests
from requests import exceptions as rex
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from ._ffi import ffi, lib

# Error codes (enum qv_error in quiver.h).
(QV_OK, QV_EINVAL, QV_ENOMEM, QV_EURL, QV_ECONNECT, QV_ECONNECT_TIMEOUT, QV_EREAD_TIMEOUT,
 QV_ETIMEOUT, QV_ETLS, QV_EPROXY, QV_EREDIRECTS, QV_EPROTOCOL, QV_ETOO_LARGE, QV_EDECODE,
 QV_EJSON, QV_EHTTP, QV_ECANCELLED, QV_ESHUTDOWN, QV_EWORKER, QV_EHOOK, QV_EWAIT_TIMEOUT,
 QV_EIO, QV_ETRANSFER, QV_EAGAIN) = range(24)

EXECUTOR_KINDS = {"threads": 0, "loop": 1, "processes": 2}

# quiver's codes as requests' exceptions (the ones requests raises for the
# same failure); anything else is a plain RequestException.
_EXCEPTIONS: dict[int, type[Exception]] = {
    QV_EURL: rex.InvalidURL,
    QV_ECONNECT: rex.ConnectionError,
    QV_ECONNECT_TIMEOUT: rex.ConnectTimeout,
    QV_EREAD_TIMEOUT: rex.ReadTimeout,
    QV_ETIMEOUT: rex.ReadTimeout,
    QV_ETLS: rex.SSLError,
    QV_EPROXY: rex.ProxyError,
    QV_EREDIRECTS: rex.TooManyRedirects,
    QV_EPROTOCOL: rex.ChunkedEncodingError,
    QV_ETOO_LARGE: rex.ContentDecodingError,
    QV_EDECODE: rex.ContentDecodingError,
    QV_EJSON: rex.InvalidJSONError,
    QV_EINVAL: rex.InvalidHeader,
    QV_EIO: OSError,
    QV_EWORKER: rex.ConnectionError,
    QV_ETRANSFER: rex.ConnectionError,
}


class QuiverError(rex.RequestException):
    """A quiver failure with no closer requests equivalent; `.code` is the
    quiver error code, `.qv_name` its name (e.g. "QV_EAGAIN")."""

    def __init__(self, *args: Any, code: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.code = code
        self.qv_name = ffi.string(lib.qv_errname(code)).decode()


def error_for(code: int, message: str, request: Any = None) -> Exception:
    """The exception a failed future raises for quiver error `code`."""
    if code == QV_ESHUTDOWN:
        return RuntimeError("cannot schedule new futures after shutdown")
    if code == QV_EAGAIN:
        return QuiverError(message, code=code, request=request)
    cls = _EXCEPTIONS.get(code)
    if cls is None:
        return QuiverError(message, code=code, request=request)
    if issubclass(cls, rex.RequestException):
        e = cls(message, request=request)
    else:
        e = cls(message)
    e.qv_code = code  # type: ignore[attr-defined]
    return e


# Cookie jars built for responses share one policy object: building
# DefaultCookiePolicy for each costs more than the rest of the jar.
_POLICY = RequestsCookieJar().get_policy()
_REASONS = http.client.responses


class Future(concurrent.futures.Future):
    """A concurrent.futures.Future completed by quiver. cancel() really
    cancels: a queued request never starts, an in-flight one is aborted."""

    _qvf: Any = None  # the qv_future while it is in flight (under _condition)
    _completing = False
    _handle: Any = None

    def cancel(self) -> bool:
        with self._condition:
            if self._completing:
                return False
            qvf = self._qvf
            if qvf is not None and self._state == PENDING and not lib.qv_future_cancel(qvf):
                return False  # it completed first: its result is on its way
            return super().cancel()

    @property
    def qv_attempts(self) -> int:
        """Attempts made so far (more than 1 after retries)."""
        with self._condition:
            return lib.qv_future_attempts(self._qvf) if self._qvf is not None else -1


class Engine:
    """One quiver executor, the completion queue its futures land in, and the
    thread that drains it. Finishers (callables taking the qv_future, its
    result code and response pointer) turn each outcome into a result."""

    def __init__(self, kind: str = "threads", max_workers: int = 8, max_queued: int = 0,
                 no_block: bool = False, per_host: Optional[dict] = None,
                 max_connections: int = 0, hook_workers: int = 4) -> None:
        if kind not in EXECUTOR_KINDS:
            raise ValueError(f"executor must be one of {sorted(EXECUTOR_KINDS)}, not {kind!r}")
        ph = per_host or {}
        opts = ffi.new("qv_executor_opts *", {
            "size": ffi.sizeof("qv_executor_opts"), "kind": EXECUTOR_KINDS[kind],
            "max_workers": max_workers, "max_connections": max_connections,
            "max_queued": max_queued, "no_block": int(no_block),
            "per_host": {"max_concurrent": ph.get("max_concurrent", 0),
                         "rate": ph.get("rate", 0.0), "burst": ph.get("burst", 0)}})
        out = ffi.new("qv_executor **")
        check(lib.qv_executor_new(out, opts), "qv_executor_new")
        self.ex = out[0]
        cq = ffi.new("qv_cq **")
        rc = lib.qv_cq_new(cq)
        if rc:
            lib.qv_executor_free(self.ex)
            check(rc, "qv_cq_new")
        self.cq = cq[0]
        self.kind = kind
        self.max_workers = max_workers
        self._live: set = set()  # handles of futures in flight (keep them alive)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._hook_workers = hook_workers
        self._hook_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._wake_r, self._wake_w = os.pipe()
        self._closed = False
        self._drainer = threading.Thread(target=self._drain, name="quiver-completions",
                                         daemon=True)
        self._drainer.start()
        _ENGINES.add(self)

    # -------------------------------------------------------------- submit
    def track(self, fut: Future, qvf: Any, finish: Callable) -> None:
        """Hands a just-submitted qv_future (one reference, ours) to the
        completion queue; `finish(fut, qvf, rc, resp)` runs when it is done."""
        fut._qvf = qvf
        fut._finish = finish
        with self._lock:
            self._live.add(fut._handle)
        rc = lib.qv_cq_add(self.cq, qvf)
        if rc:  # no memory for the queue's slot: fail it here, never lose it
            lib.qv_future_cancel(qvf)
            with self._lock:
                self._live.discard(fut._handle)
            fut._qvf = None
            lib.qv_future_release(qvf)
            fut.set_exception(error_for(rc, "quiver: cannot queue the completion"))

    def new_future(self) -> Future:
        fut = Future()
        fut._handle = ffi.new_handle(fut)
        return fut

    def run_in_background(self, fn: Callable, *args: Any) -> None:
        """Runs fn(*args) on the hook pool (response hooks, background
        callbacks: they may be slow, and must not hold up completions)."""
        pool = self._hook_pool
        if pool is None:
            with self._lock:
                if self._hook_pool is None:
                    self._hook_pool = concurrent.futures.ThreadPoolExecutor(
                        self._hook_workers, thread_name_prefix="quiver-hooks")
                pool = self._hook_pool
        pool.submit(fn, *args)

    # -------------------------------------------------------------- drain
    def _drain(self) -> None:
        out = ffi.new("qv_future **")
        resp = ffi.new("qv_response **")
        fd = lib.qv_cq_fd(self.cq)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            while lib.qv_cq_pop(self.cq, out) == QV_OK:
                self._complete(out[0], resp)
            with self._lock:
                if self._closed and not self._live:
                    return
            poller.poll()

    def _complete(self, qvf: Any, resp: Any) -> None:
        fut = ffi.from_handle(lib.qv_future_user_data(qvf))
        with fut._condition:
            fut._completing = True
            fut._qvf = None
            cancelled = fut._state != PENDING
        try:
            if not cancelled:
                rc = lib.qv_future_result(qvf, resp, 0)
                try:
                    fut._finish(fut, qvf, rc, resp[0] if rc == QV_OK else ffi.NULL)
                except BaseException as e:  # noqa: BLE001 - it belongs to the future
                    settle(fut, exc=e)
        finally:
            lib.qv_future_release(qvf)  # the completion queue's reference
            lib.qv_future_release(qvf)  # the submitter's
            with self._lock:
                self._live.discard(fut._handle)
                if not self._live:
                    self._idle.notify_all()

    # -------------------------------------------------------------- state
    def stats(self) -> dict:
        st = ffi.new("qv_executor_stats *")
        check(lib.qv_executor_stats_get(self.ex, st), "qv_executor_stats_get")
        return {k: getattr(st, k) for k in ("queued", "in_flight", "completed", "failed",
                                            "cancelled", "connections_opened", "workers")}

    def set_host_limits(self, host: str, max_concurrent: int = 0, rate: float = 0.0,
                        burst: int = 0) -> None:
        lim = ffi.new("qv_host_limits *", {"max_concurrent": max_concurrent, "rate": rate,
                                           "burst": burst})
        check(lib.qv_executor_set_host_limits(self.ex, host.encode(), lim),
              "qv_executor_set_host_limits")

    def wait_idle(self) -> None:
        with self._lock:
            while self._live:
                self._idle.wait()

    def close(self) -> None:
        """Waits for what is in flight, then frees the executor. The sessions
        on it must be freed first."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.wait_idle()
        os.write(self._wake_w, b"x")
        if threading.current_thread() is not self._drainer:
            self._drainer.join()
        if self._hook_pool is not None:
            self._hook_pool.shutdown(wait=True)
        lib.qv_cq_free(self.cq)
        lib.qv_executor_free(self.ex)
        os.close(self._wake_r)
        os.close(self._wake_w)
        _ENGINES.discard(self)


_ENGINES: "weakref.WeakSet[Engine]" = weakref.WeakSet()


@atexit.register
def _close_engines() -> None:
    # Like concurrent.futures' own pools: work in flight finishes at exit.
    for eng in list(_ENGINES):
        eng.wait_idle()


def check(rc: int, what: str) -> None:
    if rc:
        name = ffi.string(lib.qv_errname(rc)).decode()
        msg = ffi.string(lib.qv_strerror(rc)).decode()
        if rc == QV_EINVAL:
            raise ValueError(f"{what}: {msg} ({name})")
        if rc == QV_ENOMEM:
            raise MemoryError(f"{what}: {msg}")
        raise QuiverError(f"{what}: {msg} ({name})", code=rc)


def settle(fut: Future, result: Any = None, exc: Optional[BaseException] = None) -> None:
    """Finishes fut unless it was cancelled meanwhile."""
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


def future_error(qvf: Any, rc: int, request: Any = None) -> Exception:
    msg = lib.qv_future_error(qvf)
    text = ffi.string(msg).decode("utf-8", "replace") if msg != ffi.NULL else \
        ffi.string(lib.qv_strerror(rc)).decode()
    return error_for(rc, text, request)


_buffers = threading.local()


def read_headers(r: Any) -> tuple[CaseInsensitiveDict, list[str]]:
    """The headers as requests has them (repeated ones joined with ", ", like
    urllib3), and the raw Set-Cookie values. One C call copies them all."""
    buf = getattr(_buffers, "headers", None)
    if buf is None:
        buf = _buffers.headers = ffi.new("char[]", 16384)
    n = lib.qv_response_headers_copy(r, buf, len(buf))
    if n > len(buf):
        buf = _buffers.headers = ffi.new("char[]", n)
        lib.qv_response_headers_copy(r, buf, n)
    text = ffi.unpack(buf, n).decode("latin-1")
    fields = text.split("\0")
    names, values = fields[0:-1:2], fields[1::2]
    lows = text.lower().split("\0")[0:-1:2]
    h = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
    if len(set(lows)) == len(lows):
        h._store = OrderedDict(zip(lows, zip(names, values)))
    else:
        store: OrderedDict = OrderedDict()
        for lk, k, v in zip(lows, names, values):
            old = store.get(lk)
            store[lk] = (k, v) if old is None else (old[0], old[1] + ", " + v)
        h._store = store
    cookies = [v for lk, v in zip(lows, values) if lk == "set-cookie"] \
        if "set-cookie" in lows else []
    return h, cookies


def build_response(r: Any, request: Any, with_body: bool = True) -> tuple[requests.Response,
                                                                           list[str]]:
    """A requests.Response from a qv_response (one hop), and its Set-Cookie
    values. The body is copied: the qv_response goes with its future."""
    resp = requests.Response.__new__(requests.Response)
    headers, set_cookies = read_headers(r)
    status = lib.qv_response_status(r)
    reason = ffi.string(lib.qv_response_reason(r)).decode("latin-1") or \
        _REASONS.get(status, "")  # HTTP/2 has no reason phrase
    if with_body:
        lp = ffi.new("size_t *")
        body = lib.qv_response_body(r, lp)
        content = ffi.unpack(body, lp[0])
    else:
        content = b""
    resp.__dict__.update({
        "_content": content, "_content_consumed": True, "_next": None,
        "status_code": status, "headers": headers, "raw": None,
        "url": ffi.string(lib.qv_response_url(r)).decode("utf-8", "replace"),
        "encoding": get_encoding_from_headers(headers), "history": [], "reason": reason,
        "cookies": RequestsCookieJar(_POLICY),
        "elapsed": datetime.timedelta(milliseconds=lib.qv_response_elapsed_ms(r)),
        "request": request, "connection": None,
    })
    return resp, set_cookies


def add_quiver_details(resp: requests.Response, r: Any) -> None:
    """What quiver knows beyond requests: HTTP version, attempts, timing."""
    t = ffi.new("qv_timing *")
    lib.qv_response_timing(r, t)
    resp.http_version = lib.qv_response_http_version(r)  # type: ignore[attr-defined]
    resp.attempts = lib.qv_response_attempts(r)  # type: ignore[attr-defined]
    resp.timing = {k: getattr(t, k) for k in (  # type: ignore[attr-defined]
        "queued_ms", "dns_ms", "connect_ms", "tls_ms", "first_byte_ms", "total_ms",
        "hooks_ms")}
