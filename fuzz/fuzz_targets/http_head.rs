//! Any bytes: the head parser returns a head, "incomplete" or an error status; it never panics, and a
//! parsed head's length and query range lie inside the input.
//! The property lives in `tickcore::fuzzcheck::http_head`, which `tests/fuzz_corpus.rs` also replays over the seeds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tickcore::fuzzcheck::http_head(data));
