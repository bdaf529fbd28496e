-- Loaded by every wrk run of `make bench`: prints one machine-readable line when the run ends.
-- Latency percentiles are wrk's (microseconds, per request, closed loop).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"socket_errors":%d,"timeouts":%d,"non_2xx_3xx":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect + e.read + e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
