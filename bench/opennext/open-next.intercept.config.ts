// The same peer with OpenNext's cache interception on: requests for ISR/SSG pages are answered
// from the incremental cache by OpenNext's routing layer, before the Next.js server is loaded
// (the option's documentation: faster cached pages; not for partial prerendering). The bench
// measures both (bench/opennext/setup.sh builds this one into .open-next-intercept/).
import { defineCloudflareConfig } from "@opennextjs/cloudflare";
import kvIncrementalCache from "@opennextjs/cloudflare/overrides/incremental-cache/kv-incremental-cache";
import memoryQueue from "@opennextjs/cloudflare/overrides/queue/memory-queue";

export default defineCloudflareConfig({
  incrementalCache: kvIncrementalCache,
  queue: memoryQueue,
  enableCacheInterception: true,
});
