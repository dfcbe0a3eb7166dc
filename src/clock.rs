//! The wall clock in the engine's unit: nanoseconds since the Unix epoch, as records' times are. Used for
//! retention cutoffs, line protocol points without a time, and unique names at start.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ns since the epoch; 0 for a clock set before 1970.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_2020_and_moves_forward() {
        let a = super::now_ns();
        assert!(a > 1_577_836_800_000_000_000, "{a}");
        assert!(super::now_ns() >= a);
    }
}
