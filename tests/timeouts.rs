//! Slow and idle clients: a request head or body that does not arrive in time gets 408 and a closed
//! connection (a head trickled byte by byte included: the header timeout runs from the request's first byte);
//! an idle keep-alive connection is closed; clients that send promptly are unaffected. Past the per-core
//! connection limit a new connection gets 503 with Retry-After.
mod common;
use std::time::{Duration, Instant};

use common::*;

const FAST: [&str; 6] = [
    "--header-timeout",
    "300ms",
    "--body-timeout",
    "300ms",
    "--idle-timeout",
    "600ms",
];

#[test]
fn slow_heads_and_bodies_get_408_and_idle_connections_close() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0", &FAST);
    let msg = msg("to", now_ns(), 1.0);

    // A head that stops half way.
    let mut c = e.connect();
    let began = Instant::now();
    c.send(b"POST /save HTTP/1.1\r\nHost: x\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("request head"));
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert!(c.is_closed());

    // A head trickled a byte every 50 ms: the deadline does not move with each byte.
    let mut c = e.connect();
    let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let began = Instant::now();
    let mut sent = 0;
    while sent < head.len() && began.elapsed() < Duration::from_millis(1500) {
        use std::io::Write;
        if c.stream.write_all(&head[sent..sent + 1]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = c.read_response();
    assert_eq!(r.status, 408, "trickled head: {}", r.text());
    assert!(sent < head.len(), "cut off before the head was complete");

    // A body that stops: 10 of 100 bytes.
    let mut c = e.connect();
    c.send(b"POST /save HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"time\":1,");
    let r = c.read_response();
    assert_eq!(r.status, 408);
    assert!(r.json()["error"].as_str().unwrap().contains("request body"));
    assert!(e.export("to").is_empty(), "nothing of it stored");

    // Prompt clients are served; an idle keep-alive connection is closed without an answer.
    let mut c = e.connect();
    assert_eq!(c.request("POST", "/save", &[], msg.as_bytes()).status, 204);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        c.request("GET", "/health", &[], b"").status,
        200,
        "within the idle timeout"
    );
    let idle_from = Instant::now();
    assert!(c.is_closed(), "closed after the idle timeout");
    assert!(idle_from.elapsed() >= Duration::from_millis(500));
    assert_eq!(e.export("to").len(), 1);
}

#[test]
fn past_the_connection_limit_new_connections_get_503() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0", &["--max-connections", "3"]);
    let mut held: Vec<_> = (0..3)
        .map(|_| {
            let mut c = e.connect();
            assert_eq!(c.request("GET", "/health", &[], b"").status, 200);
            c
        })
        .collect();
    let mut over = e.connect();
    let r = over.read_response();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(over.is_closed());
    // The held connections still work; closing one frees a slot.
    assert_eq!(held[0].request("GET", "/health", &[], b"").status, 200);
    held.pop();
    std::thread::sleep(Duration::from_millis(100));
    let mut c = e.connect();
    assert_eq!(c.request("GET", "/health", &[], b"").status, 200);
    drop((c, over));
    held.pop();
    // The engine frees a slot once it has seen the close.
    std::thread::sleep(Duration::from_millis(200));
    let counted = metric_sum(
        &e,
        "tickcore_admission_rejections_total",
        "reason=\"connections\"",
    );
    assert_eq!(counted, 1.0, "/metrics counts the refused connection");
}
