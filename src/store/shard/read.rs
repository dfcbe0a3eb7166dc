//! What queries read: the runs of records of a window (one per segment, time-ordered: `query/asof.rs`'s
//! input), handed to the caller's [`WithRuns`] (`query/answer.rs` renders them), and the records of an export, in chunks. Never JSON, never
//! statuses: rendering is the query layer's, answering the server's.

use std::rc::Rc;

use futures::channel::mpsc;
use futures::SinkExt;

use super::Shard;
use crate::config::Reads;
use crate::query::asof::{self, WithRuns};
use crate::query::params::Window;
use crate::record::Record;
use crate::store::view::View;
use crate::store::StoreError;

/// Records an export sends at once (about 60 KiB of NDJSON).
pub const EXPORT_CHUNK_RECORDS: usize = 256;

/// One piece of an export: records in time order, or why it stopped. The last piece of a complete export
/// is an empty `Ok`: a stream that ends without it was cut short (its core failed), and the reader says so.
pub type ExportChunk = Result<Vec<Record>, ExportError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportError {
    UnknownTag,
    Failed(StoreError),
}

impl Shard {
    /// Reads the runs of `/api` window `w` into `v`; `Ok(None)` for an unknown tag. With `--reads dma` the tag
    /// files of time-ordered segments are read with DMA reads (`shard/dma.rs`), the others through mmap;
    /// aggregations read every record of the window, through the mmap (read-ahead), whatever `--reads` says.
    pub async fn read<V: WithRuns>(&self, w: &Window, v: V) -> Result<Option<V::Out>, StoreError> {
        if self.reads == Reads::Dma && w.aggs.is_empty() {
            match self.dma_runs(w).await? {
                super::dma::DmaRuns::Runs(runs) => {
                    let refs: Vec<&[Record]> = runs.iter().map(Vec::as_slice).collect();
                    return Ok(Some(v.with(&refs)));
                }
                super::dma::DmaRuns::UnknownTag => return Ok(None),
                super::dma::DmaRuns::Unsorted => {}
            }
        }
        let Some((first_seg, last_seg)) = self.api_segments(w) else {
            return Ok(None);
        };
        let Some(keys) = self.prepared(&w.tag, first_seg, last_seg)? else {
            return Ok(None);
        };
        let tags = self.tags.borrow();
        let Some(t) = tags.get(&w.tag) else {
            return Ok(None);
        };
        let views: Vec<View> = keys
            .iter()
            .filter_map(|k| t.segs.get(k))
            .map(View::of)
            .collect();
        let refs: Vec<&View> = views.iter().collect();
        Ok(Some(v.with(&refs)))
    }

    /// Prepares (maps, orders) the segments of `tag` from `first_seg` to `last_seg` and returns their keys,
    /// or `None` for an unknown tag.
    fn prepared(
        &self,
        tag: &str,
        first_seg: i64,
        last_seg: i64,
    ) -> Result<Option<Vec<i64>>, StoreError> {
        let mut tags = self.tags.borrow_mut();
        self.bound_mappings(&mut tags);
        let Some(t) = tags.get_mut(tag) else {
            return Ok(None);
        };
        let keys: Vec<i64> = t
            .segs
            .range(first_seg..=last_seg)
            .map(|(&k, _)| k)
            .collect();
        for &k in &keys {
            let path = self.layout.tag_file(k, tag);
            if let Some(s) = t.segs.get_mut(&k) {
                self.check_now(s, tag, k)?;
                s.prepare(&path)
                    .map_err(|e| StoreError::from_io(&format!("reading {}", path.display()), &e))?;
            }
        }
        Ok(Some(keys))
    }

    /// The segments an `/api` window reads: from the nearest non-empty one before the first sample's (as-of
    /// carries its last record in) to the one holding `end`; with aggregations, from the one before
    /// `start`'s (the first period begins at `start`, and `twa` carries in the value held there).
    /// `None`: an unknown tag.
    pub(super) fn api_segments(&self, w: &Window) -> Option<(i64, i64)> {
        let last_seg = w.end.div_euclid(self.segment_ns);
        let first_t = if w.aggs.is_empty() {
            asof::sample_time(w.start, w.end, 0, w.samples)
        } else {
            w.start
        };
        let first_seg = first_t.div_euclid(self.segment_ns);
        let tags = self.tags.borrow();
        let t = tags.get(&w.tag)?;
        let before = t
            .segs
            .range(..first_seg)
            .rev()
            .find(|(_, s)| s.committed() > 0)
            .map(|(&k, _)| k);
        Some((before.unwrap_or(first_seg), last_seg))
    }

    /// Streams the records of `[w.start, w.end)` into `tx` in time order, in chunks of
    /// [`EXPORT_CHUNK_RECORDS`]; the first message is an error for an unknown tag.
    pub async fn export(self: Rc<Self>, w: Window, mut tx: mpsc::Sender<ExportChunk>) {
        let first_seg = w.start.div_euclid(self.segment_ns);
        let last_seg = (w.end - 1).div_euclid(self.segment_ns);
        let keys = match self.prepared(&w.tag, first_seg, last_seg) {
            Ok(Some(k)) => k,
            Ok(None) => {
                let _ = tx.send(Err(ExportError::UnknownTag)).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(ExportError::Failed(e))).await;
                return;
            }
        };
        for k in keys {
            match self.export_segment(&w, k, &mut tx).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    let _ = tx.send(Err(ExportError::Failed(e))).await;
                    return;
                }
            }
        }
        let _ = tx.send(Ok(Vec::new())).await;
    }

    /// Sends one segment's records of the window; `Ok(false)` when the reader went away.
    async fn export_segment(
        &self,
        w: &Window,
        k: i64,
        tx: &mut mpsc::Sender<ExportChunk>,
    ) -> Result<bool, StoreError> {
        // Snapshot this segment's sorted order; records below `len` never move or change. Prepared here,
        // not with the others before the first send: records may have arrived while earlier segments were
        // streamed, and an out-of-order segment's permutation must cover them.
        let (len, perm, lo) = {
            let mut tags = self.tags.borrow_mut();
            let Some(s) = tags.get_mut(&w.tag).and_then(|t| t.segs.get_mut(&k)) else {
                return Ok(true);
            };
            self.check_now(s, &w.tag, k)?;
            let path = self.layout.tag_file(k, &w.tag);
            s.prepare(&path)
                .map_err(|e| StoreError::from_io(&format!("reading {}", path.display()), &e))?;
            let v = View::of(s);
            let lo = asof::lower_bound(&v, w.start);
            let (len, perm) = v.snapshot();
            (len, perm, lo)
        };
        let mut i = lo;
        while i < len {
            let mut chunk = Vec::with_capacity(EXPORT_CHUNK_RECORDS);
            {
                let mut tags = self.tags.borrow_mut();
                self.bound_mappings(&mut tags);
                let Some(s) = tags.get_mut(&w.tag).and_then(|t| t.segs.get_mut(&k)) else {
                    return Ok(true);
                };
                // A checkpoint while the last chunk was sent moved records from memory into the tag file:
                // map it that far before reading (records keep their indices).
                let path = self.layout.tag_file(k, &w.tag);
                s.map_file(&path)
                    .map_err(|e| StoreError::from_io(&format!("reading {}", path.display()), &e))?;
                while i < len && chunk.len() < EXPORT_CHUNK_RECORDS {
                    let r = s.raw(perm.as_ref().map_or(i, |p| p[i] as usize));
                    if r.time >= w.end {
                        i = len;
                        break;
                    }
                    chunk.push(r);
                    i += 1;
                }
            }
            if chunk.is_empty() {
                break;
            }
            if tx.send(Ok(chunk)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
