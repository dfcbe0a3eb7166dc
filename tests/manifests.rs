//! Manifests (`src/store/manifest.rs`): a start loads each segment's tag files from its core's manifest
//! without reading the directory; a new core count reads the directories once and rebuilds the manifests
//! (removing those of the old count); after `kill -9`, recovery brings them up to date, so the next start
//! again reads them alone; and every start serves exactly what was acknowledged.
mod common;
use common::*;

use std::path::Path;

const DAY: i64 = 86_400_000_000_000;

/// The manifest file names of each segment directory, sorted.
fn manifests(data: &Path) -> Vec<Vec<String>> {
    let mut dirs: Vec<_> = std::fs::read_dir(data.join("seg"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs.iter()
        .map(|d| {
            let mut names: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".manifest"))
                .collect();
            names.sort();
            names
        })
        .collect()
}

/// Every tag's records, by tag.
fn all(e: &Engine, tags: usize) -> Vec<usize> {
    (0..tags)
        .map(|t| e.export(&format!("m{t}")).len())
        .collect()
}

#[test]
fn manifests_follow_the_core_count_and_recovery_after_kill9() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let base = now_ns() - 60_000_000_000;
    let tags = 40;
    let write = |e: &Engine, round: i64| {
        for t in 0..tags {
            for day in [0, 3] {
                let time = base - day * DAY + round;
                assert_eq!(
                    e.post(&msg(&format!("m{t}"), time, round as f64)).status,
                    204
                );
            }
        }
    };
    let e = start(&data, "0", &[]);
    write(&e, 0);
    write(&e, 1);
    let (code, err) = e.terminate_with_stderr();
    assert_eq!(code, 0, "{err}");
    let one = vec!["core0-of1.manifest".to_string()];
    assert_eq!(manifests(&data), vec![one.clone(), one.clone()]);

    // Two cores: no manifest for that count, so each core reads the directories once and writes its own.
    let e = start(&data, "0,1", &[]);
    assert_eq!(all(&e, tags), vec![4; tags]);
    write(&e, 2);
    let (code, err) = e.terminate_with_stderr();
    assert_eq!(code, 0);
    assert!(err.contains("read from their directories"), "{err}");
    let two = vec![
        "core0-of2.manifest".to_string(),
        "core1-of2.manifest".to_string(),
    ];
    assert_eq!(
        manifests(&data),
        vec![two.clone(), two.clone()],
        "the old count's are removed"
    );

    // From the manifests alone; then writes and a kill -9 (the log holds the last records).
    let e = start(&data, "0,1", &[]);
    assert_eq!(all(&e, tags), vec![6; tags]);
    write(&e, 3);
    e.kill9();
    let e = start(&data, "0,1", &[]);
    assert_eq!(all(&e, tags), vec![8; tags], "recovery replayed the log");
    let (code, err) = e.terminate_with_stderr();
    assert_eq!(code, 0);
    assert!(
        !err.contains("read from their directories"),
        "recovery updated the manifests, the start read them: {err}"
    );
    let (code, text) = verify_dir(&data);
    assert_eq!(code, 0, "{text}");

    // Back to one core.
    let e = start(&data, "0", &[]);
    assert_eq!(all(&e, tags), vec![8; tags]);
    assert_eq!(e.terminate(), 0);
    assert_eq!(manifests(&data), vec![one.clone(), one]);
}

/// A manifest that fails its checksums is not trusted: the start reads the directory instead, serves
/// everything, and writes a good one.
#[test]
fn a_damaged_manifest_is_replaced_by_reading_the_directory() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let base = now_ns() - 60_000_000_000;
    let e = start(&data, "0", &[]);
    for t in 0..20 {
        assert_eq!(e.post(&msg(&format!("m{t}"), base, 1.0)).status, 204);
    }
    assert_eq!(e.terminate(), 0);
    let path = walk(&data)
        .into_iter()
        .find(|p| p.extension().is_some_and(|x| x == "manifest"))
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let (code, text) = verify_dir(&data);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("checksum"), "{text}");
    let e = start(&data, "0", &[]);
    assert_eq!(all(&e, 20), vec![1; 20]);
    let (code, err) = e.terminate_with_stderr();
    assert_eq!(code, 0);
    assert!(err.contains("fail their checksum"), "{err}");
    let (code, text) = verify_dir(&data);
    assert_eq!(code, 0, "{text}");
}
