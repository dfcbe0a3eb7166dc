//! A checkpoint's budget (`--checkpoint-budget`): past it, the tag files it did not write wait for a later
//! checkpoint, their records in memory and their log generations held. Nothing acknowledged may be lost
//! across `kill -9` or a clean stop while tag files wait their turn, the unwritten files are written by later
//! checkpoints (those waiting four generations first, oldest first), no checkpoint writes past its budget
//! however long files have waited, the log sheds writes at `--max-log-mib` instead of growing, and it shrinks
//! back once the files are written.

mod common;

use common::*;
use std::time::{Duration, Instant};

const TAGS: usize = 600;

fn tag_files(dir: &std::path::Path) -> usize {
    walk(&dir.join("seg"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rec"))
        .count()
}

/// Writes round `r`: one record for every tag, 100 tags per POST.
fn write_round(e: &Engine, base: i64, r: usize) {
    for chunk in (0..TAGS).collect::<Vec<_>>().chunks(100) {
        let body: Vec<String> = chunk
            .iter()
            .map(|&k| {
                msg(
                    &format!("b{k}"),
                    base + r as i64 * 1_000_000,
                    (r * 10_000 + k) as f64,
                )
            })
            .collect();
        assert_eq!(e.post(&body.join("\n")).status, 204);
    }
}

fn check_all(e: &Engine, base: i64, rounds: usize) {
    for k in 0..TAGS {
        let got = e.export(&format!("b{k}"));
        let want: Vec<(i64, f64)> = (0..rounds)
            .map(|r| (base + r as i64 * 1_000_000, (r * 10_000 + k) as f64))
            .collect();
        let got: Vec<(i64, f64)> = got.iter().map(|(t, v)| (*t, v[0])).collect();
        assert_eq!(got, want, "tag b{k}");
    }
}

/// Log generation files (held, live, and the next one prepared).
fn logs(dir: &std::path::Path) -> usize {
    walk(&dir.join("wal"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .count()
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "waited {secs} s for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Flags for a checkpoint every `interval` that writes one chunk of 50 tag files, whatever is waiting.
fn one_chunk_a_checkpoint<'a>(interval: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut flags = vec![
        "--checkpoint-budget",
        "0s",
        "--checkpoint-chunk-files",
        "50",
        "--checkpoint-interval",
        interval,
    ];
    flags.extend_from_slice(more);
    flags
}

#[test]
fn deferred_records_survive_kill9_and_reach_their_files_later() {
    let d = tempfile::tempdir().unwrap();
    let flags = one_chunk_a_checkpoint("100ms", &[]);
    let e = start(d.path(), "0", &flags);
    let base = now_ns() - 3_600_000_000_000;
    write_round(&e, base, 0);
    // One chunk of 50 files per checkpoint: the first checkpoints defer most of the 600.
    wait_for("a deferring checkpoint", 30, || {
        metric_sum(&e, "tickcore_checkpoint_deferred_total", "") >= 1.0
    });
    write_round(&e, base, 1);
    let files = tag_files(d.path());
    assert!(files < TAGS, "{files} tag files: nothing left to defer");
    check_all(&e, base, 2);
    e.kill9();

    // Recovery writes what the logs held; every acknowledged record is there.
    let e = start(d.path(), "0", &flags);
    check_all(&e, base, 2);
    write_round(&e, base, 2);
    // Later checkpoints write the rest, one chunk each; with no writes coming in they add no generation:
    // the log holds the generations held before, the live one and the one prepared next.
    wait_for("every tag file", 60, || {
        let n = logs(d.path());
        assert!(n <= 6, "{n} log generations");
        tag_files(d.path()) == TAGS
    });
    wait_for("the log to empty", 60, || {
        metric_sum(&e, "tickcore_log_bytes", "") <= 64.0 * 1024.0
    });
    check_all(&e, base, 3);
    assert_eq!(e.terminate(), 0);

    // A clean stop writes every file (no budget at shutdown); a restart serves the same.
    let e = start(d.path(), "0", &flags);
    check_all(&e, base, 3);
    assert_eq!(e.terminate(), 0);
    let (code, out) = verify_dir(d.path());
    assert_eq!(code, 0, "{out}");
}

/// Without the flag the budget is half of `--checkpoint-interval` (`auto`): one file per step and a 10 ms
/// budget cannot write 600 new files in one checkpoint, so some wait. `off` writes every dirty file in
/// every checkpoint, whatever it takes: nothing is ever deferred.
#[test]
fn the_default_budget_is_half_the_interval_and_off_defers_nothing() {
    let base = now_ns() - 3_600_000_000_000;
    for (budget, defers) in [(None, true), (Some("off"), false)] {
        let d = tempfile::tempdir().unwrap();
        let mut flags = vec![
            "--checkpoint-chunk-files",
            "1",
            "--checkpoint-interval",
            "20ms",
        ];
        if let Some(b) = budget {
            flags.extend(["--checkpoint-budget", b]);
        }
        let e = start(d.path(), "0", &flags);
        write_round(&e, base, 0);
        wait_for("every tag file", 60, || tag_files(d.path()) == TAGS);
        let deferred = metric_sum(&e, "tickcore_checkpoint_deferred_total", "");
        assert_eq!(
            deferred > 0.0,
            defers,
            "budget {budget:?}: {deferred} deferred"
        );
        check_all(&e, base, 1);
        assert_eq!(e.terminate(), 0);
    }
}

/// Tag files left waiting while writes keep coming: no checkpoint writes more than its one chunk however
/// long the files have waited (the old rule wrote every file waiting four generations, whatever that took),
/// so the held generations grow instead, and at `--max-log-mib` (each held generation counted at its 64 MiB
/// preallocation at least) writes are shed with 503 and a JSON reason until checkpoints catch up. Every
/// acknowledged record reaches its file; the log then empties.
#[test]
fn no_checkpoint_runs_past_its_budget_and_the_log_sheds_at_its_bound() {
    let d = tempfile::tempdir().unwrap();
    let flags = one_chunk_a_checkpoint("50ms", &["--max-log-mib", "512"]);
    let e = start(d.path(), "0", &flags);
    let base = now_ns() - 3_600_000_000_000;
    let mut acked: Vec<Vec<(i64, f64)>> = vec![Vec::new(); TAGS];
    let (mut shed, mut most_logs) = (0, 0);
    let began = Instant::now();
    for r in 0.. {
        if shed >= 20 || began.elapsed() > Duration::from_secs(20) {
            break;
        }
        for chunk in (0..TAGS).collect::<Vec<_>>().chunks(100) {
            let t = base + r as i64 * 1_000_000;
            let v = |k: usize| (r * 10_000 + k) as f64;
            let body: Vec<String> = chunk
                .iter()
                .map(|&k| msg(&format!("b{k}"), t, v(k)))
                .collect();
            let resp = e.post(&body.join("\n"));
            match resp.status {
                204 => chunk.iter().for_each(|&k| acked[k].push((t, v(k)))),
                503 => {
                    let why = resp.json()["error"].as_str().unwrap_or("").to_string();
                    assert!(why.contains("--max-log-mib 512"), "{}", resp.text());
                    shed += 1;
                }
                s => panic!("{s} {}", resp.text()),
            }
        }
        most_logs = most_logs.max(logs(d.path()));
        let held = metric_sum(&e, "tickcore_log_bytes", "");
        assert!(
            held <= (576 << 20) as f64,
            "the log passed its bound: {held}"
        );
    }
    assert!(shed >= 20, "never shed in 20 s: {shed} requests refused");
    // Eight held generations reach the bound; with the live one and the one prepared next, ten files.
    assert!(most_logs <= 10, "{most_logs} log generation files");
    let most = metric_sum(&e, "tickcore_checkpoint_files_max", "");
    assert!(
        most <= 50.0,
        "a checkpoint with a budget of one chunk of 50 wrote {most} files"
    );
    assert!(metric_sum(&e, "tickcore_checkpoint_deferred_total", "") > 0.0);
    wait_for("every tag file", 60, || tag_files(d.path()) == TAGS);
    wait_for("the log to empty", 60, || {
        metric_sum(&e, "tickcore_log_bytes", "") <= 64.0 * 1024.0
    });
    // Writes are taken again.
    assert_eq!(e.post(&msg("b0", base - 1, 0.5)).status, 204);
    acked[0].insert(0, (base - 1, 0.5));
    for (k, want) in acked.iter().enumerate() {
        let got: Vec<(i64, f64)> = e
            .export(&format!("b{k}"))
            .iter()
            .map(|(t, v)| (*t, v[0]))
            .collect();
        assert_eq!(&got, want, "tag b{k}");
    }
    assert_eq!(e.terminate(), 0);
    let (code, out) = verify_dir(d.path());
    assert_eq!(code, 0, "{out}");
}

/// A log at its bound starts a checkpoint within a second whatever `--checkpoint-interval` (once it waited for
/// the interval, shedding every write meanwhile): with an hour's interval and a 1 MiB bound, writes are shed,
/// then taken again within seconds, and every acknowledged record is kept.
#[test]
fn a_log_at_its_bound_checkpoints_without_waiting_for_the_interval() {
    let d = tempfile::tempdir().unwrap();
    let e = start(
        d.path(),
        "0",
        &["--checkpoint-interval", "1h", "--max-log-mib", "1"],
    );
    let base = now_ns() - 3_600_000_000_000;
    let (mut acked, mut t) = (Vec::new(), base);
    let mut post = |t: &mut i64| {
        // 500 records a request: about 50 KiB of log each.
        let times: Vec<i64> = (*t..*t + 500).collect();
        *t += 500;
        let body: Vec<String> = times.iter().map(|&x| msg("bound", x, 1.0)).collect();
        let r = e.post(&body.join("\n"));
        match r.status {
            204 => {
                acked.extend(times);
                true
            }
            503 => {
                let why = r.json()["error"].as_str().unwrap_or("").to_string();
                assert!(why.contains("--max-log-mib 1"), "{}", r.text());
                false
            }
            s => panic!("{s} {}", r.text()),
        }
    };
    let mut shed = 0;
    while post(&mut t) {
        assert!(
            t - base < 200_000,
            "never shed: the log grew past its bound"
        );
    }
    shed += 1;
    let refused_at = Instant::now();
    while !post(&mut t) {
        shed += 1;
        assert!(
            refused_at.elapsed() < Duration::from_secs(10),
            "writes still shed {:?} after the log reached its bound",
            refused_at.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(shed >= 1);
    assert!(metric_sum(&e, "tickcore_log_bytes", "") < (1 << 20) as f64);
    let got: Vec<i64> = e.export("bound").iter().map(|(t, _)| *t).collect();
    assert_eq!(got, acked);
    assert_eq!(e.terminate(), 0);
}
