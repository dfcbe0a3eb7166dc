//! Any bytes: the chunked decoder never panics, never exceeds the body limit, and a complete body
//! consumed no more than the input.
//! The property lives in `tickcore::fuzzcheck::chunked_body`, which `tests/fuzz_corpus.rs` also replays over the seeds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tickcore::fuzzcheck::chunked_body(data));
