//! Access tokens against the real binary: writes need a write token and reads a read token (Bearer or
//! Influx's Token scheme), 401 with WWW-Authenticate and a JSON reason otherwise, `/health` and the page
//! stay open, SIGHUP reloads the files (a bad file keeps the tokens in force), and an engine without token
//! files says at start that it is open.
mod common;
use common::*;

use std::time::{Duration, Instant};

fn req(e: &Engine, method: &str, target: &str, auth: Option<&str>, body: &[u8]) -> Response {
    let h = auth.map(|a| format!("Authorization: {a}"));
    let headers: Vec<&str> = h.iter().map(String::as_str).collect();
    e.connect().request(method, target, &headers, body)
}

#[test]
fn routes_need_their_kind_of_token() {
    let d = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (wf, rf) = (files.path().join("write"), files.path().join("read"));
    std::fs::write(&wf, "# writers\nw-one\nw-two\n").unwrap();
    std::fs::write(&rf, "r-one\n").unwrap();
    let e = start(
        d.path(),
        "0,1",
        &[
            "--write-token-file",
            wf.to_str().unwrap(),
            "--read-token-file",
            rf.to_str().unwrap(),
        ],
    );
    assert!(!e
        .stdout
        .iter()
        .any(|l| l.contains("warning: no --write-token-file")));
    let now = now_ns();
    let body = msg("tok", now, 1.0);

    for auth in [
        None,
        Some("Bearer nope"),
        Some("Bearer r-one"),
        Some("Basic w-one"),
        Some("Bearer w-on"),
    ] {
        let r = req(&e, "POST", "/save", auth, body.as_bytes());
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"tickcore\"")
        );
        assert!(r.json()["error"].as_str().unwrap().contains("write token"));
    }
    assert_eq!(
        req(&e, "POST", "/save", Some("Bearer w-one"), body.as_bytes()).status,
        204
    );
    let lp: Vec<String> = (0..10).map(|k| format!("v{k}={k}")).collect();
    let line = format!("m,tag=tok {} {}", lp.join(","), now + 1);
    assert_eq!(req(&e, "POST", "/write", None, line.as_bytes()).status, 401);
    assert_eq!(
        req(
            &e,
            "POST",
            "/api/v2/write",
            Some("Token w-two"),
            line.as_bytes()
        )
        .status,
        204
    );

    let window = format!("tag=tok&start={}&end={}", now - 1_000_000_000, now + 2);
    for target in [
        format!("/api?{window}"),
        format!("/export?{window}"),
        "/tags".into(),
        "/metrics".into(),
    ] {
        let r = req(&e, "GET", &target, None, b"");
        assert_eq!(r.status, 401, "{target}");
        assert!(r.json()["error"].as_str().unwrap().contains("read token"));
        assert_eq!(
            req(&e, "GET", &target, Some("Bearer w-one"), b"").status,
            401,
            "{target}"
        );
        assert_eq!(
            req(&e, "GET", &target, Some("Bearer r-one"), b"").status,
            200,
            "{target}"
        );
    }
    assert_eq!(req(&e, "GET", "/health", None, b"").status, 200);
    assert_eq!(req(&e, "GET", "/", None, b"").status, 200);
    // Nothing of a refused write was stored: the two accepted records only.
    let r = req(
        &e,
        "GET",
        &format!("/export?{window}"),
        Some("Bearer r-one"),
        b"",
    );
    assert_eq!(r.text().lines().count(), 2);
}

#[test]
fn sighup_reloads_the_token_files() {
    let d = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let wf = files.path().join("write");
    std::fs::write(&wf, "old\n").unwrap();
    let e = start(
        d.path(),
        "0,1",
        &["--write-token-file", wf.to_str().unwrap()],
    );
    let body = msg("hup", now_ns(), 1.0);
    let status = |auth: &str| req(&e, "POST", "/save", Some(auth), body.as_bytes()).status;
    assert_eq!(status("Bearer old"), 204);
    assert_eq!(
        req(&e, "GET", "/tags", None, b"").status,
        200,
        "no read file: reads open"
    );

    std::fs::write(&wf, "new\n").unwrap();
    e.signal(1);
    // Every core (each connection may land on either) takes the new set within a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while (0..8).any(|_| status("Bearer new") != 204 || status("Bearer old") != 401) {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the token file"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A file that became unusable keeps the tokens in force.
    std::fs::write(&wf, "# nothing\n").unwrap();
    e.signal(1);
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..8 {
        assert_eq!(status("Bearer new"), 204);
    }
}

#[test]
fn an_open_engine_says_so_and_a_bad_token_file_is_refused_at_start() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0", &[]);
    assert!(
        e.stdout
            .iter()
            .any(|l| l.starts_with("warning: no --write-token-file or --read-token-file")),
        "{:?}",
        e.stdout
    );
    let empty = d.path().join("empty-tokens");
    std::fs::write(&empty, "\n").unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let err = try_start(
        d2.path(),
        "0",
        &["--read-token-file", empty.to_str().unwrap()],
    )
    .err()
    .unwrap();
    assert!(err.contains("holds no token"), "{err}");
}
