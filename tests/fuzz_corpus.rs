//! Replays every committed seed (`fuzz/seeds/<target>/`) and any local fuzzing corpus (`fuzz/corpus/<target>/`,
//! not committed) through the property each fuzz target checks, so CI checks the corpora without fuzzing.
//! The seeds must also exercise the parsers' interesting outcomes, not only "no panic": a few are pinned.
use std::path::Path;

use tickcore::fuzzcheck::TARGETS;

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn every_seed_and_corpus_file_keeps_its_target_property() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, check) in TARGETS {
        let seeds = files(&root.join("seeds").join(name));
        assert!(
            seeds.len() >= 5,
            "{name}: at least 5 committed seeds, found {}",
            seeds.len()
        );
        for f in seeds
            .iter()
            .chain(files(&root.join("corpus").join(name)).iter())
        {
            let data = std::fs::read(f).unwrap();
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                panic!("{name}: property broken by {}", f.display());
            }
        }
    }
}

#[test]
fn seeds_reach_the_outcomes_they_are_named_for() {
    let seed = |t: &str, n: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/seeds")
                .join(t)
                .join(n),
        )
        .unwrap()
    };
    let mut out = Vec::new();
    assert!(tickcore::ingest::decode::decode_body(&seed("save_body", "ndjson"), &mut out).is_ok());
    assert_eq!(out.len(), 3);
    out.clear();
    assert!(
        tickcore::ingest::decode::decode_body(&seed("save_body", "non_finite"), &mut out).is_err()
    );
    // Nesting past the limit is refused for its depth, wherever it sits; at the limit for what it is.
    for n in [
        "deep_arrays_50k",
        "deep_objects_20k",
        "deep_in_values",
        "deep_unknown_field",
        "deep_ndjson_line2",
        "deep_array_element",
        "past_the_limit",
    ] {
        let e = tickcore::ingest::decode::decode_body(&seed("save_body", n), &mut Vec::new())
            .expect_err(n);
        assert_eq!(e.reason, "nesting deeper than 128", "{n}");
    }
    let e =
        tickcore::ingest::decode::decode_body(&seed("save_body", "at_the_limit"), &mut Vec::new())
            .expect_err("at_the_limit");
    assert!(!e.reason.contains("nesting"), "{e:?}");
    let e = tickcore::ingest::decode::decode_body(
        &seed("save_body", "brackets_in_strings"),
        &mut Vec::new(),
    )
    .expect_err("an unknown field");
    assert!(
        e.reason.contains("unknown field"),
        "brackets in strings are no nesting: {e:?}"
    );
    {
        use tickcore::ingest::lineproto::{decode, Mapping, Precision};
        let map = Mapping::new("tag", &Mapping::default_fields()).unwrap();
        let lp = |n: &str, out: &mut Vec<_>| {
            decode(&seed("line_protocol", n), &map, Precision::Ns, 1, out)
        };
        let mut out = Vec::new();
        assert!(lp("escapes", &mut out).is_ok());
        assert_eq!(out[0].tag, "a b,c=d");
        assert!(lp("ints_no_time", &mut out).is_ok());
        assert_eq!(lp("bad_second_line", &mut Vec::new()).unwrap_err().line, 2);
        assert!(lp("string_value", &mut Vec::new()).is_err());
    }
    let commits = |n: &str| tickcore::store::wal::scan(&seed("wal_log", n)).0.len();
    assert_eq!(commits("two_commits"), 2, "the generated log validates");
    assert_eq!(commits("torn_tail"), 2, "a torn third commit is dropped");
    assert_eq!(
        commits("bad_checksum"),
        0,
        "a bad first checksum ends the log"
    );
    // The seeds are built by fuzz/make_seeds.py, not by the codec: they check it against the documented format.
    let batch = |n: &str| tickcore::cluster::batch::decode(&seed("replicated_batch", n));
    let two = batch("two_entries").expect("two_entries");
    assert_eq!(two.entries.len(), 2);
    assert_eq!(two.entries[1].0, "héllo wörld 🙂");
    assert_eq!(two.id.msg_id(), "1-000000000000feed-0-0");
    assert_eq!(batch("megabytes").expect("megabytes").entries.len(), 11_000);
    assert_eq!(
        batch("one_entry_long_tag").expect("long tag").entries.len(),
        1
    );
    for (n, what) in [
        ("bad_checksum", "checksum mismatch"),
        ("hostile_count", "entry count does not fit the batch"),
        ("truncated", "checksum mismatch"),
    ] {
        assert_eq!(batch(n).expect_err(n).what, what, "{n}");
    }
    assert!(matches!(
        tickcore::http::parse::parse_head(
            &seed("http_head", "post_save_length"),
            16 << 10,
            1 << 20
        ),
        Ok(Some(_))
    ));
    assert!(
        tickcore::http::parse::parse_head(&seed("http_head", "h2_preface"), 16 << 10, 1 << 20)
            .is_err()
    );
}
