#!/usr/bin/python3
"""A tiny SOCKS proxy for quiver's proxy tests (Python stdlib only).

    socks.py --port PORT

Listens on 127.0.0.1 only and speaks SOCKS5 (no authentication) and SOCKS4
and 4a, CONNECT only:

  - the target may be 127.0.0.1, localhost, or any name under .quiver.test
    (a made-up name only this proxy resolves, to 127.0.0.1): socks5h:// and
    socks4a:// clients send names, so only they can reach those; any other
    target is refused, so test traffic can never leave the machine;
  - once connected, bytes are relayed both ways until either side closes.

Each connection is logged on one line to stderr:
"socks: socks5 HOST:PORT -> ok" (or the reason it was refused).
"""

import argparse
import socket
import socketserver
import struct
import sys

import serve  # tests/servers/serve.py

IDLE_TIMEOUT = 30  # seconds without a byte either way


def target_addr(host: str) -> str | None:
    """The address a target name stands for, or None if it is refused."""
    host = host.lower()
    if host in ("127.0.0.1", "localhost") or host.endswith(".quiver.test"):
        return "127.0.0.1"
    return None


class Handler(socketserver.BaseRequestHandler):
    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.request.recv(n - len(data))
            if not chunk:
                raise ConnectionError("client closed")
            data += chunk
        return data

    def _read_cstr(self) -> bytes:
        data = b""
        while not data.endswith(b"\0"):
            data += self._read(1)
            if len(data) > 255:
                raise ConnectionError("string too long")
        return data[:-1]

    def _connect(self, host: str, port: int) -> socket.socket | None:
        addr = target_addr(host)
        if addr is None:
            self._log("%s:%d -> refused (not a test host)" % (host, port))
            return None
        try:
            return socket.create_connection((addr, port), timeout=10)
        except OSError as e:
            self._log("%s:%d -> failed: %s" % (host, port, e))
            return None

    def _log(self, what: str) -> None:
        sys.stderr.write("socks: %s %s\n" % (self.version, what))

    def _socks5(self) -> socket.socket | None:
        self.version = "socks5"
        (nmethods,) = self._read(1)
        methods = self._read(nmethods)
        if 0 not in methods:
            self.request.sendall(b"\x05\xff")
            self._log("-> refused (no acceptable auth method)")
            return None
        self.request.sendall(b"\x05\x00")
        ver, cmd, _, atyp = self._read(4)
        if atyp == 1:
            host = socket.inet_ntoa(self._read(4))
        elif atyp == 3:
            (n,) = self._read(1)
            host = self._read(n).decode("ascii", "replace")
        elif atyp == 4:
            host = socket.inet_ntop(socket.AF_INET6, self._read(16))
        else:
            host = ""
        (port,) = struct.unpack("!H", self._read(2))
        upstream = self._connect(host, port) if ver == 5 and cmd == 1 else None
        # rep 0 = succeeded, 2 = not allowed by ruleset
        reply = b"\x00" if upstream else b"\x02"
        self.request.sendall(b"\x05" + reply + b"\x00\x01" + bytes(4) + b"\x00\x00")
        if upstream:
            self._log("%s:%d -> ok" % (host, port))
        return upstream

    def _socks4(self) -> socket.socket | None:
        self.version = "socks4"
        cmd, port = struct.unpack("!BH", self._read(3))
        ip = self._read(4)
        self._read_cstr()  # user id
        host = socket.inet_ntoa(ip)
        if ip[:3] == b"\0\0\0" and ip[3]:
            self.version = "socks4a"
            host = self._read_cstr().decode("ascii", "replace")
        upstream = self._connect(host, port) if cmd == 1 else None
        # 0x5A granted, 0x5B rejected
        self.request.sendall(b"\x00" + (b"\x5a" if upstream else b"\x5b") + bytes(6))
        if upstream:
            self._log("%s:%d -> ok" % (host, port))
        return upstream

    def handle(self) -> None:
        self.version = "socks?"
        self.request.settimeout(IDLE_TIMEOUT)
        try:
            (ver,) = self._read(1)
            upstream = self._socks5() if ver == 5 else self._socks4() if ver == 4 else None
        except (ConnectionError, OSError) as e:
            self._log("-> broken handshake: %s" % e)
            return
        if upstream:
            with upstream:
                serve.relay(self.request, upstream, IDLE_TIMEOUT)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    srv = Server(("127.0.0.1", a.port), Handler)
    serve.run("socks", "socks", srv)


if __name__ == "__main__":
    main()
