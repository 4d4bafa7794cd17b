"""Which way should Python learn that a quiver future completed? Three ways,
each finishing a concurrent.futures.Future per request (no Response: only
the hand-over is measured), submit all N then result() in order, loop
executor, HTTP/1.1 to a local nginx:

  callback  qv_future_add_done_callback with a cffi callback: quiver's thread
            takes the GIL and finishes the Python future itself
  cq        a qv_cq completion queue drained by one Python thread
  pull      no notification: result() waits in C (qv_future_result, without
            the GIL) and finishes the future on the calling thread

    PYTHONPATH=python QUIVER_LIB=build/libquiver.so.0 \\
        /usr/bin/python3 bench/python_completion.py URL [N] [RUNS]

Prints CPU µs per request (the whole process) per way, runs interleaved,
each in its own process. Recorded in bench/NOTES.md (2026-12-06).
"""

from __future__ import annotations

import concurrent.futures
import os
import select
import statistics
import subprocess
import sys
import threading
import time

WAYS = ("callback", "cq", "pull")


def run(way: str, url: str, n: int, c: int = 8) -> float:
    from quiver._ffi import ffi, lib
    ex = ffi.new("qv_executor **")
    lib.qv_executor_new(ex, ffi.new("qv_executor_opts *", {
        "size": ffi.sizeof("qv_executor_opts"), "kind": 1, "max_workers": c}))
    sp = ffi.new("qv_session **")
    noproxy = ffi.new("char[]", b"")
    lib.qv_session_new(sp, ffi.new("qv_session_opts *", {
        "size": ffi.sizeof("qv_session_opts"), "executor": ex[0], "proxy": noproxy}))
    o = ffi.new("qv_request_opts *", {"size": ffi.sizeof("qv_request_opts")})
    cu = ffi.new("char[]", url.encode())
    o.url = cu
    fp, rp = ffi.new("qv_future **"), ffi.new("qv_response **")
    futs = [concurrent.futures.Future() for _ in range(n)]
    qvfs = []

    def finish(i: int, qvf) -> None:
        rc = lib.qv_future_result(qvf, rp, 0)
        futs[i].set_result(lib.qv_response_status(rp[0]) if rc == 0 else -rc)

    @ffi.callback("void(qv_future *, void *)")
    def on_done(qvf, arg):  # on quiver's thread, with the GIL taken by cffi
        finish(int(ffi.cast("intptr_t", arg)), qvf)

    cq = None
    drainer = None
    if way == "cq":
        cqp = ffi.new("qv_cq **")
        lib.qv_cq_new(cqp)
        cq = cqp[0]

        def drain() -> None:
            out = ffi.new("qv_future **")
            poller = select.poll()
            poller.register(lib.qv_cq_fd(cq), select.POLLIN)
            left = n
            while left:
                while lib.qv_cq_pop(cq, out) == 0:
                    finish(int(ffi.cast("intptr_t", lib.qv_future_user_data(out[0]))), out[0])
                    lib.qv_future_release(out[0])
                    left -= 1
                if left:
                    poller.poll()

        drainer = threading.Thread(target=drain)
        drainer.start()
    c0 = time.process_time()
    for i in range(n):
        o.user_data = ffi.cast("void *", i)
        lib.qv_request(sp[0], fp, o)
        qvfs.append(fp[0])
        if way == "callback":
            lib.qv_future_add_done_callback(fp[0], on_done, ffi.cast("void *", i))
        elif way == "cq":
            lib.qv_cq_add(cq, fp[0])
    ok = 0
    for i, f in enumerate(futs):
        if way == "pull":
            lib.qv_future_result(qvfs[i], ffi.NULL, -1)
            finish(i, qvfs[i])
        ok += f.result() == 200
    cpu = time.process_time() - c0
    if drainer:
        drainer.join()
        lib.qv_cq_free(cq)
    for q in qvfs:
        lib.qv_future_release(q)
    lib.qv_session_free(sp[0])
    lib.qv_executor_free(ex[0])
    assert ok == n, f"{way}: {ok}/{n} ok"
    return cpu / n * 1e6


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--way":
        print(f"{run(sys.argv[2], sys.argv[3], int(sys.argv[4])):.1f}")
        return 0
    url, n, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5000, \
        int(sys.argv[3]) if len(sys.argv) > 3 else 5
    got: dict = {w: [] for w in WAYS}
    for _ in range(runs):
        for w in WAYS:
            out = subprocess.run([sys.executable, __file__, "--way", w, url, str(n)],
                                 capture_output=True, text=True, timeout=300, env=os.environ)
            if out.returncode:
                print(f"{w}: failed: {out.stderr.strip()[-300:]}")
                return 1
            got[w].append(float(out.stdout))
    for w in WAYS:
        print(f"{w:9s} CPU µs/req median {statistics.median(got[w]):.1f} "
              f"(min {min(got[w]):.1f}, max {max(got[w]):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
