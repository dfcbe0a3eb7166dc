//! Deeply nested JSON against the real binary: every JSON path of `POST /save` (single body, NDJSON, array
//! body, chunked, gzip) answers 400 "nesting deeper than 128" for arrays and objects nested past the limit,
//! at the top level and inside a message field, keeps the connection, stores nothing, and keeps serving
//! other connections. A recursive parser overflowed the executor's stack on these before the limit.
mod common;
use common::*;
use std::io::Write;

const LIMIT: usize = 128;

/// Where a rejection must point: `("line", n)` or `("index", n)`.
type Position = Option<(&'static str, u64)>;

fn arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn objects(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// Expects a 400 naming the nesting limit (and `position`, when given) on a connection that stays usable.
fn assert_rejected(conn: &mut Conn, r: Response, what: &str, position: Position) {
    assert_eq!(r.status, 400, "{what}: {}", r.text());
    let j = r.json();
    assert_eq!(
        j["error"].as_str(),
        Some(format!("nesting deeper than {LIMIT}").as_str()),
        "{what}: {j}"
    );
    if let Some((key, n)) = position {
        assert_eq!(j[key].as_u64(), Some(n), "{what}: {j}");
    }
    let ok = conn.request("GET", "/health", &[], b"");
    assert_eq!(ok.status, 200, "{what}: the connection was not kept");
}

#[test]
fn deep_nesting_is_refused_on_every_json_path_and_the_engine_keeps_serving() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &[]);
    let good = msg("ok", now_ns(), 1.0);
    let vals = "1,2,3,4,5,6,7,8,9,10";
    let mut cases: Vec<(String, String, Position)> = Vec::new();
    for depth in [LIMIT + 1, 50_000, 1_000_000] {
        let (a, o) = (arrays(depth), objects(depth));
        cases.push((
            format!("top-level arrays {depth}"),
            a.clone(),
            Some(("index", 0)),
        ));
        cases.push((
            format!("top-level objects {depth}"),
            o.clone(),
            Some(("line", 1)),
        ));
        // Inside a message: in a known field, in an unknown field, as a value.
        let in_values = format!(r#"{{"time":1,"tag":"t","values":[{a}]}}"#);
        cases.push((
            format!("values holds arrays {depth}"),
            in_values,
            Some(("line", 1)),
        ));
        let unknown = format!(r#"{{"time":1,"tag":"t","values":[{vals}],"x":{o}}}"#);
        cases.push((
            format!("unknown field holds objects {depth}"),
            unknown,
            Some(("line", 1)),
        ));
        let first = format!(r#"{{"x":{a},"time":1,"tag":"t","values":[{vals}]}}"#);
        cases.push((
            format!("first field holds arrays {depth}"),
            first,
            Some(("line", 1)),
        ));
        let in_tag = format!(r#"{{"time":1,"tag":{o},"values":[{vals}]}}"#);
        cases.push((
            format!("tag holds objects {depth}"),
            in_tag,
            Some(("line", 1)),
        ));
        // NDJSON: a good first line, the deep one second.
        let nd = format!("{good}\n{{\"time\":1,\"tag\":\"t\",\"values\":[{vals}],\"x\":{a}}}\n");
        cases.push((
            format!("ndjson line 2 arrays {depth}"),
            nd,
            Some(("line", 2)),
        ));
        let nd = format!("{good}\n{o}\n");
        cases.push((
            format!("ndjson line 2 objects {depth}"),
            nd,
            Some(("line", 2)),
        ));
        // Array body: a good element, then a deep one.
        let arr = format!("[{good},{a}]");
        cases.push((
            format!("array element 1 arrays {depth}"),
            arr,
            Some(("index", 1)),
        ));
        let arr = format!("[{good},{{\"time\":1,\"tag\":\"t\",\"values\":[{vals}],\"x\":{o}}}]");
        cases.push((
            format!("array element 1 objects {depth}"),
            arr,
            Some(("index", 1)),
        ));
    }
    let mut conn = e.connect();
    for (what, body, pos) in &cases {
        let r = conn.request("POST", "/save", &[], body.as_bytes());
        assert_rejected(&mut conn, r, what, *pos);
        // Chunked: the same body in 64 KiB chunks.
        let mut raw =
            b"POST /save HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for c in body.as_bytes().chunks(64 << 10) {
            raw.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            raw.extend_from_slice(c);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        conn.send(&raw);
        let r = conn.read_response();
        assert_rejected(&mut conn, r, &format!("chunked {what}"), *pos);
        // Gzip: the body inflates to the same text.
        let z = gzip(body.as_bytes());
        let r = conn.request("POST", "/save", &["Content-Encoding: gzip"], &z);
        assert_rejected(&mut conn, r, &format!("gzip {what}"), *pos);
        // Another connection is served meanwhile.
        assert_eq!(e.get("/health").status, 200, "{what}");
    }
    // Nothing of a rejected body was stored, not even its good first line or element.
    assert!(e.export("ok").is_empty());
    assert!(e.export("t").is_empty());
    // A `\u` without its 4 hex digits moves where a parser ends a string; refused before it can hide depth.
    let hidden = [
        format!(r#"[["\u"abc",{}"#, "[".repeat(100_000)),
        format!(r#"{{"x":["\u"abc",{}"#, "[".repeat(100_000)),
        format!("{good}\n{{\"x\":[\"\\u\"abc\",{}\n", "[".repeat(100_000)),
        format!(r#"[{{"\u"abc":1,"k":{}"#, "[".repeat(100_000)),
    ];
    for body in &hidden {
        let r = conn.request("POST", "/save", &[], body.as_bytes());
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(
            r.json()["error"],
            "a \\u escape not followed by 4 hex digits",
            "{}",
            &body[..20]
        );
        let z = gzip(body.as_bytes());
        let r = conn.request("POST", "/save", &["Content-Encoding: gzip"], &z);
        assert_eq!(r.status, 400, "{}", r.text());
    }
    // At the limit the nesting is no reason: the body is refused for what it is.
    for body in [arrays(LIMIT), objects(LIMIT)] {
        let r = e.post(&body);
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(!r.text().contains("nesting"), "{}", r.text());
    }
    assert_eq!(e.post(&good).status, 204);
    assert_eq!(e.export("ok").len(), 1);
    assert_eq!(
        e.terminate(),
        0,
        "the engine must still be alive and stop cleanly"
    );
}
