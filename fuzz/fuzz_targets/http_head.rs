//! Any bytes: the head parser returns a head, "incomplete" or an error status; it never panics, and a
//! parsed head's length and query range lie inside the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tickcore::http::parse::parse_head;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(h)) = parse_head(data, 16 << 10, 1 << 20) {
        assert!(h.len <= data.len());
        assert!(h.query.end <= data.len());
    }
});
