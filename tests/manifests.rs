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

/// A start that reads a directory (a new core count) removes the manifests of other counts even when it
/// writes none itself (a lost file there): else a later start with that count would trust a manifest that
/// misses the files written meanwhile, and a write would overwrite one. Every file found that way is
/// checked on first use, an emptied one included.
#[test]
fn reading_a_directory_drops_stale_manifests_and_checks_every_file() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let base = now_ns() - 60_000_000_000;
    let e = start(&data, "0,1", &[]);
    for t in 0..10 {
        let body: Vec<String> = (0..3)
            .map(|k| msg(&format!("o{t}"), base + k, k as f64))
            .collect();
        assert_eq!(e.post(&body.join("\n")).status, 204);
    }
    assert_eq!(e.terminate(), 0);
    let file_of = |tag: &str| {
        let name = format!("{}.rec", tickcore::tag::file_name(tag));
        walk(&data)
            .into_iter()
            .find(|p| p.file_name().unwrap().to_str().unwrap() == name)
            .unwrap()
    };
    // o0's file is lost (its sidecar stays), o1's emptied.
    std::fs::remove_file(file_of("o0")).unwrap();
    std::fs::write(file_of("o1"), b"").unwrap();
    let e = start(&data, "0", &[]);
    for t in 0..10 {
        assert_eq!(e.post(&msg(&format!("n{t}"), base + 7, 7.0)).status, 204);
    }
    for (tag, is) in [("o0", "missing"), ("o1", "0 bytes long")] {
        let r = e.get(&format!(
            "/export?tag={tag}&start={}&end={}",
            i64::MIN,
            i64::MAX
        ));
        assert_eq!(r.status, 500, "{tag}: {}", r.text());
        assert!(r.text().contains(is), "{tag}: {}", r.text());
    }
    assert_eq!(e.terminate(), 0);
    assert_eq!(
        manifests(&data),
        vec![Vec::<String>::new()],
        "no manifest beside a lost file"
    );
    // Two cores again: every tag written under one core is there, none overwritten.
    let e = start(&data, "0,1", &[]);
    for t in 0..10 {
        assert_eq!(e.export(&format!("n{t}")).len(), 1, "n{t}");
        assert_eq!(e.post(&msg(&format!("n{t}"), base + 8, 8.0)).status, 204);
    }
    for t in 2..10 {
        assert_eq!(e.export(&format!("o{t}")).len(), 3, "o{t}");
    }
    assert_eq!(e.terminate(), 0);
    let e = start(&data, "0,1", &[]);
    for t in 0..10 {
        let got: Vec<f64> = e
            .export(&format!("n{t}"))
            .iter()
            .map(|(_, v)| v[0])
            .collect();
        assert_eq!(got, vec![7.0, 8.0], "n{t}");
    }
    assert_eq!(e.terminate(), 0);
}
