//! As-of answers from a time-sorted tag file with DMA reads (`--reads dma`), instead of through an mmap whose
//! cold page faults stall the whole core. For every sample time, a binary search over the file's persisted
//! records runs in lock-step with the others: each round asks for the blocks holding the probed records'
//! times, reads the missing ones concurrently (through the core's [`BlockCache`]) and then compares. At the end
//! the answering records are read and returned, deduplicated in file order: a subsequence of the file that
//! holds every sample's answer, so the in-memory as-of walk over it gives the same answers as over the file.
//! [`Search`] is the pure part (no I/O); [`answers`] does the reads.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use glommio::io::DmaFile;
use rustc_hash::FxHashMap;

use crate::record::{Record, RECORD_BYTES};
use crate::store::blockcache::BlockCache;
use crate::store::BLOCK as BLOCK_BYTES;

/// Lock-step upper-bound searches over `n` sorted records: for each time `t`, the number of records with
/// time <= t. Each round probes one record per unfinished search, chosen by interpolation between the times
/// known at its bounds (every third such probe bisects, so skewed data still ends in O(log n) rounds), and
/// then narrows with every record whose time sits in the probed block (those bytes were read anyway). On
/// evenly spaced data a search ends in three or four rounds: the first and the last block, then the right one.
pub struct Search {
    n: usize,
    /// Probes made with both bounds' times known, per search: every third one bisects.
    bracketed: Vec<u32>,
    times: Vec<i64>,
    /// Records `< lo` have time <= t; records `>= hi` have time > t.
    lo: Vec<usize>,
    hi: Vec<usize>,
    /// Time of record `lo - 1` and of record `hi`, once read.
    at_lo: Vec<Option<i64>>,
    at_hi: Vec<Option<i64>>,
}

/// The records whose time (their first 8 bytes) lies in block `b`: `first..end`.
fn records_timed_in(b: u64) -> (usize, usize) {
    let start = b as usize * BLOCK_BYTES;
    let first = start.div_ceil(RECORD_BYTES);
    let end = (start + BLOCK_BYTES - 8) / RECORD_BYTES + 1;
    (first, end)
}

fn block_of(record: usize) -> u64 {
    (record * RECORD_BYTES / BLOCK_BYTES) as u64
}

impl Search {
    pub fn new(times: &[i64], n: usize) -> Self {
        Search {
            n,
            bracketed: vec![0; times.len()],
            times: times.to_vec(),
            lo: vec![0; times.len()],
            hi: vec![n; times.len()],
            at_lo: vec![None; times.len()],
            at_hi: vec![None; times.len()],
        }
    }

    /// The record search `i` probes this round, if it has not ended.
    fn probe(&self, i: usize) -> Option<usize> {
        let (lo, hi, t) = (self.lo[i], self.hi[i], self.times[i]);
        if lo >= hi {
            return None;
        }
        Some(match (self.at_lo[i], self.at_hi[i]) {
            (None, _) if lo == 0 => 0,
            (_, None) if hi == self.n => self.n - 1,
            (Some(tl), Some(th)) if self.bracketed[i] % 3 != 2 && th > tl => {
                // Records lo-1 (time tl) and hi (time th) bracket t: place it in proportion.
                let span = (hi - lo + 1) as i128;
                let guess =
                    (lo - 1) as i128 + (t as i128 - tl as i128) * span / (th as i128 - tl as i128);
                (guess.max(lo as i128) as usize).min(hi - 1)
            }
            _ => lo + (hi - lo) / 2,
        })
    }

    /// The blocks this round reads (the ones holding each probed record's time); empty once all have ended.
    pub fn blocks(&self) -> BTreeSet<u64> {
        (0..self.times.len())
            .filter_map(|i| self.probe(i))
            .map(block_of)
            .collect()
    }

    /// One round: `time_of` answers for every record whose time lies in a block [`Search::blocks`] returned
    /// (and may answer `None` for others).
    pub fn step(&mut self, time_of: impl Fn(usize) -> Option<i64>) {
        for i in 0..self.times.len() {
            let Some(p) = self.probe(i) else { continue };
            if self.at_lo[i].is_some() && self.at_hi[i].is_some() {
                self.bracketed[i] += 1;
            }
            let (first, end) = records_timed_in(block_of(p));
            let (mut a, mut e) = (first.max(self.lo[i]), end.min(self.hi[i]));
            debug_assert!(
                a <= p && p < e,
                "BUG: probe {p} outside its block's records {a}..{e}"
            );
            let t = self.times[i];
            // Upper bound of t inside a..e, all of whose times were read.
            let (from, to) = (a, e);
            while a < e {
                let mid = a + (e - a) / 2;
                let tm = time_of(mid).expect("BUG: a probed block was not read");
                if tm <= t {
                    a = mid + 1;
                } else {
                    e = mid;
                }
            }
            if a > from {
                self.lo[i] = a;
                self.at_lo[i] = time_of(a - 1);
            }
            if a < to {
                self.hi[i] = a;
                self.at_hi[i] = time_of(a);
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
    got: &mut FxHashMap<u64, Rc<[u8]>>,
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

/// Copies bytes `from..from + out.len()` of the file out of the fetched blocks (at most two: a record spans
/// at most one block boundary).
fn bytes_at(got: &FxHashMap<u64, Rc<[u8]>>, from: usize, out: &mut [u8]) {
    let mut done = 0;
    while done < out.len() {
        let at = from + done;
        let block = &got[&((at / BLOCK_BYTES) as u64)];
        let off = at % BLOCK_BYTES;
        let n = (out.len() - done).min(BLOCK_BYTES - off);
        out[done..done + n].copy_from_slice(&block[off..off + n]);
        done += n;
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
    let mut got: FxHashMap<u64, Rc<[u8]>> = FxHashMap::default();
    loop {
        let blocks = search.blocks();
        if blocks.is_empty() {
            break;
        }
        fetch(
            file,
            cache,
            cache_id,
            cacheable_end,
            blocks.into_iter(),
            &mut got,
        )
        .await?;
        // A record's time is its first 8 bytes, never split across blocks (88k mod 4096 <= 4088).
        search.step(|i| {
            let at = i * RECORD_BYTES;
            let block = got.get(&((at / BLOCK_BYTES) as u64))?;
            let off = at % BLOCK_BYTES;
            Some(i64::from_le_bytes(
                block[off..off + 8].try_into().expect("8 bytes"),
            ))
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

    /// Runs the search with only the probed blocks readable, as the I/O loop does; returns the bounds and
    /// the rounds it took.
    fn run(times: &[i64], sorted: &[i64]) -> (Vec<usize>, usize) {
        let mut s = Search::new(times, sorted.len());
        let mut rounds = 0;
        loop {
            let blocks = s.blocks();
            if blocks.is_empty() {
                break;
            }
            s.step(|i| blocks.contains(&block_of(i)).then(|| sorted[i]));
            rounds += 1;
            assert!(rounds <= 200, "the search ends");
        }
        (s.bounds().to_vec(), rounds)
    }

    proptest! {
        #[test]
        fn lock_step_search_equals_upper_bound(
            mut sorted in proptest::collection::vec(-50i64..50, 0..3000),
            mut times in proptest::collection::vec(-60i64..60, 1..50),
            skew in 0u32..4,
        ) {
            // Skewed data (times growing as a power) defeats interpolation; bisection rounds bound it.
            for x in sorted.iter_mut() {
                *x = x.signum() * x.abs().pow(skew);
            }
            for x in times.iter_mut() {
                *x = x.signum() * x.abs().pow(skew);
            }
            sorted.sort();
            times.sort();
            let want: Vec<usize> = times.iter().map(|t| sorted.partition_point(|x| x <= t)).collect();
            let (got, rounds) = run(&times, &sorted);
            prop_assert_eq!(got, want);
            prop_assert!(rounds <= 3 * (usize::BITS - sorted.len().leading_zeros()) as usize + 3, "{} rounds", rounds);
        }
    }

    #[test]
    fn evenly_spaced_data_takes_few_rounds() {
        let sorted: Vec<i64> = (0..360_000).map(|i| i * 10).collect();
        let times: Vec<i64> = (1..=1000).map(|i| i * 3600).collect();
        let (got, rounds) = run(&times, &sorted);
        assert_eq!(got[999], 360_000);
        assert!(rounds <= 4, "{rounds} rounds");
    }

    #[test]
    fn records_timed_in_blocks() {
        assert_eq!(records_timed_in(0), (0, 47)); // record 46's time is bytes 4048..4056
        assert_eq!(records_timed_in(1), (47, 94)); // record 93 starts at byte 8184
        for b in 0..100u64 {
            let (f, e) = records_timed_in(b);
            assert!(f < e && (f..e).all(|k| block_of(k) == b), "block {b}");
            assert_eq!(records_timed_in(b + 1).0, e, "blocks tile the records");
        }
    }

    #[test]
    fn block_ranges() {
        assert_eq!(blocks_of(0, 88), 0..=0);
        assert_eq!(blocks_of(46 * 88, 47 * 88), 0..=1); // record 46 spans bytes 4048..4136
        assert_eq!(blocks_of(4096, 4096 + 88), 1..=1);
    }
}
