"""HTTPAdapter(max_retries=Retry(...)) on the drop-in, side by side with
Debian's requests-futures: the same attempts reach a server that counts
them (the fault server's /flaky-count), the same outcome (status, or the
exception requests raises: RetryError, ConnectionError, ReadTimeout...),
and the quiver path taken where quiver can retry as urllib3 would."""

from __future__ import annotations

import uuid
import urllib.request

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import quiver
from conftest import debian
from requests_futures.sessions import FuturesSession

RA = [413, 429, 503]  # urllib3 also retries these when they carry Retry-After


def count(faults: str, key: str) -> int:
    with urllib.request.urlopen(f"{faults}/flaky-count?key={key}", timeout=10) as r:
        return int(r.read())


def side_by_side(faults, make_retry, path, method="GET", timeout=10, quiver_path=True):
    """The same request on a fresh session of each, HTTPAdapter(max_retries=
    make_retry()) mounted for http:// and https://, each with its own key:
    [(status or exception type, attempts the server saw)] for (ours, theirs)."""
    out = []
    for cls in (FuturesSession, debian.FuturesSession):
        key = uuid.uuid4().hex
        with cls() as s:
            adapter = HTTPAdapter(max_retries=make_retry())
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            sep = "&" if "?" in path else "?"
            f = s.request(method, f"{faults}{path}{sep}key={key}", timeout=timeout)
            if cls is FuturesSession:
                assert isinstance(f, quiver.Future) is quiver_path
            try:
                outcome = f.result(timeout=60).status_code
            except requests.RequestException as e:
                outcome = type(e)
        out.append((outcome, count(faults, key)))
    return out


CASES = {
    # name: (Retry, path, method, outcome, attempts, quiver path)
    "status retried until 200": (lambda: Retry(total=3, status_forcelist=RA), "/flaky?fail=2",
                                 "GET", 200, 3, True),
    "status retries used up: RetryError": (
        lambda: Retry(total=2, status_forcelist=[503], respect_retry_after_header=False),
        "/flaky?fail=5", "GET", requests.exceptions.RetryError, 3, True),
    "raise_on_status=False: the last response": (
        lambda: Retry(total=2, status_forcelist=RA, raise_on_status=False), "/flaky?fail=5",
        "GET", 503, 3, True),
    "a status count alone": (
        lambda: Retry(total=None, connect=0, read=0, status=1, status_forcelist=[503]),
        "/flaky?fail=5", "GET", requests.exceptions.RetryError, 2, True),
    "a status count below total: requests' path": (
        lambda: Retry(total=5, status=1, status_forcelist=RA), "/flaky?fail=5", "GET",
        requests.exceptions.RetryError, 2, False),
    "POST is not in allowed_methods": (lambda: Retry(total=3, status_forcelist=RA),
                                       "/flaky?fail=2", "POST", 503, 1, True),
    "allowed_methods=None retries POST": (
        lambda: Retry(total=3, status_forcelist=RA, allowed_methods=None), "/flaky?fail=2",
        "POST", 200, 3, True),
    "allowed_methods without GET": (
        lambda: Retry(total=3, status_forcelist=RA, allowed_methods=["POST"]),
        "/flaky?fail=2", "GET", 503, 1, True),
    "read timeouts used up: ConnectionError": (
        lambda: Retry(total=2, status_forcelist=RA), "/stall-status", "GET",
        requests.exceptions.ConnectionError, 3, True),
    "read=False: ReadTimeout at once": (
        lambda: Retry(total=2, read=False, status_forcelist=RA), "/stall-status", "GET",
        requests.exceptions.ReadTimeout, 1, True),
    "read timeout of a POST: not retried": (
        lambda: Retry(total=2, status_forcelist=RA), "/stall-status", "POST",
        requests.exceptions.ReadTimeout, 1, True),
    "a force list without 503: a 503 with Retry-After retried": (
        lambda: Retry(total=2, status_forcelist=[502]), "/flaky?fail=1&after=0", "GET", 200, 2,
        True),
    "a 413 with Retry-After retried beside the force list": (
        lambda: Retry(total=3, status_forcelist=[502]), "/flaky?fail=2&code=413", "GET", 200, 3,
        True),
    "respect_retry_after_header=False: a 503 with Retry-After not retried": (
        lambda: Retry(total=3, respect_retry_after_header=False), "/flaky?fail=1", "GET", 503, 1,
        True),
    "counts quiver cannot add up: requests' path": (
        lambda: Retry(total=5, connect=1, read=2, status_forcelist=RA), "/flaky?fail=2", "GET",
        200, 3, False),
    "HTTPAdapter(max_retries=2)": (lambda: 2, "/flaky?fail=1&after=0", "GET", 200, 2, True),
    "HTTPAdapter(max_retries=3): a 503 without Retry-After not retried": (
        lambda: 3, "/flaky?fail=1&ra=0", "GET", 503, 1, True),
    "HTTPAdapter(max_retries=3): a 502 with Retry-After not retried": (
        lambda: 3, "/flaky?fail=1&code=502", "GET", 502, 1, True),
    "HTTPAdapter(max_retries=3): 429s with Retry-After until total runs out: the last": (
        lambda: 3, "/flaky?fail=5&code=429", "GET", 429, 4, True),
    "503s with Retry-After until a status count runs out: RetryError": (
        lambda: Retry(total=3, connect=0, read=0, status=1), "/flaky?fail=5", "GET",
        requests.exceptions.RetryError, 2, True),
    "the same, raise_on_status=False: the last 503": (
        lambda: Retry(total=3, connect=0, read=0, status=1, raise_on_status=False),
        "/flaky?fail=5", "GET", 503, 2, True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_retries_side_by_side(faults, name):
    make_retry, path, method, outcome, attempts, quiver_path = CASES[name]
    timeout = (5, 0.3) if "stall" in path else 10
    ours, theirs = side_by_side(faults, make_retry, path, method, timeout, quiver_path)
    assert theirs == (outcome, attempts)  # what requests does, as this test expects
    assert ours == theirs


def test_connection_refused_retried(faults):
    """Refused connections: requests' ConnectionError after the retries,
    for every method (urllib3 retries connection failures whatever the
    method)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once it is closed
    out = []
    for cls in (FuturesSession, debian.FuturesSession):
        with cls() as s:
            adapter = HTTPAdapter(max_retries=Retry(total=2, status_forcelist=RA,
                                                    backoff_factor=0.01))
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            f = s.post(f"http://127.0.0.1:{port}/", data=b"x", timeout=5)
            with pytest.raises(requests.exceptions.ConnectionError) as e:
                f.result(timeout=60)
            out.append(type(e.value))
            assert isinstance(f, quiver.Future) is (cls is FuturesSession)
    assert out[0] is out[1]



def test_adapter_kwargs_retries(faults):
    """FuturesSession(adapter_kwargs={"max_retries": Retry(...)}) mounts
    adapters with those retries, as requests-futures does: the quiver path
    follows them, with the attempts and outcome of Debian's."""
    out = []
    for cls in (FuturesSession, debian.FuturesSession):
        key = uuid.uuid4().hex
        retry = Retry(total=3, status_forcelist=[503], backoff_factor=0)
        with cls(adapter_kwargs={"max_retries": retry}) as s:
            f = s.get(f"{faults}/flaky?fail=2&key={key}", timeout=10)
            assert isinstance(f, quiver.Future) is (cls is FuturesSession)
            out.append((f.result(timeout=60).status_code, count(faults, key)))
    assert out[0] == out[1] == (200, 3)
