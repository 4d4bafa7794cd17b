"""Where a Python client's CPU per request goes, by phase and thread: the
main thread while it submits N requests, the main thread while it collects
them in order (result(): waiting in C, which may run quiver's I/O there as
the loop executor's leader, then building the Response), and every other
thread (quiver's I/O and worker threads). The requests-futures idiom,
HTTP/1.1 to a local nginx, as bench/python_bench.py.

    PYTHONPATH=python QUIVER_LIB=build/libquiver.so.0 \\
        /usr/bin/python3 bench/python_phases.py URL [N] [RUNS] [MODES]

MODES: comma-separated bench/python_bench.py modes (dropin,quiver_loop);
each run is its own process, runs interleaved; medians printed.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time


def one(mode: str, url: str, n: int) -> str:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from python_bench import make_session
    s = make_session(mode, 8)
    assert s.get(url).result(timeout=30).status_code == 200
    p0, t0 = time.process_time(), time.thread_time()
    futures = [s.get(url) for _ in range(n)]
    t1 = time.thread_time()
    for f in futures:
        f.result(timeout=120).content
    t2, p1 = time.thread_time(), time.process_time()
    s.close()
    us = 1e6 / n
    return f"{(t1 - t0) * us:.1f} {(t2 - t1) * us:.1f} {((p1 - p0) - (t2 - t0)) * us:.1f}"


def main() -> int:
    if sys.argv[1] == "--one":
        print(one(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        return 0
    url = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    modes = (sys.argv[4] if len(sys.argv) > 4 else "dropin,quiver_loop").split(",")
    got: dict = {m: [] for m in modes}
    for _ in range(runs):
        for m in modes:
            out = subprocess.run([sys.executable, __file__, "--one", m, url, str(n)],
                                 capture_output=True, text=True, timeout=300, check=True)
            got[m].append([float(x) for x in out.stdout.split()])
    print("| client | main thread, submit | main thread, result() | other threads | total |")
    print("|---|---:|---:|---:|---:|")
    for m in modes:
        cols = [statistics.median(r[i] for r in got[m]) for i in range(3)]
        print(f"| {m} | " + " | ".join(f"{c:.1f}" for c in cols) + f" | {sum(cols):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
