#!/usr/bin/env python3
"""GET /api benchmark client for tickcore, built like ../shared/peers/query_bench.py so the figures compare.

Preloads one tag (t0) with 1 hour at 100 records/s (360,000 records) as bulk NDJSON POSTs of 1000 lines, an
hour-aligned hour 3 h ago, then runs WARMUP + N sequential GET /api queries for that hour (1000 samples) over
one keep-alive connection. Latency = time.perf_counter() around request + full body read. Prints p50/p99/max.
"""
import argparse, http.client, json, random, time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--queries", type=int, default=200)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--rate", type=int, default=100)
p.add_argument("--settle", type=float, default=0.0)
p.add_argument("--out")
a = p.parse_args()

S = (int(time.time()) // 3600) * 3600 - 3 * 3600
S_NS = S * 1_000_000_000
E_NS = S_NS + 3600 * 1_000_000_000
step = 1_000_000_000 // a.rate
conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=120)

def req(method, path, body=None):
    conn.request(method, path, body=body)
    r = conn.getresponse()
    return r.status, r.read()

rnd = random.Random(1)
vals = [10.0 * i for i in range(10)]
t0 = time.perf_counter()
n = 3600 * a.rate
for b in range(0, n, 1000):
    lines = []
    for k in range(b, min(n, b + 1000)):
        vals = [v + (rnd.random() - 0.5) * 0.01 for v in vals]
        lines.append('{"time":%d,"tag":"t0","values":[%s]}' % (S_NS + k * step, ",".join("%.6f" % v for v in vals)))
    st, body = req("POST", "/save", "\n".join(lines))
    assert st == 204, (st, body[:200])
load_s = time.perf_counter() - t0
time.sleep(a.settle)
path = "/api?tag=t0&start=%d&end=%d" % (S_NS, E_NS)
lat = []
size = 0
for i in range(a.warmup + a.queries):
    q0 = time.perf_counter()
    st, body = req("GET", path)
    dt = (time.perf_counter() - q0) * 1000
    assert st == 200, (st, body[:200])
    if i >= a.warmup:
        lat.append(dt)
    size = len(body)
d = json.loads(body)
assert len(d["samples"]) == 1000 and all(s["values"] is not None for s in d["samples"])
lat.sort()
pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
res = {"p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": lat[-1], "mean_ms": sum(lat) / len(lat),
       "queries": len(lat), "response_bytes": size, "preload_s": load_s}
print("tickcore /api: p50 %.3f ms  p99 %.3f ms  max %.3f ms  mean %.3f ms  (%d queries, %d bytes, preload %.1f s)" % (
    res["p50_ms"], res["p99_ms"], res["max_ms"], res["mean_ms"], res["queries"], size, load_s))
if a.out:
    json.dump(res, open(a.out, "w"), indent=1)
