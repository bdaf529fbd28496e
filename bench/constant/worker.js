// The runtime's own floor: a constant body, no I/O. /s2k, /s50k and /s1m answer bodies of
// 2 KiB, 50 KiB and 1 MiB (the bench's page sizes); anything else answers a few bytes.
const SIZES = { "/s2k": 2048, "/s50k": 51200, "/s1m": 1048576 };
const BODIES = {};
for (const [path, size] of Object.entries(SIZES)) {
  BODIES[path] = new TextEncoder().encode("<!doctype html>" + "x".repeat(size - 15));
}
const SMALL = new TextEncoder().encode("ok\n");

export default {
  fetch(request) {
    const body = BODIES[new URL(request.url).pathname] || SMALL;
    return new Response(body, { headers: { "content-type": "text/html; charset=utf-8" } });
  },
};
