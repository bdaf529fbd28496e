"use client";
// Padding up to the page's size. A client component: the HTML carries the padding once (server-
// side rendered), while the inlined RSC payload carries only the byte count. The same text in a
// server component would be in the page twice (HTML and RSC payload).
export default function Pad({ bytes }) {
  return <pre id="pad">{"x".repeat(Math.max(0, bytes))}</pre>;
}
