//! Damaged files: a log whose last block is truncated or overwritten at every offset keeps exactly the
//! commits before the damage (and the damaged commit only if its header and payload survived), with the
//! offset reported; a tag file damaged at every offset of its last block is found. The engine starts from
//! its manifests without opening tag files, and a damaged file is found on its tag's first use: every query,
//! export and write of that tag answers 500 naming the file and offset (never serving wrong records: a wrong
//! time by its range, a wrong value by the block checksum in the sidecar), while the other tags are served;
//! a zero-length or missing tag file the manifest and sidecar name is reported the same way.
mod common;
use common::*;

use std::path::Path;
use std::rc::Rc;

use tickcore::record::{Record, RECORD_BYTES};
use tickcore::store::layout::Layout;
use tickcore::store::powerloss::simdisk::{Image, SimDisk};
use tickcore::store::{recovery, tagfile, verify, wal};

const SEG_NS: i64 = 1 << 40;

fn rec(i: u64) -> Record {
    Record {
        time: 1000 + i as i64,
        values: [i as f64 + 0.5; 10],
    }
}

/// A log of three commits (the last one spanning two blocks) and the byte where each commit's payload ends.
fn log() -> (Vec<u8>, Vec<usize>) {
    let (mut bytes, mut ends, mut block, mut next) = (Vec::new(), Vec::new(), Vec::new(), 0u64);
    for (seq, n) in [5u64, 7, 60].into_iter().enumerate() {
        let mut payload = Vec::new();
        for i in next..next + n {
            wal::put_record(&mut payload, "dmg", i, &rec(i));
        }
        next += n;
        wal::frame(seq as u64, &payload, &mut block);
        ends.push(bytes.len() + wal::HEADER_BYTES + payload.len());
        bytes.extend_from_slice(&block);
    }
    bytes.resize(bytes.len() + 4096, 0); // the preallocated zeros after the last commit
    (bytes, ends)
}

/// Recovers a simulated data directory holding only `log_bytes` and returns the tag file's records.
fn recover_log(log_bytes: &[u8]) -> (Vec<Record>, Vec<String>) {
    let mut img = Image::default();
    img.dirs.insert("wal".into());
    img.dirs.insert("seg".into());
    img.link("wal/1-c0-g0.wal", 1);
    img.files
        .entry(1)
        .or_default()
        .write(0, log_bytes, &|_| true);
    let root = Path::new("/d");
    let disk = SimDisk::new(root, Rc::new(img));
    let layout = Layout::new(root);
    let report = recovery::recover_on(&disk, &layout, SEG_NS, i64::MIN, "r").unwrap();
    let records = recovery::read_records(&disk, &layout.tag_file(0, "dmg")).unwrap();
    (records, report.notes)
}

#[test]
fn a_log_damaged_at_every_offset_of_its_last_block_keeps_the_commits_before() {
    let (bytes, ends) = log();
    let last_block = (ends[2] - 1) / 4096 * 4096;
    let all: Vec<Record> = (0..72).map(rec).collect();
    let (intact, _) = recover_log(&bytes);
    assert_eq!(intact, all);
    let mut garbage = bytes.clone();
    for o in last_block..last_block + 4096 {
        // The last commit survives only when its header and payload do.
        let want = if o >= ends[2] { &all[..] } else { &all[..12] };
        let (got, _) = recover_log(&bytes[..o]);
        assert_eq!(got, want, "log truncated at {o}");
        garbage.copy_from_slice(&bytes);
        for (i, b) in garbage[o..last_block + 4096].iter_mut().enumerate() {
            *b = 0xA5 ^ (i as u8).wrapping_mul(31);
        }
        let (got, notes) = recover_log(&garbage);
        assert_eq!(got, want, "log overwritten from {o}");
        if o < ends[2] {
            let at = format!("log ends at offset {}", ends[1].div_ceil(4096) * 4096);
            assert!(notes.iter().any(|n| n.contains(&at)), "{o}: {notes:?}");
        }
    }
}

#[test]
fn a_tag_file_damaged_at_every_offset_of_its_last_block_is_found() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("t.rec");
    let records: Vec<Record> = (0..100).map(rec).collect();
    let (offset, image) = tagfile::block_image(0, &records, 0);
    assert_eq!((offset, image.len()), (0, 12288));
    std::fs::write(&path, &image).unwrap();
    assert_eq!(verify::tag_file_tail(&path, 0, SEG_NS).unwrap(), vec![]);
    let last = image.len() - 4096;
    for o in last..image.len() {
        let mut bad = image.clone();
        for (i, b) in bad[o..].iter_mut().enumerate() {
            *b = 0x5A ^ (i as u8).wrapping_mul(13);
        }
        std::fs::write(&path, &bad).unwrap();
        let found = verify::tag_file_tail(&path, 0, SEG_NS).unwrap();
        assert!(!found.is_empty(), "garbage from {o} not found");
        // Named inside the damaged block (a padding slot just before the garbage counts as a bad record).
        assert!(
            found[0].offset as usize + RECORD_BYTES > last,
            "{o}: {:?}",
            found[0]
        );
        std::fs::write(&path, &image[..o]).unwrap();
        let found = verify::tag_file_tail(&path, 0, SEG_NS).unwrap();
        assert!(!found.is_empty(), "truncation at {o} not found");
    }
}

/// What every use of a damaged tag answers: 500 naming the file and offset, the same for a query, an
/// export and a write, while the other tags are read and written.
fn assert_tag_refused(e: &Engine, tag: &str, t: i64, wants: &[&str]) {
    let api = e.get(&format!(
        "/api?tag={tag}&start={}&end={}",
        t - 1_000_000_000,
        t + 1_000_000_000
    ));
    let export = e.get(&format!(
        "/export?tag={tag}&start={}&end={}",
        i64::MIN,
        i64::MAX
    ));
    let write = e.post(&msg(tag, t + 1000, 5.0));
    for (what, r) in [("api", api), ("export", export), ("write", write)] {
        assert_eq!(r.status, 500, "{tag} {what}: {}", r.text());
        let reason = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(reason.contains("corruption"), "{what}: {reason}");
        for w in wants {
            assert!(reason.contains(w), "{tag} {what}: no {w:?} in {reason}");
        }
    }
}

#[test]
fn a_damaged_tag_file_is_reported_on_first_use_and_the_rest_is_served() {
    let d = tempfile::tempdir().unwrap();
    let base = now_ns() - 60_000_000_000;
    let e = start(d.path(), "0", &[]);
    for (i, tag) in ["good", "bad", "empty", "gone"].iter().enumerate() {
        for k in 0..30 {
            let r = e.post(&msg(tag, base + k, (i * 100 + k as usize) as f64));
            assert_eq!(r.status, 204);
        }
    }
    assert_eq!(e.terminate(), 0);
    let files = walk(d.path());
    let file_of = |tag: &str| {
        let hex = tickcore::tag::file_name(tag);
        files
            .iter()
            .find(|p| p.file_name().unwrap().to_str().unwrap() == format!("{hex}.rec"))
            .unwrap()
            .clone()
    };
    let manifests = |dir: &Path| -> Vec<std::path::PathBuf> {
        walk(dir)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "manifest"))
            .collect()
    };
    assert_eq!(
        manifests(d.path()).len(),
        1,
        "a clean stop leaves the segment's manifest"
    );
    let mut good = 30;
    // A zero-length file and a missing one: the manifest (and the sidecar) say a checkpoint synced records
    // there. The start does not open tag files; the tag's first use finds it and names the file.
    for (tag, is) in [("empty", "0 bytes long"), ("gone", "missing")] {
        let path = file_of(tag);
        let saved = std::fs::read(&path).unwrap();
        match tag {
            "empty" => std::fs::write(&path, b"").unwrap(),
            _ => std::fs::remove_file(&path).unwrap(),
        }
        let e = start(d.path(), "0", &[]);
        assert_tag_refused(
            &e,
            tag,
            base,
            &[&format!("{} at offset 0", path.display()), is],
        );
        assert_eq!(e.export("good").len(), good, "the rest is served");
        assert_eq!(
            e.post(&msg("good", base + 1000 + good as i64, 1.0)).status,
            204
        );
        good += 1;
        assert_eq!(e.export("good").len(), good);
        assert_eq!(
            e.terminate(),
            0,
            "a damaged tag does not fail the checkpoint"
        );
        let (code, text) = verify_dir(d.path());
        assert_eq!(code, 1, "{text}");
        assert!(
            text.contains(&format!("PROBLEM {} at offset 0", path.display())),
            "{text}"
        );
        std::fs::write(&path, saved).unwrap();
    }
    // A wrong time inside the records of a durable file: corruption, found by its implausibility.
    let bad = file_of("bad");
    let clean = std::fs::read(&bad).unwrap();
    let mut bytes = clean.clone();
    let at = 17 * RECORD_BYTES;
    bytes[at..at + 8].copy_from_slice(&7i64.to_le_bytes());
    std::fs::write(&bad, &bytes).unwrap();
    let e = start(d.path(), "0", &[]);
    assert_tag_refused(
        &e,
        "bad",
        base,
        &[&format!("{} at offset {at}", bad.display()), "--verify"],
    );
    assert_eq!(e.export("empty").len(), 30);
    assert_eq!(e.terminate(), 0);
    // A plausible but wrong value (one bit of a float): only the block's checksum in the sidecar sees it.
    let mut bytes = clean.clone();
    bytes[at + 8 + 3] ^= 0x01;
    std::fs::write(&bad, &bytes).unwrap();
    let e = start(d.path(), "0", &["--reads", "dma"]);
    assert_tag_refused(
        &e,
        "bad",
        base,
        &[&format!("{} at offset 0", bad.display()), "checksum"],
    );
    assert_eq!(e.export("gone").len(), 30);
    assert_eq!(e.terminate(), 0);

    // Moved aside with its sidecar, and the manifest removed as the report says: the directory is read
    // at the next start, and the tag is served anew.
    std::fs::rename(&bad, d.path().join("bad.rec.damaged")).unwrap();
    let side = bad.with_extension("crc");
    for m in manifests(d.path()) {
        std::fs::remove_file(m).unwrap();
    }
    // The sidecar alone: the directory read finds its file lost, and serves the other tags.
    let e = start(d.path(), "0", &[]);
    assert_tag_refused(&e, "bad", base, &["missing", "sidecar"]);
    assert_eq!(e.export("good").len(), good);
    assert_eq!(e.terminate(), 0);
    assert!(
        manifests(d.path()).is_empty(),
        "a directory with a lost file gets no manifest"
    );
    std::fs::rename(&side, d.path().join("bad.crc.damaged")).unwrap();
    let e = start(d.path(), "0", &[]);
    let g = e.export("good");
    assert_eq!(g.len(), good);
    assert_eq!(
        g[29],
        (
            base + 29,
            (0..10).map(|i| 29.0 + i as f64).collect::<Vec<_>>()
        )
    );
    assert_eq!(e.export("empty").len(), 30);
    assert_eq!(e.export("gone").len(), 30);
    assert!(e.export("bad").is_empty());
    assert_eq!(e.post(&msg("bad", base + 100, 1.0)).status, 204);
    assert_eq!(e.export("bad").len(), 1);
    assert_eq!(e.terminate(), 0);
    assert_eq!(
        manifests(d.path()).len(),
        1,
        "the directory has its manifest again"
    );
    let (code, text) = verify_dir(d.path());
    assert_eq!(code, 0, "{text}");
}

/// Renames cut half-way, on a real disk. The engine renames three things: `FORMAT.tmp` to `FORMAT` when it
/// creates a directory, a checkpointed log to the spare, and the spare to the next log generation. A
/// rename cut between its two directory entries leaves the file under both names (or the old one only):
/// each such state starts and keeps exactly the acknowledged records. A directory holding data without its
/// `FORMAT` is refused, naming the file (its segment length cannot be guessed).
#[test]
fn half_renamed_files_recover_and_a_lost_format_file_is_refused() {
    // A fresh directory whose creation stopped before `FORMAT.tmp` was renamed.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("FORMAT.tmp"), "tickcore-form").unwrap();
    let e = start(d.path(), "0", &[]);
    assert_eq!(e.terminate(), 0);
    assert!(std::fs::read_to_string(d.path().join("FORMAT"))
        .unwrap()
        .starts_with("tickcore-format "));

    // Data, with checkpoints (so a spare exists) and a live log when killed.
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0", &["--checkpoint-interval", "100ms"]);
    let base = now_ns() - 60_000_000_000;
    let mut acked = Vec::new();
    for round in 0..3i64 {
        for i in 0..40 {
            let t = base + round * 1000 + i;
            assert_eq!(e.post(&msg("hr", t, t as f64)).status, 204);
            acked.push(t);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    for i in 0..25 {
        let t = base + 10_000 + i;
        assert_eq!(e.post(&msg("hr", t, t as f64)).status, 204);
        acked.push(t);
    }
    let wal = d.path().join("wal");
    let logs = |ext: &str| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = walk(&wal)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect();
        v.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
        v
    };
    // The spare: zeroed by a helper thread (slow on a busy disk), or a checkpointed log kept.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while logs("spare").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no spare log was made"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    e.kill9();
    let live = logs("wal").pop().expect("a live log");
    // The spare also under a next generation's name (the spare's rename to the new log, cut).
    let spare = logs("spare").pop().expect("a spare log");
    std::fs::hard_link(&spare, wal.join("0-c0-g999.wal")).unwrap();
    // The live log also under the spare's name (a checkpointed log's rename to the spare, cut).
    std::fs::hard_link(&live, wal.join("0-c0.spare")).unwrap();
    let e = start(d.path(), "0", &[]);
    let got = e.export("hr");
    assert_eq!(
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
        acked,
        "exactly the acknowledged records"
    );
    assert!(got.iter().all(|(t, v)| v[0] == *t as f64));
    assert_eq!(e.terminate(), 0);
    let (code, text) = verify_dir(d.path());
    assert_eq!(code, 0, "{text}");

    // The format file lost from a directory holding data.
    std::fs::remove_file(d.path().join("FORMAT")).unwrap();
    let err = try_start(d.path(), "0", &[])
        .err()
        .expect("started without FORMAT");
    assert!(
        err.contains(&format!("{} is missing", d.path().join("FORMAT").display())),
        "{err}"
    );
}
