//! Latency histograms with Prometheus's fixed buckets (the `/metrics` exposition), kept as plain counters by
//! the executor that observes them. (Console figures use hdrhistogram; these exist because Prometheus needs
//! fixed, cumulative buckets.)

/// Upper bounds of the latency histograms' buckets, in seconds (50 us to 10 s).
pub const BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// A Prometheus histogram: counts per bucket (not cumulative; the last slot is +Inf), sum and count.
#[derive(Debug, Clone, Default)]
pub struct Hist {
    pub counts: [u64; BUCKETS.len() + 1],
    pub sum_s: f64,
    pub count: u64,
}

impl Hist {
    pub fn observe_ns(&mut self, ns: u64) {
        let s = ns as f64 / 1e9;
        let i = BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum_s += s;
        self.count += 1;
    }
}
