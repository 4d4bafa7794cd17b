"""Where a Python client's CPU per request goes, by phase and thread: the
main thread while it submits N requests, the main thread while it collects
them in order (result(): waiting in C, which may run quiver's I/O there as
the loop executor's leader, then building the Response), and every other
thread (quiver's I/O and worker threads). The requests-futures idiom,
HTTP/1.1 to a local nginx, as bench/python_bench.py.

    PYTHONPATH=python QUIVER_LIB=build/libquiver.so.0 \\
        /usr/bin/python3 bench/python_phases.py URL [N] [RUNS] [MODES] [C]

MODES: comma-separated bench/python_bench.py modes (dropin,quiver_loop);
C: concurrency (8); each run is its own process, runs interleaved; medians
printed, with the voluntary context switches a request of the main thread
and of all others (a hand-off between threads costs one or two).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time


def switches() -> dict:
    """Voluntary context switches of each thread of this process, by id."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        out[int(tid)] = int(line.split()[1])
        except OSError:  # a thread that ended meanwhile
            pass
    return out


def one(mode: str, url: str, n: int, c: int) -> str:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from python_bench import make_session
    s = make_session(mode, c)
    assert s.get(url).result(timeout=30).status_code == 200
    me = threading.get_native_id()
    sw0 = switches()
    p0, t0 = time.process_time(), time.thread_time()
    futures = [s.get(url) for _ in range(n)]
    t1 = time.thread_time()
    for f in futures:
        f.result(timeout=120).content
    t2, p1 = time.thread_time(), time.process_time()
    sw1 = switches()
    s.close()
    us = 1e6 / n
    main = sw1.get(me, 0) - sw0.get(me, 0)
    others = sum(v - sw0.get(k, 0) for k, v in sw1.items() if k != me)
    return (f"{(t1 - t0) * us:.1f} {(t2 - t1) * us:.1f} {((p1 - p0) - (t2 - t0)) * us:.1f} "
            f"{main / n:.3f} {others / n:.3f}")


def main() -> int:
    if sys.argv[1] == "--one":
        print(one(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
        return 0
    url = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    modes = (sys.argv[4] if len(sys.argv) > 4 else "dropin,quiver_loop").split(",")
    c = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    got: dict = {m: [] for m in modes}
    for _ in range(runs):
        for m in modes:
            out = subprocess.run([sys.executable, __file__, "--one", m, url, str(n), str(c)],
                                 capture_output=True, text=True, timeout=300, check=True)
            got[m].append([float(x) for x in out.stdout.split()])
    print(f"c = {c}, CPU µs and voluntary switches a request")
    print("| client | main thread, submit | main thread, result() | other threads | total | "
          "switches, main thread | switches, others |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for m in modes:
        cols = [statistics.median(r[i] for r in got[m]) for i in range(5)]
        print(f"| {m} | " + " | ".join(f"{x:.1f}" for x in cols[:3]) +
              f" | {sum(cols[:3]):.1f} | {cols[3]:.3f} | {cols[4]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
