// The peer's built worker (.open-next/worker.js) with its bindings wrapped in counters: the bench
// runs this in a separate `wrangler dev` (never under load) to count the KV operations a MISS
// and a HIT cost, the way bench/edge-isr-counting does for edge-isr.
//
// Counted: every call on the KV incremental cache binding (get/getWithMetadata/put/delete/list),
// with the bytes read and written (a JSON read: its JSON text), and every fetch through the
// ASSETS and WORKER_SELF_REFERENCE bindings. `GET /__bench/total` answers the running totals as JSON (with `inflight`: operations not finished yet); the bench
// reads them before and after one request. Nothing else differs from .open-next/worker.js.
import worker from "./.open-next/worker.js";
export * from "./.open-next/worker.js";

const total = { reads: 0, writes: 0, deletes: 0, lists: 0, fetches: 0, inflight: 0, bytes_read: 0, bytes_written: 0, by_binding: {} };

// Size of what a KV read returned (the incremental cache reads entries as parsed JSON).
function size(v) {
  if (v === null || v === undefined) return 0;
  if (typeof v === "string") return new TextEncoder().encode(v).length;
  if (v instanceof ArrayBuffer) return v.byteLength;
  if (typeof v === "object" && "value" in v && "metadata" in v) return size(v.value);
  try {
    return new TextEncoder().encode(JSON.stringify(v)).length;
  } catch {
    return 0;
  }
}

function count(kind, binding, run) {
  total[kind]++;
  const name = `${kind}:${binding}`;
  total.by_binding[name] = (total.by_binding[name] || 0) + 1;
  total.inflight++;
  const done = () => total.inflight--;
  const p = run();
  Promise.resolve(p).then(done, done);
  return p;
}

function read(v) {
  total.bytes_read += size(v);
  return v;
}

function countingKv(kv, binding) {
  return {
    get: (key, opts) => count("reads", binding, () => kv.get(key, opts).then(read)),
    getWithMetadata: (key, opts) => count("reads", binding, () => kv.getWithMetadata(key, opts).then(read)),
    put: (key, value, opts) => count("writes", binding, () => ((total.bytes_written += size(value)), kv.put(key, value, opts))),
    delete: (key) => count("deletes", binding, () => kv.delete(key)),
    list: (opts) => count("lists", binding, () => kv.list(opts)),
  };
}

function countingFetcher(fetcher, binding) {
  return new Proxy(fetcher, {
    get(target, prop) {
      if (prop === "fetch") return (...args) => count("fetches", binding, () => target.fetch(...args));
      const v = Reflect.get(target, prop);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

let wrapped;
function wrapEnv(env) {
  if (wrapped && wrapped.raw === env) return wrapped.env;
  const over = {};
  if (env.NEXT_INC_CACHE_KV) over.NEXT_INC_CACHE_KV = countingKv(env.NEXT_INC_CACHE_KV, "NEXT_INC_CACHE_KV");
  for (const b of ["ASSETS", "WORKER_SELF_REFERENCE"]) if (env[b]) over[b] = countingFetcher(env[b], b);
  const e = { ...env, ...over };
  wrapped = { raw: env, env: e };
  return e;
}

export default {
  async fetch(request, env, ctx) {
    if (new URL(request.url).pathname === "/__bench/total") {
      return new Response(JSON.stringify(total), { headers: { "content-type": "application/json" } });
    }
    return worker.fetch(request, wrapEnv(env), ctx);
  },
};
