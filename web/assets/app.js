// tickcore's built-in page: plots a tag's 10 values from /api and the live ingest rate and service-time
// percentiles from /metrics. Plain script, no build step of its own; uPlot is loaded before it.
"use strict";

const $ = (id) => document.getElementById(id);
const NS_PER_S = 1000000000n;
const REFRESH_MS = 2000;
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

let chart = null;
let rateChart = null;
const rateData = [[], []];
let lastScrape = null;
let shown = null; // {tag, start, end} of the chart on screen
let showSeq = 0; // the latest show(); an older answer arriving later is dropped

// With --read-token-file the engine answers 401 to /tags, /api and /metrics: the page then asks for a read
// token, keeps it for this tab only (sessionStorage) and sends it as a Bearer token.
const TOKEN_KEY = "tickcore-read-token";

async function get(url) {
  const t = sessionStorage.getItem(TOKEN_KEY);
  const r = await fetch(url, { headers: t ? { Authorization: "Bearer " + t } : {} });
  if (r.status === 401) {
    $("auth").hidden = false;
    throw new Error("this engine needs a read token: enter it at the top right");
  }
  return r;
}

function setStatus(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function fmtSeconds(s) {
  if (!isFinite(s)) return "–";
  if (s < 1e-3) return (s * 1e6).toFixed(0) + " µs";
  if (s < 1) return (s * 1e3).toFixed(2) + " ms";
  return s.toFixed(2) + " s";
}

function fmtCount(n) {
  return n >= 10000 ? Math.round(n).toLocaleString("en") : n.toFixed(n < 10 ? 1 : 0);
}

// --- the query form --------------------------------------------------------------------------------------

function selectedTag() {
  const typed = $("tag-text").value.trim();
  return typed !== "" ? typed : $("tag").value;
}

function windowOf() {
  const w = $("window").value;
  if (w === "custom") {
    return { start: BigInt($("start").value.trim()), end: BigInt($("end").value.trim()) };
  }
  const end = BigInt(Date.now()) * 1000000n;
  return { start: end - BigInt(w) * NS_PER_S, end };
}

async function loadTags() {
  const r = await get("/tags?limit=500");
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || r.statusText);
  const sel = $("tag"), list = $("tag-list"), keep = sel.value;
  sel.replaceChildren();
  list.replaceChildren();
  for (const t of j.tags) {
    const label = `${t.tag} (${t.records.toLocaleString("en")})`;
    sel.append(new Option(label, t.tag));
    list.append(new Option(t.tag));
  }
  if (keep && j.tags.some((t) => t.tag === keep)) sel.value = keep;
  $("tags-count").textContent = j.total.toLocaleString("en");
  return j.tags.length;
}

// --- the values chart --------------------------------------------------------------------------------------

function columns(samples) {
  const xs = samples.map((s) => s.time / 1e9);
  const cols = [xs];
  for (let k = 0; k < 10; k++) cols.push(samples.map((s) => (s.values ? s.values[k] : null)));
  return cols;
}

function drawn(u) {
  // Samples with values (an as-of sample is null before the tag's first record in the window).
  let n = 0;
  const ys = u.data[1] || [];
  for (let i = 0; i < ys.length; i++) if (ys[i] !== null && ys[i] !== undefined) n++;
  const el = $("chart");
  el.dataset.points = String(n);
  el.dataset.series = String(u.series.length - 1);
  el.dataset.tag = shown ? shown.tag : "";
}

function makeChart(cols) {
  const series = [{}];
  for (let k = 0; k < 10; k++) {
    series.push({ label: "v" + k, stroke: COLORS[k], width: 1, spanGaps: false, points: { show: false } });
  }
  const opts = {
    width: Math.max(400, $("chart").clientWidth || 900),
    height: 380,
    series,
    scales: { x: { time: true } },
    axes: [{}, { size: 60 }],
    hooks: { draw: [drawn] },
  };
  $("chart").replaceChildren();
  return new uPlot(opts, cols, $("chart"));
}

async function show() {
  const tag = selectedTag();
  if (!tag) {
    setStatus("no tag: nothing has been written yet", true);
    return;
  }
  let w;
  try {
    w = windowOf();
  } catch (e) {
    setStatus("start and end must be integers (unix ns)", true);
    return;
  }
  const q = new URLSearchParams({ tag, start: String(w.start), end: String(w.end) });
  const began = performance.now();
  const seq = ++showSeq;
  const r = await get("/api?" + q);
  const j = await r.json();
  if (seq !== showSeq) return; // the user picked something else meanwhile
  if (!r.ok) {
    setStatus(`${r.status}: ${j.error}`, true);
    return;
  }
  const took = performance.now() - began;
  shown = { tag, start: w.start, end: w.end };
  const cols = columns(j.samples);
  if (chart && chart.series.length === 11) {
    chart.setData(cols);
  } else {
    chart = makeChart(cols);
  }
  $("chart-title").textContent = `${tag}: ${j.samples.length} samples, ` +
    `${(Number(w.end - w.start) / 1e9 / j.samples.length).toFixed(2)} s apart`;
  setStatus(`/api answered in ${took.toFixed(1)} ms`, false);
  const u = new URL(location.href);
  u.search = new URLSearchParams({ tag, window: $("window").value, start: String(w.start), end: String(w.end) });
  history.replaceState(null, "", u);
}

// --- live figures from /metrics --------------------------------------------------------------------------

function parseMetrics(text) {
  // name{labels} value  ->  {name: [{labels, value}]}
  const out = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const p of (m[2] || "").matchAll(/([a-zA-Z_]+)="([^"]*)"/g)) labels[p[1]] = p[2];
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: Number(m[3]) });
  }
  return out;
}

function sum(metrics, name) {
  return (metrics.get(name) || []).reduce((a, s) => a + s.value, 0);
}

// Cumulative bucket counts summed over cores: Map(le -> count), le as a number (Infinity for +Inf).
function buckets(metrics, name) {
  const b = new Map();
  for (const s of metrics.get(name + "_bucket") || []) {
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    b.set(le, (b.get(le) || 0) + s.value);
  }
  return b;
}

// The q-quantile of the observations between two scrapes, interpolated inside its bucket as Prometheus'
// histogram_quantile does.
function quantile(q, now, before) {
  const les = [...now.keys()].sort((a, b) => a - b);
  const delta = les.map((le) => (now.get(le) || 0) - ((before && before.get(le)) || 0));
  const total = delta[delta.length - 1];
  if (!(total > 0)) return NaN;
  const rank = q * total;
  for (let i = 0; i < les.length; i++) {
    if (delta[i] >= rank) {
      if (les[i] === Infinity) return les[i - 1];
      const lo = i === 0 ? 0 : les[i - 1], below = i === 0 ? 0 : delta[i - 1];
      return lo + (les[i] - lo) * ((rank - below) / (delta[i] - below));
    }
  }
  return NaN;
}

async function scrape() {
  const r = await get("/metrics");
  if (!r.ok) throw new Error("/metrics " + r.status);
  const m = parseMetrics(await r.text());
  const now = {
    at: performance.now() / 1000,
    records: sum(m, "tickcore_records_ingested_total"),
    service: buckets(m, "tickcore_request_duration_seconds"),
    commit: buckets(m, "tickcore_commit_duration_seconds"),
  };
  $("tags-count").textContent = sum(m, "tickcore_tags").toLocaleString("en");
  $("connections").textContent = String(sum(m, "tickcore_open_connections"));
  if (lastScrape) {
    const rate = (now.records - lastScrape.records) / (now.at - lastScrape.at);
    $("rate").textContent = fmtCount(rate) + " rec/s";
    $("p50").textContent = fmtSeconds(quantile(0.5, now.service, lastScrape.service));
    $("p99").textContent = fmtSeconds(quantile(0.99, now.service, lastScrape.service));
    $("commit-p99").textContent = fmtSeconds(quantile(0.99, now.commit, lastScrape.commit));
    rateData[0].push(Date.now() / 1000);
    rateData[1].push(rate);
    if (rateData[0].length > 150) {
      rateData[0].shift();
      rateData[1].shift();
    }
    if (!rateChart && rateData[0].length >= 2) {
      rateChart = new uPlot({
        width: Math.max(400, $("rate-chart").clientWidth || 900),
        height: 160,
        series: [{}, { label: "records/s", stroke: "#1f77b4", fill: "rgba(31,119,180,.1)", points: { show: false },
                       value: (u, v) => (v === null ? "--" : fmtCount(v)) }],
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] } },
        axes: [{}, { size: 70, values: (u, vals) => vals.map((v) => fmtCount(v)) }],
      }, rateData, $("rate-chart"));
    } else if (rateChart) {
      rateChart.setData(rateData);
    }
  }
  lastScrape = now;
}

// --- wiring ----------------------------------------------------------------------------------------------

function guard(f) {
  return () => f().catch((e) => setStatus(String(e.message || e), true));
}

function restoreFromUrl() {
  const p = new URLSearchParams(location.search);
  if (p.get("tag")) $("tag-text").value = p.get("tag");
  const w = p.get("window");
  if (w && [...$("window").options].some((o) => o.value === w)) $("window").value = w;
  if (p.get("start")) $("start").value = p.get("start");
  if (p.get("end")) $("end").value = p.get("end");
  $("query").classList.toggle("custom", $("window").value === "custom");
}

async function main() {
  restoreFromUrl();
  $("token").addEventListener("change", () => {
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    location.reload();
  });
  $("window").addEventListener("change", () => {
    $("query").classList.toggle("custom", $("window").value === "custom");
    if ($("window").value === "custom" && shown) {
      $("start").value = String(shown.start);
      $("end").value = String(shown.end);
    }
  });
  $("tag").addEventListener("change", () => {
    $("tag-text").value = "";
    guard(show)();
  });
  $("query").addEventListener("submit", (e) => {
    e.preventDefault();
    guard(show)();
  });
  await guard(scrape)();
  const n = await loadTags().catch((e) => (setStatus(String(e.message || e), true), 0));
  if (n > 0 || $("tag-text").value) await guard(show)();
  else setStatus("no tags yet: POST /save some records, then reload", false);
  setInterval(guard(scrape), REFRESH_MS);
  setInterval(() => {
    if ($("follow").checked && $("window").value !== "custom" && shown) guard(show)();
  }, REFRESH_MS);
}

main();
