"""A loopback HTTP/1.1 server that writes down the requests it receives.

    /usr/bin/python3 request_dump.py OUT_FILE

Prints its port on stdout, then serves on 127.0.0.1 until it is killed.
Each request's head (request line and header lines, up to the blank line)
is appended to OUT_FILE, as received, before the answer goes out: when a
client has its response, its request is in the file. Every answer is 200
with a 100-byte body, keep-alive, like nginx's /small. bench/run uses it to
check that the raw floors send the bytes quiver sends (--same-request).
Request bodies are not expected (GET only).
"""

import socketserver
import sys

BODY = b"x" * 100
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
          b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY


class Dump(socketserver.StreamRequestHandler):
    out_path = ""

    def handle(self) -> None:
        while True:
            head = b""
            while True:
                line = self.rfile.readline(65536)
                if not line:
                    return
                head += line
                if line in (b"\r\n", b"\n"):
                    break
            with open(self.out_path, "ab") as f:
                f.write(head)
            self.wfile.write(ANSWER)
            self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    Dump.out_path = sys.argv[1]
    with Server(("127.0.0.1", 0), Dump) as srv:
        print(srv.server_address[1], flush=True)
        srv.serve_forever()


if __name__ == "__main__":
    main()
