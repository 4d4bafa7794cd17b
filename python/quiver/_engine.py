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
import io
import os
import select
import struct
import threading
import weakref
from _thread import RLock as _RLock
from _thread import get_ident as _get_ident
from collections import OrderedDict, deque
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING
from typing import Any, Callable, Optional

import _cffi_backend
import requests
from requests import exceptions as rex
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from ._cdef import TAKEN_FORMAT
from ._ffi import ffi, lib, take_result, wait_take
from ._ffi import fill as _fill

# Error codes (enum qv_error in quiver.h).
(QV_OK, QV_EINVAL, QV_ENOMEM, QV_EURL, QV_ECONNECT, QV_ECONNECT_TIMEOUT, QV_EREAD_TIMEOUT,
 QV_ETIMEOUT, QV_ETLS, QV_EPROXY, QV_EREDIRECTS, QV_EPROTOCOL, QV_ETOO_LARGE, QV_EDECODE,
 QV_EJSON, QV_EHTTP, QV_ECANCELLED, QV_ESHUTDOWN, QV_EWORKER, QV_EHOOK, QV_EWAIT_TIMEOUT,
 QV_EIO, QV_ETRANSFER, QV_EAGAIN) = range(24)

EXECUTOR_KINDS = {"threads": 0, "loop": 1, "processes": 2}
QV_RUNNING_STATE = 1  # enum qv_future_state

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
_JAR_NEW = RequestsCookieJar.__new__
_TIMING = struct.Struct("7d")  # qv_timing
_INT = struct.Struct("i")
# quiver.Session's extra attributes: where they sit in qvpy_taken (packed),
# and in the copy of those bytes a response keeps
EXTRAS = slice(ffi.offsetof("qvpy_taken", "http_version"),
               ffi.offsetof("qvpy_taken", "timing") + ffi.sizeof("qv_timing"))
_INFO_AT = {name: ffi.offsetof("qvpy_taken", name) - EXTRAS.start
            for name in ("http_version", "attempts", "timing")}
_TIMING_KEYS = ("queued_ms", "dns_ms", "connect_ms", "tls_ms", "first_byte_ms", "total_ms",
                "hooks_ms")

_Response = requests.Response
_MICROSECOND = datetime.timedelta(microseconds=1)
_headers_copy = lib.qv_response_headers_copy
# the C functions under ffi.unpack/ffi.string (those add a Python call each)
_unpack = _cffi_backend.unpack
_string = _cffi_backend.string


# qvpy_taken's first fields (_cdef.py), as a tuple; their positions in it:
_TAKEN = struct.Struct(TAKEN_FORMAT).unpack_from
(T_STATUS, T_HEADERS_LEN, T_BODY_LEN, T_BODY_AT, T_HISTORY_LEN, T_STRINGS_GEN, T_REASON_GEN,
 T_URL_GEN, T_TYPE_GEN, T_ELAPSED) = range(10)
_release = lib.qv_future_release


class Scratch:
    """Out-parameters and buffers reused by one thread (an allocation each
    would cost more than the call they serve): a qvpy_taken that a
    response's outcome is taken into, and the str made for the last
    response's reason, URL and Content-Type with the qvpy_taken's counts
    they were made at (made again when those move)."""

    __slots__ = ("t", "view", "buf", "headers", "cap", "taken", "strings_gen", "reason",
                 "reason_gen", "url", "url_gen", "encoding", "type_gen")

    def __init__(self) -> None:
        self.t = ffi.new("qvpy_taken *")
        self.view = ffi.buffer(self.t, EXTRAS.stop)  # the fields Python reads
        self.grow(16384)
        self.taken: tuple = ()
        self.reason = self.url = ""
        self.encoding: Optional[str] = None
        self.strings_gen = self.reason_gen = self.url_gen = self.type_gen = -1

    def grow(self, cap: int) -> None:
        """A headers buffer of cap bytes."""
        self.buf = ffi.new("char[]", cap)
        self.headers = ffi.buffer(self.buf)
        self.t.buf = self.buf
        self.t.cap = self.cap = cap


_tls = threading.local()
_last_scratch: tuple = (None, None)  # (thread id, its Scratch)


def scratch() -> Scratch:
    """This thread's Scratch. The last thread's is kept at hand: a
    threading.local's attribute costs several times this look. (A thread
    that got a finished thread's id gets its Scratch: no one else uses it.)"""
    global _last_scratch  # pylint: disable=global-statement
    last = _last_scratch
    ident = _get_ident()
    if last[0] == ident:
        return last[1]
    sc = getattr(_tls, "scratch", None)
    if sc is None:
        sc = _tls.scratch = Scratch()
    _last_scratch = (ident, sc)
    return sc


_strings: dict = {}


def c_string(s: str) -> Any:
    """A C copy of a method or URL string, cached (the same few are sent
    over and over); the cache is emptied when it grows past 4096."""
    c = _strings.get(s)
    if c is None:
        if len(_strings) >= 4096:
            _strings.clear()
        c = _strings[s] = ffi.new("char[]", s.encode())
    return c


class _ArmingList(list):
    """Future._waiters: concurrent.futures.wait and as_completed append a
    waiter to it; that is when a pulled future must start to push."""

    __slots__ = ("fut",)
    fut: "Future"

    def append(self, waiter: Any) -> None:
        self.fut._arm()
        super().append(waiter)


def _arming_list(fut: "Future") -> _ArmingList:
    waiters = _ArmingList()
    waiters.fut = fut
    return waiters


def _made_on_first_use(slot: str, make: Callable[["Future"], Any]) -> property:
    """A concurrent.futures.Future attribute that most of our futures never
    use (a Condition costs more to make than the rest of a request's
    future): made on first use, under the future's lock so that every user
    gets the same one, and kept in `slot` (None until then)."""
    def get(fut: "Future") -> Any:
        value = getattr(fut, slot)
        if value is None:
            with fut._lock:
                value = getattr(fut, slot)
                if value is None:
                    value = make(fut)
                    setattr(fut, slot, value)
        return value
    return property(get)


_DONE_STATES = frozenset((CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED))


class Future(concurrent.futures.Future):
    """A concurrent.futures.Future completed by quiver. cancel() really
    cancels: a queued request never starts, an in-flight one is aborted.

    A future is *pulled* until someone waits for it in a way that needs to be
    told (add_done_callback, concurrent.futures.wait/as_completed,
    asyncio.wrap_future): result(), exception() and done() ask quiver
    directly and build the result on the calling thread, so the common
    "submit, then result()" costs no thread hand-off. Such a wait *arms* the
    future: quiver then queues it on completion and the engine's completion
    thread finishes it. Either way it is finished once (finish, _complete).

    Its lock is an RLock made at once; the Condition over that lock, the
    waiter list and the callback list of concurrent.futures.Future are made
    when first used, and a finished future's result() touches none of
    them."""

    # slots: what a request's future holds (read and set several times a
    # request, each cheaper than in the instance's __dict__); _req and _rec
    # are what the two layers' finishers read
    __slots__ = ("_lock", "_state", "_result", "_exception", "_qvf", "_completing", "_armed",
                 "_handle", "_engine", "_finish", "_req", "_rec", "_cond", "_waiter_list",
                 "_callbacks")
    _condition = _made_on_first_use("_cond", lambda fut: threading.Condition(fut._lock))
    _waiters = _made_on_first_use("_waiter_list", _arming_list)
    _done_callbacks = _made_on_first_use("_callbacks", lambda fut: [])

    def __init__(self) -> None:  # pylint: disable=super-init-not-called
        self._lock = _RLock()
        self._state = PENDING
        self._result = self._exception = self._qvf = self._handle = None
        self._completing = self._armed = False
        self._cond = self._waiter_list = self._callbacks = None

    def _arm(self) -> None:
        with self._lock:
            if self._armed or self._completing or self._qvf is None:
                return
            self._armed = True
            self._engine.arm(self, self._qvf)

    def _pull(self, timeout: Optional[float]) -> None:
        """Finishes on this thread: at once if quiver is done with it (the
        outcome taken under the lock that claims it), else after a wait in C
        (without the GIL, a cancel from another thread still possible) with
        the outcome taken in the same call."""
        last = _last_scratch  # scratch() without its call, most of the time
        sc = last[1] if last[0] == _get_ident() else scratch()
        t = sc.t
        lock = self._lock
        lock.acquire()  # (not `with`: its look-ups cost as much again, twice a request)
        try:
            qvf = self._qvf
            if self._completing or qvf is None or self._state != PENDING:
                return
            rc = take_result(qvf, 0, t)
            if rc != QV_EWAIT_TIMEOUT:  # done: claimed here, as _claim does
                self._completing = True
                self._qvf = None
            elif timeout != 0:
                qvf = lib.qv_future_ref(qvf)
        finally:
            lock.release()
        if rc == QV_EWAIT_TIMEOUT:
            if timeout == 0:
                raise concurrent.futures.TimeoutError()
            rc = wait_take(qvf, -1 if timeout is None else max(0, int(timeout * 1000)), t)
            if rc == QV_EWAIT_TIMEOUT:
                raise concurrent.futures.TimeoutError()
            qvf = _claim(self)
            if qvf is None:  # another thread finishes it
                return
        _complete(self, qvf, rc, sc)

    def result(self, timeout: Optional[float] = None) -> Any:
        if self._state == PENDING and not self._armed:
            self._pull(timeout)
        if self._state == FINISHED and self._exception is None:
            return self._result  # set before _state, and never changed after
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if self._state == PENDING and not self._armed:
            self._pull(timeout)
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout)

    def done(self) -> bool:
        if self._state == PENDING and not self._armed:
            with self._lock:
                ready = self._qvf is not None and not self._completing and \
                    lib.qv_future_done(self._qvf)
            if ready:
                finish(self)
        return self._state in _DONE_STATES

    def running(self) -> bool:
        """True while quiver transfers it (or runs its hooks, or waits to
        retry); like a thread pool's future between start and finish."""
        with self._lock:
            if self._state != PENDING or self._qvf is None or self._completing:
                return super().running()
            return lib.qv_future_state_get(self._qvf) == QV_RUNNING_STATE

    def add_done_callback(self, fn: Callable) -> None:
        self._arm()
        super().add_done_callback(fn)

    def cancel(self) -> bool:
        with self._lock:
            if self._completing:
                return False
            qvf = self._qvf
            if qvf is not None and self._state == PENDING and not lib.qv_future_cancel(qvf):
                return False  # it completed first: its result is on its way
            return super().cancel()

    def set_result(self, result: Any) -> None:
        self._set(result, None)

    def set_exception(self, exception: Optional[BaseException]) -> None:
        self._set(None, exception)

    def _set(self, result: Any, exception: Optional[BaseException]) -> None:
        """concurrent.futures.Future's set_result/set_exception, telling
        only the waiters and callbacks that exist."""
        lock = self._lock
        lock.acquire()  # (not `with`, as in _pull)
        try:
            if self._state in _DONE_STATES:
                raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._exception = exception
            self._state = FINISHED
            for waiter in self._waiter_list or ():
                if exception is None:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
            if self._cond is not None:
                self._cond.notify_all()
        finally:
            lock.release()
        if self._callbacks:
            self._invoke_callbacks()

    @property
    def qv_attempts(self) -> int:
        """Attempts made so far (more than 1 after retries)."""
        with self._lock:
            return lib.qv_future_attempts(self._qvf) if self._qvf is not None else -1


class Engine:
    """One quiver executor, its futures, and how they are finished: pulled
    by whoever asks for a result (see Future), or pushed through a
    completion queue (qv_cq) that one Python thread drains, so that quiver's
    own threads never take the GIL. Finishers (callables taking the future,
    the qv_future, its result code and the Scratch its response was taken
    into, see _complete) turn each outcome into a result."""

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
        rc = lib.qv_executor_new(out, opts)
        check(rc, "qv_executor_new", last_error() if rc else "")
        self.ex = out[0]
        cq = ffi.new("qv_cq **")
        rc = lib.qv_cq_new(cq)
        if rc:
            lib.qv_executor_free(self.ex)
            check(rc, "qv_cq_new")
        self.cq = cq[0]
        self.kind = kind
        self.max_workers = max_workers
        self._live: set = set()  # handles of armed futures in flight (keep them alive)
        self._pulled: deque = deque()  # pulled futures not finished yet, oldest first
        self._sweeping = threading.Lock()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._hook_workers = hook_workers
        self._hook_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._wake_r, self._wake_w = os.pipe()
        self._closed = False
        self._drainer: Optional[threading.Thread] = None
        _ENGINES.add(self)

    # -------------------------------------------------------------- submit
    def track(self, fut: Future, qvf: Any, finish: Callable, push: bool = False,
              stride: int = 1) -> None:
        """Takes a just-submitted qv_future (one reference, ours);
        `finish(fut, qvf, rc, sc)` makes its result. push: armed at once
        (its finisher runs hooks that must not wait for a result() call).
        stride: sweep after about one submit in `stride` (1: every one)."""
        fut._qvf = qvf
        fut._finish = finish
        if push:
            fut._arm()
        else:
            q = self._pulled
            q.append(fut)
            if len(q) % stride:
                return
        self.sweep()

    def sweep(self) -> None:
        """Finishes the oldest pulled futures that are done: what a caller
        never asks for is finished anyway (a response's cookies reach the
        session's jar), on the submitting thread, a few at a time."""
        q = self._pulled
        if not q or not self._sweeping.acquire(blocking=False):
            return
        try:
            while q:
                fut = q[0]
                lock = fut._lock
                lock.acquire()  # (not `with`, as in Future._pull)
                try:
                    qvf = fut._qvf
                    if qvf is None or fut._completing or fut._armed:
                        qvf = None  # finished, being finished, or armed: not ours
                    elif not lib.qv_future_done(qvf):
                        return
                    else:  # done: claimed here, as _claim does
                        fut._completing = True
                        fut._qvf = None
                finally:
                    lock.release()
                q.popleft()
                if qvf is not None:
                    _take_complete(fut, qvf)
        finally:
            self._sweeping.release()

    def arm(self, fut: Future, qvf: Any) -> None:
        """Queues fut on completion (under fut._lock, qvf still ours)."""
        if self._drainer is None:
            with self._lock:
                if self._drainer is None:
                    self._drainer = threading.Thread(target=self._drain, daemon=True,
                                                     name="quiver-completions")
                    self._drainer.start()
        fut._handle = ffi.new_handle(fut)
        lib.qv_future_set_user_data(qvf, fut._handle)
        with self._lock:
            self._live.add(fut._handle)
        rc = lib.qv_cq_add(self.cq, qvf)
        if rc:  # no memory for the queue's slot: fail it here, never lose it
            with self._lock:
                self._live.discard(fut._handle)
            fut._armed = False
            lib.qv_future_cancel(qvf)

    def new_future(self) -> Future:
        fut = Future()
        fut._engine = self
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
        fd = lib.qv_cq_fd(self.cq)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            while lib.qv_cq_pop(self.cq, out) == QV_OK:
                qvf = out[0]
                fut = ffi.from_handle(lib.qv_future_user_data(qvf))
                try:
                    finish(fut)
                finally:
                    lib.qv_future_release(qvf)  # the completion queue's reference
                    with self._lock:
                        self._live.discard(fut._handle)
                        if not self._live:
                            self._idle.notify_all()
            with self._lock:
                if self._closed and not self._live:
                    return
            poller.poll()

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
        while self._pulled:  # all done: their sessions were closed first
            finish(self._pulled.popleft())
        os.write(self._wake_w, b"x")
        if self._drainer is not None and threading.current_thread() is not self._drainer:
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


def _claim(fut: Future) -> Any:
    """Our qv_future reference, taken from fut by the one who finishes it;
    None if it is finished or being finished."""
    with fut._lock:
        qvf = fut._qvf
        if qvf is None or fut._completing:
            return None
        fut._completing = True
        fut._qvf = None
        return qvf


def _complete(fut: Future, qvf: Any, rc: int, sc: Scratch) -> None:
    """Runs fut's finisher on its outcome (rc, and for a response sc.t
    filled from it, for build_response(..., sc)), unless it was cancelled
    meanwhile; then releases qvf, the claimed reference."""
    try:
        if fut._state == PENDING:
            try:
                fut._finish(fut, qvf, rc, sc)
            except BaseException as e:  # noqa: BLE001 - it belongs to the future
                settle(fut, exc=e)
    finally:
        _release(qvf)


def finish(fut: Future) -> None:
    """Makes fut's result from its done qv_future, if no one else has or is
    making it: the one who takes our qv_future reference from it does."""
    qvf = _claim(fut)
    if qvf is not None:
        _take_complete(fut, qvf)


def _take_complete(fut: Future, qvf: Any) -> None:
    """_complete on the outcome of qvf, claimed and done."""
    last = _last_scratch  # (as in Future._pull)
    sc = last[1] if last[0] == _get_ident() else scratch()
    _complete(fut, qvf, take_result(qvf, 0, sc.t), sc)


def last_error() -> str:
    """qv_last_error: what the last call on this thread that says more than its
    code (qv_executor_new, qv_session_new) told, "" if nothing."""
    return ffi.string(lib.qv_last_error()).decode("utf-8", "replace")


def check(rc: int, what: str, told: str = "") -> None:
    """Raises for a failed rc; told (last_error() read right after such a
    call) says what went wrong, else the code's own text does."""
    if rc:
        name = ffi.string(lib.qv_errname(rc)).decode()
        msg = told or ffi.string(lib.qv_strerror(rc)).decode()
        if rc == QV_EINVAL:
            raise ValueError(f"{what}: {msg} ({name})")
        if rc == QV_ENOMEM:
            raise MemoryError(f"{what}: {msg}")
        raise QuiverError(f"{what}: {msg} ({name})", code=rc)


def settle(fut: Future, result: Any = None, exc: Optional[BaseException] = None) -> None:
    """Finishes fut unless it was cancelled meanwhile."""
    try:
        fut._set(result, exc)
    except concurrent.futures.InvalidStateError:
        pass


def future_error(qvf: Any, rc: int, request: Any = None) -> Exception:
    msg = lib.qv_future_error(qvf)
    text = ffi.string(msg).decode("utf-8", "replace") if msg != ffi.NULL else \
        ffi.string(lib.qv_strerror(rc)).decode()
    return error_for(rc, text, request)


def _parse_headers(raw: bytes) -> OrderedDict:
    """CaseInsensitiveDict's store from b"name\0value\0..." (latin-1):
    repeated headers joined with ", " (as urllib3 joins them), the first
    name's case kept."""
    block = raw.decode("latin-1")
    fields = block.split("\0")
    names, values = fields[0:-1:2], fields[1::2]
    lows = block.lower().split("\0")[0:-1:2]
    if len(set(lows)) == len(lows):
        return OrderedDict(zip(lows, zip(names, values)))
    store: OrderedDict = OrderedDict()
    for lk, k, v in zip(lows, names, values):
        old = store.get(lk)
        store[lk] = (k, v) if old is None else (old[0], old[1] + ", " + v)
    return store


class _LazyDict(CaseInsensitiveDict):
    """requests' CaseInsensitiveDict whose store is made from `source` the
    first time it is used (many callers never look): _make(source)."""

    _make: Callable[[Any], OrderedDict]
    _parsed: Optional[OrderedDict] = None

    def __init__(self, source: Any) -> None:  # pylint: disable=super-init-not-called
        self._source = source

    @property  # type: ignore[override]
    def _store(self) -> OrderedDict:
        store = self._parsed
        if store is None:
            # No lock, as _Lazy: two threads at once both get the first stored.
            store = self.__dict__.setdefault("_parsed", self._make(self._source))
        return store

    @_store.setter
    def _store(self, store: OrderedDict) -> None:
        self._parsed = store


class Headers(_LazyDict):
    """A response's headers, parsed from quiver's copy of them (b"name\0value
    \0...", decoded then: most responses' headers are never read) the first
    time they are read."""

    _make = staticmethod(_parse_headers)


class RequestHeaders(_LazyDict):
    """Response.request's headers: a copy of the store of the headers the
    request was prepared with (shared by the requests made alike), made the
    first time they are used."""

    _make = staticmethod(OrderedDict)


def prepared_request(method: str, url: str, headers: OrderedDict, body: Any = None,
                     hooks: Optional[dict] = None) -> requests.PreparedRequest:
    """Response.request: a PreparedRequest as requests would have made it,
    without running requests' preparation (headers: a CaseInsensitiveDict's
    store, copied when first used)."""
    p = _PREPARED_NEW(requests.PreparedRequest)
    p.method = method
    p.url = url
    p.headers = RequestHeaders(headers)
    p._cookies = None
    p.body = body
    p.hooks = {"response": []} if hooks is None else hooks
    p._body_position = None
    return p


_PREPARED_NEW = requests.PreparedRequest.__new__


def header_values(r: Any, name: bytes) -> list[bytes]:
    """The values of every header `name` of a response, in order."""
    out = []
    while True:
        v = lib.qv_response_header_nth(r, name, len(out))
        if v == ffi.NULL:
            return out
        out.append(_string(v))


def set_cookie_values(r: Any) -> list[str]:
    """The Set-Cookie values of a response."""
    return [v.decode("latin-1") for v in header_values(r, b"set-cookie")]


class _Bounded(dict):
    """A bounded cache of make(key) by key, emptied when it grows past
    `bound`: the same few keys come back over and over."""

    def __init__(self, bound: int, make: Callable[[Any], Any]) -> None:
        super().__init__()
        self.bound, self.make = bound, make

    def __missing__(self, key: Any) -> Any:
        if len(self) >= self.bound:
            self.clear()
        value = self[key] = self.make(key)
        return value


# Responses' reasons and URLs as str, by their bytes: one str shared by all
# costs no memory per response (a page of it first touched costs 14 us on
# this VM: bench/NOTES.md, 2026-12-07 09:51).
_reasons = _Bounded(256, lambda raw: raw.decode("latin-1"))
_urls = _Bounded(4096, lambda raw: raw.decode("utf-8", "replace"))
# requests' encoding rule for a Content-Type, by its bytes
_encodings = _Bounded(256, lambda ctype: get_encoding_from_headers(
    {"content-type": ctype.decode("latin-1")}))

# Response cookie jars share one lock (a lock each cost more than the rest
# of the jar): a jar's methods hold it only for their own work.
_JAR_LOCK = _RLock()


def _empty_jar() -> RequestsCookieJar:
    """An empty RequestsCookieJar as CookieJar.__init__ makes it, sharing
    the module's policy and lock."""
    jar = _JAR_NEW(RequestsCookieJar)
    jar._policy = _POLICY
    jar._cookies_lock = _JAR_LOCK
    jar._cookies = {}
    return jar


def _info_int(name: str) -> Callable[[dict], int]:
    at = _INFO_AT[name]
    return lambda d: _INT.unpack_from(d["_qv_info"], at)[0]


def _timing(d: dict) -> dict:
    return dict(zip(_TIMING_KEYS, _TIMING.unpack_from(d["_qv_info"], _INFO_AT["timing"])))


class _Lazy:
    """A requests.Response attribute that a response built here makes when
    it is first read (most callers read only status_code and content):
    make(the response's __dict__) from what build_response kept under
    `_qv_*` names. It sits on the requests.Response class itself, so that
    `type(r) is requests.Response` holds, and it is a non-data descriptor,
    so every Response requests makes (these attributes in its __dict__,
    set by __init__ or __setstate__) never reaches it, assigning one works
    as before, and a response that is not ours and lacks the attribute
    raises the same AttributeError as without it."""

    __slots__ = ("name", "make", "source")

    def __init__(self, name: str, make: Callable[[dict], Any], source: str) -> None:
        self.name, self.make, self.source = name, make, source

    def __get__(self, resp: Any, cls: Any = None) -> Any:
        d = resp.__dict__ if resp is not None else {}
        if self.source not in d:
            raise AttributeError(f"'{(cls or type(resp)).__name__}' object has no attribute "
                                 f"'{self.name}'")
        # No lock: make() may run the cyclic GC, whose finalizers may read
        # another response's. Two threads at once both get the first stored.
        return d.setdefault(self.name, self.make(d))


# Every response built here has `_qv_elapsed` (its elapsed_ms).
for _attr in (
        _Lazy("headers", lambda d: Headers(d["_qv_headers"]), "_qv_headers"),
        _Lazy("cookies", lambda d: _empty_jar(), "_qv_elapsed"),
        # whole microseconds, rounded as timedelta rounds (a float argument
        # costs timedelta twice the time, and its constructor more than *)
        _Lazy("elapsed", lambda d: _MICROSECOND * round(d["_qv_elapsed"] * 1000), "_qv_elapsed"),
        _Lazy("history", lambda d: [], "_qv_elapsed"),
        _Lazy("request", lambda d: prepared_request(*d["_qv_request"]), "_qv_request"),
        # what Response.__init__ sets that is the same for every response
        # built whole (an attribute store costs ~200 instructions, four a
        # response; these are seldom read): stream=True sets raw and
        # _content_consumed itself, the drop-in connection while hooks run
        _Lazy("_content_consumed", lambda d: True, "_qv_elapsed"),
        _Lazy("_next", lambda d: None, "_qv_elapsed"),
        _Lazy("raw", lambda d: None, "_qv_elapsed"),
        _Lazy("connection", lambda d: None, "_qv_elapsed"),
        # quiver.Session's own, from a copy of its qv_response_info
        _Lazy("http_version", _info_int("http_version"), "_qv_info"),
        _Lazy("attempts", _info_int("attempts"), "_qv_info"),
        _Lazy("timing", _timing, "_qv_info")):
    if _attr.name in vars(_Response):
        raise ImportError(f"quiver: requests.Response.{_attr.name} exists: this requests is not "
                          "one quiver knows")
    setattr(_Response, _attr.name, _attr)
del _attr


def _make_strings(sc: Scratch, taken: tuple, r: Any) -> None:
    """The str of response r's reason, URL and encoding in sc, made again
    for those that differ from the last response's (each set before its
    count, so that an exception in between leaves it stale, never wrong)."""
    if taken[T_REASON_GEN] != sc.reason_gen:
        raw = _string(sc.t.info.reason)
        if raw:
            sc.reason = _reasons[raw]
            sc.reason_gen = taken[T_REASON_GEN]
        else:  # HTTP/2 has no reason phrase: the status code's, each time
            sc.reason = _REASONS.get(taken[T_STATUS], "")
            sc.reason_gen = -1
    if taken[T_URL_GEN] != sc.url_gen:
        sc.url = _urls[_string(sc.t.info.url)]
        sc.url_gen = taken[T_URL_GEN]
    if taken[T_TYPE_GEN] != sc.type_gen:
        # requests reads every Content-Type line, joined as repeated
        # headers are (r.headers["Content-Type"])
        ctypes = header_values(r, b"content-type")
        sc.encoding = _encodings[b", ".join(ctypes)] if ctypes else None
        sc.type_gen = taken[T_TYPE_GEN]
    sc.strings_gen = taken[T_STRINGS_GEN] if sc.reason_gen >= 0 else -1


def build_response(r: Any, request: Optional[tuple], with_body: bool = True,
                   sc: Optional[Scratch] = None) -> requests.Response:
    """A requests.Response from a qv_response (one hop), in one call into
    C (none if `sc` is given: the Scratch r's outcome was taken into, r
    then None or sc.t.resp). What it holds is copied: the qv_response goes
    with its future. `request`: prepared_request's arguments for
    Response.request, or None for a caller that sets it. Its headers,
    cookies, elapsed, history and request, and the attributes that are the
    same for every response (raw, connection, ...), are made when first
    read (_Lazy).
    The rest of what quiver said of it stays in the Scratch until this
    thread's next build_response: its info (history_len, set_cookies,
    timing, ...) and `taken`, the tuple of qvpy_taken's first fields."""
    if sc is None:
        sc = scratch()
        _fill(r, sc.t)
    sc.taken = taken = _TAKEN(sc.view)
    status, n, body_len, body_at, _, strings_gen, _, _, _, elapsed = taken
    if n > sc.cap:  # not copied: no room
        sc.grow(n)
        _headers_copy(sc.t.resp if r is None else r, sc.buf, n)
    buf = sc.headers
    if strings_gen != sc.strings_gen:
        _make_strings(sc, taken, sc.t.resp if r is None else r)
    # the attributes Response.__init__ sets that differ between responses,
    # in its order (the lazy ones' sources in their place)
    resp = _Response.__new__(_Response)
    if not with_body:
        resp._content = b""
    elif body_at >= 0:  # copied after the headers
        resp._content = buf[body_at:body_at + body_len]
    else:
        resp._content = _unpack(sc.t.info.body, body_len)
    resp.status_code = status
    resp._qv_headers = buf[0:n]
    resp.url = sc.url
    resp.encoding = sc.encoding
    resp.reason = sc.reason
    resp._qv_elapsed = elapsed
    if request is not None:
        resp._qv_request = request
    return resp


class StreamBody(io.RawIOBase):
    """Response.raw for stream=True: the body read from quiver's pull reader
    (qv_response_read) as the caller reads it, so it is never whole in
    memory; the transfer waits while nobody reads. Holds its own reference
    to the future, released by close() (Response.close(), the end of the
    body, or garbage collection), which stops an unfinished transfer."""

    def __init__(self, qvf: Any, r: Any) -> None:
        super().__init__()
        self._qvf = lib.qv_future_ref(qvf)
        self._r = r
        self._lock = threading.Lock()

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        with self._lock:
            if self._qvf is None or not len(b):  # read(0) is no end of the body
                return 0
            n = ffi.new("size_t *")
            rc = lib.qv_response_read(self._r, ffi.from_buffer(b), len(b), n, -1)
            if rc:
                msg = lib.qv_response_read_error(self._r)
                text = ffi.string(msg).decode("utf-8", "replace") if msg != ffi.NULL else \
                    ffi.string(lib.qv_strerror(rc)).decode()
                raise error_for(rc, text)
            if n[0] == 0:
                self._release()
            return n[0]

    def read(self, amt: Optional[int] = None, decode_content: Any = None,  # type: ignore
             cache_content: bool = False) -> bytes:
        return super().read(-1 if amt is None else amt)

    def stream(self, amt: int = 2 ** 16, decode_content: Any = None) -> Any:
        """urllib3's interface, which requests' iter_content uses."""
        while True:
            chunk = self.read(amt)
            if not chunk:
                return
            yield chunk

    def release_conn(self) -> None:
        pass

    def _release(self) -> None:
        if self._qvf is not None:
            lib.qv_future_release(self._qvf)
            self._qvf = None

    def close(self) -> None:
        with self._lock:
            self._release()
        super().close()

    def __del__(self) -> None:
        self._release()
