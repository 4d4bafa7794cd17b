"""The drop-in side by side with Debian's requests-futures: the same
requests through both, the same answers (status, headers, body, cookies,
history, exception types)."""

from __future__ import annotations

import http.cookiejar
import socket

import requests
import pytest
from requests.auth import AuthBase, HTTPBasicAuth

from conftest import debian
from requests_futures.sessions import FuturesSession

# Headers whose values differ between two requests whatever the client.
VARYING = {"date", "content-length"}


def both(call, configure=None):
    """Runs call(session) on a fresh session of each implementation
    (configure(session) first) and returns (ours, theirs): each a Response
    or the exception the future raised."""
    out = []
    for cls in (FuturesSession, debian.FuturesSession):
        s = cls()
        try:
            if configure:
                configure(s)
            try:
                out.append(call(s).result(timeout=30))
            except Exception as e:  # noqa: BLE001 - compared with the other's
                out.append(e)
        finally:
            s.close()
    return out


def assert_same(a, b, body=True):
    if isinstance(b, Exception):
        assert type(a) is type(b), (a, b)
        return
    assert isinstance(a, requests.Response)
    assert (a.status_code, a.reason, a.url) == (b.status_code, b.reason, b.url)
    assert {k.lower() for k in a.headers} == {k.lower() for k in b.headers}
    for k in b.headers:
        if k.lower() not in VARYING:
            assert a.headers[k] == b.headers[k], k
    if body:
        assert a.content == b.content
        assert a.text == b.text
        assert a.encoding == b.encoding
    assert dict(a.cookies) == dict(b.cookies)
    assert [(h.status_code, h.url, dict(h.cookies)) for h in a.history] == \
        [(h.status_code, h.url, dict(h.cookies)) for h in b.history]
    assert a.request.method == b.request.method and a.request.url == b.request.url


def test_is_a_session_and_a_future(ours, httpbin):
    import concurrent.futures
    assert isinstance(ours, requests.Session)
    f = ours.get(httpbin + "/get")
    assert isinstance(f, concurrent.futures.Future)
    r = f.result(timeout=30)
    assert type(r) is requests.Response and r.ok and r.json()["url"] == httpbin + "/get"
    assert ours.executor._max_workers == 8


def test_get_with_params_and_headers(httpbin):
    call = lambda s: s.get(httpbin + "/get", params={"q": "two words", "n": [1, 2]},  # noqa: E731
                           headers={"X-Test": "yes", "Accept": None})
    assert_same(*both(call))


def test_session_headers_params_and_auth(httpbin):
    def configure(s):
        s.headers["X-Session"] = "1"
        s.headers.pop("User-Agent")
        s.params = {"from": "session"}
        s.auth = ("user", "pass")
    for path in ("/get", "/basic-auth/user/pass", "/headers"):
        assert_same(*both(lambda s: s.get(httpbin + path, params={"x": "y"}), configure))


def test_session_state_changes_between_requests(ours, httpbin):
    r = ours.get(httpbin + "/headers").result(timeout=30)
    assert "X-Late" not in r.json()["headers"]
    ours.headers["X-Late"] = "now"
    ours.auth = HTTPBasicAuth("a", "b")
    r = ours.get(httpbin + "/basic-auth/a/b").result(timeout=30)
    assert r.status_code == 200
    assert ours.get(httpbin + "/headers").result(timeout=30).json()["headers"]["X-Late"] == "now"
    del ours.headers["X-Late"]
    assert "X-Late" not in ours.get(httpbin + "/headers").result(timeout=30).json()["headers"]


class TokenAuth(AuthBase):
    def __call__(self, r):
        r.headers["Authorization"] = "Bearer t0k3n"
        return r


def test_auth_callable_and_digest(httpbin):
    assert_same(*both(lambda s: s.get(httpbin + "/bearer", auth=TokenAuth())))
    digest = requests.auth.HTTPDigestAuth("u", "p")
    a, b = both(lambda s: s.get(httpbin + "/digest-auth/auth/u/p", auth=digest))
    assert a.status_code == b.status_code == 200 and a.json() == b.json()


def test_wrong_basic_auth(httpbin):
    assert_same(*both(lambda s: s.get(httpbin + "/basic-auth/user/pass", auth=("user", "no"))))


def test_cookies_from_responses_and_session(httpbin):
    def steps(s):
        r1 = s.get(httpbin + "/cookies/set?a=1&b=2").result(timeout=30)
        s.cookies.set("c", "3")
        del s.cookies["a"]
        r2 = s.get(httpbin + "/cookies").result(timeout=30)
        return dict(s.cookies), r1.json(), r2.json(), dict(r1.history[0].cookies)

    results = []
    for cls in (FuturesSession, debian.FuturesSession):
        with cls() as s:
            results.append(steps(s))
    assert results[0] == results[1]
    assert results[0][2] == {"cookies": {"b": "2", "c": "3"}}


def test_redirects_and_history(httpbin):
    assert_same(*both(lambda s: s.get(httpbin + "/redirect/3")))
    assert_same(*both(lambda s: s.get(httpbin + "/redirect/3", allow_redirects=False)))
    assert_same(*both(lambda s: s.head(httpbin + "/redirect/1")), body=False)
    assert_same(*both(lambda s: s.post(httpbin + "/redirect-to?url=/get&status_code=303")))


def test_too_many_redirects(httpbin):
    def limit(n):
        def configure(s):
            s.max_redirects = n
        return configure
    a, b = both(lambda s: s.get(httpbin + "/redirect/3"), limit(2))
    assert type(a) is type(b) is requests.TooManyRedirects
    assert_same(*both(lambda s: s.get(httpbin + "/redirect/2"), limit(2)))
    a, b = both(lambda s: s.get(httpbin + "/redirect/1"), limit(0))
    assert type(a) is type(b) is requests.TooManyRedirects


@pytest.mark.parametrize("kwargs", [
    {"json": {"a": [1, 2], "b": None}},
    {"data": {"f": "v", "g": ["1", "2"]}},
    {"data": b"\x00raw bytes"},
    {"data": "text body"},
    {"data": [("k", "v"), ("k", "w")]},
    {},
])
def test_bodies(httpbin, kwargs):
    for method in ("post", "put", "patch"):
        assert_same(*both(lambda s: getattr(s, method)(httpbin + "/" + method, **kwargs)))


def test_other_methods_and_statuses(httpbin):
    assert_same(*both(lambda s: s.delete(httpbin + "/delete")))
    assert_same(*both(lambda s: s.options(httpbin + "/get")), body=False)
    for code in (204, 404, 418, 500):
        assert_same(*both(lambda s: s.get(httpbin + f"/status/{code}")))
    assert_same(*both(lambda s: s.get(httpbin + "/encoding/utf8")))
    assert_same(*both(lambda s: s.get(httpbin + "/gzip")))
    assert_same(*both(lambda s: s.get(httpbin + "/response-headers?X-A=1&X-A=2")))


@pytest.fixture
def blackhole():
    """A loopback port where connecting hangs (test_errors.c's): a listener
    with a backlog of 0 that never accepts, its queue filled by our own
    connects, so Linux drops further SYNs."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(listener.getsockname())
        fillers.append(c)
    yield listener.getsockname()[1]
    for sock in fillers + [listener]:
        sock.close()


def test_errors_are_requests_exceptions(httpbin, faults, tls, blackhole, empty_reply):
    def raise_for_status(r, **kwargs):
        r.raise_for_status()

    cases = [
        (requests.ConnectionError, lambda s: s.get("http://127.0.0.1:1/")),
        (requests.ConnectTimeout,
         lambda s: s.get(f"http://127.0.0.1:{blackhole}/", timeout=(0.5, 5))),
        (requests.ConnectTimeout, lambda s: s.get(f"http://127.0.0.1:{blackhole}/", timeout=0.5)),
        (requests.ReadTimeout, lambda s: s.get(httpbin + "/delay/3", timeout=0.3)),
        (requests.ReadTimeout, lambda s: s.get(httpbin + "/delay/3", timeout=(5, 0.3))),
        (requests.ReadTimeout, lambda s: s.get(faults + "/stall-status", timeout=(5, 0.3))),
        (requests.exceptions.SSLError, lambda s: s.get(tls[0] + "/hello")),
        (requests.exceptions.ProxyError,
         lambda s: s.get(httpbin + "/get", proxies={"http": "http://127.0.0.1:1"})),
        (requests.TooManyRedirects, lambda s: s.get(faults + "/loop")),
        (requests.exceptions.InvalidURL, lambda s: s.get("http:///nohost")),
        (requests.exceptions.MissingSchema, lambda s: s.get("nothing")),
        (requests.exceptions.InvalidSchema, lambda s: s.get("ftp://127.0.0.1/")),
        (requests.exceptions.InvalidHeader,
         lambda s: s.get(httpbin + "/get", headers={"X-Bad": "a\r\nb"})),
        (requests.ConnectionError, lambda s: s.get(faults + "/reset")),
        (requests.exceptions.ChunkedEncodingError, lambda s: s.get(faults + "/bad-chunked")),
        (requests.ConnectionError, lambda s: s.get(faults + "/huge-headers")),
        # a reply that is empty or not HTTP, before any status line
        (requests.ConnectionError, lambda s: s.get(empty_reply)),
        (requests.ConnectionError, lambda s: s.get(faults + "/garbage")),
        (requests.ConnectionError, lambda s: s.get(faults + "/garbage?style=http")),
        # the body stalls: requests raises its read timeout as ConnectionError
        # (1.5 s: the headers must come before it, on a busy machine too)
        (requests.ConnectionError, lambda s: s.get(faults + "/stall-body", timeout=(5, 1.5))),
        (requests.HTTPError,
         lambda s: s.get(httpbin + "/status/404", hooks={"response": raise_for_status})),
    ]
    for expected, call in cases:
        a, b = both(call)
        assert type(a) is type(b) is expected, (a, b)


@pytest.fixture
def empty_reply():
    """A loopback server that reads a request and closes the connection
    without an answer."""
    import socket
    import threading
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            conn.recv(65536)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    listener.close()


def test_exceptions_that_differ(faults, httpbin):
    """The failures docs/python.md lists under "What differs", (ours,
    Debian's) for each."""
    # a redirect to another scheme: quiver's QV_EURL does not tell it from
    # a malformed Location, so the drop-in raises a class that is both of
    # requests' (InvalidSchema here, InvalidURL for a malformed one)
    a, b = both(lambda s: s.get(faults + "/to-ftp"))
    assert type(b) is requests.exceptions.InvalidSchema, b
    assert isinstance(a, requests.exceptions.InvalidSchema), a
    assert isinstance(a, requests.exceptions.InvalidURL), a
    for target in ("mailto%3Aa%40b", "http%3A%2F%2F%5B%3A%3A1"):  # mailto:a@b, http://[::1
        a, b = both(lambda s: s.get(f"{httpbin}/redirect-to?url={target}"))
        assert isinstance(b, ValueError) and isinstance(a, type(b)), (a, b)
    # a Location with a scheme and no host ("http:///path"): requests joins it
    # to the URL it came from as a path (httpbin's 404 here), libcurl takes
    # the path's first part for the host. Here that is 127.0.0.1 on a port
    # bound and never listened on (refused): a host name would be looked up
    # in DNS, off this machine.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        a, b = both(lambda s: s.get(f"{httpbin}/redirect-to?url=http%3A%2F%2F%2F127.0.0.1%3A{port}%2Fx"))
    assert type(a) is requests.exceptions.ConnectionError, a
    assert (b.status_code, b.url) == (404, f"{httpbin}/127.0.0.1:{port}/x"), b
    # a body shorter than its Content-Length: urllib3 1.26 returns it short
    # (requests on urllib3 2 raises ChunkedEncodingError, as the drop-in does)
    a, b = both(lambda s: s.get(faults + "/short?length=1000"))
    assert type(a) is requests.exceptions.ChunkedEncodingError, a
    assert (b.status_code, len(b.content)) == (200, 100), b


def test_tls_verify(tls):
    url, ca = tls
    assert_same(*both(lambda s: s.get(url + "/hello", verify=ca)))
    assert_same(*both(lambda s: s.get(url + "/hello", verify=False)))

    def configure(s):
        s.verify = ca
    assert_same(*both(lambda s: s.get(url + "/hello"), configure))


def test_proxies(httpbin, proxy):
    def configure(s):
        s.proxies = {"http": proxy}
    a, b = both(lambda s: s.get(httpbin + "/get"), configure)
    assert a.headers["Via"] == b.headers["Via"] == "quiver-test-proxy"
    a, b = both(lambda s: s.get(httpbin + "/get", proxies={"http": proxy}))
    assert a.headers["Via"] == b.headers["Via"]


def test_stream_iter_content(ours, httpbin):
    r = ours.get(httpbin + "/bytes/5000?seed=1", stream=True).result(timeout=30)
    chunks = list(r.iter_content(1000))
    assert [len(c) for c in chunks] == [1000] * 5
    s = requests.Session()
    assert b"".join(chunks) == s.get(httpbin + "/bytes/5000?seed=1").content
    s.close()
    lines = []
    for cls in (FuturesSession, debian.FuturesSession):
        with cls() as s2:
            r = s2.get(httpbin + "/stream/20", stream=True).result(timeout=30)
            lines.append([len(line) > 0 for line in r.iter_lines()])
    assert lines[0] == lines[1] and len(lines[0]) == 20


def test_stream_reads_at_the_readers_pace(ours, nginx):
    """stream=True goes through quiver's pull reader: the future completes
    with the headers, the body comes as it is read (a 64 KiB file here,
    read 1 KiB at a time), and closing early stops the transfer."""
    r = ours.get(nginx + "/64k", stream=True).result(timeout=30)
    assert r.headers["Content-Length"] == "65536" and r._content is False
    first = r.raw.read(1024)
    rest = b"".join(r.iter_content(1024))
    assert len(first) + len(rest) == 65536
    assert first + rest == requests.get(nginx + "/64k").content
    r2 = ours.get(nginx + "/64k", stream=True).result(timeout=30)
    assert r2.raw.read(0) == b""  # no room read: the body goes on
    assert len(r2.raw.read(100)) == 100
    r2.close()
    assert ours.get(nginx + "/small").result(timeout=30).content == b"q" * 100


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_stream_at_constant_memory(ours, faults):
    """stream=True reads at constant memory: 256 MiB of the fault server's
    1 GiB body, through iter_content and r.raw, while this process's RSS
    stays within 32 MiB of what it was when the headers came (a body held
    whole would add its size); closing stops the rest."""
    mib = 1024 * 1024
    r = ours.get(faults + "/huge", stream=True).result(timeout=30)
    assert r.headers["Content-Length"] == str(1024 * mib)
    base = peak = _rss_bytes()
    got = 0
    for chunk in r.iter_content(64 * 1024):
        got += len(chunk)
        peak = max(peak, _rss_bytes())
        if got >= 128 * mib:
            break
    while got < 256 * mib:
        block = r.raw.read(min(mib, 256 * mib - got))
        assert block, got
        got += len(block)
        peak = max(peak, _rss_bytes())
    r.close()
    assert got == 256 * mib and r._content is False
    assert peak - base < 32 * mib, (base, peak)


def test_client_certificate(mtls):
    url, d = mtls
    cert = (d + "/client.pem", d + "/client.key")
    a, b = both(lambda s: s.get(url + "/whoami", cert=cert, verify=d + "/ca.pem"))
    assert_same(a, b)
    assert "client" in a.text

    def configure(s):
        s.cert = cert
        s.verify = d + "/ca.pem"
    assert_same(*both(lambda s: s.get(url + "/whoami"), configure))
    a, b = both(lambda s: s.get(url + "/whoami", cert=d + "/nonexistent.pem", verify=False))
    assert type(a) is type(b) is OSError


def test_cookie_changes_many_times(ours, httpbin):
    """Each change of session.cookies by hand makes a fresh C jar; old ones
    are let go (bounded), and every request sends the jar as it is then."""
    for i in range(20):
        ours.cookies.set("n", str(i))
        assert ours.get(httpbin + "/cookies").result(timeout=30).json() == {"cookies": {"n": str(i)}}
    assert len(ours._get_bridge().retired) <= 8


def test_response_pickles_and_copies(ours, httpbin):
    import pickle
    r = ours.get(httpbin + "/response-headers?X-A=1&X-A=2").result(timeout=30)
    r2 = pickle.loads(pickle.dumps(r))
    assert dict(r2.headers) == dict(r.headers) and r2.headers["x-a"] == "1, 2"
    h = r.headers.copy()
    h["X-New"] = "1"
    assert "X-New" not in r.headers and h["content-type"] == r.headers["Content-Type"]
    assert r2.content == r.content and r2.status_code == 200


def test_session_argument_state_is_used(httpbin):
    """FuturesSession(session=s): s's headers, auth and jar, as in
    requests-futures (it calls s.request)."""
    def call(cls):
        inner = requests.Session()
        inner.headers["X-From"] = "inner"
        inner.auth = ("u", "p")
        with cls(session=inner) as s:
            r1 = s.get(httpbin + "/cookies/set?jar=inner").result(timeout=30)
            r2 = s.get(httpbin + "/basic-auth/u/p").result(timeout=30)
            r3 = s.get(httpbin + "/headers").result(timeout=30)
        return r1.json(), r2.status_code, r3.json()["headers"]["X-From"], dict(inner.cookies)

    assert call(FuturesSession) == call(debian.FuturesSession)


def test_environment_proxies(httpbin, proxy, monkeypatch):
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    a, b = both(lambda s: s.get(httpbin + "/get"))
    assert a.headers.get("Via") == b.headers.get("Via") == "quiver-test-proxy"

    def no_env(s):
        s.trust_env = False
    a, b = both(lambda s: s.get(httpbin + "/get"), no_env)
    assert "Via" not in a.headers and "Via" not in b.headers
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    a, b = both(lambda s: s.get(httpbin + "/get"))
    assert "Via" not in a.headers and "Via" not in b.headers


def test_verify_with_a_ca_directory_or_a_missing_file(tls):
    """verify= may name a directory of CA certificates (c_rehash'ed), as in
    requests; a path that does not exist fails with requests' OSError."""
    import os
    url, ca = tls
    capath = os.environ["QV_TLS_CAPATH"]  # exported by qv_start_tls
    assert_same(*both(lambda s: s.get(url + "/hello", verify=capath)))
    a, b = both(lambda s: s.get(url + "/hello", verify="/nonexistent/ca.pem"))
    assert type(a) is type(b) is OSError


def test_request_cookies(httpbin):
    """A request's own cookies go with the session's, and stay out of the
    session's jar."""
    def steps(s):
        s.get(httpbin + "/cookies/set?jar=1").result(timeout=30)
        r = s.get(httpbin + "/cookies", cookies={"mine": "2"}).result(timeout=30)
        r2 = s.get(httpbin + "/cookies").result(timeout=30)
        return r.json(), r2.json(), dict(s.cookies)

    results = []
    for cls in (FuturesSession, debian.FuturesSession):
        with cls() as s:
            results.append(steps(s))
    assert results[0] == results[1]
    assert results[0][0] == {"cookies": {"jar": "1", "mine": "2"}}


def test_request_cookies_that_shadow_or_have_no_value(httpbin):
    """A request's cookie named as one in the session's jar is sent alone
    (the request's value), and one whose value is None as a bare name."""
    def configure(s):
        s.cookies.set("s", "session")
    for cookies in ({"s": "request"}, {"x": None}, {"s": "request", "y": "1"}):
        a, b = both(lambda s: s.get(httpbin + "/headers", cookies=cookies), configure)
        assert a.json()["headers"].get("Cookie") == b.json()["headers"].get("Cookie"), cookies


def test_same_request_again_follows_the_session_and_environment(httpbin, proxy, monkeypatch):
    """A request made again with the same arguments reuses its preparation
    only while nothing it was prepared from changed: each change of the
    session or of the proxy variables between two alike requests is
    honoured, as requests honours it."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    url = httpbin + "/anything"
    hooked: list = []

    def steps(s):
        out = []

        def get(target=url):
            try:
                r = s.get(target).result(timeout=30)
                out.append((r.status_code, len(r.history), r.headers.get("Via"),
                            r.json() if target == url else None))
            except Exception as e:  # noqa: BLE001 - compared with the other's
                out.append(type(e))

        get()
        get()
        s.headers["X-Late"] = "1"
        get()
        s.headers["X-Late"] = "2"
        get()
        del s.headers["Accept"]
        get()
        s.params = {"p": "1"}
        get()
        s.params["p"] = "2"
        get()
        s.auth = ("u", "p")
        get()
        s.auth = HTTPBasicAuth("u", "q")
        get()
        s.auth.password = "r"
        get()
        s.auth = None
        s.hooks["response"].append(lambda r, *a, **k: hooked.append(r.url))
        get()
        s.proxies = {"http": proxy}
        get()
        s.proxies = {}
        get()
        monkeypatch.setenv("http_proxy", proxy)
        get()
        s.trust_env = False
        get()
        s.trust_env = True
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        get()
        monkeypatch.delenv("no_proxy")
        get()
        monkeypatch.delenv("http_proxy")
        get()
        s.hooks["response"].clear()
        get()
        for n in (30, 1, 0, 30):
            s.max_redirects = n
            get(httpbin + "/redirect/2")
        return out

    results = []
    for cls in (FuturesSession, debian.FuturesSession):
        hooked.clear()
        with cls() as s:
            results.append((steps(s), list(hooked)))
    assert results[0] == results[1]
    vias = [step[2] for step in results[0][0][:-4]]
    assert vias.count("quiver-test-proxy") == 3, vias
    assert len(results[0][1]) == 8  # the hook ran from its step to its removal


def test_same_request_again_checks_its_files(tls, tmp_path, monkeypatch):
    """verify= naming a CA bundle that is gone by the next alike request
    fails with requests' OSError, as requests checks it for each request."""
    import shutil
    url, ca = tls
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # they would beat s.verify
        monkeypatch.delenv(name, raising=False)
    mine = tmp_path / "ca.pem"
    shutil.copy(ca, mine)

    def steps(s):
        s.verify = str(mine)
        first = [s.get(url + "/hello").result(timeout=30).status_code for _ in range(2)]
        mine.unlink()
        try:
            s.get(url + "/hello").result(timeout=30)
        except Exception as e:  # noqa: BLE001 - compared with the other's
            first.append(type(e))
        shutil.copy(ca, mine)
        return first

    results = []
    for cls in (FuturesSession, debian.FuturesSession):
        with cls() as s:
            results.append(steps(s))
    assert results[0] == results[1] == [200, 200, OSError]


def test_netrc_unless_trust_env_is_off(httpbin, tmp_path, monkeypatch):
    """With no auth given, credentials come from netrc (NETRC names the
    file), as in requests; not with trust_env off, and never over a
    request's own auth."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login nu password np\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    url = httpbin + "/basic-auth/nu/np"
    a, b = both(lambda s: s.get(url))
    assert a.status_code == b.status_code == 200
    assert_same(a, b)

    def no_env(s):
        s.trust_env = False
    a, b = both(lambda s: s.get(url), no_env)
    assert a.status_code == b.status_code == 401
    a, b = both(lambda s: s.get(httpbin + "/basic-auth/x/y", auth=("x", "y")))
    assert a.status_code == b.status_code == 200


def test_ca_bundle_from_the_environment(tls, monkeypatch):
    """REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) is the CA bundle when verify
    is left True and trust_env is on, as in requests; with trust_env off it
    is not read."""
    url, ca = tls
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        monkeypatch.setenv(name, ca)
        assert_same(*both(lambda s: s.get(url + "/hello")))

        def no_env(s):
            s.trust_env = False
        a, b = both(lambda s: s.get(url + "/hello"), no_env)
        assert type(a) is type(b) is requests.exceptions.SSLError, (a, b)


def test_raw_and_connection(httpbin):
    """r.raw is None without stream=True (the body was read whole), and
    r.connection is the mounted adapter while response hooks run."""
    seen = []

    def hook(r, **kwargs):
        seen.append(r.connection)

    with FuturesSession() as s:
        r = s.get(httpbin + "/get", hooks={"response": hook}).result(timeout=30)
        assert r.raw is None and r.ok
        assert seen == [s.get_adapter(httpbin + "/get")]


def _upload_echo(r):
    """What httpbin saw of a multipart upload: its files, form fields and
    Content-Type without the boundary (each client draws its own)."""
    if isinstance(r, Exception):
        return type(r)
    seen = r.json()
    return (r.status_code, seen["files"], seen["form"],
            seen["headers"]["Content-Type"].split(";")[0])


@pytest.mark.parametrize("make_files", [
    # one file, as a file object
    lambda path: {"f": open(path, "rb")},
    # a (filename, data) and a (filename, data, content-type) tuple
    lambda path: {"a": ("a.txt", b"first"), "b": ("b.json", b'{"x": 1}', "application/json")},
    # several files under one name, as a list of pairs, with custom headers
    lambda path: [("many", ("1.txt", b"one", "text/plain", {"X-Part": "1"})),
                  ("many", ("2.bin", open(path, "rb"), "application/octet-stream"))],
    # a bare string and bytes value (no filename)
    lambda path: {"s": "text value", "b": b"bytes value"},
])
def test_files_upload(httpbin, tmp_path, make_files):
    """files= (multipart), with and without form fields in data=, is sent as
    requests sends it."""
    path = tmp_path / "upload.txt"
    path.write_bytes(b"file content\n" * 100)
    for data in (None, {"field": "v", "other": ["1", "2"]}):
        a, b = both(lambda s: s.post(httpbin + "/post", data=data, files=make_files(path)))
        assert _upload_echo(a) == _upload_echo(b)
        assert _upload_echo(a)[0] == 200 and _upload_echo(a)[3] == "multipart/form-data"
    a, b = both(lambda s: s.put(httpbin + "/put", files=make_files(path)))
    assert _upload_echo(a) == _upload_echo(b)


def _jar(cls, *cookies):
    """A cookie jar of class cls holding (name, value, domain) cookies."""
    jar = cls()
    for name, value, domain in cookies:
        jar.set_cookie(requests.cookies.create_cookie(name, value, domain=domain))
    return jar


@pytest.mark.parametrize("jar_cls", [requests.cookies.RequestsCookieJar,
                                     http.cookiejar.CookieJar])
def test_request_cookies_as_a_jar(httpbin, jar_cls):
    """cookies= given as a RequestsCookieJar or an http.cookiejar.CookieJar:
    sent with the session's (a cookie for another domain is not), kept out
    of the session's jar, and the cookies a response sets reach the
    session's jar for the next request, as in requests."""
    def steps(s):
        s.cookies.set("session", "s")
        jar = _jar(jar_cls, ("mine", "1", ""), ("local", "2", "127.0.0.1"),
                   ("elsewhere", "3", "example.com"))
        r = s.get(httpbin + "/cookies", cookies=jar).result(timeout=30)
        # a response that sets one, on a request with a jar
        r2 = s.get(httpbin + "/cookies/set?set=4", cookies=_jar(jar_cls, ("mine", "5", "")))
        r2 = r2.result(timeout=30)
        r3 = s.get(httpbin + "/cookies").result(timeout=30)
        empty = s.get(httpbin + "/cookies", cookies=jar_cls()).result(timeout=30)
        return (r.json(), r2.json(), dict(r2.history[0].cookies), r3.json(), empty.json(),
                sorted(dict(s.cookies).items()))

    results = []
    for cls in (FuturesSession, debian.FuturesSession):
        with cls() as s:
            results.append(steps(s))
    assert results[0] == results[1]
    assert results[0][0] == {"cookies": {"session": "s", "mine": "1", "local": "2"}}
    assert results[0][3] == {"cookies": {"session": "s", "set": "4"}}
