-- wrk script for bench/run: adds no per-request work (no request() or
-- response() function, which would run Lua for every request); at the end it
-- prints exact counts so bench/run can check the run: no socket or status
-- errors, and every response the same number of bytes (headers + body).
done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "wrk_summary requests=%d bytes=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
      summary.requests, summary.bytes, summary.duration,
      e.connect, e.read, e.write, e.status, e.timeout))
end
