// OpenNext for Cloudflare, configured as its caching guide describes for ISR on Workers KV:
// the incremental cache in KV (binding NEXT_INC_CACHE_KV), time-based revalidation through the
// memory queue (a self-referencing service binding). No tag cache (nothing here calls
// revalidateTag), so a HIT costs the incremental cache read alone.
import { defineCloudflareConfig } from "@opennextjs/cloudflare";
import kvIncrementalCache from "@opennextjs/cloudflare/overrides/incremental-cache/kv-incremental-cache";
import memoryQueue from "@opennextjs/cloudflare/overrides/queue/memory-queue";

export default defineCloudflareConfig({
  incrementalCache: kvIncrementalCache,
  queue: memoryQueue,
});
