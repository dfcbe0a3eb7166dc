//! The built-in page: its files are served with their types and a same-origin-only policy, `/tags` lists
//! what the page offers, and in a real browser (Debian's headless Chromium driven by Python's playwright,
//! `web/test/page.py`) picking a tag draws the expected number of points and the live figures from
//! `/metrics` appear, with no script, console or request error. CI installs Debian's chromium and the pinned
//! `playwright` from PyPI (no browser download, no npm); set PAGE_SCREENSHOT=FILE.png to keep the browser's
//! screenshot.
mod common;
use common::*;

use std::process::Command;

const S: i64 = 1_000_000_000;

#[test]
fn assets_are_served_with_their_types_and_policy() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0", &[]);
    for (path, ty) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/uPlot.iife.min.js", "text/javascript"),
        ("/ui/uPlot.min.css", "text/css"),
    ] {
        let r = e.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(ty), "{path}");
        assert!(r
            .header("content-security-policy")
            .unwrap()
            .contains("default-src 'self'"));
        assert!(!r.body.is_empty());
    }
    assert!(e.get("/").text().contains("/ui/app.js"));
    let r = e.get("/ui/nothing.js");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
    let r = e.connect().request("POST", "/", &[], b"x");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
}

#[test]
fn tags_lists_every_cores_tags_most_records_first() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &[]);
    let t0 = now_ns() - 60 * S;
    // Enough tags that both cores own some; tag k gets k + 1 records.
    for k in 0..12 {
        for i in 0..=k {
            assert_eq!(
                e.post(&msg(&format!("tag-{k}"), t0 + i * S, 1.0)).status,
                204
            );
        }
    }
    let all = e.get("/tags").json();
    assert_eq!(all["total"], 12);
    let listed: Vec<(String, i64)> = all["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tag"].as_str().unwrap().to_string(),
                t["records"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, i64)> = (0..12).rev().map(|k| (format!("tag-{k}"), k + 1)).collect();
    assert_eq!(listed, expected);
    let top = e.get("/tags?limit=2").json();
    assert_eq!(top["total"], 12);
    assert_eq!(top["tags"].as_array().unwrap().len(), 2);
    assert_eq!(top["tags"][0]["tag"], "tag-11");
    for bad in ["/tags?limit=0", "/tags?limit=x", "/tags?tag=a"] {
        let r = e.get(bad);
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].as_str().unwrap().len() > 5);
    }
}

/// Writes the data the browser tests look at: `page-tag`'s first record falls in sample 400's period
/// (sample i ends at start + (i + 1) s), so the as-of answer has values in samples 400..1000: 600 points. A
/// busier tag is listed first, so the test has to pick ours. Returns (start, end).
fn write_page_data(e: &Engine) -> (i64, i64) {
    let start_ns = (now_ns() - 3600 * S) / S * S;
    let end_ns = start_ns + 1000 * S;
    let mut t = start_ns + 400 * S + S / 2;
    let mut n = 0;
    while t <= end_ns {
        let r = e.connect().request(
            "POST",
            "/save",
            &[],
            msg("page-tag", t, n as f64).as_bytes(),
        );
        assert_eq!(r.status, 204);
        t += 7 * S;
        n += 1;
    }
    for i in 0..(n + 20) {
        let r = e.connect().request(
            "POST",
            "/save",
            &[],
            msg("busier", start_ns + i * S, 0.5).as_bytes(),
        );
        assert_eq!(r.status, 204);
    }
    (start_ns, end_ns)
}

/// Runs `web/test/page.py` against `e` and returns what it saw, after checking the drawing.
fn drive_page(e: &Engine, start_ns: i64, end_ns: i64, token: Option<&str>) -> serde_json::Value {
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
    let mut driver = Command::new("python3");
    driver.current_dir(web).args([
        "test/page.py",
        &format!("http://{}", e.addr),
        "page-tag",
        &start_ns.to_string(),
        &end_ns.to_string(),
    ]);
    if let Some(s) = std::env::var("PAGE_SCREENSHOT")
        .ok()
        .filter(|_| token.is_none())
    {
        driver.arg(s);
    }
    if let Some(t) = token {
        driver.env("TOKEN", t);
    }
    let out = driver
        .output()
        .expect("python3 (CI installs playwright with pip)");
    assert!(
        out.status.success(),
        "the browser run failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&out.stdout)));
    eprintln!("{seen}");
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["points"], 600, "{seen}");
    assert_eq!(seen["series"], 10, "{seen}");
    assert!(
        seen["ink"].as_i64().unwrap() > 1000,
        "the chart's canvas is blank: {seen}"
    );
    assert!(
        seen["title"]
            .as_str()
            .unwrap()
            .starts_with("page-tag: 1000 samples"),
        "{seen}"
    );
    assert!(seen["rate"].as_str().unwrap().ends_with("rec/s"), "{seen}");
    assert!(
        seen["url"].as_str().unwrap().contains("tag=page-tag"),
        "{seen}"
    );
    seen
}

#[test]
fn the_page_draws_the_picked_tag_in_a_real_browser() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &[]);
    let (start_ns, end_ns) = write_page_data(&e);
    let api = e
        .get(&format!("/api?tag=page-tag&start={start_ns}&end={end_ns}"))
        .json();
    let with_values = api["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["values"].is_null())
        .count();
    assert_eq!(with_values, 600, "the data this test relies on");
    drive_page(&e, start_ns, end_ns, None);
}

#[test]
fn the_page_asks_for_a_read_token_when_the_engine_needs_one() {
    let d = tempfile::tempdir().unwrap();
    let tokens = d.path().join("read-tokens");
    std::fs::write(&tokens, "page-secret\n").unwrap();
    let data = d.path().join("data");
    let e = start(&data, "0", &["--read-token-file", tokens.to_str().unwrap()]);
    let (start_ns, end_ns) = write_page_data(&e);
    drive_page(&e, start_ns, end_ns, Some("page-secret"));
}
