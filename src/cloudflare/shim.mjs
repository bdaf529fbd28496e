// edge-isr's worker entry point: worker-build's CUSTOM_SHIM (scripts/build.sh sets it), in place
// of worker-build's default entry, which wraps every request in two `Proxy` objects so that it
// can re-create the wasm instance after a crash. This one recovers the same way with nothing
// per request: the handlers call the wasm exports directly.
//
// Why recovery is needed: a Rust panic aborts (panic = "abort" on wasm32), which traps the wasm
// instance in the middle of whatever it was doing (a `RefCell` borrowed, the async executor's
// queue half-run, the stack pointer not restored). That instance must never be called again.
// The request that panicked gets the runtime's error answer; the next request, in the same
// isolate, runs on a new instance of the same module, as after a cold start (the isolate's
// state kept in wasm memory — configuration, renders in flight, back-offs — starts afresh).
//
// How: wasm-bindgen's own reinit (`wasm_bindgen::handler::schedule_reinit`). The panic hook
// (src/cloudflare/mod.rs, `panic_hook`) schedules it before the trap; a trap that is not a panic
// (stack overflow, say) schedules it from the `error` / `unhandledrejection` listeners or the
// `catch` below. Every export of wasm-bindgen's glue already begins with a check of that flag
// (its call guard), and on the next call the glue resets its own state (cached memory views,
// the instance id its finalizers compare, so that objects of the old instance are never freed
// in the new one), makes a new instance and starts it. The glue emitted for `--target bundler`
// finds the module and its imports under the names the `--target module` glue defines itself,
// `wasmModule` and `__wbg_get_imports`, and keeps the instance in `wasmInstance`: this file
// provides the three as globals (scripts/build.sh checks that the glue still uses them).
//
// worker-build fills in the two SNIPPET placeholders below (the imports of wasm-bindgen's inline
// JS snippets, e.g. the `worker` crate's) and bundles this file with wasm-bindgen's glue
// (`--target bundler`) into build/worker/shim.mjs, next to build/worker/index.wasm.
//
// Classes exported from wasm (the coordinator's Durable Object) need more: the glue refuses
// objects of an old instance ("Invalid stale object from previous Wasm instance"), so the class
// is exported through a wrapper (`Coordinator` below) that makes its wasm object again when the
// instance it was made on is gone.
import * as imports from "./index_bg.js";
import module from "./index.wasm";
$SNIPPET_JS_IMPORTS

const wasmImports = () => ({
  "./index_bg.js": imports,
  $SNIPPET_WASM_IMPORTS
});
globalThis.wasmModule = module;
globalThis.__wbg_get_imports = wasmImports;
globalThis.wasmInstance = new WebAssembly.Instance(module, wasmImports());
imports.__wbg_set_wasm(globalThis.wasmInstance.exports);
globalThis.wasmInstance.exports.__wbindgen_start?.();

// wasm-bindgen's `schedule_reinit` as the glue exposes it to the module (its name ends in a hash).
const scheduleReinit = imports[Object.keys(imports).find((name) => name.startsWith("__wbg___wbindgen_reinit_"))];

function noticeTrap(e) {
  if (e instanceof WebAssembly.RuntimeError) {
    console.error("edge-isr: the wasm instance trapped; the next request gets a new one", e);
    scheduleReinit();
  }
}
addEventListener("error", (event) => noticeTrap(event.error));
addEventListener("unhandledrejection", (event) => noticeTrap(event.reason));

// Plain functions, not `async`: the handler's promise is the wasm export's own (no extra await
// per request); a `try` around a call costs nothing until something throws.
export default {
  // The fast path (src/cloudflare/fast.rs): `fetch_begin` answers at once (a promise, for
  // everything that needs more than the page's read), or gives back a number and KV's promise
  // of the page; the read is chained here, so that a HIT never runs Rust's async executor.
  // After a crash, a request whose read was in flight comes back `undefined` from
  // `fetch_after_read` (its number is unknown to the new instance, or another request's
  // there), and is taken again, whole, through the `fetch` export. An answer the
  // runtime refused to make (a header it does not allow) comes back as its `Error`, thrown
  // here: wasm never throws through its own frames.
  fetch(request, env, ctx) {
    try {
      const begun = imports.fetch_begin(request, env, ctx);
      if (!Array.isArray(begun)) return answered(begun);
      const [number, read] = begun;
      return read.then(
        (page) => afterRead(() => imports.fetch_after_read(number, request, page.value, page.metadata == null ? undefined : JSON.stringify(page.metadata)), request, env, ctx),
        (error) => afterRead(() => imports.fetch_read_failed(number, request, error), request, env, ctx),
      );
    } catch (e) {
      noticeTrap(e);
      throw e;
    }
  },

  queue(batch, env, ctx) {
    try {
      return imports.queue(batch, env, ctx);
    } catch (e) {
      noticeTrap(e);
      throw e;
    }
  },

  scheduled(event, env, ctx) {
    try {
      return imports.scheduled(event, env, ctx);
    } catch (e) {
      noticeTrap(e);
      throw e;
    }
  },
};

function afterRead(step, request, env, ctx) {
  try {
    return answered(step() ?? imports.fetch(request, env, ctx));
  } catch (e) {
    noticeTrap(e);
    throw e;
  }
}

function answered(answer) {
  if (answer instanceof Error) throw answer;
  return answer;
}

// The coordinator's Durable Object class (src/cloudflare/coordinator.rs). workerd constructs it
// once per object and calls `fetch`; the wasm object is made on first use, and made again (once
// per call at most) when a crash has replaced the instance it lived on. What the object kept in
// wasm memory (its claims) starts afresh then, as after an eviction; its log is in SQLite.
export class Coordinator {
  constructor(state, env) {
    this.state = state;
    this.env = env;
    this.inner = null;
  }

  fetch(request) {
    try {
      this.inner ??= new imports.Coordinator(this.state, this.env);
      return this.inner.fetch(request);
    } catch (e) {
      noticeTrap(e);
      if (!(e instanceof Error) || !/stale object/i.test(e.message)) throw e;
      this.inner = new imports.Coordinator(this.state, this.env);
      return this.inner.fetch(request);
    }
  }
}
