"""Python clients side by side: Debian's requests-futures, the quiver drop-in
(python/requests_futures) and quiver.Session, on the requests-futures idiom
(submit all N, then result() in order), HTTP/1.1 against a local nginx; and
cffi_floor, the same through bare cffi calls (what the C library and the
binding's calls cost, with no Python objects per request) on the loop
executor, cffi_floor_threads on the threads executor.

    bench/python_bench.py client --mode MODE -n N -c C URL    # one run, one line
    bench/python_bench.py compare -n N -c 8,64 --runs R URL

`compare` runs every mode in its own process, interleaved (run 1 of each
mode, then run 2 of each, ...), and prints the medians. A mode may carry a
variant: MODE@abi runs it on cffi's ABI mode (QUIVER_BINDING=abi), and
MODE@before on the checkout named by --before (an earlier commit, for
before/after: its python/, library and compiled binding, all three). It
prints CPU per request (user + system time of the whole process, every
thread of it, quiver's included, over the load alone: from the first
submit to the last result) and requests
per second, and nginx_us: the CPU per request of nginx's workers over the
same load (their /proc schedstat; QV_NGINX_PIDFILE names nginx's pid file).
For one client, nginx does the same work per request in every run, so it
tells how fast the VM's CPU ran during that run: that speed moves by up to
1.6x between runs seconds apart, in step with every client's CPU
(bench/NOTES.md, 2026-12-07 09:51), so `compare` also prints each client's
CPU over nginx's, run by run, which holds still while the speed moves: the
measure for before/after of one client. (Not across clients: nginx works
per wake-up as well as per request, and requests-futures, one request a
wake-up, costs it ~3x what quiver's bursts do.) Started by
bench/python_run, which starts nginx; PYTHONPATH and QUIVER_LIB must point
at python/ and libquiver.so.0 (it sets them).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time

MODES = ("requests_futures", "dropin", "quiver_threads", "quiver_loop", "cffi_floor",
         "cffi_floor_threads")
DEBIAN_RF = "/usr/lib/python3/dist-packages/requests_futures/sessions.py"


def nginx_ns() -> int:
    """CPU ns so far of nginx's workers (0 without QV_NGINX_PIDFILE)."""
    path = os.environ.get("QV_NGINX_PIDFILE")
    if not path:
        return 0
    with open(path) as f:
        master = f.read().strip()
    total = 0
    with open(f"/proc/{master}/task/{master}/children") as f:
        for pid in f.read().split():
            with open(f"/proc/{pid}/schedstat") as g:
                total += int(g.read().split()[0])
    return total


def report(mode: str, c: int, n: int, ok: int, secs: float, cpu: float, ngx: int) -> None:
    print(f"mode={mode} c={c} n={n} ok={ok} seconds={secs:.4f} cpu_us_per_req="
          f"{cpu / n * 1e6:.1f} req_per_s={n / secs:.0f} nginx_us_per_req={ngx / n / 1e3:.1f}")


def make_session(mode: str, c: int):
    if mode == "requests_futures":
        spec = importlib.util.spec_from_file_location("debian_requests_futures", DEBIAN_RF)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        s = mod.FuturesSession(max_workers=c)
        s.trust_env = False  # loopback only, whatever the environment says
        return s
    if mode == "dropin":
        from requests_futures.sessions import FuturesSession
        s = FuturesSession(max_workers=c)
        s.trust_env = False
        return s
    import quiver
    return quiver.Session(executor=mode.split("_")[1], max_workers=c, proxy="")


def floor(n: int, c: int, url: str, size: int, kind: int) -> int:
    """The floor under any binding: the same requests on an executor of
    `kind` (1: loop, 0: threads) through bare cffi calls (submit, result,
    status and body length), no Python objects per request."""
    from quiver._ffi import ffi, lib
    ex = ffi.new("qv_executor **")
    lib.qv_executor_new(ex, ffi.new("qv_executor_opts *", {
        "size": ffi.sizeof("qv_executor_opts"), "kind": kind, "max_workers": c}))
    sp = ffi.new("qv_session **")
    lib.qv_session_new(sp, ffi.new("qv_session_opts *", {
        "size": ffi.sizeof("qv_session_opts"), "executor": ex[0], "proxy": ffi.new("char[]", b"")}))
    o = ffi.new("qv_request_opts *", {"size": ffi.sizeof("qv_request_opts")})
    o.url = cu = ffi.new("char[]", url.encode())  # noqa: F841 - kept alive
    fp, rp, lp = ffi.new("qv_future **"), ffi.new("qv_response **"), ffi.new("size_t *")
    g0 = nginx_ns()
    t0, c0 = time.monotonic(), time.process_time()
    fs = []
    for _ in range(n):
        lib.qv_request(sp[0], fp, o)
        fs.append(fp[0])
    ok = 0
    for f in fs:
        if lib.qv_future_result(f, rp, -1) == 0:
            lib.qv_response_body(rp[0], lp)
            ok += lib.qv_response_status(rp[0]) == 200 and lp[0] == size
        lib.qv_future_release(f)
    cpu, secs = time.process_time() - c0, time.monotonic() - t0
    ngx = nginx_ns() - g0
    lib.qv_session_free(sp[0])
    lib.qv_executor_free(ex[0])
    report("cffi_floor_threads" if kind == 0 else "cffi_floor", c, n, ok, secs, cpu, ngx)
    return 0 if ok == n else 2


def client(mode: str, n: int, c: int, url: str, size: int) -> int:
    if mode.startswith("cffi_floor"):
        return floor(n, c, url, size, 0 if mode == "cffi_floor_threads" else 1)
    s = make_session(mode, c)
    # one request first: connections and lazily made objects are not the load
    assert s.get(url).result(timeout=30).status_code == 200
    g0 = nginx_ns()
    t0 = time.monotonic()
    c0 = time.process_time()
    futures = [s.get(url) for _ in range(n)]
    ok = 0
    for f in futures:
        r = f.result(timeout=120)
        ok += r.status_code == 200 and len(r.content) == size
    cpu = time.process_time() - c0
    secs = time.monotonic() - t0
    ngx = nginx_ns() - g0
    s.close()
    report(mode, c, n, ok, secs, cpu, ngx)
    return 0 if ok == n else 2


def variant_env(label: str, before: str) -> tuple[str, dict]:
    """The mode and the environment of a label: MODE, MODE@abi, MODE@before."""
    mode, _, variant = label.partition("@")
    env = dict(os.environ)
    if variant == "abi":
        env["QUIVER_BINDING"] = "abi"
    elif variant == "before":
        # the whole stack of the other checkout: its python/, and its
        # library with the compiled binding built beside it (a python/
        # alone would run on this tree's binding and library)
        lib = os.path.join(before, "build", "libquiver.so.0")
        if not before or not os.path.isdir(os.path.join(before, "python")) or \
                not os.path.exists(lib):
            raise SystemExit("MODE@before needs --before DIR, a checkout with python/ and "
                             "build/libquiver.so.0")
        env["PYTHONPATH"] = os.path.join(before, "python")
        env["QUIVER_LIB"] = lib
    elif variant:
        raise SystemExit(f"unknown variant in {label!r}: @abi or @before")
    if mode not in MODES:
        raise SystemExit(f"unknown mode in {label!r}")
    return mode, env


def compare(n: int, cs: list[int], runs: int, url: str, size: int, modes: list[str],
            before: str = "") -> int:
    results: dict = {}
    bad = 0
    for run in range(runs):
        for c in cs:
            for label in modes:
                mode, env = variant_env(label, before)
                # requests-futures is ~20x slower: it gets fewer requests
                nn = max(200, n // 10) if mode == "requests_futures" else n
                p = subprocess.run([sys.executable, __file__, "client", "--mode", mode, "-n", str(nn),
                                    "-c", str(c), "-s", str(size), url],
                                   capture_output=True, text=True, timeout=300, env=env)
                line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
                if p.returncode or not line:
                    bad += 1
                    print(f"run {run + 1} {label} c={c} FAILED: {p.stderr.strip()[-500:]}")
                    continue
                kv = dict(f.split("=") for f in line.split())
                results.setdefault((c, label), []).append(kv)
                print(f"run {run + 1}: {label}: {line}", flush=True)
    print()
    print("| client | c | CPU µs/req (median, min–max) | × requests-futures | ÷ nginx's, run by "
          "run (median, min–max) | nginx µs/req | req/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for c in cs:
        base = None
        for mode in modes:
            rs = results.get((c, mode))
            if not rs:
                continue
            cpu = [float(r["cpu_us_per_req"]) for r in rs]
            ngx = [float(r["nginx_us_per_req"]) for r in rs]
            per = [x / g for x, g in zip(cpu, ngx) if g > 0]
            rps = [float(r["req_per_s"]) for r in rs]
            med = statistics.median(cpu)
            if mode == "requests_futures":
                base = med
            ratio = f"1/{base / med:.1f}" if base and mode != "requests_futures" else "1"
            per_s = f"{statistics.median(per):.2f} ({min(per):.2f}–{max(per):.2f})" if per else "-"
            print(f"| {mode} | {c} | {med:.1f} ({min(cpu):.1f}–{max(cpu):.1f}) | {ratio} | "
                  f"{per_s} | {statistics.median(ngx):.1f} | {statistics.median(rps):,.0f} |")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("client", "compare"))
    ap.add_argument("--mode", choices=MODES, help="the client's (client)")
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("-c", default="8,64")
    ap.add_argument("-s", type=int, default=100, help="expected body size")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--modes", default=",".join(MODES), help="MODE, MODE@abi or MODE@before")
    ap.add_argument("--before", default="",
                    help="a checkout, built (python/, build/), for MODE@before")
    ap.add_argument("url")
    a = ap.parse_args()
    if a.what == "client":
        return client(a.mode, a.n, int(a.c), a.url, a.s)
    return compare(a.n, [int(x) for x in a.c.split(",")], a.runs, a.url, a.s,
                   a.modes.split(","), a.before)


if __name__ == "__main__":
    sys.exit(main())
