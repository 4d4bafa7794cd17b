#!/usr/bin/python3
"""An upload sink for quiver's streaming tests (Python stdlib only).

    sink.py --port PORT

Listens on 127.0.0.1 only. Any method on any path reads the whole request
body (Content-Length, or chunked transfer encoding) and answers 200 with
JSON: {"method", "path", "bytes", "sha256", "chunked"}, so a test proves
that what arrived is what it sent without the server keeping it. Paths:

  - /307, /308: read the body, then redirect (that status) to /sink, so
    the client must send the body again;
  - /fail-once?key=K: the first request with key K reads the body and
    answers 503 (Retry-After: 0); later ones are sunk as usual;
  - /hello: GET answers "sink" (the probe scripts/lib/servers.sh waits for);
  - /no-read: reads none of the body and answers nothing until the client
    goes (at most HOLD_MAX seconds), so the client's buffers fill.

Each request is logged on one line to stderr: "sink: METHOD PATH BYTES".
"""

import argparse
import hashlib
import http.server
import json
import select
import sys
import threading
import time
import urllib.parse

import serve  # tests/servers/serve.py

HOLD_MAX = 60  # seconds /no-read waits for the client to go

_failed_keys = set()
_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def read_into(self, h, left):
        """Reads exactly `left` body bytes into the hash h."""
        while left:
            data = self.rfile.read(min(left, 1 << 16))
            if not data:
                raise ConnectionError("body cut short")
            h.update(data)
            left -= len(data)

    def read_body(self):
        """(bytes read, sha256 hex, chunked) of the request body."""
        h = hashlib.sha256()
        n = 0
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if chunked:
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                self.read_into(h, size)
                n += size
                self.rfile.readline()
        else:
            n = int(self.headers.get("Content-Length") or 0)
            self.read_into(h, n)
        return n, h.hexdigest(), chunked

    def answer(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def hold_unread(self) -> None:
        """Waits, reading nothing, until the client shuts its side."""
        p = select.poll()
        p.register(self.connection, select.POLLRDHUP)
        deadline = time.monotonic() + HOLD_MAX
        while not p.poll(1000) and time.monotonic() < deadline:
            pass
        self.close_connection = True

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/hello" and self.command == "GET":
            self.answer(200, b"sink")
            return
        if url.path == "/no-read":
            self.hold_unread()
            return
        n, digest, chunked = self.read_body()
        sys.stderr.write("sink: %s %s %d\n" % (self.command, url.path, n))
        if url.path in ("/307", "/308"):
            self.answer(int(url.path[1:]), b"", [("Location", "/sink")])
            return
        if url.path == "/fail-once":
            key = urllib.parse.parse_qs(url.query).get("key", [""])[0]
            with _lock:
                first = key not in _failed_keys
                _failed_keys.add(key)
            if first:
                self.answer(503, b"busy", [("Retry-After", "0")])
                return
        out = {"method": self.command, "path": url.path, "bytes": n, "sha256": digest,
               "chunked": chunked}
        self.answer(200, json.dumps(out).encode(), [("Content-Type", "application/json")])

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    serve.run("sink", "http", srv)


if __name__ == "__main__":
    main()
