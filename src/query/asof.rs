//! The as-of sampler: for each sample time `t_i = start + (i+1)*(end-start)/n` (floor, in i128 so it never
//! overflows), the last record with `time <= t_i`, ties going to the record received last.
//!
//! The input is a list of *runs*: each run is sorted by time (ties by arrival) and runs are given in time
//! order without overlap (a run is one time segment of a tag), so their concatenation is the tag's whole
//! history in query order. The sampler walks the runs once, forward, as the sample times increase.

use crate::record::Record;

/// A time-sorted sequence of records (ties by arrival) covering one time segment.
pub trait Run {
    fn len(&self) -> usize;
    fn time(&self, i: usize) -> i64;
    fn record(&self, i: usize) -> Record;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The run as at most two contiguous slices in order, when it is stored that way (no permutation):
    /// lets a full scan walk memory directly.
    fn slices(&self) -> Option<[&[Record]; 2]> {
        None
    }
}

/// What a reader does with a window's runs (the store hands them over; e.g. `query/answer.rs` renders the
/// answer); generic over how the runs are stored.
pub trait WithRuns {
    type Out;
    fn with<R: Run + ?Sized>(self, runs: &[&R]) -> Self::Out;
}

impl Run for [Record] {
    fn len(&self) -> usize {
        <[Record]>::len(self)
    }
    fn time(&self, i: usize) -> i64 {
        self[i].time
    }
    fn record(&self, i: usize) -> Record {
        self[i]
    }
    fn slices(&self) -> Option<[&[Record]; 2]> {
        Some([self, &[]])
    }
}

/// The i-th sample time (0-based) of `n` over `(start, end]`.
pub fn sample_time(start: i64, end: i64, i: usize, n: usize) -> i64 {
    debug_assert!(end > start && i < n);
    let span = end as i128 - start as i128;
    (start as i128 + (i as i128 + 1) * span / n as i128) as i64
}

/// Number of records `r` in `run[lo..]` with `r.time <= t`, plus `lo` (an upper bound search from `lo`).
/// The first index at or after `lo` whose time is > `t`, given every record before `lo` has time <= `t`.
/// Searches outwards from `lo + guess` (the caller passes the previous step's advance): consecutive sample
/// times sit about as many records apart each time, so the answer is usually found in a few probes near the
/// guess, instead of a binary search jumping across the whole run (a 360k-record hour is 31 MB: nearly every
/// probe of a full-range search misses the cache and the TLB).
pub fn upper_bound<R: Run + ?Sized>(run: &R, mut lo: usize, guess: usize, t: i64) -> usize {
    let len = run.len();
    debug_assert!(
        lo == 0 || run.time(lo - 1) <= t,
        "BUG: upper_bound start past t"
    );
    // Invariant of both gallops: every index < lo has time <= t, every index >= hi has time > t.
    let mut hi = len;
    let g = lo.saturating_add(guess).min(len);
    let mut step = 1;
    if g < len && run.time(g) <= t {
        lo = g + 1;
        while lo < hi {
            let p = (lo + step - 1).min(hi - 1);
            if run.time(p) <= t {
                lo = p + 1;
                step *= 2;
            } else {
                hi = p;
                break;
            }
        }
    } else {
        hi = g;
        while lo < hi {
            let p = hi.saturating_sub(step).max(lo);
            if run.time(p) > t {
                hi = p;
                step *= 2;
            } else {
                lo = p + 1;
                break;
            }
        }
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if run.time(mid) <= t {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

pub fn lower_bound<R: Run + ?Sized>(run: &R, t: i64) -> usize {
    let (mut lo, mut hi) = (0, run.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if run.time(mid) < t {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Which of several records with the same time a sample answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ties {
    /// The one received last (a single node: a correction sent later wins).
    #[default]
    LastReceived,
    /// The one whose values are greatest as bit patterns, value 0 first (cluster mode: nodes receive the
    /// streams in different orders, and this answer is the same on all of them).
    GreatestBits,
}

/// Of the records of `run` before `end` with the time of `end - 1`, the one `ties` picks.
pub(crate) fn pick<R: Run + ?Sized>(run: &R, end: usize, ties: Ties) -> Record {
    let mut best = run.record(end - 1);
    if ties == Ties::GreatestBits {
        let mut j = end - 1;
        while j > 0 && run.time(j - 1) == best.time {
            j -= 1;
            let r = run.record(j);
            if r.values.map(f64::to_bits) > best.values.map(f64::to_bits) {
                best = r;
            }
        }
    }
    best
}

/// Calls `emit(t_i, record)` for each of the `n` samples of `(start, end]`.
pub fn sample<R: Run + ?Sized>(
    runs: &[&R],
    start: i64,
    end: i64,
    n: usize,
    ties: Ties,
    mut emit: impl FnMut(i64, Option<Record>),
) {
    let runs: Vec<&R> = runs.iter().copied().filter(|r| !r.is_empty()).collect();
    #[cfg(debug_assertions)]
    for w in runs.windows(2) {
        assert!(
            w[0].time(w[0].len() - 1) < w[1].time(0),
            "BUG: runs overlap or are out of order"
        );
    }
    // `cur` is the last run whose first record is <= t; `pos` the upper bound found in it so far.
    let mut cur: Option<usize> = None;
    let mut pos = 0;
    // How far the previous sample's answer moved: the guess for the next one.
    let mut advance = 0;
    for i in 0..n {
        let t = sample_time(start, end, i, n);
        let mut next = cur.map_or(0, |c| c + 1);
        while next < runs.len() && runs[next].time(0) <= t {
            cur = Some(next);
            pos = 0;
            next += 1;
        }
        let found = cur.map(|c| {
            let found = upper_bound(runs[c], pos, advance, t);
            advance = found - pos;
            pos = found;
            debug_assert!(pos > 0);
            pick(runs[c], pos, ties)
        });
        emit(t, found);
    }
}

/// Test aid: runs as the store builds them from records in arrival order: split by segment of `seg` ns,
/// stable-sorted by time (ties keep arrival order).
#[cfg(test)]
pub(crate) fn runs_of(arrivals: &[Record], seg: i64) -> Vec<Vec<Record>> {
    let mut sorted = arrivals.to_vec();
    sorted.sort_by_key(|r| r.time);
    let mut runs: Vec<Vec<Record>> = Vec::new();
    for r in sorted {
        let s = r.time.div_euclid(seg);
        match runs.last_mut() {
            Some(run) if run[0].time.div_euclid(seg) == s => run.push(r),
            _ => runs.push(vec![r]),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::record::filled as rec;

    /// The naive model: scan everything, keep the last record (in arrival order) with the greatest time <= t.
    fn model(arrivals: &[Record], t: i64) -> Option<Record> {
        let mut best: Option<Record> = None;
        for r in arrivals {
            if r.time <= t && best.map_or(true, |b| r.time >= b.time) {
                best = Some(*r);
            }
        }
        best
    }

    #[test]
    fn sample_times_are_exact_and_never_overflow() {
        assert_eq!(sample_time(0, 3_600_000_000_000, 0, 1000), 3_600_000_000);
        assert_eq!(
            sample_time(0, 3_600_000_000_000, 999, 1000),
            3_600_000_000_000
        );
        assert_eq!(sample_time(i64::MIN, i64::MAX, 999, 1000), i64::MAX);
        assert_eq!(sample_time(0, 10, 0, 3), 3);
    }

    #[test]
    fn ties_go_to_the_last_arrival_and_gaps_are_null() {
        let arr = [rec(10, 1.0), rec(10, 2.0), rec(5, 3.0)];
        let runs = runs_of(&arr, 100);
        let refs: Vec<&[Record]> = runs.iter().map(|r| r.as_slice()).collect();
        let mut got = Vec::new();
        sample(&refs, 0, 20, 4, Ties::LastReceived, |t, r| {
            got.push((t, r.map(|r| r.values[0])))
        });
        assert_eq!(
            got,
            vec![
                (5, Some(3.0)),
                (10, Some(2.0)),
                (15, Some(2.0)),
                (20, Some(2.0))
            ]
        );
        let mut got = Vec::new();
        sample(&refs, -10, 0, 2, Ties::LastReceived, |t, r| {
            got.push((t, r))
        });
        assert_eq!(got, vec![(-5, None), (0, None)]);
        // Cluster mode: the greatest value bits, whatever the arrival order.
        for arr in [
            [rec(10, 1.0), rec(10, 2.0), rec(10, -3.0)],
            [rec(10, -3.0), rec(10, 2.0), rec(10, 1.0)],
        ] {
            let runs = runs_of(&arr, 100);
            let refs: Vec<&[Record]> = runs.iter().map(|r| r.as_slice()).collect();
            let mut got = Vec::new();
            sample(&refs, 0, 20, 2, Ties::GreatestBits, |_, r| {
                got.push(r.map(|r| r.values[0]))
            });
            // -3.0 has the sign bit: the greatest bit pattern.
            assert_eq!(got, vec![Some(-3.0), Some(-3.0)]);
        }
    }

    proptest! {
        #[test]
        fn matches_the_naive_model(
            times in proptest::collection::vec(-50i64..50, 0..60),
            seg in 1i64..40,
            start in -70i64..60,
            len in 1i64..120,
            n in 1usize..50,
        ) {
            let arr: Vec<Record> = times.iter().enumerate().map(|(i, &t)| rec(t, i as f64)).collect();
            let runs = runs_of(&arr, seg);
            let refs: Vec<&[Record]> = runs.iter().map(|r| r.as_slice()).collect();
            let end = start + len;
            let mut got = Vec::new();
            sample(&refs, start, end, n, Ties::LastReceived, |t, r| got.push((t, r)));
            prop_assert_eq!(got.len(), n);
            for (i, (t, r)) in got.into_iter().enumerate() {
                prop_assert_eq!(t, sample_time(start, end, i, n));
                prop_assert_eq!(r, model(&arr, t), "t = {}", t);
            }
            // Greatest bits: the answer does not depend on the arrival order.
            let mut reversed = arr.clone();
            reversed.reverse();
            let mut answers = Vec::new();
            for a in [&arr, &reversed] {
                let runs = runs_of(a, seg);
                let refs: Vec<&[Record]> = runs.iter().map(|r| r.as_slice()).collect();
                let mut got = Vec::new();
                sample(&refs, start, end, n, Ties::GreatestBits, |t, r| got.push((t, r)));
                answers.push(got);
            }
            prop_assert_eq!(&answers[0], &answers[1]);
            for (t, r) in &answers[0] {
                let best = arr
                    .iter()
                    .filter(|x| Some(x.time) == model(&arr, *t).map(|m| m.time))
                    .max_by_key(|x| x.values.map(f64::to_bits));
                prop_assert_eq!(r.as_ref(), best);
            }
        }
    }
}
