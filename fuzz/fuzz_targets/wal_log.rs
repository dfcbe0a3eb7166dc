//! Any bytes as a write-ahead log: the scanner never panics, commits are block-aligned with consecutive
//! sequence numbers, and entry parsing of a checksummed payload never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tickcore::store::wal;

fuzz_target!(|data: &[u8]| {
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
});
