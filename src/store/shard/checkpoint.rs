//! Checkpoints: moving every committed record from the durable log into its tag file, one log generation
//! at a time, with the partial last block of each tag file first made durable in the new generation (so a
//! torn rewrite can always be repaired), a chunk of files at a time. A retry after a failure reuses a live
//! generation that took no append, and does not log a pre-image again (retries under a lasting fault leave
//! the log as it was). The order of writes and syncs is in docs/format.md; every step goes through the
//! shard's [`crate::store::device::Device`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use futures::channel::oneshot;
use futures::StreamExt;
use glommio::io::DmaFile;

use super::commit::Cmd;
use super::{Shard, CHECKPOINT_FILES_IN_FLIGHT, OVERDUE_GENERATIONS, WAL_CHECKPOINT_BYTES};
use crate::record::{Record, RECORD_BYTES};
use crate::store::device::{io_err, offload, Append};
use crate::store::manifest::{self, Manifest};
use crate::store::{align_down, sidecar, tagfile, wal, StoreError};

/// One dirty segment, as it stood when the checkpoint began: its records `first_new..end` go to its tag file.
struct Plan {
    tag: String,
    seg: i64,
    /// The first record of the block holding record `first_new`.
    first: usize,
    /// The first record not yet in the file (`persisted`).
    first_new: usize,
    /// `committed()` when the checkpoint began: records committed since wait for the next one.
    end: usize,
}

/// A plan's tag file on its way: opened early when its partial last block had to be read (the same open
/// then serves the write), and the records `first..end` (pre-image, then the new ones).
struct Image<'p> {
    plan: &'p Plan,
    file: Option<DmaFile>,
    records: Vec<Record>,
    /// Once written: the checksum entries of the blocks written, for the sidecar.
    sums: Vec<u8>,
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

/// Closes the files a failed or finished chunk still holds.
async fn close_all(images: &mut [Image<'_>]) {
    for i in images.iter_mut() {
        if let Some(f) = i.file.take() {
            let _ = f.close().await;
        }
    }
}

/// Reads records `first..end` of a tag file (the checkpoint's pre-image of a partial last block).
async fn read_records(
    f: &DmaFile,
    path: &std::path::Path,
    first: usize,
    end: usize,
) -> Result<Vec<Record>, StoreError> {
    let want = (end - first) * RECORD_BYTES;
    let r = f.read_at((first * RECORD_BYTES) as u64, want).await;
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

/// A plan's segment, which no one but this checkpoint moves past the records it planned.
fn planned<'t>(tags: &'t super::Tags, p: &Plan) -> &'t crate::store::segment::Segment {
    let s = tags
        .get(&p.tag)
        .and_then(|t| t.segs.get(&p.seg))
        .expect("BUG: a planned segment vanished during its checkpoint");
    assert_eq!(
        s.persisted, p.first_new,
        "BUG: {} persisted during its checkpoint",
        p.tag
    );
    s
}

fn stopped() -> StoreError {
    StoreError::Unavailable("commit loop stopped".into())
}

impl Shard {
    /// Moves committed records into the tag files and starts a new log generation. With a `budget`, tag
    /// files are written until it is spent (at least one chunk, whatever it is): first the dirty segments
    /// whose records have waited [`OVERDUE_GENERATIONS`] generations, oldest first, then the fullest; the
    /// others wait in memory and their generations are held (not retired) until a later checkpoint writes
    /// them, so a checkpoint's time does not grow with the tags touched. The log is bounded by
    /// `--max-log-mib` instead: past it writes are shed until checkpoints catch up. Without a budget
    /// (`--checkpoint-budget off`, and shutdown), every dirty segment is written.
    pub async fn checkpoint(&self, budget: Option<Duration>) -> Result<usize, StoreError> {
        let began = std::time::Instant::now();
        let files = match self
            .checkpoint_steps(budget.and_then(|b| began.checked_add(b)))
            .await
        {
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

    async fn checkpoint_steps(
        &self,
        deadline: Option<std::time::Instant>,
    ) -> Result<usize, StoreError> {
        self.rotate_and_seal().await?;
        let epoch = self.epoch.get();
        let plans = self.plan(epoch);
        // A chunk of files at a time: memory and open files stay bounded by the chunk, not by the tags.
        let mut written = 0;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for chunk in plans.chunks(self.chunk_files) {
            if written > 0 && deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                break;
            }
            for d in self.make_dirs(chunk).await? {
                if !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
            let mut images = self.log_pre_images(chunk).await?;
            self.write_tag_files(&mut images).await?;
            written += chunk.len();
        }
        let (done, rest) = plans.split_at(written);
        self.io_stats.borrow_mut().checkpoint_deferred_total += rest.len() as u64;
        let manifests = self.write_manifests(done).await?;
        self.sync_written(dirs).await?;
        // The manifests take their place once what they describe is durable, before the log goes.
        for (tmp, path, dir) in manifests {
            self.device.rename(tmp, path, dir).await?;
        }
        // The written records leave memory; the generations no unwritten record is in leave the log.
        {
            let mut tags = self.tags.borrow_mut();
            for p in done {
                if let Some(s) = tags.get_mut(&p.tag).and_then(|t| t.segs.get_mut(&p.seg)) {
                    s.persisted_up_to(p.end, epoch);
                }
            }
        }
        self.log_base.set(self.log.bytes());
        let oldest = self.oldest_unwritten(epoch);
        let (olds, held): (Vec<_>, Vec<_>) = std::mem::take(&mut *self.old_logs.borrow_mut())
            .into_iter()
            .partition(|(e, _)| *e < oldest);
        self.old_logs.borrow_mut().extend(held);
        for (n, (_, old)) in olds.iter().enumerate() {
            if let Err(e) = self.log.retire(old.clone()).await {
                self.old_logs.borrow_mut().extend(olds[n..].iter().cloned());
                return Err(e);
            }
        }
        Ok(done.len())
    }

    /// The epoch of the oldest record that is only in memory and the log (`epoch`, the live one, when
    /// none is): every generation before it can be retired.
    fn oldest_unwritten(&self, epoch: u32) -> u32 {
        let tags = self.tags.borrow();
        tags.values()
            .flat_map(|t| t.segs.values())
            .filter(|s| !s.mem.is_empty())
            .map(|s| s.since)
            .fold(epoch, u32::min)
    }

    /// Step 4b: the manifest of each segment the checkpoint wrote files in (every tag file this core has
    /// there, with its count once the checkpoint ends), written to its temporary file, unsynced: the
    /// checkpoint's syncfs makes it durable, then it is renamed into place. Returns (temporary, manifest,
    /// directory) of each. A segment with a lost tag file gets none (each start reads its directory and
    /// reports the loss).
    async fn write_manifests(
        &self,
        done: &[Plan],
    ) -> Result<Vec<(PathBuf, PathBuf, PathBuf)>, StoreError> {
        let mut ends: hashbrown::HashMap<i64, hashbrown::HashMap<&str, usize>> = Default::default();
        for p in done {
            ends.entry(p.seg).or_default().insert(&p.tag, p.end);
        }
        let mut appends = Vec::with_capacity(ends.len());
        let mut out = Vec::with_capacity(ends.len());
        {
            let tags = self.tags.borrow();
            for (&seg, ends) in &ends {
                let mut m = Manifest {
                    core: self.id,
                    cores: self.shards,
                    entries: Vec::with_capacity(ends.len()),
                };
                let mut lost = false;
                for (tag, t) in tags.iter() {
                    let Some(s) = t.segs.get(&seg) else { continue };
                    lost |= s.damage().is_some() && s.persisted == 0;
                    let n = ends.get(tag.as_str()).copied().unwrap_or(s.persisted);
                    if n > 0 {
                        m.entries.push((tag.clone(), n as u64));
                    }
                }
                if lost {
                    continue;
                }
                let dir = self.layout.seg_dir(seg);
                let path = manifest::path(&dir, self.id, self.shards);
                let tmp = manifest::temporary(&path);
                appends.push(Append {
                    path: tmp.clone(),
                    at: 0,
                    bytes: m.encode(),
                });
                out.push((tmp, path, dir));
            }
        }
        // Listed before the appends, like the sidecars: the syncfs covers them.
        self.unsynced
            .borrow_mut()
            .extend(out.iter().map(|(tmp, _, _)| (tmp.clone(), false)));
        self.device.append(appends).await?;
        Ok(out)
    }

    /// Step 1: a fresh generation; every commit from here on goes there. A generation whose batches failed
    /// is sealed before its records move on: batches after its last acknowledged one (their requests got an
    /// error) must never be replayed, since their record slots are handed out again. Retried by every
    /// checkpoint until it succeeds.
    async fn rotate_and_seal(&self) -> Result<(), StoreError> {
        let retry = !self.old_logs.borrow().is_empty();
        if retry && self.live_appends.get() == 0 && !self.log.broken() {
            // A retry after a failed checkpoint, and the live generation took no append since: the held
            // generations are what this checkpoint must empty; a new one would only add a file.
            return self.seal_held().await;
        }
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
        // The commit loop counted the rotation: `old` was live in the epoch before this one.
        let epoch = self.epoch.get() - 1;
        self.old_logs.borrow_mut().push((epoch, old));
        self.seal_held().await
    }

    /// Seals every held generation not sealed yet.
    async fn seal_held(&self) -> Result<(), StoreError> {
        let unsealed: Vec<usize> = (0..self.old_logs.borrow().len())
            .filter(|&i| !self.old_logs.borrow()[i].1.sealed)
            .collect();
        for i in unsealed {
            let mut old = self.old_logs.borrow()[i].1.clone();
            self.log.seal(&mut old).await?;
            self.old_logs.borrow_mut()[i].1 = old;
        }
        Ok(())
    }

    /// Step 2: the dirty segments and how far each goes, in the order a budget writes them: first those
    /// whose oldest record came in [`OVERDUE_GENERATIONS`] epochs ago or more, oldest first (they hold the
    /// oldest generations), then the rest with the most records waiting first (the others' records wait for
    /// a later checkpoint, more of them per file write).
    fn plan(&self, epoch: u32) -> Vec<Plan> {
        let tags = self.tags.borrow();
        let mut plans = Vec::new();
        for (tag, t) in tags.iter() {
            for (&seg, s) in t.segs.iter().filter(|(_, s)| !s.mem.is_empty()) {
                assert!(
                    !s.needs_check() && s.damage().is_none(),
                    "BUG: records admitted into {tag:?} segment {seg} before its tag file was verified"
                );
                let overdue = s.since.saturating_add(OVERDUE_GENERATIONS) <= epoch;
                plans.push((
                    (
                        !overdue,
                        if overdue { s.since } else { 0 },
                        std::cmp::Reverse(s.mem.len()),
                        s.since,
                    ),
                    Plan {
                        tag: tag.clone(),
                        seg,
                        first: align_down(s.persisted * RECORD_BYTES) / RECORD_BYTES,
                        first_new: s.persisted,
                        end: s.committed(),
                    },
                ));
            }
        }
        plans.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        plans.into_iter().map(|(_, p)| p).collect()
    }

    /// Commits a checkpoint's own payload (pre-images and lengths) into the live generation.
    async fn commit_checkpoint_payload(&self, payload: Vec<u8>) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        match self
            .queue
            .unbounded_send(Cmd::Checkpoint { payload, done: tx })
        {
            Ok(()) => rx.await.map_err(|_| stopped()).and_then(|r| r),
            Err(_) => Err(stopped()),
        }
    }

    /// Step 3 (per chunk): reads the records already in each partial last block (its pre-image) back with
    /// DMA reads through the file the write will use, a window of them in flight, so the core never waits on page
    /// faults, and makes them durable in the new generation, with each file's length, before any of the
    /// chunk's tag files is rewritten.
    async fn log_pre_images<'p>(&self, chunk: &'p [Plan]) -> Result<Vec<Image<'p>>, StoreError> {
        let mut images: Vec<Image<'p>> = Vec::with_capacity(chunk.len());
        let mut pre = Vec::new();
        // A sliding window of reads (not batches that wait for their slowest).
        let read: Vec<_> = futures::stream::iter(chunk.iter().map(|p| self.read_pre_image(p)))
            .buffered(CHECKPOINT_FILES_IN_FLIGHT)
            .collect()
            .await;
        let mut failed = None;
        for (p, r) in chunk.iter().zip(read) {
            match r {
                Ok((file, records)) => images.push(Image {
                    plan: p,
                    file,
                    records,
                    sums: Vec::new(),
                }),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            close_all(&mut images).await;
            return Err(e);
        }
        let tags = self.tags.borrow();
        let mut logging = Vec::new();
        for image in &mut images {
            let p = image.plan;
            let key = (p.tag.clone(), p.seg, p.end);
            if !self.pre_logged.borrow().contains(&key) {
                for (k, r) in image.records.iter().enumerate() {
                    wal::put_record(&mut pre, &p.tag, (p.first + k) as u64, r);
                }
                wal::put_length(&mut pre, &p.tag, p.seg, p.end as u64);
                logging.push(key);
            }
            // The new records: still in memory (only this checkpoint drains it, at its end).
            let s = planned(&tags, p);
            image
                .records
                .extend_from_slice(&s.mem[..p.end - p.first_new]);
        }
        drop(tags);
        if pre.is_empty() {
            return Ok(images);
        }
        if let Err(e) = self.commit_checkpoint_payload(pre).await {
            close_all(&mut images).await;
            return Err(e);
        }
        self.pre_logged.borrow_mut().extend(logging);
        Ok(images)
    }

    /// Creates the segment directories the plans need, syncing the root once if one was made; returns the
    /// directories that may have gained an entry (synced once the files are written).
    async fn make_dirs(&self, plans: &[Plan]) -> Result<Vec<PathBuf>, StoreError> {
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
        Ok(dirs)
    }

    /// Step 4 (per chunk): writes the tag files (`O_DIRECT`, a sliding window of them), then appends their
    /// sidecars, unsynced: [`Shard::sync_written`] makes them durable.
    async fn write_tag_files(&self, images: &mut [Image<'_>]) -> Result<(), StoreError> {
        let failed = std::cell::Cell::new(false);
        let writes = images.iter_mut().map(|i| {
            let failed = &failed;
            async move {
                if failed.get() {
                    return Ok(()); // after a failure: issue no more, let those in flight finish
                }
                let r = self.write_tag_file(i).await;
                failed.set(failed.get() || r.is_err());
                r
            }
        });
        let results: Vec<Result<(), StoreError>> = futures::stream::iter(writes)
            .buffer_unordered(CHECKPOINT_FILES_IN_FLIGHT)
            .collect()
            .await;
        close_all(images).await;
        results.into_iter().collect::<Result<(), StoreError>>()?;
        self.append_sums(images).await
    }

    /// Step 5: makes every tag file and sidecar of the checkpoint durable with one `syncfs` (not an
    /// fdatasync per file: the journal commits once and the device flushes once, whatever the number of
    /// files), then syncs each directory that gained an entry once.
    async fn sync_written(&self, mut dirs: Vec<PathBuf>) -> Result<(), StoreError> {
        for d in self.sync_sums().await? {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        self.device.dirs(Vec::new(), dirs).await
    }

    /// Opens a plan's tag file and reads its partial last block's records, when it has one (a file without
    /// one is opened, or created, when written, as before any pre-image was logged).
    async fn read_pre_image(&self, p: &Plan) -> Result<(Option<DmaFile>, Vec<Record>), StoreError> {
        if p.first == p.first_new {
            return Ok((None, Vec::new()));
        }
        let path = self.layout.tag_file(p.seg, &p.tag);
        let f = self.device.open_tag_file(path.clone()).await?;
        match read_records(&f, &path, p.first, p.first_new).await {
            Ok(records) => Ok((Some(f), records)),
            Err(e) => {
                let _ = f.close().await;
                Err(e)
            }
        }
    }

    /// Writes one segment's new tail (whole blocks from the one holding record `first_new`) through the file
    /// opened for its pre-image, or a new open, unsynced: [`Shard::sync_written`] makes it durable.
    async fn write_tag_file(&self, image: &mut Image<'_>) -> Result<(), StoreError> {
        let p = image.plan;
        let path = self.layout.tag_file(p.seg, &p.tag);
        if image.file.is_none() {
            image.file = Some(self.device.open_tag_file(path.clone()).await?);
        }
        let f = image.file.as_ref().expect("opened above");
        let (offset, bytes) = tagfile::block_image(p.first, &image.records, p.first_new);
        self.device.write(f, &path, offset as u64, &bytes).await?;
        if let Some(f) = image.file.take() {
            let _ = f.close().await;
        }
        image.records = Vec::new();
        image.sums = sidecar::entries(offset, &bytes);
        Ok(())
    }

    /// Appends the checksums of the blocks just written to each tag file's sidecar, unsynced, in two trips
    /// to the helper thread for the whole chunk (their lengths, then the appends):
    /// [`Shard::sync_sums`] makes every tag file and sidecar of the checkpoint durable at once, before its
    /// log can be retired (`sidecar.rs`).
    async fn append_sums(&self, images: &mut [Image<'_>]) -> Result<(), StoreError> {
        let written: Vec<(PathBuf, Vec<u8>, bool)> = images
            .iter_mut()
            .filter(|i| !i.sums.is_empty())
            .map(|i| {
                let p = i.plan;
                let tag_file = self.layout.tag_file(p.seg, &p.tag);
                (tag_file, std::mem::take(&mut i.sums), p.first_new > 0)
            })
            .collect();
        let sides: Vec<PathBuf> = written
            .iter()
            .map(|(f, _, _)| sidecar::path_for(f))
            .collect();
        let probe = sides.clone();
        let lengths: Vec<Option<u64>> = offload(move || {
            probe
                .iter()
                .map(|side| std::fs::metadata(side).ok().map(|m| m.len()))
                .collect()
        })
        .await;
        // After a whole number of entries: an append that failed part-way left a partial entry, which this
        // one overwrites (reading stops at the first broken entry, so one left in place would hide the rest).
        let whole = sidecar::ENTRY_BYTES as u64;
        let mut appends = Vec::with_capacity(written.len());
        let mut unsynced = Vec::with_capacity(2 * written.len());
        for ((side, (tag_file, sums, old_file)), existing) in
            sides.into_iter().zip(written).zip(lengths)
        {
            appends.push(Append {
                path: side.clone(),
                at: existing.map_or(0, |n| n / whole * whole),
                bytes: sums,
            });
            // A sidecar new beside an existing tag file: its directory is not among the new ones synced.
            unsynced.push((tag_file, false));
            unsynced.push((side, old_file && existing.is_none()));
        }
        // Listed before the appends: a failed one may have created some of them, which the retry (finding
        // them) would no longer count as new.
        self.unsynced.borrow_mut().extend(unsynced);
        self.device.append(appends).await
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
        // A failed checkpoint may leave generations held and the live one empty: still due.
        let held = !self.old_logs.borrow().is_empty();
        // Writes are shed while the log is at its bound: waiting for the interval (an hour, say) would shed
        // them that long. Retried at most once a second when a checkpoint cannot retire anything.
        let at_bound = self.log_backlog() >= self.max_log_bytes;
        let retry = since_last >= interval.min(Duration::from_secs(1));
        // What the last checkpoint logged into this generation (pre-images) does not make the next one due.
        bytes.saturating_sub(self.log_base.get()) >= WAL_CHECKPOINT_BYTES
            || (since_last >= interval && (bytes > 0 || held))
            || ((self.log.broken() || at_bound) && retry)
    }
}
