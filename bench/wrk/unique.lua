-- MISS runs: every request asks for a page never asked before (`?n=<run>-<thread>-<counter>`;
-- the bench's edge-isr keys the `n` query parameter), and each thread stops after
-- BENCH_MAX_PER_THREAD answers (time- and count-limited: each MISS stores a page in KV).
-- Usage: wrk ... -s unique.lua URL -- <run id> <max answers per thread>
local threads = {}
local run_id, max_per_thread = "0", 1000000

function setup(thread)
  thread:set("tid", tostring(#threads + 1))
  table.insert(threads, thread)
end

function init(args)
  run_id = args[1] or "0"
  max_per_thread = tonumber(args[2] or "1000000")
  counter = 0
  answered = 0
  base = wrk.path
  sep = string.find(base, "?", 1, true) and "&" or "?"
end

function request()
  counter = counter + 1
  return wrk.format(nil, base .. sep .. "n=" .. run_id .. "-" .. tid .. "-" .. counter)
end

function response(status, headers, body)
  answered = answered + 1
  if answered >= max_per_thread then
    wrk.thread:stop()
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"socket_errors":%d,"timeouts":%d,"non_2xx_3xx":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect + e.read + e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
