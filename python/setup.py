"""Installs the two packages (quiver, and the requests_futures drop-in) with
Debian's setuptools, no PyPI: pip install --no-build-isolation --no-deps ./python
(libquiver.so.0 itself comes from the C library's CMake build; see
docs/python.md)."""

from setuptools import setup

setup(
    name="quiver-requests-futures",
    version="0.1.0",
    description="requests-futures on quiver (libquiver.so.0, through cffi), and quiver.Session",
    packages=["quiver", "requests_futures"],
    python_requires=">=3.9",
    install_requires=["cffi", "requests"],
)
