//! Checkpoints: moving every committed record from the write-ahead log into its tag file, one log generation
//! at a time, with the partial last block of each tag file first made durable in the new log (so a torn
//! rewrite can always be repaired). The order of writes and syncs is in docs/format.md.

use std::path::PathBuf;
use std::time::Duration;

use futures::channel::oneshot;
use glommio::io::{DmaFile, OpenOptions};

use super::commit::Cmd;
use super::{Shard, CHECKPOINT_FILES_IN_FLIGHT, WAL_CHECKPOINT_BYTES};
use crate::record::{Record, RECORD_BYTES};
use crate::store::device::io_err;
use crate::store::iotrace::{trace, Event};
use crate::store::{align_down, sidecar, tagfile, wal, StoreError};

impl Shard {
    /// Moves every committed record into the tag files and starts a new log generation.
    pub async fn checkpoint(&self) -> Result<usize, StoreError> {
        let began = std::time::Instant::now();
        let files = match self.checkpoint_steps().await {
            Ok(files) => files,
            Err(e) => {
                self.io_stats.borrow_mut().checkpoint_failures_total += 1;
                return Err(e);
            }
        };
        self.io_stats
            .borrow_mut()
            .checkpoint(files, began.elapsed().as_nanos() as u64);
        Ok(files)
    }

    async fn checkpoint_steps(&self) -> Result<usize, StoreError> {
        // 1. A fresh generation; every commit from here on goes there. A generation whose batches failed
        //    is sealed before its records move on: batches after its last acknowledged one (their requests
        //    got an error) must never be replayed, since their record slots are handed out again. Retried by
        //    every checkpoint until it succeeds.
        self.log.prepare().await?;
        let (tx, rx) = oneshot::channel();
        self.queue
            .unbounded_send(Cmd::Rotate(tx))
            .map_err(|_| StoreError::Unavailable("commit loop stopped".into()))?;
        let old = rx
            .await
            .map_err(|_| StoreError::Unavailable("commit loop stopped".into()))??;
        if let Some(e) = &old.broken {
            eprintln!(
                "core {}: after {e}: writing to a new log generation; sealing generation {}",
                self.id, old.generation
            );
        }
        self.old_logs.borrow_mut().push(old);
        let unsealed: Vec<usize> = (0..self.old_logs.borrow().len())
            .filter(|&i| !self.old_logs.borrow()[i].sealed)
            .collect();
        for i in unsealed {
            let mut old = self.old_logs.borrow()[i].clone();
            self.log.seal(&mut old).await?;
            self.old_logs.borrow_mut()[i] = old;
        }

        // 2. Plan: for each dirty segment, the records from the first block to rewrite up to `committed()`.
        //    The new records are in memory; the ones already in the partial last block (its pre-image) are
        //    read back with DMA reads, a batch at a time, so the core never waits on page faults or mmap.
        struct Plan {
            tag: String,
            seg: i64,
            first: usize,
            first_new: usize,
            records: Vec<Record>,
        }
        let mut plans = Vec::new();
        {
            let tags = self.tags.borrow();
            for (tag, t) in tags.iter() {
                for (&seg, s) in t.segs.iter().filter(|(_, s)| !s.mem.is_empty()) {
                    let first = align_down(s.persisted * RECORD_BYTES) / RECORD_BYTES;
                    plans.push(Plan {
                        tag: tag.clone(),
                        seg,
                        first,
                        first_new: s.persisted,
                        records: s.mem.clone(),
                    });
                }
            }
        }
        let mut pre = Vec::new();
        for batch in plans.chunks_mut(CHECKPOINT_FILES_IN_FLIGHT) {
            let reads = batch
                .iter()
                .map(|p| self.read_records(p.seg, &p.tag, p.first, p.first_new));
            let images = futures::future::join_all(reads).await;
            for (p, image) in batch.iter_mut().zip(images) {
                let mut records = image?;
                for (k, r) in records.iter().enumerate() {
                    wal::put_record(&mut pre, &p.tag, (p.first + k) as u64, r);
                }
                wal::put_length(
                    &mut pre,
                    &p.tag,
                    p.seg,
                    (p.first_new + p.records.len()) as u64,
                );
                records.append(&mut p.records);
                p.records = records;
            }
        }
        // The partial blocks about to be rewritten are first made durable in the new log.
        if !plans.is_empty() {
            let (tx, rx) = oneshot::channel();
            self.queue
                .unbounded_send(Cmd::Checkpoint {
                    payload: pre,
                    done: tx,
                })
                .map_err(|_| StoreError::Unavailable("commit loop stopped".into()))?;
            rx.await
                .map_err(|_| StoreError::Unavailable("commit loop stopped".into()))??;
        }

        // 3. Write and fdatasync the tag files, a batch at a time; then sync each directory that gained
        //    an entry once (not once per file: a directory fsync is a blocking call on this executor).
        //    Directory work runs on glommio's blocking thread, never on the core.
        let new_dirs: std::collections::BTreeSet<i64> = plans
            .iter()
            .filter(|p| p.first_new == 0)
            .map(|p| p.seg)
            .collect();
        let (dirs, root) = (
            new_dirs
                .iter()
                .map(|&s| self.layout.seg_dir(s))
                .collect::<Vec<_>>(),
            self.layout.seg_root(),
        );
        let missing: Vec<PathBuf> = dirs.iter().filter(|d| !d.exists()).cloned().collect();
        let root_sync = self
            .trace
            .as_ref()
            .filter(|_| !missing.is_empty())
            .map(|t| {
                for d in &missing {
                    t.record(Event::Mkdir(t.rel(d)));
                }
                let id = t.id();
                t.record(Event::DirSync(id, t.rel(&root)));
                id
            });
        let sync_root = if missing.is_empty() {
            Vec::new()
        } else {
            vec![root]
        };
        self.device.dirs(missing, sync_root).await?;
        if let Some(id) = root_sync {
            trace(&self.trace, |_| Event::DirSynced(id));
        }
        for batch in plans.chunks(CHECKPOINT_FILES_IN_FLIGHT) {
            let writes = batch
                .iter()
                .map(|p| self.write_tag_file(p.seg, &p.tag, p.first, &p.records, p.first_new));
            for r in futures::future::join_all(writes).await {
                r?;
            }
        }
        let mut dirs: Vec<PathBuf> = new_dirs.iter().map(|&s| self.layout.seg_dir(s)).collect();
        for d in self.sync_sums().await? {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        let ids: Vec<u64> = match &self.trace {
            Some(t) => dirs
                .iter()
                .map(|d| {
                    let id = t.id();
                    t.record(Event::DirSync(id, t.rel(d)));
                    id
                })
                .collect(),
            None => Vec::new(),
        };
        self.device.dirs(Vec::new(), dirs).await?;
        for id in ids {
            trace(&self.trace, |_| Event::DirSynced(id));
        }

        // 4. The records are in the tag files: drop them from memory and the old log from disk.
        {
            let mut tags = self.tags.borrow_mut();
            for p in &plans {
                if let Some(s) = tags.get_mut(&p.tag).and_then(|t| t.segs.get_mut(&p.seg)) {
                    s.persisted_up_to(p.first + p.records.len());
                }
            }
        }
        let olds = std::mem::take(&mut *self.old_logs.borrow_mut());
        for (n, old) in olds.iter().enumerate() {
            if let Err(e) = self.log.retire(old.clone()).await {
                self.old_logs.borrow_mut().extend(olds[n..].iter().cloned());
                return Err(e);
            }
        }
        Ok(plans.len())
    }

    /// Reads records `first..end` of a tag file (the checkpoint's pre-image of a partial last block).
    async fn read_records(
        &self,
        seg: i64,
        tag: &str,
        first: usize,
        end: usize,
    ) -> Result<Vec<Record>, StoreError> {
        if first == end {
            return Ok(Vec::new());
        }
        let path = self.layout.tag_file(seg, tag);
        let f = DmaFile::open(&path)
            .await
            .map_err(|e| io_err(&format!("opening {}", path.display()), e))?;
        let want = (end - first) * RECORD_BYTES;
        let r = f.read_at((first * RECORD_BYTES) as u64, want).await;
        let _ = f.close().await;
        let buf = r.map_err(|e| io_err(&format!("reading {}", path.display()), e))?;
        if buf.len() != want {
            return Err(StoreError::Io(format!(
                "{}: short read of a persisted block ({} of {want} bytes)",
                path.display(),
                buf.len()
            )));
        }
        let records: Vec<Record> = bytemuck::pod_collect_to_vec(&buf[..]);
        assert!(
            records.iter().all(|r| r.all_finite()),
            "BUG: padding or garbage inside the persisted records of {}",
            path.display()
        );
        Ok(records)
    }

    /// Writes one segment's new tail (whole blocks from the one holding record `first_new`) and fdatasyncs it.
    async fn write_tag_file(
        &self,
        seg: i64,
        tag: &str,
        first: usize,
        records: &[Record],
        first_new: usize,
    ) -> Result<(), StoreError> {
        let path = self.layout.tag_file(seg, tag);
        trace(&self.trace, |t| Event::Create(t.rel(&path)));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(&path)
            .await
            .map_err(|e| io_err(&format!("opening {}", path.display()), e))?;
        let (offset, bytes) = tagfile::block_image(first, records, first_new);
        let (write_id, sync_id) = match &self.trace {
            Some(t) => {
                let id = t.id();
                t.record(Event::Write {
                    id,
                    path: t.rel(&path),
                    offset: offset as u64,
                    dsync: false,
                    data: bytes.clone(),
                });
                (id, t.id())
            }
            None => (0, 0),
        };
        let device = &self.device;
        let r = async {
            device.write(&f, &path, offset as u64, &bytes).await?;
            trace(&self.trace, |_| Event::Wrote(write_id));
            trace(&self.trace, |t| Event::Sync(sync_id, t.rel(&path)));
            device.fdatasync(&f, &path).await?;
            trace(&self.trace, |_| Event::Synced(sync_id));
            Ok(())
        }
        .await;
        let _ = f.close().await;
        r?;
        self.append_sums(&path, offset, &bytes, first_new > 0).await
    }

    /// Appends the checksums of the blocks just written (and synced) to the tag file's sidecar, unsynced:
    /// [`Shard::sync_sums`] makes every sidecar of the checkpoint durable at once, before its log can be
    /// retired (`sidecar.rs`).
    async fn append_sums(
        &self,
        tag_file: &std::path::Path,
        offset: usize,
        image: &[u8],
        old_file: bool,
    ) -> Result<(), StoreError> {
        let side = sidecar::path_for(tag_file);
        let entries = sidecar::entries(offset, image);
        let existing = std::fs::metadata(&side).ok().map(|m| m.len());
        // After a whole number of entries: an append that failed part-way left a partial entry, which this
        // one overwrites (reading stops at the first broken entry, so one left in place would hide the rest).
        let whole = sidecar::ENTRY_BYTES as u64;
        let at = existing.map_or(0, |n| n / whole * whole);
        let id = self.trace.as_ref().map(|t| {
            let w = t.id();
            t.record(Event::Create(t.rel(&side)));
            t.record(Event::Write {
                id: w,
                path: t.rel(&side),
                offset: at,
                dsync: false,
                data: entries.clone(),
            });
            w
        });
        self.device.append(side.clone(), at, entries).await?;
        if let Some(w) = id {
            trace(&self.trace, |_| Event::Wrote(w));
        }
        // A sidecar new beside an existing tag file: its directory is not among the new ones synced.
        self.unsynced_sums
            .borrow_mut()
            .push((side, old_file && existing.is_none()));
        Ok(())
    }

    /// Makes every sidecar appended by this checkpoint durable with one `syncfs` (instead of an fdatasync
    /// per file: tag files are written O_DIRECT and synced, logs are O_DSYNC, so little else is dirty), and
    /// returns the directories of sidecars created beside existing tag files, to sync.
    async fn sync_sums(&self) -> Result<Vec<PathBuf>, StoreError> {
        let sides = std::mem::take(&mut *self.unsynced_sums.borrow_mut());
        if sides.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<u64> = match &self.trace {
            Some(t) => sides
                .iter()
                .map(|(side, _)| {
                    let id = t.id();
                    t.record(Event::Sync(id, t.rel(side)));
                    id
                })
                .collect(),
            None => Vec::new(),
        };
        self.device.syncfs(self.layout.seg_root()).await?;
        for id in ids {
            trace(&self.trace, |_| Event::Synced(id));
        }
        let mut dirs: Vec<PathBuf> = sides
            .into_iter()
            .filter(|(_, new_beside_old)| *new_beside_old)
            .filter_map(|(side, _)| side.parent().map(PathBuf::from))
            .collect();
        dirs.dedup();
        Ok(dirs)
    }

    /// True when a checkpoint is due.
    pub fn checkpoint_due(&self, since_last: Duration, interval: Duration) -> bool {
        let bytes = self.log.bytes();
        bytes >= WAL_CHECKPOINT_BYTES
            || (since_last >= interval && bytes > 0)
            || (self.log.broken() && since_last >= Duration::from_secs(1))
    }
}
