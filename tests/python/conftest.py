"""Fixtures for the Python tests (run by `scripts/test`'s python pass, or by
hand: PYTHONPATH=python QUIVER_LIB=build/libquiver.so.0 /usr/bin/python3 -m
pytest tests/python, with the servers of scripts/lib/servers.sh running).

`requests_futures` on PYTHONPATH is ours (it shadows Debian's); Debian's
python3-requests-futures, the reference the drop-in is compared with, is
loaded from its file under the name `debian_requests_futures`.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

DEBIAN_RF = "/usr/lib/python3/dist-packages/requests_futures/sessions.py"


def _load_debian():
    spec = importlib.util.spec_from_file_location("debian_requests_futures", DEBIAN_RF)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["debian_requests_futures"] = mod  # so its functions pickle
    spec.loader.exec_module(mod)
    return mod


debian = _load_debian()


def _env(name: str) -> str:
    v = os.environ.get(name)
    if not v:
        pytest.fail(f"{name} is not set: start the test servers (scripts/lib/servers.sh)")
    return v


@pytest.fixture(scope="session")
def httpbin() -> str:
    return _env("QV_HTTPBIN_URL")


@pytest.fixture(scope="session")
def nginx() -> str:
    return _env("QV_NGINX_URL")


@pytest.fixture(scope="session")
def nginx_tls() -> tuple[str, str]:
    return _env("QV_NGINX_TLS_URL"), _env("QV_NGINX_CA")


@pytest.fixture(scope="session")
def tls() -> tuple[str, str]:
    return _env("QV_TLS_URL"), _env("QV_TLS_CA")


@pytest.fixture(scope="session")
def proxy() -> str:
    return _env("QV_PROXY_URL")


@pytest.fixture(scope="session")
def mtls() -> tuple[str, str]:
    """A server that demands a client certificate, and the directory of the
    certificates (ca.pem, client.pem, client.key)."""
    return _env("QV_MTLS_URL"), _env("QV_MTLS_DIR")


@pytest.fixture(scope="session")
def faults() -> str:
    return _env("QV_FAULTS_URL")


@pytest.fixture
def ours():
    from requests_futures.sessions import FuturesSession
    s = FuturesSession()
    yield s
    s.close()


@pytest.fixture
def theirs():
    s = debian.FuturesSession()
    yield s
    s.close()
