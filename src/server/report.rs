//! Per-core counters and the console line printed every `--report-interval`: requests, records, errors and
//! the hdrhistogram percentiles of service time (head parsed -> response queued) since the last line, then
//! the storage's side: log commits (count, p99, max device time) and checkpoints (count, files, longest).

use std::cell::RefCell;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::store::iostats::IoStats;

pub struct Stats {
    pub requests: u64,
    pub records: u64,
    pub errors: u64,
    pub service_ns: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            requests: 0,
            records: 0,
            errors: 0,
            service_ns: Histogram::new_with_bounds(1_000, 60_000_000_000, 3)
                .expect("static histogram bounds"),
        }
    }
}

impl Stats {
    pub fn record(&mut self, ns: u64, records: u64, error: bool) {
        self.requests += 1;
        self.records += records;
        self.errors += error as u64;
        let _ = self.service_ns.record(ns.clamp(1_000, 60_000_000_000));
    }
}

fn fmt_ns(ns: u64) -> String {
    match ns {
        0..=999_999 => format!("{:.0}µs", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

/// One console line; resets the counters.
pub fn line(
    core: usize,
    stats: &RefCell<Stats>,
    io: &mut IoStats,
    interval: Duration,
    tags: usize,
) -> String {
    let mut s = stats.borrow_mut();
    let h = &s.service_ns;
    let secs = interval.as_secs_f64().max(1e-9);
    let text = format!(
        "core {core}: {:>8.0} req/s {:>9.0} rec/s  req {} rec {} err {} tags {} | service p50 {} p99 {} p99.9 {} max {}",
        s.requests as f64 / secs,
        s.records as f64 / secs,
        s.requests,
        s.records,
        s.errors,
        tags,
        fmt_ns(h.value_at_quantile(0.5)),
        fmt_ns(h.value_at_quantile(0.99)),
        fmt_ns(h.value_at_quantile(0.999)),
        fmt_ns(h.max()),
    );
    let c = &io.commit_ns;
    let text = if c.is_empty() {
        text
    } else {
        format!(
            "{text} | commit n {} p99 {} max {}",
            c.len(),
            fmt_ns(c.value_at_quantile(0.99)),
            fmt_ns(c.max())
        )
    };
    let text = if io.checkpoints == 0 {
        text
    } else {
        format!(
            "{text} | checkpoint {} ({} files, max {})",
            io.checkpoints,
            io.checkpoint_files,
            fmt_ns(io.checkpoint_ns_max)
        )
    };
    *s = Stats::default();
    io.reset_interval();
    text
}
