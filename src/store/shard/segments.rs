//! One tag's segments by segment number: a sorted vector with exact capacity, one slot per segment. A
//! `BTreeMap` allocates an 11-slot leaf (about 1.4 KiB) for a tag's first segment; with 100k tags of one
//! segment each that was 140 MiB of the shard's memory at rest, against 13 MiB here. Tags gain a segment a
//! day and lose one to retention: inserting and removing shift at most a month of slots.

use std::ops::{Bound, RangeBounds};

use crate::store::segment::Segment;

#[derive(Default)]
pub struct Segments {
    /// Ascending by segment number, no two equal.
    v: Vec<(i64, Segment)>,
}

impl Segments {
    fn find(&self, k: i64) -> Result<usize, usize> {
        self.v.binary_search_by_key(&k, |e| e.0)
    }

    pub fn get(&self, k: &i64) -> Option<&Segment> {
        self.find(*k).ok().map(|i| &self.v[i].1)
    }

    pub fn get_mut(&mut self, k: &i64) -> Option<&mut Segment> {
        self.find(*k).ok().map(|i| &mut self.v[i].1)
    }

    /// Segment `k`, created empty when missing.
    pub fn get_or_default(&mut self, k: i64) -> &mut Segment {
        let i = match self.find(k) {
            Ok(i) => i,
            Err(i) => {
                self.v.reserve_exact(1);
                self.v.insert(i, (k, Segment::default()));
                i
            }
        };
        &mut self.v[i].1
    }

    /// Puts `s` as segment `k`, replacing any there.
    pub fn insert(&mut self, k: i64, s: Segment) {
        match self.find(k) {
            Ok(i) => self.v[i].1 = s,
            Err(i) => {
                self.v.reserve_exact(1);
                self.v.insert(i, (k, s));
            }
        }
    }

    pub fn remove(&mut self, k: &i64) -> Option<Segment> {
        let s = self.find(*k).ok().map(|i| self.v.remove(i).1);
        self.v.shrink_to_fit();
        s
    }

    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    pub fn len(&self) -> usize {
        self.v.len()
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Segment> {
        self.v.iter().map(|e| &e.1)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Segment> {
        self.v.iter_mut().map(|e| &mut e.1)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&i64, &Segment)> {
        self.v.iter().map(|e| (&e.0, &e.1))
    }

    pub fn first_key_value(&self) -> Option<(&i64, &Segment)> {
        self.v.first().map(|e| (&e.0, &e.1))
    }

    /// The segments whose numbers fall in `r`, ascending.
    pub fn range(
        &self,
        r: impl RangeBounds<i64>,
    ) -> impl DoubleEndedIterator<Item = (&i64, &Segment)> {
        let lo = match r.start_bound() {
            Bound::Included(&a) => self.v.partition_point(|e| e.0 < a),
            Bound::Excluded(&a) => self.v.partition_point(|e| e.0 <= a),
            Bound::Unbounded => 0,
        };
        let hi = match r.end_bound() {
            Bound::Included(&b) => self.v.partition_point(|e| e.0 <= b),
            Bound::Excluded(&b) => self.v.partition_point(|e| e.0 < b),
            Bound::Unbounded => self.v.len(),
        };
        self.v[lo..hi.max(lo)].iter().map(|e| (&e.0, &e.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The per-segment memory docs/operations.md states (one slot per segment of every tag).
    #[test]
    fn a_segment_slot_stays_small() {
        let slot = std::mem::size_of::<(i64, Segment)>();
        assert!(slot <= 144, "a segment slot grew to {slot} bytes");
    }

    proptest! {
        /// Every operation agrees with a `BTreeMap` holding the same keys (a segment is told by its
        /// `persisted` count here).
        #[test]
        fn segments_agree_with_a_btree_map(
            ops in proptest::collection::vec((0u8..4, -20i64..20, 0usize..100), 0..200),
            lo in -25i64..25,
            hi in -25i64..25,
        ) {
            let (mut s, mut m) = (Segments::default(), BTreeMap::new());
            for (op, k, n) in ops {
                match op {
                    0 => {
                        s.insert(k, Segment::loaded(n));
                        m.insert(k, n);
                    }
                    1 => {
                        s.get_or_default(k);
                        m.entry(k).or_insert(0);
                    }
                    2 => prop_assert_eq!(s.remove(&k).map(|x| x.persisted), m.remove(&k)),
                    _ => prop_assert_eq!(s.get(&k).map(|x| x.persisted), m.get(&k).copied()),
                }
                prop_assert_eq!(s.len(), m.len());
            }
            let got: Vec<(i64, usize)> = s.range(lo..=hi).map(|(k, x)| (*k, x.persisted)).collect();
            let want: Vec<(i64, usize)> = if lo <= hi {
                m.range(lo..=hi).map(|(k, x)| (*k, *x)).collect()
            } else {
                Vec::new()
            };
            prop_assert_eq!(got, want);
            let got: Vec<i64> = s.range(..lo).rev().map(|(k, _)| *k).collect();
            let want: Vec<i64> = m.range(..lo).rev().map(|(k, _)| *k).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(s.first_key_value().map(|(k, _)| *k), m.keys().next().copied());
        }
    }
}
