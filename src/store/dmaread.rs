//! As-of answers from a time-sorted tag file with DMA reads (`--reads dma`), instead of through an mmap whose
//! cold page faults stall the whole core. For every sample time, a binary search over the file's persisted
//! records runs in lock-step with the others: each round asks for the blocks holding the probed records'
//! times, reads the missing ones concurrently (through the core's [`BlockCache`]) and then compares. At the end
//! the answering records are read and returned, deduplicated in file order: a subsequence of the file that
//! holds every sample's answer, so the in-memory as-of walk over it gives the same answers as over the file.
//! [`Search`] is the pure part (no I/O); [`answers`] does the reads.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use glommio::io::DmaFile;

use crate::record::{Record, RECORD_BYTES};
use crate::store::blockcache::{BlockCache, BLOCK_BYTES};

/// Lock-step upper-bound searches over `n` sorted records: for each time `t`, the number of records with
/// time <= t.
pub struct Search {
    times: Vec<i64>,
    lo: Vec<usize>,
    hi: Vec<usize>,
}

impl Search {
    pub fn new(times: &[i64], n: usize) -> Self {
        Search {
            times: times.to_vec(),
            lo: vec![0; times.len()],
            hi: vec![n; times.len()],
        }
    }

    /// The record indexes whose times the next round compares; empty once every search has ended.
    pub fn probes(&self) -> BTreeSet<usize> {
        (0..self.times.len())
            .filter(|&i| self.lo[i] < self.hi[i])
            .map(|i| self.lo[i] + (self.hi[i] - self.lo[i]) / 2)
            .collect()
    }

    /// One round: `time_of` answers for every index [`Search::probes`] returned.
    pub fn step(&mut self, time_of: impl Fn(usize) -> i64) {
        for i in 0..self.times.len() {
            if self.lo[i] < self.hi[i] {
                let mid = self.lo[i] + (self.hi[i] - self.lo[i]) / 2;
                if time_of(mid) <= self.times[i] {
                    self.lo[i] = mid + 1;
                } else {
                    self.hi[i] = mid;
                }
            }
        }
    }

    /// After the last round: per time, the count of records with time <= it.
    pub fn bounds(&self) -> &[usize] {
        debug_assert!(
            self.lo == self.hi,
            "BUG: bounds read before the search ended"
        );
        &self.lo
    }
}

/// The blocks holding bytes `from..to` of the file.
fn blocks_of(from: usize, to: usize) -> std::ops::RangeInclusive<u64> {
    (from / BLOCK_BYTES) as u64..=((to - 1) / BLOCK_BYTES) as u64
}

/// Reads `blocks` (those not cached) concurrently; whole blocks below `cacheable_end` bytes go in the cache.
async fn fetch(
    file: &DmaFile,
    cache: &RefCell<BlockCache>,
    cache_id: u64,
    cacheable_end: usize,
    blocks: impl Iterator<Item = u64>,
    got: &mut HashMap<u64, Rc<[u8]>>,
) -> std::io::Result<()> {
    let mut missing = Vec::new();
    for b in blocks {
        if got.contains_key(&b) {
            continue;
        }
        match cache.borrow_mut().get((cache_id, b)) {
            Some(block) => {
                got.insert(b, block);
            }
            None => missing.push(b),
        }
    }
    let reads = missing
        .iter()
        .map(|&b| file.read_at(b * BLOCK_BYTES as u64, BLOCK_BYTES));
    for (b, r) in missing.iter().zip(futures::future::join_all(reads).await) {
        let r = r.map_err(|e| std::io::Error::other(e.to_string()))?;
        if r.len() != BLOCK_BYTES {
            return Err(std::io::Error::other(format!(
                "short read of block {b}: {} bytes (tag files are whole blocks)",
                r.len()
            )));
        }
        let block: Rc<[u8]> = Rc::from(&r[..]);
        if (*b as usize + 1) * BLOCK_BYTES <= cacheable_end {
            cache.borrow_mut().put((cache_id, *b), Rc::clone(&block));
        }
        got.insert(*b, block);
    }
    Ok(())
}

fn bytes_at(got: &HashMap<u64, Rc<[u8]>>, from: usize, out: &mut [u8]) {
    for (k, byte) in out.iter_mut().enumerate() {
        let at = from + k;
        *byte = got[&((at / BLOCK_BYTES) as u64)][at % BLOCK_BYTES];
    }
}

/// For sample `times` (ascending) over the first `persisted` records of a time-sorted tag file: the records
/// that answer them, deduplicated, in file order.
pub async fn answers(
    file: &DmaFile,
    cache: &RefCell<BlockCache>,
    cache_id: u64,
    persisted: usize,
    times: &[i64],
) -> std::io::Result<Vec<Record>> {
    let cacheable_end = persisted * RECORD_BYTES / BLOCK_BYTES * BLOCK_BYTES;
    let mut search = Search::new(times, persisted);
    let mut got: HashMap<u64, Rc<[u8]>> = HashMap::new();
    loop {
        let probes = search.probes();
        if probes.is_empty() {
            break;
        }
        // A record's time is its first 8 bytes, never split across blocks (88k mod 4096 <= 4088).
        let blocks = probes
            .iter()
            .map(|&i| (i * RECORD_BYTES / BLOCK_BYTES) as u64);
        fetch(file, cache, cache_id, cacheable_end, blocks, &mut got).await?;
        search.step(|i| {
            let mut t = [0u8; 8];
            bytes_at(&got, i * RECORD_BYTES, &mut t);
            i64::from_le_bytes(t)
        });
    }
    let wanted: BTreeSet<usize> = search
        .bounds()
        .iter()
        .filter(|&&b| b > 0)
        .map(|b| b - 1)
        .collect();
    let blocks = wanted
        .iter()
        .flat_map(|&i| blocks_of(i * RECORD_BYTES, (i + 1) * RECORD_BYTES));
    fetch(file, cache, cache_id, cacheable_end, blocks, &mut got).await?;
    Ok(wanted
        .iter()
        .map(|&i| {
            let mut r = [0u8; RECORD_BYTES];
            bytes_at(&got, i * RECORD_BYTES, &mut r);
            bytemuck::pod_read_unaligned::<Record>(&r)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(times: &[i64], sorted: &[i64]) -> Vec<usize> {
        let mut s = Search::new(times, sorted.len());
        let mut rounds = 0;
        while !s.probes().is_empty() {
            s.step(|i| sorted[i]);
            rounds += 1;
            assert!(rounds <= 64, "the search ends");
        }
        s.bounds().to_vec()
    }

    proptest! {
        #[test]
        fn lock_step_search_equals_upper_bound(
            mut sorted in proptest::collection::vec(-50i64..50, 0..300),
            mut times in proptest::collection::vec(-60i64..60, 1..50),
        ) {
            sorted.sort();
            times.sort();
            let want: Vec<usize> = times.iter().map(|t| sorted.partition_point(|x| x <= t)).collect();
            prop_assert_eq!(run(&times, &sorted), want);
        }
    }

    #[test]
    fn block_ranges() {
        assert_eq!(blocks_of(0, 88), 0..=0);
        assert_eq!(blocks_of(46 * 88, 47 * 88), 0..=1); // record 46 spans bytes 4048..4136
        assert_eq!(blocks_of(4096, 4096 + 88), 1..=1);
    }
}
