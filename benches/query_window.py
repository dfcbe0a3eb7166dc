#!/usr/bin/env python3
"""One query over a window, tickcore against VictoriaMetrics with the same client.

Preloads one tag (t0) with RECORDS records spread evenly over WINDOW (ending at the last whole hour minus one),
10 values each, as bulk POSTs of 1000 (tickcore: NDJSON to /save; VictoriaMetrics: line protocol to /write,
fields v0..v9 of measurement m), waits until every record is visible, then runs WARMUP + N sequential queries
for 1000 as-of samples of all 10 values over the whole window on one keep-alive connection:

  tickcore: GET /api?tag=t0&start=S&end=E                     (1000 samples by default)
  vm:       GET /api/v1/query_range  last_over_time({__name__=~"m_v[0-9]",tag="t0"}[STEP])
            start=S+STEP end=E step=STEP nocache=1             (STEP = WINDOW / 1000)

Latency = time.perf_counter() around the request and the full body read. Prints one JSON object.
  query_window.py --target tickcore|vm --port P --window 30d --records 43200 [--queries 200]
"""
import argparse, http.client, json, random, sys, time, urllib.parse

p = argparse.ArgumentParser()
p.add_argument("--target", choices=["tickcore", "vm"], required=True)
p.add_argument("--port", type=int, required=True)
p.add_argument("--window", default="1h", help="Nh or Nd")
p.add_argument("--records", type=int, default=360_000)
p.add_argument("--queries", type=int, default=200)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--settle", type=float, default=0.0, help="seconds to wait after the preload (a checkpoint)")
a = p.parse_args()

unit = {"h": 3600, "d": 86400}[a.window[-1]]
window_s = int(a.window[:-1]) * unit
end_s = (int(time.time()) // 3600) * 3600 - 3600
start_s = end_s - window_s
S, E = start_s * 10**9, end_s * 10**9
spacing = (E - S) // a.records
conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=300)


def req(method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.read()


rnd = random.Random(1)
vals = [10.0 * (i + 1) for i in range(10)]
t0 = time.perf_counter()
for b in range(0, a.records, 1000):
    lines = []
    for k in range(b, min(a.records, b + 1000)):
        vals = [v + (rnd.random() - 0.5) * 0.01 for v in vals]
        t = S + k * spacing
        if a.target == "tickcore":
            lines.append('{"time":%d,"tag":"t0","values":[%s]}' % (t, ",".join("%.6f" % v for v in vals)))
        else:
            lines.append("m,tag=t0 %s %d" % (",".join("v%d=%.6f" % (i, v) for i, v in enumerate(vals)), t))
    if a.target == "tickcore":
        st, body = req("POST", "/save", "\n".join(lines))
    else:
        st, body = req("POST", "/write?db=bench", ("\n".join(lines) + "\n").encode(),
                       {"Content-Type": "text/plain; charset=utf-8"})
    if st not in (200, 204):
        sys.exit("preload failed: %s %s" % (st, body[:300]))
load_s = time.perf_counter() - t0
time.sleep(a.settle)

step_ms = window_s * 1000 // 1000
if a.target == "tickcore":
    path = "/api?tag=t0&start=%d&end=%d" % (S, E)
else:
    path = "/api/v1/query_range?" + urllib.parse.urlencode({
        "query": 'last_over_time({__name__=~"m_v[0-9]",tag="t0"}[%dms])' % step_ms,
        "start": "%.3f" % (start_s + step_ms / 1000), "end": "%d" % end_s, "step": "%dms" % step_ms,
        "nocache": "1"})
    # Wait until VictoriaMetrics shows every record (it buffers ingested rows for about a second).
    q = urllib.parse.urlencode({"query": 'count_over_time(m_v0{tag="t0"}[%ds])' % (window_s + 1),
                                "time": end_s, "nocache": 1})
    deadline = time.time() + 120
    while True:
        req("GET", "/internal/force_flush")
        st, body = req("GET", "/api/v1/query?" + q)
        res = json.loads(body)["data"]["result"] if st == 200 else []
        if res and int(float(res[0]["value"][1])) >= a.records:
            break
        if time.time() > deadline:
            sys.exit("VictoriaMetrics shows %s of %d records after 120 s" % (res, a.records))
        time.sleep(0.5)


def check(body):
    d = json.loads(body)
    if a.target == "tickcore":
        s = d["samples"]
        assert len(s) == 1000 and all(x["values"] is not None and len(x["values"]) == 10 for x in s[1:]), body[:300]
    else:
        res = d["data"]["result"]
        assert len(res) == 10 and all(len(r["values"]) >= 990 for r in res), body[:300]


lat = []
size = 0
for i in range(a.warmup + a.queries):
    q0 = time.perf_counter()
    st, body = req("GET", path)
    dt = (time.perf_counter() - q0) * 1000
    if st != 200:
        sys.exit("query failed: %s %s" % (st, body[:300]))
    if i == 0:
        check(body)
    if i >= a.warmup:
        lat.append(dt)
    size = len(body)
lat.sort()
pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(json.dumps({"target": a.target, "window": a.window, "records": a.records, "p50_ms": round(pct(0.5), 3),
                  "p99_ms": round(pct(0.99), 3), "max_ms": round(lat[-1], 3), "queries": len(lat),
                  "response_bytes": size, "preload_s": round(load_s, 1)}))
