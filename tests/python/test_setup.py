"""python/setup.py: pip installs both packages and builds the compiled
binding with Debian's setuptools and cffi, offline (no PyPI), into a venv
that sees Debian's packages; the installed package then runs on the
extension it installed, with no PYTHONPATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys, quiver, quiver._ffi, requests_futures.sessions as rf
prefix = sys.argv[2]
assert quiver.BINDING == "api", quiver.BINDING
assert quiver._ffi._capi.__file__.startswith(prefix), quiver._ffi._capi.__file__
assert rf.__file__.startswith(prefix), rf.__file__
with rf.FuturesSession() as s:
    r = s.get(sys.argv[1] + "/small").result(timeout=30)
assert (r.status_code, r.content) == (200, b"q" * 100), r
print("ok")
"""


@pytest.mark.skipif(os.environ.get("QUIVER_BINDING") == "abi",
                    reason="the install is tested once, in the api pass")
def test_pip_install_builds_the_compiled_binding(tmp_path, nginx):
    # a copy of the sources (pip builds in the tree it is given)
    src = tmp_path / "src"
    shutil.copytree(ROOT / "python", src / "python",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    shutil.copytree(ROOT / "include", src / "include")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QUIVER_INCLUDE")}
    p = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
                        "--no-index", str(src / "python")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert list(Path(site, "quiver").glob("_capi.cpython-*.so"))
    # the library alone in a directory (no CMake build's extension beside it)
    lib = tmp_path / "lib" / "libquiver.so.0"
    lib.parent.mkdir()
    shutil.copy(os.environ["QUIVER_LIB"], lib)
    env.update(QUIVER_LIB=str(lib), QUIVER_BINDING="api")
    p = subprocess.run([py, "-c", CHECK, nginx, str(venv)], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stdout + p.stderr
