// The built edge-isr worker with its KV binding wrapped in a counter: `make bench` runs this in a
// separate `wrangler dev` (never in the throughput runs) to count the KV operations each cache
// state costs, instead of taking them from the design on trust.
//
// Every request gets a record: its KV operations (by kind and by key family: p/ pages, l/ leases,
// t/ tag members, g/ page tag lists) made before the response and after it (ctx.waitUntil work),
// and how many waitUntil promises are still pending. The response carries `x-bench-op: <id>`;
// `GET /__bench/op?id=<id>` answers the record as JSON (poll it until `pending` is 0: the
// background work is finished). `GET /__bench/total` answers the totals over every invocation,
// queue consumers included. Nothing else differs from build/worker/shim.mjs.
import EdgeIsr from "../../build/worker/shim.mjs";

const KINDS = ["reads", "writes", "deletes", "lists", "sends"];
const records = new Map();
let nextId = 1;
const total = newCounts();

function newCounts() {
  const c = { inflight: 0, pending: 0, by_key: {} };
  for (const k of KINDS) c[k] = 0;
  return c;
}

function family(key) {
  if (typeof key !== "string") return "?";
  const slash = key.indexOf("/");
  return slash < 0 ? key : key.slice(0, slash);
}

function countingKv(kv, counters) {
  const op = (kind, key, run) => {
    for (const c of counters) {
      c[kind]++;
      const name = `${kind}:${family(key)}`;
      c.by_key[name] = (c.by_key[name] || 0) + 1;
      c.inflight++;
    }
    const done = () => {
      for (const c of counters) c.inflight--;
    };
    const p = run();
    p.then(done, done);
    return p;
  };
  return {
    get: (key, opts) => op("reads", key, () => kv.get(key, opts)),
    getWithMetadata: (key, opts) => op("reads", key, () => kv.getWithMetadata(key, opts)),
    put: (key, value, opts) => op("writes", key, () => kv.put(key, value, opts)),
    delete: (key) => op("deletes", key, () => kv.delete(key)),
    list: (opts) => op("lists", opts && opts.prefix, () => kv.list(opts)),
  };
}

function countingQueue(queue, counters) {
  const bump = (n) => {
    for (const c of counters) c.sends += n;
  };
  return new Proxy(queue, {
    get(target, prop) {
      if (prop === "send") return (body, opts) => (bump(1), target.send(body, opts));
      if (prop === "sendBatch") return (msgs, opts) => (bump(msgs.length || 0), target.sendBatch(msgs, opts));
      const v = Reflect.get(target, prop);
      // Not `constructor`: workers-rs checks a binding's constructor name ("WorkerQueue").
      return typeof v === "function" && prop !== "constructor" ? v.bind(target) : v;
    },
  });
}

function wrapEnv(env, counters) {
  const pages = countingKv(env.PAGES, counters);
  const queue = env.INVALIDATIONS ? countingQueue(env.INVALIDATIONS, counters) : undefined;
  return new Proxy(env, {
    get(target, prop) {
      if (prop === "PAGES") return pages;
      if (prop === "INVALIDATIONS" && queue) return queue;
      return Reflect.get(target, prop);
    },
  });
}

function wrapCtx(ctx, counters) {
  return new Proxy(ctx, {
    get(target, prop) {
      if (prop === "waitUntil") {
        return (promise) => {
          for (const c of counters) c.pending++;
          const done = () => {
            for (const c of counters) c.pending--;
          };
          Promise.resolve(promise).then(done, done);
          return target.waitUntil(promise);
        };
      }
      const v = Reflect.get(target, prop);
      // Not `constructor`: workers-rs checks a binding's constructor name ("WorkerQueue").
      return typeof v === "function" && prop !== "constructor" ? v.bind(target) : v;
    },
  });
}

function json(value) {
  return new Response(JSON.stringify(value), { headers: { "content-type": "application/json" } });
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/__bench/op") {
      const rec = records.get(Number(url.searchParams.get("id")));
      return rec ? json(rec) : json({ error: "unknown id" });
    }
    if (url.pathname === "/__bench/total") return json(total);
    const id = nextId++;
    const rec = { id, ...newCounts() };
    records.set(id, rec);
    if (records.size > 10000) records.delete(records.keys().next().value);
    const counters = [rec, total];
    // edge-isr's entry (src/cloudflare/shim.mjs) is a plain object of handlers.
    const response = await EdgeIsr.fetch(request, wrapEnv(env, counters), wrapCtx(ctx, counters));
    // What the visitor's part cost (the response is out; the rest is waitUntil work).
    rec.before_response = Object.fromEntries(KINDS.map((k) => [k, rec[k]]));
    const out = new Response(response.body, response);
    out.headers.set("x-bench-op", String(id));
    return out;
  },
  async queue(batch, env, ctx) {
    const counters = [total];
    return EdgeIsr.queue(batch, wrapEnv(env, counters), wrapCtx(ctx, counters));
  },
};

// The coordinator's Durable Object class, which wrangler.toml binds (COORDINATOR).
export { Coordinator } from "../../build/worker/shim.mjs";
