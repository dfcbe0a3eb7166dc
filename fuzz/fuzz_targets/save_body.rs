//! Any bytes as a POST /save body: all-or-nothing (an error leaves nothing decoded) and every decoded
//! message is valid (tag 1..=19 characters, finite values).
//! The property lives in `tickcore::fuzzcheck::save_body`, which `tests/fuzz_corpus.rs` also replays over the seeds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tickcore::fuzzcheck::save_body(data));
