//! The power-loss model on a recorded run of the real engine: writers on several connections (single and
//! bulk messages, several tags and segments, out-of-order times) against `--durability sync` with frequent
//! checkpoints, `--trace-io` recording every change to the data directory, then `kill -9`. For every crash
//! point of the trace and many subsets of what was not yet durable there (torn at 512-byte sectors), start-up
//! recovery must leave every record acknowledged by then, exactly, and nothing never written; and recovery
//! cut by a second power loss, then run again, must too. `POWERLOSS_REQUESTS` (per writer, default 40) makes
//! the run longer, `POWERLOSS_NESTED_EVERY` (default 1999) cuts recovery in more states.
mod common;
use common::*;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use tickcore::store::iotrace::{self, Event};
use tickcore::store::powerloss::simdisk::Image;
use tickcore::store::powerloss::{check_recovery, Breadth, Model};

const SEGMENT_NS: i64 = 50_000_000;

/// Runs the writers and returns the trace and the (tag, time, first value) of every 204.
fn recorded_run(dir: &std::path::Path, requests: usize) -> (Vec<Event>, Vec<(String, i64, f64)>) {
    recorded_run_with(dir, requests, &[]).0
}

/// As [`recorded_run`], with more engine flags; also returns how many dirty segments checkpoints deferred.
#[allow(clippy::type_complexity)]
fn recorded_run_with(
    dir: &std::path::Path,
    requests: usize,
    extra: &[&str],
) -> ((Vec<Event>, Vec<(String, i64, f64)>), f64) {
    let data = dir.join("data");
    let trace = dir.join("trace");
    let mut flags = vec![
        "--durability",
        "sync",
        "--segment",
        "50ms",
        "--checkpoint-interval",
        "60ms",
        "--trace-io",
        trace.to_str().unwrap(),
    ];
    flags.extend_from_slice(extra);
    let e = start(&data, "0", &flags);
    let base = now_ns() - 3_600_000_000_000;
    // Let the first spare log be zeroed, so checkpoints recycle logs (renames) during the run.
    std::thread::sleep(Duration::from_millis(800));
    let e = std::sync::Arc::new(e);
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let e = std::sync::Arc::clone(&e);
            std::thread::spawn(move || {
                let mut c = e.connect();
                let mut acked = Vec::new();
                for i in 0..requests {
                    let n = if i % 3 == 0 { 3 } else { 1 };
                    let msgs: Vec<(String, i64, f64)> = (0..n)
                        .map(|j| {
                            let seq = (i * 3 + j) as i64;
                            // Mostly increasing times, every fifth one back in time, across segments.
                            let t =
                                base + seq * 2_000_000 - if seq % 5 == 0 { 7_000_000 } else { 0 };
                            (
                                format!("p{}", (w + i + j) % 6),
                                t,
                                (w * 100_000 + i * 10 + j) as f64,
                            )
                        })
                        .collect();
                    let body: Vec<String> = msgs.iter().map(|(t, ts, v)| msg(t, *ts, *v)).collect();
                    let r = c.request("POST", "/save", &[], body.join("\n").as_bytes());
                    assert_eq!(r.status, 204, "{}", r.text());
                    acked.extend(msgs);
                    std::thread::sleep(Duration::from_millis(4 + (i % 4) as u64));
                }
                acked
            })
        })
        .collect();
    let acked: Vec<(String, i64, f64)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    // Kill while the last checkpoint may still be running (with more flags, after a few more checkpoints:
    // deferring ones write two files each).
    std::thread::sleep(Duration::from_millis(if extra.is_empty() {
        30
    } else {
        400
    }));
    let e = std::sync::Arc::into_inner(e).expect("writers are done");
    let deferred = metric_sum(&e, "tickcore_checkpoint_deferred_total", "");
    e.kill9();
    let mut name = trace.into_os_string();
    name.push(".c0");
    ((iotrace::read(name.as_ref()).unwrap(), acked), deferred)
}

/// The directories `prepare` creates before a core starts.
fn base_image() -> Image {
    let mut img = Image::default();
    img.dirs.insert("wal".into());
    img.dirs.insert("seg".into());
    img
}

#[test]
fn every_crash_point_of_a_recorded_run_recovers_every_acknowledged_record() {
    every_crash_point_recovers(&[]);
}

/// Checkpoints that write two tag files each and leave the rest for later ones, holding their log
/// generations: every crash point still recovers every acknowledged record.
#[test]
fn every_crash_point_recovers_when_checkpoints_hold_generations() {
    every_crash_point_recovers(&["--checkpoint-budget", "0s", "--checkpoint-chunk-files", "2"]);
}

fn every_crash_point_recovers(extra: &[&str]) {
    let requests: usize = std::env::var("POWERLOSS_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let nested_every: usize = std::env::var("POWERLOSS_NESTED_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1999);
    let d = tempfile::tempdir().unwrap();
    let ((events, client_acked), deferred) = recorded_run_with(d.path(), requests, extra);
    if !extra.is_empty() {
        assert!(
            deferred >= 5.0,
            "checkpoints deferred {deferred} segments: too few to test it"
        );
    }
    let base = base_image();
    let model = Model::new(&base, &events, SEGMENT_NS).unwrap();

    // The trace's acknowledgements cover every 204 the writers saw.
    let all = model.acknowledged(model.crash_points() - 1);
    let traced: HashSet<(String, i64, u64)> = all
        .iter()
        .map(|((tag, _, _), r)| (tag.clone(), r.time, r.values[0].to_bits()))
        .collect();
    for (tag, t, v) in &client_acked {
        assert!(
            traced.contains(&(tag.clone(), *t, v.to_bits())),
            "{tag} {t} {v} acknowledged but not traced"
        );
    }
    let kinds = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
    let checkpoint_writes = kinds(|e| matches!(e, Event::Write { dsync: false, .. }));
    assert!(
        checkpoint_writes >= 10,
        "too few checkpoint writes ({checkpoint_writes}) to test them"
    );
    assert!(
        kinds(|e| matches!(e, Event::Rename(..))) >= 1,
        "no log was recycled"
    );

    let (mut states, mut nested_states, mut records) = (0usize, 0usize, 0usize);
    let mut acked_cache: (usize, BTreeMap<_, _>) = (usize::MAX, BTreeMap::new());
    let began = std::time::Instant::now();
    let checked = model
        .walk(&base, Breadth::FULL, |k, disk| {
            if acked_cache.0 != k {
                acked_cache = (k, model.acknowledged(k));
            }
            let must = &acked_cache.1;
            states += 1;
            // Every `nested_every`th state: cut recovery itself at each of its points, recover again.
            let nested = (states % nested_every == 0).then(|| disk.snapshot());
            let c = check_recovery(disk, "first", SEGMENT_NS, must, &model.written)
                .map_err(|e| format!("crash point {k}/{}: {e}", model.crash_points() - 1))?;
            records += c.records;
            if let Some(before) = nested {
                let inner = Model::new(&before, &disk.events(), SEGMENT_NS)?;
                nested_states += inner.walk(&before, Breadth::NARROW, |j, d| {
                    check_recovery(d, "second", SEGMENT_NS, must, &model.written)
                        .map(|_| ())
                        .map_err(|e| format!("crash point {k}, recovery cut at {j}: {e}"))
                })?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checked, states);
    eprintln!(
        "power-loss model ({:.1} s): {} events, {} crash points, {states} states checked ({records} records read back), \
         {nested_states} states of cut recoveries; {} records acknowledged",
        began.elapsed().as_secs_f64(),
        events.len(),
        model.crash_points(),
        all.len()
    );
}

/// Runs the model with the default breadth and returns the first failure.
fn first_failure(events: &[Event]) -> Option<String> {
    let base = base_image();
    let model = Model::new(&base, events, SEGMENT_NS).unwrap();
    model
        .walk(&base, Breadth::FULL, |k, disk| {
            check_recovery(
                disk,
                "first",
                SEGMENT_NS,
                &model.acknowledged(k),
                &model.written,
            )
            .map(|_| ())
        })
        .err()
}

#[test]
fn the_model_catches_an_acknowledgement_before_durability_and_a_missing_directory_sync() {
    let d = tempfile::tempdir().unwrap();
    let (events, _) = recorded_run(d.path(), 15);
    assert_eq!(first_failure(&events), None);

    // Break 1: acknowledge each commit when its write is issued, not when it completed.
    let mut early = Vec::new();
    for e in &events {
        match e {
            Event::Ack(_) => {}
            Event::Write {
                id, dsync: true, ..
            } => {
                early.push(e.clone());
                early.push(Event::Ack(*id));
            }
            _ => early.push(e.clone()),
        }
    }
    let found = first_failure(&early).expect("early acknowledgements must lose records");
    assert!(found.contains("lost"), "{found}");

    // Break 2: new segment directories and tag files never made durable in their directories.
    let mut undone = std::collections::HashSet::new();
    let no_dir_sync: Vec<Event> = events
        .iter()
        .filter(|e| match e {
            Event::DirSync(id, p) if p.starts_with("seg") => {
                undone.insert(*id);
                false
            }
            Event::DirSynced(id) => !undone.contains(id),
            _ => true,
        })
        .cloned()
        .collect();
    let found = first_failure(&no_dir_sync).expect("unsynced directories must lose records");
    // Lost outright, or a hole that makes recovery refuse to start: either way the model saw it.
    assert!(
        found.contains("lost") || found.contains("corruption"),
        "{found}"
    );
}
