//! Aggregations per sample period: `GET /api?...&agg=...`. Sample `i` covers the period `(t_{i-1}, t_i]`
//! (`t_{-1}` = start, `t_i` as in [`asof::sample_time`]); each aggregation reduces the records inside it,
//! value slot by value slot:
//!
//! - `last`: the as-of answer, today's default (the last record at or before `t_i`, carried in from earlier
//!   periods; ties go to the record received last);
//! - `first`, `min`, `max`, `mean`, `sum`, `count`: the records with time in the period (`first`: earliest
//!   time, ties to the record received first); `null` for a period without records;
//! - `twa`: the time-weighted average over the period of the step function the records define (each value
//!   holds from its time until the next record's), the value carried in from before the period included.
//!   Where the function is undefined (before the tag's first record) the period is averaged over the part
//!   where it is defined; `null` when it is undefined throughout. A period of zero length (more samples than
//!   nanoseconds in the window) takes the value at its end.
//!
//! The input is the same list of sorted, non-overlapping runs as the as-of sampler's, walked once, forward.
//!
//! Records of equal time come in arrival order on a single node ([`Ties::LastReceived`]). In cluster mode
//! ([`Ties::GreatestBits`]) nodes receive the streams in different orders, so each group of equal time is
//! taken in ascending order of its value bits (value 0 first) instead: `last` and `twa` then see the record
//! the as-of answer picks as the last, `first` the least, and `sum`/`mean` add in one order, so every node
//! answers bit for bit the same.

use crate::query::asof::{self, Run, Ties};
use crate::record::{Record, VALUES};

/// One aggregation a query can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Last,
    First,
    Min,
    Max,
    Mean,
    Sum,
    Count,
    Twa,
}

impl Agg {
    pub const ALL: [Agg; 8] = [
        Agg::Last,
        Agg::First,
        Agg::Min,
        Agg::Max,
        Agg::Mean,
        Agg::Sum,
        Agg::Count,
        Agg::Twa,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Agg::Last => "last",
            Agg::First => "first",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Mean => "mean",
            Agg::Sum => "sum",
            Agg::Count => "count",
            Agg::Twa => "twa",
        }
    }

    pub fn parse(s: &str) -> Option<Agg> {
        Agg::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// One aggregation's answer for one period: a value per slot, or `None` (JSON `null`).
pub type Slot = Option<[f64; VALUES]>;

/// Which running figures the asked aggregations need (the others are not kept).
#[derive(Clone, Copy)]
struct Needs {
    min_max: bool,
    sum: bool,
    twa: bool,
}

impl Needs {
    fn of(aggs: &[Agg]) -> Needs {
        Needs {
            min_max: aggs.iter().any(|a| matches!(a, Agg::Min | Agg::Max)),
            sum: aggs.iter().any(|a| matches!(a, Agg::Sum | Agg::Mean)),
            twa: aggs.contains(&Agg::Twa),
        }
    }
}

/// What one period has seen so far.
struct Period {
    needs: Needs,
    /// Start and end of the period.
    from: i64,
    to: i64,
    count: u64,
    first: Option<[f64; VALUES]>,
    min: [f64; VALUES],
    max: [f64; VALUES],
    sum: [f64; VALUES],
    /// The step function's current value (carried in, then each record's) and since when it holds.
    held: Option<[f64; VALUES]>,
    held_since: i64,
    /// Integral of the step function over the defined part, with durations as fractions of the period
    /// (so no product leaves the range of the values), and the defined fraction.
    area: [f64; VALUES],
    defined: f64,
}

impl Period {
    fn new(needs: Needs, from: i64, to: i64, carried: Option<[f64; VALUES]>) -> Period {
        Period {
            needs,
            from,
            to,
            count: 0,
            first: None,
            min: [f64::INFINITY; VALUES],
            max: [f64::NEG_INFINITY; VALUES],
            sum: [0.0; VALUES],
            held: carried,
            held_since: from,
            area: [0.0; VALUES],
            defined: 0.0,
        }
    }

    /// Adds the step `held` over `[held_since, until)`.
    fn hold_until(&mut self, until: i64) {
        let Some(v) = self.held else { return };
        debug_assert!(until >= self.held_since, "BUG: records out of time order");
        let len = (self.to as i128 - self.from as i128) as f64;
        if len <= 0.0 {
            return;
        }
        let w = (until as i128 - self.held_since as i128) as f64 / len;
        for (a, x) in self.area.iter_mut().zip(v) {
            *a += x * w;
        }
        self.defined += w;
    }

    /// Adds consecutive records of the period, in time order.
    fn add_all(&mut self, rs: &[Record]) {
        let (Some(first), Some(last)) = (rs.first(), rs.last()) else {
            return;
        };
        debug_assert!(
            first.time > self.from && last.time <= self.to,
            "BUG: record outside its period"
        );
        self.count += rs.len() as u64;
        if self.first.is_none() {
            self.first = Some(first.values);
        }
        if self.needs.min_max {
            // Stored values are finite (validated on input), so plain comparisons (minsd/maxsd) suffice.
            let (mut min, mut max) = (self.min, self.max);
            for r in rs {
                for k in 0..VALUES {
                    let x = r.values[k];
                    min[k] = if x < min[k] { x } else { min[k] };
                    max[k] = if x > max[k] { x } else { max[k] };
                }
            }
            (self.min, self.max) = (min, max);
        }
        if self.needs.sum {
            let mut sum = self.sum;
            for r in rs {
                for k in 0..VALUES {
                    sum[k] += r.values[k];
                }
            }
            self.sum = sum;
        }
        if self.needs.twa {
            // `hold_until` inlined over the slice: the step held before each record, weighted by its length.
            let len = (self.to as i128 - self.from as i128) as f64;
            let inv = if len > 0.0 { 1.0 / len } else { 0.0 };
            let carried = self.held;
            let (mut area, mut defined) = (self.area, self.defined);
            let mut prev = carried.as_ref();
            let mut since = self.held_since;
            for r in rs {
                if let Some(v) = prev {
                    // r.time >= since: the difference is exact as u64 (and converts without i128).
                    let w = r.time.wrapping_sub(since) as u64 as f64 * inv;
                    for k in 0..VALUES {
                        area[k] += v[k] * w;
                    }
                    defined += w;
                }
                prev = Some(&r.values);
                since = r.time;
            }
            (self.area, self.defined) = (area, defined);
        }
        self.held = Some(last.values);
        self.held_since = last.time;
    }

    /// The answer of `agg` for this period; `last` is the as-of value at its end.
    fn finish(&mut self, agg: Agg, last: Slot) -> Slot {
        let present = self.count > 0;
        match agg {
            Agg::Last => last,
            Agg::First => self.first,
            Agg::Min => present.then_some(self.min),
            Agg::Max => present.then_some(self.max),
            Agg::Sum => present.then_some(self.sum),
            Agg::Mean => present.then(|| self.sum.map(|s| s / self.count as f64)),
            Agg::Count => present.then_some([self.count as f64; VALUES]),
            Agg::Twa => {
                if self.held_since < self.to {
                    self.hold_until(self.to);
                    self.held_since = self.to;
                }
                if self.defined > 0.0 {
                    Some(self.area.map(|a| a / self.defined))
                } else {
                    // Defined only at the period's end, if at all.
                    self.held
                }
            }
        }
    }
}

/// Calls `emit(t_i, answers)` for each of the `n` samples of `(start, end]`, `answers[j]` being `aggs[j]`'s;
/// `ties` orders records of equal time (see the module documentation).
pub fn aggregate<R: Run + ?Sized>(
    runs: &[&R],
    (start, end, n): (i64, i64, usize),
    aggs: &[Agg],
    ties: Ties,
    emit: impl FnMut(i64, &[Slot]),
) {
    let runs: Vec<&R> = runs.iter().copied().filter(|r| !r.is_empty()).collect();
    // The last record at or before `start` (carried into the first period) and where the walk begins:
    // record `pos` of run `first`.
    let (mut carried, mut first, mut pos): (Slot, usize, usize) = (None, 0, 0);
    for (k, run) in runs.iter().enumerate() {
        if run.time(0) > start {
            break;
        }
        let p = asof::upper_bound(*run, 0, 0, start);
        carried = Some(asof::pick(*run, p, ties).values);
        (first, pos) = (k, p);
    }
    let rest = runs.get(first..).unwrap_or(&[]);
    // Runs stored as plain slices are scanned straight from memory; permuted ones record by record.
    let slices: Option<Vec<[&[Record]; 2]>> = rest.iter().map(|r| r.slices()).collect();
    match slices {
        Some(mut slices) => {
            if let Some([a, b]) = slices.first_mut() {
                let skip_a = pos.min(a.len());
                *a = &a[skip_a..];
                *b = &b[pos - skip_a..];
            }
            let mut source = Slices {
                slices: slices.into_iter().flatten().collect(),
                at: 0,
                pos: 0,
            };
            walk(&mut source, carried, (start, end, n), aggs, ties, emit)
        }
        None => {
            let mut source = Records {
                runs: rest,
                at: 0,
                pos,
                buf: Vec::new(),
            };
            walk(&mut source, carried, (start, end, n), aggs, ties, emit)
        }
    }
}

/// Records in time order, handed out period by period.
trait Source {
    /// Calls `f` on the next records with time <= `to`, in order, as one or more slices.
    fn take_until(&mut self, to: i64, f: &mut dyn FnMut(&[Record]));
}

/// Contiguous runs: slices of the stored records themselves.
struct Slices<'a> {
    slices: Vec<&'a [Record]>,
    at: usize,
    pos: usize,
}

impl Source for Slices<'_> {
    fn take_until(&mut self, to: i64, f: &mut dyn FnMut(&[Record])) {
        while let Some(s) = self.slices.get(self.at) {
            let rest = &s[self.pos..];
            let k = records_until(rest, to);
            if k > 0 {
                f(&rest[..k]);
            }
            self.pos += k;
            if self.pos < s.len() {
                return;
            }
            self.at += 1;
            self.pos = 0;
        }
    }
}

/// How many of `rs` (sorted) have time <= `to`: a gallop from the front, since a period takes only its own
/// records (a binary search over the whole remaining run would miss the cache on nearly every probe).
fn records_until(rs: &[Record], to: i64) -> usize {
    let mut hi = 1;
    while hi <= rs.len() && rs[hi - 1].time <= to {
        hi *= 2;
    }
    let lo = hi / 2;
    let hi = (hi - 1).min(rs.len());
    lo + rs[lo..hi].partition_point(|r| r.time <= to)
}

/// Permuted runs: record by record, gathered into a buffer per period.
struct Records<'a, R: Run + ?Sized> {
    runs: &'a [&'a R],
    at: usize,
    pos: usize,
    buf: Vec<Record>,
}

impl<R: Run + ?Sized> Source for Records<'_, R> {
    fn take_until(&mut self, to: i64, f: &mut dyn FnMut(&[Record])) {
        self.buf.clear();
        while let Some(run) = self.runs.get(self.at) {
            while self.pos < run.len() && run.time(self.pos) <= to {
                self.buf.push(run.record(self.pos));
                self.pos += 1;
            }
            if self.pos < run.len() {
                break;
            }
            self.at += 1;
            self.pos = 0;
        }
        f(&self.buf);
    }
}

/// The periods over the records after `start`.
fn walk(
    source: &mut dyn Source,
    mut carried: Slot,
    (start, end, n): (i64, i64, usize),
    aggs: &[Agg],
    ties: Ties,
    mut emit: impl FnMut(i64, &[Slot]),
) {
    let needs = Needs::of(aggs);
    let mut answers: Vec<Slot> = vec![None; aggs.len()];
    let mut from = start;
    let mut canon = Canon::default();
    for i in 0..n {
        let to = asof::sample_time(start, end, i, n);
        let mut period = Period::new(needs, from, to, carried);
        match ties {
            Ties::LastReceived => source.take_until(to, &mut |rs| period.add_all(rs)),
            Ties::GreatestBits => {
                source.take_until(to, &mut |rs| canon.add(&mut period, rs));
                // A group never spans two periods (its records share one time).
                canon.flush(&mut period);
            }
        }
        let last = period.held;
        for (slot, &agg) in answers.iter_mut().zip(aggs) {
            *slot = period.finish(agg, last);
        }
        emit(to, &answers);
        carried = last;
        from = to;
    }
}

/// Feeds a period its records with each group of equal time in ascending order of value bits
/// ([`Ties::GreatestBits`]). Slices without equal times pass straight through; a slice's last time is held
/// back (its group may go on in the next slice: a run can come as two), and a slice with groups inside is
/// copied and its groups sorted.
#[derive(Default)]
struct Canon {
    /// Records of one time held back, not yet added.
    group: Vec<Record>,
    buf: Vec<Record>,
}

impl Canon {
    fn add(&mut self, period: &mut Period, mut rs: &[Record]) {
        if let Some(t) = self.group.first().map(|r| r.time) {
            let k = rs.iter().take_while(|r| r.time == t).count();
            self.group.extend_from_slice(&rs[..k]);
            rs = &rs[k..];
            if rs.is_empty() {
                return;
            }
            self.flush(period);
        }
        let Some(last) = rs.last().map(|r| r.time) else {
            return;
        };
        let held = rs.iter().rev().take_while(|r| r.time == last).count();
        let (body, tail) = rs.split_at(rs.len() - held);
        if body.windows(2).all(|w| w[0].time != w[1].time) {
            period.add_all(body);
        } else {
            self.buf.clear();
            self.buf.extend_from_slice(body);
            for g in self.buf.chunk_by_mut(|a, b| a.time == b.time) {
                sort_by_bits(g);
            }
            period.add_all(&self.buf);
        }
        self.group.extend_from_slice(tail);
    }

    /// Adds the group held back.
    fn flush(&mut self, period: &mut Period) {
        sort_by_bits(&mut self.group);
        period.add_all(&self.group);
        self.group.clear();
    }
}

/// Records of one time in ascending order of their value bits (value 0 first).
fn sort_by_bits(group: &mut [Record]) {
    debug_assert!(group.windows(2).all(|w| w[0].time == w[1].time));
    if group.len() > 1 {
        group.sort_unstable_by_key(|r| r.values.map(f64::to_bits));
    }
}

/// `smooth=N`: replaces each answer by the mean of the non-null answers among the last `n` samples (this
/// one included), slot by slot; null where all of them are null.
pub fn smooth(samples: &mut [Vec<Slot>], n: usize) {
    if n <= 1 || samples.is_empty() {
        return;
    }
    let aggs = samples[0].len();
    for j in 0..aggs {
        let column: Vec<Slot> = samples.iter().map(|s| s[j]).collect();
        let mut sum = [0.0; VALUES];
        let mut present = 0usize;
        for i in 0..column.len() {
            if let Some(v) = column[i] {
                for k in 0..VALUES {
                    sum[k] += v[k];
                }
                present += 1;
            }
            if i >= n {
                if let Some(v) = column[i - n] {
                    for k in 0..VALUES {
                        sum[k] -= v[k];
                    }
                    present -= 1;
                }
            }
            samples[i][j] = (present > 0).then(|| sum.map(|s| s / present as f64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::asof::runs_of;
    use proptest::prelude::*;

    /// Records in arrival order; each value slot differs so slot mix-ups show.
    fn rec(time: i64, v: f64) -> Record {
        let mut values = [0.0; VALUES];
        for (k, x) in values.iter_mut().enumerate() {
            *x = v * (k as f64 + 1.0) - k as f64;
        }
        Record { time, values }
    }

    /// The as-of value at `t` by scanning everything in arrival order (the latest time <= t, ties to the
    /// record received last).
    fn asof_model(arrivals: &[Record], t: i64) -> Slot {
        let mut best: Option<Record> = None;
        for r in arrivals {
            if r.time <= t && best.map_or(true, |b| r.time >= b.time) {
                best = Some(*r);
            }
        }
        best.map(|r| r.values)
    }

    /// Every aggregation of `(a, b]` computed the naive way, straight from the definitions.
    fn model(arrivals: &[Record], a: i64, b: i64, agg: Agg) -> Slot {
        let mut inside: Vec<Record> = arrivals
            .iter()
            .copied()
            .filter(|r| r.time > a && r.time <= b)
            .collect();
        inside.sort_by_key(|r| r.time);
        let per_slot = |f: &dyn Fn(&[f64]) -> f64| -> Slot {
            if inside.is_empty() {
                return None;
            }
            let mut out = [0.0; VALUES];
            for (k, o) in out.iter_mut().enumerate() {
                let xs: Vec<f64> = inside.iter().map(|r| r.values[k]).collect();
                *o = f(&xs);
            }
            Some(out)
        };
        match agg {
            Agg::Last => asof_model(arrivals, b),
            Agg::First => inside.first().map(|r| r.values),
            Agg::Min => per_slot(&|xs| xs.iter().copied().fold(f64::INFINITY, f64::min)),
            Agg::Max => per_slot(&|xs| xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            Agg::Sum => per_slot(&|xs| xs.iter().sum()),
            Agg::Mean => per_slot(&|xs| xs.iter().sum::<f64>() / xs.len() as f64),
            Agg::Count => per_slot(&|xs| xs.len() as f64),
            Agg::Twa => {
                // Integrate the step function between consecutive breakpoints.
                let mut points: Vec<i64> = vec![a, b];
                points.extend(inside.iter().map(|r| r.time).filter(|&t| t < b));
                points.sort_unstable();
                points.dedup();
                let (mut area, mut defined) = ([0.0; VALUES], 0.0);
                for w in points.windows(2) {
                    if let Some(v) = asof_model(arrivals, w[0]) {
                        let len = (w[1] - w[0]) as f64;
                        for k in 0..VALUES {
                            area[k] += v[k] * len;
                        }
                        defined += len;
                    }
                }
                if defined > 0.0 {
                    Some(area.map(|x| x / defined))
                } else {
                    asof_model(arrivals, b)
                }
            }
        }
    }

    fn close(got: &Slot, want: &Slot) -> bool {
        match (got, want) {
            (None, None) => true,
            (Some(g), Some(w)) => g
                .iter()
                .zip(w)
                .all(|(g, w)| (g - w).abs() <= 1e-9 * w.abs().max(1.0)),
            _ => false,
        }
    }

    /// A run read record by record (as a permuted segment is: `.1` is `None`), so the walk's other path is
    /// checked too; or handed out as two slices split at `.1` (as a ring-buffered segment is), so a group of
    /// equal time can straddle them.
    struct Opaque<'a>(&'a [Record], Option<usize>);

    impl Run for Opaque<'_> {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn time(&self, i: usize) -> i64 {
            self.0[i].time
        }
        fn record(&self, i: usize) -> Record {
            self.0[i]
        }
        fn slices(&self) -> Option<[&[Record]; 2]> {
            let k = self.1?.min(self.0.len());
            Some([&self.0[..k], &self.0[k..]])
        }
    }

    fn check(arrivals: &[Record], seg: i64, start: i64, end: i64, n: usize) {
        let runs = runs_of(arrivals, seg);
        let refs: Vec<&[Record]> = runs.iter().map(|r| &r[..]).collect();
        let opaque: Vec<Opaque> = runs.iter().map(|r| Opaque(r, None)).collect();
        let opaque: Vec<&Opaque> = opaque.iter().collect();
        let mut by_record = Vec::new();
        aggregate(
            &opaque,
            (start, end, n),
            &Agg::ALL,
            Ties::LastReceived,
            |t, s| by_record.push((t, s.to_vec())),
        );
        let mut by_slice = Vec::new();
        aggregate(
            &refs,
            (start, end, n),
            &Agg::ALL,
            Ties::LastReceived,
            |t, s| by_slice.push((t, s.to_vec())),
        );
        assert_eq!(by_record, by_slice, "both walks agree");
        let mut from = start;
        let mut i = 0;
        aggregate(
            &refs,
            (start, end, n),
            &Agg::ALL,
            Ties::LastReceived,
            |t, slots| {
                assert_eq!(t, asof::sample_time(start, end, i, n));
                for (agg, got) in Agg::ALL.iter().zip(slots) {
                    let want = model(arrivals, from, t, *agg);
                    assert!(
                        close(got, &want),
                        "{} of ({from}, {t}] (sample {i}): got {got:?}, want {want:?}",
                        agg.name()
                    );
                }
                from = t;
                i += 1;
            },
        );
        assert_eq!(i, n);
    }

    #[test]
    fn twa_weighs_each_value_by_how_long_it_held() {
        // 10 before the window, 20 from t=4, 40 from t=9: over (0, 10] that is 10*4 + 20*5 + 40*1 = 180.
        let arrivals = [rec(-5, 10.0), rec(4, 20.0), rec(9, 40.0)];
        let refs: Vec<&[Record]> = vec![&arrivals[..]];
        let mut got = Vec::new();
        aggregate(
            &refs,
            (0, 10, 1),
            &[Agg::Twa, Agg::Mean, Agg::Count, Agg::Last],
            Ties::LastReceived,
            |_, s| got = s.to_vec(),
        );
        assert_eq!(got[0].unwrap()[0], 18.0);
        assert_eq!(got[1].unwrap()[0], 30.0);
        assert_eq!(got[2].unwrap()[0], 2.0);
        assert_eq!(got[3].unwrap()[0], 40.0);
    }

    #[test]
    fn empty_periods_are_null_except_last_and_twa_which_carry() {
        let arrivals = [rec(1, 5.0)];
        let refs: Vec<&[Record]> = vec![&arrivals[..]];
        let mut all = Vec::new();
        aggregate(&refs, (0, 4, 2), &Agg::ALL, Ties::LastReceived, |_, s| {
            all.push(s.to_vec())
        });
        // Period (2, 4] holds no record.
        for (agg, slot) in Agg::ALL.iter().zip(&all[1]) {
            let carries = matches!(agg, Agg::Last | Agg::Twa);
            assert_eq!(slot.is_some(), carries, "{}", agg.name());
        }
        assert_eq!(all[1][7].unwrap()[0], 5.0);
    }

    #[test]
    fn smoothing_averages_the_last_n_present_samples() {
        let s = |v: f64| Some([v; VALUES]);
        let mut col: Vec<Vec<Slot>> = vec![
            vec![s(1.0)],
            vec![None],
            vec![s(3.0)],
            vec![s(5.0)],
            vec![None],
            vec![None],
        ];
        smooth(&mut col, 2);
        let got: Vec<Option<f64>> = col.iter().map(|c| c[0].map(|v| v[0])).collect();
        assert_eq!(
            got,
            vec![Some(1.0), Some(1.0), Some(3.0), Some(4.0), Some(5.0), None]
        );
    }

    type Answers = Vec<(i64, Vec<Slot>)>;

    /// Answers as bit patterns: compared exactly, not within a tolerance.
    fn bits(a: &Answers) -> Vec<(i64, Vec<Option<[u64; VALUES]>>)> {
        a.iter()
            .map(|(t, s)| {
                (
                    *t,
                    s.iter().map(|x| x.map(|v| v.map(f64::to_bits))).collect(),
                )
            })
            .collect()
    }

    /// Every aggregation of `arrivals` with `ties`, through slices split at `split`, through slices whole,
    /// and record by record: all three must agree.
    fn answers(
        arrivals: &[Record],
        seg: i64,
        w: (i64, i64, usize),
        ties: Ties,
        split: usize,
    ) -> Answers {
        let runs = runs_of(arrivals, seg);
        let mut out: Vec<Answers> = Vec::new();
        let halves: Vec<Opaque> = runs.iter().map(|r| Opaque(r, Some(split))).collect();
        let opaque: Vec<Opaque> = runs.iter().map(|r| Opaque(r, None)).collect();
        let whole: Vec<&[Record]> = runs.iter().map(|r| &r[..]).collect();
        let mut got = Vec::new();
        aggregate(
            &halves.iter().collect::<Vec<_>>(),
            w,
            &Agg::ALL,
            ties,
            |t, s| got.push((t, s.to_vec())),
        );
        out.push(std::mem::take(&mut got));
        aggregate(
            &opaque.iter().collect::<Vec<_>>(),
            w,
            &Agg::ALL,
            ties,
            |t, s| got.push((t, s.to_vec())),
        );
        out.push(std::mem::take(&mut got));
        aggregate(&whole, w, &Agg::ALL, ties, |t, s| got.push((t, s.to_vec())));
        out.push(got);
        assert_eq!(
            bits(&out[0]),
            bits(&out[2]),
            "split slices and whole slices agree"
        );
        assert_eq!(
            bits(&out[1]),
            bits(&out[2]),
            "record by record and slices agree"
        );
        out.pop().unwrap_or_default()
    }

    #[test]
    fn cluster_ties_take_equal_times_in_order_of_value_bits() {
        // Three records of time 5 in two arrival orders: `first` is the least bits (1.0), `last` and the
        // value `twa` holds from 5 on the greatest (-3.0 has the sign bit).
        for arrivals in [
            [rec(5, 1.0), rec(5, -3.0), rec(5, 2.0), rec(8, 0.5)],
            [rec(5, 2.0), rec(5, 1.0), rec(5, -3.0), rec(8, 0.5)],
        ] {
            let got = answers(&arrivals, 100, (0, 10, 1), Ties::GreatestBits, 2);
            let slot =
                |agg: Agg| got[0].1[Agg::ALL.iter().position(|a| *a == agg).unwrap()].unwrap()[0];
            assert_eq!(slot(Agg::First), 1.0);
            assert_eq!(slot(Agg::Last), 0.5);
            // -3.0 holds over (5, 8], 0.5 over (8, 10]: (-3*3 + 0.5*2) / 5.
            assert!((slot(Agg::Twa) - (-3.0 * 3.0 + 0.5 * 2.0) / 5.0).abs() < 1e-12);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Cluster mode: whatever the arrival order, every aggregation answers bit for bit what a node
        /// that received each group of equal time in ascending order of value bits answers on a single
        /// node's rule.
        #[test]
        fn cluster_answers_do_not_depend_on_the_arrival_order(
            raw in proptest::collection::vec((-20i64..20, -4i32..4), 0..60),
            order in proptest::collection::vec(any::<u64>(), 60),
            seg in 1i64..30,
            start in -30i64..30,
            len in 1i64..50,
            n in 1usize..12,
            split in 0usize..8,
        ) {
            // Few distinct values (quarters, some negative, 0.0 and -0.0) so that equal times often
            // carry different values in one group.
            let arrivals: Vec<Record> = raw
                .iter()
                .map(|&(t, v)| rec(t, if v == -4 { -0.0 } else { f64::from(v) * 0.25 }))
                .collect();
            let mut keyed: Vec<(u64, Record)> = order.iter().copied().zip(arrivals.iter().copied()).collect();
            keyed.sort_by_key(|(k, _)| *k);
            let shuffled: Vec<Record> = keyed.into_iter().map(|(_, r)| r).collect();
            let mut canonical = arrivals.clone();
            canonical.sort_by_key(|r| (r.time, r.values.map(f64::to_bits)));
            let w = (start, start + len, n);
            let want = bits(&answers(&canonical, seg, w, Ties::LastReceived, split));
            prop_assert_eq!(&bits(&answers(&arrivals, seg, w, Ties::GreatestBits, split)), &want);
            prop_assert_eq!(&bits(&answers(&shuffled, seg, w, Ties::GreatestBits, split)), &want);
            let mut reversed = arrivals.clone();
            reversed.reverse();
            prop_assert_eq!(&bits(&answers(&reversed, seg, w, Ties::GreatestBits, split)), &want);
        }

        #[test]
        fn every_aggregation_matches_the_naive_model(
            raw in proptest::collection::vec((-40i64..40, -1000.0f64..1000.0), 0..50),
            seg in 1i64..30,
            start in -50i64..50,
            len in 1i64..80,
            n in 1usize..25,
        ) {
            let arrivals: Vec<Record> = raw.iter().map(|&(t, v)| rec(t, v)).collect();
            check(&arrivals, seg, start, start + len, n);
        }
    }
}
