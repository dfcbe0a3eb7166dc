"""Writes points through the official InfluxDB Python clients, as their users do, against an engine.

    python3 tests/clients/influx_write.py URL

influxdb-client (2.x API: POST /api/v2/write with org, bucket, precision and a Token header) writes tag "py2"
from Point objects, once plainly and once gzip-compressed (enable_gzip); influxdb (1.x API: POST /write with
db and precision) writes tag "py1" from the JSON-like dicts of write_points. Prints one JSON line: what was
written, for tests/line_protocol.rs to read back through /export.
"""
import json
import sys
from urllib.parse import urlparse

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb import InfluxDBClient as Influx1

url = sys.argv[1]
written = {"py2": [], "py2gz": [], "py1": []}

for tag, gzip in (("py2", False), ("py2gz", True)):
    with InfluxDBClient(url=url, token="any-token", org="any-org", enable_gzip=gzip) as c:
        w = c.write_api(write_options=SYNCHRONOUS)
        points = []
        for i in range(5):
            t = 1_700_000_000_000 + i  # ms
            p = Point("measurement with space").tag("tag", tag).tag("host", "a,b=c").time(t, WritePrecision.MS)
            values = [i * 10 + k + 0.25 for k in range(10)]
            for k, v in enumerate(values):
                p = p.field(f"v{k}", v if k != 3 else int(v))  # one integer field
            p = p.field("note", 'a "quoted", string')
            points.append(p)
            written[tag].append([t * 1_000_000, [v if k != 3 else float(int(v)) for k, v in enumerate(values)]])
        w.write(bucket="any-bucket", record=points)

u = urlparse(url)
c1 = Influx1(host=u.hostname, port=u.port, database="anydb")
points = []
for i in range(4):
    t = 1_700_000_100 + i  # s
    fields = {f"v{k}": float(i + k) / 4 for k in range(10)}
    points.append({"measurement": "m", "tags": {"tag": "py1"}, "time": t, "fields": fields})
    written["py1"].append([t * 1_000_000_000, [fields[f"v{k}"] for k in range(10)]])
assert c1.write_points(points, time_precision="s"), "write_points failed"

print(json.dumps(written))
