"""What every test server does once set up: announce where it listens (the
line scripts/lib/servers.sh waits for), serve until stopped, close; and the
byte relay of the proxies' tunnels."""

import select
import socket
import ssl
import sys


def run(name, scheme, srv):
    port = srv.server_address[1]
    sys.stderr.write("%s: listening on %s://127.0.0.1:%d\n" % (name, scheme, port))
    sys.stderr.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


def relay(a: socket.socket, b: socket.socket, idle_timeout: float) -> None:
    """Copies bytes both ways until either side closes or both are idle for
    idle_timeout seconds."""
    socks = [a, b]
    for s in socks:
        s.settimeout(None)
    try:
        while True:
            # Bytes TLS has decrypted already are not on the socket.
            pending = [s for s in socks if isinstance(s, ssl.SSLSocket) and s.pending()]
            readable = pending or select.select(socks, [], [], idle_timeout)[0]
            if not readable:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        pass
