// CPU profile of one worker in `wrangler dev` while wrk loads one URL. `make bench` uses
// `profileOnce` for its "isolate CPU per HIT" rows (edge-isr's HIT against the JS baseline's);
// run by hand, it prints the functions with the most self time too. Node >= 22 (its WebSocket
// takes headers: wrangler's inspector proxy wants an Origin header).
//
//   [PROFILE_PID=<runtime workerd pid>] [PROFILE_INTERVAL_US=200] \
//     node bench/profile.mjs <inspector port> <url> [seconds=5] [profile.json]
//
// Start the worker with `wrangler dev ... --inspector-port <port>` and warm the URL first. Prints
// wrk's throughput, the isolate's idle share, its busy (non-idle) time per request, and the
// functions with the most self time; writes the .cpuprofile (open it in Chrome DevTools) if asked.
// The profiler itself costs throughput: compare systems profiled the same way, not with the bench.
// Busy time is sampled wall time while the isolate runs: on a loaded machine, time the isolate's
// thread waits for a core counts too, so compare systems profiled alternately, in one run.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { pathToFileURL } from "node:url";

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout) || 100;

/** User + system CPU time (ms) in a /proc `stat` line (its fields after the command's name). */
function statCpuMs(stat) {
  const f = stat.slice(stat.lastIndexOf(") ") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

/**
 * CPU time (user + system, ms) of each thread of process `pid`, by thread id, with its name;
 * `{}` where there is no /proc. The runtime runs the isolate on its main thread (tid = pid);
 * V8's profiler samples from threads of its own, which this keeps apart.
 */
export function threadCpu(pid) {
  const out = {};
  let tids = [];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      out[tid] = { name: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")), ms: statCpuMs(stat) };
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

function medianOf(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1] : NaN;
}

/** CPU time (user + system, ms) process `pid` has used, all its threads together. */
export function processCpuMs(pid) {
  return statCpuMs(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
}

/** What each thread of `pid` spent between two `threadCpu` readings, ms. */
export function threadCpuDelta(before, after) {
  return Object.entries(after).map(([tid, a]) => ({ tid: Number(tid), name: a.name, ms: a.ms - (before[tid]?.ms || 0) }));
}

/**
 * Profiles the isolate behind inspector `port` while wrk loads `url` for `secs` seconds (1
 * thread, 10 connections, as the bench). Returns wrk's throughput and request count, the
 * isolate's busy time per request, its idle share, the self time by function, and the profile;
 * with `pid` (the runtime's process) also its threads' CPU while profiled; `interval` is the
 * sampling interval asked of V8, in microseconds.
 */
export async function profileOnce(port, url, secs = 5, { pid, interval = 200 } = {}) {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const target = targets.find((t) => t.webSocketDebuggerUrl);
  if (!target) throw new Error(`no inspector target on port ${port}`);
  const ws = new WebSocket(target.webSocketDebuggerUrl, { headers: { Origin: "http://127.0.0.1" } });
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`cannot connect to ${target.webSocketDebuggerUrl}`));
  });
  let nextId = 0;
  const pending = new Map();
  ws.onmessage = (m) => {
    const d = JSON.parse(m.data);
    if (d.id && pending.has(d.id)) {
      pending.get(d.id)(d);
      pending.delete(d.id);
    }
  };
  const call = (method, params = {}) =>
    new Promise((resolve) => {
      const id = ++nextId;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });

  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval });
  await call("Profiler.start");
  const cpu0 = pid ? threadCpu(pid) : null;
  const w = spawnSync("wrk", ["-t1", "-c10", `-d${secs}s`, "--latency", url], { encoding: "utf8", timeout: (Number(secs) + 30) * 1000 });
  const threads = pid ? threadCpuDelta(cpu0, threadCpu(pid)) : null;
  const profile = (await call("Profiler.stop")).result.profile;
  ws.close();

  const requests = Number((w.stdout.match(/(\d+) requests in/) || [])[1]);
  const rps = Number((w.stdout.match(/Requests\/sec:\s*([\d.]+)/) || [])[1]);
  if (!requests) throw new Error(`wrk ${url} gave no requests: ${w.stderr}${w.stdout}`);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let all = 0;
  let idle = 0;
  profile.samples.forEach((s, i) => {
    const dt = profile.timeDeltas[i] || 0;
    const f = byId.get(s).callFrame;
    all += dt;
    if (f.functionName === "(idle)") idle += dt;
    const name = `${f.functionName || "(anonymous)"} ${f.url ? `${f.url.split("/").pop()}:${f.lineNumber + 1}` : ""}`.trim();
    self.set(name, (self.get(name) || 0) + dt);
  });
  return {
    rps, requests, profiled_us: all, idle_share: idle / all,
    // How densely V8 sampled: on a loaded 2-core machine its sampler falls far behind the
    // interval asked for (seen: a sample every 2-2.5 ms for 200 us asked).
    samples: profile.samples.length, median_gap_us: medianOf(profile.timeDeltas.slice(1)),
    busy_ms_per_request: (all - idle) / 1000 / requests,
    // With `pid` (the runtime's process): its threads' CPU per request while profiled, and the
    // main thread's (the isolate's), which the profiler's own threads do not add to.
    threads: threads && threads.map((t) => ({ ...t, ms_per_request: t.ms / requests })),
    main_thread_cpu_ms_per_request: threads ? (threads.find((t) => t.tid === Number(pid))?.ms ?? NaN) / requests : null,
    self: [...self].sort((a, b) => b[1] - a[1]).map(([name, us]) => ({ name, share: us / all })),
    profile,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [port, url, secs = "5", out] = process.argv.slice(2);
  if (!port || !url) {
    console.error("usage: node bench/profile.mjs <inspector port> <url> [seconds] [profile.json]");
    process.exit(2);
  }
  const pid = process.env.PROFILE_PID ? Number(process.env.PROFILE_PID) : undefined;
  const p = await profileOnce(port, url, secs, { pid, interval: Number(process.env.PROFILE_INTERVAL_US || 200) });
  if (out) fs.writeFileSync(out, JSON.stringify(p.profile));
  console.log(`${url}: ${p.rps} req/s (${p.requests} requests, profiler attached)`);
  console.log(`isolate: ${(p.profiled_us / 1e6).toFixed(2)} s profiled (${p.samples} samples, median gap ${p.median_gap_us} us), idle ${(100 * p.idle_share).toFixed(1)} %, busy ${p.busy_ms_per_request.toFixed(2)} ms per request`);
  if (p.threads) {
    console.log(`runtime threads, CPU per request: main (the isolate's) ${p.main_thread_cpu_ms_per_request.toFixed(3)} ms`);
    for (const t of p.threads.filter((t) => t.ms > 0)) console.log(`  ${String(t.tid).padStart(8)} ${t.name.padEnd(16)} ${t.ms_per_request.toFixed(3)} ms`);
  }
  console.log("self time:");
  for (const { name, share } of p.self.slice(0, 15)) console.log(`  ${(100 * share).toFixed(1).padStart(5)} %  ${name}`);
  process.exit(0);
}
