//! HTTP framing against the real binary: keep-alive, pipelining, chunked bodies, Expect: 100-continue,
//! HTTP/1.0, and every error status of the connection layer (each rejected request stores nothing).
mod common;
use common::*;

fn engine() -> (tempfile::TempDir, Engine) {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &["--max-body", "4096"]);
    (d, e)
}

#[test]
fn keep_alive_and_pipelining() {
    let (_d, e) = engine();
    let now = now_ns();
    let mut c = e.connect();
    for i in 0..3 {
        let r = c.request("POST", "/save", &[], msg("ka", now + i, 1.0).as_bytes());
        assert_eq!(r.status, 204);
    }
    // Five requests in one write, answered in order on the same connection.
    let mut raw = Vec::new();
    for i in 0..4 {
        let b = msg("pipe", now + i, i as f64);
        raw.extend_from_slice(
            format!(
                "POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )
            .as_bytes(),
        );
    }
    raw.extend_from_slice(
        format!(
            "GET /export?tag=pipe&start={now}&end={} HTTP/1.1\r\nHost: t\r\n\r\n",
            now + 10
        )
        .as_bytes(),
    );
    c.send(&raw);
    for _ in 0..4 {
        assert_eq!(c.read_response().status, 204);
    }
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text().lines().count(), 4);
    assert_eq!(c.request("GET", "/health", &[], b"").status, 200);
}

#[test]
fn chunked_and_expect_continue() {
    let (_d, e) = engine();
    let now = now_ns();
    let body = format!("{}\n{}\n", msg("ch", now, 1.0), msg("ch", now + 1, 2.0));
    let (a, b) = body.split_at(30);
    let mut c = e.connect();
    let raw = format!("POST /save HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len());
    c.send(raw.as_bytes());
    assert_eq!(c.read_response().status, 204);
    // Expect: 100-continue: the server says 100 before the body is sent.
    let body = msg("ex", now, 3.0);
    c.send(
        format!(
            "POST /save HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().status, 100);
    c.send(body.as_bytes());
    assert_eq!(c.read_response().status, 204);
    assert_eq!(e.export("ch").len(), 2);
    assert_eq!(e.export("ex").len(), 1);
}

#[test]
fn http_1_0_closes_unless_keep_alive() {
    let (_d, e) = engine();
    let mut c = e.connect();
    c.send(b"GET /health HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(c.is_closed());
    let mut c = e.connect();
    c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
    c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
}

fn raw_status(e: &Engine, raw: &[u8], expect_close: bool) -> (Response, bool) {
    let mut c = e.connect();
    c.send(raw);
    let r = c.read_response();
    let closed = expect_close && c.is_closed();
    (r, closed)
}

#[test]
fn error_statuses_have_json_reasons_and_store_nothing() {
    let (_d, e) = engine();
    let now = now_ns();
    let ok = msg("err", now, 1.0);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 404),
        (b"GET /save HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 405),
        (
            format!(
                "PUT /api HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{ok}",
                ok.len()
            )
            .into_bytes(),
            405,
        ),
        (format!("POST /save HTTP/1.1\r\nHost: t\r\n\r\n{ok}").into_bytes(), 411),
        (
            b"POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n".to_vec(),
            413,
        ),
        (
            format!(
                "POST /save HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1001\r\n{}\r\n0\r\n\r\n",
                "x".repeat(4097)
            )
            .into_bytes(),
            413,
        ),
        (
            format!(
                "GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
                "a".repeat(20_000)
            )
            .into_bytes(),
            431,
        ),
        (b"GET /health HTTP/2.0\r\n\r\n".to_vec(), 505),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 505),
        (b"BLAH\r\n\r\n".to_vec(), 400),
        (
            format!(
                "POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{}",
                ok.len() + 2,
                format!("{ok}xx")
            )
            .into_bytes(),
            400,
        ),
    ];
    for (raw, status) in cases {
        let closing = matches!(status, 505 | 431 | 413 | 411) || raw.starts_with(b"BLAH");
        let (r, closed) = raw_status(&e, &raw, closing);
        assert_eq!(
            r.status,
            status,
            "{}",
            String::from_utf8_lossy(&raw[..raw.len().min(80)])
        );
        assert!(
            r.json()["error"].as_str().is_some_and(|s| !s.is_empty()),
            "{}",
            r.text()
        );
        assert_eq!(
            closed, closing,
            "{status}: a framing error closes the connection"
        );
    }
    assert!(
        e.export("err").is_empty(),
        "rejected requests stored nothing"
    );
    assert_eq!(e.get("/api?tag=err&start=0&end=10").status, 404);
}

/// RFC 9112 framing and the usual request-smuggling shapes: each gets a 4xx with a JSON reason (501 for an
/// unknown transfer coding, 505 for HTTP/2, as the RFCs say), the connection is closed (its framing can no
/// longer be trusted), nothing smuggled behind it is answered and nothing is stored.
#[test]
fn smuggling_and_framing_errors_close_the_connection() {
    let (_d, e) = engine();
    let ok = msg("smug", now_ns(), 1.0);
    let n = ok.len();
    let behind = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
    let cases: Vec<(String, u16)> = vec![
        (format!("POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\nContent-Length: {}\r\n\r\n{ok}", n + 1), 400),
        (format!("POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{behind}"), 400),
        (format!("POST /save HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{behind}"), 400),
        (format!("POST /save HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n{behind}"), 400),
        (format!("POST /save HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n{behind}"), 400),
        (format!("POST /save HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{behind}"), 501),
        (format!("POST /save HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{behind}"), 501),
        (format!("GET /health HTTP/1.1\r\nHost: t\r\nX: a\r\n folded: b\r\n\r\n{behind}"), 400),
        (format!("GET /health HTTP/1.1\nHost: t\n\n{behind}"), 400),
        (format!("GET /health HTTP/1.1\r\nHost: t\r\nX: a\nY: b\r\n\r\n{behind}"), 400),
        (format!("GET /health HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n{behind}"), 400),
        (format!("GET /api?tag={} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000)), 414),
        (format!("GET /health HTTP/1.1\r\n\r\n{behind}"), 400),
        (format!("GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n{behind}"), 400),
        (format!("GET /health HTTP/1.1\r\nHost : t\r\n\r\n{behind}"), 400),
        (format!("POST /save HTTP/1.1\r\nHost: t\r\nContent-Length : {n}\r\n\r\n{ok}"), 400),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(), 505),
    ];
    for (raw, status) in cases {
        let (r, closed) = raw_status(&e, raw.as_bytes(), true);
        let shown = raw[..raw.len().min(90)].escape_debug().to_string();
        assert_eq!(r.status, status, "{shown}");
        assert!(
            r.json()["error"].as_str().is_some_and(|s| !s.is_empty()),
            "{shown}: {}",
            r.text()
        );
        assert!(
            closed,
            "{shown}: the connection stays open after a framing error"
        );
    }
    assert!(
        e.export("smug").is_empty(),
        "a rejected request stored something"
    );
}

/// A HEAD request gets the head of the GET answer only (its Content-Length included): a body would be read
/// as the start of the next response.
#[test]
fn head_requests_get_no_body() {
    use std::io::BufRead;
    let (_d, e) = engine();
    let mut c = e.connect();
    c.send(b"HEAD /health HTTP/1.1\r\nHost: t\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut status = String::new();
    c.reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status:?}");
    let mut length = None;
    loop {
        let mut line = String::new();
        c.reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            length = v.trim().parse::<usize>().ok();
        }
    }
    assert_eq!(length, Some(15), "the GET answer's length");
    let r = c.read_response();
    assert_eq!(
        (r.status, r.text()),
        (200, "{\"status\":\"ok\"}".to_string())
    );
}

/// A client that half-closes (`shutdown(SHUT_WR)`) mid-request still gets an answer: 400 with a JSON reason
/// naming what was cut short, then the close; nothing of the cut request is stored.
#[test]
fn a_request_cut_short_by_a_half_close_gets_a_400() {
    let (_d, e) = engine();
    let cases: [(&[u8], &str); 3] = [
        (
            b"POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"time\":",
            "Content-Length",
        ),
        (
            b"POST /save HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"time\":",
            "last chunk",
        ),
        (b"POST /save HTTP/1.1\r\nHost: t\r\nContent-Le", "head"),
    ];
    for (raw, why) in cases {
        let mut c = e.connect();
        c.send(raw);
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        let r = c.read_response();
        assert_eq!(r.status, 400, "{}", r.text());
        let reason = r.json()["error"].as_str().unwrap_or("").to_string();
        assert!(reason.contains(why), "{reason}");
        assert!(c.is_closed());
    }
    // A half-close between requests is no error: the answered request stands and the connection closes.
    let mut c = e.connect();
    let body = msg("halfclose", now_ns(), 1.0);
    let raw = format!(
        "POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.send(raw.as_bytes());
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.read_response().status, 204);
    assert!(c.is_closed());
    assert_eq!(e.export("halfclose").len(), 1);
    // Nor are bare line ends after a request (some clients add one after a body), or alone.
    for extra in ["\r\n", "\r\n\r\n\n"] {
        let mut c = e.connect();
        c.send(format!("{raw}{extra}").as_bytes());
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(c.read_response().status, 204);
        assert!(c.is_closed(), "{extra:?} after a request was answered");
    }
    let mut c = e.connect();
    c.send(b"\r\n");
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(c.is_closed(), "a bare line end was answered");
}
