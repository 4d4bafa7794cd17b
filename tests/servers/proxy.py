#!/usr/bin/python3
"""A tiny forward HTTP proxy for quiver's proxy tests (Python stdlib only).

    proxy.py --port PORT [--auth USER:PASSWORD] [--cert server.pem --key server.key]

Listens on 127.0.0.1 only and serves absolute-form requests for plain http,
e.g. "GET http://127.0.0.1:8080/get HTTP/1.1":

  - only 127.0.0.1 and localhost targets are forwarded (always to 127.0.0.1);
    any other host gets 403, so test traffic can never leave the machine;
  - the method, headers (minus hop-by-hop ones) and body (Content-Length or
    chunked) are relayed, and so is the response (status, headers, body);
  - every answer carries "Via: quiver-test-proxy", so a test can prove that a
    request went through the proxy; each connection serves one request
    ("Connection: close");
  - CONNECT host:port (a tunnel, e.g. for https) is allowed to the same
    hosts (403 otherwise); if the target cannot be reached the answer is 502;
  - a request that is not in absolute form (e.g. "GET / HTTP/1.1", as sent
    to an origin server) gets 400;
  - with --auth, every request (CONNECT too) must carry those credentials
    in "Proxy-Authorization: Basic ..."; without them, or with others, the
    answer is 407 with "Proxy-Authenticate: Basic";
  - with --cert and --key, it is an HTTPS proxy: clients speak TLS to it
    (and, for an https:// target, TLS again inside the tunnel).

Each request is logged on one line to stderr: "proxy: METHOD URL -> STATUS".
"""

import argparse
import base64
import http.client
import http.server
import socket
import ssl
import sys
import urllib.parse

import serve  # tests/servers/serve.py

VIA = "quiver-test-proxy"
ALLOWED_HOSTS = ("127.0.0.1", "localhost")
# Hop-by-hop headers (RFC 9110 7.6.1) and ones this proxy sets itself.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
UPSTREAM_TIMEOUT = 60  # seconds; httpbin's /delay/N goes up to 10


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "quiver-test-proxy"
    timeout = 30

    def _authorized(self):
        """True if no credentials are needed or the right ones came; else
        answers 407."""
        want = self.server.auth
        if want is None:
            return True
        got = self.headers.get("Proxy-Authorization") or ""
        if got == "Basic " + base64.b64encode(want.encode()).decode():
            return True
        self._reply(407, "proxy credentials %s" % ("refused" if got else "required"))
        return False

    def _reply(self, status, text):
        body = (text + "\n").encode()
        self.send_response(status)
        if status == 407:
            self.send_header("Proxy-Authenticate", 'Basic realm="quiver-test-proxy"')
        self.send_header("Via", VIA)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True
        sys.stderr.write("proxy: %s %s -> %d (%s)\n" % (self.command, self.path, status, text))

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)  # CRLF after the chunk
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else None

    def _forward(self):
        if not self._authorized():
            return
        url = urllib.parse.urlsplit(self.path)
        if url.scheme.lower() != "http" or not url.hostname:
            self._reply(400, "not a proxy request (absolute http:// URI expected)")
            return
        if url.hostname.lower() not in ALLOWED_HOSTS:
            self._reply(403, "target %s refused: only 127.0.0.1 and localhost" % url.hostname)
            return
        body = self._read_body()
        target = urllib.parse.urlunsplit(("", "", url.path or "/", url.query, ""))
        conn = http.client.HTTPConnection("127.0.0.1", url.port or 80, timeout=UPSTREAM_TIMEOUT)
        try:
            conn.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() in HOP_BY_HOP or name.lower() == "content-length":
                    continue
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.putheader("Connection", "close")
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            self._reply(502, "upstream %s:%s failed: %s" % (url.hostname, url.port, e))
            return
        finally:
            conn.close()

        self.send_response_only(resp.status, resp.reason)
        for name, value in resp.getheaders():
            lname = name.lower()
            if lname in HOP_BY_HOP or lname == "content-length":
                continue
            self.send_header(name, value)
        self.send_header("Via", VIA)
        if self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            length = resp.getheader("Content-Length")
            if length is not None and self.command == "HEAD":
                self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.close_connection = True
        sys.stderr.write("proxy: %s %s -> %d\n" % (self.command, self.path, resp.status))

    def do_CONNECT(self):
        if not self._authorized():
            return
        host, sep, port = self.path.rpartition(":")
        host = host.strip("[]").lower()
        if not sep or not port.isdigit():
            self._reply(400, "bad CONNECT target %s" % self.path)
            return
        if host not in ALLOWED_HOSTS:
            self._reply(403, "target %s refused: only 127.0.0.1 and localhost" % host)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
        except OSError as e:
            self._reply(502, "upstream %s failed: %s" % (self.path, e))
            return
        self.send_response_only(200, "Connection established")
        self.send_header("Via", VIA)
        self.end_headers()
        self.wfile.flush()
        sys.stderr.write("proxy: CONNECT %s -> 200 (tunnel)\n" % self.path)
        self.close_connection = True
        with upstream:
            serve.relay(self.connection, upstream, self.timeout)

    def __getattr__(self, name):
        # do_GET, do_POST, ... : every other method is forwarded.
        if name.startswith("do_"):
            return self._forward
        raise AttributeError(name)

    def log_message(self, fmt, *args):
        pass  # one line per request is written by _reply / _forward


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    auth = None  # "USER:PASSWORD" that requests must carry
    context = None  # an ssl.SSLContext: an HTTPS proxy

    def finish_request(self, request, client_address):
        # In the connection's thread: a slow TLS handshake holds up no one.
        if self.context:
            request.settimeout(Handler.timeout)
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                sys.stderr.write("proxy: %s handshake failed: %s\n" % (client_address[0], e))
                return
            try:
                self.RequestHandlerClass(request, client_address, self)
            finally:
                request.close()
            return
        self.RequestHandlerClass(request, client_address, self)

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        sys.stderr.write("proxy: %s connection error: %r\n" % (client_address[0], e))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--auth", help="USER:PASSWORD that every request must carry")
    p.add_argument("--cert", help="certificate (PEM): an HTTPS proxy")
    p.add_argument("--key", help="the certificate's key (PEM)")
    a = p.parse_args()
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.auth = a.auth
    if a.cert:
        srv.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv.context.load_cert_chain(a.cert, a.key)
    serve.run("proxy", "https" if a.cert else "http", srv)


if __name__ == "__main__":
    main()
