"""Attributes perf samples of a benchmark client to buckets of work.

    perf script -F tid,ip,sym,dso -i perf.data | python3 perf_buckets.py N FREQ [LABEL]

N is the number of requests the recorded run made, FREQ the sampling
frequency given to perf record (-F). Each sample is put in the bucket of the
frame nearest the leaf of its call chain (recorded with --call-graph dwarf)
that matches a rule below, so time in libcurl under quiver's header callback
counts as "header/body callbacks", time in the kernel under
curl_multi_wakeup as "hand-off", and so on. Prints a Markdown table: samples,
share, and approximate CPU µs per request (samples / FREQ / N).
"""

import re
import sys
from collections import Counter

# (bucket, regex on the symbol); the match nearest the leaf wins.
RULES = [
    ("start-up and teardown", r"^(_dl_start|_dl_init|dl_main|curl_global_init|"
                              r"curl_global_cleanup|exit|__libc_csu_init|_dl_fini|"
                              r"qv_global_init|qv_executor_new|qv_session_new|qv_executor_free|"
                              r"qv_session_free|curl_easy_cleanup|curl_multi_cleanup)$"),
    ("bench client's own checks", r"^(check|bench_now)$"),
    # quiver: submit side
    ("submit: request record (option merge, URL parse, copies)", r"^qv_req_build$"),
    ("submit: future alloc, session list, queue", r"^(qv_request|qv_future_alloc|qv_executor_submit)$"),
    ("hand-off: submit -> I/O thread (curl_multi_wakeup, cond signal)",
     r"^(curl_multi_wakeup|loop_notify|tp_notify)$"),
    # quiver: I/O side
    ("transfer: easy reset + options per request", r"^(qv_transfer_setup|curl_easy_reset)$"),
    ("transfer: header/body callbacks (response building)", r"^(header_cb|write_cb)$"),
    ("transfer: reused-connection check (PREREQFUNCTION peek, socket callbacks)",
     r"^(prereq_cb|open_cb|close_cb|qv_conncheck_setup|qv_conncheck_retry|local_port)$"),
    ("transfer: collect outcome (getinfo, copies)", r"^(qv_transfer_collect|collect_error)$"),
    ("loop: cancel/read-timeout scan", r"^(scan|qv_transfer_should_abort|qv_transfer_poll_ms)$"),
    ("libcurl: multi add/remove handle", r"^(curl_multi_add_handle|curl_multi_remove_handle)$"),
    ("libcurl: curl_multi_poll (waiting for sockets)", r"^curl_multi_poll$"),
    ("libcurl: transfer work (curl_multi_perform / curl_easy_perform)",
     r"^(curl_multi_perform|curl_easy_perform)$"),
    ("hand-off: I/O -> delivery threads", r"^deliver_batch$"),
    ("delivery: complete future (hooks, callbacks, wake waiters)",
     r"^(qv_transfer_deliver|qv_transfer_settle|qv_future_settle|qv_future_finish|"
     r"qv_future_complete|on_done)$"),
    ("hand-off: delivery threads sleeping/waking", r"^delivery_main$"),
    ("user thread: waiting for a future (futex sleep/wake)",
     r"^(qv_future_wait|qv_future_result|wait_bounded)$"),
    ("user thread: release future + response", r"^qv_future_release$"),
    ("thread pool: worker queue wait/pop", r"^worker_main$"),
    ("loop: I/O thread glue (queue lock, start/finish)", r"^(io_main|start|finish)$"),
    ("raw threads: worker loop", r"^worker_main$"),
]
COMPILED = [(b, re.compile(r)) for b, r in RULES]
LINE = re.compile(r"^\s*[0-9a-f]+\s+(\S+)")


def bucket(frames):
    for sym in frames:  # leaf first
        for b, rx in COMPILED:
            if rx.search(sym):
                return b
    return "other (kernel/libc outside the above, unwinding gaps)"


def main():
    n = int(sys.argv[1])
    freq = float(sys.argv[2])
    label = sys.argv[3] if len(sys.argv) > 3 else ""
    counts = Counter()
    frames = []
    total = 0
    for line in sys.stdin:
        if not line.strip():
            if frames:
                counts[bucket(frames)] += 1
                total += 1
                frames = []
            continue
        if line[0] not in " \t":
            continue  # the tid line of a new sample
        m = LINE.match(line)
        if m:
            sym = m.group(1)
            sym = sym.split("+")[0]
            frames.append(sym)
    if frames:
        counts[bucket(frames)] += 1
        total += 1
    if not total:
        print("no samples")
        return 1
    print(f"| {label or 'bucket'} | samples | share | ≈ CPU µs/req |")
    print("|---|---:|---:|---:|")
    for b, c in counts.most_common():
        print(f"| {b} | {c} | {100 * c / total:.1f}% | {c / freq / n * 1e6:.2f} |")
    print(f"| **total** | {total} | 100% | {total / freq / n * 1e6:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
