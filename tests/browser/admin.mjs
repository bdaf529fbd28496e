// Browser test of the admin page, run by the e2e suite (tests/e2e/cms.rs) against the worker
// in `wrangler dev`: headless Chromium (Debian's /usr/bin/chromium, or CHROMIUM_PATH) driven by
// playwright-core. Opens /__isr/admin with the password, checks that PAGE_PATH's row is fresh,
// clicks "revalidate tag" for TAG, and waits until the row says stale. Screenshots:
// $SCREENSHOT_DIR/admin-before.png and admin-after.png.
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
  const resp = await page.goto(`${base}/__isr/admin`);
  if (resp.status() !== 200) throw new Error(`admin page answered ${resp.status()}`);
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
  console.log(`browser: ${pagePath} went from fresh to stale after "revalidate tag ${tag}"; screenshots in ${shots}`);
} finally {
  await browser.close();
}
