//! I/O errors, injected with `--fault-file` (while the file exists, writes fail with the error it names):
//! the requests waiting on a failed write get 507 (disk full) or 503 (other I/O errors), never 204; reads
//! keep working; the failed log is rescanned and left for a new generation, online, and writes resume once
//! the fault is gone. Commits whose data landed although their write failed are never replayed.
mod common;
use common::*;

use std::path::Path;
use std::time::{Duration, Instant};

fn engine(dir: &Path, fault: &Path) -> Engine {
    let f = fault.to_str().unwrap();
    start(
        dir,
        "0",
        &["--fault-file", f, "--checkpoint-interval", "300ms"],
    )
}

/// POSTs `tag` records until one gets 204 (within 15 s); returns the times acknowledged.
fn until_accepted(e: &Engine, tag: &str, mut t: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = e.post(&msg(tag, t, 0.0));
        if r.status == 204 {
            return t;
        }
        assert!(matches!(r.status, 503 | 507), "{} {}", r.status, r.text());
        assert!(
            Instant::now() < deadline,
            "writes did not resume: {}",
            r.text()
        );
        t += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An engine with a fault file (not there yet) and 20 records of `tag` acknowledged: (dir, engine, base
/// time, the times acknowledged).
fn acknowledged_20(tag: &str) -> (tempfile::TempDir, Engine, i64, Vec<i64>) {
    let d = tempfile::tempdir().unwrap();
    let e = engine(&d.path().join("data"), &d.path().join("fault"));
    let base = now_ns() - 60_000_000_000;
    let acked: Vec<i64> = (0..20).map(|i| base + i).collect();
    for &t in &acked {
        assert_eq!(e.post(&msg(tag, t, 1.0)).status, 204);
    }
    (d, e, base, acked)
}

fn times(e: &Engine, tag: &str) -> Vec<i64> {
    e.export(tag).into_iter().map(|r| r.0).collect()
}

#[test]
fn disk_full_refuses_writes_serves_reads_and_resumes() {
    let (d, e, base, mut acked) = acknowledged_20("io");
    let (fault, data) = (d.path().join("fault"), d.path().join("data"));
    std::fs::write(&fault, "ENOSPC").unwrap();
    for i in 0..5 {
        let r = e.post(&msg("io", base + 100 + i, 2.0));
        assert_eq!(r.status, 507, "{}", r.text());
        assert!(
            r.json()["error"].as_str().unwrap().contains("disk full"),
            "{}",
            r.text()
        );
    }
    let r = e.get(&format!(
        "/api?tag=io&start={}&end={}",
        base,
        base + 600_000_000_000
    ));
    assert_eq!(r.status, 200, "reads are served while writes fail");
    assert_eq!(times(&e, "io"), acked);
    std::fs::remove_file(&fault).unwrap();
    acked.push(until_accepted(&e, "io", base + 300));
    // Another kind of I/O error on the new log: 503; then writes resume again.
    std::fs::write(&fault, "EIO").unwrap();
    let r = e.post(&msg("io", base + 350, 3.0));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.json()["error"].as_str().unwrap().contains("I/O error"),
        "{}",
        r.text()
    );
    std::fs::remove_file(&fault).unwrap();
    acked.push(until_accepted(&e, "io", base + 360));
    for i in 0..10 {
        assert_eq!(e.post(&msg("io", base + 400 + i, 4.0)).status, 204);
        acked.push(base + 400 + i);
    }
    assert_eq!(times(&e, "io"), acked);
    e.kill9();
    let e = start(&data, "0", &[]);
    assert_eq!(
        times(&e, "io"),
        acked,
        "after a restart: exactly what was acknowledged"
    );
    assert_eq!(e.terminate(), 0);
}

#[test]
fn commits_that_landed_but_failed_are_never_replayed() {
    let (d, e, base, mut acked) = acknowledged_20("y");
    let (fault, data) = (d.path().join("fault"), d.path().join("data"));
    // The data reaches the log, then the write reports failure: 503, and the slots are handed out again.
    std::fs::write(&fault, "EIO-AFTER-WRITE").unwrap();
    for i in 0..5 {
        let r = e.post(&msg("x", base + 100 + i, 9.0));
        assert_eq!(r.status, 503, "{}", r.text());
    }
    assert!(times(&e, "x").is_empty());
    // Commits work again, checkpoints do not: the failed log stays on disk, rescanned, beside the new one.
    std::fs::write(&fault, "EIO-TAGFILES").unwrap();
    acked.push(until_accepted(&e, "y", base + 200));
    for i in 0..10 {
        assert_eq!(e.post(&msg("y", base + 300 + i, 2.0)).status, 204);
        acked.push(base + 300 + i);
    }
    let logs = walk(&data)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .count();
    assert!(
        logs >= 2,
        "the failed log was retired although checkpoints fail ({logs} logs)"
    );
    e.kill9();
    std::fs::remove_file(&fault).unwrap();
    let e = start(&data, "0", &[]);
    assert!(
        times(&e, "x").is_empty(),
        "a commit answered 503 was replayed"
    );
    assert_eq!(times(&e, "y"), acked);
    assert_eq!(e.terminate(), 0);
}
