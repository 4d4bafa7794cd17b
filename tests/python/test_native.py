"""quiver.Session, the Python-native layer: what requests-futures lacks."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
import requests

import quiver


def test_loop_executor_http2(nginx_tls):
    url, ca = nginx_tls
    with quiver.Session(executor="loop", max_workers=32, verify=ca) as s:
        fs = [s.get(url + "/small") for _ in range(50)]
        rs = [f.result(timeout=30) for f in fs]
        assert {r.http_version for r in rs} == {20}
        assert all(type(r) is requests.Response and r.content == b"q" * 100 for r in rs)
        assert s.stats()["connections_opened"] <= 2
        assert rs[0].timing["total_ms"] > 0


@pytest.mark.parametrize("executor", ["threads", "loop", "processes"])
def test_defaults_and_echo(httpbin, executor):
    with quiver.Session(executor, headers={"X-S": "1"}, params={"p": "s"},
                        auth=("u", "pw")) as s:
        r = s.get(httpbin + "/basic-auth/u/pw").result(timeout=30)
        assert r.status_code == 200
        r = s.post(httpbin + "/post", json={"a": 1}, params={"q": "r"}).result(timeout=30)
        body = r.json()
        assert body["json"] == {"a": 1} and body["args"] == {"p": "s", "q": "r"}
        assert body["headers"]["X-S"] == "1"


def test_retries_with_retry_after(faults):
    key = uuid.uuid4().hex
    with quiver.Session(retries={"max_retries": 3, "backoff_ms": 10}) as s:
        r = s.get(f"{faults}/flaky?key={key}&fail=2&after=0").result(timeout=30)
        assert (r.status_code, r.text, r.attempts) == (200, "ok", 3)
        f = s.get(f"{faults}/flaky?key={key}x&fail=5", retries=1)
        assert f.result(timeout=30).status_code == 503


def test_rate_limit(nginx):
    host = nginx.split("//")[1]
    with quiver.Session(executor="loop") as s:
        s.set_host_limits(host, rate=20, burst=1)
        t0 = time.monotonic()
        rs = [f.result(timeout=30) for f in [s.get(nginx + "/small") for _ in range(6)]]
        assert all(r.ok for r in rs)
        assert time.monotonic() - t0 >= 0.2  # 5 waits of 50 ms after the first


def test_errors_and_cancel(httpbin):
    with quiver.Session(timeout=(5, 0.2)) as s:
        with pytest.raises(requests.ReadTimeout):
            s.get(httpbin + "/delay/3").result(timeout=30)
        with pytest.raises(requests.ConnectionError):
            s.get("http://127.0.0.1:1/").result(timeout=30)
        f = s.get(httpbin + "/delay/10", timeout=30)
        time.sleep(0.2)
        assert f.cancel()
        deadline = time.monotonic() + 5
        while s.stats()["cancelled"] != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.stats()["cancelled"] == 1 and s.stats()["in_flight"] == 0


def test_same_url_with_other_arguments(httpbin):
    """A request with only scalar arguments reuses the C options made for
    the same ones; other arguments for the same URL get their own."""
    url = httpbin + "/redirect/1"
    with quiver.Session() as s:
        for _ in range(2):
            assert len(s.get(url).result(timeout=30).history) == 1
            r = s.get(url, allow_redirects=False).result(timeout=30)
            assert (r.status_code, r.history) == (302, [])
            assert s.get(url, headers={"X": "1"}).result(timeout=30).url == httpbin + "/get"
            # (a read timeout of 1 s, not less: httpbin answered /delay/0
            # in over 200 ms on a busy machine)
            with pytest.raises(requests.ReadTimeout):
                s.get(httpbin + "/delay/3", timeout=(5, 1)).result(timeout=30)
            assert s.get(httpbin + "/delay/0", timeout=(5, 1)).result(timeout=30).ok
            assert s.head(url).result(timeout=30).status_code == 302


def test_backpressure_no_block(httpbin):
    with quiver.Session(max_workers=1, max_queued=1, no_block=True) as s:
        fs = [s.get(httpbin + "/delay/0.5")]
        time.sleep(0.1)
        fs.append(s.get(httpbin + "/get"))
        with pytest.raises(quiver.QuiverError) as e:
            s.get(httpbin + "/get")
        assert e.value.qv_name == "QV_EAGAIN"
        assert all(f.result(timeout=30).ok for f in fs)


@pytest.mark.parametrize("executor", ["threads", "loop", "processes"])
def test_stream(nginx, executor):
    with quiver.Session(executor) as s:
        r = s.get(nginx + "/64k", stream=True).result(timeout=30)
        assert r._content is False and r.headers["content-length"] == "65536"
        body = b"".join(r.iter_content(4096))
        assert len(body) == 65536 and body == s.get(nginx + "/64k").result(timeout=30).content


def test_library_lookup():
    """QUIVER_LIB, when set, is the library or an error naming it; unset,
    an installed libquiver.so.0 or else the repository's build/."""
    import os
    import subprocess
    import sys
    code = "import quiver; print(quiver.LIB_PATH)"
    env = dict(os.environ, QUIVER_LIB="/nonexistent/libquiver.so.0")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode != 0 and "QUIVER_LIB" in p.stderr and "/nonexistent" in p.stderr
    env.pop("QUIVER_LIB")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60, check=True)
    found = p.stdout.strip()
    assert found == "libquiver.so.0" or found.endswith("/build/libquiver.so.0"), found


def test_binding_choice(tmp_path):
    """The compiled binding is used when it was built next to the library
    QUIVER_LIB names (QUIVER_BINDING=api: or an ImportError), ABI mode
    otherwise or when asked (QUIVER_BINDING=abi); both send requests."""
    import os
    import shutil
    import subprocess
    import sys
    lib = os.environ["QUIVER_LIB"]
    code = "import quiver; print(quiver.BINDING)"

    def binding(lib_path: str, mode: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, QUIVER_LIB=lib_path, QUIVER_BINDING=mode)
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=60)

    assert binding(lib, "abi").stdout.strip() == "abi"
    assert binding(lib, "api").stdout.strip() == "api", binding(lib, "api").stderr
    assert binding(lib, "").stdout.strip() == "api"
    alone = tmp_path / "libquiver.so.0"  # no build directory around it
    shutil.copy(os.path.realpath(lib), alone)
    assert binding(str(alone), "").stdout.strip() == "abi"
    p = binding(str(alone), "api")
    assert p.returncode != 0 and "QUIVER_BINDING=api" in p.stderr
    assert quiver.BINDING == (os.environ.get("QUIVER_BINDING") or "api")


def _peak_in_flight(s, futures) -> int:
    """The most transfers s had in flight at once while futures ran (its
    stats, sampled every 5 ms)."""
    peak = 0
    while not all(f.done() for f in futures):
        peak = max(peak, s.stats()["in_flight"])
        time.sleep(0.005)
    return peak


@pytest.mark.parametrize("how", ["per_host", "set_host_limits", "none"])
def test_per_host_concurrency(httpbin, how):
    """per_host={"max_concurrent": n} (or set_host_limits(host,
    max_concurrent=n)) bounds the transfers to one host at once; without it
    the same four slow requests run together."""
    host = httpbin.split("//")[1]
    with quiver.Session("loop", per_host={"max_concurrent": 1} if how == "per_host" else None) as s:
        if how == "set_host_limits":
            s.set_host_limits(host, max_concurrent=1)
        fs = [s.get(httpbin + "/delay/0.3") for _ in range(4)]
        peak = _peak_in_flight(s, fs)
        assert all(f.result(timeout=30).ok for f in fs)
    assert peak == 1 if how != "none" else peak >= 2, peak


def test_backpressure_blocks(httpbin):
    """max_queued without no_block: a submit beyond it waits until a queued
    request starts (here: until the one running, 1 s long, ends)."""
    with quiver.Session(max_workers=1, max_queued=1) as s:
        first = s.get(httpbin + "/delay/1")
        deadline = time.monotonic() + 10
        while s.stats()["in_flight"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        fs = [first, s.get(httpbin + "/get")]  # queued: room for one
        t0 = time.monotonic()
        fs.append(s.get(httpbin + "/get"))
        assert time.monotonic() - t0 >= 0.5
        assert all(f.result(timeout=30).ok for f in fs)


def test_retry_after_sets_the_wait(faults):
    """A 503 with Retry-After: 1 is retried after a second, though the
    backoff is 10 ms."""
    with quiver.Session(retries={"max_retries": 2, "backoff_ms": 10}) as s:
        t0 = time.monotonic()
        r = s.get(f"{faults}/flaky?key={uuid.uuid4().hex}&fail=1&after=1").result(timeout=30)
        assert (r.status_code, r.attempts) == (200, 2)
        assert time.monotonic() - t0 >= 0.95


def test_timing_breakdown(nginx_tls):
    """r.timing: qv_timing's phases in ms from the transfer's start, each at
    or after the one before; a reused connection has no connect or TLS."""
    url, ca = nginx_tls
    with quiver.Session("loop", verify=ca) as s:
        t = s.get(url + "/small").result(timeout=30).timing
        assert set(t) == {"queued_ms", "dns_ms", "connect_ms", "tls_ms", "first_byte_ms",
                          "total_ms", "hooks_ms"}
        assert 0 < t["connect_ms"] <= t["tls_ms"] <= t["first_byte_ms"] <= t["total_ms"], t
        again = s.get(url + "/small").result(timeout=30).timing
        assert again["connect_ms"] == again["tls_ms"] == 0 and again["total_ms"] > 0, again


def test_loop_thousands_in_flight(nginx):
    """The loop executor takes thousands of requests at once (1,000
    transfers on one I/O thread) and completes each right."""
    with quiver.Session("loop", max_workers=1000) as s:
        fs = [s.get(nginx + "/small") for _ in range(3000)]
        peak = _peak_in_flight(s, fs)
        assert all(f.result(timeout=60).content == b"q" * 100 for f in fs)
        assert s.stats()["completed"] == 3000
    assert peak >= 500, peak


# Out of descriptors: one Session first (libcurl's set-up, the imports), then
# every descriptor taken, then a Session whose executor cannot be made.
OUT_OF_DESCRIPTORS = r"""
import os, resource, sys
import quiver
quiver.Session(executor=sys.argv[1]).close()
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
try:
    quiver.Session(executor=sys.argv[1])
except MemoryError as e:
    print(e)
else:
    print("no error")
"""


@pytest.mark.parametrize("kind", ["threads", "loop", "processes"])
def test_an_executor_that_cannot_be_made_says_what_ran_out(kind):
    """qv_executor_new's QV_ENOMEM raises MemoryError with qv_last_error's
    text, which names what could not be made and why, not only "out of
    memory"."""
    p = subprocess.run([sys.executable, "-c", OUT_OF_DESCRIPTORS, kind], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    msg = p.stdout.strip()
    assert msg.startswith("qv_executor_new: cannot make "), msg
    assert "Too many open files" in msg or "out of descriptors" in msg, msg
