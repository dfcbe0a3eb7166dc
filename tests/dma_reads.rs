//! `--reads dma` answers `/api` exactly as the as-of model says, for data in tag files (after checkpoints),
//! in memory, and split between both; for a segment whose records arrived out of order (served through mmap);
//! and after a restart, when the order of every loaded segment has to be learned again.
mod common;
use common::*;

/// The naive as-of model: the last record (by arrival) with the greatest time <= t.
fn model(written: &[(i64, f64)], t: i64) -> Option<f64> {
    let mut best: Option<(i64, f64)> = None;
    for &(time, v) in written {
        if time <= t && best.map_or(true, |b| time >= b.0) {
            best = Some((time, v));
        }
    }
    best.map(|b| b.1)
}

fn check(e: &Engine, tag: &str, written: &[(i64, f64)], start: i64, end: i64, samples: i64) {
    let r = e.get(&format!(
        "/api?tag={tag}&start={start}&end={end}&samples={samples}"
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let got = j["samples"].as_array().unwrap();
    assert_eq!(got.len() as i64, samples);
    for (i, s) in got.iter().enumerate() {
        let t = start + (i as i64 + 1) * (end - start) / samples;
        assert_eq!(s["time"].as_i64(), Some(t));
        let want = model(written, t);
        assert_eq!(
            s["values"][0].as_f64(),
            want,
            "{tag} sample {i} at {t} over [{start}, {end})"
        );
    }
}

#[test]
fn dma_reads_answer_as_the_model_from_files_memory_and_after_restart() {
    let d = tempfile::tempdir().unwrap();
    let args = [
        "--reads",
        "dma",
        "--checkpoint-interval",
        "100ms",
        "--read-cache-mib",
        "1",
    ];
    let e = start(d.path(), "0,1", &args);
    let base = now_ns() - 600_000_000_000;
    let mut sorted: Vec<(i64, f64)> = Vec::new();
    let mut shuffled: Vec<(i64, f64)> = Vec::new();
    // Several checkpointed rounds (the tag files grow past many 4 KiB blocks and the cache), with equal
    // times in the sorted tag; a tag whose every 7th record is late.
    for round in 0..5i64 {
        let mut body = Vec::new();
        for i in 0..400i64 {
            let n = round * 400 + i;
            let t = base + (n / 2) * 1_000_000; // pairs of equal times: the later arrival wins
            sorted.push((t, n as f64));
            body.push(msg("dma-sorted", t, n as f64));
            let u = if n % 7 == 6 {
                base + (n - 5) * 1_000_000
            } else {
                base + n * 1_000_000
            };
            shuffled.push((u, n as f64));
            body.push(msg("dma-late", u, -(n as f64)));
        }
        assert_eq!(e.post(&body.join("\n")).status, 204);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let shuffled: Vec<(i64, f64)> = shuffled.into_iter().map(|(t, v)| (t, -v)).collect();
    // A tail still in memory on top of the files.
    let tail: Vec<String> = (2000..2037i64)
        .map(|n| {
            let t = base + n * 1_000_000;
            sorted.push((t, n as f64));
            msg("dma-sorted", t, n as f64)
        })
        .collect();
    assert_eq!(e.post(&tail.join("\n")).status, 204);
    let end_all = base + 2100 * 1_000_000;
    let windows = [
        (base - 5_000_000, end_all, 1000),
        (base + 123_456_789, base + 987_654_321, 777),
        (base + 1_999_000_000, end_all, 50),
        (base - 10_000_000, base - 1, 3),
    ];
    for &(s, en, n) in &windows {
        check(&e, "dma-sorted", &sorted, s, en, n);
        check(&e, "dma-late", &shuffled, s, en, n);
    }
    // Restart: every segment is loaded with an unknown order, learned by the first DMA query.
    e.kill9();
    let e = start(d.path(), "0", &args);
    for &(s, en, n) in &windows {
        check(&e, "dma-sorted", &sorted, s, en, n);
        check(&e, "dma-late", &shuffled, s, en, n);
    }
}
