"""What every test server does once set up: announce where it listens (the
line scripts/lib/servers.sh waits for), serve until stopped, close."""

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
