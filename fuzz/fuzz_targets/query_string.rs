//! Any query string: parsing never panics and an accepted window is well-formed.
//! The property lives in `tickcore::fuzzcheck::query_string`, which `tests/fuzz_corpus.rs` also replays over the seeds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tickcore::fuzzcheck::query_string(data));
