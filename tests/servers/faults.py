#!/usr/bin/python3
"""A fault-injection HTTP/1.1 server for quiver's reliability tests (stdlib only).

    faults.py --port PORT

Listens on 127.0.0.1 only, one thread per connection. One path per
misbehaviour (GET; the query string is ignored unless said otherwise):

  /ok            200 "ok" (Content-Length 2), keep-alive: the follow-up check
  /reset         reads the request, then resets the connection (RST, via
                 SO_LINGER 0) without answering
  /stall-status  reads the request and never answers; waits for the client
                 to go (at most STALL_MAX seconds)
  /stall-body    headers with Content-Length 1000, 10 bytes, then stalls
                 like /stall-status; ?length=N (2..2**30) announces N bytes
                 and ?sent=S (1..N-1) sends S of them before the stall
  /drip          one byte per second of a 10-byte body (Content-Length 10);
                 ?bytes=N (1..100) and ?interval=S (0.01..5 s) change that
  /short         Content-Length 1000, 100 bytes, then a clean close (FIN);
                 ?length=N (0..2**62) announces N bytes instead (a lie as
                 large as a hostile server's); ?sent=S (0..2**30) sends S bytes, not 100
  /bad-chunked   chunked: one good chunk, then a chunk size that is not hex
                 ("zz"); then waits for the client to go
  /garbage       a garbage status line ("\\x00\\xffGARBAGE ..."); with
                 ?style=http, an HTTP-looking one ("HTTP/1.1 banana split")
  /huge-headers  200 with 1 MiB of headers (1024 headers of 1 KiB); with
                 ?single=1, one header of 1 MiB
  /loop          302 to /loop, forever
  /held-redirect 302 to /stall-status whose (empty, chunked) body ends
                 ?hold=S seconds (0.01..10, default 1) after its headers,
                 with no byte between: a silence before the next hop's
                 request, which that hop's read timeout must not count
  /to-file       302 to file:///etc/passwd
  /to-ftp        302 to ftp://127.0.0.1/
  /gzip-bomb     ~1 MiB of gzip (Content-Encoding: gzip) that expands to
                 1 GiB of zeros (made once, at start, in memory)
  /huge          1 GiB body of 'x' (Content-Length), generated as sent; with
                 ?chunked=1 chunked instead; stops when the client goes
  /wrong-length  Content-Length 100 but 200 bytes (sent together, 20 ms after
                 the headers): the 100 extra bytes are a complete HTTP
                 response ("200 ... SMUGGLED"), and the connection is kept
                 alive, so a client that reuses it reads that as the answer
                 to its next request
  /flaky         ?key=K&fail=N: 503 (?code=C: C) for the first N requests
                 with key K, then 200 "ok" (for retry tests); Retry-After:
                 ?after=S seconds (default 0), or with ?date=1 an HTTP date
                 S ahead, or with ?ra=0 none
  /flaky-count   ?key=K: how many requests key K got (the body): those of
                 /flaky and of any other path given ?key=K (to count the
                 attempts a client retrying /stall-status or /reset makes)

Any other path is 404. Each request is logged on one line to stderr:
"faults: PEER METHOD TARGET". Nothing here ever connects anywhere.
"""

import argparse
import email.utils
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse
import zlib

import serve  # tests/servers/serve.py

STALL_MAX = 120  # seconds a stalling path waits for the client to go
IDLE_TIMEOUT = 30  # seconds of silence before a connection is dropped
MAX_HEAD = 64 * 1024  # bytes of request line + headers accepted

MIB = 1024 * 1024
BOMB_SIZE = 1024 * MIB  # decoded size of /gzip-bomb
HUGE_SIZE = 1024 * MIB  # size of /huge


def make_gzip_bomb(total):
    """A gzip member of `total` zero bytes, built from one compressed MiB.

    Deflating 1 GiB takes seconds; instead each MiB is compressed with a full
    flush (byte-aligned, dictionary reset), so every MiB after the first
    compresses to the same bytes: compress two, repeat the second, end with
    an empty final block and the real CRC-32 and size of the whole.
    """
    chunk = bytes(MIB)
    c = zlib.compressobj(9, zlib.DEFLATED, 31, 9)
    first = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    second = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    c2 = zlib.compressobj(9, zlib.DEFLATED, 31, 9)
    head = c2.compress(chunk) + c2.flush(zlib.Z_FULL_FLUSH)
    assert head == first and first.endswith(second)
    crc = 0
    for _ in range(total // MIB):
        crc = zlib.crc32(chunk, crc)
    # the final block: BFINAL=1, fixed Huffman, end-of-block; then the trailer
    end = b"\x03\x00" + struct.pack("<II", crc & 0xFFFFFFFF, total & 0xFFFFFFFF)
    return first + second * (total // MIB - 1) + end


def check_gzip_bomb(bomb, total):
    d = zlib.decompressobj(31)
    n = 0
    pos = 0
    while pos < len(bomb):
        out = d.decompress(bomb[pos : pos + 65536], MIB)
        n += len(out)
        while d.unconsumed_tail:
            out = d.decompress(d.unconsumed_tail, MIB)
            n += len(out)
        pos += 65536
    assert d.eof and n == total, (d.eof, n)


GZIP_BOMB = b""  # made in main()
FLAKY = {}
FLAKY_LOCK = threading.Lock()


class ClientGone(Exception):
    pass


def count_key(path, q):
    """Counts a request of /flaky or with ?key=K (not /flaky-count's); how
    many its key had before it."""
    if path == "/flaky-count" or (path != "/flaky" and "key" not in q):
        return 0
    key = q.get("key", [""])[0]
    with FLAKY_LOCK:
        seen = FLAKY.get(key, 0)
        FLAKY[key] = seen + 1
    return seen


def _int(q, name, default, lo, hi):
    try:
        v = int(q.get(name, [default])[0])
    except ValueError:
        v = default
    return max(lo, min(hi, v))


def _float(q, name, default, lo, hi):
    try:
        v = float(q.get(name, [default])[0])
    except ValueError:
        v = default
    return max(lo, min(hi, v))


class Handler(socketserver.BaseRequestHandler):
    # ------------------------------------------------------------ plumbing

    def send(self, data):
        try:
            self.request.sendall(data)
        except OSError as e:
            raise ClientGone() from e

    def head(self, status, headers, reason=None):
        reasons = {200: "OK", 302: "Found", 400: "Bad Request", 404: "Not Found", 503: "Busy"}
        lines = ["HTTP/1.1 %d %s" % (status, reason or reasons.get(status, "Status"))]
        lines += ["%s: %s" % kv for kv in headers]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def simple(self, status, body, extra=()):
        hs = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        self.head(status, hs + list(extra))
        self.send(body)
        return True

    def wait_for_client_to_go(self):
        """Reads (and drops) until the client closes, or STALL_MAX seconds."""
        deadline = time.monotonic() + STALL_MAX
        self.request.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                if not self.request.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return

    def read_request(self):
        """(method, target, headers) of the next request, or None at EOF."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                self.simple(400, b"request head too large\n")
                return None
            try:
                data = self.request.recv(65536)
            except OSError:
                return None
            if not data:
                return None
            self.buf += data
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3:
            self.simple(400, b"bad request line\n")
            return None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        # Drop a request body (our clients send GETs, but be safe).
        length = int(headers.get("content-length") or 0)
        while len(self.buf) < length:
            data = self.request.recv(65536)
            if not data:
                return None
            self.buf += data
        self.buf = self.buf[length:]
        return parts[0], parts[1], headers

    def handle(self):
        self.request.settimeout(IDLE_TIMEOUT)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        peer = self.client_address[0]
        try:
            while True:
                req = self.read_request()
                if req is None:
                    return
                method, target, headers = req
                sys.stderr.write("faults: %s %s %s\n" % (peer, method, target))
                url = urllib.parse.urlsplit(target)
                query = urllib.parse.parse_qs(url.query)
                self.seen = count_key(url.path, query)
                route = ROUTES.get(url.path)
                if route is None:
                    keep = self.simple(404, b"not found\n")
                else:
                    keep = route(self, query)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ClientGone, socket.timeout, ConnectionError):
            return

    # -------------------------------------------------------------- faults

    def do_ok(self, q):
        return self.simple(200, b"ok")

    def do_reset(self, q):
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.request.close()  # with linger 0: RST, not FIN
        return False

    def do_stall_status(self, q):
        self.wait_for_client_to_go()
        return False

    def do_stall_body(self, q):
        length = _int(q, "length", 1000, 2, 2**30)
        sent = _int(q, "sent", 10, 1, length - 1)
        self.head(200, [("Content-Type", "text/plain"), ("Content-Length", str(length))])
        self.send(b"x" * sent)
        self.wait_for_client_to_go()
        return False

    def do_drip(self, q):
        n = _int(q, "bytes", 10, 1, 100)
        interval = _float(q, "interval", 1.0, 0.01, 5.0)
        self.head(200, [("Content-Type", "text/plain"), ("Content-Length", str(n))])
        for _ in range(n):
            time.sleep(interval)
            self.send(b"d")
        return True

    def do_short(self, q):
        n = _int(q, "length", 1000, 0, 2**62)
        sent = _int(q, "sent", 100, 0, 2**30)
        self.head(200, [("Content-Type", "text/plain"), ("Content-Length", str(n))])
        self.send(b"s" * sent)
        self.request.shutdown(socket.SHUT_WR)  # FIN: a clean, early end
        return False

    def do_bad_chunked(self, q):
        self.head(200, [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")])
        self.send(b"5\r\nhello\r\nzz\r\nnot a chunk\r\n0\r\n\r\n")
        self.wait_for_client_to_go()
        return False

    def do_garbage(self, q):
        if q.get("style", [""])[0] == "http":
            self.send(b"HTTP/1.1 banana split\r\nContent-Length: 2\r\n\r\nok")
        else:
            self.send(b"\x00\xffGARBAGE \x01\x02 not http at all\r\nContent-Length: 2\r\n\r\nok")
        self.request.shutdown(socket.SHUT_WR)
        return False

    def do_huge_headers(self, q):
        if q.get("single", [""])[0] == "1":
            hs = [("X-Huge", "h" * MIB)]
        else:
            # 1024 headers of 1 KiB each (name, ": ", value, CRLF)
            hs = [("X-Filler-%04d" % i, "f" * (1024 - 15 - 2 - 2)) for i in range(1024)]
        hs += [("Content-Type", "text/plain"), ("Content-Length", "2")]
        self.head(200, hs)
        self.send(b"ok")
        return True

    def redirect(self, location):
        self.head(302, [("Location", location), ("Content-Length", "0")])
        return True

    def do_loop(self, q):
        return self.redirect("/loop")

    def do_held_redirect(self, q):
        hold = _float(q, "hold", 1.0, 0.01, 10.0)
        hs = [("Location", "/stall-status"), ("Transfer-Encoding", "chunked")]
        self.head(302, hs)
        time.sleep(hold)
        self.send(b"0\r\n\r\n")
        return True

    def do_to_file(self, q):
        return self.redirect("file:///etc/passwd")

    def do_to_ftp(self, q):
        return self.redirect("ftp://127.0.0.1/")

    def do_gzip_bomb(self, q):
        hs = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Encoding", "gzip"),
            ("Content-Length", str(len(GZIP_BOMB))),
        ]
        self.head(200, hs)
        self.send(GZIP_BOMB)
        return True

    def do_huge(self, q):
        block = b"x" * 65536
        chunked = q.get("chunked", [""])[0] == "1"
        if chunked:
            self.head(200, [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")])
            block = b"%x\r\n%s\r\n" % (len(block), block)
        else:
            self.head(200, [("Content-Type", "text/plain"), ("Content-Length", str(HUGE_SIZE))])
        for _ in range(HUGE_SIZE // 65536):
            self.send(block)  # ClientGone ends it when the client goes
        if chunked:
            self.send(b"0\r\n\r\n")
        return True

    def do_wrong_length(self, q):
        smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED"
        body = b"w" * 100 + smuggled
        body += b"\r\n" * ((200 - len(body)) // 2)
        assert len(body) == 200, len(body)
        self.head(200, [("Content-Type", "text/plain"), ("Content-Length", "100")])
        # The body a moment after the headers, in one segment: the client has
        # read the headers alone and reads no more than the 100 bytes it was
        # promised, so the other 100 are already waiting, unread, on the
        # connection when its transfer ends.
        time.sleep(0.02)
        self.send(body)
        return True

    def do_flaky(self, q):
        # `code` (503) to the first `fail` requests of `key`, then 200.
        # Retry-After is `after` seconds (default 0), or with date=1 an HTTP
        # date that many seconds ahead, or with ra=0 absent. /flaky-count?key=K
        # says how many requests K got.
        fail = _int(q, "fail", 1, 0, 1000)
        after = _int(q, "after", 0, 0, 86400)
        code = _int(q, "code", 503, 400, 599)
        seen = self.seen
        if seen < fail:
            body = b"flaky: failure %d of %d\n" % (seen + 1, fail)
            if q.get("ra", ["1"])[0] == "0":
                extra = []
            elif q.get("date", ["0"])[0] == "1":
                extra = [("Retry-After", email.utils.formatdate(time.time() + after, usegmt=True))]
            else:
                extra = [("Retry-After", str(after))]
            return self.simple(code, body, extra)
        return self.simple(200, b"ok")

    def do_flaky_count(self, q):
        with FLAKY_LOCK:
            seen = FLAKY.get(q.get("key", [""])[0], 0)
        return self.simple(200, b"%d" % seen)


ROUTES = {
    "/ok": Handler.do_ok,
    "/reset": Handler.do_reset,
    "/stall-status": Handler.do_stall_status,
    "/stall-body": Handler.do_stall_body,
    "/drip": Handler.do_drip,
    "/short": Handler.do_short,
    "/bad-chunked": Handler.do_bad_chunked,
    "/garbage": Handler.do_garbage,
    "/huge-headers": Handler.do_huge_headers,
    "/loop": Handler.do_loop,
    "/held-redirect": Handler.do_held_redirect,
    "/to-file": Handler.do_to_file,
    "/to-ftp": Handler.do_to_ftp,
    "/gzip-bomb": Handler.do_gzip_bomb,
    "/huge": Handler.do_huge,
    "/wrong-length": Handler.do_wrong_length,
    "/flaky": Handler.do_flaky,
    "/flaky-count": Handler.do_flaky_count,
}


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # bursts of new connections (cancel races)

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        sys.stderr.write("faults: %s connection error: %r\n" % (client_address[0], e))


def main():
    global GZIP_BOMB
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--check", action="store_true", help="also verify the gzip bomb (slow)")
    a = p.parse_args()

    GZIP_BOMB = make_gzip_bomb(BOMB_SIZE)
    if a.check:
        check_gzip_bomb(GZIP_BOMB, BOMB_SIZE)
    sys.stderr.write("faults: gzip bomb %d bytes -> %d bytes\n" % (len(GZIP_BOMB), BOMB_SIZE))
    srv = Server(("127.0.0.1", a.port), Handler)
    serve.run("faults", "http", srv)


if __name__ == "__main__":
    main()
