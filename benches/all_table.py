#!/usr/bin/env python3
"""Builds benches/all.sh's dated table from the raw outputs it kept: all_table.py OUT COMMIT MINUTES QUICK BATCH10X.

Each figure beside its reference from the same run, the ratio, and the issue's goal with a verdict. A figure
that a step failed to produce is shown as "-" (see OUT/<step>.txt)."""
import datetime, json, os, re, sys

out, commit, minutes, quick, batch10x = sys.argv[1:6]


def text(name):
    try:
        return open(os.path.join(out, name + ".txt")).read()
    except OSError:
        return ""


def num(pattern, s, group=1):
    m = re.search(pattern, s, re.M)
    return float(m.group(group)) if m else None


def fmt(x, unit="", digits=0):
    if x is None:
        return "-"
    return ("{:,.%df}" % digits).format(x) + unit


def ratio(a, b):
    return a / b if a is not None and b else None


rows = []


def row(figure, ours, reference, r, goal, met):
    verdict = "-" if met is None else ("met" if met else "**missed**")
    rows.append("| %s | %s | %s | %s | %s | %s |" % (figure, ours, reference, fmt(r, "x", 2), goal, verdict))


# 1. single-message POST
for conns in ("40", "200"):
    s = text("single" + conns)
    rps = lambda label: num(r"^\s*%s\s+msgs_per_s=\S+ rps=([0-9.]+)" % re.escape(label), s)
    p99 = lambda label: num(r"^\s*%s\s+.*p99_ms=([0-9.]+)" % re.escape(label), s)
    ng, no, sy, asy = rps("nginx no-op"), rps("glommio no-op"), rps("tickcore (sync)"), rps("tickcore (async)")
    r = ratio(sy, no)
    row("POST /save single, wrk -c%s, sync (req/s; p99)" % conns, "%s; %s" % (fmt(sy), fmt(p99("tickcore (sync)"), " ms", 1)),
        "glommio no-op %s, nginx %s" % (fmt(no), fmt(ng)), r,
        ">= 0.8x glommio no-op" if conns == "200" else "", (r >= 0.8) if conns == "200" and r is not None else None)
    row("POST /save single, wrk -c%s, async (req/s)" % conns, fmt(asy), "glommio no-op %s" % fmt(no), ratio(asy, no), "", None)

# 2. bulk NDJSON
s = text("bulk")
ceiling, held = num(r"^ceiling_msg_per_s (\d+)", s), num(r"^held_rate (\d+)", s)
failed = re.findall(r"^rung \S+ (\d+) (\d+) ([0-9.]+) (\d+) no$", s, re.M)
detail = "; first rung missed: %s offered, p99 %s ms" % (fmt(float(failed[0][0])), failed[0][2]) if failed else ""
r = ratio(held, ceiling)
row("bulk NDJSON x1000, highest rate with write p99 <= 50 ms (msg/s)", fmt(held) + detail,
    "loadgen ceiling (nginx no-op) %s" % fmt(ceiling), r, ">= 0.5x ceiling", (r >= 0.5) if r is not None else None)

# 3. bulk line protocol
s = text("lp")
lp = lambda label: num(r"^%s.*?\s([0-9]+) rows/s\s+p50\s+\S+ ms\s+p99\s+([0-9.]+) ms" % re.escape(label), s)
lp_p99 = lambda label: num(r"^%s.*?rows/s\s+p50\s+\S+ ms\s+p99\s+([0-9.]+) ms" % re.escape(label), s)
tc, vm, ng = lp("tickcore /write"), lp("VictoriaMetrics /write"), lp("nginx no-op")
r = ratio(tc, vm)
row("bulk line protocol x1000, wrk -c40 (rows/s; p99)", "%s; %s" % (fmt(tc), fmt(lp_p99("tickcore /write"), " ms")),
    "VictoriaMetrics %s; wrk's ceiling %s" % (fmt(vm), fmt(ng)), r, ">= 5x VictoriaMetrics", (r >= 5) if r is not None else None)

# 4. queries
for name, label in (("query1h", "1 h, 360k records"), ("query30d", "30 days, 43,200 records")):
    got = {}
    for line in text(name).splitlines():
        if line.startswith("{"):
            try:
                d = json.loads(line)
                got[d.get("target")] = d
            except ValueError:
                pass
    t, v = got.get("tickcore", {}), got.get("vm", {})
    row("/api %s, 1000 samples (p50 / p99 ms)" % label, "%s / %s" % (fmt(t.get("p50_ms"), "", 2), fmt(t.get("p99_ms"), "", 2)),
        "VictoriaMetrics %s / %s" % (fmt(v.get("p50_ms"), "", 1), fmt(v.get("p99_ms"), "", 1)),
        ratio(v.get("p99_ms"), t.get("p99_ms")), "ratio = VM p99 / ours", None)

# 5. 100k tags
s = text("scale")
k = lambda key: num(r"^%s (\S+)" % key, s)
cp, interval = k("checkpoint_max_s"), num(r"^checkpoint_max_s \S+ interval_s (\S+)", s)
row("100k tags uniform at 100k msg/s: acked msg/s, errors, check", "%s, %s errors, %s" % (
    fmt(k("acked_msg_per_s")), fmt(k("errors")), (re.search(r"^check (\S+)", s, re.M) or [None, "-"])[1]), "", None,
    "0 errors, exact", (k("errors") == 0 and "check exact" in s) if k("errors") is not None else None)
row("100k tags: longest checkpoint (s; files)", "%s; %s" % (fmt(cp, "", 1), fmt(k("checkpoint_max_files"))),
    "interval %s s" % fmt(interval), ratio(cp, interval), "< interval", (cp < interval) if cp is not None and interval else None)
row("100k tags: RssAnon peak / idle (MiB)", "%s / %s" % (fmt(k("rss_anon_peak_mib")), fmt(k("rss_anon_idle_mib"))),
    "RssFile peak %s" % fmt(num(r"rss_file_peak_mib (\S+)", s)), None, "<= 256 MiB",
    (k("rss_anon_peak_mib") <= 256) if k("rss_anon_peak_mib") is not None else None)
row("100k tags: log peak (MiB); query p99 (ms)", "%s; %s" % (fmt(k("log_peak_mib")), fmt(k("query_p99_ms"), "", 2)), "", None,
    "query p99 <= 5 ms", (k("query_p99_ms") <= 5) if k("query_p99_ms") is not None else None)

# 6. cold start
curve = [(int(n), float(t)) for n, t in re.findall(r"^start_s (\d+) ([0-9.]+)", text("start"), re.M)]
if curve:
    big = max(curve)
    row("cold start to /health (s) by tag files", ", ".join("%s: %.2f" % (fmt(n), t) for n, t in curve), "", None,
        "<= 2 s at 300k, flat", big[0] >= 300000 and big[1] <= 2 and big[1] <= 2 * curve[0][1] if big[0] >= 300000 else None)

# 7. schedules
for name, label in (("spec", "spec schedule, batch 10"), ("spec10x", "10x spec schedule, 100k tags, batch " + batch10x)):
    try:
        d = json.load(open(os.path.join(out, name + ".json")))
    except (OSError, ValueError):
        row(label, "-", "", None, "", None)
        continue
    errors = sum(d["errors"].values()) if isinstance(d["errors"], dict) else d["errors"]
    check = "exact" if not d.get("check_differences") else "%d differences" % len(d["check_differences"])
    row(label + ": acked of scheduled, errors, check", "%s of %s, %s errors, %s" % (
        fmt(d["acked_msgs"]), fmt(d["scheduled_msgs"]), fmt(errors), check), "", None, "0 errors, exact",
        errors == 0 and check == "exact")
    row(label + ": write p99, query p99, lag send->visible max (ms)", "%s, %s, %s" % (
        fmt(d["write"]["p99_ms"], "", 1), fmt(d["query"]["p99_ms"], "", 1), fmt(d["lag_send_to_visible"]["max_ms"], "", 1)),
        "", None, "query p99 <= 100, lag <= 2000", d["query"]["p99_ms"] <= 100 and d["lag_send_to_visible"]["max_ms"] <= 2000)

today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print("## %s: every headline figure at `%s` (`benches/all.sh`%s, %s min)\n" % (
    today, commit, ", QUICK=1: short runs, small fixtures" if quick == "1" else "", minutes))
print("Engine `--cpus 1` on CPU 1, clients on CPU 0; each reference in the same sitting. Raw outputs: `%s`.\n" % out)
print("| figure | tickcore | reference (same run) | ratio | goal | |")
print("|---|---|---|---:|---|---|")
print("\n".join(rows))
