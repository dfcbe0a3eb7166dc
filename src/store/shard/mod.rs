//! One core's store: the tags whose hash this core owns, their segments (`store/segment.rs`), the durable log
//! with group commit, checkpoints into tag files and retention. Lives on one executor (`Rc`, `RefCell`, no
//! locks); no `RefCell` borrow is ever held across an `.await`. By concern:
//!
//! - `load.rs`: opening: the tag files this core owns, checked, counted; refusing a start on damage.
//! - `admit.rs`: `append`: back-pressure, duplicate admission, queueing for the commit loop.
//! - `check.rs`: the first-use verification of the tag files a start loaded without opening them.
//! - `commit.rs`: the commit loop: group commit through the [`DurableLog`], then visibility and answers.
//! - `checkpoint.rs`: moving committed records into tag files, one log generation at a time.
//! - `retention.rs`: removing expired segments.
//! - `read.rs` and `dma.rs`: the runs of records a query or an export reads (never JSON, never statuses).
//!
//! Write protocol (`--durability sync`): `append` queues the messages for the commit loop and waits. The
//! commit loop takes *everything* queued (natural batching: the next group forms while a commit is on its way
//! to the disk, with no timer), assigns record indexes, appends one batch to the log (durable when its
//! acknowledgement resolves), and only then pushes the records into the segments (visible to queries) and
//! answers the waiters. `async`: records are visible and acknowledged at once; the same loop makes them
//! durable moments later.
//!
//! **Invariant:** a segment's records `0..persisted` are in its tag file, durable (the checkpoint's syncfs); records
//! `persisted..committed()` are in the live log generation or in a retired one not yet retired.

mod admit;
mod check;
mod checkpoint;
mod commit;
mod dma;
mod load;
pub mod read;
mod retention;
mod segments;

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::path::PathBuf;
use std::rc::Rc;

use futures::channel::{mpsc, oneshot};

use crate::clock::now_ns;
use crate::config::{Durability, Reads};
use crate::store::blockcache::BlockCache;
use crate::store::device::Device;
use crate::store::iostats::IoStats;
use crate::store::layout::Layout;
use crate::store::log::local::{LocalLog, LocalLogOptions};
use crate::store::log::{DurableLog, Retired};
use crate::store::segment::Segment;
use crate::store::StoreError;

use commit::Cmd;

/// A checkpoint starts once the live log holds this many bytes...
pub const WAL_CHECKPOINT_BYTES: u64 = 64 << 20;
/// Largest commit the loop builds before writing (bounds one DMA buffer).
const COMMIT_BYTES_MAX: usize = 8 << 20;
/// Tag files a checkpoint reads and writes at once.
const CHECKPOINT_FILES_IN_FLIGHT: usize = 16;
/// With `--checkpoint-budget`, log generations after which a dirty segment's file goes before the fullest
/// ones (oldest first), so the oldest generations are retired first.
const OVERDUE_GENERATIONS: u32 = 4;
/// Log commits on their way to stable storage at once.
pub const COMMITS_IN_FLIGHT: usize = 4;

/// The tags a core owns, by name: hashbrown's foldhash (seeded per process), not std's SipHash, on the
/// path every message takes.
pub type Tags = hashbrown::HashMap<String, Tag>;

/// One tag's segments, by segment number.
#[derive(Default)]
pub struct Tag {
    pub segs: segments::Segments,
}

/// Everything a shard is opened with.
pub struct ShardOptions {
    /// This core, and how many cores share the tags.
    pub id: usize,
    pub shards: usize,
    pub layout: Layout,
    pub segment_ns: i64,
    pub durability: Durability,
    pub retention_ns: i64,
    /// This run's unique name (its log files' prefix).
    pub run: String,
    /// How queries read tag files, and the block cache of `--reads dma`.
    pub reads: Reads,
    pub read_cache_bytes: usize,
    /// Where every live storage operation goes (`store/device/`): the real device, wrapped to inject faults
    /// (`--fault-file`) or to trace for the power-loss model (`--trace-io`).
    pub device: Rc<dyn Device>,
    /// `--max-pending-records`: records accepted and not through their commit, past which appends are shed.
    pub max_pending_records: usize,
    /// `--max-pending-writes`: sync appends waiting for their commit, past which appends are shed (0: none).
    pub max_pending_writes: usize,
    /// `--max-log-mib`: log bytes not yet retired (live and held generations), past which appends are shed.
    pub max_log_bytes: u64,
    /// Tag files a checkpoint takes in one step (`--checkpoint-chunk-files`, 1024 by default).
    pub chunk_files: usize,
    /// `--max-mapped-files`: tag files all cores together keep mapped.
    pub mapped_files: usize,
}

/// What `/metrics` reports of a shard.
pub struct Counters {
    pub pending_records: u64,
    /// Appends refused by `--max-pending-records` and by `--max-pending-writes`.
    pub pending_refused: u64,
    pub writes_refused: u64,
    /// Appends refused because the log reached `--max-log-mib`.
    pub log_refused: u64,
    /// Messages not stored because they repeat a stored or in-flight record.
    pub duplicates: u64,
    pub tags: u64,
    pub tag_file_bytes: u64,
    /// Log bytes not yet retired ([`Shard::log_backlog`]).
    pub log_bytes: u64,
}

pub struct Shard {
    id: usize,
    /// How many cores share the tags (a manifest names its core count).
    shards: usize,
    reads: Reads,
    cache: RefCell<BlockCache>,
    /// Commit and checkpoint timings for the console line and `/metrics`.
    io_stats: Rc<RefCell<IoStats>>,
    layout: Layout,
    segment_ns: i64,
    durability: Durability,
    retention_ns: i64,
    tags: RefCell<Tags>,
    queue: mpsc::UnboundedSender<Cmd>,
    log: Rc<dyn DurableLog>,
    device: Rc<dyn Device>,
    /// Records accepted and not yet through their log commit, and the bound on them.
    pending: Cell<usize>,
    max_pending: usize,
    pending_refused: Cell<u64>,
    /// Sync appends waiting for their commit, and their bound (0 = none).
    pending_writes: Rc<Cell<usize>>,
    max_pending_writes: usize,
    writes_refused: Cell<u64>,
    max_log_bytes: u64,
    log_refused: Cell<u64>,
    /// Tag files a checkpoint takes in one step: its memory and open files stay bounded by this, whatever
    /// the number of dirty tags.
    chunk_files: usize,
    /// This core's share of `--max-mapped-files`: past it, its mappings are dropped (mapped again on use).
    /// Mappings are bounded per process (`vm.max_map_count`), and past that every mmap and large
    /// allocation fails.
    mapped_max: usize,
    duplicates: Cell<u64>,
    /// Generations rotated away from whose records are not yet all in tag files (a checkpoint failed after
    /// rotating, or its budget left segments with records in them unwritten), each with the epoch it was
    /// live in: retired once no dirty segment's `since` is at or before it.
    old_logs: RefCell<Vec<(u32, Retired)>>,
    /// Counts rotations: the epoch of the live generation. A segment's `since` is an epoch.
    epoch: Cell<u32>,
    /// Tag files written and sidecars appended by the running checkpoint, not yet synced (and whether each is
    /// a sidecar new beside an existing tag file, so its directory needs a sync).
    unsynced: RefCell<Vec<(PathBuf, bool)>>,
    /// Appends committed to the live generation since it began: a failed checkpoint's retry reuses a live
    /// generation that took none, instead of rotating again (each retry would add a generation).
    live_appends: Cell<u64>,
    /// The (tag, segment, end) whose pre-image and length a checkpoint made durable in the live generation:
    /// a retry does not log them again (retries under a lasting fault would grow the log without bound).
    pre_logged: RefCell<hashbrown::HashSet<(String, i64, usize)>>,
    /// The live generation's size when the last checkpoint ended (the pre-images it logged into it): the
    /// next one is due by size only for what commits add past it.
    log_base: Cell<u64>,
    /// Segments loaded at start whose first-use check is still due, or that it found damaged: while none
    /// are, appends skip the check (`check.rs`).
    lazy: Cell<usize>,
}

impl Shard {
    /// Opens this core's store: reads the probe file first (glommio's iopoll probe must see a non-empty
    /// file), loads the tag files this core owns, creates a fresh log and starts the commit loop. The shard
    /// is complete before its loop starts.
    pub async fn open(o: ShardOptions) -> Result<Rc<Shard>, String> {
        let tags = load::tags(&o).await?;
        let lazy = tags
            .values()
            .flat_map(|t| t.segs.values())
            .filter(|s| s.needs_check() || s.damage().is_some())
            .count();
        let io_stats: Rc<RefCell<IoStats>> = Rc::default();
        let log = LocalLog::create(LocalLogOptions {
            layout: o.layout.clone(),
            run: o.run.clone(),
            core: o.id,
            device: Rc::clone(&o.device),
            stats: Rc::clone(&io_stats),
        })
        .await?;
        let (queue, rx) = mpsc::unbounded();
        let shard = Rc::new(Shard {
            id: o.id,
            shards: o.shards,
            reads: o.reads,
            cache: RefCell::new(BlockCache::new(o.read_cache_bytes)),
            io_stats,
            layout: o.layout,
            segment_ns: o.segment_ns,
            durability: o.durability,
            retention_ns: o.retention_ns,
            tags: RefCell::new(tags),
            queue,
            log: Rc::new(log),
            device: o.device,
            pending: Cell::new(0),
            max_pending: o.max_pending_records.max(1),
            pending_refused: Cell::new(0),
            pending_writes: Rc::default(),
            max_pending_writes: o.max_pending_writes,
            writes_refused: Cell::new(0),
            max_log_bytes: o.max_log_bytes,
            chunk_files: o.chunk_files.max(1),
            mapped_max: (o.mapped_files / o.shards.max(1)).max(1),
            log_refused: Cell::new(0),
            duplicates: Cell::new(0),
            old_logs: RefCell::default(),
            epoch: Cell::new(0),
            unsynced: RefCell::default(),
            live_appends: Cell::new(0),
            pre_logged: RefCell::default(),
            log_base: Cell::new(0),
            lazy: Cell::new(lazy),
        });
        glommio::spawn_local(Rc::clone(&shard).commit_loop(rx)).detach();
        Ok(shard)
    }

    pub fn tag_count(&self) -> usize {
        self.tags.borrow().len()
    }

    /// Oldest record time accepted now (records older than the retention window are refused).
    pub fn retention_cutoff(&self) -> i64 {
        self.retention_cutoff_at(now_ns())
    }

    /// The oldest time retention keeps as of `at` (ns).
    pub fn retention_cutoff_at(&self, at: i64) -> i64 {
        at.saturating_sub(self.retention_ns)
    }

    /// Commit and checkpoint timings.
    pub fn io_stats(&self) -> Ref<'_, IoStats> {
        self.io_stats.borrow()
    }

    /// Commit and checkpoint timings, for the console line (which resets its interval's figures).
    pub fn io_stats_mut(&self) -> RefMut<'_, IoStats> {
        self.io_stats.borrow_mut()
    }

    pub fn counters(&self) -> Counters {
        Counters {
            pending_records: self.pending.get() as u64,
            pending_refused: self.pending_refused.get(),
            writes_refused: self.writes_refused.get(),
            log_refused: self.log_refused.get(),
            duplicates: self.duplicates.get(),
            tags: self.tag_count() as u64,
            tag_file_bytes: self.tag_file_bytes(),
            log_bytes: self.log_backlog(),
        }
    }

    /// Bytes of the log whose records are not all in tag files: the live generation's appended bytes and
    /// the space of every generation a running, deferring or failed checkpoint still holds (each local
    /// generation counts its 64 MiB preallocation at least). What `--max-log-mib` bounds; the files on disk
    /// can pass it by what lands after shedding starts: writes in flight, one checkpoint's pre-images (up to
    /// 4 KiB for every file it writes).
    pub fn log_backlog(&self) -> u64 {
        self.log.bytes()
            + self
                .old_logs
                .borrow()
                .iter()
                .map(|(_, o)| o.bytes)
                .sum::<u64>()
    }

    /// Bytes of the tag files this core owns (whole blocks of records and padding; sidecars not counted),
    /// from the records each segment has persisted: no file-system walk.
    fn tag_file_bytes(&self) -> u64 {
        let tags = self.tags.borrow();
        tags.values()
            .flat_map(|t| t.segs.values())
            .map(|s| crate::store::align_up(s.persisted * crate::record::RECORD_BYTES) as u64)
            .sum()
    }

    /// Each tag this core owns with its committed record count (`/tags`).
    pub fn tag_counts(&self) -> Vec<(String, u64)> {
        let tags = self.tags.borrow();
        tags.iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    t.segs.values().map(|s| s.committed() as u64).sum(),
                )
            })
            .collect()
    }

    /// Drops every mapping of tag files when this core holds more than its share of them; call before
    /// mapping anything (no segment's mapping is in use across the call).
    fn bound_mappings(&self, tags: &mut Tags) {
        if crate::store::segment::mapped() <= self.mapped_max {
            return;
        }
        for s in tags.values_mut().flat_map(|t| t.segs.values_mut()) {
            s.unmap();
        }
    }

    /// The segment `time` falls in, of `tag`, created when missing.
    fn segment_mut<'a>(&self, tags: &'a mut Tags, tag: &str, time: i64) -> &'a mut Segment {
        let seg = time.div_euclid(self.segment_ns);
        tags.entry_ref(tag).or_default().segs.get_or_default(seg)
    }

    /// Final flush at shutdown: checkpoint everything, stop the commit loop and close the log (removing the
    /// live generation when every record is in the tag files).
    pub async fn close(&self) -> Result<(), StoreError> {
        self.checkpoint(None).await?;
        let (tx, rx) = oneshot::channel();
        if self.queue.unbounded_send(Cmd::Close(tx)).is_ok() {
            let _ = rx.await;
        }
        let all_in_files = self.pending.get() == 0
            && self
                .tags
                .borrow()
                .values()
                .flat_map(|t| t.segs.values())
                .all(|s| s.mem.is_empty());
        self.log.close(all_in_files).await;
        self.queue.close_channel();
        Ok(())
    }
}
