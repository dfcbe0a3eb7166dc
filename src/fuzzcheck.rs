//! The properties the fuzz targets check, one function per parser, for any input bytes: they panic when a
//! property breaks. `fuzz/fuzz_targets/*` call them under libFuzzer; `tests/fuzz_corpus.rs` replays every seed
//! (`fuzz/seeds/<target>/`) and any local corpus (`fuzz/corpus/<target>/`) through them, so CI checks the
//! corpora without fuzzing. Pure: no I/O, no runtime.

use crate::http::parse::{decode_chunked, parse_head, ChunkedProgress};
use crate::ingest::decode::decode_body;
use crate::query::params::{parse_window, SAMPLES_MAX};
use crate::store::wal;

/// Every target by name, as the fuzz directory names them.
pub const TARGETS: [(&str, fn(&[u8])); 7] = [
    ("http_head", http_head),
    ("chunked_body", chunked_body),
    ("save_body", save_body),
    ("query_string", query_string),
    ("wal_log", wal_log),
    ("line_protocol", line_protocol),
    ("replicated_batch", replicated_batch),
];

/// A replicated batch (cluster mode) decodes only when whole and valid, and is canonical: encoding what it
/// decoded to gives back its bytes.
pub fn replicated_batch(data: &[u8]) {
    use crate::cluster::batch::{decode, Batcher};
    let Ok(b) = decode(data) else {
        return;
    };
    assert!(!b.entries.is_empty());
    for (tag, record) in &b.entries {
        assert!(crate::tag::validate(tag).is_ok());
        assert!(record.all_finite());
    }
    let mut again = Batcher::new(b.id.node, b.id.incarnation, b.id.core, usize::MAX)
        .expect("no size limit")
        .starting_at(b.id.counter);
    let re = again.encode(b.clock, b.entries.iter().map(|(t, r)| (t.as_str(), r)));
    assert_eq!(re.len(), 1);
    assert_eq!(re[0].0, b.id);
    assert_eq!(re[0].1, data);
}

/// A line-protocol body is all-or-nothing (an error leaves nothing decoded and names a line of the body) and
/// every decoded point is a valid message.
pub fn line_protocol(data: &[u8]) {
    use crate::ingest::lineproto::{decode, Mapping, Precision};
    let map = Mapping::new("tag", &Mapping::default_fields()).expect("default mapping");
    let mut out = Vec::new();
    match decode(data, &map, Precision::Ns, 7, &mut out) {
        Ok(()) => {
            assert!(!out.is_empty());
            for m in &out {
                assert!(crate::tag::validate(&m.tag).is_ok());
                assert!(m.record.all_finite());
            }
        }
        Err(e) => {
            assert!(out.is_empty());
            let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
            assert!((1..=lines).contains(&e.line), "line {} of {lines}", e.line);
        }
    }
}

/// The head parser returns a head, "incomplete" or an error status; a parsed head's length and query range
/// lie inside the input, every line of it ends in CRLF, and an HTTP/1.1 head carries a Host header.
pub fn http_head(data: &[u8]) {
    if let Ok(Some(h)) = parse_head(data, 16 << 10, 1 << 20) {
        assert!(h.len <= data.len());
        assert!(h.query.end <= data.len());
        let head = &data[..h.len];
        assert!(head
            .iter()
            .enumerate()
            .all(|(i, &b)| b != b'\n' || (i > 0 && head[i - 1] == b'\r')));
        if h.minor == 1 {
            let lower = head.to_ascii_lowercase();
            assert!(lower.windows(7).any(|w| w == b"\r\nhost:"));
        }
    }
}

/// The chunked decoder never exceeds the body limit, and a complete body consumed no more than the input.
pub fn chunked_body(data: &[u8]) {
    let mut out = Vec::new();
    if let Ok(Some(n)) = decode_chunked(data, 4096, &mut out, &mut ChunkedProgress::default()) {
        assert!(n <= data.len());
        assert!(out.len() <= 4096);
    }
}

/// A POST /save body is all-or-nothing (an error leaves nothing decoded) and every decoded message is valid
/// (tag 1..=19 characters, finite values).
pub fn save_body(data: &[u8]) {
    let mut out = Vec::new();
    match decode_body(data, &mut out) {
        Ok(()) => {
            assert!(!out.is_empty());
            for m in &out {
                assert!(crate::tag::validate(&m.tag).is_ok());
                assert!(m.record.all_finite());
            }
        }
        Err(_) => assert!(out.is_empty()),
    }
}

/// An accepted query string is a well-formed window.
pub fn query_string(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(w) = parse_window(s, true) {
            assert!(w.end > w.start);
            assert!((1..=SAMPLES_MAX).contains(&w.samples));
        }
    }
}

/// The log scanner keeps commits block-aligned with consecutive sequence numbers, and entry parsing of any
/// payload never panics.
pub fn wal_log(data: &[u8]) {
    let (commits, end) = wal::scan(data);
    assert!(end <= data.len() + 4096);
    for w in commits.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
    let mut entries = Vec::new();
    for c in &commits {
        assert_eq!(c.offset % 4096, 0);
        let _ = wal::entries(c.payload, &mut entries);
    }
    let _ = wal::entries(data, &mut entries);
}
