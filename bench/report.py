"""Turns bench/run's raw per-run numbers into the Markdown report.

    /usr/bin/python3 report.py RAW.tsv META.txt > results.md

META.txt's mode=targets (TARGETS=1 bench/run) gives issue #19's target
tables instead (see targets_report).

Per client and configuration: medians over the runs that passed their checks
of requests/s (requests / the client's own wall time of the load), CPU
microseconds per request ((user + sys of the whole client process, from
wait4) / requests), and peak RSS (maxrss). Ratios are of medians from the
same bench/run invocation.
"""

import csv
import statistics
import sys

ORDER = ["raw_multi", "raw_multi_sr", "raw_multi_lq", "qv_loop", "raw_threads", "raw_threads_sr",
         "raw_threads_lq", "qv_threads", "qv_processes", "curl", "wrk", "h2load",
         "requests_futures"]
FLOOR = {"qv_loop": "raw_multi", "qv_threads": "raw_threads", "qv_processes": "raw_threads",
         "raw_threads_lq": "raw_threads", "raw_threads_sr": "raw_threads"}
# The floors the targets judge: the raw clients sending quiver's request
# (--same-request), as bench/targets does.
SAME_REQUEST = {"raw_multi": "raw_multi_sr", "raw_threads": "raw_threads_sr"}
LABEL = {
    "raw_multi": "raw libcurl multi (1 thread)",
    "qv_loop": "quiver QV_LOOP",
    "raw_multi_lq": "raw libcurl multi, quiver's libcurl options",
    "raw_multi_sr": "raw libcurl multi, quiver's request",
    "raw_threads_sr": "raw libcurl thread-per-handle, quiver's request",
    "raw_threads": "raw libcurl thread-per-handle",
    "raw_threads_lq": "raw libcurl thread-per-handle, quiver's libcurl options",
    "qv_threads": "quiver QV_THREADS",
    "qv_processes": "quiver QV_PROCESSES",
    "curl": "curl --parallel",
    "wrk": "wrk -t1",
    "h2load": "h2load -t1",
    "requests_futures": "requests-futures",
}
PROTO = {"h1": "HTTP/1.1", "h2": "HTTP/2 over TLS", "none": "no network"}


def load(path):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            rows.append(r)
    return rows


def num(x, default=0.0):
    try:
        return float(x)
    except (TypeError, ValueError):
        return default


def suite_key(r):
    return (r["proto"], int(r["conc"]), r["client"])


def target_key(r):
    return (r.get("idiom", "window"), r.get("body", "small"), r["proto"], int(r["conc"]),
            r["client"])


def summarise(rows, key=suite_key):
    """{key(row): stats} over the runs that passed."""
    groups = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    out = {}
    for key, runs in groups.items():
        good = [r for r in runs if r["rc"] == "0" and r["requests"] and r["ok"] == r["requests"]
                and num(r["requests"]) > 0 and num(r["seconds"]) > 0]
        s = {"runs": len(runs), "good": len(good)}
        if good:
            cpu = [(num(r["user_s"]) + num(r["sys_s"])) * 1e6 / num(r["requests"]) for r in good]
            rps = [num(r["requests"]) / num(r["seconds"]) for r in good]
            rss = [num(r["maxrss_kb"]) / 1024 for r in good]
            csw = [num(r.get("csw")) / num(r["requests"]) for r in good]
            s.update(cpu=statistics.median(cpu), cpu_min=min(cpu), cpu_max=max(cpu),
                     rps=statistics.median(rps), rss=statistics.median(rss),
                     rss_max=max(rss), csw=statistics.median(csw), http=good[0]["http"],
                     conns=good[0]["conns"],
                     requests=good[0]["requests"],
                     ns=statistics.median([num(r["seconds"]) * 1e9 / num(r["requests"])
                                           for r in good]))
            load = [num(r.get("load_cpu_s")) * 1e6 / num(r["requests"]) for r in good
                    if r.get("load_cpu_s")]
            if load:
                s["load_cpu"] = statistics.median(load)
        out[key] = s
    return out


def paired(rows, a, b, key=suite_key, where=()):
    """Median over run indexes of cpu(a)/cpu(b), both runs having passed, over
    the rows whose key(row) without its client is where."""
    per = {}
    for r in rows:
        if key(r)[:-1] != tuple(where) or r["client"] not in (a, b):
            continue
        if r["rc"] != "0" or r["ok"] != r["requests"] or num(r["requests"]) <= 0:
            continue
        cpu = (num(r["user_s"]) + num(r["sys_s"])) / num(r["requests"])
        per.setdefault(r["run"], {})[r["client"]] = cpu
    ratios = [v[a] / v[b] for v in per.values() if a in v and b in v and v[b] > 0]
    return statistics.median(ratios) if ratios else None


def fmt_http(v):
    return {"11": "1.1", "20": "2", "10": "1.0", "30": "3"}.get(str(v), str(v) or "?")


def verdict(ok):
    if ok is None:
        return "–"
    return "**met**" if ok else "**MISSED**"


def header(meta, title):
    p = print
    p(f"# {title}")
    p()
    p(f"{meta.get('date', '?')} · quiver {meta.get('quiver', '?')} · libcurl "
      f"{meta.get('libcurl', '?')} · nginx {meta.get('nginx', '?')} · {meta.get('cpu', '?')} · "
      f"kernel {meta.get('kernel', '?')}")
    p()


MIB = 1024 * 1024
IDIOM = {"window": "sliding window", "all": "submit all, collect in order"}
BODY = {"small": "100 B", "64k": "64 KiB"}
# quiver's executors, the raw client each is judged against (sending the
# request quiver sends: --same-request) and the minimal raw client beside it.
PAIRS = (("qv_loop", "raw_multi_sr", "raw_multi", "QV_LOOP"),
         ("qv_threads", "raw_threads_sr", "raw_threads", "QV_THREADS"))


def mark(ok):
    return "✓" if ok else "✗"


def cpu_limit(client, conc):
    """Issue #19: CPU/request ≤ 1.10× the floor's; ≤ 1.00× for QV_LOOP at c = 1."""
    return 1.00 if client == "qv_loop" and conc == 1 else 1.10


def targets_report(rows, meta):
    """Issue #19's targets: CPU per request of each executor over its raw
    floor in the same idiom, and peak RSS of the submit-all idiom over the
    minimal raw client's in the window idiom (C transfers, nothing kept or
    queued; the same-request floor's if the minimal one did not run)."""
    S = summarise(rows, target_key)
    keys = sorted({k[:-1] for k in S}, key=lambda k: (k[0] != "window", k[1] != "small",
                                                      k[2], k[3]))
    p = print
    met = total = 0
    header(meta, "quiver against issue #19's targets")
    p(f"Settings: {meta.get('settings', '?')}; runs finished: {meta.get('runs_done', '?')}. "
      f"Machine load: {meta.get('load', '?')} (2 shared "
      f"cores: other work shows up as spread between runs).")
    p()
    p(f"Request bytes: {meta.get('same_request') or 'not checked'}.")
    p()
    p("CPU is user+sys of the whole client process per request, the median over the runs that "
      "passed every check (the last column: the fewest of the clients); the ratio is of the "
      "medians, with the median of per-run ratios (quiver run right after its floor) in "
      "brackets. Limits: 1.10×, and 1.00× for QV_LOOP at c = 1. The floors (raw µs) send the "
      "request quiver sends, byte for byte (`--same-request`: its Accept-Encoding and "
      "User-Agent lines); \"÷ min\" is quiver over the minimal raw client (no header line of "
      "its own), measured in the same run, not judged. The raw clients run the same idiom: in "
      "the window idiom the floor keeps each body in memory as quiver does (one buffer per "
      "easy handle, reused for its next request) and the minimal client counts it and drops "
      "it; in submit-all they make a record per request up front, keep each body, and "
      "collect in submission order.")
    p()
    p("## CPU per request")
    p()
    p("| idiom | body | HTTP | c | raw multi µs | QV_LOOP µs | ÷ | | ÷ min | raw threads µs "
      "| QV_THREADS µs | ÷ | | ÷ min | runs ok |")
    p("|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---|")
    for k in keys:
        cells, oks = [], []
        for q, floor, minimal, _ in PAIRS:
            a, b = S.get(k + (q,), {}), S.get(k + (floor,), {})
            m = S.get(k + (minimal,), {})
            vs_min = f"{a['cpu'] / m['cpu']:.2f}×" if a.get("cpu") and m.get("cpu") else "–"
            if not (a.get("cpu") and b.get("cpu")):
                cells += [f"{b['cpu']:.1f}" if b.get("cpu") else "–",
                          f"{a['cpu']:.1f}" if a.get("cpu") else "–", "–", "–", vs_min]
            else:
                r = a["cpu"] / b["cpu"]
                pr = paired(rows, q, floor, target_key, k)
                ok = r <= cpu_limit(q, k[3])
                met, total = met + ok, total + 1
                cells += [f"{b['cpu']:.1f}", f"{a['cpu']:.1f}",
                          f"{r:.2f}× ({pr:.2f}×)" if pr else f"{r:.2f}×", mark(ok), vs_min]
            oks += [s for s in (b, a, m) if s]
        worst = min(oks, key=lambda s: s["good"] - s["runs"])
        p(f"| {IDIOM[k[0]]} | {BODY[k[1]]} | {PROTO[k[2]]} | {k[3]} | " + " | ".join(cells) +
          f" | {worst['good']}/{worst['runs']} |")

    p()
    p("## Peak RSS")
    p()
    p("Against the raw floor's peak RSS in the window idiom (the minimal raw client, the same "
      "body, HTTP version and c: what libcurl needs for c transfers, no body kept, nothing "
      "queued; marked † where the minimal client did not run (MINIMAL=0): the floor sending "
      "quiver's request, which keeps a body per handle). With N futures "
      "queued (submit all, 100 B bodies): ≤ 1.2× the floor's + 512 B × N. With 64 KiB bodies "
      "in submit all: ≤ 2× the floor's. \"raw, submit all\" is the raw client in the same "
      "idiom, for comparison (its threads pile up finished bodies too).")
    p()
    p("| target | executor | HTTP | c | quiver MiB | floor MiB | limit MiB | | raw, submit all "
      "MiB |")
    p("|---|---|---|---:|---:|---:|---:|---|---:|")
    for body in ("small", "64k"):
        for q, floor, minimal, name in PAIRS:
            for k in keys:
                if k[0] != "all" or k[1] != body or (body == "small" and k[3] == 1):
                    continue
                a = S.get(k + (q,), {})
                f = S.get(("window",) + k[1:] + (minimal,), {})
                dagger = "" if f.get("rss") else " †"
                f = f if f.get("rss") else S.get(("window",) + k[1:] + (floor,), {})
                same = S.get(k + (floor,), {})
                if not (a.get("rss") and f.get("rss")):
                    continue
                n = int(a["requests"])
                if body == "small":
                    what = f"{n:,} futures queued"
                    limit = 1.2 * f["rss"] + 512 * n / MIB
                else:
                    what = "64 KiB bodies, submit all"
                    limit = 2 * f["rss"]
                ok = a["rss"] <= limit
                met, total = met + ok, total + 1
                raw = f"{same['rss']:.1f}" if same.get("rss") else "–"
                p(f"| {what} | {name} | {PROTO[k[2]]} | {k[3]} | {a['rss']:.1f} | "
                  f"{f['rss']:.1f}{dagger} | {limit:.1f} | {mark(ok)} | {raw} |")
    p()
    p(f"**{met} of {total} targets met.** Total bench time: {meta.get('elapsed_s', '?')} s.")


def main():
    rows = load(sys.argv[1])
    meta = {}
    with open(sys.argv[2]) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    if meta.get("mode") == "targets":
        # A matrix stopped early: only the runs it finished.
        done = int(meta.get("runs_done") or 1 << 30)
        targets_report([r for r in rows if int(r["run"]) <= done], meta)
        return
    S = summarise(rows)
    p = print

    header(meta, "quiver benchmark results")
    p(f"Peers: wrk {meta.get('wrk', '?')}, h2load {meta.get('h2load', '?')}, Python "
      f"{meta.get('python', '?')} with requests {meta.get('requests', '?')} and "
      f"requests-futures {meta.get('requests_futures', '?')}. Settings: {meta.get('settings', '?')}.")
    p()
    p(f"Machine load: {meta.get('load', '?')}. The machine is shared (2 cores); other work "
      f"running at the same time shows up as spread between runs.")
    p()
    p("Medians over the runs that passed every check. CPU is user+sys of the whole client "
      "process per request (min–max over the runs in brackets); req/s is from the client's own "
      "timing of the load; switches/req are the context switches of all the client's threads "
      "(and reaped workers) per request, from wait4; RSS is peak resident memory. \"× floor\" "
      "is CPU/request divided by the raw libcurl client the row is built on (thread-per-handle "
      "for QV_THREADS and QV_PROCESSES, raw multi for the rest) sending the request quiver "
      "sends (--same-request), the floor the targets judge; \"× min\" divides by the minimal "
      "raw client (no header line of its own) instead. QV_PROCESSES' CPU includes its "
      "worker processes (wait4 counts reaped descendants); its RSS is the largest single process, "
      "not the sum.")

    for proto in ("h1", "h2"):
        for conc in (8, 64):
            keys = [(proto, conc, c) for c in ORDER if (proto, conc, c) in S]
            if not keys:
                continue
            p()
            p(f"## {PROTO[proto]}, concurrency {conc}")
            p()
            p("| client | HTTP | req/s | CPU µs/req | × floor | × min | switches/req | peak RSS MB "
              "| conns | runs ok |")
            p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for key in keys:
                s = S[key]
                c = key[2]
                if "cpu" not in s:
                    p(f"| {LABEL[c]} | – | – | – | – | – | – | – | – | {s['good']}/{s['runs']} |")
                    continue
                minimal = FLOOR.get(c, "raw_multi")
                ratios = []
                for f in (SAME_REQUEST[minimal], minimal):
                    floor = S.get((proto, conc, f), {})
                    ratios.append(f"{s['cpu'] / floor['cpu']:.2f}×" if floor.get("cpu") and
                                  c not in SAME_REQUEST and c not in SAME_REQUEST.values()
                                  else "–")
                p(f"| {LABEL[c]} | {fmt_http(s['http'])} | {s['rps']:,.0f} | "
                  f"{s['cpu']:.1f} ({s['cpu_min']:.1f}–{s['cpu_max']:.1f}) | {ratios[0]} | "
                  f"{ratios[1]} | "
                  f"{s['csw']:.2f} | {s['rss']:.1f} | {s['conns']} | {s['good']}/{s['runs']} |")

    lc = [(k, v["load_cpu"]) for k, v in sorted(S.items()) if v.get("load_cpu")]
    if lc:
        p()
        p("requests-futures speaks HTTP/1.1 only (over TLS in the HTTP/2 rows). Its CPU above "
          "includes the interpreter's start-up and imports; over the load alone it is: " +
          ", ".join(f"{PROTO[k[0]]} c={k[1]}: {v:.0f} µs/req" for k, v in lc) + ".")

    # ---- targets
    p()
    p("## Targets (ratios of medians from this run)")
    p()
    p("Verdicts use the ratio of the medians; \"per-run\" is the median of the ratios of runs "
      "made back to back (quiver right after its floor), which cancels slow drifts in load.")
    p()
    p("| target | configuration | measured | per-run | verdict |")
    p("|---|---|---:|---:|---|")
    def target(name, cfg, key, num, den, ok, digits=2):
        """One row: CPU/req of num over den in configuration key, if both ran."""
        a, b = S.get(key + (num,), {}), S.get(key + (den,), {})
        if not (a.get("cpu") and b.get("cpu")):
            return
        r = a["cpu"] / b["cpu"]
        pr = paired(rows, num, den, where=key)
        prs = f"{pr:.{digits}f}×" if pr else "–"
        p(f"| {name} | {cfg} | {r:.{digits}f}× | {prs} | {verdict(ok(r))} |")

    for proto in ("h1", "h2"):
        for conc in (8, 64):
            cfg, key = f"{PROTO[proto]}, c={conc}", (proto, conc)
            for q, floor, name in (("qv_loop", "raw_multi",
                                    "QV_LOOP ≤ 1.10× raw multi (quiver's request) CPU/req"),
                                   ("qv_threads", "raw_threads",
                                    "QV_THREADS ≤ 1.10× raw thread-per-handle (quiver's request) "
                                    "CPU/req")):
                target(name, cfg, key, q, SAME_REQUEST[floor], lambda r: r <= 1.10)
                target("÷ the minimal floor (not judged)", cfg, key, q, floor, lambda r: None)
            target("QV_PROCESSES ≤ 1.5× QV_THREADS CPU/req", cfg, key, "qv_processes",
                   "qv_threads", lambda r: r <= 1.5)
            for q, name in (("qv_loop", "QV_LOOP"), ("qv_threads", "QV_THREADS")):
                target(f"{name} ≥ 30× less CPU/req than requests-futures", cfg, key,
                       "requests_futures", q, lambda r: r >= 30, digits=1)
    a, b = S.get(("h1", 10000, "qv_loop"), {}), S.get(("h1", 10000, "raw_multi"), {})
    if a.get("rss") and b.get("rss"):
        r = a["rss"] / b["rss"]
        p(f"| RSS at 10,000 in flight ≤ 1.3× raw multi | HTTP/1.1, c=10000 | "
          f"{a['rss']:.0f} / {b['rss']:.0f} MB = {r:.2f}× | – | {verdict(r <= 1.3)} |")

    # ---- 10k
    if a or b:
        p()
        p("## 10,000 requests in flight (HTTP/1.1, max_workers = concurrency = 10,000)")
        p()
        p("| client | requests | conns opened | req/s | CPU µs/req | peak RSS MB | runs ok |")
        p("|---|---:|---:|---:|---:|---:|---:|")
        for c, s in (("raw_multi", b), ("qv_loop", a)):
            if s.get("cpu"):
                p(f"| {LABEL[c]} | {s['requests']} | {s['conns']} | {s['rps']:,.0f} | "
                  f"{s['cpu']:.1f} | {s['rss']:.1f} (max {s['rss_max']:.1f}) | "
                  f"{s['good']}/{s['runs']} |")
            elif s:
                p(f"| {LABEL[c]} | – | – | – | – | – | {s['good']}/{s['runs']} |")

    # ---- one request at a time, and the overhead of one future
    p()
    p("## One future: submit + complete")
    p()
    p("One request at a time (concurrency 1; quiver waits for each future before submitting "
      "the next), HTTP/1.1 keep-alive, /small:")
    p()
    p("| client | req/s | CPU µs/req | quiver − raw, CPU µs/req |")
    p("|---|---:|---:|---:|")
    for q, floor in (("qv_loop", "raw_multi"), ("qv_threads", "raw_threads")):
        for c in (floor, q):
            s = S.get(("h1", 1, c), {})
            if not s.get("cpu"):
                continue
            diff = ""
            if c == q and S.get(("h1", 1, floor), {}).get("cpu"):
                diff = f"{s['cpu'] - S[('h1', 1, floor)]['cpu']:+.1f}"
            p(f"| {LABEL[c]} | {s['rps']:,.0f} | {s['cpu']:.1f} | {diff} |")
    o = S.get(("none", 1, "qv_overhead"), {})
    if o.get("ns"):
        p()
        p(f"No network (an ftp:// URL, which quiver completes at once as a shifted QV_EURL "
          f"error: qv_get + qv_future_result + qv_future_release, no executor hand-off, no "
          f"libcurl transfer): **{o['ns'] / 1000:.2f} µs wall per future**, "
          f"{o['cpu'] * 1000:.0f} ns CPU per future including process start-up "
          f"({o['requests']} futures, median of {o['good']} runs).")
    p()
    p(f"Total bench time: {meta.get('elapsed_s', '?')} s.")


if __name__ == "__main__":
    main()
