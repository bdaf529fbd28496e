// A small JavaScript app Worker: the kind of app edge-isr goes in front of (an Astro,
// SvelteKit, Remix or Hono app built for Workers), with a Hono-like router in plain JavaScript
// and no dependencies. The e2e suite runs it beside edge-isr in one `wrangler dev`
// (tests/e2e/app_worker.rs), bound to edge-isr as ORIGIN_SERVICE.
//
// Pages under /app/ show the URL the app was asked for, their content and a render counter
// (`render=N`); the control API below changes a page or reads its counters. edge-isr passes
// the control calls (PUT, POST) through to this Worker uncached, like any other non-GET.
//
//   PUT  /__app/behaviour?path=/app/x  {"content": "v2", "headers": {"cache-tag": "t"}, "throw": true, "stall_ms": 5000}
//   POST /__app/stats?path=/app/x      -> {"renders": 1, "not_modified": 0, "throws": 0, "last_url": "..."}

/** A tiny router: `app.get("/app/*", handler)`, exact paths or a trailing `*`. */
class Router {
  constructor() {
    this.routes = [];
  }
  on(method, pattern, handler) {
    this.routes.push({ method, pattern, handler });
    return this;
  }
  get(pattern, handler) {
    return this.on("GET", pattern, handler);
  }
  put(pattern, handler) {
    return this.on("PUT", pattern, handler);
  }
  post(pattern, handler) {
    return this.on("POST", pattern, handler);
  }
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const method = request.method === "HEAD" ? "GET" : request.method;
    for (const route of this.routes) {
      const matches = route.pattern.endsWith("*")
        ? url.pathname.startsWith(route.pattern.slice(0, -1))
        : url.pathname === route.pattern;
      if (matches && route.method === method) {
        return route.handler({ request, url, env, ctx });
      }
    }
    return json({ error: `no route for ${request.method} ${url.pathname}` }, 404);
  }
}

function json(value, status = 200) {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}

// Per path: what the page says and how it answers, and what happened to it. An isolate's
// memory: `wrangler dev` keeps one isolate for the whole run.
const behaviours = new Map();
const stats = new Map();

function statsOf(path) {
  if (!stats.has(path)) stats.set(path, { renders: 0, not_modified: 0, throws: 0, requests: 0, last_url: null });
  return stats.get(path);
}

const app = new Router()
  .get("/app/*", async ({ request, url }) => {
    const path = url.pathname;
    const b = behaviours.get(path) || {};
    const s = statsOf(path);
    s.requests++;
    s.last_url = request.url;
    if (b.stall_ms) await new Promise((resolve) => setTimeout(resolve, b.stall_ms));
    if (b.throw) {
      s.throws++;
      throw new Error(`app worker: ${path} is set to throw`);
    }
    const content = b.content || "v1";
    const etag = `"app-${content}"`;
    const headers = { "content-type": "text/html; charset=utf-8", etag, ...(b.headers || {}) };
    if (request.headers.get("if-none-match") === etag) {
      s.not_modified++;
      return new Response(null, { status: 304, headers });
    }
    s.renders++;
    const body = `<!doctype html><title>app ${path}</title><p>path=${path} content=${content} render=${s.renders} url=${request.url}</p>`;
    return new Response(body, { headers });
  })
  .put("/__app/behaviour", async ({ request, url }) => {
    const path = url.searchParams.get("path");
    if (!path) return json({ error: "path is required" }, 400);
    behaviours.set(path, await request.json());
    return json({ ok: true });
  })
  .post("/__app/stats", ({ url }) => json(statsOf(url.searchParams.get("path") || "")));

export default app;
