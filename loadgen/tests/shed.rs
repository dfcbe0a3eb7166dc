//! What the real loadgen binary does when a write is shed (503 + Retry-After), against a stand-in server
//! that sheds the first write and the first probe and stores the rest: by default the same body is sent
//! again after the pause (resent, not an error, the verdicts pass); with `--retry-after honor` it is not
//! (an error, a failing verdict). A producer that must not lose data resends; the engine's shedding is a
//! request to wait, not a loss.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every POST body the stand-in received, in order, and whether it was shed.
type Seen = Arc<Mutex<Vec<(String, bool)>>>;

/// Serves one connection: the first `/save` of a data write and of a probe answer 503 + Retry-After: 1,
/// everything else 204; the probe's `/export` answers a line.
fn serve(stream: TcpStream, seen: Seen) {
    let mut out = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push(line);
        }
        let len = head
            .iter()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let reply: &[u8] = if head[0].starts_with("POST /save") {
            let body = String::from_utf8_lossy(&body).into_owned();
            let probe = body.contains("loadgen-probe");
            let mut s = seen.lock().unwrap();
            let first = !s.iter().any(|(b, _)| b.contains("loadgen-probe") == probe);
            s.push((body, first));
            if first {
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 21\r\n\r\n{\"error\":\"saturated\"}"
            } else {
                b"HTTP/1.1 204 No Content\r\n\r\n"
            }
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}\n"
        };
        if out.write_all(reply).is_err() {
            return;
        }
    }
}

/// Starts the stand-in; its URL and what it saw.
fn stand_in() -> (String, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let s = Arc::clone(&s);
            std::thread::spawn(move || serve(c, s));
        }
    });
    (url, seen)
}

fn loadgen(url: &str, extra: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--url",
            url,
            "--rate",
            "20",
            "--duration",
            "2s",
            "--connections",
            "1",
        ])
        .args([
            "--query-clients",
            "0",
            "--probe-interval",
            "300ms",
            "--report-interval",
            "10s",
        ])
        .args(extra)
        .output()
        .expect("loadgen runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_shed_write_is_sent_again_after_retry_after_and_is_not_an_error() {
    let (url, seen) = stand_in();
    let t = Instant::now();
    let (code, out) = loadgen(&url, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("resent 2 writes shed with 503"), "{out}");
    assert!(!out.contains("\n  errors "), "{out}");
    let seen = seen.lock().unwrap();
    for probe in [false, true] {
        let mine: Vec<&(String, bool)> = seen
            .iter()
            .filter(|(b, _)| b.contains("loadgen-probe") == probe)
            .collect();
        assert!(mine[0].1 && !mine[1].1, "{mine:?}");
        assert_eq!(mine[0].0, mine[1].0, "the shed body is the one sent again");
    }
    // The probe that was shed waited the second it was asked to: its lag counts from the first send.
    assert!(
        out.contains("send->visible") && t.elapsed() >= Duration::from_secs(2),
        "{out}"
    );
    let lag_line = out
        .lines()
        .rev()
        .find(|l| l.contains("SLO lag max"))
        .expect("a lag verdict");
    let lag_ms: f64 = lag_line
        .split_whitespace()
        .nth(4)
        .and_then(|v| v.parse().ok())
        .expect("a figure");
    assert!(lag_ms >= 1000.0, "{lag_line}");
}

#[test]
fn with_honor_a_shed_write_is_not_sent_again_and_is_an_error() {
    let (url, seen) = stand_in();
    let (code, out) = loadgen(&url, &["--retry-after", "honor"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("write_http_503=1") && out.contains("probe_http_503=1"),
        "{out}"
    );
    assert!(!out.contains("resent"), "{out}");
    let seen = seen.lock().unwrap();
    let first = &seen
        .iter()
        .find(|(b, _)| !b.contains("loadgen-probe"))
        .expect("a write")
        .0;
    assert_eq!(
        seen.iter().filter(|(b, _)| b == first).count(),
        1,
        "not sent again"
    );
}
