"""The drop-in's futures: hooks and background callbacks in the background,
user executors, custom adapters, real cancellation, and the standard ways of
waiting on futures."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import pickle
import threading
import time

import pytest
import requests
from requests.adapters import BaseAdapter

from conftest import debian
from requests_futures.sessions import FuturesSession


@pytest.mark.parametrize("cls", [FuturesSession, debian.FuturesSession])
def test_hooks_and_background_callback_run_in_background(httpbin, cls):
    seen = []

    def session_hook(r, *args, **kwargs):
        seen.append(("session", threading.current_thread() is threading.main_thread()))
        r.hooked = True

    def bg(sess, r):
        r.data = r.json()["args"]

    with cls() as s:
        s.hooks["response"].append(session_hook)
        r = s.get(httpbin + "/get?x=1", background_callback=bg).result(timeout=30)
        assert r.hooked and r.data == {"x": "1"}
        assert seen == [("session", False)]
        # a request's hooks replace the session's, as in requests
        r = s.get(httpbin + "/get", hooks={"response": lambda r, **kw: setattr(r, "mine", 1)}) \
            .result(timeout=30)
        assert r.mine == 1 and len(seen) == 1


@pytest.mark.parametrize("cls", [FuturesSession, debian.FuturesSession])
def test_exception_in_hook_or_callback_surfaces_from_result(httpbin, cls):
    def bad(*args, **kwargs):
        raise ValueError("from the hook")

    with cls() as s:
        with pytest.raises(ValueError, match="from the hook"):
            s.get(httpbin + "/get", hooks={"response": bad}).result(timeout=30)
        with pytest.raises(ValueError, match="from the hook"):
            s.get(httpbin + "/get", background_callback=bad).result(timeout=30)


def test_user_thread_pool_runs_the_requests(httpbin):
    names = []
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="mine") as ex:
        s = FuturesSession(executor=ex)
        s.hooks["response"].append(lambda r, **kw: names.append(threading.current_thread().name))
        r = s.get(httpbin + "/get").result(timeout=30)
        s.close()
    assert r.status_code == 200 and names[0].startswith("mine")


def test_user_process_pool(httpbin):
    with concurrent.futures.ProcessPoolExecutor(1) as ex:
        s = FuturesSession(executor=ex)
        r = s.get(httpbin + "/get?p=1").result(timeout=60)
        assert r.json()["args"] == {"p": "1"}
        with pytest.raises(RuntimeError, match="Cannot pickle"):
            s.get(httpbin + "/get", background_callback=functools.partial(print, threading.Lock()))
        s.close()
        # a picklable session= goes to the worker process with its state
        inner = requests.Session()
        inner.headers["X-From"] = "inner"
        s = FuturesSession(executor=ex, session=inner)
        r = s.get(httpbin + "/headers").result(timeout=60)
        assert r.json()["headers"]["X-From"] == "inner"
        s.close()
    assert pickle.loads(pickle.dumps(FuturesSession())).headers["User-Agent"].startswith(
        "python-requests")


class Canned(BaseAdapter):
    def send(self, request, **kwargs):
        r = requests.Response()
        r.status_code, r._content, r.url, r.request = 299, b"canned", request.url, request
        return r

    def close(self):
        pass


def test_custom_adapter_is_honoured(httpbin):
    with FuturesSession() as s:
        s.mount("http://", Canned())
        r = s.get(httpbin + "/get").result(timeout=30)
    assert (r.status_code, r.content) == (299, b"canned")


def test_adapter_mounted_or_changed_between_alike_requests(httpbin, faults):
    """The same request, before and after an adapter's retries are changed
    or a custom adapter is mounted, goes where requests would send it."""
    import uuid
    from urllib3.util.retry import Retry
    with FuturesSession() as s:
        url = f"{faults}/flaky?key={uuid.uuid4().hex}&fail=3"
        assert s.get(url).result(timeout=30).status_code == 503  # the 1st failure
        s.get_adapter(url).max_retries = Retry(3, status_forcelist=[503], backoff_factor=0)
        assert s.get(url).result(timeout=30).status_code == 200  # after the 2nd and 3rd
        s.mount("http://", Canned())
        assert s.get(url).result(timeout=30).status_code == 299
        s.mount("http://", requests.adapters.HTTPAdapter())
        assert s.get(url).result(timeout=30).status_code == 200


def test_attributes_code_looks_at():
    s = FuturesSession(max_workers=20)
    assert s.executor._max_workers == 20
    assert s.get_adapter("http://x/")._pool_maxsize == 20
    s.close()
    s = FuturesSession(adapter_kwargs={"pool_connections": 3})
    assert s.get_adapter("https://x/")._pool_connections == 3
    s.close()
    with pytest.raises(RuntimeError):
        s.get("http://127.0.0.1:1/")


def test_cancel_stops_an_in_flight_request(ours, httpbin):
    f = ours.get(httpbin + "/delay/10")
    stats = ours._get_bridge().engine.stats
    deadline = time.monotonic() + 10
    while stats()["in_flight"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stats()["in_flight"] == 1  # on the wire, not queued
    assert f.running() and not f.done()
    t0 = time.monotonic()
    assert f.cancel() and f.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        f.result(timeout=1)
    while stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stats()["in_flight"] == 0 and stats()["cancelled"] == 1
    assert time.monotonic() - t0 < 2
    assert not ours.get(httpbin + "/get").result(timeout=30).history  # still works
    done = ours.get(httpbin + "/get")
    done.result(timeout=30)
    assert not done.cancel()


def test_wait_and_as_completed(ours, httpbin):
    fs = [ours.get(httpbin + f"/delay/{d}") for d in (0.6, 0.3, 0)]
    order = [fs.index(f) for f in concurrent.futures.as_completed(fs, timeout=30)]
    assert order == [2, 1, 0]
    done, pending = concurrent.futures.wait(fs, timeout=30)
    assert len(done) == 3 and not pending


def test_asyncio_wrap_future(ours, httpbin):
    async def main():
        rs = await asyncio.gather(*(asyncio.wrap_future(ours.get(httpbin + f"/get?i={i}"))
                                    for i in range(5)))
        return [r.json()["args"]["i"] for r in rs]

    assert asyncio.run(main()) == [str(i) for i in range(5)]


def test_many_in_flight(nginx):
    with FuturesSession(max_workers=16) as s:
        fs = [s.get(nginx + "/small") for _ in range(500)]
        assert all(f.result(timeout=60).content == b"q" * 100 for f in fs)


def test_max_workers_bounds_the_transfers(httpbin):
    """FuturesSession(max_workers=n): at most n requests in flight at once,
    as requests-futures' pool of n threads runs at most n."""
    with FuturesSession(max_workers=2) as s:
        fs = [s.get(httpbin + f"/delay/0.3?i={i}") for i in range(6)]
        stats = s._get_bridge().engine.stats
        peak = 0
        while not all(f.done() for f in fs):
            peak = max(peak, stats()["in_flight"])
            time.sleep(0.005)
        assert all(f.result(timeout=30).ok for f in fs)
    assert peak == 2, peak


def test_quickstart_example(httpbin):
    """examples/python_quickstart.py (scripts/demo runs it) on the drop-in."""
    import os
    import subprocess
    import sys
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    out = subprocess.run([sys.executable, os.path.join(root, "examples", "python_quickstart.py"),
                          httpbin], capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == "response one status: 200" and lines[2] == "response two status: 200"
    assert '"foo": "bar"' in lines[3] or "'foo': 'bar'" in lines[3] or '"foo":"bar"' in lines[3]


def test_readme_python_example(httpbin):
    """The README's Python example, as it is there (its URL made the local
    httpbin's), on the drop-in."""
    import os
    import re
    import subprocess
    import sys
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) == 1, "the README has one Python example"
    code = blocks[0].replace("http://127.0.0.1:8080", httpbin)
    assert "from requests_futures.sessions import FuturesSession" in code and httpbin in code
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.splitlines() == [f"Request {i} Status: 200" for i in (1, 2, 3)]


def _wait_completed(engine, n, seconds=10):
    deadline = time.monotonic() + seconds
    while engine.stats()["completed"] < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.stats()["completed"] >= n


def test_futures_nobody_asks_for_still_update_the_jar(ours, httpbin):
    """A future is finished when its result is asked for, or at a later
    submit: its cookies reach session.cookies even if no one asks."""
    ours.get(httpbin + "/cookies/set?unasked=1")  # never result()
    _wait_completed(ours._get_bridge().engine, 1)
    r = ours.get(httpbin + "/cookies").result(timeout=30)
    assert ours.cookies.get("unasked") == "1" and r.json()["cookies"] == {"unasked": "1"}


def test_done_wait_and_as_completed_on_finished_transfers(ours, httpbin):
    fs = [ours.get(httpbin + f"/get?i={i}") for i in range(3)]
    _wait_completed(ours._get_bridge().engine, 3)
    assert len(list(concurrent.futures.as_completed(fs, timeout=10))) == 3
    fs = [ours.get(httpbin + f"/get?j={i}") for i in range(3)]
    _wait_completed(ours._get_bridge().engine, 6)
    assert fs[0].done() and fs[0].result().json()["args"] == {"j": "0"}
    done, pending = concurrent.futures.wait(fs, timeout=10)
    assert len(done) == 3 and not pending
    seen = []
    f = ours.get(httpbin + "/get")
    f.add_done_callback(lambda fut: seen.append(fut.result().status_code))
    concurrent.futures.wait([f], timeout=30)
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [200]


def test_result_timeout_then_result(ours, httpbin):
    f = ours.get(httpbin + "/delay/1")
    with pytest.raises(concurrent.futures.TimeoutError):
        f.result(timeout=0.1)
    assert not f.done()
    assert f.result(timeout=30).status_code == 200


def test_close_waits_and_results_stay(httpbin):
    s = FuturesSession()
    fs = [s.get(httpbin + f"/delay/0.2?i={i}") for i in range(3)]
    s.close()  # waits for what is in flight, like requests-futures' executor.shutdown()
    assert all(f.done() for f in fs)
    assert [f.result().json()["args"]["i"] for f in fs] == ["0", "1", "2"]
    with pytest.raises(RuntimeError):
        s.get(httpbin + "/get")


def test_one_session_many_threads(nginx, httpbin):
    """Submitting, waiting and cancelling from several threads at once on one
    session (bounded: 4 threads x 150 requests)."""
    errors = []
    with FuturesSession(max_workers=8) as s:
        def worker(k):
            try:
                fs = [s.get(nginx + f"/small?t={k}&i={i}") for i in range(150)]
                slow = s.get(httpbin + "/delay/5")
                slow.cancel()
                for i, f in enumerate(fs):
                    if i % 3 == 0:
                        concurrent.futures.wait([f], timeout=30)
                    assert f.result(timeout=30).content == b"q" * 100
                assert slow.cancelled()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_many_waiters_on_one_future(ours, httpbin):
    """Threads waiting on one in-flight future in every way at once (its
    Condition and waiter list are made on first use) all see the one
    response."""
    f = ours.get(httpbin + "/delay/0.5")
    got = []

    def result():
        got.append(f.result(timeout=30))

    def exception():
        assert f.exception(timeout=30) is None
        got.append(f.result())

    def wait():
        done, _ = concurrent.futures.wait([f], timeout=30)
        got.append(done.pop().result())

    def as_completed():
        got.append(next(concurrent.futures.as_completed([f], timeout=30)).result())

    threads = [threading.Thread(target=fn) for fn in (result, exception, wait, as_completed) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert len(got) == 12 and all(r is got[0] for r in got) and got[0].status_code == 200
