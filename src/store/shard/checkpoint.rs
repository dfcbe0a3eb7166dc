//! Checkpoints: moving every committed record from the durable log into its tag file, one log generation
//! at a time, with the partial last block of each tag file first made durable in the new generation (so a
//! torn rewrite can always be repaired). The order of writes and syncs is in docs/format.md; every step goes
//! through the shard's [`crate::store::device::Device`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use futures::channel::oneshot;
use glommio::io::DmaFile;

use super::commit::Cmd;
use super::{Shard, CHECKPOINT_FILES_IN_FLIGHT, WAL_CHECKPOINT_BYTES};
use crate::record::{Record, RECORD_BYTES};
use crate::store::device::{io_err, offload};
use crate::store::{align_down, sidecar, tagfile, wal, StoreError};

/// One dirty segment: its records from the first block to rewrite up to `committed()`.
struct Plan {
    tag: String,
    seg: i64,
    /// The first record of the block holding record `first_new`.
    first: usize,
    /// The first record not yet in the file (`persisted`).
    first_new: usize,
    /// Records `first..`: the pre-image of the partial block, then the new ones.
    records: Vec<Record>,
}

/// Returns the free pages of the heap to the system. The records a checkpoint moved into tag files were
/// freed, but the allocator keeps pages amid live allocations (a hundred thousand tags' buffers, grown and
/// freed at different times) unless asked: without this, RssAnon stays at its peak once idle.
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap and releases whole free pages; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("commit loop stopped".into())
}

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
        give_back_memory();
        Ok(files)
    }

    async fn checkpoint_steps(&self) -> Result<usize, StoreError> {
        self.rotate_and_seal().await?;
        let mut plans = self.plan();
        self.log_pre_images(&mut plans).await?;
        self.write_tag_files(&plans).await?;
        // The records are in the tag files: drop them from memory and the old generations from the log.
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

    /// Step 1: a fresh generation; every commit from here on goes there. A generation whose batches failed
    /// is sealed before its records move on: batches after its last acknowledged one (their requests got an
    /// error) must never be replayed, since their record slots are handed out again. Retried by every
    /// checkpoint until it succeeds.
    async fn rotate_and_seal(&self) -> Result<(), StoreError> {
        self.log.prepare().await?;
        let (tx, rx) = oneshot::channel();
        self.queue
            .unbounded_send(Cmd::Rotate(tx))
            .map_err(|_| stopped())?;
        let old = rx.await.map_err(|_| stopped())??;
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
        Ok(())
    }

    /// Step 2: the dirty segments, with their records in memory (pre-images still to read).
    fn plan(&self) -> Vec<Plan> {
        let tags = self.tags.borrow();
        let mut plans = Vec::new();
        for (tag, t) in tags.iter() {
            for (&seg, s) in t.segs.iter().filter(|(_, s)| !s.mem.is_empty()) {
                plans.push(Plan {
                    tag: tag.clone(),
                    seg,
                    first: align_down(s.persisted * RECORD_BYTES) / RECORD_BYTES,
                    first_new: s.persisted,
                    records: s.mem.clone(),
                });
            }
        }
        plans
    }

    /// Step 3: reads the records already in each partial last block (its pre-image) back with DMA reads,
    /// a batch at a time, so the core never waits on page faults, and makes them durable in the new
    /// generation, with each file's length, before any tag file is rewritten.
    async fn log_pre_images(&self, plans: &mut [Plan]) -> Result<(), StoreError> {
        if plans.is_empty() {
            return Ok(());
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
                let count = (p.first_new + p.records.len()) as u64;
                wal::put_length(&mut pre, &p.tag, p.seg, count);
                records.append(&mut p.records);
                p.records = records;
            }
        }
        let (tx, rx) = oneshot::channel();
        self.queue
            .unbounded_send(Cmd::Checkpoint {
                payload: pre,
                done: tx,
            })
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Step 4: writes the tag files (`O_DIRECT`), a batch at a time, appends their sidecars, makes all of
    /// them durable with one `syncfs` (not an fdatasync per file: the journal commits once and the device
    /// flushes once, whatever the number of files), then syncs each directory that gained an entry once.
    async fn write_tag_files(&self, plans: &[Plan]) -> Result<(), StoreError> {
        let new_dirs: BTreeSet<i64> = plans
            .iter()
            .filter(|p| p.first_new == 0)
            .map(|p| p.seg)
            .collect();
        let dirs: Vec<PathBuf> = new_dirs.iter().map(|&s| self.layout.seg_dir(s)).collect();
        let candidates = dirs.clone();
        let missing: Vec<PathBuf> =
            offload(move || candidates.into_iter().filter(|d| !d.exists()).collect()).await;
        let sync_root = match missing.is_empty() {
            true => Vec::new(),
            false => vec![self.layout.seg_root()],
        };
        self.device.dirs(missing, sync_root).await?;
        for batch in plans.chunks(CHECKPOINT_FILES_IN_FLIGHT) {
            let writes = batch
                .iter()
                .map(|p| self.write_tag_file(p.seg, &p.tag, p.first, &p.records, p.first_new));
            for r in futures::future::join_all(writes).await {
                r?;
            }
        }
        let mut dirs = dirs;
        for d in self.sync_sums().await? {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        self.device.dirs(Vec::new(), dirs).await
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

    /// Writes one segment's new tail (whole blocks from the one holding record `first_new`), unsynced:
    /// [`Shard::sync_sums`] makes it durable with the sidecars.
    async fn write_tag_file(
        &self,
        seg: i64,
        tag: &str,
        first: usize,
        records: &[Record],
        first_new: usize,
    ) -> Result<(), StoreError> {
        let path = self.layout.tag_file(seg, tag);
        let f = self.device.open_tag_file(path.clone()).await?;
        let (offset, bytes) = tagfile::block_image(first, records, first_new);
        let r = self.device.write(&f, &path, offset as u64, &bytes).await;
        let _ = f.close().await;
        r?;
        self.append_sums(&path, offset, &bytes, first_new > 0).await
    }

    /// Appends the checksums of the blocks just written to the tag file's sidecar, unsynced:
    /// [`Shard::sync_sums`] makes every tag file and sidecar of the checkpoint durable at once, before its log
    /// can be retired (`sidecar.rs`).
    async fn append_sums(
        &self,
        tag_file: &std::path::Path,
        offset: usize,
        image: &[u8],
        old_file: bool,
    ) -> Result<(), StoreError> {
        let side = sidecar::path_for(tag_file);
        let entries = sidecar::entries(offset, image);
        let probe = side.clone();
        let existing = offload(move || std::fs::metadata(&probe).ok().map(|m| m.len())).await;
        // After a whole number of entries: an append that failed part-way left a partial entry, which this
        // one overwrites (reading stops at the first broken entry, so one left in place would hide the rest).
        let whole = sidecar::ENTRY_BYTES as u64;
        let at = existing.map_or(0, |n| n / whole * whole);
        self.device.append(side.clone(), at, entries).await?;
        // A sidecar new beside an existing tag file: its directory is not among the new ones synced.
        let mut unsynced = self.unsynced.borrow_mut();
        unsynced.push((tag_file.to_path_buf(), false));
        unsynced.push((side, old_file && existing.is_none()));
        Ok(())
    }

    /// Makes every tag file written and sidecar appended by this checkpoint durable with one `syncfs`
    /// (instead of an fdatasync per file: tag files are written `O_DIRECT`, logs are `O_DSYNC`, so little
    /// else is dirty), and returns the directories of sidecars created beside existing tag files, to sync.
    async fn sync_sums(&self) -> Result<Vec<PathBuf>, StoreError> {
        let sides = std::mem::take(&mut *self.unsynced.borrow_mut());
        if sides.is_empty() {
            return Ok(Vec::new());
        }
        let files = sides.iter().map(|(side, _)| side.clone()).collect();
        self.device.syncfs(self.layout.seg_root(), files).await?;
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
