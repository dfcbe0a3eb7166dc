//! The hostile-input battery: what an attacker or a broken client sends, against the real binary. Classes:
//! nesting, sizes at and past every limit, slow and half-closed clients, many connections, pipelined floods,
//! malformed UTF-8 in every field, numbers at the edges of i64 and f64. After every case the engine must
//! still answer `/health` on a new connection; at the end every record it acknowledged is read back, also
//! after a restart, and it stops cleanly. Each case asserts the answer a user should get, not only survival.
mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

const MAX_BODY: usize = 64 << 10;
const VALS: &str = "1,2,3,4,5,6,7,8,9,10";

/// One case: its class and name, and what it does (panicking on a wrong answer).
type Case = (&'static str, &'static str, fn(&Engine, &mut Ledger));

/// What the battery had acknowledged: (tag, time, values) to find again at the end.
#[derive(Default)]
struct Ledger(Vec<(String, i64, Vec<f64>)>);

impl Ledger {
    fn saved(&mut self, tag: &str, time: i64, values: &[f64]) {
        self.0.push((tag.to_string(), time, values.to_vec()));
    }
}

fn message(tag_json: &str, time: &str, values: &str) -> String {
    format!(r#"{{"time":{time},"tag":{tag_json},"values":[{values}]}}"#)
}

fn post_raw(e: &Engine, path: &str, headers: &[&str], body: &[u8]) -> Response {
    e.connect().request("POST", path, headers, body)
}

fn status(e: &Engine, body: &[u8]) -> u16 {
    post_raw(e, "/save", &[], body).status
}

/// A 4xx whose JSON body names the reason.
fn refused(r: &Response, code: u16, needle: &str) {
    assert_eq!(r.status, code, "{}", r.text());
    let reason = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains(needle), "{reason:?} lacks {needle:?}");
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    g.write_all(b).unwrap();
    g.finish().unwrap()
}

/// NDJSON of `tag` messages padded with blank lines to exactly `len` bytes; the records it holds.
fn ndjson_of_len(tag: &str, len: usize) -> (String, usize) {
    let mut body = String::new();
    let mut n = 0;
    let t0 = 1_795_536_000_000_000_000i64;
    loop {
        let m = message(&format!("\"{tag}\""), &(t0 + n as i64).to_string(), VALS) + "\n";
        if body.len() + m.len() > len {
            break;
        }
        body.push_str(&m);
        n += 1;
    }
    body.push_str(&"\n".repeat(len - body.len()));
    (body, n)
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut raw = b"POST /save HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for c in body.chunks(chunk) {
        raw.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        raw.extend_from_slice(c);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    raw
}

fn raw_exchange(e: &Engine, raw: &[u8]) -> Response {
    let mut c = e.connect();
    c.send(raw);
    c.read_response()
}

fn get_status(e: &Engine, target: &[u8]) -> u16 {
    let mut raw = b"GET ".to_vec();
    raw.extend_from_slice(target);
    raw.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\n\r\n");
    raw_exchange(e, &raw).status
}

fn lp(fields: &str, time: &str) -> String {
    format!("m,tag=lp {fields} {time}\n")
}

fn lp_fields(v0: &str) -> String {
    let mut f = vec![format!("v0={v0}")];
    f.extend((1..10).map(|k| format!("v{k}={k}")));
    f.join(",")
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

const CASES: &[Case] = &[
    // ---- nesting (the real-binary sweep over every JSON path is tests/nesting.rs)
    (
        "nesting",
        "a gzip of 1 MiB of '[' inflates past the body limit: 413",
        |e, _| {
            let z = gzip(&vec![b'['; 1 << 20]);
            assert!(z.len() < MAX_BODY);
            let r = post_raw(e, "/save", &["Content-Encoding: gzip"], &z);
            refused(&r, 413, "inflates past");
        },
    ),
    (
        "nesting",
        "64 KiB of '[' exactly at the body limit: 400 nesting",
        |e, _| {
            refused(
                &post_raw(e, "/save", &[], &vec![b'['; MAX_BODY]),
                400,
                "nesting deeper than 128",
            );
        },
    ),
    (
        "nesting",
        "closers first, then deep openers: refused, nothing parsed",
        |e, _| {
            let body = format!("{}{}", "]".repeat(200), "[".repeat(20_000));
            assert_eq!(status(e, body.as_bytes()), 400);
        },
    ),
    (
        "nesting",
        "escaped quotes and backslashes around block edges do not hide depth",
        |e, _| {
            for pad in 55..70 {
                let body = format!(
                    "{{\"x\":\"{}\\\\\\\\\",\"y\":{}}}",
                    "a".repeat(pad),
                    "[".repeat(5000)
                );
                refused(
                    &post_raw(e, "/save", &[], body.as_bytes()),
                    400,
                    "nesting deeper than 128",
                );
            }
        },
    ),
    // ---- sizes at and past every limit
    (
        "sizes",
        "NDJSON exactly at --max-body: stored whole",
        |e, l| {
            let (body, n) = ndjson_of_len("atlimit", MAX_BODY);
            assert_eq!(body.len(), MAX_BODY);
            assert_eq!(status(e, body.as_bytes()), 204);
            let t0 = 1_795_536_000_000_000_000i64;
            for i in 0..n {
                l.saved(
                    "atlimit",
                    t0 + i as i64,
                    &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10.],
                );
            }
        },
    ),
    ("sizes", "one byte past --max-body: 413", |e, _| {
        let (body, _) = ndjson_of_len("pastlimit", MAX_BODY + 1);
        refused(&post_raw(e, "/save", &[], body.as_bytes()), 413, "");
    }),
    (
        "sizes",
        "chunked exactly at --max-body in 1000-byte chunks: stored",
        |e, _| {
            let (body, _) = ndjson_of_len("chunkat", MAX_BODY);
            assert_eq!(raw_exchange(e, &chunked(body.as_bytes(), 1000)).status, 204);
            assert!(!e.export("chunkat").is_empty());
        },
    ),
    ("sizes", "chunked one byte past --max-body: 413", |e, _| {
        let (body, _) = ndjson_of_len("chunkpast", MAX_BODY + 1);
        assert_eq!(raw_exchange(e, &chunked(body.as_bytes(), 4096)).status, 413);
        assert!(e.export("chunkpast").is_empty());
    }),
    ("sizes", "a 1-byte chunk stream: stored", |e, _| {
        let m = message("\"tiny\"", "1795536000000000000", VALS);
        assert_eq!(raw_exchange(e, &chunked(m.as_bytes(), 1)).status, 204);
    }),
    (
        "sizes",
        "a chunk size of 2^64 and one of 100k hex digits: refused",
        |e, _| {
            let raw = b"POST /save HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n";
            assert!([400, 413].contains(&raw_exchange(e, raw).status));
            let mut raw =
                b"POST /save HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            raw.extend(std::iter::repeat_n(b'f', 100_000));
            raw.extend_from_slice(b"\r\n");
            assert!([400, 413].contains(&raw_exchange(e, &raw).status));
        },
    ),
    (
        "sizes",
        "Content-Length of 2^63-1 and of 30 digits: 413 and 400, before any body",
        |e, _| {
            let raw =
                b"POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: 9223372036854775807\r\n\r\n";
            assert_eq!(raw_exchange(e, raw).status, 413);
            let raw = b"POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999999999999999999999999\r\n\r\n";
            assert_eq!(raw_exchange(e, raw).status, 400);
        },
    ),
    (
        "sizes",
        "gzip inflating to exactly --max-body: stored; one more byte: 413",
        |e, _| {
            let (body, _) = ndjson_of_len("gzat", MAX_BODY);
            let r = post_raw(
                e,
                "/save",
                &["Content-Encoding: gzip"],
                &gzip(body.as_bytes()),
            );
            assert_eq!(r.status, 204, "{}", r.text());
            let (body, _) = ndjson_of_len("gzpast", MAX_BODY + 1);
            let r = post_raw(
                e,
                "/save",
                &["Content-Encoding: gzip"],
                &gzip(body.as_bytes()),
            );
            refused(&r, 413, "inflates past");
            assert!(e.export("gzpast").is_empty());
        },
    ),
    (
        "sizes",
        "a truncated and a corrupt gzip body: 400",
        |e, _| {
            let z = gzip(message("\"gz\"", "1", VALS).as_bytes());
            refused(
                &post_raw(e, "/save", &["Content-Encoding: gzip"], &z[..z.len() / 2]),
                400,
                "gzip",
            );
            let mut bad = z.clone();
            bad[12] ^= 0xff;
            assert_eq!(
                post_raw(e, "/save", &["Content-Encoding: gzip"], &bad).status,
                400
            );
        },
    ),
    ("sizes", "a head of 16 KiB is read; past it: 431", |e, _| {
        let fill = |n: usize| {
            format!(
                "GET /health HTTP/1.1\r\nHost: t\r\nX-Fill: {}\r\n\r\n",
                "a".repeat(n)
            )
        };
        let base = fill(0).len();
        assert_eq!(
            raw_exchange(e, fill((16 << 10) - base).as_bytes()).status,
            200
        );
        assert_eq!(
            raw_exchange(e, fill((16 << 10) - base + 1).as_bytes()).status,
            431
        );
    }),
    (
        "sizes",
        "a URI of 8192 bytes is read; past it: 414",
        |e, _| {
            let target = |n: usize| {
                let t = "/api?tag=x&start=1&end=2&pad=";
                format!("{t}{}", "a".repeat(n - t.len()))
            };
            assert_eq!(
                get_status(e, target(8192).as_bytes()),
                400,
                "read, then the unknown parameter refused"
            );
            assert_eq!(get_status(e, target(8193).as_bytes()), 414);
        },
    ),
    ("sizes", "64 headers are read; 65: 431", |e, _| {
        let head = |n: usize| {
            let mut h = "GET /health HTTP/1.1\r\nHost: t\r\n".to_string();
            for i in 1..n {
                h.push_str(&format!("X-{i}: v\r\n"));
            }
            h + "\r\n"
        };
        assert_eq!(raw_exchange(e, head(64).as_bytes()).status, 200);
        assert_eq!(raw_exchange(e, head(65).as_bytes()).status, 431);
    }),
    (
        "sizes",
        "tags of 19 characters (4-byte ones too) are stored; 20: 400",
        |e, l| {
            let emoji = "\u{1F600}".repeat(19);
            for tag in ["t".repeat(19), emoji.clone()] {
                let body = message(
                    &serde_json::to_string(&tag).unwrap(),
                    "1795536000000000001",
                    VALS,
                );
                assert_eq!(status(e, body.as_bytes()), 204, "{tag}");
                l.saved(
                    &tag,
                    1_795_536_000_000_000_001,
                    &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10.],
                );
            }
            let body = message(&format!("\"{}\"", "t".repeat(20)), "1", VALS);
            refused(
                &post_raw(e, "/save", &[], body.as_bytes()),
                400,
                "20 characters",
            );
            let body = message(
                &serde_json::to_string(&"\u{1F600}".repeat(20)).unwrap(),
                "1",
                VALS,
            );
            refused(
                &post_raw(e, "/save", &[], body.as_bytes()),
                400,
                "20 characters",
            );
        },
    ),
    (
        "sizes",
        "0, 9 and 11 values and 10 000 values: 400",
        |e, _| {
            for v in ["", "1,2,3,4,5,6,7,8,9", "1,2,3,4,5,6,7,8,9,10,11"] {
                refused(
                    &post_raw(e, "/save", &[], message("\"v\"", "1", v).as_bytes()),
                    400,
                    "values",
                );
            }
            let many = vec!["1"; 10_000].join(",");
            refused(
                &post_raw(e, "/save", &[], message("\"v\"", "1", &many).as_bytes()),
                400,
                "10000",
            );
        },
    ),
    (
        "sizes",
        "samples=10000 is answered; 10001 and 0: 400",
        |e, _| {
            let r = e.get("/api?tag=atlimit&start=0&end=9223372036854775807&samples=10000");
            assert_eq!(r.status, 200);
            assert_eq!(r.json()["samples"].as_array().unwrap().len(), 10_000);
            for s in ["10001", "0", "-1", "18446744073709551616"] {
                let r = e.get(&format!("/api?tag=atlimit&start=0&end=9&samples={s}"));
                refused(&r, 400, "samples");
            }
        },
    ),
    (
        "sizes",
        "an empty body, an empty array and 60 000 blank lines: 400",
        |e, _| {
            refused(&post_raw(e, "/save", &[], b""), 400, "empty");
            refused(&post_raw(e, "/save", &[], b"[]"), 400, "empty array");
            refused(
                &post_raw(e, "/save", &[], "\n".repeat(60_000).as_bytes()),
                400,
                "empty",
            );
        },
    ),
    (
        "sizes",
        "a 100 000-character field key and one line of 60 KiB of line protocol: 400",
        |e, _| {
            let body = format!("m,tag=x {}=1 1\n", "k".repeat(60_000));
            assert_eq!(post_raw(e, "/write", &[], body.as_bytes()).status, 400);
            let body = format!("{{\"{}\":1}}", "k".repeat(60_000));
            refused(
                &post_raw(e, "/save", &[], body.as_bytes()),
                400,
                "unknown field",
            );
        },
    ),
    // ---- slow and half-closed clients
    (
        "slow",
        "a request then a half-close: answered, then closed",
        |e, _| {
            let mut c = e.connect();
            c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
            c.stream.shutdown(Shutdown::Write).unwrap();
            assert_eq!(c.read_response().status, 200);
            assert!(c.is_closed());
        },
    ),
    (
        "slow",
        "half a body then a half-close: nothing stored, connection closed",
        |e, _| {
            let m = message("\"halfbody\"", "1795536000000000000", VALS);
            let mut c = e.connect();
            let head = format!(
                "POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                m.len()
            );
            c.send(head.as_bytes());
            c.send(&m.as_bytes()[..m.len() / 2]);
            c.stream.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            let _ = c.reader.read_to_end(&mut rest);
            assert!(e.export("halfbody").is_empty());
        },
    ),
    (
        "slow",
        "a reset in the middle of a head, of a body and of a pipeline",
        |e, _| {
            for raw in [
                &b"POST /save HTTP/1.1\r\nHost: t\r\nContent-Le"[..],
                b"POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n{\"time\":",
                b"GET /health HTTP/1.1\r\nHost: t\r\n\r\nGET /health HTTP/1.1\r\nHo",
            ] {
                let s = std::net::TcpStream::connect(&e.addr).unwrap();
                (&s).write_all(raw).unwrap();
                // SO_LINGER 0: close sends a reset instead of a FIN.
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                unsafe {
                    libc::setsockopt(
                        std::os::fd::AsRawFd::as_raw_fd(&s),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        &linger as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::linger>() as u32,
                    );
                }
                drop(s);
            }
        },
    ),
    (
        "slow",
        "50 heads trickled a byte at a time: others are served promptly, the slow get 408",
        |e, _| {
            let mut slow: Vec<Conn> = (0..50).map(|_| e.connect()).collect();
            for c in slow.iter_mut() {
                c.send(b"GET /hea");
            }
            for _ in 0..5 {
                let began = Instant::now();
                assert_eq!(e.get("/health").status, 200);
                assert!(began.elapsed() < Duration::from_millis(500));
                for c in slow.iter_mut() {
                    let _ = c.stream.write_all(b"l");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // --header-timeout 1s: each gets its 408 (or a close) within a few seconds.
            for mut c in slow {
                c.stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut got = Vec::new();
                let _ = c.reader.read_to_end(&mut got);
                let text = String::from_utf8_lossy(&got);
                assert!(
                    text.is_empty() || text.starts_with("HTTP/1.1 408"),
                    "{text}"
                );
            }
        },
    ),
    (
        "slow",
        "a client that never reads a large export: the engine moves on",
        |e, _| {
            let mut c = e.connect();
            c.send(b"GET /export?tag=atlimit&start=0&end=9223372036854775807 HTTP/1.1\r\nHost: t\r\n\r\n");
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(e.get("/health").status, 200);
            drop(c);
        },
    ),
    // ---- many connections
    (
        "connections",
        "2 000 idle connections open at once: a new one is still served",
        |e, _| {
            let held: Vec<Conn> = (0..2000).filter_map(|_| connect_to(&e.addr).ok()).collect();
            assert!(held.len() >= 1900, "{} connected", held.len());
            let began = Instant::now();
            assert_eq!(e.get("/health").status, 200);
            assert!(began.elapsed() < Duration::from_secs(1));
            drop(held);
        },
    ),
    (
        "connections",
        "200 connections each writing at once: all stored (retrying a shed 503)",
        |e, l| {
            let addr = e.addr.clone();
            let threads: Vec<_> = (0..200)
                .map(|i| {
                    let addr = addr.clone();
                    std::thread::spawn(move || {
                        let body = message(
                            "\"many\"",
                            &(1_795_536_000_000_000_000i64 + i).to_string(),
                            VALS,
                        );
                        // A saturated core sheds with 503 + Retry-After: a client retries.
                        for _ in 0..200 {
                            let r = connect_to(&addr).unwrap().request(
                                "POST",
                                "/save",
                                &[],
                                body.as_bytes(),
                            );
                            if r.status != 503 {
                                return r.status;
                            }
                            assert!(r.header("retry-after").is_some(), "{}", r.text());
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        503
                    })
                })
                .collect();
            for (i, t) in threads.into_iter().enumerate() {
                assert_eq!(t.join().unwrap(), 204);
                l.saved(
                    "many",
                    1_795_536_000_000_000_000 + i as i64,
                    &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10.],
                );
            }
        },
    ),
    // ---- pipelined floods
    (
        "pipeline",
        "10 000 pipelined GET /health in one write: 10 000 answers in order",
        |e, _| {
            let mut c = e.connect();
            let one = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
            let all: Vec<u8> = one
                .iter()
                .copied()
                .cycle()
                .take(one.len() * 10_000)
                .collect();
            let mut w = c.stream.try_clone().unwrap();
            let writer = std::thread::spawn(move || w.write_all(&all).unwrap());
            for _ in 0..10_000 {
                assert_eq!(c.read_response().status, 200);
            }
            writer.join().unwrap();
        },
    ),
    (
        "pipeline",
        "2 000 pipelined writes, a bad one in every ten: each answered for itself",
        |e, l| {
            let mut c = e.connect();
            let mut raw = Vec::new();
            let t0 = 1_795_536_100_000_000_000i64;
            for i in 0..2000i64 {
                let body = if i % 10 == 9 {
                    "{\"time\":1,\"tag\":\"pipe\"}".to_string()
                } else {
                    message("\"pipe\"", &(t0 + i).to_string(), VALS)
                };
                raw.extend_from_slice(
                    format!(
                        "POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
            let mut w = c.stream.try_clone().unwrap();
            let writer = std::thread::spawn(move || w.write_all(&raw).unwrap());
            for i in 0..2000i64 {
                let r = c.read_response();
                if i % 10 == 9 {
                    assert_eq!(r.status, 400, "{}", r.text());
                } else {
                    assert_eq!(r.status, 204, "{i}: {}", r.text());
                    l.saved("pipe", t0 + i, &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10.]);
                }
            }
            writer.join().unwrap();
        },
    ),
    (
        "pipeline",
        "100 000 pipelined requests never read: memory stays bounded, the engine moves on",
        |e, _| {
            let before = rss_kib(e.child.id());
            let c = e.connect();
            let mut s = c.stream.try_clone().unwrap();
            s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
            let one = b"GET /api?tag=atlimit&start=0&end=9223372036854775807&samples=100 HTTP/1.1\r\nHost: t\r\n\r\n";
            let mut sent = 0;
            for _ in 0..100_000 {
                if s.write_all(one).is_err() {
                    break; // the engine stopped reading: back-pressure reached the client
                }
                sent += 1;
            }
            assert_eq!(e.get("/health").status, 200);
            let grown = rss_kib(e.child.id()).saturating_sub(before);
            assert!(
                grown < 256 << 10,
                "RSS grew {grown} KiB after {sent} unread requests"
            );
            drop(c);
        },
    ),
    // ---- malformed UTF-8 in every field
    (
        "utf8",
        "invalid UTF-8 in the tag, a key, a value and after the message: 400 each",
        |e, _| {
            for body in [
            &b"{\"time\":1795536000000000000,\"tag\":\"\xff\",\"values\":[1,2,3,4,5,6,7,8,9,10]}"[..],
            b"{\"time\":1795536000000000000,\"t\xffg\":\"a\",\"values\":[1,2,3,4,5,6,7,8,9,10]}",
            b"{\"time\":1795536000000000000,\"tag\":\"\xc0\xaf\",\"values\":[1,2,3,4,5,6,7,8,9,10]}",
            b"{\"time\":1795536000000000000,\"tag\":\"\xed\xa0\x80\",\"values\":[1,2,3,4,5,6,7,8,9,10]}",
            b"{\"time\":1795536000000000000,\"tag\":\"a\",\"values\":[1,2,3,4,5,6,7,8,9,\xff]}",
            b"{\"time\":\xff1,\"tag\":\"a\",\"values\":[1,2,3,4,5,6,7,8,9,10]}",
            b"{\"time\":1795536000000000000,\"tag\":\"a\",\"values\":[1,2,3,4,5,6,7,8,9,10]}\xff",
            b"\xef\xbb\xbf{\"time\":1795536000000000000,\"tag\":\"bom\",\"values\":[1,2,3,4,5,6,7,8,9,10]}",
        ] {
            assert_eq!(status(e, body), 400, "{}", String::from_utf8_lossy(body));
        }
            assert!(e.export("bom").is_empty());
        },
    ),
    (
        "utf8",
        "lone surrogates and a NUL escaped in the tag: 400",
        |e, _| {
            for tag in [r#""\ud800""#, r#""\udfffx""#, r#""a\u0000""#] {
                let body = message(tag, "1795536000000000000", VALS);
                assert_eq!(status(e, body.as_bytes()), 400, "{tag}");
            }
        },
    ),
    (
        "utf8",
        "invalid UTF-8 in the query: tag, parameter name and raw bytes: 400",
        |e, _| {
            assert_eq!(get_status(e, b"/api?tag=%FF&start=1&end=2"), 400);
            assert_eq!(get_status(e, b"/api?tag=%C0%AF&start=1&end=2"), 400);
            assert_eq!(get_status(e, b"/api?t%FFg=a&start=1&end=2"), 400);
            assert_eq!(get_status(e, b"/export?tag=%ED%A0%80&start=1&end=2"), 400);
            assert_eq!(get_status(e, b"/api?tag=%&start=1&end=2"), 400);
            assert_eq!(get_status(e, b"/api?tag=\xff&start=1&end=2"), 400);
        },
    ),
    (
        "utf8",
        "invalid UTF-8 in the method, path, header name and values",
        |e, _| {
            assert_eq!(
                raw_exchange(e, b"G\xffT /health HTTP/1.1\r\nHost: t\r\n\r\n").status,
                400
            );
            assert_eq!(
                raw_exchange(e, b"GET /he\xffalth HTTP/1.1\r\nHost: t\r\n\r\n").status,
                400
            );
            assert_eq!(
                raw_exchange(e, b"GET /health HTTP/1.1\r\nHost: t\r\nX\xff: 1\r\n\r\n").status,
                400
            );
            // An unknown header's value is not read: any bytes are fine there.
            assert_eq!(
                raw_exchange(
                    e,
                    b"GET /health HTTP/1.1\r\nHost: \xff\r\nX-A: \xff\xfe\r\n\r\n"
                )
                .status,
                200
            );
            let raw = b"POST /save HTTP/1.1\r\nHost: t\r\nContent-Length: \xd9\xa1\r\n\r\n";
            assert_eq!(raw_exchange(e, raw).status, 400);
            let raw = b"POST /save HTTP/1.1\r\nHost: t\r\nContent-Encoding: gz\xffip\r\nContent-Length: 1\r\n\r\nx";
            assert_eq!(raw_exchange(e, raw).status, 415);
        },
    ),
    (
        "utf8",
        "invalid UTF-8 in line protocol: measurement, tag key and value, field key: 400",
        |e, _| {
            for body in [
            b"m,tag=\xff v0=1,v1=1,v2=1,v3=1,v4=1,v5=1,v6=1,v7=1,v8=1,v9=1 1795536000000000000\n".to_vec(),
            b"m\xff,tag=a v0=1,v1=1,v2=1,v3=1,v4=1,v5=1,v6=1,v7=1,v8=1,v9=1 1795536000000000000\n".to_vec(),
            b"m,t\xffg=a v0=1,v1=1,v2=1,v3=1,v4=1,v5=1,v6=1,v7=1,v8=1,v9=1 1795536000000000000\n".to_vec(),
            b"m,tag=a v\xff=1,v1=1,v2=1,v3=1,v4=1,v5=1,v6=1,v7=1,v8=1,v9=1 1795536000000000000\n".to_vec(),
        ]
        .iter()
        {
            let r = post_raw(e, "/write", &[], body);
            assert_eq!(r.status, 400, "{}: {}", String::from_utf8_lossy(body), r.text());
        }
        },
    ),
    // ---- numbers at the edges of i64 and f64
    (
        "numbers",
        "time at i64::MAX is stored; past i64 either way, fractional or quoted: 400",
        |e, l| {
            let body = message("\"far\"", "9223372036854775807", VALS);
            assert_eq!(status(e, body.as_bytes()), 204);
            l.saved("far", i64::MAX, &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10.]);
            for t in [
                "9223372036854775808",
                "-9223372036854775809",
                "1e18",
                "1.5",
                "\"1\"",
                "-0.0",
                "01",
            ] {
                let r = post_raw(e, "/save", &[], message("\"far\"", t, VALS).as_bytes());
                assert_eq!(r.status, 400, "time {t}: {}", r.text());
            }
        },
    ),
    (
        "numbers",
        "time at i64::MIN is older than the retention window: 400",
        |e, _| {
            let r = post_raw(
                e,
                "/save",
                &[],
                message("\"old\"", "-9223372036854775808", VALS).as_bytes(),
            );
            refused(&r, 400, "retention");
        },
    ),
    (
        "numbers",
        "f64 extremes round-trip bit for bit; past f64: 400",
        |e, l| {
            let v = [
                f64::MAX,
                f64::MIN,
                5e-324,
                -5e-324,
                -0.0,
                0.0,
                f64::MIN_POSITIVE,
                1e-310,
                0.1,
                2.0f64.powi(53) + 2.0,
            ];
            let text: Vec<String> = v.iter().map(|x| format!("{x:e}")).collect();
            let body = message("\"edges\"", "1795536000000000002", &text.join(","));
            assert_eq!(status(e, body.as_bytes()), 204, "{body}");
            l.saved("edges", 1_795_536_000_000_000_002, &v);
            for bad in [
                "1e309", "-1e309", "NaN", "Infinity", "1e99999", "0x10", "+1", ".5", "1.",
            ] {
                let vals = format!("{bad},2,3,4,5,6,7,8,9,10");
                let r = post_raw(e, "/save", &[], message("\"edges\"", "1", &vals).as_bytes());
                assert_eq!(r.status, 400, "value {bad}: {}", r.text());
            }
        },
    ),
    (
        "numbers",
        "a 5 000-digit value and a value that underflows to zero",
        |e, _| {
            let vals = format!("{},2,3,4,5,6,7,8,9,10", "9".repeat(5000));
            assert_eq!(
                status(
                    e,
                    message("\"digits\"", "1795536000000000000", &vals).as_bytes()
                ),
                400
            );
            let vals = "1e-400,2,3,4,5,6,7,8,9,10";
            assert_eq!(
                status(
                    e,
                    message("\"under\"", "1795536000000000000", vals).as_bytes()
                ),
                204
            );
            assert_eq!(e.export("under")[0].1[0], 0.0);
        },
    ),
    (
        "numbers",
        "query windows at the edges of i64; past them or reversed: 400",
        |e, _| {
            let r =
                e.get("/api?tag=far&start=-9223372036854775808&end=9223372036854775807&samples=2");
            assert_eq!(r.status, 200, "{}", r.text());
            let s = r.json()["samples"].as_array().unwrap().clone();
            assert_eq!(s.last().unwrap()["time"].as_i64(), Some(i64::MAX));
            for q in [
                "start=-9223372036854775809&end=1",
                "start=1&end=9223372036854775808",
                "start=2&end=1",
                "start=1.5&end=2",
                "start=&end=2",
                "start=1e3&end=2",
            ] {
                let r = e.get(&format!("/api?tag=far&{q}"));
                assert_eq!(r.status, 400, "{q}: {}", r.text());
            }
        },
    ),
    (
        "numbers",
        "line protocol integers and times at their edges",
        |e, l| {
            let ok = lp(&lp_fields("9223372036854775807i"), "1795536000000000003");
            assert_eq!(post_raw(e, "/write", &[], ok.as_bytes()).status, 204);
            l.saved(
                "lp",
                1_795_536_000_000_000_003,
                &[9223372036854775807.0, 1., 2., 3., 4., 5., 6., 7., 8., 9.],
            );
            let ok = lp(&lp_fields("18446744073709551615u"), "1795536000000000004");
            assert_eq!(post_raw(e, "/write", &[], ok.as_bytes()).status, 204);
            l.saved(
                "lp",
                1_795_536_000_000_000_004,
                &[18446744073709551615.0, 1., 2., 3., 4., 5., 6., 7., 8., 9.],
            );
            for (v0, t) in [
                ("9223372036854775808i", "1795536000000000005"),
                ("-9223372036854775809i", "1795536000000000005"),
                ("18446744073709551616u", "1795536000000000005"),
                ("1e309", "1795536000000000005"),
                ("1", "9223372036854775808"),
                ("1", "1.5"),
            ] {
                let r = post_raw(e, "/write", &[], lp(&lp_fields(v0), t).as_bytes());
                assert_eq!(r.status, 400, "{v0} at {t}: {}", r.text());
            }
            // Seconds precision that overflows i64 nanoseconds.
            let r = post_raw(
                e,
                "/write?precision=s",
                &[],
                lp(&lp_fields("1"), "9223372036854775807").as_bytes(),
            );
            assert_eq!(r.status, 400, "{}", r.text());
        },
    ),
];

#[test]
fn the_engine_survives_the_hostile_battery_and_keeps_what_it_acknowledged() {
    let d = tempfile::tempdir().unwrap();
    let max = MAX_BODY.to_string();
    let flags = [
        "--max-body",
        &max,
        "--header-timeout",
        "1s",
        "--body-timeout",
        "1s",
    ];
    let e = start(d.path(), "0,1", &flags);
    let mut ledger = Ledger::default();
    for (class, name, case) in CASES {
        let began = Instant::now();
        case(&e, &mut ledger);
        let mut c =
            connect_to(&e.addr).unwrap_or_else(|err| panic!("{class}: {name}: engine gone: {err}"));
        let r = c.request("GET", "/health", &[], b"");
        assert_eq!(r.status, 200, "{class}: {name}: not serving afterwards");
        eprintln!("ok {class}: {name} ({} ms)", began.elapsed().as_millis());
    }
    eprintln!(
        "hostile battery: {} cases, engine alive after each",
        CASES.len()
    );
    let check = |e: &Engine| {
        let mut exports = std::collections::HashMap::new();
        for (tag, time, values) in &ledger.0 {
            let got = exports.entry(tag.clone()).or_insert_with(|| e.export(tag));
            let found = got.iter().find(|(t, _)| t == time);
            if *time == i64::MAX {
                // The export window is [start, end): a record at i64::MAX is read with /api instead.
                let r = e.get(&format!(
                    "/api?tag={}&start=0&end={}&samples=1",
                    enc(tag),
                    i64::MAX
                ));
                assert_eq!(r.json()["samples"][0]["time"].as_i64(), Some(i64::MAX));
                continue;
            }
            let (_, v) = found.unwrap_or_else(|| panic!("{tag} at {time} acknowledged, not found"));
            let bits: Vec<u64> = v.iter().map(|x| x.to_bits()).collect();
            let want: Vec<u64> = values.iter().map(|x| x.to_bits()).collect();
            assert_eq!(bits, want, "{tag} at {time}");
        }
    };
    check(&e);
    assert_eq!(e.terminate(), 0, "a clean stop after the battery");
    let e = start(d.path(), "0,1", &flags);
    check(&e);
    assert_eq!(e.terminate(), 0);
}

/// Past the file-descriptor limit, accepting fails (EMFILE): the engine warns at start that the limit is
/// below its connection limit, keeps its connections, backs off without spinning, reports the failures in a
/// line or two instead of a flood, and serves again once descriptors are free.
#[test]
fn past_the_descriptor_limit_the_engine_waits_and_recovers() {
    let d = tempfile::tempdir().unwrap();
    let mut e = try_start_via(&["prlimit", "--nofile=256:256", "--"], d.path(), "0", &[])
        .unwrap_or_else(|err| panic!("engine did not start under prlimit: {err}"));
    let stderr = e.child.stderr.take().unwrap();
    let (failing, failed) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Too many open files") {
                let _ = failing.send(());
            }
            s.push_str(&line);
            s.push('\n');
        }
        s
    });
    let mut held = Vec::new();
    for _ in 0..400 {
        match connect_to(&e.addr) {
            Ok(c) => held.push(c),
            Err(_) => break,
        }
    }
    // Wait until the engine has accepted what it can and reported its first failure, then long enough for
    // its retries to back off (10 ms doubling: 1.27 s to reach 640 ms), however loaded this machine is.
    failed
        .recv_timeout(Duration::from_secs(30))
        .expect("no accept failure reported with 400 connections and 256 descriptors");
    std::thread::sleep(Duration::from_millis(1500));
    // A spinning accept loop burns a whole core (200 ticks in 2 s); backed-off retries and the engine's
    // timers cost well under 1 %. 5 % leaves room for a machine busy with other tests.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let before = cpu_ticks(e.child.id());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(e.child.id()) - before;
    assert!(
        used <= hz / 10,
        "{used} ticks in 2 s while out of descriptors: spinning"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = connect_to(&e.addr)
            .map(|mut c| c.request("GET", "/health", &[], b"").status == 200)
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not serving again after descriptors were freed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(e.post(&msg("fd", now_ns(), 1.0)).status, 204);
    assert_eq!(e.terminate(), 0);
    let log = log.join().unwrap();
    assert!(log.contains("warning: RLIMIT_NOFILE is 256"), "{log}");
    let reports = log
        .lines()
        .filter(|l| l.contains("Too many open files"))
        .count();
    assert!(
        (1..=2).contains(&reports),
        "{reports} accept reports:\n{log}"
    );
}

/// A soft descriptor limit below the hard one is raised at start: no warning, connections past the soft one.
#[test]
fn a_low_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let d = tempfile::tempdir().unwrap();
    let mut e = try_start_via(&["prlimit", "--nofile=256:20000", "--"], d.path(), "0", &[])
        .unwrap_or_else(|err| panic!("engine did not start under prlimit: {err}"));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", e.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let held: Vec<Conn> = (0..400).map(|_| e.connect()).collect();
    for mut c in held {
        assert_eq!(c.request("GET", "/health", &[], b"").status, 200, "{line}");
    }
    let mut stderr = e.child.stderr.take().unwrap();
    assert_eq!(e.terminate(), 0);
    let mut log = String::new();
    let _ = stderr.read_to_string(&mut log);
    assert!(!log.contains("RLIMIT_NOFILE"), "{log}");
    assert!(!log.contains("accept"), "{log}");
    assert!(line.split_whitespace().nth(3) == Some("20000"), "{line}");
}

#[test]
fn a_body_at_the_default_limit_full_of_brackets_is_refused_quickly() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &[]);
    let body = vec![b'['; 16 << 20];
    let began = Instant::now();
    refused(
        &post_raw(&e, "/save", &[], &body),
        400,
        "nesting deeper than 128",
    );
    assert!(began.elapsed() < Duration::from_secs(10));
    assert_eq!(e.get("/health").status, 200);
    assert_eq!(e.terminate(), 0);
}

/// Peak resident memory of `pid` so far (VmHWM), in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Array bodies of millions of tiny elements (16 KB of gzip inflating to 16 MiB of `1,`, `{},`, `"",`),
/// and positional arrays that serde would read as a message: refused, and the engine's peak memory grows by
/// less than a few bodies' worth. (Collecting 8M elements before judging element 0 took 430 MB per request,
/// and `[[time,"tag",[values]]]` was stored.)
#[test]
fn huge_arrays_of_tiny_elements_are_refused_in_constant_memory() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &[]);
    let mut c = e.connect();
    let warm = c.request("POST", "/save", &[], msg("warm", now_ns(), 1.0).as_bytes());
    assert_eq!(warm.status, 204);
    let before = peak_kib(e.child.id());
    let max = 16 << 20;
    for (element, why) in [
        ("1", "not a JSON object"),
        ("{}", "missing field"),
        ("\"\"", "not a JSON object"),
        ("[1,\"t\",[1,2,3,4,5,6,7,8,9,10]]", "not a JSON object"),
    ] {
        let mut body = String::from("[");
        while body.len() + 2 * (element.len() + 1) < max {
            body.push_str(element);
            body.push(',');
        }
        body.push_str(element);
        body.push(']');
        let r = c.request(
            "POST",
            "/save",
            &["Content-Encoding: gzip"],
            &gzip(body.as_bytes()),
        );
        refused(&r, 400, why);
        assert_eq!(r.json()["index"], 0, "{}", r.text());
    }
    let grew = peak_kib(e.child.id()) - before;
    eprintln!("peak memory grew by {} MiB", grew >> 10);
    // A 16 MiB body read and a 16 MiB inflated copy: about 40 MB; 8M collected elements were 400 MB more.
    assert!(grew < 120 << 10, "peak memory grew by {} MiB", grew >> 10);
    // A positional message, alone, as an NDJSON line and as an element, stores nothing.
    let t = now_ns();
    for body in [
        format!("[{t},\"pos\",[1,2,3,4,5,6,7,8,9,10]]"),
        format!(
            "{}\n[{t},\"pos\",[1,2,3,4,5,6,7,8,9,10]]",
            msg("pos", t + 1, 1.0)
        ),
        format!(
            "[{},[{t},\"pos\",[1,2,3,4,5,6,7,8,9,10]]]",
            msg("pos", t + 2, 1.0)
        ),
    ] {
        refused(
            &c.request("POST", "/save", &[], body.as_bytes()),
            400,
            "not a JSON object",
        );
    }
    assert!(e.export("pos").is_empty());
    assert_eq!(e.terminate(), 0);
}

/// A chunked body of 1-byte chunks sent in small pieces costs the engine about what it costs sent at once:
/// each arriving byte is decoded once. (Every read decoded the body from its start again: 2 MiB sent 2 KiB
/// at a time took 1.6 s of a core, 8x the same body sent at once, and 16 MiB would take minutes.)
#[test]
fn a_chunked_body_trickled_in_small_pieces_is_decoded_once() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0", &[]);
    let t = now_ns();
    let ndjson: String = (0..2500)
        .map(|i| msg("trickle", t + i, i as f64) + "\n")
        .collect();
    let mut enc = Vec::new();
    for b in ndjson.bytes() {
        enc.extend_from_slice(b"1\r\n");
        enc.push(b);
        enc.extend_from_slice(b"\r\n");
    }
    enc.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /save HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    // CPU ticks the engine spends on the body sent with `piece` bytes per write, a pause between writes.
    let cost = |piece: usize, pause: Duration| {
        let mut c = e.connect();
        let before = cpu_ticks(e.child.id());
        c.send(head.as_bytes());
        for p in enc.chunks(piece) {
            c.send(p);
            std::thread::sleep(pause);
        }
        let r = c.read_response();
        assert_eq!(r.status, 204, "{}", r.text());
        cpu_ticks(e.child.id()) - before
    };
    let at_once = cost(enc.len(), Duration::ZERO);
    let trickled = cost(2048, Duration::from_millis(2));
    eprintln!(
        "{} encoded bytes: {at_once} ticks at once, {trickled} in 2 KiB pieces",
        enc.len()
    );
    // Decoding from the start on every read took 150 ticks here; the reads themselves cost a dozen.
    assert!(
        trickled <= 3 * at_once + 50,
        "{trickled} ticks trickled vs {at_once} at once"
    );
    assert_eq!(e.export("trickle").len(), 2500);
    assert_eq!(e.terminate(), 0);
}

/// Chunked bodies under `--max-body` whose framing is larger than the head's allowance: chunks of 256 bytes
/// are stored; chunks of 1 byte (6 bytes on the wire each) get a 413 that says why. (Both were closed
/// without an answer once the buffered request passed max-body + 16 KiB.)
#[test]
fn chunked_framing_past_the_buffer_gets_413_or_is_stored() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0", &["--max-body", "1048576"]);
    let t = now_ns();
    let mut ndjson = String::new();
    let mut n = 0;
    while ndjson.len() < 1_000_000 {
        ndjson.push_str(&(msg("framing", t + n, 1.0) + "\n"));
        n += 1;
    }
    let encode = |size: usize| {
        let mut enc = Vec::new();
        for c in ndjson.as_bytes().chunks(size) {
            enc.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            enc.extend_from_slice(c);
            enc.extend_from_slice(b"\r\n");
        }
        enc.extend_from_slice(b"0\r\n\r\n");
        enc
    };
    let head = "POST /save HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut c = e.connect();
    c.send(head.as_bytes());
    c.send(&encode(256));
    let r = c.read_response();
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(e.export("framing").len() as i64, n);
    let mut c = e.connect();
    c.send(head.as_bytes());
    // The engine answers and closes while the rest is still on its way.
    let enc = encode(1);
    let _ = c.stream.write_all(&enc);
    let r = c.read_response();
    refused(&r, 413, "framing");
    assert_eq!(e.get("/health").status, 200);
    assert_eq!(e.terminate(), 0);
}

/// An export paused by a reader that does not read, while a checkpoint moves the tag's records from memory
/// into its tag file: the export resumes from the file. (It read past an unmapped file and the core
/// panicked: "persisted records read before the tag file was mapped".)
#[test]
fn an_export_stalled_across_a_checkpoint_resumes_from_the_tag_file() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &["--checkpoint-interval", "1s"]);
    let t0 = 1_795_536_000_000_000_000i64;
    let n = 40_000;
    for part in 0..4 {
        let body: String = (0..n / 4)
            .map(|i| message("\"stall\"", &(t0 + part * 1_000_000 + i).to_string(), VALS) + "\n")
            .collect();
        assert_eq!(status(&e, body.as_bytes()), 204);
    }
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&e.addr.parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    let mut s: std::net::TcpStream = s.into();
    s.write_all(
        b"GET /export?tag=stall&start=0&end=9223372036854775807 HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    // Past two checkpoint intervals with the export paused.
    std::thread::sleep(Duration::from_secs(3));
    let mut c = Conn {
        reader: std::io::BufReader::new(s.try_clone().unwrap()),
        stream: s,
    };
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text().lines().count(), n as usize);
    assert_eq!(e.get("/health").status, 200);
    assert_eq!(e.terminate(), 0, "no core panicked");
}
