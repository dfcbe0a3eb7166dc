//! Any bytes as a replicated batch (cluster mode): decoding never panics, and what decodes is canonical.
//! The property lives in `tickcore::fuzzcheck::replicated_batch`, which `tests/fuzz_corpus.rs` also replays.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tickcore::fuzzcheck::replicated_batch(data));
