// One ISR page per bench size: /s2k, /s50k, /s1m. Rendered on its first request (no page is
// prerendered at build time), stored in the KV incremental cache, and served from it (HIT) for
// the next hour; after that the next request gets the stored page and triggers a regeneration.
import { notFound } from "next/navigation";
import Pad from "../pad";

export const revalidate = 3600;
export const dynamicParams = true;
export function generateStaticParams() {
  return [];
}

const SIZES = { s2k: 2048, s50k: 51200, s1m: 1048576 };
// Next.js's own markup around the padding on this page (scripts, inlined RSC payload), measured
// with the pinned versions: the padding makes the whole HTML the page's size, as the test
// origin pads its pages. The 2 KiB page cannot get below this shell (about 5.8 KB).
const SHELL = 5844;
let renders = 0;

export default async function Page({ params }) {
  const { page } = await params;
  const bytes = SIZES[page];
  if (!bytes) notFound();
  renders += 1;
  return (
    <main>
      <h1>/{page}</h1>
      <p id="render">render={renders}</p>
      <p id="time">time={Date.now()}</p>
      <p id="content">content=v1</p>
      <Pad bytes={bytes - SHELL} />
    </main>
  );
}
