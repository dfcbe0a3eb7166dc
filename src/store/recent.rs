//! Records of one segment held in memory, found by content in O(1): the duplicate index of admission
//! (`store/shard/admit.rs`). It holds the records accepted and not yet committed (`--durability sync`, in
//! queue order) and the arrival indexes of committed records that the segment's time search does not cover
//! (an out-of-order segment's records past its sorted permutation). A lookup hashes the record once
//! (foldhash, seeded per process: no SipHash, and no collisions an attacker can compute ahead) and compares
//! the few candidates bit for bit, so its cost does not grow with the records in flight or in memory. The
//! hash is computed once per message, at admission ([`content_hash`]), and travels with the record: the
//! in-flight queue keeps it, so neither the commit's pop nor the committed index hashes again.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use hashbrown::HashTable;

use crate::record::Record;

/// Same time and same value bits in every slot (so `-0.0` and `0.0` differ, as they read back).
pub fn same(a: &Record, b: &Record) -> bool {
    a.time == b.time
        && a.values
            .iter()
            .zip(&b.values)
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The committed table's hash of a stored 32-bit content hash (its top bits pick the control byte).
fn spread(h32: u32) -> u64 {
    u64::from(h32).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The hash of a record's content (time and value bits), with one seed for the whole process.
pub fn content_hash(r: &Record) -> u64 {
    static STATE: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    let bits: [u64; crate::record::VALUES] = r.values.map(f64::to_bits);
    STATE.get_or_init(Default::default).hash_one((r.time, bits))
}

/// See the module documentation. Empty until a record comes in; [`Recent::is_empty`] tells when it can be
/// dropped (its memory given back).
#[derive(Default)]
pub struct Recent {
    /// Records accepted and not yet committed, with their content hashes, oldest first: `inflight[k]` has
    /// sequence `popped + k`.
    inflight: VecDeque<(Record, u64)>,
    popped: u64,
    /// Sequences of `inflight`, by content hash.
    inflight_seqs: HashTable<u64>,
    /// Committed records outside the segment's time search, by content hash: `(hash32 << 32) | index`. The
    /// table hashes by the stored 32 bits, so growing it never reads a record (some may be in a tag file
    /// not mapped this far yet); a lookup reads only candidates whose 32 bits match.
    committed: HashTable<u64>,
}

impl Recent {
    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty() && self.committed.is_empty()
    }

    /// True when a record accepted and not yet committed equals `r`, whose [`content_hash`] is `hash`.
    pub fn holds_inflight(&self, r: &Record, hash: u64) -> bool {
        let (inflight, popped) = (&self.inflight, self.popped);
        self.inflight_seqs
            .find(hash, |&s| same(&inflight[(s - popped) as usize].0, r))
            .is_some()
    }

    /// Takes in `r`, whose [`content_hash`] is `hash`, as the newest record in flight.
    pub fn inflight_push(&mut self, r: Record, hash: u64) {
        debug_assert_eq!(hash, content_hash(&r), "BUG: a record with another's hash");
        let seq = self.popped + self.inflight.len() as u64;
        self.inflight.push_back((r, hash));
        let (inflight, popped) = (&self.inflight, self.popped);
        self.inflight_seqs
            .insert_unique(hash, seq, |&s| inflight[(s - popped) as usize].1);
    }

    /// The oldest in-flight record and its hash, now committed or failed (commits finish in queue order).
    pub fn inflight_pop(&mut self) -> Option<(Record, u64)> {
        let (r, hash) = *self.inflight.front()?;
        self.forget_inflight(hash, self.popped);
        self.inflight.pop_front();
        self.popped += 1;
        Some((r, hash))
    }

    /// Undoes the newest [`Recent::inflight_push`] (its job was never queued).
    pub fn inflight_unpush(&mut self) {
        if let Some(&(_, hash)) = self.inflight.back() {
            self.forget_inflight(hash, self.popped + self.inflight.len() as u64 - 1);
            self.inflight.pop_back();
        }
    }

    fn forget_inflight(&mut self, hash: u64, seq: u64) {
        match self.inflight_seqs.find_entry(hash, |&s| s == seq) {
            Ok(e) => {
                e.remove();
            }
            Err(_) => panic!("BUG: in-flight record {seq} missing from its index"),
        }
    }

    /// Takes in committed record `index`, whose content's [`content_hash`] is `hash`.
    pub fn add_committed(&mut self, index: usize, hash: u64) {
        let index = u32::try_from(index).expect("BUG: a segment past u32::MAX records");
        let h32 = hash as u32;
        self.committed.insert_unique(
            spread(h32),
            (u64::from(h32) << 32) | u64::from(index),
            |&e| spread((e >> 32) as u32),
        );
    }

    /// True when an indexed committed record equals `r`, whose [`content_hash`] is `hash`; `raw` reads a
    /// candidate by its index.
    pub fn holds_committed(&self, r: &Record, hash: u64, raw: impl Fn(usize) -> Record) -> bool {
        let h32 = hash as u32;
        self.committed
            .find(spread(h32), |&e| {
                (e >> 32) as u32 == h32 && same(&raw(e as u32 as usize), r)
            })
            .is_some()
    }

    /// Forgets every committed record (the segment's time search now covers them) and gives back the
    /// table's memory.
    pub fn clear_committed(&mut self) {
        self.committed = HashTable::new();
    }

    /// Committed records indexed.
    pub fn committed_len(&self) -> usize {
        self.committed.len()
    }

    /// Gives back memory left over from a burst (tables and queues sized for it).
    pub fn shrink(&mut self) {
        let (inflight, popped) = (&self.inflight, self.popped);
        self.inflight_seqs
            .shrink_to_fit(|&s| inflight[(s - popped) as usize].1);
        self.inflight.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::filled as rec;

    fn h(r: Record) -> u64 {
        content_hash(&r)
    }

    #[test]
    fn in_flight_records_are_found_by_content_and_leave_in_queue_order() {
        let mut r = Recent::default();
        r.inflight_push(rec(5, 1.0), h(rec(5, 1.0)));
        r.inflight_push(rec(2, 2.0), h(rec(2, 2.0)));
        r.inflight_push(rec(5, 1.0), h(rec(5, 1.0)));
        assert!(r.holds_inflight(&rec(2, 2.0), h(rec(2, 2.0))));
        assert!(
            !r.holds_inflight(&rec(2, 3.0), h(rec(2, 3.0))),
            "same time, other values"
        );
        assert!(
            !r.holds_inflight(&rec(2, -0.0), h(rec(2, -0.0)))
                && !r.holds_inflight(&rec(6, 1.0), h(rec(6, 1.0)))
        );
        r.inflight_unpush();
        assert!(
            r.holds_inflight(&rec(5, 1.0), h(rec(5, 1.0))),
            "the first copy is still in flight"
        );
        assert_eq!(r.inflight_pop(), Some((rec(5, 1.0), h(rec(5, 1.0)))));
        assert!(!r.holds_inflight(&rec(5, 1.0), h(rec(5, 1.0))));
        assert!(r.holds_inflight(&rec(2, 2.0), h(rec(2, 2.0))));
        assert_eq!(r.inflight_pop(), Some((rec(2, 2.0), h(rec(2, 2.0)))));
        assert_eq!(r.inflight_pop(), None);
        assert!(r.is_empty());
    }

    #[test]
    fn committed_records_are_found_through_their_index() {
        let recs: Vec<Record> = (0..10_000).map(|i| rec(i % 97, i as f64)).collect();
        let mut r = Recent::default();
        let raw = |i: usize| recs[i];
        for (i, x) in recs.iter().enumerate().skip(100) {
            r.add_committed(i, h(*x));
        }
        assert_eq!(r.committed_len(), 9_900);
        assert!(r.holds_committed(&recs[5_000], h(recs[5_000]), raw));
        assert!(
            !r.holds_committed(&recs[99], h(recs[99]), raw),
            "not indexed"
        );
        assert!(!r.holds_committed(&rec(3, 3.5), h(rec(3, 3.5)), raw));
        r.clear_committed();
        assert!(!r.holds_committed(&recs[5_000], h(recs[5_000]), raw) && r.is_empty());
    }
}
