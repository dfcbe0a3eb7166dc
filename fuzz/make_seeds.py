#!/usr/bin/env python3
"""Writes the committed seed corpora in fuzz/seeds/<target>/ (run from the repository root): valid and invalid
inputs for each parser, including write-ahead logs built to the format of docs/format.md (CRC32C computed
here)."""
import os, struct
root = "fuzz/seeds"
def put(target, name, data):
    d = os.path.join(root, target); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data if isinstance(data, bytes) else data.encode())

msg = '{"time":1795536000000000000,"tag":"t0","values":[1,2,3,4,5,6,7,8,9,10]}'
# line_protocol
lp_fields = ",".join("v%d=%d" % (k, k) for k in range(10))
put("line_protocol", "plain", "m,tag=t0 " + lp_fields + " 1795536000000000000\n")
put("line_protocol", "escapes", "my\\ m\\,x,tag=a\\ b\\,c\\=d,host=h " + lp_fields + ',s="q\\"uo,te =x" 1\n')
put("line_protocol", "ints_no_time", "m,tag=t " + lp_fields.replace("v1=1", "v1=1i").replace("v2=2", "v2=2u") + "\n")
put("line_protocol", "comment_blank_crlf", "# c\n\nm,tag=t " + lp_fields + " 5\r\n")
put("line_protocol", "missing_field", "m,tag=t v0=1 5\n")
put("line_protocol", "string_value", "m,tag=t " + lp_fields.replace("v3=3", 'v3="x"') + "\n")
put("line_protocol", "bad_second_line", "m,tag=t " + lp_fields + "\nm,tag=t v0=x\n")
put("line_protocol", "unterminated", 'm,tag=t v0="abc\n')
# http_head
put("http_head", "get_api", "GET /api?tag=t0&start=1&end=2 HTTP/1.1\r\nHost: x\r\n\r\n")
put("http_head", "post_save_length", "POST /save HTTP/1.1\r\nHost: x\r\nContent-Length: 72\r\n\r\n" + msg)
put("http_head", "post_chunked_expect", "POST /save HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
put("http_head", "http10_keepalive", "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
put("http_head", "h2_preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
put("http_head", "length_and_chunked", "POST /save HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
put("http_head", "two_lengths", "POST /save HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
put("http_head", "bare_lf", "GET /health HTTP/1.1\nHost: x\n\n")
put("http_head", "obs_fold", "GET /health HTTP/1.1\r\nX: a\r\n b\r\n\r\n")
put("http_head", "nul", b"GET /he\x00alth HTTP/1.1\r\n\r\n")
put("http_head", "incomplete", "POST /save HTTP/1.1\r\nContent-Le")
put("http_head", "long_header", "GET /health HTTP/1.1\r\nHost: x\r\nX: " + "a" * 100000 + "\r\n\r\n")
put("http_head", "many_headers", "GET /health HTTP/1.1\r\nHost: x\r\n" + "X: a\r\n" * 5000 + "\r\n")
put("http_head", "huge_length", "POST /save HTTP/1.1\r\nHost: x\r\nContent-Length: " + "9" * 1000 + "\r\n\r\n")
# chunked_body
put("chunked_body", "two_chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
put("chunked_body", "extension_trailer", "5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
put("chunked_body", "bad_hex", "zz\r\nhello\r\n0\r\n\r\n")
put("chunked_body", "huge_size", "ffffffffffffffffff\r\n")
put("chunked_body", "missing_crlf", "5\r\nhelloX0\r\n\r\n")
put("chunked_body", "over_limit", "1001\r\n" + "x" * 4097 + "\r\n0\r\n\r\n")
put("chunked_body", "many_tiny_chunks", "1\r\nx\r\n" * 4000 + "0\r\n\r\n")
put("chunked_body", "long_extension", "5;" + "e" * 100000 + "\r\nhello\r\n0\r\n\r\n")
put("chunked_body", "long_size", "0" * 100000 + "5\r\nhello\r\n0\r\n\r\n")
# save_body
put("save_body", "single", msg)
put("save_body", "ndjson", "\n".join([msg] * 3) + "\n")
put("save_body", "array", "[" + ",".join([msg] * 2) + "]")
put("save_body", "nine_values", '{"time":1,"tag":"x","values":[1,2,3,4,5,6,7,8,9]}')
put("save_body", "non_finite", '{"time":1,"tag":"x","values":[1,2,3,4,5,6,7,8,9,1e999]}')
put("save_body", "extra_field", '{"time":1,"tag":"x","values":[1,2,3,4,5,6,7,8,9,10],"x":1}')
put("save_body", "long_tag", '{"time":1,"tag":"12345678901234567890","values":[1,2,3,4,5,6,7,8,9,10]}')
put("save_body", "unicode_tag_neg_zero", '{"time":-5,"tag":"ü/.. c","values":[-0.0,2,3,4,5,6,7,8,9,10]}')
put("save_body", "trailing_garbage", msg + "x")
put("save_body", "time_overflow", '{"time":99999999999999999999,"tag":"x","values":[1,2,3,4,5,6,7,8,9,10]}')
put("save_body", "empty", "")
# save_body: nesting past the limit (128) everywhere a body can hide it, long lines, numbers at the edges
vals = "1,2,3,4,5,6,7,8,9,10"
put("save_body", "deep_arrays_50k", "[" * 50000 + "]" * 50000)
put("save_body", "deep_objects_20k", '{"a":' * 20000 + "1" + "}" * 20000)
put("save_body", "deep_in_values", '{"time":1,"tag":"t","values":[' + "[" * 30000 + "]" * 30000 + "]}")
put("save_body", "deep_unknown_field", '{"time":1,"tag":"t","values":[' + vals + '],"x":' + '{"a":' * 20000 + "1" + "}" * 20000 + "}")
put("save_body", "deep_ndjson_line2", msg + "\n" + '{"x":' + "[" * 30000 + "]" * 30000 + "}\n")
put("save_body", "deep_array_element", "[" + msg + "," + "[" * 30000 + "]" * 30000 + "]")
put("save_body", "at_the_limit", "[" * 128 + "]" * 128)
put("save_body", "past_the_limit", "[" * 129 + "]" * 129)
put("save_body", "brackets_in_strings", '{"time":1,"tag":"' + "[" * 19 + '","values":[' + vals + '],"x":"' + '\\"[' * 1000 + '"}')
put("save_body", "long_line", '{"time":1,"tag":"' + "t" * 200000 + '","values":[' + vals + "]}")
put("save_body", "huge_numbers", '{"time":-9223372036854775808,"tag":"n","values":[1.7976931348623157e308,-1.7976931348623157e308,5e-324,-0.0,1e308,' + "9" * 5000 + ",0." + "1" * 5000 + ",1e-400,2.2250738585072014e-308,4.9e-324]}\n" + '{"time":9223372036854775807,"tag":"n","values":[' + vals + "]}")
put("save_body", "number_past_i64", '{"time":-9223372036854775809,"tag":"n","values":[' + vals + "]}")
# line_protocol: long lines, many fields, numbers at the edges
put("line_protocol", "long_line", "m,tag=" + "t" * 100000 + " " + lp_fields + " 1\n")
put("line_protocol", "many_fields", "m,tag=t " + ",".join("f%d=%d" % (k, k) for k in range(20000)) + " 1\n")
put("line_protocol", "edge_numbers", "m,tag=t v0=1.7976931348623157e308,v1=-9223372036854775808i,v2=18446744073709551615u,v3=5e-324,v4=" + "9" * 5000 + ",v5=1e999,v6=-0,v7=0,v8=1,v9=2 -9223372036854775808\n")
put("line_protocol", "time_past_i64", "m,tag=t " + lp_fields + " 9223372036854775808\n")
# query_string
put("query_string", "valid", "tag=t0&start=1&end=2")
put("query_string", "samples", "tag=a%2Fb+c&start=-5&end=5&samples=10000")
put("query_string", "duplicate", "tag=a&tag=b&start=1&end=2")
put("query_string", "unknown", "tag=a&start=1&end=2&x=1")
put("query_string", "reversed", "tag=a&start=2&end=1")
put("query_string", "overflow", "tag=a&start=-9223372036854775808&end=9223372036854775807&samples=10001")
put("query_string", "bad_percent", "tag=%zz&start=1&end=2")
put("query_string", "long_tag", "tag=" + "%41" * 20000 + "&start=1&end=2")
put("query_string", "many_params", "&".join(["agg=min"] * 5000) + "&tag=a&start=1&end=2")
put("query_string", "huge_numbers", "tag=a&start=" + "9" * 5000 + "&end=-" + "9" * 5000 + "&samples=" + "1" * 300)
# wal_log: valid commits (CRC32C), a torn tail, a corrupt checksum
def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def commit(seq, payload):
    h = b"TKW1" + struct.pack("<HHQI", 1, 0, seq, len(payload))
    crc = crc32c(payload, crc32c(h) ) if False else crc32c(h + payload)
    out = h + struct.pack("<I", crc) + struct.pack("<Q", 0) + payload
    return out + b"\0" * (-len(out) % 4096)
def record_entry(tag, index, time, values):
    t = tag.encode()
    return bytes([1, len(t)]) + t + struct.pack("<Q", index) + struct.pack("<q", time) + struct.pack("<10d", *values)
def length_entry(tag, seg, count):
    t = tag.encode()
    return bytes([2, len(t)]) + t + struct.pack("<qQ", seg, count)
p1 = record_entry("t0", 0, 1795536000000000000, [float(i) for i in range(10)]) + record_entry("t1", 0, 5, [-0.0] * 10)
p2 = record_entry("t0", 1, 1795536000000000001, [1.5] * 10) + length_entry("t0", 20781, 2)
log = commit(7, p1) + commit(8, p2)
put("wal_log", "two_commits", log)
put("wal_log", "torn_tail", log + commit(9, p1)[:100])
bad = bytearray(commit(7, p1)); bad[40] ^= 0xFF
put("wal_log", "bad_checksum", bytes(bad) + commit(8, p2))
put("wal_log", "zeros", b"\0" * 8192)
put("wal_log", "gap_in_sequence", commit(1, p1) + commit(3, p2))
# replicated_batch (docs/cluster.md, src/cluster/batch.rs): valid batches, a bad checksum, a hostile count, a
# batch of megabytes
def batch(entries, node=1, core=0, inc=0xfeed, counter=0, clock=1795536000000000000, count=None):
    body = b"".join(bytes([len(t.encode())]) + t.encode() + struct.pack("<q10d", time, *vals)
                    for t, time, vals in entries)
    n = len(entries) if count is None else count
    h = b"TKR1" + struct.pack("<HHIIQQqI", 1, 0, node, core, inc, counter, clock, n)
    return h + struct.pack("<I", crc32c(h + body)) + body
e1 = [("t0", 1795536000000000000, [float(i) for i in range(10)]), ("héllo wörld 🙂", -5, [-0.0] * 10)]
put("replicated_batch", "two_entries", batch(e1))
put("replicated_batch", "one_entry_long_tag", batch([("🙂" * 19, 0, [1e308] * 10)]))
bad = bytearray(batch(e1)); bad[50] ^= 1
put("replicated_batch", "bad_checksum", bytes(bad))
put("replicated_batch", "hostile_count", batch(e1, count=0xFFFFFFFF))
put("replicated_batch", "truncated", batch(e1)[:-3])
put("replicated_batch", "megabytes", batch([("t%d" % (i % 1000), i, [i * 0.5] * 10) for i in range(11000)]))
