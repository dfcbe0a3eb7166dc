// Drives the built-in page in headless Chromium (playwright-core) and prints what it saw as one JSON line.
//   node web/test/page.mjs BASE_URL TAG START END [SCREENSHOT.png]      (env: CHROMIUM, SETTLE_MS, TOKEN)
// Opens BASE_URL/ with the window START..END (ns) set through the URL, picks TAG in the tag list, waits for
// the chart to draw it and for the live figures from /metrics to show, then reports: points drawn, series,
// ink on the chart's canvas, the live ingest rate text, and every page or console error (a blocked script
// or a refused fetch shows up there). tests/page.rs checks the figures against the data it wrote.
import { chromium } from "playwright-core";

const [base, tag, start, end, shot] = process.argv.slice(2);
if (!base || !tag || !start || !end) {
  console.error("usage: node page.mjs BASE_URL TAG START END [SCREENSHOT.png]");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
const errors = [];
const t0 = Date.now();
const phases = {};
const mark = (name) => { phases[name] = Date.now() - t0; };
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 820 } });
  page.on("pageerror", (e) => errors.push("pageerror: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push("console: " + m.text()); });
  page.on("requestfailed", (r) => errors.push("requestfailed: " + r.url()));
  mark("launched");
  await page.goto(`${base}/?window=custom&start=${start}&end=${end}`);
  mark("loaded");
  if (process.env.TOKEN) {
    // An engine with --read-token-file: the page asks for the token, then reloads with it.
    await page.waitForSelector("#auth:not([hidden])", { timeout: 60000 });
    await page.fill("#token", process.env.TOKEN);
    await Promise.all([page.waitForNavigation(), page.dispatchEvent("#token", "change")]);
    errors.length = 0; // the 401s before the token was given are expected
    mark("token");
  }
  // The tag list comes from /tags; pick ours as a user would.
  await page.waitForSelector(`#tag option[value="${tag}"]`, { state: "attached", timeout: 60000 });
  mark("listed");
  await page.selectOption("#tag", tag);
  await page.waitForSelector(`#chart[data-tag="${tag}"]`, { timeout: 60000 });
  mark("drawn");
  // The live figures need two scrapes of /metrics.
  await page.waitForFunction(() => document.getElementById("rate").textContent.includes("rec/s"), null, { timeout: 60000 });
  mark("live");
  const seen = await page.evaluate(() => {
    const el = document.getElementById("chart");
    const canvas = el.querySelector("canvas");
    let ink = 0;
    if (canvas) {
      const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0) ink++;
    }
    return {
      points: Number(el.dataset.points),
      series: Number(el.dataset.series),
      ink,
      title: document.getElementById("chart-title").textContent,
      rate: document.getElementById("rate").textContent,
      status: document.getElementById("status").textContent,
      url: location.search,
    };
  });
  if (shot) {
    // SETTLE_MS: let the live chart gather points before the picture (used for the README's screenshot).
    await page.waitForTimeout(Number(process.env.SETTLE_MS || 0));
    await page.screenshot({ path: shot });
  }
  console.log(JSON.stringify({ ...seen, errors, ms: phases }));
} catch (e) {
  console.error(`page test: ${e.message}\nseen so far: ${JSON.stringify({ errors, ms: phases })}`);
  process.exitCode = 1;
} finally {
  // Chromium can take seconds to shut down cleanly here; the test needs nothing more from it.
  await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 1000))]);
  process.exit(process.exitCode || 0);
}
