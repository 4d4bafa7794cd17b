"""FuturesSession: requests-futures 1.0.2's API with quiver doing the I/O.

    from requests_futures.sessions import FuturesSession

    session = FuturesSession()
    future = session.get("http://127.0.0.1:8080/get")   # returns at once
    response = future.result()                           # a requests.Response

Two paths, one behaviour:

- The quiver path (the default: FuturesSession(), FuturesSession(max_workers=n),
  FuturesSession(session=s)): the request is prepared here with requests' own
  rules, but only what can change is computed per request (the session's
  headers, params, auth, hooks, proxies and TLS settings are turned into C
  once and reused until they change), libquiver sends it, follows redirects
  and keeps the cookie jar, and the result is built into a requests.Response
  by one completion thread. Futures cancel for real.
- requests' own path, on a thread (or process) pool, exactly as
  requests-futures runs it: when you pass an executor, when a mounted
  adapter is not requests' plain HTTPAdapter (a custom transport), when a
  subclass overrides how requests prepares or sends, and for the few
  arguments quiver cannot carry (files, cookies given as a CookieJar,
  streamed uploads). See docs/python.md for the list.
"""

from __future__ import annotations

import os
import threading
from copy import copy
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from http.cookiejar import CookieJar
from logging import getLogger
from operator import attrgetter
from pickle import PickleError, dumps
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from requests import Session
from requests.adapters import DEFAULT_POOLSIZE, DEFAULT_RETRIES, HTTPAdapter
from requests.auth import HTTPBasicAuth, HTTPDigestAuth
from requests.cookies import MockRequest, MockResponse
from requests.exceptions import (ConnectionError, InvalidSchema, InvalidURL, RetryError,
                                 TooManyRedirects)
from requests.hooks import default_hooks, dispatch_hook
from requests.models import PreparedRequest
from requests.sessions import merge_hooks, merge_setting
from requests.structures import CaseInsensitiveDict
from requests.utils import (check_header_validity, get_environ_proxies, get_netrc_auth,
                            select_proxy)

from urllib3.connection import _get_default_user_agent

from quiver import _cdata
from quiver._engine import (QV_EPROTOCOL, QV_EREAD_TIMEOUT, QV_ETIMEOUT, QV_ETOO_LARGE, QV_EURL,
                            Engine, StreamBody, build_response, c_string, error_for,
                            future_error, prepared_request, set_cookie_values, settle)
from quiver._ffi import ffi, lib, request, request_error

from ._retries import RetryPlan, retry_plan

__all__ = ["FuturesSession"]

PICKLE_ERROR = ("Cannot pickle function. Refer to documentation: https://"
                "github.com/ross/requests-futures/#using-processpoolexecutor")

# What requests' Session does that the quiver path does in its own way: a
# subclass (or a session= object) that overrides any of these gets requests'
# own path, so its override runs.
_SESSION_METHODS = ("request", "prepare_request", "send", "merge_environment_settings",
                    "get_adapter", "resolve_redirects", "rebuild_auth", "rebuild_proxies",
                    "rebuild_method", "get_redirect_target", "should_strip_auth")
# Headers libcurl adds by itself (Content-Type to a POST): when requests
# would not send one, it is removed (a NULL value) so the two send the same.
_CURL_DEFAULTS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
_URLLIB3_UA = _get_default_user_agent()
# The proxies first (libcurl reads them too), then what else requests reads.
_PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "no_proxy", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
_URL_CACHE_MAX = 4096
_RETIRED_MAX = 8  # qv_sessions kept after the Python jar changed behind them
_plain_classes: dict = {}
_OPTS_T = ffi.typeof("qv_request_opts *")
_OPTS_SIZE = ffi.sizeof("qv_request_opts")
try:
    _environ_data = os.environ._data  # type: ignore[attr-defined]
    _PROXY_ENV_KEYS = tuple(os.environ.encodekey(k) for k in _PROXY_ENV)  # type: ignore
except AttributeError:  # not CPython's os.environ: the slower, public way
    _environ_data, _PROXY_ENV_KEYS = os.environ, _PROXY_ENV


def _environment() -> tuple:
    """The environment variables requests' merge_environment_settings and
    libcurl read (proxies, CA bundles), read per request like requests does."""
    return tuple(map(_environ_data.get, _PROXY_ENV_KEYS))


def _client_cert(o: Any, cert: Any, keep: list) -> None:
    """requests' cert (a PEM file with the key, or a (cert, key) pair) as
    quiver's client certificate; missing files fail as in requests."""
    cert_file, key_file = (cert, None) if isinstance(cert, str) else cert
    if cert_file and not os.path.exists(cert_file):
        raise OSError(f"Could not find the TLS certificate file, invalid path: {cert_file}")
    if key_file and not os.path.exists(key_file):
        raise OSError(f"Could not find the TLS key file, invalid path: {key_file}")
    o.client_cert = _cdata.cstr(cert_file, keep)
    o.client_key = _cdata.cstr(key_file, keep)


def _prepare_url(url: str, params: Any) -> tuple:
    """requests' own URL preparation: the URL, as C, and its scheme+host."""
    p = PreparedRequest()
    p.prepare_url(url, params)
    parts = urlsplit(p.url)
    return p.url, c_string(p.url), (parts.scheme, parts.netloc)


def _wrap(self: Any, sup: Callable, background_callback: Callable, *args: Any,
          **kwargs: Any) -> Any:
    """Module level so that ProcessPoolExecutor can pickle it."""
    resp = sup(*args, **kwargs)
    return background_callback(self, resp) or resp


def _own_cookies_fit(jar: CookieJar, cookies: dict) -> bool:
    """True when a request's own cookies (a dict) fit the Cookie line quiver
    adds to the jar's: requests sends a bare name for a None value, and
    the request's cookie alone where the session's jar has the same name
    (quiver's line would send both)."""
    if None in cookies.values():
        return False
    return not any(c.name in cookies for c in jar)


def _plain(cls: type) -> bool:
    """True if cls prepares and sends as requests' Session does (its
    request() is FuturesSession's own, or Session's)."""
    ok = _plain_classes.get(cls)
    if ok is None:
        ok = all(getattr(cls, m) is getattr(Session, m) for m in _SESSION_METHODS[1:]) and \
            (issubclass(cls, FuturesSession) or cls.request is Session.request)
        _plain_classes[cls] = ok
    return ok


def _default_retries(adapter: HTTPAdapter) -> bool:
    r = adapter.max_retries
    return r.total == DEFAULT_RETRIES and r.read is False


def _retries(src: Session, method: str) -> Any:
    """The retries the mounted adapters give `method` (quiver follows
    redirects across schemes itself, so they must agree): None for
    requests' default (none), a RetryPlan, or False when an adapter is not
    requests' plain HTTPAdapter or quiver cannot retry as urllib3 would
    (requests' own path)."""
    retries = []
    for a in src.adapters.values():
        if type(a) is not HTTPAdapter:
            return False
        retries.append(None if _default_retries(a) else a.max_retries)
    first = retries[0] if retries else None
    for r in retries[1:]:
        if r is not first and (r is None or first is None or vars(r) != vars(first)):
            return False
    if first is None:
        return None
    return retry_plan(first, method) or False


def _jar_signature(jar: CookieJar) -> tuple:
    """What identifies a jar's content (domain, path, name, value)."""
    c = jar._cookies  # type: ignore[attr-defined]
    if not c:
        return ()
    return tuple((d, p, n, ck.value) for d, paths in c.items() for p, names in paths.items()
                 for n, ck in names.items())


def _plan_key(src: Session) -> tuple:
    """What a _Plan is made from."""
    h = src.headers
    hooks = src.hooks
    return (tuple(h._store.values()) if type(h) is CaseInsensitiveDict else tuple(h.items()),
            tuple(src.params.items()) if src.params else (),
            hooks.get("response") and tuple(hooks["response"]), id(hooks),
            tuple(src.proxies.items()) if src.proxies else ())


_CALLABLE = object()  # an auth that runs for each request
_max_retries = attrgetter("max_retries")


def _auth_key(auth: Any) -> Any:
    """What a request's preparation reads of an auth."""
    if auth is None or (type(auth) is tuple and len(auth) == 2):
        return auth
    if type(auth) is HTTPBasicAuth or type(auth) is HTTPDigestAuth:
        return (type(auth), auth.username, auth.password)
    return _CALLABLE


def _headers_store(h: Any) -> Any:
    return h._store if type(h) is CaseInsensitiveDict else h


class _State:
    """What preparing a request reads from the session (but its cookie
    jar, which _csession follows) and from the environment, and what
    _quiver_can reads of the session: a request with the same arguments in
    the same state is prepared the same way. Copies, compared with the
    session's own objects (C-level equality: no tuple of it all is made
    for each request)."""

    __slots__ = ("cls", "headers", "params", "hooks", "response_hooks", "proxies", "auth",
                 "scalars", "env", "jar_type", "adapters", "retries")

    @classmethod
    def of(cls, src: Session) -> Optional["_State"]:
        """src's state; None when it cannot be made again (an auth callable
        runs for each request)."""
        auth = _auth_key(src.auth)
        if auth is _CALLABLE:
            return None
        st = cls.__new__(cls)
        st.cls, st.auth, st.jar_type = type(src), auth, type(src.cookies)
        st.headers = dict(_headers_store(src.headers))
        st.params = copy(src.params)
        st.hooks = src.hooks
        hooks = src.hooks.get("response")
        st.response_hooks = list(hooks) if hooks is not None else None
        st.proxies = copy(src.proxies)
        st.scalars = (src.trust_env, src.max_redirects, src.verify, src.stream, src.cert)
        st.env = _environment()
        st.adapters = src.adapters.copy()
        st.retries = list(map(_max_retries, src.adapters.values()))
        return st

    def matches(self, src: Session) -> bool:
        auth = src.auth
        # adapters before their retries: an adapter mounted since may have none
        return (type(src) is self.cls and _headers_store(src.headers) == self.headers
                and src.params == self.params and src.hooks is self.hooks
                and src.hooks.get("response") == self.response_hooks
                and src.proxies == self.proxies
                and (auth is self.auth or _auth_key(auth) == self.auth)
                and (src.trust_env, src.max_redirects, src.verify, src.stream,
                     src.cert) == self.scalars
                and _environment() == self.env and type(src.cookies) is self.jar_type
                and src.adapters == self.adapters
                and list(map(_max_retries, src.adapters.values())) == self.retries)


class _SetCookies:
    """The Set-Cookie values of one response, as cookielib reads them."""

    def __init__(self, values: list) -> None:
        self.values = values

    def get_all(self, name: str, default: Any = None) -> Any:
        return self.values if name.lower() == "set-cookie" else default


class _CSession:
    """One qv_session: the C side of one (proxy, CA file) pair, and the
    state of the Python jar its own jar was last in step with."""

    def __init__(self, engine: Engine, proxy: Optional[str], ca: Optional[str],
                 jar: CookieJar, sig: tuple) -> None:
        keep: list = []
        opts = ffi.new("qv_session_opts *", {
            "size": ffi.sizeof("qv_session_opts"), "executor": engine.ex,
            "proxy": _cdata.cstr(proxy, keep)})
        if ca is not None:  # requests' verify: a CA bundle, or a directory of CAs
            setattr(opts, "ca_path" if os.path.isdir(ca) else "ca_file", _cdata.cstr(ca, keep))
        out = ffi.new("qv_session **")
        rc = lib.qv_session_new(out, opts)
        if rc:
            raise error_for(rc, "quiver: cannot make a session")
        self.ptr = out[0]
        self.key = (proxy, ca)
        for ck in list(jar):
            # requests' jar is the one users see; quiver's sends. A cookie
            # quiver cannot take (a ';' in the value) is left out.
            lib.qv_session_set_cookie(self.ptr, ck.name.encode(), (ck.value or "").encode(),
                                      ck.domain.encode() if ck.domain else ffi.NULL)
        self.sig = sig

    def free(self) -> None:
        lib.qv_session_free(self.ptr)


class _Plan:
    """What the session's state gives every request, in Python and in C;
    made again only when that state changes (`key` tells)."""

    def __init__(self, src: Session, key: tuple) -> None:
        self.key = key
        self.headers = merge_setting(None, src.headers, CaseInsensitiveDict)
        if not isinstance(self.headers, CaseInsensitiveDict):
            self.headers = CaseInsensitiveDict(self.headers)
        for item in self.headers.items():
            check_header_validity(item)
        self.keep: list = []
        self.c_headers = _c_headers(self.headers, self.keep)
        self.params = dict(src.params) if src.params else None
        self.hooks = src.hooks
        self.has_hooks = bool(src.hooks.get("response"))


def _c_headers(headers: CaseInsensitiveDict, keep: list) -> Any:
    # Content-Length is libcurl's to send: it drops it when a redirect
    # turns the request into a GET, as requests does.
    items = [(k, v) for k, v in headers.items() if k.lower() != "content-length"]
    for name in _CURL_DEFAULTS:
        if name not in headers:
            # urllib3 sends its own User-Agent when there is none
            items.append((name, _URLLIB3_UA if name == "User-Agent" else None))
    return _cdata.pairs(items, keep)


class _Again:
    """A prepared request that the same arguments in the same state
    (_State) make again: its C options, what they point to, its record, and
    the files its preparation checks (CA bundle, client certificate)."""

    __slots__ = ("opts", "keep", "rec", "state", "paths")

    def __init__(self, opts: Any, keep: list, rec: "_Record", state: _State) -> None:
        self.opts, self.keep, self.rec, self.state = opts, keep, rec, state
        kw = rec.hook_kwargs
        cert = kw["cert"] or ()
        paths = [kw["verify"]] if isinstance(kw["verify"], str) else []
        paths += [cert] if isinstance(cert, str) else [p for p in cert if p]
        self.paths = tuple(paths)


class _Bridge:
    """The quiver side of one FuturesSession: the engine, the qv_sessions,
    and the caches that let a request skip requests' preparation."""

    def __init__(self, max_workers: int) -> None:
        self.engine = Engine("loop", max_workers, hook_workers=max_workers)
        self.csessions: dict = {}
        self.retired: list = []
        self.lock = threading.Lock()  # csessions, jar signatures
        self.plan: Optional[_Plan] = None
        self.urls: dict = {}
        self.env: dict = {}
        self.netrc: dict = {}
        self.again: dict = {}  # (method, URL, scalar arguments) -> _Again

    def close(self) -> None:
        for cs in list(self.csessions.values()) + self.retired:
            cs.free()
        self.csessions.clear()
        self.retired.clear()
        self.again.clear()  # its records point back at the session
        self.engine.close()


class FuturesSession(Session):
    """A requests.Session whose request methods return futures.

    executor: run requests' own code in this executor (requests-futures'
    semantics, no quiver); max_workers: requests in flight at once (also the
    size of the thread pool in `executor`, and of urllib3's pools above 10);
    session: a requests.Session whose state (headers, cookies, auth...) the
    requests use instead of this one's; adapter_kwargs: for the mounted
    HTTPAdapters.
    """

    def __init__(self, executor: Any = None, max_workers: int = 8,
                 session: Optional[Session] = None, adapter_kwargs: Optional[dict] = None,
                 *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        adapter_args: dict = {}
        self._owned_executor = executor is None
        if executor is None:
            # Created as requests-futures does (code reads _max_workers), used
            # for requests' own path and for hooks; it starts no thread until
            # it is used.
            executor = ThreadPoolExecutor(max_workers=max_workers)
            if max_workers > DEFAULT_POOLSIZE:
                adapter_args.update(pool_connections=max_workers, pool_maxsize=max_workers)
        adapter_args.update(adapter_kwargs or {})
        if adapter_args:
            self.mount("https://", HTTPAdapter(**adapter_args))
            self.mount("http://", HTTPAdapter(**adapter_args))
        self.executor = executor
        self.session = session
        self._max_workers = max_workers
        self._bridge: Optional[_Bridge] = None
        self._bridge_lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------ requests
    def request(self, method: str, url: Any, params: Any = None, data: Any = None,
                headers: Any = None, cookies: Any = None, files: Any = None, auth: Any = None,
                timeout: Any = None, allow_redirects: bool = True, proxies: Any = None,
                hooks: Any = None, stream: Any = None, verify: Any = None, cert: Any = None,
                json: Any = None, background_callback: Optional[Callable] = None,
                **extra: Any) -> Future:
        """Session.request's arguments (plus background_callback); returns a
        concurrent.futures.Future of the requests.Response."""
        if background_callback is not None:
            getLogger(self.__class__.__name__).warning(
                "`background_callback` is deprecated and will be removed in 1.0, use `hooks` "
                "instead")
        if params is None and data is None and headers is None and cookies is None and \
                files is None and auth is None and proxies is None and hooks is None and \
                json is None and background_callback is None and not extra:
            # Only the URL and scalars: the request may be one made before.
            fut = self._submit_again(method, url, timeout, allow_redirects, stream, verify,
                                     cert)
            if fut is not None:
                return fut
        kwargs = dict(params=params, data=data, headers=headers, cookies=cookies, files=files,
                      auth=auth, timeout=timeout, allow_redirects=allow_redirects,
                      proxies=proxies, hooks=hooks, stream=stream, verify=verify, cert=cert,
                      json=json, **extra)
        src = self.session or self
        if (not self._owned_executor or extra or files
                or (cookies and type(cookies) is not dict)
                or not isinstance(url, str) or not isinstance(method, str)
                or not self._quiver_can(src, method, url, data, auth, timeout)
                or (cookies and not _own_cookies_fit(src.cookies, cookies))):
            return self._submit_requests(method, url, background_callback, kwargs)
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        return self._submit_quiver(src, method, url, params, data, headers, cookies, auth,
                                   timeout, allow_redirects, proxies, hooks, stream, verify,
                                   cert, json, background_callback)

    def _submit_again(self, method: str, url: Any, timeout: Any, allow_redirects: bool,
                      stream: Any, verify: Any, cert: Any) -> Optional[Future]:
        """Submits the C options of an earlier request made with the same
        arguments in the same state of the session and the environment
        (_State), skipping requests' preparation; None if there is none."""
        b = self._bridge
        if b is None or self._closed:
            return None
        try:
            again = b.again.get((method, url, timeout, allow_redirects, stream, verify, cert))
        except TypeError:  # unhashable: not made again
            return None
        src = self.session or self
        if again is None or not again.state.matches(src):
            return None  # (the state holds all that _quiver_can read of src)
        rec = again.rec
        if self._csession(b, src, *rec.cs.key) is not rec.cs:
            return None  # the jar was changed by hand: a new C session
        if again.paths and not all(map(os.path.exists, again.paths)):
            return None  # requests' OSError, from the preparation
        return self._send(b, method, url, again.opts, rec, bool(rec.response_hooks))

    def _submit_requests(self, method: str, url: Any, background_callback: Any,
                         kwargs: dict) -> Future:
        """requests' own code in the executor, as requests-futures runs it."""
        if self.session:
            func = self.session.request
        else:
            func = partial(Session.request, self)  # no super(): it must pickle
        if background_callback:
            func = partial(_wrap, self, func, background_callback)
        if isinstance(self.executor, ProcessPoolExecutor):
            try:
                dumps(func)
            except (TypeError, PickleError):
                raise RuntimeError(PICKLE_ERROR)
        return self.executor.submit(func, method, url, **kwargs)

    @staticmethod
    def _quiver_can(src: Session, method: str, url: str, data: Any, auth: Any,
                    timeout: Any) -> bool:
        """True when quiver can send this request as requests would."""
        if not _plain(type(src)):
            return False
        if not url[:8].lower().startswith(("http://", "https://")):
            return False  # requests' own errors (MissingSchema, InvalidSchema...)
        if _retries(src, method.upper()) is False:
            return False
        if not isinstance(src.cookies, CookieJar):
            return False
        if data is not None and not isinstance(data, (str, bytes, dict, list, tuple)):
            return False  # file-like or iterable bodies are streamed by requests
        if timeout is not None and not isinstance(timeout, (int, float, tuple)):
            return False
        return True

    def _get_bridge(self) -> _Bridge:
        b = self._bridge
        if b is None:
            with self._bridge_lock:
                if self._bridge is None:
                    self._bridge = _Bridge(self._max_workers)
                b = self._bridge
        return b

    @staticmethod
    def _plan(b: _Bridge, src: Session) -> _Plan:
        key = _plan_key(src)
        plan = b.plan
        if plan is None or plan.key != key:
            plan = b.plan = _Plan(src, key)
        return plan

    def _submit_quiver(self, src: Session, method: str, url: str, params: Any, data: Any,
                       headers: Any, cookies: Any, auth: Any, timeout: Any,
                       allow_redirects: bool,
                       proxies: Any, hooks: Any, stream: Any, verify: Any, cert: Any,
                       json: Any, background_callback: Any) -> Future:
        b = self._get_bridge()
        again = params is None and data is None and headers is None and cookies is None and \
            auth is None and proxies is None and hooks is None and json is None and \
            background_callback is None
        state = _State.of(src) if again else None
        try:
            opts, keep, rec = self._prepare(b, src, method, url, params, data, headers, cookies,
                                            auth, timeout, allow_redirects, proxies, hooks,
                                            stream, verify, cert, json)
        except Exception as e:  # noqa: BLE001 - requests raises these from result()
            fut = b.engine.new_future()
            settle(fut, exc=e)
            return fut
        rec.background_callback = background_callback
        if state is not None:
            try:
                key = (method, url, timeout, allow_redirects, stream, verify, cert)
                if len(b.again) >= _URL_CACHE_MAX:
                    b.again.clear()
                b.again[key] = _Again(opts, keep, rec, state)
            except TypeError:  # unhashable arguments: not made again
                pass
        # hooks and background callbacks must run without a result() call
        return self._send(b, method, url, opts, rec,
                          bool(rec.response_hooks or background_callback))

    @staticmethod
    def _send(b: _Bridge, method: str, url: str, opts: Any, rec: _Record, push: bool) -> Future:
        """qv_request, and the future that finishes it (push: armed at once)."""
        eng = b.engine
        fut = eng.new_future()
        qvf = request(rec.cs.ptr, opts)
        if not qvf:
            rc = request_error()
            settle(fut, exc=error_for(rc, f"{ffi.string(lib.qv_strerror(rc)).decode()}: "
                                          f"{method} {url}", rec.prepared()))
            return fut
        fut._rec = rec
        eng.track(fut, qvf, _finish, push=push)
        return fut

    def _prepare(self, b: _Bridge, src: Session, method: str, url: str, params: Any,
                 data: Any, headers: Any, cookies: Any, auth: Any, timeout: Any,
                 allow_redirects: bool,
                 proxies: Any, hooks: Any, stream: Any, verify: Any, cert: Any,
                 json: Any) -> tuple:
        """The request as requests would send it, as qv_request_opts."""
        plan = self._plan(b, src)
        keep: list = []
        method = method.upper()
        o = ffi.new(_OPTS_T)
        o.size = _OPTS_SIZE
        # URL and query: requests' own preparation, cached per URL when the
        # query does not change (it is ~15 us and pure).
        qparams = merge_setting(params, plan.params) if params or plan.params else None
        if qparams:
            full, c_url, origin = _prepare_url(url, qparams)
        else:
            cached = b.urls.get(url)
            if cached is None:
                if len(b.urls) >= _URL_CACHE_MAX:
                    b.urls.clear()
                cached = b.urls[url] = _prepare_url(url, None)
            full, c_url, origin = cached
        # Headers: the session's in C already; merged again only if the
        # request brings its own.
        if headers:
            hdrs = merge_setting(headers, plan.headers, CaseInsensitiveDict)
            for item in hdrs.items():
                check_header_validity(item)
            c_headers = None
        else:
            hdrs = plan.headers
            c_headers = plan.c_headers
        if cookies and "Cookie" not in hdrs:
            # This request's own cookies: a Cookie header, which libcurl sends
            # in one line with the jar's, as requests merges them (for this
            # request only; they stay out of both jars).
            hdrs = CaseInsensitiveDict(hdrs)
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
            c_headers = None
        body = None
        if data is not None or json is not None or method not in ("GET", "HEAD"):
            p = PreparedRequest()
            p.headers = CaseInsensitiveDict(hdrs)
            p.prepare_body(data, None, json)
            if p.body is not None or p.headers != hdrs:
                hdrs = p.headers
                c_headers = None
                body = p.body
                if body is None and hdrs.get("Content-Length") == "0":
                    body = b""  # so that libcurl sends "Content-Length: 0" too
        # Auth: requests' precedence: the request's, the session's, netrc.
        env = _environment()
        trust_env = src.trust_env
        if auth is None:
            auth = src.auth
        if auth is None and trust_env:
            # requests reads ~/.netrc per request; here once per host
            if origin not in b.netrc:
                b.netrc[origin] = get_netrc_auth(full)
            auth = b.netrc[origin]
        auth_hooks: list = []
        if auth is not None:
            if isinstance(auth, tuple) and len(auth) == 2:
                o.auth, user, pw = 1, auth[0], auth[1]
            elif type(auth) is HTTPBasicAuth:
                o.auth, user, pw = 1, auth.username, auth.password
            elif type(auth) is HTTPDigestAuth:
                o.auth, user, pw = 2, auth.username, auth.password
            else:
                # Any other AuthBase: applied here, to the request as it
                # stands, like requests' prepare_auth.
                p = PreparedRequest()
                p.method, p.url, p.headers, p.body = method, full, CaseInsensitiveDict(hdrs), body
                p.hooks = default_hooks()
                p._cookies = None
                r = auth(p)
                if r.url != full:
                    full, c_url = r.url, None
                hdrs, body = r.headers, r.body
                auth_hooks = list(r.hooks.get("response", []))
                c_headers = None
                user = pw = None
            if user is not None:
                o.username = _cdata.cstr(user, keep, "latin-1")
                o.password = _cdata.cstr(pw, keep, "latin-1")
        if c_headers is None:
            c_headers = _c_headers(hdrs, keep)
        o.headers = c_headers
        o.method = c_string(method)
        o.url = c_url if c_url is not None else _cdata.cstr(full, keep)
        if body is not None:
            raw = body if isinstance(body, bytes) else body.encode("latin-1")
            buf = ffi.new("char[]", raw)
            keep.append(buf)
            o.body, o.body_len = buf, len(raw)
        o.connect_timeout_ms, o.read_timeout_ms = _cdata.timeouts(timeout)
        max_redirects = src.max_redirects
        if not allow_redirects or max_redirects == 0:
            o.no_redirects = 1
        else:
            o.no_redirects = -1
            o.max_redirects = max_redirects
        # Environment: requests' merge_environment_settings, cached per host
        # and state of the environment variables it reads.
        req_proxies = proxies or {}
        if trust_env:
            ekey = (env, origin, req_proxies.get("no_proxy"))
            env_proxies = b.env.get(ekey)
            if env_proxies is None:
                if len(b.env) >= _URL_CACHE_MAX:
                    b.env.clear()
                env_proxies = b.env[ekey] = get_environ_proxies(full, req_proxies.get("no_proxy"))
            if env_proxies:
                req_proxies = dict(req_proxies)
                for k, v in env_proxies.items():
                    req_proxies.setdefault(k, v)
            if (verify is True or verify is None) and (env[-2] or env[-1]):
                verify = os.fsdecode(env[-2] or env[-1])
        all_proxies = merge_setting(req_proxies, src.proxies) if req_proxies or src.proxies \
            else None
        proxy = select_proxy(full, all_proxies) if all_proxies else None
        if not proxy and any(env[:6]):
            proxy = ""  # none, though libcurl would find one in the environment
        if verify is None:
            verify = src.verify
        if stream is None:
            stream = src.stream
        if stream:
            o.stream = 1  # the body through quiver's pull reader (Response.raw)
        if cert is None:
            cert = src.cert
        if cert:
            _client_cert(o, cert, keep)
        ca_file = None
        if verify is False:
            o.insecure = 1
        else:
            o.insecure = -1
            if isinstance(verify, str):
                if not os.path.exists(verify):
                    raise OSError("Could not find a suitable TLS CA certificate bundle, "
                                  f"invalid path: {verify}")
                ca_file = verify
        # Hooks: the request's (as requests registers them) over the session's.
        if hooks:
            req_hooks = default_hooks()
            for event, hook in hooks.items():
                if callable(hook):
                    req_hooks.setdefault(event, []).append(hook)
                elif hasattr(hook, "__iter__"):
                    req_hooks.setdefault(event, []).extend(h for h in hook if callable(h))
            all_hooks = merge_hooks(req_hooks, plan.hooks)
        else:
            all_hooks = plan.hooks
        response_hooks = list(all_hooks.get("response") or ()) + auth_hooks
        retry = _retries(src, method)
        if retry is not None:
            o.retry = retry.c_retry
        cs = self._csession(b, src, proxy, ca_file)
        rec = _Record(self, src, b, cs, method, full, hdrs, body, all_hooks, response_hooks,
                      bool(stream), max_redirects == 0 and allow_redirects,
                      {"timeout": timeout, "verify": verify, "proxies": all_proxies,
                       "stream": stream, "cert": cert}, retry)
        keep.append(plan)  # its C headers may be in o.headers
        return o, keep, rec

    def _csession(self, b: _Bridge, src: Session, proxy: Optional[str],
                  ca_file: Optional[str]) -> _CSession:
        """The qv_session for this proxy and CA file, with its jar in step
        with requests' (made again if the Python jar changed behind it)."""
        key = (proxy, ca_file)
        with b.lock:
            cs = b.csessions.get(key)
            sig = _jar_signature(src.cookies)
            if cs is None or cs.sig != sig:
                new = _CSession(b.engine, proxy, ca_file, src.cookies, sig)
                if cs is not None:
                    b.retired.append(cs)
                    if len(b.retired) > _RETIRED_MAX:
                        # waits for what it still has in flight, which quiver
                        # completes without us
                        b.retired.pop(0).free()
                b.csessions[key] = cs = new
        return cs

    def close(self) -> None:
        """Closes the adapters; waits for what is in flight and frees the
        executor if it is the session's own."""
        super().close()
        if self._owned_executor:
            self._closed = True
            with self._bridge_lock:
                b, self._bridge = self._bridge, None
            if b is not None:
                b.close()
            self.executor.shutdown()


class _Record:
    """One request on the quiver path: what finishing it needs."""

    __slots__ = ("session", "src", "bridge", "cs", "method", "url", "headers", "body", "hooks",
                 "response_hooks", "stream", "zero_redirects", "hook_kwargs",
                 "background_callback", "retry")

    def __init__(self, session: FuturesSession, src: Session, bridge: _Bridge, cs: _CSession,
                 method: str, url: str, headers: Any, body: Any, hooks: dict,
                 response_hooks: list, stream: bool, zero_redirects: bool,
                 hook_kwargs: dict, retry: Optional[RetryPlan]) -> None:
        self.session, self.src, self.bridge, self.cs = session, src, bridge, cs
        self.method, self.url, self.headers, self.body = method, url, headers, body
        self.hooks, self.response_hooks = hooks, response_hooks
        self.stream, self.zero_redirects, self.hook_kwargs = stream, zero_redirects, hook_kwargs
        self.background_callback = None
        self.retry = retry  # keeps the qv_retry the options point to

    def request_args(self, url: Optional[str] = None, method: Optional[str] = None) -> tuple:
        """prepared_request's arguments for Response.request (made when
        first read): a PreparedRequest as requests would have made."""
        return (method or self.method, url or self.url, self.headers._store,
                self.body if method in (None, self.method) else None, self.hooks)

    def prepared(self, url: Optional[str] = None, method: Optional[str] = None) -> PreparedRequest:
        return prepared_request(*self.request_args(url, method))


def _redirected_method(method: str, status: int) -> str:
    """The method after a redirect, by requests' rebuild_method rules."""
    if (status == 303 and method != "HEAD") or (status == 302 and method != "HEAD") or \
            (status == 301 and method == "POST"):
        return "GET"
    return method


_READ_ERRORS = frozenset((QV_EREAD_TIMEOUT, QV_ETIMEOUT, QV_EPROTOCOL))


class RedirectURLError(InvalidURL, InvalidSchema):
    """A redirect whose Location cannot be followed (QV_EURL once a 3xx
    came). requests raises InvalidSchema for one to a scheme other than
    http(s) and InvalidURL (or ValueError) for a malformed one; quiver's
    code does not tell the two apart, so this is both: every `except`
    written for either catches it."""


def _connection_error(qvf: Any, rc: int, retry: Optional[RetryPlan]) -> bool:
    """True where requests raises ConnectionError for a failure quiver's
    code maps to another class: urllib3's MaxRetryError after read retries;
    headers too large (QV_ETOO_LARGE's only cause here: the drop-in sets no
    size limit), which http.client refuses; a reply that is empty or not
    HTTP (QV_EPROTOCOL before a status line); a read timeout once the status
    line came (requests raises it from reading the body as ConnectionError)."""
    if rc == QV_ETOO_LARGE or (retry is not None and retry.read_retried and rc in _READ_ERRORS):
        return True
    if rc == QV_EPROTOCOL:
        return not lib.qv_future_error_status(qvf)
    if rc == QV_EREAD_TIMEOUT or rc == QV_ETIMEOUT:
        return bool(lib.qv_future_error_status(qvf))
    return False


def _finish(fut: Future, qvf: Any, rc: int, sc: Any) -> None:
    """On the completion thread: the qv_response taken into the Scratch sc
    as a requests.Response."""
    rec: _Record = fut._rec
    fut._rec = None
    retry = rec.retry
    if rc:
        exc = future_error(qvf, rc, rec.prepared())
        if _connection_error(qvf, rc, retry):
            exc = ConnectionError(str(exc), request=exc.request)
        elif rc == QV_EURL and lib.qv_future_error_status(qvf):
            exc = RedirectURLError(str(exc), request=exc.request)
        settle(fut, exc=exc)
        return
    r = sc.t.resp
    resp = build_response(r, None, not rec.stream, sc)
    info = sc.t.info  # the response's, until the next build_response
    if retry is not None and info.attempts > retry.max_retries and \
            (resp.status_code in retry.statuses or (resp.status_code in retry.after_statuses
                                                    and resp.headers.get("Retry-After"))):
        # urllib3's MaxRetryError(ResponseError), requests' RetryError
        settle(fut, exc=RetryError(f"Max retries exceeded with url: {resp.url} (Caused by "
                                   f"ResponseError('too many {resp.status_code} error "
                                   "responses'))", request=rec.prepared()))
        return
    n = info.history_len
    set_cookies = set_cookie_values(r) if info.set_cookies else None
    jar_updates = []
    method = rec.method
    if n:
        hist = []
        for i in range(n):
            h = lib.qv_response_history(r, i)
            hr = build_response(h, None, False)
            hr._qv_request = rec.request_args(hr.url, method)
            if info.set_cookies:  # now the hop's
                jar_updates.append((hr, set_cookie_values(h)))
            method = _redirected_method(method, hr.status_code)
            hist.append(hr)
        for i, hr in enumerate(hist):
            hr.history = hist[1:i + 1]  # as requests' resolve_redirects leaves them
        resp.history = hist
    resp._qv_request = rec.request_args(resp.url if n else None, method)
    if set_cookies:
        jar_updates.append((resp, set_cookies))
    if jar_updates:
        _update_jars(rec, jar_updates)
    if rec.stream:
        resp.raw = StreamBody(qvf, r)
        resp._content = False
        resp._content_consumed = False
    if rec.zero_redirects and resp.is_redirect:
        settle(fut, exc=TooManyRedirects("Exceeded 0 redirects.", response=resp))
        return
    if rec.response_hooks or rec.background_callback:
        rec.bridge.engine.run_in_background(_after, fut, rec, resp)
    else:
        settle(fut, resp)


def _after(fut: Future, rec: _Record, resp: Any) -> None:
    """Response hooks, then the background callback, off the completion
    thread (they may be slow); an exception in one is the future's."""
    try:
        if rec.response_hooks:
            resp.connection = rec.src.get_adapter(resp.url)
            hooks = {"response": rec.response_hooks}
            for hr in resp.history:
                dispatch_hook("response", hooks, hr, **rec.hook_kwargs)
            resp = dispatch_hook("response", hooks, resp, **rec.hook_kwargs)
        if rec.background_callback:
            resp = rec.background_callback(rec.session, resp) or resp
    except BaseException as e:  # noqa: BLE001 - it belongs to the future
        settle(fut, exc=e)
        return
    settle(fut, resp)


def _update_jars(rec: _Record, updates: list) -> None:
    """Set-Cookie into the response's jar and the session's, as requests
    does; quiver's own jar took them already, so the qv_session stays in
    step unless the Python jar had changed meanwhile."""
    b = rec.bridge
    jar = rec.src.cookies
    with b.lock:
        before = _jar_signature(jar)
        for resp, values in updates:
            mreq = MockRequest(resp.request)
            mresp = MockResponse(_SetCookies(values))
            resp.cookies.extract_cookies(mresp, mreq)
            jar.extract_cookies(mresp, mreq)
        if rec.cs.sig == before:
            rec.cs.sig = _jar_signature(jar)

