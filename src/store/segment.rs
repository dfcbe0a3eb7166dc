//! The readable state of one (tag, segment): records `0..persisted` in the tag file (memory-mapped when
//! read), the rest in memory in arrival order, the records accepted and still on their way to the log, and
//! what is known of their time order (a segment whose records did not arrive in time order is read through
//! a permutation sorted by time, stable, so ties keep arrival order). Read through `store/view.rs`.

use std::rc::Rc;

use memmap2::{Mmap, MmapOptions};

use crate::record::{Record, RECORD_BYTES};
use crate::store::recent::{self, same, Recent};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Order {
    /// Not known yet (a segment loaded from disk and not read since start).
    Unknown,
    /// Arrival order is time order; `max` is the last time.
    Sorted { max: i64 },
    /// `max` is at least every committed time (`i64::MAX` when only that much is known).
    Unsorted { max: i64 },
}

thread_local! {
    static NEXT_ID: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
    /// Tag files this core has mapped now: each mapping is a kernel memory area, bounded per process
    /// (`vm.max_map_count`, 65530 by default), past which every mmap and large allocation fails.
    static MAPPED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A tag file mapped, counted in [`mapped`] while it lives.
struct Mapping(Mmap);

impl Mapping {
    fn new(m: Mmap) -> Self {
        MAPPED.with(|c| c.set(c.get() + 1));
        Mapping(m)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        MAPPED.with(|c| c.set(c.get() - 1));
    }
}

/// Tag files mapped by this thread's segments now.
pub fn mapped() -> usize {
    MAPPED.with(|c| c.get())
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
    /// While `mem` holds records: the shard's log epoch (`shard/checkpoint.rs`) when the oldest of them
    /// came in, at most the generation that holds it; no generation from then on can be retired before
    /// this segment is written.
    pub since: u32,
    /// Loaded at start and its tag file's tail not verified yet: verified on first use (`shard/check.rs`).
    unchecked: bool,
    /// What is wrong with the tag file, once its first use found damage: every use answers this.
    damage: Option<Box<str>>,
    map: Option<Mapping>,
    order: Option<Order>,
    /// An out-of-order segment's records `0..covered` sorted by time (stable): `(covered, permutation)`.
    perm: Option<(usize, Rc<Vec<u32>>)>,
    /// The duplicate index (`store/recent.rs`), while it holds anything: records in flight (`--durability
    /// sync`), and, while `perm` is some, every committed record past it (`covered..committed()`).
    recent: Option<Box<Recent>>,
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
            since: 0,
            unchecked: false,
            damage: None,
            map: None,
            order: None,
            perm: None,
            recent: None,
        }
    }
}

impl Segment {
    /// A segment whose tag file holds `persisted` records (as its manifest or its last block says), its
    /// tail to be verified on first use (also when it holds none: its sidecar may say it should).
    pub fn loaded(persisted: usize) -> Self {
        Segment {
            persisted,
            next_index: persisted,
            unchecked: true,
            ..Default::default()
        }
    }

    /// A segment whose tag file is known to be damaged or lost (`what`, naming the file and offset).
    pub fn damaged(what: String) -> Self {
        Segment {
            damage: Some(what.into()),
            ..Default::default()
        }
    }

    /// True while the tag file's tail awaits its first-use verification.
    pub fn needs_check(&self) -> bool {
        self.unchecked && self.damage.is_none()
    }

    /// What is wrong with the tag file, once found.
    pub fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    /// The outcome of the first-use verification: `None` when the tail is as its sidecar and manifest say.
    pub fn verified(&mut self, damage: Option<String>) {
        self.unchecked = false;
        self.damage = damage.map(Into::into);
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
            && self.mem.first().is_none_or(|r| r.time >= max);
        self.order = Some(if sorted && mem_sorted {
            Order::Sorted {
                max: self.mem.last().map_or(max, |r| r.time),
            }
        } else {
            Order::Unsorted {
                max: if sorted {
                    self.mem.iter().fold(max, |m, r| m.max(r.time))
                } else {
                    i64::MAX
                },
            }
        });
    }

    fn order(&self) -> Order {
        self.order.unwrap_or(if self.persisted == 0 {
            Order::Sorted { max: i64::MIN }
        } else {
            Order::Unknown
        })
    }

    /// Takes in a committed record; `epoch`: the shard's log epoch now.
    pub fn push(&mut self, r: Record, epoch: u32) {
        self.push_hashed(r, None, epoch);
    }

    /// [`Segment::push`] of a record whose [`recent::content_hash`] is known (computed at admission), so
    /// the duplicate index does not hash it again.
    pub fn push_hashed(&mut self, r: Record, hash: Option<u64>, epoch: u32) {
        if self.mem.is_empty() {
            self.since = epoch;
        }
        self.mem.push(r);
        self.order = Some(match self.order() {
            Order::Sorted { max } if r.time >= max => Order::Sorted { max: r.time },
            Order::Sorted { max } | Order::Unsorted { max } => Order::Unsorted {
                max: max.max(r.time),
            },
            Order::Unknown => Order::Unknown,
        });
        if self.perm.is_some() && !self.is_sorted() {
            let index = self.committed() - 1;
            self.recent
                .get_or_insert_with(Box::default)
                .add_committed(index, hash.unwrap_or_else(|| recent::content_hash(&r)));
        }
    }

    /// After a checkpoint made `count` records durable in the file; `epoch`: the epoch that began before
    /// the checkpoint planned (the records past `count` came in since).
    pub fn persisted_up_to(&mut self, count: usize, epoch: u32) {
        assert!(
            count >= self.persisted && count <= self.committed(),
            "BUG: persisted {count} of {}..{}",
            self.persisted,
            self.committed()
        );
        self.mem.drain(..count - self.persisted);
        self.persisted = count;
        self.since = epoch;
        // Memory of records now in the file goes back (not kept as capacity for the next interval).
        if self.mem.is_empty() {
            self.mem = Vec::new();
        } else if self.mem.capacity() > 2 * self.mem.len() + 64 {
            self.mem.shrink_to_fit();
        }
        if let Some(r) = &mut self.recent {
            r.shrink();
        }
    }

    /// The persisted records, as mapped (empty when none are).
    pub(crate) fn disk(&self) -> &[Record] {
        match self.map.as_ref().map(|m| &m.0) {
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
        let mapped = self.map.as_ref().map_or(0, |m| m.0.len() / RECORD_BYTES);
        if self.persisted > 0 && mapped < self.persisted {
            let f = std::fs::File::open(path)?;
            // SAFETY: only this core writes the file, and only past `persisted` records (whole blocks
            // rewritten with identical leading bytes); the mapped prefix never changes while mapped.
            let m = unsafe {
                MmapOptions::new()
                    .len(self.persisted * RECORD_BYTES)
                    .map(&f)?
            };
            self.map = Some(Mapping::new(m));
        }
        Ok(())
    }

    /// Drops the mapping of the tag file (the next read maps it again).
    pub fn unmap(&mut self) {
        self.map = None;
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
                Order::Unsorted { max }
            });
        }
        if matches!(self.order(), Order::Unsorted { .. })
            && self
                .perm
                .as_ref()
                .is_none_or(|(n, _)| *n != self.committed())
        {
            self.extend_perm();
        }
        Ok(())
    }

    /// Makes the permutation cover every committed record: the records past it sorted (stable) and merged
    /// in, O(n + m log m) for m new records; ties keep arrival order (covered records arrived first).
    fn extend_perm(&mut self) {
        let n = self.committed();
        let (covered, old) = match &self.perm {
            Some((c, p)) => (*c, Rc::clone(p)),
            None => (0, Rc::new(Vec::new())),
        };
        let mut new: Vec<u32> = (covered as u32..n as u32).collect();
        new.sort_by_key(|&i| self.raw(i as usize).time);
        let mut perm = Vec::with_capacity(n);
        let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
        while let (Some(&&x), Some(&&y)) = (a.peek(), b.peek()) {
            if self.raw(x as usize).time <= self.raw(y as usize).time {
                perm.push(x);
                a.next();
            } else {
                perm.push(y);
                b.next();
            }
        }
        perm.extend(a);
        perm.extend(b);
        debug_assert_eq!(perm.len(), n);
        self.perm = Some((n, Rc::new(perm)));
        if let Some(r) = &mut self.recent {
            r.clear_committed();
        }
        self.tidy();
    }

    /// Drops the duplicate index once it holds nothing.
    fn tidy(&mut self) {
        if self.recent.as_ref().is_some_and(|r| r.is_empty()) {
            self.recent = None;
        }
    }

    /// True when a committed record equals `r` (same time, same value bits), in O(1) or O(log n): in-order
    /// arrivals past the newest record answer at once; a sorted segment is searched by time; an out-of-order
    /// one through its permutation (merged forward once the records past it pass a quarter of it) and the
    /// duplicate index of the records past it. The file is mapped, and its order learned, on first need.
    /// `hash`: `r`'s [`recent::content_hash`].
    pub fn holds_committed(
        &mut self,
        path: impl FnOnce() -> std::path::PathBuf,
        r: &Record,
        hash: u64,
    ) -> std::io::Result<bool> {
        let n = self.committed();
        let newest = match self.order() {
            Order::Sorted { max } | Order::Unsorted { max } => max,
            Order::Unknown => i64::MAX,
        };
        if n == 0 || r.time > newest {
            return Ok(false);
        }
        let path = &path();
        self.map_file(path)?;
        if self.order() == Order::Unknown {
            self.prepare(path)?;
        }
        if self.is_sorted() {
            let lo = partition(n, |i| self.raw(i).time < r.time);
            return Ok((lo..n)
                .take_while(|&i| self.raw(i).time == r.time)
                .any(|i| same(&self.raw(i), r)));
        }
        let covered = self.perm.as_ref().map_or(0, |(c, _)| *c);
        if self.perm.is_none() || n - covered > (covered / 4).max(4096) {
            self.extend_perm();
        }
        let (covered, perm) = match &self.perm {
            Some((c, p)) => (*c, Rc::clone(p)),
            None => unreachable!("extended above"),
        };
        debug_assert_eq!(
            self.recent.as_ref().map_or(0, |x| x.committed_len()),
            n - covered,
            "BUG: the duplicate index misses records past the permutation"
        );
        if let Some(recent) = &self.recent {
            if recent.holds_committed(r, hash, |i| self.raw(i)) {
                return Ok(true);
            }
        }
        let lo = partition(covered, |k| self.raw(perm[k] as usize).time < r.time);
        Ok((lo..covered)
            .map(|k| self.raw(perm[k] as usize))
            .take_while(|x| x.time == r.time)
            .any(|x| same(&x, r)))
    }

    /// True when a record accepted and not yet committed equals `r`, whose [`recent::content_hash`] is
    /// `hash`.
    pub fn holds_inflight(&self, r: &Record, hash: u64) -> bool {
        self.recent
            .as_ref()
            .is_some_and(|x| x.holds_inflight(r, hash))
    }

    /// Takes in `r`, whose [`recent::content_hash`] is `hash`, as the newest record in flight.
    pub fn inflight_push(&mut self, r: Record, hash: u64) {
        self.recent
            .get_or_insert_with(Box::default)
            .inflight_push(r, hash);
    }

    /// The oldest in-flight record and its hash, now committed or failed (commits finish in queue order).
    pub fn inflight_pop(&mut self) -> Option<(Record, u64)> {
        let r = self.recent.as_mut()?.inflight_pop();
        self.tidy();
        r
    }

    /// Undoes the newest [`Segment::inflight_push`] (its job was never queued).
    pub fn inflight_unpush(&mut self) {
        if let Some(x) = &mut self.recent {
            x.inflight_unpush();
        }
        self.tidy();
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

    use crate::record::filled as rec;

    fn h(r: Record) -> u64 {
        recent::content_hash(&r)
    }

    fn no_file() -> PathBuf {
        PathBuf::from("/nonexistent/segment-test.rec")
    }

    #[test]
    fn in_order_pushes_stay_sorted_and_one_late_record_makes_it_unsorted() {
        let mut s = Segment::default();
        assert!(s.is_sorted() && !s.order_unknown());
        for t in [1, 2, 2, 5] {
            s.push(rec(t, 0.0), 0);
        }
        assert!(s.is_sorted());
        assert_eq!((s.committed(), s.order()), (4, Order::Sorted { max: 5 }));
        s.push(rec(3, 0.0), 0);
        assert_eq!(s.order(), Order::Unsorted { max: 5 });
        s.push(rec(9, 0.0), 0);
        assert_eq!(
            s.order(),
            Order::Unsorted { max: 9 },
            "unsorted stays unsorted"
        );
    }

    #[test]
    fn a_loaded_segment_is_unknown_until_learned() {
        let mut s = Segment::loaded(3);
        assert_eq!((s.persisted, s.next_index, s.committed()), (3, 3, 3));
        assert!(s.order_unknown());
        s.push(rec(10, 0.0), 0);
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
        s.push(rec(1, 0.0), 0);
        s.learned_order(3, true, 4);
        assert_eq!(
            s.order(),
            Order::Unsorted { max: 4 },
            "the tail starts before the file's last record"
        );
        let mut s = Segment::loaded(3);
        s.learned_order(3, false, 4);
        assert_eq!(
            s.order(),
            Order::Unsorted { max: i64::MAX },
            "a scan that stopped at the first late record does not know the newest"
        );
    }

    #[test]
    fn a_checkpoint_moves_records_from_memory_to_the_file_count() {
        let mut s = Segment::default();
        for t in 0..5 {
            s.push(rec(t, 0.0), 0);
        }
        s.next_index = 5;
        s.persisted_up_to(3, 0);
        assert_eq!((s.persisted, s.mem.len(), s.committed()), (3, 2, 5));
        assert_eq!(s.mem[0].time, 3);
        s.persisted_up_to(5, 0);
        assert!(s.mem.is_empty());
    }

    #[test]
    #[should_panic(expected = "BUG: persisted 6 of 0..5")]
    fn persisting_past_the_committed_records_is_a_bug() {
        let mut s = Segment::default();
        for t in 0..5 {
            s.push(rec(t, 0.0), 0);
        }
        s.persisted_up_to(6, 0);
    }

    #[test]
    fn in_flight_records_are_found_and_leave_in_queue_order() {
        let mut s = Segment::default();
        s.inflight_push(rec(5, 1.0), h(rec(5, 1.0)));
        s.inflight_push(rec(2, 2.0), h(rec(2, 2.0)));
        assert!(s.holds_inflight(&rec(2, 2.0), h(rec(2, 2.0))));
        assert!(
            !s.holds_inflight(&rec(2, 3.0), h(rec(2, 3.0))),
            "same time, other values"
        );
        assert!(
            !s.holds_inflight(&rec(6, 1.0), h(rec(6, 1.0))),
            "past the newest in flight"
        );
        s.inflight_unpush();
        assert!(!s.holds_inflight(&rec(2, 2.0), h(rec(2, 2.0))));
        assert_eq!(s.inflight_pop(), Some((rec(5, 1.0), h(rec(5, 1.0)))));
        assert_eq!(s.inflight_pop(), None);
        assert!(!s.holds_inflight(&rec(5, 1.0), h(rec(5, 1.0))));
    }

    #[test]
    fn committed_duplicates_are_found_in_sorted_and_unsorted_segments() {
        let mut s = Segment::default();
        for t in [1, 3, 3, 7] {
            s.push(rec(t, t as f64), 0);
        }
        let holds =
            |s: &mut Segment, r: Record| s.holds_committed(no_file, &r, h(r)).expect("memory only");
        assert!(holds(&mut s, rec(3, 3.0)));
        assert!(!holds(&mut s, rec(3, 4.0)));
        assert!(
            !holds(&mut s, rec(8, 8.0)),
            "past the newest: answered without a search"
        );
        // -0.0 and 0.0 are different values as stored.
        s.push(rec(9, 0.0), 0);
        assert!(!holds(&mut s, rec(9, -0.0)));
        s.push(rec(2, 2.0), 0);
        assert_eq!(s.order(), Order::Unsorted { max: 9 });
        for t in [1, 2, 3, 7, 9] {
            let v = if t == 9 { 0.0 } else { t as f64 };
            assert!(holds(&mut s, rec(t, v)), "{t}");
        }
        assert!(!holds(&mut s, rec(2, 3.0)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Commit a record (time, value); a value of 0 with a time seen before repeats that record.
        Push(i64, u8),
        /// Move every committed record into the tag file.
        Checkpoint,
        /// A query prepares the segment (the permutation then covers everything).
        Prepare,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            20 => (0i64..400, 0u8..3).prop_map(|(t, v)| Op::Push(t, v)),
            1 => Just(Op::Checkpoint),
            1 => Just(Op::Prepare),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Duplicate lookups agree with a scan of every committed record, across out-of-order arrivals,
        /// checkpoints into the file, permutation merges and queries' preparation.
        #[test]
        fn holds_committed_agrees_with_a_scan(ops in proptest::collection::vec(op(), 1..6000)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("seg.rec");
            let mut s = Segment::default();
            let mut all: Vec<Record> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(t, v) => {
                        let r = rec(t, f64::from(v));
                        let expected = all.iter().any(|x| same(x, &r));
                        let got = s.holds_committed(|| path.clone(), &r, h(r)).expect("file readable");
                        proptest::prop_assert_eq!(got, expected, "record {:?}", r);
                        // A negative zero is another record than a zero.
                        let z = rec(t, -0.0);
                        let expected = all.iter().any(|x| same(x, &z));
                        proptest::prop_assert_eq!(s.holds_committed(|| path.clone(), &z, h(z)).expect("readable"), expected);
                        if !got {
                            // Both ways in: hashed at admission, or hashed when indexed.
                            match t % 2 {
                                0 => s.push(r, 0),
                                _ => s.push_hashed(r, Some(h(r)), 0),
                            }
                            s.next_index += 1;
                            all.push(r);
                        }
                    }
                    Op::Checkpoint => {
                        let bytes: &[u8] = bytemuck::cast_slice(&all);
                        std::fs::write(&path, bytes).expect("write");
                        s.persisted_up_to(all.len(), 0);
                    }
                    Op::Prepare => {
                        s.prepare(&path).expect("prepare");
                        let v = crate::store::view::View::of(&s);
                        let times: Vec<i64> = (0..v.len()).map(|i| v.time(i)).collect();
                        proptest::prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));
                    }
                }
            }
        }
    }

    #[test]
    fn the_view_reads_time_order_and_ties_keep_arrival_order() {
        let mut s = Segment::default();
        for (t, v) in [(5, 0.0), (1, 1.0), (5, 2.0), (3, 3.0)] {
            s.push(rec(t, v), 0);
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
