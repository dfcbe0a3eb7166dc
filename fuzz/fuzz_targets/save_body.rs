//! Any bytes as a POST /save body: all-or-nothing (an error leaves nothing decoded) and every decoded
//! message is valid (tag 1..=19 characters, finite values).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tickcore::ingest::decode::decode_body;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    match decode_body(data, &mut out) {
        Ok(()) => {
            assert!(!out.is_empty());
            for m in &out {
                assert!(tickcore::tag::validate(&m.tag).is_ok());
                assert!(m.record.all_finite());
            }
        }
        Err(_) => assert!(out.is_empty()),
    }
});
