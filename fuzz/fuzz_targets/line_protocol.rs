//! Any bytes as a POST /write (InfluxDB line protocol) body: all-or-nothing, the error names a line of the
//! body, and every decoded point is a valid message.
//! The property lives in `tickcore::fuzzcheck::line_protocol`, which `tests/fuzz_corpus.rs` also replays over the seeds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tickcore::fuzzcheck::line_protocol(data));
