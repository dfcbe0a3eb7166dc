//! The readable state of one (tag, segment): records `0..persisted` in the tag file (memory-mapped when
//! read), the rest in memory in arrival order, the records accepted and still on their way to the log, and
//! what is known of their time order (a segment whose records did not arrive in time order is read through
//! a permutation sorted by time, stable, so ties keep arrival order). Read through `store/view.rs`.

use std::collections::VecDeque;
use std::rc::Rc;

use memmap2::{Mmap, MmapOptions};

use crate::record::{Record, RECORD_BYTES};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Order {
    /// Not known yet (a segment loaded from disk and not read since start).
    Unknown,
    /// Arrival order is time order; `max` is the last time.
    Sorted {
        max: i64,
    },
    Unsorted,
}

thread_local! {
    static NEXT_ID: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

/// The readable state of one (tag, segment).
pub struct Segment {
    /// Never reused within the process: the key of this segment's blocks in the core's block cache.
    pub id: u64,
    /// Records durable in the tag file (a checkpoint completed for them).
    pub persisted: usize,
    /// Committed records not yet in the tag file: indexes `persisted..persisted + mem.len()`.
    pub mem: Vec<Record>,
    /// Next index to hand out; equals `committed()` except while a group commit is in flight.
    pub next_index: usize,
    map: Option<Mmap>,
    order: Option<Order>,
    perm: Option<(usize, Rc<Vec<u32>>)>,
    /// `--durability sync`: records accepted and not yet committed, in queue order (the order their commits
    /// finish in), and their largest time: duplicates of them are caught too (`Shard::append`).
    inflight: VecDeque<Record>,
    inflight_max: i64,
}

impl Default for Segment {
    fn default() -> Self {
        Segment {
            id: NEXT_ID.with(|n| {
                let id = n.get();
                n.set(id + 1);
                id
            }),
            persisted: 0,
            mem: Vec::new(),
            next_index: 0,
            map: None,
            order: None,
            perm: None,
            inflight: VecDeque::new(),
            inflight_max: i64::MIN,
        }
    }
}

impl Segment {
    pub fn loaded(persisted: usize) -> Self {
        Segment {
            persisted,
            next_index: persisted,
            ..Default::default()
        }
    }

    pub fn committed(&self) -> usize {
        self.persisted + self.mem.len()
    }

    /// True when the segment's records are known to be in time order (arrival order is time order).
    pub fn is_sorted(&self) -> bool {
        matches!(self.order(), Order::Sorted { .. })
    }

    /// True when the order of the persisted records has not been learned since start.
    pub fn order_unknown(&self) -> bool {
        self.order() == Order::Unknown
    }

    /// Records what a scan of records `0..scanned` found (`max`: their last time, when in order); a scan of
    /// fewer records than are now committed only counts if the rest are known to follow in order.
    pub fn learned_order(&mut self, scanned: usize, sorted: bool, max: i64) {
        if self.order() != Order::Unknown || scanned != self.persisted {
            return;
        }
        let mem_sorted = self.mem.windows(2).all(|w| w[0].time <= w[1].time)
            && self.mem.first().map_or(true, |r| r.time >= max);
        self.order = Some(if sorted && mem_sorted {
            Order::Sorted {
                max: self.mem.last().map_or(max, |r| r.time),
            }
        } else {
            Order::Unsorted
        });
    }

    fn order(&self) -> Order {
        self.order.unwrap_or(if self.persisted == 0 {
            Order::Sorted { max: i64::MIN }
        } else {
            Order::Unknown
        })
    }

    pub fn push(&mut self, r: Record) {
        self.mem.push(r);
        self.order = Some(match self.order() {
            Order::Sorted { max } if r.time >= max => Order::Sorted { max: r.time },
            Order::Sorted { .. } | Order::Unsorted => Order::Unsorted,
            Order::Unknown => Order::Unknown,
        });
    }

    /// After a checkpoint made `count` records durable in the file.
    pub fn persisted_up_to(&mut self, count: usize) {
        assert!(
            count >= self.persisted && count <= self.committed(),
            "BUG: persisted {count} of {}..{}",
            self.persisted,
            self.committed()
        );
        self.mem.drain(..count - self.persisted);
        self.persisted = count;
    }

    /// The persisted records, as mapped (empty when none are).
    pub(crate) fn disk(&self) -> &[Record] {
        match &self.map {
            Some(m) => {
                assert!(
                    m.len() >= self.persisted * RECORD_BYTES,
                    "BUG: tag file mapped short of persisted records"
                );
                bytemuck::cast_slice(&m[..self.persisted * RECORD_BYTES])
            }
            None => {
                assert_eq!(
                    self.persisted, 0,
                    "BUG: persisted records read before the tag file was mapped"
                );
                &[]
            }
        }
    }

    /// Maps the tag file as far as it is persisted (records `0..persisted` become readable by [`Segment::raw`]).
    pub fn map_file(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        let mapped = self.map.as_ref().map_or(0, |m| m.len() / RECORD_BYTES);
        if self.persisted > 0 && mapped < self.persisted {
            let f = std::fs::File::open(path)?;
            // SAFETY: only this core writes the file, and only past `persisted` records (whole blocks
            // rewritten with identical leading bytes); the mapped prefix never changes while mapped.
            let m = unsafe {
                MmapOptions::new()
                    .len(self.persisted * RECORD_BYTES)
                    .map(&f)?
            };
            self.map = Some(m);
        }
        Ok(())
    }

    pub fn raw(&self, i: usize) -> Record {
        let disk = self.disk();
        if i < disk.len() {
            disk[i]
        } else {
            self.mem[i - disk.len()]
        }
    }

    /// Maps the file as far as it is persisted, learns the order, sorts a permutation when needed.
    /// Call before [`Segment::view`]; `path` is this segment's tag file.
    pub fn prepare(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        self.map_file(path)?;
        if self.order() == Order::Unknown {
            let n = self.committed();
            let mut max = i64::MIN;
            let mut sorted = true;
            for i in 0..n {
                let t = self.raw(i).time;
                sorted &= t >= max;
                max = max.max(t);
            }
            self.order = Some(if sorted {
                Order::Sorted { max }
            } else {
                Order::Unsorted
            });
        }
        if self.order() == Order::Unsorted
            && self
                .perm
                .as_ref()
                .map_or(true, |(n, _)| *n != self.committed())
        {
            let n = self.committed();
            let mut perm: Vec<u32> = (0..n as u32).collect();
            perm.sort_by_key(|&i| self.raw(i as usize).time);
            self.perm = Some((n, Rc::new(perm)));
        }
        Ok(())
    }

    /// True when a committed record equals `r` (same time, same value bits). In-order arrivals past the
    /// newest record answer at once; otherwise a binary search over the time order (the file mapped, its
    /// order learned once, an out-of-order segment's permutation rebuilt only when the records after it
    /// grow past an eighth of them, those few checked one by one).
    pub fn holds_committed(
        &mut self,
        path: impl FnOnce() -> std::path::PathBuf,
        r: &Record,
    ) -> std::io::Result<bool> {
        let n = self.committed();
        if n == 0 || matches!(self.order(), Order::Sorted { max } if r.time > max) {
            return Ok(false);
        }
        let path = &path();
        self.map_file(path)?;
        if self.order() == Order::Unknown {
            self.prepare(path)?;
        }
        let same = |x: Record| x.time == r.time && same_values(&x, r);
        if self.is_sorted() {
            let lo = partition(n, |i| self.raw(i).time < r.time);
            return Ok((lo..n)
                .take_while(|&i| self.raw(i).time == r.time)
                .any(|i| same(self.raw(i))));
        }
        let covered = self.perm.as_ref().map_or(0, |(c, _)| *c);
        if n - covered > (covered / 8).max(4096) {
            self.prepare(path)?;
        }
        let (covered, perm) = match &self.perm {
            Some((c, p)) => (*c, Rc::clone(p)),
            None => (0, Rc::new(Vec::new())),
        };
        if (covered..n).any(|i| same(self.raw(i))) {
            return Ok(true);
        }
        let lo = partition(covered, |k| self.raw(perm[k] as usize).time < r.time);
        Ok((lo..covered)
            .map(|k| self.raw(perm[k] as usize))
            .take_while(|x| x.time == r.time)
            .any(same))
    }

    /// True when a record accepted and not yet committed equals `r`.
    pub fn holds_inflight(&self, r: &Record) -> bool {
        r.time <= self.inflight_max
            && self
                .inflight
                .iter()
                .any(|x| x.time == r.time && same_values(x, r))
    }

    pub fn inflight_push(&mut self, r: Record) {
        self.inflight_max = self.inflight_max.max(r.time);
        self.inflight.push_back(r);
    }

    /// The oldest in-flight record, now committed or failed (commits finish in queue order).
    pub fn inflight_pop(&mut self) -> Option<Record> {
        let r = self.inflight.pop_front();
        if self.inflight.is_empty() {
            self.inflight_max = i64::MIN;
        }
        r
    }

    /// Undoes the newest [`Segment::inflight_push`] (its job was never queued).
    pub fn inflight_unpush(&mut self) {
        self.inflight.pop_back();
        if self.inflight.is_empty() {
            self.inflight_max = i64::MIN;
        }
    }

    /// The permutation that sorts the first `committed()` records by time, or `None` when they are sorted
    /// as they are. [`Segment::prepare`] must have run since the last change.
    pub fn time_order(&self) -> Option<Rc<Vec<u32>>> {
        match self.order() {
            Order::Sorted { .. } => None,
            _ => {
                let (n, p) = self
                    .perm
                    .as_ref()
                    .expect("BUG: view of an unsorted segment without prepare");
                assert_eq!(*n, self.committed(), "BUG: stale permutation");
                Some(Rc::clone(p))
            }
        }
    }
}

/// Same value bits in every slot (so `-0.0` and `0.0` differ, as they read back).
fn same_values(a: &Record, b: &Record) -> bool {
    a.values
        .iter()
        .zip(&b.values)
        .all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The first index in `0..n` where `before` turns false (it must be true then false).
fn partition(n: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::asof::Run;
    use std::path::PathBuf;

    fn rec(time: i64, v: f64) -> Record {
        Record {
            time,
            values: [v; crate::record::VALUES],
        }
    }

    fn no_file() -> PathBuf {
        PathBuf::from("/nonexistent/segment-test.rec")
    }

    #[test]
    fn in_order_pushes_stay_sorted_and_one_late_record_makes_it_unsorted() {
        let mut s = Segment::default();
        assert!(s.is_sorted() && !s.order_unknown());
        for t in [1, 2, 2, 5] {
            s.push(rec(t, 0.0));
        }
        assert!(s.is_sorted());
        assert_eq!((s.committed(), s.order()), (4, Order::Sorted { max: 5 }));
        s.push(rec(3, 0.0));
        assert_eq!(s.order(), Order::Unsorted);
        s.push(rec(9, 0.0));
        assert_eq!(s.order(), Order::Unsorted, "unsorted stays unsorted");
    }

    #[test]
    fn a_loaded_segment_is_unknown_until_learned() {
        let mut s = Segment::loaded(3);
        assert_eq!((s.persisted, s.next_index, s.committed()), (3, 3, 3));
        assert!(s.order_unknown());
        s.push(rec(10, 0.0));
        assert!(
            s.order_unknown(),
            "a push cannot tell the order of records it has not seen"
        );
        // A scan of fewer records than persisted does not count.
        s.learned_order(2, true, 4);
        assert!(s.order_unknown());
        s.learned_order(3, true, 4);
        assert_eq!(s.order(), Order::Sorted { max: 10 });

        let mut s = Segment::loaded(3);
        s.push(rec(1, 0.0));
        s.learned_order(3, true, 4);
        assert_eq!(
            s.order(),
            Order::Unsorted,
            "the tail starts before the file's last record"
        );
    }

    #[test]
    fn a_checkpoint_moves_records_from_memory_to_the_file_count() {
        let mut s = Segment::default();
        for t in 0..5 {
            s.push(rec(t, 0.0));
        }
        s.next_index = 5;
        s.persisted_up_to(3);
        assert_eq!((s.persisted, s.mem.len(), s.committed()), (3, 2, 5));
        assert_eq!(s.mem[0].time, 3);
        s.persisted_up_to(5);
        assert!(s.mem.is_empty());
    }

    #[test]
    #[should_panic(expected = "BUG: persisted 6 of 0..5")]
    fn persisting_past_the_committed_records_is_a_bug() {
        let mut s = Segment::default();
        for t in 0..5 {
            s.push(rec(t, 0.0));
        }
        s.persisted_up_to(6);
    }

    #[test]
    fn in_flight_records_are_found_and_leave_in_queue_order() {
        let mut s = Segment::default();
        s.inflight_push(rec(5, 1.0));
        s.inflight_push(rec(2, 2.0));
        assert!(s.holds_inflight(&rec(2, 2.0)));
        assert!(!s.holds_inflight(&rec(2, 3.0)), "same time, other values");
        assert!(!s.holds_inflight(&rec(6, 1.0)), "past the newest in flight");
        s.inflight_unpush();
        assert!(!s.holds_inflight(&rec(2, 2.0)));
        assert_eq!(s.inflight_pop(), Some(rec(5, 1.0)));
        assert_eq!(s.inflight_pop(), None);
        assert!(!s.holds_inflight(&rec(5, 1.0)));
    }

    #[test]
    fn committed_duplicates_are_found_in_sorted_and_unsorted_segments() {
        let mut s = Segment::default();
        for t in [1, 3, 3, 7] {
            s.push(rec(t, t as f64));
        }
        let holds =
            |s: &mut Segment, r: Record| s.holds_committed(no_file, &r).expect("memory only");
        assert!(holds(&mut s, rec(3, 3.0)));
        assert!(!holds(&mut s, rec(3, 4.0)));
        assert!(
            !holds(&mut s, rec(8, 8.0)),
            "past the newest: answered without a search"
        );
        // -0.0 and 0.0 are different values as stored.
        s.push(rec(9, 0.0));
        assert!(!holds(&mut s, rec(9, -0.0)));
        s.push(rec(2, 2.0));
        assert_eq!(s.order(), Order::Unsorted);
        for t in [1, 2, 3, 7, 9] {
            let v = if t == 9 { 0.0 } else { t as f64 };
            assert!(holds(&mut s, rec(t, v)), "{t}");
        }
        assert!(!holds(&mut s, rec(2, 3.0)));
    }

    #[test]
    fn the_view_reads_time_order_and_ties_keep_arrival_order() {
        let mut s = Segment::default();
        for (t, v) in [(5, 0.0), (1, 1.0), (5, 2.0), (3, 3.0)] {
            s.push(rec(t, v));
        }
        s.prepare(&no_file()).expect("memory only");
        let v = crate::store::view::View::of(&s);
        let got: Vec<(i64, f64)> = (0..v.len())
            .map(|i| (v.time(i), v.record(i).values[0]))
            .collect();
        assert_eq!(got, vec![(1, 1.0), (3, 3.0), (5, 0.0), (5, 2.0)]);
        assert!(v.slices().is_none(), "a permuted view is not contiguous");
    }
}
