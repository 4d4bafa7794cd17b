"""requests-futures on quiver: `from requests_futures.sessions import
FuturesSession` as before, with libquiver doing the I/O (see docs/python.md
in the quiver repository)."""

__title__ = "requests-futures"
__version__ = "1.0.2"
