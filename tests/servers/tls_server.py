#!/usr/bin/python3
"""A tiny HTTPS server for quiver's TLS tests (Python stdlib only).

    tls_server.py --port PORT --cert server.pem --key server.key
                  [--client-ca ca.pem] [--max-tls 1.2]

Listens on 127.0.0.1 only. GET (or HEAD) /hello answers 200 "hello tls"
(text/plain); GET /whoami answers the common name of the client's
certificate ("anonymous" without one); every other path or method answers
404. HTTP/1.1 keep-alive.

With --client-ca, a client must present a certificate issued by that CA
(mutual TLS): without one, or with another, the handshake fails with the
server's alert (with TLS 1.3 the client sees it after its side of the
handshake is done). --max-tls 1.2 caps the protocol at TLS 1.2.

The TLS handshake runs in the connection's own thread, so a client that
connects and never finishes (or aborts) its handshake holds up nobody else.
A client that rejects our certificate (the point of several tests) is
logged on one line, not with a traceback.
"""

import argparse
import http.server
import socket
import ssl
import sys

import serve  # tests/servers/serve.py

BODY = b"hello tls"


def peer_name(conn: ssl.SSLSocket) -> str:
    """The common name of the client's certificate, or "anonymous"."""
    cert = conn.getpeercert() or {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return "anonymous"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "quiver-test-tls"
    timeout = 30  # seconds of silence before an idle connection is dropped

    def _drain_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)

    def _answer(self, with_body):
        self._drain_body()
        if self.path == "/hello" and self.command in ("GET", "HEAD"):
            status, body = 200, BODY
        elif self.path == "/whoami" and self.command in ("GET", "HEAD"):
            status, body = 200, peer_name(self.connection).encode()
        else:
            status, body = 404, b"not found"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self):
        self._answer(True)

    def do_HEAD(self):
        self._answer(False)

    def do_POST(self):
        self._answer(True)

    do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_POST

    def log_message(self, fmt, *args):
        sys.stderr.write("tls_server: %s %s\n" % (self.address_string(), fmt % args))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, context):
        self.context = context
        super().__init__(addr, Handler)

    def finish_request(self, request, client_address):
        # Runs in the connection's thread: handshake here, not in accept().
        request.settimeout(Handler.timeout)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            sys.stderr.write("tls_server: %s handshake failed: %s\n" % (client_address[0], e))
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        sys.stderr.write("tls_server: %s connection error: %r\n" % (client_address[0], e))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True, help="server certificate (PEM)")
    p.add_argument("--key", required=True, help="server private key (PEM)")
    p.add_argument("--client-ca", help="require client certificates issued by this CA")
    p.add_argument("--max-tls", choices=["1.2", "1.3"], default="1.3")
    a = p.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    if a.client_ca:
        ctx.load_verify_locations(a.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    if a.max_tls == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    srv = Server(("127.0.0.1", a.port), ctx)
    serve.run("tls_server", "https", srv)


if __name__ == "__main__":
    main()
