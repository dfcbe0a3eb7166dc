//! Load shedding. A core is *saturated* when its executor falls behind: a probe task asks to wake every
//! millisecond and measures how late it actually runs, which is how long every other task on the core
//! (requests included) waits for its turn. While that delay is above `--shed-lag`, new writes get `503` with
//! `Retry-After: 1` before their body is decoded, so the requests already admitted keep their latency and
//! nothing queues without bound; queries are still answered. The commit pipeline is bounded separately
//! (`--max-pending-records`, in `store/shard/admit.rs`).
//!
//! The probe runs only while the core serves requests (and [`IDLE_AFTER`] past the last one): a 1 ms timer
//! on an idle core would cost it 5-15 % of a CPU for nothing, since with nothing in service nothing waits.
//! Every request and forwarded message holds an [`InService`] while it is served; the first one wakes the
//! probe. An idle core forgets its verdict: whatever saturated it has drained.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::store::StoreError;

const PROBE_EVERY: Duration = Duration::from_millis(1);
/// Consecutive late probes that make a core saturated: one long stall (a directory fsync, a large bulk
/// body) is not saturation, and shedding the requests queued behind it would only turn delay into errors.
const LATE_PROBES: u32 = 3;
/// How long after the last request left the probe keeps running: gaps between requests under load are
/// shorter, so a loaded core is probed without a break.
const IDLE_AFTER: Duration = Duration::from_millis(100);

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
    /// Requests and forwarded messages being served now.
    in_service: Cell<u32>,
    /// When the last of them left.
    last_left: Cell<Instant>,
    /// The parked probe, woken by the next [`Overload::enter`].
    parked: RefCell<Option<Waker>>,
    /// Times the probe parked (an idle core) and woke again.
    pub parks: Cell<u64>,
}

/// A request or forwarded message in service on this core: the probe runs while any exists.
pub struct InService<'a>(&'a Overload);

impl Drop for InService<'_> {
    fn drop(&mut self) {
        let o = self.0;
        debug_assert!(o.in_service.get() > 0, "more requests left than entered");
        o.in_service.set(o.in_service.get().saturating_sub(1));
        o.last_left.set(Instant::now());
    }
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
            in_service: Cell::new(0),
            last_left: Cell::new(Instant::now()),
            parked: RefCell::new(None),
            parks: Cell::new(0),
        }
    }

    /// Marks a request or forwarded message in service until the guard drops; wakes a parked probe.
    pub fn enter(&self) -> InService<'_> {
        self.in_service.set(self.in_service.get() + 1);
        if let Some(w) = self.parked.borrow_mut().take() {
            w.wake();
        }
        InService(self)
    }

    /// Nothing in service, and nothing for [`IDLE_AFTER`].
    fn idle(&self, now: Instant) -> bool {
        self.in_service.get() == 0 && now.duration_since(self.last_left.get()) >= IDLE_AFTER
    }

    /// Resolves once [`Overload::enter`] has woken it (or at once if something is in service).
    async fn until_busy(&self) {
        let mut registered = false;
        poll_fn(|cx| {
            if self.in_service.get() > 0 || (registered && self.parked.borrow().is_none()) {
                Poll::Ready(())
            } else {
                *self.parked.borrow_mut() = Some(cx.waker().clone());
                registered = true;
                Poll::Pending
            }
        })
        .await
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

    /// The probe: runs on the core's request task queue until `closing`, parked while the core is idle.
    pub async fn probe(self: Rc<Self>, closing: Rc<Cell<bool>>) {
        while !closing.get() {
            if self.idle(Instant::now()) {
                // Nothing waits on an idle core: no lag, not saturated.
                self.late.set(0);
                self.lag.set(Duration::ZERO);
                self.saturated.set(false);
                self.parks.set(self.parks.get() + 1);
                self.until_busy().await;
                continue;
            }
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
        assert!(
            matches!(e, crate::store::StoreError::Overloaded(_)),
            "{e:?}"
        );
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

    #[test]
    fn idle_until_a_request_enters_and_for_a_while_after_the_last_leaves() {
        let o = Overload::new(Duration::from_millis(20));
        let t0 = o.last_left.get();
        assert!(o.idle(t0 + IDLE_AFTER));
        let a = o.enter();
        let b = o.enter();
        assert!(!o.idle(t0 + IDLE_AFTER * 10), "requests in service");
        drop(a);
        assert!(
            !o.idle(t0 + IDLE_AFTER * 10),
            "one request still in service"
        );
        drop(b);
        let left = o.last_left.get();
        assert!(
            !o.idle(left + IDLE_AFTER / 2),
            "a short gap is not idleness"
        );
        assert!(o.idle(left + IDLE_AFTER));
    }

    #[test]
    fn the_probe_parks_on_an_idle_core_and_a_request_wakes_it() {
        use glommio::{LocalExecutorBuilder, Placement};
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(512 << 10)
            .spawn(|| async {
                let o = Rc::new(Overload::new(Duration::from_millis(20)));
                let closing = Rc::new(Cell::new(false));
                let probe = glommio::spawn_local(Rc::clone(&o).probe(Rc::clone(&closing)));
                glommio::timer::sleep(Duration::from_millis(300)).await;
                assert_eq!(o.parks.get(), 1, "parked once after the start-up grace");
                // Parked: a saturated verdict left from before would have been cleared.
                o.saturated.set(true);
                let guard = o.enter();
                glommio::timer::sleep(Duration::from_millis(20)).await;
                assert!(
                    o.admit(0).is_ok(),
                    "the woken probe measured an unloaded core"
                );
                drop(guard);
                glommio::timer::sleep(IDLE_AFTER * 3).await;
                assert_eq!(o.parks.get(), 2, "parked again after the request left");
                closing.set(true);
                let _ = o.enter();
                probe.await;
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
