//! Runs the real loadgen binary for a few seconds against the real engine binary: a passing verdict under
//! loose SLOs (with --check), and a non-zero exit when an SLO is impossible.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

struct Engine {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn engine_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_loadgen"));
    let profile_dir = exe
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("debug"));
    let bin = profile_dir.join("tickcore");
    if !bin.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "--bin", "tickcore"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(st.success());
    }
    bin
}

fn engine() -> Engine {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(engine_binary())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cpus",
            "0,1",
            "--report-interval",
            "0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("engine exited").unwrap();
        if let Some(rest) = line.strip_prefix("ready: listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Engine {
        child,
        url,
        _dir: dir,
    }
}

fn loadgen(url: &str, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--url",
            url,
            "--rate",
            "2000",
            "--duration",
            "3s",
            "--connections",
            "8",
            "--query-clients",
            "3",
            "--query-rate",
            "4",
            "--report-interval",
            "1s",
        ])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn loose_slos_pass_and_acknowledged_records_read_back() {
    let e = engine();
    let json = tempfile::NamedTempFile::new().unwrap();
    let report = tempfile::NamedTempFile::new().unwrap();
    let (code, out) = loadgen(
        &e.url,
        &[
            "--slo-query-p99-ms",
            "5000",
            "--slo-lag-ms",
            "5000",
            "--check",
            "--json",
            json.path().to_str().unwrap(),
            "--report",
            report.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("SLO query p99") && out.contains("PASS"),
        "{out}"
    );
    assert!(
        out.contains("every acknowledged record of the followed tags reads back exactly"),
        "{out}"
    );
    assert!(
        out.contains("Percentile"),
        "the final percentile tables are printed:\n{out}"
    );
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json.path()).unwrap()).unwrap();
    let acked = j["acked_msgs"].as_u64().unwrap();
    assert!(
        (5_000..=6_100).contains(&acked),
        "about 3 s x 2000 msg/s acknowledged: {acked}"
    );
    assert!(j["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["pass"] == true));
    // The HTML report: four plots drawn (each with lines and axes), the SLOs listed and drawn.
    let page = std::fs::read_to_string(report.path()).unwrap();
    assert_eq!(page.matches("<svg").count(), 4, "four plots");
    for title in [
        "Throughput",
        "Latency per interval",
        "Latency distribution",
        "Lag probe",
    ] {
        assert!(page.contains(title), "{title} missing");
    }
    assert!(
        page.matches("<polyline").count() >= 6,
        "lines drawn in the plots"
    );
    assert!(page.contains("SLO 5000"), "the SLO lines are drawn");
    assert!(page.contains("class=\"pass\""), "verdicts listed");
}

/// The engine's `/tags` total: how many tags it holds.
fn tag_total(url: &str) -> u64 {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /tags?limit=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split("\r\n\r\n").nth(1).expect("a body");
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
    v["total"].as_u64().expect("total")
}

#[test]
fn tags_and_their_distribution_are_chosen() {
    // 6,000 messages drawn uniformly from 50,000 tags reach thousands of tags; drawn geometrically (1 % for
    // tag 0, then 1 % of the rest...), from the same 50,000, a few hundred.
    let uniform = engine();
    let args = [
        "--slo-query-p99-ms",
        "5000",
        "--slo-lag-ms",
        "5000",
        "--tags",
        "50000",
    ];
    let (code, out) = loadgen(
        &uniform.url,
        &[&args[..], &["--tag-distribution", "uniform"]].concat(),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("50000 tags, Uniform"), "{out}");
    let n = tag_total(&uniform.url);
    assert!(
        n > 4_000,
        "uniform over 50,000 tags: {n} tags written\n{out}"
    );
    let geometric = engine();
    let (code, out) = loadgen(&geometric.url, &args);
    assert_eq!(code, 0, "{out}");
    let g = tag_total(&geometric.url);
    assert!(g < 1_500, "geometric: {g} tags written\n{out}");
    let (code, out) = loadgen(&geometric.url, &["--tags", "0"]);
    assert_ne!(code, 0, "{out}");
}

#[test]
fn an_impossible_slo_exits_non_zero() {
    let e = engine();
    let (code, out) = loadgen(&e.url, &["--slo-query-p99-ms", "0.000001", "--batch", "10"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL"), "{out}");
}

#[test]
fn crash_loop_finds_every_acknowledged_record_after_kill_9() {
    let out = Command::new(env!("CARGO_BIN_EXE_crashloop"))
        .arg("--engine")
        .arg(engine_binary())
        .args([
            "--rounds",
            "3",
            "--writers",
            "6",
            "--max-run",
            "400ms",
            "--cpus",
            "0,1;0;1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text.lines().last().unwrap_or_default();
    assert!(last.contains("lost 0, duplicated 0, corrupt 0"), "{text}");
    assert_eq!(text.matches("round ").count(), 3, "{text}");
    // Every restart got the same port back (the default `--listen fixed`), with connections open at the kill.
    let addrs: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("round "))
        .filter_map(|l| l.rsplit(" at ").next())
        .collect();
    assert_eq!(addrs.len(), 1, "{text}");
}

/// With several `--url`s, a connection whose engine stops answering sends its request to the next one after
/// `--failover`: with the first of two engines killed a second into the run, every write is still
/// acknowledged (by the second), none counted as an error.
#[test]
fn several_urls_fail_over_when_an_engine_dies() {
    let (a, b) = (engine(), engine());
    let json = tempfile::NamedTempFile::new().unwrap();
    let pid = a.child.id().to_string();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(1));
        Command::new("kill").args(["-9", &pid]).status().unwrap();
    });
    let urls = format!("{},{}", a.url, b.url);
    let (code, out) = loadgen(
        &urls,
        &[
            "--failover",
            "250ms",
            "--slo-query-p99-ms",
            "5000",
            "--slo-lag-ms",
            "5000",
            "--json",
            json.path().to_str().unwrap(),
        ],
    );
    killer.join().unwrap();
    assert_eq!(code, 0, "{out}");
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json.path()).unwrap()).unwrap();
    let (acked, dispatched) = (
        j["acked_msgs"].as_u64().unwrap(),
        j["dispatched_msgs"].as_u64().unwrap(),
    );
    assert_eq!(acked, dispatched, "{out}");
    assert!(acked >= 5_000, "{acked} acknowledged");
    assert_eq!(j["errors"], serde_json::json!({}), "{out}");
    assert!(tag_total(&b.url) > 0, "the second engine took writes");
}
