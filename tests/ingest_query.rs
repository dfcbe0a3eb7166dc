//! Writes and queries against the real binary on two cores: response shape, as-of values, bulk bodies,
//! out-of-order and equal-time records, validation errors, and one tag written through both cores.
mod common;
use common::*;

#[test]
fn api_shape_and_as_of_values() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &[]);
    let s = now_ns() - 3_600_000_000_000; // one hour ago
    let end = s + 1_000_000; // 1000 samples, one per µs
                             // Out of order, with an equal-time pair (the later arrival wins) and a record before the window.
    let body = [
        msg("a/b c", s + 500_000, 5.0),
        msg("a/b c", s - 10, -1.0),
        msg("a/b c", s + 200_000, 2.0),
        msg("a/b c", s + 500_000, 6.0),
    ]
    .join("\n");
    assert_eq!(e.post(&body).status, 204);
    assert_eq!(e.post(&msg("a/b c", s + 200_000 - 1, 1.5)).status, 204);
    let r = e.get(&format!("/api?tag={}&start={s}&end={end}", enc("a/b c")));
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["tagName"], "a/b c");
    assert_eq!(
        (j["start"].as_i64(), j["end"].as_i64()),
        (Some(s), Some(end))
    );
    let samples = j["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 1000);
    for (i, smp) in samples.iter().enumerate() {
        let t = s + (i as i64 + 1) * 1000;
        assert_eq!(smp["time"].as_i64(), Some(t));
        let want = if t >= s + 500_000 {
            6.0
        } else if t >= s + 200_000 {
            2.0
        } else if t >= s + 199_999 {
            1.5
        } else {
            -1.0
        };
        assert_eq!(smp["values"][0].as_f64(), Some(want), "sample {i}");
        assert_eq!(smp["values"].as_array().unwrap().len(), 10);
    }
    // Before any record: null values. samples=N changes the count.
    let r = e.get(&format!(
        "/api?tag={}&start={}&end={}&samples=3",
        enc("a/b c"),
        s - 1000,
        s - 100
    ));
    let j = r.json();
    assert_eq!(j["samples"].as_array().unwrap().len(), 3);
    assert!(j["samples"][0]["values"].is_null());
    // Export: time order, ties by arrival.
    let ex = e.export("a/b c");
    let got: Vec<f64> = ex.iter().map(|(_, v)| v[0]).collect();
    assert_eq!(got, vec![-1.0, 1.5, 2.0, 5.0, 6.0]);
    for (q, status) in [
        ("/api?tag=zzz&start=0&end=10", 404),
        ("/api?tag=a&start=10&end=10", 400),
        ("/api?tag=a&start=x&end=10", 400),
        ("/api?start=0&end=10", 400),
        ("/api?tag=a&start=0&end=10&samples=0", 400),
        ("/api?tag=a&start=0&end=10&samples=10001", 400),
    ] {
        let r = e.get(q);
        assert_eq!(r.status, status, "{q}: {}", r.text());
        assert!(r.json()["error"].is_string());
    }
}

#[test]
fn bulk_validation_names_the_line_and_stores_nothing() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &[]);
    let now = now_ns();
    let good: Vec<String> = (0..50)
        .map(|i| msg(&format!("bulk{i}"), now, i as f64))
        .collect();
    let bad_cases = [
        (
            r#"{"time":1,"tag":"x","values":[1,2,3,4,5,6,7,8,9]}"#.to_string(),
            "values has 9",
        ),
        (
            r#"{"time":1,"tag":"x","values":[1,2,3,4,5,6,7,8,9,10,11]}"#.to_string(),
            "values has 11",
        ),
        (
            r#"{"time":1,"tag":"","values":[1,2,3,4,5,6,7,8,9,10]}"#.to_string(),
            "empty",
        ),
        (
            r#"{"time":1,"tag":"12345678901234567890","values":[1,2,3,4,5,6,7,8,9,10]}"#
                .to_string(),
            "20",
        ),
        (
            r#"{"time":"1","tag":"x","values":[1,2,3,4,5,6,7,8,9,10]}"#.to_string(),
            "invalid",
        ),
        (
            r#"{"time":1,"tag":"x","values":[1,2,3,4,5,6,7,8,9,10],"extra":1}"#.to_string(),
            "unknown field",
        ),
        (
            r#"{"time":99999999999999999999,"tag":"x","values":[1,2,3,4,5,6,7,8,9,10]}"#
                .to_string(),
            "invalid",
        ),
        ("not json".to_string(), "invalid"),
        (
            r#"{"time":1,"tag":"x","values":[1,2,3,4,5,6,7,8,9,1e999]}"#.to_string(),
            "finite",
        ),
    ];
    for (bad, needle) in bad_cases {
        let body = format!(
            "{}\n{}\n{bad}\n",
            good[..20].join("\n"),
            good[20..].join("\n")
        );
        let r = e.post(&body);
        assert_eq!(r.status, 400, "{bad}");
        let j = r.json();
        assert_eq!(j["line"].as_u64(), Some(51), "{}", r.text());
        assert!(
            j["error"].as_str().unwrap().contains(needle),
            "{}",
            r.text()
        );
    }
    let arr = format!("[{},{}]", good[0], r#"{"time":1}"#);
    let r = e.post(&arr);
    assert_eq!((r.status, r.json()["index"].as_u64()), (400, Some(1)));
    for i in 0..50 {
        assert!(
            e.export(&format!("bulk{i}")).is_empty(),
            "nothing of a rejected body is stored"
        );
    }
    assert_eq!(e.post(&format!("[{}]", good.join(","))).status, 204);
    // The same records again as NDJSON would be a retry (stored once, tests/dedup.rs): later times.
    let later: Vec<String> = (0..50)
        .map(|i| msg(&format!("bulk{i}"), now + 1, i as f64))
        .collect();
    assert_eq!(e.post(&later.join("\n")).status, 204);
    for i in 0..50 {
        assert_eq!(e.export(&format!("bulk{i}")).len(), 2);
    }
}

#[test]
fn one_tag_written_over_many_connections_reads_back_complete() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &[]);
    let base = now_ns() - 1_000_000_000;
    // Connections land on both cores (SO_REUSEPORT), so most writes of each tag are forwarded.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let addr = e.addr.clone();
            std::thread::spawn(move || {
                let e2 = Engine {
                    child: std::process::Command::new("true").spawn().unwrap(),
                    addr,
                    dir: Default::default(),
                    stdout: vec![],
                };
                for i in 0..50 {
                    let mut c = e2.connect();
                    let body = format!(
                        "{}\n{}",
                        msg("shared", base + t * 1000 + i, i as f64),
                        msg(&format!("own{t}"), base + i, 0.0)
                    );
                    assert_eq!(c.request("POST", "/save", &[], body.as_bytes()).status, 204);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all = e.export("shared");
    assert_eq!(all.len(), 400);
    assert!(
        all.windows(2).all(|w| w[0].0 <= w[1].0),
        "export is in time order"
    );
    for t in 0..8 {
        assert_eq!(e.export(&format!("own{t}")).len(), 50);
    }
}

/// An export streams segment after segment; records that arrive meanwhile in a later segment whose records
/// are out of time order are taken in when that segment's turn comes (its sorted order is made then, not
/// before the first record was sent), and the body ends with the last chunk only when it is complete.
#[test]
fn an_export_takes_in_records_that_arrive_in_a_later_segment_while_it_streams() {
    use std::io::{Read, Write};
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0", &[]);
    let day = 86_400_000_000_000i64;
    let d1 = (now_ns() / day - 3) * day;
    let d2 = d1 + day;
    for b in 0..10 {
        let body: Vec<String> = (0..10_000)
            .map(|i| msg("T", d1 + (b * 10_000 + i) * 1_000, i as f64))
            .collect();
        assert_eq!(e.post(&body.join("\n")).status, 204);
    }
    let late = [msg("T", d2 + 500, 1.0), msg("T", d2 + 100, 2.0)];
    assert_eq!(e.post(&late.join("\n")).status, 204);
    let mut s = std::net::TcpStream::connect(&e.addr).unwrap();
    let q = format!("/export?tag=T&start={}&end={}", i64::MIN, i64::MAX);
    s.write_all(format!("GET {q} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = vec![0u8; 1024];
    s.read_exact(&mut got).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(e.post(&msg("T", d2 + 300, 3.0)).status, 204);
    s.read_to_end(&mut got).unwrap();
    let text = String::from_utf8(got).unwrap();
    let (_, mut body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size line");
        let n = usize::from_str_radix(size, 16).unwrap();
        if n == 0 {
            break;
        }
        lines.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    let times: Vec<i64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["time"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(times.len(), 100_003);
    assert_eq!(times[100_000..], [d2 + 100, d2 + 300, d2 + 500]);
    assert_eq!(e.get("/health").status, 200);
    assert_eq!(e.terminate(), 0);
}
