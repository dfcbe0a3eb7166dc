//! What a core's storage did since the last console line: how long each log commit took on the device (write
//! submitted -> durable) and what the checkpoints cost. It tells a slow disk from a busy core when request
//! latency spikes. Plain counters on one executor; the interval figures are read and reset by
//! `server::report`, the cumulative ones (`*_total`, `commit_hist`) by `/metrics`.

use hdrhistogram::Histogram;

pub struct IoStats {
    /// Log commit time, write submitted to completion (`O_DSYNC`: durable), in ns.
    pub commit_ns: Histogram<u64>,
    pub checkpoints: u64,
    pub checkpoint_files: u64,
    pub checkpoint_ns_max: u64,
    pub commits_total: u64,
    pub commit_records_total: u64,
    pub commit_hist: crate::hist::Hist,
    pub checkpoints_total: u64,
    /// Checkpoints that failed (an I/O error): their records stay in memory and in the log, retried.
    pub checkpoint_failures_total: u64,
    /// Dirty segments a checkpoint's budget left for a later one (their generations held meanwhile).
    pub checkpoint_deferred_total: u64,
    /// Tag files checkpoints wrote, and the most one checkpoint wrote, since start.
    pub checkpoint_files_total: u64,
    pub checkpoint_files_max: u64,
}

impl Default for IoStats {
    fn default() -> Self {
        IoStats {
            commit_ns: Histogram::new_with_bounds(1_000, 60_000_000_000, 3)
                .expect("static histogram bounds"),
            checkpoints: 0,
            checkpoint_files: 0,
            checkpoint_ns_max: 0,
            commits_total: 0,
            commit_records_total: 0,
            commit_hist: Default::default(),
            checkpoints_total: 0,
            checkpoint_failures_total: 0,
            checkpoint_deferred_total: 0,
            checkpoint_files_total: 0,
            checkpoint_files_max: 0,
        }
    }
}

impl IoStats {
    pub fn commit(&mut self, ns: u64) {
        let _ = self.commit_ns.record(ns.clamp(1_000, 60_000_000_000));
        self.commit_hist.observe_ns(ns);
        self.commits_total += 1;
    }

    /// Clears the figures of one console interval (the cumulative ones stay).
    pub fn reset_interval(&mut self) {
        self.commit_ns.reset();
        self.checkpoints = 0;
        self.checkpoint_files = 0;
        self.checkpoint_ns_max = 0;
    }

    pub fn checkpoint(&mut self, files: usize, ns: u64) {
        self.checkpoints += 1;
        self.checkpoints_total += 1;
        self.checkpoint_files += files as u64;
        self.checkpoint_ns_max = self.checkpoint_ns_max.max(ns);
        self.checkpoint_files_total += files as u64;
        self.checkpoint_files_max = self.checkpoint_files_max.max(files as u64);
    }
}
