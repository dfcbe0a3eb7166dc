//! Any bytes: the chunked decoder never panics, never exceeds the body limit, and a complete body
//! consumed no more than the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tickcore::http::parse::decode_chunked;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if let Ok(Some(n)) = decode_chunked(data, 4096, &mut out) {
        assert!(n <= data.len());
        assert!(out.len() <= 4096);
    }
});
