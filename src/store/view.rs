//! A sorted read view over one [`Segment`]: the first `committed()` records in time order, straight or
//! through the segment's permutation.

use std::rc::Rc;

use crate::query::asof::Run;
use crate::record::Record;
use crate::store::segment::Segment;

pub struct View<'a> {
    seg: &'a Segment,
    len: usize,
    perm: Option<Rc<Vec<u32>>>,
}

impl<'a> View<'a> {
    /// A sorted view of the first `committed()` records of `seg`. [`Segment::prepare`] must have run since
    /// the last change.
    pub fn of(seg: &'a Segment) -> Self {
        View {
            seg,
            len: seg.committed(),
            perm: seg.time_order(),
        }
    }
    /// The arrival index of the i-th record in time order.
    pub fn index(&self, i: usize) -> usize {
        match &self.perm {
            Some(p) => p[i] as usize,
            None => i,
        }
    }
    pub fn snapshot(&self) -> (usize, Option<Rc<Vec<u32>>>) {
        (self.len, self.perm.clone())
    }
}

impl Run for View<'_> {
    fn len(&self) -> usize {
        self.len
    }
    fn time(&self, i: usize) -> i64 {
        self.seg.raw(self.index(i)).time
    }
    fn record(&self, i: usize) -> Record {
        self.seg.raw(self.index(i))
    }
    fn slices(&self) -> Option<[&[Record]; 2]> {
        if self.perm.is_some() {
            return None;
        }
        let disk = self.seg.disk();
        let on_disk = self.len.min(disk.len());
        Some([&disk[..on_disk], &self.seg.mem[..self.len - on_disk]])
    }
}
