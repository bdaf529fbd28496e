// Browser test of the admin page, run by the e2e suite (tests/e2e/cms.rs) against the worker
// in `wrangler dev`: headless Chromium (Debian's /usr/bin/chromium, or CHROMIUM_PATH) driven by
// playwright-core. Visits PAGE_PATH a few times (HITs), opens /__isr/admin with the password,
// checks the last hour's four charts (drawn, with labelled axes, the hit ratio not empty),
// searches by path prefix and by tag, pages one row at a time with the "next page" link,
// checks that PAGE_PATH's row is fresh, clicks "revalidate tag" for TAG, and waits until the
// row says stale. Screenshots in $SCREENSHOT_DIR: admin-charts.png (the charts),
// admin-search.png (a tag search), admin-before.png and admin-after.png (the whole page).
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = need("WORKER_URL");
const password = need("ADMIN_PASSWORD");
const pagePath = need("PAGE_PATH");
const tag = need("TAG");
const shots = process.env.SCREENSHOT_DIR || "target/e2e";
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
fs.mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
try {
  const context = await browser.newContext({ httpCredentials: { username: "admin", password } });
  const page = await context.newPage();
  const check = (ok, what) => {
    if (!ok) throw new Error(what);
  };
  // Traffic for the charts: this isolate counts these answers at once (the admin page adds its
  // own isolate's interval in progress to what other isolates wrote to KV).
  for (let i = 0; i < 5; i++) {
    const r = await context.request.get(`${base}${pagePath}`);
    check(r.ok(), `GET ${pagePath} answered ${r.status()}`);
  }
  const resp = await page.goto(`${base}/__isr/admin`);
  if (resp.status() !== 200) throw new Error(`admin page answered ${resp.status()}`);

  // The charts: four of them, each an SVG with both axes labelled and value/time labels.
  const charts = page.locator("figure.chart");
  check((await charts.count()) === 4, `expected 4 charts, found ${await charts.count()}`);
  for (const title of ["Hit ratio", "Renders", "Failures", "Origin latency"]) {
    const chart = page.locator(`figure.chart[data-chart="${title}"]`);
    const texts = await chart.locator(`svg[role="img"] text`).allTextContents();
    check(texts.includes("time (last hour)"), `${title}: no x-axis label in ${JSON.stringify(texts)}`);
    check(texts.includes("now") && texts.some((t) => t.endsWith(" min")), `${title}: no time labels`);
    check(texts.filter((t) => /^\d+%?$/.test(t)).length >= 2, `${title}: no value labels in ${JSON.stringify(texts)}`);
    const box = await chart.locator(`svg[role="img"]`).boundingBox();
    check(box && box.width > 300 && box.height > 120, `${title}: chart is ${JSON.stringify(box)}`);
  }
  const ratio = page.locator('figure.chart[data-chart="Hit ratio"]');
  check((await ratio.locator("polyline, circle").count()) > 0, "the hit ratio chart draws nothing after 5 HITs");
  const totals = await page.locator("#stats-totals").textContent();
  const hits = Number(/HIT (\d+)/.exec(totals)?.[1] ?? 0);
  check(hits >= 5, `expected at least 5 HITs in the totals: ${totals}`);
  await page.locator(".charts").screenshot({ path: path.join(shots, "admin-charts.png") });

  // Search by path prefix, then by tag: PAGE_PATH's row only.
  await page.fill('input[name="prefix"]', pagePath);
  await Promise.all([page.waitForURL(/prefix=/), page.click("#search")]);
  let rows = await page.locator("tr[data-page]").evaluateAll((trs) => trs.map((t) => t.dataset.page));
  check(rows.length === 1 && rows[0] === pagePath, `prefix search listed ${JSON.stringify(rows)}`);
  await page.fill('input[name="prefix"]', "");
  await page.fill('input[name="tag"]', tag);
  await Promise.all([page.waitForURL(/tag=/), page.click("#search")]);
  rows = await page.locator("tr[data-page]").evaluateAll((trs) => trs.map((t) => t.dataset.page));
  check(rows.includes(pagePath), `tag search for ${tag} listed ${JSON.stringify(rows)}`);
  await page.screenshot({ path: path.join(shots, "admin-search.png"), fullPage: true });

  // Paging with KV's cursor, one row per page: the second page lists another page.
  await page.goto(`${base}/__isr/admin?limit=1`);
  const first = await page.locator("tr[data-page]").evaluateAll((trs) => trs.map((t) => t.dataset.page));
  check(first.length === 1, `limit=1 listed ${JSON.stringify(first)}`);
  await Promise.all([page.waitForURL(/cursor=/), page.click("#next-page")]);
  const second = await page.locator("tr[data-page]").evaluateAll((trs) => trs.map((t) => t.dataset.page));
  check(second.length === 1 && second[0] !== first[0], `next page listed ${JSON.stringify(second)} after ${JSON.stringify(first)}`);
  check((await page.locator("#first-page").count()) === 1, "no link back to the first page");

  await page.goto(`${base}/__isr/admin`);
  const row = page.locator(`tr[data-page="${pagePath}"]`);
  const state = row.locator("[data-state]");
  await state.waitFor({ timeout: 10_000 });
  const before = (await state.textContent()).trim();
  if (before !== "fresh") throw new Error(`expected ${pagePath} to be fresh, the admin page says ${before}`);
  await page.screenshot({ path: path.join(shots, "admin-before.png"), fullPage: true });

  await row.locator(`button[data-kind="tags"][data-value="${tag}"]`).click();
  // The page reloads itself after the call; poll the row's state with a deadline.
  await page.waitForFunction(
    (p) => document.querySelector(`tr[data-page="${p}"] [data-state]`)?.textContent.trim() === "stale",
    pagePath,
    { timeout: 15_000, polling: 100 },
  );
  await page.screenshot({ path: path.join(shots, "admin-after.png"), fullPage: true });
  console.log(`browser: charts drawn (${hits} HITs this hour), prefix/tag search and paging work, ${pagePath} went from fresh to stale after "revalidate tag ${tag}"; screenshots in ${shots}`);
} finally {
  await browser.close();
}
