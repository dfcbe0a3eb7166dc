//! Any query string: parsing never panics and an accepted window is well-formed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tickcore::query::params::{parse_window, SAMPLES_MAX};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(w) = parse_window(s, true) {
            assert!(w.end > w.start);
            assert!((1..=SAMPLES_MAX).contains(&w.samples));
        }
    }
});
