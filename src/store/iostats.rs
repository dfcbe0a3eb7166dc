//! What a core's storage did since the last console line: how long each log commit took on the device (write
//! submitted -> durable) and what the checkpoints cost. It tells a slow disk from a busy core when request
//! latency spikes. Plain counters on one executor; read and reset by `server::report`.

use hdrhistogram::Histogram;

pub struct IoStats {
    /// Log commit time, write submitted to completion (`O_DSYNC`: durable), in ns.
    pub commit_ns: Histogram<u64>,
    pub checkpoints: u64,
    pub checkpoint_files: u64,
    pub checkpoint_ns_max: u64,
}

impl Default for IoStats {
    fn default() -> Self {
        IoStats {
            commit_ns: Histogram::new_with_bounds(1_000, 60_000_000_000, 3)
                .expect("static histogram bounds"),
            checkpoints: 0,
            checkpoint_files: 0,
            checkpoint_ns_max: 0,
        }
    }
}

impl IoStats {
    pub fn commit(&mut self, ns: u64) {
        let _ = self.commit_ns.record(ns.clamp(1_000, 60_000_000_000));
    }

    pub fn checkpoint(&mut self, files: usize, ns: u64) {
        self.checkpoints += 1;
        self.checkpoint_files += files as u64;
        self.checkpoint_ns_max = self.checkpoint_ns_max.max(ns);
    }
}
