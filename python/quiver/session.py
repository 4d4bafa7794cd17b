"""quiver.Session: the Python-native layer, for new code.

What requests-futures lacks: the loop executor (thousands in flight, HTTP/2
multiplexing over TLS), retries with Retry-After, per-host rate and
concurrency limits, backpressure, and a timing breakdown per response. The
session's defaults live in C (quiver merges them per request), so a request
costs little Python; results are the same concurrent.futures.Future and
requests.Response as the drop-in's.
"""

from __future__ import annotations

import json as _json
from typing import Any, Mapping, Optional, Union

from requests.structures import CaseInsensitiveDict

from . import _cdata
from ._engine import (EXTRAS, T_HISTORY_LEN, Engine, Future, StreamBody, build_response,
                      c_string, check, error_for, future_error, last_error, prepared_request,
                      settle)
from ._ffi import ffi, lib, request_error
from ._ffi import request as _request

Pairs = Union[Mapping[str, Any], list]
AUTH_KINDS = {"basic": 1, "digest": 2, "bearer": 3}
_OPTS_T = ffi.typeof("qv_request_opts *")
_OPTS_SIZE = ffi.sizeof("qv_request_opts")
_PREPARED_MAX = 4096  # requests whose C options are kept for the next alike
# Its cookies live in C: a sweep of done futures (Engine.track) only
# finishes them sooner, so one submit in 8 does it.
_SWEEP_STRIDE = 8


def _items(p: Optional[Pairs]) -> list:
    if not p:
        return []
    return list(p.items()) if isinstance(p, Mapping) else list(p)


def _auth(auth: Any) -> tuple[int, Optional[str], Optional[str]]:
    """None, (user, password), ("bearer", token) or (kind, user, password)."""
    if auth is None:
        return 0, None, None
    if isinstance(auth, tuple) and len(auth) == 2 and auth[0] != "bearer":
        return 1, auth[0], auth[1]
    if isinstance(auth, tuple) and len(auth) == 2:
        return 3, None, auth[1]
    if isinstance(auth, tuple) and len(auth) == 3 and auth[0] in AUTH_KINDS:
        return AUTH_KINDS[auth[0]], auth[1], auth[2]
    raise ValueError("auth must be (user, password), ('bearer', token) or "
                     "('basic'|'digest'|'bearer', user, password)")


def _cert(cert: Any, keep: list) -> tuple:
    """requests' cert: a PEM file holding certificate and key, or a (cert,
    key) pair of files; as C strings."""
    c, k = (cert, None) if isinstance(cert, (str, bytes)) else cert
    return _cdata.cstr(c, keep), _cdata.cstr(k, keep)


def _verify(verify: Union[bool, str, None]) -> tuple[int, Optional[str]]:
    """(insecure, ca_file) from requests' verify (True, False or a CA path)."""
    if verify is None or verify is True:
        return 0, None
    if verify is False:
        return 1, None
    return 0, str(verify)


class Session:
    """A quiver session: requests-style defaults, every request a Future.

    executor: "threads" (default), "loop" (one I/O thread, HTTP/2) or
    "processes"; max_workers: transfers at once. retries: an int or a dict of
    qv_retry's fields; per_host: {"max_concurrent", "rate", "burst"} for every
    host (set_host_limits for one); max_queued/no_block: backpressure.
    cert: a client certificate (requests' form: a PEM file with the key, or a
    (cert, key) pair). Timeouts keep quiver's safe defaults (connect 10 s,
    read 30 s) unless set.
    """

    def __init__(self, executor: str = "threads", max_workers: int = 8, *,
                 headers: Optional[Pairs] = None, params: Optional[Pairs] = None,
                 cookies: Optional[Pairs] = None, auth: Any = None,
                 timeout: Any = None, total_timeout: Optional[float] = None,
                 verify: Union[bool, str] = True, proxy: Optional[str] = None,
                 retries: Any = None, max_redirects: int = 30, allow_redirects: bool = True,
                 max_queued: int = 0, no_block: bool = False,
                 per_host: Optional[dict] = None, user_agent: Optional[str] = None,
                 max_response_bytes: int = 0, cert: Any = None) -> None:
        if max_redirects < 1:
            raise ValueError("max_redirects must be at least 1 (allow_redirects=False "
                             "to follow none)")
        self._engine = Engine(executor, max_workers, max_queued=max_queued, no_block=no_block,
                              per_host=per_host)
        keep: list = []
        kind, user, pw = _auth(auth)
        insecure, ca = _verify(verify)
        ct, rt = _cdata.timeouts(timeout) if timeout is not None else (0, 0)
        opts = ffi.new("qv_session_opts *", {
            "size": ffi.sizeof("qv_session_opts"), "executor": self._engine.ex,
            "headers": _cdata.pairs(_items(headers), keep),
            "params": _cdata.pairs(_items(params), keep, "utf-8"),
            "cookies": _cdata.pairs(_items(cookies), keep, "utf-8"),
            "auth": kind, "username": _cdata.cstr(user, keep, "latin-1"),
            "password": _cdata.cstr(pw, keep, "latin-1"),
            "timeout_ms": _cdata._ms(total_timeout) if total_timeout is not None else 0,
            "connect_timeout_ms": ct, "read_timeout_ms": rt,
            "max_redirects": max_redirects, "no_redirects": 0 if allow_redirects else 1,
            "max_response_bytes": max_response_bytes, "insecure": insecure,
            "ca_file": _cdata.cstr(ca, keep), "proxy": _cdata.cstr(proxy, keep),
            "user_agent": _cdata.cstr(user_agent, keep, "latin-1"),
            "retry": _cdata.retry_struct(retries, keep)})
        if cert:
            opts.client_cert, opts.client_key = _cert(cert, keep)
        out = ffi.new("qv_session **")
        rc = lib.qv_session_new(out, opts)
        if rc:
            told = last_error()  # before the close's own calls
            self._engine.close()
            check(rc, "qv_session_new", told)
        self._s = out[0]
        self._closed = False
        self._prepared: dict = {}

    # ------------------------------------------------------------ requests
    def request(self, method: str, url: str, *, params: Optional[Pairs] = None,
                headers: Optional[Pairs] = None, data: Any = None, json: Any = None,
                timeout: Any = None, allow_redirects: Optional[bool] = None,
                verify: Optional[bool] = None, retries: Any = None, auth: Any = None,
                cert: Any = None, stream: bool = False) -> Future:
        """Submits a request; never blocks (unless max_queued is reached),
        never raises for the network: failures come from result().

        stream=True: the future completes with the headers, and the body is
        read from Response.raw / iter_content as the caller reads it
        (quiver's pull reader), never whole in memory."""
        if params is None and headers is None and data is None and json is None and \
                retries is None and auth is None and cert is None:
            # Only scalars besides the URL: the C options made for the same
            # ones before (quiver copies them at submit), when hashable.
            key = (method, url, timeout, allow_redirects, verify, stream)
            try:
                sub = self._prepared[key]
            except KeyError:
                sub = self._prepare(method, url, None, None, None, None, timeout,
                                    allow_redirects, verify, None, None, None, stream)
                if len(self._prepared) >= _PREPARED_MAX:
                    self._prepared.clear()
                self._prepared[key] = sub
            except TypeError:  # an unhashable timeout: an error or a list
                sub = self._prepare(method, url, None, None, None, None, timeout,
                                    allow_redirects, verify, None, None, None, stream)
        else:
            sub = self._prepare(method, url, params, headers, data, json, timeout,
                                allow_redirects, verify, retries, auth, cert, stream)
        return self._submit(sub)

    def _submit(self, sub: tuple) -> Future:
        """Submits a request prepared by _prepare."""
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        o, req, stream, _ = sub
        eng = self._engine
        fut = Future()
        fut._engine = eng
        qvf = _request(self._s, o)
        if not qvf:
            rc = request_error()
            raise error_for(rc, f"quiver: {req[0]} {req[1]}: "
                            + ffi.string(lib.qv_strerror(rc)).decode())
        fut._req = req
        eng.track(fut, qvf, _finish_stream if stream else _finish, False, _SWEEP_STRIDE)
        return fut

    @staticmethod
    def _prepare(method: str, url: str, params: Optional[Pairs], headers: Optional[Pairs],
                 data: Any, json: Any, timeout: Any, allow_redirects: Optional[bool],
                 verify: Optional[bool], retries: Any, auth: Any, cert: Any,
                 stream: bool) -> tuple:
        """The request as qv_request_opts, what finishing it needs (method,
        URL and headers' store: Response.request's arguments; stream), and
        what the options point to."""
        keep: list = []
        o = ffi.new(_OPTS_T)
        o.size = _OPTS_SIZE
        method = method.upper()
        o.method = c_string(method)
        o.url = c_string(url)
        req_headers = _items(headers)
        if json is not None:
            data = _json.dumps(json, allow_nan=False).encode()
            if not any(k.lower() == "content-type" for k, _ in req_headers):
                req_headers.append(("Content-Type", "application/json"))
        if data is not None:
            if isinstance(data, (Mapping, list)):
                o.form = _cdata.pairs(_items(data), keep, "utf-8")
            else:
                body = data.encode() if isinstance(data, str) else bytes(data)
                buf = ffi.new("char[]", body)
                keep.append(buf)
                o.body = buf
                o.body_len = len(body)
                if not body:
                    o.body = ffi.NULL
        if req_headers:
            o.headers = _cdata.pairs(req_headers, keep)
        if params:
            o.params = _cdata.pairs(_items(params), keep, "utf-8")
        if timeout is not None:
            o.connect_timeout_ms, o.read_timeout_ms = _cdata.timeouts(timeout)
        if allow_redirects is not None:
            o.no_redirects = -1 if allow_redirects else 1
        if verify is not None:
            o.insecure = -1 if verify else 1
        if retries is not None:
            o.retry = _cdata.retry_struct(retries, keep)
        if auth is not None:
            o.auth, user, pw = _auth(auth)
            o.username = _cdata.cstr(user, keep, "latin-1")
            o.password = _cdata.cstr(pw, keep, "latin-1")
        if cert:
            o.client_cert, o.client_key = _cert(cert, keep)
        if stream:
            o.stream = 1
        store = CaseInsensitiveDict(req_headers)._store
        return o, (method, url, store), stream, keep

    def get(self, url: str, **kwargs: Any) -> Future:
        if kwargs:
            return self.request("GET", url, **kwargs)
        # the most common call, in fewer Python frames: request()'s options
        # for the same URL
        try:
            sub = self._prepared[("GET", url, None, None, None, False)]
        except KeyError:
            return self.request("GET", url)
        return self._submit(sub)

    def head(self, url: str, **kwargs: Any) -> Future:
        kwargs.setdefault("allow_redirects", False)
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> Future:
        return self.request("OPTIONS", url, **kwargs)

    def post(self, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> Future:
        return self.request("POST", url, data=data, json=json, **kwargs)

    def put(self, url: str, data: Any = None, **kwargs: Any) -> Future:
        return self.request("PUT", url, data=data, **kwargs)

    def patch(self, url: str, data: Any = None, **kwargs: Any) -> Future:
        return self.request("PATCH", url, data=data, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Future:
        return self.request("DELETE", url, **kwargs)

    # ------------------------------------------------------------ state
    def cookie(self, name: str) -> Optional[str]:
        """A cookie's value from the session's jar (any domain), or None."""
        buf = ffi.new("char[]", 4096)
        rc = lib.qv_session_cookie(self._s, name.encode(), buf, 4096)
        return ffi.string(buf).decode("utf-8", "replace") if rc == 0 else None

    def set_cookie(self, name: str, value: str, domain: Optional[str] = None) -> None:
        check(lib.qv_session_set_cookie(self._s, name.encode(), value.encode(),
                                        domain.encode() if domain else ffi.NULL),
              "qv_session_set_cookie")

    def set_host_limits(self, host: str, max_concurrent: int = 0, rate: float = 0.0,
                        burst: int = 0) -> None:
        """Limits for one host ("name" or "name:port") across this executor."""
        self._engine.set_host_limits(host, max_concurrent, rate, burst)

    def stats(self) -> dict:
        """The executor's counters: queued, in_flight, completed, failed,
        cancelled, connections_opened, workers."""
        return self._engine.stats()

    def close(self, cancel_pending: bool = False) -> None:
        """Stops new submits, waits for what is in flight (cancelling what is
        queued if asked), and frees the C session and executor."""
        if self._closed:
            return
        self._closed = True
        lib.qv_session_close(self._s, int(cancel_pending))
        lib.qv_session_free(self._s)
        self._engine.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _finish(fut: Future, qvf: Any, rc: int, sc: Any, stream: bool = False) -> None:
    req = fut._req  # prepared_request's arguments
    if rc:
        settle(fut, exc=future_error(qvf, rc, prepared_request(*req)))
        return
    resp = build_response(None, req, not stream, sc)
    # what quiver knows beyond requests (http_version, attempts, timing),
    # made when first read from this copy of them
    resp._qv_info = sc.view[EXTRAS]  # type: ignore[attr-defined]
    n = sc.taken[T_HISTORY_LEN]
    if stream or n:
        r = sc.t.resp
        if stream:
            resp.raw = StreamBody(qvf, r)
            resp._content = False
            resp._content_consumed = False
        if n:
            hist = []
            for i in range(n):
                hr = build_response(lib.qv_response_history(r, i), None, False)
                hr._qv_request = (req[0], hr.url, req[2])  # type: ignore[attr-defined]
                hist.append(hr)
            resp.history = hist
    fut._set(resp, None)  # claimed while pending: no cancel comes between


def _finish_stream(fut: Future, qvf: Any, rc: int, sc: Any) -> None:
    _finish(fut, qvf, rc, sc, True)


__all__ = ["Session"]
