//! `/api` with `--reads dma`: the shard's side of `store/dmaread.rs`. Three phases, so no `RefCell` borrow
//! lives across an await: (1) under the borrow, snapshot each segment of the window (id, persisted count,
//! and the answers from its in-memory tail, computed on the spot); (2) without it, read each tag file's
//! answers with DMA reads; (3) hand back one run per segment, answers-from-file ++ answers-from-memory, for
//! the caller's as-of walk. The persisted prefix of a tag file never changes, so the snapshot stays valid
//! while reads run.
//! Segments whose order is not known since start are scanned once with DMA reads; segments whose records
//! arrived out of time order are left to the mmap path (the caller falls back).

use glommio::io::DmaFile;

use super::Shard;
use crate::query::{asof, params::Window};
use crate::record::{Record, RECORD_BYTES};
use crate::store::device::io_err;
use crate::store::{dmaread, StoreError};

/// What the DMA path found for a window.
pub(super) enum DmaRuns {
    /// One run per segment, in time order.
    Runs(Vec<Vec<Record>>),
    UnknownTag,
    /// A segment of the window is not in time order: read it through mmap instead.
    Unsorted,
}

/// One segment of the window, as snapshotted before the reads.
struct Part {
    key: i64,
    id: u64,
    persisted: usize,
    /// The answers found in the in-memory tail (records `persisted..`), deduplicated in order.
    from_mem: Vec<Record>,
}

/// Bytes read per request when learning a segment's order.
const SCAN_BYTES: usize = 1 << 20;

impl Shard {
    /// The runs of an `/api` window read with DMA reads: each segment's answers only.
    pub(super) async fn dma_runs(&self, w: &Window) -> Result<DmaRuns, StoreError> {
        let Some((first_seg, last_seg)) = self.api_segments(w) else {
            return Ok(DmaRuns::UnknownTag);
        };
        let keys: Vec<(&str, i64)> = match self.tags.borrow().get(&w.tag) {
            Some(t) => t
                .segs
                .range(first_seg..=last_seg)
                .map(|(&k, _)| (w.tag.as_str(), k))
                .collect(),
            None => Vec::new(),
        };
        self.check_segments(&keys).await?;
        self.learn_orders(&w.tag, first_seg, last_seg).await?;
        let times: Vec<i64> = (0..w.samples)
            .map(|i| asof::sample_time(w.start, w.end, i, w.samples))
            .collect();
        // 1. Snapshot.
        let mut parts = Vec::new();
        {
            let tags = self.tags.borrow();
            let Some(t) = tags.get(&w.tag) else {
                return Ok(DmaRuns::UnknownTag);
            };
            for (&key, seg) in t.segs.range(first_seg..=last_seg) {
                if !seg.is_sorted() {
                    return Ok(DmaRuns::Unsorted);
                }
                let mut from_mem: Vec<Record> = Vec::new();
                asof::sample(
                    &[&seg.mem[..]],
                    w.start,
                    w.end,
                    w.samples,
                    asof::Ties::LastReceived,
                    |_, r| {
                        if let Some(r) = r {
                            if from_mem.last() != Some(&r) {
                                from_mem.push(r);
                            }
                        }
                    },
                );
                parts.push(Part {
                    key,
                    id: seg.id,
                    persisted: seg.persisted,
                    from_mem,
                });
            }
        }
        // 2. The tag files' answers.
        let mut runs: Vec<Vec<Record>> = Vec::with_capacity(parts.len());
        for p in &parts {
            let mut run = if p.persisted == 0 {
                Vec::new()
            } else {
                let path = self.layout.tag_file(p.key, &w.tag);
                let file = DmaFile::open(&path)
                    .await
                    .map_err(|e| io_err(&format!("opening {}", path.display()), e))?;
                let r = dmaread::answers(&file, &self.cache, p.id, p.persisted, &times).await;
                let _ = file.close().await;
                r.map_err(|e| io_err(&format!("reading {}", path.display()), e))?
            };
            run.extend_from_slice(&p.from_mem);
            runs.push(run);
        }
        Ok(DmaRuns::Runs(runs))
    }

    /// Learns, with sequential DMA reads, whether the persisted records of each segment of the window whose
    /// order is unknown (loaded at start) are in time order.
    async fn learn_orders(
        &self,
        tag: &str,
        first_seg: i64,
        last_seg: i64,
    ) -> Result<(), StoreError> {
        let unknown: Vec<(i64, usize)> = {
            let tags = self.tags.borrow();
            let Some(t) = tags.get(tag) else {
                return Ok(());
            };
            t.segs
                .range(first_seg..=last_seg)
                .filter(|(_, s)| s.order_unknown())
                .map(|(&k, s)| (k, s.persisted))
                .collect()
        };
        for (key, persisted) in unknown {
            let path = self.layout.tag_file(key, tag);
            let file = DmaFile::open(&path)
                .await
                .map_err(|e| io_err(&format!("opening {}", path.display()), e))?;
            let (mut sorted, mut max) = (true, i64::MIN);
            let end = persisted * RECORD_BYTES;
            let mut at = 0;
            // Whole records per read: SCAN_BYTES is a multiple of the 512-byte read alignment, and the
            // record split across two reads is carried over.
            let mut carry: Vec<u8> = Vec::new();
            while at < end && sorted {
                let n = SCAN_BYTES.min(end.div_ceil(512) * 512 - at);
                let buf = file
                    .read_at(at as u64, n)
                    .await
                    .map_err(|e| io_err(&format!("reading {}", path.display()), e))?;
                carry.extend_from_slice(&buf[..buf.len().min(end - at)]);
                at += n;
                let whole = carry.len() / RECORD_BYTES * RECORD_BYTES;
                for rec in carry[..whole].chunks_exact(RECORD_BYTES) {
                    let t = i64::from_le_bytes(rec[..8].try_into().expect("8 bytes"));
                    sorted &= t >= max;
                    max = max.max(t);
                }
                carry.drain(..whole);
            }
            let _ = file.close().await;
            if let Some(s) = self
                .tags
                .borrow_mut()
                .get_mut(tag)
                .and_then(|t| t.segs.get_mut(&key))
            {
                s.learned_order(persisted, sorted, max);
            }
        }
        Ok(())
    }
}
