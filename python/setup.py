"""Installs the two packages (quiver, and the requests_futures drop-in) and
builds quiver's compiled binding (quiver._capi, cffi's API mode) with
Debian's setuptools and cffi, no PyPI:

    python -m pip install --no-build-isolation --no-deps --no-index ./python

from a checkout (the binding is built from the checkout's include/quiver.h;
QUIVER_INCLUDE names another include directory). Needs python3-cffi,
python3-setuptools and python3-dev. libquiver.so.0 itself comes from the C
library's CMake build; see docs/python.md.
"""

from setuptools import setup

setup(
    name="quiver-requests-futures",
    version="0.1.0",
    description="requests-futures on quiver (libquiver.so.0, through cffi), and quiver.Session",
    packages=["quiver", "requests_futures"],
    cffi_modules=["quiver/_capi_build.py:ffibuilder"],
    python_requires=">=3.9",
    install_requires=["cffi", "requests"],
    zip_safe=False,
)
