//! Safe retries against the real binary: a record equal to one already stored or still in flight (same
//! tag, time and value bits) is stored once, whether the retry comes at once, concurrently, after a
//! checkpoint moved the original into its tag file, after a restart, or into a segment that received
//! records out of time order; records with the same time and other values are all kept (the later wins in
//! /api). Under both durability modes.
mod common;
use common::*;

use std::sync::Arc;

const S: i64 = 1_000_000_000;

fn dedup_count(e: &Engine) -> f64 {
    metric_sum(e, "tickcore_records_deduplicated_total", "core=")
}

fn check_retries(durability: &str) {
    let d = tempfile::tempdir().unwrap();
    let args = ["--durability", durability, "--checkpoint-interval", "200ms"];
    let e = start(d.path(), "0,1", &args);
    let t0 = now_ns() - 600 * S;
    // A retry at once, and the same time with other values (kept, the later wins).
    for _ in 0..3 {
        assert_eq!(e.post(&msg("r", t0, 1.0)).status, 204);
    }
    assert_eq!(e.post(&msg("r", t0, 2.0)).status, 204);
    let got = e.export("r");
    assert_eq!(got.len(), 2, "{got:?}");
    let api = e
        .get(&format!(
            "/api?tag=r&start={}&end={}&samples=1",
            t0 - S,
            t0 + S
        ))
        .json();
    assert_eq!(api["samples"][0]["values"][0], 2.0);
    // -0.0 and 0.0 differ in their bits: both kept.
    let zero = |z: &str| {
        format!(
            r#"{{"time":{},"tag":"z","values":[{z},1,1,1,1,1,1,1,1,1]}}"#,
            t0
        )
    };
    assert_eq!(e.post(&zero("0.0")).status, 204);
    assert_eq!(e.post(&zero("-0.0")).status, 204);
    assert_eq!(e.post(&zero("0.0")).status, 204);
    assert_eq!(e.export("z").len(), 2);

    // A bulk body repeating itself and earlier records.
    let body = [
        msg("b", t0, 1.0),
        msg("b", t0 + S, 1.0),
        msg("b", t0, 1.0),
        msg("r", t0, 1.0),
    ]
    .join("\n");
    assert_eq!(e.post(&body).status, 204);
    assert_eq!(e.export("b").len(), 2);
    assert_eq!(e.export("r").len(), 2);

    // Concurrent retries of one record (each sent while the others are in flight): stored once.
    let e = Arc::new(e);
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let e = Arc::clone(&e);
            std::thread::spawn(move || {
                for i in 0..20 {
                    assert_eq!(e.post(&msg("c", t0 + i * S, 3.0)).status, 204);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(e.export("c").len(), 20);

    // Out of time order, then retries of old records once the checkpoint moved them into the tag file.
    for i in [5, 3, 9, 1, 7] {
        assert_eq!(e.post(&msg("o", t0 + i * S, i as f64)).status, 204);
    }
    std::thread::sleep(std::time::Duration::from_millis(600));
    for i in [1, 9, 3] {
        assert_eq!(e.post(&msg("o", t0 + i * S, i as f64)).status, 204);
    }
    assert_eq!(e.export("o").len(), 5);
    let counted = dedup_count(&e);
    // 2 + 1 + 2 (bulk) + 16 * 20 - 20 (concurrent) + 3 (out of order)
    assert_eq!(counted, (2 + 1 + 2 + 300 + 3) as f64);

    // After a restart (segment order not yet learned): still stored once.
    let e = Arc::try_unwrap(e).ok().expect("threads joined");
    assert_eq!(e.terminate(), 0);
    let e = start(d.path(), "0,1", &args);
    assert_eq!(e.post(&msg("r", t0, 1.0)).status, 204);
    assert_eq!(e.post(&msg("o", t0 + 7 * S, 7.0)).status, 204);
    assert_eq!(e.export("r").len(), 2);
    assert_eq!(e.export("o").len(), 5);
    assert_eq!(dedup_count(&e), 2.0);
}

#[test]
fn retries_are_stored_once_under_sync_durability() {
    check_retries("sync");
}

#[test]
fn retries_are_stored_once_under_async_durability() {
    check_retries("async");
}
