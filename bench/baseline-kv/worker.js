// The baseline: the least a KV-backed page cache can do for a HIT, in plain JavaScript.
// One KV read with metadata (streamed), the stored headers copied, the body returned.
// It is the runtime's floor for a HIT: edge-isr's HIT is compared with it.
//
// GET /__ab/<path> reads the same page with {type: "arrayBuffer"} instead of a stream: the bench
// measures it too, to show what buffering the value (as edge-isr does, to give its engine the
// bytes) costs against streaming it.
//
// PUT /<path> stores a page (body = the page, header x-bench-headers = its headers as JSON):
// the bench fills this worker's own local KV with the same pages edge-isr serves. The GET path
// below is the only thing measured.
export default {
  async fetch(request, env) {
    if (request.method === "PUT") return fill(request, env);
    let key = new URL(request.url).pathname;
    let type = "stream";
    if (key.startsWith("/__ab/")) [key, type] = [key.slice(5), "arrayBuffer"];
    const { value, metadata } = await env.PAGES.getWithMetadata(key, { type });
    if (value === null) return new Response("not in the cache\n", { status: 404 });
    return new Response(value, { headers: metadata.headers });
  },
};

async function fill(request, env) {
  const key = new URL(request.url).pathname;
  const headers = JSON.parse(request.headers.get("x-bench-headers") || "{}");
  await env.PAGES.put(key, await request.arrayBuffer(), { metadata: { headers } });
  return new Response(null, { status: 204 });
}
