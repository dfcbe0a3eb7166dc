//! Tag-file mappings are bounded (`--max-mapped-files`): a query maps the tag files it reads, and a core that
//! holds more than its share drops its mappings before the next read or write (the files in use map again).
//! Without the bound, reading ~65k distinct tag files exhausted the process's mappings (`vm.max_map_count`):
//! queries failed, then a large allocation aborted the engine.
mod common;
use common::*;

/// Mappings of tag files in the engine's address space now.
fn mapped_tag_files(e: &Engine) -> usize {
    std::fs::read_to_string(format!("/proc/{}/maps", e.pid()))
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(".rec"))
        .count()
}

#[test]
fn reading_more_tag_files_than_the_mapping_bound_stays_exact_and_bounded() {
    let d = tempfile::tempdir().unwrap();
    let flags = ["--max-mapped-files", "20"];
    let base = now_ns() - 60_000_000_000;
    let tags = 120;
    let e = start(d.path(), "0", &flags);
    for t in 0..tags {
        let body: Vec<String> = (0..3)
            .map(|k| msg(&format!("m{t}"), base + k, (t * 10 + k as usize) as f64))
            .collect();
        assert_eq!(e.post(&body.join("\n")).status, 204);
    }
    assert_eq!(e.terminate(), 0);
    // Loaded from the files: every read maps them.
    let e = start(d.path(), "0", &flags);
    let mut most = 0;
    for round in 0..2 {
        for t in 0..tags {
            let got = e.export(&format!("m{t}"));
            let firsts: Vec<f64> = got.iter().map(|(_, v)| v[0]).collect();
            let want: Vec<f64> = (0..3).map(|k| (t * 10 + k) as f64).collect();
            assert_eq!(firsts, want, "m{t} round {round}");
            let r = e.get(&format!("/api?tag=m{t}&start={base}&end={}", base + 3));
            assert_eq!(r.status, 200, "{}", r.text());
            // Writes map too (duplicate admission reads the file).
            assert_eq!(
                e.post(&msg(&format!("m{t}"), base, (t * 10) as f64)).status,
                204
            );
            most = most.max(mapped_tag_files(&e));
        }
    }
    assert!(most <= 22, "{most} tag files mapped at once, bound 20");
    assert!(most >= 10, "{most}: the reads did not map the files");
    assert_eq!(e.terminate(), 0);
}
