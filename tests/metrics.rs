//! `GET /metrics` read by a real Prometheus parser (`prometheus_client`'s text parser, Debian's
//! python3-prometheus-client): the whole exposition parses, histograms are cumulative, and the counters of
//! every core move as requests are made (two cores, so writes are forwarded and a scrape gathers both).
mod common;
use common::*;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        print(json.dumps([s.name, s.labels, s.value, fam.type]))
"#;

/// (sample name, labels, value, family type) of every sample, as the parser read them.
fn scrape(e: &Engine) -> Vec<(String, BTreeMap<String, String>, f64, String)> {
    let r = e.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let mut py = Command::new("/usr/bin/python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (CI installs python3-prometheus-client)");
    py.stdin.take().unwrap().write_all(&r.body).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The sum over cores of the samples named `name` whose labels include `with`.
fn sum(
    samples: &[(String, BTreeMap<String, String>, f64, String)],
    name: &str,
    with: &[(&str, &str)],
) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _, _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
        .sum()
}

#[test]
fn metrics_parse_and_move_with_requests() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &[]);
    let before = scrape(&e);
    let cores: std::collections::BTreeSet<_> = before
        .iter()
        .filter_map(|s| s.1.get("core").cloned())
        .collect();
    assert_eq!(cores.len(), 2, "both cores report: {cores:?}");

    let base = now_ns() - 60_000_000_000;
    let mut c = e.connect();
    let mut bytes = 0;
    for i in 0..30 {
        let body = msg(&format!("m{}", i % 10), base + i, 1.0);
        assert_eq!(c.request("POST", "/save", &[], body.as_bytes()).status, 204);
        bytes += body.len();
    }
    let bulk: Vec<String> = (0..20)
        .map(|i| msg(&format!("m{}", i % 10), base + 100 + i, 2.0))
        .collect();
    let bulk = bulk.join("\n");
    assert_eq!(c.request("POST", "/save", &[], bulk.as_bytes()).status, 204);
    bytes += bulk.len();
    for _ in 0..3 {
        let r = c.request(
            "GET",
            &format!("/api?tag=m1&start={base}&end={}", base + 600_000_000_000),
            &[],
            b"",
        );
        assert_eq!(r.status, 200);
    }
    assert_eq!(c.request("POST", "/save", &[], b"{\"nope\":1}").status, 400);
    // /export streams its answer and is counted like the others.
    let window = format!("start={base}&end={}", base + 600_000_000_000);
    let r = c.request("GET", &format!("/export?tag=m1&{window}"), &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text().lines().count(), 5);
    let r = c.request("GET", &format!("/export?tag=never&{window}"), &[], b"");
    assert_eq!(r.status, 404);

    let after = scrape(&e);
    let delta =
        |name: &str, with: &[(&str, &str)]| sum(&after, name, with) - sum(&before, name, with);
    assert_eq!(
        delta(
            "tickcore_requests_total",
            &[("route", "/save"), ("status", "204")]
        ),
        31.0
    );
    assert_eq!(
        delta(
            "tickcore_requests_total",
            &[("route", "/save"), ("status", "400")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "tickcore_requests_total",
            &[("route", "/api"), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(delta("tickcore_records_ingested_total", &[]), 50.0);
    assert_eq!(delta("tickcore_bytes_ingested_total", &[]), bytes as f64);
    for status in ["200", "404"] {
        assert_eq!(
            delta(
                "tickcore_requests_total",
                &[("route", "/export"), ("status", status)]
            ),
            1.0
        );
    }
    // The scrape before this one counts too: 31 + 1 + 3 + 2 + 1.
    assert_eq!(delta("tickcore_request_duration_seconds_count", &[]), 38.0);
    assert!(
        sum(&after, "tickcore_records_forwarded_total", &[]) > 0.0,
        "10 tags over 2 cores, one connection"
    );
    assert!(sum(&after, "tickcore_commits_total", &[]) >= 1.0);
    assert_eq!(sum(&after, "tickcore_commit_records_total", &[]), 50.0);
    assert_eq!(sum(&after, "tickcore_tags", &[]), 10.0);
    assert!(sum(&after, "tickcore_open_connections", &[]) >= 1.0);
    assert!(
        sum(&after, "tickcore_log_bytes", &[]) >= 4096.0,
        "the commits are in the live logs"
    );
    // Histograms: cumulative buckets ending in +Inf == count, per core.
    for core in &cores {
        let buckets: Vec<f64> = after
            .iter()
            .filter(|s| s.0 == "tickcore_request_duration_seconds_bucket" && s.1["core"] == *core)
            .map(|s| s.2)
            .collect();
        assert_eq!(buckets.len(), 18);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        let count = sum(
            &after,
            "tickcore_request_duration_seconds_count",
            &[("core", core)],
        );
        assert_eq!(*buckets.last().unwrap(), count);
    }
    assert!(after
        .iter()
        .any(|s| s.0 == "tickcore_request_duration_seconds_bucket" && s.3 == "histogram"));
    assert!(after
        .iter()
        .any(|s| s.0 == "tickcore_requests_total" && s.3 == "counter"));

    // After a clean stop everything is in tag files: 10 tags of 5 records, one 4 KiB block each.
    assert_eq!(e.terminate(), 0);
    let e = start(d.path(), "0,1", &[]);
    let restarted = scrape(&e);
    assert_eq!(
        sum(&restarted, "tickcore_tag_file_bytes", &[]),
        10.0 * 4096.0
    );
    assert_eq!(sum(&restarted, "tickcore_tags", &[]), 10.0);
    assert_eq!(e.terminate(), 0);
}
