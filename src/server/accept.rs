//! Failed accepts in a row, and how long to wait after each.

use std::time::{Duration, Instant};

/// Failed accepts in a row (EMFILE when out of descriptors, ENOBUFS, ...): the retry waits twice as long
/// each time, 10 ms to 1 s, so a core out of descriptors neither spins nor floods the log, which gets one
/// line per 10 s at most.
#[derive(Default)]
pub struct AcceptFailures {
    in_a_row: u32,
    unreported: u64,
    reported: Option<Instant>,
}

impl AcceptFailures {
    const FIRST_WAIT: Duration = Duration::from_millis(10);
    const MAX_WAIT: Duration = Duration::from_secs(1);
    const REPORT_EVERY: Duration = Duration::from_secs(10);

    pub fn succeeded(&mut self) {
        self.in_a_row = 0;
    }

    /// How long to wait before the next accept, and the failures to report now (if a report is due).
    pub fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let wait = Self::FIRST_WAIT
            .saturating_mul(1 << self.in_a_row.min(7))
            .min(Self::MAX_WAIT);
        self.in_a_row += 1;
        self.unreported += 1;
        let due = self
            .reported
            .is_none_or(|at| now.duration_since(at) >= Self::REPORT_EVERY);
        if !due {
            return (wait, None);
        }
        self.reported = Some(now);
        (wait, Some(std::mem::take(&mut self.unreported)))
    }
}

#[cfg(test)]
mod accept_tests {
    use super::*;

    #[test]
    pub fn failed_accepts_back_off_and_report_rarely() {
        let mut f = AcceptFailures::default();
        let t = Instant::now();
        let (w, r) = f.failed(t);
        assert_eq!((w, r), (Duration::from_millis(10), Some(1)));
        let waits: Vec<_> = (0..9)
            .map(|i| f.failed(t + Duration::from_millis(i)).0)
            .collect();
        assert_eq!(waits[0], Duration::from_millis(20));
        assert_eq!(waits[5], Duration::from_millis(640));
        assert_eq!(waits[8], Duration::from_secs(1), "capped");
        assert_eq!(
            f.failed(t + Duration::from_secs(5)).1,
            None,
            "one report per 10 s"
        );
        assert_eq!(f.failed(t + Duration::from_secs(10)).1, Some(11));
        f.succeeded();
        assert_eq!(
            f.failed(t + Duration::from_secs(11)).0,
            Duration::from_millis(10)
        );
    }
}
