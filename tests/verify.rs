//! `tickcore --verify`: a data directory written by the engine verifies clean; each kind of damage to a tag
//! file (garbage in a record, garbage in the padding, a cut length) is reported with its file and offset and
//! exit status 1; a running engine's directory is refused (locked).
mod common;

use common::*;

#[test]
fn clean_directories_verify_and_damage_is_named_with_its_offset() {
    let d = tempfile::tempdir().unwrap();
    let e = start(d.path(), "0,1", &["--checkpoint-interval", "100ms"]);
    let base = now_ns() - 1_000_000_000;
    let body: Vec<String> = (0..100).map(|i| msg("v", base + i, i as f64)).collect();
    assert_eq!(e.post(&body.join("\n")).status, 204);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let (code, text) = verify_dir(d.path());
    assert_eq!(code, 1, "a running engine holds the lock: {text}");
    assert!(text.contains("lock") || text.contains("running"), "{text}");
    e.kill9(); // leaves a log behind too

    let (code, text) = verify_dir(d.path());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("verified 1 tag files (100 records)"),
        "{text}"
    );
    assert!(text.contains("valid commits"), "{text}");

    let file = walk_rec(d.path());
    let clean = std::fs::read(&file).unwrap();
    // Garbage inside record 3's values (a NaN).
    let mut bad = clean.clone();
    bad[3 * 88 + 8..3 * 88 + 16].copy_from_slice(&f64::NAN.to_le_bytes());
    std::fs::write(&file, &bad).unwrap();
    let (code, text) = verify_dir(d.path());
    assert_eq!(code, 1);
    assert!(
        text.contains("at offset 264: record 3 is not a valid record"),
        "{text}"
    );
    // Garbage in the padding: in the slot after the last record it reads as a broken record ...
    let mut bad = clean.clone();
    bad[100 * 88 + 5] = 0;
    std::fs::write(&file, &bad).unwrap();
    let (code, text) = verify_dir(d.path());
    assert_eq!(code, 1);
    assert!(
        text.contains("at offset 8800: record 100 is not a valid record"),
        "{text}"
    );
    // ... and in the block's last bytes, which no slot covers, as damaged padding.
    let mut bad = clean.clone();
    let last = bad.len() - 3;
    bad[last] = 0;
    std::fs::write(&file, &bad).unwrap();
    let (code, text) = verify_dir(d.path());
    assert_eq!(code, 1);
    assert!(
        text.contains(&format!(
            "at offset {last}: bytes after the last record are not padding"
        )),
        "{text}"
    );
    // A flipped bit in a value of a full (not the last) block: plausible, found by the block's checksum.
    let mut bad = clean.clone();
    bad[10 * 88 + 20] ^= 0x04;
    std::fs::write(&file, &bad).unwrap();
    let (code, text) = verify_dir(d.path());
    assert_eq!(code, 1);
    assert!(text.contains("at offset 0: block 0 has checksum"), "{text}");
    // A cut length.
    std::fs::write(&file, &clean[..5000]).unwrap();
    let (code, text) = verify_dir(d.path());
    assert_eq!(code, 1);
    assert!(
        text.contains("at offset 5000: length 5000 is not a multiple of 4096"),
        "{text}"
    );
    std::fs::write(&file, &clean).unwrap();
    assert_eq!(verify_dir(d.path()).0, 0);
}

/// The one tag file under `dir`.
fn walk_rec(dir: &std::path::Path) -> std::path::PathBuf {
    let recs: Vec<_> = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "rec"))
        .collect();
    assert_eq!(
        recs.len(),
        1,
        "one tag file under {}: {recs:?}",
        dir.display()
    );
    recs[0].clone()
}
