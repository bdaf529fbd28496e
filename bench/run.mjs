// The benchmark runner behind `make bench` (bench/bench.sh installs wrk, builds, then runs this).
// Plain Node, no npm dependencies.
//
// It starts, on loopback only, each in its own process group and temporary --persist-to state:
// the test origin; edge-isr (the built worker, config without [build]); the JS baseline
// (bench/baseline-kv: one KV read with metadata); the constant worker (bench/constant); and, for
// counting KV operations only, edge-isr wrapped in bench/edge-isr-counting; and the peer: Next.js
// with ISR built by @opennextjs/cloudflare (KV incremental cache), bench/opennext, installed and
// built by bench/opennext/setup.sh (twice: OpenNext's defaults, and with cache interception),
// plus its default build with KV counted. Every worker runs in the same runtime: the project's
// wrangler (node_modules/.bin/wrangler) on the project's Node (node_modules/.bin/node, first on
// every child's PATH, see scripts/env.sh). It warms the pages,
// runs wrk with a fixed duration and connection count for every (size, system, state), several
// rounds with the order rotated each round, and prints the medians with ratios to the baseline;
// then the goals' comparisons (HIT vs the baseline, STALE vs HIT) again as back-to-back pairs.
// Then KV operations per cache state (counted), the bundle size (wrangler deploy --dry-run),
// startup times, the cost of invalidating a tag on 1,000 and 10,000 pages, and the cost model.
// Every process it started is stopped on the way out, failure or not.
//
// Settings (environment): BENCH_ROUNDS (3), BENCH_DURATION (seconds per run, 5),
// BENCH_CONNECTIONS (10), BENCH_THREADS (1), BENCH_SIZES (2k,50k,1m),
// BENCH_INVALIDATE (page counts, "1000,10000"; empty skips), BENCH_OUT (where results go),
// BENCH_PAIRS (paired runs per comparison and size, 7; 0 skips them), BENCH_PAIR_DURATION (3),
// BENCH_PEER (0 leaves the peer out), BENCH_PROFILES (profiled pairs per size for the isolate CPU
// per HIT, 7; 0 skips them), BENCH_HOLD (1: start and warm everything, write OUT/hold.json, and
// wait for Ctrl-C instead of measuring: for profiling by hand). BENCH_PEER_MISSING (set by bench.sh when the peer's install
// or build failed) says why the peer is missing: the rest runs, and the peer is reported missing.

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import nodeHttp from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as delay } from "node:timers/promises";
import { processCpuMs, profileOnce } from "./profile.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const BENCH = path.join(ROOT, "bench");
const NODE_BIN = path.join(ROOT, "node_modules/.bin");
const WRANGLER = path.join(NODE_BIN, "wrangler");
// PATH for every child: the project's node_modules/.bin first, so that wrangler's
// `#!/usr/bin/env node` (and everything it starts) runs on the project's Node 22, as in
// scripts/env.sh, even when this file is run by another Node.
const CHILD_PATH = [NODE_BIN, ...(process.env.PATH || "").split(path.delimiter).filter((d) => d && d !== NODE_BIN)].join(path.delimiter);
const ORIGIN_BIN = path.join(ROOT, "target/release/test-origin");
const SECRET = "bench-secret";
// The peer (bench/opennext): its own node_modules (Next.js, OpenNext, and a wrangler of the same
// version as the project's, which OpenNext's build imports); it runs in the project's wrangler.
const PEER_DIR = path.join(BENCH, "opennext");
// Two builds of the same app: OpenNext's defaults, and with its cache interception on (ISR pages
// answered from the cache by OpenNext's routing layer, before the Next.js server is loaded).
const PEERS = [
  { key: "opennext", sys: "Next.js ISR (OpenNext, KV)", config: "wrangler.jsonc", out: ".open-next" },
  { key: "opennext-intercept", sys: "Next.js ISR (OpenNext, KV, cache interception)", config: "wrangler.intercept.jsonc", out: ".open-next-intercept" },
];
const isPeer = (system) => PEERS.some((p) => p.sys === system);
// The baseline reading the value as an ArrayBuffer (edge-isr's read) rather than a stream.
const BASELINE_AB = "baseline-kv, arrayBuffer read (JS)";
const peerOpts = () => ({ cwd: PEER_DIR, env: { NEXT_TELEMETRY_DISABLED: "1" } });

const int = (v, d) => (v === undefined || v === "" ? d : Number.parseInt(v, 10));
const CFG = {
  rounds: int(process.env.BENCH_ROUNDS, 3),
  duration: int(process.env.BENCH_DURATION, 5),
  connections: int(process.env.BENCH_CONNECTIONS, 10),
  threads: int(process.env.BENCH_THREADS, 1),
  sizes: (process.env.BENCH_SIZES || "2k,50k,1m").split(",").filter(Boolean),
  invalidate: (process.env.BENCH_INVALIDATE ?? "1000,10000").split(",").filter(Boolean).map(Number),
  peer: process.env.BENCH_PEER !== "0",
  // The goals' ratios (HIT against the baseline, STALE against HIT) from back-to-back pairs of runs.
  pairs: int(process.env.BENCH_PAIRS, 7),
  pairDuration: int(process.env.BENCH_PAIR_DURATION, 3),
  // Isolate CPU per HIT: profiled pairs (edge-isr's HIT, the baseline's) per size; 0 skips them.
  profiles: int(process.env.BENCH_PROFILES, 7),
};
const SIZE_BYTES = { "2k": 2048, "50k": 51200, "1m": 1048576 };
// Each MISS stores a page: cap the pages one MISS run may create (per run, all threads).
const MISS_MAX = { "2k": 5000, "50k": 3000, "1m": 300 };
for (const s of CFG.sizes) if (!SIZE_BYTES[s]) die(`unknown size ${s} (known: ${Object.keys(SIZE_BYTES)})`);

const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
const OUT = process.env.BENCH_OUT || path.join(ROOT, "target/bench", stamp);
fs.mkdirSync(OUT, { recursive: true });

function say(msg) {
  process.stderr.write(`bench: ${msg}\n`);
}
function die(msg) {
  throw new Error(msg);
}

// ---------------------------------------------------------------------------------------------
// Processes: each in its own process group, stopped (group-wide) on every way out.

const children = [];

function start(name, cmd, args, { env = {}, pipeStdout = false, cwd = ROOT } = {}) {
  const log = fs.openSync(path.join(OUT, `${name}.log`), "a");
  const child = spawn(cmd, args, {
    cwd,
    env: { ...process.env, PATH: CHILD_PATH, CI: "true", ...env },
    stdio: ["ignore", pipeStdout ? "pipe" : log, log],
    detached: true, // own process group: wrangler's workerd goes with it
  });
  children.push({ name, child });
  return child;
}

function groupAlive(pid) {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function stopAll(only) {
  const live = children.filter(({ name, child }) => (!only || name === only) && child.pid && groupAlive(child.pid));
  for (const { child } of live) {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {}
  }
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline && live.some(({ child }) => groupAlive(child.pid))) await delay(100);
  for (const { child } of live) {
    if (groupAlive(child.pid)) {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
    }
  }
  if (only) {
    for (let i = children.length - 1; i >= 0; i--) if (children[i].name === only) children.splice(i, 1);
  } else {
    children.length = 0;
  }
}

process.on("exit", () => {
  // Last resort (e.g. an uncaught exception): nothing may outlive the runner.
  for (const { child } of children) {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {}
  }
});
for (const [sig, code] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]]) {
  process.on(sig, () => {
    say(`${sig}: stopping everything`);
    stopAll().finally(() => process.exit(code));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers (Node's fetch; loopback only).

async function http(url, { method = "GET", headers = {}, body, retries = 2 } = {}) {
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await fetch(url, { method, headers, body, redirect: "manual", signal: AbortSignal.timeout(60000) });
      const buf = Buffer.from(await r.arrayBuffer());
      // edge-isr says x-isr-cache: HIT/STALE/MISS/BYPASS; the peer says x-nextjs-cache (Next.js's
      // server) or, for answers of OpenNext's cache interception, x-opennext-cache.
      const h = (n) => r.headers.get(n);
      const state = h("x-isr-cache") || h("x-nextjs-cache") || h("x-opennext-cache") || "";
      return { status: r.status, headers: r.headers, body: buf, state };
    } catch (e) {
      // A pooled keep-alive connection the server closed after a load run fails once: retry.
      if (attempt >= retries) throw new Error(`${method} ${url}: ${e.message}${e.cause ? ` (${e.cause.code || e.cause.message})` : ""}`);
    }
  }
}

async function poll(what, limitMs, intervalMs, check) {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > deadline) die(`timed out after ${limitMs} ms waiting for ${what}`);
    await delay(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Servers.

async function startOrigin() {
  if (!fs.existsSync(ORIGIN_BIN)) die(`${ORIGIN_BIN} is missing (bench/bench.sh builds it)`);
  const child = start("origin", ORIGIN_BIN, ["--addr", "127.0.0.1:0", "--quiet"], { pipeStdout: true });
  const url = await new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error("the test origin did not start within 30 s")), 30000);
    child.stdout.on("data", (d) => {
      buf += d;
      const m = buf.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (c) => reject(new Error(`the test origin exited (${c})`)));
  });
  child.stdout.resume();
  return url;
}

/** wrangler.toml without [build] and with `main` pointing at `main` (like tests/e2e/support.rs). */
function edgeConfig(main, name) {
  const out = [];
  let inBuild = false;
  for (const line of fs.readFileSync(path.join(ROOT, "wrangler.toml"), "utf8").split("\n")) {
    const t = line.trimStart();
    if (t.startsWith("[")) inBuild = t.startsWith("[build]");
    if (inBuild) continue;
    out.push(/^main\s*=/.test(t) ? `main = ${JSON.stringify(main)}` : line);
  }
  const file = path.join(OUT, `wrangler.${name}.toml`);
  fs.writeFileSync(file, out.join("\n"));
  return file;
}

async function startWrangler(name, config, extra, readyPath, { wrangler = WRANGLER, cwd = ROOT, env = {} } = {}) {
  const port = await freePort();
  const inspector = await freePort();
  const persist = path.join(OUT, `state-${name}`);
  const t0 = performance.now();
  const child = start(name, wrangler, [
    "dev", "--config", config, "--ip", "127.0.0.1", "--port", String(port),
    "--inspector-port", String(inspector), "--persist-to", persist,
    "--show-interactive-dev-session=false", "--log-level", "warn", ...extra,
  ], { cwd, env });
  const url = `http://127.0.0.1:${port}`;
  // Port open first (wrangler listening), then the first request timed on its own: it is the one
  // that waits for the runtime to load and start the script.
  await poll(`${name} (wrangler dev) to listen on ${url}; see ${OUT}/${name}.log`, 180000, 20, async () => {
    if (child.exitCode !== null) die(`${name}: wrangler dev exited (${child.exitCode}); see ${OUT}/${name}.log`);
    return new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.on("connect", () => (s.destroy(), resolve(true)));
      s.on("error", () => resolve(false));
    });
  });
  const listening = performance.now() - t0;
  const tf = performance.now();
  await poll(`${name} to answer on ${url}; see ${OUT}/${name}.log`, 180000, 20, async () => {
    if (child.exitCode !== null) die(`${name}: wrangler dev exited (${child.exitCode}); see ${OUT}/${name}.log`);
    try {
      await http(url + readyPath);
      return true;
    } catch {
      return false;
    }
  });
  const first = performance.now() - tf;
  const startup = performance.now() - t0;
  const t1 = performance.now();
  await http(url + readyPath);
  return { name, url, port, inspector, pgid: child.pid, persist, startup_ms: startup, listening_ms: listening, first_request_ms: first, second_request_ms: performance.now() - t1 };
}

// ---------------------------------------------------------------------------------------------
// wrk.

function wrk(url, { duration, headers = [], script = "report.lua", args = [] }) {
  const argv = ["-t", String(CFG.threads), "-c", String(CFG.connections), "-d", `${duration}s`, "--timeout", "10s",
    "-s", path.join(BENCH, "wrk", script)];
  for (const h of headers) argv.push("-H", h);
  argv.push(url);
  if (args.length) argv.push("--", ...args);
  const r = spawnSync("wrk", argv, { encoding: "utf8", timeout: (duration + 30) * 1000 });
  const line = (r.stdout || "").split("\n").find((l) => l.startsWith("BENCH_JSON "));
  if (r.status !== 0 || !line) die(`wrk ${argv.join(" ")} failed (${r.status}): ${r.stderr}${r.stdout}`);
  const j = JSON.parse(line.slice("BENCH_JSON ".length));
  j.rps = j.requests / (j.duration_us / 1e6);
  j.errors = j.socket_errors + j.timeouts + j.non_2xx_3xx;
  return j;
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting.

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmtInt = (n) => Math.round(n).toLocaleString("en-US");
const fmtMs = (us) => (us / 1000).toFixed(us < 10000 ? 2 : 1);
const fmtRatio = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : "-");

function table(headers, rows) {
  const w = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(w[i])).join(" | ")} |`;
  return [line(headers), `|${w.map((n) => "-".repeat(n + 2)).join("|")}|`, ...rows.map(line)].join("\n");
}

// ---------------------------------------------------------------------------------------------

/**
 * The comparisons the goals rest on, measured in back-to-back pairs: run A, then B at once (B
 * first every other pair), `CFG.pairs` times per size; the figure is the median of the pairs'
 * ratios. The rounds above put every other case between two runs of a comparison, so a
 * machine that speeds up or slows down between them (this one drifts by 20 % within a minute)
 * moves their ratio; within a pair, 2 x `CFG.pairDuration` seconds apart, it mostly cancels.
 */
async function pairedRuns(runs, runOnce) {
  const out = [];
  if (CFG.pairs <= 0) return out;
  const find = (size, sys, state) => runs.find((r) => r.size === size && r.sys === sys && r.state === state);
  say(`paired runs: ${CFG.pairs} pairs of ${CFG.pairDuration} s per comparison and size`);
  for (const size of CFG.sizes) {
    for (const [name, a, b] of [
      ["HIT vs baseline", find(size, "edge-isr", "HIT"), find(size, "baseline-kv (JS)", "HIT")],
      ["STALE vs HIT", find(size, "edge-isr", "STALE"), find(size, "edge-isr", "HIT")],
    ]) {
      const pairs = [];
      for (let i = 0; i < CFG.pairs; i++) {
        const got = new Map();
        for (const r of i % 2 ? [b, a] : [a, b]) got.set(r, await runOnce(r, CFG.pairDuration));
        const [x, y] = [got.get(a), got.get(b)];
        pairs.push({ a_rps: x.rps, b_rps: y.rps, a_p50_us: x.p50_us, b_p50_us: y.p50_us, rps_ratio: x.rps / y.rps, p50_ratio: x.p50_us / y.p50_us });
      }
      const rr = pairs.map((p) => p.rps_ratio), pr = pairs.map((p) => p.p50_ratio);
      const row = {
        size, name, a: `${a.sys} ${a.state}`, b: `${b.sys} ${b.state}`, pairs,
        rps_ratio: median(rr), rps_ratio_range: [Math.min(...rr), Math.max(...rr)],
        p50_ratio: median(pr), p50_ratio_range: [Math.min(...pr), Math.max(...pr)],
      };
      say(`  ${size} ${name}: req/s ${fmtRatio(row.rps_ratio)} (${fmtRatio(row.rps_ratio_range[0])}-${fmtRatio(row.rps_ratio_range[1])}), p50 ${fmtRatio(row.p50_ratio)}`);
      out.push(row);
    }
  }
  return out;
}

/**
 * Isolate CPU per HIT, as the goal is defined ("profiled"): bench/profile.mjs's busy time per
 * request of edge-isr's HIT and of the baseline's, `CFG.profiles` back-to-back pairs of
 * `CFG.pairDuration`-second runs per size (order swapped every other pair); the figure is the
 * median of the pairs' ratios. The profiler is attached only to the isolate it measures.
 */
/**
 * The workerd process that runs `server`'s worker: `wrangler dev` starts two, its proxy (on the
 * public port) and the runtime (on a port of its own); `null` where there is no /proc.
 */
function runtimePid(server) {
  const ps = spawnSync("ps", ["-o", "pid=,args=", "-g", String(server.pgid)], { encoding: "utf8" });
  const lines = (ps.stdout || "").split("\n").filter((l) => /workerd serve/.test(l));
  const runtime = lines.find((l) => !l.includes(`entry=127.0.0.1:${server.port} `) && !l.endsWith(`entry=127.0.0.1:${server.port}`));
  const pid = runtime ? Number(runtime.trim().split(/\s+/)[0]) : null;
  return pid && fs.existsSync(`/proc/${pid}/stat`) ? pid : null;
}

/** CPU ms per request of `server`'s runtime process while wrk loads `url` (no profiler). */
function cpuPerRequest(server, url, secs) {
  const pid = runtimePid(server);
  if (!pid) return null;
  const before = processCpuMs(pid);
  const w = wrk(url, { duration: secs });
  return (processCpuMs(pid) - before) / w.requests;
}

/** Time to the first body byte and to the last of a GET of `url` (ms), and its cache state. */
function firstAndLastByte(url) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let first;
    const req = nodeHttp.get(url, { agent: false }, (res) => {
      res.on("data", () => (first ??= performance.now() - t0));
      res.on("end", () => resolve({ first_ms: first ?? performance.now() - t0, last_ms: performance.now() - t0, state: res.headers["x-isr-cache"] || "" }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.setTimeout(30000, () => req.destroy(new Error(`${url}: no answer within 30 s`)));
  });
}

/**
 * A MISS's time to first byte against the origin's own (issue 15: the MISS streams): `n`
 * pages of `bytes` never asked before, each fetched from the origin directly, then through
 * edge-isr (a MISS), then again once stored (a HIT); medians.
 */
async function missFirstByte(origin, edge, behave, bytes, n = 7) {
  const rows = { origin: [], miss: [], hit: [] };
  for (let i = 0; i < n; i++) {
    const p = `/ttfb${bytes}-${i}`;
    await behave(p, { size: bytes, headers: { "cache-control": "s-maxage=600" } });
    rows.origin.push(await firstAndLastByte(origin + p));
    const miss = await firstAndLastByte(edge + p);
    if (miss.state !== "MISS") die(`${p}: expected a MISS, got ${miss.state || "no cache state"}`);
    rows.miss.push(miss);
    rows.hit.push(await poll(`${p} to be stored`, 15000, 50, async () => {
      const hit = await firstAndLastByte(edge + p);
      return hit.state === "HIT" && hit;
    }));
  }
  const med = (xs, k) => median(xs.map((x) => x[k]));
  return Object.fromEntries(Object.entries(rows).map(([k, xs]) => [k, { first_ms: med(xs, "first_ms"), last_ms: med(xs, "last_ms") }]));
}

async function cpuPairs(runs, servers) {
  const out = [];
  if (CFG.profiles <= 0) return out;
  say(`isolate CPU: ${CFG.profiles} profiled pairs of ${CFG.pairDuration} s per size`);
  for (const size of CFG.sizes) {
    const edge = runs.find((r) => r.size === size && r.sys === "edge-isr" && r.state === "HIT");
    const base = runs.find((r) => r.size === size && r.sys === "baseline-kv (JS)" && r.state === "HIT");
    const pairs = [];
    for (let i = 0; i < CFG.profiles; i++) {
      const got = {};
      for (const [key, r, s] of i % 2 ? [["base", base, servers.baseline], ["edge", edge, servers.edge]] : [["edge", edge, servers.edge], ["base", base, servers.baseline]]) {
        const p = await profileOnce(s.inspector, r.url, CFG.pairDuration, { pid: runtimePid(s) ?? undefined });
        got[key] = {
          busy_ms_per_request: p.busy_ms_per_request, idle_share: p.idle_share, rps: p.rps, samples: p.samples, median_gap_us: p.median_gap_us,
          profiled_thread_cpu_ms: p.main_thread_cpu_ms_per_request, runtime_cpu_ms: cpuPerRequest(s, r.url, CFG.pairDuration),
        };
      }
      pairs.push({ ...got, ratio: got.edge.busy_ms_per_request / got.base.busy_ms_per_request });
    }
    const ratios = pairs.map((p) => p.ratio);
    const row = {
      size, pairs, ratio: median(ratios), ratio_range: [Math.min(...ratios), Math.max(...ratios)],
      edge_ms: median(pairs.map((p) => p.edge.busy_ms_per_request)), base_ms: median(pairs.map((p) => p.base.busy_ms_per_request)),
    };
    if (pairs.every((p) => p.edge.runtime_cpu_ms && p.base.runtime_cpu_ms)) {
      const cr = pairs.map((p) => p.edge.runtime_cpu_ms / p.base.runtime_cpu_ms);
      Object.assign(row, {
        runtime_ratio: median(cr), runtime_ratio_range: [Math.min(...cr), Math.max(...cr)],
        edge_runtime_ms: median(pairs.map((p) => p.edge.runtime_cpu_ms)), base_runtime_ms: median(pairs.map((p) => p.base.runtime_cpu_ms)),
      });
    }
    if (pairs.every((p) => p.edge.profiled_thread_cpu_ms && p.base.profiled_thread_cpu_ms)) {
      const tr = pairs.map((p) => p.edge.profiled_thread_cpu_ms / p.base.profiled_thread_cpu_ms);
      Object.assign(row, { thread_ratio: median(tr), thread_ratio_range: [Math.min(...tr), Math.max(...tr)] });
    }
    row.median_gap_us = median(pairs.flatMap((p) => [p.edge.median_gap_us, p.base.median_gap_us]));
    say(`  ${size}: ${row.edge_ms.toFixed(2)} ms against ${row.base_ms.toFixed(2)} ms per HIT, ${fmtRatio(row.ratio)} (${fmtRatio(row.ratio_range[0])}-${fmtRatio(row.ratio_range[1])})${row.runtime_ratio ? `; runtime process CPU ${fmtRatio(row.runtime_ratio)}` : ""}`);
    out.push(row);
  }
  return out;
}

async function main() {
  const t0 = Date.now();
  const results = { config: CFG, machine: machine(), started: new Date().toISOString() };
  say(`results and logs in ${OUT}`);

  // 1. Servers, one after the other (so each startup time is measured alone).
  const origin = await startOrigin();
  say(`test origin on ${origin}`);
  const vars = {
    ORIGIN_URL: origin, DEFAULT_REVALIDATE: "3600", CACHE_QUERY_PARAMS: "n",
    ORIGIN_TIMEOUT_MS: "30000", REGENERATE_TIMEOUT_MS: "25000", REVALIDATE_SECRET: SECRET,
  };
  const varArgs = Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
  const edgeCfg = edgeConfig(path.join(ROOT, "build/worker/shim.mjs"), "edge-isr");
  const countCfg = edgeConfig(path.join(BENCH, "edge-isr-counting/entry.mjs"), "edge-isr-counting");
  const servers = {};
  const warnings = [];
  servers.constant = await startWrangler("constant", path.join(BENCH, "constant/wrangler.toml"), [], "/");
  servers.baseline = await startWrangler("baseline-kv", path.join(BENCH, "baseline-kv/wrangler.toml"), [], "/__ready");
  servers.edge = await startWrangler("edge-isr", edgeCfg, varArgs, "/api/revalidate");
  servers.counting = await startWrangler("edge-isr-counting", countCfg, varArgs, "/api/revalidate");
  // The peer: when it cannot be had, everything else still runs and it is reported missing.
  let peerMissing = !CFG.peer ? "left out (BENCH_PEER=0)" : process.env.BENCH_PEER_MISSING || "";
  const peerStarted = [];
  for (const p of CFG.peer && !peerMissing ? PEERS : []) {
    try {
      if (!fs.existsSync(path.join(PEER_DIR, p.out, "worker.js"))) die(`bench/opennext/${p.out} is not built (bench/opennext/setup.sh builds it)`);
      servers[p.key] = await startWrangler(p.key, path.join(PEER_DIR, p.config), [], "/__ready", peerOpts());
      peerStarted.push(p);
    } catch (e) {
      warnings.push(`${p.sys}: did not start, so no figure: ${e.message}`);
      say(`${p.sys}: did not start: ${e.message}`);
      await stopAll(p.key);
    }
  }
  if (CFG.peer && !peerMissing && !peerStarted.length) peerMissing = "wrangler dev did not start it (see the warnings)";
  const peerGone = (why) => {
    peerMissing ||= why;
    say(`the peer is MISSING: ${peerMissing}`);
  };
  if (peerMissing) peerGone(peerMissing);
  for (const s of Object.values(servers)) say(`${s.name} on ${s.url} (up in ${(s.startup_ms / 1000).toFixed(1)} s)`);
  results.startup = Object.fromEntries(Object.values(servers).map((s) => [s.name,
    { startup_ms: s.startup_ms, listening_ms: s.listening_ms, first_request_ms: s.first_request_ms, second_request_ms: s.second_request_ms }]));

  const behave = async (p, b) => {
    const r = await http(`${origin}/__origin/behaviour?path=${encodeURIComponent(p)}`, {
      method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(b),
    });
    if (r.status !== 200) die(`origin behaviour ${p}: ${r.status} ${r.body}`);
  };

  // 2. Pages: warm edge-isr, copy each page into the baseline's KV, set up STALE and 304.
  const runs = [];
  const etags = {};
  const peerBytes = {};
  for (const size of CFG.sizes) {
    const bytes = SIZE_BYTES[size];
    const hit = `/s${size}`;
    await behave(hit, { size: bytes });
    await http(servers.edge.url + hit);
    const page = await http(servers.edge.url + hit);
    if (page.state !== "HIT") die(`${hit}: expected HIT after a MISS, got ${page.state || page.status}`);
    etags[size] = page.headers.get("etag");
    // Node's fetch asks for gzip and decodes it: its content-encoding must not be copied, or the
    // baseline's runtime would gzip every answer (Workers encode a body as Content-Encoding says).
    const keep = {};
    for (const [k, v] of page.headers) {
      if (!/^(x-isr-|age$|date$|content-length$|content-encoding$|transfer-encoding$|connection$|keep-alive$|x-bench-)/.test(k)) keep[k] = v;
    }
    const fill = await http(servers.baseline.url + hit, { method: "PUT", headers: { "x-bench-headers": JSON.stringify(keep) }, body: page.body });
    if (fill.status !== 204) die(`filling the baseline's ${hit}: ${fill.status}`);
    const b = await http(servers.baseline.url + hit, { headers: { "accept-encoding": "identity" } });
    if (b.status !== 200 || b.body.length !== page.body.length || b.headers.get("content-encoding")) {
      die(`baseline ${hit}: ${b.status}, ${b.body.length} bytes, content-encoding ${b.headers.get("content-encoding")}`);
    }
    const c = await http(servers.constant.url + hit);
    if (c.status !== 200) die(`constant ${hit}: ${c.status}`);
    for (const q of peerStarted) {
      // The peer's page: rendered on its first request (MISS), then served from KV (HIT).
      try {
        const u = servers[q.key].url + hit;
        const miss = await http(u);
        if (miss.status !== 200) die(`${hit}: first answer ${miss.status} ${miss.state}`);
        const p = await http(u);
        if (p.status !== 200 || p.state !== "HIT") die(`${hit}: expected 200 HIT after a MISS, got ${p.status} ${p.state || "(no cache header)"}`);
        (peerBytes[q.key] ||= {})[size] = p.body.length;
      } catch (e) {
        warnings.push(`${size} ${q.sys}: warming its page failed, so no figure: ${e.message}`);
        say(`${q.sys}, ${size} page: ${e.message}`);
      }
    }
    const nm = await http(servers.edge.url + hit, { headers: { "if-none-match": etags[size] } });
    if (nm.status !== 304) die(`${hit} with If-None-Match: expected 304, got ${nm.status}`);

    // STALE: revalidate time 1 s; once stored, the origin stalls (120 s) so the regeneration
    // stays in flight and every request is answered STALE.
    const stale = `/st${size}`;
    const staleB = { size: bytes, headers: { "cache-control": "s-maxage=1" } };
    await behave(stale, staleB);
    const first = await http(servers.edge.url + stale);
    if (first.state !== "MISS") die(`${stale}: expected MISS first, got ${first.state || first.status}`);
    await behave(stale, { ...staleB, stall_ms: 120000 });
    await poll(`${stale} to be served STALE`, 15000, 100, async () => (await http(servers.edge.url + stale)).state === "STALE");

    await behave(`/m${size}`, { size: bytes });
    const pb = peerStarted.filter((q) => peerBytes[q.key]?.[size]).map((q) => `${q.key}: ${peerBytes[q.key][size]}`);
    say(`${size}: pages of ${page.body.length} bytes warmed${pb.length ? ` (the peer's: ${pb.join(", ")})` : ""}; baseline filled; ${stale} is STALE`);

    runs.push(
      { size, sys: "edge-isr", state: "HIT", url: servers.edge.url + hit, expect: "HIT" },
      { size, sys: "edge-isr", state: "STALE", url: servers.edge.url + stale, expect: "STALE" },
      { size, sys: "edge-isr", state: "304", url: servers.edge.url + hit, headers: [`If-None-Match: ${etags[size]}`], expectStatus: 304 },
      { size, sys: "edge-isr", state: "MISS", url: servers.edge.url + `/m${size}`, miss: true },
      { size, sys: "baseline-kv (JS)", state: "HIT", url: servers.baseline.url + hit, expectStatus: 200 },
      { size, sys: BASELINE_AB, state: "HIT", url: servers.baseline.url + "/__ab" + hit, expectStatus: 200 },
      { size, sys: "constant (JS)", state: "-", url: servers.constant.url + hit, expectStatus: 200 },
    );
    for (const q of peerStarted) {
      if (peerBytes[q.key]?.[size]) runs.push({ size, sys: q.sys, state: "HIT", url: servers[q.key].url + hit, expect: "HIT", expectStatus: 200, peer: true, optional: true });
    }
  }

  // BENCH_HOLD=1: keep everything running, warmed, for profiling by hand (bench/profile.mjs,
  // with PROFILE_PID for the runtime's threads), until Ctrl-C; what runs where goes to
  // OUT/hold.json.
  if (process.env.BENCH_HOLD === "1") {
    const hold = {
      origin, runs: runs.map(({ size, sys, state, url, headers }) => ({ size, sys, state, url, headers })),
      servers: Object.fromEntries(Object.entries(servers).map(([k, s]) => [k, { url: s.url, inspector: s.inspector, pgid: s.pgid, runtime_pid: runtimePid(s) }])),
    };
    fs.writeFileSync(path.join(OUT, "hold.json"), JSON.stringify(hold, null, 2));
    say(`holding (BENCH_HOLD=1): ${path.join(OUT, "hold.json")}; Ctrl-C stops everything`);
    await new Promise(() => {});
  }

  // 3. Load: a short warm-up run of each, then rounds, the order rotated every round.
  let missRun = 0;
  const runOnce = async (r, duration) => {
    const opts = { duration, headers: r.headers || [] };
    if (r.miss) {
      missRun++;
      opts.script = "unique.lua";
      opts.args = [`${stamp}-${missRun}`, String(Math.ceil(MISS_MAX[r.size] / CFG.threads))];
    }
    let res;
    try {
      res = wrk(r.url, opts);
    } catch (e) {
      if (!r.optional) throw e;
      warnings.push(`${r.size} ${r.sys} ${r.state}: ${e.message.slice(0, 300)}`);
      return null;
    }
    if (res.errors) warnings.push(`${r.size} ${r.sys} ${r.state}: ${res.errors} errors (socket ${res.socket_errors}, timeouts ${res.timeouts}, status ${res.non_2xx_3xx})`);
    // The state held through the run: check one request after it.
    if (!r.miss) {
      let after;
      try {
        after = await http(r.url, { headers: Object.fromEntries((r.headers || []).map((h) => h.split(": "))) });
      } catch (e) {
        warnings.push(`${r.size} ${r.sys} ${r.state}: the check after a run failed: ${e.message}`);
        return res;
      }
      if ((r.expect && after.state !== r.expect) || (r.expectStatus && after.status !== r.expectStatus)) {
        warnings.push(`${r.size} ${r.sys} ${r.state}: after a run, answered ${after.status} ${after.state}`);
      }
    }
    return res;
  };
  say(`warm-up: 1 s of each of ${runs.length} runs`);
  for (const r of runs) await runOnce(r, 1);
  const progress = (r, res) => say(`  ${r.size} ${r.sys} ${r.state}: ${fmtInt(res.rps)} req/s, p50 ${fmtMs(res.p50_us)} ms, p99 ${fmtMs(res.p99_us)} ms${res.errors ? `, ${res.errors} errors` : ""}`);
  const perSize = CFG.sizes.map((s) => runs.filter((r) => r.size === s));
  for (let round = 0; round < CFG.rounds; round++) {
    say(`round ${round + 1}/${CFG.rounds}: ${runs.length} runs of ${CFG.duration} s, ${CFG.connections} connections`);
    for (const group of perSize) {
      const k = round % group.length;
      const order = [...group.slice(k), ...group.slice(0, k)];
      if (round % 2) order.reverse();
      for (const r of order) {
        const res = await runOnce(r, CFG.duration);
        if (!res) continue;
        progress(r, res);
        (r.samples ||= []).push(res);
      }
    }
  }
  results.pairs = await pairedRuns(runs, runOnce);
  results.cpu = await cpuPairs(runs, servers);
  results.warnings = warnings;
  for (const r of runs) if (r.optional && !r.samples) warnings.push(`${r.size} ${r.sys}: no run succeeded, so no figure`);
  results.load = runs.filter((r) => r.samples).map((r) => ({
    size: r.size, system: r.sys, state: r.state,
    rps: median(r.samples.map((s) => s.rps)), p50_us: median(r.samples.map((s) => s.p50_us)),
    p99_us: median(r.samples.map((s) => s.p99_us)), requests: r.samples.map((s) => s.requests),
    errors: r.samples.reduce((a, s) => a + s.errors, 0), samples: r.samples,
    bytes_per_answer: median(r.samples.map((s) => s.bytes / Math.max(1, s.requests))),
  }));
  if (!peerMissing && !runs.some((r) => r.peer && r.samples)) peerGone(peerStarted.length ? "it started, but no run of it succeeded (see the warnings)" : "it did not start (see the warnings)");
  results.peer = { missing: peerMissing, variants: PEERS.map((p) => ({ ...p, started: peerStarted.includes(p) })), page_bytes: peerBytes, versions: peerVersions() };

  fs.writeFileSync(path.join(OUT, "results.partial.json"), JSON.stringify(results, null, 2));

  if (CFG.sizes.includes("1m")) {
    say("MISS time to first byte, 1 MiB");
    results.miss_first_byte = await missFirstByte(origin, servers.edge.url, behave, SIZE_BYTES["1m"]);
  }

  // 4. KV operations per cache state, counted (separate instance, nothing else running).
  say("counting KV operations per cache state");
  results.kv_ops = await countKvOps(servers.counting.url, behave);
  if (peerStarted.some((p) => p.key === "opennext") && !peerMissing) {
    say("counting the peer's KV operations (bench/opennext/counting.mjs, its own wrangler dev)");
    try {
      const c = await startWrangler("opennext-counting", path.join(PEER_DIR, "wrangler.counting.jsonc"), [], "/__ready", peerOpts());
      results.peer.kv_ops = await countPeerKvOps(c.url);
    } catch (e) {
      results.peer.kv_ops_error = e.message;
      say(`counting the peer's KV operations failed: ${e.message}`);
    }
    await stopAll("opennext-counting");
  }

  // 5. Invalidating a tag on N pages.
  results.invalidation = [];
  for (const n of CFG.invalidate) {
    say(`invalidation: filling ${n} pages carrying one tag`);
    try {
      results.invalidation.push(await invalidation(servers.counting.url, behave, n));
    } catch (e) {
      say(`invalidation of ${n} pages: ${e.message}`);
      results.invalidation.push({ pages: n, error: e.message });
    }
  }

  // 6. Bundle sizes.
  say("bundle sizes (wrangler deploy --dry-run)");
  results.bundle = {
    "edge-isr": dryRun("edge-isr", edgeCfg),
    "baseline-kv (JS)": dryRun("baseline-kv", path.join(BENCH, "baseline-kv/wrangler.toml")),
    "constant (JS)": dryRun("constant", path.join(BENCH, "constant/wrangler.toml")),
  };
  for (const p of peerStarted) results.bundle[`${p.key} (peer)`] = dryRun(p.key, path.join(PEER_DIR, p.config), peerOpts());
  const wasm = fs.readFileSync(path.join(ROOT, "build/worker/index.wasm"));
  const { gzipSync } = await import("node:zlib");
  results.bundle.wasm = { bytes: wasm.length, gzip9: gzipSync(wasm, { level: 9 }).length };

  results.cost = costModel(results.kv_ops);
  results.elapsed_s = (Date.now() - t0) / 1000;
  fs.writeFileSync(path.join(OUT, "results.json"), JSON.stringify(results, null, 2));
  const md = report(results);
  fs.writeFileSync(path.join(OUT, "results.md"), md);
  process.stdout.write(md + "\n");
  say(`done in ${results.elapsed_s.toFixed(0)} s; ${OUT}/results.md and results.json`);
  if (results.peer.missing) say(`the peer is MISSING from these results: ${results.peer.missing}`);
}

// ---------------------------------------------------------------------------------------------

async function countKvOps(base, behave) {
  const op = async (id) =>
    poll(`the background work of request ${id}`, 60000, 50, async () => {
      const r = JSON.parse((await http(`${base}/__bench/op?id=${id}`)).body);
      return r.pending === 0 && r.inflight === 0 ? r : null;
    });
  const measure = async (label, p, headers = {}) => {
    const r = await http(base + p, { headers });
    const id = r.headers.get("x-bench-op");
    const rec = await op(id);
    const pick = (c) => ({ reads: c.reads, writes: c.writes, deletes: c.deletes, lists: c.lists });
    return { label, status: r.status, state: r.state, visitor: pick(rec.before_response), total: pick(rec), by_key: rec.by_key, sends: rec.sends };
  };
  const out = [];
  const u = `${Date.now()}`;
  await behave("/kv/page", { size: 2048 });
  out.push(await measure("MISS (no tags)", `/kv/page?n=${u}`));
  out.push(await measure("HIT", `/kv/page?n=${u}`));
  const etag = (await http(`${base}/kv/page?n=${u}`)).headers.get("etag");
  out.push(await measure("304 (If-None-Match)", `/kv/page?n=${u}`, { "if-none-match": etag }));
  await behave("/kv/tagged", { size: 2048, headers: { "cache-tag": "bench-a, bench-b" } });
  out.push(await measure("MISS (2 tags: tag index written)", `/kv/tagged?n=${u}`));

  // STALE by age: the origin answers the conditional regeneration 304 (content unchanged), then
  // again with changed content (a full re-render).
  const stale = async (label, p, b, changed) => {
    await behave(p, b);
    const first = await http(`${base}${p}?n=${u}`);
    if (first.state !== "MISS") die(`${p}: expected MISS, got ${first.state}`);
    if (changed) await behave(p, { ...b, content: "v2" });
    // Each poll is its own request (HITs); the first STALE one starts the regeneration.
    const id = await poll(`${p} to go STALE`, 15000, 100, async () => {
      const r = await http(`${base}${p}?n=${u}`);
      return r.state === "STALE" ? r.headers.get("x-bench-op") : null;
    });
    const rec = await op(id);
    const pick = (c) => ({ reads: c.reads, writes: c.writes, deletes: c.deletes, lists: c.lists });
    return { label, status: 200, state: "STALE", visitor: pick(rec.before_response), total: pick(rec), by_key: rec.by_key, sends: rec.sends };
  };
  const sb = { size: 2048, headers: { "cache-control": "s-maxage=1" } };
  out.push(await stale("STALE + regeneration (origin answers 304)", "/kv/stale304", sb, false));
  out.push(await stale("STALE + regeneration (origin re-renders)", "/kv/stale200", sb, true));

  // STALE while another request's regeneration is in flight (the load test's STALE case).
  await behave("/kv/inflight", sb);
  await http(`${base}/kv/inflight?n=${u}`);
  await behave("/kv/inflight", { ...sb, content: "v2", stall_ms: 3000 });
  const firstId = await poll("/kv/inflight to go STALE", 15000, 100, async () => {
    const r = await http(`${base}/kv/inflight?n=${u}`);
    return r.state === "STALE" ? r.headers.get("x-bench-op") : null;
  });
  out.push(await measure("STALE, regeneration already in flight", `/kv/inflight?n=${u}`));
  await op(firstId);
  return out;
}

async function invalidation(base, behave, n) {
  const tag = `inv-${n}-${Date.now()}`;
  const p = `/inv${n}`;
  await behave(p, { headers: { "cache-tag": tag } });
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const r = await http(`${base}${p}?n=${i}`);
      if (r.status !== 200) die(`filling ${p}?n=${i}: ${r.status}`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  const total = async () => JSON.parse((await http(`${base}/__bench/total`)).body);
  await poll("the fill's background work", 120000, 100, async () => {
    const t = await total();
    return t.pending === 0 && t.inflight === 0;
  });
  const fill_s = (performance.now() - t0) / 1000;
  const before = await total();
  const t1 = performance.now();
  const r = await http(`${base}/api/revalidate`, {
    method: "POST", headers: { authorization: `Bearer ${SECRET}`, "content-type": "application/json" },
    body: JSON.stringify({ tags: [tag] }), retries: 0,
  });
  const webhook_ms = performance.now() - t1;
  if (r.status !== 200) die(`webhook: ${r.status} ${r.body}`);
  const answer = JSON.parse(r.body);
  const marked = (t) => (t.by_key["writes:p"] || 0) - (before.by_key["writes:p"] || 0);
  let after;
  await poll(`all ${n} pages of tag ${tag} to be marked`, 240000, 200, async () => {
    after = await total();
    return marked(after) >= n && after.pending === 0 && after.inflight === 0;
  });
  const wall_s = (performance.now() - t1) / 1000;
  const d = (k) => after[k] - before[k];
  return {
    pages: n, fill_s, webhook_ms, wall_s, answer: answer.tags?.[tag],
    reads: d("reads"), writes: d("writes"), deletes: d("deletes"), lists: d("lists"), queue_sends: d("sends"),
    pages_marked: marked(after),
  };
}

function dryRun(name, config, { wrangler = WRANGLER, cwd = ROOT, env = {} } = {}) {
  const outdir = path.join(OUT, `bundle-${name}`);
  const r = spawnSync(wrangler, ["deploy", "--dry-run", "--outdir", outdir, "--config", config], {
    cwd, encoding: "utf8", env: { ...process.env, PATH: CHILD_PATH, CI: "true", ...env }, timeout: 120000,
  });
  const text = `${r.stdout}\n${r.stderr}`;
  const m = text.match(/Total Upload:\s*([\d.]+)\s*(KiB|MiB)\s*\/\s*gzip:\s*([\d.]+)\s*(KiB|MiB)/);
  if (!m) return { error: `no "Total Upload" line (exit ${r.status})`, output: text.slice(-500) };
  const kib = (v, unit) => Number(v) * (unit === "MiB" ? 1024 : 1);
  return { upload_kib: kib(m[1], m[2]), gzip_kib: kib(m[3], m[4]), line: m[0] };
}

// The peer's KV operations for a MISS (the page's first request) and a HIT (the next ones), read
// from bench/opennext/counting.mjs's totals before and after each request, one at a time.
async function countPeerKvOps(base) {
  const total = async () => JSON.parse((await http(`${base}/__bench/total`)).body);
  const settled = () => poll("the peer's KV operations to settle", 30000, 50, async () => {
    const a = await total();
    if (a.inflight) return null;
    await delay(300); // background work (waitUntil) would show up here
    const b = await total();
    return b.inflight === 0 && JSON.stringify(a) === JSON.stringify(b) ? b : null;
  });
  const out = [];
  for (const size of CFG.sizes) {
    for (const label of ["MISS", "HIT", "HIT, again"]) {
      const before = await settled();
      const r = await http(`${base}/s${size}`);
      const after = await settled();
      const d = (k) => after[k] - before[k];
      const by = {};
      for (const [k, v] of Object.entries(after.by_binding)) if (v - (before.by_binding[k] || 0)) by[k] = v - (before.by_binding[k] || 0);
      out.push({ label: `${label} (${size})`, status: r.status, state: r.state, body_bytes: r.body.length,
        reads: d("reads"), writes: d("writes"), deletes: d("deletes"), lists: d("lists"), fetches: d("fetches"),
        bytes_read: d("bytes_read"), bytes_written: d("bytes_written"), by_binding: by });
    }
  }
  return out;
}

function peerVersions() {
  const v = (pkg) => {
    try {
      return JSON.parse(fs.readFileSync(path.join(PEER_DIR, "node_modules", pkg, "package.json"), "utf8")).version;
    } catch {
      return null;
    }
  };
  // wrangler: this folder's copy, which OpenNext's build used (bench/opennext/setup.sh checks it
  // is the project's version); the peer runs in the project's wrangler, on the project's Node.
  return { next: v("next"), "@opennextjs/cloudflare": v("@opennextjs/cloudflare"), "@opennextjs/aws": v("@opennextjs/aws"),
    react: v("react"), wrangler: v("wrangler") };
}

// KV prices: Workers Paid, https://developers.cloudflare.com/kv/platform/pricing/ (as published
// on 2026-11-23): reads $0.50 per million, writes/deletes/lists $5.00 per million, beyond the
// 10 M reads and 1 M writes included per month. Inclusions are left out (marginal cost).
const PRICE = { read: 0.5, write: 5.0, date: "2026-11-23" };
function costModel(kvOps) {
  const find = (re) => kvOps.find((o) => re.test(o.label));
  const visit = find(/^HIT$/)?.total ?? { reads: 1, writes: 0 };
  const regen = find(/origin re-renders/)?.total ?? { reads: 4, writes: 2 };
  // Regeneration alone = STALE request's total minus what a visitor pays.
  const rg = { reads: regen.reads - visit.reads, writes: regen.writes - visit.writes };
  const month = 30 * 86400;
  const scenarios = [
    { name: "1 page, 1 M views/month", pages: 1 },
    { name: "1,000 pages, 1,000 views each", pages: 1000 },
    { name: "100,000 pages, 10 views each", pages: 100000 },
  ];
  const revalidate = [60, 300, 3600, 86400];
  const rows = [];
  for (const s of scenarios) {
    const views = 1e6;
    const lambda = views / s.pages / month; // views per second per page
    const row = { scenario: s.name, cells: [] };
    for (const T of revalidate) {
      // Poisson views: after a regeneration the page is fresh for T, then the next view (mean
      // 1/lambda later) is STALE and regenerates: one regeneration per T + 1/lambda per page.
      const regens = Math.min(views, s.pages * (month / (T + 1 / lambda)));
      const reads = views * visit.reads + regens * rg.reads;
      const writes = views * visit.writes + regens * rg.writes;
      const usd = (reads / 1e6) * PRICE.read + (writes / 1e6) * PRICE.write;
      row.cells.push({ revalidate_s: T, regenerations: regens, reads, writes, usd });
    }
    rows.push(row);
  }
  return { price: PRICE, per_visit: visit, per_regeneration: rg, revalidate, rows };
}

function machine() {
  const v = (cmd, args) => {
    const r = spawnSync(cmd, args, { encoding: "utf8", env: { ...process.env, PATH: CHILD_PATH } });
    return `${r.stdout || ""}${r.stderr || ""}`.trim().split("\n")[0];
  };
  return {
    cpu: `${os.cpus()[0]?.model} x ${os.cpus().length}`, memory_gib: (os.totalmem() / 2 ** 30).toFixed(1),
    // The Node wrangler and every other child runs on (not necessarily this runner's).
    os: `${os.type()} ${os.release()}`, node: v("node", ["--version"]), wrangler: v(WRANGLER, ["--version"]),
    wrk: v("wrk", ["-v"]).split(" Copyright")[0],
  };
}

function report(R) {
  const L = [];
  L.push(`## edge-isr benchmark (${R.started})`, "");
  L.push(`Machine: ${R.machine.cpu}, ${R.machine.memory_gib} GiB, ${R.machine.os}; Node ${R.machine.node}, wrangler ${R.machine.wrangler}, ${R.machine.wrk}.`);
  L.push(`Load: wrk, ${R.config.threads} thread, ${R.config.connections} connections, ${R.config.duration} s per run, median of ${R.config.rounds} rounds (order rotated each round), all servers in \`wrangler dev\` on 127.0.0.1.`, "");
  const pv = R.peer.versions;
  L.push(R.peer.missing
    ? `**The peer (Next.js ISR through OpenNext) is MISSING from these results: ${R.peer.missing}.**`
    : `Peer: Next.js ${pv.next} (App Router, \`revalidate = 3600\`), @opennextjs/cloudflare ${pv["@opennextjs/cloudflare"]} (@opennextjs/aws ${pv["@opennextjs/aws"]}, built with wrangler ${pv.wrangler}), KV incremental cache, in the same wrangler and Node as every other system; built twice: OpenNext's defaults, and with its cache interception on.`, "");
  const base = (size) => R.load.find((r) => r.size === size && r.system === "baseline-kv (JS)" && r.state === "HIT");
  const hit = (size) => R.load.find((r) => r.size === size && r.system === "edge-isr" && r.state === "HIT");
  const peerRow = (size, sys) => R.load.find((r) => r.size === size && r.system === sys);
  // The faster peer build at this size (the goal is measured against it).
  const peer = (size) => R.load.filter((r) => r.size === size && isPeer(r.system)).sort((a, b) => b.rps - a.rps)[0];
  const rows = [];
  for (const size of R.config.sizes) {
    const b = base(size);
    for (const r of R.load.filter((x) => x.size === size)) {
      rows.push([size, r.system, r.state, fmtInt(r.rps), fmtMs(r.p50_us), fmtMs(r.p99_us),
        fmtRatio(r.rps / b.rps), fmtRatio(r.p50_us / b.p50_us), fmtInt(r.bytes_per_answer), r.errors ? `${r.errors} errors` : ""]);
    }
    for (const v of R.peer.variants) {
      if (!peerRow(size, v.sys)) rows.push([size, v.sys, "HIT", "MISSING", "", "", "", "", "", R.peer.missing || "see the warnings"]);
    }
  }
  L.push("### Throughput and latency", "");
  L.push(table(["size", "system", "state", "req/s", "p50 ms", "p99 ms", "req/s vs baseline", "p50 vs baseline", "bytes/answer", "note"], rows), "");
  L.push("bytes/answer: what wrk read per answer, headers included.", "");
  L.push("### edge-isr against the peer (HIT)", "");
  L.push(`Both in the same runtime (wrangler ${R.machine.wrangler} on Node ${R.machine.node}), the rows above.`, "");
  L.push(table(["size", "peer build", "peer req/s", "peer p50 ms", "peer p99 ms", "edge-isr req/s", "edge-isr / peer req/s", "peer / edge-isr p50"],
    R.config.sizes.flatMap((size) => R.peer.variants.map((v) => {
      const h = hit(size), q = peerRow(size, v.sys);
      if (!q) return [size, v.sys, "MISSING", "", "", fmtInt(h.rps), "-", "-"];
      return [size, v.sys, fmtInt(q.rps), fmtMs(q.p50_us), fmtMs(q.p99_us), fmtInt(h.rps), fmtRatio(h.rps / q.rps), fmtRatio(q.p50_us / h.p50_us)];
    }))), "");
  if (R.warnings.length) L.push("Warnings:", ...R.warnings.map((w) => `- ${w}`), "");

  if ((R.pairs || []).length) {
    L.push("### Paired runs (the goals' ratios)", "");
    L.push(`Back-to-back pairs of ${R.config.pairDuration} s runs (A then B, B first every other pair), ${R.config.pairs} pairs per row; the ratio A/B of each pair, the median and the range over the pairs.`, "");
    L.push(table(["size", "A", "B", "A/B req/s, median", "range", "A/B p50, median", "range", "A req/s (median)", "B req/s (median)"],
      R.pairs.map((p) => [p.size, p.a, p.b, fmtRatio(p.rps_ratio), `${fmtRatio(p.rps_ratio_range[0])}-${fmtRatio(p.rps_ratio_range[1])}`,
        fmtRatio(p.p50_ratio), `${fmtRatio(p.p50_ratio_range[0])}-${fmtRatio(p.p50_ratio_range[1])}`,
        fmtInt(median(p.pairs.map((x) => x.a_rps))), fmtInt(median(p.pairs.map((x) => x.b_rps)))])), "");
  }
  if ((R.cpu || []).length) {
    L.push("### Isolate CPU per HIT (profiled)", "");
    L.push(`bench/profile.mjs's busy time per request (V8's sampling profiler on the worker's isolate, 200 us interval; the profiler's own cost is in both), edge-isr's HIT and the baseline's alternately, ${R.config.profiles} back-to-back pairs of ${R.config.pairDuration} s per size; the ratio of each pair, the median and the range.`, "");
    L.push("Beside it: the CPU time (user + system, /proc) of the runtime's main thread (the one its isolates run on, with the local KV's simulation and the HTTP handling, the same work for both) while profiled; and, without the profiler, the CPU time of the whole runtime process per request in a run of the same length. The median gap between the profiler's samples tells how densely it sampled.", "");
    L.push(table(["size", "edge-isr ms/HIT (median)", "baseline ms/HIT (median)", "ratio, median", "range", "sample gap us", "main thread CPU, profiled: ratio (range)", "runtime CPU ms/HIT edge-isr, baseline", "ratio, median", "range"],
      R.cpu.map((c) => [c.size, c.edge_ms.toFixed(2), c.base_ms.toFixed(2), fmtRatio(c.ratio), `${fmtRatio(c.ratio_range[0])}-${fmtRatio(c.ratio_range[1])}`,
        Number.isFinite(c.median_gap_us) ? String(c.median_gap_us) : "-",
        c.thread_ratio ? `${fmtRatio(c.thread_ratio)} (${fmtRatio(c.thread_ratio_range[0])}-${fmtRatio(c.thread_ratio_range[1])})` : "-",
        c.runtime_ratio ? `${c.edge_runtime_ms.toFixed(2)}, ${c.base_runtime_ms.toFixed(2)}` : "-", c.runtime_ratio ? fmtRatio(c.runtime_ratio) : "-",
        c.runtime_ratio ? `${fmtRatio(c.runtime_ratio_range[0])}-${fmtRatio(c.runtime_ratio_range[1])}` : "-"])), "");
  }
  if (R.miss_first_byte) {
    const m = R.miss_first_byte;
    L.push("### MISS time to first byte (1 MiB)", "");
    L.push("7 pages never asked before, each fetched from the test origin directly, then through edge-isr (MISS: it streams while the page is stored), then again once stored (HIT); medians, one connection each.", "");
    L.push(table(["", "first byte ms", "last byte ms"], [
      ["the origin's own", m.origin.first_ms.toFixed(1), m.origin.last_ms.toFixed(1)],
      ["edge-isr MISS", m.miss.first_ms.toFixed(1), m.miss.last_ms.toFixed(1)],
      ["edge-isr HIT (the same pages)", m.hit.first_ms.toFixed(1), m.hit.last_ms.toFixed(1)],
    ]), "");
  }
  L.push("### Goals", "");
  const goals = [];
  for (const c of R.cpu || []) goals.push([`isolate CPU per HIT <= 1.1x baseline (${c.size}, profiled pairs)`, fmtRatio(c.ratio), c.ratio <= 1.1 ? "met" : "MISSED"]);
  for (const size of R.config.sizes) {
    // From the paired runs when there are any (see pairedRuns), else from the rounds' medians.
    const pair = (name) => (R.pairs || []).find((p) => p.size === size && p.name === name);
    const b = base(size), h = hit(size);
    const st = R.load.find((r) => r.size === size && r.state === "STALE");
    const hp = pair("HIT vs baseline"), sp2 = pair("STALE vs HIT");
    const how = (p) => (p ? ` (paired: median of ${p.pairs.length})` : " (rounds)");
    const hr = hp ? hp.rps_ratio : h.rps / b.rps, hl = hp ? hp.p50_ratio : h.p50_us / b.p50_us;
    goals.push([`HIT req/s >= 0.95x baseline (${size})`, fmtRatio(hr) + how(hp), hr >= 0.95 ? "met" : "MISSED"]);
    goals.push([`HIT p50 <= 1.05x baseline (${size})`, fmtRatio(hl) + how(hp), hl <= 1.05 ? "met" : "MISSED"]);
    const sr = sp2 ? 1 / sp2.rps_ratio : h.rps / st.rps, sp = sp2 ? sp2.p50_ratio : st.p50_us / h.p50_us;
    goals.push([`STALE within 1.05x of HIT (${size}): HIT/STALE req/s, STALE/HIT p50`, `${fmtRatio(sr)}, ${fmtRatio(sp)}${how(sp2)}`, sr <= 1.05 && sp <= 1.05 ? "met" : "MISSED"]);
  }
  for (const size of R.config.sizes) {
    const q = peer(size), e = hit(size);
    const label = `HIT req/s >= 3x the peer's, its faster build (${size})`;
    if (q) {
      goals.push([label, `${fmtRatio(e.rps / q.rps)} (${/interception/.test(q.system) ? "interception" : "defaults"})`, e.rps / q.rps >= 3 ? "met" : "MISSED"]);
    } else {
      goals.push([label, "-", `not measured: the peer is missing (${R.peer.missing || "see the warnings"})`]);
    }
  }
  const kh = R.kv_ops.find((o) => o.label === "HIT");
  goals.push(["one KV read per HIT, no write", `${kh.total.reads} read(s), ${kh.total.writes} write(s)`, kh.total.reads === 1 && kh.total.writes === 0 ? "met" : "MISSED"]);
  L.push(table(["goal", "measured", ""], goals), "");

  L.push("### KV operations per request (counted by bench/edge-isr-counting)", "");
  L.push(table(["case", "answer", "visitor: reads/writes", "with background work: reads/writes/deletes/lists", "by key family"],
    R.kv_ops.map((o) => [o.label, `${o.status} ${o.state}`, `${o.visitor.reads}/${o.visitor.writes}`,
      `${o.total.reads}/${o.total.writes}/${o.total.deletes}/${o.total.lists}`,
      Object.entries(o.by_key).map(([k, v]) => `${k}=${v}`).join(" ")])), "");

  if (R.peer.kv_ops) {
    L.push("### The peer's KV operations per request (default build, counted by bench/opennext/counting.mjs)", "");
    L.push(table(["request", "answer", "body bytes", "KV reads", "KV writes", "KV bytes read", "KV bytes written", "other binding calls"],
      R.peer.kv_ops.map((o) => [o.label, `${o.status} ${o.state}`, fmtInt(o.body_bytes), o.reads, o.writes, fmtInt(o.bytes_read), fmtInt(o.bytes_written),
        `${o.deletes} deletes, ${o.lists} lists, ${o.fetches} fetches`])), "");
  } else if (R.peer.kv_ops_error) {
    L.push(`The peer's KV operations could not be counted: ${R.peer.kv_ops_error}`, "");
  }

  if (R.invalidation.length) {
    L.push("### Invalidating one tag", "");
    L.push(table(["pages", "webhook answer", "all marked after", "KV reads", "KV writes", "KV lists", "queue messages", "fill (MISS) time"],
      R.invalidation.map((i) => i.error ? [fmtInt(i.pages), `failed: ${i.error}`, "", "", "", "", "", ""] : [fmtInt(i.pages), `${i.webhook_ms.toFixed(0)} ms (${i.answer ? `marked ${i.answer.marked}, complete ${i.answer.complete}` : "?"})`,
        `${i.wall_s.toFixed(1)} s`, fmtInt(i.reads), fmtInt(i.writes), fmtInt(i.lists), fmtInt(i.queue_sends), `${i.fill_s.toFixed(0)} s (${fmtInt(i.pages / i.fill_s)}/s)`])), "");
    L.push("Not included: the re-check of every page 90 s later (1 read per page, by design), which the bench does not wait for.", "");
  }

  L.push("### Bundle and startup", "");
  const brow = [];
  for (const [k, v] of Object.entries(R.bundle)) {
    if (k === "wasm") continue;
    const st = R.startup[k.split(" ")[0]];
    brow.push([k, v.line || v.error, `${(st.startup_ms / 1000).toFixed(2)} s`, `${(st.listening_ms / 1000).toFixed(2)} s`,
      `${st.first_request_ms.toFixed(0)} ms`, `${st.second_request_ms.toFixed(1)} ms`]);
  }
  L.push(table(["worker", "wrangler deploy --dry-run", "wrangler dev: spawn to first answer", "of which: to listening", "first request", "second request"], brow), "");
  L.push(`edge-isr wasm: ${fmtInt(R.bundle.wasm.bytes)} bytes (${fmtInt(R.bundle.wasm.gzip9)} gzip -9).`, "");

  const c = R.cost;
  L.push(`### KV cost per million page views (KV reads $${c.price.read}/M, writes $${c.price.write}/M, Workers Paid, as published ${c.price.date}; monthly inclusions not deducted)`, "");
  L.push(`Per view: ${c.per_visit.reads} read, ${c.per_visit.writes} writes (HIT or STALE); per regeneration: ${c.per_regeneration.reads} reads, ${c.per_regeneration.writes} writes (counted above). Views per page are Poisson over a 30-day month; a page regenerates at most once per revalidate time plus the wait for its next view.`, "");
  L.push(table(["traffic", ...c.revalidate.map((t) => `revalidate ${t} s`)],
    c.rows.map((r) => [r.scenario, ...r.cells.map((x) => `$${x.usd.toFixed(2)} (${fmtInt(x.regenerations)} regen.)`)])), "");
  return L.join("\n");
}

main()
  .then(() => stopAll(), async (e) => {
    say(`error: ${e.stack || e}`);
    await stopAll();
    process.exitCode = 1;
  })
  .finally(() => {
    for (const d of fs.readdirSync(OUT)) if (d.startsWith("state-")) fs.rmSync(path.join(OUT, d), { recursive: true, force: true });
  });
