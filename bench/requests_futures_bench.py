"""requests-futures client for bench/run (Debian's python3-requests-futures).

    /usr/bin/python3 requests_futures_bench.py -n N -c C -s BYTES [--ca FILE] URL

FuturesSession(max_workers=C) (which also sizes urllib3's pool to C), all N
requests submitted at once (the way requests-futures is used: submit, then
.result()), results collected in order. Every response is checked (status
200, body size). requests speaks HTTP/1.1 only, so over https this is
HTTP/1.1 over TLS. Prints the same result line as the C clients; seconds is
from the first submit to the last result (interpreter start-up and imports
are outside it, but inside the process CPU time that bench/run measures;
load_cpu_s is the process's CPU time over the load alone, for comparison).
"""

import argparse
import sys
import time

from requests_futures.sessions import FuturesSession


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("-c", type=int, default=8)
    ap.add_argument("-s", type=int, required=True)
    ap.add_argument("--ca")
    ap.add_argument("--deadline", type=float, default=120)
    ap.add_argument("url")
    a = ap.parse_args()

    session = FuturesSession(max_workers=a.c)
    session.trust_env = False  # no proxies from the environment: loopback only
    if a.ca:
        session.verify = a.ca
    t0 = time.monotonic()
    c0 = time.process_time()  # CPU of the whole process, all threads
    futures = [session.get(a.url, timeout=a.deadline) for _ in range(a.n)]
    ok = bad = 0
    for f in futures:
        try:
            r = f.result(timeout=max(0.1, a.deadline - (time.monotonic() - t0)))
        except Exception as e:  # noqa: BLE001 - any failure is a failed check
            bad += 1
            if bad <= 5:
                print(f"requests_futures: request failed: {e}", file=sys.stderr)
            if time.monotonic() - t0 > a.deadline:
                print("requests_futures: deadline passed", file=sys.stderr)
                session.executor.shutdown(wait=False, cancel_futures=True)
                return 3
            continue
        if r.status_code == 200 and len(r.content) == a.s:
            ok += 1
        else:
            bad += 1
            if bad <= 5:
                print(f"requests_futures: bad response: status {r.status_code}, "
                      f"{len(r.content)} bytes", file=sys.stderr)
    secs = time.monotonic() - t0
    cpu = time.process_time() - c0
    print(f"client=requests_futures requests={a.n} ok={ok} seconds={secs:.6f} http=11 conns=0 "
          f"load_cpu_s={cpu:.6f}")
    session.close()
    return 0 if ok == a.n else 2


if __name__ == "__main__":
    sys.exit(main())
