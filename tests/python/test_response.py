"""The requests.Response quiver builds makes its headers, cookies, elapsed,
history, request (and quiver.Session's timing, http_version and attempts)
when they are first read: each reads, assigns, pickles, copies and
compares as requests' own."""

from __future__ import annotations

import copy
import datetime
import gc
import pickle
import threading

import pytest
import requests
from requests.cookies import RequestsCookieJar

import quiver
from quiver import _engine
from requests_futures.sessions import FuturesSession

LAZY = ("headers", "cookies", "elapsed", "history", "request")
# what every response built whole has alike, also made when first read
CONSTANT = {"raw": None, "connection": None, "_next": None, "_content_consumed": True}


@pytest.fixture(params=["session", "dropin"])
def get(request):
    """get(url) -> a Response, from quiver.Session or the drop-in."""
    s = quiver.Session(executor="loop") if request.param == "session" else FuturesSession()
    yield lambda url, **kw: s.get(url, **kw).result(timeout=30)
    s.close()


def requests_get(url: str) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(url, headers={"User-Agent": "x"})


def test_reads_as_requests_own(get, httpbin):
    url = httpbin + "/response-headers?Content-Type=text/plain%3B+charset%3Dutf-8"
    ours, theirs = get(url), requests_get(url)
    assert type(ours) is requests.Response and repr(ours) == repr(theirs) == "<Response [200]>"
    assert type(ours.cookies) is RequestsCookieJar and dict(ours.cookies) == dict(theirs.cookies)
    assert ours.cookies is ours.cookies  # made once, then kept
    assert type(ours.elapsed) is datetime.timedelta
    assert datetime.timedelta(0) < ours.elapsed < datetime.timedelta(seconds=30)
    assert ours.history == theirs.history == [] and ours.history is ours.history
    assert type(ours.request) is type(theirs.request) and ours.request is ours.request
    assert (ours.request.method, ours.request.url) == (theirs.request.method, theirs.request.url)
    assert ours.headers["content-type"] == theirs.headers["Content-Type"]
    assert ours.encoding == theirs.encoding == "utf-8"
    assert {name: getattr(ours, name) for name in CONSTANT} == CONSTANT
    assert ours.next is None and ours.is_redirect is False
    with ours:  # Response.close() reads _content_consumed and raw
        pass
    assert ours.content == theirs.content and list(ours.iter_content(4)) == \
        list(theirs.iter_content(4))


def test_constants_assign_and_pickle(get, nginx):
    r = get(nginx + "/small")
    marker = object()
    for name in CONSTANT:
        setattr(r, name, marker)
        assert getattr(r, name) is marker
    r = get(nginx + "/small")
    r2 = pickle.loads(pickle.dumps(r))
    # as for requests' own: __setstate__ sets these two, not _next or connection
    assert (r2.raw, r2._content_consumed) == (None, True)
    theirs = pickle.loads(pickle.dumps(requests_get(nginx + "/small")))
    for name in ("_next", "connection"):
        assert not hasattr(r2, name) and not hasattr(theirs, name), name


def test_assigns(get, nginx):
    r = get(nginx + "/small")
    values = {"headers": requests.structures.CaseInsensitiveDict({"A": "1"}),
              "cookies": RequestsCookieJar(), "elapsed": datetime.timedelta(seconds=3),
              "history": [requests.Response()], "request": requests.PreparedRequest()}
    for name, value in values.items():
        setattr(r, name, value)
        assert getattr(r, name) is value
    r2 = get(nginx + "/small")
    r2.elapsed += datetime.timedelta(seconds=1)  # read, then assigned
    assert r2.elapsed >= datetime.timedelta(seconds=1)
    r2.history.append(r)
    assert r2.history == [r]


@pytest.mark.parametrize("how", ["pickle", "copy"])
def test_pickles_and_copies_as_a_plain_response(get, httpbin, how):
    r = get(httpbin + "/cookies/set?a=1")  # a redirect: a history
    r2 = pickle.loads(pickle.dumps(r)) if how == "pickle" else copy.copy(r)
    assert type(r2) is requests.Response
    for name in LAZY:
        assert name in vars(r2), name  # a copy holds every attribute itself
    assert (r2.status_code, r2.content, r2.url) == (r.status_code, r.content, r.url)
    assert dict(r2.headers) == dict(r.headers) and r2.elapsed == r.elapsed
    assert [h.status_code for h in r2.history] == [h.status_code for h in r.history] == [302]
    assert (r2.request.method, r2.request.url) == (r.request.method, r.request.url)
    assert type(r2.cookies) is RequestsCookieJar


def test_session_extras_are_made_when_read(nginx):
    """quiver.Session's timing, http_version and attempts."""
    with quiver.Session(executor="loop") as s:
        r = s.get(nginx + "/small").result(timeout=30)
        assert not {"timing", "http_version", "attempts"} & set(vars(r))
        assert set(r.timing) == {"queued_ms", "dns_ms", "connect_ms", "tls_ms",
                                 "first_byte_ms", "total_ms", "hooks_ms"}
        assert r.timing is r.timing and 0 < r.timing["total_ms"] < 30000
        assert (r.http_version, r.attempts) == (11, 1)
        r.timing = {"total_ms": 1.0}
        r.http_version, r.attempts = 20, 3
        assert (r.timing, r.http_version, r.attempts) == ({"total_ms": 1.0}, 20, 3)


def test_threads_reading_at_once_get_the_same_object(get, nginx):
    rs = [get(nginx + "/small") for _ in range(20)]
    seen: list = []
    barrier = threading.Barrier(4)

    def read() -> None:
        barrier.wait()
        seen.append([tuple(id(getattr(r, name)) for name in LAZY) for r in rs])

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 4 and all(s == seen[0] for s in seen)


def test_other_responses_are_untouched():
    """Only quiver's responses make these attributes: a Response requests
    makes holds its own, and one with none still has none."""
    r = requests.Response()
    assert r.history == [] and type(r.cookies) is RequestsCookieJar
    assert r.elapsed == datetime.timedelta(0) and r.request is None
    bare = requests.Response.__new__(requests.Response)
    for name in LAZY + tuple(CONSTANT) + ("timing", "http_version", "attempts"):
        with pytest.raises(AttributeError, match=f"'Response' object has no attribute '{name}'"):
            getattr(bare, name)
        assert not hasattr(requests.Response, name)


@pytest.mark.parametrize("what", ["request", "headers"])
def test_a_collection_while_one_is_made_may_read_another(get, nginx, monkeypatch, what):
    """The cyclic GC may run while an attribute (or the headers' store) is
    made, which allocates, and a GC callback or finalizer may read another
    response's: no lock may be held across the making (a thread-wide one
    deadlocked)."""
    r1, r2 = get(nginx + "/small"), get(nginx + "/small")
    read: list = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start" and not read:
            read.append(r2.cookies)
            read.append(r2.headers["Content-Length"])

    def collecting(make):
        def run(*args: object) -> object:
            gc.collect()  # as an allocation of the making may start one
            return make(*args)
        return run

    if what == "request":
        monkeypatch.setattr(_engine, "prepared_request", collecting(_engine.prepared_request))
        first = lambda: r1.request  # noqa: E731
    else:
        monkeypatch.setattr(_engine.Headers, "_make", staticmethod(
            collecting(_engine.Headers._make)))
        first = lambda: r1.headers["Content-Length"]  # noqa: E731
    gc.callbacks.append(on_gc)
    try:
        t = threading.Thread(target=lambda: read.append(first()), daemon=True)
        t.start()
        t.join(10)
    finally:
        gc.callbacks.remove(on_gc)
    assert not t.is_alive(), "deadlocked"
    assert read == [r2.cookies, "100", first()]


def test_each_response_has_its_own_strings_and_bytes(get, httpbin):
    """One thread's responses one after another, each unlike the last in
    reason, URL, Content-Type or body size (a small body is copied with the
    headers, a larger one is not), headers that do not fit the thread's
    buffer, and then again: each reads as requests' own (the str made for
    the last response's reason, URL and encoding is reused only when they
    are the same)."""
    paths = ["/status/404", "/get", "/status/418",
             "/response-headers?Content-Type=text/plain%3B+charset%3Dutf-16",
             "/response-headers?Content-Type=text/html",
             "/anything/" + "a" * 1100, "/anything/" + "a" * 1100 + "?b=1",
             "/bytes/2048?seed=1", "/bytes/2049?seed=1", "/bytes/0", "/get", "/get"]
    expected = [requests_get(httpbin + p) for p in paths]
    for _ in range(2):
        _engine.scratch().grow(64)  # the headers of the first do not fit
        for p, want in zip(paths, expected):
            r = get(httpbin + p, headers={"User-Agent": "x"})
            assert (r.status_code, r.reason, r.url, r.encoding) == \
                (want.status_code, want.reason, want.url, want.encoding), p
            if not p.startswith(("/get", "/anything")):  # those echo the request
                assert r.content == want.content, p
            assert r.headers.get("Content-Type") == want.headers.get("Content-Type"), p


def test_http2_reasons_follow_the_status(nginx_tls):
    """HTTP/2 has no reason phrase: each response's is its status code's,
    whatever the responses before it had."""
    url, ca = nginx_tls
    with quiver.Session(executor="loop", verify=ca) as s:
        for path, status, reason in [("/small", 200, "OK"), ("/nope", 404, "Not Found"),
                                     ("/small", 200, "OK"), ("/small", 200, "OK")]:
            r = s.get(url + path).result(timeout=30)
            assert (r.http_version, r.status_code, r.reason) == (20, status, reason)
