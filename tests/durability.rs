//! Process-level guarantees: kill -9 loses nothing acknowledged, restarts with another core count serve
//! everything, port 0 is reported, the data directory lock, clean SIGTERM, retention.
mod common;
use common::*;

fn write_n(e: &Engine, tags: usize, n: usize, base: i64) {
    let mut c = e.connect();
    for i in 0..n {
        let body = msg(&format!("k{}", i % tags), base + i as i64, i as f64);
        assert_eq!(c.request("POST", "/save", &[], body.as_bytes()).status, 204);
    }
}

fn count_all(e: &Engine, tags: usize) -> usize {
    (0..tags).map(|t| e.export(&format!("k{t}")).len()).sum()
}

#[test]
fn kill_9_after_acknowledged_writes_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let base = now_ns() - 60_000_000_000;
    let e = start(d.path(), "0,1", &[]);
    write_n(&e, 7, 300, base);
    // A bulk write too, acknowledged just before the kill.
    let bulk: Vec<String> = (0..200)
        .map(|i| msg(&format!("k{}", i % 7), base + 1000 + i, -1.0))
        .collect();
    assert_eq!(e.post(&bulk.join("\n")).status, 204);
    e.kill9();
    let e = start(d.path(), "0,1", &[]);
    assert!(
        e.stdout
            .iter()
            .any(|l| l.starts_with("recovered 500 records")),
        "{:?}",
        e.stdout
    );
    assert_eq!(count_all(&e, 7), 500);
    let k0 = e.export("k0");
    assert_eq!(k0[0], (base, (0..10).map(|i| i as f64).collect::<Vec<_>>()));
    e.kill9();
}

#[test]
fn restart_with_other_core_counts_serves_everything() {
    let d = tempfile::tempdir().unwrap();
    let base = now_ns() - 60_000_000_000;
    let e = start(d.path(), "0,1", &[]);
    write_n(&e, 20, 200, base);
    assert_eq!(e.terminate(), 0);
    let e = start(d.path(), "0", &[]);
    assert_eq!(count_all(&e, 20), 200);
    write_n(&e, 20, 100, base + 10_000);
    e.kill9();
    let e = start(d.path(), "0,1", &[]);
    assert_eq!(count_all(&e, 20), 300);
    assert_eq!(e.terminate(), 0);
}

#[test]
fn port_zero_lock_and_clean_shutdown() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &[]);
    let port: u16 = e.addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);
    assert!(
        e.stdout.iter().filter(|l| l.starts_with("core ")).count() == 2,
        "{:?}",
        e.stdout
    );
    assert_eq!(e.get("/health").status, 200);
    let err = try_start(d.path(), "0", &[])
        .err()
        .expect("a second engine on the same directory must be refused");
    assert!(err.contains("in use"), "{err}");
    // A second engine on a free port but with the same address is refused too (no silent port sharing).
    let d2 = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickcore"))
        .args(["--listen", &e.addr, "--cpus", "0", "--data-dir"])
        .arg(d2.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "second engine on {} must fail",
        e.addr
    );
    write_n(&e, 3, 30, now_ns());
    assert_eq!(e.terminate(), 0);
    assert_eq!(
        std::fs::read_dir(d.path().join("wal")).unwrap().count(),
        0,
        "a clean stop leaves no log to replay"
    );
    let e = start(d.path(), "0", &[]);
    assert_eq!(count_all(&e, 3), 30);
}

#[test]
fn records_older_than_retention_disappear_with_their_files() {
    let d = tempfile::tempdir().unwrap();
    let e = start(
        d.path(),
        "0,1",
        &[
            "--retention",
            "4s",
            "--segment",
            "1s",
            "--checkpoint-interval",
            "500ms",
        ],
    );
    let now = now_ns();
    let r = e.post(&msg("old", now - 10_000_000_000, 1.0));
    assert_eq!(r.status, 400, "older than retention is refused");
    assert!(r.json()["error"].as_str().unwrap().contains("retention"));
    assert_eq!(e.post(&msg("old", now - 1_000_000_000, 1.0)).status, 204);
    assert_eq!(e.post(&msg("new", now + 60_000_000_000, 1.0)).status, 204);
    // Wait for a checkpoint (10 s) so the record is in a tag file, then for retention to drop it.
    let files = |tag: &str| -> usize {
        let name = format!(
            "{}.rec",
            tag.bytes().map(|b| format!("{b:02x}")).collect::<String>()
        );
        walk(&d.path().join("seg"))
            .iter()
            .filter(|p| p.ends_with(&name))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen_file = false;
    loop {
        seen_file |= files("old") > 0;
        if seen_file && files("old") == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not remove the file (seen: {seen_file})"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        e.get(&format!(
            "/api?tag=old&start={}&end={}",
            now - 2_000_000_000,
            now
        ))
        .status,
        404
    );
    assert_eq!(e.export("new").len(), 1);
    // The file's sidecar went with it, and then its segment directory (only `new`'s is left).
    let old_side = format!(
        "{}.crc",
        "old"
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    assert!(
        !walk(&d.path().join("seg"))
            .iter()
            .any(|p| p.ends_with(&old_side)),
        "the sidecar of a removed tag file is left behind"
    );
    let dirs = std::fs::read_dir(d.path().join("seg")).unwrap().count();
    assert_eq!(dirs, 1, "segment directories left behind");
}

#[test]
fn many_checkpoints_of_one_segment_keep_exact_values_across_kill_9() {
    let d = tempfile::tempdir().unwrap();
    let args = ["--checkpoint-interval", "100ms"];
    let base = now_ns() - 60_000_000_000;
    let e = start(d.path(), "0,1", &args);
    let mut expect: Vec<(i64, f64)> = Vec::new();
    // Rounds of writes separated by checkpoints: each rewrites the partial last block of the same files.
    for round in 0..6 {
        let body: Vec<String> = (0..37)
            .map(|i| {
                let n = round * 37 + i;
                // Every 5th record arrives late (out of order).
                let t = if n % 5 == 4 {
                    base + n as i64 - 3
                } else {
                    base + n as i64
                };
                expect.push((t, n as f64));
                msg("cp", t, n as f64)
            })
            .collect();
        assert_eq!(e.post(&body.join("\n")).status, 204);
        std::thread::sleep(std::time::Duration::from_millis(350));
    }
    let check = |e: &Engine| {
        let mut want = expect.clone();
        want.sort_by_key(|x| x.0); // stable: ties keep arrival order
        let got: Vec<(i64, f64)> = e.export("cp").into_iter().map(|(t, v)| (t, v[0])).collect();
        assert_eq!(got, want);
    };
    check(&e);
    e.kill9();
    let e = start(d.path(), "0", &args);
    check(&e);
    assert_eq!(e.terminate(), 0);
    let e = start(d.path(), "0,1", &args);
    check(&e);
}
