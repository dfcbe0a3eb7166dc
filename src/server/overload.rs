//! Load shedding. A core is *saturated* when its executor falls behind: a probe task asks to wake every
//! millisecond and measures how late it actually runs, which is how long every other task on the core
//! (requests included) waits for its turn. While that delay is above `--shed-lag`, new writes get `503` with
//! `Retry-After: 1` before their body is decoded, so the requests already admitted keep their latency and
//! nothing queues without bound; queries are still answered. The commit pipeline is bounded separately
//! (`--max-pending-records`, in `store/shard.rs`).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::store::StoreError;

const PROBE_EVERY: Duration = Duration::from_millis(1);
/// Consecutive late probes that make a core saturated: one long stall (a directory fsync, a large bulk
/// body) is not saturation, and shedding the requests queued behind it would only turn delay into errors.
const LATE_PROBES: u32 = 3;

pub struct Overload {
    limit: Duration,
    /// The latest probe's delay.
    lag: Cell<Duration>,
    saturated: Cell<bool>,
    /// Consecutive probes over the limit.
    late: Cell<u32>,
    /// Writes shed since the last console line.
    pub shed: Cell<u64>,
    /// Writes shed since the start.
    pub shed_total: Cell<u64>,
}

impl Overload {
    /// `limit` zero: never shed.
    pub fn new(limit: Duration) -> Overload {
        Overload {
            limit,
            lag: Cell::new(Duration::ZERO),
            saturated: Cell::new(false),
            late: Cell::new(0),
            shed: Cell::new(0),
            shed_total: Cell::new(0),
        }
    }

    /// Records one probe's delay. Saturated from [`LATE_PROBES`] delays in a row above the limit until one
    /// below half of it.
    pub fn observe(&self, lag: Duration) {
        self.lag.set(lag);
        if self.limit.is_zero() {
            return;
        }
        if lag > self.limit {
            self.late.set(self.late.get() + 1);
            if self.late.get() >= LATE_PROBES {
                self.saturated.set(true);
            }
        } else {
            self.late.set(0);
            if lag < self.limit / 2 {
                self.saturated.set(false);
            }
        }
    }

    /// `Ok` when a new write may go in; else the 503 to answer.
    pub fn admit(&self, core: usize) -> Result<(), StoreError> {
        if !self.saturated.get() {
            return Ok(());
        }
        self.shed.set(self.shed.get() + 1);
        self.shed_total.set(self.shed_total.get() + 1);
        Err(StoreError::Overloaded(format!(
            "core {core} is saturated (its tasks wait {:.1} ms, limit {:.1} ms)",
            self.lag.get().as_secs_f64() * 1e3,
            self.limit.as_secs_f64() * 1e3
        )))
    }

    /// The probe: runs on the core's request task queue until `closing`.
    pub async fn probe(self: Rc<Self>, closing: Rc<Cell<bool>>) {
        while !closing.get() {
            let asked = Instant::now();
            glommio::timer::sleep(PROBE_EVERY).await;
            self.observe(asked.elapsed().saturating_sub(PROBE_EVERY));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_while_the_delay_is_high_with_hysteresis() {
        let o = Overload::new(Duration::from_millis(20));
        assert!(o.admit(0).is_ok());
        o.observe(Duration::from_millis(25));
        o.observe(Duration::from_millis(5));
        o.observe(Duration::from_millis(25));
        o.observe(Duration::from_millis(25));
        assert!(
            o.admit(0).is_ok(),
            "two late probes in a row are a stall, not saturation"
        );
        o.observe(Duration::from_millis(25));
        let e = o.admit(3).unwrap_err();
        assert_eq!((e.status(), e.headers()), (503, "Retry-After: 1\r\n"));
        assert!(e.to_string().contains("core 3 is saturated"), "{e}");
        o.observe(Duration::from_millis(15));
        assert!(o.admit(0).is_err(), "still saturated above half the limit");
        o.observe(Duration::from_millis(5));
        assert!(o.admit(0).is_ok());
        assert_eq!(o.shed.get(), 2);
        let never = Overload::new(Duration::ZERO);
        never.observe(Duration::from_secs(1));
        assert!(never.admit(0).is_ok());
    }
}
