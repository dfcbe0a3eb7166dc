//! First use of a loaded tag file: a start takes record counts from manifests without opening a tag file
//! (`load.rs`), so each file's tail is verified when its tag is first written or read: its length, the
//! records and padding of its last block, the block's checksum against the sidecar, and the count the
//! manifest said (`verify::first_use`). Damage found then is kept on the segment and answered to every use
//! of it (500, naming the file and offset); the other tags are served.
//!
//! After start, [`Shard::verify_loaded`] checks every loaded file in the background, batch by batch, so
//! damage shows without a use, and the check leaves the write path once every file is verified.
//!
//! **Invariant:** a segment that needs its check holds no record in memory or in flight: every append
//! passes [`Shard::check_targets`] before admission, so a checkpoint never rewrites an unverified tail.

use std::path::PathBuf;

use super::Shard;
use crate::message::Message;
use crate::store::device::offload;
use crate::store::segment::Segment;
use crate::store::{verify, StoreError};

/// Tag files the background verification checks per trip to the blocking thread.
const BACKGROUND_BATCH: usize = 256;

impl Shard {
    /// Verifies every loaded segment the messages go to that still needs it, off the core in one trip;
    /// `Err(Corrupt)` when one of them is damaged (the whole request: nothing of it is admitted).
    pub(super) async fn check_targets(&self, msgs: &[Message]) -> Result<(), StoreError> {
        if self.lazy.get() == 0 {
            return Ok(());
        }
        let targets: Vec<(&str, i64)> = msgs
            .iter()
            .map(|m| (m.tag.as_str(), m.record.time.div_euclid(self.segment_ns)))
            .collect();
        self.check_segments(&targets).await
    }

    /// Verifies the segments `targets` (tag, segment) that still need it, off the core in one trip; the
    /// first damage among them is the error.
    pub(super) async fn check_segments(&self, targets: &[(&str, i64)]) -> Result<(), StoreError> {
        if self.lazy.get() == 0 {
            return Ok(());
        }
        let mut todo: Vec<(String, i64, PathBuf, usize)> = Vec::new();
        {
            let tags = self.tags.borrow();
            for &(tag, seg) in targets {
                let Some(s) = tags.get(tag).and_then(|t| t.segs.get(&seg)) else {
                    continue;
                };
                if let Some(d) = s.damage() {
                    return Err(StoreError::Corrupt(d.to_string()));
                }
                if s.needs_check() && !todo.iter().any(|(t, k, _, _)| t == tag && *k == seg) {
                    todo.push((
                        tag.to_string(),
                        seg,
                        self.layout.tag_file(seg, tag),
                        s.persisted,
                    ));
                }
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let segment_ns = self.segment_ns;
        let layout = self.layout.clone();
        let found = offload(move || {
            todo.into_iter()
                .map(|(tag, seg, path, n)| {
                    let r = verify::first_use(&path, seg, segment_ns, n)
                        .map(|f| f.map(|d| super::load::corruption(&d, &layout)))
                        .map_err(|e| {
                            StoreError::from_io(&format!("reading {}", path.display()), &e)
                        });
                    (tag, seg, r)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let mut tags = self.tags.borrow_mut();
        let mut first_err = None;
        for (tag, seg, r) in found {
            match r {
                Ok(damage) => {
                    if let Some(s) = tags.get_mut(&tag).and_then(|t| t.segs.get_mut(&seg)) {
                        self.record_check(s, damage);
                    }
                }
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        drop(tags);
        if let Some(e) = first_err {
            return Err(e);
        }
        self.check_segments_done(targets)
    }

    /// The first damage among `targets`, once checked.
    fn check_segments_done(&self, targets: &[(&str, i64)]) -> Result<(), StoreError> {
        let tags = self.tags.borrow();
        for &(tag, seg) in targets {
            if let Some(d) = tags
                .get(tag)
                .and_then(|t| t.segs.get(&seg))
                .and_then(|s| s.damage())
            {
                return Err(StoreError::Corrupt(d.to_string()));
            }
        }
        Ok(())
    }

    /// Verifies, in the background after start, every loaded segment no use has verified yet, a batch of
    /// [`BACKGROUND_BATCH`] files per trip to the blocking thread, so damage is reported without waiting for
    /// a use and appends stop paying for the check once all are done. A file that cannot be read is left
    /// for its first use.
    pub async fn verify_loaded(self: std::rc::Rc<Self>) {
        let keys: Vec<(String, i64)> = {
            let tags = self.tags.borrow();
            tags.iter()
                .flat_map(|(tag, t)| {
                    t.segs
                        .iter()
                        .filter(|(_, s)| s.needs_check())
                        .map(move |(&seg, _)| (tag.clone(), seg))
                })
                .collect()
        };
        let started = std::time::Instant::now();
        for batch in keys.chunks(BACKGROUND_BATCH) {
            let targets: Vec<(&str, i64)> = batch.iter().map(|(t, s)| (t.as_str(), *s)).collect();
            // Damage is kept on its segment and reported there; nothing more to do with it here.
            let _ = self.check_segments(&targets).await;
            glommio::yield_if_needed().await;
        }
        if !keys.is_empty() {
            eprintln!(
                "core {}: verified the tails of {} tag files in {:.1} s ({} damaged)",
                self.id,
                keys.len(),
                started.elapsed().as_secs_f64(),
                self.lazy.get()
            );
        }
    }

    /// Verifies one segment on the core, if it still needs it (the mmap read path, which blocks on the
    /// file anyway); its damage is the error.
    pub(super) fn check_now(&self, s: &mut Segment, tag: &str, seg: i64) -> Result<(), StoreError> {
        if s.needs_check() {
            let path = self.layout.tag_file(seg, tag);
            let found = verify::first_use(&path, seg, self.segment_ns, s.persisted)
                .map_err(|e| StoreError::from_io(&format!("reading {}", path.display()), &e))?;
            self.record_check(s, found.map(|d| super::load::corruption(&d, &self.layout)));
        }
        match s.damage() {
            Some(d) => Err(StoreError::Corrupt(d.to_string())),
            None => Ok(()),
        }
    }

    /// Keeps a check's outcome; a segment that no longer needs one leaves the count of those that do.
    fn record_check(&self, s: &mut Segment, damage: Option<String>) {
        if !s.needs_check() {
            return;
        }
        if let Some(d) = &damage {
            eprintln!("core {}: {d}", self.id);
        } else {
            self.lazy.set(self.lazy.get().saturating_sub(1));
        }
        s.verified(damage);
    }
}
