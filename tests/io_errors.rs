//! I/O errors, injected through the live path's storage trait (`src/store/device/`: `--fault-file` wraps
//! the real device in one that fails the operations the file names, while it exists):
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

/// Waits (up to 15 s) until `/metrics` `name` passes `above`; returns its value.
fn metric_above(e: &Engine, name: &str, above: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = metric_sum(e, name, "");
        if v > above {
            return v;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fault in one step of the checkpoint (`plan`, see `src/store/device/faulty.rs`): writes are still acknowledged
/// (the log holds them) and read back, the checkpoint fails and is retried until the fault is gone, then
/// completes; after a kill -9 and a restart exactly the acknowledged records are there, and the directory
/// verifies clean. Records go to a tag file that exists and to a new segment (so a directory is made).
fn checkpoint_fault(plan: &str, checkpoint_fails: bool) {
    let (d, e, base, mut acked) = acknowledged_20("a");
    let (fault, data) = (d.path().join("fault"), d.path().join("data"));
    // Two checkpoints done: the first log is retired (kept as the spare, or removed while the helper
    // makes one), so the next generation may recycle a spare.
    let mut done = metric_above(&e, "tickcore_checkpoints_total", 1.0);
    if !checkpoint_fails {
        // The rename case: wait for the helper's zeroed spare log, so the next generation renames it (it
        // syncs every MiB, and engines starting beside this one on a shared disk can slow it to a crawl).
        let deadline = Instant::now() + Duration::from_secs(120);
        while !walk(&data).iter().any(|p| {
            p.extension().is_some_and(|x| x == "spare")
                && std::fs::metadata(p).is_ok_and(|m| m.len() == 64 << 20)
        }) {
            assert!(Instant::now() < deadline, "no spare log was made");
            std::thread::sleep(Duration::from_millis(50));
        }
        done = metric_sum(&e, "tickcore_checkpoints_total", "");
    }
    std::fs::write(&fault, plan).unwrap();
    let failures = metric_sum(&e, "tickcore_checkpoint_failures_total", "");
    let old_seg = base - 3 * 86_400_000_000_000;
    let mut old = Vec::new();
    for i in 0..10 {
        assert_eq!(e.post(&msg("a", base + 100 + i, 2.0)).status, 204, "{plan}");
        acked.push(base + 100 + i);
        assert_eq!(e.post(&msg("b", old_seg + i, 3.0)).status, 204, "{plan}");
        old.push(old_seg + i);
    }
    if checkpoint_fails {
        metric_above(&e, "tickcore_checkpoint_failures_total", failures);
    } else {
        metric_above(&e, "tickcore_checkpoints_total", done);
        assert_eq!(
            metric_sum(&e, "tickcore_checkpoint_failures_total", ""),
            failures,
            "{plan}: a checkpoint failed"
        );
    }
    let r = e.get(&format!(
        "/api?tag=a&start={base}&end={}",
        base + 600_000_000_000
    ));
    assert_eq!(r.status, 200, "{plan}: reads are served");
    assert_eq!(times(&e, "a"), acked, "{plan}");
    std::fs::remove_file(&fault).unwrap();
    let now = metric_sum(&e, "tickcore_checkpoints_total", "");
    metric_above(&e, "tickcore_checkpoints_total", now);
    for i in 0..5 {
        assert_eq!(e.post(&msg("a", base + 200 + i, 4.0)).status, 204);
        acked.push(base + 200 + i);
    }
    e.kill9();
    let (code, text) = verify_dir(&data);
    assert_eq!(code, 0, "{plan}: {text}");
    let e = start(&data, "0", &[]);
    assert_eq!(times(&e, "a"), acked, "{plan}: after a restart");
    assert_eq!(times(&e, "b"), old, "{plan}: after a restart");
    assert_eq!(e.terminate(), 0);
}

#[test]
fn a_full_disk_during_a_checkpoint_is_retried_without_loss() {
    checkpoint_fault("ENOSPC tag-write", true);
}

#[test]
/// The syncfs makes the checkpoint's tag files and sidecars durable: its failure keeps the log.
fn a_failed_sidecar_append_or_syncfs_is_retried_without_loss() {
    checkpoint_fault("EIO sidecar", true);
    checkpoint_fault("EIO syncfs", true);
}

/// A manifest names the checkpointed counts: until it is durable under its name, the log is kept.
#[test]
fn a_failed_manifest_write_or_rename_is_retried_without_loss() {
    checkpoint_fault("EIO manifest", true);
}

#[test]
fn a_failed_directory_step_is_retried_without_loss() {
    checkpoint_fault("EIO dirs", true);
}

/// Recycling the spare log (a rename) is an optimisation: when it fails, a new log is created instead and
/// the checkpoint completes.
#[test]
fn a_failed_log_rename_falls_back_to_a_new_log() {
    checkpoint_fault("EIO rename", false);
}

/// Opening or creating a file (a log generation, a tag file) goes through the same device: a failed open
/// fails the checkpoint, which is retried without loss once the fault is gone.
#[test]
fn a_failed_file_open_is_retried_without_loss() {
    checkpoint_fault("EIO open", true);
}

/// `--durability async` acknowledges before the log write: while the log is failing, new async writes are
/// refused (503) instead of being acknowledged with nowhere durable to go; once the fault is gone they are
/// taken again, and every acknowledged record survives a restart.
#[test]
fn async_writes_are_refused_while_the_log_fails() {
    let d = tempfile::tempdir().unwrap();
    let (data, fault) = (d.path().join("data"), d.path().join("fault"));
    let f = fault.to_str().unwrap();
    let e = start(
        &data,
        "0",
        &[
            "--fault-file",
            f,
            "--checkpoint-interval",
            "300ms",
            "--durability",
            "async",
        ],
    );
    let base = now_ns() - 60_000_000_000;
    let mut acked = Vec::new();
    for i in 0..5 {
        assert_eq!(e.post(&msg("as", base + i, 1.0)).status, 204);
        acked.push(base + i);
    }
    std::fs::write(&fault, "EIO log-write").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut t = base + 100;
    let refused = loop {
        let r = e.post(&msg("as", t, 2.0));
        match r.status {
            204 => acked.push(t),
            503 => break r,
            s => panic!("{s} {}", r.text()),
        }
        assert!(
            Instant::now() < deadline,
            "async writes were acknowledged while the log failed"
        );
        t += 1;
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        refused.text().contains("log failed a write"),
        "{}",
        refused.text()
    );
    std::fs::remove_file(&fault).unwrap();
    acked.push(until_accepted(&e, "as", base + 1_000));
    assert_eq!(e.terminate(), 0);
    let e = start(&data, "0", &[]);
    assert_eq!(times(&e, "as"), acked);
    assert_eq!(e.terminate(), 0);
}

/// A recycled log generation kept as the spare holds commits checkpointed long ago, with record counts that
/// are stale by the time it is used again. When it is renamed into use and then cannot be opened, it stays
/// behind under a live generation's name: nothing in it may ever be replayed (replaying its counts would cut
/// tag files back), so a retired generation's first block is zeroed before it becomes the spare.
#[test]
fn a_recycled_log_left_behind_by_a_failed_open_replays_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (data, fault) = (d.path().join("data"), d.path().join("fault"));
    let e = engine(&data, &fault);
    let spare_ready = |e: &Engine| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !walk(&data).iter().any(|p| {
            p.extension().is_some_and(|x| x == "spare")
                && std::fs::metadata(p).is_ok_and(|m| m.len() >= 4096)
        }) {
            assert!(Instant::now() < deadline, "no spare log");
            std::thread::sleep(Duration::from_millis(50));
        }
        metric_sum(e, "tickcore_checkpoints_total", "")
    };
    let base = now_ns() - 60_000_000_000;
    let mut acked = Vec::new();
    // The helper's zeroed spare, then a first generation with records of `a`, retired as the next spare.
    let done = spare_ready(&e);
    for i in 0..10 {
        assert_eq!(e.post(&msg("a", base + i, 1.0)).status, 204);
        acked.push(base + i);
    }
    metric_above(&e, "tickcore_checkpoints_total", done);
    spare_ready(&e);
    // The recycled spare is renamed into use, and its open fails.
    std::fs::write(&fault, "EIO open").unwrap();
    let failures = metric_sum(&e, "tickcore_checkpoint_failures_total", "");
    assert_eq!(e.post(&msg("b", base, 1.0)).status, 204);
    metric_above(&e, "tickcore_checkpoint_failures_total", failures);
    std::fs::remove_file(&fault).unwrap();
    // More records of `a`, checkpointed into its tag file, their generation retired.
    for i in 10..20 {
        assert_eq!(e.post(&msg("a", base + i, 2.0)).status, 204);
        acked.push(base + i);
    }
    let now = metric_sum(&e, "tickcore_checkpoints_total", "");
    let now = metric_above(&e, "tickcore_checkpoints_total", now);
    assert_eq!(e.post(&msg("c", base, 1.0)).status, 204);
    metric_above(&e, "tickcore_checkpoints_total", now);
    e.kill9();
    let (code, text) = verify_dir(&data);
    assert_eq!(code, 0, "{text}");
    let e = start(&data, "0", &[]);
    assert_eq!(times(&e, "a"), acked);
    assert_eq!(e.terminate(), 0);
}

/// While checkpoints fail the log cannot be retired: past `--max-log-mib` writes are shed with 503, a JSON
/// reason and Retry-After, instead of growing the log without bound; every acknowledged record stays, and
/// writes resume once a checkpoint retires the held generations.
#[test]
fn a_log_at_its_bound_sheds_writes_until_a_checkpoint_retires_it() {
    let d = tempfile::tempdir().unwrap();
    let (fault, data) = (d.path().join("fault"), d.path().join("data"));
    let f = fault.to_str().unwrap();
    let args = [
        "--fault-file",
        f,
        "--checkpoint-interval",
        "200ms",
        "--max-log-mib",
        "1",
    ];
    let e = start(&data, "0", &args);
    std::fs::write(&fault, "EIO tag-write").unwrap();
    let base = now_ns() - 60_000_000_000;
    let mut acked = Vec::new();
    let mut t = base;
    let refused = loop {
        // 500 records a request: about 50 KiB of log each.
        let times: Vec<i64> = (t..t + 500).collect();
        t += 500;
        let body: Vec<String> = times.iter().map(|&x| msg("big", x, 1.0)).collect();
        let r = e.post(&body.join("\n"));
        match r.status {
            204 => acked.extend(times),
            503 => break r,
            s => panic!("{s} {}", r.text()),
        }
        assert!(
            acked.len() < 200_000,
            "never shed: the log grew past its bound"
        );
    };
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("--max-log-mib 1"),
        "{}",
        refused.text()
    );
    assert_eq!(
        refused.header("retry-after"),
        Some("1"),
        "{:?}",
        refused.headers
    );
    assert!(
        metric_sum(
            &e,
            "tickcore_admission_rejections_total",
            "reason=\"log_full\""
        ) >= 1.0
    );
    let held = metric_sum(&e, "tickcore_log_bytes", "");
    assert!(
        held >= (1 << 20) as f64,
        "the bound counts every held generation: {held}"
    );
    // A held generation counts its 64 MiB preallocation: the first failed checkpoint reaches the bound.
    assert!(
        held < ((64 + 3) << 20) as f64,
        "the log stopped near its bound: {held}"
    );
    // Still shed while the checkpoints keep failing; reads are served. Retries neither add generations
    // nor log their pre-images again: the log stays where it stopped.
    // (The attempt running when the bound was reached may still log its pre-images: let it fail first.)
    std::thread::sleep(Duration::from_millis(500));
    let wal_files = || walk(&data.join("wal")).len();
    let (files, failures) = (
        wal_files(),
        metric_sum(&e, "tickcore_checkpoint_failures_total", ""),
    );
    let settled = metric_sum(&e, "tickcore_log_bytes", "");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(metric_sum(&e, "tickcore_checkpoint_failures_total", "") >= failures + 3.0);
    assert_eq!(
        metric_sum(&e, "tickcore_log_bytes", ""),
        settled,
        "failed retries grew the log"
    );
    assert_eq!(wal_files(), files, "failed retries added log files");
    assert_eq!(e.post(&msg("big", t, 1.0)).status, 503);
    assert_eq!(times(&e, "big"), acked);
    std::fs::remove_file(&fault).unwrap();
    acked.push(until_accepted(&e, "big", t + 1));
    assert_eq!(times(&e, "big"), acked);
    e.kill9();
    let (code, text) = verify_dir(&data);
    assert_eq!(code, 0, "{text}");
    let e = start(&data, "0", &args);
    assert_eq!(times(&e, "big"), acked, "after a restart");
    assert_eq!(e.terminate(), 0);
}
