//! The `/api` answer: the as-of samples (or, with `agg=`, the aggregates) of a window's runs, rendered as
//! JSON. The store hands the runs over ([`WithRuns`]); this is where they become a body.

use crate::query::agg::{self, Agg, Slot};
use crate::query::asof::{self, Run, WithRuns};
use crate::query::params::Window;
use crate::query::render;

/// Renders the answer to `w` into `out`.
pub struct Api<'a> {
    pub w: &'a Window,
    pub out: &'a mut Vec<u8>,
    /// How records of equal time are chosen (`asof::Ties`).
    pub ties: asof::Ties,
}

impl WithRuns for Api<'_> {
    type Out = ();
    fn with<R: Run + ?Sized>(self, runs: &[&R]) {
        let (w, out, ties) = (self.w, self.out, self.ties);
        if !w.aggs.is_empty() {
            return aggregates(out, w, runs, ties);
        }
        render::api_head(out, &w.tag, w.start, w.end);
        let mut first = true;
        asof::sample(runs, w.start, w.end, w.samples, ties, |time, r| {
            render::api_sample(out, first, time, r.as_ref());
            first = false;
        });
        render::api_tail(out);
    }
}

/// An answer with `agg=` (and `smooth=`): every sample is computed first, then smoothed.
fn aggregates<R: Run + ?Sized>(out: &mut Vec<u8>, w: &Window, runs: &[&R], ties: asof::Ties) {
    let mut times = Vec::with_capacity(w.samples);
    let mut answers: Vec<Vec<Slot>> = Vec::with_capacity(w.samples);
    if w.aggs == [Agg::Last] {
        // `last` alone is the as-of answer: the sampler's searches, not a scan of every record.
        asof::sample(runs, w.start, w.end, w.samples, ties, |t, r| {
            times.push(t);
            answers.push(vec![r.map(|r| r.values)]);
        });
    } else {
        agg::aggregate(
            runs,
            (w.start, w.end, w.samples),
            &w.aggs,
            ties,
            |t, slots| {
                times.push(t);
                answers.push(slots.to_vec());
            },
        );
    }
    agg::smooth(&mut answers, w.smooth);
    render::agg_head(out, &w.tag, w.start, w.end, &w.aggs);
    for (i, (t, slots)) in times.iter().zip(&answers).enumerate() {
        render::agg_sample(out, i == 0, *t, &w.aggs, slots);
    }
    render::api_tail(out);
}
