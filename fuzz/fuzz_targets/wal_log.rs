//! Any bytes as a write-ahead log: the scanner never panics, commits are block-aligned with consecutive
//! sequence numbers, and entry parsing of a checksummed payload never panics.
//! The property lives in `tickcore::fuzzcheck::wal_log`, which `tests/fuzz_corpus.rs` also replays over the seeds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tickcore::fuzzcheck::wal_log(data));
